//! Real kernels: extract every kernel unpacked in the cache (the three
//! pinned ones at least: fetched through the crawler if absent), store them,
//! read them back, check the facts of docs KERNEL-ABI.md, slim-bundle round
//! trip, re-derive from kept BTF, and print the numbers of
//! docs/benchmarks.md.
//!
//! `cargo test -p kmlink-metadata-db --test real -- --ignored --nocapture`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_crawler::{cache::Cache, kernel_tree, sources, Http};
use kmlink_metadata_db::bundle::{self, Trust};
use kmlink_metadata_db::extract::{self, Artifacts};
use kmlink_metadata_db::record::{KernelRecord, PackageRef};
use kmlink_metadata_db::{slim, Store};

const PINNED: &[&str] = &[
    "6.1.0-47-amd64",
    "6.12.107+deb13-amd64",
    "7.3.4+deb13-amd64",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cache_root() -> PathBuf {
    std::env::var_os("KMLINK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(Cache::default_root)
}

fn flavour_of(release: &str) -> String {
    for f in ["rt-amd64", "cloud-amd64", "amd64"] {
        if release.ends_with(&format!("-{f}")) {
            return f.into();
        }
    }
    release.rsplit('-').next().unwrap_or(release).into()
}

/// Artifacts of a kernel unpacked under `<cache>/kernels/<release>` (as
/// `kernel_tree::materialize` leaves it), found by probing its known layouts.
fn cached(release: &str) -> Option<Artifacts> {
    let root = cache_root().join("kernels").join(release);
    let marker = std::fs::read_to_string(root.join(".kmlink-packages")).ok()?;
    let packages = marker
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(PackageRef {
                sha256: w.next()?.into(),
                name: w.next()?.into(),
                version: w.next()?.into(),
            })
        })
        .collect();
    let first = |cands: Vec<PathBuf>| cands.into_iter().find(|p| p.exists());
    let modules_dir = first(vec![
        root.join("lib/modules").join(release),
        root.join("usr/lib/modules").join(release),
    ])?;
    let vmlinuz = first(vec![
        root.join(format!("boot/vmlinuz-{release}")),
        modules_dir.join("vmlinuz"),
    ])?;
    let config = first(vec![
        root.join(format!("boot/config-{release}")),
        modules_dir.join("config"),
    ]);
    let symvers = first(vec![root
        .join(format!("usr/src/linux-headers-{release}"))
        .join("Module.symvers")]);
    // The pinned set says where a pinned kernel comes from; the others are
    // named by their series.
    let pinned_suite = kernel_tree::load(&workspace().join("tests/kernels.toml"))
        .ok()
        .and_then(|pins| pins.into_iter().find(|p| p.release == release))
        .map(|p| p.suite);
    let suite = pinned_suite.unwrap_or_else(|| {
        match release {
            r if r.starts_with("5.10.") => "bullseye",
            r if r.starts_with("6.1.") => "bookworm",
            r if r.starts_with("6.12.") => "trixie",
            _ => "trixie-backports",
        }
        .to_string()
    });
    Some(Artifacts {
        release: release.into(),
        distro: "debian".into(),
        suite,
        flavour: flavour_of(release),
        vmlinuz,
        config,
        modules_dir,
        symvers,
        packages,
    })
}

/// A pinned kernel, fetched and unpacked by the crawler if not cached.
fn pinned_artifacts(release: &str) -> Artifacts {
    if let Some(a) = cached(release) {
        return a;
    }
    let pins = kernel_tree::load(&workspace().join("tests/kernels.toml")).expect("pins");
    let pin = pins.iter().find(|p| p.release == release).expect("pinned");
    let srcs = sources::host_sources(Path::new("/")).expect("apt sources");
    let mirrors = sources::debian_mirrors(&srcs);
    let http = Http::new().expect("http");
    kernel_tree::materialize(&Cache::new(cache_root()), &http, &mirrors, pin).expect("materialize");
    cached(release).expect("unpacked")
}

fn all_kernels() -> Vec<Artifacts> {
    let mut out: Vec<Artifacts> = PINNED.iter().map(|r| pinned_artifacts(r)).collect();
    if let Ok(entries) = std::fs::read_dir(cache_root().join("kernels")) {
        let mut extra: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // This suite's checks are x86-64's (amd64 flavours); an arm64
            // tree in the cache (scripts/arm64-smoke) is not for it.
            .filter(|r| {
                !PINNED.contains(&r.as_str()) && !r.starts_with('.') && r.ends_with("amd64")
            })
            .collect();
        extra.sort();
        out.extend(extra.iter().filter_map(|r| cached(r)));
    }
    out
}

fn check_abi(r: &KernelRecord) {
    let rel = r.identity.release.as_str();
    let l = |k: &str| r.layouts.get(k).copied();
    let crc = |s: &str| r.exports.get(s).and_then(|e| e.crc);
    let t = r.this_module;
    eprintln!(
        "{rel}: module {}/{:#x}/{:#x}, pid {:?} comm {:?}, kprobe {:?}/{:?}/{:?}, percpu {:?}",
        t.size,
        t.init_offset,
        t.exit_offset,
        l("offsetof:task_struct.pid"),
        l("offsetof:task_struct.comm"),
        l("sizeof:kprobe"),
        l("offsetof:kprobe.symbol_name"),
        l("offsetof:kprobe.pre_handler"),
        r.layouts
            .keys()
            .filter(|k| k.starts_with("percpu:"))
            .collect::<Vec<_>>()
    );
    match rel {
        "6.1.0-47-amd64" => {
            assert_eq!((t.size, t.name_offset, t.name_len), (896, 24, 56));
            assert_eq!((t.init_offset, t.exit_offset), (0x138, 0x350));
            assert_eq!(l("offsetof:task_struct.pid"), Some(2416));
            assert_eq!(l("offsetof:task_struct.comm"), Some(2976));
            assert_eq!(l("percpu:current_task"), Some(0));
            assert!(r.exports.contains_key("current_task"));
            if !slim::is_slim(r) {
                assert_eq!(crc("register_kprobe"), Some(0xfcca_5424));
                let vmlinux = r.exports.values().filter(|e| e.owner == "vmlinux").count();
                assert_eq!(vmlinux, 10_488);
            }
            assert_eq!(crc("_printk"), Some(0x9299_7ed8));
            assert_eq!(crc("module_layout"), Some(0x160c_03af));
            assert_eq!(crc("current_task"), Some(0xe0a6_83ed));
            assert!(r.conventions.modversions && r.conventions.return_sites);
            assert!(r.vermagic.contains("modversions"));
        }
        "6.12.107+deb13-amd64" => {
            assert_eq!((t.size, t.name_offset), (1280, 24));
            assert_eq!((t.init_offset, t.exit_offset), (0x138, 0x4b0));
            assert_eq!(l("offsetof:task_struct.pid"), Some(2432));
            assert_eq!(l("offsetof:task_struct.comm"), Some(2976));
            assert_eq!(l("percpu:pcpu_hot"), Some(0));
            assert_eq!(l("offsetof:pcpu_hot.current_task"), Some(0));
            assert!(r.exports.contains_key("pcpu_hot"));
            assert!(r.conventions.modversions && r.conventions.ibt);
            assert!(r.exports.values().all(|e| e.crc.is_some()));
        }
        "7.3.4+deb13-amd64" => {
            assert_eq!(t.size, 1280);
            assert_eq!((t.init_offset, t.exit_offset), (0x130, 0x4b8));
            assert_eq!(l("percpu:current_task"), Some(0));
            assert!(r.exports.contains_key("current_task"));
            assert!(!r.conventions.modversions);
            assert_eq!(r.vermagic, "7.3.4+deb13-amd64 SMP preempt mod_unload ");
            assert!(r.exports.values().all(|e| e.crc.is_none()), "no CRCs");
        }
        _ => {}
    }
    for key in [
        "sizeof:kprobe",
        "offsetof:kprobe.symbol_name",
        "offsetof:kprobe.pre_handler",
    ] {
        if let Some(v) = l(key) {
            let want = match key {
                // 5.10's kprobe still has `fault_handler` (removed in 5.14): 8
                // bytes more than 6.1 onwards (read from its BTF).
                "sizeof:kprobe" if rel.starts_with("5.10.") => 136,
                "sizeof:kprobe" => 128,
                "offsetof:kprobe.symbol_name" => 48,
                _ => 64,
            };
            assert_eq!(v, want, "{rel} {key}");
        }
    }
}

/// (name, crc) pairs of `r` that no other record has.
fn unique_crcs(r: &KernelRecord, all: &[KernelRecord]) -> usize {
    let others: HashSet<(&str, u32)> = all
        .iter()
        .filter(|o| o.identity.release != r.identity.release)
        .flat_map(|o| {
            o.exports
                .iter()
                .filter_map(|(n, e)| e.crc.map(|c| (n.as_str(), c)))
        })
        .collect();
    r.exports
        .iter()
        .filter_map(|(n, e)| e.crc.map(|c| (n.as_str(), c)))
        .filter(|p| !others.contains(p))
        .count()
}

#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn real_kernels_store_bundle_and_benchmarks() {
    let manifest = Manifest::core().expect("manifest");
    let arts = all_kernels();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("records.db")).expect("open");
    let mut records = Vec::new();
    let mut times: HashMap<String, Duration> = HashMap::new();
    let mut growth: BTreeMap<String, u64> = BTreeMap::new();
    for art in &arts {
        let start = Instant::now();
        let x = extract::extract_full(art, &manifest)
            .unwrap_or_else(|e| panic!("extracting {}: {e}", art.release));
        times.insert(art.release.clone(), start.elapsed());
        check_abi(&x.record);
        let before = std::fs::metadata(store.path()).expect("meta").len();
        store.put(&x.record).expect("put");
        let after = std::fs::metadata(store.path()).expect("meta").len();
        growth.insert(art.release.clone(), after - before);
        store.put_btf(&x.btf).expect("btf");
        // Re-derived from the kept BTF alone: the same record.
        let btf = store
            .btf(&x.record.identity.btf_sha256)
            .expect("btf")
            .expect("kept");
        assert_eq!(
            extract::rederive(&x.record, &btf, &manifest)
                .expect("rederive")
                .layouts,
            x.record.layouts
        );
        records.push(x.record);
    }
    for r in &records {
        assert_eq!(
            store.get(&r.identity.release).expect("get"),
            vec![r.clone()],
            "read back {}",
            r.identity.release
        );
    }
    let v = store.verify().expect("verify");
    assert!(v.is_clean(), "{v:?}");
    let stats = store.stats().expect("stats");

    // Slim bundle round trip into a fresh store.
    let slim_bundle = bundle::export(&records, Some((&manifest, CORE_OBJECT)), None).expect("slim");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let store2 = Store::open(dir2.path().join("records.db")).expect("open");
    bundle::install(&store2, &slim_bundle, &Trust::default()).expect("install");
    let mut slim_sizes = BTreeMap::new();
    for r in &records {
        let got = store2.get(&r.identity.release).expect("get");
        let want = slim::slim(r, &manifest, CORE_OBJECT);
        assert_eq!(got, vec![want.clone()]);
        slim::covers(&got[0], &manifest, CORE_OBJECT).expect("covers");
        check_abi(&got[0]);
        let one = bundle::export(
            std::slice::from_ref(r),
            Some((&manifest, CORE_OBJECT)),
            None,
        )
        .expect("one");
        let others: Vec<KernelRecord> = records
            .iter()
            .filter(|o| o.identity.release != r.identity.release)
            .cloned()
            .collect();
        let without = bundle::export(&others, Some((&manifest, CORE_OBJECT)), None).expect("n-1");
        slim_sizes.insert(
            r.identity.release.clone(),
            (one.len(), slim_bundle.len() - without.len()),
        );
    }
    let full_bundle = bundle::export(&records, None, None).expect("full");

    // docs/benchmarks.md numbers.
    println!("\n| kernel | exports | extraction | store growth | floor (4 B × unique CRCs) | slim: bundle of it alone / added to the others |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &records {
        let rel = &r.identity.release;
        let floor = 4 * unique_crcs(r, &records);
        println!(
            "| {rel} | {} | {:.1} s | {} B | {} B | {} B / {} B |",
            r.exports.len(),
            times[rel].as_secs_f64(),
            growth[rel],
            floor,
            slim_sizes[rel].0,
            slim_sizes[rel].1
        );
    }
    println!(
        "\nstore: {} records, {} B total: strings {} ({} B), CRC pool {} values ({} B), index+blobs {} B",
        stats.records,
        stats.total_bytes,
        stats.strings,
        stats.string_bytes,
        stats.crc_values,
        stats.pool_bytes,
        stats.record_bytes
    );
    println!(
        "full bundle {} B ({} B/kernel); slim bundle of all {} B ({} B/kernel)",
        full_bundle.len(),
        full_bundle.len() / records.len(),
        slim_bundle.len(),
        slim_bundle.len() / records.len()
    );
    assert!(
        slim_bundle.len() / records.len() <= 2048,
        "slim bundle: {} B per kernel",
        slim_bundle.len() / records.len()
    );
}

#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn refresh_real_kernels_and_default_bundle() {
    use kmlink_metadata_db::refresh::{self, Candidate, Outcome};
    let manifest = Manifest::core().expect("manifest");
    let arts = all_kernels();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("records.db")).expect("open");
    type Job = Box<dyn FnOnce() -> Result<Artifacts, String> + Send>;
    let mut candidates: Vec<Candidate<Job>> = arts
        .iter()
        .map(|a| {
            let a2 = a.clone();
            Candidate {
                release: a.release.clone(),
                packages: a.packages.clone(),
                artifacts: Box::new(move || Ok(a2)) as Job,
            }
        })
        .collect();
    candidates.push(Candidate {
        release: "6.1.0-0-bogus".into(),
        packages: vec![],
        artifacts: Box::new(|| Err("404 from every mirror".to_string())),
    });
    let mut truncated = arts[0].clone();
    let bad = dir.path().join("vmlinuz-truncated");
    let bz = std::fs::read(&truncated.vmlinuz).expect("vmlinuz");
    std::fs::write(&bad, &bz[..bz.len() / 3]).expect("write");
    truncated.vmlinuz = bad;
    candidates.push(Candidate {
        release: truncated.release.clone(),
        packages: vec![],
        artifacts: Box::new(move || Ok(truncated)),
    });
    candidates.push(Candidate {
        release: "6.1.0-0-panics".into(),
        packages: vec![],
        artifacts: Box::new(|| panic!("unpacker bug")),
    });
    let report = refresh::refresh(&store, candidates, &manifest, 2);
    for o in &report.outcomes {
        eprintln!("{o:?}");
    }
    // The truncated image may come before or after the good one of the same
    // release: then it fails, or the good one is already there (unchanged
    // is impossible: extraction fails first).
    assert_eq!(report.stored(), arts.len(), "{:?}", report.outcomes);
    let failed = report.failed();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed
        .iter()
        .any(|(r, e)| *r == "6.1.0-0-panics" && e.contains("unpacker bug")));
    assert!(failed.iter().any(|(_, e)| e.contains("404")));
    assert!(store.verify().expect("verify").is_clean());

    // Again: everything is skipped before fetching.
    let again: Vec<Candidate<Job>> = arts
        .iter()
        .map(|a| Candidate {
            release: a.release.clone(),
            packages: a.packages.clone(),
            artifacts: Box::new(|| Err("must not be fetched".to_string())) as Job,
        })
        .collect();
    let r2 = refresh::refresh(&store, again, &manifest, 2);
    assert_eq!(r2.unchanged(), arts.len(), "{:?}", r2.outcomes);
    assert!(r2
        .outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Unchanged { .. })));

    // The built-in amd64 bundle: regenerate on request, else compare with it.
    let fresh = dir.path().join("amd64.kmb");
    let n =
        bundle::write_default(&store, kmlink_core_module::Arch::X86_64, &fresh).expect("default");
    assert_eq!(n, arts.len());
    if std::env::var_os("KMLINK_UPDATE_DEFAULT_BUNDLE").is_some() {
        let dest = workspace().join("metadata-db/bundles/amd64.kmb");
        std::fs::copy(&fresh, &dest).expect("copy");
        eprintln!("wrote {}", dest.display());
    } else {
        let embedded = Store::embedded().expect("embedded");
        for r in store.all().expect("all") {
            let want = slim::slim(&r, &manifest, CORE_OBJECT);
            if let Some(e) = embedded
                .iter()
                .find(|e| e.identity.btf_sha256 == r.identity.btf_sha256)
            {
                // The same package (same SHA-256) is listed by several
                // suites once a security update reaches a point release
                // (bookworm-security, then bookworm): the suite says where
                // a crawl found it, not what the kernel is.
                let mut e = e.clone();
                if e.identity.packages == want.identity.packages {
                    e.identity.suite.clone_from(&want.identity.suite);
                }
                assert_eq!(e, want, "embedded record of {} differs from a fresh extraction (regenerate: KMLINK_UPDATE_DEFAULT_BUNDLE=1)", r.identity.release);
            }
        }
    }
}

/// The module loader's vermagic string found in each image equals its stock
/// module's vermagic byte for byte.
#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn vermagic_in_image_equals_stock_module() {
    for art in all_kernels() {
        let bz = std::fs::read(&art.vmlinuz).expect("vmlinuz");
        let elf = kmlink_donor::bzimage::extract_vmlinux(&bz).expect("vmlinux");
        let found = extract::find_vermagic(&art.release, &elf)
            .expect("one vermagic")
            .expect("a vermagic in the image");
        let stock = extract::find_stock_module(&art.release, &art.modules_dir).expect("stock");
        let want = stock.facts.vermagic.clone().expect("stock vermagic");
        eprintln!("{}: {found:?}", art.release);
        assert_eq!(found.as_bytes(), want.as_bytes(), "{}", art.release);
    }
}

/// Staged by the crawler's targeted fetch (from the cached packages).
struct Targeted {
    art: Artifacts,
    _files: kmlink_crawler::targeted::Staged,
}

impl kmlink_metadata_db::refresh::Staged for Targeted {
    fn artifacts(&self) -> &Artifacts {
        &self.art
    }
}

/// The pinned kernel `release` fetched by `targeted::fetch` (packages taken
/// from the cache; downloaded, and kept, if absent) into `staging`, with
/// the identity of `full`.
fn targeted(full: &Artifacts, staging: &Path) -> Targeted {
    use kmlink_crawler::targeted;
    let pins = kernel_tree::load(&workspace().join("tests/kernels.toml")).expect("pins");
    let pin = pins
        .iter()
        .find(|p| p.release == full.release)
        .expect("pinned");
    let srcs = sources::host_sources(Path::new("/")).expect("apt sources");
    let mirrors = sources::debian_mirrors(&srcs);
    let http = Http::new().expect("http");
    let opts = targeted::Options {
        jobs: 2,
        keep_debs: true,
        staging: Some(staging.to_path_buf()),
    };
    let staged =
        targeted::fetch(&Cache::new(cache_root()), &http, &mirrors, pin, &opts).expect("targeted");
    let t = &staged.tree;
    assert!(
        staged.files <= targeted::STOCK_MODULES + 6,
        "{}: {} files unpacked",
        full.release,
        staged.files
    );
    let art = Artifacts {
        vmlinuz: t.vmlinuz.clone(),
        config: t.config.clone(),
        modules_dir: t.modules_dir.clone(),
        symvers: t.symvers.clone(),
        ..full.clone()
    };
    assert_eq!(
        art.config.is_some(),
        full.config.is_some(),
        "{}",
        full.release
    );
    assert_eq!(
        art.symvers.is_some(),
        full.symvers.is_some(),
        "{}",
        full.release
    );
    Targeted {
        art,
        _files: staged,
    }
}

/// The targeted selection (vmlinuz, config, Module.symvers, the first few
/// modules) gives exactly the record of the full tree; without any module
/// (the archive lost the modules package) the image and BTF alone give the
/// same facts, with provenance saying so; and dropping the staged files
/// removes them.
#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn targeted_extraction_matches_full_tree_and_btf_only() {
    let manifest = Manifest::core().expect("manifest");
    let staging = tempfile::tempdir().expect("tempdir");
    for name in PINNED {
        let full = pinned_artifacts(name);
        let want = extract::extract(&full, &manifest).expect("full tree");
        let t = targeted(&full, staging.path());
        let got = extract::extract(&t.art, &manifest).expect("targeted");
        assert_eq!(got, want, "{name}: targeted record differs");

        // No modules at all: vermagic from the image, struct module from BTF.
        // (7.x keeps vmlinuz and config beside `kernel/`: only that goes.)
        let mods = t.art.modules_dir.join("kernel");
        std::fs::remove_dir_all(&mods).expect("rm modules");
        let bare = extract::extract(&t.art, &manifest).expect("BTF only");
        assert_eq!(bare.vermagic, want.vermagic, "{name}");
        assert_eq!(bare.this_module, want.this_module, "{name}");
        assert_eq!(bare.exports, want.exports, "{name}");
        assert_eq!(bare.layouts, want.layouts, "{name}");
        assert_eq!(
            bare.conventions.modversions, want.conventions.modversions,
            "{name}"
        );
        assert_eq!(
            bare.provenance.get("this_module").map(String::as_str),
            Some(extract::BTF_ONLY_THIS_MODULE),
            "{name}"
        );
        assert!(
            bare.provenance["vermagic"].contains("no stock module"),
            "{name}"
        );
        // Without config either: modversions from the image's CRC tables.
        let mut no_cfg = t.art.clone();
        no_cfg.config = None;
        let bare2 = extract::extract(&no_cfg, &manifest).expect("no config");
        let c = |r: &KernelRecord| {
            let c = &r.conventions;
            (c.modversions, c.return_sites, c.retpoline, c.ibt)
        };
        assert_eq!(c(&bare2), c(&want), "{name}: conventions from the image");
        assert_eq!(c(&bare), c(&want), "{name}: conventions from the config");
        assert_eq!(
            bare2.provenance.get("conventions").map(String::as_str),
            Some(extract::IMAGE_ONLY_CONVENTIONS)
        );
        let root = t._files.tree.root.clone();
        drop(t);
        assert!(!root.exists(), "{name}: staging left behind");
    }
    assert_eq!(std::fs::read_dir(staging.path()).expect("ls").count(), 0);
}

/// `refresh` over kernels staged by the crawler's targeted fetch (offline
/// when their packages are cached): all stored, staging emptied, and a
/// second run skips them before fetching.
#[test]
#[ignore = "needs the pinned kernels (downloads ~300 MB if not cached)"]
fn refresh_through_targeted_fetch() {
    use kmlink_metadata_db::refresh::{self, Candidate, Outcome};
    let manifest = Manifest::core().expect("manifest");
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("staging");
    let store = Store::open(dir.path().join("records.db")).expect("open");
    let fulls: Vec<Artifacts> = PINNED.iter().map(|r| pinned_artifacts(r)).collect();
    type Job<'a> = Box<dyn FnOnce() -> Result<Targeted, String> + Send + 'a>;
    let candidates: Vec<Candidate<Job>> = fulls
        .iter()
        .map(|f| {
            let staging = &staging;
            Candidate {
                release: f.release.clone(),
                packages: f.packages.clone(),
                artifacts: Box::new(move || Ok(targeted(f, staging))) as Job,
            }
        })
        .collect();
    let report = refresh::refresh(&store, candidates, &manifest, 2);
    assert_eq!(report.stored(), fulls.len(), "{:?}", report.outcomes);
    assert!(report.outcomes.iter().all(|o| match o {
        Outcome::Stored {
            took, extracting, ..
        } => extracting <= took,
        _ => false,
    }));
    assert_eq!(std::fs::read_dir(&staging).expect("ls").count(), 0);
    for f in &fulls {
        let recs = store.get(&f.release).expect("get");
        assert_eq!(recs.len(), 1);
        assert!(store
            .btf(&recs[0].identity.btf_sha256)
            .expect("btf")
            .is_some());
    }
    type Never = Box<dyn FnOnce() -> Result<Artifacts, String> + Send>;
    let again: Vec<Candidate<Never>> = fulls
        .iter()
        .map(|f| Candidate {
            release: f.release.clone(),
            packages: f.packages.clone(),
            artifacts: Box::new(|| Err("must not be fetched".to_string())) as Never,
        })
        .collect();
    assert_eq!(
        refresh::refresh(&store, again, &manifest, 2).unchanged(),
        fulls.len()
    );
}
