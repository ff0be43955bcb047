//! The decentralized algorithms (ALGORITHMS.md §5), one file each, written once against
//! [`Backend`]. An algorithm records one iteration at a time — gradients from an [`Objective`],
//! local steps, mixing — and never reads back; the caller submits each iteration with one flush.

mod allreduce;
mod buffers;
mod d2;
mod dsgd;
mod gt;
mod options;
mod qg_adam;
mod qgm;
mod relay;
mod sgp;
mod slowmo;

pub use crate::objective::{DeviceData, MlpObjective, Objective, OneShot, Quadratics};
pub use allreduce::AllReduce;
pub use buffers::{record_mix_into, AgentBuffers, LocalHyper};
pub use d2::{check_d2_spectrum, D2, D2_LAMBDA_MIN_BOUND};
pub use dsgd::Dsgd;
pub use gt::Gt;
pub use options::{AlgoOptions, DsgdOrder, RelayNormalisation};
pub use qg_adam::QgAdam;
pub use qgm::{Qgm, QGM_MIN_LR};
pub use relay::{RelaySgd, RelayTree, RelayVariant};
pub use sgp::Sgp;
pub use slowmo::{SlowMo, SlowMoHyper, SLOWMO_MIN_LR};

use crate::backend::{Backend, Buf};
use crate::error::{Error, Result};
use crate::graph::{MixingRule, Topology};
use crate::sparse::Csr;
use std::fmt;
use std::str::FromStr;

/// One algorithm's state on a backend.
pub trait Algo {
    /// The current parameters x (agent-major slabs).
    fn params(&self) -> Buf;
    /// Records iteration t with learning rate `lr` (no flush).
    fn record_step(
        &mut self,
        be: &mut dyn Backend,
        obj: &mut dyn Objective,
        t: u64,
        lr: f64,
    ) -> Result<()>;
    /// Bytes each agent sent during the last recorded iteration.
    fn bytes_sent(&self) -> &[u64];
    /// Named state buffers that make up a checkpoint (parameters first).
    fn state(&self) -> Vec<(&'static str, Buf)>;
    /// Records one communication round alone, without a local step (tests and diagnostics).
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()>;
    /// Lines the user should see about how this run was set up (e.g. a learning-rate factor).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Host-side state the next steps depend on beyond `state()`, t and the seed (JSON; floats,
    /// if any, as bit patterns). `Null` when there is none.
    fn host_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what [`Algo::host_state`] returned; anything but `Null` is an error by default.
    fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        if v.is_null() {
            Ok(())
        } else {
            Err(Error::param(
                "checkpoint",
                "it holds host-side algorithm state this algorithm does not keep",
            ))
        }
    }
}

/// The implemented algorithm names, for help texts and errors.
pub const ALGORITHM_NAMES: &str =
    "dsgd, allreduce, qgm, qg-adam, d2, gt, sgp, slowmo, relaysgd, relaysgd-grad";

/// Algorithms of ALGORITHMS.md that are specified but not implemented yet.
pub const PLANNED_ALGORITHMS: &[&str] = &["ngm", "compngm", "cga", "matcha", "aldsgd"];

/// An algorithm name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// D-PSGD (adapt-then-combine, or combine-then-adapt with `dsgd_order`); with momentum
    /// β > 0 it is DSGDm-N (local momentum). Static graphs or the one-peer exponential graph.
    #[default]
    Dsgd,
    /// Local step, then the exact average of all agents.
    AllReduce,
    /// QGM: quasi-global momentum on D-PSGD (QG-DSGDm-N, §5.3).
    Qgm,
    /// QG-Adam v0 (§5.4): Adam moments driven by the normalised realised model change.
    QgAdam,
    /// D², form B (§5.10); needs λ_min(W) > −1/3.
    D2,
    /// Gradient tracking, epfml/relaysgd form (§5.11): two gossip rounds.
    Gt,
    /// SGP on the time-varying one-peer exponential graph (§5.12); n a power of two.
    Sgp,
    /// DSGDm-N with a SlowMo-style outer step every τ iterations (§5.14).
    SlowMo,
    /// RelaySGD, RelaySum/Model on spanning tree(s) (§5.5).
    RelaySgd,
    /// RelaySGD/Grad, RelaySum/Grad on spanning tree(s) (§5.6).
    RelaySgdGrad,
}

/// Everything an algorithm is built from.
pub struct AlgoSetup<'a> {
    /// Agents n.
    pub agents: usize,
    /// Floats per agent slab.
    pub stride: usize,
    /// Trainable scalars per agent d.
    pub d: usize,
    /// Initial parameters, `agents × stride`.
    pub init: &'a [f32],
    /// Communication topology.
    pub topology: &'a Topology,
    /// Gossip weight rule.
    pub mixing: &'a MixingRule,
    /// Local optimizer hyperparameters.
    pub hyper: LocalHyper,
    /// Seed of random graphs and other algorithm randomness.
    pub seed: u64,
    /// Algorithm-specific options.
    pub options: &'a AlgoOptions,
}

impl Algorithm {
    /// The canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Dsgd => "dsgd",
            Algorithm::AllReduce => "allreduce",
            Algorithm::Qgm => "qgm",
            Algorithm::QgAdam => "qg-adam",
            Algorithm::D2 => "d2",
            Algorithm::Gt => "gt",
            Algorithm::Sgp => "sgp",
            Algorithm::SlowMo => "slowmo",
            Algorithm::RelaySgd => "relaysgd",
            Algorithm::RelaySgdGrad => "relaysgd-grad",
        }
    }

    /// Whether the algorithm communicates over the configured topology.
    pub fn uses_topology(&self) -> bool {
        matches!(
            self,
            Algorithm::Dsgd
                | Algorithm::Qgm
                | Algorithm::QgAdam
                | Algorithm::D2
                | Algorithm::Gt
                | Algorithm::SlowMo
                | Algorithm::RelaySgd
                | Algorithm::RelaySgdGrad
        )
    }

    /// Whether the algorithm simulates dropped messages (`--drop-prob`).
    pub fn simulates_drops(&self) -> bool {
        matches!(
            self,
            Algorithm::Sgp | Algorithm::RelaySgd | Algorithm::RelaySgdGrad
        )
    }

    /// Builds the algorithm's state on a backend.
    pub fn build(&self, be: &mut dyn Backend, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
        if s.options.drop_prob > 0.0 && !self.simulates_drops() {
            return Err(Error::param(
                "drop-prob",
                format!(
                    "{self} does not simulate dropped messages (sgp, relaysgd and relaysgd-grad do); use 0"
                ),
            ));
        }
        let buf = AgentBuffers::new(be, s.agents, s.stride, s.d, s.init)?;
        Ok(match self {
            Algorithm::Dsgd => {
                let dsgd = if *s.topology == Topology::Exponential {
                    Dsgd::exponential(be, buf, s.agents, s.hyper)?
                } else {
                    Dsgd::new(be, buf, &gossip_matrix(s)?, s.hyper)?
                };
                Box::new(dsgd.with_order(s.options.dsgd_order))
            }
            Algorithm::AllReduce => Box::new(AllReduce::new(be, buf, s.hyper)?),
            Algorithm::Qgm => {
                let o = s.options;
                let w = gossip_matrix(s)?;
                Box::new(Qgm::new(be, buf, &w, s.hyper, o.qgm_mu, o.qgm_period)?)
            }
            Algorithm::QgAdam => Box::new(QgAdam::new(
                be,
                buf,
                &gossip_matrix(s)?,
                s.hyper,
                s.options,
            )?),
            Algorithm::D2 => Box::new(D2::new(be, buf, &gossip_matrix(s)?, s.hyper)?),
            Algorithm::Gt => Box::new(Gt::new(be, buf, &gossip_matrix(s)?, s.hyper)?),
            Algorithm::Sgp => {
                let o = s.options;
                Box::new(Sgp::new(
                    be,
                    buf,
                    s.hyper,
                    o.hop_schedule,
                    o.drop_prob,
                    s.seed,
                )?)
            }
            Algorithm::SlowMo => {
                let o = s.options;
                let outer = SlowMoHyper {
                    period: o.slowmo_period,
                    beta: o.slowmo_beta,
                    lr: o.slowmo_lr,
                };
                let w = gossip_matrix(s)?;
                Box::new(SlowMo::new(be, buf, &w, s.hyper, outer, s.init)?)
            }
            Algorithm::RelaySgd => Box::new(RelaySgd::new(be, buf, s, RelayVariant::Model)?),
            Algorithm::RelaySgdGrad => Box::new(RelaySgd::new(be, buf, s, RelayVariant::Grad)?),
        })
    }
}

/// The gossip matrix of a static topology under the setup's weight rule.
pub fn gossip_matrix(s: &AlgoSetup) -> Result<Csr> {
    let g = s
        .topology
        .static_graph(s.agents, s.seed)
        .map_err(|e| Error::param("topology", e.to_string()))?;
    s.mixing
        .matrix(&g)
        .map_err(|e| Error::param("mixing", e.to_string()))
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
            "qgm" | "qg-dsgdm-n" | "quasi-global-momentum" => Ok(Algorithm::Qgm),
            "qg-adam" | "qgadam" => Ok(Algorithm::QgAdam),
            "d2" | "d-2" => Ok(Algorithm::D2),
            "gt" | "gradient-tracking" => Ok(Algorithm::Gt),
            "sgp" | "push-sum" => Ok(Algorithm::Sgp),
            "slowmo" | "slow-mo" => Ok(Algorithm::SlowMo),
            "relaysgd" | "relay-sgd" | "relaysum" => Ok(Algorithm::RelaySgd),
            "relaysgd-grad" | "relay-sgd-grad" | "relaysum-grad" => Ok(Algorithm::RelaySgdGrad),
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
        let e = "ngm".parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.contains("not implemented"), "{e}");
        let e = "sgd9".parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.contains("accepted: dsgd, allreduce"), "{e}");
    }

    #[test]
    fn gossip_bytes_count_receivers_not_self() {
        let w = Csr::from_rows(
            3,
            &[
                vec![(0, 0.5), (1, 0.5)],
                vec![(1, 1.0)],
                vec![(1, 0.5), (2, 0.5)],
            ],
        );
        assert_eq!(gossip_bytes_per_agent(&w, 10), vec![0, 80, 0]);
    }

    #[test]
    fn drops_are_refused_where_they_are_not_simulated() {
        let mut be = crate::backend::reference::ReferenceBackend::new();
        let options = AlgoOptions {
            drop_prob: 0.1,
            ..Default::default()
        };
        let init = vec![0.0f32; 4 * 2];
        let setup = AlgoSetup {
            agents: 4,
            stride: 2,
            d: 2,
            init: &init,
            topology: &Topology::Ring,
            mixing: &MixingRule::MetropolisHastings,
            hyper: LocalHyper::default(),
            seed: 0,
            options: &options,
        };
        for a in [Algorithm::Dsgd, Algorithm::AllReduce, Algorithm::D2] {
            let e = a.build(&mut be, &setup).err().expect("refused").to_string();
            assert!(e.contains("drop-prob"), "{a}: {e}");
        }
        assert!(Algorithm::RelaySgd.build(&mut be, &setup).is_ok());
    }
}
