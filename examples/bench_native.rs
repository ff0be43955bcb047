//! The native CPU backend on the issue-11 workload, with a per-op profile and the dense passes'
//! achieved GFLOP/s against a measured sgemm ceiling.
//!
//! Workload (the same as benches/peers/torch_peer.py): D-PSGD with local Nesterov momentum
//! (lr 0.05, β 0.9, weight decay 1e-4), ring with weights 1/3, MLP 784-128-10 (ReLU, softmax
//! cross-entropy), batch 32 per agent, random inputs fixed before timing; one step = forward +
//! backward + local step + gossip (mix into the spare buffer, then swap, as the algorithms do).
//!
//! `cargo run --release --example bench_native -- --agents 4,16,64,256 [--threads N] [--json out.json]`
//!
//! `--conv` times cnn5's convolutions on MNIST instead, layer by layer (3×3, pad 1: 1→32 and
//! 32→32 on 28×28, 32→64 on 14×14, 64→64 on 7×7; forward, backward-data, backward-weights over
//! all agents' jobs at once), with their achieved GFLOP/s against the same ceiling.

use clap::Parser;
use std::time::Instant;
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::*;
use swarmgrad::model::Model;
use swarmgrad::sparse::Csr;

#[derive(Parser)]
#[command(about = "Native CPU backend throughput on the D-PSGD MLP workload")]
struct Args {
    /// Agent counts, comma-separated.
    #[arg(long, default_value = "4,16,64,256", value_delimiter = ',')]
    agents: Vec<usize>,
    /// Worker threads (0: one per logical core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Minimum timed seconds per agent count (after warm-up).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Model.
    #[arg(long, default_value = "mlp:784-128-10")]
    model: String,
    /// Rows per agent.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Time cnn5's convolutions layer by layer instead of the MLP workload.
    #[arg(long)]
    conv: bool,
}

/// cnn5's convolutions on MNIST: (input channels, side, output channels), 3×3 with padding 1.
const CNN5_CONVS: [(usize, usize, usize); 4] =
    [(1, 28, 32), (32, 28, 32), (32, 14, 64), (64, 7, 64)];

/// Best time of one call of `op` (seconds): repeated for at least `seconds` and 5 calls after
/// a warm-up call.
fn best_time(
    seconds: f64,
    mut op: impl FnMut() -> swarmgrad::Result<()>,
) -> swarmgrad::Result<f64> {
    op()?;
    let (start, mut best, mut calls) = (Instant::now(), f64::INFINITY, 0);
    while calls < 5 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        op()?;
        best = best.min(t.elapsed().as_secs_f64());
        calls += 1;
    }
    Ok(best)
}

/// The conv-layer table: per agent count and layer, ms per call and GFLOP/s of each direction.
fn conv_table(args: &Args, ceiling: f64) -> swarmgrad::Result<Vec<serde_json::Value>> {
    println!(
        "cnn5 convolutions (3×3, pad 1), batch {} per agent, one call over all agents' jobs; GFLOP/s (% of the sgemm ceiling)",
        args.batch
    );
    println!("\n| n | layer | forward ms | GFLOP/s | backward-data ms | GFLOP/s | backward-weights ms | GFLOP/s |");
    println!("|---|---|---|---|---|---|---|---|");
    let per_op = (args.seconds / 12.0).max(0.05);
    let mut rows = Vec::new();
    for &n in &args.agents {
        for (k, &(cin, side, cout)) in CNN5_CONVS.iter().enumerate() {
            let layer = ConvLayer {
                input: ImageShape {
                    channels: cin,
                    height: side,
                    width: side,
                },
                out_channels: cout,
                kernel: 3,
                stride: 1,
                pad: 1,
                w_off: 0,
                b_off: None,
            };
            let stride = layer.end();
            let mut be = NativeBackend::new(args.threads)?;
            let jobs = be.alloc(BufKind::U32, 2 * n, "jobs")?;
            let flat: Vec<u32> = (0..n as u32).flat_map(|i| [i, i]).collect();
            be.write_u32(jobs, 0, &flat)?;
            let shape = ConvJobs {
                jobs,
                n_jobs: n,
                batch: args.batch,
                layer,
                stride,
                input_blocks: InputBlocks::ByJob,
            };
            let (n_in, n_out) = (
                n * args.batch * layer.input.len(),
                n * args.batch * layer.output().len(),
            );
            let params = be.alloc(BufKind::F32, n * stride, "params")?;
            be.write_f32(params, 0, &uniform(n * stride, 2))?;
            let input = be.alloc(BufKind::F32, n_in, "x")?;
            be.write_f32(input, 0, &uniform(n_in, 3))?;
            let dy = be.alloc(BufKind::F32, n_out, "dy")?;
            be.write_f32(dy, 0, &uniform(n_out, 4))?;
            let output = be.alloc(BufKind::F32, n_out, "y")?;
            let dx = be.alloc(BufKind::F32, n_in, "dx")?;
            let grads = be.alloc(BufKind::F32, n * stride, "grads")?;
            let flops = 2.0 * (n * args.batch * layer.macs()) as f64;
            let fwd = best_time(per_op, || {
                be.conv_forward(&ConvForward {
                    shape,
                    params,
                    input,
                    output,
                })
            })?;
            // cnn5's first layer reads the minibatch: it has no data gradient.
            let bwd_data = if k == 0 {
                None
            } else {
                Some(best_time(per_op, || {
                    be.conv_backward_data(&ConvBackwardData {
                        shape,
                        params,
                        dy,
                        dx,
                    })
                })?)
            };
            let bwd_w = best_time(per_op, || {
                be.conv_backward_weights(&ConvBackwardWeights {
                    shape,
                    dy,
                    input,
                    grads,
                })
            })?;
            let cell = |t: f64| {
                let g = flops / t / 1e9;
                format!("{:.3} | {g:.1} ({:.0}%)", t * 1e3, 100.0 * g / ceiling)
            };
            println!(
                "| {n} | {cin}→{cout} on {side}×{side} | {} | {} | {} |",
                cell(fwd),
                bwd_data.map_or("— | —".to_string(), cell),
                cell(bwd_w)
            );
            rows.push(serde_json::json!({
                "agents": n,
                "layer": format!("conv3x3 {cin}->{cout} on {side}x{side}"),
                "gflop_per_call": flops / 1e9,
                "forward_ms": fwd * 1e3,
                "backward_data_ms": bwd_data.map(|t| t * 1e3),
                "backward_weights_ms": bwd_w * 1e3,
                "forward_gflops": flops / fwd / 1e9,
                "backward_data_gflops": bwd_data.map(|t| flops / t / 1e9),
                "backward_weights_gflops": flops / bwd_w / 1e9,
            }));
        }
    }
    Ok(rows)
}

/// The ops of one step of an MLP with `layers` layers, in order; the profile accumulates time
/// per entry.
fn op_names(layers: usize) -> Vec<String> {
    let mut v: Vec<String> = (1..=layers).map(|k| format!("forward L{k}")).collect();
    v.push("softmax + loss sums".into());
    for k in (1..=layers).rev() {
        v.push(format!("backward-weights L{k}"));
        if k > 1 {
            v.push(format!("backward-data L{k}"));
        }
    }
    v.push("local step".into());
    v.push("mix".into());
    v
}

struct Bench {
    be: NativeBackend,
    model: Model,
    agents: usize,
    batch: usize,
    jobs: Buf,
    x: Buf,
    labels: Buf,
    acts: Vec<Buf>,
    dz: Vec<Buf>,
    stats: Buf,
    job_stats: Buf,
    params: Buf,
    spare: Buf,
    grads: Buf,
    mom: Buf,
    w: CsrBufs,
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    // A cheap deterministic generator (LCG): inputs only need to be generic, not random-grade.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

impl Bench {
    fn new(threads: usize, model: &Model, agents: usize, batch: usize) -> swarmgrad::Result<Self> {
        let mut be = NativeBackend::new(threads)?;
        let rows = agents * batch;
        let x = be.alloc(BufKind::F32, rows * model.input_dim(), "x")?;
        be.write_f32(x, 0, &uniform(rows * model.input_dim(), 1))?;
        let labels = be.alloc(BufKind::U32, rows, "labels")?;
        let lab: Vec<u32> = (0..rows as u32)
            .map(|r| r * 7 % model.classes() as u32)
            .collect();
        be.write_u32(labels, 0, &lab)?;
        let jobs = be.alloc(BufKind::U32, 2 * agents, "jobs")?;
        let flat: Vec<u32> = (0..agents as u32).flat_map(|i| [i, i]).collect();
        be.write_u32(jobs, 0, &flat)?;
        let mut acts = Vec::new();
        let mut dz = Vec::new();
        for l in model.dense_layers() {
            acts.push(be.alloc(BufKind::F32, rows * l.out_dim, "act")?);
            dz.push(be.alloc(BufKind::F32, rows * l.out_dim, "dz")?);
        }
        let len = agents * model.stride();
        let params = be.alloc(BufKind::F32, len, "params")?;
        be.write_f32(params, 0, &model.init(agents, 1, false))?;
        let ring: Vec<Vec<(usize, f64)>> = (0..agents)
            .map(|i| {
                vec![
                    ((i + agents - 1) % agents, 1.0 / 3.0),
                    (i, 1.0 / 3.0),
                    ((i + 1) % agents, 1.0 / 3.0),
                ]
            })
            .collect();
        let w = be.upload_csr(&Csr::from_rows(agents, &ring), "W")?;
        Ok(Bench {
            stats: be.alloc(BufKind::F32, 2 * rows, "stats")?,
            job_stats: be.alloc(BufKind::F32, 2 * agents, "job_stats")?,
            spare: be.alloc(BufKind::F32, len, "spare")?,
            grads: be.alloc(BufKind::F32, len, "grads")?,
            mom: be.alloc(BufKind::F32, len, "mom")?,
            be,
            model: model.clone(),
            agents,
            batch,
            jobs,
            x,
            labels,
            acts,
            dz,
            params,
            w,
        })
    }

    fn shape(&self, k: usize) -> DenseJobs {
        DenseJobs {
            jobs: self.jobs,
            n_jobs: self.agents,
            batch: self.batch,
            layer: self.model.dense_layers()[k],
            stride: self.model.stride(),
            input_blocks: if k == 0 {
                InputBlocks::ByData
            } else {
                InputBlocks::ByJob
            },
        }
    }

    /// One step; `lap` is called after each op with its index in [`op_names`].
    fn step(&mut self, mut lap: impl FnMut(usize)) -> swarmgrad::Result<()> {
        let p = self.params;
        let layers = self.model.dense_layers().len();
        let mut op = 0;
        let mut lap = |op: &mut usize| {
            lap(*op);
            *op += 1;
        };
        for k in 0..layers {
            let input = if k == 0 { self.x } else { self.acts[k - 1] };
            self.be.dense_forward(&DenseForward {
                shape: self.shape(k),
                params: p,
                input,
                output: self.acts[k],
            })?;
            lap(&mut op);
        }
        self.be.softmax_xent(&SoftmaxXent {
            jobs: self.jobs,
            n_jobs: self.agents,
            batch: self.batch,
            classes: self.model.classes(),
            logits: self.acts[layers - 1],
            labels: self.labels,
            dlogits: self.dz[layers - 1],
            stats: self.stats,
        })?;
        self.be.reduce(&Reduce {
            mode: ReduceMode::Sum,
            a: self.stats,
            a_offset: 0,
            a_stride: self.batch,
            b: self.stats,
            b_offset: 0,
            b_stride: 0,
            segments: 2 * self.agents,
            seg_len: self.batch,
            out: self.job_stats,
            out_offset: 0,
        })?;
        lap(&mut op);
        for k in (0..layers).rev() {
            let input = if k == 0 { self.x } else { self.acts[k - 1] };
            self.be.dense_backward_weights(&DenseBackwardWeights {
                shape: self.shape(k),
                dz: self.dz[k],
                input,
                grads: self.grads,
            })?;
            lap(&mut op);
            if k > 0 {
                self.be.dense_backward_data(&DenseBackwardData {
                    shape: self.shape(k),
                    params: p,
                    dz: self.dz[k],
                    input: self.acts[k - 1],
                    relu_mask: self.model.dense_layers()[k - 1].relu,
                    dx: self.dz[k - 1],
                })?;
                lap(&mut op);
            }
        }
        let len = self.agents * self.model.stride();
        self.be.local_step(&LocalStep {
            params: p,
            grads: self.grads,
            momentum_buf: self.mom,
            len,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
        })?;
        lap(&mut op);
        let stride = self.model.stride();
        self.be.mix(&Mix {
            csr: self.w,
            input: p,
            in_offset: 0,
            in_stride: stride,
            output: self.spare,
            out_offset: 0,
            out_stride: stride,
            len: stride,
        })?;
        std::mem::swap(&mut self.params, &mut self.spare);
        self.be.flush()?;
        lap(&mut op);
        Ok(())
    }
}

/// FLOPs of the dense passes of one agent-step: forward and weight gradients of every layer,
/// data gradients of all but the first.
fn dense_flops(model: &Model, batch: usize) -> f64 {
    let l = model.dense_layers();
    let macs: usize = l.iter().map(|l| l.in_dim * l.out_dim).sum::<usize>() * 2
        + l[1..].iter().map(|l| l.in_dim * l.out_dim).sum::<usize>();
    2.0 * (batch * macs) as f64
}

/// The sgemm ceiling of this machine with the GEMM crate the backend uses: one 1024³ product
/// per thread at once (the backend's own layout of work), in GFLOP/s.
fn sgemm_ceiling(threads: usize) -> (f64, usize) {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let t = pool.current_num_threads();
    let n = 1024;
    let a = uniform(n * n, 5);
    let b = uniform(n * n, 6);
    let mut cs: Vec<Vec<f32>> = (0..t).map(|_| vec![0.0; n * n]).collect();
    let run = |cs: &mut Vec<Vec<f32>>| {
        pool.install(|| {
            cs.par_iter_mut().for_each(|c| {
                // SAFETY: all three matrices are n×n row-major and distinct.
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        n,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        n as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            })
        })
    };
    run(&mut cs);
    let mut best = 0.0f64;
    for _ in 0..15 {
        let start = Instant::now();
        run(&mut cs);
        let s = start.elapsed().as_secs_f64();
        best = best.max(t as f64 * 2.0 * (n * n * n) as f64 / s / 1e9);
    }
    (best, t)
}

fn main() -> swarmgrad::Result<()> {
    let args = Args::parse();
    let model = Model::parse(&args.model, swarmgrad::model::flat(0), 10)?;
    let (ceiling, threads) = sgemm_ceiling(args.threads);
    println!(
        "native CPU backend, {threads} threads; sgemm ceiling (gemm crate, 1024³ per thread): {ceiling:.1} GFLOP/s"
    );
    if args.conv {
        let rows = conv_table(&args, ceiling)?;
        let doc = serde_json::json!({
            "backend": "native",
            "threads": threads,
            "sgemm_ceiling_gflops": ceiling,
            "batch": args.batch,
            "conv_layers": rows,
        });
        println!("\n{}", serde_json::to_string(&doc).expect("json"));
        if let Some(path) = args.json {
            std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
                .map_err(|e| swarmgrad::Error::param("json", format!("{}: {e}", path.display())))?;
        }
        return Ok(());
    }
    println!(
        "workload: D-PSGD + Nesterov (lr 0.05, β 0.9, wd 1e-4), ring 1/3, {model}, batch {}",
        args.batch
    );
    let flops = dense_flops(&model, args.batch);
    let ops = op_names(model.dense_layers().len());
    let mut results = Vec::new();
    println!(
        "\n| n | agent-steps/s (best window) | (mean) | ms/step | dense GFLOP/s | % of sgemm ceiling | dense FLOPs / whole step, GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut profiles = Vec::new();
    for &n in &args.agents {
        let mut b = Bench::new(args.threads, &model, n, args.batch)?;
        let warm = Instant::now();
        for _ in 0..3 {
            b.step(|_| {})?;
        }
        // Windows of ~50 ms; the best window is reported (the machine may be shared: the best
        // window is the closest to an unloaded machine), and the mean over all windows too.
        let per_window = ((0.05 / (warm.elapsed().as_secs_f64() / 3.0)).ceil() as usize).max(1);
        let (mut per_op, mut best) = (vec![0.0f64; ops.len()], f64::INFINITY);
        let (mut all_s, mut all_steps) = (0.0f64, 0usize);
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < args.seconds || all_steps < 3 * per_window {
            let mut window = vec![0.0f64; ops.len()];
            for _ in 0..per_window {
                let mut last = Instant::now();
                b.step(|k| {
                    let now = Instant::now();
                    window[k] += (now - last).as_secs_f64();
                    last = now;
                })?;
            }
            let w: f64 = window.iter().sum();
            (all_s, all_steps) = (all_s + w, all_steps + per_window);
            if w < best {
                (best, per_op) = (w, window.clone());
            }
        }
        let steps = per_window;
        let mean_agent_steps = n as f64 * all_steps as f64 / all_s;
        let total: f64 = per_op.iter().sum();
        let step_s = total / steps as f64;
        let dense_s: f64 = ops
            .iter()
            .zip(&per_op)
            .filter(|(k, _)| k.starts_with("forward") || k.starts_with("backward"))
            .map(|(_, v)| v)
            .sum::<f64>()
            / steps as f64;
        let dense_gflops = flops * n as f64 / dense_s / 1e9;
        let agent_steps = n as f64 / step_s;
        println!(
            "| {n} | {agent_steps:.0} | {mean_agent_steps:.0} | {:.3} | {dense_gflops:.1} | {:.0}% | {:.1} |",
            step_s * 1e3,
            100.0 * dense_gflops / ceiling,
            flops * n as f64 / step_s / 1e9
        );
        profiles.push((n, steps, per_op.clone()));
        results.push(serde_json::json!({
            "agents": n,
            "threads": threads,
            "steps_timed": all_steps,
            "steps_per_window": per_window,
            "agent_steps_per_s": agent_steps,
            "agent_steps_per_s_mean": mean_agent_steps,
            "ms_per_step": step_s * 1e3,
            "dense_gflops": dense_gflops,
            "dense_fraction_of_sgemm_ceiling": dense_gflops / ceiling,
            "profile_ms": ops.iter().zip(per_op.iter()).map(|(k, v)| ((*k).to_string(), serde_json::json!(v / steps as f64 * 1e3))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    println!("\nprofile (ms per step, share of the step):");
    print!("| op |");
    for (n, _, _) in &profiles {
        print!(" n = {n} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(profiles.len()));
    for (k, name) in ops.iter().enumerate() {
        print!("| {name} |");
        for (_, steps, per_op) in &profiles {
            let total: f64 = per_op.iter().sum();
            print!(
                " {:.3} ({:.0}%) |",
                per_op[k] / *steps as f64 * 1e3,
                100.0 * per_op[k] / total
            );
        }
        println!();
    }
    let doc = serde_json::json!({
        "backend": "native",
        "threads": threads,
        "sgemm_ceiling_gflops": ceiling,
        "model": args.model,
        "batch": args.batch,
        "dense_flops_per_agent_step": flops,
        "results": results,
    });
    println!("\n{}", serde_json::to_string(&doc).expect("json"));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
            .map_err(|e| swarmgrad::Error::param("json", format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
