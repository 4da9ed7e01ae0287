//! `kmlink stats`: the monitor's aggregates as text or JSON Lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kmlink_procview::cgroup::CgroupPaths;
use kmlink_procview::json::{resolve_cgroups, stats_json, STATS_SCHEMA};
use kmlink_procview::text::stats_text;
use kmlink_procview::view::select;
use kmlink_procview::{Filter, ProcSource, Sampler, SortKey};

/// Arguments of `kmlink stats`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink stats
  kmlink stats --top 10 --sort allocs
  kmlink stats --interval 1 --count 5 --sort allocs/s      # rates from the 2nd sample on
  kmlink stats --json | jq '.processes[0]'                 # one JSON object per sample
  kmlink stats --hist
  kmlink stats --schema > stats.schema.json

Sort columns: pid name allocs/s frees/s bytes/s outstanding allocs frees bytes bytes_req
(rate columns fall back to the totals when there are no rates yet).")]
pub struct StatsArgs {
    /// One JSON object per sample, one per line (schema: `kmlink stats --schema`).
    #[arg(long)]
    pub json: bool,
    /// Seconds between samples; samples after the first carry per-second rates.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub interval: Option<f64>,
    /// Number of samples [default: 1, or until interrupted with --interval].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Sort rows by this column (largest first; names and pids A→Z).
    #[arg(long, value_name = "COL", default_value = "bytes/s", value_parser = SortKey::parse)]
    pub sort: SortKey,
    /// Reverse the order.
    #[arg(long)]
    pub reverse: bool,
    /// At most N rows per table.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Only rows matching TEXT (comm, pid or cache; `comm:TEXT`/`cache:TEXT` for one table).
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Also show the allocation size histogram (text; JSON always has it).
    #[arg(long)]
    pub hist: bool,
    /// Print the JSON schema of the output and exit.
    #[arg(long)]
    pub schema: bool,
    /// Read DIR/kmlink/{stats,events} instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// A seconds flag as a Duration, or advice.
pub(crate) fn seconds(flag: &str, s: f64) -> Result<Duration> {
    match Duration::try_from_secs_f64(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => bail!("{flag} {s} is not a positive number of seconds (try {flag} 1 or {flag} 0.5)"),
    }
}

/// Runs `f`, treating a closed stdout (`| head`) as a normal end.
pub(crate) fn to_stdout(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match f(&mut lock).and_then(|()| lock.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.context("writing to standard output"),
    }
}

/// Runs `kmlink stats`.
pub fn run(args: StatsArgs) -> Result<ExitCode> {
    if args.schema {
        to_stdout(|o| o.write_all(STATS_SCHEMA.as_bytes()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let interval = args
        .interval
        .map(|s| seconds("--interval", s))
        .transpose()?;
    let count = match (args.count, interval) {
        (Some(0), _) => bail!("--count 0 prints nothing; give at least 1"),
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(1),
    };
    let interval = interval.unwrap_or(Duration::from_secs(1));
    let source = ProcSource::new(&args.proc_root);
    let uname = source.kernel_release();
    let filter = Filter::parse(args.filter.as_deref().unwrap_or(""));
    let mut sampler = Sampler::new(source);
    let mut warned_hist = false;
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        if n > 0 {
            std::thread::sleep(interval);
        }
        n += 1;
        let view = sampler.sample()?;
        let (procs, caches) = select(&view, &filter, args.sort, args.reverse, args.top);
        let release = view
            .stats
            .monitor
            .as_ref()
            .and_then(|m| m.release.clone())
            .or_else(|| uname.clone());
        if args.hist && view.stats.histogram.is_none() && !warned_hist {
            warned_hist = true;
            eprintln!(
                "kmlink: the loaded monitor does not write a histogram table in {}: \
                 it is an older build (`kmlink unload && kmlink load` builds the current one)",
                args.proc_root.join("kmlink/stats").display()
            );
        }
        // Cgroup ids to paths, walked per sample: groups come and go.
        let cgroup_paths =
            (args.json && !view.stats.cgroups.is_empty()).then(CgroupPaths::discover);
        to_stdout(|o| {
            if args.json {
                let mut doc = stats_json(&view, n, release, &procs, &caches);
                if let Some(top) = args.top {
                    doc.callsites.truncate(top);
                }
                if let Some(paths) = &cgroup_paths {
                    resolve_cgroups(&mut doc, paths);
                }
                serde_json::to_writer(&mut *o, &doc)?;
                o.write_all(b"\n")
            } else {
                if n > 1 {
                    o.write_all(b"\n")?;
                }
                let text = stats_text(&view, n, release.as_deref(), &procs, &caches, args.hist);
                o.write_all(text.as_bytes())
            }
        })?;
    }
    Ok(ExitCode::SUCCESS)
}
