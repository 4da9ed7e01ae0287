//! Shared helpers: keys made by the `openssl` CLI (an independent maker),
//! Debian's `sign-file`, and the rule that a missing prerequisite fails
//! under CI.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A prerequisite is missing: fail under CI (`CI=true`), else say so and
/// return `None` so the caller can skip.
pub fn missing(what: &str) -> Option<std::convert::Infallible> {
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("prerequisite missing under CI: {what}");
    }
    eprintln!("SKIPPED (prerequisite missing: {what})");
    None
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether the `openssl` CLI is here.
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A self-signed code-signing key pair made by `openssl req` in `dir`:
/// `(key.pem, cert.pem, cert.der)`. `newkey` is e.g. `rsa:2048` or
/// `ec -pkeyopt ec_paramgen_curve:prime256v1`.
pub fn openssl_pair(
    dir: &Path,
    name: &str,
    newkey: &[&str],
    days: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key.pem"));
    let cert = dir.join(format!("{name}.crt.pem"));
    let der = dir.join(format!("{name}.crt.der"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-x509", "-nodes", "-days", days, "-subj"])
        .arg(format!("/CN=kmlink test {name}/"))
        .args(["-addext", "extendedKeyUsage=codeSigning", "-newkey"])
        .args(newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    run(&mut cmd);
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(&der));
    (key, cert, der)
}

/// Debian's `sign-file` (package linux-kbuild-VER), or `$KMLINK_SIGN_FILE`.
pub fn sign_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KMLINK_SIGN_FILE") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("linux-kbuild-"))
        .map(|e| e.path().join("scripts/sign-file"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Deterministic pseudo-module bytes (sign-file does not parse them).
pub fn module_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut out = b"\x7fELF".to_vec();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 8) as u8);
    }
    out
}
