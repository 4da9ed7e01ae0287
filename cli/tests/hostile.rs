//! Hostile input reaching `kmlink` as a user gives it (issue #16): an
//! absurd record is refused by `build --record` and `db import`, naming the
//! impossible fact, and nothing is written; unbounded inputs fail promptly
//! naming their bound.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const KERNEL: &str = "6.1.0-47-amd64";

mod common;

fn kmlink(dir: &Path, args: &[&str]) -> Output {
    common::run_in(dir, &dir.join("records.db"), false, args)
}

fn real_record() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../linker/tests/fixtures")
        .join(format!("{KERNEL}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The absurd values: (what, mutation, words the error must say).
#[allow(clippy::type_complexity)]
fn absurd() -> Vec<(
    &'static str,
    Box<dyn Fn(&mut serde_json::Value)>,
    &'static str,
)> {
    fn layout(key: &'static str, v: u64) -> Box<dyn Fn(&mut serde_json::Value)> {
        Box::new(move |r| r["layouts"][key] = v.into())
    }
    vec![
        (
            "pid",
            layout("offsetof:task_struct.pid", u64::MAX),
            "offsetof:task_struct.pid = 0xffffffffffffffff",
        ),
        (
            "comm",
            layout("offsetof:task_struct.comm", 4_000_000_000),
            "offsetof:task_struct.comm = 0xee6b2800",
        ),
        ("kprobe", layout("sizeof:kprobe", 0), "sizeof:kprobe = 0x0"),
        (
            "percpu",
            layout("percpu:current_task", 1 << 62),
            "percpu:current_task = 0x4000000000000000",
        ),
        (
            "schema",
            Box::new(|r| r["schema"] = 999.into()),
            "schema = 999",
        ),
        (
            "arch",
            Box::new(|r| r["identity"]["arch"] = "aarch64".into()),
            "arch = \"aarch64\" contradicts the release 6.1.0-47-amd64, whose flavour names amd64 (x86_64)",
        ),
    ]
}

fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

fn refused(o: &Output, words: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted ({words}):\n{err}");
    assert!(
        err.contains(words),
        "the error does not say {words:?}:\n{err}"
    );
}

#[test]
fn the_real_record_builds_from_a_file_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_json(dir.path(), "r.json", &real_record());
    let f = f.to_str().unwrap();
    let o = kmlink(
        dir.path(),
        &["build", "--kernel", KERNEL, "--record", f, "-o", "out.ko"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kmlink(dir.path(), &["db", "import", f]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn build_record_refuses_each_absurd_value() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mutate, words) in absurd() {
        let mut r = real_record();
        mutate(&mut r);
        let f = write_json(dir.path(), &format!("{name}.json"), &r);
        let out = format!("{name}.ko");
        let o = kmlink(
            dir.path(),
            &[
                "build",
                "--kernel",
                KERNEL,
                "--record",
                f.to_str().unwrap(),
                "-o",
                &out,
            ],
        );
        refused(&o, words);
        assert!(
            !dir.path().join(&out).exists(),
            "{name}: a module was written"
        );
    }
}

#[test]
fn db_import_refuses_each_absurd_value_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mutate, words) in absurd() {
        let mut r = real_record();
        mutate(&mut r);
        let f = write_json(dir.path(), &format!("{name}.json"), &r);
        let o = kmlink(dir.path(), &["db", "import", f.to_str().unwrap()]);
        refused(&o, words);
        let o = kmlink(dir.path(), &["db", "list"]);
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(!list.contains(KERNEL), "{name}: stored anyway:\n{list}");
    }
}

fn prompt(o: &Output, started: Instant, words: &str) {
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    refused(o, words);
}

#[test]
fn dev_zero_as_donor_fails_promptly_naming_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let o = kmlink(
        dir.path(),
        &["build", "--kernel", KERNEL, "--donor", "/dev/zero"],
    );
    prompt(&o, t, "bytes, the most a kernel module file can be");
}

#[test]
fn dev_zero_as_record_btf_or_bundle_fails_promptly_naming_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let o = kmlink(
        dir.path(),
        &["build", "--kernel", KERNEL, "--record", "/dev/zero"],
    );
    prompt(&o, t, "bytes, the most a kernel record (JSON) can be");
    let t = Instant::now();
    let o = kmlink(dir.path(), &["db", "import", "/dev/zero"]);
    prompt(
        &o,
        t,
        "bytes, the most a JSON file of kernel records can be",
    );
    let t = Instant::now();
    let o = kmlink(
        dir.path(),
        &["build", "--kernel", KERNEL, "--btf", "/dev/zero"],
    );
    prompt(&o, t, "bytes, the most a kernel's BTF");
    let t = Instant::now();
    let o = kmlink(dir.path(), &["bundle", "install", "/dev/zero"]);
    prompt(&o, t, "not a kmlink bundle");
}

/// Issue #16, item 8: reading a store that does not exist creates nothing
/// (before, `db verify` created it and said "checksum ok").
#[test]
fn reading_a_missing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = kmlink(dir.path(), &["db", "verify", "--db", "never-existed.db"]);
    refused(&o, "no record store at never-existed.db");
    assert!(!dir.path().join("never-existed.db").exists());
    let o = kmlink(dir.path(), &["db", "list", "--db", "nope/dir/x.db"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.path().join("nope").exists(), "db list created nope/");
    let o = kmlink(dir.path(), &["db", "stats", "--db", "nope/dir/x.db"]);
    refused(&o, "no record store at nope/dir/x.db");
    assert!(!dir.path().join("nope").exists(), "db stats created nope/");
}

/// Issue #16, item 8: `bundle keygen -o k1` does not write the public key
/// through a dangling symlink `k1.pub`, nor leave a secret key behind.
#[test]
fn keygen_does_not_write_through_a_dangling_symlink() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path().join("victim"), dir.path().join("k1.pub")).unwrap();
    let o = kmlink(dir.path(), &["bundle", "keygen", "-o", "k1"]);
    assert!(!o.status.success(), "keygen wrote through k1.pub");
    assert!(
        !dir.path().join("victim").exists(),
        "the symlink was followed"
    );
    assert!(
        !dir.path().join("k1").exists(),
        "a secret key without its public half"
    );
}

/// Issue #16, item 8: a negative number is a bad value of its option, not
/// "unexpected argument '-1'".
#[test]
fn negative_numbers_are_bad_values_not_unknown_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for (args, words) in [
        (
            &["top", "--once", "-d", "-1"][..],
            "--interval -1 is not a positive number",
        ),
        (
            &["stats", "--interval", "-1"][..],
            "--interval -1 is not a positive number",
        ),
        (
            &["events", "--interval", "-2"][..],
            "--interval -2 is not a positive number",
        ),
        (
            &["events", "--pid", "-1"][..],
            "invalid value '-1' for '--pid <PID>'",
        ),
    ] {
        let o = kmlink(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

/// Issue #16, item 8: `--set nope=1` is the user's mistake, not a failed
/// "imports" check with advice to re-extract the record.
#[test]
fn an_unknown_option_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let o = kmlink(
        dir.path(),
        &["build", "--kernel", KERNEL, "--set", "nope=1", "-o", "x.ko"],
    );
    refused(&o, "the monitor has no option \"nope\"");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("imports") && !err.contains("re-extract"),
        "{err}"
    );
    assert!(!dir.path().join("x.ko").exists());
}

/// Issue #16, item 8: `db list` of a store with a flipped byte warns (it
/// reads the index only; before, 48 of 60 flips were listed silently).
#[test]
fn db_list_warns_about_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    let f = write_json(dir.path(), "r.json", &real_record());
    let o = kmlink(dir.path(), &["db", "import", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let db = dir.path().join("records.db");
    let clean = kmlink(dir.path(), &["db", "list"]);
    assert!(clean.status.success());
    assert!(!String::from_utf8_lossy(&clean.stderr).contains("checksum"));
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for at in [len / 3, len / 2] {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        std::fs::write(&db, &b).unwrap();
        let o = kmlink(dir.path(), &["db", "list"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() || err.contains("fails its checksum"),
            "byte {at} of {len} flipped, listed silently:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    bytes.clear();
}
