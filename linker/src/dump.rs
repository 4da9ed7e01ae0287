//! A stable text dump of a module, read back from its bytes: sections,
//! symbols, relocations, `.modinfo`, `__versions`, the `struct module`
//! section. Golden tests compare it; `kmlink build --dump` prints it.

use std::fmt::Write as _;

use object::read::elf::ElfFile64;
use object::{
    Endianness, Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget,
    SectionIndex, SymbolSection,
};
use sha2::{Digest, Sha256};

/// Dumps a module. Errors if the bytes are not an ELF the kernel's module
/// loader could read.
pub fn dump(ko: &[u8]) -> Result<String, String> {
    let elf = ElfFile64::<Endianness>::parse(ko).map_err(|e| format!("not an ELF64: {e}"))?;
    let facts = kmlink_donor::ko::read(ko).map_err(|e| kmlink_errors::chain(&e))?;
    let mut out = String::new();
    let section_name = |i: SectionIndex| {
        elf.section_by_index(i)
            .ok()
            .and_then(|s| s.name().ok().map(str::to_string))
            .unwrap_or_else(|| format!("#{}", i.0))
    };

    let _ = writeln!(out, "# sections: index name type flags align size sha256");
    for s in elf.sections() {
        let name = s.name().unwrap_or("?");
        let (ty, flags) = match s.flags() {
            object::SectionFlags::Elf { sh_flags } => {
                let hdr = elf.elf_section_table().section(s.index()).ok();
                (
                    hdr.map(|h| h.sh_type.get(Endianness::Little)).unwrap_or(0),
                    sh_flags,
                )
            }
            _ => (0, 0),
        };
        let data = s.data().unwrap_or(&[]);
        let hash = if ty == object::elf::SHT_NOBITS {
            "-".to_string()
        } else {
            hex::encode(&Sha256::digest(data)[..8])
        };
        let _ = writeln!(
            out,
            "[{:2}] {name} type={ty} flags={flags:#x} align={} size={:#x} {hash}",
            s.index().0,
            s.align(),
            s.size()
        );
    }

    let _ = writeln!(out, "\n# symbols: name bind type section value size");
    for sym in elf.symbols() {
        let name = sym.name().unwrap_or("?");
        let (bind, ty) = match sym.flags() {
            object::SymbolFlags::Elf { st_info, .. } => (st_info >> 4, st_info & 0xf),
            _ => (0, 0),
        };
        let section = match sym.section() {
            SymbolSection::Section(i) => section_name(i),
            SymbolSection::Undefined => "UNDEF".into(),
            SymbolSection::Absolute => "ABS".into(),
            SymbolSection::Common => "COMMON".into(),
            _ => "-".into(),
        };
        if name.is_empty() && ty == object::elf::STT_SECTION {
            let _ = writeln!(out, "(section {section})");
            continue;
        }
        let _ = writeln!(
            out,
            "{name} bind={bind} type={ty} {section} {:#x} {:#x}",
            sym.address(),
            sym.size()
        );
    }

    let _ = writeln!(out, "\n# relocations: section offset type symbol addend");
    for s in elf.sections() {
        let mut relocs: Vec<_> = s.relocations().collect();
        if relocs.is_empty() {
            continue;
        }
        relocs.sort_by_key(|(o, _)| *o);
        let _ = writeln!(out, "{}:", s.name().unwrap_or("?"));
        for (off, r) in relocs {
            let ty = match r.flags() {
                RelocationFlags::Elf { r_type } => r_type,
                _ => 0,
            };
            let target = match r.target() {
                RelocationTarget::Symbol(i) => elf
                    .symbol_by_index(i)
                    .ok()
                    .map(|sym| match sym.name() {
                        Ok("") | Err(_) => match sym.section() {
                            SymbolSection::Section(si) => section_name(si),
                            _ => "?".into(),
                        },
                        Ok(n) => n.to_string(),
                    })
                    .unwrap_or_else(|| "?".into()),
                _ => "-".into(),
            };
            let _ = writeln!(out, "  {off:#06x} type={ty} {target} {:+#x}", r.addend());
        }
    }

    let _ = writeln!(out, "\n# modinfo");
    for (k, v) in &facts.modinfo {
        let _ = writeln!(out, "{k}={v:?}");
    }
    let _ = writeln!(out, "\n# versions: crc name");
    for (name, crc) in &facts.versions {
        let _ = writeln!(out, "{crc:#010x} {name}");
    }
    let _ = writeln!(out, "\n# this_module");
    let hexopt = |v: Option<u64>| v.map(|v| format!("{v:#x}")).unwrap_or("-".into());
    let _ = writeln!(
        out,
        "size={} name_offset={}",
        hexopt(facts.this_module_size),
        hexopt(facts.this_module_name_offset)
    );
    for (off, sym) in &facts.this_module_relocs {
        let _ = writeln!(out, "{off:#x} {sym}");
    }
    Ok(out)
}
