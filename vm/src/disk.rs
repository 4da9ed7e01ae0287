//! Booting an installed Debian system from its own disk image.
//!
//! The root disk is a raw ext4 image (`scripts/debian-image` builds one with
//! `mmdebstrap` and `mkfs.ext4 -d`) that the guest writes to and that
//! persists between the boots of one scenario. There is no boot loader in
//! the image: the harness reads the image's `/boot` itself (with
//! `debugfs`, no mount) and boots the newest kernel that has an initrd —
//! newest in Debian's version order, which is how GRUB's `10_linux` orders
//! its entries (`sort -V`), so after `dpkg -i` of a newer kernel the next
//! boot starts it, as GRUB's default entry would. The kernel and its initrd
//! are the image's own files; the command line is `root=/dev/vda ro
//! console=ttyS0 quiet systemd.firstboot=off` (the image's machine-id is
//! empty: the first boot makes one, without prompting on the console).
//!
//! A host directory becomes the second disk (`/dev/vdb`, ext4, read-only).
//! The image's `kmlink-scenario.service` runs its `step.sh` after
//! `multi-user.target`, frames the output with `@@KMLINK-STEP-BEGIN` and
//! `@@KMLINK-STEP-END rc=N` on the serial console, and powers off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::parse::find_problems;
use crate::qemu::{capture, find_qemu};
use crate::{esp, strip_noise, Error, Problem, SecureBoot};

/// Printed by the image's scenario unit before the step runs.
pub const STEP_BEGIN: &str = "@@KMLINK-STEP-BEGIN";
/// Printed by the image's scenario unit after the step, with `rc=N`.
pub const STEP_END: &str = "@@KMLINK-STEP-END";

/// One boot of a disk image.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// The root disk: a raw ext4 image, written by the guest.
    pub disk: PathBuf,
    /// Host directory made into the second disk; must hold `step.sh`.
    pub scenario: PathBuf,
    /// Kernel release to boot; `None`: the newest in the image's `/boot`.
    pub kernel: Option<String>,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs (one TCG thread, as [`crate::VmSpec`] does).
    pub smp: u32,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Copy the console to stderr live.
    pub echo_serial: bool,
    /// Boot through UEFI Secure Boot instead of `-kernel`: OVMF, shim and
    /// GRUB on an EFI system partition (a third disk, after the root and
    /// the scenario disks, so those stay `/dev/vda` and `/dev/vdb`), which
    /// also holds the chosen kernel and initrd copied out of the image's
    /// `/boot`. shim verifies GRUB and, through GRUB, the kernel: the
    /// image's kernel must be Debian's signed one.
    pub secure_boot: Option<SecureBoot>,
}

impl DiskSpec {
    /// A boot of `disk` running `scenario/step.sh`, 2 GiB, 2 CPUs, 15 min.
    pub fn new(disk: impl Into<PathBuf>, scenario: impl Into<PathBuf>) -> Self {
        DiskSpec {
            disk: disk.into(),
            scenario: scenario.into(),
            kernel: None,
            memory_mb: 2048,
            smp: 2,
            timeout: Duration::from_secs(900),
            echo_serial: std::env::var_os("KMLINK_VM_ECHO").is_some_and(|v| v == "1"),
            secure_boot: None,
        }
    }
}

/// What one boot of a disk image did.
#[derive(Debug, Clone)]
pub struct DiskResult {
    /// The kernel release booted.
    pub release: String,
    /// Everything on the console (escapes and carriage returns stripped).
    pub serial: String,
    /// What the step printed (between the step markers).
    pub output: String,
    /// The step's exit status (`None` if it never finished).
    pub exit_status: Option<i32>,
    /// Guest uptime in seconds when the step started (boot to
    /// `multi-user.target`), as the guest measured it.
    pub guest_boot_secs: Option<f64>,
    /// Time from QEMU start to the step's start marker.
    pub boot_time: Option<Duration>,
    /// Time from QEMU start to its exit.
    pub duration: Duration,
    /// Whether QEMU was killed at the timeout.
    pub timed_out: bool,
    /// Kernel problems seen on the console.
    pub problems: Vec<Problem>,
}

impl DiskResult {
    /// `Ok` when the step ran to its end with status 0 and the machine
    /// powered off in time; otherwise a summary with the console's tail.
    pub fn check(&self) -> Result<(), String> {
        let why = if self.timed_out {
            "timed out".to_string()
        } else if self.exit_status != Some(0) {
            format!("step exit status {:?}", self.exit_status)
        } else {
            return Ok(());
        };
        let lines: Vec<&str> = self.serial.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        Err(format!(
            "the disk image booted on {}: {why}\n--- console (last 60 lines) ---\n{tail}",
            self.release
        ))
    }
}

fn tool_error(what: String, out: &std::process::Output) -> Error {
    Error::DiskImage(format!(
        "{what}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn run_tool(cmd: &mut Command, what: impl Fn() -> String) -> Result<std::process::Output, Error> {
    let out = cmd.output().map_err(|source| Error::Io {
        context: what(),
        source,
    })?;
    if !out.status.success() {
        return Err(tool_error(what(), &out));
    }
    Ok(out)
}

/// Kernel releases in the image's `/boot` that have both `vmlinuz-R` and
/// `initrd.img-R`, newest first (see [`compare_versions`]).
pub fn boot_kernels(disk: &Path) -> Result<Vec<String>, Error> {
    let out = run_tool(
        Command::new("debugfs")
            .args(["-R", "ls -p /boot"])
            .arg(disk),
        || format!("debugfs ls /boot of {}", disk.display()),
    )?;
    // `ls -p` lines: /inode/mode/uid/gid/name/size/
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_string))
        .collect();
    let mut releases: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|r| names.iter().any(|n| *n == format!("initrd.img-{r}")))
        .map(str::to_string)
        .collect();
    releases.sort_by(|a, b| compare_versions(b, a));
    Ok(releases)
}

/// Copies `guest_path` out of the ext4 image `disk` into `to`.
pub fn extract_file(disk: &Path, guest_path: &str, to: &Path) -> Result<(), Error> {
    let what = || format!("debugfs dump {guest_path} from {}", disk.display());
    run_tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump {guest_path} {}", to.display()))
            .arg(disk),
        what,
    )?;
    // debugfs exits 0 even when the file is missing.
    match std::fs::metadata(to) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(Error::DiskImage(format!("{}: not in the image", what()))),
    }
}

/// Debian's version order on whole kernel releases (dpkg's `verrevcmp`,
/// [`kmlink_debian::version::compare_part`]). GRUB's menu order for
/// `vmlinuz-*` (`sort -V`) agrees on Debian kernel releases.
pub use kmlink_debian::version::compare_part as compare_versions;

/// Makes an ext4 image of `dir` at `img` (no mount: `mkfs.ext4 -d`).
pub fn ext4_image_of(dir: &Path, img: &Path) -> Result<(), Error> {
    fn size(p: &Path) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| size(&e.path()) + 4096).sum())
                .unwrap_or(0)
        } else {
            m.len()
        }
    }
    let kib = (size(dir) / 1024) * 5 / 4 + 16 * 1024;
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "scenario", "-d"])
            .arg(dir)
            .arg(img)
            .arg(format!("{kib}K")),
        || format!("mkfs.ext4 -d {} {}", dir.display(), img.display()),
    )?;
    Ok(())
}

/// Boots the disk image once: the newest kernel of its `/boot` (or
/// `spec.kernel`), the scenario directory as the second disk; returns when
/// the guest powers off or the timeout expires.
pub fn boot(spec: &DiskSpec) -> Result<DiskResult, Error> {
    let qemu = find_qemu()?;
    let release = match &spec.kernel {
        Some(k) => k.clone(),
        None => boot_kernels(&spec.disk)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::DiskImage(format!(
                    "no kernel with an initrd in /boot of {}",
                    spec.disk.display()
                ))
            })?,
    };
    let dir = tempfile::Builder::new()
        .prefix("kmlink-disk-")
        .tempdir()
        .map_err(|source| Error::Io {
            context: "creating temporary directory".into(),
            source,
        })?;
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    extract_file(&spec.disk, &format!("/boot/vmlinuz-{release}"), &kernel)?;
    extract_file(&spec.disk, &format!("/boot/initrd.img-{release}"), &initrd)?;
    let scenario_img = dir.path().join("scenario.img");
    ext4_image_of(&spec.scenario, &scenario_img)?;
    const CMDLINE: &str = "root=/dev/vda ro console=ttyS0 quiet panic=-1 systemd.firstboot=off";

    let mut args: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-accel",
        // One TCG thread, as VmSpec's SMP guests (see qemu.rs).
        if spec.smp > 1 {
            "tcg,thread=single"
        } else {
            "tcg"
        },
        "-cpu",
        "max",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "-m".into(),
        spec.memory_mb.to_string(),
        "-smp".into(),
        spec.smp.max(1).to_string(),
        "-drive".into(),
        format!("if=virtio,format=raw,file={}", spec.disk.display()),
        "-drive".into(),
        format!(
            "if=virtio,format=raw,readonly=on,file={}",
            scenario_img.display()
        ),
    ]);
    match &spec.secure_boot {
        None => args.extend([
            "-kernel".into(),
            kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            CMDLINE.into(),
        ]),
        Some(sb) => args.extend(secure_boot_args(sb, &kernel, &initrd, CMDLINE, dir.path())?),
    }
    let outcome = capture(
        &qemu,
        &args,
        None,
        STEP_BEGIN,
        spec.timeout,
        spec.echo_serial,
    )?;
    if !outcome.timed_out && outcome.raw_serial.is_empty() && outcome.exit_code != Some(0) {
        return Err(Error::QemuFailed {
            code: outcome.exit_code,
            stderr: outcome.stderr.trim().to_string(),
        });
    }
    let serial = strip_noise(&outcome.raw_serial);
    let (output, exit_status, guest_boot_secs) = parse_step(&serial);
    Ok(DiskResult {
        release,
        problems: find_problems(&serial),
        output,
        exit_status,
        guest_boot_secs,
        boot_time: outcome.boot_at,
        duration: outcome.duration,
        timed_out: outcome.timed_out,
        serial,
    })
}

/// QEMU arguments of a Secure Boot boot of the disk: OVMF (code read-only,
/// a private copy of the variable store), SMM, and an ESP with shim, GRUB,
/// `kernel` and `initrd` as the third virtio disk.
fn secure_boot_args(
    sb: &SecureBoot,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    dir: &Path,
) -> Result<Vec<String>, Error> {
    let vars = crate::firmware_vars(sb, dir)?;
    let esp_img = dir.join("esp.img");
    esp::build(&esp_img, &sb.shim, &sb.grub, kernel, initrd, cmdline)?;
    Ok(vec![
        "-machine".into(),
        "q35,smm=on".into(),
        "-global".into(),
        "driver=cfi.pflash01,property=secure,value=on".into(),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            sb.ovmf_code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-drive".into(),
        format!("if=virtio,format=raw,file={}", esp_img.display()),
    ])
}

/// The step's output, exit status and the guest's uptime at its start.
fn parse_step(serial: &str) -> (String, Option<i32>, Option<f64>) {
    let mut output = String::new();
    let (mut inside, mut rc, mut uptime) = (false, None, None);
    for line in serial.lines() {
        if let Some(rest) = line.split(STEP_BEGIN).nth(1) {
            inside = true;
            uptime = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("uptime="))
                .and_then(|v| v.parse().ok());
            continue;
        }
        if let Some(rest) = line.split(STEP_END).nth(1) {
            rc = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("rc="))
                .and_then(|v| v.parse().ok());
            break;
        }
        if inside {
            output.push_str(line);
            output.push('\n');
        }
    }
    (output, rc, uptime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn newer_debian_kernels_sort_first() {
        let mut v = vec![
            "6.1.0-47-amd64",
            "6.12.95+deb12-amd64",
            "6.1.0-9-amd64",
            "6.12.9+deb12-amd64",
        ];
        v.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(
            v,
            [
                "6.12.95+deb12-amd64",
                "6.12.9+deb12-amd64",
                "6.1.0-47-amd64",
                "6.1.0-9-amd64"
            ]
        );
        assert_eq!(compare_versions("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0a", "1.0+"), Ordering::Less);
    }

    #[test]
    fn step_output_between_markers() {
        let s = "noise\n@@KMLINK-STEP-BEGIN kernel=x uptime=12.5\nhello\nworld\n@@KMLINK-STEP-END rc=3 uptime=20\n";
        let (out, rc, up) = parse_step(s);
        assert_eq!(out, "hello\nworld\n");
        assert_eq!(rc, Some(3));
        assert_eq!(up, Some(12.5));
        assert_eq!(parse_step("@@KMLINK-STEP-BEGIN\nhalf\n").1, None);
    }
}
