//! Content-addressed download cache.
//!
//! Layout under the root (`$KMLINK_CACHE`, else `~/.cache/kmlink`):
//!
//! - `debs/<sha256>`: a package file, named by its hex SHA256;
//! - `debs/<sha256>.ok`: marker written once the file was hashed and found
//!   correct (later uses only check the size);
//! - `kernels/<release>/`: unpacked kernels, see [`crate::pinned`].

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::http::join_url;
use crate::index::{retrying, PackageEntry};
use crate::{Error, Http, Result};

/// The download cache.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The cache root directory.
    pub root: PathBuf,
}

impl Cache {
    /// `$KMLINK_CACHE` if set and non-empty, else `$HOME/.cache/kmlink`
    /// (else `<temp dir>/kmlink-cache` when there is no home).
    pub fn default_root() -> PathBuf {
        if let Some(p) = std::env::var_os("KMLINK_CACHE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(h) => PathBuf::from(h).join(".cache/kmlink"),
            None => std::env::temp_dir().join("kmlink-cache"),
        }
    }

    /// A cache rooted at `root` (created on first use).
    pub fn new(root: PathBuf) -> Self {
        Cache { root }
    }

    /// Directory of the package files.
    pub fn debs_dir(&self) -> PathBuf {
        self.root.join("debs")
    }

    /// Where the file of `entry` lives (whether or not it is there yet).
    pub fn deb_path(&self, entry: &PackageEntry) -> PathBuf {
        self.debs_dir().join(&entry.sha256)
    }

    /// Return the path of the verified file of `entry`, downloading
    /// `<base_uri>/<filename>` if it is absent.
    ///
    /// A download goes to a `.part` temporary file in the same directory, is
    /// checked for size and SHA256, fsynced and renamed into place; a failed
    /// one leaves nothing behind. A cached file is re-verified before use
    /// (its size always, its SHA256 once, remembered by a `<sha256>.ok`
    /// marker); a corrupt one is deleted and fetched again.
    ///
    /// Each base URI is tried in turn, each up to [`Http::tries`] times with
    /// backoff. If every base URI answers 404 the error is
    /// [`Error::NotFound`]; otherwise the last error is returned.
    pub fn fetch(
        &self,
        http: &Http,
        base_uris: &[String],
        entry: &PackageEntry,
    ) -> Result<PathBuf> {
        entry.validate()?;
        let dir = self.debs_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let path = self.deb_path(entry);
        if self.verify_cached(&path, entry)? {
            return Ok(path);
        }
        let mut last = None;
        let mut not_found = Vec::new();
        for base in base_uris {
            let url = join_url(base, &entry.filename);
            match retrying(http, &url, |u| self.download(http, u, entry, &path)) {
                Ok(()) => return Ok(path),
                Err(e) if e.is_not_found() => {
                    log::warn!("{}: {url}: HTTP 404", entry.label());
                    not_found.push(url);
                }
                Err(e) => {
                    log::warn!("{e}");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => e,
            None if not_found.is_empty() => Error::BadEntry {
                package: entry.label(),
                msg: "no mirror to fetch it from".into(),
            },
            None => Error::NotFound {
                package: entry.label(),
                urls: not_found,
            },
        })
    }

    /// Whether a good copy is cached; removes a corrupt one.
    fn verify_cached(&self, path: &Path, entry: &PackageEntry) -> Result<bool> {
        let marker = ok_marker(path);
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                remove_if_exists(&marker)?;
                return Ok(false);
            }
            Err(e) => return Err(Error::io("inspecting", path, e)),
        };
        let problem = if meta.len() != entry.size {
            Some(format!("size {} instead of {}", meta.len(), entry.size))
        } else if marker.exists() {
            None
        } else {
            let actual = hash_file(path)?;
            (actual != entry.sha256).then(|| format!("SHA256 {actual} instead of {}", entry.sha256))
        };
        match problem {
            None => {
                if !marker.exists() {
                    std::fs::write(&marker, b"").map_err(|e| Error::io("writing", &marker, e))?;
                }
                Ok(true)
            }
            Some(p) => {
                log::warn!(
                    "cached {} for {} is corrupt ({p}); deleting and fetching again",
                    path.display(),
                    entry.label()
                );
                remove_if_exists(&marker)?;
                remove_if_exists(path)?;
                Ok(false)
            }
        }
    }

    fn download(&self, http: &Http, url: &str, entry: &PackageEntry, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut part = tempfile::Builder::new()
            .prefix(&format!("{}.", entry.sha256))
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
        let mut resp = http.get(url)?;
        let progress = Progress::start(url, entry);
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = resp.read(&mut buf).map_err(|source| Error::HttpBody {
                url: url.to_owned(),
                source,
            })?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if got > entry.size {
                break; // reported as a size mismatch below
            }
            hasher.update(&buf[..n]);
            part.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", part.path(), e))?;
            progress.advance(n as u64);
        }
        progress.finish();
        if got != entry.size {
            // `got` stops counting just past `size` when the server sends more.
            return Err(Error::SizeMismatch {
                package: entry.label(),
                source_name: url.to_owned(),
                expected: entry.size,
                actual: got,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if actual != entry.sha256 {
            return Err(Error::HashMismatch {
                package: entry.label(),
                source_name: url.to_owned(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        part.as_file()
            .sync_all()
            .map_err(|e| Error::io("syncing", part.path(), e))?;
        part.persist(path)
            .map_err(|e| Error::io("renaming into place", path, e.error))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        let marker = ok_marker(path);
        std::fs::write(&marker, b"").map_err(|e| Error::io("writing", &marker, e))?;
        Ok(())
    }
}

fn ok_marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".ok");
    PathBuf::from(s)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// SHA256 of a file, lowercase hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A progress bar on a terminal, a log line per file otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Log(String, std::time::Instant),
}

impl Progress {
    fn start(url: &str, entry: &PackageEntry) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(entry.size);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(entry.package.clone());
            Progress::Bar(bar)
        } else {
            log::info!("fetching {url} ({} bytes)", entry.size);
            Progress::Log(url.to_owned(), std::time::Instant::now())
        }
    }

    fn advance(&self, n: u64) {
        if let Progress::Bar(b) = self {
            b.inc(n);
        }
    }

    fn finish(&self) {
        match self {
            Progress::Bar(b) => b.finish_and_clear(),
            Progress::Log(url, t) => log::info!("fetched {url} in {:.1?}", t.elapsed()),
        }
    }
}
