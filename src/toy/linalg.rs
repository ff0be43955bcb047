//! Small dense linear algebra in f64 for the toy problems (row-major d×d matrices).

use super::*;

pub(super) fn rng(seed: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(TOY_STREAM);
    r
}

pub(super) fn mean_matrix(h: &[Vec<f64>], d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for hi in h {
        for (a, b) in m.iter_mut().zip(hi) {
            *a += b;
        }
    }
    m.iter_mut().for_each(|v| *v /= h.len() as f64);
    m
}

/// AᵀA of a d×d row-major matrix.
pub(super) fn ata(a: &[f64], d: usize) -> Vec<f64> {
    let mut h = vec![0.0; d * d];
    for r in 0..d {
        for c in 0..d {
            h[r * d + c] = (0..d).map(|k| a[k * d + r] * a[k * d + c]).sum();
        }
    }
    h
}

/// Aᵀb.
pub(super) fn atb(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    (0..d)
        .map(|r| (0..d).map(|k| a[k * d + r] * b[k]).sum())
        .collect()
}

/// A x.
pub(super) fn ax(a: &[f64], x: &[f64], d: usize) -> Vec<f64> {
    (0..d)
        .map(|r| (0..d).map(|k| a[r * d + k] * x[k]).sum())
        .collect()
}

/// Solves H x = c for symmetric positive definite H (None if it is not).
pub(super) fn cholesky_solve(h: &[f64], c: &[f64], d: usize) -> Option<Vec<f64>> {
    let l = nalgebra::Cholesky::new(nalgebra::DMatrix::from_row_slice(d, d, h))?;
    let x = l.solve(&nalgebra::DVector::from_column_slice(c));
    x.iter()
        .all(|v| v.is_finite())
        .then(|| x.as_slice().to_vec())
}

/// Singular value decomposition A = U diag(σ) Vᵀ of a d×d row-major matrix (nalgebra), singular
/// values in descending order (as torch.svd). Returns (U, σ, V), U and V row-major; None if it
/// does not converge.
pub(super) fn svd(a: &[f64], d: usize) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let m = nalgebra::DMatrix::from_row_slice(d, d, a);
    let s = nalgebra::SVD::try_new(m, true, true, f64::EPSILON, 100_000)?;
    let (u, v_t) = (s.u?, s.v_t?);
    // nalgebra is column-major: the row-major U is Uᵀ's storage, the row-major V is Vᵀ's.
    let u = u.transpose().as_slice().to_vec();
    Some((
        u,
        s.singular_values.as_slice().to_vec(),
        v_t.as_slice().to_vec(),
    ))
}
