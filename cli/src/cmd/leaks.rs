//! `kmlink leaks`: outstanding memory by allocating call site (the work is
//! in kmlink-procview's `leaks`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use kmlink_procview::leaks::{
    attach_stacks, leaks, leaks_json, symbolize, Kallsyms, Leak, LeakQuery, LeakSort,
};
use kmlink_procview::ProcSource;

use super::stats::to_stdout;

/// Arguments of `kmlink leaks`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink leaks                          # every call site with memory outstanding, oldest first
  kmlink leaks --age 60 --top 10        # held for a minute or more
  kmlink leaks --sort bytes --top 20    # the most bytes outstanding first
  kmlink leaks --stacks --top 5         # with the sampled stacks through each call site
  kmlink leaks --json --stacks          # one JSON document (kmlink stats --schema, $defs/leaks)
  kmlink leaks --proc-root procview/tests/fixtures/leaks   # a recorded snapshot

A call site is the return address the allocator was called from, named as the
kernel names it (%pS); frees count to the call site that allocated the object.
Only objects allocated since the monitor was loaded (or cleared) are seen.
--stacks needs a monitor linked with --set stacks=N (one allocation in N has
its stack saved): sudo kmlink load --rebuild --set stacks=64")]
pub struct LeaksArgs {
    /// Only call sites whose oldest outstanding object is at least S seconds old.
    #[arg(long, value_name = "S", default_value = "0")]
    pub age: f64,
    /// At most N call sites.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Order: age (oldest object first), bytes or objects (most first).
    #[arg(long, value_name = "KEY", default_value = "age", value_parser = LeakSort::parse)]
    pub sort: LeakSort,
    /// Under each call site, the sampled kernel stacks through it (from
    /// /proc/kmlink/stacks), from the call site out to the system call.
    #[arg(long)]
    pub stacks: bool,
    /// One JSON document instead of the table (schema: `kmlink stats
    /// --schema`, $defs/leaks).
    #[arg(long)]
    pub json: bool,
    /// Read DIR/kmlink/stats (and stacks) instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// Runs `kmlink leaks`.
pub fn run(args: LeaksArgs) -> Result<ExitCode> {
    let min_age = match Duration::try_from_secs_f64(args.age) {
        Ok(d) => d,
        Err(_) => bail!(
            "--age {} is not a number of seconds (try --age 0 or --age 30)",
            args.age
        ),
    };
    let source = ProcSource::new(&args.proc_root);
    source.check_loaded()?;
    let stats = source.read_stats()?;
    if stats.callsites.is_empty() && stats.totals.is_some_and(|t| t.allocs > 0) {
        eprintln!(
            "kmlink: the loaded monitor writes no callsite table: it is an older build \
             (`kmlink unload && kmlink load` builds the current one)"
        );
    }
    let query = LeakQuery {
        min_age,
        top: args.top,
        sort: args.sort,
    };
    let mut rows = leaks(&stats, &query);
    let stacks = if args.stacks {
        let st = source.read_stacks()?;
        if st.sample_every == 0 {
            let why = if st.info.get("available") == Some(&0) {
                "this kernel does not export stack_trace_save"
            } else {
                "the loaded monitor records no stacks: load it linked with --set stacks=N \
                 (`sudo kmlink unload && sudo kmlink load --rebuild --set stacks=64`)"
            };
            eprintln!("kmlink: no stacks to show: {why}");
        } else if st.cut_at_kretprobe_trampoline() {
            eprintln!(
                "kmlink: every sampled stack stops at kretprobe_trampoline: this kernel's \
                 unwinder does not get past the kprobe backend's return trampoline, so no \
                 stack shows a call site (load the tracepoint backend for stacks)"
            );
        }
        // Matched on the kernel's own names, before any is renamed below.
        attach_stacks(&mut rows, &st);
        Some(st)
    } else {
        None
    };
    if rows
        .iter()
        .any(|l| kmlink_procview::leaks::is_bare_address(&l.caller))
    {
        // Only root reads real addresses there; others get no symbols.
        if let Ok(text) = std::fs::read_to_string(args.proc_root.join("kallsyms")) {
            symbolize(&mut rows, &Kallsyms::parse(&text));
        }
    }
    let text = if args.json {
        let mut t = serde_json::to_string(&leaks_json(&stats, &query, &rows, stacks.as_ref()))?;
        t.push('\n');
        t
    } else {
        format_leaks(&rows, min_age, args.stacks)
    };
    to_stdout(|o| o.write_all(text.as_bytes()))?;
    Ok(ExitCode::SUCCESS)
}

/// `1.5s`, `3m05s`, `2h01m`.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn format_leaks(rows: &[Leak], min_age: Duration, stacks: bool) -> String {
    let mut out = String::new();
    let objects: u64 = rows.iter().map(|l| l.objects).sum();
    let bytes: u64 = rows.iter().map(|l| l.bytes).sum();
    let _ = writeln!(
        out,
        "# {} call sites with objects outstanding for at least {}: {objects} objects, {bytes} bytes",
        rows.len(),
        age(min_age)
    );
    let _ = writeln!(
        out,
        "{:>9} {:>12} {:>8} {:>10} {:>10}  {:<18}  CALLER",
        "OBJECTS", "BYTES", "OLDEST", "ALLOCS", "FREES", "CALL_SITE"
    );
    for l in rows {
        let site = l
            .addr
            .map_or_else(|| "-".to_string(), |a| format!("{a:#x}"));
        let _ = writeln!(
            out,
            "{:>9} {:>12} {:>8} {:>10} {:>10}  {:<18}  {}",
            l.objects,
            l.bytes,
            age(l.oldest),
            l.allocs,
            l.frees,
            site,
            l.caller
        );
        if !stacks {
            continue;
        }
        if l.stacks.is_empty() {
            let _ = writeln!(out, "{:>11}(no sampled stack through this call site)", "");
        }
        for p in &l.stacks {
            let _ = writeln!(
                out,
                "{:>11}{} sampled allocations, {} bytes:",
                "", p.allocs, p.bytes
            );
            for f in &p.frames {
                let _ = writeln!(out, "{:>13}{f}", "");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_top() {
        assert_eq!(age(Duration::from_millis(1500)), "1.5s");
        assert_eq!(age(Duration::from_secs(185)), "3m05s");
        assert_eq!(age(Duration::from_secs(7260)), "2h01m");
    }

    #[test]
    fn rows_are_one_line_each() {
        let l = Leak {
            addr: Some(0xffffffff81301234),
            caller: "alloc_pipe_info+0x3e/0x1c0".into(),
            objects: 97,
            bytes: 18624,
            oldest: Duration::from_secs(5),
            allocs: 100,
            frees: 3,
            stacks: Vec::new(),
        };
        let t = format_leaks(std::slice::from_ref(&l), Duration::from_secs(2), false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("1 call sites") && lines[0].contains("97 objects"));
        assert!(lines[2].contains("0xffffffff81301234  alloc_pipe_info+0x3e/0x1c0"));
        assert!(lines[2].trim_start().starts_with("97 "));
        let none = format_leaks(std::slice::from_ref(&l), Duration::ZERO, true);
        assert!(
            none.lines()
                .nth(3)
                .is_some_and(|l| l.contains("no sampled stack")),
            "{none}"
        );
        let with = Leak {
            stacks: vec![kmlink_procview::leaks::SitePath {
                allocs: 3,
                bytes: 576,
                frames: vec![
                    "alloc_pipe_info+0x3e/0x1c0".into(),
                    "do_pipe2+0x2e/0xe0".into(),
                ],
            }],
            ..l
        };
        let t = format_leaks(&[with], Duration::ZERO, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert_eq!(lines[3].trim(), "3 sampled allocations, 576 bytes:");
        assert_eq!(lines[5].trim(), "do_pipe2+0x2e/0xe0");
    }
}
