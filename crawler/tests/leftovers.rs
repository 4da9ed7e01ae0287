//! Issue #16, item 6: what a run killed mid-way left in the cache
//! (temporary kernel trees and tools, partial downloads) is removed by the
//! next run and reported; what a live run holds is not touched.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use kmlink_crawler::cache::Cache;
use kmlink_crawler::sweep;

fn tree(p: &Path) {
    std::fs::create_dir_all(p.join("usr/lib/modules/x")).unwrap();
    std::fs::write(p.join("usr/lib/modules/x/vmlinuz"), vec![7u8; 4096]).unwrap();
}

const SHA: &str = "0ab746a3d854ad0e666923147842d1e629cdb3e29a97b76ae25b4911285174e4";

#[test]
fn dead_runs_leftovers_are_swept_live_ones_kept() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let root = d.path();
    for sub in ["kernels", "boot", "staging", "debs", "tools/busybox-arm64"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    // A dead run's leftovers: nothing holds their locks.
    let dead_dirs = [
        root.join("kernels/.6.1.0-47-amd64.Ab12Cd.tmp"),
        root.join("kernels/.6.1.0-47-amd64.old.4000000"),
        root.join("boot/.6.1.0-47-amd64.Zz99Yy.tmp"),
        root.join("staging/.6.1.0-47-amd64.Qq77Rr"),
        root.join(format!("tools/busybox-arm64/.{SHA}.Tt11Uu.tmp")),
    ];
    for p in &dead_dirs {
        tree(p);
    }
    let dead_files = [
        root.join(format!("debs/{SHA}.X1y2Z3.part")),
        root.join("debs/.ingest.K9j8H7.part"),
        root.join(format!("debs/{SHA}.part")),
    ];
    for p in &dead_files {
        std::fs::write(p, vec![1u8; 1000]).unwrap();
    }
    // A live run's: locked as the crawler locks them.
    let live_dir = root.join("kernels/.6.12.1-amd64.Lv0000.tmp");
    tree(&live_dir);
    let live_part = root.join("debs/.ingest.Live00.part");
    std::fs::write(&live_part, b"being written").unwrap();
    let _h1 = sweep::hold(&live_dir).unwrap();
    let _h2 = sweep::hold(&live_part).unwrap();
    // Not temporaries at all.
    let kept = [
        root.join("kernels/6.1.0-47-amd64"),
        root.join(format!("debs/{SHA}")),
        root.join(format!("debs/{SHA}.ok")),
        root.join(format!("tools/busybox-arm64/{SHA}")),
    ];
    tree(&kept[0]);
    tree(&kept[3]);
    std::fs::write(&kept[1], b"deb").unwrap();
    std::fs::write(&kept[2], b"").unwrap();
    // A fresh temporary (its run may not have locked it yet).
    let fresh = root.join("staging/.7.0.0-amd64.Fr3sh0");
    tree(&fresh);

    // Just now: nothing is old enough.
    let none = sweep::sweep(&cache, &mut |_| {}).unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Two hours later: everything dead goes except the resumable
    // download, kept a day for the next fetch of its package.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let mut reported = Vec::new();
    let removed = sweep::sweep_at(&cache, later, &mut |l| reported.push(l.clone())).unwrap();
    assert_eq!(reported, removed);
    let mut paths: Vec<_> = removed.iter().map(|l| l.path.clone()).collect();
    paths.sort();
    let mut want: Vec<_> = dead_dirs.iter().chain(&dead_files[..2]).cloned().collect();
    want.push(fresh.clone());
    want.sort();
    assert_eq!(paths, want);
    for l in &removed {
        assert!(!l.path.exists());
        assert!(l.bytes >= 1000, "{l:?}");
    }
    assert!(
        dead_files[2].exists(),
        "resumable download removed too early"
    );
    assert!(live_dir.join("usr/lib/modules/x/vmlinuz").exists());
    assert!(live_part.exists());
    for k in &kept {
        assert!(k.exists(), "{}", k.display());
    }

    // Two days later the stale resumable download goes too; once the live
    // run ends (its locks released), its leftovers go.
    drop(_h1);
    drop(_h2);
    let much_later = SystemTime::now() + Duration::from_secs(48 * 3600);
    let removed = sweep::sweep_at(&cache, much_later, &mut |_| {}).unwrap();
    let mut paths: Vec<_> = removed.iter().map(|l| l.path.clone()).collect();
    paths.sort();
    let mut want = vec![dead_files[2].clone(), live_dir.clone(), live_part.clone()];
    want.sort();
    assert_eq!(paths, want);
    for k in &kept {
        assert!(k.exists(), "{}", k.display());
    }
}

#[test]
fn a_lock_held_by_another_process_keeps_the_entry() {
    // The lock of a run in another process (flock(1) holding it while it
    // runs sleep): the entry is not removed; killed, its lock is gone.
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::new(d.path().to_owned());
    let live = d.path().join("kernels/.9.9.9-amd64.Other0.tmp");
    tree(&live);
    let mut child = match std::process::Command::new("flock")
        .args(["-n", "-o"])
        .arg(&live)
        .args(["sleep", "5"])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "flock(1) missing under CI: {e}"
            );
            eprintln!("SKIPPED: flock(1) not installed");
            return;
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let later = SystemTime::now() + Duration::from_secs(3600);
    let removed = sweep::sweep_at(&cache, later, &mut |_| {}).unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert!(live.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let removed = sweep::sweep_at(&cache, later, &mut |_| {}).unwrap();
    assert_eq!(removed.len(), 1);
}
