//! Disassembles the embedded core object and holds it to the kernel's rules:
//! no SSE/AVX/MMX/x87, no bare `ret` (return thunks), no indirect branch
//! except through a retpoline thunk, `endbr64` at every function the kernel
//! may call indirectly, and `%gs` accesses only through layout-table slots.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::{
    CpuidFeature, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register,
};
use kmlink_core_module::{CORE_OBJECT, LAYOUT_SECTION};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex};

struct Code {
    /// (offset, instruction) of .text.
    insns: Vec<(u64, Instruction)>,
    /// Relocations in .text: offset -> target symbol name (or section name).
    relocs: BTreeMap<u64, String>,
    /// Function symbols: start offset -> name.
    functions: BTreeMap<u64, String>,
    /// Functions whose address is taken (relocated other than as a call).
    address_taken: BTreeSet<String>,
}

fn load(obj: &[u8]) -> Code {
    let file = object::File::parse(obj).expect("object parses");
    let text = file.section_by_name(".text").expect(".text");
    let data = text.data().expect("text data");
    let layout: Option<SectionIndex> = file.section_by_name(LAYOUT_SECTION).map(|s| s.index());
    let name_of = |target: RelocationTarget| -> String {
        match target {
            RelocationTarget::Symbol(i) => {
                let sym = file.symbol_by_index(i).expect("symbol");
                if sym.section_index().is_some() && sym.section_index() == layout {
                    format!("{LAYOUT_SECTION}:{}", sym.name().unwrap_or_default())
                } else {
                    sym.name().unwrap_or_default().to_string()
                }
            }
            _ => String::new(),
        }
    };
    let mut functions = BTreeMap::new();
    let mut by_addr = BTreeMap::new();
    for sym in file.symbols() {
        if sym.kind() == object::SymbolKind::Text && sym.section_index() == Some(text.index()) {
            functions.insert(sym.address(), sym.name().unwrap_or_default().to_string());
            by_addr.insert(
                (sym.section_index().map(|i| i.0), sym.address()),
                sym.name().unwrap_or_default().to_string(),
            );
        }
    }
    let mut relocs = BTreeMap::new();
    for (off, r) in text.relocations() {
        relocs.insert(off, name_of(r.target()));
    }
    // Address-taken functions: any relocation to a function other than the
    // rel32 of a direct call/jmp (R_X86_64_PLT32/PC32 right after e8/e9).
    let mut address_taken = BTreeSet::new();
    for section in file.sections() {
        let bytes = section.data().unwrap_or_default();
        for (off, r) in section.relocations() {
            let target = match r.target() {
                RelocationTarget::Symbol(i) => file.symbol_by_index(i).expect("symbol"),
                _ => continue,
            };
            let addr = if target.kind() == object::SymbolKind::Section {
                r.addend() as u64
            } else {
                target.address()
            };
            let Some(name) = by_addr.get(&(target.section_index().map(|i| i.0), addr)) else {
                continue;
            };
            let is_branch = section.index() == text.index()
                && off > 0
                && matches!(bytes.get(off as usize - 1), Some(0xe8 | 0xe9))
                && matches!(
                    r.kind(),
                    object::RelocationKind::Relative | object::RelocationKind::PltRelative
                );
            if !is_branch {
                address_taken.insert(name.clone());
            }
        }
    }
    let mut decoder = Decoder::with_ip(64, data, 0, DecoderOptions::NONE);
    let mut insns = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        insns.push((insn.ip(), insn));
    }
    Code {
        insns,
        relocs,
        functions,
        address_taken,
    }
}

fn reloc_in<'a>(code: &'a Code, insn: &Instruction) -> Option<&'a String> {
    code.relocs
        .range(insn.ip()..insn.ip() + insn.len() as u64)
        .next()
        .map(|(_, n)| n)
}

fn check_no_fpu_or_simd(code: &Code) -> Result<(), String> {
    for (off, insn) in &code.insns {
        for f in insn.cpuid_features() {
            let bad = matches!(
                f,
                CpuidFeature::FPU | CpuidFeature::FPU287 | CpuidFeature::FPU387 | CpuidFeature::MMX
            ) || format!("{f:?}").starts_with("SSE")
                || format!("{f:?}").starts_with("AVX");
            if bad {
                return Err(format!("{off:#x}: {insn} uses {f:?}"));
            }
        }
    }
    Ok(())
}

fn check_returns(code: &Code) -> Result<(), String> {
    let mut thunk_jumps = 0;
    for (off, insn) in &code.insns {
        if matches!(insn.mnemonic(), Mnemonic::Ret | Mnemonic::Retf) {
            return Err(format!("{off:#x}: bare {insn}"));
        }
        if insn.mnemonic() == Mnemonic::Jmp
            && reloc_in(code, insn).is_some_and(|n| n == "__x86_return_thunk")
        {
            thunk_jumps += 1;
        }
    }
    if thunk_jumps == 0 {
        return Err("no jmp __x86_return_thunk found: was the core built with -mfunction-return=thunk-extern?".to_string());
    }
    Ok(())
}

fn check_indirect_branches(code: &Code) -> Result<(), String> {
    for (off, insn) in &code.insns {
        let indirect = matches!(
            insn.flow_control(),
            FlowControl::IndirectBranch | FlowControl::IndirectCall
        );
        if indirect {
            return Err(format!(
                "{off:#x}: indirect branch {insn} (must call __x86_indirect_thunk_*)"
            ));
        }
        if matches!(
            insn.flow_control(),
            FlowControl::Call | FlowControl::UnconditionalBranch
        ) {
            if let Some(target) = reloc_in(code, insn) {
                if target.starts_with("__x86_indirect_thunk_")
                    && !matches!(insn.op0_kind(), OpKind::NearBranch64)
                {
                    return Err(format!("{off:#x}: {insn}"));
                }
            }
        }
    }
    Ok(())
}

fn check_endbr(code: &Code) -> Result<(), String> {
    let mut must: BTreeSet<String> = code.address_taken.clone();
    must.insert("init_module".into());
    must.insert("cleanup_module".into());
    if must.len() <= 5 {
        return Err(format!("expected callbacks among {must:?}"));
    }
    for (start, name) in &code.functions {
        if !must.contains(name) {
            continue;
        }
        let first = code
            .insns
            .iter()
            .find(|(o, _)| o == start)
            .map(|(_, i)| i)
            .ok_or_else(|| format!("{name}: function start does not decode"))?;
        if first.mnemonic() != Mnemonic::Endbr64 {
            return Err(format!(
                "{name} is called indirectly but starts with {first}"
            ));
        }
    }
    for name in &must {
        if !(code.functions.values().any(|f| f == name)) {
            return Err(format!("{name} is not a function of .text"));
        }
    }
    Ok(())
}

fn check_gs(code: &Code) -> Result<(), String> {
    // Most recent instruction writing each register, in program order.
    let mut last_write: BTreeMap<Register, Instruction> = BTreeMap::new();
    let mut gs = 0;
    for (off, insn) in &code.insns {
        if code.functions.contains_key(off) {
            last_write.clear();
        }
        if insn.segment_prefix() == Register::GS
            || insn.memory_segment() == Register::GS && insn.op_count() > 0 && has_memory(insn)
        {
            gs += 1;
            if insn.memory_displacement64() != 0 {
                return Err(format!("{off:#x}: {insn}: %gs with a displacement"));
            }
            if insn.memory_index() != Register::None {
                return Err(format!("{off:#x}: {insn}: %gs with an index"));
            }
            let base = insn.memory_base().full_register();
            let src = last_write
                .get(&base)
                .ok_or_else(|| format!("{off:#x}: {insn}: base register of unknown origin"))?;
            let from_slot = reloc_in(code, src).is_some_and(|n| n.starts_with(LAYOUT_SECTION));
            if !(from_slot && src.mnemonic() == Mnemonic::Mov) {
                return Err(format!(
                    "{off:#x}: {insn}: base loaded by {src}, not from a layout slot"
                ));
            }
        }
        for i in 0..insn.op_count() {
            if insn.op_kind(i) == OpKind::Register && i == 0 {
                last_write.insert(insn.op_register(0).full_register(), *insn);
            }
        }
    }
    if gs < 2 {
        return Err("expected %gs accesses for current and the CPU number".to_string());
    }
    Ok(())
}

fn has_memory(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory)
}

/// One rule: Ok, or what breaks it.
type Check = fn(&Code) -> Result<(), String>;

fn check_all(code: &Code) -> Vec<String> {
    let checks: [(&str, Check); 5] = [
        ("fpu/simd", check_no_fpu_or_simd),
        ("returns", check_returns),
        ("indirect branches", check_indirect_branches),
        ("endbr64", check_endbr),
        ("%gs", check_gs),
    ];
    checks
        .iter()
        .filter_map(|(name, f)| f(code).err().map(|e| format!("{name}: {e}")))
        .collect()
}

#[test]
fn core_object_obeys_kernel_code_rules() {
    let failures = check_all(&load(CORE_OBJECT));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Compiles `src` with `flags` into an object (gcc builds the core too).
fn compile(src: &str, flags: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("bad.c");
    let o = dir.path().join("bad.o");
    std::fs::write(&c, src).expect("write");
    let status =
        std::process::Command::new(std::env::var("KMLINK_CC").unwrap_or_else(|_| "gcc".into()))
            .args([
                "-O2",
                "-ffreestanding",
                "-fno-pic",
                "-mcmodel=kernel",
                "-fno-asynchronous-unwind-tables",
                "-c",
            ])
            .args(flags)
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .expect("gcc runs");
    assert!(status.success());
    std::fs::read(&o).expect("object")
}

const BAD_SRC: &str = r#"
static int hook(int x) { return x + 1; }
int (*volatile fp)(int) = hook;
double scale(double v) { return v * 1.5; }
int call_it(int v) { return fp(v); }
unsigned long gs_read(void) { unsigned long v; __asm__ volatile("movq %%gs:0x10, %0" : "=r"(v)); return v; }
int init_module(void) { return call_it(1); }
void cleanup_module(void) {}
"#;

#[test]
fn the_checks_catch_what_they_forbid() {
    // Plain user-space style flags: SSE, bare ret, indirect call, no endbr.
    let code = load(&compile(BAD_SRC, &["-fcf-protection=none", "-msse2"]));
    let failures = check_all(&code).join("\n");
    for what in ["fpu/simd", "returns", "indirect branches", "endbr64", "%gs"] {
        assert!(
            failures.contains(what),
            "the {what} check missed a violation:\n{failures}"
        );
    }
}
