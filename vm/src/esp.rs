//! The EFI system partition of a Secure Boot run: a FAT image built without
//! root (`mkfs.vfat -C` from dosfstools, `mmd`/`mcopy` from mtools) holding
//! shim as the removable-media loader, GRUB beside it, a `grub.cfg`, the
//! kernel image and the initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where the firmware looks for a removable-media loader (x86-64).
pub(crate) const LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
/// The second stage shim chain-loads, next to shim.
pub(crate) const GRUB: &str = "EFI/BOOT/grubx64.efi";
/// Kernel and initramfs on the ESP.
pub(crate) const KERNEL: &str = "vmlinuz";
pub(crate) const INITRD: &str = "initrd.gz";

/// A host tool the ESP needs, and the Debian package that provides it.
const TOOLS: &[(&str, &str)] = &[
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
];

/// Finds `name` in `$PATH` (and `/sbin`, `/usr/sbin`, where Debian puts
/// `mkfs.vfat` and which a non-root `$PATH` may lack).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The GRUB configuration: boot `KERNEL` with `cmdline` at once.
pub(crate) fn grub_cfg(cmdline: &str) -> String {
    // GRUB's console is the firmware's, i.e. the serial port; no menu, no
    // delay. The `linux` command asks shim to verify the image (shim lock).
    format!(
        "set timeout=0\nset default=0\nterminal_output console\n\
         menuentry 'kmlink' {{\n  linux /{KERNEL} {cmdline}\n  initrd /{INITRD}\n}}\n"
    )
}

/// Builds the ESP image at `out` from shim, GRUB, the kernel and the
/// initramfs, with a `grub.cfg` booting the kernel with `cmdline`.
pub(crate) fn build(
    out: &Path,
    shim: &Path,
    grub: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
) -> Result<(), Error> {
    let mut tools = Vec::new();
    for (name, package) in TOOLS {
        tools.push(find_tool(name).ok_or(Error::ToolMissing {
            tool: name,
            package,
        })?);
    }
    let [mkfs, mmd, mcopy] = [&tools[0], &tools[1], &tools[2]];
    for (what, p) in [("shim", shim), ("GRUB", grub)] {
        if !p.is_file() {
            return Err(Error::FirmwareMissing {
                what,
                path: p.to_path_buf(),
            });
        }
    }
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|source| Error::Io {
                context: format!("reading {}", p.display()),
                source,
            })
    };
    let payload = size(shim)? + size(grub)? + size(kernel)? + size(initrd)?;
    // FAT overhead and slack: a quarter more plus 8 MiB, in KiB blocks.
    let kib = (payload + payload / 4 + (8 << 20)) / 1024;
    let cfg = out.with_file_name("grub.cfg");
    std::fs::write(&cfg, grub_cfg(cmdline)).map_err(|source| Error::Io {
        context: format!("writing {}", cfg.display()),
        source,
    })?;
    let _ = std::fs::remove_file(out);
    let img = out.display().to_string();
    run(Command::new(mkfs).args(["-C", &img, &kib.to_string()]))?;
    run(Command::new(mmd).args(["-i", &img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"]))?;
    // The signed GRUB reads $prefix/grub.cfg with prefix /EFI/debian, and
    // falls back to the directory it was loaded from: both get a copy.
    for (src, dst) in [
        (shim, format!("::/{LOADER}")),
        (grub, format!("::/{GRUB}")),
        (cfg.as_path(), "::/EFI/debian/grub.cfg".to_string()),
        (cfg.as_path(), "::/EFI/BOOT/grub.cfg".to_string()),
        (kernel, format!("::/{KERNEL}")),
        (initrd, format!("::/{INITRD}")),
    ] {
        run(Command::new(mcopy).args(["-i", &img]).arg(src).arg(&dst))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), Error> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| Error::Io {
            context: format!("running {shown}"),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::EspFailed {
        command: shown,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_kernel_with_the_command_line() {
        let cfg = grub_cfg("console=ttyS0 lockdown=confidentiality");
        assert!(cfg.contains("linux /vmlinuz console=ttyS0 lockdown=confidentiality\n"));
        assert!(cfg.contains("initrd /initrd.gz\n"));
        assert!(cfg.contains("set timeout=0"));
    }

    #[test]
    fn builds_an_esp_image() {
        if TOOLS.iter().any(|(t, _)| find_tool(t).is_none()) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "mtools/dosfstools missing in CI"
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let f = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            p
        };
        let (shim, grub, kernel, initrd) = (
            f("shim", b"MZshim"),
            f("grub", b"MZgrub"),
            f("k", b"MZkernel"),
            f("i", b"initrd"),
        );
        let img = dir.path().join("esp.img");
        build(&img, &shim, &grub, &kernel, &initrd, "quiet").expect("esp");
        let out = Command::new(find_tool("mcopy").expect("mcopy"))
            .env("MTOOLS_SKIP_CHECK", "1")
            .args([
                "-i",
                img.to_str().expect("utf8"),
                "::/EFI/debian/grub.cfg",
                "-",
            ])
            .output()
            .expect("mcopy");
        assert!(String::from_utf8_lossy(&out.stdout).contains("linux /vmlinuz quiet"));
        let out = Command::new(find_tool("mcopy").expect("mcopy"))
            .env("MTOOLS_SKIP_CHECK", "1")
            .args([
                "-i",
                img.to_str().expect("utf8"),
                "::/EFI/BOOT/BOOTX64.EFI",
                "-",
            ])
            .output()
            .expect("mcopy");
        assert_eq!(out.stdout, b"MZshim");
    }
}
