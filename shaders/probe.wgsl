// Device ceilings for the benchmarks (src/backend/gpu/probe.rs): peak multiply-add rate and
// streaming bandwidth. Not part of the training kernels.

struct ProbeParams {
    len: u32, iters: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ProbeParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

// Eight independent vec4 FMA chains per invocation: 32 · 2 · iters flops, no memory traffic
// but one load and one store.
@compute @workgroup_size(WG)
fn peak_fma(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.len) {
        return;
    }
    let s = src[id];
    var a0 = s;
    var a1 = s + 1.0;
    var a2 = s + 2.0;
    var a3 = s + 3.0;
    var a4 = s + 4.0;
    var a5 = s + 5.0;
    var a6 = s + 6.0;
    var a7 = s + 7.0;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(0.0001);
    for (var i = 0u; i < p.iters; i++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    dst[id] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

// Streaming copy with a scale: 32 bytes of traffic per invocation.
@compute @workgroup_size(WG)
fn stream(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.len) {
        return;
    }
    dst[id] = src[id] * 1.0001;
}

// Next to nothing: the fixed cost of a dispatch and of a submit. The host sets iters = 0, so no
// invocation touches memory (the test only keeps the bindings in use).
@compute @workgroup_size(WG)
fn empty(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id < p.len && p.iters > 0u) {
        dst[id] = src[id];
    }
}
