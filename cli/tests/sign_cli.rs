//! `kmlink build` / `kmlink sign` / `kmlink key generate` as an operator
//! runs them: signed modules match Debian's sign-file byte for byte, the
//! HSM path (digest out, signature in) gives the same bytes, and every bad
//! key or certificate is refused with nothing written.
//!
//! Links for 6.1.0-47-amd64 from the record built into kmlink (offline).
//! Needs `openssl` and Debian's `sign-file` (scripts/setup installs both);
//! fails under CI without them.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KERNEL: &str = "6.1.0-47-amd64";

/// The binary with the host's record store kept out (`KMLINK_DB` names a
/// store that does not exist), so builds use the built-in bundle as on CI.
fn kmlink_cmd() -> Command {
    common::command(common::NO_STORE)
}

mod common;

fn kmlink(args: &[&str]) -> Output {
    kmlink_cmd()
        .args(args)
        .env_remove("KMLINK_SIGN_KEY")
        .env_remove("KMLINK_SIGN_CERT")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = kmlink(args);
    assert!(
        out.status.success(),
        "kmlink {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = kmlink(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "kmlink {} should fail:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn sign_file() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("linux-kbuild-"))
        .map(|e| e.path().join("scripts/sign-file"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !ci(),
            "prerequisite missing under CI: Debian's sign-file (linux-kbuild)"
        );
        eprintln!("SKIPPED: no sign-file (apt-get install linux-kbuild-6.1)");
    }
    found
}

/// A key made by `kmlink key generate` in `dir/keys`.
fn generated_key(dir: &Path) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    let out = String::from_utf8(
        kmlink_cmd()
            .args([
                "key",
                "generate",
                "--dir",
                s(&keys),
                "--name",
                "kmlink cli test",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(out.contains("kmlink cli test: "), "{out}");
    (
        keys.join("kmlink-signing.key"),
        keys.join("kmlink-signing.der"),
    )
}

#[test]
fn signed_build_is_sign_files_output_and_reproducible() {
    let Some(sf) = sign_file() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = generated_key(dir.path());
    let plain = dir.path().join("plain.ko");
    let signed = dir.path().join("signed.ko");
    ok(&["build", "--kernel", KERNEL, "-o", s(&plain)]);
    let said = ok(&[
        "build",
        "--kernel",
        KERNEL,
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
        "-o",
        s(&signed),
    ]);
    assert!(
        said.contains("signed by 'kmlink cli test' (RSA-2048, sha256)"),
        "{said}"
    );

    // Debian's sign-file on the unsigned module gives the same bytes.
    let reference = dir.path().join("reference.ko");
    std::fs::copy(&plain, &reference).unwrap();
    let st = Command::new(&sf)
        .args(["sha256", s(&key), s(&cert), s(&reference)])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read(&reference).unwrap() == std::fs::read(&signed).unwrap(),
        "kmlink build --sign-key differs from sign-file"
    );

    // The same inputs give the same module.
    let again = dir.path().join("again.ko");
    ok(&[
        "build",
        "--kernel",
        KERNEL,
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
        "-o",
        s(&again),
    ]);
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&signed).unwrap());

    // kmlink sign refuses a signed module, re-signs deliberately.
    let e = fails(&[
        "sign",
        s(&signed),
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
    ]);
    assert!(
        e.contains("already signed") && e.contains("--resign"),
        "{e}"
    );
    ok(&[
        "sign",
        s(&signed),
        "--resign",
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
        "--sign-hash",
        "sha512",
    ]);
    let show = kmlink_cmd()
        .args(["sign", "--show", s(&signed), "--sign-cert", s(&cert)])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("RSA over sha512") && show.contains("verifies"),
        "{show}"
    );
}

#[test]
fn digest_out_signature_in_gives_the_same_module() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(!ci(), "prerequisite missing under CI: openssl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = generated_key(dir.path());
    let direct = dir.path().join("direct.ko");
    ok(&[
        "build",
        "--kernel",
        KERNEL,
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
        "-o",
        s(&direct),
    ]);
    let plain = dir.path().join("plain.ko");
    let digest = dir.path().join("digest.bin");
    let said = ok(&[
        "build",
        "--kernel",
        KERNEL,
        "--emit-digest",
        s(&digest),
        "-o",
        s(&plain),
    ]);
    assert!(said.contains("--attach-signature"), "{said}");
    assert_eq!(std::fs::read(&digest).unwrap().len(), 32);
    // The "HSM".
    let sig = dir.path().join("sig.bin");
    let st = Command::new("openssl")
        .args([
            "pkeyutl",
            "-sign",
            "-pkeyopt",
            "digest:sha256",
            "-inkey",
            s(&key),
            "-in",
            s(&digest),
            "-out",
            s(&sig),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let attached = dir.path().join("attached.ko");
    ok(&[
        "build",
        "--kernel",
        KERNEL,
        "--attach-signature",
        s(&sig),
        "--sign-cert",
        s(&cert),
        "-o",
        s(&attached),
    ]);
    assert!(std::fs::read(&attached).unwrap() == std::fs::read(&direct).unwrap());
    // A signature over something else is refused, and nothing is written.
    let wrong = dir.path().join("wrong.ko");
    std::fs::write(&sig, b"\x00\x01not a signature").unwrap();
    let e = fails(&[
        "build",
        "--kernel",
        KERNEL,
        "--attach-signature",
        s(&sig),
        "--sign-cert",
        s(&cert),
        "-o",
        s(&wrong),
    ]);
    assert!(e.contains("does not verify"), "{e}");
    assert!(!wrong.exists());
}

#[test]
fn bad_keys_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = generated_key(dir.path());
    let out = dir.path().join("out.ko");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let truncated = dir.path().join("truncated.key");
    let pem = std::fs::read(&key).unwrap();
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, other_cert) = generated_key(other.path());

    for (k, c, want) in [
        (&garbage, &cert, "garbage.key"),
        (&truncated, &cert, "malformed PEM"),
        (&key, &other_cert, "does not match private key"),
        (&key, &key, "is not a certificate"),
        (&dir.path().join("absent.key"), &cert, "absent.key"),
    ] {
        let e = fails(&[
            "build",
            "--kernel",
            KERNEL,
            "--sign-key",
            s(k),
            "--sign-cert",
            s(c),
            "-o",
            s(&out),
        ]);
        assert!(e.contains(want), "want {want:?} in:\n{e}");
        assert!(!out.exists(), "a module was written despite: {e}");
    }
    let e = fails(&[
        "build",
        "--kernel",
        KERNEL,
        "--sign-key",
        s(&key),
        "--sign-cert",
        s(&cert),
        "--sign-hash",
        "md5",
        "-o",
        s(&out),
    ]);
    assert!(e.contains("sha256, sha384 or sha512"), "{e}");
    assert!(!out.exists());
    // A second generate never replaces the key.
    let e = fails(&["key", "generate", "--dir", s(&dir.path().join("keys"))]);
    assert!(e.contains("already exists"), "{e}");
}
