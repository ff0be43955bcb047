// 2-D convolutions over a list of jobs, as implicit GEMMs: the patches are read straight from
// the images (no im2col buffer), so every layer's memory is its activations. Job j = (model m_j,
// data d_j) is two u32 at jobs[2j], jobs[2j+1]; all jobs run in one dispatch per layer and
// direction.
//
// Layouts: a sample is a C × H × W image, channel-major (NCHW); activation block k holds `batch`
// samples. The layer-input block of job j is d_j when `in_by_data` (the gathered minibatch) and j
// otherwise. Weights W[oc, ic, ky, kx] at m * param_stride + w_off + ((oc * in_c + ic) * k + ky)
// * k + kx (PyTorch order), bias b[oc] at m * param_stride + b_off + oc when `has_bias`.
// Output pixel (oy, ox) reads input pixel (oy * stride + ky - pad, ox * stride + kx - pad),
// zero outside the image.
//
// Every invocation computes a register tile of its job's GEMM (4 × 8 forward, 4 × 4 backward);
// loads are clamped in range (or select 0 in the padding) and stores masked at the edges:
//   forward           M = batch × out pixels, N = out channels, K = in_c · k²
//   backward_data     M = batch × in pixels,  N = in channels,  K = out_c · k² (the transposed conv)
//   backward_weights  M = out channels,       N = in_c · k² (+1: the bias), K = batch × out pixels
// backward_weights reduces over its job's samples inside one invocation, in a fixed order: the
// result is deterministic, with no atomics.

struct ConvParams {
    n_jobs: u32, batch: u32, in_c: u32, in_h: u32,
    in_w: u32, out_c: u32, out_h: u32, out_w: u32,
    kernel: u32, stride: u32, pad: u32, param_stride: u32,
    w_off: u32, b_off: u32, has_bias: u32, in_by_data: u32,
}

const T: u32 = 4u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> jobs: array<u32>;
// forward and backward_data: the parameter slabs; backward_weights: dy.
@group(0) @binding(2) var<storage, read> lhs: array<f32>;
// forward and backward_weights: the layer input; backward_data: dy.
@group(0) @binding(3) var<storage, read> rhs: array<f32>;
// forward: y; backward_data: dx; backward_weights: the gradient slabs (`param_stride` per job).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn input_block(j: u32) -> u32 {
    return select(j, jobs[2u * j + 1u], p.in_by_data != 0u);
}

// first .. first + 3, each clamped to last (keeps the loads of an edge tile in range).
fn clamp4(first: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(first, first + 1u, first + 2u, first + 3u), vec4<u32>(last));
}

// (job, first M index, first N index) of tile `id` in a grid of jobs × n tiles × m tiles, M
// fastest: neighbouring invocations share their N indices (the same weights).
fn tile_at(id: u32, rows: u32, cols: u32) -> vec3<u32> {
    let tm = (rows + T - 1u) / T;
    let tn = (cols + T - 1u) / T;
    let j = id / (tm * tn);
    let rest = id - j * tm * tn;
    return vec3<u32>(j, (rest % tm) * T, (rest / tm) * T);
}

fn tile_count(rows: u32, cols: u32) -> u32 {
    return p.n_jobs * ((rows + T - 1u) / T) * ((cols + T - 1u) / T);
}

// The four values of `rhs` at `at` where `ok`, 0 elsewhere (padding taps read nothing).
fn rhs4(at: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4<u32>(0u), at, ok);
    return select(vec4<f32>(0.0), vec4<f32>(rhs[i.x], rhs[i.y], rhs[i.z], rhs[i.w]), ok);
}

fn lhs4(at: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(lhs[at.x], lhs[at.y], lhs[at.z], lhs[at.w]);
}

// y[j, b, oc, oy, ox] = bias[oc] + sum_{ic, ky, kx} W[oc, ic, ky, kx] · x[blk, b, ic, iy, ix].
// Tile: 4 neighbouring pixels of one output row × 8 output channels (8 FMAs per input load).
// The padding test along y is one scalar per kernel row, and a tile whose taps all fall inside
// the image along x loads without masks (every tile of a row but the first and last).
@compute @workgroup_size(WG)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let out_plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let tx = (p.out_w + T - 1u) / T;
    let tm = p.batch * p.out_h * tx;
    let tn = (p.out_c + 7u) / 8u;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tm * tn) {
        return;
    }
    let j = id / (tm * tn);
    let rest = id - j * tm * tn;
    let mt = rest % tm;
    let o0 = (rest / tm) * 8u;
    let row = mt / tx;
    let ox0 = (mt - row * tx) * T;
    let b = row / p.out_h;
    let oy = row - b * p.out_h;
    let st = i32(p.stride);
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = vec4<i32>(i32(ox0 * p.stride) - i32(p.pad)) + vec4<i32>(0, st, 2 * st, 3 * st);
    let w = vec4<i32>(i32(p.in_w));
    // Every tap of the tile inside the image along x: its four pixels exist and the window's
    // first and last columns are inside.
    let inside = ox0 + T <= p.out_w && ix0.x >= 0 && ix0.w + i32(p.kernel) <= i32(p.in_w);
    let x_base = (input_block(j) * p.batch + b) * p.in_c * in_plane;
    let kk = p.kernel * p.kernel;
    let slab = jobs[2u * j] * p.param_stride;
    let w_lo = slab + p.w_off + clamp4(o0, p.out_c - 1u) * (p.in_c * kk);
    let w_hi = slab + p.w_off + clamp4(o0 + 4u, p.out_c - 1u) * (p.in_c * kk);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    for (var ic = 0u; ic < p.in_c; ic++) {
        let c_base = x_base + ic * in_plane;
        for (var ky = 0u; ky < p.kernel; ky++) {
            let iy = iy0 + i32(ky);
            if (iy < 0 || iy >= i32(p.in_h)) {
                continue;
            }
            let row_base = c_base + u32(iy) * p.in_w;
            let wk = (ic * p.kernel + ky) * p.kernel;
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ix = ix0 + i32(kx);
                var x: vec4<f32>;
                if (inside) {
                    let at = row_base + vec4<u32>(ix);
                    x = vec4<f32>(rhs[at.x], rhs[at.y], rhs[at.z], rhs[at.w]);
                } else {
                    let ok = (ix >= vec4<i32>(0)) & (ix < w);
                    x = rhs4(row_base + vec4<u32>(max(ix, vec4<i32>(0))), ok);
                }
                let lo = lhs4(w_lo + wk + kx);
                let hi = lhs4(w_hi + wk + kx);
                a0 += x.x * lo;
                a1 += x.y * lo;
                a2 += x.z * lo;
                a3 += x.w * lo;
                b0 += x.x * hi;
                b1 += x.y * hi;
                b2 += x.z * hi;
                b3 += x.w * hi;
            }
        }
    }
    var tile_rows = array<vec4<f32>, 8>(a0, b0, a1, b1, a2, b2, a3, b3);
    let y_base = (j * p.batch + b) * p.out_c * out_plane + oy * p.out_w;
    for (var t = 0u; t < T; t++) {
        let ox = ox0 + t;
        if (ox >= p.out_w) {
            break;
        }
        for (var u = 0u; u < 8u; u++) {
            let o = o0 + u;
            if (o < p.out_c) {
                var v = tile_rows[2u * t + u / 4u][u % 4u];
                if (p.has_bias != 0u) {
                    v += lhs[slab + p.b_off + o];
                }
                out[y_base + o * out_plane + ox] = v;
            }
        }
    }
}

// Floor division of v by the stride, updated as v steps down by one (no division in the loops):
// the quotient q and the remainder s ∈ [0, stride).
struct Steps {
    q: vec4<i32>,
    s: vec4<i32>,
}

fn steps_of(v: vec4<u32>) -> Steps {
    let st = vec4<u32>(p.stride);
    return Steps(vec4<i32>(v / st), vec4<i32>(v % st));
}

fn step_down(a: Steps) -> Steps {
    let wrap = a.s == vec4<i32>(0);
    return Steps(select(a.q, a.q - 1, wrap), select(a.s - 1, vec4<i32>(i32(p.stride) - 1), wrap));
}

// dx[j, b, ic, iy, ix] = sum_{oc, ky, kx} W[oc, ic, ky, kx] · dy[j, b, oc, oy, ox] over the taps
// with oy · stride = iy + pad - ky (and the same along x) inside the output.
// Tile: 4 consecutive (sample, input pixel) rows × 4 input channels.
@compute @workgroup_size(WG)
fn conv_backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let out_plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let rows = p.batch * in_plane;
    let id = linear_id(gid, nwg);
    if (id >= tile_count(rows, p.in_c)) {
        return;
    }
    let tile = tile_at(id, rows, p.in_c);
    let j = tile.x;
    let m0 = tile.y;
    let c0 = tile.z;
    let r = clamp4(m0, rows - 1u);
    let b = r / in_plane;
    let pix = r - b * in_plane;
    let iy = pix / p.in_w;
    let ix = pix - iy * p.in_w;
    let dy_base = (j * p.batch + b) * p.out_c * out_plane;
    let kk = p.kernel * p.kernel;
    let w_base = jobs[2u * j] * p.param_stride + p.w_off + clamp4(c0, p.in_c - 1u) * kk;
    let oh = vec4<i32>(i32(p.out_h));
    let ow = vec4<i32>(i32(p.out_w));
    // (iy + pad - ky) / stride at ky = 0, and likewise along x.
    let y_first = steps_of(iy + p.pad);
    let x_first = steps_of(ix + p.pad);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var oc = 0u; oc < p.out_c; oc++) {
        let c_base = dy_base + oc * out_plane;
        let w_oc = w_base + oc * p.in_c * kk;
        var ys = y_first;
        for (var ky = 0u; ky < p.kernel; ky++) {
            let ok_y = (ys.s == vec4<i32>(0)) & (ys.q >= vec4<i32>(0)) & (ys.q < oh);
            let row_base = c_base + vec4<u32>(max(ys.q, vec4<i32>(0))) * p.out_w;
            var xs = x_first;
            for (var kx = 0u; kx < p.kernel; kx++) {
                let ok = ok_y & (xs.s == vec4<i32>(0)) & (xs.q >= vec4<i32>(0)) & (xs.q < ow);
                let d = rhs4(row_base + vec4<u32>(max(xs.q, vec4<i32>(0))), ok);
                let wt = lhs4(w_oc + ky * p.kernel + kx);
                acc0 += d.x * wt;
                acc1 += d.y * wt;
                acc2 += d.z * wt;
                acc3 += d.w * wt;
                xs = step_down(xs);
            }
            ys = step_down(ys);
        }
    }
    var tile_rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var t = 0u; t < T; t++) {
        let row = m0 + t;
        if (row >= rows) {
            break;
        }
        let bt = row / in_plane;
        let x_base = ((j * p.batch + bt) * p.in_c) * in_plane + row - bt * in_plane;
        for (var u = 0u; u < T; u++) {
            if (c0 + u < p.in_c) {
                out[x_base + (c0 + u) * in_plane] = tile_rows[t][u];
            }
        }
    }
}

// Gradient slab of job j: dW[oc, ic, ky, kx] = sum_{b, oy, ox} dy[j, b, oc, oy, ox] ·
// x[blk, b, ic, iy, ix] and db[oc] = sum_{b, oy, ox} dy[j, b, oc, oy, ox] (column in_c · k²
// stands for the bias, whose input is 1). Tile: 4 output channels × 4 columns (ic, ky, kx).
@compute @workgroup_size(WG)
fn conv_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let out_plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let kk = p.kernel * p.kernel;
    let n_w = p.in_c * kk;
    let cols = n_w + p.has_bias;
    let id = linear_id(gid, nwg);
    if (id >= tile_count(p.out_c, cols)) {
        return;
    }
    // Output channels fastest: neighbouring invocations read the same input taps.
    let tile = tile_at(id, p.out_c, cols);
    let j = tile.x;
    let o0 = tile.y;
    let n0 = tile.z;
    let n = vec4<u32>(n0, n0 + 1u, n0 + 2u, n0 + 3u);
    let bias_col = n >= vec4<u32>(n_w);
    let nc = min(n, vec4<u32>(n_w - 1u));
    let ic = nc / kk;
    let tap = nc - ic * kk;
    let ky = tap / p.kernel;
    let kx = tap - ky * p.kernel;
    let dy_oc = clamp4(o0, p.out_c - 1u) * out_plane;
    let x_ic = ic * in_plane;
    let iy0 = vec4<i32>(ky) - i32(p.pad);
    let ix0 = vec4<i32>(kx) - i32(p.pad);
    let h = vec4<i32>(i32(p.in_h));
    let w = vec4<i32>(i32(p.in_w));
    let blk = input_block(j);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let x_b = (blk * p.batch + b) * p.in_c * in_plane + x_ic;
        let dy_b = (j * p.batch + b) * p.out_c * out_plane + dy_oc;
        for (var oy = 0u; oy < p.out_h; oy++) {
            let iy = iy0 + i32(oy * p.stride);
            let ok_y = (iy >= vec4<i32>(0)) & (iy < h);
            let row_base = x_b + vec4<u32>(max(iy, vec4<i32>(0))) * p.in_w;
            let dy_row = dy_b + oy * p.out_w;
            for (var ox = 0u; ox < p.out_w; ox++) {
                let ix = ix0 + i32(ox * p.stride);
                let ok = ok_y & (ix >= vec4<i32>(0)) & (ix < w);
                let x = select(rhs4(row_base + vec4<u32>(max(ix, vec4<i32>(0))), ok), vec4<f32>(1.0), bias_col);
                let d = lhs4(dy_row + ox);
                acc0 += d.x * x;
                acc1 += d.y * x;
                acc2 += d.z * x;
                acc3 += d.w * x;
            }
        }
    }
    var tile_rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let g_base = j * p.param_stride;
    for (var t = 0u; t < T; t++) {
        let oc = o0 + t;
        if (oc >= p.out_c) {
            break;
        }
        for (var u = 0u; u < T; u++) {
            let c = n0 + u;
            if (c < n_w) {
                out[g_base + p.w_off + oc * n_w + c] = tile_rows[t][u];
            } else if (c < cols) {
                out[g_base + p.b_off + oc] = tile_rows[t][u];
            }
        }
    }
}
