//! Discovers, downloads, verifies and unpacks Debian and Ubuntu kernel
//! packages.
//!
//! The pieces, in pipeline order:
//!
//! - [`sources`]: which mirrors to use, read from the host's apt sources (or
//!   given explicitly);
//! - [`release`]: keyrings, the `InRelease` OpenPGP signature checked
//!   against the source's keyring, and the signed `Release` text parsed
//!   (which lists every index's SHA256 and size);
//! - [`index`]: the `InRelease` of a suite fetched and verified
//!   ([`release::fetch_release`]), then its `Packages` indexes fetched (by
//!   hash) and checked against the SHA256 and size that `Release` lists
//!   ([`index::fetch_verified_packages`]);
//! - [`discover`]: every kernel of the requested suites, with the packages
//!   that carry its vmlinuz, config, modules and `Module.symvers`;
//! - [`cache`]: a content-addressed download cache (`<root>/debs/<sha256>`),
//!   every file verified against the index's size and SHA256;
//! - [`deb`]: streaming `.deb` extraction with path-escape checks;
//! - [`kernel_tree`]: a kernel's packages ([`kernel_tree::PinnedKernel`]:
//!   the pins of `tests/kernels.toml` and every discovered kernel) fetched
//!   and unpacked into a kernel tree, `<root>/kernels/<release>/`;
//! - [`targeted`]: what `kmlink crawler refresh` fetches: the kernel's
//!   packages, of which only vmlinuz, config, `Module.symvers` and a few
//!   stock modules are unpacked into a temporary directory;
//! - [`shard`]: a deterministic share of the kernels (`refresh --shard I/N`),
//!   keyed by each kernel's identity;
//! - [`refresh`]: the whole `kmlink crawler refresh` pipeline (discover,
//!   select, stage with [`targeted`], extract and store through
//!   `kmlink_metadata_db::refresh`), reporting to a listener; also the one
//!   adapter from a kernel tree to the extractor's artifacts;
//! - [`ingest`]: local `.deb` files put into the cache, so kernels can be
//!   unpacked without network.
//!
//! Ubuntu support is experimental: its layouts are covered by fixtures
//! only.
//!
//! Mirror host names never appear in this crate: they come from apt sources
//! or from the caller.
#![deny(missing_docs)]

pub mod cache;
pub mod deb;
mod deb822;
pub mod discover;
mod error;
mod http;
pub mod index;
pub mod ingest;
pub mod kernel_tree;
mod publish;
pub mod refresh;
pub mod release;
pub mod sha256;
pub mod shard;
pub mod sources;
pub mod sweep;
pub mod targeted;
pub mod tools;

pub use error::Error;
pub use http::Http;
pub use kmlink_debian::version;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
