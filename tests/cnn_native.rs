//! The native backend's convolutional ops against the f64 reference on random inputs, each on
//! 1, 2 and 3 threads, whose results must be bit-identical (every case large enough to leave
//! the calling thread runs on the pool; the smaller ones run inline); max pooling's ties; and
//! no heap allocation in these ops outside the gemm crate once their scratch is sized.
//!
//! Tolerances. The reference accumulates in f64, so the native error is its own f32 rounding.
//! A sum of K products in f32 is within γ_K·Σ|terms| (γ_K ≈ K·ε, Higham §3.1) whatever the
//! order of summation (the GEMM's blocking and FMAs change the order, not the bound); the
//! reference run a second time on |inputs| gives Σ|terms| per output, and we allow
//! `(K + 2)·ε·Σ|terms| + 1e-30`, with K: C_in·k² (+1 for a bias) for the forward pass,
//! C_out·k² for backward-data (the GEMM's C_out terms, then up to k² taps added by col2im),
//! batch·H_out·W_out for backward-weights, window² for pooling; ReLU is exact. The
//! normalisations are not sums of products of the inputs, so |inputs| bound nothing there:
//! their statistics and per-channel sums are in f64 and each output is a handful (≤ 6) of f32
//! roundings of terms no larger than the buffer's largest value on these O(1) random inputs,
//! so we allow `32·ε·(|value| + max|value|)` (5× that count of roundings).

mod common;

use common::*;
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;

/// Runs `record` on the reference (plain and on |inputs|) and on the native backend on 1, 2
/// and 3 threads; every returned buffer must be bit-identical across thread counts and within
/// `bound(want, magnitude, buffer_max)` of the reference, elementwise.
fn parity(
    what: &str,
    record: impl Fn(&mut dyn Backend, bool) -> Vec<Buf>,
    bound: impl Fn(usize, f64, f64, f64) -> f64,
) {
    let read = |be: &mut dyn Backend, bufs: &[Buf]| -> Vec<Vec<f64>> {
        bufs.iter().map(|b| be.read_f32(*b).unwrap()).collect()
    };
    let mut cpu = ReferenceBackend::new();
    let outs = record(&mut cpu, false);
    let want = read(&mut cpu, &outs);
    let mut cpu_abs = ReferenceBackend::new();
    let outs = record(&mut cpu_abs, true);
    let mags = read(&mut cpu_abs, &outs);
    let mut first: Option<Vec<Vec<f64>>> = None;
    for threads in [1, 2, 3] {
        let mut be = NativeBackend::new(threads).unwrap();
        let outs = record(&mut be, false);
        let got = read(&mut be, &outs);
        match &first {
            None => first = Some(got.clone()),
            Some(f) => assert!(f == &got, "{what}: {threads} threads differ from 1 thread"),
        }
        for (k, got) in got.iter().enumerate() {
            let max = want[k].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert_within(
                &format!("{what} output {k} on {threads} threads"),
                got,
                &want[k],
                |i| bound(k, want[k][i], mags[k][i], max),
            );
        }
    }
}

/// `(K + 2)·ε·Σ|terms| + 1e-30` (see the module docs).
fn sum_bound(k_terms: usize, mag: f64) -> f64 {
    (k_terms as f64 + 2.0) * EPS32 * mag + 1e-30
}

/// `32·ε·(|value| + max|value|)` (see the module docs).
fn norm_bound(want: f64, max: f64) -> f64 {
    32.0 * EPS32 * (want.abs() + max) + 1e-30
}

/// Seeded reals in [-1, 1), or their absolute values.
fn random(seed: u64, n: usize, abs: bool) -> Vec<f32> {
    let v = uniform(seed, n, -1.0, 1.0);
    if abs {
        v.into_iter().map(f32::abs).collect()
    } else {
        v
    }
}

fn jobs_buf(be: &mut dyn Backend, jobs: &[(usize, usize)]) -> Buf {
    let flat: Vec<u32> = jobs
        .iter()
        .flat_map(|&(m, d)| [m as u32, d as u32])
        .collect();
    upload_u32(be, &flat)
}

fn image(channels: usize, height: usize, width: usize) -> ImageShape {
    ImageShape {
        channels,
        height,
        width,
    }
}

/// Three agents, cross jobs: model and data agents differ, and one data block is read twice.
const AGENTS: usize = 3;
const JOBS: [(usize, usize); 4] = [(0, 1), (1, 0), (2, 2), (1, 1)];

/// A convolution case: input, out channels, kernel, stride, pad, bias, batch.
type ConvCase = (ImageShape, usize, usize, usize, usize, bool, usize);

fn conv_cases() -> Vec<ConvCase> {
    vec![
        // The first layer of cnn5 on MNIST-like odd sizes: one input channel, padding.
        (image(1, 9, 7), 4, 3, 1, 1, true, 3),
        // Kernel 5 with stride 2 and padding 2 at odd sizes, and with stride 1 (a "same" layer,
        // whose im2col rows are shifted planes).
        (image(3, 11, 10), 5, 5, 2, 2, false, 2),
        (image(2, 9, 6), 3, 5, 1, 2, true, 2),
        // More output channels than im2col rows (backward-weights accumulates in the slab).
        (image(1, 6, 5), 16, 3, 1, 1, false, 2),
        // ResNet's 1×1 stride-2 shortcut, and the pointwise path (1×1, stride 1, no padding).
        (image(6, 8, 9), 4, 1, 2, 0, true, 2),
        (image(4, 7, 9), 6, 1, 1, 0, true, 2),
        // Stride 2 without padding; a kernel as large as the image.
        (image(5, 6, 7), 7, 3, 2, 0, false, 2),
        (image(2, 5, 5), 3, 5, 1, 0, true, 1),
        // cnn5's 32→32 layer at 28×28: large enough to run on the thread pool.
        (image(32, 28, 28), 32, 3, 1, 1, false, 2),
        // Odd channel counts on the pool, stride 2 with padding.
        (image(17, 15, 13), 9, 3, 2, 1, true, 3),
    ]
}

fn conv_layer(c: &ConvCase) -> (ConvLayer, usize) {
    let &(input, out_channels, kernel, stride, pad, bias, _) = c;
    let w_off = 3;
    let w_len = out_channels * input.channels * kernel * kernel;
    let layer = ConvLayer {
        input,
        out_channels,
        kernel,
        stride,
        pad,
        w_off,
        b_off: bias.then_some(w_off + w_len + 2),
    };
    (layer, layer.end() + 5)
}

/// Uploads the jobs, parameters, the input (addressed by data agent or by job) and an output
/// gradient for a conv case.
fn conv_setup(
    be: &mut dyn Backend,
    c: &ConvCase,
    by_data: bool,
    abs: bool,
    seed: u64,
) -> (ConvJobs, Buf, Buf, Buf) {
    let (layer, stride) = conv_layer(c);
    let batch = c.6;
    let n_jobs = JOBS.len();
    let blocks = if by_data { AGENTS } else { n_jobs };
    let shape = ConvJobs {
        jobs: jobs_buf(be, &JOBS),
        n_jobs,
        batch,
        layer,
        stride,
        input_blocks: if by_data {
            InputBlocks::ByData
        } else {
            InputBlocks::ByJob
        },
    };
    let params = upload(be, &random(seed, AGENTS * stride, abs));
    let input = upload(
        be,
        &random(seed + 1, blocks * batch * layer.input.len(), abs),
    );
    let dy = upload(
        be,
        &random(seed + 2, n_jobs * batch * layer.output().len(), abs),
    );
    (shape, params, input, dy)
}

#[test]
fn conv_forward_matches_reference() {
    for (seed, c) in conv_cases().iter().enumerate() {
        for by_data in [false, true] {
            let (layer, _) = conv_layer(c);
            let terms = layer.input.channels * layer.kernel * layer.kernel + 1;
            parity(
                &format!("conv forward {c:?} by_data={by_data}"),
                |be, abs| {
                    let (shape, params, input, _) = conv_setup(be, c, by_data, abs, seed as u64);
                    let n = JOBS.len() * c.6 * layer.output().len();
                    let output = be.alloc(BufKind::F32, n, "y").unwrap();
                    be.conv_forward(&ConvForward {
                        shape,
                        params,
                        input,
                        output,
                    })
                    .unwrap();
                    vec![output]
                },
                |_, _, mag, _| sum_bound(terms, mag),
            );
        }
    }
}

#[test]
fn conv_backward_data_matches_reference() {
    for (seed, c) in conv_cases().iter().enumerate() {
        let (layer, _) = conv_layer(c);
        let terms = layer.out_channels * layer.kernel * layer.kernel;
        parity(
            &format!("conv backward-data {c:?}"),
            |be, abs| {
                let (shape, params, _, dy) = conv_setup(be, c, false, abs, 10 + seed as u64);
                let n = JOBS.len() * c.6 * layer.input.len();
                let dx = be.alloc(BufKind::F32, n, "dx").unwrap();
                be.conv_backward_data(&ConvBackwardData {
                    shape,
                    params,
                    dy,
                    dx,
                })
                .unwrap();
                vec![dx]
            },
            |_, _, mag, _| sum_bound(terms, mag),
        );
    }
}

#[test]
fn conv_backward_weights_match_reference() {
    for (seed, c) in conv_cases().iter().enumerate() {
        for by_data in [false, true] {
            let (layer, stride) = conv_layer(c);
            let o = layer.output();
            let terms = c.6 * o.height * o.width;
            parity(
                &format!("conv backward-weights {c:?} by_data={by_data}"),
                |be, abs| {
                    let (shape, _, input, dy) = conv_setup(be, c, by_data, abs, 20 + seed as u64);
                    // Gradient slabs start non-zero: the op overwrites its tensors and leaves
                    // the rest alone.
                    let grads = upload(be, &random(99, JOBS.len() * stride, abs));
                    be.conv_backward_weights(&ConvBackwardWeights {
                        shape,
                        dy,
                        input,
                        grads,
                    })
                    .unwrap();
                    vec![grads]
                },
                |_, _, mag, _| sum_bound(terms, mag),
            );
        }
    }
}

#[test]
fn pools_match_reference() {
    let cases = [
        // Max 2×2/2 on odd sides (floor mode drops the last row and column).
        (PoolKind::Max, image(5, 7, 9), 2, 2, 6),
        // Overlapping windows: gradients of two outputs meet on shared inputs.
        (PoolKind::Max, image(3, 9, 9), 3, 2, 4),
        (PoolKind::Avg, image(4, 8, 6), 2, 2, 5),
        (PoolKind::Avg, image(2, 5, 5), 3, 1, 3),
        // Global average pooling.
        (PoolKind::Avg, image(64, 7, 7), 7, 1, 6),
        // cnn5's first pool on 32 channels at 28×28: on the thread pool.
        (PoolKind::Max, image(32, 28, 28), 2, 2, 24),
        (PoolKind::Avg, image(16, 16, 16), 2, 2, 48),
    ];
    for (seed, (kind, input, window, stride, samples)) in cases.into_iter().enumerate() {
        let layer = PoolLayer {
            kind,
            input,
            window,
            stride,
        };
        let terms = window * window;
        parity(
            &format!("pool {layer:?}"),
            |be, abs| {
                let n_out = samples * layer.output().len();
                let x = upload(be, &random(30 + seed as u64, samples * input.len(), abs));
                // The abs run routes |dy| through the same windows: max pooling's argmax is
                // taken on |x| there, so its bound uses the plain run's maximum instead.
                let dy = upload(be, &random(40 + seed as u64, n_out, abs));
                let y = be.alloc(BufKind::F32, n_out, "y").unwrap();
                let dx = be.alloc(BufKind::F32, samples * input.len(), "dx").unwrap();
                be.pool(&Pool {
                    layer,
                    samples,
                    x,
                    y,
                })
                .unwrap();
                be.pool_backward(&PoolBackward {
                    layer,
                    samples,
                    x,
                    dy,
                    dx,
                })
                .unwrap();
                vec![y, dx]
            },
            |k, want, mag, _| match (kind, k) {
                // A maximum is one input, exactly.
                (PoolKind::Max, 0) => 1e-30,
                // Max backward adds at most window² output gradients, each |dy| ≤ 1.
                (PoolKind::Max, _) => sum_bound(terms, want.abs().max(1.0)),
                _ => sum_bound(terms, mag),
            },
        );
    }
}

#[test]
fn relu_matches_reference_exactly() {
    // Odd lengths around the elementwise chunk, and one large enough for the thread pool.
    for (seed, len) in [1usize, 16_385, 1_500_001].into_iter().enumerate() {
        parity(
            &format!("relu of {len}"),
            |be, _| {
                let x = upload(be, &random(50 + seed as u64, len, false));
                let dy = upload(be, &random(60 + seed as u64, len, false));
                let y = be.alloc(BufKind::F32, len, "y").unwrap();
                let dx = be.alloc(BufKind::F32, len, "dx").unwrap();
                be.relu(&Relu { x, y, len }).unwrap();
                be.relu_backward(&ReluBackward { y, dy, dx, len }).unwrap();
                vec![y, dx]
            },
            |_, _, _, _| 1e-30,
        );
    }
}

#[test]
fn norms_match_reference() {
    let cases = [
        // EvoNorm-S0 with cnn5's 8 groups at odd sizes, and GroupNorm with 3 groups.
        (NormKind::EvoS0, image(16, 5, 7), 8, 3),
        (NormKind::Group, image(6, 9, 4), 3, 2),
        // Small groups: two channels of two pixels.
        (NormKind::Group, image(8, 1, 2), 4, 3),
        (NormKind::EvoS0, image(8, 2, 1), 4, 3),
        // cnn5's first EvoNorm (32 channels at 28×28): on the thread pool.
        (NormKind::EvoS0, image(32, 28, 28), 8, 2),
        (NormKind::Group, image(32, 14, 14), 8, 3),
    ];
    for (seed, (kind, img, groups, batch)) in cases.into_iter().enumerate() {
        let c = img.channels;
        let layer = NormLayer {
            kind,
            image: img,
            groups,
            eps: 1e-5,
            gamma_off: 2,
            beta_off: 2 + c + 1,
        };
        let stride = 2 * c + 6;
        parity(
            &format!("norm {layer:?} batch {batch}"),
            |be, _| {
                let n = JOBS.len() * batch * img.len();
                let shape = NormJobs {
                    jobs: jobs_buf(be, &JOBS),
                    n_jobs: JOBS.len(),
                    batch,
                    layer,
                    stride,
                };
                // Inputs with a non-zero mean, so GroupNorm's centring matters; γ around 1.
                let x: Vec<f32> = random(70 + seed as u64, n, false)
                    .iter()
                    .map(|v| 2.0 * v + 0.5)
                    .collect();
                let x = upload(be, &x);
                let p: Vec<f32> = random(80 + seed as u64, AGENTS * stride, false);
                let params = upload(be, &p);
                let dy = upload(be, &random(90 + seed as u64, n, false));
                let y = be.alloc(BufKind::F32, n, "y").unwrap();
                let dx = be.alloc(BufKind::F32, n, "dx").unwrap();
                let grads = upload(be, &random(99, JOBS.len() * stride, false));
                be.norm_forward(&NormForward {
                    shape,
                    params,
                    x,
                    y,
                })
                .unwrap();
                be.norm_backward(&NormBackward {
                    shape,
                    params,
                    x,
                    dy,
                    dx,
                    grads,
                })
                .unwrap();
                vec![y, dx, grads]
            },
            |_, want, _, max| norm_bound(want, max),
        );
    }
}

#[test]
fn bad_conv_requests_are_typed_errors() {
    let mut be = NativeBackend::new(2).unwrap();
    let c = conv_cases()[0];
    let (mut shape, params, input, _) = conv_setup(&mut be, &c, false, false, 1);
    let n = JOBS.len() * c.6 * shape.layer.output().len();
    let output = be.alloc(BufKind::F32, n, "y").unwrap();
    // A model agent past the parameter buffer.
    shape.jobs = jobs_buf(&mut be, &[(0, 0), (7, 1), (2, 2), (1, 1)]);
    let err = be
        .conv_forward(&ConvForward {
            shape,
            params,
            input,
            output,
        })
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn max_pool_routes_ties_to_the_first_maximum() {
    // Inputs on a coarse grid, so most windows hold several equal maxima.
    let layer = PoolLayer {
        kind: PoolKind::Max,
        input: image(3, 9, 8),
        window: 3,
        stride: 2,
    };
    let samples = 4;
    parity(
        "max pool with ties",
        |be, _| {
            let x: Vec<f32> = random(7, samples * layer.input.len(), false)
                .iter()
                .map(|v| (v * 2.0).round())
                .collect();
            let x = upload(be, &x);
            let dy = upload(be, &random(8, samples * layer.output().len(), false));
            let dx = be
                .alloc(BufKind::F32, samples * layer.input.len(), "dx")
                .unwrap();
            be.pool_backward(&PoolBackward {
                layer,
                samples,
                x,
                dy,
                dx,
            })
            .unwrap();
            vec![dx]
        },
        // Each input gets at most 4 overlapping windows' gradients (|dy| < 1).
        |_, want, _, _| sum_bound(4, want.abs().max(1.0)),
    );
}

/// Counts the heap allocations of the current thread.
struct Counting;

thread_local! {
    static ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread-local
// without a destructor, so touching it never allocates.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn convolutional_ops_allocate_only_inside_the_gemm_crate() {
    // One thread: every op runs on this thread, so its allocation count is the backend's.
    let mut be = NativeBackend::new(1).unwrap();
    let c = *conv_cases().last().unwrap();
    let (shape, params, input, dy) = conv_setup(&mut be, &c, false, false, 3);
    let (layer, stride) = conv_layer(&c);
    let (n_in, n_out) = (
        JOBS.len() * c.6 * layer.input.len(),
        JOBS.len() * c.6 * layer.output().len(),
    );
    let output = be.alloc(BufKind::F32, n_out, "y").unwrap();
    let dx = be.alloc(BufKind::F32, n_in, "dx").unwrap();
    let act = be.alloc(BufKind::F32, n_out, "act").unwrap();
    let grads = be.alloc(BufKind::F32, JOBS.len() * stride, "g").unwrap();
    let out = layer.output();
    let norm = NormJobs {
        jobs: shape.jobs,
        n_jobs: JOBS.len(),
        batch: c.6,
        layer: NormLayer {
            kind: NormKind::EvoS0,
            image: out,
            groups: 3,
            eps: 1e-5,
            gamma_off: 0,
            beta_off: out.channels,
        },
        stride,
    };
    let pool = PoolLayer {
        kind: PoolKind::Max,
        input: out,
        window: 2,
        stride: 2,
    };
    let pooled = be
        .alloc(BufKind::F32, JOBS.len() * c.6 * pool.output().len(), "p")
        .unwrap();
    let convs = |be: &mut NativeBackend| {
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
    };
    let others = |be: &mut NativeBackend| {
        let samples = JOBS.len() * c.6;
        be.norm_forward(&NormForward {
            shape: norm,
            params,
            x: output,
            y: act,
        })
        .unwrap();
        be.norm_backward(&NormBackward {
            shape: norm,
            params,
            x: output,
            dy,
            dx: act,
            grads,
        })
        .unwrap();
        be.relu(&Relu {
            x: output,
            y: act,
            len: n_out,
        })
        .unwrap();
        be.relu_backward(&ReluBackward {
            y: act,
            dy,
            dx: output,
            len: n_out,
        })
        .unwrap();
        be.pool(&Pool {
            layer: pool,
            samples,
            x: act,
            y: pooled,
        })
        .unwrap();
        be.pool_backward(&PoolBackward {
            layer: pool,
            samples,
            x: act,
            dy: pooled,
            dx: output,
        })
        .unwrap();
    };
    // The first calls size the scratch.
    convs(&mut be);
    others(&mut be);
    let count = || ALLOCS.with(|c| c.get());
    let before = count();
    convs(&mut be);
    // The gemm crate allocates its packing buffer (and a flag vector) inside every call: one
    // GEMM per sample and direction.
    let gemm_calls = 3 * JOBS.len() * c.6;
    let n = count() - before;
    assert!(
        n <= 2 * gemm_calls,
        "{n} heap allocations for {gemm_calls} GEMM calls"
    );
    let before = count();
    others(&mut be);
    assert_eq!(count() - before, 0, "allocations outside the convolutions");
}
