//! `kmlink vm`: boot a kernel in QEMU, optionally with a module, run a command.
//! An arm64 release boots in qemu-system-aarch64 with Debian's arm64
//! busybox (fetched verified and cached, see
//! [`kmlink_crawler::tools::busybox_arm64`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use kmlink_vm::{GuestFile, Source, VmSpec};

use crate::{kernels, FetchOpts};

/// Arguments of `kmlink vm`.
#[derive(Args, Debug)]
pub struct VmArgs {
    /// Kernel release to boot.
    #[arg(long)]
    pub kernel: String,
    /// Module to insert before the command and remove after it.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Wall-clock limit in seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Extra file for the guest: HOST_PATH[:GUEST_PATH] (default guest path:
    /// /<file name>; executable if it is on the host). Repeatable.
    #[arg(long = "file", value_name = "HOST[:GUEST]")]
    pub files: Vec<String>,
    /// Print the whole serial console, not just the command's output.
    #[arg(long)]
    pub serial: bool,
    /// Remove packages downloaded for the boot image from the cache again
    /// (for runs over many kernels).
    #[arg(long)]
    pub evict_packages: bool,
    #[command(flatten)]
    pub fetch: FetchOpts,
    /// Command to run in the guest (busybox sh).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Quotes a word for sh.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The guest architecture of a kernel release: the one its flavour names
/// (`-arm64`, `-cloud-amd64`, ...), else x86-64.
pub fn guest_arch(release: &str) -> kmlink_vm::Arch {
    kmlink_core_module::Arch::of_release(release)
        .and_then(|a| kmlink_vm::Arch::from_machine(a.machine()))
        .unwrap_or(kmlink_vm::Arch::X86_64)
}

/// The busybox a guest of `arch` runs: the host's for x86-64 (`None`: the
/// vm crate finds it), Debian's arm64 one for aarch64.
fn guest_busybox(arch: kmlink_vm::Arch, opts: &FetchOpts) -> Result<Option<PathBuf>> {
    match arch {
        kmlink_vm::Arch::X86_64 => Ok(None),
        kmlink_vm::Arch::Aarch64 => {
            let http = kmlink_crawler::Http::new().context("setting up HTTP")?;
            let origin = kernels::origin(opts)?;
            kmlink_crawler::tools::busybox_arm64(&http, &kernels::cache(opts), &origin)
                .map(Some)
                .context("fetching Debian's busybox-static for arm64 guests")
        }
    }
}

/// Runs `kmlink vm`.
pub fn run(args: VmArgs) -> Result<ExitCode> {
    let arch = guest_arch(&args.kernel);
    let busybox = guest_busybox(arch, &args.fetch)?;
    let vmlinuz = kernels::boot_image(&args.kernel, &args.fetch, args.evict_packages)?;
    let mut files = Vec::new();
    let mut script = String::new();
    let mut module_name = None;
    if let Some(ko) = &args.module {
        let bytes =
            kmlink_donor::ko::load(ko).with_context(|| format!("reading {}", ko.display()))?;
        let facts =
            kmlink_donor::ko::read(&bytes).with_context(|| format!("reading {}", ko.display()))?;
        let name = facts.name.unwrap_or_else(|| "kmlink".to_string());
        files.push(GuestFile {
            guest_path: "/module.ko".into(),
            contents: Source::Bytes(bytes),
            mode: 0o644,
        });
        script.push_str("insmod /module.ko || { echo 'kmlink vm: insmod failed' >&2; exit 97; }\n");
        module_name = Some(name);
    }
    for spec in &args.files {
        let (host, guest) = match spec.split_once(':') {
            Some((h, g)) => (PathBuf::from(h), g.to_string()),
            None => {
                let p = PathBuf::from(spec);
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (p, format!("/{name}"))
            }
        };
        let meta =
            std::fs::metadata(&host).with_context(|| format!("--file {}", host.display()))?;
        let mode = if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        files.push(GuestFile {
            guest_path: guest,
            contents: Source::Path(host),
            mode,
        });
    }
    let command: Vec<String> = args.command.iter().map(|w| sh_quote(w)).collect();
    script.push_str(&command.join(" "));
    script.push_str("\nrc=$?\n");
    if let Some(name) = &module_name {
        script.push_str(&format!(
            "rmmod {} || {{ echo 'kmlink vm: rmmod failed' >&2; exit 98; }}\n",
            sh_quote(name)
        ));
    }
    script.push_str("exit $rc\n");

    let mut spec = VmSpec::new(&vmlinuz, script);
    spec.files = files;
    spec.timeout = Duration::from_secs(args.timeout);
    spec.memory_mb = args.memory;
    spec.smp = args.smp;
    spec.arch = arch;
    spec.busybox = busybox;
    let result = kmlink_vm::run(&spec).with_context(|| format!("booting {}", args.kernel))?;
    if args.serial {
        print!("{}", result.serial);
    } else {
        print!("{}", result.output);
    }
    eprintln!(
        "kmlink vm: {}: boot {:.1}s, total {:.1}s, exit {:?}, taint {:?} -> {:?}{}",
        args.kernel,
        result.boot_time.as_secs_f64(),
        result.duration.as_secs_f64(),
        result.exit_status,
        result.taint_before,
        result.taint_after,
        if result.timed_out { ", TIMED OUT" } else { "" }
    );
    for p in &result.problems {
        eprintln!("kmlink vm: kernel problem: {}", p.line);
    }
    Ok(match result.check_clean() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if result.problems.is_empty() && !result.timed_out => ExitCode::from(
            result
                .exit_status
                .and_then(|s| u8::try_from(s).ok())
                .unwrap_or(1),
        ),
        Err(_) => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_names_the_guest_architecture() {
        use kmlink_vm::Arch;
        for (release, arch) in [
            ("6.1.0-47-amd64", Arch::X86_64),
            ("6.1.0-47-cloud-amd64", Arch::X86_64),
            ("6.12.38+deb13-rt-amd64", Arch::X86_64),
            ("6.1.0-47-arm64", Arch::Aarch64),
            ("6.1.0-47-cloud-arm64", Arch::Aarch64),
            ("7.3.4+deb13-arm64-16k", Arch::Aarch64),
            // Releases of no known flavour boot as before.
            ("6.8.0-31-generic", Arch::X86_64),
        ] {
            assert_eq!(guest_arch(release), arch, "{release}");
        }
    }
}
