//! `kmlink build`: link the monitor for one kernel.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_metadata_db::record::KernelRecord;

use crate::{kernels, FetchOpts};

/// Arguments of `kmlink build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Kernel release to build for (`uname -r` of the target).
    #[arg(long)]
    pub kernel: String,
    /// Extract the kernel's facts from its packages (downloaded and verified).
    #[arg(long, conflicts_with = "record")]
    pub from_packages: bool,
    /// Use a kernel record saved as JSON (see --save-record).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Also write the extracted record as JSON here.
    #[arg(long)]
    pub save_record: Option<PathBuf>,
    /// Output module path (default: kmlink-<release>.ko).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Run every check and print the verdict, but write no module.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub fetch: FetchOpts,
}

/// Obtains the record for `args.kernel`.
pub fn record_for(args: &BuildArgs, manifest: &Manifest) -> Result<KernelRecord> {
    if let Some(path) = &args.record {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let record: KernelRecord = serde_json::from_str(&text)
            .with_context(|| format!("parsing record {}", path.display()))?;
        if record.identity.release != args.kernel {
            bail!(
                "record {} is for {}, not {}",
                path.display(),
                record.identity.release,
                args.kernel
            );
        }
        return Ok(record);
    }
    if !args.from_packages {
        bail!("no kernel database yet: pass --from-packages (extract from the kernel's packages) or --record FILE");
    }
    let fetched = kernels::materialize(&args.kernel, &args.fetch)?;
    let art = kernels::artifacts(&fetched.tree, &fetched.suite);
    let record = kmlink_metadata_db::extract::extract(&art, manifest)
        .with_context(|| format!("extracting the facts of {}", args.kernel))?;
    Ok(record)
}

/// Runs `kmlink build`.
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let manifest = Manifest::core().context("reading the embedded core's manifest")?;
    let record = record_for(&args, &manifest)?;
    if let Some(path) = &args.save_record {
        write_atomic(path, serde_json::to_string_pretty(&record)?.as_bytes())?;
    }
    let linked = kmlink_linker::link(CORE_OBJECT, &manifest, &record)
        .with_context(|| format!("linking for {}", args.kernel))?;
    let r = &linked.report;
    eprintln!(
        "kmlink: {}: {} imports bound, {} layout slots, {} symbol versions, {} return sites, vermagic {:?}",
        args.kernel,
        r.bindings.len(),
        r.slots.len(),
        r.versions.len(),
        r.return_sites,
        record.vermagic
    );
    if args.check {
        println!(
            "ok: a module for {} can be built (nothing written: --check)",
            args.kernel
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("kmlink-{}.ko", args.kernel)));
    write_atomic(&out, &linked.ko)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes a file through a temporary beside it, so no half-written output
/// is ever left under the final name.
pub fn write_atomic(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
