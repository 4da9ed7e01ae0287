//! `kmlink flame`: the sampled allocation stacks as a flame graph (SVG) or
//! folded stacks; the work is in kmlink-procview and kmlink-exporter.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use kmlink_exporter::flame::{svg, Weight};
use kmlink_fsio::Durability;
use kmlink_procview::ProcSource;

/// Arguments of `kmlink flame`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink flame -o kmalloc.svg
  kmlink flame --by bytes -o bytes.svg
  kmlink flame --folded -o stacks.folded
  kmlink flame --folded --offsets | flamegraph.pl > kmalloc.svg

The monitor records stacks only when linked with --set stacks=N (one
allocation in N sampled): sudo kmlink load --rebuild --set stacks=64")]
pub struct FlameArgs {
    /// Write here (`-`: standard output) [default: standard output].
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// Folded stacks (one line per stack, `outer;…;inner COUNT`: the input of
    /// flamegraph.pl, inferno and speedscope) instead of an SVG.
    #[arg(long)]
    pub folded: bool,
    /// What the widths count.
    #[arg(long, value_enum, default_value_t = By::Allocs)]
    pub by: By,
    /// Keep each frame's `+offset/size [module]` (folded output only).
    #[arg(long, requires = "folded")]
    pub offsets: bool,
    /// Read DIR/kmlink/stacks instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// What the widths count.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum By {
    /// Sampled allocations.
    Allocs,
    /// Their bytes allocated.
    Bytes,
}

/// Runs `kmlink flame`.
pub fn run(args: FlameArgs) -> Result<ExitCode> {
    let stacks = ProcSource::new(&args.proc_root).read_stacks()?;
    if stacks.sample_every == 0 {
        if stacks.info.get("available") == Some(&0) {
            bail!(
                "this kernel does not export stack_trace_save, so the monitor cannot record stacks"
            );
        }
        bail!(
            "the loaded monitor records no stacks: load it linked with --set stacks=N \
             (`sudo kmlink unload && sudo kmlink load --rebuild --set stacks=64`)"
        );
    }
    if stacks.cut_at_kretprobe_trampoline() {
        eprintln!(
            "kmlink: every sampled stack stops at kretprobe_trampoline: this kernel's unwinder \
             does not get past the kprobe backend's return trampoline (load the tracepoint \
             backend for whole stacks)"
        );
    }
    let weight = match args.by {
        By::Allocs => Weight::Allocs,
        By::Bytes => Weight::Bytes,
    };
    let data = if args.folded {
        stacks
            .folded(weight == Weight::Bytes, args.offsets)
            .into_bytes()
    } else {
        svg(&stacks, weight, "kmlink: kernel stacks of slab allocations")?
    };
    kmlink_fsio::write_file(&args.output, &data, Durability::Visible)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
