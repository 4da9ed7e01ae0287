//! Kernel module signatures, as the kernel verifies them
//! (`kernel/module/signing.c`) and `scripts/sign-file` writes them:
//!
//! ```text
//! module ‖ PKCS#7 SignedData (DER; detached, no certificates, no signed
//!          attributes) ‖ struct module_signature (12 bytes) ‖ "~Module signature appended~\n"
//! ```
//!
//! One owner for the format: [`Signer::sign`] signs, [`inspect`] reads a
//! signature back, [`verify`] checks one against a certificate, and
//! [`digest`] / [`attach`] split signing in two for keys that never touch
//! the build host (an HSM or a CI signer, the model of `sign-file -s`).
//! [`keys`] finds and writes signing keys; [`generate`] makes them.
//!
//! RSA (PKCS#1 v1.5) signatures are deterministic, so for the same key,
//! certificate and module the output is byte-identical to `sign-file`'s
//! (tests/sign_file.rs proves it against Debian's `sign-file`). ECDSA
//! signatures use RFC 6979 nonces: deterministic for kmlink, while
//! OpenSSL's are random, so there the proof is structural plus a
//! cross-verification.
//!
//! ```no_run
//! use kmlink_modsign::{HashAlgo, Signer, Existing};
//! let signer = Signer::from_files("mok.key".as_ref(), "mok.der".as_ref()).unwrap();
//! let module = std::fs::read("kmlink.ko").unwrap();
//! let signed = signer.sign(&module, HashAlgo::Sha256, Existing::Refuse).unwrap();
//! ```

#![deny(missing_docs)]

pub mod appended;
mod error;
pub mod generate;
pub mod key;
pub mod keys;
pub mod pkcs7;

use std::path::Path;
use std::time::SystemTime;

pub use x509_cert::Certificate;

pub use error::{Error, Result};
pub use key::{PrivateKey, PublicKey};
pub use pkcs7::{SigAlgo, SignerId};

/// The digest a module signature is made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgo {
    /// SHA-256 (Debian's kernels sign their own modules with it).
    #[default]
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgo {
    /// The name `sign-file` takes ("sha256", ...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Parses a `sign-file` hash name.
    pub fn from_name(name: &str) -> Result<HashAlgo> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Ok(HashAlgo::Sha256),
            "sha384" => Ok(HashAlgo::Sha384),
            "sha512" => Ok(HashAlgo::Sha512),
            other => Err(Error::Unsupported {
                what: "hash",
                detail: format!("{other:?}; use sha256, sha384 or sha512"),
            }),
        }
    }
}

/// The digest of `content` (the module without any signature).
pub fn digest(content: &[u8], hash: HashAlgo) -> Vec<u8> {
    use sha2_11::Digest;
    match hash {
        HashAlgo::Sha256 => sha2_11::Sha256::digest(content).to_vec(),
        HashAlgo::Sha384 => sha2_11::Sha384::digest(content).to_vec(),
        HashAlgo::Sha512 => sha2_11::Sha512::digest(content).to_vec(),
    }
}

/// What to do with a module that is already signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse: a module is never signed twice by accident.
    Refuse,
    /// Remove the old signature and sign anew (deliberate re-signing).
    Replace,
}

/// A private key with its certificate, checked to be a pair.
#[derive(Debug)]
pub struct Signer {
    key: PrivateKey,
    cert: Certificate,
}

impl Signer {
    /// A signer from a key and its certificate; refuses a pair that does
    /// not match, and a certificate outside its validity period at `now`.
    pub fn new(
        key: PrivateKey,
        key_name: &str,
        cert: Certificate,
        cert_name: &str,
        now: SystemTime,
    ) -> Result<Signer> {
        let public = PublicKey::of(&cert, cert_name)?;
        if !public.same(&key.public()) {
            return Err(Error::KeyCertMismatch {
                cert: cert_name.to_string(),
                key: key_name.to_string(),
            });
        }
        key::check_validity(&cert, cert_name, now)?;
        Ok(Signer { key, cert })
    }

    /// Reads the key and certificate files (PEM or DER) and checks them.
    pub fn from_files(key: &Path, cert: &Path) -> Result<Signer> {
        Signer::new(
            PrivateKey::read(key)?,
            &key.display().to_string(),
            key::read_certificate(cert)?,
            &cert.display().to_string(),
            SystemTime::now(),
        )
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The key's algorithm and size, for messages.
    pub fn describe_key(&self) -> String {
        self.key.describe()
    }

    /// Who signs: the certificate's common name.
    pub fn subject(&self) -> String {
        key::subject_name(&self.cert)
    }

    /// SHA-256 of the certificate: names the signer in caches.
    pub fn fingerprint(&self) -> Result<String> {
        key::fingerprint(&self.cert)
    }

    /// Signs `module`: the module followed by its signature. A module that
    /// is already signed is refused, or with [`Existing::Replace`] has its
    /// old signature removed first.
    pub fn sign(&self, module: &[u8], hash: HashAlgo, existing: Existing) -> Result<Vec<u8>> {
        let content = unsigned_content(module, existing)?;
        let sig = self.key.sign_digest(hash, &digest(content, hash))?;
        let p7 = pkcs7::encode(
            pkcs7::signer_of(&self.cert),
            hash,
            self.key.sig_algo(),
            &sig,
        )?;
        appended::append(content, &p7)
    }
}

/// The module's content, refusing or dropping an existing signature.
fn unsigned_content(module: &[u8], existing: Existing) -> Result<&[u8]> {
    let split = appended::split(module)?;
    match (split.pkcs7, existing) {
        (None, _) => Ok(split.content),
        // Where the module ends is known only from an intact signature.
        (Some(p7), Existing::Replace) => match pkcs7::decode(p7) {
            Ok(_) => Ok(split.content),
            Err(e) => Err(Error::BadTrailer {
                offset: split.content.len(),
                reason: format!(
                    "the old signature is damaged, so where the module ends is unknown ({e})"
                ),
            }),
        },
        (Some(p7), Existing::Refuse) => Err(Error::AlreadySigned {
            signer: pkcs7::decode(p7)
                .map(|p| p.signer.describe())
                .unwrap_or_else(|e| format!("an unreadable signature: {e}")),
        }),
    }
}

/// What a signed module's signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// Who signed.
    pub signer: SignerId,
    /// The digest algorithm.
    pub hash: HashAlgo,
    /// RSA or ECDSA.
    pub algo: SigAlgo,
    /// Size of the module without its signature.
    pub content_len: usize,
    /// Size of the PKCS#7 blob.
    pub pkcs7_len: usize,
}

/// Reads a module's signature back; `None` for an unsigned module.
pub fn inspect(module: &[u8]) -> Result<Option<SignatureInfo>> {
    let split = appended::split(module)?;
    let Some(p7) = split.pkcs7 else {
        return Ok(None);
    };
    let p = pkcs7::decode(p7)?;
    Ok(Some(SignatureInfo {
        signer: p.signer,
        hash: p.hash,
        algo: p.algo,
        content_len: split.content.len(),
        pkcs7_len: p7.len(),
    }))
}

/// Checks a signed module's signature against `cert`, as the kernel would
/// with that certificate in a trusted keyring (names the signer, the
/// algorithm matches the key, the signature verifies over the content).
pub fn verify(module: &[u8], cert: &Certificate, cert_name: &str) -> Result<SignatureInfo> {
    let split = appended::split(module)?;
    let p7 = split.pkcs7.ok_or_else(|| Error::Verify {
        cert: cert_name.to_string(),
        reason: "the module is not signed".into(),
    })?;
    let p = pkcs7::decode(p7)?;
    let fail = |reason: String| Error::Verify {
        cert: cert_name.to_string(),
        reason,
    };
    if !pkcs7::names(&p.signer, cert) {
        return Err(fail(format!(
            "the signature names another signer ({})",
            p.signer.describe()
        )));
    }
    let public = PublicKey::of(cert, cert_name)?;
    if public.sig_algo() != p.algo {
        return Err(fail(format!(
            "a {} signature for a {} key",
            p.algo,
            public.sig_algo()
        )));
    }
    public
        .verify_digest(p.hash, &digest(split.content, p.hash), &p.signature)
        .map_err(fail)?;
    Ok(SignatureInfo {
        signer: p.signer,
        hash: p.hash,
        algo: p.algo,
        content_len: split.content.len(),
        pkcs7_len: p7.len(),
    })
}

/// Appends a signature made elsewhere to `module` (unsigned, or signed
/// with [`Existing::Replace`]).
///
/// `signature` is either a detached PKCS#7 (`openssl cms -sign -binary
/// -noattr -nocerts -outform DER`, `sign-file -d`'s `.p7s`), checked to
/// have the shape the kernel verifies, or a raw signature over
/// [`digest`]'s output (what an HSM returns: RSA PKCS#1 v1.5, or ECDSA as
/// DER or `r ‖ s`), which needs `cert` to name the signer. With `cert`,
/// the signature must verify before anything is appended.
pub fn attach(
    module: &[u8],
    signature: &[u8],
    cert: Option<(&Certificate, &str)>,
    hash: HashAlgo,
    existing: Existing,
) -> Result<Vec<u8>> {
    let content = unsigned_content(module, existing)?;
    let p7 = match pkcs7::decode(signature) {
        Ok(_) => signature.to_vec(),
        Err(p7_err) => {
            let Some((cert, name)) = cert else {
                return Err(Error::BadPkcs7 {
                    reason: format!(
                        "not a usable PKCS#7 ({p7_err}); a raw signature needs the signer's \
                         certificate (--sign-cert)"
                    ),
                });
            };
            let public = PublicKey::of(cert, name)?;
            let raw = public.normalize_signature(signature);
            pkcs7::encode(pkcs7::signer_of(cert), hash, public.sig_algo(), &raw)?
        }
    };
    let signed = appended::append(content, &p7)?;
    if let Some((cert, name)) = cert {
        verify(&signed, cert, name)?;
    }
    Ok(signed)
}
