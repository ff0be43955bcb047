//! Driving an algorithm on a toy problem, step by step.

use super::*;
use crate::train::watch::DivergenceWatch;

/// How a toy run is driven.
#[derive(Clone, Debug)]
pub struct ToyRun {
    /// Algorithm.
    pub algo: Algorithm,
    /// Topology.
    pub topology: Topology,
    /// Gossip weight rule.
    pub mixing: MixingRule,
    /// Local optimizer.
    pub hyper: LocalHyper,
    /// Algorithm options.
    pub options: AlgoOptions,
    /// Constant learning rate.
    pub lr: f64,
    /// Steps.
    pub steps: u64,
    /// Seed of the algorithm's randomness.
    pub seed: u64,
}

impl Default for ToyRun {
    fn default() -> Self {
        ToyRun {
            algo: Algorithm::Dsgd,
            topology: Topology::Ring,
            mixing: MixingRule::default(),
            hyper: LocalHyper {
                momentum: 0.0,
                nesterov: true,
                weight_decay: 0.0,
            },
            options: AlgoOptions::default(),
            lr: 0.1,
            steps: 100,
            seed: 1,
        }
    }
}

/// Builds the algorithm (stride = d, no padding) and the objective of a problem on a backend.
pub fn build(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
) -> Result<(Box<dyn Algo>, Box<dyn Objective>)> {
    let setup = AlgoSetup {
        agents: p.agents,
        stride: p.d,
        d: p.d,
        init: &p.init,
        topology: &run.topology,
        mixing: &run.mixing,
        hyper: run.hyper,
        seed: run.seed,
        options: &run.options,
        tensors: &[],
    };
    let algo = run.algo.build(be, &setup)?;
    let obj = p.objective(be)?;
    be.flush()?;
    Ok((algo, obj))
}

/// Runs `run.steps` steps (one `record_step` and one flush each) and returns the parameters after
/// each step listed in `print` (0 = the start point), agent-major.
pub fn run_problem(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
    print: &[u64],
) -> Result<Vec<(u64, Vec<f64>)>> {
    if !(run.lr.is_finite() && run.lr >= 0.0) {
        return Err(Error::param(
            "lr",
            format!("{} must be finite and ≥ 0", run.lr),
        ));
    }
    let (mut algo, mut obj) = build(be, p, run)?;
    let mut out = Vec::new();
    if print.contains(&0) {
        out.push((0, be.read_f32(algo.params())?));
    }
    // A diverged run is an error naming the step it diverged at, not snapshots of NaNs.
    let loss = obj.loss_stats().map(|(b, _)| b);
    let mut watch = DivergenceWatch::new(be, p.agents, p.d, p.d, algo.params(), loss)?;
    for t in 0..run.steps {
        algo.record_step(be, obj.as_mut(), t, run.lr)?;
        watch.record(be, algo.params(), t + 1)?;
        be.flush()?;
        if print.contains(&(t + 1)) {
            watch.check(be)?;
            out.push((t + 1, be.read_f32(algo.params())?));
        }
    }
    watch.check(be)?;
    Ok(out)
}
