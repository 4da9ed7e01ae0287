//! The JSON forms of `kmlink stats --json` and `kmlink events --json`,
//! described by `docs/stats.schema.json` ([`STATS_SCHEMA`]). One JSON object
//! per line (JSON Lines): one per sample, one per event.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cgroup::{label, CgroupPaths};
use crate::events::Event;
use crate::stats::{CacheKey, CgroupKey, Counters, ProcessKey, SiteKey, Stats};
use crate::view::{Rate, View, ViewRow};

/// The JSON Schema (draft 2020-12) of the output, `docs/stats.schema.json`.
/// Its root describes a stats sample, `$defs/event` an event.
pub const STATS_SCHEMA: &str = include_str!("../../docs/stats.schema.json");

/// The value of `format` in every stats sample.
pub const STATS_FORMAT: &str = "kmlink-stats/1";

/// Counters and rates shared by process and cache rows.
#[derive(Debug, Serialize)]
pub struct JsonCounts {
    /// Allocations since load or clear.
    pub allocs: u64,
    /// Frees since load or clear.
    pub frees: u64,
    /// Bytes allocated since load or clear.
    pub bytes: u64,
    /// Bytes still allocated, `null` when not tracked.
    pub outstanding: Option<u64>,
    /// Bytes requested, `null` when absent.
    pub bytes_req: Option<u64>,
    /// Per second over `interval_s`; `null` on the first sample.
    pub allocs_per_s: Option<f64>,
    /// Per second over `interval_s`; `null` on the first sample.
    pub frees_per_s: Option<f64>,
    /// Per second over `interval_s`; `null` on the first sample.
    pub bytes_per_s: Option<f64>,
}

impl JsonCounts {
    fn new(c: &Counters, r: Option<&Rate>) -> Self {
        JsonCounts {
            allocs: c.allocs,
            frees: c.frees,
            bytes: c.bytes,
            outstanding: c.outstanding,
            bytes_req: c.bytes_req,
            allocs_per_s: r.map(|r| round3(r.allocs_per_s)),
            frees_per_s: r.map(|r| round3(r.frees_per_s)),
            bytes_per_s: r.map(|r| round3(r.bytes_per_s)),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A process row.
#[derive(Debug, Serialize)]
pub struct JsonProcess {
    /// Thread group id; `null` on the overflow row.
    pub pid: Option<u32>,
    /// Comm, unescaped (lossy UTF-8); `(other)` on the overflow row.
    pub comm: String,
    /// Comm as the monitor escapes it (exact bytes, never whitespace).
    pub comm_escaped: String,
    /// Whether this is the overflow row.
    pub other: bool,
    /// Counters.
    #[serde(flatten)]
    pub counts: JsonCounts,
}

/// A cache row.
#[derive(Debug, Serialize)]
pub struct JsonCache {
    /// Cache name, unescaped; `null` for kmalloc events without a cache and
    /// for the overflow row.
    pub cache: Option<String>,
    /// As written by the monitor: the escaped name, `-` or `(other)`.
    pub cache_escaped: String,
    /// Whether this is the overflow row.
    pub other: bool,
    /// Counters.
    #[serde(flatten)]
    pub counts: JsonCounts,
}

/// The totals table.
#[derive(Debug, Serialize)]
pub struct JsonTotals {
    /// Events seen, all kinds.
    pub events: Option<u64>,
    /// Allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Bytes allocated.
    pub bytes: u64,
    /// Bytes requested.
    pub bytes_req: Option<u64>,
}

/// A histogram bucket.
#[derive(Debug, Serialize)]
pub struct JsonBucket {
    /// Upper bound in bytes; `null` for `+Inf`.
    pub le_bytes: Option<u64>,
    /// Allocations in the bucket.
    pub count: u64,
}

/// The monitor table.
#[derive(Debug, Serialize)]
pub struct JsonMonitor {
    /// `tracepoint` or `kprobe`.
    pub backend: Option<String>,
    /// Nanoseconds since load.
    pub uptime_ns: Option<u64>,
    /// Whether recording is paused.
    pub paused: Option<bool>,
    /// Kernel release the monitor was linked for.
    pub release: Option<String>,
    /// Event ring capacity.
    pub ring_capacity: Option<u64>,
    /// Keys this version of kmlink does not know.
    pub other: BTreeMap<String, String>,
}

/// A cgroup row.
#[derive(Debug, Serialize)]
pub struct JsonCgroup {
    /// The cgroup v2 id (inode number of its directory); `null` on the
    /// overflow row.
    pub cgroup: Option<u64>,
    /// The overflow row: cgroups that did not fit in the monitor's table.
    pub other: bool,
    /// Path below the cgroup2 root (`/` for the root); `null` when the id
    /// was not found (the group is gone, or cgroup2 is not mounted).
    pub path: Option<String>,
    /// What the path says the group is (`container docker 0123456789ab`,
    /// `systemd ssh.service`, `root`); `null` when it says nothing.
    pub label: Option<String>,
    /// Counters and rates.
    #[serde(flatten)]
    pub counts: JsonCounts,
    /// Page allocations, `null` when not tracked.
    pub page_allocs: Option<u64>,
}

/// A call-site row.
#[derive(Debug, Serialize)]
pub struct JsonCallsite {
    /// The call site, `0x…`; `null` on the overflow row and when the reader
    /// may not see kernel addresses.
    pub call_site: Option<String>,
    /// The call site symbolized by the kernel (`%pS`); `null` on the
    /// overflow row.
    pub caller: Option<String>,
    /// The overflow row: call sites that did not fit in the monitor's table.
    pub other: bool,
    /// Allocations made there.
    pub allocs: u64,
    /// Frees of objects allocated there.
    pub frees: u64,
    /// Bytes allocated there.
    pub bytes: u64,
    /// Bytes allocated there and not freed.
    pub outstanding: u64,
    /// Objects allocated there and not freed.
    pub objects: u64,
    /// Age of the oldest of those objects, nanoseconds (0: none).
    pub oldest_age_ns: u64,
}

/// One stats sample: a line of `kmlink stats --json`.
#[derive(Debug, Serialize)]
pub struct JsonStats {
    /// Always [`STATS_FORMAT`].
    pub format: &'static str,
    /// 1-based sample number (with `--interval/--count`).
    pub sample: u64,
    /// Seconds since the previous sample; `null` on the first.
    pub interval_s: Option<f64>,
    /// Whether the counters were cleared since the previous sample.
    pub reset: bool,
    /// Kernel release of the running kernel (from the monitor, else uname).
    pub kernel_release: Option<String>,
    /// The monitor table, `null` when the module does not write one.
    pub monitor: Option<JsonMonitor>,
    /// The totals table.
    pub totals: Option<JsonTotals>,
    /// Dropped-event counters by reason.
    pub dropped: Option<BTreeMap<String, u64>>,
    /// Allocation size histogram, `null` when the module does not write one.
    pub histogram: Option<Vec<JsonBucket>>,
    /// Per process, in the order asked for.
    pub processes: Vec<JsonProcess>,
    /// Per cache, in the order asked for.
    pub caches: Vec<JsonCache>,
    /// Per cgroup, in the monitor's order (paths: [`resolve_cgroups`]).
    pub cgroups: Vec<JsonCgroup>,
    /// Per allocating call site, most outstanding bytes first.
    pub callsites: Vec<JsonCallsite>,
}

/// Builds a sample from a view and the rows selected from it.
pub fn stats_json(
    view: &View,
    sample: u64,
    kernel_release: Option<String>,
    processes: &[ViewRow<ProcessKey>],
    caches: &[ViewRow<CacheKey>],
) -> JsonStats {
    let s = &view.stats;
    JsonStats {
        format: STATS_FORMAT,
        sample,
        interval_s: view.interval_s.map(round3),
        reset: view.reset,
        kernel_release,
        monitor: s.monitor.as_ref().map(|m| JsonMonitor {
            backend: m.backend.clone(),
            uptime_ns: m.uptime_ns,
            paused: m.paused,
            release: m.release.clone(),
            ring_capacity: m.ring_capacity,
            other: m.other.clone(),
        }),
        totals: s.totals.map(|t| JsonTotals {
            events: t.events,
            allocs: t.allocs,
            frees: t.frees,
            bytes: t.bytes,
            bytes_req: t.bytes_req,
        }),
        dropped: s.dropped.clone(),
        histogram: s.histogram.as_ref().map(|h| {
            h.iter()
                .map(|b| JsonBucket {
                    le_bytes: b.le_bytes,
                    count: b.count,
                })
                .collect()
        }),
        processes: processes
            .iter()
            .map(|r| JsonProcess {
                pid: r.key.pid,
                comm: r.key.comm.lossy(),
                comm_escaped: r.key.comm.wire(),
                other: r.key.is_other(),
                counts: JsonCounts::new(&r.counts, r.rate.as_ref()),
            })
            .collect(),
        caches: caches
            .iter()
            .map(|r| JsonCache {
                cache: match &r.key {
                    CacheKey::Named(n) => Some(n.lossy()),
                    _ => None,
                },
                cache_escaped: r.key.wire(),
                other: matches!(r.key, CacheKey::Other),
                counts: JsonCounts::new(&r.counts, r.rate.as_ref()),
            })
            .collect(),
        cgroups: cgroups_json(s),
        callsites: callsites_json(s),
    }
}

fn cgroups_json(s: &Stats) -> Vec<JsonCgroup> {
    s.cgroups
        .iter()
        .map(|r| JsonCgroup {
            cgroup: match r.key {
                CgroupKey::Id(id) => Some(id),
                CgroupKey::Other => None,
            },
            other: r.key == CgroupKey::Other,
            path: None,
            label: None,
            counts: JsonCounts::new(&r.counts, None),
            page_allocs: r.counts.pages.map(|p| p.allocs),
        })
        .collect()
}

fn callsites_json(s: &Stats) -> Vec<JsonCallsite> {
    let mut rows: Vec<&crate::stats::SiteRow> = s.callsites.iter().collect();
    rows.sort_by(|a, b| {
        b.outstanding
            .cmp(&a.outstanding)
            .then(b.allocs.cmp(&a.allocs))
    });
    rows.into_iter()
        .map(|r| {
            let (call_site, caller) = match &r.key {
                SiteKey::Site { addr, caller } => {
                    (addr.map(|a| format!("{a:#x}")), Some(caller.clone()))
                }
                SiteKey::Other => (None, None),
            };
            JsonCallsite {
                call_site,
                caller,
                other: r.key == SiteKey::Other,
                allocs: r.allocs,
                frees: r.frees,
                bytes: r.bytes,
                outstanding: r.outstanding,
                objects: r.objects,
                oldest_age_ns: r.oldest_age_ns,
            }
        })
        .collect()
}

/// Fills the cgroup rows' `path` and `label` from a walk of the cgroup2
/// hierarchy.
pub fn resolve_cgroups(doc: &mut JsonStats, paths: &CgroupPaths) {
    for c in &mut doc.cgroups {
        if let Some(p) = c.cgroup.and_then(|id| paths.path(id)) {
            c.label = label(p);
            c.path = Some(p.to_string());
        }
    }
}

/// One event: a line of `kmlink events --json`.
#[derive(Debug, Serialize)]
pub struct JsonEvent {
    /// Monotonic nanoseconds.
    pub time_ns: u64,
    /// CPU.
    pub cpu: Option<u32>,
    /// Thread group id.
    pub pid: Option<u32>,
    /// Thread id.
    pub tid: Option<u32>,
    /// Comm, unescaped (lossy UTF-8).
    pub comm: Option<String>,
    /// Event kind.
    pub event: String,
    /// Bytes requested.
    pub bytes_req: Option<u64>,
    /// Bytes allocated.
    pub bytes_alloc: Option<u64>,
    /// Cache name, unescaped.
    pub cache: Option<String>,
    /// GFP flags, `0x…`.
    pub gfp: Option<String>,
    /// Caller address, `0x…`.
    pub call_site: Option<String>,
    /// Object address, `0x…`.
    pub ptr: Option<String>,
    /// Page order.
    pub order: Option<u32>,
}

/// The JSON form of an event.
pub fn event_json(e: &Event) -> JsonEvent {
    let hex = |v: Option<u64>| v.map(|v| format!("{v:#x}"));
    JsonEvent {
        time_ns: e.time_ns,
        cpu: e.cpu,
        pid: e.pid,
        tid: e.tid,
        comm: e.comm.as_ref().map(|n| n.lossy()),
        event: e.event.as_str().to_string(),
        bytes_req: e.bytes_req,
        bytes_alloc: e.bytes_alloc,
        cache: e.cache.as_ref().map(|n| n.lossy()),
        gfp: hex(e.gfp),
        call_site: hex(e.call_site),
        ptr: hex(e.ptr),
        order: e.order,
    }
}
