//! Uniform parameter blocks, the host twins of the WGSL structs of the same name. Each is
//! declared through the `uniforms!` macro below, so its field names, types and
//! offsets are known at run time ([`Uniform::FIELDS`]); a host-only test checks them against
//! naga's layout of the shader struct.

use bytemuck::{Pod, Zeroable};

/// One field of a host uniform block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name (the WGSL member name).
    pub name: &'static str,
    /// Rust type name: `u32` or `f32` (the WGSL scalar type).
    pub ty: &'static str,
    /// Byte offset in the `#[repr(C)]` struct.
    pub offset: usize,
}

/// A `#[repr(C)]` twin of a WGSL uniform struct.
pub trait Uniform: Pod {
    /// The WGSL struct name.
    const NAME: &'static str;
    /// Every field in declaration order.
    const FIELDS: &'static [Field];
}

/// The layout of one host uniform block, for the layout test.
#[derive(Clone, Copy, Debug)]
pub struct UniformLayout {
    /// The WGSL struct name.
    pub name: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// Every field in declaration order.
    pub fields: &'static [Field],
}

macro_rules! uniforms {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ident),* $(,)? })*) => {
        $(
            $(#[$doc])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
            pub struct $name {
                $(pub $field: $ty),*
            }

            impl Uniform for $name {
                const NAME: &'static str = stringify!($name);
                const FIELDS: &'static [Field] = &[$(Field {
                    name: stringify!($field),
                    ty: stringify!($ty),
                    offset: std::mem::offset_of!($name, $field),
                }),*];
            }
        )*

        /// Every uniform block of the crate.
        pub const UNIFORMS: &[UniformLayout] = &[$(UniformLayout {
            name: <$name as Uniform>::NAME,
            size: std::mem::size_of::<$name>(),
            fields: <$name as Uniform>::FIELDS,
        }),*];
    };
}

uniforms! {
    /// `GatherParams` in gather.wgsl.
    GatherParams {
        rows: u32,
        dim: u32,
        n_samples: u32,
        plane: u32,
        mean0: f32,
        mean1: f32,
        mean2: f32,
        mean3: f32,
        inv_std0: f32,
        inv_std1: f32,
        inv_std2: f32,
        inv_std3: f32,
    }

    /// `DenseParams` in dense.wgsl (the activation is the pipeline constant `RELU`).
    DenseParams {
        n_jobs: u32,
        batch: u32,
        in_dim: u32,
        out_dim: u32,
        w_off: u32,
        b_off: u32,
        param_stride: u32,
        in_by_data: u32,
        first_job: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }

    /// `XentParams` in loss.wgsl.
    XentParams {
        n_jobs: u32,
        batch: u32,
        classes: u32,
        _pad0: u32,
    }

    /// `MixParams` in mix.wgsl.
    MixParams {
        rows: u32,
        len: u32,
        in_stride: u32,
        in_offset: u32,
        out_stride: u32,
        out_offset: u32,
        _pad0: u32,
        _pad1: u32,
    }

    /// `UpdateParams` in update.wgsl (axpby, local_step).
    UpdateParams {
        len: u32,
        nesterov: u32,
        _pad0: u32,
        _pad1: u32,
        a: f32,
        b: f32,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        _pad2: f32,
        _pad3: f32,
        _pad4: f32,
    }

    /// `AdamParams` in update.wgsl (adam_step, adam_moments).
    AdamParams {
        len: u32,
        stride: u32,
        _pad0: u32,
        _pad1: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bc1: f32,
        bc2: f32,
        weight_decay: f32,
        _pad2: f32,
    }

    /// `ReduceParams` in reduce.wgsl.
    ReduceParams {
        segments: u32,
        seg_len: u32,
        mode: u32,
        out_offset: u32,
        a_offset: u32,
        a_stride: u32,
        b_offset: u32,
        b_stride: u32,
    }

    /// `CompressParams` in compress.wgsl.
    CompressParams {
        segments: u32,
        seg_len: u32,
        offset: u32,
        stride: u32,
    }

    /// `PairDotsParams` in gram.wgsl.
    PairDotsParams {
        count: u32,
        n_tensors: u32,
        stride: u32,
        _pad0: u32,
    }

    /// `VectorParams` in vector.wgsl (fill, copy_strided, mean).
    VectorParams {
        count: u32,
        len: u32,
        src_offset: u32,
        src_stride: u32,
        src_step: u32,
        dst_offset: u32,
        dst_stride: u32,
        dst_step: u32,
        value: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }

    /// `ConvParams` in conv.wgsl.
    ConvParams {
        n_jobs: u32,
        batch: u32,
        in_c: u32,
        in_h: u32,
        in_w: u32,
        out_c: u32,
        out_h: u32,
        out_w: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        param_stride: u32,
        w_off: u32,
        b_off: u32,
        has_bias: u32,
        in_by_data: u32,
    }

    /// `PoolParams` in pool.wgsl.
    PoolParams {
        samples: u32,
        channels: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        window: u32,
        stride: u32,
        is_max: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }

    /// `NormParams` in norm.wgsl.
    NormParams {
        n_jobs: u32,
        batch: u32,
        channels: u32,
        plane: u32,
        groups: u32,
        gamma_off: u32,
        beta_off: u32,
        param_stride: u32,
        is_evo: u32,
        eps: f32,
        _pad0: u32,
        _pad1: u32,
    }

    /// `ProbeParams` in probe.wgsl (benchmarks).
    ProbeParams {
        len: u32,
        iters: u32,
        _pad0: u32,
        _pad1: u32,
    }
}
