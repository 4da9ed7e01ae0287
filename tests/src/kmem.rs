//! The monitor's counts against the kernel's own kmem tracepoint events, for
//! a monitor that is already loaded (by `kmlink.service` on an installed
//! system): the method of `tests/tests/monitor.rs` — tracefs armed first,
//! one workload process, its per-process allocations, frees and page
//! allocations in `/proc/kmlink/stats` must equal the tracepoint events of
//! its pid, and a run with dropped trace events is invalid.

use std::collections::BTreeMap;

/// Guest shell fragment: arms the kmem tracepoints, runs the workload
/// (`find` over sysfs), stops tracing, prints `@@CHECK …` with the
/// tracepoint counts of the workload's pid and the monitor's stats between
/// `@@STATS-BEGIN` and `@@STATS-END`. Needs tracefs and /proc/kmlink.
pub const TRACE_WORKLOAD: &str = r#"
T=/sys/kernel/tracing
[ -d $T/events/kmem ] || mount -t tracefs tracefs $T 2>/dev/null
[ -d $T/events/kmem ] || T=/sys/kernel/debug/tracing
echo 0 > $T/tracing_on
echo 32768 > $T/buffer_size_kb
echo > $T/trace
for e in kmem/kmalloc kmem/kmem_cache_alloc kmem/kfree kmem/kmem_cache_free kmem/mm_page_alloc; do
  echo 1 > $T/events/$e/enable || echo "@@TRACE-ERROR cannot enable $e"
done
echo 1 > $T/tracing_on
sh -c 'exec find /sys/devices /proc/self > /dev/null 2>&1' &
pid=$!
wait $pid
echo 0 > $T/tracing_on
cat /proc/kmlink/stats > /tmp/kmlink-stats
cat $T/trace > /tmp/kmlink-trace
for e in kmem/kmalloc kmem/kmem_cache_alloc kmem/kfree kmem/kmem_cache_free kmem/mm_page_alloc; do
  echo 0 > $T/events/$e/enable
done
drops=0
for s in $T/per_cpu/cpu*/stats; do
  o=$(awk '/^overrun:/ {print $2}' $s); d=$(awk '/^dropped events:/ {print $3}' $s)
  drops=$((drops + ${o:-0} + ${d:-0}))
done
grep -E -- "-$pid +\[" /tmp/kmlink-trace > /tmp/kmlink-mine
km=$(grep -c ' kmalloc: ' /tmp/kmlink-mine)
kca=$(grep -c ' kmem_cache_alloc: ' /tmp/kmlink-mine)
kf=$(grep ' kfree: ' /tmp/kmlink-mine | grep -v -c -e 'ptr=0000000000000000' -e 'ptr=(null)')
kcf=$(grep -c ' kmem_cache_free: ' /tmp/kmlink-mine)
mpa=$(grep ' mm_page_alloc: ' /tmp/kmlink-mine | grep -v -c -e 'page=0000000000000000' -e 'page=(null)')
echo "@@CHECK pid=$pid trace_kmalloc=$km trace_kmem_cache_alloc=$kca trace_kfree=$kf trace_kmem_cache_free=$kcf trace_page_alloc=$mpa trace_drops=$drops"
echo "@@STATS-BEGIN"
cat /tmp/kmlink-stats
echo "@@STATS-END"
"#;

/// `key=value` from a line of words.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The text between `@@NAME-BEGIN` and `@@NAME-END`.
pub fn section<'a>(output: &'a str, name: &str) -> Option<&'a str> {
    output
        .split(&format!("@@{name}-BEGIN"))
        .nth(1)
        .and_then(|s| s.split(&format!("@@{name}-END")).next())
}

/// A table of `/proc/kmlink/stats`: its columns and rows.
pub type Table = (Vec<String>, Vec<Vec<String>>);

/// Parses `/proc/kmlink/stats` into its tables (`# name: columns…`).
pub fn tables(stats: &str) -> BTreeMap<String, Table> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stats.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            let Some((name, cols)) = h.split_once(':') else {
                current = None;
                continue;
            };
            let cols = cols.split_whitespace().map(str::to_string).collect();
            out.insert(name.to_string(), (cols, Vec::new()));
            current = Some(name.to_string());
        } else if line.trim().is_empty() {
            current = None;
        } else if let Some(t) = current.as_ref().and_then(|t| out.get_mut(t)) {
            t.1.push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    out
}

/// The workload's counts on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The workload's pid.
    pub pid: u32,
    /// Allocations: monitor, tracepoints (kmalloc + kmem_cache_alloc).
    pub allocs: (u64, u64),
    /// Frees: monitor, tracepoints (kfree of non-NULL + kmem_cache_free).
    pub frees: (u64, u64),
    /// Page allocations: monitor, tracepoints (mm_page_alloc).
    pub pages: (u64, u64),
}

/// Reads what [`TRACE_WORKLOAD`] printed and requires the monitor's
/// tracepoint-backend counts for the workload to equal the kernel's events;
/// `Err` says which disagree (or what is missing).
pub fn compare(output: &str) -> Result<Agreement, String> {
    let check = output
        .lines()
        .find_map(|l| l.split("@@CHECK").nth(1))
        .ok_or("no @@CHECK line")?;
    let n = |k: &str| -> Result<u64, String> {
        field(check, k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {k} in @@CHECK{check}"))
    };
    if n("trace_drops")? != 0 {
        return Err(format!(
            "tracefs dropped events, the run is invalid: {check}"
        ));
    }
    let pid = u32::try_from(n("pid")?).map_err(|e| e.to_string())?;
    let stats = section(output, "STATS").ok_or("no stats section")?;
    let t = tables(stats);
    let (cols, rows) = t.get("process").ok_or("no process table in the stats")?;
    let col = |name: &str| {
        cols.iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("no column {name} in {cols:?}"))
    };
    let (c_allocs, c_frees, c_pages) = (col("allocs")?, col("frees")?, col("page_allocs")?);
    let mine: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.first().is_some_and(|p| *p == pid.to_string()))
        .collect();
    if !mine.iter().any(|r| r.get(1).is_some_and(|c| c == "find")) {
        return Err(format!(
            "no row of the workload (pid {pid}, find):\n{stats}"
        ));
    }
    let sum = |c: usize| -> Result<u64, String> {
        mine.iter()
            .map(|r| {
                r.get(c)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("bad row {r:?}"))
            })
            .sum()
    };
    let a = Agreement {
        pid,
        allocs: (
            sum(c_allocs)?,
            n("trace_kmalloc")? + n("trace_kmem_cache_alloc")?,
        ),
        frees: (
            sum(c_frees)?,
            n("trace_kfree")? + n("trace_kmem_cache_free")?,
        ),
        pages: (sum(c_pages)?, n("trace_page_alloc")?),
    };
    if a.allocs.1 <= 100 || a.pages.1 == 0 {
        return Err(format!("the workload must allocate: {a:?}"));
    }
    if a.allocs.0 != a.allocs.1 || a.frees.0 != a.frees.1 || a.pages.0 != a.pages.1 {
        return Err(format!(
            "monitor and tracepoints disagree (monitor, tracefs): {a:?}\n{stats}"
        ));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "@@CHECK pid=42 trace_kmalloc=100 trace_kmem_cache_alloc=50 trace_kfree=90 trace_kmem_cache_free=40 trace_page_alloc=7 trace_drops=0
@@STATS-BEGIN
# process: pid comm allocs frees bytes outstanding page_allocs
42 sh 10 5 100 5 1
42 find 140 125 9999 15 6
43 other 1 1 1 0 0

@@STATS-END
";

    #[test]
    fn equal_counts_agree_and_one_off_does_not() {
        let a = compare(OUT).expect("agree");
        assert_eq!(
            (a.pid, a.allocs, a.frees, a.pages),
            (42, (150, 150), (130, 130), (7, 7))
        );
        let off = OUT.replace("42 find 140", "42 find 141");
        assert!(compare(&off).expect_err("one off").contains("disagree"));
        let dropped = OUT.replace("trace_drops=0", "trace_drops=3");
        assert!(compare(&dropped).expect_err("dropped").contains("invalid"));
        let no_find = OUT.replace("42 find", "42 cat");
        assert!(compare(&no_find).is_err());
    }
}
