//! The monitor's aggregates as metrics: one parsed `/proc/kmlink/stats`
//! snapshot ([`kmlink_procview::Stats`]) rendered as OpenMetrics or
//! Prometheus text ([`render`]), served over HTTP at `/metrics`
//! ([`http`]) or written for node_exporter's textfile collector
//! ([`textfile`]); and the sampled allocation stacks as flame graphs
//! ([`flame`]).
//!
//! Like `kmlink top`, the exporter is a view of the typed snapshot; it
//! keeps no state between scrapes, so every counter is the monitor's own
//! (reset by `kmlink`'s `clear`, which Prometheus treats as a counter reset).
//! Cardinality is bounded: all caches (the monitor's table is fixed-size),
//! every cgroup row (the monitor's table is fixed-size), the top processes
//! by bytes allocated ([`Options::top_processes`]), the top call sites by
//! outstanding bytes ([`Options::top_callsites`]) and the monitor's own
//! overflow rows.
//!
//! Metric names and what they mean: docs/operator.md ("Metrics").

#![deny(missing_docs)]

pub mod flame;
pub mod http;
mod metrics;
pub mod textfile;

use kmlink_procview::cgroup::CgroupPaths;
use kmlink_procview::{ProcSource, Stats};

pub use metrics::{LabelSet, TableRow};

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`):
    /// units, `_total` counter samples, `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), what
    /// node_exporter's textfile collector and `promtool check metrics` read.
    Prometheus,
}

impl Format {
    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format a client asks for in its `Accept` header: OpenMetrics when
    /// it names `application/openmetrics-text`, else Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// At most this many process rows (the largest by bytes allocated), plus
    /// the monitor's `(other)` row: process ids come and go, so this bounds
    /// the series one scrape creates.
    pub top_processes: usize,
    /// At most this many call-site rows (the largest by outstanding bytes:
    /// leak candidates first), plus the monitor's `(other)` row.
    pub top_callsites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            top_processes: 20,
            top_callsites: 20,
        }
    }
}

/// Exporting failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The monitor's files could not be read or parsed.
    #[error(transparent)]
    Read(#[from] kmlink_procview::Error),
    /// The metrics could not be encoded (a name the format refuses).
    #[error("encoding the metrics failed")]
    Encode,
    /// No stack has been sampled (yet).
    #[error("no allocation stack has been sampled yet")]
    NoStacks,
    /// inferno could not draw the graph.
    #[error("drawing the flame graph failed")]
    Flame {
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The HTTP listener could not be set up.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The textfile could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// One snapshot as text. `None` is an unloaded monitor: only
/// `kmlink_monitor_loaded 0` is written, so an alert can tell "not
/// loaded" from "exporter down".
/// Cgroups are labelled by id only; [`render_with_paths`] adds their paths.
pub fn render(stats: Option<Stats>, options: Options, format: Format) -> Result<String, Error> {
    render_with_paths(stats, &CgroupPaths::default(), options, format)
}

/// [`render`], with each cgroup row also labelled by its path (relative to
/// the cgroup2 root) where `paths` knows the id.
pub fn render_with_paths(
    stats: Option<Stats>,
    paths: &CgroupPaths,
    options: Options,
    format: Format,
) -> Result<String, Error> {
    metrics::render(stats, paths, options, format).map_err(|_| Error::Encode)
}

/// Reads `stats` under `source` and renders it; an unloaded monitor is not
/// an error (see [`render`]), an unreadable or malformed file is.
pub fn scrape(source: &ProcSource, options: Options, format: Format) -> Result<String, Error> {
    let stats = match source.read_stats() {
        Ok(s) => Some(s),
        Err(kmlink_procview::Error::NotLoaded { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let paths = match &stats {
        Some(s) if !s.cgroups.is_empty() => CgroupPaths::discover(),
        _ => CgroupPaths::default(),
    };
    render_with_paths(stats, &paths, options, format)
}
