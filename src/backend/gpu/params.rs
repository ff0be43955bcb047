//! Uniform parameter blocks, the host twins of the WGSL structs of the same name.
//! A host-only test checks each against naga's layout of the shader struct.

use bytemuck::{Pod, Zeroable};

/// `GatherParams` in gather.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GatherParams {
    pub rows: u32,
    pub dim: u32,
    pub n_samples: u32,
    pub _pad0: u32,
    pub mean: f32,
    pub inv_std: f32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `DenseParams` in dense.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct DenseParams {
    pub n_jobs: u32,
    pub batch: u32,
    pub in_dim: u32,
    pub out_dim: u32,
    pub w_off: u32,
    pub b_off: u32,
    pub param_stride: u32,
    pub in_by_data: u32,
    pub relu: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// `XentParams` in loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct XentParams {
    pub n_jobs: u32,
    pub batch: u32,
    pub classes: u32,
    pub _pad0: u32,
}

/// `MixParams` in mix.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MixParams {
    pub rows: u32,
    pub len: u32,
    pub in_stride: u32,
    pub in_offset: u32,
    pub out_stride: u32,
    pub out_offset: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `UpdateParams` in update.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct UpdateParams {
    pub len: u32,
    pub nesterov: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub a: f32,
    pub b: f32,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub _pad2: f32,
    pub _pad3: f32,
    pub _pad4: f32,
}

/// `ReduceParams` in reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReduceParams {
    pub segments: u32,
    pub seg_len: u32,
    pub mode: u32,
    pub out_offset: u32,
    pub a_offset: u32,
    pub a_stride: u32,
    pub b_offset: u32,
    pub b_stride: u32,
}

/// `AdamParams` in adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamParams {
    pub len: u32,
    pub stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub weight_decay: f32,
    pub _pad2: f32,
}

/// `ProbeParams` in probe.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ProbeParams {
    pub len: u32,
    pub iters: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `VectorParams` in vector.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct VectorParams {
    pub count: u32,
    pub len: u32,
    pub src_offset: u32,
    pub src_stride: u32,
    pub src_step: u32,
    pub dst_offset: u32,
    pub dst_stride: u32,
    pub dst_step: u32,
    pub value: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Every (WGSL struct name, shader file, host size) pair, for the layout test.
pub const UNIFORMS: &[(&str, &str, usize)] = &[
    (
        "GatherParams",
        "gather.wgsl",
        std::mem::size_of::<GatherParams>(),
    ),
    (
        "DenseParams",
        "dense.wgsl",
        std::mem::size_of::<DenseParams>(),
    ),
    ("XentParams", "loss.wgsl", std::mem::size_of::<XentParams>()),
    ("MixParams", "mix.wgsl", std::mem::size_of::<MixParams>()),
    (
        "UpdateParams",
        "update.wgsl",
        std::mem::size_of::<UpdateParams>(),
    ),
    (
        "ReduceParams",
        "reduce.wgsl",
        std::mem::size_of::<ReduceParams>(),
    ),
    (
        "VectorParams",
        "vector.wgsl",
        std::mem::size_of::<VectorParams>(),
    ),
];
