//! kmlink's metadata: the per-kernel record the linker consumes, how it is
//! extracted from a kernel's own artifacts, and how records are stored
//! ([`store`]), moved between machines ([`bundle`]), combined ([`merge`]), cut to what one core
//! needs ([`slim`]) and refreshed from many kernels ([`refresh`]).
//!
//! The on-disk format is described in [`image`]; `docs/metadata-db.md` says
//! why it is a single file rather than an embedded database engine.
#![deny(missing_docs)]

pub mod bundle;
pub mod codec;
pub mod extract;
pub mod image;
pub mod merge;
pub mod record;
pub mod refresh;
pub mod slim;
pub mod store;
pub mod this_module;

pub use image::{RecordKey, RecordSummary};
pub use store::{DbError, OpenError, RecordSource, Store, VerifyReport};
