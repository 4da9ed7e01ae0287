//! The monitor on arm64 Debian kernels: `kmlink build --from-packages`
//! links the aarch64 core for bookworm's 6.1.0-47-arm64 (4 KiB pages), for
//! trixie-backports' 7.3.4+deb13-arm64-16k (16 KiB pages, unversioned,
//! PREEMPT) and for bullseye's 5.10.0-30-arm64 (the CPU number in
//! `task_struct`, not `thread_info`; the 5.10 kmem tracepoints; an export
//! table that lists some names twice); in qemu-system-aarch64 (virt, TCG) with Debian's arm64
//! busybox the module loads, taints exactly O|E, counts a busybox
//! workload's allocations as the kernel's own kmem tracepoint events do,
//! names the cache of each `kmem_cache_alloc` event as the kernel does
//! (5.10's events name none: the monitor's cache must have the size the
//! kernel allocated and be one of /proc/slabinfo's), and unloads cleanly. Both kernels come from the verified archive indexes
//! (`kmlink crawler fetch`: InRelease signature, index hash, package size
//! and SHA256), cached under the kmlink cache.
//!
//! These boot real kernels: `cargo test -p kmlink-tests -- --ignored`.

use std::time::Duration;

use kmlink_tests::monitor::{kprobe_missed, pid_sum, section, tables, within, Backend, CheckLine};
use kmlink_tests::{arm64, build_from_packages, kmlink_ok};

/// Bookworm's arm64 kernel: 4 KiB pages, modversions.
const BOOKWORM: &str = "6.1.0-47-arm64";
/// Bullseye's arm64 kernel (its main suite, so its packages stay).
const BULLSEYE: &str = "5.10.0-30-arm64";
/// The newest arm64 kernel in the archive, in its 16 KiB-page flavour.
const NEWEST_16K: &str = "7.3.4+deb13-arm64-16k";

/// TAINT_OOT_MODULE | TAINT_UNSIGNED_MODULE.
const TAINT_O_E: u64 = (1 << 12) | (1 << 13);

/// Guest script: tracefs's kmem events and the monitor armed around a
/// busybox workload in a subshell; both counts for its pid, the taint
/// before and after, the kernel log since insmod.
const SCRIPT: &str = concat!(
    r#"
echo "@@UNAME $(uname -r) $(uname -m)"
T=/sys/kernel/tracing
[ -d $T/events/kmem ] || exit 19
echo "@@TAINT-BEFORE $(cat /proc/sys/kernel/tainted)"
echo 0 > $T/tracing_on
echo 65536 > $T/buffer_size_kb || exit 18
# Raw pointers, to pair the kernel's events with the monitor's.
[ -e $T/options/hash-ptr ] && { echo 0 > $T/options/hash-ptr || exit 21; }
echo > $T/trace
for e in kmem/kmalloc kmem/kmem_cache_alloc kmem/kfree kmem/kmem_cache_free kmem/mm_page_alloc; do
  echo 1 > $T/events/$e/enable || exit 20
done
# 5.10: the _node allocations are events of their own.
for e in kmem/kmalloc_node kmem/kmem_cache_alloc_node; do
  [ ! -d $T/events/$e ] || echo 1 > $T/events/$e/enable || exit 20
done
dmesg -c > /dev/null
insmod /kmlink.ko; r=$?; echo "@@INSMOD $r"
[ $r = 0 ] || { dmesg; exit 22; }
echo "@@TAINT-AFTER $(cat /proc/sys/kernel/tainted)"
[ -r /proc/kmlink/stats ] || exit 23
echo 1 > $T/tracing_on
# A light walk: /sys/kernel as a whole holds tracefs itself, whose
# listing under tracing overran a 64 MiB per-CPU buffer under TCG.
sh -c 'for i in $(seq 40); do cat /proc/self/status >/dev/null; ls -R /sys/kernel/mm /proc/sys/vm > /dev/null 2>&1; done' &
pid=$!
wait $pid
echo 0 > $T/tracing_on
# Paused, the monitor's rings keep the workload's newest events.
echo pause > /proc/kmlink/control || exit 26
cat /proc/kmlink/stats > /tmp/stats
cat /proc/kmlink/events > /tmp/events
"#,
    kmlink_tests::trace_of_pid_sh!(),
    r#"km=$(grep -c -E ' kmalloc(_node)?: ' /tmp/mine)
kca=$(grep -c -E ' kmem_cache_alloc(_node)?: ' /tmp/mine)
# Page allocations that succeeded, and their size in pages (2^order each).
pa=$(awk '/ mm_page_alloc: / && !/page=0000000000000000/ && !/page=\(null\)/ {
  o = $0; sub(/.* order=/, "", o); sub(/ .*/, "", o); n++
  p = 1; for (i = 0; i < o; i++) p *= 2; u += p }
  END { printf "trace_page_alloc=%d trace_page_units=%d", n, u }' /tmp/mine)
ps=$(awk '/^KernelPageSize:/ { print $2 * 1024; exit }' /proc/self/smaps)
echo "@@CHECK pid=$pid trace_kmalloc=$km trace_kmem_cache_alloc=$kca $pa page_size=$ps trace_drops=$drops"
# The cache of each of the workload's kmem_cache_alloc events, paired by
# pointer (the last allocation of each on either side): the monitor's cache
# size must be the kernel's bytes_alloc, and its name the kernel's where the
# kernel names one (5.10 names none: the monitor finds it from the object's
# page).
awk -v pid=$pid '
  function norm(p) { p = tolower(p); sub(/^0x/, "", p); sub(/^0+/, "", p); return p }
  FNR == NR { if ($0 !~ / kmem_cache_alloc(_node)?: /) next
    p = $0; sub(/.* ptr=/, "", p); sub(/ .*/, "", p); p = norm(p)
    b = $0; sub(/.* bytes_alloc=/, "", b); sub(/ .*/, "", b); TB[p] = b
    n = "-"; if ($0 ~ / name=/) { n = $0; sub(/.* name=/, "", n); sub(/ .*/, "", n) }; TN[p] = n; next }
  $3 == pid && $6 == "kmem_cache_alloc" { p = norm($12); MB[p] = $8; MN[p] = $9 }
  END { for (p in MB) { if (!(p in TB)) { lone++; continue }
      pairs++; if (MN[p] == "-") unnamed++; else { C[MN[p]] = 1
        if (MB[p] != TB[p]) size++; if (TN[p] != "-" && TN[p] != MN[p]) name++ } }
    printf "@@CACHES pairs=%d unnamed=%d size_mismatch=%d name_mismatch=%d lone=%d names=", pairs, unnamed, size, name, lone
    for (c in C) printf "%s,", c; print "" }' /tmp/mine /tmp/events
echo "@@SLABS $(awk 'NR > 2 {print $1}' /proc/slabinfo | tr '\n' ' ')"
echo "@@STATS-BEGIN"
cat /tmp/stats
echo "@@STATS-END"
rmmod kmlink; echo "@@RMMOD $?"
[ -e /proc/kmlink ] && echo "@@PROC-LEFT"
echo "@@DMESG-BEGIN"
dmesg
echo "@@DMESG-END"
"#
);

fn number(console: &str, tag: &str) -> u64 {
    console
        .lines()
        .find_map(|l| l.strip_prefix(tag))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {tag} in:\n{console}"))
}

/// `kmlink crawler fetch RELEASE` (verified, cached); the path it printed
/// for a key (`vmlinuz`, `modules_dir`, …).
fn fetch(release: &str) -> impl Fn(&str) -> std::path::PathBuf {
    let fetched = kmlink_ok(&["crawler", "fetch", release]).expect("kmlink crawler fetch");
    move |key| {
        fetched
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|p| std::path::PathBuf::from(p.trim()))
            .unwrap_or_else(|| panic!("no {key} in:\n{fetched}"))
    }
}

/// `page_size` is the kernel's (the guest's `KernelPageSize` must say so).
fn run(release: &str, page_size: u64, backend: Backend) {
    if std::process::Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_err()
    {
        kmlink_testkit::missing("qemu-system-aarch64 (scripts/setup)");
        return;
    }
    let busybox = match arm64::busybox() {
        Ok(b) => b,
        Err(e) => {
            kmlink_testkit::missing(&format!("Debian's busybox-static for arm64: {e:#}"));
            return;
        }
    };
    let vmlinuz = fetch(release)("vmlinuz");
    let dir = tempfile::tempdir().expect("tempdir");
    let ko = dir.path().join("kmlink.ko");
    build_from_packages(release, backend.arg(), &[], &ko).expect("kmlink build");
    let module = std::fs::read(&ko).expect("module");
    let boot = arm64::boot(
        &vmlinuz,
        &busybox,
        SCRIPT,
        &[("/kmlink.ko", module)],
        Duration::from_secs(900),
    )
    .expect("boot");
    let c = &boot.output;
    let ctx = || format!("{release} [{}]", backend.arg());
    assert!(
        boot.reached_init,
        "{}: did not boot to /init:\n{}",
        ctx(),
        boot.serial
    );
    assert!(
        c.lines().any(|l| l == format!("@@UNAME {release} aarch64")),
        "{}: booted another kernel than {release}:\n{c}",
        ctx()
    );
    assert!(
        boot.problems.is_empty(),
        "{}: kernel problems: {:?}",
        ctx(),
        boot.problems
    );
    assert_eq!(
        boot.exit_status,
        Some(0),
        "{}: guest script:\n{}",
        ctx(),
        boot.serial
    );
    assert_eq!(number(c, "@@INSMOD "), 0, "{}: insmod:\n{c}", ctx());
    assert_eq!(number(c, "@@TAINT-BEFORE "), 0, "{}: taint before", ctx());
    assert_eq!(
        number(c, "@@TAINT-AFTER "),
        TAINT_O_E,
        "{}: taint after insmod",
        ctx()
    );
    assert_eq!(number(c, "@@RMMOD "), 0, "{}: rmmod:\n{c}", ctx());
    assert!(!c.contains("@@PROC-LEFT"), "{}: /proc/kmlink left", ctx());

    let check = CheckLine::find(c);
    let n = |k: &str| check.n(k);
    let pid = n("pid").to_string();
    let trace = n("trace_kmalloc") + n("trace_kmem_cache_alloc");
    assert_eq!(n("trace_drops"), 0, "{}: tracefs dropped events", ctx());
    let stats = section(c, "STATS");
    let t = tables(stats);
    let process = t.get("process").expect("process table");
    let mine = |name: &str| pid_sum(process, &pid, name);
    let monitor = mine("allocs");
    let (pages, page_bytes) = (mine("page_allocs"), mine("page_bytes"));
    let (_, dropped) = t.get("dropped").expect("dropped table");
    let missed = kprobe_missed(dropped);
    let (trace_pages, trace_page_bytes) = (
        n("trace_page_alloc"),
        n("trace_page_units") * n("page_size"),
    );
    eprintln!(
        "{}: pid {pid}: allocations monitor {monitor}, tracefs {} kmalloc + {} kmem_cache_alloc = {trace}; page allocations monitor {pages} ({page_bytes} bytes), tracefs {trace_pages} ({trace_page_bytes} bytes in {}-byte pages); kprobe_missed {missed}; {:.1} s in QEMU",
        ctx(),
        n("trace_kmalloc"),
        n("trace_kmem_cache_alloc"),
        n("page_size"),
        boot.duration.as_secs_f64()
    );
    assert_eq!(
        n("page_size"),
        page_size,
        "{}: the kernel's page size",
        ctx()
    );
    assert!(trace > 100, "{}: the workload must allocate", ctx());
    if backend == Backend::Tracepoint {
        assert_eq!(missed, 0, "{}: kprobe_missed without kprobes", ctx());
    }
    assert!(
        within(backend, monitor, trace, missed),
        "{}: allocations: monitor {monitor}, tracefs {trace}, kprobe_missed {missed}\n{stats}",
        ctx()
    );
    // The page size is a link-time fact: the monitor's page bytes are
    // PAGE_SIZE << order, as tracefs's orders say.
    assert!(
        trace_pages > 0,
        "{}: the workload must allocate pages",
        ctx()
    );
    assert!(
        within(backend, pages, trace_pages, missed),
        "{}: page allocations: monitor {pages}, tracefs {trace_pages}, kprobe_missed {missed}\n{stats}",
        ctx()
    );
    if pages == trace_pages {
        assert_eq!(
            page_bytes,
            trace_page_bytes,
            "{}: page bytes ({page_size}-byte pages)",
            ctx()
        );
    }
    // The caches of the workload's kmem_cache_alloc events, paired by
    // pointer with the kernel's: named (5.10's events name none: the
    // monitor finds the cache from the object's page), of the size the
    // kernel allocated, the kernel's own name where it gives one, and
    // caches /proc/slabinfo lists.
    let caches = CheckLine(
        c.lines()
            .find(|l| l.starts_with("@@CACHES"))
            .unwrap_or_else(|| panic!("{}: no @@CACHES line", ctx())),
    );
    eprintln!("{}: {}", ctx(), caches.0);
    assert!(caches.n("pairs") > 0, "{}: no pairs: {}", ctx(), caches.0);
    for k in ["unnamed", "size_mismatch", "name_mismatch"] {
        assert_eq!(caches.n(k), 0, "{}: {k}: {}", ctx(), caches.0);
    }
    let slabs: Vec<&str> = c
        .lines()
        .find_map(|l| l.strip_prefix("@@SLABS"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let names = caches.0.split("names=").nth(1).unwrap_or_default();
    for name in names.split(',').filter(|n| !n.is_empty()) {
        assert!(
            slabs.contains(&name),
            "{}: cache {name} not in /proc/slabinfo {slabs:?}",
            ctx()
        );
    }
    let backend_line = format!("backend {}", backend.arg());
    assert!(
        stats.lines().any(|l| l.trim() == backend_line),
        "{}: stats must say {backend_line}",
        ctx()
    );

    let dmesg = section(c, "DMESG");
    for bad in [
        "WARNING",
        "BUG",
        "Oops",
        "Call trace",
        "refus",
        "Unknown symbol",
        "disagrees",
        "invalid",
        "panic",
    ] {
        assert!(
            !dmesg.contains(bad),
            "{}: the kernel log says {bad:?}:\n{dmesg}",
            ctx()
        );
    }
    assert!(
        dmesg.lines().any(|l| l.contains("kmlink: unloaded")),
        "{}: no unload line:\n{dmesg}",
        ctx()
    );
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_monitor_tracepoint() {
    run(BOOKWORM, 4096, Backend::Tracepoint);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_monitor_kprobe() {
    run(BOOKWORM, 4096, Backend::Kprobe);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_16k_monitor_tracepoint() {
    run(NEWEST_16K, 16384, Backend::Tracepoint);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_16k_monitor_kprobe() {
    run(NEWEST_16K, 16384, Backend::Kprobe);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_5_10_monitor_tracepoint() {
    run(BULLSEYE, 4096, Backend::Tracepoint);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn arm64_5_10_monitor_kprobe() {
    run(BULLSEYE, 4096, Backend::Kprobe);
}

/// A cross-build for an arm64 kernel with its raw Image as `--btf`: the
/// BTF and the export table both come out of the Image (found by content),
/// and the CRCs the module carries are compared with the Image's own.
#[test]
#[ignore = "fetches a real kernel's packages"]
fn arm64_image_as_btf_gives_the_export_table() {
    let path = fetch(BOOKWORM);
    let (vmlinuz, modules) = (path("vmlinuz"), path("modules_dir"));
    let donor = modules.join("kernel/net/key/af_key.ko");
    let donor = ["", ".xz", ".zst"]
        .iter()
        .map(|ext| std::path::PathBuf::from(format!("{}{ext}", donor.display())))
        .find(|p| p.is_file())
        .expect("af_key.ko in the modules package");
    let record = kmlink_tests::workspace().join("linker/tests/fixtures/6.1.0-47-arm64.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let ko = dir.path().join("kmlink.ko");
    let run = kmlink_tests::kmlink(&[
        "build",
        "--kernel",
        BOOKWORM,
        "--record",
        record.to_str().expect("utf-8"),
        "--btf",
        vmlinuz.to_str().expect("utf-8"),
        "--donor",
        donor.to_str().expect("utf-8"),
        "-o",
        ko.to_str().expect("utf-8"),
    ])
    .expect("kmlink build with the Image as --btf");
    // The checks' verdicts are written to stderr.
    let out = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "kmlink build failed:\n{out}");
    let crcs = out
        .lines()
        .find(|l| l.contains("crcs"))
        .unwrap_or_else(|| panic!("no crcs check:\n{out}"));
    assert!(
        crcs.contains(&format!("image {}:", vmlinuz.display())) && crcs.contains(" compared"),
        "the module's CRCs must be compared with the Image's: {crcs}"
    );
    let imports = out
        .lines()
        .find(|l| l.contains("imports"))
        .expect("imports");
    assert!(
        imports.contains(&format!("image {}: 10942 exports", vmlinuz.display())),
        "the Image's export table must be read: {imports}"
    );
    assert!(out.contains("all 9 checks agree"), "{out}");
    assert!(ko.is_file());
}
