//! SHA-256 as Debian's indexes state it: lowercase hex. The one place the
//! crawler hashes (package files, index bodies) and checks a hash's form.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Whether `s` is a lowercase hex SHA256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// SHA256 of bytes, lowercase hex.
pub fn hash_bytes(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// SHA256 of a file, lowercase hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
