//! kmlink's one way of writing a whole file, for its outputs (`-o`,
//! `--save-record`, `bundle export -o`), its caches and its record store.
//!
//! kmlink runs as root, so how a file is replaced matters:
//!
//! - a regular file (or a name that does not exist yet) is written to a
//!   temporary beside it, created exclusively (`O_CREAT|O_EXCL`: an existing
//!   name, symlinks included, is never opened) under an unpredictable name,
//!   then renamed over the target: no half-written file is ever visible
//!   under the final name, and no planted symlink redirects the write;
//! - a target that exists and is not a regular file — `/dev/null`, a
//!   device, a FIFO — is opened and written in place, never replaced (a
//!   rename would turn `/dev/null` into a regular file);
//! - `-` is standard output.
//!
//! [`Durability::Durable`] also `fsync`s the file and its directory, for
//! data that is not rebuilt on demand (the record store).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a completed write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Visible atomically while the system runs; after a power loss the
    /// file may be missing or older (outputs rebuilt byte-identically on
    /// demand, caches verified on use).
    Visible,
    /// Also on disk when the call returns: the file and the directory
    /// entry are `fsync`ed.
    Durable,
}

/// How the temporaries beside `path` begin (`.NAME.tmp-`, then random
/// characters): a writer that holds a lock on `path` may remove the ones a
/// crashed run left behind.
pub fn temporary_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Whether `path` names standard output (`-`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes `data` as the whole contents of `path` (see the crate
/// documentation for how). The error is the operating system's; the
/// caller names the file.
pub fn write_file(path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
    write_file_mode(path, data, durability, 0o666)
}

/// [`write_file`] whose new file is created with `mode` (less the umask)
/// from the start: a private key is never readable by others, not even
/// for the moment before a `chmod`.
pub fn write_file_mode(
    path: &Path,
    data: &[u8],
    durability: Durability,
    mode: u32,
) -> io::Result<()> {
    if is_stdout(path) {
        let mut out = io::stdout().lock();
        out.write_all(data)?;
        return out.flush();
    }
    // Follows a symlink: `-o link-to-/dev/null` writes into the device too.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => return write_in_place(path, data),
        _ => {}
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // tempfile creates with O_CREAT|O_EXCL under a random name; the mode is
    // what File::create gives (0666 less the umask).
    let mut tmp = tempfile::Builder::new()
        .prefix(&temporary_prefix(path))
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if durability == Durability::Durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A device, FIFO or socket: written where it is, not replaced.
fn write_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(data)?;
    f.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn mkfifo(path: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn a_regular_file_is_replaced_whole_and_nothing_is_left_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.ko");
        std::fs::write(&p, b"old contents, longer than the new").unwrap();
        for durability in [Durability::Visible, Durability::Durable] {
            write_file(&p, b"new", durability).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"new");
        }
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.ko"], "no temporary left");
        write_file(&d.path().join("fresh"), b"x", Durability::Visible).unwrap();
        File::create(d.path().join("created")).unwrap();
        let mode = |n: &str| {
            std::fs::metadata(d.path().join(n))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(
            mode("fresh"),
            mode("created"),
            "the mode File::create gives"
        );
    }

    #[test]
    fn a_fifo_is_written_into_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.fifo");
        mkfifo(&p);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let reader = {
            let p = p.clone();
            std::thread::spawn(move || std::fs::read(p).unwrap())
        };
        write_file(&p, &data, Durability::Durable).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn a_symlink_planted_beside_the_target_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = d.path().join("out.ko");
        // Every name the old scheme could have picked, and some.
        for n in [
            format!(".out.ko.tmp{}", std::process::id()),
            format!(".out.ko.tmp-{}-0", std::process::id()),
            ".out.ko.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, d.path().join(n)).unwrap();
        }
        write_file(&p, b"module", Durability::Visible).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&p).unwrap(), b"module");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_nothing_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/out.ko");
        let e = write_file(&p, b"x", Durability::Visible).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn dash_is_stdout() {
        assert!(is_stdout(Path::new("-")));
        assert!(!is_stdout(Path::new("./-")));
    }
}

/// Reads all of `path`, refusing more than `max` bytes: an input is bounded
/// by what its format (`what`, e.g. "kernel record") can legitimately be,
/// so `/dev/zero` or a huge file fails at once instead of exhausting
/// memory. The error (kind `FileTooLarge`) names the bound.
pub fn read_bounded(path: &Path, max: u64, what: &str) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let hint = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len().min(max));
    let mut data = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(too_large(max, what));
    }
    Ok(data)
}

/// The error [`read_bounded`] gives for an input over `max` bytes.
pub fn too_large(max: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("more than {max} bytes, the most a {what} can be (is it the right file?)"),
    )
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn dev_zero_is_refused_naming_the_bound() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "test input").expect_err("bounded");
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("1048576 bytes"), "{e}");
    }

    #[test]
    fn a_file_at_the_bound_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, [7u8; 100]).expect("write");
        assert_eq!(read_bounded(&p, 100, "x").expect("read").len(), 100);
        assert!(read_bounded(&p, 99, "x").is_err());
    }
}
