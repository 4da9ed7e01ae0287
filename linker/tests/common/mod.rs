//! Shared by the linker's tests: the fixture records and donors made from them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_linker::check::{Facts, Verdict};
use kmlink_linker::donor::Donor;
use kmlink_metadata_db::record::KernelRecord;

/// The pinned kernels whose records are fixtures.
pub const RELEASES: &[&str] = &[
    "6.1.0-47-amd64",
    "6.12.107+deb13-amd64",
    "7.3.4+deb13-amd64",
];

/// `linker/tests/<sub>`.
pub fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

/// The fixture record of `release` (see tests/fixtures/README.md).
pub fn record(release: &str) -> KernelRecord {
    let path = dir("fixtures").join(format!("{release}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The embedded core's manifest.
pub fn manifest() -> Manifest {
    Manifest::core().expect("embedded core manifest")
}

/// A module linked from `record` with the bare linker.
pub fn link(record: &KernelRecord) -> Vec<u8> {
    kmlink_linker::link(CORE_OBJECT, &manifest(), record)
        .expect("fixture links")
        .ko
}

/// A donor made by linking the (correct) fixture record of `release`: it
/// carries that kernel's vermagic, `struct module` layout and CRCs as the
/// kernel's own modules do.
pub fn donor(release: &str) -> Donor {
    let ko = link(&record(release));
    Donor::from_bytes(Path::new(&format!("/lib/modules/{release}/donor.ko")), &ko)
        .expect("donor parses")
}

/// Runs the full build with `record` and optionally a donor; the verdict.
pub fn verdict(record: &KernelRecord, donor: Option<&Donor>) -> Result<Verdict, Verdict> {
    let m = manifest();
    let facts = Facts {
        record,
        manifest: &m,
        donor,
        btf: None,
        host: None,
        image: None,
    };
    match kmlink_linker::build(CORE_OBJECT, &facts) {
        Ok(b) => Ok(b.verdict),
        Err(r) => Err(r.verdict),
    }
}
