//! The exporter's output for a recorded snapshot: the series an operator
//! alerts on, bounded process cardinality, escaping, both formats, and
//! `promtool check metrics` (Debian's `prometheus` package) on the text.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kmlink_exporter::{render, scrape, textfile, Format, Options};
use kmlink_procview::ProcSource;

fn fixture() -> ProcSource {
    ProcSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kprobe"))
}

fn text(format: Format, top: usize) -> String {
    scrape(
        &fixture(),
        Options {
            top_processes: top,
            ..Options::default()
        },
        format,
    )
    .unwrap()
}

/// `name{labels} value` → value, for the sample exactly so written.
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

#[test]
fn prometheus_text_carries_the_stats_file() {
    let t = text(Format::Prometheus, 20);
    let want = [
        ("kmlink_monitor_loaded", "1"),
        (r#"kmlink_monitor_info{backend="kprobe"}"#, "1"),
        ("kmlink_monitor_paused", "0"),
        ("kmlink_monitor_uptime_seconds", "8.123456789"),
        (r#"kmlink_monitor_parameter{name="ring_capacity"}"#, "4096"),
        (r#"kmlink_monitor_parameter{name="generation"}"#, "1"),
        ("kmlink_events_total", "1801500"),
        ("kmlink_allocations_total", "900433"),
        ("kmlink_frees_total", "900318"),
        ("kmlink_allocated_bytes_total", "57634176"),
        ("kmlink_requested_bytes_total", "57033764"),
        ("kmlink_outstanding_bytes", "6080"),
        ("kmlink_page_allocations_total", "13"),
        ("kmlink_page_allocated_bytes_total", "53248"),
        (
            r#"kmlink_dropped_total{reason="ring_overwritten"}"#,
            "1797404",
        ),
        (r#"kmlink_dropped_total{reason="kprobe_missed"}"#, "4"),
        (r#"kmlink_dropped_total{reason="process_table_full"}"#, "7"),
        (r#"kmlink_allocation_size_bytes_bucket{le="64"}"#, "900433"),
        (
            r#"kmlink_allocation_size_bytes_bucket{le="+Inf"}"#,
            "900433",
        ),
        ("kmlink_allocation_size_bytes_count", "900433"),
        ("kmlink_allocation_size_bytes_sum", "57634176.0"),
        (
            r#"kmlink_cache_allocations_total{cache="(kmalloc)"}"#,
            "600000",
        ),
        (
            r#"kmlink_cache_allocated_bytes_total{cache="kmalloc-64"}"#,
            "19200000",
        ),
        (r#"kmlink_cache_outstanding_bytes{cache="kmalloc-64"}"#, "0"),
        (
            r#"kmlink_process_allocations_total{pid="77",comm="allocbench"}"#,
            "900000",
        ),
        (
            r#"kmlink_process_page_allocated_bytes_total{pid="78",comm="sh"}"#,
            "40960",
        ),
        (
            r#"kmlink_process_allocations_total{pid="other",comm="(other)"}"#,
            "7",
        ),
        // Quotes and backslashes escaped as the format says.
        (
            r#"kmlink_process_allocations_total{pid="79",comm="we\"ird\\name"}"#,
            "5",
        ),
        ("kmlink_process_rows", "6"),
        ("kmlink_process_rows_omitted", "0"),
    ];
    let mut wrong = Vec::new();
    for (series, value) in want {
        let got = sample(&t, series);
        if got.as_deref() != Some(value) {
            wrong.push(format!("{series}: want {value}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}\n{t}", wrong.join("\n"));
    // sh has no outstanding count (`-`): no sample rather than a made-up 0.
    assert_eq!(
        sample(
            &t,
            r#"kmlink_process_outstanding_bytes{pid="78",comm="sh"}"#
        ),
        None
    );
    assert!(
        t.contains("# TYPE kmlink_process_allocations_total counter\n"),
        "{t}"
    );
    assert!(!t.contains("# EOF"));
}

#[test]
fn openmetrics_has_units_and_eof() {
    let t = text(Format::OpenMetrics, 20);
    assert!(t.ends_with("# EOF\n"), "{t}");
    assert!(
        t.contains("# TYPE kmlink_allocated_bytes counter\n# UNIT kmlink_allocated_bytes bytes\n"),
        "{t}"
    );
    assert_eq!(
        sample(&t, "kmlink_allocated_bytes_total").as_deref(),
        Some("57634176")
    );
    assert_eq!(
        sample(&t, r#"kmlink_monitor_info{backend="kprobe"}"#).as_deref(),
        Some("1")
    );
}

#[test]
fn process_series_are_bounded_and_the_largest_kept() {
    let t = text(Format::Prometheus, 2);
    let pids: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("kmlink_process_allocations_total{"))
        .collect();
    assert_eq!(pids.len(), 3, "two largest and (other): {pids:?}");
    assert!(
        pids[0].contains("allocbench") && pids[1].contains(r#"comm="sh""#),
        "{pids:?}"
    );
    assert_eq!(
        sample(&t, "kmlink_process_rows_omitted").as_deref(),
        Some("3")
    );
    let none = text(Format::Prometheus, 0);
    assert_eq!(
        none.lines()
            .filter(|l| l.starts_with("kmlink_process_allocations_total{"))
            .count(),
        1
    );
}

#[test]
fn an_unloaded_monitor_is_loaded_0_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = scrape(
        &ProcSource::new(dir.path()),
        Options::default(),
        Format::Prometheus,
    )
    .unwrap();
    assert_eq!(sample(&t, "kmlink_monitor_loaded").as_deref(), Some("0"));
    assert!(!t.contains("kmlink_allocations_total"));
    let t = render(None, Options::default(), Format::OpenMetrics).unwrap();
    assert!(t.ends_with("# EOF\n"));
}

#[test]
fn a_malformed_stats_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("kmlink")).unwrap();
    std::fs::write(dir.path().join("kmlink/stats"), "garbage\n").unwrap();
    let e = scrape(
        &ProcSource::new(dir.path()),
        Options::default(),
        Format::Prometheus,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("kmlink/stats") && e.contains("line 1"), "{e}");
}

#[test]
fn textfile_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = textfile::write(dir.path(), &fixture(), Options::default()).unwrap();
    assert_eq!(path, dir.path().join("kmlink.prom"));
    let first = std::fs::read_to_string(&path).unwrap();
    textfile::write(dir.path(), &fixture(), Options::default()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(
        first,
        text(Format::Prometheus, Options::default().top_processes)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("kmlink.prom")],
        "no temporaries left"
    );
}

/// `promtool` from PATH, or `None` (and the test's skip or CI failure).
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        kmlink_testkit::missing("promtool (apt-get install prometheus; scripts/setup does)");
    }
    found
}

#[test]
fn promtool_check_metrics_accepts_the_text() {
    let Some(promtool) = promtool() else { return };
    for t in [
        text(Format::Prometheus, 20),
        text(Format::Prometheus, 0),
        render(None, Options::default(), Format::Prometheus).unwrap(),
    ] {
        promtool_check(&promtool, &t);
    }
}

/// `promtool check metrics` accepts `t` without a word.
fn promtool_check(promtool: &Path, t: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), t.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{t}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cgroup and call-site tables (procview's `leaks` snapshot): every
/// cgroup labelled by id and, where known, path; call sites by their
/// `%pS`, the largest outstanding first and bounded; promtool accepts it.
#[test]
fn cgroup_and_callsite_families() {
    let source = ProcSource::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../procview/tests/fixtures/leaks"),
    );
    let stats = source.read_stats().unwrap();
    let paths = kmlink_procview::cgroup::CgroupPaths::from_pairs([(
        4127,
        "/system.slice/docker-0123abcd.scope".to_string(),
    )]);
    let options = Options {
        top_callsites: 2,
        ..Options::default()
    };
    let t = kmlink_exporter::render_with_paths(
        Some(stats.clone()),
        &paths,
        options,
        Format::Prometheus,
    )
    .unwrap();
    assert_eq!(
        sample(
            &t,
            "kmlink_cgroup_allocations_total{cgroup_id=\"4127\",cgroup=\"/system.slice/docker-0123abcd.scope\"}"
        )
        .as_deref(),
        Some("412"),
        "{t}"
    );
    assert_eq!(
        sample(
            &t,
            "kmlink_cgroup_outstanding_bytes{cgroup_id=\"1\",cgroup=\"\"}"
        )
        .as_deref(),
        Some("384")
    );
    assert_eq!(
        sample(
            &t,
            "kmlink_callsite_outstanding_bytes{caller=\"alloc_pipe_info+0x6a/0x1c0\"}"
        )
        .as_deref(),
        Some("204800")
    );
    assert_eq!(
        sample(
            &t,
            "kmlink_callsite_outstanding_objects{caller=\"alloc_pipe_info+0x3e/0x1c0\"}"
        )
        .as_deref(),
        Some("200")
    );
    assert_eq!(
        sample(
            &t,
            "kmlink_callsite_oldest_outstanding_age_seconds{caller=\"alloc_pipe_info+0x3e/0x1c0\"}"
        )
        .as_deref(),
        Some("5")
    );
    // Bounded: the ext4 site (smallest outstanding) is left out and counted.
    assert!(!t.contains("ext4_find_extent"), "{t}");
    assert_eq!(
        sample(&t, "kmlink_callsite_rows_omitted").as_deref(),
        Some("1")
    );
    let Some(promtool) = promtool() else { return };
    promtool_check(&promtool, &t);
}
