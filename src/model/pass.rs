//! Forward and backward passes of a [`Model`] over a job list, composed from the backend's
//! kernels: one call per layer and direction, whatever the number of agents or jobs (plus one
//! `axpby` per residual sum forward and one per second consumer backward).
//!
//! Every node has an activation buffer and a gradient buffer of `n_jobs × batch` samples. A
//! dense layer with a fused ReLU keeps the gradient with respect to its pre-activation (the
//! next dense layer's backward applies the mask), as the MLP always did. A residual sum works
//! in place in its main branch's buffers. Backward runs the nodes in reverse: a node's input
//! gradient is written directly by its first consumer, and added by later ones through a
//! scratch buffer (`axpby`); a residual sum hands its gradient on to the main branch for free
//! (shared buffer) and to the shortcut by one `axpby` (or a copy if nothing else feeds it).

use crate::backend::*;
use crate::error::{Error, Result};
use crate::model::{Input, Layer, Model};

/// A gathered minibatch: `agents × batch` rows of features and labels, block per agent.
#[derive(Clone, Copy, Debug)]
pub struct Minibatch {
    /// Sample index of every row (written by the host each step).
    pub index: Buf,
    /// Normalised features, `agents × batch × dim`.
    pub x: Buf,
    /// Labels, `agents × batch`.
    pub y: Buf,
    /// Data blocks (agents).
    pub agents: usize,
    /// Rows per block.
    pub batch: usize,
}

impl Minibatch {
    /// Allocates the buffers for `agents` blocks of `batch` rows of width `dim`.
    pub fn new(be: &mut dyn Backend, agents: usize, batch: usize, dim: usize) -> Result<Self> {
        let rows = agents * batch;
        Ok(Minibatch {
            index: be.alloc(BufKind::U32, rows, "batch.index")?,
            x: be.alloc(BufKind::F32, rows * dim, "batch.x")?,
            y: be.alloc(BufKind::U32, rows, "batch.y")?,
            agents,
            batch,
        })
    }
}

/// Uploads a job list of (model, data) pairs as the kernels read it (`[m0, d0, m1, d1, …]`).
pub fn upload_jobs(be: &mut dyn Backend, jobs: &[(usize, usize)], label: &str) -> Result<Buf> {
    let flat: Vec<u32> = jobs
        .iter()
        .flat_map(|&(m, d)| [m as u32, d as u32])
        .collect();
    let buf = be.alloc(BufKind::U32, flat.len(), label)?;
    be.write_u32(buf, 0, &flat)?;
    Ok(buf)
}

/// Which buffers of a pass a node owns: a residual sum shares its main branch's.
fn owner(model: &Model, k: usize) -> usize {
    match (model.nodes()[k].layer, model.nodes()[k].input) {
        (Layer::Add { .. }, Input::Node(i)) => owner(model, i),
        _ => k,
    }
}

/// Elements of every buffer a pass of `model` allocates for tiles of `tile` jobs of `batch`
/// samples, with its name, in allocation order (activation and gradient of each node that owns
/// buffers, the backward scratch, the loss statistics, and, when the job list is tiled, the
/// tile's gradient slabs of `stride` floats).
fn buffer_plan(
    model: &Model,
    batch: usize,
    tile: usize,
    backward: bool,
    tiled: bool,
) -> Vec<(String, usize)> {
    let rows = tile * batch;
    let mut plan = Vec::new();
    for (k, n) in model.nodes().iter().enumerate() {
        if owner(model, k) == k {
            plan.push((format!("the output of layer {k}"), rows * n.output.len()));
            if backward || k + 1 == model.nodes().len() {
                plan.push((
                    format!("the output gradient of layer {k}"),
                    rows * n.output.len(),
                ));
            }
        }
    }
    if backward {
        if let Some(s) = scratch_len(model) {
            plan.push(("the backward scratch".into(), rows * s));
        }
        if tiled {
            plan.push(("a tile's gradient slabs".into(), tile * model.stride()));
        }
    }
    plan.push(("the loss statistics".into(), 2 * rows));
    plan
}

/// Per-sample size of the scratch a node's second consumer writes its input gradient to
/// (None when every node feeds one consumer).
fn scratch_len(model: &Model) -> Option<usize> {
    let mut consumers = vec![0usize; model.nodes().len()];
    for n in model.nodes() {
        if let Input::Node(i) = n.input {
            consumers[owner(model, i)] += 1;
        }
    }
    (0..model.nodes().len())
        .filter(|&k| consumers[k] > 1)
        .map(|k| model.nodes()[k].output.len())
        .max()
}

/// How a pass is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassOptions {
    /// Allocate the gradient buffers (false: a forward-only pass, the evaluation's).
    pub backward: bool,
    /// At most this many jobs per tile (None: as many as the backend's buffer limits allow).
    pub max_tile_jobs: Option<usize>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            backward: true,
            max_tile_jobs: None,
        }
    }
}

/// A contiguous range of the job list that runs through the shared buffers at once.
#[derive(Clone, Copy, Debug)]
struct Tile {
    /// The tile's job list.
    jobs: Buf,
    /// Its first job in the whole list.
    start: usize,
    /// Its number of jobs.
    len: usize,
}

/// A layer's job-list shape for tile `t` of a pass (the fields every `*Jobs` struct shares,
/// plus any others given).
macro_rules! job_shape {
    ($ty:ident, $pass:expr, $t:expr, $layer:expr $(, $field:ident: $value:expr)*) => {
        $ty {
            jobs: $t.jobs,
            n_jobs: $t.len,
            batch: $pass.batch,
            layer: $layer,
            stride: $pass.model.stride(),
            $($field: $value,)*
        }
    };
}

/// Activation and gradient buffers for one job list; reused every step.
///
/// When the activations of the whole list would pass the backend's buffer limits (a GPU's
/// storage-binding size), the list is cut into tiles of as many jobs as fit, which run one
/// after the other through the same buffers: the calls per step then grow with the number of
/// tiles (the only case where they depend on the jobs), and each tile's loss statistics and
/// gradient slabs are copied into place.
pub struct Pass {
    model: Model,
    batch: usize,
    n_jobs: usize,
    /// The job list: (model agent, data agent) pairs.
    pub jobs: Buf,
    tiles: Vec<Tile>,
    /// Output of each node (a residual sum's is its main branch's), one tile's worth.
    acts: Vec<Buf>,
    /// Gradient with respect to each node's output (a fused-ReLU dense layer's: its
    /// pre-activation); for a forward-only pass, the logits' only.
    grads: Vec<Buf>,
    scratch: Option<Buf>,
    backward: bool,
    /// A tile's statistics and gradient slabs before they are copied into place (tiled only).
    tile_out: Option<(Buf, Option<Buf>)>,
    /// Per-row loss and hit planes (see [`SoftmaxXent`]) of the last tile run.
    pub stats: Buf,
    /// Per-job mean-loss numerator and hit count: `[loss_sum(j)..., hits(j)...]`.
    pub job_stats: Buf,
}

impl Pass {
    /// Allocates a pass (forward and backward) for a job list of (model agent, data agent)
    /// pairs.
    pub fn new(
        be: &mut dyn Backend,
        model: &Model,
        batch: usize,
        jobs: &[(usize, usize)],
    ) -> Result<Self> {
        Self::with_options(be, model, batch, jobs, PassOptions::default())
    }

    /// The most jobs one tile can hold on `be` (the whole list when it fits), checked before
    /// anything is allocated ([`Backend::check_alloc`] on every buffer). When not even one job
    /// fits, the error names the model, the buffer, the batch, the jobs and their agents.
    pub fn tile_jobs(
        be: &dyn Backend,
        model: &Model,
        batch: usize,
        jobs: &[(usize, usize)],
        opts: PassOptions,
    ) -> Result<usize> {
        let n = jobs.len().max(1);
        let cap = opts.max_tile_jobs.unwrap_or(n).clamp(1, n);
        let fits = |tile: usize| {
            buffer_plan(model, batch, tile, opts.backward, tile < n)
                .iter()
                .all(|(_, len)| be.check_alloc(BufKind::F32, *len, "").is_ok())
        };
        if fits(cap) {
            return Ok(cap);
        }
        let mut agents: Vec<usize> = jobs.iter().map(|j| j.0).collect();
        agents.sort_unstable();
        agents.dedup();
        for (what, len) in buffer_plan(model, batch, 1, opts.backward, n > 1) {
            be.check_alloc(
                BufKind::F32,
                len,
                &format!(
                    "{what} of model {} for batch {batch} (one job of the {n} over {} agents; \
                     a pass tiles its jobs, but one job must fit)",
                    model.name(),
                    agents.len()
                ),
            )?;
        }
        // One job fits, `cap` does not: the largest count in between that fits.
        let (mut lo, mut hi) = (1, cap);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Checks, before anything is allocated, that a pass over `jobs` can exist on `be` (see
    /// [`Pass::tile_jobs`]).
    pub fn check_fits(
        be: &dyn Backend,
        model: &Model,
        batch: usize,
        jobs: &[(usize, usize)],
        backward: bool,
    ) -> Result<()> {
        let opts = PassOptions {
            backward,
            max_tile_jobs: None,
        };
        Self::tile_jobs(be, model, batch, jobs, opts).map(|_| ())
    }

    /// Allocates a pass with explicit options.
    pub fn with_options(
        be: &mut dyn Backend,
        model: &Model,
        batch: usize,
        jobs: &[(usize, usize)],
        opts: PassOptions,
    ) -> Result<Self> {
        if jobs.is_empty() || batch == 0 {
            return Err(Error::param(
                "jobs/batch",
                "a pass needs at least one job and one row",
            ));
        }
        if model.nodes().is_empty() {
            return Err(Error::param("model", "a pass needs at least one layer"));
        }
        let backward = opts.backward;
        let tile = Self::tile_jobs(be, model, batch, jobs, opts)?;
        let n_jobs = jobs.len();
        let rows = tile * batch;
        let job_buf = upload_jobs(be, jobs, "pass.jobs")?;
        let tiles = if tile == n_jobs {
            vec![Tile {
                jobs: job_buf,
                start: 0,
                len: n_jobs,
            }]
        } else {
            let mut tiles = Vec::new();
            for (t, chunk) in jobs.chunks(tile).enumerate() {
                tiles.push(Tile {
                    jobs: upload_jobs(be, chunk, &format!("pass.tile{t}.jobs"))?,
                    start: t * tile,
                    len: chunk.len(),
                });
            }
            tiles
        };
        let last = model.nodes().len() - 1;
        let mut acts: Vec<Buf> = Vec::new();
        let mut grads: Vec<Buf> = Vec::new();
        for (k, n) in model.nodes().iter().enumerate() {
            let o = owner(model, k);
            if o != k {
                acts.push(acts[o]);
                grads.push(grads[o]);
                continue;
            }
            let len = rows * n.output.len();
            acts.push(be.alloc(BufKind::F32, len, &format!("pass.act{k}"))?);
            if backward || k == last {
                grads.push(be.alloc(BufKind::F32, len, &format!("pass.dz{k}"))?);
            } else {
                grads.push(acts[k]);
            }
        }
        let scratch = match scratch_len(model).filter(|_| backward) {
            Some(s) => Some(be.alloc(BufKind::F32, rows * s, "pass.scratch")?),
            None => None,
        };
        let tile_out = if tiles.len() > 1 {
            let stats = be.alloc(BufKind::F32, 2 * tile, "pass.tile_stats")?;
            let slabs = match backward {
                true => Some(be.alloc(BufKind::F32, tile * model.stride(), "pass.tile_grads")?),
                false => None,
            };
            Some((stats, slabs))
        } else {
            None
        };
        Ok(Pass {
            model: model.clone(),
            batch,
            n_jobs,
            jobs: job_buf,
            tiles,
            acts,
            grads,
            scratch,
            backward,
            tile_out,
            stats: be.alloc(BufKind::F32, 2 * rows, "pass.stats")?,
            job_stats: be.alloc(BufKind::F32, 2 * n_jobs, "pass.job_stats")?,
        })
    }

    /// The model the pass runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of jobs.
    pub fn n_jobs(&self) -> usize {
        self.n_jobs
    }

    /// Number of tiles the job list runs in (1 unless the activations pass the backend's
    /// limits).
    pub fn n_tiles(&self) -> usize {
        self.tiles.len()
    }

    /// The logits buffer (`tile jobs × batch × classes`: all jobs' unless tiled).
    pub fn logits(&self) -> Buf {
        *self.acts.last().expect("at least one layer")
    }

    fn input_blocks(input: Input) -> InputBlocks {
        match input {
            Input::Data => InputBlocks::ByData,
            Input::Node(_) => InputBlocks::ByJob,
        }
    }

    fn input(&self, input: Input, mb: &Minibatch) -> Buf {
        match input {
            Input::Data => mb.x,
            Input::Node(i) => self.acts[i],
        }
    }

    fn dense_shape(&self, t: &Tile, l: crate::model::DenseLayer, input: Input) -> DenseJobs {
        job_shape!(DenseJobs, self, t, l, input_blocks: Self::input_blocks(input))
    }

    fn conv_shape(&self, t: &Tile, l: ConvLayer, input: Input) -> ConvJobs {
        job_shape!(ConvJobs, self, t, l, input_blocks: Self::input_blocks(input))
    }

    fn norm_shape(&self, t: &Tile, l: NormLayer) -> NormJobs {
        job_shape!(NormJobs, self, t, l)
    }

    /// Records the forward pass and the loss (loss, d-logits, per-job loss sum and hits) of
    /// every job (tile by tile when tiled: the activations then hold the last tile's).
    pub fn record_forward(&self, be: &mut dyn Backend, params: Buf, mb: &Minibatch) -> Result<()> {
        for t in &self.tiles {
            self.forward_tile(be, t, params, mb)?;
        }
        Ok(())
    }

    /// Records the gradients of every job: job j's gradient of its mean loss goes to slab j of
    /// `grads`, with the loss statistics as [`Pass::record_forward`] leaves them. Untiled, this
    /// is [`Pass::record_forward`] then [`Pass::record_backward`]; tiled, each tile's forward
    /// and backward run in turn.
    pub fn record_gradients(
        &self,
        be: &mut dyn Backend,
        params: Buf,
        mb: &Minibatch,
        grads: Buf,
    ) -> Result<()> {
        if self.tiles.len() == 1 {
            self.record_forward(be, params, mb)?;
            return self.record_backward(be, params, mb, grads);
        }
        let slabs = self
            .tile_out
            .and_then(|(_, g)| g)
            .ok_or_else(|| Error::param("pass", "a forward-only pass has no backward"))?;
        let stride = self.model.stride();
        for t in &self.tiles {
            self.forward_tile(be, t, params, mb)?;
            self.backward_tile(be, t, params, mb, slabs)?;
            be.copy(&CopyRange {
                src: slabs,
                src_offset: 0,
                dst: grads,
                dst_offset: t.start * stride,
                len: t.len * stride,
            })?;
        }
        Ok(())
    }

    fn forward_tile(
        &self,
        be: &mut dyn Backend,
        t: &Tile,
        params: Buf,
        mb: &Minibatch,
    ) -> Result<()> {
        let rows = t.len * self.batch;
        for (k, n) in self.model.nodes().iter().enumerate() {
            let (input, output) = (self.input(n.input, mb), self.acts[k]);
            match n.layer {
                Layer::Dense(l) => be.dense_forward(&DenseForward {
                    shape: self.dense_shape(t, l, n.input),
                    params,
                    input,
                    output,
                })?,
                Layer::Conv(l) => be.conv_forward(&ConvForward {
                    shape: self.conv_shape(t, l, n.input),
                    params,
                    input,
                    output,
                })?,
                Layer::Pool(l) => be.pool(&Pool {
                    layer: l,
                    samples: rows,
                    x: input,
                    y: output,
                })?,
                Layer::Relu(s) => be.relu(&Relu {
                    x: input,
                    y: output,
                    len: rows * s.len(),
                })?,
                Layer::Norm(l) => be.norm_forward(&NormForward {
                    shape: self.norm_shape(t, l),
                    params,
                    x: input,
                    y: output,
                })?,
                Layer::Add { other, shape } => be.axpby(&Axpby {
                    x: self.acts[other],
                    y: output,
                    a: 1.0,
                    b: 1.0,
                    len: rows * shape.len(),
                })?,
            }
        }
        let last = self.model.nodes().len() - 1;
        be.softmax_xent(&SoftmaxXent {
            jobs: t.jobs,
            n_jobs: t.len,
            batch: self.batch,
            classes: self.model.classes(),
            logits: self.acts[last],
            labels: mb.y,
            dlogits: self.grads[last],
            stats: self.stats,
        })?;
        be.reduce(&Reduce {
            mode: ReduceMode::Sum,
            a: self.stats,
            a_offset: 0,
            a_stride: self.batch,
            b: self.stats,
            b_offset: 0,
            b_stride: 0,
            segments: 2 * t.len,
            seg_len: self.batch,
            out: self.tile_out.map_or(self.job_stats, |o| o.0),
            out_offset: 0,
        })?;
        if let Some((tile_stats, _)) = self.tile_out {
            // [loss(tile)..., hits(tile)...] → the tile's places in both planes.
            for (src_offset, dst_offset) in [(0, t.start), (t.len, self.n_jobs + t.start)] {
                be.copy(&CopyRange {
                    src: tile_stats,
                    src_offset,
                    dst: self.job_stats,
                    dst_offset,
                    len: t.len,
                })?;
            }
        }
        Ok(())
    }

    /// Records the backward pass after [`Pass::record_forward`]: job j's gradient of its mean
    /// loss goes to slab j of `grads`. A tiled pass records both with
    /// [`Pass::record_gradients`] instead.
    pub fn record_backward(
        &self,
        be: &mut dyn Backend,
        params: Buf,
        mb: &Minibatch,
        grads: Buf,
    ) -> Result<()> {
        if !self.backward {
            return Err(Error::param("pass", "a forward-only pass has no backward"));
        }
        match self.tiles.as_slice() {
            [t] => self.backward_tile(be, t, params, mb, grads),
            _ => Err(Error::param(
                "pass",
                "a tiled pass records its backward with record_gradients",
            )),
        }
    }

    fn backward_tile(
        &self,
        be: &mut dyn Backend,
        t: &Tile,
        params: Buf,
        mb: &Minibatch,
        grads: Buf,
    ) -> Result<()> {
        let nodes = self.model.nodes();
        let rows = t.len * self.batch;
        // Whether each buffer owner's gradient has been written this pass, and the residual
        // sums' gradients still to be added to a shortcut's (by owner).
        let mut written = vec![false; nodes.len()];
        written[owner(&self.model, nodes.len() - 1)] = true;
        let mut pending: Vec<Vec<Buf>> = vec![Vec::new(); nodes.len()];
        // Where each owner's output gradient is read from: its own buffer, or a residual sum's
        // when that sum is its only consumer.
        let mut dy_of: Vec<Buf> = self.grads.clone();
        for k in (0..nodes.len()).rev() {
            let n = nodes[k];
            let own = owner(&self.model, k);
            let len = rows * n.output.len();
            // Every consumer of this node has run: its gradient is complete once the residual
            // sums it feeds as a shortcut are added.
            let sums = std::mem::take(&mut pending[own]);
            if !written[own] && sums.len() == 1 {
                dy_of[own] = sums[0];
                written[own] = true;
            } else {
                for src in sums {
                    if written[own] {
                        be.axpby(&Axpby {
                            x: src,
                            y: self.grads[own],
                            a: 1.0,
                            b: 1.0,
                            len,
                        })?;
                    } else {
                        be.copy(&CopyRange::whole(src, self.grads[own], len))?;
                        written[own] = true;
                    }
                }
            }
            let dy = dy_of[own];
            let input = self.input(n.input, mb);
            if let Layer::Add { other, .. } = n.layer {
                pending[owner(&self.model, other)].push(dy);
                continue;
            }
            // Parameter gradients.
            match n.layer {
                Layer::Dense(l) => be.dense_backward_weights(&DenseBackwardWeights {
                    shape: self.dense_shape(t, l, n.input),
                    dz: dy,
                    input,
                    grads,
                })?,
                Layer::Conv(l) => be.conv_backward_weights(&ConvBackwardWeights {
                    shape: self.conv_shape(t, l, n.input),
                    dy,
                    input,
                    grads,
                })?,
                _ => {}
            }
            let Input::Node(i) = n.input else {
                continue;
            };
            // The input gradient: straight into the input's buffer, or added through the scratch.
            let target = owner(&self.model, i);
            let first = !written[target];
            let dx = if first {
                self.grads[target]
            } else {
                self.scratch
                    .ok_or_else(|| Error::param("pass", "no scratch buffer"))?
            };
            match n.layer {
                Layer::Dense(l) => be.dense_backward_data(&DenseBackwardData {
                    shape: self.dense_shape(t, l, n.input),
                    params,
                    dz: dy,
                    input,
                    relu_mask: matches!(nodes[i].layer, Layer::Dense(p) if p.relu),
                    dx,
                })?,
                Layer::Conv(l) => be.conv_backward_data(&ConvBackwardData {
                    shape: self.conv_shape(t, l, n.input),
                    params,
                    dy,
                    dx,
                })?,
                Layer::Pool(l) => be.pool_backward(&PoolBackward {
                    layer: l,
                    samples: rows,
                    x: input,
                    dy,
                    dx,
                })?,
                Layer::Relu(s) => be.relu_backward(&ReluBackward {
                    y: self.acts[k],
                    dy,
                    dx,
                    len: rows * s.len(),
                })?,
                Layer::Norm(l) => be.norm_backward(&NormBackward {
                    shape: self.norm_shape(t, l),
                    params,
                    x: input,
                    dy,
                    dx,
                    grads,
                })?,
                Layer::Add { .. } => unreachable!("handled above"),
            }
            if first {
                written[target] = true;
            } else {
                be.axpby(&Axpby {
                    x: dx,
                    y: self.grads[target],
                    a: 1.0,
                    b: 1.0,
                    len: rows * nodes[i].output.len(),
                })?;
            }
        }
        Ok(())
    }
}
