//! kmlink on an installed Debian system (issue #14, "Proof"): a bookworm
//! disk image built from Debian packages only (`scripts/debian-image`),
//! booted under QEMU (TCG) from its own kernels and initrds, the same disk
//! through every boot of the scenario, with the real kmlink package
//! (`scripts/package`, built by the test: a release build, or with
//! `KMLINK_TEST_PACKAGE_ARGS=--debug` the same package of the dev-profile
//! binary; `$KMLINK_TEST_DEB` names one built before):
//!
//! 1. boot 1, kernel A (6.1.0-47-amd64): `dpkg -i` the kmlink package (its
//!    postinst prebuilds the monitor for A), `systemctl enable kmlink`;
//!    power off (the reboot);
//! 2. boot 2, kernel A: the unit loaded the prebuilt monitor without
//!    linking (journal), `kmlink status` says so (module file, built before
//!    this boot, sources, unsigned, prebuilt for A), `kmlink stats` shows a
//!    workload run after boot; `dpkg -i` kernel B (6.12 from
//!    bookworm-backports): the kernel hook links and checks the monitor for
//!    B, in dpkg's output; `kmlink status` lists A and B;
//! 3. boot 3, kernel B (the newest in /boot, as GRUB's default would be):
//!    the unit loads the prebuilt module without linking (its journal and
//!    `kmlink status` say so: built before this boot, from B's own image),
//!    and the monitor's counts for a workload equal the kernel's kmem
//!    tracepoint events;
//! 4. same boot: purge kernel A → its prebuilt module is gone (`kmlink
//!    status` lists B only); remove kmlink → only its conffiles are left;
//!    purge → nothing is left.
//!
//! `installed_debian_system_boot_path_on_one_kernel` is steps 1 and 3 on
//! kernel A alone (two boots); scripts/test runs it (the other tests of
//! this file are scripts/debian-system's) with
//! `KMLINK_TEST_PACKAGE_ARGS=--debug`: the package of the binary the suite
//! has just built, so CI needs no release build; the package is otherwise
//! the release one. A missing prerequisite fails it under `CI=true`
//! (`kmlink_testkit::missing`). The Secure Boot variant
//! (`installed_debian_system_secure_boot`) boots through OVMF, shim and
//! GRUB with a MOK enrolled and the key configured: every module signed.
//!
//! `cargo test -p kmlink-tests --test debian_system -- --ignored --nocapture`
//! (or `scripts/debian-system`). Needs root (mmdebstrap), mmdebstrap,
//! e2fsprogs (mkfs.ext4 -d, debugfs), binutils and dpkg-deb (the package),
//! dosfstools and mtools (the ESP) and the network for the packages once;
//! all cached under ~/.cache/kmlink.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::{sources, Http};
use kmlink_tests::secureboot as sb;
use kmlink_tests::{kmem, kmlink_bin, kmlink_ok, workspace};
use kmlink_vm::disk::{boot, DiskResult, DiskSpec};
use kmlink_vm::SecureBoot;

/// The kernel the image is built with.
const KERNEL_A: &str = "6.1.0-47-amd64";
/// The kernel installed as the upgrade (bookworm-backports), one whose
/// record is in kmlink's built-in bundle.
const KERNEL_B: &str = "6.12.95+deb12-amd64";
const KERNEL_B_SUITE: &str = "bookworm-backports";

/// The hook's line for a release (the package's contract).
fn linked_line(release: &str) -> String {
    format!("linked and checked the monitor for {release}")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the scenario needs on the host, if something is missing.
fn missing_prerequisite() -> Option<String> {
    let has = |tool: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file())
    };
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("dpkg-deb", "dpkg"),
        ("strip", "binutils"),
        ("qemu-system-x86_64", "qemu-system-x86"),
    ] {
        if !has(tool) {
            return Some(format!(
                "{tool} (scripts/setup, or apt-get install {package})"
            ));
        }
    }
    let uid = run(Command::new("id").arg("-u"));
    (uid.trim() != "0").then(|| "root, for mmdebstrap --mode=root (sudo)".to_string())
}

/// The cached Debian image (built on first use by scripts/debian-image).
fn debian_image() -> PathBuf {
    let out = run(&mut Command::new(workspace().join("scripts/debian-image")));
    let path = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "scripts/debian-image printed {out:?}");
    path
}

fn cache() -> Cache {
    Cache::new(
        std::env::var_os("KMLINK_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(Cache::default_root),
    )
}

/// Kernel B's image package from the archive (signed index, SHA256
/// checked, cached), under its Debian file name in `dir`.
fn kernel_b_package(dir: &Path) -> PathBuf {
    let json = run(Command::new(kmlink_bin()).args([
        "crawler",
        "list",
        "--suite",
        KERNEL_B_SUITE,
        "--flavour",
        "amd64",
        "--json",
    ]));
    let kernels: Vec<serde_json::Value> = serde_json::from_str(&json).expect("crawler list JSON");
    let k = kernels
        .iter()
        .find(|k| k["release"] == KERNEL_B)
        .unwrap_or_else(|| panic!("{KERNEL_B} is no longer in {KERNEL_B_SUITE}: pick another"));
    let entry: PackageEntry = k["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["package"] == format!("linux-image-{KERNEL_B}-unsigned"))
        })
        .map(|p| serde_json::from_value(p.clone()).expect("package entry"))
        .expect("the unsigned image package");
    let srcs = sources::host_sources(Path::new("/")).expect("apt sources");
    let mirrors = sources::debian_mirrors(&srcs);
    let http = Http::new().expect("http");
    let deb = cache()
        .fetch(&http, &mirrors.archive, &entry)
        .expect("fetching kernel B");
    let name = format!("{}_{}_amd64.deb", entry.package, entry.version);
    let to = dir.join(name.replace(':', "%3a"));
    std::fs::copy(&deb, &to).expect("copying kernel B");
    to
}

/// The kmlink package: `scripts/package`'s `kmlink_<version>_<arch>.deb`
/// (a release build; `$KMLINK_TEST_PACKAGE_ARGS`, split at whitespace, are
/// passed to the script: `--debug` packages the dev-profile binary, as
/// scripts/test does), or `$KMLINK_TEST_DEB`, the path of a package built
/// before (the same script's output on another machine).
fn kmlink_package(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var("KMLINK_TEST_DEB")
        .ok()
        .filter(|p| !p.is_empty())
    {
        assert!(
            is_kmlink_deb(Path::new(&path)),
            "KMLINK_TEST_DEB={path}: not a kmlink_<version>_<arch>.deb"
        );
        let to = dir.join(Path::new(&path).file_name().expect("a .deb file name"));
        std::fs::copy(&path, &to).unwrap_or_else(|e| panic!("KMLINK_TEST_DEB={path}: {e}"));
        return to;
    }
    let args = std::env::var("KMLINK_TEST_PACKAGE_ARGS").unwrap_or_default();
    let t = Instant::now();
    let out = run(Command::new(workspace().join("scripts/package")).args(args.split_whitespace()));
    let deb = out
        .lines()
        .rev()
        .map(|l| workspace().join(l.trim()))
        .find(|p| is_kmlink_deb(p) && p.is_file())
        .unwrap_or_else(|| panic!("scripts/package printed no kmlink_*.deb:\n{out}"));
    eprintln!(
        "scripts/package {args}: {} in {:.0} s",
        deb.display(),
        t.elapsed().as_secs_f64()
    );
    let to = dir.join(deb.file_name().expect("name"));
    std::fs::copy(&deb, &to).expect("copying the package");
    to
}

/// `kmlink_<version>_<arch>.deb` (not the -dbgsym package).
fn is_kmlink_deb(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("kmlink_") && n.ends_with(".deb"))
}

/// What every test of this file starts from: its prerequisites checked, a
/// work directory, the kmlink package in it, a private copy of the image.
struct Start {
    work: tempfile::TempDir,
    kmlink_deb: PathBuf,
    scenario: Scenario,
}

impl Start {
    /// `None` when a prerequisite is missing: the test passes with a
    /// `SKIPPED` line, or fails under CI (`kmlink_testkit::missing`).
    #[track_caller]
    fn new() -> Option<Start> {
        if let Some(what) = missing_prerequisite() {
            kmlink_testkit::missing(&what);
            return None;
        }
        let started = Instant::now();
        let work = tempfile::tempdir().expect("tempdir");
        let image = debian_image();
        let kmlink_deb = kmlink_package(work.path());
        let scenario = Scenario::new(&image, started);
        Some(Start {
            work,
            kmlink_deb,
            scenario,
        })
    }
}

/// One scenario: a private copy of the image, booted step after step.
struct Scenario {
    disk: PathBuf,
    _dir: tempfile::TempDir,
    timings: Vec<String>,
    /// When the test started (the image and the package included).
    started: Instant,
    /// Boot through OVMF, shim and GRUB with Secure Boot on.
    secure_boot: Option<SecureBoot>,
}

impl Scenario {
    fn new(image: &Path, started: Instant) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kmlink-debian-")
            .tempdir()
            .expect("tempdir");
        let disk = dir.path().join("root.img");
        // Sparse copy: the image is mostly empty.
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(image)
            .arg(&disk));
        Scenario {
            disk,
            _dir: dir,
            timings: Vec::new(),
            started,
            secure_boot: None,
        }
    }

    /// The boots' timings and the test's total, on stderr.
    fn summary(&self, what: &str) {
        eprintln!(
            "{what}: {}\ntotal {:.0} s",
            self.timings.join("\n"),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Boots the newest kernel of the disk with `script` as the step and
    /// `files` beside it on the second disk.
    fn boot(&mut self, name: &str, script: &str, files: &[&Path], timeout: Duration) -> DiskResult {
        let scen = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            scen.path().join("step.sh"),
            format!("export HOME=/root\ncd /mnt/scenario\n{STATUS_FN}\n{script}"),
        )
        .expect("step.sh");
        for f in files {
            // Hard links where possible: the packages are large.
            let to = scen.path().join(f.file_name().expect("name"));
            if std::fs::hard_link(f, &to).is_err() {
                std::fs::copy(f, &to).expect("copy");
            }
        }
        let mut spec = DiskSpec::new(&self.disk, scen.path());
        spec.timeout = timeout;
        spec.secure_boot = self.secure_boot.clone();
        let t = Instant::now();
        let r = boot(&spec).expect("booting the disk image");
        let line = format!(
            "{name}: kernel {}, multi-user after {} s (guest uptime), step started after {:.1} s, powered off after {:.1} s (host)",
            r.release,
            r.guest_boot_secs
                .map_or("?".into(), |s| format!("{s:.1}")),
            r.boot_time.map_or(f64::NAN, |d| d.as_secs_f64()),
            t.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        self.timings.push(line);
        if let Err(e) = r.check() {
            panic!("{name}: {e}");
        }
        eprintln!("--- {name} output ---\n{}", r.output);
        r
    }
}

/// The value of `@@K key=value` lines.
fn kv<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("@@K "))
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::trim)
}

fn must<'a>(out: &'a str, key: &str) -> &'a str {
    kv(out, key).unwrap_or_else(|| panic!("no @@K {key}= in:\n{out}"))
}

/// What `kmlink status` printed (`key:  value` lines) in section
/// `STATUS-<name>` of a step's output.
struct Status {
    name: String,
    lines: Vec<(String, String)>,
}

/// How the module of a status is expected to be signed.
#[derive(Clone, Copy)]
enum Signed<'a> {
    No,
    /// By a certificate whose subject contains this.
    By(&'a str),
}

impl Status {
    fn of(output: &str, name: &str) -> Status {
        let text = kmem::section(output, &format!("STATUS-{name}"))
            .unwrap_or_else(|| panic!("no kmlink status {name} in:\n{output}"));
        let lines = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Status {
            name: name.to_string(),
            lines,
        }
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> &str {
        match self.all(key)[..] {
            [v] => v,
            ref vs => panic!("status {}: {key}: {vs:?}\n{self}", self.name),
        }
    }

    /// `prebuilt:  RELEASE: built N s ago, VERDICT, SIGNED`: release → rest.
    fn prebuilt(&self) -> Vec<(&str, &str)> {
        self.all("prebuilt")
            .into_iter()
            .filter_map(|v| v.split_once(": "))
            .collect()
    }

    /// Seconds since the loaded module was built (`built:  N s ago by …`).
    fn built_secs_ago(&self) -> f64 {
        let built = self.one("built");
        built
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("status {}: built: {built:?}", self.name))
    }

    /// The checks every status of the scenario passes: running `kernel`,
    /// the monitor loaded from `loaded_from`'s prebuilt module (or not
    /// loaded), built by this kmlink from named sources, signed as
    /// `signed`, prebuilt modules for exactly `prebuilt`, each checked.
    fn check(&self, kernel: &str, loaded_from: Option<&str>, signed: Signed, prebuilt: &[&str]) {
        let ctx = || format!("status {}:\n{self}", self.name);
        assert_eq!(self.one("kernel"), kernel, "{}", ctx());
        match loaded_from {
            Some(rel) => {
                assert_eq!(
                    self.one("monitor"),
                    "loaded (backend tracepoint)",
                    "{}",
                    ctx()
                );
                assert_eq!(
                    self.one("module"),
                    format!("/var/lib/kmlink/modules/{rel}/kmlink.ko"),
                    "{}",
                    ctx()
                );
                let built = self.one("built");
                assert!(
                    built.contains(" s ago by ") && built.contains(" core "),
                    "built when, by which kmlink and core: {}",
                    ctx()
                );
                let sources = self.all("source");
                assert!(
                    sources.iter().any(|s| s.starts_with("record: ")),
                    "the record it was linked from: {}",
                    ctx()
                );
                assert!(
                    sources.iter().any(
                        |s| s.starts_with("donor: ") && s.contains(&format!("/modules/{rel}/"))
                    ),
                    "the donor module of {rel}: {}",
                    ctx()
                );
                let sig = self.one("signed");
                match signed {
                    Signed::No => assert_eq!(sig, "no", "{}", ctx()),
                    Signed::By(who) => assert!(
                        sig.contains("sha256") && sig.contains(who),
                        "signed by {who}: {}",
                        ctx()
                    ),
                }
            }
            None => assert_eq!(self.one("monitor"), "not loaded", "{}", ctx()),
        }
        assert!(
            self.one("config").starts_with("/etc/kmlink/kmlink.toml: ")
                && self.one("config").ends_with("load at boot yes"),
            "{}",
            ctx()
        );
        let listed = self.prebuilt();
        let mut releases: Vec<&str> = listed.iter().map(|(r, _)| *r).collect();
        let mut want = prebuilt.to_vec();
        releases.sort_unstable();
        want.sort_unstable();
        assert_eq!(releases, want, "prebuilt modules: {}", ctx());
        for (rel, rest) in listed {
            assert!(
                rest.starts_with("built ") && rest.contains("verdict"),
                "{rel}: when and the checks' verdict: {}",
                ctx()
            );
            match signed {
                Signed::No => assert!(rest.ends_with(", unsigned"), "{rel}: {}", ctx()),
                Signed::By(who) => assert!(
                    rest.contains(", signed by ") && rest.contains(who),
                    "{rel} signed by {who}: {}",
                    ctx()
                ),
            }
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, v) in &self.lines {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}

/// The guest's uptime at a point of the step (`@@K uptime=`).
fn uptime(output: &str) -> f64 {
    must(output, "uptime").parse().expect("uptime")
}

const STEP1: &str = r#"
set -x
dpkg -i kmlink_*.deb || exit 10
systemctl enable kmlink.service || exit 11
echo "@@K enabled=$(systemctl is-enabled kmlink.service)"
"#;

/// `kmlink status` framed as section `STATUS-<name>`.
const STATUS_FN: &str = r#"
status() { echo "@@STATUS-$1-BEGIN"; kmlink status 2>&1; echo "@@STATUS-$1-END"; }
"#;

const STEP2: &str = r#"
echo "@@K active=$(systemctl is-active kmlink.service)"
echo "@@K uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "@@JOURNAL-BEGIN"
journalctl -b -u kmlink.service --no-pager -o cat
echo "@@JOURNAL-END"
status BOOTED
[ -r /proc/kmlink/stats ] && echo "@@K stats=yes" || echo "@@K stats=no"
sh -c 'exec find /usr/share /sys/devices > /dev/null 2>&1' &
pid=$!
wait $pid
echo "@@K workload=$pid"
echo "@@STATSJSON-BEGIN"
kmlink stats --json --filter "$pid"
echo "@@STATSJSON-END"
echo "@@K prebuilt_a=$(ls /var/lib/kmlink/modules/$(uname -r)/ 2>/dev/null | tr '\n' ' ')"
# Only the modules this machine needs in the new initrd: MODULES=most
# (the default) takes over 20 minutes of update-initramfs under TCG.
echo MODULES=dep > /etc/initramfs-tools/conf.d/kmlink-scenario
echo "@@DPKG-BEGIN"
start=$(cut -d' ' -f1 /proc/uptime)
dpkg -i linux-image-*.deb 2>&1
rc=$?
echo "@@DPKG-END"
echo "@@K dpkg_rc=$rc"
echo "@@K dpkg_secs=$(awk -v s=$start '{print $1 - s}' /proc/uptime)"
echo "@@K boot=$(ls /boot | tr '\n' ' ')"
status UPGRADED
"#;

const STEP3_HEAD: &str = r#"
echo "@@K active=$(systemctl is-active kmlink.service)"
echo "@@JOURNAL-BEGIN"
journalctl -b -u kmlink.service --no-pager -o cat
echo "@@JOURNAL-END"
echo "@@K uptime=$(cut -d' ' -f1 /proc/uptime)"
status BOOTED
"#;

fn step3_tail() -> String {
    format!(
        r#"
A={KERNEL_A}
echo "@@K a_before=$(ls -d /var/lib/kmlink/modules/$A 2>/dev/null)"
dpkg --purge linux-image-$A 2>&1 | sed 's/^/purge-a: /'
echo "@@K a_after=$(ls -d /var/lib/kmlink/modules/$A 2>/dev/null)"
echo "@@K modules_after=$(ls /var/lib/kmlink/modules 2>/dev/null | tr '\n' ' ')"
status PURGED_A
dpkg --remove kmlink 2>&1 | sed 's/^/remove: /'
echo "@@K loaded_after_remove=$(test -e /proc/kmlink && echo yes || echo no)"
echo "@@K left_after_remove=$(ls -d /usr/bin/kmlink /lib/systemd/system/kmlink.service /usr/lib/systemd/system/kmlink.service /etc/systemd/system/multi-user.target.wants/kmlink.service 2>/dev/null | tr '\n' ' ')"
echo "@@K conffiles_after_remove=$(ls /etc/kmlink 2>/dev/null | tr '\n' ' ')"
echo "@@K dpkg_state_after_remove=$(dpkg-query -W -f='${{db:Status-Abbrev}}' kmlink 2>/dev/null)"
dpkg --purge kmlink 2>&1 | sed 's/^/purge: /'
echo "@@K left_after_purge=$(ls -d /usr/bin/kmlink /var/lib/kmlink /etc/kmlink /lib/systemd/system/kmlink.service /usr/lib/systemd/system/kmlink.service /etc/systemd/system/multi-user.target.wants/kmlink.service /etc/kernel/postinst.d/kmlink /etc/kernel/postrm.d/kmlink 2>/dev/null | tr '\n' ' ')"
echo "@@K dpkg_known_after_purge=$(dpkg-query -W kmlink >/dev/null 2>&1 && echo yes || echo no)"
"#
    )
}

#[test]
#[ignore = "builds a Debian image and boots it three times under QEMU (minutes)"]
fn installed_debian_system_install_upgrade_boot_remove() {
    let Some(mut start) = Start::new() else {
        return;
    };
    let s = &mut start.scenario;
    let kernel_b = kernel_b_package(start.work.path());

    // 1. install kmlink on kernel A, enable the unit.
    let r1 = s.boot(
        "boot 1",
        STEP1,
        &[&start.kmlink_deb],
        Duration::from_secs(900),
    );
    assert_eq!(r1.release, KERNEL_A, "the image boots kernel A");
    assert_eq!(must(&r1.output, "enabled"), "enabled");

    // 2. after the reboot the unit has loaded the monitor; a workload shows
    // in `kmlink stats`; installing kernel B links the monitor for it.
    let r2 = s.boot("boot 2", STEP2, &[&kernel_b], Duration::from_secs(1800));
    assert_eq!(r2.release, KERNEL_A);
    assert_eq!(must(&r2.output, "active"), "active", "{}", r2.output);
    assert_eq!(must(&r2.output, "stats"), "yes");
    let pid: u64 = must(&r2.output, "workload").parse().expect("pid");
    let json = kmem::section(&r2.output, "STATSJSON").expect("stats JSON");
    let sample: serde_json::Value = serde_json::from_str(
        json.lines()
            .find(|l| l.trim_start().starts_with('{'))
            .expect("a JSON line"),
    )
    .unwrap_or_else(|e| panic!("kmlink stats --json: {e}\n{json}"));
    let row = sample["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pid"] == pid && p["comm"] == "find"))
        .unwrap_or_else(|| panic!("no row of the workload (pid {pid}) in {json}"));
    assert!(
        row["allocs"].as_u64().unwrap_or(0) > 100,
        "the workload allocates: {row}"
    );
    let journal = kmem::section(&r2.output, "JOURNAL").expect("journal");
    assert!(
        journal.contains("loading prebuilt") && journal.contains("no relinking"),
        "the unit loads the module the package's postinst prebuilt:\n{journal}"
    );
    let booted = Status::of(&r2.output, "BOOTED");
    booted.check(KERNEL_A, Some(KERNEL_A), Signed::No, &[KERNEL_A]);
    assert!(
        booted.built_secs_ago() > uptime(&r2.output),
        "the loaded module predates this boot:\n{booted}"
    );
    let dpkg = kmem::section(&r2.output, "DPKG").expect("dpkg output");
    assert_eq!(
        must(&r2.output, "dpkg_rc"),
        "0",
        "dpkg -i kernel B:\n{dpkg}"
    );
    assert!(
        dpkg.contains(&linked_line(KERNEL_B)),
        "the hook's line for {KERNEL_B} in dpkg's output:\n{dpkg}"
    );

    Status::of(&r2.output, "UPGRADED").check(
        KERNEL_A,
        Some(KERNEL_A),
        Signed::No,
        &[KERNEL_A, KERNEL_B],
    );

    // 3. kernel B boots by default; the unit loads the prebuilt module.
    let script = format!("{STEP3_HEAD}\n{}\n{}", kmem::TRACE_WORKLOAD, step3_tail());
    let r3 = s.boot("boot 3", &script, &[], Duration::from_secs(900));
    assert_eq!(
        r3.release, KERNEL_B,
        "the newest kernel boots after the upgrade"
    );
    assert_eq!(must(&r3.output, "active"), "active", "{}", r3.output);
    let journal = kmem::section(&r3.output, "JOURNAL").expect("journal");
    assert!(
        journal.contains("loading prebuilt") && journal.contains("no relinking"),
        "the unit must load the prebuilt module without linking:\n{journal}"
    );
    let booted = Status::of(&r3.output, "BOOTED");
    booted.check(KERNEL_B, Some(KERNEL_B), Signed::No, &[KERNEL_A, KERNEL_B]);
    assert!(
        booted.built_secs_ago() > uptime(&r3.output),
        "the loaded module was linked before this boot (by the hook):\n{booted}"
    );
    assert!(
        booted
            .all("source")
            .iter()
            .any(|s| s.contains(&format!("/boot/vmlinuz-{KERNEL_B}"))),
        "linked before B ran: its facts checked against B's own image:\n{booted}"
    );
    let agreement = kmem::compare(&r3.output).unwrap_or_else(|e| panic!("{KERNEL_B}: {e}"));
    eprintln!("{KERNEL_B}: monitor = kmem tracepoints for pid {}: allocations {}, frees {}, page allocations {}",
        agreement.pid, agreement.allocs.0, agreement.frees.0, agreement.pages.0);

    // 4. removing kernel A removes its prebuilt module; removing kmlink
    // leaves only its conffiles, purging leaves nothing.
    assert!(
        must(&r3.output, "a_before").ends_with(KERNEL_A),
        "A's prebuilt module before the purge"
    );
    assert_eq!(
        kv(&r3.output, "a_after"),
        Some(""),
        "A's prebuilt dir after its purge"
    );
    assert_eq!(must(&r3.output, "modules_after"), KERNEL_B);
    Status::of(&r3.output, "PURGED_A").check(KERNEL_B, Some(KERNEL_B), Signed::No, &[KERNEL_B]);
    assert_eq!(
        kv(&r3.output, "left_after_remove"),
        Some(""),
        "{}",
        r3.output
    );
    assert_eq!(must(&r3.output, "loaded_after_remove"), "no");
    assert!(
        must(&r3.output, "conffiles_after_remove").contains("kmlink.toml"),
        "the conffile stays until purge"
    );
    assert_eq!(must(&r3.output, "dpkg_state_after_remove"), "rc");
    assert_eq!(
        kv(&r3.output, "left_after_purge"),
        Some(""),
        "{}",
        r3.output
    );
    assert_eq!(must(&r3.output, "dpkg_known_after_purge"), "no");

    s.summary("scenario");
}

/// The boot path alone, for CI: kernel A only, two boots. Install and
/// enable kmlink and prebuild for A with the kernel hook (as installing a
/// kernel would); after the reboot the unit loads the prebuilt module
/// without linking, `kmlink stats` shows a workload, and its counts equal
/// the kmem tracepoint events.
#[test]
#[ignore = "builds a Debian image and boots it twice under QEMU (minutes)"]
fn installed_debian_system_boot_path_on_one_kernel() {
    let Some(mut start) = Start::new() else {
        return;
    };
    let s = &mut start.scenario;
    let step1 = format!(
        "{STEP1}\n/etc/kernel/postinst.d/kmlink {KERNEL_A} /boot/vmlinuz-{KERNEL_A} 2>&1 | sed 's/^/hook: /'\n"
    );
    let r1 = s.boot(
        "boot 1",
        &step1,
        &[&start.kmlink_deb],
        Duration::from_secs(900),
    );
    assert_eq!(r1.release, KERNEL_A);
    assert_eq!(must(&r1.output, "enabled"), "enabled");
    assert!(
        r1.output.contains(&linked_line(KERNEL_A)),
        "the hook's line for {KERNEL_A}:\n{}",
        r1.output
    );
    let script = format!("{STEP3_HEAD}\n{}", kmem::TRACE_WORKLOAD);
    let r2 = s.boot("boot 2", &script, &[], Duration::from_secs(900));
    assert_eq!(must(&r2.output, "active"), "active", "{}", r2.output);
    let journal = kmem::section(&r2.output, "JOURNAL").expect("journal");
    assert!(
        journal.contains("loading prebuilt") && journal.contains("no relinking"),
        "the unit must load the prebuilt module without linking:\n{journal}"
    );
    let booted = Status::of(&r2.output, "BOOTED");
    booted.check(KERNEL_A, Some(KERNEL_A), Signed::No, &[KERNEL_A]);
    assert!(
        booted.built_secs_ago() > uptime(&r2.output),
        "the loaded module predates this boot:\n{booted}"
    );
    let a = kmem::compare(&r2.output).unwrap_or_else(|e| panic!("{KERNEL_A}: {e}"));
    eprintln!(
        "{KERNEL_A}: monitor = kmem tracepoints for pid {}: allocations {}, frees {}, page allocations {}",
        a.pid, a.allocs.0, a.frees.0, a.pages.0
    );
    s.summary("boot path");
}

/// The name of the MOK the Secure Boot scenario enrols and signs with.
const MOK_NAME: &str = "kmlink debian-system MOK";

/// The Secure Boot scenario's first boot: Secure Boot on, the operator's
/// key in place (`kmlink key generate` on the host, enrolled as a MOK in the
/// firmware), the package installed, the key configured in kmlink.toml, the
/// kernel hook run for the running kernel, the unit enabled.
const SB_STEP1: &str = r#"
echo "@@K lockdown=$(cat /sys/kernel/security/lockdown)"
install -d -m 0700 /var/lib/kmlink/keys
install -m 0600 kmlink-signing.key /var/lib/kmlink/keys/
install -m 0644 kmlink-signing.der /var/lib/kmlink/keys/
dpkg -i kmlink_*.deb 2>&1 || exit 10
printf '\n[sign]\nkey = "%s"\ncert = "%s"\nhash = "sha256"\n' \
  /var/lib/kmlink/keys/kmlink-signing.key /var/lib/kmlink/keys/kmlink-signing.der \
  >> /etc/kmlink/kmlink.toml
/etc/kernel/postinst.d/kmlink "$(uname -r)" "/boot/vmlinuz-$(uname -r)" 2>&1 | sed 's/^/hook: /'
systemctl enable kmlink.service || exit 11
echo "@@K enabled=$(systemctl is-enabled kmlink.service)"
"#;

/// The second boot: the unit loaded the signed module; lockdown, taint,
/// the unit's journal, `kmlink status`.
const SB_STEP2: &str = r#"
echo "@@K active=$(systemctl is-active kmlink.service)"
echo "@@K uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "@@K lockdown=$(cat /sys/kernel/security/lockdown)"
echo "@@K tainted=$(cat /proc/sys/kernel/tainted)"
echo "@@K modline=$(grep '^kmlink ' /proc/modules)"
echo "@@JOURNAL-BEGIN"
journalctl -b -u kmlink.service --no-pager -o cat
echo "@@JOURNAL-END"
status BOOTED
"#;

/// After the workload: an unsigned module is refused; kernel B's package
/// is installed and the hook signs B's module.
const SB_STEP2_TAIL: &str = r#"
systemctl stop kmlink.service
echo "@@K loaded_after_stop=$(test -e /proc/kmlink && echo yes || echo no)"
kmlink build --kernel "$(uname -r)" -o /tmp/unsigned.ko 2>&1 | tail -2 | sed 's/^/build: /'
kmlink sign --show /tmp/unsigned.ko 2>&1 | sed 's/^/show: /'
out=$(insmod /tmp/unsigned.ko 2>&1)
echo "@@K unsigned_rc=$?"
echo "@@K unsigned_says=$out"
echo "@@K loaded_unsigned=$(test -e /proc/kmlink && echo yes || echo no)"
dmesg | grep -i -e 'unsigned module' -e 'module verification' | tail -3 | sed 's/^/dmesg: /'
systemctl start kmlink.service
echo "@@K restarted=$(systemctl is-active kmlink.service)"
echo "@@K tainted_after=$(cat /proc/sys/kernel/tainted)"
echo MODULES=dep > /etc/initramfs-tools/conf.d/kmlink-scenario
echo "@@DPKG-BEGIN"
start=$(cut -d' ' -f1 /proc/uptime)
dpkg -i linux-image-*.deb 2>&1
rc=$?
echo "@@DPKG-END"
echo "@@K dpkg_rc=$rc"
echo "@@K dpkg_secs=$(awk -v s=$start '{print $1 - s}' /proc/uptime)"
status UPGRADED
"#;

/// The scenario with Secure Boot on (issue #14): OVMF with Microsoft's
/// keys and Secure Boot enforced, Debian's signed shim and GRUB, the
/// image's signed kernel A, and a key from `kmlink key generate` enrolled
/// as a MOK in the firmware's variable store (tests/src/secureboot.rs) and
/// configured in /etc/kmlink/kmlink.toml. Two boots on kernel A: install,
/// configure the key, the hook links and signs; after the reboot the unit
/// loads the signed module under lockdown `integrity`, taint gains no E,
/// the counts equal the tracepoints, an unsigned module is refused; then
/// kernel B's package is installed and the hook's module for B is signed.
/// (B's own boot under Secure Boot would need B's signed image package;
/// the upgrade installs the unsigned one, as the plain scenario does.)
#[test]
#[ignore = "builds a Debian image and boots it twice under OVMF with Secure Boot (minutes)"]
fn installed_debian_system_secure_boot() {
    let Some(mut start) = Start::new() else {
        return;
    };
    let s = &mut start.scenario;
    let kernel_b = kernel_b_package(start.work.path());
    let firmware = sb::firmware().expect("Secure Boot firmware from Debian packages");
    let keydir = start.work.path().join("key");
    let out = kmlink_ok(&[
        "key",
        "generate",
        "--dir",
        keydir.to_str().expect("utf-8"),
        "--name",
        MOK_NAME,
    ])
    .unwrap_or_else(|e| panic!("kmlink key generate: {e}"));
    let (key, cert) = (
        keydir.join("kmlink-signing.key"),
        keydir.join("kmlink-signing.der"),
    );
    assert!(key.is_file() && cert.is_file(), "{out}");
    s.secure_boot = Some(sb::with_mok(&firmware, &cert, start.work.path()).expect("MOK enrolment"));

    // 1. Secure Boot on; install, configure the key; the hook signs.
    let r1 = s.boot(
        "SB boot 1",
        SB_STEP1,
        &[&start.kmlink_deb, &key, &cert],
        Duration::from_secs(1200),
    );
    assert_eq!(r1.release, KERNEL_A);
    assert_eq!(
        must(&r1.output, "lockdown"),
        "none [integrity] confidentiality"
    );
    assert_eq!(must(&r1.output, "enabled"), "enabled");
    let hook = r1
        .output
        .lines()
        .find(|l| l.starts_with("hook: ") && l.contains(&linked_line(KERNEL_A)))
        .unwrap_or_else(|| panic!("the hook's line for {KERNEL_A}:\n{}", r1.output));
    assert!(hook.contains(MOK_NAME), "signed with the MOK: {hook}");

    // 2. The unit loads the signed module; an unsigned one is refused;
    // the upgrade's hook signs the module for B.
    let script = format!("{SB_STEP2}\n{}\n{SB_STEP2_TAIL}", kmem::TRACE_WORKLOAD);
    let r2 = s.boot(
        "SB boot 2",
        &script,
        &[&kernel_b],
        Duration::from_secs(2400),
    );
    let o = &r2.output;
    assert_eq!(r2.release, KERNEL_A);
    assert_eq!(must(o, "active"), "active", "{o}");
    assert_eq!(must(o, "lockdown"), "none [integrity] confidentiality");
    let journal = kmem::section(o, "JOURNAL").expect("journal");
    assert!(
        journal.contains("loading prebuilt") && journal.contains("no relinking"),
        "the unit loads the signed prebuilt module:\n{journal}"
    );
    let booted = Status::of(o, "BOOTED");
    booted.check(KERNEL_A, Some(KERNEL_A), Signed::By(MOK_NAME), &[KERNEL_A]);
    assert!(booted.built_secs_ago() > uptime(o), "{booted}");
    const TAINT_E: u64 = 1 << 13;
    for k in ["tainted", "tainted_after"] {
        let t: u64 = must(o, k).parse().expect("taint");
        assert_eq!(t & TAINT_E, 0, "{k}: the kernel is tainted E: {t}");
    }
    let modline = must(o, "modline");
    let flags = modline.rsplit_once('(').map_or("", |(_, f)| f);
    assert!(
        modline.starts_with("kmlink ") && !flags.contains('E'),
        "kmlink in /proc/modules, without E: {modline}"
    );
    let a = kmem::compare(o).unwrap_or_else(|e| panic!("{KERNEL_A} under Secure Boot: {e}"));
    eprintln!(
        "{KERNEL_A} (Secure Boot): monitor = kmem tracepoints for pid {}: allocations {}, frees {}, page allocations {}",
        a.pid, a.allocs.0, a.frees.0, a.pages.0
    );
    assert_eq!(must(o, "loaded_after_stop"), "no");
    assert_ne!(
        must(o, "unsigned_rc"),
        "0",
        "an unsigned module loads:\n{o}"
    );
    assert!(
        must(o, "unsigned_says").contains("Key was rejected by service"),
        "insmod of the unsigned module: EKEYREJECTED:\n{o}"
    );
    assert_eq!(must(o, "loaded_unsigned"), "no");
    assert_eq!(must(o, "restarted"), "active", "{o}");
    let dpkg = kmem::section(o, "DPKG").expect("dpkg output");
    assert_eq!(must(o, "dpkg_rc"), "0", "dpkg -i kernel B:\n{dpkg}");
    let hook = dpkg
        .lines()
        .find(|l| l.contains(&linked_line(KERNEL_B)))
        .unwrap_or_else(|| panic!("the hook's line for {KERNEL_B} in dpkg's output:\n{dpkg}"));
    assert!(hook.contains(MOK_NAME), "signed with the MOK: {hook}");
    Status::of(o, "UPGRADED").check(
        KERNEL_A,
        Some(KERNEL_A),
        Signed::By(MOK_NAME),
        &[KERNEL_A, KERNEL_B],
    );
    s.summary("Secure Boot scenario");
}
