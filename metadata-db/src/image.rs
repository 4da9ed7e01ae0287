//! The encoded form of a set of records, shared by the store file and by
//! bundles: one string table and one per-symbol value pool for all kernels,
//! plus one compressed blob per kernel.
//!
//! ```text
//! file   = "KMLINKDB" u32:format u32:schema strings pools records sha256(all before)     format 1
//! file   = "KMLINKDB" u32:format u32:schema strings pools records
//!          projections directory tail sha256(all before)                               format 2
//! strings = n { bytes }                       every name, key and value, once
//! pools  = n { Δname-id  n{u32 crc}  n{attr} }   distinct export values per symbol name
//! attr   = u8:flags(1 gpl, 2 ns) [ns-id] owner-id
//! records = n { release build btf distro suite flavour n:exports u8:flags [32]:sha256 bytes:blob }
//! blob   = zstd( n:exports  runs{gap len}  n×crc-code  n×attr-code  value )
//! projections = concatenated projection bytes (see below)
//! directory = n { release build btf u8:has [ str:core varint:off varint:len [32]:sha256 ] }
//! tail   = u64:projections-offset u64:directory-offset u64:directory-len [32]:sha256(directory)
//! ```
//!
//! Format 2 (the store's) adds, per record, a *projection*: the record with
//! only the exports the embedded core may bind (see [`crate::slim`]), as
//! zstd-compressed JSON, checked by its own SHA256. The fixed-size tail
//! locates a small directory (keys and projection locations, checked by its
//! own SHA256), so `kmlink build` reads the header, the tail, the directory
//! and one projection, never the whole file ([`lookup_projected`]). Any
//! mismatch there sends the caller back to the full parse, which finds and
//! names the damage as before. Bundles stay format 1.
//!
//! An export costs its record a position in a run-length coded set of name
//! ids and two small pool indices (0 = no CRC): a CRC value any other stored
//! kernel already has costs nothing more, a new one its 4 bytes once, in the
//! pool. The rest of the record is its serde form with every string
//! interned. Each record's SHA256 (of its canonical JSON, see
//! [`crate::record::content_hash`]) is checked whenever it is decoded, so
//! damage anywhere — blob, shared strings, pools, index — is caught and
//! blamed on the records it changes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::codec::DecodeError;
use crate::record::KernelRecord;

mod decode;
mod encode;
mod projection;

pub use projection::{lookup_projected, Lookup, Projection};

/// Magic bytes of a store file.
pub const MAGIC: &[u8; 8] = b"KMLINKDB";
/// Version of the container format (independent of [`RECORD_SCHEMA`])
/// written to stores: format 1 plus projections and a directory.
pub const STORE_FORMAT: u32 = 2;
/// Version of the container format written to bundles (no projections).
pub const BUNDLE_IMAGE_FORMAT: u32 = 1;
/// Bytes of the format 2 tail (before the trailing checksum).
const TAIL: usize = 8 + 8 + 8 + 32;
/// Upper bound of one decompressed projection.
const MAX_PROJECTION: usize = 16 << 20;
/// Byte offset of the record schema (u32 LE) in an encoded image.
pub const RECORD_SCHEMA_OFFSET: usize = 12;
/// Upper bound of one decompressed record blob.
const MAX_BLOB: u64 = 64 << 20;
/// Nesting limit of encoded values.
const MAX_DEPTH: usize = 32;
/// zstd level for record blobs.
const LEVEL: i32 = 19;

/// Which kernel build a stored record describes: Debian release names can
/// cover several uploads, so the release alone is not enough.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct RecordKey {
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub build_string: String,
    /// SHA256 (hex) of the kernel's `.BTF`.
    pub btf_sha256: String,
}

impl RecordKey {
    /// The key of `record`.
    pub fn of(record: &KernelRecord) -> Self {
        RecordKey {
            release: record.identity.release.clone(),
            build_string: record.identity.build_string.clone(),
            btf_sha256: record.identity.btf_sha256.clone(),
        }
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let btf = self.btf_sha256.get(..12).unwrap_or(&self.btf_sha256);
        write!(f, "{} ({}, BTF {btf}…)", self.release, self.build_string)
    }
}

/// What `list` says about one stored record, without decoding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordSummary {
    /// Identity.
    #[serde(flatten)]
    pub key: RecordKey,
    /// `debian`, `ubuntu`, `host`.
    pub distro: String,
    /// Archive suite.
    pub suite: String,
    /// Flavour.
    pub flavour: String,
    /// Number of exports in the record.
    pub exports: u64,
    /// Only what one core manifest needs (see [`crate::slim`]).
    pub slim: bool,
    /// The kernel uses symbol versions (CRCs).
    pub modversions: bool,
    /// SHA256 (hex) of the record's canonical JSON.
    pub sha256: String,
    /// Bytes of the record's own compressed blob (shared strings and CRC
    /// values not included).
    pub blob_bytes: u64,
}

impl RecordSummary {
    fn of(record: &KernelRecord, hash: &[u8; 32], blob_bytes: u64) -> Self {
        RecordSummary {
            key: RecordKey::of(record),
            distro: record.identity.distro.clone(),
            suite: record.identity.suite.clone(),
            flavour: record.identity.flavour.clone(),
            exports: record.exports.len() as u64,
            slim: crate::slim::is_slim(record),
            modversions: record.conventions.modversions,
            sha256: hex::encode(hash),
            blob_bytes,
        }
    }
}

/// The distinct values one export name has taken across stored kernels.
#[derive(Debug, Clone, Default)]
struct Pool {
    crcs: Vec<u32>,
    attrs: Vec<Attr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attr {
    gpl: bool,
    ns: Option<u32>,
    owner: u32,
}

/// One stored record.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index data, readable without decoding.
    pub summary: RecordSummary,
    /// Expected content hash.
    pub hash: [u8; 32],
    /// The compressed blob.
    pub blob: Vec<u8>,
    /// The record cut for the built-in core (format 2 only).
    pub projection: Option<Projection>,
}

/// Why a header or structure is unusable (before any record is looked at).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Wrong magic.
    #[error("not a kmlink record set (starts with {0})")]
    Magic(String),
    /// Container format from another kmlink.
    #[error("container format {found}, this kmlink reads format {expected}")]
    Format {
        /// In the file.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Records of another schema.
    #[error("record schema {found}, this kmlink reads schema {expected}")]
    Schema {
        /// In the file.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Structural damage.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A decoded set of records (blobs still compressed).
#[derive(Debug, Clone, Default)]
pub struct Image {
    strings: Vec<String>,
    ids: HashMap<String, u32>,
    pools: BTreeMap<u32, Pool>,
    /// The records, in insertion order.
    pub entries: Vec<Entry>,
    /// Whether the trailing checksum matched when read (true when built in memory).
    pub checksum_ok: bool,
    /// Container format it was read in ([`STORE_FORMAT`] when built in memory).
    pub format: u32,
}

/// Byte counts of an encoded image, for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImageStats {
    /// Records.
    pub records: usize,
    /// Strings in the shared table.
    pub strings: usize,
    /// Bytes of the string table.
    pub string_bytes: u64,
    /// Distinct (name, CRC) values in the pools.
    pub crc_values: usize,
    /// Bytes of the pools.
    pub pool_bytes: u64,
    /// Bytes of the record index and blobs.
    pub record_bytes: u64,
    /// The whole encoding.
    pub total_bytes: u64,
}

impl Image {
    /// An empty image.
    pub fn new() -> Self {
        Image {
            checksum_ok: true,
            format: STORE_FORMAT,
            ..Default::default()
        }
    }

    /// Index of the entry with this key.
    pub fn position(&self, key: &RecordKey) -> Option<usize> {
        self.entries.iter().position(|e| &e.summary.key == key)
    }

    /// Byte counts (of [`Image::encode`]).
    pub fn stats(&self) -> ImageStats {
        let (mut strings, mut pools, mut entries) = (Vec::new(), Vec::new(), Vec::new());
        self.encode_strings(&mut strings);
        self.encode_pools(&mut pools);
        self.encode_entries(&mut entries);
        let (s, p, e) = (
            strings.len() as u64,
            pools.len() as u64,
            entries.len() as u64,
        );
        ImageStats {
            records: self.entries.len(),
            strings: self.strings.len(),
            string_bytes: s,
            crc_values: self.pools.values().map(|p| p.crcs.len()).sum(),
            pool_bytes: p,
            record_bytes: e,
            total_bytes: 16 + s + p + e + 32,
        }
    }
}

/// SHA256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}
