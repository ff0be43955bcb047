// Per-tensor dot products of slab pairs (CGA's Gram entries, ALGORITHMS.md §5.9), in one pass:
// out[c * n_tensors + k] = sum_e x[p_c * stride + off_k + e] * x[q_c * stride + off_k + e] for
// pair c = (pairs[2c], pairs[2c + 1]) and tensor k = (tensors[2k], tensors[2k + 1]). One
// workgroup per (pair, tensor); the prelude's fixed-order tree (workgroup_sum) keeps it deterministic.

struct PairDotsParams {
    count: u32, n_tensors: u32, stride: u32, _pad0: u32,
}


@group(0) @binding(0) var<uniform> p: PairDotsParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> pairs: array<u32>;
@group(0) @binding(3) var<storage, read> tensors: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(REDUCE_WG)
fn pair_dots(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if (s >= p.count * p.n_tensors) {
        return;
    }
    let c = s / p.n_tensors;
    let k = s % p.n_tensors;
    let off = tensors[2u * k];
    let len = tensors[2u * k + 1u];
    let a0 = pairs[2u * c] * p.stride + off;
    let b0 = pairs[2u * c + 1u] * p.stride + off;
    var acc = 0.0;
    for (var e = lid; e < len; e += REDUCE_WG) {
        acc += x[a0 + e] * x[b0 + e];
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        out[s] = total;
    }
}
