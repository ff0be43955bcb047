//! Device ceilings for the benchmarks (probe.wgsl): peak f32 multiply-add rate and streaming
//! bandwidth. Kept apart from the training kernels: a [`Probe`] shares the backend's device and
//! queue but records and submits its own work.

use super::context::GpuContext;
use super::kernels::{self, Access, KernelDef, PipelineCache, Variant};
use super::params::ProbeParams;
use crate::error::{Error, Result};
use std::time::Instant;
use wgpu::util::DeviceExt;

/// probe.wgsl `peak_fma`: eight independent vec4 FMA chains per invocation.
pub const PEAK_FMA: KernelDef = KernelDef {
    file: "probe.wgsl",
    entry: "peak_fma",
    uniform: "ProbeParams",
    storage: &[Access::Read, Access::ReadWrite],
    workgroup_size: 64,
    variants: &[Variant::SCALAR],
};

/// probe.wgsl `stream`: a scaled copy, 32 bytes of traffic per invocation.
pub const STREAM: KernelDef = KernelDef {
    entry: "stream",
    ..PEAK_FMA
};

/// Every probe kernel, for the shader tests.
pub const PROBES: [KernelDef; 2] = [PEAK_FMA, STREAM];

/// vec4s per probe buffer: 16 MiB, well past any cache.
const VEC4S: u32 = 1 << 20;

/// Runs the probe kernels on a device.
pub struct Probe {
    device: wgpu::Device,
    queue: wgpu::Queue,
    max_groups: u32,
    cache: PipelineCache,
    src: wgpu::Buffer,
    dst: wgpu::Buffer,
}

impl Probe {
    /// A probe on an open device (e.g. [`GpuBackend::context`](super::GpuBackend::context)).
    pub fn new(ctx: &GpuContext) -> Self {
        let buffer = |label| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: VEC4S as u64 * 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Probe {
            device: ctx.device.clone(),
            queue: ctx.queue.clone(),
            max_groups: ctx.limits.max_compute_workgroups_per_dimension,
            cache: PipelineCache::default(),
            src: buffer("probe.src"),
            dst: buffer("probe.dst"),
        }
    }

    /// Wall seconds of one dispatch of `def` over `params.len` invocations, submit to finish.
    fn run(&mut self, def: &KernelDef, params: ProbeParams) -> Result<f64> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let uniforms = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("probe params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let groups = (params.len as u64).div_ceil(def.workgroup_size as u64);
        let grid = kernels::grid(groups, self.max_groups)
            .ok_or_else(|| Error::op("probe", "the probe grid exceeds the adapter's limit"))?;
        let pipeline = self.cache.get(&self.device, def, Variant::SCALAR);
        let bind_group = kernels::bind_group(
            &self.device,
            pipeline,
            def.entry,
            uniforms.as_entire_buffer_binding(),
            &[&self.src, &self.dst],
        );
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(def.entry),
            });
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        }
        let t0 = Instant::now();
        self.queue.submit([encoder.finish()]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let seconds = t0.elapsed().as_secs_f64();
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(Error::Gpu(e.to_string())),
            None => Ok(seconds),
        }
    }

    /// The best of three timed runs after a warm-up.
    fn best(&mut self, def: &KernelDef, params: ProbeParams) -> Result<f64> {
        self.run(def, params)?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            best = best.min(self.run(def, params)?);
        }
        Ok(best)
    }

    /// Measures the device's own ceilings: (peak GFLOP/s of f32 multiply-add, streaming GB/s).
    pub fn measure_ceilings(&mut self) -> Result<(f64, f64)> {
        let fma_threads = 1u32 << 16;
        let iters = 512u32;
        let fma = ProbeParams {
            len: fma_threads,
            iters,
            ..Default::default()
        };
        let t = self.best(&PEAK_FMA, fma)?;
        let gflops = (fma_threads as f64 * 8.0 * 4.0 * 2.0 * iters as f64) / t / 1e9;
        let stream = ProbeParams {
            len: VEC4S,
            ..Default::default()
        };
        let t = self.best(&STREAM, stream)?;
        let gbps = (VEC4S as f64 * 32.0) / t / 1e9;
        Ok((gflops, gbps))
    }
}
