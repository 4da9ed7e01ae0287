//! Leftovers of runs that died (`kill -9`, power loss): temporary kernel
//! trees, tools half unpacked and partial downloads no later run would
//! remove.
//!
//! Every temporary entry the crawler makes under the cache is held by its
//! run with an exclusive `flock` on the entry itself (a directory or a
//! file) for as long as it exists ([`hold`]); the kernel releases the lock
//! when the process dies, however it dies. [`sweep`] removes the temporary
//! entries whose lock it can take — their run is gone — and reports each
//! through its callback. An entry younger than [`GRACE`] is left alone (its
//! run may not have locked it yet), and so is a shared resumable download
//! (`debs/<sha256>.part`) younger than [`RESUME_KEEP`]: the next fetch of
//! that package continues it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cache::Cache;
use crate::{Error, Result};

/// Entries younger than this are never swept.
pub const GRACE: Duration = Duration::from_secs(60);

/// A resumable partial download is kept this long after its last write.
pub const RESUME_KEEP: Duration = Duration::from_secs(24 * 3600);

/// A lock a live run holds on one of its temporary entries.
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] File);

/// Take the exclusive lock on `path` (a file or directory this run just
/// created) for as long as the returned value lives.
pub fn hold(path: &Path) -> Result<Held> {
    let f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    f.try_lock().map_err(|e| {
        Error::io(
            "locking",
            path,
            match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => {
                    std::io::Error::other("already locked by another run")
                }
            },
        )
    })?;
    Ok(Held(f))
}

/// One removed leftover.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leftover {
    /// Where it was.
    pub path: PathBuf,
    /// Bytes it held.
    pub bytes: u64,
}

fn is_temporary(dir: &str, name: &str) -> bool {
    match dir {
        // pinned: `.<release>.XXXXXX.tmp` trees, `.<release>.old.<pid>`.
        "kernels" | "boot" => {
            name.starts_with('.') && (name.ends_with(".tmp") || name.contains(".old."))
        }
        // targeted: `.<release>.XXXXXX` staging trees.
        "staging" => name.starts_with('.'),
        // cache: `<sha>.part`, `<sha>.XXXXXX.part`, `.ingest.XXXXXX.part`.
        "debs" => name.ends_with(".part"),
        // `tools/<tool>/`, published under `<sha256>` names: every hidden
        // entry (`.<sha256>.XXXXXX.tmp`, `.<sha256>.old.<pid>`, and
        // `.publishing-XXXXXX` of earlier versions).
        "tools" => name.starts_with('.'),
        _ => false,
    }
}

fn size_of(path: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Whether a run still holds `path` (or it cannot be told: then it is kept).
fn held_by_a_live_run(path: &Path, name: &str) -> bool {
    // `.<release>.old.<pid>`: moved aside by process <pid>, never locked.
    if let Some(pid) = name.rsplit_once(".old.").map(|(_, p)| p) {
        return pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists();
    }
    match File::open(path) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => true,
    }
}

/// The directories whose temporary entries are swept, each with the kind
/// of its entries ([`is_temporary`]): `kernels`, `boot`, `staging`, `debs`
/// and each tool's directory under `tools`.
fn swept_dirs(cache: &Cache) -> Result<Vec<(&'static str, PathBuf)>> {
    let mut dirs: Vec<(&'static str, PathBuf)> = ["kernels", "boot", "staging", "debs"]
        .into_iter()
        .map(|sub| (sub, cache.root.join(sub)))
        .collect();
    let tools = cache.root.join("tools");
    match std::fs::read_dir(&tools) {
        Ok(rd) => dirs.extend(
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| ("tools", e.path())),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("listing", &tools, e)),
    }
    Ok(dirs)
}

/// Remove the leftovers of dead runs under `cache` (see the module
/// documentation), calling `on_removed` for each. Returns them all. An
/// entry that cannot be removed is skipped (logged), not an error.
pub fn sweep(cache: &Cache, on_removed: &mut dyn FnMut(&Leftover)) -> Result<Vec<Leftover>> {
    sweep_at(cache, SystemTime::now(), on_removed)
}

/// [`sweep`] as if the time were `now` (tests).
pub fn sweep_at(
    cache: &Cache,
    now: SystemTime,
    on_removed: &mut dyn FnMut(&Leftover),
) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for (sub, dir) in swept_dirs(cache)? {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("listing", &dir, e)),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_temporary(sub, &name) {
                continue;
            }
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let shared_part = sub == "debs"
                && name.len() == 64 + ".part".len()
                && crate::sha256::is_sha256_hex(&name[..64]);
            let keep_for = if shared_part { RESUME_KEEP } else { GRACE };
            if age < keep_for || meta.file_type().is_symlink() || held_by_a_live_run(&path, &name) {
                continue;
            }
            let bytes = size_of(&path);
            let r = if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match r {
                Ok(()) => {
                    let l = Leftover { path, bytes };
                    on_removed(&l);
                    out.push(l);
                }
                Err(err) => log::warn!("removing leftover {}: {err}", path.display()),
            }
        }
    }
    Ok(out)
}
