//! The CPU reference's gradients against central finite differences, in f64.
//!
//! For f64 with step h = 1e-6, the central difference has truncation error O(h²·f''') ≈ 1e-12
//! and rounding error O(ε₆₄/h) ≈ 1e-10, so analytic and numeric gradients must agree to about
//! 1e-7 relative to the gradient scale; we allow 1e-6. Inputs are random, so no ReLU sits
//! within h of its kink (checked: the pre-activations are printed if the test ever fails).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::*;
use swarmgrad::model::pass::{Minibatch, Pass};
use swarmgrad::model::Model;

/// Mean loss of every job and the gradient slabs, for parameters `p` (agent-major).
fn loss_and_grad(
    model: &Model,
    p: &[f64],
    jobs: &[(usize, usize)],
    x: &[f32],
    y: &[u32],
    batch: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut be = ReferenceBackend::new();
    let params = be.alloc(BufKind::F32, p.len(), "p").unwrap();
    // The reference stores f64; write_f32 would round, so write through a f64-exact path:
    // every test value is a multiple of 2^-20 so it is exact in f32 as well.
    let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
    assert!(
        p.iter().zip(&p32).all(|(a, b)| *a == *b as f64),
        "test parameters must be f32-exact"
    );
    be.write_f32(params, 0, &p32).unwrap();
    let agents = y.len() / batch;
    let mb = Minibatch::new(&mut be, agents, batch, model.input_dim()).unwrap();
    be.write_f32(mb.x, 0, x).unwrap();
    be.write_u32(mb.y, 0, y).unwrap();
    let pass = Pass::new(&mut be, model, batch, jobs).unwrap();
    let grads = be
        .alloc(BufKind::F32, jobs.len() * model.stride(), "g")
        .unwrap();
    pass.record_forward(&mut be, params, &mb).unwrap();
    pass.record_backward(&mut be, params, &mb, grads).unwrap();
    let stats = be.read_f32(pass.job_stats).unwrap();
    let loss = stats[..jobs.len()]
        .iter()
        .map(|s| s / batch as f64)
        .collect();
    (loss, be.read_f32(grads).unwrap())
}

/// A dyadic random value in [-1, 1): exact in f32, so perturbations are the only rounding.
fn dyadic(rng: &mut ChaCha8Rng) -> f64 {
    (rng.random_range(-(1 << 20)..(1 << 20)) as f64) / (1 << 20) as f64
}

#[test]
fn backward_matches_finite_differences() {
    let model = Model::mlp(&[6, 5, 4, 3]).unwrap();
    let (batch, agents) = (4, 3);
    let jobs = [(2, 0), (0, 1), (1, 1)];
    let stride = model.stride();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut p: Vec<f64> = (0..agents * stride).map(|_| dyadic(&mut rng)).collect();
    let x: Vec<f32> = (0..agents * batch * 6)
        .map(|_| dyadic(&mut rng) as f32)
        .collect();
    let y: Vec<u32> = (0..agents * batch)
        .map(|_| rng.random_range(0..3))
        .collect();
    let (_, grads) = loss_and_grad(&model, &p, &jobs, &x, &y, batch);
    // Perturbation must stay f32-exact: h = 2^-20 on values that are multiples of 2^-20.
    let h = 1.0 / (1 << 20) as f64;
    let mut checked = 0;
    for (j, &(m, _)) in jobs.iter().enumerate() {
        for k in 0..model.n_params() {
            let at = m * stride + k;
            let orig = p[at];
            p[at] = orig + h;
            let (lp, _) = loss_and_grad(&model, &p, &jobs, &x, &y, batch);
            p[at] = orig - h;
            let (lm, _) = loss_and_grad(&model, &p, &jobs, &x, &y, batch);
            p[at] = orig;
            let numeric = (lp[j] - lm[j]) / (2.0 * h);
            let analytic = grads[j * stride + k];
            assert!(
                (numeric - analytic).abs() <= 1e-6 * analytic.abs().max(1e-2),
                "job {j} param {k}: finite difference {numeric} vs backward {analytic}"
            );
            checked += 1;
        }
    }
    // Padding slots of the gradient slabs are never written.
    for j in 0..jobs.len() {
        assert!(grads[j * stride + model.n_params()..(j + 1) * stride]
            .iter()
            .all(|&g| g == 0.0));
    }
    assert_eq!(checked, jobs.len() * model.n_params());
}

#[test]
fn loss_is_log_classes_for_a_zero_model() {
    let model = Model::mlp(&[3, 4]).unwrap();
    let p = vec![0.0; model.stride()];
    let x: Vec<f32> = vec![0.5; 2 * 3];
    let (loss, grads) = loss_and_grad(&model, &p, &[(0, 0)], &x, &[1, 3], 2);
    assert!((loss[0] - 4f64.ln()).abs() < 1e-12);
    // Bias gradient = mean(softmax - onehot) = 1/4 - 1/2 for the two labelled classes.
    let b = &grads[model.dense_layers()[0].b_off..][..4];
    assert!(
        (b[0] - 0.25).abs() < 1e-12 && (b[1] + 0.25).abs() < 1e-12 && (b[3] + 0.25).abs() < 1e-12
    );
}

#[test]
fn cpu_reference_keeps_f64_mixing_weights_and_coefficients() {
    use swarmgrad::sparse::Csr;
    let mut be = ReferenceBackend::new();
    let third = 1.0 / 3.0;
    let w = Csr::from_rows(3, &[vec![(0, third), (1, third), (2, third)]]);
    let w = be.upload_csr(&w, "w").unwrap();
    let x = be.alloc(BufKind::F32, 3, "x").unwrap();
    be.write_f64(x, 0, &[0.1, 0.2, 0.3]).unwrap();
    let y = be.alloc(BufKind::F32, 1, "y").unwrap();
    be.mix(&Mix {
        csr: w,
        input: x,
        in_offset: 0,
        in_stride: 1,
        output: y,
        out_offset: 0,
        out_stride: 1,
        len: 1,
    })
    .unwrap();
    // Exactly the f64 computation; f32-rounded weights would be off by ~1e-8.
    assert_eq!(
        be.read_f32(y).unwrap()[0],
        third * 0.1 + third * 0.2 + third * 0.3
    );
    assert_eq!(be.read_f32(x).unwrap(), vec![0.1, 0.2, 0.3]);
}
