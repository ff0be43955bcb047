// Minibatch gather from a dataset resident on the device as bytes.
//
// Layout: the dataset is N samples × `dim` bytes, sample-major, packed four bytes per u32
// word (little-endian). Row r of the output takes sample index[r]:
//   x[r * dim + f] = (byte(index[r], f) / 255 - mean_c) * inv_std_c,   y[r] = labels[index[r]],
// with c = f / plane the feature's channel (features are channel-major planes; one channel when
// plane = dim). Several output elements per invocation (see below).

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

// Each invocation converts GATHER_E groups of VW consecutive features of one row: a group is one
// u32 word of four bytes in the vec4 variant (dim a multiple of 4, so every row starts on a
// word), one byte in the scalar one. Group e of invocation c is c + e * chunks (chunks =
// ceil(groups per row / GATHER_E)), so adjacent invocations read adjacent words; the row's index
// is read (and the invocation's row found) once for all of them.
const GATHER_E: u32 = 4u;

// Feature f's normalised value: its channel is f / plane.
fn normalise(f: u32, byte: u32) -> f32 {
    let c = min(f / p.plane, 3u);
    let mean = vec4<f32>(p.mean0, p.mean1, p.mean2, p.mean3)[c];
    let inv_std = vec4<f32>(p.inv_std0, p.inv_std1, p.inv_std2, p.inv_std3)[c];
    return (f32(byte) / 255.0 - mean) * inv_std;
}

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    let per_row = p.dim / VW;
    let chunks = (per_row + GATHER_E - 1u) / GATHER_E;
    if (id >= p.rows * chunks) {
        return;
    }
    let r = id / chunks;
    let c = id - r * chunks;
    // An index past the dataset is clamped to its last sample, so every read stays in range; the
    // shader does not report it (rejecting bad indices is the host's job).
    let s = min(index[r], p.n_samples - 1u);
    for (var e = 0u; e < GATHER_E; e++) {
        let f0 = (c + e * chunks) * VW;
        if (f0 >= p.dim) {
            break;
        }
        let byte0 = s * p.dim + f0;
        // The group's bytes share this word (VW = 4: byte0 is a multiple of 4).
        let word = data[byte0 >> 2u];
        for (var q = 0u; q < VW; q++) {
            let byte = (word >> (((byte0 + q) & 3u) * 8u)) & 0xffu;
            x[r * p.dim + f0 + q] = normalise(f0 + q, byte);
        }
    }
    if (c == 0u) {
        y[r] = labels[s];
    }
}
