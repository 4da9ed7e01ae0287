//! Shared helpers for kmlink's end-to-end tests: the pinned kernels, the real
//! `kmlink` binary, and stock modules to load.
//!
//! Tests that boot kernels are `#[ignore]`d so `cargo test` stays fast and
//! offline; `scripts/test` (what CI runs) runs them with `--ignored`.
#![deny(missing_docs)]

pub mod kmem;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use kmlink_crawler::{cache::Cache, kernel_tree, sources, Http};

pub mod arm64;
pub mod bpf;
pub mod monitor;
pub mod secureboot;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The kernels the default suite uses (tests/kernels.toml).
pub fn pinned_kernels() -> Result<Vec<kernel_tree::PinnedKernel>> {
    let path = workspace().join("tests/kernels.toml");
    kernel_tree::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// Releases of the pinned kernels.
pub fn pinned_releases() -> Result<Vec<String>> {
    Ok(pinned_kernels()?.into_iter().map(|k| k.release).collect())
}

/// Fetches (verified, cached) and unpacks one pinned kernel.
pub fn kernel(release: &str) -> Result<kernel_tree::KernelTree> {
    let pins = pinned_kernels()?;
    let Some(pin) = pins.iter().find(|p| p.release == release) else {
        bail!("{release} is not pinned in tests/kernels.toml");
    };
    let srcs = sources::host_sources(Path::new("/")).context("reading apt sources")?;
    let mirrors = sources::debian_mirrors(&srcs);
    let http = Http::new()?;
    let cache = Cache::new(
        std::env::var_os("KMLINK_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(Cache::default_root),
    );
    Ok(kernel_tree::materialize(&cache, &http, &mirrors, pin)?)
}

/// The `kmlink` binary built alongside the tests.
pub fn kmlink_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_kmlink") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/kmlink
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("kmlink"))
        .unwrap_or_default()
}

/// Runs `kmlink` with `args`; the output is returned whatever the status.
///
/// The host's record store is kept out (`KMLINK_DB` names a store that does
/// not exist), so a test reads the records it names (`--db`, `--record`,
/// `--from-packages`) or the built-in bundle, as on CI's fresh machine.
pub fn kmlink(args: &[&str]) -> Result<Output> {
    let bin = kmlink_bin();
    Command::new(&bin)
        .args(args)
        .env("KMLINK_DB", no_store())
        .output()
        .with_context(|| format!("running {}", bin.display()))
}

/// Runs `kmlink` and fails with its stderr unless it succeeds.
pub fn kmlink_ok(args: &[&str]) -> Result<String> {
    let out = kmlink(args)?;
    if !out.status.success() {
        bail!(
            "kmlink {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kmlink build --kernel RELEASE --from-packages --backend BACKEND
/// [EXTRA…] -o OUT`: the module a VM test loads, linked from the kernel's
/// own packages; `extra` are further options (`--set`, `--sign-key`, …).
pub fn build_from_packages(
    release: &str,
    backend: &str,
    extra: &[&str],
    out: &Path,
) -> Result<String> {
    let out = out.to_str().context("output path is not UTF-8")?;
    let mut args = vec![
        "build",
        "--kernel",
        release,
        "--from-packages",
        "--backend",
        backend,
    ];
    args.extend_from_slice(extra);
    args.extend(["-o", out]);
    kmlink_ok(&args)
}

/// A copy of the real `kmlink` binary without debug info, in `dir`: small
/// enough for an initramfs (`VmSpec::include_host_binary`).
pub fn stripped_kmlink(dir: &Path) -> PathBuf {
    let bin = dir.join("kmlink");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(kmlink_bin())
        .arg(&bin)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy --strip-debug");
    bin
}

/// Small library modules without dependencies, tried in order for smoke tests.
const STOCK_CANDIDATES: &[&str] = &[
    "crc7",
    "crc-itu-t",
    "crc8",
    "lru_cache",
    "ts_kmp",
    "ts_bm",
    "ts_fsm",
    "bch",
];

/// A stock module of `tree` that loads on its own: (name, decompressed bytes).
pub fn stock_module(tree: &kernel_tree::KernelTree) -> Result<(String, Vec<u8>)> {
    let mut all = Vec::new();
    walk(&tree.modules_dir.join("kernel"), &mut all);
    for want in STOCK_CANDIDATES {
        for path in &all {
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if file.split(".ko").next() != Some(*want) {
                continue;
            }
            let bytes = kmlink_donor::ko::load(path)?;
            let facts = kmlink_donor::ko::read(&bytes)?;
            let deps = facts
                .modinfo
                .iter()
                .find(|(k, _)| k == "depends")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            if deps.is_empty() {
                return Ok((facts.name.unwrap_or_else(|| want.to_string()), bytes));
            }
        }
    }
    bail!(
        "no dependency-free stock module found under {}",
        tree.modules_dir.display()
    )
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// The first stock module under `modules_dir/kernel/lib` whose
/// `.gnu.linkonce.this_module` carries both init and exit relocations:
/// (path, module name, decompressed bytes).
pub fn module_with_init_exit(modules_dir: &Path) -> Option<(PathBuf, String, Vec<u8>)> {
    files_under(&modules_dir.join("kernel/lib"))
        .into_iter()
        .find_map(|p| {
            let bytes = kmlink_donor::ko::load(&p).ok()?;
            let facts = kmlink_donor::ko::read(&bytes).ok()?;
            let has = |s: &str| facts.this_module_relocs.iter().any(|(_, n)| n == s);
            (has("init_module") && has("cleanup_module"))
                .then(|| (p.clone(), facts.name.unwrap_or_default(), bytes))
        })
}

/// Builds one of `tests/workloads/*.c` as a static binary into `dir`.
pub fn build_workload(name: &str, dir: &Path) -> Result<PathBuf> {
    let out = dir.join(name);
    let src = workspace().join(format!("tests/workloads/{name}.c"));
    let status = Command::new("gcc")
        .args(["-O2", "-static", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("running gcc (apt-get install gcc libc6-dev)")?;
    if !status.success() {
        bail!("building {}", src.display());
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A record-store path that does not exist (see [`kmlink`]).
pub fn no_store() -> std::path::PathBuf {
    std::env::temp_dir()
        .join("kmlink-tests-no-store")
        .join("records.db")
}
