//! Every kernel against the CPU reference on random inputs, one test per target: every wgpu
//! backend present and the native CPU backend (on 1, 2 and 3 threads, whose results must be
//! bit-identical), for sizes that are and are not multiples of the GPU's 4×4 tiles and 64-wide
//! workgroups and of the native backend's SIMD widths and GEMM micro-tiles, several agent
//! counts, and job lists that are not the identity.
//!
//! Tolerances. The reference accumulates in f64, so a target's error is its own f32 rounding.
//! For a sum of K products, the f32 error is at most γ_K·Σ|terms| with γ_K ≈ K·ε (Higham,
//! Accuracy and Stability, §3.1), whatever the summation order (the native GEMM's blocking and
//! FMA change the order, not the bound). Each test therefore runs the reference a second time
//! on |inputs| to get Σ|terms| per output and allows `(K + 2)·ε·Σ|terms| + 1e-30`: tight enough
//! that any indexing error (an O(1) change) fails, loose enough for any correct order of
//! summation. Elementwise kernels (a few roundings) use 4–8 ulps relative with a 1e-7 absolute
//! floor; softmax, whose exp/log are not correctly rounded on GPUs (the native backend computes
//! it in f64 and rounds once), uses 1e-5 relative plus 1e-6 absolute (values are O(1) and
//! O(1/batch)).

mod common;

use common::*;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::model::{DenseLayer, Model};
use swarmgrad::sparse::Csr;
use swarmgrad::Result;

/// Runs `record` on the CPU reference (plain and on |inputs|) and on target `t`, and compares
/// every returned buffer with a bound per element built from the |inputs| run. The native
/// target runs on 1, 2 and 3 threads, whose results must be bit-identical: its work is split
/// into pieces fixed by the problem, never by the thread count.
fn parity(
    t: &Target,
    what: &str,
    record: impl Fn(&mut dyn Backend, bool) -> Result<Vec<Buf>>,
    bound: impl Fn(f64, f64) -> f64,
) {
    let mut cpu = ReferenceBackend::new();
    let outs = record(&mut cpu, false).unwrap();
    let want: Vec<Vec<f64>> = outs.iter().map(|b| cpu.read_f32(*b).unwrap()).collect();
    let mut cpu_abs = ReferenceBackend::new();
    let outs_abs = record(&mut cpu_abs, true).unwrap();
    let mags: Vec<Vec<f64>> = outs_abs
        .iter()
        .map(|b| cpu_abs.read_f32(*b).unwrap())
        .collect();
    let mut first: Option<(String, Vec<Vec<f64>>)> = None;
    for mut be in t.parity_variants() {
        let name = be.describe();
        let outs = record(be.as_mut(), false).unwrap();
        let got_all: Vec<Vec<f64>> = outs.iter().map(|b| be.read_f32(*b).unwrap()).collect();
        match &first {
            None => first = Some((name.clone(), got_all.clone())),
            Some((first_name, f)) => {
                assert!(f == &got_all, "{what}: {name} differs from {first_name}")
            }
        }
        for (k, got) in got_all.iter().enumerate() {
            assert_within(
                &format!("{what} output {k} on {name}"),
                got,
                &want[k],
                |i| bound(want[k][i], mags[k][i]),
            );
        }
    }
}

fn sum_bound(k_terms: usize) -> impl Fn(f64, f64) -> f64 {
    move |_, mag| (k_terms as f64 + 2.0) * EPS32 * mag + 1e-30
}

fn abs_if(v: Vec<f32>, abs: bool) -> Vec<f32> {
    if abs {
        v.into_iter().map(f32::abs).collect()
    } else {
        v
    }
}

/// Layer shapes: multiples of the GPU's 4×4 tiles and 64-wide workgroups, of the native
/// backend's 16- and 8-lane SIMD widths and GEMM micro-tiles, and not.
const SHAPES: &[(usize, usize, usize)] = &[
    (5, 13, 7),
    (32, 64, 10),
    (1, 3, 1),
    (17, 100, 33),
    (16, 48, 32),
    (33, 129, 17),
];

/// (agents, job list) cases: identity, non-identity with repeated models and data.
fn job_cases() -> Vec<(usize, Vec<(usize, usize)>)> {
    vec![
        (1, vec![(0, 0)]),
        (3, vec![(0, 0), (1, 1), (2, 2)]),
        (4, vec![(2, 0), (0, 1), (1, 1), (3, 2), (0, 3), (3, 3)]),
    ]
}

fn flat_jobs(jobs: &[(usize, usize)]) -> Vec<u32> {
    jobs.iter()
        .flat_map(|&(m, d)| [m as u32, d as u32])
        .collect()
}

fn dense_jobs(
    jobs: Buf,
    n_jobs: usize,
    batch: usize,
    layer: DenseLayer,
    stride: usize,
    by_data: bool,
) -> DenseJobs {
    let input_blocks = if by_data {
        InputBlocks::ByData
    } else {
        InputBlocks::ByJob
    };
    DenseJobs {
        jobs,
        n_jobs,
        batch,
        layer,
        stride,
        input_blocks,
    }
}

fn layer(in_dim: usize, out_dim: usize, relu: bool) -> (DenseLayer, usize) {
    // Put the layer at a non-zero offset in a slab with slack, as in a deeper model. Widths that
    // are multiples of 4 get 16-byte-aligned offsets, so the GPU takes its vec4 kernels there
    // and its scalar kernels elsewhere: SHAPES covers both.
    let w_off = if in_dim.is_multiple_of(4) { 4 } else { 3 };
    let l = DenseLayer {
        in_dim,
        out_dim,
        w_off,
        b_off: w_off + in_dim * out_dim,
        relu,
    };
    (l, (l.b_off + out_dim + 5).next_multiple_of(4))
}

target_tests!([gpu, native] dense_forward_matches_reference);
fn dense_forward_matches_reference(t: &Target) {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for relu in [false, true] {
                let (l, stride) = layer(in_dim, out_dim, relu);
                for by_data in [true, false] {
                    let blocks = if by_data { agents } else { jobs.len() };
                    let what = format!("dense_forward b{batch} {in_dim}->{out_dim} agents {agents} jobs {} relu {relu} by_data {by_data}", jobs.len());
                    parity(
                        t,
                        &what,
                        |be, abs| {
                            let params =
                                upload(be, &abs_if(uniform(1, agents * stride, -1.0, 1.0), abs));
                            let input = upload(
                                be,
                                &abs_if(uniform(2, blocks * batch * in_dim, -1.0, 1.0), abs),
                            );
                            let output =
                                be.alloc(BufKind::F32, jobs.len() * batch * out_dim, "y")?;
                            let jb = upload_u32(be, &flat_jobs(&jobs));
                            let shape = dense_jobs(jb, jobs.len(), batch, l, stride, by_data);
                            be.dense_forward(&DenseForward {
                                shape,
                                params,
                                input,
                                output,
                            })?;
                            Ok(vec![output])
                        },
                        sum_bound(in_dim + 1),
                    );
                }
            }
        }
    }
}

target_tests!([gpu, native] dense_backward_data_matches_reference);
fn dense_backward_data_matches_reference(t: &Target) {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for relu_mask in [false, true] {
                let (l, stride) = layer(in_dim, out_dim, false);
                let what = format!("dense_backward_data b{batch} {in_dim}->{out_dim} agents {agents} jobs {} mask {relu_mask}", jobs.len());
                parity(
                    t,
                    &what,
                    |be, abs| {
                        let params =
                            upload(be, &abs_if(uniform(3, agents * stride, -1.0, 1.0), abs));
                        let dz = upload(
                            be,
                            &abs_if(uniform(4, jobs.len() * batch * out_dim, -1.0, 1.0), abs),
                        );
                        // The mask input is identical in both runs: it selects, it is not summed.
                        let input = upload(be, &uniform(5, jobs.len() * batch * in_dim, -1.0, 1.0));
                        let dx = be.alloc(BufKind::F32, jobs.len() * batch * in_dim, "dx")?;
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = dense_jobs(jb, jobs.len(), batch, l, stride, false);
                        be.dense_backward_data(&DenseBackwardData {
                            shape,
                            params,
                            dz,
                            input,
                            relu_mask,
                            dx,
                        })?;
                        Ok(vec![dx])
                    },
                    sum_bound(out_dim),
                );
            }
        }
    }
}

target_tests!([gpu, native] dense_backward_weights_matches_reference);
fn dense_backward_weights_matches_reference(t: &Target) {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for by_data in [true, false] {
                let (l, stride) = layer(in_dim, out_dim, true);
                let blocks = if by_data { agents } else { jobs.len() };
                let what = format!("dense_backward_weights b{batch} {in_dim}->{out_dim} agents {agents} jobs {} by_data {by_data}", jobs.len());
                parity(
                    t,
                    &what,
                    |be, abs| {
                        let dz = upload(
                            be,
                            &abs_if(uniform(6, jobs.len() * batch * out_dim, -1.0, 1.0), abs),
                        );
                        let input = upload(
                            be,
                            &abs_if(uniform(7, blocks * batch * in_dim, -1.0, 1.0), abs),
                        );
                        // Slots outside the layer must keep their contents: start from garbage.
                        let grads =
                            upload(be, &abs_if(uniform(8, jobs.len() * stride, -1.0, 1.0), abs));
                        let jb = upload_u32(be, &flat_jobs(&jobs));
                        let shape = dense_jobs(jb, jobs.len(), batch, l, stride, by_data);
                        be.dense_backward_weights(&DenseBackwardWeights {
                            shape,
                            dz,
                            input,
                            grads,
                        })?;
                        Ok(vec![grads])
                    },
                    sum_bound(batch),
                );
            }
        }
    }
}

target_tests!([gpu, native] softmax_xent_matches_reference);
fn softmax_xent_matches_reference(t: &Target) {
    for (batch, classes) in [(5, 10), (64, 3), (7, 1), (33, 100)] {
        for (agents, jobs) in job_cases() {
            let what = format!(
                "softmax_xent b{batch} c{classes} agents {agents} jobs {}",
                jobs.len()
            );
            parity(
                t,
                &what,
                |be, _| {
                    let logits = upload(be, &uniform(9, jobs.len() * batch * classes, -4.0, 4.0));
                    let labels = upload_u32(be, &indices(10, agents * batch, classes as u32));
                    let jb = upload_u32(be, &flat_jobs(&jobs));
                    let dlogits = be.alloc(BufKind::F32, jobs.len() * batch * classes, "dl")?;
                    let stats = be.alloc(BufKind::F32, 2 * jobs.len() * batch, "stats")?;
                    be.softmax_xent(&SoftmaxXent {
                        jobs: jb,
                        n_jobs: jobs.len(),
                        batch,
                        classes,
                        logits,
                        labels,
                        dlogits,
                        stats,
                    })?;
                    Ok(vec![dlogits, stats])
                },
                |want, _| 1e-5 * want.abs() + 1e-6,
            );
        }
    }
}

target_tests!([gpu, native] gather_matches_reference);
fn gather_matches_reference(t: &Target) {
    // dim 20: five words a row, not a multiple of the four a vec4 invocation converts.
    for (n_samples, dim, agents, batch) in [
        (50, 13, 3, 5),
        (200, 784, 4, 16),
        (7, 1, 1, 1),
        (30, 20, 2, 3),
    ] {
        let bytes: Vec<u8> = indices(11, n_samples * dim, 256)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        let labels = indices(12, n_samples, 10);
        let index = indices(13, agents * batch, n_samples as u32);
        let rows = agents * batch;
        let what = format!("gather n{n_samples} dim{dim} rows {rows}");
        let mut cpu = ReferenceBackend::new();
        let record = |be: &mut dyn Backend| -> Result<(Buf, Buf)> {
            let data = be.upload_u8(&bytes, "data")?;
            let lab = upload_u32(be, &labels);
            let idx = upload_u32(be, &index);
            let x = be.alloc(BufKind::F32, rows * dim, "x")?;
            let y = be.alloc(BufKind::U32, rows, "y")?;
            be.gather(&Gather {
                data,
                labels: lab,
                index: idx,
                rows,
                dim,
                norm: ChannelNorm::single(0.1307, 0.3081),
                x,
                y,
            })?;
            Ok((x, y))
        };
        let (x, y) = record(&mut cpu).unwrap();
        let (want_x, want_y) = (cpu.read_f32(x).unwrap(), cpu.read_u32(y).unwrap());
        assert_eq!(
            want_y,
            index
                .iter()
                .map(|&s| labels[s as usize])
                .collect::<Vec<_>>()
        );
        for mut be in t.variants() {
            let (x, y) = record(be.as_mut()).unwrap();
            assert_close(&what, &be.read_f32(x).unwrap(), &want_x, 4.0 * EPS32, 1e-7);
            assert_eq!(be.read_u32(y).unwrap(), want_y, "{what}: labels");
        }
    }
}

target_tests!([gpu, native] mix_matches_reference);
fn mix_matches_reference(t: &Target) {
    for (rows, cols, len, in_stride, out_stride, in_off, out_off) in [
        (4, 4, 10, 10, 10, 0, 0),
        (16, 16, 130, 192, 128 + 7, 5, 3),
        (3, 7, 1, 1, 2, 0, 1),
        (8, 24, 1000, 1024, 1000, 0, 0),
        (6, 6, 256, 256, 260, 4, 8),
    ] {
        let csr = random_csr(rows, cols, rows as u64);
        let what = format!("mix {rows}x{cols} len {len}");
        parity(
            t,
            &what,
            |be, abs| {
                let mut c = csr.clone();
                if abs {
                    c.weight.iter_mut().for_each(|w| *w = w.abs());
                }
                let csr_bufs = be.upload_csr(&c, "w")?;
                let input = upload(
                    be,
                    &abs_if(uniform(20, in_off + cols * in_stride, -1.0, 1.0), abs),
                );
                // Elements between output vectors must keep their contents.
                let output = upload(
                    be,
                    &abs_if(uniform(21, out_off + rows * out_stride, -1.0, 1.0), abs),
                );
                be.mix(&Mix {
                    csr: csr_bufs,
                    input,
                    in_offset: in_off,
                    in_stride,
                    output,
                    out_offset: out_off,
                    out_stride,
                    len,
                })?;
                Ok(vec![output])
            },
            sum_bound(3),
        );
    }
}

target_tests!([gpu, native] updates_match_reference);
fn updates_match_reference(t: &Target) {
    for len in [1, 63, 64, 1000, 70_001] {
        parity(
            t,
            &format!("axpby len {len}"),
            |be, _| {
                let x = upload(be, &uniform(30, len, -2.0, 2.0));
                let y = upload(be, &uniform(31, len + 3, -2.0, 2.0));
                be.axpby(&Axpby {
                    x,
                    y,
                    a: 0.7,
                    b: -1.3,
                    len,
                })?;
                Ok(vec![y])
            },
            |want, _| 4.0 * EPS32 * want.abs().max(1.0) + 1e-7,
        );
        for (momentum, nesterov, wd) in [(0.0, false, 0.0), (0.9, false, 1e-4), (0.9, true, 5e-4)] {
            parity(
                t,
                &format!("local_step len {len} beta {momentum} nesterov {nesterov}"),
                |be, _| {
                    let params = upload(be, &uniform(32, len, -2.0, 2.0));
                    let grads = upload(be, &uniform(33, len, -2.0, 2.0));
                    let momentum_buf = upload(be, &uniform(34, len, -2.0, 2.0));
                    // Two steps, so the second reads the momentum the first wrote.
                    for _ in 0..2 {
                        be.local_step(&LocalStep {
                            params,
                            grads,
                            momentum_buf,
                            len,
                            lr: 0.1,
                            momentum,
                            nesterov,
                            weight_decay: wd,
                        })?;
                    }
                    Ok(vec![params, momentum_buf])
                },
                |want, _| 8.0 * EPS32 * want.abs().max(1.0) + 1e-7,
            );
        }
    }
}

target_tests!([gpu, native] reductions_match_reference);
fn reductions_match_reference(t: &Target) {
    for (segments, seg_len, a_stride, b_stride) in [
        (1, 1, 1, 1),
        (4, 300, 300, 0),
        (16, 1000, 1024, 1024),
        (3, 65_537, 65_540, 0),
    ] {
        for mode in [
            ReduceMode::Sum,
            ReduceMode::Dot,
            ReduceMode::SquaredDistance,
        ] {
            parity(
                t,
                &format!("reduce {mode:?} {segments}x{seg_len}"),
                |be, abs| {
                    let a = upload(
                        be,
                        &abs_if(
                            uniform(40, (segments - 1) * a_stride + seg_len + 1, -1.0, 1.0),
                            abs,
                        ),
                    );
                    let bv = uniform(41, (segments - 1) * b_stride + seg_len + 1, -1.0, 1.0);
                    // |a - b|² ≤ (|a| + |b|)², so the |input| run for SquaredDistance negates b.
                    let bv = if abs && mode == ReduceMode::SquaredDistance {
                        bv.into_iter().map(|v| -v.abs()).collect()
                    } else {
                        abs_if(bv, abs)
                    };
                    let b = upload(be, &bv);
                    let out = be.alloc(BufKind::F32, segments + 2, "out")?;
                    be.reduce(&Reduce {
                        mode,
                        a,
                        a_offset: 1,
                        a_stride,
                        b,
                        b_offset: 1,
                        b_stride,
                        segments,
                        seg_len,
                        out,
                        out_offset: 2,
                    })?;
                    Ok(vec![out])
                },
                sum_bound(seg_len + 1),
            );
        }
    }
}

/// Random values in [-1, 1) with every seventh one exactly 0 (sign(0) = 0).
fn with_zeros(seed: u64, n: usize) -> Vec<f32> {
    let mut v = uniform(seed, n, -1.0, 1.0);
    for x in v.iter_mut().step_by(7) {
        *x = 0.0;
    }
    v
}

#[test]
fn sign_compress_by_hand_on_the_reference() {
    // Segment [3, −1, 0, 0]: scale ‖w‖₁/ℓ = 1, c = [1, −1, 0, 0] (sign(0) = 0), e = [2, 0, 0, 0];
    // at stride 6, segment [0.5, 0.5, 0, 0]: scale 0.25, c = e = [0.25, 0.25, 0, 0]; 4, 5 untouched.
    let mut be = ReferenceBackend::new();
    let memory = upload(
        &mut be,
        &[3.0, -1.0, 0.0, 0.0, 9.0, 9.0, 0.5, 0.5, 0.0, 0.0],
    );
    let out = upload(&mut be, &[7.0; 10]);
    be.sign_compress(&SignCompress {
        memory,
        out,
        offset: 0,
        stride: 6,
        segments: 2,
        len: 4,
    })
    .unwrap();
    let c = be.read_f32(out).unwrap();
    let e = be.read_f32(memory).unwrap();
    assert_eq!(c, [1.0, -1.0, 0.0, 0.0, 7.0, 7.0, 0.25, 0.25, 0.0, 0.0]);
    assert_eq!(e, [2.0, 0.0, 0.0, 0.0, 9.0, 9.0, 0.25, 0.25, 0.0, 0.0]);
}

target_tests!([gpu, native] sign_compress_matches_reference);
/// Scaled-sign compression: c = (‖w‖₁/ℓ)·sign(w), memory w − c. The scale is a sum of ℓ
/// terms of magnitude ≤ 1, so both outputs may be off by (ℓ + 2)·ε·scale (scale < 1) plus one
/// rounding of w − c: (ℓ + 4)·ε·(|want| + 1) bounds both.
fn sign_compress_matches_reference(t: &Target) {
    for (segments, len, stride, offset) in [
        (1, 1, 1, 0),
        (5, 300, 301, 3),
        (16, 1000, 1024, 8),
        (3, 65_537, 65_540, 1),
    ] {
        parity(
            t,
            &format!("sign_compress {segments}x{len}"),
            |be, abs| {
                let n = offset + (segments - 1) * stride + len + 2;
                let memory = upload(be, &abs_if(with_zeros(42, n), abs));
                let out = upload(be, &uniform(43, n, -1.0, 1.0));
                be.sign_compress(&SignCompress {
                    memory,
                    out,
                    offset,
                    stride,
                    segments,
                    len,
                })?;
                Ok(vec![out, memory])
            },
            move |want, _| (len as f64 + 4.0) * EPS32 * (want.abs() + 1.0),
        );
    }
}

target_tests!([gpu, native] pair_dots_match_reference);
/// CGA's Gram entries: per-tensor dots of slab pairs (repeated, swapped and self pairs; tensors
/// of 1 to 700 scalars, one over 256 for the workgroup loop), a sum of ℓ products each.
fn pair_dots_match_reference(t: &Target) {
    let (slabs, stride) = (7, 1000);
    let tensors: Vec<u32> = vec![0, 300, 300, 1, 301, 699];
    let pairs: Vec<u32> = vec![0, 0, 0, 1, 1, 0, 6, 3, 5, 5, 2, 6, 4, 1];
    parity(
        t,
        "pair_dots",
        |be, abs| {
            let x = upload(be, &abs_if(uniform(44, slabs * stride, -1.0, 1.0), abs));
            let pairs = upload_u32(be, &pairs);
            let tensors = upload_u32(be, &tensors);
            let out = be.alloc(BufKind::F32, 7 * 3, "out")?;
            be.pair_dots(&PairDots {
                x,
                stride,
                pairs,
                count: 7,
                tensors,
                n_tensors: 3,
                out,
            })?;
            Ok(vec![out])
        },
        sum_bound(700),
    );
}

target_tests!([reference, gpu, native] error_feedback_conserves_the_sum);
/// ALGORITHMS.md §8.2.9 with CompNGM's two ops (e ← e + z by axpby, then `sign_compress` per
/// tensor): after T steps, Σ_s c_s + e_T = Σ_s z_s for every memory (each tensor of each slab,
/// here two tensors of different lengths in padded slabs), up to the f32 rounding of e + z and
/// e − c once per step (≤ 4·T·ε·max|Σ|, values O(1)); exactly (to f64 rounding) on the reference.
fn error_feedback_conserves_the_sum(t: &Target) {
    let (slabs, stride, steps) = (6, 40, 60);
    let tensors = [(0, 27), (27, 9)];
    let mut be = t.backend();
    let be = be.as_mut();
    let memory = be.alloc(BufKind::F32, slabs * stride, "memory").unwrap();
    let z = be.alloc(BufKind::F32, slabs * stride, "z").unwrap();
    let (mut sum_z, mut sum_c) = (vec![0.0f64; slabs * stride], vec![0.0f64; slabs * stride]);
    for step in 0..steps {
        let mut zs = uniform(100 + step, slabs * stride, -1.0, 1.0);
        for (k, v) in zs.iter_mut().enumerate() {
            if k % stride >= 36 {
                *v = 0.0; // padding
            }
        }
        be.write_f32(z, 0, &zs).unwrap();
        be.axpby(&Axpby {
            x: z,
            y: memory,
            a: 1.0,
            b: 1.0,
            len: slabs * stride,
        })
        .unwrap();
        for (offset, len) in tensors {
            be.sign_compress(&SignCompress {
                memory,
                out: z,
                offset,
                stride,
                segments: slabs,
                len,
            })
            .unwrap();
        }
        be.flush().unwrap();
        let c = be.read_f32(z).unwrap();
        for k in 0..slabs * stride {
            sum_z[k] += f64::from(zs[k]);
            sum_c[k] += c[k];
        }
    }
    let e = be.read_f32(memory).unwrap();
    let got: Vec<f64> = sum_c.iter().zip(&e).map(|(c, e)| c + e).collect();
    let scale = sum_z.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let tol = if t.is_reference() {
        1e-12
    } else {
        4.0 * steps as f64 * EPS32 * scale
    };
    assert_within(
        &format!("Σc + e vs Σz on {}", be.describe()),
        &got,
        &sum_z,
        |_| tol,
    );
    // The compression really compresses: each tensor's c takes one magnitude per slab.
    let c = be.read_f32(z).unwrap();
    for s in 0..slabs {
        let mags: Vec<f64> = c[s * stride..s * stride + 27]
            .iter()
            .filter(|v| **v != 0.0)
            .map(|v| v.abs())
            .collect();
        assert!(mags.windows(2).all(|w| w[0] == w[1]), "slab {s}: {mags:?}");
    }
}

/// A whole training step: gather → forward → loss → backward → local step → mix, recorded into
/// one submit, repeated; a backend must track the reference after many steps.
fn train_steps(be: &mut dyn Backend, agents: usize, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    use swarmgrad::model::pass::{Minibatch, Pass};
    let model = Model::mlp(&[12, 16, 9, 5]).unwrap();
    let (batch, n_samples) = (6, 97);
    let bytes: Vec<u8> = indices(50, n_samples * 12, 256)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    let data = be.upload_u8(&bytes, "data")?;
    let labels = upload_u32(be, &indices(51, n_samples, 5));
    let stride = model.stride();
    let params = upload(be, &model.init(agents, 3, false));
    let grads = be.alloc(BufKind::F32, agents * stride, "grads")?;
    let mom = be.alloc(BufKind::F32, agents * stride, "mom")?;
    let next = be.alloc(BufKind::F32, agents * stride, "next")?;
    let jobs: Vec<(usize, usize)> = (0..agents).map(|i| (i, i)).collect();
    let pass = Pass::new(be, &model, batch, &jobs)?;
    let mb = Minibatch::new(be, agents, batch, 12)?;
    // Ring weights 1/3 (a single agent mixes with itself).
    let rows: Vec<Vec<(usize, f64)>> = (0..agents)
        .map(|i| {
            if agents == 1 {
                vec![(0, 1.0)]
            } else {
                vec![
                    ((i + agents - 1) % agents, 1.0 / 3.0),
                    (i, 1.0 / 3.0),
                    ((i + 1) % agents, 1.0 / 3.0),
                ]
            }
        })
        .collect();
    let w = be.upload_csr(&Csr::from_rows(agents, &rows), "W")?;
    for t in 0..steps {
        be.write_u32(
            mb.index,
            0,
            &indices(100 + t as u64, agents * batch, n_samples as u32),
        )?;
        be.gather(&Gather {
            data,
            labels,
            index: mb.index,
            rows: agents * batch,
            dim: 12,
            norm: ChannelNorm::single(0.5, 0.25),
            x: mb.x,
            y: mb.y,
        })?;
        pass.record_forward(be, params, &mb)?;
        pass.record_backward(be, params, &mb, grads)?;
        let len = agents * stride;
        be.local_step(&LocalStep {
            params,
            grads,
            momentum_buf: mom,
            len,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
        })?;
        be.mix(&Mix {
            csr: w,
            input: params,
            in_offset: 0,
            in_stride: stride,
            output: next,
            out_offset: 0,
            out_stride: stride,
            len: stride,
        })?;
        be.copy(&CopyRange::whole(next, params, len))?;
        be.flush()?;
    }
    Ok((be.read_f32(params)?, be.read_f32(pass.job_stats)?))
}

target_tests!([gpu, native] training_steps_track_the_reference);
fn training_steps_track_the_reference(t: &Target) {
    // 30 steps of SGD with Nesterov momentum and ring gossip; f32 rounding compounds through
    // the iterations (and ReLU kinks), so the bound is 1e-4 relative to the parameter scale.
    let (agents, steps) = (5, 30);
    let mut cpu = ReferenceBackend::new();
    let (want, want_stats) = train_steps(&mut cpu, agents, steps).unwrap();
    for mut be in t.variants() {
        let name = be.describe();
        let (got, stats) = train_steps(be.as_mut(), agents, steps).unwrap();
        assert_close(
            &format!("params after {steps} steps on {name}"),
            &got,
            &want,
            1e-4,
            1e-4,
        );
        assert_close(
            &format!("last-step loss/hits on {name}"),
            &stats,
            &want_stats,
            1e-4,
            1e-4,
        );
        if t.is_native() {
            assert_eq!(
                be.counters().submits as usize,
                steps,
                "one submit per step (reads need none in host memory)"
            );
        } else {
            assert_eq!(
                be.counters().submits as usize,
                steps + 2,
                "one submit per step, plus the two reads"
            );
        }
    }
}

target_tests!([reference, gpu, native] dispatches_per_step_do_not_depend_on_the_number_of_agents);
fn dispatches_per_step_do_not_depend_on_the_number_of_agents(t: &Target) {
    for mut be in t.variants() {
        let mut per_step = Vec::new();
        for agents in [1, 2, 16] {
            let before = be.counters();
            train_steps(be.as_mut(), agents, 3).unwrap();
            let after = be.counters();
            per_step.push((after.dispatches - before.dispatches) / 3);
        }
        // gather, 3 forward, loss, loss reduce, 3 weight grads, 2 data grads, step, mix = 13
        assert_eq!(
            per_step,
            vec![13, 13, 13],
            "dispatches per step for 1, 2, 16 agents"
        );
    }
}

target_tests!([reference, gpu, native] bad_requests_are_typed_errors_on_every_backend);
fn bad_requests_are_typed_errors_on_every_backend(t: &Target) {
    use swarmgrad::Error;
    for mut be in t.variants() {
        let be = be.as_mut();
        let x = be.alloc(BufKind::F32, 10, "x").unwrap();
        let y = be.alloc(BufKind::F32, 5, "y").unwrap();
        let idx = be.alloc(BufKind::U32, 10, "i").unwrap();
        let short = be.axpby(&Axpby {
            x,
            y,
            a: 1.0,
            b: 1.0,
            len: 10,
        });
        assert!(
            matches!(short, Err(Error::InvalidOp { op: "axpby", .. })),
            "{short:?}"
        );
        let alias = be.axpby(&Axpby {
            x,
            y: x,
            a: 1.0,
            b: 1.0,
            len: 5,
        });
        assert!(matches!(alias, Err(Error::InvalidOp { .. })), "{alias:?}");
        let kind = be.write_f32(idx, 0, &[1.0]);
        assert!(matches!(kind, Err(Error::InvalidOp { .. })), "{kind:?}");
        let nan = be.local_step(&LocalStep {
            params: x,
            grads: y,
            momentum_buf: idx,
            len: 5,
            lr: f64::NAN,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        });
        assert!(matches!(nan, Err(Error::InvalidOp { .. })), "{nan:?}");
        let bad_csr = Csr::from_rows(2, &[vec![(5, 1.0)]]);
        assert!(matches!(
            be.upload_csr(&bad_csr, "w"),
            Err(Error::InvalidOp { .. })
        ));
        be.flush().unwrap();
    }
}

target_tests!([gpu] buffers_over_the_binding_limit_are_typed_errors);
fn buffers_over_the_binding_limit_are_typed_errors(t: &Target) {
    use swarmgrad::Error;
    let mut gpu = t.gpu();
    let limit = gpu.context().limits.max_storage_buffer_binding_size as usize;
    let err = gpu
        .alloc(BufKind::F32, limit / 4 + 1, "huge params")
        .unwrap_err();
    assert!(matches!(err, Error::BufferTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("huge params"), "{err}");
}

target_tests!([gpu, native] adam_kernels_match_reference);
fn adam_kernels_match_reference(t: &Target) {
    // A handful of roundings and one sqrt per element: 16 ulps relative with a 1e-6 floor
    // (the step divides by √s/√bc2 + ε, so its relative error is a few times that of √).
    for (agents, stride) in [(1, 5), (3, 64), (4, 1000)] {
        let len = agents * stride;
        parity(
            t,
            &format!("adam_step/moments {agents}x{stride}"),
            |be, _| {
                let params = upload(be, &uniform(60, len, -1.0, 1.0));
                let grads = upload(be, &uniform(61, len, -1.0, 1.0));
                let m1 = upload(be, &uniform(62, len, -0.1, 0.1));
                let m2 = upload(be, &uniform(63, len, 0.0, 0.01));
                be.adam_step(&AdamStep {
                    params,
                    grads,
                    m1,
                    m2,
                    len,
                    lr: 0.01,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    bc1: 0.19,
                    bc2: 0.002998,
                    weight_decay: 1e-4,
                })?;
                let delta = upload(be, &uniform(64, len, -1.0, 1.0));
                let sq_norms = upload(be, &uniform(65, agents, 0.5, 2.0));
                be.adam_moments(&AdamMoments {
                    delta,
                    sq_norms,
                    m1,
                    m2,
                    agents,
                    stride,
                    beta1: 0.9,
                    beta2: 0.999,
                })?;
                Ok(vec![params, m1, m2])
            },
            |want, _| 16.0 * EPS32 * want.abs() + 1e-6,
        );
    }
}

target_tests!([reference, gpu] gpu_time_is_measured_where_timestamps_exist);
fn gpu_time_is_measured_where_timestamps_exist(t: &Target) {
    if t.is_reference() {
        assert_eq!(ReferenceBackend::new().gpu_seconds().unwrap(), None);
        return;
    }
    let mut gpu = t.gpu();
    let has_timestamps = gpu
        .context()
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY);
    train_steps(&mut gpu, 4, 3).unwrap();
    let t = gpu.gpu_seconds().unwrap();
    assert_eq!(t.is_some(), has_timestamps, "{}", gpu.describe());
    if let Some(t) = t {
        assert!(t > 0.0 && t < 60.0, "{}: {t} s", gpu.describe());
        // The total was taken: nothing new has run since.
        assert_eq!(gpu.gpu_seconds().unwrap(), Some(0.0));
    }
}

target_tests!([gpu, native] vector_ops_match_reference);
fn vector_ops_match_reference(t: &Target) {
    // fill and the strided copy move values: exact on every backend (the inputs are f32).
    // The mean sums `count` terms, then divides once: the sum bound of K = count terms.
    let exact = |_: f64, _: f64| 0.0;
    for (count, len) in [(1, 1), (3, 63), (5, 64), (7, 1000), (130, 3)] {
        parity(
            t,
            &format!("fill {count}×{len}"),
            |be, _| {
                // NaN and ∞ in the output are overwritten (zeroing by axpby would keep NaN).
                let mut init = uniform(40, 2 * count * len + 5, -2.0, 2.0);
                init[1] = f32::NAN;
                init[1 + 2 * len * (count - 1) + len - 1] = f32::INFINITY;
                let y = upload(be, &init);
                be.fill(&Fill {
                    y,
                    offset: 1,
                    stride: 2 * len,
                    count,
                    len,
                    value: -0.75,
                })?;
                Ok(vec![y])
            },
            exact,
        );
        for (src_step, dst_step, src_stride) in [(1, 1, len + 2), (2, 1, 2 * len + 1), (1, 2, 0)] {
            parity(
                t,
                &format!("copy_strided {count}×{len} steps {src_step}/{dst_step}"),
                |be, _| {
                    let src = upload(
                        be,
                        &uniform(41, count * src_stride + len * src_step + 3, -2.0, 2.0),
                    );
                    let dst_stride = len * dst_step + 1;
                    let dst = upload(be, &uniform(42, count * dst_stride + 2, -2.0, 2.0));
                    be.copy_strided(&CopyStrided {
                        src,
                        src_offset: 1,
                        src_stride,
                        src_step,
                        dst,
                        dst_offset: 2,
                        dst_stride,
                        dst_step,
                        count,
                        len,
                    })?;
                    Ok(vec![dst])
                },
                exact,
            );
        }
        parity(
            t,
            &format!("mean {count}×{len}"),
            |be, abs| {
                let stride = len + 3;
                let src = upload(be, &abs_if(uniform(43, count * stride + 1, -2.0, 2.0), abs));
                let dst = upload(be, &abs_if(uniform(44, len + 4, -2.0, 2.0), abs));
                be.mean(&Mean {
                    src,
                    src_offset: 1,
                    src_stride: stride,
                    count,
                    len,
                    dst,
                    dst_offset: 3,
                })?;
                Ok(vec![dst])
            },
            sum_bound(count + 1),
        );
    }
}

target_tests!([reference, gpu, native] mean_of_identical_vectors_is_exact);
fn mean_of_identical_vectors_is_exact(t: &Target) {
    // Identical vectors average exactly (summed, then divided once; a rounded 1/6 weight
    // would not): multiples of 1/16 keep every partial sum exact.
    let slab: Vec<f32> = (0..37).map(|k| (k as f32 - 18.0) / 16.0).collect();
    let n = 6;
    let stacked: Vec<f32> = (0..n).flat_map(|_| slab.clone()).collect();
    for mut be in t.variants() {
        let be = be.as_mut();
        let src = upload(be, &stacked);
        let dst = be.alloc(BufKind::F32, 37, "mean").unwrap();
        be.mean(&Mean {
            src,
            src_offset: 0,
            src_stride: 37,
            count: n,
            len: 37,
            dst,
            dst_offset: 0,
        })
        .unwrap();
        let want: Vec<f64> = slab.iter().map(|&v| v as f64).collect();
        assert_eq!(be.read_f32(dst).unwrap(), want, "{}", be.describe());
    }
}

target_tests!([reference, gpu, native] vector_ops_reject_bad_requests_on_every_backend);
fn vector_ops_reject_bad_requests_on_every_backend(t: &Target) {
    use swarmgrad::Error;
    for mut be in t.variants() {
        let be = be.as_mut();
        let x = be.alloc(BufKind::F32, 10, "x").unwrap();
        let y = be.alloc(BufKind::F32, 5, "y").unwrap();
        let fill = |y, count, value| Fill {
            y,
            offset: 0,
            stride: 5,
            count,
            len: 5,
            value,
        };
        let long = be.fill(&fill(y, 2, 0.0));
        assert!(
            matches!(long, Err(Error::InvalidOp { op: "fill", .. })),
            "{long:?}"
        );
        let nan = be.fill(&fill(x, 1, f64::NAN));
        assert!(
            matches!(nan, Err(Error::InvalidOp { op: "fill", .. })),
            "{nan:?}"
        );
        let copy = |src, dst, src_step| CopyStrided {
            src,
            src_offset: 0,
            src_stride: 0,
            src_step,
            dst,
            dst_offset: 0,
            dst_stride: 5,
            dst_step: 1,
            count: 1,
            len: 5,
        };
        assert!(be.copy_strided(&copy(x, y, 2)).is_ok());
        let stepped = be.copy_strided(&copy(x, y, 3));
        assert!(
            matches!(stepped, Err(Error::InvalidOp { .. })),
            "{stepped:?}"
        );
        let zero = be.copy_strided(&copy(x, y, 0));
        assert!(matches!(zero, Err(Error::InvalidOp { .. })), "{zero:?}");
        let alias = be.copy_strided(&copy(x, x, 1));
        assert!(matches!(alias, Err(Error::InvalidOp { .. })), "{alias:?}");
        let mean = |count| Mean {
            src: x,
            src_offset: 0,
            src_stride: 5,
            count,
            len: 5,
            dst: y,
            dst_offset: 0,
        };
        assert!(be.mean(&mean(2)).is_ok());
        for bad in [0, 3] {
            let r = be.mean(&mean(bad));
            assert!(
                matches!(r, Err(Error::InvalidOp { op: "mean", .. })),
                "{r:?}"
            );
        }
        be.flush().unwrap();
    }
}

target_tests!([gpu, native] copy_matches_reference);
fn copy_matches_reference(t: &Target) {
    // Plain copies between two buffers at different offsets, exact.
    for (len, src_off, dst_off) in [(1, 0, 0), (100, 3, 17), (20_000, 5, 0)] {
        parity(
            t,
            &format!("copy len {len} {src_off}->{dst_off}"),
            |be, _| {
                let a = upload(be, &uniform(70, src_off + len + dst_off + 20, -1.0, 1.0));
                let b = upload(be, &uniform(71, dst_off + len + 7, -1.0, 1.0));
                be.copy(&CopyRange {
                    src: a,
                    src_offset: src_off,
                    dst: b,
                    dst_offset: dst_off,
                    len,
                })?;
                Ok(vec![a, b])
            },
            |_, _| 0.0,
        );
    }
}

target_tests!([reference, gpu, native] copy_within_one_buffer_is_a_typed_error);
fn copy_within_one_buffer_is_a_typed_error(t: &Target) {
    // wgpu cannot copy within one buffer, so no backend accepts it: the same request gets the
    // same typed error everywhere, before any work is recorded.
    let mut be = t.backend();
    let be = be.as_mut();
    let a = upload(be, &uniform(72, 80, -1.0, 1.0));
    let r = be.copy(&CopyRange {
        src: a,
        src_offset: 0,
        dst: a,
        dst_offset: 10,
        len: 50,
    });
    assert!(
        matches!(r, Err(swarmgrad::Error::InvalidOp { op: "copy", .. })),
        "{r:?}"
    );
    be.flush().unwrap();
}
