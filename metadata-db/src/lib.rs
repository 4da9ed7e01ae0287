//! kmlink's metadata: the per-kernel record the linker consumes, how it is
//! extracted from a kernel's own artifacts, and (later) how it is stored.
#![deny(missing_docs)]

pub mod extract;
pub mod record;
