//! Whole-package verification: every member read to its end.
//!
//! [`verify`] is what `crawler ingest` runs before a package enters the
//! cache (and what a cached package is checked with when its hash is not
//! re-read): the `ar` container is complete (each member as long as its
//! header declares), `debian-binary` comes first, there is exactly one
//! `control.tar*` and one `data.tar*` member and nothing else but `_`
//! members (which dpkg ignores), and both tar members decompress to their
//! end with the compression their names say, every tar entry read in full.

use std::io::{self, Read};
use std::path::Path;

use super::ar;
use crate::{Error, Result};

/// Most bytes a member may decompress to (a kernel image package unpacks
/// to well under 2 GiB).
pub const MAX_UNPACKED: u64 = 16 << 30;

/// What [`verify`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Member names, in order (`debian-binary` first).
    pub members: Vec<String>,
    /// Tar entries of the data member.
    pub data_entries: u64,
    /// Decompressed bytes of the data member.
    pub data_bytes: u64,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn err(deb: &Path, member: &str, msg: impl Into<String>) -> Error {
    Error::Deb {
        deb: deb.to_owned(),
        member: member.to_owned(),
        msg: msg.into(),
    }
}

/// Read the tar stream `name` completely; returns (entries, bytes).
fn read_tar(deb: &Path, name: &str, raw: &mut dyn Read) -> Result<(u64, u64)> {
    let stream = ar::decoder(deb, name, raw)?;
    let mut counted = Counting {
        inner: stream.take(MAX_UNPACKED + 1),
        n: 0,
    };
    let mut entries = 0u64;
    {
        let mut archive = ::tar::Archive::new(&mut counted);
        let iter = archive
            .entries()
            .map_err(|e| err(deb, name, format!("bad tar stream: {e}")))?;
        for entry in iter {
            let mut entry = entry.map_err(|e| {
                err(
                    deb,
                    name,
                    format!("bad tar stream after {entries} entries: {e}"),
                )
            })?;
            let path = entry.path_bytes().into_owned();
            let declared = entry.header().size().unwrap_or(0);
            let got = io::copy(&mut entry, &mut io::sink()).map_err(|e| {
                err(
                    deb,
                    &format!("{name}: {}", String::from_utf8_lossy(&path)),
                    format!("reading: {e}"),
                )
            })?;
            if got != declared {
                return Err(err(
                    deb,
                    &format!("{name}: {}", String::from_utf8_lossy(&path)),
                    format!("truncated: {got} of the {declared} bytes its header declares"),
                ));
            }
            entries += 1;
        }
    }
    // The end-of-archive blocks may be followed by padding; the compressed
    // stream must still decode to its end (where its checksum is).
    io::copy(&mut counted, &mut io::sink())
        .map_err(|e| err(deb, name, format!("decompressing: {e}")))?;
    if counted.n > MAX_UNPACKED {
        return Err(err(
            deb,
            name,
            format!("unpacks to more than {MAX_UNPACKED} bytes"),
        ));
    }
    Ok((entries, counted.n))
}

/// Verify the whole of `deb` (see the module documentation); the error
/// names the member (and entry) that is wrong.
pub fn verify(deb: &Path) -> Result<Verified> {
    let meta = std::fs::metadata(deb).map_err(|e| Error::io("reading", deb, e))?;
    if !meta.is_file() {
        return Err(err(deb, "-", "not a regular file"));
    }
    let mut out = Verified {
        members: vec!["debian-binary".into()],
        ..Verified::default()
    };
    let (mut control, mut data) = (false, false);
    ar::for_each_member_sized(deb, &mut |name, size, reader| {
        let mut raw = Counting {
            inner: reader,
            n: 0,
        };
        if name.starts_with("control.tar") {
            if control || data {
                return Err(err(
                    deb,
                    name,
                    if control {
                        "second control member"
                    } else {
                        "control member after the data member"
                    },
                ));
            }
            control = true;
            read_tar(deb, name, &mut raw)?;
        } else if name.starts_with("data.tar") {
            if !control {
                return Err(err(deb, name, "data member before the control member"));
            }
            if data {
                return Err(err(deb, name, "second data member"));
            }
            data = true;
            let (n, bytes) = read_tar(deb, name, &mut raw)?;
            out.data_entries = n;
            out.data_bytes = bytes;
        } else if !name.starts_with('_') {
            return Err(err(
                deb,
                name,
                "unexpected member (not control.tar*, data.tar* or _*)",
            ));
        }
        // Whatever the decoder left (nothing, for a well-formed member)
        // is read too: the member must be as long as declared.
        io::copy(&mut raw, &mut io::sink()).map_err(|e| err(deb, name, format!("reading: {e}")))?;
        if raw.n != size {
            return Err(err(
                deb,
                name,
                format!(
                    "truncated: {} of the {size} bytes its header declares",
                    raw.n
                ),
            ));
        }
        out.members.push(name.to_owned());
        Ok(ar::Next::Continue)
    })?;
    if !control {
        return Err(err(deb, "-", "no control.tar member"));
    }
    if !data {
        return Err(err(deb, "-", "no data.tar member"));
    }
    Ok(out)
}
