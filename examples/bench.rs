//! The one benchmark of the WGSL path across adapters (and the native CPU backend): the device's
//! own ceilings, every training kernel's achieved rate as a fraction of them, and whole training
//! steps per algorithm family, fused and per agent.
//!
//! ```sh
//! cargo run --release --example bench                      # best adapter, full sizes
//! cargo run --release --example bench -- --adapter all     # one table per adapter found
//! cargo run --release --example bench -- --quick --json    # < 2 minutes; last line: JSON
//! ```
//!
//! Per adapter it measures
//! - ceilings: an FMA-bound microkernel (GFLOP/s), a copy shader and `copy_buffer_to_buffer`
//!   (GB/s, bytes read plus written), the cost of an empty dispatch and of a submit;
//! - per kernel, at n agents × batch rows for each MLP: dense forward, backward-data and
//!   backward-weights in GFLOP/s (both kernel families, tiled and wide), gather, mix, local step
//!   and reduce in GB/s, each as a fraction of the measured ceiling: GPU time from timestamp
//!   queries where the adapter has them, else a synchronised wall clock over many repetitions;
//!   medians and spread (min–max) over samples. The ceilings are measured before and after the
//!   kernels, and a fraction is the kernel's best sample over the best ceiling sample (on a
//!   shared machine, the least disturbed of each);
//! - whole training steps (the trainer's own step, minibatch sampling included) per algorithm:
//!   ms/step, agent-steps/s and dispatches/step at each n, fused and in the per-agent mode (every
//!   dense kernel dispatched once per job, as a loop over agents would), with the ratio.
//!
//! The figures a roofline needs are in BENCHMARKS.md (FLOPs and bytes per step as functions of
//! n, batch and model).

use clap::Parser;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use swarmgrad::backend::gpu::{
    AdapterChoice, Ceilings, GpuBackend, GpuContext, KernelFamily, Probe, Spread,
};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::*;
use swarmgrad::data::synthetic_train_test;
use swarmgrad::model::{flat, Model};
use swarmgrad::sparse::Csr;
use swarmgrad::train::{Summary, TrainConfig, Trainer};
use swarmgrad::{Error, Result};

/// Command line.
#[derive(Parser, Clone, Debug)]
#[command(about = "WGSL kernels and training steps against each device's own ceilings")]
pub struct Args {
    /// Devices: `auto` (the best wgpu adapter, honouring WGPU_BACKEND / WGPU_ADAPTER_NAME),
    /// `all` (every wgpu adapter found, one table each), `none` (CPU rows only), a backend
    /// (vulkan, gl, metal, dx12) or part of an adapter name.
    #[arg(long, default_value = "auto")]
    pub adapter: String,
    /// Also time the native CPU backend (the `cpu` rows).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cpu: bool,
    /// Print one JSON object with every figure as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Fewer sizes and samples: a run for iteration (under two minutes here).
    #[arg(long)]
    pub quick: bool,
    /// Agent counts (default 4,16,64; quick 4,16).
    #[arg(long, value_delimiter = ',')]
    pub agents: Option<Vec<usize>>,
    /// Models of the kernel tables (default mlp:784-128-10,mlp:3072-512-512-10; quick the first).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Model of the whole-step table (default: the first of --models).
    #[arg(long)]
    pub step_model: Option<String>,
    /// Rows per agent.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Algorithms of the whole-step table (one per family).
    #[arg(long, value_delimiter = ',', default_value = "dsgd,qgm,relaysgd,ngm")]
    pub algos: Vec<String>,
    /// Which tables: `kernels`, `steps`, `cnn` (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "kernels,steps,cnn")]
    pub tables: Vec<String>,
    /// Models of the CNN table (whole dsgd steps on MNIST-shaped 1×28×28 images).
    #[arg(long, value_delimiter = ',', default_value = "cnn5,resnet20")]
    pub cnn_models: Vec<String>,
    /// Agents of the CNN table.
    #[arg(long, default_value_t = 4)]
    pub cnn_agents: usize,
    /// Rows per agent in the CNN table (small: a cnn5 step is 2.5 GFLOP per agent at batch 32,
    /// seconds on a CPU rasteriser).
    #[arg(long, default_value_t = 8)]
    pub cnn_batch: usize,
    /// Rounds of each whole-step figure, fused and per-agent alternating; the best round of each
    /// counts (default 3; quick 2).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Timed samples per figure (default 7; quick 3).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Timed training steps per whole-step figure, after two warm-up steps (default 10; quick 4).
    #[arg(long)]
    pub steps: Option<u64>,
}

/// The sizes and sample counts a run uses.
struct Plan {
    agents: Vec<usize>,
    models: Vec<Model>,
    step_model: Model,
    cnn_models: Vec<Model>,
    cnn_agents: usize,
    cnn_batch: usize,
    batch: usize,
    algos: Vec<String>,
    samples: usize,
    steps: u64,
    /// Minimum timed seconds per sample (repetitions are added until a sample lasts this long).
    min_sample_s: f64,
    kernels: bool,
    steps_table: bool,
    /// Rounds of each whole-step measurement (the best is kept).
    rounds: usize,
}

impl Plan {
    fn new(a: &Args) -> Result<Plan> {
        let agents = a.agents.clone().unwrap_or(if a.quick {
            vec![4, 16]
        } else {
            vec![4, 16, 64]
        });
        let names = a.models.clone().unwrap_or_else(|| {
            let mut v = vec!["mlp:784-128-10".to_string()];
            if !a.quick {
                v.push("mlp:3072-512-512-10".into());
            }
            v
        });
        let models = names.iter().map(|m| mlp(m)).collect::<Result<Vec<_>>>()?;
        let step_model = match &a.step_model {
            Some(m) => mlp(m)?,
            None => models
                .first()
                .cloned()
                .ok_or_else(|| Error::param("models", "name at least one model"))?,
        };
        if let Some(t) = a
            .tables
            .iter()
            .find(|t| !["kernels", "steps", "cnn"].contains(&t.as_str()))
        {
            return Err(Error::param(
                "tables",
                format!("'{t}': use kernels, steps, cnn or a list of them"),
            ));
        }
        let cnn_models = if a.tables.iter().any(|t| t == "cnn") {
            a.cnn_models
                .iter()
                .map(|m| Model::parse(m, CNN_INPUT, 10))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        if a.cnn_agents == 0 || a.cnn_batch == 0 {
            return Err(Error::param(
                "cnn-agents",
                "the CNN table's agents and batch must be positive",
            ));
        }
        if agents.is_empty() || agents.contains(&0) || a.batch == 0 {
            return Err(Error::param(
                "agents",
                "agent counts and batch must be positive",
            ));
        }
        Ok(Plan {
            agents,
            models,
            step_model,
            cnn_models,
            cnn_agents: a.cnn_agents,
            cnn_batch: a.cnn_batch,
            batch: a.batch,
            algos: a.algos.clone(),
            samples: a.samples.unwrap_or(if a.quick { 3 } else { 7 }).max(1),
            steps: a.steps.unwrap_or(if a.quick { 4 } else { 10 }).max(1),
            min_sample_s: if a.quick { 0.02 } else { 0.05 },
            kernels: a.tables.iter().any(|t| t == "kernels"),
            steps_table: a.tables.iter().any(|t| t == "steps"),
            rounds: a.rounds.unwrap_or(if a.quick { 2 } else { 3 }).max(1),
        })
    }
}

/// The input of the CNN table's models: an MNIST image.
const CNN_INPUT: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};

/// An MLP of the kernel tables, from its spec (`mlp:784-128-10`).
fn mlp(spec: &str) -> Result<Model> {
    let model = Model::parse(spec, flat(1), 1)?;
    if model.mlp_sizes().is_none() {
        return Err(Error::param(
            "models",
            format!("'{spec}': the kernel tables time MLPs (CNNs go to the cnn table)"),
        ));
    }
    Ok(model)
}

/// A model's spec (`mlp:784-128-10`, `cnn5`), as the trainer and the tables take it.
fn spec(m: &Model) -> String {
    match m.mlp_sizes() {
        Some(sizes) => {
            let w: Vec<String> = sizes.iter().map(usize::to_string).collect();
            format!("mlp:{}", w.join("-"))
        }
        None => m.name().to_string(),
    }
}

/// A failed write of the tables.
fn io(source: std::io::Error) -> Error {
    Error::Io {
        path: "<benchmark output>".into(),
        source,
    }
}

/// A cheap deterministic generator (LCG) in [-1, 1): inputs need only be generic.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Samples of the minibatch gather's dataset.
const SAMPLES: usize = 1024;

/// The buffers of the per-kernel measurements for one (model, n, batch).
struct Work {
    model: Model,
    n: usize,
    batch: usize,
    jobs: Buf,
    params: Buf,
    next: Buf,
    grads: Buf,
    mom: Buf,
    x: Buf,
    acts: Vec<Buf>,
    dz: Vec<Buf>,
    data: Buf,
    labels: Buf,
    index: Buf,
    y: Buf,
    ring: CsrBufs,
    ring_nnz: usize,
    sums: Buf,
    sync: Buf,
}

impl Work {
    fn new(be: &mut dyn Backend, model: &Model, n: usize, batch: usize) -> Result<Work> {
        let rows = n * batch;
        let stride = model.stride();
        let f32s = |be: &mut dyn Backend, len: usize, seed: u64, label: &str| -> Result<Buf> {
            let b = be.alloc(BufKind::F32, len, label)?;
            be.write_f32(b, 0, &uniform(len, seed))?;
            Ok(b)
        };
        let jobs = be.alloc(BufKind::U32, 2 * n, "jobs")?;
        let flat: Vec<u32> = (0..n as u32).flat_map(|i| [i, i]).collect();
        be.write_u32(jobs, 0, &flat)?;
        let params = be.alloc(BufKind::F32, n * stride, "params")?;
        be.write_f32(params, 0, &model.init(n, 1, false))?;
        let mut acts = Vec::new();
        let mut dz = Vec::new();
        for (k, l) in model.dense_layers().iter().enumerate() {
            acts.push(f32s(be, rows * l.out_dim, 10 + k as u64, "act")?);
            dz.push(f32s(be, rows * l.out_dim, 20 + k as u64, "dz")?);
        }
        let dim = model.input_dim();
        let bytes: Vec<u8> = (0..SAMPLES * dim).map(|i| (i * 7919 % 251) as u8).collect();
        let data = be.upload_u8(&bytes, "data")?;
        let labels = be.alloc(BufKind::U32, SAMPLES, "labels")?;
        let lab: Vec<u32> = (0..SAMPLES as u32)
            .map(|i| i % model.classes() as u32)
            .collect();
        be.write_u32(labels, 0, &lab)?;
        let index = be.alloc(BufKind::U32, rows, "index")?;
        let idx: Vec<u32> = (0..rows).map(|r| ((r * 31) % SAMPLES) as u32).collect();
        be.write_u32(index, 0, &idx)?;
        let ring_rows: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                let mut r = vec![(i, 1.0 / 3.0)];
                if n > 1 {
                    r.push(((i + 1) % n, 1.0 / 3.0));
                }
                if n > 2 {
                    r.push(((i + n - 1) % n, 1.0 / 3.0));
                }
                r.sort_by_key(|e| e.0);
                r
            })
            .collect();
        let ring_nnz = ring_rows.iter().map(Vec::len).sum();
        let ring = be.upload_csr(&Csr::from_rows(n, &ring_rows), "ring")?;
        Ok(Work {
            model: model.clone(),
            n,
            batch,
            jobs,
            params,
            next: be.alloc(BufKind::F32, n * stride, "next")?,
            grads: f32s(be, n * stride, 2, "grads")?,
            mom: be.alloc(BufKind::F32, n * stride, "mom")?,
            x: f32s(be, rows * dim, 3, "x")?,
            acts,
            dz,
            data,
            labels,
            index,
            y: be.alloc(BufKind::U32, rows, "y")?,
            ring,
            ring_nnz,
            sums: be.alloc(BufKind::F32, n, "sums")?,
            sync: be.alloc(BufKind::U32, 1, "sync")?,
        })
    }

    fn shape(&self, k: usize) -> DenseJobs {
        DenseJobs {
            jobs: self.jobs,
            n_jobs: self.n,
            batch: self.batch,
            layer: self.model.dense_layers()[k],
            stride: self.model.stride(),
            input_blocks: if k == 0 {
                InputBlocks::ByData
            } else {
                InputBlocks::ByJob
            },
        }
    }

    fn input(&self, k: usize) -> Buf {
        if k == 0 {
            self.x
        } else {
            self.acts[k - 1]
        }
    }

    /// Records one run of `kernel` (every layer, for the dense kernels).
    fn record(&self, be: &mut dyn Backend, kernel: KernelKind) -> Result<()> {
        let layers = self.model.dense_layers().len();
        let stride = self.model.stride();
        match kernel {
            KernelKind::Forward => (0..layers).try_for_each(|k| {
                be.dense_forward(&DenseForward {
                    shape: self.shape(k),
                    params: self.params,
                    input: self.input(k),
                    output: self.acts[k],
                })
            }),
            KernelKind::BackwardData => (1..layers).try_for_each(|k| {
                be.dense_backward_data(&DenseBackwardData {
                    shape: self.shape(k),
                    params: self.params,
                    dz: self.dz[k],
                    input: self.acts[k - 1],
                    relu_mask: true,
                    dx: self.dz[k - 1],
                })
            }),
            KernelKind::BackwardWeights => (0..layers).try_for_each(|k| {
                be.dense_backward_weights(&DenseBackwardWeights {
                    shape: self.shape(k),
                    dz: self.dz[k],
                    input: self.input(k),
                    grads: self.grads,
                })
            }),
            KernelKind::Gather => be.gather(&Gather {
                data: self.data,
                labels: self.labels,
                index: self.index,
                rows: self.n * self.batch,
                dim: self.model.input_dim(),
                norm: ChannelNorm::single(0.5, 0.25),
                x: self.x,
                y: self.y,
            }),
            KernelKind::Mix => be.mix(&Mix {
                csr: self.ring,
                input: self.params,
                in_offset: 0,
                in_stride: stride,
                output: self.next,
                out_offset: 0,
                out_stride: stride,
                len: stride,
            }),
            KernelKind::Update => be.local_step(&LocalStep {
                params: self.params,
                grads: self.grads,
                momentum_buf: self.mom,
                len: self.n * stride,
                lr: 1e-6,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
            }),
            KernelKind::Reduce => be.reduce(&Reduce {
                mode: ReduceMode::Sum,
                a: self.params,
                a_offset: 0,
                a_stride: stride,
                b: self.params,
                b_offset: 0,
                b_stride: stride,
                segments: self.n,
                seg_len: stride,
                out: self.sums,
                out_offset: 0,
            }),
        }
    }

    /// FLOPs (dense kernels) or bytes read plus written (the others) of one run of `kernel`.
    fn work(&self, kernel: KernelKind) -> f64 {
        let rows = (self.n * self.batch) as f64;
        let layers = self.model.dense_layers();
        let stride = self.model.stride() as f64;
        let n = self.n as f64;
        match kernel {
            KernelKind::Forward => {
                2.0 * rows
                    * layers
                        .iter()
                        .map(|l| (l.in_dim * l.out_dim) as f64)
                        .sum::<f64>()
            }
            KernelKind::BackwardData => {
                2.0 * rows
                    * layers[1..]
                        .iter()
                        .map(|l| (l.in_dim * l.out_dim) as f64)
                        .sum::<f64>()
            }
            KernelKind::BackwardWeights => {
                2.0 * rows
                    * layers
                        .iter()
                        .map(|l| ((l.in_dim + 1) * l.out_dim) as f64)
                        .sum::<f64>()
            }
            // A byte per feature read, a float written; index, label and label out per row.
            KernelKind::Gather => rows * (5.0 * self.model.input_dim() as f64 + 12.0),
            // One read per nonzero and one write per row, of every element.
            KernelKind::Mix => (self.ring_nnz as f64 + n) * stride * 4.0,
            // Parameters, gradients and momentum read; parameters and momentum written.
            KernelKind::Update => 5.0 * n * stride * 4.0,
            KernelKind::Reduce => n * stride * 4.0,
        }
    }
}

/// The kernels of the per-kernel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KernelKind {
    Forward,
    BackwardData,
    BackwardWeights,
    Gather,
    Mix,
    Update,
    Reduce,
}

impl KernelKind {
    const ALL: [KernelKind; 7] = [
        KernelKind::Forward,
        KernelKind::BackwardData,
        KernelKind::BackwardWeights,
        KernelKind::Gather,
        KernelKind::Mix,
        KernelKind::Update,
        KernelKind::Reduce,
    ];

    fn name(self) -> &'static str {
        match self {
            KernelKind::Forward => "dense_forward",
            KernelKind::BackwardData => "dense_backward_data",
            KernelKind::BackwardWeights => "dense_backward_weights",
            KernelKind::Gather => "gather",
            KernelKind::Mix => "mix",
            KernelKind::Update => "local_step",
            KernelKind::Reduce => "reduce",
        }
    }

    fn is_dense(self) -> bool {
        matches!(
            self,
            KernelKind::Forward | KernelKind::BackwardData | KernelKind::BackwardWeights
        )
    }
}

/// How a figure was timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    Timestamps,
    Wall,
}

/// Seconds per call of `record`: `samples` samples after a warm-up, each of enough calls in one
/// submission to last `min_s`. GPU time from timestamp queries where the backend has them,
/// else wall time to a read-back that waits for the device.
fn time_calls(
    be: &mut dyn Backend,
    sync: Buf,
    samples: usize,
    min_s: f64,
    record: &dyn Fn(&mut dyn Backend) -> Result<()>,
) -> Result<(Spread, Clock)> {
    let one = |be: &mut dyn Backend, reps: usize| -> Result<(f64, Clock)> {
        let t0 = Instant::now();
        for _ in 0..reps {
            record(be)?;
        }
        let gpu = be.gpu_seconds()?;
        be.read_u32(sync)?;
        let wall = t0.elapsed().as_secs_f64();
        Ok(match gpu {
            Some(s) if s > 0.0 => (s / reps as f64, Clock::Timestamps),
            _ => (wall / reps as f64, Clock::Wall),
        })
    };
    // Warm-up (pipelines compile on first use), then one call to size the samples.
    one(be, 1)?;
    let (t1, _) = one(be, 1)?;
    let reps = ((min_s / t1.max(1e-7)).ceil() as usize).clamp(1, 500);
    let mut v = Vec::with_capacity(samples);
    let mut clock = Clock::Wall;
    for _ in 0..samples {
        let (t, c) = one(be, reps)?;
        v.push(t);
        clock = c;
    }
    Ok((Spread::of(&v), clock))
}

/// One row of the kernel table.
struct KernelRow {
    model: String,
    n: usize,
    kernel: KernelKind,
    /// Kernel family of the dense kernels (None for the others, and on the CPU).
    family: Option<KernelFamily>,
    /// Dispatched once per job (the per-agent mode).
    per_agent: bool,
    seconds: Spread,
    /// GFLOP/s (dense) or GB/s (others), spread over the samples.
    rate: Spread,
    /// Median rate over the ceiling (None without ceilings).
    fraction: Option<f64>,
    clock: Clock,
}

impl KernelRow {
    fn json(&self) -> Value {
        let unit = if self.kernel.is_dense() {
            "gflops"
        } else {
            "gbps"
        };
        json!({
            "model": self.model,
            "agents": self.n,
            "kernel": self.kernel.name(),
            "family": self.family.map(KernelFamily::name),
            "per_agent": self.per_agent,
            "seconds": self.seconds,
            unit: self.rate,
            "fraction_of_ceiling": self.fraction,
            "clock": if self.clock == Clock::Timestamps { "timestamps" } else { "wall" },
        })
    }
}

/// Measures `kinds` at every size of the plan on one backend, with `ceilings` (FMA GFLOP/s,
/// copy GB/s) as the fractions' base where known.
fn kernel_rows(
    be: &mut dyn Backend,
    plan: &Plan,
    kinds: &[KernelKind],
    ceilings: Option<(f64, f64)>,
    skipped: &mut Vec<Value>,
) -> Result<Vec<KernelRow>> {
    let mut rows = Vec::new();
    for model in &plan.models {
        for &n in &plan.agents {
            let mark = be.live_buffers().count;
            let w = match Work::new(be, model, n, plan.batch) {
                Ok(w) => w,
                // A size past the adapter's buffer limits: said in the table, not fatal.
                Err(e @ Error::BufferTooLarge { .. }) => {
                    be.release_from(mark);
                    let s = json!({"model": spec(model), "agents": n, "reason": e.to_string()});
                    if !skipped.contains(&s) {
                        skipped.push(s);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            for &kernel in kinds {
                if kernel == KernelKind::BackwardData && model.dense_layers().len() < 2 {
                    continue;
                }
                let (seconds, clock) =
                    time_calls(be, w.sync, plan.samples, plan.min_sample_s, &|be| {
                        w.record(be, kernel)
                    })?;
                let amount = w.work(kernel) / 1e9;
                let rate = seconds.map(|t| amount / t);
                let fraction = ceilings
                    .map(|(flops, bw)| rate.max / if kernel.is_dense() { flops } else { bw });
                rows.push(KernelRow {
                    model: spec(model),
                    n,
                    kernel,
                    family: None,
                    per_agent: false,
                    seconds,
                    rate,
                    fraction,
                    clock,
                });
            }
            be.release_from(mark);
        }
    }
    Ok(rows)
}

/// One row of the whole-step table.
#[derive(serde::Serialize)]
struct StepRow {
    algo: String,
    agents: usize,
    mode: &'static str,
    ms_per_step: f64,
    agent_steps_per_s: f64,
    dispatches_per_step: f64,
    submits_per_step: f64,
    gpu_ms_per_step: Option<f64>,
    /// ms/step of every round (the figures above are the best round's).
    ms_per_step_rounds: Vec<f64>,
}

impl StepRow {
    /// The faster of two measurements of the same step, with both rounds' times.
    fn best_of(self, other: StepRow) -> StepRow {
        let mut rounds = self.ms_per_step_rounds.clone();
        rounds.extend(&other.ms_per_step_rounds);
        let mut best = if other.ms_per_step < self.ms_per_step {
            other
        } else {
            self
        };
        best.ms_per_step_rounds = rounds;
        best
    }
}

/// The whole-step table: every algorithm at every n, fused and, where the backend has a
/// per-agent switch, per agent. Rounds alternate the two modes, so a change of load on a shared
/// machine hits both; each mode keeps its best round.
fn step_rows(
    mut be: Box<dyn Backend>,
    plan: &Plan,
    per_agent: Option<&AtomicBool>,
) -> Result<(Vec<StepRow>, Box<dyn Backend>)> {
    let modes: &[(&'static str, bool)] = if per_agent.is_some() {
        &[("fused", false), ("per_agent", true)]
    } else {
        &[("fused", false)]
    };
    let mut steps = Vec::new();
    for algo in plan.algos.iter().filter(|_| plan.steps_table) {
        for &n in &plan.agents {
            let mut best: Vec<Option<StepRow>> = modes.iter().map(|_| None).collect();
            for _ in 0..plan.rounds {
                for (k, &(mode, split)) in modes.iter().enumerate() {
                    if let Some(switch) = per_agent {
                        switch.store(split, Ordering::Relaxed);
                    }
                    let (row, back) = step_row(be, plan, algo, n, mode)?;
                    be = back;
                    best[k] = Some(match best[k].take() {
                        Some(b) => b.best_of(row),
                        None => row,
                    });
                }
            }
            steps.extend(best.into_iter().flatten());
        }
    }
    if let Some(switch) = per_agent {
        switch.store(false, Ordering::Relaxed);
    }
    Ok((steps, be))
}

/// Trains `plan.steps` timed steps (after two warm-up steps) of `algo` with n agents on the
/// step model, on a synthetic task of the model's input width; returns the backend.
fn step_row(
    be: Box<dyn Backend>,
    plan: &Plan,
    algo: &str,
    n: usize,
    mode: &'static str,
) -> Result<(StepRow, Box<dyn Backend>)> {
    let (s, be) = timed_steps(be, &plan.step_model, algo, n, plan.batch, 2, plan.steps)?;
    let row = StepRow {
        algo: algo.to_string(),
        agents: n,
        mode,
        ms_per_step: s.ms_per_step,
        agent_steps_per_s: s.agent_steps_per_s,
        dispatches_per_step: s.dispatches_per_step,
        submits_per_step: s.submits_per_step,
        gpu_ms_per_step: s.gpu_s.map(|g| 1e3 * g / plan.steps as f64),
        ms_per_step_rounds: vec![s.ms_per_step],
    };
    Ok((row, be))
}

/// Trains `warm` warm-up steps, then `steps` timed ones, of `algo` with n agents on a seeded
/// synthetic task shaped like the model's input; the summary of the timed steps.
fn timed_steps(
    be: Box<dyn Backend>,
    model: &Model,
    algo: &str,
    n: usize,
    batch: usize,
    warm: u64,
    steps: u64,
) -> Result<(Summary, Box<dyn Backend>)> {
    let mut c = TrainConfig {
        algo: algo.parse()?,
        agents: n,
        partition: "iid".into(),
        alpha: None,
        model: Some(spec(model)),
        batch,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(warm + steps),
        epochs: None,
        ..TrainConfig::default()
    };
    c.eval_every = c.steps.unwrap_or(1);
    let train_n = (4 * n * batch).max(512);
    let bad = |e: swarmgrad::data::DataError| Error::param("model", e.to_string());
    let (mut train, mut test) =
        synthetic_train_test(train_n, 64, model.classes(), model.input_dim(), 3.0, 0)
            .map_err(bad)?;
    if model.mlp_sizes().is_none() {
        (train, test) = (
            train.with_shape(model.input()).map_err(bad)?,
            test.with_shape(model.input()).map_err(bad)?,
        );
    }
    let mut t = Trainer::with_data(c, be, &train, &test)?;
    t.run_until(warm, |_, _, _| {})?;
    let s = t.run_until(warm + steps, |_, _, _| {})?;
    Ok((s, t.into_backend()))
}

/// One row of the CNN table: whole dsgd steps of a convolutional model.
#[derive(serde::Serialize)]
struct CnnRow {
    model: String,
    agents: usize,
    batch: usize,
    ms_per_step: f64,
    agent_steps_per_s: f64,
    dispatches_per_step: f64,
    /// The model's training FLOPs per step (forward and backward, all agents).
    gflop_per_step: f64,
    gflops: f64,
    /// GFLOP/s over the device's measured FMA ceiling (None on the CPU).
    fraction_of_fma_peak: Option<f64>,
}

/// Times one warm-up and `plan.steps` (at most 3) dsgd steps of every CNN of the plan.
fn cnn_rows(
    mut be: Box<dyn Backend>,
    plan: &Plan,
    fma_peak: Option<f64>,
) -> Result<(Vec<CnnRow>, Box<dyn Backend>)> {
    let (n, batch) = (plan.cnn_agents, plan.cnn_batch);
    let mut rows = Vec::new();
    for model in &plan.cnn_models {
        let (s, back) = timed_steps(be, model, "dsgd", n, batch, 1, plan.steps.min(3))?;
        be = back;
        let gflop = model.step_flops(n, batch) as f64 / 1e9;
        let gflops = gflop / (s.ms_per_step / 1e3);
        rows.push(CnnRow {
            model: spec(model),
            agents: n,
            batch,
            ms_per_step: s.ms_per_step,
            agent_steps_per_s: s.agent_steps_per_s,
            dispatches_per_step: s.dispatches_per_step,
            gflop_per_step: gflop,
            gflops,
            fraction_of_fma_peak: fma_peak.map(|p| gflops / p),
        });
    }
    Ok((rows, be))
}

fn print_cnn(out: &mut dyn Write, rows: &[CnnRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "
convolutional models, dsgd on 1×28×28 images
{:<10} {:>4} {:>6} {:>10} {:>14} {:>11} {:>12} {:>9} {:>8}",
        "model",
        "n",
        "batch",
        "ms/step",
        "agent-steps/s",
        "dispatches",
        "GFLOP/step",
        "GFLOP/s",
        "of FMA"
    )
    .map_err(io)?;
    for r in rows {
        writeln!(
            out,
            "{:<10} {:>4} {:>6} {:>10.1} {:>14.1} {:>11.0} {:>12.3} {:>9.2} {:>8}",
            r.model,
            r.agents,
            r.batch,
            r.ms_per_step,
            r.agent_steps_per_s,
            r.dispatches_per_step,
            r.gflop_per_step,
            r.gflops,
            r.fraction_of_fma_peak
                .map(|f| format!("{:.0}%", 100.0 * f))
                .unwrap_or_else(|| "-".into()),
        )
        .map_err(io)?;
    }
    Ok(())
}

fn fmt_spread(s: Spread, scale: f64) -> String {
    format!(
        "{:.3} ({:.3}–{:.3})",
        s.median * scale,
        s.min * scale,
        s.max * scale
    )
}

fn print_kernels(out: &mut dyn Write, rows: &[KernelRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<22} {:>4} {:<22} {:<9} {:>28} {:>22} {:>8}",
        "model", "n", "kernel", "family", "ms per call (min–max)", "rate", "of ceil"
    )
    .map_err(io)?;
    for r in rows {
        let unit = if r.kernel.is_dense() {
            "GFLOP/s"
        } else {
            "GB/s"
        };
        writeln!(
            out,
            "{:<22} {:>4} {:<22} {:<9} {:>28} {:>14.2} {:<7} {:>8}",
            r.model,
            r.n,
            r.kernel.name(),
            match (r.family, r.per_agent) {
                (Some(f), true) => format!("{}/job", f.name()),
                (Some(f), false) => f.name().to_string(),
                (None, _) => "-".into(),
            },
            fmt_spread(r.seconds, 1e3),
            r.rate.median,
            unit,
            r.fraction
                .map(|f| format!("{:.0}%", 100.0 * f))
                .unwrap_or_else(|| "-".into()),
        )
        .map_err(io)?;
    }
    Ok(())
}

fn print_skipped(out: &mut dyn Write, skipped: &[Value]) -> Result<()> {
    for s in skipped {
        writeln!(
            out,
            "skipped {} at n = {}: {}",
            s["model"].as_str().unwrap_or("?"),
            s["agents"],
            s["reason"].as_str().unwrap_or("?")
        )
        .map_err(io)?;
    }
    Ok(())
}

/// The whole-step table under its title (nothing when the table was not asked for).
fn print_steps(out: &mut dyn Write, title: &str, rows: &[StepRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}").map_err(io)?;
    writeln!(
        out,
        "{:<10} {:>4} {:>10} {:>14} {:>11} | {:>13} {:>11} | {:>8}",
        "algo",
        "n",
        "ms/step",
        "agent-steps/s",
        "dispatches",
        "per-agent ms",
        "dispatches",
        "speedup"
    )
    .map_err(io)?;
    for r in rows.iter().filter(|r| r.mode == "fused") {
        let pa = rows
            .iter()
            .find(|p| p.mode == "per_agent" && p.algo == r.algo && p.agents == r.agents);
        let (pa_ms, pa_d, ratio) = match pa {
            Some(p) => (
                format!("{:.2}", p.ms_per_step),
                format!("{:.0}", p.dispatches_per_step),
                format!("{:.2}x", p.ms_per_step / r.ms_per_step),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        writeln!(
            out,
            "{:<10} {:>4} {:>10.2} {:>14.0} {:>11.0} | {:>13} {:>11} | {:>8}",
            r.algo,
            r.agents,
            r.ms_per_step,
            r.agent_steps_per_s,
            r.dispatches_per_step,
            pa_ms,
            pa_d,
            ratio
        )
        .map_err(io)?;
    }
    Ok(())
}

/// The minimum over rows of a kernel (dense: the three together, FLOP-weighted per size) of the
/// fraction of the ceiling, for the adapter's own family.
fn headline(rows: &[KernelRow], family: KernelFamily, steps: &[StepRow]) -> Map<String, Value> {
    let mut h = Map::new();
    let min = |it: &mut dyn Iterator<Item = f64>| it.fold(f64::INFINITY, f64::min);
    let fam_ok = |r: &&KernelRow| !r.per_agent && r.family.is_none_or(|f| f == family);
    // Dense: all three kernels of one (model, n) together.
    let mut sizes: Vec<(String, usize)> = rows.iter().map(|r| (r.model.clone(), r.n)).collect();
    sizes.dedup();
    let dense = min(&mut sizes.iter().filter_map(|(m, n)| {
        let it: Vec<&KernelRow> = rows
            .iter()
            .filter(fam_ok)
            .filter(|r| r.kernel.is_dense() && &r.model == m && r.n == *n)
            .collect();
        // FLOPs over the summed best times, against the ceiling each row was compared with.
        let flops: f64 = it.iter().map(|r| r.rate.median * r.seconds.median).sum();
        let secs: f64 = it.iter().map(|r| r.seconds.min).sum();
        let peak = it
            .first()
            .and_then(|r| r.fraction.map(|f| r.rate.max / f))
            .unwrap_or(f64::NAN);
        let frac = flops / secs / peak;
        (flops > 0.0).then_some(frac)
    }));
    h.insert("dense_fraction_of_fma_peak".into(), json!(dense));
    let mut per_kernel = Map::new();
    for k in KernelKind::ALL {
        let f = min(&mut rows
            .iter()
            .filter(fam_ok)
            .filter(|r| r.kernel == k)
            .filter_map(|r| r.fraction));
        if f.is_finite() {
            per_kernel.insert(k.name().into(), json!(f));
        }
        let key = match k {
            KernelKind::Mix => "mix_fraction_of_copy_bw",
            KernelKind::Update => "update_fraction_of_copy_bw",
            KernelKind::Gather => "gather_fraction_of_copy_bw",
            KernelKind::Reduce => "reduce_fraction_of_copy_bw",
            _ => continue,
        };
        h.insert(key.into(), json!(f.is_finite().then_some(f)));
    }
    h.insert("kernel_fraction_min".into(), Value::Object(per_kernel));
    let mut speedup = Map::new();
    let mut dispatches = Map::new();
    for r in steps.iter().filter(|r| r.mode == "fused") {
        dispatches
            .entry(r.algo.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(r.agents.to_string(), json!(r.dispatches_per_step));
        if let Some(p) = steps
            .iter()
            .find(|p| p.mode == "per_agent" && p.algo == r.algo && p.agents == r.agents)
        {
            let s = p.ms_per_step / r.ms_per_step;
            let e = speedup.entry(r.agents.to_string()).or_insert(json!(s));
            *e = json!(e.as_f64().unwrap_or(s).min(s));
        }
    }
    h.insert("fused_vs_per_agent_speedup".into(), Value::Object(speedup));
    h.insert("dispatches_per_step".into(), Value::Object(dispatches));
    h
}

/// The wgpu adapters `spec` names, as choices that open exactly them.
fn choices(spec: &str) -> Result<Vec<AdapterChoice>> {
    let env = AdapterChoice::from_env();
    match spec {
        "none" => Ok(Vec::new()),
        "auto" => Ok(vec![env]),
        "all" => {
            let mut v: Vec<AdapterChoice> = Vec::new();
            for a in GpuContext::adapters(&AdapterChoice::default()) {
                let i = a.get_info();
                let c = AdapterChoice {
                    backends: wgpu::Backends::from(i.backend),
                    name: Some(i.name.clone()),
                    spread: 0,
                };
                if !v
                    .iter()
                    .any(|o| o.backends == c.backends && o.name == c.name)
                {
                    v.push(c);
                }
            }
            Ok(v)
        }
        s => {
            let as_backend = AdapterChoice::default().with_overrides(Some(s), None);
            match as_backend {
                Ok(c) => Ok(vec![c]),
                Err(_) => Ok(vec![AdapterChoice::default().with_overrides(None, Some(s))?]),
            }
        }
    }
}

/// Benchmarks one wgpu adapter: tables to `out`, every figure in the returned object.
fn bench_gpu(out: &mut dyn Write, plan: &Plan, choice: &AdapterChoice) -> Result<Value> {
    let mut be = GpuBackend::new(choice)?;
    let info = be.context().info.clone();
    let auto = KernelFamily::for_device(info.device_type);
    writeln!(out, "\n== {} ==\n{}", be.describe(), be.context().report()).map_err(io)?;
    let ceilings: Ceilings = Probe::new(be.context()).measure(plan.samples)?;
    let c = &ceilings;
    writeln!(
        out,
        "ceilings (median, min–max of {}): FMA {} GFLOP/s | copy shader {} GB/s | \
         copy_buffer_to_buffer {} GB/s | empty dispatch {} µs | submit {} µs",
        plan.samples,
        fmt_spread(c.fma_gflops, 1.0),
        fmt_spread(c.copy_shader_gbps, 1.0),
        fmt_spread(c.copy_buffer_gbps, 1.0),
        fmt_spread(c.dispatch_us, 1.0),
        fmt_spread(c.submit_us, 1.0),
    )
    .map_err(io)?;
    writeln!(
        out,
        "kernel family of this adapter: {} (timing: {})\n",
        auto.name(),
        if be.has_timestamps() {
            "timestamp queries"
        } else {
            "wall clock to a read-back"
        }
    )
    .map_err(io)?;
    // The adapter's own family first (it is left selected for the whole-step table).
    // Then the other family, then the adapter's own in the per-agent mode (one dispatch per job).
    let other = match auto {
        KernelFamily::Tiled => KernelFamily::Wide,
        KernelFamily::Wide => KernelFamily::Tiled,
    };
    let families = [(auto, false), (other, false), (auto, true)];
    let switch = be.per_agent_switch();
    let peaks = (c.fma_gflops.max, c.copy_shader_gbps.max);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (f, split) in families {
        be.set_kernel_family(f);
        switch.store(split, Ordering::Relaxed);
        // The kernels other than the dense ones do not depend on the family: measured once.
        let kinds: Vec<KernelKind> = KernelKind::ALL
            .into_iter()
            .filter(|k| plan.kernels && (k.is_dense() || (f == auto && !split)))
            .collect();
        let mut r = kernel_rows(&mut be, plan, &kinds, Some(peaks), &mut skipped)?;
        for row in r.iter_mut().filter(|row| row.kernel.is_dense()) {
            row.family = Some(f);
            row.per_agent = split;
        }
        rows.extend(r);
    }
    be.set_kernel_family(auto);
    switch.store(false, Ordering::Relaxed);
    rows.sort_by_key(|r| {
        (
            plan.models.iter().position(|m| spec(m) == r.model),
            r.n,
            r.kernel as usize,
            r.family.map(|f| f != auto),
            r.per_agent,
        )
    });
    // The ceilings again after the kernels: on a shared machine the load changes while the
    // kernels run, and every fraction is the best sample over the best ceiling seen.
    let after: Ceilings = Probe::new(be.context()).measure(plan.samples)?;
    let best = (
        peaks.0.max(after.fma_gflops.max),
        peaks.1.max(after.copy_shader_gbps.max),
    );
    for r in &mut rows {
        r.fraction = Some(r.rate.max / if r.kernel.is_dense() { best.0 } else { best.1 });
    }
    writeln!(
        out,
        "ceilings after the kernels: FMA {} GFLOP/s | copy shader {} GB/s; fractions below are \
         each kernel's best sample over the best ceiling sample ({:.2} GFLOP/s, {:.2} GB/s)",
        fmt_spread(after.fma_gflops, 1.0),
        fmt_spread(after.copy_shader_gbps, 1.0),
        best.0,
        best.1
    )
    .map_err(io)?;
    print_kernels(out, &rows)?;
    print_skipped(out, &skipped)?;
    let (steps, be) = step_rows(Box::new(be), plan, Some(&switch))?;
    let title = format!(
        "whole training step, {} batch {} (per-agent: every dense kernel dispatched once per job)",
        spec(&plan.step_model),
        plan.batch
    );
    print_steps(out, &title, &steps)?;
    let (cnn, _) = cnn_rows(be, plan, Some(best.0))?;
    print_cnn(out, &cnn)?;
    let mut v = Map::new();
    v.insert("adapter".into(), json!(info.name));
    v.insert("backend".into(), json!(format!("{:?}", info.backend)));
    v.insert(
        "device_type".into(),
        json!(format!("{:?}", info.device_type)),
    );
    v.insert(
        "driver".into(),
        json!(format!("{} {}", info.driver, info.driver_info)),
    );
    v.insert("kernel_family".into(), json!(auto.name()));
    v.insert("ceilings".into(), json!(ceilings));
    v.insert("ceilings_after_kernels".into(), json!(after));
    v.insert(
        "ceilings_used".into(),
        json!({"fma_gflops": best.0, "copy_shader_gbps": best.1}),
    );
    v.extend(headline(&rows, auto, &steps));
    v.insert(
        "kernels".into(),
        Value::Array(rows.iter().map(KernelRow::json).collect()),
    );
    v.insert("steps".into(), json!(steps));
    v.insert("cnn".into(), json!(cnn));
    v.insert("skipped".into(), Value::Array(skipped));
    Ok(Value::Object(v))
}

/// The native CPU backend's rows: kernels (no ceilings) and fused whole steps.
fn bench_cpu(out: &mut dyn Write, plan: &Plan) -> Result<Value> {
    let mut be = NativeBackend::new(0)?;
    writeln!(out, "\n== cpu: {} ==", be.describe()).map_err(io)?;
    let mut skipped = Vec::new();
    let kinds = if plan.kernels {
        &KernelKind::ALL[..]
    } else {
        &[]
    };
    let rows = kernel_rows(&mut be, plan, kinds, None, &mut skipped)?;
    print_kernels(out, &rows)?;
    print_skipped(out, &skipped)?;
    let (steps, be) = step_rows(Box::new(be), plan, None)?;
    let title = format!(
        "whole training step, {} batch {}",
        spec(&plan.step_model),
        plan.batch
    );
    print_steps(out, &title, &steps)?;
    let describe = be.describe();
    let (cnn, _) = cnn_rows(be, plan, None)?;
    print_cnn(out, &cnn)?;
    Ok(json!({
        "backend": describe,
        "cnn": cnn,
        "kernels": rows.iter().map(KernelRow::json).collect::<Vec<_>>(),
        "steps": steps,
        "skipped": skipped,
    }))
}

/// Runs the benchmark: tables to `out`, and the JSON object (also printed last with `--json`).
pub fn run(args: &Args, out: &mut dyn Write) -> Result<Value> {
    let plan = Plan::new(args)?;
    let started = Instant::now();
    let mut adapters = Vec::new();
    for choice in choices(&args.adapter)? {
        match bench_gpu(out, &plan, &choice) {
            Ok(v) => adapters.push(v),
            // `auto` on a machine without any adapter: the CPU rows still run.
            Err(Error::NoAdapter(why)) if args.adapter == "auto" => {
                writeln!(out, "no wgpu adapter ({why}): CPU rows only").map_err(io)?
            }
            Err(e) => return Err(e),
        }
    }
    let cpu = if args.cpu {
        Some(bench_cpu(out, &plan)?)
    } else {
        None
    };
    // Headline figures: each target must hold on every adapter, so the minimum over adapters.
    let mut top = Map::new();
    for key in [
        "dense_fraction_of_fma_peak",
        "mix_fraction_of_copy_bw",
        "update_fraction_of_copy_bw",
        "gather_fraction_of_copy_bw",
        "reduce_fraction_of_copy_bw",
    ] {
        let m = adapters
            .iter()
            .filter_map(|a| a[key].as_f64())
            .fold(f64::INFINITY, f64::min);
        top.insert(key.into(), json!(m.is_finite().then_some(m)));
    }
    let mut speedup = Map::new();
    for a in &adapters {
        if let Some(s) = a["fused_vs_per_agent_speedup"].as_object() {
            for (n, v) in s {
                let v = v.as_f64().unwrap_or(f64::NAN);
                let e = speedup.entry(n.clone()).or_insert(json!(v));
                *e = json!(e.as_f64().unwrap_or(v).min(v));
            }
        }
    }
    top.insert("fused_vs_per_agent_speedup".into(), Value::Object(speedup));
    top.insert(
        "dispatches_per_step".into(),
        adapters
            .first()
            .map(|a| a["dispatches_per_step"].clone())
            .unwrap_or(json!({})),
    );
    top.insert("batch".into(), json!(plan.batch));
    top.insert("agents".into(), json!(plan.agents));
    top.insert(
        "models".into(),
        json!(plan.models.iter().map(spec).collect::<Vec<_>>()),
    );
    top.insert("step_model".into(), json!(spec(&plan.step_model)));
    top.insert("quick".into(), json!(args.quick));
    top.insert("adapters".into(), Value::Array(adapters));
    top.insert("cpu".into(), cpu.unwrap_or(Value::Null));
    top.insert("wall_s".into(), json!(started.elapsed().as_secs_f64()));
    let v = Value::Object(top);
    if args.json {
        writeln!(out, "{v}").map_err(io)?;
    }
    Ok(v)
}

#[allow(dead_code)]
fn main() {
    let args = Args::parse();
    let stdout = std::io::stdout();
    if let Err(e) = run(&args, &mut stdout.lock()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
