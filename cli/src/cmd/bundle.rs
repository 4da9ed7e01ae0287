//! `kmlink bundle`: move records between machines as one verified file. The
//! work is in `kmlink_metadata_db::bundle`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_core_module::{Manifest, CORE_OBJECT};
use kmlink_metadata_db::bundle::{self, Trust};
use kmlink_metadata_db::codec::glob_match;

use super::db::open_store;

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
    ///   kmlink bundle export --slim -o metadata-db/bundles/default.kmb   (the built-in bundle)
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
    /// Verify a bundle and store all its records (all or nothing).
    ///
    /// Examples:
    ///   kmlink bundle install kernels.kmb
    ///   kmlink bundle install bookworm.kmb --trust publisher.key.pub
    #[command(verbatim_doc_comment)]
    Install {
        /// The bundle.
        file: PathBuf,
        /// Require a signature by this public key (repeatable). Signed bundles
        /// are only accepted from keys given here.
        #[arg(long, value_name = "KEYFILE")]
        trust: Vec<PathBuf>,
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
            let store = open_store(&args.db)?;
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
            let manifest = Manifest::core().context("reading the embedded core's manifest")?;
            let bytes = bundle::export(
                &records,
                slim.then_some((&manifest, CORE_OBJECT)),
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
        BundleCommand::Install { file, trust } => {
            let trust = Trust::from_files(&trust).context("reading the trusted keys")?;
            let bytes = bundle::read_file(&file)
                .with_context(|| format!("installing {}", file.display()))?;
            let store = open_store(&args.db)?;
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
