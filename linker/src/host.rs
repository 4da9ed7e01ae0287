//! Facts read off a running host: its identity, its BTF, its kernel image's
//! export table, its config — and, for a kernel no database has seen, a
//! whole [`KernelRecord`] built from them and a donor module, with the
//! source of every fact in `provenance`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use kmlink_core_module::Manifest;
use kmlink_donor::arm64_image::{self, Arm64Image};
use kmlink_donor::btf::Btf;
use kmlink_donor::config::KernelConfig;
use kmlink_donor::vmlinux::Vmlinux;
use kmlink_metadata_db::extract;
use kmlink_metadata_db::record::{
    self, Identity, KernelFacts, KernelRecord, LoaderFacts, ThisModuleLayout,
};
use sha2::{Digest, Sha256};

use crate::donor::Donor;

/// The running kernel's BTF.
pub const LIVE_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why host facts could not be had. Each says what is missing and how to
/// get it.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file could not be read.
    #[error("reading {path}{hint}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },
    /// A kernel artifact is malformed.
    #[error("{what}")]
    Donor {
        /// What was being read.
        what: String,
        /// Cause.
        #[source]
        source: kmlink_donor::Error,
    },
    /// A needed fact is not available on this host.
    #[error("{what}; {how}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to get it.
        how: String,
    },
    /// Two host sources disagree.
    #[error("{0}")]
    Disagree(String),
    /// Reading facts out of the live BTF failed.
    #[error("reading the layouts, prototypes and functions of {path}")]
    Extract {
        /// The BTF file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<kmlink_metadata_db::extract::ExtractError>,
    },
}

fn io(path: &Path, hint: &str) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.to_path_buf();
    let hint = hint.to_string();
    move |source| HostError::Io { path, source, hint }
}

/// Who the running kernel is: `uname -r` and `uname -v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// `/proc/sys/kernel/osrelease`.
    pub release: String,
    /// `/proc/sys/kernel/version` (the build string, `#1 SMP … (date)`).
    pub build_string: String,
}

impl HostIdentity {
    /// Reads the running kernel's identity under `root` (`/` normally).
    pub fn read(root: &Path) -> Result<Self, HostError> {
        let get = |name: &str| -> Result<String, HostError> {
            let p = root.join("proc/sys/kernel").join(name);
            kmlink_fsio::read_bounded(&p, 4096, "/proc/sys/kernel entry")
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\n')
                        .to_string()
                })
                .map_err(io(&p, " (is /proc mounted?)"))
        };
        Ok(HostIdentity {
            release: get("osrelease")?,
            build_string: get("version")?,
        })
    }
}

/// The running release (`uname -r`), if `/proc` says.
pub fn running_release() -> Option<String> {
    HostIdentity::read(Path::new("/")).ok().map(|h| h.release)
}

/// A kernel's BTF from a file (`/sys/kernel/btf/vmlinux` or `--btf`).
#[derive(Debug, Clone)]
pub struct LiveBtf {
    /// Where it was read.
    pub path: PathBuf,
    /// SHA256 (hex) of the file: the record's `btf_sha256` if it is the same build.
    pub sha256: String,
    /// The parsed types.
    pub btf: Btf,
}

impl LiveBtf {
    /// Reads a kernel's BTF: a raw BTF file (`/sys/kernel/btf/vmlinux`), a
    /// vmlinux ELF (its `.BTF`), or a bzImage (the vmlinux inside it). Only
    /// a missing [`LIVE_BTF`] is blamed on the kernel's configuration; any
    /// other file is the caller's.
    pub fn read(path: &Path) -> Result<Self, HostError> {
        let hint = if path == Path::new(LIVE_BTF) {
            " (the running kernel publishes its BTF there only when built with CONFIG_DEBUG_INFO_BTF=y)"
        } else {
            ""
        };
        let data = kmlink_fsio::read_bounded(
            path,
            kmlink_donor::MAX_DECOMPRESSED,
            "kernel's BTF, vmlinux or bzImage",
        )
        .map_err(io(path, hint))?;
        let donor = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| HostError::Donor { what, source }
        };
        if data.starts_with(b"\x7fELF") {
            let v = Vmlinux::parse(&data).map_err(donor("vmlinux"))?;
            let btf = v.btf_section().ok_or_else(|| HostError::Missing {
                what: format!("{} has no .BTF section", path.display()),
                how: "the kernel was built without CONFIG_DEBUG_INFO_BTF".into(),
            })?;
            return Self::from_bytes(path, btf);
        }
        if data.get(0x202..0x206) == Some(b"HdrS".as_slice()) {
            let elf = kmlink_donor::bzimage::extract_vmlinux(&data).map_err(donor("bzImage"))?;
            let v = Vmlinux::parse(&elf).map_err(donor("vmlinux in"))?;
            let btf = v.btf_section().ok_or_else(|| HostError::Missing {
                what: format!("the vmlinux in {} has no .BTF section", path.display()),
                how: "the kernel was built without CONFIG_DEBUG_INFO_BTF".into(),
            })?;
            return Self::from_bytes(path, btf);
        }
        Self::from_bytes(path, &data)
    }

    /// Parses BTF bytes read from `path`.
    pub fn from_bytes(path: &Path, data: &[u8]) -> Result<Self, HostError> {
        let btf = Btf::parse(data).map_err(|source| HostError::Donor {
            what: path.display().to_string(),
            source,
        })?;
        Ok(LiveBtf {
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(data)),
            btf,
        })
    }
}

/// The export table (and identity) of a kernel image on the host.
#[derive(Debug, Clone)]
pub struct ImageExports {
    /// The bzImage.
    pub path: PathBuf,
    /// Its `uname -v` build string, from `linux_banner`.
    pub build_string: String,
    /// Its release, from `linux_banner`.
    pub release: String,
    /// SHA256 (hex) of its `.BTF` section (empty if it has none).
    pub btf_sha256: String,
    /// Its exports by name.
    pub exports: BTreeMap<String, kmlink_donor::Export>,
}

impl ImageExports {
    /// Decompresses a bzImage (or takes a raw arm64 Image as it is) and
    /// reads its banner, BTF hash and export table.
    pub fn read(path: &Path) -> Result<Self, HostError> {
        let bz = kmlink_fsio::read_bounded(path, kmlink_donor::MAX_DECOMPRESSED, "kernel image")
            .map_err(io(path, ""))?;
        if arm64_image::is_arm64_image(&bz) {
            let img = arm64_image(path, &bz)?;
            return Self::from_arm64(path, &img, img.btf().ok());
        }
        let elf =
            kmlink_donor::bzimage::extract_vmlinux(&bz).map_err(|source| HostError::Donor {
                what: path.display().to_string(),
                source,
            })?;
        let v = Vmlinux::parse(&elf).map_err(|source| HostError::Donor {
            what: format!("vmlinux in {}", path.display()),
            source,
        })?;
        Self::from_vmlinux(path, &v)
    }

    /// The banner, BTF hash and export table of a parsed vmlinux read from
    /// `path` (a bzImage or the vmlinux itself).
    pub fn from_vmlinux(path: &Path, v: &Vmlinux<'_>) -> Result<Self, HostError> {
        Self::from_image(
            path,
            "a Linux bzImage",
            v.banner(),
            || v.release(),
            v.btf_section(),
            || v.exports(),
        )
    }

    /// The banner, BTF hash and export table of a raw arm64 Image read
    /// from `path`; `btf` is its `.BTF` blob (found by content once, by the
    /// caller).
    pub fn from_arm64(
        path: &Path,
        img: &Arm64Image<'_>,
        btf: Option<&[u8]>,
    ) -> Result<Self, HostError> {
        Self::from_image(
            path,
            "a Linux arm64 Image",
            img.banner(),
            || img.release(),
            btf,
            || img.exports(),
        )
    }

    /// What either kind of image gives, with `path` (a `kind`) in errors.
    fn from_image(
        path: &Path,
        kind: &str,
        banner: Result<String, kmlink_donor::Error>,
        release: impl FnOnce() -> Result<String, kmlink_donor::Error>,
        btf: Option<&[u8]>,
        exports: impl FnOnce() -> Result<Vec<kmlink_donor::Export>, kmlink_donor::Error>,
    ) -> Result<Self, HostError> {
        let donor = |what: String| {
            move |source| HostError::Donor {
                what: what.clone(),
                source,
            }
        };
        let banner = banner.map_err(donor(format!("linux_banner in {}", path.display())))?;
        let build_string = extract::build_string(&banner).ok_or_else(|| HostError::Missing {
            what: format!("no build string in the banner of {}", path.display()),
            how: format!("is it {kind}?"),
        })?;
        let release = release().map_err(donor(format!("release in {}", path.display())))?;
        let btf_sha256 = btf
            .map(|b| hex::encode(Sha256::digest(b)))
            .unwrap_or_default();
        let exports = exports()
            .map_err(donor(format!("export tables of {}", path.display())))?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        Ok(ImageExports {
            path: path.to_path_buf(),
            build_string,
            release,
            btf_sha256,
            exports,
        })
    }
}

fn arm64_image<'a>(path: &Path, data: &'a [u8]) -> Result<Arm64Image<'a>, HostError> {
    Arm64Image::parse(data).map_err(|source| HostError::Donor {
        what: format!("arm64 Image {}", path.display()),
        source,
    })
}

/// What `--btf PATH` gives: the kernel's BTF and, when `PATH` is a kernel
/// image (a bzImage, a vmlinux ELF or a raw arm64 Image) rather than raw
/// BTF, that image's export table too, so that a cross-build checks the
/// record's exports and CRCs against the kernel itself. The image is
/// decompressed once.
pub fn read_btf_source(path: &Path) -> Result<(LiveBtf, Option<ImageExports>), HostError> {
    if path == Path::new(LIVE_BTF) {
        return Ok((LiveBtf::read(path)?, None));
    }
    let data = kmlink_fsio::read_bounded(
        path,
        kmlink_donor::MAX_DECOMPRESSED,
        "kernel's BTF, vmlinux or bzImage",
    )
    .map_err(io(path, ""))?;
    if arm64_image::is_arm64_image(&data) {
        let img = arm64_image(path, &data)?;
        let btf = img.btf().map_err(|source| HostError::Donor {
            what: format!(".BTF in {}", path.display()),
            source,
        })?;
        let image = ImageExports::from_arm64(path, &img, Some(btf))?;
        return Ok((LiveBtf::from_bytes(path, btf)?, Some(image)));
    }
    let elf = if data.get(0x202..0x206) == Some(b"HdrS".as_slice()) {
        kmlink_donor::bzimage::extract_vmlinux(&data).map_err(|source| HostError::Donor {
            what: format!("bzImage {}", path.display()),
            source,
        })?
    } else if data.starts_with(b"\x7fELF") {
        data
    } else {
        return Ok((LiveBtf::from_bytes(path, &data)?, None));
    };
    let v = Vmlinux::parse(&elf).map_err(|source| HostError::Donor {
        what: format!("vmlinux {}", path.display()),
        source,
    })?;
    let btf = v.btf_section().ok_or_else(|| HostError::Missing {
        what: format!("{} has no .BTF section", path.display()),
        how: "the kernel was built without CONFIG_DEBUG_INFO_BTF".into(),
    })?;
    let btf = LiveBtf::from_bytes(path, btf)?;
    let image = ImageExports::from_vmlinux(path, &v)?;
    Ok((btf, Some(image)))
}

/// Where a host keeps the image of `release`.
pub fn image_candidates(root: &Path, release: &str) -> Vec<PathBuf> {
    vec![
        root.join("boot").join(format!("vmlinuz-{release}")),
        root.join("usr/lib/modules").join(release).join("vmlinuz"),
        root.join("lib/modules").join(release).join("vmlinuz"),
    ]
}

/// The first existing image of `release`.
pub fn find_image(root: &Path, release: &str) -> Option<PathBuf> {
    image_candidates(root, release)
        .into_iter()
        .find(|p| p.is_file())
}

/// A kernel config and where it came from.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Its file.
    pub path: PathBuf,
    /// The settings.
    pub config: KernelConfig,
}

/// The largest kernel config read (a distribution kernel's is ~300 KiB).
const MAX_CONFIG: u64 = 16 << 20;

/// The running kernel's config: `/proc/config.gz`, else
/// `/boot/config-<release>` (or beside the modules), if any.
pub fn read_config(root: &Path, release: &str) -> Option<HostConfig> {
    let proc_gz = root.join("proc/config.gz");
    if let Ok(f) = std::fs::File::open(&proc_gz) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .take(MAX_CONFIG)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(HostConfig {
                path: proc_gz,
                config: KernelConfig::parse(&text),
            });
        }
    }
    for p in [
        root.join("boot").join(format!("config-{release}")),
        root.join("usr/lib/modules").join(release).join("config"),
        root.join("lib/modules").join(release).join("config"),
    ] {
        if let Ok(text) = kmlink_fsio::read_bounded(&p, MAX_CONFIG, "kernel config")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        {
            return Some(HostConfig {
                path: p,
                config: KernelConfig::parse(&text),
            });
        }
    }
    None
}

/// The flavour part of a release (`6.1.0-47-amd64` → `amd64`); a release
/// that is not Debian's or Ubuntu's shape gives its last `-` part.
fn flavour_of(release: &str) -> String {
    match kmlink_debian::release::parse_release(release) {
        Some(p) => p.flavour.to_string(),
        None => release.rsplit('-').next().unwrap_or(release).to_string(),
    }
}

/// Everything [`host_record`] builds a record from.
#[derive(Debug, Clone, Copy)]
pub struct HostSources<'a> {
    /// The running kernel.
    pub identity: &'a HostIdentity,
    /// Its BTF.
    pub btf: &'a LiveBtf,
    /// Its image's export table.
    pub image: &'a ImageExports,
    /// A module of it.
    pub donor: &'a Donor,
    /// Its config, if found.
    pub config: Option<&'a HostConfig>,
}

/// Builds a record for the running kernel from the host alone: CRCs and
/// exports from its image, layouts and prototypes from its BTF, the
/// `struct module` layout from BTF checked against the donor, vermagic from
/// the donor. Refuses when the sources describe different builds.
pub fn host_record(manifest: &Manifest, s: &HostSources<'_>) -> Result<KernelRecord, HostError> {
    let release = &s.identity.release;
    let img = s.image;
    if img.release != *release || img.build_string != s.identity.build_string {
        return Err(HostError::Disagree(format!(
            "{} is {} {:?}, the running kernel is {} {:?}: the image on disk is not the running kernel \
             (reboot into it, or reinstall the image of the running kernel)",
            img.path.display(),
            img.release,
            img.build_string,
            release,
            s.identity.build_string
        )));
    }
    if !img.btf_sha256.is_empty() && img.btf_sha256 != s.btf.sha256 {
        return Err(HostError::Disagree(format!(
            "the BTF in {} ({}) differs from {} ({}): the image on disk is not the running kernel",
            img.path.display(),
            &img.btf_sha256[..16],
            s.btf.path.display(),
            &s.btf.sha256[..16.min(s.btf.sha256.len())]
        )));
    }
    let d = s.donor;
    let vermagic = d.facts.vermagic.clone().ok_or_else(|| HostError::Missing {
        what: format!("donor {} has no vermagic", d.path.display()),
        how: "pass another module of this kernel with --donor".into(),
    })?;
    if !vermagic.starts_with(&format!("{release} ")) {
        return Err(HostError::Disagree(format!(
            "donor {} is from another kernel: its vermagic is {vermagic:?}, the running kernel is {release}",
            d.path.display()
        )));
    }
    let mut provenance = BTreeMap::new();
    let donor_path = d.path.display().to_string();

    // Conventions: the config when there is one, checked against the donor.
    let cfg = s.config.map(|c| &c.config);
    let conventions = extract::module_conventions(cfg, &d.facts).map_err(|m| {
        HostError::Disagree(format!(
            "config says MODVERSIONS={}, donor {donor_path} {} __versions",
            m.config,
            if m.module { "has" } else { "has no" }
        ))
    })?;
    let modversions = conventions.modversions;
    provenance.insert(
        "conventions".to_string(),
        match s.config {
            Some(c) => format!("{}, checked against {donor_path}", c.path.display()),
            None => format!("{donor_path} (no kernel config found)"),
        },
    );

    // Exports and CRCs from the image.
    if modversions && img.exports.values().all(|e| e.crc.is_none()) {
        return Err(HostError::Missing {
            what: format!(
                "the kernel checks symbol versions but {} has no CRC table",
                img.path.display()
            ),
            how: "install the kernel's headers (Module.symvers) or get a record from a kmlink database (kmlink bundle install)".into(),
        });
    }
    let exports = record::exports_of(img.exports.values().cloned());
    provenance.insert(
        "exports".into(),
        format!("{} __ksymtab/__kcrctab", img.path.display()),
    );
    provenance.insert("vermagic".into(), donor_path.clone());

    // struct module: BTF checked against what the donor shows.
    let (this_module, shown) = this_module_layout(s.btf, d)?;
    provenance.insert(
        "this_module".into(),
        format!(
            "{}, checked against {donor_path} ({shown})",
            s.btf.path.display()
        ),
    );

    // Layouts, prototypes, functions from BTF, read as the record
    // extractor reads them.
    let core = kmlink_metadata_db::extract::btf_facts(&s.identity.release, &s.btf.btf, manifest)
        .map_err(|source| HostError::Extract {
            path: s.btf.path.clone(),
            source: Box::new(source),
        })?;
    provenance.insert("layouts".into(), s.btf.path.display().to_string());
    provenance.insert(
        "identity".into(),
        format!(
            "/proc/sys/kernel/{{osrelease,version}}, sha256 of {}",
            s.btf.path.display()
        ),
    );

    let config = cfg.map(extract::config_facts).unwrap_or_default();

    Ok(KernelRecord::assemble(
        Identity {
            release: release.clone(),
            distro: "host".into(),
            suite: String::new(),
            flavour: flavour_of(release),
            // The machine name of the architecture kmlink links for here
            // (the host's own name where kmlink has no such architecture).
            arch: kmlink_core_module::Arch::host()
                .map_or(std::env::consts::ARCH, |a| a.machine())
                .into(),
            build_string: s.identity.build_string.clone(),
            btf_sha256: s.btf.sha256.clone(),
            packages: Vec::new(),
        },
        KernelFacts {
            loader: LoaderFacts {
                vermagic,
                conventions,
                this_module,
            },
            config,
            exports,
            core,
            provenance,
        },
    ))
}

/// `struct module` from BTF ([`kmlink_metadata_db::this_module::from_btf`]),
/// held to the donor ([`kmlink_metadata_db::this_module::compare`]): its
/// section size always, the `init`/`exit` relocation offsets and the name
/// offset when it has them (library modules have no init or exit).
/// Returns the layout and what the donor confirmed.
pub fn this_module_layout(
    btf: &LiveBtf,
    donor: &Donor,
) -> Result<(ThisModuleLayout, String), HostError> {
    use kmlink_metadata_db::this_module::{self, BtfLayoutError};
    let src = btf.path.display().to_string();
    let layout = this_module::from_btf(&btf.btf).map_err(|e| match e {
        BtfLayoutError::Missing(what) => HostError::Missing {
            what: format!("{src}: {what}"),
            how: "the kernel's BTF lacks struct module; a record from a kmlink database is needed"
                .into(),
        },
        BtfLayoutError::Btf(source) => HostError::Donor {
            what: format!("{src} struct module"),
            source,
        },
    })?;
    let compared = this_module::compare(&layout, &donor.facts);
    if let Some(m) = compared.mismatches.first() {
        return Err(HostError::Disagree(format!(
            "struct module: {} (the donor or the BTF is not the running kernel's; pick another donor with --donor, or report this kernel)",
            m.describe(&src, &donor.path.display().to_string())
        )));
    }
    Ok((
        layout,
        format!("donor confirms {}", compared.confirmed.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_config_under_a_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).expect("mkdir");
        std::fs::create_dir_all(root.join("boot")).expect("mkdir");
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-47-amd64\n").expect("w");
        std::fs::write(
            root.join("proc/sys/kernel/version"),
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)\n",
        )
        .expect("w");
        let h = HostIdentity::read(root).expect("identity");
        assert_eq!(h.release, "6.1.0-47-amd64");
        assert_eq!(
            h.build_string,
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)"
        );
        assert!(read_config(root, "6.1.0-47-amd64").is_none());
        std::fs::write(
            root.join("boot/config-6.1.0-47-amd64"),
            "CONFIG_MODULES=y\n# CONFIG_MODULE_SIG_FORCE is not set\n",
        )
        .expect("w");
        let c = read_config(root, "6.1.0-47-amd64").expect("config");
        assert!(c.config.enabled("CONFIG_MODULES"));
        assert_eq!(c.config.get("CONFIG_MODULE_SIG_FORCE"), Some("n"));
        assert_eq!(flavour_of("6.1.0-47-rt-amd64"), "rt-amd64");
        assert_eq!(flavour_of("7.3.4+deb13-amd64"), "amd64");
        assert!(find_image(root, "6.1.0-47-amd64").is_none());
        let e = HostIdentity::read(&root.join("nope")).expect_err("missing");
        assert!(e.to_string().contains("osrelease"), "{e}");
    }
}
