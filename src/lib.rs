//! # swarmgrad
//!
//! Decentralized learning on non-IID data, simulated on one GPU: n agents on a communication
//! graph, each with its own model and its own label-skewed slice of the data, run together in
//! batched WGSL kernels through wgpu (Vulkan, Metal, DX12, GL). Every kernel covers all agents in
//! one dispatch; algorithms are thin schedulers over the [`backend::Backend`] trait, which has a
//! GPU implementation ([`gpu::GpuBackend`]) and a CPU reference ([`cpu::CpuBackend`]).
//!
//! ```no_run
//! use swarmgrad::{backend::Backend, cpu::CpuBackend, model::Mlp};
//! let model = Mlp::parse("mlp:32-64-10")?;
//! let mut be = CpuBackend::new();
//! let params = be.alloc(swarmgrad::backend::BufKind::F32, 8 * model.stride(), "params")?;
//! be.write_f32(params, 0, &model.init(8, 42, true))?;
//! # Ok::<(), swarmgrad::Error>(())
//! ```

pub mod algo;
pub mod backend;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod pass;
pub mod sparse;
pub mod toy;
pub mod train;

pub use error::{Error, Result};
