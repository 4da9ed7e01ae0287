//! Shared error helpers of kmlink's libraries.
//!
//! kmlink's error types say their own context in their message and leave
//! the cause to [`std::error::Error::source`], so that a chain printed link
//! by link says each thing once (the CLI prints it with anyhow's `{:#}`).
//! Where a library must turn an error into text — a log line, a verdict
//! line, a failure kept in a report — [`Chain`] writes the whole chain the
//! same way: `context: cause: root cause`.
//!
//! [`IoError`] is the one "what was done to which file" error that the
//! libraries' `Io` variants wrap.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

/// An I/O failure on a file: what was being done (`"reading"`,
/// `"creating"`, ...) and to which path; the cause is the source.
/// Displays as `reading /x.ko`.
#[derive(Debug)]
pub struct IoError {
    /// What was being done.
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

impl IoError {
    /// `op` failed on `path` because of `source`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> IoError {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }

    /// A `map_err` adapter: `f.read(..).map_err(IoError::at("reading", p))?`
    /// (with `?` converting into the library's error through `From`).
    pub fn at(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IoError {
        let path = path.to_path_buf();
        move |source| IoError { op, path, source }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.path.display())
    }
}

impl Error for IoError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Displays an error and every cause under it, joined by `": "`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `Chain(e).to_string()`.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading /x.ko")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_link_once_in_order() {
        let e = Outer(std::io::Error::other("No such file or directory"));
        assert_eq!(chain(&e), "reading /x.ko: No such file or directory");
        let io = std::io::Error::other("bare");
        assert_eq!(chain(&io), "bare");
    }

    #[test]
    fn io_error_says_op_and_path_once() {
        let e = IoError::new(
            "reading",
            "/x.ko",
            std::io::Error::other("No such file or directory"),
        );
        assert_eq!(chain(&e), "reading /x.ko: No such file or directory");
    }
}
