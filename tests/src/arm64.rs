//! arm64 guests: Debian's static busybox for arm64, fetched from the
//! archive the host's apt sources name (bookworm `main/binary-arm64`, the
//! suite's signed `InRelease` verified, the package checked against the
//! index's size and SHA256, cached under the kmlink cache), an initramfs
//! around it, and a boot in qemu-system-aarch64 (virt, TCG).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{Distro, Origin};
use kmlink_crawler::index::{self, IndexAt};
use kmlink_crawler::release::Keyring;
use kmlink_crawler::{deb, Http};

/// The suite whose arm64 busybox the guests run.
const SUITE: &str = "bookworm";

fn cache() -> Cache {
    Cache::new(
        std::env::var_os("KMLINK_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(Cache::default_root),
    )
}

/// Whether `path` is a statically linked aarch64 ELF executable.
pub fn is_static_aarch64(path: &Path) -> Result<bool> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Ok(elf) = ElfFile64::<object::Endianness>::parse(bytes.as_slice()) else {
        return Ok(false);
    };
    let e = elf.endian();
    let hdr = elf.elf_header();
    let interp = hdr
        .program_headers(e, bytes.as_slice())?
        .iter()
        .any(|p| p.p_type(e) == object::elf::PT_INTERP);
    Ok(hdr.e_machine(e) == object::elf::EM_AARCH64 && !interp)
}

/// Debian's `busybox-static` for arm64 (`bin/busybox`), downloaded once and
/// cached under `<cache>/tools/busybox-arm64/<package sha256>/`.
pub fn busybox() -> Result<PathBuf> {
    let cache = cache();
    let origin =
        Origin::from_host(Distro::Debian, Path::new("/")).context("reading apt sources")?;
    let bases = origin.bases_for(SUITE);
    if bases.is_empty() {
        bail!("no Debian archive mirror in the host's apt sources");
    }
    let http = Http::new()?;
    let mut last = None;
    for base in &bases {
        let r = (|| -> Result<PathBuf> {
            let keyring = Keyring::load(origin.keyring_for(base))?;
            let release =
                kmlink_crawler::release::fetch_release(&http, base, SUITE, &keyring, false)?;
            let at = IndexAt {
                suite: SUITE,
                component: "main",
                arch: "arm64",
            };
            let entries = index::fetch_verified_packages(
                &http,
                Some(&cache),
                base,
                &at,
                &release,
                &|name| name == "busybox-static",
            )?;
            let Some(entry) = entries
                .iter()
                .max_by(|a, b| kmlink_crawler::version::compare(&a.version, &b.version))
            else {
                bail!("no busybox-static in {SUITE} main/binary-arm64");
            };
            let dir = cache.root.join("tools/busybox-arm64").join(&entry.sha256);
            let bin = dir.join("bin/busybox");
            if bin.is_file() && is_static_aarch64(&bin)? {
                return Ok(bin);
            }
            // Checked against the index's size and SHA256 (the index
            // against the signed InRelease).
            let debfile = cache.fetch(&http, std::slice::from_ref(base), entry)?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            deb::extract_paths(&debfile, &dir, &["bin/busybox"])?;
            if !bin.is_file() || !is_static_aarch64(&bin)? {
                bail!(
                    "{}: bin/busybox is missing or not a static aarch64 executable",
                    entry.label()
                );
            }
            Ok(bin)
        })();
        match r {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(e.context(format!("busybox-static:arm64 from {base}"))),
        }
    }
    Err(last.expect("a base was tried"))
}

/// One `newc` cpio member.
fn cpio_member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let namesize = name.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        u32::try_from(data.len()).expect("initramfs member under 4 GiB"),
        0,
        0,
        0,
        0,
        u32::try_from(namesize).expect("short name"),
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// An uncompressed `newc` initramfs: the directories `/bin /proc /sys /dev
/// /tmp`, `/bin/busybox`, an `/init` that installs busybox's applets, mounts
/// proc, sysfs, devtmpfs, tracefs and runs `script`, then powers off; and
/// `files` (guest path, contents), mode 0644.
pub fn initramfs(busybox: &Path, script: &str, files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>> {
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmp /tmp\n\
         mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n\
         echo \"@@UNAME $(uname -r) $(uname -m)\"\n\
         (\n{script}\n)\n\
         echo \"@@EXIT $?\"\n\
         poweroff -f\n"
    );
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let mut out = Vec::new();
    let mut ino = 1;
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        cpio_member(&mut out, ino, d, 0o040755, &[]);
        ino += 1;
    }
    cpio_member(&mut out, ino, "bin/busybox", 0o100755, &bb);
    ino += 1;
    cpio_member(&mut out, ino, "init", 0o100755, init.as_bytes());
    ino += 1;
    for (path, data) in files {
        cpio_member(&mut out, ino, path.trim_start_matches('/'), 0o100644, data);
        ino += 1;
    }
    cpio_member(&mut out, 0, "TRAILER!!!", 0, &[]);
    Ok(out)
}

/// What a boot printed on the serial console (carriage returns removed)
/// and how long it took.
pub struct Boot {
    /// The console output.
    pub console: String,
    /// Wall-clock time in QEMU.
    pub duration: Duration,
}

/// Boots `kernel` with `initramfs` in qemu-system-aarch64 (virt, `-cpu
/// max,pauth-impdef=on`, TCG, 2 CPUs, 2 GiB), killed after `timeout`.
pub fn boot(kernel: &Path, initramfs: &[u8], timeout: Duration) -> Result<Boot> {
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, initramfs)?;
    let log = dir.path().join("console.log");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-aarch64")
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-monitor", "none", "-no-reboot", "-machine", "virt"])
        .args(["-cpu", "max,pauth-impdef=on", "-accel", "tcg"])
        .args(["-m", "2048", "-smp", "2", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("running qemu-system-aarch64 (scripts/setup installs qemu-system-arm)")?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "qemu-system-aarch64 timed out after {timeout:?}; console:\n{}",
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = String::from_utf8_lossy(&std::fs::read(&log)?).replace('\r', "");
    Ok(Boot {
        console,
        duration: start.elapsed(),
    })
}
