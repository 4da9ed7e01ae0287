//! A kernel `.config`.

use std::collections::HashMap;

/// Parsed `CONFIG_*` settings. Lines `# CONFIG_X is not set` record `"n"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: HashMap<String, String>,
}

impl KernelConfig {
    /// Parse `.config` text: `CONFIG_X=y|m|"str"|123`, `# CONFIG_X is not
    /// set`; other lines are ignored. String values are unquoted (`\"` and
    /// `\\` unescaped).
    pub fn parse(text: &str) -> Self {
        let mut values = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(key) = rest.strip_suffix(" is not set") {
                    if key.starts_with("CONFIG_") && !key.contains(char::is_whitespace) {
                        values.insert(key.to_owned(), "n".to_owned());
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !key.starts_with("CONFIG_") || key.contains(char::is_whitespace) {
                continue;
            }
            values.insert(key.to_owned(), unquote(value));
        }
        KernelConfig { values }
    }

    /// Value for `key` (with or without the `CONFIG_` prefix).
    pub fn get(&self, key: &str) -> Option<&str> {
        let v = if key.starts_with("CONFIG_") {
            self.values.get(key)
        } else {
            self.values.get(&format!("CONFIG_{key}"))
        };
        v.map(String::as_str)
    }

    /// `y` or `m`.
    pub fn enabled(&self, key: &str) -> bool {
        matches!(self.get(key), Some("y" | "m"))
    }

    /// Number of settings recorded.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let c = KernelConfig::parse(
            "#\n# Automatically generated file\n#\nCONFIG_MODVERSIONS=y\nCONFIG_E1000=m\n\
             # CONFIG_PREEMPT_RT is not set\nCONFIG_LOCALVERSION=\"-amd64 \\\"x\\\"\"\n\
             CONFIG_NR_CPUS=8192\nCONFIG_EMPTY=\"\"\nnot a config line\n",
        );
        assert_eq!(c.get("MODVERSIONS"), Some("y"));
        assert_eq!(c.get("CONFIG_MODVERSIONS"), Some("y"));
        assert!(c.enabled("MODVERSIONS"));
        assert!(c.enabled("E1000"));
        assert_eq!(c.get("PREEMPT_RT"), Some("n"));
        assert!(!c.enabled("PREEMPT_RT"));
        assert_eq!(c.get("LOCALVERSION"), Some("-amd64 \"x\""));
        assert_eq!(c.get("NR_CPUS"), Some("8192"));
        assert_eq!(c.get("EMPTY"), Some(""));
        assert_eq!(c.get("MISSING"), None);
        assert!(!c.enabled("MISSING"));
        assert_eq!(c.len(), 6);
        assert!(KernelConfig::parse("").is_empty());
    }
}
