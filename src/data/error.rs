//! The typed error of the data module: every message names the file (or the request) and the
//! offending numbers.

use std::path::PathBuf;

/// Everything that can go wrong while loading, generating or partitioning data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{}: cannot read file: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A gzip stream is corrupt or truncated.
    #[error("{file}: gzip decompression failed: {message}")]
    Gzip {
        /// The file (or name given to a byte parser).
        file: String,
        /// What the decoder reported.
        message: String,
    },

    /// A gzip stream decompresses to more bytes than this module accepts.
    #[error("{file}: gzip stream decompresses to more than {limit} bytes; refusing to load it")]
    DecompressedTooLarge {
        /// The file.
        file: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// A file ends before the bytes its header promises (or before its header ends).
    #[error("{file}: file truncated: {what} needs {needed} bytes but the file has {actual}")]
    Truncated {
        /// The file.
        file: String,
        /// What was being read.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        actual: u64,
    },

    /// A file has more bytes than its header accounts for.
    #[error(
        "{file}: {extra} unexpected trailing bytes after the {expected} bytes the header describes"
    )]
    TrailingBytes {
        /// The file.
        file: String,
        /// Bytes described by the header.
        expected: u64,
        /// Bytes beyond that.
        extra: u64,
    },

    /// An IDX file starts with the wrong magic number.
    #[error("{file}: wrong IDX magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// The file.
        file: String,
        /// The magic number found.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What kind of file was expected.
        what: &'static str,
    },

    /// An IDX file declares an element type other than unsigned byte.
    #[error("{file}: IDX element type code 0x{found:02x} is not supported (expected 0x{expected:02x}, unsigned byte)")]
    WrongDtype {
        /// The file.
        file: String,
        /// The type code found.
        found: u8,
        /// The type code expected.
        expected: u8,
    },

    /// An IDX file declares the wrong number of dimensions.
    #[error("{file}: IDX file has {found} dimensions, expected {expected} ({what})")]
    WrongDims {
        /// The file.
        file: String,
        /// Dimensions declared.
        found: u8,
        /// Dimensions expected.
        expected: u8,
        /// What kind of file was expected.
        what: &'static str,
    },

    /// A file's header declares a zero-sized dimension or no samples at all.
    #[error("{file}: {what} is zero; the file holds no usable samples")]
    Empty {
        /// The file.
        file: String,
        /// Which quantity is zero.
        what: &'static str,
    },

    /// An image file and a label file disagree on the number of samples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: String,
        /// The label file.
        labels: String,
        /// Number of images.
        n_images: usize,
        /// Number of labels.
        n_labels: usize,
    },

    /// A label is not below the number of classes.
    #[error("{file}: label {label} of sample {index} is out of range (must be < {n_classes})")]
    LabelOutOfRange {
        /// The file or dataset.
        file: String,
        /// Sample index.
        index: usize,
        /// The label found.
        label: u32,
        /// Number of classes.
        n_classes: usize,
    },

    /// A CIFAR-10 batch file's size is not a whole number of records.
    #[error("{file}: size {len} bytes is not a multiple of the CIFAR-10 record size {record} (1 label byte + 3072 pixel bytes)")]
    CifarSize {
        /// The file.
        file: String,
        /// File size.
        len: u64,
        /// Record size.
        record: u64,
    },

    /// None of the candidate file names exists in a directory.
    #[error("no {what} found in {}: looked for {}", .dir.display(), .tried.join(", "))]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for.
        what: String,
        /// Every file name tried.
        tried: Vec<String>,
    },

    /// Arrays handed to [`crate::data::Dataset::new`] are inconsistent.
    #[error("invalid dataset {name}: {reason}")]
    InvalidDataset {
        /// Dataset name.
        name: String,
        /// What is inconsistent.
        reason: String,
    },

    /// A sample index is out of range.
    #[error("sample index {index} out of range for a dataset of {len} samples")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Number of samples.
        len: usize,
    },

    /// Invalid parameters for the synthetic task.
    #[error("invalid synthetic task: {0}")]
    InvalidSynthetic(String),

    /// A partition was requested for zero agents.
    #[error("cannot partition data across 0 agents")]
    NoAgents,

    /// More agents than samples.
    #[error("cannot partition {n_samples} samples across {n_agents} agents: need at least one sample per agent")]
    TooManyAgents {
        /// Number of agents.
        n_agents: usize,
        /// Number of samples.
        n_samples: usize,
    },

    /// The Dirichlet concentration is not a positive finite number.
    #[error("Dirichlet concentration alpha = {alpha} is invalid: it must be finite and > 0")]
    InvalidAlpha {
        /// The value given.
        alpha: f64,
    },

    /// The Dirichlet partition did not reach its minimum-size condition.
    #[error("Dirichlet(alpha = {alpha}) partition: chunk {chunk} ({chunk_size} samples, {workers} workers) never reached the minimum size {required} per worker in {tries} tries (best minimum {best}); use a larger alpha or fewer agents")]
    DirichletNoConvergence {
        /// Concentration.
        alpha: f64,
        /// Chunk index.
        chunk: usize,
        /// Chunk size S.
        chunk_size: usize,
        /// Workers m served by the chunk.
        workers: usize,
        /// Required minimum list size.
        required: usize,
        /// Best minimum seen.
        best: usize,
        /// Tries made.
        tries: usize,
    },

    /// A class-per-agent or shard request cannot be met.
    #[error("impossible partition: {0}")]
    ImpossiblePartition(String),

    /// A partition name that is not recognised.
    #[error("unknown partition {given:?}; accepted: iid, dirichlet[:ALPHA] (RelaySGD rebalance), dirichlet-qgm[:ALPHA], shards, classes[:K]")]
    UnknownPartition {
        /// The string given.
        given: String,
    },

    /// A dataset kind name that is not recognised.
    #[error("unknown dataset kind {given:?}; accepted: {accepted}")]
    UnknownKind {
        /// The string given.
        given: String,
        /// Accepted values.
        accepted: &'static str,
    },
}
