//! Model specification: a multilayer perceptron, its parameter layout in agent-major slabs,
//! seeded initialization, and ([`pass`]) its forward/backward over job lists.

pub mod pass;

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Floats per slab are padded to a multiple of this (256 bytes, wgpu's default storage-buffer
/// offset alignment), so every agent's slab starts 16-byte aligned for the vec4 kernels. The GPU
/// backend binds whole buffers and reaches a slab by its offset; the padding would also let a
/// slab be bound as its own sub-range, which nothing does today.
pub const SLAB_ALIGN: usize = 64;

/// Where one dense layer's tensors sit inside a parameter slab (PyTorch order: weight, then bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseLayer {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Offset of the row-major [out, in] weight matrix within the slab.
    pub w_off: usize,
    /// Offset of the bias vector within the slab.
    pub b_off: usize,
    /// Whether a ReLU follows the layer (all but the last).
    pub relu: bool,
}

/// One tensor of the parameter vector: (offset, length), for per-tensor operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Offset within the slab.
    pub offset: usize,
    /// Number of scalars.
    pub len: usize,
}

/// A multilayer perceptron: dense layers with ReLU between them, logits out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mlp {
    sizes: Vec<usize>,
    layers: Vec<DenseLayer>,
    n_params: usize,
}

impl Mlp {
    /// Builds an MLP from its layer widths, input first (e.g. `[784, 128, 10]`).
    pub fn new(sizes: &[usize]) -> Result<Self> {
        let spec = sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-");
        if sizes.len() < 2 {
            return Err(Error::ModelSpec {
                spec,
                reason: "needs at least an input and an output width".into(),
            });
        }
        if sizes.contains(&0) {
            return Err(Error::ModelSpec {
                spec,
                reason: "layer widths must be positive".into(),
            });
        }
        let mut layers = Vec::new();
        let mut off = 0usize;
        for (k, w) in sizes.windows(2).enumerate() {
            let (in_dim, out_dim) = (w[0], w[1]);
            let layer = DenseLayer {
                in_dim,
                out_dim,
                w_off: off,
                b_off: off + in_dim * out_dim,
                relu: k + 2 < sizes.len(),
            };
            off = layer.b_off + out_dim;
            layers.push(layer);
        }
        if off > u32::MAX as usize / 2 {
            return Err(Error::ModelSpec {
                spec,
                reason: format!("{off} parameters is more than 32-bit indexing allows"),
            });
        }
        Ok(Mlp {
            sizes: sizes.to_vec(),
            layers,
            n_params: off,
        })
    }

    /// Parses a spec such as `mlp:784-128-10` or `784-128-10`.
    pub fn parse(spec: &str) -> Result<Self> {
        let body = spec.strip_prefix("mlp:").unwrap_or(spec);
        let sizes: std::result::Result<Vec<usize>, _> =
            body.split('-').map(|s| s.trim().parse::<usize>()).collect();
        match sizes {
            Ok(s) => Mlp::new(&s),
            Err(_) => Err(Error::ModelSpec {
                spec: spec.into(),
                reason: "expected widths separated by '-', e.g. mlp:784-128-10".into(),
            }),
        }
    }

    /// Layer widths, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The dense layers in forward order.
    pub fn layers(&self) -> &[DenseLayer] {
        &self.layers
    }

    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }

    /// Number of classes (output width).
    pub fn classes(&self) -> usize {
        *self.sizes.last().expect("at least two sizes")
    }

    /// Trainable scalars per agent (d).
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Floats per agent slab: d padded to [`SLAB_ALIGN`].
    pub fn stride(&self) -> usize {
        self.n_params.div_ceil(SLAB_ALIGN) * SLAB_ALIGN
    }

    /// The tensor table (weight and bias of every layer), in parameter order.
    pub fn tensors(&self) -> Vec<Tensor> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    Tensor {
                        offset: l.w_off,
                        len: l.in_dim * l.out_dim,
                    },
                    Tensor {
                        offset: l.b_off,
                        len: l.out_dim,
                    },
                ]
            })
            .collect()
    }

    /// Multiply-adds of one forward pass over one sample.
    pub fn forward_macs(&self) -> usize {
        self.layers.iter().map(|l| l.in_dim * l.out_dim).sum()
    }

    /// Initial parameters for `agents` agents, agent-major (agents × stride, padding zero).
    ///
    /// PyTorch's default for linear layers: weights and biases uniform in ±1/√in. With
    /// `identical`, every agent gets the same draw; otherwise agent i draws from its own stream.
    pub fn init(&self, agents: usize, seed: u64, identical: bool) -> Vec<f32> {
        let stride = self.stride();
        let mut out = vec![0.0f32; agents * stride];
        for a in 0..agents {
            let stream = if identical { 0 } else { a as u64 };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            let slab = &mut out[a * stride..a * stride + self.n_params];
            for l in &self.layers {
                let bound = 1.0 / (l.in_dim as f32).sqrt();
                for v in &mut slab[l.w_off..l.b_off + l.out_dim] {
                    *v = rng.random_range(-bound..bound);
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Mlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        write!(f, "mlp:{} ({} parameters)", s.join("-"), self.n_params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pytorch_order_and_padded() {
        let m = Mlp::parse("mlp:5-3-2").unwrap();
        assert_eq!(m.n_params(), 5 * 3 + 3 + 3 * 2 + 2);
        assert_eq!(m.stride(), 64);
        let l = m.layers();
        assert_eq!((l[0].w_off, l[0].b_off, l[0].relu), (0, 15, true));
        assert_eq!((l[1].w_off, l[1].b_off, l[1].relu), (18, 24, false));
        let t = m.tensors();
        assert_eq!(t.iter().map(|t| t.len).sum::<usize>(), m.n_params());
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        for s in ["", "mlp:10", "mlp:10-0-2", "mlp:a-b", "784--10"] {
            assert!(matches!(Mlp::parse(s), Err(Error::ModelSpec { .. })), "{s}");
        }
    }

    #[test]
    fn init_is_seeded_bounded_and_identical_on_request() {
        let m = Mlp::parse("4-3-2").unwrap();
        let a = m.init(3, 7, true);
        let b = m.init(3, 7, false);
        let s = m.stride();
        assert_eq!(a[..s], a[s..2 * s]);
        assert_ne!(b[..s], b[s..2 * s]);
        assert_eq!(a[..s], b[..s], "agent 0 uses stream 0 in both modes");
        assert_eq!(a, m.init(3, 7, true));
        assert!(a[..12].iter().all(|v| v.abs() <= 0.5) && a[12..15].iter().any(|&v| v != 0.0));
        assert!(a[m.n_params()..s].iter().all(|&v| v == 0.0));
    }
}
