//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong reading a kernel artifact. Each variant says
/// where: file, section, offset, symbol or line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bzImage setup header is malformed or points outside the file.
    #[error("bzImage: {what} (at offset {offset:#x})")]
    BzImage {
        /// What is wrong.
        what: String,
        /// File offset involved.
        offset: u64,
    },
    /// The contents of a raw arm64 Image, found by content (no section
    /// table), do not have the shape the kernel's linker script gives them.
    #[error("arm64 Image: {what} (at offset {offset:#x})")]
    Arm64Image {
        /// What is wrong.
        what: String,
        /// File offset involved.
        offset: u64,
    },
    /// The compressed payload's magic matches no known codec.
    #[error("unknown compression (magic {magic}) in {context}")]
    UnknownCodec {
        /// First bytes, hex.
        magic: String,
        /// Where the data came from.
        context: String,
    },
    /// A file given as a kernel module is none.
    #[error("{path} is not a kernel module: {what}")]
    NotAModule {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// An ELF file that is not an x86_64 kernel module.
    #[error("not an x86_64 kernel module: {what}")]
    ForeignModule {
        /// What it is instead.
        what: String,
    },
    /// A decoder failed.
    #[error("{codec} decompression of {context} failed")]
    Decompress {
        /// Codec name.
        codec: &'static str,
        /// Where the data came from.
        context: String,
        /// Decoder error.
        #[source]
        source: std::io::Error,
    },
    /// Decompressed data exceeds [`crate::MAX_DECOMPRESSED`] or disagrees with
    /// the size the container announces.
    #[error("{codec} payload of {context}: {what}")]
    DecompressedSize {
        /// Codec name.
        codec: &'static str,
        /// Where the data came from.
        context: String,
        /// What is wrong with the size.
        what: String,
    },
    /// The ELF container cannot be parsed.
    #[error("ELF {context}")]
    Elf {
        /// What was being read.
        context: String,
        /// object's error.
        #[source]
        source: object::read::Error,
    },
    /// Malformed content of an ELF section.
    #[error("section {section} at offset {offset:#x}: {what}")]
    Section {
        /// Section name.
        section: String,
        /// Offset inside the section.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A required section is absent.
    #[error("section {section} not found ({context})")]
    MissingSection {
        /// Section name.
        section: String,
        /// Why it was needed.
        context: String,
    },
    /// A string or symbol could not be found.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// Malformed BTF.
    #[error("invalid BTF: {what} (offset {offset:#x})")]
    Btf {
        /// What is wrong.
        what: String,
        /// Byte offset in the BTF blob.
        offset: u64,
    },
    /// A BTF type id that does not exist.
    #[error("BTF type id {id} out of range ({count} types) while {context}")]
    BtfTypeId {
        /// The bad id.
        id: u32,
        /// Number of types in the blob.
        count: u32,
        /// What was being resolved.
        context: String,
    },
    /// A BTF query hit something that is not byte addressable or not sized.
    #[error("BTF {item}: {what}")]
    BtfQuery {
        /// `struct.member` or type being queried.
        item: String,
        /// What is wrong.
        what: String,
    },
    /// A malformed `Module.symvers` line.
    #[error("Module.symvers line {line}: {what}")]
    Symvers {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Error {
    pub(crate) fn elf(context: impl Into<String>, source: object::read::Error) -> Self {
        Error::Elf {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn section(section: &str, offset: u64, what: impl Into<String>) -> Self {
        Error::Section {
            section: section.to_owned(),
            offset,
            what: what.into(),
        }
    }
}
