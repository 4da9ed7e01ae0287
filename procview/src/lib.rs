//! Reading the kmlink monitor: its `/proc/kmlink` files parsed into typed
//! snapshots ([`stats`], [`events`]), rates between snapshots and the sorted,
//! filtered rows people look at ([`view`]), the JSON output ([`json`]) and
//! the terminal view of `kmlink top` ([`tui`]).
//!
//! The format is described in docs/operator.md ("How the files are read")
//! and docs/core-module.md ("Events and data"). Parsing is tolerant of growth (unknown tables,
//! columns and event kinds are ignored; columns are found by name) and strict
//! about malformed lines, which are errors naming the line.

#![deny(missing_docs)]

use std::path::PathBuf;

pub mod cgroup;
pub mod events;
pub mod json;
pub mod leaks;
pub mod name;
pub mod source;
pub mod stacks;
pub mod stats;
mod table;
pub mod text;
pub mod tui;
pub mod view;

pub use events::{parse_events, Event, EventFilter, EventKind, Follower};
pub use name::Name;
pub use source::{Control, ProcSource, Sampler};
pub use stacks::{parse_stacks, Stack, Stacks};
pub use stats::{
    parse_stats, CacheKey, CgroupKey, Counters, PageCounters, ProcessKey, SiteKey, Stats,
};
pub use table::ParseError;
pub use view::{Filter, SortKey, View};

/// Reading the monitor failed; messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc/kmlink` does not exist.
    #[error(
        "the monitor is not loaded ({} does not exist): run `kmlink load` \
         (or `kmlink doctor` to see why it cannot be)",
        dir.display()
    )]
    NotLoaded {
        /// The directory looked for.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {error}{}", path.display(), io_hint(error))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {error}{}", path.display(), io_hint(error))]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The terminal could not be set up or drawn to.
    #[error("terminal error: {error} (if this is not an interactive terminal, use `kmlink top --batch N` or `kmlink stats`)")]
    Terminal {
        /// Why.
        error: std::io::Error,
    },
    /// A file is not in the expected format.
    #[error(
        "{} is not in the format this kmlink reads: {error} (if the loaded monitor \
         comes from another kmlink version, reload it: `kmlink unload && kmlink load`)",
        path.display()
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// Which line and why.
        error: ParseError,
    },
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (the monitor's files are root's: run it with sudo)"
        }
        std::io::ErrorKind::NotFound => {
            " (the monitor is loaded but lacks this file: is it an older build? \
             `kmlink unload && kmlink load` rebuilds it)"
        }
        _ => "",
    }
}
