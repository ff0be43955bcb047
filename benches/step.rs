//! Step throughput on the chosen adapter, as a table: the device's own ceilings, fused against
//! per-agent dispatch, and achieved GFLOP/s and GB/s of the dense passes and the mix.
//!
//! `cargo bench --bench step` (honours WGPU_BACKEND / WGPU_ADAPTER_NAME). Wall-clock timing:
//! every measurement flushes and waits for the device before reading the clock.

use std::time::Instant;
use swarmgrad::backend::gpu::{GpuBackend, Probe};
use swarmgrad::backend::*;
use swarmgrad::model::pass::{Minibatch, Pass};
use swarmgrad::model::Model;
use swarmgrad::sparse::Csr;

const BATCH: usize = 32;
const N_SAMPLES: usize = 2048;

struct Setup {
    model: Model,
    agents: usize,
    data: Buf,
    labels: Buf,
    params: Buf,
    next: Buf,
    mom: Buf,
    mb: Minibatch,
    w: CsrBufs,
}

fn setup(be: &mut GpuBackend, model: &Model, agents: usize) -> swarmgrad::Result<Setup> {
    let dim = model.input_dim();
    let bytes: Vec<u8> = (0..N_SAMPLES * dim)
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    let data = be.upload_u8(&bytes, "data")?;
    let labels = be.alloc(BufKind::U32, N_SAMPLES, "labels")?;
    let lab: Vec<u32> = (0..N_SAMPLES as u32)
        .map(|i| i % model.classes() as u32)
        .collect();
    be.write_u32(labels, 0, &lab)?;
    let len = agents * model.stride();
    let params = be.alloc(BufKind::F32, len, "params")?;
    be.write_f32(params, 0, &model.init(agents, 1, true))?;
    let rows: Vec<Vec<(usize, f64)>> = (0..agents)
        .map(|i| {
            vec![
                ((i + agents - 1) % agents, 1.0 / 3.0),
                (i, 1.0 / 3.0),
                ((i + 1) % agents, 1.0 / 3.0),
            ]
        })
        .collect();
    Ok(Setup {
        model: model.clone(),
        agents,
        data,
        labels,
        params,
        next: be.alloc(BufKind::F32, len, "next")?,
        mom: be.alloc(BufKind::F32, len, "mom")?,
        mb: Minibatch::new(be, agents, BATCH, dim)?,
        w: be.upload_csr(&Csr::from_rows(agents, &rows), "W")?,
    })
}

fn gather(be: &mut GpuBackend, s: &Setup, t: usize) -> swarmgrad::Result<()> {
    let idx: Vec<u32> = (0..s.agents * BATCH)
        .map(|r| ((r * 31 + t * 17) % N_SAMPLES) as u32)
        .collect();
    be.write_u32(s.mb.index, 0, &idx)?;
    be.gather(&Gather {
        data: s.data,
        labels: s.labels,
        index: s.mb.index,
        rows: s.agents * BATCH,
        dim: s.model.input_dim(),
        norm: ChannelNorm::single(0.5, 0.25),
        x: s.mb.x,
        y: s.mb.y,
    })
}

/// Seconds per call of `step` (flush + wait each time), best of a few batches.
fn time_per(
    be: &mut GpuBackend,
    reps: usize,
    mut step: impl FnMut(&mut GpuBackend, usize) -> swarmgrad::Result<()>,
) -> f64 {
    for t in 0..2 {
        step(be, t).unwrap();
        be.flush().unwrap();
    }
    be.wait().unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        for t in 0..reps {
            step(be, t).unwrap();
            be.flush().unwrap();
        }
        be.wait().unwrap();
        best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() -> swarmgrad::Result<()> {
    let mut be = GpuBackend::from_env()?;
    println!("adapter: {}", be.describe());
    let (peak_gflops, peak_gbps) = Probe::new(be.context()).measure_ceilings()?;
    println!("device ceilings (measured): {peak_gflops:.1} GFLOP/s f32 FMA, {peak_gbps:.1} GB/s streaming\n");
    let model = Model::mlp(&[784, 128, 10])?;
    let layers = model.dense_layers();
    let macs_fwd: usize = layers.iter().map(|l| l.in_dim * l.out_dim).sum();
    let macs_bw: usize = layers.iter().map(|l| (l.in_dim + 1) * l.out_dim).sum();
    let macs_bd: usize = layers.iter().skip(1).map(|l| l.in_dim * l.out_dim).sum();
    println!("model {model}, batch {BATCH} per agent");
    println!(
        "{:>6} | {:>13} | {:>15} | {:>7} | {:>14} | {:>7} | {:>10} | {:>8} | {:>10} | {:>8} | {:>10}",
        "agents",
        "fused fwd+bwd",
        "per-agent disp.",
        "speedup",
        "scalar kernels",
        "vec4 x",
        "GFLOP/s",
        "of peak",
        "mix GB/s",
        "of peak",
        "step ms"
    );
    for agents in [4usize, 16, 32] {
        let s = setup(&mut be, &model, agents)?;
        let jobs: Vec<(usize, usize)> = (0..agents).map(|i| (i, i)).collect();
        let fused = Pass::new(&mut be, &model, BATCH, &jobs)?;
        let grads = be.alloc(BufKind::F32, agents * model.stride(), "grads")?;
        let fused_step = |be: &mut GpuBackend, t: usize| {
            gather(be, &s, t)?;
            fused.record_forward(be, s.params, &s.mb)?;
            fused.record_backward(be, s.params, &s.mb, grads)
        };
        let t_fused = time_per(&mut be, 5, fused_step);
        be.set_vectorized(false);
        let t_scalar = time_per(&mut be, 5, fused_step);
        be.set_vectorized(true);
        // Per-agent: one single-job pass per agent, the way a per-agent loop would dispatch.
        let singles: Vec<(Pass, Buf)> = (0..agents)
            .map(|i| {
                Ok((
                    Pass::new(&mut be, &model, BATCH, &[(i, i)])?,
                    be.alloc(BufKind::F32, model.stride(), "g")?,
                ))
            })
            .collect::<swarmgrad::Result<_>>()?;
        let t_single = time_per(&mut be, 5, |be, t| {
            gather(be, &s, t)?;
            for (p, g) in &singles {
                p.record_forward(be, s.params, &s.mb)?;
                p.record_backward(be, s.params, &s.mb, *g)?;
            }
            Ok(())
        });
        let flops = 2.0 * (agents * BATCH * (macs_fwd + macs_bw + macs_bd)) as f64;
        let len = model.stride();
        let gossip = Mix {
            csr: s.w,
            input: s.params,
            in_offset: 0,
            in_stride: len,
            output: s.next,
            out_offset: 0,
            out_stride: len,
            len,
        };
        let t_mix = time_per(&mut be, 20, |be, _| be.mix(&gossip));
        let mix_bytes = (agents * len * 4 * 4) as f64; // three reads and one write per element
        let before = be.counters().dispatches;
        let t_step = time_per(&mut be, 5, |be, t| {
            gather(be, &s, t)?;
            fused.record_forward(be, s.params, &s.mb)?;
            fused.record_backward(be, s.params, &s.mb, grads)?;
            be.local_step(&LocalStep {
                params: s.params,
                grads,
                momentum_buf: s.mom,
                len: agents * len,
                lr: 0.01,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
            })?;
            be.mix(&gossip)?;
            be.copy(&CopyRange::whole(s.next, s.params, agents * len))
        });
        let dispatches = (be.counters().dispatches - before) / 17; // 2 warm-up + 3 × 5 steps
        println!(
            "{:>6} | {:>10.2} ms | {:>12.2} ms | {:>6.2}x | {:>11.2} ms | {:>6.2}x | {:>10.2} | {:>7.1}% | {:>10.2} | {:>7.1}% | {:>7.2} ({dispatches} dispatches)",
            agents,
            t_fused * 1e3,
            t_single * 1e3,
            t_single / t_fused,
            t_scalar * 1e3,
            t_scalar / t_fused,
            flops / t_fused / 1e9,
            100.0 * flops / t_fused / 1e9 / peak_gflops,
            mix_bytes / t_mix / 1e9,
            100.0 * mix_bytes / t_mix / 1e9 / peak_gbps,
            t_step * 1e3,
        );
    }
    Ok(())
}
