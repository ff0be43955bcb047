//! Gossip mixing matrices (ALGORITHMS.md §2) as CSR rows sorted by column with the self entry
//! included, and their validation (stochastic, doubly stochastic, symmetric, non-negative).

use std::fmt;
use std::str::FromStr;

use crate::sparse::Csr;

use super::adjacency::Graph;
use super::error::{GraphError, Result};

/// Default tolerance for row/column sums and symmetry checks.
pub const DEFAULT_TOL: f64 = 1e-12;

/// Builds the CSR matrix whose row i is neighbour weights `w(i, j)` plus self weight
/// 1 − Σ_j w(i, j), sorted by column.
fn from_neighbor_weights(g: &Graph, w: impl Fn(usize, usize) -> f64) -> Csr {
    let rows: Vec<Vec<(usize, f64)>> = (0..g.n())
        .map(|i| {
            let off: Vec<(usize, f64)> = g.neighbors(i).iter().map(|&j| (j, w(i, j))).collect();
            let self_w = 1.0 - off.iter().map(|&(_, x)| x).sum::<f64>();
            let mut row = off;
            let pos = row.partition_point(|&(j, _)| j < i);
            row.insert(pos, (i, self_w));
            row
        })
        .collect();
    Csr::from_rows(g.n(), &rows)
}

/// A stochastic row's f64 weights may sum to one while their f32 roundings do not (the
/// Metropolis–Hastings ring row 1/3, 1/3, 1/3 sums to 1 + 2.98e-8 in f32), and then every mix
/// scales the mean a little. The weights as an f32 backend should store them: in a row that
/// stores its diagonal and sums to one (within 1e-9), every neighbour weight is rounded to f32
/// and the self weight is 1 minus their rounded sum s (taken exactly, in f64), rounded to f32.
/// The f32 weights then sum to exactly one whenever 1 − s is an f32 (regular graphs: the MH
/// ring, constant weights); otherwise within half an ulp of the self weight, never further
/// than entry-by-entry rounding. Other rows are rounded entry by entry.
pub fn f32_row_weights(w: &Csr) -> Vec<f32> {
    let mut out: Vec<f32> = w.weight.iter().map(|&v| v as f32).collect();
    for r in 0..w.n_rows() {
        let (lo, hi) = (w.row_ptr[r] as usize, w.row_ptr[r + 1] as usize);
        let Some(diag) = (lo..hi).find(|&e| w.col[e] as usize == r) else {
            continue;
        };
        if (w.weight[lo..hi].iter().sum::<f64>() - 1.0).abs() > 1e-9 {
            continue;
        }
        let others: f64 = (lo..hi)
            .filter(|&e| e != diag)
            .map(|e| f64::from(out[e]))
            .sum();
        out[diag] = (1.0 - others) as f32;
    }
    out
}

/// Metropolis–Hastings "+1" weights: W_ij = 1/(max(deg_i, deg_j) + 1), W_ii = 1 − Σ_j W_ij.
pub fn metropolis_hastings(g: &Graph) -> Csr {
    from_neighbor_weights(g, |i, j| 1.0 / (g.degree(i).max(g.degree(j)) as f64 + 1.0))
}

/// Uniform weights 1/(deg_i + 1) on self and neighbours (doubly stochastic on regular graphs).
pub fn uniform(g: &Graph) -> Csr {
    from_neighbor_weights(g, |i, _| 1.0 / (g.degree(i) as f64 + 1.0))
}

/// Exact averaging W = 11ᵀ/n; errors unless the graph is complete.
pub fn complete(g: &Graph) -> Result<Csr> {
    let n = g.n();
    if let Some(node) = (0..n).find(|&i| g.degree(i) + 1 != n) {
        return Err(GraphError::NotComplete {
            n,
            node,
            degree: g.degree(node),
        });
    }
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|_| (0..n).map(|j| (j, 1.0 / n as f64)).collect())
        .collect();
    Ok(Csr::from_rows(n, &rows))
}

/// Constant neighbour weight w, self weight 1 − deg_i·w; errors if w is not finite and
/// positive or a self weight would be negative.
pub fn constant(g: &Graph, w: f64) -> Result<Csr> {
    if !(w.is_finite() && w > 0.0) {
        return Err(GraphError::InvalidParameter {
            name: "constant neighbour weight w",
            value: w,
            reason: "must be finite and > 0",
        });
    }
    for node in 0..g.n() {
        let degree = g.degree(node);
        let self_weight = 1.0 - degree as f64 * w;
        if self_weight < 0.0 {
            return Err(GraphError::NegativeSelfWeight {
                node,
                degree,
                w,
                self_weight,
            });
        }
    }
    Ok(from_neighbor_weights(g, |_, _| w))
}

/// Damped gossip W_γ = (1 − γ)I + γW for a square W and γ ∈ [0, 1]; rows stay sorted.
pub fn damped(w: &Csr, gamma: f64) -> Result<Csr> {
    if !(gamma.is_finite() && (0.0..=1.0).contains(&gamma)) {
        return Err(GraphError::InvalidParameter {
            name: "damping gamma",
            value: gamma,
            reason: "must lie in [0, 1]",
        });
    }
    check_square_csr(w)?;
    let rows: Vec<Vec<(usize, f64)>> = (0..w.n_rows())
        .map(|i| {
            let mut row: Vec<(usize, f64)> = w.row(i).map(|(j, x)| (j, gamma * x)).collect();
            match row.iter_mut().find(|(j, _)| *j == i) {
                Some(entry) => entry.1 += 1.0 - gamma,
                None => {
                    let pos = row.partition_point(|&(j, _)| j < i);
                    row.insert(pos, (i, 1.0 - gamma));
                }
            }
            row
        })
        .collect();
    Ok(Csr::from_rows(w.n_cols, &rows))
}

/// A gossip weight rule, parsed from its name.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum MixingRule {
    /// Metropolis–Hastings "+1" (the default).
    #[default]
    MetropolisHastings,
    /// 1/(deg_i + 1).
    Uniform,
    /// 1/n on the complete graph.
    Complete,
    /// Constant neighbour weight w.
    Constant(f64),
}

/// The accepted mixing-rule names.
pub const MIXING_RULE_NAMES: &str =
    "metropolis-hastings (or mh), uniform, complete, constant:W (e.g. constant:0.3233)";

impl MixingRule {
    /// The mixing matrix of this rule on `g`.
    pub fn matrix(&self, g: &Graph) -> Result<Csr> {
        match *self {
            MixingRule::MetropolisHastings => Ok(metropolis_hastings(g)),
            MixingRule::Uniform => Ok(uniform(g)),
            MixingRule::Complete => complete(g),
            MixingRule::Constant(w) => constant(g, w),
        }
    }
}

impl fmt::Display for MixingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixingRule::MetropolisHastings => f.write_str("metropolis-hastings"),
            MixingRule::Uniform => f.write_str("uniform"),
            MixingRule::Complete => f.write_str("complete"),
            MixingRule::Constant(w) => write!(f, "constant:{w}"),
        }
    }
}

impl FromStr for MixingRule {
    type Err = GraphError;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let unknown = || GraphError::UnknownName {
            kind: "mixing rule",
            value: s.to_string(),
            accepted: MIXING_RULE_NAMES.to_string(),
        };
        if let Some(rest) = t.strip_prefix("constant:") {
            let w: f64 = rest.trim().parse().map_err(|_| unknown())?;
            if !(w.is_finite() && w > 0.0) {
                return Err(GraphError::InvalidParameter {
                    name: "constant neighbour weight w",
                    value: w,
                    reason: "must be finite and > 0",
                });
            }
            return Ok(MixingRule::Constant(w));
        }
        match t.as_str() {
            "metropolis-hastings" | "mh" => Ok(MixingRule::MetropolisHastings),
            "uniform" => Ok(MixingRule::Uniform),
            "complete" => Ok(MixingRule::Complete),
            _ => Err(unknown()),
        }
    }
}

string_serde!(MixingRule);

fn check_square_csr(w: &Csr) -> Result<()> {
    if w.n_rows() != w.n_cols {
        return Err(GraphError::NotSquare {
            rows: w.n_rows(),
            cols: w.n_cols,
        });
    }
    for r in 0..w.n_rows() {
        for (c, x) in w.row(r) {
            if c >= w.n_cols {
                return Err(GraphError::NodeOutOfRange {
                    node: c,
                    n: w.n_cols,
                });
            }
            if !x.is_finite() {
                return Err(GraphError::NonFinite {
                    row: r,
                    col: c,
                    value: x,
                });
            }
        }
    }
    Ok(())
}

/// Checks that W is square with finite entries and every row sums to 1 within `tol`
/// (entries may be negative, as in MATCHA's I − αL; see `check_nonnegative`).
pub fn check_stochastic(w: &Csr, tol: f64) -> Result<()> {
    check_square_csr(w)?;
    for row in 0..w.n_rows() {
        let sum: f64 = w.row(row).map(|(_, x)| x).sum();
        if (sum - 1.0).abs() > tol {
            return Err(GraphError::RowSum { row, sum, tol });
        }
    }
    Ok(())
}

/// Checks rows (as `check_stochastic`) and columns of W sum to 1 within `tol`.
pub fn check_doubly_stochastic(w: &Csr, tol: f64) -> Result<()> {
    check_stochastic(w, tol)?;
    let mut sums = vec![0.0; w.n_cols];
    for r in 0..w.n_rows() {
        for (c, x) in w.row(r) {
            sums[c] += x;
        }
    }
    match sums
        .iter()
        .enumerate()
        .find(|(_, s)| (*s - 1.0).abs() > tol)
    {
        Some((col, &sum)) => Err(GraphError::ColumnSum { col, sum, tol }),
        None => Ok(()),
    }
}

/// Checks that W is square and W_ij = W_ji within `tol`.
pub fn check_symmetric(w: &Csr, tol: f64) -> Result<()> {
    check_square_csr(w)?;
    super::spectral::check_dense_symmetric(&w.to_dense(), tol)
}

/// Checks that no stored weight is negative.
pub fn check_nonnegative(w: &Csr) -> Result<()> {
    for row in 0..w.n_rows() {
        if let Some((col, weight)) = w.row(row).find(|&(_, x)| x < 0.0) {
            return Err(GraphError::NegativeWeight { row, col, weight });
        }
    }
    Ok(())
}

/// Checks that every row's columns are strictly increasing and include the diagonal.
pub fn check_rows_sorted_with_self(w: &Csr) -> Result<()> {
    check_square_csr(w)?;
    for r in 0..w.n_rows() {
        let cols: Vec<usize> = w.row(r).map(|(c, _)| c).collect();
        if let Some(p) = cols.windows(2).find(|p| p[0] >= p[1]) {
            return Err(GraphError::InvalidParameter {
                name: "CSR column index",
                value: p[1] as f64,
                reason: "row columns must be strictly increasing",
            });
        }
        if !cols.contains(&r) {
            return Err(GraphError::InvalidParameter {
                name: "CSR row without self entry",
                value: r as f64,
                reason: "every row must store its diagonal entry",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::spectral::{lambda_min, spectral_gap, symmetric_eigenvalues};
    use super::*;
    use std::f64::consts::PI;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn apply(w: &Csr, x: &[f64]) -> Vec<f64> {
        (0..w.n_rows())
            .map(|r| w.row(r).map(|(c, v)| v * x[c]).sum())
            .collect()
    }

    #[test]
    fn mh_weights_match_the_table() {
        let ring = metropolis_hastings(&Graph::ring(6).unwrap());
        assert_eq!(
            ring.row(0).collect::<Vec<_>>(),
            vec![(0, 1.0 - 2.0 / 3.0), (1, 1.0 / 3.0), (5, 1.0 / 3.0)]
        );
        let torus = metropolis_hastings(&Graph::torus(3).unwrap());
        for (c, x) in torus.row(4) {
            assert!(close(x, 0.2, 1e-15), "col {c}: {x}");
        }
        let star = metropolis_hastings(&Graph::star(5).unwrap()).to_dense();
        assert!(close(star[0][0], 0.2, 1e-15) && close(star[0][3], 0.2, 1e-15));
        assert!(close(star[3][3], 0.8, 1e-15) && close(star[3][0], 0.2, 1e-15));
        let chain = metropolis_hastings(&Graph::chain(4).unwrap()).to_dense();
        assert!(close(chain[0][0], 2.0 / 3.0, 1e-15) && close(chain[0][1], 1.0 / 3.0, 1e-15));
        assert!(close(chain[1][1], 1.0 / 3.0, 1e-15));
        let cube = metropolis_hastings(&Graph::hypercube(8).unwrap()).to_dense();
        assert!(close(cube[0][0], 0.25, 1e-15) && close(cube[0][4], 0.25, 1e-15));
        for g in [
            Graph::ring(7).unwrap(),
            Graph::star(6).unwrap(),
            Graph::binary_tree(13).unwrap(),
            Graph::social(32).unwrap(),
        ] {
            let w = metropolis_hastings(&g);
            check_doubly_stochastic(&w, DEFAULT_TOL).unwrap();
            check_symmetric(&w, 0.0).unwrap();
            check_nonnegative(&w).unwrap();
            check_rows_sorted_with_self(&w).unwrap();
            assert_eq!(w.nnz(), g.n() + 2 * g.edge_count());
        }
    }

    #[test]
    fn uniform_complete_constant_and_damped() {
        let star = Graph::star(4).unwrap();
        let u = uniform(&star);
        check_stochastic(&u, DEFAULT_TOL).unwrap();
        // Column 0 gets 1/4 from the hub and 1/2 from each of the 3 leaves.
        assert!(matches!(
            check_doubly_stochastic(&u, DEFAULT_TOL),
            Err(GraphError::ColumnSum { col: 0, sum, .. }) if close(sum, 1.75, 1e-12)
        ));
        check_doubly_stochastic(&uniform(&Graph::ring(5).unwrap()), DEFAULT_TOL).unwrap();

        let k = complete(&Graph::complete(4).unwrap()).unwrap();
        assert!(k.weight.iter().all(|&x| x == 0.25) && k.nnz() == 16);
        assert_eq!(
            complete(&Graph::ring(4).unwrap()),
            Err(GraphError::NotComplete {
                n: 4,
                node: 0,
                degree: 2
            })
        );

        let w = 1.0 / 3.0 - 0.01;
        let c = constant(&Graph::ring(8).unwrap(), w).unwrap();
        assert!(close(c.to_dense()[0][0], 1.0 - 2.0 * w, 1e-15));
        check_doubly_stochastic(&c, DEFAULT_TOL).unwrap();
        assert!(matches!(
            constant(&Graph::star(5).unwrap(), 0.3),
            Err(GraphError::NegativeSelfWeight {
                node: 0,
                degree: 4,
                ..
            })
        ));
        assert!(constant(&Graph::ring(4).unwrap(), -0.1).is_err());

        let base = metropolis_hastings(&Graph::ring(6).unwrap());
        let d = damped(&base, 0.5).unwrap();
        let dd = d.to_dense();
        assert!(close(dd[0][0], 0.5 + 0.5 / 3.0, 1e-15) && close(dd[0][1], 1.0 / 6.0, 1e-15));
        check_doubly_stochastic(&d, DEFAULT_TOL).unwrap();
        check_rows_sorted_with_self(&d).unwrap();
        assert_eq!(damped(&base, 1.0).unwrap(), base);
        assert!(damped(&base, 1.5).is_err());
        // Damping a matrix without stored diagonal inserts it in sorted position.
        let offdiag = Csr::from_rows(2, &[vec![(1, 1.0)], vec![(0, 1.0)]]);
        let dd = damped(&offdiag, 0.25).unwrap();
        assert_eq!(dd.row(1).collect::<Vec<_>>(), vec![(0, 0.25), (1, 0.75)]);
    }

    #[test]
    fn rule_names_parse() {
        assert_eq!("mh".parse(), Ok(MixingRule::MetropolisHastings));
        assert_eq!("Uniform".parse(), Ok(MixingRule::Uniform));
        assert_eq!(
            "constant:0.3233".parse::<MixingRule>(),
            Ok(MixingRule::Constant(0.3233))
        );
        assert!("constant:-1".parse::<MixingRule>().is_err());
        let err = "fancy".parse::<MixingRule>().unwrap_err().to_string();
        assert!(
            err.contains("metropolis-hastings") && err.contains("fancy"),
            "{err}"
        );
        for r in [
            MixingRule::MetropolisHastings,
            MixingRule::Uniform,
            MixingRule::Complete,
            MixingRule::Constant(0.25),
        ] {
            assert_eq!(r.to_string().parse::<MixingRule>(), Ok(r));
        }
        assert_eq!(MixingRule::default(), MixingRule::MetropolisHastings);
        let g = Graph::ring(5).unwrap();
        assert_eq!(
            MixingRule::MetropolisHastings.matrix(&g).unwrap(),
            metropolis_hastings(&g)
        );
    }

    #[test]
    fn validation_reports_offending_entries() {
        let bad = Csr::from_rows(2, &[vec![(0, 0.5), (1, 0.4)], vec![(0, 0.5), (1, 0.5)]]);
        assert!(matches!(
            check_stochastic(&bad, 1e-9),
            Err(GraphError::RowSum { row: 0, sum, .. }) if close(sum, 0.9, 1e-12)
        ));
        let asym = Csr::from_rows(2, &[vec![(0, 0.3), (1, 0.7)], vec![(0, 0.4), (1, 0.6)]]);
        check_stochastic(&asym, 1e-12).unwrap();
        assert!(matches!(
            check_symmetric(&asym, 1e-12),
            Err(GraphError::NotSymmetric { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            check_doubly_stochastic(&asym, 1e-12),
            Err(GraphError::ColumnSum { col: 0, .. })
        ));
        let neg = Csr::from_rows(2, &[vec![(0, 1.5), (1, -0.5)], vec![(1, 1.0)]]);
        assert_eq!(
            check_nonnegative(&neg),
            Err(GraphError::NegativeWeight {
                row: 0,
                col: 1,
                weight: -0.5
            })
        );
        let rect = Csr::from_rows(3, &[vec![(0, 1.0)]]);
        assert_eq!(
            check_stochastic(&rect, 1e-12),
            Err(GraphError::NotSquare { rows: 1, cols: 3 })
        );
        let nan = Csr::from_rows(1, &[vec![(0, f64::NAN)]]);
        assert!(matches!(
            check_stochastic(&nan, 1e-12),
            Err(GraphError::NonFinite { row: 0, col: 0, .. })
        ));
        let unsorted = Csr::from_rows(2, &[vec![(1, 0.5), (0, 0.5)], vec![(1, 1.0)]]);
        assert!(check_rows_sorted_with_self(&unsorted).is_err());
    }

    #[test]
    fn ring_spectrum_matches_closed_form() {
        // MH ring: eigenvalues 1/3 + 2/3 cos(2 pi k / n).
        for n in [5usize, 8, 16, 17] {
            let w = metropolis_hastings(&Graph::ring(n).unwrap());
            let got = symmetric_eigenvalues(&w.to_dense()).unwrap();
            let mut want: Vec<f64> = (0..n)
                .map(|k| 1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI * k as f64 / n as f64).cos())
                .collect();
            want.sort_by(f64::total_cmp);
            for (g, w) in got.iter().zip(&want) {
                assert!(close(*g, *w, 1e-12), "n={n}: {g} vs {w}");
            }
            let gap_closed = 1.0
                - (1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI / n as f64).cos())
                    .abs()
                    .max(want[0].abs());
            assert!(close(spectral_gap(&w).unwrap(), gap_closed, 1e-12));
        }
        let w16 = metropolis_hastings(&Graph::ring(16).unwrap());
        let gap = spectral_gap(&w16).unwrap();
        assert!(close(gap, 0.0508, 1e-4), "ring16 gap {gap}");
        assert!(close(lambda_min(&w16).unwrap(), -1.0 / 3.0, 1e-12));
        let w8 = metropolis_hastings(&Graph::ring(8).unwrap());
        assert!(close(lambda_min(&w8).unwrap(), -1.0 / 3.0, 1e-12));
    }

    #[test]
    fn torus_hypercube_social_spectra() {
        // Torus m x m with 1/5 weights: (1 + 2cos(2 pi a/m) + 2cos(2 pi b/m)) / 5.
        let m = 4;
        let w = metropolis_hastings(&Graph::torus(m).unwrap());
        let got = symmetric_eigenvalues(&w.to_dense()).unwrap();
        let mut want = Vec::new();
        for a in 0..m {
            for b in 0..m {
                let t = |k: usize| (2.0 * PI * k as f64 / m as f64).cos();
                want.push((1.0 + 2.0 * t(a) + 2.0 * t(b)) / 5.0);
            }
        }
        want.sort_by(f64::total_cmp);
        for (g, w) in got.iter().zip(&want) {
            assert!(close(*g, *w, 1e-12));
        }
        assert!(close(spectral_gap(&w).unwrap(), 0.4, 1e-12));

        // Hypercube 2^D with 1/(D+1): eigenvalues (D + 1 - 2k)/(D + 1), k = 0..D.
        let w = metropolis_hastings(&Graph::hypercube(16).unwrap());
        let got = symmetric_eigenvalues(&w.to_dense()).unwrap();
        assert!(close(got[15], 1.0, 1e-12) && close(got[14], 0.6, 1e-12));
        assert!(close(got[0], -0.6, 1e-12));
        assert!(close(spectral_gap(&w).unwrap(), 0.4, 1e-12));

        let w = metropolis_hastings(&Graph::social(32).unwrap());
        let gap = spectral_gap(&w).unwrap();
        assert!(close(gap, 0.0821, 5e-5), "social gap {gap}");

        // Complete graph: exact averaging has gap 1.
        let k = complete(&Graph::complete(6).unwrap()).unwrap();
        assert!(close(spectral_gap(&k).unwrap(), 1.0, 1e-12));
    }

    #[test]
    fn mixing_preserves_the_mean() {
        let g = Graph::erdos_renyi(12, 0.3, 5).unwrap();
        let x: Vec<f64> = (0..12).map(|i| (i * i) as f64 - 3.0).collect();
        let mean = x.iter().sum::<f64>() / 12.0;
        for w in [
            metropolis_hastings(&g),
            damped(&metropolis_hastings(&g), 0.3).unwrap(),
        ] {
            let y = apply(&w, &x);
            assert!(close(y.iter().sum::<f64>() / 12.0, mean, 1e-12));
            let c = apply(&w, &[2.5; 12]);
            assert!(c.iter().all(|&v| close(v, 2.5, 1e-14)));
        }
    }
    #[test]
    fn f32_rows_sum_to_exactly_one() {
        // The exact sum of a row's f32 weights (f64 holds it exactly here).
        let f32_sum = |w: &Csr, v: &[f32], r: usize| {
            (w.row_ptr[r] as usize..w.row_ptr[r + 1] as usize)
                .map(|e| f64::from(v[e]))
                .sum::<f64>()
        };
        let ring = Graph::ring(8).unwrap();
        let cases = [
            (metropolis_hastings(&ring), true),
            (constant(&ring, 0.3233333333).unwrap(), true),
            // Small neighbour weights (0.1 here) or irregular degrees: 1 − s may need more
            // bits than the self weight's f32 has.
            (damped(&metropolis_hastings(&ring), 0.3).unwrap(), false),
            (
                metropolis_hastings(&Graph::erdos_renyi(13, 0.4, 3).unwrap()),
                false,
            ),
        ];
        for (w, exact) in &cases {
            let naive: Vec<f32> = w.weight.iter().map(|&v| v as f32).collect();
            let fixed = f32_row_weights(w);
            for r in 0..w.n_rows() {
                let (lo, hi) = (w.row_ptr[r] as usize, w.row_ptr[r + 1] as usize);
                let diag = (lo..hi).find(|&e| w.col[e] as usize == r).unwrap();
                let err = (f32_sum(w, &fixed, r) - 1.0).abs();
                let naive_err = (f32_sum(w, &naive, r) - 1.0).abs();
                if *exact {
                    assert_eq!(err, 0.0, "row {r}");
                } else {
                    let half_ulp = f64::from(fixed[diag]) * f64::from(f32::EPSILON) / 2.0;
                    assert!(err <= half_ulp && err <= naive_err, "row {r}: {err:e}");
                }
                for e in lo..hi {
                    if e != diag {
                        assert_eq!(fixed[e], naive[e], "neighbour weights are rounded alone");
                    }
                }
            }
        }
        // Entry-by-entry rounding misses: the MH ring row sums to 1 + 2.98e-8.
        let (mh, _) = &cases[0];
        let naive: Vec<f32> = mh.weight.iter().map(|&v| v as f32).collect();
        let excess = f32_sum(mh, &naive, 0) - 1.0;
        assert!((excess - 2.98e-8).abs() < 1e-10, "excess {excess:e}");
        // Rows that are not stochastic (relay message rows) are only rounded.
        let msg = Csr::from_rows(3, &[vec![(0, 1.0), (1, 1.0)], vec![(1, 0.1)]]);
        assert_eq!(f32_row_weights(&msg), vec![1.0, 1.0, 0.1f32]);
    }
}
