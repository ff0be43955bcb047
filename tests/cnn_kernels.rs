//! The convolutional layers' kernels (convolution, pooling, ReLU, GroupNorm and EvoNorm-S0) and
//! the per-channel gather against the f64 reference on random inputs, one test per target: every
//! wgpu backend present and the native CPU backend (on 1, 2 and 3 threads, which must agree
//! bit for bit). Cases: odd image sizes, zero padding at every border, stride 2, kernels 1, 3 and
//! 5, with and without bias, 1, 3 and 4 agents, job lists that are not the identity (cross pairs
//! with repeated models and data), first layers addressed by data agent, max, average and global
//! pools, both norms.
//!
//! Tolerances. The reference accumulates in f64, so a target's error is its own f32 rounding.
//! Linear ops (convolution in every direction, average pooling and its backward pass) are sums
//! of K products, whose f32 error is at most γ_K·Σ|terms| ≈ K·ε·Σ|terms| in any summation order
//! (Higham, §3.1); each test runs the reference a second time on |inputs| to get Σ|terms| per
//! output and allows `(K + 2)·ε·Σ|terms|`, as tests/kernels.rs does for the dense layers. Max
//! pooling selects, so it must be exact; its backward pass sums at most window² values. ReLU is
//! exact. The norms divide by group statistics computed in f32 over the n values of a group:
//! their mean and deviation carry a relative error of at most about n·ε (the same sum bound),
//! which every output of the group inherits through x̂ and 1/sd; the bounds below are
//! `(n + 16)·ε` times the size of the terms each output is made of (stated at each test).

mod common;

use common::*;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::Result;

/// The backends of one target, reused across a test's cases (buffers released after each).
struct Bench {
    backends: Vec<Box<dyn Backend>>,
}

impl Bench {
    fn new(t: &Target) -> Self {
        Bench {
            backends: t.variants(),
        }
    }

    /// Runs `record` on the reference (plain, and with `abs` set for the magnitudes) and on every
    /// backend of the target; checks element i of each returned buffer k within `bound(k, i,
    /// reference k, magnitudes k)` and that the target's variants agree bit for bit.
    fn parity(
        &mut self,
        what: &str,
        record: impl Fn(&mut dyn Backend, bool) -> Result<Vec<Buf>>,
        bound: impl Fn(usize, usize, &[f64], &[f64]) -> f64,
    ) {
        let reference = |abs: bool| -> Vec<Vec<f64>> {
            let mut cpu = ReferenceBackend::new();
            let outs = record(&mut cpu, abs).unwrap();
            outs.iter().map(|b| cpu.read_f32(*b).unwrap()).collect()
        };
        let (want, mags) = (reference(false), reference(true));
        let mut first: Option<Vec<Vec<f64>>> = None;
        for be in &mut self.backends {
            let mark = be.live_buffers().count;
            let name = be.describe();
            let outs = record(be.as_mut(), false).unwrap();
            let got: Vec<Vec<f64>> = outs.iter().map(|b| be.read_f32(*b).unwrap()).collect();
            be.release_from(mark);
            for (k, g) in got.iter().enumerate() {
                assert_within(&format!("{what} output {k} on {name}"), g, &want[k], |i| {
                    bound(k, i, &want[k], &mags[k])
                });
            }
            match &first {
                None => first = Some(got),
                Some(f) => assert!(f == &got, "{what}: {name} differs from the first variant"),
            }
        }
    }
}

/// `(K + 2)·ε·Σ|terms|`: the sum bound of K products.
fn sum_bound(k_terms: usize, mag: f64) -> f64 {
    (k_terms as f64 + 2.0) * EPS32 * mag + 1e-30
}

fn abs_if(v: Vec<f32>, abs: bool) -> Vec<f32> {
    if abs {
        v.into_iter().map(f32::abs).collect()
    } else {
        v
    }
}

fn flat_jobs(jobs: &[(usize, usize)]) -> Vec<u32> {
    jobs.iter()
        .flat_map(|&(m, d)| [m as u32, d as u32])
        .collect()
}

/// (agents, job list): identity on one agent, the cross pairs (0,1), (1,0), (2,2), and a list
/// with repeated models and data.
fn job_cases() -> Vec<(usize, Vec<(usize, usize)>)> {
    vec![
        (1, vec![(0, 0)]),
        (3, vec![(0, 1), (1, 0), (2, 2)]),
        (4, vec![(2, 0), (0, 1), (1, 1), (3, 2), (0, 3), (3, 3)]),
    ]
}

fn image(channels: usize, height: usize, width: usize) -> ImageShape {
    ImageShape {
        channels,
        height,
        width,
    }
}

/// Convolutions: (input, out channels, kernel, stride, pad, bias). Odd sizes, padding at the
/// borders, stride 2 (also with odd inputs, whose last row and column no window reaches), kernels
/// 1, 3 and 5, no padding, an MNIST-sized first layer, and channel counts on both sides of the
/// kernels' 4-wide tiles.
fn conv_cases() -> Vec<ConvLayer> {
    let cases = [
        (image(3, 7, 9), 5, 3, 1, 1, true),
        (image(2, 8, 8), 4, 3, 2, 1, false),
        (image(1, 5, 5), 3, 5, 1, 2, true),
        (image(4, 6, 5), 6, 1, 1, 0, true),
        (image(3, 9, 10), 7, 5, 2, 2, false),
        (image(5, 4, 4), 9, 3, 1, 0, true),
        (image(4, 7, 7), 8, 1, 2, 0, false),
        (image(1, 28, 28), 8, 3, 1, 1, false),
    ];
    cases
        .into_iter()
        .map(|(input, out_channels, kernel, stride, pad, bias)| {
            let w_off = 3;
            let w_len = out_channels * input.channels * kernel * kernel;
            ConvLayer {
                input,
                out_channels,
                kernel,
                stride,
                pad,
                w_off,
                b_off: bias.then_some(w_off + w_len + 2),
            }
        })
        .collect()
}

fn conv_jobs(jobs: Buf, n_jobs: usize, batch: usize, layer: ConvLayer, by_data: bool) -> ConvJobs {
    ConvJobs {
        jobs,
        n_jobs,
        batch,
        layer,
        stride: layer.end() + 5,
        input_blocks: if by_data {
            InputBlocks::ByData
        } else {
            InputBlocks::ByJob
        },
    }
}

fn conv_what(op: &str, l: &ConvLayer, agents: usize, jobs: usize, by_data: bool) -> String {
    format!(
        "{op} {:?} -> {} k{} s{} p{} bias {} agents {agents} jobs {jobs} by_data {by_data}",
        l.input,
        l.out_channels,
        l.kernel,
        l.stride,
        l.pad,
        l.b_off.is_some()
    )
}

const BATCH: usize = 3;

target_tests!([gpu, native] conv_forward_matches_reference);
fn conv_forward_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for l in conv_cases() {
        for (agents, jobs) in job_cases() {
            for by_data in [true, false] {
                let blocks = if by_data { agents } else { jobs.len() };
                let n_out = jobs.len() * BATCH * l.output().len();
                let k_terms = l.input.channels * l.kernel * l.kernel + 1;
                bench.parity(
                    &conv_what("conv_forward", &l, agents, jobs.len(), by_data),
                    |be, abs| {
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = conv_jobs(jb, jobs.len(), BATCH, l, by_data);
                        let params = upload(
                            be,
                            &abs_if(uniform(1, agents * shape.stride, -1.0, 1.0), abs),
                        );
                        let input = upload(
                            be,
                            &abs_if(uniform(2, blocks * BATCH * l.input.len(), -1.0, 1.0), abs),
                        );
                        let output = be.alloc(BufKind::F32, n_out, "y")?;
                        be.conv_forward(&ConvForward {
                            shape,
                            params,
                            input,
                            output,
                        })?;
                        Ok(vec![output])
                    },
                    |_, i, _, mag| sum_bound(k_terms, mag[i]),
                );
            }
        }
    }
}

target_tests!([gpu, native] conv_backward_data_matches_reference);
fn conv_backward_data_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for l in conv_cases() {
        for (agents, jobs) in job_cases() {
            let n_in = jobs.len() * BATCH * l.input.len();
            let k_terms = l.out_channels * l.kernel * l.kernel;
            bench.parity(
                &conv_what("conv_backward_data", &l, agents, jobs.len(), false),
                |be, abs| {
                    let jb = upload_u32(be, &flat_jobs(&jobs));
                    let shape = conv_jobs(jb, jobs.len(), BATCH, l, false);
                    let params = upload(
                        be,
                        &abs_if(uniform(3, agents * shape.stride, -1.0, 1.0), abs),
                    );
                    let n_out = jobs.len() * BATCH * l.output().len();
                    let dy = upload(be, &abs_if(uniform(4, n_out, -1.0, 1.0), abs));
                    // Every element is overwritten: start from garbage.
                    let dx = upload(be, &uniform(5, n_in, -9.0, 9.0));
                    be.conv_backward_data(&ConvBackwardData {
                        shape,
                        params,
                        dy,
                        dx,
                    })?;
                    Ok(vec![dx])
                },
                |_, i, _, mag| sum_bound(k_terms, mag[i]),
            );
        }
    }
}

target_tests!([gpu, native] conv_backward_weights_matches_reference);
fn conv_backward_weights_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for l in conv_cases() {
        for (agents, jobs) in job_cases() {
            for by_data in [true, false] {
                let blocks = if by_data { agents } else { jobs.len() };
                let k_terms = BATCH * l.output().height * l.output().width;
                bench.parity(
                    &conv_what("conv_backward_weights", &l, agents, jobs.len(), by_data),
                    |be, abs| {
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = conv_jobs(jb, jobs.len(), BATCH, l, by_data);
                        let n_out = jobs.len() * BATCH * l.output().len();
                        let dy = upload(be, &abs_if(uniform(6, n_out, -1.0, 1.0), abs));
                        let input = upload(
                            be,
                            &abs_if(uniform(7, blocks * BATCH * l.input.len(), -1.0, 1.0), abs),
                        );
                        // Slots outside the layer keep their contents: start from garbage.
                        let grads = upload(
                            be,
                            &abs_if(uniform(8, jobs.len() * shape.stride, -1.0, 1.0), abs),
                        );
                        be.conv_backward_weights(&ConvBackwardWeights {
                            shape,
                            dy,
                            input,
                            grads,
                        })?;
                        Ok(vec![grads])
                    },
                    |_, i, _, mag| sum_bound(k_terms, mag[i]),
                );
            }
        }
    }
}

/// Pools: (kind, input, window, stride): 2×2/2 on odd sides (the last row and column unread),
/// overlapping 3×3/1 and 3×3/2 windows, and global pools (the window is the whole image).
fn pool_cases() -> Vec<PoolLayer> {
    let cases = [
        (PoolKind::Max, image(3, 7, 9), 2, 2),
        (PoolKind::Avg, image(3, 7, 9), 2, 2),
        (PoolKind::Max, image(2, 6, 7), 3, 1),
        (PoolKind::Avg, image(2, 6, 7), 3, 2),
        (PoolKind::Max, image(5, 5, 5), 5, 5),
        (PoolKind::Avg, image(6, 7, 7), 7, 1),
        (PoolKind::Max, image(4, 28, 28), 2, 2),
    ];
    cases
        .into_iter()
        .map(|(kind, input, window, stride)| PoolLayer {
            kind,
            input,
            window,
            stride,
        })
        .collect()
}

target_tests!([gpu, native] pool_matches_reference);
fn pool_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for l in pool_cases() {
        for samples in [1, 7] {
            let what = format!("pool {l:?} samples {samples}");
            let area = l.window * l.window;
            bench.parity(
                &what,
                |be, abs| {
                    let x = upload(
                        be,
                        &abs_if(uniform(9, samples * l.input.len(), -1.0, 1.0), abs),
                    );
                    let y = upload(be, &uniform(10, samples * l.output().len(), -9.0, 9.0));
                    be.pool(&Pool {
                        layer: l,
                        samples,
                        x,
                        y,
                    })?;
                    Ok(vec![y])
                },
                // Max selects one input: exact. Average: a sum of window² terms, then a division.
                |_, i, _, mag| match l.kind {
                    PoolKind::Max => 0.0,
                    PoolKind::Avg => sum_bound(area + 1, mag[i]),
                },
            );
        }
    }
}

target_tests!([gpu, native] pool_backward_matches_reference);
fn pool_backward_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for l in pool_cases() {
        for samples in [1, 7] {
            let what = format!("pool_backward {l:?} samples {samples}");
            // An input lies in at most ⌈window/stride⌉² windows; each adds dy (÷ area).
            let windows = l.window.div_ceil(l.stride).pow(2);
            bench.parity(
                &what,
                |be, abs| {
                    // The maxima are found in x, identical in both runs; only dy is made
                    // nonnegative for the magnitudes.
                    let x = upload(be, &uniform(11, samples * l.input.len(), -1.0, 1.0));
                    let dy = upload(
                        be,
                        &abs_if(uniform(12, samples * l.output().len(), -1.0, 1.0), abs),
                    );
                    let dx = upload(be, &uniform(13, samples * l.input.len(), -9.0, 9.0));
                    be.pool_backward(&PoolBackward {
                        layer: l,
                        samples,
                        x,
                        dy,
                        dx,
                    })?;
                    Ok(vec![dx])
                },
                |_, i, _, mag| sum_bound(2 * windows, mag[i]),
            );
        }
    }
}

target_tests!([gpu, native] relu_matches_reference);
fn relu_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    // The last length needs more than 65535 workgroups of 64: a 2-D dispatch grid on a GPU.
    for len in [1, 63, 64, 1000, 4099, 65535 * 64 + 3] {
        bench.parity(
            &format!("relu len {len}"),
            |be, _| {
                let mut xs = uniform(14, len, -1.0, 1.0);
                // Exact zeros: relu'(0) = 0, as y = 0 there.
                for v in xs.iter_mut().step_by(7) {
                    *v = 0.0;
                }
                let x = upload(be, &xs);
                let y = upload(be, &uniform(15, len, -9.0, 9.0));
                let dy = upload(be, &uniform(16, len, -1.0, 1.0));
                let dx = upload(be, &uniform(17, len, -9.0, 9.0));
                be.relu(&Relu { x, y, len })?;
                be.relu_backward(&ReluBackward { y, dy, dx, len })?;
                Ok(vec![y, dx])
            },
            |_, _, _, _| 0.0,
        );
    }
}

/// Norm layers: (image, groups). One channel per group, the 8 groups of the papers' models, a
/// single group over the whole sample, and a 28×28 plane longer than the 256-wide workgroup.
fn norm_cases() -> Vec<(ImageShape, usize)> {
    vec![
        (image(6, 3, 5), 6),
        (image(16, 4, 3), 8),
        (image(4, 5, 5), 1),
        (image(8, 28, 28), 8),
    ]
}

fn norm_layer(kind: NormKind, image: ImageShape, groups: usize) -> (NormLayer, usize) {
    let c = image.channels;
    let l = NormLayer {
        kind,
        image,
        groups,
        eps: 1e-5,
        gamma_off: 2,
        beta_off: 2 + c + 1,
    };
    (l, 2 * c + 6)
}

/// Host facts of one norm case for the bounds: per group of every sample, its length n, the
/// largest |x̂| = |x − μ|/sd, |x|/sd, and 1/sd (in f64, from the f32 inputs).
struct GroupFacts {
    n: usize,
    max_xhat: f64,
    max_x_over_sd: f64,
    max_inv_sd: f64,
}

fn group_facts(x: &[f32], l: &NormLayer) -> GroupFacts {
    let n = l.image.len() / l.groups;
    let mut f = GroupFacts {
        n,
        max_xhat: 0.0,
        max_x_over_sd: 0.0,
        max_inv_sd: 0.0,
    };
    for g in x.chunks_exact(n) {
        let mean = g.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = g.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let sd = (var + l.eps).sqrt();
        f.max_inv_sd = f.max_inv_sd.max(1.0 / sd);
        for &v in g {
            f.max_xhat = f.max_xhat.max((v as f64 - mean).abs() / sd);
            f.max_x_over_sd = f.max_x_over_sd.max((v as f64).abs() / sd);
        }
    }
    f
}

target_tests!([gpu, native] norm_forward_matches_reference);
fn norm_forward_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for kind in [NormKind::Group, NormKind::EvoS0] {
        for (img, groups) in norm_cases() {
            for (agents, jobs) in job_cases() {
                let (l, stride) = norm_layer(kind, img, groups);
                let len = jobs.len() * BATCH * img.len();
                // Spread over [-4, 4]: EvoNorm's hardsigmoid is seen flat and sloped.
                let xs = uniform(18, len, -4.0, 4.0);
                let ps = uniform(19, agents * stride, -1.0, 1.0);
                let f = group_facts(&xs, &l);
                // y = n(x)/sd·γ + β: μ and sd are off by ≲ n·ε relative (μ by n·ε·max|x|), so
                // |Δy| ≲ (n + 16)·ε·(|x̂| + |x|/sd)·|γ| + ε·|β|; γ, β ∈ [-1, 1].
                let bound = (f.n as f64 + 16.0) * EPS32 * (f.max_xhat + f.max_x_over_sd + 1.0);
                bench.parity(
                    &format!(
                        "norm_forward {kind:?} {img:?} groups {groups} agents {agents} jobs {}",
                        jobs.len()
                    ),
                    |be, _| {
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = NormJobs {
                            jobs: jb,
                            n_jobs: jobs.len(),
                            batch: BATCH,
                            layer: l,
                            stride,
                        };
                        let params = upload(be, &ps);
                        let x = upload(be, &xs);
                        let y = upload(be, &uniform(20, len, -9.0, 9.0));
                        be.norm_forward(&NormForward {
                            shape,
                            params,
                            x,
                            y,
                        })?;
                        Ok(vec![y])
                    },
                    |_, _, _, _| bound,
                );
            }
        }
    }
}

target_tests!([gpu, native] norm_backward_matches_reference);
fn norm_backward_matches_reference(t: &Target) {
    let mut bench = Bench::new(t);
    for kind in [NormKind::Group, NormKind::EvoS0] {
        for (img, groups) in norm_cases() {
            for (agents, jobs) in job_cases() {
                let (l, stride) = norm_layer(kind, img, groups);
                let len = jobs.len() * BATCH * img.len();
                let xs = uniform(21, len, -4.0, 4.0);
                let ps = uniform(22, agents * stride, -1.0, 1.0);
                let f = group_facts(&xs, &l);
                let n = f.n as f64;
                // dx is made of γ·dy·(1 or h')/sd, the group means of γ·dy and γ·dy·x̂ (times
                // x̂/sd), or (x − μ)/(n·sd³)·Σ γ·dy·h(x); with |γ|, |dy| ≤ 1 and |h(x)| ≤ |x|
                // each term is at most (2 + x̂·(x̂ + |x|/sd))/sd, and each carries the
                // statistics' relative error ≲ (n + 16)·ε.
                let dx_bound = (n + 16.0)
                    * EPS32
                    * f.max_inv_sd
                    * (2.0 + f.max_xhat * (f.max_xhat + f.max_x_over_sd));
                // dγ_c, dβ_c: sums of batch·H·W products dy·n(x)/sd and dy, whose n(x)/sd is off
                // by ≲ (n + 16)·ε·(x̂ + |x|/sd): the magnitude run (|dy|) gives Σ|dy| per channel
                // in the β slot, and Σ|dy|·|n(x)|/sd ≤ Σ|dy|·(x̂ + |x|/sd).
                let k_terms = (BATCH * img.height * img.width) as f64;
                let c = img.channels;
                let (g_at, b_at) = (l.gamma_off..l.gamma_off + c, l.beta_off..l.beta_off + c);
                let facts = f.max_xhat + f.max_x_over_sd;
                bench.parity(
                    &format!(
                        "norm_backward {kind:?} {img:?} groups {groups} agents {agents} jobs {}",
                        jobs.len()
                    ),
                    |be, abs| {
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = NormJobs {
                            jobs: jb,
                            n_jobs: jobs.len(),
                            batch: BATCH,
                            layer: l,
                            stride,
                        };
                        let params = upload(be, &ps);
                        let x = upload(be, &xs);
                        let dy = upload(be, &abs_if(uniform(23, len, -1.0, 1.0), abs));
                        let dx = upload(be, &uniform(24, len, -9.0, 9.0));
                        // Slots outside γ and β keep their contents: start from garbage.
                        let grads = upload(be, &uniform(25, jobs.len() * stride, -9.0, 9.0));
                        be.norm_backward(&NormBackward {
                            shape,
                            params,
                            x,
                            dy,
                            dx,
                            grads,
                        })?;
                        Ok(vec![dx, grads])
                    },
                    |out, i, _, mag| {
                        let k = i % stride;
                        if out == 0 {
                            dx_bound
                        } else if b_at.contains(&k) {
                            (k_terms + 2.0) * EPS32 * mag[i]
                        } else if g_at.contains(&k) {
                            // The magnitude run's β slot of the same channel holds Σ|dy|.
                            let abs_dy = mag[i - k + l.beta_off + (k - l.gamma_off)];
                            (k_terms + n + 18.0) * EPS32 * facts * abs_dy
                        } else {
                            0.0
                        }
                    },
                );
            }
        }
    }
}

/// CIFAR-10's standard per-channel (mean, std), red, green, blue.
const CIFAR_NORM: [(f64, f64); 3] = [(0.4914, 0.2470), (0.4822, 0.2435), (0.4465, 0.2616)];

target_tests!([reference, gpu, native] gather_normalises_each_channel);
fn gather_normalises_each_channel(t: &Target) {
    // 3 channels of 5×4 pixels (and a 3×32×32 CIFAR-10 image), the value of each by hand: one
    // rounding of the f64 formula, so 4 ulps relative with a 1e-7 floor on the f32 targets.
    for (n_samples, plane, rows) in [(9, 20, 7), (4, 1024, 5)] {
        let dim = 3 * plane;
        let bytes: Vec<u8> = indices(26, n_samples * dim, 256)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let labels = indices(27, n_samples, 10);
        let index = indices(28, rows, n_samples as u32);
        let (mean, std): (Vec<f64>, Vec<f64>) = CIFAR_NORM.into_iter().unzip();
        let norm = ChannelNorm::per_channel(&mean, &std).unwrap();
        let want: Vec<f64> = index
            .iter()
            .flat_map(|&s| {
                let bytes = &bytes;
                (0..dim).map(move |f| {
                    let (m, sd) = CIFAR_NORM[f / plane];
                    (bytes[s as usize * dim + f] as f64 / 255.0 - m) * (1.0 / sd)
                })
            })
            .collect();
        for mut be in t.variants() {
            let data = be.upload_u8(&bytes, "data").unwrap();
            let lab = upload_u32(be.as_mut(), &labels);
            let idx = upload_u32(be.as_mut(), &index);
            let x = be.alloc(BufKind::F32, rows * dim, "x").unwrap();
            let y = be.alloc(BufKind::U32, rows, "y").unwrap();
            let op = Gather {
                data,
                labels: lab,
                index: idx,
                rows,
                dim,
                norm,
                x,
                y,
            };
            be.gather(&op).unwrap();
            let name = be.describe();
            let tol = if t.is_reference() { 0.0 } else { 4.0 * EPS32 };
            let floor = if t.is_reference() { 0.0 } else { 1e-7 };
            let got = be.read_f32(x).unwrap();
            assert_close(
                &format!("gather 3×{plane} on {name}"),
                &got,
                &want,
                tol,
                floor,
            );
            let want_y: Vec<u32> = index.iter().map(|&s| labels[s as usize]).collect();
            assert_eq!(be.read_u32(y).unwrap(), want_y);
            // Channels that do not split the features, or too many, are typed errors.
            for channels in [0, 5, if plane % 2 == 0 { 7 } else { 2 }] {
                let bad = Gather {
                    norm: ChannelNorm { channels, ..norm },
                    ..op
                };
                assert!(
                    matches!(be.gather(&bad), Err(swarmgrad::Error::InvalidOp { .. })),
                    "{channels} channels accepted"
                );
            }
            let bad_std = Gather {
                norm: ChannelNorm::per_channel(&mean, &[0.2, 0.0, 0.3]).unwrap(),
                ..op
            };
            assert!(be.gather(&bad_std).is_err(), "zero std accepted");
        }
    }
}
