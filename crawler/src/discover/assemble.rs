//! Assembling one suite's packages into kernels (by name and `Depends`)
//! and merging the kernels of several suites.

use std::collections::{BTreeMap, HashMap};

use super::identity::{classify, parse_release, release_arch, release_order, Arch, Distro, Role};
use crate::index::PackageEntry;
use crate::kernel_tree::PinnedKernel;
use crate::version;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn depends_parsing() {
        let d = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, kmod, linux-base-6.19.6+deb13-amd64 (= 6.19.6-2~bpo13+1), linux-binary-6.19.6+deb13-amd64 (= 6.19.6-2~bpo13+1)";
        assert!(depends_on(d, "linux-binary-6.19.6+deb13-amd64"));
        assert!(depends_on(d, "kmod"));
        assert!(!depends_on(d, "linux-binary-6.19.6+deb13-rt-amd64"));
        assert!(!depends_on("", "x"));
    }
}
