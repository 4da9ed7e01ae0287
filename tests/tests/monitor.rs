//! The monitor on real kernels: `kmlink build --from-packages` links the one
//! embedded core object for each pinned kernel; in the VM the module loads,
//! counts a workload's allocations exactly as the kernel's own kmem
//! tracepoint events do, unloads cleanly, and taints only O|E.
//!
//! These boot real kernels: `cargo test -p kmlink-tests -- --ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use kmlink_procview::stats::{CgroupKey, SiteKey};
use kmlink_procview::{parse_stats, Stats};
use kmlink_tests::monitor::{
    check_agreement, check_cleared, check_events, field, section, within_missed as within,
    workload_counts, Backend,
};
use kmlink_tests::{build_from_packages, build_workload, kernel, pinned_releases, stripped_kmlink};
use kmlink_vm::{GuestFile, Source, VmSpec};

/// TAINT_OOT_MODULE | TAINT_UNSIGNED_MODULE.
const TAINT_O_E: u64 = (1 << 12) | (1 << 13);

/// Guest script: arm tracefs and the monitor before a workload, stop both
/// after it, report both counts for the workload's pid.
const SCRIPT: &str = concat!(
    r#"
T=/sys/kernel/tracing
[ -d $T/events/kmem ] || T=/sys/kernel/debug/tracing
echo 0 > $T/tracing_on
echo 32768 > $T/buffer_size_kb
# Real pointers in the events (6.1+ hash them by default), to pair them.
[ -e $T/options/hash-ptr ] && { echo 0 > $T/options/hash-ptr || exit 21; }
echo > $T/trace
for e in kmem/kmalloc kmem/kmem_cache_alloc kmem/kfree kmem/kmem_cache_free kmem/mm_page_alloc; do
  echo 1 > $T/events/$e/enable || exit 20
done
# Forks, to know every task of each cgroup's workload.
echo 1 > $T/events/sched/sched_process_fork/enable || exit 20
# Up to 5.x node-specific allocations are separate events (counted as
# kmalloc / kmem_cache_alloc, as the monitor counts them).
for e in kmem/kmalloc_node kmem/kmem_cache_alloc_node; do
  [ -d $T/events/$e ] && { echo 1 > $T/events/$e/enable || exit 20; }
done
insmod /kmlink.ko || exit 22
[ -r /proc/kmlink/stats ] || exit 23
# The monitor counts inside tracefs's window: paused and cleared now,
# resumed after tracing_on, paused before tracing_off. What tracefs has
# beyond it is this shell's (the echo commands).
echo pause > /proc/kmlink/control || exit 26
echo clear > /proc/kmlink/control || exit 27
# Two cgroups, a workload in each: `paths` in a, `hold` (97 pipes held for
# 10 s) in b. Each joins its group, then blocks opening a fifo until its
# turn, so that everything it does in the window is done inside its group.
mkdir -p /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup || exit 40
mkdir /sys/fs/cgroup/a /sys/fs/cgroup/b || exit 41
mkfifo /tmp/go_a /tmp/go_b || exit 42
sh -c 'echo $$ > /sys/fs/cgroup/a/cgroup.procs && read x < /tmp/go_a && exec /paths 60 /sys/devices' > /dev/null 2>&1 &
pid=$!
sh -c 'echo $$ > /sys/fs/cgroup/b/cgroup.procs && read x < /tmp/go_b && exec /hold 97 10 /tmp/held' > /dev/null 2>&1 &
hpid=$!
n=0
until grep -qx $pid /sys/fs/cgroup/a/cgroup.procs && grep -qx $hpid /sys/fs/cgroup/b/cgroup.procs; do
  n=$((n + 1)); [ $n -gt 100 ] && exit 43; sleep 1
done
sleep 1
echo "@@CGROUPS a=$(stat -c %i /sys/fs/cgroup/a) b=$(stat -c %i /sys/fs/cgroup/b) hold=$hpid shell=$$"
echo 1 > $T/tracing_on
echo resume > /proc/kmlink/control || exit 28
echo go > /tmp/go_a
wait $pid || exit 30
echo go > /tmp/go_b
n=0
until [ -e /tmp/held ]; do n=$((n + 1)); [ $n -gt 100 ] && exit 44; sleep 1; done
sleep 2
kmlink leaks --age 1 --stacks --json > /tmp/leaks_held 2> /tmp/leaks_held_err || { cat /tmp/leaks_held /tmp/leaks_held_err; exit 45; }
wait $hpid || exit 46
kmlink leaks > /tmp/leaks_freed 2>&1 || { cat /tmp/leaks_freed; exit 47; }
echo pause > /proc/kmlink/control || exit 26
echo 0 > $T/tracing_on
cat /proc/kmlink/stats > /tmp/stats
# The stack table in brief: its stacks, those ending at the kretprobe
# trampoline, those reaching the system call entry.
awk '/^stack /{n++} /^ kretprobe_trampoline\+/{k++} /^ do_syscall_64\+/{s++}
  END {printf "@@STACKSUM stacks=%d trampoline=%d syscall=%d\n", n, k, s}' /proc/kmlink/stacks
kmlink stats --json --top 5 > /tmp/stats.json 2>&1 || { cat /tmp/stats.json; exit 48; }
cat /proc/kmlink/events > /tmp/events
"#,
    kmlink_tests::trace_of_pid_sh!(),
    r#"km=$(grep -c -E ' kmalloc(_node)?: ' /tmp/mine)
kca=$(grep -c -E ' kmem_cache_alloc(_node)?: ' /tmp/mine)
kf=$(grep ' kfree: ' /tmp/mine | grep -v -c -e 'ptr=0000000000000000' -e 'ptr=(null)')
kcf=$(grep -c ' kmem_cache_free: ' /tmp/mine)
mpa=$(grep ' mm_page_alloc: ' /tmp/mine | grep -v -c -e 'page=0000000000000000' -e 'page=(null)')
echo "@@CHECK pid=$pid trace_kmalloc=$km trace_kmem_cache_alloc=$kca trace_kfree=$kf trace_kmem_cache_free=$kcf trace_page_alloc=$mpa trace_drops=$drops"
grep -E -- "-$hpid +\[" /tmp/trace > /tmp/held_trace
km=$(grep -c -E ' kmalloc(_node)?: | kmem_cache_alloc(_node)?: ' /tmp/held_trace)
kf=$(grep -e ' kfree: ' -e ' kmem_cache_free: ' /tmp/held_trace | grep -v -c -e 'ptr=0000000000000000' -e 'ptr=(null)')
mpa=$(grep ' mm_page_alloc: ' /tmp/held_trace | grep -v -c -e 'page=0000000000000000' -e 'page=(null)')
echo "@@HOLD pid=$hpid trace_allocs=$km trace_frees=$kf trace_page_alloc=$mpa"
# The tasks of each cgroup: its workload and every task it forked, and the
# kernel's allocation and free events of those tasks. Per call site, every
# task: allocations in tracefs's window, and how many of them this shell
# made (the only task tracefs sees beyond the monitor). One pass.
awk -v a=$pid -v b=$hpid -v sh=$$ '
  BEGIN { A[a] = 1; B[b] = 1 }
  function task(   t) { t = $0; sub(/ +\[[0-9]+\].*/, "", t); sub(/.*-/, "", t); return t }
  / sched_process_fork: / { p = $0; sub(/.* pid=/, "", p); sub(/ .*/, "", p)
    c = $0; sub(/.*child_pid=/, "", c); sub(/ .*/, "", c)
    if (p in A) A[c] = 1; if (p in B) B[c] = 1; next }
  / kmalloc(_node)?: | kmem_cache_alloc(_node)?: / { t = task(); if (t in A) aa++; if (t in B) ba++
    s = $0; sub(/.*call_site=/, "", s); sub(/ ptr=.*/, "", s); n[s]++; if (t == sh) m[s]++; next }
  / kfree: | kmem_cache_free: / { if ($0 ~ /ptr=(0000000000000000|\(null\))/) next
    t = task(); if (t in A) af++; if (t in B) bf++ }
  END { printf "@@MEMBERS a_allocs=%d a_frees=%d b_allocs=%d b_frees=%d a=", aa, af, ba, bf
    for (k in A) printf "%s,", k; printf " b="; for (k in B) printf "%s,", k; print ""
    for (s in n) print "@@TSITE", n[s], m[s] + 0, s }' /tmp/trace
echo "@@NAMES $(grep ' kmem_cache_alloc: ' /tmp/mine | grep -o 'name=[^ ]*' | sort -u | tr '\n' ' ')"
# Kernels whose events name no cache (5.10): the caches the kernel has.
echo "@@SLABS $(awk 'NR > 2 {print $1}' /proc/slabinfo | tr '\n' ' ')"
# Per path: pair the workload's tracepoint events with the monitor's by
# (event, pointer), in time order (a freed pointer comes back); count pairs
# per call site, and what either side has alone per call site.
{
  awk '/ kmalloc(_node)?: | kmem_cache_alloc(_node)?: / {
      ev = ($0 ~ / kmalloc(_node)?: /) ? "kmalloc" : "kmem_cache_alloc"
      s = $0; sub(/.*call_site=/, "", s); site = s; sub(/ ptr=.*/, "", site)
      p = s; sub(/.* ptr=/, "", p); sub(/ .*/, "", p)
      print "T", ev, p, site; next }
    / mm_page_alloc: / { p = $0; sub(/.* page=/, "", p); sub(/ .*/, "", p); print "T", "mm_page_alloc", p, "-" }' /tmp/mine
  awk -v pid=$pid '$3 == pid && ($6 == "kmalloc" || $6 == "kmem_cache_alloc" || $6 == "mm_page_alloc") {
      site = $14; for (i = 15; i <= NF; i++) site = site " " $i
      print "M", $6, $12, site }' /tmp/events
} | awk '
function norm(p) { p = tolower(p); sub(/^0x/, "", p); sub(/^0+/, "", p); if (p == "" || p == "(null)") p = "0"; return p }
function rest(f,   i, r) { r = $f; for (i = f + 1; i <= NF; i++) r = r " " $i; return r }
$1 == "T" { if ($2 == "mm_page_alloc" && norm($3) == "0") next
  k = $2 SUBSEP norm($3); n[k]++; ts[k, n[k]] = rest(4); next }
$1 == "M" { if ($2 == "mm_page_alloc" && norm($3) == "0") next
  k = $2 SUBSEP norm($3); site = rest(4)
  if (h[k] < n[k]) { t = ts[k, ++h[k]]; both[$2 SUBSEP site]++; if (t != site) other[$2 SUBSEP t]++ }
  else monly[$2 SUBSEP site]++ }
END {
  for (k in n) { split(k, a, SUBSEP); for (i = h[k] + 1; i <= n[k]; i++) tonly[a[1] SUBSEP ts[k, i]]++ }
  for (k in both) { split(k, a, SUBSEP); print "@@SITE both", a[1], both[k], a[2] }
  for (k in tonly) { split(k, a, SUBSEP); print "@@SITE tracefs_only", a[1], tonly[k], a[2] }
  for (k in monly) { split(k, a, SUBSEP); print "@@SITE monitor_only", a[1], monly[k], a[2] }
  for (k in other) { split(k, a, SUBSEP); print "@@SITE tracefs_named", a[1], other[k], a[2] }
}'
echo "@@SITES-END"
echo "@@STATS-BEGIN"
cat /tmp/stats
echo "@@STATS-END"
echo "@@LEAKS-HELD-BEGIN"; cat /tmp/leaks_held; echo "@@LEAKS-HELD-END"
echo "@@LEAKS-HELD-ERR-BEGIN"; cat /tmp/leaks_held_err; echo "@@LEAKS-HELD-ERR-END"
echo "@@LEAKS-FREED-BEGIN"; cat /tmp/leaks_freed; echo "@@LEAKS-FREED-END"
echo "@@JSON-BEGIN"; cat /tmp/stats.json; echo "@@JSON-END"
echo "@@HOLDEV-BEGIN"
grep " $hpid $hpid hold kmalloc " /tmp/events
echo "@@HOLDEV-END"
"#,
    kmlink_tests::events_clear_and_unload_sh!("paths")
);

/// Events per call site the kprobe backend may have alone or lack, beyond
/// `kprobe_missed`, measured on the pinned kernels with the `paths`
/// workload (docs/core-module.md): none on any path.
const PATH_TOLERANCE: u64 = 0;

/// One `@@SITE` line: how a call site's events paired up.
#[derive(Debug)]
struct Site {
    kind: String,
    event: String,
    count: u64,
    site: String,
}

fn sites(output: &str) -> Vec<Site> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("@@SITE "))
        .filter_map(|l| {
            let mut w = l.splitn(4, ' ');
            Some(Site {
                kind: w.next()?.to_string(),
                event: w.next()?.to_string(),
                count: w.next()?.parse().ok()?,
                site: w.next()?.trim().to_string(),
            })
        })
        .collect()
}

/// The call-site function of a `%pS` string (`f+0x1/0x2 [mod]` -> `f`).
fn site_fn(site: &str) -> &str {
    site.split(['+', ' ']).next().unwrap_or(site)
}

fn check_kernel(release: &str, backend: Backend) {
    let tree = kernel(release).expect("pinned kernel");
    let dir = tempfile::tempdir().expect("tempdir");
    let ko = dir.path().join("kmlink.ko");
    let backend_arg = backend.arg();
    // Rings large enough for every event of the workload: the per-path
    // comparison pairs each tracepoint event with the monitor's.
    build_from_packages(
        release,
        backend_arg,
        &[
            "--set",
            "ring_events=131072",
            "--set",
            "ring_mem_mb=64",
            // Every allocation's stack, so that each call site of the held
            // pipes has its own (a sampling period could alias with the
            // workload's per-pipe cycle and always miss one of them).
            "--set",
            "stacks=1",
        ],
        &ko,
    )
    .unwrap_or_else(|e| panic!("{release}: {e}"));
    let mut spec = VmSpec::new(&tree.vmlinuz, SCRIPT);
    spec.memory_mb = 1024;
    spec.smp = 2;
    // Two workloads, a 10 s hold and kmlink itself in the guest: under TCG
    // on a loaded 2-core host the run takes 2-5 minutes.
    spec.timeout = Duration::from_secs(480);
    let paths = build_workload("paths", dir.path()).expect("workload");
    let hold = build_workload("hold", dir.path()).expect("workload");
    // `kmlink leaks` and `kmlink stats --json` run in the guest: a stripped
    // copy of the real binary keeps the initramfs small.
    spec.include_host_binary = Some(stripped_kmlink(dir.path()));
    spec.files = vec![
        GuestFile::new("/hold", Source::Path(hold), 0o755),
        GuestFile::new("/kmlink.ko", Source::Path(ko.clone()), 0o644),
        GuestFile::new("/paths", Source::Path(paths), 0o755),
    ];
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    eprintln!(
        "{release}: boot {:.1}s total {:.1}s",
        r.boot_time.as_secs_f64(),
        r.duration.as_secs_f64()
    );
    if let Err(e) = r.check_clean() {
        panic!(
            "{release}: {e}\n--- output ---\n{}\n--- dmesg ---\n{}",
            r.output, r.dmesg
        );
    }
    assert_eq!(
        r.taint_added(),
        Some(TAINT_O_E),
        "{release}: taint must grow by exactly O|E\n{}",
        r.dmesg
    );

    let c = workload_counts(release, backend, &r.output, "paths");
    check_paths(release, backend, &r.output, c.missed, c.stats);
    check_agreement(release, backend, &c, within);

    // The events file: the workload's events carry its pid, comm and the
    // cache names the kernel's own events name (5.10's name none: one of
    // /proc/slabinfo's).
    let slabs: Vec<&str> = r
        .output
        .lines()
        .find_map(|l| l.strip_prefix("@@SLABS"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    check_events(release, &r.output, c.pid, "paths", Some(&slabs));
    let parsed = parse_stats(c.stats).unwrap_or_else(|e| panic!("{release}: stats: {e}"));
    check_cgroups(release, backend, &r.output, &parsed, c.pid, c.missed);
    check_leaks(release, backend, &r.output);
    check_callsites(release, backend, &r.output, &parsed);
    check_cleared(release, &r.output);
}

/// The numbers of a `@@KEY k=v …` line.
fn marker(output: &str, key: &str) -> BTreeMap<String, u64> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Two cgroups, one workload each: each group's row equals the sum of its
/// member's process rows (pid `pid` in `a`, the `hold` pid in `b`), and the
/// members' counts equal the kernel's events for those pids. `kmlink stats
/// --json` in the guest resolved both ids to their paths.
fn check_cgroups(
    release: &str,
    backend: Backend,
    output: &str,
    stats: &Stats,
    pid: u32,
    missed: u64,
) {
    let ids = marker(output, "@@CGROUPS");
    let hold = marker(output, "@@HOLD");
    let (a, b, hpid) = (ids["a"], ids["b"], ids["hold"]);
    let group = |id: u64| {
        stats
            .cgroups
            .iter()
            .find(|r| r.key == CgroupKey::Id(id))
            .unwrap_or_else(|| panic!("{release}: no row for cgroup {id}: {:?}", stats.cgroups))
    };
    let tasks = output
        .lines()
        .find_map(|l| l.strip_prefix("@@MEMBERS"))
        .unwrap_or_else(|| panic!("{release}: no @@MEMBERS line"));
    let set = |key: &str| -> Vec<u64> {
        field(tasks, key)
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let counts = marker(output, "@@MEMBERS");
    let members = |ps: &[u64]| {
        let rows: Vec<_> = stats
            .processes
            .iter()
            .filter(|r| r.key.pid.is_some_and(|p| ps.contains(&u64::from(p))))
            .collect();
        let sum = |f: fn(&kmlink_procview::Counters) -> u64| {
            rows.iter().map(|r| f(&r.counts)).sum::<u64>()
        };
        (sum(|c| c.allocs), sum(|c| c.frees), sum(|c| c.bytes))
    };
    for (name, id, leader) in [("a", a, u64::from(pid)), ("b", b, hpid)] {
        let g = group(id);
        let tasks = set(name);
        assert!(
            tasks.contains(&leader),
            "{release}: {leader} not among {tasks:?}"
        );
        let (allocs, frees, bytes) = members(&tasks);
        let (ta, tf) = (
            counts[&format!("{name}_allocs")],
            counts[&format!("{name}_frees")],
        );
        eprintln!(
            "{release} [{backend:?}]: cgroup {name} ({id}): allocs {} frees {} bytes {}; its {} processes {tasks:?}: allocs {allocs} frees {frees} bytes {bytes}; tracefs for those tasks: allocs {ta} frees {tf}",
            g.counts.allocs, g.counts.frees, g.counts.bytes, tasks.len()
        );
        assert_eq!(
            (g.counts.allocs, g.counts.frees, g.counts.bytes),
            (allocs, frees, bytes),
            "{release}: cgroup {name} must count exactly its members' events"
        );
        assert!(
            within(backend, allocs, ta, missed) && within(backend, frees, tf, missed),
            "{release} [{backend:?}]: cgroup {name}: monitor allocs {allocs} frees {frees}, tracefs {ta} {tf}, kprobe_missed {missed}"
        );
    }
    let (allocs, frees, _) = members(&[hpid]);
    assert!(
        within(backend, allocs, hold["trace_allocs"], missed)
            && within(backend, frees, hold["trace_frees"], missed),
        "{release} [{backend:?}]: hold pid {hpid}: monitor allocs {allocs} frees {frees}, tracefs {hold:?}, kprobe_missed {missed}"
    );
    assert!(
        hold["trace_allocs"] >= 2 * 97,
        "{release}: hold must allocate its pipes"
    );
    let json = section(output, "JSON");
    let doc: serde_json::Value = json
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{release}: no stats --json document: {json}"));
    let groups = doc["cgroups"].as_array().expect("cgroups array");
    for (id, path) in [(a, "/a"), (b, "/b")] {
        assert!(
            groups
                .iter()
                .any(|g| g["cgroup"] == id && g["path"] == path),
            "{release}: cgroup {id} is not resolved to {path}: {groups:?}"
        );
    }
    assert!(
        doc["callsites"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.len() <= 5),
        "{release}: --top 5 keeps at most 5 call sites"
    );
}

/// The rows of `kmlink leaks --json` (validated against `$defs/leaks` of
/// docs/stats.schema.json): (objects, bytes, caller), and the document.
fn leak_json_rows(release: &str, text: &str) -> (Vec<(u64, u64, String)>, serde_json::Value) {
    let doc: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{release}: kmlink leaks --json: {e}:\n{text}"));
    let root: serde_json::Value =
        serde_json::from_str(kmlink_procview::json::STATS_SCHEMA).expect("schema");
    let schema = serde_json::json!({
        "$schema": root["$schema"],
        "$defs": root["$defs"],
        "$ref": "#/$defs/leaks",
    });
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{release}: kmlink leaks --json violates $defs/leaks: {errors:?}"
    );
    let rows = doc["callsites"]
        .as_array()
        .expect("callsites")
        .iter()
        .map(|c| {
            (
                c["objects"].as_u64().expect("objects"),
                c["bytes"].as_u64().expect("bytes"),
                c["caller"].as_str().expect("caller").to_string(),
            )
        })
        .collect();
    (rows, doc)
}

/// The rows of a `kmlink leaks` output: (objects, bytes, caller).
fn leak_rows(text: &str) -> Vec<(u64, u64, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("OBJECTS"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                w.get(6..)?.join(" "),
            ))
        })
        .collect()
}

/// `hold` kept 97 pipes for 10 s: `kmlink leaks --age 1 --stacks --json`
/// lists each alloc_pipe_info call site with exactly 97 objects and the
/// bytes of the 97 allocations the monitor saw there, and under it the
/// sampled stacks (every allocation's: `stacks=1`) that went through it,
/// cut at it: the call site first, then do_pipe2 and the system call entry
/// (both backends: under kprobes the unwinder gets past the kretprobe
/// trampoline to the real return address, docs/core-module.md). After hold
/// exits, `kmlink leaks` lists them no more.
///
/// Kernels before rethook (5.x) are the exception with the kprobe backend:
/// their unwinder stops at `kretprobe_trampoline` in a return handler, so
/// every stack ends there, none reaches a call site, and the call sites have
/// no stacks: that is asserted instead.
fn check_leaks(release: &str, backend: Backend, output: &str) {
    let (held, doc) = leak_json_rows(release, section(output, "LEAKS-HELD"));
    assert_eq!(
        doc["stacks"]["sample_every"], 1,
        "{release}: the monitor records every stack:\n{doc:#}"
    );
    let sum = marker(output, "@@STACKSUM");
    eprintln!("{release} [{backend:?}]: stack table: {sum:?}");
    let pre_rethook = release.starts_with("5.");
    let cut = backend == Backend::Kprobe && pre_rethook;
    let note = section(output, "LEAKS-HELD-ERR").trim();
    if cut {
        assert!(
            note.contains("every sampled stack stops at kretprobe_trampoline"),
            "{release} [kprobe]: kmlink leaks --stacks should say why no stack is shown: {note:?}"
        );
    } else {
        assert!(
            note.is_empty(),
            "{release} [{backend:?}]: kmlink leaks said: {note}"
        );
    }
    if cut {
        assert!(
            sum["stacks"] > 0 && sum["trampoline"] == sum["stacks"] && sum["syscall"] == 0,
            "{release} [kprobe]: every stack should stop at kretprobe_trampoline: {sum:?}"
        );
    } else {
        assert!(
            sum["trampoline"] == 0 && sum["syscall"] > 0,
            "{release} [{backend:?}]: stacks should get past any trampoline to the system call: {sum:?}"
        );
    }
    let freed = leak_rows(section(output, "LEAKS-FREED"));
    let events: Vec<Vec<&str>> = section(output, "HOLDEV")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() > 13)
        .collect();
    let pipes: Vec<&(u64, u64, String)> = held
        .iter()
        .filter(|(_, _, c)| c.starts_with("alloc_pipe_info+"))
        .collect();
    eprintln!(
        "{release}: leaks while held: {pipes:?}; after: {} rows\n{}",
        freed.len(),
        section(output, "LEAKS-HELD")
            .lines()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !pipes.is_empty(),
        "{release}: no alloc_pipe_info call site in:
{}",
        section(output, "LEAKS-HELD")
    );
    for (objects, bytes, caller) in &pipes {
        let mine: Vec<&Vec<&str>> = events
            .iter()
            .filter(|w| w[13..].join(" ") == *caller)
            .collect();
        let want: u64 = mine
            .iter()
            .map(|w| w[7].parse::<u64>().expect("bytes_alloc"))
            .sum();
        assert_eq!(*objects, 97, "{release}: {caller}: 97 pipes held");
        assert_eq!(mine.len(), 97, "{release}: {caller}: hold's events there");
        assert_eq!(*bytes, want, "{release}: {caller}: bytes outstanding");
        let site = doc["callsites"]
            .as_array()
            .expect("callsites")
            .iter()
            .find(|c| c["caller"] == caller.as_str())
            .expect("the row");
        let paths = site["stacks"].as_array().expect("stacks");
        if cut {
            assert!(
                paths.is_empty(),
                "{release}: {caller} has stacks through it:\n{site:#}"
            );
            continue;
        }
        let sampled: u64 = paths
            .iter()
            .map(|p| p["allocs"].as_u64().expect("allocs"))
            .sum();
        let frames = |p: &serde_json::Value| -> Vec<String> {
            p["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| f.as_str().expect("frame").to_string())
                .collect()
        };
        // Every allocation there was sampled: the stacks through the call
        // site count at least its allocations (the stack table is read
        // after the stats, so it may have more), unless the stack table
        // dropped some.
        let allocs = site["allocs"].as_u64().expect("allocs");
        let dropped = doc["stacks"]["dropped"].as_u64().expect("dropped");
        assert!(
            sampled >= 97 && (dropped > 0 || sampled >= allocs),
            "{release}: {caller}: {sampled} sampled stacks through it for {allocs} allocations \
             ({dropped} stacks dropped):\n{site:#}"
        );
        let pipe = paths
            .iter()
            .map(frames)
            .find(|f| {
                f.iter()
                    .any(|f| kmlink_procview::stacks::function(f) == "do_pipe2")
            })
            .unwrap_or_else(|| panic!("{release}: {caller}: no stack through do_pipe2:\n{site:#}"));
        assert_eq!(
            &pipe[0], caller,
            "{release}: a path starts at its call site"
        );
        assert!(
            pipe.iter()
                .any(|f| kmlink_procview::stacks::function(f) == "do_syscall_64"),
            "{release}: {caller}: the path reaches the system call: {pipe:?}"
        );
        eprintln!(
            "{release}: {caller}: {} paths, {sampled} sampled allocations; {}",
            paths.len(),
            pipe.join(" <- ")
        );
        assert!(
            !freed.iter().any(|(_, _, c)| c == caller),
            "{release}: {caller} still listed after hold closed its pipes:
{}",
            section(output, "LEAKS-FREED")
        );
    }
}

/// The call-site table accounts for every allocation (its rows sum to the
/// totals, nothing in `(other)`), and with the tracepoint backend each call
/// site's count equals the kernel's kmem events at that call site (every
/// task), less at most what this shell did outside the monitor's window.
/// (The kprobe backend's kretprobes make tracefs name the trampoline.)
fn check_callsites(release: &str, backend: Backend, output: &str, stats: &Stats) {
    let text = section(output, "STATS");
    let excerpt: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# cgroup:"))
        .take_while(|l| !l.starts_with("# totals:"))
        .take(12)
        .collect();
    eprintln!(
        "{release} [{backend:?}]: stats excerpt:\n{}",
        excerpt.join("\n")
    );
    let sum: u64 = stats.callsites.iter().map(|r| r.allocs).sum();
    let totals = stats.totals.expect("totals").allocs;
    assert_eq!(
        sum, totals,
        "{release}: call-site rows must sum to the total allocations"
    );
    assert!(
        !stats.callsites.iter().any(|r| r.key == SiteKey::Other),
        "{release}: call sites overflowed the table"
    );
    if backend != Backend::Tracepoint {
        return;
    }
    let mut monitor: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &stats.callsites {
        *monitor.entry(r.key.display()).or_default() += r.allocs;
    }
    let mut trace: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in output.lines().filter_map(|l| l.strip_prefix("@@TSITE ")) {
        let mut w = l.splitn(3, ' ');
        let (Some(n), Some(sh), Some(site)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        trace.insert(
            site.trim().to_string(),
            (n.parse().expect("n"), sh.parse().expect("sh")),
        );
    }
    let mut bad = Vec::new();
    let mut exact = 0;
    for (site, &(n, sh)) in &trace {
        let m = monitor.get(site.as_str()).copied().unwrap_or(0);
        if m > n || m + sh < n {
            bad.push(format!(
                "{site}: monitor {m}, tracefs {n} (this shell {sh})"
            ));
        } else if m == n {
            exact += 1;
        }
    }
    for (site, m) in &monitor {
        if !trace.contains_key(*site) {
            bad.push(format!("{site}: monitor {m}, tracefs none"));
        }
    }
    eprintln!(
        "{release} [tracepoint]: call sites: {} in tracefs, {} in the monitor, {exact} equal, the rest within this shell's events",
        trace.len(),
        monitor.len()
    );
    assert!(trace.len() > 20, "{release}: too few call sites in tracefs");
    assert!(bad.is_empty(), "{release}: per call site: {bad:#?}");
}

/// Per path: every tracepoint event of the workload must pair with a
/// monitor event of the same kind and pointer. With the tracepoint backend
/// nothing is left on either side and the call sites agree; with the kprobe
/// backend what is left is bounded by `kprobe_missed` (+ `PATH_TOLERANCE`
/// per call site), and the kernel's own events name
/// `arch_rethook_trampoline` for what the backend's kretprobes wrap.
fn check_paths(release: &str, backend: Backend, output: &str, missed: u64, stats: &str) {
    assert!(
        output.contains("@@SITES-END"),
        "{release}: no per-path comparison in the output"
    );
    let all = sites(output);
    let total =
        |kind: &str| -> u64 { all.iter().filter(|s| s.kind == kind).map(|s| s.count).sum() };
    let (paired, tracefs_only, monitor_only) =
        (total("both"), total("tracefs_only"), total("monitor_only"));
    let mut by_fn: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in all.iter().filter(|s| s.kind == "both") {
        *by_fn
            .entry((s.event.as_str(), site_fn(&s.site)))
            .or_default() += s.count;
    }
    let top: Vec<String> = {
        let mut v: Vec<_> = by_fn.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .take(12)
            .map(|((e, f), n)| format!("{e} {f} {n}"))
            .collect()
    };
    let leftovers: Vec<String> = all
        .iter()
        .filter(|s| s.kind == "tracefs_only" || s.kind == "monitor_only")
        .map(|s| format!("{} {} {} {}", s.kind, s.event, s.count, s.site))
        .collect();
    let renamed = total("tracefs_named");
    let renamed_sites: Vec<String> = all
        .iter()
        .filter(|s| s.kind == "tracefs_named")
        .take(8)
        .map(|s| format!("{} {} {}", s.event, s.count, s.site))
        .collect();
    let trampoline: u64 = all
        .iter()
        .filter(|s| s.kind == "tracefs_named" && site_fn(&s.site) == "arch_rethook_trampoline")
        .map(|s| s.count)
        .sum();
    eprintln!(
        "{release} [{backend:?}]: per path: {paired} events paired over {} call sites, tracefs alone {tracefs_only}, monitor alone {monitor_only}, \
         tracefs naming another call site {renamed} ({trampoline} arch_rethook_trampoline); busiest: {top:?}; left over: {leftovers:?}",
        all.iter().filter(|s| s.kind == "both").count()
    );
    assert!(
        paired > 1000,
        "{release}: too few events paired ({paired}): are pointers hashed in tracefs?"
    );
    // seq_file buffers, fd tables and select bitmaps come from kvmalloc:
    // named by their callers where kvmalloc inlines the kmalloc (6.16+),
    // by kvmalloc itself where it calls __kmalloc_node (6.1-6.15).
    let kvmalloc = [
        "seq_read_iter",
        "alloc_fdtable",
        "core_sys_select",
        "__kvmalloc_node_noprof",
        "kvmalloc_node",
    ];
    assert!(
        by_fn
            .keys()
            .any(|(e, f)| *e == "kmalloc" && kvmalloc.contains(f)),
        "{release}: no kvmalloc allocation of the workload was paired: {top:?}"
    );
    assert!(
        by_fn.keys().any(|(e, _)| *e == "mm_page_alloc"),
        "{release}: no page allocation of the workload was paired"
    );
    match backend {
        Backend::Tracepoint => {
            assert!(
                tracefs_only == 0 && monitor_only == 0 && renamed == 0,
                "{release}: per path the monitor must equal the tracepoints: {leftovers:?}, {renamed} named differently by tracefs: {renamed_sites:?}\n{stats}"
            );
        }
        Backend::Kprobe => {
            let per_site = leftovers.len() as u64 * PATH_TOLERANCE;
            assert!(
                tracefs_only + monitor_only <= missed + per_site,
                "{release} [kprobe]: per path: {tracefs_only} tracepoint events the monitor lacks and {monitor_only} it has alone, \
                 kprobe_missed {missed}: {leftovers:?}\n{stats}"
            );
        }
    }
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn monitor_counts_match_kmem_tracepoints_on_every_pinned_kernel() {
    every_pinned_kernel(Backend::Tracepoint);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn kprobe_backend_counts_track_kmem_tracepoints_on_every_pinned_kernel() {
    every_pinned_kernel(Backend::Kprobe);
}

/// Every pinned kernel, or those of `KMLINK_MONITOR_KERNELS` (comma
/// separated) when set.
fn every_pinned_kernel(backend: Backend) {
    let mut failures = Vec::new();
    let only = std::env::var("KMLINK_MONITOR_KERNELS").ok();
    let mut releases = pinned_releases().expect("pins");
    if let Some(only) = &only {
        releases.retain(|r| only.split(',').any(|o| o.trim() == r));
        assert!(
            !releases.is_empty(),
            "KMLINK_MONITOR_KERNELS={only} names no pinned kernel"
        );
    }
    for release in releases {
        if let Err(e) = std::panic::catch_unwind(|| check_kernel(&release, backend)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into());
            failures.push(format!("{release}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
