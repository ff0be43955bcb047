//! GPU time from timestamp queries: every compute pass writes a begin and an end timestamp; the
//! pairs are resolved and read back only when someone asks for the total (at evaluation).

use crate::error::{Error, Result};

/// Timestamp pairs a query set holds before it must be resolved.
const PAIRS: u32 = 1024;

/// Accumulates the GPU time of compute passes.
pub(crate) struct GpuTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    used: u32,
    period_ns: f64,
    pending_ns: f64,
}

impl GpuTimer {
    /// A timer, or None when the device has no timestamp queries.
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Option<Self> {
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let bytes = 2 * PAIRS as u64 * 8;
        Some(GpuTimer {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * PAIRS,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            used: 0,
            period_ns: queue.get_timestamp_period() as f64,
            pending_ns: 0.0,
        })
    }

    /// Whether the set is nearly full and should be collected before the next submit.
    pub(crate) fn nearly_full(&self) -> bool {
        self.used + 2 * 64 > 2 * PAIRS
    }

    /// Timestamp writes for the next compute pass, if there is room.
    pub(crate) fn next_pass(&mut self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        if self.used + 2 > 2 * PAIRS {
            return None;
        }
        let begin = self.used;
        self.used += 2;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(begin),
            end_of_pass_write_index: Some(begin + 1),
        })
    }

    /// Resolves the recorded pairs (after their work was submitted) and adds their durations.
    pub(crate) fn collect(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<()> {
        if self.used == 0 {
            return Ok(());
        }
        let bytes = self.used as u64 * 8;
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("resolve timestamps"),
        });
        enc.resolve_query_set(&self.set, 0..self.used, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, bytes);
        queue.submit([enc.finish()]);
        self.readback
            .map_async(wgpu::MapMode::Read, ..bytes, |_| {});
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = self
                .readback
                .get_mapped_range(..bytes)
                .map_err(|e| Error::Gpu(format!("{e:?}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.readback.unmap();
        for pair in ticks.chunks_exact(2) {
            self.pending_ns += pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
        }
        self.used = 0;
        Ok(())
    }

    /// Seconds accumulated since the last call (after collecting).
    pub(crate) fn take_seconds(&mut self) -> f64 {
        std::mem::take(&mut self.pending_ns) * 1e-9
    }
}
