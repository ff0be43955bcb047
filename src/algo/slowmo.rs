//! SlowMo-style outer step on DSGDm-N (ALGORITHMS.md §5.14). Every iteration is DSGDm-N
//! (LocalStep, then x ← W x); after the gossip, when t mod τ = 0 (so also at t = 0):
//! x̄ = mean_i x_i (all-reduce); u_s ← β_s u_s + (x_slow − x̄)/η; x_slow ← x_slow − α_s η u_s;
//! x_i ← x_slow for every agent. x_slow and u_s are identical on all agents and kept as one slab
//! each; the mean is a 1×n mix into one slab and the broadcast an n×1 mix, as in all-reduce.
//! η is the step's learning rate, guarded by max(η, 1e-8) (a warmup may start at 0).

use super::{gossip_bytes_per_agent, record_mix_into, AgentBuffers, Algo, LocalHyper, Objective};
use crate::backend::{Axpby, Backend, Buf, BufKind, CsrBufs};
use crate::error::{Error, Result};
use crate::sparse::Csr;

/// Smallest learning rate the outer step divides by.
pub const SLOWMO_MIN_LR: f64 = 1e-8;

/// SlowMo hyperparameters (ALGORITHMS.md §5.14).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowMoHyper {
    /// Outer period τ ≥ 1.
    pub period: u64,
    /// Outer momentum β_s.
    pub beta: f64,
    /// Outer learning rate α_s.
    pub lr: f64,
}

/// SlowMo state: DSGDm-N buffers plus x_slow, u_s and the mean slab.
pub struct SlowMo {
    buf: AgentBuffers,
    w: CsrBufs,
    average: CsrBufs,
    broadcast: CsrBufs,
    /// x̄, then x_slow − x̄ (one slab).
    mean: Buf,
    /// x_slow (one slab).
    slow: Buf,
    /// u_s (one slab).
    slow_momentum: Buf,
    hyper: LocalHyper,
    outer: SlowMoHyper,
    gossip_bytes: Vec<u64>,
    bytes: Vec<u64>,
}

impl SlowMo {
    /// Uploads W and the averaging matrices; x_slow starts at the mean of the initial models.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        w: &Csr,
        hyper: LocalHyper,
        outer: SlowMoHyper,
        init: &[f32],
    ) -> Result<Self> {
        if outer.period == 0 {
            return Err(Error::param("slowmo-period", "must be at least 1"));
        }
        let (n, s) = (buf.agents, buf.stride);
        let mut x0 = vec![0.0f64; s];
        for slab in init.chunks_exact(s) {
            for (a, &v) in x0.iter_mut().zip(slab) {
                *a += f64::from(v) / n as f64;
            }
        }
        let x0: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
        let slow = be.alloc(BufKind::F32, s, "slowmo.x_slow")?;
        be.write_f32(slow, 0, &x0)?;
        let average = Csr::from_rows(n, &[(0..n).map(|j| (j, 1.0 / n as f64)).collect()]);
        let broadcast = Csr::from_rows(1, &vec![vec![(0, 1.0)]; n]);
        let gossip_bytes = gossip_bytes_per_agent(w, buf.d);
        Ok(SlowMo {
            w: be.upload_csr(w, "W")?,
            average: be.upload_csr(&average, "slowmo.average")?,
            broadcast: be.upload_csr(&broadcast, "slowmo.broadcast")?,
            mean: be.alloc(BufKind::F32, s, "slowmo.mean")?,
            slow,
            slow_momentum: be.alloc(BufKind::F32, s, "slowmo.u_s")?,
            hyper,
            outer,
            bytes: gossip_bytes.clone(),
            gossip_bytes,
            buf,
        })
    }

    /// Whether the outer step follows the gossip of iteration t.
    pub fn fires(&self, t: u64) -> bool {
        t.is_multiple_of(self.outer.period)
    }
}

impl Algo for SlowMo {
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
        let s = self.buf.stride;
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        self.buf.record_mix(be, &self.w)?;
        self.bytes.clone_from(&self.gossip_bytes);
        if !self.fires(t) {
            return Ok(());
        }
        let lr = lr.max(SLOWMO_MIN_LR);
        // x̄ = mean_i x_i.
        record_mix_into(be, &self.average, self.buf.params, self.mean, s)?;
        // mean ← x_slow − x̄.
        be.axpby(&Axpby {
            x: self.slow,
            y: self.mean,
            a: 1.0,
            b: -1.0,
            len: s,
        })?;
        // u_s ← β_s u_s + (x_slow − x̄)/η.
        be.axpby(&Axpby {
            x: self.mean,
            y: self.slow_momentum,
            a: 1.0 / lr,
            b: self.outer.beta,
            len: s,
        })?;
        // x_slow ← x_slow − α_s η u_s.
        be.axpby(&Axpby {
            x: self.slow_momentum,
            y: self.slow,
            a: -self.outer.lr * lr,
            b: 1.0,
            len: s,
        })?;
        // x_i ← x_slow.
        record_mix_into(be, &self.broadcast, self.slow, self.buf.params, s)?;
        if self.buf.agents > 1 {
            for b in &mut self.bytes {
                *b += 4 * self.buf.d as u64;
            }
        }
        Ok(())
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("slowmo.x_slow", self.slow),
            ("slowmo.u_s", self.slow_momentum),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.record_mix(be, &self.w)
    }
}
