//! What the running machine demands of a module before it loads it, and
//! whom it trusts: UEFI Secure Boot (efivarfs), the lockdown mode, module
//! signature enforcement, the keys in the kernel's keyrings. One reader for
//! `kmlink load`, `kmlink doctor` and `kmlink key status`.

use std::path::Path;

/// The EFI global variable GUID (`SecureBoot-<guid>` in efivarfs).
const EFI_GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// What the system says about module loading.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadPolicy {
    /// `/proc/sys/kernel/modules_disabled` is 1.
    pub modules_disabled: bool,
    /// The active lockdown mode (`none`, `integrity`, `confidentiality`).
    pub lockdown: Option<String>,
    /// `/sys/module/module/parameters/sig_enforce` is Y.
    pub sig_enforce: bool,
    /// UEFI Secure Boot is on (`None`: no EFI variables to tell).
    pub secure_boot: Option<bool>,
}

impl LoadPolicy {
    /// Reads it under `root` (`/` normally).
    pub fn read(root: &Path) -> Self {
        let text = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        let lockdown = text("sys/kernel/security/lockdown").and_then(|t| {
            t.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        });
        LoadPolicy {
            modules_disabled: text("proc/sys/kernel/modules_disabled")
                .is_some_and(|t| t.trim() == "1"),
            lockdown,
            sig_enforce: text("sys/module/module/parameters/sig_enforce")
                .is_some_and(|t| t.trim() == "Y"),
            secure_boot: secure_boot(root),
        }
    }

    /// Whether unsigned (or wrongly signed) modules are refused: signature
    /// enforcement, or any lockdown (Debian and Ubuntu lock down under
    /// Secure Boot; lockdown refuses modules it cannot verify).
    pub fn signatures_required(&self) -> bool {
        self.sig_enforce || self.lockdown.as_deref().is_some_and(|l| l != "none")
    }

    /// Why signatures are required, in words ("lockdown=integrity, Secure
    /// Boot on"); empty when they are not.
    pub fn reason(&self) -> String {
        let mut r = Vec::new();
        if let Some(l) = self.lockdown.as_deref().filter(|l| *l != "none") {
            r.push(format!("lockdown={l}"));
        }
        if self.sig_enforce {
            r.push("module.sig_enforce=Y".to_string());
        }
        if self.secure_boot == Some(true) {
            r.push("Secure Boot on".to_string());
        }
        r.join(", ")
    }
}

/// UEFI Secure Boot state from efivarfs (4 attribute bytes, then the
/// value), if the variables are mounted and readable.
pub fn secure_boot(root: &Path) -> Option<bool> {
    let dir = root.join("sys/firmware/efi/efivars");
    let exact = dir.join(format!("SecureBoot-{EFI_GLOBAL}"));
    let data = std::fs::read(&exact).ok().or_else(|| {
        std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("SecureBoot-")
                .then(|| std::fs::read(e.path()).ok())
                .flatten()
        })
    })?;
    data.get(4).map(|b| *b == 1)
}

/// Whether the kernel holds a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `/proc/keys` lists an asymmetric key with this description.
    Trusted,
    /// `/proc/keys` is readable and lists no such key.
    NotTrusted,
    /// The kernel's keys cannot be listed here (and why).
    Unknown(String),
}

/// The descriptions of the asymmetric keys the kernel holds (`/proc/keys`,
/// which root sees for the system keyrings: `.builtin_trusted_keys`,
/// `.secondary_trusted_keys`, `.machine` (enrolled MOKs), `.platform`).
pub fn kernel_keys(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join("proc/keys");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            // id flags usage timeout perm uid gid type, then the
            // description ("<name>: X509.rsa 1234abcd []" for X.509 keys).
            let mut rest = l;
            let mut ty = "";
            for _ in 0..8 {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                ty = &rest[..end];
                rest = &rest[end..];
            }
            let rest = rest.trim_start();
            (ty == "asymmetric" && !rest.is_empty()).then(|| match rest.rfind(": X509.") {
                Some(at) => rest[..at].to_string(),
                None => rest.to_string(),
            })
        })
        .collect())
}

/// shim's vendor GUID: `MokListRT-<guid>` in efivarfs.
const SHIM_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// The Machine Owner Keys shim passed to the kernel at boot, as raw
/// variable contents (EFI signature lists holding DER certificates): the
/// MOKvar table (`/sys/firmware/efi/mok-variables/MokListRT`, newer shims)
/// or the runtime variable (`MokListRT-<guid>` in efivarfs). `None` when
/// neither is readable.
fn mok_list(root: &Path) -> Option<Vec<u8>> {
    let mut found = None;
    for p in [
        root.join("sys/firmware/efi/mok-variables/MokListRT"),
        root.join(format!("sys/firmware/efi/efivars/MokListRT-{SHIM_GUID}")),
    ] {
        if let Ok(data) = std::fs::read(&p) {
            found.get_or_insert_with(Vec::new).extend_from_slice(&data);
        }
    }
    found
}

/// The descriptions in the kernel log's `Loaded X.509 cert '…'` lines
/// (what is still in the ring buffer), `None` if the log is unreadable.
fn logged_certs(root: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: read what the ring buffer holds, then EAGAIN.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000)
        .open(root.join("dev/kmsg"))
        .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(at) = rec.find("Loaded X.509 cert '") {
                    let rest = &rec[at + "Loaded X.509 cert '".len()..];
                    if let Some(end) = rest.find('\'') {
                        out.push(rest[..end].to_string());
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(32) => continue, // EPIPE: overwritten
            Err(_) => break,                                    // EAGAIN: the end
        }
    }
    Some(out)
}

/// The descriptions of the keys the kernel is seen to hold: `/proc/keys`'s
/// asymmetric keys and the kernel log's `Loaded X.509 cert` lines, without
/// repeats (empty when neither is readable here).
pub fn known_keys(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = kernel_keys(root).unwrap_or_default();
    for d in logged_certs(root).unwrap_or_default() {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Whether the kernel holds the key of a certificate: its keyring
/// description (see `kmlink_modsign::key::kernel_key_description`) listed
/// in `/proc/keys`; its DER among the Machine Owner Keys shim handed the
/// kernel (which loads them into `.machine` under Secure Boot); or the
/// kernel's `Loaded X.509 cert '<description>'` line. Debian's kernels do
/// not show the system keyrings' keys in `/proc/keys` (measured in the
/// Secure Boot VM: no asymmetric key listed at all), hence the other two.
pub fn trust(root: &Path, description: &str, cert_der: &[u8]) -> Trust {
    let keys = kernel_keys(root).ok().filter(|k| !k.is_empty());
    if keys
        .as_ref()
        .is_some_and(|k| k.iter().any(|d| d == description))
    {
        return Trust::Trusted;
    }
    let moks = mok_list(root);
    if !cert_der.is_empty()
        && moks
            .as_ref()
            .is_some_and(|m| m.windows(cert_der.len()).any(|w| w == cert_der))
    {
        return Trust::Trusted;
    }
    let logged = logged_certs(root).filter(|l| !l.is_empty());
    if logged
        .as_ref()
        .is_some_and(|l| l.iter().any(|d| d == description))
    {
        return Trust::Trusted;
    }
    if keys.is_some() || (moks.is_some() && logged.is_some()) {
        return Trust::NotTrusted;
    }
    Trust::Unknown(
        "neither /proc/keys, nor the Machine Owner Key list, nor the kernel log shows the \
         kernel's keys here (run as root)"
            .into(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policy_reads_lockdown_and_switches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(!LoadPolicy::read(root).signatures_required());
        std::fs::create_dir_all(root.join("sys/kernel/security")).unwrap();
        std::fs::write(
            root.join("sys/kernel/security/lockdown"),
            "none [integrity] confidentiality\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::write(root.join("proc/sys/kernel/modules_disabled"), "1\n").unwrap();
        let p = LoadPolicy::read(root);
        assert_eq!(p.lockdown.as_deref(), Some("integrity"));
        assert!(p.modules_disabled && p.signatures_required());
        assert_eq!(p.reason(), "lockdown=integrity");
        std::fs::write(
            root.join("sys/kernel/security/lockdown"),
            "[none] integrity confidentiality\n",
        )
        .unwrap();
        assert!(!LoadPolicy::read(root).signatures_required());
    }

    #[test]
    fn secure_boot_from_efivarfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(secure_boot(root), None);
        let vars = root.join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&vars).unwrap();
        std::fs::write(
            vars.join(format!("SecureBoot-{EFI_GLOBAL}")),
            [6, 0, 0, 0, 1],
        )
        .unwrap();
        assert_eq!(secure_boot(root), Some(true));
        std::fs::write(
            vars.join(format!("SecureBoot-{EFI_GLOBAL}")),
            [6, 0, 0, 0, 0],
        )
        .unwrap();
        assert_eq!(secure_boot(root), Some(false));
    }

    #[test]
    fn keys_are_found_by_description() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(matches!(trust(root, "x", b"der"), Trust::Unknown(_)));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(
            root.join("proc/keys"),
            "\
0b5e7f3a I------     1 perm 1f0b0000     0     0 asymmetric Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1: X509.rsa 4c6c0d1f []
1a2b3c4d I------     1 perm 1f030000     0     0 keyring   .machine: 1
2c3d4e5f I------     1 perm 1f0b0000     0     0 asymmetric kmlink test MOK: 00112233: X509.rsa 00112233 []
",
        )
        .unwrap();
        assert_eq!(
            kernel_keys(root).unwrap(),
            [
                "Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1",
                "kmlink test MOK: 00112233"
            ]
        );
        assert_eq!(
            trust(root, "kmlink test MOK: 00112233", b""),
            Trust::Trusted
        );
        assert_eq!(trust(root, "kmlink test MOK: 0011", b""), Trust::NotTrusted);
    }

    #[test]
    fn keys_are_found_in_the_mok_list() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mok = root.join("sys/firmware/efi/mok-variables");
        std::fs::create_dir_all(&mok).unwrap();
        // An EFI signature list: header, then the certificate's DER.
        let mut list = vec![0xa1u8; 28];
        list.extend_from_slice(b"\x30\x82certificate-der");
        std::fs::write(mok.join("MokListRT"), &list).unwrap();
        assert_eq!(trust(root, "x", b"\x30\x82certificate-der"), Trust::Trusted);
        // The list is readable but the kernel log is not: not proof of absence.
        assert!(matches!(
            trust(root, "x", b"\x30\x82other"),
            Trust::Unknown(_)
        ));
    }
}
