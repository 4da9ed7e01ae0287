//! Local packages (`apt-get download`, a copied `.deb`) put into the cache,
//! so kernels can be unpacked without network.
//!
//! [`ingest`] hashes a `.deb`, reads its control stanza, copies it to
//! `<cache>/debs/<sha256>` (the same content-addressed place downloads go)
//! and records it in `<cache>/local/Packages`, a `Packages` index of
//! everything ingested. [`local_kernels`] assembles kernels from that index
//! exactly as discovery does from an archive's; their
//! [`PinnedKernel::archive`] is `"local"`, and
//! [`crate::kernel_tree::materialize`] unpacks them from the cache without any
//! mirror.

use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::discover::{self, Distro, KernelInfo};
use crate::index::{self, PackageEntry};
use crate::kernel_tree::PinnedKernel;
use crate::{deb, Error, Result};

/// The suite name given to ingested packages.
pub const LOCAL_SUITE: &str = "local";

/// What [`ingest`] did with one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ingested {
    /// The file given.
    pub path: PathBuf,
    /// Its index entry (`Filename` is `local/<file name>`).
    pub entry: PackageEntry,
    /// `Architecture` of the control stanza.
    pub architecture: Option<String>,
    /// The kernel release it belongs to, and what it is to it (`image`,
    /// `modules`, `headers`...), if it is a kernel package.
    pub kernel: Option<(String, String)>,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Ingest {
        path: path.to_owned(),
        msg: msg.into(),
    }
}

fn valid_name(s: &str) -> bool {
    s.len() >= 2
        && s.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c))
}

/// Put `path` (a `.deb`) into the cache and the local index. The input
/// must be a regular file (a pipe or device is refused before it is
/// opened: save it to a file first), and the whole package must pass
/// [`deb::verify`] (every member complete, both tar members decompressing
/// to their end) and have a control stanza with a valid `Package` and
/// `Version`; the error names the file and the reason. The checks read the
/// copy taken into the cache, so what was checked is what is kept; a
/// refused copy is removed again.
pub fn ingest(cache: &Cache, path: &Path) -> Result<Ingested> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("inspecting", path, e))?;
    if !meta.is_file() {
        return Err(bad(
            path,
            "not a regular file (a pipe, device or directory); save the package to a file first",
        ));
    }
    let (sha256, size, stored) = cache.store_file(path)?;
    let checked = deb::verify(&stored).and_then(|_| deb::control(&stored));
    let control = match checked {
        Ok(c) => c,
        Err(e) => {
            cache.discard_stored(&stored);
            return Err(e.context(format!("ingesting {}", path.display())));
        }
    };
    let field = |k: &str| {
        control
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.trim().to_owned())
    };
    let package = field("Package").ok_or_else(|| bad(path, "control has no Package field"))?;
    if !valid_name(&package) {
        return Err(bad(path, format!("invalid Package {package:?}")));
    }
    let version = field("Version").ok_or_else(|| bad(path, "control has no Version field"))?;
    if !valid_version(&version) {
        return Err(bad(path, format!("invalid Version {version:?}")));
    }
    let depends = field("Depends").unwrap_or_default().replace('\n', " ");
    let source = field("Source").map(|s| s.replace('\n', " "));
    let architecture = field("Architecture");
    let base: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+~-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = if base.is_empty() || base.starts_with('.') {
        format!("{package}_{version}.deb").replace(':', "%3a")
    } else {
        base
    };
    let entry = PackageEntry {
        package,
        version,
        filename: format!("local/{base}"),
        size,
        sha256,
        depends,
        source,
    };
    entry.validate().map_err(|e| bad(path, e.to_string()))?;
    add_to_index(cache, &entry)?;
    let kernel = match discover::classify(Distro::Debian, &entry.package) {
        Some((rel, role)) if Distro::guess(&rel) == Distro::Debian => Some((rel, role)),
        debian => discover::classify(Distro::Ubuntu, &entry.package).or(debian),
    }
    .map(|(rel, role)| (rel, role.as_str().to_owned()));
    log::info!(
        "{}: {} cached as {}",
        path.display(),
        entry.label(),
        entry.sha256
    );
    Ok(Ingested {
        path: path.to_owned(),
        entry,
        architecture,
        kernel,
    })
}

/// `<cache>/local/Packages`.
pub fn local_index_path(cache: &Cache) -> PathBuf {
    cache.root.join("local").join("Packages")
}

/// The entries ingested so far (empty when nothing was).
pub fn local_index(cache: &Cache) -> Result<Vec<PackageEntry>> {
    let p = local_index_path(cache);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            index::parse_packages(&t).map_err(|e| e.context(format!("parsing {}", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

fn stanza(e: &PackageEntry) -> String {
    let mut s = format!("Package: {}\nVersion: {}\n", e.package, e.version);
    if let Some(src) = &e.source {
        s.push_str(&format!("Source: {src}\n"));
    }
    if !e.depends.is_empty() {
        s.push_str(&format!("Depends: {}\n", e.depends));
    }
    s.push_str(&format!(
        "Filename: {}\nSize: {}\nSHA256: {}\n",
        e.filename, e.size, e.sha256
    ));
    s
}

/// Add (or replace: same package and version) `entry` in the local index.
///
/// The read-modify-write holds an exclusive `flock` on
/// `<cache>/local/Packages.lock`, so concurrent ingests into one cache each
/// see the others' entries and none is lost.
fn add_to_index(cache: &Cache, entry: &PackageEntry) -> Result<()> {
    let path = local_index_path(cache);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let lock_path = dir.join("Packages.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("creating", &lock_path, e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io("locking", &lock_path, e.into()))?;
    let mut all = local_index(cache)?;
    all.retain(|e| {
        e.sha256 != entry.sha256 && !(e.package == entry.package && e.version == entry.version)
    });
    all.push(entry.clone());
    let text: Vec<String> = all.iter().map(stanza).collect();
    kmlink_fsio::write_file(
        &path,
        text.join("\n").as_bytes(),
        kmlink_fsio::Durability::Durable,
    )
    .map_err(|e| Error::io("writing", &path, e))?;
    drop(lock); // releases the flock
    Ok(())
}

/// The kernels that can be assembled from ingested packages (suite
/// [`LOCAL_SUITE`], archive `"local"`), Debian and Ubuntu layouts alike.
pub fn local_kernels(cache: &Cache) -> Result<Vec<(PinnedKernel, KernelInfo)>> {
    let entries = local_index(cache)?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for distro in [Distro::Debian, Distro::Ubuntu] {
        out.extend(
            discover::kernels_in_index(distro, LOCAL_SUITE, "local", &entries)
                .into_iter()
                .filter(|k| Distro::guess(&k.1.release) == distro),
        );
    }
    Ok(out)
}
