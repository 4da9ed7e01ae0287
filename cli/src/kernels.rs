//! Finding a kernel's packages and unpacking them (through the crawler).
//!
//! A release is looked up among the pinned test kernels first (no index
//! download needed), then in the archives the host's apt sources (or
//! `--mirror`) name, through the crawler's verified discovery.

use anyhow::{bail, Context, Result};
use kmlink_crawler::discover::{self, Distro, Origin};
use kmlink_crawler::{cache::Cache, kernel_tree, sources, Http};
use kmlink_linker::gather::{FetchError, FetchedPackages};
use kmlink_metadata_db::extract::Artifacts;
use kmlink_metadata_db::record::PackageRef;

use crate::FetchOpts;

/// The pinned test kernels, shipped with the binary.
const PINNED: &str = include_str!("../../tests/kernels.toml");

/// The cache the options select.
pub fn cache(opts: &FetchOpts) -> Cache {
    cache_at(opts.cache.clone())
}

/// The one way the CLI makes a [`Cache`]: `dir` or the default root, with
/// progress bars on a terminal.
pub fn cache_at(dir: Option<std::path::PathBuf>) -> Cache {
    let cache = Cache::new(dir.unwrap_or_else(Cache::default_root));
    match crate::progress::bars() {
        Some(bars) => cache.with_listener(bars),
        None => cache,
    }
}

/// Where packages come from: `--mirror` or the host's apt sources.
pub fn origin(opts: &FetchOpts) -> Result<Origin> {
    let mut origin = if opts.mirror.is_empty() {
        let origin = Origin::from_host(Distro::Debian, std::path::Path::new("/"))
            .context("reading the host's apt sources")?;
        if origin.mirrors.archive.is_empty() {
            bail!("no Debian archive in the host's apt sources; pass --mirror URL");
        }
        origin
    } else {
        let mirrors = sources::Mirrors {
            archive: opts.mirror.clone(),
            security: opts.mirror.clone(),
        };
        Origin::new(Distro::Debian, mirrors, None)
    };
    origin.allow_expired = opts.allow_expired;
    Ok(origin)
}

/// A fetched and unpacked kernel, with where it came from.
pub struct Fetched {
    /// The unpacked tree.
    pub tree: kernel_tree::KernelTree,
    /// Archive suite.
    pub suite: String,
    /// Distribution.
    pub distro: String,
    /// Flavour.
    pub flavour: String,
}

/// Finds `release` (pins, then the archives) without downloading packages.
pub fn locate(
    release: &str,
    opts: &FetchOpts,
) -> Result<(kernel_tree::PinnedKernel, String, String)> {
    let pins = kernel_tree::parse(PINNED).context("parsing the built-in kernel pins")?;
    if let Some(pin) = pins.into_iter().find(|p| p.release == release) {
        let flavour = discover::parse_release(release)
            .map(|p| p.flavour.to_string())
            .unwrap_or_default();
        return Ok((pin, "debian".into(), flavour));
    }
    let http = Http::new().context("setting up HTTP")?;
    let mut origin = origin(opts)?;
    // The release names its architecture (`-arm64`, `-cloud-amd64`, ...):
    // it is looked for in that architecture's indexes.
    if let Some(arch) = discover::release_arch(release) {
        origin.arch = arch;
    }
    let found = discover::find_kernel(&http, &cache(opts), &origin, release)
        .with_context(|| format!("looking for {release} in the archives"))?;
    let Some((pin, info)) = found else {
        bail!(
            "kernel {release} is in none of the archives' suites; \
             `kmlink crawler list` shows the kernels there are"
        );
    };
    Ok((pin, info.distro.as_str().to_string(), info.flavour))
}

/// Fetches (verified) and unpacks `release`.
pub fn materialize(release: &str, opts: &FetchOpts) -> Result<Fetched> {
    let (pin, distro, flavour) = locate(release, opts)?;
    let http = Http::new().context("setting up HTTP")?;
    let origin = origin(opts)?;
    let tree = kernel_tree::materialize(&cache(opts), &http, &origin.mirrors, &pin)
        .with_context(|| format!("fetching and unpacking {release}"))?;
    Ok(Fetched {
        tree,
        suite: pin.suite.clone(),
        distro,
        flavour,
    })
}

/// Fetches (verified) only what booting `release` needs and returns its
/// image; with `evict`, packages downloaded for it leave the cache again.
pub fn boot_image(release: &str, opts: &FetchOpts, evict: bool) -> Result<std::path::PathBuf> {
    let (pin, _, _) = locate(release, opts)?;
    let http = Http::new().context("setting up HTTP")?;
    let origin = origin(opts)?;
    kernel_tree::boot_image(&cache(opts), &http, &origin.mirrors, &pin, evict)
        .with_context(|| format!("fetching the image of {release}"))
}

/// How `--from-packages` fetches a kernel for the linker's gathering
/// ([`kmlink_linker::gather::FetchPackages`]): [`materialize`], then
/// [`artifacts`]; its errors are passed on whole.
pub fn fetch_packages(
    opts: &FetchOpts,
) -> impl Fn(&str) -> std::result::Result<FetchedPackages, FetchError> + '_ {
    move |release| {
        let fetched = materialize(release, opts)?;
        Ok(FetchedPackages {
            artifacts: artifacts(&fetched),
            suite: fetched.suite,
        })
    }
}

/// What the extractor needs from an unpacked kernel.
pub fn artifacts(fetched: &Fetched) -> Artifacts {
    artifacts_of(
        &fetched.tree,
        &fetched.distro,
        &fetched.suite,
        &fetched.flavour,
    )
}

/// The one adapter from a crawler's kernel tree to the extractor's
/// artifacts, with the identity discovery gave it and the packages the tree
/// was unpacked from (the signed twin of an unsigned image whose file is
/// gone, say).
pub fn artifacts_of(
    tree: &kernel_tree::KernelTree,
    distro: &str,
    suite: &str,
    flavour: &str,
) -> Artifacts {
    Artifacts {
        release: tree.release.clone(),
        distro: distro.to_owned(),
        suite: suite.to_owned(),
        flavour: flavour.to_owned(),
        vmlinuz: tree.vmlinuz.clone(),
        config: tree.config.clone(),
        modules_dir: tree.modules_dir.clone(),
        symvers: tree.symvers.clone(),
        packages: tree.packages.iter().map(package_ref).collect(),
    }
}

/// The one adapter from an index entry to a record's package reference.
pub fn package_ref(p: &kmlink_crawler::index::PackageEntry) -> PackageRef {
    PackageRef {
        name: p.package.clone(),
        version: p.version.clone(),
        sha256: p.sha256.clone(),
    }
}
