//! Issue #19, "a crawl that scales out", on real packages: `kmlink crawler
//! refresh --shard I/2 --bundle-out` for two pinned kernels (5.10.0-46 and
//! 6.1.0-47, which hash to different shards of 2) from the verified
//! archive, each shard into its own store and signed bundle; the bundles
//! merged (signatures checked), installed into a fresh store, and `kmlink
//! build --kernel REL --check` from that store for both kernels.
//!
//! `cargo build --bin kmlink && cargo test -p kmlink-tests --test shard_real -- --ignored`

use std::path::Path;

use kmlink_tests::{kmlink, kmlink_ok};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const KERNELS: [(&str, &str); 2] = [
    ("5.10.0-46-amd64", "bullseye-security"),
    ("6.1.0-47-amd64", "bookworm"),
];

#[test]
#[ignore = "reads the archive; downloads the pinned 5.10 and 6.1 kernels' packages if not cached (~125 MB)"]
fn two_shards_merged_installed_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let key = d.join("crawler.key");
    kmlink_ok(&["bundle", "keygen", "-o", s(&key)]).expect("keygen");
    let mut bundles = Vec::new();
    let mut stored_in = Vec::new();
    for i in 0..2 {
        let bundle = d.join(format!("shard-{i}.kmb"));
        let shard = format!("{i}/2");
        let db = d.join(format!("shard-{i}.db"));
        let mut args = vec![
            "crawler",
            "refresh",
            "--arch",
            "amd64",
            "--shard",
            &shard,
            "--db",
            s(&db),
            "--bundle-out",
            s(&bundle),
            "--sign-key",
            s(&key),
        ];
        for (rel, suite) in KERNELS {
            args.extend(["--release", rel, "--suite", suite]);
        }
        let out = kmlink(&args).expect("run");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "shard {shard}:\n{stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("shard {shard}: 1 of 2 kernels")),
            "{stderr}"
        );
        assert!(
            stdout.contains("1 kernels: 1 stored") || stdout.contains("1 already stored"),
            "{stdout}"
        );
        assert!(stdout.contains("1 records of 1 kernels"), "{stdout}");
        let list = kmlink_ok(&["db", "list", "--db", s(&db)]).expect("list");
        let mine: Vec<&str> = KERNELS
            .iter()
            .map(|k| k.0)
            .filter(|r| list.contains(r))
            .collect();
        assert_eq!(mine.len(), 1, "shard {shard} stored one kernel: {list}");
        stored_in.push(mine[0].to_string());
        bundles.push(bundle);
    }
    stored_in.sort();
    assert_eq!(
        stored_in,
        KERNELS.iter().map(|k| k.0.to_string()).collect::<Vec<_>>(),
        "each kernel in exactly one shard"
    );

    let merged = d.join("merged.kmb");
    let public = format!("{}.pub", s(&key));
    let out = kmlink_ok(&[
        "bundle",
        "merge",
        "-o",
        s(&merged),
        "--trust",
        &public,
        "--sign-key",
        s(&key),
        s(&bundles[0]),
        s(&bundles[1]),
    ])
    .expect("merge");
    assert!(out.contains("2 records from 2 bundles"), "{out}");

    let db = d.join("installed/records.db");
    let out = kmlink_ok(&[
        "bundle",
        "install",
        s(&merged),
        "--trust",
        &public,
        "--db",
        s(&db),
    ])
    .expect("install");
    assert!(out.contains("2 records signed by"), "{out}");
    assert!(out.contains(": 2 added"), "{out}");

    // A shard without kernels (5.10.0-46 alone is in shard 0) still hands
    // on a bundle, of no records, and succeeds; it merges with the others.
    let empty = d.join("empty.kmb");
    let out = kmlink_ok(&[
        "crawler",
        "refresh",
        "--arch",
        "amd64",
        "--shard",
        "1/2",
        "--release",
        KERNELS[0].0,
        "--suite",
        KERNELS[0].1,
        "--db",
        s(&d.join("empty.db")),
        "--bundle-out",
        s(&empty),
        "--sign-key",
        s(&key),
    ])
    .expect("an empty shard succeeds");
    assert!(out.contains("0 records of 0 kernels"), "{out}");
    let out = kmlink_ok(&[
        "bundle",
        "merge",
        "-o",
        s(&d.join("m2.kmb")),
        "--trust",
        &public,
        s(&empty),
        s(&bundles[0]),
    ])
    .expect("merge with the empty shard");
    assert!(out.contains("1 records from 2 bundles"), "{out}");

    for (rel, _) in KERNELS {
        let out = kmlink_ok(&["build", "--kernel", rel, "--db", s(&db), "--check"])
            .unwrap_or_else(|e| panic!("build --check {rel}: {e:#}"));
        assert!(
            out.contains(&format!("verdict for {rel}: all")) && out.contains("checks agree"),
            "{rel}:\n{out}"
        );
    }
}
