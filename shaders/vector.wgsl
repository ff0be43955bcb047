// Vector operations over strided blocks of agent-major buffers: fill, strided copy (broadcast,
// de-interleave), the mean of stacked vectors, and ReLU with its backward pass. One invocation per
// output element.
//
// Element k of block b lives at offset + b * stride + k * step (src_* and dst_* alike).

struct VectorParams {
    count: u32, len: u32,
    src_offset: u32, src_stride: u32, src_step: u32,
    dst_offset: u32, dst_stride: u32, dst_step: u32,
    // fill: the value written.
    value: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: VectorParams;

// Where element `id` (block id / len, element id % len) of a strided side lives.
fn at(offset: u32, stride: u32, step: u32, id: u32) -> u32 {
    let b = id / p.len;
    return offset + b * stride + (id - b * p.len) * step;
}

// fill binding: the output only.
@group(0) @binding(1) var<storage, read_write> fy: array<f32>;

// Every element of count × len dst blocks = value.
@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id < p.count * p.len) {
        fy[at(p.dst_offset, p.dst_stride, 1u, id)] = p.value;
    }
}

// copy_strided and mean bindings: input, output (distinct buffers).
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Element id of the dst blocks = element id of the src blocks.
@compute @workgroup_size(WG)
fn copy_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = linear_id(gid, nwg);
    if (id < p.count * p.len) {
        dst[at(p.dst_offset, p.dst_stride, p.dst_step, id)] =
            src[at(p.src_offset, p.src_stride, p.src_step, id)];
    }
}

// dst[dst_offset + k] = (sum over b < count of src[src_offset + b * src_stride + k]) / count:
// summed in block order, then divided once (identical vectors average exactly).
@compute @workgroup_size(WG)
fn mean(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k < p.len) {
        var acc = 0.0;
        for (var b = 0u; b < p.count; b++) {
            acc += src[p.src_offset + b * p.src_stride + k];
        }
        dst[p.dst_offset + k] = acc / f32(p.count);
    }
}

// relu: dst[k] = max(src[k], 0) for k < len (src, dst: the copy bindings).
@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k < p.len) {
        dst[k] = max(src[k], 0.0);
    }
}

// relu_backward binding: the output gradient (src holds the forward output y, dst gets dx).
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// dst[k] = dy[k] where the forward output src[k] > 0, 0 elsewhere.
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k < p.len) {
        dst[k] = select(0.0, dy[k], src[k] > 0.0);
    }
}
