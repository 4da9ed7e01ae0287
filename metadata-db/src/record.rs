//! The per-kernel record: every fact about one exact kernel build that the
//! linker needs, and where each fact came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the record schema. Bump on any incompatible change.
pub const RECORD_SCHEMA: u32 = 1;

/// Which kernel build a record describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `uname -r`, e.g. `6.1.0-47-amd64`.
    pub release: String,
    /// `debian` or `ubuntu` (or `host` for facts read off a running host).
    pub distro: String,
    /// Archive suite the packages came from (`bookworm`, `trixie-backports`, …).
    pub suite: String,
    /// Flavour (`amd64`, `cloud-amd64`, `rt-amd64`, `generic`, …).
    pub flavour: String,
    /// Machine architecture (`x86_64`, `aarch64`: `uname -m`); records
    /// without one are x86-64 ([`DEFAULT_ARCH`]).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// `uname -v` of the kernel, from its `linux_banner`.
    pub build_string: String,
    /// SHA256 (hex) of the kernel's `.BTF` section: equal to the SHA256 of
    /// `/sys/kernel/btf/vmlinux` on a host running it.
    pub btf_sha256: String,
    /// The package files the facts were extracted from.
    pub packages: Vec<PackageRef>,
}

fn default_arch() -> String {
    DEFAULT_ARCH.to_string()
}

/// One package file a record was extracted from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// SHA256 (hex) of the `.deb`.
    pub sha256: String,
}

/// One exported kernel symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// CRC of the symbol's version, when the kernel uses symbol versions.
    pub crc: Option<u32>,
    /// Exported with `EXPORT_SYMBOL_GPL`.
    pub gpl: bool,
    /// Symbol namespace, if any.
    pub namespace: Option<String>,
    /// `vmlinux` or the module's name.
    pub owner: String,
}

/// Layout of `struct module` as the module loader sees it in
/// `.gnu.linkonce.this_module`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThisModuleLayout {
    /// `sizeof(struct module)`.
    pub size: u64,
    /// Offset of `name` (a `char[MODULE_NAME_LEN]`).
    pub name_offset: u64,
    /// Length of the `name` array.
    pub name_len: u64,
    /// Offset of the `init` function pointer.
    pub init_offset: u64,
    /// Offset of the `exit` function pointer.
    pub exit_offset: u64,
}

/// One parameter of a tracepoint's probe prototype (after the leading
/// `void *__data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpParam {
    /// Parameter name, from `__bpf_trace_<tp>`.
    pub name: String,
    /// Size in bytes of its type.
    pub size: u64,
    /// The type as text (`size_t`, `struct kmem_cache *`, …), for messages.
    pub type_name: String,
}

/// The special sections and loader conventions a module for this kernel
/// needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleConventions {
    /// Stock modules carry `__versions` (CONFIG_MODVERSIONS).
    pub modversions: bool,
    /// Stock modules carry extended modversions sections.
    pub ext_modversions: bool,
    /// Kernel built with return thunks: `.return_sites` wanted.
    pub return_sites: bool,
    /// Kernel built with retpolines: `.retpoline_sites` wanted and
    /// `retpoline=Y` in modinfo.
    pub retpoline: bool,
    /// Kernel built with indirect branch tracking (endbr64 required).
    pub ibt: bool,
    /// Stock modules carry `intree=Y` etc.: modinfo keys stock modules have,
    /// for reference only.
    pub stock_modinfo_keys: Vec<String>,
    /// The placeholder sections the module loader sizes at load time, as a
    /// stock module carries them (those of [`LOADER_SECTIONS`] it has, in
    /// that order): arm64's PLT and ftrace trampoline sections. Empty on
    /// x86, and in records extracted before this was a fact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loader_sections: Vec<String>,
}

/// Sections an architecture's module loader requires a module to carry as
/// placeholders it sizes at load time (arm64: `.plt` and `.init.plt`,
/// `.text.ftrace_trampoline` with dynamic ftrace, and from 6.x on
/// `.init.text.ftrace_trampoline`, without which 7.3's loader refuses the
/// module). A `.init.` one is allocated but not executable in stock modules.
pub const LOADER_SECTIONS: &[&str] = &[
    ".plt",
    ".init.plt",
    ".text.ftrace_trampoline",
    ".init.text.ftrace_trampoline",
];

/// The [`LOADER_SECTIONS`] among a module's section names, in that order.
pub fn loader_sections_of(sections: &[String]) -> Vec<String> {
    LOADER_SECTIONS
        .iter()
        .filter(|n| sections.iter().any(|s| s == *n))
        .map(|n| n.to_string())
        .collect()
}

/// Everything the linker needs to know about one kernel build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// [`RECORD_SCHEMA`] at the time of writing.
    pub schema: u32,
    /// Which build this is.
    pub identity: Identity,
    /// Module vermagic, byte-identical to a stock module's (trailing space
    /// included).
    pub vermagic: String,
    /// Module conventions.
    pub conventions: ModuleConventions,
    /// Selected `CONFIG_*` values.
    pub config: BTreeMap<String, String>,
    /// Every exported symbol of vmlinux (and, where read, of modules).
    pub exports: BTreeMap<String, Export>,
    /// `struct module` layout.
    pub this_module: ThisModuleLayout,
    /// Layout facts the core asked for, keyed as in the core manifest:
    /// `offsetof:task_struct.pid`, `sizeof:proc_ops`, …
    pub layouts: BTreeMap<String, u64>,
    /// Tracepoint prototypes, keyed by tracepoint name.
    pub tracepoints: BTreeMap<String, Vec<TpParam>>,
    /// Kernel functions (from BTF) whose presence matters to the core.
    pub functions: Vec<String>,
    /// Where each group of facts came from (`exports` → `vmlinux __ksymtab`,
    /// …), for messages.
    pub provenance: BTreeMap<String, String>,
}

/// What the module loader holds a module to: the facts a record takes
/// from a module of the kernel (or, without one, from its image and BTF).
#[derive(Debug, Clone)]
pub struct LoaderFacts {
    /// [`KernelRecord::vermagic`].
    pub vermagic: String,
    /// [`KernelRecord::conventions`].
    pub conventions: ModuleConventions,
    /// [`KernelRecord::this_module`] ([`crate::this_module`]).
    pub this_module: ThisModuleLayout,
}

/// The facts the core's manifest asks for, read from BTF
/// ([`crate::extract::btf_facts`]).
#[derive(Debug, Clone, Default)]
pub struct CoreFacts {
    /// [`KernelRecord::layouts`].
    pub layouts: BTreeMap<String, u64>,
    /// [`KernelRecord::tracepoints`].
    pub tracepoints: BTreeMap<String, Vec<TpParam>>,
    /// [`KernelRecord::functions`].
    pub functions: Vec<String>,
}

/// What a record says about its kernel besides which build it is: the
/// facts [`KernelRecord::assemble`] puts next to an [`Identity`].
#[derive(Debug, Clone)]
pub struct KernelFacts {
    /// Vermagic, conventions, `struct module`.
    pub loader: LoaderFacts,
    /// [`KernelRecord::config`].
    pub config: BTreeMap<String, String>,
    /// [`KernelRecord::exports`] ([`exports_of`]).
    pub exports: BTreeMap<String, Export>,
    /// Layouts, tracepoints, functions.
    pub core: CoreFacts,
    /// [`KernelRecord::provenance`].
    pub provenance: BTreeMap<String, String>,
}

/// A kernel's export table as a record keeps it: by name, the name out of
/// the entry. The record extractor (the image's tables or Module.symvers)
/// and the linker's host records (the running kernel's image) both use it.
pub fn exports_of(
    exports: impl IntoIterator<Item = kmlink_donor::Export>,
) -> BTreeMap<String, Export> {
    exports
        .into_iter()
        .map(|e| {
            (
                e.name,
                Export {
                    crc: e.crc,
                    gpl: e.gpl,
                    namespace: e.namespace,
                    owner: e.owner,
                },
            )
        })
        .collect()
}

impl KernelRecord {
    /// The one way a record is put together, for a kernel's packages
    /// ([`crate::extract::extract_full`]) and for a running host
    /// (`kmlink_linker::host::host_record`): the current [`RECORD_SCHEMA`],
    /// which build (`identity`), and what is known of it (`facts`).
    pub fn assemble(identity: Identity, facts: KernelFacts) -> KernelRecord {
        KernelRecord {
            schema: RECORD_SCHEMA,
            identity,
            vermagic: facts.loader.vermagic,
            conventions: facts.loader.conventions,
            config: facts.config,
            exports: facts.exports,
            this_module: facts.loader.this_module,
            layouts: facts.core.layouts,
            tracepoints: facts.core.tracepoints,
            functions: facts.core.functions,
            provenance: facts.provenance,
        }
    }

    /// The record's SHA256 (see [`content_hash`]), hex.
    pub fn sha256(&self) -> String {
        hex::encode(content_hash(self))
    }
}

/// SHA256 of a record's canonical JSON (`serde_json::to_vec`: struct fields
/// in declaration order, maps sorted by key). The store and bundles check it
/// whenever a record is decoded.
pub fn content_hash(record: &KernelRecord) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    // Serialising plain data into a Vec cannot fail.
    let json = serde_json::to_vec(record).unwrap_or_default();
    Sha256::digest(&json).into()
}

/// The machine architectures a record may be for (`identity.arch`, the
/// `uname -m` name): those kmlink builds its core for. Which one a module
/// is linked for is the core object's; the linker refuses a record of
/// another (naming both).
pub fn known_arches() -> Vec<&'static str> {
    kmlink_core_module::Arch::ALL
        .iter()
        .map(|a| a.machine())
        .collect()
}

/// The architecture a release's flavour names, if any: a `-`-separated
/// word after the version that is a Debian architecture (`6.1.0-47-amd64`,
/// `6.12.57+deb13-cloud-arm64`, `6.12.57+deb13-arm64-16k`).
pub fn release_names_arch(release: &str) -> Option<kmlink_core_module::Arch> {
    release.split('-').skip(1).find_map(|w| {
        kmlink_core_module::Arch::ALL
            .into_iter()
            .find(|a| a.debian() == w)
    })
}

/// A record's architecture when it has none (records written before the
/// architecture was part of discovery were all x86-64).
pub const DEFAULT_ARCH: &str = "x86_64";

/// The largest JSON file of one record `kmlink build --record` reads (the
/// full records of today's kernels are 1 to 2 MiB).
pub const MAX_RECORD_JSON: u64 = 64 << 20;

/// The largest JSON file of records `kmlink db import` reads.
pub const MAX_RECORDS_JSON: u64 = 1 << 30;

/// The largest `sizeof` (and so the largest member offset) a record may
/// state for any kernel structure. The largest structure the core reads,
/// `task_struct`, is about 13 KiB on the kernels kmlink serves.
pub const MAX_STRUCT_SIZE: u64 = 256 * 1024;

/// The most parameters a kernel function or tracepoint may have in a record.
pub const MAX_PARAMS: u64 = 64;

/// The largest size of one function or tracepoint parameter in a record.
pub const MAX_PARAM_SIZE: u64 = 256;

/// The longest kernel release (`__NEW_UTS_LEN`).
pub const MAX_RELEASE_LEN: usize = 64;

/// Sizes of members the core reads as arrays, whose whole extent must lie
/// inside their structure: `(struct.member, bytes)`.
const ARRAY_MEMBERS: &[(&str, u64)] = &[("task_struct.comm", 16)];

/// A fact of a record that cannot be true of any kernel kmlink links for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{release}: impossible record: {fact} {why}; the record is damaged or forged: do not link with it, re-extract it from the kernel's packages")]
pub struct RecordInvalid {
    /// Kernel release as the record states it.
    pub release: String,
    /// Which group of facts (`identity`, `this_module`, `layouts`), named as
    /// the linker's checks are.
    pub group: &'static str,
    /// The fact, e.g. `offsetof:task_struct.pid = 0xffffffffffffffff`.
    pub fact: String,
    /// Why it is impossible.
    pub why: String,
}

impl RecordInvalid {
    /// The fact and why it is impossible, without the release and advice
    /// (for messages that name the record already).
    pub fn reason(&self) -> String {
        format!("impossible fact: {} {}", self.fact, self.why)
    }
}

impl KernelRecord {
    /// Checks that every fact is possible for a kernel kmlink serves:
    /// the schema is [`RECORD_SCHEMA`], the architecture one of
    /// [`known_arches`], offsets
    /// lie inside their structure, sizes are non-zero and bounded. Every
    /// way a record enters (JSON, store, bundle, the embedded bundle) and
    /// the linker call this; it cannot prove a record right, only refuse
    /// one that is wrong whatever the kernel.
    pub fn validate(&self) -> Result<(), RecordInvalid> {
        let bad = |group: &'static str, fact: String, why: String| RecordInvalid {
            release: self.identity.release.clone(),
            group,
            fact,
            why,
        };
        let release = &self.identity.release;
        if self.schema != RECORD_SCHEMA {
            return Err(bad(
                "identity",
                format!("schema = {}", self.schema),
                format!("is not the record schema this kmlink reads ({RECORD_SCHEMA})"),
            ));
        }
        if kmlink_core_module::Arch::from_machine(&self.identity.arch).is_none() {
            return Err(bad(
                "identity",
                format!("arch = {:?}", self.identity.arch),
                format!(
                    "is not an architecture kmlink links modules for ({})",
                    known_arches().join(", ")
                ),
            ));
        }
        if let Some(named) = release_names_arch(release) {
            if named.machine() != self.identity.arch {
                return Err(bad(
                    "identity",
                    format!("arch = {:?}", self.identity.arch),
                    format!(
                        "contradicts the release {release}, whose flavour names {} ({})",
                        named.debian(),
                        named.machine()
                    ),
                ));
            }
        }
        if release.is_empty()
            || release.len() > MAX_RELEASE_LEN
            || release
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
            || release == "."
            || release == ".."
        {
            return Err(bad(
                "identity",
                format!("release = {release:?}"),
                format!("is not a kernel release (1 to {MAX_RELEASE_LEN} characters, no '/', space or control character)"),
            ));
        }
        if self.vermagic.trim().is_empty() {
            return Err(bad(
                "identity",
                "vermagic = \"\"".into(),
                "is empty: every kernel has a vermagic".into(),
            ));
        }
        self.validate_this_module()
            .map_err(|(fact, why)| bad("this_module", fact, why))?;
        self.validate_layouts()
            .map_err(|(fact, why)| bad("layouts", fact, why))
    }

    fn validate_this_module(&self) -> Result<(), (String, String)> {
        let t = &self.this_module;
        if t.size == 0 || t.size > MAX_STRUCT_SIZE {
            return Err((
                format!("sizeof(struct module) = {:#x}", t.size),
                format!("is outside 1..={MAX_STRUCT_SIZE:#x}"),
            ));
        }
        let within = |what: &str, off: u64, len: u64| -> Result<(), (String, String)> {
            match off.checked_add(len) {
                Some(end) if end <= t.size => Ok(()),
                _ => Err((
                    format!("offsetof(struct module, {what}) = {off:#x}"),
                    format!(
                        "puts its {len} bytes past the end of struct module ({:#x} bytes)",
                        t.size
                    ),
                )),
            }
        };
        if t.name_len == 0 {
            return Err((
                "struct module name length = 0".into(),
                "leaves no room for a module name".into(),
            ));
        }
        within("name", t.name_offset, t.name_len)?;
        within("init", t.init_offset, 8)?;
        within("exit", t.exit_offset, 8)
    }

    fn validate_layouts(&self) -> Result<(), (String, String)> {
        let fact = |k: &str, v: u64| format!("{k} = {v:#x}");
        // Sizes first: offsets are checked against them.
        for (key, &v) in &self.layouts {
            if let Some(s) = key.strip_prefix("sizeof:") {
                if v == 0 || v > MAX_STRUCT_SIZE {
                    return Err((
                        fact(key, v),
                        format!("is outside 1..={MAX_STRUCT_SIZE:#x}: no struct {s} is empty or that large"),
                    ));
                }
            }
        }
        for (key, &v) in &self.layouts {
            if key.starts_with("sizeof:") {
            } else if let Some(spec) = key.strip_prefix("offsetof:") {
                let s = spec.split('.').next().unwrap_or(spec);
                let len = ARRAY_MEMBERS
                    .iter()
                    .find(|(m, _)| *m == spec)
                    .map_or(1, |(_, n)| *n);
                let size = self.layouts.get(&format!("sizeof:{s}")).copied();
                let limit = size.unwrap_or(MAX_STRUCT_SIZE);
                if v.checked_add(len).is_none_or(|end| end > limit) {
                    let what = match size {
                        Some(size) => format!("struct {s} is {size:#x} bytes"),
                        None => format!("no structure is larger than {MAX_STRUCT_SIZE:#x} bytes"),
                    };
                    return Err((
                        fact(key, v),
                        format!("puts the member's {len} byte(s) outside struct {s} ({what})"),
                    ));
                }
            } else if key.starts_with("percpu:") {
                if v != 0 {
                    return Err((
                        fact(key, v),
                        "is not 0: a per-CPU variable's key only marks it as per-CPU".into(),
                    ));
                }
            } else if key.starts_with("fn:") {
                if v > MAX_PARAMS {
                    return Err((
                        fact(key, v),
                        format!("is more than {MAX_PARAMS} parameters"),
                    ));
                }
            } else if let Some(fp) = key.strip_prefix("fnarg:") {
                let f = fp.split('.').next().unwrap_or(fp);
                let n = self.layouts.get(&format!("fn:{f}")).copied();
                if v == 0 || v > n.unwrap_or(MAX_PARAMS) {
                    return Err((
                        fact(key, v),
                        format!(
                            "is not a parameter position (1..={})",
                            n.unwrap_or(MAX_PARAMS)
                        ),
                    ));
                }
            } else if key.starts_with("fnargsize:") && (v == 0 || v > MAX_PARAM_SIZE) {
                return Err((
                    fact(key, v),
                    format!("is outside 1..={MAX_PARAM_SIZE} bytes"),
                ));
            }
        }
        for (tp, params) in &self.tracepoints {
            if params.len() as u64 > MAX_PARAMS {
                return Err((
                    format!("tracepoint {tp}"),
                    format!("has {} parameters, more than {MAX_PARAMS}", params.len()),
                ));
            }
            for p in params {
                if p.size == 0 || p.size > MAX_PARAM_SIZE {
                    return Err((
                        format!("tracepoint {tp} parameter {} size = {}", p.name, p.size),
                        format!("is outside 1..={MAX_PARAM_SIZE} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}
