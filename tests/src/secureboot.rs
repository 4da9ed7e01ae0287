//! What a Secure Boot VM run needs, from Debian packages only, cached under
//! `<cache>/secureboot/` (`$KMLINK_CACHE`, default `~/.cache/kmlink`):
//!
//! - firmware and boot loaders: `ovmf`, `shim-signed`,
//!   `grub-efi-amd64-signed` (`apt-get download`, unpacked with kmlink's own
//!   .deb reader; nothing is installed on the host);
//! - Debian's **signed** kernel images, pinned with their SHA-256 in
//!   `tests/kernels-secureboot.toml` (`cargo run -p kmlink-crawler --example
//!   pin -- --secureboot`), verified like the other pinned packages;
//! - the reference signer `sign-file` from `linux-kbuild-6.1` (a
//!   cross-check of kmlink's own signer);
//! - a variable store with a test certificate enrolled as a Machine Owner
//!   Key (`virt-fw-vars` from the `virt-firmware` PyPI package), so shim
//!   trusts it without an interactive MokManager.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kmlink_crawler::{cache::Cache, deb, kernel_tree, sources, Http};
use kmlink_vm::SecureBoot;

use crate::workspace;

/// shim's vendor GUID under which `MokList` lives.
pub const SHIM_LOCK_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// The packages the firmware and loaders come from, and the files taken.
const FIRMWARE: &[(&str, &[&str])] = &[
    (
        "ovmf",
        &[
            "usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "usr/share/OVMF/OVMF_VARS_4M.ms.fd",
        ],
    ),
    ("shim-signed", &["usr/lib/shim/shimx64.efi.signed"]),
    (
        "grub-efi-amd64-signed",
        &["usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"],
    ),
];

/// The kmlink cache root (`$KMLINK_CACHE`, default `~/.cache/kmlink`).
pub fn cache_root() -> PathBuf {
    std::env::var_os("KMLINK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(Cache::default_root)
}

fn sb_root() -> PathBuf {
    cache_root().join("secureboot")
}

/// Fails with `what to install` unless `program` runs.
fn need(program: &str, install: &str) -> Result<()> {
    match Command::new(program).arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => bail!("{program} cannot run ({e}); install it with: {install}"),
    }
}

/// Runs `cmd`, failing with its stderr unless it succeeds.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-get download`s `packages` into `dir` and unpacks `paths` of each
/// into `dir/root`; returns the .deb file names (they carry the versions).
fn download_and_unpack(dir: &Path, packages: &[(&str, &[&str])]) -> Result<Vec<String>> {
    need("apt-get", "a Debian or Ubuntu host (apt)")?;
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
    run(Command::new("apt-get")
        .arg("download")
        .args(&names)
        .current_dir(&debs))
    .context("fetching Debian packages (is `apt-get update` done?)")?;
    let mut files = Vec::new();
    for (pkg, paths) in packages {
        let deb = std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download {pkg} wrote no .deb"))?;
        let got = deb::extract_paths(&deb, &dir.join("root"), paths)
            .with_context(|| format!("unpacking {}", deb.display()))?;
        if got.len() != paths.len() {
            bail!("{} lacks some of {paths:?}", deb.display());
        }
        files.push(
            deb.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    Ok(files)
}

/// A directory under `<cache>/secureboot/` filled once by `fill` (into a
/// temporary sibling renamed into place, so a crash leaves nothing half
/// done, and two tests filling it at once both end with the same result).
fn cached_dir(name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let root = sb_root();
    let dir = root.join(name);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(&root)?;
    fill(tmp.path())?;
    std::fs::write(tmp.path().join(".complete"), b"")?;
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &dir).is_err() {
        // Someone else finished first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").is_file() {
            bail!("could not move {} into place", dir.display());
        }
    }
    Ok(dir)
}

/// Debian's Secure Boot firmware and loaders; `ovmf_vars` is Microsoft's
/// keys only (no MOK): use [`with_mok`] for a store that trusts a test key.
pub fn firmware() -> Result<SecureBoot> {
    let dir = cached_dir("firmware", |d| {
        let files = download_and_unpack(d, FIRMWARE)?;
        std::fs::write(d.join("packages"), files.join("\n") + "\n")?;
        std::fs::remove_dir_all(d.join("debs"))?;
        Ok(())
    })?;
    let r = dir.join("root");
    Ok(SecureBoot {
        ovmf_code: r.join("usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
        ovmf_vars: r.join("usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
        shim: r.join("usr/lib/shim/shimx64.efi.signed"),
        grub: r.join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    })
}

/// The firmware packages' .deb names (versions), one per line.
pub fn firmware_packages() -> Result<String> {
    Ok(std::fs::read_to_string(
        sb_root().join("firmware/packages"),
    )?)
}

/// `sb` with a variable store that also holds `cert` (PEM or DER) in
/// shim's `MokList`, written into `dir`.
pub fn with_mok(sb: &SecureBoot, cert: &Path, dir: &Path) -> Result<SecureBoot> {
    need("virt-fw-vars", "pip install virt-firmware")?;
    let out = dir.join("OVMF_VARS_4M.mok.fd");
    run(Command::new("virt-fw-vars")
        .arg("--input")
        .arg(&sb.ovmf_vars)
        .arg("--output")
        .arg(&out)
        .arg("--secure-boot")
        .arg("--add-mok")
        .arg(SHIM_LOCK_GUID)
        .arg(cert))?;
    Ok(SecureBoot {
        ovmf_vars: out,
        ..sb.clone()
    })
}

/// Debian's `sign-file` (from `linux-kbuild-6.1`), the kernel's reference
/// module signer.
pub fn sign_file() -> Result<PathBuf> {
    const PATH: &str = "usr/lib/linux-kbuild-6.1/scripts/sign-file";
    let dir = cached_dir("kbuild-6.1", |d| {
        download_and_unpack(d, &[("linux-kbuild-6.1", &[PATH])])?;
        std::fs::remove_dir_all(d.join("debs"))?;
        Ok(())
    })?;
    Ok(dir.join("root").join(PATH))
}

/// Signs `module` into `out` with `sign-file sha256 KEY CERT`.
pub fn sign_with_sign_file(key: &Path, cert: &Path, module: &Path, out: &Path) -> Result<()> {
    run(Command::new(sign_file()?)
        .arg("sha256")
        .arg(key)
        .arg(cert)
        .arg(module)
        .arg(out))?;
    Ok(())
}

/// The signed kernel images pinned in `tests/kernels-secureboot.toml`
/// (`$KMLINK_SECUREBOOT_PINS` names another file of the same format, e.g.
/// every signed image in the archive: scripts/matrix-secureboot).
pub fn pinned_signed() -> Result<Vec<kernel_tree::PinnedKernel>> {
    let path = std::env::var_os("KMLINK_SECUREBOOT_PINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("tests/kernels-secureboot.toml"));
    kernel_tree::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// Fetches (SHA-256 verified against the pin, cached) Debian's signed image
/// of `release` and returns its vmlinuz, which must carry an Authenticode
/// signature.
pub fn signed_vmlinuz(release: &str) -> Result<PathBuf> {
    let pins = pinned_signed()?;
    let Some(pin) = pins.iter().find(|p| p.release == release) else {
        bail!("{release} has no signed image pinned in tests/kernels-secureboot.toml");
    };
    let Some(entry) = pin.packages.first() else {
        bail!("{release}: no package pinned");
    };
    let cache = Cache::new(sb_root());
    let deb = match cache.cached(entry)? {
        Some(p) => p,
        None => {
            let srcs = sources::host_sources(Path::new("/")).context("reading apt sources")?;
            let mirrors = sources::debian_mirrors(&srcs);
            let bases = mirrors.for_kind(&pin.archive).unwrap_or(&[]);
            cache.fetch(&Http::new()?, bases, entry)?
        }
    };
    let short = entry.sha256.get(..12).unwrap_or(&entry.sha256);
    let dir = sb_root().join("kernels").join(format!("{release}-{short}"));
    let candidates = [
        format!("boot/vmlinuz-{release}"),
        format!("usr/lib/modules/{release}/vmlinuz"),
    ];
    if let Some(p) = candidates.iter().map(|c| dir.join(c)).find(|p| p.is_file()) {
        return Ok(p);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".vmlinuz-")
        .tempdir_in(sb_root())?;
    let wanted: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let got = deb::extract_paths(&deb, tmp.path(), &wanted)?;
    let Some(first) = got.first() else {
        bail!("{}: no vmlinuz in {}", release, deb.display());
    };
    let bytes = std::fs::read(first)?;
    if !has_authenticode_signature(&bytes) {
        bail!(
            "{release}: the vmlinuz of {} carries no Authenticode signature",
            entry.package
        );
    }
    let tmp = tmp.keep();
    std::fs::create_dir_all(dir.parent().unwrap_or(&dir))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    candidates
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
        .with_context(|| format!("{release}: vmlinuz not in {}", dir.display()))
}

/// Whether a PE image (a bzImage is one) has a non-empty certificate table
/// (data directory 4, where Authenticode signatures live).
pub fn has_authenticode_signature(pe: &[u8]) -> bool {
    let u16_at = |o: usize| pe.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        pe.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(pe_off) = u32_at(0x3c).map(|v| v as usize) else {
        return false;
    };
    if pe.get(pe_off..pe_off + 4) != Some(b"PE\0\0") {
        return false;
    }
    let opt = pe_off + 24;
    // PE32+ (0x20b): data directories start 112 bytes into the optional header.
    let dirs = match u16_at(opt) {
        Some(0x20b) => opt + 112,
        Some(0x10b) => opt + 96,
        _ => return false,
    };
    u32_at(dirs + 4 * 8 + 4).is_some_and(|size| size > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticode_check_reads_the_certificate_table() {
        let mut pe = vec![0u8; 512];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let opt = 0x80 + 24;
        pe[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        assert!(!has_authenticode_signature(&pe));
        let size_at = opt + 112 + 4 * 8 + 4;
        pe[size_at..size_at + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(has_authenticode_signature(&pe));
        assert!(!has_authenticode_signature(b"MZ"));
        assert!(!has_authenticode_signature(&[]));
    }
}
