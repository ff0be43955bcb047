//! Training: algorithms written once against the backend trait, learning-rate schedules,
//! minibatch sampling, evaluation, metrics and plots, the trainer and the main job's CLI.

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod metrics;
pub mod run_dir;
pub mod schedule;
mod sharded;
pub mod trainer;
pub mod watch;

pub use crate::algo::{algorithm_names, Algorithm};
pub use crate::objective::sampler::{Sampler, SamplerState};
pub use config::{DatasetKind, TrainConfig};
pub use eval::EvalResult;
pub use metrics::MetricsRow;
pub use schedule::LrSchedule;
pub use trainer::{Summary, Trainer};
