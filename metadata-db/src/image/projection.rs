//! Format 2's projections: a record cut to what the built-in core may use,
//! the tail and directory that locate them, and the fast lookup of
//! `kmlink build` ([`lookup_projected`]).

use super::{sha256, Image, ImageError, RecordKey, MAX_PROJECTION, STORE_FORMAT, TAIL};
use crate::codec::{DecodeError, Reader};
use crate::record::KernelRecord;

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

pub(super) fn decode_projection(
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

/// The format 2 tail, read from the end of a body (a file without its
/// trailing checksum).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tail {
    pub(super) projections_at: usize,
    pub(super) dir_at: usize,
    pub(super) dir_len: usize,
    pub(super) dir_sha256: [u8; 32],
}

impl Tail {
    /// Reads and bounds-checks the tail at the end of `body`; does not check
    /// the directory's hash.
    pub(super) fn read(body: &[u8]) -> Result<Tail, DecodeError> {
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
    pub(super) fn parse(bytes: &[u8], at: usize) -> Result<Tail, DecodeError> {
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
pub(super) struct DirEntry {
    pub(super) key: RecordKey,
    pub(super) projection: Option<DirProjection>,
}

#[derive(Debug, Clone)]
pub(super) struct DirProjection {
    pub(super) core: String,
    pub(super) at: usize,
    pub(super) len: usize,
    pub(super) sha256: [u8; 32],
}

pub(super) fn parse_directory(dir: &[u8], base: u64) -> Result<Vec<DirEntry>, DecodeError> {
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
