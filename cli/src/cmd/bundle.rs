//! `kmlink bundle`: move records between machines as one verified file. The
//! work is in `kmlink_metadata_db::bundle`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_metadata_db::bundle::{self, Trust};
use kmlink_metadata_db::codec::glob_match;
use kmlink_metadata_db::merge::{self, Input, Merged};
use kmlink_metadata_db::Store;

/// Arguments of `kmlink bundle`.
#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The store file (default: $KMLINK_DB, else ~/.local/share/kmlink/records.db).
    #[arg(long, global = true, value_name = "FILE")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BundleCommand,
}

/// `kmlink bundle` subcommands.
#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write stored records to one file.
    ///
    /// Examples:
    ///   kmlink bundle export -o kernels.kmb
    ///   kmlink bundle export -o bookworm.kmb --release '6.1.0-*' --slim --sign-key publisher.key
    ///   kmlink bundle export --slim --release '*-arm64*' -o metadata-db/bundles/arm64.kmb   (a built-in bundle)
    #[command(verbatim_doc_comment)]
    Export {
        /// Output file (`-`: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Only releases matching this glob (repeatable).
        #[arg(long, value_name = "GLOB")]
        release: Vec<String>,
        /// Keep only what the current core needs (a few hundred bytes per kernel).
        #[arg(long)]
        slim: bool,
        /// Sign with this secret key (from `kmlink bundle keygen`).
        #[arg(long, value_name = "KEYFILE")]
        sign_key: Option<PathBuf>,
    },
    /// Verify bundles and store all their records (all or nothing). Several
    /// bundles are checked and combined as `bundle merge` does (a conflict
    /// stores nothing), then stored in one write.
    ///
    /// Examples:
    ///   kmlink bundle install kernels.kmb
    ///   kmlink bundle install bookworm.kmb --trust publisher.key.pub
    ///   kmlink bundle install shard-0.kmb shard-1.kmb shard-2.kmb shard-3.kmb
    #[command(verbatim_doc_comment)]
    Install {
        /// The bundles.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Require a signature by this public key (repeatable). Signed bundles
        /// are only accepted from keys given here.
        #[arg(long, value_name = "KEYFILE")]
        trust: Vec<PathBuf>,
    },
    /// Combine bundles into one, e.g. the shards of a parallel crawl
    /// (`kmlink crawler refresh --shard I/N --bundle-out F`). Each input is
    /// verified (its signature too: required when --trust is given); a
    /// record in several inputs is kept once; two different records of one
    /// kernel build are refused, naming the kernel and both inputs; inputs
    /// must all be full or all slim for one core.
    ///
    /// Examples:
    ///   kmlink bundle merge -o kernels.kmb shard-0.kmb shard-1.kmb shard-2.kmb shard-3.kmb
    ///   kmlink bundle merge -o all.kmb --trust crawler.key.pub --sign-key publisher.key shard-*.kmb
    #[command(verbatim_doc_comment)]
    Merge {
        /// Output file (`-`: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// The bundles to combine.
        #[arg(required = true, value_name = "BUNDLE")]
        inputs: Vec<PathBuf>,
        /// Require every input to be signed by one of these public keys
        /// (repeatable). Signed inputs are only accepted from keys given here.
        #[arg(long, value_name = "KEYFILE")]
        trust: Vec<PathBuf>,
        /// Sign the merged bundle with this secret key.
        #[arg(long, value_name = "KEYFILE")]
        sign_key: Option<PathBuf>,
    },
    /// Make an ed25519 key pair for signing bundles: KEY (secret, mode 0600)
    /// and KEY.pub. Keep the secret key out of any repository.
    ///
    /// Examples:
    ///   kmlink bundle keygen -o ~/.config/kmlink/publisher.key
    #[command(verbatim_doc_comment)]
    Keygen {
        /// Secret key file (the public key goes to FILE.pub).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Runs `kmlink bundle`.
pub fn run(args: BundleArgs) -> Result<ExitCode> {
    match args.command {
        BundleCommand::Export {
            output,
            release,
            slim,
            sign_key,
        } => {
            let store = Store::open_default(args.db.as_deref())?;
            let key = sign_key
                .as_ref()
                .map(|k| bundle::read_secret_key(k))
                .transpose()
                .context("reading the signing key")?;
            let records: Vec<_> = store
                .all()
                .with_context(|| format!("reading {}", store.path().display()))?
                .into_iter()
                .filter(|r| {
                    release.is_empty() || release.iter().any(|g| glob_match(g, &r.identity.release))
                })
                .collect();
            if records.is_empty() {
                bail!(
                    "no stored record matches {}; see `kmlink db list`",
                    if release.is_empty() {
                        "(the store is empty)".to_string()
                    } else {
                        release.join(" or ")
                    }
                );
            }
            let core = slim.then(|| bundle::slim_core_of(&records)).transpose()?;
            let bytes = bundle::export(
                &records,
                core.as_ref().map(|(m, object)| (m, *object)),
                key.as_ref(),
            )?;
            super::build::write_output(&output, &bytes)?;
            let summary = format!(
                "{}: {} records, {} bytes ({} per kernel){}{}",
                output.display(),
                records.len(),
                bytes.len(),
                bytes.len() / records.len(),
                if slim { ", slim" } else { "" },
                key.map(|k| format!(", signed by {}", bundle::fingerprint(&k.verifying_key())))
                    .unwrap_or_default()
            );
            // With `-o -` the bundle is stdout: the summary goes beside it.
            if kmlink_fsio::is_stdout(&output) {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Install { files, trust } if files.len() > 1 => {
            let trust = Trust::from_files(&trust).context("reading the trusted keys")?;
            let read = read_all(&files)?;
            // Checked and combined before the store is opened: a refused
            // set of bundles creates no store.
            let m = merge::merge(&inputs(&read), &trust)?;
            let store = Store::open_default(args.db.as_deref())?;
            let put = store
                .put_many(&m.records)
                .with_context(|| format!("storing the records in {}", store.path().display()))?;
            print_inputs(&m);
            println!(
                "{} bundles: {} records ({} in several bundles, kept once): {} added, {} replaced, {} unchanged, {} kept (full record already stored) in {}",
                files.len(),
                m.records.len(),
                m.duplicates(),
                put.added.len(),
                put.replaced.len(),
                put.unchanged.len(),
                put.kept_full.len(),
                store.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Install { files, trust } => {
            let file = files.into_iter().next().context("no bundle given")?;
            let trust = Trust::from_files(&trust).context("reading the trusted keys")?;
            let bytes = bundle::read_file(&file)
                .with_context(|| format!("installing {}", file.display()))?;
            let store = Store::open_default(args.db.as_deref())?;
            let r = bundle::install(&store, &bytes, &trust)
                .with_context(|| format!("installing {}", file.display()))?;
            println!(
                "{}: {} records{}: {} added, {} replaced, {} unchanged, {} kept (full record already stored) in {}",
                file.display(),
                r.records,
                r.signer
                    .map(|s| format!(" signed by {s}"))
                    .unwrap_or_else(|| " (unsigned)".into()),
                r.put.added.len(),
                r.put.replaced.len(),
                r.put.unchanged.len(),
                r.put.kept_full.len(),
                store.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Merge {
            output,
            inputs: files,
            trust,
            sign_key,
        } => {
            let trust = Trust::from_files(&trust).context("reading the trusted keys")?;
            let key = sign_key
                .as_ref()
                .map(|k| bundle::read_secret_key(k))
                .transpose()
                .context("reading the signing key")?;
            let read = read_all(&files)?;
            let m = merge::merge(&inputs(&read), &trust)?;
            let bytes = merge::to_bundle(&m, key.as_ref())?;
            super::build::write_output(&output, &bytes)?;
            let summary = format!(
                "{}: {} records from {} bundles ({} in several, kept once), {} bytes{}{}",
                output.display(),
                m.records.len(),
                files.len(),
                m.duplicates(),
                bytes.len(),
                if m.slim_core.is_some() { ", slim" } else { "" },
                key.map(|k| format!(", signed by {}", bundle::fingerprint(&k.verifying_key())))
                    .unwrap_or_default()
            );
            if kmlink_fsio::is_stdout(&output) {
                eprintln!("{summary}");
            } else {
                print_inputs(&m);
                println!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Keygen { output } => {
            let public = bundle::keygen(&output)?;
            println!(
                "secret key {} (keep it private, never commit it)\npublic key {} (fingerprint {}): give it to whoever installs your bundles (`kmlink bundle install FILE --trust {}`)",
                output.display(),
                bundle::public_path(&output).display(),
                bundle::fingerprint(&public),
                bundle::public_path(&output).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads every bundle file (bounded, as `bundle install` reads one).
fn read_all(files: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    files
        .iter()
        .map(|f| {
            bundle::read_file(f)
                .with_context(|| format!("reading {}", f.display()))
                .map(|b| (f.display().to_string(), b))
        })
        .collect()
}

fn inputs(read: &[(String, Vec<u8>)]) -> Vec<Input<'_>> {
    read.iter()
        .map(|(name, bytes)| Input { name, bytes })
        .collect()
}

fn print_inputs(m: &Merged) {
    for i in &m.inputs {
        println!(
            "  {}: {} records{}{}",
            i.name,
            i.records,
            i.signer
                .as_ref()
                .map(|s| format!(", signed by {s}"))
                .unwrap_or_else(|| ", unsigned".into()),
            if i.duplicates > 0 {
                format!(", {} held by an earlier bundle too", i.duplicates)
            } else {
                String::new()
            }
        );
    }
}
