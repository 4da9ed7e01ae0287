//! Facts from a kernel module (`.ko`, ET_REL): `.modinfo`, `__versions`,
//! extended modversions, the `.gnu.linkonce.this_module` layout and the
//! module's own exports.
//!
//! A stock module is the reference for what the kernel accepts: its
//! `this_module` section size is `sizeof(struct module)` and its relocations
//! there sit at `init`/`exit`; kmlink cross-checks these against BTF.

use std::collections::HashMap;
use std::path::Path;

use object::read::elf::ElfFile64;
use object::{
    Endianness, Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolIndex,
    SymbolSection,
};

use crate::codec::{decompress, hex_magic, Codec};
use crate::exports::{self, Prel32, Table};
use crate::{Error, Export};

/// `struct modversion_info { unsigned long crc; char name[MODULE_NAME_LEN]; }`
/// on 64-bit: 8 + 56 bytes.
pub const MODVERSION_INFO_SIZE: usize = 64;
/// Longest name (without NUL) that fits a `__versions` entry.
pub const MODVERSION_NAME_MAX: usize = 55;

/// The largest module file (compressed or not) [`load`] reads: the largest
/// stock module of a distribution kernel is a few tens of MiB.
pub const MAX_MODULE_FILE: u64 = 128 << 20;

/// Decompress a module file by magic (falling back to a name hint for
/// error messages): plain ELF, `.xz`, `.zst`, `.gz` (any codec
/// [`crate::bzimage`] knows is accepted).
pub fn load(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_MODULE_FILE {
        return Err(Error::DecompressedSize {
            codec: "none",
            context: path.display().to_string(),
            what: format!(
                "file of {len} bytes exceeds {MAX_MODULE_FILE} bytes, the most a kernel module file can be"
            ),
        });
    }
    // The size from metadata is 0 for devices and pipes (`/dev/zero`): bound
    // the read itself.
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            f.take(MAX_MODULE_FILE + 1).read_to_end(&mut data)
        })
        .map_err(io)?;
    if data.len() as u64 > MAX_MODULE_FILE {
        return Err(Error::DecompressedSize {
            codec: "none",
            context: path.display().to_string(),
            what: format!(
                "more than {MAX_MODULE_FILE} bytes, the most a kernel module file can be (is it the right file?)"
            ),
        });
    }
    if data.starts_with(b"\x7fELF") {
        return Ok(data);
    }
    let not_a_module = |what: String| Error::NotAModule {
        path: path.to_owned(),
        what,
    };
    if data.is_empty() {
        return Err(not_a_module("the file is empty".into()));
    }
    let codec = Codec::detect(&data).ok_or_else(|| {
        not_a_module(format!(
            "it is neither ELF nor compressed with xz, zstd, gzip, bzip2, lz4 or lzma (it starts with {})",
            hex_magic(&data)
        ))
    })?;
    decompress(&data, codec, None, &path.display().to_string())
}

/// What [`read`] finds in a module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleFacts {
    /// `.modinfo` `key=value` pairs in order.
    pub modinfo: Vec<(String, String)>,
    /// `vermagic=` value, exact (trailing space kept).
    pub vermagic: Option<String>,
    /// `name=` value.
    pub name: Option<String>,
    /// `__versions` entries `{u64 crc; char name[56]}` → (name, crc).
    pub versions: Vec<(String, u32)>,
    /// `__version_ext_crcs` / `__version_ext_names` present (extended
    /// modversions, 6.13+ with `CONFIG_EXTENDED_MODVERSIONS`).
    pub has_ext_versions: bool,
    /// Extended modversions entries (name, crc), parallel tables zipped.
    pub ext_versions: Vec<(String, u32)>,
    /// `.gnu.linkonce.this_module` `sh_size` (= `sizeof(struct module)`).
    pub this_module_size: Option<u64>,
    /// Relocations against `.gnu.linkonce.this_module`: (offset, symbol),
    /// sorted by offset, e.g. `(0x138, "init_module")`.
    pub this_module_relocs: Vec<(u64, String)>,
    /// Offset of the module name string inside `.gnu.linkonce.this_module`.
    pub this_module_name_offset: Option<u64>,
    /// Section names in header order.
    pub sections: Vec<String>,
    /// The module's own exports (`__ksymtab*`, `__kcrctab*`, `__kflagstab`),
    /// owner = module name.
    pub exports: Vec<Export>,
    /// Undefined symbols (symbol table order).
    pub undefined: Vec<String>,
}

impl ModuleFacts {
    /// Value of the first `.modinfo` entry with this key.
    pub fn modinfo_get(&self, key: &str) -> Option<&str> {
        self.modinfo
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

struct Ko<'a> {
    elf: ElfFile64<'a, Endianness>,
    /// section name → (field offset → (symbol, addend)).
    relocs: HashMap<String, HashMap<u64, (SymbolIndex, i64)>>,
}

impl<'a> Ko<'a> {
    fn section_data(&self, name: &str) -> Result<Option<&'a [u8]>, Error> {
        match self.elf.section_by_name(name) {
            Some(s) => s
                .data()
                .map(Some)
                .map_err(|e| Error::elf(format!("module section {name}"), e)),
            None => Ok(None),
        }
    }

    fn relocs_of(&mut self, name: &str) -> Result<(), Error> {
        let Some(sec) = self.elf.section_by_name(name) else {
            return Ok(());
        };
        let mut map = HashMap::new();
        for (off, r) in sec.relocations() {
            if let RelocationTarget::Symbol(sym) = r.target() {
                map.insert(off, (sym, r.addend()));
            }
        }
        self.relocs.insert(name.to_owned(), map);
        Ok(())
    }

    fn symbol_name(&self, idx: SymbolIndex) -> Result<String, Error> {
        let sym = self
            .elf
            .symbol_by_index(idx)
            .map_err(|e| Error::elf(format!("symbol {}", idx.0), e))?;
        let name = sym
            .name()
            .map_err(|e| Error::elf(format!("name of symbol {}", idx.0), e))?;
        if name.is_empty() {
            // Section symbols: name them after their section.
            if let Some(si) = sym.section_index() {
                if let Ok(s) = self.elf.section_by_index(si) {
                    return Ok(s.name().unwrap_or("").to_owned());
                }
            }
        }
        Ok(name.to_owned())
    }
}

impl Prel32 for Ko<'_> {
    fn target(&self, section: &str, offset: u64) -> Result<Option<&[u8]>, Error> {
        let Some(&(sym, addend)) = self.relocs.get(section).and_then(|m| m.get(&offset)) else {
            return Ok(None);
        };
        let s = self
            .elf
            .symbol_by_index(sym)
            .map_err(|e| Error::elf(format!("relocation at {section}+{offset:#x}"), e))?;
        let SymbolSection::Section(si) = s.section() else {
            return Err(Error::section(
                section,
                offset,
                format!("PREL32 target symbol {} is not defined in a section", sym.0),
            ));
        };
        let data = self.data_of(si, section, offset)?;
        let at = i128::from(s.address()) + i128::from(addend);
        usize::try_from(at)
            .ok()
            .and_then(|a| data.get(a..))
            .map(Some)
            .ok_or_else(|| {
                Error::section(
                    section,
                    offset,
                    format!("PREL32 target {at:#x} outside its section"),
                )
            })
    }
}

impl<'a> Ko<'a> {
    fn data_of(&self, si: SectionIndex, section: &str, offset: u64) -> Result<&'a [u8], Error> {
        self.elf
            .section_by_index(si)
            .and_then(|s| s.data())
            .map_err(|e| Error::elf(format!("target of relocation at {section}+{offset:#x}"), e))
    }
}

/// Read the facts of a module ELF (already decompressed, see [`load`]).
pub fn read(elf: &[u8]) -> Result<ModuleFacts, Error> {
    let file = ElfFile64::<Endianness>::parse(elf).map_err(|e| Error::elf("module", e))?;
    {
        use object::read::elf::FileHeader;
        let (h, endian) = (file.elf_header(), file.endian());
        let machine = h.e_machine(endian);
        if machine != object::elf::EM_X86_64 && machine != object::elf::EM_AARCH64 {
            return Err(Error::ForeignModule {
                what: format!(
                    "its ELF header says machine {machine} ({}), kmlink links for x86_64 (62) and aarch64 (183)",
                    match machine {
                        object::elf::EM_386 => "i386",
                        object::elf::EM_RISCV => "RISC-V",
                        object::elf::EM_PPC64 => "PowerPC 64",
                        object::elf::EM_S390 => "s390",
                        _ => "not x86_64",
                    }
                ),
            });
        }
        let ty = h.e_type(endian);
        if ty != object::elf::ET_REL {
            return Err(Error::ForeignModule {
                what: format!(
                    "it is an ELF {} (type {ty}), a kernel module is relocatable (ET_REL)",
                    match ty {
                        object::elf::ET_EXEC => "executable",
                        object::elf::ET_DYN => "shared object or program",
                        object::elf::ET_CORE => "core dump",
                        _ => "file of another type",
                    }
                ),
            });
        }
    }
    let mut ko = Ko {
        elf: file,
        relocs: HashMap::new(),
    };
    const THIS_MODULE: &str = ".gnu.linkonce.this_module";
    for name in [
        THIS_MODULE,
        "__ksymtab",
        "__ksymtab_gpl",
        "__kcrctab",
        "__kcrctab_gpl",
    ] {
        ko.relocs_of(name)?;
    }
    let ko = ko;
    let mut f = ModuleFacts {
        sections: ko
            .elf
            .sections()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .filter(|n| !n.is_empty())
            .collect(),
        ..ModuleFacts::default()
    };

    if let Some(mi) = ko.section_data(".modinfo")? {
        for entry in mi.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let s = String::from_utf8_lossy(entry);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            f.modinfo.push((k.to_owned(), v.to_owned()));
        }
    }
    f.vermagic = f.modinfo_get("vermagic").map(str::to_owned);
    f.name = f.modinfo_get("name").map(str::to_owned);

    if let Some(v) = ko.section_data("__versions")? {
        f.versions = read_versions(v)?;
    }
    let ext_crcs = ko.section_data("__version_ext_crcs")?;
    let ext_names = ko.section_data("__version_ext_names")?;
    f.has_ext_versions = ext_crcs.is_some() || ext_names.is_some();
    if let (Some(c), Some(n)) = (ext_crcs, ext_names) {
        f.ext_versions = read_ext_versions(c, n)?;
    }

    if let Some(sec) = ko.elf.section_by_name(THIS_MODULE) {
        f.this_module_size = Some(sec.size());
        let mut relocs = Vec::new();
        if let Some(m) = ko.relocs.get(THIS_MODULE) {
            for (&off, &(sym, _)) in m {
                relocs.push((off, ko.symbol_name(sym)?));
            }
        }
        relocs.sort();
        f.this_module_relocs = relocs;
        let data = sec
            .data()
            .map_err(|e| Error::elf(format!("module section {THIS_MODULE}"), e))?;
        f.this_module_name_offset = name_offset(data, f.name.as_deref());
    }

    let owner = f.name.clone().unwrap_or_default();
    let flags = ko.section_data("__kflagstab")?;
    for (tab, crc_tab, gpl) in [
        ("__ksymtab", "__kcrctab", false),
        ("__ksymtab_gpl", "__kcrctab_gpl", true),
    ] {
        let Some(sec) = ko.elf.section_by_name(tab) else {
            continue;
        };
        let size = sec.size();
        let crcs = match ko.section_data(crc_tab)? {
            Some(d) => Some(module_crcs(&ko, crc_tab, d)?),
            None => None,
        };
        let table = Table {
            name: tab,
            size,
            gpl,
            crcs,
            flags: if tab == "__ksymtab" { flags } else { None },
        };
        f.exports.extend(exports::read_table(&table, &ko, &owner)?);
    }

    for sym in ko.elf.symbols() {
        if sym.is_undefined() {
            if let Ok(n) = sym.name() {
                if !n.is_empty() {
                    f.undefined.push(n.to_owned());
                }
            }
        }
    }
    Ok(f)
}

/// `__kcrctab` values: stored directly (5.19+), or through an absolute
/// `__crc_<sym>` symbol relocation (older kernels).
fn module_crcs(ko: &Ko<'_>, name: &str, data: &[u8]) -> Result<Vec<u32>, Error> {
    let mut out = exports::crcs_le(data);
    if let Some(rel) = ko.relocs.get(name) {
        for (i, crc) in out.iter_mut().enumerate() {
            if let Some(&(sym, addend)) = rel.get(&(i as u64 * 4)) {
                let s = ko
                    .elf
                    .symbol_by_index(sym)
                    .map_err(|e| Error::elf(format!("{name} relocation {i}"), e))?;
                *crc = (s.address() as i64).wrapping_add(addend) as u32;
            }
        }
    }
    Ok(out)
}

/// Parse `__versions` (`struct modversion_info` array).
pub fn read_versions(data: &[u8]) -> Result<Vec<(String, u32)>, Error> {
    if !data.len().is_multiple_of(MODVERSION_INFO_SIZE) {
        return Err(Error::section(
            "__versions",
            0,
            format!(
                "size {} is not a multiple of {MODVERSION_INFO_SIZE}",
                data.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(data.len() / MODVERSION_INFO_SIZE);
    for (i, e) in data.chunks_exact(MODVERSION_INFO_SIZE).enumerate() {
        let off = (i * MODVERSION_INFO_SIZE) as u64;
        let mut crc8 = [0u8; 8];
        crc8.copy_from_slice(&e[..8]);
        let crc = u64::from_le_bytes(crc8);
        let crc = u32::try_from(crc).map_err(|_| {
            Error::section("__versions", off, format!("CRC {crc:#x} exceeds 32 bits"))
        })?;
        let raw = &e[8..];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = std::str::from_utf8(&raw[..end])
            .map_err(|_| Error::section("__versions", off + 8, "name is not UTF-8"))?;
        out.push((name.to_owned(), crc));
    }
    Ok(out)
}

/// Parse extended modversions: `__version_ext_crcs` (u32 each) parallel to
/// the NUL-separated `__version_ext_names`.
pub fn read_ext_versions(crcs: &[u8], names: &[u8]) -> Result<Vec<(String, u32)>, Error> {
    if !crcs.len().is_multiple_of(4) {
        return Err(Error::section(
            "__version_ext_crcs",
            0,
            format!("size {} is not a multiple of 4", crcs.len()),
        ));
    }
    let crcs = exports::crcs_le(crcs);
    let mut out = Vec::with_capacity(crcs.len());
    let mut pos = 0usize;
    for (i, crc) in crcs.into_iter().enumerate() {
        let rest = names.get(pos..).unwrap_or(&[]);
        let name = exports::cstr(rest, "__version_ext_names", pos as u64).map_err(|_| {
            Error::section(
                "__version_ext_names",
                pos as u64,
                format!("missing or unterminated name for entry {i}"),
            )
        })?;
        pos += name.len() + 1;
        out.push((name.to_owned(), crc));
    }
    Ok(out)
}

/// Offset of the module name inside `this_module` bytes: where `name` + NUL
/// occurs, or (without a name) the first non-zero printable run ending in NUL.
fn name_offset(data: &[u8], name: Option<&str>) -> Option<u64> {
    match name {
        Some(n) if !n.is_empty() => {
            let mut needle = n.as_bytes().to_vec();
            needle.push(0);
            data.windows(needle.len())
                .position(|w| w == needle.as_slice())
                .map(|p| p as u64)
        }
        _ => {
            let start = data.iter().position(|&b| b != 0)?;
            let len = data[start..].iter().position(|&b| b == 0)?;
            data[start..start + len]
                .iter()
                .all(|b| b.is_ascii_graphic())
                .then_some(start as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WObject, Relocation, Symbol, SymbolSection as WSymSec};
    use object::{
        Architecture, BinaryFormat, RelocationEncoding, RelocationFlags, RelocationKind,
        SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };

    fn abs64() -> RelocationFlags {
        RelocationFlags::Generic {
            kind: RelocationKind::Absolute,
            encoding: RelocationEncoding::Generic,
            size: 64,
        }
    }

    fn pc32() -> RelocationFlags {
        RelocationFlags::Generic {
            kind: RelocationKind::Relative,
            encoding: RelocationEncoding::Generic,
            size: 32,
        }
    }

    fn version(name: &str, crc: u64) -> Vec<u8> {
        let mut e = crc.to_le_bytes().to_vec();
        let mut n = name.as_bytes().to_vec();
        n.resize(56, 0);
        e.extend_from_slice(&n);
        e
    }

    /// A tiny module: .text with init/exit, .modinfo, __versions,
    /// this_module (0x380 bytes, name at 24, relocs at 0x138/0x350),
    /// one GPL export with a CRC, and an undefined symbol.
    fn fixture(with_ext: bool) -> Vec<u8> {
        let mut o = WObject::new(
            BinaryFormat::Elf,
            Architecture::X86_64,
            object::Endianness::Little,
        );
        let text = o.add_section(vec![], b".text".to_vec(), SectionKind::Text);
        o.append_section_data(text, &[0xc3; 32], 16);
        let sym = |o: &mut WObject, name: &str, value, section, kind| {
            o.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value,
                size: 0,
                kind,
                scope: SymbolScope::Linkage,
                weak: false,
                section,
                flags: SymbolFlags::None,
            })
        };
        let init = sym(
            &mut o,
            "init_module",
            0,
            WSymSec::Section(text),
            SymbolKind::Text,
        );
        let exit = sym(
            &mut o,
            "cleanup_module",
            16,
            WSymSec::Section(text),
            SymbolKind::Text,
        );
        let func = sym(
            &mut o,
            "demo_func",
            8,
            WSymSec::Section(text),
            SymbolKind::Text,
        );
        sym(
            &mut o,
            "_printk",
            0,
            WSymSec::Undefined,
            SymbolKind::Unknown,
        );

        let mi = o.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyString);
        o.append_section_data(
            mi,
            b"license=GPL\0depends=\0name=demo\0vermagic=6.1.0-47-amd64 SMP preempt mod_unload modversions \0",
            1,
        );
        let v = o.add_section(vec![], b"__versions".to_vec(), SectionKind::ReadOnlyData);
        let mut vers = version("module_layout", 0x160c_03af);
        vers.extend(version("_printk", 0x9299_7ed8));
        o.append_section_data(v, &vers, 32);
        if with_ext {
            let c = o.add_section(
                vec![],
                b"__version_ext_crcs".to_vec(),
                SectionKind::ReadOnlyData,
            );
            o.append_section_data(c, &[1, 0, 0, 0, 2, 0, 0, 0], 4);
            let n = o.add_section(
                vec![],
                b"__version_ext_names".to_vec(),
                SectionKind::ReadOnlyData,
            );
            o.append_section_data(n, b"short\0a_very_long_name\0", 1);
        }

        let tm = o.add_section(
            vec![],
            b".gnu.linkonce.this_module".to_vec(),
            SectionKind::Data,
        );
        let mut body = vec![0u8; 0x380];
        body[24..28].copy_from_slice(b"demo");
        o.append_section_data(tm, &body, 64);
        for (off, s) in [(0x138, init), (0x350, exit)] {
            o.add_relocation(
                tm,
                Relocation {
                    offset: off,
                    symbol: s,
                    addend: 0,
                    flags: abs64(),
                },
            )
            .expect("reloc");
        }

        let strs = o.add_section(
            vec![],
            b"__ksymtab_strings".to_vec(),
            SectionKind::ReadOnlyString,
        );
        o.append_section_data(strs, b"demo_func\0NS_DEMO\0", 1);
        let kname = sym(
            &mut o,
            "__kstrtab_demo_func",
            0,
            WSymSec::Section(strs),
            SymbolKind::Data,
        );
        let kns = sym(
            &mut o,
            "__kstrtabns_demo_func",
            10,
            WSymSec::Section(strs),
            SymbolKind::Data,
        );
        let ks = o.add_section(vec![], b"__ksymtab_gpl".to_vec(), SectionKind::ReadOnlyData);
        o.append_section_data(ks, &[0u8; 12], 4);
        for (off, s) in [(0, func), (4, kname), (8, kns)] {
            o.add_relocation(
                ks,
                Relocation {
                    offset: off,
                    symbol: s,
                    addend: 0,
                    flags: pc32(),
                },
            )
            .expect("reloc");
        }
        let kc = o.add_section(vec![], b"__kcrctab_gpl".to_vec(), SectionKind::ReadOnlyData);
        o.append_section_data(kc, &0xdead_beefu32.to_le_bytes(), 4);
        o.write().expect("write")
    }

    #[test]
    fn reads_module_facts() {
        let f = read(&fixture(false)).expect("read");
        assert_eq!(f.name.as_deref(), Some("demo"));
        assert_eq!(
            f.vermagic.as_deref(),
            Some("6.1.0-47-amd64 SMP preempt mod_unload modversions ")
        );
        assert_eq!(f.modinfo[0], ("license".into(), "GPL".into()));
        assert_eq!(f.modinfo_get("depends"), Some(""));
        assert_eq!(
            f.versions,
            vec![
                ("module_layout".into(), 0x160c_03af),
                ("_printk".into(), 0x9299_7ed8)
            ]
        );
        assert!(!f.has_ext_versions);
        assert_eq!(f.this_module_size, Some(0x380));
        assert_eq!(
            f.this_module_relocs,
            vec![
                (0x138, "init_module".into()),
                (0x350, "cleanup_module".into())
            ]
        );
        assert_eq!(f.this_module_name_offset, Some(24));
        assert!(f
            .sections
            .iter()
            .any(|s| s == ".rela.gnu.linkonce.this_module"));
        assert_eq!(
            f.exports,
            vec![Export {
                name: "demo_func".into(),
                crc: Some(0xdead_beef),
                gpl: true,
                namespace: Some("NS_DEMO".into()),
                owner: "demo".into(),
            }]
        );
        assert_eq!(f.undefined, vec!["_printk".to_owned()]);
    }

    #[test]
    fn extended_modversions() {
        let f = read(&fixture(true)).expect("read");
        assert!(f.has_ext_versions);
        assert_eq!(
            f.ext_versions,
            vec![("short".into(), 1), ("a_very_long_name".into(), 2)]
        );
        assert!(read_ext_versions(&[1, 0, 0, 0, 2, 0, 0, 0], b"only_one\0").is_err());
        assert!(read_ext_versions(&[1, 0, 0], b"x\0").is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let e = read_versions(&[0u8; 65]).expect_err("size");
        assert!(e.to_string().contains("__versions"), "{e}");
        let e = read_versions(&version("x", 1 << 40)).expect_err("crc");
        assert!(e.to_string().contains("32 bits"), "{e}");
        assert!(read(b"\x7fELF\x02\x01\x01 junk").is_err());
        let good = fixture(false);
        for i in (0..good.len()).step_by(2) {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            let _ = read(&b);
        }
    }

    #[test]
    fn load_decompresses() {
        use std::io::Write;
        let elf = fixture(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("demo.ko");
        std::fs::write(&plain, &elf).expect("write");
        assert_eq!(load(&plain).expect("plain"), elf);

        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&elf).expect("xz");
        let xz = dir.path().join("demo.ko.xz");
        std::fs::write(&xz, e.finish().expect("xz")).expect("write");
        assert_eq!(load(&xz).expect("xz"), elf);

        let zst = dir.path().join("demo.ko.zst");
        std::fs::write(&zst, zstd::encode_all(&elf[..], 3).expect("zstd")).expect("write");
        assert_eq!(load(&zst).expect("zst"), elf);

        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&elf).expect("gz");
        let gz = dir.path().join("demo.ko.gz");
        std::fs::write(&gz, g.finish().expect("gz")).expect("write");
        assert_eq!(load(&gz).expect("gz"), elf);

        let junk = dir.path().join("junk.ko");
        std::fs::write(&junk, b"hello").expect("write");
        let e = load(&junk).expect_err("junk");
        assert!(e.to_string().contains("junk.ko"), "{e}");
        let e = load(&dir.path().join("missing.ko")).expect_err("missing");
        assert!(e.to_string().contains("missing.ko"), "{e}");
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use object::write::Object as WObject;
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};

    #[test]
    fn dev_zero_as_a_module_is_refused_promptly_naming_the_bound() {
        let t = std::time::Instant::now();
        let e = load(Path::new("/dev/zero")).expect_err("unbounded input");
        assert!(
            e.to_string()
                .contains(&format!("more than {MAX_MODULE_FILE} bytes")),
            "{e}"
        );
        assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
    }

    #[test]
    fn empty_and_text_files_are_not_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.ko");
        std::fs::write(&empty, b"").expect("write");
        let e = load(&empty).expect_err("empty");
        assert!(
            e.to_string()
                .contains("is not a kernel module: the file is empty"),
            "{e}"
        );
        let text = dir.path().join("notes.ko");
        std::fs::write(&text, b"hello, world\n").expect("write");
        let e = load(&text).expect_err("text").to_string();
        assert!(
            e.contains("is not a kernel module") && !e.contains("unknown compression"),
            "{e}"
        );
    }

    fn object_of(arch: Architecture) -> Vec<u8> {
        let mut o = WObject::new(BinaryFormat::Elf, arch, Endianness::Little);
        let s = o.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        o.append_section_data(s, b"vermagic=6.1.0-47-amd64 SMP mod_unload \0", 1);
        o.write().expect("object")
    }

    #[test]
    fn a_module_of_another_architecture_is_refused() {
        let e = read(&object_of(Architecture::Riscv64)).expect_err("foreign");
        assert!(e.to_string().contains("RISC-V"), "{e}");
        assert!(read(&object_of(Architecture::X86_64)).is_ok());
        assert!(read(&object_of(Architecture::Aarch64)).is_ok());
    }

    #[test]
    fn a_program_is_not_a_module() {
        let Ok(ls) = std::fs::read("/bin/ls") else {
            return;
        };
        if ls.get(18) != Some(&62) {
            return; // not an x86_64 host
        }
        let e = read(&ls).expect_err("program");
        assert!(e.to_string().contains("ET_REL"), "{e}");
    }
}
