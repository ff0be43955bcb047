//! QGM — quasi-global momentum, QG-DSGDm-N (ALGORITHMS.md §5.3), general buffer period K.
//!
//! Iteration t, in this order: g = ∇F_i(x) + λx and x_prev = x; m = βm̂ + g (a temporary, m̂
//! untouched) and u = g + βm (Nesterov) or m; x½ = x − η u; x ← W x½; v ← v + (x_prev − x)/η;
//! every K steps (t mod K = 0) m̂ ← μm̂ + (1 − μ)·v/K and v ← 0. With K = 1 the buffer update is
//! m̂ ← μm̂ + (1 − μ)(x_prev − x)/η, exactly the epfml/relaysgd form when μ = β. The division
//! uses the learning rate of the step just taken, guarded by max(η, 1e-8).

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper};
use super::{Step, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf, LocalStep};
use crate::comm::Gossip;
use crate::error::{Error, Result};

/// QGM.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["qgm", "qg-dsgdm-n", "quasi-global-momentum"],
    doc: "quasi-global momentum on D-PSGD (QG-DSGDm-N)",
    topology: TopologyNeed::Static,
    options: &["qgm-mu", "qgm-period"],
    build,
};

/// Smallest learning rate the buffer update divides by.
pub const QGM_MIN_LR: f64 = 1e-8;

/// QGM state: x, m̂, v (K > 1 only), x_prev and the temporary m.
pub struct Qgm {
    buf: AgentBuffers,
    w: Gossip,
    hyper: LocalHyper,
    mu: f64,
    period: u64,
    /// m̂, the quasi-global momentum buffer.
    mhat: Buf,
    /// The temporary m = βm̂ + g (the local step's momentum slot).
    m: Buf,
    /// x_prev, then δ = x_prev − x.
    prev: Buf,
    /// v, the accumulated model change over a period (K > 1).
    v: Option<Buf>,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let (hyper, period) = (s.hyper, s.options.qgm_period);
    // β = 0 is allowed: the temporary m is then the gradient itself and QGM is exactly D-PSGD
    // (the tests check it bit for bit); the buffer m̂ has no effect. μ and K are validated
    // with the options.
    if !(0.0..1.0).contains(&hyper.momentum) {
        return Err(Error::param(
            "momentum",
            format!("QGM needs a momentum β in [0, 1), got {}", hyper.momentum),
        ));
    }
    let v = if period > 1 {
        Some(buf.alloc_like(be, "qgm.v")?)
    } else {
        None
    };
    Ok(Box::new(Qgm {
        w: buf.gossip_channel(be, &gossip_matrix(s)?)?,
        mhat: buf.alloc_like(be, "qgm.mhat")?,
        m: buf.alloc_like(be, "qgm.m")?,
        prev: buf.alloc_like(be, "qgm.prev")?,
        v,
        buf,
        hyper,
        mu: s.options.qgm_mu.unwrap_or(hyper.momentum),
        period,
    }))
}

impl Algo for Qgm {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (t, lr) = (s.t, s.lr);
        let (len, x) = (self.buf.len(), self.buf.params);
        let (mu, mhat, prev) = (self.mu, self.mhat, self.prev);
        self.buf.ledger.clear();
        // 1. g = ∇F(x) (λx is folded in by the local step); x_prev = x.
        s.gradients(be, &self.buf)?;
        be.assign(prev, x)?;
        // 2.–3. m = βm̂ + g in a temporary, u = g + βm or m, x½ = x − ηu.
        be.assign(self.m, mhat)?;
        be.local_step(&LocalStep {
            params: x,
            grads: self.buf.grads,
            momentum_buf: self.m,
            len,
            lr,
            momentum: self.hyper.momentum,
            nesterov: self.hyper.nesterov,
            weight_decay: self.hyper.weight_decay,
        })?;
        // x ← W x½.
        self.buf.gossip(be, &self.w)?;
        // 4. δ = x_prev − x.
        be.sub_assign(prev, self.buf.params)?;
        let inv_lr = 1.0 / lr.max(QGM_MIN_LR);
        match self.v {
            // K = 1: m̂ ← μm̂ + (1 − μ)δ/η.
            None => be.axpby_assign(mhat, (1.0 - mu) * inv_lr, prev, mu),
            Some(v) => {
                // v ← v + δ/η.
                be.axpby_assign(v, inv_lr, prev, 1.0)?;
                // 5. Every K steps from t = 0: m̂ ← μm̂ + (1 − μ)v/K; v ← 0.
                if t.is_multiple_of(self.period) {
                    be.axpby_assign(mhat, (1.0 - mu) / self.period as f64, v, mu)?;
                    be.fill_all(v, 0.0)?;
                }
                Ok(())
            }
        }
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        let mut s = vec![("params", self.buf.params), ("qgm.mhat", self.mhat)];
        if let Some(v) = self.v {
            s.push(("qgm.v", v));
        }
        s
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
