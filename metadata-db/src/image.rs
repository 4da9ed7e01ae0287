//! The encoded form of a set of records, shared by the store file and by
//! bundles: one string table and one per-symbol value pool for all kernels,
//! plus one compressed blob per kernel.
//!
//! ```text
//! file   = "KMLINKDB" u32:format u32:schema strings pools records sha256(all before)
//! strings = n { bytes }                       every name, key and value, once
//! pools  = n { Δname-id  n{u32 crc}  n{attr} }   distinct export values per symbol name
//! attr   = u8:flags(1 gpl, 2 ns) [ns-id] owner-id
//! records = n { release build btf distro suite flavour n:exports u8:flags [32]:sha256 bytes:blob }
//! blob   = zstd( n:exports  runs{gap len}  n×crc-code  n×attr-code  value )
//! ```
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
/// Version of the container format (independent of [`RECORD_SCHEMA`]).
pub const STORE_FORMAT: u32 = 1;
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

    /// Serialises the image.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STORE_FORMAT.to_le_bytes());
        out.extend_from_slice(&RECORD_SCHEMA.to_le_bytes());
        self.encode_strings(&mut out);
        self.encode_pools(&mut out);
        self.encode_entries(&mut out);
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

    /// Parses an encoded image. Structural damage is an error; damage inside
    /// a record is found by [`Image::decode`]. A trailing checksum mismatch
    /// is recorded in [`Image::checksum_ok`], not an error, so intact
    /// records stay readable and damaged ones are named.
    pub fn parse(data: &[u8]) -> Result<Image, ImageError> {
        let mut r = Reader::new(data, 0);
        let magic = r.take(8.min(data.len()), "magic")?;
        if magic != MAGIC {
            return Err(ImageError::Magic(format!("{:02x?}", magic)));
        }
        let format = r.u32_le("format")?;
        if format != STORE_FORMAT {
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
        if data.len() < 16 + 32 {
            return Err(r.err("truncated: no checksum").into());
        }
        let body = &data[..data.len() - 32];
        let checksum_ok = sha256(body) == data[data.len() - 32..];
        let mut r = Reader::new(&body[16..], 16);
        let mut image = Image {
            checksum_ok,
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
