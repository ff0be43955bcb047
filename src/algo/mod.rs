//! The decentralized algorithms (ALGORITHMS.md §5), one file each, written once against
//! [`Backend`]. An algorithm records one iteration at a time — gradients from an [`Objective`],
//! local steps, communication through [`crate::comm`] — and never reads back; the caller
//! submits each iteration with one flush.
//!
//! Each file holds everything about its algorithm: a `SPEC` ([`AlgoSpec`]: names, one-line
//! doc, topology need, the options it reads, how it is built), its state and its step, written
//! in the vocabulary of [`VectorOps`]. [`REGISTRY`] lists them, one line each; [`Algorithm`] is
//! a handle to a spec that parses and serialises by name. Adding an algorithm is its file, one
//! line in `registry!`, and its README row.

mod buffers;
mod cga_qp;
mod options;
mod vector;

/// Declares the algorithm modules and the registry, one line per algorithm (its file holds
/// everything else: `SPEC`, state, step).
macro_rules! registry {
    ($($handle:ident: $module:ident),* $(,)?) => {
        $(mod $module;)*
        /// Every implemented algorithm, in the order help texts list them.
        pub const REGISTRY: &[&AlgoSpec] = &[$(&$module::SPEC),*];
        // The handles keep the spelling of the enum variants they replace.
        #[allow(non_upper_case_globals)]
        impl Algorithm {
            $(
                #[doc = concat!("The algorithm of `src/algo/", stringify!($module), ".rs`.")]
                pub const $handle: Algorithm = Algorithm(&$module::SPEC);
            )*
        }
    };
}

registry! {
    Dsgd: dsgd,
    AllReduce: allreduce,
    Qgm: qgm,
    QgAdam: qg_adam,
    D2: d2,
    Gt: gt,
    Sgp: sgp,
    SlowMo: slowmo,
    RelaySgd: relaysgd,
    RelaySgdGrad: relaysgd_grad,
    Ngm: ngm,
    CompNgm: compngm,
    Cga: cga,
    CompCga: compcga,
    Matcha: matcha,
    AlDsgd: aldsgd,
}

pub use crate::graph::{RelayAverage, RelayTree};
pub use crate::objective::{
    DeviceData, JobGradients, JobList, ModelObjective, Objective, OneShot, Quadratics,
};
pub use aldsgd::{aldsgd_flag_seeds, aldsgd_matrix, aldsgd_round, aldsgd_schedules};
pub use aldsgd::{AlDsgd, PullWeights};
pub use allreduce::AllReduce;
pub use buffers::{AgentBuffers, LocalHyper};
pub use cga_qp::{cga_qp, CGA_MAX_ROWS, CGA_V_MIN};
pub use d2::{check_d2_spectrum, D2, D2_LAMBDA_MIN_BOUND};
pub use dsgd::Dsgd;
pub use gt::Gt;
pub use matcha::{matcha_flag_seed, matcha_schedule, Matcha};
pub use ngm::Ngm;
pub use options::{
    AlgoOptions, CgaPipeline, CompCharge, DsgdOrder, MatchaMode, NgmPi, RelayNormalisation,
};
pub use qg_adam::QgAdam;
pub use qgm::{Qgm, QGM_MIN_LR};
pub use relaysgd::{Model, Relay, RelaySgd, RelayVariant};
pub use relaysgd_grad::{Grad, RelaySgdGrad};
pub use sgp::Sgp;
pub use slowmo::{SlowMo, SlowMoHyper, SLOWMO_MIN_LR};
pub use vector::VectorOps;

use crate::backend::{Backend, Buf};
use crate::dist::Placement;
use crate::error::{Error, Result};
use crate::graph::{relay_trees, MixingRule, OnePeerExponential, Topology};
use crate::sparse::Csr;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// One algorithm's state on a backend.
pub trait Algo {
    /// The per-agent buffers every algorithm has (parameters, gradients, momentum, ledger).
    fn buffers(&self) -> &AgentBuffers;
    /// The current parameters x (agent-major slabs).
    fn params(&self) -> Buf {
        self.buffers().params
    }
    /// Records one iteration (no flush).
    fn step(&mut self, be: &mut dyn Backend, s: Step<'_>) -> Result<()>;
    /// Records iteration t with learning rate `lr` (no flush).
    fn record_step(
        &mut self,
        be: &mut dyn Backend,
        obj: &mut dyn Objective,
        t: u64,
        lr: f64,
    ) -> Result<()> {
        self.step(be, Step { obj, t, lr })
    }
    /// Bytes each agent sent during the last recorded iteration.
    fn bytes_sent(&self) -> &[u64] {
        self.buffers().ledger.sent()
    }
    /// Named state buffers that make up a checkpoint (parameters first); by default the
    /// parameters and the local momentum.
    fn state(&self) -> Vec<(&'static str, Buf)> {
        self.buffers().state_with(&[])
    }
    /// Records one communication round alone, without a local step (tests and diagnostics).
    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()>;
    /// Lines the user should see about how this run was set up (e.g. a learning-rate factor).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Host-side state the next steps depend on beyond `state()`, t and the seed (JSON; floats,
    /// if any, as bit patterns). `Null` when there is none.
    fn host_state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// A run sharded over ranks (placement `p`): the elements of the checkpoint buffer `name`
    /// that rank `rank` computes, for a buffer that is not split into agent-major blocks (None: it is; a
    /// checkpoint takes every element from its rank, a resume writes the whole buffer).
    fn owned_elements(&self, name: &str, p: &Placement, rank: usize) -> Option<Vec<Range<usize>>> {
        let _ = (name, p, rank);
        None
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

/// The algorithms that run sharded over MPI ranks ([`Algorithm::build_sharded`]): those whose
/// communication is gossip over [`crate::comm::Gossip`] and exact averaging over
/// [`crate::comm::AllReduce`], which exchange ghost slabs, and NGM (its cross-gradient jobs run
/// where their data lives, round 2 refreshes the ghost jobs) and the relay exchanges of RelaySGD
/// (each rank sends its agents' messages; the crossing ones travel once per round). CompNGM,
/// CGA and CompCGA (their compression memories and QP stages) are not sharded yet.
pub const SHARDED_ALGORITHMS: &[&str] = &[
    "dsgd",
    "allreduce",
    "qgm",
    "qg-adam",
    "d2",
    "gt",
    "sgp",
    "slowmo",
    "relaysgd",
    "relaysgd-grad",
    "ngm",
    "matcha",
    "aldsgd",
];

/// Algorithms of ALGORITHMS.md that are specified but not implemented yet.
pub const PLANNED_ALGORITHMS: &[&str] = &[];

/// What an algorithm communicates over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopologyNeed {
    /// Exact averaging of all agents; the configured topology is not used.
    None,
    /// Gossip over the configured static graph.
    Static,
    /// Gossip over the configured static graph, or the time-varying one-peer exponential graph.
    StaticOrExponential,
    /// The spanning tree(s) of the configured topology (`relay_trees`).
    Trees,
    /// Always the one-peer exponential graph (n a power of two), whatever is configured.
    Exponential,
}

/// Everything about one algorithm, declared once in its own file as `SPEC` and listed in
/// [`REGISTRY`].
pub struct AlgoSpec {
    /// The canonical name (CLI, config files, run directories), then other accepted spellings
    /// (lower case, `-` for `_`).
    pub names: &'static [&'static str],
    /// One line for help texts.
    pub doc: &'static str,
    /// What it communicates over.
    pub topology: TopologyNeed,
    /// The [`AlgoOptions`] it reads, by flag name (`drop-prob`: it simulates dropped messages).
    pub options: &'static [&'static str],
    /// Builds its state from the common buffers (options already validated).
    pub build: BuildFn,
}

impl AlgoSpec {
    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.names[0]
    }

    /// Whether it simulates dropped messages (it reads `drop-prob`).
    pub fn simulates_drops(&self) -> bool {
        self.options.contains(&"drop-prob")
    }
}

/// One iteration to record: the gradient source, t and the learning rate η_t.
pub struct Step<'a> {
    /// Gradient source.
    pub obj: &'a mut dyn Objective,
    /// Iteration t.
    pub t: u64,
    /// Learning rate η_t.
    pub lr: f64,
}

impl Step<'_> {
    /// Records g = ∇F_i(x_i; ξ_i^t) of the current parameters into the gradient slabs.
    pub fn gradients(&mut self, be: &mut dyn Backend, b: &AgentBuffers) -> Result<()> {
        self.obj.record_gradients(be, b.params, b.grads, self.t)
    }
}

/// How an [`AlgoSpec`] builds its state from the common buffers and the setup.
pub type BuildFn = fn(&mut dyn Backend, AgentBuffers, &AlgoSetup) -> Result<Box<dyn Algo>>;

/// An algorithm: a small handle to its [`AlgoSpec`]; parses and serialises by name.
#[derive(Clone, Copy)]
pub struct Algorithm(&'static AlgoSpec);

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
    /// The tensor table of a slab, for per-tensor operations (CompNGM, CGA); empty: one
    /// tensor of all d scalars (the toy tasks).
    pub tensors: &'a [crate::model::Tensor],
}

impl AlgoSetup<'_> {
    /// The tensor table, or one tensor of all d scalars when none is given.
    pub fn tensor_table(&self) -> Vec<crate::model::Tensor> {
        if self.tensors.is_empty() {
            vec![crate::model::Tensor {
                offset: 0,
                len: self.d,
            }]
        } else {
            self.tensors.to_vec()
        }
    }
}

/// "a, b and c".
fn and_list(names: &[&str]) -> String {
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The implemented algorithm names, comma-separated, for help texts and errors.
pub fn algorithm_names() -> String {
    REGISTRY
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per implemented algorithm, `name: doc`, for help texts.
pub fn algorithm_help() -> String {
    REGISTRY
        .iter()
        .map(|s| format!("{}: {}", s.name(), s.doc))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `--algo` help: one line per registered algorithm.
pub fn algorithm_help_text() -> String {
    format!("Algorithm:\n{}", algorithm_help())
}

/// The one-peer exponential graph of an algorithm that always runs on it (SGP).
pub(crate) fn exponential_graph(
    algo: &str,
    n: usize,
    schedule: crate::graph::HopSchedule,
) -> Result<OnePeerExponential> {
    OnePeerExponential::new(n, schedule).map_err(|e| {
        Error::param(
            "agents",
            format!(
                "{} runs on the one-peer exponential graph: {e}",
                algo.to_uppercase()
            ),
        )
    })
}

impl Algorithm {
    /// The algorithm's specification.
    pub fn spec(&self) -> &'static AlgoSpec {
        self.0
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// What the algorithm communicates over.
    pub fn topology_need(&self) -> TopologyNeed {
        self.0.topology
    }

    /// Whether the algorithm communicates over the configured topology.
    pub fn uses_topology(&self) -> bool {
        !matches!(
            self.0.topology,
            TopologyNeed::None | TopologyNeed::Exponential
        )
    }

    /// Whether the algorithm simulates dropped messages (`--drop-prob`).
    pub fn simulates_drops(&self) -> bool {
        self.0.simulates_drops()
    }

    /// The algorithm options it reads, by flag name.
    pub fn options(&self) -> &'static [&'static str] {
        self.0.options
    }

    /// The topology it really runs on given the configured one (None: exact averaging of all
    /// agents); SGP always runs on the exponential graph.
    pub fn runs_on(&self, configured: &Topology) -> Option<Topology> {
        match self.0.topology {
            TopologyNeed::None => None,
            TopologyNeed::Exponential => Some(Topology::Exponential),
            _ => Some(*configured),
        }
    }

    /// Checks that the algorithm can run on `topology` with `agents` agents.
    pub fn check_topology(
        &self,
        topology: &Topology,
        agents: usize,
        seed: u64,
        options: &AlgoOptions,
    ) -> Result<()> {
        let topo =
            |e: String| Error::param("topology", format!("{topology} with {agents} agents: {e}"));
        match self.0.topology {
            TopologyNeed::None => {}
            TopologyNeed::Trees => {
                relay_trees(topology, agents, seed, 0).map_err(|e| topo(e.to_string()))?;
            }
            TopologyNeed::StaticOrExponential if *topology == Topology::Exponential => {
                // The schedule does not change which agent counts work.
                OnePeerExponential::new(agents, options.hop_schedule.unwrap_or_default())
                    .map_err(|e| topo(e.to_string()))?;
            }
            TopologyNeed::Static | TopologyNeed::StaticOrExponential => {
                topology
                    .static_graph(agents, seed)
                    .map_err(|e| topo(e.to_string()))?;
            }
            TopologyNeed::Exponential => {
                exponential_graph(
                    self.name(),
                    agents,
                    options.hop_schedule.unwrap_or_default(),
                )?;
            }
        }
        Ok(())
    }

    /// Builds the algorithm's state on a backend; the options are validated here, once.
    pub fn build(&self, be: &mut dyn Backend, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
        s.options.validate()?;
        if s.options.drop_prob > 0.0 && !self.simulates_drops() {
            let droppers: Vec<&str> = REGISTRY
                .iter()
                .filter(|a| a.simulates_drops())
                .map(|a| a.name())
                .collect();
            return Err(Error::param(
                "drop-prob",
                format!(
                    "{self} does not simulate dropped messages ({} do); use 0",
                    and_list(&droppers)
                ),
            ));
        }
        let buf = AgentBuffers::new(be, s.agents, s.stride, s.d, s.init)?;
        (self.0.build)(be, buf, s)
    }

    /// Whether the algorithm runs sharded over MPI ranks ([`SHARDED_ALGORITHMS`]).
    pub fn runs_sharded(&self) -> bool {
        SHARDED_ALGORITHMS.contains(&self.name())
    }

    /// Builds this rank's part of the algorithm's state for a run sharded over ranks: `s`
    /// describes all agents (`s.init` holds every agent's parameters), the buffers hold the
    /// block of `shard`. An algorithm that cannot run sharded yet is refused by name.
    pub fn build_sharded(
        &self,
        be: &mut dyn Backend,
        s: &AlgoSetup,
        shard: &crate::dist::Shard,
    ) -> Result<Box<dyn Algo>> {
        if !self.runs_sharded() {
            return Err(Error::param(
                "algo",
                format!(
                    "{self} cannot run sharded over MPI ranks yet (sharded: {}); run it in one process",
                    and_list(SHARDED_ALGORITHMS)
                ),
            ));
        }
        if s.agents != shard.agents() {
            return Err(Error::param(
                "agents",
                format!("{} agents, the ranks share {}", s.agents, shard.agents()),
            ));
        }
        s.options.validate()?;
        let buf = AgentBuffers::new_sharded(be, shard, s.stride, s.d, s.init)?;
        (self.0.build)(be, buf, s)
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

/// The mean of the initial slabs (with identical initialisation, the common initial model).
pub(crate) fn mean_slab(init: &[f32], agents: usize, stride: usize) -> Vec<f64> {
    let mut x0 = vec![0.0f64; stride];
    for slab in init.chunks_exact(stride) {
        for (a, &v) in x0.iter_mut().zip(slab) {
            *a += f64::from(v);
        }
    }
    x0.iter().map(|v| v / agents as f64).collect()
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm(REGISTRY[0])
    }
}

impl PartialEq for Algorithm {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Algorithm {}

impl std::hash::Hash for Algorithm {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name().hash(h)
    }
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Algorithm({})", self.name())
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
        if let Some(spec) = REGISTRY.iter().find(|a| a.names.contains(&t.as_str())) {
            return Ok(Algorithm(spec));
        }
        let names = algorithm_names();
        Err(Error::param(
            "algo",
            if PLANNED_ALGORITHMS.contains(&t.as_str()) {
                format!("'{s}' is not implemented yet; implemented: {names}")
            } else {
                format!("unknown algorithm '{s}'; accepted: {names}")
            },
        ))
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
        // Every algorithm of ALGORITHMS.md runs: nothing is planned any more.
        assert!(PLANNED_ALGORITHMS.is_empty());
        assert_eq!("CompCGA".parse::<Algorithm>().unwrap(), Algorithm::CompCga);
        let e = "sgd9".parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.contains("accepted: dsgd, allreduce"), "{e}");
    }

    use crate::comm::gossip_bytes_per_agent;

    #[test]
    fn the_registry_is_the_one_list() {
        let mut seen = std::collections::HashSet::new();
        for spec in REGISTRY {
            for name in spec.names {
                assert!(seen.insert(*name), "{name} is claimed twice");
                let a: Algorithm = name.parse().unwrap();
                assert_eq!(a.name(), spec.name(), "{name}");
                let json = serde_json::to_string(&a).unwrap();
                assert_eq!(json, format!("\"{}\"", spec.name()));
                assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), a);
            }
            assert!(!spec.doc.is_empty() && algorithm_help().contains(spec.doc));
        }
        assert_eq!(
            algorithm_names(),
            "dsgd, allreduce, qgm, qg-adam, d2, gt, sgp, slowmo, relaysgd, relaysgd-grad, ngm, compngm, cga, compcga, matcha, aldsgd"
        );
        assert_eq!(Algorithm::default(), Algorithm::Dsgd);
        // What each really runs on: SGP always on the exponential graph, all-reduce on none.
        let ring = Topology::Ring;
        assert_eq!(Algorithm::Sgp.runs_on(&ring), Some(Topology::Exponential));
        assert_eq!(Algorithm::AllReduce.runs_on(&ring), None);
        assert_eq!(Algorithm::D2.runs_on(&ring), Some(ring));
        assert!(!Algorithm::Sgp.uses_topology() && Algorithm::RelaySgd.uses_topology());
        assert!(Algorithm::Qgm.options().contains(&"qgm-period"));
        // Every option a spec names is a flag of AlgoOptions.
        let cmd = <AlgoOptions as clap::Args>::augment_args(clap::Command::new("options"));
        let flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for spec in REGISTRY {
            for o in spec.options {
                assert!(
                    flags.iter().any(|f| f == o),
                    "{}: no flag --{o}",
                    spec.name()
                );
            }
        }
        // The SGP message lives in one place; config validation and the constructor share it.
        let e = Algorithm::Sgp
            .check_topology(&ring, 6, 0, &AlgoOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SGP runs on the one-peer exponential graph"),
            "{e}"
        );
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
            tensors: &[],
        };
        for a in [Algorithm::Dsgd, Algorithm::AllReduce, Algorithm::D2] {
            let e = a.build(&mut be, &setup).err().expect("refused").to_string();
            assert!(e.contains("drop-prob"), "{a}: {e}");
            assert!(
                e.contains("(sgp, relaysgd and relaysgd-grad do); use 0"),
                "{a}: {e}"
            );
        }
        // Options are validated once, by build, for every algorithm.
        let bad = AlgoOptions {
            qgm_period: 0,
            ..Default::default()
        };
        for spec in REGISTRY {
            let e = Algorithm(spec)
                .build(
                    &mut be,
                    &AlgoSetup {
                        options: &bad,
                        ..setup
                    },
                )
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("qgm-period"), "{}: {e}", spec.name());
        }
        assert!(Algorithm::RelaySgd.build(&mut be, &setup).is_ok());
    }
}
