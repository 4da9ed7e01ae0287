//! Live tests against the host's Debian mirrors (apt sources). Ignored by
//! default: `cargo test -p kmlink-crawler --test live -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Distro, Layout, Origin};
use kmlink_crawler::pinned;
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
        let tree = pinned::materialize_with(&cache, &http, &o.mirrors, pin, 4).unwrap();
        eprintln!("{}: {}", tree.release, tree.vmlinuz.display());
        assert!(tree.vmlinuz.is_file());
        assert!(tree.config.is_some());
        assert!(tree.modules_dir.join("kernel").is_dir());
        assert!(tree.symvers.is_some());
    }
}
