//! The kmlink linker: turns the core object into a loadable `.ko` for one
//! exact kernel, from that kernel's record.
//!
//! It works on the core object through `object::build::elf::Builder` (no
//! external linker): binds abstract imports to the kernel's export names,
//! fills the layout table, and adds what the module loader of the target
//! kernel demands — `.modinfo`, `__versions`, `.gnu.linkonce.this_module`,
//! `.return_sites` / `.retpoline_sites`. Every fact is checked before any
//! output exists; see [`LinkError`] for the refusals.
//!
//! Before a module is handed out, [`build`] compares every fact across every
//! source at hand ([`check::verify`]: record, donor module, live BTF, the
//! running kernel's identity and image) and refuses on any disagreement.
//! [`host::host_record`] builds a record from a live host for a kernel no
//! database has seen; [`gather::gather`] collects every source of one
//! target (record, donor, BTF, host) for those checks.
#![deny(missing_docs)]

pub mod check;
pub mod donor;
pub mod dump;
pub mod gather;
pub mod host;
pub mod load;
mod plan;
pub mod security;

use std::collections::BTreeMap;

use object::build::elf::{Builder, Relocation, SectionData, SectionId, SymbolId};
use object::build::{ByteString, Bytes};
use object::elf;

use kmlink_core_module::{Arch, Manifest, LAYOUT_SECTION, MANIFEST_SECTION, OPTIONS_SECTION};
use kmlink_metadata_db::record::KernelRecord;

pub use plan::{Binding, Plan, SlotValue};

/// Name of the module the linker writes.
pub const MODULE_NAME: &str = "kmlink";

/// Longest symbol name a `__versions` entry holds (56-byte field, NUL included).
const VERSION_NAME_MAX: usize = 55;

/// Why the linker refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The core object could not be read or written.
    #[error("core object")]
    Object(#[from] object::build::Error),
    /// The core object's manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] kmlink_core_module::ManifestError),
    /// The record is for another architecture than the core object.
    #[error("{release}: the record is for {record_arch}, the core object is built for {core_arch}: a module is linked only with a record of its own architecture (take the {core_arch} record of the kernel, or the {record_arch} core)")]
    ArchMismatch {
        /// Kernel release.
        release: String,
        /// The record's `identity.arch`.
        record_arch: String,
        /// The core object's architecture (its ELF machine), or
        /// `unknown ELF machine N`.
        core_arch: String,
    },
    /// The kernel exports none of the names an import needs.
    #[error("{release}: the kernel exports no {wanted} (needed by {by}); this kernel cannot run the monitor as built")]
    MissingExport {
        /// Kernel release.
        release: String,
        /// What was looked for.
        wanted: String,
        /// Which core symbol needed it.
        by: String,
    },
    /// The record lacks a layout fact.
    #[error("{release}: the record has no {key} (for layout slot {slot}); re-extract the record with this core's manifest")]
    MissingLayout {
        /// Kernel release.
        release: String,
        /// Layout key.
        key: String,
        /// Slot needing it.
        slot: String,
    },
    /// The record has no prototype for a tracepoint.
    #[error("{release}: the record has no prototype for tracepoint {tracepoint}")]
    MissingTracepoint {
        /// Kernel release.
        release: String,
        /// Tracepoint name.
        tracepoint: String,
    },
    /// A tracepoint's prototype does not fit the core's probe.
    #[error("{release}: tracepoint {tracepoint}: {reason}")]
    TracepointMismatch {
        /// Kernel release.
        release: String,
        /// Tracepoint name.
        tracepoint: String,
        /// What does not fit.
        reason: String,
    },
    /// A kprobe target or its argument does not fit the core.
    #[error("{release}: function {function}: {reason}")]
    FunctionMismatch {
        /// Kernel release.
        release: String,
        /// Function (or candidate list).
        function: String,
        /// What does not fit.
        reason: String,
    },
    /// The kernel uses symbol versions but the record has no CRC for a symbol.
    #[error("{release}: no CRC for {symbol}, yet the kernel checks symbol versions (stock modules carry __versions); the record is incomplete")]
    MissingCrc {
        /// Kernel release.
        release: String,
        /// Symbol.
        symbol: String,
    },
    /// A symbol name is too long for a `__versions` entry.
    #[error("{release}: symbol {symbol} is longer than a __versions entry holds ({VERSION_NAME_MAX} bytes)")]
    NameTooLong {
        /// Kernel release.
        release: String,
        /// Symbol.
        symbol: String,
    },
    /// The core references a kernel symbol that is not exported.
    #[error("{release}: the core object references {symbol}, which the kernel does not export")]
    UnknownSymbol {
        /// Kernel release.
        release: String,
        /// Symbol.
        symbol: String,
    },
    /// The record states a fact no kernel can have.
    #[error(transparent)]
    Invalid(#[from] kmlink_metadata_db::record::RecordInvalid),
    /// The record or the object contradicts itself.
    #[error("{release}: inconsistent input: {what}")]
    Inconsistent {
        /// Kernel release.
        release: String,
        /// What is inconsistent.
        what: String,
    },
}

/// What the linker did, for messages and tests.
#[derive(Debug, Clone, Default)]
pub struct LinkReport {
    /// Imports bound, by core symbol.
    pub bindings: Vec<Binding>,
    /// Slots filled, by slot symbol.
    pub slots: BTreeMap<String, SlotValue>,
    /// `__versions` entries written.
    pub versions: Vec<(String, u32)>,
    /// Return-thunk sites listed in `.return_sites`.
    pub return_sites: usize,
    /// Retpoline sites listed in `.retpoline_sites`.
    pub retpoline_sites: usize,
    /// The `.modinfo` strings.
    pub modinfo: Vec<String>,
    /// Every option's value in this module (set or default).
    pub options: BTreeMap<String, u64>,
    /// Every kernel symbol the module references (undefined in it), sorted.
    pub undefined: Vec<String>,
}

/// A linked module.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The `.ko` file contents.
    pub ko: Vec<u8>,
    /// What went into it.
    pub report: LinkReport,
}

/// A module that passed every check.
#[derive(Debug, Clone)]
pub struct Built {
    /// The checks, all passed (or skipped).
    pub verdict: check::Verdict,
    /// The module.
    pub linked: Linked,
}

/// The checks refused: no module.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refusing to build a module for {}:\n{verdict}", verdict.release)]
pub struct Refused {
    /// The checks, at least one failed.
    pub verdict: check::Verdict,
}

/// Links `core` for the kernel `facts.record` describes, in memory, and
/// runs every check on the facts and the result; only a module whose checks
/// all pass is returned.
pub fn build(core: &[u8], facts: &check::Facts<'_>) -> Result<Built, Refused> {
    build_with(core, facts, &Options::new())
}

/// Link-time option values by name (the manifest's `option kml_opt_NAME`
/// entries, without the prefix); options not named keep the core's default.
pub type Options = BTreeMap<String, u64>;

/// [`build`] with option values set for this module.
pub fn build_with(
    core: &[u8],
    facts: &check::Facts<'_>,
    options: &Options,
) -> Result<Built, Refused> {
    let linked = link_with(core, facts.manifest, facts.record, options);
    let verdict = check::verify(facts, &linked);
    match linked {
        Ok(linked) if verdict.ok() => Ok(Built { verdict, linked }),
        _ => Err(Refused { verdict }),
    }
}

/// SHA256 (hex) of everything a module is made from: the core object and the
/// record. Equal inputs give a byte-identical module, so this names it.
pub fn content_hash(core: &[u8], record: &KernelRecord) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((core.len() as u64).to_le_bytes());
    h.update(core);
    h.update(serde_json::to_vec(record).unwrap_or_default());
    hex::encode(h.finalize())
}

/// The architecture of a core object: its ELF `e_machine`.
pub fn core_arch(core: &[u8]) -> Result<Arch, String> {
    use object::read::elf::FileHeader as _;
    let header = object::elf::FileHeader64::<object::Endianness>::parse(core)
        .map_err(|e| format!("not an ELF64 object: {e}"))?;
    let endian = header.endian().map_err(|e| format!("ELF header: {e}"))?;
    let machine = header.e_machine(endian);
    Arch::of_elf_machine(machine).ok_or_else(|| format!("unknown ELF machine {machine}"))
}

/// Refuses a record of another architecture than the core object, naming
/// both; the architecture the module is linked for.
fn check_arch(core: &[u8], record: &KernelRecord) -> Result<Arch, LinkError> {
    let release = record.identity.release.clone();
    let core_arch = match core_arch(core) {
        Ok(a) => a,
        Err(why) => {
            return Err(LinkError::ArchMismatch {
                release,
                record_arch: record.identity.arch.clone(),
                core_arch: why,
            })
        }
    };
    if record.identity.arch != core_arch.machine() {
        return Err(LinkError::ArchMismatch {
            release,
            record_arch: record.identity.arch.clone(),
            core_arch: core_arch.machine().to_string(),
        });
    }
    Ok(core_arch)
}

/// The kernel's page size from its record's config: `CONFIG_PAGE_SHIFT`
/// (every architecture from 6.9 on) or arm64's `CONFIG_ARM64_PAGE_SHIFT`.
/// `None` when the record names neither (4 KiB on x86; records extracted
/// before the page size was a fact).
fn record_page_size(record: &KernelRecord) -> Result<Option<u64>, LinkError> {
    for key in ["CONFIG_PAGE_SHIFT", "CONFIG_ARM64_PAGE_SHIFT"] {
        if let Some(v) = record.config.get(key) {
            return match v.trim().parse::<u32>() {
                Ok(shift @ 12..=16) => Ok(Some(1u64 << shift)),
                _ => Err(LinkError::Inconsistent {
                    release: record.identity.release.clone(),
                    what: format!("{key}={v} is not a page shift (12 to 16)"),
                }),
            };
        }
    }
    Ok(None)
}

/// `options` with the core's `page_size` option set from the record's page
/// size (a link-time fact, like a layout): an explicit `page_size` must
/// agree with the kernel's. A record without a page size keeps the core's
/// default (4096) unless its flavour says larger pages (Debian's
/// `arm64-16k`), which is refused: such a record predates the fact.
fn with_page_size(
    manifest: &Manifest,
    record: &KernelRecord,
    options: &Options,
) -> Result<Options, LinkError> {
    let mut out = options.clone();
    if !manifest.options.iter().any(|o| o.name == "page_size") {
        return Ok(out);
    }
    let release = record.identity.release.clone();
    match (record_page_size(record)?, options.get("page_size")) {
        (Some(kernel), Some(&set)) if set != kernel => Err(LinkError::Inconsistent {
            release,
            what: format!("option page_size={set}, but the kernel's pages are {kernel} bytes"),
        }),
        (Some(kernel), _) => {
            out.insert("page_size".into(), kernel);
            Ok(out)
        }
        (None, None)
            if ["16k", "64k"]
                .iter()
                .any(|s| record.identity.flavour.ends_with(s)) =>
        {
            Err(LinkError::Inconsistent {
                release,
                what: format!(
                    "flavour {} has larger pages than 4 KiB but the record names no page size (CONFIG_PAGE_SHIFT); re-extract the record",
                    record.identity.flavour
                ),
            })
        }
        (None, _) => Ok(out),
    }
}

/// The 64-bit absolute relocation of `arch`.
fn abs64(arch: Arch) -> u32 {
    match arch {
        Arch::X86_64 => elf::R_X86_64_64,
        Arch::Aarch64 => elf::R_AARCH64_ABS64,
    }
}

/// The arm64 module loader sizes a module's PLTs and ftrace trampolines at
/// load time into sections the module must carry: `.plt` (core text),
/// `.init.plt`, with dynamic ftrace `.text.ftrace_trampoline`, and on newer
/// kernels `.init.text.ftrace_trampoline` (7.3 refuses a module without it:
/// `invalid module format`, nothing in the log). Which ones is a fact of
/// the record (`conventions.loader_sections`, from a stock module); a
/// record without it (extracted before) gets the first three, 6.1's set.
/// Debian's stock modules have each as a one-byte PROGBITS placeholder
/// (the kernel's module.lds: `BYTE(0)`), the `.init.` ones without
/// SHF_EXECINSTR.
fn add_arm64_plt_sections(b: &mut Builder<'_>, record: &KernelRecord) -> Result<(), LinkError> {
    const OLDER: &[&str] = &[".plt", ".init.plt", ".text.ftrace_trampoline"];
    let names: Vec<&str> = if record.conventions.loader_sections.is_empty() {
        OLDER.to_vec()
    } else {
        record
            .conventions
            .loader_sections
            .iter()
            .map(String::as_str)
            .collect()
    };
    for name in names {
        if !kmlink_metadata_db::record::LOADER_SECTIONS.contains(&name) {
            return Err(LinkError::Inconsistent {
                release: record.identity.release.clone(),
                what: format!("loader section {name:?} is not one the linker knows how to lay out"),
            });
        }
        let flags = if name.starts_with(".init.") {
            elf::SHF_ALLOC
        } else {
            elf::SHF_ALLOC | elf::SHF_EXECINSTR
        };
        add_data_section(b, name, vec![0], 1, flags);
    }
    Ok(())
}

/// Links `core` (with its `manifest`) for the kernel `record` describes.
///
/// This is the bare linker: it checks the record against itself only. Use
/// [`build`] to also check it against the other sources of truth.
pub fn link(core: &[u8], manifest: &Manifest, record: &KernelRecord) -> Result<Linked, LinkError> {
    link_with(core, manifest, record, &Options::new())
}

/// [`link`] with option values set (see [`Options`]); an option the
/// manifest does not declare is an error.
pub fn link_with(
    core: &[u8],
    manifest: &Manifest,
    record: &KernelRecord,
    options: &Options,
) -> Result<Linked, LinkError> {
    let release = record.identity.release.clone();
    for name in options.keys() {
        if !manifest.options.iter().any(|o| &o.name == name) {
            let known: Vec<&str> = manifest.options.iter().map(|o| o.name.as_str()).collect();
            return Err(LinkError::Inconsistent {
                release,
                what: format!(
                    "option {name} is not one the core declares ({})",
                    known.join(", ")
                ),
            });
        }
    }
    record.validate()?;
    let arch = check_arch(core, record)?;
    let options = &with_page_size(manifest, record, options)?;
    let plan = Plan::resolve(manifest, record)?;
    check_this_module(record)?;
    if record.vermagic.trim().is_empty() {
        return Err(LinkError::Inconsistent {
            release,
            what: "empty vermagic".into(),
        });
    }

    let mut b = Builder::read(core)?;
    let mut report = LinkReport {
        slots: plan.slots.clone(),
        ..Default::default()
    };

    drop_sections(&mut b);
    let symtab = section_by_name(&b, ".symtab").ok_or_else(|| LinkError::Inconsistent {
        release: release.clone(),
        what: "core object has no .symtab".into(),
    })?;
    let text_sections: Vec<SectionId> = b
        .sections
        .iter()
        .filter(|s| !s.delete && s.sh_flags & u64::from(elf::SHF_EXECINSTR) != 0)
        .map(|s| s.id())
        .collect();

    // Imports: rename each abstract undefined symbol to its kernel name.
    for binding in plan.bindings.values() {
        if let Some(id) = symbol_by_name(&b, &binding.symbol) {
            let sym = b.symbols.get_mut(id);
            sym.name = ByteString::from(binding.kernel_name.clone().into_bytes());
            let bind = if binding.weak {
                elf::STB_WEAK
            } else {
                elf::STB_GLOBAL
            };
            let ty = sym.st_type();
            sym.set_st_info(bind, ty);
        }
        report.bindings.push(binding.clone());
    }

    // Layout table and options.
    fill_layout(&mut b, &plan, symtab, &release, arch)?;
    fill_options(&mut b, manifest, options, &release)?;
    report.options = manifest
        .options
        .iter()
        .map(|o| {
            let v = options.get(&o.name).copied().unwrap_or(o.default);
            (o.name.clone(), v)
        })
        .collect();

    // Every remaining undefined symbol must be a kernel export.
    let undefined = undefined_symbols(&b);
    let weak_absent: Vec<&str> = plan
        .bindings
        .values()
        .filter(|x| !x.present)
        .map(|x| x.kernel_name.as_str())
        .collect();
    for name in &undefined {
        if !record.exports.contains_key(name) && !weak_absent.contains(&name.as_str()) {
            return Err(LinkError::UnknownSymbol {
                release,
                symbol: name.clone(),
            });
        }
    }

    check_zero_targets(&b, &release, arch)?;
    report.undefined = undefined.clone();

    // Thunk sites.
    let (returns, retpolines) = thunk_sites(&b, &text_sections, &release)?;
    if record.conventions.return_sites && !returns.is_empty() {
        report.return_sites = returns.len();
        add_sites_section(&mut b, ".return_sites", &returns, symtab);
    }
    if record.conventions.retpoline && !retpolines.is_empty() {
        report.retpoline_sites = retpolines.len();
        add_sites_section(&mut b, ".retpoline_sites", &retpolines, symtab);
    }

    // Module sections.
    report.modinfo = modinfo(record, &undefined);
    add_data_section(
        &mut b,
        ".modinfo",
        join_nul(&report.modinfo),
        8,
        elf::SHF_ALLOC,
    );
    if record.conventions.modversions {
        report.versions = versions(record, &undefined, &weak_absent)?;
        let mut data = Vec::with_capacity(report.versions.len() * 64);
        for (name, crc) in &report.versions {
            data.extend_from_slice(&u64::from(*crc).to_le_bytes());
            let mut field = [0u8; 56];
            field[..name.len()].copy_from_slice(name.as_bytes());
            data.extend_from_slice(&field);
        }
        add_data_section(&mut b, "__versions", data, 32, elf::SHF_ALLOC);
    }
    add_this_module(&mut b, record, symtab, &release, arch)?;
    if arch == Arch::Aarch64 {
        add_arm64_plt_sections(&mut b, record)?;
    }

    b.delete_orphans();
    let mut ko = Vec::new();
    b.write(&mut ko)?;
    Ok(Linked { ko, report })
}

pub(crate) fn check_this_module(record: &KernelRecord) -> Result<(), LinkError> {
    let t = &record.this_module;
    let release = &record.identity.release;
    let bad = |what: String| {
        Err(LinkError::Inconsistent {
            release: release.clone(),
            what,
        })
    };
    if t.size == 0 || t.size > 1 << 16 {
        return bad(format!("struct module size {} is implausible", t.size));
    }
    if t.name_len < (MODULE_NAME.len() as u64 + 1) || t.name_offset + t.name_len > t.size {
        return bad(format!(
            "struct module name field {}+{} does not fit {}",
            t.name_offset, t.name_len, t.size
        ));
    }
    for (what, off) in [("init", t.init_offset), ("exit", t.exit_offset)] {
        if off + 8 > t.size || off % 8 != 0 {
            return bad(format!(
                "struct module {what} offset {off:#x} outside or misaligned in {} bytes",
                t.size
            ));
        }
        if off < t.name_offset + t.name_len && off + 8 > t.name_offset {
            return bad(format!(
                "struct module {what} offset {off:#x} overlaps name"
            ));
        }
    }
    if t.init_offset == t.exit_offset {
        return bad("struct module init and exit offsets coincide".into());
    }
    Ok(())
}

/// Sections the kernel has no use for: the manifest, compiler notes.
fn drop_sections(b: &mut Builder<'_>) {
    for section in b.sections.iter_mut() {
        let name = section.name.as_slice();
        if name == MANIFEST_SECTION.as_bytes()
            || name == b".comment"
            || name == b".note.GNU-stack"
            || name == b".note.gnu.property"
        {
            section.delete = true;
        }
    }
}

fn section_by_name(b: &Builder<'_>, name: &str) -> Option<SectionId> {
    b.sections
        .iter()
        .find(|s| !s.delete && s.name.as_slice() == name.as_bytes())
        .map(|s| s.id())
}

fn symbol_by_name(b: &Builder<'_>, name: &str) -> Option<SymbolId> {
    b.symbols
        .iter()
        .find(|s| !s.delete && s.name.as_slice() == name.as_bytes())
        .map(|s| s.id())
}

fn undefined_symbols(b: &Builder<'_>) -> Vec<String> {
    let mut names: Vec<String> = b
        .symbols
        .iter()
        .filter(|s| {
            !s.delete
                && s.section.is_none()
                && s.st_shndx == elf::SHN_UNDEF
                && !s.name.as_slice().is_empty()
        })
        .map(|s| String::from_utf8_lossy(s.name.as_slice()).into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The relocation section applying to `target`, created if absent.
fn rela_for(b: &mut Builder<'_>, target: SectionId, symtab: SectionId) -> SectionId {
    if let Some(s) = b
        .sections
        .iter()
        .find(|s| !s.delete && s.sh_type == elf::SHT_RELA && s.sh_info_section == Some(target))
    {
        return s.id();
    }
    let name = format!(
        ".rela{}",
        String::from_utf8_lossy(b.sections.get(target).name.as_slice())
    );
    let rela = b.sections.add();
    rela.name = ByteString::from(name.into_bytes());
    rela.sh_type = elf::SHT_RELA;
    rela.sh_flags = u64::from(elf::SHF_INFO_LINK);
    rela.sh_addralign = 8;
    rela.sh_entsize = 24;
    rela.sh_link_section = Some(symtab);
    rela.sh_info_section = Some(target);
    rela.data = SectionData::Relocation(Vec::new());
    rela.id()
}

fn push_rela(b: &mut Builder<'_>, rela: SectionId, r: Relocation) {
    if let SectionData::Relocation(relocs) = &mut b.sections.get_mut(rela).data {
        relocs.push(r);
    }
}

/// An undefined global symbol for a kernel export, reused if present.
fn import_symbol(b: &mut Builder<'_>, name: &str) -> SymbolId {
    if let Some(id) = symbol_by_name(b, name) {
        return id;
    }
    let sym = b.symbols.add();
    sym.name = ByteString::from(name.as_bytes().to_vec());
    sym.set_st_info(elf::STB_GLOBAL, elf::STT_NOTYPE);
    sym.st_shndx = elf::SHN_UNDEF;
    sym.id()
}

/// A local section symbol for `section`.
fn section_symbol(b: &mut Builder<'_>, section: SectionId) -> SymbolId {
    if let Some(s) = b
        .symbols
        .iter()
        .find(|s| !s.delete && s.section == Some(section) && s.st_type() == elf::STT_SECTION)
    {
        return s.id();
    }
    let sym = b.symbols.add();
    sym.section = Some(section);
    sym.set_st_info(elf::STB_LOCAL, elf::STT_SECTION);
    sym.id()
}

fn section_bytes_mut<'a>(b: &'a mut Builder<'_>, id: SectionId) -> Option<&'a mut Vec<u8>> {
    match &mut b.sections.get_mut(id).data {
        SectionData::Data(d) => Some(d.to_mut()),
        _ => None,
    }
}

fn fill_layout(
    b: &mut Builder<'_>,
    plan: &Plan,
    symtab: SectionId,
    release: &str,
    arch: Arch,
) -> Result<(), LinkError> {
    let Some(layout) = section_by_name(b, LAYOUT_SECTION) else {
        return if plan.slots.is_empty() {
            Ok(())
        } else {
            Err(LinkError::Inconsistent {
                release: release.into(),
                what: format!("core object has no {LAYOUT_SECTION}"),
            })
        };
    };
    let mut relocs = Vec::new();
    for (slot, value) in &plan.slots {
        let id = symbol_by_name(b, slot).ok_or_else(|| LinkError::Inconsistent {
            release: release.into(),
            what: format!("manifest names slot {slot}, which the object does not define"),
        })?;
        let sym = b.symbols.get(id);
        if sym.section != Some(layout) || sym.st_size != 8 {
            return Err(LinkError::Inconsistent {
                release: release.into(),
                what: format!("slot {slot} is not an 8-byte object in {LAYOUT_SECTION}"),
            });
        }
        let off = sym.st_value;
        let bytes = section_bytes_mut(b, layout).ok_or_else(|| LinkError::Inconsistent {
            release: release.into(),
            what: format!("{LAYOUT_SECTION} has no data"),
        })?;
        let range = usize::try_from(off)
            .ok()
            .and_then(|o| bytes.get_mut(o..o + 8))
            .ok_or_else(|| LinkError::Inconsistent {
                release: release.into(),
                what: format!("slot {slot} lies outside {LAYOUT_SECTION}"),
            })?;
        match value {
            SlotValue::Const(v) => range.copy_from_slice(&v.to_le_bytes()),
            SlotValue::Symbol { name, addend } => relocs.push((off, name.clone(), *addend)),
        }
    }
    if !relocs.is_empty() {
        let rela = rela_for(b, layout, symtab);
        for (off, name, addend) in relocs {
            let sym = import_symbol(b, &name);
            push_rela(
                b,
                rela,
                Relocation {
                    r_offset: off,
                    symbol: Some(sym),
                    r_type: abs64(arch),
                    r_addend: addend,
                },
            );
        }
    }
    Ok(())
}

/// Writes the values of the options named in `options` into
/// `.kmlink.options` (each an 8-byte object `kml_opt_NAME`).
fn fill_options(
    b: &mut Builder<'_>,
    manifest: &Manifest,
    options: &Options,
    release: &str,
) -> Result<(), LinkError> {
    let bad = |what: String| LinkError::Inconsistent {
        release: release.into(),
        what,
    };
    for spec in &manifest.options {
        let Some(value) = options.get(&spec.name) else {
            continue;
        };
        let section = section_by_name(b, OPTIONS_SECTION)
            .ok_or_else(|| bad(format!("core object has no {OPTIONS_SECTION}")))?;
        let id = symbol_by_name(b, &spec.symbol).ok_or_else(|| {
            bad(format!(
                "manifest names option {}, which the object does not define",
                spec.symbol
            ))
        })?;
        let sym = b.symbols.get(id);
        if sym.section != Some(section) || sym.st_size != 8 {
            return Err(bad(format!(
                "option {} is not an 8-byte object in {OPTIONS_SECTION}",
                spec.symbol
            )));
        }
        let off = sym.st_value;
        let bytes = section_bytes_mut(b, section)
            .ok_or_else(|| bad(format!("{OPTIONS_SECTION} has no data")))?;
        let range = usize::try_from(off)
            .ok()
            .and_then(|o| bytes.get_mut(o..o + 8))
            .ok_or_else(|| {
                bad(format!(
                    "option {} lies outside {OPTIONS_SECTION}",
                    spec.symbol
                ))
            })?;
        range.copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

/// RELA targets must hold zero: newer loaders refuse anything else, older
/// ones silently add to it.
fn check_zero_targets(b: &Builder<'_>, release: &str, arch: Arch) -> Result<(), LinkError> {
    for rela in b
        .sections
        .iter()
        .filter(|s| !s.delete && s.sh_type == elf::SHT_RELA)
    {
        let (Some(target), SectionData::Relocation(relocs)) = (rela.sh_info_section, &rela.data)
        else {
            continue;
        };
        let target = b.sections.get(target);
        let SectionData::Data(data) = &target.data else {
            continue;
        };
        let data = data.as_slice();
        for r in relocs {
            let width = match (arch, r.r_type) {
                (Arch::X86_64, elf::R_X86_64_64) => 8,
                (
                    Arch::X86_64,
                    elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 | elf::R_X86_64_32 | elf::R_X86_64_32S,
                ) => 4,
                (Arch::Aarch64, elf::R_AARCH64_ABS64 | elf::R_AARCH64_PREL64) => 8,
                (Arch::Aarch64, elf::R_AARCH64_ABS32 | elf::R_AARCH64_PREL32) => 4,
                // Instruction relocations: the loader rewrites the
                // immediate field of the instruction there, which is not 0.
                (
                    Arch::Aarch64,
                    elf::R_AARCH64_CALL26
                    | elf::R_AARCH64_JUMP26
                    | elf::R_AARCH64_CONDBR19
                    | elf::R_AARCH64_TSTBR14
                    | elf::R_AARCH64_ADR_PREL_PG_HI21
                    | elf::R_AARCH64_ADR_PREL_PG_HI21_NC
                    | elf::R_AARCH64_ADR_PREL_LO21
                    | elf::R_AARCH64_ADD_ABS_LO12_NC
                    | elf::R_AARCH64_LDST8_ABS_LO12_NC
                    | elf::R_AARCH64_LDST16_ABS_LO12_NC
                    | elf::R_AARCH64_LDST32_ABS_LO12_NC
                    | elf::R_AARCH64_LDST64_ABS_LO12_NC
                    | elf::R_AARCH64_LDST128_ABS_LO12_NC,
                ) => continue,
                (_, other) => {
                    return Err(LinkError::Inconsistent {
                        release: release.into(),
                        what: format!(
                        "relocation type {other} at {}+{:#x} is not one the module loader applies",
                        String::from_utf8_lossy(target.name.as_slice()),
                        r.r_offset
                    ),
                    })
                }
            };
            let start = usize::try_from(r.r_offset).unwrap_or(usize::MAX);
            match data.get(start..start.saturating_add(width)) {
                Some(bytes) if bytes.iter().all(|&x| x == 0) => {}
                _ => {
                    return Err(LinkError::Inconsistent {
                        release: release.into(),
                        what: format!(
                            "relocation target {}+{:#x} is not zero or out of range",
                            String::from_utf8_lossy(target.name.as_slice()),
                            r.r_offset
                        ),
                    })
                }
            }
        }
    }
    Ok(())
}

type Sites = Vec<(SectionId, u64)>;

/// Finds `jmp __x86_return_thunk` sites and `call`/`jmp` through
/// `__x86_indirect_thunk_*` in executable sections.
fn thunk_sites(
    b: &Builder<'_>,
    text: &[SectionId],
    release: &str,
) -> Result<(Sites, Sites), LinkError> {
    let mut returns = Vec::new();
    let mut retpolines = Vec::new();
    for rela in b
        .sections
        .iter()
        .filter(|s| !s.delete && s.sh_type == elf::SHT_RELA)
    {
        let (Some(target), SectionData::Relocation(relocs)) = (rela.sh_info_section, &rela.data)
        else {
            continue;
        };
        if !text.contains(&target) {
            continue;
        }
        let SectionData::Data(code) = &b.sections.get(target).data else {
            continue;
        };
        let code = code.as_slice();
        for r in relocs {
            let Some(sym) = r.symbol else { continue };
            let name = b.symbols.get(sym).name.as_slice();
            let is_return = name == b"__x86_return_thunk";
            let is_retpoline = name.starts_with(b"__x86_indirect_thunk_");
            if !is_return && !is_retpoline {
                continue;
            }
            let opcode = r
                .r_offset
                .checked_sub(1)
                .and_then(|o| code.get(o as usize))
                .copied();
            let site = r.r_offset - 1;
            match (is_return, opcode) {
                (true, Some(0xe9)) => returns.push((target, site)),
                (false, Some(0xe8 | 0xe9)) => retpolines.push((target, site)),
                _ => {
                    return Err(LinkError::Inconsistent {
                        release: release.into(),
                        what: format!(
                            "thunk reference at {:#x} is not a plain call/jmp (opcode {opcode:02x?}); the kernel cannot patch it",
                            r.r_offset
                        ),
                    })
                }
            }
        }
    }
    Ok((returns, retpolines))
}

/// A section of s32 PC-relative pointers to `sites`.
fn add_sites_section(
    b: &mut Builder<'_>,
    name: &str,
    sites: &[(SectionId, u64)],
    symtab: SectionId,
) {
    let id = add_data_section(b, name, vec![0u8; sites.len() * 4], 4, elf::SHF_ALLOC);
    let rela = rela_for(b, id, symtab);
    for (i, (section, off)) in sites.iter().enumerate() {
        let sym = section_symbol(b, *section);
        push_rela(
            b,
            rela,
            Relocation {
                r_offset: (i * 4) as u64,
                symbol: Some(sym),
                r_type: elf::R_X86_64_PC32,
                r_addend: *off as i64,
            },
        );
    }
}

fn add_data_section(
    b: &mut Builder<'_>,
    name: &str,
    data: Vec<u8>,
    align: u64,
    flags: u32,
) -> SectionId {
    let s = b.sections.add();
    s.name = ByteString::from(name.as_bytes().to_vec());
    s.sh_type = elf::SHT_PROGBITS;
    s.sh_flags = u64::from(flags);
    s.sh_addralign = align;
    s.sh_size = data.len() as u64;
    s.data = SectionData::Data(Bytes::from(data));
    s.id()
}

fn join_nul(items: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item.as_bytes());
        out.push(0);
    }
    out
}

fn modinfo(record: &KernelRecord, undefined: &[String]) -> Vec<String> {
    let mut info = vec![
        "license=GPL".to_string(),
        "description=kmlink kernel memory-allocation monitor".to_string(),
        format!("name={MODULE_NAME}"),
        format!("vermagic={}", record.vermagic),
        "depends=".to_string(),
    ];
    if record.conventions.retpoline {
        // True of the core: built with -mindirect-branch=thunk-extern.
        info.push("retpoline=Y".to_string());
    }
    let mut namespaces: Vec<&str> = undefined
        .iter()
        .filter_map(|u| record.exports.get(u).and_then(|e| e.namespace.as_deref()))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    info.extend(namespaces.into_iter().map(|ns| format!("import_ns={ns}")));
    info
}

fn versions(
    record: &KernelRecord,
    undefined: &[String],
    weak_absent: &[&str],
) -> Result<Vec<(String, u32)>, LinkError> {
    let release = &record.identity.release;
    let mut out = Vec::new();
    let crc_of = |name: &str| -> Result<u32, LinkError> {
        record
            .exports
            .get(name)
            .and_then(|e| e.crc)
            .ok_or_else(|| LinkError::MissingCrc {
                release: release.clone(),
                symbol: name.to_string(),
            })
    };
    if record.exports.contains_key("module_layout") {
        out.push(("module_layout".to_string(), crc_of("module_layout")?));
    }
    for name in undefined {
        if weak_absent.contains(&name.as_str()) {
            continue;
        }
        if name.len() > VERSION_NAME_MAX {
            return Err(LinkError::NameTooLong {
                release: release.clone(),
                symbol: name.clone(),
            });
        }
        out.push((name.clone(), crc_of(name)?));
    }
    Ok(out)
}

fn add_this_module(
    b: &mut Builder<'_>,
    record: &KernelRecord,
    symtab: SectionId,
    release: &str,
    arch: Arch,
) -> Result<(), LinkError> {
    let t = record.this_module;
    let mut data = vec![0u8; t.size as usize];
    let name_at = t.name_offset as usize;
    data[name_at..name_at + MODULE_NAME.len()].copy_from_slice(MODULE_NAME.as_bytes());
    let s = b.sections.add();
    s.name = ByteString::from(b".gnu.linkonce.this_module".to_vec());
    s.sh_type = elf::SHT_PROGBITS;
    s.sh_flags = u64::from(elf::SHF_ALLOC | elf::SHF_WRITE);
    s.sh_addralign = 64;
    s.sh_size = t.size;
    s.data = SectionData::Data(Bytes::from(data));
    let id = s.id();
    let rela = rela_for(b, id, symtab);
    for (func, off) in [
        ("init_module", t.init_offset),
        ("cleanup_module", t.exit_offset),
    ] {
        let sym = symbol_by_name(b, func).ok_or_else(|| LinkError::Inconsistent {
            release: release.into(),
            what: format!("core object does not define {func}"),
        })?;
        push_rela(
            b,
            rela,
            Relocation {
                r_offset: off,
                symbol: Some(sym),
                r_type: abs64(arch),
                r_addend: 0,
            },
        );
    }
    Ok(())
}
