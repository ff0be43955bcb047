//! QG-Adam v0 (ALGORITHMS.md §5.4): Adam whose moments are driven by the normalised realised
//! model change after gossip instead of the local gradient.
//!
//! Iteration t: g = ∇F + λx, x_prev = x; a = β1·m1 + g, s = β2·m2 + (1−β2)·g⊙g;
//! x½ = x − (η/bc1)·a/(√s/√bc2 + ε) with bc_k = 1 − β_k^(t+1); x ← W x½; δ = x_prev − x;
//! δ̂ = δ/(‖δ‖₂ + 1e-8) per agent; m1 ← β1·m1 + (1−β1)·δ̂; m2 ← β2·m2 + (1−β2)·δ̂⊙δ̂.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec};
use super::{Step, TopologyNeed, VectorOps};
use crate::backend::{AdamMoments, AdamStep, Backend, Buf, BufKind, Reduce, ReduceMode};
use crate::comm::Gossip;
use crate::error::Result;

/// QG-Adam.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["qg-adam", "qgadam"],
    doc: "QG-Adam v0: Adam moments driven by the normalised realised model change",
    topology: TopologyNeed::Static,
    options: &["adam-beta1", "adam-beta2", "adam-eps"],
    build,
};

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

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    // β1, β2 and ε come from the options, λ from the local hyperparameters (momentum and
    // Nesterov do not apply).
    let o = s.options;
    Ok(Box::new(QgAdam {
        w: buf.gossip_channel(be, &gossip_matrix(s)?)?,
        weight_decay: s.hyper.weight_decay,
        beta1: o.adam_beta1,
        beta2: o.adam_beta2,
        eps: o.adam_eps,
        m1: buf.alloc_like(be, "adam.m1")?,
        m2: buf.alloc_like(be, "adam.m2")?,
        prev: buf.alloc_like(be, "adam.prev")?,
        sq_norms: be.alloc(BufKind::F32, buf.agents, "adam.norms")?,
        buf,
    }))
}

impl Algo for QgAdam {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (t, lr) = (s.t, s.lr);
        let (len, prev) = (self.buf.len(), self.prev);
        self.buf.ledger.clear();
        // 1. g = ∇F + λx (folded in by the step); x_prev = x.
        s.gradients(be, &self.buf)?;
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

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("m1", self.m1),
            ("m2", self.m2),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
