//! `kmlink doctor`: whether this host can load the monitor, and if not, why
//! and what to do — one line per fact, ✓ or ✗, with the fix.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_donor::config::KernelConfig;
use kmlink_errors::{chain, Chain};
use kmlink_linker::donor::DonorSearch;
use kmlink_linker::host::{self, HostIdentity};

use super::build::{self, BuildArgs};
use super::load::{is_loaded, LoadPolicy};
use kmlink_linker::security::{self, Trust};

/// Arguments of `kmlink doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Record store to look the kernel up in.
    #[arg(long)]
    pub db: Option<std::path::PathBuf>,
}

/// One line of the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Passed, failed (blocks loading), or informational.
    pub mark: Mark,
    /// What was looked at.
    pub subject: String,
    /// What was found.
    pub found: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

/// The mark of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Fine.
    Ok,
    /// Blocks loading the monitor.
    Blocks,
    /// Worth knowing, blocks nothing.
    Note,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = match self.mark {
            Mark::Ok => "✓",
            Mark::Blocks => "✗",
            Mark::Note => "-",
        };
        write!(f, "{m} {:<14} {}", self.subject, self.found)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  → {fix}")?;
        }
        Ok(())
    }
}

fn line(mark: Mark, subject: &str, found: impl Into<String>, fix: Option<String>) -> Line {
    Line {
        mark,
        subject: subject.into(),
        found: found.into(),
        fix,
    }
}

/// The kernel config and where it came from, if any.
fn config(root: &Path, release: &str) -> Option<(String, KernelConfig)> {
    host::read_config(root, release).map(|c| (c.path.display().to_string(), c.config))
}

/// The host-level lines (no record or linking): identity, config switches,
/// policy, privileges. `root` is `/` except in tests.
pub fn host_lines(root: &Path, euid_root: bool) -> (Option<HostIdentity>, Vec<Line>) {
    let mut out = Vec::new();
    let identity = match HostIdentity::read(root) {
        Ok(h) => {
            out.push(line(
                Mark::Ok,
                "kernel",
                format!("{} {}", h.release, h.build_string),
                None,
            ));
            Some(h)
        }
        Err(e) => {
            out.push(line(
                Mark::Blocks,
                "kernel",
                format!("unknown: {}", Chain(&e)),
                Some("mount /proc".into()),
            ));
            None
        }
    };
    let release = identity
        .as_ref()
        .map(|h| h.release.clone())
        .unwrap_or_default();
    let proc_modules = root.join("proc/modules").exists();
    let cfg = config(root, &release);
    match &cfg {
        Some((path, c)) => {
            let modules = c.enabled("CONFIG_MODULES");
            out.push(line(
                if modules { Mark::Ok } else { Mark::Blocks },
                "modules",
                format!(
                    "CONFIG_MODULES={} (from {path})",
                    c.get("CONFIG_MODULES").unwrap_or("n")
                ),
                (!modules).then(|| {
                    "this kernel cannot load modules at all: boot a kernel built with CONFIG_MODULES=y".to_string()
                }),
            ));
            // Either backend will do: missing tracepoints block only when
            // kprobes are missing too.
            let tp = c.enabled("CONFIG_TRACEPOINTS");
            let kp = c.enabled("CONFIG_KPROBES");
            out.push(line(
                match (tp, kp) {
                    (true, _) => Mark::Ok,
                    (false, true) => Mark::Note,
                    (false, false) => Mark::Blocks,
                },
                "tracepoints",
                format!(
                    "CONFIG_TRACEPOINTS={} (the default backend hooks the kmem tracepoints)",
                    c.get("CONFIG_TRACEPOINTS").unwrap_or("n")
                ),
                match (tp, kp) {
                    (true, _) => None,
                    (false, true) => Some("use the kprobe backend: kmlink load --backend kprobe".into()),
                    (false, false) => Some(
                        "boot a kernel with CONFIG_TRACEPOINTS=y (or CONFIG_KPROBES=y for --backend kprobe)".into(),
                    ),
                },
            ));
            out.push(line(
                if kp { Mark::Ok } else { Mark::Note },
                "kprobes",
                format!(
                    "CONFIG_KPROBES={} (needed by the kprobe backend only, --backend kprobe)",
                    c.get("CONFIG_KPROBES").unwrap_or("n")
                ),
                None,
            ));
            let unload = c.enabled("CONFIG_MODULE_UNLOAD");
            out.push(line(
                if unload { Mark::Ok } else { Mark::Note },
                "unload",
                format!(
                    "CONFIG_MODULE_UNLOAD={}",
                    c.get("CONFIG_MODULE_UNLOAD").unwrap_or("n")
                ),
                (!unload).then(|| "the monitor could not be removed without a reboot".to_string()),
            ));
        }
        None => {
            out.push(line(
                if proc_modules { Mark::Ok } else { Mark::Blocks },
                "modules",
                if proc_modules {
                    "module support present (/proc/modules exists; no kernel config found to say more)".to_string()
                } else {
                    "no /proc/modules and no kernel config (/proc/config.gz, /boot/config-*): this kernel has no module support".to_string()
                },
                (!proc_modules).then(|| {
                    "boot a kernel built with CONFIG_MODULES=y (a distribution kernel)".to_string()
                }),
            ));
            let tp = root.join("sys/kernel/tracing/events/kmem").exists()
                || root.join("sys/kernel/debug/tracing/events/kmem").exists();
            out.push(line(
                Mark::Note,
                "tracepoints",
                if tp {
                    "kmem tracepoints visible in tracefs".to_string()
                } else {
                    "no kernel config to tell (and tracefs does not show events/kmem)".to_string()
                },
                None,
            ));
        }
    }
    let policy = LoadPolicy::read(root);
    if policy.modules_disabled {
        out.push(line(
            Mark::Blocks,
            "modules_disabled",
            "1: module loading is off until reboot",
            Some(
                "reboot; find what sets kernel.modules_disabled=1 (sysctl.d) if it should not"
                    .into(),
            ),
        ));
    } else if root.join("proc/sys/kernel/modules_disabled").exists() {
        out.push(line(Mark::Ok, "modules_disabled", "0", None));
    }
    out.push(line(
        Mark::Ok,
        "lockdown",
        match policy.lockdown.as_deref() {
            Some("none") => "none".to_string(),
            Some(mode) => format!("{mode}: only signed modules load"),
            None => "not active (no /sys/kernel/security/lockdown)".to_string(),
        },
        None,
    ));
    out.push(line(
        Mark::Note,
        "secure boot",
        match policy.secure_boot {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown (no EFI variables: legacy boot, or efivarfs not mounted)",
        },
        None,
    ));
    let sig_force = cfg
        .as_ref()
        .is_some_and(|(_, c)| c.enabled("CONFIG_MODULE_SIG_FORCE"));
    out.push(signing_line(root, &policy, sig_force));
    let keys = security::known_keys(root);
    out.push(line(
        Mark::Note,
        "trusted keys",
        if keys.is_empty() {
            "none visible here (/proc/keys and the kernel log show no X.509 key)".to_string()
        } else {
            keys.join("; ")
        },
        None,
    ));
    out.push(if euid_root {
        line(Mark::Ok, "root", "running as root", None)
    } else {
        line(
            Mark::Blocks,
            "root",
            "not root: loading needs CAP_SYS_MODULE",
            Some("run kmlink load as root (sudo kmlink load)".into()),
        )
    });
    let loaded = is_loaded(root);
    out.push(line(
        Mark::Note,
        "monitor",
        if loaded {
            "loaded (/proc/kmlink/stats; kmlink unload removes it)"
        } else {
            "not loaded"
        },
        None,
    ));
    if loaded && kprobe_backend_loaded(root) {
        out.push(line(
            Mark::Note,
            "kprobe backend",
            "loaded: its kretprobes replace the return address of every allocator function they wrap, \
             so while it is loaded the kernel's own kmem tracepoints (ftrace, perf, BPF) report \
             call_site=arch_rethook_trampoline+0x0 for those allocations (docs/core-module.md)",
            Some(
                "for call sites in other tracers, use the tracepoint backend (kmlink load --backend tracepoint)"
                    .into(),
            ),
        ));
    }
    (identity, out)
}

/// Whether modules must be signed, with which key kmlink signs, and
/// whether the kernel trusts it.
fn signing_line(root: &Path, policy: &LoadPolicy, sig_force: bool) -> Line {
    let required = policy.signatures_required() || sig_force;
    let why = if sig_force && !policy.signatures_required() {
        "CONFIG_MODULE_SIG_FORCE=y".to_string()
    } else {
        policy.reason()
    };
    let enrol = "sudo kmlink key generate && sudo kmlink key enroll; reboot and confirm the key \
                 in MokManager; then sudo kmlink load signs with it"
        .to_string();
    // Tests pass a fake root: kmlink's key directory is then inside it.
    let dir = if root == Path::new("/") {
        kmlink_modsign::keys::key_dir()
    } else {
        root.join("var/lib/kmlink/keys")
    };
    let pair = kmlink_modsign::keys::find(root, &dir);
    let Some(pair) = pair else {
        return if required {
            line(
                Mark::Blocks,
                "signatures",
                format!("required ({why}); no signing key (kmlink's, DKMS's or shim-signed's)"),
                Some(enrol),
            )
        } else {
            line(
                Mark::Ok,
                "signatures",
                "not required; an unsigned module loads and taints the kernel O|E",
                None,
            )
        };
    };
    let key = format!("{} ({})", pair.key.display(), pair.origin.describe());
    let cert = match kmlink_modsign::key::read_certificate(&pair.cert) {
        Ok(c) => c,
        Err(e) => {
            return line(
                if required { Mark::Blocks } else { Mark::Note },
                "signatures",
                format!("signing key {key}: its certificate is unusable: {e}"),
                Some(enrol),
            )
        }
    };
    let desc = kmlink_modsign::key::kernel_key_description(&cert);
    match (security::trust(
        root,
        &desc,
        &kmlink_modsign::key::certificate_der(&cert).unwrap_or_default(),
    ), required) {
        (Trust::Trusted, _) => line(
            Mark::Ok,
            "signatures",
            format!(
                "{}; kmlink signs with {key}, which the kernel trusts",
                if required { format!("required ({why})") } else { "not required".into() }
            ),
            None,
        ),
        (Trust::NotTrusted, true) => line(
            Mark::Blocks,
            "signatures",
            format!("required ({why}); the kernel does not hold kmlink's signing key {key} (\"{desc}\")"),
            Some(format!(
                "sudo kmlink key enroll --cert {}; reboot and confirm it in MokManager",
                pair.cert.display()
            )),
        ),
        (Trust::NotTrusted, false) => line(
            Mark::Note,
            "signatures",
            format!("not required; kmlink signs with {key}, which the kernel does not hold (taint E)"),
            None,
        ),
        (Trust::Unknown(e), _) => line(
            Mark::Note,
            "signatures",
            format!(
                "{}; kmlink signs with {key}; whether the kernel trusts it is unknown: {e}",
                if required { format!("required ({why})") } else { "not required".into() }
            ),
            None,
        ),
    }
}

/// Whether the loaded monitor says `backend kprobe` in its stats.
fn kprobe_backend_loaded(root: &Path) -> bool {
    std::fs::read_to_string(root.join("proc/kmlink/stats"))
        .map(|t| t.lines().any(|l| l.trim() == "backend kprobe"))
        .unwrap_or(false)
}

/// Runs `kmlink doctor`.
pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    let root = Path::new("/");
    let (identity, mut lines) = host_lines(root, rustix::process::geteuid().is_root());
    if let Some(h) = &identity {
        lines.extend(fact_lines(&args, h));
    }
    for l in &lines {
        println!("{l}");
    }
    let blocking = lines.iter().filter(|l| l.mark == Mark::Blocks).count();
    if blocking == 0 {
        println!("kmlink doctor: this host can load the monitor: sudo kmlink load");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("kmlink doctor: {blocking} thing(s) block loading the monitor on this host");
        Ok(ExitCode::from(1))
    }
}

/// Lines about the facts: BTF, image, donor, record, and the checks.
fn fact_lines(args: &DoctorArgs, h: &HostIdentity) -> Vec<Line> {
    let mut out = Vec::new();
    let release = &h.release;
    let btf = Path::new(host::LIVE_BTF);
    out.push(if btf.exists() {
        line(Mark::Ok, "BTF", host::LIVE_BTF.to_string(), None)
    } else {
        line(
            Mark::Note,
            "BTF",
            format!(
                "{} absent (CONFIG_DEBUG_INFO_BTF off): layouts cannot be cross-checked",
                host::LIVE_BTF
            ),
            None,
        )
    });
    match host::find_image(Path::new("/"), release) {
        Some(p) => out.push(line(Mark::Ok, "image", p.display().to_string(), None)),
        None => out.push(line(
            Mark::Note,
            "image",
            format!("no /boot/vmlinuz-{release}: no CRCs from the host itself"),
            None,
        )),
    }
    match DonorSearch::for_host(Path::new("/"), release).find(None) {
        Ok(d) => out.push(line(Mark::Ok, "donor", d.describe(), None)),
        Err(e) => out.push(line(Mark::Note, "donor", chain(&e), None)),
    }
    let manifest = match Manifest::core() {
        Ok(m) => m,
        Err(e) => {
            out.push(line(Mark::Blocks, "core", chain(&e), None));
            return out;
        }
    };
    let bargs = BuildArgs {
        db: args.db.clone(),
        ..BuildArgs::for_kernel(release)
    };
    match build::gather(&bargs, &manifest) {
        Ok(s) => {
            out.push(line(Mark::Ok, "record", s.record_from.clone(), None));
            let facts = s.facts(&manifest);
            match kmlink_linker::build(CORE_OBJECT, &facts) {
                Ok(b) => out.push(line(
                    Mark::Ok,
                    "checks",
                    format!(
                        "all {} agree: a module can be built",
                        b.verdict.checks.len()
                    ),
                    None,
                )),
                Err(r) => {
                    for c in r.verdict.failures() {
                        out.push(line(
                            Mark::Blocks,
                            &format!("check {}", c.name),
                            c.detail.clone(),
                            c.fix.clone(),
                        ));
                    }
                }
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            out.push(line(
                Mark::Blocks,
                "record",
                first.to_string(),
                Some(if rest.is_empty() {
                    format!("get a record: kmlink crawler refresh --release {release}, or kmlink bundle install FILE")
                } else {
                    rest.trim_start().replace('\n', "\n    ")
                }),
            ))
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_modules_is_blocked_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).expect("mkdir");
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.18.44-fc\n").expect("w");
        std::fs::write(root.join("proc/sys/kernel/version"), "#1 SMP\n").expect("w");
        let (id, lines) = host_lines(root, false);
        assert_eq!(id.expect("identity").release, "6.18.44-fc");
        let modules = lines
            .iter()
            .find(|l| l.subject == "modules")
            .expect("modules");
        assert_eq!(modules.mark, Mark::Blocks, "{modules}");
        assert!(modules
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("CONFIG_MODULES"));
        let rootl = lines.iter().find(|l| l.subject == "root").expect("root");
        assert_eq!(rootl.mark, Mark::Blocks);
        assert!(rootl.to_string().contains("sudo kmlink load"));
    }

    #[test]
    fn a_loaded_kprobe_backend_is_named_with_its_effect_on_other_tracers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).expect("mkdir");
        std::fs::create_dir_all(root.join("proc/kmlink")).expect("mkdir");
        std::fs::write(
            root.join("proc/sys/kernel/osrelease"),
            "6.12.107+deb13-amd64\n",
        )
        .expect("w");
        std::fs::write(root.join("proc/sys/kernel/version"), "#1 SMP\n").expect("w");
        std::fs::write(
            root.join("proc/modules"),
            "kmlink 65536 0 - Live 0x0 (OE)\n",
        )
        .expect("w");
        let stats = |backend: &str| format!("# monitor:\nbackend {backend}\nkprobes 14\n");
        std::fs::write(root.join("proc/kmlink/stats"), stats("kprobe")).expect("w");
        let (_, lines) = host_lines(root, true);
        let l = lines
            .iter()
            .find(|l| l.subject == "kprobe backend")
            .expect("kprobe backend line");
        assert!(l.to_string().contains("arch_rethook_trampoline"), "{l}");
        std::fs::write(root.join("proc/kmlink/stats"), stats("tracepoint")).expect("w");
        let (_, lines) = host_lines(root, true);
        assert!(lines.iter().all(|l| l.subject != "kprobe backend"));
    }

    #[test]
    fn a_debian_like_host_passes_the_host_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["proc/sys/kernel", "boot", "sys/kernel/security"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-47-amd64\n").expect("w");
        std::fs::write(root.join("proc/sys/kernel/version"), "#1 SMP\n").expect("w");
        std::fs::write(root.join("proc/sys/kernel/modules_disabled"), "0\n").expect("w");
        std::fs::write(root.join("proc/modules"), "").expect("w");
        std::fs::write(
            root.join("sys/kernel/security/lockdown"),
            "[none] integrity confidentiality\n",
        )
        .expect("w");
        std::fs::write(
            root.join("boot/config-6.1.0-47-amd64"),
            "CONFIG_MODULES=y\nCONFIG_TRACEPOINTS=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_KPROBES=y\n# CONFIG_MODULE_SIG_FORCE is not set\n",
        )
        .expect("w");
        let (_, lines) = host_lines(root, true);
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert!(
            lines.iter().all(|l| l.mark != Mark::Blocks),
            "{}",
            text.join("\n")
        );
        // Lockdown on, no key: blocked, with the next step.
        std::fs::write(
            root.join("sys/kernel/security/lockdown"),
            "none [integrity] confidentiality\n",
        )
        .expect("w");
        let signatures = |root: &Path| {
            host_lines(root, true)
                .1
                .into_iter()
                .find(|l| l.subject == "signatures")
                .expect("signatures line")
        };
        let l = signatures(root);
        assert_eq!(l.mark, Mark::Blocks, "{l}");
        assert!(l.found.contains("lockdown=integrity"), "{l}");
        assert!(
            l.fix
                .as_deref()
                .unwrap_or("")
                .contains("kmlink key generate"),
            "{l}"
        );
        // DKMS's MOK, not held by the kernel: blocked, enrol it.
        let g = kmlink_modsign::generate::generate(
            kmlink_modsign::generate::KeyKind::P256,
            "DKMS module signing key",
            30,
            std::time::SystemTime::now(),
        )
        .expect("key");
        std::fs::create_dir_all(root.join("var/lib/dkms")).expect("mkdir");
        std::fs::write(root.join("var/lib/dkms/mok.key"), &g.key_pem).expect("w");
        std::fs::write(root.join("var/lib/dkms/mok.pub"), &g.cert_der).expect("w");
        let desc = kmlink_modsign::key::kernel_key_description(&g.cert);
        std::fs::write(
            root.join("proc/keys"),
            "0b5e7f3a I------     1 perm 1f0b0000     0     0 asymmetric Debian Secure Boot CA: 6ccece7e: X509.rsa 6ccece7e []\n",
        )
        .expect("w");
        let l = signatures(root);
        assert_eq!(l.mark, Mark::Blocks, "{l}");
        assert!(
            l.found.contains("DKMS")
                && l.fix.as_deref().unwrap_or("").contains("kmlink key enroll"),
            "{l}"
        );
        // Enrolled: fine.
        std::fs::write(
            root.join("proc/keys"),
            format!("2c3d4e5f I------     1 perm 1f0b0000     0     0 asymmetric {desc}: X509.ecdsa 00112233 []\n"),
        )
        .expect("w");
        let l = signatures(root);
        assert_eq!(l.mark, Mark::Ok, "{l}");
        assert!(l.found.contains("which the kernel trusts"), "{l}");
    }

    #[test]
    fn missing_tracepoints_block_only_without_kprobes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["proc/sys/kernel", "boot"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-47-amd64\n").expect("w");
        std::fs::write(root.join("proc/sys/kernel/version"), "#1 SMP\n").expect("w");
        let tracepoints = |config: &str| {
            std::fs::write(root.join("boot/config-6.1.0-47-amd64"), config).expect("w");
            let (_, lines) = host_lines(root, true);
            lines
                .into_iter()
                .find(|l| l.subject == "tracepoints")
                .expect("a tracepoints line")
        };
        let l =
            tracepoints("CONFIG_MODULES=y\n# CONFIG_TRACEPOINTS is not set\nCONFIG_KPROBES=y\n");
        assert_ne!(
            l.mark,
            Mark::Blocks,
            "the kprobe backend needs no tracepoints: {l}"
        );
        assert!(
            l.fix.as_deref().unwrap_or("").contains("--backend kprobe"),
            "{l}"
        );
        let l = tracepoints("CONFIG_MODULES=y\n# CONFIG_TRACEPOINTS is not set\n");
        assert_eq!(
            l.mark,
            Mark::Blocks,
            "neither backend can hook anything: {l}"
        );
    }
}
