//! Names as the monitor writes them: a comm or a cache name with every byte
//! outside `0x21..=0x7e` and the backslash escaped as `\xHH`, so that a field
//! never contains whitespace.

use std::fmt;

/// A name (comm or cache) as raw bytes, unescaped from the wire form.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Vec<u8>);

/// Why a field is not a valid escaped name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad escape at byte {offset} of {field:?}: expected \\xHH with two hex digits")]
pub struct BadEscape {
    /// The field as read.
    pub field: String,
    /// Byte offset of the offending backslash.
    pub offset: usize,
}

impl Name {
    /// Decodes the wire form (`\xHH` escapes) into raw bytes.
    pub fn unescape(field: &str) -> Result<Self, BadEscape> {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                let hex = bytes
                    .get(i + 1..i + 4)
                    .filter(|h| h[0] == b'x')
                    .and_then(|h| std::str::from_utf8(&h[1..]).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 4;
                    }
                    None => {
                        return Err(BadEscape {
                            field: field.to_string(),
                            offset: i,
                        })
                    }
                }
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Ok(Name(out))
    }

    /// A name from raw bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Name(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The wire form: the same escaping as the monitor (`-` for empty).
    pub fn wire(&self) -> String {
        if self.0.is_empty() {
            return "-".to_string();
        }
        let mut s = String::with_capacity(self.0.len());
        for &b in &self.0 {
            if (0x21..=0x7e).contains(&b) && b != b'\\' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\x{b:02x}"));
            }
        }
        s
    }

    /// For people and terminals: valid UTF-8 is shown as text (so `écrivain`
    /// reads as such), while whitespace, control characters, the backslash and
    /// bytes that are not UTF-8 stay escaped as `\xHH`. The result never
    /// contains whitespace, so text output stays safe for `awk`.
    pub fn display(&self) -> String {
        let mut s = String::with_capacity(self.0.len());
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_whitespace() || c.is_control() || c == '\\' {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        s.push_str(&format!("\\x{b:02x}"));
                    }
                } else {
                    s.push(c);
                }
            }
            for b in chunk.invalid() {
                s.push_str(&format!("\\x{b:02x}"));
            }
        }
        s
    }

    /// Lossy UTF-8 of the raw bytes (for JSON, which cannot hold raw bytes).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Whether `pattern` (compared with the raw bytes, the wire form and the
    /// display form) matches the whole name.
    pub fn matches_exactly(&self, pattern: &str) -> bool {
        self.0 == pattern.as_bytes() || self.wire() == pattern || self.display() == pattern
    }

    /// Whether the display form or the raw bytes contain `needle`
    /// (case-insensitive for ASCII).
    pub fn contains(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.display().to_ascii_lowercase().contains(&needle)
            || self.lossy().to_ascii_lowercase().contains(&needle)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", self.wire())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.as_bytes().to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unescape_round_trips_through_wire() {
        let n = Name::unescape(r"kworker\x2fu8:1\x20x\x5c").unwrap();
        assert_eq!(n.as_bytes(), b"kworker/u8:1 x\\");
        assert_eq!(n.wire(), r"kworker/u8:1\x20x\x5c");
        assert_eq!(Name::unescape(&n.wire()).unwrap(), n);
    }

    #[test]
    fn display_decodes_utf8_but_keeps_whitespace_escaped() {
        let n = Name::unescape(r"\xc3\xa9crit\x20\x07\xff").unwrap();
        assert_eq!(n.display(), r"écrit\x20\x07\xff");
        assert_eq!(n.lossy(), "écrit \u{7}\u{fffd}");
    }

    #[test]
    fn bad_escapes_are_errors() {
        for bad in [r"a\x4", r"a\y41", r"a\", r"\xzz"] {
            let err = Name::unescape(bad).unwrap_err();
            assert_eq!(err.field, bad);
        }
    }

    #[test]
    fn matching() {
        let n = Name::unescape(r"my\x20prog").unwrap();
        assert!(n.matches_exactly("my prog"));
        assert!(n.matches_exactly(r"my\x20prog"));
        assert!(n.contains("PROG"));
        assert!(!n.matches_exactly("my"));
    }
}
