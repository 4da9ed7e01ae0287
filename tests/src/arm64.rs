//! arm64 guests: Debian's static busybox for arm64
//! ([`kmlink_crawler::tools::busybox_arm64`]: from the archive the host's
//! apt sources name, verified, cached under the kmlink cache) and a boot in
//! qemu-system-aarch64 through the VM harness ([`kmlink_vm`] with
//! [`kmlink_vm::Arch::Aarch64`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{Distro, Origin};
use kmlink_crawler::Http;
use kmlink_vm::{Arch, GuestFile, VmResult, VmSpec};

fn cache() -> Cache {
    Cache::new(
        std::env::var_os("KMLINK_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(Cache::default_root),
    )
}

/// Debian's `busybox-static` for arm64 (`bin/busybox`), downloaded once and
/// cached under the kmlink cache.
pub fn busybox() -> Result<PathBuf> {
    let origin =
        Origin::from_host(Distro::Debian, Path::new("/")).context("reading apt sources")?;
    let http = Http::new()?;
    Ok(kmlink_crawler::tools::busybox_arm64(
        &http,
        &cache(),
        &origin,
    )?)
}

/// Boots `kernel` (Debian's arm64 vmlinuz) in qemu-system-aarch64 (virt,
/// `-cpu max,pauth-impdef=on`, TCG, 2 CPUs, 2 GiB) with `busybox`, `files`
/// (guest path, contents; mode 0644) and `script` as the test, killed after
/// `timeout`.
pub fn boot(
    kernel: &Path,
    busybox: &Path,
    script: &str,
    files: &[(&str, Vec<u8>)],
    timeout: Duration,
) -> Result<VmResult> {
    let mut spec = VmSpec::new(kernel, script);
    spec.arch = Arch::Aarch64;
    spec.busybox = Some(busybox.to_path_buf());
    spec.memory_mb = 2048;
    spec.smp = 2;
    spec.timeout = timeout;
    spec.files = files
        .iter()
        .map(|(path, data)| GuestFile::bytes(*path, data.clone(), 0o644))
        .collect();
    kmlink_vm::run(&spec).with_context(|| format!("booting {}", kernel.display()))
}
