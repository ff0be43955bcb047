//! The trainer: builds data, partition, graph and state from a [`TrainConfig`], runs the steps
//! with evaluations in between, and returns a [`Summary`].

use crate::algo::{Algo, AlgoSetup, DeviceData, ModelObjective, Objective};
use crate::backend::Backend;
use crate::data::{Dataset, PartitionSummary};
use crate::dist::Shard;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::objective::sampler::Sampler;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::config::TrainConfig;
use crate::train::eval::{EvalResult, Evaluator};
use crate::train::metrics::{CsvAppender, MetricsRow};
use crate::train::schedule::LrSchedule;
use crate::train::watch::DivergenceWatch;
use std::path::{Path, PathBuf};
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
    /// Agent-steps per second (agents × steps / seconds) over the training steps of this call
    /// only: set-up, evaluations, checkpoint writes and progress reports are excluded (the
    /// device's queued work is finished inside the timed span). 0 when no step ran.
    pub agent_steps_per_s: f64,
    /// Milliseconds per training step (all agents), measured as `agent_steps_per_s` is; 0 when
    /// no step ran.
    pub ms_per_step: f64,
    /// Device time of the training steps (GPU timestamp queries; None where unavailable).
    pub gpu_s: Option<f64>,
    /// Backend description.
    pub backend: String,
    /// Every evaluation.
    #[serde(skip)]
    pub rows: Vec<MetricsRow>,
}

/// The topology a run communicates over, as the summary names it.
pub fn topology_label(c: &TrainConfig) -> String {
    match c.algo.runs_on(&c.topology) {
        Some(t) => t.to_string(),
        None => "complete (all-reduce)".into(),
    }
}

/// Copies of the agents' parameter slab every algorithm holds at least (parameters, gradients,
/// the evaluation's models); most hold more, so the estimate below is a lower bound.
const MIN_SLABS: u64 = 3;

/// Host memory available now, where the system says (Linux's `MemAvailable`).
fn available_host_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Checks the run's largest buffers against the backend's limits and the host's memory before
/// anything is allocated: the agents' parameter slab (agents × stride reals), which every
/// algorithm holds several copies of and the initialisation builds on the host, and the
/// activations of the training pass (one job per agent; a cross-gradient algorithm's longer
/// job list is checked the same way when it is registered, before its buffers exist).
fn preflight(n: usize, batch: usize, model: &Model, be: &dyn Backend) -> Result<()> {
    let stride = model.stride();
    let reduce = "reduce --agents or the model's layer widths";
    let slab = n.checked_mul(stride).ok_or_else(|| {
        Error::param(
            "agents",
            format!("{n} agents × {stride} floats per model overflows; {reduce}"),
        )
    })?;
    let what = format!("the parameters of {n} agents × {stride} floats per model ({reduce})");
    be.check_alloc(crate::backend::BufKind::F32, slab, &what)?;
    let own: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
    crate::model::pass::Pass::check_fits(be, model, batch, &own, true)?;
    let slab_u = slab as u64;
    // The initial parameters (f32) on the host, plus the backend's copies in host memory.
    let need = 4 * slab_u + MIN_SLABS * be.host_bytes(crate::backend::BufKind::F32, slab);
    if let Some(avail) = available_host_bytes() {
        if need > avail {
            let gb = |b: u64| b as f64 / 1e9;
            return Err(Error::param(
                "model",
                format!(
                    "{n} agents × {stride} floats per model need at least {:.1} GB of host \
                     memory, {:.1} GB is available; {reduce}",
                    gb(need),
                    gb(avail)
                ),
            ));
        }
    }
    Ok(())
}

/// The settings in which two configurations (JSON objects) differ, each as
/// `key: saved → now`, leaving out the run's length (`steps`, `epochs`), which a resume may
/// extend.
fn config_differences(saved: &str, now: &str) -> Vec<String> {
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap_or_default();
    let mut out = Vec::new();
    diff_values("", &parse(saved), &parse(now), &mut out);
    out
}

/// Appends the differing leaves of two JSON values (objects recursively, keys dotted).
fn diff_values(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let none = serde_json::Value::Null;
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if prefix.is_empty() && matches!(k.as_str(), "steps" | "epochs") {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                diff_values(
                    &key,
                    x.get(k).unwrap_or(&none),
                    y.get(k).unwrap_or(&none),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{prefix}: {a} in the checkpoint, {b} now")),
        _ => {}
    }
}

/// A prepared training run on a backend.
pub struct Trainer {
    config: TrainConfig,
    be: Box<dyn Backend>,
    model: Model,
    state: Box<dyn Algo>,
    objective: ModelObjective,
    eval: Evaluator,
    schedule: LrSchedule,
    steps: u64,
    steps_per_epoch: usize,
    summary: PartitionSummary,
    notices: Vec<String>,
    step: u64,
    bytes: Vec<u64>,
    rows: Vec<MetricsRow>,
    last_eval: Option<EvalResult>,
    wall_offset: f64,
    checkpoint_every: Option<(u64, PathBuf)>,
    /// Records every step's finiteness on the device; read at sync points.
    watch: DivergenceWatch,
    /// Where metrics rows go as they are produced (opened when the run starts).
    metrics_path: Option<PathBuf>,
    metrics_out: Option<CsvAppender>,
    /// The backend's buffer count before this run allocated any: [`Trainer::into_backend`]
    /// releases everything from here on.
    buffer_mark: usize,
    /// Sharded over ranks: this rank's block of agents (its buffers, byte ledger and sampler
    /// hold only those); metrics and checkpoints gather every agent.
    shard: Option<Shard>,
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

    /// Prepares this rank's part of a run sharded over the ranks of `shard` (every rank calls
    /// it with the same configuration; [`crate::dist`]).
    pub fn new_sharded(config: TrainConfig, be: Box<dyn Backend>, shard: &Shard) -> Result<Self> {
        config.validate()?;
        let data = config.load_data()?;
        let mut t = Trainer::prepare(config, be, &data.train, &data.test, Some(shard.clone()))?;
        t.notices = data.notices;
        Ok(t)
    }

    /// Prepares a run on given training and test sets.
    pub fn with_data(
        config: TrainConfig,
        be: Box<dyn Backend>,
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Self> {
        Trainer::prepare(config, be, train, test, None)
    }

    fn prepare(
        config: TrainConfig,
        mut be: Box<dyn Backend>,
        train: &Dataset,
        test: &Dataset,
        shard: Option<Shard>,
    ) -> Result<Self> {
        config.validate()?;
        let classes = train.n_classes().max(test.n_classes());
        let model = config
            .model(crate::model::input_shape(train), classes)
            .map_err(|e| match (e, train.shape()) {
                (Error::BadParameter { name, reason }, None) => Error::BadParameter {
                    name,
                    reason: format!(
                        "{reason} (the {} features of this dataset are flat, 1×1×{}: layers \
                         that need an image need an image dataset)",
                        train.dim(),
                        train.dim()
                    ),
                },
                (e, _) => e,
            })?;
        if model.input_dim() != train.dim() || model.input_dim() != test.dim() {
            return Err(Error::param(
                "model",
                format!(
                    "input width {} does not match the data: {} features in the training set, \
                     {} in the test set",
                    model.input_dim(),
                    train.dim(),
                    test.dim()
                ),
            ));
        }
        // Every label of both sets must be an output of the model (the dataset guarantees each
        // label is below its class count); the loss kernel's check repeats this per minibatch.
        for (which, ds) in [("training", train), ("test", test)] {
            if model.classes() < ds.n_classes() {
                return Err(Error::param(
                    "model",
                    format!(
                        "{} outputs for the {} classes of the {which} set",
                        model.classes(),
                        ds.n_classes()
                    ),
                ));
            }
        }
        let n = config.agents;
        if let Some(s) = &shard {
            if s.agents() != n {
                return Err(Error::param(
                    "agents",
                    format!("{n} agents, the ranks share {}", s.agents()),
                ));
            }
        }
        let local = shard.as_ref().map_or(n, Shard::local);
        preflight(local, config.batch, &model, be.as_ref())?;
        let parts = config
            .partition()?
            .apply(train, n, config.seed)
            .map_err(|e| Error::param("partition", e.to_string()))?;
        let summary = PartitionSummary::new(train, &parts)?;
        let mut sampler = Sampler::new(parts, config.batch, config.seed)?;
        let steps_per_epoch = sampler.steps_per_epoch();
        if let Some(s) = &shard {
            sampler.restrict(s.range())?;
        }
        let steps = match (config.steps, config.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                let steps = (e * steps_per_epoch as f64).ceil();
                // Beyond 2^53 steps are not even counted exactly (and would never finish).
                if steps > (1u64 << 53) as f64 {
                    return Err(Error::param(
                        "epochs",
                        format!("{e} epochs are {steps:e} steps of {steps_per_epoch} per epoch; at most 2^53 steps"),
                    ));
                }
                (steps as u64).max(1)
            }
            (None, None) => return Err(Error::param("steps", "give steps or epochs")),
        };
        let total_epochs = steps as f64 / steps_per_epoch as f64;
        let schedule = config.schedule(total_epochs);
        schedule.validate()?;
        let init = model.init(n, config.seed, config.identical_init);
        let buffer_mark = be.live_buffers().count;
        let be_ref: &mut dyn Backend = be.as_mut();
        let setup = AlgoSetup {
            agents: n,
            stride: model.stride(),
            d: model.n_params(),
            init: &init,
            topology: &config.topology,
            mixing: &config.mixing.rule,
            hyper: config.local_hyper(),
            seed: config.seed,
            options: &config.options,
            tensors: &model.tensors(),
        };
        let state = match &shard {
            None => config.algo.build(be_ref, &setup)?,
            Some(s) => config.algo.build_sharded(be_ref, &setup, s)?,
        };
        let train_dev = DeviceData::upload(be_ref, train, "train")?;
        let test_dev = DeviceData::upload(be_ref, test, "test")?;
        let objective = ModelObjective::new(be_ref, &model, train_dev, sampler)?;
        let eval = match &shard {
            None => Evaluator::new(be_ref, &model, n, test_dev)?,
            Some(s) => Evaluator::new_sharded(be_ref, &model, s, test_dev)?,
        };
        let watch = DivergenceWatch::new(
            be_ref,
            local,
            model.stride(),
            model.n_params(),
            state.params(),
            objective.loss_stats().map(|(b, _)| b),
        )?;
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
            bytes: vec![0; local],
            rows: Vec::new(),
            last_eval: None,
            wall_offset: 0.0,
            checkpoint_every: None,
            watch,
            metrics_path: None,
            metrics_out: None,
            buffer_mark,
            shard,
        })
    }

    /// This rank's share of a sharded run (None in one process).
    pub fn shard(&self) -> Option<&Shard> {
        self.shard.as_ref()
    }

    /// Every agent's parameters (agent-major slabs), gathered from every rank when sharded
    /// (a collective: every rank calls it).
    pub fn gather_params(&mut self) -> Result<Vec<f64>> {
        let mine = self.read_params()?;
        Ok(match &self.shard {
            None => mine,
            Some(s) => s.all_gather_f64(&mine),
        })
    }

    /// Bytes sent so far by every agent (gathered from every rank when sharded).
    fn all_bytes(&self) -> Vec<u64> {
        match &self.shard {
            None => self.bytes.clone(),
            Some(s) => s.all_gather_u64(&self.bytes),
        }
    }

    /// Reads the divergence watch; a sharded run names the agent by its global index.
    fn check_watch(&mut self) -> Result<()> {
        let first = self.shard.as_ref().map_or(0, Shard::first);
        match self.watch.check(self.be.as_mut()) {
            Err(Error::Diverged {
                step,
                agent,
                what,
                value,
            }) => Err(Error::Diverged {
                step,
                agent: agent + first,
                what,
                value,
            }),
            r => r,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &Model {
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

    /// What the algorithm reports about its set-up (e.g. the RelaySGD learning-rate factor).
    pub fn algorithm_notes(&self) -> Vec<String> {
        self.state.notes()
    }

    /// Notices from data loading (fallbacks taken).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.be.as_mut()
    }

    /// Ends the run and returns its backend, with every buffer the run allocated released (so
    /// a backend reused for many runs, as `compare` does, holds the same memory after each).
    pub fn into_backend(mut self) -> Box<dyn Backend> {
        self.be.release_from(self.buffer_mark);
        self.be
    }

    /// Reads the current parameters (agent-major slabs of `model().stride()` floats; sharded:
    /// this rank's block, see [`Trainer::gather_params`]).
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
        self.check_watch()?;
        let stats = self.objective.loss_stats().filter(|_| self.step > 0);
        self.eval
            .evaluate(self.be.as_mut(), self.state.params(), stats, self.step)
    }

    /// Steps completed so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Writes a checkpoint to `path` every `every` steps during [`Trainer::run`] (not after the
    /// last step).
    pub fn set_checkpoint_every(&mut self, every: u64, path: PathBuf) -> Result<()> {
        if every == 0 {
            return Err(Error::param("checkpoint-every", "must be at least 1"));
        }
        self.checkpoint_every = Some((every, path));
        Ok(())
    }

    /// Writes the metrics rows to `path` as a CSV file during [`Trainer::run`], each row as it
    /// is produced (the rows so far, a resumed run's included, when the run starts), so a
    /// failed or interrupted run keeps its history.
    pub fn set_metrics_file(&mut self, path: PathBuf) {
        self.metrics_path = Some(path);
        self.metrics_out = None;
    }

    /// Appends the last row to the metrics file, if one is set.
    fn emit_row(&mut self) -> Result<()> {
        if let (Some(out), Some(row)) = (self.metrics_out.as_mut(), self.rows.last()) {
            out.append(row)?;
        }
        Ok(())
    }

    /// The named buffers of a checkpoint: the algorithm's state, then the objective's loss stats.
    fn named_buffers(&self) -> Vec<(String, crate::backend::Buf)> {
        let mut v: Vec<(String, crate::backend::Buf)> = self
            .state
            .state()
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect();
        if let Some((b, _)) = self.objective.loss_stats() {
            v.push(("objective.loss_stats".into(), b));
        }
        v
    }

    fn config_json(&self) -> Result<String> {
        serde_json::to_string(&self.config)
            .map_err(|e| Error::param("config", format!("cannot encode: {e}")))
    }

    /// The full state of the run after the steps completed so far. A diverged state is an
    /// [`Error::Diverged`] (the steps recorded since the last check are checked first, then
    /// every saved real), so no checkpoint of one is ever written.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        self.check_watch()?;
        let named = self.named_buffers();
        let mut buffers = checkpoint::read_buffers(self.be.as_mut(), &named)?;
        let mut sampler = self.objective.sampler().state();
        if let Some(s) = &self.shard {
            let owned = |name: &str, r: usize| self.state.owned_elements(name, s.placement(), r);
            buffers = super::sharded::gather_buffers(s, buffers, &owned);
            sampler = super::sharded::gather_sampler(s, &sampler)?;
        }
        checkpoint::check_finite(&buffers, self.config.agents, self.step)?;
        Ok(Checkpoint {
            config: self.config_json()?,
            step: self.step,
            total_steps: self.steps,
            bytes: self.all_bytes(),
            sampler,
            rows: self.rows.clone(),
            last: self.last_eval.clone(),
            wall_s: self.rows.last().map_or(self.wall_offset, |r| r.wall_s),
            buffers,
            algo_host: self.state.host_state()?,
        })
    }

    /// Writes a checkpoint file atomically (sharded: rank 0 writes every agent's state, and
    /// every rank learns whether that worked).
    pub fn save_checkpoint(&mut self, path: &Path) -> Result<()> {
        let c = self.checkpoint()?;
        match &self.shard {
            None => c.save(path),
            Some(s) => {
                let saved = if s.is_root() { c.save(path) } else { Ok(()) };
                s.agree("writing the checkpoint", saved)
            }
        }
    }

    /// Continues from a checkpoint file written by a run with the same configuration; a
    /// truncated, corrupt or foreign checkpoint is an [`Error::Checkpoint`].
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let c = Checkpoint::load(path)?;
        self.restore(&c, path)
    }

    /// Continues from a checkpoint (`path` names it in errors).
    pub fn restore(&mut self, c: &Checkpoint, path: &Path) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let mine = self.config_json()?;
        if c.config != mine {
            let diff = config_differences(&c.config, &mine);
            if !diff.is_empty() {
                return Err(bad(format!(
                    "it was written by a run with a different configuration: {}",
                    diff.join("; ")
                )));
            }
        }
        // Only the run's length may differ, and only to extend it: a larger --steps or
        // --epochs continues the same run (with a schedule that does not depend on the
        // length, so the steps done so far are those of the longer run).
        if self.steps < c.total_steps || c.step > self.steps {
            return Err(bad(format!(
                "step {} of {} does not fit this run of {} steps (a resume may extend a run, \
                 not shorten it)",
                c.step, c.total_steps, self.steps
            )));
        }
        if self.steps != c.total_steps && !self.config.decay_at.is_empty() {
            return Err(bad(format!(
                "the run of {} steps cannot be extended to {}: its learning-rate decay points \
                 (decay_at) are fractions of the run's length",
                c.total_steps, self.steps
            )));
        }
        if c.bytes.len() != self.config.agents {
            return Err(bad(format!("byte ledger of {} agents", c.bytes.len())));
        }
        let named = self.named_buffers();
        let (buffers, sampler, bytes) = match &self.shard {
            None => (c.buffers.clone(), c.sampler.clone(), c.bytes.clone()),
            Some(s) => (
                super::sharded::block_of_buffers(s, &c.buffers, &|name, r| {
                    self.state.owned_elements(name, s.placement(), r)
                }),
                super::sharded::block_of_sampler(s, &c.sampler).map_err(|e| bad(e.to_string()))?,
                c.bytes[s.range()].to_vec(),
            ),
        };
        checkpoint::write_buffers(self.be.as_mut(), &named, &buffers, path)?;
        self.state
            .restore_host_state(&c.algo_host)
            .map_err(|e| bad(e.to_string()))?;
        self.objective
            .sampler_mut()
            .restore(&sampler)
            .map_err(|e| bad(e.to_string()))?;
        self.step = c.step;
        self.bytes = bytes;
        self.rows = c.rows.clone();
        self.last_eval = c.last.clone();
        self.wall_offset = c.wall_s;
        // The metrics file restarts from the restored rows.
        self.metrics_out = None;
        Ok(())
    }

    /// Runs the remaining steps; `progress(step, total, last_row)` is called after every step.
    /// A fresh run starts with an evaluation; a resumed one continues its saved metrics rows.
    pub fn run(&mut self, progress: impl FnMut(u64, u64, Option<&MetricsRow>)) -> Result<Summary> {
        self.run_until(self.steps, progress)
    }

    /// Like [`Trainer::run`], but stops after step `stop` (at most the run's total); a later
    /// call continues exactly as if the run had not paused. Evaluations happen at the usual
    /// steps only (every `eval_every`, and the last step of the whole run).
    pub fn run_until(
        &mut self,
        stop: u64,
        mut progress: impl FnMut(u64, u64, Option<&MetricsRow>),
    ) -> Result<Summary> {
        let stop = stop.min(self.steps);
        let start = Instant::now();
        let wall = |offset: f64| offset + start.elapsed().as_secs_f64();
        let n = self.config.agents;
        let mut step_counters = (0u64, 0u64);
        let first_step = self.step;
        if self.rows.is_empty() {
            let lr = self
                .schedule
                .at(first_step as f64 / self.steps_per_epoch as f64);
            let first = self.evaluate()?;
            let row = self.row(&first, lr, wall(self.wall_offset));
            self.rows.push(row);
            self.last_eval = Some(first);
        }
        if self.metrics_out.is_none() {
            if let Some(path) = &self.metrics_path {
                self.metrics_out = Some(CsvAppender::create(path, &self.rows)?);
            }
        }
        // GPU time of the training steps only: evaluation time is read and dropped.
        let mut gpu_s = self.be.gpu_seconds()?.map(|_| 0.0);
        // Wall time of the training steps only (evaluations, checkpoints, progress excluded).
        let mut step_time = std::time::Duration::ZERO;
        for t in self.step..stop {
            let step_start = Instant::now();
            let e = t as f64 / self.steps_per_epoch as f64;
            let lr = self.schedule.at(e);
            let before = self.be.counters();
            self.state
                .record_step(self.be.as_mut(), &mut self.objective, t, lr)?;
            // The watch's records are not the algorithm's work: they are left out of the
            // dispatch count, and travel in the step's own submission.
            let watch_full = self
                .watch
                .record(self.be.as_mut(), self.state.params(), t + 1)?;
            self.be.flush()?;
            let after = self.be.counters();
            step_counters.0 +=
                after.dispatches - before.dispatches - self.watch.dispatches_per_record();
            step_counters.1 += after.submits - before.submits;
            for (b, s) in self.bytes.iter_mut().zip(self.state.bytes_sent()) {
                *b += s;
            }
            self.step = t + 1;
            let eval_now =
                self.step.is_multiple_of(self.config.eval_every) || self.step == self.steps;
            if eval_now || self.step == stop {
                // A GPU runs the submitted steps asynchronously: finish them inside the timed
                // span, so their device time is not billed to the evaluation that follows.
                if let (Some(total), Some(s)) = (gpu_s.as_mut(), self.be.gpu_seconds()?) {
                    *total += s;
                }
            }
            // Sync points read the watch (which finishes the recorded work): divergence is
            // reported at the step it happened, before any evaluation or checkpoint.
            let checkpoint_now = self.checkpoint_every.as_ref().is_some_and(|(every, _)| {
                self.step.is_multiple_of(*every) && self.step < self.steps
            });
            if eval_now || self.step == stop || checkpoint_now || watch_full {
                self.check_watch()?;
            }
            step_time += step_start.elapsed();
            let mut evaluated = false;
            if eval_now {
                let r = self.evaluate()?;
                self.be.gpu_seconds()?;
                let row = self.row(&r, lr, wall(self.wall_offset));
                self.rows.push(row);
                self.last_eval = Some(r);
                self.emit_row()?;
                evaluated = true;
            }
            if checkpoint_now {
                if let Some((_, path)) = self.checkpoint_every.clone() {
                    self.save_checkpoint(&path)?;
                }
            }
            progress(
                self.step,
                self.steps,
                if evaluated { self.rows.last() } else { None },
            );
        }
        if let (Some(total), Some(s)) = (gpu_s.as_mut(), self.be.gpu_seconds()?) {
            *total += s;
        }
        self.wall_offset = wall(self.wall_offset);
        let last = self.last_eval.clone().unwrap_or_default();
        let bytes = &self.all_bytes();
        let ran_steps = self.step - first_step;
        let ran = ran_steps.max(1) as f64;
        let secs = step_time.as_secs_f64();
        let (agent_steps_per_s, ms_per_step) = if ran_steps > 0 && secs > 0.0 {
            (
                (n as u64 * ran_steps) as f64 / secs,
                1e3 * secs / ran_steps as f64,
            )
        } else {
            (0.0, 0.0)
        };
        Ok(Summary {
            algo: self.config.algo.to_string(),
            topology: topology_label(&self.config),
            agents: n,
            steps: self.step,
            epochs: self.step as f64 / self.steps_per_epoch as f64,
            last,
            bytes_sent_per_agent: bytes.iter().sum::<u64>() as f64 / n as f64,
            max_bytes_sent: bytes.iter().copied().max().unwrap_or(0),
            dispatches_per_step: step_counters.0 as f64 / ran,
            submits_per_step: step_counters.1 as f64 / ran,
            wall_s: start.elapsed().as_secs_f64(),
            agent_steps_per_s,
            ms_per_step,
            gpu_s,
            backend: self.be.describe(),
            rows: self.rows.clone(),
        })
    }

    fn row(&self, r: &EvalResult, lr: f64, wall_s: f64) -> MetricsRow {
        let bytes = &self.all_bytes();
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
