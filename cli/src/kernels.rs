//! Finding a kernel's packages and unpacking them (through the crawler).

use anyhow::{bail, Context, Result};
use kmlink_crawler::{cache::Cache, pinned, sources, Http};
use kmlink_metadata_db::extract::Artifacts;
use kmlink_metadata_db::record::PackageRef;

use crate::FetchOpts;

/// The pinned test kernels, shipped with the binary.
const PINNED: &str = include_str!("../../tests/kernels.toml");

/// The flavour part of a Debian or Ubuntu release string.
pub fn flavour_of(release: &str) -> String {
    for f in [
        "rt-amd64",
        "cloud-amd64",
        "amd64",
        "generic",
        "lowlatency",
        "aws",
        "azure",
        "gcp",
        "kvm",
    ] {
        if release.ends_with(&format!("-{f}")) {
            return f.to_string();
        }
    }
    release.rsplit('-').next().unwrap_or(release).to_string()
}

/// The cache the options select.
pub fn cache(opts: &FetchOpts) -> Cache {
    Cache::new(opts.cache.clone().unwrap_or_else(Cache::default_root))
}

/// Mirrors: `--mirror` or the host's apt sources.
pub fn mirrors(opts: &FetchOpts) -> Result<sources::Mirrors> {
    if !opts.mirror.is_empty() {
        return Ok(sources::Mirrors {
            archive: opts.mirror.clone(),
            security: opts.mirror.clone(),
        });
    }
    let srcs = sources::host_sources(std::path::Path::new("/"))
        .context("reading the host's apt sources")?;
    let m = sources::debian_mirrors(&srcs);
    if m.archive.is_empty() {
        bail!("no Debian archive in the host's apt sources; pass --mirror URL");
    }
    Ok(m)
}

/// A fetched and unpacked kernel, with the suite it came from.
pub struct Fetched {
    /// The unpacked tree.
    pub tree: pinned::KernelTree,
    /// Archive suite.
    pub suite: String,
}

/// Fetches and unpacks `release`.
pub fn materialize(release: &str, opts: &FetchOpts) -> Result<Fetched> {
    let pins = pinned::parse(PINNED).context("parsing the built-in kernel pins")?;
    let Some(pin) = pins.iter().find(|p| p.release == release) else {
        let known: Vec<&str> = pins.iter().map(|p| p.release.as_str()).collect();
        bail!(
            "kernel {release} is not one this build can fetch by itself (known: {}); \
             crawler discovery of every archive kernel is tracked separately",
            known.join(", ")
        );
    };
    let http = Http::new().context("setting up HTTP")?;
    let tree = pinned::materialize(&cache(opts), &http, &mirrors(opts)?, pin)
        .with_context(|| format!("fetching and unpacking {release}"))?;
    Ok(Fetched {
        tree,
        suite: pin.suite.clone(),
    })
}

/// What the extractor needs from an unpacked kernel.
pub fn artifacts(tree: &pinned::KernelTree, suite: &str) -> Artifacts {
    Artifacts {
        release: tree.release.clone(),
        distro: "debian".into(),
        suite: suite.into(),
        flavour: flavour_of(&tree.release),
        vmlinuz: tree.vmlinuz.clone(),
        config: tree.config.clone(),
        modules_dir: tree.modules_dir.clone(),
        symvers: tree.symvers.clone(),
        packages: tree
            .packages
            .iter()
            .map(|p| PackageRef {
                name: p.package.clone(),
                version: p.version.clone(),
                sha256: p.sha256.clone(),
            })
            .collect(),
    }
}
