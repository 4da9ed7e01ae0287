//! Regenerates the default slim bundle embedded in the binary from a record
//! store (what a crawl filled):
//!
//! `cargo run -p kmlink-metadata-db --example write_default_bundle -- [STORE] [OUT]`
//!
//! STORE defaults to the default store (`$KMLINK_DB`, else
//! `~/.local/share/kmlink/records.db`), OUT to
//! `metadata-db/bundles/default.kmb`. Rebuild the binary afterwards.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_metadata_db::{bundle, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let store_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(Store::default_path);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles/default.kmb"));
    let store = Store::open(&store_path)?;
    let manifest = Manifest::core()?;
    let n = bundle::write_default(&store, &manifest, CORE_OBJECT, &out)?;
    let size = std::fs::metadata(&out)?.len();
    println!(
        "{}: {n} records, {size} bytes ({} bytes per kernel)",
        out.display(),
        size / (n.max(1) as u64)
    );
    Ok(())
}
