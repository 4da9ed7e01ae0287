//! Byte-level primitives of the store and bundle formats: LEB128 varints,
//! length-prefixed strings and a bounds-checked reader whose errors say at
//! which offset of what the bytes ran out or made no sense.

/// A decoding failure: what was being read and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at offset {offset:#x}")]
pub struct DecodeError {
    /// What is wrong.
    pub what: String,
    /// Byte offset inside the buffer being decoded.
    pub offset: u64,
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the enclosing file, for messages.
    base: u64,
}

impl<'a> Reader<'a> {
    /// A reader over `data`, which starts at `base` in its file.
    pub fn new(data: &'a [u8], base: u64) -> Self {
        Reader { data, pos: 0, base }
    }

    /// Current offset in the enclosing file.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// An error at the current offset.
    pub fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            what: what.into(),
            offset: self.offset(),
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what}: needs {n} bytes, only {} left (truncated?)",
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// An unsigned LEB128 varint (at most 10 bytes, no overflow).
    pub fn varint(&mut self, what: &str) -> Result<u64, DecodeError> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                break;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError {
            what: format!("{what}: varint longer than 64 bits"),
            offset: start,
        })
    }

    /// A varint that must be at most `max` (a count or an index).
    pub fn varint_max(&mut self, max: u64, what: &str) -> Result<u64, DecodeError> {
        let at = self.offset();
        let v = self.varint(what)?;
        if v > max {
            return Err(DecodeError {
                what: format!("{what}: {v} is out of range (at most {max})"),
                offset: at,
            });
        }
        Ok(v)
    }

    /// A count of items that each take at least one byte: bounded by what is left.
    pub fn count(&mut self, what: &str) -> Result<usize, DecodeError> {
        let max = self.remaining() as u64;
        Ok(self.varint_max(max, what)? as usize)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(what)?;
        self.take(n, what)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let at = self.offset();
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            what: format!("{what}: not UTF-8"),
            offset: at,
        })
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{what}: {} unexpected bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Shell-style glob (`*` any run, `?` one character), for `--release GLOB`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_limits() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut r = Reader::new(&b, 0);
            assert_eq!(r.varint("v").expect("varint"), v);
            r.finish("v").expect("all read");
        }
        let over = [0xffu8; 11];
        assert!(Reader::new(&over, 0).varint("v").is_err());
        let short = [0x80u8];
        let e = Reader::new(&short, 16).varint("v").expect_err("truncated");
        assert!(e.what.contains("truncated"), "{e}");
        let mut b = Vec::new();
        put_varint(&mut b, 1000);
        assert!(Reader::new(&b, 0).count("n").is_err(), "count beyond data");
    }

    #[test]
    fn globs() {
        assert!(glob_match("6.1.0-*-amd64", "6.1.0-47-amd64"));
        assert!(!glob_match("6.1.0-*-amd64", "6.1.0-47-cloud-amd64x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("6.1?0*", "6.1.0-47"));
        assert!(!glob_match("7.*", "6.1.0"));
        assert!(glob_match("*cloud*", "6.1.0-47-cloud-amd64"));
    }
}
