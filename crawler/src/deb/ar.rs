//! The `ar` container of a `.deb` and its member decoders.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::{Error, Result};

fn deb_err(deb: &Path, member: &str, msg: impl Into<String>) -> Error {
    Error::Deb {
        deb: deb.to_owned(),
        member: member.to_owned(),
        msg: msg.into(),
    }
}

/// What the member callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Go on with the next member.
    Continue,
    /// Stop reading the package (what was wanted was found).
    Stop,
}

/// Walk the members of `deb` in order, calling `f(name, reader)` for each
/// after checking `debian-binary` comes first and says `2.x`, until `f`
/// answers [`Next::Stop`].
pub(crate) fn for_each_member(
    deb: &Path,
    f: &mut dyn FnMut(&str, &mut dyn Read) -> Result<Next>,
) -> Result<()> {
    for_each_member_sized(deb, &mut |name, _size, r| f(name, r))
}

/// Fill `buf` from `r`; returns how many bytes were read (less than
/// `buf.len()` only at the end of the input).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One member header: its name and declared size.
///
/// The common `ar` format as dpkg writes it: 60-byte headers (name 16,
/// mtime 12, uid 6, gid 6, mode 8, size 10, magic `` `\n``), data padded
/// to an even length. GNU (`/NN`, `//`) and BSD (`#1/NN`) long names are
/// refused: a `.deb`'s members have short names. (Read here rather than
/// with the `ar` crate, which panics on a `/NN` name without a name
/// table: found by fuzzing, fuzz/regressions/deb.)
fn parse_header(h: &[u8; 60]) -> std::result::Result<(String, u64), String> {
    if &h[58..60] != b"`\n" {
        return Err("bad member header (no `\\n terminator)".into());
    }
    let name = std::str::from_utf8(&h[..16])
        .map_err(|_| "member name is not UTF-8".to_owned())?
        .trim_end_matches(' ');
    if name.starts_with('/') || name.starts_with("#1/") {
        return Err(format!("unsupported long-name member {name:?}"));
    }
    let name = name.trim_end_matches('/');
    if name.is_empty() {
        return Err("empty member name".into());
    }
    let size_field = std::str::from_utf8(&h[48..58])
        .unwrap_or("")
        .trim_end_matches(' ');
    let size = size_field
        .parse::<u64>()
        .ok()
        .filter(|_| !size_field.is_empty() && size_field.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("member {name:?}: bad size field {size_field:?}"))?;
    Ok((name.to_owned(), size))
}

/// [`for_each_member`] that also hands `f` each member's declared size.
/// A member shorter than its header declares is an error once `f` has
/// read what there is.
pub(crate) fn for_each_member_sized(
    deb: &Path,
    f: &mut dyn FnMut(&str, u64, &mut dyn Read) -> Result<Next>,
) -> Result<()> {
    let file = File::open(deb).map_err(|e| Error::io("opening", deb, e))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let read_err = |member: &str, e: std::io::Error| deb_err(deb, member, format!("reading: {e}"));
    let mut magic = [0u8; 8];
    let n = read_full(&mut r, &mut magic).map_err(|e| read_err("-", e))?;
    if n == 0 {
        return Err(deb_err(deb, "-", "empty file"));
    }
    if n < 8 || &magic != b"!<arch>\n" {
        return Err(deb_err(
            deb,
            "-",
            "bad ar archive: no !<arch> magic (not a .deb)",
        ));
    }
    let mut index = 0usize;
    loop {
        let mut h = [0u8; 60];
        let at = format!("ar member #{index}");
        match read_full(&mut r, &mut h).map_err(|e| read_err(&at, e))? {
            0 => break,
            60 => {}
            n => {
                return Err(deb_err(
                    deb,
                    &at,
                    format!("truncated member header ({n} of 60 bytes)"),
                ))
            }
        }
        let (name, size) =
            parse_header(&h).map_err(|m| deb_err(deb, &at, format!("bad ar archive: {m}")))?;
        let mut body = (&mut r).take(size);
        if index == 0 {
            if name != "debian-binary" {
                return Err(deb_err(
                    deb,
                    &name,
                    "first member is not debian-binary (not a .deb)",
                ));
            }
            let mut v = Vec::new();
            (&mut body)
                .take(64)
                .read_to_end(&mut v)
                .map_err(|e| read_err(&name, e))?;
            if !v.starts_with(b"2.") {
                return Err(deb_err(
                    deb,
                    &name,
                    format!(
                        "unsupported format version {:?}",
                        String::from_utf8_lossy(&v).trim()
                    ),
                ));
            }
        } else if f(&name, size, &mut body)? == Next::Stop {
            return Ok(());
        }
        std::io::copy(&mut body, &mut std::io::sink()).map_err(|e| read_err(&name, e))?;
        if body.limit() != 0 {
            return Err(deb_err(
                deb,
                &name,
                format!(
                    "truncated: the file ends {} bytes before the {size} its header declares",
                    body.limit()
                ),
            ));
        }
        if !size.is_multiple_of(2) {
            let mut pad = [0u8; 1];
            read_full(&mut r, &mut pad).map_err(|e| read_err(&name, e))?;
        }
        index += 1;
    }
    if index == 0 {
        return Err(deb_err(deb, "-", "empty ar archive"));
    }
    Ok(())
}

/// A decoder for member `name`, chosen by its suffix.
pub(crate) fn decoder<'a>(
    deb: &Path,
    name: &str,
    reader: &'a mut dyn Read,
) -> Result<Box<dyn Read + 'a>> {
    let ext = name.rsplit_once(".tar").map(|(_, e)| e).unwrap_or("");
    Ok(match ext {
        "" => Box::new(reader),
        ".xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
        ".zst" => Box::new(
            zstd::stream::read::Decoder::new(reader)
                .map_err(|e| deb_err(deb, name, format!("zstd: {e}")))?,
        ),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        other => {
            return Err(deb_err(
                deb,
                name,
                format!("unsupported compression {other:?}"),
            ))
        }
    })
}
