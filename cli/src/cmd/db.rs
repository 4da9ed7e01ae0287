//! `kmlink db`: inspect, verify and fill the kernel record store. The work
//! is in `kmlink_metadata_db::store`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_core_module::Manifest;
use kmlink_errors::Chain;
use kmlink_metadata_db::record::KernelRecord;
use kmlink_metadata_db::{codec::glob_match, extract, slim, RecordSummary, Store};

use crate::{kernels, FetchOpts};

/// Arguments of `kmlink db`.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// The store file (default: $KMLINK_DB, else ~/.local/share/kmlink/records.db).
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: DbCommand,
}

/// `kmlink db` subcommands.
#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// List stored records (one line per kernel build).
    ///
    /// Examples:
    ///   kmlink db list
    ///   kmlink db list --embedded --json
    #[command(verbatim_doc_comment)]
    List {
        /// List the records built into kmlink instead.
        #[arg(long)]
        embedded: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show the record(s) of one release.
    ///
    /// Examples:
    ///   kmlink db show 6.1.0-47-amd64
    ///   kmlink db show 6.1.0-47-amd64 --export _printk --export module_layout
    ///   kmlink db show 6.1.0-47-amd64 --json > record.json
    #[command(verbatim_doc_comment)]
    Show {
        /// Kernel release (`uname -r`).
        release: String,
        /// Print the whole record(s) as JSON (the format `kmlink build --record` reads).
        #[arg(long)]
        json: bool,
        /// Also print this export's CRC, GPL flag, namespace and owner (repeatable).
        #[arg(long, value_name = "SYMBOL")]
        export: Vec<String>,
    },
    /// Re-hash every record and kept BTF; exit 1 if anything is damaged.
    ///
    /// Examples:
    ///   kmlink db verify
    ///   kmlink db verify --repair
    #[command(verbatim_doc_comment)]
    Verify {
        /// Drop damaged records (then add them again); on an intact store,
        /// rewrite it in the current format with every record projected for
        /// this kmlink's core (what a fast `kmlink build` reads).
        #[arg(long)]
        repair: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Extract a kernel's record from its packages (fetched and verified) and store it.
    ///
    /// Examples:
    ///   kmlink db add 6.1.0-47-amd64
    #[command(verbatim_doc_comment)]
    Add {
        /// Kernel release (`uname -r`).
        release: String,
        #[command(flatten)]
        fetch: FetchOpts,
    },
    /// Store records saved as JSON (`kmlink build --save-record`, `kmlink db show --json`).
    ///
    /// Examples:
    ///   kmlink db import record.json
    #[command(verbatim_doc_comment)]
    Import {
        /// JSON files, each one record or an array of records.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Re-derive stored full records for the current core from their kept BTF
    /// (no download), e.g. after the core's manifest changed.
    ///
    /// Examples:
    ///   kmlink db rederive
    ///   kmlink db rederive --release '6.1.0-*'
    #[command(verbatim_doc_comment)]
    Rederive {
        /// Only releases matching this glob.
        #[arg(long, value_name = "GLOB")]
        release: Option<String>,
    },
    /// Byte counts of the store (strings, CRC pool, records).
    ///
    /// Examples:
    ///   kmlink db stats
    ///   kmlink db stats --json
    #[command(verbatim_doc_comment)]
    Stats {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn no_store(db: &Option<PathBuf>) -> anyhow::Error {
    let path = Store::path_or_default(db.as_deref());
    anyhow::anyhow!(
        "there is no record store at {}; nothing was created (add records with `kmlink db add RELEASE` or `kmlink bundle install FILE`)",
        path.display()
    )
}

/// Runs `kmlink db`.
pub fn run(args: DbArgs) -> Result<ExitCode> {
    match args.command {
        DbCommand::List { embedded, json } => {
            let list: Vec<RecordSummary> = if embedded {
                embedded_summaries()?
            } else {
                match Store::open_existing(args.db.as_deref())? {
                    Some(store) => {
                        let list = store.list()?;
                        if !store.checksum_ok()? {
                            eprintln!(
                                "warning: {} fails its checksum: some records may be damaged; `kmlink db verify` says which, `kmlink db verify --repair` drops them",
                                store.path().display()
                            );
                        }
                        list
                    }
                    None => Vec::new(),
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!(
                    "no records{}; add one with `kmlink db add RELEASE` or `kmlink bundle install FILE`",
                    if embedded { " built in" } else { " stored" }
                );
            } else {
                print_list(&list);
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Show {
            release,
            json,
            export,
        } => show(&args.db, &release, json, &export),
        DbCommand::Verify { repair, json } => verify(&args.db, repair, json),
        DbCommand::Add { release, fetch } => {
            let store = Store::open_default(args.db.as_deref())?;
            // The facts asked are those of the core built for the release's
            // architecture (Debian names it in the flavour).
            let arch = kmlink_crawler::discover::release_arch(&release)
                .unwrap_or(kmlink_core_module::Arch::X86_64);
            let manifest = Manifest::core_for(arch)
                .with_context(|| format!("reading the embedded {arch} core's manifest"))?;
            let fetched = kernels::materialize(&release, &fetch)?;
            let art = kernels::artifacts(&fetched);
            let start = std::time::Instant::now();
            let x = extract::extract_full(&art, &manifest)
                .with_context(|| format!("extracting the facts of {release}"))?;
            let took = start.elapsed();
            store
                .put_btf(&x.btf)
                .with_context(|| format!("keeping the BTF of {release}"))?;
            let put = store
                .put_many(std::slice::from_ref(&x.record))
                .with_context(|| format!("storing the record of {release}"))?;
            let what = if !put.added.is_empty() {
                "stored"
            } else if !put.replaced.is_empty() {
                "replaced"
            } else {
                "unchanged"
            };
            println!(
                "{what}: {} ({} exports, extracted in {:.1?}) in {}",
                x.record.identity.release,
                x.record.exports.len(),
                took,
                store.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Import { files } => {
            let store = Store::open_default(args.db.as_deref())?;
            let mut records = Vec::new();
            for f in &files {
                let text = kmlink_fsio::read_bounded(
                    f,
                    kmlink_metadata_db::record::MAX_RECORDS_JSON,
                    "JSON file of kernel records",
                )
                .with_context(|| format!("reading {}", f.display()))?;
                let value: serde_json::Value = serde_json::from_slice(&text)
                    .with_context(|| format!("parsing {} as JSON", f.display()))?;
                let mut these: Vec<KernelRecord> = if value.is_array() {
                    serde_json::from_value(value)
                } else {
                    serde_json::from_value(value).map(|r| vec![r])
                }
                .with_context(|| {
                    format!(
                        "{} is not a kernel record (or a list of them) of schema {}",
                        f.display(),
                        kmlink_metadata_db::record::RECORD_SCHEMA
                    )
                })?;
                for r in &these {
                    r.validate()
                        .with_context(|| format!("checking {}", f.display()))?;
                }
                records.append(&mut these);
            }
            let put = store
                .put_many(&records)
                .with_context(|| format!("storing into {}", store.path().display()))?;
            println!(
                "{} added, {} replaced, {} unchanged, {} kept (full record already stored)",
                put.added.len(),
                put.replaced.len(),
                put.unchanged.len(),
                put.kept_full.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Rederive { release } => rederive(&args.db, release.as_deref()),
        DbCommand::Stats { json } => {
            let store =
                Store::open_existing(args.db.as_deref())?.ok_or_else(|| no_store(&args.db))?;
            let s = store.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "{} records, {} bytes: strings {} ({} B), CRC pool {} values ({} B), records {} B",
                    s.records,
                    s.total_bytes,
                    s.strings,
                    s.string_bytes,
                    s.crc_values,
                    s.pool_bytes,
                    s.record_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn embedded_summaries() -> Result<Vec<RecordSummary>> {
    let recs = Store::embedded()?;
    let image = kmlink_metadata_db::image::Image::rebuild(&recs).map_err(anyhow::Error::msg)?;
    Ok(image.entries.iter().map(|e| e.summary.clone()).collect())
}

fn print_list(list: &[RecordSummary]) {
    println!(
        "{:<32} {:<18} {:<9} {:>7} {:<5} {:<4} build",
        "release", "suite", "flavour", "exports", "crcs", "kind"
    );
    for s in list {
        println!(
            "{:<32} {:<18} {:<9} {:>7} {:<5} {:<4} {}",
            s.key.release,
            s.suite,
            s.flavour,
            s.exports,
            if s.modversions { "yes" } else { "no" },
            if s.slim { "slim" } else { "full" },
            s.key.build_string
        );
    }
}

fn show(db: &Option<PathBuf>, release: &str, json: bool, exports: &[String]) -> Result<ExitCode> {
    // A missing store is not created: the built-in bundle answers.
    let path = Store::path_or_default(db.as_deref());
    let (records, source) = match Store::open_existing(db.as_deref())? {
        Some(store) => store.get_or_embedded(release)?,
        None => (
            Store::embedded()?
                .into_iter()
                .filter(|r| r.identity.release == release)
                .collect(),
            kmlink_metadata_db::RecordSource::Embedded,
        ),
    };
    if records.is_empty() {
        bail!(
            "no record of {release} in {} nor built in; add it with `kmlink db add {release}` or `kmlink bundle install FILE`, or see `kmlink db list`",
            path.display(),
        );
    }
    if json {
        let text = if records.len() == 1 {
            serde_json::to_string_pretty(&records[0])?
        } else {
            serde_json::to_string_pretty(&records)?
        };
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for r in &records {
        print_record(&mut text, r, source, exports);
    }
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn print_record(
    out: &mut String,
    r: &KernelRecord,
    source: kmlink_metadata_db::RecordSource,
    exports: &[String],
) {
    use std::fmt::Write as _;
    let i = &r.identity;
    let _ = writeln!(out, "release      {}", i.release);
    let _ = writeln!(out, "build        {}", i.build_string);
    let _ = writeln!(out, "btf_sha256   {}", i.btf_sha256);
    let _ = writeln!(
        out,
        "origin       {} {} {} {}",
        i.distro, i.suite, i.flavour, i.arch
    );
    for p in &i.packages {
        let _ = writeln!(out, "package      {} {} {}", p.name, p.version, p.sha256);
    }
    let _ = writeln!(
        out,
        "kind         {}{}",
        if slim::is_slim(r) { "slim" } else { "full" },
        if source == kmlink_metadata_db::RecordSource::Embedded {
            " (built into kmlink)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "sha256       {}", r.sha256());
    let _ = writeln!(out, "vermagic     {:?}", r.vermagic);
    let c = &r.conventions;
    let _ = writeln!(
        out,
        "conventions  modversions={} ext_modversions={} return_sites={} retpoline={} ibt={}",
        c.modversions, c.ext_modversions, c.return_sites, c.retpoline, c.ibt
    );
    let t = &r.this_module;
    let _ = writeln!(
        out,
        "this_module  size={} ({:#x}) name={:#x}[{}] init={:#x} exit={:#x}",
        t.size, t.size, t.name_offset, t.name_len, t.init_offset, t.exit_offset
    );
    for (k, v) in &r.layouts {
        let _ = writeln!(out, "layout       {k} = {v}");
    }
    for (tp, params) in &r.tracepoints {
        let ps: Vec<String> = params
            .iter()
            .map(|p| format!("{} {}", p.type_name, p.name))
            .collect();
        let _ = writeln!(out, "tracepoint   {tp}({})", ps.join(", "));
    }
    let _ = writeln!(out, "functions    {}", r.functions.join(" "));
    for (k, v) in &r.config {
        let _ = writeln!(out, "config       {k}={v}");
    }
    let with_crc = r.exports.values().filter(|e| e.crc.is_some()).count();
    let _ = writeln!(
        out,
        "exports      {} ({} with CRC)",
        r.exports.len(),
        with_crc
    );
    for name in exports {
        let _ = match r.exports.get(name) {
            Some(e) => writeln!(
                out,
                "export       {name} crc={} gpl={} namespace={} owner={}",
                e.crc.map(|c| format!("{c:#010x}")).unwrap_or("-".into()),
                e.gpl,
                e.namespace.as_deref().unwrap_or("-"),
                e.owner
            ),
            None => writeln!(out, "export       {name} absent"),
        };
    }
    for (k, v) in &r.provenance {
        let _ = writeln!(out, "provenance   {k}: {v}");
    }
    let _ = writeln!(out);
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn verify(db: &Option<PathBuf>, repair: bool, json: bool) -> Result<ExitCode> {
    let store = Store::open_existing(db.as_deref())?.ok_or_else(|| no_store(db))?;
    let report = store
        .verify()
        .with_context(|| format!("verifying {}", store.path().display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} records, {} intact, {} damaged; file checksum {}; {} kept BTF, {} damaged",
            store.path().display(),
            report.records,
            report.ok,
            report.damaged.len(),
            if report.checksum_ok { "ok" } else { "MISMATCH" },
            report.blobs,
            report.damaged_blobs.len()
        );
        for (i, key, what) in &report.damaged {
            println!("damaged      record #{i}, {key}: {what}");
        }
        for (path, what) in &report.damaged_blobs {
            println!("damaged      {}: {what}", path.display());
        }
    }
    if report.is_clean() {
        if repair
            && store
                .upgrade()
                .with_context(|| format!("upgrading {}", store.path().display()))?
        {
            println!(
                "upgraded     {}: current format, every record projected for this kmlink's core",
                store.path().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if repair {
        let dropped = store
            .repair()
            .with_context(|| format!("repairing {}", store.path().display()))?;
        for key in &dropped {
            println!(
                "dropped      {key}: add it again with `kmlink db add {}` or `kmlink bundle install FILE`",
                key.release
            );
        }
        for (path, _) in &report.damaged_blobs {
            std::fs::remove_file(path)
                .with_context(|| format!("removing damaged {}", path.display()))?;
            println!("removed      {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !report.damaged.is_empty() || !report.checksum_ok {
        eprintln!(
            "kmlink: run `kmlink db verify --repair` to drop damaged records, then add them again"
        );
    }
    Ok(ExitCode::from(1))
}

fn rederive(db: &Option<PathBuf>, glob: Option<&str>) -> Result<ExitCode> {
    let store = Store::open_existing(db.as_deref())?.ok_or_else(|| no_store(db))?;
    let manifest = Manifest::core().context("reading the embedded core's manifest")?;
    let mut out = Vec::new();
    let mut failed = 0usize;
    for s in store.list()? {
        if glob.is_some_and(|g| !glob_match(g, &s.key.release)) || s.slim {
            continue;
        }
        let Some(record) = store.get_key(&s.key)? else {
            continue;
        };
        let Some(btf) = store.btf(&s.key.btf_sha256)? else {
            eprintln!(
                "kmlink: {}: no kept BTF; re-extract with `kmlink db add {}`",
                s.key, s.key.release
            );
            failed += 1;
            continue;
        };
        match extract::rederive(&record, &btf, &manifest) {
            Ok(r) => out.push(r),
            Err(e) => {
                eprintln!("kmlink: {}: {}", s.key, Chain(&e));
                failed += 1;
            }
        }
    }
    let put = store.put_many(&out)?;
    println!(
        "{} re-derived ({} changed), {} failed",
        out.len(),
        put.replaced.len(),
        failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
