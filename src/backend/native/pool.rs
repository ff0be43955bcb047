//! Max and average pooling of one sample, in plain loops (memory-bound: a few flops per input
//! element). Windows are visited in the reference's order: output pixels row-major, each
//! window row-major, so a max pool keeps the first maximum and overlapping windows add their
//! gradients in one fixed order.

use crate::backend::{PoolKind, PoolLayer};

/// Calls `f(out, window_start)` for every output pixel of one sample: `window_start` is the
/// input index of the window's top-left element.
fn for_each_window(l: &PoolLayer, mut f: impl FnMut(usize, usize)) {
    let (i, o) = (l.input, l.output());
    for c in 0..o.channels {
        for oy in 0..o.height {
            for ox in 0..o.width {
                let out = (c * o.height + oy) * o.width + ox;
                f(
                    out,
                    (c * i.height + oy * l.stride) * i.width + ox * l.stride,
                );
            }
        }
    }
}

/// The input index of the window's first maximum (strictly greater replaces, row-major).
fn first_max(l: &PoolLayer, xs: &[f32], start: usize) -> usize {
    let w = l.input.width;
    let mut best = start;
    for wy in 0..l.window {
        let row = start + wy * w;
        for k in row..row + l.window {
            if xs[k] > xs[best] {
                best = k;
            }
        }
    }
    best
}

/// Forward of one sample.
pub(super) fn forward(l: &PoolLayer, xs: &[f32], ys: &mut [f32]) {
    let w = l.input.width;
    let area = (l.window * l.window) as f32;
    for_each_window(l, |out, start| {
        ys[out] = match l.kind {
            PoolKind::Max => xs[first_max(l, xs, start)],
            PoolKind::Avg => {
                let mut sum = 0.0f32;
                for wy in 0..l.window {
                    let row = start + wy * w;
                    for v in &xs[row..row + l.window] {
                        sum += v;
                    }
                }
                sum / area
            }
        }
    });
}

/// Backward of one sample: `dxs` (overwritten) gets each output gradient routed back through
/// its window.
pub(super) fn backward(l: &PoolLayer, xs: &[f32], dys: &[f32], dxs: &mut [f32]) {
    let w = l.input.width;
    let area = (l.window * l.window) as f32;
    dxs.fill(0.0);
    for_each_window(l, |out, start| match l.kind {
        PoolKind::Max => dxs[first_max(l, xs, start)] += dys[out],
        PoolKind::Avg => {
            let g = dys[out] / area;
            for wy in 0..l.window {
                let row = start + wy * w;
                for d in &mut dxs[row..row + l.window] {
                    *d += g;
                }
            }
        }
    });
}
