//! The kmlink core: a freestanding C object (compiled once by `build.rs`,
//! embedded here) and its manifest, the list of kernel facts the object needs
//! at link time. The manifest is read out of the object's own
//! `.kmlink.manifest` section, so the C source is its single source of truth.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use object::{Object, ObjectSection};

pub mod needs;

/// The relocatable object compiled from `src/kmlink.c` for x86_64.
pub const CORE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kmlink-core.o"));

/// The compiler flags the x86_64 object was built with.
pub const CORE_CFLAGS: &str = env!("KMLINK_CORE_CFLAGS");

/// The relocatable object compiled from `src/kmlink.c` for aarch64.
pub const CORE_OBJECT_AARCH64: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kmlink-core-aarch64.o"));

/// The compiler flags the aarch64 object was built with.
pub const CORE_CFLAGS_AARCH64: &str = env!("KMLINK_CORE_CFLAGS_AARCH64");

/// A machine architecture kmlink builds its core for and links modules for.
/// A kernel record names one (its `identity.arch`, the machine name); Debian
/// names it differently in package names and archive paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// x86-64 (Debian `amd64`).
    X86_64,
    /// AArch64 (Debian `arm64`).
    Aarch64,
}

impl Arch {
    /// Every architecture, in a fixed order.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The machine name (`uname -m`, a record's `identity.arch`).
    pub fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name (`binary-<arch>`, the flavour suffix of releases).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture a Debian kernel release is built for, from its
    /// flavour: `amd64`, `cloud-amd64`, `rt-amd64`; `arm64`, `cloud-arm64`,
    /// `rt-arm64`, `arm64-16k` (16 KiB pages). `None` for other releases
    /// (Ubuntu's `generic`, ...). The one rule: the crawler's discovery and
    /// the linker's gathering both ask it.
    pub fn of_release(release: &str) -> Option<Arch> {
        let flavour = kmlink_debian::release::parse_release(release)?.flavour;
        Arch::ALL.into_iter().find(|a| {
            let d = a.debian();
            flavour == d
                || flavour.ends_with(&format!("-{d}"))
                || flavour.starts_with(&format!("{d}-"))
        })
    }

    /// The architecture of the machine kmlink runs on, if it is one of its
    /// architectures.
    pub fn host() -> Option<Arch> {
        Arch::from_machine(std::env::consts::ARCH)
    }

    /// By machine name (`x86_64`, `aarch64`).
    pub fn from_machine(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.machine() == name)
    }

    /// The core object built for this architecture.
    pub fn core_object(self) -> &'static [u8] {
        match self {
            Arch::X86_64 => CORE_OBJECT,
            Arch::Aarch64 => CORE_OBJECT_AARCH64,
        }
    }

    /// The ELF machine of this architecture's objects.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => object::elf::EM_X86_64,
            Arch::Aarch64 => object::elf::EM_AARCH64,
        }
    }

    /// The architecture of an ELF object, by its `e_machine`.
    pub fn of_elf_machine(machine: u16) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.elf_machine() == machine)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.machine())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    /// Either name: `amd64` or `x86_64`, `arm64` or `aarch64`.
    fn from_str(s: &str) -> Result<Arch, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.machine() == s || a.debian() == s)
            .ok_or_else(|| format!("unknown architecture {s:?} (amd64 or arm64)"))
    }
}

/// Name of the section holding the manifest strings.
pub const MANIFEST_SECTION: &str = ".kmlink.manifest";
/// Name of the section holding the layout-table slots.
pub const LAYOUT_SECTION: &str = ".kmlink.layout";
/// Name of the section holding link-time options.
pub const OPTIONS_SECTION: &str = ".kmlink.options";

/// An error in the manifest of a core object.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The object is not a readable ELF file.
    #[error("core object")]
    Object(#[from] object::Error),
    /// The object has no manifest section.
    #[error("core object has no {MANIFEST_SECTION} section")]
    Missing,
    /// A manifest entry could not be parsed.
    #[error("core manifest entry {index} {entry:?}: {reason}")]
    Entry {
        /// Position of the entry.
        index: usize,
        /// The entry text.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An import: an abstract symbol of the core bound to a kernel export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The symbol the object references (e.g. `kml_printk`).
    pub symbol: String,
    /// Kernel symbol names to bind it to, first exported wins.
    pub candidates: Vec<String>,
    /// Whether the kernel may export none of them (the symbol is then 0).
    pub weak: bool,
}

/// A per-CPU variable reference: `var` or `var.member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PercpuRef {
    /// The exported per-CPU variable.
    pub var: String,
    /// Member path inside it, if any.
    pub member: Option<String>,
}

impl PercpuRef {
    /// The record key for this reference's offset (`offsetof:pcpu_hot.cpu_number`),
    /// or `None` when the variable itself is meant.
    pub fn offset_key(&self) -> Option<String> {
        self.member
            .as_ref()
            .map(|m| format!("offsetof:{}.{}", self.var, m))
    }
}

/// What the linker writes into a layout-table slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// Byte offset of a member (path through nested members), the first of
    /// `A.m|B.n|…` the kernel has (a member that moved between kernels,
    /// e.g. arm64's CPU number: `task_struct.thread_info.cpu` from 5.16,
    /// `task_struct.cpu` before); `offsetof?`: 0 when the kernel has none
    /// (the core must treat 0 as absent, so only for members that cannot
    /// sit at offset 0).
    Offsetof {
        /// Struct or union name (of the first candidate).
        strukt: String,
        /// Member path, dot-separated (of the first candidate).
        path: String,
        /// Further `(struct, path)` candidates, in order of preference.
        alternatives: Vec<(String, String)>,
        /// Whether the member may be absent.
        optional: bool,
    },
    /// `sizeof(struct NAME)`; `sizeof?`: 0 when the kernel has no such
    /// struct.
    Sizeof {
        /// Struct or union name.
        strukt: String,
        /// Whether the struct may be absent.
        optional: bool,
    },
    /// Address of a per-CPU variable (relocated against the export).
    Percpu {
        /// Alternatives, first available wins.
        candidates: Vec<PercpuRef>,
    },
    /// 1-based position of a tracepoint parameter (0: absent, if optional).
    TpArg {
        /// Tracepoint name.
        tp: String,
        /// Parameter name.
        param: String,
        /// Expected size in bytes of its type.
        size: u64,
        /// Whether the parameter may be absent.
        optional: bool,
    },
    /// `fn CAND|…` (or `fn? …`): 1-based index of the first candidate
    /// function the kernel has (BTF `FUNC`), 0 when optional and none is
    /// there. Used to pick a kprobe target under each kernel's name.
    Function {
        /// Candidate function names, preferred first.
        candidates: Vec<String>,
        /// Whether the kernel may have none of them.
        optional: bool,
    },
    /// `fnarg CAND|….PARAM|…:SIZE` (or `fnarg? …`): 1-based register
    /// position of the first named parameter the chosen function (the first
    /// candidate the kernel has, as for `fn`) takes, checked to be SIZE
    /// bytes; 0 when optional and absent, or when no candidate exists.
    FnArg {
        /// Candidate function names, preferred first (same list as the
        /// matching `fn` slot).
        functions: Vec<String>,
        /// Parameter names, preferred first.
        params: Vec<String>,
        /// Size in bytes the core reads.
        size: u64,
        /// Whether the parameter may be absent.
        optional: bool,
    },
}

impl SlotKind {
    /// The keys under which a kernel record stores this fact, if it is a
    /// layout fact (`offsetof:task_struct.pid`, `sizeof:proc_ops`), one per
    /// candidate, preferred first; empty for other kinds.
    pub fn layout_keys(&self) -> Vec<String> {
        match self {
            SlotKind::Offsetof {
                strukt,
                path,
                alternatives,
                ..
            } => std::iter::once((strukt, path))
                .chain(alternatives.iter().map(|(s, p)| (s, p)))
                .map(|(s, p)| format!("offsetof:{s}.{p}"))
                .collect(),
            SlotKind::Sizeof { strukt, .. } => vec![format!("sizeof:{strukt}")],
            _ => Vec::new(),
        }
    }
}

/// One layout-table slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The slot's symbol in [`LAYOUT_SECTION`].
    pub symbol: String,
    /// What goes into it.
    pub kind: SlotKind,
}

/// A link-time option: a u64 in `.kmlink.options` with a default the object
/// already holds; the linker may overwrite it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSpec {
    /// The option's symbol (`kml_opt_ring_events`).
    pub symbol: String,
    /// Its short name (`ring_events`).
    pub name: String,
    /// The default compiled into the object.
    pub default: u64,
    /// Named values the core declares for it (`KML_OPTION_VALUE`:
    /// `backend` = `tracepoint` 0, `kprobe` 1), in declaration order.
    pub values: Vec<(String, u64)>,
}

/// Everything the core asks of a kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Imports, strong and weak.
    pub imports: Vec<Import>,
    /// Layout-table slots.
    pub slots: Vec<Slot>,
    /// Tracepoint probes and the arity each is compiled with.
    pub probes: BTreeMap<String, u32>,
    /// Link-time options.
    pub options: Vec<OptionSpec>,
}

impl Manifest {
    /// Reads the manifest out of a core object.
    pub fn from_object(data: &[u8]) -> Result<Self, ManifestError> {
        let file = object::File::parse(data)?;
        let section = file
            .section_by_name(MANIFEST_SECTION)
            .ok_or(ManifestError::Missing)?;
        let bytes = section.data()?;
        let mut manifest = Manifest::default();
        for (index, raw) in bytes
            .split(|&b| b == 0)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let entry = String::from_utf8_lossy(raw).into_owned();
            manifest
                .add(&entry)
                .map_err(|reason| ManifestError::Entry {
                    index,
                    entry: entry.clone(),
                    reason,
                })?;
        }
        Ok(manifest)
    }

    /// The manifest of the embedded core.
    pub fn core() -> Result<Self, ManifestError> {
        Self::from_object(CORE_OBJECT)
    }

    /// The manifest of the embedded core built for `arch`.
    pub fn core_for(arch: Arch) -> Result<Self, ManifestError> {
        Self::from_object(arch.core_object())
    }

    fn add(&mut self, entry: &str) -> Result<(), String> {
        let words: Vec<&str> = entry.split_whitespace().collect();
        match words.as_slice() {
            [kw @ ("import" | "weak"), symbol, cands] => self.imports.push(Import {
                symbol: symbol.to_string(),
                candidates: cands.split('|').map(str::to_string).collect(),
                weak: *kw == "weak",
            }),
            ["probe", tp, arity] => {
                let arity = arity.parse().map_err(|_| format!("bad arity {arity:?}"))?;
                self.probes.insert(tp.to_string(), arity);
            }
            ["option", symbol, default] => {
                let name = symbol
                    .strip_prefix("kml_opt_")
                    .ok_or_else(|| format!("option symbol {symbol:?} lacks the kml_opt_ prefix"))?;
                let default =
                    parse_u64(default).ok_or_else(|| format!("bad default {default:?}"))?;
                self.options.push(OptionSpec {
                    symbol: symbol.to_string(),
                    name: name.to_string(),
                    default,
                    values: Vec::new(),
                });
            }
            ["value", symbol, name, value] => {
                let value = parse_u64(value).ok_or_else(|| format!("bad value {value:?}"))?;
                let option = self
                    .options
                    .iter_mut()
                    .find(|o| o.symbol == *symbol)
                    .ok_or_else(|| {
                        format!("a value of {symbol:?}, which is not an option (yet)")
                    })?;
                if option.values.iter().any(|(n, _)| n == name) {
                    return Err(format!("{symbol:?} names the value {name:?} twice"));
                }
                option.values.push((name.to_string(), value));
            }
            ["slot", symbol, kind, spec] => {
                let kind = parse_slot(kind, spec)?;
                self.slots.push(Slot {
                    symbol: symbol.to_string(),
                    kind,
                });
            }
            _ => return Err("unknown entry".into()),
        }
        Ok(())
    }

    /// The number the core gives the named `value` of `option`
    /// (`option_value("backend", "kprobe")`), from its `KML_OPTION_VALUE`s.
    pub fn option_value(&self, option: &str, value: &str) -> Option<u64> {
        self.options
            .iter()
            .find(|o| o.name == option)?
            .values
            .iter()
            .find(|(n, _)| n == value)
            .map(|(_, v)| *v)
    }

    /// Every layout key the core needs: `offsetof:S.m`, `sizeof:S`, and for
    /// per-CPU candidates `percpu:VAR` (present when BTF places VAR in the
    /// per-CPU area; value 0) plus the member offsets inside them.
    pub fn layout_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for slot in &self.slots {
            keys.extend(slot.kind.layout_keys());
            match &slot.kind {
                SlotKind::Percpu { candidates } => {
                    keys.extend(candidates.iter().filter_map(PercpuRef::offset_key));
                    keys.extend(candidates.iter().map(|c| format!("percpu:{}", c.var)));
                }
                SlotKind::Function { candidates, .. } => {
                    keys.extend(candidates.iter().map(|f| function_key(f)));
                }
                SlotKind::FnArg {
                    functions, params, ..
                } => {
                    for f in functions {
                        keys.push(function_key(f));
                        for p in params {
                            keys.push(fnarg_key(f, p));
                            keys.push(fnarg_size_key(f, p));
                        }
                    }
                }
                _ => {}
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Every tracepoint whose prototype the core needs.
    pub fn tracepoints(&self) -> Vec<String> {
        let mut tps: Vec<String> = self.probes.keys().cloned().collect();
        for slot in &self.slots {
            if let SlotKind::TpArg { tp, .. } = &slot.kind {
                tps.push(tp.clone());
            }
        }
        tps.sort();
        tps.dedup();
        tps
    }
}

/// Layout key recording that the kernel has function `f` (value: its
/// parameter count).
pub fn function_key(f: &str) -> String {
    format!("fn:{f}")
}

/// Layout key of parameter `p` of function `f`: its 1-based position.
pub fn fnarg_key(f: &str, p: &str) -> String {
    format!("fnarg:{f}.{p}")
}

/// Layout key of parameter `p` of function `f`: its size in bytes.
pub fn fnarg_size_key(f: &str, p: &str) -> String {
    format!("fnargsize:{f}.{p}")
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn split_member(spec: &str) -> Result<(String, String), String> {
    spec.split_once('.')
        .filter(|(s, m)| !s.is_empty() && !m.is_empty())
        .map(|(s, m)| (s.to_string(), m.to_string()))
        .ok_or_else(|| format!("expected STRUCT.MEMBER, got {spec:?}"))
}

fn parse_slot(kind: &str, spec: &str) -> Result<SlotKind, String> {
    Ok(match kind {
        "offsetof" | "offsetof?" => {
            // The preferred STRUCT.MEMBER, then `|`-separated alternatives.
            let (first, rest) = match spec.split_once('|') {
                Some((first, rest)) => (first, Some(rest)),
                None => (spec, None),
            };
            let (strukt, path) = split_member(first)?;
            SlotKind::Offsetof {
                strukt,
                path,
                alternatives: rest
                    .into_iter()
                    .flat_map(|r| r.split('|'))
                    .map(split_member)
                    .collect::<Result<_, _>>()?,
                optional: kind == "offsetof?",
            }
        }
        "sizeof" | "sizeof?" => SlotKind::Sizeof {
            strukt: spec.to_string(),
            optional: kind == "sizeof?",
        },
        "percpu" => SlotKind::Percpu {
            candidates: spec
                .split('|')
                .map(|c| match c.split_once('.') {
                    Some((var, member)) => PercpuRef {
                        var: var.into(),
                        member: Some(member.into()),
                    },
                    None => PercpuRef {
                        var: c.into(),
                        member: None,
                    },
                })
                .collect(),
        },
        "tparg" | "tparg?" => {
            let (tp_param, size) = spec.split_once(':').ok_or("expected TP.PARAM:SIZE")?;
            let (tp, param) = split_member(tp_param)?;
            let size = size.parse().map_err(|_| format!("bad size {size:?}"))?;
            SlotKind::TpArg {
                tp,
                param,
                size,
                optional: kind == "tparg?",
            }
        }
        "fn" | "fn?" => {
            let candidates: Vec<String> = spec.split('|').map(str::to_string).collect();
            if candidates.iter().any(|c| c.is_empty() || c.contains('.')) {
                return Err(format!("expected FUNC|FUNC…, got {spec:?}"));
            }
            SlotKind::Function {
                candidates,
                optional: kind == "fn?",
            }
        }
        "fnarg" | "fnarg?" => {
            let (fp, size) = spec.split_once(':').ok_or("expected FUNC|….PARAM|…:SIZE")?;
            let (funcs, params) = split_member(fp)?;
            let size = size.parse().map_err(|_| format!("bad size {size:?}"))?;
            let functions: Vec<String> = funcs.split('|').map(str::to_string).collect();
            let params: Vec<String> = params.split('|').map(str::to_string).collect();
            if functions
                .iter()
                .chain(&params)
                .any(|n| n.is_empty() || n.contains('.'))
            {
                return Err(format!("expected FUNC|….PARAM|…:SIZE, got {spec:?}"));
            }
            SlotKind::FnArg {
                functions,
                params,
                size,
                optional: kind == "fnarg?",
            }
        }
        other => return Err(format!("unknown slot kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_manifest_parses() {
        let m = Manifest::core().expect("embedded core has a manifest");
        assert!(m
            .imports
            .iter()
            .any(|i| i.symbol == "kml_printk" && i.candidates[0] == "_printk"));
        assert!(m
            .imports
            .iter()
            .any(|i| i.weak && i.symbol == "kml_tracepoint_srcu"));
        assert_eq!(m.probes.get("kmalloc"), Some(&6));
        assert!(m
            .layout_keys()
            .contains(&"offsetof:task_struct.tgid".to_string()));
        assert!(m
            .layout_keys()
            .contains(&"offsetof:pcpu_hot.current_task".to_string()));
        assert!(m.tracepoints().contains(&"kmem_cache_alloc".to_string()));
        assert!(m
            .options
            .iter()
            .any(|o| o.name == "ring_events" && o.default.is_power_of_two()));
    }

    #[test]
    fn bad_entries_are_named() {
        let mut m = Manifest::default();
        assert!(m.add("slot x offsetof nodot").is_err());
        assert!(m.add("slot x offsetof a.b|nodot").is_err());
        assert!(m.add("slot x offsetof a.b|").is_err());
        assert!(m.add("slot x offsetof |a.b").is_err());
        m.add("slot kml_slot_cpu offsetof task_struct.thread_info.cpu|task_struct.cpu")
            .expect("two candidates");
        assert_eq!(
            m.slots[0].kind.layout_keys(),
            [
                "offsetof:task_struct.thread_info.cpu",
                "offsetof:task_struct.cpu"
            ]
        );
        let keys = m.layout_keys();
        assert!(keys.contains(&"offsetof:task_struct.cpu".to_string()));
        assert!(m.add("slot x tparg kmalloc.ptr").is_err());
        assert!(m.add("frobnicate").is_err());
        assert!(m.add("probe kmalloc six").is_err());
        assert!(m.add("slot x fn a||b").is_err());
        assert!(m.add("slot x fn a.b").is_err());
        assert!(m.add("slot x fnarg a|b.size").is_err());
        assert!(m.add("slot x fnarg a|b:8").is_err());
        assert!(m.add("slot x fnarg a|b.:8").is_err());
        // A value names an option declared before it, once.
        assert!(m.add("value kml_opt_x a 1").is_err());
        m.add("option kml_opt_x 0").expect("option");
        assert!(m.add("value kml_opt_x a one").is_err());
        m.add("value kml_opt_x a 1").expect("value");
        assert!(m.add("value kml_opt_x a 2").is_err());
        assert_eq!(m.option_value("x", "a"), Some(1));
        assert_eq!(m.option_value("x", "b"), None);
    }

    #[test]
    fn both_cores_name_the_backends() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let core = Manifest::core_for(arch).expect("core");
            assert_eq!(
                core.option_value("backend", "tracepoint"),
                Some(0),
                "{arch}"
            );
            assert_eq!(core.option_value("backend", "kprobe"), Some(1), "{arch}");
        }
    }

    #[test]
    fn function_slots_parse_and_name_their_layout_keys() {
        let mut m = Manifest::default();
        m.add("slot s fn? f|g").expect("fn");
        m.add("slot t fnarg f|g.flags|gfpflags:4").expect("fnarg");
        assert_eq!(
            m.slots[0].kind,
            SlotKind::Function {
                candidates: vec!["f".into(), "g".into()],
                optional: true
            }
        );
        assert_eq!(
            m.slots[1].kind,
            SlotKind::FnArg {
                functions: vec!["f".into(), "g".into()],
                params: vec!["flags".into(), "gfpflags".into()],
                size: 4,
                optional: false
            }
        );
        let keys = m.layout_keys();
        for k in [
            "fn:f",
            "fn:g",
            "fnarg:f.flags",
            "fnarg:g.gfpflags",
            "fnargsize:f.gfpflags",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} in {keys:?}");
        }
        // The embedded core declares the backend option and its hooks.
        let core = Manifest::core().expect("core");
        assert!(core
            .options
            .iter()
            .any(|o| o.name == "backend" && o.default == 0));
        assert!(core
            .slots
            .iter()
            .any(|s| matches!(&s.kind, SlotKind::Function { candidates, .. } if candidates.contains(&"kfree".to_string()))));
    }
}
