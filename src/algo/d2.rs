//! D² (ALGORITHMS.md §5.10), the epfml/relaysgd form B: prev = x; x' = LocalStep(x),
//! u = x' − prev; x ← W(x' + c); c ← x − prev − u. Since u = x' − prev, the correction is
//! recorded as c ← x − x' (the same value without two extra buffers and with less rounding).
//! Requires λ_min(W) > −1/3.

use super::{gossip_bytes_per_agent, AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Axpby, Backend, Buf, CsrBufs, Mix};
use crate::error::{Error, Result};
use crate::graph::lambda_min;
use crate::sparse::Csr;

/// D² needs λ_min(W) above this bound (with a small margin for rounding).
pub const D2_LAMBDA_MIN_BOUND: f64 = -1.0 / 3.0;

/// Checks λ_min(W) > −1/3 (+1e-9), with a hint on how to fix a ring's weights.
pub fn check_d2_spectrum(w: &Csr) -> Result<f64> {
    let lmin = lambda_min(w).map_err(|e| Error::param("mixing", e.to_string()))?;
    if lmin <= D2_LAMBDA_MIN_BOUND + 1e-9 {
        return Err(Error::param(
            "mixing",
            format!(
                "D² requires λ_min(W) > −1/3 but this W has λ_min = {lmin:.6} (e.g. the \
                 Metropolis–Hastings ring with an even number of agents); use \
                 --gossip-weight 0.3233 (constant weight 1/3 − 0.01)"
            ),
        ));
    }
    Ok(lmin)
}

/// D² state: x, the correction c, local momentum b.
pub struct D2 {
    buf: AgentBuffers,
    /// The correction c (its buffer rotates with params and spare every step).
    corr: Buf,
    w: CsrBufs,
    hyper: LocalHyper,
    bytes: Vec<u64>,
}

impl D2 {
    /// Checks the spectrum and uploads W.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
    ) -> Result<Self> {
        check_d2_spectrum(w)?;
        let bytes = gossip_bytes_per_agent(w, buf.d);
        Ok(D2 {
            corr: buf.alloc_like(be, "d2.c")?,
            w: be.upload_csr(w, "W")?,
            buf,
            hyper,
            bytes,
        })
    }
}

impl Algo for D2 {
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
        // x' = LocalStep(x) in place.
        self.buf.record_local_step(be, lr, self.hyper)?;
        // The message x' + c, written over c.
        be.axpby(&Axpby {
            x: self.buf.params,
            y: self.corr,
            a: 1.0,
            b: 1.0,
            len,
        })?;
        // x_new = W(x' + c) into the spare buffer.
        be.mix(&Mix {
            csr: self.w,
            input: self.corr,
            in_offset: 0,
            in_stride: s,
            output: self.buf.spare,
            out_offset: 0,
            out_stride: s,
            len: s,
        })?;
        // c_new = x_new − x' (= x_new − prev − u), written over x'.
        be.axpby(&Axpby {
            x: self.buf.spare,
            y: self.buf.params,
            a: 1.0,
            b: -1.0,
            len,
        })?;
        // Rotate: params ← x_new, c ← c_new, spare ← the old message buffer.
        let (x_new, c_new, free) = (self.buf.spare, self.buf.params, self.corr);
        self.buf.params = x_new;
        self.corr = c_new;
        self.buf.spare = free;
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("d2.c", self.corr),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.record_mix(be, &self.w)
    }
}
