//! Every bad key, certificate, signature and module gets an error that
//! names what is wrong; nothing is signed.

#![allow(clippy::unwrap_used)]
// `expect_err` would print a whole signed module on failure.
#![allow(clippy::err_expect)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{have_openssl, missing, module_bytes, openssl_pair, run};
use kmlink_modsign::generate::{generate, KeyKind};
use kmlink_modsign::{attach, key, Error, Existing, HashAlgo, PrivateKey, Signer};

fn openssl() -> Option<()> {
    if !have_openssl() {
        missing("the openssl CLI (apt-get install openssl)")?;
    }
    Some(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn key_err(bytes: &[u8]) -> String {
    PrivateKey::parse(bytes, "test.key")
        .unwrap_err()
        .to_string()
}

#[test]
fn empty_garbage_and_truncated_keys() {
    assert!(key_err(b"").contains("empty"), "{}", key_err(b""));
    let e = key_err(b"this is not a key\n");
    assert!(
        e.contains("test.key") && e.contains("neither PEM nor"),
        "{e}"
    );

    let Some(()) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (k, _, _) = openssl_pair(dir.path(), "t", &["rsa:2048"], "30");
    let pem = std::fs::read(&k).unwrap();
    let e = key_err(&pem[..pem.len() / 2]);
    assert!(e.contains("malformed PEM"), "{e}");
    // A DER key cut short.
    let der = run(Command::new("openssl")
        .args(["pkey", "-outform", "DER", "-in"])
        .arg(&k));
    let e = key_err(&der[..der.len() - 40]);
    assert!(e.contains("test.key"), "{e}");
    // The whole DER key is fine.
    PrivateKey::parse(&der, "der").unwrap();
}

#[test]
fn encrypted_unsupported_and_weak_keys() {
    let Some(()) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let gen = |args: &[&str]| run(Command::new("openssl").arg("genpkey").args(args));
    let enc = gen(&[
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-aes256",
        "-pass",
        "pass:secret",
    ]);
    assert!(
        key_err(&enc).contains("encrypted with a passphrase"),
        "{}",
        key_err(&enc)
    );
    let ed = gen(&["-algorithm", "ed25519"]);
    let e = PrivateKey::parse(&ed, "ed").unwrap_err();
    assert!(e.to_string().contains("RSA or ECDSA"), "{e}");
    let k1 = gen(&[
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
    ]);
    let e = PrivateKey::parse(&k1, "k1").unwrap_err();
    assert!(e.to_string().contains("P-256 and P-384 only"), "{e}");
    let weak = gen(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let e = PrivateKey::parse(&weak, "weak").unwrap_err();
    assert!(
        matches!(e, Error::Unsupported { .. }) && e.to_string().contains("RSA-1024"),
        "{e}"
    );
    // Traditional PKCS#1 and SEC1 forms are read.
    let rsa1 = run(Command::new("openssl").args(["genrsa", "-traditional", "2048"]));
    assert!(String::from_utf8_lossy(&rsa1).contains("BEGIN RSA PRIVATE KEY"));
    PrivateKey::parse(&rsa1, "pkcs1").unwrap();
    let sec1 =
        run(Command::new("openssl").args(["ecparam", "-name", "prime256v1", "-genkey", "-noout"]));
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
    assert_eq!(
        PrivateKey::parse(&sec1, "sec1").unwrap().describe(),
        "ECDSA P-256"
    );
    let _ = dir;
}

#[test]
fn oversized_key_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(
        dir.path(),
        "big.key",
        &vec![b'A'; (key::MAX_FILE + 10) as usize],
    );
    let e = PrivateKey::read(&big).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = PrivateKey::read(&dir.path().join("absent.key")).unwrap_err();
    assert!(e.to_string().contains("absent.key"), "{e}");
}

#[test]
fn bad_certificates() {
    let e = key::parse_certificate(b"", "c").unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = key::parse_certificate(b"\x30\x03\x02\x01\x01", "c")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an X.509 certificate"), "{e}");
    let Some(()) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (k, _, _) = openssl_pair(dir.path(), "t", &["rsa:2048"], "30");
    let e = key::read_certificate(&k).unwrap_err().to_string();
    assert!(e.contains("is not a certificate"), "{e}");
}

#[test]
fn certificate_of_another_key_is_refused() {
    let Some(()) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (k1, _, _) = openssl_pair(dir.path(), "one", &["rsa:2048"], "30");
    let (_, c2, _) = openssl_pair(dir.path(), "two", &["rsa:2048"], "30");
    let e = Signer::from_files(&k1, &c2).unwrap_err();
    assert!(matches!(e, Error::KeyCertMismatch { .. }), "{e}");
    let (_, ec, _) = openssl_pair(
        dir.path(),
        "ec",
        &["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "30",
    );
    let e = Signer::from_files(&k1, &ec).unwrap_err();
    assert!(matches!(e, Error::KeyCertMismatch { .. }), "{e}");
}

#[test]
fn expired_and_future_certificates_are_refused() {
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800); // 2000-01-01
    let g = generate(KeyKind::P256, "old", 2, long_ago).unwrap();
    let key = PrivateKey::parse(g.key_pem.as_bytes(), "k").unwrap();
    let e = Signer::new(key, "k", g.cert.clone(), "old.der", SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("old.der expired"), "{e}");

    let future = SystemTime::now() + Duration::from_secs(86_400 * 400);
    let g = generate(KeyKind::P256, "future", 2, future).unwrap();
    let key = PrivateKey::parse(g.key_pem.as_bytes(), "k").unwrap();
    let e = Signer::new(key, "k", g.cert.clone(), "new.der", SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("not valid yet"), "{e}");
}

fn p256_signer() -> Signer {
    let g = generate(KeyKind::P256, "test", 30, SystemTime::now()).unwrap();
    Signer::new(
        PrivateKey::parse(g.key_pem.as_bytes(), "k").unwrap(),
        "k",
        g.cert,
        "c",
        SystemTime::now(),
    )
    .unwrap()
}

#[test]
fn a_signed_module_is_never_signed_twice() {
    let s = p256_signer();
    let module = module_bytes(5000, 1);
    let once = s.sign(&module, HashAlgo::Sha256, Existing::Refuse).unwrap();
    let e = s
        .sign(&once, HashAlgo::Sha256, Existing::Refuse)
        .err()
        .expect("refused");
    assert!(
        matches!(e, Error::AlreadySigned { .. }) && e.to_string().contains("--resign"),
        "{e}"
    );
    // Deliberate re-signing replaces the signature, never stacks one.
    let again = s.sign(&once, HashAlgo::Sha512, Existing::Replace).unwrap();
    assert_eq!(
        again,
        s.sign(&module, HashAlgo::Sha512, Existing::Refuse).unwrap()
    );
    // A damaged trailer is an error, not an unsigned module.
    let mut damaged = once.clone();
    let at = damaged.len() - 28 - 1;
    damaged[at] = 0xff;
    let e = s
        .sign(&damaged, HashAlgo::Sha256, Existing::Replace)
        .err()
        .expect("refused");
    assert!(matches!(e, Error::BadTrailer { .. }), "{e}");
}

#[test]
fn attach_refuses_what_the_kernel_would() {
    let s = p256_signer();
    let cert = s.certificate().clone();
    let module = module_bytes(5000, 2);
    // A raw signature over another module's digest does not verify.
    let other = kmlink_modsign::digest(&module_bytes(5000, 3), HashAlgo::Sha256);
    let signed_other = s
        .sign(&module_bytes(5000, 3), HashAlgo::Sha256, Existing::Refuse)
        .unwrap();
    let p = kmlink_modsign::appended::split(&signed_other).unwrap();
    let parsed = kmlink_modsign::pkcs7::decode(p.pkcs7.unwrap()).unwrap();
    let e = attach(
        &module,
        &parsed.signature,
        Some((&cert, "c")),
        HashAlgo::Sha256,
        Existing::Refuse,
    )
    .err()
    .expect("refused");
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    let _ = other;
    // A raw signature without a certificate cannot name its signer.
    let e = attach(
        &module,
        &parsed.signature,
        None,
        HashAlgo::Sha256,
        Existing::Refuse,
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("--sign-cert"), "{e}");
    // Garbage.
    let e = attach(
        &module,
        b"garbage",
        Some((&cert, "c")),
        HashAlgo::Sha256,
        Existing::Refuse,
    )
    .err()
    .expect("refused");
    assert!(matches!(e, Error::Verify { .. }), "{e}");

    // A PKCS#7 with signed attributes (openssl cms without -noattr).
    let Some(()) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (k, c, _) = openssl_pair(dir.path(), "attrs", &["rsa:2048"], "30");
    let m = write(dir.path(), "m.ko", &module);
    let p7 = run(Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-nocerts", "-outform", "DER", "-md", "sha256", "-in",
        ])
        .arg(&m)
        .arg("-signer")
        .arg(&c)
        .arg("-inkey")
        .arg(&k));
    let e = attach(&module, &p7, None, HashAlgo::Sha256, Existing::Refuse)
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("signed (authenticated) attributes"),
        "{e}"
    );
}

#[test]
fn unknown_hash_names_are_refused() {
    let e = HashAlgo::from_name("md5").unwrap_err();
    assert!(e.to_string().contains("sha256, sha384 or sha512"), "{e}");
    assert_eq!(HashAlgo::from_name("SHA512").unwrap(), HashAlgo::Sha512);
}

#[test]
fn generated_keys_are_written_private_and_never_over_a_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let g = generate(KeyKind::P256, "w", 30, SystemTime::now()).unwrap();
    let pair = kmlink_modsign::keys::write(&keys, &g, false).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pair.key), 0o600);
    assert_eq!(mode(&keys), 0o700);
    Signer::from_files(&pair.key, &pair.cert).unwrap();
    let e = kmlink_modsign::keys::write(&keys, &g, false).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e}");
    kmlink_modsign::keys::write(&keys, &g, true).unwrap();
    // Only the three files: no temporaries left behind.
    assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 3);
}
