//! Publishing a directory of the cache atomically: it is filled under a
//! hidden temporary name beside its final path, then renamed into place.
//! A run killed half-way leaves only the temporary directory, never a
//! final one whose files are cut short (the cache trusts what a final
//! directory holds). The temporary directory is held ([`crate::sweep::hold`])
//! from its creation until the rename, so [`crate::sweep`] removes it only
//! once its run is gone. Kernel trees, boot images and tools are published
//! this way.

use std::path::{Path, PathBuf};

use crate::sweep::Held;
use crate::{Error, Result};

/// A directory being filled, to be published at `dest`:
/// `.<name>.XXXXXX.tmp` beside `dest`, held while it lives. Dropped
/// unpublished (the fill failed), it is removed.
#[derive(Debug)]
pub(crate) struct Unpublished {
    tmp: tempfile::TempDir,
    held: Held,
    dest: PathBuf,
}

impl Unpublished {
    /// A new, empty, held directory beside `dest` (whose parent is
    /// created if need be).
    pub(crate) fn beside(dest: &Path) -> Result<Self> {
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(Error::io(
                "publishing",
                dest,
                std::io::Error::other("not a directory's path"),
            ));
        };
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempdir_in(parent)
            .map_err(|e| Error::io("creating a temporary directory in", parent, e))?;
        let held = crate::sweep::hold(tmp.path())?;
        Ok(Self {
            tmp,
            held,
            dest: dest.to_owned(),
        })
    }

    /// Where to fill it.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the filled directory to `dest`. `complete` tells whether a
    /// directory at `dest` already holds what this one would publish: one
    /// that does (another process published it first) stays, and this copy
    /// is removed; one that does not (stale, or cut short) is first moved
    /// aside to `.<name>.old.<pid>` — gone from `dest` in one step — and
    /// removed.
    pub(crate) fn publish(self, complete: impl Fn(&Path) -> bool) -> Result<()> {
        let Self { tmp, held, dest } = self;
        if dest.exists() {
            if complete(&dest) {
                return Ok(());
            }
            let old = dest.with_file_name(format!(
                ".{}.old.{}",
                dest.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            std::fs::rename(&dest, &old).map_err(|e| Error::io("moving aside", &dest, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))?;
        }
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dest) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            // Another process may have published it meanwhile.
            if !complete(&dest) {
                return Err(Error::io("renaming into place", &dest, e));
            }
        }
        drop(held);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::cache::Cache;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(dir.join(name), bytes).map_err(|e| Error::io("writing", dir, e))
    }

    fn has_whole(d: &Path) -> bool {
        d.join("whole").is_file()
    }

    #[test]
    fn a_failed_fill_publishes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tools/x/ab12");
        let fill = |tmp: &Path| -> Result<()> {
            write(tmp, "half", b"cut short")?;
            Err(Error::BadEntry {
                package: "p".into(),
                msg: "killed half-way".into(),
            })
        };
        let dest = Unpublished::beside(&dir).unwrap();
        assert!(fill(dest.path()).is_err());
        drop(dest);
        assert!(!dir.exists(), "a half-filled directory was published");
        // The temporary directory went with the error.
        assert_eq!(std::fs::read_dir(dir.parent().unwrap()).unwrap().count(), 0);
        let dest = Unpublished::beside(&dir).unwrap();
        write(dest.path(), "whole", b"ok").unwrap();
        dest.publish(has_whole).unwrap();
        assert_eq!(std::fs::read(dir.join("whole")).unwrap(), b"ok");
        // Published again (another process first): the first copy stays.
        let dest = Unpublished::beside(&dir).unwrap();
        write(dest.path(), "whole", b"second").unwrap();
        dest.publish(has_whole).unwrap();
        assert_eq!(std::fs::read(dir.join("whole")).unwrap(), b"ok");
        assert_eq!(std::fs::read_dir(dir.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_stale_directory_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kernels/6.1.0-47-amd64");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "stale", b"from other packages").unwrap();
        let dest = Unpublished::beside(&dir).unwrap();
        write(dest.path(), "whole", b"new").unwrap();
        dest.publish(has_whole).unwrap();
        assert_eq!(std::fs::read(dir.join("whole")).unwrap(), b"new");
        assert!(!dir.join("stale").exists());
        // Nothing left beside it: the old tree moved aside went too.
        assert_eq!(
            std::fs::read_dir(root.path().join("kernels"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn sweep_leaves_a_directory_being_filled_alone() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().to_owned());
        let dir = root.path().join("tools/busybox-arm64/ab12");
        let dest = Unpublished::beside(&dir).unwrap();
        write(dest.path(), "half", b"being unpacked").unwrap();
        // A dead run's leftover beside it: nothing holds it.
        let dead = dir.with_file_name(".ab12.Dead00.tmp");
        std::fs::create_dir(&dead).unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let removed = crate::sweep::sweep_at(&cache, later, &mut |_| {}).unwrap();
        let removed: Vec<_> = removed.into_iter().map(|l| l.path).collect();
        assert_eq!(removed, [dead]);
        assert!(dest.path().join("half").is_file());
        write(dest.path(), "whole", b"ok").unwrap();
        dest.publish(has_whole).unwrap();
        assert!(dir.join("whole").is_file());
    }
}
