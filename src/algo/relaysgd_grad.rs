//! RelaySGD/Grad, RelaySum/Grad (ALGORITHMS.md §5.6), over the relay exchange of
//! [`crate::comm::RelayExchange`] (the state is [`Relay`], shared with RelaySGD):
//!
//! 1. u_i = LocalStep(x_i) − x_i (b updated, x not);
//! 2. send u; relay messages m_{i→j} = u_i + Σ_{k≠j} r_{k→i};
//! 3. x_i ← x_i + (u_i + Σ_j r_{j→i})/n (missing agents contribute 0; models are never mixed).

use super::relaysgd::{exchange, Relay, RelayVariant};
use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, TopologyNeed, VectorOps};
use crate::backend::Backend;
use crate::error::Result;
use crate::graph::RelayAverage;

/// RelaySGD/Grad.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["relaysgd-grad", "relay-sgd-grad", "relaysum-grad"],
    doc: "RelaySGD/Grad (RelaySum/Grad) on the spanning tree(s) of the topology",
    topology: TopologyNeed::Trees,
    options: &["drop-prob"],
    build,
};

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    // 4·d bytes per tree neighbour, no counts, no x0.
    let (_, relay) = exchange(be, &buf, s, RelayAverage::Sum, 0, 0)?;
    Ok(Box::new(Relay::new(buf, relay, s.hyper, Grad)))
}

/// RelaySum/Grad (no settings of its own).
pub struct Grad;

/// RelaySGD/Grad (RelaySum/Grad).
pub type RelaySgdGrad = Relay<Grad>;

impl RelayVariant for Grad {
    /// u = 0 without a local step.
    fn round(r: &mut Relay<Self>, be: &mut dyn Backend, lr: Option<f64>) -> Result<()> {
        let (x, u) = (r.buf.params, r.buf.spare);
        r.buf.ledger.clear();
        match lr {
            Some(lr) => {
                be.assign(u, x)?;
                r.buf.record_local_step_on(be, u, lr, r.hyper)?;
                be.sub_assign(u, x)?;
            }
            None => be.fill_all(u, 0.0)?,
        }
        r.relay.send(be, u)?;
        // Δ_i = (u_i + Σ_j r_{j→i})/n, over u (now held in the stack).
        r.relay.record(be, &mut r.buf.ledger, u)?;
        be.add_assign(x, u)
    }
}
