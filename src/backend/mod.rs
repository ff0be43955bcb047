//! The operations every backend provides. Algorithms are written once against [`Backend`]; the
//! GPU backend records them into one command buffer per step, the CPU reference executes them in
//! plain loops with f64 accumulation.
//!
//! Each operation takes an argument struct; [`Backend`] implementations call its `check` so both
//! backends accept and reject exactly the same requests, apart from the limits only a GPU has
//! (an adapter's buffer sizes, [`Error::BufferTooLarge`], and its dispatch grid). The checks run
//! on the host, before any work is recorded: sizes and kinds from the handles, and the contents
//! of index buffers (job lists, sample indices, labels, CSR structure) from [`HostIndices`], the
//! host's copy of every index buffer, which each backend keeps as it writes them. So a bad index
//! is a typed [`Error::InvalidOp`] on every backend, never a clamped read on the GPU.

pub mod choice;
mod cnn;
pub mod gpu;
mod host;
pub mod native;
pub mod reference;

use crate::error::{Error, Result};
use crate::model::DenseLayer;
use crate::sparse::Csr;
pub use cnn::*;

/// Element type of a backend buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufKind {
    /// Real numbers: f32 on the GPU, f64 in the CPU reference.
    F32,
    /// Unsigned indices.
    U32,
    /// Bytes (datasets); packed four to a word on the GPU.
    U8,
}

/// A handle to a buffer owned by a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf {
    /// Slot in the backend's buffer table.
    pub id: usize,
    /// Number of elements.
    pub len: usize,
    /// Element type.
    pub kind: BufKind,
}

/// A sparse matrix resident on a backend (see [`Csr`]).
#[derive(Clone, Copy, Debug)]
pub struct CsrBufs {
    /// Row offsets (rows + 1).
    pub row_ptr: Buf,
    /// Column of each entry.
    pub col: Buf,
    /// Weight of each entry.
    pub weight: Buf,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub n_cols: usize,
}

/// The buffers a backend holds: how many and their bytes in the backend's own storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveBuffers {
    /// Buffers allocated and not released (also the mark of [`Backend::release_from`]).
    pub count: usize,
    /// Their bytes (GPU: buffer sizes; CPU reference: f64/u32/u8 storage).
    pub bytes: u64,
}

/// The host's knowledge of every index (`U32`) buffer of a backend: the values the host wrote
/// (buffers start zero-filled), and for the one buffer a kernel fills — the gathered labels —
/// the values the gather produces, computed on the host from the indices and labels it wrote.
/// Both backends keep one, update it in `alloc`, `write_u32`, `gather` and `release_from`, and
/// pass it to the op checks that read indices, so those checks see the exact contents.
///
/// An op that makes a kernel write a `U32` buffer must record the result here too (as
/// [`HostIndices::gather`] does); a buffer whose contents the host does not know is rejected
/// by every check that reads it.
#[derive(Clone, Debug, Default)]
pub struct HostIndices {
    slots: Vec<Option<Vec<u32>>>,
}

impl HostIndices {
    /// Records the buffer a backend just put in slot `id` and returns its handle (index
    /// buffers start zero-filled).
    pub fn alloc(&mut self, id: usize, len: usize, kind: BufKind) -> Buf {
        if self.slots.len() <= id {
            self.slots.resize(id + 1, None);
        }
        self.slots[id] = (kind == BufKind::U32).then(|| vec![0; len]);
        Buf { id, len, kind }
    }

    /// Records a host write of indices (the caller has checked the range).
    pub fn write(&mut self, buf: Buf, offset: usize, data: &[u32]) {
        if let Some(Some(v)) = self.slots.get_mut(buf.id) {
            if let Some(dst) = v.get_mut(offset..offset + data.len()) {
                dst.copy_from_slice(data);
            }
        }
    }

    /// Records the labels a checked gather writes: `y[r] = labels[index[r]]`.
    pub fn gather(&mut self, op: &Gather) {
        let y: Option<Vec<u32>> = match (self.values(op.index), self.values(op.labels)) {
            (Some(idx), Some(labels)) => idx[..op.rows]
                .iter()
                .map(|&s| labels.get(s as usize).copied())
                .collect(),
            _ => None,
        };
        match (y, self.slots.get_mut(op.y.id)) {
            (Some(y), Some(Some(v))) => v[..op.rows].copy_from_slice(&y),
            (None, Some(slot)) => *slot = None,
            _ => {}
        }
    }

    /// Forgets every buffer from `mark` on ([`Backend::release_from`]).
    pub fn release_from(&mut self, mark: usize) {
        self.slots.truncate(mark);
    }

    /// The contents of an index buffer, where the host knows them.
    pub fn values(&self, buf: Buf) -> Option<&[u32]> {
        self.slots.get(buf.id)?.as_deref()
    }

    /// The contents of `range` of an index buffer, or an error naming `what`.
    fn known(&self, op: &'static str, what: &str, buf: Buf, len: usize) -> Result<&[u32]> {
        self.values(buf).and_then(|v| v.get(..len)).ok_or_else(|| {
            Error::op(
                op,
                format!(
                    "the contents of {what} (buffer {}) are not known to the host",
                    buf.id
                ),
            )
        })
    }
}

/// Work counters: how many kernel dispatches and queue submissions a backend has issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernel dispatches (CPU: operations executed).
    pub dispatches: u64,
    /// Queue submissions (CPU: flushes).
    pub submits: u64,
}

/// Minibatch gather: `x[r] = normalize(dataset[index[r]])`, `y[r] = labels[index[r]]`.
#[derive(Clone, Copy, Debug)]
pub struct Gather {
    /// Dataset bytes, `n_samples × dim`.
    pub data: Buf,
    /// Labels, one per sample.
    pub labels: Buf,
    /// Sample index of each output row.
    pub index: Buf,
    /// Rows to gather.
    pub rows: usize,
    /// Features per sample.
    pub dim: usize,
    /// Normalisation: feature = (byte/255 − mean_c)/std_c in the feature's channel c.
    pub norm: ChannelNorm,
    /// Output features, `rows × dim`.
    pub x: Buf,
    /// Output labels, `rows`.
    pub y: Buf,
}

/// Most channels a gather normalises separately (CIFAR-10 has 3).
pub const MAX_NORM_CHANNELS: usize = 4;

/// Per-channel normalisation of gathered features: a sample's `dim` features are `channels`
/// equal planes in channel-major order, and a byte b of channel c becomes
/// `(b/255 − mean[c]) / std[c]`. One channel normalises every feature alike (MNIST).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelNorm {
    /// Channels, 1 ..= [`MAX_NORM_CHANNELS`]; it must divide the feature count.
    pub channels: usize,
    /// Mean of each channel (byte/255 units); entries past `channels` are unused.
    pub mean: [f64; MAX_NORM_CHANNELS],
    /// Standard deviation of each channel (byte/255 units); entries past `channels` are unused.
    pub std: [f64; MAX_NORM_CHANNELS],
}

impl ChannelNorm {
    /// One mean and standard deviation for every feature.
    pub fn single(mean: f64, std: f64) -> Self {
        ChannelNorm {
            channels: 1,
            mean: [mean, 0.0, 0.0, 0.0],
            std: [std, 1.0, 1.0, 1.0],
        }
    }

    /// One mean and standard deviation per channel (equal lengths, 1 ..= [`MAX_NORM_CHANNELS`]).
    pub fn per_channel(mean: &[f64], std: &[f64]) -> Result<Self> {
        let n = mean.len();
        if n != std.len() || n == 0 || n > MAX_NORM_CHANNELS {
            return Err(Error::op(
                "gather",
                format!(
                    "{n} channel means and {} standard deviations: need the same number, 1 to {MAX_NORM_CHANNELS}",
                    std.len()
                ),
            ));
        }
        let mut norm = ChannelNorm::single(0.0, 1.0);
        norm.channels = n;
        norm.mean[..n].copy_from_slice(mean);
        norm.std[..n].copy_from_slice(std);
        Ok(norm)
    }

    /// The used (mean, std) pairs, one per channel.
    pub fn pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let n = self.channels.min(MAX_NORM_CHANNELS);
        self.mean[..n]
            .iter()
            .copied()
            .zip(self.std[..n].iter().copied())
    }
}

/// Where a dense layer reads its input for job j.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputBlocks {
    /// Block d_j: the gathered minibatch of the job's data agent (the first layer).
    ByData,
    /// Block j: the previous layer's output for this job.
    ByJob,
}

/// Shared shape of a dense operation over a job list: jobs are (model agent, data agent) pairs.
#[derive(Clone, Copy, Debug)]
pub struct DenseJobs {
    /// Job list, two u32 per job: model agent, data agent.
    pub jobs: Buf,
    /// Number of jobs.
    pub n_jobs: usize,
    /// Rows per job (minibatch size).
    pub batch: usize,
    /// The layer's place in the slab.
    pub layer: DenseLayer,
    /// Floats per agent slab (parameters and gradients share it).
    pub stride: usize,
    /// How the layer input is addressed.
    pub input_blocks: InputBlocks,
}

/// Dense forward: `out[j] = act(in[blk(j)] · W_{m_j}ᵀ + b_{m_j})`.
#[derive(Clone, Copy, Debug)]
pub struct DenseForward {
    /// Jobs and layer shape.
    pub shape: DenseJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// Layer input blocks.
    pub input: Buf,
    /// Layer output, `n_jobs × batch × out`.
    pub output: Buf,
}

/// Dense backward-data: `dx[j] = dz[j] · W_{m_j}`, masked by the previous layer's ReLU.
#[derive(Clone, Copy, Debug)]
pub struct DenseBackwardData {
    /// Jobs and layer shape.
    pub shape: DenseJobs,
    /// Parameters, agent-major slabs.
    pub params: Buf,
    /// Gradient with respect to this layer's pre-activation, `n_jobs × batch × out`.
    pub dz: Buf,
    /// The layer input (the previous layer's ReLU output), for the mask.
    pub input: Buf,
    /// Apply the previous layer's ReLU derivative.
    pub relu_mask: bool,
    /// Gradient with respect to the previous layer's pre-activation, `n_jobs × batch × in`.
    pub dx: Buf,
}

/// Dense backward-weights: job j's gradient slab gets `dW = dz[j]ᵀ · in[blk(j)]`, `db = Σ_b dz[j]`.
#[derive(Clone, Copy, Debug)]
pub struct DenseBackwardWeights {
    /// Jobs and layer shape.
    pub shape: DenseJobs,
    /// Gradient with respect to this layer's pre-activation.
    pub dz: Buf,
    /// Layer input blocks.
    pub input: Buf,
    /// Gradient slabs, one per job (`n_jobs × stride`).
    pub grads: Buf,
}

/// Softmax cross-entropy for every job: loss, d(logits) of the mean loss, and hits.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxXent {
    /// Job list (the data agent selects the labels).
    pub jobs: Buf,
    /// Number of jobs.
    pub n_jobs: usize,
    /// Rows per job.
    pub batch: usize,
    /// Number of classes.
    pub classes: usize,
    /// Logits, `n_jobs × batch × classes`.
    pub logits: Buf,
    /// Gathered labels, one per data row.
    pub labels: Buf,
    /// Output gradient, same shape as the logits.
    pub dlogits: Buf,
    /// Output: per-row loss, then per-row correct (two planes of `n_jobs × batch`).
    pub stats: Buf,
}

/// Sparse mixing: `out_r = Σ_e w_e · in_{col_e}` over vectors of `len` elements.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// The matrix.
    pub csr: CsrBufs,
    /// Stacked input vectors.
    pub input: Buf,
    /// Offset of input vector 0.
    pub in_offset: usize,
    /// Distance between input vectors.
    pub in_stride: usize,
    /// Stacked output vectors (a different buffer from the input).
    pub output: Buf,
    /// Offset of output vector 0.
    pub out_offset: usize,
    /// Distance between output vectors.
    pub out_stride: usize,
    /// Elements per vector.
    pub len: usize,
}

/// `y ← a·x + b·y` over the first `len` elements.
#[derive(Clone, Copy, Debug)]
pub struct Axpby {
    /// Input.
    pub x: Buf,
    /// Input and output (a different buffer from x).
    pub y: Buf,
    /// Coefficient of x.
    pub a: f64,
    /// Coefficient of y.
    pub b: f64,
    /// Elements.
    pub len: usize,
}

/// `y[offset + b·stride + k] ← value` for every block b < `count` and element k < `len` (a
/// real fill: zeroing with `axpby(a = 0, b = 0)` keeps NaN and ∞, since 0·NaN = NaN).
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    /// Output.
    pub y: Buf,
    /// Offset of block 0.
    pub offset: usize,
    /// Distance between blocks.
    pub stride: usize,
    /// Number of blocks.
    pub count: usize,
    /// Elements per block.
    pub len: usize,
    /// The value written.
    pub value: f64,
}

/// Range copy: `dst[dst_offset..][..len] ← src[src_offset..][..len]` between two different
/// buffers (a GPU cannot copy within one buffer, so no backend does).
#[derive(Clone, Copy, Debug)]
pub struct CopyRange {
    /// Input.
    pub src: Buf,
    /// First input element.
    pub src_offset: usize,
    /// Output.
    pub dst: Buf,
    /// First output element.
    pub dst_offset: usize,
    /// Elements.
    pub len: usize,
}

impl CopyRange {
    /// The first `len` elements of `src` into the start of `dst`.
    pub fn whole(src: Buf, dst: Buf, len: usize) -> Self {
        CopyRange {
            src,
            src_offset: 0,
            dst,
            dst_offset: 0,
            len,
        }
    }

    /// Checks that both ranges fit real buffers and that the buffers differ.
    pub fn check(&self) -> Result<()> {
        check_write("copy", self.src, BufKind::F32, self.src_offset, self.len)?;
        check_write("copy", self.dst, BufKind::F32, self.dst_offset, self.len)?;
        distinct("copy", self.dst, &[self.src])
    }
}

/// Strided copy: `dst[dst_offset + b·dst_stride + k·dst_step] ← src[src_offset + b·src_stride +
/// k·src_step]` for every block b < `count` and element k < `len`. A source stride of 0
/// broadcasts one block; element steps of 2 (de-)interleave.
#[derive(Clone, Copy, Debug)]
pub struct CopyStrided {
    /// Input.
    pub src: Buf,
    /// Offset of the first input element.
    pub src_offset: usize,
    /// Distance between input blocks (0 broadcasts).
    pub src_stride: usize,
    /// Distance between consecutive input elements of a block (≥ 1).
    pub src_step: usize,
    /// Output (a different buffer from the input).
    pub dst: Buf,
    /// Offset of the first output element.
    pub dst_offset: usize,
    /// Distance between output blocks.
    pub dst_stride: usize,
    /// Distance between consecutive output elements of a block (≥ 1).
    pub dst_step: usize,
    /// Number of blocks.
    pub count: usize,
    /// Elements per block.
    pub len: usize,
}

/// Mean of stacked vectors, for k < `len`:
/// `dst[dst_offset + k] ← (Σ_{b < count} src[src_offset + b·src_stride + k]) / count`, summed
/// first, then divided once by `count` (exact averaging of identical vectors, and no rounded
/// 1/n weight).
#[derive(Clone, Copy, Debug)]
pub struct Mean {
    /// Stacked input vectors.
    pub src: Buf,
    /// Offset of input vector 0.
    pub src_offset: usize,
    /// Distance between input vectors.
    pub src_stride: usize,
    /// Number of vectors averaged (≥ 1).
    pub count: usize,
    /// Elements per vector.
    pub len: usize,
    /// Output (a different buffer from the input).
    pub dst: Buf,
    /// Offset of the mean.
    pub dst_offset: usize,
}

/// One local SGD step (PyTorch convention, dampening 0) over the first `len` elements:
/// `g' = g + λx; m ← βm + g'; u = g' + βm (Nesterov) or m; x ← x − η·u` (β = 0: `u = g'`).
#[derive(Clone, Copy, Debug)]
pub struct LocalStep {
    /// Parameters, updated in place.
    pub params: Buf,
    /// Gradients.
    pub grads: Buf,
    /// Momentum buffer, updated in place when β ≠ 0.
    pub momentum_buf: Buf,
    /// Elements.
    pub len: usize,
    /// Learning rate η.
    pub lr: f64,
    /// Momentum β.
    pub momentum: f64,
    /// Nesterov (true) or heavy ball (false).
    pub nesterov: bool,
    /// Weight decay λ, folded into the gradient.
    pub weight_decay: f64,
}

/// QG-Adam's parameter step (ALGORITHMS.md §5.4 step 3), moments read only:
/// `g' = g + λx; a = β1·m1 + g'; s = β2·m2 + (1−β2)·g'²; x ← x − (η/bc1)·a/(√s/√bc2 + ε)`.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Parameters, updated in place.
    pub params: Buf,
    /// Gradients.
    pub grads: Buf,
    /// First moment m1.
    pub m1: Buf,
    /// Second moment m2.
    pub m2: Buf,
    /// Elements.
    pub len: usize,
    /// Learning rate η.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Bias correction 1 − β1^(t+1).
    pub bc1: f64,
    /// Bias correction 1 − β2^(t+1).
    pub bc2: f64,
    /// Weight decay λ, folded into the gradient.
    pub weight_decay: f64,
}

/// QG-Adam's moment update from the realised model change (§5.4 steps 5–6): per agent
/// `δ̂ = δ/(‖δ‖₂ + 1e-8)`, `m1 ← β1·m1 + (1−β1)·δ̂`, `m2 ← β2·m2 + (1−β2)·δ̂²`.
#[derive(Clone, Copy, Debug)]
pub struct AdamMoments {
    /// The model change δ, agent-major slabs of `stride`.
    pub delta: Buf,
    /// ‖δ_i‖², one per agent.
    pub sq_norms: Buf,
    /// First moment, updated in place.
    pub m1: Buf,
    /// Second moment, updated in place.
    pub m2: Buf,
    /// Agents.
    pub agents: usize,
    /// Floats per agent slab.
    pub stride: usize,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
}

/// What a segmented reduction sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceMode {
    /// Σ a.
    Sum = 0,
    /// Σ a·b.
    Dot = 1,
    /// Σ (a − b)².
    SquaredDistance = 2,
}

/// Segmented reduction: `out[out_offset + s] = Σ_k f(a[a_offset + s·a_stride + k], b[…])`.
#[derive(Clone, Copy, Debug)]
pub struct Reduce {
    /// What to sum.
    pub mode: ReduceMode,
    /// First operand.
    pub a: Buf,
    /// Offset of segment 0 in a.
    pub a_offset: usize,
    /// Distance between segments in a (0 broadcasts).
    pub a_stride: usize,
    /// Second operand (ignored by `Sum`; pass `a` again).
    pub b: Buf,
    /// Offset of segment 0 in b.
    pub b_offset: usize,
    /// Distance between segments in b (0 broadcasts).
    pub b_stride: usize,
    /// Number of segments.
    pub segments: usize,
    /// Elements per segment.
    pub seg_len: usize,
    /// Output buffer (different from a and b).
    pub out: Buf,
    /// Offset of the first result.
    pub out_offset: usize,
}

/// Scaled-sign compression with error feedback, in place (ALGORITHMS.md §5.8), per segment
/// s < `segments` of `len` elements at `offset + s·stride` of both buffers: with
/// `w = memory[…]` (the memory already holding e + z), `c = (‖w‖₁/len)·sign(w)` (sign(0) = 0)
/// goes to `out[…]` and `memory[…] ← w − c`. One segment is one tensor of one slab; the L1
/// norm is summed in a fixed order, so every backend is deterministic.
#[derive(Clone, Copy, Debug)]
pub struct SignCompress {
    /// e + z on input, the new memory e + z − c on output.
    pub memory: Buf,
    /// The compressed c (a different buffer from the memory).
    pub out: Buf,
    /// Offset of segment 0 (in both buffers).
    pub offset: usize,
    /// Distance between segments (in both buffers).
    pub stride: usize,
    /// Number of segments.
    pub segments: usize,
    /// Elements per segment ℓ.
    pub len: usize,
}

/// Per-tensor dot products of slab pairs (CGA's Gram entries, ALGORITHMS.md §5.9), one pass:
/// `out[c·n_tensors + k] = Σ_{e < len_k} x[p_c·stride + off_k + e] · x[q_c·stride + off_k + e]`
/// for pair c = (p_c, q_c) (`pairs[2c]`, `pairs[2c + 1]`) and tensor k = (off_k, len_k)
/// (`tensors[2k]`, `tensors[2k + 1]`).
#[derive(Clone, Copy, Debug)]
pub struct PairDots {
    /// The slabs.
    pub x: Buf,
    /// Floats per slab.
    pub stride: usize,
    /// Slab pairs, `2 × count` u32.
    pub pairs: Buf,
    /// Number of pairs.
    pub count: usize,
    /// The tensor table, `2 × n_tensors` u32 (offset, length within a slab).
    pub tensors: Buf,
    /// Number of tensors.
    pub n_tensors: usize,
    /// Output, `count × n_tensors` (a different buffer from x).
    pub out: Buf,
}

/// The operations every backend provides.
pub trait Backend {
    /// One line naming the backend (adapter, driver).
    fn describe(&self) -> String;
    /// Allocates a zero-filled buffer.
    fn alloc(&mut self, kind: BufKind, len: usize, label: &str) -> Result<Buf>;
    /// Checks, before anything is allocated, that a buffer of `len` elements can exist here
    /// (a GPU: the adapter's allocation and binding limits); `what` names it in the error.
    fn check_alloc(&self, kind: BufKind, len: usize, what: &str) -> Result<()> {
        let _ = (kind, len, what);
        Ok(())
    }
    /// Bytes of host memory a buffer of `len` elements takes here (0 where buffers live in a
    /// device's memory).
    fn host_bytes(&self, kind: BufKind, len: usize) -> u64 {
        let per = match kind {
            BufKind::F32 => 8,
            BufKind::U32 => 4,
            BufKind::U8 => 1,
        };
        per * len as u64
    }
    /// Writes reals at an element offset, ordered after all work recorded so far.
    fn write_f32(&mut self, buf: Buf, offset: usize, data: &[f32]) -> Result<()>;
    /// Writes reals given in f64, ordered after all work recorded so far: the CPU reference
    /// keeps them exactly, a GPU rounds them to f32.
    fn write_f64(&mut self, buf: Buf, offset: usize, data: &[f64]) -> Result<()> {
        let rounded: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        self.write_f32(buf, offset, &rounded)
    }
    /// Writes indices at an element offset, ordered after all work recorded so far.
    fn write_u32(&mut self, buf: Buf, offset: usize, data: &[u32]) -> Result<()>;
    /// Uploads bytes into a new buffer (datasets).
    fn upload_u8(&mut self, data: &[u8], label: &str) -> Result<Buf>;
    /// Finishes all recorded work and reads a real buffer.
    fn read_f32(&mut self, buf: Buf) -> Result<Vec<f64>>;
    /// Finishes all recorded work and reads an index buffer.
    fn read_u32(&mut self, buf: Buf) -> Result<Vec<u32>>;
    /// Copies a range of reals ([`CopyRange`]).
    fn copy(&mut self, op: &CopyRange) -> Result<()>;
    /// Minibatch gather.
    fn gather(&mut self, op: &Gather) -> Result<()>;
    /// Dense forward over all jobs.
    fn dense_forward(&mut self, op: &DenseForward) -> Result<()>;
    /// Dense backward-data over all jobs.
    fn dense_backward_data(&mut self, op: &DenseBackwardData) -> Result<()>;
    /// Dense backward-weights over all jobs.
    fn dense_backward_weights(&mut self, op: &DenseBackwardWeights) -> Result<()>;
    /// 2-D convolution forward over all jobs.
    fn conv_forward(&mut self, op: &ConvForward) -> Result<()>;
    /// 2-D convolution backward-data over all jobs.
    fn conv_backward_data(&mut self, op: &ConvBackwardData) -> Result<()>;
    /// 2-D convolution backward-weights over all jobs.
    fn conv_backward_weights(&mut self, op: &ConvBackwardWeights) -> Result<()>;
    /// Max or average pooling.
    fn pool(&mut self, op: &Pool) -> Result<()>;
    /// Pooling backward.
    fn pool_backward(&mut self, op: &PoolBackward) -> Result<()>;
    /// ReLU.
    fn relu(&mut self, op: &Relu) -> Result<()>;
    /// ReLU backward.
    fn relu_backward(&mut self, op: &ReluBackward) -> Result<()>;
    /// GroupNorm or EvoNorm-S0 forward over all jobs.
    fn norm_forward(&mut self, op: &NormForward) -> Result<()>;
    /// GroupNorm or EvoNorm-S0 backward over all jobs.
    fn norm_backward(&mut self, op: &NormBackward) -> Result<()>;
    /// Softmax cross-entropy over all jobs.
    fn softmax_xent(&mut self, op: &SoftmaxXent) -> Result<()>;
    /// Sparse mixing.
    fn mix(&mut self, op: &Mix) -> Result<()>;
    /// `y ← a·x + b·y`.
    fn axpby(&mut self, op: &Axpby) -> Result<()>;
    /// Writes one value into blocks of a buffer.
    fn fill(&mut self, op: &Fill) -> Result<()>;
    /// Copies strided blocks between two buffers.
    fn copy_strided(&mut self, op: &CopyStrided) -> Result<()>;
    /// Averages stacked vectors into one.
    fn mean(&mut self, op: &Mean) -> Result<()>;
    /// Local SGD / momentum step.
    fn local_step(&mut self, op: &LocalStep) -> Result<()>;
    /// Segmented reduction.
    fn reduce(&mut self, op: &Reduce) -> Result<()>;
    /// Scaled-sign compression with error feedback.
    fn sign_compress(&mut self, op: &SignCompress) -> Result<()>;
    /// Per-tensor dot products of slab pairs.
    fn pair_dots(&mut self, op: &PairDots) -> Result<()>;
    /// QG-Adam parameter step.
    fn adam_step(&mut self, op: &AdamStep) -> Result<()>;
    /// QG-Adam moment update.
    fn adam_moments(&mut self, op: &AdamMoments) -> Result<()>;
    /// Submits all recorded work (GPU: one command buffer, one submit).
    fn flush(&mut self) -> Result<()>;
    /// Work counters so far.
    fn counters(&self) -> Counters;
    /// The buffers held now.
    fn live_buffers(&self) -> LiveBuffers;
    /// Releases every buffer allocated after the first `mark` (a [`LiveBuffers::count`] taken
    /// earlier), so a scope's buffers (a training run's) go back in one call and memory does not
    /// grow with the number of runs. Recorded work is submitted first; handles to released
    /// buffers are invalid afterwards (their ids are reused).
    fn release_from(&mut self, mark: usize);
    /// Device time spent on recorded work since the last call, where the device can measure it
    /// (GPU timestamp queries); finishes all recorded work first.
    fn gpu_seconds(&mut self) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Uploads a sparse matrix (weights exact on the CPU reference, rounded to f32 on a GPU).
    fn upload_csr(&mut self, csr: &Csr, label: &str) -> Result<CsrBufs> {
        let rows = csr.n_rows();
        let nnz = csr.nnz().max(1);
        let row_ptr = self.alloc(BufKind::U32, rows + 1, &format!("{label}.row_ptr"))?;
        let col = self.alloc(BufKind::U32, nnz, &format!("{label}.col"))?;
        let weight = self.alloc(BufKind::F32, nnz, &format!("{label}.weight"))?;
        let bufs = CsrBufs {
            row_ptr,
            col,
            weight,
            rows,
            n_cols: csr.n_cols,
        };
        self.write_csr(&bufs, csr)?;
        Ok(bufs)
    }

    /// Overwrites a resident sparse matrix with one of the same size (time-varying graphs).
    fn write_csr(&mut self, bufs: &CsrBufs, csr: &Csr) -> Result<()> {
        if csr.n_rows() != bufs.rows || csr.nnz() > bufs.col.len || csr.n_cols != bufs.n_cols {
            return Err(Error::op(
                "write_csr",
                format!(
                    "matrix {}×{} with {} entries does not fit buffers for {}×{} with {}",
                    csr.n_rows(),
                    csr.n_cols,
                    csr.nnz(),
                    bufs.rows,
                    bufs.n_cols,
                    bufs.col.len
                ),
            ));
        }
        if let Some(&c) = csr.col.iter().find(|&&c| c as usize >= csr.n_cols) {
            return Err(Error::op(
                "write_csr",
                format!("column {c} ≥ {} columns", csr.n_cols),
            ));
        }
        self.write_u32(bufs.row_ptr, 0, &csr.row_ptr)?;
        self.write_u32(bufs.col, 0, &csr.col)?;
        self.write_csr_weights(bufs.weight, csr)
    }

    /// Writes a sparse matrix's weights. Backends that store reals in f32 (the default) round
    /// them so that every stochastic row still sums to exactly one in f32
    /// ([`crate::graph::f32_row_weights`]); the f64 reference keeps them exactly.
    fn write_csr_weights(&mut self, weight: Buf, csr: &Csr) -> Result<()> {
        self.write_f32(weight, 0, &crate::graph::f32_row_weights(csr))
    }
}

/// Checks that `len` elements at `offset` fit a buffer of the given kind.
pub(crate) fn check_write(
    op: &'static str,
    buf: Buf,
    kind: BufKind,
    offset: usize,
    len: usize,
) -> Result<()> {
    if buf.kind != kind {
        return Err(Error::op(
            op,
            format!("buffer holds {:?}, not {kind:?}", buf.kind),
        ));
    }
    if offset + len > buf.len {
        return Err(Error::op(
            op,
            format!(
                "{len} elements at offset {offset} overflow a buffer of {}",
                buf.len
            ),
        ));
    }
    Ok(())
}

fn need(op: &'static str, what: &str, buf: Buf, kind: BufKind, end: usize) -> Result<()> {
    if buf.kind != kind {
        return Err(Error::op(
            op,
            format!("{what} must hold {kind:?}, not {:?}", buf.kind),
        ));
    }
    if end > buf.len {
        return Err(Error::op(
            op,
            format!("{what} needs {end} elements but holds {}", buf.len),
        ));
    }
    Ok(())
}

fn distinct(op: &'static str, written: Buf, others: &[Buf]) -> Result<()> {
    if others.iter().any(|b| b.id == written.id) {
        return Err(Error::op(
            op,
            "an output buffer is also an input; use a separate buffer (double buffering)",
        ));
    }
    Ok(())
}

fn nonzero(op: &'static str, pairs: &[(&str, usize)]) -> Result<()> {
    for (name, v) in pairs {
        if *v == 0 {
            return Err(Error::op(op, format!("{name} must be positive")));
        }
    }
    Ok(())
}

/// Checks every job `(m, d)` of a list: the model agent below `n_models`, the input block (d
/// when addressed by data agent, the job itself otherwise) below `n_blocks`.
fn check_job_list(
    op: &'static str,
    ix: &HostIndices,
    jobs: Buf,
    n_jobs: usize,
    input_blocks: InputBlocks,
    n_models: usize,
    n_blocks: usize,
) -> Result<()> {
    let raw = ix.known(op, "jobs", jobs, 2 * n_jobs)?;
    for (j, pair) in raw.chunks_exact(2).enumerate() {
        let (m, d) = (pair[0] as usize, pair[1] as usize);
        let blk = match input_blocks {
            InputBlocks::ByData => d,
            InputBlocks::ByJob => j,
        };
        if m >= n_models || blk >= n_blocks {
            return Err(Error::op(
                op,
                format!(
                    "job {j} = ({m}, {d}) is out of range ({n_models} models, {n_blocks} input blocks)"
                ),
            ));
        }
    }
    Ok(())
}

impl Gather {
    /// Validates sizes, kinds and every sample index (`< ` the dataset size).
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "gather";
        nonzero(op, &[("rows", self.rows), ("dim", self.dim)])?;
        need(op, "index", self.index, BufKind::U32, self.rows)?;
        need(op, "x", self.x, BufKind::F32, self.rows * self.dim)?;
        need(op, "y", self.y, BufKind::U32, self.rows)?;
        need(op, "labels", self.labels, BufKind::U32, 1)?;
        need(
            op,
            "data",
            self.data,
            BufKind::U8,
            self.labels.len * self.dim,
        )?;
        let c = self.norm.channels;
        if c == 0 || c > MAX_NORM_CHANNELS || !self.dim.is_multiple_of(c) {
            return Err(Error::op(
                op,
                format!(
                    "{c} normalisation channels do not split {} features (1 to {MAX_NORM_CHANNELS}, dividing them)",
                    self.dim
                ),
            ));
        }
        if let Some((mean, std)) = self
            .norm
            .pairs()
            .find(|&(m, s)| !(s > 0.0 && s.is_finite() && m.is_finite()))
        {
            return Err(Error::op(
                op,
                format!("bad normalisation mean {mean} std {std}"),
            ));
        }
        distinct(op, self.x, &[self.y])?;
        let n = self.labels.len;
        let idx = ix.known(op, "index", self.index, self.rows)?;
        if let Some((r, s)) = idx.iter().enumerate().find(|(_, &s)| s as usize >= n) {
            return Err(Error::op(
                op,
                format!("sample index {s} of row {r} ≥ dataset size {n}"),
            ));
        }
        Ok(())
    }
}

impl DenseJobs {
    fn check(&self, op: &'static str) -> Result<()> {
        nonzero(
            op,
            &[
                ("n_jobs", self.n_jobs),
                ("batch", self.batch),
                ("in_dim", self.layer.in_dim),
                ("out_dim", self.layer.out_dim),
            ],
        )?;
        need(op, "jobs", self.jobs, BufKind::U32, 2 * self.n_jobs)?;
        if self.layer.b_off + self.layer.out_dim > self.stride
            || self.layer.w_off + self.layer.in_dim * self.layer.out_dim > self.layer.b_off
        {
            return Err(Error::op(op, "layer does not fit in the slab stride"));
        }
        Ok(())
    }

    fn check_jobs(
        &self,
        op: &'static str,
        ix: &HostIndices,
        n_models: usize,
        n_blocks: usize,
    ) -> Result<()> {
        check_job_list(
            op,
            ix,
            self.jobs,
            self.n_jobs,
            self.input_blocks,
            n_models,
            n_blocks,
        )
    }

    /// Input blocks a layer-input buffer holds.
    fn input_blocks(&self, input: Buf) -> usize {
        input.len / (self.batch * self.layer.in_dim)
    }

    /// Elements a layer-input buffer must hold: data blocks are bounded by the job list's
    /// largest data agent, which the host knows; we require room for `n_jobs` blocks.
    fn input_len(&self) -> usize {
        self.n_jobs * self.batch * self.layer.in_dim
    }

    /// Checks a layer-input buffer: `n_jobs` blocks when addressed by job; when addressed by data
    /// agent, at least one block (the CPU reference checks each job's block at execution).
    fn check_input(&self, op: &'static str, input: Buf) -> Result<()> {
        let len = match self.input_blocks {
            InputBlocks::ByJob => self.input_len(),
            InputBlocks::ByData => self.batch * self.layer.in_dim,
        };
        need(op, "input", input, BufKind::F32, len)
    }

    /// Elements of a per-job layer-output buffer (activations or their gradients).
    fn output_len(&self) -> usize {
        self.n_jobs * self.batch * self.layer.out_dim
    }

    fn params_len(&self) -> usize {
        self.stride
    }
}

impl DenseForward {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "dense_forward";
        let s = &self.shape;
        s.check(op)?;
        need(op, "params", self.params, BufKind::F32, s.params_len())?;
        s.check_input(op, self.input)?;
        need(
            op,
            "output",
            self.output,
            BufKind::F32,
            s.n_jobs * s.batch * s.layer.out_dim,
        )?;
        distinct(op, self.output, &[self.params, self.input, s.jobs])?;
        s.check_jobs(
            op,
            ix,
            self.params.len / s.stride,
            s.input_blocks(self.input),
        )
    }
}

impl DenseBackwardData {
    /// Validates sizes, kinds and the job list.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "dense_backward_data";
        let s = &self.shape;
        s.check(op)?;
        if s.input_blocks != InputBlocks::ByJob {
            return Err(Error::op(
                op,
                "the first layer has no input gradient to compute",
            ));
        }
        need(op, "params", self.params, BufKind::F32, s.params_len())?;
        need(op, "dz", self.dz, BufKind::F32, s.output_len())?;
        need(op, "input", self.input, BufKind::F32, s.input_len())?;
        need(op, "dx", self.dx, BufKind::F32, s.input_len())?;
        distinct(op, self.dx, &[self.params, self.dz, self.input, s.jobs])?;
        s.check_jobs(op, ix, self.params.len / s.stride, s.n_jobs)
    }
}

impl DenseBackwardWeights {
    /// Validates sizes, kinds and the job list (whose model agents this op does not read).
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "dense_backward_weights";
        let s = &self.shape;
        s.check(op)?;
        need(op, "dz", self.dz, BufKind::F32, s.output_len())?;
        s.check_input(op, self.input)?;
        need(op, "grads", self.grads, BufKind::F32, s.n_jobs * s.stride)?;
        distinct(op, self.grads, &[self.dz, self.input, s.jobs])?;
        s.check_jobs(op, ix, usize::MAX, s.input_blocks(self.input))
    }
}

impl SoftmaxXent {
    /// Validates sizes, kinds, the job list and every label the jobs read (`< classes`).
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "softmax_xent";
        nonzero(
            op,
            &[
                ("n_jobs", self.n_jobs),
                ("batch", self.batch),
                ("classes", self.classes),
            ],
        )?;
        let rows = self.n_jobs * self.batch;
        need(op, "jobs", self.jobs, BufKind::U32, 2 * self.n_jobs)?;
        need(op, "logits", self.logits, BufKind::F32, rows * self.classes)?;
        need(op, "labels", self.labels, BufKind::U32, self.batch)?;
        need(
            op,
            "dlogits",
            self.dlogits,
            BufKind::F32,
            rows * self.classes,
        )?;
        need(op, "stats", self.stats, BufKind::F32, 2 * rows)?;
        distinct(op, self.dlogits, &[self.logits, self.stats])?;
        distinct(op, self.stats, &[self.logits])?;
        let jobs = ix.known(op, "jobs", self.jobs, 2 * self.n_jobs)?;
        let labels = ix.known(op, "labels", self.labels, self.labels.len)?;
        for (j, pair) in jobs.chunks_exact(2).enumerate() {
            let d = pair[1] as usize;
            let Some(rows) = labels.get(d * self.batch..(d + 1) * self.batch) else {
                return Err(Error::op(
                    op,
                    format!("job {j}'s data agent {d} has no labels"),
                ));
            };
            if let Some((b, l)) = rows
                .iter()
                .enumerate()
                .find(|(_, &l)| l as usize >= self.classes)
            {
                return Err(Error::op(
                    op,
                    format!(
                        "label {l} of row {} is not below the {} classes",
                        d * self.batch + b,
                        self.classes
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Mix {
    /// Validates sizes, kinds and the matrix structure (nondecreasing row offsets within the
    /// entries, every column below `n_cols`).
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "mix";
        let c = &self.csr;
        need(op, "row_ptr", c.row_ptr, BufKind::U32, c.rows + 1)?;
        need(op, "col", c.col, BufKind::U32, 1)?;
        need(op, "weight", c.weight, BufKind::F32, c.col.len)?;
        let row_ptr = ix.known(op, "row_ptr", c.row_ptr, c.rows + 1)?;
        let nnz = row_ptr[c.rows] as usize;
        if nnz > c.col.len || row_ptr.windows(2).any(|p| p[0] > p[1]) {
            return Err(Error::op(
                op,
                format!(
                    "malformed CSR: the row offsets decrease or pass the {} entries",
                    c.col.len
                ),
            ));
        }
        let col = ix.known(op, "col", c.col, nnz)?;
        if let Some((e, k)) = col
            .iter()
            .enumerate()
            .find(|(_, &k)| k as usize >= c.n_cols)
        {
            return Err(Error::op(
                op,
                format!(
                    "malformed CSR: column {k} of entry {e} ≥ {} columns",
                    c.n_cols
                ),
            ));
        }
        if self.len == 0 || c.rows == 0 {
            return Ok(());
        }
        let in_end = self.in_offset + (c.n_cols - 1) * self.in_stride + self.len;
        need(op, "input", self.input, BufKind::F32, in_end)?;
        let out_end = self.out_offset + (c.rows - 1) * self.out_stride + self.len;
        need(op, "output", self.output, BufKind::F32, out_end)?;
        distinct(op, self.output, &[self.input])
    }
}

impl Axpby {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        need("axpby", "x", self.x, BufKind::F32, self.len)?;
        need("axpby", "y", self.y, BufKind::F32, self.len)?;
        distinct("axpby", self.y, &[self.x])
    }
}

/// Last element index + 1 of `count` blocks of `len` elements at (offset, stride, step).
fn strided_end(offset: usize, stride: usize, step: usize, count: usize, len: usize) -> usize {
    if count == 0 || len == 0 {
        0
    } else {
        offset + (count - 1) * stride + (len - 1) * step + 1
    }
}

impl Fill {
    /// Validates sizes, kinds and the value.
    pub fn check(&self) -> Result<()> {
        let end = strided_end(self.offset, self.stride, 1, self.count, self.len);
        need("fill", "y", self.y, BufKind::F32, end)?;
        if !self.value.is_finite() {
            return Err(Error::op(
                "fill",
                format!("value {} is not finite", self.value),
            ));
        }
        Ok(())
    }
}

impl CopyStrided {
    /// Validates sizes, kinds and steps.
    pub fn check(&self) -> Result<()> {
        let op = "copy_strided";
        nonzero(
            op,
            &[("src_step", self.src_step), ("dst_step", self.dst_step)],
        )?;
        let (c, l) = (self.count, self.len);
        let src_end = strided_end(self.src_offset, self.src_stride, self.src_step, c, l);
        let dst_end = strided_end(self.dst_offset, self.dst_stride, self.dst_step, c, l);
        need(op, "src", self.src, BufKind::F32, src_end)?;
        need(op, "dst", self.dst, BufKind::F32, dst_end)?;
        distinct(op, self.dst, &[self.src])
    }
}

impl Mean {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "mean";
        nonzero(op, &[("count", self.count)])?;
        let src_end = strided_end(self.src_offset, self.src_stride, 1, self.count, self.len);
        need(op, "src", self.src, BufKind::F32, src_end)?;
        need(
            op,
            "dst",
            self.dst,
            BufKind::F32,
            self.dst_offset + self.len,
        )?;
        distinct(op, self.dst, &[self.src])
    }
}

impl LocalStep {
    /// Validates sizes, kinds and hyperparameters.
    pub fn check(&self) -> Result<()> {
        let op = "local_step";
        need(op, "params", self.params, BufKind::F32, self.len)?;
        need(op, "grads", self.grads, BufKind::F32, self.len)?;
        need(
            op,
            "momentum_buf",
            self.momentum_buf,
            BufKind::F32,
            self.len,
        )?;
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !v.is_finite() {
                return Err(Error::op(op, format!("{name} is {v}")));
            }
        }
        distinct(op, self.params, &[self.grads, self.momentum_buf])?;
        distinct(op, self.momentum_buf, &[self.grads])
    }
}

impl AdamStep {
    /// Validates sizes, kinds and hyperparameters.
    pub fn check(&self) -> Result<()> {
        let op = "adam_step";
        for (what, b) in [
            ("params", self.params),
            ("grads", self.grads),
            ("m1", self.m1),
            ("m2", self.m2),
        ] {
            need(op, what, b, BufKind::F32, self.len)?;
        }
        let hyper = [
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.bc1,
            self.bc2,
            self.weight_decay,
        ];
        if hyper.iter().any(|v| !v.is_finite())
            || self.bc1 <= 0.0
            || self.bc2 <= 0.0
            || self.eps <= 0.0
        {
            return Err(Error::op(op, format!("bad hyperparameters {hyper:?}")));
        }
        distinct(op, self.params, &[self.grads, self.m1, self.m2])
    }
}

impl AdamMoments {
    /// Validates sizes, kinds and hyperparameters.
    pub fn check(&self) -> Result<()> {
        let op = "adam_moments";
        let len = self.agents * self.stride;
        nonzero(op, &[("agents", self.agents), ("stride", self.stride)])?;
        need(op, "delta", self.delta, BufKind::F32, len)?;
        need(op, "sq_norms", self.sq_norms, BufKind::F32, self.agents)?;
        need(op, "m1", self.m1, BufKind::F32, len)?;
        need(op, "m2", self.m2, BufKind::F32, len)?;
        if !(self.beta1.is_finite() && self.beta2.is_finite()) {
            return Err(Error::op(op, "β1 and β2 must be finite"));
        }
        distinct(op, self.m1, &[self.delta, self.sq_norms, self.m2])?;
        distinct(op, self.m2, &[self.delta, self.sq_norms])
    }
}

impl PairDots {
    /// Validates kinds, sizes and (with the host copies of the index buffers) every index.
    pub fn check(&self, ix: &HostIndices) -> Result<()> {
        let op = "pair_dots";
        need(
            op,
            "out",
            self.out,
            BufKind::F32,
            self.count * self.n_tensors,
        )?;
        need(op, "pairs", self.pairs, BufKind::U32, 2 * self.count)?;
        need(
            op,
            "tensors",
            self.tensors,
            BufKind::U32,
            2 * self.n_tensors,
        )?;
        distinct(op, self.out, &[self.x])?;
        let pairs = ix.known(op, "pairs", self.pairs, 2 * self.count)?;
        let tensors = ix.known(op, "tensors", self.tensors, 2 * self.n_tensors)?;
        let slabs = self.x.len / self.stride.max(1);
        if let Some(&p) = pairs.iter().find(|&&p| p as usize >= slabs) {
            return Err(Error::op(op, format!("pair slab {p} ≥ {slabs} slabs")));
        }
        for t in tensors.chunks_exact(2) {
            if t[0] as usize + t[1] as usize > self.stride {
                return Err(Error::op(
                    op,
                    format!("tensor {t:?} exceeds the stride {}", self.stride),
                ));
            }
        }
        Ok(())
    }
}

impl SignCompress {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "sign_compress";
        if self.segments == 0 || self.len == 0 {
            return Ok(());
        }
        let end = self.offset + (self.segments - 1) * self.stride + self.len;
        need(op, "memory", self.memory, BufKind::F32, end)?;
        need(op, "out", self.out, BufKind::F32, end)?;
        if self.segments > 1 && self.stride < self.len {
            return Err(Error::op(op, "segments overlap (stride < len)"));
        }
        distinct(op, self.out, &[self.memory])
    }
}

impl Reduce {
    /// Validates sizes and kinds.
    pub fn check(&self) -> Result<()> {
        let op = "reduce";
        need(
            op,
            "out",
            self.out,
            BufKind::F32,
            self.out_offset + self.segments,
        )?;
        if self.segments == 0 || self.seg_len == 0 {
            return Ok(());
        }
        let end = |off: usize, stride: usize| off + (self.segments - 1) * stride + self.seg_len;
        need(
            op,
            "a",
            self.a,
            BufKind::F32,
            end(self.a_offset, self.a_stride),
        )?;
        if self.mode != ReduceMode::Sum {
            need(
                op,
                "b",
                self.b,
                BufKind::F32,
                end(self.b_offset, self.b_stride),
            )?;
        }
        distinct(op, self.out, &[self.a, self.b])
    }
}
