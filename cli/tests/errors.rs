//! What `kmlink` says when something is wrong, run as a user runs it: an
//! error names its context and its cause, each once.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Output;

mod common;

fn kmlink(args: &[&str]) -> Output {
    common::run(args)
}

/// `kmlink build --donor` with a missing file: the cause, once.
#[test]
fn a_missing_donor_names_its_cause_once() {
    let o = kmlink(&[
        "build",
        "--kernel",
        "6.1.0-47-amd64",
        "--donor",
        "/nonexistent.ko",
    ]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent.ko"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause must be said exactly once:\n{err}"
    );
}

/// `--btf` naming a missing file is the user's file, not the kernel's
/// configuration: no advice to rebuild the kernel with BTF.
#[test]
fn a_missing_btf_file_is_not_blamed_on_the_kernel() {
    let o = kmlink(&["build", "--kernel", "6.1.0-47-amd64", "--btf", "/missing"]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("/missing"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause must be said exactly once:\n{err}"
    );
    assert!(
        !err.contains("CONFIG_DEBUG_INFO_BTF"),
        "an explicit --btf file is not the kernel's configuration:\n{err}"
    );
}
