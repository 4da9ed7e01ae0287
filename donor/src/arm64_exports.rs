//! The export table of a raw arm64 `Image`, found by content.
//!
//! Hand-written because no crate reads it: a raw Image has no section table,
//! so `object` cannot name `__ksymtab`. What the kernel's generic linker
//! script (`RO_DATA` in include/asm-generic/vmlinux.lds.h) places, in this
//! order and without gaps (measured on the amd64 vmlinux ELFs of 6.1, 6.12
//! and 7.3, whose section headers say it, and on the arm64 Images of 6.1,
//! 6.12, 7.2 and 7.3 and bullseye's 5.10, whose tables this reader's
//! output equals `Module.symvers` for):
//!
//! - 5.10 → 6.x: `__ksymtab` then `__ksymtab_gpl` (each sorted by name),
//!   `__kcrctab` then `__kcrctab_gpl` (u32 each, parallel, only with
//!   `CONFIG_MODVERSIONS`), then `__ksymtab_strings`;
//! - 7.x: one `__ksymtab` sorted by name, `__kflagstab` (one byte per entry,
//!   bit 0 = GPL only), `__kcrctab` (4-byte aligned, parallel, only with
//!   `CONFIG_MODVERSIONS`), then `__ksymtab_strings`.
//!
//! Each `struct kernel_symbol` is three PREL32 fields (value, name,
//! namespace), relative to the field's own address. The Image is the
//! kernel's memory image from `_text` on, so a file offset plus a PREL32
//! field is the file offset of its target. The table is the longest run of
//! 12-byte entries whose name fields point at NUL-terminated identifiers
//! after the run, whose namespace fields are 0 or point at strings, and
//! whose value fields point inside the image; splitting the run where the
//! names stop ascending gives one table (7.x) or two (GPL-only second).
//! Where the CRCs are (or that there are none) follows from the gap between
//! the tables' end and the first string.

use crate::exports::KSYM_FLAG_GPL_ONLY;
use crate::{Error, Export};

/// `sizeof(struct kernel_symbol)` with PREL32 fields and a namespace.
const ENTRY: usize = 12;
/// Fewer entries than this is not a kernel's export table (Debian's arm64
/// kernels export ~11,000 symbols; a random run of valid-looking entries
/// this long does not occur).
const MIN_ENTRIES: usize = 1000;
/// Longest symbol or namespace name accepted.
const MAX_NAME: usize = 512;
/// The strings follow the tables closely: a name pointing further than this
/// past the run is not an export's name.
const MAX_STRINGS_DISTANCE: usize = 16 << 20;

/// Where the export table lies in the Image, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExportTable {
    /// File offset of `__ksymtab`.
    pub ksymtab: usize,
    /// Entries in `__ksymtab` (non-GPL ones only when `gpl_entries` is `Some`).
    pub entries: usize,
    /// Entries of a separate `__ksymtab_gpl` (6.x), `None` for 7.x's single
    /// table with `__kflagstab`.
    pub gpl_entries: Option<usize>,
    /// File offset of `__kflagstab` (7.x).
    pub kflagstab: Option<usize>,
    /// File offset of `__kcrctab` (`None`: the kernel has no CRCs).
    pub kcrctab: Option<usize>,
    /// File offset of `__ksymtab_strings`.
    pub strings: usize,
    /// The exports, in table order (owner `vmlinux`).
    pub exports: Vec<Export>,
}

/// One entry's fields, resolved to file offsets.
struct Entry {
    at: usize,
    name: usize,
    namespace: Option<usize>,
}

fn i32_at(data: &[u8], at: usize) -> Option<i32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(i32::from_le_bytes(b))
}

/// The file offset a PREL32 field at `at` points to, if inside `0..bound`.
fn prel32(data: &[u8], at: usize, bound: usize) -> Option<usize> {
    let rel = i32_at(data, at)?;
    let target = i64::try_from(at).ok()? + i64::from(rel);
    usize::try_from(target).ok().filter(|t| *t < bound)
}

/// The NUL-terminated string at `at` if every byte satisfies `ok`.
fn string_at(data: &[u8], at: usize, ok: fn(u8) -> bool) -> Option<&[u8]> {
    let rest = data.get(at..)?;
    let end = rest.iter().take(MAX_NAME + 1).position(|&b| b == 0)?;
    let s = &rest[..end];
    s.iter().all(|&b| ok(b)).then_some(s)
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

fn namespace_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// The entry at `at` if its three fields look like a `struct kernel_symbol`
/// of this Image (`value_bound`: the image's size in memory).
fn entry_at(data: &[u8], at: usize, value_bound: usize) -> Option<Entry> {
    prel32(data, at, value_bound)?;
    let name = prel32(data, at + 4, data.len()).filter(|t| *t > at)?;
    if string_at(data, name, ident_byte).is_none_or(<[u8]>::is_empty) {
        return None;
    }
    let namespace = match i32_at(data, at + 8)? {
        0 => None,
        _ => {
            let t = prel32(data, at + 8, data.len()).filter(|t| *t > at)?;
            string_at(data, t, namespace_byte)?;
            Some(t)
        }
    };
    Some(Entry {
        at,
        name,
        namespace,
    })
}

/// The longest run of consecutive entries (any 4-byte phase).
fn longest_run(data: &[u8], value_bound: usize) -> Vec<Entry> {
    let mut best: Vec<Entry> = Vec::new();
    for phase in (0..ENTRY).step_by(4) {
        let mut run: Vec<Entry> = Vec::new();
        let mut at = phase;
        while at + ENTRY <= data.len() {
            match entry_at(data, at, value_bound) {
                Some(e) => run.push(e),
                None => {
                    if run.len() > best.len() {
                        best = std::mem::take(&mut run);
                    } else {
                        run.clear();
                    }
                }
            }
            at += ENTRY;
        }
        if run.len() > best.len() {
            best = run;
        }
    }
    best
}

fn name<'d>(data: &'d [u8], e: &Entry) -> &'d [u8] {
    string_at(data, e.name, ident_byte).unwrap_or_default()
}

/// Reads the export table of the raw Image `data` (`image_size`: the size
/// the Image header says the kernel takes in memory, bss included).
pub(crate) fn read(data: &[u8], image_size: usize) -> Result<RawExportTable, Error> {
    let value_bound = image_size.max(data.len());
    let mut run = longest_run(data, value_bound);
    let err = |what: String, offset: usize| Error::Arm64Image {
        what,
        offset: offset as u64,
    };
    if run.len() < MIN_ENTRIES {
        return Err(err(
            format!(
                "no export table (__ksymtab): the longest run of kernel_symbol-shaped entries has {} (at least {MIN_ENTRIES} expected)",
                run.len()
            ),
            run.first().map_or(0, |e| e.at),
        ));
    }
    // Strings follow the tables: drop leading entries that only look like
    // exports because their fields happen to point at text.
    let end = run.last().map_or(0, |e| e.at + ENTRY);
    let is_after = |e: &Entry| {
        let near = |t: usize| t >= end && t - end < MAX_STRINGS_DISTANCE;
        near(e.name) && e.namespace.is_none_or(near)
    };
    let first_real = run.iter().position(is_after).unwrap_or(run.len());
    run.drain(..first_real);
    if let Some(bad) = run.iter().find(|e| !is_after(e)) {
        return Err(err(
            "a __ksymtab entry's name or namespace does not point into the strings after the table"
                .into(),
            bad.at,
        ));
    }
    // Split where names go down: one table (7.x) or two (6.x). (5.10's
    // arm64 tables list a few names twice in a row, e.g. `__memcpy`, `memcpy`
    // and `clear_page`: exported from two objects.)
    let mut splits = Vec::new();
    for (i, w) in run.windows(2).enumerate() {
        if name(data, &w[1]) < name(data, &w[0]) {
            splits.push(i + 1);
        }
    }
    let n = run.len();
    let start = run.first().map_or(0, |e| e.at);
    let gpl_from = match splits.as_slice() {
        [] => None,
        [i] => Some(*i),
        more => {
            return Err(err(
                format!(
                    "the export table's names are not sorted: {} sorted runs (1 or 2 expected)",
                    more.len() + 1
                ),
                run[more[1]].at,
            ))
        }
    };
    let flags = match gpl_from {
        Some(_) => None,
        None => {
            let f = data
                .get(end..end + n)
                .ok_or_else(|| err("__kflagstab past the end of the Image".into(), end))?;
            if let Some(i) = f.iter().position(|b| b & !KSYM_FLAG_GPL_ONLY != 0) {
                return Err(err(
                    format!(
                        "__kflagstab (after the single sorted __ksymtab) has flag byte {:#04x}; only bit 0 (GPL only) is known",
                        f[i]
                    ),
                    end + i,
                ));
            }
            Some(f)
        }
    };
    let after_flags = end + flags.map_or(0, <[u8]>::len);
    let strings = run
        .iter()
        .flat_map(|e| std::iter::once(e.name).chain(e.namespace))
        .min()
        .unwrap_or(after_flags);
    let crc_at = after_flags.next_multiple_of(4);
    let kcrctab = if strings >= crc_at + 4 * n && strings - (crc_at + 4 * n) < 4 {
        Some(crc_at)
    } else if strings >= after_flags && strings - after_flags < 4 {
        None
    } else {
        return Err(err(
            format!(
                "{} bytes lie between the export table's end and its first string (at {strings:#x}): neither nothing nor the {n} CRCs of __kcrctab",
                strings.saturating_sub(after_flags)
            ),
            after_flags,
        ));
    };
    let mut exports = Vec::with_capacity(n);
    for (i, e) in run.iter().enumerate() {
        let name = String::from_utf8_lossy(name(data, e)).into_owned();
        let namespace = e
            .namespace
            .and_then(|t| string_at(data, t, namespace_byte))
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned());
        let gpl = match (gpl_from, flags) {
            (Some(g), _) => i >= g,
            (None, Some(f)) => f[i] & KSYM_FLAG_GPL_ONLY != 0,
            (None, None) => false,
        };
        let crc = kcrctab
            .and_then(|c| i32_at(data, c + 4 * i))
            .map(|v| v as u32);
        exports.push(Export {
            name,
            crc,
            gpl,
            namespace,
            owner: "vmlinux".into(),
        });
    }
    Ok(RawExportTable {
        ksymtab: start,
        entries: gpl_from.unwrap_or(n),
        gpl_entries: gpl_from.map(|g| n - g),
        kflagstab: flags.map(|_| end),
        kcrctab,
        strings,
        exports,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An image body: `pad` bytes of noise, then tables in one of the two
    /// layouts, then strings. Returns (bytes, offset of __ksymtab).
    fn layout(names: &[(&str, bool, Option<&str>)], split: bool, crcs: bool) -> (Vec<u8>, usize) {
        let pad = 0x104; // not a multiple of 12: the reader finds any phase
        let n = names.len();
        let mut order: Vec<usize> = (0..n).collect();
        if split {
            order.sort_by_key(|&i| (names[i].1, names[i].0));
        } else {
            order.sort_by_key(|&i| names[i].0);
        }
        let tab = pad;
        let after_tab = tab + ENTRY * n;
        let after_flags = if split { after_tab } else { after_tab + n };
        let crc_at = after_flags.next_multiple_of(4);
        let strings = if crcs { crc_at + 4 * n } else { after_flags };
        let mut str_blob = Vec::new();
        let mut name_off = vec![0; n];
        let mut ns_off = vec![None; n];
        for (i, (nm, _, ns)) in names.iter().enumerate() {
            name_off[i] = strings + str_blob.len();
            str_blob.extend_from_slice(nm.as_bytes());
            str_blob.push(0);
            if let Some(ns) = ns {
                ns_off[i] = Some(strings + str_blob.len());
                str_blob.extend_from_slice(ns.as_bytes());
                str_blob.push(0);
            }
        }
        // The first string must be referenced: put the first name first.
        let mut img = vec![0x5a_u8; strings];
        img.extend_from_slice(&str_blob);
        img.extend_from_slice(&[0u8; 64]);
        for (slot, &i) in order.iter().enumerate() {
            let at = tab + ENTRY * slot;
            let value = 0x40i32 - at as i32;
            let name = name_off[i] as i32 - (at + 4) as i32;
            let ns = ns_off[i].map_or(0, |o| o as i32 - (at + 8) as i32);
            img[at..at + 4].copy_from_slice(&value.to_le_bytes());
            img[at + 4..at + 8].copy_from_slice(&name.to_le_bytes());
            img[at + 8..at + 12].copy_from_slice(&ns.to_le_bytes());
            if !split {
                img[after_tab + slot] = u8::from(names[i].1);
            }
            if crcs {
                let c = crc_at + 4 * slot;
                img[c..c + 4].copy_from_slice(&(0xc0de_0000u32 + i as u32).to_le_bytes());
            }
        }
        (img, tab)
    }

    fn names(n: usize) -> Vec<(String, bool, Option<&'static str>)> {
        (0..n)
            .map(|i| {
                (
                    format!("sym_{i:05}"),
                    i.is_multiple_of(3),
                    i.is_multiple_of(7).then_some("NS_X"),
                )
            })
            .collect()
    }

    fn check(split: bool, crcs: bool) {
        let owned = names(MIN_ENTRIES + 17);
        let refs: Vec<(&str, bool, Option<&str>)> =
            owned.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        let (img, tab) = layout(&refs, split, crcs);
        let t = read(&img, img.len()).unwrap();
        assert_eq!(t.ksymtab, tab);
        assert_eq!(t.exports.len(), refs.len());
        assert_eq!(t.kcrctab.is_some(), crcs);
        assert_eq!(t.kflagstab.is_some(), !split);
        assert_eq!(t.gpl_entries.is_some(), split);
        for e in &t.exports {
            let i: usize = e.name["sym_".len()..].parse().unwrap();
            assert_eq!(e.gpl, i.is_multiple_of(3), "{}", e.name);
            assert_eq!(
                e.namespace.as_deref(),
                i.is_multiple_of(7).then_some("NS_X")
            );
            assert_eq!(e.crc, crcs.then_some(0xc0de_0000 + i as u32), "{}", e.name);
            assert_eq!(e.owner, "vmlinux");
        }
    }

    #[test]
    fn reads_both_layouts_with_and_without_crcs() {
        check(true, true);
        check(true, false);
        check(false, true);
        check(false, false);
    }

    #[test]
    fn refuses_what_is_not_an_export_table() {
        let img = vec![0u8; 4096];
        let e = read(&img, img.len()).unwrap_err().to_string();
        assert!(e.contains("no export table"), "{e}");

        // Unsorted: three sorted runs.
        let owned = names(MIN_ENTRIES + 5);
        let refs: Vec<(&str, bool, Option<&str>)> =
            owned.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        let (mut img, tab) = layout(&refs, true, true);
        let (a, b) = (tab + ENTRY * 10, tab + ENTRY * 500);
        // Swap two entries' name fields (keeping them PREL32-correct).
        let name_a = a + 4 + i32_at(&img, a + 4).unwrap() as usize;
        let name_b = b + 4 + i32_at(&img, b + 4).unwrap() as usize;
        img[a + 4..a + 8].copy_from_slice(&(name_b as i32 - (a + 4) as i32).to_le_bytes());
        img[b + 4..b + 8].copy_from_slice(&(name_a as i32 - (b + 4) as i32).to_le_bytes());
        let e = read(&img, img.len()).unwrap_err().to_string();
        assert!(e.contains("not sorted"), "{e}");

        // Something between the tables and the strings that is not the CRCs.
        let (img, _) = layout(&refs, true, true);
        let mut cut = img.clone();
        // Shift the strings by 8 bytes: the CRC gap no longer fits.
        let first_string = t_strings(&img);
        cut.splice(first_string..first_string, [0x41u8; 8]);
        fix_names(&mut cut, &img, tab, refs.len(), first_string, 8);
        let e = read(&cut, cut.len()).unwrap_err().to_string();
        assert!(e.contains("neither nothing nor"), "{e}");

        // An unknown __kflagstab bit.
        let (mut img, _) = layout(&refs, false, false);
        let flags = tab + ENTRY * refs.len();
        img[flags + 3] = 0x80;
        let e = read(&img, img.len()).unwrap_err().to_string();
        assert!(e.contains("flag byte 0x80"), "{e}");
    }

    fn t_strings(img: &[u8]) -> usize {
        read(img, img.len()).unwrap().strings
    }

    /// After inserting `by` bytes at `at`, re-point the name and namespace
    /// fields (of the `n` entries at `tab`) at the moved strings.
    fn fix_names(img: &mut [u8], orig: &[u8], tab: usize, n: usize, at: usize, by: usize) {
        for slot in 0..n {
            for field in [4, 8] {
                let f = tab + ENTRY * slot + field;
                let rel = i32_at(orig, f).unwrap();
                if rel == 0 {
                    continue;
                }
                let t = (f as i64 + i64::from(rel)) as usize;
                let t = if t >= at { t + by } else { t };
                img[f..f + 4].copy_from_slice(&(t as i32 - f as i32).to_le_bytes());
            }
        }
    }

    #[test]
    fn never_panics_on_noise() {
        let mut x = 0x1234_5678_u32;
        let img: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 97) as u8 + 0x20
            })
            .collect();
        assert!(read(&img, 0).is_err());
    }
}
