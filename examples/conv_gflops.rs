//! Achieved GFLOP/s of the GPU convolution kernels at cnn5's layer sizes on MNIST (batch 32,
//! 3×3 kernels, padding 1, no bias), against the device's multiply-add ceiling measured by the
//! probe: `cargo run --release --example conv_gflops [agents...]` (default 4 and 16; honours
//! WGPU_BACKEND / WGPU_ADAPTER_NAME). Each op is recorded `reps` times in one submit and timed by
//! wall clock around flush + wait, best of 5 such windows, after a warm-up submit that compiles
//! the pipelines.

use std::time::Instant;
use swarmgrad::backend::gpu::{GpuBackend, Probe};
use swarmgrad::backend::*;

fn main() -> swarmgrad::Result<()> {
    let agents: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("agent counts"))
        .collect();
    let agents = if agents.is_empty() {
        vec![4, 16]
    } else {
        agents
    };
    let mut be = GpuBackend::from_env()?;
    println!("{}", be.describe());
    let peak = Probe::new(be.context()).measure(5)?.fma_gflops.max;
    println!("FMA ceiling: {peak:.1} GFLOP/s");
    let batch = 32;
    // cnn5's convolutions on MNIST: 1→32 at 28², 32→32 at 28², 32→64 at 14², 64→64 at 7².
    let layers = [(1, 32, 28), (32, 32, 28), (32, 64, 14), (64, 64, 7)];
    println!("agents layer            op                 ms     GFLOP/s  of peak");
    for &n in &agents {
        for (li, &(c_in, c_out, side)) in layers.iter().enumerate() {
            let layer = ConvLayer {
                input: ImageShape {
                    channels: c_in,
                    height: side,
                    width: side,
                },
                out_channels: c_out,
                kernel: 3,
                stride: 1,
                pad: 1,
                w_off: 0,
                b_off: None,
            };
            let mark = be.live_buffers().count;
            let stride = layer.end().next_multiple_of(4);
            let jobs: Vec<u32> = (0..n as u32).flat_map(|i| [i, i]).collect();
            let jb = be.alloc(BufKind::U32, jobs.len(), "jobs")?;
            be.write_u32(jb, 0, &jobs)?;
            let shape = ConvJobs {
                jobs: jb,
                n_jobs: n,
                batch,
                layer,
                stride,
                input_blocks: InputBlocks::ByJob,
            };
            let fill = |be: &mut GpuBackend, len: usize| -> swarmgrad::Result<Buf> {
                let b = be.alloc(BufKind::F32, len, "t")?;
                let v: Vec<f32> = (0..len)
                    .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                    .collect();
                be.write_f32(b, 0, &v)?;
                Ok(b)
            };
            let params = fill(&mut be, n * stride)?;
            let x = fill(&mut be, n * batch * layer.input.len())?;
            let y = fill(&mut be, n * batch * layer.output().len())?;
            let dx = fill(&mut be, n * batch * layer.input.len())?;
            let grads = fill(&mut be, n * stride)?;
            let flops = 2.0 * (layer.macs() * batch * n) as f64;
            type Op<'a> = Box<dyn Fn(&mut GpuBackend) -> swarmgrad::Result<()> + 'a>;
            let ops: [(&str, Op); 3] = [
                (
                    "forward",
                    Box::new(|be: &mut GpuBackend| {
                        be.conv_forward(&ConvForward {
                            shape,
                            params,
                            input: x,
                            output: y,
                        })
                    }),
                ),
                (
                    "backward_data",
                    Box::new(|be: &mut GpuBackend| {
                        be.conv_backward_data(&ConvBackwardData {
                            shape,
                            params,
                            dy: y,
                            dx,
                        })
                    }),
                ),
                (
                    "backward_weights",
                    Box::new(|be: &mut GpuBackend| {
                        be.conv_backward_weights(&ConvBackwardWeights {
                            shape,
                            dy: y,
                            input: x,
                            grads,
                        })
                    }),
                ),
            ];
            for (name, op) in ops.iter() {
                op(&mut be)?;
                be.flush()?;
                be.wait()?;
                // Windows of about 0.2 s at 1 GFLOP/s; the best of 5 (on a shared machine, the
                // closest to an unloaded one).
                let reps = ((2e8 / flops) as usize).clamp(1, 50);
                let mut s = f64::INFINITY;
                for _ in 0..5 {
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        op(&mut be)?;
                    }
                    be.flush()?;
                    be.wait()?;
                    s = s.min(t0.elapsed().as_secs_f64() / reps as f64);
                }
                let g = flops / s / 1e9;
                println!(
                    "{n:>6} {li} {c_in:>2}->{c_out:<2} {side:>2}²     {name:<17} {:>7.2} {g:>9.2} {:>7.0}%",
                    s * 1e3,
                    100.0 * g / peak
                );
            }
            be.release_from(mark);
        }
    }
    Ok(())
}
