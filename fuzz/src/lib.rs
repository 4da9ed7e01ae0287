//! kmlink's fuzz targets and the stable-Rust fuzzer that drives them.
//!
//! Every parser that eats untrusted bytes has a [`Target`]: a function
//! taking arbitrary bytes that must return (any `Err` is fine) without
//! panicking, hanging or exhausting memory, plus seed inputs built from the
//! repository's fixtures and small well-formed examples made in code.
//!
//! [`engine`] is a mutation fuzzer (bit flips, interesting values, block
//! insert/delete/copy, splicing, truncation) that runs on stable Rust. When
//! the binary is built with LLVM's SanitizerCoverage inline 8-bit counters
//! (`scripts/fuzz` does this through a rustc wrapper, only for kmlink's and
//! the parsing crates), [`cov`] receives the counters and the engine keeps
//! every input that reaches a new edge (coverage-guided); otherwise it
//! mutates the seeds blindly. See docs/fuzzing.md.
#![deny(missing_docs)]

pub mod cov;
pub mod engine;
pub mod guard;
pub mod seeds;
pub mod targets;

pub use targets::{targets, Target};
