//! MATCHA (ALGORITHMS.md §5.15): the base graph split into matchings E_1..E_M, matching j
//! active at step t with probability p_j (optimised under the budget C_b), flags from **one
//! stream shared by all agents** (the host draws them from (seed, t), so every agent sees the
//! same flags); then x½ = LocalStep(x) and x_i ← (1 − d_i α)·x½_i + α·Σ_{active partners} x½_k,
//! nothing when no matching is active. The code mode FixedProcessor (the original's D-PSGD)
//! alternates matchings 1 and 0 with α_fix.
//!
//! The realised matrix is written before each step's work (like the exponential graph of
//! `dsgd`), into buffers sized for all matchings active; the byte ledger charges 4d bytes per
//! active partner, so only active matchings cost anything.

use super::options::MatchaMode;
use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper, Step, TopologyNeed};
use crate::backend::Backend;
use crate::comm::Gossip;
use crate::error::{Error, Result};
use crate::graph::{greedy_matchings, Matcha as Schedule};

/// MATCHA.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["matcha"],
    doc: "MATCHA: random matchings of the graph under a communication budget (--matcha-budget), \
          or the original's FixedProcessor (--matcha-mode fixed-processor)",
    topology: TopologyNeed::Static,
    options: &["matcha-budget", "matcha-mode", "matcha-graph"],
    build,
};

/// The seed of the shared flag stream, derived from the run's seed (its own named stream).
pub fn matcha_flag_seed(seed: u64) -> u64 {
    seed ^ 0x4d41_5443_4841 // "MATCHA"
}

/// The schedule of a setup: the `--matcha-graph` decomposition or the configured topology's
/// greedy one, then p and α under the budget (or FixedProcessor's α_fix).
pub fn matcha_schedule(s: &AlgoSetup) -> Result<Schedule> {
    let o = s.options;
    let matchings = match o.matcha_graph {
        Some(which) => {
            let (g, m) = which.build()?;
            if g.n() != s.agents {
                return Err(Error::param(
                    "matcha-graph",
                    format!("{which} has {} nodes, not {} agents", g.n(), s.agents),
                ));
            }
            m
        }
        None => {
            let g = s
                .topology
                .static_graph(s.agents, s.seed)
                .map_err(|e| Error::param("topology", e.to_string()))?;
            greedy_matchings(&g)
        }
    };
    let schedule = match o.matcha_mode {
        MatchaMode::Random => Schedule::new(s.agents, matchings, o.matcha_budget),
        MatchaMode::FixedProcessor => Schedule::fixed_processor(s.agents, matchings),
    };
    schedule.map_err(|e| Error::param("matcha-mode", e.to_string()))
}

/// MATCHA state.
pub struct Matcha {
    buf: AgentBuffers,
    schedule: Schedule,
    w: Gossip,
    hyper: LocalHyper,
    /// Seed of the flag stream all agents share.
    flag_seed: u64,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let schedule = matcha_schedule(s)?;
    // Sized for every matching active (the most entries a realised matrix has).
    let all = schedule.mixing(&vec![true; schedule.matchings().len()])?;
    Ok(Box::new(Matcha {
        w: buf.gossip_channel(be, &all)?,
        flag_seed: matcha_flag_seed(s.seed),
        schedule,
        buf,
        hyper: s.hyper,
    }))
}

impl Algo for Matcha {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        self.buf.ledger.clear();
        // 1. The flags of step t (FixedProcessor: the flag counter is t).
        let flags = self.schedule.flags(self.flag_seed, s.t);
        let active = flags.iter().any(|&f| f);
        if active {
            self.w.write(be, &self.schedule.mixing(&flags)?)?;
        }
        // 2. x½ = LocalStep(x).
        let b = &mut self.buf;
        s.gradients(be, b)?;
        b.record_local_step(be, s.lr, self.hyper)?;
        // 3. Mixing over the active matchings only.
        if active {
            b.gossip(be, &self.w)?;
        }
        Ok(())
    }

    /// One round with the most recently written matrix (all matchings before the first step).
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }

    fn notes(&self) -> Vec<String> {
        let p: Vec<String> = self
            .schedule
            .probabilities()
            .iter()
            .map(|p| format!("{p:.4}"))
            .collect();
        vec![format!(
            "MATCHA ({:?}): {} matchings, p = [{}], α = {:.5}",
            self.schedule.mode(),
            p.len(),
            p.join(", "),
            self.schedule.alpha()
        )]
    }
}
