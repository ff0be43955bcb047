//! CGA (ALGORITHMS.md §5.9): an f64 host simulation of the exact order on both pipelines (NGM:
//! damped gossip, self-gradient post-gossip, cross-gradients C_{j,i} at the pre-gossip models,
//! the per-tensor QP of `cga_qp`, weight decay, momentum; original: every gradient at x^t,
//! the QP, then x ← Σ_j π_ij x_j and the momentum step) on heterogeneous quadratics
//! with two tensors, on every target; bytes as NGM_dv (two rounds); dispatches independent of
//! n and the degree; MLP training above chance (also CompCGA, whose bytes are CompNGM_dv's); bit-identical checkpoint resume (the previous
//! v are host state). The QP itself (the §5.9 vectors, KKT against brute force) is tested in
//! src/algo/cga_qp.rs; trainer tracking of every target in tests/algorithms.rs.
//!
//! Tolerances: reference vs simulation 1e-9 (both f64) over 30 steps; f32 targets 1e-4
//! relative plus 1e-4·max|x| after 8 steps (the dynamics amplify rounding; see the test).

mod common;

use common::{assert_close, small_run, train, Target};
use swarmgrad::algo::{
    cga_qp, AlgoOptions, AlgoSetup, Algorithm, CgaPipeline, LocalHyper, Quadratics,
};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::graph::{MixingRule, Topology};
use swarmgrad::model::Tensor;
use swarmgrad::train::{TrainConfig, Trainer};

const D: usize = 10;
// Each tensor longer than the largest degree (4, the torus), so P = BBᵀ is regular.
const TENSORS: [Tensor; 2] = [Tensor { offset: 0, len: 6 }, Tensor { offset: 6, len: 4 }];

/// Agent i's H_i (row-major) and c_i: heterogeneous, so cross-gradients conflict.
fn problem(n: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let h = (0..n)
        .map(|i| {
            (0..D * D)
                .map(|k| {
                    let (r, c) = (k / D, k % D);
                    if r == c {
                        1.0 + 0.25 * i as f64
                    } else {
                        0.0625 * ((i + 2 * r + c) % 5) as f64 - 0.125
                    }
                })
                .collect()
        })
        .collect();
    let c = (0..n)
        .map(|i| {
            (0..D)
                .map(|k| (i as f64 - 2.0) * (1.0 + k as f64))
                .collect()
        })
        .collect();
    (h, c)
}

fn init(n: usize) -> Vec<f32> {
    (0..n * D).map(|k| (k % 7) as f32 * 0.5 - 1.0).collect()
}

fn hyper() -> LocalHyper {
    LocalHyper {
        momentum: 0.875,
        nesterov: true,
        weight_decay: 0.0078125,
    }
}

const GAMMA: f64 = 0.5;

/// Steps after which the f32 targets are compared (see [`cga_follows_the_exact_order`]).
const F32_STEPS: usize = 8;

/// §5.9 in f64 on the NGM pipeline or the original one; x after each step.
fn simulate(topology: Topology, n: usize, steps: u64, lr: f64, original: bool) -> Vec<Vec<f64>> {
    let g = topology.static_graph(n, 7).unwrap();
    let w = MixingRule::MetropolisHastings
        .matrix(&g)
        .unwrap()
        .to_dense();
    let (h, cc) = problem(n);
    let hy = hyper();
    let grad = |i: usize, x: &[f64]| -> Vec<f64> {
        (0..D)
            .map(|r| (0..D).map(|k| h[i][r * D + k] * x[k]).sum::<f64>() - cc[i][r])
            .collect()
    };
    let mut x: Vec<Vec<f64>> = init(n)
        .chunks(D)
        .map(|s| s.iter().map(|&v| v as f64).collect())
        .collect();
    let mut m = vec![vec![0.0; D]; n];
    let mut prev: Vec<Vec<Vec<f64>>> = (0..n)
        .map(|i| vec![vec![0.5; g.neighbors(i).len()]; TENSORS.len()])
        .collect();
    let mut out = Vec::new();
    for _ in 0..steps {
        // The self-gradient's model: x^{t+½} (NGM pipeline) or x^t (original).
        let half: Vec<Vec<f64>> = if original {
            x.clone()
        } else {
            (0..n)
                .map(|i| {
                    (0..D)
                        .map(|k| {
                            let wx: f64 = (0..n).map(|j| w[i][j] * x[j][k]).sum();
                            x[i][k] + GAMMA * (wx - x[i][k])
                        })
                        .collect()
                })
                .collect()
        };
        let mut next = Vec::new();
        for i in 0..n {
            let nb = g.neighbors(i);
            let pi = 1.0 / (nb.len() + 1) as f64;
            let a: Vec<f64> = grad(i, &half[i]).iter().map(|v| pi * v).collect();
            let b: Vec<Vec<f64>> = nb
                .iter()
                .map(|&j| grad(j, &x[i]).iter().map(|v| pi * v).collect())
                .collect();
            let mut gh = [0.0; D];
            for (k, t) in TENSORS.iter().enumerate() {
                let r = t.offset..t.offset + t.len;
                let dot = |u: &[f64], v: &[f64]| -> f64 { r.clone().map(|e| u[e] * v[e]).sum() };
                let q = b.len();
                let p: Vec<f64> = (0..q * q).map(|e| dot(&b[e / q], &b[e % q])).collect();
                let ba: Vec<f64> = b.iter().map(|bj| dot(bj, &a)).collect();
                let v = cga_qp(&p, &ba, &prev[i][k]).unwrap();
                for e in r.clone() {
                    gh[e] = a[e] + b.iter().zip(&v).map(|(bj, vj)| vj * bj[e]).sum::<f64>();
                }
                prev[i][k] = v;
            }
            // The step starts from x^{t+½} (NGM pipeline) or Σ_j π_ij x_j^t (original).
            let mut xi: Vec<f64> = if original {
                (0..D)
                    .map(|k| pi * (x[i][k] + nb.iter().map(|&j| x[j][k]).sum::<f64>()))
                    .collect()
            } else {
                half[i].clone()
            };
            let from = xi.clone();
            for k in 0..D {
                let gk = gh[k] + hy.weight_decay * from[k];
                m[i][k] = hy.momentum * m[i][k] + gk;
                xi[k] -= lr * (gk + hy.momentum * m[i][k]);
            }
            next.push(xi);
        }
        x = next;
        out.push(x.concat());
    }
    out
}

fn run(
    be: &mut dyn Backend,
    topology: Topology,
    n: usize,
    steps: u64,
    lr: f64,
    pipeline: CgaPipeline,
) -> Vec<Vec<f64>> {
    let (h, c) = problem(n);
    let mut obj = Quadratics::new(be, &h, &c).unwrap();
    let options = AlgoOptions {
        ngm_gamma: GAMMA,
        cga_pipeline: pipeline,
        ..Default::default()
    };
    let x0 = init(n);
    let setup = AlgoSetup {
        agents: n,
        stride: D,
        d: D,
        init: &x0,
        topology: &topology,
        mixing: &MixingRule::MetropolisHastings,
        hyper: hyper(),
        seed: 7,
        options: &options,
        tensors: &TENSORS,
    };
    let mut a = Algorithm::Cga.build(be, &setup).unwrap();
    let mut xs = Vec::new();
    for t in 0..steps {
        a.record_step(be, &mut obj, t, lr).unwrap();
        be.flush().unwrap();
        xs.push(be.read_f32(a.params()).unwrap());
    }
    xs
}

target_tests!([reference, gpu, native] cga_follows_the_exact_order);
fn cga_follows_the_exact_order(t: &Target) {
    let (steps, lr) = (30u64, 0.0625);
    let last = steps as usize - 1;
    let cases = [
        (Topology::Ring, 6),
        (Topology::Chain, 5),
        (Topology::Torus, 9),
    ];
    for ((topology, n), pipeline) in cases
        .into_iter()
        .flat_map(|c| [(c, CgaPipeline::Ngm), (c, CgaPipeline::Original)])
    {
        let original = pipeline == CgaPipeline::Original;
        let want = simulate(topology, n, steps, lr, original);
        let mut be = t.backend();
        let got = run(be.as_mut(), topology, n, steps, lr, pipeline);
        let what = format!("{topology} n={n} {pipeline:?} on {}", be.describe());
        if t.is_reference() {
            for s in [0, 1, last] {
                assert_close(&format!("{what} step {s}"), &got[s], &want[s], 0.0, 1e-9);
            }
        } else {
            // CGA's dynamics amplify a perturbation (the QP's active sets switch, and v has no
            // upper bound): f32 rounding grows from 1e-7 at step 0 to 1e-5..6e-5 at step 9 and
            // to 1e-2 by step 15 on the torus (measured, native and GPUs alike), so f32 targets
            // are held at step 8, where it is still f32 rounding carried through the steps.
            let s = F32_STEPS - 1;
            let scale = want[s].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert_close(&what, &got[s], &want[s], 1e-4, 1e-4 * scale);
        }
    }
}

/// [`small_run`] (mlp:16-16-10) for `algo` at γ = ½.
fn mlp(algo: Algorithm, topology: Topology, agents: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        topology,
        agents,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        eval_every: steps,
        options: AlgoOptions {
            ngm_alpha: 1.0,
            ngm_gamma: 0.5,
            ..Default::default()
        },
        ..small_run(algo)
    }
}

#[test]
fn bytes_are_ngm_dv_and_dispatches_do_not_depend_on_agents_or_degree() {
    let run =
        |algo, topology, n| train(mlp(algo, topology, n, 3), Box::new(ReferenceBackend::new())).0;
    assert_eq!(
        run(Algorithm::Cga, Topology::Ring, 5).bytes_sent_per_agent,
        run(Algorithm::Ngm, Topology::Ring, 5).bytes_sent_per_agent
    );
    let ring = run(Algorithm::Cga, Topology::Ring, 8).dispatches_per_step;
    let torus = run(Algorithm::Cga, Topology::Torus, 16).dispatches_per_step;
    eprintln!("cga: {ring} dispatches per step on a ring of 8, {torus} on a 4×4 torus");
    assert_eq!(ring, torus);
}

#[test]
fn compcga_bytes_are_compngm_dv_and_dispatches_do_not_depend_on_agents_or_degree() {
    let run =
        |algo, topology, n| train(mlp(algo, topology, n, 3), Box::new(ReferenceBackend::new())).0;
    assert_eq!(
        run(Algorithm::CompCga, Topology::Ring, 5).bytes_sent_per_agent,
        run(Algorithm::CompNgm, Topology::Ring, 5).bytes_sent_per_agent
    );
    assert!(
        run(Algorithm::CompCga, Topology::Ring, 5).bytes_sent_per_agent
            < run(Algorithm::Cga, Topology::Ring, 5).bytes_sent_per_agent
    );
    let ring = run(Algorithm::CompCga, Topology::Ring, 8).dispatches_per_step;
    let torus = run(Algorithm::CompCga, Topology::Torus, 16).dispatches_per_step;
    assert_eq!(ring, torus);
}

#[test]
fn cga_and_compcga_learn() {
    for algo in [Algorithm::Cga, Algorithm::CompCga] {
        let (s, _) = train(
            mlp(algo, Topology::Ring, 8, 300),
            Box::new(NativeBackend::new(2).unwrap()),
        );
        eprintln!(
            "{algo}: consensus accuracy {:.3} after 300 steps",
            s.last.consensus_acc
        );
        assert!(
            s.last.consensus_acc > 0.5,
            "{algo}: {}",
            s.last.consensus_acc
        );
    }
}

#[test]
fn checkpoint_resume_is_bit_identical() {
    for algo in [Algorithm::Cga, Algorithm::CompCga] {
        resume_is_bit_identical(algo);
    }
}

fn resume_is_bit_identical(algo: Algorithm) {
    let c = mlp(algo, Topology::Ring, 5, 30);
    let ck = std::env::temp_dir().join(format!("swarmgrad-{algo}-{}.bin", std::process::id()));
    let mut a = Trainer::new(c.clone(), Box::new(ReferenceBackend::new())).unwrap();
    let sa = a.run(|_, _, _| {}).unwrap();
    let pa = a.read_params().unwrap();
    let mut b = Trainer::new(c.clone(), Box::new(ReferenceBackend::new())).unwrap();
    b.run_until(13, |_, _, _| {}).unwrap();
    b.save_checkpoint(&ck).unwrap();
    let mut r = Trainer::new(c, Box::new(ReferenceBackend::new())).unwrap();
    r.load_checkpoint(&ck).unwrap();
    let sr = r.run(|_, _, _| {}).unwrap();
    let pr = r.read_params().unwrap();
    let bits = |p: &[f64]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&pa), bits(&pr), "resumed parameters differ");
    assert_eq!(sa.last, sr.last);
    let _ = std::fs::remove_file(&ck);
}
