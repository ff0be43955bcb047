//! SGP on the time-varying one-peer exponential graph (ALGORITHMS.md §5.12): x = LocalStep(x),
//! then two rounds r ∈ {0, 1}, each x_i ← ½x_i + ½x_{(i−h) mod n} with h = 2^exponent(t, r)
//! (hop schedule `code` or `cyclic`). Every mixing is doubly stochastic, so no push-sum weights.
//! Each round has its own resident matrix, rewritten with `write_csr` before the step's work
//! (ordered after the previous step's mixes). A dropped message leaves the receiver unchanged.

use super::{exponential_graph, AgentBuffers, Algo, AlgoSetup, AlgoSpec};
use super::{LocalHyper, Step, TopologyNeed};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::Result;
use crate::graph::{HopSchedule, OnePeerExponential, EXPONENTIAL_ROUNDS};
use crate::sparse::Csr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// SGP.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["sgp", "push-sum"],
    doc: "SGP on the time-varying one-peer exponential graph (n a power of two), 2 rounds per step",
    topology: TopologyNeed::Exponential,
    options: &["hop-schedule", "drop-prob"],
    build,
};

/// Seed salt of SGP's message-drop stream.
const DROP_STREAM: u64 = 0x5347_505f_4452_4f50;

/// SGP state: x, local momentum b, one gossip channel per round.
pub struct Sgp {
    buf: AgentBuffers,
    graph: OnePeerExponential,
    rounds: Vec<Gossip>,
    hyper: LocalHyper,
    drop_prob: f64,
    seed: u64,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let o = s.options;
    let sgp = Sgp::new(be, buf, s.hyper, o.hop_schedule.unwrap_or(HopSchedule::Code), o.drop_prob, s.seed)?;
    Ok(Box::new(sgp))
}

impl Sgp {
    /// Prepares the schedule for `buf.agents` = 2^D agents (D ≥ 1); `drop_prob` in [0, 1)
    /// (checked by [`crate::algo::AlgoOptions::validate`]).
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        hyper: LocalHyper,
        schedule: HopSchedule,
        drop_prob: f64,
        seed: u64,
    ) -> Result<Self> {
        let graph = exponential_graph(SPEC.name(), buf.all_agents(), schedule)?;
        let rounds = (0..EXPONENTIAL_ROUNDS)
            .map(|r| buf.gossip_channel_named(be, &graph.mixing(0, r), &format!("sgp.W{r}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Sgp {
            buf,
            graph,
            rounds,
            hyper,
            drop_prob,
            seed,
        })
    }

    /// The mixing matrix of iteration t, round r, with this run's message drops applied.
    pub fn round_matrix(&self, t: u64, r: usize) -> Csr {
        self.with_drops(self.graph.mixing(t, r), t, r)
    }

    /// `w` with the messages of iteration t, round r that this run drops removed (a dropped
    /// row keeps the receiver's model).
    fn with_drops(&self, w: Csr, t: u64, r: usize) -> Csr {
        if self.drop_prob <= 0.0 {
            return w;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ DROP_STREAM);
        rng.set_stream(t.wrapping_mul(EXPONENTIAL_ROUNDS as u64) + r as u64);
        let rows: Vec<Vec<(usize, f64)>> = (0..w.n_rows())
            .map(|i| {
                if rng.random::<f64>() < self.drop_prob {
                    vec![(i, 1.0)]
                } else {
                    w.row(i).collect()
                }
            })
            .collect();
        Csr::from_rows(w.n_cols, &rows)
    }

    /// The one-peer exponential schedule.
    pub fn graph(&self) -> &OnePeerExponential {
        &self.graph
    }
}

impl Algo for Sgp {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (t, lr) = (s.t, s.lr);
        self.buf.ledger.clear();
        // The writes are ordered after the previous step's mixes, before this step's. A
        // dropped message was still sent: the ledger charges the intended matrix.
        for r in 0..EXPONENTIAL_ROUNDS {
            let intended = self.graph.mixing(t, r);
            let applied = self.with_drops(intended.clone(), t, r);
            self.rounds[r].write_dropped(be, &intended, &applied)?;
        }
        s.gradients(be, &self.buf)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        for w in &self.rounds {
            self.buf.gossip(be, w)?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[])
    }

    /// One round with round 0's most recently written matrix.
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.ledger.clear();
        self.buf.gossip(be, &self.rounds[0])
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
