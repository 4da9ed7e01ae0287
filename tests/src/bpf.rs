//! Two tiny eBPF objects for `bpftool prog load`, written as ELF with the
//! `object` crate (no clang needed): kprobe programs on `__kmalloc`, the
//! entry point an allocation monitor such as bcc's memleak attaches to.
//!
//! - [`reads_kernel_memory`]: reads the size argument through the
//!   `bpf_probe_read_kernel` helper (113), as memleak does for its
//!   arguments. Under `lockdown=confidentiality` the kernel withholds that
//!   helper (`LOCKDOWN_BPF_READ_KERNEL`), so the verifier refuses the
//!   program.
//! - [`trivial`]: returns 0 and calls nothing.

use object::write::{Object, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

/// The ELF section (libbpf derives the program type, kprobe, from it).
pub const SECTION: &str = "kprobe/__kmalloc";

/// One eBPF instruction: opcode, dst and src registers, offset, immediate.
fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [
        op,
        (src << 4) | (dst & 0xf),
        o[0],
        o[1],
        i[0],
        i[1],
        i[2],
        i[3],
    ]
}

const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const ADD64_IMM: u8 = 0x07;
const LDX_DW: u8 = 0x79;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// `bpf_probe_read_kernel(void *dst, u32 size, const void *unsafe_ptr)`.
pub const HELPER_PROBE_READ_KERNEL: i32 = 113;
/// `offsetof(struct pt_regs, di)` on x86-64: the first argument.
const PT_REGS_DI: i16 = 112;

fn code(insns: &[[u8; 8]]) -> Vec<u8> {
    insns.iter().flatten().copied().collect()
}

/// `bpf_probe_read_kernel(&buf, 8, (void *)regs->di); return 0;`
pub fn reads_kernel_memory() -> Vec<u8> {
    elf(
        "kmalloc_read",
        &code(&[
            insn(MOV64_REG, 6, 1, 0, 0),       // r6 = ctx
            insn(MOV64_REG, 1, 10, 0, 0),      // r1 = fp
            insn(ADD64_IMM, 1, 0, 0, -8),      // r1 = fp - 8 (dst)
            insn(MOV64_IMM, 2, 0, 0, 8),       // r2 = 8 (size)
            insn(LDX_DW, 3, 6, PT_REGS_DI, 0), // r3 = regs->di
            insn(CALL, 0, 0, 0, HELPER_PROBE_READ_KERNEL),
            insn(MOV64_IMM, 0, 0, 0, 0), // r0 = 0
            insn(EXIT, 0, 0, 0, 0),
        ]),
    )
}

/// `return 0;`
pub fn trivial() -> Vec<u8> {
    elf(
        "kmalloc_noop",
        &code(&[insn(MOV64_IMM, 0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)]),
    )
}

/// A relocatable BPF ELF: the program in [`SECTION`] under a global
/// function symbol `name`, and a GPL `license` section (the helper is
/// GPL-only).
fn elf(name: &str, text: &[u8]) -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);
    let prog = obj.add_section(Vec::new(), SECTION.as_bytes().to_vec(), SectionKind::Text);
    obj.append_section_data(prog, text, 8);
    obj.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: text.len() as u64,
        kind: SymbolKind::Text,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(prog),
        flags: SymbolFlags::None,
    });
    let lic = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
    obj.append_section_data(lic, b"GPL\0", 1);
    // Writing an in-memory object with these fixed contents cannot fail.
    obj.write().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    #[test]
    fn objects_are_bpf_elf_with_one_program() {
        for (bytes, name, len) in [
            (reads_kernel_memory(), "kmalloc_read", 64),
            (trivial(), "kmalloc_noop", 16),
        ] {
            let f = object::File::parse(&*bytes).expect("parses");
            assert_eq!(f.architecture(), Architecture::Bpf);
            let s = f.section_by_name(SECTION).expect("program section");
            assert_eq!(s.data().expect("data").len(), len);
            let sym = f.symbols().find(|s| s.name() == Ok(name)).expect("symbol");
            assert!(sym.is_global());
            assert_eq!(sym.size(), len as u64);
            let lic = f.section_by_name("license").expect("license");
            assert_eq!(lic.data().expect("data"), b"GPL\0");
        }
        let text = reads_kernel_memory();
        let f = object::File::parse(&*text).expect("parses");
        let code = f
            .section_by_name(SECTION)
            .expect("s")
            .data()
            .expect("d")
            .to_vec();
        // The call instruction names helper 113.
        assert_eq!(&code[40..48], &[0x85, 0, 0, 0, 113, 0, 0, 0]);
        // ldxdw r3, [r6 + 112]
        assert_eq!(&code[32..36], &[0x79, 0x63, 112, 0]);
    }
}
