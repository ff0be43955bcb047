// Minibatch gather from a dataset resident on the device as bytes.
//
// Layout: the dataset is N samples × `dim` bytes, sample-major, packed four bytes per u32
// word (little-endian). Row r of the output takes sample index[r]:
//   x[r * dim + f] = (byte(index[r], f) / 255 - mean_c) * inv_std_c,   y[r] = labels[index[r]],
// with c = f / plane the feature's channel (features are channel-major planes; one channel when
// plane = dim). One invocation per output element.

struct GatherParams {
    rows: u32, dim: u32, n_samples: u32, plane: u32,
    mean0: f32, mean1: f32, mean2: f32, mean3: f32,
    inv_std0: f32, inv_std1: f32, inv_std2: f32, inv_std3: f32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id >= p.rows * p.dim) {
        return;
    }
    let r = id / p.dim;
    let f = id - r * p.dim;
    // An index past the dataset is clamped to its last sample, so every read stays in range; the
    // shader does not report it (rejecting bad indices is the host's job).
    let s = min(index[r], p.n_samples - 1u);
    let byte_at = s * p.dim + f;
    let byte = (data[byte_at >> 2u] >> ((byte_at & 3u) * 8u)) & 0xffu;
    let c = min(f / p.plane, 3u);
    let mean = vec4<f32>(p.mean0, p.mean1, p.mean2, p.mean3)[c];
    let inv_std = vec4<f32>(p.inv_std0, p.inv_std1, p.inv_std2, p.inv_std3)[c];
    x[id] = (f32(byte) / 255.0 - mean) * inv_std;
    if (f == 0u) {
        y[r] = labels[s];
    }
}
