// Shared by every kernel: the catalogue (src/backend/gpu/kernels.rs) compiles each shader as
// variant header + this prelude + the shader file. The variant header defines `V`, the element
// type of the variant's vector views (f32 or vec4<f32>), `VW`, its lanes (1 or 4), `vdot`, the
// product-sum of two V (a * b, or dot(a, b)), and `vlane(v, c)`, lane c of a V (v itself for a
// scalar).

// Invocations per workgroup of every kernel but the reduction.
const WG: u32 = 64u;

// Linear invocation id on the 2-D grid of workgroups the host uses when one dimension is short.
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The reductions' workgroup (reduce, sign_compress, pair_dots: one workgroup per segment).
const REDUCE_WG: u32 = 256u;
var<workgroup> reduce_partial: array<f32, REDUCE_WG>;

// Sum of one value per invocation of a REDUCE_WG-wide workgroup by a fixed-order tree in
// shared memory (deterministic); every invocation gets the sum. Call from uniform control flow.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    reduce_partial[lid] = v;
    workgroupBarrier();
    for (var h = REDUCE_WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) {
            reduce_partial[lid] += reduce_partial[lid + h];
        }
        workgroupBarrier();
    }
    return reduce_partial[0];
}
