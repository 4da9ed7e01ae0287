//! `kernel_tree::materialize` and `index::fetch_packages` against a local server.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{deb_bytes, Ent, Server};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::{self, PackageEntry};
use kmlink_crawler::kernel_tree::{self, PinnedKernel};
use kmlink_crawler::sources::Mirrors;
use kmlink_crawler::Http;
use sha2::Digest;

fn http() -> Http {
    Http::new()
        .unwrap()
        .with_retry_delay(Duration::from_millis(5))
}

fn entry(name: &str, version: &str, filename: &str, body: &[u8]) -> PackageEntry {
    PackageEntry {
        package: name.into(),
        version: version.into(),
        filename: filename.into(),
        size: body.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(body)),
        depends: String::new(),
        source: Some("linux".into()),
    }
}

/// The image and headers packages of a 6.1-style kernel `9.9.0-<abi>-amd64`.
fn kernel_debs(abi: u32, image_text: &str) -> (String, Vec<(PackageEntry, Vec<u8>)>) {
    let rel = format!("9.9.0-{abi}-amd64");
    let vmlinuz = format!("./boot/vmlinuz-{rel}");
    let config = format!("./boot/config-{rel}");
    let ko = format!("./lib/modules/{rel}/kernel/fs/a.ko");
    let build = format!("./lib/modules/{rel}/build");
    let build_target = format!("/usr/src/linux-headers-{rel}");
    let symvers = format!("./usr/src/linux-headers-{rel}/Module.symvers");
    let makefile = format!("./usr/src/linux-headers-{rel}/Makefile");
    let image = deb_bytes(
        "xz",
        &[
            Ent::Dir("./"),
            Ent::File(&vmlinuz, image_text.as_bytes()),
            Ent::File(&config, b"CONFIG_A=y\n"),
            Ent::File(&ko, b"\x7fELF module"),
            Ent::File("./usr/share/doc/x", b"doc"),
        ],
    );
    let headers = deb_bytes(
        "zst",
        &[
            Ent::File(&symvers, b"0x12345678\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"),
            Ent::File(&makefile, b"all:\n"),
            Ent::Link(&build, &build_target),
        ],
    );
    let v = format!("9.9.{abi}-1");
    let img_name = format!("linux-image-{rel}-unsigned");
    let hdr_name = format!("linux-headers-{rel}");
    (
        rel,
        vec![
            (
                entry(
                    &img_name,
                    &v,
                    &format!("pool/main/l/linux/{img_name}_{v}_amd64.deb"),
                    &image,
                ),
                image,
            ),
            (
                entry(
                    &hdr_name,
                    &v,
                    &format!("pool/main/l/linux/{hdr_name}_{v}_amd64.deb"),
                    &headers,
                ),
                headers,
            ),
        ],
    )
}

/// Path -> scripted replies.
type Routes = Vec<(String, Vec<common::Reply>)>;

fn routes(debs: &[(PackageEntry, Vec<u8>)]) -> Routes {
    debs.iter()
        .map(|(e, b)| (e.filename.clone(), vec![(200, b.clone())]))
        .collect()
}

fn start(routes: Routes) -> Server {
    Server::start(
        routes
            .iter()
            .map(|(p, r)| (p.as_str(), r.clone()))
            .collect(),
        50,
    )
}

fn pin(rel: &str, debs: &[(PackageEntry, Vec<u8>)]) -> PinnedKernel {
    PinnedKernel {
        release: rel.into(),
        suite: "sid".into(),
        archive: "archive".into(),
        packages: debs.iter().map(|(e, _)| e.clone()).collect(),
        fallbacks: Vec::new(),
    }
}

fn packages_text(entries: &[PackageEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("Package: {}\nVersion: {}\nDepends: kmod\nFilename: {}\nSize: {}\nSHA256: {}\nDescription: x\n y\n\n", e.package, e.version, e.filename, e.size, e.sha256))
        .collect()
}

fn xz(text: &str) -> Vec<u8> {
    let mut w = xz2::write::XzEncoder::new(Vec::new(), 1);
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap()
}

#[test]
fn materializes_reuses_and_reextracts() {
    let (rel, debs) = kernel_debs(3, "image v1");
    let srv = start(routes(&debs));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let mirrors = Mirrors::explicit(&srv.base, None);
    let t = kernel_tree::materialize(&cache, &http(), &mirrors, &pin(&rel, &debs)).unwrap();
    let root = d.path().join("kernels").join(&rel);
    assert_eq!(t.release, rel);
    assert_eq!(t.root, root);
    assert_eq!(t.vmlinuz, root.join(format!("boot/vmlinuz-{rel}")));
    assert_eq!(std::fs::read_to_string(&t.vmlinuz).unwrap(), "image v1");
    assert_eq!(t.config, Some(root.join(format!("boot/config-{rel}"))));
    assert_eq!(t.modules_dir, root.join(format!("lib/modules/{rel}")));
    assert!(t.modules_dir.join("kernel/fs/a.ko").is_file());
    assert!(
        !t.modules_dir.join("build").exists(),
        "host symlinks are not unpacked"
    );
    assert_eq!(
        t.symvers,
        Some(root.join(format!("usr/src/linux-headers-{rel}/Module.symvers")))
    );
    assert!(!root.join("usr/share").exists());
    assert_eq!(t.packages.len(), 2);

    // Complete tree: reused as is.
    std::fs::write(root.join("sentinel"), "x").unwrap();
    let t2 = kernel_tree::materialize(&cache, &http(), &mirrors, &pin(&rel, &debs)).unwrap();
    assert_eq!(t2.vmlinuz, t.vmlinuz);
    assert!(root.join("sentinel").exists());
    assert_eq!(srv.hits(), 2);

    // Different packages for the same release: extracted again.
    let (_, debs2) = kernel_debs(3, "image v2");
    let srv2 = start(routes(&debs2));
    let t3 = kernel_tree::materialize(
        &cache,
        &http(),
        &Mirrors::explicit(&srv2.base, None),
        &pin(&rel, &debs2),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&t3.vmlinuz).unwrap(), "image v2");
    assert!(!root.join("sentinel").exists());
    // Nothing but the tree is left in kernels/.
    let names: Vec<_> = std::fs::read_dir(d.path().join("kernels"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(&rel)]);
}

#[test]
fn failed_extraction_leaves_nothing() {
    let (rel, mut debs) = kernel_debs(3, "image");
    // A well-formed download whose data member is not a tar stream.
    let bad = common::ar_bytes(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("data.tar.xz", xz("not a tar")),
    ]);
    debs[1] = (
        entry(
            &debs[1].0.package,
            &debs[1].0.version,
            &debs[1].0.filename,
            &bad,
        ),
        bad,
    );
    let srv = start(routes(&debs));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = kernel_tree::materialize(
        &cache,
        &http(),
        &Mirrors::explicit(&srv.base, None),
        &pin(&rel, &debs),
    )
    .unwrap_err();
    let s = kmlink_errors::chain(&e);
    assert!(
        s.contains(&rel) && s.contains("linux-headers-9.9.0-3-amd64") && s.contains("data.tar.xz"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_dir(d.path().join("kernels")).unwrap().count(),
        0
    );
}

#[test]
fn missing_vmlinuz_is_an_error() {
    let (rel, debs) = kernel_debs(3, "image");
    let srv = start(routes(&debs));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = kernel_tree::materialize(
        &cache,
        &http(),
        &Mirrors::explicit(&srv.base, None),
        &pin(&rel, &debs[1..]),
    )
    .unwrap_err();
    assert!(kmlink_errors::chain(&e).contains("no vmlinuz"), "{e}");
    assert!(
        kernel_tree::materialize(&cache, &http(), &Mirrors::default(), &pin(&rel, &debs))
            .unwrap_err()
            .to_string()
            .contains("no archive mirror")
    );
}

#[test]
fn substitutes_newest_of_series_when_pinned_is_gone() {
    let (old_rel, old) = kernel_debs(3, "old");
    let (_, mid) = kernel_debs(4, "mid");
    let (new_rel, new) = kernel_debs(5, "new");
    let mut other = kernel_debs(9, "other series").1;
    for (e, _) in &mut other {
        e.package = e.package.replace("9.9.0-9", "9.10.0-9");
    }
    let index: Vec<PackageEntry> = mid
        .iter()
        .chain(&new)
        .chain(&other)
        .map(|(e, _)| e.clone())
        .collect();
    let mut r = routes(&new);
    r.push((
        "dists/sid/main/binary-amd64/Packages.xz".into(),
        vec![(200, xz(&packages_text(&index)))],
    ));
    let srv = start(r);
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let t = kernel_tree::materialize(
        &cache,
        &http(),
        &Mirrors::explicit(&srv.base, None),
        &pin(&old_rel, &old),
    )
    .unwrap();
    assert_eq!(t.release, new_rel);
    assert_eq!(std::fs::read_to_string(&t.vmlinuz).unwrap(), "new");
    assert_eq!(t.packages[0].package, "linux-image-9.9.0-5-amd64-unsigned");
}

#[test]
fn fetch_packages_xz_then_gz() {
    let (_, debs) = kernel_debs(3, "x");
    let entries: Vec<PackageEntry> = debs.iter().map(|(e, _)| e.clone()).collect();
    let text = packages_text(&entries);
    let srv = Server::start(
        vec![(
            "dists/sid/main/binary-amd64/Packages.xz",
            vec![(200, xz(&text))],
        )],
        5,
    );
    let got = index::fetch_packages(&http(), &srv.base, "sid", "amd64").unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].filename, entries[0].filename);
    assert_eq!(got[0].depends, "kmod");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let srv = Server::start(
        vec![(
            "dists/sid/main/binary-amd64/Packages.gz",
            vec![(200, gz.finish().unwrap())],
        )],
        5,
    );
    assert_eq!(
        index::fetch_packages(&http(), &srv.base, "sid", "amd64")
            .unwrap()
            .len(),
        2
    );

    let srv = Server::start(
        vec![(
            "dists/sid/main/binary-amd64/Packages.xz",
            vec![(200, b"garbage".to_vec())],
        )],
        5,
    );
    let e = index::fetch_packages(&http(), &srv.base, "sid", "amd64").unwrap_err();
    assert!(kmlink_errors::chain(&e).contains("Packages.xz"), "{e}");
    let srv = Server::start(vec![], 5);
    assert!(index::fetch_packages(&http(), &srv.base, "sid", "amd64")
        .unwrap_err()
        .is_not_found());
}

#[test]
fn checked_in_pins_load() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kernels.toml");
    let k = kernel_tree::load(&p).unwrap();
    let rels: Vec<&str> = k.iter().map(|k| k.release.as_str()).collect();
    // The pins may grow; these three are the default VM set.
    for r in [
        "6.1.0-47-amd64",
        "6.12.107+deb13-amd64",
        "7.3.4+deb13-amd64",
    ] {
        assert!(rels.contains(&r), "{r} not pinned: {rels:?}");
    }
    for k in &k {
        assert!(
            k.packages.iter().all(|p| p.package.contains(&k.release)),
            "{k:?}"
        );
    }
}

#[test]
fn boot_image_fetches_only_the_image_and_can_evict_the_package() {
    let (rel, debs) = kernel_debs(5, "boot me");
    let srv = start(routes(&debs));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let mirrors = Mirrors::explicit(&srv.base, None);
    let p = kernel_tree::boot_image(&cache, &http(), &mirrors, &pin(&rel, &debs), true).unwrap();
    assert_eq!(p, d.path().join("boot").join(&rel).join("vmlinuz"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "boot me");
    // Only the image package was downloaded, and evicted again.
    assert_eq!(srv.hits(), 1);
    assert!(cache.cached(&debs[0].0).unwrap().is_none());
    assert!(!d.path().join("kernels").exists(), "no full tree");
    // Reused without any download.
    let p2 = kernel_tree::boot_image(&cache, &http(), &mirrors, &pin(&rel, &debs), true).unwrap();
    assert_eq!(p2, p);
    assert_eq!(srv.hits(), 1);
    // Without eviction the verified package stays in the cache.
    let (rel6, debs6) = kernel_debs(6, "keep");
    let srv6 = start(routes(&debs6));
    let mirrors6 = Mirrors::explicit(&srv6.base, None);
    kernel_tree::boot_image(&cache, &http(), &mirrors6, &pin(&rel6, &debs6), false).unwrap();
    assert!(cache.cached(&debs6[0].0).unwrap().is_some());
}

/// The index lists an unsigned image the pool has lost: the image comes from
/// its signed twin (as Debian 11's cloud kernels need), and is reused.
#[test]
fn boot_image_falls_back_to_the_signed_twin() {
    let (rel, debs) = kernel_debs(8, "signed twin");
    let (image, body) = debs[0].clone();
    let mut signed = image.clone();
    signed.package = format!("linux-image-{rel}");
    signed.filename = format!("pool/main/l/linux-signed-amd64/linux-image-{rel}_9.9.8-1_amd64.deb");
    let srv = start(routes(&[(signed.clone(), body), debs[1].clone()]));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let mirrors = Mirrors::explicit(&srv.base, None);
    let mut k = pin(&rel, &debs);
    k.fallbacks = vec![signed.clone()];
    let p = kernel_tree::boot_image(&cache, &http(), &mirrors, &k, true).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "signed twin");
    assert!(cache.cached(&signed).unwrap().is_none(), "twin evicted");
    let hits = srv.hits();
    assert_eq!(
        kernel_tree::boot_image(&cache, &http(), &mirrors, &k, true).unwrap(),
        p
    );
    assert_eq!(srv.hits(), hits, "reused without a download");
    // Without the twin the 404 is the error.
    let d2 = tempfile::tempdir().unwrap();
    let e = kernel_tree::boot_image(
        &Cache::new(d2.path().to_owned()),
        &http(),
        &mirrors,
        &pin(&rel, &debs),
        true,
    )
    .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
}

#[test]
fn boot_image_without_an_image_is_an_error_naming_the_packages() {
    let (rel, debs) = kernel_debs(7, "x");
    let srv = start(routes(&debs));
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let e = kernel_tree::boot_image(
        &cache,
        &http(),
        &Mirrors::explicit(&srv.base, None),
        &pin(&rel, &debs[1..]),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&rel) && e.contains("linux-headers-9.9.0-7-amd64") && e.contains("kernel image"),
        "{e}"
    );
    // Nothing half-written is left where a later run would look.
    assert!(!d.path().join("boot").join(&rel).exists());
}
