//! The native CPU backend against the f64 reference: every operation on random inputs (sizes
//! that are and are not multiples of the 16-lane AVX-512 / 8-lane AVX2 width and of the GEMM
//! micro-tiles, several agent counts, job lists that are not the identity), each on 1, 2 and 3
//! threads; bit-identical results across thread counts; every algorithm end to end through the
//! trainer; and the backend choice.
//!
//! Tolerances (as in tests/kernels.rs). The reference accumulates in f64, so the native error is
//! its own f32 rounding. For a sum of K products the f32 error is at most γ_K·Σ|terms| with
//! γ_K ≈ K·ε (Higham, Accuracy and Stability, §3.1), whatever the summation order (the GEMM
//! kernels' blocking and FMA change the order, not the bound). Each test runs the reference a
//! second time on |inputs| to get Σ|terms| per output and allows `(K + 2)·ε·Σ|terms| + 1e-30`:
//! any indexing error (an O(1) change) fails. Elementwise kernels (a few roundings) use 4–8 ulps
//! relative with a 1e-7 absolute floor; softmax, computed in f64 here and rounded once, keeps
//! the GPU tests' 1e-5 relative plus 1e-6 absolute.

mod common;

use common::*;
use swarmgrad::algo::{algorithm_names, AlgoOptions, Algorithm};
use swarmgrad::backend::choice::{self, BackendChoice};
use swarmgrad::backend::gpu::AdapterChoice;
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::graph::{MixingRule, Topology};
use swarmgrad::model::{DenseLayer, Mlp};
use swarmgrad::sparse::Csr;
use swarmgrad::train::{Summary, TrainConfig, Trainer};
use swarmgrad::Result;

/// Runs `record` on the CPU reference (plain and on |inputs|) and on the native backend with 1,
/// 2 and 3 threads, and
/// compares every returned buffer with a bound per element built from the |inputs| run.
fn parity(
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
    let mut first: Option<Vec<Vec<f64>>> = None;
    for mut nat in natives() {
        let name = nat.describe();
        let outs = record(&mut nat, false).unwrap();
        let got_all: Vec<Vec<f64>> = outs.iter().map(|b| nat.read_f32(*b).unwrap()).collect();
        // Work is split into pieces fixed by the problem, never by the thread count.
        match &first {
            None => first = Some(got_all.clone()),
            Some(f) => assert!(
                f == &got_all,
                "{what}: {name} differs from the 1-thread result"
            ),
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

/// The native backend on 1, 2 and 3 threads (3: more threads than cores here, and not a
/// divisor of the chunk counts).
fn natives() -> Vec<NativeBackend> {
    [1, 2, 3]
        .into_iter()
        .map(|t| NativeBackend::new(t).unwrap())
        .collect()
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

fn upload(be: &mut dyn Backend, data: &[f32]) -> Buf {
    let b = be.alloc(BufKind::F32, data.len(), "test").unwrap();
    be.write_f32(b, 0, data).unwrap();
    b
}

fn upload_u32(be: &mut dyn Backend, data: &[u32]) -> Buf {
    let b = be.alloc(BufKind::U32, data.len(), "test").unwrap();
    be.write_u32(b, 0, data).unwrap();
    b
}

/// Layer shapes: multiples of the 16- and 8-lane SIMD widths and of the GEMM tiles, and not.
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
    // are multiples of 4 get 16-byte-aligned offsets, others unaligned ones (the GEMM must not
    // assume alignment); the GPU takes its vec4 kernels on the former
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

#[test]
fn dense_forward_matches_reference() {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for relu in [false, true] {
                let (l, stride) = layer(in_dim, out_dim, relu);
                for by_data in [true, false] {
                    let blocks = if by_data { agents } else { jobs.len() };
                    let what = format!("dense_forward b{batch} {in_dim}->{out_dim} agents {agents} jobs {} relu {relu} by_data {by_data}", jobs.len());
                    parity(
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

#[test]
fn dense_backward_data_matches_reference() {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for relu_mask in [false, true] {
                let (l, stride) = layer(in_dim, out_dim, false);
                let what = format!("dense_backward_data b{batch} {in_dim}->{out_dim} agents {agents} jobs {} mask {relu_mask}", jobs.len());
                parity(
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

#[test]
fn dense_backward_weights_matches_reference() {
    for &(batch, in_dim, out_dim) in SHAPES {
        for (agents, jobs) in job_cases() {
            for by_data in [true, false] {
                let (l, stride) = layer(in_dim, out_dim, true);
                let blocks = if by_data { agents } else { jobs.len() };
                let what = format!("dense_backward_weights b{batch} {in_dim}->{out_dim} agents {agents} jobs {} by_data {by_data}", jobs.len());
                parity(
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

#[test]
fn softmax_xent_matches_reference() {
    for (batch, classes) in [(5, 10), (64, 3), (7, 1), (33, 100)] {
        for (agents, jobs) in job_cases() {
            let what = format!(
                "softmax_xent b{batch} c{classes} agents {agents} jobs {}",
                jobs.len()
            );
            parity(
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

#[test]
fn gather_matches_reference() {
    for (n_samples, dim, agents, batch) in [(50, 13, 3, 5), (200, 784, 4, 16), (7, 1, 1, 1)] {
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
                mean: 0.1307,
                std: 0.3081,
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
        for mut nat in natives() {
            let (x, y) = record(&mut nat).unwrap();
            assert_close(&what, &nat.read_f32(x).unwrap(), &want_x, 4.0 * EPS32, 1e-7);
            assert_eq!(nat.read_u32(y).unwrap(), want_y, "{what}: labels");
        }
    }
}

/// A random sparse matrix with some empty rows and repeated columns.
fn random_csr(rows: usize, cols: usize, seed: u64) -> Csr {
    let picks = indices(seed, rows * 4, cols as u32);
    let ws = uniform(seed + 1, rows * 4, -1.0, 1.0);
    let lists: Vec<Vec<(usize, f64)>> = (0..rows)
        .map(|r| {
            let deg = r % 4; // 0..3 entries: row 0 is empty
            (0..deg)
                .map(|e| (picks[r * 4 + e] as usize, ws[r * 4 + e] as f64))
                .collect()
        })
        .collect();
    Csr::from_rows(cols, &lists)
}

#[test]
fn mix_matches_reference() {
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

#[test]
fn updates_match_reference() {
    for len in [1, 63, 64, 1000, 70_001] {
        parity(
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

#[test]
fn reductions_match_reference() {
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

/// A whole training step: gather → forward → loss → backward → local step → mix, recorded into
/// one submit, repeated; the native backend must track the reference after many steps.
fn train_steps(be: &mut dyn Backend, agents: usize, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    use swarmgrad::model::pass::{Minibatch, Pass};
    let model = Mlp::parse("mlp:12-16-9-5").unwrap();
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
            mean: 0.5,
            std: 0.25,
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
        be.copy(next, 0, params, 0, len)?;
        be.flush()?;
    }
    Ok((be.read_f32(params)?, be.read_f32(pass.job_stats)?))
}

#[test]
fn training_steps_track_the_reference() {
    // 30 steps of SGD with Nesterov momentum and ring gossip; f32 rounding compounds through
    // the iterations (and ReLU kinks), so the bound is 1e-4 relative to the parameter scale.
    let (agents, steps) = (5, 30);
    let mut cpu = ReferenceBackend::new();
    let (want, want_stats) = train_steps(&mut cpu, agents, steps).unwrap();
    for mut nat in natives() {
        let name = nat.describe();
        let (got, stats) = train_steps(&mut nat, agents, steps).unwrap();
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
        assert_eq!(
            nat.counters().submits as usize,
            steps,
            "one submit per step (reads need none in host memory)"
        );
    }
}

#[test]
fn dispatches_per_step_do_not_depend_on_the_number_of_agents() {
    for mut nat in natives() {
        let mut per_step = Vec::new();
        for agents in [1, 2, 16] {
            let before = nat.counters();
            train_steps(&mut nat, agents, 3).unwrap();
            let after = nat.counters();
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

#[test]
fn bad_requests_are_typed_errors_on_every_backend() {
    use swarmgrad::Error;
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(ReferenceBackend::new())];
    for g in natives() {
        backends.push(Box::new(g));
    }
    for be in backends.iter_mut() {
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

#[test]
fn adam_kernels_match_reference() {
    // A handful of roundings and one sqrt per element: 16 ulps relative with a 1e-6 floor
    // (the step divides by √s/√bc2 + ε, so its relative error is a few times that of √).
    for (agents, stride) in [(1, 5), (3, 64), (4, 1000)] {
        let len = agents * stride;
        parity(
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

/// A trainer config small enough for the reference: `agents` agents on a ring, the synthetic
/// task, the settings each algorithm needs (as in tests/algorithms.rs).
fn small(algo: &str, steps: u64) -> TrainConfig {
    let algo: Algorithm = algo.parse().unwrap();
    let (agents, mixing, momentum) = if algo == Algorithm::Sgp {
        (4, MixingRule::MetropolisHastings, 0.9)
    } else if algo == Algorithm::AlDsgd {
        // AL-DSGD runs on MATCHA graphs 0 and 1 (8 nodes).
        (8, MixingRule::MetropolisHastings, 0.9)
    } else if algo == Algorithm::D2 || algo == Algorithm::Gt {
        (5, MixingRule::Constant(0.3233), 0.0)
    } else {
        (5, MixingRule::MetropolisHastings, 0.9)
    };
    let mut c = TrainConfig {
        algo,
        topology: Topology::Ring,
        mixing: swarmgrad::train::config::Mixing { rule: mixing },
        agents,
        partition: "dirichlet".into(),
        alpha: Some(0.5),
        model: Some("mlp:16-16-10".into()),
        batch: 8,
        lr: 0.05,
        momentum,
        steps: Some(steps),
        epochs: None,
        eval_every: 10,
        seed: 3,
        synthetic_train: 1_000,
        synthetic_test: 300,
        synthetic_dim: 16,
        options: AlgoOptions {
            slowmo_period: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    if algo == Algorithm::QgAdam {
        // f32-exact Adam hyperparameters (see tests/algorithms.rs): an f32 backend rounds β1,
        // β2 and ε, and Adam turns a 1e-8 difference into whole steps where g ≈ 0.
        c.lr = 0.005;
        c.momentum = 0.0;
        c.weight_decay = 1e-4;
        c.options.adam_beta1 = 0.875;
        c.options.adam_beta2 = 0.9990234375;
        c.options.adam_eps = 1.0 / 1048576.0 / 128.0;
    }
    c
}

fn run(config: TrainConfig, be: Box<dyn Backend>) -> (Summary, Vec<f64>) {
    let mut t = Trainer::new(config, be).unwrap();
    let s = t.run(|_, _, _| {}).unwrap();
    (s, t.read_params().unwrap())
}

#[test]
fn every_algorithm_tracks_the_reference_through_the_trainer() {
    // 40 steps with evaluations every 10: f32 against f64 rounding compounds through the steps
    // and ReLU kinks, so, as for the GPU trainer parity tests, parameters within 1e-3 relative
    // plus 1e-4 absolute, the training loss within 1e-3 relative, accuracies within two test
    // samples, and the byte ledger exact.
    for name in algorithm_names().split(", ") {
        let (want, want_p) = run(small(name, 40), Box::new(ReferenceBackend::new()));
        let (got, got_p) = run(small(name, 40), Box::new(NativeBackend::new(2).unwrap()));
        assert_close(&format!("{name} params"), &got_p, &want_p, 1e-3, 1e-4);
        assert!(
            (got.last.train_loss - want.last.train_loss).abs()
                <= 1e-3 * want.last.train_loss.abs() + 1e-4,
            "{name}: train loss {} vs {}",
            got.last.train_loss,
            want.last.train_loss
        );
        for (k, g, w) in [
            (
                "consensus_acc",
                got.last.consensus_acc,
                want.last.consensus_acc,
            ),
            (
                "mean_local_acc",
                got.last.mean_local_acc,
                want.last.mean_local_acc,
            ),
        ] {
            assert!(
                (g - w).abs() <= 2.0 / 300.0 + 1e-9,
                "{name}: {k} {g} vs {w}"
            );
        }
        assert_eq!(
            got.bytes_sent_per_agent, want.bytes_sent_per_agent,
            "{name}"
        );
        assert_eq!(got.rows.len(), want.rows.len(), "{name}: evaluation rows");
    }
}

#[test]
fn training_is_bit_identical_across_thread_counts_and_runs() {
    // A model whose slabs span several elementwise chunks, so chunking matters.
    for name in ["dsgd", "qgm", "gt"] {
        let mut c = small(name, 12);
        c.model = Some("mlp:16-300-10".into());
        c.agents = 6;
        let (s1, p1) = run(c.clone(), Box::new(NativeBackend::new(1).unwrap()));
        for threads in [1, 2, 3] {
            let (s, p) = run(c.clone(), Box::new(NativeBackend::new(threads).unwrap()));
            assert!(
                p == p1,
                "{name}: params on {threads} threads differ from 1 thread"
            );
            assert_eq!(
                s.last.train_loss.to_bits(),
                s1.last.train_loss.to_bits(),
                "{name}: loss on {threads} threads"
            );
        }
    }
}

#[test]
fn backend_choice_parses_and_opens_each_backend() {
    for c in BackendChoice::ALL {
        assert_eq!(c.to_string().parse::<BackendChoice>().unwrap(), c);
    }
    assert_eq!(
        " CPU ".parse::<BackendChoice>().unwrap(),
        BackendChoice::Cpu
    );
    assert_eq!(BackendChoice::default(), BackendChoice::Auto);
    let err = "tpu".parse::<BackendChoice>().unwrap_err();
    assert!(
        err.to_string().contains("auto, gpu, cpu or reference"),
        "{err}"
    );

    let adapters = AdapterChoice::from_env();
    let (be, why) = choice::open(BackendChoice::Cpu, &adapters, 3).unwrap();
    assert!(be.describe().contains("3 threads"), "{}", be.describe());
    assert!(why.starts_with("--backend cpu"), "{why}");
    let (be, _) = choice::open(BackendChoice::Reference, &adapters, 0).unwrap();
    assert_eq!(be.describe(), ReferenceBackend::new().describe());

    // `auto` takes a hardware adapter when there is one, and the native backend otherwise
    // (here: lavapipe and llvmpipe are software adapters, so the native backend).
    let hardware = choice::hardware_adapter(&adapters);
    let (be, why) = choice::open(BackendChoice::Auto, &adapters, 0).unwrap();
    match hardware {
        Some(hw) => assert!(why.contains("hardware GPU adapter"), "{hw}: {why}"),
        None => {
            assert!(be.describe().starts_with("native CPU"), "{}", be.describe());
            assert!(why.contains("no hardware GPU adapter"), "{why}");
        }
    }
    // `gpu` forces wgpu, software adapters included; the wgpu test suites still run on both.
    let gpus = gpu_backends("backend choice gpu");
    if !gpus.is_empty() {
        let (be, why) = choice::open(BackendChoice::Gpu, &adapters, 0).unwrap();
        assert!(why.starts_with("--backend gpu"), "{why}");
        assert!(!be.describe().starts_with("native"), "{}", be.describe());
    }
}

#[test]
fn thread_count_zero_means_every_core() {
    let be = NativeBackend::new(0).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(be.threads(), cores);
}

#[test]
fn copy_matches_reference() {
    // Plain copies, exact: between buffers at different offsets, and within one buffer with
    // overlapping ranges in both directions (memmove semantics, as in the reference).
    for (len, src_off, dst_off, same) in [
        (1, 0, 0, false),
        (100, 3, 17, false),
        (20_000, 5, 0, false),
        (50, 0, 10, true),
        (50, 10, 0, true),
    ] {
        parity(
            &format!("copy len {len} {src_off}->{dst_off} same buffer {same}"),
            |be, _| {
                let a = upload(be, &uniform(70, src_off + len + dst_off + 20, -1.0, 1.0));
                let b = upload(be, &uniform(71, dst_off + len + 7, -1.0, 1.0));
                let dst = if same { a } else { b };
                be.copy(a, src_off, dst, dst_off, len)?;
                Ok(vec![a, b])
            },
            |_, _| 0.0,
        );
    }
}

/// Counts the heap allocations of the current thread (for the no-per-step-allocation test).
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
fn a_training_step_allocates_only_inside_the_gemm_crate() {
    // One thread: every op then runs on this thread, so its allocation count is the backend's.
    use swarmgrad::model::pass::{Minibatch, Pass};
    let mut be = NativeBackend::new(1).unwrap();
    let model = Mlp::parse("mlp:40-33-10").unwrap();
    let (agents, batch, stride) = (6, 8, model.stride());
    let data = be.upload_u8(&vec![7u8; 50 * 40], "data").unwrap();
    let labels = upload_u32(&mut be, &indices(80, 50, 10));
    let mut params = upload(&mut be, &model.init(agents, 1, false));
    let mut spare = be.alloc(BufKind::F32, agents * stride, "spare").unwrap();
    let grads = be.alloc(BufKind::F32, agents * stride, "grads").unwrap();
    let mom = be.alloc(BufKind::F32, agents * stride, "mom").unwrap();
    let jobs: Vec<(usize, usize)> = (0..agents).map(|i| (i, (i + 1) % agents)).collect();
    let pass = Pass::new(&mut be, &model, batch, &jobs).unwrap();
    let mb = Minibatch::new(&mut be, agents, batch, 40).unwrap();
    be.write_u32(mb.index, 0, &indices(81, agents * batch, 50))
        .unwrap();
    let w = be.upload_csr(&random_csr(agents, agents, 82), "W").unwrap();
    let mut step = |be: &mut NativeBackend| {
        be.gather(&Gather {
            data,
            labels,
            index: mb.index,
            rows: agents * batch,
            dim: 40,
            mean: 0.5,
            std: 0.25,
            x: mb.x,
            y: mb.y,
        })
        .unwrap();
        pass.record_forward(be, params, &mb).unwrap();
        pass.record_backward(be, params, &mb, grads).unwrap();
        be.local_step(&LocalStep {
            params,
            grads,
            momentum_buf: mom,
            len: agents * stride,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
        })
        .unwrap();
        be.mix(&Mix {
            csr: w,
            input: params,
            in_offset: 0,
            in_stride: stride,
            output: spare,
            out_offset: 0,
            out_stride: stride,
            len: stride,
        })
        .unwrap();
        std::mem::swap(&mut params, &mut spare);
        be.flush().unwrap();
    };
    // The first step sizes the scratch and the job list.
    step(&mut be);
    let count = || ALLOCS.with(|c| c.get());
    let before = count();
    for _ in 0..5 {
        step(&mut be);
    }
    let per_step = (count() - before) / 5;
    // The gemm crate allocates its packing buffer (and a flag vector) inside every call; the
    // backend itself allocates nothing. GEMM calls per step: every job's forward and weight
    // gradient of both layers, and the second layer's data gradient.
    let gemm_calls = agents * 5;
    assert!(
        per_step <= 2 * gemm_calls,
        "{per_step} heap allocations per step for {gemm_calls} GEMM calls"
    );
    // Everything but the dense passes allocates nothing at all.
    let before = count();
    be.local_step(&LocalStep {
        params,
        grads,
        momentum_buf: mom,
        len: agents * stride,
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-4,
    })
    .unwrap();
    be.mix(&Mix {
        csr: w,
        input: params,
        in_offset: 0,
        in_stride: stride,
        output: spare,
        out_offset: 0,
        out_stride: stride,
        len: stride,
    })
    .unwrap();
    be.softmax_xent(&SoftmaxXent {
        jobs: pass.jobs,
        n_jobs: agents,
        batch,
        classes: 10,
        logits: pass.logits(),
        labels: mb.y,
        dlogits: grads,
        stats: pass.stats,
    })
    .unwrap();
    be.reduce(&Reduce {
        mode: ReduceMode::SquaredDistance,
        a: params,
        a_offset: 0,
        a_stride: stride,
        b: spare,
        b_offset: 0,
        b_stride: stride,
        segments: agents,
        seg_len: stride,
        out: pass.job_stats,
        out_offset: 0,
    })
    .unwrap();
    assert_eq!(count() - before, 0, "allocations outside the dense passes");
}
