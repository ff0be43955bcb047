//! Sparse matrices in compressed-row (CSR) form: the one shape every mixing step takes.
//!
//! Gossip (W), exact averaging, cross-gradient combination, relay composition and MATCHA's
//! active-matching weights are all rows of a sparse matrix applied to stacked vectors:
//! `out_r = Σ_k w_k · in_{col_k}` for k in `row_ptr[r]..row_ptr[r+1]`.

/// A sparse matrix in compressed-row form with f64 weights (rounded to f32 on upload to a GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    /// Number of columns (the number of stacked input vectors the rows may reference).
    pub n_cols: usize,
    /// Row r's entries are `row_ptr[r]..row_ptr[r + 1]`; length is rows + 1.
    pub row_ptr: Vec<u32>,
    /// Column index of each entry.
    pub col: Vec<u32>,
    /// Weight of each entry.
    pub weight: Vec<f64>,
}

impl Csr {
    /// Builds a CSR matrix from per-row lists of (column, weight), keeping the given order.
    pub fn from_rows(n_cols: usize, rows: &[Vec<(usize, f64)>]) -> Self {
        let mut row_ptr = Vec::with_capacity(rows.len() + 1);
        let mut col = Vec::new();
        let mut weight = Vec::new();
        row_ptr.push(0);
        for row in rows {
            for &(c, w) in row {
                col.push(c as u32);
                weight.push(w);
            }
            row_ptr.push(col.len() as u32);
        }
        Csr {
            n_cols,
            row_ptr,
            col,
            weight,
        }
    }

    /// Builds a dense n×m matrix's CSR form, dropping exact zeros.
    pub fn from_dense(dense: &[Vec<f64>]) -> Self {
        let n_cols = dense.first().map_or(0, Vec::len);
        let rows: Vec<Vec<(usize, f64)>> = dense
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, &w)| w != 0.0)
                    .map(|(c, &w)| (c, w))
                    .collect()
            })
            .collect();
        Csr::from_rows(n_cols, &rows)
    }

    /// The identity matrix of size n.
    pub fn identity(n: usize) -> Self {
        let rows: Vec<Vec<(usize, f64)>> = (0..n).map(|i| vec![(i, 1.0)]).collect();
        Csr::from_rows(n, &rows)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_ptr.len().saturating_sub(1)
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Row r as (column, weight) pairs.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        self.col[a..b]
            .iter()
            .zip(&self.weight[a..b])
            .map(|(&c, &w)| (c as usize, w))
    }

    /// The dense form, rows × n_cols.
    pub fn to_dense(&self) -> Vec<Vec<f64>> {
        (0..self.n_rows())
            .map(|r| {
                let mut d = vec![0.0; self.n_cols];
                for (c, w) in self.row(r) {
                    d[c] += w;
                }
                d
            })
            .collect()
    }
}
