// Scaled-sign compression with error feedback (ALGORITHMS.md §5.8), in place, per segment s
// (one tensor of one slab) of seg_len elements at offset + s * stride: the memory holds
// w = e + z; c = (|w|_1 / seg_len) * sign(w) (sign(0) = 0) goes to out, and the memory keeps
// w - c. One workgroup per segment: the L1 norm is a fixed-order tree of the
// prelude (workgroup_sum), so the result is deterministic.

struct CompressParams {
    segments: u32, seg_len: u32, offset: u32, stride: u32,
}


@group(0) @binding(0) var<uniform> p: CompressParams;
@group(0) @binding(1) var<storage, read_write> memory: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(REDUCE_WG)
fn sign_compress(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if (s >= p.segments) {
        return;
    }
    let at = p.offset + s * p.stride;
    var acc = 0.0;
    for (var k = lid; k < p.seg_len; k += REDUCE_WG) {
        acc += abs(memory[at + k]);
    }
    let total = workgroup_sum(lid, acc);
    let scale = total / f32(p.seg_len);
    for (var k = lid; k < p.seg_len; k += REDUCE_WG) {
        let w = memory[at + k];
        let c = scale * sign(w);
        out[at + k] = c;
        memory[at + k] = w - c;
    }
}
