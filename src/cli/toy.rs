//! The toy command line (`examples/toy.rs`). `--backend reference` runs the exact f64 reference
//! (the toy problems' closed forms hold to f64 rounding there); the default `auto` and the
//! `gpu`/`cpu` backends run in f32.

use crate::algo::{AlgoOptions, Algorithm, LocalHyper};
use crate::backend::choice::BackendChoice;
use crate::cli::flag_value;
use crate::cli::train::{exit_code, param_source, parse_args, BackendArgs, Given};
use crate::error::{Error, Result};
use crate::graph::Topology;
use crate::toy::*;
use crate::train::config::Mixing;
use clap::Parser;
use std::io::Write;

/// Flags of the toy command line.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "toy",
    allow_negative_numbers = true,
    about = "Exact checks of the algorithms on the toy problems of ALGORITHMS.md §8.1; prints one JSON line per printed step (f64 with --backend reference, f32 on the other backends)"
)]
pub struct ToyArgs {
    /// Task: constants, one-minus-one, circle, random-quadratics, correction-factor, delivery.
    #[arg(long)]
    pub task: String,
    /// Constants: targets, comma-separated (agent-major; with --dim k, k per agent). Default t_i = i.
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<f64>>,
    /// Dimension d (constants: per-agent target length; random quadratics default 10; one-shot 1).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Agents, where the task has no natural count (default 8).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Algorithm name (any implemented one).
    #[arg(long, default_value_t = Algorithm::Dsgd, value_parser = flag_value::<Algorithm>)]
    pub algo: Algorithm,
    /// Topology.
    #[arg(long, default_value_t = Topology::Ring, value_parser = flag_value::<Topology>)]
    pub topology: Topology,
    /// Constant learning rate (default 0.1; 1 for correction-factor and delivery).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local momentum β in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum (default true; --nesterov false for heavy ball).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub nesterov: bool,
    /// Weight decay λ.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Steps.
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    /// Steps after which to print the parameters, comma-separated (0 = start; default: last).
    #[arg(long, value_delimiter = ',')]
    pub print_steps: Option<Vec<u64>>,
    /// Seed (start point of one-minus-one, random quadratics, algorithm randomness).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Gradient noise level σ (σ·ξ for constants and one-minus-one, σξ/√2 for circle,
    /// (σ/√d)·ξ for random quadratics; ξ standard normal, seeded by --seed and the step).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Random quadratics: heterogeneity ζ².
    #[arg(long, default_value_t = 0.1)]
    pub heterogeneity: f64,
    /// Random quadratics: smallest singular value μ (0: scale by the largest instead).
    #[arg(long, default_value_t = 0.5)]
    pub mu: f64,
    /// Random quadratics: largest singular value L.
    #[arg(long, default_value_t = 1.0)]
    pub smoothness: f64,
    /// Random quadratics: norm of the optimum r₀.
    #[arg(long, default_value_t = 10.0)]
    pub r0: f64,
    /// Delivery: the agent that gets the gradient (default ⌊n/3⌋).
    #[arg(long)]
    pub source: Option<usize>,
    /// Where it runs (as in train): `--backend reference` computes in f64 and prints f64
    /// values, every other backend in f32.
    #[command(flatten)]
    pub device: BackendArgs,
    /// Gossip weight rule (`--gossip-weight`, as in train).
    #[command(flatten)]
    pub mixing: Mixing,
    /// Algorithm-specific options (the same flags as `train`).
    #[command(flatten)]
    pub options: AlgoOptions,
}

/// Builds the problem the flags describe.
pub fn problem_from_args(a: &ToyArgs) -> Result<ToyProblem> {
    task_from_args(a)?.with_noise(a.noise, a.seed)
}

pub(super) fn task_from_args(a: &ToyArgs) -> Result<ToyProblem> {
    let agents = |default: usize| a.agents.unwrap_or(default);
    let task = a.task.trim().to_ascii_lowercase().replace('_', "-");
    if a.targets.is_some() && task != "constants" {
        return Err(Error::param("targets", "only applies to --task constants"));
    }
    if a.source.is_some() && task != "delivery" {
        return Err(Error::param("source", "only applies to --task delivery"));
    }
    match task.as_str() {
        "constants" => {
            let d = a.dim.unwrap_or(1);
            if d == 0 {
                return Err(Error::param("dim", "must be at least 1"));
            }
            let flat = match &a.targets {
                Some(t) => t.clone(),
                None => (0..agents(8) * d).map(|k| (k / d) as f64).collect(),
            };
            if flat.is_empty() || flat.len() % d != 0 {
                return Err(Error::param(
                    "targets",
                    format!("{} values are not a multiple of --dim {d}", flat.len()),
                ));
            }
            let t: Vec<Vec<f64>> = flat.chunks(d).map(<[f64]>::to_vec).collect();
            if let Some(n) = a.agents {
                if n != t.len() {
                    return Err(Error::param(
                        "agents",
                        format!("{n} agents but {} targets", t.len()),
                    ));
                }
            }
            ToyProblem::constants(&t)
        }
        "one-minus-one" | "oneminusone" => {
            no_dim(a)?;
            ToyProblem::one_minus_one(agents(8), a.seed)
        }
        "circle" => {
            no_dim(a)?;
            ToyProblem::circle(agents(8))
        }
        "random-quadratics" | "quadratics" => {
            let q = RandomQuadratics::new(&RandomQuadraticsSpec {
                agents: agents(8),
                d: a.dim.unwrap_or(10),
                smoothness: a.smoothness,
                mu: (a.mu != 0.0).then_some(a.mu),
                zeta2: a.heterogeneity,
                r0: a.r0,
                seed: a.seed,
            })?;
            ToyProblem::random_quadratics(&q)
        }
        "correction-factor" | "correction" => {
            ToyProblem::correction_factor(agents(8), a.dim.unwrap_or(1))
        }
        "delivery" => ToyProblem::delivery(agents(8), a.dim.unwrap_or(1), a.source),
        _ => Err(Error::param(
            "task",
            format!(
                "unknown task '{}'; accepted: constants, one-minus-one, circle, random-quadratics, correction-factor, delivery",
                a.task
            ),
        )),
    }
}

pub(super) fn no_dim(a: &ToyArgs) -> Result<()> {
    match a.dim {
        Some(_) => Err(Error::param(
            "dim",
            format!("the {} task has a fixed dimension", a.task),
        )),
        None => Ok(()),
    }
}

/// Builds the run settings the flags describe (the problem supplies the default rate).
pub fn run_from_args(a: &ToyArgs, p: &ToyProblem) -> Result<ToyRun> {
    a.options.validate()?;
    if !(a.momentum.is_finite() && (0.0..1.0).contains(&a.momentum)) {
        return Err(Error::param(
            "momentum",
            format!("{} is outside [0, 1)", a.momentum),
        ));
    }
    if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
        return Err(Error::param("weight-decay", "must be finite and ≥ 0"));
    }
    let lr = a.lr.unwrap_or(p.default_lr);
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::param("lr", format!("{lr} must be finite and ≥ 0")));
    }
    Ok(ToyRun {
        algo: a.algo,
        topology: a.topology,
        mixing: a.mixing.rule,
        hyper: LocalHyper {
            momentum: a.momentum,
            nesterov: a.nesterov,
            weight_decay: a.weight_decay,
        },
        options: a.options.clone(),
        lr,
        steps: a.steps,
        seed: a.seed,
    })
}

/// Runs the toy command line (`args` starts with the program name): one JSON object per printed
/// step on `out`, notices and errors on `err`. Returns the exit code (2 for a bad flag).
pub fn run_toy<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match parse_args::<ToyArgs, _, _>(args, out, err) {
        Ok((a, _)) => a,
        Err(code) => return code,
    };
    let result = toy_main(&args, out, err);
    let flag_of = |name: &str| param_source::<ToyArgs>(name, None, &Given::default());
    exit_code(result, err, flag_of)
}

pub(super) fn toy_main(a: &ToyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let p = problem_from_args(a)?;
    let run = run_from_args(a, &p)?;
    let mut print = a.print_steps.clone().unwrap_or_else(|| vec![a.steps]);
    if let Some(&bad) = print.iter().find(|&&s| s > a.steps) {
        return Err(Error::param(
            "print-steps",
            format!("step {bad} is after the last step {}", a.steps),
        ));
    }
    print.sort_unstable();
    print.dedup();
    let mut notices = Vec::new();
    let chosen = a.device.open(&mut notices)?;
    for n in &notices {
        let _ = writeln!(err, "notice: {n}");
    }
    let _ = writeln!(err, "{}", super::train::backend_line(&chosen));
    // Only the f64 reference computes in f64; the others' values are f32 and print as such.
    let exact = chosen.kind == BackendChoice::Reference;
    let mut be = chosen.backend;
    let snaps = run_problem(be.as_mut(), &p, &run, &print)?;
    let io = |source| Error::Io {
        path: "<stdout>".into(),
        source,
    };
    for (step, x) in snaps {
        let agents: Vec<serde_json::Value> = x
            .chunks(p.d)
            .map(|xi| {
                let v: Vec<serde_json::Value> = xi
                    .iter()
                    .map(|&v| {
                        if exact {
                            serde_json::Value::from(v)
                        } else {
                            serde_json::Value::from(v as f32)
                        }
                    })
                    .collect();
                serde_json::Value::Array(v)
            })
            .collect();
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("x".into(), serde_json::Value::Array(agents));
        if let Some(e) = p.error(&x) {
            obj.insert("error".into(), e.into());
        }
        writeln!(out, "{}", serde_json::Value::Object(obj)).map_err(io)?;
    }
    Ok(())
}
