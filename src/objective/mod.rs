//! Where gradients come from. An [`Objective`] records ∇F_i(x_i; ξ_i^t) for every agent into the
//! agent's gradient slab; the algorithms never know whether that is an MLP on minibatches or a
//! toy quadratic.

mod quadratic;
pub mod sampler;

pub use quadratic::{OneShot, Quadratics};
pub use sampler::{Sampler, SamplerState};

use crate::backend::{Backend, Buf, BufKind, Gather};
use crate::data::Dataset;
use crate::error::Result;
use crate::model::pass::{Minibatch, Pass};
use crate::model::Mlp;

/// A gradient source for all agents.
pub trait Objective {
    /// Records, for every agent i, the gradient of its local objective at slab i of `params`
    /// into slab i of `grads` (minibatch ξ_i^t of iteration t).
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        grads: Buf,
        t: u64,
    ) -> Result<()>;

    /// Per-agent loss sums of the last recorded gradients, `[loss_sum(i)..., hits(i)...]`, and
    /// the number of samples each sum covers (None where the objective has no loss to report).
    fn loss_stats(&self) -> Option<(Buf, usize)> {
        None
    }
}

/// A dataset resident on a backend.
#[derive(Clone, Copy, Debug)]
pub struct DeviceData {
    /// Feature bytes, `n × dim`.
    pub data: Buf,
    /// Labels.
    pub labels: Buf,
    /// Number of samples.
    pub n: usize,
    /// Features per sample.
    pub dim: usize,
    /// Normalisation mean.
    pub mean: f64,
    /// Normalisation std.
    pub std: f64,
}

impl DeviceData {
    /// Uploads a dataset.
    pub fn upload(be: &mut dyn Backend, ds: &Dataset, label: &str) -> Result<Self> {
        let data = be.upload_u8(ds.features(), &format!("{label}.data"))?;
        let labels = be.alloc(BufKind::U32, ds.len(), &format!("{label}.labels"))?;
        be.write_u32(labels, 0, ds.labels())?;
        Ok(DeviceData {
            data,
            labels,
            n: ds.len(),
            dim: ds.dim(),
            mean: ds.mean() as f64,
            std: ds.std() as f64,
        })
    }

    /// Records a gather of `rows` rows (sample indices already in `mb.index`) into `mb`.
    pub fn record_gather(&self, be: &mut dyn Backend, mb: &Minibatch, rows: usize) -> Result<()> {
        be.gather(&Gather {
            data: self.data,
            labels: self.labels,
            index: mb.index,
            rows,
            dim: self.dim,
            mean: self.mean,
            std: self.std,
            x: mb.x,
            y: mb.y,
        })
    }
}

/// An MLP trained on per-agent minibatches of a resident dataset: the identity job list.
pub struct MlpObjective {
    data: DeviceData,
    mb: Minibatch,
    pass: Pass,
    sampler: Sampler,
    indices: Vec<u32>,
}

impl MlpObjective {
    /// Prepares the passes of `model` for the sampler's agents and batch size.
    pub fn new(
        be: &mut dyn Backend,
        model: &Mlp,
        data: DeviceData,
        sampler: Sampler,
    ) -> Result<Self> {
        let n = sampler.agents();
        let batch = sampler.batch();
        let jobs: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
        Ok(MlpObjective {
            data,
            mb: Minibatch::new(be, n, batch, data.dim)?,
            pass: Pass::new(be, model, batch, &jobs)?,
            sampler,
            indices: Vec::with_capacity(n * batch),
        })
    }

    /// The minibatch sampler (its position is part of a checkpoint).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Mutable access to the sampler (restoring a checkpoint).
    pub fn sampler_mut(&mut self) -> &mut Sampler {
        &mut self.sampler
    }
}

impl Objective for MlpObjective {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        grads: Buf,
        _t: u64,
    ) -> Result<()> {
        self.sampler.next_into(&mut self.indices);
        be.write_u32(self.mb.index, 0, &self.indices)?;
        self.data.record_gather(be, &self.mb, self.indices.len())?;
        self.pass.record_forward(be, params, &self.mb)?;
        self.pass.record_backward(be, params, &self.mb, grads)
    }

    fn loss_stats(&self) -> Option<(Buf, usize)> {
        Some((self.pass.job_stats, self.sampler.batch()))
    }
}
