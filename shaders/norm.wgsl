// Per-sample normalisations over a list of jobs: GroupNorm and EvoNorm-S0 (NGM's variant),
// y = n(x) / sd · γ_c + β_c with sd = sqrt(var_g + eps), var_g the biased variance of the input
// over group g (channels / groups channels × H × W of one sample) and n(x) = x - mean_g
// (GroupNorm) or x · hardsigmoid(x) (EvoNorm-S0). No running statistics.
//
// Layouts: activations n_jobs × batch × C × H × W (channel-major); γ[c] at m * param_stride +
// gamma_off + c, β[c] at ... + beta_off + c, for the job's model m. The group statistics are
// exact two-pass sums (mean, then squared deviations) by the fixed-order tree of `sum4`: every
// result is deterministic, with no atomics.
//   norm_forward   one workgroup per (sample row, group).
//   norm_backward  one workgroup per (job, group), looping over the job's samples, so that it also
//                  owns dγ and dβ of its channels, summed over samples in order.

struct NormParams {
    n_jobs: u32, batch: u32, channels: u32, plane: u32,
    groups: u32, gamma_off: u32, beta_off: u32, param_stride: u32,
    is_evo: u32, eps: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> jobs: array<u32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
// forward: y; backward: dx.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// backward: dy and the gradient slabs (param_stride floats per job).
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> grads: array<f32>;

var<workgroup> partial4: array<vec4<f32>, REDUCE_WG>;

// Sum of one vec4 per invocation by a fixed-order tree; every invocation gets it. The closing
// barrier lets the next call reuse the scratch. Call from uniform control flow.
fn sum4(lid: u32, v: vec4<f32>) -> vec4<f32> {
    partial4[lid] = v;
    workgroupBarrier();
    for (var h = REDUCE_WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) {
            partial4[lid] += partial4[lid + h];
        }
        workgroupBarrier();
    }
    let total = partial4[0];
    workgroupBarrier();
    return total;
}

fn hardsigmoid(v: f32) -> f32 {
    return clamp(v / 6.0 + 0.5, 0.0, 1.0);
}

// The normalised numerator n(x).
fn numerator(v: f32, mean: f32) -> f32 {
    if (p.is_evo != 0u) {
        return v * hardsigmoid(v);
    }
    return v - mean;
}

// Mean and sd of the group of `n` values at x[start..]: two passes.
fn group_stats(lid: u32, start: u32, n: u32) -> vec2<f32> {
    var acc = 0.0;
    for (var k = lid; k < n; k += REDUCE_WG) {
        acc += x[start + k];
    }
    let mean = sum4(lid, vec4<f32>(acc, 0.0, 0.0, 0.0)).x / f32(n);
    var dev = 0.0;
    for (var k = lid; k < n; k += REDUCE_WG) {
        let d = x[start + k] - mean;
        dev += d * d;
    }
    let var_g = sum4(lid, vec4<f32>(dev, 0.0, 0.0, 0.0)).x / f32(n);
    return vec2<f32>(mean, sqrt(var_g + p.eps));
}

@compute @workgroup_size(REDUCE_WG)
fn norm_forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if (s >= p.n_jobs * p.batch * p.groups) {
        return;
    }
    let row = s / p.groups;
    let g = s - row * p.groups;
    let per_group = p.channels / p.groups;
    let n = per_group * p.plane;
    let start = row * p.channels * p.plane + g * n;
    let slab = jobs[2u * (row / p.batch)] * p.param_stride;
    let stats = group_stats(lid, start, n);
    for (var k = lid; k < n; k += REDUCE_WG) {
        let c = g * per_group + k / p.plane;
        let v = x[start + k];
        out[start + k] = numerator(v, stats.x) / stats.y * params[slab + p.gamma_off + c] + params[slab + p.beta_off + c];
    }
}

// For each sample of job j and group g: dx, and the sample's share of dγ_c = sum dy · n(x)/sd
// and dβ_c = sum dy for the group's channels, added to slab j in sample order.
//   GroupNorm:   dx = (γ·dy - mean(γ·dy) - x̂ · mean(γ·dy · x̂)) / sd, x̂ = (x - mean) / sd.
//   EvoNorm-S0:  dx = γ·dy · h'(x) / sd - (x - mean) / (n · sd³) · sum(γ·dy · h(x)),
//                h(x) = x · hardsigmoid(x), h' = hardsigmoid + x/6 on |x| < 3.
@compute @workgroup_size(REDUCE_WG)
fn norm_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if (s >= p.n_jobs * p.groups) {
        return;
    }
    let j = s / p.groups;
    let g = s - j * p.groups;
    let per_group = p.channels / p.groups;
    let n = per_group * p.plane;
    let nf = f32(n);
    let slab = jobs[2u * j] * p.param_stride;
    let g_slab = j * p.param_stride;
    let c0 = g * per_group;
    for (var b = 0u; b < p.batch; b++) {
        let start = ((j * p.batch + b) * p.channels) * p.plane + g * n;
        let stats = group_stats(lid, start, n);
        let mean = stats.x;
        let sd = stats.y;
        // (sum γ·dy, sum γ·dy·(x - mean), sum γ·dy·h(x)).
        var acc = vec4<f32>(0.0);
        for (var k = lid; k < n; k += REDUCE_WG) {
            let v = x[start + k];
            let gd = params[slab + p.gamma_off + c0 + k / p.plane] * dy[start + k];
            acc += vec4<f32>(gd, gd * (v - mean), gd * v * hardsigmoid(v), 0.0);
        }
        let sums = sum4(lid, acc);
        let g_mean = sums.x / nf;
        let gx_mean = sums.y / sd / nf;
        let coupling = sums.z / (nf * sd * sd * sd);
        for (var cc = 0u; cc < per_group; cc++) {
            let c = c0 + cc;
            let gamma = params[slab + p.gamma_off + c];
            var dgb = vec4<f32>(0.0);
            for (var px = lid; px < p.plane; px += REDUCE_WG) {
                let k = cc * p.plane + px;
                let v = x[start + k];
                let d = dy[start + k];
                let gd = gamma * d;
                var dx = 0.0;
                if (p.is_evo != 0u) {
                    var dh = hardsigmoid(v);
                    if (abs(v) < 3.0) {
                        dh += v / 6.0;
                    }
                    dx = gd * dh / sd - (v - mean) * coupling;
                } else {
                    dx = (gd - g_mean - (v - mean) / sd * gx_mean) / sd;
                }
                out[start + k] = dx;
                dgb += vec4<f32>(d * numerator(v, mean) / sd, d, 0.0, 0.0);
            }
            let total = sum4(lid, dgb);
            if (lid == 0u) {
                let first = b == 0u;
                let ga = g_slab + p.gamma_off + c;
                let ba = g_slab + p.beta_off + c;
                grads[ga] = select(grads[ga], 0.0, first) + total.x;
                grads[ba] = select(grads[ba], 0.0, first) + total.y;
            }
        }
    }
}
