//! Offline bundles: one file carrying records from one store to another.
//!
//! ```text
//! "KMLBNDL1"  u32:header-len  zstd(header JSON)  payload  [signature]
//! payload   = zstd(record set, the store's own format: crate::image)
//! signature = "KMLSIG01"  [32]:ed25519 public key  [64]:signature
//! ```
//!
//! The header lists every record's identity and content SHA256 and the
//! payload's length and SHA256. The signature, when present, signs the
//! SHA256 of every byte before it. Reading checks, in order: magic, header,
//! length (truncation), payload hash, signature against the keys the user
//! trusts, then decodes every record and checks its hash and that the
//! records are exactly the ones the header lists. Any failure rejects the
//! whole bundle; [`install`] then stores all records in one atomic write.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use kmlink_core_module::{Arch, Manifest};
use serde::{Deserialize, Serialize};

use crate::codec::Reader;
use crate::image::{sha256, Image, ImageError, RecordKey};
use crate::record::{KernelRecord, RECORD_SCHEMA};
use crate::store::{DbError, PutReport, Store};

/// Magic bytes of a bundle.
pub const MAGIC: &[u8; 8] = b"KMLBNDL1";
/// Magic bytes of the signature block.
pub const SIG_MAGIC: &[u8; 8] = b"KMLSIG01";
/// Bundle format version (in the header).
pub const BUNDLE_FORMAT: u32 = 1;
const MAX_HEADER: u32 = 16 << 20;
const MAX_PAYLOAD: u64 = 1 << 30;
/// The largest bundle file: magic, header, payload and signature.
pub const MAX_BUNDLE: u64 = MAX_PAYLOAD + MAX_HEADER as u64 + (1 << 20);
const SECRET_TAG: &str = "kmlink-ed25519-secret-key";
const PUBLIC_TAG: &str = "kmlink-ed25519-public-key";

/// The bundles built into kmlink, one per architecture: slim records, cut
/// for that architecture's core, of every kernel a crawl of the archive
/// found (regenerate with `cargo run -p kmlink-metadata-db --example
/// write_default_bundle -- STORE ARCH`, see docs/metadata-db.md).
pub static DEFAULT_BUNDLES: &[(Arch, &[u8])] = &[
    (Arch::X86_64, include_bytes!("../bundles/amd64.kmb")),
    (Arch::Aarch64, include_bytes!("../bundles/arm64.kmb")),
];

/// One record as the header lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    /// Identity.
    #[serde(flatten)]
    pub key: RecordKey,
    /// SHA256 (hex) of the record's canonical JSON.
    pub sha256: String,
}

/// The bundle header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// [`BUNDLE_FORMAT`].
    pub format: u32,
    /// [`RECORD_SCHEMA`] of the records.
    pub record_schema: u32,
    /// The records are slim (cut for one core).
    pub slim: bool,
    /// Fingerprint of the core slim records were cut for.
    pub core: Option<String>,
    /// The records.
    pub records: Vec<BundleEntry>,
    /// Length of the payload in bytes.
    pub payload_len: u64,
    /// SHA256 (hex) of the payload.
    pub payload_sha256: String,
}

/// Why a bundle was rejected (always whole) or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle at all.
    #[error("not a kmlink bundle (it starts with {0})")]
    NotABundle(String),
    /// The file ends early.
    #[error("truncated: {0}; nothing was installed — fetch the bundle again")]
    Truncated(String),
    /// Bytes changed.
    #[error("damaged: {0}; nothing was installed — fetch the bundle again")]
    Damaged(String),
    /// Another format or schema.
    #[error("{0}; use a kmlink of the same version as the one that exported it")]
    Version(String),
    /// A listed record is absent, or an unlisted one present.
    #[error("the records do not match the bundle's list: {0}; nothing was installed")]
    Mismatch(String),
    /// One record fails its checks.
    #[error("record #{index}, {key}, is damaged: {what}; nothing was installed")]
    RecordDamaged {
        /// Position in the bundle.
        index: usize,
        /// Identity as listed.
        key: Box<RecordKey>,
        /// What is wrong.
        what: String,
    },
    /// Unsigned, but the user asked for a signature.
    #[error("the bundle is not signed, but you asked for a signature by {0}; nothing was installed — ask the publisher for a signed bundle, or install without --trust")]
    Unsigned(String),
    /// Signed with a key the user does not trust.
    #[error("the bundle is signed by key {0}, which you have not said you trust; nothing was installed — if you trust that publisher, pass --trust with their public key file")]
    Untrusted(String),
    /// The signature does not verify.
    #[error("the signature by key {0} does not match the bundle's contents (altered after signing); nothing was installed")]
    BadSignature(String),
    /// A key file is unusable.
    #[error("key file {path}: {what}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A slim bundle is cut for one core, so for one architecture.
    #[error("a slim bundle is cut for one architecture's core, and these records are for {0}; export each architecture apart (e.g. --release '*-arm64'), or without --slim")]
    SlimArch(String),
    /// The embedded core of an architecture cannot be read.
    #[error("the embedded {arch} core's manifest")]
    Core {
        /// The architecture.
        arch: &'static str,
        /// Cause.
        #[source]
        source: kmlink_core_module::ManifestError,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] kmlink_errors::IoError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] Box<DbError>),
}

/// Which signatures [`read`] accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys the user trusts.
    pub keys: Vec<VerifyingKey>,
    /// Reject unsigned bundles.
    pub require_signature: bool,
}

impl Trust {
    /// Trust the keys in these public key files; a signature is then required.
    pub fn from_files(paths: &[PathBuf]) -> Result<Trust, BundleError> {
        let keys = paths
            .iter()
            .map(|p| read_public_key(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trust {
            require_signature: !keys.is_empty(),
            keys,
        })
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its header.
    pub header: BundleHeader,
    /// Its records, each checked against its hash.
    pub records: Vec<KernelRecord>,
    /// Fingerprint of the key that signed it, if signed.
    pub signer: Option<String>,
}

/// Short printable fingerprint of a public key (hex of its first 8 bytes).
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

/// Makes a bundle of `records`: cut to `slim` = (manifest, core object) if
/// given, signed with `sign` if given. The output is deterministic.
pub fn export(
    records: &[KernelRecord],
    slim: Option<(&Manifest, &[u8])>,
    sign: Option<&SigningKey>,
) -> Result<Vec<u8>, BundleError> {
    let records: Vec<KernelRecord> = match slim {
        Some((m, core)) => records
            .iter()
            .map(|r| crate::slim::slim(r, m, core))
            .collect(),
        None => records.to_vec(),
    };
    encode(
        records,
        slim.map(|(m, core)| crate::slim::fingerprint(m, core)),
        sign,
    )
}

/// The embedded core a slim bundle of `records` is cut for: that of their
/// architecture (each record's `identity.arch`), which must be one.
pub fn slim_core_of(records: &[KernelRecord]) -> Result<(Manifest, &'static [u8]), BundleError> {
    let arches: BTreeSet<&str> = records.iter().map(|r| r.identity.arch.as_str()).collect();
    let arch = match arches.iter().collect::<Vec<_>>().as_slice() {
        [one] => Arch::from_machine(one),
        _ => None,
    }
    .ok_or_else(|| {
        BundleError::SlimArch(arches.iter().copied().collect::<Vec<_>>().join(" and "))
    })?;
    let manifest = Manifest::core_for(arch).map_err(|source| BundleError::Core {
        arch: arch.machine(),
        source,
    })?;
    Ok((manifest, arch.core_object()))
}

/// Makes a bundle of `records` as they are: slim records cut for the core
/// of fingerprint `slim_core` when that is given (what the header says),
/// signed with `sign` if given. The output is deterministic.
pub(crate) fn encode(
    mut records: Vec<KernelRecord>,
    slim_core: Option<String>,
    sign: Option<&SigningKey>,
) -> Result<Vec<u8>, BundleError> {
    records.sort_by_key(RecordKey::of);
    let image = Image::rebuild(&records)
        .map_err(|what| BundleError::Damaged(format!("encoding: {what}")))?;
    let plain = image.encode();
    let payload = zstd::bulk::compress(&plain, 19)
        .map_err(|e| BundleError::Damaged(format!("compressing: {e}")))?;
    let header = BundleHeader {
        format: BUNDLE_FORMAT,
        record_schema: RECORD_SCHEMA,
        slim: slim_core.is_some(),
        core: slim_core,
        records: image
            .entries
            .iter()
            .map(|e| BundleEntry {
                key: e.summary.key.clone(),
                sha256: e.summary.sha256.clone(),
            })
            .collect(),
        payload_len: payload.len() as u64,
        payload_sha256: hex::encode(sha256(&payload)),
    };
    let header_json = serde_json::to_vec(&header)
        .map_err(|e| BundleError::Damaged(e.to_string()))
        .and_then(|j| {
            zstd::bulk::compress(&j, 19)
                .map_err(|e| BundleError::Damaged(format!("compressing: {e}")))
        })?;
    let mut out = Vec::with_capacity(16 + header_json.len() + payload.len() + 104);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_json);
    out.extend_from_slice(&payload);
    if let Some(key) = sign {
        let digest = sha256(&out);
        let sig = key.sign(&digest);
        out.extend_from_slice(SIG_MAGIC);
        out.extend_from_slice(key.verifying_key().as_bytes());
        out.extend_from_slice(&sig.to_bytes());
    }
    Ok(out)
}

/// The stored records of `releases` (every build of each stored) as a
/// bundle, cut to `slim` and signed as [`export`] does: what `kmlink crawler
/// refresh --bundle-out` writes for the kernels of its shard. A release
/// with no stored record (its crawl failed, or the archive lost it) is
/// left out; none at all gives a bundle of no records, which installs and
/// merges as such. Returns the bytes and the number of records.
pub fn export_releases(
    store: &Store,
    releases: &[String],
    slim: Option<(&Manifest, &[u8])>,
    sign: Option<&SigningKey>,
) -> Result<(Vec<u8>, usize), BundleError> {
    let mut records = Vec::new();
    for release in releases {
        records.extend(store.get(release).map_err(Box::new)?);
    }
    let n = records.len();
    Ok((export(&records, slim, sign)?, n))
}

/// Reads a bundle file, bounded by what its own header says it holds
/// (header, payload, signature; at most [`MAX_BUNDLE`] bytes): a device or
/// an endless pipe (`/dev/zero`) fails at its first bytes, not when memory
/// runs out. Check the bytes with [`read`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io(kmlink_errors::IoError::new("reading", path, source));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut data = Vec::new();
    (&mut f).take(12).read_to_end(&mut data).map_err(io)?;
    if data.len() < 8 || data[..8] != MAGIC[..] {
        return Err(BundleError::NotABundle(format!(
            "{:02x?}",
            &data[..data.len().min(8)]
        )));
    }
    if data.len() < 12 {
        return Err(BundleError::Truncated(format!(
            "the file ends after {} bytes, inside the header length",
            data.len()
        )));
    }
    let hlen = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if hlen > MAX_HEADER {
        return Err(BundleError::Damaged(format!(
            "header length {hlen} is more than {MAX_HEADER} bytes, the most a bundle header can be"
        )));
    }
    (&mut f)
        .take(u64::from(hlen))
        .read_to_end(&mut data)
        .map_err(io)?;
    let mut hjson = Vec::new();
    zstd::stream::read::Decoder::new(&data[12..])
        .and_then(|d| d.take(u64::from(MAX_HEADER)).read_to_end(&mut hjson))
        .map_err(|e| BundleError::Damaged(format!("the header does not decompress ({e})")))?;
    let header: BundleHeader =
        serde_json::from_slice(&hjson).map_err(|e| BundleError::Damaged(format!("header: {e}")))?;
    if header.payload_len > MAX_PAYLOAD {
        return Err(BundleError::Damaged(format!(
            "payload length {} is more than {MAX_PAYLOAD} bytes, the most a bundle payload can be",
            header.payload_len
        )));
    }
    // Payload, an optional 104-byte signature block, and one byte more to
    // see whether anything follows (which `read` refuses).
    (&mut f)
        .take(header.payload_len + 8 + 32 + 64 + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    Ok(data)
}

/// Checks a bundle completely (see the module documentation) and returns
/// its records. Nothing is written anywhere.
pub fn read(bytes: &[u8], trust: &Trust) -> Result<Verified, BundleError> {
    let mut r = Reader::new(bytes, 0);
    let magic = r
        .take(8.min(bytes.len()), "magic")
        .map_err(|e| BundleError::Truncated(e.to_string()))?;
    if magic != MAGIC {
        return Err(BundleError::NotABundle(format!("{magic:02x?}")));
    }
    let trunc = |e: crate::codec::DecodeError| BundleError::Truncated(e.to_string());
    let hlen = r.u32_le("header length").map_err(trunc)?;
    if hlen > MAX_HEADER {
        return Err(BundleError::Damaged(format!(
            "header length {hlen} is implausible"
        )));
    }
    let hbytes = r.take(hlen as usize, "header").map_err(trunc)?;
    let mut hjson = Vec::new();
    zstd::stream::read::Decoder::new(hbytes)
        .and_then(|d| d.take(u64::from(MAX_HEADER)).read_to_end(&mut hjson))
        .map_err(|e| BundleError::Damaged(format!("the header does not decompress ({e})")))?;
    let header: BundleHeader =
        serde_json::from_slice(&hjson).map_err(|e| BundleError::Damaged(format!("header: {e}")))?;
    if header.format != BUNDLE_FORMAT {
        return Err(BundleError::Version(format!(
            "bundle format {}, this kmlink reads format {BUNDLE_FORMAT}",
            header.format
        )));
    }
    if header.record_schema != RECORD_SCHEMA {
        return Err(BundleError::Version(format!(
            "records of schema {}, this kmlink reads schema {RECORD_SCHEMA}",
            header.record_schema
        )));
    }
    if header.payload_len > MAX_PAYLOAD {
        return Err(BundleError::Damaged(format!(
            "payload length {} is implausible",
            header.payload_len
        )));
    }
    let payload = r
        .take(header.payload_len as usize, "payload")
        .map_err(trunc)?;
    let signed_len = r.offset() as usize;
    let signer = match r.remaining() {
        0 => None,
        n if n == 8 + 32 + 64 => {
            let sig_magic = r.take(8, "signature").map_err(trunc)?;
            if sig_magic != SIG_MAGIC {
                return Err(BundleError::Damaged(format!(
                    "{n} bytes after the payload are not a signature"
                )));
            }
            let pk: [u8; 32] = r.array("public key").map_err(trunc)?;
            let sig: [u8; 64] = r.array("signature").map_err(trunc)?;
            Some((pk, sig))
        }
        n if n < 8 + 32 + 64 && bytes[signed_len..].starts_with(&SIG_MAGIC[..n.min(8)]) => {
            return Err(BundleError::Truncated(format!(
                "the signature block has {n} of its 104 bytes"
            )));
        }
        n => {
            return Err(BundleError::Damaged(format!(
                "{n} unexpected bytes after the payload"
            )))
        }
    };
    let payload_sha = hex::encode(sha256(payload));
    if payload_sha != header.payload_sha256 {
        return Err(BundleError::Damaged(format!(
            "the payload's SHA256 is {payload_sha}, the header says {}",
            header.payload_sha256
        )));
    }
    let signer = match signer {
        Some((pk, sig)) => {
            let key = VerifyingKey::from_bytes(&pk).map_err(|_| {
                BundleError::Damaged("the signing key is not a valid ed25519 key".into())
            })?;
            let fp = fingerprint(&key);
            if !trust.keys.iter().any(|k| k.as_bytes() == key.as_bytes()) {
                return Err(BundleError::Untrusted(fp));
            }
            let digest = sha256(&bytes[..signed_len]);
            key.verify(&digest, &Signature::from_bytes(&sig))
                .map_err(|_| BundleError::BadSignature(fp.clone()))?;
            Some(fp)
        }
        None if trust.require_signature => {
            let fps: Vec<String> = trust.keys.iter().map(fingerprint).collect();
            return Err(BundleError::Unsigned(fps.join(", ")));
        }
        None => None,
    };
    let records = decode_payload(payload, &header)?;
    Ok(Verified {
        header,
        records,
        signer,
    })
}

fn decode_payload(payload: &[u8], header: &BundleHeader) -> Result<Vec<KernelRecord>, BundleError> {
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(payload)
        .and_then(|d| d.take(MAX_PAYLOAD).read_to_end(&mut plain))
        .map_err(|e| BundleError::Damaged(format!("the payload does not decompress ({e})")))?;
    let image = Image::parse(&plain).map_err(|e| match e {
        ImageError::Schema { .. } | ImageError::Format { .. } => {
            BundleError::Version(e.to_string())
        }
        e => BundleError::Damaged(format!("record set: {e}")),
    })?;
    if !image.checksum_ok {
        return Err(BundleError::Damaged(
            "the record set fails its checksum".into(),
        ));
    }
    let listed: Vec<(&RecordKey, &str)> = header
        .records
        .iter()
        .map(|e| (&e.key, e.sha256.as_str()))
        .collect();
    let present: Vec<(&RecordKey, &str)> = image
        .entries
        .iter()
        .map(|e| (&e.summary.key, e.summary.sha256.as_str()))
        .collect();
    for (key, sha) in &listed {
        if !present.contains(&(*key, *sha)) {
            return Err(BundleError::Mismatch(format!(
                "{key} (SHA256 {sha}) is listed but not in the payload"
            )));
        }
    }
    for (key, sha) in &present {
        if !listed.contains(&(*key, *sha)) {
            return Err(BundleError::Mismatch(format!(
                "{key} (SHA256 {sha}) is in the payload but not listed"
            )));
        }
    }
    if listed.len() != present.len() {
        return Err(BundleError::Mismatch(format!(
            "{} records listed, {} present",
            listed.len(),
            present.len()
        )));
    }
    (0..image.entries.len())
        .map(|i| {
            image.decode(i).map_err(|what| BundleError::RecordDamaged {
                index: i,
                key: Box::new(image.entries[i].summary.key.clone()),
                what,
            })
        })
        .collect()
}

/// Result of [`install`].
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// What the store did with each record.
    pub put: PutReport,
    /// The signer, if signed.
    pub signer: Option<String>,
    /// Records in the bundle.
    pub records: usize,
}

/// Checks a bundle and stores all its records in one atomic write, or
/// nothing.
pub fn install(store: &Store, bytes: &[u8], trust: &Trust) -> Result<InstallReport, BundleError> {
    let v = read(bytes, trust)?;
    let put = store.put_many(&v.records).map_err(Box::new)?;
    Ok(InstallReport {
        put,
        signer: v.signer,
        records: v.records.len(),
    })
}

/// The records of every bundle in [`DEFAULT_BUNDLES`] (decoded and checked
/// once); the error is kept as text (with its causes), as it is computed
/// once and shared. A record whose architecture is not its bundle's is an
/// error: a record is never served for another architecture's kernels.
pub fn embedded_records() -> Result<Vec<KernelRecord>, String> {
    static CELL: OnceLock<Result<Vec<KernelRecord>, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut all = Vec::new();
        for (arch, bytes) in DEFAULT_BUNDLES {
            if bytes.is_empty() {
                continue;
            }
            let records = read(bytes, &Trust::default())
                .map(|v| v.records)
                .map_err(|e| {
                    format!(
                        "the built-in {} bundle: {}",
                        arch.debian(),
                        kmlink_errors::chain(&e)
                    )
                })?;
            if let Some(r) = records.iter().find(|r| r.identity.arch != arch.machine()) {
                return Err(format!(
                    "the built-in {} bundle holds {}, a record for {}",
                    arch.debian(),
                    r.identity.release,
                    r.identity.arch
                ));
            }
            all.extend(records);
        }
        Ok(all)
    })
    .clone()
}

/// Regenerates the built-in bundle of `arch` from `store`: slim records of
/// every stored kernel of that architecture, cut for its core, unsigned
/// (its integrity is the binary's). Returns the number of records.
pub fn write_default(store: &Store, arch: Arch, out: &Path) -> Result<usize, BundleError> {
    let records: Vec<KernelRecord> = store
        .all()
        .map_err(Box::new)?
        .into_iter()
        .filter(|r| r.identity.arch == arch.machine())
        .collect();
    let manifest = Manifest::core_for(arch).map_err(|source| BundleError::Core {
        arch: arch.machine(),
        source,
    })?;
    let bytes = export(&records, Some((&manifest, arch.core_object())), None)?;
    crate::store::atomic_write(out, &bytes).map_err(Box::new)?;
    Ok(records.len())
}

/// Makes a new ed25519 key pair: the secret key in `path` (mode 0600, never
/// overwritten) and the public key in `path.pub`. Returns the public key.
pub fn keygen(path: &Path) -> Result<VerifyingKey, BundleError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| BundleError::Key {
        path: path.to_path_buf(),
        what: format!("no randomness: {e}"),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let pub_path = public_path(path);
    for p in [path, pub_path.as_path()] {
        // A dangling symlink counts as existing: never write through one.
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(BundleError::Key {
                path: p.to_path_buf(),
                what: "exists already; not overwriting a key — choose another name".into(),
            });
        }
    }
    let io = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| BundleError::Io(kmlink_errors::IoError { op, path, source })
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("creating", path))?;
    writeln!(f, "{SECRET_TAG} {}", hex::encode(seed)).map_err(io("writing", path))?;
    f.sync_all().map_err(io("writing", path))?;
    // create_new (O_EXCL) refuses any existing entry, a symlink included,
    // even if one appeared since the check above.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&pub_path)
        .and_then(|mut f| {
            writeln!(f, "{PUBLIC_TAG} {}", hex::encode(public.as_bytes()))?;
            f.sync_all()
        });
    if let Err(e) = written {
        // No secret key without its public half.
        let _ = std::fs::remove_file(path);
        return Err(io("creating", &pub_path)(e));
    }
    Ok(public)
}

/// `KEY` → `KEY.pub`.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn read_key_file(path: &Path, tag: &str) -> Result<[u8; 32], BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| BundleError::Io(kmlink_errors::IoError::new("reading", path, source)))?;
    let bad = |what: String| BundleError::Key {
        path: path.to_path_buf(),
        what,
    };
    let mut words = text.split_whitespace();
    let (Some(t), Some(h), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad(format!("expected one line \"{tag} <64 hex digits>\"")));
    };
    if t != tag {
        return Err(bad(format!(
            "is a {t:?}, expected a {tag:?} (kmlink bundle keygen makes both)"
        )));
    }
    let bytes = hex::decode(h).map_err(|e| bad(format!("key is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| bad("key is not 32 bytes".into()))
}

/// Reads a secret key made by [`keygen`].
pub fn read_secret_key(path: &Path) -> Result<SigningKey, BundleError> {
    Ok(SigningKey::from_bytes(&read_key_file(path, SECRET_TAG)?))
}

/// Reads a public key made by [`keygen`].
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    VerifyingKey::from_bytes(&read_key_file(path, PUBLIC_TAG)?).map_err(|e| BundleError::Key {
        path: path.to_path_buf(),
        what: format!("not a valid ed25519 public key: {e}"),
    })
}
