//! The convolutional layers' operations: 2-D convolution, pooling, ReLU and the per-sample
//! normalisations (GroupNorm, EvoNorm-S0), each over a whole job list in one call.
//!
//! Activations are stored like the dense layers' ones: `n_jobs × batch` samples (or, for a
//! first layer reading the gathered minibatch, `agents × batch`), each sample a `C × H × W`
//! image in channel-major (NCHW) order. Flattening is free: a dense layer after a convolution
//! reads the same buffer with `in_dim = C·H·W`. Parameters live in the job's model slab
//! (PyTorch order); gradients go to slab j of the gradient buffer, as for the dense layers.

use super::{distinct, need, nonzero, Buf, BufKind, HostIndices, InputBlocks};
pub use crate::data::ImageShape;
use crate::error::{Error, Result};

/// An empty image is rejected before any work.
fn check_image(op: &'static str, what: &str, image: &ImageShape) -> Result<()> {
    if image.is_empty() {
        return Err(Error::op(op, format!("{what} image {image:?} is empty")));
    }
    Ok(())
}

/// A 2-D convolution's geometry and where its tensors sit in a slab: weight
/// `[out_channels, in_channels, kernel, kernel]` at `w_off`, an optional bias at `b_off`;
/// square kernel, equal stride and zero padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvLayer {
    /// Input image of one sample.
    pub input: ImageShape,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each border.
    pub pad: usize,
    /// Offset of the weight within the slab.
    pub w_off: usize,
    /// Offset of the bias within the slab, if the layer has one.
    pub b_off: Option<usize>,
}

impl ConvLayer {
    /// Output image of one sample: side `(in + 2·pad − kernel) / stride + 1`.
    pub fn output(&self) -> ImageShape {
        let side =
            |n: usize| (n + 2 * self.pad).saturating_sub(self.kernel) / self.stride.max(1) + 1;
        ImageShape {
            channels: self.out_channels,
            height: side(self.input.height),
            width: side(self.input.width),
        }
    }

    /// Scalars of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.input.channels * self.kernel * self.kernel
    }

    /// Multiply-adds of the forward pass over one sample.
    pub fn macs(&self) -> usize {
        let o = self.output();
        o.len() * self.input.channels * self.kernel * self.kernel
    }

    /// End of the layer's tensors within the slab.
    pub fn end(&self) -> usize {
        let w_end = self.w_off + self.weight_len();
        self.b_off
            .map_or(w_end, |b| w_end.max(b + self.out_channels))
    }

    fn check(&self, op: &'static str, stride: usize) -> Result<()> {
        check_image(op, "input", &self.input)?;
        nonzero(
            op,
            &[
                ("out_channels", self.out_channels),
                ("kernel", self.kernel),
                ("stride", self.stride),
            ],
        )?;
        if self.kernel > self.input.height + 2 * self.pad
            || self.kernel > self.input.width + 2 * self.pad
        {
            return Err(Error::op(
                op,
                format!(
                    "a {k}×{k} kernel does not fit a {}×{} input padded by {}",
                    self.input.height,
                    self.input.width,
                    self.pad,
                    k = self.kernel
                ),
            ));
        }
        if self.pad >= self.kernel {
            return Err(Error::op(
                op,
                format!(
                    "padding {} is not below the kernel side {}",
                    self.pad, self.kernel
                ),
            ));
        }
        let overlaps = self.b_off.is_some_and(|b| {
            b < self.w_off + self.weight_len() && self.w_off < b + self.out_channels
        });
        if overlaps || self.end() > stride {
            return Err(Error::op(op, "layer does not fit in the slab stride"));
        }
        Ok(())
    }
}

/// Shared shape of a convolution over a job list: jobs are (model agent, data agent) pairs.
#[derive(Clone, Copy, Debug)]
pub struct ConvJobs {
    /// Job list, two u32 per job: model agent, data agent.
    pub jobs: Buf,
    /// Number of jobs.
    pub n_jobs: usize,
    /// Samples per job (minibatch size).
    pub batch: usize,
    /// The layer.
    pub layer: ConvLayer,
    /// Floats per agent slab (parameters and gradients share it).
    pub stride: usize,
    /// How the layer input is addressed.
    pub input_blocks: InputBlocks,
}

impl ConvJobs {
    fn check(&self, op: &'static str) -> Result<()> {
        nonzero(op, &[("n_jobs", self.n_jobs), ("batch", self.batch)])?;
        need(op, "jobs", self.jobs, BufKind::U32, 2 * self.n_jobs)?;
        self.layer.check(op, self.stride)
    }

    fn input_block_len(&self) -> usize {
        self.batch * self.layer.input.len()
    }

    fn check_input(&self, op: &'static str, input: Buf) -> Result<()> {
        let blocks = match self.input_blocks {
            InputBlocks::ByJob => self.n_jobs,
            InputBlocks::ByData => 1,
        };
        need(
            op,
            "input",
            input,
            BufKind::F32,
            blocks * self.input_block_len(),
        )
    }

    fn output_len(&self) -> usize {
        self.n_jobs * self.batch * self.layer.output().len()
    }

    fn check_jobs(
        &self,
        op: &'static str,
        ix: &HostIndices,
        params: Option<Buf>,
        input: Buf,
    ) -> Result<()> {
        let n_models = params.map_or(usize::MAX, |p| p.len / self.stride);
        let n_blocks = input.len / self.input_block_len();
        super::check_job_list(
            op,
            ix,
            self.jobs,
            self.n_jobs,
            self.input_blocks,
            n_models,
            n_blocks,
        )
    }
}

/// Convolution forward: `out[j] = conv(in[blk(j)], W_{m_j}) + b_{m_j}` (no activation).
#[derive(Clone, Copy, Debug)]
pub struct ConvForward {
    /// Jobs and layer.
    pub shape: ConvJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// Layer input blocks.
    pub input: Buf,
    /// Layer output, `n_jobs × batch × out_channels × out_h × out_w`.
    pub output: Buf,
}

impl ConvForward {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "conv_forward";
        let s = &self.shape;
        s.check(op)?;
        need(op, "params", self.params, BufKind::F32, s.stride)?;
        s.check_input(op, self.input)?;
        need(op, "output", self.output, BufKind::F32, s.output_len())?;
        distinct(op, self.output, &[self.params, self.input, s.jobs])?;
        s.check_jobs(op, ix, Some(self.params), self.input)
    }
}

/// Convolution backward-data: `dx[j] = convᵀ(dy[j], W_{m_j})`, the gradient with respect to
/// the layer input (which must be addressed by job: a first layer has no input gradient).
#[derive(Clone, Copy, Debug)]
pub struct ConvBackwardData {
    /// Jobs and layer.
    pub shape: ConvJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// Gradient with respect to the layer output.
    pub dy: Buf,
    /// Gradient with respect to the layer input, `n_jobs × batch × input image` (overwritten).
    pub dx: Buf,
}

impl ConvBackwardData {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "conv_backward_data";
        let s = &self.shape;
        s.check(op)?;
        if s.input_blocks != InputBlocks::ByJob {
            return Err(Error::op(
                op,
                "the first layer has no input gradient to compute",
            ));
        }
        need(op, "params", self.params, BufKind::F32, s.stride)?;
        need(op, "dy", self.dy, BufKind::F32, s.output_len())?;
        s.check_input(op, self.dx)?;
        distinct(op, self.dx, &[self.params, self.dy, s.jobs])?;
        s.check_jobs(op, ix, Some(self.params), self.dx)
    }
}

/// Convolution backward-weights: slab j of `grads` gets `dW = Σ_b dy[j,b] ⋆ in[blk(j),b]` and,
/// with a bias, `db = Σ_{b,h,w} dy[j]` (overwritten; the rest of the slab is left alone).
#[derive(Clone, Copy, Debug)]
pub struct ConvBackwardWeights {
    /// Jobs and layer.
    pub shape: ConvJobs,
    /// Gradient with respect to the layer output.
    pub dy: Buf,
    /// Layer input blocks.
    pub input: Buf,
    /// Gradient slabs, one per job (`n_jobs × stride`).
    pub grads: Buf,
}

impl ConvBackwardWeights {
    /// Validates sizes, kinds and the job list (whose model agents this op does not read).
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "conv_backward_weights";
        let s = &self.shape;
        s.check(op)?;
        need(op, "dy", self.dy, BufKind::F32, s.output_len())?;
        s.check_input(op, self.input)?;
        need(op, "grads", self.grads, BufKind::F32, s.n_jobs * s.stride)?;
        distinct(op, self.grads, &[self.dy, self.input, s.jobs])?;
        s.check_jobs(op, ix, None, self.input)
    }
}

/// Pooling window type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window; the gradient goes to the window's first maximum in row-major
    /// order.
    Max,
    /// Mean over the window (global average pooling: a window the size of the image).
    Avg,
}

/// A pooling layer's geometry: square window, no padding, output side
/// `(in − window) / stride + 1` (PyTorch's floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolLayer {
    /// Window type.
    pub kind: PoolKind,
    /// Input image of one sample.
    pub input: ImageShape,
    /// Window side.
    pub window: usize,
    /// Stride.
    pub stride: usize,
}

impl PoolLayer {
    /// Output image of one sample.
    pub fn output(&self) -> ImageShape {
        let side = |n: usize| n.saturating_sub(self.window) / self.stride.max(1) + 1;
        ImageShape {
            channels: self.input.channels,
            height: side(self.input.height),
            width: side(self.input.width),
        }
    }

    fn check(&self, op: &'static str) -> Result<()> {
        check_image(op, "input", &self.input)?;
        nonzero(op, &[("window", self.window), ("stride", self.stride)])?;
        if self.window > self.input.height || self.window > self.input.width {
            return Err(Error::op(
                op,
                format!(
                    "a {w}×{w} window does not fit a {}×{} input",
                    self.input.height,
                    self.input.width,
                    w = self.window
                ),
            ));
        }
        Ok(())
    }
}

/// Pooling forward over `samples` images: `y = pool(x)`.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    /// The layer.
    pub layer: PoolLayer,
    /// Number of images (`n_jobs × batch`).
    pub samples: usize,
    /// Input images.
    pub x: Buf,
    /// Output images.
    pub y: Buf,
}

impl Pool {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "pool";
        self.layer.check(op)?;
        nonzero(op, &[("samples", self.samples)])?;
        need(
            op,
            "x",
            self.x,
            BufKind::F32,
            self.samples * self.layer.input.len(),
        )?;
        need(
            op,
            "y",
            self.y,
            BufKind::F32,
            self.samples * self.layer.output().len(),
        )?;
        distinct(op, self.y, &[self.x])
    }
}

/// Pooling backward: `dx` (overwritten) gets each output's gradient routed back through its
/// window — to the first maximum of `x` for max pooling, spread evenly for average pooling —
/// summed where windows overlap.
#[derive(Clone, Copy, Debug)]
pub struct PoolBackward {
    /// The layer.
    pub layer: PoolLayer,
    /// Number of images.
    pub samples: usize,
    /// The forward input (max pooling finds its maxima again; unread for average pooling).
    pub x: Buf,
    /// Gradient with respect to the output.
    pub dy: Buf,
    /// Gradient with respect to the input.
    pub dx: Buf,
}

impl PoolBackward {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "pool_backward";
        self.layer.check(op)?;
        nonzero(op, &[("samples", self.samples)])?;
        let (n_in, n_out) = (
            self.samples * self.layer.input.len(),
            self.samples * self.layer.output().len(),
        );
        need(op, "x", self.x, BufKind::F32, n_in)?;
        need(op, "dy", self.dy, BufKind::F32, n_out)?;
        need(op, "dx", self.dx, BufKind::F32, n_in)?;
        distinct(op, self.dx, &[self.x, self.dy])
    }
}

/// ReLU forward: `y = max(x, 0)` over the first `len` elements.
#[derive(Clone, Copy, Debug)]
pub struct Relu {
    /// Input.
    pub x: Buf,
    /// Output (a different buffer).
    pub y: Buf,
    /// Elements.
    pub len: usize,
}

impl Relu {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "relu";
        nonzero(op, &[("len", self.len)])?;
        need(op, "x", self.x, BufKind::F32, self.len)?;
        need(op, "y", self.y, BufKind::F32, self.len)?;
        distinct(op, self.y, &[self.x])
    }
}

/// ReLU backward: `dx = dy · [y > 0]`, from the forward output `y`.
#[derive(Clone, Copy, Debug)]
pub struct ReluBackward {
    /// The forward output.
    pub y: Buf,
    /// Gradient with respect to the output.
    pub dy: Buf,
    /// Gradient with respect to the input (a different buffer from both).
    pub dx: Buf,
    /// Elements.
    pub len: usize,
}

impl ReluBackward {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "relu_backward";
        nonzero(op, &[("len", self.len)])?;
        need(op, "y", self.y, BufKind::F32, self.len)?;
        need(op, "dy", self.dy, BufKind::F32, self.len)?;
        need(op, "dx", self.dx, BufKind::F32, self.len)?;
        distinct(op, self.dx, &[self.y, self.dy])
    }
}

/// Which per-sample normalisation. Both use the biased variance of the input over each group
/// of `channels / groups` channels × H × W, per sample, with no running statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    /// GroupNorm: `y = (x − μ_g) / √(σ²_g + ε) · γ_c + β_c`.
    Group,
    /// EvoNorm-S0 as the NGM code has it:
    /// `y = x · hardsigmoid(x) / √(σ²_g + ε) · γ_c + β_c`, `hardsigmoid(x) = clamp(x/6 + ½, 0, 1)`;
    /// it is its own nonlinearity (no ReLU follows it).
    EvoS0,
}

/// A normalisation layer: geometry, groups, and the per-channel scale γ and shift β in the slab.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormLayer {
    /// Which normalisation.
    pub kind: NormKind,
    /// Image of one sample (the output has the same shape).
    pub image: ImageShape,
    /// Channel groups (must divide the channel count).
    pub groups: usize,
    /// ε added to the variance.
    pub eps: f64,
    /// Offset of γ (one per channel) within the slab.
    pub gamma_off: usize,
    /// Offset of β (one per channel) within the slab.
    pub beta_off: usize,
}

impl NormLayer {
    fn check(&self, op: &'static str, stride: usize) -> Result<()> {
        check_image(op, "input", &self.image)?;
        nonzero(op, &[("groups", self.groups)])?;
        if !self.image.channels.is_multiple_of(self.groups) {
            return Err(Error::op(
                op,
                format!(
                    "{} groups do not divide {} channels",
                    self.groups, self.image.channels
                ),
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::op(
                op,
                format!("ε must be positive, not {}", self.eps),
            ));
        }
        let c = self.image.channels;
        let disjoint = self.gamma_off + c <= self.beta_off || self.beta_off + c <= self.gamma_off;
        if !disjoint || self.gamma_off.max(self.beta_off) + c > stride {
            return Err(Error::op(op, "layer does not fit in the slab stride"));
        }
        Ok(())
    }
}

/// Shared shape of a normalisation over a job list (always addressed by job).
#[derive(Clone, Copy, Debug)]
pub struct NormJobs {
    /// Job list, two u32 per job: model agent, data agent.
    pub jobs: Buf,
    /// Number of jobs.
    pub n_jobs: usize,
    /// Samples per job.
    pub batch: usize,
    /// The layer.
    pub layer: NormLayer,
    /// Floats per agent slab.
    pub stride: usize,
}

impl NormJobs {
    fn check(&self, op: &'static str) -> Result<()> {
        nonzero(op, &[("n_jobs", self.n_jobs), ("batch", self.batch)])?;
        need(op, "jobs", self.jobs, BufKind::U32, 2 * self.n_jobs)?;
        self.layer.check(op, self.stride)
    }

    fn len(&self) -> usize {
        self.n_jobs * self.batch * self.layer.image.len()
    }

    fn check_jobs(&self, op: &'static str, ix: &HostIndices, params: Option<Buf>) -> Result<()> {
        let n_models = params.map_or(usize::MAX, |p| p.len / self.stride);
        super::check_job_list(
            op,
            ix,
            self.jobs,
            self.n_jobs,
            InputBlocks::ByJob,
            n_models,
            self.n_jobs,
        )
    }
}

/// Normalisation forward: `y[j] = norm(x[j]; γ_{m_j}, β_{m_j})`.
#[derive(Clone, Copy, Debug)]
pub struct NormForward {
    /// Jobs and layer.
    pub shape: NormJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// Input, `n_jobs × batch × image`.
    pub x: Buf,
    /// Output, same shape.
    pub y: Buf,
}

impl NormForward {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "norm_forward";
        let s = &self.shape;
        s.check(op)?;
        need(op, "params", self.params, BufKind::F32, s.stride)?;
        need(op, "x", self.x, BufKind::F32, s.len())?;
        need(op, "y", self.y, BufKind::F32, s.len())?;
        distinct(op, self.y, &[self.params, self.x, s.jobs])?;
        s.check_jobs(op, ix, Some(self.params))
    }
}

/// Normalisation backward, from the forward input (the group statistics are recomputed):
/// `dx[j]` (overwritten) and, in slab j of `grads`, `dγ` and `dβ` summed over the job's samples
/// and pixels.
#[derive(Clone, Copy, Debug)]
pub struct NormBackward {
    /// Jobs and layer.
    pub shape: NormJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// The forward input.
    pub x: Buf,
    /// Gradient with respect to the output.
    pub dy: Buf,
    /// Gradient with respect to the input.
    pub dx: Buf,
    /// Gradient slabs, one per job (`n_jobs × stride`).
    pub grads: Buf,
}

impl NormBackward {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "norm_backward";
        let s = &self.shape;
        s.check(op)?;
        need(op, "params", self.params, BufKind::F32, s.stride)?;
        need(op, "x", self.x, BufKind::F32, s.len())?;
        need(op, "dy", self.dy, BufKind::F32, s.len())?;
        need(op, "dx", self.dx, BufKind::F32, s.len())?;
        need(op, "grads", self.grads, BufKind::F32, s.n_jobs * s.stride)?;
        distinct(
            op,
            self.dx,
            &[self.params, self.x, self.dy, self.grads, s.jobs],
        )?;
        distinct(op, self.grads, &[self.params, self.x, self.dy, s.jobs])?;
        s.check_jobs(op, ix, Some(self.params))
    }
}
