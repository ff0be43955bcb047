//! CGA's per-tensor quadratic program (ALGORITHMS.md §5.9), solved on the host in f64 by
//! enumerating active sets:
//!
//! v = argmin_{v_j ≥ ½} ‖a + Σ_j v_j b_j‖², from the Gram entries P = BBᵀ and B·a only.
//!
//! For each active set S (v_S = ½, free set F) the candidate solves
//! (P_FF + 1e-12·I) v_F = −(B_F a + ½·P_FS·1); it is accepted when the KKT conditions hold:
//! v_F ≥ ½ and (B a + P v)_S ≥ 0. Among accepted candidates (several only when P is
//! degenerate) the lowest objective wins; when none is accepted the caller's previous v is
//! returned. Rows whose cross-gradient is all zero (P_jj = 0) take no part and keep ½.

/// The lower bound of every weight.
pub const CGA_V_MIN: f64 = 0.5;

/// Most rows the enumeration accepts (2^t active sets).
pub const CGA_MAX_ROWS: usize = 16;

/// The weights v of one tensor's QP from `p` (t × t, row-major BBᵀ) and `ba` (B·a, length t);
/// `previous` (length t) is returned when no active set passes the KKT test. None when the
/// sizes disagree or t exceeds [`CGA_MAX_ROWS`].
pub fn cga_qp(p: &[f64], ba: &[f64], previous: &[f64]) -> Option<Vec<f64>> {
    let t = ba.len();
    if p.len() != t * t || previous.len() != t || t > CGA_MAX_ROWS {
        return None;
    }
    let rows: Vec<usize> = (0..t).filter(|&j| p[j * t + j] > 0.0).collect();
    let r = rows.len();
    let pp = |i: usize, j: usize| p[rows[i] * t + rows[j]] + if i == j { 1e-12 } else { 0.0 };
    let q: Vec<f64> = rows.iter().map(|&j| ba[j]).collect();
    // Scale of the KKT tolerances: the largest Gram entry.
    let scale = (0..r)
        .map(|i| pp(i, i).abs())
        .chain(q.iter().map(|v| v.abs()))
        .fold(0.0, f64::max);
    let tol = 1e-9 * scale.max(f64::MIN_POSITIVE);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for mask in 0u32..(1 << r) {
        // Bit k set: row k is active (v_k = ½).
        let free: Vec<usize> = (0..r).filter(|k| mask & (1 << k) == 0).collect();
        let mut v = vec![CGA_V_MIN; r];
        if !free.is_empty() {
            let m = free.len();
            let mut a = vec![0.0; m * m];
            let mut rhs = vec![0.0; m];
            for (x, &i) in free.iter().enumerate() {
                for (y, &j) in free.iter().enumerate() {
                    a[x * m + y] = pp(i, j);
                }
                let active: f64 = (0..r)
                    .filter(|k| mask & (1 << k) != 0)
                    .map(|k| pp(i, k))
                    .sum();
                rhs[x] = -(q[i] + CGA_V_MIN * active);
            }
            let Some(sol) = solve(&mut a, &mut rhs, m) else {
                continue;
            };
            for (x, &i) in free.iter().enumerate() {
                v[i] = sol[x];
            }
        }
        // KKT: free weights at or above ½, active rows' gradient non-negative.
        let grad = |k: usize| q[k] + (0..r).map(|l| pp(k, l) * v[l]).sum::<f64>();
        let ok = free.iter().all(|&i| v[i] >= CGA_V_MIN - 1e-9)
            && (0..r)
                .filter(|k| mask & (1 << k) != 0)
                .all(|k| grad(k) >= -tol);
        if !ok {
            continue;
        }
        for x in v.iter_mut() {
            *x = x.max(CGA_V_MIN);
        }
        let obj = objective(&v, r, &pp, &q);
        if best.as_ref().is_none_or(|(b, _)| obj < *b) {
            best = Some((obj, v));
        }
    }
    let Some((_, v)) = best else {
        return Some(previous.to_vec());
    };
    let mut out = vec![CGA_V_MIN; t];
    for (k, &j) in rows.iter().enumerate() {
        out[j] = v[k];
    }
    Some(out)
}

/// ‖a + Bᵀv‖² − ‖a‖² = vᵀPv + 2 v·(B a).
fn objective(v: &[f64], r: usize, pp: &impl Fn(usize, usize) -> f64, q: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..r {
        s += 2.0 * v[i] * q[i];
        for j in 0..r {
            s += v[i] * pp(i, j) * v[j];
        }
    }
    s
}

/// Gaussian elimination with partial pivoting of an m × m system (None when singular).
fn solve(a: &mut [f64], b: &mut [f64], m: usize) -> Option<Vec<f64>> {
    for c in 0..m {
        let piv = (c..m).max_by(|&x, &y| a[x * m + c].abs().total_cmp(&a[y * m + c].abs()))?;
        if a[piv * m + c].abs() < 1e-300 {
            return None;
        }
        if piv != c {
            for k in 0..m {
                a.swap(c * m + k, piv * m + k);
            }
            b.swap(c, piv);
        }
        for r in c + 1..m {
            let f = a[r * m + c] / a[c * m + c];
            for k in c..m {
                a[r * m + k] -= f * a[c * m + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; m];
    for c in (0..m).rev() {
        let s: f64 = (c + 1..m).map(|k| a[c * m + k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c * m + c];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P = BBᵀ and B·a of rows `b` and vector `a`.
    fn gram(a: &[f64], b: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let t = b.len();
        let mut p = vec![0.0; t * t];
        for i in 0..t {
            for j in 0..t {
                p[i * t + j] = dot(&b[i], &b[j]);
            }
        }
        (p, b.iter().map(|r| dot(r, a)).collect())
    }

    fn combine(a: &[f64], b: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
        (0..a.len())
            .map(|k| a[k] + b.iter().zip(v).map(|(r, w)| w * r[k]).sum::<f64>())
            .collect()
    }

    /// g_self, cross-gradients, v, ĝ.
    type Row<'a> = (&'a [f64], &'a [&'a [f64]], &'a [f64], &'a [f64]);

    #[test]
    fn the_reference_vectors_reproduce() {
        // §5.9's table, π = 1/3: a = π·g_self, b_j = π·C_j.
        let pi = 1.0 / 3.0;
        let cases: [Row; 4] = [
            (
                &[1.0, 2.0, 0.0],
                &[&[1.0, 1.0, 0.0], &[0.0, 2.0, 1.0]],
                &[0.5, 0.5],
                &[0.5, 1.16667, 0.16667],
            ),
            (
                &[1.0, 0.0],
                &[&[-1.0, 0.5], &[0.0, 1.0]],
                &[0.6, 0.5],
                &[0.13333, 0.26667],
            ),
            (
                &[1.0, 0.0],
                &[&[-0.2, 1.0], &[-0.2, -1.0]],
                &[2.5, 2.5],
                &[0.0, 0.0],
            ),
            (
                &[1.0, 0.0, 0.0],
                &[&[-1.0, 0.0, 0.0]],
                &[1.0],
                &[0.0, 0.0, 0.0],
            ),
        ];
        for (g, cross, want_v, want_g) in cases {
            let a: Vec<f64> = g.iter().map(|x| pi * x).collect();
            let b: Vec<Vec<f64>> = cross
                .iter()
                .map(|r| r.iter().map(|x| pi * x).collect())
                .collect();
            let (p, ba) = gram(&a, &b);
            let v = cga_qp(&p, &ba, &vec![0.5; b.len()]).unwrap();
            let gh = combine(&a, &b, &v);
            for (x, y) in v.iter().zip(want_v) {
                assert!((x - y).abs() < 1e-6, "{g:?}: v {v:?} vs {want_v:?}");
            }
            for (x, y) in gh.iter().zip(want_g) {
                assert!((x - y).abs() < 1e-5, "{g:?}: ĝ {gh:?} vs {want_g:?}");
            }
        }
    }

    #[test]
    fn kkt_holds_and_the_objective_is_the_brute_force_minimum() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for case in 0..400 {
            let (t, m) = (rng.random_range(1..=4), rng.random_range(1..=6));
            let a: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<Vec<f64>> = (0..t)
                .map(|_| (0..m).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            let (p, ba) = gram(&a, &b);
            let v = cga_qp(&p, &ba, &vec![0.5; t]).unwrap();
            let gh = combine(&a, &b, &v);
            // §8.2.10: v ≥ ½; b_j·ĝ = 0 where v_j > ½, ≥ 0 where v_j = ½.
            for j in 0..t {
                let bg: f64 = b[j].iter().zip(&gh).map(|(x, y)| x * y).sum();
                assert!(v[j] >= 0.5, "case {case}: {v:?}");
                if v[j] > 0.5 + 1e-9 {
                    assert!(bg.abs() < 1e-6, "case {case}: b{j}·ĝ = {bg:e}, v {v:?}");
                } else {
                    assert!(bg > -1e-6, "case {case}: b{j}·ĝ = {bg:e}, v {v:?}");
                }
            }
            // Brute force: the least objective over every active set's face minimiser that is
            // feasible (the convex QP's optimum lies in one face), by least squares on B.
            let norm = |g: &[f64]| g.iter().map(|x| x * x).sum::<f64>();
            let got = norm(&gh);
            let mut best = f64::INFINITY;
            for mask in 0u32..(1 << t) {
                let free: Vec<usize> = (0..t).filter(|k| mask & (1 << k) == 0).collect();
                let mut w = vec![0.5; t];
                if !free.is_empty() {
                    let f = free.len();
                    let mut aa = vec![0.0; f * f];
                    let mut rhs = vec![0.0; f];
                    let base = combine(
                        &a,
                        &b,
                        &(0..t)
                            .map(|k| if free.contains(&k) { 0.0 } else { 0.5 })
                            .collect::<Vec<_>>(),
                    );
                    for (x, &i) in free.iter().enumerate() {
                        for (y, &j) in free.iter().enumerate() {
                            aa[x * f + y] = p[i * t + j];
                        }
                        rhs[x] = -b[i].iter().zip(&base).map(|(p, q)| p * q).sum::<f64>();
                    }
                    let Some(s) = solve(&mut aa, &mut rhs, f) else {
                        continue;
                    };
                    for (x, &i) in free.iter().enumerate() {
                        w[i] = s[x];
                    }
                }
                if w.iter().all(|x| *x >= 0.5 - 1e-12) {
                    best = best.min(norm(&combine(&a, &b, &w)));
                }
            }
            assert!(
                got <= best + 1e-9,
                "case {case}: {got} vs brute force {best}"
            );
            // And no random feasible point does better.
            for _ in 0..20 {
                let w: Vec<f64> = (0..t).map(|_| 0.5 + rng.random_range(0.0..3.0)).collect();
                assert!(got <= norm(&combine(&a, &b, &w)) + 1e-9, "case {case}");
            }
        }
    }

    #[test]
    fn zero_rows_keep_one_half_and_bad_sizes_are_refused() {
        let (p, ba) = (vec![0.0, 0.0, 0.0, 2.0], vec![0.0, -2.0]);
        // Row 0 is all zero: it keeps ½; row 1 alone: v = 2/2 = 1 (up to the 1e-12 ridge).
        let v = cga_qp(&p, &ba, &[0.5, 0.5]).unwrap();
        assert_eq!(v[0], 0.5);
        assert!((v[1] - 1.0).abs() < 1e-9, "{v:?}");
        assert!(cga_qp(&p, &ba, &[0.5]).is_none());
    }
}
