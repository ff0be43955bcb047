//! Evaluation on the test set (ALGORITHMS.md §7): the consensus model x̄, every agent's own
//! model, the consensus distance, and divergence checks. Runs in chunks of the test set with
//! one job per model (agents, then x̄) and reads back only a few floats per evaluation.

use crate::algo::DeviceData;
use crate::backend::{Axpby, Backend, Buf, BufKind, CopyRange, Reduce, ReduceMode};
use crate::comm::AllReduce;
use crate::dist::Shard;
use crate::error::{Error, Result};
use crate::model::pass::{Minibatch, Pass, PassOptions};
use crate::model::Model;

/// Largest activation buffer (floats) an evaluation chunk may use.
const EVAL_ACT_BUDGET: usize = 1 << 22;

/// The metrics of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalResult {
    /// Test accuracy of the consensus model x̄.
    pub consensus_acc: f64,
    /// Test loss of x̄.
    pub consensus_loss: f64,
    /// Mean over agents of each agent's own test accuracy.
    pub mean_local_acc: f64,
    /// Lowest agent test accuracy.
    pub worst_local_acc: f64,
    /// Agent with the lowest test accuracy.
    pub worst_agent: usize,
    /// (1/n) Σ ‖x_i − x̄‖².
    pub consensus_distance: f64,
    /// Mean over agents of the last step's minibatch loss (NaN before the first step).
    pub train_loss: f64,
    /// Every agent's test accuracy.
    pub local_acc: Vec<f64>,
}

/// Buffers and job lists for evaluating all agents and x̄ on a test set.
pub struct Evaluator {
    test: DeviceData,
    agents: usize,
    stride: usize,
    d: usize,
    chunk: usize,
    mb: Minibatch,
    full: Pass,
    rest: Option<(usize, Pass)>,
    /// Agent slabs then x̄: `(agents + 1) × stride`.
    models: Buf,
    acc: Buf,
    dist: Buf,
    /// x̄: the all-reduce's mean (over every rank's agents when sharded).
    average: AllReduce,
    /// Sharded over ranks: `agents` is this rank's block; per-agent values are gathered in
    /// agent order before anything is summed.
    shard: Option<Shard>,
}

impl Evaluator {
    /// Prepares evaluation of `agents` models of shape `model` on `test`.
    pub fn new(
        be: &mut dyn Backend,
        model: &Model,
        agents: usize,
        test: DeviceData,
    ) -> Result<Self> {
        let average = AllReduce::new(agents, model.stride(), model.n_params());
        Evaluator::build(be, model, agents, agents, test, average, None)
    }

    /// This rank's evaluator of a run sharded over ranks: its agents' models and x̄, in chunks
    /// of the size one process uses (so every sum runs in the same order).
    pub fn new_sharded(
        be: &mut dyn Backend,
        model: &Model,
        shard: &Shard,
        test: DeviceData,
    ) -> Result<Self> {
        let average = AllReduce::sharded(be, shard, model.stride(), model.n_params())?;
        let (local, all) = (shard.local(), shard.agents());
        Evaluator::build(be, model, local, all, test, average, Some(shard.clone()))
    }

    fn build(
        be: &mut dyn Backend,
        model: &Model,
        agents: usize,
        all_agents: usize,
        test: DeviceData,
        average: AllReduce,
        shard: Option<Shard>,
    ) -> Result<Self> {
        if test.n == 0 {
            return Err(Error::param("dataset", "the test set is empty"));
        }
        let widest = model.widest().max(1);
        let chunk = (EVAL_ACT_BUDGET / ((all_agents + 1) * widest)).clamp(1, test.n);
        let jobs: Vec<(usize, usize)> = (0..=agents).map(|m| (m, 0)).collect();
        let forward = PassOptions {
            backward: false,
            max_tile_jobs: None,
        };
        let full = Pass::with_options(be, model, chunk, &jobs, forward)?;
        let rem = test.n % chunk;
        let rest = if rem > 0 {
            Some((rem, Pass::with_options(be, model, rem, &jobs, forward)?))
        } else {
            None
        };
        let stride = model.stride();
        Ok(Evaluator {
            mb: Minibatch::new(be, 1, chunk, test.dim)?,
            models: be.alloc(BufKind::F32, (agents + 1) * stride, "eval.models")?,
            acc: be.alloc(BufKind::F32, 2 * (agents + 1), "eval.acc")?,
            dist: be.alloc(BufKind::F32, 2 * agents, "eval.dist")?,
            test,
            agents,
            stride,
            d: model.n_params(),
            chunk,
            full,
            rest,
            average,
            shard,
        })
    }

    /// Per-agent values of this rank's agents → those of all agents, in agent order.
    fn all(&self, mine: &[f64]) -> Vec<f64> {
        match &self.shard {
            None => mine.to_vec(),
            Some(s) => s.all_gather_f64(mine),
        }
    }

    /// Evaluates `params` (agent-major slabs); `train_stats` is the training pass's job_stats
    /// (`None` before the first step), `batch` its rows per job. `step` names the step in
    /// divergence errors.
    pub fn evaluate(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        train_stats: Option<(Buf, usize)>,
        step: u64,
    ) -> Result<EvalResult> {
        let (n, stride) = (self.agents, self.stride);
        // Divergence first: squared norms and consensus distances of every agent.
        be.copy(&CopyRange::whole(params, self.models, n * stride))?;
        // x̄ after the agent slabs: evaluation's means go through communication like the
        // algorithms' (one place for sharding to hook in).
        self.average.mean_at(be, params, self.models, n * stride)?;
        for (mode, b, b_offset, b_stride, out_offset) in [
            (ReduceMode::SquaredDistance, self.models, n * stride, 0, 0),
            (ReduceMode::Dot, params, 0, stride, n),
        ] {
            be.reduce(&Reduce {
                mode,
                a: params,
                a_offset: 0,
                a_stride: stride,
                b,
                b_offset,
                b_stride,
                segments: n,
                seg_len: self.d,
                out: self.dist,
                out_offset,
            })?;
        }
        let local_dist = be.read_f32(self.dist)?;
        let (dist_all, norms) = (self.all(&local_dist[..n]), self.all(&local_dist[n..2 * n]));
        let train_loss = match train_stats {
            Some((buf, batch)) => {
                let s = self.all(&be.read_f32(buf)?[..n]);
                let mut sum = 0.0;
                for (agent, &l) in s.iter().enumerate() {
                    if !l.is_finite() {
                        return Err(Error::Diverged {
                            step,
                            agent,
                            what: "training loss",
                            value: l,
                        });
                    }
                    sum += l / batch as f64;
                }
                sum / s.len() as f64
            }
            None => f64::NAN,
        };
        for agent in 0..dist_all.len() {
            for (what, v) in [
                ("squared parameter norm", norms[agent]),
                ("distance to the mean", dist_all[agent]),
            ] {
                if !v.is_finite() {
                    return Err(Error::Diverged {
                        step,
                        agent,
                        what,
                        value: v,
                    });
                }
            }
        }
        let consensus_distance = dist_all.iter().sum::<f64>() / dist_all.len() as f64;

        // Test metrics, chunk by chunk, accumulated on the backend.
        be.write_f32(self.acc, 0, &vec![0.0; 2 * (n + 1)])?;
        let mut start = 0;
        while start < self.test.n {
            let rows = self.chunk.min(self.test.n - start);
            let pass = if rows == self.chunk {
                &self.full
            } else {
                &self.rest.as_ref().expect("remainder pass exists").1
            };
            let idx: Vec<u32> = (start as u32..(start + rows) as u32).collect();
            be.write_u32(self.mb.index, 0, &idx)?;
            self.test.record_gather(be, &self.mb, rows)?;
            pass.record_forward(be, self.models, &self.mb)?;
            be.axpby(&Axpby {
                x: pass.job_stats,
                y: self.acc,
                a: 1.0,
                b: 1.0,
                len: 2 * (n + 1),
            })?;
            be.flush()?;
            start += rows;
        }
        let acc = be.read_f32(self.acc)?;
        let total = self.test.n as f64;
        let local_acc = self.all(&acc[n + 1..2 * n + 1]);
        let local_acc: Vec<f64> = local_acc.iter().map(|a| a / total).collect();
        let (worst_agent, worst) =
            local_acc
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |b, (i, a)| if a < b.1 { (i, a) } else { b },
                );
        let consensus_loss = acc[n] / total;
        if !consensus_loss.is_finite() {
            return Err(Error::Diverged {
                step,
                agent: 0,
                what: "consensus-model test loss",
                value: consensus_loss,
            });
        }
        Ok(EvalResult {
            consensus_acc: acc[2 * n + 1] / total,
            consensus_loss,
            mean_local_acc: local_acc.iter().sum::<f64>() / local_acc.len() as f64,
            worst_local_acc: worst,
            worst_agent,
            consensus_distance,
            train_loss,
            local_acc,
        })
    }

    /// Rows evaluated per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }
}
