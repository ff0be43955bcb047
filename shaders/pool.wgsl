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

// Index within x of the first maximum of window (oy, ox) of the plane starting at `plane`.
fn first_max(plane: u32, oy: u32, ox: u32) -> u32 {
    let top = plane + oy * p.stride * p.in_w + ox * p.stride;
    var best = top;
    var best_v = x[top];
    for (var wy = 0u; wy < p.window; wy++) {
        for (var wx = 0u; wx < p.window; wx++) {
            let k = top + wy * p.in_w + wx;
            let v = x[k];
            if (v > best_v) {
                best = k;
                best_v = v;
            }
        }
    }
    return best;
}

@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    let out_plane = p.out_h * p.out_w;
    if (id >= p.samples * p.channels * out_plane) {
        return;
    }
    let sc = id / out_plane;
    let pix = id - sc * out_plane;
    let oy = pix / p.out_w;
    let ox = pix - oy * p.out_w;
    let plane = sc * p.in_h * p.in_w;
    if (p.is_max != 0u) {
        out[id] = x[first_max(plane, oy, ox)];
        return;
    }
    let top = plane + oy * p.stride * p.in_w + ox * p.stride;
    var acc = 0.0;
    for (var wy = 0u; wy < p.window; wy++) {
        for (var wx = 0u; wx < p.window; wx++) {
            acc += x[top + wy * p.in_w + wx];
        }
    }
    out[id] = acc / f32(p.window * p.window);
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
    let in_plane = p.in_h * p.in_w;
    if (id >= p.samples * p.channels * in_plane) {
        return;
    }
    let sc = id / in_plane;
    let pix = id - sc * in_plane;
    let iy = pix / p.in_w;
    let ix = pix - iy * p.in_w;
    let plane = sc * in_plane;
    let dy_plane = sc * p.out_h * p.out_w;
    let ys = windows_over(iy, p.out_h);
    let xs = windows_over(ix, p.out_w);
    let area = f32(p.window * p.window);
    var acc = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            let g = dy[dy_plane + oy * p.out_w + ox];
            if (p.is_max == 0u) {
                acc += g / area;
            } else if (first_max(plane, oy, ox) == id) {
                acc += g;
            }
        }
    }
    out[id] = acc;
}
