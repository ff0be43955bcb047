//! Datasets and their partitions across agents.
//!
//! * [`Dataset`]: an in-memory classification dataset of `u8` features (normalised on the GPU
//!   as `(byte / 255 − mean) / std`).
//! * Loaders: IDX files of the MNIST family ([`load_idx_pair`], [`load_mnist_dir`]) and CIFAR-10
//!   binary batches ([`load_cifar_dir`]), raw or gzip, with typed errors naming the file.
//! * [`synthetic`]: a seeded Gaussian-class task that needs no files.
//! * Partitions (ALGORITHMS.md §4): [`iid`], [`dirichlet`], [`shards`], [`classes_per_agent`]
//!   and the [`Partition`] enum that parses them from the command line.
//! * [`PartitionSummary`]: per-agent label histograms, entropies and top classes.
//!
//! ```no_run
//! use swarmgrad::data::{load_mnist_dir, MnistKind, Partition, PartitionSummary, Split};
//! # fn main() -> Result<(), swarmgrad::data::DataError> {
//! let train = load_mnist_dir("data/mnist", Split::Train, MnistKind::Mnist)?;
//! let parts = "dirichlet:0.1".parse::<Partition>()?.apply(&train, 16, 6)?;
//! println!("{}", PartitionSummary::new(&train, &parts)?);
//! # Ok(())
//! # }
//! ```

mod cifar;
mod dataset;
mod error;
mod gz;
mod idx;
mod partition;
mod summary;
mod synthetic;

#[cfg(test)]
mod fuzz_tests;

pub use cifar::{
    load_cifar_batch, load_cifar_dir, parse_cifar_batch, CIFAR10_MEAN, CIFAR10_STD,
    CIFAR_RECORD_BYTES,
};
pub use dataset::{Dataset, ImageShape};
pub use error::DataError;
pub use gz::{decode_maybe_gzip, MAX_DECOMPRESSED_BYTES};
pub use idx::{
    load_idx_images, load_idx_labels, load_idx_pair, load_mnist_dir, mnist_dir_from_env,
    parse_idx_images, parse_idx_labels, IdxImages, MnistKind, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
    IDX_N_CLASSES,
};
pub use partition::{
    array_split_sizes, classes_per_agent, dirichlet, iid, shards, DirichletVariant, Partition,
    DIRICHLET_GROUP_SIZE, DIRICHLET_MAX_TRIES,
};
pub use summary::{AgentSummary, PartitionSummary, SummaryRow};
pub use synthetic::{synthetic, synthetic_train_test, train_test_split, SyntheticSpec};

/// Which split of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (`train-*` IDX files, `data_batch_1..5.bin`).
    Train,
    /// The test split (`t10k-*` IDX files, `test_batch.bin`).
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Result type of this module.
pub type DataResult<T> = Result<T, DataError>;
