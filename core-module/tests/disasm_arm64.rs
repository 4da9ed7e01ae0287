//! Disassembles the embedded aarch64 core object (binutils'
//! `aarch64-linux-gnu-objdump`) and holds it to the arm64 kernel's rules: no
//! FP/SIMD register, a BTI landing pad (`bti c`, or `paciasp`, which is one)
//! at every function the kernel may call indirectly, every return address
//! that is saved signed (`paciasp`) and authenticated before `ret`, only
//! relocation types the arm64 module loader applies (no GOT), and no call to
//! an out-of-line atomic helper.
//!
//! Without the cross binutils the test fails under `CI=true` and is skipped
//! (with a note) otherwise; scripts/setup installs them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use kmlink_core_module::CORE_OBJECT_AARCH64;

const OBJDUMP: &str = "aarch64-linux-gnu-objdump";

/// Relocation types `apply_relocate_add` in arch/arm64/kernel/module.c
/// handles (the ones a small-code-model object can carry).
const LOADER_RELOCS: &[&str] = &[
    "R_AARCH64_NONE",
    "R_AARCH64_ABS64",
    "R_AARCH64_ABS32",
    "R_AARCH64_ABS16",
    "R_AARCH64_PREL64",
    "R_AARCH64_PREL32",
    "R_AARCH64_PREL16",
    "R_AARCH64_LD_PREL_LO19",
    "R_AARCH64_ADR_PREL_LO21",
    "R_AARCH64_ADR_PREL_PG_HI21",
    "R_AARCH64_ADR_PREL_PG_HI21_NC",
    "R_AARCH64_ADD_ABS_LO12_NC",
    "R_AARCH64_LDST8_ABS_LO12_NC",
    "R_AARCH64_LDST16_ABS_LO12_NC",
    "R_AARCH64_LDST32_ABS_LO12_NC",
    "R_AARCH64_LDST64_ABS_LO12_NC",
    "R_AARCH64_LDST128_ABS_LO12_NC",
    "R_AARCH64_TSTBR14",
    "R_AARCH64_CONDBR19",
    "R_AARCH64_JUMP26",
    "R_AARCH64_CALL26",
];

struct Insn {
    off: u64,
    mnemonic: String,
    operands: String,
}

struct Code {
    /// Function name -> its instructions, in order.
    functions: BTreeMap<String, Vec<Insn>>,
    /// (relocation type, target symbol), every section.
    relocs: Vec<(String, String)>,
    /// Functions whose address is taken (a relocation other than a branch).
    address_taken: BTreeSet<String>,
}

fn objdump(obj: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(OBJDUMP).args(args).arg(obj).output().ok()?;
    assert!(out.status.success(), "{OBJDUMP} {args:?} failed");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `None` when the cross objdump is not installed.
fn load(obj: &[u8]) -> Option<Code> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.o");
    std::fs::write(&path, obj).expect("write object");
    let dis = objdump(&path, &["-d", "--no-show-raw-insn"])?;
    let rel = objdump(&path, &["-r"])?;
    let mut functions: BTreeMap<String, Vec<Insn>> = BTreeMap::new();
    let mut current = None;
    for line in dis.lines() {
        // "0000000000000120 <kml_probe_kmalloc>:"
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n.to_string())
        {
            functions.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        // "     120:\tbti\tc"
        let Some((off, rest)) = line.trim_start().split_once(":\t") else {
            continue;
        };
        let Ok(off) = u64::from_str_radix(off, 16) else {
            continue;
        };
        let (mnemonic, operands) = rest.split_once('\t').unwrap_or((rest, ""));
        let mnemonic = mnemonic.trim();
        // Branch targets print as an address and a label ("d28 <f+0x3>").
        let mut operands = operands.split("//").next().unwrap_or("");
        if is_branch(mnemonic) {
            operands = operands.rsplit_once(',').map_or("", |(regs, _)| regs);
        }
        if let Some(f) = current.as_ref().and_then(|c| functions.get_mut(c)) {
            f.push(Insn {
                off,
                mnemonic: mnemonic.to_string(),
                operands: operands.trim().to_string(),
            });
        }
    }
    let starts: BTreeMap<u64, String> = functions
        .iter()
        .filter_map(|(n, insns)| insns.first().map(|i| (i.off, n.clone())))
        .collect();
    let mut relocs = Vec::new();
    let mut address_taken = BTreeSet::new();
    for line in rel.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 3 || !w[1].starts_with("R_AARCH64") {
            continue;
        }
        let (sym, addend) = w[2].split_once('+').unwrap_or((w[2], "0"));
        // A static function is relocated as `.text+0x120`.
        let target = match (
            sym,
            u64::from_str_radix(addend.trim_start_matches("0x"), 16),
        ) {
            (".text", Ok(off)) => starts
                .get(&off)
                .cloned()
                .unwrap_or_else(|| w[2].to_string()),
            _ => sym.to_string(),
        };
        let branch = matches!(w[1], "R_AARCH64_CALL26" | "R_AARCH64_JUMP26");
        if !branch && functions.contains_key(&target) {
            address_taken.insert(target.clone());
        }
        relocs.push((w[1].to_string(), target));
    }
    Some(Code {
        functions,
        relocs,
        address_taken,
    })
}

fn is_branch(mnemonic: &str) -> bool {
    matches!(mnemonic, "b" | "bl" | "cbz" | "cbnz" | "tbz" | "tbnz") || mnemonic.starts_with("b.")
}

fn is_fp_simd_register(op: &str) -> bool {
    let op = op.trim_matches(|c: char| matches!(c, '{' | '}' | '[' | ']' | ' ' | '!'));
    let mut chars = op.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let digits: String = chars.take_while(char::is_ascii_digit).collect();
    matches!(first, 'v' | 'q' | 'd' | 's' | 'h' | 'b') && !digits.is_empty()
}

fn check_no_fp_simd(code: &Code) -> Result<(), String> {
    for (name, insns) in &code.functions {
        for i in insns {
            let fp_op = i.operands.split(',').any(is_fp_simd_register);
            let fp_sysreg = ["fpcr", "fpsr"].iter().any(|r| i.operands.contains(r));
            if fp_op || fp_sysreg {
                return Err(format!(
                    "{name}+{:#x}: {} {} uses FP/SIMD state",
                    i.off, i.mnemonic, i.operands
                ));
            }
        }
    }
    Ok(())
}

fn check_bti(code: &Code) -> Result<(), String> {
    let mut must = code.address_taken.clone();
    must.insert("init_module".into());
    must.insert("cleanup_module".into());
    if must.len() <= 5 {
        return Err(format!("expected callbacks among {must:?}"));
    }
    for name in &must {
        let insns = code
            .functions
            .get(name)
            .ok_or_else(|| format!("{name} is not a function of .text"))?;
        let first = insns.first().map(|i| i.mnemonic.as_str()).unwrap_or("");
        let first = format!(
            "{first} {}",
            insns.first().map(|i| i.operands.as_str()).unwrap_or("")
        );
        if !matches!(first.trim(), "bti c" | "paciasp") {
            return Err(format!(
                "{name} is called indirectly but starts with {first}"
            ));
        }
    }
    Ok(())
}

fn check_pac(code: &Code) -> Result<(), String> {
    let mut signed = 0;
    for (name, insns) in &code.functions {
        // Shrink-wrapped: the return address is signed right before it is
        // first saved, on the paths that save it.
        let mut signs = false;
        for i in insns {
            signs |= i.mnemonic == "paciasp";
            let saves_lr =
                matches!(i.mnemonic.as_str(), "stp" | "str") && i.operands.contains("x30");
            if saves_lr && !signs {
                return Err(format!(
                    "{name}+{:#x}: {} {} saves the return address unsigned (no paciasp before)",
                    i.off, i.mnemonic, i.operands
                ));
            }
        }
        if signs {
            signed += 1;
            if !insns.iter().any(|i| i.mnemonic == "autiasp") {
                return Err(format!(
                    "{name} signs its return address and never authenticates it"
                ));
            }
        }
    }
    if signed == 0 {
        return Err("no function signs its return address: built without pac-ret?".into());
    }
    Ok(())
}

fn check_relocs(code: &Code) -> Result<(), String> {
    for (kind, target) in &code.relocs {
        if !LOADER_RELOCS.contains(&kind.as_str()) {
            return Err(format!(
                "{kind} against {target}: the arm64 module loader does not apply it"
            ));
        }
    }
    Ok(())
}

fn check_outline_atomics(code: &Code) -> Result<(), String> {
    match code
        .relocs
        .iter()
        .find(|(_, t)| t.starts_with("__aarch64_"))
    {
        Some((kind, t)) => Err(format!("{kind} against {t}: an out-of-line atomic helper")),
        None => Ok(()),
    }
}

type Check = fn(&Code) -> Result<(), String>;

fn check_all(code: &Code) -> Vec<String> {
    let checks: [(&str, Check); 5] = [
        ("fp/simd", check_no_fp_simd),
        ("bti", check_bti),
        ("pac", check_pac),
        ("relocations", check_relocs),
        ("outline atomics", check_outline_atomics),
    ];
    checks
        .iter()
        .filter_map(|(name, f)| f(code).err().map(|e| format!("{name}: {e}")))
        .collect()
}

fn skip(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is not installed (scripts/setup installs it)"
    );
    eprintln!("skipped: {what} is not installed (scripts/setup installs it)");
}

#[test]
fn aarch64_core_object_obeys_kernel_code_rules() {
    let Some(code) = load(CORE_OBJECT_AARCH64) else {
        return skip(OBJDUMP);
    };
    assert!(code.functions.len() > 20, "too few functions disassembled");
    let failures = check_all(&code);
    assert!(failures.is_empty(), "{failures:#?}");
}

const BAD_SRC: &str = r#"
extern int maybe(int) __attribute__((weak));
static int hook(int x) { return x + 1; }
int (*volatile fp)(int) = hook;
int (*volatile fp2)(int) = hook;
int (*volatile fp3)(int) = hook;
double scale(double v) { return v * 1.5; }
int call_it(int v) { return fp(v) + (maybe ? maybe(v) : 0) + fp2(v) + fp3(v); }
int bump(int *p) { return __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST); }
int init_module(void) { return call_it(1); }
void cleanup_module(void) {}
"#;

#[test]
fn the_aarch64_checks_catch_what_they_forbid() {
    let cc = std::env::var("KMLINK_CC_AARCH64").unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("bad.c");
    let o = dir.path().join("bad.o");
    std::fs::write(&c, BAD_SRC).expect("write");
    // User-space style: FP allowed, outline atomics, no BTI or PAC, a weak
    // symbol through the GOT.
    let status = Command::new(&cc)
        .args(["-O2", "-ffreestanding", "-fno-pic", "-moutline-atomics"])
        .args(["-mbranch-protection=none", "-fno-omit-frame-pointer", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status();
    let Ok(status) = status else {
        return skip(&cc);
    };
    assert!(status.success(), "{cc} failed on the bad source");
    let Some(code) = load(&std::fs::read(&o).expect("object")) else {
        return skip(OBJDUMP);
    };
    let failures = check_all(&code).join("\n");
    for what in ["fp/simd", "bti", "pac", "relocations", "outline atomics"] {
        assert!(
            failures.contains(what),
            "the {what} check missed a violation:\n{failures}"
        );
    }
}
