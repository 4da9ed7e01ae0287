//! Copying a host executable and the shared libraries it needs into the
//! guest, using `ldd` to resolve them (it follows transitive `DT_NEEDED`
//! entries and the host's library search rules, which a plain ELF read would
//! have to reimplement).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Libraries (and the ELF interpreter) a dynamically linked host binary
/// needs, as absolute host paths; the guest gets them at the same paths.
/// Empty for a statically linked binary.
pub(crate) fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| Error::Io {
            context: format!("running ldd {}", binary.display()),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    if all.contains("not a dynamic executable") || all.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(Error::HostBinary(format!(
            "ldd {} failed: {}",
            binary.display(),
            all.trim()
        )));
    }
    parse_ldd(&stdout).map_err(|e| Error::HostBinary(format!("{}: {e}", binary.display())))
}

/// Parses `ldd` output into the list of absolute library paths.
pub(crate) fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = if let Some((name, rest)) = line.split_once("=>") {
            let target = rest.trim();
            if target.starts_with("not found") {
                return Err(format!("library {} not found", name.trim()));
            }
            // "/lib/x86_64-linux-gnu/libc.so.6 (0x...)"; vdso has no path.
            let p = target.split(" (").next().unwrap_or("").trim();
            if p.is_empty() {
                continue;
            }
            p
        } else {
            // "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)".
            line.split(" (").next().unwrap_or("").trim()
        };
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_typical_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc1e5f2000)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0c8a000000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c89e00000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0c8a0a0000)\n";
        let libs = parse_ldd(text).expect("parse");
        assert_eq!(
            libs,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn missing_library_is_an_error() {
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn ldd_on_test_binary() {
        if Command::new("ldd").arg("--version").output().is_err() {
            return kmlink_testkit::missing("ldd(1) (apt-get install libc-bin)");
        }
        let me = std::env::current_exe().expect("the test binary's path");
        let libs = shared_libraries(&me).expect("ldd");
        // Every Rust test binary on glibc links libc dynamically.
        assert!(
            libs.iter().any(|l| l
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))),
            "no libc among {libs:?}"
        );
        for l in &libs {
            assert!(l.is_absolute(), "{l:?}");
            assert!(l.exists(), "{l:?} does not exist");
        }
    }
}
