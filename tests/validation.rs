//! Host-side validation shared by the backends: every request that reads indices (sample
//! indices, job lists, labels, CSR structure) is checked on the host from the values the host
//! wrote, so the CPU reference and every GPU backend reject the same bad requests with the same
//! typed error, before any work runs (the GPU kernels would otherwise clamp the index). Also: a
//! backend reused for many training runs holds the same buffers after each.

mod common;

use common::Target;

use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::model::DenseLayer;
use swarmgrad::sparse::Csr;
use swarmgrad::train::{Algorithm, TrainConfig, Trainer};
use swarmgrad::{Error, Result};

fn try_upload_u32(be: &mut dyn Backend, data: &[u32]) -> Result<Buf> {
    let b = be.alloc(BufKind::U32, data.len(), "test.u32")?;
    be.write_u32(b, 0, data)?;
    Ok(b)
}

/// A case builds its buffers and issues one request; it returns the request's outcome.
type Case = fn(&mut dyn Backend) -> Result<Result<()>>;

/// 6 samples of 2 features with labels below 3 classes, and 2×2 gathered rows.
fn gather_case(be: &mut dyn Backend, index: &[u32], labels: &[u32]) -> Result<(Gather, Buf)> {
    let data = be.upload_u8(&[7; 12], "data")?;
    let labels = try_upload_u32(be, labels)?;
    let index = try_upload_u32(be, index)?;
    let x = be.alloc(BufKind::F32, index.len * 2, "x")?;
    let y = be.alloc(BufKind::U32, index.len, "y")?;
    let op = Gather {
        data,
        labels,
        index,
        rows: index.len,
        dim: 2,
        norm: ChannelNorm::single(0.0, 1.0),
        x,
        y,
    };
    Ok((op, y))
}

/// A 3 → 2 layer over 2 agents' slabs of 8 floats, batch 2, with the given job list.
fn dense_case(be: &mut dyn Backend, jobs: &[(u32, u32)], by_data: bool) -> Result<DenseForward> {
    let layer = DenseLayer {
        in_dim: 3,
        out_dim: 2,
        w_off: 0,
        b_off: 6,
        relu: false,
    };
    let flat: Vec<u32> = jobs.iter().flat_map(|&(m, d)| [m, d]).collect();
    let shape = DenseJobs {
        jobs: try_upload_u32(be, &flat)?,
        n_jobs: jobs.len(),
        batch: 2,
        layer,
        stride: 8,
        input_blocks: if by_data {
            InputBlocks::ByData
        } else {
            InputBlocks::ByJob
        },
    };
    Ok(DenseForward {
        shape,
        params: be.alloc(BufKind::F32, 2 * 8, "params")?,
        // Two input blocks of batch × in_dim.
        input: be.alloc(BufKind::F32, 2 * 2 * 3, "input")?,
        output: be.alloc(BufKind::F32, jobs.len() * 2 * 2, "output")?,
    })
}

/// Softmax over 2 jobs of batch 2 and 3 classes with the given labels (4 rows: 2 data agents).
fn xent_case(be: &mut dyn Backend, jobs: &[u32], labels: Buf) -> Result<SoftmaxXent> {
    Ok(SoftmaxXent {
        jobs: try_upload_u32(be, jobs)?,
        n_jobs: 2,
        batch: 2,
        classes: 3,
        logits: be.alloc(BufKind::F32, 2 * 2 * 3, "logits")?,
        labels,
        dlogits: be.alloc(BufKind::F32, 2 * 2 * 3, "dlogits")?,
        stats: be.alloc(BufKind::F32, 2 * 2 * 2, "stats")?,
    })
}

/// A 2×2 mix whose structure buffers are written directly (not through `write_csr`).
fn mix_case(be: &mut dyn Backend, row_ptr: &[u32], col: &[u32]) -> Result<Mix> {
    let csr = CsrBufs {
        row_ptr: try_upload_u32(be, row_ptr)?,
        col: try_upload_u32(be, col)?,
        weight: be.alloc(BufKind::F32, col.len(), "weight")?,
        rows: 2,
        n_cols: 2,
    };
    Ok(Mix {
        csr,
        input: be.alloc(BufKind::F32, 2 * 4, "in")?,
        in_offset: 0,
        in_stride: 4,
        output: be.alloc(BufKind::F32, 2 * 4, "out")?,
        out_offset: 0,
        out_stride: 4,
        len: 4,
    })
}

const LABELS: [u32; 6] = [0, 1, 2, 0, 1, 2];

/// Each bad request with the op and a phrase its error must contain, then a good one.
fn cases() -> Vec<(&'static str, &'static str, &'static str, Case)> {
    vec![
        (
            "sample index past the dataset",
            "gather",
            "sample index 6",
            |be| {
                let (op, _) = gather_case(be, &[0, 5, 6, 1], &LABELS)?;
                Ok(be.gather(&op))
            },
        ),
        (
            "job's model agent past the slabs",
            "dense_forward",
            "job 1 = (2, 0)",
            |be| {
                let op = dense_case(be, &[(0, 0), (2, 0)], false)?;
                Ok(be.dense_forward(&op))
            },
        ),
        (
            "job's data agent past the input blocks",
            "dense_forward",
            "job 0 = (1, 2)",
            |be| {
                let op = dense_case(be, &[(1, 2)], true)?;
                Ok(be.dense_forward(&op))
            },
        ),
        (
            "job's data agent past the input blocks (weights)",
            "dense_backward_weights",
            "job 0 = (0, 5)",
            |be| {
                let f = dense_case(be, &[(0, 5)], true)?;
                let op = DenseBackwardWeights {
                    shape: f.shape,
                    dz: f.output,
                    input: f.input,
                    grads: be.alloc(BufKind::F32, 8, "grads")?,
                };
                Ok(be.dense_backward_weights(&op))
            },
        ),
        (
            "label past the classes",
            "softmax_xent",
            "label 3 of row 2",
            |be| {
                let labels = try_upload_u32(be, &[0, 1, 3, 2])?;
                let op = xent_case(be, &[0, 0, 1, 1], labels)?;
                Ok(be.softmax_xent(&op))
            },
        ),
        (
            "gathered label past the classes",
            "softmax_xent",
            "label 7 of row 1",
            |be| {
                // The gather itself is valid; the labels it copies are not, and the host knows them.
                let (g, y) = gather_case(be, &[0, 4, 1, 2], &[0, 1, 2, 0, 7, 2])?;
                be.gather(&g)?;
                let op = xent_case(be, &[0, 0, 1, 1], y)?;
                Ok(be.softmax_xent(&op))
            },
        ),
        (
            "job's data agent without labels",
            "softmax_xent",
            "data agent 2 has no labels",
            |be| {
                let labels = try_upload_u32(be, &[0, 1, 2, 0])?;
                let op = xent_case(be, &[0, 0, 1, 2], labels)?;
                Ok(be.softmax_xent(&op))
            },
        ),
        (
            "CSR column past the columns",
            "mix",
            "column 2 of entry 1",
            |be| {
                let op = mix_case(be, &[0, 2, 3], &[0, 2, 1])?;
                Ok(be.mix(&op))
            },
        ),
        (
            "CSR row offsets decreasing",
            "mix",
            "row offsets decrease",
            |be| {
                let op = mix_case(be, &[0, 3, 2], &[0, 1, 1])?;
                Ok(be.mix(&op))
            },
        ),
        (
            "CSR row offsets past the entries",
            "mix",
            "row offsets decrease or pass",
            |be| {
                let op = mix_case(be, &[0, 1, 4], &[0, 1, 1])?;
                Ok(be.mix(&op))
            },
        ),
    ]
}

target_tests!([reference, gpu, native] every_backend_rejects_the_same_bad_indices_with_the_same_error);
fn every_backend_rejects_the_same_bad_indices_with_the_same_error(t: &Target) {
    let mut want: Vec<String> = Vec::new();
    // The reference first: its messages are the ones every backend must give.
    let both = [
        Box::new(ReferenceBackend::new()) as Box<dyn Backend>,
        t.backend(),
    ];
    for (k, mut be) in both.into_iter().enumerate() {
        let name = be.describe();
        for (i, (what, op, phrase, case)) in cases().into_iter().enumerate() {
            let got = case(be.as_mut()).unwrap_or_else(|e| panic!("{what} on {name}: set-up {e}"));
            let msg = match got {
                Err(e @ Error::InvalidOp { op: o, .. }) if o == op => e.to_string(),
                other => panic!("{what} on {name}: expected InvalidOp from {op}, got {other:?}"),
            };
            assert!(msg.contains(phrase), "{what} on {name}: {msg}");
            if k == 0 {
                want.push(msg);
            } else {
                assert_eq!(msg, want[i], "{what}: {name} and the reference differ");
            }
        }
        // Nothing bad was recorded: the same requests with good indices run, and a flush finds
        // no device error.
        let (g, _) = gather_case(be.as_mut(), &[0, 5, 3, 1], &LABELS).unwrap();
        be.gather(&g).unwrap();
        let op = dense_case(be.as_mut(), &[(1, 1), (0, 1)], true).unwrap();
        be.dense_forward(&op).unwrap();
        let labels = try_upload_u32(be.as_mut(), &[0, 1, 2, 2]).unwrap();
        let op = xent_case(be.as_mut(), &[0, 1, 1, 0], labels).unwrap();
        be.softmax_xent(&op).unwrap();
        let op = mix_case(be.as_mut(), &[0, 2, 3], &[0, 1, 1]).unwrap();
        be.mix(&op).unwrap();
        be.flush().unwrap();
        // Overwriting a bad index with a good one makes the request valid again.
        let (g, _) = gather_case(be.as_mut(), &[0, 9, 3, 1], &LABELS).unwrap();
        assert!(be.gather(&g).is_err(), "{name}");
        be.write_u32(g.index, 1, &[2]).unwrap();
        be.gather(&g).unwrap();
        be.flush().unwrap();
    }
}

target_tests!([reference, gpu, native] write_csr_rejects_columns_before_upload_on_every_backend);
fn write_csr_rejects_columns_before_upload_on_every_backend(t: &Target) {
    let mut be = t.backend();
    let bad = Csr::from_rows(2, &[vec![(0, 0.5), (5, 0.5)], vec![(1, 1.0)]]);
    match be.upload_csr(&bad, "w") {
        Err(Error::InvalidOp {
            op: "write_csr",
            reason,
        }) => {
            assert!(reason.contains("column 5"), "{reason}")
        }
        other => panic!("{}: expected InvalidOp, got {other:?}", be.describe()),
    }
}

/// A tiny run: 4 agents, `mlp:16-8-10`, 3 steps, 400 training samples.
fn tiny_run() -> TrainConfig {
    TrainConfig {
        algo: Algorithm::Dsgd,
        agents: 4,
        model: Some("mlp:16-8-10".into()),
        batch: 8,
        momentum: 0.9,
        steps: Some(3),
        epochs: None,
        eval_every: 3,
        synthetic_train: 400,
        synthetic_test: 100,
        synthetic_dim: 16,
        ..Default::default()
    }
}

target_tests!([reference, gpu, native] a_reused_backend_holds_the_same_buffers_after_every_run);
fn a_reused_backend_holds_the_same_buffers_after_every_run(t: &Target) {
    let config = tiny_run();
    let data = config.load_data().unwrap();
    let mut be = t.backend();
    let name = be.describe();
    // A buffer the caller owns survives the runs.
    let own = be.alloc(BufKind::F32, 5, "caller's").unwrap();
    be.write_f32(own, 0, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let before = be.live_buffers();
    let mut after = Vec::new();
    for algo in [
        Algorithm::Dsgd,
        Algorithm::Qgm,
        Algorithm::Dsgd,
        Algorithm::RelaySgd,
    ] {
        let c = TrainConfig {
            algo,
            ..config.clone()
        };
        let mut t = Trainer::with_data(c, be, &data.train, &data.test).unwrap();
        assert!(t.run(|_, _, _| {}).is_ok(), "{name}: {algo}");
        be = t.into_backend();
        after.push(be.live_buffers());
    }
    assert!(
        after.iter().all(|a| *a == before),
        "{name}: {before:?} then {after:?}"
    );
    assert_eq!(
        be.read_f32(own).unwrap(),
        [1.0, 2.0, 3.0, 4.0, 5.0],
        "{name}"
    );
}

#[test]
fn a_model_with_fewer_outputs_than_the_test_classes_is_rejected() {
    let config = TrainConfig {
        model: Some("mlp:16-8-5".into()),
        ..tiny_run()
    };
    let data = config.load_data().unwrap();
    match Trainer::with_data(
        config,
        Box::new(ReferenceBackend::new()),
        &data.train,
        &data.test,
    ) {
        Err(Error::BadParameter { name, reason }) => {
            assert_eq!(name, "model");
            assert!(reason.contains("classes"), "{reason}");
        }
        Err(e) => panic!("expected BadParameter(model), got {e}"),
        Ok(_) => panic!("5 outputs for 10 classes accepted"),
    }
}
