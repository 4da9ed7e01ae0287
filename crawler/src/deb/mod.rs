//! Streaming `.deb` extraction.
//!
//! A `.deb` is an `ar` archive (module `ar`): `debian-binary`, then
//! `control.tar[.xz|.zst|.gz]` and exactly one `data.tar[.xz|.zst|.gz]`,
//! each a tar stream (module `tar`) read once, decoder chosen by the
//! member name. Every error names the `.deb` and the member (and the tar
//! entry when there is one).

mod ar;
mod tar;
mod verify;

use std::path::{Path, PathBuf};

use crate::{deb822, Error, Result};

pub use self::tar::normalise;
pub use self::verify::{verify, Verified, MAX_UNPACKED};

/// Stream `deb` once and write every regular file and symlink of its data
/// member whose normalised path (leading `./` stripped) `select` accepts
/// under `dest`, keeping the relative path. Returns the paths written.
///
/// Refused with [`Error::UnsafeEntry`] (naming the entry): any entry whose
/// path is absolute or climbs out of `dest` with `..`; a selected symlink
/// whose target is absolute or resolves outside `dest`; a selected entry
/// whose parent directory inside `dest` is a symlink. Hard links, devices
/// and other special entries are skipped.
pub fn extract(
    deb: &Path,
    dest: &Path,
    select: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    extract_inner(deb, dest, select, &mut |_| false)
}

/// Extract exactly the entries whose normalised paths are in `paths` (with
/// the same checks as [`extract`]) and stop reading the package as soon as
/// all of them are written: the rest of the data member is neither
/// decompressed nor read. Entries not found are simply absent from the
/// returned list.
pub fn extract_paths(deb: &Path, dest: &Path, paths: &[&str]) -> Result<Vec<PathBuf>> {
    let mut wanted: Vec<&str> = paths.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let n = wanted.len();
    let mut count = 0usize;
    extract_inner(
        deb,
        dest,
        &mut |p| wanted.binary_search(&p).is_ok(),
        &mut |_| {
            count += 1;
            count >= n
        },
    )
}

/// [`extract`] that stops reading the package as soon as `done` (called
/// with the normalised path of each entry written) answers `true`: the rest
/// of the data member is neither decompressed nor read. For selections
/// that are not a fixed list of paths, such as "the config and the first
/// few modules under `kernel/lib/`".
pub fn extract_until(
    deb: &Path,
    dest: &Path,
    select: &mut dyn FnMut(&str) -> bool,
    done: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    extract_inner(deb, dest, select, done)
}

fn extract_inner(
    deb: &Path,
    dest: &Path,
    select: &mut dyn FnMut(&str) -> bool,
    done: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut seen_data = None::<String>;
    ar::for_each_member(deb, &mut |name, reader| {
        if !name.starts_with("data.tar") {
            return Ok(ar::Next::Continue);
        }
        if let Some(first) = &seen_data {
            return Err(Error::Deb {
                deb: deb.to_owned(),
                member: name.to_owned(),
                msg: format!("second data member (already read {first})"),
            });
        }
        seen_data = Some(name.to_owned());
        let stream = ar::decoder(deb, name, reader)?;
        let stopped = tar::unpack(deb, name, stream, dest, select, &mut written, done)?;
        Ok(if stopped {
            ar::Next::Stop
        } else {
            ar::Next::Continue
        })
    })?;
    if seen_data.is_none() {
        return Err(Error::Deb {
            deb: deb.to_owned(),
            member: "-".into(),
            msg: "no data.tar member".into(),
        });
    }
    Ok(written)
}

/// Largest control file read (bytes).
const MAX_CONTROL: u64 = 1 << 20;

/// The control stanza of `deb` (`control.tar.*` member, `./control` file)
/// as key/value pairs in file order; multi-line values are joined with `\n`.
pub fn control(deb: &Path) -> Result<Vec<(String, String)>> {
    let mut text = None::<String>;
    let mut member_name = String::new();
    ar::for_each_member(deb, &mut |name, reader| {
        if !name.starts_with("control.tar") || text.is_some() {
            return Ok(ar::Next::Continue);
        }
        member_name = name.to_owned();
        let stream = ar::decoder(deb, name, reader)?;
        text = tar::read_file(deb, name, stream, "control", MAX_CONTROL)?;
        Ok(ar::Next::Continue)
    })?;
    let text = text.ok_or_else(|| Error::Deb {
        deb: deb.to_owned(),
        member: if member_name.is_empty() {
            "-".into()
        } else {
            member_name.clone()
        },
        msg: "no control file".into(),
    })?;
    let what = format!("{}: {member_name}: control", deb.display());
    let mut ps = deb822::paragraphs(&text, &what, false)?;
    if ps.len() != 1 {
        return Err(Error::Deb {
            deb: deb.to_owned(),
            member: member_name,
            msg: format!("control has {} stanzas, expected 1", ps.len()),
        });
    }
    let p = ps.remove(0);
    Ok(p.fields
        .into_iter()
        .map(|f| (f.key.to_owned(), f.value.into_owned()))
        .collect())
}
