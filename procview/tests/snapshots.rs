//! The recorded snapshots under tests/fixtures (see make.py there): parsing,
//! rates, the `kmlink top` view in ratatui's TestBackend, the text frame
//! (golden file; `KMLINK_UPDATE_GOLDEN=1` rewrites it) and JSON validated
//! against docs/stats.schema.json.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmlink_procview::json::{event_json, stats_json, STATS_SCHEMA};
use kmlink_procview::tui::{render, render_text, TopState};
use kmlink_procview::view::select;
use kmlink_procview::{CacheKey, Error, Filter, Name, ProcSource, Sampler, SortKey, Stats, View};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::Value;

fn fixture(name: &str) -> ProcSource {
    ProcSource::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn stats(name: &str) -> Stats {
    fixture(name).read_stats().unwrap()
}

/// busy-1 then busy-2, one second apart by the monitor's clock.
fn busy_view() -> View {
    View::between(
        Some(&stats("busy-1")),
        stats("busy-2"),
        Some(Duration::from_secs(7)),
    )
}

#[test]
fn fixtures_parse() {
    let today = stats("today");
    assert_eq!(today.processes.len(), 2);
    assert_eq!(today.caches[0].key, CacheKey::Kmalloc);
    assert!(today.monitor.is_none() && today.histogram.is_none());
    assert_eq!(fixture("today").read_events().unwrap().len(), 0);
    assert_eq!(
        fixture("today").kernel_release().as_deref(),
        Some("6.1.0-47-amd64")
    );

    let busy = stats("busy-2");
    // sshd is written on two rows: summed.
    let sshd: Vec<_> = busy
        .processes
        .iter()
        .filter(|p| p.key.comm == Name::from("sshd"))
        .collect();
    assert_eq!(sshd.len(), 1);
    assert_eq!(sshd[0].counts.allocs, 9150);
    let web = busy
        .processes
        .iter()
        .find(|p| p.key.pid == Some(2077))
        .unwrap();
    assert_eq!(web.key.comm.as_bytes(), b"Web Content");
    assert_eq!(
        busy.histogram.as_ref().unwrap().last().unwrap().le_bytes,
        None
    );
    let m = busy.monitor.as_ref().unwrap();
    assert_eq!(
        (m.backend.as_deref(), m.ring_capacity),
        (Some("tracepoint"), Some(4096))
    );
    assert_eq!(busy.dropped.as_ref().unwrap()["ring_full"], 1532);
    let ev = fixture("busy-2").read_events().unwrap();
    assert_eq!(ev.len(), 12);
    assert!(ev.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
}

#[test]
fn rates_between_recorded_snapshots() {
    let v = busy_view();
    assert_eq!(
        v.interval_s,
        Some(1.0),
        "the monitor's uptime wins over the wall clock"
    );
    let row = |pid| v.processes.iter().find(|r| r.key.pid == Some(pid)).unwrap();
    let stress = row(2044).rate.unwrap();
    assert_eq!(
        (stress.allocs_per_s, stress.frees_per_s),
        (98000.0, 97400.0)
    );
    assert_eq!(stress.bytes_per_s, 401_408_000.0);
    assert_eq!(
        row(1950).rate.unwrap().allocs_per_s,
        0.0,
        "find has stopped"
    );
    assert_eq!(
        row(2101).rate.unwrap().allocs_per_s,
        154.0,
        "sh is new: all of it is recent"
    );
    let ring = v.dropped.iter().find(|d| d.reason == "ring_full").unwrap();
    assert_eq!(ring.per_s, Some(1532.0));
}

/// The text of a TestBackend buffer, one string per row.
fn rows(term: &Terminal<TestBackend>) -> Vec<String> {
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The first data row under the table whose title starts with `title`.
fn first_row<'a>(rows: &'a [String], title: &str) -> &'a str {
    let at = rows.iter().position(|r| r.starts_with(title)).unwrap();
    &rows[at + 2]
}

#[test]
fn top_puts_the_busiest_process_on_top() {
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut state = TopState::new(Duration::from_secs(1), SortKey::ByteRate);

    // First frame: no rates yet, ordered by total bytes: systemd-journal.
    let first = View::first(stats("busy-1"));
    term.draw(|f| render(f, &first, &mut state)).unwrap();
    let r = rows(&term);
    assert!(
        first_row(&r, "processes").contains("systemd-journal"),
        "{r:#?}"
    );
    assert!(r[0].contains("6.12.43+deb13-amd64") && r[0].contains("backend tracepoint"));
    assert!(r[0].contains("up 12m34s"), "{}", r[0]);

    // Second frame: stress-ng is allocating hardest, find has stopped.
    let v = busy_view();
    term.draw(|f| render(f, &v, &mut state)).unwrap();
    let r = rows(&term);
    let top = first_row(&r, "processes");
    assert!(top.contains("stress-ng") && top.contains("2044"), "{r:#?}");
    assert!(
        top.contains("98000") && top.contains("383M"),
        "allocs/s and bytes/s: {top}"
    );
    assert!(first_row(&r, "caches").contains("(kmalloc)"), "{r:#?}");
    assert!(
        r.iter().any(|l| l.contains("ring_full 1532 (+1532/s)")),
        "{r:#?}"
    );
    assert!(
        r.iter().any(|l| l.contains("q quit")),
        "footer with keys: {r:#?}"
    );

    // Sorted by allocations in total, filtered to one table.
    state.sort = SortKey::Allocs;
    state.filter = "comm:s".into();
    term.draw(|f| render(f, &v, &mut state)).unwrap();
    let r = rows(&term);
    assert!(
        first_row(&r, "processes").contains("systemd-journal"),
        "{r:#?}"
    );
    assert!(
        !r.iter().any(|l| l.contains(" find ")),
        "filtered out: {r:#?}"
    );
    assert!(
        r.iter().any(|l| l.contains("caches (9)")),
        "cache table not filtered: {r:#?}"
    );

    // A tiny terminal still draws (no panic), and a resize is just a redraw.
    term.backend_mut().resize(40, 8);
    term.draw(|f| render(f, &v, &mut state)).unwrap();
    term.backend_mut().resize(120, 50);
    term.draw(|f| render(f, &v, &mut state)).unwrap();
}

#[test]
fn batch_frames_match_the_golden_file() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/top-busy.txt");
    let mut state = TopState::new(Duration::from_secs(1), SortKey::ByteRate);
    state.batch = true;
    let first = render_text(&View::first(stats("busy-1")), &mut state, 100);
    let second = render_text(&busy_view(), &mut state, 100);
    let text = format!("{first}\n{second}");
    if std::env::var_os("KMLINK_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(
        want == text,
        "batch frames differ from {} (KMLINK_UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{want}\n--- actual\n{text}",
        golden.display()
    );
}

fn schema() -> Value {
    serde_json::from_str(STATS_SCHEMA).unwrap()
}

fn check(schema: &Value, doc: &Value) {
    let v = jsonschema::validator_for(schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

#[test]
fn stats_json_validates_against_the_schema() {
    let schema = schema();
    let s = schema.clone();
    for (i, view) in [
        View::first(stats("today")),
        View::first(stats("busy-1")),
        busy_view(),
        View::first(stats("leaks")),
    ]
    .into_iter()
    .enumerate()
    {
        let (p, c) = select(&view, &Filter::default(), SortKey::ByteRate, false, None);
        let doc = serde_json::to_value(stats_json(
            &view,
            i as u64 + 1,
            Some("6.1.0-47-amd64".into()),
            &p,
            &c,
        ))
        .unwrap();
        check(&s, &doc);
    }
    let v = busy_view();
    let (p, c) = select(&v, &Filter::default(), SortKey::AllocRate, false, Some(3));
    let doc = serde_json::to_value(stats_json(&v, 2, None, &p, &c)).unwrap();
    assert_eq!(doc["processes"].as_array().unwrap().len(), 3);
    assert_eq!(doc["processes"][0]["comm"], "stress-ng");
    assert_eq!(doc["processes"][0]["allocs_per_s"], 98000.0);
    assert_eq!(doc["caches"][0]["cache"], Value::Null);
    assert_eq!(doc["caches"][0]["cache_escaped"], "-");
    assert_eq!(doc["interval_s"], 1.0);

    // Cgroup and call-site rows, paths resolved.
    let v = View::first(stats("leaks"));
    let (p, c) = select(&v, &Filter::default(), SortKey::ByteRate, false, None);
    let mut doc = stats_json(&v, 1, None, &p, &c);
    let paths = kmlink_procview::cgroup::CgroupPaths::from_pairs([
        (1, "/".to_string()),
        (
            4127,
            "/system.slice/docker-0123456789abcdef0123.scope".to_string(),
        ),
    ]);
    kmlink_procview::json::resolve_cgroups(&mut doc, &paths);
    let doc = serde_json::to_value(doc).unwrap();
    check(&s, &doc);
    assert_eq!(doc["cgroups"][1]["cgroup"], 4127);
    assert_eq!(doc["cgroups"][1]["label"], "container docker 0123456789ab");
    assert_eq!(doc["cgroups"][0]["path"], "/");
    assert_eq!(doc["callsites"][0]["caller"], "alloc_pipe_info+0x6a/0x1c0");
    assert_eq!(doc["callsites"][0]["call_site"], "0xffffffff813a1f6a");
    assert_eq!(doc["callsites"][0]["objects"], 200);

    // The validator does reject what the schema forbids.
    let mut bad = doc.clone();
    bad["processes"][0]["allocs"] = Value::from(-1);
    bad["surprise"] = Value::from(1);
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert_eq!(validator.iter_errors(&bad).count(), 2);
}

#[test]
fn events_json_validates_against_the_schema() {
    let root = schema();
    let schema = serde_json::json!({
        "$schema": root["$schema"],
        "$defs": root["$defs"],
        "$ref": "#/$defs/event",
    });
    let events = fixture("busy-2").read_events().unwrap();
    for e in &events {
        check(&schema, &serde_json::to_value(event_json(e)).unwrap());
    }
    let j = serde_json::to_value(event_json(&events[2])).unwrap();
    assert_eq!(j["comm"], "Web Content");
    assert_eq!(j["gfp"], "0x400cc0");
    assert_eq!(j["cache"], "filp");
}

#[test]
fn leaks_json_validates_against_the_schema() {
    use kmlink_procview::leaks::{attach_stacks, leaks, leaks_json, LeakQuery, LeakSort};
    let root = schema();
    let schema = serde_json::json!({
        "$schema": root["$schema"],
        "$defs": root["$defs"],
        "$ref": "#/$defs/leaks",
    });
    let s = stats("leaks");
    let st = fixture("leaks").read_stacks().unwrap();
    let q = LeakQuery {
        min_age: Duration::from_secs(1),
        top: None,
        sort: LeakSort::Age,
    };
    let mut rows = leaks(&s, &q);
    let plain = serde_json::to_value(leaks_json(&s, &q, &rows, None)).unwrap();
    check(&schema, &plain);
    attach_stacks(&mut rows, &st);
    let doc = serde_json::to_value(leaks_json(&s, &q, &rows, Some(&st))).unwrap();
    check(&schema, &doc);
    // The two alloc_pipe_info call sites, each with its sampled path from
    // the call site out to the syscall.
    let sites = doc["callsites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{doc:#}");
    assert_eq!(sites[0]["caller"], "alloc_pipe_info+0x3e/0x1c0");
    assert_eq!(sites[0]["objects"], 200);
    let paths = sites[0]["stacks"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "pipe() and pipe2(): {doc:#}");
    assert_eq!(paths[0]["allocs"], 24);
    assert_eq!(paths[0]["frames"][0], "alloc_pipe_info+0x3e/0x1c0");
    assert_eq!(paths[0]["frames"][3], "do_pipe2+0x2e/0xe0");
    assert_eq!(sites[1]["stacks"][0]["bytes"], 25600);
    // What the schema refuses: a missing field, a stray one, a bad address.
    for (ptr, v) in [
        ("/callsites/0/stacks/0/frames", serde_json::json!([])),
        ("/callsites/0/call_site", serde_json::json!("ffff")),
        ("/sort", serde_json::json!("size")),
    ] {
        let mut bad = doc.clone();
        *bad.pointer_mut(ptr).unwrap() = v;
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(!validator.is_valid(&bad), "{ptr} accepted");
    }
}

#[test]
fn a_missing_monitor_is_advice() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nowhere");
    let src = ProcSource::new(&dir);
    let err = Sampler::new(src).sample().unwrap_err();
    assert!(matches!(err, Error::NotLoaded { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("the monitor is not loaded"), "{msg}");
    assert!(
        msg.contains("run `kmlink load` (or `kmlink doctor` to see why it cannot be)"),
        "{msg}"
    );
}

#[test]
fn a_malformed_file_names_file_and_line() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("kmlink")).unwrap();
    std::fs::write(
        dir.join("kmlink/stats"),
        "# process: pid comm allocs frees bytes\n1 a 1 1\n",
    )
    .unwrap();
    let msg = ProcSource::new(&dir).read_stats().unwrap_err().to_string();
    assert!(
        msg.contains("kmlink/stats") && msg.contains("line 2:"),
        "{msg}"
    );
    assert!(msg.contains("kmlink unload && kmlink load"), "{msg}");
    let msg = ProcSource::new(&dir).read_events().unwrap_err().to_string();
    assert!(
        msg.contains("kmlink/events") && msg.contains("lacks this file"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("kmlink-procview-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Issue #16, item 8: `kmlink top --once` garbled the frame once width ×
/// rows passed 65,535 cells (ratatui clamps a larger area); the monitor
/// tracks 4,096 processes, so 700 at 100 columns must still give a frame of
/// that width with both tables.
#[test]
fn a_frame_past_65535_cells_is_not_garbled() {
    let mut text = String::from("# process: pid comm allocs frees bytes outstanding bytes_req\n");
    for pid in 1..=700 {
        text.push_str(&format!("{pid} proc{pid} {} 1 4096 0 4096\n", 1000 + pid));
    }
    text.push_str(
        "\n# cache: cache allocs frees bytes outstanding bytes_req\ndentry 5 1 640 512 600\n",
    );
    text.push_str(
        "\n# totals: events allocs frees bytes\n0 0 0 0\n# monitor: key value\nuptime_ns 1\n",
    );
    let many = kmlink_procview::stats::parse_stats(&text).unwrap();
    let mut state = TopState::new(Duration::from_secs(1), SortKey::ByteRate);
    state.batch = true;
    let small = render_text(&View::first(stats("busy-1")), &mut state, 100);
    let frame = render_text(&View::first(many), &mut state, 100);
    let lines: Vec<&str> = frame.lines().collect();
    let head = |t: &str| {
        t.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .map(str::to_owned)
    };
    assert_eq!(
        head(&frame),
        head(&small),
        "the header is garbled:\n{}",
        lines[0]
    );
    assert!(
        lines.iter().all(|l| l.chars().count() <= 100),
        "wider than 100 columns"
    );
    assert!(frame.contains("dentry"), "the cache table is gone");
    let shown = lines.iter().filter(|l| l.contains(" proc")).count();
    assert!(shown >= 600, "only {shown} processes shown");
}
