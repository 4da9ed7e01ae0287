//! Decoding an [`Image`]: its header and structure ([`Image::parse`]) and
//! one record from its blob ([`Image::decode`]).

use super::projection::{parse_directory, Tail};
use super::{
    sha256, Attr, Entry, Image, ImageError, Pool, Projection, RecordKey, RecordSummary,
    BUNDLE_IMAGE_FORMAT, MAGIC, MAX_BLOB, MAX_DEPTH, STORE_FORMAT,
};
use crate::codec::{DecodeError, Reader};
use crate::record::{content_hash, Export, KernelRecord, RECORD_SCHEMA};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;

impl Image {
    pub(super) fn string(&self, r: &mut Reader<'_>, what: &str) -> Result<&str, DecodeError> {
        let max = self.strings.len().saturating_sub(1) as u64;
        if self.strings.is_empty() {
            return Err(r.err(format!("{what}: string id with an empty string table")));
        }
        let id = r.varint_max(max, what)?;
        Ok(&self.strings[id as usize])
    }

    pub(super) fn get_value(&self, r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
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

    pub(super) fn decode_raw(&self, raw: &[u8]) -> Result<KernelRecord, DecodeError> {
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
}
