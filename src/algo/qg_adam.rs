//! QG-Adam v0 (ALGORITHMS.md §5.4): Adam whose moments are driven by the normalised realised
//! model change after gossip instead of the local gradient.
//!
//! Iteration t: g = ∇F + λx, x_prev = x; a = β1·m1 + g, s = β2·m2 + (1−β2)·g⊙g;
//! x½ = x − (η/bc1)·a/(√s/√bc2 + ε) with bc_k = 1 − β_k^(t+1); x ← W x½; δ = x_prev − x;
//! δ̂ = δ/(‖δ‖₂ + 1e-8) per agent; m1 ← β1·m1 + (1−β1)·δ̂; m2 ← β2·m2 + (1−β2)·δ̂⊙δ̂.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoOptions, AlgoSetup, AlgoSpec, Algorithm};
use super::{LocalHyper, Objective, TopologyNeed, VectorOps};
use crate::backend::{AdamMoments, AdamStep, Backend, Buf, BufKind, Reduce, ReduceMode};
use crate::comm::Gossip;
use crate::error::Result;
use crate::sparse::Csr;

/// QG-Adam.
pub const SPEC: AlgoSpec = AlgoSpec {
    name: "qg-adam",
    aliases: &["qgadam"],
    doc: "QG-Adam v0: Adam moments driven by the normalised realised model change",
    topology: TopologyNeed::Static,
    simulates_drops: false,
    options: &["adam-beta1", "adam-beta2", "adam-eps"],
    build,
};

impl Algorithm {
    /// QG-Adam v0 (§5.4): Adam moments driven by the normalised realised model change.
    #[allow(non_upper_case_globals)]
    pub const QgAdam: Algorithm = Algorithm(&SPEC);
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let w = gossip_matrix(s)?;
    Ok(Box::new(QgAdam::new(be, buf, &w, s.hyper, s.options)?))
}

/// QG-Adam state: x, m1, m2, and the temporaries x_prev (then δ) and ‖δ_i‖².
pub struct QgAdam {
    buf: AgentBuffers,
    w: Gossip,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    m1: Buf,
    m2: Buf,
    prev: Buf,
    sq_norms: Buf,
}

impl QgAdam {
    /// Uploads W; β1, β2 and ε come from the options, λ from the local hyperparameters
    /// (momentum and Nesterov do not apply).
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
        o: &AlgoOptions,
    ) -> Result<Self> {
        Ok(QgAdam {
            w: Gossip::new(be, w, buf.stride, buf.d, "W")?,
            weight_decay: hyper.weight_decay,
            beta1: o.adam_beta1,
            beta2: o.adam_beta2,
            eps: o.adam_eps,
            m1: buf.alloc_like(be, "adam.m1")?,
            m2: buf.alloc_like(be, "adam.m2")?,
            prev: buf.alloc_like(be, "adam.prev")?,
            sq_norms: be.alloc(BufKind::F32, buf.agents, "adam.norms")?,
            buf,
        })
    }
}

impl Algo for QgAdam {
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
        let (len, prev) = (self.buf.len(), self.prev);
        self.buf.ledger.clear();
        // 1. g = ∇F + λx (folded in by the step); x_prev = x.
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        be.assign(prev, self.buf.params)?;
        // 2.–3. x½ = x − (η/bc1)·a/(√s/√bc2 + ε).
        let power = |b: f64| 1.0 - b.powf(t as f64 + 1.0);
        be.adam_step(&AdamStep {
            params: self.buf.params,
            grads: self.buf.grads,
            m1: self.m1,
            m2: self.m2,
            len,
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            bc1: power(self.beta1),
            bc2: power(self.beta2),
            weight_decay: self.weight_decay,
        })?;
        // 4. x ← W x½.
        self.buf.gossip(be, &self.w)?;
        // 5. δ = x_prev − x, in place of x_prev, and ‖δ_i‖².
        be.sub_assign(prev, self.buf.params)?;
        be.reduce(&Reduce {
            mode: ReduceMode::Dot,
            a: prev,
            a_offset: 0,
            a_stride: self.buf.stride,
            b: prev,
            b_offset: 0,
            b_stride: self.buf.stride,
            segments: self.buf.agents,
            seg_len: self.buf.d,
            out: self.sq_norms,
            out_offset: 0,
        })?;
        // 6. Moments from δ̂ = δ/(‖δ‖₂ + 1e-8).
        be.adam_moments(&AdamMoments {
            delta: prev,
            sq_norms: self.sq_norms,
            m1: self.m1,
            m2: self.m2,
            agents: self.buf.agents,
            stride: self.buf.stride,
            beta1: self.beta1,
            beta2: self.beta2,
        })
    }

    fn bytes_sent(&self) -> &[u64] {
        self.buf.ledger.sent()
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("m1", self.m1),
            ("m2", self.m2),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.ledger.clear();
        self.buf.gossip(be, &self.w)
    }
}
