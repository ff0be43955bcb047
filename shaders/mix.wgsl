// Sparse mixing over stacked vectors (CSR): out_r = sum_e weight[e] * in_{col[e]} for e in
// row_ptr[r]..row_ptr[r + 1]. Vector k of a buffer starts at offset + k * stride and has `len`
// elements, of type V (so the vec4 variant takes four consecutive floats, and `len`, strides and
// offsets count V). Every sum runs in CSR order (deterministic, no atomics). Input and output are distinct buffers: every round reads the
// state at its start.

struct MixParams {
    rows: u32, len: u32, in_stride: u32, in_offset: u32,
    out_stride: u32, out_offset: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MixParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<V>;
@group(0) @binding(5) var<storage, read_write> dst: array<V>;

// Elements of one row per invocation: the row's CSR entries (row_ptr, col, weight) are read once
// for all of them. Element q of invocation c is k = c + q * chunks (chunks = ceil(len / MIX_E)),
// so adjacent invocations still read adjacent elements.
const MIX_E: u32 = 4u;

@compute @workgroup_size(WG)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    let chunks = (p.len + MIX_E - 1u) / MIX_E;
    if (id >= p.rows * chunks) {
        return;
    }
    let r = id / chunks;
    let c = id - r * chunks;
    // The last element of the row stands in for those past its end (their sums are not stored).
    let k = min(vec4<u32>(c, c + chunks, c + 2u * chunks, c + 3u * chunks), vec4<u32>(p.len - 1u));
    var acc0 = V(0.0);
    var acc1 = V(0.0);
    var acc2 = V(0.0);
    var acc3 = V(0.0);
    for (var e = row_ptr[r]; e < row_ptr[r + 1u]; e++) {
        let w = weight[e];
        let base = p.in_offset + col[e] * p.in_stride;
        acc0 += w * src[base + k.x];
        acc1 += w * src[base + k.y];
        acc2 += w * src[base + k.z];
        acc3 += w * src[base + k.w];
    }
    let o = p.out_offset + r * p.out_stride;
    dst[o + k.x] = acc0;
    if (c + chunks < p.len) {
        dst[o + k.y] = acc1;
    }
    if (c + 2u * chunks < p.len) {
        dst[o + k.z] = acc2;
    }
    if (c + 3u * chunks < p.len) {
        dst[o + k.w] = acc3;
    }
}
