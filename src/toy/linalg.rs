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
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = h[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (c[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    Some(x)
}

/// Singular value decomposition A = U diag(σ) Vᵀ of a d×d row-major matrix by one-sided Jacobi,
/// singular values in descending order (as torch.svd). Returns (U, σ, V), U and V row-major.
pub(super) fn svd(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut u = a.to_vec();
    let mut v = eye(d);
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..d {
            for q in p + 1..d {
                let (mut al, mut be, mut ga) = (0.0, 0.0, 0.0);
                for r in 0..d {
                    let (x, y) = (u[r * d + p], u[r * d + q]);
                    al += x * x;
                    be += y * y;
                    ga += x * y;
                }
                if ga.abs() <= 1e-15 * (al * be).sqrt() || ga == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (be - al) / (2.0 * ga);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                for m in [&mut u, &mut v] {
                    for r in 0..d {
                        let (x, y) = (m[r * d + p], m[r * d + q]);
                        m[r * d + p] = cs * x - sn * y;
                        m[r * d + q] = sn * x + cs * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let sig: Vec<f64> = (0..d)
        .map(|k| (0..d).map(|r| u[r * d + k].powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut idx: Vec<usize> = (0..d).collect();
    idx.sort_by(|&i, &j| sig[j].total_cmp(&sig[i]));
    let mut uo = vec![0.0; d * d];
    let mut vo = vec![0.0; d * d];
    let mut so = vec![0.0; d];
    for (k, &j) in idx.iter().enumerate() {
        so[k] = sig[j];
        for r in 0..d {
            uo[r * d + k] = if sig[j] > 0.0 {
                u[r * d + j] / sig[j]
            } else {
                0.0
            };
            vo[r * d + k] = v[r * d + j];
        }
    }
    (uo, so, vo)
}
