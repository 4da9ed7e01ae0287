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
    /// Machine architecture (`x86_64`).
    pub arch: String,
    /// `uname -v` of the kernel, from its `linux_banner`.
    pub build_string: String,
    /// SHA256 (hex) of the kernel's `.BTF` section: equal to the SHA256 of
    /// `/sys/kernel/btf/vmlinux` on a host running it.
    pub btf_sha256: String,
    /// The package files the facts were extracted from.
    pub packages: Vec<PackageRef>,
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

impl KernelRecord {
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
