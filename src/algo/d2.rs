//! D² (ALGORITHMS.md §5.10), the epfml/relaysgd form B: prev = x; x' = LocalStep(x),
//! u = x' − prev; x ← W(x' + c); c ← x − prev − u. Since u = x' − prev, the correction is
//! recorded as c ← x − x' (the same value without two extra buffers and with less rounding).
//! Requires λ_min(W) > −1/3.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper};
use super::{Step, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::{Error, Result};
use crate::graph::lambda_min;
use crate::sparse::Csr;

/// D².
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["d2", "d-2"],
    doc: "D², form B; needs λ_min(W) > −1/3 (rings: --gossip-weight 0.3233)",
    topology: TopologyNeed::Static,
    options: &[],
    build,
};

/// D² needs λ_min(W) above this bound (with a small margin for rounding).
pub const D2_LAMBDA_MIN_BOUND: f64 = -1.0 / 3.0;

/// Checks λ_min(W) > −1/3 (+1e-9), with a hint on how to fix a ring's weights.
pub fn check_d2_spectrum(w: &Csr) -> Result<f64> {
    let lmin = lambda_min(w).map_err(|e| Error::param("mixing", e.to_string()))?;
    if lmin <= D2_LAMBDA_MIN_BOUND + 1e-9 {
        return Err(Error::param(
            "mixing",
            format!(
                "D² requires λ_min(W) > −1/3 but this W has λ_min = {lmin:.6} (e.g. the \
                 Metropolis–Hastings ring with an even number of agents); use \
                 --gossip-weight 0.3233 (constant weight 1/3 − 0.01)"
            ),
        ));
    }
    Ok(lmin)
}

/// D² state: x, the correction c, local momentum b.
pub struct D2 {
    buf: AgentBuffers,
    /// The correction c (its buffer rotates with params and spare every step).
    corr: Buf,
    w: Gossip,
    hyper: LocalHyper,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let w = gossip_matrix(s)?;
    check_d2_spectrum(&w)?;
    Ok(Box::new(D2 {
        corr: buf.alloc_like(be, "d2.c")?,
        w: buf.gossip_channel(be, &w)?,
        buf,
        hyper: s.hyper,
    }))
}

impl Algo for D2 {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let b = &mut self.buf;
        let (x, c, next) = (b.params, self.corr, b.spare);
        b.ledger.clear();
        s.gradients(be, b)?;
        b.record_local_step(be, s.lr, self.hyper)?; // x' = LocalStep(x), in place
        be.add_assign(c, x)?; // the message x' + c, over c
        self.w.record(be, &mut b.ledger, c, next)?; // x_new = W(x' + c)
        be.rsub_assign(x, next)?; // c_new = x_new − x' (= x_new − prev − u), over x'
        // Rotate: params ← x_new, c ← c_new, spare ← the old message buffer.
        (b.params, self.corr, b.spare) = (next, x, c);
        Ok(())
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[("d2.c", self.corr)])
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
