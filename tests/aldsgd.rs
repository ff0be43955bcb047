//! AL-DSGD (ALGORITHMS.md §5.16) on the CPU reference, the native backend and every GPU
//! backend: A + w_B + w_D = 1 (identical models stay unchanged), the collapsed affine step on a
//! hand-built case and against the host matrix over many MATCHA-core steps (each step's matrix
//! measured by running on identity slabs with lr 0), rotation and the two flag counters, the
//! byte ledger (models plus the loss/degree scalars on pull steps), parity and MLP training.
//!
//! Tolerances: realised matrices vs the host ones 1e-6 (f32 weights); identical models 1e-6
//! after 50 steps; f32 backends vs the CPU reference after 60 toy steps 1e-4 relative + 1e-4
//! absolute; MLP trainer params 1e-3 relative + 1e-4 absolute (as the other algorithms).

mod common;

use std::sync::OnceLock;

use common::{assert_close, small_run, train, Target};
use swarmgrad::algo::{
    aldsgd_flag_seeds, aldsgd_matrix, aldsgd_round, aldsgd_schedules, AlgoOptions, AlgoSetup,
    Algorithm, JobGradients, JobList, LocalHyper, MatchaMode, Objective, PullWeights, Quadratics,
};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::{Backend, Buf, BufKind};
use swarmgrad::graph::{MixingRule, Topology};
use swarmgrad::train::TrainConfig;

const N: usize = 8;

/// A quadratic objective that also reports per-agent minibatch losses `loss(t, i)`.
struct WithLosses {
    inner: Quadratics,
    stats: Buf,
    loss: fn(u64, usize) -> f64,
}

impl WithLosses {
    fn new(be: &mut dyn Backend, d: usize, loss: fn(u64, usize) -> f64) -> Self {
        WithLosses {
            inner: Quadratics::constants(be, &vec![vec![0.0; d]; N]).unwrap(),
            stats: be.alloc(BufKind::F32, 2 * N, "losses").unwrap(),
            loss,
        }
    }
}

impl Objective for WithLosses {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        p: Buf,
        g: Buf,
        t: u64,
    ) -> swarmgrad::Result<()> {
        self.inner.record_gradients(be, p, g, t)?;
        let mut v: Vec<f64> = (0..N).map(|i| (self.loss)(t, i)).collect();
        v.extend(std::iter::repeat_n(0.0, N));
        be.write_f64(self.stats, 0, &v)
    }
    fn prepare_jobs(
        &mut self,
        be: &mut dyn Backend,
        jobs: &[(usize, usize)],
    ) -> swarmgrad::Result<JobList> {
        self.inner.prepare_jobs(be, jobs)
    }
    fn record_job_gradients(
        &mut self,
        be: &mut dyn Backend,
        j: JobGradients<'_>,
    ) -> swarmgrad::Result<()> {
        self.inner.record_job_gradients(be, j)
    }
    fn loss_stats(&self) -> Option<(Buf, usize)> {
        Some((self.stats, 1))
    }
}

fn options(core: MatchaMode, c: [f64; 4], pull_every: u64) -> AlgoOptions {
    AlgoOptions {
        aldsgd_core: core,
        aldsgd_c1: c[0],
        aldsgd_c2: c[1],
        aldsgd_p1: c[2],
        aldsgd_p2: c[3],
        aldsgd_pull_every: pull_every,
        ..Default::default()
    }
}

const README: [f64; 4] = [0.3, 0.1, 0.2, 0.2];

fn setup<'a>(d: usize, init: &'a [f32], h: LocalHyper, o: &'a AlgoOptions) -> AlgoSetup<'a> {
    AlgoSetup {
        agents: N,
        stride: d,
        d,
        init,
        topology: &Topology::Ring,
        mixing: &MixingRule::MetropolisHastings,
        hyper: h,
        seed: 5,
        options: o,
        tensors: &[],
    }
}

/// Each step's realised matrix over the sent models (identity slabs, lr 0) and its bytes.
fn realised(o: &AlgoOptions, loss: fn(u64, usize) -> f64, steps: u64) -> Vec<(Vec<f64>, Vec<u64>)> {
    let mut be = ReferenceBackend::new();
    let eye: Vec<f32> = (0..N * N)
        .map(|k| if k % (N + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let mut obj = WithLosses::new(&mut be, N, loss);
    let mut a = Algorithm::AlDsgd
        .build(&mut be, &setup(N, &eye, LocalHyper::default(), o))
        .unwrap();
    (0..steps)
        .map(|t| {
            be.write_f32(a.params(), 0, &eye).unwrap();
            a.record_step(&mut be, &mut obj, t, 0.0).unwrap();
            be.flush().unwrap();
            (be.read_f32(a.params()).unwrap(), a.bytes_sent().to_vec())
        })
        .collect()
}

#[test]
fn pull_weights_sum_to_one_and_identical_models_stay() {
    let w = PullWeights::new(0.3, 0.1, 0.2, 0.2);
    assert_close(
        "README weights",
        &[w.a, w.w_b, w.w_d],
        &[0.36, 0.38, 0.26],
        0.0,
        1e-12,
    );
    for c in [
        README,
        [0.0, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.7, 0.3],
        [0.2, 0.7, 0.1, 0.0],
    ] {
        let w = PullWeights::new(c[0], c[1], c[2], c[3]);
        assert!((w.a + w.w_b + w.w_d - 1.0).abs() < 1e-12, "{c:?}");
    }
    // Identical models, lr 0, varying losses, MATCHA core (degrees up to 4): unchanged.
    let d = 3;
    let x0: Vec<f32> = (0..N).flat_map(|_| [0.5f32, -0.25, 1.0]).collect();
    for core in [MatchaMode::Random, MatchaMode::FixedProcessor] {
        let o = options(core, README, 1);
        let mut be = ReferenceBackend::new();
        let mut obj = WithLosses::new(&mut be, d, |t, i| ((t as usize * 7 + i * 3) % 5) as f64);
        let mut a = Algorithm::AlDsgd
            .build(&mut be, &setup(d, &x0, LocalHyper::default(), &o))
            .unwrap();
        for t in 0..50 {
            a.record_step(&mut be, &mut obj, t, 0.0).unwrap();
            be.flush().unwrap();
        }
        let x = be.read_f32(a.params()).unwrap();
        let want: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        assert_close(&format!("{core:?}: identical models"), &x, &want, 0.0, 1e-6);
    }
}

#[test]
fn the_step_is_the_collapsed_affine_formula_on_a_hand_built_case() {
    // FixedProcessor, t = 0: G_B (graph 1), counter 0 → its matching 1 = {(4,2), (0,5)}, α = 2/7.
    // Losses: 2 below 4, 0 below 5. All active degrees are 1, so D = self everywhere.
    let o = options(MatchaMode::FixedProcessor, README, 1);
    let loss = |_t: u64, i: usize| [0.5, 9.0, 0.25, 9.0, 1.0, 2.0, 9.0, 9.0][i];
    let (w, bytes) = &realised(&o, loss, 1)[0];
    let a = 2.0 / 7.0;
    let (big_a, w_b, w_d) = (0.36, 0.38, 0.26);
    let mut want = vec![0.0; N * N];
    for i in [1, 3, 6, 7] {
        want[i * N + i] = 1.0;
    }
    // Agents 4 and 5 follow their lower-loss partner (B = partner, D = self).
    for (i, k) in [(4, 2), (5, 0)] {
        want[i * N + i] = big_a * (1.0 - a) + w_d;
        want[i * N + k] = big_a * a + w_b;
    }
    // Agents 2 and 0 are their own leaders (B = D = self).
    for (i, k) in [(2, 4), (0, 5)] {
        want[i * N + i] = big_a * (1.0 - a) + w_b + w_d;
        want[i * N + k] = big_a * a;
    }
    assert_close("hand-built AL-DSGD step", w, &want, 0.0, 1e-6);
    // 4d bytes to the partner plus loss and degree (8 bytes), for the four active agents.
    let msg = 4 * N as u64 + 8;
    assert_eq!(bytes, &vec![msg, 0, msg, 0, msg, msg, 0, 0]);
}

#[test]
fn many_matcha_core_steps_follow_the_host_matrix_with_rotation_and_counters() {
    let steps = 200;
    let o = options(MatchaMode::Random, README, 3);
    let loss = |t: u64, i: usize| ((t as usize * 5 + i * 11) % 7) as f64;
    let init = vec![0.0f32; N * N];
    let sc = aldsgd_schedules(&setup(N, &init, LocalHyper::default(), &o)).unwrap();
    let seeds = aldsgd_flag_seeds(5);
    let w = PullWeights::new(0.3, 0.1, 0.2, 0.2);
    let mut max_degree = 0;
    for (t, (got, bytes)) in realised(&o, loss, steps).iter().enumerate() {
        let t = t as u64;
        let (c, counter) = aldsgd_round(t);
        assert_eq!((c, counter), (usize::from(t.is_multiple_of(2)), t / 2));
        let flags = sc[c].flags(seeds[c], counter);
        let losses: Vec<f64> = (0..N).map(|i| loss(t, i)).collect();
        let pull = t.is_multiple_of(3);
        let want = aldsgd_matrix(&sc[c], &flags, &losses, pull, w)
            .to_dense()
            .concat();
        assert_close(&format!("step {t}"), got, &want, 0.0, 1e-6);
        for (i, &sent) in bytes.iter().enumerate() {
            let d = sc[c].active_partners(&flags, i).len() as u64;
            max_degree = max_degree.max(d);
            let scalars = if pull { 8 * d } else { 0 };
            assert_eq!(sent, 4 * N as u64 * d + scalars, "step {t}, agent {i}");
        }
    }
    assert!(
        max_degree >= 2,
        "degrees above 1 occur, so D is not always self"
    );
}

#[test]
fn fixed_processor_rotation_walks_both_counters() {
    // No pull (A = 1): each step's matrix is the communicator's plain mixing.
    let o = options(MatchaMode::FixedProcessor, [0.0; 4], 1);
    let got = realised(&o, |_, _| 0.0, 4);
    // t = 0: G_B counter 0 (matching 1); t = 1: G_A counter 0 (matching 1);
    // t = 2: G_B counter 1 (matching 0); t = 3: G_A counter 1 (matching 0).
    let pairs: [&[(usize, usize)]; 4] = [
        &[(4, 2), (0, 5)],
        &[(1, 7), (3, 6)],
        &[(4, 6), (5, 2), (3, 1), (7, 0)],
        &[(1, 5), (6, 7), (0, 4), (2, 3)],
    ];
    let a = 2.0 / 7.0;
    for (t, ((w, _), pairs)) in got.iter().zip(pairs).enumerate() {
        let mut want = vec![0.0; N * N];
        for i in 0..N {
            want[i * N + i] = 1.0;
        }
        for &(u, v) in pairs {
            for (i, k) in [(u, v), (v, u)] {
                want[i * N + i] = 1.0 - a;
                want[i * N + k] = a;
            }
        }
        assert_close(&format!("FixedProcessor step {t}"), w, &want, 0.0, 1e-6);
    }
    // Agents other than 8 are refused with the reason.
    let init = vec![0.0f32; 6];
    let e = Algorithm::AlDsgd
        .build(
            &mut ReferenceBackend::new(),
            &AlgoSetup {
                agents: 6,
                stride: 1,
                d: 1,
                ..setup(1, &init, LocalHyper::default(), &o)
            },
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("8 nodes"), "{e}");
}

fn toy_run(be: &mut dyn Backend, o: &AlgoOptions) -> Vec<f64> {
    let d = 3;
    let targets: Vec<Vec<f64>> = (0..N)
        .map(|i| (0..d).map(|k| i as f64 + 0.25 * k as f64).collect())
        .collect();
    let init: Vec<f32> = (0..N * d).map(|k| (k % 5) as f32 * 0.5 - 1.0).collect();
    let mut obj = Quadratics::constants(be, &targets).unwrap();
    let h = LocalHyper {
        momentum: 0.875,
        nesterov: true,
        weight_decay: 0.0078125,
    };
    let mut a = Algorithm::AlDsgd.build(be, &setup(d, &init, h, o)).unwrap();
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
    for core in [MatchaMode::FixedProcessor, MatchaMode::Random] {
        let o = options(core, README, 1);
        let want = toy_run(&mut ReferenceBackend::new(), &o);
        assert_close(
            &format!("aldsgd {core:?} on {name}"),
            &toy_run(be.as_mut(), &o),
            &want,
            1e-4,
            1e-4,
        );
    }
}

/// [`small_run`] for AL-DSGD on [`N`] agents (heterogeneous initial models) at learning rate
/// 0.05 and momentum 0.9, with one evaluation at the end.
fn mlp(steps: u64) -> TrainConfig {
    TrainConfig {
        agents: N,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        eval_every: steps,
        identical_init: false,
        ..small_run(Algorithm::AlDsgd)
    }
}

/// The reference's final parameters of the tracking run, shared by every target's test.
static REFERENCE: OnceLock<Vec<f64>> = OnceLock::new();

target_tests!([gpu, native] trainer_runs_aldsgd_like_the_reference);
fn trainer_runs_aldsgd_like_the_reference(t: &Target) {
    common::trains_like_the_reference(t, "aldsgd", &REFERENCE, || mlp(20));
}

#[test]
fn trainer_aldsgd_learns() {
    let (s, _) = train(mlp(300), Box::new(NativeBackend::new(2).unwrap()));
    eprintln!(
        "aldsgd: consensus accuracy {:.3}, mean local {:.3}, {} bytes/agent",
        s.last.consensus_acc, s.last.mean_local_acc, s.bytes_sent_per_agent
    );
    assert!(s.last.consensus_acc > 0.5, "{}", s.last.consensus_acc);
}
