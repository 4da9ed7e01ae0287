//! The signature trailer the kernel looks for at the end of a module
//! (`include/linux/module_signature.h`, `kernel/module/signing.c`):
//!
//! ```text
//! module ‖ PKCS#7 (DER) ‖ struct module_signature (12 bytes) ‖ "~Module signature appended~\n"
//! ```
//!
//! `struct module_signature` is `algo, hash, id_type, signer_len,
//! key_id_len` (one byte each; for PKCS#7 all zero but `id_type = 2`),
//! three bytes of padding, and the PKCS#7 length as a big-endian `u32`.
//! Twelve fixed bytes and a marker: a hand-written layout, since no crate
//! owns this kernel-private format.

use crate::error::{Error, Result};

/// The marker the kernel looks for at the very end of a signed module.
pub const MARKER: &[u8; 28] = b"~Module signature appended~\n";

/// `id_type` of a PKCS#7 signature (`PKEY_ID_PKCS7`).
pub const ID_PKCS7: u8 = 2;

/// Size of `struct module_signature`.
pub const INFO_LEN: usize = 12;

/// A module split at its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    /// The module as it was before it was signed (what the signature covers).
    pub content: &'a [u8],
    /// The PKCS#7 blob, when the module is signed.
    pub pkcs7: Option<&'a [u8]>,
}

/// Splits `module` into its content and its appended PKCS#7 signature, if
/// it has one. A module that ends in the marker but whose trailer is
/// damaged (lengths past the start, a non-PKCS#7 id type, non-zero fields
/// the kernel requires to be zero) is an error, not an unsigned module.
pub fn split(module: &[u8]) -> Result<Split<'_>> {
    let Some(rest) = module.strip_suffix(MARKER.as_slice()) else {
        return Ok(Split {
            content: module,
            pkcs7: None,
        });
    };
    let bad = |offset: usize, reason: String| Error::BadTrailer { offset, reason };
    let Some(info_at) = rest.len().checked_sub(INFO_LEN) else {
        return Err(bad(
            0,
            format!(
                "the marker is present but the module is only {} bytes, too short for struct module_signature",
                module.len()
            ),
        ));
    };
    let info = &rest[info_at..];
    let (algo, hash, id_type, signer_len, key_id_len) =
        (info[0], info[1], info[2], info[3], info[4]);
    if id_type != ID_PKCS7 {
        return Err(bad(
            info_at,
            format!("id_type {id_type}, not PKCS#7 ({ID_PKCS7}): the kernel only verifies PKCS#7"),
        ));
    }
    if algo != 0 || hash != 0 || signer_len != 0 || key_id_len != 0 || info[5..8] != [0, 0, 0] {
        return Err(bad(
            info_at,
            "struct module_signature has non-zero algo/hash/signer_len/key_id_len/pad, which the kernel refuses for PKCS#7"
                .into(),
        ));
    }
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let Some(sig_at) = info_at.checked_sub(sig_len) else {
        return Err(bad(
            info_at,
            format!("sig_len {sig_len} reaches before the start of the module ({info_at} bytes precede it)"),
        ));
    };
    if sig_len == 0 {
        return Err(bad(info_at, "sig_len is 0".into()));
    }
    Ok(Split {
        content: &rest[..sig_at],
        pkcs7: Some(&rest[sig_at..info_at]),
    })
}

/// `content ‖ pkcs7 ‖ struct module_signature ‖ marker`.
pub fn append(content: &[u8], pkcs7: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(pkcs7.len()).map_err(|_| Error::BadPkcs7 {
        reason: format!("{} bytes do not fit sig_len (u32)", pkcs7.len()),
    })?;
    let mut out = Vec::with_capacity(content.len() + pkcs7.len() + INFO_LEN + MARKER.len());
    out.extend_from_slice(content);
    out.extend_from_slice(pkcs7);
    out.extend_from_slice(&[0, 0, ID_PKCS7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(MARKER);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_module_has_no_signature() {
        let s = split(b"\x7fELF....").unwrap();
        assert_eq!(s.content, b"\x7fELF....");
        assert!(s.pkcs7.is_none());
    }

    #[test]
    fn append_then_split_round_trips() {
        let signed = append(b"module", b"pkcs7").unwrap();
        assert_eq!(signed.len(), 6 + 5 + 12 + 28);
        assert_eq!(&signed[11..23], &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        let s = split(&signed).unwrap();
        assert_eq!(s.content, b"module");
        assert_eq!(s.pkcs7, Some(&b"pkcs7"[..]));
    }

    #[test]
    fn damaged_trailers_are_errors() {
        // Marker alone.
        assert!(split(MARKER).is_err());
        // Length past the start.
        let mut signed = append(b"m", b"sig").unwrap();
        let at = signed.len() - MARKER.len() - 1;
        signed[at] = 200;
        assert!(matches!(split(&signed), Err(Error::BadTrailer { .. })));
        // Wrong id type.
        let mut signed = append(b"m", b"sig").unwrap();
        signed[1 + 3 + 2] = 1;
        let e = split(&signed).unwrap_err().to_string();
        assert!(e.contains("id_type 1"), "{e}");
        // Zero length.
        let signed = append(b"m", b"").unwrap();
        assert!(split(&signed).is_err());
    }
}
