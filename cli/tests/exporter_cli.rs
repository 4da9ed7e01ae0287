//! `kmlink exporter` as run by an operator: one scrape on standard output,
//! the textfile written once, and advice when there is nothing to do.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::Output;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../exporter/tests/fixtures/kprobe")
}

mod common;

fn kmlink(args: &[&str]) -> Output {
    common::run(args)
}

#[test]
fn once_prints_and_writes_the_textfile() {
    let root = fixture();
    let o = kmlink(&[
        "exporter",
        "--once",
        "--top-processes",
        "1",
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("kmlink_process_allocations_total{pid=\"77\",comm=\"allocbench\"} 900000\n"),
        "{out}"
    );
    assert!(out.contains("kmlink_process_rows_omitted 4\n"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let o = kmlink(&[
        "exporter",
        "--once",
        "--top-processes",
        "1",
        "--textfile",
        dir.path().to_str().unwrap(),
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kmlink.prom")).unwrap(),
        out
    );
}

#[test]
fn nothing_to_do_and_bad_directories_are_advice() {
    let o = kmlink(&["exporter"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("give --listen ADDR, --textfile DIR or --once"),
        "{err}"
    );

    let o = kmlink(&[
        "exporter",
        "--textfile",
        "/nonexistent/kmlink-test",
        "--proc-root",
        fixture().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("/nonexistent/kmlink-test/kmlink.prom"),
        "{err}"
    );
}

#[test]
fn flame_folded_and_svg() {
    let root = fixture();
    let o = kmlink(&[
        "flame",
        "--folded",
        "--by",
        "bytes",
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "do_syscall_64;alloc_pipe_info;kmem_cache_alloc_noprof;kml_on_alloc 640\n\
         do_syscall_64;vfs_read;seq_read_iter;__kmalloc_noprof;kml_on_alloc 5120\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.svg");
    let o = kmlink(&[
        "flame",
        "-o",
        out.to_str().unwrap(),
        "--proc-root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("alloc_pipe_info") && svg.contains("do_syscall_64")
    );
}

#[test]
fn flame_without_stacks_is_advice() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../exporter/tests/fixtures/nostacks");
    let o = kmlink(&["flame", "--proc-root", root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("--set stacks=N"), "{err}");
}
