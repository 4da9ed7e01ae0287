//! `gather::gather` without a running target: the built-in bundle when no
//! store exists (none is created), a record file (checked to be the
//! target's), the caller's package fetcher (its error passed on whole),
//! and no record anywhere.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::RefCell;
use std::path::Path;

use kmlink_core_module::Manifest;
use kmlink_errors::chain;
use kmlink_linker::gather::{self, FetchError, FetchedPackages, GatherError, GatherOptions};
use kmlink_metadata_db::Store;

const REL: &str = "5.10.0-30-amd64";

fn manifest() -> Manifest {
    Manifest::core().unwrap()
}

fn opts<'a>(kernel: &'a str, db: &'a Path) -> GatherOptions<'a> {
    GatherOptions {
        kernel: Some(kernel),
        db: Some(db),
        ..GatherOptions::default()
    }
}

#[test]
fn a_missing_store_leaves_the_built_in_bundle_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/records.db");
    let s = gather::gather(&opts(REL, &db), &manifest()).unwrap();
    assert_eq!(s.release, REL);
    assert_eq!(s.record.identity.release, REL);
    assert_eq!(s.record_from, "the bundle built into kmlink");
    assert!(!s.from_host && s.provenance().is_empty());
    assert_eq!(
        s.describe()[..2],
        ["record: the bundle built into kmlink", "donor: none"]
    );
    assert!(!dir.path().join("sub").exists(), "no store created");
}

#[test]
fn a_record_file_must_be_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let record = Store::embedded()
        .unwrap()
        .into_iter()
        .find(|r| r.identity.release == REL)
        .unwrap();
    let file = dir.path().join("record.json");
    std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();

    let s = gather::gather(
        &GatherOptions {
            record: Some(&file),
            ..opts(REL, &db)
        },
        &manifest(),
    )
    .unwrap();
    assert_eq!(s.record_from, format!("file {}", file.display()));

    let other = "5.10.0-32-amd64";
    let e = gather::gather(
        &GatherOptions {
            record: Some(&file),
            ..opts(other, &db)
        },
        &manifest(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, GatherError::RecordRelease { .. }));
    assert_eq!(
        e.to_string(),
        format!("record {} is for {REL}, not {other}", file.display())
    );

    let missing = dir.path().join("missing.json");
    let e = gather::gather(
        &GatherOptions {
            record: Some(&missing),
            ..opts(REL, &db)
        },
        &manifest(),
    )
    .err()
    .unwrap();
    // The context once, then the cause.
    let said = chain(&e);
    assert!(
        said.starts_with(&format!("reading {}: ", missing.display())),
        "{said}"
    );
    assert_eq!(said.matches("missing.json").count(), 1, "{said}");
}

#[test]
fn the_callers_fetcher_gets_the_release_and_its_error_is_passed_on_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let asked = RefCell::new(Vec::new());
    let fetch = |release: &str| -> Result<FetchedPackages, FetchError> {
        asked.borrow_mut().push(release.to_string());
        let cause = std::io::Error::other("connection refused");
        Err(Box::new(Wrapped(cause)))
    };
    let e = gather::gather(
        &GatherOptions {
            from_packages: Some(&fetch),
            ..opts(REL, &db)
        },
        &manifest(),
    )
    .err()
    .unwrap();
    assert_eq!(*asked.borrow(), [REL]);
    assert_eq!(
        chain(&e),
        format!("fetching and unpacking {REL}: connection refused")
    );
    assert!(!db.exists(), "the store is not consulted");
}

#[test]
fn no_record_anywhere_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let e = gather::gather(&opts("9.9.9-1-amd64", &db), &manifest())
        .err()
        .unwrap();
    assert!(matches!(e, GatherError::NoRecord { .. }));
    assert!(
        e.to_string().starts_with(
            "no record for 9.9.9-1-amd64 in the store or the built-in bundle; get one with"
        ),
        "{e}"
    );
}

/// A caller's error with a cause: "fetching and unpacking REL", then it.
#[derive(Debug)]
struct Wrapped(std::io::Error);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fetching and unpacking {REL}")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
