//! Decompressors for the codecs the kernel build uses for `vmlinux.bin.*`
//! and for modules (`.ko.xz`, `.ko.zst`, `.ko.gz`).

use std::io::Read;

use crate::{Error, MAX_DECOMPRESSED};

/// A compression format, detected from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Gzip,
    Xz,
    Lzma,
    Bzip2,
    /// The kernel's legacy lz4 format (`lz4 -l`): magic 0x184C2102, then
    /// blocks of `[u32 LE compressed length][lz4 block]`, each block at most
    /// 8 MiB uncompressed.
    Lz4Legacy,
    Zstd,
}

const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

impl Codec {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Xz => "xz",
            Codec::Lzma => "lzma",
            Codec::Bzip2 => "bzip2",
            Codec::Lz4Legacy => "lz4 (legacy)",
            Codec::Zstd => "zstd",
        }
    }

    /// Same magic table as the kernel's `lib/decompress.c`.
    pub(crate) fn detect(data: &[u8]) -> Option<Codec> {
        let starts = |m: &[u8]| data.starts_with(m);
        if starts(&[0x1f, 0x8b]) || starts(&[0x1f, 0x9e]) {
            Some(Codec::Gzip)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Codec::Xz)
        } else if starts(&[0x5d, 0x00, 0x00]) {
            Some(Codec::Lzma)
        } else if starts(b"BZh") {
            Some(Codec::Bzip2)
        } else if starts(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Some(Codec::Lz4Legacy)
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }
}

pub(crate) fn hex_magic(data: &[u8]) -> String {
    data.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Decompress `data` (one stream of `codec`), refusing more than
/// [`MAX_DECOMPRESSED`] bytes. `size_hint` only pre-sizes the buffer.
pub(crate) fn decompress(
    data: &[u8],
    codec: Codec,
    size_hint: Option<u64>,
    context: &str,
) -> Result<Vec<u8>, Error> {
    let io_err = |source: std::io::Error| Error::Decompress {
        codec: codec.name(),
        context: context.to_owned(),
        source,
    };
    let cap = size_hint.unwrap_or(0).min(MAX_DECOMPRESSED);
    let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    match codec {
        Codec::Gzip => read_capped(flate2::read::GzDecoder::new(data), &mut out),
        Codec::Xz => read_capped(xz2::read::XzDecoder::new(data), &mut out),
        Codec::Lzma => {
            let stream = xz2::stream::Stream::new_lzma_decoder(u64::MAX)
                .map_err(|e| io_err(std::io::Error::other(e)))?;
            read_capped(xz2::read::XzDecoder::new_stream(data, stream), &mut out)
        }
        Codec::Bzip2 => read_capped(bzip2::read::BzDecoder::new(data), &mut out),
        Codec::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(data).map_err(io_err)?;
            // The kernel compresses with `zstd -22 --ultra`; allow its window.
            dec.window_log_max(31).map_err(io_err)?;
            read_capped(dec, &mut out)
        }
        Codec::Lz4Legacy => return lz4_legacy(data, out, context),
    }
    .map_err(io_err)?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::DecompressedSize {
            codec: codec.name(),
            context: context.to_owned(),
            what: format!("more than {MAX_DECOMPRESSED} bytes"),
        });
    }
    Ok(out)
}

fn read_capped(r: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    r.take(MAX_DECOMPRESSED + 1).read_to_end(out).map(drop)
}

/// The kernel's `lib/decompress_unlz4.c` format.
fn lz4_legacy(data: &[u8], mut out: Vec<u8>, context: &str) -> Result<Vec<u8>, Error> {
    let err = |what: String| Error::Decompress {
        codec: Codec::Lz4Legacy.name(),
        context: context.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    };
    let mut pos = 0usize;
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while let Some(word) = data.get(pos..pos.saturating_add(4)) {
        let len = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        pos += 4;
        if len == LZ4_LEGACY_MAGIC {
            continue; // concatenated stream: a new header
        }
        if len == 0 {
            break;
        }
        let end = pos
            .checked_add(len as usize)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                err(format!(
                    "block of {len} bytes at offset {pos:#x} runs past end"
                ))
            })?;
        let n = lz4_flex::block::decompress_into(&data[pos..end], &mut block)
            .map_err(|e| err(format!("block at offset {pos:#x}: {e}")))?;
        if (out.len() + n) as u64 > MAX_DECOMPRESSED {
            return Err(Error::DecompressedSize {
                codec: Codec::Lz4Legacy.name(),
                context: context.to_owned(),
                what: format!("more than {MAX_DECOMPRESSED} bytes"),
            });
        }
        out.extend_from_slice(&block[..n]);
        pos = end;
    }
    if pos < data.len() {
        return Err(err(format!(
            "{} trailing bytes at offset {pos:#x}",
            data.len() - pos
        )));
    }
    Ok(out)
}
