//! Gossip rounds `x_i ← Σ_j W_ij x_j` over a mixing matrix resident on the backend.

use super::Ledger;
use crate::backend::{Backend, Buf, BufKind, CopyRange, CsrBufs, Mix};
use crate::dist::{HaloPlan, Shard};
use crate::error::{Error, Result};
use crate::sparse::Csr;

/// Bytes agent i sends per gossip round with matrix `w`: 4·d per distinct receiver r ≠ i with
/// `w_ri ≠ 0` (the receiver's row reads x_i); self-messages are free.
pub fn gossip_bytes_per_agent(w: &Csr, d: usize) -> Vec<u64> {
    let mut out = vec![0u64; w.n_cols];
    for r in 0..w.n_rows() {
        for (c, v) in w.row(r) {
            if c != r && v != 0.0 {
                out[c] += 4 * d as u64;
            }
        }
    }
    out
}

/// One gossip channel: W on the device (agents × agents) and the bytes one round costs.
pub struct Gossip {
    w: CsrBufs,
    stride: usize,
    d: usize,
    round_bytes: Vec<u64>,
    /// Sharded over ranks: this rank's rows of W read its slabs and the ghost slabs.
    halo: Option<Halo>,
}

/// A sharded channel's halo: the plan, and the buffer the mix reads (own slabs, then ghosts).
struct Halo {
    shard: Shard,
    plan: HaloPlan,
    /// `(local + capacity) × stride`: the own slabs, then room for `capacity` ghosts.
    ext: Buf,
    capacity: usize,
}

impl Halo {
    /// The plan of the global `w`, its local matrix widened to the buffer's fixed columns.
    fn plan(shard: &Shard, w: &Csr, capacity: usize) -> Result<HaloPlan> {
        let mut plan = shard.halo(w);
        if plan.ghosts().len() > capacity {
            return Err(Error::op(
                "gossip",
                format!(
                    "{} ghost slabs exceed the {capacity} this channel was built for",
                    plan.ghosts().len()
                ),
            ));
        }
        plan.local.n_cols = shard.local() + capacity;
        Ok(plan)
    }
}

impl Gossip {
    /// Uploads W for slabs of `stride` floats of which `d` are communicated.
    pub fn new(
        be: &mut dyn Backend,
        w: &Csr,
        stride: usize,
        d: usize,
        label: &str,
    ) -> Result<Self> {
        Ok(Gossip {
            w: be.upload_csr(w, label)?,
            stride,
            d,
            round_bytes: gossip_bytes_per_agent(w, d),
            halo: None,
        })
    }

    /// A channel over this rank's slabs for W over all agents (`w`: n × n): its rows of W, its
    /// ghost slabs refreshed by one exchange per round. Later matrices ([`Gossip::write`]) may
    /// read as many ghosts as W's rows have entries (at most every other agent).
    pub fn sharded(
        be: &mut dyn Backend,
        w: &Csr,
        stride: usize,
        d: usize,
        label: &str,
        shard: &Shard,
    ) -> Result<Self> {
        let local = shard.local();
        let range = shard.range();
        let entries = range.clone().map(|r| w.row(r).count()).sum::<usize>();
        let capacity = entries.min(shard.agents() - local);
        let plan = Halo::plan(shard, w, capacity)?;
        let csr = be.upload_csr(&plan.local, label)?;
        let ext = be.alloc(
            BufKind::F32,
            (local + capacity) * stride,
            &format!("{label}.halo"),
        )?;
        Ok(Gossip {
            w: csr,
            stride,
            d,
            round_bytes: gossip_bytes_per_agent(w, d)[range].to_vec(),
            halo: Some(Halo {
                shard: shard.clone(),
                plan,
                ext,
                capacity,
            }),
        })
    }

    /// Replaces W by a matrix of the same size (time-varying graphs), ordered after the work
    /// recorded so far.
    pub fn write(&mut self, be: &mut dyn Backend, w: &Csr) -> Result<()> {
        self.write_dropped(be, w, w)
    }

    /// Replaces W by `applied`, the `intended` matrix with dropped messages removed; a dropped
    /// message was still sent, so the ledger charges `intended`.
    pub fn write_dropped(
        &mut self,
        be: &mut dyn Backend,
        intended: &Csr,
        applied: &Csr,
    ) -> Result<()> {
        let bytes = gossip_bytes_per_agent(intended, self.d);
        match &mut self.halo {
            None => {
                be.write_csr(&self.w, applied)?;
                self.round_bytes = bytes;
            }
            Some(h) => {
                let plan = Halo::plan(&h.shard, applied, h.capacity)?;
                be.write_csr(&self.w, &plan.local)?;
                h.plan = plan;
                self.round_bytes = bytes[h.shard.range()].to_vec();
            }
        }
        Ok(())
    }

    /// Sharded: the buffer the mix reads (own slabs, then the ghosts of [`Gossip::ghosts`]) and
    /// its length; after a round it holds the round's input.
    pub fn halo_input(&self) -> Option<(Buf, usize)> {
        self.halo.as_ref().map(|h| (h.ext, h.ext.len))
    }

    /// Sharded: the ghost agents (global ids) after the own slabs of [`Gossip::halo_input`].
    pub fn ghosts(&self) -> Option<&[usize]> {
        self.halo.as_ref().map(|h| h.plan.ghosts())
    }

    /// Bytes per agent of one round with the current matrix.
    pub fn round_bytes(&self) -> &[u64] {
        &self.round_bytes
    }

    /// Records one round `to ← W · from` (distinct buffers: every row reads the state at the
    /// start of the round) and charges it. Sharded: the recorded work is finished, this rank's
    /// slabs read back, the ghost slabs exchanged and written after a copy of the own slabs,
    /// and the mix reads that buffer.
    pub fn record(
        &self,
        be: &mut dyn Backend,
        ledger: &mut Ledger,
        from: Buf,
        to: Buf,
    ) -> Result<()> {
        let mut input = from;
        if let Some(h) = &self.halo {
            let own = h.shard.local();
            be.copy(&CopyRange::whole(from, h.ext, own * self.stride))?;
            h.shard
                .refresh(be, &h.plan.exchange, h.ext, own, self.stride)?;
            input = h.ext;
        }
        be.mix(&Mix {
            csr: self.w,
            input,
            in_offset: 0,
            in_stride: self.stride,
            output: to,
            out_offset: 0,
            out_stride: self.stride,
            len: self.stride,
        })?;
        ledger.charge(&self.round_bytes);
        Ok(())
    }

    /// Records `x ← W x` through a spare buffer, then swaps the two handles.
    pub fn record_swap(
        &self,
        be: &mut dyn Backend,
        ledger: &mut Ledger,
        x: &mut Buf,
        spare: &mut Buf,
    ) -> Result<()> {
        self.record(be, ledger, *x, *spare)?;
        std::mem::swap(x, spare);
        Ok(())
    }
}
