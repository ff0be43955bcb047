//! Gossip rounds `x_i ← Σ_j W_ij x_j` over a mixing matrix resident on the backend.

use super::Ledger;
use crate::backend::{Backend, Buf, CsrBufs, Mix};
use crate::error::Result;
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
        be.write_csr(&self.w, applied)?;
        self.round_bytes = gossip_bytes_per_agent(intended, self.d);
        Ok(())
    }

    /// Bytes per agent of one round with the current matrix.
    pub fn round_bytes(&self) -> &[u64] {
        &self.round_bytes
    }

    /// Records one round `to ← W · from` (distinct buffers: every row reads the state at the
    /// start of the round) and charges it.
    pub fn record(
        &self,
        be: &mut dyn Backend,
        ledger: &mut Ledger,
        from: Buf,
        to: Buf,
    ) -> Result<()> {
        be.mix(&Mix {
            csr: self.w,
            input: from,
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
