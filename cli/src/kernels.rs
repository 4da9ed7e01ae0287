//! Finding a kernel's packages and unpacking them (through the crawler).
//!
//! A release is looked up among the pinned test kernels first (no index
//! download needed), then in the archives the host's apt sources (or
//! `--mirror`) name, through the crawler's verified discovery.

use anyhow::{bail, Context, Result};
use std::path::Path;

use kmlink_crawler::discover::{self, Arch, Distro, Origin};
use kmlink_crawler::refresh::artifacts_of;
use kmlink_crawler::sources::{self, Mirrors};
use kmlink_crawler::{cache::Cache, kernel_tree, Http};
use kmlink_linker::gather::{FetchError, FetchedPackages};
use kmlink_metadata_db::extract::Artifacts;

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

/// What selects where packages come from: `kmlink crawler`'s source
/// options and the other commands' [`FetchOpts`] both fill it, and
/// [`origin_of`] is the one way an [`Origin`] is built from it.
pub struct OriginSpec<'a> {
    /// The distribution.
    pub distro: Distro,
    /// The architecture whose indexes are read; `None`: the host's.
    pub arch: Option<Arch>,
    /// Archive mirror base URLs; empty: the host's apt sources'.
    pub mirror: &'a [String],
    /// Security mirror base URLs; empty: the host's apt sources'.
    pub security_mirror: &'a [String],
    /// Keyring trusted for every mirror, instead of each apt source's
    /// Signed-By and the distribution's archive keyring.
    pub keyring: Option<&'a Path>,
    /// Use suites whose signed Release has expired.
    pub allow_expired: bool,
}

/// Where packages come from: the mirrors given, and for what is not given
/// the host's apt sources (read only then), each with its Signed-By.
pub fn origin_of(spec: &OriginSpec<'_>) -> Result<Origin> {
    let mut o = if !spec.mirror.is_empty() && !spec.security_mirror.is_empty() {
        Origin::new(spec.distro, Mirrors::default(), None)
    } else {
        let srcs =
            sources::host_sources(Path::new("/")).context("reading the host's apt sources")?;
        Origin::from_sources(spec.distro, &srcs)
    };
    o.allow_expired = spec.allow_expired;
    if let Some(a) = spec.arch {
        o.arch = a;
    }
    if !spec.mirror.is_empty() {
        o.mirrors.archive = trimmed(spec.mirror);
    }
    if !spec.security_mirror.is_empty() {
        o.mirrors.security = trimmed(spec.security_mirror);
    }
    if let Some(k) = spec.keyring {
        o.keyrings.clear();
        o.default_keyring = k.to_path_buf();
    }
    if o.mirrors.archive.is_empty() && o.mirrors.security.is_empty() {
        bail!(
            "no {} mirror in the host's apt sources; pass --mirror URL",
            spec.distro
        );
    }
    Ok(o)
}

fn trimmed(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect()
}

/// Where Debian packages come from: `--mirror` (archive and security
/// suites alike) or the host's apt sources.
pub fn origin(opts: &FetchOpts) -> Result<Origin> {
    origin_of(&OriginSpec {
        distro: Distro::Debian,
        arch: None,
        mirror: &opts.mirror,
        security_mirror: &opts.mirror,
        keyring: None,
        allow_expired: opts.allow_expired,
    })
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
