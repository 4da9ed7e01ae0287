//! Building a [`KernelRecord`] from one kernel's own artifacts: its bzImage
//! (BTF, export tables, banner), its config, a stock module (vermagic,
//! `struct module` section), and Module.symvers when the archive still has it.
//! Every fact with two sources is cross-checked; disagreement is an
//! extraction error, never a record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kmlink_core_module::Manifest;
use kmlink_donor::{btf::Btf, config::KernelConfig, ko, symvers, vmlinux::Vmlinux};
use sha2::{Digest, Sha256};

use crate::record::{
    CoreFacts, Export, Identity, KernelFacts, KernelRecord, LoaderFacts, ModuleConventions,
    PackageRef, ThisModuleLayout,
};

/// Allocation entry points whose presence the record notes (names changed
/// across versions: `*_noprof` from 6.10, `__kmalloc_cache_noprof` from 6.11).
pub const ALLOC_FUNCTIONS: &[&str] = &[
    "__kmalloc",
    "__kmalloc_noprof",
    "kmalloc_trace",
    "kmalloc_trace_noprof",
    "__kmalloc_cache_noprof",
    "kmalloc_large",
    "kmalloc_large_noprof",
    "kmalloc_large_node",
    "kmalloc_large_node_noprof",
    "__kmalloc_node",
    "__kmalloc_node_noprof",
    "__kmalloc_cache_node_noprof",
    "kmalloc_node_trace",
    "kmem_cache_alloc",
    "kmem_cache_alloc_noprof",
    "kmem_cache_alloc_lru",
    "kmem_cache_alloc_lru_noprof",
    "kmem_cache_alloc_node",
    "kmem_cache_alloc_node_noprof",
    "__alloc_pages",
    "__alloc_pages_noprof",
];

/// Config options recorded because they change what a module must be.
pub const CONFIG_KEYS: &[&str] = &[
    "CONFIG_MODVERSIONS",
    "CONFIG_GENDWARFKSYMS",
    "CONFIG_EXTENDED_MODVERSIONS",
    "CONFIG_BASIC_MODVERSIONS",
    "CONFIG_MODULE_SIG",
    "CONFIG_MODULE_SIG_FORCE",
    "CONFIG_MODULE_UNLOAD",
    "CONFIG_RETPOLINE",
    "CONFIG_MITIGATION_RETPOLINE",
    "CONFIG_RETHUNK",
    "CONFIG_MITIGATION_RETHUNK",
    "CONFIG_CALL_DEPTH_TRACKING",
    "CONFIG_MITIGATION_CALL_DEPTH_TRACKING",
    "CONFIG_X86_KERNEL_IBT",
    "CONFIG_PREEMPT_RT",
    "CONFIG_PREEMPT_DYNAMIC",
    "CONFIG_SLUB",
    "CONFIG_SLAB_BUCKETS",
    "CONFIG_RANDOM_KMALLOC_CACHES",
    "CONFIG_KPROBES",
    "CONFIG_TRACEPOINTS",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_SECURITY_LOCKDOWN_LSM",
    // The page size (the monitor's page-allocation bytes are
    // PAGE_SIZE << order): every architecture from 6.9 on, arm64's own
    // before that (4K, 16K or 64K pages).
    "CONFIG_PAGE_SHIFT",
    "CONFIG_ARM64_PAGE_SHIFT",
];

/// Where a kernel's artifacts are.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `uname -r`.
    pub release: String,
    /// `debian`, `ubuntu` or `host`.
    pub distro: String,
    /// Archive suite.
    pub suite: String,
    /// Flavour.
    pub flavour: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// The kernel config, if available.
    pub config: Option<PathBuf>,
    /// `…/lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// Module.symvers, if available.
    pub symvers: Option<PathBuf>,
    /// The packages these came from.
    pub packages: Vec<PackageRef>,
}

/// Why a record could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Reading a file failed.
    #[error("{release}: reading {path}")]
    Io {
        /// Kernel release.
        release: String,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A donor reader failed.
    #[error("{release}: {what}")]
    Donor {
        /// Kernel release.
        release: String,
        /// What was being read.
        what: String,
        /// Cause.
        #[source]
        source: kmlink_donor::Error,
    },
    /// A needed fact is missing.
    #[error("{release}: {what}")]
    Missing {
        /// Kernel release.
        release: String,
        /// What is missing.
        what: String,
    },
    /// Two sources disagree.
    #[error("{0}")]
    Disagree(Box<Disagreement>),
}

/// Two sources of one fact that disagree.
#[derive(Debug, thiserror::Error)]
#[error("{release}: {what}: {a_source} says {a}, {b_source} says {b}")]
pub struct Disagreement {
    /// Kernel release.
    pub release: String,
    /// The fact.
    pub what: String,
    /// First source.
    pub a_source: String,
    /// Its value.
    pub a: String,
    /// Second source.
    pub b_source: String,
    /// Its value.
    pub b: String,
}

/// Facts read from a stock module of the kernel.
#[derive(Debug, Clone)]
pub struct StockModule {
    /// Its path.
    pub path: PathBuf,
    /// What it says.
    pub facts: ko::ModuleFacts,
}

/// Where [`find_stock_module`] looks: the first 400 modules under
/// `kernel/`, in sorted path order — the order of the packages' data
/// members, so the crawler's targeted extraction (the first few modules of
/// the modules package, `kmlink_crawler::targeted`) holds exactly the
/// modules this search tries first, and a full tree and a targeted one give
/// the same stock module.
pub const STOCK_MODULE_DIRS: &[(&str, usize)] = &[("kernel", 400)];

/// Finds a stock module under `modules_dir` that carries the facts we need
/// (vermagic, `.gnu.linkonce.this_module` with init and exit relocations),
/// searching [`STOCK_MODULE_DIRS`] in order.
pub fn find_stock_module(release: &str, modules_dir: &Path) -> Result<StockModule, ExtractError> {
    let mut tried = std::collections::BTreeSet::new();
    for (dir, limit) in STOCK_MODULE_DIRS {
        let mut candidates = Vec::new();
        collect_modules(&modules_dir.join(dir), &mut candidates, *limit);
        candidates.sort();
        for path in candidates {
            if !tried.insert(path.clone()) {
                continue;
            }
            let Ok(bytes) = ko::load(&path) else { continue };
            let Ok(facts) = ko::read(&bytes) else {
                continue;
            };
            let has = |f: &str| facts.this_module_relocs.iter().any(|(_, s)| s == f);
            if facts.vermagic.is_some()
                && facts.this_module_size.is_some()
                && has("init_module")
                && has("cleanup_module")
            {
                return Ok(StockModule { path, facts });
            }
        }
    }
    Err(ExtractError::Missing {
        release: release.into(),
        what: format!(
            "no stock module with init and exit functions under {} ({} modules looked at)",
            modules_dir.display(),
            tried.len()
        ),
    })
}

/// Whether `modules_dir` holds any module at all (`*.ko*` under `kernel/`).
pub fn has_modules(modules_dir: &Path) -> bool {
    let mut one = Vec::new();
    collect_modules(&modules_dir.join("kernel"), &mut one, 1);
    !one.is_empty()
}

/// The module loader's own `vermagic` string (`VERMAGIC_STRING`, e.g.
/// `"6.1.0-47-amd64 SMP preempt mod_unload modversions "`) found in an
/// uncompressed vmlinux image: a NUL-delimited string that starts with
/// `"<release> "`, ends with a space (x86) or an architecture word (arm64:
/// `"... mod_unload aarch64"`) and whose words are vermagic words
/// (`SMP`, `preempt`, `mod_unload`, `modversions`, ...). The image's
/// `.rodata` is searched when it has one, else all of `image`. Every
/// matching string must be the same; `None` when there is none.
pub fn find_vermagic(release: &str, image: &[u8]) -> Result<Option<String>, String> {
    let hay = object::read::File::parse(image)
        .ok()
        .and_then(|f| {
            use object::{Object, ObjectSection};
            f.section_by_name(".rodata")
                .and_then(|s| s.data().ok())
                .filter(|d| !d.is_empty())
        })
        .unwrap_or(image);
    let mut pat = Vec::with_capacity(release.len() + 2);
    pat.push(0u8);
    pat.extend_from_slice(release.as_bytes());
    pat.push(b' ');
    let mut found: Option<String> = None;
    let mut at = 0;
    while let Some(i) = find_bytes(&hay[at..], &pat) {
        let start = at + i + 1;
        at = start;
        let Some(len) = hay[start..].iter().position(|&b| b == 0) else {
            break;
        };
        let Ok(s) = std::str::from_utf8(&hay[start..start + len]) else {
            continue;
        };
        if !is_vermagic(release, s) {
            continue;
        }
        match &found {
            Some(f) if f != s => {
                return Err(format!(
                    "two different vermagic strings in the image: {f:?} and {s:?}"
                ))
            }
            _ => found = Some(s.to_string()),
        }
    }
    Ok(found)
}

/// Words `VERMAGIC_STRING` is made of after the release.
const VERMAGIC_WORDS: &[&str] = &[
    "SMP",
    "preempt",
    "preempt_rt",
    "preempt_dynamic",
    "mod_unload",
    "modversions",
];

/// `MODULE_ARCH_VERMAGIC` words that end a vermagic string (x86 has none:
/// its vermagic ends in a space).
const VERMAGIC_ARCH_WORDS: &[&str] = &["aarch64"];

fn is_vermagic(release: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(release).and_then(|r| r.strip_prefix(' ')) else {
        return false;
    };
    let ends_with_arch = VERMAGIC_ARCH_WORDS
        .iter()
        .any(|w| rest.strip_suffix(w).is_some_and(|r| r.ends_with(' ')));
    if !rest.ends_with(' ') && !ends_with_arch {
        return false;
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    // Known words, plus architecture / randstruct words (`RANDSTRUCT_…`,
    // CPU family names) made of identifier characters; at least one known.
    !words.is_empty()
        && words.iter().any(|w| VERMAGIC_WORDS.contains(w))
        && words.iter().all(|w| {
            w.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        })
        && !rest.contains("  ")
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let j = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += j;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Provenance of the conventions when the archive has neither a module nor
/// the config of the kernel.
pub const IMAGE_ONLY_CONVENTIONS: &str = "no config and no stock module in the archive: modversions from vmlinux __kcrctab sections (checked against vermagic), return_sites from the export __x86_return_thunk, retpoline from the export __x86_indirect_thunk_rax, ibt from BTF function ibt_save; no modinfo keys";

/// Provenance of `this_module` when the archive has no module of the kernel.
pub const BTF_ONLY_THIS_MODULE: &str =
    "BTF only — no stock module in the archive; the linker cross-checks with a donor on the host";

fn collect_modules(dir: &Path, out: &mut Vec<PathBuf>, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if out.len() >= limit {
            return;
        }
        if path.is_dir() {
            collect_modules(&path, out, limit);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".ko"))
        {
            out.push(path);
        }
    }
}

/// The `uname -v` part of a `linux_banner`.
pub fn build_string(banner: &str) -> Option<String> {
    let at = banner.find(") #")?;
    Some(banner[at + 2..].trim_end().to_string())
}

/// Extracts a record for the core `manifest` from a kernel's artifacts.
pub fn extract(art: &Artifacts, manifest: &Manifest) -> Result<KernelRecord, ExtractError> {
    extract_full(art, manifest).map(|x| x.record)
}

/// A record and the raw `.BTF` it was read from (kept by the store so the
/// record can be re-derived for another core: [`rederive`]).
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The record.
    pub record: KernelRecord,
    /// The kernel's `.BTF` section, byte for byte.
    pub btf: Vec<u8>,
}

/// The architecture of an ELF64 file, by its `e_machine`.
fn elf_arch(elf: &[u8]) -> Option<kmlink_core_module::Arch> {
    use object::read::elf::FileHeader as _;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(elf).ok()?;
    let machine = header.e_machine(header.endian().ok()?);
    kmlink_core_module::Arch::of_elf_machine(machine)
}

/// [`extract`], also returning the kernel's `.BTF`: one step per fact, in
/// the order they are read and cross-checked.
pub fn extract_full(art: &Artifacts, manifest: &Manifest) -> Result<Extracted, ExtractError> {
    let cx = Cx { art };
    let mut provenance = BTreeMap::new();
    let bz = std::fs::read(&art.vmlinuz).map_err(cx.io(&art.vmlinuz))?;
    let (raw, elf) = image_elf(&cx, &bz)?;
    let image = kernel_image(&cx, &bz, &elf, raw)?;
    let btf = Btf::parse(image.btf).map_err(cx.donor("vmlinux .BTF".into()))?;
    let build = image_build_string(&cx, &image)?;
    let exports = image_exports(&cx, &image, &mut provenance)?;
    let config = read_config(&cx)?;
    // The module loader's own vermagic, from the image.
    let image_vermagic = find_vermagic(&art.release, image.bytes).map_err(|w| cx.missing(w))?;
    let image_crcs = image_has_crcs(&image, &exports);
    // A stock module: vermagic, struct module section, conventions. Without
    // any module (the archive dropped the kernel's modules package), the
    // image's vermagic and BTF alone.
    let mut loader = if has_modules(&art.modules_dir) {
        loader_from_stock_module(&cx, &btf, config.as_ref(), &image_vermagic, &mut provenance)?
    } else {
        let from = ImageOnly {
            btf: &btf,
            config: config.as_ref(),
            vermagic: image_vermagic,
            crcs: image_crcs,
            exports: &exports,
        };
        loader_from_image(&cx, from, &mut provenance)?
    };
    if image.arch == kmlink_core_module::Arch::Aarch64 {
        arm64_loader_sections(&cx, &btf, &mut loader, &mut provenance)?;
    }
    modversions_have_crcs(&cx, loader.conventions.modversions, image_crcs)?;
    let core = core_facts(&cx, &btf, &image, manifest, &mut provenance)?;
    let mut config_map = config.as_ref().map(config_facts).unwrap_or_default();
    if let Some(header) = image.raw.as_ref().and_then(|r| r.page_shift()) {
        arm64_page_size(&cx, header, &mut config_map, &mut provenance)?;
    }
    let record = KernelRecord::assemble(
        Identity {
            release: art.release.clone(),
            distro: art.distro.clone(),
            suite: art.suite.clone(),
            flavour: art.flavour.clone(),
            arch: image.arch.machine().into(),
            build_string: build,
            btf_sha256: hex::encode(Sha256::digest(image.btf)),
            packages: art.packages.clone(),
        },
        KernelFacts {
            loader,
            config: config_map,
            exports,
            core,
            provenance,
        },
    );
    Ok(Extracted {
        record,
        btf: image.btf.to_vec(),
    })
}

/// The kernel whose artifacts are read, for errors.
struct Cx<'a> {
    art: &'a Artifacts,
}

impl Cx<'_> {
    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> ExtractError {
        let release = self.art.release.clone();
        let path = path.to_path_buf();
        move |source| ExtractError::Io {
            release,
            path,
            source,
        }
    }

    fn donor(&self, what: String) -> impl FnOnce(kmlink_donor::Error) -> ExtractError {
        let release = self.art.release.clone();
        move |source| ExtractError::Donor {
            release,
            what,
            source,
        }
    }

    fn missing(&self, what: String) -> ExtractError {
        ExtractError::Missing {
            release: self.art.release.clone(),
            what,
        }
    }

    /// Two sources of `what` disagree: `a_source` says `a`, `b_source` `b`.
    fn disagree(&self, what: &str, a: (&str, String), b: (String, String)) -> ExtractError {
        ExtractError::Disagree(Box::new(Disagreement {
            release: self.art.release.clone(),
            what: what.into(),
            a_source: a.0.into(),
            a: a.1,
            b_source: b.0,
            b: b.1,
        }))
    }
}

/// A kernel image as extraction reads it. x86: a bzImage carrying the
/// vmlinux ELF. arm64: the raw Image itself, without a section table (BTF
/// banner and export table found by content).
struct KernelImage<'a> {
    /// x86's vmlinux.
    vmlinux: Option<Vmlinux<'a>>,
    /// arm64's Image.
    raw: Option<kmlink_donor::arm64_image::Arm64Image<'a>>,
    arch: kmlink_core_module::Arch,
    /// The bytes searched for the vermagic string.
    bytes: &'a [u8],
    /// The `.BTF` section.
    btf: &'a [u8],
}

/// arm64's raw Image (parsed), or x86's vmlinux ELF out of the bzImage.
fn image_elf<'a>(
    cx: &Cx<'_>,
    bz: &'a [u8],
) -> Result<(Option<kmlink_donor::arm64_image::Arm64Image<'a>>, Vec<u8>), ExtractError> {
    let vmlinuz = &cx.art.vmlinuz;
    if kmlink_donor::arm64_image::is_arm64_image(bz) {
        let raw = kmlink_donor::arm64_image::Arm64Image::parse(bz)
            .map_err(cx.donor(format!("{}", vmlinuz.display())))?;
        return Ok((Some(raw), Vec::new()));
    }
    let elf = kmlink_donor::bzimage::extract_vmlinux(bz)
        .map_err(cx.donor(format!("{}", vmlinuz.display())))?;
    Ok((None, elf))
}

/// The image's architecture, vermagic bytes and `.BTF`.
fn kernel_image<'a>(
    cx: &Cx<'_>,
    bz: &'a [u8],
    elf: &'a [u8],
    raw: Option<kmlink_donor::arm64_image::Arm64Image<'a>>,
) -> Result<KernelImage<'a>, ExtractError> {
    let vmlinux = match raw {
        Some(_) => None,
        None => Some(Vmlinux::parse(elf).map_err(cx.donor("vmlinux".into()))?),
    };
    let arch = match raw {
        Some(_) => kmlink_core_module::Arch::Aarch64,
        None => elf_arch(elf).ok_or_else(|| {
            cx.missing(format!(
                "vmlinux is not an ELF64 file of an architecture kmlink links for ({})",
                crate::record::known_arches().join(", ")
            ))
        })?,
    };
    let bytes: &[u8] = if raw.is_some() { bz } else { elf };
    let btf = match (&vmlinux, &raw) {
        (Some(v), _) => v
            .btf_section()
            .ok_or_else(|| cx.missing("vmlinux has no .BTF section".into()))?,
        (None, Some(r)) => r.btf().map_err(cx.donor("arm64 Image .BTF".into()))?,
        (None, None) => return Err(cx.missing("no kernel image".into())),
    };
    Ok(KernelImage {
        vmlinux,
        raw,
        arch,
        bytes,
        btf,
    })
}

/// Identity: the build string (`uname -v`) from the image's banner, whose
/// release must be the package's.
fn image_build_string(cx: &Cx<'_>, image: &KernelImage<'_>) -> Result<String, ExtractError> {
    let art = cx.art;
    let banner = match (&image.vmlinux, &image.raw) {
        (Some(v), _) => v.banner(),
        (None, Some(r)) => r.banner(),
        (None, None) => return Err(cx.missing("no kernel image".into())),
    }
    .map_err(cx.donor("linux_banner".into()))?;
    let build = build_string(&banner)
        .ok_or_else(|| cx.missing(format!("cannot find the build string in banner {banner:?}")))?;
    if !banner.starts_with(&format!("Linux version {} ", art.release)) {
        return Err(cx.disagree(
            "release",
            ("package", art.release.clone()),
            (
                "vmlinux banner".into(),
                banner.lines().next().unwrap_or_default().to_string(),
            ),
        ));
    }
    Ok(build)
}

/// Exports and CRCs, from the image's own tables (an x86 vmlinux's
/// sections by name; a raw arm64 Image's found by content), checked against
/// Module.symvers when the archive has it.
fn image_exports(
    cx: &Cx<'_>,
    image: &KernelImage<'_>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<BTreeMap<String, Export>, ExtractError> {
    let art = cx.art;
    let (own_exports, source) = match (&image.vmlinux, &image.raw) {
        (Some(v), _) => (
            v.exports()
                .map_err(cx.donor("vmlinux export tables".into()))?,
            "vmlinux __ksymtab/__kcrctab",
        ),
        (None, Some(r)) => (
            r.exports()
                .map_err(cx.donor("arm64 Image export table".into()))?,
            "arm64 Image __ksymtab/__kcrctab (found by content)",
        ),
        (None, None) => return Err(cx.missing("no kernel image".into())),
    };
    let exports = crate::record::exports_of(own_exports);
    provenance.insert("exports".to_string(), source.to_string());
    if let Some(path) = &art.symvers {
        let checked = check_symvers(cx, path, &exports)?;
        provenance.insert(
            "exports".into(),
            format!("{source}, {checked} checked against Module.symvers"),
        );
    }
    Ok(exports)
}

/// Holds the image's exports to Module.symvers' vmlinux entries (CRC and
/// GPL-ness); returns how many were checked.
fn check_symvers(
    cx: &Cx<'_>,
    path: &Path,
    exports: &BTreeMap<String, Export>,
) -> Result<usize, ExtractError> {
    let text = std::fs::read_to_string(path).map_err(cx.io(path))?;
    let listed = symvers::parse(&text).map_err(cx.donor(format!("{}", path.display())))?;
    let mut checked = 0usize;
    for s in listed.iter().filter(|s| s.owner == "vmlinux") {
        let Some(mine) = exports.get(&s.name) else {
            return Err(cx.missing(format!(
                "Module.symvers lists {} from vmlinux, the image's export table does not",
                s.name
            )));
        };
        let theirs = s.crc.filter(|c| *c != 0);
        if mine.crc.filter(|c| *c != 0) != theirs || mine.gpl != s.gpl {
            return Err(cx.disagree(
                &format!("export {}", s.name),
                ("vmlinux", format!("crc {:08x?} gpl {}", mine.crc, mine.gpl)),
                (
                    "Module.symvers".into(),
                    format!("crc {:08x?} gpl {}", s.crc, s.gpl),
                ),
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

/// The kernel config, when the artifacts have one.
fn read_config(cx: &Cx<'_>) -> Result<Option<KernelConfig>, ExtractError> {
    match &cx.art.config {
        Some(path) => Ok(Some(KernelConfig::parse(
            &std::fs::read_to_string(path).map_err(cx.io(path))?,
        ))),
        None => Ok(None),
    }
}

/// Whether the image has CRCs: its `__kcrctab*` sections (x86), a nonzero
/// CRC among its exports (arm64).
fn image_has_crcs(image: &KernelImage<'_>, exports: &BTreeMap<String, Export>) -> bool {
    match &image.vmlinux {
        Some(v) => ["__kcrctab", "__kcrctab_gpl"]
            .iter()
            .any(|s| v.section(s).is_some()),
        None => exports.values().any(|e| e.crc.is_some_and(|c| c != 0)),
    }
}

/// A kernel that checks symbol versions (`modversions`) must give them in
/// its export table (`image_crcs`, [`image_has_crcs`]): otherwise every
/// module linked from its record would be refused.
fn modversions_have_crcs(
    cx: &Cx<'_>,
    modversions: bool,
    image_crcs: bool,
) -> Result<(), ExtractError> {
    if modversions && !image_crcs {
        return Err(cx.disagree(
            "symbol versions",
            ("module loader", "modversions".into()),
            ("image export table".into(), "no CRCs".into()),
        ));
    }
    Ok(())
}

/// Vermagic, conventions and `struct module` from a stock module of the
/// kernel, each held to the package, the image and BTF.
fn loader_from_stock_module(
    cx: &Cx<'_>,
    btf: &Btf,
    config: Option<&KernelConfig>,
    image_vermagic: &Option<String>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<LoaderFacts, ExtractError> {
    let art = cx.art;
    let release = &art.release;
    let stock = find_stock_module(release, &art.modules_dir)?;
    let f = &stock.facts;
    let stock_path = stock.path.display().to_string();
    let vermagic = f
        .vermagic
        .clone()
        .ok_or_else(|| cx.missing("stock module has no vermagic".into()))?;
    if !vermagic.starts_with(&format!("{} ", art.release)) {
        return Err(cx.disagree(
            "vermagic",
            ("package", art.release.clone()),
            (stock_path, vermagic),
        ));
    }
    if let Some(img) = image_vermagic {
        if *img != vermagic {
            return Err(cx.disagree(
                "vermagic",
                ("vmlinux .rodata", format!("{img:?}")),
                (stock_path, format!("{vermagic:?}")),
            ));
        }
    }
    // Named relative to the modules directory, so that records do not
    // depend on where the kernel was unpacked.
    let label = format!(
        "<modules>/{}",
        stock
            .path
            .strip_prefix(&art.modules_dir)
            .unwrap_or(&stock.path)
            .display()
    );
    provenance.insert(
        "vermagic".into(),
        match image_vermagic {
            Some(_) => format!("{label}, equal to vmlinux .rodata"),
            None => label.clone(),
        },
    );
    let conventions = module_conventions(config, f).map_err(|d| {
        cx.disagree(
            "symbol versions",
            ("config", format!("MODVERSIONS={}", d.config)),
            (stock_path, format!("__versions present: {}", d.module)),
        )
    })?;
    // struct module: BTF and the stock module must agree.
    let this_module = this_module_layout(release, btf, &stock)?;
    provenance.insert(
        "this_module".into(),
        format!("BTF, checked against {label}"),
    );
    Ok(LoaderFacts {
        vermagic,
        conventions,
        this_module,
    })
}

/// An arm64 kernel's page size (4, 16 or 64 KiB, a build choice) as the
/// Image header's flags say it (`header`: log2, from
/// `Arm64Image::page_shift`): held to the config's `CONFIG_PAGE_SHIFT` /
/// `CONFIG_ARM64_PAGE_SHIFT`, and the record's `CONFIG_PAGE_SHIFT` when the
/// archive has no config (trixie-backports' 6.19 → 7.1 builds, whose
/// modules package is gone), so that a 16k kernel's record names its pages.
fn arm64_page_size(
    cx: &Cx<'_>,
    header: u32,
    config: &mut BTreeMap<String, String>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<(), ExtractError> {
    let configured = ["CONFIG_PAGE_SHIFT", "CONFIG_ARM64_PAGE_SHIFT"]
        .iter()
        .find_map(|k| config.get(*k).map(|v| (*k, v.clone())));
    match configured {
        Some((key, value)) if value != header.to_string() => Err(cx.disagree(
            "page size",
            ("config", format!("{key}={value}")),
            (
                "arm64 Image header flags".into(),
                format!("page shift {header}"),
            ),
        )),
        Some(_) => Ok(()),
        None => {
            config.insert("CONFIG_PAGE_SHIFT".into(), header.to_string());
            provenance.insert(
                "page_size".into(),
                "arm64 Image header flags (no config in the archive)".into(),
            );
            Ok(())
        }
    }
}

/// The placeholder sections the arm64 module loader sizes at load time
/// ([`crate::record::LOADER_SECTIONS`]), from the kernel's own
/// `struct mod_arch_specific` in BTF: `core` and `init` PLTs (`.plt`,
/// `.init.plt`), `ftrace_trampolines` (`.text.ftrace_trampoline`) and, from
/// 6.x on, `init_ftrace_trampolines` (`.init.text.ftrace_trampoline`). Held
/// to a stock module's sections when there is one; the only source for a
/// kernel whose archive lost its modules.
fn arm64_loader_sections(
    cx: &Cx<'_>,
    btf: &Btf,
    loader: &mut LoaderFacts,
    provenance: &mut BTreeMap<String, String>,
) -> Result<(), ExtractError> {
    const BY_MEMBER: [(&str, &str); 4] = [
        ("core", ".plt"),
        ("init", ".init.plt"),
        ("ftrace_trampolines", ".text.ftrace_trampoline"),
        ("init_ftrace_trampolines", ".init.text.ftrace_trampoline"),
    ];
    let mut from_btf = Vec::new();
    for (member, section) in BY_MEMBER {
        let has = btf
            .member_offset("mod_arch_specific", member)
            .map_err(cx.donor("BTF struct mod_arch_specific".into()))?
            .is_some();
        if has {
            from_btf.push(section.to_string());
        }
    }
    if from_btf.len() < 2 {
        return Err(cx.missing(
            "BTF struct mod_arch_specific without the core and init PLTs the arm64 module loader sizes"
                .into(),
        ));
    }
    hold_loader_sections(
        cx,
        from_btf,
        &mut loader.conventions.loader_sections,
        provenance,
    )
}

/// The arm64 loader's placeholder sections read from BTF (`from_btf`)
/// held to a stock module's (`have`); without a stock module (`have`
/// empty), BTF's become the record's.
fn hold_loader_sections(
    cx: &Cx<'_>,
    from_btf: Vec<String>,
    have: &mut Vec<String>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<(), ExtractError> {
    if have.is_empty() {
        *have = from_btf;
        provenance.insert(
            "loader_sections".into(),
            "BTF struct mod_arch_specific (no stock module)".into(),
        );
    } else if *have != from_btf {
        return Err(cx.disagree(
            "arm64 module loader sections",
            ("stock module", have.join(" ")),
            ("BTF struct mod_arch_specific".into(), from_btf.join(" ")),
        ));
    }
    Ok(())
}

/// What a kernel without any module shows of what its modules must be.
struct ImageOnly<'a> {
    btf: &'a Btf,
    config: Option<&'a KernelConfig>,
    /// The module loader's own vermagic, from the image.
    vermagic: Option<String>,
    /// [`image_has_crcs`].
    crcs: bool,
    exports: &'a BTreeMap<String, Export>,
}

/// Vermagic from the image, conventions from the config (or, without one,
/// from the image), `struct module` from BTF alone: a kernel whose archive
/// has no modules package.
fn loader_from_image(
    cx: &Cx<'_>,
    from: ImageOnly<'_>,
    provenance: &mut BTreeMap<String, String>,
) -> Result<LoaderFacts, ExtractError> {
    let art = cx.art;
    let config = from.config;
    let vermagic = from.vermagic.ok_or_else(|| {
        cx.missing(format!(
            "no module under {} (the archive has no modules package) and no vermagic string in the image",
            art.modules_dir.display()
        ))
    })?;
    provenance.insert(
        "vermagic".into(),
        "vmlinux .rodata (the module loader's own); no stock module in the archive".into(),
    );
    let vermagic_modversions = vermagic.split(' ').any(|w| w == "modversions");
    let (modversions, source) = match config {
        Some(c) => (c.enabled("CONFIG_MODVERSIONS"), "config"),
        None => (from.crcs, "vmlinux __kcrctab sections"),
    };
    if modversions != vermagic_modversions {
        return Err(cx.disagree(
            "symbol versions",
            (source, format!("modversions={modversions}")),
            ("vmlinux vermagic".into(), format!("{vermagic:?}")),
        ));
    }
    let enabled = |keys: &[&str]| config.is_some_and(|c| keys.iter().any(|k| c.enabled(k)));
    let conventions = if config.is_some() {
        provenance.insert(
            "conventions".into(),
            format!("config; modversions from {source}; no stock module (no modinfo keys)"),
        );
        ModuleConventions {
            modversions,
            ext_modversions: enabled(&["CONFIG_EXTENDED_MODVERSIONS"]),
            return_sites: enabled(&["CONFIG_RETHUNK", "CONFIG_MITIGATION_RETHUNK"]),
            retpoline: enabled(&["CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"]),
            ibt: enabled(&["CONFIG_X86_KERNEL_IBT"]),
            stock_modinfo_keys: Vec::new(),
            loader_sections: Vec::new(),
        }
    } else {
        // Neither config nor module: what the image itself shows.
        provenance.insert("conventions".into(), IMAGE_ONLY_CONVENTIONS.into());
        ModuleConventions {
            modversions,
            ext_modversions: false,
            return_sites: from.exports.contains_key("__x86_return_thunk"),
            retpoline: from.exports.contains_key("__x86_indirect_thunk_rax"),
            ibt: from.btf.has_function("ibt_save"),
            stock_modinfo_keys: Vec::new(),
            loader_sections: Vec::new(),
        }
    };
    let this_module = btf_module_layout(&art.release, from.btf)?;
    provenance.insert("this_module".into(), BTF_ONLY_THIS_MODULE.into());
    Ok(LoaderFacts {
        vermagic,
        conventions,
        this_module,
    })
}

/// Layouts, tracepoints, functions the core asks for, from BTF; per-CPU
/// variables from the export table when BTF has no `.data..percpu`.
fn core_facts(
    cx: &Cx<'_>,
    btf: &Btf,
    image: &KernelImage<'_>,
    manifest: &Manifest,
    provenance: &mut BTreeMap<String, String>,
) -> Result<CoreFacts, ExtractError> {
    let layout_keys = manifest.layout_keys();
    let mut core = btf_facts_for(&cx.art.release, btf, manifest, &layout_keys)?;
    provenance.insert("layouts".into(), "vmlinux .BTF".into());
    // Only a core that reads per-CPU variables (x86's) needs them placed;
    // arm64's reads the CPU from the task itself.
    let wants_percpu = layout_keys.iter().any(|k| k.starts_with("percpu:"));
    if wants_percpu && !btf.has_percpu_datasec() {
        let pcpu = match &image.vmlinux {
            Some(v) => v
                .percpu_exports()
                .map_err(cx.donor("vmlinux per-CPU exports".into()))?,
            None => {
                return Err(cx.missing(
                    "the image's BTF has no .data..percpu and a raw Image has no export \
                     table to find per-CPU variables in"
                        .into(),
                ))
            }
        };
        let n = percpu_from_exports(&layout_keys, &pcpu, &mut core.layouts);
        provenance.insert(
            "layouts".into(),
            format!("vmlinux .BTF; {n} per-CPU variable(s) from the export table (the BTF has no .data..percpu)"),
        );
    }
    Ok(core)
}

/// The layout facts the core `manifest` asks for (`manifest.layout_keys()`),
/// read from `btf`: `offsetof:`/`sizeof:` (struct layouts), `percpu:`
/// (per-CPU variables), `fn:` (functions, value = parameter count),
/// `fnarg:`/`fnargsize:` (a function parameter's 1-based position / size).
/// A fact the kernel does not have is absent from the map. The record
/// extractor and the linker's check against live BTF both use this, so
/// they cannot read BTF differently.
pub fn btf_layouts(
    btf: &Btf,
    manifest: &Manifest,
) -> Result<BTreeMap<String, u64>, kmlink_donor::Error> {
    layouts_of(btf, &manifest.layout_keys())
}

/// [`btf_layouts`] for the manifest's `layout_keys`.
fn layouts_of(
    btf: &Btf,
    layout_keys: &[String],
) -> Result<BTreeMap<String, u64>, kmlink_donor::Error> {
    // A function's prototype serves several keys (`fn:`, `fnarg:`,
    // `fnargsize:` per parameter): look each up in BTF once.
    let mut protos: BTreeMap<&str, Option<Vec<kmlink_donor::btf::TpParam>>> = BTreeMap::new();
    let mut layouts = BTreeMap::new();
    for key in layout_keys {
        let value = if let Some(spec) = key.strip_prefix("offsetof:") {
            let (s, m) = spec.split_once('.').unwrap_or((spec, ""));
            btf.member_offset(s, m)?
        } else if let Some(s) = key.strip_prefix("sizeof:") {
            btf.struct_size(s)
        } else if let Some(v) = key.strip_prefix("percpu:") {
            btf.is_percpu_var(v).then_some(0)
        } else if let Some((f, param)) = function_key_parts(key) {
            if !protos.contains_key(f) {
                protos.insert(f, btf.function_params(f)?);
            }
            let params = protos.get(f).and_then(Option::as_ref);
            match param {
                None => params.map(|p| p.len() as u64),
                Some((p, want_size)) => params.and_then(|params| {
                    params.iter().position(|q| q.name == p).map(|i| {
                        if want_size {
                            params[i].size
                        } else {
                            i as u64 + 1
                        }
                    })
                }),
            }
        } else {
            None
        };
        if let Some(v) = value {
            layouts.insert(key.clone(), v);
        }
    }
    Ok(layouts)
}

/// For BTF without a `.data..percpu` DATASEC (Debian 5.10): the
/// `percpu:` facts among a manifest's `layout_keys`
/// ([`Manifest::layout_keys`]), from the names of the exports whose value
/// lies in the image's `.data..percpu` section
/// ([`Vmlinux::percpu_exports`]). Returns how many were added.
pub fn percpu_from_exports(
    layout_keys: &[String],
    percpu_exports: &[String],
    layouts: &mut BTreeMap<String, u64>,
) -> usize {
    let mut n = 0;
    for key in layout_keys {
        if let Some(v) = key.strip_prefix("percpu:") {
            if percpu_exports.iter().any(|e| e == v) {
                layouts.insert(key.clone(), 0);
                n += 1;
            }
        }
    }
    n
}

/// Splits a function layout key: `fn:F` → (F, None); `fnarg:F.P` →
/// (F, Some((P, false))); `fnargsize:F.P` → (F, Some((P, true))).
#[allow(clippy::type_complexity)]
fn function_key_parts(key: &str) -> Option<(&str, Option<(&str, bool)>)> {
    if let Some(f) = key.strip_prefix("fn:") {
        return Some((f, None));
    }
    let (fp, want_size) = match key.strip_prefix("fnarg:") {
        Some(fp) => (fp, false),
        None => (key.strip_prefix("fnargsize:")?, true),
    };
    let (f, p) = fp.split_once('.')?;
    Some((f, Some((p, want_size))))
}

/// Layouts, tracepoint prototypes and allocator functions the core
/// `manifest` asks for, from BTF (the package extractor, `rederive` and the
/// linker's host facts all read them here).
pub fn btf_facts(release: &str, btf: &Btf, manifest: &Manifest) -> Result<CoreFacts, ExtractError> {
    btf_facts_for(release, btf, manifest, &manifest.layout_keys())
}

/// [`btf_facts`], with the manifest's `layout_keys` already at hand.
fn btf_facts_for(
    release: &str,
    btf: &Btf,
    manifest: &Manifest,
    layout_keys: &[String],
) -> Result<CoreFacts, ExtractError> {
    let donor = |what: String| {
        let release = release.to_string();
        move |source| ExtractError::Donor {
            release,
            what,
            source,
        }
    };
    let layouts = layouts_of(btf, layout_keys).map_err(donor("BTF layout facts".into()))?;
    let mut tracepoints = BTreeMap::new();
    for tp in manifest.tracepoints() {
        if let Some(params) = btf
            .tracepoint_params(&tp)
            .map_err(donor(format!("BTF tracepoint {tp}")))?
        {
            tracepoints.insert(
                tp,
                params
                    .into_iter()
                    .map(|p| crate::record::TpParam {
                        name: p.name,
                        size: p.size,
                        type_name: p.type_name,
                    })
                    .collect(),
            );
        }
    }
    let functions = ALLOC_FUNCTIONS
        .iter()
        .filter(|f| btf.has_function(f))
        .map(|f| f.to_string())
        .collect();
    Ok(CoreFacts {
        layouts,
        tracepoints,
        functions,
    })
}

/// Re-derives a full record for another core `manifest` from the record and
/// the kernel's kept `.BTF` (see `Store::btf`), without the packages:
/// layouts, tracepoints and functions are read again; `struct module` is
/// read again and must agree with the record; the rest (exports, vermagic,
/// conventions, config) does not depend on the core and is kept.
pub fn rederive(
    record: &KernelRecord,
    btf_bytes: &[u8],
    manifest: &Manifest,
) -> Result<KernelRecord, ExtractError> {
    let release = record.identity.release.clone();
    let sha = hex::encode(Sha256::digest(btf_bytes));
    if sha != record.identity.btf_sha256 {
        return Err(ExtractError::Disagree(Box::new(Disagreement {
            release,
            what: "BTF identity".into(),
            a_source: "record".into(),
            a: record.identity.btf_sha256.clone(),
            b_source: "kept BTF".into(),
            b: sha,
        })));
    }
    if crate::slim::is_slim(record) {
        return Err(ExtractError::Missing {
            release,
            what: "the record is slim (its exports were cut for another core): extract the kernel again from its packages".into(),
        });
    }
    let btf = Btf::parse(btf_bytes).map_err(|source| ExtractError::Donor {
        release: release.clone(),
        what: "kept .BTF".into(),
        source,
    })?;
    // struct module read again through its one owner.
    let fields = |t: ThisModuleLayout| (t.size, t.name_offset, t.init_offset, t.exit_offset);
    let want = fields(record.this_module);
    let again = crate::this_module::from_btf(&btf).ok().map(fields);
    if again != Some(want) {
        return Err(ExtractError::Disagree(Box::new(Disagreement {
            release,
            what: "struct module (size, name, init, exit)".into(),
            a_source: "record".into(),
            a: format!("{want:#x?}"),
            b_source: "kept BTF".into(),
            b: format!("{again:#x?}"),
        })));
    }
    let mut core = btf_facts(&release, &btf, manifest)?;
    if !btf.has_percpu_datasec() {
        // Such BTF cannot say which variables are per-CPU; the record took
        // them from the image's export table, which is not kept.
        for (k, v) in &record.layouts {
            if k.starts_with("percpu:") {
                core.layouts.insert(k.clone(), *v);
            }
        }
    }
    let mut r = record.clone();
    r.layouts = core.layouts;
    r.tracepoints = core.tracepoints;
    r.functions = core.functions;
    r.provenance
        .insert("layouts".into(), "kept .BTF (re-derived)".into());
    Ok(r)
}

/// The [`CONFIG_KEYS`] a config sets, as a record keeps them.
///
/// The page size is kept only where it is a build choice: an arm64 config
/// (`CONFIG_ARM64=y`; 4K/16K/64K pages, named by `CONFIG_ARM64_PAGE_SHIFT`
/// before 6.9 and by the generic `CONFIG_PAGE_SHIFT` from 6.9 on, when the
/// arm64 key went away). x86-64's pages are always 4 KiB, the core's
/// default, and its records (the built-in ones included) leave the size
/// out, so adding the key did not change every x86 record.
pub fn config_facts(config: &KernelConfig) -> BTreeMap<String, String> {
    let page_size_is_a_choice = config.get("CONFIG_ARM64") == Some("y");
    CONFIG_KEYS
        .iter()
        .filter(|key| **key != "CONFIG_PAGE_SHIFT" || page_size_is_a_choice)
        .filter_map(|key| config.get(key).map(|v| (key.to_string(), v.to_string())))
        .collect()
}

/// The config says MODVERSIONS one way, the module the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModversionsDisagree {
    /// `CONFIG_MODVERSIONS`.
    pub config: bool,
    /// The module has `__versions`.
    pub module: bool,
}

/// How modules of this kernel are built, from its config (when there is
/// one) and a module built for it: the one rule for record extraction and
/// the linker's host records. The config decides `modversions` (and the
/// module must agree), `return_sites` (`RETHUNK`; without a config the
/// module's `.return_sites` section), `ibt`; `retpoline` is the config's
/// or the module's `retpoline=Y`; `ext_modversions` and the modinfo keys
/// are the module's.
pub fn module_conventions(
    config: Option<&KernelConfig>,
    module: &ko::ModuleFacts,
) -> Result<ModuleConventions, ModversionsDisagree> {
    let enabled = |keys: &[&str]| config.is_some_and(|c| keys.iter().any(|k| c.enabled(k)));
    let module_versions = module.sections.iter().any(|s| s == "__versions");
    let modversions = match config {
        Some(c) => c.enabled("CONFIG_MODVERSIONS"),
        None => module_versions,
    };
    if modversions != module_versions {
        return Err(ModversionsDisagree {
            config: modversions,
            module: module_versions,
        });
    }
    let module_retpoline = module
        .modinfo
        .iter()
        .any(|(k, v)| k == "retpoline" && v == "Y");
    Ok(ModuleConventions {
        modversions,
        ext_modversions: module.has_ext_versions,
        return_sites: match config {
            Some(_) => enabled(&["CONFIG_RETHUNK", "CONFIG_MITIGATION_RETHUNK"]),
            None => module.sections.iter().any(|s| s == ".return_sites"),
        },
        retpoline: enabled(&["CONFIG_RETPOLINE", "CONFIG_MITIGATION_RETPOLINE"])
            || module_retpoline,
        ibt: enabled(&["CONFIG_X86_KERNEL_IBT"]),
        stock_modinfo_keys: {
            let mut keys: Vec<String> = module.modinfo.iter().map(|(k, _)| k.clone()).collect();
            keys.sort();
            keys.dedup();
            keys
        },
        loader_sections: crate::record::loader_sections_of(&module.sections),
    })
}

/// `struct module` layout from BTF alone ([`crate::this_module::from_btf`]).
pub fn btf_module_layout(release: &str, btf: &Btf) -> Result<ThisModuleLayout, ExtractError> {
    use crate::this_module::BtfLayoutError;
    crate::this_module::from_btf(btf).map_err(|e| match e {
        BtfLayoutError::Missing(what) => ExtractError::Missing {
            release: release.into(),
            what,
        },
        BtfLayoutError::Btf(source) => ExtractError::Donor {
            release: release.into(),
            what: "BTF struct module".into(),
            source,
        },
    })
}

/// `struct module` layout from BTF, held to a stock module
/// ([`crate::this_module::compare`]); the first disagreement is the error.
pub fn this_module_layout(
    release: &str,
    btf: &Btf,
    stock: &StockModule,
) -> Result<ThisModuleLayout, ExtractError> {
    let layout = btf_module_layout(release, btf)?;
    let compared = crate::this_module::compare(&layout, &stock.facts);
    if let Some(m) = compared.mismatches.first() {
        return Err(ExtractError::Disagree(Box::new(Disagreement {
            release: release.into(),
            what: m.what(),
            a_source: "BTF".into(),
            a: m.want().map(|w| format!("{w:#x}")).unwrap_or_default(),
            b_source: stock.path.display().to_string(),
            b: m.found(),
        })));
    }
    Ok(layout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::LOADER_SECTIONS;

    #[test]
    fn page_size_is_kept_for_arm64_only() {
        // 7.x arm64-16k: the generic key only (CONFIG_ARM64_PAGE_SHIFT is gone).
        let arm64_16k =
            KernelConfig::parse("CONFIG_ARM64=y\nCONFIG_ARM64_16K_PAGES=y\nCONFIG_PAGE_SHIFT=14\n");
        assert_eq!(
            config_facts(&arm64_16k)
                .get("CONFIG_PAGE_SHIFT")
                .map(String::as_str),
            Some("14")
        );
        // 6.1 arm64: the arm64 key only.
        let arm64_6_1 = KernelConfig::parse("CONFIG_ARM64=y\nCONFIG_ARM64_PAGE_SHIFT=12\n");
        assert_eq!(
            config_facts(&arm64_6_1)
                .get("CONFIG_ARM64_PAGE_SHIFT")
                .map(String::as_str),
            Some("12")
        );
        // x86-64 6.12: the generic key is left out.
        let x86 = KernelConfig::parse("CONFIG_X86_64=y\nCONFIG_PAGE_SHIFT=12\n");
        assert!(!config_facts(&x86).contains_key("CONFIG_PAGE_SHIFT"));
    }

    /// Artifacts that are only named in errors: the refusals below are
    /// checked by pure functions.
    fn arm64_artifacts() -> Artifacts {
        Artifacts {
            release: "6.12.74+deb13-arm64".into(),
            distro: "debian".into(),
            suite: "trixie".into(),
            flavour: "arm64".into(),
            vmlinuz: PathBuf::from("vmlinuz"),
            config: None,
            modules_dir: PathBuf::from("modules"),
            symvers: None,
            packages: Vec::new(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arm64_page_size_disagreeing_with_the_config_is_refused() {
        let art = arm64_artifacts();
        let cx = Cx { art: &art };
        let mut provenance = BTreeMap::new();
        // 16K pages in the Image header, 4K in the config.
        let mut config = BTreeMap::from([("CONFIG_PAGE_SHIFT".into(), "12".into())]);
        let e = arm64_page_size(&cx, 14, &mut config, &mut provenance).unwrap_err();
        assert!(matches!(e, ExtractError::Disagree(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "6.12.74+deb13-arm64: page size: config says CONFIG_PAGE_SHIFT=12, \
             arm64 Image header flags says page shift 14"
        );
        // Before 6.9 the arm64 key says it.
        let mut config = BTreeMap::from([("CONFIG_ARM64_PAGE_SHIFT".into(), "16".into())]);
        let e = arm64_page_size(&cx, 12, &mut config, &mut provenance).unwrap_err();
        assert!(e.to_string().contains("CONFIG_ARM64_PAGE_SHIFT=16"), "{e}");
        // Agreeing: nothing changes; no config: the header's is recorded.
        let mut config = BTreeMap::from([("CONFIG_PAGE_SHIFT".into(), "14".into())]);
        arm64_page_size(&cx, 14, &mut config, &mut provenance).unwrap();
        assert!(provenance.is_empty());
        let mut config = BTreeMap::new();
        arm64_page_size(&cx, 14, &mut config, &mut provenance).unwrap();
        assert_eq!(
            config.get("CONFIG_PAGE_SHIFT").map(String::as_str),
            Some("14")
        );
        assert!(provenance.contains_key("page_size"));
    }

    #[test]
    fn arm64_loader_sections_disagreeing_with_the_stock_module_are_refused() {
        let art = arm64_artifacts();
        let cx = Cx { art: &art };
        let mut provenance = BTreeMap::new();
        // The stock module lacks the init ftrace trampoline BTF's
        // `struct mod_arch_specific` has.
        let mut have = strings(&[".plt", ".init.plt", ".text.ftrace_trampoline"]);
        let from_btf = strings(LOADER_SECTIONS);
        let e =
            hold_loader_sections(&cx, from_btf.clone(), &mut have, &mut provenance).unwrap_err();
        assert!(matches!(e, ExtractError::Disagree(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "6.12.74+deb13-arm64: arm64 module loader sections: stock module says \
             .plt .init.plt .text.ftrace_trampoline, BTF struct mod_arch_specific says \
             .plt .init.plt .text.ftrace_trampoline .init.text.ftrace_trampoline"
        );
        // Agreeing: kept; no stock module: BTF's are the record's.
        let mut have = from_btf.clone();
        hold_loader_sections(&cx, from_btf.clone(), &mut have, &mut provenance).unwrap();
        assert!(provenance.is_empty());
        let mut have = Vec::new();
        hold_loader_sections(&cx, from_btf.clone(), &mut have, &mut provenance).unwrap();
        assert_eq!(have, from_btf);
        assert!(provenance.contains_key("loader_sections"));
    }

    #[test]
    fn modversions_without_crcs_in_the_export_table_is_refused() {
        let art = arm64_artifacts();
        let cx = Cx { art: &art };
        let e = modversions_have_crcs(&cx, true, false).unwrap_err();
        assert!(matches!(e, ExtractError::Disagree(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "6.12.74+deb13-arm64: symbol versions: module loader says modversions, \
             image export table says no CRCs"
        );
        modversions_have_crcs(&cx, true, true).unwrap();
        modversions_have_crcs(&cx, false, false).unwrap();
        modversions_have_crcs(&cx, false, true).unwrap();
    }

    #[test]
    fn build_string_from_banner() {
        let banner = "Linux version 6.1.0-47-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)\n";
        assert_eq!(
            build_string(banner).as_deref(),
            Some("#1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)")
        );
        assert_eq!(build_string("Linux version x"), None);
    }

    #[test]
    fn vermagic_in_a_synthetic_blob() {
        let rel = "6.1.0-47-amd64";
        let want = "6.1.0-47-amd64 SMP preempt mod_unload modversions ";
        let mut blob = b"\x7fELF-not-really\0Linux version 6.1.0-47-amd64 (gcc) #1 SMP\0".to_vec();
        // Near misses: another release, no trailing space, odd words,
        // a longer release with the same prefix.
        blob.extend_from_slice(b"6.1.0-47-amd64 SMP preempt mod_unload\0");
        blob.extend_from_slice(b"6.1.0-47-amd64 is not a vermagic \0");
        blob.extend_from_slice(b"6.1.0-47-amd64-x SMP mod_unload \0");
        blob.extend_from_slice(b"6.1.0-48-amd64 SMP mod_unload \0");
        blob.extend_from_slice(want.as_bytes());
        blob.push(0);
        blob.extend_from_slice(b"tail\0");
        assert_eq!(find_vermagic(rel, &blob).unwrap().as_deref(), Some(want));
        // Twice the same: fine; two different: refused.
        let mut twice = blob.clone();
        twice.extend_from_slice(want.as_bytes());
        twice.push(0);
        assert_eq!(find_vermagic(rel, &twice).unwrap().as_deref(), Some(want));
        let mut two = blob.clone();
        two.extend_from_slice(b"6.1.0-47-amd64 SMP preempt_rt mod_unload \0");
        let e = find_vermagic(rel, &two).unwrap_err();
        assert!(e.contains("two different vermagic"), "{e}");
        // 7.x: no modversions.
        let seven = b"\0x\x007.3.4+deb13-amd64 SMP preempt mod_unload \0";
        assert_eq!(
            find_vermagic("7.3.4+deb13-amd64", seven)
                .unwrap()
                .as_deref(),
            Some("7.3.4+deb13-amd64 SMP preempt mod_unload ")
        );
        // arm64: the architecture word ends it, without a trailing space;
        // a word after it is no vermagic.
        let arm = b"\0x\x007.1.13+deb13-arm64 SMP preempt mod_unload aarch64\0\
            7.1.13+deb13-arm64 SMP mod_unload aarch64 x\0";
        assert_eq!(
            find_vermagic("7.1.13+deb13-arm64", arm).unwrap().as_deref(),
            Some("7.1.13+deb13-arm64 SMP preempt mod_unload aarch64")
        );
        // None at all; and a string at the very start (no NUL before it)
        // is not taken.
        assert_eq!(find_vermagic(rel, b"\0nothing here\0").unwrap(), None);
        assert_eq!(find_vermagic(rel, want.as_bytes()).unwrap(), None);
        assert_eq!(
            find_vermagic(rel, b"\x006.1.0-47-amd64 SMP ").unwrap(),
            None
        );
    }
}
