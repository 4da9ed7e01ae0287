//! `/proc/kmlink/stats`: tables, each starting `# <table>: <col> <col> …`,
//! rows below, a blank line between tables.
//!
//! Parsing is tolerant where the format may grow (unknown tables and columns
//! are ignored, columns are found by name, every table is optional) and
//! strict where a line is simply wrong (a field count that does not match its
//! header, a number that is not one, a row outside any table): those are
//! errors naming the line.

use std::collections::BTreeMap;

use crate::name::Name;
use crate::table::{Columns, ParseError, Row};

/// Allocation counters of one row (process or cache), cumulative since the
/// monitor was loaded or last cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Allocations (kmalloc family + kmem_cache family).
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Bytes allocated (`bytes_alloc` of the events).
    pub bytes: u64,
    /// Bytes still allocated; `None` when the monitor does not track it (`-`).
    pub outstanding: Option<u64>,
    /// Bytes requested; `None` when absent.
    pub bytes_req: Option<u64>,
    /// Page-allocator counters (`page_allocs page_frees page_bytes`);
    /// `None` when the row has no such columns.
    pub pages: Option<PageCounters>,
}

/// Page-allocator counters of a row (`mm_page_alloc` / `mm_page_free`
/// events), cumulative like [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounters {
    /// Page allocations (of any order).
    pub allocs: u64,
    /// Page frees.
    pub frees: u64,
    /// Bytes of the pages allocated (`PAGE_SIZE << order`).
    pub bytes: u64,
}

impl PageCounters {
    fn add(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (None, None) => None,
            (a, b) => {
                let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
                Some(PageCounters {
                    allocs: a.allocs.saturating_add(b.allocs),
                    frees: a.frees.saturating_add(b.frees),
                    bytes: a.bytes.saturating_add(b.bytes),
                })
            }
        }
    }

    fn from_row(row: &Row<'_>) -> Result<Option<Self>, ParseError> {
        match (
            row.opt_num("page_allocs")?,
            row.opt_num("page_frees")?,
            row.opt_num("page_bytes")?,
        ) {
            (None, None, None) => Ok(None),
            (a, f, b) => Ok(Some(PageCounters {
                allocs: a.unwrap_or(0),
                frees: f.unwrap_or(0),
                bytes: b.unwrap_or(0),
            })),
        }
    }
}

impl Counters {
    /// Adds `other` (used when a key appears on two rows).
    pub fn add(&mut self, other: &Counters) {
        fn opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            }
        }
        self.allocs = self.allocs.saturating_add(other.allocs);
        self.frees = self.frees.saturating_add(other.frees);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.outstanding = opt(self.outstanding, other.outstanding);
        self.bytes_req = opt(self.bytes_req, other.bytes_req);
        self.pages = PageCounters::add(self.pages, other.pages);
    }

    fn from_row(row: &Row<'_>) -> Result<Self, ParseError> {
        Ok(Counters {
            allocs: row.num("allocs")?,
            frees: row.num("frees")?,
            bytes: row.num("bytes")?,
            outstanding: row.opt_count_signed("outstanding")?,
            bytes_req: row.opt_num("bytes_req")?,
            pages: PageCounters::from_row(row)?,
        })
    }
}

/// Which process a row counts: the thread group and its comm at the time of
/// the events (after exec the new comm starts a new row).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessKey {
    /// The tgid; `None` on the overflow row (`- (other)`).
    pub pid: Option<u32>,
    /// The comm.
    pub comm: Name,
}

impl ProcessKey {
    /// Whether this is the overflow row (events of processes that did not
    /// fit in the monitor's table).
    pub fn is_other(&self) -> bool {
        self.pid.is_none()
    }
}

/// One row of the `process` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// (pid, comm).
    pub key: ProcessKey,
    /// Its counters.
    pub counts: Counters,
}

/// Which slab cache a row counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CacheKey {
    /// `-`: kmalloc events, which carry no cache.
    Kmalloc,
    /// `(other)`: the overflow row.
    Other,
    /// A named cache.
    Named(Name),
}

impl CacheKey {
    fn parse(field: &str) -> Result<Self, crate::name::BadEscape> {
        Ok(match field {
            "-" => CacheKey::Kmalloc,
            "(other)" => CacheKey::Other,
            f => CacheKey::Named(Name::unescape(f)?),
        })
    }

    /// For people: the cache name, `(kmalloc)` or `(other)`.
    pub fn display(&self) -> String {
        match self {
            CacheKey::Kmalloc => "(kmalloc)".to_string(),
            CacheKey::Other => "(other)".to_string(),
            CacheKey::Named(n) => n.display(),
        }
    }

    /// As the monitor writes it: `-`, `(other)` or the escaped name.
    pub fn wire(&self) -> String {
        match self {
            CacheKey::Kmalloc => "-".to_string(),
            CacheKey::Other => "(other)".to_string(),
            CacheKey::Named(n) => n.wire(),
        }
    }
}

/// One row of the `cache` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    /// The cache.
    pub key: CacheKey,
    /// Its counters.
    pub counts: Counters,
}

/// Which cgroup a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CgroupKey {
    /// The cgroup v2 id: the inode number of the cgroup's directory.
    Id(u64),
    /// `(other)`: the overflow row (cgroups that did not fit in the table).
    Other,
}

/// One row of the `cgroup` table: events of tasks in that cgroup at the
/// time of the event (frees by the freeing task's cgroup; `outstanding`
/// belongs to the allocating cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRow {
    /// The cgroup.
    pub key: CgroupKey,
    /// Its counters (page-allocator ones in `counts.pages`).
    pub counts: Counters,
}

/// Which call site a row counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SiteKey {
    /// An allocating call site. `addr` is `None` when the monitor withholds
    /// addresses from the reader (no CAP_SYSLOG); `caller` is the kernel's
    /// `%pS` of it (`function+0xoff/0xsize [module]`).
    Site {
        /// The return address the allocator was called from.
        addr: Option<u64>,
        /// `%pS` of that address, as `/proc/kmlink/events` prints it.
        caller: String,
    },
    /// `(other)`: call sites that did not fit in the table.
    Other,
}

impl SiteKey {
    /// For people: the symbolized caller, or `(other)`.
    pub fn display(&self) -> &str {
        match self {
            SiteKey::Site { caller, .. } => caller,
            SiteKey::Other => "(other)",
        }
    }
}

/// One row of the `callsite` table. Frees and outstanding bytes belong to
/// the call site that allocated the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRow {
    /// The call site.
    pub key: SiteKey,
    /// Allocations made there (kmalloc and kmem_cache families).
    pub allocs: u64,
    /// Frees of objects allocated there (since load).
    pub frees: u64,
    /// Bytes allocated there (`bytes_alloc`).
    pub bytes: u64,
    /// Bytes allocated there and not yet freed.
    pub outstanding: u64,
    /// Objects allocated there and not yet freed (from the pointer table).
    pub objects: u64,
    /// Age of the oldest of those objects, in nanoseconds (0: none).
    pub oldest_age_ns: u64,
}

/// The `totals` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events seen (all kinds, including page events).
    pub events: Option<u64>,
    /// Allocations.
    pub allocs: u64,
    /// Frees.
    pub frees: u64,
    /// Bytes allocated.
    pub bytes: u64,
    /// Bytes requested.
    pub bytes_req: Option<u64>,
    /// Bytes still allocated; `None` when absent or not tracked (`-`).
    pub outstanding: Option<u64>,
    /// Page-allocator counters; `None` when absent.
    pub pages: Option<PageCounters>,
}

/// One bucket of the `histogram` table: allocations of at most `le_bytes`
/// (and more than the previous bucket's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Upper bound in bytes, `None` for `+Inf`.
    pub le_bytes: Option<u64>,
    /// Allocations in the bucket.
    pub count: u64,
}

/// The `monitor` table: facts about the loaded monitor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorInfo {
    /// How events are hooked (`tracepoint`, `kprobe`).
    pub backend: Option<String>,
    /// Nanoseconds since the monitor was loaded (same clock as event times).
    pub uptime_ns: Option<u64>,
    /// Whether recording is paused (`/proc/kmlink/control`).
    pub paused: Option<bool>,
    /// The kernel release the monitor was linked for.
    pub release: Option<String>,
    /// Capacity of the event ring (`/proc/kmlink/events` holds at most this).
    pub ring_capacity: Option<u64>,
    /// Keys this version does not know, as written.
    pub other: BTreeMap<String, String>,
}

/// A parsed `/proc/kmlink/stats`. Tables the file lacks are empty or `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per process, keys unique (duplicate rows summed), in file order.
    pub processes: Vec<ProcessRow>,
    /// Per cache, keys unique (duplicate rows summed), in file order.
    pub caches: Vec<CacheRow>,
    /// Per cgroup, in file order (empty when the monitor writes no such table).
    pub cgroups: Vec<CgroupRow>,
    /// Per allocating call site, in file order (empty when absent).
    pub callsites: Vec<SiteRow>,
    /// The `totals` table, if present.
    pub totals: Option<Totals>,
    /// The `dropped` table (reason → count), if present.
    pub dropped: Option<BTreeMap<String, u64>>,
    /// The `histogram` table, if present, in file order.
    pub histogram: Option<Vec<Bucket>>,
    /// The `monitor` table, if present.
    pub monitor: Option<MonitorInfo>,
}

impl Stats {
    /// Sum of all dropped counters (0 when the table is absent).
    pub fn dropped_total(&self) -> u64 {
        self.dropped
            .as_ref()
            .map(|d| d.values().fold(0u64, |a, &b| a.saturating_add(b)))
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy)]
enum Table {
    Process,
    Cache,
    Cgroup,
    Callsite,
    Totals,
    Dropped,
    Histogram,
    Monitor,
    /// A table this version does not know: rows are skipped.
    Unknown,
}

impl Table {
    fn from_name(name: &str) -> Self {
        match name {
            "process" => Table::Process,
            "cache" => Table::Cache,
            "cgroup" => Table::Cgroup,
            "callsite" => Table::Callsite,
            "totals" => Table::Totals,
            "dropped" => Table::Dropped,
            "histogram" => Table::Histogram,
            "monitor" => Table::Monitor,
            _ => Table::Unknown,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Table::Process => &["pid", "comm", "allocs", "frees", "bytes"],
            Table::Cache => &["cache", "allocs", "frees", "bytes"],
            Table::Cgroup => &["cgroup", "allocs", "frees", "bytes"],
            Table::Callsite => &[
                "call_site",
                "allocs",
                "frees",
                "bytes",
                "outstanding",
                "caller",
            ],
            Table::Totals => &["allocs", "frees", "bytes"],
            Table::Dropped => &["reason", "count"],
            Table::Histogram => &["le_bytes", "count"],
            Table::Monitor => &["key", "value"],
            Table::Unknown => &[],
        }
    }
}

/// Parses the text of `/proc/kmlink/stats`.
pub fn parse_stats(text: &str) -> Result<Stats, ParseError> {
    let mut stats = Stats::default();
    // Summing duplicate keys while keeping file order.
    let mut proc_at: BTreeMap<ProcessKey, usize> = BTreeMap::new();
    let mut cache_at: BTreeMap<CacheKey, usize> = BTreeMap::new();
    let mut current: Option<(Table, Columns)> = None;

    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim_end();
        if text.trim().is_empty() {
            current = None;
            continue;
        }
        if let Some(rest) = text.strip_prefix('#') {
            let Some((name, cols)) = rest.split_once(':') else {
                continue; // a comment
            };
            let table = Table::from_name(name.trim());
            let columns = Columns::new(cols.split_ascii_whitespace());
            if let Some(missing) = columns.missing(table.required()) {
                return Err(ParseError {
                    line,
                    text: text.to_string(),
                    reason: format!("the `{}` table has no `{missing}` column", name.trim()),
                });
            }
            match table {
                Table::Totals => stats.totals = stats.totals.or(Some(Totals::default())),
                Table::Dropped => stats.dropped = stats.dropped.take().or(Some(BTreeMap::new())),
                Table::Histogram => stats.histogram = stats.histogram.take().or(Some(Vec::new())),
                Table::Monitor => {
                    stats.monitor = stats.monitor.take().or(Some(MonitorInfo::default()))
                }
                _ => {}
            }
            current = Some((table, columns));
            continue;
        }
        let Some((table, columns)) = &current else {
            return Err(ParseError {
                line,
                text: text.to_string(),
                reason:
                    "a row outside any table (expected a `# <table>: <columns>` header before it)"
                        .to_string(),
            });
        };
        if let Table::Unknown = table {
            continue;
        }
        let row = if matches!(table, Table::Callsite) {
            Row::split_tail(line, text, columns)?
        } else {
            Row::split(line, text, columns)?
        };
        match table {
            Table::Process => {
                let pid = match row.field("pid")? {
                    "-" => None,
                    f => Some(f.parse::<u32>().map_err(|_| {
                        row.error(format!("column `pid` is {f:?}, not a process id or `-`"))
                    })?),
                };
                let comm = row.field("comm")?;
                let comm =
                    Name::unescape(comm).map_err(|e| row.error(format!("column `comm`: {e}")))?;
                let key = ProcessKey { pid, comm };
                let counts = Counters::from_row(&row)?;
                match proc_at.get(&key) {
                    Some(&at) => stats.processes[at].counts.add(&counts),
                    None => {
                        proc_at.insert(key.clone(), stats.processes.len());
                        stats.processes.push(ProcessRow { key, counts });
                    }
                }
            }
            Table::Cache => {
                let key = CacheKey::parse(row.field("cache")?)
                    .map_err(|e| row.error(format!("column `cache`: {e}")))?;
                let counts = Counters::from_row(&row)?;
                match cache_at.get(&key) {
                    Some(&at) => stats.caches[at].counts.add(&counts),
                    None => {
                        cache_at.insert(key.clone(), stats.caches.len());
                        stats.caches.push(CacheRow { key, counts });
                    }
                }
            }
            Table::Cgroup => {
                let key = match row.field("cgroup")? {
                    "(other)" => CgroupKey::Other,
                    f => CgroupKey::Id(f.parse::<u64>().map_err(|_| {
                        row.error(format!(
                            "column `cgroup` is {f:?}, not a cgroup id or `(other)`"
                        ))
                    })?),
                };
                stats.cgroups.push(CgroupRow {
                    key,
                    counts: Counters::from_row(&row)?,
                });
            }
            Table::Callsite => {
                let key = match row.field("call_site")? {
                    "(other)" => SiteKey::Other,
                    f => {
                        let addr = row.opt_hex("call_site")?;
                        let caller = match row.field("caller")? {
                            "-" => f.to_string(),
                            c => c.to_string(),
                        };
                        SiteKey::Site { addr, caller }
                    }
                };
                stats.callsites.push(SiteRow {
                    key,
                    allocs: row.num("allocs")?,
                    frees: row.num("frees")?,
                    bytes: row.num("bytes")?,
                    outstanding: row.opt_count_signed("outstanding")?.unwrap_or(0),
                    objects: row.opt_num("objects")?.unwrap_or(0),
                    oldest_age_ns: row.opt_num("oldest_age_ns")?.unwrap_or(0),
                });
            }
            Table::Totals => {
                let t = Totals {
                    events: row.opt_num("events")?,
                    allocs: row.num("allocs")?,
                    frees: row.num("frees")?,
                    bytes: row.num("bytes")?,
                    bytes_req: row.opt_num("bytes_req")?,
                    outstanding: row.opt_num("outstanding")?,
                    pages: PageCounters::from_row(&row)?,
                };
                // One row is expected; more are summed like any other table.
                if let Some(acc) = stats.totals.as_mut() {
                    acc.events = add_opt(acc.events, t.events);
                    acc.allocs = acc.allocs.saturating_add(t.allocs);
                    acc.frees = acc.frees.saturating_add(t.frees);
                    acc.bytes = acc.bytes.saturating_add(t.bytes);
                    acc.bytes_req = add_opt(acc.bytes_req, t.bytes_req);
                    acc.outstanding = add_opt(acc.outstanding, t.outstanding);
                    acc.pages = PageCounters::add(acc.pages, t.pages);
                }
            }
            Table::Dropped => {
                let reason = row.field("reason")?.to_string();
                let count = row.num("count")?;
                if let Some(d) = stats.dropped.as_mut() {
                    let c = d.entry(reason).or_insert(0);
                    *c = c.saturating_add(count);
                }
            }
            Table::Histogram => {
                let le_bytes = match row.field("le_bytes")? {
                    "+Inf" | "inf" | "+inf" => None,
                    f => Some(f.parse::<u64>().map_err(|_| {
                        row.error(format!(
                            "column `le_bytes` is {f:?}, not a number or `+Inf`"
                        ))
                    })?),
                };
                let count = row.num("count")?;
                if let Some(h) = stats.histogram.as_mut() {
                    h.push(Bucket { le_bytes, count });
                }
            }
            Table::Monitor => {
                let key = row.field("key")?;
                let value = row.field("value")?;
                if let Some(m) = stats.monitor.as_mut() {
                    match key {
                        "backend" => m.backend = Some(value.to_string()),
                        "release" => m.release = Some(value.to_string()),
                        "uptime_ns" => m.uptime_ns = row.opt_num("value")?,
                        "ring_capacity" => m.ring_capacity = row.opt_num("value")?,
                        "paused" => {
                            m.paused = Some(match value {
                                "0" => false,
                                "1" => true,
                                v => {
                                    return Err(
                                        row.error(format!("`paused` is {v:?}, expected 0 or 1"))
                                    )
                                }
                            })
                        }
                        _ => {
                            m.other.insert(key.to_string(), value.to_string());
                        }
                    }
                }
            }
            Table::Unknown => {}
        }
    }
    Ok(stats)
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TODAY: &str = "\
# process: pid comm allocs frees bytes outstanding bytes_req
91 find 20886 10665 24634928 - 24602560
90 sh 154 57 89080 - 87127

# cache: cache allocs frees bytes outstanding bytes_req
- 43 28 39024 - 35451
dentry 3999 0 767808 - 767808

# totals: events allocs frees bytes bytes_req
42000 21368 10665 24700000 24650000

# dropped: reason count
process_table_full 0
cache_table_full 0
";

    #[test]
    fn parses_the_current_module_output() {
        let s = parse_stats(TODAY).unwrap();
        assert_eq!(s.processes.len(), 2);
        let find = &s.processes[0];
        assert_eq!(find.key.pid, Some(91));
        assert_eq!(find.key.comm, Name::from("find"));
        assert_eq!(find.counts.allocs, 20886);
        assert_eq!(find.counts.outstanding, None);
        assert_eq!(find.counts.bytes_req, Some(24602560));
        assert_eq!(s.caches[0].key, CacheKey::Kmalloc);
        assert_eq!(s.caches[1].key, CacheKey::Named(Name::from("dentry")));
        let t = s.totals.unwrap();
        assert_eq!(
            (t.events, t.allocs, t.bytes_req),
            (Some(42000), 21368, Some(24650000))
        );
        assert_eq!(s.dropped.as_ref().unwrap()["process_table_full"], 0);
        assert_eq!(s.histogram, None);
        assert_eq!(s.monitor, None);
    }

    #[test]
    fn escaped_names_are_unescaped() {
        let s = parse_stats(
            "# process: pid comm allocs frees bytes outstanding\n\
             7 kworker\\x2fu8:1\\x20x 1 0 8 8\n\
             # cache: cache allocs frees bytes outstanding\n\
             my\\x5ccache 1 0 8 -\n",
        )
        .unwrap();
        assert_eq!(s.processes[0].key.comm.as_bytes(), b"kworker/u8:1 x");
        assert_eq!(s.processes[0].counts.outstanding, Some(8));
        assert_eq!(s.caches[0].key, CacheKey::Named(Name::from("my\\cache")));
    }

    #[test]
    fn duplicate_keys_are_summed() {
        let s = parse_stats(
            "# process: pid comm allocs frees bytes outstanding bytes_req\n\
             5 a 1 2 3 4 -\n\
             6 a 10 0 0 - 7\n\
             5 a 100 200 300 400 5\n\
             - (other) 1 1 1 - -\n\
             - (other) 2 2 2 - -\n\
             \n\
             # cache: cache allocs frees bytes outstanding\n\
             x 1 1 1 -\n\
             x 1 1 1 -\n",
        )
        .unwrap();
        assert_eq!(s.processes.len(), 3);
        let a5 = &s.processes[0].counts;
        assert_eq!((a5.allocs, a5.frees, a5.bytes), (101, 202, 303));
        assert_eq!(a5.outstanding, Some(404));
        assert_eq!(a5.bytes_req, Some(5));
        assert!(s.processes[2].key.is_other());
        assert_eq!(s.processes[2].counts.allocs, 3);
        assert_eq!(s.caches.len(), 1);
        assert_eq!(s.caches[0].counts.allocs, 2);
    }

    #[test]
    fn columns_by_name_unknown_tables_and_columns_ignored() {
        let s = parse_stats(
            "# future: a b c\n\
             1 2 3\n\
             \n\
             # process: comm new_col frees pid bytes allocs\n\
             cat zz 2 44 30 3\n\
             \n\
             # monitor: key value\n\
             backend tracepoint\n\
             uptime_ns 123\n\
             paused 1\n\
             release 6.1.0-47-amd64\n\
             ring_capacity 4096\n\
             shards 2\n\
             \n\
             # histogram: le_bytes count\n\
             8 3\n\
             16 0\n\
             +Inf 1\n",
        )
        .unwrap();
        let p = &s.processes[0];
        assert_eq!(p.key.pid, Some(44));
        assert_eq!(
            (p.counts.allocs, p.counts.frees, p.counts.bytes),
            (3, 2, 30)
        );
        assert_eq!(p.counts.bytes_req, None);
        let m = s.monitor.unwrap();
        assert_eq!(m.backend.as_deref(), Some("tracepoint"));
        assert_eq!(m.uptime_ns, Some(123));
        assert_eq!(m.paused, Some(true));
        assert_eq!(m.release.as_deref(), Some("6.1.0-47-amd64"));
        assert_eq!(m.ring_capacity, Some(4096));
        assert_eq!(m.other["shards"], "2");
        let h = s.histogram.unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h[2],
            Bucket {
                le_bytes: None,
                count: 1
            }
        );
        assert!(s.totals.is_none() && s.dropped.is_none() && s.caches.is_empty());
    }

    #[test]
    fn page_counters_and_total_outstanding() {
        let s = parse_stats(
            "# process: pid comm allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n\
             5 a 1 0 8 8 8 3 1 12288\n\
             5 a 1 0 8 8 8 1 0 4096\n\
             6 b 1 0 8 8 8 - - -\n\
             \n\
             # totals: events allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n\
             9 3 0 24 24 24 4 1 16384\n",
        )
        .unwrap();
        let a = s.processes[0].counts.pages.unwrap();
        assert_eq!((a.allocs, a.frees, a.bytes), (4, 1, 16384));
        assert_eq!(s.processes[1].counts.pages, None);
        let t = s.totals.unwrap();
        assert_eq!(t.outstanding, Some(24));
        assert_eq!(t.pages.map(|p| p.bytes), Some(16384));
    }

    #[test]
    fn cgroup_and_callsite_tables() {
        let text = "\
# cgroup: cgroup allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes
1 20 17 2560 384 2400 3 1 12288
(other) 1 0 64 64 60 0 0 0

# callsite: call_site allocs frees bytes outstanding objects oldest_age_ns caller
0xffffffffc0401000 12 3 768 576 9 200000000 ext4_find_extent+0x1f/0x2d0 [ext4]
- 4 0 256 -64 4 10 alloc_pipe_info+0x3e/0x1c0
(other) 5 1 320 256 4 7 -
";
        let s = parse_stats(text).unwrap();
        assert_eq!(s.cgroups.len(), 2);
        assert_eq!(s.cgroups[0].key, CgroupKey::Id(1));
        assert_eq!(s.cgroups[0].counts.outstanding, Some(384));
        assert_eq!(s.cgroups[0].counts.pages.map(|p| p.allocs), Some(3));
        assert_eq!(s.cgroups[1].key, CgroupKey::Other);
        assert_eq!(s.callsites.len(), 3);
        assert_eq!(
            s.callsites[0].key,
            SiteKey::Site {
                addr: Some(0xffffffffc0401000),
                caller: "ext4_find_extent+0x1f/0x2d0 [ext4]".into()
            }
        );
        assert_eq!(
            (s.callsites[0].objects, s.callsites[0].oldest_age_ns),
            (9, 200000000)
        );
        // Withheld address: the caller is still there.
        assert_eq!(
            s.callsites[1].key,
            SiteKey::Site {
                addr: None,
                caller: "alloc_pipe_info+0x3e/0x1c0".into()
            }
        );
        assert_eq!(
            s.callsites[1].outstanding, 0,
            "a transient negative sum reads as 0"
        );
        assert_eq!(s.callsites[2].key, SiteKey::Other);
        // A row short of the fixed columns is an error naming its line.
        let e =
            parse_stats("# callsite: call_site allocs frees bytes outstanding caller\n0x1 2 3\n")
                .unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn empty_file_is_empty_stats() {
        assert_eq!(parse_stats("").unwrap(), Stats::default());
    }

    #[test]
    fn garbage_lines_are_errors_naming_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("hello world\n", 1, "outside any table"),
            (
                "# process: pid comm allocs frees bytes\n1 a 1 1\n",
                2,
                "4 fields where the header has 5",
            ),
            (
                "# process: pid comm allocs frees bytes\n1 a 1 x 1\n",
                2,
                "`frees` is \"x\"",
            ),
            (
                "# process: pid comm allocs frees bytes\nabc a 1 1 1\n",
                2,
                "`pid` is \"abc\"",
            ),
            (
                "# process: pid comm allocs frees bytes\n1 a\\q 1 1 1\n",
                2,
                "bad escape",
            ),
            ("# process: pid allocs frees bytes\n", 1, "no `comm` column"),
            (
                "# totals: allocs frees bytes\n\n1 2 3\n",
                3,
                "outside any table",
            ),
            ("# monitor: key value\npaused yes\n", 2, "expected 0 or 1"),
            ("# histogram: le_bytes count\nbig 1\n", 2, "`le_bytes`"),
        ];
        for (text, line, reason) in cases {
            let err = parse_stats(text).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err}");
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("line {line}: ")),
                "{err}"
            );
        }
    }
}
