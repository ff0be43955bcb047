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
//!
//! Measured on one Zen 4 core (cnn5's layers on MNIST, batch 32; CPU time, so the shared
//! machine's load does not count): splitting each sample's im2col into L2-sized blocks of
//! 128–512 pixels, or grouping whole small samples into one GEMM for backward-weights, changed
//! nothing measurable (±3%); copying each im2col row of a stride-1 "same" layer as one shifted
//! plane rather than row by row gained 4–6%; accumulating `dW` channel-major gained 10–38%
//! (see [`weights_channel_major`]).

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
fn col_shape(l: &ConvLayer) -> (usize, usize) {
    let o = l.output();
    (l.input.channels * l.kernel * l.kernel, o.height * o.width)
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

/// Whether the layer keeps the image size (stride 1, padding (k − 1)/2): then each im2col row
/// is its input channel's plane shifted by one offset, copied in one piece.
fn same(l: &ConvLayer) -> bool {
    l.stride == 1 && 2 * l.pad + 1 == l.kernel
}

/// Visits every im2col row of a [`same`] layer: `f(row, plane_start, range, shift, edges)`,
/// where columns `p ∈ range` read input `p + shift` of the channel plane starting at
/// `plane_start` (the other columns are padding), except the columns `ox ∉ edges` of every
/// output row, whose tap crossed a row edge and are padding too.
fn for_each_shift(
    l: &ConvLayer,
    mut f: impl FnMut(usize, usize, std::ops::Range<usize>, isize, (usize, usize)),
) {
    let (c, k, w) = (l.input.channels, l.kernel, l.input.width);
    let plane = l.input.height * w;
    for ic in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let shift = (ky * w + kx) as isize - (l.pad * w + l.pad) as isize;
                let lo = (-shift).max(0) as usize;
                let hi = (plane as isize - shift).min(plane as isize) as usize;
                let edges = valid(w, w, 1, l.pad, kx);
                f(
                    (ic * k + ky) * k + kx,
                    ic * plane,
                    lo..hi.max(lo),
                    shift,
                    edges,
                );
            }
        }
    }
}

/// Zeroes the columns of one im2col row of a [`same`] layer whose tap crossed a row edge.
fn zero_edges(row: &mut [f32], w: usize, (x_lo, x_hi): (usize, usize)) {
    if x_lo > 0 || x_hi < w {
        for r in row.chunks_exact_mut(w) {
            r[..x_lo].fill(0.0);
            r[x_hi..].fill(0.0);
        }
    }
}

/// Writes one sample's im2col matrix (`K × P`, row-major) into `col`.
fn im2col(l: &ConvLayer, xs: &[f32], col: &mut [f32]) {
    let (k_rows, p) = col_shape(l);
    if same(l) {
        for_each_shift(l, |r, at, range, shift, edges| {
            let row = &mut col[r * p..(r + 1) * p];
            let from = (at as isize + range.start as isize + shift) as usize;
            row[..range.start].fill(0.0);
            row[range.end..].fill(0.0);
            row[range.clone()].copy_from_slice(&xs[from..from + range.len()]);
            zero_edges(row, l.input.width, edges);
        });
        return;
    }
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
/// row in im2col order; padding columns of `col` may be zeroed on the way.
fn col2im(l: &ConvLayer, col: &mut [f32], dxs: &mut [f32]) {
    let p = col_shape(l).1;
    dxs.fill(0.0);
    if same(l) {
        // Zero the edge-crossing columns, then add each row's in-plane range in one piece
        // (adding a zero leaves a sum unchanged).
        for_each_shift(l, |r, at, range, shift, edges| {
            let row = &mut col[r * p..(r + 1) * p];
            zero_edges(row, l.input.width, edges);
            let from = (at as isize + range.start as isize + shift) as usize;
            for (d, v) in dxs[from..from + range.len()].iter_mut().zip(&row[range]) {
                *d += v;
            }
        });
        return;
    }
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

/// Whether backward-weights accumulates `dW` channel-major (`[K × C_out]`, transposed into
/// the slab at the end) rather than in the slab's `[C_out × K]`. The gemm crate vectorises
/// along the destination's contiguous axis: along C_out it streams both operands along the
/// pixels, measured 1.38× faster at 32→32 on 28×28 (62 → 86 GFLOP/s on one thread), 1.17× at
/// 32→64 on 14×14 and 1.1× at 64→64 on 7×7, but slower at K = 9 (1→32: 36 → 34).
fn weights_channel_major(l: &ConvLayer) -> bool {
    col_shape(l).0 > l.out_channels
}

/// Scratch one task needs: the im2col matrix of one sample (none for a pointwise layer),
/// then room for a channel-major `dW`.
pub(super) fn scratch_len(l: &ConvLayer) -> usize {
    let (k, p) = col_shape(l);
    let col = if pointwise(l) { 0 } else { k * p };
    col + l.out_channels * k
}

/// One sample's im2col matrix: the input itself for a pointwise layer, else written to `col`.
fn matrix<'a>(l: &ConvLayer, xs: &'a [f32], col: &'a mut [f32]) -> &'a [f32] {
    if pointwise(l) {
        xs
    } else {
        im2col(l, xs, col);
        col
    }
}

/// Forward of one sample: `ys = W · col(xs) + b` (`[C_out × P]`); `col` is scratch of at
/// least [`scratch_len`].
pub(super) fn forward(l: &ConvLayer, slab: &[f32], xs: &[f32], ys: &mut [f32], col: &mut [f32]) {
    let (k_rows, p) = col_shape(l);
    let m = l.out_channels;
    let cm = matrix(l, xs, col);
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
/// [`scratch_len`].
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
    // Wᵀ: element (k, o) of the [K × C_out] transpose sits at o·K + k. A pointwise layer's
    // product is the input gradient itself.
    let pw = pointwise(l);
    let out: &mut [f32] = if pw { &mut *dxs } else { &mut *col };
    gemm_into(
        (k_rows, m, p),
        w,
        (1, k_rows),
        dys,
        (p, 1),
        out,
        (p, 1),
        false,
    );
    if !pw {
        col2im(l, col, dxs);
    }
}

/// Backward-weights of one job into its gradient slab: `dW = Σ_b dY_b · col_bᵀ`, accumulated
/// in sample order, and `db = Σ_{b,pixel} dY` (summed in f64); `x` holds the job's `batch`
/// input images, `dy` its output gradients; `scratch` is at least [`scratch_len`].
pub(super) fn backward_weights(
    l: &ConvLayer,
    batch: usize,
    dy: &[f32],
    x: &[f32],
    grad_slab: &mut [f32],
    scratch: &mut [f32],
) {
    let (k_rows, p) = col_shape(l);
    let m = l.out_channels;
    let (n_in, n_out) = (l.input.len(), m * p);
    let (col, t) = scratch.split_at_mut(if pointwise(l) { 0 } else { k_rows * p });
    let channel_major = weights_channel_major(l);
    {
        let dw = &mut grad_slab[l.w_off..][..m * k_rows];
        // Channel-major: dW accumulates in `t` (element (oc, k) at k·C_out + oc).
        let (acc, acc_strides) = if channel_major {
            (&mut t[..m * k_rows], (1, m))
        } else {
            (dw, (k_rows, 1))
        };
        for b in 0..batch {
            let cm = matrix(l, &x[b * n_in..][..n_in], col);
            // colᵀ: element (pixel, k) of the [P × K] transpose sits at k·P + pixel.
            let dys = &dy[b * n_out..][..n_out];
            gemm_into(
                (m, p, k_rows),
                dys,
                (p, 1),
                cm,
                (1, p),
                acc,
                acc_strides,
                b > 0,
            );
        }
    }
    if channel_major {
        let dw = &mut grad_slab[l.w_off..][..m * k_rows];
        for (oc, row) in dw.chunks_exact_mut(k_rows).enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                *v = t[k * m + oc];
            }
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
