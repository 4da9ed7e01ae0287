//! Plain-text output of `kmlink stats` and `kmlink events`: aligned columns,
//! exact numbers, names in display form (never whitespace), `-` for none, so
//! `awk '{print $2}'` works on every row.

use std::fmt::Write;

use crate::events::Event;
use crate::stats::{CacheKey, CgroupKey, Counters, ProcessKey};
use crate::tui::render::fmt_uptime;
use crate::view::{Rate, View, ViewRow};

fn dash(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

fn rate(r: Option<&Rate>, f: fn(&Rate) -> f64) -> String {
    r.map(|r| format!("{:.1}", f(r)))
        .unwrap_or_else(|| "-".to_string())
}

fn counter_cells(c: &Counters, r: Option<&Rate>) -> Vec<String> {
    vec![
        c.allocs.to_string(),
        c.frees.to_string(),
        c.bytes.to_string(),
        dash(c.outstanding),
        dash(c.bytes_req),
        rate(r, |r| r.allocs_per_s),
        rate(r, |r| r.frees_per_s),
        rate(r, |r| r.bytes_per_s),
    ]
}

const COUNTER_HEADS: [&str; 8] = [
    "ALLOCS",
    "FREES",
    "BYTES",
    "OUTSTANDING",
    "BYTES_REQ",
    "ALLOCS/s",
    "FREES/s",
    "BYTES/s",
];

/// Columns aligned: text columns (`left`) padded right, numbers padded left.
fn table(out: &mut String, head: Vec<String>, rows: Vec<Vec<String>>, left: &[usize]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let pad = w[i] - c.chars().count();
            if left.contains(&i) {
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// One sample of `kmlink stats` as text.
pub fn stats_text(
    view: &View,
    sample: u64,
    kernel_release: Option<&str>,
    processes: &[ViewRow<ProcessKey>],
    caches: &[ViewRow<CacheKey>],
    histogram: bool,
) -> String {
    let s = &view.stats;
    let m = s.monitor.as_ref();
    let mut out = String::new();
    let _ = write!(
        out,
        "kmlink stats  release {}  backend {}  up {}  sample {sample}",
        kernel_release.unwrap_or("?"),
        m.and_then(|m| m.backend.as_deref()).unwrap_or("?"),
        m.and_then(|m| m.uptime_ns)
            .map(fmt_uptime)
            .unwrap_or_else(|| "?".into()),
    );
    match view.interval_s {
        Some(i) => {
            let _ = writeln!(out, "  rates over {i:.2}s");
        }
        None => out.push_str("  (no rates: first sample)\n"),
    }
    if view.reset {
        out.push_str("counters were cleared since the previous sample\n");
    }
    if m.and_then(|m| m.paused) == Some(true) {
        out.push_str("monitor paused (resume: echo resume > /proc/kmlink/control)\n");
    }
    if let Some(t) = s.totals {
        let _ = writeln!(
            out,
            "totals: events {} allocs {} frees {} bytes {} bytes_req {}",
            dash(t.events),
            t.allocs,
            t.frees,
            t.bytes,
            dash(t.bytes_req)
        );
    }
    if let Some(d) = &s.dropped {
        out.push_str("dropped:");
        for (reason, n) in d {
            let _ = write!(out, " {reason} {n}");
        }
        out.push('\n');
    }
    out.push('\n');

    let head = ["PID", "COMM"]
        .into_iter()
        .chain(COUNTER_HEADS)
        .map(str::to_string)
        .collect();
    let rows = processes
        .iter()
        .map(|r| {
            let mut row = vec![
                r.key
                    .pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.key.comm.display(),
            ];
            row.extend(counter_cells(&r.counts, r.rate.as_ref()));
            row
        })
        .collect();
    table(&mut out, head, rows, &[1]);
    out.push('\n');

    let head = std::iter::once("CACHE")
        .chain(COUNTER_HEADS)
        .map(str::to_string)
        .collect();
    let rows = caches
        .iter()
        .map(|r| {
            let mut row = vec![match &r.key {
                CacheKey::Named(n) => n.display(),
                k => k.wire(),
            }];
            row.extend(counter_cells(&r.counts, r.rate.as_ref()));
            row
        })
        .collect();
    table(&mut out, head, rows, &[0]);

    // Per cgroup, when the monitor writes the table: the v2 id (`kmlink
    // stats --json` and `top --cgroups` name them by path).
    if !view.cgroups.is_empty() {
        out.push('\n');
        let head = std::iter::once("CGROUP")
            .chain(COUNTER_HEADS)
            .map(str::to_string)
            .collect();
        let rows = view
            .cgroups
            .iter()
            .map(|r| {
                let mut row = vec![match r.key {
                    CgroupKey::Id(id) => id.to_string(),
                    CgroupKey::Other => "(other)".to_string(),
                }];
                row.extend(counter_cells(&r.counts, r.rate.as_ref()));
                row
            })
            .collect();
        table(&mut out, head, rows, &[0]);
    }

    if histogram {
        if let Some(h) = &s.histogram {
            out.push('\n');
            let max = h.iter().map(|b| b.count).max().unwrap_or(0).max(1);
            let rows = h
                .iter()
                .map(|b| {
                    let bar = (b.count as f64 / max as f64 * 40.0).round() as usize;
                    vec![
                        b.le_bytes
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "+Inf".into()),
                        b.count.to_string(),
                        "#".repeat(bar),
                    ]
                })
                .collect();
            table(
                &mut out,
                vec!["LE_BYTES".into(), "COUNT".into(), "".into()],
                rows,
                &[2],
            );
        }
    }
    out
}

/// The header line of `kmlink events` text output.
pub fn events_header() -> String {
    event_cells(None)
}

/// One event as a text line, fixed-width columns (so `--follow` lines up).
pub fn event_line(e: &Event) -> String {
    event_cells(Some(e))
}

fn event_cells(e: Option<&Event>) -> String {
    let n = |v: Option<u64>| dash(v);
    let h = |v: Option<u64>| v.map(|v| format!("{v:#x}")).unwrap_or_else(|| "-".into());
    let cells: [String; 13] = match e {
        None => [
            "TIME_NS",
            "CPU",
            "PID",
            "TID",
            "COMM",
            "EVENT",
            "BYTES_REQ",
            "BYTES_ALLOC",
            "CACHE",
            "GFP",
            "CALL_SITE",
            "PTR",
            "ORDER",
        ]
        .map(str::to_string),
        Some(e) => [
            e.time_ns.to_string(),
            n(e.cpu.map(u64::from)),
            n(e.pid.map(u64::from)),
            n(e.tid.map(u64::from)),
            e.comm
                .as_ref()
                .map(|c| c.display())
                .unwrap_or_else(|| "-".into()),
            e.event.to_string(),
            n(e.bytes_req),
            n(e.bytes_alloc),
            e.cache
                .as_ref()
                .map(|c| c.display())
                .unwrap_or_else(|| "-".into()),
            h(e.gfp),
            h(e.call_site),
            h(e.ptr),
            n(e.order.map(u64::from)),
        ],
    };
    format!(
        "{:>15} {:>3} {:>7} {:>7} {:<16} {:<16} {:>9} {:>11} {:<18} {:>10} {:>18} {:>18} {:>5}",
        cells[0],
        cells[1],
        cells[2],
        cells[3],
        cells[4],
        cells[5],
        cells[6],
        cells[7],
        cells[8],
        cells[9],
        cells[10],
        cells[11],
        cells[12]
    )
    .trim_end()
    .to_string()
}
