//! The convolutional layers in plain f64 loops, written for clarity: the ground truth of the
//! other backends' parity tests (and checked against finite differences itself). Every
//! function gets slices the op's `check` has already sized and a job list of
//! (model agent, input block) pairs.

use crate::backend::{ConvJobs, ConvLayer, NormJobs, NormKind, PoolKind, PoolLayer};

/// The input pixel a kernel tap reads, or `None` in the zero padding.
fn tap(l: &ConvLayer, out_y: usize, out_x: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (out_y * l.stride + ky).checked_sub(l.pad)?;
    let ix = (out_x * l.stride + kx).checked_sub(l.pad)?;
    (iy < l.input.height && ix < l.input.width).then_some((iy, ix))
}

/// Visits every (output channel, output pixel, input channel, input pixel, weight index) of one
/// sample's convolution, padding taps skipped.
fn for_each_tap(l: &ConvLayer, mut f: impl FnMut(usize, usize, usize, usize)) {
    let (i, o, k) = (l.input, l.output(), l.kernel);
    for oc in 0..o.channels {
        for oy in 0..o.height {
            for ox in 0..o.width {
                let out = (oc * o.height + oy) * o.width + ox;
                for ic in 0..i.channels {
                    for ky in 0..k {
                        for kx in 0..k {
                            if let Some((iy, ix)) = tap(l, oy, ox, ky, kx) {
                                let input = (ic * i.height + iy) * i.width + ix;
                                let w = ((oc * i.channels + ic) * k + ky) * k + kx;
                                f(oc, out, input, w);
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn conv_forward(
    s: &ConvJobs,
    jobs: &[(usize, usize)],
    p: &[f64],
    x: &[f64],
    y: &mut [f64],
) {
    let l = &s.layer;
    let (n_in, n_out) = (l.input.len(), l.output().len());
    let plane = l.output().height * l.output().width;
    for (j, &(m, blk)) in jobs.iter().enumerate() {
        let slab = &p[m * s.stride..];
        for b in 0..s.batch {
            let xs = &x[(blk * s.batch + b) * n_in..][..n_in];
            let ys = &mut y[(j * s.batch + b) * n_out..][..n_out];
            for (o, v) in ys.iter_mut().enumerate() {
                *v = l.b_off.map_or(0.0, |off| slab[off + o / plane]);
            }
            for_each_tap(l, |_, out, input, w| {
                ys[out] += slab[l.w_off + w] * xs[input]
            });
        }
    }
}

pub(super) fn conv_backward_data(
    s: &ConvJobs,
    jobs: &[(usize, usize)],
    p: &[f64],
    dy: &[f64],
    dx: &mut [f64],
) {
    let l = &s.layer;
    let (n_in, n_out) = (l.input.len(), l.output().len());
    for (j, &(m, _)) in jobs.iter().enumerate() {
        let slab = &p[m * s.stride..];
        for b in 0..s.batch {
            let row = j * s.batch + b;
            let dys = &dy[row * n_out..][..n_out];
            let dxs = &mut dx[row * n_in..][..n_in];
            dxs.fill(0.0);
            for_each_tap(l, |_, out, input, w| {
                dxs[input] += slab[l.w_off + w] * dys[out]
            });
        }
    }
}

pub(super) fn conv_backward_weights(
    s: &ConvJobs,
    jobs: &[(usize, usize)],
    dy: &[f64],
    x: &[f64],
    g: &mut [f64],
) {
    let l = &s.layer;
    let (n_in, n_out) = (l.input.len(), l.output().len());
    for (j, &(_, blk)) in jobs.iter().enumerate() {
        let slab = &mut g[j * s.stride..][..s.stride];
        slab[l.w_off..][..l.weight_len()].fill(0.0);
        if let Some(off) = l.b_off {
            slab[off..][..l.out_channels].fill(0.0);
        }
        for b in 0..s.batch {
            let xs = &x[(blk * s.batch + b) * n_in..][..n_in];
            let dys = &dy[(j * s.batch + b) * n_out..][..n_out];
            for_each_tap(l, |_, out, input, w| {
                slab[l.w_off + w] += dys[out] * xs[input]
            });
            if let Some(off) = l.b_off {
                let plane = n_out / l.out_channels;
                for (o, v) in dys.iter().enumerate() {
                    slab[off + o / plane] += v;
                }
            }
        }
    }
}

/// Visits every output pixel of one sample with the input indices of its window.
fn for_each_window(l: &PoolLayer, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
    let (i, o) = (l.input, l.output());
    for c in 0..o.channels {
        for oy in 0..o.height {
            for ox in 0..o.width {
                let out = (c * o.height + oy) * o.width + ox;
                let mut window = (0..l.window).flat_map(move |wy| {
                    (0..l.window).map(move |wx| {
                        (c * i.height + oy * l.stride + wy) * i.width + ox * l.stride + wx
                    })
                });
                f(out, &mut window);
            }
        }
    }
}

/// The index of a window's first maximum (row-major order).
fn first_max(xs: &[f64], window: &mut dyn Iterator<Item = usize>) -> usize {
    let first = window.next().expect("windows are not empty");
    window.fold(first, |best, k| if xs[k] > xs[best] { k } else { best })
}

pub(super) fn pool(l: &PoolLayer, samples: usize, x: &[f64], y: &mut [f64]) {
    let (n_in, n_out) = (l.input.len(), l.output().len());
    let area = (l.window * l.window) as f64;
    for r in 0..samples {
        let xs = &x[r * n_in..][..n_in];
        let ys = &mut y[r * n_out..][..n_out];
        for_each_window(l, |out, window| {
            ys[out] = match l.kind {
                PoolKind::Max => xs[first_max(xs, window)],
                PoolKind::Avg => window.map(|k| xs[k]).sum::<f64>() / area,
            }
        });
    }
}

pub(super) fn pool_backward(l: &PoolLayer, samples: usize, x: &[f64], dy: &[f64], dx: &mut [f64]) {
    let (n_in, n_out) = (l.input.len(), l.output().len());
    let area = (l.window * l.window) as f64;
    for r in 0..samples {
        let xs = &x[r * n_in..][..n_in];
        let dys = &dy[r * n_out..][..n_out];
        let dxs = &mut dx[r * n_in..][..n_in];
        dxs.fill(0.0);
        for_each_window(l, |out, window| match l.kind {
            PoolKind::Max => dxs[first_max(xs, window)] += dys[out],
            PoolKind::Avg => window.for_each(|k| dxs[k] += dys[out] / area),
        });
    }
}

fn hardsigmoid(x: f64) -> f64 {
    (x / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// Mean and √(biased variance + ε) of one group's values.
fn group_stats(xs: &[f64], eps: f64) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, (var + eps).sqrt())
}

/// Visits every (sample row, group) of a normalisation with the range of the group's values
/// in the activation buffer and its first channel.
fn for_each_group(
    s: &NormJobs,
    jobs: &[(usize, usize)],
    mut f: impl FnMut(usize, usize, std::ops::Range<usize>, usize),
) {
    let l = &s.layer;
    let per_group = l.image.channels / l.groups;
    let group_len = per_group * l.image.height * l.image.width;
    for (j, &(m, _)) in jobs.iter().enumerate() {
        for b in 0..s.batch {
            let row = j * s.batch + b;
            for g in 0..l.groups {
                let start = row * l.image.len() + g * group_len;
                f(j, m, start..start + group_len, g * per_group);
            }
        }
    }
}

pub(super) fn norm_forward(
    s: &NormJobs,
    jobs: &[(usize, usize)],
    p: &[f64],
    x: &[f64],
    y: &mut [f64],
) {
    let l = &s.layer;
    let plane = l.image.height * l.image.width;
    for_each_group(s, jobs, |_, m, range, c0| {
        let (mean, sd) = group_stats(&x[range.clone()], l.eps);
        let slab = &p[m * s.stride..];
        for (k, i) in range.enumerate() {
            let c = c0 + k / plane;
            let (gamma, beta) = (slab[l.gamma_off + c], slab[l.beta_off + c]);
            let v = x[i];
            let normed = match l.kind {
                NormKind::Group => (v - mean) / sd,
                NormKind::EvoS0 => v * hardsigmoid(v) / sd,
            };
            y[i] = normed * gamma + beta;
        }
    });
}

pub(super) fn norm_backward(
    s: &NormJobs,
    jobs: &[(usize, usize)],
    p: &[f64],
    x: &[f64],
    dy: &[f64],
    dx: &mut [f64],
    g: &mut [f64],
) {
    let l = &s.layer;
    let c = l.image.channels;
    let plane = l.image.height * l.image.width;
    for j in 0..jobs.len() {
        let slab = &mut g[j * s.stride..];
        slab[l.gamma_off..][..c].fill(0.0);
        slab[l.beta_off..][..c].fill(0.0);
    }
    for_each_group(s, jobs, |j, m, range, c0| {
        let xs = &x[range.clone()];
        let dys = &dy[range.clone()];
        let n = xs.len() as f64;
        let (mean, sd) = group_stats(xs, l.eps);
        let gamma = |k: usize| p[m * s.stride + l.gamma_off + c0 + k / plane];
        let grads = &mut g[j * s.stride..];
        // dγ, dβ: the output gradient times the normalised value, and the output gradient.
        for (k, (&v, &d)) in xs.iter().zip(dys).enumerate() {
            let normed = match l.kind {
                NormKind::Group => (v - mean) / sd,
                NormKind::EvoS0 => v * hardsigmoid(v) / sd,
            };
            grads[l.gamma_off + c0 + k / plane] += d * normed;
            grads[l.beta_off + c0 + k / plane] += d;
        }
        let dxs = &mut dx[range];
        match l.kind {
            NormKind::Group => {
                // dx = (g − mean(g) − x̂·mean(g·x̂)) / sd with g = γ·dy.
                let gs: Vec<f64> = dys.iter().enumerate().map(|(k, d)| gamma(k) * d).collect();
                let g_mean = gs.iter().sum::<f64>() / n;
                let gx_mean = gs
                    .iter()
                    .zip(xs)
                    .map(|(g, v)| g * (v - mean) / sd)
                    .sum::<f64>()
                    / n;
                for (k, dx) in dxs.iter_mut().enumerate() {
                    *dx = (gs[k] - g_mean - (xs[k] - mean) / sd * gx_mean) / sd;
                }
            }
            NormKind::EvoS0 => {
                // y = h(x)/sd·γ + β with h(x) = x·hardsigmoid(x) and ∂sd/∂x_i = (x_i − μ)/(n·sd):
                // dx_i = γ·dy_i·h'(x_i)/sd − (x_i − μ)/(n·sd³) · Σ_k γ·dy_k·h(x_k).
                let h = |v: f64| v * hardsigmoid(v);
                let dh = |v: f64| hardsigmoid(v) + if v.abs() < 3.0 { v / 6.0 } else { 0.0 };
                let coupling: f64 = (0..xs.len()).map(|k| gamma(k) * dys[k] * h(xs[k])).sum();
                for (k, dx) in dxs.iter_mut().enumerate() {
                    *dx = gamma(k) * dys[k] * dh(xs[k]) / sd
                        - (xs[k] - mean) / (n * sd * sd * sd) * coupling;
                }
            }
        }
    });
}
