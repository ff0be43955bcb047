//! # swarmgrad
//!
//! Decentralized learning on non-IID data, simulated on one GPU: n agents on a communication
//! graph, each with its own model and its own label-skewed slice of the data, run together in
//! batched WGSL kernels through wgpu (Vulkan, Metal, DX12, GL). Every kernel covers all agents in
//! one dispatch; algorithms are thin schedulers over the [`backend::Backend`] trait, which has a
//! GPU implementation ([`backend::gpu::GpuBackend`]) and an f64 CPU reference
//! ([`backend::reference::ReferenceBackend`]).
//!
//! The main job in a few lines — QGM on a ring of 4 agents with Dirichlet(1) label skew on the
//! built-in synthetic task, on the CPU reference (pass a [`backend::gpu::GpuBackend`] to run on a GPU):
//!
//! ```
//! use swarmgrad::{backend::reference::ReferenceBackend, train::{TrainConfig, Trainer}};
//! let config = TrainConfig {
//!     algo: "qgm".parse()?,
//!     momentum: 0.9,
//!     agents: 4,
//!     steps: Some(30),
//!     synthetic_train: 2_000,
//!     ..Default::default()
//! };
//! let mut trainer = Trainer::new(config, Box::new(ReferenceBackend::new()))?;
//! let summary = trainer.run(|_step, _total, _row| {})?;
//! assert!(summary.last.consensus_acc > 0.1, "better than chance");
//! println!("{:.3} after {} steps", summary.last.consensus_acc, summary.steps);
//! # Ok::<(), swarmgrad::Error>(())
//! ```
//!
//! Layout, from the bottom up: [`backend`] (the operations, with the f64 reference and the wgpu
//! backend inside), [`model`] (models — MLPs, CNNs such as `cnn5`, `resnet20` and `lenet5`,
//! custom layer lists — their parameter layout, and their forward/backward over job lists),
//! [`objective`] (gradient sources: minibatches, toy quadratics), [`algo`] (one module per
//! algorithm), [`cli`] (the command lines of the examples),
//! [`graph`], [`data`], [`train`] (trainer, schedules, evaluation, metrics, CLIs), [`toy`].

#![warn(missing_docs)]

pub mod algo;
pub mod backend;
pub mod cli;
pub mod comm;
pub mod data;
pub mod dist;
pub mod error;
pub mod graph;
pub mod model;
pub mod objective;
pub mod sparse;
pub mod study;
pub mod toy;
pub mod train;

pub use error::{Error, Result};
