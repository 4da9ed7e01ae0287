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
use std::io::Read;

use serde::Serialize;
use serde_json::Value;

use crate::codec::{put_bytes, put_varint, DecodeError, Reader};
use crate::record::{content_hash, Export, KernelRecord, RECORD_SCHEMA};

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

/// A record cut to what one core may use, stored beside the full record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// `core <fingerprint>` of the core it was cut for.
    pub core: String,
    /// zstd-compressed canonical JSON of the projected record.
    pub data: Vec<u8>,
    /// SHA256 of `data`.
    pub sha256: [u8; 32],
}

impl Projection {
    /// The projection of `record` for the core built into this binary, if
    /// that core's manifest is readable and the record can serve it.
    pub fn of(record: &KernelRecord) -> Option<Projection> {
        let (core, projected) = crate::slim::project_for_builtin_core(record)?;
        let json = serde_json::to_vec(&projected).ok()?;
        let data = zstd::bulk::compress(&json, 3).ok()?;
        Some(Projection {
            core,
            sha256: sha256(&data),
            data,
        })
    }

    /// Checks and decodes the projected record; the error says what is wrong.
    pub fn decode(&self, key: &RecordKey) -> Result<KernelRecord, String> {
        decode_projection(&self.data, &self.sha256, key)
    }
}

fn decode_projection(
    data: &[u8],
    expected: &[u8; 32],
    key: &RecordKey,
) -> Result<KernelRecord, String> {
    if sha256(data) != *expected {
        return Err("its projection fails its SHA256".into());
    }
    let json = zstd::bulk::decompress(data, MAX_PROJECTION)
        .map_err(|e| format!("its projection does not decompress ({e})"))?;
    let record: KernelRecord = serde_json::from_slice(&json)
        .map_err(|e| format!("its projection does not decode ({e})"))?;
    if RecordKey::of(&record) != *key {
        return Err(format!(
            "its projection is of {}, the index says {key}",
            RecordKey::of(&record)
        ));
    }
    record.validate().map_err(|e| e.reason())?;
    Ok(record)
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

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    /// Index of the entry with this key.
    pub fn position(&self, key: &RecordKey) -> Option<usize> {
        self.entries.iter().position(|e| &e.summary.key == key)
    }

    /// Encodes `record` and appends it (no check for duplicates: see
    /// [`Image::position`]). Returns its index.
    pub fn push(&mut self, record: &KernelRecord) -> Result<usize, String> {
        let hash = content_hash(record);
        let blob = self.encode_blob(record)?;
        let summary = RecordSummary::of(record, &hash, blob.len() as u64);
        self.entries.push(Entry {
            summary,
            hash,
            blob,
            projection: Projection::of(record),
        });
        Ok(self.entries.len() - 1)
    }

    /// Replaces entry `index` by `record`.
    pub fn replace(&mut self, index: usize, record: &KernelRecord) -> Result<(), String> {
        let hash = content_hash(record);
        let blob = self.encode_blob(record)?;
        self.entries[index] = Entry {
            summary: RecordSummary::of(record, &hash, blob.len() as u64),
            hash,
            blob,
            projection: Projection::of(record),
        };
        Ok(())
    }

    /// Rebuilds the shared tables from the given records (drops strings and
    /// values only removed or replaced records used).
    pub fn rebuild(records: &[KernelRecord]) -> Result<Image, String> {
        let mut image = Image::new();
        for r in records {
            image.push(r)?;
        }
        Ok(image)
    }

    fn encode_blob(&mut self, record: &KernelRecord) -> Result<Vec<u8>, String> {
        let mut raw = Vec::new();
        // Exports: name ids first (so a first kernel's names get ids in order).
        let mut items: Vec<(u32, u64, u64)> = Vec::with_capacity(record.exports.len());
        for (name, e) in &record.exports {
            let id = self.intern(name);
            let attr = Attr {
                gpl: e.gpl,
                ns: e.namespace.as_deref().map(|n| self.intern(n)),
                owner: self.intern(&e.owner),
            };
            let pool = self.pools.entry(id).or_default();
            let crc_code = match e.crc {
                None => 0,
                Some(c) => match pool.crcs.iter().position(|&x| x == c) {
                    Some(p) => p as u64 + 1,
                    None => {
                        pool.crcs.push(c);
                        pool.crcs.len() as u64
                    }
                },
            };
            let attr_code = match pool.attrs.iter().position(|a| *a == attr) {
                Some(p) => p as u64,
                None => {
                    pool.attrs.push(attr);
                    pool.attrs.len() as u64 - 1
                }
            };
            items.push((id, crc_code, attr_code));
        }
        items.sort_unstable();
        put_varint(&mut raw, items.len() as u64);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut next = 0u64; // first id after the previous run
        for &(id, _, _) in &items {
            let id = u64::from(id);
            match runs.last_mut() {
                Some((_, len)) if id == next => *len += 1,
                _ => runs.push((id - next, 1)),
            }
            next = id + 1;
        }
        put_varint(&mut raw, runs.len() as u64);
        for (gap, len) in runs {
            put_varint(&mut raw, gap);
            put_varint(&mut raw, len);
        }
        for &(_, c, _) in &items {
            put_varint(&mut raw, c);
        }
        for &(_, _, a) in &items {
            put_varint(&mut raw, a);
        }
        // Everything else, as its serde form with strings interned.
        let mut value = serde_json::to_value(record).map_err(|e| e.to_string())?;
        if let Some(obj) = value.as_object_mut() {
            obj.remove("exports");
        }
        self.put_value(&mut raw, &value);
        zstd::bulk::compress(&raw, LEVEL).map_err(|e| format!("zstd: {e}"))
    }

    fn put_value(&mut self, out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    out.push(3);
                    put_varint(out, u);
                } else if let Some(i) = n.as_i64() {
                    out.push(4);
                    put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
                } else {
                    out.push(5);
                    out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
                }
            }
            Value::String(s) => {
                out.push(6);
                let id = self.intern(s);
                put_varint(out, u64::from(id));
            }
            Value::Array(a) => {
                out.push(7);
                put_varint(out, a.len() as u64);
                for x in a {
                    self.put_value(out, x);
                }
            }
            Value::Object(m) => {
                out.push(8);
                put_varint(out, m.len() as u64);
                for (k, x) in m {
                    let id = self.intern(k);
                    put_varint(out, u64::from(id));
                    self.put_value(out, x);
                }
            }
        }
    }

    fn string(&self, r: &mut Reader<'_>, what: &str) -> Result<&str, DecodeError> {
        let max = self.strings.len().saturating_sub(1) as u64;
        if self.strings.is_empty() {
            return Err(r.err(format!("{what}: string id with an empty string table")));
        }
        let id = r.varint_max(max, what)?;
        Ok(&self.strings[id as usize])
    }

    fn get_value(&self, r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(r.err("value nested too deeply"));
        }
        Ok(match r.u8("value tag")? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(r.varint("number")?),
            4 => {
                let z = r.varint("number")?;
                Value::from(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            5 => {
                let f = f64::from_le_bytes(r.array("float")?);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| r.err("float is not finite"))?
            }
            6 => Value::String(self.string(r, "string id")?.to_owned()),
            7 => {
                let n = r.count("array length")?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.get_value(r, depth + 1)?);
                }
                Value::Array(a)
            }
            8 => {
                let n = r.count("object length")?;
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = self.string(r, "key id")?.to_owned();
                    m.insert(k, self.get_value(r, depth + 1)?);
                }
                Value::Object(m)
            }
            t => return Err(r.err(format!("unknown value tag {t}"))),
        })
    }

    /// Decodes entry `index` and checks it against its hash and index data.
    /// The error says what is wrong (the caller names the record).
    pub fn decode(&self, index: usize) -> Result<KernelRecord, String> {
        let entry = &self.entries[index];
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(&entry.blob[..])
            .and_then(|d| d.take(MAX_BLOB).read_to_end(&mut raw))
            .map_err(|e| format!("its compressed data does not decompress ({e})"))?;
        let record = self
            .decode_raw(&raw)
            .map_err(|e| format!("its data does not decode: {e}"))?;
        let hash = content_hash(&record);
        if hash != entry.hash {
            return Err(format!(
                "content hash {} does not match the stored {}",
                hex::encode(hash),
                hex::encode(entry.hash)
            ));
        }
        let got = RecordSummary::of(&record, &hash, entry.blob.len() as u64);
        if got != entry.summary {
            return Err(format!(
                "the index says {:?} but the record says {:?}",
                entry.summary, got
            ));
        }
        record.validate().map_err(|e| e.reason())?;
        Ok(record)
    }

    fn decode_raw(&self, raw: &[u8]) -> Result<KernelRecord, DecodeError> {
        let mut r = Reader::new(raw, 0);
        let n = r.count("export count")?;
        let nruns = r.count("run count")?;
        let mut ids: Vec<u32> = Vec::with_capacity(n);
        let mut next = 0u64;
        let nstrings = self.strings.len() as u64;
        for _ in 0..nruns {
            let gap = r.varint_max(nstrings, "run gap")?;
            let len = r.varint_max(nstrings, "run length")?;
            let start = next + gap;
            if start + len > nstrings || ids.len() as u64 + len > n as u64 {
                return Err(r.err("export run beyond the string table or count"));
            }
            ids.extend((start..start + len).map(|i| i as u32));
            next = start + len;
        }
        if ids.len() != n {
            return Err(r.err(format!("runs give {} exports, count says {n}", ids.len())));
        }
        let empty = Pool::default();
        let mut crcs = Vec::with_capacity(n);
        for id in &ids {
            let pool = self.pools.get(id).unwrap_or(&empty);
            let c = r.varint_max(pool.crcs.len() as u64, "CRC index")?;
            crcs.push(if c == 0 {
                None
            } else {
                Some(pool.crcs[c as usize - 1])
            });
        }
        let mut exports = BTreeMap::new();
        for (id, crc) in ids.iter().zip(crcs) {
            let pool = self.pools.get(id).unwrap_or(&empty);
            if pool.attrs.is_empty() {
                return Err(r.err(format!(
                    "export {} has no attributes",
                    self.strings[*id as usize]
                )));
            }
            let a =
                &pool.attrs[r.varint_max(pool.attrs.len() as u64 - 1, "attribute index")? as usize];
            exports.insert(
                self.strings[*id as usize].clone(),
                Export {
                    crc,
                    gpl: a.gpl,
                    namespace: a.ns.map(|i| self.strings[i as usize].clone()),
                    owner: self.strings[a.owner as usize].clone(),
                },
            );
        }
        let mut value = self.get_value(&mut r, 0)?;
        r.finish("record")?;
        match value.as_object_mut() {
            Some(obj) => obj.insert("exports".into(), Value::Object(Default::default())),
            None => return Err(r.err("record is not an object")),
        };
        let mut record: KernelRecord =
            serde_json::from_value(value).map_err(|e| r.err(format!("record fields: {e}")))?;
        record.exports = exports;
        Ok(record)
    }

    /// Serialises the image in format 1 (bundles: no projections).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BUNDLE_IMAGE_FORMAT.to_le_bytes());
        out.extend_from_slice(&RECORD_SCHEMA.to_le_bytes());
        self.encode_strings(&mut out);
        self.encode_pools(&mut out);
        self.encode_entries(&mut out);
        let sum = sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Serialises the image in format 2 (stores): format 1's sections, then
    /// the projections, the directory and the tail locating it.
    pub fn encode_store(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STORE_FORMAT.to_le_bytes());
        out.extend_from_slice(&RECORD_SCHEMA.to_le_bytes());
        self.encode_strings(&mut out);
        self.encode_pools(&mut out);
        self.encode_entries(&mut out);
        let projections_at = out.len() as u64;
        let mut dir = Vec::new();
        put_varint(&mut dir, self.entries.len() as u64);
        for e in &self.entries {
            let k = &e.summary.key;
            put_bytes(&mut dir, k.release.as_bytes());
            put_bytes(&mut dir, k.build_string.as_bytes());
            put_bytes(&mut dir, k.btf_sha256.as_bytes());
            match &e.projection {
                None => dir.push(0),
                Some(p) => {
                    dir.push(1);
                    put_bytes(&mut dir, p.core.as_bytes());
                    put_varint(&mut dir, out.len() as u64);
                    put_varint(&mut dir, p.data.len() as u64);
                    dir.extend_from_slice(&p.sha256);
                    out.extend_from_slice(&p.data);
                }
            }
        }
        let dir_at = out.len() as u64;
        out.extend_from_slice(&dir);
        out.extend_from_slice(&projections_at.to_le_bytes());
        out.extend_from_slice(&dir_at.to_le_bytes());
        out.extend_from_slice(&(dir.len() as u64).to_le_bytes());
        out.extend_from_slice(&sha256(&dir));
        let sum = sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    fn encode_strings(&self, out: &mut Vec<u8>) {
        put_varint(out, self.strings.len() as u64);
        for s in &self.strings {
            put_bytes(out, s.as_bytes());
        }
    }

    fn encode_pools(&self, out: &mut Vec<u8>) {
        put_varint(out, self.pools.len() as u64);
        let mut prev = 0u64;
        for (&id, pool) in &self.pools {
            put_varint(out, u64::from(id) - prev);
            prev = u64::from(id);
            put_varint(out, pool.crcs.len() as u64);
            for c in &pool.crcs {
                out.extend_from_slice(&c.to_le_bytes());
            }
            put_varint(out, pool.attrs.len() as u64);
            for a in &pool.attrs {
                out.push(u8::from(a.gpl) | (u8::from(a.ns.is_some()) << 1));
                if let Some(ns) = a.ns {
                    put_varint(out, u64::from(ns));
                }
                put_varint(out, u64::from(a.owner));
            }
        }
    }

    fn encode_entries(&self, out: &mut Vec<u8>) {
        put_varint(out, self.entries.len() as u64);
        for e in &self.entries {
            let s = &e.summary;
            for text in [
                &s.key.release,
                &s.key.build_string,
                &s.key.btf_sha256,
                &s.distro,
                &s.suite,
                &s.flavour,
            ] {
                put_bytes(out, text.as_bytes());
            }
            put_varint(out, s.exports);
            out.push(u8::from(s.slim) | (u8::from(s.modversions) << 1));
            out.extend_from_slice(&e.hash);
            put_bytes(out, &e.blob);
        }
    }

    /// Checks the 16-byte header (magic, container format, record schema)
    /// and returns the container format (1 or 2).
    pub fn check_header(data: &[u8]) -> Result<u32, ImageError> {
        let mut r = Reader::new(data, 0);
        let magic = r.take(8.min(data.len()), "magic")?;
        if magic != MAGIC {
            return Err(ImageError::Magic(format!("{:02x?}", magic)));
        }
        let format = r.u32_le("format")?;
        if format != STORE_FORMAT && format != BUNDLE_IMAGE_FORMAT {
            return Err(ImageError::Format {
                found: format,
                expected: STORE_FORMAT,
            });
        }
        let schema = r.u32_le("schema")?;
        if schema != RECORD_SCHEMA {
            return Err(ImageError::Schema {
                found: schema,
                expected: RECORD_SCHEMA,
            });
        }
        Ok(format)
    }

    /// Parses an encoded image. Structural damage is an error; damage inside
    /// a record is found by [`Image::decode`]. A trailing checksum mismatch
    /// is recorded in [`Image::checksum_ok`], not an error, so intact
    /// records stay readable and damaged ones are named. A damaged format 2
    /// directory only loses the projections (they are derived data).
    pub fn parse(data: &[u8]) -> Result<Image, ImageError> {
        let format = Self::check_header(data)?;
        if data.len() < 16 + 32 {
            return Err(Reader::new(data, 0).err("truncated: no checksum").into());
        }
        let body = &data[..data.len() - 32];
        let checksum_ok = sha256(body) == data[data.len() - 32..];
        let (records_end, dir) = if format == STORE_FORMAT {
            let t = Tail::read(body).map_err(ImageError::Decode)?;
            let dir_bytes = &body[t.dir_at..t.dir_at + t.dir_len];
            let dir = if sha256(dir_bytes) == t.dir_sha256 {
                parse_directory(dir_bytes, t.dir_at as u64).ok()
            } else {
                None
            };
            (t.projections_at, dir.map(|d| (d, t.dir_at)))
        } else {
            (body.len(), None)
        };
        let mut r = Reader::new(&body[16..records_end], 16);
        let mut image = Image {
            checksum_ok,
            format,
            ..Default::default()
        };
        let n = r.count("string count")?;
        image.strings.reserve(n);
        for _ in 0..n {
            let s = r.str("string")?.to_owned();
            image.ids.insert(s.clone(), image.strings.len() as u32);
            image.strings.push(s);
        }
        let nstr = image.strings.len() as u64;
        let maxid = nstr.saturating_sub(1);
        let npools = r.count("pool count")?;
        let mut prev = 0u64;
        for i in 0..npools {
            let id = prev + r.varint_max(nstr, "pool name id")?;
            if id >= nstr || (i > 0 && id == prev) {
                return Err(r
                    .err(format!("pool name id {id} out of order or range"))
                    .into());
            }
            prev = id;
            let mut pool = Pool::default();
            let nc = r.count("CRC count")?;
            for _ in 0..nc {
                pool.crcs.push(r.u32_le("CRC")?);
            }
            let na = r.count("attribute count")?;
            for _ in 0..na {
                let flags = r.u8("attribute flags")?;
                if flags & !3 != 0 {
                    return Err(r.err(format!("attribute flags {flags:#x}")).into());
                }
                let ns = if flags & 2 != 0 {
                    Some(r.varint_max(maxid, "namespace id")? as u32)
                } else {
                    None
                };
                let owner = r.varint_max(maxid, "owner id")? as u32;
                pool.attrs.push(Attr {
                    gpl: flags & 1 != 0,
                    ns,
                    owner,
                });
            }
            image.pools.insert(id as u32, pool);
        }
        let nrec = r.count("record count")?;
        for _ in 0..nrec {
            let mut text = || r.str("record index").map(str::to_owned);
            let key = RecordKey {
                release: text()?,
                build_string: text()?,
                btf_sha256: text()?,
            };
            let distro = text()?;
            let suite = text()?;
            let flavour = text()?;
            let exports = r.varint("export count")?;
            let flags = r.u8("record flags")?;
            let hash: [u8; 32] = r.array("record hash")?;
            let blob = r.bytes("record blob")?.to_vec();
            image.entries.push(Entry {
                projection: None,
                summary: RecordSummary {
                    key,
                    distro,
                    suite,
                    flavour,
                    exports,
                    slim: flags & 1 != 0,
                    modversions: flags & 2 != 0,
                    sha256: hex::encode(hash),
                    blob_bytes: blob.len() as u64,
                },
                hash,
                blob,
            });
        }
        r.finish("record set")?;
        // Projections are derived data: one whose directory entry disagrees
        // with the index or points outside its area is dropped (the next
        // write recomputes it), never an error.
        if let Some((dir, dir_at)) = dir.filter(|(d, _)| d.len() == image.entries.len()) {
            for (e, d) in image.entries.iter_mut().zip(dir) {
                e.projection = d
                    .projection
                    .filter(|p| d.key == e.summary.key && p.at >= records_end)
                    .filter(|p| p.at.checked_add(p.len).is_some_and(|end| end <= dir_at))
                    .map(|p| Projection {
                        core: p.core,
                        data: body[p.at..p.at + p.len].to_vec(),
                        sha256: p.sha256,
                    });
            }
        }
        Ok(image)
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

/// The format 2 tail, read from the end of a body (a file without its
/// trailing checksum).
#[derive(Debug, Clone, Copy)]
struct Tail {
    projections_at: usize,
    dir_at: usize,
    dir_len: usize,
    dir_sha256: [u8; 32],
}

impl Tail {
    /// Reads and bounds-checks the tail at the end of `body`; does not check
    /// the directory's hash.
    fn read(body: &[u8]) -> Result<Tail, DecodeError> {
        let at = body.len().checked_sub(TAIL).filter(|&a| a >= 16);
        let Some(at) = at else {
            return Err(DecodeError {
                what: "truncated: no directory tail".into(),
                offset: 0,
            });
        };
        Tail::parse(&body[at..], at)
    }

    /// Parses the `TAIL` bytes found at offset `at` (the end of the
    /// directory must be `at`).
    fn parse(bytes: &[u8], at: usize) -> Result<Tail, DecodeError> {
        let mut r = Reader::new(bytes, at as u64);
        let mut word =
            |what: &str| -> Result<u64, DecodeError> { Ok(u64::from_le_bytes(r.array(what)?)) };
        let projections_at = word("projections offset")?;
        let dir_at = word("directory offset")?;
        let dir_len = word("directory length")?;
        let dir_sha256 = r.array("directory hash")?;
        let fits = projections_at >= 16
            && projections_at <= dir_at
            && dir_at.checked_add(dir_len) == Some(at as u64);
        if !fits {
            return Err(DecodeError {
                what: format!(
                    "directory tail out of bounds (projections {projections_at:#x}, directory {dir_at:#x}+{dir_len:#x}, tail {at:#x})"
                ),
                offset: at as u64,
            });
        }
        Ok(Tail {
            projections_at: projections_at as usize,
            dir_at: dir_at as usize,
            dir_len: dir_len as usize,
            dir_sha256,
        })
    }
}

/// One directory entry.
#[derive(Debug, Clone)]
struct DirEntry {
    key: RecordKey,
    projection: Option<DirProjection>,
}

#[derive(Debug, Clone)]
struct DirProjection {
    core: String,
    at: usize,
    len: usize,
    sha256: [u8; 32],
}

fn parse_directory(dir: &[u8], base: u64) -> Result<Vec<DirEntry>, DecodeError> {
    let mut r = Reader::new(dir, base);
    let n = r.count("directory entries")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut text = || r.str("directory key").map(str::to_owned);
        let key = RecordKey {
            release: text()?,
            build_string: text()?,
            btf_sha256: text()?,
        };
        let projection = match r.u8("projection flag")? {
            0 => None,
            1 => {
                let core = r.str("projection core")?.to_owned();
                let at = r.varint_max(u64::from(u32::MAX) << 8, "projection offset")? as usize;
                let len = r.varint_max(u64::from(u32::MAX), "projection length")? as usize;
                let sha256 = r.array("projection hash")?;
                Some(DirProjection {
                    core,
                    at,
                    len,
                    sha256,
                })
            }
            f => return Err(r.err(format!("projection flag {f}"))),
        };
        out.push(DirEntry { key, projection });
    }
    r.finish("directory")?;
    Ok(out)
}

/// Why [`lookup_projected`] found no answer (the caller falls back to the
/// full parse, which names any damage).
#[derive(Debug)]
pub enum Lookup {
    /// Every build of the release, from its projection.
    Found(Vec<KernelRecord>),
    /// The directory says no record has this release.
    Absent,
    /// No fast answer: format 1, a record without a projection for this
    /// core, or something failed a check (the reason, for the log).
    Fallback(String),
}

/// Reads the projections of every stored build of `release` cut for `core`
/// from an open store file of `len` bytes, touching only its header, tail,
/// directory and those projections. A header error is returned as is; any
/// other problem is a [`Lookup::Fallback`].
pub fn lookup_projected(
    file: &std::fs::File,
    len: u64,
    release: &str,
    core: &str,
) -> Result<Lookup, ImageError> {
    use std::os::unix::fs::FileExt;
    let read_at = |at: u64, n: usize| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| format!("reading {n} bytes at {at:#x}: {e}"))?;
        Ok(buf)
    };
    let mut header = vec![0u8; 16.min(len as usize)];
    file.read_exact_at(&mut header, 0).map_err(|e| {
        ImageError::Decode(DecodeError {
            what: format!("reading the header: {e}"),
            offset: 0,
        })
    })?;
    if Image::check_header(&header)? != STORE_FORMAT {
        return Ok(Lookup::Fallback("container format 1".into()));
    }
    let fallback = |what: String| Ok(Lookup::Fallback(what));
    let Some(tail_at) = len.checked_sub((TAIL + 32) as u64).filter(|&a| a >= 16) else {
        return fallback("too short for a directory".into());
    };
    let tail = match read_at(tail_at, TAIL)
        .and_then(|b| Tail::parse(&b, tail_at as usize).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => return fallback(e),
    };
    let dir_bytes = match read_at(tail.dir_at as u64, tail.dir_len) {
        Ok(b) => b,
        Err(e) => return fallback(e),
    };
    if sha256(&dir_bytes) != tail.dir_sha256 {
        return fallback("the directory fails its SHA256".into());
    }
    let dir = match parse_directory(&dir_bytes, tail.dir_at as u64) {
        Ok(d) => d,
        Err(e) => return fallback(e.to_string()),
    };
    let mut found = Vec::new();
    for d in dir.iter().filter(|d| d.key.release == release) {
        let Some(p) = d.projection.as_ref().filter(|p| p.core == core) else {
            return fallback(format!("{} has no projection for {core}", d.key));
        };
        if p.at < tail.projections_at || p.at.checked_add(p.len).is_none_or(|end| end > tail.dir_at)
        {
            return fallback(format!("{}: projection out of bounds", d.key));
        }
        let record = read_at(p.at as u64, p.len)
            .and_then(|data| decode_projection(&data, &p.sha256, &d.key));
        match record {
            Ok(r) => found.push(r),
            Err(e) => return fallback(format!("{}: {e}", d.key)),
        }
    }
    if found.is_empty() {
        return Ok(Lookup::Absent);
    }
    found.sort_by(|a, b| RecordKey::of(a).cmp(&RecordKey::of(b)));
    Ok(Lookup::Found(found))
}
