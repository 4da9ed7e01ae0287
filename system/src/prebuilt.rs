//! Prebuilt modules: `/var/lib/kmlink/modules/<release>/kmlink.ko` with
//! `inputs.json` beside it, saying what it was linked from. The kernel hook
//! writes them when a kernel is installed; the boot-time service loads one
//! without linking again when the inputs it can see are unchanged (the same
//! kmlink, options, signer and kernel image).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where prebuilt modules are kept on an installed system.
pub const DEFAULT_ROOT: &str = "/var/lib/kmlink/modules";

/// Name of the module file in a release's directory.
pub const MODULE_FILE: &str = "kmlink.ko";
/// Name of the inputs record beside it.
pub const INPUTS_FILE: &str = "inputs.json";

/// What a prebuilt module was linked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Kernel release.
    pub release: String,
    /// The kmlink that linked it (its version and core).
    pub kmlink: String,
    /// Link-time options (`backend=… NAME=VALUE…`).
    pub options: String,
    /// SHA-256 of the kernel image (`/boot/vmlinuz-<release>`), when there.
    pub image_sha256: Option<String>,
    /// The signer (certificate subject and SHA-256), when signed.
    pub signer: Option<String>,
}

/// The record written beside a prebuilt module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What it was linked from.
    pub inputs: Inputs,
    /// Where the kernel's facts came from (store, bundle, host files).
    pub sources: Vec<String>,
    /// The checks' verdict line.
    pub verdict: String,
    /// When it was built (seconds since the epoch).
    pub built_unix: u64,
    /// SHA-256 of the module file.
    pub module_sha256: String,
}

/// Errors of the prebuilt-module directory.
#[derive(Debug, thiserror::Error)]
pub enum PrebuiltError {
    /// A release name that cannot be a directory name.
    #[error("kernel release {0:?} is not a plain name")]
    BadRelease(String),
    /// File system trouble.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `inputs.json` is not what kmlink writes.
    #[error("{}: not a prebuilt-module record", path.display())]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The prebuilt-module directory.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    root: PathBuf,
}

/// SHA-256 of a file, hex, or `None` if it cannot be read.
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(hex::encode(h.finalize()))
}

/// What differs between the inputs a module was built from and today's,
/// in words; `None` when nothing does.
pub fn changed(built: &Inputs, now: &Inputs) -> Option<String> {
    let mut what = Vec::new();
    if built.release != now.release {
        what.push(format!("release {} → {}", built.release, now.release));
    }
    if built.kmlink != now.kmlink {
        what.push(format!("kmlink {} → {}", built.kmlink, now.kmlink));
    }
    if built.options != now.options {
        what.push(format!("options '{}' → '{}'", built.options, now.options));
    }
    if built.image_sha256 != now.image_sha256 {
        what.push("the kernel image changed".to_string());
    }
    if built.signer != now.signer {
        what.push(format!(
            "signer {} → {}",
            built.signer.as_deref().unwrap_or("none"),
            now.signer.as_deref().unwrap_or("none")
        ));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

impl Prebuilt {
    /// The directory at `root` (`/var/lib/kmlink/modules` on a system).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Prebuilt { root: root.into() }
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, release: &str) -> Result<PathBuf, PrebuiltError> {
        if release.is_empty()
            || release.starts_with('.')
            || release.contains('/')
            || release.contains('\0')
        {
            return Err(PrebuiltError::BadRelease(release.to_string()));
        }
        Ok(self.root.join(release))
    }

    /// The module file of `release`.
    pub fn module_path(&self, release: &str) -> Result<PathBuf, PrebuiltError> {
        Ok(self.dir(release)?.join(MODULE_FILE))
    }

    /// Stores a module and its record (the module first, the record last:
    /// a record always describes the module beside it).
    pub fn store(
        &self,
        release: &str,
        ko: &[u8],
        record: &Record,
    ) -> Result<PathBuf, PrebuiltError> {
        let dir = self.dir(release)?;
        std::fs::create_dir_all(&dir).map_err(|source| PrebuiltError::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let module = dir.join(MODULE_FILE);
        write_replace(&module, ko)?;
        let json =
            serde_json::to_vec_pretty(record).map_err(|source| PrebuiltError::BadRecord {
                path: dir.join(INPUTS_FILE),
                source,
            })?;
        write_replace(&dir.join(INPUTS_FILE), &json)?;
        Ok(module)
    }

    /// The record and module path of `release`, if a complete one is
    /// stored (the module's bytes match the record).
    pub fn get(&self, release: &str) -> Result<Option<(Record, PathBuf)>, PrebuiltError> {
        let dir = self.dir(release)?;
        let path = dir.join(INPUTS_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PrebuiltError::Io {
                    op: "reading",
                    path,
                    source,
                })
            }
        };
        let record: Record = serde_json::from_slice(&text)
            .map_err(|source| PrebuiltError::BadRecord { path, source })?;
        let module = dir.join(MODULE_FILE);
        if file_sha256(&module).as_deref() != Some(record.module_sha256.as_str()) {
            return Ok(None);
        }
        Ok(Some((record, module)))
    }

    /// Removes `release`'s prebuilt module; whether there was one.
    pub fn remove(&self, release: &str) -> Result<bool, PrebuiltError> {
        let dir = self.dir(release)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PrebuiltError::Io {
                op: "removing",
                path: dir,
                source,
            }),
        }
    }

    /// Every stored release with its record (unreadable ones skipped).
    pub fn list(&self) -> Vec<(String, Record)> {
        let mut out: Vec<(String, Record)> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let rel = e.file_name().to_string_lossy().into_owned();
                let (record, _) = self.get(&rel).ok()??;
                Some((rel, record))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Writes through kmlink's one file writer, durably: the boot-time
/// service never sees half a module, and a crash leaves the old one or
/// the new one.
fn write_replace(path: &Path, data: &[u8]) -> Result<(), PrebuiltError> {
    kmlink_fsio::write_file(path, data, kmlink_fsio::Durability::Durable).map_err(|source| {
        PrebuiltError::Io {
            op: "writing",
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inputs(rel: &str) -> Inputs {
        Inputs {
            release: rel.into(),
            kmlink: "0.1.0".into(),
            options: "backend=tracepoint".into(),
            image_sha256: Some("ab".into()),
            signer: None,
        }
    }

    #[test]
    fn store_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = Prebuilt::new(dir.path());
        let ko = b"\x7fELF module".to_vec();
        let rec = Record {
            inputs: inputs("6.1.0-47-amd64"),
            sources: vec!["store".into()],
            verdict: "all 9 checks agree".into(),
            built_unix: 1,
            module_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&ko)),
        };
        let path = p.store("6.1.0-47-amd64", &ko, &rec).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), ko);
        let (got, _) = p.get("6.1.0-47-amd64").unwrap().unwrap();
        assert_eq!(got, rec);
        assert_eq!(p.list().len(), 1);
        // A module that no longer matches its record is not offered.
        std::fs::write(&path, b"other").unwrap();
        assert!(p.get("6.1.0-47-amd64").unwrap().is_none());
        assert!(p.remove("6.1.0-47-amd64").unwrap());
        assert!(!p.remove("6.1.0-47-amd64").unwrap());
        assert!(p.get("../etc").is_err() && p.remove("..").is_err() && p.get("").is_err());
    }

    #[test]
    fn changes_are_named() {
        let a = inputs("6.1.0-47-amd64");
        assert_eq!(changed(&a, &a), None);
        let mut b = a.clone();
        b.image_sha256 = Some("cd".into());
        b.options = "backend=kprobe".into();
        let why = changed(&a, &b).unwrap();
        assert!(
            why.contains("kernel image") && why.contains("backend=kprobe"),
            "{why}"
        );
    }
}
