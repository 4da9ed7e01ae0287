//! `kmlink key generate | enroll | status`: the module signing key's life
//! on a Secure Boot host — make it, stage it for enrolment as a Machine
//! Owner Key, and tell whether the running kernel trusts it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kmlink_linker::security::{self, LoadPolicy, Trust};
use kmlink_modsign::generate::{self, KeyKind};
use kmlink_modsign::keys;

use super::build;

/// Arguments of `kmlink key`.
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a module signing key and its self-signed code-signing
    /// certificate (key 0600 in kmlink's key directory).
    ///
    /// Examples:
    ///   kmlink key generate
    ///   kmlink key generate --type ecdsa-p256 --name "fleet-42 kmlink key"
    #[command(verbatim_doc_comment)]
    Generate(GenerateArgs),
    /// Stage the certificate for enrolment as a Machine Owner Key
    /// (`mokutil --import`); confirm it in MokManager at the next boot.
    ///
    /// Examples:
    ///   kmlink key enroll
    ///   kmlink key enroll --cert /var/lib/dkms/mok.pub
    #[command(verbatim_doc_comment)]
    Enroll(CertArgs),
    /// Whether the running kernel trusts the signing key, and what to do.
    ///
    /// Examples:
    ///   kmlink key status
    ///   kmlink key status --cert /var/lib/shim-signed/mok/MOK.der
    #[command(verbatim_doc_comment)]
    Status(CertArgs),
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Key directory (default: $KMLINK_STATE_DIR/keys, /var/lib/kmlink/keys
    /// for root, else ~/.local/share/kmlink/keys).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Key type: rsa2048 (as DKMS), rsa3072, rsa4096, ecdsa-p256, ecdsa-p384.
    #[arg(long = "type", default_value = "rsa2048")]
    kind: String,
    /// The certificate's common name (default: "kmlink module signing key
    /// (HOSTNAME)").
    #[arg(long)]
    name: Option<String>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Replace an existing kmlink key (modules signed with it stop loading
    /// once the new one replaces it in the firmware).
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct CertArgs {
    /// The certificate (default: the signing key kmlink load would use).
    #[arg(long)]
    cert: Option<PathBuf>,
}

/// Runs `kmlink key`.
pub fn run(args: KeyArgs) -> Result<ExitCode> {
    match args.command {
        KeyCommand::Generate(a) => generate(a),
        KeyCommand::Enroll(a) => enroll(a),
        KeyCommand::Status(a) => status(a),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn generate(a: GenerateArgs) -> Result<ExitCode> {
    let kind = KeyKind::from_name(&a.kind)?;
    let dir = a.dir.unwrap_or_else(keys::key_dir);
    if !a.force {
        let pair = keys::kmlink_pair(&dir);
        if pair.key.exists() {
            bail!(
                "{} already exists; kmlink keeps one signing key (its certificate may be enrolled). \
                 Use it, or replace it with --force",
                pair.key.display()
            );
        }
    }
    let name = a
        .name
        .unwrap_or_else(|| format!("kmlink module signing key ({})", hostname()));
    let g = generate::generate(kind, &name, a.days, SystemTime::now())
        .context("generating the signing key")?;
    let pair = keys::write(&dir, &g, a.force)?;
    println!("key:         {} (0600)", pair.key.display());
    println!("certificate: {} (DER)", pair.cert.display());
    println!(
        "description: {}",
        kmlink_modsign::key::kernel_key_description(&g.cert)
    );
    println!("next: enrol it so the kernel trusts modules it signs: sudo kmlink key enroll");
    Ok(ExitCode::SUCCESS)
}

/// The certificate `--cert` names, or the configured key's.
fn cert_path(cert: Option<PathBuf>) -> Result<(PathBuf, String)> {
    if let Some(c) = cert {
        return Ok((c, "given".into()));
    }
    match super::sign::configured_pair(&super::sign::SignOpts::default()) {
        Some(p) => Ok((p.cert, p.origin.describe().into())),
        None => bail!(
            "no signing key: looked for {} and DKMS's and shim-signed's MOKs; make one with \
             kmlink key generate",
            keys::kmlink_pair(&keys::key_dir()).key.display()
        ),
    }
}

fn enroll(a: CertArgs) -> Result<ExitCode> {
    let (cert, origin) = cert_path(a.cert)?;
    let parsed = kmlink_modsign::key::read_certificate(&cert)?;
    let der_path = der_copy(&cert, &parsed)?;
    println!(
        "kmlink: enrolling {} ({origin}): {}",
        cert.display(),
        kmlink_modsign::key::kernel_key_description(&parsed)
    );
    let status = Command::new("mokutil")
        .arg("--import")
        .arg(&der_path)
        .status();
    match status {
        Ok(s) if s.success() => {
            println!(
                "kmlink: staged. At the next boot, shim's MokManager asks to enrol it: choose \
                 \"Enroll MOK\", \"Continue\", \"Yes\", type the password you just set, then \"Reboot\". \
                 After that, kmlink load signs with this key and `kmlink key status` says trusted."
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => bail!("mokutil --import {} failed ({s})", der_path.display()),
        Err(e) => bail!(
            "running mokutil ({e}): install it (apt-get install mokutil), or enrol {} from \
             the firmware's setup",
            der_path.display()
        ),
    }
}

/// mokutil takes DER: a certificate kept as PEM is written out as DER
/// (through kmlink's one file writer: an exclusive temporary and a rename,
/// so nothing planted in the temporary directory is followed).
fn der_copy(cert: &Path, parsed: &kmlink_modsign::Certificate) -> Result<PathBuf> {
    let der = kmlink_modsign::key::certificate_der(parsed)?;
    if kmlink_modsign::key::read_bounded(cert)? == der {
        return Ok(cert.to_path_buf());
    }
    let out = std::env::temp_dir().join(format!("kmlink-mok-{}.der", std::process::id()));
    build::write_output(&out, &der)?;
    Ok(out)
}

fn status(a: CertArgs) -> Result<ExitCode> {
    let (cert, origin) = cert_path(a.cert)?;
    let parsed = kmlink_modsign::key::read_certificate(&cert)?;
    let desc = kmlink_modsign::key::kernel_key_description(&parsed);
    let policy = LoadPolicy::read(Path::new("/"));
    println!("key:         {} ({origin})", cert.display());
    println!("description: {desc}");
    println!(
        "kernel:      {}",
        if policy.signatures_required() {
            format!("requires signed modules ({})", policy.reason())
        } else {
            "does not require signed modules (a signed module still avoids the E taint)".into()
        }
    );
    let valid = kmlink_modsign::key::check_validity(
        &parsed,
        &cert.display().to_string(),
        SystemTime::now(),
    );
    if let Err(e) = &valid {
        println!("certificate: {e}");
    }
    match security::trust(
        Path::new("/"),
        &desc,
        &kmlink_modsign::key::certificate_der(&parsed)?,
    ) {
        Trust::Trusted => {
            println!("trusted:     yes (the kernel holds this key; modules it signs load)");
            Ok(if valid.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Trust::NotTrusted => {
            println!(
                "trusted:     no (not among the kernel's keys); enrol it: sudo kmlink key enroll, \
                 reboot, confirm in MokManager"
            );
            Ok(ExitCode::from(1))
        }
        Trust::Unknown(why) => {
            println!("trusted:     unknown ({why}); run as root");
            Ok(ExitCode::from(1))
        }
    }
}
