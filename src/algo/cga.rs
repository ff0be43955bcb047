//! CGA — Cross-Gradient Aggregation (ALGORITHMS.md §5.9) on the NGM pipeline (the NGM paper's
//! baseline): NGM steps 1–5 with α = 1 (damped gossip, self-gradient post-gossip,
//! cross-gradients at the pre-gossip models, two rounds), then, per agent and tensor, the QP
//! v = argmin_{v_j ≥ ½} ‖a + Σ_j v_j b_j‖² with a = π·g_i and b_j = π·C_{j,i} instead of
//! NGM's fixed combination, then weight decay, momentum and the step.
//!
//! **The one readback.** The QP needs the Gram entries BBᵀ and B·a of every agent and tensor:
//! one `pair_dots` dispatch computes the dots of every (slab, slab) pair of every agent's
//! neighbourhood for every tensor, and the step reads them back (one readback per step — the
//! solve is a tiny f64 enumeration on the host, §5.9; nothing else is read). The weights then
//! go to the device as one CSR per tensor (agents × jobs) and one sparse mix per tensor applies
//! ĝ = a + Σ_j v_j b_j. Dispatches per step: NGM's, plus 1 + (tensors − 1), independent of n
//! and the degrees. A tensor whose QP has no KKT point keeps its previous v (initially ½).

use super::cga_qp::{cga_qp, CGA_MAX_ROWS, CGA_V_MIN};
use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, Ngm, TopologyNeed};
use crate::algo::options::NgmPi;
use crate::backend::{Backend, Buf, BufKind, CsrBufs, Mix, PairDots};
use crate::error::{Error, Result};
use crate::model::Tensor;
use crate::sparse::Csr;

/// CGA.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["cga"],
    doc: "Cross-Gradient Aggregation on the NGM pipeline: per-tensor QP (v ≥ 0.5) over the \
          neighbours' cross-gradients, two rounds (one Gram readback per step)",
    topology: TopologyNeed::Static,
    options: &["cga-pipeline", "ngm-gamma", "ngm-pi"],
    build,
};

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Ngm::new_cga(be, buf, s, false)?))
}

/// One agent's QP: its slabs (self job, then the jobs C_{j,i} of its neighbours) and weights.
struct Neighbourhood {
    /// Job slab of a = g_i, then of each b_j = C_{j,i}.
    slabs: Vec<usize>,
    /// π of each slab (π_self, then π_ij).
    pi: Vec<f64>,
    /// First pair of this agent in the pair list (pairs x ≤ y over `slabs`, row-major).
    first_pair: usize,
}

/// CGA's combination stage: Gram entries, host QPs, per-tensor mixes.
pub(crate) struct CgaStage {
    hoods: Vec<Neighbourhood>,
    tensors: Vec<Tensor>,
    pairs: Buf,
    tensor_table: Buf,
    n_pairs: usize,
    gram: Buf,
    /// One CSR per tensor, agents × jobs, entries in [`Neighbourhood::slabs`] order.
    mixes: Vec<CsrBufs>,
    /// The data agent of every job slab.
    data_of: Vec<usize>,
    /// The previous v of every (agent, tensor), the fallback.
    pub(crate) previous: Vec<Vec<Vec<f64>>>,
    stride: usize,
}

impl CgaStage {
    /// The stage for the job list `jobs` ((model slab, data agent); models n..2n are the
    /// pre-gossip ones) over W's neighbours.
    pub(crate) fn new(
        be: &mut dyn Backend,
        s: &AlgoSetup,
        w: &Csr,
        jobs: &[(usize, usize)],
        pi: NgmPi,
    ) -> Result<Self> {
        let n = w.n_rows();
        let job = |model: usize, data: usize| jobs.iter().position(|&j| j == (model, data));
        let mut hoods = Vec::with_capacity(n);
        let mut pairs: Vec<u32> = Vec::new();
        for i in 0..n {
            let nb: Vec<(usize, f64)> = w.row(i).filter(|&(c, v)| c != i && v != 0.0).collect();
            if nb.len() > CGA_MAX_ROWS {
                return Err(Error::param(
                    "topology",
                    format!(
                        "CGA solves its QP by enumeration: agent {i} has {} neighbours (at most {CGA_MAX_ROWS})",
                        nb.len()
                    ),
                ));
            }
            let self_pi = match pi {
                NgmPi::Uniform => 1.0 / (nb.len() + 1) as f64,
                NgmPi::Weights => w.row(i).find(|&(c, _)| c == i).map_or(0.0, |e| e.1),
            };
            let mut slabs = vec![i];
            let mut pis = vec![self_pi];
            for &(j, wij) in &nb {
                // C_{j,i} = ∇F_j(x_i^t): neighbour j's data at agent i's pre-gossip model.
                slabs.push(job(n + i, j).expect("the NGM job list has every directed edge"));
                pis.push(match pi {
                    NgmPi::Uniform => self_pi,
                    NgmPi::Weights => wij,
                });
            }
            let first_pair = pairs.len() / 2;
            for x in 0..slabs.len() {
                for y in x..slabs.len() {
                    pairs.extend([slabs[x] as u32, slabs[y] as u32]);
                }
            }
            hoods.push(Neighbourhood {
                slabs,
                pi: pis,
                first_pair,
            });
        }
        let tensors = s.tensor_table();
        let table: Vec<u32> = tensors
            .iter()
            .flat_map(|t| [t.offset as u32, t.len as u32])
            .collect();
        let n_pairs = pairs.len() / 2;
        let pattern: Vec<Vec<(usize, f64)>> = hoods
            .iter()
            .map(|h| h.slabs.iter().map(|&c| (c, 0.0)).collect())
            .collect();
        let pattern = Csr::from_rows(jobs.len(), &pattern);
        let mixes = tensors
            .iter()
            .map(|_| be.upload_csr(&pattern, "cga.weights"))
            .collect::<Result<Vec<_>>>()?;
        let pairs_buf = be.alloc(BufKind::U32, pairs.len(), "cga.pairs")?;
        be.write_u32(pairs_buf, 0, &pairs)?;
        let table_buf = be.alloc(BufKind::U32, table.len(), "cga.tensors")?;
        be.write_u32(table_buf, 0, &table)?;
        Ok(CgaStage {
            previous: hoods
                .iter()
                .map(|h| vec![vec![CGA_V_MIN; h.slabs.len() - 1]; tensors.len()])
                .collect(),
            gram: be.alloc(BufKind::F32, n_pairs * tensors.len(), "cga.gram")?,
            hoods,
            data_of: jobs.iter().map(|&(_, d)| d).collect(),
            tensors,
            pairs: pairs_buf,
            tensor_table: table_buf,
            n_pairs,
            mixes,
            stride: s.stride,
        })
    }

    /// The π weights over the agents (row i: π_self at i, π_ij at each neighbour j), for the
    /// original pipeline's gossip x ← Σ_j π_ij x_j.
    pub(crate) fn pi_matrix(&self) -> Csr {
        let n = self.hoods.len();
        let rows: Vec<Vec<(usize, f64)>> = self
            .hoods
            .iter()
            .enumerate()
            .map(|(i, h)| {
                // Slab k ≥ 1 holds C_{j,i}, job (n + i, j): its data agent is the neighbour j.
                let mut row = vec![(i, h.pi[0])];
                row.extend(h.slabs[1..].iter().zip(&h.pi[1..]).map(|(&s, &p)| (self.data_of[s], p)));
                row.sort_by_key(|e| e.0);
                row
            })
            .collect();
        Csr::from_rows(n, &rows)
    }

    /// Gram entries on the device, the QPs on the host (the one readback), then
    /// ĝ_i = a + Σ_j v_j b_j per tensor into `grads`.
    pub(crate) fn record(&mut self, be: &mut dyn Backend, job_grads: Buf, grads: Buf) -> Result<()> {
        let nt = self.tensors.len();
        be.pair_dots(&PairDots {
            x: job_grads,
            stride: self.stride,
            pairs: self.pairs,
            count: self.n_pairs,
            tensors: self.tensor_table,
            n_tensors: nt,
            out: self.gram,
        })?;
        let dots = be.read_f32(self.gram)?;
        let mut weights: Vec<Vec<f64>> = vec![Vec::new(); nt];
        for (i, h) in self.hoods.iter().enumerate() {
            let m = h.slabs.len();
            let t = m - 1;
            // Index of pair (x, y), x ≤ y, in this agent's row-major upper triangle.
            let pair = |x: usize, y: usize| {
                let (x, y) = (x.min(y), x.max(y));
                h.first_pair + x * m - x * (x + 1) / 2 + y
            };
            for (k, w) in weights.iter_mut().enumerate() {
                let dot = |x: usize, y: usize| dots[pair(x, y) * nt + k] * h.pi[x] * h.pi[y];
                let p: Vec<f64> = (0..t * t).map(|e| dot(1 + e / t, 1 + e % t)).collect();
                let ba: Vec<f64> = (0..t).map(|j| dot(1 + j, 0)).collect();
                let v = cga_qp(&p, &ba, &self.previous[i][k]).expect("sizes checked at build");
                w.push(h.pi[0]);
                w.extend(v.iter().zip(&h.pi[1..]).map(|(v, p)| v * p));
                self.previous[i][k] = v;
            }
        }
        for ((t, csr), w) in self.tensors.iter().zip(&self.mixes).zip(&weights) {
            be.write_f64(csr.weight, 0, w)?;
            be.mix(&Mix {
                csr: *csr,
                input: job_grads,
                in_offset: t.offset,
                in_stride: self.stride,
                output: grads,
                out_offset: t.offset,
                out_stride: self.stride,
                len: t.len,
            })?;
        }
        Ok(())
    }
}
