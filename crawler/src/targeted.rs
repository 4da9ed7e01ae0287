//! Targeted fetch: what `kmlink crawler refresh` needs of a kernel, and
//! nothing more.
//!
//! The kernel's packages are downloaded (verified, through the [`Cache`]),
//! but only these files are unpacked, into a temporary directory:
//!
//! - vmlinuz: `boot/vmlinuz-<rel>` or `[usr/]lib/modules/<rel>/vmlinuz`;
//! - the config: `boot/config-<rel>`, `[usr/]lib/modules/<rel>/config` or
//!   the headers' `usr/src/linux-headers-<rel>/.config`;
//! - `usr/src/linux-headers-<rel>/Module.symvers`;
//! - the first [`STOCK_MODULES`] modules under `[usr/]lib/modules/<rel>/kernel/`
//!   in archive order (`kernel/arch/x86/crypto/…` in every Debian kernel).
//!
//! A package's data member is sorted by path (`dpkg-deb` writes it so):
//! `boot/` comes before `lib/` and `usr/`, and `kernel/arch/x86/…` first
//! among the modules, so reading stops after the first few modules instead
//! of decompressing the ~4000 others. The metadata extractor's stock-module
//! search (`kmlink_metadata_db::extract::find_stock_module`: the modules
//! under `kernel/` in sorted path order) takes the first suitable one, so
//! it picks the same module from this selection as from a full tree. Should a package not be sorted and vmlinuz or the config
//! be missing after the early stop, the packages cut short are read again
//! for those files alone.
//!
//! The returned [`Staged`] owns the temporary directory and, unless asked
//! to keep them, the packages this call downloaded: dropping it removes
//! both, so a crawl of the whole archive needs the space of a couple of
//! kernels at a time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::index::PackageEntry;
use crate::kernel_tree::{self, KernelTree, PinnedKernel};
use crate::sources::Mirrors;
use crate::{deb, Error, Result};
use kmlink_errors::Chain;

/// How many modules under `kernel/` are unpacked (in archive order).
pub const STOCK_MODULES: usize = 16;

/// The exact paths (inside packages) of vmlinuz, config and
/// `Module.symvers` for kernel `rel`, whichever layout it uses.
pub fn exact_paths(rel: &str) -> Vec<String> {
    let mut v = vec![
        format!("boot/vmlinuz-{rel}"),
        format!("boot/config-{rel}"),
        format!("usr/src/linux-headers-{rel}/Module.symvers"),
        format!("usr/src/linux-headers-{rel}/.config"),
    ];
    for root in ["lib/modules", "usr/lib/modules"] {
        v.push(format!("{root}/{rel}/vmlinuz"));
        v.push(format!("{root}/{rel}/config"));
    }
    v
}

/// Whether `path` is a module (`*.ko`, `*.ko.xz`, `*.ko.zst`, `*.ko.gz`) of
/// kernel `rel` under `[usr/]lib/modules/<rel>/kernel/`.
pub fn is_module(rel: &str, path: &str) -> bool {
    module_name(rel, path).is_some()
}

fn module_name<'a>(rel: &str, path: &'a str) -> Option<&'a str> {
    let inner = path
        .strip_prefix("usr/")
        .unwrap_or(path)
        .strip_prefix("lib/modules/")?
        .strip_prefix(rel)?
        .strip_prefix("/kernel/")?;
    let name = inner.rsplit('/').next()?;
    if !(name.ends_with(".ko")
        || name.ends_with(".ko.xz")
        || name.ends_with(".ko.zst")
        || name.ends_with(".ko.gz"))
    {
        return None;
    }
    Some(inner)
}

/// The selection of one package: what to unpack, when to stop.
#[derive(Debug)]
pub struct Selection {
    rel: String,
    exact: Vec<String>,
    modules: usize,
}

impl Selection {
    /// A fresh selection for one package of kernel `rel`.
    pub fn new(rel: &str) -> Selection {
        let mut exact = exact_paths(rel);
        exact.sort();
        Selection {
            rel: rel.to_owned(),
            exact,
            modules: 0,
        }
    }

    /// Whether `path` is unpacked: an exact path, or one of the first
    /// [`STOCK_MODULES`] modules.
    pub fn wants(&self, path: &str) -> bool {
        self.exact
            .binary_search_by(|e| e.as_str().cmp(path))
            .is_ok()
            || (self.modules < STOCK_MODULES && is_module(&self.rel, path))
    }

    /// Notes a written entry; `true` once enough modules are written to
    /// stop reading the package.
    pub fn written(&mut self, path: &str) -> bool {
        if is_module(&self.rel, path) {
            self.modules += 1;
        }
        self.modules >= STOCK_MODULES
    }
}

/// A kernel's files, unpacked for extraction into a temporary directory.
/// Dropping it removes the directory and the packages to discard.
#[derive(Debug)]
pub struct Staged {
    /// The unpacked files (root: the temporary directory).
    pub tree: KernelTree,
    /// Bytes downloaded (packages not in the cache before).
    pub downloaded: u64,
    /// Download and verification time.
    pub fetching: Duration,
    /// Unpacking time.
    pub unpacking: Duration,
    /// Files unpacked.
    pub files: usize,
    dir: Option<tempfile::TempDir>,
    /// The staging tree's lock (see [`crate::sweep`]).
    _held: crate::sweep::Held,
    discard: Vec<PackageEntry>,
    cache: Cache,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let path = d.path().to_owned();
            if let Err(e) = d.close() {
                log::warn!("removing {}: {e}", path.display());
            }
        }
        for p in &self.discard {
            if let Err(e) = self.cache.remove(p) {
                log::warn!("{}", Chain(&e));
            }
        }
    }
}

/// Options of [`fetch`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Parallel downloads.
    pub jobs: usize,
    /// Keep downloaded packages in the cache (default: remove them once
    /// the kernel is extracted; packages cached before are always kept).
    pub keep_debs: bool,
    /// Where the temporary directories go (default `<cache>/staging`).
    pub staging: Option<PathBuf>,
}

/// Download (verified) the packages of `kernel` and unpack the files
/// record extraction needs into a temporary directory (see the module
/// documentation). A package gone from every mirror is replaced by its twin
/// the index also lists ([`kernel_tree::fetch_with_fallbacks`]: the signed image
/// for the unsigned one); with no twin left the kernel is
/// [`Error::Unavailable`] (no other release is substituted: the crawl takes
/// what the index lists). [`Staged::tree`]'s packages are the ones used.
pub fn fetch(
    cache: &Cache,
    http: &crate::Http,
    mirrors: &Mirrors,
    kernel: &PinnedKernel,
    opts: &Options,
) -> Result<Staged> {
    let rel = kernel.release.as_str();
    if rel.is_empty() || rel.contains('/') || rel.starts_with('.') {
        return Err(Error::Kernel {
            release: rel.to_owned(),
            msg: "release is not a plain file name".into(),
        });
    }
    // Packages not in the cache before this call (the listed ones and their
    // twins): downloaded now, removed with the staging unless kept.
    let mut fresh = Vec::new();
    for p in kernel.packages.iter().chain(&kernel.fallbacks) {
        if cache.cached(p)?.is_none() {
            fresh.push(p.sha256.clone());
        }
    }
    let downloaded: u64 = kernel
        .packages
        .iter()
        .filter(|p| fresh.contains(&p.sha256))
        .map(|p| p.size)
        .sum();
    let bases = mirrors.for_kind(&kernel.archive).unwrap_or(&[]);
    if bases.is_empty() && downloaded > 0 {
        return Err(Error::Kernel {
            release: rel.to_owned(),
            msg: format!("no {} mirror configured", kernel.archive),
        });
    }
    let staging = opts
        .staging
        .clone()
        .unwrap_or_else(|| cache.root.join("staging"));
    std::fs::create_dir_all(&staging).map_err(|e| Error::io("creating", &staging, e))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(".{rel}."))
        .tempdir_in(&staging)
        .map_err(|e| Error::io("creating a temporary directory in", &staging, e))?;
    let held = crate::sweep::hold(dir.path())?;
    // From here on, dropping `staged` cleans up, whatever happens.
    let mut staged = Staged {
        tree: KernelTree {
            release: rel.to_owned(),
            root: dir.path().to_owned(),
            vmlinuz: PathBuf::new(),
            config: None,
            modules_dir: PathBuf::new(),
            symvers: None,
            packages: kernel.packages.clone(),
        },
        downloaded,
        fetching: Duration::ZERO,
        unpacking: Duration::ZERO,
        files: 0,
        dir: Some(dir),
        _held: held,
        discard: Vec::new(),
        cache: cache.clone(),
    };
    let ctx = |e: Error| e.context(format!("kernel {rel}"));
    let t = Instant::now();
    let fetched = kernel_tree::fetch_with_fallbacks(cache, http, bases, kernel, opts.jobs);
    // Whatever was downloaded is cleaned up, also when a later package
    // turned out to be gone.
    if !opts.keep_debs {
        staged.discard = kernel
            .packages
            .iter()
            .chain(&kernel.fallbacks)
            .filter(|p| fresh.contains(&p.sha256))
            .cloned()
            .collect();
    }
    // Unavailable names the kernel itself.
    let (packages, debs) = fetched.map_err(|e| if e.is_unavailable() { e } else { ctx(e) })?;
    staged.downloaded = packages
        .iter()
        .filter(|p| fresh.contains(&p.sha256))
        .map(|p| p.size)
        .sum();
    staged.tree.packages = packages.clone();
    staged.fetching = t.elapsed();
    let t = Instant::now();
    let root = staged.tree.root.clone();
    let mut cut_short = Vec::new();
    for (deb_path, p) in debs.iter().zip(&packages) {
        let mut sel = Selection::new(rel);
        let mut stopped = false;
        let sel_cell = std::cell::RefCell::new(&mut sel);
        let written = deb::extract_until(
            deb_path,
            &root,
            &mut |path| sel_cell.borrow().wants(path),
            &mut |path| {
                stopped = sel_cell.borrow_mut().written(path);
                stopped
            },
        )
        .map_err(|e| ctx(e.context(format!("extracting {}", p.label()))))?;
        log::debug!(
            "kernel {rel}: {} -> {} files{}",
            p.package,
            written.len(),
            if stopped { " (stopped early)" } else { "" }
        );
        staged.files += written.len();
        if stopped {
            cut_short.push(deb_path);
        }
    }
    let has = |paths: &[String]| paths.iter().any(|p| root.join(p).is_file());
    let vmlinuz = [
        format!("boot/vmlinuz-{rel}"),
        format!("lib/modules/{rel}/vmlinuz"),
        format!("usr/lib/modules/{rel}/vmlinuz"),
    ];
    let config = [
        format!("boot/config-{rel}"),
        format!("lib/modules/{rel}/config"),
        format!("usr/lib/modules/{rel}/config"),
    ];
    if !cut_short.is_empty() && (!has(&vmlinuz) || !has(&config)) {
        let again: Vec<String> = exact_paths(rel)
            .into_iter()
            .filter(|p| !root.join(p).exists())
            .collect();
        let again: Vec<&str> = again.iter().map(String::as_str).collect();
        for deb_path in cut_short {
            staged.files += deb::extract_paths(deb_path, &root, &again)
                .map_err(|e| ctx(e.context("extracting again")))?
                .len();
        }
    }
    if !["lib/modules", "usr/lib/modules"]
        .iter()
        .any(|d| root.join(d).join(rel).is_dir())
    {
        let empty = root.join("usr/lib/modules").join(rel);
        std::fs::create_dir_all(&empty).map_err(|e| Error::io("creating", &empty, e))?;
    }
    staged.unpacking = t.elapsed();
    let tree = kernel_tree::locate(&root, rel, &packages).map_err(ctx)?;
    staged.tree = tree;
    Ok(staged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        let r = "6.12.107+deb13-amd64";
        assert!(is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64/kernel/lib/crc8.ko.xz"
        ));
        assert!(is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64/kernel/arch/x86/crypto/aesni-intel.ko.xz"
        ));
        assert!(is_module(
            "6.1.0-47-amd64",
            "lib/modules/6.1.0-47-amd64/kernel/lib/x.ko"
        ));
        assert!(!is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64/modules.order"
        ));
        assert!(!is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64-x/kernel/lib/a.ko"
        ));
        assert!(!is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64/kernel/lib/"
        ));
        assert!(!is_module(
            r,
            "usr/lib/modules/6.12.107+deb13-amd64/extra/a.ko"
        ));
    }

    #[test]
    fn selection_takes_exact_files_and_a_few_modules() {
        let r = "7.3.4+deb13-amd64";
        let mut s = Selection::new(r);
        assert!(s.wants("usr/lib/modules/7.3.4+deb13-amd64/vmlinuz"));
        assert!(s.wants("usr/lib/modules/7.3.4+deb13-amd64/config"));
        assert!(s.wants("boot/config-7.3.4+deb13-amd64"));
        assert!(s.wants("usr/src/linux-headers-7.3.4+deb13-amd64/Module.symvers"));
        assert!(!s.wants("usr/src/linux-headers-7.3.4+deb13-amd64/Makefile"));
        assert!(!s.wants("boot/System.map-7.3.4+deb13-amd64"));
        assert!(!s.wants("boot/vmlinuz-7.3.4+deb13-rt-amd64"));
        assert!(!s.wants("usr/lib/modules/7.3.4+deb13-amd64/modules.dep"));
        assert!(!s.wants("usr/share/doc/linux/copyright"));
        assert!(!s.written("boot/config-7.3.4+deb13-amd64"));
        let m = |i: usize| format!("usr/lib/modules/{r}/kernel/arch/x86/crypto/m{i:02}.ko.xz");
        for i in 0..STOCK_MODULES {
            assert!(s.wants(&m(i)), "{i}");
            assert_eq!(s.written(&m(i)), i + 1 == STOCK_MODULES, "{i}");
        }
        // Enough modules: no more, but the exact files are still wanted.
        assert!(!s.wants(&m(99)));
        assert!(!s.wants(&format!("usr/lib/modules/{r}/kernel/lib/crc8.ko.xz")));
        assert!(s.wants(&format!("usr/lib/modules/{r}/vmlinuz")));
    }
}
