//! x86 bzImage (`vmlinuz`) → the `vmlinux` ELF it carries.
//!
//! The boot protocol's setup header says where the compressed kernel is:
//! `setup_sects` (0x1f1; 0 means 4) gives the size of the real-mode setup,
//! the protected-mode code starts at `(setup_sects + 1) * 512`, and
//! `payload_offset`/`payload_length` (0x248/0x24c, boot protocol ≥ 2.08) are
//! relative to it. The payload is `vmlinux.bin` (plus, with KASLR,
//! `vmlinux.relocs` after the ELF) compressed by one of gzip, xz, lzma, lz4
//! (legacy framing), zstd or bzip2, followed by its decompressed size as a
//! u32 LE (`size_append` in the kernel's Makefile; for gzip this is gzip's own
//! ISIZE trailer).

use crate::codec::{decompress, hex_magic, Codec};
use crate::Error;

const SETUP_SECTS: usize = 0x1f1;
const HDR_MAGIC: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

/// Where the compressed vmlinux sits inside a bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// File offset of the compressed payload.
    pub offset: u64,
    /// Its length, including the trailing u32 size.
    pub length: u64,
    /// The decompressed size announced by the trailer.
    pub decompressed_size: u32,
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, Error> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Error::BzImage {
            what: "file too short for the setup header".into(),
            offset: off as u64,
        })
}

/// Locate the compressed payload through the setup header.
pub fn payload(bzimage: &[u8]) -> Result<Payload, Error> {
    let bz = |what: String, offset: usize| Error::BzImage {
        what,
        offset: offset as u64,
    };
    if bzimage.get(HDR_MAGIC..HDR_MAGIC + 4) != Some(b"HdrS".as_slice()) {
        return Err(bz("no \"HdrS\" setup header magic".into(), HDR_MAGIC));
    }
    let version = bzimage
        .get(HDR_VERSION..HDR_VERSION + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or(0);
    if version < 0x0208 {
        return Err(bz(
            format!("boot protocol {version:#06x} < 2.08 has no payload fields"),
            HDR_VERSION,
        ));
    }
    let setup_sects = match bzimage[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let pm_start = (setup_sects + 1) * 512;
    let off = u32_at(bzimage, PAYLOAD_OFFSET)? as usize;
    let len = u32_at(bzimage, PAYLOAD_LENGTH)? as usize;
    let start = pm_start + off;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bzimage.len())
        .ok_or_else(|| {
            bz(
                format!(
                    "payload {off:#x}+{len:#x} (protected-mode code at {pm_start:#x}) runs past the end of the {}-byte file",
                    bzimage.len()
                ),
                PAYLOAD_OFFSET,
            )
        })?;
    if len < 8 {
        return Err(bz(format!("payload of {len} bytes is too short"), start));
    }
    let decompressed_size = u32_at(bzimage, end - 4)?;
    Ok(Payload {
        offset: start as u64,
        length: len as u64,
        decompressed_size,
    })
}

/// bzImage → decompressed vmlinux ELF bytes (see the module docs).
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, Error> {
    let p = payload(bzimage)?;
    let (start, len) = (p.offset as usize, p.length as usize);
    let data = &bzimage[start..start + len];
    let codec = Codec::detect(data).ok_or_else(|| Error::UnknownCodec {
        magic: hex_magic(data),
        context: format!("bzImage payload at offset {start:#x}"),
    })?;
    // gzip's ISIZE trailer is part of the gzip stream; other codecs had the
    // size appended after their stream ends.
    let stream = if codec == Codec::Gzip {
        data
    } else {
        &data[..len - 4]
    };
    let context = format!("bzImage payload at offset {start:#x}");
    let out = decompress(
        stream,
        codec,
        Some(u64::from(p.decompressed_size)),
        &context,
    )?;
    if out.len() as u32 != p.decompressed_size {
        return Err(Error::DecompressedSize {
            codec: codec.name(),
            context,
            what: format!(
                "decompressed to {} bytes, trailer says {}",
                out.len(),
                p.decompressed_size
            ),
        });
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(Error::BzImage {
            what: format!(
                "decompressed payload is not an ELF (starts {})",
                hex_magic(&out)
            ),
            offset: start as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn vmlinux_bytes() -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.extend((0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()));
        v
    }

    /// setup_sects = 3, payload_offset 0x100, size trailer appended unless gzip.
    fn bzimage(stream: &[u8], append_size: Option<u32>) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm = (usize::from(setup_sects) + 1) * 512;
        let mut img = vec![0u8; pm + 0x100];
        img[SETUP_SECTS] = setup_sects;
        img[HDR_MAGIC..HDR_MAGIC + 4].copy_from_slice(b"HdrS");
        img[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        let mut payload = stream.to_vec();
        if let Some(n) = append_size {
            payload.extend_from_slice(&n.to_le_bytes());
        }
        img[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0x100u32.to_le_bytes());
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&payload);
        img.extend_from_slice(&[0xcc; 64]); // trailing junk after the payload
        img
    }

    fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).expect("write");
        e.finish().expect("finish")
    }

    fn xz(d: &[u8]) -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(d).expect("write");
        e.finish().expect("finish")
    }

    fn lzma(d: &[u8]) -> Vec<u8> {
        let opts = xz2::stream::LzmaOptions::new_preset(1).expect("preset");
        let s = xz2::stream::Stream::new_lzma_encoder(&opts).expect("encoder");
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
        e.write_all(d).expect("write");
        e.finish().expect("finish")
    }

    fn bz2(d: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(d).expect("write");
        e.finish().expect("finish")
    }

    fn lz4_legacy(d: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC_BYTES.to_vec();
        for c in d.chunks(chunk) {
            let b = lz4_flex::block::compress(c);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
        }
        out
    }
    const LZ4_LEGACY_MAGIC_BYTES: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

    #[test]
    fn every_codec_round_trips() {
        let v = vmlinux_bytes();
        let n = v.len() as u32;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", bzimage(&gzip(&v), None)),
            ("xz", bzimage(&xz(&v), Some(n))),
            ("lzma", bzimage(&lzma(&v), Some(n))),
            ("bzip2", bzimage(&bz2(&v), Some(n))),
            (
                "zstd",
                bzimage(&zstd::encode_all(&v[..], 3).expect("zstd"), Some(n)),
            ),
            ("lz4", bzimage(&lz4_legacy(&v, 30_000), Some(n))),
        ];
        for (name, img) in cases {
            let out = extract_vmlinux(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out, v, "{name}");
            let p = payload(&img).expect("payload");
            assert_eq!(p.offset, 4 * 512 + 0x100);
            assert_eq!(p.decompressed_size, n, "{name}");
        }
    }

    #[test]
    fn malformed_images_are_errors() {
        let v = vmlinux_bytes();
        let good = bzimage(&xz(&v), Some(v.len() as u32));

        let mut bad = good.clone();
        bad[HDR_MAGIC] = b'X';
        let e = extract_vmlinux(&bad).expect_err("magic");
        assert!(e.to_string().contains("HdrS"), "{e}");

        assert!(extract_vmlinux(&good[..0x100]).is_err());

        let mut bad = good.clone();
        bad[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = extract_vmlinux(&bad).expect_err("length");
        assert!(e.to_string().contains("past the end"), "{e}");

        let mut bad = good.clone();
        bad[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(extract_vmlinux(&bad).is_err());

        let e = extract_vmlinux(&bzimage(b"LZO?not-a-codec", Some(5))).expect_err("codec");
        assert!(e.to_string().contains("unknown compression"), "{e}");

        let e = extract_vmlinux(&bzimage(&xz(&v), Some(7))).expect_err("size");
        assert!(e.to_string().contains("trailer says 7"), "{e}");

        let e = extract_vmlinux(&bzimage(&xz(b"not an elf"), Some(10))).expect_err("elf");
        assert!(e.to_string().contains("not an ELF"), "{e}");

        let mut stream = xz(&v);
        let mid = stream.len() / 2;
        stream[mid] ^= 0xff;
        assert!(extract_vmlinux(&bzimage(&stream, Some(v.len() as u32))).is_err());

        let mut lz = lz4_legacy(&v, 30_000);
        lz.truncate(lz.len() - 3);
        assert!(extract_vmlinux(&bzimage(&lz, Some(v.len() as u32))).is_err());
    }
}
