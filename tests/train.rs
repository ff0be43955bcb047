//! The trainer end to end: CPU/GPU agreement per algorithm, learning on the synthetic task,
//! mechanism properties of mixing, divergence detection, config errors and the CLI's JSON.

mod common;

use common::{first_gpu, small_run, train as run, Target};
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::Backend;
use swarmgrad::cli::train as cli;
use swarmgrad::graph::Topology;
use swarmgrad::train::{Algorithm, Summary, TrainConfig, Trainer};
use swarmgrad::Error;

/// A small, fast run ([`small_run`]: 5 agents, 16 features, 1 000 training samples).
fn small(algo: Algorithm, momentum: f64, steps: u64) -> TrainConfig {
    TrainConfig {
        momentum,
        steps: Some(steps),
        ..small_run(algo)
    }
}

target_tests!([gpu, native] trainer_tracks_the_reference_with_and_without_momentum);
fn trainer_tracks_the_reference_with_and_without_momentum(t: &Target) {
    // 30 steps: f32 (GPU) against f64 (CPU) rounding compounds through the iterations and the
    // ReLU kinks; the kernel tests bound one such run at 1e-4 relative to the parameter scale,
    // we allow 1e-3 relative + 1e-4 absolute on the parameters, and one test sample's worth
    // (plus rounding) on accuracies.
    let cases = [
        (Algorithm::Dsgd, 0.0),
        (Algorithm::Dsgd, 0.9),
        (Algorithm::AllReduce, 0.0),
    ];
    let want: Vec<(Summary, Vec<f64>)> = cases
        .iter()
        .map(|&(a, b)| run(small(a, b, 30), Box::new(ReferenceBackend::new())))
        .collect();
    let mut be = t.backend();
    let name = be.describe();
    for (&(algo, beta), (want, want_p)) in cases.iter().zip(&want) {
        let mut t = Trainer::new(small(algo, beta, 30), be).unwrap();
        let got = t.run(|_, _, _| {}).unwrap();
        let got_p = t.read_params().unwrap();
        be = t.into_backend();
        let what = format!("{algo} β={beta} on {name}");
        common::assert_close(&format!("params, {what}"), &got_p, want_p, 1e-3, 1e-4);
        for (k, (g, w)) in [
            (
                "consensus_acc",
                (got.last.consensus_acc, want.last.consensus_acc),
            ),
            (
                "mean_local_acc",
                (got.last.mean_local_acc, want.last.mean_local_acc),
            ),
            (
                "worst_local_acc",
                (got.last.worst_local_acc, want.last.worst_local_acc),
            ),
        ] {
            assert!(
                (g - w).abs() <= 2.0 / 300.0 + 1e-9,
                "{what}: {k} {g} vs {w}"
            );
        }
        assert!(
            (got.last.train_loss - want.last.train_loss).abs()
                <= 1e-3 * want.last.train_loss.abs() + 1e-4,
            "{what}: train loss"
        );
        assert!(
            (got.last.consensus_distance - want.last.consensus_distance).abs()
                <= 1e-2 * want.last.consensus_distance + 1e-9,
            "{what}: consensus distance {} vs {}",
            got.last.consensus_distance,
            want.last.consensus_distance
        );
        assert_eq!(got.bytes_sent_per_agent, want.bytes_sent_per_agent);
    }
}

fn best_backend() -> Box<dyn Backend> {
    match first_gpu("best backend") {
        Some(g) => Box::new(g),
        None => Box::new(ReferenceBackend::new()),
    }
}

#[test]
fn synthetic_task_is_learned_well_above_chance() {
    let mut c = small(Algorithm::Dsgd, 0.9, 150);
    c.agents = 8;
    c.synthetic_train = 4_000;
    let (s, _) = run(c, best_backend());
    // 10 balanced classes: chance is 0.1; the Bayes rate of the default task is about 0.7.
    assert!(
        s.last.consensus_acc > 0.45,
        "consensus accuracy {}",
        s.last.consensus_acc
    );
    assert!(
        s.last.mean_local_acc > 0.35,
        "mean local accuracy {}",
        s.last.mean_local_acc
    );
    assert!(
        s.rows.first().unwrap().consensus_acc < 0.25,
        "starts near chance"
    );
    assert!(
        s.last.train_loss < s.rows[1].train_loss,
        "training loss falls"
    );
}

target_tests!([reference, gpu, native] allreduce_from_identical_init_keeps_consensus);
fn allreduce_from_identical_init_keeps_consensus(t: &Target) {
    let mut c = small(Algorithm::AllReduce, 0.9, 20);
    c.eval_every = 5;
    let be = t.backend();
    let name = be.describe();
    let (s, _) = run(c.clone(), be);
    for r in &s.rows {
        // Exactly 0 in exact arithmetic; the f32 average of equal values is off by rounding.
        assert!(
            r.consensus_distance < 1e-9,
            "{name}: step {} distance {}",
            r.step,
            r.consensus_distance
        );
    }
    // All-reduce: 4·d bytes per agent per step.
    let d = 16 * 16 + 16 + 16 * 10 + 10;
    assert_eq!(s.bytes_sent_per_agent, (4 * d * 20) as f64);
}

target_tests!([reference, gpu, native] gossip_preserves_the_mean_and_contracts);
fn gossip_preserves_the_mean_and_contracts(t: &Target) {
    let mut c = small(Algorithm::Dsgd, 0.0, 1);
    c.identical_init = false;
    let be = t.backend();
    let name = be.describe();
    let mut t = Trainer::new(c.clone(), be).unwrap();
    let stride = t.model().stride();
    let n = c.agents;
    let mean = |p: &[f64]| -> Vec<f64> {
        (0..stride)
            .map(|k| (0..n).map(|i| p[i * stride + k]).sum::<f64>() / n as f64)
            .collect()
    };
    let before = t.read_params().unwrap();
    let d0 = t.evaluate().unwrap().consensus_distance;
    t.mix_only().unwrap();
    let after = t.read_params().unwrap();
    let d1 = t.evaluate().unwrap().consensus_distance;
    common::assert_close(
        &format!("x̄ after one gossip round on {name}"),
        &mean(&after),
        &mean(&before),
        0.0,
        1e-6,
    );
    assert!(d1 < d0, "{name}: gossip contracts: {d1} vs {d0}");
    // Ring with Metropolis–Hastings weights 1/3: each agent sends 4d bytes to 2 neighbours.
    let s = t.run(|_, _, _| {}).unwrap();
    assert_eq!(
        s.bytes_sent_per_agent,
        (2 * 4 * t.model().n_params()) as f64
    );
}

#[test]
fn divergence_is_reported_with_step_and_agent() {
    let mut c = small(Algorithm::Dsgd, 0.0, 60);
    c.lr = 1e30;
    c.eval_every = 5;
    for be in [
        Box::new(ReferenceBackend::new()) as Box<dyn Backend>,
        best_backend(),
    ] {
        let mut t = Trainer::new(c.clone(), be).unwrap();
        match t.run(|_, _, _| {}) {
            Err(Error::Diverged {
                step, agent, value, ..
            }) => {
                assert!(
                    step > 0 && step <= 60 && agent < 5 && !value.is_finite(),
                    "step {step} agent {agent} value {value}"
                );
            }
            other => panic!(
                "expected Diverged, got {:?}",
                other.map(|s| s.last.consensus_acc)
            ),
        }
    }
}

#[test]
fn bad_config_values_are_errors() {
    let bad = [
        TrainConfig {
            lr: -1.0,
            ..Default::default()
        },
        TrainConfig {
            momentum: 1.5,
            ..Default::default()
        },
        TrainConfig {
            batch: 0,
            ..Default::default()
        },
        TrainConfig {
            agents: 0,
            ..Default::default()
        },
        TrainConfig {
            steps: Some(0),
            ..Default::default()
        },
        TrainConfig {
            eval_every: 0,
            ..Default::default()
        },
        TrainConfig {
            topology: Topology::Hypercube,
            agents: 12,
            ..Default::default()
        },
        TrainConfig {
            model: Some("mlp:32-10".into()),
            ..Default::default()
        },
        TrainConfig {
            batch: 10_000,
            ..Default::default()
        },
    ];
    for c in bad {
        let what = format!("{c:?}");
        match Trainer::new(c, Box::new(ReferenceBackend::new())) {
            Err(Error::BadParameter { .. }) => {}
            Err(e) => panic!("expected BadParameter, got {e} for {what}"),
            Ok(_) => panic!("accepted {what}"),
        }
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("train").chain(args.iter().copied());
    let code = cli::run_cli(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn cli_json_has_every_key_and_bad_flags_exit_2() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-cli-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let (code, out, err) = cli(&[
        "--json",
        "--backend",
        "reference",
        "--agents",
        "4",
        "--topology",
        "complete",
        "--steps",
        "12",
        "--eval-every",
        "6",
        "--model",
        "mlp:64-16-10",
        "--out",
        out_dir,
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    let last = out.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in [
        "algo",
        "topology",
        "agents",
        "steps",
        "consensus_acc",
        "mean_local_acc",
        "worst_local_acc",
        "consensus_distance",
        "train_loss",
        "bytes_sent_per_agent",
        "dispatches_per_step",
        "wall_s",
        "agent_steps_per_s",
        "ms_per_step",
        "adapter",
        "backend",
        "backend_reason",
    ] {
        assert!(v.get(key).is_some(), "missing key {key} in {last}");
    }
    assert_eq!(v["steps"], 12);
    assert_eq!(v["backend"], "reference");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 3,
        "header + evaluations at 0, 6, 12"
    );
    assert!(std::fs::read_to_string(dir.join("plot.svg"))
        .unwrap()
        .contains("</svg>"));
    let _ = std::fs::remove_dir_all(&dir);

    for (args, needle) in [
        (&["--lr", "-1"][..], "--lr"),
        (&["--momentum", "1"][..], "--momentum"),
        (
            &["--algo", "compngm", "--comp-charge", "bits"][..],
            "--comp-charge",
        ),
        (&["--algo", "ngm", "--ngm-alpha", "2"][..], "--ngm-alpha"),
        (&["--algo", "ngm", "--ngm-gamma", "0"][..], "--ngm-gamma"),
        (&["--algo", "sgdx"][..], "accepted: dsgd, allreduce"),
        (&["--topology", "mesh"][..], "accepted: ring"),
        (&["--partition", "zipf"][..], "accepted: iid"),
        (&["--dataset", "imagenet"][..], "accepted: synthetic, mnist"),
        (&["--backend", "tpu"][..], "auto, gpu, cpu or reference"),
        (&["--threads", "x"][..], "--threads"),
        (&["--agents", "10", "--topology", "torus"][..], "--topology"),
        (&["--batch", "abc"][..], "--batch"),
    ] {
        let (code, _, err) = cli(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        {
            assert_eq!(
                err.trim().lines().count(),
                1,
                "one-line error for {args:?}: {err}"
            );
        }
    }
}

target_tests!([reference, gpu, native] dispatches_per_step_do_not_depend_on_agents);
fn dispatches_per_step_do_not_depend_on_agents(t: &Target) {
    let be = t.backend();
    let name = be.describe();
    let mut per_step = Vec::new();
    let mut be = Some(be);
    for agents in [4, 16] {
        let mut c = small(Algorithm::Dsgd, 0.9, 3);
        c.agents = agents;
        c.alpha = Some(10.0);
        c.synthetic_train = 2_000;
        let mut t = Trainer::new(c, be.take().unwrap()).unwrap();
        let s = t.run(|_, _, _| {}).unwrap();
        per_step.push((s.dispatches_per_step, s.submits_per_step));
        be = Some(t.into_backend());
    }
    assert_eq!(
        per_step[0], per_step[1],
        "{name}: dispatches/submits per step for 4 and 16 agents"
    );
    // gather, 2 forward, loss, loss reduce, 2 weight grads, 1 data grad, local step, mix.
    assert_eq!(per_step[0], (10.0, 1.0), "{name}");
}

fn compare_cli(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("compare").chain(args.iter().copied());
    let code = swarmgrad::cli::compare::run_compare(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn compare_has_one_row_per_run_and_bad_algo_exits_2() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-compare-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let common = [
        "--backend",
        "reference",
        "--agents",
        "4",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--model",
        "mlp:64-8-10",
        "--out",
        out_dir,
    ];
    let args: Vec<&str> = [
        "--algos",
        "dsgd,allreduce",
        "--topologies",
        "ring",
        "--json",
    ]
    .into_iter()
    .chain(common)
    .collect();
    let (code, out, err) = compare_cli(&args);
    assert_eq!(code, 0, "stderr: {err}");
    // JSON: the last stdout line is an array with one summary per run, same seed and steps.
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let runs = v.as_array().unwrap();
    let labels: Vec<&str> = runs.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["dsgd-ring", "allreduce"]);
    for r in runs {
        assert_eq!(r["steps"], 6);
        assert_eq!(r["backend"], "reference");
        assert!(r["consensus_acc"].is_number() && r["bytes_sent_per_agent"].is_number());
    }
    // Table (on stderr with --json): one row per run under the header and rule.
    for label in &labels {
        let rows = err
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(label))
            .count();
        assert_eq!(rows, 1, "table row for {label}: {err}");
    }
    assert!(
        err.contains("consensus acc")
            && err.contains("wall s")
            && err.contains("agent-steps/s")
            && err.contains("ms/step"),
        "{err}"
    );
    // compare.csv: header + one row per run; each run's metrics; one plot with a line per run.
    let csv = std::fs::read_to_string(dir.join("compare.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2, "{csv}");
    assert!(lines[0].starts_with("run,consensus_acc,mean_local_acc,worst_local_acc"));
    assert!(lines[1].starts_with("dsgd-ring,") && lines[2].starts_with("allreduce,"));
    assert!(lines[0].ends_with(",wall_s,agent_steps_per_s,ms_per_step"));
    assert!(lines.iter().all(|l| l.split(',').count() == 9));
    for r in runs {
        let (rate, ms) = (r["agent_steps_per_s"].as_f64(), r["ms_per_step"].as_f64());
        assert!(rate.unwrap() > 0.0 && ms.unwrap() > 0.0, "{r}");
    }
    for label in &labels {
        let m = std::fs::read_to_string(dir.join(label).join("metrics.csv")).unwrap();
        assert_eq!(m.lines().count(), 1 + 3, "header + evaluations at 0, 3, 6");
    }
    let svg = std::fs::read_to_string(dir.join("compare.svg")).unwrap();
    assert_eq!(
        svg.matches(r#"stroke-width="2" points="#).count(),
        2 * 2 * 2,
        "2 runs × 2 panels, each a line and its legend swatch"
    );
    let _ = std::fs::remove_dir_all(&dir);

    for (args, needle) in [
        (&["--algos", "dsgd,sgdx"][..], "--algos"),
        (&["--topologies", "ring,mesh"][..], "--topologies"),
        (&["--steps", "abc"][..], "--steps"),
    ] {
        let all: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--backend", "reference"])
            .collect();
        let (code, out, err) = compare_cli(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        assert!(out.is_empty(), "nothing runs for {args:?}: {out}");
    }
}

/// Every field of a metrics row but the wall time, as its binary serde encoding (bit patterns:
/// a NaN-safe comparison that covers every field).
fn row_bits(r: &swarmgrad::train::MetricsRow) -> Vec<u8> {
    let r = swarmgrad::train::MetricsRow {
        wall_s: 0.0,
        ..r.clone()
    };
    postcard::to_allocvec(&r).unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs 2k steps checkpointing at k, then resumes a fresh trainer from the checkpoint; both must
/// give bit-identical metrics rows, byte ledger and parameters. Returns the backend.
fn resume_matches_uninterrupted(be: Box<dyn Backend>, tag: &str) -> Box<dyn Backend> {
    let dir = std::env::temp_dir().join(format!("swarmgrad-ckpt-{tag}-{}", std::process::id()));
    let ck = dir.join("checkpoint.bin");
    // Momentum (a second state buffer), an epoch boundary at step 25 and the checkpoint mid-epoch.
    let config = small(Algorithm::Dsgd, 0.9, 40);
    let mut a = Trainer::new(config.clone(), be).unwrap();
    a.set_checkpoint_every(20, ck.clone()).unwrap();
    let sa = a.run(|_, _, _| {}).unwrap();
    let pa = a.read_params().unwrap();
    let be = a.into_backend();
    let mut b = Trainer::new(config, be).unwrap();
    b.load_checkpoint(&ck).unwrap();
    assert_eq!(b.step(), 20);
    let sb = b.run(|_, _, _| {}).unwrap();
    let pb = b.read_params().unwrap();
    let ra: Vec<Vec<u8>> = sa.rows.iter().map(row_bits).collect();
    let rb: Vec<Vec<u8>> = sb.rows.iter().map(row_bits).collect();
    assert_eq!(ra.len(), 5, "{tag}: rows at 0, 10, 20, 30, 40");
    assert_eq!(ra, rb, "{tag}: metrics rows");
    assert!(bits(&pa) == bits(&pb), "{tag}: parameters differ");
    assert_eq!(sa.bytes_sent_per_agent, sb.bytes_sent_per_agent);
    assert_eq!(sa.max_bytes_sent, sb.max_bytes_sent);
    assert_eq!(sa.last, sb.last);
    let _ = std::fs::remove_dir_all(&dir);
    b.into_backend()
}

#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    resume_matches_uninterrupted(Box::new(ReferenceBackend::new()), "cpu");
    // Saving a checkpoint does not perturb the run.
    let (plain, p) = run(
        small(Algorithm::Dsgd, 0.9, 40),
        Box::new(ReferenceBackend::new()),
    );
    let mut t = Trainer::new(
        small(Algorithm::Dsgd, 0.9, 40),
        Box::new(ReferenceBackend::new()),
    )
    .unwrap();
    let ck = std::env::temp_dir().join(format!("swarmgrad-ckpt-plain-{}.bin", std::process::id()));
    t.set_checkpoint_every(7, ck.clone()).unwrap();
    let s = t.run(|_, _, _| {}).unwrap();
    assert!(bits(&t.read_params().unwrap()) == bits(&p));
    let want: Vec<Vec<u8>> = plain.rows.iter().map(row_bits).collect();
    let got: Vec<Vec<u8>> = s.rows.iter().map(row_bits).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_file(&ck);
    if let Some(gpu) = first_gpu("checkpoint resume") {
        resume_matches_uninterrupted(Box::new(gpu), "gpu");
    }
}

#[test]
fn corrupt_or_foreign_checkpoints_are_typed_errors() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-ckpt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("checkpoint.bin");
    let config = small(Algorithm::Dsgd, 0.9, 10);
    let mut t = Trainer::new(config.clone(), Box::new(ReferenceBackend::new())).unwrap();
    t.save_checkpoint(&ck).unwrap();
    let good = std::fs::read(&ck).unwrap();
    let fresh = || Trainer::new(config.clone(), Box::new(ReferenceBackend::new())).unwrap();
    fresh().load_checkpoint(&ck).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 9].to_vec()),
        ("empty", Vec::new()),
    ];
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    cases.push(("flipped byte", flipped));
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push(("bad magic", magic));
    for (what, bytes) in cases {
        let p = dir.join(format!("{}.bin", what.replace(' ', "-")));
        std::fs::write(&p, bytes).unwrap();
        match fresh().load_checkpoint(&p) {
            Err(Error::Checkpoint { reason, .. }) => eprintln!("{what}: {reason}"),
            other => panic!("{what}: expected Error::Checkpoint, got {other:?}"),
        }
    }
    let other = TrainConfig {
        lr: 0.05,
        ..config.clone()
    };
    let mut t = Trainer::new(other, Box::new(ReferenceBackend::new())).unwrap();
    match t.load_checkpoint(&ck) {
        Err(Error::Checkpoint { reason, .. }) => assert!(reason.contains("configuration")),
        other => panic!("foreign config: expected Error::Checkpoint, got {other:?}"),
    }
    assert!(matches!(
        fresh().load_checkpoint(&dir.join("missing.bin")),
        Err(Error::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_checkpoint_and_resume() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-ckpt-cli-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let ck = dir.join("checkpoint.bin");
    let base = [
        "--json",
        "--backend",
        "reference",
        "--agents",
        "4",
        "--steps",
        "12",
        "--eval-every",
        "4",
        "--model",
        "mlp:64-16-10",
        "--out",
        out_dir,
    ];
    let mut with_ck = base.to_vec();
    with_ck.extend(["--checkpoint-every", "8"]);
    let (code, out, err) = cli(&with_ck);
    assert_eq!(code, 0, "{err}");
    assert!(ck.exists());
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let ck_str = ck.to_str().unwrap().to_string();
    let mut resume = base.to_vec();
    resume.extend(["--resume", &ck_str]);
    let (code, out, err) = cli(&resume);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resumed from"), "{err}");
    let again: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    for k in [
        "consensus_acc",
        "consensus_distance",
        "train_loss",
        "bytes_sent_per_agent",
    ] {
        assert_eq!(summary[k], again[k], "{k}");
    }
    // Same rows apart from the wall-clock column.
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    let resumed = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(strip(&resumed), strip(&metrics));
    let mut bad = base.to_vec();
    bad.extend(["--checkpoint-every", "0"]);
    let (code, _, err) = cli(&bad);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--checkpoint-every"), "{err}");
    std::fs::write(dir.join("junk.bin"), b"not a checkpoint").unwrap();
    let junk = dir.join("junk.bin").to_str().unwrap().to_string();
    let mut bad = base.to_vec();
    bad.extend(["--resume", &junk]);
    let (code, _, err) = cli(&bad);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot resume from checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `config` uninterrupted, then again paused after `k` steps with a checkpoint taken there
/// (the paused run continues), then a fresh trainer resumed from that checkpoint: all three must
/// give bit-identical metrics rows, ledgers and parameters. Returns the backend.
fn resume_at(
    config: &TrainConfig,
    k: u64,
    be: Box<dyn Backend>,
    tag: &str,
) -> (Box<dyn Backend>, Vec<f64>) {
    let ck = std::env::temp_dir().join(format!("swarmgrad-ckpt-{tag}-{}.bin", std::process::id()));
    let mut a = Trainer::new(config.clone(), be).unwrap();
    let sa = a.run(|_, _, _| {}).unwrap();
    let pa = a.read_params().unwrap();
    let mut b = Trainer::new(config.clone(), a.into_backend()).unwrap();
    b.run_until(k, |_, _, _| {}).unwrap();
    assert_eq!(b.step(), k);
    b.save_checkpoint(&ck).unwrap();
    let sb = b.run(|_, _, _| {}).unwrap();
    let pb = b.read_params().unwrap();
    let mut c = Trainer::new(config.clone(), b.into_backend()).unwrap();
    c.load_checkpoint(&ck).unwrap();
    let sc = c.run(|_, _, _| {}).unwrap();
    let pc = c.read_params().unwrap();
    let ra: Vec<Vec<u8>> = sa.rows.iter().map(row_bits).collect();
    for (what, s, p) in [("paused", &sb, &pb), ("resumed", &sc, &pc)] {
        let r: Vec<Vec<u8>> = s.rows.iter().map(row_bits).collect();
        assert_eq!(r, ra, "{tag}: {what} metrics rows");
        assert!(bits(p) == bits(&pa), "{tag}: {what} parameters differ");
        assert_eq!(s.bytes_sent_per_agent, sa.bytes_sent_per_agent, "{tag}");
        assert_eq!(s.last, sa.last, "{tag}");
    }
    let _ = std::fs::remove_file(&ck);
    (c.into_backend(), pa)
}

/// RelaySGD with drops, RelaySGD/Grad, and double binary trees with drops, on 5 agents (ring:
/// a chain of diameter 4; double trees of depth 2).
fn relay_resume_configs() -> Vec<(String, TrainConfig)> {
    let mut out = Vec::new();
    for (algo, topology, drop_prob) in [
        (Algorithm::RelaySgd, Topology::Ring, 0.1),
        (Algorithm::RelaySgdGrad, Topology::Ring, 0.0),
        (Algorithm::RelaySgdGrad, Topology::Ring, 0.1),
        (Algorithm::RelaySgd, Topology::DoubleBinaryTrees, 0.1),
    ] {
        let mut c = small(algo, 0.9, 30);
        c.topology = topology;
        c.options.drop_prob = drop_prob;
        out.push((format!("{algo}-{topology}-drop{drop_prob}"), c));
    }
    out
}

#[test]
fn relay_resume_is_bit_identical_before_and_after_the_tree_diameter() {
    // Checkpoints at step 2 (messages still travelling: the chain's diameter is 4) and step 17
    // (past it, mid-epoch, between evaluations).
    let mut be: Box<dyn Backend> = Box::new(ReferenceBackend::new());
    for (tag, config) in relay_resume_configs() {
        for k in [2, 17] {
            be = resume_at(&config, k, be, &format!("cpu-{tag}-{k}")).0;
        }
    }
    // The host state matters: resuming with the round counter moved shifts the drop stream.
    let (tag, config) = &relay_resume_configs()[0];
    let ck = std::env::temp_dir().join(format!("swarmgrad-ckpt-tamper-{}.bin", std::process::id()));
    let mut a = Trainer::new(config.clone(), be).unwrap();
    a.run_until(17, |_, _, _| {}).unwrap();
    let mut saved = a.checkpoint().unwrap();
    a.run(|_, _, _| {}).unwrap();
    let want = a.read_params().unwrap();
    assert_eq!(saved.algo_host["rounds"], 17, "{tag}: {}", saved.algo_host);
    saved.algo_host["rounds"] = 18.into();
    let mut b = Trainer::new(config.clone(), a.into_backend()).unwrap();
    b.restore(&saved, &ck).unwrap();
    b.run(|_, _, _| {}).unwrap();
    let got = b.read_params().unwrap();
    let gap = got
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    eprintln!("{tag}: round counter off by one after resuming: max |Δx| = {gap:e}");
    assert!(
        gap > 0.0,
        "{tag}: the drop stream must depend on the round counter"
    );
    // Missing or malformed host state is a typed checkpoint error.
    saved.algo_host = serde_json::Value::Null;
    let mut c = Trainer::new(config.clone(), b.into_backend()).unwrap();
    match c.restore(&saved, &ck) {
        Err(Error::Checkpoint { reason, .. }) => eprintln!("null host state: {reason}"),
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

target_tests!([gpu] relay_resume_is_bit_identical_on_every_gpu);
fn relay_resume_is_bit_identical_on_every_gpu(t: &Target) {
    let mut be = t.backend();
    eprintln!("relay resume on {}", be.describe());
    for (tag, config) in relay_resume_configs() {
        for k in [2, 17] {
            be = resume_at(&config, k, be, &format!("{}-{tag}-{k}", t.name())).0;
        }
    }
}

#[test]
fn sgp_summary_names_the_exponential_graph() {
    let mut c = small(Algorithm::Sgp, 0.0, 4);
    c.agents = 4;
    let (s, _) = run(c.clone(), Box::new(ReferenceBackend::new()));
    assert_eq!(s.topology, "exponential");
    // The configured static topology plays no part (sgp does not need a static graph).
    c.topology = Topology::Torus;
    let (s, _) = run(c.clone(), Box::new(ReferenceBackend::new()));
    assert_eq!(s.topology, "exponential");
    c.agents = 5;
    match Trainer::new(c, Box::new(ReferenceBackend::new())) {
        Err(Error::BadParameter { name, .. }) => assert_eq!(name, "agents"),
        Err(e) => panic!("expected BadParameter(agents), got {e}"),
        Ok(_) => panic!("sgp with 5 agents must be rejected"),
    }
    let (s, _) = run(
        small(Algorithm::AllReduce, 0.0, 2),
        Box::new(ReferenceBackend::new()),
    );
    assert_eq!(s.topology, "complete (all-reduce)");
    let (s, _) = run(
        small(Algorithm::Dsgd, 0.0, 2),
        Box::new(ReferenceBackend::new()),
    );
    assert_eq!(s.topology, "ring");
}

#[test]
fn dsgd_runs_on_the_exponential_graph_and_in_cta_order() {
    let mut c = small(Algorithm::Dsgd, 0.9, 20);
    c.agents = 8;
    c.topology = Topology::Exponential;
    let (s, p) = run(c.clone(), Box::new(ReferenceBackend::new()));
    assert_eq!(s.topology, "exponential");
    assert!(p.iter().all(|v| v.is_finite()) && s.last.train_loss.is_finite());
    let d = c.model(swarmgrad::model::flat(1), 10).unwrap().n_params() as f64;
    // One message of 4d bytes to one peer per step.
    assert_eq!(s.bytes_sent_per_agent, 20.0 * 4.0 * d);
    c.options.dsgd_order = swarmgrad::algo::DsgdOrder::Cta;
    let (_, q) = run(c.clone(), Box::new(ReferenceBackend::new()));
    assert!(bits(&p) != bits(&q), "CTA and ATC must differ");
    c.agents = 6;
    match Trainer::new(c, Box::new(ReferenceBackend::new())) {
        Err(Error::BadParameter { name, .. }) => assert_eq!(name, "topology"),
        Err(e) => panic!("expected BadParameter(topology), got {e}"),
        Ok(_) => panic!("exponential with 6 agents must be rejected"),
    }
}

#[test]
fn cli_accepts_dsgd_order_and_relay_double_trees() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-cli-order-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap();
    let base = [
        "--json",
        "--backend",
        "reference",
        "--agents",
        "8",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--model",
        "mlp:64-16-10",
        "--out",
        out_dir,
    ];
    let summary = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        v
    };
    let atc = summary(&["--algo", "dsgd", "--topology", "exponential"]);
    let cta = summary(&[
        "--algo",
        "dsgd",
        "--topology",
        "exponential",
        "--dsgd-order",
        "cta",
    ]);
    assert_eq!(cta["topology"], "exponential");
    assert_ne!(atc["consensus_distance"], cta["consensus_distance"]);
    let relay = summary(&["--algo", "relaysgd", "--topology", "double-binary-trees"]);
    assert_eq!(relay["topology"], "double-binary-trees");
    let mut bad = base.to_vec();
    bad.extend(["--dsgd-order", "sideways"]);
    let (code, _, err) = cli(&bad);
    assert_eq!(code, 2);
    assert!(err.contains("dsgd-order"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Parses `train` flags and builds the config (defaults < TOML file < flags given).
fn config_of(args: &[&str]) -> swarmgrad::Result<TrainConfig> {
    let a = cli::Args::from_argv(std::iter::once("train").chain(args.iter().copied()))
        .map_err(|e| Error::param("argv", e.to_string()))?;
    cli::build_config(&a)
}

#[test]
fn flags_given_override_the_toml_file_and_defaults_do_not() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        "lr = 0.05\nagents = 4\nmomentum = 0.5\nnesterov = false\nsteps = 50\n\
         topology = \"complete\"\n[options]\nqgm_period = 3\ndrop_prob = 0.1\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // No flags: the file's values, the defaults elsewhere.
    let c = config_of(&["--config", f]).unwrap();
    assert_eq!(
        (c.lr, c.agents, c.momentum, c.nesterov),
        (0.05, 4, 0.5, false)
    );
    assert_eq!((c.steps, c.batch, c.seed), (Some(50), 32, 0));
    assert_eq!((c.options.qgm_period, c.options.drop_prob), (3, 0.1));
    assert_eq!(c.topology, Topology::Complete);
    // Flags given win, including one equal to its default; the others keep the file's values.
    let c = config_of(&[
        "--config",
        f,
        "--agents",
        "16",
        "--drop-prob",
        "0.2",
        "--nesterov",
        "--epochs",
        "2",
    ])
    .unwrap();
    assert_eq!((c.agents, c.options.drop_prob, c.nesterov), (16, 0.2, true));
    assert_eq!((c.lr, c.momentum, c.options.qgm_period), (0.05, 0.5, 3));
    assert_eq!((c.steps, c.epochs), (None, Some(2.0)));
    // Without a file the flags lay over the defaults; all-reduce defaults to the complete graph
    // unless a topology is chosen.
    let c = config_of(&["--algo", "allreduce", "--lr", "0.3"]).unwrap();
    assert_eq!((c.topology, c.lr, c.agents), (Topology::Complete, 0.3, 16));
    let c = config_of(&["--algo", "allreduce", "--topology", "ring"]).unwrap();
    assert_eq!(c.topology, Topology::Ring);
    assert_eq!(config_of(&[]).unwrap(), TrainConfig::default());
    // A partition with its own α drops the default α; --alpha only applies to Dirichlet.
    let c = config_of(&["--partition", "dirichlet:0.3"]).unwrap();
    assert_eq!(c.alpha, None);
    match config_of(&["--partition", "iid", "--alpha", "0.5"]) {
        Err(Error::BadParameter { name, .. }) => assert_eq!(name, "alpha"),
        other => panic!("expected BadParameter(alpha), got {other:?}"),
    }
    // The --gossip-weight flag sets the constant rule.
    let c = config_of(&["--gossip-weight", "0.25"]).unwrap();
    assert_eq!(c.mixing.rule, swarmgrad::graph::MixingRule::Constant(0.25));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The small job the backend-choice tests run: 4 agents, 6 steps, a narrow model.
const SMALL_JOB: [&str; 9] = [
    "--json",
    "--agents",
    "4",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--model",
    "mlp:64-16-10",
];

/// Runs the main job with `extra` flags after [`SMALL_JOB`] (output in a fresh directory) and
/// returns its JSON summary and stderr (where `--json` sends the run line).
fn backend_job(tag: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("swarmgrad-be-{tag}-{}", std::process::id()));
    let out_dir = dir.to_str().unwrap().to_string();
    let mut args: Vec<&str> = SMALL_JOB.to_vec();
    args.extend(extra);
    args.extend(["--out", &out_dir]);
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "{extra:?}: {err}");
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // The training speed is measured over the steps only, and both fields describe it.
    let rate = v["agent_steps_per_s"].as_f64().unwrap();
    let ms = v["ms_per_step"].as_f64().unwrap();
    assert!(rate > 0.0 && ms > 0.0, "{extra:?}: {v}");
    let implied = 4.0 * 1e3 / ms;
    assert!(
        (rate - implied).abs() <= 1e-6 * implied,
        "{extra:?}: {rate} agent-steps/s but {ms} ms/step"
    );
    (v, err)
}

/// The one `backend:` line of a run's output.
fn backend_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("backend: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0]
}

#[test]
fn main_job_without_flags_picks_the_native_backend_on_software_adapters() {
    use swarmgrad::backend::choice;
    use swarmgrad::backend::gpu::AdapterChoice;
    let (v, err) = backend_job("auto", &[]);
    let line = backend_line(&err);
    match choice::hardware_adapter(&AdapterChoice::from_env()) {
        Some(hw) => {
            assert_eq!(v["backend"], "gpu", "{hw}: {line}");
            assert!(line.contains("auto: hardware GPU adapter"), "{line}");
        }
        None => {
            // This machine and CI: lavapipe and llvmpipe only, so the native backend.
            assert_eq!(v["backend"], "cpu", "{line}");
            assert!(
                v["adapter"].as_str().unwrap().starts_with("native CPU"),
                "{v}"
            );
            assert!(
                line.starts_with("backend: native CPU")
                    && line.contains("auto: no hardware GPU adapter"),
                "{line}"
            );
            assert!(v["backend_reason"].as_str().unwrap().starts_with("auto: "));
        }
    }
    // Without --json, the run line and the final table (with the training speed) on stdout.
    let dir = std::env::temp_dir().join(format!("swarmgrad-be-table-{}", std::process::id()));
    let (code, out, err) = cli(&[
        "--agents",
        "4",
        "--steps",
        "3",
        "--model",
        "mlp:64-16-10",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err}");
    assert!(backend_line(&out).contains("auto: "), "{out}");
    assert!(
        out.contains("training speed") && out.contains("agent-steps/s") && out.contains("ms/step"),
        "{out}"
    );
}

#[test]
fn backend_flag_forces_wgpu_the_native_backend_or_the_reference() {
    use swarmgrad::backend::gpu::{AdapterChoice, GpuContext};
    // `reference`: the f64 reference, as `cpu` used to be.
    let (r, err) = backend_job("reference", &["--backend", "reference"]);
    assert_eq!(r["backend"], "reference");
    assert_eq!(r["adapter"], ReferenceBackend::new().describe());
    assert!(backend_line(&err).contains("--backend reference"), "{err}");
    // `cpu`: the native backend, bit-identical whatever the thread count (0: every core).
    let (all, err) = backend_job("cpu0", &["--backend", "cpu", "--threads", "0"]);
    assert_eq!(all["backend"], "cpu");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        backend_line(&err).contains(&format!("{cores} thread")),
        "{err}"
    );
    let (two, err) = backend_job("cpu2", &["--backend", "cpu", "--threads", "2"]);
    assert!(
        two["adapter"].as_str().unwrap().contains("2 threads"),
        "{two}"
    );
    assert!(backend_line(&err).contains("--backend cpu"), "{err}");
    for k in [
        "consensus_acc",
        "consensus_distance",
        "train_loss",
        "mean_local_acc",
    ] {
        assert_eq!(all[k], two[k], "{k} on 0 and 2 threads");
    }
    // f32 native against the f64 reference after 6 steps: close, not equal.
    let (a, b) = (
        two["train_loss"].as_f64().unwrap(),
        r["train_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    // --threads where the native backend does not run: a notice, not an error.
    let (_, err) = backend_job("ref-threads", &["--backend", "reference", "--threads", "2"]);
    assert!(
        err.contains("notice: --threads 2 applies to the native CPU backend only"),
        "{err}"
    );
    // `gpu`: wgpu on whatever adapter there is, software ones (lavapipe, llvmpipe) included.
    let required = std::env::var("SWARMGRAD_REQUIRE_BACKENDS").unwrap_or_default();
    for (name, backends) in [
        ("vulkan", wgpu::Backends::VULKAN),
        ("gl", wgpu::Backends::GL),
    ] {
        let choice = AdapterChoice {
            backends,
            ..AdapterChoice::default()
        };
        if GpuContext::adapters(&choice).is_empty() {
            assert!(
                !required.split(',').any(|b| b.trim() == name),
                "no {name} adapter, but SWARMGRAD_REQUIRE_BACKENDS={required}"
            );
            eprintln!("skipping --backend gpu --gpu-backend {name}: no adapter");
            continue;
        }
        let (g, err) = backend_job(name, &["--backend", "gpu", "--gpu-backend", name]);
        assert_eq!(g["backend"], "gpu", "{g}");
        let line = backend_line(&err);
        assert!(line.contains("--backend gpu"), "{line}");
        assert!(!line.starts_with("backend: native"), "{line}");
        let (a, b) = (
            g["train_loss"].as_f64().unwrap(),
            r["train_loss"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{name}: {a} vs {b}"
        );
    }
}

#[test]
fn bad_threads_exit_2_naming_the_flag() {
    for bad in ["x", "-1", "2.5", "", "100000"] {
        for cmd in ["train", "compare"] {
            let args = ["--backend", "cpu", "--threads", bad, "--steps", "1"];
            let (code, out, err) = if cmd == "train" {
                cli(&args)
            } else {
                compare_cli(&args)
            };
            assert_eq!(code, 2, "{cmd} --threads {bad:?}: {err}");
            assert!(out.is_empty(), "{cmd} --threads {bad:?}: {out}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains("--threads"), "{cmd} --threads {bad:?}: {err}");
        }
    }
}

/// The toy command line computes in f64 on `--backend reference` only: there its printed values
/// are f64 (not all f32-representable), on the native backend every one is an f32.
#[test]
fn toy_prints_f64_on_the_reference_and_f32_on_the_native_backend() {
    let toy = |backend: &str| -> (Vec<f64>, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let argv = [
            "toy",
            "--task",
            "random-quadratics",
            "--agents",
            "4",
            "--dim",
            "3",
            "--steps",
            "20",
            "--backend",
            backend,
        ];
        let code = swarmgrad::cli::toy::run_toy(argv, &mut out, &mut err);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(code, 0, "{err}");
        let out = String::from_utf8(out).unwrap();
        // Parsed from the text with `str::parse` (exact; serde_json's default float parsing
        // may be off by an ulp, which would hide the f32/f64 difference tested here).
        let last = out.lines().last().unwrap();
        let x_text = last.split("\"x\":").nth(1).unwrap();
        let x_text = &x_text[..x_text.find("]]").unwrap()];
        let x = x_text
            .split(',')
            .map(|t| t.trim_matches(['[', ']']).parse::<f64>().unwrap())
            .collect();
        (x, err)
    };
    let is_f32 = |v: f64| (v as f32) as f64 == v;
    let (exact, err) = toy("reference");
    assert!(backend_line(&err).contains("f64 CPU reference"), "{err}");
    assert!(exact.iter().any(|&v| !is_f32(v)), "{exact:?}");
    let (native, err) = toy("cpu");
    assert!(
        backend_line(&err).starts_with("backend: native CPU"),
        "{err}"
    );
    assert!(native.iter().all(|&v| is_f32(v)), "{native:?}");
    assert_eq!(native.len(), exact.len());
    for (k, (a, b)) in native.iter().zip(&exact).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "x[{k}]: {a} vs {b}"
        );
    }
}

target_tests!([reference, gpu, native] divergence_is_caught_at_its_step_before_any_checkpoint);
/// `--lr 1e6 --steps 400 --eval-every 200 --checkpoint-every 10` (and every 3, so that a
/// checkpoint precedes the divergence on every backend): the device-side watch reports the step
/// and agent an evaluation after every step finds (not the next evaluation at 200), the run
/// stops at the next sync point, and the last checkpoint written holds only finite values.
fn divergence_is_caught_at_its_step_before_any_checkpoint(t: &Target) {
    let mut c = small(Algorithm::Dsgd, 0.0, 400);
    c.lr = 1e6;
    // Where an evaluation after every step finds it.
    let mut every = c.clone();
    every.eval_every = 1;
    let mut probe = Trainer::new(every, t.backend()).unwrap();
    let (want_step, want_agent) = match probe.run(|_, _, _| {}) {
        Err(Error::Diverged { step, agent, .. }) => (step, agent),
        other => panic!("expected Diverged, got {:?}", other.map(|s| s.steps)),
    };
    c.eval_every = 200;
    for ck_every in [10, 3] {
        let dir = std::env::temp_dir().join(format!(
            "swarmgrad-watch-{}-{ck_every}-{}",
            t.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let ck = dir.join("checkpoint.bin");
        let mut tr = Trainer::new(c.clone(), t.backend()).unwrap();
        tr.set_checkpoint_every(ck_every, ck.clone()).unwrap();
        match tr.run(|_, _, _| {}) {
            Err(Error::Diverged {
                step, agent, value, ..
            }) => {
                assert!(step < 200, "caught at step {step}");
                assert_eq!(
                    (step, agent),
                    (want_step, want_agent),
                    "watch vs evaluation"
                );
                assert!(!value.is_finite(), "value {value}");
                // The run stops at the next sync point (a checkpoint step here).
                assert!(
                    tr.step() >= step && tr.step() < step + ck_every,
                    "stopped at {}",
                    tr.step()
                );
            }
            other => panic!("expected Diverged, got {:?}", other.map(|s| s.steps)),
        }
        assert!(
            ck_every == 10 || ck.exists(),
            "a checkpoint before step {want_step}"
        );
        if ck.exists() {
            let saved = swarmgrad::train::checkpoint::Checkpoint::load(&ck).unwrap();
            for (name, data) in &saved.buffers {
                if let swarmgrad::train::checkpoint::BufData::Real(v) = data {
                    assert!(v.iter().all(|x| x.is_finite()), "{name} not finite");
                }
            }
            assert!(saved.step < want_step);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A small CLI run writing to `out`, with extra flags (12 steps, an evaluation every 6, the
/// complete graph, unless `extra` gives them).
fn cli_run(out: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "--backend",
        "reference",
        "--agents",
        "4",
        "--model",
        "mlp:64-16-10",
        "--out",
        out.to_str().unwrap(),
    ];
    let defaults = [
        ("--steps", "12"),
        ("--eval-every", "6"),
        ("--topology", "complete"),
    ];
    for (flag, default) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn the_output_directory_is_checked_and_locked_before_the_first_step() {
    let base = std::env::temp_dir().join(format!("swarmgrad-outdir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // A regular file as --out, and a directory that cannot be created: exit 2 naming the path.
    let file = base.join("a-file");
    std::fs::write(&file, "x").unwrap();
    for bad in [file.clone(), std::path::PathBuf::from("/proc/swarmgrad-x")] {
        let (code, _, err) = cli_run(&bad, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("--out") && err.contains(&bad.display().to_string()),
            "{err}"
        );
        assert!(!err.contains("step"), "refused before training: {err}");
    }
    // A live run's lock (this process's id) refuses a second run with the same --out.
    let dir = base.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = dir.join(swarmgrad::train::run_dir::LOCK_NAME);
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let (code, _, err) = cli_run(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use by another run"), "{err}");
    assert!(!dir.join("metrics.csv").exists());
    // A dead process's lock is recovered, and stale temporary checkpoint files are removed.
    std::fs::write(&lock, "4294967295").unwrap();
    let tmp = dir.join(".checkpoint.bin.tmp4294967295");
    std::fs::write(&tmp, "partial").unwrap();
    let (code, _, err) = cli_run(&dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!tmp.exists(), "stale temporary checkpoint removed");
    assert!(!lock.exists(), "the lock goes with the run");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_failed_run_leaves_its_metrics_history() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-failed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _, err) = cli_run(
        &dir,
        &["--lr", "1e6", "--steps", "400", "--eval-every", "2"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("diverged at step"), "{err}");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines.len() >= 2, "header and the start row at least: {csv}");
    assert!(lines[0].starts_with("step,"));
    assert!(lines[1].starts_with("0,"));
    // The rows are those of the same run's in-memory history, as write_csv writes them.
    let (code, _, err) = cli_run(&dir, &[]);
    assert_eq!(code, 0, "{err}");
    let streamed = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(
        streamed.lines().count(),
        1 + 3,
        "rows at 0, 6, 12: {streamed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_topology_runs_like_the_builtin_graph_and_bad_files_are_line_numbered_errors() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-edges-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        format!("file:{}", p.display())
    };
    // A 5-ring as an edge list trains bit for bit like --topology ring.
    let ring = file(
        "ring.txt",
        "# a ring\n0 1\n1 2\n\n2 3 # comment\n3 4\n4 0\n",
    );
    let (want, want_p) = run(
        small(Algorithm::Dsgd, 0.9, 20),
        Box::new(ReferenceBackend::new()),
    );
    let mut c = small(Algorithm::Dsgd, 0.9, 20);
    c.topology = ring.parse().unwrap();
    assert_eq!(c.topology.to_string(), ring);
    let (got, got_p) = run(c, Box::new(ReferenceBackend::new()));
    assert!(bits(&got_p) == bits(&want_p), "parameters differ");
    let rows = |s: &Summary| s.rows.iter().map(row_bits).collect::<Vec<_>>();
    assert_eq!(rows(&got), rows(&want));
    // Typed, line-numbered errors (each a value error of --topology: exit 2).
    let cases = [
        (
            "loop.txt",
            "0 1\n1 1\n",
            "edge list line 2: self loop at node 1",
        ),
        (
            "dup.txt",
            "0 1\n1 2\n1 0\n",
            "edge list line 3: duplicate edge (0, 1)",
        ),
        (
            "word.txt",
            "0 1\n1 x\n",
            "edge list line 2: expected two node ids",
        ),
        (
            "neg.txt",
            "0 -1\n",
            "edge list line 1: expected two node ids",
        ),
        ("empty.txt", "# nothing\n\n", "the edge list has no edges"),
        // A huge id is refused without allocating for it.
        (
            "huge.txt",
            "0 1\n1 18446744073709551615\n",
            "edge list line 2: node 18446744073709551615 is too large for 2 edges",
        ),
        (
            "gap.txt",
            "0 1\n2 3\n3 0\n4 0\n1 6\n",
            "node 5 has no edges",
        ),
    ];
    for (name, text, want) in cases {
        let topo = file(name, text);
        let (code, _, err) = cli_run(&dir.join("out"), &["--topology", &topo]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(name),
            "{name}: the error names the file: {err}"
        );
    }
    let (code, _, err) = cli_run(
        &dir.join("out"),
        &[
            "--topology",
            &format!("file:{}", dir.join("missing.txt").display()),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.txt: cannot read it"), "{err}");
    // Graph-level checks when the run uses it: connectivity and the number of agents.
    for (name, text, want) in [
        ("split.txt", "0 1\n2 3\n", "graph is disconnected"),
        (
            "five.txt",
            "0 1\n1 2\n2 3\n3 4\n",
            "the edge list has 5 nodes, the run has 4 agents",
        ),
    ] {
        let topo = file(name, text);
        let (code, _, err) = cli_run(&dir.join("out"), &["--topology", &topo]);
        assert_ne!(code, 0, "{name}: {err}");
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    // toy and compare take it too.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let topo4 = file("ring4.txt", "0 1\n1 2\n2 3\n3 0\n");
    let code = swarmgrad::toy::run_toy(
        [
            "toy",
            "--task",
            "constants",
            "--targets",
            "0,1,2,3",
            "--topology",
            &topo4,
            "--steps",
            "5",
            "--backend",
            "reference",
        ],
        &mut out,
        &mut err,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let (code, _, err) = compare_cli(&[
        "--backend",
        "reference",
        "--agents",
        "4",
        "--algos",
        "dsgd",
        "--topologies",
        &topo4,
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--model",
        "mlp:64-16-10",
        "--out",
        dir.join("cmp").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

target_tests!([reference, gpu, native] oversized_runs_are_refused_before_anything_is_allocated);
/// A model whose agents' parameters cannot fit (64 × 2.7e8 floats) and 10 million agents
/// are refused at once, with what would be needed and what to reduce, before any allocation.
fn oversized_runs_are_refused_before_anything_is_allocated(t: &Target) {
    let start = std::time::Instant::now();
    let mut c = small(Algorithm::Dsgd, 0.0, 10);
    c.agents = 64;
    c.synthetic_train = 2_000;
    c.model = Some("mlp:16-10000000-10".into());
    match Trainer::new(c, t.backend()) {
        Err(
            e @ (Error::BadParameter { .. }
            | Error::BufferTooLarge { .. }
            | Error::IndexRange { .. }),
        ) => {
            let msg = e.to_string();
            assert!(msg.contains("64 agents"), "{msg}");
            assert!(msg.contains("reduce --agents"), "{msg}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted an oversized model"),
    }
    let mut c = small(Algorithm::Dsgd, 0.0, 10);
    c.agents = 10_000_000;
    match Trainer::new(c, t.backend()) {
        Err(Error::BadParameter { name, reason }) => {
            assert_eq!(name, "agents", "{reason}");
            assert!(reason.contains("10000000 agents"), "{reason}");
        }
        other => panic!("expected a bad --agents, got {:?}", other.err()),
    }
    assert!(
        start.elapsed().as_secs_f64() < 5.0,
        "refused after {:?}",
        start.elapsed()
    );
}

#[test]
fn errors_name_what_the_user_wrote_and_unread_settings_are_flagged() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-mislead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    // D²'s spectrum check names the flag that sets the weight, not a `--mixing` that does not
    // exist.
    let (code, _, err) = cli_run(
        &out,
        &[
            "--algo",
            "d2",
            "--topology",
            "ring",
            "--gossip-weight",
            "0.5",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--gossip-weight") && !err.contains("--mixing"),
        "{err}"
    );
    // A config-only key is named as the key in its file; -1 and NaN are refused.
    for v in ["-1.0", "nan"] {
        let toml = dir.join("c.toml");
        std::fs::write(&toml, format!("warmup_epochs = {v}\n")).unwrap();
        let (code, _, err) = cli_run(&out, &["--config", toml.to_str().unwrap()]);
        assert_eq!(code, 2, "{v}: {err}");
        assert!(
            err.contains(&format!("`warmup_epochs` in {}", toml.display())),
            "{v}: {err}"
        );
    }
    // Two values for one parameter, and a length that would never finish.
    let (code, _, err) = cli_run(&out, &["--partition", "dirichlet:0.5", "--alpha", "5"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--alpha") && err.contains("dirichlet:0.5"),
        "{err}"
    );
    let (code, _, err) = cli(&[
        "--backend",
        "reference",
        "--agents",
        "4",
        "--model",
        "mlp:64-16-10",
        "--epochs",
        "1e308",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--epochs"), "{err}");
    // Settings the algorithm does not read: one warning each, the run goes on.
    let (code, _, err) = cli_run(&out, &["--algo", "dsgd", "--qgm-mu", "0.5"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: --qgm-mu is not read by dsgd"),
        "{err}"
    );
    let (code, _, err) = cli_run(&out, &["--algo", "allreduce", "--gossip-weight", "0.2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: --gossip-weight is not read by allreduce"),
        "{err}"
    );
    let (code, _, err) = cli_run(&out, &["--data-dir", "/nowhere"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: --data-dir is not read"), "{err}");
    // An explicit adapter request that cannot be met is an error naming what exists.
    for backend in ["auto", "gpu"] {
        let (code, _, err) = cli(&[
            "--backend",
            backend,
            "--adapter",
            "NoSuchGPU",
            "--agents",
            "4",
            "--steps",
            "2",
            "--model",
            "mlp:64-16-10",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_ne!(code, 0, "{backend}: {err}");
        assert!(
            err.contains("no GPU adapter matches --adapter NoSuchGPU; adapters here:"),
            "{backend}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_names_the_differing_setting_and_may_extend_the_run() {
    let dir = std::env::temp_dir().join(format!("swarmgrad-extend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let (code, _, err) = cli_run(&a, &["--checkpoint-every", "6"]);
    assert_eq!(code, 0, "{err}");
    let ck = a.join("checkpoint.bin");
    let ck = ck.to_str().unwrap();
    let (code, _, err) = cli_run(&b, &["--resume", ck, "--lr", "0.2"]);
    assert_ne!(code, 0);
    assert!(err.contains("lr: 0.1 in the checkpoint, 0.2 now"), "{err}");
    // A larger --steps continues the same run: as if it had been 18 steps from the start.
    let (code, _, err) = cli_run(&b, &["--resume", ck, "--steps", "18"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_run(&c, &["--steps", "18"]);
    assert_eq!(code, 0, "{err}");
    let cut = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(10).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(cut(&b), cut(&c));
    assert_eq!(cut(&c).len(), 1 + 4, "rows at 0, 6, 12, 18");
    // Shortening is refused.
    let (code, _, err) = cli_run(&b, &["--resume", ck, "--steps", "8"]);
    assert_ne!(code, 0);
    assert!(err.contains("not shorten"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
