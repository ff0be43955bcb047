//! The crate's one error type: every failure a user can cause is a variant with a clear message.

use std::path::PathBuf;

/// Everything that can go wrong in swarmgrad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter matched the request.
    #[error("no GPU adapter found ({0}); install a Vulkan driver (on Linux without a GPU: `apt-get install mesa-vulkan-drivers` for lavapipe) or run with --backend cpu")]
    NoAdapter(String),
    /// An explicit GPU request (`--adapter`, `--gpu-backend`, `WGPU_ADAPTER_NAME`,
    /// `WGPU_BACKEND`) that no adapter here meets.
    #[error("no GPU adapter matches {request}; adapters here: {available} (change the request, or drop it and use --backend auto or cpu)")]
    AdapterRequest {
        /// What was asked, as the user wrote it.
        request: String,
        /// The adapters that exist.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    DeviceRequest {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        reason: String,
    },
    /// A wgpu validation or out-of-memory error raised while recording or submitting work.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A buffer would exceed what the adapter can allocate or bind.
    #[error("{what} needs {bytes} bytes but the adapter allows at most {limit} bytes ({limit_name}); use fewer agents, a smaller model or a smaller batch")]
    BufferTooLarge {
        /// What the buffer holds.
        what: String,
        /// Requested size.
        bytes: u64,
        /// The adapter limit.
        limit: u64,
        /// Which limit was hit.
        limit_name: &'static str,
    },
    /// A size, count or index that the GPU kernels hold in 32 bits does not fit.
    #[error("{what} is {value}, more than the GPU kernels' 32-bit indices can address (at most {max}); use fewer agents, a smaller model or a smaller batch", max = u32::MAX)]
    IndexRange {
        /// What is too large.
        what: String,
        /// Its value.
        value: u64,
    },
    /// An operation was given buffers or sizes that do not fit together.
    #[error("invalid arguments to {op}: {reason}")]
    InvalidOp {
        /// The backend operation.
        op: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// A model specification that cannot be built.
    #[error("bad model spec '{spec}': {reason}")]
    ModelSpec {
        /// The offending spec.
        spec: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A hyperparameter or option out of its valid range.
    #[error("bad value for {name}: {reason}")]
    BadParameter {
        /// The parameter (or flag) name.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Training produced a non-finite loss or parameter.
    #[error("training diverged at step {step}: {what} of agent {agent} is {value}")]
    Diverged {
        /// The step at which divergence was detected.
        step: u64,
        /// The agent whose state is not finite.
        agent: usize,
        /// What was not finite (loss, parameters).
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint that cannot be resumed: truncated, corrupt, or written by another run.
    #[error("cannot resume from checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A graph that cannot serve the requested algorithm.
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    /// A dataset or partition that cannot be built.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an [`Error::InvalidOp`].
    pub(crate) fn op(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidOp {
            op,
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::BadParameter`].
    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::BadParameter {
            name: name.into(),
            reason: reason.into(),
        }
    }
}
