//! `kmlink crawler`: discover, fetch and ingest kernel packages. The work is
//! in `kmlink_crawler`; this module parses arguments and prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Distro, KernelInfo, Origin};
use kmlink_crawler::pinned::{self, PinnedKernel};
use kmlink_crawler::sources::{self, Mirrors};
use kmlink_crawler::{ingest, Http};

/// Arguments of `kmlink crawler`.
#[derive(Args, Debug)]
pub struct CrawlerArgs {
    #[command(subcommand)]
    pub command: CrawlerCommand,
}

/// Where packages come from, whom to trust, where they are kept.
#[derive(Args, Debug, Clone)]
pub struct SourceOpts {
    /// Distribution (ubuntu is experimental).
    #[arg(long, default_value = "debian", value_parser = parse_distro)]
    pub distro: Distro,
    /// Archive mirror base URL (repeatable); default: the host's apt sources.
    #[arg(long, value_name = "URL")]
    pub mirror: Vec<String>,
    /// Security mirror base URL for `*-security` suites (repeatable);
    /// default: the host's apt sources.
    #[arg(long, value_name = "URL")]
    pub security_mirror: Vec<String>,
    /// Keyring to verify InRelease signatures with; default: each apt
    /// source's Signed-By, else the distribution's archive keyring.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Cache directory (packages, verified indexes, unpacked kernels).
    #[arg(long, env = "KMLINK_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

fn parse_distro(s: &str) -> Result<Distro, String> {
    s.parse()
}

impl SourceOpts {
    fn cache(&self) -> Cache {
        Cache::new(self.cache.clone().unwrap_or_else(Cache::default_root))
    }

    fn origin(&self) -> Result<Origin> {
        let srcs =
            sources::host_sources(Path::new("/")).context("reading the host's apt sources")?;
        let mut o = Origin::from_sources(self.distro, &srcs);
        if !self.mirror.is_empty() {
            o.mirrors.archive = trimmed(&self.mirror);
        }
        if !self.security_mirror.is_empty() {
            o.mirrors.security = trimmed(&self.security_mirror);
        }
        if let Some(k) = &self.keyring {
            o.keyrings.clear();
            o.default_keyring = k.clone();
        }
        if o.mirrors.archive.is_empty() && o.mirrors.security.is_empty() {
            bail!(
                "no {} mirror in the host's apt sources; pass --mirror URL",
                self.distro
            );
        }
        Ok(o)
    }
}

fn trimmed(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect()
}

/// `kmlink crawler` subcommands.
#[derive(Subcommand, Debug)]
pub enum CrawlerCommand {
    /// List the kernels in the archives (InRelease signatures and index
    /// hashes verified).
    ///
    /// One row per kernel release; a release in several suites is shown
    /// once (the newest build), with the other suites in brackets.
    ///
    /// Examples:
    ///   kmlink crawler list --distro debian
    ///   kmlink crawler list --suite trixie-backports --flavour cloud-amd64
    ///   kmlink crawler list --json > kernels.json
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Fetch (verified) and unpack kernels found by discovery, or ingested.
    ///
    /// Examples:
    ///   kmlink crawler fetch 6.1.0-47-amd64
    ///   kmlink crawler fetch --jobs 4 7.3.4+deb13-amd64 6.12.107+deb13-amd64
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),
    /// Put local packages (e.g. from `apt-get download`) into the cache, so
    /// their kernels can be unpacked without network.
    ///
    /// Examples:
    ///   kmlink crawler ingest linux-image-6.1.0-47-amd64-unsigned_6.1.170-3_amd64.deb
    ///   kmlink crawler ingest *.deb && kmlink crawler fetch 6.1.0-47-amd64
    #[command(verbatim_doc_comment)]
    Ingest(IngestArgs),
}

/// Arguments of `kmlink crawler list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Suites to read (repeatable); default: all of the distribution's.
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Only this flavour (`amd64`, `cloud-amd64`, `rt-amd64`, `generic`...).
    #[arg(long)]
    pub flavour: Option<String>,
    /// One row per suite and release instead of one per release.
    #[arg(long)]
    pub per_suite: bool,
    /// JSON output (an array of kernels, with their packages).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: SourceOpts,
}

/// Arguments of `kmlink crawler fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Kernel releases (`uname -r`).
    #[arg(required = true, value_name = "RELEASE")]
    pub releases: Vec<String>,
    /// Parallel downloads.
    #[arg(long, short, default_value_t = 4)]
    pub jobs: usize,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: SourceOpts,
}

/// Arguments of `kmlink crawler ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// `.deb` files.
    #[arg(required = true, value_name = "FILE.deb")]
    pub files: Vec<PathBuf>,
    /// Cache directory.
    #[arg(long, env = "KMLINK_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kmlink crawler`.
pub fn run(args: CrawlerArgs) -> Result<ExitCode> {
    match args.command {
        CrawlerCommand::List(a) => list(a),
        CrawlerCommand::Fetch(a) => fetch(a),
        CrawlerCommand::Ingest(a) => ingest_cmd(a),
    }
}

#[derive(serde::Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a KernelInfo,
    packages: &'a [kmlink_crawler::index::PackageEntry],
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let origin = a.source.origin()?;
    let cache = a.source.cache();
    let http = Http::new().context("setting up HTTP")?;
    let d = discover::discover(&http, Some(&cache), &origin, &a.suites);
    for (suite, e) in &d.errors {
        eprintln!("kmlink: suite {suite} skipped: {e}");
    }
    let per_suite = d.kernels.len();
    let mut kernels = if a.per_suite {
        d.kernels
    } else {
        discover::merge(d.kernels)
    };
    if let Some(f) = &a.flavour {
        kernels.retain(|k| &k.1.flavour == f);
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let rows: Vec<Row> = kernels
            .iter()
            .map(|(p, i)| Row {
                info: i,
                packages: &p.packages,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &kernels)?;
    }
    let mut by_suite: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, i) in &kernels {
        *by_suite.entry(i.suite.as_str()).or_default() += 1;
    }
    eprintln!(
        "{} kernels ({} suite entries before merging; {} suite(s) failed)",
        kernels.len(),
        per_suite,
        d.errors.len()
    );
    Ok(if d.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(out: &mut impl Write, kernels: &[(PinnedKernel, KernelInfo)]) -> Result<()> {
    let rows: Vec<[String; 7]> = kernels
        .iter()
        .map(|(_, i)| {
            let suite = if i.also_in.is_empty() {
                i.suite.clone()
            } else {
                format!("{} (+{})", i.suite, i.also_in.join(","))
            };
            let mut notes = Vec::new();
            if i.signed {
                notes.push("signed".to_owned());
            }
            if !i.missing.is_empty() {
                notes.push(format!("gone: {}", i.missing.join(",")));
            }
            [
                i.release.clone(),
                suite,
                i.flavour.clone(),
                i.version.clone(),
                format!("{:?}", i.layout).to_lowercase(),
                if i.symvers.is_some() { "yes" } else { "no" }.to_owned(),
                notes.join("; "),
            ]
        })
        .collect();
    let head = [
        "RELEASE", "SUITE", "FLAVOUR", "VERSION", "LAYOUT", "SYMVERS", "NOTES",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn fetch(a: FetchArgs) -> Result<ExitCode> {
    let origin = a.source.origin()?;
    let cache = a.source.cache();
    let http = Http::new().context("setting up HTTP")?;
    let mut trees = Vec::new();
    let wanted: Vec<&str> = a.releases.iter().map(String::as_str).collect();
    let found = discover::find_kernels(&http, &cache, &origin, &wanted)
        .context("looking for the kernels")?;
    for (rel, found) in a.releases.iter().zip(found) {
        let Some((pin, info)) = found else {
            bail!(
                "kernel {rel} is in no {} suite ({}) and was not ingested",
                origin.distro,
                origin.distro.default_suites().join(", ")
            );
        };
        if !std::io::stderr().is_terminal() {
            eprintln!(
                "kmlink: {rel}: {} from {} ({} packages, {} bytes)",
                info.version,
                info.suite,
                pin.packages.len(),
                info.download_size
            );
        }
        let mirrors = Mirrors {
            archive: origin.mirrors.archive.clone(),
            security: origin.mirrors.security.clone(),
        };
        let tree = pinned::materialize_with(&cache, &http, &mirrors, &pin, a.jobs)
            .with_context(|| format!("fetching and unpacking {rel}"))?;
        trees.push((info, tree));
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let v: Vec<serde_json::Value> = trees
            .iter()
            .map(|(i, t)| {
                serde_json::json!({
                    "kernel": i,
                    "root": t.root,
                    "vmlinuz": t.vmlinuz,
                    "config": t.config,
                    "modules_dir": t.modules_dir,
                    "symvers": t.symvers,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        for (i, t) in &trees {
            let opt =
                |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
            writeln!(out, "{} ({} {})", t.release, i.suite, i.version)?;
            writeln!(out, "  vmlinuz     {}", t.vmlinuz.display())?;
            writeln!(out, "  config      {}", opt(&t.config))?;
            writeln!(out, "  modules_dir {}", t.modules_dir.display())?;
            writeln!(out, "  symvers     {}", opt(&t.symvers))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ingest_cmd(a: IngestArgs) -> Result<ExitCode> {
    let cache = Cache::new(a.cache.clone().unwrap_or_else(Cache::default_root));
    let mut done = Vec::new();
    let mut failed = 0;
    for f in &a.files {
        match ingest::ingest(&cache, f) {
            Ok(i) => done.push(i),
            Err(e) => {
                eprintln!("kmlink: {e}");
                failed += 1;
            }
        }
    }
    let kernels = ingest::local_kernels(&cache).context("reading the local index")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "ingested": done,
                "kernels": kernels.iter().map(|k| &k.1).collect::<Vec<_>>(),
            }),
        )?;
        writeln!(out)?;
    } else {
        for i in &done {
            let k = i
                .kernel
                .as_ref()
                .map_or("not a kernel package".to_owned(), |(r, role)| {
                    format!("{role} of kernel {r}")
                });
            writeln!(
                out,
                "{}: {} {} ({k}) -> {}",
                i.path.display(),
                i.entry.package,
                i.entry.version,
                i.entry.sha256
            )?;
        }
        let mine: Vec<&KernelInfo> = kernels
            .iter()
            .map(|k| &k.1)
            .filter(|k| {
                done.iter()
                    .any(|d| d.kernel.as_ref().is_some_and(|(r, _)| *r == k.release))
            })
            .collect();
        for k in mine {
            let parts = [
                ("vmlinuz", Some(&k.vmlinuz)),
                ("config", k.config.as_ref()),
                ("modules", k.modules.as_ref()),
                ("symvers", k.symvers.as_ref()),
            ];
            let have: Vec<String> = parts
                .iter()
                .map(|(n, p)| format!("{n}: {}", p.map_or("-", |s| s.as_str())))
                .collect();
            writeln!(out, "kernel {} (local): {}", k.release, have.join(", "))?;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
