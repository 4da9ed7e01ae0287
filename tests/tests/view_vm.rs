//! The operator's view on a real kernel: with the monitor loaded and an
//! allocation-heavy process running, `kmlink top` (batch mode, inside the
//! guest) shows that process at the top of the per-process view within two
//! refreshes, and `kmlink stats --json` validates against its schema.
//!
//! Boots a real kernel: `cargo test -p kmlink-tests --test view_vm -- --ignored`.

use std::time::Duration;

use kmlink_tests::{build_workload, kernel, kmlink_bin, kmlink_ok, pinned_releases, workspace};
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
        "-o",
        ko.to_str().expect("utf8"),
    ])
    .expect("build");
    // A stripped copy of the real binary keeps the initramfs small.
    let bin = dir.path().join("kmlink");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(kmlink_bin())
        .arg(&bin)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let bench = build_workload("allocbench", dir.path()).expect("allocbench workload");

    let script = r#"
insmod /kmlink.ko || exit 20
/allocbench 100000000 1 > /dev/null &
hog=$!
kmlink top --batch 2 -d 1 --sort allocs/s > /tmp/top.txt 2>&1 || { cat /tmp/top.txt; exit 21; }
kmlink stats --json > /tmp/stats.json || exit 22
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
        GuestFile {
            guest_path: "/kmlink.ko".into(),
            contents: Source::Path(ko),
            mode: 0o644,
        },
        GuestFile {
            guest_path: "/allocbench".into(),
            contents: Source::Path(bench),
            mode: 0o755,
        },
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
}
