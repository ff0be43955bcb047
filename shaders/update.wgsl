// Elementwise updates over whole agent-major buffers, one invocation per element: axpby and the
// local SGD step over elements of type V (four consecutive floats in the vec4 variant, where
// `len` counts vec4s), and the two QG-Adam kernels (ALGORITHMS.md §5.4, scalar only).

struct UpdateParams {
    len: u32, nesterov: u32, _pad0: u32, _pad1: u32,
    // axpby: y = a * x + b * y; local_step: learning rate, momentum, weight decay.
    a: f32, b: f32, lr: f32, momentum: f32,
    weight_decay: f32, _pad2: f32, _pad3: f32, _pad4: f32,
}

@group(0) @binding(0) var<uniform> p: UpdateParams;

// axpby bindings
@group(0) @binding(1) var<storage, read> ax: array<V>;
@group(0) @binding(2) var<storage, read_write> ay: array<V>;

@compute @workgroup_size(WG)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= p.len) {
        return;
    }
    ay[k] = p.a * ax[k] + p.b * ay[k];
}

// local_step bindings: parameters, gradients, momentum buffer.
@group(0) @binding(1) var<storage, read_write> sx: array<V>;
@group(0) @binding(2) var<storage, read> sg: array<V>;
@group(0) @binding(3) var<storage, read_write> sm: array<V>;

// PyTorch SGD with dampening 0: g' = g + wd * x; m = beta * m + g'; u = g' + beta * m (Nesterov)
// or m (heavy ball); x = x - lr * u. With beta = 0 the momentum buffer is left untouched.
@compute @workgroup_size(WG)
fn local_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= p.len) {
        return;
    }
    let x = sx[k];
    let g = sg[k] + p.weight_decay * x;
    var u = g;
    if (p.momentum != 0.0) {
        let m = p.momentum * sm[k] + g;
        sm[k] = m;
        u = select(m, g + p.momentum * m, p.nesterov != 0u);
    }
    sx[k] = x - p.lr * u;
}

struct AdamParams {
    len: u32, stride: u32, _pad0: u32, _pad1: u32,
    // bc1, bc2: bias corrections 1 - beta^(t+1).
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    bc1: f32, bc2: f32, weight_decay: f32, _pad2: f32,
}

@group(0) @binding(0) var<uniform> pa: AdamParams;

// adam_step bindings: parameters (updated), gradients, first and second moments (read only).
@group(0) @binding(1) var<storage, read_write> ad_x: array<f32>;
@group(0) @binding(2) var<storage, read> ad_g: array<f32>;
@group(0) @binding(3) var<storage, read> ad_m1: array<f32>;
@group(0) @binding(4) var<storage, read> ad_m2: array<f32>;

// g' = g + wd x; a = beta1 m1 + g'; s = beta2 m2 + (1 - beta2) g'^2;
// x = x - (lr / bc1) a / (sqrt(s) / sqrt(bc2) + eps). The moments are not changed here: QG-Adam
// drives them with the realised model change after gossip (adam_moments).
@compute @workgroup_size(WG)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= pa.len) {
        return;
    }
    let x = ad_x[k];
    let g = ad_g[k] + pa.weight_decay * x;
    let a = pa.beta1 * ad_m1[k] + g;
    let s = pa.beta2 * ad_m2[k] + (1.0 - pa.beta2) * g * g;
    ad_x[k] = x - (pa.lr / pa.bc1) * a / (sqrt(s) / sqrt(pa.bc2) + pa.eps);
}

// adam_moments bindings: the model change delta, per-agent squared norms of delta, moments.
@group(0) @binding(1) var<storage, read> md: array<f32>;
@group(0) @binding(2) var<storage, read> mnorm: array<f32>;
@group(0) @binding(3) var<storage, read_write> mm1: array<f32>;
@group(0) @binding(4) var<storage, read_write> mm2: array<f32>;

// d = delta / (||delta_agent|| + 1e-8); m1 = beta1 m1 + (1 - beta1) d; m2 = beta2 m2 + (1 - beta2) d^2.
@compute @workgroup_size(WG)
fn adam_moments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= pa.len) {
        return;
    }
    let d = md[k] / (sqrt(mnorm[k / pa.stride]) + 1e-8);
    mm1[k] = pa.beta1 * mm1[k] + (1.0 - pa.beta1) * d;
    mm2[k] = pa.beta2 * mm2[k] + (1.0 - pa.beta2) * d * d;
}
