//! What the study runs: its settings (agents, topology family, partition, model, length), the
//! algorithm variants of each setting and their learning-rate grids.

use crate::algo::{MatchaMode, NgmPi};
use crate::graph::{LrCorrection, MatchaGraph, MixingRule, Topology};
use crate::train::{Algorithm, DatasetKind, TrainConfig};

/// The model every setting uses now (the crate's MNIST MLP).
pub const MLP: &str = "mlp:784-128-10";

/// Learning-rate grid of the variants without momentum (×3 apart: one decade in 3 runs).
pub const GRID_PLAIN: &[f64] = &[0.1, 0.3, 0.9];
/// Learning-rate grid of the variants with local Nesterov momentum β = 0.9 (the plain grid
/// divided by 1/(1 − β) = 10, the momentum's gain).
pub const GRID_MOMENTUM: &[f64] = &[0.01, 0.03, 0.09];

/// The gossip weight of D² and gradient tracking on rings (ALGORITHMS.md §5.10, §5.11):
/// 1/3 − 0.01 keeps λ_min(W) above −1/3.
pub const RING_CONSTANT_WEIGHT: f64 = 1.0 / 3.0 - 0.01;

/// One algorithm as the study runs it: an algorithm with its topology, local momentum,
/// options, and learning-rate grid.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The label in tables and file names (`dsgd-m`, `relaysgd-chain-m`, ...).
    pub label: String,
    /// The configuration of the run, learning rate and seed still to set.
    pub config: TrainConfig,
    /// The learning rates tried on the first seed.
    pub grid: Vec<f64>,
}

/// One setting: a group (one table), a column of that table, and what every run of it shares.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The group, one table per metric: `ring16`, `social32`, `ngm-shards`, `matcha8`.
    pub group: String,
    /// The column label in the group's tables (`α=0.1`, `ring 5`, `IID`).
    pub column: String,
    /// Unique id (`ring16-a0.1`): the prefix of its run ids.
    pub id: String,
    /// The model spec (a per-setting field: `cnn5` for NGM's setting once it exists).
    pub model: String,
    /// Steps per run.
    pub steps: u64,
    /// Evaluation period (steps); the last two evaluations give the worst-agent metric.
    pub eval_every: u64,
    /// The algorithms run in this setting.
    pub variants: Vec<Variant>,
}

/// The study's scale: full (3 seeds, every α) or quick (1 seed, α ∈ {1, 0.01}, fewer steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// Reduced study for a smoke run.
    pub quick: bool,
}

impl Scale {
    /// Seeds per setting (the first also runs the learning-rate grid).
    pub fn seeds(&self) -> u64 {
        if self.quick {
            1
        } else {
            3
        }
    }

    /// Steps per run and evaluation period: 300 steps (20 epochs of the 16-agent ring's 500
    /// samples per agent) evaluated every 30 in the full study, 60 every 15 in the quick one.
    fn steps(&self) -> (u64, u64) {
        if self.quick {
            (60, 15)
        } else {
            (300, 30)
        }
    }
}

/// A variant on `topology` with local momentum `beta` (Nesterov), the grid following β.
fn variant(label: &str, algo: Algorithm, topology: Topology, beta: f64) -> Variant {
    let config = TrainConfig {
        algo,
        topology,
        momentum: beta,
        nesterov: true,
        ..TrainConfig::default()
    };
    let grid = if beta > 0.0 {
        GRID_MOMENTUM
    } else {
        GRID_PLAIN
    };
    Variant {
        label: label.to_string(),
        config,
        grid: grid.to_vec(),
    }
}

impl Variant {
    /// Sets the gossip weight rule.
    fn mixing(mut self, rule: MixingRule) -> Self {
        self.config.mixing.rule = rule;
        self
    }

    /// Changes the algorithm options.
    fn options(mut self, f: impl FnOnce(&mut crate::algo::AlgoOptions)) -> Self {
        f(&mut self.config.options);
        self
    }
}

/// RelaySGD with the exact learning-rate correction c of its tree (§5.5: the paper's
/// experiments multiply η by c).
fn relay(label: &str, topology: Topology, beta: f64) -> Variant {
    variant(label, Algorithm::RelaySgd, topology, beta)
        .options(|o| o.relay_lr_correction = LrCorrection::Exact)
}

/// The NGM README's gossip damping γ (x ← x + γ(Wx − x)).
pub const NGM_GAMMA: f64 = 0.1;

/// NGM (or CompNGM, CGA) with α (0: NGM_mv, 1: NGM_dv), gossip damping γ and momentum 0.9.
fn ngm(label: &str, algo: Algorithm, topology: Topology, alpha: f64, gamma: f64) -> Variant {
    let pi = if topology == Topology::Social {
        // An irregular graph: π = W keeps the combined gradient's weights stochastic.
        NgmPi::Weights
    } else {
        NgmPi::Uniform
    };
    variant(label, algo, topology, 0.9).options(|o| {
        o.ngm_alpha = alpha;
        o.ngm_gamma = gamma;
        o.ngm_pi = pi;
    })
}

/// D-PSGD with momentum in NGM's combine-then-adapt order over W_γ = (1 − γ)I + γW on a ring
/// (neighbour weight γ/3): the NGM paper's DSGDm baseline at the same γ as NGM.
fn dsgd_cta(label: &str, gamma: f64) -> Variant {
    variant(label, Algorithm::Dsgd, Topology::Ring, 0.9)
        .mixing(MixingRule::Constant(gamma / 3.0))
        .options(|o| o.dsgd_order = crate::algo::DsgdOrder::Cta)
}

/// The 16-agent ring family at one α (RelaySGD Table 2, QGM Table 1, plus NGM/CGA).
fn ring16_variants() -> Vec<Variant> {
    use Topology::*;
    let constant = MixingRule::Constant(RING_CONSTANT_WEIGHT);
    vec![
        variant("allreduce", Algorithm::AllReduce, Complete, 0.0),
        variant("allreduce-m", Algorithm::AllReduce, Complete, 0.9),
        variant("dsgd", Algorithm::Dsgd, Ring, 0.0),
        variant("dsgd-m", Algorithm::Dsgd, Ring, 0.9),
        variant("qgm", Algorithm::Qgm, Ring, 0.9),
        variant("d2", Algorithm::D2, Ring, 0.0).mixing(constant),
        variant("d2-m", Algorithm::D2, Ring, 0.9).mixing(constant),
        variant("gt", Algorithm::Gt, Ring, 0.0).mixing(constant),
        variant("sgp", Algorithm::Sgp, Exponential, 0.0),
        variant("sgp-m", Algorithm::Sgp, Exponential, 0.9),
        relay("relaysgd-chain", Chain, 0.0),
        relay("relaysgd-chain-m", Chain, 0.9),
        relay("relaysgd-trees-m", DoubleBinaryTrees, 0.9),
        variant("relaysgd-grad-chain", Algorithm::RelaySgdGrad, Chain, 0.0),
        variant("relaysgd-grad-chain-m", Algorithm::RelaySgdGrad, Chain, 0.9),
        ngm("ngm-mv", Algorithm::Ngm, Ring, 0.0, 1.0),
        ngm("ngm-dv", Algorithm::Ngm, Ring, 1.0, 1.0),
        ngm("compngm", Algorithm::CompNgm, Ring, 1.0, 1.0),
        ngm("cga", Algorithm::Cga, Ring, 1.0, 1.0),
        // D² on trees (Metropolis–Hastings weights): the RelaySGD paper's fragility case.
        variant("d2-m-chain", Algorithm::D2, Chain, 0.9),
        variant("d2-m-tree", Algorithm::D2, BinaryTree, 0.9),
    ]
}

/// The 32-agent social network at α = 0.1 (QGM Table 1's second topology); relaysgd on the
/// BFS spanning tree, NGM/CGA with π = W (the graph is irregular).
fn social_variants() -> Vec<Variant> {
    use Topology::*;
    vec![
        variant("allreduce-m", Algorithm::AllReduce, Complete, 0.9),
        variant("dsgd", Algorithm::Dsgd, Social, 0.0),
        variant("dsgd-m", Algorithm::Dsgd, Social, 0.9),
        variant("qgm", Algorithm::Qgm, Social, 0.9),
        variant("sgp-m", Algorithm::Sgp, Exponential, 0.9),
        relay("relaysgd-tree-m", Social, 0.9),
        ngm("ngm-mv", Algorithm::Ngm, Social, 0.0, 1.0),
        ngm("cga", Algorithm::Cga, Social, 1.0, 1.0),
    ]
}

/// NGM's setting: sorted-label shards on rings of 5 and 10 agents, momentum 0.9; the NGM
/// family and its CTA baseline at the README's γ = 0.1 and at γ = 1 (undamped gossip).
fn ngm_variants() -> Vec<Variant> {
    use Topology::*;
    let g = NGM_GAMMA;
    vec![
        variant("allreduce-m", Algorithm::AllReduce, Complete, 0.9),
        variant("dsgd-m", Algorithm::Dsgd, Ring, 0.9),
        variant("qgm", Algorithm::Qgm, Ring, 0.9),
        dsgd_cta("dsgd-m-cta-g0.1", g),
        ngm("ngm-mv-g0.1", Algorithm::Ngm, Ring, 0.0, g),
        ngm("ngm-dv-g0.1", Algorithm::Ngm, Ring, 1.0, g),
        ngm("compngm-g0.1", Algorithm::CompNgm, Ring, 1.0, g),
        ngm("cga-g0.1", Algorithm::Cga, Ring, 1.0, g),
        dsgd_cta("dsgd-m-cta", 1.0),
        ngm("ngm-mv", Algorithm::Ngm, Ring, 0.0, 1.0),
        ngm("ngm-dv", Algorithm::Ngm, Ring, 1.0, 1.0),
        ngm("cga", Algorithm::Cga, Ring, 1.0, 1.0),
    ]
}

/// AL-DSGD's and MATCHA's setting: 8 agents on MATCHA graph 0 (AL-DSGD: graphs 0 and 1),
/// no momentum (both papers' recipes).
fn matcha_variants() -> Vec<Variant> {
    use Topology::*;
    let on_graph0 = |label: &str, mode: MatchaMode| {
        variant(label, Algorithm::Matcha, Ring, 0.0).options(|o| {
            o.matcha_graph = Some(MatchaGraph::Graph0);
            o.matcha_mode = mode;
        })
    };
    vec![
        variant("allreduce", Algorithm::AllReduce, Complete, 0.0),
        variant("dsgd-ring", Algorithm::Dsgd, Ring, 0.0),
        on_graph0("dpsgd-fixed", MatchaMode::FixedProcessor),
        on_graph0("matcha", MatchaMode::Random),
        variant("aldsgd", Algorithm::AlDsgd, Ring, 0.0),
        variant("aldsgd-matcha", Algorithm::AlDsgd, Ring, 0.0)
            .options(|o| o.aldsgd_core = MatchaMode::Random),
    ]
}

/// Applies a setting's shared fields to each of its variants.
fn setting(
    scale: Scale,
    (group, column, id): (&str, &str, String),
    agents: usize,
    partition: &str,
    variants: Vec<Variant>,
) -> Setting {
    let (steps, eval_every) = scale.steps();
    let variants = variants
        .into_iter()
        .map(|mut v| {
            let c = &mut v.config;
            c.agents = agents;
            c.partition = partition.to_string();
            c.alpha = None;
            c.dataset = DatasetKind::Mnist;
            c.model = Some(MLP.to_string());
            c.steps = Some(steps);
            c.epochs = None;
            c.eval_every = eval_every;
            v
        })
        .collect();
    Setting {
        group: group.to_string(),
        column: column.to_string(),
        id,
        model: MLP.to_string(),
        steps,
        eval_every,
        variants,
    }
}

/// Every setting of the study at `scale`, in the order they run.
pub fn settings(scale: Scale) -> Vec<Setting> {
    let alphas: &[f64] = if scale.quick {
        &[1.0, 0.01]
    } else {
        &[10.0, 1.0, 0.1, 0.01]
    };
    let mut out = Vec::new();
    for &a in alphas {
        out.push(setting(
            scale,
            ("ring16", &format!("α={a}"), format!("ring16-a{a}")),
            16,
            &format!("dirichlet:{a}"),
            ring16_variants(),
        ));
    }
    out.push(setting(
        scale,
        ("social32", "α=0.1", "social32-a0.1".into()),
        32,
        "dirichlet:0.1",
        social_variants(),
    ));
    let rings: &[usize] = if scale.quick { &[5] } else { &[5, 10] };
    for &n in rings {
        out.push(setting(
            scale,
            (
                "ngm-shards",
                &format!("ring {n}"),
                format!("ngm-shards-n{n}"),
            ),
            n,
            "shards",
            ngm_variants(),
        ));
    }
    let parts: &[(&str, &str)] = if scale.quick {
        &[("α=0.1", "dirichlet:0.1")]
    } else {
        &[("IID", "iid"), ("α=0.1", "dirichlet:0.1")]
    };
    for &(col, p) in parts {
        let id = format!("matcha8-{}", p.replace("dirichlet:", "a"));
        out.push(setting(
            scale,
            ("matcha8", col, id),
            8,
            p,
            matcha_variants(),
        ));
    }
    out
}
