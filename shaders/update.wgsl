// Elementwise updates over whole agent-major buffers, one invocation per element.

struct UpdateParams {
    len: u32,
    nesterov: u32,
    _pad0: u32,
    _pad1: u32,
    // axpby: y = a * x + b * y
    a: f32,
    b: f32,
    // local_step: learning rate, momentum, weight decay
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    _pad2: f32,
    _pad3: f32,
    _pad4: f32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: UpdateParams;

// axpby bindings
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read_write> ay: array<f32>;

@compute @workgroup_size(WG)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    ay[k] = p.a * ax[k] + p.b * ay[k];
}

// local_step bindings: parameters, gradients, momentum buffer.
@group(0) @binding(1) var<storage, read_write> sx: array<f32>;
@group(0) @binding(2) var<storage, read> sg: array<f32>;
@group(0) @binding(3) var<storage, read_write> sm: array<f32>;

// PyTorch SGD with dampening 0: g' = g + wd * x; m = beta * m + g'; u = g' + beta * m (Nesterov)
// or m (heavy ball); x = x - lr * u. With beta = 0 the momentum buffer is left untouched.
@compute @workgroup_size(WG)
fn local_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
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

// Vectorised views for the vec4 entry points (len a multiple of 4; p.len counts vec4s).
@group(0) @binding(1) var<storage, read> ax4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> ay4: array<vec4<f32>>;

// axpby, four elements per invocation.
@compute @workgroup_size(WG)
fn axpby_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    ay4[k] = p.a * ax4[k] + p.b * ay4[k];
}

@group(0) @binding(1) var<storage, read_write> sx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sg4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> sm4: array<vec4<f32>>;

// local_step, four elements per invocation.
@compute @workgroup_size(WG)
fn local_step_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    let x = sx4[k];
    let g = sg4[k] + p.weight_decay * x;
    var u = g;
    if (p.momentum != 0.0) {
        let m = p.momentum * sm4[k] + g;
        sm4[k] = m;
        u = select(m, g + p.momentum * m, p.nesterov != 0u);
    }
    sx4[k] = x - p.lr * u;
}
