//! Loading the monitor on this host: whether it is loaded, inserting it
//! with `finit_module`, the kernel log read around the load, and a refusal
//! explained in words (what the errno means here, given the machine's
//! [`LoadPolicy`], with the kernel's own log lines).

use std::path::Path;

use kmlink_errors::IoError;
use rustix::io::Errno;

use crate::security::LoadPolicy;
use crate::MODULE_NAME as NAME;

/// Why [`insert`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be opened.
    #[error(transparent)]
    Open(#[from] IoError),
    /// The kernel refused it: the explanation, with its log lines.
    #[error("{0}")]
    Refused(String),
}

/// Where `kmlink load` and the service note which module file they
/// inserted (for `kmlink status`); gone at reboot.
pub const LOADED_NOTE: &str = "/run/kmlink/loaded";

/// Inserts a module file with `finit_module`; a refusal is explained in
/// words with the kernel's own log lines ([`explain_load_error`]). Notes
/// the file in [`LOADED_NOTE`].
pub fn insert(path: &Path) -> Result<(), LoadError> {
    let file = std::fs::File::open(path).map_err(IoError::at("opening", path))?;
    let kmsg = Kmsg::open();
    // No module parameters: the monitor declares none (its settings are
    // link-time options, --set NAME=VALUE).
    match rustix::system::finit_module(&file, c"", 0) {
        Ok(()) => {
            let note = Path::new(LOADED_NOTE);
            let _ = std::fs::create_dir_all(note.parent().unwrap_or(Path::new("/run")));
            let _ = std::fs::write(note, format!("{}\n", path.display()));
            Ok(())
        }
        Err(errno) => {
            let lines = relevant(kmsg.new_lines());
            let policy = LoadPolicy::read(Path::new("/"));
            Err(LoadError::Refused(explain_load_error(
                errno, &policy, &lines,
            )))
        }
    }
}

/// Whether the monitor is loaded (`/proc/modules`).
pub fn is_loaded(root: &Path) -> bool {
    kmlink_fsio::read_bounded(&root.join("proc/modules"), 16 << 20, "/proc/modules")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map(|t| t.lines().any(|l| l.split_whitespace().next() == Some(NAME)))
        .unwrap_or(false)
}

/// The kernel log from now on: new `/dev/kmsg` records after [`Kmsg::open`].
pub struct Kmsg(Option<std::os::fd::OwnedFd>);

impl Kmsg {
    /// Opens `/dev/kmsg` at its end (nothing to read if it cannot be opened).
    pub fn open() -> Self {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            "/dev/kmsg",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        if let Some(fd) = &fd {
            let _ = rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0));
        }
        Kmsg(fd)
    }

    /// Messages logged since `open` (the text after `;` of each record).
    pub fn new_lines(&self) -> Vec<String> {
        let Some(fd) = &self.0 else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let first = rec.lines().next().unwrap_or_default();
                    if let Some((_, msg)) = first.split_once(';') {
                        out.push(msg.to_string());
                    }
                }
                Err(Errno::PIPE) => continue, // records were overwritten: skip
                Err(_) => break,              // EAGAIN: nothing more
            }
        }
        out
    }
}

/// Explains a failed finit_module in words: what the errno means here,
/// with the kernel's log lines about it.
pub fn explain_load_error(errno: Errno, policy: &LoadPolicy, dmesg: &[String]) -> String {
    let joined = dmesg.join("\n");
    let has = |s: &str| joined.contains(s);
    let mut why = match errno {
        Errno::PERM if policy.modules_disabled => {
            "module loading is switched off until reboot (/proc/sys/kernel/modules_disabled = 1): \
             nothing can be loaded on this boot; reboot, and keep whatever sets kernel.modules_disabled from running"
                .to_string()
        }
        Errno::PERM | Errno::KEYREJECTED | Errno::NOKEY if policy.signatures_required() => format!(
            "the kernel accepts only signed modules ({}), and refused this one's signature \
             (unsigned, or signed by a key it does not hold). Make and enrol a key: \
             kmlink key generate, kmlink key enroll, reboot and confirm it in MokManager; \
             then kmlink load signs with it (kmlink key status tells whether the kernel trusts it)",
            policy.reason()
        ),
        Errno::KEYREJECTED | Errno::NOKEY => {
            "the module's signature was rejected or no key is known: the kernel requires signed modules"
                .to_string()
        }
        Errno::PERM => "permission denied: the caller lacks CAP_SYS_MODULE (run as root, outside \
                        a container that drops it), or an LSM forbids module loading"
            .to_string(),
        Errno::NOEXEC => {
            if has("version magic") {
                "the kernel refused the module's vermagic (it was built for another kernel build)"
                    .to_string()
            } else if has("section size must match") {
                "the kernel refused the module's struct module size: the record's layout is not this kernel's"
                    .to_string()
            } else {
                "the kernel refused the module's format (vermagic, struct module, relocations or \
                 ELF layout); its log lines below say which"
                    .to_string()
            }
        }
        Errno::NOENT => "the module uses a symbol this kernel does not export (\"Unknown symbol\"): \
                         the record's export list is not this kernel's"
            .to_string(),
        Errno::INVAL if has("disagrees about version") || has("no symbol version") => {
            "symbol versions (CRCs) disagree with this kernel's: the record's CRCs are from another build"
                .to_string()
        }
        Errno::INVAL => "the kernel found the module invalid (see its log lines below)".to_string(),
        Errno::EXIST => format!(
            "a module named {NAME} is already loaded: remove it first with `kmlink unload`"
        ),
        Errno::BUSY => "the kernel is busy loading a module of that name; retry".to_string(),
        Errno::NOSYS => "this kernel has no loadable-module support (CONFIG_MODULES is off): \
                         nothing can be inserted; the monitor needs a kernel built with modules"
            .to_string(),
        Errno::NOMEM => "the kernel ran out of memory loading the module".to_string(),
        Errno::FAULT | Errno::BADF => "the module file could not be read by the kernel".to_string(),
        other => format!("the kernel refused it ({other})"),
    };
    why = format!(
        "finit_module failed: {} ({}): {why}",
        errno,
        errno_name(errno)
    );
    if !dmesg.is_empty() {
        why.push_str("\nkernel log:");
        for l in dmesg {
            why.push_str("\n  ");
            why.push_str(l);
        }
    }
    why
}

/// The C name of an errno (`EPERM`, ...; `errno` for others).
pub fn errno_name(e: Errno) -> &'static str {
    match e {
        Errno::PERM => "EPERM",
        Errno::NOENT => "ENOENT",
        Errno::NOEXEC => "ENOEXEC",
        Errno::INVAL => "EINVAL",
        Errno::EXIST => "EEXIST",
        Errno::BUSY => "EBUSY",
        Errno::NOSYS => "ENOSYS",
        Errno::NOMEM => "ENOMEM",
        Errno::KEYREJECTED => "EKEYREJECTED",
        Errno::NOKEY => "ENOKEY",
        Errno::AGAIN => "EAGAIN",
        Errno::FAULT => "EFAULT",
        Errno::BADF => "EBADF",
        _ => "errno",
    }
}

/// The kernel log lines that are about a module load.
pub fn relevant(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| {
            l.contains(NAME)
                || l.contains("module")
                || l.contains("Lockdown")
                || l.contains("symbol")
                || l.contains("version magic")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_cause_and_the_next_step() {
        let none = LoadPolicy::default();
        let locked = LoadPolicy {
            lockdown: Some("integrity".into()),
            secure_boot: Some(true),
            ..Default::default()
        };
        let e = explain_load_error(Errno::PERM, &locked, &[]);
        assert!(
            e.contains("EPERM") && e.contains("signed") && e.contains("lockdown=integrity"),
            "{e}"
        );
        assert!(e.contains("Secure Boot"), "{e}");
        let e = explain_load_error(
            Errno::KEYREJECTED,
            &LoadPolicy {
                sig_enforce: true,
                ..Default::default()
            },
            &[],
        );
        assert!(
            e.contains("EKEYREJECTED") && e.contains("sig_enforce"),
            "{e}"
        );
        let e = explain_load_error(Errno::PERM, &none, &[]);
        assert!(e.contains("CAP_SYS_MODULE"), "{e}");
        let disabled = LoadPolicy {
            modules_disabled: true,
            ..Default::default()
        };
        assert!(explain_load_error(Errno::PERM, &disabled, &[]).contains("modules_disabled"));
        let e = explain_load_error(
            Errno::NOEXEC,
            &none,
            &["kmlink: version magic '6.1.0-47-amd64 SMP mod_unload ' should be '6.1.0-47-amd64 SMP preempt mod_unload '".into()],
        );
        assert!(
            e.contains("ENOEXEC")
                && e.contains("vermagic")
                && e.contains("kernel log:\n  kmlink: version magic"),
            "{e}"
        );
        let e = explain_load_error(
            Errno::NOEXEC,
            &none,
            &[".gnu.linkonce.this_module section size must match the kernel's built struct module size at run time".into()],
        );
        assert!(e.contains("struct module size"), "{e}");
        assert!(explain_load_error(Errno::NOENT, &none, &[]).contains("Unknown symbol"));
        let e = explain_load_error(
            Errno::INVAL,
            &none,
            &["kmlink: disagrees about version of symbol _printk".into()],
        );
        assert!(e.contains("CRCs"), "{e}");
        assert!(explain_load_error(Errno::EXIST, &none, &[]).contains("kmlink unload"));
        assert!(explain_load_error(Errno::NOSYS, &none, &[]).contains("CONFIG_MODULES"));
    }
}
