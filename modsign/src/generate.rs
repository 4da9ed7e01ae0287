//! Making a module signing key: a private key and a self-signed X.509
//! code-signing certificate for it, as DKMS and the kernel's own
//! `certs/` make theirs (RSA-2048 by default), with the extensions MOK
//! enrolment and the kernel's X.509 parser expect: `basicConstraints
//! CA:FALSE`, `keyUsage digitalSignature`, `extendedKeyUsage codeSigning`,
//! subject and authority key identifiers.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::{Encode, EncodePem};
use pkcs8::EncodePrivateKey;
use spki::{EncodePublicKey, SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::key::PrivateKey;

/// Which key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// RSA-2048 (the default, as DKMS's).
    #[default]
    Rsa2048,
    /// RSA-3072.
    Rsa3072,
    /// RSA-4096.
    Rsa4096,
    /// ECDSA on NIST P-256 (kernels from 5.13 verify it).
    P256,
    /// ECDSA on NIST P-384.
    P384,
}

impl KeyKind {
    /// Parses "rsa2048", "rsa4096", "ecdsa-p256", ...
    pub fn from_name(name: &str) -> Result<KeyKind> {
        Ok(match name {
            "rsa2048" | "rsa" => KeyKind::Rsa2048,
            "rsa3072" => KeyKind::Rsa3072,
            "rsa4096" => KeyKind::Rsa4096,
            "ecdsa-p256" | "p256" => KeyKind::P256,
            "ecdsa-p384" | "p384" => KeyKind::P384,
            other => {
                return Err(Error::Unsupported {
                    what: "key type",
                    detail: format!(
                        "{other:?}; one of rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384"
                    ),
                })
            }
        })
    }
}

/// A new key and its certificate.
pub struct Generated {
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER (what `mokutil --import` takes).
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, parsed.
    pub cert: Certificate,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("cert_der", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// The extensions of a self-signed code-signing certificate.
struct CodeSigning {
    subject: Name,
}

impl BuilderProfile for CodeSigning {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let mut ext: Vec<Extension> = vec![BasicConstraints {
            ca: false,
            path_len_constraint: None,
        }
        .to_extension(tbs.subject(), &[])?];
        ext.push(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(tbs.subject(), &ext)?);
        ext.push(
            ExtendedKeyUsage(vec![der::oid::db::rfc5280::ID_KP_CODE_SIGNING])
                .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(ski.0.clone()),
                ..Default::default()
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(ski.to_extension(tbs.subject(), &ext)?);
        Ok(ext)
    }
}

fn crypto(what: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Crypto { what, reason }
}

/// Makes a key of `kind` and a self-signed certificate for `common_name`,
/// valid from `now` (less a day, for clocks behind) for `days` days.
pub fn generate(kind: KeyKind, common_name: &str, days: u32, now: SystemTime) -> Result<Generated> {
    let mut rng = getrandom_04::SysRng;
    let key = match kind {
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => {
            let bits = match kind {
                KeyKind::Rsa3072 => 3072,
                KeyKind::Rsa4096 => 4096,
                _ => 2048,
            };
            PrivateKey::Rsa(Box::new(
                rsa::PrivateKey::new(&mut rng, bits)
                    .map_err(|e| crypto("generating an RSA key")(e.to_string()))?,
            ))
        }
        KeyKind::P256 => PrivateKey::P256(Box::new(
            <p256::ecdsa::SigningKey as p256::elliptic_curve::Generate>::try_generate_from_rng(
                &mut rng,
            )
            .map_err(|e| crypto("generating a P-256 key")(e.to_string()))?,
        )),
        KeyKind::P384 => PrivateKey::P384(Box::new(
            <p384::ecdsa::SigningKey as p384::elliptic_curve::Generate>::try_generate_from_rng(
                &mut rng,
            )
            .map_err(|e| crypto("generating a P-384 key")(e.to_string()))?,
        )),
    };
    let bad_name = |e: der::Error| Error::BadCertificate {
        what: format!("subject {common_name:?}"),
        reason: e.to_string(),
    };
    let escaped = common_name
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('+', "\\+");
    let subject = Name::from_str(&format!("CN={escaped}")).map_err(bad_name)?;
    let mut serial = [0u8; 16];
    getrandom_04::fill(&mut serial).map_err(|e| crypto("random serial")(e.to_string()))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(bad_name)?;
    let start = now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now);
    let validity = Validity::new(
        x509_cert::time::Time::try_from(start).map_err(bad_name)?,
        x509_cert::time::Time::try_from(now + Duration::from_secs(86_400 * u64::from(days)))
            .map_err(bad_name)?,
    );
    let profile = CodeSigning { subject };
    let cert_err = |e: x509_cert::builder::Error| crypto("making the certificate")(e.to_string());
    let (key_der, cert) = match &key {
        PrivateKey::Rsa(k) => {
            let spki = spki_of(k.to_public_key().to_public_key_der())?;
            let signer = rsa::pkcs1v15::SigningKey::<sha2_11::Sha256>::new((**k).clone());
            let cert = CertificateBuilder::new(profile, serial, validity, spki)
                .map_err(cert_err)?
                .build::<_, rsa::pkcs1v15::Signature>(&signer)
                .map_err(cert_err)?;
            (k.to_pkcs8_der(), cert)
        }
        PrivateKey::P256(k) => {
            let spki = spki_of(k.verifying_key().to_public_key_der())?;
            let cert = CertificateBuilder::new(profile, serial, validity, spki)
                .map_err(cert_err)?
                .build::<_, p256::ecdsa::DerSignature>(&**k)
                .map_err(cert_err)?;
            (k.to_pkcs8_der(), cert)
        }
        PrivateKey::P384(k) => {
            let spki = spki_of(k.verifying_key().to_public_key_der())?;
            let cert = CertificateBuilder::new(profile, serial, validity, spki)
                .map_err(cert_err)?
                .build::<_, p384::ecdsa::DerSignature>(&**k)
                .map_err(cert_err)?;
            (k.to_pkcs8_der(), cert)
        }
    };
    let key_pem = key_der
        .map_err(|e| crypto("encoding the key")(e.to_string()))?
        .to_pem("PRIVATE KEY", der::pem::LineEnding::LF)
        .map_err(|e| crypto("encoding the key")(e.to_string()))?
        .to_string();
    let cert_der = cert
        .to_der()
        .map_err(crate::error::der_err("encoding the certificate"))?;
    let cert_pem = cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(crate::error::der_err("encoding the certificate"))?;
    // Proves the pair before anyone relies on it.
    crate::Signer::new(
        PrivateKey::parse(key_pem.as_bytes(), "generated key")?,
        "generated key",
        cert.clone(),
        "generated certificate",
        now,
    )?;
    Ok(Generated {
        key_pem,
        cert_der,
        cert_pem,
        cert,
    })
}

fn spki_of(
    der: spki::Result<spki::Document>,
) -> Result<SubjectPublicKeyInfo<der::asn1::Any, der::asn1::BitString>> {
    let doc = der.map_err(|e| crypto("encoding the public key")(e.to_string()))?;
    doc.decode_msg()
        .map_err(crate::error::der_err("decoding the public key"))
}
