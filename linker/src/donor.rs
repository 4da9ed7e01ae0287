//! Donor modules: an installed module of the target kernel is the kernel's
//! own statement of what a module must look like (its vermagic, its
//! `struct module` section size and `init`/`exit` relocation offsets, the
//! CRCs in its `__versions`). The linker cross-checks the record against one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kmlink_donor::ko::{self, ModuleFacts};

/// Why no donor could be had.
#[derive(Debug, thiserror::Error)]
pub enum DonorError {
    /// The module file could not be loaded (the cause names the file).
    #[error(transparent)]
    Load(kmlink_donor::Error),
    /// The module could not be read.
    #[error("donor {path}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: kmlink_donor::Error,
    },
    /// No module directory of the release exists.
    #[error("no module directory for {release} (looked in {looked}); install the kernel's modules package (e.g. linux-image-{release}) or pass --donor KO")]
    NoModules {
        /// Kernel release.
        release: String,
        /// Where we looked.
        looked: String,
    },
    /// Modules exist but none fits.
    #[error("no usable donor among {tried} modules of {release} under {looked}{example}; pass --donor KO")]
    NoneFits {
        /// Kernel release.
        release: String,
        /// How many were read.
        tried: usize,
        /// Where we looked.
        looked: String,
        /// An example of a refused one.
        example: String,
    },
}

/// A module of the target kernel and what it says.
#[derive(Debug, Clone)]
pub struct Donor {
    /// Where it is.
    pub path: PathBuf,
    /// What it says.
    pub facts: ModuleFacts,
    /// Whether it is loaded in the running kernel (`/proc/modules`).
    pub loaded: bool,
}

impl Donor {
    /// Reads a module file (plain, `.ko.xz`, `.ko.zst`, `.ko.gz`).
    pub fn open(path: &Path) -> Result<Self, DonorError> {
        let bytes = ko::load(path).map_err(DonorError::Load)?;
        Self::from_bytes(path, &bytes)
    }

    /// A donor from module bytes (decompressed) said to come from `path`.
    pub fn from_bytes(path: &Path, elf: &[u8]) -> Result<Self, DonorError> {
        let facts = ko::read(elf).map_err(|source| DonorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Donor {
            path: path.to_path_buf(),
            facts,
            loaded: false,
        })
    }

    /// Whether the module was built in the kernel tree (`intree=Y`).
    pub fn intree(&self) -> bool {
        self.facts.modinfo_get("intree") == Some("Y")
    }

    /// Whether it shows everything the checks compare: vermagic, the
    /// `struct module` section, and relocations at `init` and `exit`.
    pub fn complete(&self) -> bool {
        let has = |f: &str| self.facts.this_module_relocs.iter().any(|(_, s)| s == f);
        self.facts.vermagic.is_some()
            && self.facts.this_module_size.is_some()
            && has("init_module")
            && has("cleanup_module")
    }

    /// One line for messages: path, and why it was chosen.
    pub fn describe(&self) -> String {
        let mut why = Vec::new();
        if self.loaded {
            why.push("loaded");
        }
        if self.intree() {
            why.push("in-tree");
        }
        if why.is_empty() {
            self.path.display().to_string()
        } else {
            format!("{} ({})", self.path.display(), why.join(", "))
        }
    }
}

/// Where to look for a donor.
#[derive(Debug, Clone)]
pub struct DonorSearch {
    /// Kernel release.
    pub release: String,
    /// Module directories (`/lib/modules/<release>`, `/usr/lib/modules/<release>`).
    pub roots: Vec<PathBuf>,
    /// Names of loaded modules (`/proc/modules`, `-` spelled `_`).
    pub loaded: BTreeSet<String>,
    /// At most this many modules are read.
    pub limit: usize,
}

impl DonorSearch {
    /// The usual places on a host running `release` (under `root`, `/`
    /// normally), and the loaded modules from `<root>/proc/modules`.
    pub fn for_host(root: &Path, release: &str) -> Self {
        // Bounded: a few thousand modules of ~100 bytes a line.
        let loaded =
            kmlink_fsio::read_bounded(&root.join("proc/modules"), 16 << 20, "/proc/modules")
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map(|t| {
                    t.lines()
                        .filter_map(|l| l.split_whitespace().next())
                        .map(|n| n.replace('-', "_"))
                        .collect()
                })
                .unwrap_or_default();
        DonorSearch {
            release: release.to_string(),
            roots: vec![
                root.join("lib/modules").join(release),
                root.join("usr/lib/modules").join(release),
            ],
            loaded,
            limit: 200,
        }
    }

    /// Finds a donor whose vermagic is `want` (byte for byte), or, without
    /// `want`, one whose vermagic names the release. Loaded modules come
    /// first, then in-tree ones (`kernel/`), and a module showing every fact
    /// the checks compare is preferred over one that lacks an exit function.
    pub fn find(&self, want: Option<&str>) -> Result<Donor, DonorError> {
        let mut files = Vec::new();
        let mut seen = BTreeSet::new();
        for root in &self.roots {
            if !root.is_dir() {
                continue;
            }
            // /lib is often a symlink to /usr/lib: visit each tree once.
            let canon = root.canonicalize().unwrap_or_else(|_| root.clone());
            if !seen.insert(canon) {
                continue;
            }
            collect(root, root, &mut files);
        }
        let looked = self
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if files.is_empty() {
            return Err(DonorError::NoModules {
                release: self.release.clone(),
                looked,
            });
        }
        let stem = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split(".ko").next())
                .map(|n| n.replace('-', "_"))
                .unwrap_or_default()
        };
        // (not loaded, not in kernel/, path): loaded first, then in-tree.
        files.sort_by_key(|(root, p)| {
            let rel = p.strip_prefix(root).unwrap_or(p);
            (
                !self.loaded.contains(&stem(p)),
                !rel.starts_with("kernel"),
                p.clone(),
            )
        });
        let mut tried = 0;
        let mut example = String::new();
        let mut fallback: Option<Donor> = None;
        for (_, path) in files.iter().take(self.limit) {
            tried += 1;
            let Ok(mut d) = Donor::open(path) else {
                continue;
            };
            d.loaded = self.loaded.contains(&stem(path));
            let Some(vm) = d.facts.vermagic.clone() else {
                continue;
            };
            let fits = match want {
                Some(w) => vm == w,
                None => vm.starts_with(&format!("{} ", self.release)),
            };
            if !fits {
                if example.is_empty() {
                    example = format!(
                        "; e.g. {} says vermagic {vm:?}{}",
                        path.display(),
                        want.map(|w| format!(", the target's is {w:?}"))
                            .unwrap_or_default()
                    );
                }
                continue;
            }
            if d.complete() && (d.intree() || d.loaded) {
                return Ok(d);
            }
            let better = if d.complete() {
                fallback.as_ref().is_none_or(|f| !f.complete())
            } else {
                fallback.is_none() && d.facts.this_module_size.is_some()
            };
            if better {
                fallback = Some(d);
            }
        }
        fallback.ok_or(DonorError::NoneFits {
            release: self.release.clone(),
            tried,
            looked,
            example,
        })
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.ends_with(".ko")
                || n.ends_with(".ko.xz")
                || n.ends_with(".ko.zst")
                || n.ends_with(".ko.gz")
        }) {
            out.push((root.to_path_buf(), p));
        }
    }
}
