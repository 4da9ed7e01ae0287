//! Discovery: every kernel of the requested suites, with the packages that
//! carry its vmlinuz, config, modules and `Module.symvers`.
//!
//! Each suite's `InRelease` is verified against the source's keyring and its
//! `Packages` index against the hashes in it ([`crate::index`]); kernels are
//! then assembled from package names and `Depends`:
//!
//! | layout | vmlinuz | config | modules | Module.symvers |
//! |---|---|---|---|---|
//! | Debian 6.1 / 6.12 | `linux-image-<rel>-unsigned` (preferred) or signed `linux-image-<rel>` | same | same | `linux-headers-<rel>` |
//! | Debian 6.16 – 6.18 | signed `linux-image-<rel>` (one ~170 MB package) | same, or `linux-base-<rel>` when the image depends on it | same | `linux-headers-<rel>` |
//! | Debian 6.19+ / 7.x | `linux-binary-<rel>` (named by the meta `linux-image-<rel>`) | `linux-base-<rel>` | `linux-modules-<rel>` | `linux-headers-<rel>` |
//! | Ubuntu (experimental) | `linux-image-unsigned-<rel>` (preferred) or `linux-image-<rel>` | `linux-modules-<rel>` | `linux-modules-<rel>` | `linux-headers-<rel>` |
//!
//! Packages that are gone from the archive (old backports' headers, modules
//! or base packages) leave the kernel listed, with that part `None` and the
//! missing names in [`KernelInfo::missing`].
//!
//! The output per kernel is a [`PinnedKernel`] (what
//! [`crate::pinned::materialize`] fetches and unpacks) and a [`KernelInfo`]
//! (what it is and which package carries what).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::index::{self, PackageEntry};
use crate::pinned::PinnedKernel;
use crate::release::{Keyring, DEBIAN_KEYRING, UBUNTU_KEYRING};
use crate::sources::{self, AptSource, Mirrors};
use crate::{version, Error, Http, Result};
use kmlink_errors::Chain;

/// Debian suites searched by default (security suites come from the
/// security mirror).
pub const DEBIAN_SUITES: &[&str] = &[
    "bullseye",
    "bullseye-security",
    "bookworm",
    "bookworm-security",
    "bookworm-backports",
    "trixie",
    "trixie-security",
    "trixie-backports",
    "forky",
    "sid",
];

/// Ubuntu suites searched by default (experimental).
pub const UBUNTU_SUITES: &[&str] = &[
    "jammy",
    "jammy-updates",
    "jammy-security",
    "noble",
    "noble-updates",
    "noble-security",
];

pub use kmlink_core_module::Arch;

/// The architecture a Debian kernel release is built for, from its flavour:
/// `amd64`, `cloud-amd64`, `rt-amd64`; `arm64`, `cloud-arm64`, `rt-arm64`,
/// `arm64-16k` (16 KiB pages). `None` for other releases (Ubuntu's
/// `generic`, ...).
pub fn release_arch(release: &str) -> Option<Arch> {
    let flavour = parse_release(release)?.flavour;
    Arch::ALL.into_iter().find(|a| {
        let d = a.debian();
        flavour == d || flavour.ends_with(&format!("-{d}")) || flavour.starts_with(&format!("{d}-"))
    })
}

/// A distribution.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian.
    Debian,
    /// Ubuntu (experimental: covered by fixtures only).
    Ubuntu,
}

impl Distro {
    /// `debian` / `ubuntu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    /// The suites searched by default.
    pub fn default_suites(self) -> &'static [&'static str] {
        match self {
            Distro::Debian => DEBIAN_SUITES,
            Distro::Ubuntu => UBUNTU_SUITES,
        }
    }

    /// Components whose `Packages` indexes are read.
    pub fn components(self) -> &'static [&'static str] {
        match self {
            Distro::Debian => &["main"],
            Distro::Ubuntu => &["main", "restricted", "universe"],
        }
    }

    /// The keyring used when an apt source names none.
    pub fn default_keyring(self) -> &'static str {
        match self {
            Distro::Debian => DEBIAN_KEYRING,
            Distro::Ubuntu => UBUNTU_KEYRING,
        }
    }

    /// Best guess from a release string: Debian's flavours all name the
    /// architecture ([`release_arch`]: `amd64`, `cloud-arm64`, `arm64-16k`,
    /// ...); anything else is taken for Ubuntu (`generic`, `lowlatency`,
    /// `aws`, ...).
    pub fn guess(release: &str) -> Distro {
        if release_arch(release).is_some() {
            Distro::Debian
        } else {
            Distro::Ubuntu
        }
    }
}

impl std::fmt::Display for Distro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Distro {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Distro, String> {
        match s.to_ascii_lowercase().as_str() {
            "debian" => Ok(Distro::Debian),
            "ubuntu" => Ok(Distro::Ubuntu),
            _ => Err(format!("unknown distro {s:?} (debian or ubuntu)")),
        }
    }
}

/// How a kernel's files are spread over packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One image package with vmlinuz (in `/boot`), config and modules
    /// (Debian 6.1 – 6.18).
    Image,
    /// A meta `linux-image-<rel>` naming `linux-binary-<rel>` (vmlinuz),
    /// `linux-modules-<rel>` and `linux-base-<rel>` (config) (Debian 6.19+).
    Split,
    /// Ubuntu: image (vmlinuz) + `linux-modules-<rel>` (modules, config).
    Ubuntu,
}

/// What discovery knows about one kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelInfo {
    /// Kernel release (`uname -r`).
    pub release: String,
    /// Distribution.
    pub distro: Distro,
    /// The suite whose packages are used.
    pub suite: String,
    /// `archive` or `security`: the mirror serving [`Self::suite`].
    pub archive: String,
    /// Other suites listing the same kernel (same packages, or an older
    /// build of it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_in: Vec<String>,
    /// Flavour: `amd64`, `cloud-amd64`, `rt-amd64`, `arm64-16k`; Ubuntu
    /// `generic`, ...
    pub flavour: String,
    /// Debian architecture (`amd64`, `arm64`): the `binary-<arch>` index the
    /// kernel was found in. Absent in older caches: `amd64`.
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Version of the package carrying vmlinuz.
    pub version: String,
    /// Package layout.
    pub layout: Layout,
    /// Whether vmlinuz comes from a signed package (no unsigned one exists).
    pub signed: bool,
    /// Package carrying vmlinuz.
    pub vmlinuz: String,
    /// Package carrying the config, if in the archive.
    pub config: Option<String>,
    /// Package carrying the modules, if in the archive.
    pub modules: Option<String>,
    /// Package carrying `Module.symvers` (`linux-headers-<rel>`), if in the
    /// archive.
    pub symvers: Option<String>,
    /// Packages the kernel's packages depend on (or the layout expects)
    /// that are gone from the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Total download size of the kernel's packages (bytes).
    pub download_size: u64,
}

fn default_arch() -> String {
    Arch::X86_64.debian().to_string()
}

pub use kmlink_debian::release::{parse_release, ReleaseParts};

/// What a package is to a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `linux-image-<rel>` (signed image, or Debian 6.19+ meta package).
    Image,
    /// `linux-image-<rel>-unsigned` (Debian), `linux-image-unsigned-<rel>`
    /// (Ubuntu).
    ImageUnsigned,
    /// `linux-binary-<rel>` (Debian 6.19+: vmlinuz).
    Binary,
    /// `linux-modules-<rel>`.
    Modules,
    /// `linux-base-<rel>` (Debian 6.19+: config, System.map).
    Base,
    /// `linux-headers-<rel>` (Module.symvers).
    Headers,
}

impl Role {
    /// A short name (`image`, `image-unsigned`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Image => "image",
            Role::ImageUnsigned => "image-unsigned",
            Role::Binary => "binary",
            Role::Modules => "modules",
            Role::Base => "base",
            Role::Headers => "headers",
        }
    }

    fn name(self, distro: Distro, rel: &str) -> String {
        match (self, distro) {
            (Role::Image, _) => format!("linux-image-{rel}"),
            (Role::ImageUnsigned, Distro::Debian) => format!("linux-image-{rel}-unsigned"),
            (Role::ImageUnsigned, Distro::Ubuntu) => format!("linux-image-unsigned-{rel}"),
            (Role::Binary, _) => format!("linux-binary-{rel}"),
            (Role::Modules, _) => format!("linux-modules-{rel}"),
            (Role::Base, _) => format!("linux-base-{rel}"),
            (Role::Headers, _) => format!("linux-headers-{rel}"),
        }
    }
}

/// The kernel release and role of a package name, if it is one of a
/// kernel's packages (debug, meta and `-common` packages are not).
pub fn classify(distro: Distro, package: &str) -> Option<(String, Role)> {
    if package.ends_with("-dbg") || package.ends_with("-dbgsym") {
        return None;
    }
    let (rel, role) = if let Some(r) = package.strip_prefix("linux-image-unsigned-") {
        if distro != Distro::Ubuntu {
            return None;
        }
        (r, Role::ImageUnsigned)
    } else if let Some(r) = package.strip_prefix("linux-image-") {
        match r.strip_suffix("-unsigned") {
            Some(r) if distro == Distro::Debian => (r, Role::ImageUnsigned),
            _ => (r, Role::Image),
        }
    } else if let Some(r) = package.strip_prefix("linux-binary-") {
        (r, Role::Binary)
    } else if let Some(r) = package.strip_prefix("linux-modules-") {
        (r, Role::Modules)
    } else if let Some(r) = package.strip_prefix("linux-base-") {
        (r, Role::Base)
    } else if let Some(r) = package.strip_prefix("linux-headers-") {
        (r, Role::Headers)
    } else {
        return None;
    };
    let parts = parse_release(rel)?;
    if parts.flavour == "common" || parts.flavour.starts_with("common-") {
        return None;
    }
    Some((rel.to_owned(), role))
}

/// Whether `package` could be a kernel package at all (the pre-filter used
/// on big indexes).
pub fn is_kernel_package_name(package: &str) -> bool {
    package.starts_with("linux-image-")
        || package.starts_with("linux-binary-")
        || package.starts_with("linux-modules-")
        || package.starts_with("linux-base-")
        || package.starts_with("linux-headers-")
}

/// Whether a `Depends` field names package `name` (any version, any
/// alternative).
fn depends_on(depends: &str, name: &str) -> bool {
    depends.split([',', '|']).any(|d| {
        d.split_whitespace()
            .next()
            .is_some_and(|p| p.split(':').next() == Some(name))
    })
}

/// Assemble the kernels of one suite's index.
///
/// `archive` is `"archive"` or `"security"` (the mirror kind serving the
/// suite; `"local"` for ingested packages). When a package name appears
/// several times, the newest version is used. Kernels come out sorted by
/// release (version order).
pub fn kernels_in_index(
    distro: Distro,
    suite: &str,
    archive: &str,
    entries: &[PackageEntry],
) -> Vec<(PinnedKernel, KernelInfo)> {
    // release -> role -> newest entry
    let mut by_rel: BTreeMap<String, HashMap<Role, &PackageEntry>> = BTreeMap::new();
    for e in entries {
        let Some((rel, role)) = classify(distro, &e.package) else {
            continue;
        };
        let slot = by_rel.entry(rel).or_default().entry(role).or_insert(e);
        if version::compare(&e.version, &slot.version).is_gt() {
            *slot = e;
        }
    }
    let mut out = Vec::new();
    for (rel, roles) in &by_rel {
        if let Some(k) = assemble(distro, suite, archive, rel, roles) {
            out.push(k);
        }
    }
    out.sort_by(|a, b| release_order(&a.1.release, &b.1.release));
    out
}

pub use kmlink_debian::release::order as release_order;

fn assemble(
    distro: Distro,
    suite: &str,
    archive: &str,
    rel: &str,
    roles: &HashMap<Role, &PackageEntry>,
) -> Option<(PinnedKernel, KernelInfo)> {
    let get = |r: Role| roles.get(&r).copied();
    let image = get(Role::Image);
    let unsigned = get(Role::ImageUnsigned);
    let binary = get(Role::Binary);
    let headers = get(Role::Headers);
    let mut missing = Vec::new();
    let mut packages: Vec<&PackageEntry> = Vec::new();
    // The signed image carries the same vmlinuz, config and modules as the
    // preferred unsigned one: fetched instead when the archive has lost the
    // unsigned package's file (seen on bullseye-security).
    let mut fallbacks: Vec<&PackageEntry> = Vec::new();
    let (layout, vmlinuz, config, modules, signed);
    match distro {
        Distro::Debian => {
            let name_of = |r: Role| r.name(distro, rel);
            let meta = image.is_some_and(|i| depends_on(&i.depends, &name_of(Role::Binary)));
            if meta || (image.is_none() && unsigned.is_none() && binary.is_some()) {
                // 6.19+: follow the meta package's Depends.
                layout = Layout::Split;
                let Some(bin) = binary else {
                    log::warn!(
                        "{suite}: {rel}: linux-image-{rel} names {} which is not in the index; skipped",
                        name_of(Role::Binary)
                    );
                    return None;
                };
                vmlinuz = bin;
                signed = true;
                packages.push(bin);
                modules = get(Role::Modules);
                config = get(Role::Base);
                for (role, e) in [(Role::Modules, modules), (Role::Base, config)] {
                    match e {
                        Some(e) => packages.push(e),
                        None => missing.push(name_of(role)),
                    }
                }
            } else {
                layout = Layout::Image;
                let main = unsigned.or(image)?;
                signed = unsigned.is_none();
                vmlinuz = main;
                modules = Some(main);
                packages.push(main);
                if let (Some(_), Some(i)) = (unsigned, image) {
                    fallbacks.push(i);
                }
                let base_name = name_of(Role::Base);
                if depends_on(&main.depends, &base_name)
                    || image.is_some_and(|i| depends_on(&i.depends, &base_name))
                {
                    // 6.18: the image names a linux-base-<rel> for its config.
                    config = get(Role::Base);
                    match config {
                        Some(b) => packages.push(b),
                        None => missing.push(base_name),
                    }
                } else {
                    config = Some(main);
                }
            }
        }
        Distro::Ubuntu => {
            layout = Layout::Ubuntu;
            let main = unsigned.or(image)?;
            signed = unsigned.is_none();
            vmlinuz = main;
            packages.push(main);
            if let (Some(_), Some(i)) = (unsigned, image) {
                fallbacks.push(i);
            }
            modules = get(Role::Modules);
            config = modules;
            match modules {
                Some(m) => packages.push(m),
                None => missing.push(Role::Modules.name(distro, rel)),
            }
        }
    }
    if let Some(h) = headers {
        packages.push(h);
    }
    let flavour = parse_release(rel)?.flavour.to_owned();
    // Debian names the architecture in the flavour; Ubuntu (fixtures only)
    // is amd64.
    let arch = release_arch(rel)
        .unwrap_or(Arch::X86_64)
        .debian()
        .to_owned();
    let info = KernelInfo {
        release: rel.to_owned(),
        distro,
        suite: suite.to_owned(),
        archive: archive.to_owned(),
        also_in: Vec::new(),
        flavour,
        arch,
        version: vmlinuz.version.clone(),
        layout,
        signed,
        vmlinuz: vmlinuz.package.clone(),
        config: config.map(|e| e.package.clone()),
        modules: modules.map(|e| e.package.clone()),
        symvers: headers.map(|e| e.package.clone()),
        missing,
        download_size: packages.iter().map(|e| e.size).sum(),
    };
    let pinned = PinnedKernel {
        release: rel.to_owned(),
        suite: suite.to_owned(),
        archive: archive.to_owned(),
        packages: packages.into_iter().cloned().collect(),
        fallbacks: fallbacks.into_iter().cloned().collect(),
    };
    Some((pinned, info))
}

/// Merge the kernels of several suites: one per release. The newest build
/// (version of the vmlinuz package) wins; on a tie the one with more parts
/// (symvers, modules, config) wins, then the earlier suite. The others are
/// named in [`KernelInfo::also_in`]. Output sorted by release.
pub fn merge(kernels: Vec<(PinnedKernel, KernelInfo)>) -> Vec<(PinnedKernel, KernelInfo)> {
    let mut by_rel: BTreeMap<String, Vec<(PinnedKernel, KernelInfo)>> = BTreeMap::new();
    for k in kernels {
        by_rel.entry(k.1.release.clone()).or_default().push(k);
    }
    let mut out = Vec::new();
    for (_, mut group) in by_rel {
        let score = |i: &KernelInfo| {
            usize::from(i.symvers.is_some())
                + usize::from(i.modules.is_some())
                + usize::from(i.config.is_some())
        };
        let mut best = 0;
        for (i, k) in group.iter().enumerate().skip(1) {
            let b = &group[best].1;
            let ord = version::compare(&k.1.version, &b.version)
                .then_with(|| score(&k.1).cmp(&score(b)))
                .then_with(|| b.signed.cmp(&k.1.signed));
            if ord.is_gt() {
                best = i;
            }
        }
        let mut chosen = group.swap_remove(best);
        for (_, other) in group {
            if !chosen.1.also_in.contains(&other.suite) && other.suite != chosen.1.suite {
                chosen.1.also_in.push(other.suite);
            }
        }
        out.push(chosen);
    }
    out.sort_by(|a, b| release_order(&a.1.release, &b.1.release));
    out
}

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
                    &is_kernel_package_name,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn architectures_of_releases() {
        let a = |r: &str| release_arch(r).map(Arch::debian);
        assert_eq!(a("6.1.0-47-amd64"), Some("amd64"));
        assert_eq!(a("6.12.107+deb13-cloud-amd64"), Some("amd64"));
        assert_eq!(a("6.12.90+deb12.1-rt-amd64"), Some("amd64"));
        assert_eq!(a("6.1.0-47-arm64"), Some("arm64"));
        assert_eq!(a("6.12.57+deb13-cloud-arm64"), Some("arm64"));
        assert_eq!(a("6.12.57+deb13-rt-arm64"), Some("arm64"));
        assert_eq!(a("6.12.57+deb13-arm64-16k"), Some("arm64"));
        assert_eq!(a("6.8.0-45-generic"), None);
        assert_eq!(a("6.1.0-47-armmp"), None);
        assert_eq!(Distro::guess("6.12.57+deb13-arm64-16k"), Distro::Debian);
        assert_eq!(Distro::guess("6.8.0-45-generic"), Distro::Ubuntu);
    }

    #[test]
    fn classification() {
        let d = Distro::Debian;
        let c = |n| classify(d, n).map(|(r, k)| (r, k.as_str()));
        assert_eq!(
            c("linux-image-6.1.0-47-amd64-unsigned"),
            Some(("6.1.0-47-amd64".into(), "image-unsigned"))
        );
        assert_eq!(
            c("linux-image-6.1.0-47-amd64"),
            Some(("6.1.0-47-amd64".into(), "image"))
        );
        assert_eq!(c("linux-image-6.1.0-47-amd64-dbg"), None);
        assert_eq!(c("linux-image-amd64"), None);
        assert_eq!(c("linux-image-6.12-amd64"), None);
        assert_eq!(c("linux-image-6.12-amd64-signed-template"), None);
        assert_eq!(c("linux-headers-6.1.0-47-common"), None);
        assert_eq!(c("linux-headers-6.1.0-47-common-rt"), None);
        assert_eq!(c("linux-headers-6.12.107+deb13-common"), None);
        assert_eq!(
            c("linux-binary-7.3.4+deb13-rt-amd64"),
            Some(("7.3.4+deb13-rt-amd64".into(), "binary"))
        );
        assert_eq!(
            c("linux-base-7.3.4+deb13-amd64"),
            Some(("7.3.4+deb13-amd64".into(), "base"))
        );
        let u = |n| classify(Distro::Ubuntu, n).map(|(r, k)| (r, k.as_str()));
        assert_eq!(
            u("linux-image-unsigned-6.8.0-49-generic"),
            Some(("6.8.0-49-generic".into(), "image-unsigned"))
        );
        assert_eq!(
            u("linux-modules-6.8.0-49-generic"),
            Some(("6.8.0-49-generic".into(), "modules"))
        );
        assert_eq!(u("linux-modules-extra-6.8.0-49-generic"), None);
        assert_eq!(u("linux-headers-6.8.0-49"), None);
        assert_eq!(u("linux-image-generic"), None);
        assert_eq!(u("linux-image-generic-hwe-22.04"), None);
    }

    #[test]
    fn depends_parsing() {
        let d = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, kmod, linux-base-6.19.6+deb13-amd64 (= 6.19.6-2~bpo13+1), linux-binary-6.19.6+deb13-amd64 (= 6.19.6-2~bpo13+1)";
        assert!(depends_on(d, "linux-binary-6.19.6+deb13-amd64"));
        assert!(depends_on(d, "kmod"));
        assert!(!depends_on(d, "linux-binary-6.19.6+deb13-rt-amd64"));
        assert!(!depends_on("", "x"));
    }
}
