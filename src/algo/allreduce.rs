//! The all-reduce baseline (ALGORITHMS.md §5.13): a local step, then every agent takes the exact
//! average (summed, then divided by n, into one slab, then broadcast: O(n·d)).

use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, Algorithm, LocalHyper, Objective};
use super::TopologyNeed;
use crate::backend::{Backend, Buf, BufKind};
use crate::comm::AllReduce as Average;
use crate::error::Result;

/// All-reduce.
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "allreduce",
    aliases: &["all-reduce"],
    doc: "local step, then the exact average of all agents (synchronous SGD)",
    topology: TopologyNeed::None,
    simulates_drops: false,
    options: &[],
    build,
};

impl Algorithm {
    /// Local step, then the exact average of all agents.
    #[allow(non_upper_case_globals)]
    pub const AllReduce: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(AllReduce::new(be, buf, s.hyper)?))
}

/// All-reduce state.
pub struct AllReduce {
    buf: AgentBuffers,
    average: Average,
    /// One slab: the mean.
    mean: Buf,
    hyper: LocalHyper,
}

impl AllReduce {
    /// Prepares the averaging.
    pub fn new(be: &mut dyn Backend, buf: AgentBuffers, hyper: LocalHyper) -> Result<Self> {
        Ok(AllReduce {
            average: Average::new(buf.agents, buf.stride, buf.d),
            mean: be.alloc(BufKind::F32, buf.stride, "mean")?,
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
        self.buf.ledger.sent()
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![("params", self.buf.params), ("momentum", self.buf.momentum)]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        let b = &mut self.buf;
        b.ledger.clear();
        self.average.record(be, &mut b.ledger, b.params, self.mean)
    }
}
