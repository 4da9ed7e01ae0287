//! Merging bundles (the shards of a parallel crawl) on fixtures: identical
//! records kept once, conflicts refused and named, architectures, kinds,
//! signatures, and installing several bundles.

mod common;

use common::fixture;
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_metadata_db::bundle::{self, BundleError, Trust};
use kmlink_metadata_db::merge::{self, Input, MergeError};
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::{RecordKey, Store};

fn a() -> KernelRecord {
    fixture("6.1.0-47-amd64", 1, 200, |_| true)
}
fn b() -> KernelRecord {
    fixture("6.1.0-50-amd64", 2, 200, |i| i % 4 == 0)
}
fn c() -> KernelRecord {
    fixture("7.3.4+deb13-amd64", 3, 200, |_| false)
}

/// An arm64 kernel's record.
fn arm() -> KernelRecord {
    let mut r = fixture("6.1.0-47-arm64", 4, 200, |_| true);
    r.identity.arch = "aarch64".into();
    r.identity.flavour = "arm64".into();
    r
}

fn export(recs: &[KernelRecord]) -> Vec<u8> {
    bundle::export(recs, None, None).expect("export")
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("records.db")).expect("open");
    (dir, s)
}

fn inputs<'a>(named: &'a [(&'a str, Vec<u8>)]) -> Vec<Input<'a>> {
    named
        .iter()
        .map(|(name, bytes)| Input { name, bytes })
        .collect()
}

#[test]
fn identical_records_are_kept_once_and_order_does_not_matter() {
    let named = [
        ("shard-0.kmb", export(&[a(), b()])),
        ("shard-1.kmb", export(&[b(), c()])),
    ];
    let m = merge::merge(&inputs(&named), &Trust::default()).expect("merge");
    assert_eq!(m.records.len(), 3);
    assert_eq!(m.duplicates(), 1);
    assert_eq!(m.inputs[1].duplicates, 1);
    assert_eq!(m.inputs[0].records, 2);
    let out = merge::to_bundle(&m, None).expect("bundle");
    let v = bundle::read(&out, &Trust::default()).expect("the merged bundle reads");
    let mut want = vec![a(), b(), c()];
    want.sort_by_key(RecordKey::of);
    assert_eq!(v.records, want);
    assert!(!v.header.slim);

    // The same union in the other order: the same bytes.
    let reversed = [named[1].clone(), named[0].clone()];
    let m2 = merge::merge(&inputs(&reversed), &Trust::default()).expect("merge");
    assert_eq!(merge::to_bundle(&m2, None).expect("bundle"), out);
    // And equal to exporting the union directly.
    assert_eq!(out, export(&[c(), a(), b()]));
}

#[test]
fn two_builds_of_one_release_are_both_kept() {
    // Same release, another build (uname -v, BTF): another identity.
    let a2 = fixture("6.1.0-47-amd64", 9, 200, |_| true);
    let named = [("x.kmb", export(&[a()])), ("y.kmb", export(&[a2]))];
    let m = merge::merge(&inputs(&named), &Trust::default()).expect("merge");
    assert_eq!(m.records.len(), 2);
}

#[test]
fn conflicting_records_of_one_kernel_are_refused_and_named() {
    let mut changed = a();
    changed
        .layouts
        .insert("offsetof:task_struct.pid".into(), 2424);
    changed.identity.packages[0].sha256 = format!("{:064x}", 77);
    let named = [
        ("shard-0.kmb", export(&[a(), b()])),
        ("shard-1.kmb", export(&[c()])),
        ("shard-2.kmb", export(&[changed])),
    ];
    let err = merge::merge(&inputs(&named), &Trust::default()).expect_err("conflict");
    assert!(matches!(err, MergeError::Conflict { .. }), "{err}");
    let text = err.to_string();
    for want in [
        "conflicting records of kernel 6.1.0-47-amd64",
        "shard-0.kmb and shard-2.kmb",
        "identity.packages, layouts",
        "nothing was merged",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }

    // Installing them together stores nothing.
    let (_d, s) = store();
    let err = merge::install(&s, &inputs(&named), &Trust::default()).expect_err("conflict");
    assert!(matches!(err, MergeError::Conflict { .. }), "{err}");
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn both_architectures_merge_and_a_foreign_arch_record_is_refused() {
    let named = [
        ("amd64.kmb", export(&[a()])),
        ("arm64.kmb", export(&[arm()])),
    ];
    let m = merge::merge(&inputs(&named), &Trust::default()).expect("merge");
    let arches: Vec<&str> = m.records.iter().map(|r| r.identity.arch.as_str()).collect();
    assert_eq!(arches, ["x86_64", "aarch64"]);

    // An amd64 kernel's record claiming aarch64: no store would take it.
    let mut foreign = a();
    foreign.identity.arch = "aarch64".into();
    let named = [("ok.kmb", export(&[b()])), ("bad.kmb", export(&[foreign]))];
    let err = merge::merge(&inputs(&named), &Trust::default()).expect_err("foreign");
    let text = kmlink_errors::chain(&err);
    assert!(
        text.contains("bad.kmb: record #0, 6.1.0-47-amd64"),
        "{text}"
    );
    assert!(
        text.contains("contradicts the release 6.1.0-47-amd64"),
        "{text}"
    );
}

#[test]
fn signatures_are_checked_per_input() {
    let dir = tempfile::tempdir().expect("dir");
    let (k1, k2) = (dir.path().join("k1"), dir.path().join("k2"));
    bundle::keygen(&k1).expect("k1");
    bundle::keygen(&k2).expect("k2");
    let (sk1, sk2) = (
        bundle::read_secret_key(&k1).expect("sk1"),
        bundle::read_secret_key(&k2).expect("sk2"),
    );
    let trust1 = Trust::from_files(&[bundle::public_path(&k1)]).expect("trust");
    let s0 = bundle::export(&[a()], None, Some(&sk1)).expect("s0");
    let s1 = bundle::export(&[b()], None, Some(&sk1)).expect("s1");

    let named = [("s0.kmb", s0.clone()), ("s1.kmb", s1.clone())];
    let m = merge::merge(&inputs(&named), &trust1).expect("trusted");
    let fp = bundle::fingerprint(&sk1.verifying_key());
    assert!(m.inputs.iter().all(|i| i.signer.as_deref() == Some(&fp)));
    // The merged bundle is signed anew.
    let out = merge::to_bundle(&m, Some(&sk1)).expect("signed");
    assert_eq!(
        bundle::read(&out, &trust1)
            .expect("reads")
            .signer
            .as_deref(),
        Some(fp.as_str())
    );

    // A bad signature (its last byte changed) in the second input.
    let mut bad = s1.clone();
    *bad.last_mut().expect("byte") ^= 1;
    let named = [("s0.kmb", s0.clone()), ("s1.kmb", bad)];
    let err = merge::merge(&inputs(&named), &trust1).expect_err("bad signature");
    assert!(
        matches!(&err, MergeError::Input { name, source: BundleError::BadSignature(_) } if name == "s1.kmb"),
        "{err}"
    );
    assert!(kmlink_errors::chain(&err).contains("s1.kmb"), "{err}");

    // Another publisher's key, and an unsigned input, where keys are given.
    let other = bundle::export(&[c()], None, Some(&sk2)).expect("other");
    let named = [("s0.kmb", s0.clone()), ("other.kmb", other)];
    let err = merge::merge(&inputs(&named), &trust1).expect_err("untrusted");
    assert!(
        matches!(
            &err,
            MergeError::Input {
                source: BundleError::Untrusted(_),
                ..
            }
        ),
        "{err}"
    );
    let named = [("s0.kmb", s0), ("plain.kmb", export(&[c()]))];
    let err = merge::merge(&inputs(&named), &trust1).expect_err("unsigned");
    assert!(
        matches!(
            &err,
            MergeError::Input {
                source: BundleError::Unsigned(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn slim_and_full_do_not_mix_and_slim_stays_slim() {
    let manifest = Manifest::core().expect("manifest");
    let slim0 = bundle::export(&[a()], Some((&manifest, CORE_OBJECT)), None).expect("slim");
    let slim1 = bundle::export(&[b()], Some((&manifest, CORE_OBJECT)), None).expect("slim");
    let named = [("s0.kmb", slim0.clone()), ("s1.kmb", slim1)];
    let m = merge::merge(&inputs(&named), &Trust::default()).expect("slim merge");
    let out = merge::to_bundle(&m, None).expect("bundle");
    let h = bundle::read(&out, &Trust::default()).expect("reads").header;
    let h0 = bundle::read(&slim0, &Trust::default())
        .expect("reads")
        .header;
    assert!(h.slim);
    assert_eq!(h.core, h0.core);

    let named = [("slim.kmb", slim0), ("full.kmb", export(&[c()]))];
    let err = merge::merge(&inputs(&named), &Trust::default()).expect_err("kinds");
    let text = err.to_string();
    assert!(
        text.contains("full.kmb holds full records, but slim.kmb holds slim records for core"),
        "{text}"
    );
}

#[test]
fn damaged_input_and_no_input() {
    let mut damaged = export(&[a()]);
    let n = damaged.len();
    damaged[n - 10] ^= 0x40;
    let named = [("good.kmb", export(&[b()])), ("damaged.kmb", damaged)];
    let err = merge::merge(&inputs(&named), &Trust::default()).expect_err("damaged");
    assert!(
        matches!(&err, MergeError::Input { name, .. } if name == "damaged.kmb"),
        "{err}"
    );
    assert!(matches!(
        merge::merge(&[], &Trust::default()),
        Err(MergeError::NoInputs)
    ));
}

#[test]
fn installing_several_bundles_in_a_row_and_at_once() {
    let (_d, s) = store();
    let b0 = export(&[a(), b()]);
    let b1 = export(&[b(), c(), arm()]);
    let r0 = bundle::install(&s, &b0, &Trust::default()).expect("first");
    assert_eq!(r0.put.added.len(), 2);
    let r1 = bundle::install(&s, &b1, &Trust::default()).expect("second");
    assert_eq!((r1.put.added.len(), r1.put.unchanged.len()), (2, 1));
    assert_eq!(s.list().expect("list").len(), 4);

    let (_d2, s2) = store();
    let named = [("b0", b0), ("b1", b1)];
    let (m, put) = merge::install(&s2, &inputs(&named), &Trust::default()).expect("at once");
    assert_eq!((m.records.len(), put.added.len()), (4, 4));
    let keys = |s: &Store| {
        let mut k: Vec<RecordKey> = s.all().expect("all").iter().map(RecordKey::of).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&s2), keys(&s));
}

#[test]
fn a_shard_without_records_is_an_empty_bundle_that_merges() {
    let (_d, s) = store();
    s.put_many(&[a(), b()]).expect("put");
    let wanted = ["6.1.0-47-amd64".to_string(), "5.10.0-1-amd64".to_string()];
    let (bytes, n) = bundle::export_releases(&s, &wanted, None, None).expect("export");
    assert_eq!(n, 1, "the stored one of the two");
    assert_eq!(
        bundle::read(&bytes, &Trust::default())
            .expect("reads")
            .records,
        vec![a()]
    );
    let (empty, n) = bundle::export_releases(&s, &["none".to_string()], None, None).expect("empty");
    assert_eq!(n, 0);
    let named = [("empty.kmb", empty), ("one.kmb", bytes)];
    let m = merge::merge(&inputs(&named), &Trust::default()).expect("merge");
    assert_eq!(m.records, vec![a()]);
}

/// A slim export is cut for the embedded core of the records' one
/// architecture; records of two architectures are refused, naming both.
#[test]
fn slim_core_follows_the_records_architecture() {
    let (_, object) = bundle::slim_core_of(&[a(), c()]).expect("x86 records");
    assert_eq!(object, kmlink_core_module::Arch::X86_64.core_object());
    let (manifest, object) = bundle::slim_core_of(&[arm()]).expect("arm64 records");
    assert_eq!(object, kmlink_core_module::Arch::Aarch64.core_object());
    let bytes = bundle::export(&[arm()], Some((&manifest, object)), None).expect("slim arm64");
    let read = bundle::read(&bytes, &Trust::default()).expect("read back");
    let cut_for = read.records[0]
        .provenance
        .get(kmlink_metadata_db::slim::SLIM_KEY)
        .expect("slim");
    assert!(
        kmlink_metadata_db::slim::covers(&read.records[0], &manifest, object).is_ok(),
        "cut for {cut_for}"
    );
    let e = bundle::slim_core_of(&[a(), arm()])
        .expect_err("two architectures")
        .to_string();
    assert!(e.contains("aarch64 and x86_64"), "{e}");
}
