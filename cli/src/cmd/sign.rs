//! Module signing options shared by `kmlink build`, `kmlink load` and
//! `kmlink sign`, and `kmlink sign` itself: sign a module file, attach a
//! signature made elsewhere, or show a module's signature.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use kmlink_modsign::keys::{self, KeyPair, Origin};
use kmlink_modsign::{Existing, HashAlgo, Signer};

/// How to sign (flattened into build, load and sign).
#[derive(Args, Debug, Clone, Default)]
pub struct SignOpts {
    /// Private key to sign the module with (PEM or DER: PKCS#8, PKCS#1,
    /// SEC1). With `kmlink load`, default: kmlink's key (`kmlink key
    /// generate`), else DKMS's or shim-signed's MOK.
    #[arg(
        long,
        env = "KMLINK_SIGN_KEY",
        requires = "sign_cert",
        value_name = "KEY"
    )]
    pub sign_key: Option<PathBuf>,
    /// The key's X.509 certificate (PEM or DER), as enrolled in the kernel.
    #[arg(long, env = "KMLINK_SIGN_CERT", value_name = "CERT")]
    pub sign_cert: Option<PathBuf>,
    /// Digest the signature is made over: sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256", value_name = "HASH")]
    pub sign_hash: String,
    /// Write the digest that must be signed (raw bytes) to FILE, for a key
    /// that never touches this host (HSM, CI signer); the module is
    /// written unsigned. Then: --attach-signature.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sign_key", "attach_signature"])]
    pub emit_digest: Option<PathBuf>,
    /// Append a signature made elsewhere: a detached PKCS#7 (`openssl cms
    /// -sign -binary -noattr -nocerts -outform DER`, `sign-file -d`), or a
    /// raw signature over --emit-digest's digest (needs --sign-cert).
    #[arg(long, value_name = "SIG", conflicts_with = "sign_key")]
    pub attach_signature: Option<PathBuf>,
}

impl SignOpts {
    /// The hash named by --sign-hash.
    pub fn hash(&self) -> Result<HashAlgo> {
        Ok(HashAlgo::from_name(&self.sign_hash)?)
    }

    /// Checks everything that can be checked before linking: the key pair,
    /// the certificate for an attached signature, the hash name. Returns
    /// the signer when a key was named.
    pub fn prepare(&self) -> Result<Option<Signer>> {
        self.hash()?;
        if let Some(sig) = &self.attach_signature {
            if !sig.is_file() {
                bail!("--attach-signature {}: no such file", sig.display());
            }
        }
        match (&self.sign_key, &self.sign_cert) {
            (Some(k), Some(c)) => Ok(Some(open_signer(k, c)?)),
            (None, Some(c)) if self.attach_signature.is_none() => bail!(
                "--sign-cert {} without --sign-key: name the key too (or use --attach-signature)",
                c.display()
            ),
            _ => Ok(None),
        }
    }

    /// Applies the options to a freshly linked module: sign it, attach a
    /// signature, or emit its digest. Returns the module to write and a
    /// line saying what was done.
    pub fn apply(&self, signer: Option<&Signer>, ko: Vec<u8>) -> Result<(Vec<u8>, Option<String>)> {
        let hash = self.hash()?;
        if let Some(path) = &self.emit_digest {
            let digest = kmlink_modsign::digest(&ko, hash);
            super::build::write_output(path, &digest)?;
            return Ok((
                ko,
                Some(format!(
                    "{} digest of the module written to {} ({}); sign it elsewhere, then \
                     attach with --attach-signature",
                    hash.name(),
                    path.display(),
                    hex::encode(&digest)
                )),
            ));
        }
        if let Some(sig_path) = &self.attach_signature {
            let sig = kmlink_modsign::key::read_bounded(sig_path)?;
            let cert = match &self.sign_cert {
                Some(c) => Some((
                    kmlink_modsign::key::read_certificate(c)?,
                    c.display().to_string(),
                )),
                None => None,
            };
            let signed = kmlink_modsign::attach(
                &ko,
                &sig,
                cert.as_ref().map(|(c, n)| (c, n.as_str())),
                hash,
                Existing::Refuse,
            )
            .with_context(|| format!("attaching {}", sig_path.display()))?;
            let info = kmlink_modsign::inspect(&signed)?
                .map(|i| i.signer.describe())
                .unwrap_or_default();
            return Ok((
                signed,
                Some(format!(
                    "signature {} attached ({info}{})",
                    sig_path.display(),
                    if cert.is_some() {
                        "; verified against --sign-cert"
                    } else {
                        "; not verified: no --sign-cert"
                    }
                )),
            ));
        }
        match signer {
            Some(s) => {
                let signed = s.sign(&ko, hash, Existing::Refuse)?;
                Ok((signed, Some(describe_signing(s, hash))))
            }
            None => Ok((ko, None)),
        }
    }
}

/// "signed by 'CN' (RSA-2048, sha256)".
pub fn describe_signing(s: &Signer, hash: HashAlgo) -> String {
    format!(
        "signed by '{}' ({}, {})",
        s.subject(),
        s.describe_key(),
        hash.name()
    )
}

/// Opens a key pair, naming both files in errors.
pub fn open_signer(key: &Path, cert: &Path) -> Result<Signer> {
    Signer::from_files(key, cert).with_context(|| {
        format!(
            "signing key {} with certificate {}",
            key.display(),
            cert.display()
        )
    })
}

/// The key pair `kmlink load` signs with: the one named, else the first of
/// kmlink's own, DKMS's and shim-signed's that exists.
pub fn configured_pair(opts: &SignOpts) -> Option<KeyPair> {
    match (&opts.sign_key, &opts.sign_cert) {
        (Some(k), Some(c)) => Some(KeyPair {
            key: k.clone(),
            cert: c.clone(),
            origin: Origin::Configured,
        }),
        _ => keys::find(Path::new("/"), &keys::key_dir()),
    }
}

/// Arguments of `kmlink sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The module to sign (or, with --show, to read).
    pub module: PathBuf,
    /// Where to write the signed module (default: replace MODULE).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing signature (a module is never signed twice).
    #[arg(long)]
    pub resign: bool,
    /// Print the module's signature (signer, digest, algorithm) and, with
    /// --sign-cert, verify it; write nothing.
    #[arg(long)]
    pub show: bool,
    #[command(flatten)]
    pub sign: SignOpts,
}

/// Runs `kmlink sign`.
pub fn run(args: SignArgs) -> Result<ExitCode> {
    let module = std::fs::read(&args.module)
        .with_context(|| format!("reading {}", args.module.display()))?;
    if args.show {
        return show(&args, &module);
    }
    if args.sign.sign_key.is_none()
        && args.sign.attach_signature.is_none()
        && args.sign.emit_digest.is_none()
    {
        bail!("nothing to do: give --sign-key KEY --sign-cert CERT, --attach-signature SIG or --emit-digest FILE");
    }
    let signer = args.sign.prepare()?;
    let existing = if args.resign {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    // The digest and a replacement signature cover the module without its
    // old signature; anything else refuses a signed module.
    let content = if existing == Existing::Replace || args.sign.emit_digest.is_some() {
        kmlink_modsign::appended::split(&module)?.content.to_vec()
    } else {
        if let Some(info) = kmlink_modsign::inspect(&module)? {
            bail!(
                "{} is already signed ({}); re-sign deliberately with --resign",
                args.module.display(),
                info.signer.describe()
            );
        }
        module
    };
    let (out_bytes, said) = args.sign.apply(signer.as_ref(), content)?;
    if let Some(s) = said {
        eprintln!("kmlink: {s}");
    }
    if args.sign.emit_digest.is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.output.as_ref().unwrap_or(&args.module);
    super::build::write_output(out, &out_bytes)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn show(args: &SignArgs, module: &[u8]) -> Result<ExitCode> {
    let name = args.module.display().to_string();
    let Some(info) = kmlink_modsign::inspect(module)
        .with_context(|| format!("reading the signature of {name}"))?
    else {
        println!("{name}: not signed");
        return Ok(ExitCode::from(1));
    };
    println!(
        "{name}: signed, {} over {} ({} bytes of PKCS#7), signer {}",
        info.algo,
        info.hash.name(),
        info.pkcs7_len,
        info.signer.describe()
    );
    if let Some(c) = &args.sign.sign_cert {
        let cert = kmlink_modsign::key::read_certificate(c)?;
        kmlink_modsign::verify(module, &cert, &c.display().to_string())?;
        println!("{name}: the signature verifies with {}", c.display());
    }
    Ok(ExitCode::SUCCESS)
}
