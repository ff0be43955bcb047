//! The kernel catalogue: each kernel's shader file, entry point, bindings, workgroup size and
//! variants (in [`Kernel::def`], the one place that lists them), how a variant's WGSL is put
//! together ([`compose`]), and a cache of compiled pipelines.
//!
//! A variant is compiled from one source: a short header chooses the element type `V` of the
//! shader's vector views (`f32` or `vec4<f32>`, a textual template since WGSL overrides cannot
//! change types), the shared prelude (shaders/prelude.wgsl) follows, then the shader file; the
//! activation is a pipeline-overridable constant (`RELU`).

use std::collections::HashMap;

/// The prelude compiled in front of every shader file (shared helpers such as `linear_id`).
pub const PRELUDE: (&str, &str) = (
    "prelude.wgsl",
    include_str!("../../../shaders/prelude.wgsl"),
);

/// Every kernel WGSL file of the crate as (file name, source), without prelude and header; see
/// [`compose`] for what is compiled.
pub const SHADERS: &[(&str, &str)] = &[
    ("gather.wgsl", include_str!("../../../shaders/gather.wgsl")),
    ("dense.wgsl", include_str!("../../../shaders/dense.wgsl")),
    ("loss.wgsl", include_str!("../../../shaders/loss.wgsl")),
    ("mix.wgsl", include_str!("../../../shaders/mix.wgsl")),
    ("update.wgsl", include_str!("../../../shaders/update.wgsl")),
    ("reduce.wgsl", include_str!("../../../shaders/reduce.wgsl")),
    (
        "compress.wgsl",
        include_str!("../../../shaders/compress.wgsl"),
    ),
    ("gram.wgsl", include_str!("../../../shaders/gram.wgsl")),
    ("vector.wgsl", include_str!("../../../shaders/vector.wgsl")),
    ("probe.wgsl", include_str!("../../../shaders/probe.wgsl")),
    ("conv.wgsl", include_str!("../../../shaders/conv.wgsl")),
    ("pool.wgsl", include_str!("../../../shaders/pool.wgsl")),
    ("norm.wgsl", include_str!("../../../shaders/norm.wgsl")),
];

/// Element width of a kernel variant: what the WGSL alias `V` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// `V = f32`.
    Scalar,
    /// `V = vec4<f32>`: four consecutive floats per element (rows aligned to 16 bytes).
    Vec4,
}

impl Width {
    /// Floats per element.
    pub fn lanes(self) -> usize {
        match self {
            Width::Scalar => 1,
            Width::Vec4 => 4,
        }
    }

    /// The variant header: `V`, its lane count `VW`, `vdot` (the product-sum of two V) and
    /// `vlane` (lane c of a V).
    fn header(self) -> &'static str {
        match self {
            Width::Scalar => {
                "alias V = f32;\nconst VW: u32 = 1u;\n\
                 fn vdot(a: V, b: V) -> f32 {\n    return a * b;\n}\n\
                 fn vlane(v: V, c: u32) -> f32 {\n    return v;\n}\n"
            }
            Width::Vec4 => {
                "alias V = vec4<f32>;\nconst VW: u32 = 4u;\n\
                 fn vdot(a: V, b: V) -> f32 {\n    return dot(a, b);\n}\n\
                 fn vlane(v: V, c: u32) -> f32 {\n    return v[c];\n}\n"
            }
        }
    }
}

/// The WGSL compiled for a shader file at a width: variant header, prelude, file. None when the
/// file is not catalogued.
pub fn compose(file: &str, width: Width) -> Option<String> {
    let src = SHADERS.iter().find(|(f, _)| *f == file)?.1;
    Some(format!("{}\n{}\n{}", width.header(), PRELUDE.1, src))
}

/// One compiled form of a kernel: its width and, for shaders that declare it, the value of the
/// pipeline-overridable constant `RELU`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Element width.
    pub width: Width,
    /// `RELU` (None: the shader's default).
    pub relu: Option<bool>,
}

impl Variant {
    /// Scalar, no overrides.
    pub const SCALAR: Variant = Variant {
        width: Width::Scalar,
        relu: None,
    };
    /// Vec4, no overrides.
    pub const VEC4: Variant = Variant {
        width: Width::Vec4,
        relu: None,
    };

    /// The same variant with `RELU` set.
    pub const fn relu(self, on: bool) -> Variant {
        Variant {
            relu: Some(on),
            ..self
        }
    }

    /// The pipeline-overridable constants this variant sets, as wgpu and naga take them.
    pub fn constants(self) -> Vec<(&'static str, f64)> {
        self.relu
            .map(|on| ("RELU", if on { 1.0 } else { 0.0 }))
            .into_iter()
            .collect()
    }
}

/// How a kernel binds a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

use Access::{Read as R, ReadWrite as W};

/// Everything the host needs to know about one compute entry point.
#[derive(Clone, Copy, Debug)]
pub struct KernelDef {
    /// Shader file in shaders/.
    pub file: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// The WGSL struct bound as the uniform block at binding 0.
    pub uniform: &'static str,
    /// Storage bindings 1.. in order (all in group 0).
    pub storage: &'static [Access],
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// The variants the host compiles.
    pub variants: &'static [Variant],
}

/// One compute entry point of the training kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// gather.wgsl `gather` (scalar or vec4: one feature or one word of four per invocation).
    Gather,
    /// dense.wgsl `dense_forward` (scalar or vec4, with or without ReLU).
    DenseForward,
    /// dense.wgsl `dense_backward_data` (scalar, with or without the ReLU mask).
    DenseBackwardData,
    /// dense.wgsl `dense_backward_weights` (scalar or vec4).
    DenseBackwardWeights,
    /// loss.wgsl `softmax_xent`.
    SoftmaxXent,
    /// mix.wgsl `mix` (scalar or vec4; four elements of a row per invocation).
    Mix,
    /// update.wgsl `axpby` (scalar or vec4).
    Axpby,
    /// update.wgsl `local_step` (scalar or vec4).
    LocalStep,
    /// update.wgsl `adam_step`.
    AdamStep,
    /// update.wgsl `adam_moments`.
    AdamMoments,
    /// reduce.wgsl `reduce`.
    Reduce,
    /// vector.wgsl `fill`.
    Fill,
    /// vector.wgsl `copy_strided`.
    CopyStrided,
    /// vector.wgsl `mean`.
    Mean,
    /// compress.wgsl `sign_compress`.
    SignCompress,
    /// gram.wgsl `pair_dots`.
    PairDots,
    /// dense.wgsl `dense_forward_wide` (8 × 8 tiles: the CPU-rasteriser form of
    /// `dense_forward`).
    DenseForwardWide,
    /// dense.wgsl `dense_backward_weights_wide` (8 × 8 tiles: the CPU-rasteriser form of
    /// `dense_backward_weights`).
    DenseBackwardWeightsWide,
    /// dense.wgsl `dense_backward_data_wide` (8 × 8 tiles: the CPU-rasteriser form of
    /// `dense_backward_data`; scalar or vec4 weight loads).
    DenseBackwardDataWide,
    /// conv.wgsl `conv_forward`.
    ConvForward,
    /// conv.wgsl `conv_backward_data`.
    ConvBackwardData,
    /// conv.wgsl `conv_backward_weights`.
    ConvBackwardWeights,
    /// pool.wgsl `pool`.
    Pool,
    /// pool.wgsl `pool_backward`.
    PoolBackward,
    /// vector.wgsl `relu`.
    Relu,
    /// vector.wgsl `relu_backward`.
    ReluBackward,
    /// norm.wgsl `norm_forward` (one workgroup per sample and group).
    NormForward,
    /// norm.wgsl `norm_backward` (one workgroup per job and group).
    NormBackward,
}

const SCALAR: &[Variant] = &[Variant::SCALAR];
const WIDTHS: &[Variant] = &[Variant::SCALAR, Variant::VEC4];

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 28] = [
        Kernel::Gather,
        Kernel::DenseForward,
        Kernel::DenseBackwardData,
        Kernel::DenseBackwardWeights,
        Kernel::SoftmaxXent,
        Kernel::Mix,
        Kernel::Axpby,
        Kernel::LocalStep,
        Kernel::AdamStep,
        Kernel::AdamMoments,
        Kernel::Reduce,
        Kernel::Fill,
        Kernel::CopyStrided,
        Kernel::Mean,
        Kernel::SignCompress,
        Kernel::PairDots,
        Kernel::DenseForwardWide,
        Kernel::DenseBackwardWeightsWide,
        Kernel::DenseBackwardDataWide,
        Kernel::ConvForward,
        Kernel::ConvBackwardData,
        Kernel::ConvBackwardWeights,
        Kernel::Pool,
        Kernel::PoolBackward,
        Kernel::Relu,
        Kernel::ReluBackward,
        Kernel::NormForward,
        Kernel::NormBackward,
    ];

    /// The kernel's file, entry point, bindings, workgroup size and variants.
    pub fn def(self) -> &'static KernelDef {
        &DEFS[self as usize]
    }

    /// Whether the host sizes the kernel's grid in workgroups (the reductions: one per
    /// segment) rather than in invocations.
    pub fn counts_workgroups(self) -> bool {
        matches!(
            self,
            Kernel::Reduce
                | Kernel::SignCompress
                | Kernel::PairDots
                | Kernel::NormForward
                | Kernel::NormBackward
        )
    }
}

const fn k(
    file: &'static str,
    entry: &'static str,
    uniform: &'static str,
    storage: &'static [Access],
    variants: &'static [Variant],
) -> KernelDef {
    KernelDef {
        file,
        entry,
        uniform,
        storage,
        workgroup_size: 64,
        variants,
    }
}

const DENSE: &[Access] = &[R, R, R, R, W];
const RELU: &[Variant] = &[
    Variant::SCALAR.relu(false),
    Variant::SCALAR.relu(true),
    Variant::VEC4.relu(false),
    Variant::VEC4.relu(true),
];
const RELU_SCALAR: &[Variant] = &[Variant::SCALAR.relu(false), Variant::SCALAR.relu(true)];

/// The catalogue, in the order of [`Kernel`]'s variants (a unit test checks it).
static DEFS: [KernelDef; 28] = [
    k(
        "gather.wgsl",
        "gather",
        "GatherParams",
        &[R, R, R, W, W],
        WIDTHS,
    ),
    k("dense.wgsl", "dense_forward", "DenseParams", DENSE, RELU),
    k(
        "dense.wgsl",
        "dense_backward_data",
        "DenseParams",
        DENSE,
        RELU_SCALAR,
    ),
    k(
        "dense.wgsl",
        "dense_backward_weights",
        "DenseParams",
        DENSE,
        WIDTHS,
    ),
    k(
        "loss.wgsl",
        "softmax_xent",
        "XentParams",
        &[R, R, R, W, W],
        SCALAR,
    ),
    k("mix.wgsl", "mix", "MixParams", &[R, R, R, R, W], WIDTHS),
    k("update.wgsl", "axpby", "UpdateParams", &[R, W], WIDTHS),
    k(
        "update.wgsl",
        "local_step",
        "UpdateParams",
        &[W, R, W],
        WIDTHS,
    ),
    k(
        "update.wgsl",
        "adam_step",
        "AdamParams",
        &[W, R, R, R],
        SCALAR,
    ),
    k(
        "update.wgsl",
        "adam_moments",
        "AdamParams",
        &[R, R, W, W],
        SCALAR,
    ),
    KernelDef {
        workgroup_size: 256,
        ..k("reduce.wgsl", "reduce", "ReduceParams", &[R, R, W], SCALAR)
    },
    k("vector.wgsl", "fill", "VectorParams", &[W], SCALAR),
    k(
        "vector.wgsl",
        "copy_strided",
        "VectorParams",
        &[R, W],
        SCALAR,
    ),
    k("vector.wgsl", "mean", "VectorParams", &[R, W], SCALAR),
    KernelDef {
        workgroup_size: 256,
        ..k(
            "compress.wgsl",
            "sign_compress",
            "CompressParams",
            &[W, W],
            SCALAR,
        )
    },
    KernelDef {
        workgroup_size: 256,
        ..k(
            "gram.wgsl",
            "pair_dots",
            "PairDotsParams",
            &[R, R, R, W],
            SCALAR,
        )
    },
    k(
        "dense.wgsl",
        "dense_forward_wide",
        "DenseParams",
        DENSE,
        RELU,
    ),
    k(
        "dense.wgsl",
        "dense_backward_weights_wide",
        "DenseParams",
        DENSE,
        WIDTHS,
    ),
    k(
        "dense.wgsl",
        "dense_backward_data_wide",
        "DenseParams",
        DENSE,
        RELU,
    ),
    // The convolutional layers (issue 13).
    layer("conv.wgsl", "conv_forward", "ConvParams", CONV, 64),
    layer("conv.wgsl", "conv_backward_data", "ConvParams", CONV, 64),
    layer("conv.wgsl", "conv_backward_weights", "ConvParams", CONV, 64),
    layer("pool.wgsl", "pool", "PoolParams", &[R, W], 64),
    layer("pool.wgsl", "pool_backward", "PoolParams", &[R, W, R], 64),
    layer("vector.wgsl", "relu", "VectorParams", &[R, W], 64),
    layer(
        "vector.wgsl",
        "relu_backward",
        "VectorParams",
        &[R, W, R],
        64,
    ),
    layer(
        "norm.wgsl",
        "norm_forward",
        "NormParams",
        &[R, R, R, W],
        256,
    ),
    layer(
        "norm.wgsl",
        "norm_backward",
        "NormParams",
        NORM_BACKWARD,
        256,
    ),
];

/// conv.wgsl's bindings: jobs, two operands, the output.
const CONV: &[Access] = &[R, R, R, W];
/// norm_backward's bindings: jobs, params, x, dx, dy, grads.
const NORM_BACKWARD: &[Access] = &[R, R, R, W, R, W];

/// A convolutional layer's kernel: scalar only, with its workgroup size.
const fn layer(
    file: &'static str,
    entry: &'static str,
    uniform: &'static str,
    storage: &'static [Access],
    workgroup_size: u32,
) -> KernelDef {
    KernelDef {
        workgroup_size,
        ..k(file, entry, uniform, storage, SCALAR)
    }
}

/// What a compiled pipeline is built from: the source (shader file and width), the entry point
/// and the pipeline-overridable constants (values as f64 bits, so the key hashes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    file: &'static str,
    width: Width,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

/// A compiled pipeline and its bind group layout.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Compiled shader modules and pipelines, built on first use.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<(&'static str, Width), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, Pipeline>,
}

impl PipelineCache {
    /// The pipeline of a kernel variant, compiled on first request.
    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        def: &KernelDef,
        variant: Variant,
    ) -> &Pipeline {
        let constants = variant.constants();
        let key = PipelineKey {
            file: def.file,
            width: variant.width,
            entry: def.entry,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        let modules = &mut self.modules;
        self.pipelines.entry(key).or_insert_with(|| {
            let module = modules.entry((def.file, variant.width)).or_insert_with(|| {
                let src = compose(def.file, variant.width).expect("kernel files are catalogued");
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(def.file),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                })
            });
            build(device, module, def, &constants)
        })
    }
}

/// A buffer binding of the layout: uniform at 0, then storage.
fn layout_entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn build(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    def: &KernelDef,
    constants: &[(&str, f64)],
) -> Pipeline {
    let entries: Vec<_> = std::iter::once(layout_entry(0, wgpu::BufferBindingType::Uniform))
        .chain(def.storage.iter().zip(1..).map(|(access, binding)| {
            let read_only = *access == Access::Read;
            layout_entry(binding, wgpu::BufferBindingType::Storage { read_only })
        }))
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(def.entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(def.entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(def.entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(def.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    });
    Pipeline { pipeline, layout }
}

/// The bind group of one dispatch: the uniform block (a range of `uniforms`) at binding 0 and
/// the storage buffers at 1.. in order.
pub(crate) fn bind_group(
    device: &wgpu::Device,
    pipeline: &Pipeline,
    label: &str,
    uniforms: wgpu::BufferBinding<'_>,
    storage: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<_> = std::iter::once(wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(uniforms),
    })
    .chain(
        storage
            .iter()
            .zip(1..)
            .map(|(b, binding)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            }),
    )
    .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.layout,
        entries: &entries,
    })
}

/// The grid for `groups` workgroups: one row when it fits the adapter's per-dimension limit, a
/// 2-D grid otherwise (kernels linearise it with `linear_id`); None when even that is too small.
pub(crate) fn grid(groups: u64, max_per_dim: u32) -> Option<[u32; 3]> {
    let max = max_per_dim as u64;
    let (gx, gy) = if groups <= max {
        (groups, 1)
    } else {
        (max, groups.div_ceil(max))
    };
    (gy <= max).then_some([gx as u32, gy as u32, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_follows_the_kernel_order() {
        for (i, k) in Kernel::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            // DenseForward -> dense_forward: each entry sits at its kernel's index.
            let mut snake = String::new();
            for c in format!("{k:?}").chars() {
                if c.is_uppercase() && !snake.is_empty() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(k.def().entry, snake);
        }
    }
}
