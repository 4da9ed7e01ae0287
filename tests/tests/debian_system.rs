//! kmlink on an installed Debian system (issue #14, "Proof"): a bookworm
//! disk image built from Debian packages only (`scripts/debian-image`),
//! booted under QEMU (TCG) from its own kernels and initrds, the same disk
//! through every boot of the scenario:
//!
//! 1. boot 1, kernel A (6.1.0-47-amd64): `dpkg -i` the kmlink package,
//!    `systemctl enable kmlink`; power off (the reboot);
//! 2. boot 2, kernel A: the unit loaded the monitor (`systemctl is-active`,
//!    /proc/kmlink/stats), `kmlink stats` shows a workload run after boot;
//!    `dpkg -i` kernel B (6.12 from bookworm-backports): the kernel hook
//!    links and checks the monitor for B, in dpkg's output;
//! 3. boot 3, kernel B (the newest in /boot, as GRUB's default would be):
//!    the unit loads the prebuilt module without linking (its journal says
//!    so), and the monitor's counts for a workload equal the kernel's kmem
//!    tracepoint events;
//! 4. same boot: purge kernel A → its prebuilt module is gone; remove
//!    kmlink → only its conffiles are left; purge → nothing is left.
//!
//! `cargo test -p kmlink-tests --test debian_system -- --ignored --nocapture`
//! (or `scripts/debian-system`). Needs root (mmdebstrap), mmdebstrap,
//! e2fsprogs (mkfs.ext4 -d, debugfs) and the network for the packages once;
//! all cached under ~/.cache/kmlink.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kmlink_crawler::cache::Cache;
use kmlink_crawler::index::PackageEntry;
use kmlink_crawler::{sources, Http};
use kmlink_tests::{kmem, kmlink_bin, workspace};
use kmlink_vm::disk::{boot, DiskResult, DiskSpec};

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

/// The kmlink package: `scripts/package` when the tree has it, otherwise a
/// stand-in made here from the built kmlink binary with the same contract
/// (unit, kernel hooks, conffile, prebuilt modules under
/// /var/lib/kmlink/modules/RELEASE/).
/// `$KMLINK_TEST_DEB` picks another: a .deb's path, or `stand-in`.
fn kmlink_package(dir: &Path) -> PathBuf {
    match std::env::var("KMLINK_TEST_DEB").ok().as_deref() {
        Some("stand-in") => return stand_in_package(dir),
        Some(path) if !path.is_empty() => {
            let to = dir.join(Path::new(path).file_name().expect("a .deb file name"));
            std::fs::copy(path, &to).unwrap_or_else(|e| panic!("KMLINK_TEST_DEB={path}: {e}"));
            return to;
        }
        _ => {}
    }
    let script = workspace().join("scripts/package");
    if script.is_file() {
        let out = run(&mut Command::new(&script));
        let deb = out
            .lines()
            .rev()
            .map(|l| PathBuf::from(l.trim()))
            .find(|p| is_kmlink_deb(p) && p.is_file())
            .or_else(|| {
                std::fs::read_dir(workspace().join("target/debian"))
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_kmlink_deb(p))
                    .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
            })
            .expect("scripts/package made no .deb");
        let to = dir.join(deb.file_name().expect("name"));
        std::fs::copy(&deb, &to).expect("copying the package");
        return to;
    }
    stand_in_package(dir)
}

/// `kmlink_<version>_<arch>.deb` (not the -dbgsym package).
fn is_kmlink_deb(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("kmlink_") && n.ends_with(".deb"))
}

const STAND_IN_UNIT: &str = "[Unit]
Description=kmlink kernel memory monitor (stand-in package of the scenario test)
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kmlink/service-start
ExecStop=/usr/bin/kmlink unload

[Install]
WantedBy=multi-user.target
";

const STAND_IN_START: &str = r#"#!/bin/sh
r=$(uname -r)
m=/var/lib/kmlink/modules/$r/kmlink.ko
if [ -f "$m" ]; then
  echo "kmlink: $r: loading prebuilt $m, no relinking"
else
  echo "kmlink: $r: no prebuilt module, linking one"
  /etc/kernel/postinst.d/kmlink "$r" || exit 1
fi
exec insmod "$m"
"#;

const STAND_IN_POSTINST_D: &str = r#"#!/bin/sh
# kernel postinst.d hook: link and check the monitor for the new kernel
# from its own files; never fail the kernel's installation.
r=$1
d=/var/lib/kmlink/modules/$r
mkdir -p "$d"
donor=$(find /lib/modules/$r/kernel/lib -name '*.ko*' | head -1)
if kmlink build --kernel "$r" --btf "/boot/vmlinuz-$r" --donor "$donor" -o "$d/kmlink.ko"; then
  echo "kmlink: linked and checked the monitor for $r"
else
  echo "kmlink: FAILED to link the monitor for $r" >&2
fi
exit 0
"#;

const STAND_IN_POSTRM_D: &str = "#!/bin/sh\nrm -rf \"/var/lib/kmlink/modules/$1\"\nexit 0\n";

fn stand_in_package(dir: &Path) -> PathBuf {
    let root = dir.join("pkgroot");
    let put = |path: &str, text: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let bin = std::fs::read(kmlink_bin()).expect("the kmlink binary");
    put("usr/bin/kmlink", &bin, 0o755);
    run(Command::new("strip").arg(root.join("usr/bin/kmlink")));
    put(
        "lib/systemd/system/kmlink.service",
        STAND_IN_UNIT.as_bytes(),
        0o644,
    );
    put(
        "usr/lib/kmlink/service-start",
        STAND_IN_START.as_bytes(),
        0o755,
    );
    put(
        "etc/kernel/postinst.d/kmlink",
        STAND_IN_POSTINST_D.as_bytes(),
        0o755,
    );
    put(
        "etc/kernel/postrm.d/kmlink",
        STAND_IN_POSTRM_D.as_bytes(),
        0o755,
    );
    put(
        "etc/kmlink/kmlink.toml",
        b"# kmlink configuration (stand-in)\nbackend = \"tracepoint\"\n",
        0o644,
    );
    put(
        "DEBIAN/control",
        b"Package: kmlink\nVersion: 0.0.0~standin\nArchitecture: amd64\nMaintainer: kmlink tests <tests@invalid>\nDepends: kmod\nDescription: kmlink (stand-in package of the scenario test)\n",
        0o644,
    );
    put(
        "DEBIAN/conffiles",
        b"/etc/kmlink/kmlink.toml\n/etc/kernel/postinst.d/kmlink\n/etc/kernel/postrm.d/kmlink\n",
        0o644,
    );
    put(
        "DEBIAN/postinst",
        b"#!/bin/sh\nset -e\nsystemctl daemon-reload || true\n",
        0o755,
    );
    put(
        "DEBIAN/prerm",
        b"#!/bin/sh\nset -e\nsystemctl stop kmlink.service || true\nsystemctl disable kmlink.service || true\n",
        0o755,
    );
    put(
        "DEBIAN/postrm",
        b"#!/bin/sh\nset -e\nif [ \"$1\" = purge ]; then rm -rf /var/lib/kmlink /etc/kmlink; fi\nsystemctl daemon-reload || true\n",
        0o755,
    );
    let deb = dir.join("kmlink_0.0.0~standin_amd64.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "-z1", "--build"])
        .arg(&root)
        .arg(&deb));
    std::fs::remove_dir_all(&root).expect("cleanup");
    deb
}

/// One scenario: a private copy of the image, booted step after step.
struct Scenario {
    disk: PathBuf,
    _dir: tempfile::TempDir,
    timings: Vec<String>,
}

impl Scenario {
    fn new(image: &Path) -> Self {
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
        }
    }

    /// Boots the newest kernel of the disk with `script` as the step and
    /// `files` beside it on the second disk.
    fn boot(&mut self, name: &str, script: &str, files: &[&Path], timeout: Duration) -> DiskResult {
        let scen = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            scen.path().join("step.sh"),
            format!("export HOME=/root\ncd /mnt/scenario\n{script}"),
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

const STEP1: &str = r#"
set -x
dpkg -i kmlink_*.deb || exit 10
systemctl enable kmlink.service || exit 11
echo "@@K enabled=$(systemctl is-enabled kmlink.service)"
"#;

const STEP2: &str = r#"
echo "@@K active=$(systemctl is-active kmlink.service)"
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
"#;

const STEP3_HEAD: &str = r#"
echo "@@K active=$(systemctl is-active kmlink.service)"
echo "@@JOURNAL-BEGIN"
journalctl -b -u kmlink.service --no-pager -o cat
echo "@@JOURNAL-END"
echo "@@K status_begin=1"
kmlink status 2>&1 | sed 's/^/status: /'
"#;

fn step3_tail() -> String {
    format!(
        r#"
A={KERNEL_A}
if [ ! -d /var/lib/kmlink/modules/$A ]; then
  echo "@@K a_prebuilt_made_by_hook=1"
  /etc/kernel/postinst.d/kmlink $A /boot/vmlinuz-$A
fi
echo "@@K a_before=$(ls -d /var/lib/kmlink/modules/$A 2>/dev/null)"
dpkg --purge linux-image-$A 2>&1 | sed 's/^/purge-a: /'
echo "@@K a_after=$(ls -d /var/lib/kmlink/modules/$A 2>/dev/null)"
echo "@@K modules_after=$(ls /var/lib/kmlink/modules 2>/dev/null | tr '\n' ' ')"
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
    if let Some(what) = missing_prerequisite() {
        return kmlink_testkit::missing(&what);
    }
    let total = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let image = debian_image();
    let kmlink_deb = kmlink_package(work.path());
    let kernel_b = kernel_b_package(work.path());
    let mut s = Scenario::new(&image);

    // 1. install kmlink on kernel A, enable the unit.
    let r1 = s.boot("boot 1", STEP1, &[&kmlink_deb], Duration::from_secs(900));
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

    eprintln!(
        "scenario: {}\ntotal {:.0} s",
        s.timings.join("\n"),
        total.elapsed().as_secs_f64()
    );
}

/// The boot path alone, for CI: kernel A only, two boots. Install and
/// enable kmlink and prebuild for A with the kernel hook (as installing a
/// kernel would); after the reboot the unit loads the prebuilt module
/// without linking, `kmlink stats` shows a workload, and its counts equal
/// the kmem tracepoint events.
#[test]
#[ignore = "builds a Debian image and boots it twice under QEMU (minutes)"]
fn installed_debian_system_boot_path_on_one_kernel() {
    if let Some(what) = missing_prerequisite() {
        return kmlink_testkit::missing(&what);
    }
    let total = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let image = debian_image();
    let kmlink_deb = kmlink_package(work.path());
    let mut s = Scenario::new(&image);
    let step1 = format!(
        "{STEP1}\n/etc/kernel/postinst.d/kmlink {KERNEL_A} /boot/vmlinuz-{KERNEL_A} 2>&1 | sed 's/^/hook: /'\n"
    );
    let r1 = s.boot("boot 1", &step1, &[&kmlink_deb], Duration::from_secs(900));
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
    let a = kmem::compare(&r2.output).unwrap_or_else(|e| panic!("{KERNEL_A}: {e}"));
    eprintln!(
        "{KERNEL_A}: monitor = kmem tracepoints for pid {}: allocations {}, frees {}, page allocations {}",
        a.pid, a.allocs.0, a.frees.0, a.pages.0
    );
    eprintln!(
        "boot path: {}\ntotal {:.0} s",
        s.timings.join("\n"),
        total.elapsed().as_secs_f64()
    );
}
