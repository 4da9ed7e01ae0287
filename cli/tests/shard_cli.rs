//! Issue #19, "a crawl that scales out": the flags of `kmlink crawler
//! refresh --shard I/N --bundle-out F` and `kmlink bundle merge` /
//! `bundle install A B…`, on bundles of real (slim) records of the
//! embedded bundle. The crawl itself on real packages is in
//! tests/tests/shard_real.rs.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Output;

use kmlink_metadata_db::bundle;
use kmlink_metadata_db::record::KernelRecord;

mod common;
use common::said;

fn kmlink(dir: &Path, args: &[&str]) -> Output {
    common::run_in(dir, &dir.join("records.db"), true, args)
}

fn fails_with(o: &Output, want: &str) {
    assert!(!o.status.success(), "{}", said(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(want), "{want:?} in {}", said(o));
}

/// Three real records of the embedded bundle, of both architectures when
/// it has them.
fn three() -> Vec<KernelRecord> {
    let all = bundle::embedded_records().unwrap();
    assert!(
        all.len() >= 3,
        "the embedded bundle has {} records",
        all.len()
    );
    let mut pick: Vec<KernelRecord> = all
        .iter()
        .filter(|r| r.identity.arch == "aarch64")
        .take(1)
        .cloned()
        .collect();
    pick.extend(
        all.iter()
            .filter(|r| r.identity.arch != "aarch64")
            .take(3 - pick.len())
            .cloned(),
    );
    pick
}

#[test]
fn refresh_shard_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (shard, want) in [
        ("2/2", "is past the last shard, 1"),
        ("0/0", "has no shards"),
        ("1", "has no '/'"),
        ("x/4", "not a number"),
    ] {
        let o = kmlink(d, &["crawler", "refresh", "--shard", shard, "--dry-run"]);
        fails_with(&o, want);
        assert_eq!(o.status.code(), Some(2), "a usage error: {}", said(&o));
    }
    // The signing key and slim records are for the bundle.
    let o = kmlink(d, &["crawler", "refresh", "--sign-key", "k", "--dry-run"]);
    fails_with(&o, "--bundle-out");
    let o = kmlink(d, &["crawler", "refresh", "--slim", "--dry-run"]);
    fails_with(&o, "--bundle-out");
    // The key is read before discovery starts (a wrong path fails at once,
    // not after the crawl).
    let o = kmlink(
        d,
        &[
            "crawler",
            "refresh",
            "--shard",
            "0/2",
            "--bundle-out",
            "out.kmb",
            "--sign-key",
            "missing.key",
            "--mirror",
            "http://127.0.0.1:9/debian",
            "--suite",
            "bookworm",
        ],
    );
    fails_with(&o, "reading the bundle signing key: reading missing.key");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("skipped"),
        "no discovery: {}",
        said(&o)
    );
    assert!(!d.join("out.kmb").exists());
    // Help lists the flags.
    let o = kmlink(d, &["crawler", "refresh", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--shard <I/N>",
        "--bundle-out <FILE>",
        "--sign-key <KEYFILE>",
        "--slim",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn merge_and_install_several_on_real_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recs = three();
    let write = |name: &str, rs: &[KernelRecord]| {
        // As exported: these records are slim already, and stay so.
        std::fs::write(d.join(name), bundle::export(rs, None, None).unwrap()).unwrap();
    };
    write("s0.kmb", &recs[..2]);
    write("s1.kmb", &recs[1..]);

    let o = kmlink(d, &["bundle", "merge", "-o", "all.kmb", "s0.kmb", "s1.kmb"]);
    assert!(o.status.success(), "{}", said(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("all.kmb: 3 records from 2 bundles (1 in several, kept once)"),
        "{out}"
    );
    assert!(
        out.contains("s1.kmb: 2 records, unsigned, 1 held by an earlier bundle too"),
        "{out}"
    );
    let merged = bundle::read(
        &std::fs::read(d.join("all.kmb")).unwrap(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(merged.records.len(), 3);

    // Installing the shards at once, then the merged bundle: the same.
    let o = kmlink(d, &["bundle", "install", "s0.kmb", "s1.kmb"]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("2 bundles: 3 records (1 in several bundles, kept once): 3 added"),
        "{}",
        said(&o)
    );
    let o = kmlink(d, &["bundle", "install", "all.kmb"]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 unchanged"),
        "{}",
        said(&o)
    );

    // A conflicting record of one kernel: refused, naming it; nothing written.
    let mut changed = recs[1].clone();
    changed.vermagic.push_str("changed ");
    write("bad.kmb", &[changed]);
    let o = kmlink(d, &["bundle", "merge", "-o", "x.kmb", "s0.kmb", "bad.kmb"]);
    fails_with(
        &o,
        &format!("conflicting records of kernel {}", recs[1].identity.release),
    );
    fails_with(
        &o,
        "s0.kmb and bad.kmb hold different records of it (they differ in vermagic)",
    );
    assert!(!d.join("x.kmb").exists());
    let o = kmlink(
        dir.path(),
        &["bundle", "install", "--db", "other.db", "s1.kmb", "bad.kmb"],
    );
    fails_with(&o, "conflicting records of kernel");
    assert!(!d.join("other.db").exists(), "nothing stored");

    // Signatures: signed shards merge with --trust; a bad one is named.
    let o = kmlink(d, &["bundle", "keygen", "-o", "crawler.key"]);
    assert!(o.status.success(), "{}", said(&o));
    let key = bundle::read_secret_key(&d.join("crawler.key")).unwrap();
    std::fs::write(
        d.join("t0.kmb"),
        bundle::export(&recs[..1], None, Some(&key)).unwrap(),
    )
    .unwrap();
    let mut t1 = bundle::export(&recs[1..], None, Some(&key)).unwrap();
    std::fs::write(d.join("t1.kmb"), &t1).unwrap();
    let trust = ["--trust", "crawler.key.pub"];
    let o = kmlink(
        d,
        &[
            &[
                "bundle",
                "merge",
                "-o",
                "t.kmb",
                "--sign-key",
                "crawler.key",
            ][..],
            &trust,
            &["t0.kmb", "t1.kmb"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(", signed by "),
        "{}",
        said(&o)
    );
    // Unsigned input where a signature is required.
    let o = kmlink(
        d,
        &[
            &["bundle", "merge", "-o", "u.kmb"][..],
            &trust,
            &["t0.kmb", "s1.kmb"],
        ]
        .concat(),
    );
    fails_with(&o, "s1.kmb: the bundle is not signed");
    // Bad signature.
    let n = t1.len();
    t1[n - 1] ^= 1;
    std::fs::write(d.join("t1.kmb"), &t1).unwrap();
    let o = kmlink(
        d,
        &[
            &["bundle", "merge", "-o", "v.kmb"][..],
            &trust,
            &["t0.kmb", "t1.kmb"],
        ]
        .concat(),
    );
    fails_with(&o, "t1.kmb: the signature by key");
    assert!(!d.join("v.kmb").exists());

    // No input.
    let o = kmlink(d, &["bundle", "merge", "-o", "w.kmb"]);
    fails_with(&o, "<BUNDLE>...");
}
