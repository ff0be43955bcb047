//! Forward and backward passes of an [`Mlp`] over a job list, composed from the backend's
//! kernels: one dispatch per layer and direction, whatever the number of agents or jobs.

use crate::backend::*;
use crate::error::{Error, Result};
use crate::model::Mlp;

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

/// Activation and gradient buffers for one job list; reused every step.
pub struct Pass {
    model: Mlp,
    batch: usize,
    n_jobs: usize,
    /// The job list: (model agent, data agent) pairs.
    pub jobs: Buf,
    /// Output of each layer, `n_jobs × batch × out`.
    acts: Vec<Buf>,
    /// Gradient with respect to each layer's pre-activation.
    dz: Vec<Buf>,
    /// Per-row loss and hit planes (see [`SoftmaxXent`]).
    pub stats: Buf,
    /// Per-job mean-loss numerator and hit count: `[loss_sum(j)..., hits(j)...]`.
    pub job_stats: Buf,
}

impl Pass {
    /// Allocates a pass for a job list of (model agent, data agent) pairs.
    pub fn new(
        be: &mut dyn Backend,
        model: &Mlp,
        batch: usize,
        jobs: &[(usize, usize)],
    ) -> Result<Self> {
        if jobs.is_empty() || batch == 0 {
            return Err(Error::param(
                "jobs/batch",
                "a pass needs at least one job and one row",
            ));
        }
        let n_jobs = jobs.len();
        let job_buf = upload_jobs(be, jobs, "pass.jobs")?;
        let mut acts = Vec::new();
        let mut dz = Vec::new();
        for (k, l) in model.layers().iter().enumerate() {
            acts.push(be.alloc(
                BufKind::F32,
                n_jobs * batch * l.out_dim,
                &format!("pass.act{k}"),
            )?);
            dz.push(be.alloc(
                BufKind::F32,
                n_jobs * batch * l.out_dim,
                &format!("pass.dz{k}"),
            )?);
        }
        Ok(Pass {
            model: model.clone(),
            batch,
            n_jobs,
            jobs: job_buf,
            acts,
            dz,
            stats: be.alloc(BufKind::F32, 2 * n_jobs * batch, "pass.stats")?,
            job_stats: be.alloc(BufKind::F32, 2 * n_jobs, "pass.job_stats")?,
        })
    }

    /// The model the pass runs.
    pub fn model(&self) -> &Mlp {
        &self.model
    }

    /// Number of jobs.
    pub fn n_jobs(&self) -> usize {
        self.n_jobs
    }

    /// The logits buffer (`n_jobs × batch × classes`).
    pub fn logits(&self) -> Buf {
        *self.acts.last().expect("at least one layer")
    }

    fn shape(&self, k: usize) -> DenseJobs {
        DenseJobs {
            jobs: self.jobs,
            n_jobs: self.n_jobs,
            batch: self.batch,
            layer: self.model.layers()[k],
            stride: self.model.stride(),
            input_blocks: if k == 0 {
                InputBlocks::ByData
            } else {
                InputBlocks::ByJob
            },
        }
    }

    fn input(&self, k: usize, mb: &Minibatch) -> Buf {
        if k == 0 {
            mb.x
        } else {
            self.acts[k - 1]
        }
    }

    /// Records the forward pass and the loss (loss, d-logits, per-job loss sum and hits).
    pub fn record_forward(&self, be: &mut dyn Backend, params: Buf, mb: &Minibatch) -> Result<()> {
        for k in 0..self.model.layers().len() {
            be.dense_forward(&DenseForward {
                shape: self.shape(k),
                params,
                input: self.input(k, mb),
                output: self.acts[k],
            })?;
        }
        let last = self.model.layers().len() - 1;
        be.softmax_xent(&SoftmaxXent {
            jobs: self.jobs,
            n_jobs: self.n_jobs,
            batch: self.batch,
            classes: self.model.classes(),
            logits: self.acts[last],
            labels: mb.y,
            dlogits: self.dz[last],
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
            segments: 2 * self.n_jobs,
            seg_len: self.batch,
            out: self.job_stats,
            out_offset: 0,
        })
    }

    /// Records the backward pass: job j's gradient of its mean loss goes to slab j of `grads`.
    pub fn record_backward(
        &self,
        be: &mut dyn Backend,
        params: Buf,
        mb: &Minibatch,
        grads: Buf,
    ) -> Result<()> {
        for k in (0..self.model.layers().len()).rev() {
            be.dense_backward_weights(&DenseBackwardWeights {
                shape: self.shape(k),
                dz: self.dz[k],
                input: self.input(k, mb),
                grads,
            })?;
            if k > 0 {
                be.dense_backward_data(&DenseBackwardData {
                    shape: self.shape(k),
                    params,
                    dz: self.dz[k],
                    input: self.acts[k - 1],
                    relu_mask: self.model.layers()[k - 1].relu,
                    dx: self.dz[k - 1],
                })?;
            }
        }
        Ok(())
    }
}
