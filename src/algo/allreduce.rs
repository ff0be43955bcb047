//! The all-reduce baseline (ALGORITHMS.md §5.13): a local step, then every agent takes the exact
//! average. Two mixes keep it O(n·d): a 1×n row of 1/n into one mean slab, then an n×1 column
//! of ones that broadcasts it (a dense n×n averaging matrix would cost O(n²·d)).

use super::{record_mix_into, AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Backend, Buf, BufKind, CsrBufs};
use crate::error::Result;
use crate::sparse::Csr;

/// All-reduce state.
pub struct AllReduce {
    buf: AgentBuffers,
    mean: Buf,
    average: CsrBufs,
    broadcast: CsrBufs,
    hyper: LocalHyper,
    bytes: Vec<u64>,
}

impl AllReduce {
    /// Prepares the averaging matrices.
    pub fn new(be: &mut dyn Backend, buf: AgentBuffers, hyper: LocalHyper) -> Result<Self> {
        let n = buf.agents;
        let average = Csr::from_rows(n, &[(0..n).map(|j| (j, 1.0 / n as f64)).collect()]);
        let broadcast = Csr::from_rows(1, &vec![vec![(0, 1.0)]; n]);
        // 4·d bytes per agent per step (the epfml/relaysgd convention); nothing with one agent.
        let per_agent = if n > 1 { 4 * buf.d as u64 } else { 0 };
        Ok(AllReduce {
            mean: be.alloc(BufKind::F32, buf.stride, "mean")?,
            average: be.upload_csr(&average, "average")?,
            broadcast: be.upload_csr(&broadcast, "broadcast")?,
            bytes: vec![per_agent; n],
            buf,
            hyper,
        })
    }
}

impl Algo for AllReduce {
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
        self.buf.record_local_step(be, lr, self.hyper)?;
        self.record_gossip(be)
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![("params", self.buf.params), ("momentum", self.buf.momentum)]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        let s = self.buf.stride;
        record_mix_into(be, &self.average, self.buf.params, self.mean, s)?;
        record_mix_into(be, &self.broadcast, self.mean, self.buf.params, s)
    }
}
