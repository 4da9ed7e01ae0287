//! Signing keys and their certificates: reading them in every form the
//! field writes them (PEM or DER; PKCS#8, PKCS#1 for RSA, SEC1 for EC —
//! `openssl req`, DKMS and Ubuntu's shim tooling write these), checking
//! that a key and a certificate are a pair and that the certificate is in
//! its validity period, and the raw signature operation.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use der::oid::db::{rfc4519, rfc5280, rfc5912};
use der::{Decode, Encode};
use pkcs8::DecodePrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::signature::SignatureEncoding;
use rsa::traits::PublicKeyParts;
use spki::DecodePublicKey;
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::pkcs7::SigAlgo;
use crate::HashAlgo;

/// Key and certificate files are small: this bounds every read (an
/// RSA-16384 key in PEM is ~13 KiB; a certificate rarely exceeds 4 KiB).
pub const MAX_FILE: u64 = 1 << 20;

/// The RSA modulus sizes kmlink signs with: the kernel verifies any, but
/// under 2048 bits is no longer a signature.
pub const MIN_RSA_BITS: usize = 2048;

/// A private key kmlink can sign modules with.
pub enum PrivateKey {
    /// RSA (PKCS#1 v1.5 signatures).
    Rsa(Box<rsa::PrivateKey>),
    /// ECDSA on NIST P-256.
    P256(Box<p256::ecdsa::SigningKey>),
    /// ECDSA on NIST P-384.
    P384(Box<p384::ecdsa::SigningKey>),
}

/// A public key from a certificate, for verification.
pub enum PublicKey {
    /// RSA.
    Rsa(Box<rsa::PublicKey>),
    /// ECDSA on NIST P-256.
    P256(Box<p256::ecdsa::VerifyingKey>),
    /// ECDSA on NIST P-384.
    P384(Box<p384::ecdsa::VerifyingKey>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.describe())
    }
}

/// Reads a small file, bounded by [`MAX_FILE`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |op, source| Error::Io(kmlink_errors::IoError::new(op, path, source));
    let f = std::fs::File::open(path).map_err(|e| io("opening", e))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io("reading", e))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            max: MAX_FILE,
        });
    }
    Ok(buf)
}

/// PEM to (label, DER), or the bytes as they are when they are not PEM.
fn unpem(bytes: &[u8]) -> std::result::Result<(Option<String>, Vec<u8>), String> {
    let text = std::str::from_utf8(bytes).ok();
    match text.and_then(|t| t.find("-----BEGIN ").map(|at| &t[at..])) {
        Some(pem) => der::pem::decode_vec(pem.as_bytes())
            .map(|(label, der)| (Some(label.to_string()), der))
            .map_err(|e| format!("malformed PEM ({e})")),
        None => Ok((None, bytes.to_vec())),
    }
}

impl PrivateKey {
    /// Parses a private key file's bytes; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<PrivateKey> {
        let bad = |reason: String| Error::BadKey {
            what: what.to_string(),
            reason,
        };
        if bytes.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        let (label, der) = unpem(bytes).map_err(bad)?;
        let key =
            match label.as_deref() {
                Some("ENCRYPTED PRIVATE KEY") => return Err(bad(
                    "it is encrypted with a passphrase; kmlink signs with unencrypted keys kept \
                     0600 (decrypt it: openssl pkey -in KEY -out KEY.plain), or signs elsewhere \
                     (kmlink build --emit-digest / --attach-signature)"
                        .into(),
                )),
                Some("RSA PRIVATE KEY") => Self::from_pkcs1(&der),
                Some("EC PRIVATE KEY") => Self::from_sec1(&der),
                Some("PRIVATE KEY") => Self::from_pkcs8(&der),
                Some(other) => Err(format!("PEM block {other:?} is not a private key")),
                None => Self::from_pkcs8(&der)
                    .or_else(|e8| Self::from_pkcs1(&der).map_err(|_| e8))
                    .or_else(|e8| Self::from_sec1(&der).map_err(|_| e8))
                    .map_err(|e| {
                        format!("neither PEM nor a DER PKCS#8, PKCS#1 or SEC1 private key ({e})")
                    }),
            }
            .map_err(bad)?;
        if let PrivateKey::Rsa(k) = &key {
            let bits = k.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(Error::Unsupported {
                    what: "key size",
                    detail: format!("RSA-{bits} in {what}; at least RSA-{MIN_RSA_BITS}"),
                });
            }
        }
        Ok(key)
    }

    /// Reads and parses a private key file.
    pub fn read(path: &Path) -> Result<PrivateKey> {
        Self::parse(&read_bounded(path)?, &path.display().to_string())
    }

    fn from_pkcs8(der: &[u8]) -> std::result::Result<PrivateKey, String> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a PKCS#8 private key ({e})"))?;
        let alg = info.algorithm;
        if alg.oid == rfc5912::RSA_ENCRYPTION {
            return rsa::PrivateKey::from_pkcs8_der(der)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(|e| format!("RSA key ({e})"));
        }
        if alg.oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve = alg
                .parameters_oid()
                .map_err(|_| "EC key without a named curve".to_string())?;
            return match curve {
                c if c == rfc5912::SECP_256_R_1 => p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map(|k| PrivateKey::P256(Box::new(k)))
                    .map_err(|e| format!("P-256 key ({e})")),
                c if c == rfc5912::SECP_384_R_1 => p384::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map(|k| PrivateKey::P384(Box::new(k)))
                    .map_err(|e| format!("P-384 key ({e})")),
                c => Err(format!(
                    "EC curve {c}: the kernel verifies module signatures on NIST P-256 and P-384 only"
                )),
            };
        }
        Err(format!(
            "key algorithm {}: kmlink signs with RSA or ECDSA (P-256, P-384)",
            alg.oid
        ))
    }

    fn from_pkcs1(der: &[u8]) -> std::result::Result<PrivateKey, String> {
        rsa::PrivateKey::from_pkcs1_der(der)
            .map(|k| PrivateKey::Rsa(Box::new(k)))
            .map_err(|e| format!("not a PKCS#1 RSA private key ({e})"))
    }

    fn from_sec1(der: &[u8]) -> std::result::Result<PrivateKey, String> {
        let ec = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| format!("not a SEC1 EC private key ({e})"))?;
        let curve = ec
            .parameters
            .and_then(|p| p.named_curve())
            .ok_or("SEC1 EC key without a named curve")?;
        match curve {
            c if c == rfc5912::SECP_256_R_1 => p256::SecretKey::from_sec1_der(der)
                .map(|k| PrivateKey::P256(Box::new(k.into())))
                .map_err(|e| format!("P-256 key ({e})")),
            c if c == rfc5912::SECP_384_R_1 => p384::SecretKey::from_sec1_der(der)
                .map(|k| PrivateKey::P384(Box::new(k.into())))
                .map_err(|e| format!("P-384 key ({e})")),
            c => Err(format!(
                "EC curve {c}: the kernel verifies module signatures on NIST P-256 and P-384 only"
            )),
        }
    }

    /// "RSA-2048", "ECDSA P-256", ...
    pub fn describe(&self) -> String {
        match self {
            PrivateKey::Rsa(k) => format!("RSA-{}", k.size() * 8),
            PrivateKey::P256(_) => "ECDSA P-256".into(),
            PrivateKey::P384(_) => "ECDSA P-384".into(),
        }
    }

    /// The signature algorithm this key makes.
    pub fn sig_algo(&self) -> SigAlgo {
        match self {
            PrivateKey::Rsa(_) => SigAlgo::Rsa,
            PrivateKey::P256(_) | PrivateKey::P384(_) => SigAlgo::Ecdsa,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(Box::new(k.to_public_key())),
            PrivateKey::P256(k) => PublicKey::P256(Box::new(*k.verifying_key())),
            PrivateKey::P384(k) => PublicKey::P384(Box::new(*k.verifying_key())),
        }
    }

    /// Signs a digest made with `hash`: RSA PKCS#1 v1.5 (deterministic),
    /// or ECDSA with RFC 6979 nonces (deterministic too), DER-encoded as
    /// CMS carries it.
    pub fn sign_digest(&self, hash: HashAlgo, digest: &[u8]) -> Result<Vec<u8>> {
        let crypto = |e: rsa::signature::Error| Error::Crypto {
            what: "signing",
            reason: e.to_string(),
        };
        Ok(match self {
            PrivateKey::Rsa(k) => {
                let key = (**k).clone();
                let sig: rsa::pkcs1v15::Signature =
                    match hash {
                        HashAlgo::Sha256 => rsa::pkcs1v15::SigningKey::<sha2_11::Sha256>::new(key)
                            .sign_prehash(digest),
                        HashAlgo::Sha384 => rsa::pkcs1v15::SigningKey::<sha2_11::Sha384>::new(key)
                            .sign_prehash(digest),
                        HashAlgo::Sha512 => rsa::pkcs1v15::SigningKey::<sha2_11::Sha512>::new(key)
                            .sign_prehash(digest),
                    }
                    .map_err(crypto)?;
                sig.to_vec()
            }
            PrivateKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(crypto)?;
                sig.to_der().as_bytes().to_vec()
            }
            PrivateKey::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign_prehash(digest).map_err(crypto)?;
                sig.to_der().as_bytes().to_vec()
            }
        })
    }
}

impl PublicKey {
    /// The public key of a certificate.
    pub fn of(cert: &Certificate, what: &str) -> Result<PublicKey> {
        let spki = cert.tbs_certificate().subject_public_key_info();
        let der = spki.to_der().map_err(|e| Error::BadCertificate {
            what: what.to_string(),
            reason: format!("re-encoding its public key ({e})"),
        })?;
        let bad = |reason: String| Error::BadCertificate {
            what: what.to_string(),
            reason,
        };
        let oid = spki.algorithm.oid;
        if oid == rfc5912::RSA_ENCRYPTION {
            return rsa::PublicKey::from_public_key_der(&der)
                .map(|k| PublicKey::Rsa(Box::new(k)))
                .map_err(|e| bad(format!("RSA public key ({e})")));
        }
        if oid == rfc5912::ID_EC_PUBLIC_KEY {
            if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&der) {
                return Ok(PublicKey::P256(Box::new(k)));
            }
            if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(&der) {
                return Ok(PublicKey::P384(Box::new(k)));
            }
            return Err(bad(
                "EC public key on a curve other than P-256 or P-384".into()
            ));
        }
        Err(bad(format!(
            "public key algorithm {oid} is neither RSA nor EC"
        )))
    }

    /// Whether two public keys are the same key.
    pub fn same(&self, other: &PublicKey) -> bool {
        match (self, other) {
            (PublicKey::Rsa(a), PublicKey::Rsa(b)) => a == b,
            (PublicKey::P256(a), PublicKey::P256(b)) => a == b,
            (PublicKey::P384(a), PublicKey::P384(b)) => a == b,
            _ => false,
        }
    }

    /// The signature algorithm of this key.
    pub fn sig_algo(&self) -> SigAlgo {
        match self {
            PublicKey::Rsa(_) => SigAlgo::Rsa,
            PublicKey::P256(_) | PublicKey::P384(_) => SigAlgo::Ecdsa,
        }
    }

    /// Verifies `signature` over `digest`; the error says why not.
    pub fn verify_digest(
        &self,
        hash: HashAlgo,
        digest: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), String> {
        let e = |e: rsa::signature::Error| format!("{e}");
        match self {
            PublicKey::Rsa(k) => {
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(e)?;
                let key = (**k).clone();
                match hash {
                    HashAlgo::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2_11::Sha256>::new(key)
                        .verify_prehash(digest, &sig),
                    HashAlgo::Sha384 => rsa::pkcs1v15::VerifyingKey::<sha2_11::Sha384>::new(key)
                        .verify_prehash(digest, &sig),
                    HashAlgo::Sha512 => rsa::pkcs1v15::VerifyingKey::<sha2_11::Sha512>::new(key)
                        .verify_prehash(digest, &sig),
                }
                .map_err(e)
            }
            PublicKey::P256(k) => {
                let sig = p256::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(signature))
                    .map_err(e)?;
                k.verify_prehash(digest, &sig).map_err(e)
            }
            PublicKey::P384(k) => {
                let sig = p384::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p384::ecdsa::Signature::from_slice(signature))
                    .map_err(e)?;
                k.verify_prehash(digest, &sig).map_err(e)
            }
        }
    }

    /// A raw ECDSA signature (`r ‖ s`) as DER, as CMS carries it; RSA and
    /// DER signatures unchanged.
    pub fn normalize_signature(&self, signature: &[u8]) -> Vec<u8> {
        match self {
            PublicKey::P256(_) => p256::ecdsa::Signature::from_slice(signature)
                .map(|s| s.to_der().as_bytes().to_vec())
                .unwrap_or_else(|_| signature.to_vec()),
            PublicKey::P384(_) => p384::ecdsa::Signature::from_slice(signature)
                .map(|s| s.to_der().as_bytes().to_vec())
                .unwrap_or_else(|_| signature.to_vec()),
            PublicKey::Rsa(_) => signature.to_vec(),
        }
    }
}

/// Parses a certificate file's bytes (PEM or DER); `what` names it.
pub fn parse_certificate(bytes: &[u8], what: &str) -> Result<Certificate> {
    let bad = |reason: String| Error::BadCertificate {
        what: what.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let (label, der) = unpem(bytes).map_err(bad)?;
    if let Some(l) = label.filter(|l| l != "CERTIFICATE") {
        return Err(bad(format!(
            "PEM block {l:?} is not a certificate (expected \"CERTIFICATE\")"
        )));
    }
    Certificate::from_der(&der).map_err(|e| bad(format!("not an X.509 certificate ({e})")))
}

/// Reads a certificate file.
pub fn read_certificate(path: &Path) -> Result<Certificate> {
    parse_certificate(&read_bounded(path)?, &path.display().to_string())
}

/// Seconds since the epoch of `t` (0 before it).
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks that `now` lies in the certificate's validity period.
pub fn check_validity(cert: &Certificate, what: &str, now: SystemTime) -> Result<()> {
    let v = cert.tbs_certificate().validity();
    let now = unix(now);
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now > na {
        return Err(Error::CertificateTime {
            cert: what.to_string(),
            when: "expired",
            date: v.not_after.to_string(),
        });
    }
    if now < nb {
        return Err(Error::CertificateTime {
            cert: what.to_string(),
            when: "is not valid yet",
            date: v.not_before.to_string(),
        });
    }
    Ok(())
}

/// The certificate's subject key identifier extension, if it has one.
pub fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|e| der::asn1::OctetString::from_der(e.extn_value.as_bytes()).ok())
        .map(|o| o.as_bytes().to_vec())
}

/// The certificate's subject common name (or the whole subject).
pub fn subject_name(cert: &Certificate) -> String {
    let subject = cert.tbs_certificate().subject();
    for rdn in subject.iter_rdn() {
        for atv in rdn.iter() {
            if atv.oid == rfc4519::COMMON_NAME {
                if let Ok(s) = der::asn1::Utf8StringRef::try_from(&atv.value) {
                    return s.as_str().to_string();
                }
                if let Ok(s) = der::asn1::PrintableStringRef::try_from(&atv.value) {
                    return s.as_str().to_string();
                }
            }
        }
    }
    subject.to_string()
}

/// The certificate as DER.
pub fn certificate_der(cert: &Certificate) -> Result<Vec<u8>> {
    cert.to_der()
        .map_err(crate::error::der_err("encoding the certificate"))
}

/// SHA-256 of the certificate's DER: names a signer in caches and status.
pub fn fingerprint(cert: &Certificate) -> Result<String> {
    use sha2_11::Digest;
    let der = cert
        .to_der()
        .map_err(crate::error::der_err("encoding the certificate"))?;
    Ok(hex::encode(sha2_11::Sha256::digest(&der)))
}

/// The description the kernel gives this certificate's key in its
/// keyrings (as `/proc/keys` lists it): the subject as the kernel's X.509
/// parser shortens it (the common name; "O: CN" when the organisation is
/// not a prefix of the common name; the organisation or e-mail address
/// when there is no common name), `": "`, then the subject key identifier
/// in hex, or the serial number's bytes when the certificate has none.
pub fn kernel_key_description(cert: &Certificate) -> String {
    let tbs = cert.tbs_certificate();
    let (mut cn, mut o, mut email) = (None, None, None);
    for rdn in tbs.subject().iter_rdn() {
        for atv in rdn.iter() {
            let text = der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    der::asn1::PrintableStringRef::try_from(&atv.value)
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    der::asn1::Ia5StringRef::try_from(&atv.value).map(|s| s.as_str().to_string())
                })
                .ok();
            if atv.oid == rfc4519::COMMON_NAME {
                cn = text;
            } else if atv.oid == rfc4519::O {
                o = text;
            } else if atv.oid == der::oid::db::rfc3280::EMAIL_ADDRESS {
                email = text;
            }
        }
    }
    let subject = match (cn, o) {
        (Some(cn), Some(o)) => {
            let shares_prefix = cn.starts_with(&o)
                || (cn.len() >= 7 && o.len() >= 7 && cn.as_bytes()[..7] == o.as_bytes()[..7]);
            if shares_prefix {
                cn
            } else {
                format!("{o}: {cn}")
            }
        }
        (Some(cn), None) => cn,
        (None, Some(o)) => o,
        (None, None) => email.unwrap_or_default(),
    };
    let id = subject_key_id(cert).unwrap_or_else(|| tbs.serial_number().as_bytes().to_vec());
    format!("{subject}: {}", hex::encode(id))
}
