//! Scanning suites: each suite's `InRelease` verified, its indexes
//! fetched and checked, its kernels assembled; and finding given releases
//! among them and the ingested packages.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::assemble::{kernels_in_index, merge, KernelInfo};
use super::identity::{is_kernel_package_name, Arch, Distro};
use crate::cache::Cache;
use crate::index;
use crate::kernel_tree::PinnedKernel;
use crate::release::Keyring;
use crate::sources::{self, AptSource, Mirrors};
use crate::{Error, Http, Result};
use kmlink_errors::Chain;

/// Where one distribution's packages come from and whom to trust.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The distribution.
    pub distro: Distro,
    /// Archive and security base URIs.
    pub mirrors: Mirrors,
    /// Keyring per base URI (the apt source's `Signed-By`).
    pub keyrings: BTreeMap<String, PathBuf>,
    /// Keyring for base URIs not in [`Self::keyrings`].
    pub default_keyring: PathBuf,
    /// Use a suite whose signed `Valid-Until` has passed (a stale or
    /// replayed mirror), with a warning; refused by default, as apt does.
    pub allow_expired: bool,
    /// The architecture whose `binary-<arch>` indexes are read (default:
    /// the host's); kernels of any other architecture are left out.
    pub arch: Arch,
}

impl Origin {
    /// Mirrors given explicitly, trusting `keyring` (default: the
    /// distribution's archive keyring).
    pub fn new(distro: Distro, mirrors: Mirrors, keyring: Option<PathBuf>) -> Origin {
        Origin {
            distro,
            mirrors,
            keyrings: BTreeMap::new(),
            default_keyring: keyring.unwrap_or_else(|| PathBuf::from(distro.default_keyring())),
            allow_expired: false,
            arch: Arch::host().unwrap_or(Arch::X86_64),
        }
    }

    /// The mirrors of `distro` in apt sources, each with its `Signed-By`.
    pub fn from_sources(distro: Distro, sources: &[AptSource]) -> Origin {
        let mirrors = match distro {
            Distro::Debian => sources::debian_mirrors(sources),
            Distro::Ubuntu => sources::ubuntu_mirrors(sources),
        };
        let mut o = Origin::new(distro, mirrors, None);
        for uri in o.mirrors.archive.iter().chain(&o.mirrors.security) {
            if let Some(k) = sources::signed_by(sources, uri) {
                o.keyrings.insert(uri.clone(), k);
            }
        }
        o
    }

    /// The host's apt sources under `root` (normally `/`).
    pub fn from_host(distro: Distro, root: &Path) -> Result<Origin> {
        Ok(Origin::from_sources(distro, &sources::host_sources(root)?))
    }

    /// The keyring trusted for `uri`.
    pub fn keyring_for(&self, uri: &str) -> &Path {
        self.keyrings
            .get(uri)
            .map_or(self.default_keyring.as_path(), PathBuf::as_path)
    }

    /// `"security"` for `*-security` suites, else `"archive"`.
    pub fn kind_of(suite: &str) -> &'static str {
        if suite.ends_with("-security") || suite.ends_with("/updates") {
            "security"
        } else {
            "archive"
        }
    }

    /// Base URIs serving `suite`. Ubuntu's archive mirrors also serve
    /// `-security`, so they are tried after the security mirrors.
    pub fn bases_for(&self, suite: &str) -> Vec<String> {
        match (Origin::kind_of(suite), self.distro) {
            ("security", Distro::Ubuntu) => self
                .mirrors
                .security
                .iter()
                .chain(&self.mirrors.archive)
                .cloned()
                .collect(),
            ("security", Distro::Debian) => self.mirrors.security.clone(),
            _ => self.mirrors.archive.clone(),
        }
    }
}

/// The result of scanning several suites.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Every kernel found, per suite (not merged), sorted by suite order
    /// then release.
    pub kernels: Vec<(PinnedKernel, KernelInfo)>,
    /// Suites that could not be read (bad signature, bad hash, network...);
    /// nothing from them is in [`Self::kernels`].
    pub errors: Vec<(String, Error)>,
}

/// Loaded keyrings, by path.
#[derive(Default)]
struct Keyrings(HashMap<PathBuf, Keyring>);

impl Keyrings {
    fn get(&mut self, path: &Path) -> Result<&Keyring> {
        if !self.0.contains_key(path) {
            let k = Keyring::load(path)?;
            self.0.insert(path.to_owned(), k);
        }
        self.0.get(path).ok_or_else(|| Error::Keyring {
            path: path.to_owned(),
            msg: "not loaded".into(),
        })
    }
}

/// Scan one suite: verify its `InRelease`, fetch and verify its indexes,
/// assemble its kernels. Each base URI serving the suite is tried in turn
/// until one gives a verified answer; the error of the last is returned
/// when none does.
pub fn scan_suite(
    http: &Http,
    cache: Option<&Cache>,
    origin: &Origin,
    suite: &str,
) -> Result<Vec<(PinnedKernel, KernelInfo)>> {
    scan_suite_with(http, cache, origin, suite, &mut Keyrings::default())
}

fn scan_suite_with(
    http: &Http,
    cache: Option<&Cache>,
    origin: &Origin,
    suite: &str,
    keyrings: &mut Keyrings,
) -> Result<Vec<(PinnedKernel, KernelInfo)>> {
    let kind = Origin::kind_of(suite);
    let bases = origin.bases_for(suite);
    let no_mirror = || Error::NoMirror {
        distro: origin.distro.to_string(),
        kind,
        suite: suite.to_string(),
    };
    if bases.is_empty() {
        return Err(no_mirror());
    }
    let mut last = None;
    for base in &bases {
        let r = (|| {
            let keyring = keyrings.get(origin.keyring_for(base))?;
            let release =
                crate::release::fetch_release(http, base, suite, keyring, origin.allow_expired)?;
            let mut entries = Vec::new();
            for (i, component) in origin.distro.components().iter().enumerate() {
                match index::fetch_verified_packages(
                    http,
                    cache,
                    base,
                    &index::IndexAt {
                        suite,
                        component,
                        arch: origin.arch.debian(),
                    },
                    &release,
                    &index::Selection {
                        name: "kernel-packages",
                        keep: &is_kernel_package_name,
                    },
                ) {
                    Ok(mut e) => entries.append(&mut e),
                    // Optional components (Ubuntu's restricted, universe)
                    // may be absent from a suite.
                    Err(Error::Release { .. }) if i > 0 => {}
                    Err(e) => return Err(e),
                }
            }
            // Ubuntu's security suites are served by the archive mirror too,
            // but the packages are fetched from wherever the suite was read.
            let kind = if kind == "security" && !origin.mirrors.security.contains(base) {
                "archive"
            } else {
                kind
            };
            let mut kernels = kernels_in_index(origin.distro, suite, kind, &entries);
            // An index of one architecture never yields another's kernel.
            kernels.retain(|k| k.1.arch == origin.arch.debian());
            Ok(kernels)
        })();
        match r {
            Ok(k) => return Ok(k),
            Err(e) => {
                let e = e.context(format!("{} suite {suite} from {base}", origin.distro));
                log::warn!("{}", Chain(&e));
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(no_mirror))
}

/// Scan `suites` (default: the distribution's [`Distro::default_suites`]).
/// A suite that fails is reported in [`Discovery::errors`] and skipped;
/// the others are still read.
pub fn discover(
    http: &Http,
    cache: Option<&Cache>,
    origin: &Origin,
    suites: &[String],
) -> Discovery {
    let suites: Vec<String> = if suites.is_empty() {
        origin
            .distro
            .default_suites()
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        suites.to_vec()
    };
    let mut keyrings = Keyrings::default();
    let mut d = Discovery::default();
    for suite in &suites {
        match scan_suite_with(http, cache, origin, suite, &mut keyrings) {
            Ok(mut k) => {
                log::info!("{} {suite}: {} kernels", origin.distro, k.len());
                d.kernels.append(&mut k);
            }
            Err(e) => d.errors.push((suite.clone(), e)),
        }
    }
    d
}

/// Find kernel `release` in every default suite of `origin` (Debian:
/// bookworm … sid, security suites from the security mirror) and in the
/// packages ingested into `cache` (`kmlink crawler ingest`), which win
/// because they need no network.
///
/// When the release is in several suites the newest build wins (identical
/// packages are the same kernel). Returns `Ok(None)` when every suite was
/// read and none has it; an error when it was not found and some suite
/// could not be read (bad signature, network...), since it might be there.
pub fn find_kernel(
    http: &Http,
    cache: &Cache,
    origin: &Origin,
    release: &str,
) -> Result<Option<(PinnedKernel, KernelInfo)>> {
    let mut found = find_kernels(http, cache, origin, &[release])?;
    Ok(found.pop().flatten())
}

/// [`find_kernel`] for several releases with one scan of the suites
/// (answers in the order of `releases`). The suites are read only if some
/// release is not among the ingested packages.
pub fn find_kernels(
    http: &Http,
    cache: &Cache,
    origin: &Origin,
    releases: &[&str],
) -> Result<Vec<Option<(PinnedKernel, KernelInfo)>>> {
    let local = crate::ingest::local_kernels(cache)?;
    let mut out: Vec<Option<(PinnedKernel, KernelInfo)>> = releases
        .iter()
        .map(|r| local.iter().find(|k| k.1.release == *r).cloned())
        .collect();
    if out.iter().all(Option::is_some) {
        return Ok(out);
    }
    let d = discover(http, Some(cache), origin, &[]);
    let merged = merge(
        d.kernels
            .into_iter()
            .filter(|k| releases.contains(&k.1.release.as_str()))
            .collect(),
    );
    for (slot, release) in out.iter_mut().zip(releases) {
        if slot.is_some() {
            continue;
        }
        if let Some(k) = merged.iter().find(|k| k.1.release == *release) {
            for (suite, e) in &d.errors {
                log::warn!(
                    "while looking for {release}: suite {suite} skipped: {}",
                    Chain(e)
                );
            }
            *slot = Some(k.clone());
        } else if let Some((suite, e)) = d.errors.first() {
            return Err(Error::Kernel {
                release: (*release).to_owned(),
                msg: format!(
                    "not found, and suite {suite} could not be read: {}",
                    Chain(e)
                ),
            });
        }
    }
    Ok(out)
}
