//! `kmlink events`: the monitor's recent events as text or JSON Lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use kmlink_procview::json::event_json;
use kmlink_procview::text::{event_line, events_header};
use kmlink_procview::{Event, EventFilter, Follower, ProcSource};

use super::stats::{seconds, to_stdout};

/// Arguments of `kmlink events`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink events                                  # the ring's contents, oldest first
  kmlink events --follow --comm stress-ng        # new events as they come
  kmlink events --json --cache dentry | jq -c 'select(.bytes_alloc > 128)'
  kmlink events --event kmalloc --event kfree --pid 1234

Reading is a snapshot: it consumes nothing. --follow polls the snapshot and
prints only events newer than those already printed.")]
pub struct EventsArgs {
    /// Keep polling and print new events as they arrive (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per event, one per line (schema: `kmlink stats --schema`, $defs/event).
    #[arg(long)]
    pub json: bool,
    /// Only events of this comm (as shown, or escaped as in /proc).
    #[arg(long, value_name = "C")]
    pub comm: Option<String>,
    /// Only events of this slab cache (`-` for kmalloc events without one).
    #[arg(long, value_name = "C")]
    pub cache: Option<String>,
    /// Only events of this process (tgid).
    #[arg(long, value_name = "PID", allow_negative_numbers = true)]
    pub pid: Option<u32>,
    /// Only events of this kind (repeatable): kmalloc, kmem_cache_alloc, kfree,
    /// kmem_cache_free, mm_page_alloc, mm_page_free.
    #[arg(long = "event", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Seconds between polls with --follow.
    #[arg(
        long,
        value_name = "S",
        default_value = "0.5",
        allow_negative_numbers = true
    )]
    pub interval: f64,
    /// Read DIR/kmlink/{stats,events} instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

fn print(events: &[Event], json: bool, o: &mut dyn Write) -> std::io::Result<()> {
    for e in events {
        if json {
            serde_json::to_writer(&mut *o, &event_json(e))?;
            o.write_all(b"\n")?;
        } else {
            writeln!(o, "{}", event_line(e))?;
        }
    }
    Ok(())
}

/// Runs `kmlink events`.
pub fn run(args: EventsArgs) -> Result<ExitCode> {
    let interval = seconds("--interval", args.interval)?;
    const KINDS: [&str; 6] = [
        "kmalloc",
        "kmem_cache_alloc",
        "kfree",
        "kmem_cache_free",
        "mm_page_alloc",
        "mm_page_free",
    ];
    for k in &args.kinds {
        if !KINDS.contains(&k.as_str()) {
            eprintln!(
                "kmlink: warning: --event {k:?} is not a kind this kmlink knows ({}); \
                 it matches only if the monitor writes it",
                KINDS.join(", ")
            );
        }
    }
    let filter = EventFilter {
        comm: args.comm.clone(),
        cache: args.cache.clone(),
        pid: args.pid,
        kinds: args.kinds.clone(),
    };
    let source = ProcSource::new(&args.proc_root);
    let first = source.read_events()?;
    if !args.json {
        to_stdout(|o| writeln!(o, "{}", events_header()))?;
    }
    if !args.follow {
        let kept: Vec<Event> = first.into_iter().filter(|e| filter.keep(e)).collect();
        to_stdout(|o| print(&kept, args.json, o))?;
        return Ok(ExitCode::SUCCESS);
    }
    // The ring's capacity tells when events were overwritten between polls.
    let capacity = source
        .read_stats()
        .ok()
        .and_then(|s| s.monitor)
        .and_then(|m| m.ring_capacity);
    let mut follower = Follower::new();
    let mut snapshot = first;
    loop {
        let step = follower.step(snapshot, capacity);
        if step.maybe_lost {
            eprintln!(
                "kmlink: some events were overwritten in the ring ({} entries) before they \
                 were read: poll faster (--interval) or filter in a script",
                capacity.unwrap_or(0)
            );
        }
        let kept: Vec<Event> = step.new.into_iter().filter(|e| filter.keep(e)).collect();
        to_stdout(|o| print(&kept, args.json, o))?;
        std::thread::sleep(interval);
        snapshot = source.read_events()?;
    }
}
