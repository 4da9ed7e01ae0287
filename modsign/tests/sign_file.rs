//! Golden proof of the signature format: for the same key, certificate and
//! module, kmlink's signed module is byte-identical to the output of the
//! kernel's own `scripts/sign-file` (Debian's linux-kbuild package) for
//! RSA, whose PKCS#1 v1.5 signatures are deterministic. For ECDSA, whose
//! OpenSSL signatures use random nonces, sign-file's PKCS#7 re-encoded by
//! kmlink's encoder with its own signature value must give sign-file's
//! bytes back, each signer's output must verify with the other's verifier
//! (kmlink's, and `openssl cms -verify`), and the modules must agree up to
//! the signature.
//!
//! Needs `sign-file` (scripts/setup installs linux-kbuild) and `openssl`;
//! fails under CI without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use common::{have_openssl, missing, module_bytes, openssl_pair, run, sign_file};
use kmlink_modsign::{appended, inspect, pkcs7, verify, Existing, HashAlgo, Signer};

fn prerequisites() -> Option<std::path::PathBuf> {
    if !have_openssl() {
        missing("the openssl CLI (apt-get install openssl)")?;
    }
    match sign_file() {
        Some(p) => Some(p),
        None => {
            missing(
                "Debian's sign-file (apt-get install linux-kbuild-6.1, or set KMLINK_SIGN_FILE)",
            )?;
            None
        }
    }
}

/// Signs `module` with sign-file; returns the signed bytes.
fn sign_with_sign_file(
    sf: &Path,
    hash: &str,
    key: &Path,
    cert: &Path,
    module: &[u8],
    dir: &Path,
) -> Vec<u8> {
    let path = dir.join(format!("sf-{hash}.ko"));
    std::fs::write(&path, module).unwrap();
    run(Command::new(sf).arg(hash).arg(key).arg(cert).arg(&path));
    std::fs::read(&path).unwrap()
}

fn kmlink_sign(key: &Path, cert: &Path, module: &[u8], hash: HashAlgo) -> Vec<u8> {
    Signer::from_files(key, cert)
        .unwrap()
        .sign(module, hash, Existing::Refuse)
        .unwrap()
}

/// `openssl cms -verify` of a signed module's PKCS#7 against its content.
fn openssl_verifies(signed: &[u8], cert_pem: &Path, dir: &Path) {
    let split = appended::split(signed).unwrap();
    let p7 = dir.join("check.p7");
    let content = dir.join("check.content");
    std::fs::write(&p7, split.pkcs7.unwrap()).unwrap();
    std::fs::write(&content, split.content).unwrap();
    run(Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-noverify",
            "-nointern",
            "-in",
        ])
        .arg(&p7)
        .arg("-content")
        .arg(&content)
        .arg("-certfile")
        .arg(cert_pem)
        .args(["-out", "/dev/null"]));
}

fn rsa_case(bits: &str, hash: HashAlgo, use_der_cert: bool) {
    let Some(sf) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, cert_pem, cert_der) =
        openssl_pair(dir.path(), bits, &[&format!("rsa:{bits}")], "3650");
    let cert = if use_der_cert { &cert_der } else { &cert_pem };
    let module = module_bytes(40_000, 7);
    let theirs = sign_with_sign_file(&sf, hash.name(), &key, cert, &module, dir.path());
    let ours = kmlink_sign(&key, cert, &module, hash);
    assert_eq!(
        ours.len(),
        theirs.len(),
        "RSA-{bits}/{}: lengths differ",
        hash.name()
    );
    assert!(
        ours == theirs,
        "RSA-{bits}/{}: kmlink's signed module differs from sign-file's",
        hash.name()
    );
    let c = kmlink_modsign::key::read_certificate(cert).unwrap();
    verify(&ours, &c, "cert").unwrap();
    openssl_verifies(&ours, &cert_pem, dir.path());
}

#[test]
fn rsa2048_sha256_is_byte_identical_to_sign_file() {
    rsa_case("2048", HashAlgo::Sha256, false);
}

#[test]
fn rsa4096_sha512_is_byte_identical_to_sign_file() {
    rsa_case("4096", HashAlgo::Sha512, true);
}

#[test]
fn rsa3072_sha384_is_byte_identical_to_sign_file() {
    rsa_case("3072", HashAlgo::Sha384, false);
}

fn ecdsa_case(curve: &str, hash: HashAlgo) {
    let Some(sf) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let opt = format!("ec_paramgen_curve:{curve}");
    let (key, cert_pem, _) = openssl_pair(dir.path(), curve, &["ec", "-pkeyopt", &opt], "3650");
    let module = module_bytes(30_000, 11);
    let theirs = sign_with_sign_file(&sf, hash.name(), &key, &cert_pem, &module, dir.path());
    let ours = kmlink_sign(&key, &cert_pem, &module, hash);
    let cert = kmlink_modsign::key::read_certificate(&cert_pem).unwrap();

    // sign-file's PKCS#7, decoded and re-encoded by kmlink: the same bytes.
    let their_p7 = appended::split(&theirs).unwrap().pkcs7.unwrap();
    let parsed = pkcs7::decode(their_p7).unwrap();
    let again = pkcs7::encode(
        parsed.signer.clone(),
        parsed.hash,
        parsed.algo,
        &parsed.signature,
    )
    .unwrap();
    assert_eq!(
        again, their_p7,
        "{curve}: kmlink's encoder does not reproduce sign-file's PKCS#7"
    );

    // Same signer, hash and algorithm; same content; both verify both ways.
    let (a, b) = (
        inspect(&ours).unwrap().unwrap(),
        inspect(&theirs).unwrap().unwrap(),
    );
    assert_eq!(
        (a.signer, a.hash, a.algo, a.content_len),
        (b.signer, b.hash, b.algo, b.content_len)
    );
    assert_eq!(appended::split(&ours).unwrap().content, &module[..]);
    verify(&theirs, &cert, "cert").unwrap();
    verify(&ours, &cert, "cert").unwrap();
    openssl_verifies(&ours, &cert_pem, dir.path());
    // RFC 6979: kmlink's own ECDSA output is deterministic.
    assert_eq!(ours, kmlink_sign(&key, &cert_pem, &module, hash));
}

#[test]
fn ecdsa_p256_matches_sign_file_up_to_the_random_nonce() {
    ecdsa_case("prime256v1", HashAlgo::Sha256);
}

#[test]
fn ecdsa_p384_matches_sign_file_up_to_the_random_nonce() {
    ecdsa_case("secp384r1", HashAlgo::Sha384);
}

/// A key and certificate made by `kmlink key generate`'s library work
/// with sign-file, and sign-file and kmlink agree on them.
#[test]
fn generated_key_signs_like_sign_file() {
    let Some(sf) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let g = kmlink_modsign::generate::generate(
        kmlink_modsign::generate::KeyKind::Rsa2048,
        "kmlink generated test key",
        30,
        SystemTime::now(),
    )
    .unwrap();
    let pair = kmlink_modsign::keys::write(dir.path(), &g, false).unwrap();
    let module = module_bytes(20_000, 3);
    let theirs = sign_with_sign_file(&sf, "sha256", &pair.key, &pair.cert, &module, dir.path());
    let ours = kmlink_sign(&pair.key, &pair.cert, &module, HashAlgo::Sha256);
    assert!(ours == theirs, "generated key: kmlink and sign-file differ");
    // The certificate says what a code-signing MOK should.
    let text = String::from_utf8(run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&pair.cert)))
    .unwrap();
    for want in [
        "Code Signing",
        "Digital Signature",
        "CA:FALSE",
        "Subject Key Identifier",
        "CN = kmlink generated test key",
    ] {
        assert!(text.contains(want), "certificate lacks {want:?}:\n{text}");
    }
}

/// HSM path: the digest kmlink emits, signed by another tool (`openssl
/// pkeyutl`, standing in for an HSM), attached by kmlink, gives the same
/// module as signing directly; so does sign-file's detached PKCS#7 (`-d`).
#[test]
fn detached_signatures_attach_to_the_same_bytes() {
    let Some(sf) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key, cert_pem, _) = openssl_pair(dir.path(), "hsm", &["rsa:2048"], "3650");
    let cert = kmlink_modsign::key::read_certificate(&cert_pem).unwrap();
    let module = module_bytes(25_000, 5);
    let direct = kmlink_sign(&key, &cert_pem, &module, HashAlgo::Sha256);

    let digest_path = dir.path().join("digest.bin");
    std::fs::write(
        &digest_path,
        kmlink_modsign::digest(&module, HashAlgo::Sha256),
    )
    .unwrap();
    let sig_path = dir.path().join("sig.bin");
    run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-pkeyopt", "digest:sha256", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&digest_path)
        .arg("-out")
        .arg(&sig_path));
    let raw = std::fs::read(&sig_path).unwrap();
    let attached = kmlink_modsign::attach(
        &module,
        &raw,
        Some((&cert, "cert")),
        HashAlgo::Sha256,
        Existing::Refuse,
    )
    .unwrap();
    assert!(
        attached == direct,
        "raw signature attached differs from direct signing"
    );

    let path = dir.path().join("m.ko");
    std::fs::write(&path, &module).unwrap();
    run(Command::new(&sf)
        .arg("-d")
        .arg("sha256")
        .arg(&key)
        .arg(&cert_pem)
        .arg(&path));
    let p7s = std::fs::read(dir.path().join("m.ko.p7s")).unwrap();
    let attached =
        kmlink_modsign::attach(&module, &p7s, None, HashAlgo::Sha256, Existing::Refuse).unwrap();
    assert!(
        attached == direct,
        "sign-file -d's PKCS#7 attached differs from direct signing"
    );
}
