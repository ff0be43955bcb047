//! Agents sharded over ranks (src/dist) without MPI: ranks as threads of this process
//! (`dist::threads`), each with its own CPU backend. A sharded run must give the single-process
//! metrics, byte counts, checkpoint and final parameters bit for bit, for any number of ranks.
//! (`.ci/mpi-tests` checks the same over real MPI processes.)

mod common;

use common::small_run;
use std::rc::Rc;
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::dist::{threads::threads, Wire, World};
use swarmgrad::graph::Topology;
use swarmgrad::train::checkpoint::Checkpoint;
use swarmgrad::train::{Algorithm, Summary, TrainConfig, Trainer};

/// What a run produced: the summary, every agent's final parameters, and the checkpoint taken
/// after `steps / 2` steps.
type Outcome = (Summary, Vec<f64>, Checkpoint);

fn backend(native: bool) -> Box<dyn Backend> {
    if native {
        Box::new(NativeBackend::new(1).unwrap())
    } else {
        Box::new(ReferenceBackend::new())
    }
}

fn run(t: &mut Trainer) -> Outcome {
    let half = t.total_steps() / 2;
    t.run_until(half, |_, _, _| {}).unwrap();
    let c = t.checkpoint().unwrap();
    let s = t.run(|_, _, _| {}).unwrap();
    (s, t.gather_params().unwrap(), c)
}

fn one_process(c: &TrainConfig, native: bool) -> Outcome {
    run(&mut Trainer::new(c.clone(), backend(native)).unwrap())
}

/// Rank 0's outcome of the run over `ranks` threads.
fn sharded(c: &TrainConfig, native: bool, ranks: usize) -> Outcome {
    let handles: Vec<_> = threads(ranks)
        .into_iter()
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let world = World::new(Rc::new(t));
                let be = backend(native);
                let shard = world
                    .shard(c.agents, Wire::for_backend(be.as_ref()))
                    .unwrap();
                let mut trainer = Trainer::new_sharded(c, be, &shard).unwrap();
                let out = run(&mut trainer);
                (shard.is_root(), out)
            })
        })
        .collect();
    let outs: Vec<(bool, Outcome)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    outs.into_iter().find(|o| o.0).unwrap().1
}

fn assert_same(what: &str, want: &Outcome, got: &Outcome) {
    let (ws, wp, wc) = want;
    let (gs, gp, gc) = got;
    assert_eq!(ws.last, gs.last, "{what}: last evaluation");
    assert_eq!(ws.rows.len(), gs.rows.len(), "{what}: rows");
    for (a, b) in ws.rows.iter().zip(&gs.rows) {
        let strip = |r: &swarmgrad::train::MetricsRow| {
            let mut r = r.clone();
            r.wall_s = 0.0;
            format!("{r:?}")
        };
        assert_eq!(strip(a), strip(b), "{what}: metrics row");
    }
    assert_eq!(
        ws.bytes_sent_per_agent, gs.bytes_sent_per_agent,
        "{what}: bytes"
    );
    assert_eq!(ws.max_bytes_sent, gs.max_bytes_sent, "{what}: max bytes");
    assert!(
        wp.len() == gp.len() && wp.iter().zip(gp).all(|(a, b)| a.to_bits() == b.to_bits()),
        "{what}: final parameters differ"
    );
    assert_eq!(wc.buffers, gc.buffers, "{what}: checkpoint buffers");
    assert_eq!(wc.sampler, gc.sampler, "{what}: checkpoint sampler");
    assert_eq!(wc.bytes, gc.bytes, "{what}: checkpoint bytes");
    assert_eq!(wc.algo_host, gc.algo_host, "{what}: checkpoint host state");
}

fn config(algo: Algorithm, topology: Topology, agents: usize) -> TrainConfig {
    TrainConfig {
        topology,
        agents,
        momentum: 0.9,
        steps: Some(6),
        eval_every: 3,
        ..small_run(algo)
    }
}

#[test]
fn sharded_runs_equal_one_process_bit_for_bit() {
    let cases = [
        config(Algorithm::Dsgd, Topology::Ring, 7),
        config(Algorithm::Qgm, Topology::Ring, 7),
        config(Algorithm::Gt, Topology::Ring, 6),
        config(Algorithm::AllReduce, Topology::Ring, 5),
        config(Algorithm::Ngm, Topology::Ring, 6),
        config(Algorithm::RelaySgd, Topology::Chain, 7),
        config(Algorithm::Sgp, Topology::Exponential, 8),
    ];
    for c in &cases {
        for native in [false, true] {
            let want = one_process(c, native);
            for ranks in [2, 3] {
                let what = format!("{} over {ranks} ranks (native: {native})", c.algo);
                assert_same(&what, &want, &sharded(c, native, ranks));
            }
        }
    }
}

#[test]
fn every_rank_needs_an_agent_and_unsharded_algorithms_are_named() {
    let e = World::new(Rc::new(threads(1).pop().unwrap()))
        .shard(0, Wire::F64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 agents over 1 MPI ranks"), "{e}");
    let world = World::new(Rc::new(threads(1).pop().unwrap()));
    let shard = world.shard(5, Wire::F64).unwrap();
    let c = config(Algorithm::CompNgm, Topology::Ring, 5);
    let e = Trainer::new_sharded(c, backend(false), &shard)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("compngm cannot run sharded over MPI ranks yet"),
        "{e}"
    );
}
