//! `kmlink top`: the live terminal view (the work is in kmlink-procview).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use kmlink_procview::tui::{run_batch, run_interactive, TopState};
use kmlink_procview::{Error, ProcSource, Sampler, SortKey};

use super::stats::seconds;

/// Arguments of `kmlink top`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink top                        # live; q quits, p pauses, / filters, a f b o … sort
  kmlink top -d 0.5 --sort allocs/s
  kmlink top --batch 3 > top.txt    # three text frames, a second apart (like top -b)
  kmlink top --cgroups              # per cgroup: containers, systemd services and slices
  kmlink top --once --proc-root procview/tests/fixtures/busy-2   # a recorded snapshot

Keys: q quit · p or space pause · / filter (comm:TEXT or cache:TEXT for one table)
· Esc clear filter · sort by column: i pid, n name, a alloc/s, f free/s, b bytes/s,
o outstanding, A allocs, F frees, B bytes · < > previous/next column · r reverse
· Tab switch table · c cgroups/processes · ↑↓ PgUp PgDn scroll · Ctrl-L repaint.")]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(
        short = 'd',
        long,
        value_name = "S",
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub interval: f64,
    /// Initial sort column (pid name allocs/s frees/s bytes/s outstanding allocs frees bytes).
    #[arg(long, value_name = "COL", default_value = "bytes/s", value_parser = SortKey::parse)]
    pub sort: SortKey,
    /// Initial filter (as typed after `/`).
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Per cgroup (v2, paths from /sys/fs/cgroup) instead of per process; `c` toggles.
    #[arg(long)]
    pub cgroups: bool,
    /// Print one frame as text and exit.
    #[arg(long, conflicts_with = "batch")]
    pub once: bool,
    /// Print N frames as text, --interval apart, and exit (the first shows totals).
    #[arg(short = 'b', long, value_name = "N")]
    pub batch: Option<u32>,
    /// Width of text frames [default: $COLUMNS, else 100].
    #[arg(long, value_name = "COLS")]
    pub width: Option<u16>,
    /// Read DIR/kmlink/{stats,events} instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Name cgroups from the cgroup2 hierarchy mounted at DIR (cgroup ids
    /// are its directories' inode numbers) [default: /sys/fs/cgroup].
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
}

/// Runs `kmlink top`.
pub fn run(args: TopArgs) -> Result<ExitCode> {
    let interval = seconds("--interval", args.interval)?;
    let source = ProcSource::new(&args.proc_root);
    source.check_loaded()?;
    let mut state = TopState::new(interval, args.sort);
    state.filter = args.filter.clone().unwrap_or_default();
    state.cgroups = args.cgroups;
    state.cgroup_root = args.cgroup_root.clone();
    let sampler = Sampler::new(source);
    let frames = if args.once { Some(1) } else { args.batch };
    if let Some(frames) = frames {
        if frames == 0 {
            bail!("--batch 0 prints nothing; give at least 1");
        }
        let width = args
            .width
            .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
            .unwrap_or(100)
            .max(40);
        let stdout = std::io::stdout();
        return match run_batch(sampler, state, frames, width, &mut stdout.lock()) {
            // `kmlink top --batch 9 | head` is not an error.
            Err(Error::Terminal { error }) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e.into()),
            Ok(()) => Ok(ExitCode::SUCCESS),
        };
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "kmlink top is interactive and needs a terminal (standard input or output is not one): \
             for text use `kmlink top --batch N` or `kmlink stats`"
        );
    }
    run_interactive(sampler, state)?;
    Ok(ExitCode::SUCCESS)
}
