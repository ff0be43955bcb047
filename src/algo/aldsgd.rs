//! AL-DSGD, Adjacent Leader DSGD (ALGORITHMS.md §5.16), as the reference code does it: a
//! D-PSGD (FixedProcessor) or MATCHA core on two communicators — G_A on MATCHA graph 0, G_B on
//! its relabelled partner graph 1, 8 agents — used in rotation (G_B at even, G_A at odd batch
//! indices), each with its own flag sequence and flag counter; after the local step each agent
//! mixes with its active partners and, on pull iterations, is pulled towards the lowest-loss
//! (B) and highest-degree (D) models among [self, partners…] (ties: the earliest, self first):
//!
//! x_i ← A·x̄ + w_B·x½_B + w_D·x½_D, x̄ = (1 − d_i α)·x½_i + α·Σ_k x½_k,
//! A = (1−p1−p2)(1−c1−c2), w_B = (1−p1−p2)c1 + p1, w_D = (1−p1−p2)c2 + p2.
//!
//! The collapsed step is affine in the sent models x½, so the host builds its matrix (the flags
//! and degrees are host-side; the losses are read back — the **one readback per step** this
//! algorithm needs, n loss sums, because the leader is an argmin over device values) and one
//! sparse mix applies it. Losses come from the objective's training statistics (current
//! minibatch, pre-step); objectives without a loss (the toy quadratics) make every loss equal,
//! so B is always self. The batch index is the step t (the trainer does not tell algorithms the
//! epoch length): with an odd number of batches per epoch the original uses G_B twice at epoch
//! boundaries, this rotation never does. The original starts agents from different random
//! models: run with `identical_init = false` for that (the trainer's default shares one).

use super::options::MatchaMode;
use super::{matcha_flag_seed, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper, Step};
use super::TopologyNeed;
use crate::backend::Backend;
use crate::comm::Gossip;
use crate::error::{Error, Result};
use crate::graph::{Matcha as Schedule, MatchaGraph};
use crate::sparse::Csr;

/// AL-DSGD.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["aldsgd", "al-dsgd", "lldsgd"],
    doc: "AL-DSGD: D-PSGD (FixedProcessor) or MATCHA core rotating between MATCHA graphs 0 and 1 \
          (8 agents; the configured topology is not used), pulled towards the lowest-loss and \
          highest-degree neighbours",
    topology: TopologyNeed::Static,
    options: &[
        "aldsgd-c1",
        "aldsgd-c2",
        "aldsgd-p1",
        "aldsgd-p2",
        "aldsgd-pull-every",
        "aldsgd-core",
        "matcha-budget",
    ],
    build,
};

/// The communicator step t uses (0: G_A, 1: G_B) and that communicator's flag counter: G_B at
/// even batch indices, G_A at odd; each counter counts its communicator's earlier uses.
pub fn aldsgd_round(t: u64) -> (usize, u64) {
    (usize::from(t.is_multiple_of(2)), t / 2)
}

/// The seeds of the two communicators' flag streams (MATCHA core).
pub fn aldsgd_flag_seeds(seed: u64) -> [u64; 2] {
    let s = matcha_flag_seed(seed);
    [s ^ 0xA, s ^ 0xB]
}

/// The two communicators' schedules: graph 0 (G_A) and graph 1 (G_B), FixedProcessor (α_fix)
/// or MATCHA under `--matcha-budget`.
pub fn aldsgd_schedules(s: &AlgoSetup) -> Result<[Schedule; 2]> {
    if s.agents != 8 {
        return Err(Error::param(
            "agents",
            format!(
                "AL-DSGD runs on MATCHA graphs 0 and 1, which have 8 nodes, not {}",
                s.agents
            ),
        ));
    }
    let make = |which: MatchaGraph| -> Result<Schedule> {
        let (_, m) = which.build()?;
        let schedule = match s.options.aldsgd_core {
            MatchaMode::FixedProcessor => Schedule::fixed_processor(8, m),
            MatchaMode::Random => Schedule::new(8, m, s.options.matcha_budget),
        };
        schedule.map_err(|e| Error::param("aldsgd-core", e.to_string()))
    };
    Ok([make(MatchaGraph::Graph0)?, make(MatchaGraph::Graph1)?])
}

/// The collapsed pull weights (A, w_B, w_D); they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PullWeights {
    /// Weight of the mixed model x̄.
    pub a: f64,
    /// Weight of the lowest-loss candidate's sent model.
    pub w_b: f64,
    /// Weight of the highest-degree candidate's sent model.
    pub w_d: f64,
}

impl PullWeights {
    /// From c1, c2, p1, p2 (§5.16 step 8).
    pub fn new(c1: f64, c2: f64, p1: f64, p2: f64) -> Self {
        let keep = 1.0 - p1 - p2;
        PullWeights {
            a: keep * (1.0 - c1 - c2),
            w_b: keep * c1 + p1,
            w_d: keep * c2 + p2,
        }
    }
}

/// The step's matrix over the sent models x½: row i is x̄_i, or on pull iterations with d_i ≥ 1
/// A·x̄_i + w_B·e_B + w_D·e_D (B = argmin loss, D = argmax active degree over [i, partners…],
/// ties to the earliest). Rows sorted by column.
pub fn aldsgd_matrix(
    schedule: &Schedule,
    flags: &[bool],
    losses: &[f64],
    pull: bool,
    w: PullWeights,
) -> Csr {
    let n = schedule.n();
    let alpha = schedule.alpha();
    let partners: Vec<Vec<usize>> = (0..n).map(|i| schedule.active_partners(flags, i)).collect();
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| {
            let p = &partners[i];
            let mut row: Vec<(usize, f64)> = p.iter().map(|&k| (k, alpha)).collect();
            row.push((i, 1.0 - p.len() as f64 * alpha));
            if pull && !p.is_empty() {
                let cands: Vec<usize> = std::iter::once(i).chain(p.iter().copied()).collect();
                let mut best = cands[0];
                let mut top = cands[0];
                for &k in &cands[1..] {
                    if losses[k] < losses[best] {
                        best = k;
                    }
                    if partners[k].len() > partners[top].len() {
                        top = k;
                    }
                }
                for e in row.iter_mut() {
                    e.1 *= w.a;
                }
                for (k, wk) in [(best, w.w_b), (top, w.w_d)] {
                    if let Some(e) = row.iter_mut().find(|e| e.0 == k) {
                        e.1 += wk;
                    }
                }
            }
            row.sort_by_key(|&(c, _)| c);
            row
        })
        .collect();
    Csr::from_rows(n, &rows)
}

/// AL-DSGD state.
pub struct AlDsgd {
    buf: AgentBuffers,
    schedules: [Schedule; 2],
    seeds: [u64; 2],
    /// One channel per communicator, each sized for all its matchings active.
    w: [Gossip; 2],
    weights: PullWeights,
    pull_every: u64,
    hyper: LocalHyper,
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    let schedules = aldsgd_schedules(s)?;
    let channel = |be: &mut dyn Backend, sc: &Schedule| -> Result<Gossip> {
        buf.gossip_channel(be, &sc.mixing(&vec![true; sc.matchings().len()])?)
    };
    let w = [channel(be, &schedules[0])?, channel(be, &schedules[1])?];
    let o = s.options;
    Ok(Box::new(AlDsgd {
        weights: PullWeights::new(o.aldsgd_c1, o.aldsgd_c2, o.aldsgd_p1, o.aldsgd_p2),
        pull_every: o.aldsgd_pull_every,
        seeds: aldsgd_flag_seeds(s.seed),
        schedules,
        w,
        buf,
        hyper: s.hyper,
    }))
}

impl AlDsgd {
    /// The flags of communicator `c` at its counter value.
    fn flags(&self, c: usize, counter: u64) -> Vec<bool> {
        self.schedules[c].flags(self.seeds[c], counter)
    }
}

impl Algo for AlDsgd {
    fn step(&mut self, be: &mut dyn Backend, mut s: Step<'_>) -> Result<()> {
        let (n, local) = (self.buf.all_agents(), self.buf.agents);
        self.buf.ledger.clear();
        // 1–2. Gradients (the minibatch losses) and x½ = LocalStep(x).
        s.gradients(be, &self.buf)?;
        self.buf.record_local_step(be, s.lr, self.hyper)?;
        // 3–4. Rotation and that communicator's next flags.
        let (c, counter) = aldsgd_round(s.t);
        let flags = self.flags(c, counter);
        if !flags.iter().any(|&f| f) {
            return Ok(());
        }
        let pull = s.t.is_multiple_of(self.pull_every);
        // The one readback: the current minibatch losses (equal when there are none).
        let losses = match (pull, s.obj.loss_stats()) {
            (true, Some((stats, _))) => self.buf.gather_agents(be.read_f32(stats)?[..local].to_vec()),
            _ => vec![0.0; n],
        };
        // 5–8. One mix with the collapsed matrix; 4d bytes per active partner (the exchange
        // with the partners, whatever the weights), plus loss and degree on pull iterations.
        let sc = &self.schedules[c];
        let m = aldsgd_matrix(sc, &flags, &losses, pull, self.weights);
        self.w[c].write_dropped(be, &sc.mixing(&flags)?, &m)?;
        let b = &mut self.buf;
        b.gossip(be, &self.w[c])?;
        if pull {
            let scalars: Vec<u64> = b
                .agent_range()
                .map(|i| 8 * sc.active_partners(&flags, i).len() as u64)
                .collect();
            b.ledger.charge(&scalars);
        }
        Ok(())
    }

    /// One round of G_B with its most recently written matrix (all matchings before the first
    /// step).
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.w[1])
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }

    fn notes(&self) -> Vec<String> {
        let w = self.weights;
        vec![format!(
            "AL-DSGD ({:?} core, α = {:.5}): x ← {:.2}·x̄ + {:.2}·x½_B + {:.2}·x½_D; \
             one loss readback per pull step",
            self.schedules[0].mode(),
            self.schedules[0].alpha(),
            w.a,
            w.w_b,
            w.w_d
        )]
    }
}
