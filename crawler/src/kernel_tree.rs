//! Kernel trees: a kernel's packages ([`PinnedKernel`]: a pin of
//! `tests/kernels.toml`, a discovered or an ingested kernel) fetched,
//! verified and unpacked into `<cache>/kernels/<release>/` ([`KernelTree`]).
//! Also the `kernels.toml` format and the boot image alone.
//!
//! Package layouts handled (paths inside the packages):
//!
//! | series | vmlinuz | config | modules |
//! |---|---|---|---|
//! | 6.1 | `boot/vmlinuz-<rel>` (`linux-image-<rel>-unsigned`) | `boot/config-<rel>` | `lib/modules/<rel>/` (`.ko`) |
//! | 6.12 | `boot/vmlinuz-<rel>` (`linux-image-<rel>-unsigned`) | `boot/config-<rel>` | `usr/lib/modules/<rel>/` (`.ko.xz`) |
//! | 6.16 – 6.18 | `boot/vmlinuz-<rel>` (signed `linux-image-<rel>`) | `boot/config-<rel>` or `linux-base-<rel>` | `usr/lib/modules/<rel>/` (same package) |
//! | 7.x | `usr/lib/modules/<rel>/vmlinuz` (`linux-binary-<rel>`) | `usr/lib/modules/<rel>/config` (`linux-base-<rel>`) | `usr/lib/modules/<rel>/` (`linux-modules-<rel>`) |
//! | Ubuntu | `boot/vmlinuz-<rel>` (`linux-image[-unsigned]-<rel>`) | `boot/config-<rel>` (`linux-modules-<rel>`) | `lib/modules/<rel>/` (`.ko.zst`) |
//!
//! Kernels found by [`crate::discover`] and ingested ones
//! ([`crate::ingest`], archive `"local"`) are [`PinnedKernel`]s too.
//!
//! `Module.symvers` (and a second copy of the config, `.config`) come from
//! `usr/src/linux-headers-<rel>/` of `linux-headers-<rel>`, when pinned.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::Cache;
use crate::index::{self, PackageEntry};
use crate::publish::Unpublished;
use crate::sources::Mirrors;
use crate::{deb, version, Error, Http, Result};

/// One pinned kernel: the exact packages to fetch.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct PinnedKernel {
    /// Kernel release (`uname -r`), e.g. `6.1.0-47-amd64`.
    pub release: String,
    /// Suite whose `Packages` index lists the packages, e.g. `bookworm`.
    pub suite: String,
    /// Which mirror serves the suite: `"archive"` or `"security"`.
    pub archive: String,
    /// The packages, exactly as listed in the suite's index.
    pub packages: Vec<PackageEntry>,
    /// Packages the same index lists that carry the same files as one of
    /// [`Self::packages`] (the signed `linux-image-<rel>` beside the
    /// preferred `linux-image-<rel>-unsigned`: the same vmlinuz, config and
    /// modules): fetched in its place when its file is gone from every
    /// mirror ([`fallback_for`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<PackageEntry>,
}

/// The package among `fallbacks` that carries the same files as `missing`:
/// for Debian's `linux-image-<rel>-unsigned` the signed
/// `linux-image-<rel>`, for Ubuntu's `linux-image-unsigned-<rel>` the
/// signed `linux-image-<rel>` (the newest version of that name). No other
/// package has a twin.
pub fn fallback_for<'f>(
    missing: &PackageEntry,
    fallbacks: &'f [PackageEntry],
) -> Option<&'f PackageEntry> {
    let name = &missing.package;
    let twin = match name.strip_suffix("-unsigned") {
        Some(signed) if signed.starts_with("linux-image-") => signed.to_owned(),
        _ => format!(
            "linux-image-{}",
            name.strip_prefix("linux-image-unsigned-")?
        ),
    };
    fallbacks
        .iter()
        .filter(|f| f.package == twin)
        .max_by(|a, b| version::compare(&a.version, &b.version))
}

/// Fetch every package of `kernel` (up to `jobs` at a time); a package gone
/// from every mirror is replaced by its twin among
/// [`PinnedKernel::fallbacks`] ([`fallback_for`]). Returns the packages
/// used (in the order of `kernel.packages`) with their files. A package
/// gone with no twin left is [`Error::Unavailable`], naming its file.
pub fn fetch_with_fallbacks(
    cache: &Cache,
    http: &Http,
    bases: &[String],
    kernel: &PinnedKernel,
    jobs: usize,
) -> Result<(Vec<PackageEntry>, Vec<PathBuf>)> {
    let results = fetch_each(cache, http, bases, &kernel.packages, jobs);
    let mut used = Vec::new();
    let mut paths = Vec::new();
    for (p, r) in kernel.packages.iter().zip(results) {
        match r {
            Ok(path) => {
                used.push(p.clone());
                paths.push(path);
            }
            Err(e) if e.is_not_found() => {
                let unavailable = |tried: Vec<String>| Error::Unavailable {
                    release: kernel.release.clone(),
                    file: p.filename.clone(),
                    tried,
                };
                let Some(twin) = fallback_for(p, &kernel.fallbacks) else {
                    return Err(unavailable(Vec::new()));
                };
                log::warn!(
                    "kernel {}: {} is gone from the archive; using {} (the same vmlinuz and modules)",
                    kernel.release,
                    p.filename,
                    twin.label()
                );
                match cache.fetch(http, bases, twin) {
                    Ok(path) => {
                        used.push(twin.clone());
                        paths.push(path);
                    }
                    Err(e) if e.is_not_found() => {
                        return Err(unavailable(vec![twin.filename.clone()]))
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((used, paths))
}

#[derive(serde::Deserialize, serde::Serialize)]
struct PinnedFile {
    kernel: Vec<PinnedKernel>,
}

/// Render pinned kernels as the TOML of `tests/kernels.toml` (`[[kernel]]`
/// tables with `[[kernel.packages]]`).
pub fn to_toml(kernels: &[PinnedKernel]) -> Result<String> {
    toml::to_string(&PinnedFile {
        kernel: kernels.to_vec(),
    })
    .map_err(|source| Error::TomlWrite { source })
}

/// Load and check `tests/kernels.toml`.
pub fn load(path: &Path) -> Result<Vec<PinnedKernel>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    parse_named(&text, &path.display().to_string())
}

/// Parse and check pinned kernels from TOML text (the format of
/// `tests/kernels.toml`, e.g. embedded with `include_str!`).
pub fn parse(text: &str) -> Result<Vec<PinnedKernel>> {
    parse_named(text, "pinned kernels")
}

fn parse_named(text: &str, what: &str) -> Result<Vec<PinnedKernel>> {
    let file: PinnedFile = toml::from_str(text).map_err(|e| Error::Toml {
        what: what.to_owned(),
        source: Box::new(e),
    })?;
    for k in &file.kernel {
        check_kernel(k).map_err(|e| e.context(format!("in {what}")))?;
    }
    Ok(file.kernel)
}

fn check_kernel(k: &PinnedKernel) -> Result<()> {
    let bad = |msg: String| Error::Kernel {
        release: k.release.clone(),
        msg,
    };
    if k.release.is_empty() || k.release.contains('/') || k.release.starts_with('.') {
        return Err(bad("release is not a plain file name".into()));
    }
    if !["archive", "security", "local"].contains(&k.archive.as_str()) {
        return Err(bad(format!(
            "archive must be \"archive\", \"security\" or \"local\", not {:?}",
            k.archive
        )));
    }
    if k.packages.is_empty() {
        return Err(bad("no packages".into()));
    }
    k.packages.iter().try_for_each(PackageEntry::validate)
}

/// An unpacked kernel: what tests and the linker need.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// Kernel release (the substitute's when a pinned package was gone).
    pub release: String,
    /// `<cache>/kernels/<release>`; package paths are kept below it.
    pub root: PathBuf,
    /// The compressed kernel image.
    pub vmlinuz: PathBuf,
    /// The kernel config, if a pinned package ships one.
    pub config: Option<PathBuf>,
    /// `.../lib/modules/<release>` or `.../usr/lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// `Module.symvers`, if a headers package is pinned.
    pub symvers: Option<PathBuf>,
    /// The packages the tree was unpacked from.
    pub packages: Vec<PackageEntry>,
}

/// Marker of a complete tree: one line per package, `<sha256> <package> <version>`.
const MARKER: &str = ".kmlink-packages";

/// Fetch (verified) every package of `kernel` and unpack vmlinuz, config,
/// System.map, `Module.symvers` and the modules tree (kept as shipped:
/// `.ko` / `.ko.xz`) into `<cache>/kernels/<release>/`.
///
/// Extraction goes to a temporary directory beside the final one, renamed
/// into place at the end, so an interrupted run leaves nothing a later run
/// would trust. A complete tree carries a marker listing the package SHA256s
/// it came from; a tree whose marker differs is extracted again.
///
/// If a pinned package is gone from every mirror (HTTP 404), the newest
/// kernel of the same series in the suite's current index (same flavour,
/// same major.minor, same package names) is used instead, with a loud
/// `WARNING` (logged and printed on stderr); the returned release is then the
/// substitute's.
pub fn materialize(
    cache: &Cache,
    http: &Http,
    mirrors: &Mirrors,
    kernel: &PinnedKernel,
) -> Result<KernelTree> {
    materialize_with(cache, http, mirrors, kernel, 1)
}

/// [`materialize`] with up to `jobs` downloads at a time (1 = one after the
/// other).
///
/// Packages already in the cache (downloaded before, or ingested with
/// [`crate::ingest::ingest`]) are used without any network; mirrors are
/// only needed for the others. A kernel whose packages carry no modules
/// (the archive dropped its `linux-modules-<rel>`) gets an empty
/// `usr/lib/modules/<rel>` and a warning.
pub fn materialize_with(
    cache: &Cache,
    http: &Http,
    mirrors: &Mirrors,
    kernel: &PinnedKernel,
    jobs: usize,
) -> Result<KernelTree> {
    check_kernel(kernel)?;
    let ctx = || format!("kernel {}", kernel.release);
    let bases = mirrors.for_kind(&kernel.archive).unwrap_or(&[]);
    let mut all_cached = true;
    for p in &kernel.packages {
        if cache.cached(p).map_err(|e| e.context(ctx()))?.is_none() {
            all_cached = false;
        }
    }
    if bases.is_empty() && !all_cached {
        let msg = if kernel.archive == "local" {
            "an ingested package is no longer in the cache; ingest it again".to_owned()
        } else {
            format!(
                "no {} mirror configured (apt sources or --mirror)",
                kernel.archive
            )
        };
        return Err(Error::Kernel {
            release: kernel.release.clone(),
            msg,
        });
    }
    let start = Instant::now();
    let fetch_all = |pkgs: &[PackageEntry]| fetch_all(cache, http, bases, pkgs, jobs);
    let (release, packages, debs) = match fetch_with_fallbacks(cache, http, bases, kernel, jobs) {
        Ok((pkgs, debs)) => (kernel.release.clone(), pkgs, debs),
        Err(e) if e.is_not_found() => {
            let (rel, pkgs) = substitute(http, bases, kernel, &e).map_err(|e| e.context(ctx()))?;
            let debs = fetch_all(&pkgs).map_err(|e| {
                e.context(format!("kernel {rel} (substitute for {})", kernel.release))
            })?;
            (rel, pkgs, debs)
        }
        Err(e) => return Err(e.context(ctx())),
    };
    log::info!(
        "kernel {release}: {} packages verified in {:.1?}",
        debs.len(),
        start.elapsed()
    );
    let tree = unpack(cache, &release, &packages, &debs)
        .map_err(|e| e.context(format!("unpacking kernel {release}")))?;
    log::info!(
        "kernel {release}: ready at {} after {:.1?}",
        tree.root.display(),
        start.elapsed()
    );
    Ok(tree)
}

/// Fetch every package, up to `jobs` at a time; the paths come back in the
/// order of `packages`. The first error (in package order) is returned.
pub(crate) fn fetch_all(
    cache: &Cache,
    http: &Http,
    bases: &[String],
    packages: &[PackageEntry],
    jobs: usize,
) -> Result<Vec<PathBuf>> {
    fetch_each(cache, http, bases, packages, jobs)
        .into_iter()
        .collect()
}

/// Fetch every package, up to `jobs` at a time: one result per package, in
/// the order of `packages`.
fn fetch_each(
    cache: &Cache,
    http: &Http,
    bases: &[String],
    packages: &[PackageEntry],
    jobs: usize,
) -> Vec<Result<PathBuf>> {
    let jobs = jobs.clamp(1, packages.len().max(1));
    if jobs == 1 {
        return packages
            .iter()
            .map(|p| cache.fetch(http, bases, p))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<PathBuf>>>> = packages
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = packages.get(i) else { break };
                let r = cache.fetch(http, bases, p);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .zip(packages)
        .map(|(m, p)| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(Error::Unfinished { package: p.label() }))
        })
        .collect()
}

/// Find the substitute of a kernel whose pinned files are gone.
fn substitute(
    http: &Http,
    bases: &[String],
    kernel: &PinnedKernel,
    cause: &Error,
) -> Result<(String, Vec<PackageEntry>)> {
    let arch =
        crate::discover::release_arch(&kernel.release).unwrap_or(crate::discover::Arch::X86_64);
    let mut index = None;
    let mut last = None;
    for base in bases {
        match index::fetch_packages(http, base, &kernel.suite, arch.debian()) {
            Ok(i) => {
                index = Some(i);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let index = match (index, last) {
        (Some(i), _) => i,
        (None, Some(e)) => {
            return Err(e.context(format!(
                "looking for a substitute in {} after: {cause}",
                kernel.suite
            )))
        }
        (None, None) => {
            return Err(Error::Kernel {
                release: kernel.release.clone(),
                msg: format!("{cause}; and no mirror to look for a substitute"),
            })
        }
    };
    let (rel, pkgs) = pick_substitute(&index, kernel).ok_or_else(|| Error::Kernel {
        release: kernel.release.clone(),
        msg: format!(
            "{cause}; and no kernel of the same series in the current {} index",
            kernel.suite
        ),
    })?;
    let names: Vec<String> = pkgs.iter().map(PackageEntry::label).collect();
    let msg = format!(
        "WARNING: pinned kernel {} is gone from the archive ({cause}); substituting {rel} from the current {} index: {}. Regenerate tests/kernels.toml (cargo run -p kmlink-crawler --example pin).",
        kernel.release,
        kernel.suite,
        names.join(", ")
    );
    log::warn!("{msg}");
    Ok((rel, pkgs))
}

/// The parts of a release that must stay the same for a substitute, and the
/// key that orders releases of one series.
#[derive(Debug, PartialEq, Eq)]
struct Shape<'a> {
    major_minor: &'a str,
    local: &'a str,
    has_abi: bool,
    flavour: &'a str,
}

/// `6.1.0-47-amd64` -> (6.1, "", abi, amd64) ordered by `6.1.0.47`;
/// `6.12.107+deb13-cloud-amd64` -> (6.12, deb13, no abi, cloud-amd64)
/// ordered by `6.12.107`.
fn shape(release: &str) -> Option<(Shape<'_>, String)> {
    let p = kmlink_debian::release::parse_release(release)?;
    let key = match p.abi {
        Some(a) => format!("{}.{a}", p.upstream),
        None => p.upstream.to_owned(),
    };
    Some((
        Shape {
            major_minor: p.major_minor(),
            local: p.local.unwrap_or(""),
            has_abi: p.abi.is_some(),
            flavour: p.flavour,
        },
        key,
    ))
}

/// The newest release of the same series as `kernel.release` for which the
/// index has every pinned package name (release substituted), with those
/// entries (newest version of each name).
fn pick_substitute(
    index: &[PackageEntry],
    kernel: &PinnedKernel,
) -> Option<(String, Vec<PackageEntry>)> {
    let rel = &kernel.release;
    let (want, _) = shape(rel)?;
    let templates: Vec<(&str, &str)> = kernel
        .packages
        .iter()
        .filter_map(|p| p.package.split_once(rel.as_str()))
        .collect();
    let (pre, suf) = *templates.first()?;
    let mut candidates: Vec<(String, String)> = index
        .iter()
        .filter_map(|e| e.package.strip_prefix(pre)?.strip_suffix(suf))
        .filter_map(|r| {
            let (s, key) = shape(r)?;
            (s == want).then(|| (r.to_owned(), key))
        })
        .collect();
    candidates.sort_by(|a, b| version::compare(&b.1, &a.1));
    candidates.dedup();
    'cand: for (cand, _) in candidates {
        let mut out = Vec::new();
        for p in &kernel.packages {
            let name = match p.package.split_once(rel.as_str()) {
                Some((a, b)) => format!("{a}{cand}{b}"),
                None => p.package.clone(),
            };
            let newest = index
                .iter()
                .filter(|e| e.package == name)
                .max_by(|a, b| version::compare(&a.version, &b.version));
            match newest {
                Some(e) => out.push(e.clone()),
                None => continue 'cand,
            }
        }
        return Some((cand, out));
    }
    None
}

fn marker_text(packages: &[PackageEntry]) -> String {
    packages
        .iter()
        .map(|p| format!("{} {} {}\n", p.sha256, p.package, p.version))
        .collect()
}

/// Whether `path` should be unpacked for kernel `rel`.
fn wanted(rel: &str, path: &str) -> bool {
    if let Some(f) = path.strip_prefix("boot/") {
        return [
            format!("vmlinuz-{rel}"),
            format!("config-{rel}"),
            format!("System.map-{rel}"),
        ]
        .iter()
        .any(|w| w == f);
    }
    if let Some(f) = path.strip_prefix(&format!("usr/src/linux-headers-{rel}/")) {
        return f == "Module.symvers" || f == ".config";
    }
    let inner = path
        .strip_prefix("usr/")
        .unwrap_or(path)
        .strip_prefix("lib/modules/")
        .and_then(|p| p.strip_prefix(rel))
        .and_then(|p| p.strip_prefix('/'));
    match inner {
        // `build` and `source` are symlinks into /usr/src on the host.
        Some(p) => {
            let top = p.split('/').next().unwrap_or("");
            top != "build" && top != "source"
        }
        None => false,
    }
}

fn first_existing(cands: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    cands.into_iter().find(|p| p.is_file())
}

/// Locate the pieces of an unpacked tree.
pub(crate) fn locate(root: &Path, rel: &str, packages: &[PackageEntry]) -> Result<KernelTree> {
    let mods = [
        root.join("lib/modules").join(rel),
        root.join("usr/lib/modules").join(rel),
    ];
    let modules_dir = mods
        .iter()
        .find(|d| d.join("kernel").is_dir())
        .or_else(|| mods.iter().find(|d| d.is_dir()))
        .cloned();
    let headers = root.join("usr/src").join(format!("linux-headers-{rel}"));
    let vmlinuz = first_existing([
        root.join("boot").join(format!("vmlinuz-{rel}")),
        mods[1].join("vmlinuz"),
        mods[0].join("vmlinuz"),
    ]);
    let config = first_existing([
        root.join("boot").join(format!("config-{rel}")),
        mods[1].join("config"),
        mods[0].join("config"),
        headers.join(".config"),
    ]);
    let missing = |what: &str| Error::Kernel {
        release: rel.to_owned(),
        msg: format!(
            "the pinned packages ({}) have no {what}",
            packages
                .iter()
                .map(|p| p.package.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Ok(KernelTree {
        release: rel.to_owned(),
        root: root.to_owned(),
        vmlinuz: vmlinuz.ok_or_else(|| missing("vmlinuz"))?,
        config,
        modules_dir: modules_dir.ok_or_else(|| missing("lib/modules directory"))?,
        symvers: first_existing([headers.join("Module.symvers")]),
        packages: packages.to_vec(),
    })
}

fn unpack(
    cache: &Cache,
    rel: &str,
    packages: &[PackageEntry],
    debs: &[PathBuf],
) -> Result<KernelTree> {
    if rel.is_empty() || rel.contains('/') || rel.starts_with('.') {
        return Err(Error::Kernel {
            release: rel.to_owned(),
            msg: "release is not a plain file name".into(),
        });
    }
    let dest = cache.root.join("kernels").join(rel);
    let expected = marker_text(packages);
    let complete =
        |d: &Path| std::fs::read_to_string(d.join(MARKER)).ok().as_deref() == Some(&*expected);
    if complete(&dest) {
        log::info!("kernel {rel}: {} is up to date", dest.display());
        return locate(&dest, rel, packages);
    }
    // One whose marker differs (other packages, or cut short) is replaced
    // when this one is published.
    let tree = Unpublished::beside(&dest)?;
    let tmp = tree.path();
    for (deb_path, p) in debs.iter().zip(packages) {
        let t = Instant::now();
        let n = deb::extract(deb_path, tmp, &mut |path| wanted(rel, path))
            .map_err(|e| e.context(format!("extracting {}", p.label())))?
            .len();
        log::info!(
            "kernel {rel}: {} -> {n} files in {:.1?}",
            p.package,
            t.elapsed()
        );
    }
    let has_modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .any(|d| tmp.join(d).join(rel).is_dir());
    if !has_modules {
        let empty = tmp.join("usr/lib/modules").join(rel);
        std::fs::create_dir_all(&empty).map_err(|e| Error::io("creating", &empty, e))?;
        log::warn!(
            "kernel {rel}: its packages ({}) carry no modules (the modules package is gone from the archive); modules_dir is empty",
            packages.iter().map(|p| p.package.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    locate(tmp, rel, packages)?;
    let marker = tmp.join(MARKER);
    std::fs::write(&marker, &expected).map_err(|e| Error::io("writing", &marker, e))?;
    tree.publish(complete)?;
    locate(&dest, rel, packages)
}

/// Where a boot image lives inside a kernel's packages.
fn image_paths(rel: &str) -> [String; 3] {
    [
        format!("boot/vmlinuz-{rel}"),
        format!("usr/lib/modules/{rel}/vmlinuz"),
        format!("lib/modules/{rel}/vmlinuz"),
    ]
}

/// Fetch (verified) only the package carrying `kernel`'s image and unpack
/// only `vmlinuz` into `<cache>/boot/<release>/vmlinuz`: what a VM boot
/// needs, at a fraction of a full tree's disk (the matrix over the whole
/// archive keeps 225 of these). An up-to-date full tree
/// (`<cache>/kernels/<release>`) is used as it is.
///
/// With `evict`, a package this call downloaded is removed from the cache
/// again once the image is out. The image is written beside its final path
/// and renamed into place with a marker naming the package's SHA256, so an
/// interrupted run leaves nothing a later run would trust.
pub fn boot_image(
    cache: &Cache,
    http: &Http,
    mirrors: &Mirrors,
    kernel: &PinnedKernel,
    evict: bool,
) -> Result<PathBuf> {
    check_kernel(kernel)?;
    let rel = &kernel.release;
    let full = cache.root.join("kernels").join(rel);
    if std::fs::read_to_string(full.join(MARKER)).ok().as_deref()
        == Some(marker_text(&kernel.packages).as_str())
    {
        return Ok(locate(&full, rel, &kernel.packages)?.vmlinuz);
    }
    let boot = cache.root.join("boot");
    let dest = boot.join(rel);
    let image = dest.join("vmlinuz");
    // Packages that can carry the image, most likely first.
    let mut cands: Vec<&PackageEntry> = kernel.packages.iter().collect();
    cands.sort_by_key(|p| {
        if p.package.starts_with("linux-binary-") {
            0
        } else if p.package.starts_with("linux-image-") {
            1
        } else {
            2
        }
    });
    // A boot directory holding the image of one of them (or of a twin).
    let complete = |d: &Path| {
        let marker = std::fs::read_to_string(d.join(MARKER)).ok();
        d.join("vmlinuz").is_file()
            && cands
                .iter()
                .copied()
                .chain(&kernel.fallbacks)
                .any(|p| marker.as_deref() == Some(&*marker_text(std::slice::from_ref(p))))
    };
    if complete(&dest) {
        return Ok(image);
    }
    let bases = mirrors.for_kind(&kernel.archive).unwrap_or(&[]);
    let wanted = image_paths(rel);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    for p in cands.iter().copied() {
        // A package gone from the pool is replaced by its twin, as a full
        // fetch does ([`fetch_with_fallbacks`]).
        let mut was_cached = cache.cached(p)?.is_some();
        let (p, fetched) = match cache.fetch(http, bases, p) {
            Err(e) if e.is_not_found() => match fallback_for(p, &kernel.fallbacks) {
                Some(twin) => {
                    log::warn!(
                        "kernel {rel}: {} is gone from the archive; using {} (the same vmlinuz)",
                        p.filename,
                        twin.label()
                    );
                    was_cached = cache.cached(twin)?.is_some();
                    (twin, cache.fetch(http, bases, twin))
                }
                None => (p, Err(e)),
            },
            r => (p, r),
        };
        let deb_path = fetched.map_err(|e| e.context(format!("kernel {rel}")))?;
        let staged = Unpublished::beside(&dest)?;
        // Only one of the candidate paths exists: stop at the first.
        let out = deb::extract_until(
            &deb_path,
            staged.path(),
            &mut |path| wanted.contains(&path),
            &mut |_| true,
        )
        .map_err(|e| e.context(format!("extracting {}", p.label())));
        if evict && !was_cached {
            cache.remove(p)?;
        }
        let Some(found) = out?.into_iter().next() else {
            continue;
        };
        let vmlinuz = staged.path().join("vmlinuz");
        std::fs::rename(&found, &vmlinuz).map_err(|e| Error::io("moving", &found, e))?;
        let marker = staged.path().join(MARKER);
        std::fs::write(&marker, marker_text(std::slice::from_ref(p)))
            .map_err(|e| Error::io("writing", &marker, e))?;
        staged.publish(complete)?;
        return Ok(image);
    }
    Err(Error::Kernel {
        release: rel.clone(),
        msg: format!(
            "none of its packages ({}) carries a kernel image",
            kernel
                .packages
                .iter()
                .map(|p| p.package.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> PackageEntry {
        PackageEntry {
            package: name.into(),
            version: version.into(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: "a".repeat(64),
            depends: String::new(),
            source: None,
        }
    }

    #[test]
    fn fallback_is_the_signed_twin_only() {
        let fb = [
            entry("linux-image-5.10.0-46-cloud-amd64", "5.10.261-1"),
            entry("linux-image-5.10.0-46-cloud-amd64", "5.10.262-1"),
            entry("linux-image-5.10.0-46-rt-amd64", "5.10.262-1"),
        ];
        let twin = |name: &str| {
            fallback_for(&entry(name, "5.10.262-1"), &fb)
                .map(|p| (p.package.as_str(), p.version.as_str()))
        };
        assert_eq!(
            twin("linux-image-5.10.0-46-cloud-amd64-unsigned"),
            Some(("linux-image-5.10.0-46-cloud-amd64", "5.10.262-1"))
        );
        assert_eq!(twin("linux-image-5.10.0-46-amd64-unsigned"), None);
        assert_eq!(twin("linux-headers-5.10.0-46-cloud-amd64"), None);
        assert_eq!(twin("linux-image-5.10.0-46-cloud-amd64"), None);
        assert_eq!(twin("linux-modules-unsigned"), None);
    }

    #[test]
    fn shapes() {
        let (s, k) = shape("6.1.0-47-amd64").unwrap();
        assert_eq!(
            s,
            Shape {
                major_minor: "6.1",
                local: "",
                has_abi: true,
                flavour: "amd64"
            }
        );
        assert_eq!(k, "6.1.0.47");
        let (s, k) = shape("6.12.107+deb13-cloud-amd64").unwrap();
        assert_eq!(
            s,
            Shape {
                major_minor: "6.12",
                local: "deb13",
                has_abi: false,
                flavour: "cloud-amd64"
            }
        );
        assert_eq!(k, "6.12.107");
        assert!(shape("amd64").is_none());
    }

    #[test]
    fn picks_newest_same_series() {
        let index = vec![
            entry("linux-image-6.1.0-9-amd64-unsigned", "6.1.27-1"),
            entry("linux-image-6.1.0-50-amd64-unsigned", "6.1.170-1"),
            entry("linux-image-6.1.0-50-cloud-amd64-unsigned", "6.1.170-1"),
            entry("linux-image-6.1.0-51-amd64-unsigned", "6.1.171-1"), // no headers: skipped
            entry("linux-headers-6.1.0-50-amd64", "6.1.170-1"),
            entry("linux-headers-6.1.0-9-amd64", "6.1.27-1"),
            entry("linux-image-6.2.0-99-amd64-unsigned", "6.2.1-1"),
        ];
        let k = PinnedKernel {
            release: "6.1.0-47-amd64".into(),
            suite: "bookworm".into(),
            archive: "archive".into(),
            packages: vec![
                entry("linux-image-6.1.0-47-amd64-unsigned", "6.1.158-1"),
                entry("linux-headers-6.1.0-47-amd64", "6.1.158-1"),
            ],
            fallbacks: Vec::new(),
        };
        let (rel, pkgs) = pick_substitute(&index, &k).unwrap();
        assert_eq!(rel, "6.1.0-50-amd64");
        assert_eq!(pkgs[0].package, "linux-image-6.1.0-50-amd64-unsigned");
        assert_eq!(pkgs[1].package, "linux-headers-6.1.0-50-amd64");
        assert!(pick_substitute(&index[6..], &k).is_none());
    }

    #[test]
    fn picks_newest_point_release() {
        let index = vec![
            entry("linux-binary-7.3.9+deb13-amd64", "7.3.9-1"),
            entry("linux-binary-7.3.10+deb13-amd64", "7.3.10-1"),
            entry("linux-binary-7.4.1+deb13-amd64", "7.4.1-1"),
        ];
        let k = PinnedKernel {
            release: "7.3.4+deb13-amd64".into(),
            suite: "trixie-backports".into(),
            archive: "archive".into(),
            packages: vec![entry("linux-binary-7.3.4+deb13-amd64", "7.3.4-1")],
            fallbacks: Vec::new(),
        };
        assert_eq!(pick_substitute(&index, &k).unwrap().0, "7.3.10+deb13-amd64");
    }

    #[test]
    fn selection() {
        let r = "6.1.0-47-amd64";
        assert!(wanted(r, "boot/vmlinuz-6.1.0-47-amd64"));
        assert!(!wanted(r, "boot/vmlinuz-6.1.0-48-amd64"));
        assert!(wanted(r, "lib/modules/6.1.0-47-amd64/kernel/fs/x.ko"));
        assert!(wanted(r, "usr/lib/modules/6.1.0-47-amd64/modules.order"));
        assert!(!wanted(r, "lib/modules/6.1.0-47-amd64/build"));
        assert!(!wanted(r, "lib/modules/6.1.0-47-amd64-x/kernel/a.ko"));
        assert!(wanted(
            r,
            "usr/src/linux-headers-6.1.0-47-amd64/Module.symvers"
        ));
        assert!(!wanted(r, "usr/src/linux-headers-6.1.0-47-amd64/Makefile"));
        assert!(!wanted(r, "usr/share/doc/x"));
    }

    #[test]
    fn load_checks() {
        let d = tempfile::tempdir().unwrap();
        let k = PinnedKernel {
            release: "6.1.0-47-amd64".into(),
            suite: "bookworm".into(),
            archive: "archive".into(),
            packages: vec![entry("linux-image-6.1.0-47-amd64-unsigned", "6.1.158-1")],
            fallbacks: Vec::new(),
        };
        let p = d.path().join("k.toml");
        std::fs::write(&p, to_toml(std::slice::from_ref(&k)).unwrap()).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back[0].packages, k.packages);
        let mut bad = k.clone();
        bad.archive = "elsewhere".into();
        std::fs::write(&p, to_toml(&[bad]).unwrap()).unwrap();
        assert!(kmlink_errors::chain(&load(&p).unwrap_err()).contains("archive must be"));
        std::fs::write(&p, "kernel = 3").unwrap();
        assert!(kmlink_errors::chain(&load(&p).unwrap_err()).contains("k.toml"));
    }
}
