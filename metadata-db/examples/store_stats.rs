//! Size figures of a record store for docs/benchmarks.md:
//!
//! `cargo run -p kmlink-metadata-db --example store_stats -- [STORE]`
//!
//! Prints, over every stored kernel: the store file and its parts, the kept
//! BTF, full and slim bundles, and per kernel the floor (4 B × CRC values no
//! other stored kernel has).
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::PathBuf;

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_metadata_db::{bundle, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(Store::default_path);
    let store = Store::open(&path)?;
    let all = store.all()?;
    let n = all.len().max(1) as u64;
    let stats = store.stats()?;
    let file = std::fs::metadata(&path)?.len();
    let btf_dir = path.parent().map(|p| p.join("btf")).unwrap_or_default();
    let (mut btf_files, mut btf_bytes) = (0u64, 0u64);
    if let Ok(rd) = std::fs::read_dir(&btf_dir) {
        for e in rd.flatten() {
            btf_files += 1;
            btf_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    let mut count: HashMap<(&str, u32), usize> = HashMap::new();
    for r in &all {
        for (name, e) in &r.exports {
            if let Some(c) = e.crc {
                *count.entry((name.as_str(), c)).or_default() += 1;
            }
        }
    }
    let mut floors: Vec<u64> = all
        .iter()
        .map(|r| {
            4 * r
                .exports
                .iter()
                .filter(|(name, e)| e.crc.is_some_and(|c| count[&(name.as_str(), c)] == 1))
                .count() as u64
        })
        .collect();
    floors.sort_unstable();
    let exports: u64 = all.iter().map(|r| r.exports.len() as u64).sum();
    let manifest = Manifest::core()?;
    let full = bundle::export(&all, None, None)?.len() as u64;
    let slim = bundle::export(&all, Some((&manifest, CORE_OBJECT)), None)?.len() as u64;
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    println!("records              {}", all.len());
    println!("exports (sum)        {exports}");
    println!("store file           {file} B ({} B per kernel)", file / n);
    println!(
        "  strings            {} ({} B), CRC values {} ({} B pools), index+blobs {} B",
        stats.strings, stats.string_bytes, stats.crc_values, stats.pool_bytes, stats.record_bytes
    );
    println!(
        "floor per kernel     median {} B, max {} B, sum {} B; all distinct CRC values x 4 B = {} B",
        median(&floors),
        floors.last().copied().unwrap_or(0),
        floors.iter().sum::<u64>(),
        4 * count.len() as u64
    );
    println!(
        "kept BTF             {btf_files} files, {btf_bytes} B ({} B per kernel)",
        btf_bytes / btf_files.max(1)
    );
    println!("full bundle          {full} B ({} B per kernel)", full / n);
    println!("slim bundle          {slim} B ({} B per kernel)", slim / n);
    Ok(())
}
