//! Reads the facts kmlink finds by content in an arm64 `vmlinuz` (a raw
//! Image): the banner, the BTF blob, and from BTF the layouts the arm64 core
//! and module loader depend on.
//!
//! ```text
//! cargo run -p kmlink-donor --example arm64_image -- ~/.cache/kmlink/kernels/6.1.0-47-arm64/boot/vmlinuz-6.1.0-47-arm64
//! ```
use std::process::ExitCode;

use kmlink_donor::arm64_image::Arm64Image;
use kmlink_donor::btf::Btf;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: arm64_image VMLINUZ");
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
        ] {
            let off = btf.member_offset(s, m).map_err(|e| e.to_string())?;
            println!("offsetof {s}.{m}: {off:?}");
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
