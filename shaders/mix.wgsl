// Sparse mixing over stacked vectors (CSR): out_r = sum_e weight[e] * in_{col[e]} for e in
// row_ptr[r]..row_ptr[r + 1]. Vector k of a buffer starts at offset + k * stride and has `len`
// elements. One invocation per output element of type V (so the vec4 variant takes four
// consecutive floats, and `len`, strides and offsets count V), so every sum runs in CSR order
// (deterministic, no atomics). Input and output are distinct buffers: every round reads the
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

@compute @workgroup_size(WG)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.rows * p.len) {
        return;
    }
    let r = id / p.len;
    let k = id - r * p.len;
    var acc = V(0.0);
    for (var e = row_ptr[r]; e < row_ptr[r + 1u]; e++) {
        acc += weight[e] * src[p.in_offset + col[e] * p.in_stride + k];
    }
    dst[p.out_offset + r * p.out_stride + k] = acc;
}
