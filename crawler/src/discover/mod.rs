//! Discovery: every kernel of the requested suites, with the packages that
//! carry its vmlinuz, config, modules and `Module.symvers`.
//!
//! Each suite's `InRelease` is verified against the source's keyring and its
//! `Packages` index against the hashes in it ([`crate::index`]); kernels are
//! then assembled from package names and `Depends`:
//!
//! | layout | vmlinuz | config | modules | Module.symvers |
//! |---|---|---|---|---|
//! | Debian 6.1 / 6.12 | `linux-image-<rel>-unsigned` (preferred) or signed `linux-image-<rel>` | same | same | `linux-headers-<rel>` |
//! | Debian 6.16 – 6.18 | signed `linux-image-<rel>` (one ~170 MB package) | same, or `linux-base-<rel>` when the image depends on it | same | `linux-headers-<rel>` |
//! | Debian 6.19+ / 7.x | `linux-binary-<rel>` (named by the meta `linux-image-<rel>`) | `linux-base-<rel>` | `linux-modules-<rel>` | `linux-headers-<rel>` |
//! | Ubuntu (experimental) | `linux-image-unsigned-<rel>` (preferred) or `linux-image-<rel>` | `linux-modules-<rel>` | `linux-modules-<rel>` | `linux-headers-<rel>` |
//!
//! Packages that are gone from the archive (old backports' headers, modules
//! or base packages) leave the kernel listed, with that part `None` and the
//! missing names in [`KernelInfo::missing`].
//!
//! The output per kernel is a [`PinnedKernel`] (what
//! [`crate::kernel_tree::materialize`] fetches and unpacks) and a [`KernelInfo`]

mod assemble;
mod identity;
mod scan;

pub use assemble::{kernels_in_index, merge, KernelInfo, Layout};
pub use identity::{
    classify, is_kernel_package_name, parse_release, release_arch, release_order, Arch, Distro,
    ReleaseParts, Role, DEBIAN_SUITES, UBUNTU_SUITES,
};
pub use scan::{discover, find_kernel, find_kernels, scan_suite, Discovery, Origin};
