//! The crate's error type.
//!
//! Every message says its own context once and leaves the cause to
//! [`std::error::Error::source`]: print the whole chain (anyhow's `{:#}`, or
//! [`kmlink_errors::Chain`]) to see why.

use std::path::PathBuf;

/// Everything that can go wrong while finding, fetching, verifying or
/// unpacking packages. Every variant names where: the file, URL, package or
/// archive member involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] kmlink_errors::IoError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A URL (a mirror's, from sources or --mirror) is not one kmlink can
    /// fetch.
    #[error("{url:?} is not a valid http:// or https:// URL: {what}; check the mirror given (--mirror or the apt sources)")]
    BadUrl {
        /// The URL as built.
        url: String,
        /// What is wrong.
        what: String,
    },
    /// A request failed below the HTTP status level (connect, TLS, read...).
    #[error("fetching {url}")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Reading a response body failed.
    #[error("reading the body of {url}")]
    HttpBody {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an unexpected status.
    #[error("fetching {url}: HTTP status {status}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Every mirror answered 404 for a package file.
    #[error("{package}: not found on any mirror (HTTP 404 from {})", urls.join(", "))]
    NotFound {
        /// The package name and version.
        package: String,
        /// The URLs tried.
        urls: Vec<String>,
    },
    /// A kernel none of whose copies of a needed package is left: the index
    /// lists it, every mirror answers 404, and no other package the index
    /// lists carries the same files. Not a failure of the crawl: the
    /// archive has lost the kernel.
    #[error("kernel {release} is unavailable: {file} is gone from the archive (HTTP 404 from every mirror){}", if tried.is_empty() { String::new() } else { format!(", and so is {}", tried.join(", ")) })]
    Unavailable {
        /// The kernel release.
        release: String,
        /// The file the index lists (`pool/…/<package>_<version>_amd64.deb`).
        file: String,
        /// Files of the packages tried in its place, also gone.
        tried: Vec<String>,
    },
    /// A downloaded or cached file has the wrong size.
    #[error("{package}: size mismatch for {source_name}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The package name and version.
        package: String,
        /// The URL or file checked.
        source_name: String,
        /// Size from the index.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A downloaded or cached file has the wrong SHA256.
    #[error("{package}: SHA256 mismatch for {source_name}: expected {expected}, got {actual}")]
    HashMismatch {
        /// The package name and version.
        package: String,
        /// The URL or file checked.
        source_name: String,
        /// Hash from the index.
        expected: String,
        /// Hash computed.
        actual: String,
    },
    /// Malformed apt sources, `Packages` index or control stanza.
    #[error("{what}, line {line}: {msg}")]
    Syntax {
        /// What was being parsed ("deb822 sources", "Packages index", a file name...).
        what: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A `Packages` entry is unusable (missing field, bad hash...).
    #[error("Packages entry {package}: {msg}")]
    BadEntry {
        /// The package name (or `?`).
        package: String,
        /// What is wrong.
        msg: String,
    },
    /// A compressed index could not be decompressed.
    #[error("decompressing {url}")]
    Decompress {
        /// The index URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `.deb` is malformed: bad `ar` container, missing or duplicate
    /// member, undecodable member, broken tar stream.
    #[error("{deb}: {member}: {msg}")]
    Deb {
        /// The `.deb` file.
        deb: PathBuf,
        /// The `ar` member (and tar entry) involved, or `-`.
        member: String,
        /// What is wrong.
        msg: String,
    },
    /// A `.deb` entry would escape the extraction directory.
    #[error("{deb}: {member}: refusing entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The `.deb` file.
        deb: PathBuf,
        /// The `ar` member.
        member: String,
        /// The tar entry path as stored.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// `tests/kernels.toml` (or other pinned-kernel TOML) is malformed.
    #[error("parsing {what}")]
    Toml {
        /// The file, or a description of the text.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A pinned kernel cannot be materialized.
    #[error("kernel {release}: {msg}")]
    Kernel {
        /// The kernel release.
        release: String,
        /// What is wrong.
        msg: String,
    },
    /// No mirror serves a suite.
    #[error("no {distro} {kind} mirror for suite {suite} (apt sources or --mirror)")]
    NoMirror {
        /// The distribution.
        distro: String,
        /// `archive` or `security`.
        kind: &'static str,
        /// The suite.
        suite: String,
    },
    /// Pinned kernels could not be written as TOML.
    #[error("serialising the pinned kernels as TOML")]
    TomlWrite {
        /// The underlying error.
        #[source]
        source: toml::ser::Error,
    },
    /// A parallel download ended without a result (its worker panicked).
    #[error("the download of {package} did not finish")]
    Unfinished {
        /// The package name and version.
        package: String,
    },
    /// A keyring cannot be read or holds no usable key.
    #[error("keyring {path}: {msg}")]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An `InRelease` signature does not verify: nothing from that source is
    /// used.
    #[error("{what}: BAD SIGNATURE: {msg}")]
    Signature {
        /// The `InRelease` URL or file.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// A (verified) `Release` text is unusable, or does not list an index.
    #[error("{what}: {msg}")]
    Release {
        /// The `InRelease` URL or file.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// A local package given to `ingest` is unusable.
    #[error("{path}: {msg}")]
    Ingest {
        /// The `.deb` file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An error with the unit of work that hit it.
    #[error("{context}")]
    Context {
        /// What was being done ("reading /etc/apt/sources.list", "kernel 6.1.0-47-amd64").
        context: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Wrap `self` with a description of the unit of work.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, looking through [`Error::Context`] wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether this is (or wraps) [`Error::Unavailable`]: the archive has
    /// lost the kernel.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.root(), Error::Unavailable { .. })
    }

    /// Whether this is (or wraps) an HTTP 404 / [`Error::NotFound`] /
    /// [`Error::Unavailable`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.root(),
            Error::NotFound { .. }
                | Error::HttpStatus { status: 404, .. }
                | Error::Unavailable { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io(kmlink_errors::IoError::new(op, path, source))
    }
}
