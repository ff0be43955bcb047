//! SlowMo-style outer step on DSGDm-N (ALGORITHMS.md §5.14). Every iteration is DSGDm-N
//! (LocalStep, then x ← W x); after the gossip, when t mod τ = 0 (so also at t = 0):
//! x̄ = mean_i x_i (all-reduce); u_s ← β_s u_s + (x_slow − x̄)/η; x_slow ← x_slow − α_s η u_s;
//! x_i ← x_slow for every agent. x_slow and u_s are identical on all agents and kept as one slab
//! each; the mean and the broadcast are those of the all-reduce ([`crate::comm::AllReduce`]).
//! η is the step's learning rate, guarded by max(η, 1e-8) (a warmup may start at 0).

use super::{gossip_matrix, mean_slab, AgentBuffers, Algo, AlgoSetup, AlgoSpec};
use super::{LocalHyper, Step, TopologyNeed, VectorOps};
use crate::backend::{Backend, Buf, BufKind};
use crate::comm::{AllReduce, Gossip};
use crate::error::Result;

/// SlowMo.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["slowmo", "slow-mo"],
    doc: "DSGDm-N with a SlowMo-style outer step every τ iterations",
    topology: TopologyNeed::Static,
    options: &["slowmo-period", "slowmo-beta", "slowmo-lr"],
    build,
};

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
    w: Gossip,
    average: AllReduce,
    /// x̄, then x_slow − x̄ (one slab).
    mean: Buf,
    /// x_slow (one slab).
    slow: Buf,
    /// u_s (one slab).
    slow_momentum: Buf,
    hyper: LocalHyper,
    outer: SlowMoHyper,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let o = s.options;
    let stride = buf.stride;
    // x_slow starts at the mean of the initial models.
    let x0: Vec<f32> = mean_slab(s.init, s.agents, stride).iter().map(|&v| v as f32).collect();
    let slow = be.alloc(BufKind::F32, stride, "slowmo.x_slow")?;
    be.write_f32(slow, 0, &x0)?;
    Ok(Box::new(SlowMo {
        w: buf.gossip_channel(be, &gossip_matrix(s)?)?,
        average: buf.all_reduce(be)?,
        mean: be.alloc(BufKind::F32, stride, "slowmo.mean")?,
        slow,
        slow_momentum: be.alloc(BufKind::F32, stride, "slowmo.u_s")?,
        hyper: s.hyper,
        outer: SlowMoHyper {
            period: o.slowmo_period,
            beta: o.slowmo_beta,
            lr: o.slowmo_lr,
        },
        buf,
    }))
}

impl SlowMo {
    /// Whether the outer step follows the gossip of iteration t.
    pub fn fires(&self, t: u64) -> bool {
        t.is_multiple_of(self.outer.period)
    }
}

impl Algo for SlowMo {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (t, lr) = (s.t, s.lr);
        let (mean, slow, u_s) = (self.mean, self.slow, self.slow_momentum);
        self.buf.ledger.clear();
        s.gradients(be, &self.buf)?;
        self.buf.record_local_step(be, lr, self.hyper)?;
        self.buf.gossip(be, &self.w)?;
        if !self.fires(t) {
            return Ok(());
        }
        let lr = lr.max(SLOWMO_MIN_LR);
        self.average.mean(be, self.buf.params, mean)?; // x̄ = mean_i x_i (all-reduce)
        self.average.charge(&mut self.buf.ledger);
        be.rsub_assign(mean, slow)?; // x_slow − x̄
        be.axpby_assign(u_s, 1.0 / lr, mean, self.outer.beta)?; // u_s ← β_s u_s + (x_slow − x̄)/η
        be.axpby_assign(slow, -self.outer.lr * lr, u_s, 1.0)?; // x_slow ← x_slow − α_s η u_s
        self.average.broadcast(be, slow, self.buf.params) // x_i ← x_slow
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buf.state_with(&[
            ("slowmo.x_slow", self.slow),
            ("slowmo.u_s", self.slow_momentum),
        ])
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }
}
