//! What is specific to the native CPU backend: bit-identical training across thread counts and
//! runs, no heap allocation per step outside the GEMM crate, the thread count, and the backend
//! choice. Its parity with the f64 reference runs with the GPU backends' from one definition:
//! every operation in tests/kernels.rs (each on 1, 2 and 3 threads, bit-identical across
//! them) and every algorithm through the trainer in tests/algorithms.rs.

mod common;

use common::*;
use swarmgrad::backend::choice::{self, BackendChoice};
use swarmgrad::backend::gpu::AdapterChoice;
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::model::Model;
use swarmgrad::train::Algorithm;

#[test]
fn training_is_bit_identical_across_thread_counts_and_runs() {
    // A model whose slabs span several elementwise chunks, so chunking matters.
    for name in ["dsgd", "qgm", "gt"] {
        let mut c = tuned_run(name.parse::<Algorithm>().unwrap(), 12);
        c.model = Some("mlp:16-300-10".into());
        c.agents = 6;
        let (s1, p1) = train(c.clone(), Box::new(NativeBackend::new(1).unwrap()));
        for threads in [1, 2, 3] {
            let (s, p) = train(c.clone(), Box::new(NativeBackend::new(threads).unwrap()));
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
    if any_gpu() {
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
    let model = Model::mlp(&[40, 33, 10]).unwrap();
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
    // The local step and the gossip mix of `params` into `spare`.
    let update = move |be: &mut NativeBackend, params: Buf, spare: Buf| {
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
    };
    let mut step = |be: &mut NativeBackend| {
        be.gather(&Gather {
            data,
            labels,
            index: mb.index,
            rows: agents * batch,
            dim: 40,
            norm: ChannelNorm::single(0.5, 0.25),
            x: mb.x,
            y: mb.y,
        })
        .unwrap();
        pass.record_forward(be, params, &mb).unwrap();
        pass.record_backward(be, params, &mb, grads).unwrap();
        update(be, params, spare);
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
    update(&mut be, params, spare);
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
