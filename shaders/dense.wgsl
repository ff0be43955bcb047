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

// Weights and biases: forward reads the V view, backward_data the scalar one.
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
// Lane kernels: the variant for CPU rasterisers (lavapipe, llvmpipe, SwiftShader), which run the
// invocations of a workgroup as the SIMD lanes of one CPU thread. There a load whose address is
// the same for every invocation (derived from the workgroup id and uniforms only) is one scalar
// load and a broadcast, while a per-invocation address costs one scalar load per lane. So each
// workgroup owns one job and a tile of TL outputs or rows whose operands it reads at uniform
// addresses, and its LANES invocations walk the other dimension, one per lane, reading only
// their own operand per step. No shared memory and no barriers (costly on a CPU rasteriser).
// Every output is summed in the same order as by the tiled kernels above (bit-identical).

// Invocations per workgroup of the lane kernels (four 8-wide SIMD groups of a CPU rasteriser).
const LANES: u32 = 32u;

// Outputs (forward, backward_weights) or rows (backward_data) per invocation.
const TL: u32 = 8u;

// Output t of a lane's TL = 8 accumulators held as two vec4.
fn lane8(a: vec4<f32>, b: vec4<f32>, t: u32) -> f32 {
    if (t < 4u) {
        return a[t];
    }
    return b[t - 4u];
}

// The workgroup's linear index on the host's (possibly 2-D) grid: uniform in the workgroup.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// (job, lane-chunk, tile) of workgroup g in a grid of jobs × chunks × tiles, tiles fastest.
fn group_at(g: u32, chunks: u32, tls: u32) -> vec3<u32> {
    let j = g / (chunks * tls);
    let rest = g - j * chunks * tls;
    return vec3<u32>(p.first_job + j, rest / tls, rest % tls);
}

// Forward: the lanes are the batch rows of the job, the tile TL outputs. Per element of a row the
// lane loads its own input V and the tile's TL weight V (uniform), and accumulates TL dot
// products, each in the order of dense_forward.
@compute @workgroup_size(LANES)
fn dense_forward_lanes(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunks = (p.batch + LANES - 1u) / LANES;
    let tls = (p.out_dim + TL - 1u) / TL;
    let g = group_index(wid, nwg);
    if (g >= p.n_jobs * chunks * tls) {
        return;
    }
    let at = group_at(g, chunks, tls);
    let j = at.x;
    let b = at.y * LANES + lid;
    let o0 = at.z * TL;
    let m = jobs[2u * j];
    let k = p.in_dim / VW;
    let xr = (input_block(j) * p.batch + min(b, p.batch - 1u)) * k;
    let wa = (m * p.param_stride + p.w_off) / VW + clamp4(o0, p.out_dim - 1u) * k;
    let wb = (m * p.param_stride + p.w_off) / VW + clamp4(o0 + 4u, p.out_dim - 1u) * k;
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var i = 0u; i < k; i++) {
        let x = a_in_v[xr + i];
        acc_a += vec4<f32>(vdot(x, params_v[wa.x + i]), vdot(x, params_v[wa.y + i]), vdot(x, params_v[wa.z + i]), vdot(x, params_v[wa.w + i]));
        acc_b += vec4<f32>(vdot(x, params_v[wb.x + i]), vdot(x, params_v[wb.y + i]), vdot(x, params_v[wb.z + i]), vdot(x, params_v[wb.w + i]));
    }
    if (b >= p.batch) {
        return;
    }
    let bias_base = m * p.param_stride + p.b_off;
    let y = (j * p.batch + b) * p.out_dim;
    for (var t = 0u; t < TL; t++) {
        let o = o0 + t;
        if (o >= p.out_dim) {
            break;
        }
        var v = lane8(acc_a, acc_b, t) + param_at(bias_base + o);
        if (RELU) {
            v = max(v, 0.0);
        }
        out[y + o] = v;
    }
}

// Backward-data: the lanes are input columns i (adjacent lanes read adjacent weights), the tile
// TL rows of dz (uniform). Sums over o in the order of dense_backward_data.
@compute @workgroup_size(LANES)
fn dense_backward_data_lanes(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunks = (p.in_dim + LANES - 1u) / LANES;
    let tls = (p.batch + TL - 1u) / TL;
    let g = group_index(wid, nwg);
    if (g >= p.n_jobs * chunks * tls) {
        return;
    }
    let at = group_at(g, chunks, tls);
    let j = at.x;
    let i = at.y * LANES + lid;
    let b0 = at.z * TL;
    let w_base = jobs[2u * j] * p.param_stride + p.w_off + min(i, p.in_dim - 1u);
    let za = j * p.batch * p.out_dim + clamp4(b0, p.batch - 1u) * p.out_dim;
    let zb = j * p.batch * p.out_dim + clamp4(b0 + 4u, p.batch - 1u) * p.out_dim;
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var o = 0u; o < p.out_dim; o++) {
        let w = params[w_base + o * p.in_dim];
        acc_a += vec4<f32>(a_in[za.x + o], a_in[za.y + o], a_in[za.z + o], a_in[za.w + o]) * w;
        acc_b += vec4<f32>(a_in[zb.x + o], a_in[zb.y + o], a_in[zb.z + o], a_in[zb.w + o]) * w;
    }
    if (i >= p.in_dim) {
        return;
    }
    let x_base = input_block(j) * p.batch * p.in_dim + i;
    let dx_base = j * p.batch * p.in_dim + i;
    for (var t = 0u; t < TL; t++) {
        let row = b0 + t;
        if (row >= p.batch) {
            break;
        }
        var v = lane8(acc_a, acc_b, t);
        if (RELU && b_in[x_base + row * p.in_dim] <= 0.0) {
            v = 0.0;
        }
        out[dx_base + row * p.in_dim] = v;
    }
}

// Backward-weights: the lanes are input columns i (column in_dim is the bias, input 1), the tile
// TL outputs (their dz, uniform). Sums over the batch in the order of dense_backward_weights.
@compute @workgroup_size(LANES)
fn dense_backward_weights_lanes(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunks = (p.in_dim + 1u + LANES - 1u) / LANES;
    let tls = (p.out_dim + TL - 1u) / TL;
    let g = group_index(wid, nwg);
    if (g >= p.n_jobs * chunks * tls) {
        return;
    }
    let at = group_at(g, chunks, tls);
    let j = at.x;
    let i = at.y * LANES + lid;
    let o0 = at.z * TL;
    let bias_col = i >= p.in_dim;
    let x_base = input_block(j) * p.batch * p.in_dim + min(i, p.in_dim - 1u);
    let dz_base = j * p.batch * p.out_dim;
    let oa = clamp4(o0, p.out_dim - 1u);
    let ob = clamp4(o0 + 4u, p.out_dim - 1u);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let x = select(b_in[x_base + b * p.in_dim], 1.0, bias_col);
        let zb = dz_base + b * p.out_dim;
        acc_a += vec4<f32>(a_in[zb + oa.x], a_in[zb + oa.y], a_in[zb + oa.z], a_in[zb + oa.w]) * x;
        acc_b += vec4<f32>(a_in[zb + ob.x], a_in[zb + ob.y], a_in[zb + ob.z], a_in[zb + ob.w]) * x;
    }
    if (i > p.in_dim) {
        return;
    }
    let g_base = j * p.param_stride;
    for (var t = 0u; t < TL; t++) {
        let o = o0 + t;
        if (o >= p.out_dim) {
            break;
        }
        let v = lane8(acc_a, acc_b, t);
        if (bias_col) {
            out[g_base + p.b_off + o] = v;
        } else {
            out[g_base + p.w_off + o * p.in_dim + i] = v;
        }
    }
}
