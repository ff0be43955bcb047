//! Device ceilings for the benchmarks (probe.wgsl): peak f32 multiply-add rate, streaming
//! bandwidth of a copy shader and of `copy_buffer_to_buffer`, and the cost of an empty dispatch
//! and of a submit. Kept apart from the training kernels: a [`Probe`] shares the backend's device
//! and queue but records and submits its own work. `examples/bench.rs` reports them next to the
//! kernels' achieved rates.

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

/// probe.wgsl `empty`: does nothing (the cost of a dispatch and of a submit).
pub const EMPTY: KernelDef = KernelDef {
    entry: "empty",
    ..PEAK_FMA
};

/// Every probe kernel, for the shader tests.
pub const PROBES: [KernelDef; 3] = [PEAK_FMA, STREAM, EMPTY];

/// vec4s per probe buffer: 16 MiB, well past any cache.
const VEC4S: u32 = 1 << 20;

/// Median, minimum and maximum of repeated measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Median (the mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `samples` (all zero when empty).
    pub fn of(samples: &[f64]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let k = s.len();
        Spread {
            median: (s[(k - 1) / 2] + s[k / 2]) / 2.0,
            min: s[0],
            max: s[k - 1],
        }
    }

    /// `f` applied to every figure: for a decreasing `f` (a rate from a time) min and max swap.
    pub fn map(self, f: impl Fn(f64) -> f64) -> Spread {
        let (a, b) = (f(self.min), f(self.max));
        Spread {
            median: f(self.median),
            min: a.min(b),
            max: a.max(b),
        }
    }
}

/// The device's measured ceilings, each over repeated runs.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Ceilings {
    /// Peak f32 multiply-add rate, GFLOP/s (2 flops per FMA).
    pub fma_gflops: Spread,
    /// Copy shader bandwidth, GB/s of bytes read plus written.
    pub copy_shader_gbps: Spread,
    /// `copy_buffer_to_buffer` bandwidth, GB/s of bytes read plus written.
    pub copy_buffer_gbps: Spread,
    /// Microseconds per empty dispatch (many in one compute pass).
    pub dispatch_us: Spread,
    /// Microseconds per submit of a command buffer holding one empty dispatch, submitted and
    /// waited for one at a time.
    pub submit_us: Spread,
}

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
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
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

    fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }

    /// An encoder holding `repeat` dispatches of `def` over `params.len` invocations in one
    /// compute pass (`copy`: one buffer-to-buffer copy of the whole source instead).
    fn encode(
        &mut self,
        def: &KernelDef,
        params: ProbeParams,
        repeat: u32,
        copy: bool,
    ) -> Result<wgpu::CommandBuffer> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(def.entry),
            });
        if copy {
            encoder.copy_buffer_to_buffer(&self.src, 0, &self.dst, 0, self.src.size());
            return Ok(encoder.finish());
        }
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
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            for _ in 0..repeat {
                pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
            }
        }
        Ok(encoder.finish())
    }

    /// Wall seconds of `submits` command buffers (each from [`Probe::encode`]), submitted one at
    /// a time and waited for at the end (`each`: waited for one at a time).
    fn run(
        &mut self,
        def: &KernelDef,
        params: ProbeParams,
        repeat: u32,
        copy: bool,
        (submits, each): (u32, bool),
    ) -> Result<f64> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffers = (0..submits)
            .map(|_| self.encode(def, params, repeat, copy))
            .collect::<Result<Vec<_>>>()?;
        let t0 = Instant::now();
        for cb in buffers {
            self.queue.submit([cb]);
            if each {
                self.wait()?;
            }
        }
        self.wait()?;
        let seconds = t0.elapsed().as_secs_f64();
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(Error::Gpu(e.to_string())),
            None => Ok(seconds),
        }
    }

    /// `samples` timed runs after a warm-up, each converted by `rate`.
    fn sample(
        &mut self,
        samples: usize,
        rate: impl Fn(f64) -> f64,
        mut run: impl FnMut(&mut Self) -> Result<f64>,
    ) -> Result<Spread> {
        run(self)?;
        let mut v = Vec::with_capacity(samples);
        for _ in 0..samples.max(1) {
            v.push(rate(run(self)?));
        }
        Ok(Spread::of(&v))
    }

    /// Measures the device's ceilings, each over `samples` runs after a warm-up.
    pub fn measure(&mut self, samples: usize) -> Result<Ceilings> {
        let fma_threads = 1u32 << 16;
        let iters = 512u32;
        let fma = ProbeParams {
            len: fma_threads,
            iters,
            ..Default::default()
        };
        let flops = fma_threads as f64 * 8.0 * 4.0 * 2.0 * iters as f64;
        let fma_gflops = self.sample(
            samples,
            |t| flops / t / 1e9,
            |p| p.run(&PEAK_FMA, fma, 1, false, (1, false)),
        )?;
        let stream = ProbeParams {
            len: VEC4S,
            ..Default::default()
        };
        let bytes = VEC4S as f64 * 32.0;
        let copy_shader_gbps = self.sample(
            samples,
            |t| bytes / t / 1e9,
            |p| p.run(&STREAM, stream, 1, false, (1, false)),
        )?;
        let copy_buffer_gbps = self.sample(
            samples,
            |t| bytes / t / 1e9,
            |p| p.run(&STREAM, stream, 1, true, (1, false)),
        )?;
        // One workgroup per dispatch: the fixed cost of a dispatch inside a pass, and of a
        // submit (with its one dispatch) waited for on its own.
        let one = ProbeParams {
            len: 1,
            ..Default::default()
        };
        let dispatches = 1000;
        let dispatch_us = self.sample(
            samples,
            |t| t / dispatches as f64 * 1e6,
            |p| p.run(&EMPTY, one, dispatches, false, (1, false)),
        )?;
        let submits = 100;
        let submit_us = self.sample(
            samples,
            |t| t / submits as f64 * 1e6,
            |p| p.run(&EMPTY, one, 1, false, (submits, true)),
        )?;
        Ok(Ceilings {
            fma_gflops,
            copy_shader_gbps,
            copy_buffer_gbps,
            dispatch_us,
            submit_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        let r = Spread::of(&[1.0, 2.0, 4.0]).map(|t| 1.0 / t);
        assert_eq!((r.median, r.min, r.max), (0.5, 0.25, 1.0));
    }
}
