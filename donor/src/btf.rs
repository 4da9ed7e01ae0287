//! A small BTF reader for the questions kmlink asks: struct sizes, member
//! offsets, functions, per-CPU variables and tracepoint prototypes.
//!
//! Input is untrusted (a `.BTF` section out of a downloaded vmlinux, or
//! `/sys/kernel/btf/vmlinux`), so the reader validates the header, every
//! section range, every string offset and every type id at parse time, and
//! bounds chain walks (typedef/qualifier/array chains, anonymous-member
//! recursion) so cycles become errors instead of hangs.
//!
//! Why not a crate: `aya-obj` carries a complete BTF implementation, but as
//! part of a BPF loader (relocation, sanitisation, program/map plumbing) and
//! with lookup APIs aimed at CO-RE rather than "offset of `a.b` through
//! anonymous members"; `btf-rs` (crate `btf-rs`) reads and resolves types but
//! would still need the member-path walk, size resolution and tracepoint
//! logic written here on top, and both would add a dependency tree for what
//! is ~600 lines of format code. The format is small and stable (kinds 1–19
//! as of Linux 6.x/7.x); a hand-written reader keeps the never-panic
//! guarantees auditable in one file.
//!
//! On-disk records are read field by field from a bounds-checked cursor
//! rather than as `object::pod::Pod` structs: implementing `Pod` needs
//! `unsafe impl`, which the workspace denies. Only little-endian BTF is
//! accepted (all x86_64 kernels).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use crate::Error;

/// A BTF type id (0 is `void`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BtfTypeId(pub u32);

/// An offset into the BTF string section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StrOff(pub u32);

impl fmt::Display for BtfTypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Longest typedef/qualifier/array chain followed, and deepest nesting of
/// anonymous members searched, before declaring a cycle.
const MAX_DEPTH: u32 = 64;

/// BTF kinds (`BTF_KIND_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `BTF_KIND_INT`: size in bytes, bit width, bit offset, encoding bits.
    Int {
        /// Size in bytes.
        size: u32,
        /// Number of value bits.
        bits: u8,
        /// Bit offset of the value.
        offset: u8,
        /// `BTF_INT_SIGNED` (1), `BTF_INT_CHAR` (2), `BTF_INT_BOOL` (4).
        encoding: u8,
    },
    /// `BTF_KIND_PTR`.
    Ptr(BtfTypeId),
    /// `BTF_KIND_ARRAY`.
    Array {
        /// Element type.
        elem: BtfTypeId,
        /// Index type.
        index: BtfTypeId,
        /// Number of elements.
        nelems: u32,
    },
    /// `BTF_KIND_STRUCT` (size, index range into the member table).
    Struct {
        /// Size in bytes.
        size: u32,
        /// Members (index range, see [`Btf::members`]).
        members: Range<usize>,
    },
    /// `BTF_KIND_UNION`.
    Union {
        /// Size in bytes.
        size: u32,
        /// Members (index range, see [`Btf::members`]).
        members: Range<usize>,
    },
    /// `BTF_KIND_ENUM` (32-bit values) or `BTF_KIND_ENUM64`.
    Enum {
        /// Size in bytes.
        size: u32,
        /// Whether it was `BTF_KIND_ENUM64`.
        wide: bool,
    },
    /// `BTF_KIND_FWD` (`union` when true).
    Fwd {
        /// Forward declaration of a union (else a struct).
        union: bool,
    },
    /// `BTF_KIND_TYPEDEF`.
    Typedef(BtfTypeId),
    /// `BTF_KIND_VOLATILE`.
    Volatile(BtfTypeId),
    /// `BTF_KIND_CONST`.
    Const(BtfTypeId),
    /// `BTF_KIND_RESTRICT`.
    Restrict(BtfTypeId),
    /// `BTF_KIND_FUNC`: its `FUNC_PROTO` and linkage.
    Func {
        /// The function's prototype.
        proto: BtfTypeId,
        /// 0 static, 1 global, 2 extern.
        linkage: u16,
    },
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto {
        /// Return type.
        ret: BtfTypeId,
        /// Parameters (index range, see [`Btf::params`]).
        params: Range<usize>,
    },
    /// `BTF_KIND_VAR`.
    Var {
        /// Variable type.
        ty: BtfTypeId,
        /// Linkage.
        linkage: u32,
    },
    /// `BTF_KIND_DATASEC`.
    Datasec {
        /// Section size.
        size: u32,
        /// Variables (index range, see [`Btf::secinfos`]).
        vars: Range<usize>,
    },
    /// `BTF_KIND_FLOAT`.
    Float {
        /// Size in bytes.
        size: u32,
    },
    /// `BTF_KIND_DECL_TAG`.
    DeclTag {
        /// Tagged type.
        ty: BtfTypeId,
        /// Component index (-1 for the type itself).
        component: i32,
    },
    /// `BTF_KIND_TYPE_TAG`.
    TypeTag(BtfTypeId),
}

/// One type: its name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Name (`StrOff(0)` = anonymous).
    pub name: StrOff,
    /// What it is.
    pub kind: Kind,
}

/// A struct/union member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Name (`StrOff(0)` = anonymous).
    pub name: StrOff,
    /// Member type.
    pub ty: BtfTypeId,
    /// Offset in bits from the start of the enclosing struct/union.
    pub bit_offset: u32,
    /// Bitfield width when the struct has `kind_flag` set, else 0.
    pub bitfield_size: u8,
}

/// A `FUNC_PROTO` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Name (`StrOff(0)` in prototypes that carry no names).
    pub name: StrOff,
    /// Type (`BtfTypeId(0)` with no name marks `...`).
    pub ty: BtfTypeId,
}

/// A `DATASEC` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecInfo {
    /// The `VAR` (or `FUNC`).
    pub ty: BtfTypeId,
    /// Offset inside the section.
    pub offset: u32,
    /// Size.
    pub size: u32,
}

/// One tracepoint probe parameter (after the leading `void *__data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpParam {
    /// Parameter name from `__bpf_trace_<tp>`, or `argN` if that function is
    /// absent from BTF.
    pub name: String,
    /// Size of its type in bytes.
    pub size: u64,
    /// C-ish spelling of its type (`"const char *"`, `"size_t"`, `"struct kmem_cache *"`).
    pub type_name: String,
}

/// A parsed BTF blob (vmlinux `.BTF` or `/sys/kernel/btf/vmlinux`).
#[derive(Clone)]
pub struct Btf {
    strings: Vec<u8>,
    /// `types[i]` is type id `i + 1`.
    types: Vec<Type>,
    members: Vec<Member>,
    params: Vec<Param>,
    secinfos: Vec<SecInfo>,
    by_name: HashMap<Box<str>, Vec<BtfTypeId>>,
    pointer_size: u64,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.types.len())
            .field("strings", &self.strings.len())
            .finish_non_exhaustive()
    }
}

struct Cursor<'d> {
    data: &'d [u8],
    pos: usize,
    /// Offset of `data[0]` in the whole blob, for error messages.
    base: usize,
}

impl Cursor<'_> {
    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let b = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| Error::Btf {
                what: format!("type section truncated in {what}"),
                offset: (self.base + self.pos) as u64,
            })?;
        self.pos += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn btf_err(what: impl Into<String>, offset: usize) -> Error {
    Error::Btf {
        what: what.into(),
        offset: offset as u64,
    }
}

fn header_u32(data: &[u8], off: usize) -> Result<u32, Error> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| btf_err("header truncated", off))
}

fn section_range(
    hdr_len: usize,
    off: u32,
    len: u32,
    total: usize,
    what: &str,
) -> Result<Range<usize>, Error> {
    let start = hdr_len.checked_add(off as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(s), Some(e)) if e <= total => Ok(s..e),
        _ => Err(btf_err(
            format!("{what} section {off:#x}+{len:#x} (after a {hdr_len}-byte header) exceeds the {total}-byte blob"),
            8,
        )),
    }
}

impl Btf {
    /// Parse and validate a BTF blob.
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        if data.len() < HEADER_LEN {
            return Err(btf_err(
                format!("{} bytes is shorter than the 24-byte header", data.len()),
                0,
            ));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != BTF_MAGIC {
            let what = if magic == BTF_MAGIC.swap_bytes() {
                "big-endian BTF is not supported".to_owned()
            } else {
                format!("bad magic {magic:#06x} (expected 0xeb9f)")
            };
            return Err(btf_err(what, 0));
        }
        if data[2] != 1 {
            return Err(btf_err(format!("unsupported version {}", data[2]), 2));
        }
        let hdr_len = header_u32(data, 4)? as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(btf_err(format!("bad header length {hdr_len}"), 4));
        }
        let types_r = section_range(
            hdr_len,
            header_u32(data, 8)?,
            header_u32(data, 12)?,
            data.len(),
            "type",
        )?;
        let str_r = section_range(
            hdr_len,
            header_u32(data, 16)?,
            header_u32(data, 20)?,
            data.len(),
            "string",
        )?;
        let strings = data[str_r.clone()].to_vec();
        if strings.first().is_some_and(|&b| b != 0) {
            return Err(btf_err(
                "string section does not start with the empty string",
                str_r.start,
            ));
        }
        let mut btf = Btf {
            strings,
            types: Vec::new(),
            members: Vec::new(),
            params: Vec::new(),
            secinfos: Vec::new(),
            by_name: HashMap::new(),
            pointer_size: 8,
        };
        btf.parse_types(&data[types_r.clone()], types_r.start)?;
        btf.validate(types_r.start)?;
        btf.index();
        Ok(btf)
    }

    fn parse_types(&mut self, data: &[u8], base: usize) -> Result<(), Error> {
        let mut c = Cursor { data, pos: 0, base };
        while c.pos < data.len() {
            let at = base + c.pos;
            let name = StrOff(c.u32("btf_type.name_off")?);
            let info = c.u32("btf_type.info")?;
            let size_or_type = c.u32("btf_type.size")?;
            let vlen = (info & 0xffff) as usize;
            let kind_no = (info >> 24) & 0x1f;
            let kflag = info >> 31 != 0;
            let ty = BtfTypeId(size_or_type);
            let kind = match kind_no {
                1 => {
                    let enc = c.u32("int encoding")?;
                    Kind::Int {
                        size: size_or_type,
                        bits: (enc & 0xff) as u8,
                        offset: ((enc >> 16) & 0xff) as u8,
                        encoding: ((enc >> 24) & 0xf) as u8,
                    }
                }
                2 => Kind::Ptr(ty),
                3 => Kind::Array {
                    elem: BtfTypeId(c.u32("btf_array.type")?),
                    index: BtfTypeId(c.u32("btf_array.index_type")?),
                    nelems: c.u32("btf_array.nelems")?,
                },
                4 | 5 => {
                    let start = self.members.len();
                    for _ in 0..vlen {
                        let name = StrOff(c.u32("btf_member.name_off")?);
                        let ty = BtfTypeId(c.u32("btf_member.type")?);
                        let off = c.u32("btf_member.offset")?;
                        let (bit_offset, bitfield_size) = if kflag {
                            (off & 0x00ff_ffff, (off >> 24) as u8)
                        } else {
                            (off, 0)
                        };
                        self.members.push(Member {
                            name,
                            ty,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    let members = start..self.members.len();
                    if kind_no == 4 {
                        Kind::Struct {
                            size: size_or_type,
                            members,
                        }
                    } else {
                        Kind::Union {
                            size: size_or_type,
                            members,
                        }
                    }
                }
                6 | 19 => {
                    let each = if kind_no == 6 { 8 } else { 12 };
                    let skip = vlen * each;
                    if c.pos + skip > data.len() {
                        return Err(btf_err("type section truncated in enum values", at));
                    }
                    c.pos += skip;
                    Kind::Enum {
                        size: size_or_type,
                        wide: kind_no == 19,
                    }
                }
                7 => Kind::Fwd { union: kflag },
                8 => Kind::Typedef(ty),
                9 => Kind::Volatile(ty),
                10 => Kind::Const(ty),
                11 => Kind::Restrict(ty),
                12 => Kind::Func {
                    proto: ty,
                    linkage: vlen as u16,
                },
                13 => {
                    let start = self.params.len();
                    for _ in 0..vlen {
                        let name = StrOff(c.u32("btf_param.name_off")?);
                        let ty = BtfTypeId(c.u32("btf_param.type")?);
                        self.params.push(Param { name, ty });
                    }
                    Kind::FuncProto {
                        ret: ty,
                        params: start..self.params.len(),
                    }
                }
                14 => Kind::Var {
                    ty,
                    linkage: c.u32("btf_var.linkage")?,
                },
                15 => {
                    let start = self.secinfos.len();
                    for _ in 0..vlen {
                        let ty = BtfTypeId(c.u32("btf_var_secinfo.type")?);
                        let offset = c.u32("btf_var_secinfo.offset")?;
                        let size = c.u32("btf_var_secinfo.size")?;
                        self.secinfos.push(SecInfo { ty, offset, size });
                    }
                    Kind::Datasec {
                        size: size_or_type,
                        vars: start..self.secinfos.len(),
                    }
                }
                16 => Kind::Float { size: size_or_type },
                17 => Kind::DeclTag {
                    ty,
                    component: c.u32("btf_decl_tag.component_idx")? as i32,
                },
                18 => Kind::TypeTag(ty),
                k => {
                    return Err(btf_err(
                        format!("type id {} has unknown kind {k}", self.types.len() + 1),
                        at,
                    ))
                }
            };
            if self.types.len() >= u32::MAX as usize - 1 {
                return Err(btf_err("too many types", at));
            }
            self.types.push(Type { name, kind });
        }
        Ok(())
    }

    /// Every string offset and type id referenced must exist.
    fn validate(&self, base: usize) -> Result<(), Error> {
        let count = self.types.len() as u32;
        let check_id = |id: BtfTypeId, owner: usize, what: &str| {
            if id.0 > count {
                Err(Error::BtfTypeId {
                    id: id.0,
                    count,
                    context: format!("validating {what} of type id {}", owner + 1),
                })
            } else {
                Ok(())
            }
        };
        let check_str = |s: StrOff, owner: usize, what: &str| {
            if (s.0 as usize) < self.strings.len() || s.0 == 0 {
                Ok(())
            } else {
                Err(btf_err(
                    format!(
                        "{what} of type id {} has string offset {:#x} beyond the {}-byte string section",
                        owner + 1,
                        s.0,
                        self.strings.len()
                    ),
                    base,
                ))
            }
        };
        for (i, t) in self.types.iter().enumerate() {
            check_str(t.name, i, "name")?;
            match &t.kind {
                Kind::Ptr(x)
                | Kind::Typedef(x)
                | Kind::Volatile(x)
                | Kind::Const(x)
                | Kind::Restrict(x)
                | Kind::TypeTag(x) => check_id(*x, i, "referenced type")?,
                Kind::Var { ty, .. } | Kind::DeclTag { ty, .. } => check_id(*ty, i, "type")?,
                Kind::Func { proto, .. } => check_id(*proto, i, "prototype")?,
                Kind::Array { elem, index, .. } => {
                    check_id(*elem, i, "array element")?;
                    check_id(*index, i, "array index")?;
                }
                Kind::Struct { members, .. } | Kind::Union { members, .. } => {
                    for m in &self.members[members.clone()] {
                        check_str(m.name, i, "member name")?;
                        check_id(m.ty, i, "member type")?;
                    }
                }
                Kind::FuncProto { ret, params } => {
                    check_id(*ret, i, "return type")?;
                    for p in &self.params[params.clone()] {
                        check_str(p.name, i, "parameter name")?;
                        check_id(p.ty, i, "parameter type")?;
                    }
                }
                Kind::Datasec { vars, .. } => {
                    for v in &self.secinfos[vars.clone()] {
                        check_id(v.ty, i, "datasec variable")?;
                    }
                }
                Kind::Int { .. } | Kind::Enum { .. } | Kind::Fwd { .. } | Kind::Float { .. } => {}
            }
        }
        Ok(())
    }

    fn index(&mut self) {
        let mut by_name: HashMap<Box<str>, Vec<BtfTypeId>> = HashMap::new();
        for (i, t) in self.types.iter().enumerate() {
            let name = self.str_at(t.name);
            if !name.is_empty() {
                by_name
                    .entry(name.into())
                    .or_default()
                    .push(BtfTypeId(i as u32 + 1));
            }
        }
        self.by_name = by_name;
        // BTF has no pointer size; take it from `long`.
        let long = self
            .named("long unsigned int")
            .chain(self.named("long int"))
            .find_map(|(_, t)| match t.kind {
                Kind::Int { size, .. } => Some(u64::from(size)),
                _ => None,
            });
        self.pointer_size = long.unwrap_or(8);
    }

    /// Number of types (the largest valid id).
    pub fn type_count(&self) -> u32 {
        self.types.len() as u32
    }

    /// Size of a pointer (from `long`, default 8).
    pub fn pointer_size(&self) -> u64 {
        self.pointer_size
    }

    /// The string at `off` (empty if out of range or not UTF-8; offsets are
    /// validated at parse time).
    pub fn str_at(&self, off: StrOff) -> &str {
        let Some(rest) = self.strings.get(off.0 as usize..) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// The type with id `id` (`None` for `void` = 0 and out-of-range ids).
    pub fn get(&self, id: BtfTypeId) -> Option<&Type> {
        self.types.get((id.0 as usize).checked_sub(1)?)
    }

    fn ty(&self, id: BtfTypeId, context: &dyn Fn() -> String) -> Result<&Type, Error> {
        self.get(id).ok_or_else(|| Error::BtfTypeId {
            id: id.0,
            count: self.type_count(),
            context: context(),
        })
    }

    /// Members of a struct or union, by index range from its [`Kind`].
    pub fn members(&self, range: &Range<usize>) -> &[Member] {
        self.members.get(range.clone()).unwrap_or(&[])
    }

    /// Parameters of a `FUNC_PROTO`, by index range from its [`Kind`].
    pub fn params(&self, range: &Range<usize>) -> &[Param] {
        self.params.get(range.clone()).unwrap_or(&[])
    }

    /// Variables of a `DATASEC`, by index range from its [`Kind`].
    pub fn secinfos(&self, range: &Range<usize>) -> &[SecInfo] {
        self.secinfos.get(range.clone()).unwrap_or(&[])
    }

    /// All types with this name, in id order.
    pub fn named<'s>(&'s self, name: &str) -> impl Iterator<Item = (BtfTypeId, &'s Type)> + 's {
        self.by_name
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(move |&id| Some((id, self.get(id)?)))
    }

    /// The first struct named `name`, else the first union.
    pub fn find_composite(&self, name: &str) -> Option<BtfTypeId> {
        let pick = |want_struct: bool| {
            self.named(name).find_map(|(id, t)| match t.kind {
                Kind::Struct { .. } if want_struct => Some(id),
                Kind::Union { .. } if !want_struct => Some(id),
                _ => None,
            })
        };
        pick(true).or_else(|| pick(false))
    }

    /// Follow typedefs, qualifiers and type tags to the underlying type id.
    pub fn skip_modifiers(&self, mut id: BtfTypeId) -> Result<BtfTypeId, Error> {
        for _ in 0..MAX_DEPTH {
            let Some(t) = self.get(id) else {
                if id.0 == 0 {
                    return Ok(id);
                }
                return Err(Error::BtfTypeId {
                    id: id.0,
                    count: self.type_count(),
                    context: "following typedefs/qualifiers".into(),
                });
            };
            match t.kind {
                Kind::Typedef(n)
                | Kind::Const(n)
                | Kind::Volatile(n)
                | Kind::Restrict(n)
                | Kind::TypeTag(n) => id = n,
                _ => return Ok(id),
            }
        }
        Err(btf_err(
            format!(
                "typedef/qualifier chain through type id {} is cyclic or longer than {MAX_DEPTH}",
                id.0
            ),
            0,
        ))
    }

    /// Size in bytes of a type.
    pub fn type_size(&self, id: BtfTypeId) -> Result<u64, Error> {
        self.type_size_depth(id, 0)
    }

    fn type_size_depth(&self, id: BtfTypeId, depth: u32) -> Result<u64, Error> {
        let no_size = |what: &str| Error::BtfQuery {
            item: format!("type id {}", id.0),
            what: format!("{what} has no size"),
        };
        if depth > MAX_DEPTH {
            return Err(btf_err(
                format!(
                    "type chain through type id {} is cyclic or deeper than {MAX_DEPTH}",
                    id.0
                ),
                0,
            ));
        }
        if id.0 == 0 {
            return Err(no_size("void"));
        }
        let t = self.ty(id, &|| "computing a size".into())?;
        Ok(match &t.kind {
            Kind::Int { size, .. }
            | Kind::Enum { size, .. }
            | Kind::Float { size }
            | Kind::Struct { size, .. }
            | Kind::Union { size, .. }
            | Kind::Datasec { size, .. } => u64::from(*size),
            Kind::Ptr(_) => self.pointer_size,
            Kind::Typedef(n)
            | Kind::Const(n)
            | Kind::Volatile(n)
            | Kind::Restrict(n)
            | Kind::TypeTag(n) => self.type_size_depth(*n, depth + 1)?,
            Kind::Var { ty, .. } => self.type_size_depth(*ty, depth + 1)?,
            Kind::Array { elem, nelems, .. } => self
                .type_size_depth(*elem, depth + 1)?
                .checked_mul(u64::from(*nelems))
                .ok_or_else(|| no_size("an overflowing array"))?,
            Kind::Fwd { .. } => return Err(no_size("a forward declaration")),
            Kind::Func { .. } | Kind::FuncProto { .. } => return Err(no_size("a function")),
            Kind::DeclTag { .. } => return Err(no_size("a decl tag")),
        })
    }

    /// sizeof(struct/union NAME): the first struct of that name, else the
    /// first union.
    pub fn struct_size(&self, name: &str) -> Option<u64> {
        let id = self.find_composite(name)?;
        match self.get(id)?.kind {
            Kind::Struct { size, .. } | Kind::Union { size, .. } => Some(u64::from(size)),
            _ => None,
        }
    }

    /// Find member `name` of struct/union `comp`, descending into anonymous
    /// struct/union members. Returns its bit offset from `comp` and the member.
    fn find_member(
        &self,
        comp: BtfTypeId,
        name: &str,
        depth: u32,
    ) -> Result<Option<(u64, Member)>, Error> {
        if depth > MAX_DEPTH {
            return Err(btf_err(
                format!(
                    "anonymous members nest deeper than {MAX_DEPTH} below type id {}",
                    comp.0
                ),
                0,
            ));
        }
        let t = self.ty(comp, &|| format!("looking for member {name}"))?;
        let members = match &t.kind {
            Kind::Struct { members, .. } | Kind::Union { members, .. } => self.members(members),
            _ => return Ok(None),
        };
        for m in members {
            if self.str_at(m.name) == name {
                return Ok(Some((u64::from(m.bit_offset), *m)));
            }
        }
        for m in members {
            if m.name.0 != 0 && !self.str_at(m.name).is_empty() {
                continue;
            }
            let inner = self.skip_modifiers(m.ty)?;
            if let Some((off, found)) = self.find_member(inner, name, depth + 1)? {
                return Ok(Some((u64::from(m.bit_offset) + off, found)));
            }
        }
        Ok(None)
    }

    /// Resolve `struct_name.member_path` to (byte offset, member type).
    fn resolve_member(
        &self,
        struct_name: &str,
        member_path: &str,
    ) -> Result<Option<(u64, BtfTypeId)>, Error> {
        let Some(mut cur) = self.find_composite(struct_name) else {
            return Ok(None);
        };
        let item = || format!("{struct_name}.{member_path}");
        let mut offset = 0u64;
        let mut last: Option<BtfTypeId> = None;
        for comp in member_path.split('.') {
            if comp.is_empty() {
                return Err(Error::BtfQuery {
                    item: item(),
                    what: "empty path component".into(),
                });
            }
            if let Some(ty) = last {
                cur = self.skip_modifiers(ty)?;
                let is_comp = matches!(
                    self.get(cur).map(|t| &t.kind),
                    Some(Kind::Struct { .. } | Kind::Union { .. })
                );
                if !is_comp {
                    return Err(Error::BtfQuery {
                        item: item(),
                        what: format!("cannot look up {comp:?} in a non-struct/union member"),
                    });
                }
            }
            let Some((bits, m)) = self.find_member(cur, comp, 0)? else {
                return Ok(None);
            };
            if m.bitfield_size != 0 || bits % 8 != 0 || self.is_int_bitfield(m.ty)? {
                return Err(Error::BtfQuery {
                    item: item(),
                    what: format!("{comp} is a bitfield (bit offset {bits}), not byte addressable"),
                });
            }
            offset += bits / 8;
            last = Some(m.ty);
        }
        Ok(last.map(|ty| (offset, ty)))
    }

    /// Pre-`kind_flag` bitfields are encoded in the INT itself.
    fn is_int_bitfield(&self, ty: BtfTypeId) -> Result<bool, Error> {
        let id = self.skip_modifiers(ty)?;
        Ok(match self.get(id).map(|t| &t.kind) {
            Some(Kind::Int {
                size, bits, offset, ..
            }) => *offset != 0 || u64::from(*bits) != u64::from(*size) * 8,
            _ => false,
        })
    }

    /// Byte offset of `member_path` (`"pid"`, `"a.b"`) within struct/union
    /// `struct_name`, looking through anonymous struct/union members,
    /// typedefs and qualifiers. `Ok(None)` if the struct or a member does not
    /// exist; `Err` for bitfields and malformed BTF.
    pub fn member_offset(
        &self,
        struct_name: &str,
        member_path: &str,
    ) -> Result<Option<u64>, Error> {
        Ok(self
            .resolve_member(struct_name, member_path)?
            .map(|(o, _)| o))
    }

    /// Size in bytes of that member's type.
    pub fn member_size(&self, struct_name: &str, member_path: &str) -> Result<Option<u64>, Error> {
        match self.resolve_member(struct_name, member_path)? {
            Some((_, ty)) => self.type_size(ty).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a `BTF_KIND_FUNC` of this name exists.
    pub fn has_function(&self, name: &str) -> bool {
        self.named(name)
            .any(|(_, t)| matches!(t.kind, Kind::Func { .. }))
    }

    /// Parameters of the `BTF_KIND_FUNC` `name` (names from its prototype,
    /// sizes and types resolved), or `Ok(None)` if there is no such
    /// function. Several FUNCs of one name (static functions in different
    /// files) must agree, else the prototype is ambiguous and an error.
    pub fn function_params(&self, name: &str) -> Result<Option<Vec<TpParam>>, Error> {
        let mut found: Option<Vec<TpParam>> = None;
        for (_, t) in self.named(name) {
            let Kind::Func { proto, .. } = t.kind else {
                continue;
            };
            let bad = |what: String| Error::BtfQuery {
                item: name.to_owned(),
                what,
            };
            let Some(Kind::FuncProto { params, .. }) = self.get(proto).map(|p| &p.kind) else {
                return Err(bad("FUNC does not point to a FUNC_PROTO".into()));
            };
            let mut out = Vec::new();
            for p in self.params(params) {
                if p.ty.0 == 0 {
                    return Err(bad("variadic prototype".into()));
                }
                out.push(TpParam {
                    name: self.str_at(p.name).to_owned(),
                    size: self.type_size(p.ty)?,
                    type_name: self.type_name(p.ty)?,
                });
            }
            match &found {
                Some(prev) if *prev != out => {
                    return Err(bad(
                        "several FUNCs of this name with different prototypes".into()
                    ))
                }
                _ => found = Some(out),
            }
        }
        Ok(found)
    }

    /// Whether the BTF describes the per-CPU section at all (a
    /// `.data..percpu` DATASEC). Debian 5.10's does not: its pahole (1.20)
    /// encoded no variables.
    pub fn has_percpu_datasec(&self) -> bool {
        self.named(".data..percpu")
            .any(|(_, t)| matches!(t.kind, Kind::Datasec { .. }))
    }

    /// Whether `name` is a variable in the `.data..percpu` DATASEC.
    pub fn is_percpu_var(&self, name: &str) -> bool {
        self.named(".data..percpu").any(|(_, t)| match &t.kind {
            Kind::Datasec { vars, .. } => self.secinfos(vars).iter().any(|v| {
                self.get(v.ty).is_some_and(|vt| {
                    matches!(vt.kind, Kind::Var { .. }) && self.str_at(vt.name) == name
                })
            }),
            _ => false,
        })
    }

    /// Tracepoint probe parameters after the leading `void *__data`.
    ///
    /// Types come from typedef `btf_trace_<tp>` (pointer to a `FUNC_PROTO`
    /// whose first parameter is `void *`), names from the `FUNC`
    /// `__bpf_trace_<tp>`, else `__traceiter_<tp>` with the same parameter
    /// types (`argN` if neither is there or agrees). `Ok(None)` if the
    /// typedef does not exist.
    pub fn tracepoint_params(&self, tp: &str) -> Result<Option<Vec<TpParam>>, Error> {
        let tname = format!("btf_trace_{tp}");
        let Some(td) = self.named(&tname).find_map(|(_, t)| match t.kind {
            Kind::Typedef(x) => Some(x),
            _ => None,
        }) else {
            return Ok(None);
        };
        let bad = |what: String| Error::BtfQuery {
            item: tname.clone(),
            what,
        };
        let ptr = self.skip_modifiers(td)?;
        let Some(Kind::Ptr(target)) = self.get(ptr).map(|t| &t.kind) else {
            return Err(bad("is not a pointer typedef".into()));
        };
        let proto = self.skip_modifiers(*target)?;
        let Some(Kind::FuncProto { params, .. }) = self.get(proto).map(|t| &t.kind) else {
            return Err(bad("does not point to a FUNC_PROTO".into()));
        };
        let types = self.params(params);
        let first_is_void_ptr = match types.first() {
            Some(p) => {
                let id = self.skip_modifiers(p.ty)?;
                match self.get(id).map(|t| &t.kind) {
                    Some(Kind::Ptr(to)) => self.skip_modifiers(*to)?.0 == 0,
                    _ => false,
                }
            }
            None => false,
        };
        if !first_is_void_ptr {
            return Err(bad("first parameter is not `void *`".into()));
        }
        // Names: `__bpf_trace_<tp>` (6.x), else `__traceiter_<tp>` (5.10's
        // BTF has no `__bpf_trace_*` functions; its tracepoint iterators
        // `int __traceiter_<tp>(void *__data, <proto>)` carry the names),
        // taken only when the arity and every parameter type agree.
        let names: Vec<String> = ["__bpf_trace_", "__traceiter_"]
            .iter()
            .find_map(|prefix| {
                self.named(&format!("{prefix}{tp}"))
                    .find_map(|(_, t)| match t.kind {
                        Kind::Func { proto, .. } => match self.get(proto).map(|p| &p.kind) {
                            Some(Kind::FuncProto { params, .. }) => {
                                let ps = self.params(params);
                                let same = ps.len() == types.len()
                                    && ps
                                        .iter()
                                        .zip(types.iter())
                                        .skip(1)
                                        .all(|(a, b)| a.ty == b.ty);
                                same.then(|| {
                                    ps.iter().map(|p| self.str_at(p.name).to_owned()).collect()
                                })
                            }
                            _ => None,
                        },
                        _ => None,
                    })
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, p) in types.iter().enumerate().skip(1) {
            if p.ty.0 == 0 {
                return Err(bad("variadic tracepoint prototype".into()));
            }
            let name = names
                .get(i)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("arg{}", i - 1));
            out.push(TpParam {
                name,
                size: self.type_size(p.ty)?,
                type_name: self.type_name(p.ty)?,
            });
        }
        Ok(Some(out))
    }

    /// C-ish spelling of a type: `"unsigned int"`, `"const char *"`,
    /// `"struct page *"`, `"gfp_t"`, `"u8[16]"`, `"void (*)(...)"`.
    pub fn type_name(&self, id: BtfTypeId) -> Result<String, Error> {
        self.type_name_depth(id, 0)
    }

    fn type_name_depth(&self, id: BtfTypeId, depth: u32) -> Result<String, Error> {
        if depth > MAX_DEPTH {
            return Err(btf_err(
                format!(
                    "type chain through type id {} is cyclic or deeper than {MAX_DEPTH}",
                    id.0
                ),
                0,
            ));
        }
        if id.0 == 0 {
            return Ok("void".into());
        }
        let t = self.ty(id, &|| "naming a type".into())?;
        let name = self.str_at(t.name);
        let named = |prefix: &str| {
            if name.is_empty() {
                format!("{prefix} (anon)")
            } else {
                format!("{prefix} {name}")
            }
        };
        let inner = |n: BtfTypeId| self.type_name_depth(n, depth + 1);
        Ok(match &t.kind {
            Kind::Int { .. } | Kind::Float { .. } | Kind::Typedef(_) => name.to_owned(),
            Kind::Struct { .. } => named("struct"),
            Kind::Union { .. } => named("union"),
            Kind::Enum { .. } => named("enum"),
            Kind::Fwd { union } => named(if *union { "union" } else { "struct" }),
            Kind::Ptr(n) => {
                let to = self.skip_modifiers(*n)?;
                if let Some(Kind::FuncProto { ret, .. }) = self.get(to).map(|t| &t.kind) {
                    format!("{} (*)(...)", inner(*ret)?)
                } else {
                    format!("{} *", inner(*n)?)
                }
            }
            Kind::Const(n) => format!("const {}", inner(*n)?),
            Kind::Volatile(n) => format!("volatile {}", inner(*n)?),
            Kind::Restrict(n) => format!("{} restrict", inner(*n)?),
            Kind::TypeTag(n) => inner(*n)?,
            Kind::Array { elem, nelems, .. } => format!("{}[{nelems}]", inner(*elem)?),
            Kind::FuncProto { ret, .. } => format!("{} (...)", inner(*ret)?),
            Kind::Func { .. } => named("func"),
            Kind::Var { .. } => named("var"),
            Kind::Datasec { .. } => named("datasec"),
            Kind::DeclTag { .. } => named("decl_tag"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF writer for fixtures.
    #[derive(Default)]
    struct W {
        strs: Vec<u8>,
        types: Vec<u8>,
        next: u32,
    }

    impl W {
        fn new() -> Self {
            W {
                strs: vec![0],
                types: Vec::new(),
                next: 1,
            }
        }
        fn s(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strs.len() as u32;
            self.strs.extend_from_slice(s.as_bytes());
            self.strs.push(0);
            off
        }
        fn put(&mut self, v: u32) {
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        fn head(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kflag: bool,
            size_or_type: u32,
        ) -> u32 {
            let n = self.s(name);
            self.put(n);
            self.put(kind << 24 | vlen | (u32::from(kflag) << 31));
            self.put(size_or_type);
            let id = self.next;
            self.next += 1;
            id
        }
        fn int(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            let id = self.head(name, 1, 0, false, size);
            self.put(bits);
            id
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.head("", 2, 0, false, to)
        }
        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.head(name, 8, 0, false, to)
        }
        fn konst(&mut self, to: u32) -> u32 {
            self.head("", 10, 0, false, to)
        }
        fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.head("", 3, 0, false, 0);
            self.put(elem);
            self.put(index);
            self.put(n);
            id
        }
        /// members: (name, type, bit offset, bitfield size)
        fn comp(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let id = self.head(
                name,
                if union { 5 } else { 4 },
                members.len() as u32,
                kflag,
                size,
            );
            for &(n, t, off, bits) in members {
                let n = self.s(n);
                self.put(n);
                self.put(t);
                self.put(if kflag { bits << 24 | off } else { off });
            }
            id
        }
        fn proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
            let id = self.head("", 13, params.len() as u32, false, ret);
            for &(n, t) in params {
                let n = self.s(n);
                self.put(n);
                self.put(t);
            }
            id
        }
        fn func(&mut self, name: &str, proto: u32) -> u32 {
            self.head(name, 12, 1, false, proto)
        }
        fn var(&mut self, name: &str, ty: u32) -> u32 {
            let id = self.head(name, 14, 0, false, ty);
            self.put(1);
            id
        }
        fn datasec(&mut self, name: &str, vars: &[(u32, u32, u32)]) -> u32 {
            let id = self.head(name, 15, vars.len() as u32, false, 0x1000);
            for &(t, off, size) in vars {
                self.put(t);
                self.put(off);
                self.put(size);
            }
            id
        }
        fn finish(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strs.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strs);
            out
        }
    }

    fn fixture() -> Vec<u8> {
        let mut w = W::new();
        let int = w.int("int", 4, 32); // 1
        let ulong = w.int("long unsigned int", 8, 64); // 2
        let ch = w.int("char", 1, 8);
        let pid_t = w.typedef("pid_t", int);
        let cpid = w.konst(pid_t);
        let my_pid = w.typedef("my_pid_t", cpid); // typedef -> const -> typedef -> int
        let comm = w.array(ch, int, 16);
        let inner = w.comp(false, "", 8, &[("pid", my_pid, 0, 0), ("tgid", int, 32, 0)]);
        let anon_union = w.comp(true, "", 8, &[("", inner, 0, 0), ("both", ulong, 0, 0)]);
        let point = w.comp(false, "point", 8, &[("x", int, 0, 0), ("y", int, 32, 0)]);
        let point_t = w.typedef("point_t", point);
        w.comp(
            false,
            "task",
            64,
            &[
                ("state", int, 0, 0),
                ("flags", int, 32, 3), // bitfield
                ("", anon_union, 64, 0),
                ("comm", comm, 128, 0),
                ("where", point_t, 256, 0),
                ("next", 0, 320, 0),
            ],
        );
        // `next` is void — patch below is unnecessary; sizeof(void) errors.
        w.comp(true, "only_union", 16, &[("a", ulong, 0, 0)]);
        // tracepoint: typedef void (*btf_trace_kfree)(void *, unsigned long, const char *);
        let void_ptr = w.ptr(0);
        let cchar = w.konst(ch);
        let cchar_ptr = w.ptr(cchar);
        let tp_proto = w.proto(0, &[("", void_ptr), ("", ulong), ("", cchar_ptr)]);
        let tp_ptr = w.ptr(tp_proto);
        w.typedef("btf_trace_kfree", tp_ptr);
        let named = w.proto(
            0,
            &[
                ("__data", void_ptr),
                ("call_site", ulong),
                ("ptr", cchar_ptr),
            ],
        );
        w.func("__bpf_trace_kfree", named);
        w.func("register_kprobe", named);
        // tracepoint without a __bpf_trace_ function
        let p2 = w.proto(0, &[("", void_ptr), ("", int)]);
        let p2p = w.ptr(p2);
        w.typedef("btf_trace_noname", p2p);
        // An iterator whose parameter type differs names nothing.
        let iter_bad = w.proto(int, &[("__data", void_ptr), ("wrong", ulong)]);
        w.func("__traceiter_noname", iter_bad);
        // 5.10: no __bpf_trace_ function, the names on __traceiter_<tp>.
        let p3 = w.proto(0, &[("", void_ptr), ("", ulong), ("", int)]);
        let p3p = w.ptr(p3);
        w.typedef("btf_trace_kmalloc_node", p3p);
        let iter = w.proto(
            int,
            &[("__data", void_ptr), ("call_site", ulong), ("node", int)],
        );
        w.func("__traceiter_kmalloc_node", iter);
        let v = w.var("current_task", ulong);
        let v2 = w.var("not_percpu", ulong);
        w.datasec(".data..percpu", &[(v, 0, 8)]);
        w.datasec(".data", &[(v2, 0, 8)]);
        w.finish()
    }

    #[test]
    fn struct_sizes_and_members() {
        let btf = Btf::parse(&fixture()).expect("parse");
        assert_eq!(btf.struct_size("task"), Some(64));
        assert_eq!(btf.struct_size("only_union"), Some(16));
        assert_eq!(btf.struct_size("nope"), None);
        assert_eq!(btf.member_offset("task", "state").expect("ok"), Some(0));
        // through an anonymous union and an anonymous struct
        assert_eq!(btf.member_offset("task", "pid").expect("ok"), Some(8));
        assert_eq!(btf.member_offset("task", "tgid").expect("ok"), Some(12));
        assert_eq!(btf.member_offset("task", "both").expect("ok"), Some(8));
        // typedef chain
        assert_eq!(btf.member_size("task", "pid").expect("ok"), Some(4));
        assert_eq!(btf.member_size("task", "comm").expect("ok"), Some(16));
        assert_eq!(btf.member_offset("task", "comm").expect("ok"), Some(16));
        // nested path through a typedef'd struct
        assert_eq!(btf.member_offset("task", "where.y").expect("ok"), Some(36));
        assert_eq!(btf.member_size("task", "where.y").expect("ok"), Some(4));
        assert_eq!(btf.member_offset("task", "missing").expect("ok"), None);
        assert_eq!(btf.member_offset("nope", "x").expect("ok"), None);
        let e = btf.member_offset("task", "flags").expect_err("bitfield");
        assert!(e.to_string().contains("bitfield"), "{e}");
        let e = btf
            .member_offset("task", "state.x")
            .expect_err("not a struct");
        assert!(e.to_string().contains("non-struct"), "{e}");
        assert!(btf.member_offset("task", "where..y").is_err());
        assert!(btf.member_size("task", "next").is_err());
    }

    #[test]
    fn functions_percpu_tracepoints() {
        let btf = Btf::parse(&fixture()).expect("parse");
        assert!(btf.has_function("register_kprobe"));
        assert!(!btf.has_function("task"));
        assert!(btf.is_percpu_var("current_task"));
        assert!(!btf.is_percpu_var("not_percpu"));
        let ps = btf.tracepoint_params("kfree").expect("ok").expect("exists");
        assert_eq!(
            ps,
            vec![
                TpParam {
                    name: "call_site".into(),
                    size: 8,
                    type_name: "long unsigned int".into()
                },
                TpParam {
                    name: "ptr".into(),
                    size: 8,
                    type_name: "const char *".into()
                },
            ]
        );
        let ps = btf
            .tracepoint_params("noname")
            .expect("ok")
            .expect("exists");
        assert_eq!(ps[0].name, "arg0");
        assert_eq!(ps[0].type_name, "int");
        assert_eq!(btf.tracepoint_params("absent").expect("ok"), None);
        let ps = btf
            .tracepoint_params("kmalloc_node")
            .expect("ok")
            .expect("exists");
        let names: Vec<&str> = ps.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["call_site", "node"]);
        assert!(btf.has_percpu_datasec());
    }

    #[test]
    fn corrupt_blobs_are_errors() {
        let good = fixture();
        let mut bad = good.clone();
        bad[0] = 0;
        let e = Btf::parse(&bad).expect_err("bad magic");
        assert!(e.to_string().contains("magic"), "{e}");

        let e = Btf::parse(&good[..10]).expect_err("short");
        assert!(e.to_string().contains("header"), "{e}");

        // truncate the type section: declared lengths now exceed the blob
        let e = Btf::parse(&good[..good.len() - 40]).expect_err("truncated");
        assert!(e.to_string().contains("exceeds"), "{e}");

        // type section cut mid-record (header adjusted to match)
        let mut w = W::new();
        w.int("int", 4, 32);
        let mut blob = w.finish();
        let tlen = 12u32; // INT needs 16
        blob[12..16].copy_from_slice(&tlen.to_le_bytes());
        blob[16..20].copy_from_slice(&tlen.to_le_bytes());
        blob.remove(24 + 12);
        blob.remove(24 + 12);
        blob.remove(24 + 12);
        blob.remove(24 + 12);
        let e = Btf::parse(&blob).expect_err("cut record");
        assert!(e.to_string().contains("truncated"), "{e}");

        // out-of-range type id
        let mut w = W::new();
        w.int("int", 4, 32);
        w.typedef("bad", 99);
        let e = Btf::parse(&w.finish()).expect_err("bad id");
        assert!(e.to_string().contains("type id 99"), "{e}");

        // string offset out of range
        let mut w = W::new();
        w.int("int", 4, 32);
        let mut blob = w.finish();
        blob[24..28].copy_from_slice(&0xffffu32.to_le_bytes());
        let e = Btf::parse(&blob).expect_err("bad str");
        assert!(e.to_string().contains("string offset"), "{e}");

        // a typedef cycle and a self-containing anonymous member parse but
        // fail on use instead of hanging
        let mut w = W::new();
        let int = w.int("int", 4, 32);
        w.typedef("loop_a", 3); // 2 -> 3
        w.typedef("loop_b", 2); // 3 -> 2
        w.comp(false, "s", 4, &[("x", 2, 0, 0)]); // 4
        w.comp(false, "selfish", 4, &[("", 5, 0, 0), ("y", int, 0, 0)]); // 5 contains itself
        let btf = Btf::parse(&w.finish()).expect("parses");
        let e = btf.member_size("s", "x").expect_err("cycle");
        assert!(e.to_string().contains("cyclic"), "{e}");
        let e = btf.member_offset("selfish", "zzz").expect_err("recursion");
        assert!(e.to_string().contains("deeper"), "{e}");

        // unknown kind
        let mut w = W::new();
        w.head("x", 30, 0, false, 0);
        let e = Btf::parse(&w.finish()).expect_err("kind");
        assert!(e.to_string().contains("unknown kind 30"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let good = fixture();
        // flip every byte of the type section in turn; parse and query must
        // return, never panic
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xa5;
            if let Ok(btf) = Btf::parse(&b) {
                let _ = btf.member_offset("task", "where.y");
                let _ = btf.member_size("task", "comm");
                let _ = btf.tracepoint_params("kfree");
                let _ = btf.is_percpu_var("current_task");
                let _ = btf.struct_size("task");
            }
        }
    }
}
