//! The operator's view on a real kernel: with the monitor loaded and an
//! allocation-heavy process running, `kmlink top` (batch mode, inside the
//! guest) shows that process at the top of the per-process view within two
//! refreshes, and `kmlink stats --json` validates against its schema.
//! In the same boot, `kmlink exporter --listen` is scraped during the
//! workload between two reads of `/proc/kmlink/stats` (every counter the
//! scrape carries lies between the two), and again with the monitor paused
//! (the scrape equals the stats file's counters exactly); the text passes
//! `promtool check metrics` on the host. The module is linked with
//! `--set stacks=64`: `kmlink flame` in the guest draws the sampled stacks,
//! and the host draws `/proc/kmlink/stacks` as an SVG that shows the
//! workload's path (syscall entry, pipe creation, the slab allocator).
//!
//! Boots a real kernel: `cargo test -p kmlink-tests --test view_vm -- --ignored`.

use std::time::Duration;

use kmlink_tests::{
    build_workload, kernel, kmlink_ok, pinned_releases, stripped_kmlink, workspace,
};
use kmlink_vm::{GuestFile, Source, VmSpec};

/// The 6.12 kernel the issue names, or the first pinned one.
fn release() -> String {
    let all = pinned_releases().expect("pins");
    all.iter()
        .find(|r| r.starts_with("6.12.") && !r.contains("-rt-"))
        .cloned()
        .unwrap_or_else(|| all[0].clone())
}

#[test]
#[ignore = "boots a real kernel in QEMU"]
fn top_shows_the_allocating_process_first_and_stats_json_validates() {
    let release = release();
    let tree = kernel(&release).expect("kernel");
    let dir = tempfile::tempdir().expect("tempdir");
    let ko = dir.path().join("kmlink.ko");
    kmlink_ok(&[
        "build",
        "--kernel",
        &release,
        "--from-packages",
        "--set",
        "stacks=64",
        "-o",
        ko.to_str().expect("utf8"),
    ])
    .expect("build");
    // A stripped copy of the real binary keeps the initramfs small.
    let bin = stripped_kmlink(dir.path());
    let bench = build_workload("allocbench", dir.path()).expect("allocbench workload");

    let script = r#"
insmod /kmlink.ko || exit 20
/allocbench 100000000 1 > /dev/null &
hog=$!
kmlink top --batch 2 -d 1 --sort allocs/s > /tmp/top.txt 2>&1 || { cat /tmp/top.txt; exit 21; }
kmlink stats --json > /tmp/stats.json || exit 22
ifconfig lo 127.0.0.1 up || exit 24
kmlink exporter --listen 127.0.0.1:9465 --top-processes 1000 --top-callsites 100000 2>/tmp/exporter.err &
exporter=$!
i=0; until wget -q -O /dev/null http://127.0.0.1:9465/metrics 2>/dev/null; do
  i=$((i+1)); [ $i -lt 50 ] || { cat /tmp/exporter.err; exit 25; }; sleep 0.2
done
cat /proc/kmlink/stats > /tmp/s1
wget -q -O /tmp/m1 http://127.0.0.1:9465/metrics || exit 26
cat /proc/kmlink/stats > /tmp/s2
echo pause > /proc/kmlink/control; sleep 0.5
cat /proc/kmlink/stats > /tmp/s3
wget -q -O /tmp/m2 http://127.0.0.1:9465/metrics || exit 27
cat /proc/kmlink/stats > /tmp/s4
echo resume > /proc/kmlink/control
wget -q -O /tmp/m404 http://127.0.0.1:9465/ 2>/dev/null && exit 28
kill $exporter
kmlink flame -o /tmp/flame.svg || exit 29
echo "@@SVG-BYTES $(wc -c < /tmp/flame.svg) $(grep -c alloc_pipe_info /tmp/flame.svg)"
cat /proc/kmlink/stacks > /tmp/stacks
for f in s1 m1 s2 s3 m2 s4 stacks; do echo "@@$f-BEGIN"; cat /tmp/$f; echo "@@$f-END"; done
kill $hog
echo "@@HOG $hog"
echo "@@TOP-BEGIN"; cat /tmp/top.txt; echo "@@TOP-END"
echo "@@JSON-BEGIN"; cat /tmp/stats.json; echo "@@JSON-END"
wait $hog 2>/dev/null
rmmod kmlink || exit 23
"#;
    let mut spec = VmSpec::new(&tree.vmlinuz, script);
    spec.memory_mb = 1024;
    spec.timeout = Duration::from_secs(240);
    spec.include_host_binary = Some(bin);
    spec.files = vec![
        GuestFile::new("/kmlink.ko", Source::Path(ko), 0o644),
        GuestFile::new("/allocbench", Source::Path(bench), 0o755),
    ];
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    if let Err(e) = r.check_clean() {
        panic!("{release}: {e}\n{}", r.output);
    }
    let section = |name: &str| {
        r.output
            .split(&format!("@@{name}-BEGIN"))
            .nth(1)
            .and_then(|s| s.split(&format!("@@{name}-END")).next())
            .unwrap_or_else(|| panic!("no {name} in {}", r.output))
    };
    let top = section("TOP");
    eprintln!("{top}");
    // The last frame's first process row.
    let last_frame = top.rsplit("processes (").next().expect("a process table");
    let first_row = last_frame
        .lines()
        .skip(1)
        .find(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .expect("a process row");
    assert!(
        first_row.contains("allocbench"),
        "{release}: top row is {first_row:?}\n{top}"
    );

    let json_text = section("JSON");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("docs/stats.schema.json")).expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let mut n = 0;
    for line in json_text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
    {
        let doc: serde_json::Value = serde_json::from_str(line).expect("stats json");
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{release}: stats --json violates the schema: {errors:?}"
        );
        n += 1;
    }
    assert_eq!(n, 1, "{release}: one JSON document expected:\n{json_text}");

    check_exporter(&release, &r.output);
    check_stacks(&release, &r.output);
}

/// The sampled stacks show the workload's path from the syscall down to
/// the allocator, in the guest's SVG and in the one drawn here.
fn check_stacks(release: &str, output: &str) {
    let text = output
        .split("@@stacks-BEGIN")
        .nth(1)
        .and_then(|s| s.split("@@stacks-END").next())
        .expect("stacks section");
    let stacks = kmlink_procview::parse_stacks(text.trim_start()).expect("stacks parse");
    let svg_line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("@@SVG-BYTES "))
        .unwrap_or_else(|| panic!("{release}: no flame graph from the guest:\n{output}"));
    let mut it = svg_line
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("number"));
    let (bytes, hits) = (it.next().expect("size"), it.next().expect("count"));
    assert!(
        bytes > 1000 && hits > 0,
        "{release}: guest SVG {bytes} bytes, {hits} alloc_pipe_info; stacks:\n{text}"
    );
    assert_eq!(stacks.sample_every, 64, "{release}: {text}");
    let svg = kmlink_exporter::flame::svg(
        &stacks,
        kmlink_exporter::flame::Weight::Allocs,
        "kmlink: kernel stacks of slab allocations",
    )
    .expect("svg");
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("flame.svg");
    std::fs::write(&kept, &svg).expect("keep the svg");
    let svg = String::from_utf8(svg).expect("utf8");
    // The workload's path: syscall entry, pipe creation, the allocator.
    // (alloc_pipe_info also serves FIFOs, through fifo_open: a sample of
    // that path is not the workload's.)
    let through = |s: &kmlink_procview::stacks::Stack, function: &str| {
        s.frames
            .iter()
            .any(|f| kmlink_procview::stacks::function(f) == function)
    };
    let pipe = stacks
        .stacks
        .iter()
        .find(|s| through(s, "alloc_pipe_info") && through(s, "do_pipe2"))
        .unwrap_or_else(|| {
            panic!("{release}: no stack through do_pipe2 and alloc_pipe_info:\n{text}")
        });
    for want in ["do_syscall_64", "do_pipe2", "alloc_pipe_info"] {
        assert!(
            pipe.frames
                .iter()
                .any(|f| kmlink_procview::stacks::function(f) == want),
            "{release}: {want} not on the pipe stack {:?}",
            pipe.frames
        );
        assert!(svg.contains(want), "{release}: {want} not in the SVG");
    }
    eprintln!(
        "{release}: stacks: {} distinct, {} sampled, {} dropped; SVG in {}; pipe stack: {}",
        stacks.stacks.len(),
        stacks.info.get("sampled").copied().unwrap_or(0),
        stacks.info.get("dropped").copied().unwrap_or(0),
        kept.display(),
        pipe.frames.join(" <- ")
    );
}

/// The scrape during the workload lies between the stats read before and
/// after it; the scrape of the paused monitor equals its stats; promtool
/// accepts both.
fn check_exporter(release: &str, output: &str) {
    let section = |name: &str| -> String {
        output
            .split(&format!("@@{name}-BEGIN"))
            .nth(1)
            .and_then(|s| s.split(&format!("@@{name}-END")).next())
            .unwrap_or_else(|| panic!("no {name} in {output}"))
            .to_string()
    };
    let stats = |name: &str| kmlink_procview::parse_stats(&section(name)).expect("stats parse");
    let (s1, s2, s3, s4) = (stats("s1"), stats("s2"), stats("s3"), stats("s4"));
    let (m1, m2) = (section("m1"), section("m2"));
    let (m1, m2) = (m1.trim_start(), m2.trim_start());
    for m in [m1, m2] {
        promtool_check(release, m);
    }
    let opts = kmlink_exporter::Options {
        top_processes: 1000,
        top_callsites: 100_000,
    };
    let render = |s: &kmlink_procview::Stats| {
        kmlink_exporter::render(Some(s.clone()), opts, kmlink_exporter::Format::Prometheus)
            .expect("render")
    };
    let (lo, hi, scraped) = (samples(&render(&s1)), samples(&render(&s2)), samples(m1));
    let mut compared = 0;
    for (series, v) in &scraped {
        if !is_counter(series) {
            continue;
        }
        // A row that appears after the first read starts from 0.
        let low = lo.get(series).copied().unwrap_or(0.0);
        let high = *hi
            .get(series)
            .unwrap_or_else(|| panic!("{release}: {series} scraped, not in the later stats"));
        assert!(
            low <= *v && *v <= high,
            "{release}: {series} = {v}, not within [{low}, {high}] of the stats read around it"
        );
        compared += 1;
    }
    // Independently of the exporter's own rendering: the totals and the
    // workload's row, by their documented names.
    let t1 = s1.totals.expect("totals");
    let t2 = s2.totals.expect("totals");
    let allocs = scraped["kmlink_allocations_total"];
    assert!(t1.allocs as f64 <= allocs && allocs <= t2.allocs as f64);
    let bench = s2
        .processes
        .iter()
        .find(|p| p.key.comm.lossy() == "allocbench")
        .expect("allocbench row");
    let series = format!(
        "kmlink_process_allocations_total{{pid=\"{}\",comm=\"allocbench\"}}",
        bench.key.pid.expect("pid")
    );
    assert!(scraped[&series] > 0.0 && scraped[&series] <= bench.counts.allocs as f64);
    assert!(
        compared > 50,
        "{release}: only {compared} counters compared:\n{m1}"
    );

    // Paused: nothing counts, so the scrape is the stats file exactly.
    assert_eq!(
        s3.totals, s4.totals,
        "{release}: the paused monitor still counted"
    );
    // Except what measures time, which goes on while paused: the uptime,
    // and each call site's oldest outstanding age (whole seconds: within
    // the stats read before and after the scrape).
    let (want, got) = (samples(&render(&s3)), samples(m2));
    let after = samples(&render(&s4));
    let ages = |k: &str| k.starts_with("kmlink_callsite_oldest_outstanding_age_seconds{");
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| match got.get(*k) {
            _ if k.as_str() == "kmlink_monitor_uptime_seconds" => false,
            Some(g) if ages(k) => !(**v <= *g && after.get(*k).is_some_and(|a| g <= a)),
            g => g != Some(v),
        })
        .map(|(k, v)| format!("{k}: stats {v}, scraped {:?}", got.get(k)))
        .collect();
    assert!(
        differ.is_empty() && want.len() == got.len(),
        "{release}: the paused scrape differs from the stats file:\n{}",
        differ.join("\n")
    );
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("exporter-scrape.prom");
    std::fs::write(&kept, m1).expect("keep the scrape");
    eprintln!(
        "{release}: exporter (scrape kept in {}): {compared} counters within the stats read around the scrape; \
         paused scrape equals stats ({} samples)",
        kept.display(),
        got.len()
    );
}

/// Counters: the `_total` samples and the histogram's cumulative ones.
fn is_counter(series: &str) -> bool {
    let name = series.split('{').next().unwrap_or(series);
    name.ends_with("_total")
        || name.ends_with("_bucket")
        || name.ends_with("_count")
        || name.ends_with("_sum")
}

/// `series → value` of a Prometheus text (series as written, labels included).
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (
                series.to_string(),
                value.parse::<f64>().expect("sample value"),
            )
        })
        .collect()
}

fn promtool_check(release: &str, text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return kmlink_testkit::missing(
            "promtool (apt-get install prometheus; scripts/setup does)",
        );
    };
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("promtool stdin");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{release}: promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
