//! Exact averaging of all agents (all-reduce): the mean is summed, then divided once by n, so
//! identical models stay identical and no rounded 1/n weight scales the mean.

use super::Ledger;
use crate::backend::{Backend, Buf, BufKind, CopyStrided, Mean};
use crate::dist::Shard;
use crate::error::Result;

/// All-reduce over agent-major buffers of `agents` slabs of `stride` floats.
pub struct AllReduce {
    agents: usize,
    stride: usize,
    bytes: Vec<u64>,
    /// Sharded: every rank gathers all slabs (agent order) into this buffer and takes the
    /// backend's mean of all n, exactly as one process does.
    gathered: Option<(Shard, Buf)>,
}

impl AllReduce {
    /// Prepares averaging; one all-reduce costs 4·d bytes per agent (the epfml/relaysgd
    /// convention), nothing with one agent.
    pub fn new(agents: usize, stride: usize, d: usize) -> Self {
        let per_agent = if agents > 1 { 4 * d as u64 } else { 0 };
        AllReduce {
            agents,
            stride,
            bytes: vec![per_agent; agents],
            gathered: None,
        }
    }

    /// All-reduce over this rank's slabs of the agents of `shard` (n in all).
    pub fn sharded(be: &mut dyn Backend, shard: &Shard, stride: usize, d: usize) -> Result<Self> {
        let mut a = AllReduce::new(shard.agents(), stride, d);
        a.bytes.truncate(shard.local());
        a.agents = shard.local();
        let all = be.alloc(BufKind::F32, shard.agents() * stride, "allreduce.gathered")?;
        a.gathered = Some((shard.clone(), all));
        Ok(a)
    }

    /// Records `mean ← (1/n) Σ_i x_i` into one slab (no communication charged: see
    /// [`AllReduce::record`]).
    pub fn mean(&self, be: &mut dyn Backend, x: Buf, mean: Buf) -> Result<()> {
        self.mean_at(be, x, mean, 0)
    }

    /// [`AllReduce::mean`] into the slab at element `offset` of `mean`.
    pub fn mean_at(&self, be: &mut dyn Backend, x: Buf, mean: Buf, offset: usize) -> Result<()> {
        let (src, count) = match &self.gathered {
            None => (x, self.agents),
            Some((shard, all)) => {
                let local = be.read_f32(x)?;
                let full = shard.all_gather_f64(&local[..self.agents * self.stride]);
                be.write_f64(*all, 0, &full)?;
                (*all, shard.agents())
            }
        };
        be.mean(&Mean {
            src,
            src_offset: 0,
            src_stride: self.stride,
            count,
            len: self.stride,
            dst: mean,
            dst_offset: offset,
        })
    }

    /// Records `x_i ← slab` for every agent.
    pub fn broadcast(&self, be: &mut dyn Backend, slab: Buf, x: Buf) -> Result<()> {
        be.copy_strided(&CopyStrided {
            src: slab,
            src_offset: 0,
            src_stride: 0,
            src_step: 1,
            dst: x,
            dst_offset: 0,
            dst_stride: self.stride,
            dst_step: 1,
            count: self.agents,
            len: self.stride,
        })
    }

    /// Records one all-reduce `x_i ← mean_j x_j` through the one-slab buffer `mean`, and
    /// charges it.
    pub fn record(
        &self,
        be: &mut dyn Backend,
        ledger: &mut Ledger,
        x: Buf,
        mean: Buf,
    ) -> Result<()> {
        self.mean(be, x, mean)?;
        self.broadcast(be, mean, x)?;
        self.charge(ledger);
        Ok(())
    }

    /// Charges one all-reduce (for an average taken with [`AllReduce::mean`]).
    pub fn charge(&self, ledger: &mut Ledger) {
        ledger.charge(&self.bytes);
    }
}
