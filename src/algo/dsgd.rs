//! D-PSGD and DSGDm-N with local momentum (ALGORITHMS.md §5.1, §5.2), in either order:
//!
//! - adapt-then-combine (default): `x½ = LocalStep(x, ∇F_i(x) + λx)`, then `x ← W x½`;
//! - combine-then-adapt (the NGM repository's baselines, §5.1 trap): `x½ = W x`, then
//!   `x ← LocalStep(x½, ∇F_i(x½) + λx½)`.
//!
//! W is a static gossip matrix, or the time-varying one-peer exponential graph with one round per
//! step and hop 2^(t mod log₂ n), so every hop is used and log₂ n steps average exactly (the
//! matrix is rewritten with `write_csr` before each step's work, as SGP does).

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, DsgdOrder};
use super::{LocalHyper, Step, TopologyNeed};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::{Error, Result};
use crate::graph::{HopSchedule, OnePeerExponential, Topology};
use crate::sparse::Csr;

/// D-PSGD / DSGDm-N.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["dsgd", "d-psgd", "dpsgd", "dsgdm", "dsgdm-n"],
    doc: "D-PSGD (with --momentum > 0: DSGDm-N), on a static graph or the one-peer exponential graph",
    topology: TopologyNeed::StaticOrExponential,
    options: &["dsgd-order", "hop-schedule"],
    build,
};

/// D-PSGD / DSGDm-N state.
pub struct Dsgd {
    buf: AgentBuffers,
    w: Gossip,
    /// The time-varying graph whose matrix is written every step (None: static W).
    exponential: Option<OnePeerExponential>,
    hyper: LocalHyper,
    order: DsgdOrder,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    // On the exponential graph, step t is round (⌊t/2⌋, t mod 2) of the graph's hop schedule
    // (under `cyclic`, the default here, hop 2^(t mod log₂ n): every hop is used and log₂ n
    // steps average exactly); the matrix is rewritten before each step's work.
    let exponential = if *s.topology == Topology::Exponential {
        let schedule = s.options.hop_schedule.unwrap_or(HopSchedule::Cyclic);
        let g = OnePeerExponential::new(s.agents, schedule)
            .map_err(|e| Error::param("topology", e.to_string()))?;
        Some(g)
    } else {
        None
    };
    let w = match &exponential {
        Some(g) => exponential_round(g, 0),
        None => gossip_matrix(s)?,
    };
    Ok(Box::new(Dsgd {
        w: buf.gossip_channel(be, &w)?,
        exponential,
        buf,
        hyper: s.hyper,
        order: s.options.dsgd_order,
    }))
}

/// The mixing matrix of step t: round (⌊t/2⌋, t mod 2) of the two-round schedule, so the steps
/// walk the schedule's rounds in order (under `cyclic`: hop 2^(t mod log₂ n)).
fn exponential_round(g: &OnePeerExponential, t: u64) -> Csr {
    g.mixing(t / 2, (t % 2) as usize)
}

impl Algo for Dsgd {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (t, lr) = (s.t, s.lr);
        self.buf.ledger.clear();
        // Ordered after the previous step's mix, before this step's.
        if let Some(g) = &self.exponential {
            self.w.write(be, &exponential_round(g, t))?;
        }
        let b = &mut self.buf;
        match self.order {
            DsgdOrder::Atc => {
                s.gradients(be, b)?;
                b.record_local_step(be, lr, self.hyper)?;
                b.gossip(be, &self.w)
            }
            DsgdOrder::Cta => {
                b.gossip(be, &self.w)?;
                s.gradients(be, b)?;
                b.record_local_step(be, lr, self.hyper)
            }
        }
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[])
    }

    /// One round with the most recently written matrix (the static W, or the last step's).
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::{AlgoOptions, AlgoSetup, Algorithm, Quadratics};
    use crate::backend::reference::ReferenceBackend;
    use crate::graph::{HopSchedule, MixingRule, Topology};

    const D: usize = 3;

    fn targets(n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| (0..D).map(|k| i as f64 + 0.25 * k as f64 - 1.0).collect())
            .collect()
    }

    /// Heterogeneous initial models (so mixing moves them).
    fn init(n: usize) -> Vec<f32> {
        (0..n * D).map(|k| (k % 7) as f32 * 0.5 - 1.0).collect()
    }

    /// Hyperparameters exact in f32 so the CPU reference matches an f64 host simulation.
    fn hyper() -> LocalHyper {
        LocalHyper {
            momentum: 0.875,
            nesterov: true,
            weight_decay: 0.0078125,
        }
    }

    /// Runs `steps` steps of D-PSGD on the constants task and returns the parameters.
    fn run(topology: Topology, order: DsgdOrder, n: usize, steps: u64, lr: f64) -> Vec<f64> {
        // No schedule given: dsgd's default on the exponential graph is cyclic.
        run_with(topology, order, None, n, steps, lr)
    }

    fn run_with(
        topology: Topology,
        order: DsgdOrder,
        hop_schedule: Option<HopSchedule>,
        n: usize,
        steps: u64,
        lr: f64,
    ) -> Vec<f64> {
        let mut be = ReferenceBackend::new();
        let options = AlgoOptions {
            dsgd_order: order,
            hop_schedule,
            ..Default::default()
        };
        let x0 = init(n);
        let mut obj = Quadratics::constants(&mut be, &targets(n)).unwrap();
        let mut algo = Algorithm::Dsgd
            .build(
                &mut be,
                &AlgoSetup {
                    agents: n,
                    stride: D,
                    d: D,
                    init: &x0,
                    topology: &topology,
                    mixing: &MixingRule::MetropolisHastings,
                    hyper: hyper(),
                    seed: 7,
                    options: &options,
                    tensors: &[],
                },
            )
            .unwrap();
        for t in 0..steps {
            algo.record_step(&mut be, &mut obj, t, lr).unwrap();
            be.flush().unwrap();
        }
        assert!(algo.bytes_sent().iter().all(|&b| b > 0));
        be.read_f32(algo.params()).unwrap()
    }

    /// f64 host simulation; `w(t)` is iteration t's dense mixing matrix.
    fn simulate(
        w: impl Fn(u64) -> Vec<Vec<f64>>,
        order: DsgdOrder,
        n: usize,
        steps: u64,
        lr: f64,
    ) -> Vec<f64> {
        let h = hyper();
        let (beta, wd) = (h.momentum, h.weight_decay);
        let tg = targets(n);
        let mut x: Vec<f64> = init(n).iter().map(|&v| v as f64).collect();
        let mut m = vec![0.0; n * D];
        let mix = |x: &[f64], w: &[Vec<f64>]| -> Vec<f64> {
            (0..n * D)
                .map(|p| (0..n).map(|j| w[p / D][j] * x[j * D + p % D]).sum())
                .collect()
        };
        let adapt = |x: &mut [f64], m: &mut [f64]| {
            for p in 0..n * D {
                let g = x[p] - tg[p / D][p % D] + wd * x[p];
                m[p] = beta * m[p] + g;
                x[p] -= lr * (g + beta * m[p]);
            }
        };
        for t in 0..steps {
            let wt = w(t);
            match order {
                DsgdOrder::Atc => {
                    adapt(&mut x, &mut m);
                    x = mix(&x, &wt);
                }
                DsgdOrder::Cta => {
                    x = mix(&x, &wt);
                    adapt(&mut x, &mut m);
                }
            }
        }
        x
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn means(x: &[f64], n: usize) -> Vec<f64> {
        (0..D)
            .map(|k| (0..n).map(|i| x[i * D + k]).sum::<f64>() / n as f64)
            .collect()
    }

    #[test]
    fn cta_matches_the_host_simulation_and_differs_from_atc() {
        let n = 6;
        let g = Topology::Ring.static_graph(n, 7).unwrap();
        let w = MixingRule::MetropolisHastings
            .matrix(&g)
            .unwrap()
            .to_dense();
        for order in [DsgdOrder::Atc, DsgdOrder::Cta] {
            let got = run(Topology::Ring, order, n, 12, 0.125);
            let want = simulate(|_| w.clone(), order, n, 12, 0.125);
            let err = max_diff(&got, &want);
            eprintln!("{order:?}: CPU vs host simulation max |Δ| = {err:e}");
            assert!(err < 1e-12, "{order:?}: CPU vs host simulation {err:e}");
        }
        let atc = run(Topology::Ring, DsgdOrder::Atc, n, 12, 0.125);
        let cta = run(Topology::Ring, DsgdOrder::Cta, n, 12, 0.125);
        let gap = max_diff(&atc, &cta);
        eprintln!("ATC vs CTA after 12 steps: max |Δ| = {gap:e}");
        assert!(gap > 1e-2, "ATC and CTA should differ, max gap {gap:e}");
    }

    #[test]
    fn both_orders_preserve_the_mean_with_zero_lr() {
        let n = 6;
        let x0: Vec<f64> = init(n).iter().map(|&v| v as f64).collect();
        for order in [DsgdOrder::Atc, DsgdOrder::Cta] {
            for topo in [Topology::Ring, Topology::Exponential] {
                let n = if topo == Topology::Exponential { 8 } else { n };
                let x0: Vec<f64> = if n == 6 {
                    x0.clone()
                } else {
                    init(n).iter().map(|&v| v as f64).collect()
                };
                let x = run(topo, order, n, 5, 0.0);
                let err = max_diff(&means(&x, n), &means(&x0, n));
                eprintln!("{order:?} {topo}: lr 0, mean drift {err:e}");
                assert!(err < 1e-12, "{order:?} {topo}: mean moved by {err:e}");
                assert!(max_diff(&x, &x0) > 1e-3, "{order:?} {topo}: no mixing");
            }
        }
    }

    #[test]
    fn exponential_gossip_cycles_through_every_hop() {
        let n = 8;
        let g = OnePeerExponential::new(n, HopSchedule::Cyclic).unwrap();
        for order in [DsgdOrder::Atc, DsgdOrder::Cta] {
            let got = run(Topology::Exponential, order, n, 9, 0.125);
            let want = simulate(|t| exponential_round(&g, t).to_dense(), order, n, 9, 0.125);
            let err = max_diff(&got, &want);
            eprintln!("{order:?}: CPU vs host simulation max |Δ| = {err:e}");
            assert!(err < 1e-12, "{order:?}: CPU vs host simulation {err:e}");
        }
        // Hops 2^(t mod 3) = 1, 2, 4: three pure gossip steps average exactly.
        let x = run(Topology::Exponential, DsgdOrder::Atc, n, 3, 0.0);
        let x0: Vec<f64> = init(n).iter().map(|&v| v as f64).collect();
        let mean = means(&x0, n);
        let spread = (0..n * D)
            .map(|p| (x[p] - mean[p % D]).abs())
            .fold(0.0, f64::max);
        eprintln!("exponential, 3 gossip steps: max distance to the mean {spread:e}");
        assert!(
            spread < 1e-12,
            "exact average after log2 n steps: {spread:e}"
        );
    }

    #[test]
    fn exponential_gossip_honours_the_hop_schedule() {
        // Under `code` the steps walk SGP's code-schedule rounds: hops 1, 1, 4, 2, … for n = 8.
        let n = 8;
        let code = OnePeerExponential::new(n, HopSchedule::Code).unwrap();
        let hops: Vec<usize> = (0..4).map(|t| code.hop(t / 2, (t % 2) as usize)).collect();
        let cyclic = OnePeerExponential::new(n, HopSchedule::Cyclic).unwrap();
        let cyc: Vec<usize> = (0..4).map(|t| cyclic.hop(t / 2, (t % 2) as usize)).collect();
        assert_ne!(hops, cyc, "the schedules differ over the first steps");
        let got = run_with(Topology::Exponential, DsgdOrder::Atc, Some(HopSchedule::Code), n, 9, 0.125);
        let want = simulate(|t| exponential_round(&code, t).to_dense(), DsgdOrder::Atc, n, 9, 0.125);
        let err = max_diff(&got, &want);
        assert!(err < 1e-12, "code schedule: CPU vs host simulation {err:e}");
        let other = run_with(Topology::Exponential, DsgdOrder::Atc, Some(HopSchedule::Cyclic), n, 9, 0.125);
        assert!(max_diff(&got, &other) > 1e-6, "the schedule changes the run");
    }
}
