//! What a kernel is: its distribution, release string, architecture and
//! the roles of its packages, read from package names alone.

use crate::release::{DEBIAN_KEYRING, UBUNTU_KEYRING};

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

/// The architecture a Debian kernel release is built for, from its flavour
/// ([`Arch::of_release`], the one rule, which the linker asks too):
/// `amd64`, `cloud-amd64`, `rt-amd64`; `arm64`, `cloud-arm64`, `rt-arm64`,
/// `arm64-16k` (16 KiB pages). `None` for other releases (Ubuntu's
/// `generic`, ...).
pub fn release_arch(release: &str) -> Option<Arch> {
    Arch::of_release(release)
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

    pub(super) fn name(self, distro: Distro, rel: &str) -> String {
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

pub use kmlink_debian::release::order as release_order;

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
}
