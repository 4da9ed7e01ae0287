//! Issue #16, item 8: commands that only read the record store create
//! nothing when it is missing (not the file, not its directory).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Output;

const KERNEL: &str = "6.1.0-47-amd64";

mod common;
use common::said;

fn kmlink(dir: &Path, args: &[&str]) -> Output {
    common::run_in(dir, &dir.join("default/records.db"), true, args)
}

#[test]
fn show_rederive_and_build_do_not_create_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // db show answers from the built-in bundle.
    let o = kmlink(d, &["db", "show", "--db", "nope/dir/x.db", KERNEL]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(KERNEL),
        "{}",
        said(&o)
    );
    assert!(!d.join("nope").exists(), "db show created nope/");
    // db rederive has nothing to re-derive.
    let o = kmlink(d, &["db", "rederive", "--db", "never-existed.db"]);
    assert!(!o.status.success(), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no record store at never-existed.db"),
        "{}",
        said(&o)
    );
    assert!(
        !d.join("never-existed.db").exists(),
        "db rederive created it"
    );
    // build looks records up (built-in bundle), writes only its output.
    let o = kmlink(
        d,
        &[
            "build",
            "--kernel",
            KERNEL,
            "--db",
            "nope/dir/x.db",
            "-o",
            "out.ko",
        ],
    );
    assert!(o.status.success(), "{}", said(&o));
    assert!(d.join("out.ko").is_file());
    assert!(!d.join("nope").exists(), "build created nope/");
    assert!(
        !d.join("default").exists(),
        "build created the default store"
    );
}
