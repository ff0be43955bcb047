//! MATCHA (ALGORITHMS.md §5.15) as an algorithm, on the CPU reference, the native backend and
//! every GPU backend: the §5.15 constants through the algorithm's own schedule, the realised
//! mixing matrix of every step measured by running the algorithm on identity slabs (the same
//! flags on all agents: each realised matrix is symmetric and doubly stochastic and equals the
//! one of the shared stream), its empirical mean → I − αL̄, FixedProcessor's alternation, the
//! byte ledger (active matchings only), parity after many steps and MLP training.
//!
//! Tolerances: §5.15 constants 2e-3 absolute (the table's 4–5 printed digits and the
//! super-gradient ascent's convergence; the graph module checks them tighter); a realised
//! matrix vs the host one 1e-6 (f32 weights); the empirical mean over T = 3000 steps vs
//! I − αL̄ 0.015 absolute (about 4 standard deviations α·½/√T ≈ 0.0037 of a Bernoulli mean); f32 backends vs
//! the CPU reference after 60 toy steps 1e-4 relative + 1e-4 absolute; MLP trainer params
//! 1e-3 relative + 1e-4 absolute (as the other algorithms).

mod common;

use std::sync::OnceLock;

use common::{assert_close, small_run, train, Target};
use swarmgrad::algo::{
    matcha_flag_seed, matcha_schedule, AlgoOptions, AlgoSetup, Algorithm, LocalHyper, MatchaMode,
    Quadratics,
};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::graph::{MatchaGraph, MixingRule, Topology};
use swarmgrad::train::TrainConfig;

fn options(graph: Option<MatchaGraph>, mode: MatchaMode, budget: f64) -> AlgoOptions {
    AlgoOptions {
        matcha_graph: graph,
        matcha_mode: mode,
        matcha_budget: budget,
        ..Default::default()
    }
}

fn setup<'a>(
    n: usize,
    d: usize,
    init: &'a [f32],
    topology: &'a Topology,
    hyper: LocalHyper,
    o: &'a AlgoOptions,
) -> AlgoSetup<'a> {
    AlgoSetup {
        agents: n,
        stride: d,
        d,
        init,
        topology,
        mixing: &MixingRule::MetropolisHastings,
        hyper,
        seed: 11,
        options: o,
        tensors: &[],
    }
}

#[test]
fn the_schedule_reproduces_the_section_5_15_constants() {
    let ring = Topology::Ring;
    for (graph, mode, budget, p, alpha) in [
        (
            MatchaGraph::Graph0,
            MatchaMode::Random,
            0.5,
            vec![0.9837, 0.0, 0.7581, 0.7581, 0.0],
            0.39643,
        ),
        (
            MatchaGraph::Ring8,
            MatchaMode::Random,
            0.5,
            vec![0.5, 0.5],
            0.60737,
        ),
        (
            MatchaGraph::ErdosRenyi16,
            MatchaMode::Random,
            0.5,
            vec![1.0, 0.7972, 0.8201, 0.9471, 0.2223, 0.2133, 0.0, 0.0],
            0.28310,
        ),
        (
            MatchaGraph::Graph0,
            MatchaMode::FixedProcessor,
            0.5,
            vec![0.5, 0.5, 0.0, 0.0, 0.0],
            0.285714,
        ),
    ] {
        let o = options(Some(graph), mode, budget);
        let n = graph.n();
        let init = vec![0.0f32; n];
        let s = matcha_schedule(&setup(n, 1, &init, &ring, LocalHyper::default(), &o)).unwrap();
        assert_close(
            &format!("{graph} {mode:?} p"),
            s.probabilities(),
            &p,
            0.0,
            2e-3,
        );
        assert_close(
            &format!("{graph} {mode:?} α"),
            &[s.alpha()],
            &[alpha],
            0.0,
            2e-3,
        );
    }
    // The agent count must match a named graph.
    let o = options(Some(MatchaGraph::Graph0), MatchaMode::Random, 0.5);
    let init = vec![0.0f32; 6];
    let e = Algorithm::Matcha
        .build(
            &mut ReferenceBackend::new(),
            &setup(6, 1, &init, &ring, LocalHyper::default(), &o),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("matcha-graph"), "{e}");
}

/// Runs MATCHA with lr 0 on identity slabs (agent i holds e_i) for `steps` steps, resetting the
/// slabs before each: after step t agent i holds row i of the realised W_t. Returns each W_t
/// and the bytes of each step.
fn realised(
    o: &AlgoOptions,
    topology: Topology,
    n: usize,
    steps: u64,
) -> Vec<(Vec<f64>, Vec<u64>)> {
    let mut be = ReferenceBackend::new();
    let eye: Vec<f32> = (0..n * n)
        .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let mut obj = Quadratics::constants(&mut be, &vec![vec![0.0; n]; n]).unwrap();
    let mut a = Algorithm::Matcha
        .build(
            &mut be,
            &setup(n, n, &eye, &topology, LocalHyper::default(), o),
        )
        .unwrap();
    let mut out = Vec::new();
    for t in 0..steps {
        be.write_f32(a.params(), 0, &eye).unwrap();
        a.record_step(&mut be, &mut obj, t, 0.0).unwrap();
        be.flush().unwrap();
        out.push((be.read_f32(a.params()).unwrap(), a.bytes_sent().to_vec()));
    }
    out
}

#[test]
fn every_agent_mixes_with_the_shared_flags_and_the_mean_is_i_minus_alpha_lbar() {
    let steps = 3000;
    for (graph, topology) in [
        (Some(MatchaGraph::Graph0), Topology::Ring),
        (None, Topology::Torus),
    ] {
        let n = graph.map_or(9, |g| g.n());
        let o = options(graph, MatchaMode::Random, 0.5);
        let init = vec![0.0f32; n * n];
        let s = matcha_schedule(&setup(n, n, &init, &topology, LocalHyper::default(), &o)).unwrap();
        let seed = matcha_flag_seed(11);
        let mut mean = vec![0.0; n * n];
        let mut idle = 0;
        for (t, (w, bytes)) in realised(&o, topology, n, steps).iter().enumerate() {
            let flags = s.flags(seed, t as u64);
            let want = s.mixing(&flags).unwrap().to_dense().concat();
            assert_close(&format!("{graph:?} W at step {t}"), w, &want, 0.0, 1e-6);
            for i in 0..n {
                // Symmetric (both ends of every edge saw the same flags), rows sum to 1.
                for j in 0..n {
                    assert!(
                        (w[i * n + j] - w[j * n + i]).abs() < 1e-12,
                        "step {t}: W not symmetric"
                    );
                }
                let row: f64 = w[i * n..(i + 1) * n].iter().sum();
                assert!((row - 1.0).abs() < 1e-6, "step {t}: row {i} sums to {row}");
                // 4d bytes per active partner, none for inactive matchings.
                let partners = s.active_partners(&flags, i).len() as u64;
                assert_eq!(
                    bytes[i],
                    4 * n as u64 * partners,
                    "step {t}: agent {i} bytes"
                );
            }
            idle += usize::from(!flags.iter().any(|&f| f));
            for (m, v) in mean.iter_mut().zip(w) {
                *m += v / steps as f64;
            }
        }
        let want = s.expected_mixing().to_dense().concat();
        let gap = mean
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("{graph:?}: mean of {steps} realised matrices vs I − αL̄: max |Δ| = {gap:.4}; {idle} idle steps");
        assert!(gap < 0.015, "{graph:?}: {gap}");
    }
}

#[test]
fn fixed_processor_alternates_matchings_one_and_zero() {
    let o = options(Some(MatchaGraph::Graph0), MatchaMode::FixedProcessor, 0.5);
    let w = realised(&o, Topology::Ring, 8, 4);
    let a = 2.0 / 7.0;
    for (t, (w, bytes)) in w.iter().enumerate() {
        // Even steps: matching 1 = {(1,7), (3,6)}; odd: matching 0 = {(1,5), (6,7), (0,4), (2,3)}.
        let pairs: &[(usize, usize)] = if t % 2 == 0 {
            &[(1, 7), (3, 6)]
        } else {
            &[(1, 5), (6, 7), (0, 4), (2, 3)]
        };
        for i in 0..8 {
            let partner = pairs.iter().find_map(|&(u, v)| {
                if u == i {
                    Some(v)
                } else if v == i {
                    Some(u)
                } else {
                    None
                }
            });
            let self_w = if partner.is_some() { 1.0 - a } else { 1.0 };
            assert!((w[i * 8 + i] - self_w).abs() < 1e-6, "step {t}, agent {i}");
            if let Some(k) = partner {
                assert!((w[i * 8 + k] - a).abs() < 1e-6, "step {t}, agent {i}");
            }
            assert_eq!(
                bytes[i],
                if partner.is_some() { 32 } else { 0 },
                "step {t}, agent {i}"
            );
        }
    }
}

/// 60 steps on the constants task (targets t_i = i + 0.25k), heterogeneous start.
fn toy_run(be: &mut dyn Backend, o: &AlgoOptions) -> Vec<f64> {
    let (n, d) = (8, 3);
    let targets: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..d).map(|k| i as f64 + 0.25 * k as f64).collect())
        .collect();
    let init: Vec<f32> = (0..n * d).map(|k| (k % 5) as f32 * 0.5 - 1.0).collect();
    let mut obj = Quadratics::constants(be, &targets).unwrap();
    let hyper = LocalHyper {
        momentum: 0.875,
        nesterov: true,
        weight_decay: 0.0078125,
    };
    let mut a = Algorithm::Matcha
        .build(be, &setup(n, d, &init, &Topology::Ring, hyper, o))
        .unwrap();
    for t in 0..60 {
        a.record_step(be, &mut obj, t, 0.0625).unwrap();
        be.flush().unwrap();
    }
    be.read_f32(a.params()).unwrap()
}

target_tests!([gpu, native] backends_agree_on_the_toy_task);
fn backends_agree_on_the_toy_task(t: &Target) {
    let mut be = t.backend();
    let name = be.describe();
    for o in [
        options(Some(MatchaGraph::Graph0), MatchaMode::Random, 0.5),
        options(Some(MatchaGraph::Graph0), MatchaMode::FixedProcessor, 0.5),
        options(None, MatchaMode::Random, 0.3),
    ] {
        let want = toy_run(&mut ReferenceBackend::new(), &o);
        let got = toy_run(be.as_mut(), &o);
        assert_close(
            &format!("matcha {:?} on {name}", o.matcha_mode),
            &got,
            &want,
            1e-4,
            1e-4,
        );
    }
}

/// [`small_run`] for MATCHA on graph 0 (8 agents, random mode, budget ½) at learning rate
/// 0.05 and momentum 0.9, with one evaluation at the end.
fn mlp(steps: u64) -> TrainConfig {
    TrainConfig {
        agents: 8,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        eval_every: steps,
        options: options(Some(MatchaGraph::Graph0), MatchaMode::Random, 0.5),
        ..small_run(Algorithm::Matcha)
    }
}

/// The reference's final parameters of the tracking run, shared by every target's test.
static REFERENCE: OnceLock<Vec<f64>> = OnceLock::new();

target_tests!([gpu, native] trainer_runs_matcha_like_the_reference);
fn trainer_runs_matcha_like_the_reference(t: &Target) {
    common::trains_like_the_reference(t, "matcha", &REFERENCE, || mlp(20));
}

#[test]
fn trainer_matcha_learns() {
    let (s, _) = train(mlp(300), Box::new(NativeBackend::new(2).unwrap()));
    eprintln!(
        "matcha: consensus accuracy {:.3}, mean local {:.3}, {} bytes/agent",
        s.last.consensus_acc, s.last.mean_local_acc, s.bytes_sent_per_agent
    );
    assert!(s.last.consensus_acc > 0.5, "{}", s.last.consensus_acc);
}
