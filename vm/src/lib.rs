//! VM harness: boots a real kernel in `qemu-system-x86_64` (or, for an
//! arm64 kernel, `qemu-system-aarch64`: see [`Arch`]) with a tiny busybox
//! initramfs, runs a shell script as the test, and reports what the
//! guest printed, the script's exit status, the kernel taint before and after,
//! the full `dmesg`, and any kernel problems (warnings, oopses, module loader
//! complaints) found in the log.
//!
//! ```no_run
//! use kmlink_vm::{run, GuestFile, VmSpec};
//! let mut spec = VmSpec::new("/boot/vmlinuz", "insmod /m.ko && rmmod m");
//! spec.files.push(GuestFile::kernel_module("/m.ko", "/tmp/m.ko.xz").unwrap());
//! let result = run(&spec).unwrap();
//! result.check_clean().unwrap();
//! ```
//!
//! The generated `/init` mounts proc, sysfs, devtmpfs, a tmpfs on `/tmp`,
//! tracefs and debugfs, lowers the console log level (`dmesg -n 1`) so
//! kernel messages do not interleave with the script's output, and frames
//! everything it reports with `@@KMLINK-...@@` markers on the serial console
//! (ttyS0; ttyAMA0 on arm64). On x86-64 it also streams `/dev/kmsg` to a
//! second serial port (ttyS1, a file on the host) so the kernel log
//! survives hangs and timeouts; arm64's `virt` machine has one UART.
//!
//! Environment: `$KMLINK_QEMU` and `$KMLINK_BUSYBOX` override where QEMU and
//! the static busybox are looked for; `$KMLINK_VM_ECHO=1` copies the guest
//! console to stderr live (see [`VmSpec::echo_serial`]).

#![deny(missing_docs)]

pub mod disk;
mod esp;
mod hostbin;
mod initramfs;
mod parse;
mod qemu;

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use initramfs::find_busybox;
pub use parse::{
    classify_line, find_problems, parse_serial, strip_noise, Parsed, Problem, ProblemKind,
};
pub use qemu::find_qemu;

/// Errors that prevent a VM from being run at all. Anything that happens
/// inside the guest (panics, hangs, failing scripts) is reported in
/// [`VmResult`] instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QEMU system emulator for the guest's architecture is not
    /// installed.
    #[error("{program} not found in PATH (or ${env}); install it with: apt-get install {package}")]
    QemuMissing {
        /// The program (`qemu-system-x86_64`, `qemu-system-aarch64`).
        program: &'static str,
        /// The environment variable that names it instead.
        env: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// No statically linked busybox on the host.
    #[error(
        "no statically linked busybox found (looked at $KMLINK_BUSYBOX, /bin/busybox, /usr/bin/busybox{}); install it with: apt-get install busybox-static",
        found_dynamic.as_ref().map(|p| format!("; {} is dynamically linked", p.display())).unwrap_or_default()
    )]
    BusyboxMissing {
        /// A busybox that was found but is dynamically linked, if any.
        found_dynamic: Option<PathBuf>,
    },
    /// A guest of this architecture needs a busybox built for it, and the
    /// spec names none ([`VmSpec::busybox`]).
    #[error("no busybox for {0} guests: the host's is not one; pass a static {0} busybox (e.g. Debian's busybox-static for arm64)")]
    BusyboxNeeded(Arch),
    /// The busybox given for the guest is not a static executable of the
    /// guest's architecture.
    #[error("{path} is not a statically linked {arch} executable")]
    BusyboxWrongArch {
        /// The busybox given.
        path: PathBuf,
        /// The guest's architecture.
        arch: Arch,
    },
    /// Something the spec asks for that guests of this architecture do not
    /// support.
    #[error("{what} is not supported for {arch} guests")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// The guest's architecture.
        arch: Arch,
    },
    /// The kernel image does not exist.
    #[error("kernel image not found: {0}")]
    KernelMissing(PathBuf),
    /// A guest path is empty or contains `.`/`..` components.
    #[error("invalid guest path {0:?}")]
    InvalidGuestPath(String),
    /// The host binary to include could not be resolved.
    #[error("including host binary: {0}")]
    HostBinary(String),
    /// QEMU itself failed (bad arguments, accelerator unavailable) without
    /// the guest printing anything.
    #[error("QEMU failed (exit code {code:?}): {stderr}")]
    QemuFailed {
        /// QEMU's exit code.
        code: Option<i32>,
        /// What QEMU wrote on stderr.
        stderr: String,
    },
    /// A disk image could not be read or made (`debugfs`, `mkfs.ext4`).
    #[error("disk image: {0}")]
    DiskImage(String),
    /// A host tool the Secure Boot boot needs is not installed.
    #[error("{tool} not found in PATH; install it with: apt-get install {package}")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A firmware or boot loader file of a Secure Boot spec does not exist.
    #[error("{what} not found: {path}")]
    FirmwareMissing {
        /// Which piece (OVMF code, OVMF variables, shim, GRUB).
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// Building the EFI system partition image failed.
    #[error("building the EFI system partition: {command} failed: {stderr}")]
    EspFailed {
        /// The command that failed.
        command: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// An I/O error on the host.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a guest file's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host file, read when the initramfs is built.
    Path(PathBuf),
    /// Literal bytes.
    Bytes(Vec<u8>),
}

/// A file to put in the initramfs. Parent directories are created as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// Absolute path in the guest, e.g. `/lib/modules/foo.ko`.
    pub guest_path: String,
    /// The contents.
    pub contents: Source,
    /// Permission bits (e.g. `0o644`, `0o755`).
    pub mode: u32,
}

impl GuestFile {
    /// A guest file with the given contents and mode.
    pub fn new(guest_path: impl Into<String>, contents: Source, mode: u32) -> Self {
        GuestFile {
            guest_path: guest_path.into(),
            contents,
            mode,
        }
    }

    /// A guest file with literal contents.
    pub fn bytes(guest_path: impl Into<String>, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        Self::new(guest_path, Source::Bytes(bytes.into()), mode)
    }

    /// A copy of a host file (mode 0644, or 0755 if the host file is
    /// executable by its owner).
    pub fn from_host(guest_path: impl Into<String>, host: impl Into<PathBuf>) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let host = host.into();
        let exec = std::fs::metadata(&host)
            .map(|m| m.permissions().mode() & 0o100 != 0)
            .unwrap_or(false);
        Self::new(
            guest_path,
            Source::Path(host),
            if exec { 0o755 } else { 0o644 },
        )
    }

    /// A kernel module read from the host, decompressed if its name ends in
    /// `.xz` or `.gz` (busybox `insmod` cannot load compressed modules), with
    /// mode 0644.
    pub fn kernel_module(
        guest_path: impl Into<String>,
        host: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        Ok(Self::bytes(guest_path, read_module(host.as_ref())?, 0o644))
    }
}

/// Reads a kernel module file, transparently decompressing `.ko.xz` and
/// `.ko.gz` (by extension).
pub fn read_module(path: &Path) -> Result<Vec<u8>, Error> {
    let ctx = |source| Error::Io {
        context: format!("reading module {}", path.display()),
        source,
    };
    let file = std::fs::File::open(path).map_err(ctx)?;
    let mut out = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => {
            xz2::read::XzDecoder::new(file)
                .read_to_end(&mut out)
                .map_err(ctx)?;
        }
        Some("gz") => {
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut out)
                .map_err(ctx)?;
        }
        _ => {
            std::io::BufReader::new(file)
                .read_to_end(&mut out)
                .map_err(ctx)?;
        }
    }
    Ok(out)
}

/// The guest's architecture: which QEMU, machine, CPU and console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// `qemu-system-x86_64` (the default machine, `-cpu max`), console
    /// ttyS0, the host's busybox.
    #[default]
    X86_64,
    /// `qemu-system-aarch64`: `-machine virt`, `-cpu max,pauth-impdef=on`
    /// (pointer authentication with QEMU's own fast algorithm: about 3×
    /// faster under TCG than the architected one), always TCG on a
    /// foreign host, console ttyAMA0; Debian's arm64 vmlinuz is a raw Image
    /// that `-kernel` boots directly. Needs an arm64 busybox
    /// ([`VmSpec::busybox`]).
    Aarch64,
}

impl Arch {
    /// By machine name (`uname -m`: `x86_64`, `aarch64`).
    pub fn from_machine(name: &str) -> Option<Arch> {
        match name {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The machine name (`uname -m`).
    pub fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The architecture of the machine this process runs on, if one of
    /// these.
    pub fn host() -> Option<Arch> {
        Arch::from_machine(std::env::consts::ARCH)
    }

    /// The QEMU system emulator.
    pub fn qemu_program(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The environment variable that overrides the `$PATH` search for
    /// [`Arch::qemu_program`].
    pub fn qemu_env(self) -> &'static str {
        match self {
            Arch::X86_64 => "KMLINK_QEMU",
            Arch::Aarch64 => "KMLINK_QEMU_AARCH64",
        }
    }

    /// The Debian package that installs [`Arch::qemu_program`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }

    /// The guest's serial console device.
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// The ELF `e_machine` of this architecture's executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.machine())
    }
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Pure emulation (slow, works everywhere).
    #[default]
    Tcg,
    /// KVM (fails if unavailable).
    Kvm,
    /// KVM if `/dev/kvm` is usable and a quick probe boot (<= 15 s) works;
    /// TCG otherwise. The verdict is cached per process.
    Auto,
}

/// How the guest is started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and the initramfs itself (`-kernel`, `-initrd`,
    /// `-append`): no firmware, no signature checks.
    #[default]
    Direct,
    /// UEFI Secure Boot: OVMF with Secure Boot enforced boots shim from an
    /// EFI system partition, shim verifies GRUB, GRUB asks shim to verify the
    /// kernel, the kernel boots with the initramfs (which nobody verifies).
    SecureBoot(SecureBoot),
}

/// The firmware and boot loaders of a [`Boot::SecureBoot`] run.
///
/// Debian's packages provide them: `ovmf` (`OVMF_CODE_4M.secboot.fd`,
/// `OVMF_VARS_4M.ms.fd`), `shim-signed` (`shimx64.efi.signed`) and
/// `grub-efi-amd64-signed` (`grubx64.efi.signed`). The kernel
/// ([`VmSpec::kernel`]) must be a signed image for the chain to accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBoot {
    /// Firmware code with Secure Boot support, mapped read-only as pflash
    /// unit 0 (`OVMF_CODE_4M.secboot.fd`).
    pub ovmf_code: PathBuf,
    /// Firmware variable store template (Secure Boot on, keys enrolled, e.g.
    /// `OVMF_VARS_4M.ms.fd` or a copy with a Machine Owner Key added). Each
    /// run gets a fresh copy as pflash unit 1, so runs never share state.
    pub ovmf_vars: PathBuf,
    /// The first-stage loader, installed as `EFI/BOOT/BOOTX64.EFI`.
    pub shim: PathBuf,
    /// The boot loader shim starts, installed as `EFI/BOOT/grubx64.efi`.
    pub grub: PathBuf,
}

/// What to boot and run.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Kernel image (bzImage / vmlinuz).
    pub kernel: PathBuf,
    /// Extra files for the initramfs.
    pub files: Vec<GuestFile>,
    /// Shell script run by `/init` as the test (busybox `sh`, cwd `/`,
    /// stdin `/dev/null`, stdout and stderr to the console).
    pub script: String,
    /// Wall-clock limit; on expiry QEMU is killed and what was printed so far
    /// is returned with `timed_out = true`.
    pub timeout: Duration,
    /// Guest memory in MiB (default 512).
    pub memory_mb: u32,
    /// Number of guest CPUs (default 1).
    pub smp: u32,
    /// Accelerator (default TCG).
    pub accel: Accel,
    /// Extra kernel command-line arguments.
    pub extra_append: Vec<String>,
    /// A host executable copied to `/bin/<file name>` together with the
    /// shared libraries (and ELF interpreter) `ldd` says it needs, at the same
    /// paths as on the host.
    pub include_host_binary: Option<PathBuf>,
    /// Copy the guest console to this process's stderr as it arrives
    /// (default: whether `$KMLINK_VM_ECHO` is set to a non-empty value).
    pub echo_serial: bool,
    /// How the guest is started (default [`Boot::Direct`]). The script, the
    /// markers and everything in [`VmResult`] are the same either way.
    pub boot: Boot,
    /// The kernel's architecture (default [`Arch::X86_64`]).
    pub arch: Arch,
    /// The guest's `/bin/busybox`: a static executable of [`VmSpec::arch`].
    /// Default: the host's ([`find_busybox`]), which serves x86-64 guests
    /// only; an aarch64 guest needs one given here.
    pub busybox: Option<PathBuf>,
}

impl VmSpec {
    /// A spec with defaults: no extra files, 120 s timeout, 512 MiB, 1 CPU,
    /// TCG, no extra command line, no host binary.
    pub fn new(kernel: impl Into<PathBuf>, script: impl Into<String>) -> Self {
        VmSpec {
            kernel: kernel.into(),
            files: Vec::new(),
            script: script.into(),
            timeout: Duration::from_secs(120),
            memory_mb: 512,
            smp: 1,
            accel: Accel::Tcg,
            extra_append: Vec::new(),
            include_host_binary: None,
            echo_serial: std::env::var_os("KMLINK_VM_ECHO").is_some_and(|v| !v.is_empty()),
            boot: Boot::Direct,
            arch: Arch::X86_64,
            busybox: None,
        }
    }

    /// The full kernel command line for this spec.
    pub fn cmdline(&self) -> String {
        let console = format!("console={}", self.arch.console());
        let mut parts: Vec<&str> = vec![&console, "panic=-1", "quiet", "loglevel=4"];
        parts.extend(self.extra_append.iter().map(String::as_str));
        parts.join(" ")
    }

    /// The guest's busybox: [`VmSpec::busybox`], checked to be a static
    /// executable of [`VmSpec::arch`]; else the host's for a guest of the
    /// host's architecture.
    pub fn guest_busybox(&self) -> Result<PathBuf, Error> {
        let Some(path) = &self.busybox else {
            return if Some(self.arch) == Arch::host() {
                find_busybox()
            } else {
                Err(Error::BusyboxNeeded(self.arch))
            };
        };
        let (is_static, machine) =
            initramfs::elf_static_machine(path).map_err(|source| Error::Io {
                context: format!("reading {}", path.display()),
                source,
            })?;
        if !is_static || machine != self.arch.elf_machine() {
            return Err(Error::BusyboxWrongArch {
                path: path.clone(),
                arch: self.arch,
            });
        }
        Ok(path.clone())
    }
}

/// What happened in the VM.
#[derive(Debug, Clone)]
pub struct VmResult {
    /// Everything the guest printed on the console, with ANSI escapes and
    /// carriage returns stripped.
    pub serial: String,
    /// Only what the test script printed (stdout and stderr).
    pub output: String,
    /// The script's exit status (`None` if it never finished).
    pub exit_status: Option<i32>,
    /// `/proc/sys/kernel/tainted` right before the script.
    pub taint_before: Option<u64>,
    /// `/proc/sys/kernel/tainted` right after the script.
    pub taint_after: Option<u64>,
    /// The guest's full `dmesg`, dumped by `/init` after the script. If the
    /// dump never happened (timeout, panic), the kernel log that `/init`
    /// streamed from `/dev/kmsg` to the second serial port up to that point,
    /// in the same `[seconds] text` format.
    pub dmesg: String,
    /// Kernel problems found in the dmesg dump and on the console.
    pub problems: Vec<Problem>,
    /// Time from QEMU start to `/init`'s first marker (zero if never seen).
    pub boot_time: Duration,
    /// Time from QEMU start to its exit.
    pub duration: Duration,
    /// Whether the timeout expired and QEMU was killed.
    pub timed_out: bool,
    /// The accelerator actually used (`Tcg` or `Kvm`, never `Auto`).
    pub accel: Accel,
    /// What QEMU wrote on its stderr.
    pub qemu_stderr: String,
    /// Whether /init started (its first marker was seen).
    pub reached_init: bool,
    /// Kernel logs of earlier boots of this run that died before /init
    /// and were retried (see [`MAX_BOOT_RETRIES`]).
    pub failed_boots: Vec<String>,
}

impl VmResult {
    /// Taint flags the script added (`after & !before`), if both are known.
    pub fn taint_added(&self) -> Option<u64> {
        Some(self.taint_after? & !self.taint_before?)
    }

    /// The guest crashed or hung before /init ran: the test never started.
    pub fn failed_before_init(&self) -> bool {
        !self.reached_init && (!self.problems.is_empty() || self.timed_out)
    }

    /// `Ok(())` if no problems were found, the VM did not time out and the
    /// script exited with status 0; otherwise a summary with the last 40
    /// console lines.
    pub fn check_clean(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        if self.timed_out {
            reasons.push(format!("timed out after {:.1?}", self.duration));
        }
        match self.exit_status {
            Some(0) => {}
            Some(rc) => reasons.push(format!("script exited with status {rc}")),
            None if !self.timed_out => reasons.push("script never finished".to_string()),
            None => {}
        }
        if !self.problems.is_empty() {
            reasons.push(format!("{} kernel problem(s) found", self.problems.len()));
        }
        if reasons.is_empty() {
            return Ok(());
        }
        let mut msg = format!("VM run not clean: {}", reasons.join("; "));
        for p in self.problems.iter().take(20) {
            let _ = write!(msg, "\n  {p}");
        }
        if self.problems.len() > 20 {
            let _ = write!(msg, "\n  ... and {} more", self.problems.len() - 20);
        }
        let lines: Vec<&str> = self.serial.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        let _ = write!(msg, "\n--- last {} console lines ---", tail.len());
        for l in tail {
            let _ = write!(msg, "\n{l}");
        }
        Err(msg)
    }
}

/// Builds the `/init` script.
fn init_script() -> String {
    // Markers are assembled at run time (`@@${M}-...`) so that printing
    // /init itself (e.g. `cat /init` in a test) does not fake them.
    r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
dmesg -n 1
# Stream the kernel log to ttyS1 (a file on the host) so it survives a
# hang or timeout; the dmesg dump below is the primary copy. (arm64's
# virt machine has no second port: no ttyS1 device.)
[ -c /dev/ttyS1 ] && cat /dev/kmsg > /dev/ttyS1 2>/dev/null &
M=KMLINK
echo "@@${M}-BOOT@@"
echo "@@${M}-TAINT-BEFORE@@ $(cat /proc/sys/kernel/tainted)"
echo "@@${M}-OUT-BEGIN@@"
cd /
sh /test.sh </dev/null 2>&1
rc=$?
echo "@@${M}-OUT-END@@ rc=$rc"
echo "@@${M}-TAINT-AFTER@@ $(cat /proc/sys/kernel/tainted)"
echo "@@${M}-DMESG-BEGIN@@"
dmesg
echo "@@${M}-DMESG-END@@"
poweroff -f
echo o > /proc/sysrq-trigger
sleep 5
reboot -f
while :; do sleep 60; done
"#
    .to_string()
}

/// Assembles the initramfs for `spec` into `path`.
fn build_initramfs(spec: &VmSpec, busybox: &Path, path: &Path) -> Result<(), Error> {
    let mut ir = initramfs::Initramfs::default();
    for d in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/root",
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/mnt",
        "/run",
        "/var",
        "/lib/modules",
    ] {
        ir.dir(d, 0o755)?;
    }
    ir.dir("/tmp", 0o1777)?;
    ir.dir("/root", 0o700)?;
    // So that /init has a console even on kernels without a built-in
    // initramfs providing /dev/console (devtmpfs is mounted over it later).
    ir.char_dev("/dev/console", 5, 1, 0o600)?;
    ir.file("/bin/busybox", Source::Path(busybox.to_path_buf()), 0o755)?;
    ir.file("/init", Source::Bytes(init_script().into_bytes()), 0o755)?;
    if let Some(bin) = &spec.include_host_binary {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::HostBinary(format!("{} has no file name", bin.display())))?;
        if !bin.is_file() {
            return Err(Error::HostBinary(format!("{} not found", bin.display())));
        }
        ir.file(&format!("/bin/{name}"), Source::Path(bin.clone()), 0o755)?;
        for lib in hostbin::shared_libraries(bin)? {
            let guest = lib.to_string_lossy().into_owned();
            ir.file(&guest, Source::Path(lib), 0o755)?;
        }
    }
    for f in &spec.files {
        ir.file(&f.guest_path, f.contents.clone(), f.mode)?;
    }
    ir.file(
        "/test.sh",
        Source::Bytes(spec.script.clone().into_bytes()),
        0o755,
    )?;
    ir.write_gz(path)
}

/// Boots `spec.kernel` with the generated initramfs, runs the script and
/// reports. Errors only for problems on the host side (missing QEMU,
/// busybox or kernel, I/O); guest failures are in the returned
/// [`VmResult`].
pub fn run(spec: &VmSpec) -> Result<VmResult, Error> {
    let mut failed_boots = Vec::new();
    loop {
        let mut result = run_once(spec)?;
        if !result.failed_before_init() || failed_boots.len() >= MAX_BOOT_RETRIES {
            result.failed_boots = failed_boots;
            return Ok(result);
        }
        // The guest died before /init ran: nothing of the test (no module,
        // no script) was involved. Seen with SMP guests under TCG, whose
        // cross-modifying code races the kernel's own boot-time text
        // patching (int3 in patched code). Say so loudly, boot again.
        let first = result
            .problems
            .first()
            .map(|p| p.line.clone())
            .unwrap_or_else(|| "no output".into());
        eprintln!(
            "kmlink-vm: WARNING: {} failed before /init ({first}); booting again",
            spec.kernel.display()
        );
        log::warn!("{} failed before /init: {first}", spec.kernel.display());
        failed_boots.push(result.dmesg);
    }
}

/// Boots that fail before /init are retried this many times.
pub const MAX_BOOT_RETRIES: usize = 2;

fn run_once(spec: &VmSpec) -> Result<VmResult, Error> {
    let native = Some(spec.arch) == Arch::host();
    if !native {
        // A host binary and its libraries would not run in a foreign guest;
        // OVMF, shim and GRUB are x86-64's; KVM runs the host's own.
        if spec.include_host_binary.is_some() {
            return Err(Error::Unsupported {
                what: "including a host binary",
                arch: spec.arch,
            });
        }
        if spec.boot != Boot::Direct {
            return Err(Error::Unsupported {
                what: "Secure Boot",
                arch: spec.arch,
            });
        }
        if spec.accel == Accel::Kvm {
            return Err(Error::Unsupported {
                what: "KVM on this host",
                arch: spec.arch,
            });
        }
    }
    let qemu = qemu::find_qemu_for(spec.arch)?;
    let busybox = spec.guest_busybox()?;
    if !spec.kernel.is_file() {
        return Err(Error::KernelMissing(spec.kernel.clone()));
    }
    let dir = tempfile::Builder::new()
        .prefix("kmlink-vm-")
        .tempdir()
        .map_err(|source| Error::Io {
            context: "creating temporary directory".into(),
            source,
        })?;
    let initrd = dir.path().join("initramfs.cpio.gz");
    let kmsg_log = dir.path().join("kmsg.log");
    build_initramfs(spec, &busybox, &initrd)?;

    let firmware = match &spec.boot {
        Boot::Direct => None,
        Boot::SecureBoot(sb) => Some(secure_boot_drives(spec, sb, &initrd, dir.path())?),
    };

    let kvm = native && qemu::use_kvm(spec.accel, || kvm_probe(&qemu, spec, &busybox, dir.path()));
    let launch = qemu::Launch {
        qemu: &qemu,
        arch: spec.arch,
        kernel: &spec.kernel,
        initrd: &initrd,
        firmware: firmware.as_ref(),
        // arm64's virt machine has one UART: no second port for /dev/kmsg.
        kmsg_log: (spec.arch == Arch::X86_64).then_some(kmsg_log.as_path()),
        append: spec.cmdline(),
        memory_mb: spec.memory_mb,
        smp: spec.smp,
        kvm,
        timeout: spec.timeout,
        echo: spec.echo_serial,
    };
    let outcome = launch.run()?;
    if !outcome.timed_out && outcome.raw_serial.is_empty() && outcome.exit_code != Some(0) {
        return Err(Error::QemuFailed {
            code: outcome.exit_code,
            stderr: outcome.stderr.trim().to_string(),
        });
    }
    let serial = strip_noise(&outcome.raw_serial);
    let mut parsed = parse_serial(&serial);
    if parsed.dmesg.is_empty() && !outcome.raw_kmsg.is_empty() {
        // No dmesg dump (timeout, panic, hang): use the streamed kernel log.
        parsed.dmesg = parse::kmsg_to_dmesg(&strip_noise(&outcome.raw_kmsg));
        parse::merge_problems(&mut parsed.problems, &parsed.dmesg);
    }
    Ok(VmResult {
        output: parsed.output,
        exit_status: parsed.exit_status,
        taint_before: parsed.taint_before,
        taint_after: parsed.taint_after,
        dmesg: parsed.dmesg,
        problems: parsed.problems,
        boot_time: outcome.boot_at.unwrap_or_default(),
        duration: outcome.duration,
        timed_out: outcome.timed_out,
        accel: if kvm { Accel::Kvm } else { Accel::Tcg },
        qemu_stderr: outcome.stderr,
        serial,
        reached_init: outcome.boot_at.is_some(),
        failed_boots: Vec::new(),
    })
}

/// Prepares a Secure Boot run in `dir`: a private copy of the variable
/// store and the EFI system partition with shim, GRUB, the kernel and
/// `initrd`.
/// Checks that `sb`'s firmware files exist and copies its variable store
/// into `dir` (each boot writes its own copy); returns the copy.
pub(crate) fn firmware_vars(sb: &SecureBoot, dir: &Path) -> Result<PathBuf, Error> {
    for (what, p) in [
        ("OVMF firmware code", &sb.ovmf_code),
        ("OVMF variable store", &sb.ovmf_vars),
    ] {
        if !p.is_file() {
            return Err(Error::FirmwareMissing {
                what,
                path: p.clone(),
            });
        }
    }
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(&sb.ovmf_vars, &vars).map_err(|source| Error::Io {
        context: format!("copying {}", sb.ovmf_vars.display()),
        source,
    })?;
    Ok(vars)
}

fn secure_boot_drives(
    spec: &VmSpec,
    sb: &SecureBoot,
    initrd: &Path,
    dir: &Path,
) -> Result<qemu::Firmware, Error> {
    let vars = firmware_vars(sb, dir)?;
    let esp = dir.join("esp.img");
    esp::build(
        &esp,
        &sb.shim,
        &sb.grub,
        &spec.kernel,
        initrd,
        &spec.cmdline(),
    )?;
    Ok(qemu::Firmware {
        code: sb.ovmf_code.clone(),
        vars,
        esp,
    })
}

/// Boots the spec's kernel under KVM with an initramfs that only prints a
/// marker; true if the marker shows up within 15 s.
fn kvm_probe(qemu: &Path, spec: &VmSpec, busybox: &Path, dir: &Path) -> bool {
    const PROBE_OK: &str = "kmlink-kvm-probe-ok";
    let mut probe_spec = VmSpec::new(spec.kernel.clone(), format!("echo {PROBE_OK}\n"));
    probe_spec.extra_append = spec.extra_append.clone();
    let initrd = dir.join("kvm-probe.cpio.gz");
    if let Err(e) = build_initramfs(&probe_spec, busybox, &initrd) {
        log::warn!(
            "KVM probe: building initramfs: {}",
            kmlink_errors::Chain(&e)
        );
        return false;
    }
    let launch = qemu::Launch {
        qemu,
        arch: spec.arch,
        kernel: &spec.kernel,
        initrd: &initrd,
        firmware: None,
        kmsg_log: None,
        append: probe_spec.cmdline(),
        memory_mb: spec.memory_mb,
        smp: spec.smp,
        kvm: true,
        timeout: Duration::from_secs(15),
        echo: false,
    };
    match launch.run() {
        Ok(o) => {
            let parsed = parse_serial(&strip_noise(&o.raw_serial));
            let ok = parsed.exit_status == Some(0) && parsed.output.contains(PROBE_OK);
            if !ok {
                log::info!(
                    "KVM probe failed (timed out: {}, stderr: {})",
                    o.timed_out,
                    o.stderr.trim()
                );
            }
            ok
        }
        Err(e) => {
            log::info!("KVM probe could not run: {}", kmlink_errors::Chain(&e));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_with(serial: &str, timed_out: bool) -> VmResult {
        let p = parse_serial(serial);
        VmResult {
            serial: serial.to_string(),
            output: p.output,
            exit_status: p.exit_status,
            taint_before: p.taint_before,
            taint_after: p.taint_after,
            dmesg: p.dmesg,
            problems: p.problems,
            boot_time: Duration::ZERO,
            duration: Duration::from_secs(1),
            timed_out,
            accel: Accel::Tcg,
            qemu_stderr: String::new(),
            reached_init: true,
            failed_boots: Vec::new(),
        }
    }

    #[test]
    fn only_deaths_before_init_are_retried() {
        let mut r = result_with("", false);
        assert!(!r.failed_before_init(), "clean and booted");
        r.reached_init = false;
        assert!(
            !r.failed_before_init(),
            "no problem, no timeout: nothing to retry"
        );
        r.problems.push(Problem {
            kind: ProblemKind::Oops,
            line: "Oops: int3".into(),
        });
        assert!(r.failed_before_init());
        r.reached_init = true;
        assert!(
            !r.failed_before_init(),
            "a problem after /init is the test's own"
        );
    }

    #[test]
    fn taint_added_and_check_clean() {
        let clean = "@@KMLINK-BOOT@@\n@@KMLINK-TAINT-BEFORE@@ 4096\n@@KMLINK-OUT-BEGIN@@\nhi\n\
                     @@KMLINK-OUT-END@@ rc=0\n@@KMLINK-TAINT-AFTER@@ 12288\n\
                     @@KMLINK-DMESG-BEGIN@@\n[ 1.0] ok\n@@KMLINK-DMESG-END@@\n";
        let r = result_with(clean, false);
        assert_eq!(r.taint_added(), Some(8192));
        assert_eq!(r.output, "hi\n");
        assert!(r.check_clean().is_ok());

        let failing = clean.replace("rc=0", "rc=1");
        let err = result_with(&failing, false)
            .check_clean()
            .expect_err("rc=1");
        assert!(err.contains("status 1"), "{err}");
        assert!(err.contains("last "), "{err}");

        let warn = clean.replace("[ 1.0] ok", "[ 1.0] WARNING: CPU: 0 PID: 1 at x");
        let err = result_with(&warn, false)
            .check_clean()
            .expect_err("warning");
        assert!(err.contains("[warning]"), "{err}");

        let cut = "@@KMLINK-BOOT@@\n@@KMLINK-TAINT-BEFORE@@ 0\n@@KMLINK-OUT-BEGIN@@\n";
        let r = result_with(cut, true);
        assert_eq!(r.taint_added(), None);
        assert!(r.check_clean().expect_err("timeout").contains("timed out"));
    }

    #[test]
    fn cmdline_has_defaults_and_extras() {
        let mut spec = VmSpec::new("/k", "true");
        spec.extra_append.push("nokaslr".into());
        assert_eq!(
            spec.cmdline(),
            "console=ttyS0 panic=-1 quiet loglevel=4 nokaslr"
        );
        assert_eq!(spec.memory_mb, 512);
        assert_eq!(spec.smp, 1);
        assert_eq!(spec.accel, Accel::Tcg);
    }

    #[test]
    fn aarch64_console_is_the_pl011() {
        let mut spec = VmSpec::new("/k", "true");
        spec.arch = Arch::Aarch64;
        assert_eq!(spec.cmdline(), "console=ttyAMA0 panic=-1 quiet loglevel=4");
        assert_eq!(Arch::from_machine("aarch64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_machine("x86_64"), Some(Arch::X86_64));
        assert_eq!(Arch::from_machine("riscv64"), None);
        assert_eq!(Arch::Aarch64.to_string(), "aarch64");
    }

    /// A minimal 64-bit little-endian ELF header for `machine`, with one
    /// program header of type `p_type`.
    fn elf(machine: u16, p_type: u32) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        d[64..68].copy_from_slice(&p_type.to_le_bytes());
        d
    }

    #[test]
    fn a_foreign_guest_needs_its_own_static_busybox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = VmSpec::new("/k", "true");
        spec.arch = if Arch::host() == Some(Arch::Aarch64) {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        assert!(matches!(
            spec.guest_busybox(),
            Err(Error::BusyboxNeeded(a)) if a == spec.arch
        ));
        const PT_LOAD: u32 = 1;
        const PT_INTERP: u32 = 3;
        let good = dir.path().join("good");
        std::fs::write(&good, elf(spec.arch.elf_machine(), PT_LOAD)).expect("write");
        spec.busybox = Some(good.clone());
        assert_eq!(spec.guest_busybox().expect("static, right machine"), good);
        for (name, bytes) in [
            ("dynamic", elf(spec.arch.elf_machine(), PT_INTERP)),
            ("other-machine", elf(spec.arch.elf_machine() + 1, PT_LOAD)),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            spec.busybox = Some(p.clone());
            assert!(
                matches!(spec.guest_busybox(), Err(Error::BusyboxWrongArch { ref path, .. }) if *path == p),
                "{name}"
            );
        }
    }

    #[test]
    fn foreign_guests_refuse_host_binaries_and_secure_boot() {
        let mut spec = VmSpec::new("/nonexistent/Image", "true");
        spec.arch = if Arch::host() == Some(Arch::Aarch64) {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        spec.busybox = Some("/nonexistent/busybox".into());
        spec.include_host_binary = Some("/bin/true".into());
        assert!(matches!(
            run(&spec),
            Err(Error::Unsupported {
                what: "including a host binary",
                ..
            })
        ));
        spec.include_host_binary = None;
        spec.boot = Boot::SecureBoot(SecureBoot {
            ovmf_code: "/c".into(),
            ovmf_vars: "/v".into(),
            shim: "/s".into(),
            grub: "/g".into(),
        });
        assert!(matches!(
            run(&spec),
            Err(Error::Unsupported {
                what: "Secure Boot",
                ..
            })
        ));
    }

    #[test]
    fn init_script_has_markers_assembled_at_runtime() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(!s.contains("@@KMLINK-"));
        for m in [
            "BOOT",
            "TAINT-BEFORE",
            "OUT-BEGIN",
            "OUT-END",
            "TAINT-AFTER",
            "DMESG-BEGIN",
            "DMESG-END",
        ] {
            assert!(s.contains(&format!("@@${{M}}-{m}@@")), "{m}");
        }
    }

    #[test]
    fn missing_kernel_is_an_error() {
        let spec = VmSpec::new("/nonexistent/vmlinuz", "true");
        match run(&spec) {
            Err(Error::KernelMissing(p)) => assert_eq!(p, PathBuf::from("/nonexistent/vmlinuz")),
            // Hosts without QEMU/busybox report that first.
            Err(Error::QemuMissing { .. }) | Err(Error::BusyboxMissing { .. }) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }

    #[test]
    fn initramfs_contains_spec_files() {
        let bb = match find_busybox() {
            Ok(bb) => bb,
            Err(e) => return kmlink_testkit::missing(&format!("a static busybox: {e}")),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = VmSpec::new("/k", "echo hi");
        spec.files
            .push(GuestFile::bytes("/lib/modules/m.ko", b"ko".to_vec(), 0o644));
        let out = dir.path().join("ir.gz");
        build_initramfs(&spec, &bb, &out).expect("build");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&out).expect("open"))
            .read_to_end(&mut raw)
            .expect("gunzip");
        let mut rest: &[u8] = &raw;
        let mut names = Vec::new();
        loop {
            let r = cpio::NewcReader::new(rest).expect("entry");
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_string());
            rest = r.finish().expect("finish");
        }
        for n in [
            "init",
            "test.sh",
            "bin/busybox",
            "dev/console",
            "lib/modules/m.ko",
            "sys",
            "proc",
            "tmp",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn read_module_decompresses_xz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.ko.xz");
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut enc, b"\x7fELFmodule").expect("write");
        std::fs::write(&p, enc.finish().expect("finish")).expect("write");
        assert_eq!(read_module(&p).expect("read"), b"\x7fELFmodule");
        let f = GuestFile::kernel_module("/m.ko", &p).expect("module");
        assert_eq!(f.contents, Source::Bytes(b"\x7fELFmodule".to_vec()));
    }
}
