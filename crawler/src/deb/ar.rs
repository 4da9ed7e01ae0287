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

/// [`for_each_member`] that also hands `f` each member's declared size.
pub(crate) fn for_each_member_sized(
    deb: &Path,
    f: &mut dyn FnMut(&str, u64, &mut dyn Read) -> Result<Next>,
) -> Result<()> {
    let file = File::open(deb).map_err(|e| Error::io("opening", deb, e))?;
    let mut archive = ::ar::Archive::new(BufReader::with_capacity(256 * 1024, file));
    let mut index = 0usize;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| {
            deb_err(
                deb,
                &format!("ar member #{index}"),
                format!("bad ar archive: {e}"),
            )
        })?;
        let raw = entry.header().identifier();
        let name = String::from_utf8_lossy(raw)
            .trim_end_matches('/')
            .to_owned();
        if index == 0 {
            if name != "debian-binary" {
                return Err(deb_err(
                    deb,
                    &name,
                    "first member is not debian-binary (not a .deb)",
                ));
            }
            let mut v = Vec::new();
            (&mut entry)
                .take(64)
                .read_to_end(&mut v)
                .map_err(|e| deb_err(deb, &name, format!("reading: {e}")))?;
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
        } else if f(&name, entry.header().size(), &mut entry)? == Next::Stop {
            return Ok(());
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
