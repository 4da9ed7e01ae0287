//! Encoding an [`Image`]: interning strings and export values, one
//! compressed blob per record, and the file formats 1 and 2.

use super::{
    sha256, Attr, Entry, Image, Projection, RecordSummary, BUNDLE_IMAGE_FORMAT, LEVEL, MAGIC,
    STORE_FORMAT,
};
use crate::codec::{put_bytes, put_varint};
use crate::record::{content_hash, KernelRecord, RECORD_SCHEMA};
use serde_json::Value;

impl Image {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
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

    pub(super) fn encode_blob(&mut self, record: &KernelRecord) -> Result<Vec<u8>, String> {
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

    pub(super) fn put_value(&mut self, out: &mut Vec<u8>, v: &Value) {
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

    pub(super) fn encode_strings(&self, out: &mut Vec<u8>) {
        put_varint(out, self.strings.len() as u64);
        for s in &self.strings {
            put_bytes(out, s.as_bytes());
        }
    }

    pub(super) fn encode_pools(&self, out: &mut Vec<u8>) {
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

    pub(super) fn encode_entries(&self, out: &mut Vec<u8>) {
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
}
