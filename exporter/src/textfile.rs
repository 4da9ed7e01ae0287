//! node_exporter's textfile collector: the metrics as Prometheus text in
//! `DIR/kmlink.prom`, replaced atomically (a temporary beside it, renamed
//! over it, by `kmlink-fsio`) so the collector never reads half a file.
//! The temporary's name does not end in `.prom`, so the collector skips it.

use std::path::{Path, PathBuf};

use kmlink_fsio::Durability;
use kmlink_procview::ProcSource;

use crate::{scrape, Error, Format, Options};

/// The file written in the collector's directory.
pub const FILE_NAME: &str = "kmlink.prom";

/// Reads the monitor once and replaces `dir/kmlink.prom`; returns the path.
pub fn write(dir: &Path, source: &ProcSource, options: Options) -> Result<PathBuf, Error> {
    let text = scrape(source, options, Format::Prometheus)?;
    let path = dir.join(FILE_NAME);
    kmlink_fsio::write_file(&path, text.as_bytes(), Durability::Visible).map_err(|error| {
        Error::Write {
            path: path.clone(),
            error,
        }
    })?;
    Ok(path)
}
