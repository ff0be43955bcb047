// Softmax cross-entropy over the logits of every job, one invocation per (job, row).
//
// logits / dlogits: block-major, block j holds `batch` rows of `classes` floats.
// labels: one u32 per gathered data row; job j's row b has label labels[d_j * batch + b]
// (clamped to the last class, so a bad label cannot index past the row).
// stats: two planes of n_jobs * batch floats: per-row loss, then per-row correct (0 or 1),
// so one segmented sum over 2 * n_jobs segments of `batch` gives loss and hits per job.
// dlogits = (softmax - onehot) / batch: the gradient of the job's mean loss.

struct XentParams {
    n_jobs: u32, batch: u32, classes: u32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: XentParams;
@group(0) @binding(1) var<storage, read> jobs: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(WG)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_id(gid, nwg);
    let rows = p.n_jobs * p.batch;
    if (row >= rows) {
        return;
    }
    let j = row / p.batch;
    let b = row - j * p.batch;
    let label = min(labels[jobs[2u * j + 1u] * p.batch + b], p.classes - 1u);
    let base = row * p.classes;
    // Ties in the arg-max go to the lowest class index, as in the CPU reference.
    var mx = logits[base];
    var arg = 0u;
    for (var c = 1u; c < p.classes; c++) {
        let v = logits[base + c];
        if (v > mx) {
            mx = v;
            arg = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        sum += exp(logits[base + c] - mx);
    }
    let inv_b = 1.0 / f32(p.batch);
    for (var c = 0u; c < p.classes; c++) {
        let prob = exp(logits[base + c] - mx) / sum;
        dlogits[base + c] = (prob - select(0.0, 1.0, c == label)) * inv_b;
    }
    stats[row] = log(sum) + mx - logits[base + label];
    stats[rows + row] = select(0.0, 1.0, arg == label);
}
