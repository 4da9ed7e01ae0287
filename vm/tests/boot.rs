//! Boots real Debian kernels in QEMU. All tests here are `#[ignore]`: they
//! need QEMU, busybox-static and unpacked kernels under `$KMLINK_TEST_KERNELS`
//! (default: the kmlink cache, `~/.cache/kmlink/kernels`, which the
//! `kmlink-tests` suite fills). Run with:
//!
//! ```text
//! cargo test -p kmlink-vm --test boot -- --ignored --test-threads=1 --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmlink_vm::{run, Accel, GuestFile, ProblemKind, VmResult, VmSpec};

const K61: &str = "6.1.0-47-amd64";
const K612: &str = "6.12.107+deb13-amd64";
const K73: &str = "7.3.4+deb13-amd64";

fn kern_root() -> PathBuf {
    std::env::var_os("KMLINK_TEST_KERNELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The kernels scripts/test has the crawler unpack (its cache).
            let cache = std::env::var_os("KMLINK_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/kmlink")
                });
            cache.join("kernels")
        })
}

/// The unpacked package tree of a kernel release.
fn tree(release: &str) -> PathBuf {
    kern_root().join(release)
}

/// The modules directory of a release (`lib/modules` or `usr/lib/modules`).
fn modules_dir(release: &str) -> PathBuf {
    let t = tree(release);
    for d in ["lib/modules", "usr/lib/modules"] {
        let p = t.join(d).join(release);
        if p.is_dir() {
            return p;
        }
    }
    panic!("no modules directory for {release} under {}", t.display());
}

/// The kernel image of a release (`boot/vmlinuz-<rel>` or the image beside
/// the modules as in Debian's newer packaging).
fn vmlinuz(release: &str) -> PathBuf {
    let t = tree(release);
    let a = t.join("boot").join(format!("vmlinuz-{release}"));
    if a.is_file() {
        return a;
    }
    modules_dir(release).join("vmlinuz")
}

/// Finds `name.ko` or `name.ko.xz` below the release's `kernel/` tree.
fn find_module(release: &str, name: &str) -> PathBuf {
    fn walk(dir: &Path, names: &[String]) -> Option<PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                if let Some(found) = walk(&p, names) {
                    return Some(found);
                }
            } else if names.iter().any(|n| e.file_name().to_str() == Some(n)) {
                return Some(p);
            }
        }
        None
    }
    let names = [format!("{name}.ko"), format!("{name}.ko.xz")];
    walk(&modules_dir(release).join("kernel"), &names)
        .unwrap_or_else(|| panic!("module {name} not found for {release}"))
}

fn report(what: &str, r: &VmResult) {
    eprintln!(
        "[{what}] boot {:.2?}, total {:.2?}, rc {:?}, taint {:?} -> {:?}, {} problem(s), accel {:?}",
        r.boot_time,
        r.duration,
        r.exit_status,
        r.taint_before,
        r.taint_after,
        r.problems.len(),
        r.accel
    );
    for p in &r.problems {
        eprintln!("    {p}");
    }
}

/// Kernel-side module loading script for `crc-itu-t`, a dependency-free
/// stock module present in all three kernels.
const INSMOD_RMMOD: &str = "set -e
insmod /crc-itu-t.ko
grep '^crc_itu_t ' /proc/modules
rmmod crc_itu_t
if grep -q '^crc_itu_t ' /proc/modules; then echo still loaded; exit 1; fi
echo MODULE-OK
";

fn insmod_rmmod_stock(release: &str) {
    let module = find_module(release, "crc-itu-t");
    let mut spec = VmSpec::new(vmlinuz(release), INSMOD_RMMOD);
    spec.timeout = Duration::from_secs(180);
    spec.files
        .push(GuestFile::kernel_module("/crc-itu-t.ko", &module).expect("read module"));
    let r = run(&spec).expect("run");
    report(&format!("insmod {release}"), &r);
    if let Err(e) = r.check_clean() {
        panic!("{e}");
    }
    assert!(r.output.contains("MODULE-OK"), "{}", r.output);
    assert_eq!(r.taint_added(), Some(0), "stock module must not taint");
    assert!(r.dmesg.contains("Linux version"), "dmesg dump missing");
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn boot_6_1_proc_version() {
    let mut spec = VmSpec::new(vmlinuz(K61), "cat /proc/version");
    spec.timeout = Duration::from_secs(180);
    let r = run(&spec).expect("run");
    report("boot 6.1", &r);
    if let Err(e) = r.check_clean() {
        panic!("{e}");
    }
    assert!(
        r.output.starts_with(&format!("Linux version {K61}")),
        "{:?}",
        r.output
    );
    assert_eq!(r.taint_added(), Some(0));
    assert!(r.boot_time > Duration::ZERO && r.boot_time <= r.duration);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn insmod_rmmod_stock_6_1() {
    insmod_rmmod_stock(K61);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn insmod_rmmod_stock_6_12() {
    insmod_rmmod_stock(K612);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn insmod_rmmod_stock_7_3() {
    insmod_rmmod_stock(K73);
}

/// Loads `module_release`'s crc-itu-t into `kernel_release`: insmod must
/// fail and the kernel's complaint must be detected.
fn foreign_module(module_release: &str, kernel_release: &str) {
    let module = find_module(module_release, "crc-itu-t");
    let mut spec = VmSpec::new(
        vmlinuz(kernel_release),
        "insmod /crc-itu-t.ko; echo insmod-rc=$?",
    );
    spec.timeout = Duration::from_secs(180);
    spec.files
        .push(GuestFile::kernel_module("/crc-itu-t.ko", &module).expect("read module"));
    let r = run(&spec).expect("run");
    report(&format!("{module_release} module in {kernel_release}"), &r);
    assert!(!r.timed_out);
    assert!(
        !r.output.contains("insmod-rc=0") && r.output.contains("can't insert"),
        "insmod should fail: {}",
        r.output
    );
    let loader_kinds = [
        ProblemKind::VersionMagic,
        ProblemKind::SymbolVersionMismatch,
        ProblemKind::NoSymbolVersion,
        ProblemKind::InvalidModuleFormat,
        ProblemKind::UnknownSymbol,
    ];
    assert!(
        r.problems.iter().any(|p| loader_kinds.contains(&p.kind)),
        "expected a module loader problem, got {:#?}",
        r.problems
    );
    assert!(r.check_clean().is_err());
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn foreign_module_6_1_in_6_12_is_detected() {
    foreign_module(K61, K612);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn foreign_module_6_12_in_7_3_is_detected() {
    foreign_module(K612, K73);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn timeout_kills_qemu_promptly() {
    let mut spec = VmSpec::new(vmlinuz(K61), "echo sleeping; sleep 1000");
    // Long enough to boot on a loaded 2-core machine (TCG boots take 5-15 s).
    spec.timeout = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let r = run(&spec).expect("run");
    let elapsed = started.elapsed();
    report("timeout", &r);
    assert!(r.timed_out);
    assert_eq!(r.exit_status, None);
    assert!(elapsed < Duration::from_secs(65), "took {elapsed:?}");
    assert!(r.check_clean().is_err());
    // Booted within the 60 s, so the script started.
    assert!(r.output.contains("sleeping"), "{}", r.serial);
    // No dmesg dump ran, but the kernel log streamed over ttyS1 is there.
    assert!(r.dmesg.contains("Linux version"), "{}", r.dmesg);
    assert!(r.dmesg.contains("Run /init"), "{}", r.dmesg);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn host_binary_with_shared_libraries() {
    // cpio(1) is dynamically linked against glibc on Debian.
    let Some(cpio) = ["/usr/bin/cpio", "/bin/cpio"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        return kmlink_testkit::missing("cpio(1) (apt-get install cpio)");
    };
    let mut spec = VmSpec::new(vmlinuz(K61), "/bin/cpio --version | head -n 1");
    spec.timeout = Duration::from_secs(180);
    spec.include_host_binary = Some(cpio);
    let r = run(&spec).expect("run");
    report("host binary", &r);
    if let Err(e) = r.check_clean() {
        panic!("{e}");
    }
    assert!(r.output.contains("GNU cpio"), "{}", r.output);
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn accel_auto_works() {
    let mut spec = VmSpec::new(vmlinuz(K61), "echo auto-ok");
    spec.accel = Accel::Auto;
    spec.timeout = Duration::from_secs(180);
    let r = run(&spec).expect("run");
    report("accel auto", &r);
    if let Err(e) = r.check_clean() {
        panic!("{e}");
    }
    assert!(r.output.contains("auto-ok"));
    assert_ne!(r.accel, Accel::Auto);
}

#[test]
#[ignore = "boots each kernel twice to measure boot time"]
fn measure_boot_times() {
    for release in [K61, K612, K73] {
        for i in 0..2 {
            let mut spec = VmSpec::new(vmlinuz(release), "uname -r");
            spec.timeout = Duration::from_secs(180);
            let r = run(&spec).expect("run");
            report(&format!("boot {release} #{i}"), &r);
            if let Err(e) = r.check_clean() {
                panic!("{e}");
            }
            assert_eq!(r.output.trim(), release);
        }
    }
}

#[test]
#[ignore = "boots a real kernel under QEMU (needs the unpacked pinned kernels)"]
fn guest_panic_is_reported() {
    // sysrq-c crashes the kernel; panic=-1 + -no-reboot end QEMU at once.
    let mut spec = VmSpec::new(
        vmlinuz(K612),
        "echo before-crash; echo c > /proc/sysrq-trigger; echo after-crash",
    );
    spec.timeout = Duration::from_secs(180);
    let r = run(&spec).expect("run");
    report("sysrq crash", &r);
    assert!(!r.timed_out, "QEMU should exit on panic");
    assert_eq!(r.exit_status, None);
    assert!(r.output.contains("before-crash"));
    assert!(!r.output.contains("after-crash"));
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::KernelPanic),
        "{:#?}\n{}",
        r.problems,
        r.serial
    );
    assert!(r.check_clean().is_err());
}
