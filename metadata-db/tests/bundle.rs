//! Bundles on fixtures: round trip, slim, damage, truncation, signatures.

mod common;

use common::fixture;
use kmlink_core_module::{Arch, Manifest, CORE_OBJECT};
use kmlink_metadata_db::bundle::{self, BundleError, BundleHeader, Trust, MAGIC};
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::{slim, Store};

fn records() -> Vec<KernelRecord> {
    vec![
        fixture("6.1.0-47-amd64", 1, 300, |_| true),
        fixture("6.1.0-50-amd64", 2, 300, |i| i % 4 == 0),
        fixture("7.3.4+deb13-amd64", 3, 300, |_| false),
    ]
}

fn empty_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("records.db")).expect("open");
    (dir, s)
}

/// Splits a bundle into (header, payload, signature).
fn split(b: &[u8]) -> (BundleHeader, Vec<u8>, Vec<u8>) {
    let hlen = u32::from_le_bytes(b[8..12].try_into().expect("len")) as usize;
    let json = zstd::decode_all(&b[12..12 + hlen]).expect("header");
    let header: BundleHeader = serde_json::from_slice(&json).expect("header");
    let p = 12 + hlen;
    let payload = b[p..p + header.payload_len as usize].to_vec();
    let sig = b[p + header.payload_len as usize..].to_vec();
    (header, payload, sig)
}

fn join(h: &BundleHeader, payload: &[u8]) -> Vec<u8> {
    let hj = zstd::encode_all(&serde_json::to_vec(h).expect("json")[..], 3).expect("z");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(hj.len() as u32).to_le_bytes());
    out.extend_from_slice(&hj);
    out.extend_from_slice(payload);
    out
}

fn sha(b: &[u8]) -> String {
    hex::encode(kmlink_metadata_db::image::sha256(b))
}

#[test]
fn full_round_trip_installs_everything() {
    let recs = records();
    let b = bundle::export(&recs, None, None).expect("export");
    assert_eq!(
        b,
        bundle::export(&recs, None, None).expect("again"),
        "deterministic"
    );
    let (_d, s) = empty_store();
    let r = bundle::install(&s, &b, &Trust::default()).expect("install");
    assert_eq!(r.records, 3);
    assert_eq!(r.put.added.len(), 3);
    for rec in &recs {
        assert_eq!(
            s.get(&rec.identity.release).expect("get"),
            vec![rec.clone()]
        );
    }
    let again = bundle::install(&s, &b, &Trust::default()).expect("again");
    assert_eq!(again.put.unchanged.len(), 3);
}

#[test]
fn slim_keeps_what_the_core_binds_and_is_small() {
    let manifest = Manifest::core().expect("manifest");
    let mut rec = fixture("6.1.0-47-amd64", 1, 3000, |_| true);
    for name in [
        "_printk",
        "tracepoint_probe_register",
        "__x86_return_thunk",
        "__x86_indirect_thunk_rax",
        "current_task",
    ] {
        rec.exports.insert(
            name.into(),
            kmlink_metadata_db::record::Export {
                crc: Some(7),
                gpl: false,
                namespace: None,
                owner: "vmlinux".into(),
            },
        );
    }
    let b = bundle::export(
        std::slice::from_ref(&rec),
        Some((&manifest, CORE_OBJECT)),
        None,
    )
    .expect("export");
    let v = bundle::read(&b, &Trust::default()).expect("read");
    assert!(v.header.slim);
    let s = &v.records[0];
    assert!(slim::is_slim(s));
    for name in [
        "_printk",
        "tracepoint_probe_register",
        "__x86_return_thunk",
        "__x86_indirect_thunk_rax",
        "current_task",
        "module_layout",
    ] {
        assert_eq!(s.exports.get(name), rec.exports.get(name), "{name}");
    }
    assert!(!s.exports.contains_key("sym_0001"));
    assert_eq!(s.this_module, rec.this_module);
    assert_eq!(s.vermagic, rec.vermagic);
    slim::covers(s, &manifest, CORE_OBJECT).expect("covers its own core");
    assert!(
        b.len() < 2048,
        "slim bundle of one kernel: {} bytes",
        b.len()
    );

    // A slim record never downgrades a stored full one.
    let (_d, st) = empty_store();
    st.put(&rec).expect("full");
    let r = bundle::install(&st, &b, &Trust::default()).expect("install");
    assert_eq!(r.put.kept_full.len(), 1);
    assert_eq!(st.get("6.1.0-47-amd64").expect("get"), vec![rec]);
}

#[test]
fn damaged_payload_is_rejected_whole() {
    let b = bundle::export(&records(), None, None).expect("export");
    let (h, payload, _) = split(&b);
    let mut bad = b.clone();
    let at = bad.len() - payload.len() / 2;
    bad[at] ^= 1;
    let (_d, s) = empty_store();
    let err = bundle::install(&s, &bad, &Trust::default()).expect_err("damaged");
    assert!(matches!(err, BundleError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("nothing was installed"), "{err}");
    assert!(s.list().expect("list").is_empty());

    // Header lists a record the payload lacks.
    let mut h2 = h.clone();
    let mut extra = h2.records[0].clone();
    extra.key.release = "6.1.0-99-amd64".into();
    h2.records.push(extra);
    let err = bundle::install(&s, &join(&h2, &payload), &Trust::default()).expect_err("missing");
    assert!(matches!(err, BundleError::Mismatch(_)), "{err}");
    assert!(err.to_string().contains("6.1.0-99-amd64"), "{err}");

    // Header omits a record the payload has.
    let mut h3 = h.clone();
    h3.records.pop();
    let err = bundle::install(&s, &join(&h3, &payload), &Trust::default()).expect_err("extra");
    assert!(matches!(err, BundleError::Mismatch(_)), "{err}");

    // A listed record's hash altered.
    let mut h4 = h.clone();
    h4.records[1].sha256 = "00".repeat(32);
    let err = bundle::install(&s, &join(&h4, &payload), &Trust::default()).expect_err("altered");
    assert!(matches!(err, BundleError::Mismatch(_)), "{err}");
    assert!(s.list().expect("list").is_empty(), "nothing half-installed");
}

#[test]
fn altered_record_inside_a_consistent_payload_is_rejected() {
    // Someone edits one record's bytes and fixes up the outer hashes: the
    // per-record hash still catches it.
    let recs = records();
    let b = bundle::export(&recs, None, None).expect("export");
    let (mut h, payload, _) = split(&b);
    let plain = zstd::decode_all(&payload[..]).expect("plain");
    let mut image = kmlink_metadata_db::image::Image::parse(&plain).expect("parse");
    let mut other = recs[1].clone();
    other.this_module.size = 640;
    // Encode the altered record in a scratch image, then graft its blob.
    let mut scratch = image.clone();
    scratch.replace(1, &other).expect("encode");
    image.entries[1].blob = scratch.entries[1].blob.clone();
    image.entries[1].summary.blob_bytes = image.entries[1].blob.len() as u64;
    let plain2 = image.encode();
    let payload2 = zstd::encode_all(&plain2[..], 3).expect("z");
    h.payload_len = payload2.len() as u64;
    h.payload_sha256 = sha(&payload2);
    let (_d, s) = empty_store();
    let err = bundle::install(&s, &join(&h, &payload2), &Trust::default()).expect_err("altered");
    assert!(
        matches!(err, BundleError::RecordDamaged { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("6.1.0-50-amd64"), "{err}");
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn truncated_bundle_is_rejected() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("k");
    bundle::keygen(&key).expect("keygen");
    let sk = bundle::read_secret_key(&key).expect("sk");
    let trust = Trust::from_files(&[bundle::public_path(&key)]).expect("trust");
    let b = bundle::export(&records(), None, Some(&sk)).expect("export");
    bundle::read(&b, &trust).expect("intact");
    let (_d, s) = empty_store();
    for cut in [
        0,
        5,
        11,
        40,
        b.len() / 2,
        b.len() - 104,
        b.len() - 50,
        b.len() - 1,
    ] {
        let err = bundle::install(&s, &b[..cut], &trust).expect_err("truncated");
        assert!(
            matches!(
                err,
                BundleError::Truncated(_)
                    | BundleError::Damaged(_)
                    | BundleError::NotABundle(_)
                    | BundleError::Unsigned(_)
            ),
            "cut {cut}: {err}"
        );
    }
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn signatures_trusted_untrusted_wrong_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let (k1, k2) = (dir.path().join("pub1"), dir.path().join("pub2"));
    bundle::keygen(&k1).expect("k1");
    bundle::keygen(&k2).expect("k2");
    let sk1 = bundle::read_secret_key(&k1).expect("sk1");
    let trust1 = Trust::from_files(&[bundle::public_path(&k1)]).expect("t1");
    let trust2 = Trust::from_files(&[bundle::public_path(&k2)]).expect("t2");
    let recs = records();
    let signed = bundle::export(&recs, None, Some(&sk1)).expect("export");

    let v = bundle::read(&signed, &trust1).expect("trusted");
    assert_eq!(
        v.signer.as_deref(),
        Some(bundle::fingerprint(&sk1.verifying_key()).as_str())
    );
    assert_eq!(v.records.len(), 3);

    let err = bundle::read(&signed, &trust2).expect_err("untrusted");
    assert!(matches!(err, BundleError::Untrusted(_)), "{err}");
    assert!(err.to_string().contains("--trust"), "{err}");
    let err = bundle::read(&signed, &Trust::default()).expect_err("no keys trusted");
    assert!(matches!(err, BundleError::Untrusted(_)), "{err}");

    // Altered after signing, outer hash fixed up: the signature fails.
    let (mut h, _, sig) = split(&signed);
    let other = bundle::export(&recs[..2], None, None).expect("other");
    let (h_other, payload_other, _) = split(&other);
    h.records = h_other.records;
    h.payload_len = payload_other.len() as u64;
    h.payload_sha256 = h_other.payload_sha256;
    let mut forged = join(&h, &payload_other);
    forged.extend_from_slice(&sig);
    let err = bundle::read(&forged, &trust1).expect_err("forged");
    assert!(matches!(err, BundleError::BadSignature(_)), "{err}");

    // Unsigned where a signature is required.
    let unsigned = bundle::export(&recs, None, None).expect("unsigned");
    let err = bundle::read(&unsigned, &trust1).expect_err("unsigned");
    assert!(matches!(err, BundleError::Unsigned(_)), "{err}");

    // Keys: never overwritten, secret is private, wrong kind refused.
    assert!(matches!(bundle::keygen(&k1), Err(BundleError::Key { .. })));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&k1).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        Trust::from_files(std::slice::from_ref(&k1)),
        Err(BundleError::Key { .. })
    ));
}

#[test]
fn embedded_bundle_reads() {
    let recs = Store::embedded().expect("embedded bundle decodes");
    for r in &recs {
        assert!(slim::is_slim(r), "{}", r.identity.release);
    }
    let (_d, s) = empty_store();
    if let Some(r) = recs.first() {
        let (found, src) = s.get_or_embedded(&r.identity.release).expect("get");
        assert_eq!(src, kmlink_metadata_db::RecordSource::Embedded);
        assert!(found.contains(r));
    }
}

/// The checked-in built-in bundles are the crawl of the whole Debian
/// archive, one per architecture: every flavour (arm64's 16 KiB-page one
/// too), ≤ 2 KiB per kernel, each record of its bundle's architecture and
/// serving that architecture's core; served from an empty store for a
/// kernel whose packages nobody has.
#[test]
fn embedded_bundles_cover_the_archive() {
    let recs = Store::embedded().expect("embedded bundles decode");
    for (arch, bytes, least, flavours) in [
        (
            Arch::X86_64,
            bundle::DEFAULT_BUNDLES[0].1,
            200,
            &["amd64", "cloud-amd64", "rt-amd64"][..],
        ),
        (
            Arch::Aarch64,
            bundle::DEFAULT_BUNDLES[1].1,
            250,
            &["arm64", "cloud-arm64", "rt-arm64", "arm64-16k"][..],
        ),
    ] {
        assert_eq!(
            bundle::DEFAULT_BUNDLES
                .iter()
                .filter(|(a, _)| *a == arch)
                .count(),
            1
        );
        let own = bundle::read(bytes, &Trust::default())
            .unwrap_or_else(|e| panic!("{}: {e}", arch.debian()))
            .records;
        assert!(
            own.len() >= least,
            "{}: {} records",
            arch.debian(),
            own.len()
        );
        assert!(
            bytes.len() / own.len() <= 2048,
            "{}: {} B for {}",
            arch.debian(),
            bytes.len(),
            own.len()
        );
        let manifest = Manifest::core_for(arch).expect("manifest");
        for f in flavours {
            assert!(
                own.iter().filter(|r| r.identity.flavour == *f).count() >= 8,
                "{f}"
            );
        }
        for r in &own {
            assert_eq!(r.identity.arch, arch.machine(), "{}", r.identity.release);
            slim::covers(r, &manifest, arch.core_object())
                .unwrap_or_else(|e| panic!("{}: {e}", r.identity.release));
            assert!(r.vermagic.starts_with(&format!("{} ", r.identity.release)));
            assert!(recs.contains(r), "{}", r.identity.release);
        }
    }
    let (_d, s) = empty_store();
    for rel in [
        "6.1.0-55-cloud-amd64",
        "7.0.4+deb13-rt-amd64",
        "5.10.0-30-arm64",
        "6.12.57+deb12-arm64-16k",
    ] {
        let (found, src) = s.get_or_embedded(rel).expect("get");
        assert_eq!(src, kmlink_metadata_db::RecordSource::Embedded, "{rel}");
        assert_eq!(found.len(), 1, "{rel}");
    }
}
