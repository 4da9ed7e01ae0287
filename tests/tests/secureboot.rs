//! kmlink under UEFI Secure Boot, from Debian packages only: OVMF with
//! Microsoft's keys and Secure Boot enforced, Debian's signed shim and GRUB,
//! Debian's **signed** kernel image, and a test key enrolled as a Machine
//! Owner Key in the firmware's variable store (tests/src/secureboot.rs).
//!
//! Per kernel, two boots:
//!
//! 1. lockdown `integrity` (what Secure Boot alone gives): Secure Boot is
//!    on; the unsigned module is refused (EKEYREJECTED, "Loading of
//!    unsigned module is rejected"); `kmlink load` without a key refuses
//!    before inserting and says why; a module signed with a key that is not
//!    enrolled is refused ("unavailable key"); the module kmlink signed
//!    (`kmlink build --sign-key/--sign-cert`, key from `kmlink key
//!    generate`, byte-identical to Debian's `sign-file`) with the enrolled
//!    key loads and counts the workload's allocations, frees and pages
//!    exactly as the kernel's kmem tracepoints do; it unloads cleanly;
//!    `kmlink load` with the enrolled key configured signs and loads; taint
//!    gains exactly O, no E.
//! 2. `lockdown=confidentiality`: tracefs is closed, yet the signed module
//!    loads with both backends (tracepoint, kprobe) and counts the
//!    workload; in the same boot `bpftool prog load` of a kprobe program
//!    that reads kernel memory with `bpf_probe_read_kernel` (as bcc's
//!    memleak does) is refused by the kernel.
//!
//! CI (scripts/test) runs 6.1.0-47-amd64. The three pinned signed kernels
//! (tests/kernels-secureboot.toml): `cargo test -p kmlink-tests --test
//! secureboot -- --ignored --test-threads=1 --skip secure_boot_on_release`;
//! any signed kernel: scripts/matrix-secureboot (it runs
//! `secure_boot_on_release` with `$KMLINK_SECUREBOOT_RELEASE`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmlink_tests::monitor::{self, field, section, tables, Backend};
use kmlink_tests::secureboot::{self as sb};
use kmlink_tests::{bpf, build_from_packages, files_under, kernel, kmlink_bin, kmlink_ok};
use kmlink_vm::{Boot, GuestFile, SecureBoot, Source, VmResult, VmSpec};

/// TAINT_OOT_MODULE.
const TAINT_O: u64 = 1 << 12;
/// TAINT_UNSIGNED_MODULE.
const TAINT_E: u64 = 1 << 13;
/// EKEYREJECTED: busybox insmod exits with the errno.
const EKEYREJECTED: i32 = 129;

/// Keys and firmware for one kernel's boots.
struct Setup {
    dir: tempfile::TempDir,
    firmware: SecureBoot,
    /// Enrolled as a MOK: (key PEM, certificate DER), from `kmlink key generate`.
    mok: (PathBuf, PathBuf),
    /// Never enrolled.
    stranger: (PathBuf, PathBuf),
}

/// `kmlink key generate --dir DIR --name NAME`: (key, certificate).
fn generate_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = kmlink_ok(&["key", "generate", "--dir", s(dir), "--name", name])
        .unwrap_or_else(|e| panic!("kmlink key generate: {e}"));
    let path = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|r| r.split_whitespace().next())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no {label:?} in:\n{out}"))
    };
    let (key, cert) = (path("key:"), path("certificate:"));
    assert!(key.is_file() && cert.is_file(), "{out}");
    (key, cert)
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = sb::firmware().expect("Secure Boot firmware from Debian packages");
    let mok = generate_key(&dir.path().join("mok"), "kmlink test MOK");
    let stranger = generate_key(&dir.path().join("stranger"), "kmlink stranger");
    let firmware = sb::with_mok(&base, &mok.1, dir.path()).expect("MOK enrolment");
    Setup {
        dir,
        firmware,
        mok,
        stranger,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `kmlink build --from-packages` for `release` into `out`, signed with
/// `key` (`--sign-key`/`--sign-cert`) if given.
fn build(release: &str, backend: Backend, key: Option<&(PathBuf, PathBuf)>, out: &Path) {
    let sign = match key {
        Some((k, c)) => vec!["--sign-key", s(k), "--sign-cert", s(c)],
        None => Vec::new(),
    };
    build_from_packages(release, backend.arg(), &sign, out)
        .unwrap_or_else(|e| panic!("{release}: {e}"));
}

/// The kernel's own signer agrees: `sign-file sha256` over the unsigned
/// module with the same key gives kmlink's signed module byte for byte.
fn cross_check_with_sign_file(key: &(PathBuf, PathBuf), unsigned: &Path, signed: &Path) {
    let reference = unsigned.with_extension("sign-file.ko");
    sb::sign_with_sign_file(&key.0, &key.1, unsigned, &reference).expect("sign-file");
    let (a, b) = (
        std::fs::read(signed).expect("read"),
        std::fs::read(&reference).expect("read"),
    );
    assert!(
        a == b,
        "kmlink's signature differs from sign-file's ({} vs {} bytes)",
        a.len(),
        b.len()
    );
}

fn spec(release: &str, setup: &Setup, script: &str) -> VmSpec {
    let vmlinuz = sb::signed_vmlinuz(release).expect("signed kernel image");
    let mut spec = VmSpec::new(vmlinuz, script);
    spec.boot = Boot::SecureBoot(setup.firmware.clone());
    spec.memory_mb = 1024;
    spec.smp = 2;
    spec.timeout = Duration::from_secs(900);
    spec
}

fn module(guest: &str, host: &Path) -> GuestFile {
    GuestFile::new(guest, Source::Path(host.to_path_buf()), 0o644)
}

fn report(release: &str, what: &str, r: &VmResult) {
    eprintln!(
        "{release} [{what}]: firmware+shim+GRUB+kernel to /init {:.1}s, total {:.1}s",
        r.boot_time.as_secs_f64(),
        r.duration.as_secs_f64()
    );
    if let Err(e) = r.check_clean() {
        panic!(
            "{release} [{what}]: {e}\n--- output ---\n{}\n--- dmesg ---\n{}",
            r.output, r.dmesg
        );
    }
}

fn marker<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("@@{name} ")))
        .unwrap_or_else(|| panic!("no @@{name} in:\n{output}"))
        .trim()
}

fn rc(output: &str, name: &str) -> i32 {
    field(marker(output, name), "rc")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("@@{name} has no rc"))
}

/// The dmesg lines that contain `needle`.
fn dmesg_lines<'a>(r: &'a VmResult, needle: &str) -> Vec<&'a str> {
    r.dmesg.lines().filter(|l| l.contains(needle)).collect()
}

/// What `kmlink load --from-host` needs in the guest: the kernel image and
/// config at their Debian paths, a few stock modules where the distribution
/// puts them (as load_vm.rs does).
fn host_facts(release: &str) -> Vec<GuestFile> {
    let (vmlinuz, config, modules_dir) = match kernel(release) {
        Ok(t) => (t.vmlinuz, t.config, t.modules_dir),
        // Not a pinned test kernel (scripts/matrix-secureboot): the tree
        // `kmlink build --from-packages` unpacked into the cache.
        Err(_) => unpacked_tree(release)
            .unwrap_or_else(|| panic!("{release}: no unpacked kernel tree in the cache")),
    };
    let root = if modules_dir.to_string_lossy().contains("/usr/lib/modules/") {
        format!("/usr/lib/modules/{release}")
    } else {
        format!("/lib/modules/{release}")
    };
    let mut files = vec![module(&format!("/boot/vmlinuz-{release}"), &vmlinuz)];
    if let Some(c) = &config {
        files.push(module(&format!("/boot/config-{release}"), c));
    }
    let complete = |p: &Path| {
        kmlink_donor::ko::load(p)
            .ok()
            .and_then(|b| kmlink_donor::ko::read(&b).ok())
            .is_some_and(|f| f.this_module_relocs.len() >= 2)
    };
    let small: Vec<PathBuf> = files_under(&modules_dir.join("kernel/lib"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ko"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 64 * 1024))
        .take(400)
        .collect();
    let (full, lib): (Vec<_>, Vec<_>) = small.into_iter().partition(|p| complete(p));
    for p in full.into_iter().take(3).chain(lib.into_iter().take(3)) {
        let rel = p
            .strip_prefix(&modules_dir)
            .expect("below")
            .to_string_lossy()
            .into_owned();
        files.push(module(&format!("{root}/{rel}"), &p));
    }
    files
}

/// `<cache>/kernels/<release>/` as `kmlink build --from-packages` left it:
/// (vmlinuz, config, modules directory).
fn unpacked_tree(release: &str) -> Option<(PathBuf, Option<PathBuf>, PathBuf)> {
    let root = sb::cache_root().join("kernels").join(release);
    let first = |c: &[String]| c.iter().map(|p| root.join(p)).find(|p| p.exists());
    let vmlinuz = first(&[
        format!("boot/vmlinuz-{release}"),
        format!("usr/lib/modules/{release}/vmlinuz"),
    ])?;
    let config = first(&[
        format!("boot/config-{release}"),
        format!("usr/lib/modules/{release}/config"),
    ]);
    let modules = first(&[
        format!("usr/lib/modules/{release}/kernel"),
        format!("lib/modules/{release}/kernel"),
    ])?;
    Some((vmlinuz, config, modules.parent()?.to_path_buf()))
}

/// A stripped copy of the kmlink binary (the debug build is large).
fn guest_kmlink(dir: &Path) -> PathBuf {
    let dst = dir.join("kmlink");
    std::fs::copy(kmlink_bin(), &dst).expect("copy kmlink");
    let _ = std::process::Command::new("strip").arg(&dst).status();
    dst
}

const INTEGRITY_SCRIPT: &str = r#"
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "@@LOCKDOWN $(cat /sys/kernel/security/lockdown)"
[ -d /sys/firmware/efi ] && echo "@@EFI yes"
t0=$(cat /proc/sys/kernel/tainted)
insmod /unsigned.ko; echo "@@UNSIGNED rc=$?"
insmod /stranger.ko; echo "@@STRANGER rc=$?"
export HOME=/root KMLINK_DB=/tmp/empty.db
kmlink load --from-host > /tmp/load.out 2>&1; echo "@@KMLINK-LOAD rc=$?"
echo "@@KMLINK-LOAD-OUT-BEGIN"; cat /tmp/load.out; echo "@@KMLINK-LOAD-OUT-END"
grep -q '^kmlink ' /proc/modules && echo "@@LEFT-LOADED yes"
echo "@@TAINT-AFTER-REFUSALS before=$t0 after=$(cat /proc/sys/kernel/tainted)"
sh /monitor.sh; echo "@@MONITOR rc=$?"
KMLINK_SIGN_KEY=/keys/mok.key KMLINK_SIGN_CERT=/keys/mok.der kmlink load --from-host > /tmp/load2.out 2>&1
echo "@@KMLINK-SIGNED-LOAD rc=$?"
echo "@@KMLINK-SIGNED-LOAD-OUT-BEGIN"; cat /tmp/load2.out; echo "@@KMLINK-SIGNED-LOAD-OUT-END"
grep -q '^kmlink ' /proc/modules && echo "@@SIGNED-LOADED yes"
kmlink unload; echo "@@KMLINK-UNLOAD rc=$?"
"#;

fn integrity_boot(release: &str, setup: &Setup) {
    let d = setup.dir.path();
    let unsigned = d.join("kmlink.ko");
    build(release, Backend::Tracepoint, None, &unsigned);
    let (signed, stranger) = (d.join("signed.ko"), d.join("stranger.ko"));
    build(release, Backend::Tracepoint, Some(&setup.mok), &signed);
    build(
        release,
        Backend::Tracepoint,
        Some(&setup.stranger),
        &stranger,
    );
    cross_check_with_sign_file(&setup.mok, &unsigned, &signed);
    let mut spec = spec(release, setup, INTEGRITY_SCRIPT);
    spec.files = vec![
        module("/unsigned.ko", &unsigned),
        module("/stranger.ko", &stranger),
        module("/signed.ko", &signed),
        GuestFile::bytes("/monitor.sh", monitor::script("/signed.ko"), 0o755),
        module("/keys/mok.key", &setup.mok.0),
        module("/keys/mok.der", &setup.mok.1),
    ];
    spec.files.extend(host_facts(release));
    spec.include_host_binary = Some(guest_kmlink(d));
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    report(release, "integrity", &r);
    let out = &r.output;

    // Secure Boot is on, and so is lockdown.
    assert_eq!(marker(out, "LOCKDOWN"), "none [integrity] confidentiality");
    assert_eq!(marker(out, "EFI"), "yes");
    assert!(
        !dmesg_lines(&r, "Secure boot enabled").is_empty(),
        "{release}: no 'Secure boot enabled'\n{}",
        r.dmesg
    );
    let mok = dmesg_lines(&r, "kmlink test MOK");
    assert!(
        !mok.is_empty(),
        "{release}: the MOK was not loaded\n{}",
        r.dmesg
    );

    // Refusals: unsigned, then signed by a key the kernel does not trust.
    assert_eq!(rc(out, "UNSIGNED"), EKEYREJECTED, "{release}\n{out}");
    let unsigned_lines = dmesg_lines(&r, "Loading of unsigned module is rejected");
    assert!(!unsigned_lines.is_empty(), "{release}\n{}", r.dmesg);
    assert_eq!(rc(out, "STRANGER"), EKEYREJECTED, "{release}\n{out}");
    let stranger_lines = dmesg_lines(&r, "Loading of module with unavailable key is rejected");
    assert!(!stranger_lines.is_empty(), "{release}\n{}", r.dmesg);

    // Refusals leave the taint alone.
    let t = marker(out, "TAINT-AFTER-REFUSALS");
    assert_eq!(field(t, "before"), field(t, "after"), "{release}: {t}");

    // The signed module: loads, counts exactly, unloads.
    assert_eq!(rc(out, "MONITOR"), 0, "{release}\n{out}\n{}", r.dmesg);
    monitor::check_output(release, Backend::Tracepoint, &r);
    let added = r.taint_added().expect("taint known");
    assert_eq!(
        added, TAINT_O,
        "{release}: taint must gain exactly O (no E: the signature verified), gained {added:#x}\n{}",
        r.dmesg
    );
    assert_eq!(added & TAINT_E, 0);
    eprintln!(
        "{release}: refused unsigned ({}), refused unknown key ({}); MOK: {}",
        unsigned_lines[0].trim(),
        stranger_lines[0].trim(),
        mok[0].trim()
    );
    eprintln!("@@SB-PART {release} integrity ok");
    // Last, as it needs the newest CLI: `kmlink load` without a key is
    // refused before anything is inserted, and says why.
    let load_out = section(out, "KMLINK-LOAD-OUT");
    eprintln!("{release}: kmlink load without a key:\n{load_out}");
    assert_eq!(rc(out, "KMLINK-LOAD"), 2, "{release}\n{load_out}");
    assert!(
        load_out.contains("accepts only signed modules"),
        "{release}\n{load_out}"
    );
    assert!(
        load_out.contains("kmlink key generate"),
        "{release}\n{load_out}"
    );
    assert!(!out.contains("@@LEFT-LOADED"), "{release}\n{out}");
    eprintln!("@@SB-PART {release} kmlink-load ok");

    // With the enrolled key configured, `kmlink load` signs and loads.
    let signed_out = section(out, "KMLINK-SIGNED-LOAD-OUT");
    eprintln!("{release}: kmlink load with the enrolled key:\n{signed_out}");
    assert_eq!(rc(out, "KMLINK-SIGNED-LOAD"), 0, "{release}\n{signed_out}");
    assert!(out.contains("@@SIGNED-LOADED yes"), "{release}\n{out}");
    assert_eq!(rc(out, "KMLINK-UNLOAD"), 0, "{release}\n{out}");
    eprintln!("@@SB-PART {release} kmlink-load-signed ok");
}

const CONFIDENTIALITY_SCRIPT: &str = r#"
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "@@LOCKDOWN $(cat /sys/kernel/security/lockdown)"
[ -e /sys/kernel/tracing/trace ] && echo "@@TRACEFS open" || echo "@@TRACEFS closed"
for b in tracepoint kprobe; do
  insmod /kmlink-$b.ko; echo "@@INSMOD-$b rc=$?"
  sh -c 'exec find /sys/devices /proc/self > /dev/null 2>&1' &
  pid=$!
  wait $pid
  echo "@@PID-$b pid=$pid"
  cat /proc/kmlink/stats > /tmp/stats-$b
  echo "@@STATS-$b-BEGIN"; cat /tmp/stats-$b; echo "@@STATS-$b-END"
  rmmod kmlink; echo "@@RMMOD-$b rc=$?"
done
mkdir -p /sys/fs/bpf
mount -t bpf bpf /sys/fs/bpf
# Lockdown's notice is printk-ratelimited, one state for every reason (10
# per 5 s): the boot's tracefs refusals spend that burst, and a bpf refusal
# inside the same 5 s is not logged (seen: BPF at 5.3 s, burst spent by 1.8 s).
sleep 6
for o in read noop; do
  bpftool prog load /$o.o /sys/fs/bpf/$o > /tmp/bpf-$o 2>&1; echo "@@BPF-$o rc=$?"
  echo "@@BPFLOG-$o-BEGIN"; cat /tmp/bpf-$o; echo "@@BPFLOG-$o-END"
done
exit 0
"#;

fn confidentiality_boot(release: &str, setup: &Setup) {
    let d = setup.dir.path();
    let mut spec = spec(release, setup, CONFIDENTIALITY_SCRIPT);
    spec.extra_append.push("lockdown=confidentiality".into());
    for backend in [Backend::Tracepoint, Backend::Kprobe] {
        let signed = d.join(format!("kmlink-{}.ko", backend.arg()));
        build(release, backend, Some(&setup.mok), &signed);
        spec.files
            .push(module(&format!("/kmlink-{}.ko", backend.arg()), &signed));
    }
    spec.files.push(GuestFile::bytes(
        "/read.o",
        bpf::reads_kernel_memory(),
        0o644,
    ));
    spec.files
        .push(GuestFile::bytes("/noop.o", bpf::trivial(), 0o644));
    spec.include_host_binary = Some(which("bpftool").expect("bpftool (apt-get install bpftool)"));
    let r = kmlink_vm::run(&spec).expect("qemu runs");
    report(release, "confidentiality", &r);
    let out = &r.output;
    assert_eq!(marker(out, "LOCKDOWN"), "none integrity [confidentiality]");
    assert_eq!(marker(out, "TRACEFS"), "closed", "{release}\n{out}");

    for backend in [Backend::Tracepoint, Backend::Kprobe] {
        let b = backend.arg();
        assert_eq!(
            rc(out, &format!("INSMOD-{b}")),
            0,
            "{release} [{b}]\n{out}\n{}",
            r.dmesg
        );
        assert_eq!(rc(out, &format!("RMMOD-{b}")), 0, "{release} [{b}]\n{out}");
        let pid = field(marker(out, &format!("PID-{b}")), "pid").expect("pid");
        let stats = section(out, &format!("STATS-{b}"));
        assert!(
            stats.lines().any(|l| l.trim() == format!("backend {b}")),
            "{release}: stats must say backend {b}\n{stats}"
        );
        let t = tables(stats);
        let (cols, rows) = t.get("process").expect("process table");
        let col = |n: &str| cols.iter().position(|c| c == n).expect("column");
        let sum = |n: &str| -> u64 {
            rows.iter()
                .filter(|r| r[0] == pid)
                .map(|r| r[col(n)].parse::<u64>().expect("number"))
                .sum()
        };
        let (allocs, frees, pages) = (sum("allocs"), sum("frees"), sum("page_allocs"));
        eprintln!(
            "{release} [confidentiality, {b}]: pid {pid}: allocations {allocs}, frees {frees}, page allocations {pages}"
        );
        assert!(
            allocs > 100,
            "{release} [{b}]: the workload's allocations must be counted\n{stats}"
        );
        assert!(frees > 0, "{release} [{b}]\n{stats}");
        assert!(pages > 0, "{release} [{b}]\n{stats}");
    }
    let added = r.taint_added().expect("taint known");
    assert_eq!(
        added, TAINT_O,
        "{release}: taint gained {added:#x}\n{}",
        r.dmesg
    );

    // eBPF: reading kernel memory is withheld, so the program is refused.
    let read_log = section(out, "BPFLOG-read");
    let noop_log = section(out, "BPFLOG-noop");
    eprintln!(
        "{release} [confidentiality]: bpftool prog load (bpf_probe_read_kernel): rc {}\n{read_log}\n\
         bpftool prog load (trivial): rc {}\n{noop_log}\nkernel: {:?}",
        rc(out, "BPF-read"),
        rc(out, "BPF-noop"),
        {
            let mut l: Vec<&str> = dmesg_lines(&r, "Lockdown:")
                .into_iter()
                .filter_map(|l| l.split_once("] ").map(|(_, t)| t))
                .collect();
            l.dedup();
            l
        }
    );
    assert_ne!(
        rc(out, "BPF-read"),
        0,
        "{release}: must be refused\n{read_log}"
    );
    // libbpf probes for bpf_probe_read_kernel first; under lockdown that
    // probe fails too, so it rewrites the call to the older bpf_probe_read
    // (helper 4), which lockdown withholds as well. The verifier then
    // refuses the helper: "unknown func bpf_probe_read#4" (6.1), "program
    // of this type cannot use helper bpf_probe_read#4" (6.12 on).
    let refusal = read_log.lines().find(|l| {
        l.contains("bpf_probe_read")
            && (l.contains("unknown func") || l.contains("cannot use helper"))
    });
    assert!(
        refusal.is_some(),
        "{release}: the verifier refuses the withheld helper\n{read_log}"
    );
    eprintln!(
        "{release} [confidentiality]: verifier: {}",
        refusal.unwrap_or_default()
    );
    // Not the bpf() syscall as a whole: the trivial program loads.
    assert_eq!(rc(out, "BPF-noop"), 0, "{release}\n{noop_log}");
    assert!(
        !dmesg_lines(&r, "use of bpf to read kernel RAM is restricted").is_empty(),
        "{release}: lockdown's own message\n{}",
        r.dmesg
    );
    eprintln!("@@SB-PART {release} confidentiality ok");
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn secure_boot(release: &str) {
    let setup = setup();
    // Both boots run even if the first fails, so one run shows everything.
    let first = std::panic::catch_unwind(|| integrity_boot(release, &setup));
    confidentiality_boot(release, &setup);
    if let Err(e) = first {
        std::panic::resume_unwind(e);
    }
}

#[test]
#[ignore = "boots a Secure Boot chain in QEMU"]
fn secure_boot_on_6_1() {
    secure_boot("6.1.0-47-amd64");
}

#[test]
#[ignore = "boots a Secure Boot chain in QEMU (not in CI: see the module docs)"]
fn secure_boot_on_6_12() {
    secure_boot("6.12.107+deb13-amd64");
}

#[test]
#[ignore = "boots a Secure Boot chain in QEMU (not in CI: see the module docs)"]
fn secure_boot_on_7_3() {
    secure_boot("7.3.4+deb13-amd64");
}

/// The kernel named by `$KMLINK_SECUREBOOT_RELEASE` (scripts/matrix-secureboot).
#[test]
#[ignore = "boots a Secure Boot chain in QEMU (scripts/matrix-secureboot)"]
fn secure_boot_on_release() {
    let release = std::env::var("KMLINK_SECUREBOOT_RELEASE")
        .expect("set KMLINK_SECUREBOOT_RELEASE (scripts/matrix-secureboot does)");
    secure_boot(&release);
}
