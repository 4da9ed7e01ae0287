//! The monitor's accuracy check, shared by the VM tests (monitor.rs,
//! secureboot.rs): a guest script arms tracefs's kmem events and the
//! module, runs a workload, and prints both counts; [`check_output`] holds
//! the module's per-process allocation, free and page counts to the
//! kernel's own events.

use std::collections::BTreeMap;

use kmlink_vm::VmResult;

/// Guest shell, for `concat!` into the monitor scripts (here,
/// tests/tests/monitor.rs, tests/tests/arm64.rs): tracefs's trace into
/// /tmp/trace, `drops` the events every CPU's buffer lost (overruns and
/// dropped events: a run with any is invalid), the lines of the workload
/// `$pid` into /tmp/mine.
#[macro_export]
macro_rules! trace_of_pid_sh {
    () => {
        r#"cat $T/trace > /tmp/trace
drops=0
for s in $T/per_cpu/cpu*/stats; do
  o=$(awk '/^overrun:/ {print $2}' $s); d=$(awk '/^dropped events:/ {print $3}' $s)
  drops=$((drops + ${o:-0} + ${d:-0}))
done
grep -E -- "-$pid +\[" /tmp/trace > /tmp/mine
"#
    };
}

/// Guest shell, for `concat!` at the end of the monitor scripts (here,
/// tests/tests/monitor.rs): the monitor's events file between
/// `@@EVENTS-BEGIN` and `@@EVENTS-END` (its header, the last 20
/// `kmem_cache_alloc` events of the workload `$pid` running `$comm`, the
/// last 3 page allocations: see [`check_events`]); then pause, clear and
/// resume the monitor (printing `@@CLEARED events=N`, what it counted while
/// paused after the clear: see [`check_cleared`]), refuse a bogus control
/// word, unload, and exit 0.
#[macro_export]
macro_rules! events_clear_and_unload_sh {
    ($comm:literal) => {
        concat!(
            r#"echo "@@EVENTS-BEGIN"
head -1 /tmp/events
grep " $pid $pid "#,
            $comm,
            r#" kmem_cache_alloc " /tmp/events | tail -20
grep " mm_page_alloc " /tmp/events | tail -3
echo "@@EVENTS-END"
echo pause > /proc/kmlink/control || exit 26
echo clear > /proc/kmlink/control || exit 27
a=$(awk '/^# totals/ {getline; print $1}' /proc/kmlink/stats)
echo resume > /proc/kmlink/control || exit 28
echo "@@CLEARED events=$a"
echo bogus > /proc/kmlink/control 2>/dev/null && exit 29
rmmod kmlink || exit 24
[ -e /proc/kmlink ] && exit 25
exit 0
"#
        )
    };
}

/// Guest script: arm tracefs and the monitor before a workload, stop both
/// after it, report both counts for the workload's pid.
const SCRIPT_TEMPLATE: &str = concat!(
    r#"
T=/sys/kernel/tracing
[ -d $T/events/kmem ] || T=/sys/kernel/debug/tracing
echo 0 > $T/tracing_on
echo 32768 > $T/buffer_size_kb
echo > $T/trace
for e in kmem/kmalloc kmem/kmem_cache_alloc kmem/kfree kmem/kmem_cache_free kmem/mm_page_alloc; do
  echo 1 > $T/events/$e/enable || exit 20
done
insmod @MODULE@ || exit 22
[ -r /proc/kmlink/stats ] || exit 23
echo 1 > $T/tracing_on
sh -c 'exec find /sys/devices /proc/self > /dev/null 2>&1' &
pid=$!
wait $pid
echo 0 > $T/tracing_on
cat /proc/kmlink/stats > /tmp/stats
cat /proc/kmlink/events > /tmp/events
"#,
    crate::trace_of_pid_sh!(),
    r#"km=$(grep -c ' kmalloc: ' /tmp/mine)
kca=$(grep -c ' kmem_cache_alloc: ' /tmp/mine)
kf=$(grep ' kfree: ' /tmp/mine | grep -v -c -e 'ptr=0000000000000000' -e 'ptr=(null)')
kcf=$(grep -c ' kmem_cache_free: ' /tmp/mine)
mpa=$(grep ' mm_page_alloc: ' /tmp/mine | grep -v -c -e 'page=0000000000000000' -e 'page=(null)')
echo "@@CHECK pid=$pid trace_kmalloc=$km trace_kmem_cache_alloc=$kca trace_kfree=$kf trace_kmem_cache_free=$kcf trace_page_alloc=$mpa trace_drops=$drops"
echo "@@NAMES $(grep ' kmem_cache_alloc: ' /tmp/mine | grep -o 'name=[^ ]*' | sort -u | tr '\n' ' ')"
echo "@@STATS-BEGIN"
cat /tmp/stats
echo "@@STATS-END"
"#,
    crate::events_clear_and_unload_sh!("find")
);

/// The value of `key=value` in a line of words.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Parses `/proc/kmlink/stats` into tables of rows.
pub fn tables(stats: &str) -> BTreeMap<String, (Vec<String>, Vec<Vec<String>>)> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stats.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            let (name, cols) = h.split_once(':').expect("table header");
            let cols: Vec<String> = cols.split_whitespace().map(str::to_string).collect();
            out.insert(name.to_string(), (cols, Vec::new()));
            current = Some(name.to_string());
        } else if line.trim().is_empty() {
            current = None;
        } else if let Some(t) = &current {
            out.get_mut(t)
                .expect("table")
                .1
                .push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    out
}

/// Which hook the module under test uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// Tracepoints (`--backend tracepoint`).
    Tracepoint,
    /// kprobes (`--backend kprobe`).
    Kprobe,
}

/// How far the kprobe backend's counts may be from the tracepoints' (see
/// docs/core-module.md, "kprobe backend accuracy"). A kprobe that fires
/// while another kprobe handler runs on the same CPU (an interrupt's
/// softirq freeing RCU-deferred objects, for one) is not delivered: the
/// kernel counts it in the probe's `nmissed`, which the monitor reports as
/// `kprobe_missed`. Every difference must be covered by that count, plus
/// 1% for paths that reach a tracepoint without passing a probed entry
/// point.
pub fn within(backend: Backend, monitor: u64, trace: u64, missed: u64) -> bool {
    within_missed(backend, monitor, trace, missed + trace.div_ceil(100))
}

/// The VM monitor test's bound (`tests/tests/monitor.rs`): equal with the
/// tracepoint backend; with kprobes, every difference covered by
/// `kprobe_missed` (measured tolerance beyond it: zero on every path,
/// docs/core-module.md).
pub fn within_missed(backend: Backend, monitor: u64, trace: u64, missed: u64) -> bool {
    match backend {
        Backend::Tracepoint => monitor == trace,
        Backend::Kprobe => monitor.abs_diff(trace) <= missed,
    }
}

impl Backend {
    /// The `--backend` argument.
    pub fn arg(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
            Backend::Kprobe => "kprobe",
        }
    }
}

/// The guest script: tracefs armed, `insmod MODULE`, a workload (`find`),
/// both counts printed, pause/clear/resume exercised, `rmmod kmlink`.
pub fn script(module: &str) -> String {
    SCRIPT_TEMPLATE.replace("@MODULE@", module)
}

/// Checks what [`script`] printed in `r`: the module's counts for the
/// workload's pid equal the kernel's kmem events (tracepoint backend) or
/// track them within the kprobe backend's documented bounds ([`within`]).
/// Panics with the evidence otherwise.
pub fn check_output(release: &str, backend: Backend, r: &VmResult) {
    let c = workload_counts(release, backend, &r.output, "find");
    check_agreement(release, backend, &c, within);
    check_events(release, &r.output, c.pid, "find", None);
    check_cleared(release, &r.output);
}

/// The `@@CHECK pid=… key=n …` line a guest script prints.
pub struct CheckLine<'a>(pub &'a str);

impl<'a> CheckLine<'a> {
    /// The `@@CHECK` line of `output`.
    pub fn find(output: &'a str) -> Self {
        CheckLine(
            output
                .lines()
                .find(|l| l.starts_with("@@CHECK"))
                .expect("check line"),
        )
    }

    /// The number `key=n`; panics naming the line without one.
    pub fn n(&self, key: &str) -> u64 {
        field(self.0, key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key} in {}", self.0))
    }

    /// The workload's pid.
    pub fn pid(&self) -> u32 {
        field(self.0, "pid")
            .and_then(|v| v.parse().ok())
            .expect("pid")
    }
}

/// Sums column `name` of a stats table (header, rows) over the rows of
/// `pid` (its first column).
pub fn pid_sum(table: &(Vec<String>, Vec<Vec<String>>), pid: &str, name: &str) -> u64 {
    let (cols, rows) = table;
    let col = |name: &str| {
        cols.iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    rows.iter()
        .filter(|r| r[0] == pid)
        .map(|r| r[col(name)].parse::<u64>().expect("number"))
        .sum()
}

/// The `kprobe_missed` row of the `dropped` table (0 without one).
pub fn kprobe_missed(dropped: &[Vec<String>]) -> u64 {
    dropped
        .iter()
        .find(|r| r[0] == "kprobe_missed")
        .map_or(0, |r| r[1].parse().expect("number"))
}

/// What a monitor script's run says of its workload: the kernel's counts
/// (its `@@CHECK` line) and the monitor's (its `@@STATS` section), read by
/// [`workload_counts`].
pub struct WorkloadCounts<'a> {
    /// The workload's pid.
    pub pid: u32,
    /// tracefs: `kmalloc` + `kmem_cache_alloc` events.
    pub trace_allocs: u64,
    /// tracefs: `kfree` + `kmem_cache_free` events.
    pub trace_frees: u64,
    /// tracefs: `mm_page_alloc` events.
    pub trace_pages: u64,
    /// The monitor's allocations of the pid's rows.
    pub monitor: u64,
    /// Its frees.
    pub frees: u64,
    /// Its page allocations.
    pub pages: u64,
    /// The `kprobe_missed` count.
    pub missed: u64,
    /// The `/proc/kmlink/stats` text.
    pub stats: &'a str,
    /// Its tables ([`tables`]).
    pub tables: BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>,
}

/// Reads the workload's counts from `output` and holds the run to what
/// makes it valid: tracefs dropped nothing, the process table has its
/// header, the monitor lost no counted event, the workload (`comm`) has its
/// own row and allocated.
pub fn workload_counts<'a>(
    release: &str,
    backend: Backend,
    output: &'a str,
    comm: &str,
) -> WorkloadCounts<'a> {
    let backend_arg = backend.arg();
    let check = CheckLine::find(output);
    let pid = check.pid();
    let n = |k| check.n(k);
    let (trace_km, trace_kca, drops) = (
        n("trace_kmalloc"),
        n("trace_kmem_cache_alloc"),
        n("trace_drops"),
    );
    let trace_frees = n("trace_kfree") + n("trace_kmem_cache_free");
    let trace_pages = n("trace_page_alloc");
    assert_eq!(
        drops, 0,
        "{release}: tracefs dropped events: the run is invalid"
    );

    let stats = section(output, "STATS");
    let t = tables(stats);
    let process = t.get("process").expect("process table");
    let (cols, rows) = process;
    assert_eq!(
        cols[..6],
        ["pid", "comm", "allocs", "frees", "bytes", "outstanding"],
        "{release}: process header"
    );
    let (_, dropped) = t.get("dropped").expect("dropped table");
    for row in dropped {
        // ring_overwritten, frees of objects allocated before load, and
        // outstanding-table misses (a bounded lossy cache: they only make
        // `outstanding` approximate) are expected; no counted event may be
        // lost.
        let expected = matches!(
            row[0].as_str(),
            "ring_overwritten" | "unknown_frees" | "stale_ptrs" | "ptr_table_full"
        ) || (backend == Backend::Kprobe && row[0] == "kprobe_missed");
        if !expected {
            assert_eq!(row[1], "0", "{release}: monitor dropped: {row:?}");
        }
    }
    let pid_s = pid.to_string();
    let sum = |name: &str| pid_sum(process, &pid_s, name);
    let (monitor, frees, pages) = (sum("allocs"), sum("frees"), sum("page_allocs"));
    let comms: Vec<&str> = rows
        .iter()
        .filter(|r| r[0] == pid_s)
        .map(|r| r[1].as_str())
        .collect();
    eprintln!(
        "{release} [{backend_arg}]: pid {pid} ({comms:?}): allocations monitor {monitor} = tracefs {trace_km} kmalloc + {trace_kca} kmem_cache_alloc; \
         frees monitor {frees} tracefs {trace_frees}; page allocations monitor {pages} tracefs {trace_pages}"
    );
    assert!(
        comms.contains(&comm),
        "{release}: the exec'd program must get its own row: {comms:?}"
    );
    assert!(
        trace_km + trace_kca > 100,
        "{release}: the workload must allocate"
    );
    let missed = kprobe_missed(dropped);
    if backend == Backend::Kprobe {
        eprintln!("{release} [{backend_arg}]: kprobe_missed {missed}");
    }
    WorkloadCounts {
        pid,
        trace_allocs: trace_km + trace_kca,
        trace_frees,
        trace_pages,
        monitor,
        frees,
        pages,
        missed,
        stats,
        tables: t,
    }
}

/// The monitor's allocations, frees and page allocations agree with
/// tracefs's under `within` ([`within`] or [`within_missed`]); the stats
/// name the backend; the workload allocated pages; the cache table has the
/// dentry cache (or `-`).
pub fn check_agreement(
    release: &str,
    backend: Backend,
    c: &WorkloadCounts<'_>,
    within: fn(Backend, u64, u64, u64) -> bool,
) {
    let backend_arg = backend.arg();
    let (missed, stats) = (c.missed, c.stats);
    let agree = |what: &str, m: u64, t: u64| {
        assert!(
            within(backend, m, t, missed),
            "{release} [{backend_arg}]: {what}: monitor {m}, tracefs {t}, kprobe_missed {missed}\n{stats}"
        );
    };
    agree("allocations", c.monitor, c.trace_allocs);
    agree("frees (kfree + kmem_cache_free)", c.frees, c.trace_frees);
    agree("page allocations (mm_page_alloc)", c.pages, c.trace_pages);
    let backend_line = format!("backend {backend_arg}");
    assert!(
        stats.lines().any(|l| l.trim() == backend_line),
        "{release}: stats must say {backend_line}"
    );
    assert!(c.pages > 0, "{release}: the workload must allocate pages");
    assert!(c
        .tables
        .get("cache")
        .is_some_and(|(_, rows)| rows.iter().any(|r| r[0] == "dentry" || r[0] == "-")));
}

/// The events file (`@@EVENTS` section): the workload's events carry its
/// pid, comm and the cache names the kernel's own events name (`@@NAMES`);
/// where the kernel's events name no cache, one of `slabs` when given.
/// Page events carry an order.
pub fn check_events(release: &str, output: &str, pid: u32, comm: &str, slabs: Option<&[&str]>) {
    let events = section(output, "EVENTS");
    let mut lines = events.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().expect("events header");
    assert!(
        header.starts_with(
            "# time_ns cpu pid tid comm event bytes_req bytes_alloc cache gfp call_site ptr"
        ),
        "{header}"
    );
    let names: Vec<&str> = output
        .lines()
        .find_map(|l| l.strip_prefix("@@NAMES"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.strip_prefix("name="))
                .collect()
        })
        .unwrap_or_default();
    let evs: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let pid_s = pid.to_string();
    let cache_allocs: Vec<&Vec<&str>> = evs.iter().filter(|e| e[5] == "kmem_cache_alloc").collect();
    assert!(
        !cache_allocs.is_empty(),
        "{release}: no kmem_cache_alloc events of the workload"
    );
    for e in &cache_allocs {
        assert_eq!(
            (e[2], e[3], e[4]),
            (pid_s.as_str(), pid_s.as_str(), comm),
            "{release}: {e:?}"
        );
        if !names.is_empty() {
            assert!(
                names.contains(&e[8]),
                "{release}: cache {} not among the kernel's {names:?}",
                e[8]
            );
        } else if let Some(slabs) = slabs {
            // The kernel's events name no cache (5.10): the monitor found
            // it from the object's slab page; it must be one of the
            // kernel's caches.
            assert!(
                slabs.contains(&e[8]),
                "{release}: cache {} not in /proc/slabinfo {slabs:?}",
                e[8]
            );
        }
    }
    assert!(
        evs.iter().any(|e| e[5] == "mm_page_alloc" && e[12] != "-"),
        "{release}: no page events with an order"
    );
}

/// `clear` while paused left nothing counted (`@@CLEARED events=0`).
pub fn check_cleared(release: &str, output: &str) {
    let cleared = output
        .lines()
        .find_map(|l| l.strip_prefix("@@CLEARED events="))
        .expect("cleared line");
    assert_eq!(
        cleared.trim(),
        "0",
        "{release}: clear while paused must leave nothing counted"
    );
}

/// The text between `@@NAME-BEGIN` and `@@NAME-END`.
pub fn section<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .split(&format!("@@{name}-BEGIN"))
        .nth(1)
        .and_then(|s| s.split(&format!("@@{name}-END")).next())
        .unwrap_or_else(|| panic!("no {name} section in:\n{output}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the guest script prints, cut to what the checks read.
    const OUT: &str = "\
@@CHECK pid=42 trace_kmalloc=100 trace_kmem_cache_alloc=50 trace_kfree=90 trace_kmem_cache_free=40 trace_page_alloc=7 trace_drops=0
@@NAMES name=dentry name=kmalloc-64
@@STATS-BEGIN
backend tracepoint

# process: pid comm allocs frees bytes outstanding page_allocs
42 find 150 130 4096 20 7
7 sh 3 1 64 2 0

# dropped: reason count
ring_overwritten 3
kprobe_missed 0

# cache: name allocs
dentry 10
@@STATS-END
@@EVENTS-BEGIN
# time_ns cpu pid tid comm event bytes_req bytes_alloc cache gfp call_site ptr order
1 0 42 42 find kmem_cache_alloc 64 64 dentry 0 f+0x1 ffff -
2 0 42 42 find mm_page_alloc 0 4096 - 0 g+0x1 - 0
@@EVENTS-END
@@CLEARED events=0
";

    #[test]
    fn agreeing_counts_pass_every_check() {
        let c = workload_counts("r", Backend::Tracepoint, OUT, "find");
        assert_eq!(
            (c.pid, c.trace_allocs, c.trace_frees, c.trace_pages),
            (42, 150, 130, 7)
        );
        assert_eq!((c.monitor, c.frees, c.pages, c.missed), (150, 130, 7, 0));
        check_agreement("r", Backend::Tracepoint, &c, within);
        check_agreement("r", Backend::Tracepoint, &c, within_missed);
        check_events("r", OUT, c.pid, "find", None);
        check_cleared("r", OUT);
        assert_eq!(CheckLine::find(OUT).n("trace_kfree"), 90);
    }

    #[test]
    #[should_panic(expected = "allocations: monitor 151, tracefs 150")]
    fn one_allocation_off_fails_the_exact_bound() {
        let out = OUT.replace("42 find 150 130", "42 find 151 130");
        let c = workload_counts("r", Backend::Tracepoint, &out, "find");
        check_agreement("r", Backend::Tracepoint, &c, within_missed);
    }

    #[test]
    #[should_panic(expected = "tracefs dropped events")]
    fn a_run_with_dropped_trace_events_is_invalid() {
        workload_counts(
            "r",
            Backend::Tracepoint,
            &OUT.replace("trace_drops=0", "trace_drops=1"),
            "find",
        );
    }

    #[test]
    fn scripts_hold_the_shared_shell() {
        let s = script("/kmlink.ko");
        assert!(s.contains("insmod /kmlink.ko || exit 22\n"));
        assert!(s.contains("cat $T/trace > /tmp/trace\ndrops=0\n"));
        assert!(s.contains("grep \" $pid $pid find kmem_cache_alloc \" /tmp/events | tail -20\n"));
        assert!(s.ends_with("[ -e /proc/kmlink ] && exit 25\nexit 0\n"));
    }
}
