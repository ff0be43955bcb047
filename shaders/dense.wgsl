// Batched dense layers over a list of jobs. Job j = (model m_j, data d_j) is stored as two u32
// at jobs[2j], jobs[2j+1]. All jobs of the graph run in one dispatch per layer and direction.
//
// Parameter layout (one slab of `param_stride` floats per agent, PyTorch order):
//   W[o, i] at m * param_stride + w_off + o * in_dim + i,   b[o] at m * param_stride + b_off + o.
// Activation layout: block-major, block k holds `batch` rows of a layer's width. The layer input
// block of job j is d_j when `in_by_data` (the gathered minibatch of agent d_j) and j otherwise.
//
// Every invocation computes a 4 × 4 register tile; loads are clamped in range and stores masked.
// Variants: the vec4 one (V = vec4<f32>) reads along the rows four floats at a time through the
// `_v` views; the host picks it where every row read that way starts on a vec4 boundary (forward:
// in_dim, w_off and param_stride multiples of 4; backward_weights: in_dim). backward_data runs
// scalar only. RELU is a pipeline constant.

struct DenseParams {
    n_jobs: u32, batch: u32, in_dim: u32, out_dim: u32,
    w_off: u32, b_off: u32, param_stride: u32, in_by_data: u32,
    // Job index of this dispatch's first job (the per-agent mode dispatches one job at a time).
    first_job: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

const T: u32 = 4u;

// dense_forward: apply the ReLU to the output; dense_backward_data: apply the previous layer's
// ReLU mask to dx (its output is this layer's input, and relu(z) > 0 iff z > 0).
override RELU: bool = false;

@group(0) @binding(0) var<uniform> p: DenseParams;
@group(0) @binding(1) var<storage, read> jobs: array<u32>;

// Weights and biases: forward and backward_data_wide read the V view, backward_data the scalar
// one (one entry point may use only one of two views of a binding).
@group(0) @binding(2) var<storage, read> params_v: array<V>;
@group(0) @binding(2) var<storage, read> params: array<f32>;

// Parameter i (a float index) through the V view.
fn param_at(i: u32) -> f32 {
    return vlane(params_v[i / VW], i % VW);
}

// forward: layer input (V view); backward_data and backward_weights: d(pre-activation).
@group(0) @binding(3) var<storage, read> a_in_v: array<V>;
@group(0) @binding(3) var<storage, read> a_in: array<f32>;

// forward: unused; backward_data: the layer input (for the ReLU mask); backward_weights: the layer
// input (V view).
@group(0) @binding(4) var<storage, read> b_in: array<f32>;
@group(0) @binding(4) var<storage, read> b_in_v: array<V>;

// V index within a row of the layer-input columns i0 .. i0 + 3, each clamped to the row's k V:
// the vec4 variant reads the four as one V (i0 and in_dim are multiples of 4), the scalar one
// one by one. Branches on the constant VW are resolved at compile time.
fn input_cols(i0: u32, k: u32) -> vec4<u32> {
    if (VW == 4u) {
        return vec4<u32>(min(i0 / 4u, k - 1u));
    }
    return clamp4(i0, k - 1u);
}

// Those columns of the layer-input row that starts at V index `row`.
fn load_cols(row: u32, c: vec4<u32>) -> vec4<f32> {
    if (VW == 4u) {
        return vec4<f32>(b_in_v[row + c.x]);
    }
    return vec4<f32>(vlane(b_in_v[row + c.x], 0u), vlane(b_in_v[row + c.y], 0u), vlane(b_in_v[row + c.z], 0u), vlane(b_in_v[row + c.w], 0u));
}

// forward: layer output; backward_data: d(pre-activation) of the previous layer;
// backward_weights: gradient slabs, one per job, `param_stride` floats each.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn input_block(j: u32) -> u32 {
    return select(j, jobs[2u * j + 1u], p.in_by_data != 0u);
}

// Tiles of T along n elements.
fn tiles(n: u32) -> u32 {
    return (n + T - 1u) / T;
}

// (job, first row, first column) of tile `id` in a grid of jobs × rows × cols tiles, cols fastest.
fn tile_at(id: u32, rows: u32, cols: u32) -> vec3<u32> {
    let j = id / (rows * cols);
    let rest = id - j * rows * cols;
    return vec3<u32>(p.first_job + j, (rest / cols) * T, (rest % cols) * T);
}

// first .. first + 3, each clamped to last (keeps the loads of an edge tile in range).
fn clamp4(first: u32, last: u32) -> vec4<u32> {
    return min(vec4<u32>(first, first + 1u, first + 2u, first + 3u), vec4<u32>(last));
}

// Writes a forward tile (rows b0.., outputs o0..) of job j, applying the ReLU; masked at the edges.
fn store_forward_tile(j: u32, b0: u32, o0: u32, tile: array<vec4<f32>, 4>) {
    var rows = tile;
    let y_base = j * p.batch * p.out_dim;
    for (var t = 0u; t < T; t++) {
        let row = b0 + t;
        if (row >= p.batch) {
            break;
        }
        var v = rows[t];
        if (RELU) {
            v = max(v, vec4<f32>(0.0));
        }
        for (var u = 0u; u < T; u++) {
            if (o0 + u < p.out_dim) {
                out[y_base + row * p.out_dim + o0 + u] = v[u];
            }
        }
    }
}

// y[j, b, o] = act(sum_i x[blk, b, i] * W[m, o, i] + bias[m, o]); tile = 4 rows × 4 outputs. The
// reduction runs over the k = in_dim / VW elements of V of a row: the vec4 variant sums each
// vec4's four products with dot, so 8 vec4 loads feed 64 multiply-adds.
@compute @workgroup_size(WG)
fn dense_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_b = tiles(p.batch);
    let tiles_o = tiles(p.out_dim);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_o) {
        return;
    }
    let tile = tile_at(id, tiles_b, tiles_o);
    let j = tile.x;
    let b0 = tile.y;
    let o0 = tile.z;
    let m = jobs[2u * j];
    let k = p.in_dim / VW;
    // Clamped row/output indices keep every load in range; stores are masked.
    let o = clamp4(o0, p.out_dim - 1u);
    let xr = input_block(j) * p.batch * k + clamp4(b0, p.batch - 1u) * k;
    let wr = (m * p.param_stride + p.w_off) / VW + o * k;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = 0u; i < k; i++) {
        let w0 = params_v[wr.x + i];
        let w1 = params_v[wr.y + i];
        let w2 = params_v[wr.z + i];
        let w3 = params_v[wr.w + i];
        let x0 = a_in_v[xr.x + i];
        let x1 = a_in_v[xr.y + i];
        let x2 = a_in_v[xr.z + i];
        let x3 = a_in_v[xr.w + i];
        acc0 += vec4<f32>(vdot(x0, w0), vdot(x0, w1), vdot(x0, w2), vdot(x0, w3));
        acc1 += vec4<f32>(vdot(x1, w0), vdot(x1, w1), vdot(x1, w2), vdot(x1, w3));
        acc2 += vec4<f32>(vdot(x2, w0), vdot(x2, w1), vdot(x2, w2), vdot(x2, w3));
        acc3 += vec4<f32>(vdot(x3, w0), vdot(x3, w1), vdot(x3, w2), vdot(x3, w3));
    }
    let bb = m * p.param_stride + p.b_off + o;
    let bias = vec4<f32>(param_at(bb.x), param_at(bb.y), param_at(bb.z), param_at(bb.w));
    store_forward_tile(j, b0, o0, array<vec4<f32>, 4>(acc0 + bias, acc1 + bias, acc2 + bias, acc3 + bias));
}

// dx[j, b, i] = sum_o dz[j, b, o] * W[m, o, i], times relu'(x[j, b, i]) when RELU is set.
// Tile = 4 rows × 4 inputs; adjacent invocations read adjacent columns of W.
@compute @workgroup_size(WG)
fn dense_backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_b = tiles(p.batch);
    let tiles_i = tiles(p.in_dim);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_i) {
        return;
    }
    let tile = tile_at(id, tiles_b, tiles_i);
    let j = tile.x;
    let b0 = tile.y;
    let i0 = tile.z;
    let w_base = jobs[2u * j] * p.param_stride + p.w_off;
    let ii = clamp4(i0, p.in_dim - 1u);
    let dz_r = j * p.batch * p.out_dim + clamp4(b0, p.batch - 1u) * p.out_dim;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var o = 0u; o < p.out_dim; o++) {
        let wo = w_base + o * p.in_dim;
        let w = vec4<f32>(params[wo + ii.x], params[wo + ii.y], params[wo + ii.z], params[wo + ii.w]);
        acc0 += a_in[dz_r.x + o] * w;
        acc1 += a_in[dz_r.y + o] * w;
        acc2 += a_in[dz_r.z + o] * w;
        acc3 += a_in[dz_r.w + o] * w;
    }
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let x_base = input_block(j) * p.batch * p.in_dim;
    let dx_base = j * p.batch * p.in_dim;
    for (var t = 0u; t < T; t++) {
        let row = b0 + t;
        if (row >= p.batch) {
            break;
        }
        for (var u = 0u; u < T; u++) {
            let i = i0 + u;
            if (i < p.in_dim) {
                var v = rows[t][u];
                if (RELU && b_in[x_base + row * p.in_dim + i] <= 0.0) {
                    v = 0.0;
                }
                out[dx_base + row * p.in_dim + i] = v;
            }
        }
    }
}

// Gradient slab of job j: dW[o, i] = sum_b dz[j, b, o] * x[blk, b, i] and db[o] = sum_b dz[j, b, o]
// (column i = in_dim stands for the bias, whose input is 1). Tile = 4 outputs × 4 columns; the
// vec4 variant loads a tile's four input columns at once.
@compute @workgroup_size(WG)
fn dense_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_o = tiles(p.out_dim);
    let tiles_i = tiles(p.in_dim + 1u);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_o * tiles_i) {
        return;
    }
    let tile = tile_at(id, tiles_o, tiles_i);
    let j = tile.x;
    let o0 = tile.y;
    let i0 = tile.z;
    let ov = clamp4(o0, p.out_dim - 1u);
    // Columns at or past in_dim read x = 1 (the bias column).
    let bias_col = vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u) >= vec4<u32>(p.in_dim);
    let k = p.in_dim / VW;
    let x_base = input_block(j) * p.batch * k;
    let cols = input_cols(i0, k);
    let dz_base = j * p.batch * p.out_dim;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let x = select(load_cols(x_base + b * k, cols), vec4<f32>(1.0), bias_col);
        let zb = dz_base + b * p.out_dim;
        acc0 += a_in[zb + ov.x] * x;
        acc1 += a_in[zb + ov.y] * x;
        acc2 += a_in[zb + ov.z] * x;
        acc3 += a_in[zb + ov.w] * x;
    }
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let g_base = j * p.param_stride;
    for (var t = 0u; t < T; t++) {
        let o = o0 + t;
        if (o >= p.out_dim) {
            break;
        }
        for (var u = 0u; u < T; u++) {
            let i = i0 + u;
            if (i < p.in_dim) {
                out[g_base + p.w_off + o * p.in_dim + i] = rows[t][u];
            } else if (i == p.in_dim) {
                out[g_base + p.b_off + o] = rows[t][u];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wide kernels: the variant for CPU rasterisers (lavapipe, llvmpipe), which run the invocations
// of a workgroup as the SIMD lanes of a CPU thread and pay for every load of every lane (a
// gather), while the arithmetic is cheap. So each invocation computes an 8 × 8 register tile:
// forward reads 16 V per element of the reduction for 64 dot products (the 4 × 4 tile: 8 for
// 16), backward_weights 8 floats of dz and 8 input columns per row for 64 products,
// backward_data 8 floats of dz and 8 weights per output for 64. Every output is summed in the
// same order as by the tiled kernels (bit-identical). The loops over the tile have constant
// trip counts: shader compilers unroll them, so the tile stays in registers.

const TW: u32 = 8u;

// An 8 × 8 tile of sums: lo[t] holds columns 0 .. 3 of row t, hi[t] columns 4 .. 7.
struct Tile8 {
    lo: array<vec4<f32>, 8>,
    hi: array<vec4<f32>, 8>,
}

// Tiles of TW along n elements.
fn wide_tiles(n: u32) -> u32 {
    return (n + TW - 1u) / TW;
}

// (job, first row, first column) of wide tile `id` in a grid of jobs × rows × cols tiles.
fn wide_tile_at(id: u32, rows: u32, cols: u32) -> vec3<u32> {
    let j = id / (rows * cols);
    let rest = id - j * rows * cols;
    return vec3<u32>(p.first_job + j, (rest / cols) * TW, (rest % cols) * TW);
}

// base + min(first + t, last) * scale for t = 0 .. 7: the start of each of the tile's rows or
// columns, clamped in range (the edges' sums are computed and not stored).
fn starts8(base: u32, first: u32, last: u32, scale: u32) -> array<u32, 8> {
    var r: array<u32, 8>;
    for (var t = 0u; t < TW; t++) {
        r[t] = base + min(first + t, last) * scale;
    }
    return r;
}

// tile += z ⊗ (lo, hi): row t gains z[t] times the eight columns.
fn outer8(tile: ptr<function, Tile8>, z: array<f32, 8>, lo: vec4<f32>, hi: vec4<f32>) {
    for (var t = 0u; t < TW; t++) {
        (*tile).lo[t] += z[t] * lo;
        (*tile).hi[t] += z[t] * hi;
    }
}

// Element (t, u) of a tile.
fn tile_at8(tile: ptr<function, Tile8>, t: u32, u: u32) -> f32 {
    if (u < 4u) {
        return (*tile).lo[t][u];
    }
    return (*tile).hi[t][u - 4u];
}

// Stores the forward rows b0 .. b0 + 7 of outputs o0 .. o0 + 7 (lo: outputs o0 .. o0 + 3, hi:
// the next four) of job j, with the bias and the ReLU; masked at the edges.
fn store_forward_wide(j: u32, m: u32, b0: u32, o0: u32, lo: array<vec4<f32>, 8>, hi: array<vec4<f32>, 8>) {
    var l = lo;
    var h = hi;
    let bb = m * p.param_stride + p.b_off;
    let b_lo = vec4<f32>(param_at(bb + min(o0, p.out_dim - 1u)), param_at(bb + min(o0 + 1u, p.out_dim - 1u)), param_at(bb + min(o0 + 2u, p.out_dim - 1u)), param_at(bb + min(o0 + 3u, p.out_dim - 1u)));
    let b_hi = vec4<f32>(param_at(bb + min(o0 + 4u, p.out_dim - 1u)), param_at(bb + min(o0 + 5u, p.out_dim - 1u)), param_at(bb + min(o0 + 6u, p.out_dim - 1u)), param_at(bb + min(o0 + 7u, p.out_dim - 1u)));
    for (var t = 0u; t < TW; t++) {
        let row = b0 + t;
        if (row >= p.batch) {
            break;
        }
        var v0 = l[t] + b_lo;
        var v1 = h[t] + b_hi;
        if (RELU) {
            v0 = max(v0, vec4<f32>(0.0));
            v1 = max(v1, vec4<f32>(0.0));
        }
        let y = (j * p.batch + row) * p.out_dim;
        for (var u = 0u; u < 4u; u++) {
            if (o0 + u < p.out_dim) {
                out[y + o0 + u] = v0[u];
            }
            if (o0 + 4u + u < p.out_dim) {
                out[y + o0 + 4u + u] = v1[u];
            }
        }
    }
}

// dense_forward on 8 rows × 8 outputs per invocation. Written out rather than with Tile8 and
// loops: this form measured 25 % faster on lavapipe (BENCHMARKS.md, issue 12).
@compute @workgroup_size(WG)
fn dense_forward_wide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_b = wide_tiles(p.batch);
    let tiles_o = wide_tiles(p.out_dim);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_o) {
        return;
    }
    let tile = wide_tile_at(id, tiles_b, tiles_o);
    let j = tile.x;
    let b0 = tile.y;
    let o0 = tile.z;
    let m = jobs[2u * j];
    let k = p.in_dim / VW;
    let xb = input_block(j) * p.batch * k;
    let xa = xb + clamp4(b0, p.batch - 1u) * k;
    let xc = xb + clamp4(b0 + 4u, p.batch - 1u) * k;
    let wb = (m * p.param_stride + p.w_off) / VW;
    let wa = wb + clamp4(o0, p.out_dim - 1u) * k;
    let wc = wb + clamp4(o0 + 4u, p.out_dim - 1u) * k;
    var a0 = vec4<f32>(0.0);
    var c0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var i = 0u; i < k; i++) {
        let w0 = params_v[wa.x + i];
        let w1 = params_v[wa.y + i];
        let w2 = params_v[wa.z + i];
        let w3 = params_v[wa.w + i];
        let w4 = params_v[wc.x + i];
        let w5 = params_v[wc.y + i];
        let w6 = params_v[wc.z + i];
        let w7 = params_v[wc.w + i];
        let x0 = a_in_v[xa.x + i];
        a0 += vec4<f32>(vdot(x0, w0), vdot(x0, w1), vdot(x0, w2), vdot(x0, w3));
        c0 += vec4<f32>(vdot(x0, w4), vdot(x0, w5), vdot(x0, w6), vdot(x0, w7));
        let x1 = a_in_v[xa.y + i];
        a1 += vec4<f32>(vdot(x1, w0), vdot(x1, w1), vdot(x1, w2), vdot(x1, w3));
        c1 += vec4<f32>(vdot(x1, w4), vdot(x1, w5), vdot(x1, w6), vdot(x1, w7));
        let x2 = a_in_v[xa.z + i];
        a2 += vec4<f32>(vdot(x2, w0), vdot(x2, w1), vdot(x2, w2), vdot(x2, w3));
        c2 += vec4<f32>(vdot(x2, w4), vdot(x2, w5), vdot(x2, w6), vdot(x2, w7));
        let x3 = a_in_v[xa.w + i];
        a3 += vec4<f32>(vdot(x3, w0), vdot(x3, w1), vdot(x3, w2), vdot(x3, w3));
        c3 += vec4<f32>(vdot(x3, w4), vdot(x3, w5), vdot(x3, w6), vdot(x3, w7));
        let x4 = a_in_v[xc.x + i];
        a4 += vec4<f32>(vdot(x4, w0), vdot(x4, w1), vdot(x4, w2), vdot(x4, w3));
        c4 += vec4<f32>(vdot(x4, w4), vdot(x4, w5), vdot(x4, w6), vdot(x4, w7));
        let x5 = a_in_v[xc.y + i];
        a5 += vec4<f32>(vdot(x5, w0), vdot(x5, w1), vdot(x5, w2), vdot(x5, w3));
        c5 += vec4<f32>(vdot(x5, w4), vdot(x5, w5), vdot(x5, w6), vdot(x5, w7));
        let x6 = a_in_v[xc.z + i];
        a6 += vec4<f32>(vdot(x6, w0), vdot(x6, w1), vdot(x6, w2), vdot(x6, w3));
        c6 += vec4<f32>(vdot(x6, w4), vdot(x6, w5), vdot(x6, w6), vdot(x6, w7));
        let x7 = a_in_v[xc.w + i];
        a7 += vec4<f32>(vdot(x7, w0), vdot(x7, w1), vdot(x7, w2), vdot(x7, w3));
        c7 += vec4<f32>(vdot(x7, w4), vdot(x7, w5), vdot(x7, w6), vdot(x7, w7));
    }
    store_forward_wide(j, m, b0, o0, array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7), array<vec4<f32>, 8>(c0, c1, c2, c3, c4, c5, c6, c7));
}

// dense_backward_weights on 8 outputs × 8 input columns per invocation (columns at or past in_dim
// read x = 1: the bias column).
@compute @workgroup_size(WG)
fn dense_backward_weights_wide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_o = wide_tiles(p.out_dim);
    let tiles_i = wide_tiles(p.in_dim + 1u);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_o * tiles_i) {
        return;
    }
    let tile = wide_tile_at(id, tiles_o, tiles_i);
    let j = tile.x;
    let o0 = tile.y;
    let i0 = tile.z;
    let bias_lo = vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u) >= vec4<u32>(p.in_dim);
    let bias_hi = vec4<u32>(i0 + 4u, i0 + 5u, i0 + 6u, i0 + 7u) >= vec4<u32>(p.in_dim);
    let k = p.in_dim / VW;
    let x_base = input_block(j) * p.batch * k;
    let cols_lo = input_cols(i0, k);
    let cols_hi = input_cols(i0 + 4u, k);
    let zo = starts8(0u, o0, p.out_dim - 1u, 1u);
    var acc: Tile8;
    for (var b = 0u; b < p.batch; b++) {
        let lo = select(load_cols(x_base + b * k, cols_lo), vec4<f32>(1.0), bias_lo);
        let hi = select(load_cols(x_base + b * k, cols_hi), vec4<f32>(1.0), bias_hi);
        let zb = (j * p.batch + b) * p.out_dim;
        var z: array<f32, 8>;
        for (var t = 0u; t < TW; t++) {
            z[t] = a_in[zb + zo[t]];
        }
        outer8(&acc, z, lo, hi);
    }
    let g_base = j * p.param_stride;
    // The epilogue indexes the tile dynamically: through a copy, so acc stays in registers.
    var e = acc;
    for (var t = 0u; t < TW; t++) {
        let o = o0 + t;
        if (o >= p.out_dim) {
            break;
        }
        for (var u = 0u; u < TW; u++) {
            let i = i0 + u;
            if (i < p.in_dim) {
                out[g_base + p.w_off + o * p.in_dim + i] = tile_at8(&e, t, u);
            } else if (i == p.in_dim) {
                out[g_base + p.b_off + o] = tile_at8(&e, t, u);
            }
        }
    }
}

// Columns i0 .. i0 + 3 of the weight row that starts at float `row`, each clamped to the row's
// in_dim columns: one V load in the vec4 variant (row, i0 and in_dim multiples of 4), four
// otherwise.
fn load_w4(row: u32, i0: u32) -> vec4<f32> {
    if (VW == 4u) {
        return vec4<f32>(params_v[row / 4u + min(i0 / 4u, p.in_dim / 4u - 1u)]);
    }
    let c = row + clamp4(i0, p.in_dim - 1u);
    return vec4<f32>(param_at(c.x), param_at(c.y), param_at(c.z), param_at(c.w));
}

// dense_backward_data on 8 rows × 8 input columns per invocation.
@compute @workgroup_size(WG)
fn dense_backward_data_wide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_b = wide_tiles(p.batch);
    let tiles_i = wide_tiles(p.in_dim);
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_i) {
        return;
    }
    let tile = wide_tile_at(id, tiles_b, tiles_i);
    let j = tile.x;
    let b0 = tile.y;
    let i0 = tile.z;
    let w_base = jobs[2u * j] * p.param_stride + p.w_off;
    let zr = starts8(j * p.batch * p.out_dim, b0, p.batch - 1u, p.out_dim);
    var acc: Tile8;
    for (var o = 0u; o < p.out_dim; o++) {
        let wo = w_base + o * p.in_dim;
        var z: array<f32, 8>;
        for (var t = 0u; t < TW; t++) {
            z[t] = a_in[zr[t] + o];
        }
        outer8(&acc, z, load_w4(wo, i0), load_w4(wo, i0 + 4u));
    }
    let x_base = input_block(j) * p.batch * p.in_dim;
    let dx_base = j * p.batch * p.in_dim;
    // Through a copy, as in backward_weights.
    var e = acc;
    for (var t = 0u; t < TW; t++) {
        let row = b0 + t;
        if (row >= p.batch) {
            break;
        }
        for (var u = 0u; u < TW; u++) {
            let i = i0 + u;
            if (i < p.in_dim) {
                var v = tile_at8(&e, t, u);
                if (RELU && b_in[x_base + row * p.in_dim + i] <= 0.0) {
                    v = 0.0;
                }
                out[dx_base + row * p.in_dim + i] = v;
            }
        }
    }
}
