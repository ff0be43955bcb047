//! RelaySGD, RelaySum/Model (ALGORITHMS.md §5.5), over the relay exchange of
//! [`crate::comm::RelayExchange`] on the spanning tree(s) of [`crate::graph::relay_trees`]:
//!
//! 1. x½_i = LocalStep(x_i) (η times the learning-rate correction);
//! 2. send x½; relay messages m_{i→j} = x½_i + Σ_{k≠j} r_{k→i};
//! 3. x_i ← (x½_i + Σ_j r_{j→i} + (n − N_i)·x0)/n (`world`), or the same sum over N_i (`counts`);
//!    with `update_ref_state`, x0_i ← x_i before every step.
//!
//! [`Relay`] is the state both RelaySum variants share; each variant only says what one round
//! does.

use super::{mean_slab, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper};
use super::{RelayNormalisation, Step, TopologyNeed};
use crate::backend::{Backend, Buf};
use crate::comm::RelayExchange;
use crate::dist::Placement;
use crate::error::Result;
use crate::graph::{relay_trees, RelayAverage, RelayTree, SpanningTree};
use std::ops::Range;

/// RelaySGD.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["relaysgd", "relay-sgd", "relaysum"],
    doc: "RelaySGD (RelaySum/Model) on the spanning tree(s) of the topology",
    topology: TopologyNeed::Trees,
    options: &[
        "relay-lr-correction",
        "relay-normalisation",
        "relay-update-ref-state",
        "drop-prob",
    ],
    build,
};

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let o = s.options;
    let update_ref = o.relay_update_ref_state;
    let average = match o.relay_normalisation {
        RelayNormalisation::World => RelayAverage::World,
        RelayNormalisation::Counts => RelayAverage::Counts,
    };
    let x0_slabs = if update_ref { s.agents } else { 1 };
    // 4·d bytes and one integer count per tree neighbour.
    let (trees, mut relay) = exchange(be, &buf, s, average, x0_slabs, 4)?;
    if !update_ref {
        // x0: the mean of the initial slabs (with identical initialisation, the common one).
        relay.write_reference(be, &mean_slab(s.init, s.agents, s.stride))?;
    }
    let variant = Model {
        update_ref,
        lr_factor: o.relay_lr_correction.factor(&trees),
    };
    Ok(Box::new(Relay::new(buf, relay, s.hyper, variant)))
}

/// The setup's trees (`relay_trees`, root 0) and a relay exchange over them.
pub(super) fn exchange(
    be: &mut dyn Backend,
    buf: &AgentBuffers,
    s: &AlgoSetup,
    average: RelayAverage,
    x0_slabs: usize,
    count_bytes: u64,
) -> Result<(Vec<SpanningTree>, RelayExchange)> {
    let trees = relay_trees(s.topology, s.agents, s.seed, 0)?;
    let (o, (stride, d)) = (s.options, (buf.stride, buf.d));
    let relay = RelayExchange::new(
        be, &trees, stride, d, average, x0_slabs, count_bytes, o.drop_prob, s.seed,
    )?
    .with_shard(be, buf.shard.as_ref())?;
    Ok((trees, relay))
}

/// What one RelaySum variant does in a round.
pub trait RelayVariant {
    /// Records one round; `lr` None skips the local step (a pure communication round).
    fn round(r: &mut Relay<Self>, be: &mut dyn Backend, lr: Option<f64>) -> Result<()>
    where
        Self: Sized;
    /// Lines the user should see about the setup.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The state of a RelaySum variant: the common buffers, the relay exchange, the local
/// hyperparameters and the variant's own settings.
pub struct Relay<V> {
    pub(super) buf: AgentBuffers,
    pub(super) relay: RelayExchange,
    pub(super) hyper: LocalHyper,
    pub(super) variant: V,
}

/// RelaySGD (RelaySum/Model).
pub type RelaySgd = Relay<Model>;

/// RelaySum/Model's settings.
pub struct Model {
    update_ref: bool,
    lr_factor: f64,
}

impl<V> Relay<V> {
    /// Wraps the parts.
    pub(super) fn new(
        buf: AgentBuffers,
        relay: RelayExchange,
        hyper: LocalHyper,
        variant: V,
    ) -> Self {
        Relay {
            buf,
            relay,
            hyper,
            variant,
        }
    }

    /// The host bookkeeping of each tree (one, or two for double binary trees).
    pub fn trees(&self) -> impl Iterator<Item = &RelayTree> {
        self.relay.trees()
    }
}

impl RelaySgd {
    /// The learning-rate factor applied to η.
    pub fn lr_factor(&self) -> f64 {
        self.variant.lr_factor
    }
}

impl RelayVariant for Model {
    fn round(r: &mut Relay<Self>, be: &mut dyn Backend, lr: Option<f64>) -> Result<()> {
        let x = r.buf.params;
        r.buf.ledger.clear();
        if r.variant.update_ref {
            r.relay.send_reference(be, x)?;
        }
        if let Some(lr) = lr {
            r.buf.record_local_step(be, lr * r.variant.lr_factor, r.hyper)?;
        }
        r.relay.send(be, x)?;
        r.relay.record(be, &mut r.buf.ledger, x)
    }

    fn notes(&self) -> Vec<String> {
        if self.lr_factor == 1.0 {
            return Vec::new();
        }
        vec![format!(
            "RelaySGD learning-rate correction: η × {:.6}",
            self.lr_factor
        )]
    }
}

impl<V: RelayVariant> Algo for Relay<V> {
    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }

    fn notes(&self) -> Vec<String> {
        self.variant.notes()
    }

    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        s.gradients(be, &self.buf)?;
        V::round(self, be, Some(s.lr))
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[("relay.stack", self.relay.stack())])
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        V::round(self, be, None)
    }

    fn host_state(&self) -> Result<serde_json::Value> {
        self.relay.host_state()
    }

    /// The relay stack: every rank holds it whole and computes its own elements.
    fn owned_elements(&self, name: &str, p: &Placement, rank: usize) -> Option<Vec<Range<usize>>> {
        (name == "relay.stack").then(|| self.relay.owned(p, rank))
    }

    fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        self.relay.restore_host_state(v)
    }
}
