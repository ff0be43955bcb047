//! Spectral facts of mixing matrices and Laplacians: dense symmetric f64 eigen-decomposition
//! (nalgebra), spectral gap, λ_min, graph Laplacians and algebraic connectivity.

use crate::sparse::Csr;

use super::adjacency::Graph;
use super::error::{GraphError, Result};

/// Maximum number of QR iterations of the eigen-solver before `GraphError::NoConvergence`
/// (it needs a few per eigenvalue).
pub const MAX_EIGEN_ITERATIONS: usize = 100_000;

/// Eigen-decomposition of a symmetric matrix: ascending eigenvalues with unit eigenvectors.
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetricEigen {
    /// Eigenvalues in ascending order.
    pub values: Vec<f64>,
    /// `vectors[k]` is a unit eigenvector of `values[k]` (mutually orthogonal).
    pub vectors: Vec<Vec<f64>>,
}

/// Checks that a dense matrix is square with finite entries; returns its size.
pub fn check_square(a: &[Vec<f64>]) -> Result<usize> {
    let n = a.len();
    for (i, row) in a.iter().enumerate() {
        if row.len() != n {
            return Err(GraphError::NotSquare {
                rows: n,
                cols: row.len(),
            });
        }
        if let Some((j, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(GraphError::NonFinite {
                row: i,
                col: j,
                value,
            });
        }
    }
    Ok(n)
}

/// Checks that a square dense matrix has a_ij = a_ji within `tol`.
pub(crate) fn check_dense_symmetric(a: &[Vec<f64>], tol: f64) -> Result<()> {
    for (i, row) in a.iter().enumerate() {
        for (j, &x) in row.iter().enumerate().skip(i + 1) {
            let y = a[j][i];
            if (x - y).abs() > tol {
                return Err(GraphError::NotSymmetric {
                    row: i,
                    col: j,
                    a: x,
                    b: y,
                });
            }
        }
    }
    Ok(())
}

/// The dense form of a square CSR matrix (errors if it is not square).
pub fn dense_square(w: &Csr) -> Result<Vec<Vec<f64>>> {
    if w.n_rows() != w.n_cols {
        return Err(GraphError::NotSquare {
            rows: w.n_rows(),
            cols: w.n_cols,
        });
    }
    if let Some(&c) = w.col.iter().find(|&&c| c as usize >= w.n_cols) {
        return Err(GraphError::NodeOutOfRange {
            node: c as usize,
            n: w.n_cols,
        });
    }
    Ok(w.to_dense())
}

/// Eigen-decomposition of a symmetric dense matrix (f64; nalgebra's implicit symmetric QR).
///
/// Errors if the matrix is not square, has non-finite entries or is not symmetric to a
/// relative tolerance of 1e-9; the symmetric part is decomposed.
pub fn symmetric_eigen(a: &[Vec<f64>]) -> Result<SymmetricEigen> {
    let n = check_square(a)?;
    let scale = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    check_dense_symmetric(a, 1e-9 * scale.max(1e-300))?;
    if n == 0 {
        return Ok(SymmetricEigen {
            values: Vec::new(),
            vectors: Vec::new(),
        });
    }
    let m = nalgebra::DMatrix::from_fn(n, n, |i, j| 0.5 * (a[i][j] + a[j][i]));
    let e = nalgebra::SymmetricEigen::try_new(m, f64::EPSILON, MAX_EIGEN_ITERATIONS).ok_or(
        GraphError::NoConvergence {
            iterations: MAX_EIGEN_ITERATIONS,
        },
    )?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| e.eigenvalues[i].total_cmp(&e.eigenvalues[j]));
    Ok(SymmetricEigen {
        values: order.iter().map(|&k| e.eigenvalues[k]).collect(),
        vectors: order
            .iter()
            .map(|&k| e.eigenvectors.column(k).iter().copied().collect())
            .collect(),
    })
}

/// Ascending eigenvalues of a symmetric dense matrix.
pub fn symmetric_eigenvalues(a: &[Vec<f64>]) -> Result<Vec<f64>> {
    Ok(symmetric_eigen(a)?.values)
}

/// Spectral gap 1 − max(|λ₂|, |λ_n|) of a symmetric mixing matrix (λ₁ ≥ … ≥ λ_n; 1 if n = 1).
pub fn spectral_gap(w: &Csr) -> Result<f64> {
    let vals = symmetric_eigenvalues(&dense_square(w)?)?;
    let n = vals.len();
    if n < 2 {
        return Ok(1.0);
    }
    Ok(1.0 - vals[n - 2].abs().max(vals[0].abs()))
}

/// Smallest eigenvalue λ_n of a symmetric mixing matrix.
pub fn lambda_min(w: &Csr) -> Result<f64> {
    let vals = symmetric_eigenvalues(&dense_square(w)?)?;
    vals.first().copied().ok_or(GraphError::TooFewNodes {
        topology: "lambda_min",
        n: 0,
        min: 1,
    })
}

/// Dense graph Laplacian L = D − A.
pub fn laplacian(g: &Graph) -> Vec<Vec<f64>> {
    let n = g.n();
    let mut l = vec![vec![0.0; n]; n];
    for (u, row) in l.iter_mut().enumerate() {
        row[u] = g.degree(u) as f64;
        for &v in g.neighbors(u) {
            row[v] = -1.0;
        }
    }
    l
}

/// Algebraic connectivity λ₂(L) of a graph (0 for disconnected graphs and n < 2).
pub fn algebraic_connectivity(g: &Graph) -> Result<f64> {
    let vals = symmetric_eigenvalues(&laplacian(g))?;
    Ok(vals.get(1).copied().unwrap_or(0.0).max(0.0))
}

/// Dense product A·B of square matrices of equal size.
pub(crate) fn mat_mul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut out = vec![vec![0.0; n]; n];
    for (i, row) in a.iter().enumerate() {
        for (k, &aik) in row.iter().enumerate() {
            if aik == 0.0 {
                continue;
            }
            for (o, &bkj) in out[i].iter_mut().zip(&b[k]) {
                *o += aik * bkj;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn residual(a: &[Vec<f64>], e: &SymmetricEigen) -> f64 {
        let n = a.len();
        let mut worst = 0.0f64;
        for (lam, v) in e.values.iter().zip(&e.vectors) {
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i][j] * v[j]).sum();
                worst = worst.max((av - lam * v[i]).abs());
            }
        }
        worst
    }

    #[test]
    fn eigen_matches_a_known_3x3() {
        // Eigenvalues of [[2,-1,0],[-1,2,-1],[0,-1,2]] are 2 - sqrt(2), 2, 2 + sqrt(2).
        let a = vec![
            vec![2.0, -1.0, 0.0],
            vec![-1.0, 2.0, -1.0],
            vec![0.0, -1.0, 2.0],
        ];
        let e = symmetric_eigen(&a).unwrap();
        let want = [2.0 - 2f64.sqrt(), 2.0, 2.0 + 2f64.sqrt()];
        for (got, want) in e.values.iter().zip(want) {
            assert!((got - want).abs() < 1e-13, "{got} vs {want}");
        }
        assert!(residual(&a, &e) < 1e-12);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| e.vectors[i][k] * e.vectors[j][k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn eigen_on_path_laplacian_closed_form() {
        // Path P_n Laplacian eigenvalues: 2 - 2 cos(pi k / n), k = 0..n-1.
        let n = 20;
        let l = laplacian(&Graph::chain(n).unwrap());
        let e = symmetric_eigen(&l).unwrap();
        let mut want: Vec<f64> = (0..n)
            .map(|k| 2.0 - 2.0 * (PI * k as f64 / n as f64).cos())
            .collect();
        want.sort_by(f64::total_cmp);
        for (got, want) in e.values.iter().zip(&want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!(residual(&l, &e) < 1e-11);
    }

    #[test]
    fn eigen_rejects_bad_matrices() {
        assert_eq!(
            symmetric_eigen(&[vec![1.0, 2.0], vec![0.0, 1.0]]),
            Err(GraphError::NotSymmetric {
                row: 0,
                col: 1,
                a: 2.0,
                b: 0.0
            })
        );
        assert_eq!(
            symmetric_eigen(&[vec![1.0, 2.0]]),
            Err(GraphError::NotSquare { rows: 1, cols: 2 })
        );
        assert!(matches!(
            symmetric_eigen(&[vec![f64::NAN]]),
            Err(GraphError::NonFinite { row: 0, col: 0, .. })
        ));
        let rect = Csr::from_rows(3, &[vec![(0, 1.0)]]);
        assert!(spectral_gap(&rect).is_err());
        assert_eq!(symmetric_eigen(&[]).unwrap().values, Vec::<f64>::new());
    }

    #[test]
    fn laplacian_and_algebraic_connectivity() {
        let g = Graph::ring(6).unwrap();
        let l = laplacian(&g);
        assert_eq!(l[0], vec![2.0, -1.0, 0.0, 0.0, 0.0, -1.0]);
        // Ring: 2 - 2 cos(2 pi / n) = 1 at n = 6.
        assert!((algebraic_connectivity(&g).unwrap() - 1.0).abs() < 1e-12);
        // Complete graph K_n: lambda_2 = n.
        let k = Graph::complete(5).unwrap();
        assert!((algebraic_connectivity(&k).unwrap() - 5.0).abs() < 1e-12);
        let disconnected = Graph::from_edges(4, &[(0, 1), (2, 3)]).unwrap();
        assert!(algebraic_connectivity(&disconnected).unwrap().abs() < 1e-12);
    }

    #[test]
    fn mat_mul_small() {
        let a = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let b = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        assert_eq!(mat_mul(&a, &b), vec![vec![2.0, 1.0], vec![4.0, 3.0]]);
    }
}
