//! Building the gzip-compressed cpio (`newc`) initramfs.
//!
//! The archive is written with the `cpio` crate's newc builder; entries are
//! collected in a sorted map first so that every directory precedes its
//! contents, and missing parent directories are created automatically.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Source};

/// One entry of the archive.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A directory with the given permission bits.
    Dir(u32),
    /// A regular file with contents and permission bits.
    File(Source, u32),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device node: (major, minor, permission bits).
    CharDev(u32, u32, u32),
}

/// An initramfs under construction.
#[derive(Debug, Default)]
pub(crate) struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

/// Normalizes a guest path to the archive form (no leading `/`), rejecting
/// empty paths and `.`/`..` components.
pub(crate) fn normalize_guest_path(path: &str) -> Result<String, Error> {
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" => {}
            "." | ".." => return Err(Error::InvalidGuestPath(path.to_string())),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidGuestPath(path.to_string()));
    }
    Ok(parts.join("/"))
}

impl Initramfs {
    /// Adds a directory (and its parents).
    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        let path = normalize_guest_path(path)?;
        self.parents(&path);
        self.entries.insert(path, Entry::Dir(mode & 0o7777));
        Ok(())
    }

    /// Adds a regular file (and its parent directories); replaces an
    /// existing entry of the same path.
    pub(crate) fn file(&mut self, path: &str, contents: Source, mode: u32) -> Result<(), Error> {
        let path = normalize_guest_path(path)?;
        self.parents(&path);
        self.entries
            .insert(path, Entry::File(contents, mode & 0o7777));
        Ok(())
    }

    /// Adds a symbolic link (and its parent directories).
    #[allow(dead_code)] // Used by tests; kept for callers that need links.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        let path = normalize_guest_path(path)?;
        self.parents(&path);
        self.entries
            .insert(path, Entry::Symlink(target.to_string()));
        Ok(())
    }

    /// Adds a character device node (and its parent directories).
    pub(crate) fn char_dev(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> Result<(), Error> {
        let path = normalize_guest_path(path)?;
        self.parents(&path);
        self.entries
            .insert(path, Entry::CharDev(major, minor, mode & 0o7777));
        Ok(())
    }

    fn parents(&mut self, path: &str) {
        let mut idx = 0;
        while let Some(rel) = path[idx..].find('/') {
            let parent = &path[..idx + rel];
            self.entries
                .entry(parent.to_string())
                .or_insert(Entry::Dir(0o755));
            idx += rel + 1;
        }
    }

    /// Writes the uncompressed newc archive to `out`.
    pub(crate) fn write_cpio<W: Write>(&self, mut out: W) -> Result<W, Error> {
        use cpio::newc::{Builder, ModeFileType};
        let io_err = |what: &str, path: &str| {
            let ctx = format!("writing initramfs entry {what} /{path}");
            move |source| Error::Io {
                context: ctx,
                source,
            }
        };
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            // Inode 0 is fine for the kernel, but keep them unique and
            // nonzero so hard-link detection never merges entries.
            let builder = Builder::new(path)
                .ino(u32::try_from(ino + 1).unwrap_or(u32::MAX))
                .uid(0)
                .gid(0)
                .nlink(1);
            out = match entry {
                Entry::Dir(mode) => {
                    let b = builder
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Directory)
                        .nlink(2);
                    b.write(out, 0).finish().map_err(io_err("dir", path))?
                }
                Entry::CharDev(major, minor, mode) => {
                    let b = builder
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor);
                    b.write(out, 0).finish().map_err(io_err("device", path))?
                }
                Entry::Symlink(target) => {
                    let b = builder
                        .mode(0o777)
                        .set_mode_file_type(ModeFileType::Symlink);
                    let len = u32::try_from(target.len()).map_err(|_| too_big(path))?;
                    let mut w = b.write(out, len);
                    w.write_all(target.as_bytes())
                        .map_err(io_err("symlink", path))?;
                    w.finish().map_err(io_err("symlink", path))?
                }
                Entry::File(source, mode) => {
                    let b = builder
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Regular);
                    match source {
                        Source::Bytes(bytes) => {
                            let len = u32::try_from(bytes.len()).map_err(|_| too_big(path))?;
                            let mut w = b.write(out, len);
                            w.write_all(bytes).map_err(io_err("file", path))?;
                            w.finish().map_err(io_err("file", path))?
                        }
                        Source::Path(host) => {
                            let f = File::open(host).map_err(|source| Error::Io {
                                context: format!("opening {} for guest /{path}", host.display()),
                                source,
                            })?;
                            let meta_len = f
                                .metadata()
                                .map_err(|source| Error::Io {
                                    context: format!("stat {}", host.display()),
                                    source,
                                })?
                                .len();
                            let len = u32::try_from(meta_len).map_err(|_| too_big(path))?;
                            let mut w = b.write(out, len);
                            // Copy exactly `len` bytes: the header already
                            // promised that size.
                            let copied = io::copy(&mut f.take(u64::from(len)), &mut w)
                                .map_err(io_err("file", path))?;
                            if copied != u64::from(len) {
                                return Err(Error::Io {
                                    context: format!(
                                        "{} shrank while being archived",
                                        host.display()
                                    ),
                                    source: io::Error::from(io::ErrorKind::UnexpectedEof),
                                });
                            }
                            w.finish().map_err(io_err("file", path))?
                        }
                    }
                }
            };
        }
        cpio::newc::trailer(out).map_err(|source| Error::Io {
            context: "writing initramfs trailer".into(),
            source,
        })
    }

    /// Writes the gzip-compressed (level 1) archive to `path`.
    pub(crate) fn write_gz(&self, path: &Path) -> Result<(), Error> {
        let ctx = |source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        let file = File::create(path).map_err(ctx)?;
        let gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::new(1));
        let gz = self.write_cpio(gz)?;
        let mut buf = gz.finish().map_err(ctx)?;
        buf.flush().map_err(ctx)?;
        Ok(())
    }
}

fn too_big(path: &str) -> Error {
    Error::Io {
        context: format!("guest file /{path} is larger than 4 GiB"),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    }
}

/// Locations searched for busybox (after `$KMLINK_BUSYBOX`).
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"];

/// Finds a statically linked busybox on the host.
///
/// `$KMLINK_BUSYBOX` overrides the search.
pub fn find_busybox() -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("KMLINK_BUSYBOX") {
        candidates.push(PathBuf::from(p));
    }
    candidates.extend(BUSYBOX_CANDIDATES.iter().map(PathBuf::from));
    let mut dynamic = None;
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        match elf_is_static(&c) {
            Ok(true) => return Ok(c),
            Ok(false) => dynamic = Some(c),
            Err(e) => log::debug!("cannot inspect {}: {e}", c.display()),
        }
    }
    Err(Error::BusyboxMissing {
        found_dynamic: dynamic,
    })
}

/// Whether an ELF file has no `PT_INTERP` program header (i.e. is statically
/// linked, including static-pie).
pub(crate) fn elf_is_static(path: &Path) -> io::Result<bool> {
    elf_static_machine(path).map(|(is_static, _)| is_static)
}

/// Whether an ELF file is statically linked, and its `e_machine`.
pub(crate) fn elf_static_machine(path: &Path) -> io::Result<(bool, u16)> {
    let f = File::open(path)?;
    let mut data = Vec::new();
    // Program headers live near the start; 64 KiB is plenty.
    f.take(64 * 1024).read_to_end(&mut data)?;
    let has_interp = elf_has_interp(&data)?;
    Ok((!has_interp, elf_machine(&data)?))
}

/// The `e_machine` of a 64-bit little-endian ELF header.
fn elf_machine(data: &[u8]) -> io::Result<u16> {
    data.get(0x12..0x14)
        .filter(|_| data.starts_with(b"\x7fELF"))
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an ELF file"))
}

fn elf_has_interp(data: &[u8]) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a 64-bit little-endian ELF");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| -> io::Result<u16> {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(bad)
    };
    let u32_at = |o: usize| -> io::Result<u32> {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(bad)
    };
    let phoff = data
        .get(0x20..0x28)
        .map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
        .ok_or_else(bad)?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let phoff = usize::try_from(phoff).map_err(|_| bad())?;
    for i in 0..phnum {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal newc reader for the round-trip test (independent of the
    /// `cpio` crate's reader): returns (name, mode, data) per entry.
    fn read_newc(mut data: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let hex = |b: &[u8]| {
            u32::from_str_radix(std::str::from_utf8(b).expect("ascii"), 16).expect("hex")
        };
        let pad4 = |n: usize| (4 - n % 4) % 4;
        let mut out = Vec::new();
        loop {
            assert_eq!(&data[..6], b"070701", "magic");
            let field = |i: usize| hex(&data[6 + i * 8..6 + (i + 1) * 8]);
            let mode = field(1);
            let filesize = field(6) as usize;
            let namesize = field(11) as usize;
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .expect("utf8")
                .to_string();
            let mut off = 110 + namesize;
            off += pad4(off);
            let body = data[off..off + filesize].to_vec();
            off += filesize;
            off += pad4(off);
            data = &data[off..];
            if name == "TRAILER!!!" {
                break;
            }
            out.push((name, mode, body));
        }
        out
    }

    fn sample() -> Initramfs {
        let mut ir = Initramfs::default();
        ir.dir("/proc", 0o755).expect("dir");
        ir.file(
            "/init",
            Source::Bytes(b"#!/bin/sh\necho hi\n".to_vec()),
            0o755,
        )
        .expect("file");
        ir.file(
            "/lib/modules/x/a.ko",
            Source::Bytes(vec![1, 2, 3, 4, 5]),
            0o644,
        )
        .expect("file");
        ir.symlink("/bin/sh", "busybox").expect("link");
        ir
    }

    #[test]
    fn roundtrip_own_reader() {
        let bytes = sample().write_cpio(Vec::new()).expect("write");
        let entries = read_newc(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko",
                "proc"
            ]
        );
        let get = |n: &str| entries.iter().find(|e| e.0 == n).expect("entry");
        assert_eq!(get("init").1, 0o100755);
        assert_eq!(get("init").2, b"#!/bin/sh\necho hi\n");
        assert_eq!(get("lib/modules/x/a.ko").1, 0o100644);
        assert_eq!(get("lib/modules/x/a.ko").2, [1, 2, 3, 4, 5]);
        assert_eq!(get("bin").1, 0o040755);
        assert_eq!(get("bin/sh").1, 0o120777);
        assert_eq!(get("bin/sh").2, b"busybox");
    }

    #[test]
    fn roundtrip_cpio_crate_reader() {
        let bytes = sample().write_cpio(Vec::new()).expect("write");
        let mut rest: &[u8] = &bytes;
        let mut names = Vec::new();
        loop {
            let r = cpio::NewcReader::new(rest).expect("entry");
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_string());
            rest = r.finish().expect("finish");
        }
        assert_eq!(names.len(), 8);
        assert!(names.contains(&"init".to_string()));
    }

    #[test]
    fn roundtrip_cpio_command() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            return kmlink_testkit::missing("cpio(1) (apt-get install cpio)");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let gz = dir.path().join("ir.cpio.gz");
        let host_file = dir.path().join("host.bin");
        std::fs::write(&host_file, vec![7u8; 4097]).expect("write");
        let mut ir = sample();
        ir.file("/data/host.bin", Source::Path(host_file), 0o600)
            .expect("file");
        ir.write_gz(&gz).expect("gz");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("mkdir");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -dc {} | cpio -idm --quiet --no-absolute-filenames",
                gz.display()
            ))
            .current_dir(&out)
            .status()
            .expect("cpio");
        assert!(status.success());
        assert_eq!(
            std::fs::read(out.join("init")).expect("init"),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read(out.join("data/host.bin")).expect("bin"),
            vec![7u8; 4097]
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).expect("link"),
            PathBuf::from("busybox")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("init"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let listing = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | cpio -t --quiet", gz.display()))
            .output()
            .expect("cpio -t");
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.lines().any(|l| l == "lib/modules/x/a.ko"),
            "{listing}"
        );
    }

    #[test]
    fn rejects_bad_guest_paths() {
        let mut ir = Initramfs::default();
        assert!(ir.file("/../etc/x", Source::Bytes(vec![]), 0o644).is_err());
        assert!(ir.file("/", Source::Bytes(vec![]), 0o644).is_err());
        assert!(ir.file("", Source::Bytes(vec![]), 0o644).is_err());
        assert_eq!(normalize_guest_path("//a//b/").expect("ok"), "a/b");
    }

    #[test]
    fn detects_static_busybox() {
        if let Ok(bb) = find_busybox() {
            assert!(elf_is_static(&bb).expect("elf"));
        }
        // The test binary itself is dynamically linked on glibc hosts.
        if let Ok(me) = std::env::current_exe() {
            if let Ok(is_static) = elf_is_static(&me) {
                let has_interp = std::fs::read(&me)
                    .map(|d| d.windows(13).any(|w| w == b"ld-linux-x86-"))
                    .unwrap_or(false);
                if has_interp {
                    assert!(!is_static);
                }
            }
        }
        assert!(elf_has_interp(b"not an elf").is_err());
    }
}
