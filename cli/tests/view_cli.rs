//! `kmlink stats`, `events` and `top --batch` run as a user would, against
//! the recorded snapshots of kmlink-procview.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Output;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../procview/tests/fixtures")
        .join(name)
}

mod common;

fn kmlink(args: &[&str]) -> Output {
    common::run(args)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn stats_json_lines() {
    let busy = fixture("busy-2");
    let o = kmlink(&[
        "stats",
        "--json",
        "--interval",
        "0.05",
        "--count",
        "2",
        "--sort",
        "allocs",
        "--top",
        "3",
        "--proc-root",
        busy.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["format"], "kmlink-stats/1");
    assert_eq!(docs[0]["interval_s"], serde_json::Value::Null);
    assert!(docs[1]["interval_s"].as_f64().unwrap() > 0.0);
    assert_eq!(docs[1]["processes"].as_array().unwrap().len(), 3);
    assert_eq!(docs[1]["processes"][0]["comm"], "systemd-journal");
    assert_eq!(docs[1]["kernel_release"], "6.12.43+deb13-amd64");
}

#[test]
fn stats_text_and_histogram() {
    let o = kmlink(&[
        "stats",
        "--hist",
        "--proc-root",
        fixture("busy-2").to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(out.contains("PID COMM"), "{out}");
    assert!(out.contains("2044 stress-ng"), "{out}");
    assert!(out.contains("LE_BYTES"), "{out}");
    assert!(out.contains("+Inf"), "{out}");
    // Today's module has no histogram: said on stderr, output still there.
    let o = kmlink(&[
        "stats",
        "--hist",
        "--proc-root",
        fixture("today").to_str().unwrap(),
    ]);
    assert!(stdout(&o).contains("91 find"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not write a histogram"));
}

#[test]
fn events_filters_and_json() {
    let busy = fixture("busy-2");
    let o = kmlink(&[
        "events",
        "--comm",
        "stress-ng",
        "--proc-root",
        busy.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("TIME_NS"), "{out}");
    assert_eq!(lines.len(), 1 + 5, "{out}");
    assert!(lines[1..].iter().all(|l| l.contains("stress-ng")), "{out}");

    let o = kmlink(&[
        "events",
        "--json",
        "--cache",
        "filp",
        "--proc-root",
        busy.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["comm"], "Web Content");
}

#[test]
fn top_batch_renders_text_frames() {
    let o = kmlink(&[
        "top",
        "--once",
        "--width",
        "100",
        "--proc-root",
        fixture("busy-2").to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(out.starts_with("kmlink top  6.12.43+deb13-amd64"), "{out}");
    assert!(
        out.contains("processes (10)") && out.contains("caches (9)"),
        "{out}"
    );
    assert!(
        !out.contains("q quit"),
        "no key footer in batch mode: {out}"
    );
}

#[test]
fn not_loaded_and_not_a_terminal_are_advice() {
    let nowhere = fixture("nowhere");
    for cmd in ["top", "stats", "events"] {
        let o = kmlink(&[cmd, "--proc-root", nowhere.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("the monitor is not loaded"), "{cmd}: {err}");
        assert!(
            err.contains("run `kmlink load` (or `kmlink doctor` to see why it cannot be)"),
            "{cmd}: {err}"
        );
    }
    // Interactive top with output to a pipe.
    let o = kmlink(&["top", "--proc-root", fixture("busy-2").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch N"));
    // Bad flags say what would work.
    let o = kmlink(&[
        "stats",
        "--sort",
        "size",
        "--proc-root",
        fixture("busy-2").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bytes/s"));
}

/// `kmlink leaks --stacks` and `--json` on the hand-written leaks snapshot:
/// each call site with its sampled stacks cut at it; a snapshot without a
/// stacks file is an error naming the file.
#[test]
fn leaks_stacks_text_and_json() {
    let leaks = fixture("leaks");
    let root = leaks.to_str().unwrap();
    let text = stdout(&kmlink(&[
        "leaks",
        "--stacks",
        "--age",
        "1",
        "--proc-root",
        root,
    ]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("# 2 call sites"), "{text}");
    assert!(lines[2].ends_with("alloc_pipe_info+0x3e/0x1c0"), "{text}");
    assert_eq!(
        lines[3].trim(),
        "24 sampled allocations, 4608 bytes:",
        "{text}"
    );
    assert_eq!(lines[4].trim(), "alloc_pipe_info+0x3e/0x1c0", "{text}");
    assert_eq!(lines[7].trim(), "do_pipe2+0x2e/0xe0", "{text}");
    assert!(!text.contains("seq_read_iter"), "{text}");

    let json = stdout(&kmlink(&[
        "leaks",
        "--json",
        "--stacks",
        "--sort",
        "bytes",
        "--top",
        "1",
        "--proc-root",
        root,
    ]));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["format"], "kmlink-leaks/1");
    assert_eq!(doc["sort"], "bytes");
    assert_eq!(doc["callsites"].as_array().unwrap().len(), 1);
    assert_eq!(doc["callsites"][0]["caller"], "alloc_pipe_info+0x6a/0x1c0");
    assert_eq!(doc["callsites"][0]["stacks"][0]["allocs"], 25);
    let plain: serde_json::Value =
        serde_json::from_str(&stdout(&kmlink(&["leaks", "--json", "--proc-root", root]))).unwrap();
    assert!(plain["stacks"].is_null() && plain["callsites"][0]["stacks"].is_null());

    let o = kmlink(&[
        "leaks",
        "--stacks",
        "--proc-root",
        fixture("busy-1").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kmlink/stacks"), "{err}");
}
