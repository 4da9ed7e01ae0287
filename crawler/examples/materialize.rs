//! Fetch, verify and unpack the pinned kernels; print their trees.
//!
//! ```text
//! cargo run -p kmlink-crawler --example materialize [-- tests/kernels.toml] [--mirror URL]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kmlink_crawler::cache::Cache;
use kmlink_crawler::kernel_tree;
use kmlink_crawler::sources::{self, Mirrors};
use kmlink_crawler::Http;

fn run() -> Result<(), String> {
    let mut file = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/kernels.toml"
    ));
    let mut mirror = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mirror" => mirror = args.next(),
            _ => file = PathBuf::from(a),
        }
    }
    let mirrors = match mirror {
        Some(m) => Mirrors::explicit(&m, None),
        None => sources::debian_mirrors(
            &sources::host_sources(std::path::Path::new("/")).map_err(|e| e.to_string())?,
        ),
    };
    let kernels = kernel_tree::load(&file).map_err(|e| e.to_string())?;
    let cache = Cache::new(Cache::default_root());
    let http = Http::new().map_err(|e| e.to_string())?;
    for k in &kernels {
        let t = Instant::now();
        let tree =
            kernel_tree::materialize(&cache, &http, &mirrors, k).map_err(|e| e.to_string())?;
        println!("{} ({:.1?})", tree.release, t.elapsed());
        println!("  root        {}", tree.root.display());
        println!("  vmlinuz     {}", tree.vmlinuz.display());
        println!(
            "  config      {}",
            tree.config
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string())
        );
        println!("  modules_dir {}", tree.modules_dir.display());
        println!(
            "  symvers     {}",
            tree.symvers
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string())
        );
        for p in &tree.packages {
            println!("  package     {} {} {}", p.package, p.version, p.sha256);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("materialize: {e}");
            ExitCode::FAILURE
        }
    }
}
