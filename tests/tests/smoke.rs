//! Harness smoke tests on every pinned kernel: boot, load a stock module of
//! that kernel, list it, remove it, and find nothing wrong; and show that the
//! harness does report a problem when one is provoked.
//!
//! These boot real kernels: `cargo test -p kmlink-tests -- --ignored`.

use std::time::Duration;

use kmlink_tests::{kernel, pinned_releases, stock_module};
use kmlink_vm::{GuestFile, Source, VmSpec};

fn boot(release: &str, files: Vec<GuestFile>, script: &str) -> kmlink_vm::VmResult {
    let tree = kernel(release).expect("pinned kernel");
    let mut spec = VmSpec::new(&tree.vmlinuz, script);
    spec.files = files;
    spec.timeout = Duration::from_secs(240);
    let result = kmlink_vm::run(&spec).expect("qemu runs");
    eprintln!(
        "{release}: boot {:.1}s total {:.1}s",
        result.boot_time.as_secs_f64(),
        result.duration.as_secs_f64()
    );
    result
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn stock_module_loads_cleanly_on_every_pinned_kernel() {
    for release in pinned_releases().expect("pins") {
        let tree = kernel(&release).expect("pinned kernel");
        let (name, bytes) = stock_module(&tree).expect("a stock module");
        let script = format!(
            "cat /proc/version\ninsmod /stock.ko || exit 10\ngrep -q '^{name} ' /proc/modules || exit 11\necho listed\nrmmod {name} || exit 12\ngrep -q '^{name} ' /proc/modules && exit 13\necho removed\n"
        );
        let files = vec![GuestFile {
            guest_path: "/stock.ko".into(),
            contents: Source::Bytes(bytes),
            mode: 0o644,
        }];
        let r = boot(&release, files, &script);
        if let Err(e) = r.check_clean() {
            panic!("{release}: stock module {name}: {e}");
        }
        assert!(
            r.output.contains(&format!("Linux version {release} ")),
            "{release}: {}",
            r.output
        );
        assert!(
            r.output.contains("listed") && r.output.contains("removed"),
            "{release}: {}",
            r.output
        );
        assert_eq!(
            r.taint_added(),
            Some(0),
            "{release}: an in-tree module must not taint"
        );
    }
}

#[test]
#[ignore = "boots real kernels in QEMU"]
fn module_from_another_kernel_is_refused_and_detected() {
    let releases = pinned_releases().expect("pins");
    assert!(releases.len() >= 2, "need two pinned kernels");
    let (donor_rel, target_rel) = (&releases[0], &releases[1]);
    let (name, bytes) = stock_module(&kernel(donor_rel).expect("kernel")).expect("a stock module");
    let files = vec![GuestFile {
        guest_path: "/foreign.ko".into(),
        contents: Source::Bytes(bytes),
        mode: 0o644,
    }];
    let r = boot(target_rel, files, "insmod /foreign.ko && exit 1\nexit 0\n");
    assert_eq!(
        r.exit_status,
        Some(0),
        "{name} from {donor_rel} must be refused by {target_rel}: {}",
        r.output
    );
    assert!(
        !r.problems.is_empty(),
        "the harness must report the refusal of {name} ({donor_rel}) by {target_rel}; dmesg:\n{}",
        r.dmesg
    );
    assert!(r.check_clean().is_err());
}
