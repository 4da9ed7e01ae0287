//! `kmlink build`: link the monitor for one kernel, after checking every
//! fact across every source at hand. Also the fact gathering that
//! `kmlink load` and `kmlink doctor` share.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_errors::{chain, Chain};
use kmlink_linker::check::{Facts, Verdict};
use kmlink_linker::donor::{Donor, DonorSearch};
use kmlink_linker::host::{self, HostIdentity, ImageExports, LiveBtf};
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::{RecordSource, Store};

use crate::{kernels, FetchOpts};

/// Which kernel hook the monitor uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The kmem tracepoints (the embedded core's backend).
    #[default]
    Tracepoint,
    /// kprobes and kretprobes on the allocator functions, under each
    /// kernel's names.
    Kprobe,
}

impl Backend {
    /// Its name, as the core's manifest names the `backend` option's values.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
            Backend::Kprobe => "kprobe",
        }
    }

    /// The core's `backend` option value, as the core's manifest declares it.
    pub fn option_value(self, manifest: &kmlink_core_module::Manifest) -> Result<u64> {
        manifest
            .option_value("backend", self.name())
            .with_context(|| format!("the core declares no backend {:?}", self.name()))
    }
}

/// Link-time options from `--backend` and `--set NAME=VALUE`.
pub fn link_options(backend: Backend, sets: &[String]) -> Result<kmlink_linker::Options> {
    let manifest =
        kmlink_core_module::Manifest::core().context("reading the embedded core's manifest")?;
    let mut options = kmlink_linker::Options::new();
    options.insert("backend".into(), backend.option_value(&manifest)?);
    for set in sets {
        let Some((name, value)) = set.split_once('=') else {
            bail!("--set {set:?}: expected NAME=VALUE");
        };
        let value = match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .with_context(|| format!("--set {set:?}: the value is not a number"))?;
        if name == "backend" {
            bail!("--set backend=…: use --backend tracepoint|kprobe");
        }
        // An unknown name is the user's, not the record's: say so here,
        // not as a failed "imports" check advising to re-extract the record.
        if !manifest.options.iter().any(|o| o.name == name) {
            let known: Vec<&str> = manifest
                .options
                .iter()
                .map(|o| o.name.as_str())
                .filter(|n| *n != "backend")
                .collect();
            bail!(
                "--set {set:?}: the monitor has no option {name:?} (its options: {})",
                known.join(", ")
            );
        }
        options.insert(name.to_string(), value);
    }
    Ok(options)
}

/// Arguments of `kmlink build`.
#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Kernel release to build for (`uname -r` of the target); default: the
    /// running kernel.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Record store to look the kernel up in (default: $KMLINK_DB or
    /// ~/.local/share/kmlink/records.db, then the bundle built into kmlink).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Extract the kernel's facts from its packages (downloaded and verified).
    #[arg(long, conflicts_with_all = ["record", "from_host"])]
    pub from_packages: bool,
    /// Use a kernel record saved as JSON (see --save-record).
    #[arg(long, conflicts_with = "from_host")]
    pub record: Option<PathBuf>,
    /// Build the record from the running host itself (its /boot image, BTF
    /// and a donor module), even if a database has one.
    #[arg(long)]
    pub from_host: bool,
    /// Also write the record used as JSON here.
    #[arg(long)]
    pub save_record: Option<PathBuf>,
    /// Put a record made from the host's facts into the store.
    #[arg(long)]
    pub store: bool,
    /// A module of the target kernel to cross-check against (plain, .ko.xz,
    /// .ko.zst, .ko.gz); default for the running kernel: an installed one.
    #[arg(long)]
    pub donor: Option<PathBuf>,
    /// The target kernel's BTF to cross-check layouts against (raw BTF, a
    /// vmlinux or a vmlinuz); default for the running kernel:
    /// /sys/kernel/btf/vmlinux.
    #[arg(long)]
    pub btf: Option<PathBuf>,
    /// Kernel hook of the monitor.
    #[arg(long, value_enum, default_value_t = Backend::Tracepoint)]
    pub backend: Backend,
    /// Set a link-time option of the core, NAME=VALUE (repeatable):
    /// ring_events, ring_mem_mb, ptr_slots, max_rings, events_mask,
    /// kp_maxactive.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Output module path (default: kmlink-<release>.ko; `-`: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Run every check and print the verdict, but write no module.
    #[arg(long)]
    pub check: bool,
    /// Print a text dump of the module (sections, symbols, relocations,
    /// modinfo, versions) to stdout.
    #[arg(long)]
    pub dump: bool,
    #[command(flatten)]
    pub sign: super::sign::SignOpts,
    /// Tests only: write the module even when the checks refuse it, to show
    /// in a VM what the kernel would do with it. kmlink never loads such a
    /// module itself.
    #[arg(long, hide = true)]
    pub unchecked_for_tests: bool,
    #[command(flatten)]
    pub fetch: FetchOpts,
}

impl BuildArgs {
    /// Arguments for `release` with every option at its default.
    pub fn for_kernel(release: &str) -> Self {
        BuildArgs {
            kernel: Some(release.to_string()),
            db: None,
            from_packages: false,
            record: None,
            from_host: false,
            save_record: None,
            store: false,
            donor: None,
            btf: None,
            backend: Backend::Tracepoint,
            set: Vec::new(),
            output: None,
            check: false,
            dump: false,
            unchecked_for_tests: false,
            sign: super::sign::SignOpts {
                sign_hash: "sha256".into(),
                ..Default::default()
            },
            fetch: FetchOpts {
                cache: None,
                mirror: Vec::new(),
                allow_expired: false,
            },
        }
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
}

/// The store `--db` names, or the default one.
pub fn open_store(db: Option<&Path>) -> Result<Store> {
    let path = db
        .map(Path::to_path_buf)
        .unwrap_or_else(Store::default_path);
    Store::open(&path).with_context(|| format!("opening the record store {}", path.display()))
}

fn read_record_file(path: &Path, release: &str) -> Result<KernelRecord> {
    let text = kmlink_fsio::read_bounded(
        path,
        kmlink_metadata_db::record::MAX_RECORD_JSON,
        "kernel record (JSON)",
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let record: KernelRecord = serde_json::from_slice(&text)
        .with_context(|| format!("parsing record {}", path.display()))?;
    record
        .validate()
        .with_context(|| format!("checking record {}", path.display()))?;
    if record.identity.release != release {
        bail!(
            "record {} is for {}, not {release}",
            path.display(),
            record.identity.release
        );
    }
    Ok(record)
}

/// Picks one of several stored builds of a release: the running one's (by
/// BTF hash) when it is the target, else the only one.
fn pick_build(
    mut records: Vec<KernelRecord>,
    release: &str,
    btf: Option<&LiveBtf>,
) -> Result<Option<KernelRecord>> {
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
    let builds: Vec<String> = records
        .iter()
        .map(|r| format!("{:?}", r.identity.build_string))
        .collect();
    bail!(
        "the store has {} builds of {release} ({}) and nothing says which is meant; \
         pass --btf of the target or --record FILE",
        records.len(),
        builds.join(", ")
    )
}

/// Builds the record from the running host, or says what is missing.
fn host_record(
    manifest: &Manifest,
    identity: &HostIdentity,
    btf: Option<&LiveBtf>,
    image: Option<&ImageExports>,
    donor: Option<&Donor>,
    donor_error: Option<&str>,
) -> Result<KernelRecord> {
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
        bail!(
            "no record for {release}, and the host's own facts are incomplete; missing:\n  - {}\n\
             or get a record: kmlink crawler refresh --release {release}, or kmlink bundle install FILE",
            missing.join("\n  - ")
        );
    };
    let config = host::read_config(Path::new("/"), release);
    let sources = host::HostSources {
        identity,
        btf,
        image,
        donor,
        config: config.as_ref(),
    };
    host::host_record(manifest, &sources)
        .with_context(|| format!("building the record of {release} from the host's facts"))
}

/// Gathers every source of truth for `args`' target kernel.
pub fn gather(args: &BuildArgs, manifest: &Manifest) -> Result<Sources> {
    gather_with(args, manifest, false)
}

/// [`gather`]; with `projected`, a stored record may be read as its
/// projection for the built-in core (only the exports that core may bind,
/// everything else as stored), which links the same module and feeds the
/// same checks, but is not the whole record (not for `--save-record`).
fn gather_with(args: &BuildArgs, manifest: &Manifest, projected: bool) -> Result<Sources> {
    let running = HostIdentity::read(Path::new("/")).ok();
    let release = match (&args.kernel, &running) {
        (Some(k), _) => k.clone(),
        (None, Some(h)) => h.release.clone(),
        (None, None) => {
            bail!("no --kernel given and the running kernel is unknown (is /proc mounted?)")
        }
    };
    let is_running = running.as_ref().is_some_and(|h| h.release == release);
    let host_id = if is_running { running.clone() } else { None };
    // A release of another architecture than the built-in core's (Debian
    // names it in the flavour): its facts are those that core asks.
    let other_arch = kmlink_crawler::discover::release_arch(&release)
        .filter(|a| *a != kmlink_core_module::Arch::X86_64);
    let other_manifest = match other_arch {
        Some(a) => Some(
            Manifest::core_for(a)
                .with_context(|| format!("reading the embedded {a} core's manifest"))?,
        ),
        None => None,
    };
    let arch_manifest = other_manifest.as_ref();
    let mut notes = Vec::new();

    // `--btf` naming a kernel image also gives its export table: on a
    // cross-build the record's exports, CRCs and namespaces are then
    // checked against the kernel itself.
    let mut btf_image = None;
    let btf = match &args.btf {
        Some(p) => {
            let (btf, image) = host::read_btf_source(p).context("--btf")?;
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
    let donor = match &args.donor {
        Some(p) => Some(Donor::open(p).context("--donor")?),
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
    let (record, record_from) = if let Some(path) = &args.record {
        (
            read_record_file(path, &release)?,
            format!("file {}", path.display()),
        )
    } else if args.from_packages {
        let fetched = kernels::materialize(&release, &args.fetch)?;
        let art = kernels::artifacts(&fetched);
        let r = kmlink_metadata_db::extract::extract(&art, arch_manifest.unwrap_or(manifest))
            .with_context(|| format!("extracting the facts of {release}"))?;
        (r, format!("extracted from the {} packages", fetched.suite))
    } else {
        let stored = if args.from_host {
            None
        } else {
            // Looking records up creates no store: a missing one leaves
            // the built-in bundle.
            let db_path = args
                .db
                .clone()
                .unwrap_or_else(kmlink_metadata_db::Store::default_path);
            let (records, source) = if std::fs::symlink_metadata(&db_path).is_err() {
                let embedded = kmlink_metadata_db::Store::embedded()
                    .context("reading the bundle built into kmlink")?
                    .into_iter()
                    .filter(|r| r.identity.release == release)
                    .collect();
                (embedded, RecordSource::Embedded)
            } else {
                let store = open_store(Some(&db_path))?;
                let lookup = || format!("looking up {release} in {}", store.path().display());
                // Projections are of the built-in (x86_64) core's facts.
                let fast = if projected && arch_manifest.is_none() {
                    store.get_projected(&release).with_context(lookup)?
                } else {
                    None
                };
                match fast {
                    Some(records) => (records, RecordSource::Store),
                    None => store.get_or_embedded(&release).with_context(lookup)?,
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
            (None, None) => bail!(
                "no record for {release} in the store or the built-in bundle; get one with \
                 kmlink crawler refresh --release {release}, or build it from packages with \
                 kmlink build --kernel {release} --from-packages"
            ),
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

/// Where each fact of a host-made record came from, and how to keep it
/// (nothing for a stored record), one line each.
pub fn provenance(s: &Sources) -> Vec<String> {
    if !s.from_host {
        return Vec::new();
    }
    let mut out = vec![format!(
        "kmlink: {}: no stored record; built from this host:",
        s.release
    )];
    out.extend(
        s.record
            .provenance
            .iter()
            .map(|(fact, from)| format!("  {fact:<12} ← {from}")),
    );
    out
}

/// Messages for stderr, written in one `write` when dropped (on success
/// and on every early return alike): stderr is unbuffered, and a verdict
/// printed piece by piece cost `kmlink build` over a hundred system calls.
#[derive(Default)]
struct Said(String);

impl Said {
    /// Adds one line.
    fn line(&mut self, line: impl std::fmt::Display) {
        use std::fmt::Write as _;
        let _ = writeln!(self.0, "{line}");
    }

    /// Writes what was said so far.
    fn flush(&mut self) {
        if !self.0.is_empty() {
            let _ = std::io::stderr().write_all(self.0.as_bytes());
            self.0.clear();
        }
    }
}

impl Drop for Said {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs `kmlink build`.
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let options = link_options(args.backend, &args.set)?;
    // Every signing input is checked before anything is linked or written.
    let signer = args.sign.prepare()?;
    let owned;
    let manifest = match kmlink_metadata_db::slim::builtin_manifest() {
        Some(m) => m,
        None => {
            owned = Manifest::core().context("reading the embedded core's manifest")?;
            &owned
        }
    };
    let mut said = Said::default();
    let sources = gather_with(&args, manifest, args.save_record.is_none())?;
    for line in sources.describe() {
        said.line(format_args!("kmlink: {line}"));
    }
    for line in provenance(&sources) {
        said.line(line);
    }
    if let Some(path) = &args.save_record {
        write_output(
            path,
            serde_json::to_string_pretty(&sources.record)?.as_bytes(),
        )?;
        said.line(format_args!("kmlink: record written to {}", path.display()));
    }
    // The core object (and its manifest) of the record's architecture.
    let arch = kmlink_core_module::Arch::from_machine(&sources.record.identity.arch)
        .unwrap_or(kmlink_core_module::Arch::X86_64);
    let arch_manifest;
    let (core, manifest) = if arch == kmlink_core_module::Arch::X86_64 {
        (CORE_OBJECT, manifest)
    } else {
        arch_manifest = Manifest::core_for(arch)
            .with_context(|| format!("reading the embedded {arch} core's manifest"))?;
        (arch.core_object(), &arch_manifest)
    };
    let facts = sources.facts(manifest);
    let built = kmlink_linker::build_with(core, &facts, &options);
    let (verdict, ko): (&Verdict, Option<Vec<u8>>) = match &built {
        Ok(b) => (&b.verdict, Some(b.linked.ko.clone())),
        Err(r) => (&r.verdict, None),
    };
    if args.check {
        said.flush();
        println!("{verdict}");
    } else {
        said.line(verdict);
    }
    let ko = match ko {
        Some(ko) => ko,
        None if args.unchecked_for_tests && !args.check => {
            said.line(
                "kmlink: WARNING: --unchecked-for-tests: writing a module the checks REFUSED; \
                 it exists to show what the kernel does with it. Never load it on a real system.",
            );
            kmlink_linker::link_with(core, manifest, &sources.record, &options)
                .with_context(|| format!("linking for {}", sources.release))?
                .ko
        }
        None => {
            said.line(format_args!(
                "kmlink: refused: no module written for {}. Fix what the ✗ lines name; \
                 kmlink never writes or loads a module its checks refuse.",
                sources.release
            ));
            return Ok(ExitCode::from(1));
        }
    };
    if sources.from_host && built.is_ok() {
        if args.store {
            let store = open_store(args.db.as_deref())?;
            store
                .put(&sources.record)
                .with_context(|| format!("storing the record in {}", store.path().display()))?;
            said.line(format_args!(
                "kmlink: record of {} stored in {}",
                sources.release,
                store.path().display()
            ));
        } else {
            said.line(format_args!(
                "kmlink: to keep these facts: kmlink build --kernel {} --from-host --store \
                 (or --save-record FILE)",
                sources.release
            ));
        }
    }
    said.flush();
    if args.dump {
        print!(
            "{}",
            kmlink_linker::dump::dump(&ko).map_err(anyhow::Error::msg)?
        );
    }
    if args.check {
        return Ok(ExitCode::SUCCESS);
    }
    let (ko, signed) = args.sign.apply(signer.as_ref(), ko)?;
    if let Some(line) = signed {
        eprintln!("kmlink: {line}");
    }
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("kmlink-{}.ko", sources.release)));
    write_output(&out, &ko)?;
    if !kmlink_fsio::is_stdout(&out) {
        println!("{}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes an output the user named (`-o`, `--save-record`): atomically
/// and exclusively for a regular file, in place for a device or FIFO, to
/// stdout for `-` (kmlink_fsio). No `fsync`: what is written here (a module,
/// a record as JSON) is rebuilt byte-identically on demand; after a power
/// loss the file may be missing or short, and `kmlink load` compares its
/// cached module with a fresh build before inserting it. The record store's
/// own writes do `fsync`.
pub fn write_output(path: &Path, data: &[u8]) -> Result<()> {
    kmlink_fsio::write_file(path, data, kmlink_fsio::Durability::Visible)
        .with_context(|| format!("writing {}", path.display()))
}
