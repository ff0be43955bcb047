//! NGM — Neighborhood Gradient Mean (ALGORITHMS.md §5.7), in the exact order of the original:
//!
//! 1. round 1: x_i^t to every neighbour; 2. damped gossip x^{t+½} = x + γ(Wx − x) before the
//!    forward pass; 3. self-gradient g_i = ∇F_i(x_i^{t+½}); 4. cross-gradients
//!    C_{i,j} = ∇F_i(x_j^t) at the *pre-gossip* neighbour models on agent i's own minibatch;
//!    5. round 2 (only if α > 0): C_{i,j} to j; 6. ĝ_i = π·[g_i + Σ_j (α·C_{j,i} + (1−α)·C_{i,j})];
//!    7. weight decay at x^{t+½}; 8. momentum; 9. x^{t+1} = x^{t+½} − η·u (7–9 are one local step).
//!
//! **Cross-gradients are jobs.** A buffer of 2n slabs holds the post-gossip models (slabs
//! 0..n) and the pre-gossip ones (slabs n..2n); the job list is (i, i) for every agent's
//! self-gradient, then (n + j, i) for every directed edge (C_{i,j}: model j, data i), all
//! evaluated by one [`Objective::record_job_gradients`] (one batched forward/backward). One
//! sparse mix with the π weights then combines the job slabs into the agents' gradient slabs:
//! row i reads its own job, its jobs C_{i,j} (weight π(1−α)) and the jobs C_{j,i} its
//! neighbours computed at its model (weight πα; round 2). The dispatches per step do not depend
//! on n or the degrees. Memory: two model slabs and 1 + deg_i gradient slabs per agent (plus,
//! for an MLP, the activations of 1 + deg_i jobs) on top of the common buffers.

use super::{gossip_matrix, AgentBuffers, Algo, AlgoSetup, AlgoSpec, LocalHyper, Step};
use super::{Objective, TopologyNeed};
use crate::algo::options::{CgaPipeline, NgmPi};
use crate::backend::{Backend, Buf, BufKind, CopyRange, CsrBufs, Mix};
use crate::comm::Gossip;
use crate::dist::{ghost_items, Exchange, Shard};
use crate::error::{Error, Result};
use crate::objective::{JobGradients, JobList};
use crate::sparse::Csr;
use super::cga::CgaStage;
use super::compngm::Compression;

/// NGM (mv, dv and blends).
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["ngm", "ngc"],
    doc: "Neighborhood Gradient Mean: damped gossip, then self- and cross-gradients combined \
          (--ngm-alpha 0: NGM_mv, one round; 1: NGM_dv, two rounds)",
    topology: TopologyNeed::Static,
    options: &["ngm-alpha", "ngm-gamma", "ngm-pi"],
    build,
};

/// NGM state.
pub struct Ngm {
    buf: AgentBuffers,
    /// Damped gossip W_γ = (1 − γ)I + γW (round 1).
    damped: Gossip,
    /// 2n slabs: post-gossip models x^{t+½} (0..n), then pre-gossip x^t (n..2n).
    models: Buf,
    /// One gradient slab per job.
    job_grads: Buf,
    /// The job list (i, i), then (n + j, i) per directed edge.
    jobs: Vec<(usize, usize)>,
    /// The list as registered with the objective (on the first step).
    registered: Option<JobList>,
    /// Rows: agents; columns: jobs; the π weights of step 6.
    combine: CsrBufs,
    /// Round 2's bytes per agent (empty when α = 0).
    round2: Vec<u64>,
    hyper: LocalHyper,
    /// CompNGM's scaled-sign compression of every job slab, between steps 4 and 6.
    compress: Option<Compression>,
    /// CGA: the per-tensor QP replaces step 6's fixed π combination.
    cga: Option<CgaStage>,
    /// CGA's original pipeline: gradients at x^t, then gossip with the π weights (`damped`
    /// holds that matrix), then the step.
    original: bool,
    /// Sharded over ranks: round 2 refreshes the jobs other ranks computed at this rank's
    /// models (see [`shard_jobs`]).
    sharded: Option<(Shard, Exchange, usize)>,
}

/// This rank's part of NGM's jobs in a run sharded over ranks: the jobs of its data agents (in
/// the global order, so its self-gradients come first) with their model slabs renumbered into
/// `[x^{t+½} own | x^t own | x^t ghosts]` (the ghosts those of the damped gossip, `model_ghosts`),
/// the combining rows of its agents over `[own jobs | ghost jobs]` (entry order kept), round 2's
/// exchange of the ghost jobs, and the number of own jobs.
fn shard_jobs(
    sh: &Shard,
    jobs: &[(usize, usize)],
    combine: &Csr,
    model_ghosts: &[usize],
) -> (Vec<(usize, usize)>, Csr, Exchange, usize) {
    let (p, n, me) = (sh.placement(), sh.agents(), sh.rank());
    let (first, local) = (sh.first(), sh.local());
    // A job runs where its data agent lives; pos: its index among that rank's jobs.
    let owner = |g: usize| p.owner(jobs[g].1);
    let mut count = vec![0usize; p.ranks()];
    let pos: Vec<usize> = (0..jobs.len())
        .map(|g| {
            let r = owner(g);
            count[r] += 1;
            count[r] - 1
        })
        .collect();
    let needs = |q: usize| -> Vec<usize> {
        p.range(q)
            .flat_map(|i| combine.row(i).map(|(g, _)| g))
            .filter(|&g| owner(g) != q)
            .collect()
    };
    let (exchange, ghosts) = ghost_items(p.ranks(), me, &needs, &owner, &|g| pos[g]);
    let model = |m: usize| -> usize {
        if m < n {
            return m - first;
        }
        let j = m - n;
        if p.owner(j) == me {
            local + j - first
        } else {
            let k = model_ghosts.iter().position(|&x| x == j);
            2 * local + k.expect("every neighbour is a ghost of the damped gossip")
        }
    };
    let mine: Vec<(usize, usize)> = jobs
        .iter()
        .filter(|j| p.owner(j.1) == me)
        .map(|&(m, i)| (model(m), i - first))
        .collect();
    let own = mine.len();
    let col = |g: usize| -> usize {
        if owner(g) == me {
            pos[g]
        } else {
            let k = ghosts.binary_search_by_key(&(owner(g), g), |&x| (owner(x), x));
            own + k.expect("every ghost job is listed")
        }
    };
    let rows: Vec<Vec<(usize, f64)>> = sh
        .range()
        .map(|i| combine.row(i).map(|(g, v)| (col(g), v)).collect())
        .collect();
    let local_combine = Csr::from_rows(own + ghosts.len(), &rows);
    (mine, local_combine, exchange, own)
}

/// W_γ = (1 − γ)I + γW (γ = 1: W itself, entry for entry).
fn damped_matrix(w: &Csr, gamma: f64) -> Csr {
    let rows: Vec<Vec<(usize, f64)>> = (0..w.n_rows())
        .map(|i| {
            let mut row: Vec<(usize, f64)> = w
                .row(i)
                .map(|(c, v)| {
                    if c == i {
                        (c, (1.0 - gamma) + gamma * v)
                    } else {
                        (c, gamma * v)
                    }
                })
                .collect();
            if !row.iter().any(|&(c, _)| c == i) {
                row.push((i, 1.0 - gamma));
            }
            row
        })
        .collect();
    Csr::from_rows(w.n_cols, &rows)
}

/// The job list, the combining matrix (agents × jobs) and round 2's bytes per agent, from W's
/// off-diagonal pattern (the neighbours) and the π rule.
pub(crate) fn ngm_jobs(
    w: &Csr,
    alpha: f64,
    pi: NgmPi,
    d: usize,
) -> (Vec<(usize, usize)>, Csr, Vec<u64>) {
    let n = w.n_rows();
    let neighbours: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| w.row(i).filter(|&(c, v)| c != i && v != 0.0).collect())
        .collect();
    let mut jobs: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
    // edge[i][k]: the job C_{i,j} of agent i's k-th neighbour j.
    let mut edge = Vec::with_capacity(n);
    for (i, nb) in neighbours.iter().enumerate() {
        let mut e = Vec::with_capacity(nb.len());
        for &(j, _) in nb {
            e.push(jobs.len());
            jobs.push((n + j, i));
        }
        edge.push(e);
    }
    let job_of = |i: usize, j: usize| -> usize {
        let k = neighbours[i].iter().position(|&(c, _)| c == j);
        edge[i][k.expect("W is symmetric in its pattern")]
    };
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| {
            let self_w = match pi {
                NgmPi::Uniform => 1.0 / (neighbours[i].len() + 1) as f64,
                NgmPi::Weights => w.row(i).find(|&(c, _)| c == i).map_or(0.0, |e| e.1),
            };
            let mut row = vec![(i, self_w)];
            for (k, &(j, wij)) in neighbours[i].iter().enumerate() {
                let p = match pi {
                    NgmPi::Uniform => self_w,
                    NgmPi::Weights => wij,
                };
                if alpha < 1.0 {
                    row.push((edge[i][k], p * (1.0 - alpha)));
                }
                if alpha > 0.0 {
                    // C_{j,i} = ∇F_j(x_i^t): neighbour j's job at agent i's model.
                    row.push((job_of(j, i), p * alpha));
                }
            }
            row
        })
        .collect();
    let combine = Csr::from_rows(jobs.len(), &rows);
    let round2 = if alpha > 0.0 {
        neighbours.iter().map(|nb| 4 * d as u64 * nb.len() as u64).collect()
    } else {
        Vec::new()
    };
    (jobs, combine, round2)
}

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Ngm::new(be, buf, s, s.options.ngm_alpha, false)?))
}

impl Ngm {
    /// NGM with blend α; `compress`: CompNGM (§5.8), every job slab compressed with error
    /// feedback before the combination, round 2 charged as the compression says.
    pub(crate) fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        s: &AlgoSetup,
        alpha: f64,
        compress: bool,
    ) -> Result<Self> {
        let o = s.options;
    let w = gossip_matrix(s)?;
    for i in 0..w.n_rows() {
        for (j, v) in w.row(i) {
            if j != i && v != 0.0 && !w.row(j).any(|(c, u)| c == i && u != 0.0) {
                return Err(Error::param(
                    "mixing",
                    format!("NGM needs a symmetric neighbour pattern; W_{i}{j} ≠ 0 but W_{j}{i} = 0"),
                ));
            }
        }
    }
    let (jobs, combine, mut round2) = ngm_jobs(&w, alpha, o.ngm_pi, buf.d);
    let compress = if compress {
        let c = Compression::new(be, s, jobs.len())?;
        // Round 2 sends every cross-gradient compressed (4d bytes per neighbour in NGM).
        for r in round2.iter_mut() {
            *r = *r / (4 * buf.d as u64) * c.bytes_per_slab(o.comp_charge);
        }
        Some(c)
    } else {
        None
    };
    let w_gamma = damped_matrix(&w, o.ngm_gamma);
    let (damped, jobs, combine, models_len, sharded) = match &buf.shard {
        None => {
            let damped = Gossip::new(be, &w_gamma, buf.stride, buf.d, "W_gamma")?;
            (damped, jobs, combine, 2 * buf.len(), None)
        }
        Some(sh) => {
            let damped = Gossip::sharded(be, &w_gamma, buf.stride, buf.d, "W_gamma", sh)?;
            let (ghosts, ext_len) = match (damped.ghosts(), damped.halo_input()) {
                (Some(g), Some((_, len))) => (g.to_vec(), len),
                _ => return Err(Error::op("ngm", "a sharded gossip channel has a halo")),
            };
            let (mine, local, exchange, own) = shard_jobs(sh, &jobs, &combine, &ghosts);
            if !round2.is_empty() {
                round2 = round2[sh.range()].to_vec();
            }
            (damped, mine, local, buf.len() + ext_len, Some((sh.clone(), exchange, own)))
        }
    };
    Ok(Ngm {
        damped,
        models: be.alloc(BufKind::F32, models_len, "ngm.models")?,
        job_grads: be.alloc(BufKind::F32, combine.n_cols * buf.stride, "ngm.job_grads")?,
        combine: be.upload_csr(&combine, "ngm.pi")?,
        jobs,
        registered: None,
        round2,
        sharded,
        buf,
        hyper: s.hyper,
        compress,
        cga: None,
        original: false,
    })
    }

    /// CGA (§5.9) on the NGM pipeline: α = 1, the QP combination instead of step 6;
    /// `compress`: CompCGA (the job slabs compressed as in CompNGM before the QP).
    pub(crate) fn new_cga(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        s: &AlgoSetup,
        compress: bool,
    ) -> Result<Self> {
        let mut ngm = Ngm::new(be, buf, s, 1.0, compress)?;
        let w = gossip_matrix(s)?;
        let stage = CgaStage::new(be, s, &w, &ngm.jobs, s.options.ngm_pi)?;
        if s.options.cga_pipeline == CgaPipeline::Original {
            // x ← Σ_j π_ij x_j with the QP's π weights.
            ngm.damped = Gossip::new(be, &stage.pi_matrix(), ngm.buf.stride, ngm.buf.d, "W_pi")?;
            ngm.original = true;
        }
        ngm.cga = Some(stage);
        Ok(ngm)
    }

    /// The job list registered with `obj` (on the first step; the algorithm keeps one
    /// objective for its whole run).
    fn job_list(&mut self, be: &mut dyn Backend, obj: &mut dyn Objective) -> Result<JobList> {
        if let Some(l) = &self.registered {
            return Ok(l.clone());
        }
        let l = obj.prepare_jobs(be, &self.jobs)?;
        self.registered = Some(l.clone());
        Ok(l)
    }
}

impl Algo for Ngm {
    fn step(&mut self, be: &mut dyn Backend, s: Step<'_>) -> Result<()> {
        let list = self.job_list(be, s.obj)?;
        let b = &mut self.buf;
        let (len, stride) = (b.len(), b.stride);
        b.ledger.clear();
        // 1–2. Round 1 and the damped gossip: slabs n..2n keep x^t, slabs 0..n get x^{t+½}
        // (CGA's original pipeline: x^t too; its gossip follows the gradients). Sharded: the
        // gossip's input (own x^t, then the ghosts it received) follows the own x^{t+½}.
        if self.sharded.is_some() {
            self.damped.record(be, &mut b.ledger, b.params, self.models)?;
            if let Some((ext, ext_len)) = self.damped.halo_input() {
                be.copy(&CopyRange {
                    src: ext,
                    src_offset: 0,
                    dst: self.models,
                    dst_offset: len,
                    len: ext_len,
                })?;
            }
        } else {
            be.copy(&CopyRange {
                src: b.params,
                src_offset: 0,
                dst: self.models,
                dst_offset: len,
                len,
            })?;
            if self.original {
                be.copy(&CopyRange::whole(b.params, self.models, len))?;
            } else {
                self.damped.record(be, &mut b.ledger, b.params, self.models)?;
            }
        }
        // 3–4. Self-gradients at x^{t+½} and cross-gradients at x_j^t, one job list.
        s.obj.record_job_gradients(
            be,
            JobGradients {
                list: &list,
                params: self.models,
                grads: self.job_grads,
                t: s.t,
            },
        )?;
        // CompNGM: every job slab (self-gradient and sent cross-gradients) compressed in place.
        if let Some(c) = &self.compress {
            c.record(be, self.job_grads)?;
        }
        // Sharded round 2: the jobs C_{j,i} other ranks computed at this rank's models.
        if let Some((sh, exchange, own)) = &self.sharded {
            sh.refresh(be, exchange, self.job_grads, *own, stride)?;
        }
        // 5–6. Round 2 (its bytes) and ĝ = π·[g + Σ_j (α·C_{j,i} + (1−α)·C_{i,j})], or CGA's
        // per-tensor QP combination (its one readback).
        if let Some(cga) = &mut self.cga {
            cga.record(be, self.job_grads, b.grads)?;
        } else {
            be.mix(&Mix {
                csr: self.combine,
                input: self.job_grads,
                in_offset: 0,
                in_stride: stride,
                output: b.grads,
                out_offset: 0,
                out_stride: stride,
                len: stride,
            })?;
        }
        b.ledger.charge(&self.round2);
        if self.original {
            // x ← Σ_j π_ij x_j^t into slabs 0..n, then the step from there.
            self.damped.record(be, &mut b.ledger, b.params, self.models)?;
        }
        // 7–9. Weight decay at x^{t+½}, momentum, step (on slabs 0..n), then back to x.
        b.record_local_step_on(be, self.models, s.lr, self.hyper)?;
        be.copy(&CopyRange::whole(self.models, b.params, len))
    }

    /// One damped gossip round alone.
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.buf.gossip_alone(be, &self.damped)
    }

    fn buffers(&self) -> &AgentBuffers {
        &self.buf
    }

    /// CGA's previous QP solutions (the fallback), as f64 bit patterns.
    fn host_state(&self) -> Result<serde_json::Value> {
        Ok(match &self.cga {
            None => serde_json::Value::Null,
            Some(c) => {
                let bits: Vec<Vec<Vec<u64>>> = c
                    .previous
                    .iter()
                    .map(|a| a.iter().map(|t| t.iter().map(|v| v.to_bits()).collect()).collect())
                    .collect();
                serde_json::json!({ "cga_previous": bits })
            }
        })
    }

    fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        let bad = || Error::param("checkpoint", "its CGA state does not fit this run");
        match &mut self.cga {
            None if v.is_null() => Ok(()),
            None => Err(bad()),
            Some(c) => {
                let bits: Vec<Vec<Vec<u64>>> =
                    serde_json::from_value(v.get("cga_previous").cloned().ok_or_else(bad)?)
                        .map_err(|_| bad())?;
                let shape = |p: &Vec<Vec<Vec<f64>>>| -> Vec<Vec<usize>> {
                    p.iter().map(|a| a.iter().map(Vec::len).collect()).collect()
                };
                let restored: Vec<Vec<Vec<f64>>> = bits
                    .iter()
                    .map(|a| a.iter().map(|t| t.iter().map(|b| f64::from_bits(*b)).collect()).collect())
                    .collect();
                if shape(&restored) != shape(&c.previous) {
                    return Err(bad());
                }
                c.previous = restored;
                Ok(())
            }
        }
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        match &self.compress {
            Some(c) => self.buf.state_with(&[("memory", c.memory)]),
            None => self.buf.state_with(&[]),
        }
    }

    fn notes(&self) -> Vec<String> {
        let per_agent = self.jobs.len() as f64 / self.buf.agents as f64;
        let mut notes = vec![format!(
            "NGM: {} gradient jobs ({per_agent:.2} slabs per agent: 1 + mean degree), \
             2 model slabs per agent for the pre/post-gossip models",
            self.jobs.len()
        )];
        if self.compress.is_some() {
            notes.push(format!(
                "CompNGM: one error-feedback memory slab per job ({per_agent:.2} per agent)"
            ));
        }
        notes
    }
}
