//! Live tests against the host's Debian mirrors (apt sources). Ignored by
//! default: `cargo test -p kmlink-crawler --test live -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Distro, Layout, Origin};
use kmlink_crawler::kernel_tree;
use kmlink_crawler::Http;

fn origin() -> Origin {
    Origin::from_host(Distro::Debian, Path::new("/")).unwrap()
}

#[test]
#[ignore = "network: reads every Debian suite"]
fn lists_the_debian_archive() {
    let http = Http::new().unwrap();
    let cache = Cache::new(Cache::default_root());
    // By default a suite whose signed Valid-Until has passed is refused
    // (mirrors do go stale): any error must be that refusal, by name.
    let strict = discover::discover(&http, Some(&cache), &origin(), &[]);
    for (s, e) in &strict.errors {
        // The message names the suite; the cause (the expiry) is in the chain.
        let all = kmlink_errors::chain(e);
        eprintln!("suite {s}: {all}");
        assert!(all.contains("expired"), "suite {s}: {all}");
    }
    let mut o = origin();
    o.allow_expired = true;
    let d = discover::discover(&http, Some(&cache), &o, &[]);
    for (s, e) in &d.errors {
        eprintln!("suite {s}: {}", kmlink_errors::chain(e));
    }
    assert!(d.errors.is_empty());
    assert!(d.kernels.len() >= strict.kernels.len());
    let mut per_suite: BTreeMap<String, usize> = BTreeMap::new();
    for (_, i) in &d.kernels {
        *per_suite.entry(i.suite.clone()).or_default() += 1;
    }
    let merged = discover::merge(d.kernels.clone());
    let mut per_flavour: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_layout: BTreeMap<String, usize> = BTreeMap::new();
    let mut no_symvers = 0;
    for (_, i) in &merged {
        *per_flavour.entry(i.flavour.clone()).or_default() += 1;
        *per_layout.entry(format!("{:?}", i.layout)).or_default() += 1;
        no_symvers += usize::from(i.symvers.is_none());
    }
    eprintln!("per suite (before merging): {per_suite:?}");
    eprintln!("merged: {} kernels; per flavour {per_flavour:?}; per layout {per_layout:?}; without symvers: {no_symvers}", merged.len());
    assert!(merged.len() > 100);
    assert!(merged.iter().any(|k| k.1.release.starts_with("6.1.0-")));
    assert!(merged.iter().any(|k| k.1.layout == Layout::Split));
}

#[test]
#[ignore = "network: downloads a 6.1 kernel (~70 MB) and a 7.x kernel (~120 MB)"]
fn fetches_a_6_1_and_a_split_kernel_via_discovery() {
    let http = Http::new().unwrap();
    let cache = Cache::new(Cache::default_root());
    let o = origin();
    let d = discover::discover(
        &http,
        Some(&cache),
        &o,
        &["bookworm".into(), "trixie-backports".into()],
    );
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let merged = discover::merge(d.kernels);
    let old = merged
        .iter()
        .rfind(|k| k.1.release.starts_with("6.1.0-") && k.1.flavour == "amd64")
        .unwrap();
    let split = merged
        .iter()
        .rfind(|k| k.1.layout == Layout::Split && k.1.flavour == "amd64" && k.1.missing.is_empty())
        .unwrap();
    for (pin, info) in [old, split] {
        let found = discover::find_kernel(&http, &cache, &o, &info.release)
            .unwrap()
            .unwrap();
        assert_eq!(found.1.release, info.release);
        let tree = kernel_tree::materialize_with(&cache, &http, &o.mirrors, pin, 4).unwrap();
        eprintln!("{}: {}", tree.release, tree.vmlinuz.display());
        assert!(tree.vmlinuz.is_file());
        assert!(tree.config.is_some());
        assert!(tree.modules_dir.join("kernel").is_dir());
        assert!(tree.symvers.is_some());
    }
}

/// bullseye-security (measured 2026-12-07): the index lists the unsigned
/// 5.10.0-46-cloud image but the pool has lost its file; the signed image
/// (same vmlinuz and modules) is there. Discovery lists 5.10 kernels of the
/// three flavours; fetching the cloud kernel uses whichever of the twins
/// the pool still has, and a kernel the pool has lost entirely
/// (5.10.0-45-rt) is unavailable, naming its file: never another error.
#[test]
#[ignore = "network: reads bullseye-security, downloads a 5.10 cloud image (~22 MB)"]
fn bullseye_security_falls_back_to_the_signed_twin() {
    use kmlink_crawler::targeted;
    let http = Http::new().unwrap();
    let cache = Cache::new(Cache::default_root());
    let mut o = origin();
    o.allow_expired = true;
    let ks = discover::scan_suite(&http, Some(&cache), &o, "bullseye-security").unwrap();
    for flavour in ["amd64", "cloud-amd64", "rt-amd64"] {
        assert!(
            ks.iter()
                .any(|k| k.1.release.starts_with("5.10.0-") && k.1.flavour == flavour),
            "no 5.10 {flavour} kernel in bullseye-security"
        );
    }
    let find = |rel: &str| ks.iter().find(|k| k.1.release == rel).unwrap().0.clone();
    let cloud = find("5.10.0-46-cloud-amd64");
    let unsigned = &cloud.packages[0];
    assert_eq!(
        unsigned.package,
        "linux-image-5.10.0-46-cloud-amd64-unsigned"
    );
    let twin = kernel_tree::fallback_for(unsigned, &cloud.fallbacks).expect("the signed twin");
    assert_eq!(twin.package, "linux-image-5.10.0-46-cloud-amd64");
    let mirrors = kmlink_crawler::sources::Mirrors {
        archive: o.mirrors.archive.clone(),
        security: o.mirrors.security.clone(),
    };
    let opts = targeted::Options {
        jobs: 2,
        keep_debs: false,
        staging: None,
    };
    let staged = targeted::fetch(&cache, &http, &mirrors, &cloud, &opts).unwrap();
    assert!(staged.tree.vmlinuz.is_file());
    let used = &staged.tree.packages[0].package;
    eprintln!("5.10.0-46-cloud-amd64: vmlinuz from {used}");
    assert!(used == &unsigned.package || used == &twin.package, "{used}");
    drop(staged);

    let rt = find("5.10.0-45-rt-amd64");
    match targeted::fetch(&cache, &http, &mirrors, &rt, &opts) {
        Ok(s) => eprintln!("5.10.0-45-rt-amd64 is back: {:?}", s.tree.packages),
        Err(e) => {
            let text = kmlink_errors::chain(&e);
            eprintln!("{text}");
            assert!(e.is_unavailable(), "{text}");
            assert!(text.contains(&rt.packages[0].filename), "{text}");
        }
    }
}
