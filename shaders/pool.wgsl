// Max and average pooling over `samples` C × H × W images (channel-major), square windows, no
// padding, output side (in - window) / stride + 1. Forward: one invocation per output element;
// backward: one per input element, which gathers from every window holding it (no atomics, so
// overlapping windows sum in a fixed order).
//
// Max pooling routes the gradient to the window's first maximum in row-major order (strict >),
// which the backward pass finds again from the forward input.

struct PoolParams {
    samples: u32, channels: u32, in_h: u32, in_w: u32,
    out_h: u32, out_w: u32, window: u32, stride: u32,
    is_max: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
// The forward input (backward: for the maxima; unread by average pooling).
@group(0) @binding(1) var<storage, read> x: array<f32>;
// forward: y; backward: dx.
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// backward: dy.
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// (image plane, row, column) of element `id` of h × w planes.
fn pixel(id: u32, h: u32, w: u32) -> vec3<u32> {
    let plane = id / (h * w);
    let pix = id - plane * h * w;
    let row = pix / w;
    return vec3<u32>(plane, row, pix - row * w);
}

// One window's scan in row-major order: the index within x of its first maximum (strict >)
// and the sum of its values.
struct Window {
    first_max: u32,
    sum: f32,
}

// Window (oy, ox) of the plane starting at `plane`.
fn scan(plane: u32, oy: u32, ox: u32) -> Window {
    let top = plane + oy * p.stride * p.in_w + ox * p.stride;
    var w = Window(top, 0.0);
    var best_v = x[top];
    for (var wy = 0u; wy < p.window; wy++) {
        for (var wx = 0u; wx < p.window; wx++) {
            let k = top + wy * p.in_w + wx;
            let v = x[k];
            w.sum += v;
            if (v > best_v) {
                w.first_max = k;
                best_v = v;
            }
        }
    }
    return w;
}

@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.samples * p.channels * p.out_h * p.out_w) {
        return;
    }
    let at = pixel(id, p.out_h, p.out_w);
    let w = scan(at.x * p.in_h * p.in_w, at.y, at.z);
    if (p.is_max != 0u) {
        out[id] = x[w.first_max];
    } else {
        out[id] = w.sum / f32(p.window * p.window);
    }
}

// The output indices o along one axis whose window [o · stride, o · stride + window) holds i.
fn windows_over(i: u32, n_out: u32) -> vec2<u32> {
    var lo = 0u;
    if (i + 1u > p.window) {
        lo = (i + 1u - p.window + p.stride - 1u) / p.stride;
    }
    return vec2<u32>(lo, min(i / p.stride + 1u, n_out));
}

@compute @workgroup_size(WG)
fn pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.samples * p.channels * p.in_h * p.in_w) {
        return;
    }
    let at = pixel(id, p.in_h, p.in_w);
    let plane = at.x * p.in_h * p.in_w;
    let dy_plane = at.x * p.out_h * p.out_w;
    let ys = windows_over(at.y, p.out_h);
    let xs = windows_over(at.z, p.out_w);
    let area = f32(p.window * p.window);
    var acc = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            let g = dy[dy_plane + oy * p.out_w + ox];
            if (p.is_max == 0u) {
                acc += g / area;
            } else if (scan(plane, oy, ox).first_max == id) {
                acc += g;
            }
        }
    }
    out[id] = acc;
}
