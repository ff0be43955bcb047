//! The kernel catalogue: each kernel's shader file, entry point, binding list and workgroup size,
//! and a cache of compiled pipelines.

use std::collections::HashMap;

/// Every WGSL file of the crate as (file name, source), for validation and translation tests.
pub const SHADERS: &[(&str, &str)] = &[
    ("gather.wgsl", include_str!("../../../shaders/gather.wgsl")),
    ("dense.wgsl", include_str!("../../../shaders/dense.wgsl")),
    ("loss.wgsl", include_str!("../../../shaders/loss.wgsl")),
    ("mix.wgsl", include_str!("../../../shaders/mix.wgsl")),
    ("update.wgsl", include_str!("../../../shaders/update.wgsl")),
    ("reduce.wgsl", include_str!("../../../shaders/reduce.wgsl")),
    ("probe.wgsl", include_str!("../../../shaders/probe.wgsl")),
    ("adam.wgsl", include_str!("../../../shaders/adam.wgsl")),
    ("vector.wgsl", include_str!("../../../shaders/vector.wgsl")),
];

/// How a kernel binds a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

use Access::{Read as R, ReadWrite as W};

/// One compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// gather.wgsl `gather`.
    Gather,
    /// dense.wgsl `dense_forward`.
    DenseForward,
    /// dense.wgsl `dense_forward_vec4` (rows aligned to 16 bytes).
    DenseForwardVec4,
    /// dense.wgsl `dense_backward_data`.
    DenseBackwardData,
    /// dense.wgsl `dense_backward_weights_vec4` (input rows aligned to 16 bytes).
    DenseBackwardWeightsVec4,
    /// dense.wgsl `dense_backward_weights`.
    DenseBackwardWeights,
    /// loss.wgsl `softmax_xent`.
    SoftmaxXent,
    /// mix.wgsl `mix`.
    Mix,
    /// mix.wgsl `mix_vec4` (vectors aligned to 16 bytes).
    MixVec4,
    /// update.wgsl `axpby`.
    Axpby,
    /// update.wgsl `axpby_vec4` (length a multiple of 4).
    AxpbyVec4,
    /// update.wgsl `local_step`.
    LocalStep,
    /// update.wgsl `local_step_vec4` (length a multiple of 4).
    LocalStepVec4,
    /// reduce.wgsl `reduce`.
    Reduce,
    /// adam.wgsl `adam_step`.
    AdamStep,
    /// adam.wgsl `adam_moments`.
    AdamMoments,
    /// vector.wgsl `fill`.
    Fill,
    /// vector.wgsl `copy_strided`.
    CopyStrided,
    /// vector.wgsl `mean`.
    Mean,
    /// probe.wgsl `peak_fma` (benchmarks: compute ceiling).
    ProbeFma,
    /// probe.wgsl `stream` (benchmarks: bandwidth ceiling).
    ProbeStream,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 21] = [
        Kernel::Gather,
        Kernel::DenseForward,
        Kernel::DenseForwardVec4,
        Kernel::DenseBackwardData,
        Kernel::DenseBackwardWeights,
        Kernel::DenseBackwardWeightsVec4,
        Kernel::SoftmaxXent,
        Kernel::Mix,
        Kernel::MixVec4,
        Kernel::Axpby,
        Kernel::AxpbyVec4,
        Kernel::LocalStep,
        Kernel::LocalStepVec4,
        Kernel::Reduce,
        Kernel::AdamStep,
        Kernel::AdamMoments,
        Kernel::Fill,
        Kernel::CopyStrided,
        Kernel::Mean,
        Kernel::ProbeFma,
        Kernel::ProbeStream,
    ];

    /// (shader file, entry point).
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Gather => ("gather.wgsl", "gather"),
            Kernel::DenseForward => ("dense.wgsl", "dense_forward"),
            Kernel::DenseForwardVec4 => ("dense.wgsl", "dense_forward_vec4"),
            Kernel::DenseBackwardData => ("dense.wgsl", "dense_backward_data"),
            Kernel::DenseBackwardWeights => ("dense.wgsl", "dense_backward_weights"),
            Kernel::DenseBackwardWeightsVec4 => ("dense.wgsl", "dense_backward_weights_vec4"),
            Kernel::SoftmaxXent => ("loss.wgsl", "softmax_xent"),
            Kernel::Mix => ("mix.wgsl", "mix"),
            Kernel::MixVec4 => ("mix.wgsl", "mix_vec4"),
            Kernel::Axpby => ("update.wgsl", "axpby"),
            Kernel::AxpbyVec4 => ("update.wgsl", "axpby_vec4"),
            Kernel::LocalStep => ("update.wgsl", "local_step"),
            Kernel::LocalStepVec4 => ("update.wgsl", "local_step_vec4"),
            Kernel::Reduce => ("reduce.wgsl", "reduce"),
            Kernel::AdamStep => ("adam.wgsl", "adam_step"),
            Kernel::AdamMoments => ("adam.wgsl", "adam_moments"),
            Kernel::Fill => ("vector.wgsl", "fill"),
            Kernel::CopyStrided => ("vector.wgsl", "copy_strided"),
            Kernel::Mean => ("vector.wgsl", "mean"),
            Kernel::ProbeFma => ("probe.wgsl", "peak_fma"),
            Kernel::ProbeStream => ("probe.wgsl", "stream"),
        }
    }

    /// Storage bindings 1.. in order (binding 0 is always the uniform block).
    pub(crate) fn storage(self) -> &'static [Access] {
        match self {
            Kernel::Gather => &[R, R, R, W, W],
            Kernel::DenseForward
            | Kernel::DenseForwardVec4
            | Kernel::DenseBackwardData
            | Kernel::DenseBackwardWeights
            | Kernel::DenseBackwardWeightsVec4 => &[R, R, R, R, W],
            Kernel::SoftmaxXent => &[R, R, R, W, W],
            Kernel::Mix | Kernel::MixVec4 => &[R, R, R, R, W],
            Kernel::Axpby | Kernel::AxpbyVec4 => &[R, W],
            Kernel::LocalStep | Kernel::LocalStepVec4 => &[W, R, W],
            Kernel::Reduce => &[R, R, W],
            Kernel::AdamStep => &[W, R, R, R],
            Kernel::AdamMoments => &[R, R, W, W],
            Kernel::Fill => &[W],
            Kernel::CopyStrided | Kernel::Mean => &[R, W],
            Kernel::ProbeFma | Kernel::ProbeStream => &[R, W],
        }
    }

    /// Invocations per workgroup (the WGSL `WG` constant).
    pub(crate) fn workgroup_size(self) -> u32 {
        match self {
            Kernel::Reduce => 256,
            _ => 64,
        }
    }
}

/// Compiled pipelines and their bind group layouts, built on first use.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
}

impl PipelineCache {
    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        kernel: Kernel,
    ) -> &(wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let (file, entry) = kernel.source();
        let modules = &mut self.modules;
        self.pipelines.entry(kernel).or_insert_with(|| {
            let module = modules.entry(file).or_insert_with(|| {
                let src = SHADERS
                    .iter()
                    .find(|(f, _)| *f == file)
                    .expect("catalogued")
                    .1;
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(file),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                })
            });
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }];
            for (k, access) in kernel.storage().iter().enumerate() {
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: k as u32 + 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *access == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
            }
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(entry),
                entries: &entries,
            });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            (pipeline, bgl)
        })
    }
}
