//! `targeted::fetch` against a local server: only vmlinuz, config,
//! Module.symvers and the first few modules are unpacked, the package is
//! read no further than needed, and everything is cleaned up on drop.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{deb_bytes, Ent, Server};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::kernel_tree::PinnedKernel;
use kmlink_crawler::sources::Mirrors;
use kmlink_crawler::targeted::{self, Options, STOCK_MODULES};
use kmlink_crawler::Http;
use sha2::Digest;

const REL: &str = "9.9.0-7-amd64";

fn http() -> Http {
    Http::new()
        .unwrap()
        .with_retry_delay(Duration::from_millis(5))
}

fn entry(name: &str, body: &[u8]) -> PackageEntry {
    PackageEntry {
        package: name.into(),
        version: "9.9.7-1".into(),
        filename: format!("pool/main/l/linux/{name}_9.9.7-1_amd64.deb"),
        size: body.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(body)),
        depends: String::new(),
        source: Some("linux".into()),
    }
}

/// Image (vmlinuz, config, 40 modules) and headers packages; `config_last`
/// puts the config after the modules (an unsorted package).
fn debs(config_last: bool) -> Vec<(PackageEntry, Vec<u8>)> {
    let vmlinuz = format!("./boot/vmlinuz-{REL}");
    let config = format!("./boot/config-{REL}");
    let sysmap = format!("./boot/System.map-{REL}");
    let mods: Vec<String> = (0..20)
        .map(|i| format!("./lib/modules/{REL}/kernel/arch/x86/crypto/m{i:02}.ko"))
        .chain((0..20).map(|i| format!("./lib/modules/{REL}/kernel/lib/l{i:02}.ko")))
        .collect();
    let order = format!("./lib/modules/{REL}/modules.order");
    let mut ents = vec![Ent::Dir("./"), Ent::File(&vmlinuz, b"image")];
    if !config_last {
        ents.push(Ent::File(&config, b"CONFIG_X=y\n"));
    }
    ents.push(Ent::File(&sysmap, b"map"));
    for m in &mods {
        ents.push(Ent::File(m, b"\x7fELF module"));
    }
    ents.push(Ent::File(&order, b"x"));
    if config_last {
        ents.push(Ent::File(&config, b"CONFIG_X=y\n"));
    }
    let image = deb_bytes("xz", &ents);
    let symvers = format!("./usr/src/linux-headers-{REL}/Module.symvers");
    let makefile = format!("./usr/src/linux-headers-{REL}/Makefile");
    let headers = deb_bytes(
        "zst",
        &[
            Ent::File(&makefile, b"all:\n"),
            Ent::File(&symvers, b"0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"),
        ],
    );
    vec![
        (entry(&format!("linux-image-{REL}-unsigned"), &image), image),
        (entry(&format!("linux-headers-{REL}"), &headers), headers),
    ]
}

fn serve(debs: &[(PackageEntry, Vec<u8>)]) -> Server {
    let routes: Vec<(String, Vec<common::Reply>)> = debs
        .iter()
        .map(|(e, b)| (e.filename.clone(), vec![(200, b.clone())]))
        .collect();
    Server::start(
        routes
            .iter()
            .map(|(p, r)| (p.as_str(), r.clone()))
            .collect(),
        20,
    )
}

fn kernel(debs: &[(PackageEntry, Vec<u8>)]) -> PinnedKernel {
    PinnedKernel {
        release: REL.into(),
        suite: "sid".into(),
        archive: "archive".into(),
        packages: debs.iter().map(|(e, _)| e.clone()).collect(),
        fallbacks: Vec::new(),
    }
}

fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn unpacks_only_what_extraction_needs_and_cleans_up() {
    let debs = debs(false);
    let srv = serve(&debs);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mirrors = Mirrors {
        archive: vec![srv.base.clone()],
        security: vec![],
    };
    let opts = Options {
        jobs: 2,
        keep_debs: false,
        staging: Some(dir.path().join("staging")),
    };
    let k = kernel(&debs);
    let staged = targeted::fetch(&cache, &http(), &mirrors, &k, &opts).unwrap();
    let total: u64 = debs.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(staged.downloaded, total);
    let t = &staged.tree;
    assert_eq!(t.vmlinuz, t.root.join(format!("boot/vmlinuz-{REL}")));
    assert_eq!(t.config, Some(t.root.join(format!("boot/config-{REL}"))));
    assert!(t.symvers.is_some());
    assert_eq!(t.modules_dir, t.root.join(format!("lib/modules/{REL}")));
    let files = files_under(&t.root);
    let mut want = vec![
        format!("boot/config-{REL}"),
        format!("boot/vmlinuz-{REL}"),
        format!("usr/src/linux-headers-{REL}/Module.symvers"),
    ];
    want.extend(
        (0..STOCK_MODULES).map(|i| format!("lib/modules/{REL}/kernel/arch/x86/crypto/m{i:02}.ko")),
    );
    want.sort();
    assert_eq!(files, want);
    assert_eq!(staged.files, want.len());
    // Both packages are in the cache until the kernel is done with.
    for (e, _) in &debs {
        assert!(cache.cached(e).unwrap().is_some());
    }
    let root = t.root.clone();
    drop(staged);
    assert!(!root.exists());
    for (e, _) in &debs {
        assert!(cache.cached(e).unwrap().is_none(), "{} kept", e.package);
    }

    // Cached before (or --keep-debs): kept.
    let staged = targeted::fetch(
        &cache,
        &http(),
        &mirrors,
        &k,
        &Options {
            keep_debs: true,
            ..opts.clone()
        },
    )
    .unwrap();
    drop(staged);
    let staged = targeted::fetch(&cache, &http(), &Mirrors::default(), &k, &opts).unwrap();
    assert_eq!(
        staged.downloaded, 0,
        "served from the cache, no mirror needed"
    );
    drop(staged);
    for (e, _) in &debs {
        assert!(cache.cached(e).unwrap().is_some());
    }
}

#[test]
fn unsorted_package_is_read_again_for_what_the_early_stop_missed() {
    let debs = debs(true);
    let srv = serve(&debs);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mirrors = Mirrors {
        archive: vec![srv.base.clone()],
        security: vec![],
    };
    let opts = Options {
        jobs: 1,
        keep_debs: false,
        staging: Some(dir.path().join("staging")),
    };
    let staged = targeted::fetch(&cache, &http(), &mirrors, &kernel(&debs), &opts).unwrap();
    let t = &staged.tree;
    assert_eq!(t.config, Some(t.root.join(format!("boot/config-{REL}"))));
    assert!(!t
        .root
        .join(format!("lib/modules/{REL}/kernel/lib/l00.ko"))
        .exists());
}

#[test]
fn missing_package_fails_and_leaves_nothing() {
    let mut debs = debs(false);
    let srv = serve(&debs[..1]);
    debs[1].0.filename = "pool/gone.deb".into();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mirrors = Mirrors {
        archive: vec![srv.base.clone()],
        security: vec![],
    };
    let staging = dir.path().join("staging");
    let opts = Options {
        jobs: 1,
        keep_debs: false,
        staging: Some(staging.clone()),
    };
    let e = targeted::fetch(&cache, &http(), &mirrors, &kernel(&debs), &opts).unwrap_err();
    assert!(e.to_string().contains(REL), "{e}");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(cache.cached(&debs[0].0).unwrap().is_none(), "image removed");
}

/// bullseye-security: the index lists `linux-image-<rel>-unsigned` but the
/// pool has lost its file; the signed `linux-image-<rel>` (same vmlinuz,
/// config, modules) is there and is used in its place.
#[test]
fn gone_unsigned_image_falls_back_to_the_signed_twin() {
    let debs = debs(false);
    let (image, body) = debs[0].clone();
    let mut signed = image.clone();
    signed.package = format!("linux-image-{REL}");
    signed.filename = format!("pool/main/l/linux-signed-amd64/linux-image-{REL}_9.9.7-1_amd64.deb");
    // Served: the signed twin and the headers; not the unsigned image.
    let srv = serve(&[(signed.clone(), body), debs[1].clone()]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mirrors = Mirrors {
        archive: vec![srv.base.clone()],
        security: vec![],
    };
    let opts = Options {
        jobs: 2,
        keep_debs: false,
        staging: Some(dir.path().join("staging")),
    };
    let mut k = kernel(&debs);
    k.fallbacks = vec![signed.clone()];
    let staged = targeted::fetch(&cache, &http(), &mirrors, &k, &opts).unwrap();
    let t = &staged.tree;
    assert_eq!(t.vmlinuz, t.root.join(format!("boot/vmlinuz-{REL}")));
    let used: Vec<&str> = t.packages.iter().map(|p| p.package.as_str()).collect();
    assert_eq!(used, [signed.package.as_str(), debs[1].0.package.as_str()]);
    assert_eq!(staged.downloaded, signed.size + debs[1].0.size);
    drop(staged);
    assert!(cache.cached(&signed).unwrap().is_none(), "twin removed");
    assert!(cache.cached(&image).unwrap().is_none());
}

/// Nothing left of the image: the kernel is unavailable, naming the file the
/// index lists and the twin tried; nothing is left behind.
#[test]
fn kernel_with_nothing_left_is_unavailable_naming_the_file() {
    let debs = debs(false);
    let mut signed = debs[0].0.clone();
    signed.package = format!("linux-image-{REL}");
    signed.filename = format!("pool/main/l/linux-signed-amd64/linux-image-{REL}_9.9.7-1_amd64.deb");
    let srv = serve(&debs[1..]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mirrors = Mirrors {
        archive: vec![srv.base.clone()],
        security: vec![],
    };
    let staging = dir.path().join("staging");
    let opts = Options {
        jobs: 1,
        keep_debs: false,
        staging: Some(staging.clone()),
    };
    let mut k = kernel(&debs);
    k.fallbacks = vec![signed.clone()];
    let e = targeted::fetch(&cache, &http(), &mirrors, &k, &opts).unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    let text = kmlink_errors::chain(&e);
    assert!(
        text.contains(&format!("kernel {REL} is unavailable")),
        "{text}"
    );
    assert!(text.contains(&debs[0].0.filename), "{text}");
    assert!(text.contains(&signed.filename), "{text}");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(
        cache.cached(&debs[1].0).unwrap().is_none(),
        "headers removed"
    );
    // Without a twin: unavailable too, naming the file alone.
    k.fallbacks.clear();
    let e = targeted::fetch(&cache, &http(), &mirrors, &k, &opts).unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert!(!kmlink_errors::chain(&e).contains("and so is"), "{e}");
}
