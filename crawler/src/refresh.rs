//! Filling the record store from the archives (what `kmlink crawler
//! refresh` runs): discover the kernels of the suites, keep one row per
//! release, keep those matching the release globs and flavour, take this
//! job's shard, then for each kernel not already stored from the same
//! packages fetch (verified) and stage the files extraction needs, extract
//! its record for the core of the crawled architecture and store it
//! ([`kmlink_metadata_db::refresh`]). A kernel that fails is reported and
//! skipped.
//!
//! Progress and per-kernel outcomes go to a [`Listener`]; this module
//! prints nothing. The caller builds the [`Http`], [`Cache`] and [`Origin`]
//! and turns the result into text.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmlink_core_module::{Arch, Manifest, ManifestError};
use kmlink_errors::chain;
use kmlink_metadata_db::extract::Artifacts;
use kmlink_metadata_db::record::PackageRef;
use kmlink_metadata_db::refresh::{self, Candidate, NotStaged, Outcome, RefreshReport};
use kmlink_metadata_db::{OpenError, Store};

use crate::cache::Cache;
use crate::discover::{self, KernelInfo, Origin};
use crate::index::PackageEntry;
use crate::kernel_tree::{KernelTree, PinnedKernel};
use crate::shard::Shard;
use crate::{targeted, Error, Http};

/// What to refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions<'a> {
    /// Suites to read; empty: all of the distribution's.
    pub suites: &'a [String],
    /// Only releases matching one of these globs (`*`, `?`); empty: all.
    pub releases: &'a [String],
    /// Only this flavour.
    pub flavour: Option<&'a str>,
    /// Only this shard of the kernels.
    pub shard: Option<Shard>,
    /// The record store; `None`: [`Store::default_path`].
    pub db: Option<&'a Path>,
    /// Kernels processed at a time.
    pub jobs: usize,
    /// Keep the downloaded packages in the cache.
    pub keep_debs: bool,
    /// Do not start a kernel when fewer bytes than this are free where the
    /// cache is.
    pub min_free: u64,
    /// Extract kernels again even when a record made from the same
    /// packages is stored.
    pub force: bool,
    /// Only select the kernels (and open the store): fetch nothing.
    pub dry_run: bool,
}

/// What happens during a refresh, as it happens. Every method has an
/// empty default; they may be called from several threads at once.
pub trait Listener: Sync {
    /// A suite could not be read; nothing of it is refreshed.
    fn suite_skipped(&self, _suite: &str, _error: &Error) {}
    /// The shard took `mine` of `of` kernels.
    fn sharded(&self, _shard: Shard, _mine: usize, _of: usize) {}
    /// `kernels` kernels selected, `bytes` of packages before skipping
    /// stored ones, into the store at `store`.
    fn planned(&self, _kernels: usize, _bytes: u64, _store: &Path) {}
    /// A kernel's packages are about to be fetched.
    fn fetching(&self, _kernel: &PinnedKernel, _info: &KernelInfo) {}
    /// Kernel `done` of `total` is through; `run` is its entry so far.
    fn finished(&self, _done: usize, _total: usize, _outcome: &Outcome, _run: Option<&KernelRun>) {}
}

/// A listener that hears nothing.
impl Listener for () {}

/// Per-kernel facts gathered while refreshing (the `--report` entries).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KernelRun {
    /// `uname -r`.
    pub release: String,
    /// Archive suite.
    pub suite: String,
    /// Flavour.
    pub flavour: String,
    /// Package version.
    pub version: String,
    /// Package layout, lower case.
    pub layout: String,
    /// Package names.
    pub packages: Vec<String>,
    /// Packages the index lists but the archive lost.
    pub missing: Vec<String>,
    /// Bytes of packages, as the index states.
    pub download_size: u64,
    /// `stored`, `already stored`, `unavailable`, `failed`.
    pub outcome: String,
    /// Why it is unavailable or failed.
    pub reason: Option<String>,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Download and verification time, seconds.
    pub fetch_s: f64,
    /// Unpacking time, seconds.
    pub unpack_s: f64,
    /// Extraction time, seconds.
    pub extract_s: f64,
    /// Files unpacked.
    pub files: usize,
    /// Where the stored record's vermagic came from.
    pub vermagic_source: Option<String>,
    /// Where the stored record's `struct module` facts came from.
    pub this_module: Option<String>,
}

impl KernelRun {
    fn new(pin: &PinnedKernel, info: &KernelInfo) -> KernelRun {
        KernelRun {
            release: info.release.clone(),
            suite: info.suite.clone(),
            flavour: info.flavour.clone(),
            version: info.version.clone(),
            layout: format!("{:?}", info.layout).to_lowercase(),
            packages: pin.packages.iter().map(|e| e.package.clone()).collect(),
            missing: info.missing.clone(),
            download_size: info.download_size,
            ..KernelRun::default()
        }
    }
}

/// What a refresh did.
pub struct Refreshed {
    /// Kernels the suites listed, one per release, that matched the globs
    /// and flavour (before sharding).
    pub matched: usize,
    /// The kernels selected (this shard's).
    pub kernels: Vec<(PinnedKernel, KernelInfo)>,
    /// Suites that could not be read.
    pub suite_errors: Vec<(String, Error)>,
    /// The store, opened when kernels were selected.
    pub store: Option<Store>,
    /// What happened to each kernel; `None` when none was processed (none
    /// selected, or a dry run).
    pub report: Option<RefreshReport>,
    /// Per-kernel entries, by release (empty when none was processed).
    pub runs: BTreeMap<String, KernelRun>,
}

impl Refreshed {
    /// Bytes downloaded in all.
    pub fn downloaded(&self) -> u64 {
        self.runs.values().map(|r| r.downloaded).sum()
    }
}

/// Why a refresh could not run at all (a kernel's failure is an outcome,
/// not this).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The record store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The core of the crawled architecture has no readable manifest.
    #[error("the {arch} core's manifest")]
    Manifest {
        /// The architecture.
        arch: Arch,
        /// Cause.
        #[source]
        source: ManifestError,
    },
}

/// The one adapter from an index entry to a record's package reference.
pub fn package_ref(p: &PackageEntry) -> PackageRef {
    PackageRef {
        name: p.package.clone(),
        version: p.version.clone(),
        sha256: p.sha256.clone(),
    }
}

/// The one adapter from a crawler's kernel tree to the extractor's
/// artifacts, with the identity discovery gave it and the packages the tree
/// was unpacked from (the signed twin of an unsigned image whose file is
/// gone, say).
pub fn artifacts_of(tree: &KernelTree, distro: &str, suite: &str, flavour: &str) -> Artifacts {
    Artifacts {
        release: tree.release.clone(),
        distro: distro.to_owned(),
        suite: suite.to_owned(),
        flavour: flavour.to_owned(),
        vmlinuz: tree.vmlinuz.clone(),
        config: tree.config.clone(),
        modules_dir: tree.modules_dir.clone(),
        symvers: tree.symvers.clone(),
        packages: tree.packages.iter().map(package_ref).collect(),
    }
}

/// The kernels of `shard` (all of them without one), telling the listener
/// how many of how many.
pub fn select<P>(
    shard: Option<Shard>,
    kernels: Vec<(P, KernelInfo)>,
    listener: &dyn Listener,
) -> Vec<(P, KernelInfo)> {
    let Some(shard) = shard else { return kernels };
    let before = kernels.len();
    let mine = shard.select(kernels);
    listener.sharded(shard, mine.len(), before);
    mine
}

/// A staged kernel as the metadata store's refresh sees it.
struct StagedKernel {
    art: Artifacts,
    _files: targeted::Staged,
}

impl refresh::Staged for StagedKernel {
    fn artifacts(&self) -> &Artifacts {
        &self.art
    }
}

/// `*` and `?` glob match of a whole string (the store's own matcher).
fn glob_match(pat: &str, s: &str) -> bool {
    kmlink_metadata_db::codec::glob_match(pat, s)
}

/// Free bytes on the file system holding `path` (or its nearest existing
/// ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path;
    loop {
        if p.exists() {
            let st = rustix::fs::statvfs(p).ok()?;
            return Some(st.f_bavail.saturating_mul(st.f_frsize));
        }
        p = p.parent()?;
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Refreshes the store from the kernels of `origin` that `opts` selects
/// (see the module documentation). The store is opened (created if
/// absent) only when kernels were selected.
pub fn run(
    http: &Http,
    cache: &Cache,
    origin: &Origin,
    opts: &RefreshOptions<'_>,
    listener: &dyn Listener,
) -> Result<Refreshed, RefreshError> {
    let d = discover::discover(http, Some(cache), origin, opts.suites);
    for (suite, e) in &d.errors {
        listener.suite_skipped(suite, e);
    }
    let mut kernels = discover::merge(d.kernels);
    if !opts.releases.is_empty() {
        kernels.retain(|k| opts.releases.iter().any(|g| glob_match(g, &k.1.release)));
    }
    if let Some(f) = opts.flavour {
        kernels.retain(|k| k.1.flavour == f);
    }
    let matched = kernels.len();
    let kernels = select(opts.shard, kernels, listener);
    let mut done = Refreshed {
        matched,
        kernels,
        suite_errors: d.errors,
        store: None,
        report: None,
        runs: BTreeMap::new(),
    };
    if done.kernels.is_empty() {
        return Ok(done);
    }
    let store = Store::open_default(opts.db)?;
    // The facts asked are those of the core built for the kernels'
    // architecture (the indexes read).
    let manifest = Manifest::core_for(origin.arch).map_err(|source| RefreshError::Manifest {
        arch: origin.arch,
        source,
    })?;
    let total = done.kernels.len();
    let total_size: u64 = done.kernels.iter().map(|k| k.1.download_size).sum();
    listener.planned(total, total_size, store.path());
    if opts.dry_run {
        done.store = Some(store);
        return Ok(done);
    }
    let runs: Mutex<BTreeMap<String, KernelRun>> = Mutex::new(
        done.kernels
            .iter()
            .map(|(p, i)| (i.release.clone(), KernelRun::new(p, i)))
            .collect(),
    );
    let report = stage_and_store(
        http,
        cache,
        origin,
        opts,
        listener,
        &store,
        &manifest,
        &done.kernels,
        &runs,
    );
    // Provenance of the records, for the report.
    let mut runs = runs.into_inner().unwrap_or_else(|e| e.into_inner());
    for r in runs.values_mut() {
        if let Ok(recs) = store.get(&r.release) {
            if let Some(rec) = recs.first() {
                r.vermagic_source = rec.provenance.get("vermagic").cloned();
                r.this_module = rec.provenance.get("this_module").cloned();
                if r.outcome.is_empty() {
                    r.outcome = "already stored".into();
                }
            }
        }
    }
    done.store = Some(store);
    done.report = Some(report);
    done.runs = runs;
    Ok(done)
}

/// Fetches, stages, extracts and stores every kernel of `kernels`
/// (skipping those stored from the same packages), `opts.jobs` at a time.
#[allow(clippy::too_many_arguments)]
fn stage_and_store(
    http: &Http,
    cache: &Cache,
    origin: &Origin,
    opts: &RefreshOptions<'_>,
    listener: &dyn Listener,
    store: &Store,
    manifest: &Manifest,
    kernels: &[(PinnedKernel, KernelInfo)],
    runs: &Mutex<BTreeMap<String, KernelRun>>,
) -> RefreshReport {
    let mirrors = &origin.mirrors;
    let staging = targeted::Options {
        jobs: 2,
        keep_debs: opts.keep_debs,
        staging: None,
    };
    let min_free = opts.min_free;
    let runs_lock = || runs.lock().unwrap_or_else(|e| e.into_inner());
    type Job<'a> = Box<dyn FnOnce() -> Result<StagedKernel, NotStaged> + Send + 'a>;
    let candidates: Vec<Candidate<Job>> = kernels
        .iter()
        .map(|(pin, info)| {
            let staging = &staging;
            let job: Job = Box::new(move || {
                if let Some(free) = free_bytes(&cache.root) {
                    if free < min_free {
                        return Err(NotStaged::Failed(format!(
                            "not started: only {:.1} GiB free under {} (--min-free {} GiB)",
                            mib(free) / 1024.0,
                            cache.root.display(),
                            min_free >> 30
                        )));
                    }
                }
                listener.fetching(pin, info);
                let staged = targeted::fetch(cache, http, mirrors, pin, staging).map_err(|e| {
                    if e.is_unavailable() {
                        NotStaged::Unavailable(chain(&e))
                    } else {
                        NotStaged::Failed(chain(&e))
                    }
                })?;
                if let Some(r) = runs_lock().get_mut(&info.release) {
                    r.downloaded = staged.downloaded;
                    r.fetch_s = staged.fetching.as_secs_f64();
                    r.unpack_s = staged.unpacking.as_secs_f64();
                    r.files = staged.files;
                }
                let art = artifacts_of(
                    &staged.tree,
                    info.distro.as_str(),
                    &info.suite,
                    &info.flavour,
                );
                Ok(StagedKernel {
                    art,
                    _files: staged,
                })
            });
            Candidate {
                release: info.release.clone(),
                // No packages: never skipped before fetching.
                packages: if opts.force {
                    Vec::new()
                } else {
                    pin.packages.iter().map(package_ref).collect()
                },
                artifacts: job,
            }
        })
        .collect();
    let total = kernels.len();
    let done = AtomicUsize::new(0);
    let progress = |o: &Outcome| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        let mut runs = runs_lock();
        let (release, outcome, reason) = match o {
            Outcome::Stored { key, .. } => (key.release.as_str(), "stored", None),
            Outcome::Unchanged { release } => (release.as_str(), "already stored", None),
            Outcome::Unavailable { release, reason } => {
                (release.as_str(), "unavailable", Some(reason))
            }
            Outcome::Failed { release, error } => (release.as_str(), "failed", Some(error)),
        };
        let run = runs.get_mut(release);
        if let Some(r) = run {
            r.outcome = outcome.into();
            if let Some(why) = reason {
                r.reason = Some(why.clone());
            }
            if let Outcome::Stored { extracting, .. } = o {
                r.extract_s = extracting.as_secs_f64();
            }
        }
        listener.finished(n, total, o, runs.get(release));
    };
    refresh::refresh_with(store, candidates, manifest, opts.jobs, &progress)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "6.1.0-47-amd64"));
        assert!(glob_match("6.1.0-4?-amd64", "6.1.0-47-amd64"));
        assert!(!glob_match("6.1.0-4?-amd64", "6.1.0-47-cloud-amd64"));
        assert!(glob_match("7.*", "7.3.4+deb13-rt-amd64"));
        assert!(glob_match("*-rt-amd64", "7.3.4+deb13-rt-amd64"));
        assert!(!glob_match("7.*", "6.12.107+deb13-amd64"));
        assert!(glob_match("6.*.*-amd64", "6.12.107+deb13-amd64"));
    }
}
