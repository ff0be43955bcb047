//! The native CPU backend: f32 buffers in host memory, the dense passes through the `gemm`
//! crate's SIMD kernels, and rayon threads across jobs, agents and fixed chunks of elementwise
//! work. It runs every algorithm unchanged, and is the fastest choice on machines without a
//! hardware GPU.
//!
//! Determinism: work is split into pieces fixed by the problem (one job, one agent slab, one
//! mix row block, one chunk of 16,384 elements), never by the number of threads, and
//! each piece runs single-threaded with its sums in one order. The same seed therefore gives
//! bit-identical results for every thread count, not only for a given one.
//!
//! No per-step allocation in the backend: outputs are written in place (a buffer is moved out of
//! its slot while it is written, which does not allocate), the job list is decoded into a reused
//! vector, the GEMM products go to a reused scratch, and the convolutions' im2col matrices to
//! per-thread scratch kept across calls. The convolutional
//! layers are im2col + GEMM per sample (conv.rs), pooling (pool.rs) and the normalisations
//! (norm.rs) plain per-sample loops, all split into one task per sample or job, so they keep
//! the bit-identity across thread counts. The `gemm` crate itself allocates its
//! packing buffer inside each call (it offers no way to pass one in); tests/native.rs pins that
//! to at most two allocations per GEMM call and none anywhere else (tests/cnn_native.rs for
//! the convolutional ops).

mod conv;
mod dense;
mod elementwise;
mod norm;
mod pool;

use crate::backend::*;
use crate::error::{Error, Result};
use elementwise::{Adam, MixInput, MixMatrix, Sgd};
use rayon::prelude::*;
use std::sync::Mutex;

/// Work (about one unit per flop or element touched) below which an op runs on the calling
/// thread: about 10 µs on one core.
const INLINE_WORK: usize = 1 << 20;

type Slot = crate::backend::host::Slot<f32>;

/// The native CPU backend (f32, SIMD GEMM, rayon threads).
pub struct NativeBackend {
    slots: Vec<Slot>,
    /// The host's copy of every index buffer, read by the shared op checks.
    ix: HostIndices,
    counters: Counters,
    pool: rayon::ThreadPool,
    threads: usize,
    /// (model agent, input block) of every job, decoded and range-checked; reused every op.
    jobs: Vec<(usize, usize)>,
    /// Per-job GEMM products before their epilogue; grows to the largest pass, then is reused.
    scratch: Vec<f32>,
    /// Per-thread im2col scratch of the convolutions (see [`NativeBackend::with_col`]).
    cols: Vec<Mutex<Vec<f32>>>,
    /// Per-sample dγ and dβ of a normalisation backward, before the per-job sums.
    partials: Vec<f64>,
}

impl NativeBackend {
    /// A backend running on `threads` threads (0: one per logical core).
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("swarmgrad-native-{i}"))
            .build()
            .map_err(|e| Error::param("threads", format!("cannot start the thread pool: {e}")))?;
        Ok(NativeBackend {
            slots: Vec::new(),
            ix: HostIndices::default(),
            counters: Counters::default(),
            threads: pool.current_num_threads(),
            cols: (0..=pool.current_num_threads())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            pool,
            jobs: Vec::new(),
            scratch: Vec::new(),
            partials: Vec::new(),
        })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Adds a buffer and returns its handle.
    fn push(&mut self, slot: Slot) -> Buf {
        let (kind, len) = match &slot {
            Slot::Real(v) => (BufKind::F32, v.len()),
            Slot::Index(v) => (BufKind::U32, v.len()),
            Slot::Bytes(v) => (BufKind::U8, v.len()),
        };
        self.slots.push(slot);
        self.ix.alloc(self.slots.len() - 1, len, kind)
    }

    /// Checks that a buffer is this backend's and that `len` elements at `offset` fit it.
    fn own_range(
        &self,
        op: &'static str,
        b: Buf,
        kind: BufKind,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        if b.id >= self.slots.len() {
            return Err(Error::op(
                op,
                format!("buffer {} does not belong to this backend", b.id),
            ));
        }
        check_write(op, b, kind, offset, len)
    }

    fn foreign(op: &'static str, b: Buf) -> Error {
        Error::op(
            op,
            format!(
                "buffer {} does not hold {:?} of {} elements on this backend (a buffer of another backend, or the op's own output)",
                b.id, b.kind, b.len
            ),
        )
    }

    fn reals(&self, b: Buf, op: &'static str) -> Result<&[f32]> {
        match self.slots.get(b.id) {
            Some(Slot::Real(v)) if v.len() >= b.len => Ok(v),
            _ => Err(Self::foreign(op, b)),
        }
    }

    fn indices(&self, b: Buf, op: &'static str) -> Result<&[u32]> {
        match self.slots.get(b.id) {
            Some(Slot::Index(v)) if v.len() >= b.len => Ok(v),
            _ => Err(Self::foreign(op, b)),
        }
    }

    fn bytes(&self, b: Buf, op: &'static str) -> Result<&[u8]> {
        match self.slots.get(b.id) {
            Some(Slot::Bytes(v)) if v.len() >= b.len => Ok(v),
            _ => Err(Self::foreign(op, b)),
        }
    }

    /// Moves a real buffer out of its slot so it can be written while others are read (no
    /// allocation: the slot holds an empty vector meanwhile).
    fn take(&mut self, b: Buf, op: &'static str) -> Result<Vec<f32>> {
        match self.slots.get_mut(b.id) {
            Some(Slot::Real(v)) if v.len() >= b.len => Ok(std::mem::take(v)),
            _ => Err(Self::foreign(op, b)),
        }
    }

    fn put(&mut self, b: Buf, v: Vec<f32>) {
        self.slots[b.id] = Slot::Real(v);
    }

    /// Runs `f` on a real buffer moved out of its slot, puts it back whatever `f` returns.
    fn with_out<T>(
        &mut self,
        b: Buf,
        op: &'static str,
        f: impl FnOnce(&Self, &mut [f32]) -> Result<T>,
    ) -> Result<T> {
        let mut v = self.take(b, op)?;
        let r = f(self, &mut v);
        self.put(b, v);
        self.counters.dispatches += 1;
        r
    }

    /// Runs `f` on the pool, or on the calling thread when the op is small or the pool has one
    /// thread: handing work to the pool costs 15–30 µs here, more than a small op takes. `f`
    /// gets the least number of tasks per thread to pass to `with_min_len` (`usize::MAX` keeps
    /// every task on the calling thread). Either way the same fixed tasks run, so the results
    /// are the same.
    fn run<R: Send>(&self, work: usize, f: impl FnOnce(usize) -> R + Send) -> R {
        if self.threads == 1 || work < INLINE_WORK {
            f(usize::MAX)
        } else {
            self.pool.install(|| f(1))
        }
    }

    /// Moves the scratch out, at least `len` long (allocates only when a pass is larger than any
    /// before it).
    fn take_scratch(&mut self, len: usize) -> Vec<f32> {
        let mut t = std::mem::take(&mut self.scratch);
        if t.len() < len {
            t.resize(len, 0.0);
        }
        t
    }

    /// Decodes a job list into `self.jobs` as (model agent, input block) pairs, checking every
    /// pair against the buffers' extents, as the reference does.
    fn load_jobs(
        &mut self,
        op: &'static str,
        list: Buf,
        n_jobs: usize,
        input_blocks: InputBlocks,
        n_models: usize,
        n_inputs: usize,
    ) -> Result<()> {
        let mut jobs = std::mem::take(&mut self.jobs);
        let raw = match self.indices(list, op) {
            Ok(r) => r,
            Err(e) => {
                self.jobs = jobs;
                return Err(e);
            }
        };
        jobs.clear();
        for j in 0..n_jobs {
            let (m, d) = (raw[2 * j] as usize, raw[2 * j + 1] as usize);
            let blk = match input_blocks {
                InputBlocks::ByData => d,
                InputBlocks::ByJob => j,
            };
            if m >= n_models || blk >= n_inputs {
                self.jobs = jobs;
                return Err(Error::op(
                    op,
                    format!("job {j} = ({m}, {d}) is out of range ({n_models} models, {n_inputs} input blocks)"),
                ));
            }
            jobs.push((m, blk));
        }
        self.jobs = jobs;
        Ok(())
    }

    /// [`Self::load_jobs`] for a normalisation (addressed by job).
    fn load_norm_jobs(&mut self, what: &'static str, s: &NormJobs, params: Buf) -> Result<()> {
        let n_models = params.len / s.stride;
        self.load_jobs(
            what,
            s.jobs,
            s.n_jobs,
            InputBlocks::ByJob,
            n_models,
            s.n_jobs,
        )
    }

    /// [`Self::load_jobs`] for a dense layer.
    fn load_dense_jobs(&mut self, s: &DenseJobs, n_models: usize, n_inputs: usize) -> Result<()> {
        self.load_jobs(
            "dense",
            s.jobs,
            s.n_jobs,
            s.input_blocks,
            n_models,
            n_inputs,
        )
    }

    /// Runs `f(j, input block, slab)` on the gradient slab of every job in `self.jobs`, one
    /// task per job (see [`Self::run`] for `work`).
    fn per_job_slab(
        &self,
        work: usize,
        g: &mut [f32],
        stride: usize,
        f: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
    ) {
        self.run(work, |min| {
            g[..self.jobs.len() * stride]
                .par_chunks_mut(stride)
                .zip(self.jobs.par_iter())
                .enumerate()
                .with_min_len(min)
                .for_each(|(j, (slab, &(_, blk)))| f(j, blk, slab))
        });
    }

    /// Runs `f(r, image)` on each of the first `rows` images (`len` values each) of `out`, one
    /// task per image, on the pool when `work` is large enough (see [`Self::run`]).
    fn per_image(
        &self,
        work: usize,
        out: &mut [f32],
        len: usize,
        rows: usize,
        f: impl Fn(usize, &mut [f32]) + Sync + Send,
    ) {
        self.run(work, |min| {
            out[..rows * len]
                .par_chunks_mut(len)
                .enumerate()
                .with_min_len(min)
                .for_each(|(r, o)| f(r, o))
        });
    }

    /// The body of the per-sample convolution ops: decodes the job list (input blocks below
    /// `n_blocks`), then runs `f((model, block), sample row, model slab, input, out image,
    /// scratch)` on every `out_len`-long image of `out`, one task each.
    #[allow(clippy::too_many_arguments)]
    fn conv_samples(
        &mut self,
        what: &'static str,
        s: &ConvJobs,
        params: Buf,
        input: Buf,
        n_blocks: usize,
        out: Buf,
        out_len: usize,
        f: impl Fn((usize, usize), usize, &[f32], &[f32], &mut [f32], &mut [f32]) + Sync + Send,
    ) -> Result<()> {
        let n_models = params.len / s.stride;
        self.load_jobs(what, s.jobs, s.n_jobs, s.input_blocks, n_models, n_blocks)?;
        self.with_out(out, what, |me, y| {
            let (p, x) = (me.reals(params, what)?, me.reals(input, what)?);
            let col_len = conv::scratch_len(&s.layer);
            let rows = s.n_jobs * s.batch;
            me.per_image(2 * rows * s.layer.macs(), y, out_len, rows, |r, image| {
                let job = me.jobs[r / s.batch];
                let slab = &p[job.0 * s.stride..(job.0 + 1) * s.stride];
                me.with_col(col_len, |col| f(job, r, slab, x, image, col));
            });
            Ok(())
        })
    }

    /// Runs `f` on this thread's convolution scratch, at least `len` long (it grows to the
    /// largest layer, then is reused). One slot per pool thread plus one for the calling
    /// thread; what a slot holds never reaches a result, so which slot a task gets does not
    /// matter to determinism.
    fn with_col<R>(&self, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
        let slot = rayon::current_thread_index().map_or(self.threads, |i| i.min(self.threads));
        let mut col = self.cols[slot]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if col.len() < len {
            col.resize(len, 0.0);
        }
        f(&mut col[..len])
    }
}

impl Backend for NativeBackend {
    fn describe(&self) -> String {
        let unit = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        format!("native CPU (f32, gemm SIMD, {} {unit})", self.threads)
    }

    fn host_bytes(&self, kind: BufKind, len: usize) -> u64 {
        // Reals are f32 here.
        let per = match kind {
            BufKind::F32 | BufKind::U32 => 4,
            BufKind::U8 => 1,
        };
        per * len as u64
    }

    fn alloc(&mut self, kind: BufKind, len: usize, _label: &str) -> Result<Buf> {
        Ok(self.push(match kind {
            BufKind::F32 => Slot::Real(vec![0.0; len]),
            BufKind::U32 => Slot::Index(vec![0; len]),
            BufKind::U8 => Slot::Bytes(vec![0; len]),
        }))
    }

    fn write_f32(&mut self, buf: Buf, offset: usize, data: &[f32]) -> Result<()> {
        self.own_range("write_f32", buf, BufKind::F32, offset, data.len())?;
        let mut v = self.take(buf, "write_f32")?;
        v[offset..offset + data.len()].copy_from_slice(data);
        self.put(buf, v);
        Ok(())
    }

    fn write_f64(&mut self, buf: Buf, offset: usize, data: &[f64]) -> Result<()> {
        self.own_range("write_f64", buf, BufKind::F32, offset, data.len())?;
        let mut v = self.take(buf, "write_f64")?;
        for (d, s) in v[offset..offset + data.len()].iter_mut().zip(data) {
            *d = *s as f32;
        }
        self.put(buf, v);
        Ok(())
    }

    fn write_u32(&mut self, buf: Buf, offset: usize, data: &[u32]) -> Result<()> {
        self.own_range("write_u32", buf, BufKind::U32, offset, data.len())?;
        match &mut self.slots[buf.id] {
            Slot::Index(v) if v.len() >= buf.len => {
                v[offset..offset + data.len()].copy_from_slice(data);
            }
            _ => return Err(Self::foreign("write_u32", buf)),
        }
        self.ix.write(buf, offset, data);
        Ok(())
    }

    fn upload_u8(&mut self, data: &[u8], _label: &str) -> Result<Buf> {
        Ok(self.push(Slot::Bytes(data.to_vec())))
    }

    fn read_f32(&mut self, buf: Buf) -> Result<Vec<f64>> {
        self.own_range("read_f32", buf, BufKind::F32, 0, 0)?;
        Ok(self
            .reals(buf, "read_f32")?
            .iter()
            .map(|&v| v as f64)
            .collect())
    }

    fn read_u32(&mut self, buf: Buf) -> Result<Vec<u32>> {
        self.own_range("read_u32", buf, BufKind::U32, 0, 0)?;
        Ok(self.indices(buf, "read_u32")?.to_vec())
    }

    fn copy(&mut self, op: &CopyRange) -> Result<()> {
        op.check()?;
        let mut v = self.take(op.dst, "copy")?;
        let r = self.reals(op.src, "copy").map(|from| {
            v[op.dst_offset..op.dst_offset + op.len]
                .copy_from_slice(&from[op.src_offset..op.src_offset + op.len])
        });
        self.put(op.dst, v);
        r
    }

    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check(&self.ix)?;
        self.ix.gather(op);
        let n = op.labels.len;
        let idx = &self.indices(op.index, "gather")?[..op.rows];
        if let Some(&bad) = idx.iter().find(|&&s| s as usize >= n) {
            return Err(Error::op(
                "gather",
                format!("sample index {bad} ≥ dataset size {n}"),
            ));
        }
        let y = match &mut self.slots[op.y.id] {
            Slot::Index(v) if v.len() >= op.y.len => std::mem::take(v),
            _ => return Err(Self::foreign("gather", op.y)),
        };
        let mut y = y;
        let r = self.with_out(op.x, "gather", |s, x| {
            let idx = &s.indices(op.index, "gather")?[..op.rows];
            let data = s.bytes(op.data, "gather")?;
            let labels = s.indices(op.labels, "gather")?;
            let (dim, norm) = (op.dim, op.norm);
            let plane = dim / norm.channels;
            s.run(op.rows * dim, |min| {
                x[..op.rows * dim]
                    .par_chunks_mut(dim)
                    .zip(idx.par_iter())
                    .with_min_len(min)
                    .for_each(|(row, &smp)| {
                        let src = &data[smp as usize * dim..][..dim];
                        // One plane per channel, each with its own mean and std.
                        let planes = row.chunks_mut(plane).zip(src.chunks(plane));
                        for ((vs, bytes), (mean, std)) in planes.zip(norm.pairs()) {
                            let inv_std = 1.0 / std;
                            for (v, &byte) in vs.iter_mut().zip(bytes) {
                                *v = ((byte as f64 / 255.0 - mean) * inv_std) as f32;
                            }
                        }
                    })
            });
            for (y, &smp) in y[..op.rows].iter_mut().zip(idx) {
                *y = labels[smp as usize];
            }
            Ok(())
        });
        self.slots[op.y.id] = Slot::Index(y);
        r
    }

    fn dense_forward(&mut self, op: &DenseForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = op.shape;
        let l = s.layer;
        let blk_len = s.batch * l.in_dim;
        self.load_dense_jobs(&s, op.params.len / s.stride, op.input.len / blk_len)?;
        let out_len = s.batch * l.out_dim;
        let mut scratch = self.take_scratch(s.n_jobs * out_len);
        let r = self.with_out(op.output, "dense_forward", |me, y| {
            let (p, x) = (
                me.reals(op.params, "dense_forward")?,
                me.reals(op.input, "dense_forward")?,
            );
            me.run(2 * s.n_jobs * out_len * l.in_dim, |min| {
                y[..s.n_jobs * out_len]
                    .par_chunks_mut(out_len)
                    .zip(scratch.par_chunks_mut(out_len))
                    .zip(me.jobs.par_iter())
                    .with_min_len(min)
                    .for_each(|((y, t), &(m, blk))| {
                        let slab = &p[m * s.stride..(m + 1) * s.stride];
                        let x = &x[blk * blk_len..][..blk_len];
                        dense::forward(&l, s.batch, slab, x, y, t);
                    })
            });
            Ok(())
        });
        self.scratch = scratch;
        r
    }

    fn dense_backward_data(&mut self, op: &DenseBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let s = op.shape;
        let l = s.layer;
        self.load_dense_jobs(&s, op.params.len / s.stride, s.n_jobs)?;
        let mut scratch = self.take_scratch(s.n_jobs * s.batch * l.in_dim);
        let r = self.with_out(op.dx, "dense_backward_data", |me, dx| {
            let what = "dense_backward_data";
            let (p, dz, x) = (
                me.reals(op.params, what)?,
                me.reals(op.dz, what)?,
                me.reals(op.input, what)?,
            );
            let (in_len, out_len) = (s.batch * l.in_dim, s.batch * l.out_dim);
            me.run(2 * s.n_jobs * in_len * l.out_dim, |min| {
                dx[..s.n_jobs * in_len]
                    .par_chunks_mut(in_len)
                    .zip(scratch.par_chunks_mut(in_len))
                    .zip(me.jobs.par_iter())
                    .enumerate()
                    .with_min_len(min)
                    .for_each(|(j, ((dx, t), &(m, _)))| {
                        let slab = &p[m * s.stride..(m + 1) * s.stride];
                        dense::backward_data(
                            &l,
                            s.batch,
                            slab,
                            &dz[j * out_len..][..out_len],
                            &x[j * in_len..][..in_len],
                            op.relu_mask,
                            dx,
                            t,
                        );
                    })
            });
            Ok(())
        });
        self.scratch = scratch;
        r
    }

    fn dense_backward_weights(&mut self, op: &DenseBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let s = op.shape;
        let l = s.layer;
        let blk_len = s.batch * l.in_dim;
        self.load_dense_jobs(&s, usize::MAX, op.input.len / blk_len)?;
        self.with_out(op.grads, "dense_backward_weights", |me, g| {
            let what = "dense_backward_weights";
            let (dz, x) = (me.reals(op.dz, what)?, me.reals(op.input, what)?);
            let out_len = s.batch * l.out_dim;
            let work = 2 * s.n_jobs * out_len * l.in_dim;
            me.per_job_slab(work, g, s.stride, |j, blk, slab| {
                let (dz, x) = (
                    &dz[j * out_len..][..out_len],
                    &x[blk * blk_len..][..blk_len],
                );
                dense::backward_weights(&l, s.batch, dz, x, slab);
            });
            Ok(())
        })
    }

    fn conv_forward(&mut self, op: &ConvForward) -> Result<()> {
        op.check(&self.ix)?;
        let (s, l) = (op.shape, op.shape.layer);
        let n_in = l.input.len();
        let n_blocks = op.input.len / (s.batch * n_in);
        let out_len = l.output().len();
        self.conv_samples(
            "conv_forward",
            &s,
            op.params,
            op.input,
            n_blocks,
            op.output,
            out_len,
            |(_, blk), r, slab, x, ys, col| {
                let xs = &x[(blk * s.batch + r % s.batch) * n_in..][..n_in];
                conv::forward(&l, slab, xs, ys, col)
            },
        )
    }

    fn conv_backward_data(&mut self, op: &ConvBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let (s, l) = (op.shape, op.shape.layer);
        let n_out = l.output().len();
        let in_len = l.input.len();
        self.conv_samples(
            "conv_backward_data",
            &s,
            op.params,
            op.dy,
            s.n_jobs,
            op.dx,
            in_len,
            |_, r, slab, dy, dxs, col| {
                conv::backward_data(&l, slab, &dy[r * n_out..][..n_out], dxs, col)
            },
        )
    }

    fn conv_backward_weights(&mut self, op: &ConvBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let what = "conv_backward_weights";
        let s = op.shape;
        let l = s.layer;
        let blk_len = s.batch * l.input.len();
        let out_len = s.batch * l.output().len();
        let n_blocks = op.input.len / blk_len;
        self.load_jobs(what, s.jobs, s.n_jobs, s.input_blocks, usize::MAX, n_blocks)?;
        self.with_out(op.grads, what, |me, g| {
            let (dy, x) = (me.reals(op.dy, what)?, me.reals(op.input, what)?);
            let col_len = conv::scratch_len(&l);
            // One task per job: its samples are summed in order on one thread.
            let work = 2 * s.n_jobs * s.batch * l.macs();
            me.per_job_slab(work, g, s.stride, |j, blk, slab| {
                let (dy, x) = (
                    &dy[j * out_len..][..out_len],
                    &x[blk * blk_len..][..blk_len],
                );
                me.with_col(col_len, |col| {
                    conv::backward_weights(&l, s.batch, dy, x, slab, col)
                });
            });
            Ok(())
        })
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let l = op.layer;
        let (n_in, n_out) = (l.input.len(), l.output().len());
        self.with_out(op.y, "pool", |me, y| {
            let x = &me.reals(op.x, "pool")?[..op.samples * n_in];
            me.per_image(2 * op.samples * n_in, y, n_out, op.samples, |r, ys| {
                pool::forward(&l, &x[r * n_in..][..n_in], ys)
            });
            Ok(())
        })
    }

    fn pool_backward(&mut self, op: &PoolBackward) -> Result<()> {
        op.check()?;
        let what = "pool_backward";
        let l = op.layer;
        let (n_in, n_out) = (l.input.len(), l.output().len());
        self.with_out(op.dx, what, |me, dx| {
            let x = &me.reals(op.x, what)?[..op.samples * n_in];
            let dy = &me.reals(op.dy, what)?[..op.samples * n_out];
            me.per_image(3 * op.samples * n_in, dx, n_in, op.samples, |r, dxs| {
                let (xs, dys) = (&x[r * n_in..][..n_in], &dy[r * n_out..][..n_out]);
                pool::backward(&l, xs, dys, dxs)
            });
            Ok(())
        })
    }

    fn relu(&mut self, op: &Relu) -> Result<()> {
        op.check()?;
        self.with_out(op.y, "relu", |me, y| {
            let x = &me.reals(op.x, "relu")?[..op.len];
            me.run(op.len, |min| elementwise::relu(x, &mut y[..op.len], min));
            Ok(())
        })
    }

    fn relu_backward(&mut self, op: &ReluBackward) -> Result<()> {
        op.check()?;
        let what = "relu_backward";
        self.with_out(op.dx, what, |me, dx| {
            let y = &me.reals(op.y, what)?[..op.len];
            let dy = &me.reals(op.dy, what)?[..op.len];
            me.run(2 * op.len, |min| {
                elementwise::relu_backward(y, dy, &mut dx[..op.len], min)
            });
            Ok(())
        })
    }

    fn norm_forward(&mut self, op: &NormForward) -> Result<()> {
        op.check(&self.ix)?;
        let what = "norm_forward";
        let s = op.shape;
        let l = s.layer;
        let n = l.image.len();
        self.load_norm_jobs(what, &s, op.params)?;
        self.with_out(op.y, what, |me, y| {
            let (p, x) = (me.reals(op.params, what)?, me.reals(op.x, what)?);
            let rows = s.n_jobs * s.batch;
            me.per_image(8 * rows * n, y, n, rows, |r, ys| {
                let m = me.jobs[r / s.batch].0;
                let slab = &p[m * s.stride..(m + 1) * s.stride];
                norm::forward(&l, slab, &x[r * n..][..n], ys)
            });
            Ok(())
        })
    }

    fn norm_backward(&mut self, op: &NormBackward) -> Result<()> {
        op.check(&self.ix)?;
        let (what, s) = ("norm_backward", op.shape);
        self.load_norm_jobs(what, &s, op.params)?;
        let l = s.layer;
        let (n, c, rows) = (l.image.len(), l.image.channels, s.n_jobs * s.batch);
        let mut partials = std::mem::take(&mut self.partials);
        if partials.len() < rows * 2 * c {
            partials.resize(rows * 2 * c, 0.0);
        }
        let mut g = self.take(op.grads, what)?;
        let r = self.with_out(op.dx, what, |me, dx| {
            let p = me.reals(op.params, what)?;
            let (x, dy) = (me.reals(op.x, what)?, me.reals(op.dy, what)?);
            // One task per sample, each with its own dγ, dβ; then per job the samples' shares
            // are added in order.
            me.run(16 * rows * n, |min| {
                dx[..rows * n]
                    .par_chunks_mut(n)
                    .zip(partials.par_chunks_mut(2 * c))
                    .enumerate()
                    .with_min_len(min)
                    .for_each(|(r, (dxs, part))| {
                        let m = me.jobs[r / s.batch].0;
                        let slab = &p[m * s.stride..(m + 1) * s.stride];
                        let (xs, dys) = (&x[r * n..][..n], &dy[r * n..][..n]);
                        norm::backward(&l, slab, xs, dys, dxs, part)
                    })
            });
            for (j, slab) in g[..s.n_jobs * s.stride]
                .chunks_exact_mut(s.stride)
                .enumerate()
            {
                let shares = &partials[j * s.batch * 2 * c..][..s.batch * 2 * c];
                let sum = |at: usize| shares.chunks_exact(2 * c).map(|sh| sh[at]).sum::<f64>();
                for k in 0..c {
                    slab[l.gamma_off + k] = sum(k) as f32;
                    slab[l.beta_off + k] = sum(c + k) as f32;
                }
            }
            Ok(())
        });
        self.put(op.grads, g);
        self.partials = partials;
        r
    }

    fn softmax_xent(&mut self, op: &SoftmaxXent) -> Result<()> {
        op.check(&self.ix)?;
        let what = "softmax_xent";
        let (c, batch, rows) = (op.classes, op.batch, op.n_jobs * op.batch);
        let jobs = self.indices(op.jobs, what)?;
        let labels = self.indices(op.labels, what)?;
        // Every job's labels must exist before anything is written, as in the reference.
        for j in 0..op.n_jobs {
            let d = jobs[2 * j + 1] as usize;
            if (d + 1) * batch > labels.len() {
                return Err(Error::op(
                    what,
                    format!("job {j}'s data agent {d} has no labels"),
                ));
            }
        }
        let mut stats = self.take(op.stats, what)?;
        let r = self.with_out(op.dlogits, what, |me, dl| {
            let (jobs, labels) = (me.indices(op.jobs, what)?, me.indices(op.labels, what)?);
            let logits = me.reals(op.logits, what)?;
            let (loss, hits) = stats[..2 * rows].split_at_mut(rows);
            me.run(20 * rows * c, |min| {
                dl[..rows * c]
                    .par_chunks_mut(batch * c)
                    .zip(loss.par_chunks_mut(batch).zip(hits.par_chunks_mut(batch)))
                    .enumerate()
                    .with_min_len(min)
                    .for_each(|(j, (dl, (loss, hits)))| {
                        let d = jobs[2 * j + 1] as usize;
                        for b in 0..batch {
                            let label = (labels[d * batch + b] as usize).min(c - 1);
                            let row = j * batch + b;
                            let z = &logits[row * c..(row + 1) * c];
                            let (l, h) = elementwise::softmax_row(
                                z,
                                label,
                                batch,
                                &mut dl[b * c..(b + 1) * c],
                            );
                            (loss[b], hits[b]) = (l, h);
                        }
                    })
            });
            Ok(())
        });
        self.put(op.stats, stats);
        r
    }

    fn mix(&mut self, op: &Mix) -> Result<()> {
        op.check(&self.ix)?;
        let what = "mix";
        let c = op.csr;
        let row_ptr = &self.indices(c.row_ptr, what)?[..c.rows + 1];
        let col = self.indices(c.col, what)?;
        let nnz = row_ptr[c.rows] as usize;
        if nnz > col.len()
            || row_ptr.windows(2).any(|p| p[0] > p[1])
            || col[..nnz].iter().any(|&k| k as usize >= c.n_cols)
        {
            return Err(Error::op(
                what,
                "malformed CSR (row offsets or columns out of range)",
            ));
        }
        if op.len == 0 || c.rows == 0 {
            self.counters.dispatches += 1;
            return Ok(());
        }
        self.with_out(op.output, what, |me, y| {
            let row_ptr = &me.indices(c.row_ptr, what)?[..c.rows + 1];
            let col = me.indices(c.col, what)?;
            let w = me.reals(c.weight, what)?;
            let input = MixInput {
                data: me.reals(op.input, what)?,
                offset: op.in_offset,
                stride: op.in_stride,
            };
            let y = &mut y[op.out_offset..];
            if op.out_stride >= op.len {
                let m = MixMatrix {
                    row_ptr,
                    cols: col,
                    weights: w,
                };
                let work = 2 * row_ptr[c.rows] as usize * op.len;
                me.run(work, |min| {
                    elementwise::mix(y, op.out_stride, op.len, m, input, min)
                });
            } else {
                // Overlapping output rows: in row order, so the last row written wins, as in
                // the reference (the input is another buffer, so order cannot change it).
                for r in 0..c.rows {
                    let e = row_ptr[r] as usize..row_ptr[r + 1] as usize;
                    let out = &mut y[r * op.out_stride..][..op.len];
                    elementwise::mix_row(out, (&col[e.clone()], &w[e]), input);
                }
            }
            Ok(())
        })
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        self.with_out(op.y, "axpby", |me, y| {
            let x = &me.reals(op.x, "axpby")?[..op.len];
            let (a, b) = (op.a as f32, op.b as f32);
            me.run(3 * op.len, |min| {
                elementwise::axpby(x, &mut y[..op.len], a, b, min)
            });
            Ok(())
        })
    }

    fn fill(&mut self, op: &Fill) -> Result<()> {
        op.check()?;
        self.with_out(op.y, "fill", |_, y| {
            let value = op.value as f32;
            for b in 0..op.count {
                let at = op.offset + b * op.stride;
                y[at..at + op.len].fill(value);
            }
            Ok(())
        })
    }

    fn copy_strided(&mut self, op: &CopyStrided) -> Result<()> {
        op.check()?;
        self.with_out(op.dst, "copy_strided", |me, dst| {
            let src = me.reals(op.src, "copy_strided")?;
            for b in 0..op.count {
                let (from, to) = (
                    op.src_offset + b * op.src_stride,
                    op.dst_offset + b * op.dst_stride,
                );
                for k in 0..op.len {
                    dst[to + k * op.dst_step] = src[from + k * op.src_step];
                }
            }
            Ok(())
        })
    }

    fn mean(&mut self, op: &Mean) -> Result<()> {
        op.check()?;
        self.with_out(op.dst, "mean", |me, dst| {
            let src = me.reals(op.src, "mean")?;
            let out = &mut dst[op.dst_offset..op.dst_offset + op.len];
            // Summed in vector order, then divided once by the count, as the reference does.
            out.copy_from_slice(&src[op.src_offset..op.src_offset + op.len]);
            for b in 1..op.count {
                let at = op.src_offset + b * op.src_stride;
                for (o, x) in out.iter_mut().zip(&src[at..at + op.len]) {
                    *o += x;
                }
            }
            let count = op.count as f32;
            for o in out.iter_mut() {
                *o /= count;
            }
            Ok(())
        })
    }

    fn local_step(&mut self, op: &LocalStep) -> Result<()> {
        op.check()?;
        let what = "local_step";
        let mut m = self.take(op.momentum_buf, what)?;
        let r = self.with_out(op.params, what, |me, x| {
            let g = &me.reals(op.grads, what)?[..op.len];
            let h = Sgd {
                lr: op.lr as f32,
                beta: op.momentum as f32,
                nesterov: op.nesterov,
                wd: op.weight_decay as f32,
            };
            me.run(6 * op.len, |min| {
                elementwise::local_step(&mut x[..op.len], g, &mut m[..op.len], h, min)
            });
            Ok(())
        });
        self.put(op.momentum_buf, m);
        r
    }

    fn reduce(&mut self, op: &Reduce) -> Result<()> {
        op.check()?;
        self.with_out(op.out, "reduce", |me, out| {
            if op.segments == 0 || op.seg_len == 0 {
                out[op.out_offset..op.out_offset + op.segments].fill(0.0);
                return Ok(());
            }
            let a = me.reals(op.a, "reduce")?;
            let b = if op.mode == ReduceMode::Sum {
                a
            } else {
                me.reals(op.b, "reduce")?
            };
            me.run(op.segments * op.seg_len, |min| {
                out[op.out_offset..op.out_offset + op.segments]
                    .par_iter_mut()
                    .enumerate()
                    .with_min_len(min)
                    .for_each(|(s, o)| {
                        let xa = &a[op.a_offset + s * op.a_stride..][..op.seg_len];
                        let sum = match op.mode {
                            ReduceMode::Sum => elementwise::segment_sum(xa, None, |x, _| x),
                            ReduceMode::Dot | ReduceMode::SquaredDistance => {
                                let xb = &b[op.b_offset + s * op.b_stride..][..op.seg_len];
                                if op.mode == ReduceMode::Dot {
                                    elementwise::segment_sum(xa, Some(xb), |x, y| x * y)
                                } else {
                                    elementwise::segment_sum(xa, Some(xb), |x, y| (x - y) * (x - y))
                                }
                            }
                        };
                        *o = sum as f32;
                    })
            });
            Ok(())
        })
    }

    fn pair_dots(&mut self, op: &PairDots) -> Result<()> {
        op.check(&self.ix)?;
        let what = "pair_dots";
        self.with_out(op.out, what, |me, out| {
            let pairs = &me.indices(op.pairs, what)?[..2 * op.count];
            let tensors = &me.indices(op.tensors, what)?[..2 * op.n_tensors];
            let x = me.reals(op.x, what)?;
            let nt = op.n_tensors.max(1);
            me.run(op.count * op.stride, |min| {
                out[..op.count * op.n_tensors]
                    .par_chunks_mut(nt)
                    .zip(pairs.par_chunks(2))
                    .with_min_len(min)
                    .for_each(|(o, pq)| {
                        for (k, t) in tensors.chunks_exact(2).enumerate() {
                            let (off, len) = (t[0] as usize, t[1] as usize);
                            let a = &x[pq[0] as usize * op.stride + off..][..len];
                            let b = &x[pq[1] as usize * op.stride + off..][..len];
                            o[k] = elementwise::segment_sum(a, Some(b), |u, v| u * v) as f32;
                        }
                    })
            });
            Ok(())
        })
    }

    fn sign_compress(&mut self, op: &SignCompress) -> Result<()> {
        op.check()?;
        let what = "sign_compress";
        let mut e = self.take(op.memory, what)?;
        let r = self.with_out(op.out, what, |me, out| {
            if op.segments == 0 || op.len == 0 {
                return Ok(());
            }
            // One segment may have any stride (even 0); chunks are whole segments.
            let (len, stride) = (op.len, op.stride.max(op.len));
            let span = (op.segments - 1) * op.stride + len;
            let e = &mut e[op.offset..op.offset + span];
            let out = &mut out[op.offset..op.offset + span];
            me.run(3 * op.segments * len, |min| {
                e.par_chunks_mut(stride)
                    .zip(out.par_chunks_mut(stride))
                    .with_min_len(min)
                    .for_each(|(w, o)| {
                        let (w, o) = (&mut w[..len], &mut o[..len]);
                        let l1 = elementwise::segment_sum(w, None, |x, _| x.abs()) as f32;
                        let scale = l1 / len as f32;
                        for (c, x) in o.iter_mut().zip(w.iter_mut()) {
                            *c = if *x == 0.0 { 0.0 } else { scale * x.signum() };
                            *x -= *c;
                        }
                    })
            });
            Ok(())
        });
        self.put(op.memory, e);
        r
    }

    fn adam_step(&mut self, op: &AdamStep) -> Result<()> {
        op.check()?;
        let what = "adam_step";
        self.with_out(op.params, what, |me, x| {
            let g = &me.reals(op.grads, what)?[..op.len];
            let m1 = &me.reals(op.m1, what)?[..op.len];
            let m2 = &me.reals(op.m2, what)?[..op.len];
            let h = Adam {
                step: (op.lr / op.bc1) as f32,
                sbc2: op.bc2.sqrt() as f32,
                b1: op.beta1 as f32,
                b2: op.beta2 as f32,
                eps: op.eps as f32,
                wd: op.weight_decay as f32,
            };
            me.run(12 * op.len, |min| {
                elementwise::adam_step(&mut x[..op.len], g, m1, m2, h, min)
            });
            Ok(())
        })
    }

    fn adam_moments(&mut self, op: &AdamMoments) -> Result<()> {
        op.check()?;
        let what = "adam_moments";
        let len = op.agents * op.stride;
        let mut m2 = self.take(op.m2, what)?;
        let r = self.with_out(op.m1, what, |me, m1| {
            let delta = &me.reals(op.delta, what)?[..len];
            let norms = &me.reals(op.sq_norms, what)?[..op.agents];
            me.run(8 * len, |min| {
                elementwise::adam_moments(
                    delta,
                    norms,
                    &mut m1[..len],
                    &mut m2[..len],
                    op.stride,
                    (op.beta1 as f32, op.beta2 as f32),
                    min,
                )
            });
            Ok(())
        });
        self.put(op.m2, m2);
        r
    }

    fn flush(&mut self) -> Result<()> {
        self.counters.submits += 1;
        Ok(())
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn live_buffers(&self) -> LiveBuffers {
        crate::backend::host::live_buffers(&self.slots)
    }

    fn release_from(&mut self, mark: usize) {
        self.slots.truncate(mark);
        self.ix.release_from(mark);
    }
}
