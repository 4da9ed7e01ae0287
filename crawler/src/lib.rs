//! Discovers, downloads, verifies and unpacks Debian kernel packages.
//!
//! The pieces, in pipeline order:
//!
//! - [`sources`]: which mirrors to use, read from the host's apt sources (or
//!   given explicitly);
//! - [`index`]: `Packages` indexes of a suite;
//! - [`cache`]: a content-addressed download cache (`<root>/debs/<sha256>`),
//!   every file verified against the index's size and SHA256;
//! - [`deb`]: streaming `.deb` extraction with path-escape checks;
//! - [`pinned`]: the pinned test kernels of `tests/kernels.toml`, fetched and
//!   unpacked into `<root>/kernels/<release>/`.
//!
//! Mirror host names never appear in this crate: they come from apt sources
//! or from the caller.
#![deny(missing_docs)]

pub mod cache;
pub mod deb;
mod deb822;
mod error;
mod http;
pub mod index;
pub mod pinned;
pub mod sources;
pub mod version;

pub use error::Error;
pub use http::Http;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
