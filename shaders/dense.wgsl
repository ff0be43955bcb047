// Batched dense layers over a list of jobs. Job j = (model m_j, data d_j) is stored as two u32
// at jobs[2j], jobs[2j+1]. All jobs of the graph run in one dispatch per layer and direction.
//
// Parameter layout (one slab of `param_stride` floats per agent, PyTorch order):
//   W[o, i] at m * param_stride + w_off + o * in_dim + i,   b[o] at m * param_stride + b_off + o.
// Activation layout: block-major, block k holds `batch` rows of a layer's width. The layer input
// block of job j is d_j when `in_by_data` (the gathered minibatch of agent d_j) and j otherwise.
//
// Every invocation computes a 4 × 4 register tile; loads are clamped in range and stores masked.

struct DenseParams {
    n_jobs: u32,
    batch: u32,
    in_dim: u32,
    out_dim: u32,
    w_off: u32,
    b_off: u32,
    param_stride: u32,
    in_by_data: u32,
    relu: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;
const T: u32 = 4u;

@group(0) @binding(0) var<uniform> p: DenseParams;
@group(0) @binding(1) var<storage, read> jobs: array<u32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
// forward: layer input; backward_data: d(pre-activation) of this layer; backward_weights: same.
@group(0) @binding(3) var<storage, read> a_in: array<f32>;
// forward: unused; backward_data: the layer input (ReLU mask of the previous layer);
// backward_weights: the layer input.
@group(0) @binding(4) var<storage, read> b_in: array<f32>;
// forward: layer output; backward_data: d(pre-activation) of the previous layer;
// backward_weights: gradient slabs, one per job, `param_stride` floats each.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn input_block(j: u32) -> u32 {
    return select(j, jobs[2u * j + 1u], p.in_by_data != 0u);
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
        if (p.relu != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        for (var u = 0u; u < T; u++) {
            if (o0 + u < p.out_dim) {
                out[y_base + row * p.out_dim + o0 + u] = v[u];
            }
        }
    }
}

// y[j, b, o] = act(sum_i x[blk, b, i] * W[m, o, i] + bias[m, o]); tile = 4 rows × 4 outputs.
@compute @workgroup_size(WG)
fn dense_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_o = (p.out_dim + T - 1u) / T;
    let tiles_b = (p.batch + T - 1u) / T;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_o) {
        return;
    }
    let j = id / (tiles_b * tiles_o);
    let rest = id - j * tiles_b * tiles_o;
    let b0 = (rest / tiles_o) * T;
    let o0 = (rest % tiles_o) * T;
    let m = jobs[2u * j];
    let x_base = input_block(j) * p.batch * p.in_dim;
    let w_base = m * p.param_stride + p.w_off;
    // Clamped row/output indices keep every load in range; stores below are masked.
    let r = min(vec4<u32>(b0, b0 + 1u, b0 + 2u, b0 + 3u), vec4<u32>(p.batch - 1u));
    let o = min(vec4<u32>(o0, o0 + 1u, o0 + 2u, o0 + 3u), vec4<u32>(p.out_dim - 1u));
    let xr = x_base + r * p.in_dim;
    let wr = w_base + o * p.in_dim;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = 0u; i < p.in_dim; i++) {
        let w = vec4<f32>(params[wr.x + i], params[wr.y + i], params[wr.z + i], params[wr.w + i]);
        acc0 += a_in[xr.x + i] * w;
        acc1 += a_in[xr.y + i] * w;
        acc2 += a_in[xr.z + i] * w;
        acc3 += a_in[xr.w + i] * w;
    }
    let bb = m * p.param_stride + p.b_off;
    let bias = vec4<f32>(params[bb + o.x], params[bb + o.y], params[bb + o.z], params[bb + o.w]);
    store_forward_tile(j, b0, o0, array<vec4<f32>, 4>(acc0 + bias, acc1 + bias, acc2 + bias, acc3 + bias));
}

// Vectorised views of the same buffers for dense_forward_vec4 (in_dim, w_off, stride and the
// block sizes all multiples of 4, so every row starts on a vec4 boundary).
@group(0) @binding(2) var<storage, read> params4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> a_in4: array<vec4<f32>>;

// dense_forward with vec4 loads along the reduction: 8 vec4 loads feed 64 multiply-adds.
@compute @workgroup_size(WG)
fn dense_forward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_o = (p.out_dim + T - 1u) / T;
    let tiles_b = (p.batch + T - 1u) / T;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_o) {
        return;
    }
    let j = id / (tiles_b * tiles_o);
    let rest = id - j * tiles_b * tiles_o;
    let b0 = (rest / tiles_o) * T;
    let o0 = (rest % tiles_o) * T;
    let m = jobs[2u * j];
    let k4 = p.in_dim / 4u;
    let x_base = input_block(j) * p.batch * k4;
    let w_base = (m * p.param_stride + p.w_off) / 4u;
    let r = min(vec4<u32>(b0, b0 + 1u, b0 + 2u, b0 + 3u), vec4<u32>(p.batch - 1u));
    let o = min(vec4<u32>(o0, o0 + 1u, o0 + 2u, o0 + 3u), vec4<u32>(p.out_dim - 1u));
    let xr = x_base + r * k4;
    let wr = w_base + o * k4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = 0u; i < k4; i++) {
        let w0 = params4[wr.x + i];
        let w1 = params4[wr.y + i];
        let w2 = params4[wr.z + i];
        let w3 = params4[wr.w + i];
        let x0 = a_in4[xr.x + i];
        let x1 = a_in4[xr.y + i];
        let x2 = a_in4[xr.z + i];
        let x3 = a_in4[xr.w + i];
        acc0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
        acc1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
        acc2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
        acc3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
    }
    // The bias is read through the vec4 view too (one view per binding per entry point).
    let bb = m * p.param_stride + p.b_off + o;
    let bias = vec4<f32>(
        params4[bb.x / 4u][bb.x % 4u],
        params4[bb.y / 4u][bb.y % 4u],
        params4[bb.z / 4u][bb.z % 4u],
        params4[bb.w / 4u][bb.w % 4u],
    );
    store_forward_tile(j, b0, o0, array<vec4<f32>, 4>(acc0 + bias, acc1 + bias, acc2 + bias, acc3 + bias));
}

// dx[j, b, i] = sum_o dz[j, b, o] * W[m, o, i], times relu'(x[j, b, i]) when `relu` is set
// (the previous layer's ReLU: its output is this layer's input, and relu(z) > 0 iff z > 0).
// Tile = 4 rows × 4 inputs; adjacent invocations read adjacent columns of W.
@compute @workgroup_size(WG)
fn dense_backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tiles_i = (p.in_dim + T - 1u) / T;
    let tiles_b = (p.batch + T - 1u) / T;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_b * tiles_i) {
        return;
    }
    let j = id / (tiles_b * tiles_i);
    let rest = id - j * tiles_b * tiles_i;
    let b0 = (rest / tiles_i) * T;
    let i0 = (rest % tiles_i) * T;
    let m = jobs[2u * j];
    let w_base = m * p.param_stride + p.w_off;
    let r = min(vec4<u32>(b0, b0 + 1u, b0 + 2u, b0 + 3u), vec4<u32>(p.batch - 1u));
    let ii = min(vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u), vec4<u32>(p.in_dim - 1u));
    let dz_r = j * p.batch * p.out_dim + r * p.out_dim;
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
                if (p.relu != 0u && b_in[x_base + row * p.in_dim + i] <= 0.0) {
                    v = 0.0;
                }
                out[dx_base + row * p.in_dim + i] = v;
            }
        }
    }
}

// Gradient slab of job j: dW[o, i] = sum_b dz[j, b, o] * x[blk, b, i] and db[o] = sum_b dz[j, b, o]
// (column i = in_dim stands for the bias, whose input is 1). Tile = 4 outputs × 4 columns.
@compute @workgroup_size(WG)
fn dense_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let cols = p.in_dim + 1u;
    let tiles_i = (cols + T - 1u) / T;
    let tiles_o = (p.out_dim + T - 1u) / T;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_o * tiles_i) {
        return;
    }
    let j = id / (tiles_o * tiles_i);
    let rest = id - j * tiles_o * tiles_i;
    let o0 = (rest / tiles_i) * T;
    let i0 = (rest % tiles_i) * T;
    let ov = min(vec4<u32>(o0, o0 + 1u, o0 + 2u, o0 + 3u), vec4<u32>(p.out_dim - 1u));
    let ic = vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u);
    // Columns at or past in_dim read x = 1 (the bias column); the clamp keeps loads in range.
    let is_x = vec4<f32>(ic < vec4<u32>(p.in_dim));
    let ii = min(ic, vec4<u32>(p.in_dim - 1u));
    let x_base = input_block(j) * p.batch * p.in_dim;
    let dz_base = j * p.batch * p.out_dim;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let xb = x_base + b * p.in_dim;
        let xv = vec4<f32>(b_in[xb + ii.x], b_in[xb + ii.y], b_in[xb + ii.z], b_in[xb + ii.w]);
        let x = xv * is_x + (vec4<f32>(1.0) - is_x);
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

// A vec4 view of b_in for dense_backward_weights_vec4 (in_dim a multiple of 4).
@group(0) @binding(4) var<storage, read> b_in4: array<vec4<f32>>;

// dense_backward_weights with one vec4 load of the layer input per row: the tile's four columns
// are contiguous. The tile at column in_dim is the bias column (input 1).
@compute @workgroup_size(WG)
fn dense_backward_weights_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let cols = p.in_dim + 1u;
    let tiles_i = (cols + T - 1u) / T;
    let tiles_o = (p.out_dim + T - 1u) / T;
    let id = linear_id(gid, nwg);
    if (id >= p.n_jobs * tiles_o * tiles_i) {
        return;
    }
    let j = id / (tiles_o * tiles_i);
    let rest = id - j * tiles_o * tiles_i;
    let o0 = (rest / tiles_i) * T;
    let i0 = (rest % tiles_i) * T;
    let ov = min(vec4<u32>(o0, o0 + 1u, o0 + 2u, o0 + 3u), vec4<u32>(p.out_dim - 1u));
    let bias_tile = i0 >= p.in_dim;
    let k4 = p.in_dim / 4u;
    let x_base = input_block(j) * p.batch * k4 + min(i0 / 4u, k4 - 1u);
    let dz_base = j * p.batch * p.out_dim;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let x = select(b_in4[x_base + b * k4], vec4<f32>(1.0), bias_tile);
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
        if (bias_tile) {
            out[g_base + p.b_off + o] = rows[t][0];
        } else {
            for (var u = 0u; u < T; u++) {
                out[g_base + p.w_off + o * p.in_dim + i0 + u] = rows[t][u];
            }
        }
    }
}
