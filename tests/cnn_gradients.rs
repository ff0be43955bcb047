//! The CPU reference's convolutional layers against central finite differences, in f64.
//!
//! Each layer's scalar probe is L = Σ r·y with a fixed random r, so its backward pass with
//! dy = r must give ∂L/∂x and ∂L/∂θ. With h = 1e-6 in f64 the central difference is good to
//! about 1e-9 here (truncation O(h²), rounding O(ε/h) times |L| ≈ 10); we allow 1e-6 relative
//! to the gradient's scale. The inputs are random, so no ReLU, max or hardsigmoid kink lies
//! within h of a sample point with any real probability.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;

fn random(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn buf(be: &mut ReferenceBackend, data: &[f64]) -> Buf {
    let b = be.alloc(BufKind::F32, data.len(), "t").unwrap();
    be.write_f64(b, 0, data).unwrap();
    b
}

fn jobs_buf(be: &mut ReferenceBackend, jobs: &[(usize, usize)]) -> Buf {
    let flat: Vec<u32> = jobs
        .iter()
        .flat_map(|&(m, d)| [m as u32, d as u32])
        .collect();
    let b = be.alloc(BufKind::U32, flat.len(), "jobs").unwrap();
    be.write_u32(b, 0, &flat).unwrap();
    b
}

/// Compares an analytic gradient with central differences of `loss` around `at`.
fn assert_matches_fd(what: &str, at: &[f64], analytic: &[f64], loss: impl Fn(&[f64]) -> f64) {
    let h = 1e-6;
    let scale = analytic.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let mut x = at.to_vec();
    for i in 0..at.len() {
        x[i] = at[i] + h;
        let up = loss(&x);
        x[i] = at[i] - h;
        let down = loss(&x);
        x[i] = at[i];
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() <= 1e-6 * scale,
            "{what}[{i}]: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
}

/// Two models, three jobs mixing models and data blocks (the cross-gradient pattern).
const JOBS: [(usize, usize); 3] = [(0, 0), (1, 0), (0, 1)];
const BATCH: usize = 2;

fn conv_case(layer: ConvLayer, stride: usize, seed: u64) {
    let n_in = layer.input.len();
    let n_out = layer.output().len();
    let x0 = random(seed, JOBS.len() * BATCH * n_in);
    let p0 = random(seed + 1, 2 * stride);
    let r = random(seed + 2, JOBS.len() * BATCH * n_out);
    let run = |x: &[f64], p: &[f64]| -> (f64, Vec<f64>, Vec<f64>) {
        let mut be = ReferenceBackend::new();
        let shape = ConvJobs {
            jobs: jobs_buf(&mut be, &JOBS),
            n_jobs: JOBS.len(),
            batch: BATCH,
            layer,
            stride,
            input_blocks: InputBlocks::ByJob,
        };
        let (input, params, dy) = (buf(&mut be, x), buf(&mut be, p), buf(&mut be, &r));
        let output = be.alloc(BufKind::F32, r.len(), "y").unwrap();
        let dx = be.alloc(BufKind::F32, x.len(), "dx").unwrap();
        let grads = be.alloc(BufKind::F32, JOBS.len() * stride, "g").unwrap();
        be.conv_forward(&ConvForward {
            shape,
            params,
            input,
            output,
        })
        .unwrap();
        be.conv_backward_data(&ConvBackwardData {
            shape,
            params,
            dy,
            dx,
        })
        .unwrap();
        be.conv_backward_weights(&ConvBackwardWeights {
            shape,
            dy,
            input,
            grads,
        })
        .unwrap();
        let y = be.read_f32(output).unwrap();
        let loss = y.iter().zip(&r).map(|(a, b)| a * b).sum();
        (loss, be.read_f32(dx).unwrap(), be.read_f32(grads).unwrap())
    };
    let (_, dx, g) = run(&x0, &p0);
    assert_matches_fd("conv dx", &x0, &dx, |x| run(x, &p0).0);
    // Job j's gradient slab is ∂L_j/∂θ_{m_j}; summed per model it is ∂L/∂θ_m.
    let mut dp = vec![0.0; p0.len()];
    for (j, &(m, _)) in JOBS.iter().enumerate() {
        let tensors = [(layer.w_off, layer.weight_len())]
            .into_iter()
            .chain(layer.b_off.map(|b| (b, layer.out_channels)));
        for (off, len) in tensors {
            for k in off..off + len {
                dp[m * stride + k] += g[j * stride + k];
            }
        }
    }
    assert_matches_fd("conv dθ", &p0, &dp, |p| run(&x0, p).0);
}

#[test]
fn conv_gradients_match_finite_differences() {
    let image = |channels, height, width| ImageShape {
        channels,
        height,
        width,
    };
    // Odd sizes, padding at the borders, stride 2, kernels 1, 3 and 5, with and without bias.
    let cases = [
        (image(2, 5, 4), 3, 3, 1, 1, true),
        (image(3, 7, 6), 2, 3, 2, 1, false),
        (image(2, 6, 6), 2, 5, 1, 2, true),
        (image(3, 5, 5), 4, 1, 2, 0, false),
    ];
    for (seed, (input, out_channels, kernel, stride, pad, bias)) in cases.into_iter().enumerate() {
        let w_len = out_channels * input.channels * kernel * kernel;
        let layer = ConvLayer {
            input,
            out_channels,
            kernel,
            stride,
            pad,
            w_off: 3,
            b_off: bias.then_some(3 + w_len + 1),
        };
        conv_case(layer, layer.end() + 5, 10 * seed as u64);
    }
}

#[test]
fn pool_and_relu_gradients_match_finite_differences() {
    for (seed, (kind, window, stride)) in [
        (PoolKind::Max, 2, 2),
        (PoolKind::Avg, 3, 2),
        (PoolKind::Max, 3, 1),
        (PoolKind::Avg, 5, 5),
    ]
    .into_iter()
    .enumerate()
    {
        let layer = PoolLayer {
            kind,
            input: ImageShape {
                channels: 2,
                height: 5,
                width: 7.max(window),
            },
            window,
            stride,
        };
        let samples = 3;
        let x0 = random(seed as u64, samples * layer.input.len());
        let r = random(seed as u64 + 1, samples * layer.output().len());
        let run = |x: &[f64]| -> (f64, Vec<f64>) {
            let mut be = ReferenceBackend::new();
            let (xb, dy) = (buf(&mut be, x), buf(&mut be, &r));
            let y = be.alloc(BufKind::F32, r.len(), "y").unwrap();
            let dx = be.alloc(BufKind::F32, x.len(), "dx").unwrap();
            be.pool(&Pool {
                layer,
                samples,
                x: xb,
                y,
            })
            .unwrap();
            be.pool_backward(&PoolBackward {
                layer,
                samples,
                x: xb,
                dy,
                dx,
            })
            .unwrap();
            let y = be.read_f32(y).unwrap();
            (
                y.iter().zip(&r).map(|(a, b)| a * b).sum(),
                be.read_f32(dx).unwrap(),
            )
        };
        assert_matches_fd(&format!("{kind:?} pool dx"), &x0, &run(&x0).1, |x| run(x).0);
    }
    let x0 = random(7, 50);
    let r = random(8, 50);
    let run = |x: &[f64]| -> (f64, Vec<f64>) {
        let mut be = ReferenceBackend::new();
        let (xb, dy) = (buf(&mut be, x), buf(&mut be, &r));
        let y = be.alloc(BufKind::F32, 50, "y").unwrap();
        let dx = be.alloc(BufKind::F32, 50, "dx").unwrap();
        be.relu(&Relu { x: xb, y, len: 50 }).unwrap();
        be.relu_backward(&ReluBackward { y, dy, dx, len: 50 })
            .unwrap();
        let y = be.read_f32(y).unwrap();
        (
            y.iter().zip(&r).map(|(a, b)| a * b).sum(),
            be.read_f32(dx).unwrap(),
        )
    };
    assert_matches_fd("relu dx", &x0, &run(&x0).1, |x| run(x).0);
}

#[test]
fn norm_gradients_match_finite_differences() {
    for (seed, kind) in [NormKind::Group, NormKind::EvoS0].into_iter().enumerate() {
        let image = ImageShape {
            channels: 6,
            height: 3,
            width: 2,
        };
        let layer = NormLayer {
            kind,
            image,
            groups: 3,
            eps: 1e-5,
            gamma_off: 1,
            beta_off: 8,
        };
        let stride = 16;
        // Inputs spread over [-4, 4] so EvoNorm's hardsigmoid is seen flat and sloped.
        let x0: Vec<f64> = random(seed as u64, JOBS.len() * BATCH * image.len())
            .iter()
            .map(|v| 4.0 * v)
            .collect();
        let p0 = random(seed as u64 + 1, 2 * stride);
        let r = random(seed as u64 + 2, x0.len());
        let run = |x: &[f64], p: &[f64]| -> (f64, Vec<f64>, Vec<f64>) {
            let mut be = ReferenceBackend::new();
            let shape = NormJobs {
                jobs: jobs_buf(&mut be, &JOBS),
                n_jobs: JOBS.len(),
                batch: BATCH,
                layer,
                stride,
            };
            let (xb, params, dy) = (buf(&mut be, x), buf(&mut be, p), buf(&mut be, &r));
            let y = be.alloc(BufKind::F32, x.len(), "y").unwrap();
            let dx = be.alloc(BufKind::F32, x.len(), "dx").unwrap();
            let grads = be.alloc(BufKind::F32, JOBS.len() * stride, "g").unwrap();
            be.norm_forward(&NormForward {
                shape,
                params,
                x: xb,
                y,
            })
            .unwrap();
            be.norm_backward(&NormBackward {
                shape,
                params,
                x: xb,
                dy,
                dx,
                grads,
            })
            .unwrap();
            let y = be.read_f32(y).unwrap();
            (
                y.iter().zip(&r).map(|(a, b)| a * b).sum(),
                be.read_f32(dx).unwrap(),
                be.read_f32(grads).unwrap(),
            )
        };
        let (_, dx, g) = run(&x0, &p0);
        assert_matches_fd(&format!("{kind:?} dx"), &x0, &dx, |x| run(x, &p0).0);
        let mut dp = vec![0.0; p0.len()];
        for (j, &(m, _)) in JOBS.iter().enumerate() {
            for k in
                (layer.gamma_off..layer.gamma_off + 6).chain(layer.beta_off..layer.beta_off + 6)
            {
                dp[m * stride + k] += g[j * stride + k];
            }
        }
        assert_matches_fd(&format!("{kind:?} dγβ"), &p0, &dp, |p| run(&x0, p).0);
    }
}
