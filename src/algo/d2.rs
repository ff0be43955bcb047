//! D² (ALGORITHMS.md §5.10), the epfml/relaysgd form B: prev = x; x' = LocalStep(x),
//! u = x' − prev; x ← W(x' + c); c ← x − prev − u. Since u = x' − prev, the correction is
//! recorded as c ← x − x' (the same value without two extra buffers and with less rounding).
//! Requires λ_min(W) > −1/3.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, Algorithm, LocalHyper};
use super::{Objective, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::{Error, Result};
use crate::graph::lambda_min;
use crate::sparse::Csr;

/// D².
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "d2",
    aliases: &["d-2"],
    doc: "D², form B; needs λ_min(W) > −1/3 (rings: --gossip-weight 0.3233)",
    topology: TopologyNeed::Static,
    simulates_drops: false,
    options: &[],
    build,
};

impl Algorithm {
    /// D², form B (§5.10); needs λ_min(W) > −1/3.
    #[allow(non_upper_case_globals)]
    pub const D2: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(D2::new(be, buf, &gossip_matrix(s)?, s.hyper)?))
}

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

impl D2 {
    /// Checks the spectrum and uploads W.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
    ) -> Result<Self> {
        check_d2_spectrum(w)?;
        Ok(D2 {
            corr: buf.alloc_like(be, "d2.c")?,
            w: Gossip::new(be, w, buf.stride, buf.d, "W")?,
            buf,
            hyper,
        })
    }
}

impl Algo for D2 {
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
        let b = &mut self.buf;
        let (x, c, next) = (b.params, self.corr, b.spare);
        b.ledger.clear();
        obj.record_gradients(be, x, b.grads, t)?;
        b.record_local_step(be, lr, self.hyper)?; // x' = LocalStep(x), in place
        be.add_assign(c, x)?; // the message x' + c, over c
        self.w.record(be, &mut b.ledger, c, next)?; // x_new = W(x' + c)
        be.rsub_assign(x, next)?; // c_new = x_new − x' (= x_new − prev − u), over x'
        // Rotate: params ← x_new, c ← c_new, spare ← the old message buffer.
        (b.params, self.corr, b.spare) = (next, x, c);
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        self.buf.ledger.sent()
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("d2.c", self.corr),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.ledger.clear();
        self.buf.gossip(be, &self.w)
    }
}
