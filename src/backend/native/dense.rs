//! The dense passes of one job, as single-threaded GEMM calls (the `gemm` crate's packed SIMD
//! kernels, picked at run time for the processor: AVX-512, AVX2+FMA or SSE), plus the small fused
//! epilogues (bias + ReLU, ReLU mask, bias gradient). Threads run across jobs, never inside one
//! GEMM, so every output element is summed in one fixed order whatever the thread count.

use crate::model::DenseLayer;

/// `C[m×n] = A[m×k] · B[k×n]` with arbitrary element strides (rs: between rows, cs: between
/// columns). The slices are bounds-checked against the strides' extents before any access.
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c: &mut [f32],
    c_rs: usize,
) {
    let extent =
        |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs + 1;
    assert!(m > 0 && k > 0 && n > 0, "dense shapes are checked positive");
    assert!(a.len() >= extent(m, k, a_rs, a_cs), "lhs extent");
    assert!(b.len() >= extent(k, n, b_rs, b_cs), "rhs extent");
    assert!(c.len() >= extent(m, n, c_rs, 1) && c_rs >= n, "dst extent");
    // SAFETY: the asserts above keep every element the kernel touches inside the slices, and
    // `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Forward of one job: `y = act(x · Wᵀ + b)`; `slab` is the model agent's parameter slab,
/// `x` the `batch × in` input block, `y` the `batch × out` output block.
pub(super) fn forward(l: &DenseLayer, batch: usize, slab: &[f32], x: &[f32], y: &mut [f32]) {
    let (i, o) = (l.in_dim, l.out_dim);
    // W is [out × in] row-major, so Wᵀ (in × out) has row stride 1 and column stride `in`.
    gemm(
        (batch, i, o),
        x,
        (i, 1),
        &slab[l.w_off..l.b_off],
        (1, i),
        y,
        o,
    );
    let bias = &slab[l.b_off..l.b_off + o];
    for row in y[..batch * o].chunks_exact_mut(o) {
        for (v, b) in row.iter_mut().zip(bias) {
            let z = *v + b;
            *v = if l.relu { z.max(0.0) } else { z };
        }
    }
}

/// Backward-data of one job: `dx = dz · W`, zeroed where the previous layer's ReLU output
/// `x_prev` is not positive (when `mask`).
pub(super) fn backward_data(
    l: &DenseLayer,
    batch: usize,
    slab: &[f32],
    dz: &[f32],
    x_prev: &[f32],
    mask: bool,
    dx: &mut [f32],
) {
    let (i, o) = (l.in_dim, l.out_dim);
    gemm(
        (batch, o, i),
        dz,
        (o, 1),
        &slab[l.w_off..l.b_off],
        (i, 1),
        dx,
        i,
    );
    if mask {
        for (d, &x) in dx[..batch * i].iter_mut().zip(&x_prev[..batch * i]) {
            // `!(x > 0)` would differ on NaN; the reference zeroes exactly where x ≤ 0.
            if x <= 0.0 {
                *d = 0.0;
            }
        }
    }
}

/// Backward-weights of one job into its gradient slab: `dW = dzᵀ · x`, `db = Σ_rows dz`.
pub(super) fn backward_weights(
    l: &DenseLayer,
    batch: usize,
    dz: &[f32],
    x: &[f32],
    grad_slab: &mut [f32],
) {
    let (i, o) = (l.in_dim, l.out_dim);
    let (w, rest) = grad_slab[l.w_off..].split_at_mut(l.b_off - l.w_off);
    gemm((o, batch, i), dz, (1, o), x, (i, 1), w, i);
    let db = &mut rest[..o];
    db.copy_from_slice(&dz[..o]);
    for row in dz[o..batch * o].chunks_exact(o) {
        for (d, v) in db.iter_mut().zip(row) {
            *d += v;
        }
    }
}
