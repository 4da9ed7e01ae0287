//! `Cache::fetch` against a tiny HTTP server on 127.0.0.1.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::Server;

use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::{Error, Http};
use sha2::Digest;

const BODY: &[u8] = b"pretend this is a kernel package";

fn entry(body: &[u8]) -> PackageEntry {
    PackageEntry {
        package: "linux-image-9.9.9-1-amd64".into(),
        version: "9.9.9-1".into(),
        filename: "pool/main/l/linux/k.deb".into(),
        size: body.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(body)),
        depends: String::new(),
        source: None,
    }
}

fn http() -> Http {
    Http::new()
        .unwrap()
        .with_retry_delay(Duration::from_millis(5))
}

/// Names in the cache's debs directory.
fn listing(cache: &Cache) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.debs_dir())
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

const PATH: &str = "pool/main/l/linux/k.deb";

#[test]
fn downloads_verifies_and_reuses() {
    let srv = Server::start(vec![(PATH, vec![(200, BODY.to_vec())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    let p = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(p, d.path().join("debs").join(&e.sha256));
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(
        listing(&cache),
        [e.sha256.clone(), format!("{}.ok", e.sha256)]
    );
    // Cached: no second request, even with no reachable mirror.
    cache
        .fetch(&http(), &["http://127.0.0.1:9/nothing".into()], &e)
        .unwrap();
    assert_eq!(srv.hits(), 1);
}

#[test]
fn corrupt_cached_file_is_refetched() {
    let srv = Server::start(vec![(PATH, vec![(200, BODY.to_vec())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    let p = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    // Wrong size: caught even with the .ok marker.
    std::fs::write(&p, b"short").unwrap();
    assert_eq!(
        cache
            .fetch(&http(), std::slice::from_ref(&srv.base), &e)
            .unwrap(),
        p
    );
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(srv.hits(), 2);
    // Same size, wrong bytes, never hashed (no marker): caught by the hash.
    let mut bad = BODY.to_vec();
    bad[0] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    std::fs::remove_file(d.path().join("debs").join(format!("{}.ok", e.sha256))).unwrap();
    cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(srv.hits(), 3);
}

#[test]
fn wrong_bytes_give_hash_mismatch_and_leave_nothing() {
    let mut evil = BODY.to_vec();
    evil[3] ^= 0xff;
    let srv = Server::start(vec![(PATH, vec![(200, evil)])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    let err = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap_err();
    match &err {
        Error::HashMismatch {
            package,
            source_name,
            expected,
            actual,
        } => {
            assert_eq!(package, "linux-image-9.9.9-1-amd64 9.9.9-1");
            assert!(source_name.ends_with(PATH), "{source_name}");
            assert_eq!(expected, &e.sha256);
            assert_ne!(actual, &e.sha256);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    let s = err.to_string();
    assert!(
        s.contains(&e.sha256) && s.contains("linux-image-9.9.9-1-amd64") && s.contains(PATH),
        "{s}"
    );
    assert_eq!(srv.hits(), 3, "three tries");
    assert!(listing(&cache).is_empty(), "{:?}", listing(&cache));
}

#[test]
fn short_or_long_body_is_a_size_mismatch() {
    for body in [
        &BODY[..10],
        b"pretend this is a kernel package, and then some more".as_slice(),
    ] {
        let srv = Server::start(vec![(PATH, vec![(200, body.to_vec())])], 10);
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path().to_owned());
        let err = cache
            .fetch(&http(), std::slice::from_ref(&srv.base), &entry(BODY))
            .unwrap_err();
        assert!(
            matches!(err, Error::SizeMismatch { expected: 32, .. }),
            "{err:?}"
        );
        assert!(listing(&cache).is_empty());
    }
}

#[test]
fn retries_then_succeeds_and_falls_back_to_next_mirror() {
    let flaky = Server::start(
        vec![(
            PATH,
            vec![(503, vec![]), (500, vec![]), (200, BODY.to_vec())],
        )],
        10,
    );
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    cache
        .fetch(&http(), std::slice::from_ref(&flaky.base), &entry(BODY))
        .unwrap();
    assert_eq!(flaky.hits(), 3);

    let empty = Server::start(vec![], 10);
    let good = Server::start(vec![(PATH, vec![(200, BODY.to_vec())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    cache
        .fetch(
            &http(),
            &[empty.base.clone(), good.base.clone()],
            &entry(BODY),
        )
        .unwrap();
    assert_eq!(empty.hits(), 1, "404 is not retried");
    assert_eq!(good.hits(), 1);
}

#[test]
fn not_found_everywhere() {
    let a = Server::start(vec![], 10);
    let b = Server::start(vec![], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let err = cache
        .fetch(&http(), &[a.base.clone(), b.base.clone()], &entry(BODY))
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        matches!(&err, Error::NotFound { urls, .. } if urls.len() == 2),
        "{err:?}"
    );
}

#[test]
fn rejects_unsafe_entries_before_fetching() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let mut e = entry(BODY);
    e.sha256 = "../../x".into();
    assert!(cache
        .fetch(&http(), &["http://127.0.0.1:9".into()], &e)
        .unwrap_err()
        .to_string()
        .contains("SHA256"));
    let mut e = entry(BODY);
    e.filename = "pool/../../etc/passwd".into();
    assert!(cache
        .fetch(&http(), &["http://127.0.0.1:9".into()], &e)
        .unwrap_err()
        .to_string()
        .contains("unsafe Filename"));
}

#[test]
fn resumes_a_partial_download() {
    let half = BODY.len() / 2;
    let srv = Server::start(vec![(PATH, vec![(206, BODY[half..].to_vec())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    std::fs::create_dir_all(cache.debs_dir()).unwrap();
    std::fs::write(
        cache.debs_dir().join(format!("{}.part", e.sha256)),
        &BODY[..half],
    )
    .unwrap();
    let p = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(srv.paths(), [format!("/archive/{PATH} range={half}-")]);
    assert_eq!(
        listing(&cache),
        [e.sha256.clone(), format!("{}.ok", e.sha256)]
    );
}

#[test]
fn a_bad_partial_file_is_discarded_and_fetched_again() {
    let half = BODY.len() / 2;
    // The resumed tail is right but the kept head is not: the whole is
    // refused, the .part deleted, and the next try fetches everything.
    let srv = Server::start(
        vec![(
            PATH,
            vec![(206, BODY[half..].to_vec()), (200, BODY.to_vec())],
        )],
        10,
    );
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    std::fs::create_dir_all(cache.debs_dir()).unwrap();
    std::fs::write(
        cache.debs_dir().join(format!("{}.part", e.sha256)),
        vec![b'x'; half],
    )
    .unwrap();
    let p = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(srv.hits(), 2, "{:?}", srv.paths());
    assert_eq!(
        listing(&cache),
        [e.sha256.clone(), format!("{}.ok", e.sha256)]
    );
}

#[test]
fn a_server_ignoring_ranges_restarts_the_download() {
    let srv = Server::start(vec![(PATH, vec![(200, BODY.to_vec())])], 10);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = entry(BODY);
    std::fs::create_dir_all(cache.debs_dir()).unwrap();
    std::fs::write(cache.debs_dir().join(format!("{}.part", e.sha256)), b"pre").unwrap();
    let p = cache
        .fetch(&http(), std::slice::from_ref(&srv.base), &e)
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), BODY);
    assert_eq!(srv.hits(), 1);
}
