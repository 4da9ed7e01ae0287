//! Time pulling vmlinuz + config + one module out of a kernel image package:
//! the crawler's streaming extraction next to `dpkg-deb -x` of the same file.
//!
//! ```text
//! cargo run --release -p kmlink-crawler --example bench_extract -- \
//!     [DEB] [--release 6.1.0-47-amd64] [--module kernel/fs/ext4/ext4.ko] [--runs 3]
//! ```
//!
//! DEB defaults to the cached 6.1.0-47 unsigned image
//! (`<cache>/debs/cb9a263a…`). Every method runs `--runs` times, in
//! turns, each into a fresh temporary directory; min and median are printed.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use kmlink_crawler::cache::Cache;
use kmlink_crawler::deb;

const DEFAULT_DEB: &str = "cb9a263a6d0d2debe8ac20eadc1065ffb8b22d27f4a6471ac1c0314db341dfb0";

/// CPU seconds used so far by this process plus its waited-for children
/// (`/proc/self/stat` utime + stime + cutime + cstime, in clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`; utime is field 14 overall, i.e. index 11 here.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks: u64 = f.get(11..15).map_or(0, |v| v.iter().sum());
    ticks as f64 / 100.0
}

fn run() -> Result<(), String> {
    let mut debp = Cache::new(Cache::default_root())
        .debs_dir()
        .join(DEFAULT_DEB);
    let mut release = "6.1.0-47-amd64".to_owned();
    let mut module = "kernel/fs/ext4/ext4.ko".to_owned();
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--release" => release = args.next().ok_or("--release needs a value")?,
            "--module" => module = args.next().ok_or("--module needs a value")?,
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            _ => debp = PathBuf::from(a),
        }
    }
    let size = std::fs::metadata(&debp)
        .map_err(|e| format!("{}: {e}", debp.display()))?
        .len();
    let wanted = [
        format!("boot/vmlinuz-{release}"),
        format!("boot/config-{release}"),
        format!("lib/modules/{release}/{module}"),
    ];
    let wanted_ref: Vec<&str> = wanted.iter().map(String::as_str).collect();
    println!("package : {} ({size} bytes)", debp.display());
    println!("wanted  : {}", wanted.join(", "));

    type Method<'a> = (
        &'a str,
        Box<dyn Fn(&std::path::Path) -> Result<usize, String> + 'a>,
    );
    let methods: Vec<Method> = vec![
        (
            "crawler deb::extract_paths (stops when all found)",
            Box::new(|dest| {
                deb::extract_paths(&debp, dest, &wanted_ref)
                    .map(|v| v.len())
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "crawler deb::extract (whole stream, 3 files written)",
            Box::new(|dest| {
                deb::extract(&debp, dest, &mut |p| wanted_ref.contains(&p))
                    .map(|v| v.len())
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "dpkg-deb -x (whole package written)",
            Box::new(|dest| {
                let st = Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&debp)
                    .arg(dest)
                    .status()
                    .map_err(|e| format!("dpkg-deb: {e}"))?;
                if !st.success() {
                    return Err(format!("dpkg-deb -x: {st}"));
                }
                Ok(wanted.iter().filter(|w| dest.join(w).is_file()).count())
            }),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for _ in 0..runs {
        for (i, (name, f)) in methods.iter().enumerate() {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let c = cpu_seconds();
            let t = Instant::now();
            let n = f(tmp.path())?;
            let el = t.elapsed();
            cpu[i].push(cpu_seconds() - c);
            if n != 3 {
                return Err(format!("{name}: found {n} of 3 files"));
            }
            times[i].push(el);
        }
    }
    println!("runs    : {runs} (interleaved; page cache warm after the first)");
    for (i, (name, _)) in methods.iter().enumerate() {
        let t = &mut times[i];
        t.sort();
        let c = &mut cpu[i];
        c.sort_by(f64::total_cmp);
        println!(
            "{:<55} wall min {:>7.2?} median {:>7.2?}   cpu min {:>5.2}s median {:>5.2}s",
            name,
            t[0],
            t[t.len() / 2],
            c[0],
            c[c.len() / 2]
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_extract: {e}");
            ExitCode::FAILURE
        }
    }
}
