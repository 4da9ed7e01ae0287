//! Debian packages the VM harness needs for guests of another
//! architecture: the static busybox of arm64 guests, fetched from the
//! archive the origin names (bookworm `main/binary-arm64`: the suite's
//! signed `InRelease` verified, the index against it, the package against
//! the index's size and SHA256) and cached under the kmlink cache.

use std::path::PathBuf;

use crate::cache::Cache;
use crate::discover::Origin;
use crate::index::{self, IndexAt};
use crate::publish::Unpublished;
use crate::release::Keyring;
use crate::{deb, Error, Http, Result};

/// The suite whose arm64 busybox the guests run.
pub const BUSYBOX_SUITE: &str = "bookworm";

/// The package, and its executable.
const BUSYBOX_PACKAGE: &str = "busybox-static";
const BUSYBOX_MEMBER: &str = "bin/busybox";

/// Where the busybox of the package whose SHA256 is `sha256` is unpacked:
/// `<cache>/tools/busybox-arm64/<sha256>/bin/busybox`.
pub fn busybox_arm64_path(cache: &Cache, sha256: &str) -> PathBuf {
    cache
        .root
        .join("tools/busybox-arm64")
        .join(sha256)
        .join(BUSYBOX_MEMBER)
}

/// Debian's `busybox-static` for arm64 (its `bin/busybox`), the newest the
/// suite's verified index lists, downloaded once and unpacked under
/// [`busybox_arm64_path`]. Each of the origin's archive mirrors is tried in
/// turn; the last one's error is returned. (Whether the file is a static
/// aarch64 executable is the VM harness's check.)
pub fn busybox_arm64(http: &Http, cache: &Cache, origin: &Origin) -> Result<PathBuf> {
    let bases = origin.bases_for(BUSYBOX_SUITE);
    let mut last = None;
    for base in &bases {
        match busybox_arm64_from(http, cache, origin, base) {
            Ok(p) => return Ok(p),
            Err(e) => {
                last = Some(e.context(format!("{BUSYBOX_PACKAGE}:arm64 from {base}")));
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::NoMirror {
        distro: origin.distro.to_string(),
        kind: Origin::kind_of(BUSYBOX_SUITE),
        suite: BUSYBOX_SUITE.to_string(),
    }))
}

fn busybox_arm64_from(http: &Http, cache: &Cache, origin: &Origin, base: &str) -> Result<PathBuf> {
    let keyring = Keyring::load(origin.keyring_for(base))?;
    let release =
        crate::release::fetch_release(http, base, BUSYBOX_SUITE, &keyring, origin.allow_expired)?;
    let at = IndexAt {
        suite: BUSYBOX_SUITE,
        component: "main",
        arch: "arm64",
    };
    let select = index::Selection {
        name: BUSYBOX_PACKAGE,
        keep: &|n| n == BUSYBOX_PACKAGE,
    };
    let entries = index::fetch_verified_packages(http, Some(cache), base, &at, &release, &select)?;
    let entry = entries
        .iter()
        .max_by(|a, b| crate::version::compare(&a.version, &b.version))
        .ok_or_else(|| Error::BadEntry {
            package: BUSYBOX_PACKAGE.to_string(),
            msg: format!("not in {BUSYBOX_SUITE} main/binary-arm64"),
        })?;
    let bin = busybox_arm64_path(cache, &entry.sha256);
    if bin.is_file() {
        return Ok(bin);
    }
    let dir = cache.root.join("tools/busybox-arm64").join(&entry.sha256);
    // Checked against the index's size and SHA256 (the index against the
    // signed InRelease).
    let debfile = cache.fetch(http, std::slice::from_ref(&base.to_string()), entry)?;
    let unpacked = Unpublished::beside(&dir)?;
    deb::extract_paths(&debfile, unpacked.path(), &[BUSYBOX_MEMBER])?;
    if !unpacked.path().join(BUSYBOX_MEMBER).is_file() {
        return Err(Error::BadEntry {
            package: entry.label(),
            msg: format!("the package has no {BUSYBOX_MEMBER}"),
        });
    }
    unpacked.publish(|d| d.join(BUSYBOX_MEMBER).is_file())?;
    Ok(bin)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn busybox_is_cached_per_package_hash() {
        let cache = Cache::new(PathBuf::from("/c"));
        assert_eq!(
            busybox_arm64_path(&cache, "ab12"),
            PathBuf::from("/c/tools/busybox-arm64/ab12/bin/busybox")
        );
    }
}
