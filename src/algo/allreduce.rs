//! The all-reduce baseline (ALGORITHMS.md §5.13): a local step, then every agent takes the exact
//! average (summed, then divided by n, into one slab, then broadcast: O(n·d)).

use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper, Step};
use super::TopologyNeed;
use crate::backend::{Backend, Buf, BufKind};
use crate::comm::AllReduce as Average;
use crate::error::Result;

/// All-reduce.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["allreduce", "all-reduce"],
    doc: "local step, then the exact average of all agents (synchronous SGD)",
    topology: TopologyNeed::None,
    options: &[],
    build,
};

/// All-reduce state.
pub struct AllReduce {
    buf: AgentBuffers,
    average: Average,
    /// One slab: the mean.
    mean: Buf,
    hyper: LocalHyper,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(AllReduce {
        average: buf.all_reduce(be)?,
        mean: be.alloc(BufKind::F32, buf.stride, "mean")?,
        buf,
        hyper: s.hyper,
    }))
}

impl Algo for AllReduce {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        s.gradients(be, &self.buf)?;
        self.buf.record_local_step(be, s.lr, self.hyper)?;
        self.record_gossip(be)
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[])
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        let b = &mut self.buf;
        b.ledger.clear();
        self.average.record(be, &mut b.ledger, b.params, self.mean)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
