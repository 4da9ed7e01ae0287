//! Reads the facts kmlink finds by content in an arm64 `vmlinuz` (a raw
//! Image): the banner, the BTF blob, and from BTF the layouts the arm64 core
//! and module loader depend on; the export table, compared with
//! `Module.symvers` (vmlinux entries) when one is given.
//!
//! ```text
//! cargo run -p kmlink-donor --example arm64_image -- ~/.cache/kmlink/kernels/6.1.0-47-arm64/boot/vmlinuz-6.1.0-47-arm64 [Module.symvers]
//! ```
use std::process::ExitCode;

use kmlink_donor::arm64_image::Arm64Image;
use kmlink_donor::btf::Btf;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: arm64_image VMLINUZ [MODULE.SYMVERS]");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), String> {
        let data = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let img = Arm64Image::parse(&data).map_err(|e| format!("{path}: {e}"))?;
        print!("banner: {}", img.banner().map_err(|e| e.to_string())?);
        let raw = img.btf().map_err(|e| e.to_string())?;
        let btf = Btf::parse(raw).map_err(|e| e.to_string())?;
        println!("btf: {} bytes, {} types", raw.len(), btf.type_count());
        for s in ["module", "pt_regs", "task_struct", "kprobe", "kretprobe"] {
            println!("sizeof {s}: {:?}", btf.struct_size(s));
        }
        for (s, m) in [
            ("module", "name"),
            ("module", "init"),
            ("module", "exit"),
            ("module", "arch"),
            ("pt_regs", "regs"),
            ("pt_regs", "sp"),
            ("pt_regs", "pc"),
            ("task_struct", "cpu"),
            ("task_struct", "thread_info.cpu"),
            ("task_struct", "tgid"),
            ("mod_arch_specific", "core"),
            ("mod_arch_specific", "init"),
            ("mod_arch_specific", "ftrace_trampolines"),
            ("mod_arch_specific", "init_ftrace_trampolines"),
        ] {
            let off = btf.member_offset(s, m).map_err(|e| e.to_string())?;
            println!("offsetof {s}.{m}: {off:?}");
        }
        let t = img.export_table().map_err(|e| e.to_string())?;
        println!(
            "exports: {} at {:#x} ({} + {:?} GPL-only table), kflagstab {:?}, kcrctab {:?}, strings {:#x}",
            t.exports.len(),
            t.ksymtab,
            t.entries,
            t.gpl_entries,
            t.kflagstab.map(|o| format!("{o:#x}")),
            t.kcrctab.map(|o| format!("{o:#x}")),
            t.strings
        );
        if let Some(symvers) = std::env::args().nth(2) {
            let text = std::fs::read_to_string(&symvers).map_err(|e| format!("{symvers}: {e}"))?;
            let listed = kmlink_donor::symvers::parse(&text).map_err(|e| e.to_string())?;
            let mine: std::collections::BTreeMap<_, _> =
                t.exports.iter().map(|e| (e.name.as_str(), e)).collect();
            let (mut same, mut differ) = (0, 0);
            let theirs: Vec<_> = listed.iter().filter(|s| s.owner == "vmlinux").collect();
            for s in &theirs {
                match mine.get(s.name.as_str()) {
                    Some(m)
                        if m.gpl == s.gpl
                            && m.namespace == s.namespace
                            && m.crc.unwrap_or(0) == s.crc.unwrap_or(0) =>
                    {
                        same += 1
                    }
                    other => {
                        differ += 1;
                        if differ <= 5 {
                            println!("differs: {s:?} vs image {other:?}");
                        }
                    }
                }
            }
            println!(
                "Module.symvers: {} vmlinux entries, {same} equal, {differ} differ; image has {}",
                theirs.len(),
                t.exports.len()
            );
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arm64_image: {e}");
            ExitCode::FAILURE
        }
    }
}
