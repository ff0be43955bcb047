//! The wgpu backend: adapter choice, the kernel catalogue and pipeline cache, and a recorder that
//! turns a step's operations into one command buffer and one submit. The benchmarks' device
//! probes live apart from it, in [`probe`].

mod backend;
mod context;
mod kernels;
// The fields mirror the WGSL uniform structs of the same names, where they are documented.
#[allow(missing_docs)]
pub mod params;
pub mod probe;
mod timer;

pub use backend::{GpuBackend, KernelFamily};
pub use context::{AdapterChoice, GpuContext};
pub use kernels::{compose, Access, Kernel, KernelDef, Variant, Width, PRELUDE, SHADERS};
pub use probe::{Ceilings, Probe, Spread};
