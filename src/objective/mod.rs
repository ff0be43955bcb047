//! Where gradients come from. An [`Objective`] records ∇F_i(x_i; ξ_i^t) for every agent into the
//! agent's gradient slab; the algorithms never know whether that is a model on minibatches or a
//! toy quadratic.
//!
//! Cross-gradients (NGM, CGA) are gradients over a **job list**: (model slab m, data agent i)
//! pairs, job k's gradient ∇F_i(x_m; ξ_i^t) going to slab k of the output. A job list is
//! registered once ([`Objective::prepare_jobs`]) and evaluated every step
//! ([`Objective::record_job_gradients`]) in the same dispatches whatever its length: a model
//! runs one batched forward/backward over all jobs, a quadratic one dense dispatch. The cost is
//! one gradient slab (and, for a model, one set of activations) per job.

mod quadratic;
pub mod sampler;

pub use quadratic::{OneShot, Quadratics};
pub use sampler::{Sampler, SamplerState};

use crate::backend::{Backend, Buf, BufKind, ChannelNorm, CopyRange, Gather};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::pass::{Minibatch, Pass};
use crate::model::Model;

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

    /// Registers a job list of (model slab, data agent) pairs for
    /// [`Objective::record_job_gradients`]; data agents must be below the objective's agents.
    fn prepare_jobs(&mut self, be: &mut dyn Backend, jobs: &[(usize, usize)]) -> Result<JobList>;

    /// Records, for every job k = (m, i) of `j.list`, ∇F_i(x_m; ξ_i^t) — agent i's objective on
    /// its minibatch of iteration t at slab m of `j.params` — into slab k of `j.grads`. One call
    /// per iteration draws each agent's minibatch once, as [`Objective::record_gradients`] does.
    fn record_job_gradients(&mut self, be: &mut dyn Backend, j: JobGradients<'_>) -> Result<()>;

    /// Per-agent loss sums of the last recorded gradients, `[loss_sum(i)..., hits(i)...]`, and
    /// the number of samples each sum covers (None where the objective has no loss to report).
    fn loss_stats(&self) -> Option<(Buf, usize)> {
        None
    }
}

/// One evaluation of a job list: job k's gradient at model slab m of `params` on data agent i's
/// minibatch of iteration `t` goes to slab k of `grads`.
#[derive(Clone, Copy, Debug)]
pub struct JobGradients<'a> {
    /// The registered list.
    pub list: &'a JobList,
    /// Model slabs the jobs' models index.
    pub params: Buf,
    /// One output slab per job.
    pub grads: Buf,
    /// Iteration t (which minibatch).
    pub t: u64,
}

/// A job list registered with one objective: (model slab, data agent) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobList {
    /// Index of the list in the objective that registered it.
    id: usize,
    jobs: Vec<(usize, usize)>,
}

impl JobList {
    /// The (model slab, data agent) pairs, job k at position k.
    pub fn jobs(&self) -> &[(usize, usize)] {
        &self.jobs
    }

    /// Number of jobs (gradient slabs the output holds).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the list is empty (never, once registered).
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Checks the list against `agents` data agents and assigns its index `id`.
    fn new(jobs: &[(usize, usize)], agents: usize, id: usize) -> Result<Self> {
        if jobs.is_empty() {
            return Err(Error::param("jobs", "a job list needs at least one job"));
        }
        if let Some((k, &(m, i))) = jobs.iter().enumerate().find(|(_, j)| j.1 >= agents) {
            return Err(Error::param(
                "jobs",
                format!("job {k} = ({m}, {i}): data agent {i} is not below {agents}"),
            ));
        }
        Ok(JobList {
            id,
            jobs: jobs.to_vec(),
        })
    }

    /// This list's index among `count` registered ones (an error for another objective's list).
    fn index(&self, count: usize) -> Result<usize> {
        if self.id < count {
            Ok(self.id)
        } else {
            Err(Error::param(
                "jobs",
                "the job list was registered with another objective",
            ))
        }
    }

    /// The CSR that copies data agent i's slab into every job (k, ·, i) (rows: jobs).
    fn data_rows(&self, agents: usize) -> crate::sparse::Csr {
        let rows: Vec<Vec<(usize, f64)>> = self.jobs.iter().map(|&(_, i)| vec![(i, 1.0)]).collect();
        crate::sparse::Csr::from_rows(agents, &rows)
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
    /// Normalisation, per channel where the dataset has several.
    pub norm: ChannelNorm,
}

impl DeviceData {
    /// Uploads a dataset.
    pub fn upload(be: &mut dyn Backend, ds: &Dataset, label: &str) -> Result<Self> {
        let (mean, std): (Vec<f64>, Vec<f64>) = ds
            .normalization()
            .iter()
            .map(|&(m, s)| (m as f64, s as f64))
            .unzip();
        let norm = ChannelNorm::per_channel(&mean, &std)?;
        let data = be.upload_u8(ds.features(), &format!("{label}.data"))?;
        let labels = be.alloc(BufKind::U32, ds.len(), &format!("{label}.labels"))?;
        be.write_u32(labels, 0, ds.labels())?;
        Ok(DeviceData {
            data,
            labels,
            n: ds.len(),
            dim: ds.dim(),
            norm,
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
            norm: self.norm,
            x: mb.x,
            y: mb.y,
        })
    }
}

/// A model trained on per-agent minibatches of a resident dataset: the identity job list.
pub struct ModelObjective {
    data: DeviceData,
    mb: Minibatch,
    pass: Pass,
    sampler: Sampler,
    indices: Vec<u32>,
    /// Passes of the registered job lists.
    job_passes: Vec<Pass>,
}

impl ModelObjective {
    /// Prepares the passes of `model` for the sampler's agents and batch size.
    pub fn new(
        be: &mut dyn Backend,
        model: &Model,
        data: DeviceData,
        sampler: Sampler,
    ) -> Result<Self> {
        let n = sampler.agents();
        let batch = sampler.batch();
        let jobs: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
        Ok(ModelObjective {
            data,
            mb: Minibatch::new(be, n, batch, data.dim)?,
            pass: Pass::new(be, model, batch, &jobs)?,
            sampler,
            indices: Vec::with_capacity(n * batch),
            job_passes: Vec::new(),
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

    /// Draws every agent's minibatch of this iteration and records its gather.
    fn record_minibatch(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.sampler.next_into(&mut self.indices);
        be.write_u32(self.mb.index, 0, &self.indices)?;
        self.data.record_gather(be, &self.mb, self.indices.len())
    }
}

impl Objective for ModelObjective {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        grads: Buf,
        _t: u64,
    ) -> Result<()> {
        self.record_minibatch(be)?;
        self.pass.record_gradients(be, params, &self.mb, grads)
    }

    fn prepare_jobs(&mut self, be: &mut dyn Backend, jobs: &[(usize, usize)]) -> Result<JobList> {
        let list = JobList::new(jobs, self.sampler.agents(), self.job_passes.len())?;
        let pass = Pass::new(be, self.pass.model(), self.sampler.batch(), jobs)?;
        self.job_passes.push(pass);
        Ok(list)
    }

    /// The training loss reported by [`Objective::loss_stats`] is that of the first n jobs,
    /// when they are (·, 0), …, (·, n − 1) (each agent's own model on its own data; NGM puts
    /// them first), copied into the identity pass's statistics (two copies).
    fn record_job_gradients(&mut self, be: &mut dyn Backend, j: JobGradients<'_>) -> Result<()> {
        let (list, params) = (j.list, j.params);
        let k = list.index(self.job_passes.len())?;
        self.record_minibatch(be)?;
        let pass = &self.job_passes[k];
        pass.record_gradients(be, params, &self.mb, j.grads)?;
        let n = self.sampler.agents();
        let own_first = list.len() >= n && list.jobs[..n].iter().enumerate().all(|(i, j)| j.1 == i);
        if own_first {
            // [loss_sum(job)..., hits(job)...] → [loss_sum(i)..., hits(i)...].
            let (src, dst) = (pass.job_stats, self.pass.job_stats);
            be.copy(&CopyRange::whole(src, dst, n))?;
            be.copy(&CopyRange {
                src,
                src_offset: list.len(),
                dst,
                dst_offset: n,
                len: n,
            })?;
        }
        Ok(())
    }

    fn loss_stats(&self) -> Option<(Buf, usize)> {
        Some((self.pass.job_stats, self.sampler.batch()))
    }
}
