//! RelaySGD and RelaySGD/Grad (ALGORITHMS.md §5.5, §5.6): RelaySum counts, exactly-once delivery,
//! the one-shot and energy-loss limits, fixed points, GPU/CPU parity, the byte ledger, drops,
//! the dispatch count and a short trainer run. Every property runs on the CPU reference and on
//! every GPU backend present.

mod common;

use common::*;
use swarmgrad::algo::{
    AlgoOptions, AlgoSetup, Algorithm, LocalHyper, Objective, OneShot, Quadratics,
    RelayNormalisation, RelayTree,
};
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::graph::{relay_trees, Graph, LrCorrection, MixingRule, SpanningTree, Topology};
use swarmgrad::train::{TrainConfig, Trainer};
use swarmgrad::Error;

/// One run of a relay algorithm: setup, objective and hyperparameters.
struct Run<'a> {
    algo: Algorithm,
    topology: Topology,
    n: usize,
    d: usize,
    init: Vec<f32>,
    hyper: LocalHyper,
    options: AlgoOptions,
    lr: f32,
    seed: u64,
    make_obj: &'a dyn Fn(&mut dyn Backend) -> Box<dyn Objective>,
}

impl Run<'_> {
    /// Runs `steps` steps (one flush each) and returns the parameters after every step
    /// (`every`: read back after every step, else only after the last).
    fn run(&self, be: &mut dyn Backend, steps: u64, every: bool) -> Vec<Vec<f64>> {
        let mixing = MixingRule::default();
        let setup = AlgoSetup {
            agents: self.n,
            stride: self.d,
            d: self.d,
            init: &self.init,
            topology: &self.topology,
            mixing: &mixing,
            hyper: self.hyper,
            seed: self.seed,
            options: &self.options,
            tensors: &[],
        };
        let mut algo = self.algo.build(be, &setup).unwrap();
        let mut obj = (self.make_obj)(be);
        let mut out = Vec::new();
        for t in 0..steps {
            algo.record_step(be, obj.as_mut(), t, self.lr.into())
                .unwrap();
            be.flush().unwrap();
            if every || t + 1 == steps {
                out.push(be.read_f32(algo.params()).unwrap());
            }
        }
        out
    }

    /// The parameters after every step.
    fn trace(&self, be: &mut dyn Backend, steps: u64) -> Vec<Vec<f64>> {
        self.run(be, steps, true)
    }

    /// The parameters after `steps` steps.
    fn last(&self, be: &mut dyn Backend, steps: u64) -> Vec<f64> {
        self.run(be, steps, false).pop().unwrap()
    }
}

fn plain() -> LocalHyper {
    LocalHyper {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    }
}

fn tree_of(topology: &Topology, n: usize) -> SpanningTree {
    relay_trees(topology, n, 0, 0).unwrap().remove(0)
}

#[test]
fn relaysum_counts_are_tree_balls() {
    let trees = [
        ("chain 9", SpanningTree::chain(9).unwrap()),
        (
            "binary tree 16",
            SpanningTree::new(Graph::binary_tree(16).unwrap()).unwrap(),
        ),
        ("social BFS root 0", tree_of(&Topology::Social, 32)),
        (
            "social BFS root 7",
            SpanningTree::bfs(&Graph::social(32).unwrap(), 7).unwrap(),
        ),
    ];
    for (name, tree) in &trees {
        let dist = tree.distances();
        let n = tree.n();
        let mut rt = RelayTree::new(tree);
        assert_eq!(rt.totals(), vec![1; n], "{name}: before any round");
        for t in 0..tree.diameter() + 2 {
            rt.exchange(&[]);
            let want: Vec<usize> = (0..n)
                .map(|i| dist[i].iter().filter(|&&d| d <= t + 1).count())
                .collect();
            assert_eq!(rt.totals(), want, "{name}: round {t}");
        }
        assert_eq!(rt.totals(), vec![n; n], "{name}: everyone arrived");
    }
    // Chain 0–1–2, message 0→1 dropped in round 0: node 1 misses node 0 (N_1 = 2), and in
    // round 1 node 1 relays only itself to 2 (N_2 = 2, not 3); round 2 repairs it.
    let mut rt = RelayTree::new(&SpanningTree::chain(3).unwrap());
    let e01 = rt.edges().iter().position(|&e| e == (0, 1)).unwrap();
    let mut dropped = vec![false; rt.edges().len()];
    dropped[e01] = true;
    rt.exchange(&dropped);
    assert_eq!(rt.totals(), vec![2, 2, 2]);
    rt.exchange(&[]);
    assert_eq!(rt.totals(), vec![3, 3, 2]);
    rt.exchange(&[]);
    assert_eq!(rt.totals(), vec![3, 3, 3]);
}

/// Relay topologies with n = 16 (1/16 is exact in f32, so sums of powers of two stay exact).
fn topologies16() -> Vec<Topology> {
    vec![
        Topology::Chain,
        Topology::Ring,
        Topology::BinaryTree,
        Topology::Star,
        Topology::Torus,
        Topology::Hypercube,
    ]
}

target_tests!([reference, gpu, native] grad_variant_delivers_every_update_exactly_once_on_time);
fn grad_variant_delivers_every_update_exactly_once_on_time(t: &Target) {
    // §8.2.4/§8.2.5: u_k = 2^k at node k at step 0 only (gradient −2^k, η = 1, β = 0). After
    // step t, node i has applied (own + received)/n with exactly the set {k : dist(i,k) ≤ t+1}
    // — nothing twice, nothing missing, nothing early — and from diam(T) steps on n·x_i = 2^n − 1.
    let n = 16;
    let mut be = t.backend();
    let name = be.describe();
    for topo in topologies16() {
        let tree = tree_of(&topo, n);
        let dist = tree.distances();
        let diam = tree.diameter();
        let shots: Vec<f32> = (0..n).map(|k| -((1u32 << k) as f32)).collect();
        let mk = |be: &mut dyn Backend| -> Box<dyn Objective> {
            Box::new(OneShot::new(be, &shots).unwrap())
        };
        let run = Run {
            algo: Algorithm::RelaySgdGrad,
            topology: topo,
            n,
            d: 1,
            init: vec![0.0; n],
            hyper: plain(),
            options: AlgoOptions::default(),
            lr: 1.0,
            seed: 1,
            make_obj: &mk,
        };
        let trace = run.trace(be.as_mut(), diam as u64 + 3);
        for (t, x) in trace.iter().enumerate() {
            for i in 0..n {
                let want: u64 = (0..n)
                    .filter(|&k| dist[i][k] <= t + 1)
                    .map(|k| 1u64 << k)
                    .sum();
                assert_eq!(
                    x[i] * n as f64,
                    want as f64,
                    "{topo} on {name}: node {i} after step {t}"
                );
            }
        }
        let last = trace.last().unwrap();
        assert!(
            last.iter()
                .all(|&x| x * n as f64 == ((1u64 << n) - 1) as f64),
            "{topo} on {name}: {last:?}"
        );
    }
    eprintln!("exactly-once delivery on {name}: ok for {} trees", 6);
}

target_tests!([reference, gpu, native] model_variant_one_shot_settles_at_one_over_c_wherever_injected);
fn model_variant_one_shot_settles_at_one_over_c_wherever_injected(t: &Target) {
    // §8.2.6 energy loss: a one-shot total update U (x0 = 0, η = 1, world normalisation, no
    // correction) drives every agent to U/(n·c), c = 1/n + Σ dist/n² — wherever it is injected.
    // With the exact correction the same shot settles at U/n. Limits are reached geometrically;
    // 500 steps leave < 1e-9 (f64) and rounding (f32) in the tolerance.
    let n = 8;
    let cases = [Topology::Chain, Topology::BinaryTree, Topology::Star];
    let mut be = t.backend();
    let name = be.describe();
    let tol = if t.is_reference() { 1e-9 } else { 2e-6 };
    for topo in cases {
        let c = tree_of(&topo, n).correction_factor();
        let mut injections: Vec<(String, Vec<f32>)> = [0, n / 2, n - 1]
            .iter()
            .map(|&s| {
                let mut v = vec![0.0f32; n];
                v[s] = -(n as f32);
                (format!("at {s}"), v)
            })
            .collect();
        injections.push(("everywhere".into(), vec![-1.0; n]));
        for (correction, want) in [(LrCorrection::None, 1.0 / c), (LrCorrection::Exact, 1.0)] {
            for (where_, shots) in &injections {
                let mk = |be: &mut dyn Backend| -> Box<dyn Objective> {
                    Box::new(OneShot::new(be, shots).unwrap())
                };
                let options = AlgoOptions {
                    relay_lr_correction: correction,
                    ..Default::default()
                };
                let run = Run {
                    algo: Algorithm::RelaySgd,
                    topology: topo,
                    n,
                    d: 1,
                    init: vec![0.0; n],
                    hyper: plain(),
                    options,
                    lr: 1.0,
                    seed: 2,
                    make_obj: &mk,
                };
                let x = run.last(be.as_mut(), 500);
                for (i, v) in x.iter().enumerate() {
                    assert!(
                        (v - want).abs() <= tol * want,
                        "{topo} {correction} {where_} on {name}: agent {i} at {v}, want {want}"
                    );
                }
            }
        }
        eprintln!(
            "{topo} on {name}: limit 1/c = {:.6} from every injection",
            1.0 / c
        );
    }
}

target_tests!([reference, gpu, native] drop_probability_zero_is_the_plain_path_bit_for_bit);
fn drop_probability_zero_is_the_plain_path_bit_for_bit(t: &Target) {
    // A drop probability so small that nothing is ever dropped still draws coins and rebuilds
    // the matrices each round; the result must equal the no-drop path exactly.
    let n = 8;
    let targets: Vec<Vec<f64>> = (0..n).map(|i| vec![i as f64, -(i as f64) * 0.5]).collect();
    let mk = |be: &mut dyn Backend| -> Box<dyn Objective> {
        Box::new(Quadratics::constants(be, &targets).unwrap())
    };
    let mut be = t.backend();
    for algo in [Algorithm::RelaySgd, Algorithm::RelaySgdGrad] {
        for topo in [Topology::Ring, Topology::DoubleBinaryTrees] {
            let run = |p: f64, be: &mut dyn Backend| {
                Run {
                    algo,
                    topology: topo,
                    n,
                    d: 2,
                    init: vec![0.5; n * 2],
                    hyper: LocalHyper {
                        momentum: 0.9,
                        nesterov: true,
                        weight_decay: 1e-3,
                    },
                    options: AlgoOptions {
                        drop_prob: p,
                        ..Default::default()
                    },
                    lr: 0.1,
                    seed: 5,
                    make_obj: &mk,
                }
                .last(be, 20)
            };
            let a = run(0.0, be.as_mut());
            let b = run(1e-300, be.as_mut());
            assert_eq!(a, b, "{algo} {topo} on {}", be.describe());
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

target_tests!([reference, gpu, native] fixed_points_on_heterogeneous_constants);
fn fixed_points_on_heterogeneous_constants(t: &Target) {
    // §8.2.8: constant η, distinct targets t_i. RelaySGD reaches the exact minimiser mean(t)
    // on every agent (consensus distance → 0); RelaySGD/Grad reaches the exact mean of the
    // agents but keeps a non-zero consensus distance.
    let n = 8;
    let d = 3;
    let targets: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..d).map(|k| (i * (k + 1)) as f64 - 3.0).collect())
        .collect();
    let mut be = t.backend();
    let name = be.describe();
    // Matrix weights are rounded to f32 on upload on both backends (1/9 is not exact), so
    // the averaging rows sum to 1 only within ~1e-7: that, not f64 arithmetic, bounds the
    // CPU reference here.
    let tol = if t.is_reference() { 1e-7 } else { 1e-5 };
    for topo in [Topology::Ring, Topology::DoubleBinaryTrees, Topology::Torus] {
        let n_here = if topo == Topology::Torus { 9 } else { n };
        let targets_here: Vec<Vec<f64>> = targets.iter().cycle().take(n_here).cloned().collect();
        let opt_here: Vec<f64> = (0..d)
            .map(|k| mean(&targets_here.iter().map(|t| t[k]).collect::<Vec<_>>()))
            .collect();
        let mk_here = |be: &mut dyn Backend| -> Box<dyn Objective> {
            Box::new(Quadratics::constants(be, &targets_here).unwrap())
        };
        for (algo, lr) in [(Algorithm::RelaySgd, 0.5), (Algorithm::RelaySgdGrad, 0.1)] {
            let run = Run {
                algo,
                topology: topo,
                n: n_here,
                d,
                init: vec![1.0; n_here * d],
                hyper: plain(),
                options: AlgoOptions::default(),
                lr,
                seed: 3,
                make_obj: &mk_here,
            };
            let x = run.last(be.as_mut(), 800);
            let mut consensus = 0.0;
            for k in 0..d {
                let col: Vec<f64> = (0..n_here).map(|i| x[i * d + k]).collect();
                let m = mean(&col);
                assert!(
                    (m - opt_here[k]).abs() <= tol * (1.0 + opt_here[k].abs()),
                    "{algo} {topo} on {name}: mean {m} vs {}",
                    opt_here[k]
                );
                consensus += col.iter().map(|v| (v - m).powi(2)).sum::<f64>();
            }
            consensus /= n_here as f64;
            if algo == Algorithm::RelaySgd {
                assert!(
                    consensus <= tol * tol,
                    "{topo} on {name}: consensus distance {consensus}"
                );
            } else {
                assert!(
                    consensus > 1e-3,
                    "{topo} on {name}: grad variant should keep a consensus distance"
                );
            }
            eprintln!("{algo} {topo} on {name}: consensus distance {consensus:.3e}");
        }
    }
}

target_tests!([reference, gpu, native] every_backend_matches_the_reference_and_runs_are_deterministic);
fn every_backend_matches_the_reference_and_runs_are_deterministic(t: &Target) {
    // Random quadratics with Nesterov momentum and weight decay, 60 steps, including double
    // trees (odd d), x0 updated each step, counts normalisation and 10% drops. f32 against f64
    // over 60 contracting steps: 1e-4 relative + 1e-5 absolute on the parameters.
    let n = 8;
    let d = 5;
    let h: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let a = uniform(10 + i as u64, d * d, -0.3, 0.3);
            (0..d * d)
                .map(|k| {
                    let (r, c) = (k / d, k % d);
                    let sym = (a[r * d + c] + a[c * d + r]) as f64 / 2.0;
                    sym + if r == c { 1.0 } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let c: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            uniform(40 + i as u64, d, -2.0, 2.0)
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    let mk = |be: &mut dyn Backend| -> Box<dyn Objective> {
        Box::new(Quadratics::new(be, &h, &c).unwrap())
    };
    let init = uniform(7, n * d, -1.0, 1.0);
    let hyper = LocalHyper {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-2,
    };
    let configs: Vec<(Algorithm, Topology, AlgoOptions)> = vec![
        (Algorithm::RelaySgd, Topology::Ring, AlgoOptions::default()),
        (
            Algorithm::RelaySgd,
            Topology::DoubleBinaryTrees,
            AlgoOptions {
                relay_update_ref_state: true,
                drop_prob: 0.1,
                ..Default::default()
            },
        ),
        (
            Algorithm::RelaySgd,
            Topology::Complete,
            AlgoOptions {
                relay_normalisation: RelayNormalisation::Counts,
                relay_lr_correction: LrCorrection::Exact,
                ..Default::default()
            },
        ),
        (
            Algorithm::RelaySgdGrad,
            Topology::DoubleBinaryTrees,
            AlgoOptions::default(),
        ),
        (
            Algorithm::RelaySgdGrad,
            Topology::Hypercube,
            AlgoOptions {
                drop_prob: 0.2,
                ..Default::default()
            },
        ),
    ];
    let run = |algo, topology, options: &AlgoOptions, seed| Run {
        algo,
        topology,
        n,
        d,
        init: init.clone(),
        hyper,
        options: options.clone(),
        lr: 0.05,
        seed,
        make_obj: &mk,
    };
    let mut cpu = ReferenceBackend::new();
    let want: Vec<Vec<f64>> = configs
        .iter()
        .map(|(a, t, o)| run(*a, *t, o, 11).last(&mut cpu, 60))
        .collect();
    if !t.is_reference() {
        let mut be = t.backend();
        let name = be.describe();
        for (k, (a, t, o)) in configs.iter().enumerate() {
            let got = run(*a, *t, o, 11).last(be.as_mut(), 60);
            common::assert_close(&format!("{a} {t} on {name}"), &got, &want[k], 1e-4, 1e-5);
            let again = run(*a, *t, o, 11).last(be.as_mut(), 60);
            assert_eq!(again, got, "{a} {t} on {name}: deterministic");
        }
        return;
    }
    for (k, (a, t, o)) in configs.iter().enumerate() {
        let again = run(*a, *t, o, 11).last(&mut cpu, 60);
        assert_eq!(again, want[k], "{a} {t}: same seed, same bits");
        assert!(want[k].iter().all(|v| v.is_finite()));
        if o.drop_prob > 0.0 {
            let other = run(*a, *t, o, 12).last(&mut cpu, 60);
            assert_ne!(
                other, want[k],
                "{a} {t}: another drop seed drops other messages"
            );
        }
    }
}

#[test]
fn byte_ledger_and_dispatch_count() {
    // Per agent and step: 4·d bytes (+4 for the count, Model only) per tree neighbour; double
    // trees send 4⌈d/2⌉ over the binary tree and 4⌊d/2⌋ over the reversed one. Dropped
    // messages count as sent. The dispatch count of a step does not depend on n.
    let d = 5;
    let mixing = MixingRule::default();
    let hyper = plain();
    let mut be = ReferenceBackend::new();
    let mut ledger = |algo: Algorithm, topo: Topology, n: usize, p: f64| {
        let init = vec![0.0f32; n * d];
        let options = AlgoOptions {
            drop_prob: p,
            ..Default::default()
        };
        let setup = AlgoSetup {
            agents: n,
            stride: d,
            d,
            init: &init,
            topology: &topo,
            mixing: &mixing,
            hyper,
            seed: 0,
            options: &options,
            tensors: &[],
        };
        let mut a = algo.build(&mut be, &setup).unwrap();
        let mut obj = Quadratics::constants(&mut be, &vec![vec![1.0; d]; n]).unwrap();
        let mut per_step = Vec::new();
        for t in 0..3 {
            let before = be.counters().dispatches;
            a.record_step(&mut be, &mut obj, t, 0.1).unwrap();
            be.flush().unwrap();
            per_step.push(be.counters().dispatches - before);
        }
        (a.bytes_sent().to_vec(), per_step)
    };
    let (b, _) = ledger(Algorithm::RelaySgd, Topology::Ring, 5, 0.0);
    assert_eq!(b, vec![24, 48, 48, 48, 24]);
    let (b, _) = ledger(Algorithm::RelaySgdGrad, Topology::Ring, 5, 0.0);
    assert_eq!(b, vec![20, 40, 40, 40, 20]);
    let (b, _) = ledger(Algorithm::RelaySgd, Topology::Ring, 5, 0.5);
    assert_eq!(b, vec![24, 48, 48, 48, 24], "drops still count as sent");
    // n = 8 double trees, d = 5: binary tree degrees 1 3 3 3 1 1 1 1 (12 + 4 bytes each),
    // reversed tree degrees reversed (8 + 4 bytes each).
    let (b, _) = ledger(Algorithm::RelaySgd, Topology::DoubleBinaryTrees, 8, 0.0);
    let deg = [1u64, 3, 3, 3, 1, 1, 1, 1];
    let want: Vec<u64> = (0..8).map(|i| deg[i] * 16 + deg[7 - i] * 12).collect();
    assert_eq!(b, want);
    for (algo, topo) in [
        (Algorithm::RelaySgd, Topology::Ring),
        (Algorithm::RelaySgd, Topology::DoubleBinaryTrees),
        (Algorithm::RelaySgdGrad, Topology::Ring),
        (Algorithm::RelaySgdGrad, Topology::DoubleBinaryTrees),
    ] {
        let (_, small) = ledger(algo, topo, 8, 0.0);
        let (_, large) = ledger(algo, topo, 16, 0.0);
        assert_eq!(small, large, "{algo} {topo}: dispatches independent of n");
        eprintln!("{algo} {topo}: ops per step (incl. 1 gradient dispatch) {small:?}");
    }
}

/// [`small_run`] with Nesterov momentum 0.9 on `topology`.
fn small_train(algo: Algorithm, topology: Topology) -> TrainConfig {
    TrainConfig {
        topology,
        momentum: 0.9,
        ..small_run(algo)
    }
}

target_tests!([gpu, native] trainer_runs_relay_like_the_reference);
fn trainer_runs_relay_like_the_reference(t: &Target) {
    // 30 MLP steps through the generic trainer; GPU (f32) against CPU (f64) within the
    // trainer parity tolerance (1e-3 relative + 1e-4 absolute on the parameters).
    let cases = [
        (Algorithm::RelaySgd, Topology::Ring),
        (Algorithm::RelaySgd, Topology::Chain),
        (Algorithm::RelaySgdGrad, Topology::Ring),
    ];
    let mut be = t.backend();
    let name = be.describe();
    for (algo, topo) in cases {
        let (want, want_p) = train(small_train(algo, topo), Box::new(ReferenceBackend::new()));
        assert!(want_p.iter().all(|v| v.is_finite()));
        assert!(want.last.train_loss.is_finite());
        let mut tr = Trainer::new(small_train(algo, topo), be).unwrap();
        let got = tr.run(|_, _, _| {}).unwrap();
        let got_p = tr.read_params().unwrap();
        be = tr.into_backend();
        common::assert_close(
            &format!("{algo} {topo} on {name}"),
            &got_p,
            &want_p,
            1e-3,
            1e-4,
        );
        assert_eq!(got.bytes_sent_per_agent, want.bytes_sent_per_agent);
    }
}

#[test]
fn trainer_accepts_every_relay_topology_including_double_binary_trees() {
    for algo in [Algorithm::RelaySgd, Algorithm::RelaySgdGrad] {
        let c = small_train(algo, Topology::DoubleBinaryTrees);
        c.validate().unwrap();
        let mut t = Trainer::new(c, Box::new(ReferenceBackend::new())).unwrap();
        let s = t.run(|_, _, _| {}).unwrap();
        let p = t.read_params().unwrap();
        eprintln!(
            "{algo} double-binary-trees: loss {:.4}, consensus acc {:.3}, bytes/agent {}",
            s.last.train_loss, s.last.consensus_acc, s.bytes_sent_per_agent
        );
        assert_eq!(s.topology, "double-binary-trees");
        assert!(p.iter().all(|v| v.is_finite()) && s.last.train_loss.is_finite());
        assert!(s.bytes_sent_per_agent > 0.0);
        // Not a spanning-tree source: the one-peer exponential graph is time-varying.
        let mut bad = small_train(algo, Topology::Exponential);
        bad.agents = 8;
        match bad.validate() {
            Err(Error::BadParameter { name, .. }) => assert_eq!(name, "topology"),
            other => panic!("{algo} exponential: expected BadParameter, got {other:?}"),
        }
    }
}
