//! NGM (ALGORITHMS.md §5.7) on the CPU reference, the native backend and every GPU backend:
//! an f64 host simulation of the exact order (damped gossip, self-gradient post-gossip,
//! cross-gradients pre-gossip, π-weighted combination, weight decay, momentum), the first-step
//! identities of the issue (NGM_mv = CTA momentum D-PSGD, NGM_dv = π-average of the agents' own
//! gradients, blends), the byte ledger (one vs two rounds), dispatches independent of n and the
//! degree, MLP training through the trainer, and bit-identical checkpoint resume (also for
//! matcha and aldsgd).
//!
//! Tolerances: CPU reference vs f64 simulation 1e-9 (both f64; only summation order differs);
//! f32 backends (GPU, native) vs the simulation 1e-4 relative + 1e-4·max|x| absolute after
//! 40 steps (rounding of ~10 f32 operations per step on O(1) values, contracted by the
//! damped dynamics); MLP trainer params GPU vs CPU 1e-3 relative + 1e-4 absolute after 20 steps
//! (the bound the other algorithms' trainer tests use).

mod common;

use std::sync::OnceLock;

use common::{assert_close, small_run, train, Target};
use swarmgrad::algo::{
    Algo, AlgoOptions, AlgoSetup, Algorithm, DsgdOrder, LocalHyper, NgmPi, Quadratics,
};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::graph::{MixingRule, Topology};
use swarmgrad::train::{TrainConfig, Trainer};

const D: usize = 3;

/// Agent i's H_i (row-major, not symmetric, well conditioned) and c_i.
fn problem(n: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let h = (0..n)
        .map(|i| {
            (0..D * D)
                .map(|k| {
                    let (r, c) = (k / D, k % D);
                    if r == c {
                        1.0 + 0.125 * i as f64
                    } else {
                        0.0625 * ((i + 2 * r + c) % 5) as f64 - 0.125
                    }
                })
                .collect()
        })
        .collect();
    let c = (0..n)
        .map(|i| (0..D).map(|k| i as f64 - 0.5 * k as f64).collect())
        .collect();
    (h, c)
}

/// Heterogeneous initial models.
fn init(n: usize) -> Vec<f32> {
    (0..n * D).map(|k| (k % 7) as f32 * 0.5 - 1.0).collect()
}

fn options(alpha: f64, gamma: f64, pi: NgmPi) -> AlgoOptions {
    AlgoOptions {
        ngm_alpha: alpha,
        ngm_gamma: gamma,
        ngm_pi: pi,
        ..Default::default()
    }
}

struct Case {
    topology: Topology,
    n: usize,
    mixing: MixingRule,
    hyper: LocalHyper,
    options: AlgoOptions,
}

fn build(be: &mut dyn Backend, algo: Algorithm, c: &Case, x0: &[f32]) -> Box<dyn Algo> {
    algo.build(
        be,
        &AlgoSetup {
            agents: c.n,
            stride: D,
            d: D,
            init: x0,
            topology: &c.topology,
            mixing: &c.mixing,
            hyper: c.hyper,
            seed: 7,
            options: &c.options,
            tensors: &[],
        },
    )
    .unwrap()
}

/// Runs `steps` steps of `algo` on the quadratics of [`problem`]; returns x after each step
/// and the bytes of the last step.
fn run(
    be: &mut dyn Backend,
    algo: Algorithm,
    c: &Case,
    x0: &[f32],
    steps: u64,
    lr: f64,
) -> (Vec<Vec<f64>>, Vec<u64>) {
    let (h, cc) = problem(c.n);
    let mut obj = Quadratics::new(be, &h, &cc).unwrap();
    let mut a = build(be, algo, c, x0);
    let mut xs = Vec::new();
    for t in 0..steps {
        a.record_step(be, &mut obj, t, lr).unwrap();
        be.flush().unwrap();
        xs.push(be.read_f32(a.params()).unwrap());
    }
    (xs, a.bytes_sent().to_vec())
}

/// §5.7 in f64, in the exact order, on the quadratics of [`problem`]; x after each step.
fn simulate(c: &Case, x0: &[f32], steps: u64, lr: f64) -> Vec<Vec<f64>> {
    let n = c.n;
    let g = c.topology.static_graph(n, 7).unwrap();
    let w = c.mixing.matrix(&g).unwrap().to_dense();
    let (h, cc) = problem(n);
    let (alpha, gamma) = (c.options.ngm_alpha, c.options.ngm_gamma);
    let (beta, wd, nesterov) = (c.hyper.momentum, c.hyper.weight_decay, c.hyper.nesterov);
    let grad = |i: usize, x: &[f64]| -> Vec<f64> {
        (0..D)
            .map(|r| (0..D).map(|k| h[i][r * D + k] * x[k]).sum::<f64>() - cc[i][r])
            .collect()
    };
    let mut x: Vec<Vec<f64>> = x0
        .chunks(D)
        .map(|s| s.iter().map(|&v| v as f64).collect())
        .collect();
    let mut m = vec![vec![0.0; D]; n];
    let mut out = Vec::new();
    for _ in 0..steps {
        let half: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..D)
                    .map(|k| {
                        let wx: f64 = (0..n).map(|j| w[i][j] * x[j][k]).sum();
                        x[i][k] + gamma * (wx - x[i][k])
                    })
                    .collect()
            })
            .collect();
        let mut next = Vec::new();
        for i in 0..n {
            let nb = g.neighbors(i);
            let (pi_self, pi): (f64, Vec<f64>) = match c.options.ngm_pi {
                NgmPi::Uniform => {
                    let p = 1.0 / (nb.len() + 1) as f64;
                    (p, vec![p; nb.len()])
                }
                NgmPi::Weights => (w[i][i], nb.iter().map(|&j| w[i][j]).collect()),
            };
            let gi = grad(i, &half[i]);
            let mut gh: Vec<f64> = gi.iter().map(|v| pi_self * v).collect();
            for (&j, p) in nb.iter().zip(&pi) {
                let c_ij = grad(i, &x[j]); // ∇F_i(x_j^t)
                let c_ji = grad(j, &x[i]); // ∇F_j(x_i^t)
                for k in 0..D {
                    gh[k] += p * (alpha * c_ji[k] + (1.0 - alpha) * c_ij[k]);
                }
            }
            let mut xi = half[i].clone();
            for k in 0..D {
                let gk = gh[k] + wd * half[i][k];
                m[i][k] = beta * m[i][k] + gk;
                let u = if nesterov {
                    gk + beta * m[i][k]
                } else {
                    m[i][k]
                };
                xi[k] -= lr * u;
            }
            next.push(xi);
        }
        x = next;
        out.push(x.concat());
    }
    out
}

fn hyper() -> LocalHyper {
    LocalHyper {
        momentum: 0.875,
        nesterov: true,
        weight_decay: 0.0078125,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (topology, n, mixing) in [
        (Topology::Ring, 6, MixingRule::Uniform),
        (Topology::Chain, 5, MixingRule::MetropolisHastings),
        (Topology::Torus, 9, MixingRule::MetropolisHastings),
    ] {
        for (alpha, pi) in [
            (0.0, NgmPi::Uniform),
            (1.0, NgmPi::Uniform),
            (0.375, NgmPi::Weights),
        ] {
            v.push(Case {
                topology,
                n,
                mixing,
                hyper: hyper(),
                options: options(alpha, 0.5, pi),
            });
        }
    }
    v
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

target_tests!([reference, gpu, native] ngm_follows_the_exact_order);
fn ngm_follows_the_exact_order(t: &Target) {
    let steps = 40;
    let last = steps as usize - 1;
    let lr = 0.0625;
    let mut be = t.backend();
    let name = be.describe();
    for c in cases() {
        let what = format!(
            "{} n={} α={} π={:?}",
            c.topology, c.n, c.options.ngm_alpha, c.options.ngm_pi
        );
        let x0 = init(c.n);
        let want = simulate(&c, &x0, steps, lr);
        // The run moves (the comparison is not of two fixed points).
        assert!(max_diff(&want[0], &want[last]) > 1e-2, "{what}");
        let (got, _) = run(be.as_mut(), Algorithm::Ngm, &c, &x0, steps, lr);
        if t.is_reference() {
            for s in [0, 1, last] {
                let err = max_diff(&got[s], &want[s]);
                assert!(err < 1e-9, "{what}: CPU vs simulation at step {s}: {err:e}");
            }
        } else {
            let scale = want[last].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert_close(
                &format!("{what} on {name}"),
                &got[last],
                &want[last],
                1e-4,
                1e-4 * scale,
            );
        }
    }
}

/// The identical initial model of every agent.
fn identical(n: usize) -> Vec<f32> {
    (0..n).flat_map(|_| [0.5f32, -0.25, 1.0]).collect()
}

target_tests!([reference, gpu, native] ngm_mv_first_step_is_cta_momentum_dsgd);
fn ngm_mv_first_step_is_cta_momentum_dsgd(t: &Target) {
    // Identical models and γ = 1: x½ = Wx = x, C_{i,j} = ∇F_i(x) = g_i, ĝ = π(1 + deg)g = g on
    // a regular graph with uniform π; D-PSGD in the NGM repository's order (CTA) with uniform
    // weights takes the same step.
    let tol = if t.is_reference() { 1e-12 } else { 1e-6 };
    let mut be = t.backend();
    let name = be.describe();
    for (topology, n) in [(Topology::Ring, 8), (Topology::Torus, 9)] {
        let x0 = identical(n);
        let ngm = Case {
            topology,
            n,
            mixing: MixingRule::Uniform,
            hyper: hyper(),
            options: options(0.0, 1.0, NgmPi::Uniform),
        };
        let dsgd = Case {
            options: AlgoOptions {
                dsgd_order: DsgdOrder::Cta,
                ..Default::default()
            },
            ..ngm
        };
        let (a, _) = run(be.as_mut(), Algorithm::Ngm, &ngm, &x0, 1, 0.125);
        let (b, _) = run(be.as_mut(), Algorithm::Dsgd, &dsgd, &x0, 1, 0.125);
        let err = max_diff(&a[0], &b[0]);
        eprintln!("{topology} on {name}: NGM_mv vs CTA D-PSGD first step, max |Δ| = {err:e}");
        assert!(err < tol, "{topology} on {name}: {err:e}");
        assert!(max_diff(&a[0], &to_f64(&x0)) > 0.1, "the step moves");
    }
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

target_tests!([reference, gpu, native] ngm_dv_first_step_averages_the_neighbourhood_gradients);
fn ngm_dv_first_step_averages_the_neighbourhood_gradients(t: &Target) {
    // Hand check on the constants task f_i = ½‖x − t_i‖² (g_i = x − t_i) on a chain of 4 (degrees
    // 1 2 2 1), uniform π, plain SGD, identical models: C_{j,i} = ∇F_j(x) = g_j, so
    // x_i ← x − η·(1/(deg_i + 1))·Σ_{j ∈ N_i ∪ {i}} (x − t_j).
    let n = 4;
    let targets: Vec<Vec<f64>> = (0..n).map(|i| vec![i as f64; D]).collect();
    let x0 = identical(n);
    let case = Case {
        topology: Topology::Chain,
        n,
        mixing: MixingRule::MetropolisHastings,
        hyper: LocalHyper::default(),
        options: options(1.0, 0.1, NgmPi::Uniform),
    };
    // Neighbourhoods {0,1}, {0,1,2}, {1,2,3}, {2,3}: mean targets 0.5, 1, 2, 2.5.
    let mean_t = [0.5, 1.0, 2.0, 2.5];
    let lr = 0.25;
    let want: Vec<f64> = (0..n)
        .flat_map(|i| (0..D).map(move |k| (i, k)))
        .map(|(i, k)| {
            let x = x0[k] as f64;
            x - lr * (x - mean_t[i])
        })
        .collect();
    let mut be = t.backend();
    let name = be.describe();
    let mut obj = Quadratics::constants(be.as_mut(), &targets).unwrap();
    let mut a = build(be.as_mut(), Algorithm::Ngm, &case, &x0);
    a.record_step(be.as_mut(), &mut obj, 0, lr).unwrap();
    be.flush().unwrap();
    let got = be.read_f32(a.params()).unwrap();
    let tol = if t.is_reference() { 1e-12 } else { 1e-6 };
    let err = max_diff(&got, &want);
    assert!(err < tol, "{name}: NGM_dv first step vs hand check {err:e}");
}

#[test]
fn an_alpha_blend_is_the_blend_of_the_combined_gradients() {
    // Plain SGD: x¹(α) = x½ − η·ĝ(α) with x½ independent of α, so x¹(α) = α·x¹(1) + (1−α)·x¹(0).
    let n = 6;
    let x0 = init(n);
    let case = |alpha: f64| Case {
        topology: Topology::Ring,
        n,
        mixing: MixingRule::MetropolisHastings,
        hyper: LocalHyper::default(),
        options: options(alpha, 0.5, NgmPi::Uniform),
    };
    let mut be = ReferenceBackend::new();
    let x = |be: &mut ReferenceBackend, a: f64| run(be, Algorithm::Ngm, &case(a), &x0, 1, 0.25).0;
    let (mv, dv) = (x(&mut be, 0.0), x(&mut be, 1.0));
    assert!(max_diff(&mv[0], &dv[0]) > 1e-2, "mv and dv differ here");
    for alpha in [0.25, 0.5, 0.875] {
        let got = x(&mut be, alpha);
        let want: Vec<f64> = mv[0]
            .iter()
            .zip(&dv[0])
            .map(|(m, d)| alpha * d + (1.0 - alpha) * m)
            .collect();
        let err = max_diff(&got[0], &want);
        assert!(err < 1e-12, "α = {alpha}: {err:e}");
    }
}

#[test]
fn bytes_count_one_round_for_mv_and_two_for_dv() {
    // Chain of 5: degrees 1 2 2 2 1; d = 3 floats, 12 bytes per message and neighbour.
    let degrees = [1u64, 2, 2, 2, 1];
    for (alpha, rounds) in [(0.0, 1u64), (0.5, 2), (1.0, 2)] {
        let c = Case {
            topology: Topology::Chain,
            n: 5,
            mixing: MixingRule::MetropolisHastings,
            hyper: hyper(),
            options: options(alpha, 0.1, NgmPi::Uniform),
        };
        let (_, bytes) = run(
            &mut ReferenceBackend::new(),
            Algorithm::Ngm,
            &c,
            &init(5),
            2,
            0.1,
        );
        let want: Vec<u64> = degrees.iter().map(|d| rounds * 12 * d).collect();
        assert_eq!(bytes, want, "α = {alpha}");
    }
}

#[test]
fn options_are_validated_with_the_flag_named() {
    let c = Case {
        topology: Topology::Ring,
        n: 4,
        mixing: MixingRule::MetropolisHastings,
        hyper: hyper(),
        options: options(1.5, 0.1, NgmPi::Uniform),
    };
    let setup = |o: &AlgoOptions| {
        Algorithm::Ngm
            .build(
                &mut ReferenceBackend::new(),
                &AlgoSetup {
                    agents: c.n,
                    stride: D,
                    d: D,
                    init: &init(c.n),
                    topology: &c.topology,
                    mixing: &c.mixing,
                    hyper: c.hyper,
                    seed: 7,
                    options: o,
                    tensors: &[],
                },
            )
            .err()
            .map(|e| e.to_string())
    };
    assert!(setup(&c.options).unwrap().contains("ngm-alpha"));
    assert!(setup(&options(0.5, 0.0, NgmPi::Uniform))
        .unwrap()
        .contains("ngm-gamma"));
    assert!(setup(&options(0.0, 1.0, NgmPi::Weights)).is_none());
}

/// [`small_run`] for NGM (α = γ = ½, uniform π) at learning rate 0.05 and momentum 0.9, with
/// one evaluation at the end.
fn mlp(topology: Topology, agents: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        topology,
        agents,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        eval_every: steps,
        options: options(0.5, 0.5, NgmPi::Uniform),
        ..small_run(Algorithm::Ngm)
    }
}

#[test]
fn dispatches_per_step_do_not_depend_on_agents_or_degree() {
    let per_step = |topology, n| {
        train(mlp(topology, n, 4), Box::new(ReferenceBackend::new()))
            .0
            .dispatches_per_step
    };
    let ring = per_step(Topology::Ring, 8);
    let torus = per_step(Topology::Torus, 16);
    eprintln!("ngm: {ring} dispatches per step on a ring of 8, {torus} on a 4×4 torus");
    assert_eq!(ring, torus);
}

/// The reference's final parameters of the tracking run, shared by every target's test.
static REFERENCE: OnceLock<Vec<f64>> = OnceLock::new();

target_tests!([gpu, native] trainer_runs_ngm_like_the_reference);
fn trainer_runs_ngm_like_the_reference(t: &Target) {
    common::trains_like_the_reference(t, "ngm", &REFERENCE, || mlp(Topology::Ring, 5, 20));
}

#[test]
fn trainer_ngm_learns() {
    // Clearly above chance (10 classes) on the synthetic task, NGM_dv and NGM_mv.
    for alpha in [1.0, 0.0] {
        let mut c = mlp(Topology::Ring, 8, 300);
        c.options = options(alpha, 0.5, NgmPi::Uniform);
        c.eval_every = 300;
        let (s, _) = train(c, Box::new(NativeBackend::new(2).unwrap()));
        eprintln!(
            "ngm α = {alpha}: consensus accuracy {:.3}, mean local {:.3}, {} bytes/agent",
            s.last.consensus_acc, s.last.mean_local_acc, s.bytes_sent_per_agent
        );
        assert!(
            s.last.consensus_acc > 0.5,
            "α = {alpha}: {}",
            s.last.consensus_acc
        );
    }
}

#[test]
fn checkpoint_resume_is_bit_identical_for_ngm_matcha_and_aldsgd() {
    // The job list is registered again on the first step after a resume; MATCHA's and
    // AL-DSGD's flags are functions of (seed, t): a resumed run must equal the uninterrupted one.
    for algo in [Algorithm::Ngm, Algorithm::Matcha, Algorithm::AlDsgd] {
        let mut c = mlp(Topology::Ring, 8, 30);
        c.algo = algo;
        c.eval_every = 10;
        let ck = std::env::temp_dir().join(format!(
            "swarmgrad-ngm-ckpt-{algo}-{}.bin",
            std::process::id()
        ));
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
        assert_eq!(bits(&pa), bits(&pr), "{algo}: resumed parameters differ");
        assert_eq!(sa.last, sr.last, "{algo}: last evaluation");
        assert_eq!(
            sa.bytes_sent_per_agent, sr.bytes_sent_per_agent,
            "{algo}: bytes"
        );
        let _ = std::fs::remove_file(&ck);
    }
}
