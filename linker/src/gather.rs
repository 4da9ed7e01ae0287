//! Gathering every source of truth for one target kernel: its record (from
//! a file, its packages, the record store, the bundle built into kmlink, or
//! the running host's own facts), a donor module, its BTF, the running
//! kernel's identity and image. What `kmlink build`, `kmlink load`,
//! `kmlink doctor` and `kmlink status` check before linking; [`gather`] is
//! the one entry point, [`Sources::facts`] hands the result to
//! [`crate::check`].
//!
//! The options are plain ([`GatherOptions`]): the CLI fills them from its
//! arguments. Fetching a kernel's packages (`--from-packages`) is the
//! caller's, passed in as [`GatherOptions::from_packages`]: the crawler
//! that downloads and verifies them (HTTP, OpenPGP, the CLI's progress
//! bars and mirror options) stays out of the linker, which only extracts
//! the facts from what it is handed.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

use kmlink_core_module::{Arch, Manifest, ManifestError};
use kmlink_errors::{chain, Chain};
use kmlink_metadata_db::extract::{Artifacts, ExtractError};
use kmlink_metadata_db::record::{KernelRecord, RecordInvalid};
use kmlink_metadata_db::{DbError, OpenError, RecordSource, Store};

use crate::check::Facts;
use crate::donor::{Donor, DonorError, DonorSearch};
use crate::host::{self, HostError, HostIdentity, ImageExports, LiveBtf};

/// A kernel's packages, fetched (verified) and unpacked by the caller.
pub struct FetchedPackages {
    /// What the extractor reads.
    pub artifacts: Artifacts,
    /// The archive suite they came from (for messages).
    pub suite: String,
}

/// Why fetching a kernel's packages failed: the caller's error, kept whole
/// (its message and its chain of causes as they are).
pub type FetchError = Box<dyn Error + Send + Sync + 'static>;

/// "Fetch the packages of release R": how `--from-packages` gets a kernel.
/// The caller's (the crawler's, through the CLI): the linker does not
/// depend on the crawler.
pub type FetchPackages<'a> = &'a dyn Fn(&str) -> Result<FetchedPackages, FetchError>;

/// What to gather, and from where.
#[derive(Clone, Copy, Default)]
pub struct GatherOptions<'a> {
    /// The target release (`uname -r`); `None`: the running kernel.
    pub kernel: Option<&'a str>,
    /// A record saved as JSON to use.
    pub record: Option<&'a Path>,
    /// Extract the record from the kernel's packages, fetched by this.
    pub from_packages: Option<FetchPackages<'a>>,
    /// Build the record from the running host itself, even if a store or
    /// the built-in bundle has one.
    pub from_host: bool,
    /// A donor module of the target kernel to cross-check against.
    pub donor: Option<&'a Path>,
    /// The target's BTF (raw BTF, a vmlinux or a vmlinuz).
    pub btf: Option<&'a Path>,
    /// The record store; `None`: [`Store::default_path`].
    pub db: Option<&'a Path>,
    /// A stored record may be read as its projection for the built-in
    /// core (only the exports that core may bind, everything else as
    /// stored), which links the same module and feeds the same checks,
    /// but is not the whole record (not for saving it).
    pub projected: bool,
}

/// Why the sources of a target could not be gathered. Each says its
/// context (release, file) and leaves the cause to the chain.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// No release given, and the running one could not be read.
    #[error("no --kernel given and the running kernel is unknown (is /proc mounted?)")]
    NoRelease,
    /// The embedded core of the release's architecture has no readable
    /// manifest (a build problem).
    #[error("reading the embedded {arch} core's manifest")]
    Manifest {
        /// The architecture.
        arch: Arch,
        /// Cause.
        #[source]
        source: ManifestError,
    },
    /// The BTF source given could not be read.
    #[error("--btf")]
    Btf(#[source] HostError),
    /// The donor module given could not be read.
    #[error("--donor")]
    Donor(#[source] DonorError),
    /// The record file could not be read.
    #[error("reading {}", path.display())]
    ReadRecord {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The record file is not a record.
    #[error("parsing record {}", path.display())]
    ParseRecord {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The record file states a fact no kernel can have.
    #[error("checking record {}", path.display())]
    CheckRecord {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: RecordInvalid,
    },
    /// The record file is of another kernel.
    #[error("record {} is for {found}, not {release}", path.display())]
    RecordRelease {
        /// The file.
        path: PathBuf,
        /// The record's release.
        found: String,
        /// The target's.
        release: String,
    },
    /// Fetching the packages failed (the caller's error, as it is).
    #[error(transparent)]
    Fetch(FetchFailed),
    /// The facts could not be extracted from the packages.
    #[error("extracting the facts of {release}")]
    Extract {
        /// The target.
        release: String,
        /// Cause.
        #[source]
        source: Box<ExtractError>,
    },
    /// The bundle built into kmlink is unreadable (a build problem).
    #[error("reading the bundle built into kmlink")]
    Embedded(#[source] DbError),
    /// The record store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Looking the release up in the store failed.
    #[error("looking up {release} in {}", path.display())]
    Lookup {
        /// The target.
        release: String,
        /// The store file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: DbError,
    },
    /// Several builds of the release are stored and nothing says which.
    #[error(
        "the store has {} builds of {release} ({}) and nothing says which is meant; \
         pass --btf of the target or --record FILE",
        builds.len(),
        builds.join(", ")
    )]
    Ambiguous {
        /// The target.
        release: String,
        /// The stored builds' build strings, quoted.
        builds: Vec<String>,
    },
    /// No record anywhere, and the host's own facts are incomplete.
    #[error(
        "no record for {release}, and the host's own facts are incomplete; missing:\n  - {}\n\
         or get a record: kmlink crawler refresh --release {release}, or kmlink bundle install FILE",
        missing.join("\n  - ")
    )]
    HostIncomplete {
        /// The target (the running kernel).
        release: String,
        /// What is missing, one line each.
        missing: Vec<String>,
    },
    /// The host's facts did not make a record.
    #[error("building the record of {release} from the host's facts")]
    HostRecord {
        /// The target (the running kernel).
        release: String,
        /// Cause.
        #[source]
        source: HostError,
    },
    /// No record anywhere, and the target is not the running kernel.
    #[error(
        "no record for {release} in the store or the built-in bundle; get one with \
         kmlink crawler refresh --release {release}, or build it from packages with \
         kmlink build --kernel {release} --from-packages"
    )]
    NoRecord {
        /// The target.
        release: String,
    },
}

/// A [`FetchError`] as the error it is: its own message, then its causes
/// (no link added).
#[derive(Debug)]
pub struct FetchFailed(pub FetchError);

impl fmt::Display for FetchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for FetchFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Every source of truth gathered for one target kernel.
pub struct Sources {
    /// Target release.
    pub release: String,
    /// The record.
    pub record: KernelRecord,
    /// Where it came from, for messages.
    pub record_from: String,
    /// Whether it was built from the host's facts just now.
    pub from_host: bool,
    /// A donor module, if one was given or found.
    pub donor: Option<Donor>,
    /// The target's BTF, if at hand.
    pub btf: Option<LiveBtf>,
    /// The running kernel, when it is the target.
    pub host: Option<HostIdentity>,
    /// The target's image exports: the running kernel's image when it is
    /// the target, or the image given as `--btf`.
    pub image: Option<ImageExports>,
    /// What was not available and why (one line each).
    pub notes: Vec<String>,
}

impl Sources {
    /// The facts for the checks.
    pub fn facts<'a>(&'a self, manifest: &'a Manifest) -> Facts<'a> {
        Facts {
            record: &self.record,
            manifest,
            donor: self.donor.as_ref(),
            btf: self.btf.as_ref(),
            host: self.host.as_ref(),
            image: self.image.as_ref(),
        }
    }

    /// One line per source, for stderr.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!("record: {}", self.record_from)];
        match &self.donor {
            Some(d) => out.push(format!("donor: {}", d.describe())),
            None => out.push("donor: none".into()),
        }
        if let Some(b) = &self.btf {
            out.push(format!("BTF: {}", b.path.display()));
        }
        if let Some(i) = &self.image {
            out.push(format!("image: {}", i.path.display()));
        }
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out
    }

    /// Where each fact of a host-made record came from, and how to keep it
    /// (nothing for a stored record), one line each.
    pub fn provenance(&self) -> Vec<String> {
        if !self.from_host {
            return Vec::new();
        }
        let mut out = vec![format!(
            "kmlink: {}: no stored record; built from this host:",
            self.release
        )];
        out.extend(
            self.record
                .provenance
                .iter()
                .map(|(fact, from)| format!("  {fact:<12} ← {from}")),
        );
        out
    }
}

/// Reads a record saved as JSON and checks that it is `release`'s.
fn read_record_file(path: &Path, release: &str) -> Result<KernelRecord, GatherError> {
    let text = kmlink_fsio::read_bounded(
        path,
        kmlink_metadata_db::record::MAX_RECORD_JSON,
        "kernel record (JSON)",
    )
    .map_err(|source| GatherError::ReadRecord {
        path: path.to_path_buf(),
        source,
    })?;
    let record: KernelRecord =
        serde_json::from_slice(&text).map_err(|source| GatherError::ParseRecord {
            path: path.to_path_buf(),
            source,
        })?;
    record
        .validate()
        .map_err(|source| GatherError::CheckRecord {
            path: path.to_path_buf(),
            source,
        })?;
    if record.identity.release != release {
        return Err(GatherError::RecordRelease {
            path: path.to_path_buf(),
            found: record.identity.release,
            release: release.to_string(),
        });
    }
    Ok(record)
}

/// Picks one of several stored builds of a release: the running one's (by
/// BTF hash) when it is the target, else the only one.
fn pick_build(
    mut records: Vec<KernelRecord>,
    release: &str,
    btf: Option<&LiveBtf>,
) -> Result<Option<KernelRecord>, GatherError> {
    if records.len() <= 1 {
        return Ok(records.pop());
    }
    if let Some(b) = btf {
        if let Some(i) = records
            .iter()
            .position(|r| r.identity.btf_sha256 == b.sha256)
        {
            return Ok(Some(records.swap_remove(i)));
        }
    }
    Err(GatherError::Ambiguous {
        release: release.to_string(),
        builds: records
            .iter()
            .map(|r| format!("{:?}", r.identity.build_string))
            .collect(),
    })
}

/// Builds the record from the running host, or says what is missing.
fn host_record(
    manifest: &Manifest,
    identity: &HostIdentity,
    btf: Option<&LiveBtf>,
    image: Option<&ImageExports>,
    donor: Option<&Donor>,
    donor_error: Option<&str>,
) -> Result<KernelRecord, GatherError> {
    let release = &identity.release;
    let mut missing = Vec::new();
    if btf.is_none() {
        missing.push(format!(
            "the kernel's BTF ({} is absent: the kernel lacks CONFIG_DEBUG_INFO_BTF; pass --btf FILE)",
            host::LIVE_BTF
        ));
    }
    if image.is_none() {
        let looked: Vec<String> = host::image_candidates(Path::new("/"), release)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        missing.push(format!(
            "the kernel image for its export table and CRCs (looked at {}; install the image package of {release})",
            looked.join(", ")
        ));
    }
    if donor.is_none() {
        missing.push(format!(
            "a donor module of {release}: {}",
            donor_error.unwrap_or("none found; pass --donor KO")
        ));
    }
    let (Some(btf), Some(image), Some(donor)) = (btf, image, donor) else {
        return Err(GatherError::HostIncomplete {
            release: release.clone(),
            missing,
        });
    };
    let config = host::read_config(Path::new("/"), release);
    let sources = host::HostSources {
        identity,
        btf,
        image,
        donor,
        config: config.as_ref(),
    };
    host::host_record(manifest, &sources).map_err(|source| GatherError::HostRecord {
        release: release.clone(),
        source,
    })
}

/// Gathers every source of truth for the target `opts` names: `manifest`
/// is the built-in core's (a release of another architecture is asked
/// the facts of that architecture's core).
pub fn gather(opts: &GatherOptions<'_>, manifest: &Manifest) -> Result<Sources, GatherError> {
    let running = HostIdentity::read(Path::new("/")).ok();
    let release = match (opts.kernel, &running) {
        (Some(k), _) => k.to_string(),
        (None, Some(h)) => h.release.clone(),
        (None, None) => return Err(GatherError::NoRelease),
    };
    let is_running = running.as_ref().is_some_and(|h| h.release == release);
    let host_id = if is_running { running.clone() } else { None };
    // A release of another architecture than the built-in core's (Debian
    // names it in the flavour): its facts are those that core asks.
    let other_arch = Arch::of_release(&release).filter(|a| *a != Arch::X86_64);
    let other_manifest = match other_arch {
        Some(arch) => Some(
            Manifest::core_for(arch).map_err(|source| GatherError::Manifest { arch, source })?,
        ),
        None => None,
    };
    let arch_manifest = other_manifest.as_ref();
    let mut notes = Vec::new();

    // `--btf` naming a kernel image also gives its export table: on a
    // cross-build the record's exports, CRCs and namespaces are then
    // checked against the kernel itself.
    let mut btf_image = None;
    let btf = match opts.btf {
        Some(p) => {
            let (btf, image) = host::read_btf_source(p).map_err(GatherError::Btf)?;
            btf_image = image;
            Some(btf)
        }
        None if is_running => match LiveBtf::read(Path::new(host::LIVE_BTF)) {
            Ok(b) => Some(b),
            Err(e) => {
                notes.push(format!("no live BTF: {}", Chain(&e)));
                None
            }
        },
        None => None,
    };
    let image = if is_running {
        match host::find_image(Path::new("/"), &release) {
            Some(p) => match ImageExports::read(&p) {
                Ok(i) => Some(i),
                Err(e) => {
                    notes.push(format!("image {} unreadable: {}", p.display(), Chain(&e)));
                    None
                }
            },
            None => {
                notes.push(format!(
                    "no image of {release} under /boot or the modules directory"
                ));
                None
            }
        }
    } else {
        btf_image
    };
    let mut donor_error = None;
    let donor = match opts.donor {
        Some(p) => Some(Donor::open(p).map_err(GatherError::Donor)?),
        None if is_running => match DonorSearch::for_host(Path::new("/"), &release).find(None) {
            Ok(d) => Some(d),
            Err(e) => {
                notes.push(format!("no donor: {}", Chain(&e)));
                donor_error = Some(chain(&e));
                None
            }
        },
        None => None,
    };

    let mut from_host = false;
    let (record, record_from) = if let Some(path) = opts.record {
        (
            read_record_file(path, &release)?,
            format!("file {}", path.display()),
        )
    } else if let Some(fetch) = opts.from_packages {
        let fetched = fetch(&release).map_err(|e| GatherError::Fetch(FetchFailed(e)))?;
        let r = kmlink_metadata_db::extract::extract(
            &fetched.artifacts,
            arch_manifest.unwrap_or(manifest),
        )
        .map_err(|source| GatherError::Extract {
            release: release.clone(),
            source: Box::new(source),
        })?;
        (r, format!("extracted from the {} packages", fetched.suite))
    } else {
        let stored = if opts.from_host {
            None
        } else {
            // Looking records up creates no store: a missing one leaves
            // the built-in bundle.
            let db_path = Store::path_or_default(opts.db);
            let (records, source) = if std::fs::symlink_metadata(&db_path).is_err() {
                let embedded = Store::embedded()
                    .map_err(GatherError::Embedded)?
                    .into_iter()
                    .filter(|r| r.identity.release == release)
                    .collect();
                (embedded, RecordSource::Embedded)
            } else {
                let store = Store::open_default(Some(&db_path))?;
                let lookup = |source| GatherError::Lookup {
                    release: release.clone(),
                    path: store.path().to_path_buf(),
                    source,
                };
                // Projections are of the built-in (x86_64) core's facts.
                let fast = if opts.projected && arch_manifest.is_none() {
                    store.get_projected(&release).map_err(lookup)?
                } else {
                    None
                };
                match fast {
                    Some(records) => (records, RecordSource::Store),
                    None => store.get_or_embedded(&release).map_err(lookup)?,
                }
            };
            pick_build(records, &release, btf.as_ref())?.map(|r| {
                let from = match source {
                    RecordSource::Store => format!("store {}", db_path.display()),
                    RecordSource::Embedded => "the bundle built into kmlink".to_string(),
                };
                (r, from)
            })
        };
        match (stored, &host_id) {
            (Some(x), _) => x,
            (None, Some(h)) => {
                from_host = true;
                let r = host_record(
                    manifest,
                    h,
                    btf.as_ref(),
                    image.as_ref(),
                    donor.as_ref(),
                    donor_error.as_deref(),
                )?;
                (r, "the running host's own facts".to_string())
            }
            (None, None) => return Err(GatherError::NoRecord { release }),
        }
    };
    Ok(Sources {
        release,
        record,
        record_from,
        from_host,
        donor,
        btf,
        host: host_id,
        image,
        notes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_their_context_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = GatherError::ReadRecord {
            path: PathBuf::from("/x.json"),
            source: io,
        };
        assert_eq!(e.to_string(), "reading /x.json");
        assert_eq!(chain(&e), "reading /x.json: entity not found");

        let inner: FetchError = "kernel 9.9.9-1-amd64 is in none of the archives' suites".into();
        let e = GatherError::Fetch(FetchFailed(inner));
        assert_eq!(
            chain(&e),
            "kernel 9.9.9-1-amd64 is in none of the archives' suites"
        );
    }

    #[test]
    fn several_builds_are_named() {
        let e = GatherError::Ambiguous {
            release: "6.1.0-47-amd64".into(),
            builds: vec!["\"#1 a\"".into(), "\"#1 b\"".into()],
        };
        assert_eq!(
            e.to_string(),
            "the store has 2 builds of 6.1.0-47-amd64 (\"#1 a\", \"#1 b\") and nothing says \
             which is meant; pass --btf of the target or --record FILE"
        );
    }

    #[test]
    fn one_build_or_none_is_picked_without_asking() {
        assert!(pick_build(Vec::new(), "6.1.0-47-amd64", None)
            .unwrap()
            .is_none());
    }
}
