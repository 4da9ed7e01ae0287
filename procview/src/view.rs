//! Rates between two snapshots, and the rows people look at: sorted and
//! filtered.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use crate::stats::{CacheKey, CgroupKey, Counters, ProcessKey, Stats};

/// Per-second rates of one row over the interval between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Allocations per second.
    pub allocs_per_s: f64,
    /// Frees per second.
    pub frees_per_s: f64,
    /// Bytes allocated per second.
    pub bytes_per_s: f64,
}

/// A row with its cumulative counters and, from the second snapshot on, rates.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRow<K> {
    /// Process or cache.
    pub key: K,
    /// Cumulative counters.
    pub counts: Counters,
    /// Rates since the previous snapshot (`None` on the first).
    pub rate: Option<Rate>,
}

/// A dropped-event counter with its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRow {
    /// Why (`process_table_full`, `ring_full`, …).
    pub reason: String,
    /// Cumulative count.
    pub count: u64,
    /// Per second since the previous snapshot.
    pub per_s: Option<f64>,
}

/// One refresh: the snapshot and what changed since the previous one.
#[derive(Debug, Clone)]
pub struct View {
    /// The snapshot itself.
    pub stats: Stats,
    /// Seconds between the previous snapshot and this one, when rates exist.
    pub interval_s: Option<f64>,
    /// Whether the counters went backwards since the previous snapshot (the
    /// monitor was cleared): rates then count from zero.
    pub reset: bool,
    /// Per process.
    pub processes: Vec<ViewRow<ProcessKey>>,
    /// Per cache.
    pub caches: Vec<ViewRow<CacheKey>>,
    /// Per cgroup (empty when the monitor writes no cgroup table).
    pub cgroups: Vec<ViewRow<CgroupKey>>,
    /// Dropped-event counters.
    pub dropped: Vec<DropRow>,
}

fn delta(cur: u64, prev: u64) -> u64 {
    // A counter that went backwards was cleared: all of `cur` is new.
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

fn rate(cur: &Counters, prev: Option<&Counters>, secs: f64) -> Rate {
    let zero = Counters::default();
    let prev = prev.unwrap_or(&zero);
    Rate {
        allocs_per_s: delta(cur.allocs, prev.allocs) as f64 / secs,
        frees_per_s: delta(cur.frees, prev.frees) as f64 / secs,
        bytes_per_s: delta(cur.bytes, prev.bytes) as f64 / secs,
    }
}

impl View {
    /// The view of `cur` alone: cumulative counters, no rates.
    pub fn first(cur: Stats) -> Self {
        Self::between(None, cur, None)
    }

    /// The view of `cur` with rates since `prev`. The interval is the
    /// difference of the monitor's `uptime_ns` when both snapshots have it
    /// (exact, immune to scheduling delays of the reader), else `wall`.
    pub fn between(prev: Option<&Stats>, cur: Stats, wall: Option<Duration>) -> Self {
        let interval_s = prev.and_then(|p| {
            let up = p
                .monitor
                .as_ref()
                .and_then(|m| m.uptime_ns)
                .zip(cur.monitor.as_ref().and_then(|m| m.uptime_ns))
                .filter(|(a, b)| b > a)
                .map(|(a, b)| (b - a) as f64 / 1e9);
            up.or_else(|| wall.map(|w| w.as_secs_f64()).filter(|&s| s > 0.0))
        });
        let reset = match (prev.and_then(|p| p.totals), cur.totals) {
            (Some(p), Some(c)) => c.allocs < p.allocs || c.frees < p.frees || c.events < p.events,
            _ => false,
        };
        let prev = if reset { None } else { prev };
        let rated = interval_s.is_some();
        let secs = interval_s.unwrap_or(1.0);

        let processes = cur
            .processes
            .iter()
            .map(|r| ViewRow {
                key: r.key.clone(),
                counts: r.counts,
                rate: rated.then(|| {
                    let p = prev.and_then(|p| p.processes.iter().find(|q| q.key == r.key));
                    rate(&r.counts, p.map(|q| &q.counts), secs)
                }),
            })
            .collect();
        let caches = cur
            .caches
            .iter()
            .map(|r| ViewRow {
                key: r.key.clone(),
                counts: r.counts,
                rate: rated.then(|| {
                    let p = prev.and_then(|p| p.caches.iter().find(|q| q.key == r.key));
                    rate(&r.counts, p.map(|q| &q.counts), secs)
                }),
            })
            .collect();
        let cgroups = cur
            .cgroups
            .iter()
            .map(|r| ViewRow {
                key: r.key,
                counts: r.counts,
                rate: rated.then(|| {
                    let p = prev.and_then(|p| p.cgroups.iter().find(|q| q.key == r.key));
                    rate(&r.counts, p.map(|q| &q.counts), secs)
                }),
            })
            .collect();
        let dropped = cur
            .dropped
            .iter()
            .flatten()
            .map(|(reason, &count)| {
                let before = prev
                    .and_then(|p| p.dropped.as_ref())
                    .and_then(|d| d.get(reason))
                    .copied()
                    .unwrap_or(0);
                DropRow {
                    reason: reason.clone(),
                    count,
                    per_s: rated.then(|| delta(count, before) as f64 / secs),
                }
            })
            .collect();
        View {
            stats: cur,
            interval_s,
            reset,
            processes,
            caches,
            cgroups,
            dropped,
        }
    }
}

/// A column to sort by. Rate columns fall back to (and break ties by) the
/// matching cumulative counter, so the first refresh, which has no rates, is
/// ordered by totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Process id (caches: by name).
    Pid,
    /// Comm or cache name.
    Name,
    /// Allocations per second.
    AllocRate,
    /// Frees per second.
    FreeRate,
    /// Bytes allocated per second.
    ByteRate,
    /// Outstanding bytes.
    Outstanding,
    /// Allocations (cumulative).
    Allocs,
    /// Frees (cumulative).
    Frees,
    /// Bytes allocated (cumulative).
    Bytes,
    /// Bytes requested (cumulative).
    BytesReq,
}

impl SortKey {
    /// Every key, in the order of the columns of `kmlink top`.
    pub const ALL: [SortKey; 10] = [
        SortKey::Pid,
        SortKey::Name,
        SortKey::AllocRate,
        SortKey::FreeRate,
        SortKey::ByteRate,
        SortKey::Outstanding,
        SortKey::Allocs,
        SortKey::Frees,
        SortKey::Bytes,
        SortKey::BytesReq,
    ];

    /// The name accepted by `--sort` (and shown in `--help`).
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Pid => "pid",
            SortKey::Name => "name",
            SortKey::AllocRate => "allocs/s",
            SortKey::FreeRate => "frees/s",
            SortKey::ByteRate => "bytes/s",
            SortKey::Outstanding => "outstanding",
            SortKey::Allocs => "allocs",
            SortKey::Frees => "frees",
            SortKey::Bytes => "bytes",
            SortKey::BytesReq => "bytes_req",
        }
    }

    /// Parses a `--sort` value: a name above, or `comm`, `cache`,
    /// `alloc_rate`, `free_rate`, `byte_rate`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        let found = SortKey::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .or(match s.as_str() {
                "comm" | "cache" => Some(SortKey::Name),
                "alloc_rate" | "allocs_per_s" => Some(SortKey::AllocRate),
                "free_rate" | "frees_per_s" => Some(SortKey::FreeRate),
                "byte_rate" | "bytes_per_s" => Some(SortKey::ByteRate),
                _ => None,
            });
        found.ok_or_else(|| {
            let names: Vec<&str> = SortKey::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown sort column {s:?}; choose one of: {}",
                names.join(", ")
            )
        })
    }

    /// Whether larger values come first by default (numbers: yes; pid and
    /// name: no).
    pub fn descending(self) -> bool {
        !matches!(self, SortKey::Pid | SortKey::Name)
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a row offers to sorting and filtering.
pub trait RowKey {
    /// Sort/match name (display form).
    fn name(&self) -> String;
    /// Numeric id, if any (pid).
    fn id(&self) -> Option<u32>;
    /// Whether this is an overflow row (kept last when sorting by name/pid).
    fn is_other(&self) -> bool;
}

impl RowKey for ProcessKey {
    fn name(&self) -> String {
        self.comm.display()
    }
    fn id(&self) -> Option<u32> {
        self.pid
    }
    fn is_other(&self) -> bool {
        self.pid.is_none()
    }
}

impl RowKey for CacheKey {
    fn name(&self) -> String {
        self.display()
    }
    fn id(&self) -> Option<u32> {
        None
    }
    fn is_other(&self) -> bool {
        matches!(self, CacheKey::Other)
    }
}

impl RowKey for CgroupKey {
    fn name(&self) -> String {
        match self {
            CgroupKey::Id(id) => id.to_string(),
            CgroupKey::Other => "(other)".to_string(),
        }
    }
    fn id(&self) -> Option<u32> {
        None
    }
    fn is_other(&self) -> bool {
        matches!(self, CgroupKey::Other)
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

fn by_key<K: RowKey>(a: &ViewRow<K>, b: &ViewRow<K>, key: SortKey) -> Ordering {
    let r = |v: &ViewRow<K>, f: fn(&Rate) -> f64| v.rate.as_ref().map(f).unwrap_or(0.0);
    match key {
        SortKey::Pid => a
            .key
            .is_other()
            .cmp(&b.key.is_other())
            .then(a.key.id().cmp(&b.key.id()))
            .then_with(|| a.key.name().cmp(&b.key.name())),
        SortKey::Name => a
            .key
            .is_other()
            .cmp(&b.key.is_other())
            .then_with(|| a.key.name().cmp(&b.key.name()))
            .then(a.key.id().cmp(&b.key.id())),
        SortKey::AllocRate => cmp_f64(r(a, |x| x.allocs_per_s), r(b, |x| x.allocs_per_s))
            .then(a.counts.allocs.cmp(&b.counts.allocs)),
        SortKey::FreeRate => cmp_f64(r(a, |x| x.frees_per_s), r(b, |x| x.frees_per_s))
            .then(a.counts.frees.cmp(&b.counts.frees)),
        SortKey::ByteRate => cmp_f64(r(a, |x| x.bytes_per_s), r(b, |x| x.bytes_per_s))
            .then(a.counts.bytes.cmp(&b.counts.bytes)),
        SortKey::Outstanding => a
            .counts
            .outstanding
            .cmp(&b.counts.outstanding)
            .then(a.counts.bytes.cmp(&b.counts.bytes)),
        SortKey::Allocs => a.counts.allocs.cmp(&b.counts.allocs),
        SortKey::Frees => a.counts.frees.cmp(&b.counts.frees),
        SortKey::Bytes => a.counts.bytes.cmp(&b.counts.bytes),
        SortKey::BytesReq => a.counts.bytes_req.cmp(&b.counts.bytes_req),
    }
}

/// Sorts rows by `key` (largest first for numbers, unless `reverse`); ties
/// are broken by name then pid so the order is stable across refreshes.
pub fn sort_rows<K: RowKey>(rows: &mut [ViewRow<K>], key: SortKey, reverse: bool) {
    rows.sort_by(|a, b| {
        let primary = by_key(a, b, key);
        let primary = if key.descending() != reverse {
            primary.reverse()
        } else {
            primary
        };
        primary
            .then_with(|| a.key.name().cmp(&b.key.name()))
            .then(a.key.id().cmp(&b.key.id()))
    });
}

/// A filter typed by the user: `TEXT` matches process comms, pids and cache
/// names; `comm:TEXT` or `cache:TEXT` restrict it to one table (the other is
/// then shown whole). Case-insensitive substring match on the display form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    comm: Option<String>,
    cache: Option<String>,
}

impl Filter {
    /// Parses what the user typed (empty: no filter).
    pub fn parse(text: &str) -> Self {
        let t = text.trim();
        if t.is_empty() {
            Filter::default()
        } else if let Some(c) = t.strip_prefix("comm:") {
            Filter {
                comm: Some(c.to_string()),
                cache: None,
            }
        } else if let Some(c) = t.strip_prefix("cache:") {
            Filter {
                comm: None,
                cache: Some(c.to_string()),
            }
        } else {
            Filter {
                comm: Some(t.to_string()),
                cache: Some(t.to_string()),
            }
        }
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.comm.is_none() && self.cache.is_none()
    }

    /// Whether a process row passes.
    pub fn keep_process(&self, key: &ProcessKey) -> bool {
        match &self.comm {
            None => true,
            Some(t) => key.comm.contains(t) || key.pid.is_some_and(|p| p.to_string() == *t),
        }
    }

    /// Whether a cache row passes.
    pub fn keep_cache(&self, key: &CacheKey) -> bool {
        match &self.cache {
            None => true,
            Some(t) => key
                .display()
                .to_ascii_lowercase()
                .contains(&t.to_ascii_lowercase()),
        }
    }
}

/// The rows of `view` that pass `filter`, sorted, at most `top` of each.
pub fn select(
    view: &View,
    filter: &Filter,
    key: SortKey,
    reverse: bool,
    top: Option<usize>,
) -> (Vec<ViewRow<ProcessKey>>, Vec<ViewRow<CacheKey>>) {
    let mut procs: Vec<_> = view
        .processes
        .iter()
        .filter(|r| filter.keep_process(&r.key))
        .cloned()
        .collect();
    let mut caches: Vec<_> = view
        .caches
        .iter()
        .filter(|r| filter.keep_cache(&r.key))
        .cloned()
        .collect();
    sort_rows(&mut procs, key, reverse);
    sort_rows(&mut caches, key, reverse);
    if let Some(n) = top {
        procs.truncate(n);
        caches.truncate(n);
    }
    (procs, caches)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::parse_stats;

    fn snap(uptime: u64, rows: &str) -> Stats {
        parse_stats(&format!(
            "# process: pid comm allocs frees bytes outstanding\n{rows}\n\
             # totals: events allocs frees bytes\n0 0 0 0\n\
             # monitor: key value\nuptime_ns {uptime}\n"
        ))
        .unwrap()
    }

    #[test]
    fn rates_use_monitor_uptime_and_handle_new_rows() {
        let a = snap(1_000_000_000, "1 a 100 10 1000 -\n2 b 5 0 50 -");
        let b = snap(
            3_000_000_000,
            "1 a 300 10 5000 -\n2 b 5 0 50 -\n3 c 40 4 400 -",
        );
        let v = View::between(Some(&a), b, Some(Duration::from_secs(99)));
        assert_eq!(v.interval_s, Some(2.0));
        let r = |i: usize| v.processes[i].rate.unwrap();
        assert_eq!(r(0).allocs_per_s, 100.0);
        assert_eq!(r(0).bytes_per_s, 2000.0);
        assert_eq!(r(1), Rate::default());
        assert_eq!(r(2).allocs_per_s, 20.0);
        assert_eq!(r(2).frees_per_s, 2.0);
    }

    #[test]
    fn first_view_has_no_rates_and_wall_clock_is_the_fallback() {
        let a = parse_stats("# process: pid comm allocs frees bytes\n1 a 10 0 0\n").unwrap();
        let v = View::first(a.clone());
        assert_eq!(v.interval_s, None);
        assert!(v.processes[0].rate.is_none());
        let b = parse_stats("# process: pid comm allocs frees bytes\n1 a 30 0 0\n").unwrap();
        let v = View::between(Some(&a), b.clone(), Some(Duration::from_millis(500)));
        assert_eq!(v.processes[0].rate.unwrap().allocs_per_s, 40.0);
        // Without any clock there are no rates.
        assert!(View::between(Some(&a), b, None).processes[0].rate.is_none());
    }

    #[test]
    fn clear_resets_rates_instead_of_going_negative() {
        let a = snap(1_000_000_000, "1 a 100 10 1000 -");
        let mut b = snap(2_000_000_000, "1 a 7 1 70 -");
        b.totals = Some(crate::stats::Totals {
            allocs: 7,
            ..Default::default()
        });
        let mut a2 = a.clone();
        a2.totals = Some(crate::stats::Totals {
            allocs: 100,
            ..Default::default()
        });
        let v = View::between(Some(&a2), b, None);
        assert!(v.reset);
        assert_eq!(v.processes[0].rate.unwrap().allocs_per_s, 7.0);
    }

    #[test]
    fn sorting_by_rate_then_totals_and_by_name() {
        let a = snap(
            0,
            "1 old 1000 0 0 -\n2 busy 10 0 0 -\n3 mid 20 0 0 -\n- (other) 5000 0 0 -",
        );
        let b = snap(
            1_000_000_000,
            "1 old 1000 0 0 -\n2 busy 510 0 0 -\n3 mid 20 0 0 -\n- (other) 5000 0 0 -",
        );
        let v = View::between(Some(&a), b, None);
        let names = |rows: &[ViewRow<ProcessKey>]| -> Vec<String> {
            rows.iter().map(|r| r.key.name()).collect()
        };
        let (p, _) = select(&v, &Filter::default(), SortKey::AllocRate, false, None);
        // busy has the only non-zero rate; the rest tie at 0/s and go by totals.
        assert_eq!(names(&p), ["busy", "(other)", "old", "mid"]);
        let (p, _) = select(&v, &Filter::default(), SortKey::Name, false, None);
        assert_eq!(names(&p), ["busy", "mid", "old", "(other)"]);
        let (p, _) = select(&v, &Filter::default(), SortKey::Pid, true, Some(2));
        assert_eq!(names(&p), ["(other)", "mid"]);
        let (p, _) = select(&v, &Filter::default(), SortKey::Allocs, true, None);
        assert_eq!(names(&p), ["mid", "busy", "old", "(other)"]);
    }

    #[test]
    fn filters() {
        let s = parse_stats(
            "# process: pid comm allocs frees bytes\n1 Find 1 0 0\n22 sh 1 0 0\n\n\
             # cache: cache allocs frees bytes\ndentry 1 0 0\n- 1 0 0\n",
        )
        .unwrap();
        let v = View::first(s);
        let count = |f: &str| {
            let (p, c) = select(&v, &Filter::parse(f), SortKey::Name, false, None);
            (p.len(), c.len())
        };
        assert_eq!(count(""), (2, 2));
        assert_eq!(count("find"), (1, 0));
        assert_eq!(count("22"), (1, 0));
        assert_eq!(count("comm:sh"), (1, 2));
        assert_eq!(count("cache:dent"), (2, 1));
        assert_eq!(count("kmalloc"), (0, 1));
    }

    #[test]
    fn sort_key_names() {
        for k in SortKey::ALL {
            assert_eq!(SortKey::parse(k.name()), Ok(k));
        }
        assert_eq!(SortKey::parse("COMM"), Ok(SortKey::Name));
        let err = SortKey::parse("zz").unwrap_err();
        assert!(err.contains("bytes/s"), "{err}");
    }
}
