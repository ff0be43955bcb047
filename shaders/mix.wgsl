// Sparse mixing over stacked vectors (CSR): out_r = sum_e weight[e] * in_{col[e]} for e in
// row_ptr[r]..row_ptr[r + 1]. Vector k of a buffer starts at offset + k * stride and has `len`
// elements. One invocation per output element, so every sum runs in CSR order (deterministic,
// no atomics). Input and output are distinct buffers: every round reads the state at its start.

struct MixParams {
    rows: u32,
    len: u32,
    in_stride: u32,
    in_offset: u32,
    out_stride: u32,
    out_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MixParams;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn mix(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * WG;
    if (id >= p.rows * p.len) {
        return;
    }
    let r = id / p.len;
    let k = id - r * p.len;
    var acc = 0.0;
    for (var e = row_ptr[r]; e < row_ptr[r + 1u]; e++) {
        acc += weight[e] * src[p.in_offset + col[e] * p.in_stride + k];
    }
    dst[p.out_offset + r * p.out_stride + k] = acc;
}

// Vectorised views for mix_vec4 (len, strides and offsets multiples of 4).
@group(0) @binding(4) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dst4: array<vec4<f32>>;

// mix with four consecutive elements per invocation; p.len, strides and offsets are in vec4s.
@compute @workgroup_size(WG)
fn mix_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = gid.x + gid.y * nwg.x * WG;
    if (id >= p.rows * p.len) {
        return;
    }
    let r = id / p.len;
    let k = id - r * p.len;
    var acc = vec4<f32>(0.0);
    for (var e = row_ptr[r]; e < row_ptr[r + 1u]; e++) {
        acc += weight[e] * src4[p.in_offset + col[e] * p.in_stride + k];
    }
    dst4[p.out_offset + r * p.out_stride + k] = acc;
}
