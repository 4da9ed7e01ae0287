//! Facts from a linked `vmlinux` ELF (as extracted by
//! [`crate::bzimage::extract_vmlinux`]): its `.BTF`, its banner and its own
//! export table.
//!
//! Debian's vmlinux inside vmlinuz is stripped (no `.symtab`), so nothing
//! here needs symbols: exports are read from `__ksymtab*` (see
//! `exports.rs` for the layouts of 6.1, 6.12 and 7.x) and the banner is found
//! in `.rodata` when `linux_banner` is not in a symbol table.

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use crate::exports::{self, Prel32, Table};
use crate::{Error, Export};

/// Facts from a vmlinux ELF (borrowed).
pub struct Vmlinux<'a> {
    data: &'a [u8],
    elf: ElfFile64<'a, Endianness>,
}

impl std::fmt::Debug for Vmlinux<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmlinux")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

const BANNER_PREFIX: &[u8] = b"Linux version ";

impl<'a> Vmlinux<'a> {
    /// Parse a 64-bit little-endian ELF executable.
    pub fn parse(elf: &'a [u8]) -> Result<Self, Error> {
        let file = ElfFile64::<Endianness>::parse(elf).map_err(|e| Error::elf("vmlinux", e))?;
        if !file.is_little_endian() {
            return Err(Error::NotFound {
                what: "little-endian vmlinux (big-endian ELF given)".into(),
            });
        }
        Ok(Vmlinux {
            data: elf,
            elf: file,
        })
    }

    /// Raw bytes of a section by name (None if absent or without file data).
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        self.elf.section_by_name(name)?.data().ok()
    }

    /// Raw bytes of the .BTF section (None if absent).
    pub fn btf_section(&self) -> Option<&'a [u8]> {
        self.section(".BTF")
    }

    /// The `linux_banner` string, e.g. `"Linux version 6.1.0-47-amd64 (...)
    /// ... #1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3 (2026-05-08)\n"`.
    ///
    /// Uses the `linux_banner` symbol if the ELF has a symbol table, else a
    /// NUL-terminated string in `.rodata` that starts with `"Linux version "`
    /// followed by a release and ends in a newline; of several, the first
    /// with a build number after `#` (6.1+ also keep the weak placeholder
    /// banner `"... # SMP ..."` of `init/version.o` in `.rodata`).
    pub fn banner(&self) -> Result<String, Error> {
        if let Some(sym) = self.elf.symbol_by_name("linux_banner") {
            if let Some(bytes) = self.va_bytes(sym.address()) {
                let s = exports::cstr(bytes, "linux_banner", 0)?;
                return Ok(s.to_owned());
            }
        }
        let rodata = self
            .section(".rodata")
            .ok_or_else(|| Error::MissingSection {
                section: ".rodata".into(),
                context: "looking for linux_banner".into(),
            })?;
        banner_in(rodata).ok_or_else(|| Error::NotFound {
            what: "linux_banner (\"Linux version <release> ...\\n\" in .rodata)".into(),
        })
    }

    /// The kernel release from the banner (`6.1.0-47-amd64`).
    pub fn release(&self) -> Result<String, Error> {
        release_in_banner(&self.banner()?)
    }

    /// Exports from the kernel's own export table, owner `"vmlinux"`.
    ///
    /// 6.1/6.12: `__ksymtab` (+`__kcrctab`) and `__ksymtab_gpl`
    /// (+`__kcrctab_gpl`). 7.x: one `__ksymtab` with a parallel
    /// `__kflagstab` (bit 0: GPL only) and no CRCs. Fields are PREL32
    /// relative to their own virtual address. Entries come in table order.
    pub fn exports(&self) -> Result<Vec<Export>, Error> {
        let flags = self.section("__kflagstab");
        let mut out = Vec::new();
        let mut found = false;
        for (name, crc_name, gpl) in [
            ("__ksymtab", "__kcrctab", false),
            ("__ksymtab_gpl", "__kcrctab_gpl", true),
        ] {
            let Some(sec) = self.elf.section_by_name(name) else {
                continue;
            };
            found = true;
            let table = Table {
                name,
                size: sec.size(),
                gpl,
                crcs: self.section(crc_name).map(exports::crcs_le),
                flags: if name == "__ksymtab" { flags } else { None },
            };
            out.extend(exports::read_table(&table, self, "vmlinux")?);
        }
        if !found {
            return Err(Error::MissingSection {
                section: "__ksymtab".into(),
                context: "reading vmlinux exports".into(),
            });
        }
        Ok(out)
    }

    /// Names of the exports whose value lies in `.data..percpu`: the
    /// exported per-CPU variables (`current_task`, `__per_cpu_offset` is
    /// not one). For kernels whose BTF has no `.data..percpu` DATASEC
    /// (Debian 5.10: pahole 1.20 ran with `--skip_encoding_btf_vars`), this
    /// is the only place the image says which exports are per-CPU. The
    /// value field of each `__ksymtab*` entry is PREL32 (wrapping: per-CPU
    /// symbols of a zero-based per-CPU area sit at small addresses).
    pub fn percpu_exports(&self) -> Result<Vec<String>, Error> {
        let Some(pcpu) = self.elf.section_by_name(".data..percpu") else {
            return Ok(Vec::new());
        };
        let (start, end) = (pcpu.address(), pcpu.address().saturating_add(pcpu.size()));
        let mut out = Vec::new();
        for name in ["__ksymtab", "__ksymtab_gpl"] {
            let Some(sec) = self.elf.section_by_name(name) else {
                continue;
            };
            let data = sec
                .data()
                .map_err(|e| Error::elf(format!("vmlinux section {name}"), e))?;
            let table = Table {
                name,
                size: sec.size(),
                gpl: name == "__ksymtab_gpl",
                crcs: None,
                flags: None,
            };
            let esize = if sec.size().is_multiple_of(12) { 12 } else { 8 };
            let entries = exports::read_table(&table, self, "vmlinux")?;
            for (i, e) in entries.into_iter().enumerate() {
                let off = i as u64 * esize;
                let field = usize::try_from(off)
                    .ok()
                    .and_then(|o| data.get(o..o.checked_add(4)?))
                    .ok_or_else(|| Error::section(name, off, "entry past end of section"))?;
                let rel = i32::from_le_bytes([field[0], field[1], field[2], field[3]]);
                let va = sec
                    .address()
                    .wrapping_add(off)
                    .wrapping_add(i64::from(rel) as u64);
                if (start..end).contains(&va) {
                    out.push(e.name);
                }
            }
        }
        Ok(out)
    }

    /// File bytes from virtual address `va` to the end of its section.
    fn va_bytes(&self, va: u64) -> Option<&'a [u8]> {
        self.elf.sections().find_map(|s| {
            let (addr, size) = (s.address(), s.size());
            if addr == 0 || va < addr || va - addr >= size {
                return None;
            }
            s.file_range()?;
            let data = s.data().ok()?;
            data.get(usize::try_from(va - addr).ok()?..)
        })
    }
}

impl<'a> Prel32 for Vmlinux<'a> {
    fn target(&self, section: &str, offset: u64) -> Result<Option<&[u8]>, Error> {
        let sec = self
            .elf
            .section_by_name(section)
            .ok_or_else(|| Error::MissingSection {
                section: section.into(),
                context: "reading a PREL32 field".into(),
            })?;
        let data = sec
            .data()
            .map_err(|e| Error::elf(format!("vmlinux section {section}"), e))?;
        let field = usize::try_from(offset)
            .ok()
            .and_then(|o| data.get(o..o.checked_add(4)?))
            .ok_or_else(|| Error::section(section, offset, "field past end of section"))?;
        let rel = i32::from_le_bytes([field[0], field[1], field[2], field[3]]);
        if rel == 0 {
            return Ok(None);
        }
        let va = sec
            .address()
            .wrapping_add(offset)
            .wrapping_add(i64::from(rel) as u64);
        self.va_bytes(va).map(Some).ok_or_else(|| {
            Error::section(
                section,
                offset,
                format!("PREL32 target {va:#x} is outside every section with file data"),
            )
        })
    }
}

/// The release a banner names (`Linux version 6.1.0-47-amd64 (...`).
pub(crate) fn release_in_banner(banner: &str) -> Result<String, Error> {
    banner
        .get(BANNER_PREFIX.len()..)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| Error::NotFound {
            what: format!("release in banner {banner:?}"),
        })
}

/// The kernel banner among `bytes` (`.rodata`, or a whole raw image): a
/// NUL-terminated string starting with `"Linux version "` followed by a
/// release and ending in a newline; of several, the first with a build
/// number after `#` (6.1+ also keep the weak placeholder banner
/// `"... # SMP ..."` of `init/version.o`).
pub(crate) fn banner_in(bytes: &[u8]) -> Option<String> {
    let mut candidates = Vec::new();
    let mut from = 0;
    while let Some(pos) = find(&bytes[from..], BANNER_PREFIX) {
        let start = from + pos;
        from = start + 1;
        let rest = &bytes[start..];
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            break;
        };
        let s = &rest[..end];
        let release_ok = s
            .get(BANNER_PREFIX.len())
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if release_ok && s.ends_with(b"\n") && s.len() < 1024 {
            if let Ok(s) = std::str::from_utf8(s) {
                candidates.push(s);
            }
        }
    }
    // Since 6.1 (init/version-timestamp.c) .bytes holds two banners: the
    // weak placeholder compiled into init/version.o ("... # SMP ...", no
    // build number) and the real one linked last ("... #1 SMP ...").
    // Prefer the one with a build number.
    let numbered = candidates.iter().find(|s| {
        s.find(") #")
            .and_then(|i| s.as_bytes().get(i + 3))
            .is_some_and(u8::is_ascii_digit)
    });
    numbered.or(candidates.first()).map(|s| (*s).to_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Minimal ET_EXEC writer: (name, address, bytes) PROGBITS sections.
    pub(crate) fn exec_elf(sections: &[(&str, u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        let mut shstr = vec![0u8];
        let mut hdrs = Vec::new();
        for (name, addr, data) in sections {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let name_off = shstr.len() as u32;
            shstr.extend_from_slice(name.as_bytes());
            shstr.push(0);
            hdrs.push((
                name_off,
                1u32,
                2u64,
                *addr,
                out.len() as u64,
                data.len() as u64,
            ));
            out.extend_from_slice(data);
        }
        let name_off = shstr.len() as u32;
        shstr.extend_from_slice(b".shstrtab\0");
        hdrs.push((name_off, 3, 0, 0, out.len() as u64, shstr.len() as u64));
        out.extend_from_slice(&shstr);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len() as u64;
        out.extend_from_slice(&[0u8; 64]); // null section
        for (n, t, fl, a, o, s) in &hdrs {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&fl.to_le_bytes());
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&[0u8; 8]); // link, info
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        let shnum = hdrs.len() as u16 + 1;
        let h = &mut out[..64];
        h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        h[16..18].copy_from_slice(&2u16.to_le_bytes());
        h[18..20].copy_from_slice(&62u16.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[40..48].copy_from_slice(&shoff.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[58..60].copy_from_slice(&64u16.to_le_bytes());
        h[60..62].copy_from_slice(&shnum.to_le_bytes());
        h[62..64].copy_from_slice(&(shnum - 1).to_le_bytes());
        out
    }

    const STRS: u64 = 0x4000;
    const TEXT: u64 = 0x5000;

    /// Strings at STRS: "\0foo\0bar\0baz\0NS_X\0" → offsets 1, 5, 9, 13.
    fn strings() -> Vec<u8> {
        b"\0foo\0bar\0baz\0NS_X\0".to_vec()
    }

    fn ksymtab(base: u64, entries: &[(u64, Option<u64>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &(name, ns)) in entries.iter().enumerate() {
            let e = base + 12 * i as u64;
            let rel = |target: u64, field: u64| (target.wrapping_sub(field) as i32).to_le_bytes();
            out.extend_from_slice(&rel(TEXT + 16 * i as u64, e));
            out.extend_from_slice(&rel(STRS + name, e + 4));
            out.extend_from_slice(&ns.map_or([0; 4], |n| rel(STRS + n, e + 8)));
        }
        out
    }

    fn rodata() -> Vec<u8> {
        let mut r = b"junk\0Linux version \0".to_vec();
        r.extend_from_slice(
            b"Linux version 6.1.0-47-amd64 (x@y) (gcc) # SMP PREEMPT_DYNAMIC Debian\n\0",
        );
        r.extend_from_slice(
            b"Linux version 6.1.0-47-amd64 (x@y) (gcc) #1 SMP PREEMPT_DYNAMIC Debian\n\0",
        );
        r
    }

    fn crcs(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    pub(crate) fn six_one_style() -> Vec<u8> {
        exec_elf(&[
            (".text", TEXT, vec![0xc3; 64]),
            (".rodata", 0x6000, rodata()),
            (
                "__ksymtab",
                0x1000,
                ksymtab(0x1000, &[(1, None), (5, Some(0))]),
            ),
            ("__ksymtab_gpl", 0x2000, ksymtab(0x2000, &[(9, Some(13))])),
            ("__kcrctab", 0x3000, crcs(&[0x1111_1111, 0x2222_2222])),
            ("__kcrctab_gpl", 0x3100, crcs(&[0x3333_3333])),
            ("__ksymtab_strings", STRS, strings()),
            (".BTF", 0x7000, b"btf!".to_vec()),
        ])
    }

    #[test]
    fn exports_6x_layout() {
        let elf = six_one_style();
        let vm = Vmlinux::parse(&elf).expect("parse");
        let ex = vm.exports().expect("exports");
        let e = |name: &str, crc, gpl, ns: Option<&str>| Export {
            name: name.into(),
            crc: Some(crc),
            gpl,
            namespace: ns.map(Into::into),
            owner: "vmlinux".into(),
        };
        assert_eq!(
            ex,
            vec![
                e("foo", 0x1111_1111, false, None),
                e("bar", 0x2222_2222, false, None),
                e("baz", 0x3333_3333, true, Some("NS_X")),
            ]
        );
        assert_eq!(vm.btf_section(), Some(&b"btf!"[..]));
        let banner = vm.banner().expect("banner");
        assert!(banner.contains("#1 SMP"), "{banner}");
        assert_eq!(vm.release().expect("release"), "6.1.0-47-amd64");
    }

    #[test]
    fn exports_7x_layout() {
        let elf = exec_elf(&[
            (".text", TEXT, vec![0xc3; 64]),
            (
                "__ksymtab",
                0x1000,
                ksymtab(0x1000, &[(5, None), (9, Some(13)), (1, None)]),
            ),
            ("__kflagstab", 0x2000, vec![0, 1, 1]),
            ("__ksymtab_strings", STRS, strings()),
        ]);
        let vm = Vmlinux::parse(&elf).expect("parse");
        let ex = vm.exports().expect("exports");
        let got: Vec<_> = ex
            .iter()
            .map(|e| (e.name.as_str(), e.crc, e.gpl, e.namespace.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bar", None, false, None),
                ("baz", None, true, Some("NS_X")),
                ("foo", None, true, None),
            ]
        );
        assert!(vm.banner().is_err()); // no .rodata
        assert_eq!(vm.btf_section(), None);
    }

    #[test]
    fn bad_tables_are_errors() {
        // name pointing outside every section
        let mut tab = ksymtab(0x1000, &[(1, None)]);
        tab[4..8].copy_from_slice(&0x7000_0000i32.to_le_bytes());
        let elf = exec_elf(&[
            ("__ksymtab", 0x1000, tab),
            ("__ksymtab_strings", STRS, strings()),
        ]);
        let e = Vmlinux::parse(&elf)
            .expect("parse")
            .exports()
            .expect_err("oob");
        assert!(e.to_string().contains("__ksymtab"), "{e}");
        // CRC table disagreeing with the entry count
        let elf = exec_elf(&[
            ("__ksymtab", 0x1000, ksymtab(0x1000, &[(1, None)])),
            ("__kcrctab", 0x3000, crcs(&[1, 2, 3])),
            ("__ksymtab_strings", STRS, strings()),
        ]);
        assert!(Vmlinux::parse(&elf).expect("parse").exports().is_err());
        // no table at all
        let elf = exec_elf(&[(".text", TEXT, vec![0; 4])]);
        assert!(Vmlinux::parse(&elf).expect("parse").exports().is_err());
        assert!(Vmlinux::parse(b"\x7fELF garbage").is_err());
        // byte flips never panic
        let good = six_one_style();
        for i in (0..good.len()).step_by(3) {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            if let Ok(vm) = Vmlinux::parse(&b) {
                let _ = vm.exports();
                let _ = vm.banner();
            }
        }
    }
}
