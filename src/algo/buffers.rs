//! The per-agent state every algorithm starts from: parameters (double-buffered for mixing),
//! gradients and the local momentum buffer, all agent-major slabs.

use crate::backend::{Backend, Buf, BufKind, LocalStep};
use crate::comm::{AllReduce, Gossip, Ledger};
use crate::dist::Shard;
use crate::error::{Error, Result};
use crate::sparse::Csr;

/// Local optimizer hyperparameters (ALGORITHMS.md §1 LocalStep).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalHyper {
    /// Momentum β (0: plain SGD).
    pub momentum: f64,
    /// Nesterov (true) or heavy ball (false).
    pub nesterov: bool,
    /// Weight decay λ, folded into the gradient before momentum.
    pub weight_decay: f64,
}

impl Default for LocalHyper {
    fn default() -> Self {
        LocalHyper {
            momentum: 0.0,
            nesterov: true,
            weight_decay: 0.0,
        }
    }
}

/// Parameters, their mixing double buffer, gradients and local momentum of all agents.
pub struct AgentBuffers {
    /// Current parameters x.
    pub params: Buf,
    /// The other half of the double buffer (mix output).
    pub spare: Buf,
    /// Gradient slabs g, one per agent.
    pub grads: Buf,
    /// Local momentum b (never communicated).
    pub momentum: Buf,
    /// Agents n.
    pub agents: usize,
    /// Floats per slab.
    pub stride: usize,
    /// Trainable scalars per agent d (≤ stride).
    pub d: usize,
    /// Bytes each agent sent during the current iteration.
    pub ledger: Ledger,
    /// Sharded over ranks: the buffers hold this rank's block of agents (`agents` of them) and
    /// the communication channels built from here exchange with the other ranks.
    pub shard: Option<Shard>,
}

impl AgentBuffers {
    /// Allocates the buffers and uploads the initial parameters (`agents × stride` floats).
    pub fn new(
        be: &mut dyn Backend,
        agents: usize,
        stride: usize,
        d: usize,
        init: &[f32],
    ) -> Result<Self> {
        let len = agents * stride;
        if init.len() != len || d > stride || agents == 0 {
            return Err(Error::param(
                "init",
                format!(
                    "{} floats for {agents} slabs of {stride} (d = {d})",
                    init.len()
                ),
            ));
        }
        let params = be.alloc(BufKind::F32, len, "params")?;
        be.write_f32(params, 0, init)?;
        Ok(AgentBuffers {
            params,
            spare: be.alloc(BufKind::F32, len, "params.next")?,
            grads: be.alloc(BufKind::F32, len, "grads")?,
            momentum: be.alloc(BufKind::F32, len, "momentum")?,
            agents,
            stride,
            d,
            ledger: Ledger::new(agents),
            shard: None,
        })
    }

    /// This rank's buffers of a run sharded over ranks: its block of `init` (all agents'
    /// initial parameters).
    pub fn new_sharded(
        be: &mut dyn Backend,
        shard: &Shard,
        stride: usize,
        d: usize,
        init: &[f32],
    ) -> Result<Self> {
        let range = shard.range();
        let block = init
            .get(range.start * stride..range.end * stride)
            .ok_or_else(|| {
                Error::param(
                    "init",
                    format!(
                        "{} floats for {} slabs of {stride}",
                        init.len(),
                        shard.agents()
                    ),
                )
            })?;
        let mut b = AgentBuffers::new(be, shard.local(), stride, d, block)?;
        b.shard = Some(shard.clone());
        Ok(b)
    }

    /// Elements of one agent-major buffer.
    pub fn len(&self) -> usize {
        self.agents * self.stride
    }

    /// Always false: there is at least one agent.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Allocates another zeroed buffer of the same shape (algorithm state).
    pub fn alloc_like(&self, be: &mut dyn Backend, label: &str) -> Result<Buf> {
        be.alloc(BufKind::F32, self.len(), label)
    }

    /// A gossip channel for W over these slabs.
    pub fn gossip_channel(&self, be: &mut dyn Backend, w: &Csr) -> Result<Gossip> {
        self.gossip_channel_named(be, w, "W")
    }

    /// A gossip channel for W (over all agents) whose buffers are labelled `label`; sharded,
    /// this rank's rows with their ghost slabs.
    pub fn gossip_channel_named(
        &self,
        be: &mut dyn Backend,
        w: &Csr,
        label: &str,
    ) -> Result<Gossip> {
        match &self.shard {
            None => Gossip::new(be, w, self.stride, self.d, label),
            Some(s) => Gossip::sharded(be, w, self.stride, self.d, label, s),
        }
    }

    /// Per-agent values of these agents → those of all agents in agent order (gathered from
    /// every rank when sharded: a collective).
    pub fn gather_agents(&self, mine: Vec<f64>) -> Vec<f64> {
        match &self.shard {
            None => mine,
            Some(s) => s.all_gather_f64(&mine),
        }
    }

    /// The agents these buffers hold, as global ids.
    pub fn agent_range(&self) -> std::ops::Range<usize> {
        self.shard.as_ref().map_or(0..self.agents, Shard::range)
    }

    /// All agents of the run (`agents` itself unless sharded over ranks).
    pub fn all_agents(&self) -> usize {
        self.shard.as_ref().map_or(self.agents, Shard::agents)
    }

    /// An all-reduce channel over these slabs (all agents, sharded or not).
    pub fn all_reduce(&self, be: &mut dyn Backend) -> Result<AllReduce> {
        match &self.shard {
            None => Ok(AllReduce::new(self.agents, self.stride, self.d)),
            Some(s) => AllReduce::sharded(be, s, self.stride, self.d),
        }
    }

    /// Records `x ← LocalStep(x, g)` on the given parameters with this state's gradients and
    /// momentum.
    pub fn record_local_step_on(
        &self,
        be: &mut dyn Backend,
        params: Buf,
        lr: f64,
        h: LocalHyper,
    ) -> Result<()> {
        be.local_step(&LocalStep {
            params,
            grads: self.grads,
            momentum_buf: self.momentum,
            len: self.len(),
            lr,
            momentum: h.momentum,
            nesterov: h.nesterov,
            weight_decay: h.weight_decay,
        })
    }

    /// Records `x ← LocalStep(x, g)` on the current parameters.
    pub fn record_local_step(&self, be: &mut dyn Backend, lr: f64, h: LocalHyper) -> Result<()> {
        self.record_local_step_on(be, self.params, lr, h)
    }

    /// Records one gossip round `x ← W x` on the current parameters (through the spare
    /// buffer, so every row reads the state at the start of the round).
    pub fn gossip(&mut self, be: &mut dyn Backend, w: &Gossip) -> Result<()> {
        w.record_swap(be, &mut self.ledger, &mut self.params, &mut self.spare)
    }

    /// One gossip round alone, as an iteration of its own (the ledger restarts).
    pub fn gossip_alone(&mut self, be: &mut dyn Backend, w: &Gossip) -> Result<()> {
        self.ledger.clear();
        self.gossip(be, w)
    }

    /// Checkpoint buffers: parameters, local momentum, then `extra`.
    pub fn state_with(&self, extra: &[(&'static str, Buf)]) -> Vec<(&'static str, Buf)> {
        let mut s = vec![("params", self.params), ("momentum", self.momentum)];
        s.extend_from_slice(extra);
        s
    }
}
