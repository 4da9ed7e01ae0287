//! `kmlink load` on real kernels, and what a kernel does with a module the
//! checks refuse.
//!
//! (a) A record with a wrong `struct module` size: `kmlink build` refuses it;
//!     the hidden test-only `--unchecked-for-tests` writes it anyway, and the
//!     harness (never kmlink) inserts it in a VM. 6.12 refuses it ("section
//!     size must match"); 6.1 loads it silently: there the linker's check is
//!     the only guard.
//! (b) `kmlink load` run inside the guest, no record anywhere: the guest holds
//!     its vmlinuz at /boot/vmlinuz-REL and a few stock modules where the
//!     distribution puts them; kmlink builds the record from those host
//!     facts, checks, loads, and `kmlink unload` removes it. Clean dmesg,
//!     taint exactly O|E.
//!
//! These boot real kernels: `cargo test -p kmlink-tests --test load_vm -- --ignored`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmlink_tests::{files_under, kernel, kmlink, kmlink_bin};
use kmlink_vm::{GuestFile, Source, VmSpec};

/// TAINT_OOT_MODULE | TAINT_UNSIGNED_MODULE.
const TAINT_O_E: u64 = (1 << 12) | (1 << 13);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `kmlink build … --save-record` for the pinned kernel; the record's JSON.
fn record_json(release: &str, dir: &Path) -> String {
    let path = dir.join(format!("{release}.json"));
    let out = kmlink(&[
        "build",
        "--kernel",
        release,
        "--from-packages",
        "--save-record",
        s(&path),
        "--check",
    ])
    .expect("kmlink runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&path).expect("record")
}

/// The pretty-printed record with `this_module.size` replaced.
fn resize(json: &str, to: u64) -> (String, u64) {
    let at = json.find("\"this_module\": {").expect("this_module");
    let (head, tail) = json.split_at(at);
    let sz = tail.find("\"size\": ").expect("size") + "\"size\": ".len();
    let end = sz + tail[sz..].find(',').expect(",");
    let real: u64 = tail[sz..end].trim().parse().expect("number");
    (format!("{head}{}{to}{}", &tail[..sz], &tail[end..]), real)
}

fn modules_of(tree_modules: &Path, max: usize) -> Vec<(PathBuf, String)> {
    // A few small stock modules, kept at their path below the modules dir.
    files_under(&tree_modules.join("kernel/lib"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ko"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 64 * 1024))
        .take(max)
        .map(|p| {
            let rel = p
                .strip_prefix(tree_modules)
                .expect("below")
                .to_string_lossy()
                .into_owned();
            (p, rel)
        })
        .collect()
}

/// What the kernel does with a module whose struct module is 64 bytes too big.
fn wrong_size_in_vm(release: &str) -> (bool, String) {
    let tree = kernel(release).expect("pinned kernel");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = record_json(release, dir.path());
    let (_, real) = resize(&json, 0);
    let (bad, _) = resize(&json, real + 64);
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, bad).expect("write");
    let (donor, _) = modules_of(&tree.modules_dir, 400)
        .into_iter()
        .find(|(p, _)| {
            kmlink_donor::ko::load(p)
                .ok()
                .and_then(|b| kmlink_donor::ko::read(&b).ok())
                .is_some_and(|f| f.this_module_size.is_some())
        })
        .expect("a stock module");
    let ko = dir.path().join("bad.ko");

    // kmlink refuses it…
    let out = kmlink(&[
        "build",
        "--kernel",
        release,
        "--record",
        s(&bad_path),
        "--donor",
        s(&donor),
        "-o",
        s(&ko),
    ])
    .expect("kmlink runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{release}: must refuse\n{err}");
    assert!(err.contains("sizeof(struct module)"), "{err}");
    assert!(!ko.exists(), "{release}: a refused module is never written");
    // …and the test-only path writes it anyway, for the kernel to judge.
    let out = kmlink(&[
        "build",
        "--kernel",
        release,
        "--record",
        s(&bad_path),
        "--donor",
        s(&donor),
        "-o",
        s(&ko),
        "--unchecked-for-tests",
    ])
    .expect("kmlink runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = "\
if insmod /bad.ko; then echo '@@LOADED'; [ -r /proc/kmlink/stats ] && echo '@@PROC'; rmmod kmlink && echo '@@REMOVED'; \
else echo \"@@REFUSED rc=$?\"; fi\nexit 0\n";
    let mut spec = VmSpec::new(&tree.vmlinuz, script);
    spec.memory_mb = 1024;
    spec.timeout = Duration::from_secs(300);
    spec.files = vec![GuestFile {
        guest_path: "/bad.ko".into(),
        contents: Source::Path(ko),
        mode: 0o644,
    }];
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    assert!(!r.timed_out, "{release}: timed out\n{}", r.serial);
    let loaded = r.output.contains("@@LOADED");
    let lines: Vec<&str> = r
        .dmesg
        .lines()
        .filter(|l| {
            l.contains("kmlink") || l.contains("this_module") || l.contains("struct module")
        })
        .collect();
    eprintln!(
        "{release}: struct module {:#x} instead of {real:#x}: {}\n  output: {}\n  dmesg: {}",
        real + 64,
        if loaded {
            "LOADED (silently)"
        } else {
            "REFUSED"
        },
        r.output.trim().replace('\n', " | "),
        lines.join("\n         ")
    );
    (loaded, format!("{}\n{}", r.output, lines.join("\n")))
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn wrong_struct_module_size_refused_by_6_12_silently_accepted_by_6_1() {
    let (loaded, log) = wrong_size_in_vm("6.12.107+deb13-amd64");
    assert!(!loaded, "6.12 must refuse:\n{log}");
    assert!(log.contains("section size must match"), "{log}");
    let (loaded, log) = wrong_size_in_vm("6.1.0-47-amd64");
    assert!(loaded, "6.1 is expected to accept it silently:\n{log}");
    assert!(!log.contains("size must match"), "{log}");
}

/// A stripped copy of the kmlink binary (the debug build is large).
fn guest_kmlink(dir: &Path) -> PathBuf {
    let dst = dir.join("kmlink");
    std::fs::copy(kmlink_bin(), &dst).expect("copy kmlink");
    let _ = std::process::Command::new("strip").arg(&dst).status();
    dst
}

const LOAD_SCRIPT: &str = r#"
export HOME=/root KMLINK_DB=/tmp/empty.db
kmlink doctor; echo "@@DOCTOR rc=$?"
kmlink load --from-host || { echo "@@LOAD-FAILED rc=$?"; exit 30; }
grep -q '^kmlink ' /proc/modules || exit 31
[ -r /proc/kmlink/stats ] || exit 32
ls /root/.cache/kmlink/modules/
kmlink load --from-host; echo "@@SECOND rc=$?"
kmlink doctor | grep monitor
kmlink unload || exit 33
[ -e /proc/kmlink ] && exit 34
kmlink unload; echo "@@UNLOAD-AGAIN rc=$?"
kmlink load --from-host --backend kprobe || { echo "@@KPROBE-LOAD-FAILED rc=$?"; exit 35; }
grep -q '^backend kprobe' /proc/kmlink/stats || exit 36
ls /root/.cache/kmlink/modules/ | wc -l | sed 's/^/@@CACHED /'
kmlink unload || exit 37
exit 0
"#;

fn load_in_guest(release: &str) {
    let tree = kernel(release).expect("pinned kernel");
    let dir = tempfile::tempdir().expect("tempdir");
    let modules_root = if tree
        .modules_dir
        .to_string_lossy()
        .contains("/usr/lib/modules/")
    {
        format!("/usr/lib/modules/{release}")
    } else {
        format!("/lib/modules/{release}")
    };
    let mut files = vec![GuestFile {
        guest_path: format!("/boot/vmlinuz-{release}"),
        contents: Source::Path(tree.vmlinuz.clone()),
        mode: 0o644,
    }];
    if let Some(c) = &tree.config {
        files.push(GuestFile {
            guest_path: format!("/boot/config-{release}"),
            contents: Source::Path(c.clone()),
            mode: 0o644,
        });
    }
    // A few stock modules: some with init and exit, some library-only.
    let complete = |p: &Path| {
        kmlink_donor::ko::load(p)
            .ok()
            .and_then(|b| kmlink_donor::ko::read(&b).ok())
            .is_some_and(|f| f.this_module_relocs.len() >= 2)
    };
    let all = modules_of(&tree.modules_dir, 400);
    let (full, lib): (Vec<_>, Vec<_>) = all.into_iter().partition(|(p, _)| complete(p));
    assert!(
        !full.is_empty(),
        "{release}: no stock module with init and exit"
    );
    for (host, rel) in full.into_iter().take(3).chain(lib.into_iter().take(3)) {
        files.push(GuestFile {
            guest_path: format!("{modules_root}/{rel}"),
            contents: Source::Path(host),
            mode: 0o644,
        });
    }
    let mut spec = VmSpec::new(&tree.vmlinuz, LOAD_SCRIPT);
    spec.memory_mb = 1536;
    spec.timeout = Duration::from_secs(900);
    spec.files = files;
    spec.include_host_binary = Some(guest_kmlink(dir.path()));
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    eprintln!(
        "{release}: boot {:.1}s total {:.1}s\n{}",
        r.boot_time.as_secs_f64(),
        r.duration.as_secs_f64(),
        r.output
    );
    if let Err(e) = r.check_clean() {
        panic!(
            "{release}: {e}\n--- output ---\n{}\n--- dmesg ---\n{}",
            r.output, r.dmesg
        );
    }
    assert!(
        r.output.contains("@@DOCTOR rc=0"),
        "{release}: doctor must see no blocker\n{}",
        r.output
    );
    assert!(
        r.output.contains("built from this host"),
        "{release}\n{}",
        r.output
    );
    assert!(
        r.output.contains("all 9 checks agree"),
        "{release}\n{}",
        r.output
    );
    assert!(
        r.output.contains("kmlink: loaded into"),
        "{release}\n{}",
        r.output
    );
    assert!(
        r.output.contains("@@SECOND rc=2"),
        "{release}: second load refused\n{}",
        r.output
    );
    assert!(
        r.output.contains("already loaded"),
        "{release}\n{}",
        r.output
    );
    assert!(
        r.output.contains("@@UNLOAD-AGAIN rc=1"),
        "{release}\n{}",
        r.output
    );
    assert!(r.output.contains("not loaded"), "{release}\n{}", r.output);
    assert!(
        r.output.contains("@@CACHED 2"),
        "{release}: the kprobe build is cached beside the tracepoint one\n{}",
        r.output
    );
    assert_eq!(
        r.taint_added(),
        Some(TAINT_O_E),
        "{release}: taint must grow by exactly O|E\n{}",
        r.dmesg
    );
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn kmlink_load_from_host_facts_in_guest_6_1() {
    load_in_guest("6.1.0-47-amd64");
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn kmlink_load_from_host_facts_in_guest_6_12() {
    load_in_guest("6.12.107+deb13-amd64");
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn kmlink_load_from_host_facts_in_guest_7_3() {
    load_in_guest("7.3.4+deb13-amd64");
}
