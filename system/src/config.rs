//! `/etc/kmlink/kmlink.toml`: what the service and the kernel hooks do.
//!
//! ```toml
//! [load]
//! at_boot = true            # kmlink.service loads the monitor at boot
//! backend = "tracepoint"    # or "kprobe"
//! set = []                  # link-time options, e.g. ["ring_events=65536"]
//!
//! [sign]                    # optional: sign with this key (else kmlink's,
//! key = "/var/lib/kmlink/keys/kmlink-signing.key"   # DKMS's or shim-signed's)
//! cert = "/var/lib/kmlink/keys/kmlink-signing.der"
//! hash = "sha256"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the packaged configuration lives.
pub const DEFAULT_PATH: &str = "/etc/kmlink/kmlink.toml";

/// Largest configuration file read (it is a few lines).
const MAX_LEN: u64 = 64 << 10;

/// The configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Loading.
    #[serde(default)]
    pub load: Load,
    /// Signing.
    #[serde(default)]
    pub sign: Option<Sign>,
}

/// `[load]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Load the monitor at boot.
    #[serde(default = "yes")]
    pub at_boot: bool,
    /// "tracepoint" or "kprobe".
    #[serde(default = "tracepoint")]
    pub backend: String,
    /// Link-time options, `NAME=VALUE`.
    #[serde(default)]
    pub set: Vec<String>,
}

/// `[sign]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sign {
    /// Private key.
    pub key: PathBuf,
    /// Its certificate.
    pub cert: PathBuf,
    /// sha256, sha384 or sha512.
    #[serde(default = "sha256")]
    pub hash: String,
}

fn yes() -> bool {
    true
}
fn tracepoint() -> String {
    "tracepoint".into()
}
fn sha256() -> String {
    "sha256".into()
}

impl Default for Load {
    fn default() -> Self {
        Load {
            at_boot: true,
            backend: tracepoint(),
            set: Vec::new(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or keys kmlink does not know.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's words (line and column included).
        message: String,
    },
    /// A value that is not allowed.
    #[error("{}: {field} = {value:?}: {why}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: String,
    },
}

impl Config {
    /// Parses and validates a configuration's text; `path` names it.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let bad = |field, value: &str, why: &str| ConfigError::Value {
            path: path.to_path_buf(),
            field,
            value: value.to_string(),
            why: why.to_string(),
        };
        if !matches!(config.load.backend.as_str(), "tracepoint" | "kprobe") {
            return Err(bad(
                "load.backend",
                &config.load.backend,
                "one of \"tracepoint\", \"kprobe\"",
            ));
        }
        for s in &config.load.set {
            if s.split_once('=')
                .is_none_or(|(n, v)| n.is_empty() || v.is_empty())
            {
                return Err(bad("load.set", s, "each entry is \"NAME=VALUE\""));
            }
        }
        if let Some(sign) = &config.sign {
            if !matches!(sign.hash.as_str(), "sha256" | "sha384" | "sha512") {
                return Err(bad("sign.hash", &sign.hash, "sha256, sha384 or sha512"));
            }
            for (field, p) in [("sign.key", &sign.key), ("sign.cert", &sign.cert)] {
                if !p.is_file() {
                    return Err(bad(
                        field,
                        &p.display().to_string(),
                        "no such file (make a key with: kmlink key generate)",
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Reads `path`; a missing file is the default configuration.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        file.take(MAX_LEN).read_to_string(&mut text).map_err(io)?;
        Config::parse(&text, path)
    }

    /// The options as `kmlink build` flags take them, for messages and
    /// the prebuilt module's record.
    pub fn describe(&self) -> String {
        let mut s = format!("backend={}", self.load.backend);
        for o in &self.load.set {
            s.push(' ');
            s.push_str(o);
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("/etc/kmlink/kmlink.toml"))
    }

    #[test]
    fn defaults_and_a_full_file() {
        assert_eq!(parse("").unwrap(), Config::default());
        let c =
            parse("[load]\nat_boot = false\nbackend = \"kprobe\"\nset = [\"ring_events=4096\"]\n")
                .unwrap();
        assert!(!c.load.at_boot);
        assert_eq!(c.describe(), "backend=kprobe ring_events=4096");
        let missing = Config::read(Path::new("/nonexistent/kmlink.toml")).unwrap();
        assert_eq!(missing, Config::default());
    }

    #[test]
    fn bad_files_name_the_fault() {
        let e = parse("[load]\nbackend = \"ebpf\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("load.backend") && e.contains("\"ebpf\"") && e.contains("kprobe"),
            "{e}"
        );
        let e = parse("[load\n").unwrap_err().to_string();
        assert!(e.contains("kmlink.toml") && e.contains("line 1"), "{e}");
        let e = parse("[load]\nbackedn = \"kprobe\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field") && e.contains("backedn"), "{e}");
        let e = parse("[load]\nset = [\"ring_events\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAME=VALUE"), "{e}");
        let e = parse("[sign]\nkey = \"/nonexistent.key\"\ncert = \"/nonexistent.der\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sign.key") && e.contains("kmlink key generate"),
            "{e}"
        );
        let e = parse("[sign]\nkey = \"/\"\n").unwrap_err().to_string();
        assert!(e.contains("cert"), "{e}");
    }
}
