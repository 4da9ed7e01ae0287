//! The one way the CLI's tests run the real binary: `COLUMNS` unset (clap
//! and `top` lay out for their defaults), the record store the test names
//! (`KMLINK_DB`; [`NO_STORE`] when the test needs none, so the host's store
//! never leaks in), output captured.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// A record store that does not exist: builds fall back to the built-in
/// records, as on a fresh machine.
pub const NO_STORE: &str = "/nonexistent/kmlink-test/records.db";

/// `kmlink` with the record store `db`, ready for arguments.
pub fn command(db: impl AsRef<Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kmlink"));
    c.env_remove("COLUMNS").env("KMLINK_DB", db.as_ref());
    c
}

/// Runs `kmlink ARGS` without a record store.
pub fn run(args: &[&str]) -> Output {
    command(NO_STORE).args(args).output().unwrap()
}

/// Runs `kmlink ARGS` in `dir` with the record store `db`; with `home`,
/// `HOME` is `dir` too (nothing of the user's is read or written).
pub fn run_in(dir: &Path, db: &Path, home: bool, args: &[&str]) -> Output {
    let mut c = command(db);
    c.args(args).current_dir(dir);
    if home {
        c.env("HOME", dir);
    }
    c.output().unwrap()
}

/// Status, stdout and stderr of `o`, for assertion messages.
pub fn said(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
