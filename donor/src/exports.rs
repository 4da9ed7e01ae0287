//! Export tables (`__ksymtab*`, `__kcrctab*`, `__kflagstab`) shared by
//! vmlinux (ET_EXEC, fields already relocated) and modules (ET_REL, fields
//! resolved through relocations).
//!
//! Layouts seen on x86_64 (`CONFIG_HAVE_ARCH_PREL32_RELOCATIONS`):
//!
//! - `struct kernel_symbol { int value_offset; int name_offset; int
//!   namespace_offset; }` — 12 bytes, every field PC-relative to the field's
//!   own address (5.4+; before 5.4 there is no namespace: 8 bytes).
//! - 6.1 / 6.12: `__ksymtab` + `__ksymtab_gpl`, with parallel `__kcrctab` /
//!   `__kcrctab_gpl` (u32 each) when `CONFIG_MODVERSIONS=y`.
//! - 7.x (found on 7.3.4): a single `__ksymtab` sorted by name with a parallel
//!   `__kflagstab` (one byte per entry, bit 0 = GPL only); no
//!   `__ksymtab_gpl` and, without MODVERSIONS, no `__kcrctab`.

use crate::{Error, Export};

/// `__kflagstab` bit: the symbol is `EXPORT_SYMBOL_GPL`.
pub(crate) const KSYM_FLAG_GPL_ONLY: u8 = 1;

/// Resolves the target of a PREL32 field inside an export table.
pub(crate) trait Prel32 {
    /// Bytes starting at the target of the field at `offset` in `section`,
    /// or `None` if the field does not point anywhere (0 in a linked image,
    /// no relocation in an object).
    fn target(&self, section: &str, offset: u64) -> Result<Option<&[u8]>, Error>;
}

/// One export table and its parallel tables.
pub(crate) struct Table<'t> {
    pub name: &'t str,
    pub size: u64,
    pub gpl: bool,
    pub crcs: Option<Vec<u32>>,
    pub flags: Option<&'t [u8]>,
}

pub(crate) fn cstr<'d>(bytes: &'d [u8], section: &str, offset: u64) -> Result<&'d str, Error> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::section(section, offset, "unterminated string"))?;
    std::str::from_utf8(&bytes[..end])
        .map_err(|_| Error::section(section, offset, "string is not UTF-8"))
}

fn entry_size(t: &Table<'_>) -> Result<u64, Error> {
    let count = t
        .crcs
        .as_ref()
        .map(|c| c.len() as u64)
        .or(t.flags.map(|f| f.len() as u64));
    let size = match count {
        Some(0) if t.size == 0 => 12,
        Some(n) if n > 0 && t.size.is_multiple_of(n) && matches!(t.size / n, 8 | 12) => t.size / n,
        Some(n) => {
            return Err(Error::section(
                t.name,
                0,
                format!(
                    "{} bytes do not hold {n} entries of 8 or 12 bytes (count from the parallel CRC/flags table)",
                    t.size
                ),
            ))
        }
        None if t.size.is_multiple_of(12) => 12,
        None if t.size.is_multiple_of(8) => 8,
        None => {
            return Err(Error::section(
                t.name,
                0,
                format!("size {} is not a multiple of 12 or 8", t.size),
            ))
        }
    };
    Ok(size)
}

/// Read every entry of `table`.
pub(crate) fn read_table(
    table: &Table<'_>,
    resolver: &impl Prel32,
    owner: &str,
) -> Result<Vec<Export>, Error> {
    let esize = entry_size(table)?;
    let count = table.size / esize;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let off = i * esize;
        let name_bytes = resolver
            .target(table.name, off + 4)?
            .ok_or_else(|| Error::section(table.name, off + 4, "entry has no name"))?;
        let name = cstr(name_bytes, table.name, off + 4)?.to_owned();
        let namespace = if esize == 12 {
            match resolver.target(table.name, off + 8)? {
                Some(b) => Some(cstr(b, table.name, off + 8)?.to_owned()),
                None => None,
            }
        } else {
            None
        }
        .filter(|ns| !ns.is_empty());
        let crc = table.crcs.as_ref().and_then(|c| c.get(i as usize).copied());
        let gpl = match table.flags {
            Some(f) => f
                .get(i as usize)
                .map(|b| b & KSYM_FLAG_GPL_ONLY != 0)
                .ok_or_else(|| Error::section("__kflagstab", i, "shorter than __ksymtab"))?,
            None => table.gpl,
        };
        out.push(Export {
            name,
            crc,
            gpl,
            namespace,
            owner: owner.to_owned(),
        });
    }
    Ok(out)
}

/// u32 LE values of a `__kcrctab*` section.
pub(crate) fn crcs_le(data: &[u8]) -> Vec<u32> {
    data.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
