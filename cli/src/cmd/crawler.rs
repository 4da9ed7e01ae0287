//! `kmlink crawler`: discover, fetch and ingest kernel packages. The work is
//! in `kmlink_crawler`; this module parses arguments and prints.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_crawler::cache::Cache;
use kmlink_crawler::discover::{self, Arch, Distro, KernelInfo, Origin};
use kmlink_crawler::kernel_tree::{self, PinnedKernel};
use kmlink_crawler::refresh::{self, KernelRun};
use kmlink_crawler::sources::Mirrors;
use kmlink_crawler::{ingest, sweep, Http};
use kmlink_errors::Chain;
use kmlink_metadata_db::refresh::Outcome;

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
    /// Architecture whose kernels are listed (`amd64`, `arm64`; the
    /// `binary-<arch>` indexes are read); default: the host's.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
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
    /// Use suites whose signed Release has expired (Valid-Until passed: a
    /// stale or replayed mirror); refused by default, as apt does.
    #[arg(long, env = "KMLINK_ALLOW_EXPIRED")]
    pub allow_expired: bool,
}

fn parse_distro(s: &str) -> Result<Distro, String> {
    s.parse()
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

impl SourceOpts {
    fn cache(&self) -> Cache {
        crate::kernels::cache_at(self.cache.clone())
    }

    fn origin(&self) -> Result<Origin> {
        crate::kernels::origin_of(&crate::kernels::OriginSpec {
            distro: self.distro,
            arch: self.arch,
            mirror: &self.mirror,
            security_mirror: &self.security_mirror,
            keyring: self.keyring.as_deref(),
            allow_expired: self.allow_expired,
        })
    }
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
    /// Fill the record store from every kernel in the archives: discover,
    /// skip kernels already stored from the same packages, download the
    /// others (verified), unpack only what extraction needs (vmlinuz,
    /// config, Module.symvers, a few stock modules) into a temporary
    /// directory, extract the record for the current core, store it with
    /// its compressed BTF, then remove the temporary files and the
    /// downloaded packages.
    ///
    /// A kernel that fails is reported and skipped. Progress goes to
    /// stderr, the summary to stdout; the exit status is non-zero only when
    /// kernels failed and none could be stored.
    ///
    /// Examples:
    ///   kmlink crawler refresh --distro debian --jobs 2
    ///   kmlink crawler refresh --suite trixie-backports --release '7.*' --flavour amd64
    ///   kmlink crawler refresh --release '6.1.0-4?-amd64' --keep-debs --report out.json
    ///   kmlink crawler refresh --shard 0/4 --bundle-out shard-0.kmb --sign-key publisher.key
    #[command(verbatim_doc_comment)]
    Refresh(RefreshArgs),
}

/// Arguments of `kmlink crawler refresh`.
#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// Suites to read (repeatable); default: all of the distribution's.
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Only releases matching this glob (`*`, `?`; repeatable).
    #[arg(long = "release", value_name = "GLOB")]
    pub releases: Vec<String>,
    /// Only this flavour (`amd64`, `cloud-amd64`, `rt-amd64`...).
    #[arg(long)]
    pub flavour: Option<String>,
    /// Kernels processed at a time (each also downloads its packages in
    /// parallel).
    #[arg(long, short, default_value_t = 2)]
    pub jobs: usize,
    /// The record store (default: $KMLINK_DB, else
    /// ~/.local/share/kmlink/records.db).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Keep the downloaded packages in the cache (default: each kernel's
    /// are removed once it is extracted; packages cached before are kept).
    #[arg(long)]
    pub keep_debs: bool,
    /// Do not start a kernel when less than this many GiB are free where
    /// the cache is.
    #[arg(long, default_value_t = 15, value_name = "GIB")]
    pub min_free: u64,
    /// Also write a JSON report (one entry per kernel: outcome, reason,
    /// bytes downloaded, times).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Only list what would be fetched.
    #[arg(long)]
    pub dry_run: bool,
    /// Extract kernels again even when a record made from the same
    /// packages is stored (it is replaced), e.g. after an extractor fix.
    #[arg(long)]
    pub force: bool,
    /// Only shard I of N (`I/N`, 0 <= I < N): the kernels whose identity
    /// (architecture and release) hashes to I. N jobs given 0/N .. N-1/N
    /// take every kernel exactly once, whatever order discovery lists
    /// them in (docs/crawler.md, "A crawl that scales out").
    #[arg(long, value_name = "I/N")]
    pub shard: Option<kmlink_crawler::shard::Shard>,
    /// Also write the records of the kernels this run selected (every
    /// stored build of each) as a bundle; `kmlink bundle merge` combines
    /// the shards' bundles. Written even when no kernel was selected.
    #[arg(long, value_name = "FILE")]
    pub bundle_out: Option<PathBuf>,
    /// Sign the --bundle-out bundle with this secret key (from `kmlink
    /// bundle keygen`).
    #[arg(long, value_name = "KEYFILE", requires = "bundle_out")]
    pub sign_key: Option<PathBuf>,
    /// Slim records in the --bundle-out bundle (what the core of the
    /// crawled architecture needs, as `bundle export --slim`).
    #[arg(long, requires = "bundle_out")]
    pub slim: bool,
    #[command(flatten)]
    pub source: SourceOpts,
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
        CrawlerCommand::Refresh(a) => refresh_cmd(a),
    }
}

#[derive(serde::Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a KernelInfo,
    packages: &'a [kmlink_crawler::index::PackageEntry],
}

/// Discovers the kernels of `suites`, saying which suites were skipped.
fn scan(http: &Http, cache: &Cache, origin: &Origin, suites: &[String]) -> discover::Discovery {
    let d = discover::discover(http, Some(cache), origin, suites);
    for (suite, e) in &d.errors {
        eprintln!("kmlink: suite {suite} skipped: {}", Chain(e));
    }
    d
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let origin = a.source.origin()?;
    let cache = a.source.cache();
    let http = Http::new().context("setting up HTTP")?;
    let d = scan(&http, &cache, &origin, &a.suites);
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

/// Remove what runs killed mid-way left in `cache` (temporary kernel
/// trees, partial downloads), saying what on stderr.
fn sweep_leftovers(cache: &Cache) {
    let mut report = |l: &sweep::Leftover| {
        eprintln!(
            "kmlink: removed {} ({} bytes), left by a run that died",
            l.path.display(),
            l.bytes
        )
    };
    if let Err(e) = sweep::sweep(cache, &mut report) {
        eprintln!(
            "kmlink: warning: cleaning up after dead runs: {}",
            Chain(&e)
        );
    }
}

fn fetch(a: FetchArgs) -> Result<ExitCode> {
    let mut origin = a.source.origin()?;
    // Without --arch, releases that all name one architecture (Debian's
    // flavours do) are looked for in its indexes.
    if a.source.arch.is_none() {
        let arches: Vec<Option<Arch>> = a
            .releases
            .iter()
            .map(|r| discover::release_arch(r))
            .collect();
        if let Some(Some(first)) = arches.first() {
            if arches.iter().all(|x| *x == Some(*first)) {
                origin.arch = *first;
            }
        }
    }
    let cache = a.source.cache();
    sweep_leftovers(&cache);
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
        let tree = kernel_tree::materialize_with(&cache, &http, &mirrors, &pin, a.jobs)
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
    let cache = crate::kernels::cache_at(a.cache.clone());
    sweep_leftovers(&cache);
    let mut done = Vec::new();
    let mut failed = 0;
    for f in &a.files {
        match ingest::ingest(&cache, f) {
            Ok(i) => done.push(i),
            Err(e) => {
                eprintln!("kmlink: {}", Chain(&e));
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

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Says a refresh's progress on stderr, one line per event.
struct RefreshLines;

impl refresh::Listener for RefreshLines {
    fn suite_skipped(&self, suite: &str, error: &kmlink_crawler::Error) {
        eprintln!("kmlink: suite {suite} skipped: {}", Chain(error));
    }

    fn sharded(&self, shard: kmlink_crawler::shard::Shard, mine: usize, of: usize) {
        eprintln!(
            "kmlink: shard {shard}: {mine} of {of} kernels (by a hash of architecture and release)"
        );
    }

    fn planned(&self, kernels: usize, bytes: u64, store: &Path) {
        eprintln!(
            "kmlink: {kernels} kernels ({:.1} GiB of packages before skipping stored ones); store {}",
            mib(bytes) / 1024.0,
            store.display()
        );
    }

    fn fetching(&self, pin: &PinnedKernel, info: &KernelInfo) {
        eprintln!(
            "kmlink: {}: fetching {} package(s), {:.0} MiB ({} {})",
            info.release,
            pin.packages.len(),
            mib(info.download_size),
            info.suite,
            info.version
        );
    }

    fn finished(&self, done: usize, total: usize, o: &Outcome, run: Option<&KernelRun>) {
        let line = match o {
            Outcome::Stored {
                key,
                took,
                extracting,
            } => format!(
                "stored {} ({:.0} MiB downloaded, {:.1} s in all, extraction {:.1} s)",
                key.release,
                mib(run.map_or(0, |r| r.downloaded)),
                took.as_secs_f64(),
                extracting.as_secs_f64()
            ),
            Outcome::Unchanged { release } => format!("{release}: already stored"),
            Outcome::Unavailable { release, reason } => format!("unavailable {release}: {reason}"),
            Outcome::Failed { release, error } => format!("FAILED {release}: {error}"),
        };
        eprintln!("kmlink: [{done}/{total}] {line}");
    }
}

fn refresh_cmd(a: RefreshArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    let bundle_out =
        super::refresh_bundle::BundleOut::new(a.bundle_out.as_ref(), a.sign_key.as_ref(), a.slim)?;
    let origin = a.source.origin()?;
    let cache = a.source.cache();
    sweep_leftovers(&cache);
    let http = Http::new().context("setting up HTTP")?;
    let opts = refresh::RefreshOptions {
        suites: &a.suites,
        releases: &a.releases,
        flavour: a.flavour.as_deref(),
        shard: a.shard,
        db: a.db.as_deref(),
        jobs: a.jobs,
        keep_debs: a.keep_debs,
        min_free: a.min_free.saturating_mul(1 << 30),
        force: a.force,
        dry_run: a.dry_run,
    };
    let done = refresh::run(&http, &cache, &origin, &opts, &RefreshLines)?;
    let (Some(store), false) = (&done.store, done.kernels.is_empty()) else {
        // An empty shard of a crawl that found kernels is not a failure:
        // its job hands on an empty bundle.
        if let (Some(out), true, false) = (&bundle_out, done.matched > 0, a.dry_run) {
            println!("{}", out.write(None, &[], origin.arch)?);
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("kmlink: no kernel matches");
        return Ok(ExitCode::from(1));
    };
    let Some(report) = &done.report else {
        // --dry-run: what would be fetched.
        let mut out = std::io::stdout().lock();
        print_table(&mut out, &done.kernels)?;
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(path) = &a.report {
        let v: Vec<&KernelRun> = done.runs.values().collect();
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = report.failed();
    let unavailable = report.unavailable();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} kernels: {} stored, {} already stored, {} unavailable, {} failed; {:.1} GiB downloaded in {:.0} s",
        done.kernels.len(),
        report.stored(),
        report.unchanged(),
        unavailable.len(),
        failed.len(),
        mib(done.downloaded()) / 1024.0,
        start.elapsed().as_secs_f64()
    )?;
    for (rel, why) in &unavailable {
        writeln!(out, "  unavailable {rel}: {why}")?;
    }
    for (rel, why) in &failed {
        writeln!(out, "  failed {rel}: {why}")?;
    }
    if !done.suite_errors.is_empty() {
        writeln!(
            out,
            "  {} suite(s) could not be read",
            done.suite_errors.len()
        )?;
    }
    if let Some(b) = &bundle_out {
        let releases: Vec<String> = done.kernels.iter().map(|k| k.1.release.clone()).collect();
        writeln!(out, "{}", b.write(Some(store), &releases, origin.arch)?)?;
    }
    Ok(if report.stored() == 0 && !failed.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
