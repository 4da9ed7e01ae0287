//! Tar members of a `.deb`: path checks and selective unpacking.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};

use ::tar::EntryType;

use crate::{Error, Result};

/// Normalise a tar entry path: drop empty and `.` components (so a leading
/// `./` goes) and resolve `..`. Fails, with the reason, if the path is
/// absolute or `..` climbs above the top. The top itself normalises to `""`.
pub fn normalise(path: &str) -> std::result::Result<String, &'static str> {
    if path.starts_with('/') {
        return Err("absolute path");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("`..` escapes the destination");
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

struct Ctx<'a> {
    deb: &'a Path,
    member: &'a str,
}

impl Ctx<'_> {
    fn err(&self, entry: Option<&str>, msg: impl Into<String>) -> Error {
        Error::Deb {
            deb: self.deb.to_owned(),
            member: match entry {
                Some(e) => format!("{}: {e}", self.member),
                None => self.member.to_owned(),
            },
            msg: msg.into(),
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            deb: self.deb.to_owned(),
            member: self.member.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Unpack the selected regular files and symlinks of a tar stream under
/// `dest`, appending the written paths to `written`. After each written
/// entry `stop` is called with its normalised path; when it answers `true`
/// the rest of the stream is not read and `Ok(true)` is returned.
pub(crate) fn unpack(
    deb: &Path,
    member: &str,
    stream: impl Read,
    dest: &Path,
    select: &mut dyn FnMut(&str) -> bool,
    written: &mut Vec<PathBuf>,
    stop: &mut dyn FnMut(&str) -> bool,
) -> Result<bool> {
    let cx = Ctx { deb, member };
    let mut archive = ::tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| cx.err(None, format!("bad tar stream: {e}")))?;
    let mut dirs = DirGuard::new(dest);
    for entry in entries {
        let mut entry = entry.map_err(|e| cx.err(None, format!("bad tar stream: {e}")))?;
        let raw = String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
            cx.unsafe_entry(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8")
        })?;
        let rel = normalise(&raw).map_err(|why| cx.unsafe_entry(&raw, why))?;
        let kind = entry.header().entry_type();
        if rel.is_empty()
            || !matches!(
                kind,
                EntryType::Regular | EntryType::Continuous | EntryType::Symlink
            )
            || !select(&rel)
        {
            continue;
        }
        let target = dest.join(&rel);
        dirs.prepare(&cx, &raw, &rel)?;
        if kind == EntryType::Symlink {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| cx.err(Some(&raw), "symlink without a target"))?;
            let link = String::from_utf8(link.into_owned())
                .map_err(|_| cx.unsafe_entry(&raw, "symlink target is not UTF-8"))?;
            if link.starts_with('/') {
                return Err(cx.unsafe_entry(
                    &raw,
                    format!("symlink to absolute path {link:?} points outside the destination"),
                ));
            }
            // `..` only before the first name: the climb is then over the
            // link's own parent directories, which are real directories
            // (parents are never symlinks, see DirGuard), so the lexical
            // check below is exact; a `..` after a name could climb out
            // of a directory reached through another link (`x/y -> ..`,
            // then `a -> x/y/../../etc`), whatever order they come in.
            let mut named = false;
            for c in link.split('/') {
                match c {
                    "" | "." => {}
                    ".." if named => {
                        return Err(cx.unsafe_entry(
                            &raw,
                            format!(
                                "symlink target {link:?} climbs with `..` after a name: through another link it could point outside the destination"
                            ),
                        ));
                    }
                    ".." => {}
                    _ => named = true,
                }
            }
            let resolved = match rel.rsplit_once('/') {
                Some((parent, _)) => format!("{parent}/{link}"),
                None => link.clone(),
            };
            if normalise(&resolved).is_err() {
                return Err(cx.unsafe_entry(
                    &raw,
                    format!("symlink target {link:?} points outside the destination"),
                ));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(|e| {
                cx.err(
                    Some(&raw),
                    format!("creating symlink {}: {e}", target.display()),
                )
            })?;
        } else {
            let mode = entry.header().mode().unwrap_or(0o644);
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|e| cx.err(Some(&raw), format!("creating {}: {e}", target.display())))?;
            std::io::copy(&mut entry, &mut out).map_err(|e| {
                cx.err(
                    Some(&raw),
                    format!("extracting to {}: {e}", target.display()),
                )
            })?;
            use std::os::unix::fs::PermissionsExt;
            // Never keep setuid, setgid, sticky or group/world-writable
            // bits from a package: the cache is read by root.
            let perm = std::fs::Permissions::from_mode((mode & 0o755) | 0o600);
            out.set_permissions(perm)
                .map_err(|e| cx.err(Some(&raw), format!("chmod {}: {e}", target.display())))?;
        }
        written.push(target);
        if stop(&rel) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Creates parent directories under the destination, refusing to go
/// through a symlink, and clears a previous entry at the final path.
struct DirGuard<'a> {
    dest: &'a Path,
    known: HashSet<String>,
}

impl<'a> DirGuard<'a> {
    fn new(dest: &'a Path) -> Self {
        DirGuard {
            dest,
            known: HashSet::new(),
        }
    }

    fn prepare(&mut self, cx: &Ctx<'_>, raw: &str, rel: &str) -> Result<()> {
        let mut prefix = String::new();
        let comps: Vec<&str> = rel.split('/').collect();
        let parents = comps.split_last().map(|(_, p)| p).unwrap_or(&[]);
        std::fs::create_dir_all(self.dest).map_err(|e| Error::io("creating", self.dest, e))?;
        for c in parents {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            if self.known.contains(&prefix) {
                continue;
            }
            let p = self.dest.join(&prefix);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(cx.unsafe_entry(raw, format!("parent {prefix:?} is a symlink")));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(cx.err(Some(raw), format!("parent {prefix:?} is not a directory")))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&p)
                        .map_err(|e| cx.err(Some(raw), format!("creating {}: {e}", p.display())))?;
                }
                Err(e) => return Err(cx.err(Some(raw), format!("inspecting {}: {e}", p.display()))),
            }
            self.known.insert(prefix.clone());
        }
        let target = self.dest.join(rel);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                Err(cx.err(Some(raw), format!("{} is a directory", target.display())))
            }
            Ok(_) => std::fs::remove_file(&target)
                .map_err(|e| cx.err(Some(raw), format!("replacing {}: {e}", target.display()))),
            Err(_) => Ok(()),
        }
    }
}

/// Read the regular file whose normalised path is `wanted` (at most `limit`
/// bytes, UTF-8) from a tar stream; `None` if absent.
pub(crate) fn read_file(
    deb: &Path,
    member: &str,
    stream: impl Read,
    wanted: &str,
    limit: u64,
) -> Result<Option<String>> {
    let cx = Ctx { deb, member };
    let mut archive = ::tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| cx.err(None, format!("bad tar stream: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| cx.err(None, format!("bad tar stream: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if normalise(&raw).ok().as_deref() != Some(wanted)
            || entry.header().entry_type() != EntryType::Regular
        {
            continue;
        }
        let mut buf = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| cx.err(Some(&raw), format!("reading: {e}")))?;
        if buf.len() as u64 > limit {
            return Err(cx.err(Some(&raw), format!("larger than {limit} bytes")));
        }
        return String::from_utf8(buf)
            .map(Some)
            .map_err(|_| cx.err(Some(&raw), "not UTF-8"));
    }
    Ok(None)
}
