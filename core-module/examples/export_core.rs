//! Writes the embedded core object, as this build compiled it, to
//! `DIR/kmlink-core.o`, and what it was built from (SHA-256 of each source
//! file, the flags) to `DIR/kmlink-core.o.txt`. `scripts/golden-core` uses
//! it to refresh the object the linker's golden tests link.
//!
//! `cargo run -p kmlink-core-module --example export_core -- DIR`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kmlink_core_module::{CORE_CFLAGS, CORE_OBJECT};
use sha2::{Digest, Sha256};

/// The files the object is compiled from (build.rs).
const SOURCES: &[&str] = &[
    "src/kmlink.c",
    "src/kmlink.h",
    "src/kml_hash.h",
    "src/kml_arch_x86.h",
];

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: export_core DIR");
        return ExitCode::from(2);
    };
    match export(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("export_core: {e}");
            ExitCode::FAILURE
        }
    }
}

fn export(dir: &Path) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut about = String::from(
        "# The core object the linker's golden tests link (written by scripts/golden-core).\n",
    );
    for src in SOURCES {
        let data = std::fs::read(root.join(src)).map_err(|e| format!("reading {src}: {e}"))?;
        let _ = writeln!(
            about,
            "core-module/{src} sha256={}",
            hex(&Sha256::digest(&data))
        );
    }
    let _ = writeln!(about, "cflags: {CORE_CFLAGS}");
    let _ = writeln!(about, "object sha256={}", hex(&Sha256::digest(CORE_OBJECT)));
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (name, data) in [
        ("kmlink-core.o", CORE_OBJECT),
        ("kmlink-core.o.txt", about.as_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
