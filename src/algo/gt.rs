//! Gradient tracking, the epfml/relaysgd form (ALGORITHMS.md §5.11): prev = x;
//! x' = LocalStep(x), u = x' − prev; round A: x ← W(x' + c); round B: c ← W(c + u) − u.

use super::{gossip_bytes_per_agent, record_mix_into, AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Axpby, Backend, Buf, CsrBufs};
use crate::error::Result;
use crate::sparse::Csr;

/// Gradient-tracking state: x, the correction c, local momentum b, and temporaries.
pub struct Gt {
    buf: AgentBuffers,
    /// The correction c.
    corr: Buf,
    /// The local update u = x' − prev.
    update: Buf,
    /// Round B's output before the swap.
    corr_next: Buf,
    w: CsrBufs,
    hyper: LocalHyper,
    bytes: Vec<u64>,
}

impl Gt {
    /// Uploads W.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
    ) -> Result<Self> {
        // Two gossip rounds per iteration: x' + c, then c + u.
        let bytes = gossip_bytes_per_agent(w, buf.d)
            .into_iter()
            .map(|b| 2 * b)
            .collect();
        Ok(Gt {
            corr: buf.alloc_like(be, "gt.c")?,
            update: buf.alloc_like(be, "gt.u")?,
            corr_next: buf.alloc_like(be, "gt.c.next")?,
            w: be.upload_csr(w, "W")?,
            buf,
            hyper,
            bytes,
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
        let (len, s) = (self.buf.len(), self.buf.stride);
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        // 1. prev = x (held in u), x' = LocalStep(x), u = x' − prev.
        be.copy(self.buf.params, 0, self.update, 0, len)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        be.axpby(&Axpby {
            x: self.buf.params,
            y: self.update,
            a: 1.0,
            b: -1.0,
            len,
        })?;
        // 2. Round A: x ← W(x' + c).
        be.axpby(&Axpby {
            x: self.corr,
            y: self.buf.params,
            a: 1.0,
            b: 1.0,
            len,
        })?;
        self.buf.record_mix(be, &self.w)?;
        // 3. Round B: c ← W(c + u) − u.
        be.axpby(&Axpby {
            x: self.update,
            y: self.corr,
            a: 1.0,
            b: 1.0,
            len,
        })?;
        record_mix_into(be, &self.w, self.corr, self.corr_next, s)?;
        be.axpby(&Axpby {
            x: self.update,
            y: self.corr_next,
            a: -1.0,
            b: 1.0,
            len,
        })?;
        std::mem::swap(&mut self.corr, &mut self.corr_next);
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("gt.c", self.corr),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.record_mix(be, &self.w)
    }
}
