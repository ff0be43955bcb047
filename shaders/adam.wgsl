// QG-Adam (ALGORITHMS.md §5.4), elementwise over agent-major buffers.

struct AdamParams {
    len: u32,
    stride: u32,
    _pad0: u32,
    _pad1: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // Bias corrections 1 - beta^(t+1).
    bc1: f32,
    bc2: f32,
    weight_decay: f32,
    _pad2: f32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: AdamParams;

// adam_step bindings: parameters (updated), gradients, first and second moments (read only).
@group(0) @binding(1) var<storage, read_write> sx: array<f32>;
@group(0) @binding(2) var<storage, read> sg: array<f32>;
@group(0) @binding(3) var<storage, read> sm1: array<f32>;
@group(0) @binding(4) var<storage, read> sm2: array<f32>;

// g' = g + wd x; a = beta1 m1 + g'; s = beta2 m2 + (1 - beta2) g'^2;
// x = x - (lr / bc1) a / (sqrt(s) / sqrt(bc2) + eps). The moments are not changed here: QG-Adam
// drives them with the realised model change after gossip (adam_moments).
@compute @workgroup_size(WG)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    let x = sx[k];
    let g = sg[k] + p.weight_decay * x;
    let a = p.beta1 * sm1[k] + g;
    let s = p.beta2 * sm2[k] + (1.0 - p.beta2) * g * g;
    sx[k] = x - (p.lr / p.bc1) * a / (sqrt(s) / sqrt(p.bc2) + p.eps);
}

// adam_moments bindings: the model change delta, per-agent squared norms of delta, moments.
@group(0) @binding(1) var<storage, read> md: array<f32>;
@group(0) @binding(2) var<storage, read> mnorm: array<f32>;
@group(0) @binding(3) var<storage, read_write> mm1: array<f32>;
@group(0) @binding(4) var<storage, read_write> mm2: array<f32>;

// d = delta / (||delta_agent|| + 1e-8); m1 = beta1 m1 + (1 - beta1) d; m2 = beta2 m2 + (1 - beta2) d^2.
@compute @workgroup_size(WG)
fn adam_moments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    let d = md[k] / (sqrt(mnorm[k / p.stride]) + 1e-8);
    mm1[k] = p.beta1 * mm1[k] + (1.0 - p.beta1) * d;
    mm2[k] = p.beta2 * mm2[k] + (1.0 - p.beta2) * d * d;
}
