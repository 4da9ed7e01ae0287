//! The `kmlink` command: orchestration only; the work is in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod cmd;
#[cfg(test)]
mod deploy_tests;
mod kernels;
mod progress;

/// kmlink: a kernel memory-allocation monitor, compiled once, linked for any
/// Linux kernel without a compiler or headers on the host.
#[derive(Parser)]
#[command(name = "kmlink", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

/// Where packages come from and are kept.
#[derive(Args, Clone, Debug)]
pub struct FetchOpts {
    /// Cache directory for downloaded packages and unpacked kernels.
    #[arg(long, env = "KMLINK_CACHE")]
    pub cache: Option<PathBuf>,
    /// Archive mirror base URL (repeatable); default: the host's apt sources.
    #[arg(long)]
    pub mirror: Vec<String>,
    /// Use suites whose signed Release has expired (Valid-Until passed: a
    /// stale or replayed mirror); refused by default, as apt does.
    #[arg(long, env = "KMLINK_ALLOW_EXPIRED")]
    pub allow_expired: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Link the monitor for one kernel release.
    ///
    /// Examples:
    ///   kmlink build --kernel 6.1.0-47-amd64 --from-packages -o kmlink.ko
    ///   kmlink build --kernel 6.12.107+deb13-amd64 --from-packages --check
    ///   kmlink build --kernel 6.1.0-47-amd64 --sign-key mok.key --sign-cert mok.der -o kmlink.ko
    #[command(verbatim_doc_comment)]
    Build(cmd::build::BuildArgs),
    /// Boot a kernel in QEMU (optionally with a module inserted) and run a command in it.
    ///
    /// Examples:
    ///   kmlink vm --kernel 6.1.0-47-amd64 -- cat /proc/version
    ///   kmlink vm --kernel 6.1.0-47-amd64 --module kmlink.ko -- cat /proc/kmlink/stats
    #[command(verbatim_doc_comment)]
    Vm(cmd::vm::VmArgs),
    /// Discover, fetch and unpack kernel packages from Debian and Ubuntu archives.
    ///
    /// Examples:
    ///   kmlink crawler list --distro debian
    ///   kmlink crawler refresh --release '6.1.0-4?-amd64'
    #[command(verbatim_doc_comment)]
    Crawler(cmd::crawler::CrawlerArgs),
    /// Inspect and verify the kernel record store.
    ///
    /// Examples:
    ///   kmlink db list
    ///   kmlink db verify
    #[command(verbatim_doc_comment)]
    Db(cmd::db::DbArgs),
    /// Export or install a verified single-file bundle of kernel records.
    ///
    /// Examples:
    ///   kmlink bundle export -o kernels.kmb
    ///   kmlink bundle install kernels.kmb
    #[command(verbatim_doc_comment)]
    Bundle(cmd::bundle::BundleArgs),
    /// Build the monitor for the running kernel (cached) and insert it.
    ///
    /// Examples:
    ///   kmlink load                          # as root (CAP_SYS_MODULE)
    ///   kmlink load --backend kprobe
    ///   kmlink load --from-host --rebuild
    #[command(verbatim_doc_comment)]
    Load(cmd::load::LoadArgs),
    /// Remove the monitor from the running kernel.
    ///
    /// Examples:
    ///   kmlink unload                        # as root
    #[command(verbatim_doc_comment)]
    Unload(cmd::load::UnloadArgs),
    /// Live terminal view of the monitor: per process and per cache.
    Top(cmd::top::TopArgs),
    /// The monitor's aggregates, scriptable (text or JSON).
    Stats(cmd::stats::StatsArgs),
    /// The monitor's recent events, scriptable (text or JSON).
    Events(cmd::events::EventsArgs),
    /// The monitor's aggregates for Prometheus: an HTTP /metrics endpoint
    /// or node_exporter textfile-collector files.
    Exporter(cmd::exporter::ExporterArgs),
    /// Flame graph (SVG) or folded stacks of the sampled allocation stacks
    /// (a monitor linked with --set stacks=N).
    Flame(cmd::flame::FlameArgs),
    /// Memory outstanding by allocating call site: leak candidates, oldest first.
    Leaks(cmd::leaks::LeaksArgs),
    /// Explain whether and why this host can load the monitor.
    ///
    /// Examples:
    ///   kmlink doctor
    ///   kmlink doctor --db ~/records.db
    #[command(verbatim_doc_comment)]
    Doctor(cmd::doctor::DoctorArgs),
    /// Sign a module file, attach a signature made elsewhere, or show a
    /// module's signature.
    ///
    /// Examples:
    ///   kmlink sign kmlink.ko --sign-key /var/lib/kmlink/keys/kmlink-signing.key --sign-cert /var/lib/kmlink/keys/kmlink-signing.der
    ///   kmlink sign kmlink.ko --emit-digest kmlink.ko.sha256
    ///   kmlink sign kmlink.ko --attach-signature kmlink.ko.sig --sign-cert mok.der
    ///   kmlink sign --show kmlink.ko --sign-cert mok.der
    #[command(verbatim_doc_comment)]
    Sign(cmd::sign::SignArgs),
    /// The module signing key: generate it, enrol it as a Machine Owner
    /// Key, and ask whether the running kernel trusts it.
    ///
    /// Examples:
    ///   kmlink key generate
    ///   kmlink key enroll
    ///   kmlink key status
    #[command(verbatim_doc_comment)]
    Key(cmd::key::KeyArgs),
    /// Whether the monitor is loaded, from which module file, built from
    /// what and signed by whom; the prebuilt modules kept for each kernel.
    ///
    /// Examples:
    ///   kmlink status
    #[command(verbatim_doc_comment)]
    Status(cmd::system::StatusArgs),
    /// Kernel package hooks (run by /etc/kernel/postinst.d and postrm.d):
    /// link, check and sign the monitor for a kernel being installed; drop
    /// it when the kernel is removed. Never fails the package transaction.
    ///
    /// Examples:
    ///   kmlink hook postinst 6.12.57+deb13-amd64
    ///   kmlink hook postrm 6.1.0-47-amd64
    #[command(verbatim_doc_comment)]
    Hook(cmd::system::HookArgs),
    /// kmlink.service: load the monitor at boot (the prebuilt module when
    /// its inputs are unchanged, no relinking), unload it at stop.
    ///
    /// Examples:
    ///   kmlink service start
    ///   kmlink service stop
    #[command(verbatim_doc_comment)]
    Service(cmd::system::ServiceArgs),
    /// Packaging: write man pages or shell completions.
    #[command(hide = true)]
    Generate(cmd::system::GenerateArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Vm(args) => cmd::vm::run(args),
        Command::Crawler(args) => cmd::crawler::run(args),
        Command::Db(args) => cmd::db::run(args),
        Command::Bundle(args) => cmd::bundle::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Unload(args) => cmd::load::run_unload(args),
        Command::Top(args) => cmd::top::run(args),
        Command::Stats(args) => cmd::stats::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::Exporter(args) => cmd::exporter::run(args),
        Command::Flame(args) => cmd::flame::run(args),
        Command::Leaks(args) => cmd::leaks::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Key(args) => cmd::key::run(args),
        Command::Status(args) => cmd::system::run_status(args),
        Command::Hook(args) => cmd::system::run_hook(args),
        Command::Service(args) => cmd::system::run_service(args),
        Command::Generate(args) => {
            cmd::system::run_generate(args, <Cli as clap::CommandFactory>::command())
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("kmlink: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` into a closed pipe (`kmlink db list |
/// head`) would panic. A command-line tool should end quietly instead, as
/// C tools do: restore the default action. The one unsafe call in kmlink.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
