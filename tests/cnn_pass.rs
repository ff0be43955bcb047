//! The model pass (src/model/pass.rs) over convolutional stacks on the f64 reference: the
//! gradients of whole models (convolution + EvoNorm + pooling + dense; residual blocks with
//! identity and projection shortcuts; GroupNorm, ReLU, strided and biased convolutions)
//! against central finite differences of the loss, over a cross-gradient job list.
//!
//! The probe is L(θ) = Σ_j (mean loss of job j) with job j = (m_j, d_j) evaluating model
//! m_j on data agent d_j's rows; the pass writes ∂(mean loss of job j)/∂θ_{m_j} to slab j, so
//! ∂L/∂θ_m is the sum of the slabs of the jobs of model m. With h = 1e-6 in f64 the central
//! difference is good to about 1e-9 (truncation O(h²), rounding O(ε/h)·|L|, |L| ≈ 5); we allow
//! 1e-6 relative to the gradient's scale (as tests/cnn_gradients.rs does for single layers).
//! The inputs are random, so no ReLU, max or hardsigmoid kink lies within h of a sample point
//! with any real probability.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::model::pass::{Minibatch, Pass};
use swarmgrad::model::Model;

const JOBS: [(usize, usize); 3] = [(0, 0), (1, 0), (0, 1)];
const BATCH: usize = 2;
const CLASSES: u32 = 3;

fn random(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// L and the per-job gradient slabs at parameters `p` (two agents' slabs).
fn loss_and_grads(model: &Model, p: &[f64], x: &[f64], y: &[u32]) -> (f64, Vec<f64>) {
    let mut be = ReferenceBackend::new();
    let params = be.alloc(BufKind::F32, p.len(), "p").unwrap();
    be.write_f64(params, 0, p).unwrap();
    let agents = y.len() / BATCH;
    let mb = Minibatch::new(&mut be, agents, BATCH, model.input_dim()).unwrap();
    be.write_f64(mb.x, 0, x).unwrap();
    be.write_u32(mb.y, 0, y).unwrap();
    let pass = Pass::new(&mut be, model, BATCH, &JOBS).unwrap();
    let grads = be
        .alloc(BufKind::F32, JOBS.len() * model.stride(), "g")
        .unwrap();
    pass.record_forward(&mut be, params, &mb).unwrap();
    pass.record_backward(&mut be, params, &mb, grads).unwrap();
    let stats = be.read_f32(pass.job_stats).unwrap();
    let loss = stats[..JOBS.len()].iter().sum::<f64>() / BATCH as f64;
    (loss, be.read_f32(grads).unwrap())
}

/// Checks ∂L/∂θ at `coords` (indices into the two slabs) against central differences.
fn check(spec: &str, input: ImageShape, coords: Option<usize>, seed: u64) {
    let model = Model::parse(spec, input, CLASSES as usize).unwrap();
    let (stride, d) = (model.stride(), model.n_params());
    // He-initialised weights with γ = 1 are a realistic point; perturb γ and β away from 1
    // and 0 so their gradients are generic too.
    let init = model.init(2, seed, false);
    let noise = random(seed + 1, 2 * stride);
    let p: Vec<f64> = init
        .iter()
        .zip(&noise)
        .enumerate()
        .map(|(i, (&v, &z))| {
            if i % stride < d {
                v as f64 + 0.1 * z
            } else {
                0.0
            }
        })
        .collect();
    let x = random(seed + 2, 2 * BATCH * model.input_dim());
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 3);
    let y: Vec<u32> = (0..2 * BATCH)
        .map(|_| rng.random_range(0..CLASSES))
        .collect();
    let (_, g) = loss_and_grads(&model, &p, &x, &y);
    let mut analytic = vec![0.0; 2 * stride];
    for (j, &(m, _)) in JOBS.iter().enumerate() {
        for k in 0..d {
            analytic[m * stride + k] += g[j * stride + k];
        }
    }
    for (j, _) in JOBS.iter().enumerate() {
        assert!(
            g[j * stride + d..(j + 1) * stride]
                .iter()
                .all(|&v| v == 0.0),
            "{spec}: slab padding written"
        );
    }
    let all: Vec<usize> = (0..2 * stride).filter(|i| i % stride < d).collect();
    let picked: Vec<usize> = match coords {
        None => all,
        Some(n) => {
            let mut r = ChaCha8Rng::seed_from_u64(seed + 4);
            (0..n).map(|_| all[r.random_range(0..all.len())]).collect()
        }
    };
    let scale = analytic.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let h = 1e-6;
    let mut q = p.clone();
    for &i in &picked {
        q[i] = p[i] + h;
        let up = loss_and_grads(&model, &q, &x, &y).0;
        q[i] = p[i] - h;
        let down = loss_and_grads(&model, &q, &x, &y).0;
        q[i] = p[i];
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() <= 1e-6 * scale,
            "{spec}: ∂L/∂θ[{i}] analytic {} vs numeric {numeric} (scale {scale})",
            analytic[i]
        );
    }
}

fn image(channels: usize, height: usize, width: usize) -> ImageShape {
    ImageShape {
        channels,
        height,
        width,
    }
}

#[test]
fn small_cnn_gradients_match_finite_differences() {
    // cnn5's layer types: bias-free 3×3 convolutions, EvoNorm-S0, max pooling, dense.
    check(
        "conv3x8,evo,pool2,conv3x8,evo,pool2,dense",
        image(2, 7, 6),
        None,
        1,
    );
}

#[test]
fn other_layer_types_match_finite_differences() {
    // Biased and strided convolutions, GroupNorm, ReLU, average and global pooling, fused
    // dense ReLU, an unpadded 5×5 kernel.
    check(
        "conv5x4p0b,gn2,relu,avgpool2s1,conv3x6s2b,relu,gap,dense5,relu,dense",
        image(1, 9, 9),
        None,
        2,
    );
}

#[test]
fn residual_blocks_match_finite_differences() {
    // An identity block, then a strided block with a 1×1 projection shortcut; random
    // coordinates of every tensor kind (the whole model has about 5 000 parameters per slab).
    check(
        "conv3x8,evo,res8,res16s2,gap,dense",
        image(1, 6, 6),
        Some(160),
        3,
    );
}
