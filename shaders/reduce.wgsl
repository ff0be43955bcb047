// Segmented reductions: out[out_offset + s] = sum_k f(a[a_off + s * a_stride + k], b[...]) for
// k < seg_len, with f = a (sum), a * b (dot) or (a - b)^2 (squared distance). A stride of 0
// broadcasts one vector to every segment (e.g. the distance of each agent to the mean model).
// One workgroup per segment; the prelude's fixed-order tree (workgroup_sum) makes the sum
// deterministic.

struct ReduceParams {
    segments: u32, seg_len: u32, mode: u32, out_offset: u32,
    a_offset: u32, a_stride: u32, b_offset: u32, b_stride: u32,
}

const MODE_SUM: u32 = 0u;
const MODE_DOT: u32 = 1u;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(REDUCE_WG)
fn reduce(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers in uniform control flow.
    if (s >= p.segments) {
        return;
    }
    let a0 = p.a_offset + s * p.a_stride;
    let b0 = p.b_offset + s * p.b_stride;
    var acc = 0.0;
    for (var k = lid; k < p.seg_len; k += REDUCE_WG) {
        let x = a[a0 + k];
        if (p.mode == MODE_SUM) {
            acc += x;
        } else if (p.mode == MODE_DOT) {
            acc += x * b[b0 + k];
        } else {
            let d = x - b[b0 + k];
            acc += d * d;
        }
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        out[p.out_offset + s] = total;
    }
}
