//! The monitor on real kernels: `kmlink build --from-packages` links the one
//! embedded core object for each pinned kernel; in the VM the module loads,
//! counts a workload's allocations exactly as the kernel's own kmem
//! tracepoint events do, unloads cleanly, and taints only O|E.
//!
//! These boot real kernels: `cargo test -p kmlink-tests -- --ignored`.

use std::time::Duration;

use kmlink_tests::monitor::{check_output, script, Backend};
use kmlink_tests::{kernel, kmlink_ok, pinned_releases};
use kmlink_vm::{GuestFile, Source, VmSpec};

/// TAINT_OOT_MODULE | TAINT_UNSIGNED_MODULE.
const TAINT_O_E: u64 = (1 << 12) | (1 << 13);

fn check_kernel(release: &str, backend: Backend) {
    let tree = kernel(release).expect("pinned kernel");
    let dir = tempfile::tempdir().expect("tempdir");
    let ko = dir.path().join("kmlink.ko");
    let backend_arg = backend.arg();
    kmlink_ok(&[
        "build",
        "--kernel",
        release,
        "--from-packages",
        "--backend",
        backend_arg,
        "-o",
        ko.to_str().expect("utf8"),
    ])
    .unwrap_or_else(|e| panic!("{release}: {e}"));
    let mut spec = VmSpec::new(&tree.vmlinuz, script("/kmlink.ko"));
    spec.memory_mb = 1024;
    spec.smp = 2;
    spec.timeout = Duration::from_secs(300);
    spec.files = vec![GuestFile {
        guest_path: "/kmlink.ko".into(),
        contents: Source::Path(ko.clone()),
        mode: 0o644,
    }];
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    eprintln!(
        "{release}: boot {:.1}s total {:.1}s",
        r.boot_time.as_secs_f64(),
        r.duration.as_secs_f64()
    );
    if let Err(e) = r.check_clean() {
        panic!(
            "{release}: {e}\n--- output ---\n{}\n--- dmesg ---\n{}",
            r.output, r.dmesg
        );
    }
    assert_eq!(
        r.taint_added(),
        Some(TAINT_O_E),
        "{release}: taint must grow by exactly O|E\n{}",
        r.dmesg
    );

    check_output(release, backend, &r);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn monitor_counts_match_kmem_tracepoints_on_every_pinned_kernel() {
    every_pinned_kernel(Backend::Tracepoint);
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn kprobe_backend_counts_track_kmem_tracepoints_on_every_pinned_kernel() {
    every_pinned_kernel(Backend::Kprobe);
}

fn every_pinned_kernel(backend: Backend) {
    let mut failures = Vec::new();
    for release in pinned_releases().expect("pins") {
        if let Err(e) = std::panic::catch_unwind(|| check_kernel(&release, backend)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into());
            failures.push(format!("{release}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
