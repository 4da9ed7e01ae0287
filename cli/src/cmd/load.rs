//! `kmlink load` / `kmlink unload`: build for the running kernel (cached by
//! content hash), check, insert with finit_module; remove with
//! delete_module. Failures are explained in words, with the kernel's own
//! log lines.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_linker::host::HostIdentity;
use rustix::io::Errno;

use super::build::{self, BuildArgs};

/// Arguments of `kmlink load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Kernel release; only the running kernel can be loaded into (default).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Record store to look the kernel up in.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Use a kernel record saved as JSON.
    #[arg(long, conflicts_with = "from_host")]
    pub record: Option<PathBuf>,
    /// Build the record from the host's own facts even if a database has one.
    #[arg(long)]
    pub from_host: bool,
    /// A module of the running kernel to cross-check against (default: an
    /// installed one, loaded and in-tree preferred).
    #[arg(long)]
    pub donor: Option<PathBuf>,
    /// BTF to cross-check layouts against (default /sys/kernel/btf/vmlinux).
    #[arg(long)]
    pub btf: Option<PathBuf>,
    /// Kernel hook of the monitor (as for `kmlink build`).
    #[arg(long, value_enum, default_value_t = build::Backend::Tracepoint)]
    pub backend: build::Backend,
    /// Set a link-time option of the core, NAME=VALUE (as for `kmlink build`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Link again even if a cached module exists.
    #[arg(long)]
    pub rebuild: bool,
    #[command(flatten)]
    pub sign: super::sign::SignOpts,
}

/// Arguments of `kmlink unload`.
#[derive(Args, Debug)]
pub struct UnloadArgs {}

/// Name of the module in the kernel.
const NAME: &str = kmlink_linker::MODULE_NAME;

/// Whether this process may load modules (effective uid 0); the message
/// if not.
pub fn need_root(what: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    bail!(
        "kmlink {what} needs root: inserting and removing kernel modules takes CAP_SYS_MODULE. \
         Run it as root: sudo kmlink {what}"
    )
}

/// Where built modules are cached: `$XDG_CACHE_HOME/kmlink/modules` or
/// `~/.cache/kmlink/modules`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("kmlink/modules")
}

use kmlink_linker::load::{errno_name, relevant, Kmsg};
pub use kmlink_linker::load::{insert, is_loaded, LOADED_NOTE};
pub use kmlink_linker::security::LoadPolicy;

/// Runs `kmlink load`.
pub fn run(args: LoadArgs) -> Result<ExitCode> {
    let host =
        HostIdentity::read(Path::new("/")).context("reading the running kernel's identity")?;
    if let Some(k) = &args.kernel {
        if *k != host.release {
            bail!(
                "kmlink load inserts into the running kernel ({}), not {k}; \
                 to build for another kernel: kmlink build --kernel {k}",
                host.release
            );
        }
    }
    need_root("load")?;
    if !Path::new("/proc/modules").exists() {
        bail!(
            "the running kernel ({}) has no loadable-module support (no /proc/modules: CONFIG_MODULES is off); \
             the monitor cannot be loaded here. `kmlink doctor` lists what this host lacks",
            host.release
        );
    }
    if is_loaded(Path::new("/")) {
        bail!("the monitor is already loaded (kmlink in /proc/modules); `kmlink unload` first");
    }
    let signer = signing_for_load(&args.sign)?;
    let manifest = Manifest::core().context("reading the embedded core's manifest")?;
    let bargs = BuildArgs {
        db: args.db.clone(),
        record: args.record.clone(),
        from_host: args.from_host,
        donor: args.donor.clone(),
        btf: args.btf.clone(),
        ..BuildArgs::for_kernel(&host.release)
    };
    let sources = build::gather(&bargs, &manifest)?;
    for line in sources.describe() {
        eprintln!("kmlink: {line}");
    }
    for line in sources.provenance() {
        eprintln!("{line}");
    }
    let facts = sources.facts(&manifest);
    let options = build::link_options(args.backend, &args.set)?;
    let built = match kmlink_linker::build_with(CORE_OBJECT, &facts, &options) {
        Ok(b) => b,
        Err(refused) => {
            eprintln!("{}", refused.verdict);
            eprintln!(
                "kmlink: refused: nothing was inserted. kmlink never loads a module its checks refuse."
            );
            return Ok(ExitCode::from(1));
        }
    };
    eprintln!("{}", built.verdict);

    let (ko, signed) = args.sign.apply(signer.as_ref(), built.linked.ko.clone())?;
    if let Some(line) = signed {
        eprintln!("kmlink: {line}");
    }
    // Named by its own bytes: every input (core, record, options, signer)
    // is in them.
    let hash = sha256_hex(&ko);
    let path = cache_dir().join(format!("kmlink-{}-{}.ko", sources.release, &hash[..16]));
    let cached = !args.rebuild && std::fs::read(&path).is_ok_and(|b| b == ko);
    if !cached {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("creating {}", cache_dir().display()))?;
        build::write_output(&path, &ko)?;
    }
    eprintln!(
        "kmlink: module {} ({})",
        path.display(),
        if cached { "cached" } else { "built" }
    );

    insert(&path)?;
    println!(
        "kmlink: loaded into {} ({}); read /proc/kmlink/stats, or run kmlink top",
        host.release, host.build_string
    );
    Ok(ExitCode::SUCCESS)
}

/// The signer `kmlink load` uses, decided before anything is linked:
/// the configured key (or kmlink's, DKMS's or shim-signed's) when there is
/// one; when the kernel accepts only signed modules, a refusal with the
/// next step if there is no key or the kernel does not hold it.
pub fn signing_for_load(opts: &super::sign::SignOpts) -> Result<Option<kmlink_modsign::Signer>> {
    use kmlink_linker::security::{self, Trust};
    if opts.emit_digest.is_some() || opts.attach_signature.is_some() {
        bail!(
            "kmlink load signs with a key on this host; to sign elsewhere, build with \
             kmlink build --emit-digest / --attach-signature and insert the result"
        );
    }
    opts.hash()?;
    let root = Path::new("/");
    let policy = LoadPolicy::read(root);
    let pair = super::sign::configured_pair(opts);
    let Some(pair) = pair else {
        if policy.signatures_required() {
            let dir = kmlink_modsign::keys::key_dir();
            let looked: Vec<String> = kmlink_modsign::keys::candidates(root, &dir)
                .iter()
                .map(|p| p.key.display().to_string())
                .collect();
            bail!(
                "this kernel accepts only signed modules ({}), and no signing key is configured \
                 (looked at {}; --sign-key/--sign-cert or KMLINK_SIGN_KEY/KMLINK_SIGN_CERT name one). \
                 Nothing was inserted. Next: sudo kmlink key generate && sudo kmlink key enroll, \
                 reboot and confirm the key in MokManager, then sudo kmlink load",
                policy.reason(),
                looked.join(", ")
            );
        }
        return Ok(None);
    };
    let signer = super::sign::open_signer(&pair.key, &pair.cert)?;
    let desc = kmlink_modsign::key::kernel_key_description(signer.certificate());
    match security::trust(
        root,
        &desc,
        &kmlink_modsign::key::certificate_der(signer.certificate())?,
    ) {
        Trust::Trusted => eprintln!(
            "kmlink: signing with {} ({}), which the kernel trusts",
            pair.key.display(),
            pair.origin.describe()
        ),
        Trust::NotTrusted if policy.signatures_required() => bail!(
            "this kernel accepts only signed modules ({}), and it does not hold the signing key \
             {} ({}; \"{desc}\"): a module signed with it would be refused. Nothing was inserted. \
             Next: sudo kmlink key enroll --cert {}, reboot and confirm the key in MokManager",
            policy.reason(),
            pair.key.display(),
            pair.origin.describe(),
            pair.cert.display()
        ),
        Trust::NotTrusted => eprintln!(
            "kmlink: signing with {} ({}); the kernel does not hold that key, so the module \
             loads as if unsigned (taint E)",
            pair.key.display(),
            pair.origin.describe()
        ),
        Trust::Unknown(why) => eprintln!(
            "kmlink: signing with {} ({}); whether the kernel trusts it is unknown: {why}",
            pair.key.display(),
            pair.origin.describe()
        ),
    }
    Ok(Some(signer))
}

/// Runs `kmlink unload`.
pub fn run_unload(_args: UnloadArgs) -> Result<ExitCode> {
    need_root("unload")?;
    let name = CString::new(NAME).context("module name")?;
    let kmsg = Kmsg::open();
    // O_NONBLOCK: fail at once if someone holds /proc/kmlink open.
    match rustix::system::delete_module(&name, 0o4000) {
        Ok(()) => {
            println!("kmlink: unloaded");
            Ok(ExitCode::SUCCESS)
        }
        Err(errno) => {
            let why = match errno {
                Errno::NOENT => "the monitor is not loaded".to_string(),
                Errno::AGAIN | Errno::BUSY => {
                    "the monitor is in use (a process holds /proc/kmlink/* open: stop kmlink top/stats/events and retry)".to_string()
                }
                Errno::PERM => "permission denied (CAP_SYS_MODULE, or module removal is forbidden by policy)".to_string(),
                Errno::NOSYS => "this kernel has no module support (or no module unloading: CONFIG_MODULE_UNLOAD off)".to_string(),
                other => format!("{other}"),
            };
            let lines = relevant(kmsg.new_lines());
            let mut msg = format!(
                "delete_module({NAME}) failed ({}): {why}",
                errno_name(errno)
            );
            for l in lines {
                msg.push_str("\n  ");
                msg.push_str(&l);
            }
            if errno == Errno::NOENT {
                eprintln!("kmlink: {msg}");
                return Ok(ExitCode::from(1));
            }
            bail!("{msg}")
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
