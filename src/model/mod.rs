//! Models: a stack of layers (dense, convolution, pooling, ReLU, GroupNorm/EvoNorm-S0,
//! residual blocks) with its parameter layout in agent-major slabs, seeded initialization,
//! parameter and FLOP counts, and ([`pass`]) its forward/backward over job lists.
//!
//! A [`Model`] is built from a [`ModelSpec`] (the `--model` text, see [`spec`]) and the input
//! geometry of the data. It is a list of [`Node`]s in forward order, each reading the data or an
//! earlier node's output; residual blocks are the only nodes with two inputs ([`Layer::Add`]).
//! Parameters follow the nodes in PyTorch's order (a convolution's weight then bias, a norm's
//! γ then β, a dense layer's weight then bias), and each agent's slab is padded to
//! [`SLAB_ALIGN`].
//!
//! There is no BatchNorm: its running statistics are state that is not a parameter, averaged or
//! not across agents in ways that change the algorithm, and its batch statistics couple the
//! samples of a minibatch; decentralised training with non-IID data breaks both. The NGM and
//! RelaySGD experiments use EvoNorm-S0 (per-sample group statistics) or no normalisation, which
//! is what this crate provides (plus GroupNorm).

pub mod pass;
pub mod spec;

use crate::backend::{ConvLayer, ImageShape, NormKind, NormLayer, PoolKind, PoolLayer};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
pub use spec::{ModelSpec, Token, NAMED_MODELS};

/// Floats per slab are padded to a multiple of this (256 bytes, wgpu's default storage-buffer
/// offset alignment), so every agent's slab starts 16-byte aligned for the vec4 kernels. The GPU
/// backend binds whole buffers and reaches a slab by its offset; the padding would also let a
/// slab be bound as its own sub-range, which nothing does today.
pub const SLAB_ALIGN: usize = 64;

/// ε of the normalisation layers (NGM's EvoNorm-S0 and PyTorch's GroupNorm use 1e-5).
pub const NORM_EPS: f64 = 1e-5;

/// Where one dense layer's tensors sit inside a parameter slab (PyTorch order: weight, then bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DenseLayer {
    /// Input width.
    pub in_dim: usize,
    /// Output width.
    pub out_dim: usize,
    /// Offset of the row-major [out, in] weight matrix within the slab.
    pub w_off: usize,
    /// Offset of the bias vector within the slab.
    pub b_off: usize,
    /// Whether a ReLU follows the layer, fused into it (the MLP's hidden layers).
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

/// What one node computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    /// Dense layer on the flattened input (ReLU fused when `relu`).
    Dense(DenseLayer),
    /// 2-D convolution.
    Conv(ConvLayer),
    /// Max or average pooling.
    Pool(PoolLayer),
    /// ReLU over an image of this shape.
    Relu(ImageShape),
    /// GroupNorm or EvoNorm-S0.
    Norm(NormLayer),
    /// Residual sum: this node's input plus the output of node `other` (same shape), computed
    /// in place in the input's buffers (the input node feeds nothing else).
    Add {
        /// The shortcut's node.
        other: usize,
        /// Shape of both summands.
        shape: ImageShape,
    },
}

/// Where a node reads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The gathered minibatch.
    Data,
    /// The output of an earlier node.
    Node(usize),
}

/// One node of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// What it computes.
    pub layer: Layer,
    /// What it reads.
    pub input: Input,
    /// Shape of its output, per sample (dense outputs are `n × 1 × 1`).
    pub output: ImageShape,
}

/// A model: nodes in forward order, logits out of the last.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    name: String,
    input: ImageShape,
    nodes: Vec<Node>,
    n_params: usize,
    /// The MLP widths, for MLP specs (the evaluation's chunking uses them).
    sizes: Option<Vec<usize>>,
}

/// A flat vector of `n` values as an image.
pub fn flat(n: usize) -> ImageShape {
    ImageShape {
        channels: n,
        height: 1,
        width: 1,
    }
}

/// The input geometry of a dataset's samples: its image shape, or `1 × 1 × dim` for flat
/// features (the synthetic task).
pub fn input_shape(ds: &crate::data::Dataset) -> ImageShape {
    match ds.shape() {
        Some(s) => ImageShape {
            channels: s.channels,
            height: s.height,
            width: s.width,
        },
        None => ImageShape {
            channels: 1,
            height: 1,
            width: ds.dim(),
        },
    }
}

fn shape_text(s: ImageShape) -> String {
    format!("{}×{}×{}", s.channels, s.height, s.width)
}

/// Builds the node list while laying out the parameters.
struct Builder {
    name: String,
    nodes: Vec<Node>,
    off: usize,
    cur: Input,
    shape: ImageShape,
}

impl Builder {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::ModelSpec {
            spec: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn push(&mut self, layer: Layer, output: ImageShape) -> usize {
        self.nodes.push(Node {
            layer,
            input: self.cur,
            output,
        });
        let k = self.nodes.len() - 1;
        self.cur = Input::Node(k);
        self.shape = output;
        k
    }

    fn needs_node_input(&self, what: &str) -> Result<()> {
        if self.cur == Input::Data {
            return Err(self.err(format!(
                "{what} cannot be the first layer (it reads no job list); start with a \
                 convolution or a dense layer"
            )));
        }
        Ok(())
    }

    fn dense(&mut self, out_dim: usize, relu: bool) -> usize {
        let in_dim = self.shape.len();
        let l = DenseLayer {
            in_dim,
            out_dim,
            w_off: self.off,
            b_off: self.off + in_dim * out_dim,
            relu,
        };
        self.off = l.b_off + out_dim;
        self.push(Layer::Dense(l), flat(out_dim))
    }

    fn conv(
        &mut self,
        kernel: usize,
        channels: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Result<usize> {
        let layer = ConvLayer {
            input: self.shape,
            out_channels: channels,
            kernel,
            stride,
            pad,
            w_off: self.off,
            b_off: None,
        };
        let w_len = layer.weight_len();
        let layer = ConvLayer {
            b_off: bias.then_some(self.off + w_len),
            ..layer
        };
        let fits = kernel <= self.shape.height + 2 * pad && kernel <= self.shape.width + 2 * pad;
        if !fits || pad >= kernel {
            return Err(self.err(format!(
                "a {kernel}×{kernel} convolution with padding {pad} does not fit its {} input{}",
                shape_text(self.shape),
                if pad >= kernel {
                    " (padding must be below the kernel side)"
                } else {
                    ""
                }
            )));
        }
        self.off = layer.end();
        Ok(self.push(Layer::Conv(layer), layer.output()))
    }

    fn norm(&mut self, evo: bool, groups: usize) -> Result<usize> {
        self.needs_node_input("a normalisation")?;
        let c = self.shape.channels;
        if !c.is_multiple_of(groups) {
            return Err(self.err(format!(
                "{groups} groups do not divide the {c} channels of the {} input of a \
                 normalisation; give the groups (e.g. evo{g} or gn{g})",
                shape_text(self.shape),
                g = (1..=groups)
                    .rev()
                    .find(|g| c.is_multiple_of(*g))
                    .unwrap_or(1)
            )));
        }
        let l = NormLayer {
            kind: if evo {
                NormKind::EvoS0
            } else {
                NormKind::Group
            },
            image: self.shape,
            groups,
            eps: NORM_EPS,
            gamma_off: self.off,
            beta_off: self.off + c,
        };
        self.off += 2 * c;
        Ok(self.push(Layer::Norm(l), self.shape))
    }

    fn pool(&mut self, avg: bool, window: Option<usize>, stride: Option<usize>) -> Result<usize> {
        self.needs_node_input("pooling")?;
        let s = self.shape;
        let (window, stride) = match window {
            Some(w) => (w, stride.unwrap_or(w)),
            None if s.height == s.width => (s.height, 1),
            None => {
                return Err(self.err(format!(
                    "global average pooling needs a square image, not {}",
                    shape_text(s)
                )))
            }
        };
        if window > s.height || window > s.width {
            return Err(self.err(format!(
                "a {window}×{window} pooling window does not fit its {} input",
                shape_text(s)
            )));
        }
        let l = PoolLayer {
            kind: if avg { PoolKind::Avg } else { PoolKind::Max },
            input: s,
            window,
            stride,
        };
        Ok(self.push(Layer::Pool(l), l.output()))
    }

    fn relu(&mut self) -> Result<usize> {
        self.needs_node_input("a ReLU")?;
        Ok(self.push(Layer::Relu(self.shape), self.shape))
    }

    /// The basic block: conv3×3(stride) → evo → conv3×3 → evo, plus the identity or a
    /// 1×1-conv(stride) → evo shortcut, summed in place into the main branch's output.
    fn residual(&mut self, channels: usize, stride: usize) -> Result<usize> {
        self.needs_node_input("a residual block")?;
        let (x, x_shape) = (self.cur, self.shape);
        let Input::Node(x_node) = x else {
            return Err(self.err("a residual block needs a layer before it"));
        };
        self.conv(3, channels, stride, 1, false)?;
        self.norm(true, spec::DEFAULT_GROUPS)?;
        self.conv(3, channels, 1, 1, false)?;
        let main = self.norm(true, spec::DEFAULT_GROUPS)?;
        let out_shape = self.shape;
        let other = if stride != 1 || x_shape.channels != channels {
            self.cur = x;
            self.shape = x_shape;
            self.conv(1, channels, stride, 0, false)?;
            self.norm(true, spec::DEFAULT_GROUPS)?
        } else {
            x_node
        };
        if self.nodes[other].output != out_shape {
            return Err(self.err(format!(
                "the shortcut's {} output does not match the block's {}",
                shape_text(self.nodes[other].output),
                shape_text(out_shape)
            )));
        }
        self.cur = Input::Node(main);
        self.shape = out_shape;
        Ok(self.push(
            Layer::Add {
                other,
                shape: out_shape,
            },
            out_shape,
        ))
    }
}

impl Model {
    /// An MLP from its layer widths, input first (e.g. `[784, 128, 10]`).
    pub fn mlp(sizes: &[usize]) -> Result<Self> {
        Self::build(
            &ModelSpec::Mlp(sizes.to_vec()),
            flat(sizes.first().copied().unwrap_or(0)),
            0,
        )
    }

    /// Parses `spec` and builds it for `input` images and `classes` classes.
    pub fn parse(spec: &str, input: ImageShape, classes: usize) -> Result<Self> {
        Self::build(&ModelSpec::parse(spec)?, input, classes)
    }

    /// Builds a parsed spec for `input` images and `classes` classes (the width of a bare
    /// `dense`). An MLP's input is its first width, flat, whatever `input` says: the caller
    /// checks it against the data (the trainer names both widths).
    pub fn build(spec: &ModelSpec, input: ImageShape, classes: usize) -> Result<Self> {
        let name = spec.name();
        let mut b = Builder {
            name: name.clone(),
            nodes: Vec::new(),
            off: 0,
            cur: Input::Data,
            shape: input,
        };
        let mut sizes = None;
        match spec {
            ModelSpec::Mlp(s) => {
                if s.len() < 2 || s.contains(&0) {
                    return Err(b.err("needs at least an input and an output width, all positive"));
                }
                b.shape = flat(s[0]);
                for (k, &w) in s[1..].iter().enumerate() {
                    b.dense(w, k + 2 < s.len());
                }
                sizes = Some(s.clone());
            }
            ModelSpec::Stack { tokens, .. } => {
                if input.is_empty() {
                    return Err(b.err("the input is empty"));
                }
                for (i, t) in tokens.iter().enumerate() {
                    match *t {
                        Token::Conv {
                            kernel,
                            channels,
                            stride,
                            pad,
                            bias,
                        } => {
                            b.conv(kernel, channels, stride, pad, bias)?;
                        }
                        Token::Pool {
                            avg,
                            window,
                            stride,
                        } => {
                            b.pool(avg, window, stride)?;
                        }
                        Token::Relu => {
                            // A ReLU between two dense layers is fused into the first.
                            let next_dense = matches!(tokens.get(i + 1), Some(Token::Dense(_)));
                            let prev = match b.cur {
                                Input::Node(k) if next_dense => b.nodes.get_mut(k),
                                _ => None,
                            };
                            match prev.map(|n| &mut n.layer) {
                                Some(Layer::Dense(l)) if !l.relu => l.relu = true,
                                _ => {
                                    b.relu()?;
                                }
                            }
                        }
                        Token::Norm { evo, groups } => {
                            b.norm(evo, groups)?;
                        }
                        Token::Dense(n) => {
                            let n = n.unwrap_or(classes);
                            if n == 0 {
                                return Err(b.err(
                                    "a dense layer to the classes needs a dataset with classes",
                                ));
                            }
                            b.dense(n, false);
                        }
                        Token::Res { channels, stride } => {
                            b.residual(channels, stride)?;
                        }
                    }
                }
            }
        }
        if b.off > u32::MAX as usize / 2 {
            return Err(b.err(format!(
                "{} parameters is more than 32-bit indexing allows",
                b.off
            )));
        }
        if let Some(k) = b.nodes.iter().position(|n| n.output.is_empty()) {
            return Err(b.err(format!("layer {k} has an empty output")));
        }
        Ok(Model {
            name,
            input: sizes.as_ref().map_or(input, |s| flat(s[0])),
            nodes: b.nodes,
            n_params: b.off,
            sizes,
        })
    }

    /// The name it was built from (`mlp:784-128-10`, `cnn5`, or the custom stack).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nodes in forward order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The dense layers in forward order (an MLP's are all its layers).
    pub fn dense_layers(&self) -> Vec<DenseLayer> {
        self.nodes
            .iter()
            .filter_map(|n| match n.layer {
                Layer::Dense(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    /// The MLP's widths, input first (None for other models).
    pub fn mlp_sizes(&self) -> Option<&[usize]> {
        self.sizes.as_deref()
    }

    /// Input image of one sample.
    pub fn input(&self) -> ImageShape {
        self.input
    }

    /// Input width (scalars per sample).
    pub fn input_dim(&self) -> usize {
        self.input.len()
    }

    /// Number of outputs (the logits' width).
    pub fn classes(&self) -> usize {
        self.nodes.last().map_or(0, |n| n.output.len())
    }

    /// Trainable scalars per agent (d).
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Floats per agent slab: d padded to [`SLAB_ALIGN`].
    pub fn stride(&self) -> usize {
        self.n_params.div_ceil(SLAB_ALIGN) * SLAB_ALIGN
    }

    /// The widest per-sample activation (the input included): the evaluation sizes its chunks
    /// by it.
    pub fn widest(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.output.len())
            .fold(self.input.len(), usize::max)
    }

    /// The tensor table, in parameter order.
    pub fn tensors(&self) -> Vec<Tensor> {
        let t = |offset, len| Tensor { offset, len };
        self.nodes
            .iter()
            .flat_map(|n| match n.layer {
                Layer::Dense(l) => vec![t(l.w_off, l.in_dim * l.out_dim), t(l.b_off, l.out_dim)],
                Layer::Conv(l) => std::iter::once(t(l.w_off, l.weight_len()))
                    .chain(l.b_off.map(|b| t(b, l.out_channels)))
                    .collect(),
                Layer::Norm(l) => {
                    let c = l.image.channels;
                    vec![t(l.gamma_off, c), t(l.beta_off, c)]
                }
                Layer::Pool(_) | Layer::Relu(_) | Layer::Add { .. } => Vec::new(),
            })
            .collect()
    }

    /// Multiply-adds of one forward pass over one sample (dense and convolution layers).
    pub fn forward_macs(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n.layer {
                Layer::Dense(l) => l.in_dim * l.out_dim,
                Layer::Conv(l) => l.macs(),
                _ => 0,
            })
            .sum()
    }

    /// FLOPs of one forward pass over one sample: 2 per multiply-add, plus one per bias, ReLU,
    /// pooled input, sum and normalised value (about 8 for EvoNorm and GroupNorm).
    pub fn forward_flops(&self) -> u64 {
        let other: usize = self
            .nodes
            .iter()
            .map(|n| match n.layer {
                Layer::Dense(l) => l.out_dim * (1 + l.relu as usize),
                Layer::Conv(l) => l.b_off.map_or(0, |_| l.output().len()),
                Layer::Pool(l) => l.output().len() * l.window * l.window,
                Layer::Relu(s) | Layer::Add { shape: s, .. } => s.len(),
                Layer::Norm(l) => 8 * l.image.len(),
            })
            .sum();
        2 * self.forward_macs() as u64 + other as u64
    }

    /// FLOPs of one training step of `agents` agents with `batch` samples each, as the usual
    /// estimate: the backward pass costs twice the forward.
    pub fn step_flops(&self, agents: usize, batch: usize) -> u64 {
        3 * self.forward_flops() * (agents * batch) as u64
    }

    /// Initial parameters for `agents` agents, agent-major (agents × stride, padding zero).
    ///
    /// Dense layers: PyTorch's default, weights and biases uniform in ±1/√in. Convolutions: He
    /// initialisation as NGM's code has it, weights N(0, 2/(k²·C_out)), biases uniform in
    /// ±1/√(C_in·k²) (PyTorch's default). Norms: γ = 1, β = 0. The draws follow the parameter
    /// order. With `identical`, every agent gets the same draw; otherwise agent i draws from its
    /// own stream.
    pub fn init(&self, agents: usize, seed: u64, identical: bool) -> Vec<f32> {
        let stride = self.stride();
        let mut out = vec![0.0f32; agents * stride];
        for a in 0..agents {
            let stream = if identical { 0 } else { a as u64 };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            let slab = &mut out[a * stride..a * stride + self.n_params];
            for n in &self.nodes {
                match n.layer {
                    Layer::Dense(l) => {
                        let bound = 1.0 / (l.in_dim as f32).sqrt();
                        for v in &mut slab[l.w_off..l.b_off + l.out_dim] {
                            *v = rng.random_range(-bound..bound);
                        }
                    }
                    Layer::Conv(l) => {
                        let k2 = l.kernel * l.kernel;
                        let sd = (2.0 / (k2 * l.out_channels) as f32).sqrt();
                        for v in &mut slab[l.w_off..][..l.weight_len()] {
                            let z: f32 = rng.sample(rand_distr::StandardNormal);
                            *v = sd * z;
                        }
                        if let Some(b) = l.b_off {
                            let bound = 1.0 / ((l.input.channels * k2) as f32).sqrt();
                            for v in &mut slab[b..][..l.out_channels] {
                                *v = rng.random_range(-bound..bound);
                            }
                        }
                    }
                    Layer::Norm(l) => {
                        slab[l.gamma_off..][..l.image.channels].fill(1.0);
                        slab[l.beta_off..][..l.image.channels].fill(0.0);
                    }
                    Layer::Pool(_) | Layer::Relu(_) | Layer::Add { .. } => {}
                }
            }
        }
        out
    }

    /// One line per node: what it computes, its output shape and its parameters.
    pub fn describe_layers(&self) -> String {
        let mut s = String::new();
        for (k, n) in self.nodes.iter().enumerate() {
            let what = match n.layer {
                Layer::Dense(l) => format!(
                    "dense {}→{}{}",
                    l.in_dim,
                    l.out_dim,
                    if l.relu { " + relu" } else { "" }
                ),
                Layer::Conv(l) => format!(
                    "conv {k}×{k}, stride {}, pad {}{}",
                    l.stride,
                    l.pad,
                    if l.b_off.is_some() { ", bias" } else { "" },
                    k = l.kernel
                ),
                Layer::Pool(l) => format!(
                    "{} pool {w}×{w}, stride {}",
                    if l.kind == PoolKind::Max {
                        "max"
                    } else {
                        "avg"
                    },
                    l.stride,
                    w = l.window
                ),
                Layer::Relu(_) => "relu".into(),
                Layer::Norm(l) => format!(
                    "{} ({} groups)",
                    if l.kind == NormKind::EvoS0 {
                        "evonorm-s0"
                    } else {
                        "groupnorm"
                    },
                    l.groups
                ),
                Layer::Add { other, .. } => format!("+ layer {other}"),
            };
            let from = match n.input {
                Input::Data => "data".to_string(),
                Input::Node(i) => format!("{i}"),
            };
            s.push_str(&format!(
                "{k:>3} ← {from:>4}: {what} → {}\n",
                shape_text(n.output)
            ));
        }
        s
    }
}

/// One line with a model's size and cost: parameters, forward FLOPs per sample, FLOPs per
/// training step of `agents` agents with `batch` samples each (forward + backward ≈ 3×
/// forward; cross-gradient algorithms run more jobs per step).
pub fn cost_line(model: &Model, agents: usize, batch: usize) -> String {
    format!(
        "model {}: {} parameters, {:.3} MFLOP forward per sample, {:.3} GFLOP per step ({agents} agents × batch {batch})",
        model.name(),
        model.n_params(),
        model.forward_flops() as f64 / 1e6,
        model.step_flops(agents, batch) as f64 / 1e9
    )
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} parameters)", self.name, self.n_params)
    }
}

#[cfg(test)]
mod tests;
