// Minibatch gather from a dataset resident on the device as bytes.
//
// Layout: the dataset is N samples × `dim` bytes, sample-major, packed four bytes per u32
// word (little-endian). Row r of the output takes sample index[r]:
//   x[r * dim + f] = (byte(index[r], f) / 255 - mean) * inv_std,   y[r] = labels[index[r]].
// Several output elements per invocation (see below).

struct GatherParams {
    rows: u32, dim: u32, n_samples: u32, _pad0: u32,
    mean: f32, inv_std: f32, _pad1: u32, _pad2: u32,
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
            x[r * p.dim + f0 + q] = (f32(byte) / 255.0 - p.mean) * p.inv_std;
        }
    }
    if (c == 0u) {
        y[r] = labels[s];
    }
}
