//! Content-addressed download cache.
//!
//! Layout under the root (`$KMLINK_CACHE`, else `~/.cache/kmlink`):
//!
//! - `debs/<sha256>`: a package file, named by its hex SHA256;
//! - `debs/<sha256>.ok`: marker written once the file was hashed and found
//!   correct, holding the file's identity then (size, inode, modification
//!   and change times); a later use re-hashes the file unless it is the
//!   same file untouched since, so a copy corrupted after its check is
//!   found, deleted and fetched again;
//! - `kernels/<release>/`: unpacked kernels, see [`crate::kernel_tree`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::http::join_url;
use crate::http::retrying;
use crate::index::PackageEntry;
use crate::sha256::hash_file;
use crate::{Error, Http, Result};
use kmlink_errors::Chain;

/// What a download reports to a [`Cache`]'s [`Listener`].
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A download of `entry` from `url` starts with `done` bytes already
    /// on disk (a resumed `.part`).
    Started {
        /// The package.
        entry: &'a PackageEntry,
        /// Where from.
        url: &'a str,
        /// Bytes already there.
        done: u64,
    },
    /// `bytes` more of `entry` arrived.
    Advanced {
        /// The package.
        entry: &'a PackageEntry,
        /// How many more.
        bytes: u64,
    },
    /// The download of `entry` ended (complete or not; verification
    /// follows).
    Finished {
        /// The package.
        entry: &'a PackageEntry,
        /// Where from.
        url: &'a str,
        /// How long it took.
        elapsed: std::time::Duration,
    },
}

/// Receives the [`Progress`] of downloads; called from the downloading
/// threads (parallel fetches call it concurrently).
pub type Listener = std::sync::Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// The download cache.
#[derive(Clone)]
pub struct Cache {
    /// The cache root directory.
    pub root: PathBuf,
    /// Who hears of downloads; without one they are log lines.
    listener: Option<Listener>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root)
            .field("listener", &self.listener.is_some())
            .finish()
    }
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
        Cache {
            root,
            listener: None,
        }
    }

    /// The same cache, reporting download progress to `listener` instead
    /// of logging each file.
    pub fn with_listener(mut self, listener: Listener) -> Self {
        self.listener = Some(listener);
        self
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
                    log::warn!("{}", Chain(&e));
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

    /// Remove the cached file of `entry` (and its verification marker), if
    /// there. Returns the bytes freed.
    pub fn remove(&self, entry: &PackageEntry) -> Result<u64> {
        entry.validate()?;
        let path = self.deb_path(entry);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        for p in [ok_marker(&path), path] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &p, e)),
            }
        }
        Ok(size)
    }

    /// The path of the verified cached file of `entry`, if it is there (a
    /// corrupt copy is removed and `None` returned). No network.
    pub fn cached(&self, entry: &PackageEntry) -> Result<Option<PathBuf>> {
        entry.validate()?;
        let path = self.deb_path(entry);
        Ok(self.verify_cached(&path, entry)?.then_some(path))
    }

    /// Copy a local file into the cache under its SHA256 (hashing while
    /// copying, through a temporary file renamed into place). Returns the
    /// SHA256, the size and the cached path. An identical file already
    /// cached is kept.
    pub fn store_file(&self, src: &Path) -> Result<(String, u64, PathBuf)> {
        let dir = self.debs_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let mut input = File::open(src).map_err(|e| Error::io("opening", src, e))?;
        let mut part = tempfile::Builder::new()
            .prefix(".ingest.")
            .suffix(".part")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("creating a temporary file in", &dir, e))?;
        // Locked while this run lives (crate::sweep removes it after a crash).
        let _ = part.as_file().try_lock();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::io("reading", src, e))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
            part.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", part.path(), e))?;
        }
        let sha = hex::encode(hasher.finalize());
        let path = dir.join(&sha);
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == size)
            && (marker_valid(&path) || hash_file(&path)? == sha);
        if !present {
            part.as_file()
                .sync_all()
                .map_err(|e| Error::io("syncing", part.path(), e))?;
            part.persist(&path)
                .map_err(|e| Error::io("renaming into place", &path, e.error))?;
        }
        if !marker_valid(&path) {
            write_marker(&path)?;
        }
        Ok((sha, size, path))
    }

    /// Remove a file [`Cache::store_file`] stored (and its marker), for a
    /// caller that found it unusable. Best effort: a file that cannot be
    /// removed is only logged.
    pub fn discard_stored(&self, stored: &Path) {
        for p in [ok_marker(stored), stored.to_owned()] {
            if let Err(e) = remove_if_exists(&p) {
                log::warn!("{}", Chain(&e));
            }
        }
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
        } else if marker_valid(path) {
            None
        } else {
            let actual = hash_file(path)?;
            (actual != entry.sha256).then(|| format!("SHA256 {actual} instead of {}", entry.sha256))
        };
        match problem {
            None => {
                if !marker_valid(path) {
                    write_marker(path)?;
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

    /// Download `url` into `<sha256>.part`, resuming what an interrupted
    /// earlier try or run left there (HTTP Range), then verify the whole
    /// file and rename it into place.
    ///
    /// The `.part` file is locked while written; if another process holds
    /// it, this one downloads into a private temporary file instead. A
    /// transfer cut short (read error) keeps the `.part` for the next try;
    /// a complete answer of the wrong size or hash deletes it. Nothing is
    /// trusted before the final check of size and SHA256 of the whole file.
    fn download(&self, http: &Http, url: &str, entry: &PackageEntry, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let part_path = dir.join(format!("{}.part", entry.sha256));
        let shared = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part_path)
            .map_err(|e| Error::io("opening", &part_path, e))?;
        match shared.try_lock() {
            Ok(()) => {
                let r = self.download_into(http, url, entry, &shared, &part_path);
                let r = r.and_then(|()| {
                    std::fs::rename(&part_path, path)
                        .map_err(|e| Error::io("renaming into place", path, e))
                });
                if r.as_ref()
                    .is_err_and(|e| !matches!(e, Error::HttpBody { .. } | Error::Http { .. }))
                {
                    let _ = std::fs::remove_file(&part_path);
                }
                let _ = shared.unlock();
                r?;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                log::info!(
                    "{} is being downloaded by another process; downloading separately",
                    part_path.display()
                );
                let private = tempfile::Builder::new()
                    .prefix(&format!("{}.", entry.sha256))
                    .suffix(".part")
                    .tempfile_in(dir)
                    .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
                let _ = private.as_file().try_lock();
                self.download_into(http, url, entry, private.as_file(), private.path())?;
                private
                    .persist(path)
                    .map_err(|e| Error::io("renaming into place", path, e.error))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("locking", &part_path, e))
            }
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        write_marker(path)
    }

    /// Fill `part` (resuming from its current length) and verify it.
    fn download_into(
        &self,
        http: &Http,
        url: &str,
        entry: &PackageEntry,
        mut part: &File,
        part_path: &Path,
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let io = |op: &'static str| move |e| Error::io(op, part_path, e);
        let mut have = part.metadata().map_err(io("inspecting"))?.len();
        if have >= entry.size {
            // Complete (or too long): verify from scratch below / restart.
            if have > entry.size {
                part.set_len(0).map_err(io("truncating"))?;
                have = 0;
            }
        }
        let mut hasher = Sha256::new();
        if have > 0 {
            part.seek(SeekFrom::Start(0)).map_err(io("seeking"))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = have;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = part.read(&mut buf[..want]).map_err(io("reading"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
        }
        let mut got = have;
        if have < entry.size {
            let (mut resp, resumed) = http.get_from(url, have, entry.size)?;
            if have > 0 && !resumed {
                // The server sent the whole file: start over.
                log::info!("{url}: server ignored the range request; downloading from the start");
                part.set_len(0).map_err(io("truncating"))?;
                hasher = Sha256::new();
                got = 0;
            } else if have > 0 {
                log::info!("{url}: resuming at byte {have} of {}", entry.size);
            }
            part.seek(SeekFrom::Start(got)).map_err(io("seeking"))?;
            let progress = Reporter::start(self.listener.as_ref(), url, entry, got);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match resp.read(&mut buf) {
                    Ok(n) => n,
                    Err(source) => {
                        progress.finish();
                        return Err(Error::HttpBody {
                            url: url.to_owned(),
                            source,
                        });
                    }
                };
                if n == 0 {
                    break;
                }
                got += n as u64;
                if got > entry.size {
                    break; // reported as a size mismatch below
                }
                hasher.update(&buf[..n]);
                part.write_all(&buf[..n]).map_err(io("writing"))?;
                progress.advance(n as u64);
            }
            progress.finish();
        }
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
        part.sync_all().map_err(io("syncing"))?;
        Ok(())
    }
}

fn ok_marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".ok");
    PathBuf::from(s)
}

/// The identity of `path` as the `.ok` marker records it: size, device,
/// inode, modification and change times (nanoseconds). Any write to the
/// file changes its change time, which no user can set back.
fn file_stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    m.is_file().then(|| {
        format!(
            "{} {} {} {}.{:09} {}.{:09}\n",
            m.len(),
            m.dev(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )
    })
}

/// Whether the `.ok` marker of `path` records the file as it is now.
fn marker_valid(path: &Path) -> bool {
    let Some(now) = file_stamp(path) else {
        return false;
    };
    let mut buf = Vec::new();
    File::open(ok_marker(path))
        .and_then(|f| f.take(256).read_to_end(&mut buf))
        .is_ok()
        && buf == now.as_bytes()
}

/// Record `path` (just hashed and found correct) as verified.
fn write_marker(path: &Path) -> Result<()> {
    let marker = ok_marker(path);
    let stamp = file_stamp(path).ok_or_else(|| {
        Error::io(
            "inspecting",
            path,
            std::io::Error::other("not a regular file"),
        )
    })?;
    kmlink_fsio::write_file(&marker, stamp.as_bytes(), kmlink_fsio::Durability::Visible)
        .map_err(|e| Error::io("writing", &marker, e))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

/// One download's reporting: to the listener, or as log lines.
struct Reporter<'a> {
    listener: Option<&'a Listener>,
    url: &'a str,
    entry: &'a PackageEntry,
    started: std::time::Instant,
}

impl<'a> Reporter<'a> {
    fn start(
        listener: Option<&'a Listener>,
        url: &'a str,
        entry: &'a PackageEntry,
        done: u64,
    ) -> Reporter<'a> {
        match listener {
            Some(l) => l(Progress::Started { entry, url, done }),
            None => log::info!("fetching {url} ({} bytes)", entry.size),
        }
        Reporter {
            listener,
            url,
            entry,
            started: std::time::Instant::now(),
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(l) = self.listener {
            l(Progress::Advanced {
                entry: self.entry,
                bytes,
            });
        }
    }

    fn finish(&self) {
        let elapsed = self.started.elapsed();
        match self.listener {
            Some(l) => l(Progress::Finished {
                entry: self.entry,
                url: self.url,
                elapsed,
            }),
            None => log::info!("fetched {} in {elapsed:.1?}", self.url),
        }
    }
}
