//! Errors of signing, reading back and verifying module signatures, and of
//! key handling. Each message names what was being read (file, offset,
//! field) and leaves the underlying cause to the `source` chain.

use std::path::PathBuf;

/// Everything that can go wrong here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] kmlink_errors::IoError),
    /// A key or certificate file is larger than any key or certificate.
    #[error("{} is {size} bytes: larger than any key or certificate ({max} bytes at most)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The private key could not be understood.
    #[error("private key {what}: {reason}")]
    BadKey {
        /// Which key (file name, or "generated").
        what: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The certificate could not be understood.
    #[error("certificate {what}: {reason}")]
    BadCertificate {
        /// Which certificate (file name).
        what: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The certificate does not carry the public half of the key.
    #[error("certificate {cert} does not match private key {key}: they are not a pair")]
    KeyCertMismatch {
        /// The certificate.
        cert: String,
        /// The key.
        key: String,
    },
    /// The certificate's validity period does not include now.
    #[error("certificate {cert} {when} ({date}); make a new one: kmlink key generate")]
    CertificateTime {
        /// The certificate.
        cert: String,
        /// "expired" / "is not valid yet".
        when: &'static str,
        /// The bound passed, as the certificate states it.
        date: String,
    },
    /// An algorithm, curve or size the kernel does not verify, or kmlink
    /// does not produce.
    #[error("unsupported {what}: {detail}")]
    Unsupported {
        /// "key type", "hash", ...
        what: &'static str,
        /// Which, and what is supported.
        detail: String,
    },
    /// The module already ends in a signature.
    #[error("the module is already signed (by {signer}); refusing to sign it twice (re-sign deliberately with --resign)")]
    AlreadySigned {
        /// Who signed it, as far as the signature says.
        signer: String,
    },
    /// The appended signature is damaged.
    #[error("appended module signature at offset {offset}: {reason}")]
    BadTrailer {
        /// Where in the module the damaged part starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The PKCS#7 blob is not one the kernel accepts for modules.
    #[error("PKCS#7 signature: {reason}")]
    BadPkcs7 {
        /// What is wrong.
        reason: String,
    },
    /// DER encoding or decoding failed.
    #[error("{what}: DER")]
    Der {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: der::Error,
    },
    /// The signature does not verify with the certificate's key.
    #[error("the signature does not verify with the key of {cert}: {reason}")]
    Verify {
        /// The certificate.
        cert: String,
        /// Why.
        reason: String,
    },
    /// A cryptographic operation failed.
    #[error("{what} failed: {reason}")]
    Crypto {
        /// The operation.
        what: &'static str,
        /// The library's words.
        reason: String,
    },
    /// A file that must not be replaced exists.
    #[error("{} already exists; refusing to overwrite a key (remove it, or pass --force)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn der_err(what: &'static str) -> impl FnOnce(der::Error) -> Error {
    move |source| Error::Der { what, source }
}
