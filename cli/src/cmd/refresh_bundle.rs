//! `kmlink crawler refresh --bundle-out FILE`: the bundle one job of a
//! parallel crawl hands on (`kmlink_metadata_db::bundle::export_releases`);
//! the share of the kernels it takes (`--shard I/N`) is selected in
//! `kmlink_crawler::refresh`. Parsing and printing only.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use kmlink_core_module::{Arch, Manifest};
use kmlink_metadata_db::bundle;
use kmlink_metadata_db::Store;

/// What to write after a refresh, read and checked before the crawl starts
/// (a missing key fails at once, not after hours of downloads).
pub struct BundleOut {
    path: PathBuf,
    key: Option<SigningKey>,
    slim: bool,
}

impl BundleOut {
    /// `--bundle-out`, `--sign-key`, `--slim`.
    pub fn new(
        path: Option<&PathBuf>,
        sign_key: Option<&PathBuf>,
        slim: bool,
    ) -> Result<Option<BundleOut>> {
        let Some(path) = path else { return Ok(None) };
        let key = sign_key
            .map(|k| bundle::read_secret_key(k))
            .transpose()
            .context("reading the bundle signing key")?;
        Ok(Some(BundleOut {
            path: path.clone(),
            key,
            slim,
        }))
    }

    /// Writes the stored records of `releases` (none: an empty bundle, so
    /// that an empty shard's job still hands on its output) and returns
    /// the line to print.
    pub fn write(&self, store: Option<&Store>, releases: &[String], arch: Arch) -> Result<String> {
        let manifest = match self.slim {
            true => Some(
                Manifest::core_for(arch).with_context(|| format!("the {arch} core's manifest"))?,
            ),
            false => None,
        };
        let slim = manifest.as_ref().map(|m| (m, arch.core_object()));
        let (bytes, n) = match store {
            Some(store) => bundle::export_releases(store, releases, slim, self.key.as_ref())
                .with_context(|| format!("making the bundle {}", self.path.display()))?,
            None => (
                bundle::export(&[], slim, self.key.as_ref())
                    .with_context(|| format!("making the bundle {}", self.path.display()))?,
                0,
            ),
        };
        super::build::write_output(&self.path, &bytes)?;
        Ok(format!(
            "bundle {}: {n} records of {} kernels, {} bytes{}{}",
            self.path.display(),
            releases.len(),
            bytes.len(),
            if self.slim { ", slim" } else { "" },
            self.key
                .as_ref()
                .map(|k| format!(", signed by {}", bundle::fingerprint(&k.verifying_key())))
                .unwrap_or_default()
        ))
    }
}
