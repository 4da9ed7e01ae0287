//! Finding and driving `qemu-system-x86_64` and `qemu-system-aarch64`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::parse::BOOT;
use crate::{Accel, Arch, Error};

/// Keep at most this much console output (the rest is dropped).
const MAX_CAPTURE: usize = 64 << 20;

/// Finds `qemu-system-x86_64` (`$KMLINK_QEMU` overrides the `$PATH` search).
pub fn find_qemu() -> Result<PathBuf, Error> {
    find_qemu_for(Arch::X86_64)
}

/// Finds the QEMU system emulator for `arch` ([`Arch::qemu_program`];
/// [`Arch::qemu_env`] overrides the `$PATH` search).
pub fn find_qemu_for(arch: Arch) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(arch.qemu_env()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(arch.qemu_program()))
        .find(|p| p.is_file())
        .ok_or(Error::QemuMissing {
            program: arch.qemu_program(),
            env: arch.qemu_env(),
            package: arch.qemu_package(),
        })
}

/// The drives of a UEFI Secure Boot run.
pub(crate) struct Firmware {
    /// OVMF code (read-only pflash unit 0).
    pub code: PathBuf,
    /// This run's own copy of the variable store (pflash unit 1).
    pub vars: PathBuf,
    /// The EFI system partition image (kernel and initramfs inside).
    pub esp: PathBuf,
}

/// One QEMU invocation.
pub(crate) struct Launch<'a> {
    pub qemu: &'a Path,
    /// Which machine and CPU.
    pub arch: Arch,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Boot through UEFI firmware from an ESP instead of `-kernel`.
    pub firmware: Option<&'a Firmware>,
    /// File receiving the guest's second serial port (ttyS1), where `/init`
    /// streams `/dev/kmsg`; `None` to leave ttyS1 unconnected.
    pub kmsg_log: Option<&'a Path>,
    pub append: String,
    pub memory_mb: u32,
    pub smp: u32,
    pub kvm: bool,
    pub timeout: Duration,
    pub echo: bool,
}

/// What came out of one QEMU invocation.
pub(crate) struct Outcome {
    pub raw_serial: Vec<u8>,
    pub raw_kmsg: Vec<u8>,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub boot_at: Option<Duration>,
    pub duration: Duration,
    pub timed_out: bool,
}

impl Launch<'_> {
    /// The argument list (without the program name).
    pub(crate) fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
        ];
        // arm64's virt machine has a single UART.
        if self.arch == Arch::X86_64 {
            a.push("-serial".into());
            a.push(match self.kmsg_log {
                Some(p) => format!("file:{}", p.display()),
                None => "null".into(),
            });
        }
        a.extend([
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-accel".into(),
            // Multi-threaded TCG does not order another vCPU's view of
            // code being rewritten (the kernel's text_poke_bp: int3, body,
            // first byte, with IPIs in between) the way hardware does:
            // ftrace/kprobe/static-key patching under -smp 2 then executes
            // torn instructions (stray int3, calls to 0). One TCG thread
            // runs the vCPUs in turn: still SMP to the guest (IPIs,
            // preemption, migration), with coherent code patching.
            if self.kvm {
                "kvm"
            } else if self.smp > 1 {
                "tcg,thread=single"
            } else {
                "tcg"
            }
            .into(),
            "-m".into(),
            self.memory_mb.max(64).to_string(),
            "-smp".into(),
            self.smp.max(1).to_string(),
        ]);
        match self.arch {
            Arch::X86_64 => a.extend(["-cpu".into(), "max".into()]),
            Arch::Aarch64 => {
                a.extend(["-machine", "virt", "-cpu", "max,pauth-impdef=on"].map(String::from))
            }
        }
        if let Some(fw) = self.firmware {
            // SMM keeps the variable store out of the guest's reach, which
            // OVMF's Secure Boot build requires.
            a.extend(
                [
                    "-machine",
                    "q35,smm=on",
                    "-global",
                    "driver=cfi.pflash01,property=secure,value=on",
                    "-drive",
                ]
                .map(String::from),
            );
            a.push(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                fw.code.display()
            ));
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,unit=1,file={}",
                fw.vars.display()
            ));
            a.push("-drive".into());
            a.push(format!("if=virtio,format=raw,file={}", fw.esp.display()));
            return a;
        }
        a.push("-kernel".into());
        a.push(self.kernel.display().to_string());
        a.push("-initrd".into());
        a.push(self.initrd.display().to_string());
        a.push("-append".into());
        a.push(self.append.clone());
        a
    }

    /// Runs QEMU to completion or until the timeout, capturing the console.
    pub(crate) fn run(&self) -> Result<Outcome, Error> {
        capture(
            self.qemu,
            &self.args(),
            self.kmsg_log,
            BOOT,
            self.timeout,
            self.echo,
        )
    }
}

/// Runs `qemu` with `args` to completion or until `timeout`, capturing the
/// console (its stdout) and, when given, the file of the second serial port.
/// `Outcome::boot_at` is when `marker` first appeared on the console.
pub(crate) fn capture(
    qemu: &Path,
    args: &[String],
    kmsg_log: Option<&Path>,
    marker: &str,
    timeout: Duration,
    echo: bool,
) -> Result<Outcome, Error> {
    log::debug!("{} {}", qemu.display(), args.join(" "));
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Io {
            context: format!("starting {}", qemu.display()),
            source,
        })?;

    let stdout = child.stdout.take();
    let marker = marker.as_bytes().to_vec();
    let out_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut boot_at = None;
        let Some(mut stdout) = stdout else {
            return (buf, boot_at);
        };
        let mut chunk = [0u8; 8192];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if echo {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(&chunk[..n]);
                        let _ = e.flush();
                    }
                    if buf.len() < MAX_CAPTURE {
                        // Search the new bytes plus an overlap for the marker.
                        let from = buf.len().saturating_sub(marker.len());
                        buf.extend_from_slice(&chunk[..n]);
                        if boot_at.is_none()
                            && buf[from..]
                                .windows(marker.len())
                                .any(|w| w == marker.as_slice())
                        {
                            boot_at = Some(start.elapsed());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        (buf, boot_at)
    });
    let stderr = child.stderr.take();
    let err_thread = thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut e) = stderr {
            let _ = e.by_ref().take(1 << 20).read_to_end(&mut s);
            // Drain the rest so QEMU never blocks on a full pipe.
            let _ = std::io::copy(&mut e, &mut std::io::sink());
        }
        String::from_utf8_lossy(&s).into_owned()
    });

    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => log::warn!("waiting for QEMU: {e}"),
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            if let Err(e) = child.kill() {
                log::warn!("killing QEMU: {e}");
            }
            break child.wait().ok();
        }
        thread::sleep(Duration::from_millis(20));
    };
    let duration = start.elapsed();
    let (raw_serial, boot_at) = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let raw_kmsg = kmsg_log
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    Ok(Outcome {
        raw_serial,
        raw_kmsg,
        stderr,
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        boot_at,
        duration,
        timed_out,
    })
}

/// Whether `/dev/kvm` exists and can be opened read-write.
fn kvm_device_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Per-process cache of the KVM verdict for [`Accel::Auto`].
static KVM_VERDICT: Mutex<Option<bool>> = Mutex::new(None);

/// Decides whether `accel` means KVM. For [`Accel::Auto`] this boots `probe`
/// once per process (a tiny VM that must print a marker within 15 s under
/// KVM) and caches the answer.
pub(crate) fn use_kvm(accel: Accel, probe: impl FnOnce() -> bool) -> bool {
    match accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => {
            // Hold the lock during the probe so concurrent callers wait for
            // one verdict instead of probing in parallel.
            let mut guard = match KVM_VERDICT.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(v) = *guard {
                return v;
            }
            let verdict = kvm_device_usable() && probe();
            log::info!(
                "accel auto: {}",
                if verdict {
                    "KVM works"
                } else {
                    "falling back to TCG"
                }
            );
            *guard = Some(verdict);
            verdict
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(firmware: Option<&Firmware>) -> Vec<String> {
        launch_for(Arch::X86_64, firmware)
    }

    fn launch_for(arch: Arch, firmware: Option<&Firmware>) -> Vec<String> {
        Launch {
            qemu: Path::new("qemu"),
            arch,
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            firmware,
            kmsg_log: Some(Path::new("/run/kmsg.log")),
            append: "console=ttyS0 quiet".into(),
            memory_mb: 512,
            smp: 2,
            kvm: false,
            timeout: Duration::from_secs(1),
            echo: false,
        }
        .args()
    }

    fn has_pair(args: &[String], a: &str, b: &str) -> bool {
        args.windows(2).any(|w| w[0] == a && w[1] == b)
    }

    #[test]
    fn direct_boot_passes_kernel_initrd_and_command_line() {
        let a = launch(None);
        assert!(has_pair(&a, "-kernel", "/k"));
        assert!(has_pair(&a, "-initrd", "/i"));
        assert!(has_pair(&a, "-append", "console=ttyS0 quiet"));
        assert!(!a.iter().any(|x| x.contains("pflash")));
    }

    #[test]
    fn x86_64_has_a_second_serial_port_for_the_kernel_log() {
        let a = launch(None);
        assert!(has_pair(&a, "-serial", "stdio"));
        assert!(has_pair(&a, "-serial", "file:/run/kmsg.log"));
        assert!(has_pair(&a, "-cpu", "max"));
        assert!(!a.iter().any(|x| x == "virt"));
    }

    #[test]
    fn aarch64_boots_virt_with_fast_pointer_authentication() {
        let a = launch_for(Arch::Aarch64, None);
        assert!(has_pair(&a, "-machine", "virt"));
        assert!(has_pair(&a, "-cpu", "max,pauth-impdef=on"));
        assert!(has_pair(&a, "-accel", "tcg,thread=single"));
        assert!(has_pair(&a, "-kernel", "/k"));
        assert!(has_pair(&a, "-initrd", "/i"));
        // virt has one UART: the console, and no second -serial.
        assert_eq!(a.iter().filter(|x| *x == "-serial").count(), 1);
        assert!(has_pair(&a, "-serial", "stdio"));
        assert!(!has_pair(&a, "-cpu", "max"));
    }

    #[test]
    fn qemu_program_per_architecture() {
        assert_eq!(Arch::X86_64.qemu_program(), "qemu-system-x86_64");
        assert_eq!(Arch::Aarch64.qemu_program(), "qemu-system-aarch64");
        assert_eq!(Arch::Aarch64.qemu_package(), "qemu-system-arm");
    }

    #[test]
    fn secure_boot_boots_firmware_from_the_esp() {
        let fw = Firmware {
            code: "/fw/CODE.fd".into(),
            vars: "/run/VARS.fd".into(),
            esp: "/run/esp.img".into(),
        };
        let a = launch(Some(&fw));
        assert!(has_pair(&a, "-machine", "q35,smm=on"));
        assert!(has_pair(
            &a,
            "-global",
            "driver=cfi.pflash01,property=secure,value=on"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "if=pflash,format=raw,unit=1,file=/run/VARS.fd"
        ));
        assert!(has_pair(
            &a,
            "-drive",
            "if=virtio,format=raw,file=/run/esp.img"
        ));
        // The kernel, initramfs and command line travel on the ESP.
        for flag in ["-kernel", "-initrd", "-append"] {
            assert!(!a.iter().any(|x| x == flag), "{flag} in {a:?}");
        }
        // Console capture and the single TCG thread are unchanged.
        assert!(has_pair(&a, "-serial", "stdio"));
        assert!(has_pair(&a, "-accel", "tcg,thread=single"));
    }
}
