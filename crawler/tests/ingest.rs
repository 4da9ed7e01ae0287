//! `ingest`: local packages into the cache, kernels unpacked from them
//! without network.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{deb_bytes_with_control, write_deb, Ent};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Distro, Layout, Origin};
use kmlink_crawler::ingest;
use kmlink_crawler::kernel_tree;
use kmlink_crawler::sources::Mirrors;
use kmlink_crawler::Http;

const REL: &str = "9.3.4+deb13-amd64";
const V: &str = "9.3.4-1~bpo13+1";

fn control(name: &str, depends: &str) -> String {
    format!(
        "Package: {name}\nSource: linux\nVersion: {V}\nArchitecture: amd64\nDepends: {depends}\nDescription: test\n more\n"
    )
}

fn split_kernel(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let vmlinuz = format!("./usr/lib/modules/{REL}/vmlinuz");
    let ko = format!("./usr/lib/modules/{REL}/kernel/d.ko.xz");
    let config = format!("./usr/lib/modules/{REL}/config");
    let symvers = format!("./usr/src/linux-headers-{REL}/Module.symvers");
    let meta_dep = format!(
        "linux-binary-{REL} (= {V}), linux-modules-{REL} (= {V}), linux-base-{REL} (= {V})"
    );
    let debs = [
        (format!("linux-image-{REL}"), meta_dep, "xz", vec![]),
        (
            format!("linux-binary-{REL}"),
            String::new(),
            "zst",
            vec![Ent::File(&vmlinuz, b"vmlinuz 7")],
        ),
        (
            format!("linux-modules-{REL}"),
            String::new(),
            "xz",
            vec![Ent::File(&ko, b"module")],
        ),
        (
            format!("linux-base-{REL}"),
            String::new(),
            "gz",
            vec![Ent::File(&config, b"CONFIG_A=y\n")],
        ),
        (
            format!("linux-headers-{REL}"),
            String::new(),
            "xz",
            vec![Ent::File(&symvers, b"0x1\ta\tvmlinux\tEXPORT_SYMBOL\t\n")],
        ),
        ("hello".to_owned(), String::new(), "xz", vec![]),
    ];
    debs.iter()
        .map(|(name, dep, ext, ents)| {
            write_deb(
                dir,
                &format!("{name}_{V}_amd64.deb"),
                &deb_bytes_with_control(&control(name, dep), ext, ents),
            )
        })
        .collect()
}

#[test]
fn ingested_kernel_unpacks_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let files = split_kernel(dir.path());
    let mut roles = Vec::new();
    for f in &files {
        let i = ingest::ingest(&cache, f).unwrap();
        assert!(cache.debs_dir().join(&i.entry.sha256).is_file());
        assert_eq!(i.entry.version, V);
        roles.push(i.kernel.map(|(r, role)| format!("{role} {r}")));
    }
    assert_eq!(roles[0].as_deref(), Some("image 9.3.4+deb13-amd64"));
    assert_eq!(roles[4].as_deref(), Some("headers 9.3.4+deb13-amd64"));
    assert_eq!(roles[5], None);
    // Ingesting again changes nothing.
    ingest::ingest(&cache, &files[1]).unwrap();
    assert_eq!(ingest::local_index(&cache).unwrap().len(), 6);

    let ks = ingest::local_kernels(&cache).unwrap();
    assert_eq!(ks.len(), 1);
    let (pin, info) = &ks[0];
    assert_eq!(info.release, REL);
    assert_eq!(info.layout, Layout::Split);
    assert_eq!(info.suite, "local");
    assert_eq!(pin.archive, "local");
    assert_eq!(pin.packages.len(), 4);

    // No mirror at all: everything comes from the cache.
    let http = Http::new().unwrap();
    let tree = kernel_tree::materialize(&cache, &http, &Mirrors::default(), pin).unwrap();
    assert_eq!(std::fs::read(&tree.vmlinuz).unwrap(), b"vmlinuz 7");
    assert!(tree.config.is_some() && tree.symvers.is_some());
    assert!(tree.modules_dir.join("kernel/d.ko.xz").is_file());

    // find_kernel answers from the ingested packages before any network
    // (this mirror does not exist).
    let o = Origin::new(
        Distro::Debian,
        Mirrors::explicit("http://127.0.0.1:9/none", None),
        None,
    );
    let (p, i) = discover::find_kernel(&http, &cache, &o, REL)
        .unwrap()
        .unwrap();
    assert_eq!(i.suite, "local");
    assert_eq!(p.packages, pin.packages);

    // A package gone from the cache: a clear error, no network.
    std::fs::remove_file(cache.debs_dir().join(&pin.packages[0].sha256)).unwrap();
    let e = kernel_tree::materialize(&cache, &http, &Mirrors::default(), pin).unwrap_err();
    assert!(e.to_string().contains("ingest it again"), "{e}");
}

#[test]
fn bad_local_packages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let good = split_kernel(dir.path()).remove(1);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = write_deb(dir.path(), "truncated.deb", &bytes[..bytes.len() / 2]);
    let e = ingest::ingest(&cache, &truncated).unwrap_err();
    assert!(e.to_string().contains("truncated.deb"), "{e}");
    let junk = write_deb(dir.path(), "junk.deb", b"not a deb at all");
    let e = ingest::ingest(&cache, &junk).unwrap_err();
    assert!(e.to_string().contains("junk.deb"), "{e}");
    let bad_name = write_deb(
        dir.path(),
        "bad.deb",
        &deb_bytes_with_control("Package: ../evil\nVersion: 1\n", "xz", &[]),
    );
    let e = ingest::ingest(&cache, &bad_name).unwrap_err();
    assert!(e.to_string().contains("invalid Package"), "{e}");
    let e = ingest::ingest(&cache, &dir.path().join("missing.deb")).unwrap_err();
    assert!(e.to_string().contains("missing.deb"), "{e}");
    assert!(ingest::local_index(&cache).unwrap().is_empty());
}

/// Issue #16, item 3: parallel ingests into one cache each add their entry;
/// before the local index was locked, about one in five was lost silently.
#[test]
fn parallel_ingests_into_one_cache_lose_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    const N: usize = 16;
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let debs: Vec<std::path::PathBuf> = (0..N)
            .map(|i| {
                let name = format!("pkg{round}x{i}");
                let control = format!(
                    "Package: {name}\nVersion: 1.{round}.{i}\nArchitecture: amd64\nDescription: t\n"
                );
                let bytes = deb_bytes_with_control(&control, "gz", &[]);
                write_deb(dir.path(), &format!("{name}.deb"), &bytes)
            })
            .collect();
        let barrier = std::sync::Barrier::new(N);
        std::thread::scope(|s| {
            for d in &debs {
                let (cache, barrier) = (&cache, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    ingest::ingest(cache, d).unwrap();
                });
            }
        });
    }
    let names: std::collections::BTreeSet<String> = ingest::local_index(&cache)
        .unwrap()
        .into_iter()
        .map(|e| e.package)
        .collect();
    let missing: Vec<String> = (0..ROUNDS)
        .flat_map(|r| (0..N).map(move |i| format!("pkg{r}x{i}")))
        .filter(|n| !names.contains(n))
        .collect();
    assert!(missing.is_empty(), "lost from the local index: {missing:?}");
}
