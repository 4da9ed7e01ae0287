//! The record store: one file (default `~/.local/share/kmlink/records.db`)
//! holding every record in the format of [`crate::image`], plus the raw BTF
//! of each kernel beside it (`<dir>/btf/<sha256>.zst`).
//!
//! Writes take an exclusive `flock` on `<file>.lock`, re-read the file,
//! write the new image to a temporary beside it, `fsync` it, rename it over
//! the old one and `fsync` the directory: a reader sees the old file or the
//! new one, never a mix, and a crash leaves at most a stale temporary, which
//! readers ignore and the next writer removes. Readers take no lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::image::{Image, ImageError, ImageStats, RecordKey, RecordSummary};
use crate::record::{KernelRecord, RECORD_SCHEMA};

/// Environment variable overriding [`Store::default_path`].
pub const DB_ENV: &str = "KMLINK_DB";

/// Everything that can go wrong with the store. Each variant names the file
/// and, for a record, its release and build, and says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] kmlink_errors::IoError),
    /// The file is not a store.
    #[error("{path} is not a kmlink record store ({what}); point KMLINK_DB or --db elsewhere, or move the file away")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What was found.
        what: String,
    },
    /// Written by a kmlink with another container format or record schema.
    #[error("{path}: {what}; use the kmlink that wrote it (it can `kmlink bundle export` the records), or move the file away and refill the store (`kmlink bundle install FILE`, `kmlink db add RELEASE`, `kmlink crawler refresh`)")]
    Version {
        /// The file.
        path: PathBuf,
        /// Which version disagrees.
        what: String,
    },
    /// The file's structure is damaged: no record can be trusted.
    #[error("{path} is damaged: {what}; move it away and refill the store (`kmlink bundle install FILE` or `kmlink crawler refresh`)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        what: String,
    },
    /// One record fails its checks.
    #[error("{path}: record #{index}, {key}, is damaged: {what}. Run `kmlink db verify --repair` to drop damaged records, then add it again (`kmlink db add {release}` or `kmlink bundle install FILE`)", release = key.release)]
    RecordDamaged {
        /// The file.
        path: PathBuf,
        /// Position in the store.
        index: usize,
        /// The record's identity as the index states it.
        key: Box<RecordKey>,
        /// What is wrong.
        what: String,
    },
    /// The store is damaged and refuses writes until repaired.
    #[error("{path} failed its checksum: refusing to write to it. Run `kmlink db verify` to see which records are damaged, and `kmlink db verify --repair` to drop them")]
    NeedsRepair {
        /// The file.
        path: PathBuf,
    },
    /// A record could not be encoded (a bug: the encoder misses a field).
    #[error("{key}: cannot store the record: {what}")]
    Encode {
        /// The record.
        key: Box<RecordKey>,
        /// What went wrong.
        what: String,
    },
    /// The intact records could not be written into a new store image (a
    /// bug, as for [`DbError::Encode`]).
    #[error("{path}: cannot rewrite the store from its intact records: {what}")]
    Rebuild {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        what: String,
    },
    /// A kept BTF blob is damaged.
    #[error("{path}: {what}; delete it and extract the kernel again")]
    BlobDamaged {
        /// The blob.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A record states a fact no kernel can have.
    #[error(transparent)]
    Invalid(Box<crate::record::RecordInvalid>),
    /// The records embedded in this binary cannot be read (a build problem).
    #[error("the record bundle built into kmlink is unreadable: {0}")]
    Embedded(String),
}

/// The store could not be opened: names the file, leaves the cause to
/// [`std::error::Error::source`]. What every command that opens a store
/// ([`Store::open_default`], [`Store::open_existing`]) says.
#[derive(Debug, thiserror::Error)]
#[error("opening the record store {}", path.display())]
pub struct OpenError {
    /// The store file.
    pub path: PathBuf,
    /// Why it could not be opened.
    #[source]
    pub source: DbError,
}

/// Result of [`Store::put_many`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Newly stored.
    pub added: Vec<RecordKey>,
    /// Replaced a different record of the same identity.
    pub replaced: Vec<RecordKey>,
    /// Already stored, byte-identical.
    pub unchanged: Vec<RecordKey>,
    /// Slim records not stored because a full record of the same identity is.
    pub kept_full: Vec<RecordKey>,
}

/// Result of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: usize,
    /// Records that decode and match their hash.
    pub ok: usize,
    /// Damaged records: (position, identity as indexed, what is wrong).
    pub damaged: Vec<(usize, RecordKey, String)>,
    /// Whether the file's trailing checksum matched.
    pub checksum_ok: bool,
    /// Kept BTF blobs checked.
    pub blobs: usize,
    /// Damaged BTF blobs: (file, what is wrong).
    pub damaged_blobs: Vec<(PathBuf, String)>,
}

impl VerifyReport {
    /// Nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.checksum_ok && self.damaged_blobs.is_empty()
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSource {
    /// The user's store.
    Store,
    /// The bundle built into the binary.
    Embedded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    image: Arc<Image>,
}

/// An open record store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cache: Mutex<Option<Cached>>,
}

impl Store {
    /// `$KMLINK_DB`, else `~/.local/share/kmlink/records.db`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os(DB_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/kmlink/records.db")
    }

    /// The store file `db` names (`--db`), else [`Store::default_path`].
    pub fn path_or_default(db: Option<&Path>) -> PathBuf {
        db.map(Path::to_path_buf)
            .unwrap_or_else(Store::default_path)
    }

    /// The one way a command opens the store: the file `db` names (`--db`),
    /// else [`Store::default_path`]; created (with its directory) if absent.
    pub fn open_default(db: Option<&Path>) -> Result<Store, OpenError> {
        let path = Store::path_or_default(db);
        Store::open(&path).map_err(|source| OpenError { path, source })
    }

    /// [`Store::open_default`] for a command that only reads the store:
    /// `None` when there is no file at all (nothing is created: not the
    /// file, not its directory).
    pub fn open_existing(db: Option<&Path>) -> Result<Option<Store>, OpenError> {
        let path = Store::path_or_default(db);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Store::open_default(Some(&path)).map(Some),
        }
    }

    /// Opens the store at `path`, creating it (and its directory) if absent.
    /// A file of another format or schema is an error here, not at first use.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, DbError> {
        let path = path.as_ref().to_path_buf();
        let store = Store {
            path,
            cache: Mutex::new(None),
        };
        if !store.path.exists() {
            let dir = store.dir();
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            store.write_locked(|image| {
                let _ = image;
                Ok(false)
            })?;
        }
        store.check_header()?;
        Ok(store)
    }

    /// Checks the file's header (magic, container format, record schema)
    /// without reading the rest: structural damage is found at first use.
    fn check_header(&self) -> Result<(), DbError> {
        use std::io::Read;
        let mut header = Vec::with_capacity(16);
        std::fs::File::open(&self.path)
            .and_then(|f| f.take(16).read_to_end(&mut header))
            .map_err(io("reading", &self.path))?;
        Image::check_header(&header).map_err(|e| image_error(&self.path, e))?;
        Ok(())
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn stamp(&self) -> Result<Stamp, DbError> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&self.path).map_err(io("reading", &self.path))?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            ino: m.ino(),
        })
    }

    fn parse(&self, bytes: &[u8]) -> Result<Image, DbError> {
        Image::parse(bytes).map_err(|e| image_error(&self.path, e))
    }

    /// The current image, re-read when the file changed.
    fn image(&self) -> Result<Arc<Image>, DbError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = self.stamp()?;
        if let Some(c) = cache.as_ref() {
            if c.stamp == stamp {
                return Ok(c.image.clone());
            }
        }
        let bytes = std::fs::read(&self.path).map_err(io("reading", &self.path))?;
        let image = Arc::new(self.parse(&bytes)?);
        *cache = Some(Cached {
            stamp,
            image: image.clone(),
        });
        Ok(image)
    }

    fn damaged(&self, image: &Image, index: usize, what: String) -> DbError {
        DbError::RecordDamaged {
            path: self.path.clone(),
            index,
            key: Box::new(image.entries[index].summary.key.clone()),
            what,
        }
    }

    fn decode(&self, image: &Image, index: usize) -> Result<KernelRecord, DbError> {
        image
            .decode(index)
            .map_err(|what| self.damaged(image, index, what))
    }

    /// Stores one record (atomically; storing it again changes nothing).
    pub fn put(&self, record: &KernelRecord) -> Result<(), DbError> {
        self.put_many(std::slice::from_ref(record)).map(|_| ())
    }

    /// Stores several records in one atomic write: all or none.
    ///
    /// A record whose identity is stored already replaces it, except that a
    /// slim record never replaces a full one.
    pub fn put_many(&self, records: &[KernelRecord]) -> Result<PutReport, DbError> {
        for record in records {
            record
                .validate()
                .map_err(|e| DbError::Invalid(Box::new(e)))?;
        }
        let mut report = PutReport::default();
        self.write_locked(|image| {
            report = PutReport::default();
            for record in records {
                let key = RecordKey::of(record);
                let encode = |what: String| DbError::Encode {
                    key: Box::new(key.clone()),
                    what,
                };
                let hash = crate::record::content_hash(record);
                let index = match image.position(&key) {
                    Some(i) if image.entries[i].hash == hash => {
                        report.unchanged.push(key);
                        continue;
                    }
                    Some(i) if !image.entries[i].summary.slim && crate::slim::is_slim(record) => {
                        report.kept_full.push(key);
                        continue;
                    }
                    Some(i) => {
                        image.replace(i, record).map_err(encode)?;
                        report.replaced.push(key.clone());
                        i
                    }
                    None => {
                        let i = image.push(record).map_err(encode)?;
                        report.added.push(key.clone());
                        i
                    }
                };
                // Read back what will be written: a field the encoder misses
                // or a damaged shared string fails here, not at a later read.
                match image.decode(index) {
                    Ok(back) if back == *record => {}
                    Ok(_) => return Err(encode("decodes to a different record".into())),
                    Err(what) => return Err(encode(format!("does not read back: {what}"))),
                }
            }
            Ok(!(report.added.is_empty() && report.replaced.is_empty()))
        })?;
        Ok(report)
    }

    /// Rewrites a format 1 store in the current format, and gives every
    /// record lacking one its projection for the built-in core (what
    /// [`Store::get_projected`] reads); any store write does the same.
    /// Returns whether the file was rewritten.
    pub fn upgrade(&self) -> Result<bool, DbError> {
        let before = self.stamp()?;
        self.write_locked(|_| Ok(false))?;
        Ok(self.stamp()? != before)
    }

    /// Takes the write lock, re-reads the file, lets `change` modify the
    /// image, and writes it back atomically if `change` says it changed.
    fn write_locked(
        &self,
        change: impl FnOnce(&mut Image) -> Result<bool, DbError>,
    ) -> Result<(), DbError> {
        let dir = self.dir();
        let lock_path = append(&self.path, ".lock");
        let lock = lock_exclusive(&lock_path)?;
        self.remove_stale_temporaries(&dir);
        let mut image = if self.path.exists() {
            let bytes = std::fs::read(&self.path).map_err(io("reading", &self.path))?;
            let image = self.parse(&bytes)?;
            if !image.checksum_ok {
                return Err(DbError::NeedsRepair {
                    path: self.path.clone(),
                });
            }
            image
        } else {
            Image::new()
        };
        let fresh = !self.path.exists();
        let upgrade = image.format != crate::image::STORE_FORMAT;
        let changed = change(&mut image)?;
        let projected = self.fill_projections(&mut image);
        if changed || fresh || upgrade || projected {
            atomic_write(&self.path, &image.encode_store())?;
        }
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(lock); // releases the flock
        Ok(())
    }

    /// Gives every record lacking one a projection for the built-in core
    /// (records stored by a format 1 store or by a kmlink with another
    /// core). Returns whether any was added.
    fn fill_projections(&self, image: &mut Image) -> bool {
        let core = crate::slim::builtin_core_key();
        let mut added = false;
        for i in 0..image.entries.len() {
            if image.entries[i]
                .projection
                .as_ref()
                .is_some_and(|p| p.core == core)
            {
                continue;
            }
            let projection = image
                .decode(i)
                .ok()
                .and_then(|r| crate::image::Projection::of(&r));
            if projection.is_some() {
                image.entries[i].projection = projection;
                added = true;
            }
        }
        added
    }

    /// The stored builds of `release` as projected for the core built into
    /// this binary (only the exports it may bind; see
    /// [`crate::slim::project_for_builtin_core`]), read without parsing the
    /// whole store: its header, directory and those projections only, each
    /// checked by its SHA256. `None` when there is no such fast answer (no
    /// build of `release`, a record without a projection for this core, a
    /// format 1 store, or anything failing a check): use [`Store::get`],
    /// which reads everything and names any damage.
    pub fn get_projected(&self, release: &str) -> Result<Option<Vec<KernelRecord>>, DbError> {
        let core = crate::slim::builtin_core_key();
        let file = std::fs::File::open(&self.path).map_err(io("reading", &self.path))?;
        let len = file.metadata().map_err(io("reading", &self.path))?.len();
        match crate::image::lookup_projected(&file, len, release, core)
            .map_err(|e| image_error(&self.path, e))?
        {
            crate::image::Lookup::Found(records) => Ok(Some(records)),
            crate::image::Lookup::Absent => Ok(None),
            crate::image::Lookup::Fallback(why) => {
                log::info!(
                    "{}: reading the whole store: {why} (`kmlink db verify --repair` adds missing projections)",
                    self.path.display()
                );
                Ok(None)
            }
        }
    }

    fn remove_stale_temporaries(&self, dir: &Path) {
        let prefix = kmlink_fsio::temporary_prefix(&self.path);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                log::info!(
                    "removing {} left by an interrupted write",
                    e.path().display()
                );
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Every stored build of `release`, each checked against its content hash.
    ///
    /// If the file fails its checksum, every record is checked, and a
    /// damaged one is an error when it may be one of `release`'s builds
    /// (its index names `release`, or no intact record of `release` exists).
    pub fn get(&self, release: &str) -> Result<Vec<KernelRecord>, DbError> {
        let image = self.image()?;
        let mut out = Vec::new();
        let mut damaged = None;
        for (i, e) in image.entries.iter().enumerate() {
            let named = e.summary.key.release == release;
            if !named && image.checksum_ok {
                continue;
            }
            match self.decode(&image, i) {
                Ok(r) if r.identity.release == release => out.push(r),
                Ok(_) => {}
                Err(err) => {
                    if named {
                        return Err(err);
                    }
                    log::warn!("{}", kmlink_errors::Chain(&err));
                    damaged.get_or_insert(err);
                }
            }
        }
        if out.is_empty() {
            if let Some(err) = damaged {
                return Err(err);
            }
        }
        out.sort_by(|a, b| RecordKey::of(a).cmp(&RecordKey::of(b)));
        Ok(out)
    }

    /// The record with exactly this identity.
    pub fn get_key(&self, key: &RecordKey) -> Result<Option<KernelRecord>, DbError> {
        Ok(self
            .get(&key.release)?
            .into_iter()
            .find(|r| RecordKey::of(r) == *key))
    }

    /// Every record, decoded and checked (for export).
    pub fn all(&self) -> Result<Vec<KernelRecord>, DbError> {
        let image = self.image()?;
        (0..image.entries.len())
            .map(|i| self.decode(&image, i))
            .collect()
    }

    /// What is stored, from the index (nothing decoded).
    pub fn list(&self) -> Result<Vec<RecordSummary>, DbError> {
        let image = self.image()?;
        let mut v: Vec<RecordSummary> = image.entries.iter().map(|e| e.summary.clone()).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    /// Whether the file's trailing checksum matches (what [`Store::list`]
    /// reads is the index only: a damaged record shows here, and in
    /// [`Store::verify`]).
    pub fn checksum_ok(&self) -> Result<bool, DbError> {
        Ok(self.image()?.checksum_ok)
    }

    /// Decodes and re-hashes every record and every kept BTF blob.
    pub fn verify(&self) -> Result<VerifyReport, DbError> {
        let image = self.image()?;
        let mut report = VerifyReport {
            records: image.entries.len(),
            checksum_ok: image.checksum_ok,
            ..Default::default()
        };
        for i in 0..image.entries.len() {
            let entry = &image.entries[i];
            let checked = image.decode(i).and_then(|_| match &entry.projection {
                Some(p) => p.decode(&entry.summary.key).map(|_| ()),
                None => Ok(()),
            });
            match checked {
                Ok(()) => report.ok += 1,
                Err(what) => report.damaged.push((i, entry.summary.key.clone(), what)),
            }
        }
        let btf_dir = self.btf_dir();
        if let Ok(entries) = std::fs::read_dir(&btf_dir) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let Some(sha) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".zst"))
                else {
                    continue;
                };
                report.blobs += 1;
                if let Err(e) = self.btf(sha) {
                    report
                        .damaged_blobs
                        .push((path.clone(), kmlink_errors::chain(&e)));
                }
            }
        }
        Ok(report)
    }

    /// Drops damaged records (and any garbage) by rewriting the store from
    /// the intact ones. Returns the identities dropped.
    pub fn repair(&self) -> Result<Vec<RecordKey>, DbError> {
        let mut dropped = Vec::new();
        let lock_path = append(&self.path, ".lock");
        let bytes = std::fs::read(&self.path).map_err(io("reading", &self.path))?;
        let old = self.parse(&bytes)?;
        let mut good = Vec::new();
        for i in 0..old.entries.len() {
            match old.decode(i) {
                Ok(r) => good.push(r),
                Err(_) => dropped.push(old.entries[i].summary.key.clone()),
            }
        }
        let image = Image::rebuild(&good).map_err(|what| DbError::Rebuild {
            path: self.path.clone(),
            what,
        })?;
        let lock = lock_exclusive(&lock_path)?;
        let now = std::fs::read(&self.path).map_err(io("reading", &self.path))?;
        if now != bytes {
            return Err(DbError::Damaged {
                path: self.path.clone(),
                what: "the file changed while it was being repaired; run the repair again".into(),
            });
        }
        atomic_write(&self.path, &image.encode_store())?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(lock);
        Ok(dropped)
    }

    /// Byte counts of the store file.
    pub fn stats(&self) -> Result<ImageStats, DbError> {
        Ok(self.image()?.stats())
    }

    fn btf_dir(&self) -> PathBuf {
        self.dir().join("btf")
    }

    /// Path of the kept BTF with this SHA256.
    pub fn btf_path(&self, sha256: &str) -> PathBuf {
        self.btf_dir().join(format!("{sha256}.zst"))
    }

    /// Keeps a kernel's raw `.BTF` (zstd-compressed, named by its SHA256,
    /// which is the record's `identity.btf_sha256`), so its record can be
    /// re-derived for another core without downloading the kernel again.
    /// Returns the SHA256.
    pub fn put_btf(&self, btf: &[u8]) -> Result<String, DbError> {
        let sha = hex::encode(crate::image::sha256(btf));
        let path = self.btf_path(&sha);
        if path.exists() {
            return Ok(sha);
        }
        let dir = self.btf_dir();
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let z = zstd::bulk::compress(btf, 9).map_err(io("compressing", &path))?;
        atomic_write(&path, &z)?;
        Ok(sha)
    }

    /// The kept BTF with this SHA256, checked; `None` if not kept.
    pub fn btf(&self, sha256: &str) -> Result<Option<Vec<u8>>, DbError> {
        use std::io::Read;
        let path = self.btf_path(sha256);
        let z = match std::fs::read(&path) {
            Ok(z) => z,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&z[..])
            .and_then(|d| d.take(kmlink_donor::MAX_DECOMPRESSED).read_to_end(&mut out))
            .map_err(|e| DbError::BlobDamaged {
                path: path.clone(),
                what: format!("does not decompress ({e})"),
            })?;
        let got = hex::encode(crate::image::sha256(&out));
        if got != sha256 {
            return Err(DbError::BlobDamaged {
                path,
                what: format!("its SHA256 is {got}"),
            });
        }
        Ok(Some(out))
    }

    /// Every record of the bundles built into this binary
    /// (`metadata-db/bundles/{amd64,arm64}.kmb`), checked.
    pub fn embedded() -> Result<Vec<KernelRecord>, DbError> {
        crate::bundle::embedded_records().map_err(DbError::Embedded)
    }

    /// The stored builds of `release`; if none, those of the embedded bundle.
    pub fn get_or_embedded(
        &self,
        release: &str,
    ) -> Result<(Vec<KernelRecord>, RecordSource), DbError> {
        let stored = self.get(release)?;
        if !stored.is_empty() {
            return Ok((stored, RecordSource::Store));
        }
        let embedded = Self::embedded()?
            .into_iter()
            .filter(|r| r.identity.release == release)
            .collect();
        Ok((embedded, RecordSource::Embedded))
    }
}

fn append(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    let path = path.to_path_buf();
    move |source| DbError::Io(kmlink_errors::IoError { op, path, source })
}

fn image_error(path: &Path, e: ImageError) -> DbError {
    let path = path.to_path_buf();
    match e {
        ImageError::Magic(what) => DbError::NotAStore {
            path,
            what: format!("it starts with {what}"),
        },
        ImageError::Format { found, expected } => DbError::Version {
            path,
            what: format!("container format {found}, this kmlink reads format {expected}"),
        },
        ImageError::Schema { found, expected } => DbError::Version {
            path,
            what: format!(
                "records were written with record schema {found}, this kmlink reads schema {expected} (RECORD_SCHEMA {RECORD_SCHEMA})"
            ),
        },
        ImageError::Decode(d) => DbError::Damaged {
            path,
            what: d.to_string(),
        },
    }
}

/// Writes `data` to `path` durably: through an exclusively created
/// temporary beside it, `fsync`ed, renamed over `path`, the directory
/// `fsync`ed ([`kmlink_fsio::write_file`]).
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), DbError> {
    kmlink_fsio::write_file(path, data, kmlink_fsio::Durability::Durable)
        .map_err(io("writing", path))
}

/// Opens (creating) `lock_path` and takes an exclusive `flock` on it; the
/// lock lasts as long as the returned file.
fn lock_exclusive(lock_path: &Path) -> Result<std::fs::File, DbError> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(io("creating", lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| DbError::Io(kmlink_errors::IoError::new("locking", lock_path, e.into())))?;
    Ok(lock)
}
