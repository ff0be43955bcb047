//! Convolutional models through the trainer: `cnn5` trained by one algorithm of each family
//! (dsgd: gossip; qgm: quasi-global momentum; relaysgd: relays on a chain; ngm: cross-gradients
//! over a job list) on the native backend and every GPU backend, tracking the f64 reference,
//! and a small residual network (identity and projection shortcuts) the same way under ngm;
//! tiled job lists equal untiled ones;
//! dispatches per step independent of the number of agents; the typed error for activations
//! over the adapter's limits, before anything is allocated.
//!
//! The data: the synthetic Gaussian task with 64 features seen as 1×8×8 images (cnn5 then
//! flattens 64×1×1 into its dense layer), 10 classes, batch 2, 4 agents. Tolerance: the
//! trained parameters within 1e-4·|x| + 1e-5 of the reference after 4 steps at lr 0.05 with
//! momentum 0.9, while the steps move weights by up to about 0.1 (checked, so a pass that did
//! nothing could not pass). Measured here: at most 3e-7 on every backend and family. An f32
//! forward and backward through four convolutions and EvoNorms is good to about 1e-6 relative
//! per gradient (EvoNorm divides by a group's standard deviation, the largest amplifier), and
//! the runs also differ by the f32 rounding of the initial parameters.

mod common;

use std::sync::OnceLock;

use common::{assert_close, Target};
use swarmgrad::algo::{AlgoOptions, Algorithm, NgmPi};
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::{Backend, ImageShape};
use swarmgrad::data::{synthetic_train_test, Dataset};
use swarmgrad::graph::Topology;
use swarmgrad::model::pass::{Minibatch, Pass, PassOptions};
use swarmgrad::model::Model;
use swarmgrad::train::{Summary, TrainConfig, Trainer};
use swarmgrad::Error;

/// The synthetic task as `side × side` one-channel images.
fn images(side: usize, n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let (train, test) = synthetic_train_test(n_train, n_test, 10, side * side, 3.0, 5).unwrap();
    let shape = swarmgrad::data::ImageShape {
        channels: 1,
        height: side,
        width: side,
    };
    (
        train.with_shape(shape).unwrap(),
        test.with_shape(shape).unwrap(),
    )
}

fn data() -> &'static (Dataset, Dataset) {
    static DATA: OnceLock<(Dataset, Dataset)> = OnceLock::new();
    DATA.get_or_init(|| images(8, 400, 8))
}

fn config(algo: Algorithm, model: &str, agents: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        algo,
        topology: if algo == Algorithm::RelaySgd {
            Topology::Chain
        } else {
            Topology::Ring
        },
        agents,
        partition: "iid".into(),
        alpha: None,
        model: Some(model.into()),
        batch: 2,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        epochs: None,
        eval_every: steps,
        seed: 11,
        options: AlgoOptions {
            ngm_alpha: 0.5,
            ngm_gamma: 0.5,
            ngm_pi: NgmPi::Uniform,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(c: TrainConfig, be: Box<dyn Backend>) -> (Summary, Vec<f64>) {
    let (train, test) = data();
    let mut t = Trainer::with_data(c, be, train, test).unwrap();
    let s = t.run(|_, _, _| {}).unwrap();
    (s, t.read_params().unwrap())
}

const STEPS: u64 = 4;

fn tracks_the_reference(
    t: &Target,
    algo: Algorithm,
    spec: &str,
    cell: &'static OnceLock<Vec<f64>>,
) {
    let c = || config(algo, spec, 4, STEPS);
    let want = cell.get_or_init(|| {
        let (s, p) = run(c(), Box::new(ReferenceBackend::new()));
        assert!(s.last.train_loss.is_finite());
        p
    });
    // The run must move the weights well beyond the tolerance (a pass that computed nothing
    // would track the reference trivially).
    let (train, _) = data();
    let model = Model::parse(spec, swarmgrad::model::input_shape(train), 10).unwrap();
    let init = model.init(4, c().seed, c().identical_init);
    let moved = want
        .iter()
        .zip(&init)
        .map(|(a, &b)| (a - b as f64).abs())
        .fold(0.0, f64::max);
    assert!(moved > 0.01, "{algo}: the weights moved by at most {moved}");
    eprintln!("{algo}: the weights moved by up to {moved}");
    let be = t.backend();
    let name = be.describe();
    let (s, p) = run(c(), be);
    assert!(s.last.train_loss.is_finite());
    let diff = p
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!("{algo} on {name}: largest difference from the reference {diff:e}");
    assert_close(
        &format!("{spec} {algo} params on {name}"),
        &p,
        want,
        1e-4,
        1e-5,
    );
}

macro_rules! family {
    ($name:ident, $algo:expr, $spec:expr) => {
        fn $name(t: &Target) {
            static REFERENCE: OnceLock<Vec<f64>> = OnceLock::new();
            tracks_the_reference(t, $algo, $spec, &REFERENCE);
        }
    };
}

family!(cnn5_dsgd_tracks_the_reference, Algorithm::Dsgd, "cnn5");
family!(cnn5_qgm_tracks_the_reference, Algorithm::Qgm, "cnn5");
family!(
    cnn5_relaysgd_tracks_the_reference,
    Algorithm::RelaySgd,
    "cnn5"
);
family!(cnn5_ngm_tracks_the_reference, Algorithm::Ngm, "cnn5");
// The residual sums' forward add, their backward copy-free hand-off and the scratch
// accumulation, on the f32 backends.
family!(
    small_resnet_ngm_tracks_the_reference,
    Algorithm::Ngm,
    SMALL_RESNET
);

target_tests!([gpu, native] cnn5_dsgd_tracks_the_reference, cnn5_qgm_tracks_the_reference,
    cnn5_relaysgd_tracks_the_reference, cnn5_ngm_tracks_the_reference,
    small_resnet_ngm_tracks_the_reference);

/// A small residual network: every kind of node (convolution, EvoNorm, identity and projection
/// residual sums, global pooling, dense).
const SMALL_RESNET: &str = "conv3x8,evo,res8,res16s2,gap,dense";

#[test]
fn dispatches_per_step_do_not_depend_on_the_agents() {
    for algo in [Algorithm::Dsgd, Algorithm::Ngm] {
        let per_step = |n| {
            run(
                config(algo, SMALL_RESNET, n, 2),
                Box::new(ReferenceBackend::new()),
            )
            .0
            .dispatches_per_step
        };
        let (four, eight) = (per_step(4), per_step(8));
        eprintln!("{algo}: {four} dispatches per step with 4 agents, {eight} with 8");
        assert_eq!(four, eight, "{algo}");
    }
}

/// cnn5 on MNIST-sized images: with batch 512 the first activation of 4 jobs (4 × 512 × 32 ×
/// 28 × 28 floats, 205 MB) passes the storage-binding limit of every adapter here (128 MiB), so
/// the pass runs in tiles of 2 jobs; with batch 2048 not even one job fits (205 MB): a typed
/// error naming the model, the batch and the agents, before any buffer exists.
fn activations_over_the_limit_are_tiled_or_refused(t: &Target) {
    let mut be = t.gpu();
    let mnist = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };
    let model = Model::parse("cnn5", mnist, 10).unwrap();
    let limit = be.context().limits.max_storage_buffer_binding_size;
    let jobs: Vec<(usize, usize)> = (0..4).map(|i| (i, i)).collect();
    let per_job = |batch: usize| (batch * 32 * 28 * 28 * 4) as u64;
    assert!(4 * per_job(512) > limit && 2 * per_job(512) <= limit && per_job(2048) > limit);
    let tile = Pass::tile_jobs(&be, &model, 512, &jobs, PassOptions::default()).unwrap();
    assert_eq!(tile, 2);
    let batch = 2048;
    let before = be.live_buffers();
    let err = Pass::new(&mut be, &model, batch, &jobs)
        .err()
        .expect("refused");
    assert_eq!(be.live_buffers(), before, "nothing allocated");
    let msg = err.to_string();
    assert!(matches!(err, Error::BufferTooLarge { .. }), "{msg}");
    for part in [
        "cnn5",
        "batch 2048",
        "4 agents",
        "max_storage_buffer_binding_size",
    ] {
        assert!(msg.contains(part), "'{part}' missing from: {msg}");
    }
    // Through the trainer: refused before the run allocates anything.
    let (train, test) = images(28, 100, 10);
    let mut c = config(Algorithm::Dsgd, "cnn5", 4, 1);
    c.batch = batch;
    let err = Trainer::with_data(c, Box::new(be), &train, &test)
        .err()
        .expect("refused");
    assert!(matches!(err, Error::BufferTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("batch 2048"), "{err}");
}

target_tests!([gpu] activations_over_the_limit_are_tiled_or_refused);

/// A pass cut into tiles (2 + 2 + 1 jobs) computes what the untiled pass does: the same
/// per-job losses and gradient slabs, bit for bit on the CPU backends (each job's arithmetic
/// is the same whatever the tile), within 1e-6 relative on a GPU (its kernels may split the
/// work differently with the job count).
fn tiled_pass_matches_the_untiled_one(t: &Target) {
    let mut be = t.backend();
    let input = ImageShape {
        channels: 1,
        height: 6,
        width: 6,
    };
    let model = Model::parse(SMALL_RESNET, input, 10).unwrap();
    let (agents, batch) = (3, 2);
    let jobs = [(0, 0), (1, 0), (2, 1), (0, 2), (1, 2)];
    let params = common::upload(be.as_mut(), &model.init(agents, 4, false));
    let mb = Minibatch::new(be.as_mut(), agents, batch, 36).unwrap();
    let x = common::uniform(5, agents * batch * 36, -1.0, 1.0);
    be.write_f32(mb.x, 0, &x).unwrap();
    be.write_u32(mb.y, 0, &common::indices(6, agents * batch, 10))
        .unwrap();
    let mut out = Vec::new();
    for max_tile_jobs in [None, Some(2)] {
        let opts = PassOptions {
            backward: true,
            max_tile_jobs,
        };
        let pass = Pass::with_options(be.as_mut(), &model, batch, &jobs, opts).unwrap();
        assert_eq!(pass.n_tiles(), if max_tile_jobs.is_some() { 3 } else { 1 });
        let grads = be
            .alloc(
                swarmgrad::backend::BufKind::F32,
                jobs.len() * model.stride(),
                "g",
            )
            .unwrap();
        pass.record_gradients(be.as_mut(), params, &mb, grads)
            .unwrap();
        let mut v = be.read_f32(pass.job_stats).unwrap();
        v.extend(be.read_f32(grads).unwrap());
        out.push(v);
    }
    if t.is_gpu() {
        assert_close("tiled pass", &out[1], &out[0], 1e-6, 1e-9);
    } else {
        assert!(out[0] == out[1], "tiled and untiled passes differ");
    }
    assert!(out[0].iter().any(|&v| v != 0.0));
}

target_tests!([reference, native, gpu] tiled_pass_matches_the_untiled_one);

/// A convolutional model on flat features (the synthetic task) is refused with a typed error
/// that names the layer and says why.
#[test]
fn conv_models_on_flat_features_are_refused() {
    let c = TrainConfig {
        model: Some("cnn5".into()),
        synthetic_dim: 64,
        ..Default::default()
    };
    let err = Trainer::new(c, Box::new(ReferenceBackend::new()))
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::BadParameter { .. }), "{msg}");
    assert!(
        msg.contains("pooling") && msg.contains("flat, 1×1×64"),
        "{msg}"
    );
}
