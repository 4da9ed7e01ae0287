//! Where the monitor's files are: `<root>/kmlink/{stats,events,control}`,
//! root `/proc` on a live host, a recorded snapshot directory in tests.

use std::io;
use std::path::{Path, PathBuf};

use crate::events::{parse_events, Event};
use crate::stacks::{parse_stacks, Stacks};
use crate::stats::{parse_stats, Stats};
use crate::view::View;
use crate::Error;

/// A command for `/proc/kmlink/control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Zero all counters and empty the event ring.
    Clear,
    /// Stop recording.
    Pause,
    /// Record again.
    Resume,
}

impl Control {
    /// The word written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Clear => "clear",
            Control::Pause => "pause",
            Control::Resume => "resume",
        }
    }
}

/// The monitor's /proc files under a root directory.
#[derive(Debug, Clone)]
pub struct ProcSource {
    root: PathBuf,
}

impl ProcSource {
    /// Files under `root` (normally `/proc`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcSource { root: root.into() }
    }

    /// `<root>/kmlink`.
    pub fn dir(&self) -> PathBuf {
        self.root.join("kmlink")
    }

    /// Fails with [`Error::NotLoaded`] when `<root>/kmlink` does not exist.
    pub fn check_loaded(&self) -> Result<(), Error> {
        let dir = self.dir();
        if dir.is_dir() {
            Ok(())
        } else {
            Err(Error::NotLoaded { dir })
        }
    }

    fn read(&self, name: &str) -> Result<(PathBuf, String), Error> {
        self.check_loaded()?;
        let path = self.dir().join(name);
        match kmlink_fsio::read_bounded(&path, MAX_PROC_FILE, "/proc/kmlink file") {
            // Names are escaped, so the files are ASCII; be lenient anyway.
            Ok(bytes) => Ok((path, String::from_utf8_lossy(&bytes).into_owned())),
            Err(error) => Err(Error::Read { path, error }),
        }
    }

    /// Reads and parses `stats`.
    pub fn read_stats(&self) -> Result<Stats, Error> {
        let (path, text) = self.read("stats")?;
        parse_stats(&text).map_err(|error| Error::Parse { path, error })
    }

    /// Reads and parses `events` (a snapshot; nothing is consumed).
    pub fn read_events(&self) -> Result<Vec<Event>, Error> {
        let (path, text) = self.read("events")?;
        parse_events(&text).map_err(|error| Error::Parse { path, error })
    }

    /// Reads and parses `stacks` (a monitor linked with `--set stacks=N`).
    pub fn read_stacks(&self) -> Result<Stacks, Error> {
        let (path, text) = self.read("stacks")?;
        parse_stacks(&text).map_err(|error| Error::Parse { path, error })
    }

    /// Writes a command to `control`.
    pub fn control(&self, cmd: Control) -> Result<(), Error> {
        self.check_loaded()?;
        let path = self.dir().join("control");
        std::fs::write(&path, cmd.as_str()).map_err(|error| Error::Write { path, error })
    }

    /// The running kernel's release, as uname reports it
    /// (`<root>/sys/kernel/osrelease`); `None` when unreadable.
    pub fn kernel_release(&self) -> Option<String> {
        read_trimmed(&self.root.join("sys/kernel/osrelease")).ok()
    }
}

/// The largest `/proc/kmlink/{stats,events}` kmlink reads: the monitor
/// prints at most 4,096 processes, its caches and its event ring, a few MiB.
pub const MAX_PROC_FILE: u64 = 64 << 20;

/// The largest `osrelease` (`__NEW_UTS_LEN` and then some).
const MAX_RELEASE_FILE: u64 = 4096;

fn read_trimmed(path: &Path) -> io::Result<String> {
    let bytes = kmlink_fsio::read_bounded(path, MAX_RELEASE_FILE, "kernel release")?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// Reads `stats` repeatedly, turning each read into a [`View`] with rates
/// since the previous one.
#[derive(Debug)]
pub struct Sampler {
    source: ProcSource,
    prev: Option<(Stats, std::time::Instant)>,
}

impl Sampler {
    /// A sampler with no previous snapshot.
    pub fn new(source: ProcSource) -> Self {
        Sampler { source, prev: None }
    }

    /// The files read.
    pub fn source(&self) -> &ProcSource {
        &self.source
    }

    /// Reads a snapshot; rates are relative to the previous successful one.
    pub fn sample(&mut self) -> Result<View, Error> {
        let cur = self.source.read_stats()?;
        let now = std::time::Instant::now();
        let view = match &self.prev {
            Some((prev, at)) => View::between(Some(prev), cur.clone(), Some(now - *at)),
            None => View::first(cur.clone()),
        };
        self.prev = Some((cur, now));
        Ok(view)
    }
}
