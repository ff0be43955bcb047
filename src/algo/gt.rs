//! Gradient tracking, the epfml/relaysgd form (ALGORITHMS.md §5.11): prev = x;
//! x' = LocalStep(x), u = x' − prev; round A: x ← W(x' + c); round B: c ← W(c + u) − u.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper};
use super::{Step, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf};
use crate::comm::Gossip;
use crate::error::Result;

/// Gradient tracking.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["gt", "gradient-tracking"],
    doc: "gradient tracking (epfml/relaysgd form), two gossip rounds per step",
    topology: TopologyNeed::Static,
    options: &[],
    build,
};

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

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Gt {
        corr: buf.alloc_like(be, "gt.c")?,
        update: buf.alloc_like(be, "gt.u")?,
        corr_next: buf.alloc_like(be, "gt.c.next")?,
        w: buf.gossip_channel(be, &gossip_matrix(s)?)?,
        buf,
        hyper: s.hyper,
    }))
}

impl Algo for Gt {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (c, u) = (self.corr, self.update);
        self.buf.ledger.clear();
        s.gradients(be, &self.buf)?;
        // 1. prev = x (held in u), x' = LocalStep(x), u = x' − prev.
        be.assign(u, self.buf.params)?;
        self.buf.record_local_step(be, s.lr, self.hyper)?;
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

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[("gt.c", self.corr)])
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
