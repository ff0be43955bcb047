//! The heterogeneity study on random quadratics (`examples/heterogeneity.rs`).

use super::*;

/// One method of the heterogeneity study: a label and its run settings (lr and steps are set
/// by the study).
#[derive(Clone, Debug)]
pub struct StudyMethod {
    /// Row label of the table.
    pub label: String,
    /// Run settings (algorithm, topology, mixing, options).
    pub run: ToyRun,
}

/// The heterogeneity-independence study on random quadratics (ALGORITHMS.md §8.1, RelaySGD
/// App. B.4): steps to reach f(x̄) − f(x*) ≤ target for each method and ζ², each with the
/// fastest learning rate of a grid.
#[derive(Clone, Debug)]
pub struct HeterogeneityStudy {
    /// The problem (its `zeta2` is replaced by each entry of `zeta2s`).
    pub problem: RandomQuadraticsSpec,
    /// Heterogeneity levels ζ².
    pub zeta2s: Vec<f64>,
    /// Learning-rate grid tried for every method.
    pub lrs: Vec<f64>,
    /// Target suboptimality f(x̄) − f(x*).
    pub target: f64,
    /// Step budget per run.
    pub max_steps: u64,
    /// The methods (table rows).
    pub methods: Vec<StudyMethod>,
}

impl Default for HeterogeneityStudy {
    fn default() -> Self {
        HeterogeneityStudy {
            problem: RandomQuadraticsSpec {
                agents: 32,
                d: 10,
                smoothness: 1.0,
                mu: Some(0.5),
                zeta2: 0.0,
                r0: 10.0,
                seed: 1,
            },
            zeta2s: vec![0.0, 0.1, 10.0],
            lrs: vec![
                0.0125, 0.018, 0.025, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2, 0.28, 0.4, 0.56, 0.8, 1.1,
                1.6, 2.2, 3.2, 4.5,
            ],
            target: 1e-6,
            max_steps: 3000,
            methods: heterogeneity_methods(),
        }
    }
}

/// The default rows: RelaySGD on the chain (from the ring) and on double binary trees, D² and
/// gradient tracking on the ring with constant weight 1/3 − 0.01, D-PSGD on the MH ring; plain
/// SGD local steps, no momentum, no learning-rate correction.
pub fn heterogeneity_methods() -> Vec<StudyMethod> {
    let base = ToyRun::default();
    let m = |label: &str, algo, topology, mixing| StudyMethod {
        label: label.into(),
        run: ToyRun {
            algo,
            topology,
            mixing,
            ..base.clone()
        },
    };
    let w = MixingRule::Constant(0.3233);
    vec![
        m(
            "relaysgd (chain)",
            Algorithm::RelaySgd,
            Topology::Ring,
            MixingRule::MetropolisHastings,
        ),
        m(
            "relaysgd (double binary trees)",
            Algorithm::RelaySgd,
            Topology::DoubleBinaryTrees,
            MixingRule::MetropolisHastings,
        ),
        m("d2 (ring, w 0.3233)", Algorithm::D2, Topology::Ring, w),
        m("gt (ring, w 0.3233)", Algorithm::Gt, Topology::Ring, w),
        m(
            "dsgd (ring, MH)",
            Algorithm::Dsgd,
            Topology::Ring,
            MixingRule::MetropolisHastings,
        ),
    ]
}

/// The outcome of one run towards a target suboptimality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetRun {
    /// The first step t with f(x̄_t) − f(x*) ≤ target (None: not within the budget).
    pub steps: Option<u64>,
    /// The error after the last step run (at `steps` if reached).
    pub final_error: f64,
    /// Whether the run was stopped because the error blew up (> 1e6 × the initial one).
    pub diverged: bool,
}

/// Runs until f(x̄) − f(x*) ≤ `target` (checked after every step) has held from step k through
/// step max(2k, k + 50) (capped at `max_steps`), divergence, or `max_steps`; the reported step
/// is k, the first step of the final stretch below the target.
pub fn run_to_target(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
    target: f64,
    max_steps: u64,
) -> Result<TargetRun> {
    let (mut algo, mut obj) = build(be, p, run)?;
    let error = |be: &mut dyn Backend, algo: &dyn Algo| -> Result<f64> {
        let x = be.read_f32(algo.params())?;
        p.error(&x)
            .ok_or_else(|| Error::param("task", "run_to_target needs a quadratic task"))
    };
    let e0 = error(be, algo.as_ref())?;
    let mut e = e0;
    let mut reached = None;
    for t in 0..max_steps {
        algo.record_step(be, obj.as_mut(), t, run.lr)?;
        be.flush()?;
        e = error(be, algo.as_ref())?;
        if e <= target && reached.is_none() {
            reached = Some(t + 1);
        } else if e > target && reached.is_some() {
            // Left the target again: a transient dip of an unstable run, not convergence.
            reached = None;
        }
        if let Some(k) = reached {
            if t + 1 >= (2 * k).max(k + 50).min(max_steps) {
                return Ok(TargetRun {
                    steps: Some(k),
                    final_error: e,
                    diverged: false,
                });
            }
        }
        if !e.is_finite() || e > 1e6 * e0.max(1e-300) {
            return Ok(TargetRun {
                steps: None,
                final_error: e,
                diverged: true,
            });
        }
    }
    Ok(TargetRun {
        steps: reached,
        final_error: e,
        diverged: false,
    })
}

/// One cell of the heterogeneity table: the best learning rate of the grid for one method and ζ².
#[derive(Clone, Debug, PartialEq)]
pub struct HeterogeneityCell {
    /// Row label.
    pub method: String,
    /// Heterogeneity ζ² requested.
    pub zeta2: f64,
    /// The chosen learning rate: the fastest to reach the target, else the lowest final error.
    pub lr: f64,
    /// Its outcome.
    pub result: TargetRun,
}

/// Runs the study: for each ζ² builds the problem, then for each method tries every learning
/// rate and keeps the fastest to reach the target (ties: the smaller η), else the one with the
/// lowest final error.
pub fn heterogeneity_table(
    be: &mut dyn Backend,
    s: &HeterogeneityStudy,
) -> Result<Vec<HeterogeneityCell>> {
    let mut out = Vec::new();
    for &zeta2 in &s.zeta2s {
        let q = RandomQuadratics::new(&RandomQuadraticsSpec {
            zeta2,
            ..s.problem.clone()
        })?;
        let p = ToyProblem::random_quadratics(&q)?;
        for m in &s.methods {
            let mut best: Option<(f64, TargetRun)> = None;
            for &lr in &s.lrs {
                let run = ToyRun {
                    lr,
                    ..m.run.clone()
                };
                let r = run_to_target(be, &p, &run, s.target, s.max_steps)?;
                let better = match &best {
                    None => true,
                    Some((_, b)) => match (r.steps, b.steps) {
                        (Some(k), Some(kb)) => k < kb,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => {
                            !r.diverged && (b.diverged || r.final_error < b.final_error)
                        }
                    },
                };
                if better {
                    best = Some((lr, r));
                }
            }
            let (lr, result) = best.ok_or_else(|| Error::param("lrs", "empty grid"))?;
            out.push(HeterogeneityCell {
                method: m.label.clone(),
                zeta2,
                lr,
                result,
            });
        }
    }
    Ok(out)
}

/// The study's cells as a markdown table: one row per method, one column per ζ²; a cell reads
/// "steps (η)" or "not reached: final error (η)".
pub fn heterogeneity_markdown(s: &HeterogeneityStudy, cells: &[HeterogeneityCell]) -> String {
    let mut t = String::from("| method |");
    for z in &s.zeta2s {
        t += &format!(" ζ² = {z} |");
    }
    t += "\n|---|";
    t += &"---|".repeat(s.zeta2s.len());
    t.push('\n');
    for m in &s.methods {
        t += &format!("| {} |", m.label);
        for z in &s.zeta2s {
            let c = cells.iter().find(|c| c.method == m.label && c.zeta2 == *z);
            let cell = match c {
                None => "—".to_string(),
                Some(c) => match c.result.steps {
                    Some(k) => format!("{k} (η {})", c.lr),
                    None if c.result.diverged => "diverged for every η".to_string(),
                    None => format!(
                        "not reached in {}: error {:.2e} (η {})",
                        s.max_steps, c.result.final_error, c.lr
                    ),
                },
            };
            t += &format!(" {cell} |");
        }
        t.push('\n');
    }
    t
}
