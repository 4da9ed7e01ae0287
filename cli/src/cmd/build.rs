//! `kmlink build`: link the monitor for one kernel, after checking every
//! fact across every source at hand (gathered by
//! [`kmlink_linker::gather`], which `kmlink load` and `kmlink doctor`
//! share through [`gather`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_linker::check::Verdict;
use kmlink_linker::gather::{self, FetchPackages, GatherOptions, Sources};
use kmlink_metadata_db::Store;

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

impl BuildArgs {
    /// The linker's gathering options these arguments select; `fetch`
    /// fetches the packages for `--from-packages`.
    fn gather_options<'a>(
        &'a self,
        fetch: FetchPackages<'a>,
        projected: bool,
    ) -> GatherOptions<'a> {
        GatherOptions {
            kernel: self.kernel.as_deref(),
            record: self.record.as_deref(),
            from_packages: self.from_packages.then_some(fetch),
            from_host: self.from_host,
            donor: self.donor.as_deref(),
            btf: self.btf.as_deref(),
            db: self.db.as_deref(),
            projected,
        }
    }
}

/// Gathers every source of truth for `args`' target kernel
/// ([`kmlink_linker::gather`]).
pub fn gather(args: &BuildArgs, manifest: &Manifest) -> Result<Sources> {
    gather_with(args, manifest, false)
}

/// [`gather`]; with `projected`, a stored record may be read as its
/// projection for the built-in core (not for `--save-record`).
fn gather_with(args: &BuildArgs, manifest: &Manifest, projected: bool) -> Result<Sources> {
    let fetch = kernels::fetch_packages(&args.fetch);
    Ok(gather::gather(
        &args.gather_options(&fetch, projected),
        manifest,
    )?)
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
    for line in sources.provenance() {
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
            let store = Store::open_default(args.db.as_deref())?;
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
