//! The record store on fixtures: round trip, damage, versions, atomicity.

mod common;

use common::{find, fixture, flip};
use kmlink_metadata_db::image::{Image, RECORD_SCHEMA_OFFSET};
use kmlink_metadata_db::{DbError, RecordKey, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("records.db")).expect("open");
    (dir, store)
}

#[test]
fn round_trip_and_idempotent() {
    let (_d, s) = store();
    let a = fixture("6.1.0-47-amd64", 1, 500, |_| true);
    let b = fixture("6.1.0-50-amd64", 2, 500, |i| i % 4 == 0);
    let a2 = fixture("6.1.0-47-amd64", 3, 500, |i| i % 2 == 0);
    s.put(&a).expect("put a");
    s.put(&b).expect("put b");
    s.put(&a2).expect("put a2");
    assert_eq!(s.get("6.1.0-50-amd64").expect("get b"), vec![b.clone()]);
    let mut both = s.get("6.1.0-47-amd64").expect("get a");
    both.sort_by_key(|r| r.identity.build_string.clone());
    assert_eq!(both, vec![a.clone(), a2.clone()]);
    assert!(s.get("5.10.0-1-amd64").expect("absent").is_empty());
    assert_eq!(s.list().expect("list").len(), 3);

    let before = std::fs::read(s.path()).expect("read");
    let report = s.put_many(&[a.clone(), b.clone()]).expect("again");
    assert_eq!(report.unchanged.len(), 2);
    assert_eq!(std::fs::read(s.path()).expect("read"), before, "idempotent");

    // Another handle (another process) sees the same.
    let s2 = Store::open(s.path()).expect("reopen");
    assert_eq!(s2.get("6.1.0-50-amd64").expect("get"), vec![b]);
    assert_eq!(
        s2.get_key(&RecordKey::of(&a2)).expect("key"),
        Some(a2.clone())
    );
    let v = s2.verify().expect("verify");
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.ok, 3);
}

#[test]
fn replacing_and_slim_never_replaces_full() {
    let (_d, s) = store();
    let full = fixture("6.1.0-47-amd64", 1, 100, |_| true);
    s.put(&full).expect("put");
    let mut slim = full.clone();
    slim.exports.retain(|k, _| k == "module_layout");
    slim.provenance = [("slim".to_string(), "core x".to_string())].into();
    let r = s.put_many(std::slice::from_ref(&slim)).expect("slim");
    assert_eq!(r.kept_full.len(), 1);
    assert_eq!(s.get("6.1.0-47-amd64").expect("get"), vec![full.clone()]);

    let mut changed = full.clone();
    changed.layouts.insert("sizeof:proc_ops".into(), 120);
    let r = s.put_many(std::slice::from_ref(&changed)).expect("replace");
    assert_eq!(r.replaced.len(), 1);
    assert_eq!(s.get("6.1.0-47-amd64").expect("get"), vec![changed]);
}

#[test]
fn flipped_blob_byte_is_named_and_repairable() {
    let (_d, s) = store();
    let a = fixture("6.1.0-47-amd64", 1, 300, |_| true);
    let b = fixture("6.12.107+deb13-amd64", 2, 300, |_| false);
    s.put(&a).expect("a");
    s.put(&b).expect("b");
    let bytes = std::fs::read(s.path()).expect("read");
    let image = Image::parse(&bytes).expect("parse");
    let blob = &image.entries[1].blob;
    let at = find(&bytes, blob) + blob.len() / 2;
    flip(s.path(), at);

    let err = s.get("6.12.107+deb13-amd64").expect_err("damaged");
    let msg = err.to_string();
    assert!(
        matches!(err, DbError::RecordDamaged { index: 1, .. }),
        "{msg}"
    );
    assert!(msg.contains("6.12.107+deb13-amd64"), "{msg}");
    assert!(msg.contains("Debian 6.1.2-1"), "names the build: {msg}");
    assert!(msg.contains("kmlink db verify --repair"), "advice: {msg}");
    // The intact record is still served.
    assert_eq!(s.get("6.1.0-47-amd64").expect("a"), vec![a.clone()]);
    // Writes are refused until repaired.
    assert!(matches!(
        s.put(&fixture("x", 9, 3, |_| true)),
        Err(DbError::NeedsRepair { .. })
    ));
    let v = s.verify().expect("verify");
    assert!(!v.checksum_ok);
    assert_eq!(v.damaged.len(), 1);
    assert_eq!(v.damaged[0].1.release, "6.12.107+deb13-amd64");
    let dropped = s.repair().expect("repair");
    assert_eq!(dropped.len(), 1);
    assert!(s.verify().expect("verify").is_clean());
    assert_eq!(s.get("6.1.0-47-amd64").expect("a"), vec![a]);
    s.put(&b).expect("put again");
}

#[test]
fn flipped_shared_string_or_crc_is_blamed_on_its_records() {
    let (_d, s) = store();
    let a = fixture("6.1.0-47-amd64", 1, 300, |_| true);
    let b = fixture("6.1.0-50-amd64", 2, 300, |_| true);
    s.put(&a).expect("a");
    s.put(&b).expect("b");
    let clean = std::fs::read(s.path()).expect("read");

    // A symbol name only b exports.
    flip(s.path(), find(&clean, b"only_in_2") + 3);
    let err = s.get("6.1.0-50-amd64").expect_err("b damaged");
    assert!(err.to_string().contains("6.1.0-50-amd64"), "{err}");
    assert_eq!(s.get("6.1.0-47-amd64").expect("a intact"), vec![a.clone()]);

    // A CRC value both share: both are named, never a wrong CRC served.
    std::fs::write(s.path(), &clean).expect("restore");
    let crc = common::mix(5).to_le_bytes();
    flip(s.path(), find(&clean, &crc) + 1);
    for rel in ["6.1.0-47-amd64", "6.1.0-50-amd64"] {
        let err = s.get(rel).expect_err("damaged");
        assert!(err.to_string().contains(rel), "{err}");
    }

    // The release in the index: the record no longer claims to be a; asking
    // for a finds nothing intact and names the damaged record.
    std::fs::write(s.path(), &clean).expect("restore");
    let bytes = std::fs::read(s.path()).expect("read");
    let image = Image::parse(&bytes).expect("parse");
    let blob0 = find(&bytes, &image.entries[0].blob);
    // The index entry of record 0 starts with its release, before its blob.
    let rel_at = bytes[..blob0]
        .windows(14)
        .rposition(|w| w == b"6.1.0-47-amd64")
        .expect("index release");
    flip(s.path(), rel_at + 2);
    let err = s.get("6.1.0-47-amd64").expect_err("damaged index");
    assert!(
        matches!(err, DbError::RecordDamaged { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn schema_and_format_mismatch_are_clear() {
    let (_d, s) = store();
    s.put(&fixture("6.1.0-47-amd64", 1, 10, |_| true))
        .expect("put");
    let mut bytes = std::fs::read(s.path()).expect("read");
    bytes[RECORD_SCHEMA_OFFSET] = bytes[RECORD_SCHEMA_OFFSET].wrapping_add(1);
    std::fs::write(s.path(), &bytes).expect("write");
    let err = Store::open(s.path()).expect_err("schema");
    let msg = err.to_string();
    assert!(matches!(err, DbError::Version { .. }), "{msg}");
    assert!(msg.contains("record schema"), "{msg}");
    assert!(msg.contains("records.db"), "{msg}");

    std::fs::write(s.path(), b"SQLite format 3\0 and more").expect("write");
    assert!(matches!(
        Store::open(s.path()),
        Err(DbError::NotAStore { .. })
    ));
}

#[test]
fn truncated_store_is_damaged_not_misread() {
    let (_d, s) = store();
    s.put(&fixture("6.1.0-47-amd64", 1, 200, |_| true))
        .expect("put");
    let bytes = std::fs::read(s.path()).expect("read");
    for cut in [20, bytes.len() / 2, bytes.len() - 33, bytes.len() - 1] {
        std::fs::write(s.path(), &bytes[..cut]).expect("write");
        match Store::open(s.path()).and_then(|s| s.get("6.1.0-47-amd64")) {
            Err(DbError::Damaged { .. } | DbError::RecordDamaged { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn leftover_temporary_is_ignored_and_cleaned() {
    let (d, s) = store();
    let a = fixture("6.1.0-47-amd64", 1, 50, |_| true);
    s.put(&a).expect("put");
    // A writer died after writing half a temporary.
    let tmp = d.path().join(".records.db.tmp-999999-0");
    std::fs::write(&tmp, b"KMLINKDB garbage").expect("tmp");
    assert_eq!(s.get("6.1.0-47-amd64").expect("get"), vec![a]);
    s.put(&fixture("6.1.0-50-amd64", 2, 50, |_| true))
        .expect("put");
    assert!(!tmp.exists(), "stale temporary removed by the next writer");
}

#[test]
fn concurrent_writers_lose_nothing() {
    let (_d, s) = store();
    let path = s.path().to_path_buf();
    std::thread::scope(|scope| {
        for t in 0..6u32 {
            let path = path.clone();
            scope.spawn(move || {
                // Separate handles, as separate processes would have.
                let s = Store::open(&path).expect("open");
                for k in 0..3u32 {
                    let b = t * 10 + k;
                    s.put(&fixture(&format!("6.1.0-{b}-amd64"), b, 100, |i| {
                        i % 2 == 0
                    }))
                    .expect("put");
                }
            });
        }
    });
    assert_eq!(s.list().expect("list").len(), 18);
    assert!(s.verify().expect("verify").is_clean());
}

#[test]
fn shared_crcs_cost_nothing_new_ones_about_four_bytes() {
    let (_d, s) = store();
    let n = 4000;
    s.put(&fixture("6.1.0-47-amd64", 1, n, |_| true))
        .expect("a");
    let after_a = s.stats().expect("stats").total_bytes;
    // Same symbols, every CRC shared (a flavour rebuilt identically).
    s.put(&fixture("6.1.0-47-cloud-amd64", 2, n, |_| true))
        .expect("b");
    let after_b = s.stats().expect("stats").total_bytes;
    // Same symbols, 75 % of the CRCs new.
    s.put(&fixture("6.1.0-50-amd64", 3, n, |i| i % 4 == 0))
        .expect("c");
    let after_c = s.stats().expect("stats").total_bytes;
    let shared_cost = after_b - after_a;
    let new_values = (n - n / 4) as u64;
    let changed_cost = after_c - after_b;
    eprintln!(
        "first {after_a} B, all-shared +{shared_cost} B, 75%-new +{changed_cost} B (floor {} B)",
        4 * new_values
    );
    assert!(shared_cost < 1200, "shared CRCs cost {shared_cost} B");
    // The projections and the directory (derived data for the fast read of
    // `kmlink build`, not counted above) cost a bounded amount per record.
    let file = std::fs::metadata(s.path()).expect("meta").len();
    let derived = file - after_c;
    assert!(derived < 3 * 1024, "projections and directory: {derived} B");
    assert!(
        changed_cost < 4 * new_values + new_values / 2 + 1500,
        "{changed_cost} B for {new_values} new CRCs"
    );
}

#[test]
fn kept_btf_round_trip_and_damage() {
    let (_d, s) = store();
    let btf = b"\x9f\xeb\x01\x00 pretend BTF".repeat(100);
    let sha = s.put_btf(&btf).expect("put");
    assert_eq!(s.btf(&sha).expect("get").as_deref(), Some(&btf[..]));
    assert_eq!(s.btf(&"0".repeat(64)).expect("absent"), None);
    let z = zstd::bulk::compress(b"something else", 3).expect("z");
    std::fs::write(s.btf_path(&sha), z).expect("damage");
    assert!(matches!(s.btf(&sha), Err(DbError::BlobDamaged { .. })));
    let v = s.verify().expect("verify");
    assert_eq!(v.damaged_blobs.len(), 1);
}

#[test]
fn default_path_honours_env() {
    // Only reads the variable; set for this process only.
    std::env::set_var("KMLINK_DB", "/tmp/kmlink-test-db/records.db");
    assert_eq!(
        Store::default_path(),
        std::path::PathBuf::from("/tmp/kmlink-test-db/records.db")
    );
    std::env::remove_var("KMLINK_DB");
    assert!(Store::default_path().ends_with(".local/share/kmlink/records.db"));
}

#[test]
fn open_existing_creates_nothing_and_open_default_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/records.db");
    assert!(Store::open_existing(Some(&path)).expect("open").is_none());
    assert!(!dir.path().join("sub").exists(), "nothing created");

    let s = Store::open_default(Some(&path)).expect("create");
    assert_eq!(s.path(), path);
    assert!(Store::open_existing(Some(&path)).expect("open").is_some());

    std::fs::write(&path, b"SQLite format 3\0 and more").expect("write");
    let err = Store::open_default(Some(&path)).expect_err("not a store");
    // The context once, the cause (which names the file too) in the chain.
    assert_eq!(
        err.to_string(),
        format!("opening the record store {}", path.display())
    );
    assert!(matches!(err.source, DbError::NotAStore { .. }));
}
