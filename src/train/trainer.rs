//! The trainer: builds data, partition, graph and state from a [`TrainConfig`], runs the steps
//! with evaluations in between, and returns a [`Summary`].

use crate::algo::{Algo, AlgoSetup, DeviceData, MlpObjective, Objective};
use crate::backend::Backend;
use crate::data::{Dataset, PartitionSummary};
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::train::config::TrainConfig;
use crate::train::eval::{EvalResult, Evaluator};
use crate::train::metrics::MetricsRow;
use crate::train::sampler::Sampler;
use crate::train::schedule::LrSchedule;
use std::time::Instant;

/// The outcome of a run: final metrics and counters.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Algorithm name.
    pub algo: String,
    /// Topology name.
    pub topology: String,
    /// Number of agents.
    pub agents: usize,
    /// Steps run.
    pub steps: u64,
    /// Epochs run (steps / B).
    pub epochs: f64,
    /// The final evaluation (flattened into the JSON summary).
    #[serde(flatten)]
    pub last: EvalResult,
    /// Mean bytes sent per agent over the run.
    pub bytes_sent_per_agent: f64,
    /// Largest bytes sent by one agent.
    pub max_bytes_sent: u64,
    /// Kernel dispatches per training step (evaluations excluded).
    pub dispatches_per_step: f64,
    /// Queue submissions per training step.
    pub submits_per_step: f64,
    /// Wall-clock seconds of the run (including evaluations).
    pub wall_s: f64,
    /// Backend description.
    pub backend: String,
    /// Every evaluation.
    #[serde(skip)]
    pub rows: Vec<MetricsRow>,
}

/// A prepared training run on a backend.
pub struct Trainer {
    config: TrainConfig,
    be: Box<dyn Backend>,
    model: Mlp,
    state: Box<dyn Algo>,
    objective: MlpObjective,
    eval: Evaluator,
    schedule: LrSchedule,
    steps: u64,
    steps_per_epoch: usize,
    summary: PartitionSummary,
    notices: Vec<String>,
    step: u64,
}

impl Trainer {
    /// Validates the config, loads the data it names and prepares the run.
    pub fn new(config: TrainConfig, be: Box<dyn Backend>) -> Result<Self> {
        config.validate()?;
        let data = config.load_data()?;
        let mut t = Trainer::with_data(config, be, &data.train, &data.test)?;
        t.notices = data.notices;
        Ok(t)
    }

    /// Prepares a run on given training and test sets.
    pub fn with_data(
        config: TrainConfig,
        mut be: Box<dyn Backend>,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Self> {
        config.validate()?;
        let model = config.model()?;
        if model.input_dim() != train.dim() || model.input_dim() != test.dim() {
            return Err(Error::param(
                "model",
                format!(
                    "input width {} does not match the dataset's {} features",
                    model.input_dim(),
                    train.dim()
                ),
            ));
        }
        if model.classes() < train.n_classes() {
            return Err(Error::param(
                "model",
                format!(
                    "{} outputs for {} classes",
                    model.classes(),
                    train.n_classes()
                ),
            ));
        }
        let n = config.agents;
        let parts = config
            .partition()?
            .apply(train, n, config.seed)
            .map_err(|e| Error::param("partition", e.to_string()))?;
        let summary = PartitionSummary::new(train, &parts)?;
        let sampler = Sampler::new(parts, config.batch, config.seed)?;
        let steps_per_epoch = sampler.steps_per_epoch();
        let steps = match (config.steps, config.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => ((e * steps_per_epoch as f64).ceil() as u64).max(1),
            (None, None) => return Err(Error::param("steps", "give steps or epochs")),
        };
        let total_epochs = steps as f64 / steps_per_epoch as f64;
        let schedule = config.schedule(total_epochs);
        schedule.validate()?;
        let init = model.init(n, config.seed, config.identical_init);
        let be_ref: &mut dyn Backend = be.as_mut();
        let setup = AlgoSetup {
            agents: n,
            stride: model.stride(),
            d: model.n_params(),
            init: &init,
            topology: &config.topology,
            mixing: &config.mixing,
            hyper: config.local_hyper(),
            seed: config.seed,
            options: &config.options,
        };
        let state = config.algo.build(be_ref, &setup)?;
        let train_dev = DeviceData::upload(be_ref, train, "train")?;
        let test_dev = DeviceData::upload(be_ref, test, "test")?;
        let objective = MlpObjective::new(be_ref, &model, train_dev, sampler)?;
        let eval = Evaluator::new(be_ref, &model, n, test_dev)?;
        be.flush()?;
        Ok(Trainer {
            config,
            be,
            model,
            state,
            objective,
            eval,
            schedule,
            steps,
            steps_per_epoch,
            summary,
            notices: Vec::new(),
            step: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &Mlp {
        &self.model
    }

    /// Total steps the run will take.
    pub fn total_steps(&self) -> u64 {
        self.steps
    }

    /// Steps per epoch B.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// The per-agent label statistics of the partition.
    pub fn partition_summary(&self) -> &PartitionSummary {
        &self.summary
    }

    /// Notices from data loading (fallbacks taken).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.be.as_mut()
    }

    /// Ends the run and hands back the backend (to reuse its device).
    pub fn into_backend(self) -> Box<dyn Backend> {
        self.be
    }

    /// Reads the current parameters (agent-major slabs of `model().stride()` floats).
    pub fn read_params(&mut self) -> Result<Vec<f64>> {
        self.be.read_f32(self.state.params())
    }

    /// Overwrites the current parameters (agent-major slabs).
    pub fn write_params(&mut self, params: &[f32]) -> Result<()> {
        let buf = self.state.params();
        if params.len() != buf.len {
            return Err(Error::param(
                "params",
                format!("{} floats, expected {}", params.len(), buf.len),
            ));
        }
        self.be.write_f32(buf, 0, params)?;
        self.be.flush()
    }

    /// Records one gossip/averaging round (no local step) and submits it.
    pub fn mix_only(&mut self) -> Result<()> {
        self.state.record_gossip(self.be.as_mut())?;
        self.be.flush()
    }

    /// Evaluates the current state.
    pub fn evaluate(&mut self) -> Result<EvalResult> {
        let stats = self.objective.loss_stats().filter(|_| self.step > 0);
        self.eval
            .evaluate(self.be.as_mut(), self.state.params(), stats, self.step)
    }

    /// Runs all steps; `progress(step, total, last_row)` is called after every step.
    pub fn run(
        &mut self,
        mut progress: impl FnMut(u64, u64, Option<&MetricsRow>),
    ) -> Result<Summary> {
        let start = Instant::now();
        let n = self.config.agents;
        let mut bytes = vec![0u64; n];
        let mut rows = Vec::new();
        let mut step_counters = (0u64, 0u64);
        let first_step = self.step;
        let mut lr = self
            .schedule
            .at(first_step as f64 / self.steps_per_epoch as f64);
        let mut last_eval = None;
        let first = self.evaluate()?;
        rows.push(self.row(&first, lr, &bytes, start.elapsed().as_secs_f64()));
        for t in self.step..self.steps {
            let e = t as f64 / self.steps_per_epoch as f64;
            lr = self.schedule.at(e);
            let before = self.be.counters();
            self.state
                .record_step(self.be.as_mut(), &mut self.objective, t, lr as f32)?;
            self.be.flush()?;
            let after = self.be.counters();
            step_counters.0 += after.dispatches - before.dispatches;
            step_counters.1 += after.submits - before.submits;
            for (b, s) in bytes.iter_mut().zip(self.state.bytes_sent()) {
                *b += s;
            }
            self.step = t + 1;
            let mut row = None;
            if self.step.is_multiple_of(self.config.eval_every) || self.step == self.steps {
                let r = self.evaluate()?;
                rows.push(self.row(&r, lr, &bytes, start.elapsed().as_secs_f64()));
                row = rows.last();
                last_eval = Some(r);
            }
            progress(self.step, self.steps, row);
        }
        let last = match last_eval {
            Some(r) => r,
            None => first,
        };
        let ran = (self.step - first_step).max(1) as f64;
        Ok(Summary {
            algo: self.config.algo.to_string(),
            topology: if self.config.algo.uses_topology() {
                self.config.topology.to_string()
            } else {
                "complete (all-reduce)".into()
            },
            agents: n,
            steps: self.step,
            epochs: self.step as f64 / self.steps_per_epoch as f64,
            last,
            bytes_sent_per_agent: bytes.iter().sum::<u64>() as f64 / n as f64,
            max_bytes_sent: bytes.iter().copied().max().unwrap_or(0),
            dispatches_per_step: step_counters.0 as f64 / ran,
            submits_per_step: step_counters.1 as f64 / ran,
            wall_s: start.elapsed().as_secs_f64(),
            backend: self.be.describe(),
            rows,
        })
    }

    fn row(&self, r: &EvalResult, lr: f64, bytes: &[u64], wall_s: f64) -> MetricsRow {
        MetricsRow {
            step: self.step,
            epoch: self.step as f64 / self.steps_per_epoch as f64,
            lr,
            consensus_acc: r.consensus_acc,
            consensus_loss: r.consensus_loss,
            mean_local_acc: r.mean_local_acc,
            worst_local_acc: r.worst_local_acc,
            consensus_distance: r.consensus_distance,
            train_loss: r.train_loss,
            bytes_sent_per_agent: bytes.iter().sum::<u64>() as f64 / bytes.len().max(1) as f64,
            wall_s,
        }
    }
}
