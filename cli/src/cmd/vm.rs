//! `kmlink vm`: boot a kernel in QEMU, optionally with a module, run a command.

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

/// Runs `kmlink vm`.
pub fn run(args: VmArgs) -> Result<ExitCode> {
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
