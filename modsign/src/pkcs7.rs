//! The PKCS#7 (CMS `SignedData`, RFC 5652) a module signature carries, in
//! the one shape the kernel verifies for modules
//! (`crypto/asymmetric_keys/pkcs7_verify.c`): detached content of type
//! `id-data`, one signer, **no signed attributes** (the kernel refuses
//! them for module signatures, "has authattrs"), no certificates, the
//! signer named by issuer and serial number (or subject key identifier).
//!
//! The types are `der` derives of RFC 5652's ASN.1 for that subset rather
//! than the `cms` crate: RustCrypto's `cms` builder always adds signed
//! attributes, and the `cms` release that matches the `der` 0.8 /
//! `x509-cert` 0.3 generation used here is still a release candidate.
//! Encoding follows what OpenSSL writes for `sign-file` (digest
//! algorithms without parameters, `rsaEncryption` with NULL parameters),
//! which makes RSA signatures byte-identical to `sign-file`'s.

use der::asn1::{Any, Null, OctetString, SetOfVec};
use der::oid::db::{rfc5911, rfc5912};
use der::oid::ObjectIdentifier;
use der::{Choice, Decode, Encode, Sequence, ValueOrd};
use spki::AlgorithmIdentifier;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::error::{der_err, Error, Result};
use crate::HashAlgo;

type AlgorithmIdentifierOwned = AlgorithmIdentifier<Any>;

/// `ContentInfo` whose content is `SignedData`.
#[derive(Clone, Debug, Sequence)]
struct ContentInfo {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: SignedData,
}

/// `SignedData` without certificates or CRLs (the kernel's module
/// signatures carry neither).
#[derive(Clone, Debug, Sequence)]
struct SignedData {
    version: u8,
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    signer_infos: SetOfVec<SignerInfo>,
}

/// Detached content: the type only.
#[derive(Clone, Debug, Sequence)]
struct EncapsulatedContentInfo {
    econtent_type: ObjectIdentifier,
}

/// `SignerIdentifier`.
#[derive(Clone, Debug, Choice, PartialEq, Eq, ValueOrd)]
pub enum SignerId {
    /// The certificate's issuer and serial number (`sign-file`'s default).
    IssuerAndSerialNumber(IssuerAndSerialNumber),
    /// The certificate's subject key identifier (`sign-file -k`).
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    SubjectKeyIdentifier(OctetString),
}

/// `IssuerAndSerialNumber`.
#[derive(Clone, Debug, Sequence, PartialEq, Eq, ValueOrd)]
pub struct IssuerAndSerialNumber {
    /// The certificate's issuer.
    pub issuer: Name,
    /// The certificate's serial number.
    pub serial_number: SerialNumber,
}

/// `SignerInfo`; signed attributes are decoded only to be refused.
#[derive(Clone, Debug, Sequence, PartialEq, Eq, ValueOrd)]
struct SignerInfo {
    version: u8,
    sid: SignerId,
    digest_algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    signed_attrs: Option<SetOfVec<Any>>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: OctetString,
}

/// The public-key algorithm of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlgo {
    /// RSA, PKCS#1 v1.5.
    Rsa,
    /// ECDSA (the curve is the key's).
    Ecdsa,
}

impl std::fmt::Display for SigAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigAlgo::Rsa => "RSA",
            SigAlgo::Ecdsa => "ECDSA",
        })
    }
}

/// What a module's PKCS#7 says about its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Who signed.
    pub signer: SignerId,
    /// The digest algorithm.
    pub hash: HashAlgo,
    /// The public-key algorithm.
    pub algo: SigAlgo,
    /// The raw signature value.
    pub signature: Vec<u8>,
}

impl SignerId {
    /// A one-line description: issuer and serial, or the key identifier.
    pub fn describe(&self) -> String {
        match self {
            SignerId::IssuerAndSerialNumber(i) => format!(
                "issuer {}, serial {}",
                i.issuer,
                hex::encode(i.serial_number.as_bytes())
            ),
            SignerId::SubjectKeyIdentifier(k) => {
                format!("key id {}", hex::encode(k.as_bytes()))
            }
        }
    }
}

fn digest_oid(hash: HashAlgo) -> ObjectIdentifier {
    match hash {
        HashAlgo::Sha256 => rfc5912::ID_SHA_256,
        HashAlgo::Sha384 => rfc5912::ID_SHA_384,
        HashAlgo::Sha512 => rfc5912::ID_SHA_512,
    }
}

fn hash_of_oid(oid: &ObjectIdentifier) -> Option<HashAlgo> {
    [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512]
        .into_iter()
        .find(|h| digest_oid(*h) == *oid)
}

fn signature_algorithm(algo: SigAlgo, hash: HashAlgo) -> Result<AlgorithmIdentifierOwned> {
    Ok(match algo {
        SigAlgo::Rsa => AlgorithmIdentifier {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(Any::encode_from(&Null).map_err(der_err("NULL parameters"))?),
        },
        SigAlgo::Ecdsa => AlgorithmIdentifier {
            oid: match hash {
                HashAlgo::Sha256 => rfc5912::ECDSA_WITH_SHA_256,
                HashAlgo::Sha384 => rfc5912::ECDSA_WITH_SHA_384,
                HashAlgo::Sha512 => rfc5912::ECDSA_WITH_SHA_512,
            },
            parameters: None,
        },
    })
}

/// Encodes the detached `SignedData` of one signer without signed
/// attributes.
pub fn encode(
    signer: SignerId,
    hash: HashAlgo,
    algo: SigAlgo,
    signature: &[u8],
) -> Result<Vec<u8>> {
    let digest_algorithm = AlgorithmIdentifier {
        oid: digest_oid(hash),
        parameters: None,
    };
    let version = match signer {
        SignerId::IssuerAndSerialNumber(_) => 1,
        SignerId::SubjectKeyIdentifier(_) => 3,
    };
    let info = SignerInfo {
        version,
        sid: signer,
        digest_algorithm: digest_algorithm.clone(),
        signed_attrs: None,
        signature_algorithm: signature_algorithm(algo, hash)?,
        signature: OctetString::new(signature).map_err(der_err("signature value"))?,
    };
    let signed = SignedData {
        version: 1,
        digest_algorithms: SetOfVec::try_from(vec![digest_algorithm])
            .map_err(der_err("digest algorithms"))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
        },
        signer_infos: SetOfVec::try_from(vec![info]).map_err(der_err("signer infos"))?,
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: signed,
    }
    .to_der()
    .map_err(der_err("encoding the PKCS#7 signature"))
}

/// Decodes a module signature's PKCS#7 and checks it has the shape the
/// kernel verifies; says what differs otherwise.
pub fn decode(der_bytes: &[u8]) -> Result<Parsed> {
    let bad = |reason: String| Error::BadPkcs7 { reason };
    let ci = ContentInfo::from_der(der_bytes).map_err(|e| {
        bad(format!(
            "not a detached CMS SignedData without certificates ({e}); the kernel verifies \
             `openssl cms -sign -binary -noattr -nocerts -outform DER` output"
        ))
    })?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(bad(format!(
            "content type {} is not signedData",
            ci.content_type
        )));
    }
    let sd = ci.content;
    if sd.encap_content_info.econtent_type != rfc5911::ID_DATA {
        return Err(bad(format!(
            "content type {} is not id-data",
            sd.encap_content_info.econtent_type
        )));
    }
    let infos = sd.signer_infos.into_vec();
    let [info] = <[SignerInfo; 1]>::try_from(infos).map_err(|v| {
        bad(format!(
            "{} signers; a module signature has exactly one",
            v.len()
        ))
    })?;
    if info.signed_attrs.is_some() {
        return Err(bad(
            "it carries signed (authenticated) attributes, which the kernel refuses for module \
             signatures (sign with -noattr)"
                .into(),
        ));
    }
    let hash = hash_of_oid(&info.digest_algorithm.oid).ok_or_else(|| {
        bad(format!(
            "digest algorithm {} is not SHA-256, SHA-384 or SHA-512",
            info.digest_algorithm.oid
        ))
    })?;
    let algo = match info.signature_algorithm.oid {
        o if o == rfc5912::RSA_ENCRYPTION || o == rfc5912::SHA_256_WITH_RSA_ENCRYPTION => {
            SigAlgo::Rsa
        }
        o if o == rfc5912::ECDSA_WITH_SHA_256
            || o == rfc5912::ECDSA_WITH_SHA_384
            || o == rfc5912::ECDSA_WITH_SHA_512 =>
        {
            SigAlgo::Ecdsa
        }
        o => {
            return Err(bad(format!(
                "signature algorithm {o} is neither RSA nor ECDSA"
            )))
        }
    };
    Ok(Parsed {
        signer: info.sid,
        hash,
        algo,
        signature: info.signature.as_bytes().to_vec(),
    })
}

/// Re-encodes a certificate's issuer and serial as a signer identifier.
pub fn signer_of(cert: &x509_cert::Certificate) -> SignerId {
    let tbs = cert.tbs_certificate();
    SignerId::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer().clone(),
        serial_number: tbs.serial_number().clone(),
    })
}

/// Whether `id` names `cert`.
pub fn names(id: &SignerId, cert: &x509_cert::Certificate) -> bool {
    match id {
        SignerId::IssuerAndSerialNumber(_) => *id == signer_of(cert),
        SignerId::SubjectKeyIdentifier(k) => {
            crate::key::subject_key_id(cert).is_some_and(|ski| ski == k.as_bytes())
        }
    }
}
