//! `kmlink top` in a real pseudo-terminal: the binary runs inside a detached
//! tmux session against a recorded /proc snapshot; keys go in with
//! `send-keys`, the screen comes back with `capture-pane`.
//!
//! Skips (saying so) when tmux is not installed.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../procview/tests/fixtures")
}

/// A private tmux server, killed on drop (also when a test fails).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// Waits until the screen satisfies `ok`; fails with the last screen.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The first data row of the table titled `title`.
fn first_row(screen: &str, title: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(title)).unwrap_or(0);
    lines.get(at + 2).unwrap_or(&"").to_string()
}

/// `tmux new-session` running `kmlink top ARGS` in a 110×40 window; the
/// shell prints top's exit status when it ends.
fn start_top(tmux: &Tmux, args: &str) {
    // The shell reports top's exit status on the screen: tmux's own
    // #{pane_dead_status} is sometimes never filled in (tmux 3.3a).
    let cmd = format!(
        "sh -c '{} top {args}; echo kmlink-top-exit=$?; sleep 30'",
        env!("CARGO_BIN_EXE_kmlink"),
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "110",
        "-y",
        "40",
        &cmd,
        ";",
        "set-option",
        "-t",
        "top",
        "remain-on-exit",
        "on",
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_snapshot(from: &str, to: &Path) {
    for rel in ["kmlink/stats", "kmlink/events", "sys/kernel/osrelease"] {
        let src = fixtures().join(from).join(rel);
        if !src.exists() {
            continue;
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        // Written then renamed, as a reader would see /proc: whole.
        let tmp = dst.with_extension("tmp");
        std::fs::copy(&src, &tmp).unwrap();
        std::fs::rename(&tmp, &dst).unwrap();
    }
}

#[test]
fn top_in_tmux_sorts_filters_pauses_and_quits() {
    if Command::new("tmux").arg("-V").output().is_err() {
        return kmlink_testkit::missing(
            "tmux (apt-get install tmux): kmlink top was not tested in a terminal",
        );
    }
    let root = std::env::temp_dir().join(format!("kmlink-top-tmux-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_snapshot("busy-1", &root);

    let tmux = Tmux {
        socket: format!("kmlink-test-{}", std::process::id()),
    };
    start_top(&tmux, &format!("-d 0.3 --proc-root {}", root.display()));

    // First frames: totals, the header from the monitor table.
    let s = tmux.wait("the first frame", |s| s.contains("processes (9)"));
    assert!(
        s.contains("6.12.43+deb13-amd64") && s.contains("backend tracepoint"),
        "{s}"
    );
    assert!(
        first_row(&s, "processes").contains("systemd-journal"),
        "{s}"
    );
    assert!(s.contains("q quit"), "footer: {s}");

    // The monitor moves on: stress-ng allocating hard comes to the top.
    copy_snapshot("busy-2", &root);
    let s = tmux.wait("stress-ng on top", |s| {
        first_row(s, "processes").contains("stress-ng")
    });
    assert!(first_row(&s, "processes").contains("98000"), "{s}");
    assert!(s.contains("ring_full 1532"), "{s}");

    // Sort keys: pid ascending, then allocations in total.
    tmux.keys(&["i"]);
    let s = tmux.wait("sort by pid", |s| s.contains("sort pid"));
    assert!(
        first_row(&s, "processes")
            .trim_start()
            .starts_with("1 systemd"),
        "{s}"
    );
    tmux.keys(&["A"]);
    let s = tmux.wait("sort by allocs", |s| s.contains("ALLOCS▼"));
    assert!(
        first_row(&s, "processes").contains("systemd-journal"),
        "{s}"
    );

    // Filter: `/`, text, Enter.
    tmux.keys(&["/", "f", "i", "n", "d"]);
    tmux.wait("the filter prompt", |s| s.contains("filter: find_"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the filtered tables", |s| s.contains("processes (1 of 10)"));
    assert!(first_row(&s, "processes").contains("find"), "{s}");
    assert!(s.contains("caches (0 of 9)"), "{s}");
    tmux.keys(&["Escape"]);
    tmux.wait("the filter cleared", |s| s.contains("processes (10)"));

    // Pause and resume.
    tmux.keys(&["p"]);
    tmux.wait("PAUSED", |s| s.contains("PAUSED"));
    tmux.keys(&["Space"]);
    tmux.wait("resumed", |s| !s.contains("PAUSED"));

    // Quit: the process ends cleanly and leaves the alternate screen.
    tmux.keys(&["q"]);
    let s = tmux.wait("top to quit on q", |s| s.contains("kmlink-top-exit="));
    assert!(
        s.contains("kmlink-top-exit=0"),
        "kmlink top exit status: {s}"
    );
    let s = tmux.screen();
    assert!(
        !s.contains("processes ("),
        "the alternate screen was left: {s}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The cgroup view (`c`): rows named from a cgroup2 hierarchy given with
/// `--cgroup-root` (here a directory tree whose inode numbers the snapshot's
/// cgroup table uses as ids), long paths shortened keeping what tells them
/// apart (the leaf, or the container), sorted like the other views.
#[test]
fn top_in_tmux_shows_cgroups_by_path() {
    if Command::new("tmux").arg("-V").output().is_err() {
        return kmlink_testkit::missing(
            "tmux (apt-get install tmux): kmlink top's cgroup view was not tested in a terminal",
        );
    }
    use std::os::unix::fs::MetadataExt;
    let base = std::env::temp_dir().join(format!("kmlink-top-cg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (root, cg) = (base.join("proc"), base.join("cgroup"));
    copy_snapshot("leaks", &root);
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let groups = [
        (format!("system.slice/docker-{id}.scope"), 5000u64),
        (
            "user.slice/user-1000.slice/session-3.scope".to_string(),
            3000,
        ),
        (
            "workloads/batch/nightly-reindex-of-the-search-cluster".to_string(),
            9000,
        ),
        ("init.scope".to_string(), 10),
    ];
    let mut table =
        "# cgroup: cgroup allocs frees bytes outstanding bytes_req page_allocs page_frees page_bytes\n"
            .to_string();
    for (path, allocs) in &groups {
        std::fs::create_dir_all(cg.join(path)).unwrap();
        let ino = std::fs::metadata(cg.join(path)).unwrap().ino();
        table += &format!("{ino} {allocs} 0 {} 0 {} 0 0 0\n", allocs * 64, allocs * 60);
    }
    let stats_path = root.join("kmlink/stats");
    let stats = std::fs::read_to_string(&stats_path).unwrap();
    let start = stats.find("# cgroup:").unwrap();
    let end = start + stats[start..].find("\n\n").unwrap() + 1;
    std::fs::write(
        &stats_path,
        format!("{}{table}{}", &stats[..start], &stats[end..]),
    )
    .unwrap();

    let tmux = Tmux {
        socket: format!("kmlink-test-cg-{}", std::process::id()),
    };
    start_top(
        &tmux,
        &format!(
            "-d 0.3 --sort allocs --proc-root {} --cgroup-root {}",
            root.display(),
            cg.display()
        ),
    );
    tmux.wait("the process view", |s| s.contains("processes (1)"));
    tmux.keys(&["c"]);
    let s = tmux.wait("the cgroup view", |s| s.contains("cgroups (4)"));
    assert!(s.contains("CGROUP"), "{s}");
    assert!(s.contains("c processes"), "footer: {s}");
    let rows: Vec<&str> = {
        let lines: Vec<&str> = s.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("cgroups ("))
            .unwrap();
        lines[at + 2..at + 6].to_vec()
    };
    // Most allocations first; each name says which group it is.
    // (110 columns leave the name 39: a full path of 54 keeps its leaf.)
    assert!(
        rows[0].starts_with("…/nightly-reindex-of-the-search-cluster "),
        "{s}"
    );
    assert!(rows[1].contains("container docker 0123456789ab"), "{s}");
    assert!(rows[2].contains("/user.slice/…/session-3.scope"), "{s}");
    assert!(rows[3].contains("/init.scope (systemd init.scope)"), "{s}");
    assert!(rows[0].contains("9000"), "{s}");
    // Back to processes.
    tmux.keys(&["c"]);
    let s = tmux.wait("the process view again", |s| s.contains("processes (1)"));
    assert!(!s.contains("cgroups ("), "{s}");
    tmux.keys(&["q"]);
    let s = tmux.wait("top to quit on q", |s| s.contains("kmlink-top-exit="));
    assert!(s.contains("kmlink-top-exit=0"), "{s}");
    let _ = std::fs::remove_dir_all(&base);
}
