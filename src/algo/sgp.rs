//! SGP on the time-varying one-peer exponential graph (ALGORITHMS.md §5.12): x = LocalStep(x),
//! then two rounds r ∈ {0, 1}, each x_i ← ½x_i + ½x_{(i−h) mod n} with h = 2^exponent(t, r)
//! (hop schedule `code` or `cyclic`). Every mixing is doubly stochastic, so no push-sum weights.
//! Each round has its own resident matrix, rewritten with `write_csr` before the step's work
//! (ordered after the previous step's mixes). A dropped message leaves the receiver unchanged.

use super::{AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Backend, Buf, CsrBufs};
use crate::error::{Error, Result};
use crate::graph::{HopSchedule, OnePeerExponential, EXPONENTIAL_ROUNDS};
use crate::sparse::Csr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seed salt of SGP's message-drop stream.
const DROP_STREAM: u64 = 0x5347_505f_4452_4f50;

/// SGP state: x, local momentum b, one resident matrix per round.
pub struct Sgp {
    buf: AgentBuffers,
    graph: OnePeerExponential,
    rounds: Vec<CsrBufs>,
    hyper: LocalHyper,
    drop_prob: f64,
    seed: u64,
    bytes: Vec<u64>,
}

impl Sgp {
    /// Prepares the schedule for `buf.agents` = 2^D agents (D ≥ 1).
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        hyper: LocalHyper,
        schedule: HopSchedule,
        drop_prob: f64,
        seed: u64,
    ) -> Result<Self> {
        let graph = OnePeerExponential::new(buf.agents, schedule).map_err(|e| {
            Error::param(
                "agents",
                format!("SGP runs on the one-peer exponential graph: {e}"),
            )
        })?;
        if !(0.0..1.0).contains(&drop_prob) {
            return Err(Error::param(
                "drop-prob",
                format!("{drop_prob} is outside [0, 1)"),
            ));
        }
        let mut rounds = Vec::with_capacity(EXPONENTIAL_ROUNDS);
        for r in 0..EXPONENTIAL_ROUNDS {
            rounds.push(be.upload_csr(&graph.mixing(0, r), &format!("sgp.W{r}"))?);
        }
        // One message of 4d bytes per round to one peer (sent even when it is then dropped).
        let bytes = vec![(EXPONENTIAL_ROUNDS * 4 * buf.d) as u64; buf.agents];
        Ok(Sgp {
            buf,
            graph,
            rounds,
            hyper,
            drop_prob,
            seed,
            bytes,
        })
    }

    /// The mixing matrix of iteration t, round r, with this run's message drops applied.
    pub fn round_matrix(&self, t: u64, r: usize) -> Csr {
        let w = self.graph.mixing(t, r);
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
    fn params(&self) -> Buf {
        self.buf.params
    }

    fn record_step(
        &mut self,
        be: &mut dyn Backend,
        obj: &mut dyn Objective,
        t: u64,
        lr: f64,
    ) -> Result<()> {
        // The writes are ordered after the previous step's mixes, before this step's.
        for r in 0..EXPONENTIAL_ROUNDS {
            let w = self.round_matrix(t, r);
            be.write_csr(&self.rounds[r], &w)?;
        }
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        for r in 0..EXPONENTIAL_ROUNDS {
            let w = self.rounds[r];
            self.buf.record_mix(be, &w)?;
        }
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![("params", self.buf.params), ("momentum", self.buf.momentum)]
    }

    /// One round with round 0's most recently written matrix.
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        let w = self.rounds[0];
        self.buf.record_mix(be, &w)
    }
}
