//! Filling the store from many kernels (what `kmlink crawler refresh` runs):
//! skip what is stored, extract the rest on `jobs` threads, store each
//! record (and its BTF) as it comes. A kernel that fails — download, unpack,
//! extraction, even a panic — is reported and skipped; it never aborts the
//! run or touches the store. A kernel the archive has lost (its closure
//! says [`NotStaged::Unavailable`]) is reported as unavailable, not failed.
//!
//! How artifacts are obtained is the caller's business (a closure), so this
//! crate does not depend on the crawler. The closure may return anything
//! [`Staged`] — e.g. a temporary directory holding the kernel's files —
//! which is dropped as soon as the kernel is extracted (or has failed), so
//! its files can be cleaned up one kernel at a time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use kmlink_core_module::Manifest;

use crate::extract::{extract_full, Artifacts};
use crate::image::RecordKey;
use crate::record::PackageRef;
use crate::store::Store;

/// What a candidate's closure returns: the artifacts, and whatever owns
/// them (dropped right after extraction).
pub trait Staged: Send {
    /// Where the kernel's files are.
    fn artifacts(&self) -> &Artifacts;
}

impl Staged for Artifacts {
    fn artifacts(&self) -> &Artifacts {
        self
    }
}

/// Why a candidate's closure gave no artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStaged {
    /// The archive has lost the kernel (its index lists packages whose
    /// files are gone): reported as unavailable, not as a failed crawl.
    Unavailable(String),
    /// Anything else (network, verification, unpacking...).
    Failed(String),
}

impl From<String> for NotStaged {
    fn from(s: String) -> NotStaged {
        NotStaged::Failed(s)
    }
}

/// One kernel to refresh.
pub struct Candidate<F> {
    /// `uname -r`.
    pub release: String,
    /// The packages it would be extracted from, as the archive index lists
    /// them (before downloading); a stored record of `release` made from
    /// exactly these packages means the kernel is skipped. Empty: never
    /// skipped before extraction.
    pub packages: Vec<PackageRef>,
    /// Fetches and unpacks the kernel.
    pub artifacts: F,
}

/// What happened to one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Extracted and stored (new or replacing).
    Stored {
        /// Identity.
        key: RecordKey,
        /// Fetch + extraction time.
        took: Duration,
        /// Extraction time alone (reading the artifacts into a record).
        extracting: Duration,
    },
    /// Stored already: not fetched (same packages) or extracted to an
    /// identical record.
    Unchanged {
        /// Release.
        release: String,
    },
    /// Unavailable: the archive has lost a file the kernel needs.
    Unavailable {
        /// Release.
        release: String,
        /// Which file is gone.
        reason: String,
    },
    /// Failed: the reason.
    Failed {
        /// Release.
        release: String,
        /// Why.
        error: String,
    },
}

/// Result of [`refresh`].
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// One outcome per candidate, in completion order.
    pub outcomes: Vec<Outcome>,
}

impl RefreshReport {
    /// Kernels stored.
    pub fn stored(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Stored { .. }))
            .count()
    }
    /// Kernels skipped as already stored.
    pub fn unchanged(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Unchanged { .. }))
            .count()
    }
    /// Kernels the archive has lost: (release, which file).
    pub fn unavailable(&self) -> Vec<(&str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Unavailable { release, reason } => {
                    Some((release.as_str(), reason.as_str()))
                }
                _ => None,
            })
            .collect()
    }
    /// Failed kernels: (release, reason).
    pub fn failed(&self) -> Vec<(&str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Failed { release, error } => Some((release.as_str(), error.as_str())),
                _ => None,
            })
            .collect()
    }
}

fn same_packages(a: &[PackageRef], b: &[PackageRef]) -> bool {
    let mut a: Vec<&str> = a.iter().map(|p| p.sha256.as_str()).collect();
    let mut b: Vec<&str> = b.iter().map(|p| p.sha256.as_str()).collect();
    a.sort_unstable();
    b.sort_unstable();
    !a.is_empty() && a == b
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// [`refresh_with`] without progress reports.
pub fn refresh<I, F, S, E>(
    store: &Store,
    kernels: I,
    manifest: &Manifest,
    jobs: usize,
) -> RefreshReport
where
    I: IntoIterator<Item = Candidate<F>>,
    I::IntoIter: Send,
    F: FnOnce() -> Result<S, E> + Send,
    E: Into<NotStaged>,
    S: Staged,
{
    refresh_with(store, kernels, manifest, jobs, &|_| {})
}

/// Refreshes the store from `kernels` on `jobs` threads, calling `progress`
/// with each outcome as it happens.
pub fn refresh_with<I, F, S, E>(
    store: &Store,
    kernels: I,
    manifest: &Manifest,
    jobs: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> RefreshReport
where
    I: IntoIterator<Item = Candidate<F>>,
    I::IntoIter: Send,
    F: FnOnce() -> Result<S, E> + Send,
    E: Into<NotStaged>,
    S: Staged,
{
    let queue = Mutex::new(kernels.into_iter());
    type Done = (crate::extract::Extracted, Duration, Duration);
    let (tx, rx) = mpsc::channel::<Result<Done, Outcome>>();
    let mut report = RefreshReport::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let tx = tx.clone();
            let queue = &queue;
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(c) = next else { break };
                let release = c.release.clone();
                if !c.packages.is_empty() {
                    match store.get(&release) {
                        Ok(stored)
                            if stored
                                .iter()
                                .any(|r| same_packages(&r.identity.packages, &c.packages)) =>
                        {
                            let _ = tx.send(Err(Outcome::Unchanged { release }));
                            continue;
                        }
                        _ => {}
                    }
                }
                let start = Instant::now();
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let staged = (c.artifacts)().map_err(Into::into)?;
                    let t = Instant::now();
                    let art = staged.artifacts();
                    if art.release != release {
                        log::warn!("{release}: the artifacts are of {}", art.release);
                    }
                    let x = extract_full(art, manifest)
                        .map_err(|e| NotStaged::Failed(kmlink_errors::chain(&e)));
                    let extracting = t.elapsed();
                    // Cleans up (temporary files) before the next kernel.
                    drop(staged);
                    x.map(|x| (x, extracting))
                }));
                let msg = match result {
                    Ok(Ok((x, extracting))) => Ok((x, start.elapsed(), extracting)),
                    Ok(Err(NotStaged::Failed(error))) => Err(Outcome::Failed { release, error }),
                    Ok(Err(NotStaged::Unavailable(reason))) => {
                        Err(Outcome::Unavailable { release, reason })
                    }
                    Err(p) => Err(Outcome::Failed {
                        release,
                        error: format!("extraction panicked: {}", panic_text(p)),
                    }),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for msg in rx {
            let outcome = match msg {
                Err(o) => o,
                Ok((x, took, extracting)) => {
                    let key = RecordKey::of(&x.record);
                    let release = key.release.clone();
                    match store
                        .put_btf(&x.btf)
                        .and_then(|_| store.put_many(std::slice::from_ref(&x.record)))
                    {
                        Ok(put) if put.added.is_empty() && put.replaced.is_empty() => {
                            Outcome::Unchanged { release }
                        }
                        Ok(_) => Outcome::Stored {
                            key,
                            took,
                            extracting,
                        },
                        Err(e) => Outcome::Failed {
                            release,
                            error: format!("storing: {}", kmlink_errors::Chain(&e)),
                        },
                    }
                }
            };
            progress(&outcome);
            report.outcomes.push(outcome);
        }
    });
    report
}
