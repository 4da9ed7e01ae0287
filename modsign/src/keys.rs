//! Where module signing keys live: kmlink's own (made by `kmlink key
//! generate`), and the ones DKMS and Ubuntu's shim tooling already made
//! and the operator may already have enrolled as a Machine Owner Key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::generate::Generated;

/// Name of kmlink's private key file in its key directory.
pub const KEY_FILE: &str = "kmlink-signing.key";
/// Name of kmlink's certificate (DER, for `mokutil --import`).
pub const CERT_FILE: &str = "kmlink-signing.der";
/// The same certificate as PEM.
pub const CERT_PEM_FILE: &str = "kmlink-signing.pem";

/// Where a key pair was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named on the command line, in the environment or the configuration.
    Configured,
    /// kmlink's own key directory.
    Kmlink,
    /// DKMS's MOK (`/var/lib/dkms/mok.key`, `mok.pub`).
    Dkms,
    /// Ubuntu's shim-signed MOK (`/var/lib/shim-signed/mok/MOK.priv`, `MOK.der`).
    ShimSigned,
}

impl Origin {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Configured => "configured",
            Origin::Kmlink => "kmlink's key",
            Origin::Dkms => "DKMS's MOK",
            Origin::ShimSigned => "shim-signed's MOK",
        }
    }
}

/// A private key file and its certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The private key.
    pub key: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// Where it was found.
    pub origin: Origin,
}

/// kmlink's key directory: `$KMLINK_STATE_DIR/keys`, else
/// `/var/lib/kmlink/keys` for root, else `~/.local/share/kmlink/keys`.
pub fn key_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KMLINK_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("keys");
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/kmlink/keys");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".local/share/kmlink/keys")
}

/// kmlink's own key pair in `dir`.
pub fn kmlink_pair(dir: &Path) -> KeyPair {
    KeyPair {
        key: dir.join(KEY_FILE),
        cert: dir.join(CERT_FILE),
        origin: Origin::Kmlink,
    }
}

/// Every place a key is looked for, in order: kmlink's own in `dir`, then
/// DKMS's and shim-signed's under `root` (`/` on a real host).
pub fn candidates(root: &Path, dir: &Path) -> Vec<KeyPair> {
    vec![
        kmlink_pair(dir),
        KeyPair {
            key: root.join("var/lib/dkms/mok.key"),
            cert: root.join("var/lib/dkms/mok.pub"),
            origin: Origin::Dkms,
        },
        KeyPair {
            key: root.join("var/lib/shim-signed/mok/MOK.priv"),
            cert: root.join("var/lib/shim-signed/mok/MOK.der"),
            origin: Origin::ShimSigned,
        },
    ]
}

/// The first candidate whose key and certificate both exist.
pub fn find(root: &Path, dir: &Path) -> Option<KeyPair> {
    candidates(root, dir)
        .into_iter()
        .find(|p| p.key.is_file() && p.cert.is_file())
}

/// Writes a generated key pair into `dir` (created 0700): the key 0600,
/// the certificate as DER and PEM 0644. Refuses to replace an existing
/// key unless `force`. Each file goes through an exclusively created
/// temporary beside it and a rename, so no reader ever sees half a key.
pub fn write(dir: &Path, generated: &Generated, force: bool) -> Result<KeyPair> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io(kmlink_errors::IoError { op, path, source })
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("restricting", dir))?;
    let pair = kmlink_pair(dir);
    if !force {
        for p in [&pair.key, &pair.cert] {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(Error::Exists { path: p.clone() });
            }
        }
    }
    write_file(&pair.key, generated.key_pem.as_bytes(), 0o600)?;
    write_file(&pair.cert, &generated.cert_der, 0o644)?;
    write_file(
        &dir.join(CERT_PEM_FILE),
        generated.cert_pem.as_bytes(),
        0o644,
    )?;
    Ok(pair)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    kmlink_fsio::write_file_mode(path, data, kmlink_fsio::Durability::Durable, mode)
        .map_err(|source| Error::Io(kmlink_errors::IoError::new("writing", path, source)))
}
