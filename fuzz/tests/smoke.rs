//! Every fuzz target compiles, has seeds, and returns normally on its seeds
//! and on every saved regression input; the engine finds a planted panic.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use kmlink_fuzz::engine;
use kmlink_fuzz::{targets, Target};

fn regressions(t: &Target) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(t.name);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn every_target_runs_its_seeds_and_regressions() {
    let scratch = tempfile_dir();
    kmlink_fuzz::targets::set_scratch(scratch.clone());
    let mut failures = Vec::new();
    for t in targets() {
        let seeds = (t.seeds)();
        assert!(!seeds.is_empty(), "target {} has no seeds", t.name);
        for (i, s) in seeds.iter().enumerate() {
            if let Some(msg) = engine::run_one(&t, s) {
                failures.push(format!("{} seed #{i}: {msg}", t.name));
            }
        }
        for (name, input) in regressions(&t) {
            if let Some(msg) = engine::run_one(&t, &input) {
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn seeds_are_well_formed_where_the_format_allows() {
    // The seeds must reach past the first checks, or the fuzzer only
    // exercises magic-number rejections.
    use kmlink_donor::btf::Btf;
    let b = Btf::parse(&kmlink_fuzz::seeds::btf()).unwrap();
    assert_eq!(b.member_offset("task_struct", "comm").unwrap(), Some(4));
    for z in kmlink_fuzz::seeds::bzimages() {
        kmlink_donor::bzimage::extract_vmlinux(&z).unwrap();
    }
    let dir = tempfile_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (i, d) in kmlink_fuzz::seeds::debs().iter().enumerate() {
        let p = dir.join(format!("{i}.deb"));
        std::fs::write(&p, d).unwrap();
        kmlink_crawler::deb::verify(&p).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!kmlink_fuzz::seeds::small_records().is_empty());
    assert!(kmlink_fuzz::seeds::store_images().len() >= 2);
    let b = kmlink_fuzz::seeds::bundles();
    let trust = kmlink_metadata_db::bundle::Trust::default();
    kmlink_metadata_db::bundle::read(&b[0], &trust).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "kmlink-fuzz-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The arm64-image seeds reach the whole export-table reader: both parse,
/// one with a GPL-only second table and CRCs, one with `__kflagstab`.
#[test]
fn arm64_seeds_hold_export_tables() {
    let seeds = kmlink_fuzz::seeds::arm64_images();
    let tables: Vec<_> = seeds
        .iter()
        .map(|s| {
            kmlink_donor::arm64_image::Arm64Image::parse(s)
                .unwrap()
                .export_table()
                .unwrap()
        })
        .collect();
    assert_eq!(tables[0].gpl_entries, Some(500));
    assert!(tables[0].kcrctab.is_some());
    assert!(tables[1].kflagstab.is_some() && tables[1].kcrctab.is_none());
    assert_eq!(tables[1].exports.iter().filter(|e| e.gpl).count(), 500);
}
