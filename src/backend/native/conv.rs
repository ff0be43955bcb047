//! The 2-D convolution of one sample (forward, backward-data) or one job (backward-weights) as
//! im2col + a single-threaded GEMM of the `gemm` crate, as the dense passes do; threads run
//! across samples and jobs, never inside one GEMM, so every output element is summed in one
//! fixed order whatever the thread count.
//!
//! The im2col matrix of one sample is `K × P`, row-major: row `(ic, ky, kx)` (K = C_in·k²),
//! column the output pixel `(oy, ox)` (P = H_out·W_out), zero where the tap falls in the
//! padding. With the weight `[C_out × K]` row-major (PyTorch's layout), forward is
//! `Y = W · col`, backward-data `dx = col2im(Wᵀ · dY)` and backward-weights `dW = Σ_b dY_b · col_bᵀ`.
//! A 1×1 kernel with stride 1 and no padding needs no im2col: the input is its own matrix.

use super::dense::gemm_into;
use super::elementwise::segment_sum;
use crate::backend::ConvLayer;

/// Output positions `o < out` whose tap at kernel offset `kk` lands inside an input side `n`:
/// `0 ≤ o·stride + kk − pad < n`, as a half-open range.
fn valid(out: usize, n: usize, stride: usize, pad: usize, kk: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(kk).div_ceil(stride).min(out);
    let hi = (n + pad).saturating_sub(kk).div_ceil(stride).min(out);
    (lo, hi.max(lo))
}

/// Whether the input of one sample is its own im2col matrix.
fn pointwise(l: &ConvLayer) -> bool {
    l.kernel == 1 && l.stride == 1 && l.pad == 0
}

/// Rows (K) and columns (P) of one sample's im2col matrix.
pub(super) fn col_shape(l: &ConvLayer) -> (usize, usize) {
    let o = l.output();
    (l.input.channels * l.kernel * l.kernel, o.height * o.width)
}

/// Scratch one sample's pass needs (0 for a pointwise layer).
pub(super) fn col_len(l: &ConvLayer) -> usize {
    if pointwise(l) {
        0
    } else {
        let (k, p) = col_shape(l);
        k * p
    }
}

/// Visits every im2col row `(ic, ky, kx)` and, within it, every run of output pixels of one
/// output row whose taps are inside the image: `f(row, out_start, in_start, len)` with
/// column `out_start + t` reading input index `in_start + t·stride` for `t < len`. Columns
/// never visited are padding.
fn for_each_run(l: &ConvLayer, mut f: impl FnMut(usize, usize, usize, usize)) {
    let (i, o, k, s) = (l.input, l.output(), l.kernel, l.stride);
    for ic in 0..i.channels {
        for ky in 0..k {
            let (y_lo, y_hi) = valid(o.height, i.height, s, l.pad, ky);
            for kx in 0..k {
                let row = (ic * k + ky) * k + kx;
                let (x_lo, x_hi) = valid(o.width, i.width, s, l.pad, kx);
                if x_lo == x_hi {
                    continue;
                }
                for oy in y_lo..y_hi {
                    let iy = oy * s + ky - l.pad;
                    let ix = x_lo * s + kx - l.pad;
                    f(
                        row,
                        oy * o.width + x_lo,
                        (ic * i.height + iy) * i.width + ix,
                        x_hi - x_lo,
                    );
                }
            }
        }
    }
}

/// Writes one sample's im2col matrix (`K × P`, row-major) into `col`.
fn im2col(l: &ConvLayer, xs: &[f32], col: &mut [f32]) {
    let (k_rows, p) = col_shape(l);
    let col = &mut col[..k_rows * p];
    // Zero first, then copy the in-image runs: the padding is a small share of the matrix.
    col.fill(0.0);
    let s = l.stride;
    for_each_run(l, |row, out, inp, len| {
        let dst = &mut col[row * p + out..][..len];
        if s == 1 {
            dst.copy_from_slice(&xs[inp..inp + len]);
        } else {
            for (t, d) in dst.iter_mut().enumerate() {
                *d = xs[inp + t * s];
            }
        }
    });
}

/// Adds one sample's im2col-shaped gradient back into its image `dxs` (zeroed here), row by
/// row in im2col order.
fn col2im(l: &ConvLayer, col: &[f32], dxs: &mut [f32]) {
    let p = col_shape(l).1;
    dxs.fill(0.0);
    let s = l.stride;
    for_each_run(l, |row, out, inp, len| {
        let src = &col[row * p + out..][..len];
        if s == 1 {
            for (d, v) in dxs[inp..inp + len].iter_mut().zip(src) {
                *d += v;
            }
        } else {
            for (t, v) in src.iter().enumerate() {
                dxs[inp + t * s] += v;
            }
        }
    });
}

/// Forward of one sample: `ys = W · col(xs) + b` (`[C_out × P]`); `col` is scratch of at
/// least [`col_len`].
pub(super) fn forward(l: &ConvLayer, slab: &[f32], xs: &[f32], ys: &mut [f32], col: &mut [f32]) {
    let (k_rows, p) = col_shape(l);
    let m = l.out_channels;
    let cm: &[f32] = if pointwise(l) {
        xs
    } else {
        im2col(l, xs, col);
        col
    };
    let w = &slab[l.w_off..][..m * k_rows];
    gemm_into(
        (m, k_rows, p),
        w,
        (k_rows, 1),
        cm,
        (p, 1),
        ys,
        (p, 1),
        false,
    );
    if let Some(b) = l.b_off {
        for (row, &bias) in ys[..m * p].chunks_exact_mut(p).zip(&slab[b..b + m]) {
            for v in row {
                *v += bias;
            }
        }
    }
}

/// Backward-data of one sample: `dxs = col2im(Wᵀ · dys)`; `col` is scratch of at least
/// [`col_len`].
pub(super) fn backward_data(
    l: &ConvLayer,
    slab: &[f32],
    dys: &[f32],
    dxs: &mut [f32],
    col: &mut [f32],
) {
    let (k_rows, p) = col_shape(l);
    let m = l.out_channels;
    let w = &slab[l.w_off..][..m * k_rows];
    // Wᵀ: element (k, o) of the [K × C_out] transpose sits at o·K + k.
    if pointwise(l) {
        gemm_into(
            (k_rows, m, p),
            w,
            (1, k_rows),
            dys,
            (p, 1),
            dxs,
            (p, 1),
            false,
        );
    } else {
        gemm_into(
            (k_rows, m, p),
            w,
            (1, k_rows),
            dys,
            (p, 1),
            col,
            (p, 1),
            false,
        );
        col2im(l, col, dxs);
    }
}

/// Backward-weights of one job into its gradient slab: `dW = Σ_b dY_b · col_bᵀ`, accumulated
/// in sample order, and `db = Σ_{b,pixel} dY` (summed in f64); `x` holds the job's `batch`
/// input images, `dy` its output gradients; `col` is scratch of at least [`col_len`].
pub(super) fn backward_weights(
    l: &ConvLayer,
    batch: usize,
    dy: &[f32],
    x: &[f32],
    grad_slab: &mut [f32],
    col: &mut [f32],
) {
    let (k_rows, p) = col_shape(l);
    let m = l.out_channels;
    let (n_in, n_out) = (l.input.len(), m * p);
    {
        let dw = &mut grad_slab[l.w_off..][..m * k_rows];
        for b in 0..batch {
            let xs = &x[b * n_in..][..n_in];
            let cm: &[f32] = if pointwise(l) {
                xs
            } else {
                im2col(l, xs, col);
                col
            };
            // colᵀ: element (pixel, k) of the [P × K] transpose sits at k·P + pixel.
            let dys = &dy[b * n_out..][..n_out];
            gemm_into(
                (m, p, k_rows),
                dys,
                (p, 1),
                cm,
                (1, p),
                dw,
                (k_rows, 1),
                b > 0,
            );
        }
    }
    if let Some(off) = l.b_off {
        for (oc, db) in grad_slab[off..off + m].iter_mut().enumerate() {
            let sum: f64 = (0..batch)
                .map(|b| segment_sum(&dy[b * n_out + oc * p..][..p], None, |v, _| v))
                .sum();
            *db = sum as f32;
        }
    }
}
