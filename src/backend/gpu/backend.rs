//! The GPU backend: operations are recorded as dispatches and encoded into one command buffer
//! at [`Backend::flush`], with every dispatch's uniform block packed into one arena buffer.

use super::context::{AdapterChoice, GpuContext};
use super::kernels::{self, Kernel, PipelineCache, Variant};
use super::params::*;
use super::timer::GpuTimer;
use crate::backend::*;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Elements of a row per invocation of the mix (`MIX_E` in mix.wgsl).
const MIX_ELEMENTS: usize = 4;
/// Groups of features per invocation of the gather (`GATHER_E` in gather.wgsl).
const GATHER_GROUPS: usize = 4;
/// Rows and columns of a wide kernel's tile (`TW` in dense.wgsl).
const WIDE: usize = 8;

/// A recorded command, replayed in order at flush.
enum Command {
    Dispatch {
        kernel: Kernel,
        variant: Variant,
        buffers: Vec<usize>,
        uniform_offset: u64,
        uniform_size: u64,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// Which form of the dense kernels runs (dense.wgsl): both compute the same sums in the same
/// order, bit for bit; they differ in how work is laid out on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFamily {
    /// 4 × 4 register tiles per invocation, 64-wide workgroups: for hardware GPUs.
    Tiled,
    /// 8 × 8 register tiles per invocation (half the loads per product of the 4 × 4 tiles, or
    /// less): for CPU rasterisers
    /// (lavapipe, llvmpipe), which run a workgroup's invocations as SIMD lanes and pay for
    /// every lane's every load, while arithmetic is cheap.
    Wide,
}

impl KernelFamily {
    /// The family that suits an adapter: [`KernelFamily::Wide`] on CPU (software) adapters,
    /// [`KernelFamily::Tiled`] on every other.
    pub fn for_device(device_type: wgpu::DeviceType) -> Self {
        match device_type {
            wgpu::DeviceType::Cpu => KernelFamily::Wide,
            _ => KernelFamily::Tiled,
        }
    }

    /// Short name (`tiled`, `wide`).
    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Tiled => "tiled",
            KernelFamily::Wide => "wide",
        }
    }
}

/// The wgpu backend.
pub struct GpuBackend {
    ctx: GpuContext,
    buffers: Vec<wgpu::Buffer>,
    ix: HostIndices,
    cache: PipelineCache,
    pending: Vec<Command>,
    uniforms: Vec<u8>,
    arena: Option<wgpu::Buffer>,
    errors: Arc<Mutex<Vec<String>>>,
    counters: Counters,
    vectorized: bool,
    family: KernelFamily,
    per_agent: Arc<AtomicBool>,
    timer: Option<GpuTimer>,
}

impl GpuBackend {
    /// Opens the adapter chosen by `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` (best available otherwise).
    pub fn from_env() -> Result<Self> {
        Self::new(&AdapterChoice::from_env())
    }

    /// Opens the best adapter matching a choice.
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        Ok(Self::with_context(GpuContext::new(choice)?))
    }

    /// Wraps an open device.
    pub fn with_context(ctx: GpuContext) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        ctx.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                sink.lock().expect("error sink").push(e.to_string());
            }));
        GpuBackend {
            buffers: Vec::new(),
            ix: HostIndices::default(),
            cache: PipelineCache::default(),
            pending: Vec::new(),
            uniforms: Vec::new(),
            arena: None,
            errors,
            counters: Counters::default(),
            vectorized: true,
            family: KernelFamily::for_device(ctx.info.device_type),
            per_agent: Arc::new(AtomicBool::new(false)),
            timer: GpuTimer::new(&ctx.device, &ctx.queue),
            ctx,
        }
    }

    /// Chooses the dense and mix kernels with vec4 loads where rows are 16-byte aligned (the
    /// default) or the scalar ones everywhere (for benchmarks comparing the two).
    pub fn set_vectorized(&mut self, on: bool) {
        self.vectorized = on;
    }

    /// Chooses the form of the dense kernels (default: [`KernelFamily::for_device`]).
    pub fn set_kernel_family(&mut self, family: KernelFamily) {
        self.family = family;
    }

    /// The form of the dense kernels in use.
    pub fn kernel_family(&self) -> KernelFamily {
        self.family
    }

    /// A switch for the per-agent mode, kept by the caller when the backend moves into a
    /// trainer (benchmarks): while it is on, every dense kernel over a job list is dispatched
    /// once per job, as a loop over agents would, instead of once for all jobs. Results are
    /// the same bit for bit; only the dispatch count changes. Off by default.
    pub fn per_agent_switch(&self) -> Arc<AtomicBool> {
        self.per_agent.clone()
    }

    /// Whether the backend records a timestamp pair per compute pass (the adapter has
    /// timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.timer.is_some()
    }

    /// The device and adapter facts.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Waits until all submitted work has finished (for timing).
    pub fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        self.take_errors()
    }

    fn take_errors(&self) -> Result<()> {
        let mut errs = self.errors.lock().expect("error sink");
        if errs.is_empty() {
            Ok(())
        } else {
            let msg = errs.join("; ");
            errs.clear();
            Err(Error::Gpu(msg))
        }
    }

    fn buffer(&self, b: Buf) -> Result<&wgpu::Buffer> {
        self.buffers.get(b.id).ok_or_else(|| {
            Error::op(
                "gpu",
                format!("buffer {} does not belong to this backend", b.id),
            )
        })
    }

    fn byte_len(kind: BufKind, len: usize) -> u64 {
        match kind {
            BufKind::U8 => len.div_ceil(4) as u64 * 4,
            _ => len as u64 * 4,
        }
    }

    /// Checks a buffer of `len` elements and `bytes` bytes against the adapter's allocation and
    /// binding limits, and its element count against the kernels' u32 indices (once here, so
    /// every index into it fits a uniform field).
    fn check_size(&self, label: &str, len: usize, bytes: u64) -> Result<()> {
        if u32::try_from(len).is_err() {
            return Err(Error::IndexRange {
                what: format!("the element count of {label}"),
                value: len as u64,
            });
        }
        let l = &self.ctx.limits;
        let too_large = |limit: u64, limit_name| Error::BufferTooLarge {
            what: label.to_string(),
            bytes,
            limit,
            limit_name,
        };
        if bytes > l.max_buffer_size {
            return Err(too_large(l.max_buffer_size, "max_buffer_size"));
        }
        if bytes > l.max_storage_buffer_binding_size {
            return Err(too_large(
                l.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            ));
        }
        Ok(())
    }

    fn usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    }

    /// Writes bytes in order with the recorded work: directly when nothing is pending (queue
    /// writes land before the next submit's commands), through a staging copy otherwise.
    fn write_bytes(&mut self, buf: Buf, byte_offset: u64, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let dst = self.buffer(buf)?.clone();
        if self.pending.is_empty() {
            self.ctx.queue.write_buffer(&dst, byte_offset, bytes);
        } else {
            let src = self
                .ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("staging write"),
                    contents: bytes,
                    usage: wgpu::BufferUsages::COPY_SRC,
                });
            self.pending.push(Command::Copy {
                src,
                src_offset: 0,
                dst,
                dst_offset: byte_offset,
                size: bytes.len() as u64,
            });
        }
        Ok(())
    }

    /// Records one dispatch of `work` invocations (or, for the reduction, `work` workgroups),
    /// spread over a 2-D grid when one dimension is not enough.
    fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        variant: Variant,
        params: &P,
        buffers: &[Buf],
        work: usize,
    ) -> Result<()> {
        let def = kernel.def();
        debug_assert!(def.variants.contains(&variant), "{kernel:?} {variant:?}");
        debug_assert_eq!(buffers.len(), def.storage.len(), "{kernel:?} bindings");
        for b in buffers {
            self.buffer(*b)?;
        }
        if work == 0 {
            return Ok(());
        }
        // The reductions and the norms index workgroups (one per segment or group), the others
        // invocations.
        let per_group = if kernel.counts_workgroups() {
            1
        } else {
            def.workgroup_size as u64
        };
        let groups = kernels::grid(
            (work as u64).div_ceil(per_group),
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )
        .ok_or_else(|| {
            Error::op(
                def.entry,
                format!("{work} invocations exceed the adapter's dispatch grid"),
            )
        })?;
        // Kernels linearise the (padded) grid into a u32 id: it must not wrap.
        let ids = groups[0] as u64 * groups[1] as u64 * per_group;
        if ids > 1 << 32 {
            return Err(Error::IndexRange {
                what: format!("the invocation ids of one {} dispatch", def.entry),
                value: ids,
            });
        }
        let align = self.ctx.limits.min_uniform_buffer_offset_alignment as usize;
        let offset = self.uniforms.len().div_ceil(align) * align;
        self.uniforms.resize(offset, 0);
        self.uniforms.extend_from_slice(bytemuck::bytes_of(params));
        self.pending.push(Command::Dispatch {
            kernel,
            variant,
            buffers: buffers.iter().map(|b| b.id).collect(),
            uniform_offset: offset as u64,
            uniform_size: std::mem::size_of::<P>() as u64,
            groups,
        });
        Ok(())
    }

    /// Records a dense kernel over the jobs of `s`: one dispatch for all jobs, or in the
    /// per-agent mode one per job (`first_job` in the uniforms). `per_job` is the grid of one
    /// job (invocations, or workgroups for the lane kernels).
    fn dispatch_jobs(
        &mut self,
        kernel: Kernel,
        variant: Variant,
        s: &DenseJobs,
        buffers: &[Buf],
        per_job: usize,
    ) -> Result<()> {
        let mut p = dense_params(s)?;
        if !self.per_agent.load(Ordering::Relaxed) {
            return self.dispatch(kernel, variant, &p, buffers, s.n_jobs * per_job);
        }
        p.n_jobs = 1;
        for j in 0..s.n_jobs {
            p.first_job = u(j)?;
            self.dispatch(kernel, variant, &p, buffers, per_job)?;
        }
        Ok(())
    }

    /// The vec4 variant when every size is a multiple of 4 (rows then start on 16-byte
    /// boundaries: buffers always do) and vectorised kernels are on; scalar otherwise.
    fn width(&self, sizes: &[usize]) -> Variant {
        if self.vectorized && sizes.iter().all(|v| v.is_multiple_of(4)) {
            Variant::VEC4
        } else {
            Variant::SCALAR
        }
    }

    fn encode(&mut self) -> Option<wgpu::CommandBuffer> {
        if self.pending.is_empty() {
            return None;
        }
        let device = &self.ctx.device;
        let needed = (self.uniforms.len() as u64).max(256);
        if self.arena.as_ref().is_none_or(|a| a.size() < needed) {
            self.arena = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("uniform arena"),
                size: needed.next_power_of_two(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let arena = self.arena.clone().expect("just created");
        if !self.uniforms.is_empty() {
            self.ctx.queue.write_buffer(&arena, 0, &self.uniforms);
        }
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("step"),
        });
        let commands = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < commands.len() {
            if let Command::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                size,
            } = &commands[i]
            {
                encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                i += 1;
                continue;
            }
            // A run of dispatches shares one compute pass.
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("step"),
                timestamp_writes: self.timer.as_mut().map(|t| t.next_pass(device)),
            });
            while let Some(Command::Dispatch {
                kernel,
                variant,
                buffers,
                uniform_offset,
                uniform_size,
                groups,
            }) = commands.get(i)
            {
                let def = kernel.def();
                let pipeline = self.cache.get(device, def, *variant);
                let storage: Vec<&wgpu::Buffer> =
                    buffers.iter().map(|id| &self.buffers[*id]).collect();
                let uniforms = wgpu::BufferBinding {
                    buffer: &arena,
                    offset: *uniform_offset,
                    size: wgpu::BufferSize::new(*uniform_size),
                };
                let bind_group =
                    kernels::bind_group(device, pipeline, def.entry, uniforms, &storage);
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                self.counters.dispatches += 1;
                i += 1;
            }
        }
        self.uniforms.clear();
        Some(encoder.finish())
    }

    fn read_bytes(&mut self, buf: Buf) -> Result<Vec<u8>> {
        let bytes = Self::byte_len(buf.kind, buf.len);
        let src = self.buffer(buf)?.clone();
        let readback = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if bytes > 0 {
            self.pending.push(Command::Copy {
                src,
                src_offset: 0,
                dst: readback.clone(),
                dst_offset: 0,
                size: bytes,
            });
        }
        self.flush()?;
        readback.map_async(wgpu::MapMode::Read, .., |_| {});
        self.wait()?;
        let out = readback
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("{e:?}")))?
            .to_vec();
        readback.unmap();
        Ok(out[..bytes as usize].to_vec())
    }
}

/// A size, count or offset as the u32 a uniform field holds. Buffers are at most u32::MAX
/// elements (checked at allocation) and operations are checked against their buffers, so this
/// only fails for an operation that got past those checks; it never wraps.
fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::IndexRange {
        what: "a uniform size or offset".to_string(),
        value: v as u64,
    })
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        self.ctx.describe()
    }

    fn check_alloc(&self, kind: BufKind, len: usize, what: &str) -> Result<()> {
        self.check_size(what, len, Self::byte_len(kind, len).max(16))
    }

    fn host_bytes(&self, _kind: BufKind, _len: usize) -> u64 {
        0
    }

    fn alloc(&mut self, kind: BufKind, len: usize, label: &str) -> Result<Buf> {
        let bytes = Self::byte_len(kind, len).max(16);
        self.check_size(label, len, bytes)?;
        let b = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: Self::usage(),
            mapped_at_creation: false,
        });
        self.take_errors()?;
        self.buffers.push(b);
        Ok(self.ix.alloc(self.buffers.len() - 1, len, kind))
    }

    fn write_f32(&mut self, buf: Buf, offset: usize, data: &[f32]) -> Result<()> {
        check_write("write_f32", buf, BufKind::F32, offset, data.len())?;
        self.write_bytes(buf, offset as u64 * 4, bytemuck::cast_slice(data))
    }

    fn write_u32(&mut self, buf: Buf, offset: usize, data: &[u32]) -> Result<()> {
        check_write("write_u32", buf, BufKind::U32, offset, data.len())?;
        self.write_bytes(buf, offset as u64 * 4, bytemuck::cast_slice(data))?;
        self.ix.write(buf, offset, data);
        Ok(())
    }

    fn upload_u8(&mut self, data: &[u8], label: &str) -> Result<Buf> {
        let bytes = Self::byte_len(BufKind::U8, data.len()).max(16);
        self.check_size(label, data.len(), bytes)?;
        let mut padded = data.to_vec();
        padded.resize(bytes as usize, 0);
        let b = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage: Self::usage(),
            });
        self.take_errors()?;
        self.buffers.push(b);
        Ok(self
            .ix
            .alloc(self.buffers.len() - 1, data.len(), BufKind::U8))
    }

    fn read_f32(&mut self, buf: Buf) -> Result<Vec<f64>> {
        check_write("read_f32", buf, BufKind::F32, 0, 0)?;
        let bytes = self.read_bytes(buf)?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes)
            .iter()
            .map(|&v| v as f64)
            .collect())
    }

    fn read_u32(&mut self, buf: Buf) -> Result<Vec<u32>> {
        check_write("read_u32", buf, BufKind::U32, 0, 0)?;
        let bytes = self.read_bytes(buf)?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    fn copy(&mut self, op: &CopyRange) -> Result<()> {
        op.check()?;
        if op.len > 0 {
            self.pending.push(Command::Copy {
                src: self.buffer(op.src)?.clone(),
                src_offset: op.src_offset as u64 * 4,
                dst: self.buffer(op.dst)?.clone(),
                dst_offset: op.dst_offset as u64 * 4,
                size: op.len as u64 * 4,
            });
        }
        Ok(())
    }

    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check(&self.ix)?;
        self.ix.gather(op);
        let n = &op.norm;
        let inv_std = |c: usize| (1.0 / n.std[c]) as f32;
        let p = GatherParams {
            rows: u(op.rows)?,
            dim: u(op.dim)?,
            n_samples: u(op.labels.len)?,
            plane: u(op.dim / n.channels)?,
            mean0: n.mean[0] as f32,
            mean1: n.mean[1] as f32,
            mean2: n.mean[2] as f32,
            mean3: n.mean[3] as f32,
            inv_std0: inv_std(0),
            inv_std1: inv_std(1),
            inv_std2: inv_std(2),
            inv_std3: inv_std(3),
        };
        // A word of four features per invocation where every row starts on a word.
        let variant = self.width(&[op.dim]);
        self.dispatch(
            Kernel::Gather,
            variant,
            &p,
            &[op.data, op.labels, op.index, op.x, op.y],
            op.rows * (op.dim / variant.width.lanes()).div_ceil(GATHER_GROUPS),
        )
    }

    fn dense_forward(&mut self, op: &DenseForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let variant = self
            .width(&[s.layer.in_dim, s.layer.w_off, s.stride])
            .relu(s.layer.relu);
        let (kernel, per_job) = match self.family {
            KernelFamily::Tiled => (
                Kernel::DenseForward,
                s.batch.div_ceil(4) * s.layer.out_dim.div_ceil(4),
            ),
            KernelFamily::Wide => (
                Kernel::DenseForwardWide,
                s.batch.div_ceil(WIDE) * s.layer.out_dim.div_ceil(WIDE),
            ),
        };
        let buffers = [s.jobs, op.params, op.input, op.input, op.output];
        self.dispatch_jobs(kernel, variant, s, &buffers, per_job)
    }

    fn dense_backward_data(&mut self, op: &DenseBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let (kernel, variant, per_job) = match self.family {
            KernelFamily::Tiled => (
                Kernel::DenseBackwardData,
                Variant::SCALAR,
                s.batch.div_ceil(4) * s.layer.in_dim.div_ceil(4),
            ),
            KernelFamily::Wide => (
                Kernel::DenseBackwardDataWide,
                self.width(&[s.layer.in_dim, s.layer.w_off, s.stride]),
                s.batch.div_ceil(WIDE) * s.layer.in_dim.div_ceil(WIDE),
            ),
        };
        let variant = variant.relu(op.relu_mask);
        let buffers = [s.jobs, op.params, op.dz, op.input, op.dx];
        self.dispatch_jobs(kernel, variant, s, &buffers, per_job)
    }

    fn dense_backward_weights(&mut self, op: &DenseBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let (kernel, variant, per_job) = match self.family {
            KernelFamily::Tiled => (
                Kernel::DenseBackwardWeights,
                self.width(&[s.layer.in_dim]),
                s.layer.out_dim.div_ceil(4) * (s.layer.in_dim + 1).div_ceil(4),
            ),
            KernelFamily::Wide => (
                Kernel::DenseBackwardWeightsWide,
                self.width(&[s.layer.in_dim]),
                s.layer.out_dim.div_ceil(WIDE) * (s.layer.in_dim + 1).div_ceil(WIDE),
            ),
        };
        // The params binding is unused by this entry point; bind the input in its place.
        let buffers = [s.jobs, op.input, op.dz, op.input, op.grads];
        self.dispatch_jobs(kernel, variant, s, &buffers, per_job)
    }

    fn conv_forward(&mut self, op: &ConvForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = &s.layer;
        let o = l.output();
        // 4-pixel tiles along each output row × 8 output channels.
        let work = s.n_jobs * s.batch * o.height * o.width.div_ceil(4) * l.out_channels.div_ceil(8);
        self.dispatch(
            Kernel::ConvForward,
            Variant::SCALAR,
            &conv_params(s)?,
            &[s.jobs, op.params, op.input, op.output],
            work,
        )
    }

    fn conv_backward_data(&mut self, op: &ConvBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = &s.layer;
        let rows = s.batch * l.input.height * l.input.width;
        let work = s.n_jobs * rows.div_ceil(4) * l.input.channels.div_ceil(4);
        self.dispatch(
            Kernel::ConvBackwardData,
            Variant::SCALAR,
            &conv_params(s)?,
            &[s.jobs, op.params, op.dy, op.dx],
            work,
        )
    }

    fn conv_backward_weights(&mut self, op: &ConvBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = &s.layer;
        let cols = l.weight_len() / l.out_channels + l.b_off.is_some() as usize;
        let work = s.n_jobs * l.out_channels.div_ceil(4) * cols.div_ceil(4);
        self.dispatch(
            Kernel::ConvBackwardWeights,
            Variant::SCALAR,
            &conv_params(s)?,
            &[s.jobs, op.dy, op.input, op.grads],
            work,
        )
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let work = op.samples * op.layer.output().len();
        let p = pool_params(&op.layer, op.samples)?;
        self.dispatch(Kernel::Pool, Variant::SCALAR, &p, &[op.x, op.y], work)
    }

    fn pool_backward(&mut self, op: &PoolBackward) -> Result<()> {
        op.check()?;
        let work = op.samples * op.layer.input.len();
        let p = pool_params(&op.layer, op.samples)?;
        let buffers = [op.x, op.dx, op.dy];
        self.dispatch(Kernel::PoolBackward, Variant::SCALAR, &p, &buffers, work)
    }

    fn relu(&mut self, op: &Relu) -> Result<()> {
        op.check()?;
        let p = vector_params(1, op.len, (0, 0, 1), (0, 0, 1))?;
        self.dispatch(Kernel::Relu, Variant::SCALAR, &p, &[op.x, op.y], op.len)
    }

    fn relu_backward(&mut self, op: &ReluBackward) -> Result<()> {
        op.check()?;
        let p = vector_params(1, op.len, (0, 0, 1), (0, 0, 1))?;
        let buffers = [op.y, op.dx, op.dy];
        self.dispatch(Kernel::ReluBackward, Variant::SCALAR, &p, &buffers, op.len)
    }

    fn norm_forward(&mut self, op: &NormForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let groups = s.n_jobs * s.batch * s.layer.groups;
        self.dispatch(
            Kernel::NormForward,
            Variant::SCALAR,
            &norm_params(s)?,
            &[s.jobs, op.params, op.x, op.y],
            groups,
        )
    }

    fn norm_backward(&mut self, op: &NormBackward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let groups = s.n_jobs * s.layer.groups;
        self.dispatch(
            Kernel::NormBackward,
            Variant::SCALAR,
            &norm_params(s)?,
            &[s.jobs, op.params, op.x, op.dx, op.dy, op.grads],
            groups,
        )
    }

    fn softmax_xent(&mut self, op: &SoftmaxXent) -> Result<()> {
        op.check(&self.ix)?;
        let p = XentParams {
            n_jobs: u(op.n_jobs)?,
            batch: u(op.batch)?,
            classes: u(op.classes)?,
            _pad0: 0,
        };
        self.dispatch(
            Kernel::SoftmaxXent,
            Variant::SCALAR,
            &p,
            &[op.jobs, op.logits, op.labels, op.dlogits, op.stats],
            op.n_jobs * op.batch,
        )
    }

    fn mix(&mut self, op: &Mix) -> Result<()> {
        op.check(&self.ix)?;
        let c = &op.csr;
        // Four elements per invocation when every vector starts on a 16-byte boundary.
        let variant = self.width(&[
            op.len,
            op.in_stride,
            op.in_offset,
            op.out_stride,
            op.out_offset,
        ]);
        let unit = variant.width.lanes();
        let p = MixParams {
            rows: u(c.rows)?,
            len: u(op.len / unit)?,
            in_stride: u(op.in_stride / unit)?,
            in_offset: u(op.in_offset / unit)?,
            out_stride: u(op.out_stride / unit)?,
            out_offset: u(op.out_offset / unit)?,
            ..Default::default()
        };
        self.dispatch(
            Kernel::Mix,
            variant,
            &p,
            &[c.row_ptr, c.col, c.weight, op.input, op.output],
            c.rows * (op.len / unit).div_ceil(MIX_ELEMENTS),
        )
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        let variant = self.width(&[op.len]);
        let n = op.len / variant.width.lanes();
        let p = UpdateParams {
            len: u(n)?,
            a: op.a as f32,
            b: op.b as f32,
            ..Default::default()
        };
        self.dispatch(Kernel::Axpby, variant, &p, &[op.x, op.y], n)
    }

    fn fill(&mut self, op: &Fill) -> Result<()> {
        op.check()?;
        let mut p = vector_params(op.count, op.len, (0, 0, 1), (op.offset, op.stride, 1))?;
        p.value = op.value as f32;
        self.dispatch(
            Kernel::Fill,
            Variant::SCALAR,
            &p,
            &[op.y],
            op.count * op.len,
        )
    }

    fn copy_strided(&mut self, op: &CopyStrided) -> Result<()> {
        op.check()?;
        let src = (op.src_offset, op.src_stride, op.src_step);
        let dst = (op.dst_offset, op.dst_stride, op.dst_step);
        let p = vector_params(op.count, op.len, src, dst)?;
        let work = op.count * op.len;
        self.dispatch(
            Kernel::CopyStrided,
            Variant::SCALAR,
            &p,
            &[op.src, op.dst],
            work,
        )
    }

    fn mean(&mut self, op: &Mean) -> Result<()> {
        op.check()?;
        let src = (op.src_offset, op.src_stride, 1);
        let p = vector_params(op.count, op.len, src, (op.dst_offset, 0, 1))?;
        self.dispatch(Kernel::Mean, Variant::SCALAR, &p, &[op.src, op.dst], op.len)
    }

    fn local_step(&mut self, op: &LocalStep) -> Result<()> {
        op.check()?;
        let variant = self.width(&[op.len]);
        let n = op.len / variant.width.lanes();
        let p = UpdateParams {
            len: u(n)?,
            nesterov: op.nesterov as u32,
            lr: op.lr as f32,
            momentum: op.momentum as f32,
            weight_decay: op.weight_decay as f32,
            ..Default::default()
        };
        let buffers = [op.params, op.grads, op.momentum_buf];
        self.dispatch(Kernel::LocalStep, variant, &p, &buffers, n)
    }

    fn reduce(&mut self, op: &Reduce) -> Result<()> {
        op.check()?;
        let p = ReduceParams {
            segments: u(op.segments)?,
            seg_len: u(op.seg_len)?,
            mode: op.mode as u32,
            out_offset: u(op.out_offset)?,
            a_offset: u(op.a_offset)?,
            a_stride: u(op.a_stride)?,
            b_offset: u(op.b_offset)?,
            b_stride: u(op.b_stride)?,
        };
        let buffers = [op.a, op.b, op.out];
        self.dispatch(Kernel::Reduce, Variant::SCALAR, &p, &buffers, op.segments)
    }

    fn pair_dots(&mut self, op: &PairDots) -> Result<()> {
        op.check(&self.ix)?;
        let p = PairDotsParams {
            count: u(op.count)?,
            n_tensors: u(op.n_tensors)?,
            stride: u(op.stride)?,
            ..Default::default()
        };
        let buffers = [op.x, op.pairs, op.tensors, op.out];
        let work = op.count * op.n_tensors;
        self.dispatch(Kernel::PairDots, Variant::SCALAR, &p, &buffers, work)
    }

    fn sign_compress(&mut self, op: &SignCompress) -> Result<()> {
        op.check()?;
        if op.len == 0 {
            return Ok(());
        }
        let p = CompressParams {
            segments: u(op.segments)?,
            seg_len: u(op.len)?,
            offset: u(op.offset)?,
            stride: u(op.stride)?,
        };
        let buffers = [op.memory, op.out];
        self.dispatch(
            Kernel::SignCompress,
            Variant::SCALAR,
            &p,
            &buffers,
            op.segments,
        )
    }

    fn adam_step(&mut self, op: &AdamStep) -> Result<()> {
        op.check()?;
        let p = AdamParams {
            len: u(op.len)?,
            lr: op.lr as f32,
            beta1: op.beta1 as f32,
            beta2: op.beta2 as f32,
            eps: op.eps as f32,
            bc1: op.bc1 as f32,
            bc2: op.bc2 as f32,
            weight_decay: op.weight_decay as f32,
            ..Default::default()
        };
        let buffers = [op.params, op.grads, op.m1, op.m2];
        self.dispatch(Kernel::AdamStep, Variant::SCALAR, &p, &buffers, op.len)
    }

    fn adam_moments(&mut self, op: &AdamMoments) -> Result<()> {
        op.check()?;
        let len = op.agents * op.stride;
        let p = AdamParams {
            len: u(len)?,
            stride: u(op.stride)?,
            beta1: op.beta1 as f32,
            beta2: op.beta2 as f32,
            ..Default::default()
        };
        let buffers = [op.delta, op.sq_norms, op.m1, op.m2];
        self.dispatch(Kernel::AdamMoments, Variant::SCALAR, &p, &buffers, len)
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(cb) = self.encode() {
            self.ctx.queue.submit([cb]);
            self.counters.submits += 1;
        }
        if let Some(t) = self.timer.as_mut().filter(|t| t.nearly_full()) {
            t.collect(&self.ctx.device, &self.ctx.queue)?;
        }
        self.take_errors()
    }

    fn gpu_seconds(&mut self) -> Result<Option<f64>> {
        self.flush()?;
        match self.timer.as_mut() {
            Some(t) => {
                t.collect(&self.ctx.device, &self.ctx.queue)?;
                Ok(Some(t.take_seconds()))
            }
            None => Ok(None),
        }
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn live_buffers(&self) -> LiveBuffers {
        LiveBuffers {
            count: self.buffers.len(),
            bytes: self.buffers.iter().map(wgpu::Buffer::size).sum(),
        }
    }

    fn release_from(&mut self, mark: usize) {
        // Recorded dispatches name buffers by slot: submit them before the slots go. wgpu keeps
        // a buffer alive until the work using it has finished; errors surface at the next flush.
        if let Some(cb) = self.encode() {
            self.ctx.queue.submit([cb]);
            self.counters.submits += 1;
        }
        self.buffers.truncate(mark);
        self.ix.release_from(mark);
    }
}

/// vector.wgsl's block description: `count` blocks of `len`, each side as (offset, stride, step).
fn vector_params(
    count: usize,
    len: usize,
    (src_offset, src_stride, src_step): (usize, usize, usize),
    (dst_offset, dst_stride, dst_step): (usize, usize, usize),
) -> Result<VectorParams> {
    Ok(VectorParams {
        count: u(count)?,
        len: u(len)?,
        src_offset: u(src_offset)?,
        src_stride: u(src_stride)?,
        src_step: u(src_step)?,
        dst_offset: u(dst_offset)?,
        dst_stride: u(dst_stride)?,
        dst_step: u(dst_step)?,
        ..Default::default()
    })
}

fn dense_params(s: &DenseJobs) -> Result<DenseParams> {
    Ok(DenseParams {
        n_jobs: u(s.n_jobs)?,
        batch: u(s.batch)?,
        in_dim: u(s.layer.in_dim)?,
        out_dim: u(s.layer.out_dim)?,
        w_off: u(s.layer.w_off)?,
        b_off: u(s.layer.b_off)?,
        param_stride: u(s.stride)?,
        in_by_data: (s.input_blocks == InputBlocks::ByData) as u32,
        ..Default::default()
    })
}

fn conv_params(s: &ConvJobs) -> Result<ConvParams> {
    let l = &s.layer;
    let o = l.output();
    Ok(ConvParams {
        n_jobs: u(s.n_jobs)?,
        batch: u(s.batch)?,
        in_c: u(l.input.channels)?,
        in_h: u(l.input.height)?,
        in_w: u(l.input.width)?,
        out_c: u(l.out_channels)?,
        out_h: u(o.height)?,
        out_w: u(o.width)?,
        kernel: u(l.kernel)?,
        stride: u(l.stride)?,
        pad: u(l.pad)?,
        param_stride: u(s.stride)?,
        w_off: u(l.w_off)?,
        b_off: u(l.b_off.unwrap_or(0))?,
        has_bias: l.b_off.is_some() as u32,
        in_by_data: (s.input_blocks == InputBlocks::ByData) as u32,
    })
}

fn pool_params(l: &PoolLayer, samples: usize) -> Result<PoolParams> {
    let o = l.output();
    Ok(PoolParams {
        samples: u(samples)?,
        channels: u(l.input.channels)?,
        in_h: u(l.input.height)?,
        in_w: u(l.input.width)?,
        out_h: u(o.height)?,
        out_w: u(o.width)?,
        window: u(l.window)?,
        stride: u(l.stride)?,
        is_max: (l.kind == PoolKind::Max) as u32,
        ..Default::default()
    })
}

fn norm_params(s: &NormJobs) -> Result<NormParams> {
    let l = &s.layer;
    Ok(NormParams {
        n_jobs: u(s.n_jobs)?,
        batch: u(s.batch)?,
        channels: u(l.image.channels)?,
        plane: u(l.image.height * l.image.width)?,
        groups: u(l.groups)?,
        gamma_off: u(l.gamma_off)?,
        beta_off: u(l.beta_off)?,
        param_stride: u(s.stride)?,
        is_evo: (l.kind == NormKind::EvoS0) as u32,
        eps: l.eps as f32,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_u32_are_typed_errors_not_wrapped() {
        assert_eq!(u(u32::MAX as usize).unwrap(), u32::MAX);
        assert!(matches!(
            u(u32::MAX as usize + 1),
            Err(Error::IndexRange { value, .. }) if value == 1 << 32
        ));
        let Ok(mut be) = GpuBackend::from_env() else {
            eprintln!("SKIPPED: no GPU adapter found");
            return;
        };
        // Rejected before anything is allocated: the kernels could not index past u32::MAX.
        let err = be
            .alloc(BufKind::F32, u32::MAX as usize + 1, "huge")
            .unwrap_err();
        assert!(
            matches!(err, Error::IndexRange { value, .. } if value == 1 << 32),
            "{err}"
        );
        assert!(err.to_string().contains("huge"), "{err}");
    }
}
