//! RelaySGD, RelaySum/Model (ALGORITHMS.md §5.5), over the relay exchange of
//! [`crate::comm::RelayExchange`] on the spanning tree(s) of [`crate::graph::relay_trees`]:
//!
//! 1. x½_i = LocalStep(x_i) (η times the learning-rate correction);
//! 2. send x½; relay messages m_{i→j} = x½_i + Σ_{k≠j} r_{k→i};
//! 3. x_i ← (x½_i + Σ_j r_{j→i} + (n − N_i)·x0)/n (`world`), or the same sum over N_i (`counts`);
//!    with `update_ref_state`, x0_i ← x_i before every step.

use super::{mean_slab, AgentBuffers, Algo, AlgoSetup, AlgoSpec, Algorithm, LocalHyper};
use super::{Objective, RelayNormalisation, TopologyNeed};
use crate::backend::{Backend, Buf};
use crate::comm::RelayExchange;
use crate::error::Result;
use crate::graph::{relay_trees, RelayAverage, RelayTree};

/// RelaySGD.
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "relaysgd",
    aliases: &["relay-sgd", "relaysum"],
    doc: "RelaySGD (RelaySum/Model) on the spanning tree(s) of the topology",
    topology: TopologyNeed::Trees,
    simulates_drops: true,
    options: &[
        "relay-lr-correction",
        "relay-normalisation",
        "relay-update-ref-state",
        "drop-prob",
    ],
    build,
};

impl Algorithm {
    /// RelaySGD, RelaySum/Model on spanning tree(s) (§5.5).
    #[allow(non_upper_case_globals)]
    pub const RelaySgd: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(RelaySgd::new(be, buf, s)?))
}

/// RelaySGD state.
pub struct RelaySgd {
    buf: AgentBuffers,
    relay: RelayExchange,
    hyper: LocalHyper,
    update_ref: bool,
    lr_factor: f64,
}

impl RelaySgd {
    /// Builds the state: trees from the setup's topology (root 0), the relay exchange with
    /// its reference model x0 (the mean of the initial slabs: with identical initialisation,
    /// the common initial model) and the learning-rate correction.
    pub fn new(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Self> {
        let o = s.options;
        let trees = relay_trees(s.topology, s.agents, s.seed, 0)?;
        let update_ref = o.relay_update_ref_state;
        let average = match o.relay_normalisation {
            RelayNormalisation::World => RelayAverage::World,
            RelayNormalisation::Counts => RelayAverage::Counts,
        };
        let x0_slabs = if update_ref { s.agents } else { 1 };
        // 4·d bytes and one integer count per tree neighbour.
        let mut relay = RelayExchange::new(
            be, &trees, buf.stride, buf.d, average, x0_slabs, 4, o.drop_prob, s.seed,
        )?;
        if !update_ref {
            relay.write_reference(be, &mean_slab(s.init, s.agents, s.stride))?;
        }
        Ok(RelaySgd {
            lr_factor: o.relay_lr_correction.factor(&trees),
            buf,
            relay,
            hyper: s.hyper,
            update_ref,
        })
    }

    /// The learning-rate factor applied to η.
    pub fn lr_factor(&self) -> f64 {
        self.lr_factor
    }

    /// The host bookkeeping of each tree (one, or two for double binary trees).
    pub fn trees(&self) -> impl Iterator<Item = &RelayTree> {
        self.relay.trees()
    }

    /// Records one round; `lr` None skips the local step (a pure communication round).
    fn round(&mut self, be: &mut dyn Backend, lr: Option<f64>) -> Result<()> {
        let x = self.buf.params;
        self.buf.ledger.clear();
        if self.update_ref {
            self.relay.send_reference(be, x)?;
        }
        if let Some(lr) = lr {
            self.buf.record_local_step(be, lr * self.lr_factor, self.hyper)?;
        }
        self.relay.send(be, x)?;
        self.relay.record(be, &mut self.buf.ledger, x)
    }
}

impl Algo for RelaySgd {
    fn notes(&self) -> Vec<String> {
        if self.lr_factor == 1.0 {
            return Vec::new();
        }
        vec![format!(
            "RelaySGD learning-rate correction: η × {:.6}",
            self.lr_factor
        )]
    }

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
