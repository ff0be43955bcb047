//! GroupNorm and EvoNorm-S0 of one sample, group by group: the group statistics and every
//! per-channel sum in f64 (eight lanes in a fixed order, as the reductions do), the per-element
//! work in f32 with coefficients rounded once per channel.

use super::elementwise::segment_sum;
use crate::backend::{NormKind, NormLayer};

fn hardsigmoid(x: f32) -> f32 {
    (x / 6.0 + 0.5).clamp(0.0, 1.0)
}

fn hardsigmoid64(x: f64) -> f64 {
    (x / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// Mean and √(biased variance + ε) of one group's values (two passes, in f64).
fn stats(xs: &[f32], eps: f64) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = segment_sum(xs, None, |v, _| v) / n;
    let var = segment_sum(xs, None, |v, _| (v - mean) * (v - mean)) / n;
    (mean, (var + eps).sqrt())
}

/// One sample's geometry: (channels per group, pixels per channel).
fn geometry(l: &NormLayer) -> (usize, usize) {
    (l.image.channels / l.groups, l.image.height * l.image.width)
}

/// Forward of one sample: `y = norm(x)·γ + β`; `slab` is the model agent's parameter slab.
pub(super) fn forward(l: &NormLayer, slab: &[f32], x: &[f32], y: &mut [f32]) {
    let (per, plane) = geometry(l);
    let group_len = per * plane;
    for (g, (xs, ys)) in x
        .chunks_exact(group_len)
        .zip(y.chunks_exact_mut(group_len))
        .take(l.groups)
        .enumerate()
    {
        let (mean, sd) = stats(xs, l.eps);
        let m = mean as f32;
        for (c, (xr, yr)) in xs
            .chunks_exact(plane)
            .zip(ys.chunks_exact_mut(plane))
            .enumerate()
        {
            let ch = g * per + c;
            let scale = (slab[l.gamma_off + ch] as f64 / sd) as f32;
            let beta = slab[l.beta_off + ch];
            match l.kind {
                NormKind::Group => {
                    for (y, &x) in yr.iter_mut().zip(xr) {
                        *y = (x - m) * scale + beta;
                    }
                }
                NormKind::EvoS0 => {
                    for (y, &x) in yr.iter_mut().zip(xr) {
                        *y = x * hardsigmoid(x) * scale + beta;
                    }
                }
            }
        }
    }
}

/// Backward of one sample: `dx` (overwritten), and this sample's share of dγ and dβ in
/// `partial` (`[dγ; dβ]`, one f64 per channel each) for the caller to sum over the batch.
pub(super) fn backward(
    l: &NormLayer,
    slab: &[f32],
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    partial: &mut [f64],
) {
    let (per, plane) = geometry(l);
    let group_len = per * plane;
    let n = group_len as f64;
    let (dgamma, dbeta) = partial.split_at_mut(l.image.channels);
    for g in 0..l.groups {
        let at = g * group_len;
        let xs = &x[at..at + group_len];
        let dys = &dy[at..at + group_len];
        let (mean, sd) = stats(xs, l.eps);
        // Per channel: dβ = Σ dy and s = Σ dy·(x − μ) (GroupNorm) or Σ dy·h(x) (EvoNorm), so
        // dγ = s/sd; the group's coupling term is Σ_c γ_c·s_c, and GroupNorm's mean term
        // Σ_c γ_c·dβ_c.
        let (mut coupling, mut g_sum) = (0.0f64, 0.0f64);
        for c in 0..per {
            let ch = g * per + c;
            let (xr, dr) = (&xs[c * plane..][..plane], &dys[c * plane..][..plane]);
            let gamma = slab[l.gamma_off + ch] as f64;
            let db = segment_sum(dr, None, |d, _| d);
            let s = match l.kind {
                NormKind::Group => segment_sum(xr, Some(dr), |v, d| d * (v - mean)),
                NormKind::EvoS0 => segment_sum(xr, Some(dr), |v, d| d * v * hardsigmoid64(v)),
            };
            (dgamma[ch], dbeta[ch]) = (s / sd, db);
            coupling += gamma * s;
            g_sum += gamma * db;
        }
        // GroupNorm: dx = γ·dy/sd − Σγdy/(n·sd) − (x − μ)·Σγdy(x − μ)/(n·sd³);
        // EvoNorm-S0: dx = γ·dy·h'(x)/sd − (x − μ)·Σγdy·h(x)/(n·sd³), h(x) = x·hardsigmoid(x).
        let (m, cc) = (mean as f32, (coupling / (n * sd * sd * sd)) as f32);
        let shift = (g_sum / (n * sd)) as f32;
        for c in 0..per {
            let ch = g * per + c;
            let a = (slab[l.gamma_off + ch] as f64 / sd) as f32;
            let span = c * plane..(c + 1) * plane;
            let (xr, dr) = (&xs[span.clone()], &dys[span.clone()]);
            let out = &mut dx[at + span.start..at + span.end];
            match l.kind {
                NormKind::Group => {
                    for ((o, &v), &d) in out.iter_mut().zip(xr).zip(dr) {
                        *o = a * d - shift - (v - m) * cc;
                    }
                }
                NormKind::EvoS0 => {
                    for ((o, &v), &d) in out.iter_mut().zip(xr).zip(dr) {
                        let slope = if v.abs() < 3.0 { v / 6.0 } else { 0.0 };
                        *o = a * d * (hardsigmoid(v) + slope) - (v - m) * cc;
                    }
                }
            }
        }
    }
}
