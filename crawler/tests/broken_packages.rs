//! Issue #16, item 7: `crawler ingest` verifies the whole package (not
//! just its control part), refuses pipes and devices, and a cached package
//! corrupted after its verification marker is caught by its hash and
//! fetched again.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{ar_bytes, compress, deb_bytes, tar_bytes, write_deb, Ent, Server, CONTROL};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::{ingest, Http};
use kmlink_errors::Chain;

fn control_tar(ext: &str) -> Vec<u8> {
    compress(
        ext,
        &tar_bytes(&[Ent::Dir("./"), Ent::File("./control", CONTROL.as_bytes())]),
    )
}

fn data() -> Vec<u8> {
    // Incompressible, so the data member is as long as its content.
    let mut x = 0x2545_f491_u32;
    let big: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    tar_bytes(&[
        Ent::File("./boot/vmlinuz-9.9.9-1-amd64", &big),
        Ent::File("./boot/config-9.9.9-1-amd64", b"CONFIG_A=y\n"),
    ])
}

fn refused(name: &str, bytes: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let p = write_deb(dir.path(), name, bytes);
    let e = ingest::ingest(&cache, &p).unwrap_err();
    let msg = Chain(&e).to_string();
    assert!(msg.contains(name), "{name}: {msg}");
    assert!(
        msg.contains(expect),
        "{name}: expected {expect:?} in: {msg}"
    );
    assert!(ingest::local_index(&cache).unwrap().is_empty(), "{name}");
    // Nothing of the refused package stays in the cache.
    let left: Vec<_> = std::fs::read_dir(cache.debs_dir())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{name}: left {left:?}");
}

#[test]
fn whole_package_is_verified_on_ingest() {
    let good = deb_bytes("xz", &[Ent::File("./boot/config-9.9.9-1-amd64", b"x")]);
    {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let p = write_deb(dir.path(), "good.deb", &good);
        ingest::ingest(&cache, &p).unwrap();
    }
    let full = ar_bytes(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.xz", control_tar("xz")),
        ("data.tar.xz", compress("xz", &data())),
    ]);
    // Truncated inside the data member: the control part alone is intact.
    refused("truncated.deb", &full[..full.len() - 5000], "truncated");
    // A data member compressed with gzip but named .xz.
    refused(
        "mislabelled.deb",
        &ar_bytes(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.xz", control_tar("xz")),
            ("data.tar.xz", compress("gz", &data())),
        ]),
        "data.tar.xz",
    );
    // A data member whose ar header declares far more than the file holds.
    let mut absurd = full.clone();
    let at = absurd
        .windows(11)
        .rposition(|w| w == b"data.tar.xz")
        .unwrap();
    absurd[at + 48..at + 58].copy_from_slice(b"9999999999");
    refused("absurd.deb", &absurd, "truncated");
    // A tar entry cut short inside a well-formed compressed stream.
    let t = data();
    refused(
        "short-entry.deb",
        &ar_bytes(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.xz", control_tar("xz")),
            ("data.tar.xz", compress("xz", &t[..100_000])),
        ]),
        "vmlinuz",
    );
    // A corrupt byte deep in the compressed data.
    let mut flipped = full.clone();
    let n = flipped.len();
    flipped[n - 3000] ^= 0x55;
    refused("flipped.deb", &flipped, "data.tar.xz");
}

#[test]
fn pipes_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let fifo = dir.path().join("fifo.deb");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    // Nobody writes the FIFO: opening it would block for ever.
    let (tx, rx) = std::sync::mpsc::channel();
    let c = cache.clone();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(ingest::ingest(&c, &f).map(|_| ()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("ingest blocked on a FIFO");
    let e = r.unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(ingest::local_index(&cache).unwrap().is_empty());
}

#[test]
fn cached_package_corrupted_after_its_marker_is_fetched_again() {
    let body = deb_bytes("xz", &[Ent::File("./boot/config-9.9.9-1-amd64", b"x")]);
    let path = "pool/main/l/linux/k.deb";
    let srv = Server::start(vec![(path, vec![(200, body.clone())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = PackageEntry {
        package: "linux-image-9.9.9-1-amd64".into(),
        version: "9.9.9-1".into(),
        filename: path.into(),
        size: body.len() as u64,
        sha256: common::sha256(&body),
        depends: String::new(),
        source: None,
    };
    let http = Http::new()
        .unwrap()
        .with_retry_delay(Duration::from_millis(5));
    let p = cache
        .fetch(&http, std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert!(d
        .path()
        .join("debs")
        .join(format!("{}.ok", e.sha256))
        .exists());
    // Same size, one byte changed in place, marker left as it was.
    let mut bad = body.clone();
    let n = bad.len();
    bad[n - 40] ^= 0xff;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bad))
        .unwrap();
    assert_eq!(
        cache.cached(&e).unwrap(),
        None,
        "corrupt copy still trusted"
    );
    let p2 = cache
        .fetch(&http, std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(std::fs::read(&p2).unwrap(), body);
    assert_eq!(srv.hits(), 2);
    // And the good copy is trusted again without a download.
    assert_eq!(cache.cached(&e).unwrap(), Some(p2));
    assert_eq!(srv.hits(), 2);
}

/// Found by fuzzing (fuzz/regressions/deb): a member named `/11` (a GNU
/// long-name reference) with no name table made the `ar` crate panic
/// (slice index out of range) in `control`, `extract` and `verify`.
#[test]
fn gnu_long_name_reference_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = deb_bytes("", &[Ent::File("./a", b"x")]);
    let at = bytes.windows(11).position(|w| w == b"control.tar").unwrap();
    bytes[at..at + 16].copy_from_slice(b"/11             ");
    let p = write_deb(dir.path(), "longname.deb", &bytes);
    for r in [
        kmlink_crawler::deb::control(&p).map(|_| ()),
        kmlink_crawler::deb::verify(&p).map(|_| ()),
        kmlink_crawler::deb::extract(&p, dir.path(), &mut |_| true).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("long-name member"), "{e}");
    }
}
