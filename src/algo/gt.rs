//! Gradient tracking, the epfml/relaysgd form (ALGORITHMS.md §5.11): prev = x;
//! x' = LocalStep(x), u = x' − prev; round A: x ← W(x' + c); round B: c ← W(c + u) − u.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, Algorithm, LocalHyper};
use super::{Objective, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::Result;
use crate::sparse::Csr;

/// Gradient tracking.
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "gt",
    aliases: &["gradient-tracking"],
    doc: "gradient tracking (epfml/relaysgd form), two gossip rounds per step",
    topology: TopologyNeed::Static,
    simulates_drops: false,
    options: &[],
    build,
};

impl Algorithm {
    /// Gradient tracking, epfml/relaysgd form (§5.11): two gossip rounds.
    #[allow(non_upper_case_globals)]
    pub const Gt: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Gt::new(be, buf, &gossip_matrix(s)?, s.hyper)?))
}

/// Gradient-tracking state: x, the correction c, local momentum b, and temporaries.
pub struct Gt {
    buf: AgentBuffers,
    /// The correction c.
    corr: Buf,
    /// The local update u = x' − prev.
    update: Buf,
    /// Round B's output before the swap.
    corr_next: Buf,
    w: Gossip,
    hyper: LocalHyper,
}

impl Gt {
    /// Uploads W.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
    ) -> Result<Self> {
        Ok(Gt {
            corr: buf.alloc_like(be, "gt.c")?,
            update: buf.alloc_like(be, "gt.u")?,
            corr_next: buf.alloc_like(be, "gt.c.next")?,
            w: Gossip::new(be, w, buf.stride, buf.d, "W")?,
            buf,
            hyper,
        })
    }
}

impl Algo for Gt {
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
        let (c, u) = (self.corr, self.update);
        self.buf.ledger.clear();
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        // 1. prev = x (held in u), x' = LocalStep(x), u = x' − prev.
        be.assign(u, self.buf.params)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        be.rsub_assign(u, self.buf.params)?;
        // 2. Round A: x ← W(x' + c).
        be.add_assign(self.buf.params, c)?;
        self.buf.gossip(be, &self.w)?;
        // 3. Round B: c ← W(c + u) − u.
        be.add_assign(c, u)?;
        self.w.record(be, &mut self.buf.ledger, c, self.corr_next)?;
        be.sub_assign(self.corr_next, u)?;
        std::mem::swap(&mut self.corr, &mut self.corr_next);
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        self.buf.ledger.sent()
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("gt.c", self.corr),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.ledger.clear();
        self.buf.gossip(be, &self.w)
    }
}
