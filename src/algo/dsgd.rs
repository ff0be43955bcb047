//! D-PSGD, adapt-then-combine, and DSGDm-N with local momentum (ALGORITHMS.md §5.1, §5.2):
//! `x½ = LocalStep(x, ∇F_i(x) + λx)`, then `x ← W x½`.

use super::{gossip_bytes_per_agent, AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Backend, Buf, CsrBufs};
use crate::error::Result;
use crate::sparse::Csr;

/// D-PSGD / DSGDm-N state.
pub struct Dsgd {
    buf: AgentBuffers,
    w: CsrBufs,
    hyper: LocalHyper,
    bytes: Vec<u64>,
}

impl Dsgd {
    /// Uploads the gossip matrix `w` (agents × agents).
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
    ) -> Result<Self> {
        let bytes = gossip_bytes_per_agent(w, buf.d);
        Ok(Dsgd {
            w: be.upload_csr(w, "W")?,
            buf,
            hyper,
            bytes,
        })
    }
}

impl Algo for Dsgd {
    fn params(&self) -> Buf {
        self.buf.params
    }

    fn record_step(
        &mut self,
        be: &mut dyn Backend,
        obj: &mut dyn Objective,
        t: u64,
        lr: f32,
    ) -> Result<()> {
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        self.buf.record_mix(be, &self.w)
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![("params", self.buf.params), ("momentum", self.buf.momentum)]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.record_mix(be, &self.w)
    }
}
