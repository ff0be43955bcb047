//! The training algorithms, written once against [`Backend`]: D-PSGD (adapt-then-combine),
//! DSGDm-N (the same with local momentum) and the all-reduce baseline (ALGORITHMS.md §5.1, 5.2,
//! 5.13). One step records gather → forward → loss → backward → local step → mix and submits
//! once; mixing reads the state of the start of the round from one buffer and writes the other.

use crate::backend::{Backend, Buf, BufKind, CsrBufs, Gather, LocalStep, Mix};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Mlp;
use crate::pass::{Minibatch, Pass};
use crate::sparse::Csr;
use std::fmt;
use std::str::FromStr;

/// The implemented algorithm names, for help texts and errors.
pub const ALGORITHM_NAMES: &str = "dsgd, allreduce";

/// Algorithms of ALGORITHMS.md that are specified but not implemented yet.
pub const PLANNED_ALGORITHMS: &[&str] = &[
    "qgm",
    "qg-adam",
    "relaysgd",
    "relaysgd-grad",
    "d2",
    "gt",
    "sgp",
    "slowmo",
    "ngm",
    "compngm",
    "cga",
    "matcha",
    "aldsgd",
];

/// A training algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// D-PSGD, adapt-then-combine; with momentum β > 0 it is DSGDm-N (local momentum).
    #[default]
    Dsgd,
    /// Local step, then the exact average of all agents (complete-graph mixing 1/n).
    AllReduce,
}

impl Algorithm {
    /// The canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Dsgd => "dsgd",
            Algorithm::AllReduce => "allreduce",
        }
    }

    /// Whether the algorithm gossips over the configured topology.
    pub fn uses_topology(&self) -> bool {
        matches!(self, Algorithm::Dsgd)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        match t.as_str() {
            "dsgd" | "d-psgd" | "dpsgd" | "dsgdm" | "dsgdm-n" => Ok(Algorithm::Dsgd),
            "allreduce" | "all-reduce" => Ok(Algorithm::AllReduce),
            other if PLANNED_ALGORITHMS.contains(&other) => Err(Error::param(
                "algo",
                format!("'{s}' is not implemented yet; implemented: {ALGORITHM_NAMES}"),
            )),
            _ => Err(Error::param(
                "algo",
                format!("unknown algorithm '{s}'; accepted: {ALGORITHM_NAMES}"),
            )),
        }
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Local optimizer hyperparameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalHyper {
    /// Momentum β (0: plain SGD).
    pub momentum: f32,
    /// Nesterov (true) or heavy ball (false).
    pub nesterov: bool,
    /// Weight decay λ, folded into the gradient before momentum.
    pub weight_decay: f32,
}

/// A dataset resident on a backend.
#[derive(Clone, Copy, Debug)]
pub struct DeviceData {
    /// Feature bytes, `n × dim`.
    pub data: Buf,
    /// Labels.
    pub labels: Buf,
    /// Number of samples.
    pub n: usize,
    /// Features per sample.
    pub dim: usize,
    /// Normalisation mean.
    pub mean: f32,
    /// Normalisation std.
    pub std: f32,
}

impl DeviceData {
    /// Uploads a dataset.
    pub fn upload(be: &mut dyn Backend, ds: &Dataset, label: &str) -> Result<Self> {
        let data = be.upload_u8(ds.features(), &format!("{label}.data"))?;
        let labels = be.alloc(BufKind::U32, ds.len(), &format!("{label}.labels"))?;
        be.write_u32(labels, 0, ds.labels())?;
        Ok(DeviceData {
            data,
            labels,
            n: ds.len(),
            dim: ds.dim(),
            mean: ds.mean(),
            std: ds.std(),
        })
    }

    /// Records a gather of `rows` rows (sample indices already in `mb.index`) into `mb`.
    pub fn record_gather(&self, be: &mut dyn Backend, mb: &Minibatch, rows: usize) -> Result<()> {
        be.gather(&Gather {
            data: self.data,
            labels: self.labels,
            index: mb.index,
            rows,
            dim: self.dim,
            mean: self.mean,
            std: self.std,
            x: mb.x,
            y: mb.y,
        })
    }
}

/// The complete-graph averaging matrix: every entry 1/n.
pub fn averaging_matrix(n: usize) -> Csr {
    let w = 1.0 / n as f64;
    let rows: Vec<Vec<(usize, f64)>> = (0..n).map(|_| (0..n).map(|j| (j, w)).collect()).collect();
    Csr::from_rows(n, &rows)
}

/// Bytes agent i sends per gossip round with matrix `w`: 4·d per distinct receiver r ≠ i with
/// `w_ri ≠ 0` (the receiver's row reads x_i); self-messages are free.
pub fn gossip_bytes_per_agent(w: &Csr, d: usize) -> Vec<u64> {
    let mut out = vec![0u64; w.n_cols];
    for r in 0..w.n_rows() {
        for (c, v) in w.row(r) {
            if c != r && v != 0.0 {
                out[c] += 4 * d as u64;
            }
        }
    }
    out
}

/// The state of a run: parameters (double-buffered), gradients, local momentum, mixing matrix.
pub struct AlgoState {
    /// The algorithm.
    pub algo: Algorithm,
    /// Current parameters, agent-major slabs.
    pub params: Buf,
    /// The other half of the double buffer (mix output).
    pub spare: Buf,
    /// Gradient slabs, one per agent.
    pub grads: Buf,
    /// Local momentum (never communicated).
    pub momentum: Buf,
    /// The mixing matrix resident on the backend.
    pub w: CsrBufs,
    /// The mixing matrix on the host.
    pub w_host: Csr,
    /// Agents.
    pub agents: usize,
    /// Floats per slab.
    pub stride: usize,
    /// Trainable scalars per agent.
    pub d: usize,
    /// Bytes each agent sends per step.
    pub bytes_per_step: Vec<u64>,
}

impl AlgoState {
    /// Allocates the state and uploads the initial parameters (`agents × stride` floats) and the
    /// gossip matrix (ignored by all-reduce, which averages exactly).
    pub fn new(
        be: &mut dyn Backend,
        algo: Algorithm,
        gossip: Csr,
        model: &Mlp,
        agents: usize,
        init: &[f32],
    ) -> Result<Self> {
        let stride = model.stride();
        let len = agents * stride;
        if init.len() != len {
            return Err(Error::param(
                "init",
                format!("{} floats for {agents} slabs of {stride}", init.len()),
            ));
        }
        let w_host = match algo {
            Algorithm::Dsgd => gossip,
            Algorithm::AllReduce => averaging_matrix(agents),
        };
        if w_host.n_rows() != agents || w_host.n_cols != agents {
            return Err(Error::param(
                "topology",
                format!(
                    "mixing matrix is {}×{} but there are {agents} agents",
                    w_host.n_rows(),
                    w_host.n_cols
                ),
            ));
        }
        let d = model.n_params();
        let bytes_per_step = match algo {
            Algorithm::Dsgd => gossip_bytes_per_agent(&w_host, d),
            Algorithm::AllReduce if agents > 1 => vec![4 * d as u64; agents],
            Algorithm::AllReduce => vec![0; agents],
        };
        let params = be.alloc(BufKind::F32, len, "params")?;
        be.write_f32(params, 0, init)?;
        Ok(AlgoState {
            algo,
            params,
            spare: be.alloc(BufKind::F32, len, "params.next")?,
            grads: be.alloc(BufKind::F32, len, "grads")?,
            momentum: be.alloc(BufKind::F32, len, "momentum")?,
            w: be.upload_csr(&w_host, "W")?,
            w_host,
            agents,
            stride,
            d,
            bytes_per_step,
        })
    }

    /// Records one full step and submits it once: minibatch write, gather, forward, loss,
    /// backward, local step, mix (double-buffered), flush. `indices` holds `agents × batch`
    /// sample indices.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        be: &mut dyn Backend,
        data: &DeviceData,
        mb: &Minibatch,
        pass: &Pass,
        indices: &[u32],
        lr: f32,
        hyper: LocalHyper,
    ) -> Result<()> {
        be.write_u32(mb.index, 0, indices)?;
        data.record_gather(be, mb, indices.len())?;
        pass.record_forward(be, self.params, mb)?;
        pass.record_backward(be, self.params, mb, self.grads)?;
        be.local_step(&LocalStep {
            params: self.params,
            grads: self.grads,
            momentum_buf: self.momentum,
            len: self.agents * self.stride,
            lr,
            momentum: hyper.momentum,
            nesterov: hyper.nesterov,
            weight_decay: hyper.weight_decay,
        })?;
        self.record_mix(be)?;
        be.flush()
    }

    /// Records `x ← W x`: reads the current buffer, writes the spare one, then swaps them.
    pub fn record_mix(&mut self, be: &mut dyn Backend) -> Result<()> {
        be.mix(&Mix {
            csr: self.w,
            input: self.params,
            in_offset: 0,
            in_stride: self.stride,
            output: self.spare,
            out_offset: 0,
            out_stride: self.stride,
            len: self.stride,
        })?;
        std::mem::swap(&mut self.params, &mut self.spare);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_planned_ones_say_not_implemented() {
        assert_eq!("dsgd".parse::<Algorithm>().unwrap(), Algorithm::Dsgd);
        assert_eq!(
            "AllReduce".parse::<Algorithm>().unwrap(),
            Algorithm::AllReduce
        );
        for p in PLANNED_ALGORITHMS {
            let e = p.parse::<Algorithm>().unwrap_err().to_string();
            assert!(e.contains("not implemented yet"), "{e}");
        }
        let e = "sgdx".parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.contains("accepted: dsgd, allreduce"), "{e}");
    }

    #[test]
    fn byte_ledger_counts_neighbours_not_self() {
        let g = crate::graph::Graph::ring(5).unwrap();
        let w = crate::graph::metropolis_hastings(&g);
        assert_eq!(gossip_bytes_per_agent(&w, 10), vec![80; 5]);
        assert_eq!(gossip_bytes_per_agent(&Csr::identity(3), 10), vec![0; 3]);
        let a = averaging_matrix(4);
        assert_eq!(gossip_bytes_per_agent(&a, 1), vec![12; 4]);
    }
}
