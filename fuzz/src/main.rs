//! `kmlink-fuzz`: run kmlink's fuzz targets (see docs/fuzzing.md).
//!
//! ```text
//! kmlink-fuzz [--budget SECONDS | --execs N] [--dir DIR] [--seed N]
//!             [--mem-mb N] [--timeout SECONDS] [--scratch DIR] [TARGET...]
//! kmlink-fuzz --list
//! kmlink-fuzz --replay TARGET FILE...
//! ```
//! Prints one tab-separated line per target: name, executions, corpus
//! size, edges (0 without coverage instrumentation), findings, seconds.
//! Exits 1 when any target has a finding.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kmlink_fuzz::engine::{self, Budget, Dirs};
use kmlink_fuzz::{guard, targets};

fn usage() -> ExitCode {
    eprintln!(
        "usage: kmlink-fuzz [--budget SECONDS | --execs N] [--dir DIR] [--seed N] [--mem-mb N] [--timeout SECONDS] [--scratch DIR] [TARGET...]\n       kmlink-fuzz --list\n       kmlink-fuzz --replay TARGET FILE..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut budget = Budget::Time(Duration::from_secs(60));
    let mut dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/kmlink/fuzz");
    let mut seed = 0u64;
    let mut mem_mb = 4096u64;
    let mut timeout = 20u64;
    let mut names = Vec::new();
    let mut scratch_root: Option<PathBuf> = None;
    let mut i = 0;
    let all = targets();
    while i < args.len() {
        let a = args[i].as_str();
        let mut val = || {
            i += 1;
            args.get(i).cloned()
        };
        match a {
            "--list" => {
                for t in &all {
                    println!("{}\t{}", t.name, t.what);
                }
                return ExitCode::SUCCESS;
            }
            "--replay" => return replay(&args[i + 1..]),
            "--budget" => match val().and_then(|v| v.parse().ok()) {
                Some(s) => budget = Budget::Time(Duration::from_secs(s)),
                None => return usage(),
            },
            "--execs" => match val().and_then(|v| v.parse().ok()) {
                Some(n) => budget = Budget::Execs(n),
                None => return usage(),
            },
            "--dir" => match val() {
                Some(d) => dir = PathBuf::from(d),
                None => return usage(),
            },
            "--scratch" => match val() {
                Some(d) => scratch_root = Some(PathBuf::from(d)),
                None => return usage(),
            },
            "--seed" => match val().and_then(|v| v.parse().ok()) {
                Some(n) => seed = n,
                None => return usage(),
            },
            "--mem-mb" => match val().and_then(|v| v.parse().ok()) {
                Some(n) => mem_mb = n,
                None => return usage(),
            },
            "--timeout" => match val().and_then(|v| v.parse().ok()) {
                Some(n) => timeout = n,
                None => return usage(),
            },
            s if s.starts_with('-') => return usage(),
            s => names.push(s.to_owned()),
        }
        i += 1;
    }
    for n in &names {
        if !all.iter().any(|t| t.name == n) {
            eprintln!("kmlink-fuzz: no target {n:?} (see --list)");
            return ExitCode::from(2);
        }
    }
    if seed == 0 {
        seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    }
    if let Err(e) = guard::limit_memory(mem_mb << 20) {
        eprintln!("kmlink-fuzz: cannot limit memory: {e}");
        return ExitCode::from(2);
    }
    let scratch = scratch_root
        .unwrap_or_else(|| dir.clone())
        .join(format!("kmlink-fuzz-scratch-{}", std::process::id()));
    kmlink_fuzz::targets::set_scratch(scratch.clone());
    engine::silence_panics();
    let mut any = false;
    for t in all
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
    {
        let dirs = Dirs::new(&dir, t.name);
        let _ = std::fs::create_dir_all(&dirs.findings);
        let _ = guard::install_crash_handler(
            &dirs.findings.join(format!("crash-{}", std::process::id())),
        );
        guard::start_watchdog(
            Duration::from_secs(timeout),
            dirs.findings.join(format!("hang-{}", std::process::id())),
        );
        let out = engine::fuzz(t, &dirs, budget, seed, &[]);
        println!(
            "{}\t{}\t{}\t{}\t{}\t{:.1}",
            t.name,
            out.execs,
            out.corpus,
            out.edges,
            out.findings.len(),
            out.elapsed.as_secs_f64()
        );
        for (msg, path) in &out.findings {
            any = true;
            eprintln!(
                "{}: panic: {} (input {})",
                t.name,
                msg.lines().next().unwrap_or(""),
                path.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if any {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(args: &[String]) -> ExitCode {
    let Some((name, files)) = args.split_first() else {
        return usage();
    };
    let all = targets();
    let Some(t) = all.iter().find(|t| t.name == name) else {
        eprintln!("kmlink-fuzz: no target {name:?} (see --list)");
        return ExitCode::from(2);
    };
    let mut bad = false;
    for f in files {
        match std::fs::read(f) {
            Ok(b) => match engine::run_one(t, &b) {
                Some(msg) => {
                    bad = true;
                    println!("{f}: panic: {msg}");
                }
                None => println!("{f}: ok"),
            },
            Err(e) => {
                bad = true;
                println!("{f}: cannot read: {e}");
            }
        }
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
