//! Debian identities that several of kmlink's crates need and none of them
//! owns: the order of Debian versions ([`version`]) and the parts of a
//! kernel release string ([`release`]).
//!
//! This crate has no dependencies, so that the crawler, the linker and the
//! VM runner can share one rule each without depending on one another.
#![deny(missing_docs)]

pub mod release;
pub mod version;
