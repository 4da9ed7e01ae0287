//! The metric families of one snapshot, through `prometheus-client`'s
//! collector interface (names, units, `_total` suffixes, label escaping
//! and both text formats are the crate's).
//!
//! Tables of counters (`process`, `cache`, and whatever per-row table the
//! monitor grows: call sites, cgroups) all go through [`counters_table`]:
//! a table is a name and [`TableRow`]s (a label set and the row's
//! [`Counters`]), so adding one is a call in [`StatsCollector::encode`].

use std::fmt;

use kmlink_procview::cgroup::CgroupPaths;
use kmlink_procview::stats::{Bucket, CacheKey, CgroupKey, MonitorInfo, SiteKey};
use kmlink_procview::{Counters, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::{Format, Options};

/// Label names and values of one series.
pub type LabelSet = Vec<(String, String)>;

/// One row of a counters table: its labels and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRow {
    /// What identifies the row (`pid`/`comm`, `cache`, …).
    pub labels: LabelSet,
    /// The row's counters.
    pub counts: Counters,
}

pub(crate) fn render(
    stats: Option<Stats>,
    paths: &CgroupPaths,
    options: Options,
    format: Format,
) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("kmlink");
    registry.register_collector(Box::new(StatsCollector {
        stats,
        paths: paths.clone(),
        options,
    }));
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct StatsCollector {
    stats: Option<Stats>,
    paths: CgroupPaths,
    options: Options,
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        gauge(
            &mut enc,
            "monitor_loaded",
            "1 when the kmlink monitor is loaded (/proc/kmlink exists), else 0.",
            None,
            u64::from(self.stats.is_some()),
        )?;
        let Some(stats) = &self.stats else {
            return Ok(());
        };
        if let Some(m) = &stats.monitor {
            monitor(&mut enc, m)?;
        }
        if let Some(t) = &stats.totals {
            if let Some(events) = t.events {
                counter(
                    &mut enc,
                    "events",
                    "Events the monitor handled (all kinds, page events included).",
                    None,
                    events,
                )?;
            }
            let all = TableRow {
                labels: Vec::new(),
                counts: Counters {
                    allocs: t.allocs,
                    frees: t.frees,
                    bytes: t.bytes,
                    outstanding: t.outstanding,
                    bytes_req: t.bytes_req,
                    pages: t.pages,
                },
            };
            counters_table(&mut enc, None, "in total", std::slice::from_ref(&all))?;
        }
        if let Some(dropped) = &stats.dropped {
            let rows: Vec<(LabelSet, u64)> = dropped
                .iter()
                .map(|(reason, n)| (vec![("reason".to_string(), reason.clone())], *n))
                .collect();
            family(
                &mut enc,
                "dropped",
                "What the monitor could not account for in full, by reason (the stats \
                 file's `dropped` table: *_table_full rows went to an (other) row, \
                 ring_overwritten events left the event ring, kprobe_missed probes the \
                 kernel missed).",
                None,
                MetricType::Counter,
                &rows,
            )?;
        }
        if let (Some(h), Some(t)) = (&stats.histogram, &stats.totals) {
            histogram(&mut enc, h, t.bytes)?;
        }
        counters_table(
            &mut enc,
            Some("cache"),
            "per slab cache",
            &cache_rows(stats),
        )?;
        let (rows, omitted) = process_rows(stats, self.options.top_processes);
        gauge(
            &mut enc,
            "process_rows",
            "Rows of the monitor's process table (each a process id and comm).",
            None,
            stats.processes.len() as u64,
        )?;
        gauge(
            &mut enc,
            "process_rows_omitted",
            "Process rows not exported (beyond the exporter's --top-processes, by bytes).",
            None,
            omitted as u64,
        )?;
        counters_table(&mut enc, Some("process"), "per process", &rows)?;
        counters_table(
            &mut enc,
            Some("cgroup"),
            "per cgroup v2 (tasks in it at the event)",
            &cgroup_rows(stats, &self.paths),
        )?;
        callsites(&mut enc, stats, self.options.top_callsites)
    }
}

fn cgroup_rows(stats: &Stats, paths: &CgroupPaths) -> Vec<TableRow> {
    stats
        .cgroups
        .iter()
        .map(|g| {
            let (id, path) = match g.key {
                CgroupKey::Id(id) => (id.to_string(), paths.path(id).unwrap_or("").to_string()),
                CgroupKey::Other => ("other".to_string(), "(other)".to_string()),
            };
            TableRow {
                labels: vec![("cgroup_id".to_string(), id), ("cgroup".to_string(), path)],
                counts: g.counts,
            }
        })
        .collect()
}

/// The call-site families: the `top` sites by outstanding bytes (ties by
/// allocations, then caller) and the monitor's `(other)` row, labelled by
/// the kernel's `%pS` of the call site (`caller`); how many were left out.
fn callsites(enc: &mut DescriptorEncoder, stats: &Stats, top: usize) -> fmt::Result {
    if stats.callsites.is_empty() {
        return Ok(());
    }
    let mut sites: Vec<_> = stats
        .callsites
        .iter()
        .filter(|s| s.key != SiteKey::Other)
        .collect();
    sites.sort_by(|a, b| {
        (b.outstanding, b.allocs)
            .cmp(&(a.outstanding, a.allocs))
            .then_with(|| a.key.cmp(&b.key))
    });
    let omitted = sites.len().saturating_sub(top);
    sites.truncate(top);
    sites.extend(stats.callsites.iter().filter(|s| s.key == SiteKey::Other));
    let label = |s: &kmlink_procview::stats::SiteRow| {
        vec![("caller".to_string(), s.key.display().to_string())]
    };
    let rows: Vec<TableRow> = sites
        .iter()
        .map(|s| TableRow {
            labels: label(s),
            counts: Counters {
                allocs: s.allocs,
                frees: s.frees,
                bytes: s.bytes,
                outstanding: Some(s.outstanding),
                bytes_req: None,
                pages: None,
            },
        })
        .collect();
    gauge(
        enc,
        "callsite_rows_omitted",
        "Call-site rows not exported (beyond the exporter's --top-callsites, by outstanding bytes).",
        None,
        omitted as u64,
    )?;
    counters_table(enc, Some("callsite"), "per allocating call site", &rows)?;
    let objects: Vec<(LabelSet, u64)> = sites.iter().map(|s| (label(s), s.objects)).collect();
    family(
        enc,
        "callsite_outstanding_objects",
        "Objects allocated at the call site and not yet freed.",
        None,
        MetricType::Gauge,
        &objects,
    )?;
    let ages: Vec<(LabelSet, u64)> = sites
        .iter()
        .map(|s| (label(s), s.oldest_age_ns / 1_000_000_000))
        .collect();
    family(
        enc,
        "callsite_oldest_outstanding_age",
        "Age of the oldest object allocated at the call site and not yet freed (whole seconds; 0: none).",
        Some(&Unit::Seconds),
        MetricType::Gauge,
        &ages,
    )
}

fn monitor(enc: &mut DescriptorEncoder, m: &MonitorInfo) -> fmt::Result {
    let info: LabelSet = [("backend", &m.backend), ("release", &m.release)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect();
    family(
        enc,
        "monitor",
        "The loaded monitor: how it hooks events (backend: tracepoint or kprobe).",
        None,
        MetricType::Info,
        &[(info, 1)],
    )?;
    if let Some(p) = m.paused {
        gauge(
            enc,
            "monitor_paused",
            "1 while recording is paused (/proc/kmlink/control).",
            None,
            u64::from(p),
        )?;
    }
    if let Some(ns) = m.uptime_ns {
        let desc = enc.encode_descriptor(
            "monitor_uptime",
            "Time since the monitor was loaded.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        encode_gauge_f64(desc, ns as f64 / 1e9)?;
    }
    // The monitor's other numeric facts (generation, rings, ring_capacity,
    // ptr_capacity, shards, kprobes …) as one gauge family: new keys appear
    // without an exporter change.
    let mut params: Vec<(LabelSet, u64)> = Vec::new();
    if let Some(c) = m.ring_capacity {
        params.push((vec![("name".into(), "ring_capacity".into())], c));
    }
    for (k, v) in &m.other {
        if let Ok(n) = v.parse::<u64>() {
            params.push((vec![("name".into(), k.clone())], n));
        }
    }
    family(
        enc,
        "monitor_parameter",
        "The monitor's numeric settings and state from the stats file's `monitor` table \
         (generation counts clears; capacities are fixed at load).",
        None,
        MetricType::Gauge,
        &params,
    )
}

fn encode_gauge_f64(mut desc: prometheus_client::encoding::MetricEncoder, v: f64) -> fmt::Result {
    desc.encode_gauge(&v)
}

fn histogram(enc: &mut DescriptorEncoder, h: &[Bucket], bytes: u64) -> fmt::Result {
    let mut count: u64 = 0;
    let mut buckets = Vec::with_capacity(h.len());
    for b in h {
        // Counts from a file: a sum that overflows is not a histogram.
        let Some(c) = count.checked_add(b.count) else {
            return Ok(());
        };
        count = c;
        buckets.push((b.le_bytes.map_or(f64::INFINITY, |le| le as f64), b.count));
    }
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        buckets.push((f64::INFINITY, 0));
    }
    let mut desc = enc.encode_descriptor(
        "allocation_size",
        "Allocations (kmalloc and kmem_cache families) by size allocated; the sum is \
         the bytes allocated in total.",
        Some(&Unit::Bytes),
        MetricType::Histogram,
    )?;
    desc.encode_histogram::<NoLabelSet>(bytes as f64, count, &buckets, None)
}

fn cache_rows(stats: &Stats) -> Vec<TableRow> {
    stats
        .caches
        .iter()
        .map(|c| TableRow {
            labels: vec![(
                "cache".to_string(),
                match &c.key {
                    CacheKey::Named(n) => n.lossy(),
                    other => other.display(),
                },
            )],
            counts: c.counts,
        })
        .collect()
}

/// The `top` largest process rows by bytes (ties by allocations, then
/// key), plus the monitor's `(other)` row; and how many were left out.
fn process_rows(stats: &Stats, top: usize) -> (Vec<TableRow>, usize) {
    let mut rows: Vec<_> = stats
        .processes
        .iter()
        .filter(|p| !p.key.is_other())
        .collect();
    rows.sort_by(|a, b| {
        (b.counts.bytes, b.counts.allocs)
            .cmp(&(a.counts.bytes, a.counts.allocs))
            .then_with(|| a.key.cmp(&b.key))
    });
    let omitted = rows.len().saturating_sub(top);
    rows.truncate(top);
    let label =
        |pid: String, comm: String| vec![("pid".to_string(), pid), ("comm".to_string(), comm)];
    let mut out: Vec<TableRow> = rows
        .into_iter()
        .map(|p| TableRow {
            labels: label(
                p.key.pid.map(|n| n.to_string()).unwrap_or_default(),
                p.key.comm.lossy(),
            ),
            counts: p.counts,
        })
        .collect();
    out.extend(
        stats
            .processes
            .iter()
            .filter(|p| p.key.is_other())
            .map(|p| TableRow {
                labels: label("other".to_string(), "(other)".to_string()),
                counts: p.counts,
            }),
    );
    (out, omitted)
}

/// Name (without the table), help, unit, type and samples of one family.
type FamilySpec = (
    &'static str,
    String,
    Option<Unit>,
    MetricType,
    Vec<(LabelSet, u64)>,
);

/// The families of one counters table: `kmlink_<table>_allocations_total`,
/// `…_frees_total`, `…_allocated_bytes_total`, `…_requested_bytes_total`,
/// `…_outstanding_bytes` and the page-allocator ones, each only when some
/// row has the column. `table` is `None` for the totals (no infix).
pub(crate) fn counters_table(
    enc: &mut DescriptorEncoder,
    table: Option<&str>,
    scope: &str,
    rows: &[TableRow],
) -> fmt::Result {
    let name = |base: &str| match table {
        Some(t) => format!("{t}_{base}"),
        None => base.to_string(),
    };
    let col = |f: &dyn Fn(&Counters) -> Option<u64>| -> Vec<(LabelSet, u64)> {
        rows.iter()
            .filter_map(|r| f(&r.counts).map(|v| (r.labels.clone(), v)))
            .collect()
    };
    let families: [FamilySpec; 8] = [
        (
            "allocations",
            format!("Allocations (kmalloc and kmem_cache families), {scope}."),
            None,
            MetricType::Counter,
            col(&|c| Some(c.allocs)),
        ),
        (
            "frees",
            format!("Frees (kfree and kmem_cache_free), {scope}."),
            None,
            MetricType::Counter,
            col(&|c| Some(c.frees)),
        ),
        (
            "allocated",
            format!("Bytes allocated (bytes_alloc of the events), {scope}."),
            Some(Unit::Bytes),
            MetricType::Counter,
            col(&|c| Some(c.bytes)),
        ),
        (
            "requested",
            format!("Bytes requested (bytes_req of the events), {scope}."),
            Some(Unit::Bytes),
            MetricType::Counter,
            col(&|c| c.bytes_req),
        ),
        (
            "outstanding",
            format!("Bytes allocated and not yet freed, {scope}."),
            Some(Unit::Bytes),
            MetricType::Gauge,
            col(&|c| c.outstanding),
        ),
        (
            "page_allocations",
            format!("Page-allocator allocations (mm_page_alloc), {scope}."),
            None,
            MetricType::Counter,
            col(&|c| c.pages.map(|p| p.allocs)),
        ),
        (
            "page_frees",
            format!("Page-allocator frees (mm_page_free), {scope}."),
            None,
            MetricType::Counter,
            col(&|c| c.pages.map(|p| p.frees)),
        ),
        (
            "page_allocated",
            format!("Bytes of the pages allocated, {scope}."),
            Some(Unit::Bytes),
            MetricType::Counter,
            col(&|c| c.pages.map(|p| p.bytes)),
        ),
    ];
    for (base, help, unit, kind, values) in families {
        if values.is_empty() {
            continue;
        }
        family(enc, &name(base), &help, unit.as_ref(), kind, &values)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        unit,
        MetricType::Counter,
        &[(Vec::new(), v)],
    )
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> fmt::Result {
    family(enc, name, help, unit, MetricType::Gauge, &[(Vec::new(), v)])
}

/// One family: a descriptor, then a sample per row (no labels: the bare
/// metric). Info rows are label sets whose value is ignored.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: &[(LabelSet, u64)],
) -> fmt::Result {
    let mut desc = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, v) in rows {
        if let MetricType::Info = kind {
            desc.encode_info(labels)?;
            continue;
        }
        if labels.is_empty() {
            encode_value(&mut desc, kind, *v)?;
        } else {
            let mut m = desc.encode_family(labels)?;
            encode_value(&mut m, kind, *v)?;
        }
    }
    Ok(())
}

fn encode_value(
    m: &mut prometheus_client::encoding::MetricEncoder,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, u64, u64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}
