//! GPU time from timestamp queries: every compute pass writes a begin and an end timestamp; the
//! pairs are resolved and read back only when someone asks for the total (at evaluation), or
//! when the timer has grown past one query set (after the submit that filled it).

use crate::error::{Error, Result};

/// Timestamp pairs one query set holds (2048 queries, half wgpu's per-set maximum).
const PAIRS: u32 = 1024;

/// One query set with its resolve and readback buffers.
struct Chunk {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Queries written since the last collect.
    used: u32,
}

impl Chunk {
    fn new(device: &wgpu::Device) -> Self {
        let bytes = 2 * PAIRS as u64 * 8;
        Chunk {
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
        }
    }
}

/// Accumulates the GPU time of compute passes. It never drops a pass: when the current query
/// set is full, the next pass starts a new one, and every set is resolved at the next collect.
pub(crate) struct GpuTimer {
    chunks: Vec<Chunk>,
    /// The chunk that receives the next pass.
    current: usize,
    period_ns: f64,
    pending_ns: f64,
}

impl GpuTimer {
    /// A timer, or None when the device has no timestamp queries.
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Option<Self> {
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        Some(GpuTimer {
            chunks: vec![Chunk::new(device)],
            current: 0,
            period_ns: queue.get_timestamp_period() as f64,
            pending_ns: 0.0,
        })
    }

    /// Whether the timer has spilled into a second query set or its first is nearly full: the
    /// owner should collect after submitting, so the sets in use stay few.
    pub(crate) fn nearly_full(&self) -> bool {
        self.current > 0 || self.chunks[0].used + 2 * 64 > 2 * PAIRS
    }

    /// Timestamp writes for the next compute pass, in a new query set when the current is full.
    pub(crate) fn next_pass(
        &mut self,
        device: &wgpu::Device,
    ) -> wgpu::ComputePassTimestampWrites<'_> {
        if self.chunks[self.current].used + 2 > 2 * PAIRS {
            self.current += 1;
            if self.current == self.chunks.len() {
                self.chunks.push(Chunk::new(device));
            }
        }
        let chunk = &mut self.chunks[self.current];
        let begin = chunk.used;
        chunk.used += 2;
        wgpu::ComputePassTimestampWrites {
            query_set: &chunk.set,
            beginning_of_pass_write_index: Some(begin),
            end_of_pass_write_index: Some(begin + 1),
        }
    }

    /// Resolves the recorded pairs (after their work was submitted) and adds their durations.
    pub(crate) fn collect(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<()> {
        let used: Vec<&Chunk> = self.chunks.iter().filter(|c| c.used > 0).collect();
        if used.is_empty() {
            return Ok(());
        }
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("resolve timestamps"),
        });
        for c in &used {
            enc.resolve_query_set(&c.set, 0..c.used, &c.resolve, 0);
            enc.copy_buffer_to_buffer(&c.resolve, 0, &c.readback, 0, c.used as u64 * 8);
        }
        queue.submit([enc.finish()]);
        for c in &used {
            c.readback
                .map_async(wgpu::MapMode::Read, ..c.used as u64 * 8, |_| {});
        }
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        for c in &used {
            let bytes = c.used as u64 * 8;
            let ticks: Vec<u64> = {
                let view = c
                    .readback
                    .get_mapped_range(..bytes)
                    .map_err(|e| Error::Gpu(format!("{e:?}")))?;
                bytemuck::cast_slice(&view).to_vec()
            };
            c.readback.unmap();
            for pair in ticks.chunks_exact(2) {
                self.pending_ns += pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
            }
        }
        for c in &mut self.chunks {
            c.used = 0;
        }
        self.current = 0;
        Ok(())
    }

    /// Seconds accumulated since the last call (after collecting).
    pub(crate) fn take_seconds(&mut self) -> f64 {
        std::mem::take(&mut self.pending_ns) * 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::{AdapterChoice, GpuContext};

    /// More passes than one query set holds, in one command buffer: every pass gets its
    /// timestamps (the timer grows) and one collect reads them all back.
    #[test]
    fn a_full_query_set_grows_instead_of_dropping_passes() {
        let Ok(ctx) = GpuContext::new(&AdapterChoice::from_env()) else {
            assert_ne!(
                std::env::var("SWARMGRAD_REQUIRE_ADAPTER").as_deref(),
                Ok("1"),
                "SWARMGRAD_REQUIRE_ADAPTER=1 but no GPU adapter was found"
            );
            eprintln!("SKIPPED: no GPU adapter found");
            return;
        };
        let Some(mut timer) = GpuTimer::new(&ctx.device, &ctx.queue) else {
            eprintln!("SKIPPED: {} has no timestamp queries", ctx.describe());
            return;
        };
        let passes = 2 * PAIRS + 7;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for _ in 0..passes {
            let writes = timer.next_pass(&ctx.device);
            drop(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(writes),
            }));
        }
        assert_eq!(timer.chunks.len(), 3);
        let recorded: u32 = timer.chunks.iter().map(|c| c.used).sum();
        assert_eq!(recorded, 2 * passes, "every pass has its two timestamps");
        assert!(timer.nearly_full());
        ctx.queue.submit([enc.finish()]);
        timer.collect(&ctx.device, &ctx.queue).unwrap();
        assert!(timer.chunks.iter().all(|c| c.used == 0));
        assert!(!timer.nearly_full());
        assert!(timer.take_seconds() >= 0.0);
    }
}
