//! CompNGM (ALGORITHMS.md §5.8) through the trainer: the byte ledger (round 1 uncompressed,
//! round 2 at ⌈ℓ/8⌉ + 4 bytes per tensor, or f32 with `--comp-charge f32`), dispatches per
//! step independent of n and the degree, the compression really acting (CompNGM differs from
//! NGM, and still learns), and bit-identical checkpoint resume (the memories are state).
//! Error feedback (§8.2.9) is tested on the ops in tests/kernels.rs; every target tracks the
//! reference through the trainer in tests/algorithms.rs.

mod common;

use common::{small_run, train};
use swarmgrad::algo::{AlgoOptions, Algorithm, CompCharge};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::graph::Topology;
use swarmgrad::train::{TrainConfig, Trainer};

/// [`small_run`] (mlp:16-16-10, a ring of 5) for `algo` at α = 1, γ = ½.
fn run(algo: Algorithm, topology: Topology, agents: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        topology,
        agents,
        lr: 0.05,
        momentum: 0.9,
        steps: Some(steps),
        eval_every: steps,
        options: AlgoOptions {
            ngm_alpha: 1.0,
            ngm_gamma: 0.5,
            ..Default::default()
        },
        ..small_run(algo)
    }
}

#[test]
fn round_two_is_charged_compressed_or_f32() {
    // mlp:16-16-10: tensors of 256, 16, 160 and 10 scalars, d = 442.
    let d = 442u64;
    let compressed: u64 = [256u64, 16, 160, 10]
        .iter()
        .map(|l| l.div_ceil(8) + 4)
        .sum();
    assert_eq!(compressed, 72);
    let bytes = |algo, charge| {
        let mut c = run(algo, Topology::Ring, 5, 3);
        c.options.comp_charge = charge;
        train(c, Box::new(ReferenceBackend::new()))
            .0
            .bytes_sent_per_agent
    };
    let ngm = bytes(Algorithm::Ngm, CompCharge::Compressed);
    let comp = bytes(Algorithm::CompNgm, CompCharge::Compressed);
    let f32s = bytes(Algorithm::CompNgm, CompCharge::F32);
    eprintln!("bytes per agent: ngm {ngm}, compngm {comp}, compngm charged f32 {f32s}");
    // NGM_dv: two rounds of 4d; CompNGM: 4d + 72 per neighbour and step.
    assert_eq!(f32s, ngm);
    assert!(ngm > 0.0 && comp > 0.0);
    let ratio = comp / ngm;
    let want = (4 * d + compressed) as f64 / (8 * d) as f64;
    assert!((ratio - want).abs() < 1e-12, "{ratio} vs {want}");
}

#[test]
fn dispatches_per_step_do_not_depend_on_agents_or_degree() {
    let per_step = |topology, n| {
        train(
            run(Algorithm::CompNgm, topology, n, 4),
            Box::new(ReferenceBackend::new()),
        )
        .0
        .dispatches_per_step
    };
    let ring = per_step(Topology::Ring, 8);
    let torus = per_step(Topology::Torus, 16);
    eprintln!("compngm: {ring} dispatches per step on a ring of 8, {torus} on a 4×4 torus");
    assert_eq!(ring, torus);
}

#[test]
fn compngm_compresses_and_learns() {
    let (ngm, p_ngm) = train(
        run(Algorithm::Ngm, Topology::Ring, 8, 300),
        Box::new(NativeBackend::new(2).unwrap()),
    );
    let (comp, p_comp) = train(
        run(Algorithm::CompNgm, Topology::Ring, 8, 300),
        Box::new(NativeBackend::new(2).unwrap()),
    );
    eprintln!(
        "consensus accuracy after 300 steps: ngm {:.3}, compngm {:.3}",
        ngm.last.consensus_acc, comp.last.consensus_acc
    );
    let diff = p_ngm
        .iter()
        .zip(&p_comp)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-3, "compression changed nothing: {diff:e}");
    // Clearly above chance (10 classes) on the synthetic task.
    assert!(comp.last.consensus_acc > 0.5, "{}", comp.last.consensus_acc);
}

#[test]
fn checkpoint_resume_is_bit_identical() {
    let c = run(Algorithm::CompNgm, Topology::Ring, 5, 30);
    let ck = std::env::temp_dir().join(format!("swarmgrad-compngm-{}.bin", std::process::id()));
    let mut a = Trainer::new(c.clone(), Box::new(ReferenceBackend::new())).unwrap();
    let sa = a.run(|_, _, _| {}).unwrap();
    let pa = a.read_params().unwrap();
    let mut b = Trainer::new(c.clone(), Box::new(ReferenceBackend::new())).unwrap();
    b.run_until(13, |_, _, _| {}).unwrap();
    b.save_checkpoint(&ck).unwrap();
    let mut r = Trainer::new(c, Box::new(ReferenceBackend::new())).unwrap();
    r.load_checkpoint(&ck).unwrap();
    let sr = r.run(|_, _, _| {}).unwrap();
    let pr = r.read_params().unwrap();
    let bits = |p: &[f64]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&pa), bits(&pr), "resumed parameters differ");
    assert_eq!(sa.last, sr.last);
    let _ = std::fs::remove_file(&ck);
}
