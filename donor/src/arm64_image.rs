//! arm64 `vmlinuz`: Debian ships the raw `Image` (with its EFI stub), not an
//! ELF and not compressed. Its 64-byte header (Documentation/arch/arm64/
//! booting.rst) carries the magic `ARM\x64` at offset 0x38; there is no
//! section table, so the facts an x86 `vmlinux` gives by section name are
//! found by content: the `.BTF` blob by its header (magic 0xeb9f, version 1,
//! header length 24, then offsets and lengths of the type and string parts),
//! checked by parsing it, the banner as in [`crate::vmlinux`], and the
//! export table by its shape ([`crate::arm64_exports`]).

use crate::btf::Btf;
use crate::Error;

/// Offset of the arm64 Image header's magic.
const MAGIC_OFFSET: usize = 0x38;
/// Offset of the header's `flags` (u64 LE).
const FLAGS_OFFSET: usize = 24;
/// Offset of the header's `image_size` (u64 LE).
const IMAGE_SIZE_OFFSET: usize = 16;
/// `ARM\x64`, little-endian u32 0x644d5241.
const MAGIC: &[u8; 4] = b"ARM\x64";
/// The first 8 bytes of a little-endian BTF header: magic 0xeb9f, version 1,
/// flags 0, header length 24.
const BTF_HEADER_START: [u8; 8] = [0x9f, 0xeb, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00];
/// A BTF header's length.
const BTF_HEADER_LEN: usize = 24;

/// A raw arm64 kernel Image.
#[derive(Clone, Copy)]
pub struct Arm64Image<'a> {
    data: &'a [u8],
}

impl std::fmt::Debug for Arm64Image<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Arm64Image({} bytes)", self.data.len())
    }
}

/// Whether `data` starts with an arm64 Image header.
pub fn is_arm64_image(data: &[u8]) -> bool {
    data.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) == Some(MAGIC)
}

impl<'a> Arm64Image<'a> {
    /// Checks the header magic.
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        if !is_arm64_image(data) {
            return Err(Error::NotFound {
                what: format!("arm64 Image magic \"ARM\\x64\" at offset {MAGIC_OFFSET:#x}"),
            });
        }
        Ok(Arm64Image { data })
    }

    /// The kernel's BTF: the largest blob with a BTF header whose stated
    /// extent lies inside the image and parses as BTF.
    pub fn btf(&self) -> Result<&'a [u8], Error> {
        let mut best: Option<&'a [u8]> = None;
        let mut from = 0;
        while let Some(pos) = find(&self.data[from..], &BTF_HEADER_START) {
            let start = from + pos;
            from = start + 1;
            let Some(blob) = btf_extent(self.data, start) else {
                continue;
            };
            if best.is_some_and(|b| b.len() >= blob.len()) {
                continue;
            }
            if Btf::parse(blob).is_ok() {
                best = Some(blob);
            }
        }
        best.ok_or_else(|| Error::NotFound {
            what: "a .BTF blob (header 9f eb 01 00 18 00 00 00) in the arm64 Image".into(),
        })
    }

    /// The kernel's own export table (`__ksymtab*`, `__kflagstab`,
    /// `__kcrctab*`), found by content.
    pub fn export_table(&self) -> Result<crate::arm64_exports::RawExportTable, Error> {
        crate::arm64_exports::read(self.data, self.image_size())
    }

    /// The exports of [`Self::export_table`], owner `vmlinux`, in table order.
    pub fn exports(&self) -> Result<Vec<crate::Export>, Error> {
        Ok(self.export_table()?.exports)
    }

    /// The header's `image_size` (the kernel's size in memory, bss
    /// included; 0 in very old Images).
    fn image_size(&self) -> usize {
        self.data
            .get(IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(0)
    }

    /// The kernel's page size as log2 (12, 14 or 16), from the header's
    /// `flags` (bits 1-2: 1 = 4K, 2 = 16K, 3 = 64K); `None` when the
    /// header leaves it unspecified (0).
    pub fn page_shift(&self) -> Option<u32> {
        let flags = self
            .data
            .get(FLAGS_OFFSET..FLAGS_OFFSET + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)?;
        match (flags >> 1) & 3 {
            1 => Some(12),
            2 => Some(14),
            3 => Some(16),
            _ => None,
        }
    }

    /// The kernel release from the banner (`6.1.0-47-arm64`).
    pub fn release(&self) -> Result<String, Error> {
        crate::vmlinux::release_in_banner(&self.banner()?)
    }

    /// The `linux_banner` string.
    pub fn banner(&self) -> Result<String, Error> {
        crate::vmlinux::banner_in(self.data).ok_or_else(|| Error::NotFound {
            what: "linux_banner (\"Linux version <release> ...\\n\") in the arm64 Image".into(),
        })
    }
}

/// The bytes a BTF header at `start` says the blob spans, if inside `data`.
fn btf_extent(data: &[u8], start: usize) -> Option<&[u8]> {
    let hdr = data.get(start..start.checked_add(BTF_HEADER_LEN)?)?;
    let u32_at = |o: usize| -> Option<usize> {
        let b: [u8; 4] = hdr.get(o..o + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let (type_off, type_len) = (u32_at(8)?, u32_at(12)?);
    let (str_off, str_len) = (u32_at(16)?, u32_at(20)?);
    let body = type_off
        .checked_add(type_len)?
        .max(str_off.checked_add(str_len)?);
    let end = start.checked_add(BTF_HEADER_LEN)?.checked_add(body)?;
    data.get(start..end)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A BTF blob with one type (int, 4 bytes) and its name.
    fn tiny_btf() -> Vec<u8> {
        let strings = b"\0int\0";
        // BTF_KIND_INT (1) << 24, size 4, then the int encoding word (32 bits).
        let mut types = Vec::new();
        types.extend_from_slice(&1u32.to_le_bytes()); // name_off
        types.extend_from_slice(&(1u32 << 24).to_le_bytes()); // info
        types.extend_from_slice(&4u32.to_le_bytes()); // size
        types.extend_from_slice(&32u32.to_le_bytes()); // encoding: bits 32
        let mut b = BTF_HEADER_START.to_vec();
        for v in [0, types.len(), types.len(), strings.len()] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(strings);
        b
    }

    fn image(body: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 64];
        img[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(MAGIC);
        img.extend_from_slice(body);
        img
    }

    #[test]
    fn finds_btf_and_banner_by_content() {
        let btf = tiny_btf();
        let mut body = b"junk \x9f\xeb\x01\x00\x18\x00\x00\x00 truncated header".to_vec();
        body.extend_from_slice(&btf);
        body.extend_from_slice(b"\0Linux version 6.1.0-47-arm64 (x) # SMP\n\0");
        body.extend_from_slice(b"Linux version 6.1.0-47-arm64 (x) #1 SMP Debian\n\0");
        let img = image(&body);
        let i = Arm64Image::parse(&img).unwrap();
        assert_eq!(i.btf().unwrap(), &btf[..]);
        assert_eq!(
            i.banner().unwrap(),
            "Linux version 6.1.0-47-arm64 (x) #1 SMP Debian\n"
        );
    }

    #[test]
    fn page_size_from_the_header_flags() {
        let mut img = image(b"");
        assert_eq!(Arm64Image::parse(&img).unwrap().page_shift(), None);
        for (bits, shift) in [(1u64, 12), (2, 14), (3, 16)] {
            img[FLAGS_OFFSET..FLAGS_OFFSET + 8].copy_from_slice(&((bits << 1) | 8).to_le_bytes());
            assert_eq!(Arm64Image::parse(&img).unwrap().page_shift(), Some(shift));
        }
    }

    #[test]
    fn refuses_what_is_not_there() {
        assert!(Arm64Image::parse(b"MZ not an image").is_err());
        let img = image(b"no btf here");
        let i = Arm64Image::parse(&img).unwrap();
        assert!(i.btf().is_err());
        assert!(i.banner().is_err());
        // A header whose lengths point past the end is not a blob.
        let mut b = BTF_HEADER_START.to_vec();
        for v in [0u32, 0x1000_0000, 0, 5] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let img = image(&b);
        assert!(Arm64Image::parse(&img).unwrap().btf().is_err());
    }
}
