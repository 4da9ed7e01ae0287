//! Facts from a Linux kernel's own artifacts.
//!
//! `kmlink` links a kernel module per kernel build. Everything it needs to know
//! about one build is read here, from the files the distribution ships:
//!
//! - [`bzimage`]: the compressed `vmlinuz` → the `vmlinux` ELF inside it;
//! - [`arm64_image`]: arm64's raw `Image` (`vmlinuz`) → its `.BTF` and
//!   banner, found by content;
//! - [`vmlinux`]: that ELF's `.BTF`, its `linux_banner` and its own export
//!   table (names, CRCs, GPL-only flags, namespaces);
//! - [`btf`]: struct layouts, functions, per-CPU variables and tracepoint
//!   prototypes from BTF;
//! - [`ko`]: a stock module's `.modinfo`, `__versions`,
//!   `.gnu.linkonce.this_module` layout and exports;
//! - [`symvers`]: `Module.symvers` from the headers package;
//! - [`config`]: the kernel `.config`.
//!
//! All inputs are untrusted bytes: every reader bounds-checks, caps
//! decompressed sizes at [`MAX_DECOMPRESSED`] and returns [`Error`] instead of
//! panicking.
#![deny(missing_docs)]

pub mod arm64_exports;
pub mod arm64_image;
pub mod btf;
pub mod bzimage;
mod codec;
pub mod config;
mod error;
mod exports;
pub mod ko;
pub mod symvers;
pub mod vmlinux;

pub use error::Error;

/// Upper bound for any decompressed artifact (a vmlinux or a module): 512 MiB.
pub const MAX_DECOMPRESSED: u64 = 512 << 20;

/// One exported kernel symbol, from any source (vmlinux export table, a
/// module's `__ksymtab*`, or `Module.symvers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Symbol name.
    pub name: String,
    /// Symbol CRC (`__kcrctab*` / `Module.symvers`). `None` when the kernel
    /// was built without `CONFIG_MODVERSIONS` and the source has no CRC table.
    /// (`Module.symvers` of such kernels says `0x00000000`, kept as `Some(0)`.)
    pub crc: Option<u32>,
    /// `EXPORT_SYMBOL_GPL` (usable by GPL-compatible modules only).
    pub gpl: bool,
    /// Symbol namespace (`EXPORT_SYMBOL_NS*`), `None` when empty.
    pub namespace: Option<String>,
    /// `"vmlinux"`, or the exporting module: its `name=` for [`ko::read`], the
    /// path as written (e.g. `lib/crc7`) for [`symvers::parse`].
    pub owner: String,
}
