//! kmlink on an installed system: `kmlink hook postinst|postrm RELEASE`
//! (run by /etc/kernel/postinst.d and postrm.d), `kmlink service
//! start|stop` (kmlink.service), and `kmlink status`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_linker::donor::DonorSearch;
use kmlink_linker::host::{self, HostIdentity};
use kmlink_system::config::{self, Config};
use kmlink_system::prebuilt::{self, Inputs, Prebuilt, Record};

use super::build::{self, Backend, BuildArgs};
use super::load;
use super::sign::SignOpts;

/// Arguments of `kmlink hook`.
#[derive(Args, Debug)]
pub struct HookArgs {
    /// Which hook runs.
    #[arg(value_enum)]
    pub event: HookEvent,
    /// The kernel release being installed or removed.
    pub release: String,
    /// Configuration file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Prebuilt module directory.
    #[arg(long, default_value = prebuilt::DEFAULT_ROOT)]
    pub prebuilt: PathBuf,
}

/// Kernel package events.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HookEvent {
    /// A kernel was installed: link (and sign) the monitor for it.
    Postinst,
    /// A kernel was removed: remove its prebuilt module.
    Postrm,
}

/// Arguments of `kmlink service`.
#[derive(Args, Debug)]
pub struct ServiceArgs {
    #[command(subcommand)]
    action: ServiceAction,
    /// Configuration file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Prebuilt module directory.
    #[arg(long, global = true, default_value = prebuilt::DEFAULT_ROOT)]
    prebuilt: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ServiceAction {
    /// Load the monitor at boot: the prebuilt module when its inputs are
    /// unchanged, else link now (and keep the result).
    ///
    /// Examples:
    ///   kmlink service start
    ///   kmlink service start --config /etc/kmlink/kmlink.toml
    #[command(verbatim_doc_comment)]
    Start,
    /// Unload the monitor.
    ///
    /// Examples:
    ///   kmlink service stop
    #[command(verbatim_doc_comment)]
    Stop,
}

/// Arguments of `kmlink status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Configuration file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Prebuilt module directory.
    #[arg(long, default_value = prebuilt::DEFAULT_ROOT)]
    prebuilt: PathBuf,
}

/// What identifies this kmlink's output: its version and its core object.
fn kmlink_identity() -> String {
    use sha2::Digest;
    format!(
        "{} core {}",
        env!("CARGO_PKG_VERSION"),
        &hex::encode(sha2::Sha256::digest(CORE_OBJECT))[..16]
    )
}

fn backend(config: &Config) -> Backend {
    match config.load.backend.as_str() {
        "kprobe" => Backend::Kprobe,
        _ => Backend::Tracepoint,
    }
}

/// The signing options the configuration names (else kmlink's, DKMS's or
/// shim-signed's key is looked for, as `kmlink load` does).
fn sign_opts(config: &Config) -> SignOpts {
    match &config.sign {
        Some(s) => SignOpts {
            sign_key: Some(s.key.clone()),
            sign_cert: Some(s.cert.clone()),
            sign_hash: s.hash.clone(),
            ..Default::default()
        },
        None => SignOpts {
            sign_hash: "sha256".into(),
            ..Default::default()
        },
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Today's inputs for `release`.
fn inputs(release: &str, config: &Config, signer: Option<&kmlink_modsign::Signer>) -> Inputs {
    Inputs {
        release: release.to_string(),
        kmlink: kmlink_identity(),
        options: config.describe(),
        image_sha256: host::find_image(Path::new("/"), release)
            .and_then(|p| prebuilt::file_sha256(&p)),
        signer: signer.map(|s| {
            format!(
                "{} sha256:{}",
                s.subject(),
                s.fingerprint().unwrap_or_default()
            )
        }),
    }
}

/// Links (and signs) the monitor for `release` from what this system has:
/// the record store or the built-in bundle, cross-checked against the
/// kernel's own image (BTF) and one of its modules (donor); for the running
/// kernel, its live facts too.
fn link(
    release: &str,
    config: &Config,
    signer: Option<&kmlink_modsign::Signer>,
) -> Result<(Vec<u8>, Record)> {
    let manifest = Manifest::core().context("reading the embedded core's manifest")?;
    let root = Path::new("/");
    let running = HostIdentity::read(root)
        .ok()
        .is_some_and(|h| h.release == release);
    let mut bargs = BuildArgs {
        backend: backend(config),
        set: config.load.set.clone(),
        ..BuildArgs::for_kernel(release)
    };
    if !running {
        bargs.btf = host::find_image(root, release);
    }
    let mut sources = build::gather(&bargs, &manifest)?;
    if sources.donor.is_none() {
        sources.donor = DonorSearch::for_host(root, release).find(None).ok();
    }
    let options = build::link_options(bargs.backend, &bargs.set)?;
    let built = match kmlink_linker::build_with(CORE_OBJECT, &sources.facts(&manifest), &options) {
        Ok(b) => b,
        Err(refused) => bail!(
            "the checks refused to link for {release}:\n{}",
            refused.verdict
        ),
    };
    let ko = match signer {
        Some(s) => s.sign(
            &built.linked.ko,
            kmlink_modsign::HashAlgo::from_name(&sign_opts(config).sign_hash)?,
            kmlink_modsign::Existing::Refuse,
        )?,
        None => built.linked.ko.clone(),
    };
    let record = Record {
        inputs: inputs(release, config, signer),
        sources: sources.describe(),
        verdict: {
            let v = built.verdict.to_string();
            v.lines()
                .find(|l| l.starts_with("verdict"))
                .or_else(|| v.lines().last())
                .unwrap_or_default()
                .to_string()
        },
        built_unix: now_unix(),
        module_sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&ko))
        },
    };
    Ok((ko, record))
}

/// The signer for a configuration, if a key is configured or found.
fn signer(config: &Config) -> Result<Option<kmlink_modsign::Signer>> {
    match super::sign::configured_pair(&sign_opts(config)) {
        Some(p) => Ok(Some(super::sign::open_signer(&p.key, &p.cert)?)),
        None => Ok(None),
    }
}

/// "signed by <subject> sha256:<fingerprint>", or "unsigned".
fn signed_by(inputs: &Inputs) -> String {
    inputs
        .signer
        .as_deref()
        .map(|s| format!("signed by {s}"))
        .unwrap_or_else(|| "unsigned".into())
}

/// Runs `kmlink hook`. A failure is said loudly but never fails the
/// package transaction: the exit status is 0 unless the arguments are wrong.
pub fn run_hook(args: HookArgs) -> Result<ExitCode> {
    let store = Prebuilt::new(&args.prebuilt);
    match args.event {
        HookEvent::Postrm => {
            match store.remove(&args.release) {
                Ok(true) => println!(
                    "kmlink: removed the prebuilt monitor of {} ({})",
                    args.release,
                    args.prebuilt.join(&args.release).display()
                ),
                Ok(false) => {}
                Err(e) => eprintln!(
                    "kmlink: WARNING: removing the prebuilt monitor of {}: {e}",
                    args.release
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        HookEvent::Postinst => {
            let result = (|| -> Result<String> {
                let config = Config::read(&args.config)?;
                let signer = signer(&config)?;
                let (ko, record) = link(&args.release, &config, signer.as_ref())?;
                let path = store.store(&args.release, &ko, &record)?;
                Ok(format!(
                    "kmlink: linked and checked the monitor for {}: {} ({}; {})",
                    args.release,
                    path.display(),
                    record.verdict,
                    signed_by(&record.inputs)
                ))
            })();
            match result {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!(
                    "kmlink: WARNING: could not link the monitor for {}: {e:#}\n\
                     kmlink: the kernel is installed all the same; kmlink.service will try to link \
                     at boot from the running kernel's own files (kmlink doctor explains what is missing)",
                    args.release
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `kmlink service start|stop`.
pub fn run_service(args: ServiceArgs) -> Result<ExitCode> {
    match args.action {
        ServiceAction::Stop => {
            if !load::is_loaded(Path::new("/")) {
                println!("kmlink: the monitor is not loaded");
                return Ok(ExitCode::SUCCESS);
            }
            load::run_unload(load::UnloadArgs {})
        }
        ServiceAction::Start => start(&args),
    }
}

fn start(args: &ServiceArgs) -> Result<ExitCode> {
    let config = Config::read(&args.config)?;
    if !config.load.at_boot {
        println!(
            "kmlink: not loading: {} says [load] at_boot = false",
            args.config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    load::need_root("service start")?;
    if load::is_loaded(Path::new("/")) {
        println!("kmlink: the monitor is already loaded");
        return Ok(ExitCode::SUCCESS);
    }
    let host =
        HostIdentity::read(Path::new("/")).context("reading the running kernel's identity")?;
    let release = host.release.clone();
    // The same signing policy as kmlink load: refuse before inserting.
    let signer = load::signing_for_load(&sign_opts(&config))?;
    let store = Prebuilt::new(&args.prebuilt);
    let now = inputs(&release, &config, signer.as_ref());
    let stored = store.get(&release)?;
    let path = match stored {
        Some((record, path)) => match prebuilt::changed(&record.inputs, &now) {
            None => {
                println!(
                    "kmlink: loading prebuilt {} (linked {} s ago by the kernel hook; inputs unchanged: no relinking)",
                    path.display(),
                    now_unix().saturating_sub(record.built_unix)
                );
                path
            }
            Some(why) => {
                println!("kmlink: the prebuilt module of {release} is stale ({why}); relinking");
                relink(&store, &release, &config, signer.as_ref())?
            }
        },
        None => {
            println!("kmlink: no prebuilt module for {release}; linking now");
            relink(&store, &release, &config, signer.as_ref())?
        }
    };
    load::insert(&path)?;
    println!(
        "kmlink: monitor loaded into {release} from {} ({})",
        path.display(),
        config.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn relink(
    store: &Prebuilt,
    release: &str,
    config: &Config,
    signer: Option<&kmlink_modsign::Signer>,
) -> Result<PathBuf> {
    let (ko, record) = link(release, config, signer)?;
    println!("kmlink: {}", record.verdict);
    Ok(store.store(release, &ko, &record)?)
}

/// Runs `kmlink status`.
pub fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let root = Path::new("/");
    let loaded = load::is_loaded(root);
    let release = HostIdentity::read(root)
        .map(|h| h.release)
        .unwrap_or_default();
    println!("kernel:    {release}");
    if loaded {
        let backend = std::fs::read_to_string(root.join("proc/kmlink/stats"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("backend ").map(str::to_string))
            })
            .unwrap_or_else(|| "?".into());
        println!("monitor:   loaded (backend {backend})");
        match std::fs::read_to_string(load::LOADED_NOTE) {
            Ok(p) => {
                let p = PathBuf::from(p.trim());
                println!("module:    {}", p.display());
                describe_module(&p);
            }
            Err(_) => println!(
                "module:    unknown (loaded by something other than kmlink load or kmlink.service)"
            ),
        }
    } else {
        println!("monitor:   not loaded");
    }
    match Config::read(&args.config) {
        Ok(c) => println!(
            "config:    {}: {}, load at boot {}",
            args.config.display(),
            c.describe(),
            if c.load.at_boot { "yes" } else { "no" }
        ),
        Err(e) => println!("config:    UNUSABLE: {e}"),
    }
    let store = Prebuilt::new(&args.prebuilt);
    let list = store.list();
    if list.is_empty() {
        println!("prebuilt:  none in {}", store.root().display());
    }
    for (rel, record) in list {
        println!(
            "prebuilt:  {rel}: built {} s ago, {}, {}",
            now_unix().saturating_sub(record.built_unix),
            record.verdict,
            signed_by(&record.inputs)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what the prebuilt record and the signature say of a module file.
fn describe_module(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(text) = std::fs::read(dir.join(prebuilt::INPUTS_FILE)) {
            if let Ok(r) = serde_json::from_slice::<Record>(&text) {
                println!(
                    "built:     {} s ago by {}, {}",
                    now_unix().saturating_sub(r.built_unix),
                    r.inputs.kmlink,
                    r.inputs.options
                );
                for s in r.sources {
                    println!("source:    {s}");
                }
            }
        }
    }
    match std::fs::read(path).map(|b| kmlink_modsign::inspect(&b)) {
        Ok(Ok(Some(info))) => println!(
            "signed:    {} over {}, {}",
            info.algo,
            info.hash.name(),
            info.signer.describe()
        ),
        Ok(Ok(None)) => println!("signed:    no"),
        Ok(Err(e)) => println!("signed:    damaged signature: {e}"),
        Err(e) => println!("signed:    cannot read {}: {e}", path.display()),
    }
}

/// Arguments of the hidden `kmlink generate` (packaging).
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    what: Generated,
    /// Directory to write into.
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Generated {
    /// Man pages: kmlink.1 and one per subcommand.
    Man,
    /// Shell completions for bash, zsh and fish.
    Completions,
}

/// Runs `kmlink generate man|completions DIR`.
pub fn run_generate(args: GenerateArgs, cmd: clap::Command) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    match args.what {
        Generated::Man => {
            clap_mangen::generate_to(cmd, &args.dir)
                .with_context(|| format!("writing man pages into {}", args.dir.display()))?;
        }
        Generated::Completions => {
            use clap_complete::Shell;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut cmd.clone(), "kmlink", &args.dir)
                    .with_context(|| format!("writing {shell} completions"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
