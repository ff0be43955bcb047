//! RelaySGD/Grad, RelaySum/Grad (ALGORITHMS.md §5.6), over the relay exchange of
//! [`crate::comm::RelayExchange`]:
//!
//! 1. u_i = LocalStep(x_i) − x_i (b updated, x not);
//! 2. send u; relay messages m_{i→j} = u_i + Σ_{k≠j} r_{k→i};
//! 3. x_i ← x_i + (u_i + Σ_j r_{j→i})/n (missing agents contribute 0; models are never mixed).

use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, Algorithm, LocalHyper, Objective};
use super::{TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf};
use crate::comm::RelayExchange;
use crate::error::Result;
use crate::graph::{relay_trees, RelayAverage, RelayTree};

/// RelaySGD/Grad.
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "relaysgd-grad",
    aliases: &["relay-sgd-grad", "relaysum-grad"],
    doc: "RelaySGD/Grad (RelaySum/Grad) on the spanning tree(s) of the topology",
    topology: TopologyNeed::Trees,
    simulates_drops: true,
    options: &["drop-prob"],
    build,
};

impl Algorithm {
    /// RelaySGD/Grad, RelaySum/Grad on spanning tree(s) (§5.6).
    #[allow(non_upper_case_globals)]
    pub const RelaySgdGrad: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(RelaySgdGrad::new(be, buf, s)?))
}

/// RelaySGD/Grad state.
pub struct RelaySgdGrad {
    buf: AgentBuffers,
    relay: RelayExchange,
    hyper: LocalHyper,
}

impl RelaySgdGrad {
    /// Builds the state: trees from the setup's topology (root 0) and the relay exchange.
    pub fn new(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Self> {
        let o = s.options;
        let trees = relay_trees(s.topology, s.agents, s.seed, 0)?;
        // 4·d bytes per tree neighbour, no counts, no x0.
        let relay = RelayExchange::new(
            be, &trees, buf.stride, buf.d, RelayAverage::Sum, 0, 0, o.drop_prob, s.seed,
        )?;
        Ok(RelaySgdGrad {
            buf,
            relay,
            hyper: s.hyper,
        })
    }

    /// The host bookkeeping of each tree (one, or two for double binary trees).
    pub fn trees(&self) -> impl Iterator<Item = &RelayTree> {
        self.relay.trees()
    }

    /// Records one round; `lr` None skips the local step (u = 0: a pure communication round).
    fn round(&mut self, be: &mut dyn Backend, lr: Option<f64>) -> Result<()> {
        let (x, u) = (self.buf.params, self.buf.spare);
        self.buf.ledger.clear();
        match lr {
            Some(lr) => {
                be.assign(u, x)?;
                self.buf.record_local_step_on(be, u, lr, self.hyper)?;
                be.sub_assign(u, x)?;
            }
            None => be.fill_all(u, 0.0)?,
        }
        self.relay.send(be, u)?;
        // Δ_i = (u_i + Σ_j r_{j→i})/n, over u (now held in the stack).
        self.relay.record(be, &mut self.buf.ledger, u)?;
        be.add_assign(x, u)
    }
}

impl Algo for RelaySgdGrad {
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
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        self.round(be, Some(lr))
    }

    fn bytes_sent(&self) -> &[u64] {
        self.buf.ledger.sent()
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("relay.stack", self.relay.stack()),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.round(be, None)
    }

    fn host_state(&self) -> Result<serde_json::Value> {
        self.relay.host_state()
    }

    fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        self.relay.restore_host_state(v)
    }
}
