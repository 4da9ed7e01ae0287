//! Regenerates a bundle embedded in the binary from a record store (what a
//! crawl filled): the slim records of the store's kernels of one
//! architecture, cut for that architecture's core.
//!
//! `cargo run -p kmlink-metadata-db --example write_default_bundle -- [STORE [ARCH [OUT]]]`
//!
//! STORE defaults to the default store (`$KMLINK_DB`, else
//! `~/.local/share/kmlink/records.db`), ARCH (`amd64` or `arm64`) to
//! `amd64`, OUT to `metadata-db/bundles/ARCH.kmb`. Rebuild the binary
//! afterwards.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use kmlink_core_module::Arch;
use kmlink_metadata_db::{bundle, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let store_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(Store::default_path);
    let arch_name = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "amd64".into());
    let arch = Arch::ALL
        .into_iter()
        .find(|a| a.debian() == arch_name)
        .ok_or_else(|| format!("unknown architecture {arch_name:?}: amd64 or arm64"))?;
    let out = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("bundles/{arch_name}.kmb"))
    });
    let store = Store::open(&store_path)?;
    let n = bundle::write_default(&store, arch, &out)?;
    let size = std::fs::metadata(&out)?.len();
    println!(
        "{}: {n} records, {size} bytes ({} bytes per kernel)",
        out.display(),
        size / (n.max(1) as u64)
    );
    Ok(())
}
