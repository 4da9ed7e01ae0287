//! `struct module`: the one owner of its layout.
//!
//! The module loader reads a module's `.gnu.linkonce.this_module` section
//! as the kernel's `struct module`: its size must be `sizeof(struct
//! module)`, and the `name`, `init` and `exit` fields must sit where the
//! kernel looks. kmlink takes that layout from the kernel's BTF
//! ([`from_btf`]) and holds it to what a module built for the same kernel
//! shows ([`compare`]): its section size, the offsets of its relocations
//! against `init_module` / `cleanup_module`, the offset of its name.
//!
//! Every user goes through these functions: record extraction
//! ([`crate::extract::this_module_layout`]), the linker's host records and
//! its `--check` verdict, which also holds a record to BTF fact by fact
//! ([`btf_facts`], [`compare_btf`]). No other code looks `struct module` up
//! in BTF. `docs/metadata-db.md` follows the size from the package to the
//! written `.ko`.

use std::fmt;

use kmlink_donor::btf::Btf;
use kmlink_donor::ko::ModuleFacts;

use crate::record::ThisModuleLayout;

/// Why BTF gives no `struct module` layout.
#[derive(Debug)]
pub enum BtfLayoutError {
    /// BTF has no `struct module`, or it lacks a member.
    Missing(String),
    /// The BTF could not be read.
    Btf(kmlink_donor::Error),
}

/// The one reading of `struct module` from BTF: its size, the offset of
/// `member` (`Offset`) or its size (`Size`). Every function here that looks
/// at BTF goes through it.
enum BtfQuery<'a> {
    StructSize,
    Offset(&'a str),
    Size(&'a str),
}

fn read_btf(btf: &Btf, q: BtfQuery<'_>) -> Result<Option<u64>, kmlink_donor::Error> {
    match q {
        BtfQuery::StructSize => Ok(btf.struct_size("module")),
        BtfQuery::Offset(m) => btf.member_offset("module", m),
        BtfQuery::Size(m) => btf.member_size("module", m),
    }
}

/// `struct module`'s layout from BTF alone: its size and the offsets of
/// `name` (with the array's length), `init` and `exit`.
pub fn from_btf(btf: &Btf) -> Result<ThisModuleLayout, BtfLayoutError> {
    let missing = |what: String| BtfLayoutError::Missing(what);
    let size = read_btf(btf, BtfQuery::StructSize)
        .map_err(BtfLayoutError::Btf)?
        .ok_or_else(|| missing("BTF has no struct module".into()))?;
    let off = |m: &str| -> Result<u64, BtfLayoutError> {
        read_btf(btf, BtfQuery::Offset(m))
            .map_err(BtfLayoutError::Btf)?
            .ok_or_else(|| missing(format!("BTF struct module has no member {m}")))
    };
    Ok(ThisModuleLayout {
        size,
        name_offset: off("name")?,
        name_len: read_btf(btf, BtfQuery::Size("name"))
            .map_err(BtfLayoutError::Btf)?
            .ok_or_else(|| missing("BTF struct module has no member name".into()))?,
        init_offset: off("init")?,
        exit_offset: off("exit")?,
    })
}

/// `struct module` as BTF shows it, fact by fact: `None` where BTF has no
/// such struct or member (or cannot read it). For reports that list every
/// fact even when one is missing (`kmlink build --check`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BtfFacts {
    /// `sizeof(struct module)`; `None`: BTF has no `struct module`.
    pub size: Option<u64>,
    /// `offsetof(struct module, name)`.
    pub name_offset: Option<u64>,
    /// `sizeof(((struct module *)0)->name)`.
    pub name_len: Option<u64>,
    /// `offsetof(struct module, init)`.
    pub init_offset: Option<u64>,
    /// `offsetof(struct module, exit)`.
    pub exit_offset: Option<u64>,
}

/// Reads [`BtfFacts`] from `btf`, each fact on its own.
pub fn btf_facts(btf: &Btf) -> BtfFacts {
    let get = |q| read_btf(btf, q).ok().flatten();
    BtfFacts {
        size: get(BtfQuery::StructSize),
        name_offset: get(BtfQuery::Offset("name")),
        name_len: get(BtfQuery::Size("name")),
        init_offset: get(BtfQuery::Offset("init")),
        exit_offset: get(BtfQuery::Offset("exit")),
    }
}

/// One way BTF's `struct module` contradicts a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtfMismatch {
    /// BTF has no `struct module`.
    NoStruct,
    /// `sizeof(struct module)`: the layout's, BTF's.
    Size(u64, u64),
    /// `offsetof(struct module, field)` for `"init"`, `"exit"` or `"name"`:
    /// the field, the layout's offset, BTF's (`None`: no such member).
    Offset(&'static str, u64, Option<u64>),
    /// The `name` array's length: the layout's, BTF's (`None`: no member).
    NameLen(u64, Option<u64>),
}

impl BtfMismatch {
    /// One line naming both sides: `sizeof(struct module): record 0x3c0,
    /// BTF /sys/kernel/btf/vmlinux 0x380`.
    pub fn describe(&self, layout_source: &str, btf_source: &str) -> String {
        let opt = |v: &Option<u64>, f: fn(u64) -> String| v.map(f).unwrap_or("absent".into());
        match self {
            BtfMismatch::NoStruct => format!("{btf_source} has no struct module"),
            BtfMismatch::Size(want, found) => {
                format!("sizeof(struct module): {layout_source} {want:#x}, {btf_source} {found:#x}")
            }
            BtfMismatch::Offset(field, want, found) => format!(
                "offsetof(struct module, {field}): {layout_source} {want:#x}, {btf_source} {}",
                opt(found, |h| format!("{h:#x}"))
            ),
            BtfMismatch::NameLen(want, found) => format!(
                "sizeof(struct module.name): {layout_source} {want}, {btf_source} {}",
                opt(found, |l| l.to_string())
            ),
        }
    }
}

/// Holds `layout` to BTF's `struct module` ([`btf_facts`]): the size, the
/// offsets of `init`, `exit` and `name`, the `name` array's length, in that
/// order. Without a `struct module` in BTF that is the one mismatch.
pub fn compare_btf(layout: &ThisModuleLayout, btf: &BtfFacts) -> Vec<BtfMismatch> {
    let Some(size) = btf.size else {
        return vec![BtfMismatch::NoStruct];
    };
    let mut out = Vec::new();
    if size != layout.size {
        out.push(BtfMismatch::Size(layout.size, size));
    }
    for (field, want, found) in [
        ("init", layout.init_offset, btf.init_offset),
        ("exit", layout.exit_offset, btf.exit_offset),
        ("name", layout.name_offset, btf.name_offset),
    ] {
        if found != Some(want) {
            out.push(BtfMismatch::Offset(field, want, found));
        }
    }
    // The name array bounds the name the linker writes.
    if btf.name_len != Some(layout.name_len) {
        out.push(BtfMismatch::NameLen(layout.name_len, btf.name_len));
    }
    out
}

/// One way a module's `.gnu.linkonce.this_module` contradicts a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The module has no `.gnu.linkonce.this_module` section.
    NoSection,
    /// The section's size is not `sizeof(struct module)`.
    Size {
        /// The layout's size.
        want: u64,
        /// The section's size.
        found: u64,
    },
    /// A field is elsewhere in the module: `init`/`exit` (the offsets of
    /// the relocations against `init_module`/`cleanup_module`) or `name`.
    Offset {
        /// `"init"`, `"exit"` or `"name"`.
        field: &'static str,
        /// The layout's offset.
        want: u64,
        /// Where the module has it (two or more: relocated twice).
        found: Vec<u64>,
    },
}

impl Mismatch {
    /// What disagrees: `sizeof(struct module)`,
    /// `offsetof(struct module, init)`, ...
    pub fn what(&self) -> String {
        match self {
            Mismatch::NoSection => ".gnu.linkonce.this_module".into(),
            Mismatch::Size { .. } => "sizeof(struct module)".into(),
            Mismatch::Offset { field, .. } => format!("offsetof(struct module, {field})"),
        }
    }

    /// The layout's value (`None` for [`Mismatch::NoSection`]).
    pub fn want(&self) -> Option<u64> {
        match self {
            Mismatch::NoSection => None,
            Mismatch::Size { want, .. } | Mismatch::Offset { want, .. } => Some(*want),
        }
    }

    /// What the module shows, as text (`0x380`, `[0x130, 0x138]`, `none`).
    pub fn found(&self) -> String {
        match self {
            Mismatch::NoSection => "none".into(),
            Mismatch::Size { found, .. } => format!("{found:#x} ({found})"),
            Mismatch::Offset { found, .. } => match found.as_slice() {
                [one] => format!("{one:#x}"),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|o| format!("{o:#x}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }

    /// One line naming both sides: `sizeof(struct module): record 0x3c0
    /// (960), donor.ko 0x380 (896)`.
    pub fn describe(&self, layout_source: &str, module_source: &str) -> String {
        match self {
            Mismatch::NoSection => format!("{module_source} has no .gnu.linkonce.this_module"),
            Mismatch::Size { want, .. } => format!(
                "{}: {layout_source} {want:#x} ({want}), {module_source} section size {}",
                self.what(),
                self.found()
            ),
            Mismatch::Offset { want, .. } => format!(
                "{}: {layout_source} {want:#x}, {module_source} {}",
                self.what(),
                self.found()
            ),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe("layout", "module"))
    }
}

/// What a module confirmed of a layout, and where it contradicts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// The facts the module shows and that agree: `"size"`, `"init"`,
    /// `"exit"`, `"name"`.
    pub confirmed: Vec<&'static str>,
    /// Every disagreement, in the order size, init, exit, name.
    pub mismatches: Vec<Mismatch>,
}

/// Holds `layout` to what a module of the same kernel shows. The one rule:
/// the section must exist with exactly the layout's size; `init` and
/// `exit` are compared when the module relocates `init_module` /
/// `cleanup_module` (library modules have neither; each must be relocated
/// once, at the layout's offset); `name` when the module's name string is
/// found.
pub fn compare(layout: &ThisModuleLayout, module: &ModuleFacts) -> Comparison {
    let mut c = Comparison::default();
    match module.this_module_size {
        Some(found) if found == layout.size => c.confirmed.push("size"),
        Some(found) => c.mismatches.push(Mismatch::Size {
            want: layout.size,
            found,
        }),
        None => c.mismatches.push(Mismatch::NoSection),
    }
    for (func, field, want) in [
        ("init_module", "init", layout.init_offset),
        ("cleanup_module", "exit", layout.exit_offset),
    ] {
        let found: Vec<u64> = module
            .this_module_relocs
            .iter()
            .filter(|(_, s)| s == func)
            .map(|(o, _)| *o)
            .collect();
        match found.as_slice() {
            [] => {}
            [o] if *o == want => c.confirmed.push(field),
            _ => c.mismatches.push(Mismatch::Offset { field, want, found }),
        }
    }
    if let Some(n) = module.this_module_name_offset {
        if n == layout.name_offset {
            c.confirmed.push("name");
        } else {
            c.mismatches.push(Mismatch::Offset {
                field: "name",
                want: layout.name_offset,
                found: vec![n],
            });
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ThisModuleLayout {
        ThisModuleLayout {
            size: 0x380,
            name_offset: 0x18,
            name_len: 56,
            init_offset: 0x138,
            exit_offset: 0x340,
        }
    }

    fn module(size: Option<u64>, relocs: &[(u64, &str)], name: Option<u64>) -> ModuleFacts {
        ModuleFacts {
            this_module_size: size,
            this_module_relocs: relocs.iter().map(|(o, s)| (*o, s.to_string())).collect(),
            this_module_name_offset: name,
            ..ModuleFacts::default()
        }
    }

    #[test]
    fn agreeing_module_confirms_everything_it_shows() {
        let m = module(
            Some(0x380),
            &[(0x138, "init_module"), (0x340, "cleanup_module")],
            Some(0x18),
        );
        let c = compare(&layout(), &m);
        assert_eq!(c.confirmed, ["size", "init", "exit", "name"]);
        assert!(c.mismatches.is_empty());
        // A library module shows only its size.
        let c = compare(&layout(), &module(Some(0x380), &[], None));
        assert_eq!((c.confirmed, c.mismatches), (vec!["size"], vec![]));
    }

    #[test]
    fn every_disagreement_is_reported() {
        let m = module(
            Some(0x3c0),
            &[
                (0x130, "init_module"),
                (0x340, "cleanup_module"),
                (0x348, "cleanup_module"),
            ],
            Some(0x20),
        );
        let c = compare(&layout(), &m);
        assert_eq!(c.confirmed, Vec::<&str>::new());
        assert_eq!(
            c.mismatches
                .iter()
                .map(|m| m.describe("record", "donor"))
                .collect::<Vec<_>>(),
            [
                "sizeof(struct module): record 0x380 (896), donor section size 0x3c0 (960)",
                "offsetof(struct module, init): record 0x138, donor 0x130",
                "offsetof(struct module, exit): record 0x340, donor [0x340, 0x348]",
                "offsetof(struct module, name): record 0x18, donor 0x20",
            ]
        );
        let c = compare(&layout(), &module(None, &[], None));
        assert_eq!(c.mismatches, [Mismatch::NoSection]);
    }

    #[test]
    fn btf_disagreements_are_reported_in_order() {
        let agree = BtfFacts {
            size: Some(0x380),
            name_offset: Some(0x18),
            name_len: Some(56),
            init_offset: Some(0x138),
            exit_offset: Some(0x340),
        };
        assert!(compare_btf(&layout(), &agree).is_empty());
        let differ = BtfFacts {
            size: Some(0x3c0),
            name_offset: None,
            name_len: Some(64),
            init_offset: Some(0x130),
            ..agree
        };
        assert_eq!(
            compare_btf(&layout(), &differ)
                .iter()
                .map(|m| m.describe("record", "BTF b"))
                .collect::<Vec<_>>(),
            [
                "sizeof(struct module): record 0x380, BTF b 0x3c0",
                "offsetof(struct module, init): record 0x138, BTF b 0x130",
                "offsetof(struct module, name): record 0x18, BTF b absent",
                "sizeof(struct module.name): record 56, BTF b 64",
            ]
        );
        assert_eq!(
            compare_btf(&layout(), &BtfFacts::default()),
            [BtfMismatch::NoStruct]
        );
    }
}
