//! The CPU reference backend: the same operations as the GPU kernels in plain loops, with f64
//! storage and accumulation. It is the ground truth of the parity tests and the fallback when no
//! adapter exists.

use crate::backend::*;
use crate::error::{Error, Result};

mod cnn;

type Slot = crate::backend::host::Slot<f64>;

/// The CPU reference backend.
#[derive(Default)]
pub struct ReferenceBackend {
    slots: Vec<Slot>,
    ix: HostIndices,
    counters: Counters,
}

impl ReferenceBackend {
    /// A backend with no buffers.
    pub fn new() -> Self {
        Self::default()
    }

    fn reals(&self, b: Buf) -> &[f64] {
        match &self.slots[b.id] {
            Slot::Real(v) => v,
            _ => unreachable!("kind checked by the op's check()"),
        }
    }

    fn indices(&self, b: Buf) -> &[u32] {
        match &self.slots[b.id] {
            Slot::Index(v) => v,
            _ => unreachable!("kind checked by the op's check()"),
        }
    }

    fn bytes(&self, b: Buf) -> &[u8] {
        match &self.slots[b.id] {
            Slot::Bytes(v) => v,
            _ => unreachable!("kind checked by the op's check()"),
        }
    }

    /// Takes a real buffer out of its slot so it can be written while others are read.
    fn take(&mut self, b: Buf) -> Vec<f64> {
        match std::mem::replace(&mut self.slots[b.id], Slot::Real(Vec::new())) {
            Slot::Real(v) => v,
            _ => unreachable!("kind checked by the op's check()"),
        }
    }

    fn put(&mut self, b: Buf, v: Vec<f64>) {
        self.slots[b.id] = Slot::Real(v);
    }

    fn own(&self, b: Buf) -> Result<()> {
        if b.id >= self.slots.len() {
            return Err(Error::op(
                "cpu",
                format!("buffer {} does not belong to this backend", b.id),
            ));
        }
        Ok(())
    }

    /// The job list as (model agent, input block) pairs; the op's check bounded every index.
    fn jobs(&self, s: &DenseJobs) -> Vec<(usize, usize)> {
        self.job_pairs(s.jobs, s.n_jobs, s.input_blocks)
    }

    fn job_pairs(
        &self,
        jobs: Buf,
        n_jobs: usize,
        input_blocks: InputBlocks,
    ) -> Vec<(usize, usize)> {
        let raw = self.indices(jobs);
        (0..n_jobs)
            .map(|j| {
                let (m, d) = (raw[2 * j] as usize, raw[2 * j + 1] as usize);
                match input_blocks {
                    InputBlocks::ByData => (m, d),
                    InputBlocks::ByJob => (m, j),
                }
            })
            .collect()
    }

    fn tick(&mut self) {
        self.counters.dispatches += 1;
    }
}

impl Backend for ReferenceBackend {
    fn describe(&self) -> String {
        "CPU reference (f64)".into()
    }

    fn alloc(&mut self, kind: BufKind, len: usize, _label: &str) -> Result<Buf> {
        self.slots.push(match kind {
            BufKind::F32 => Slot::Real(vec![0.0; len]),
            BufKind::U32 => Slot::Index(vec![0; len]),
            BufKind::U8 => Slot::Bytes(vec![0; len]),
        });
        Ok(self.ix.alloc(self.slots.len() - 1, len, kind))
    }

    fn write_f32(&mut self, buf: Buf, offset: usize, data: &[f32]) -> Result<()> {
        self.own(buf)?;
        check_write("write_f32", buf, BufKind::F32, offset, data.len())?;
        let mut v = self.take(buf);
        for (d, s) in v[offset..offset + data.len()].iter_mut().zip(data) {
            *d = *s as f64;
        }
        self.put(buf, v);
        Ok(())
    }

    fn write_f64(&mut self, buf: Buf, offset: usize, data: &[f64]) -> Result<()> {
        self.own(buf)?;
        check_write("write_f64", buf, BufKind::F32, offset, data.len())?;
        let mut v = self.take(buf);
        v[offset..offset + data.len()].copy_from_slice(data);
        self.put(buf, v);
        Ok(())
    }

    fn write_u32(&mut self, buf: Buf, offset: usize, data: &[u32]) -> Result<()> {
        self.own(buf)?;
        check_write("write_u32", buf, BufKind::U32, offset, data.len())?;
        if let Slot::Index(v) = &mut self.slots[buf.id] {
            v[offset..offset + data.len()].copy_from_slice(data);
        }
        self.ix.write(buf, offset, data);
        Ok(())
    }

    fn upload_u8(&mut self, data: &[u8], _label: &str) -> Result<Buf> {
        self.slots.push(Slot::Bytes(data.to_vec()));
        Ok(self.ix.alloc(self.slots.len() - 1, data.len(), BufKind::U8))
    }

    fn read_f32(&mut self, buf: Buf) -> Result<Vec<f64>> {
        self.own(buf)?;
        check_write("read_f32", buf, BufKind::F32, 0, 0)?;
        Ok(self.reals(buf).to_vec())
    }

    fn read_u32(&mut self, buf: Buf) -> Result<Vec<u32>> {
        self.own(buf)?;
        check_write("read_u32", buf, BufKind::U32, 0, 0)?;
        Ok(self.indices(buf).to_vec())
    }

    fn copy(&mut self, op: &CopyRange) -> Result<()> {
        op.check()?;
        self.own(op.src)?;
        self.own(op.dst)?;
        let chunk = self.reals(op.src)[op.src_offset..op.src_offset + op.len].to_vec();
        let mut v = self.take(op.dst);
        v[op.dst_offset..op.dst_offset + op.len].copy_from_slice(&chunk);
        self.put(op.dst, v);
        Ok(())
    }

    fn gather(&mut self, op: &Gather) -> Result<()> {
        op.check(&self.ix)?;
        self.ix.gather(op);
        let idx = self.indices(op.index)[..op.rows].to_vec();
        let plane = op.dim / op.norm.channels;
        let data = self.bytes(op.data);
        let labels = self.indices(op.labels);
        let mut x = vec![0.0; op.rows * op.dim];
        let mut y = vec![0u32; op.rows];
        for (r, &s) in idx.iter().enumerate() {
            let s = s as usize;
            for f in 0..op.dim {
                let c = f / plane;
                let (mean, inv_std) = (op.norm.mean[c], 1.0 / op.norm.std[c]);
                x[r * op.dim + f] = (data[s * op.dim + f] as f64 / 255.0 - mean) * inv_std;
            }
            y[r] = labels[s];
        }
        let mut xv = self.take(op.x);
        xv[..x.len()].copy_from_slice(&x);
        self.put(op.x, xv);
        if let Slot::Index(v) = &mut self.slots[op.y.id] {
            v[..op.rows].copy_from_slice(&y);
        }
        self.tick();
        Ok(())
    }

    fn dense_forward(&mut self, op: &DenseForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = s.layer;
        let blk_len = s.batch * l.in_dim;
        let jobs = self.jobs(s);
        let mut y = self.take(op.output);
        let (p, x) = (self.reals(op.params), self.reals(op.input));
        for (j, &(m, blk)) in jobs.iter().enumerate() {
            let w = &p[m * s.stride + l.w_off..];
            let bias = &p[m * s.stride + l.b_off..];
            for b in 0..s.batch {
                let xr = &x[blk * blk_len + b * l.in_dim..][..l.in_dim];
                for o in 0..l.out_dim {
                    let wr = &w[o * l.in_dim..][..l.in_dim];
                    let z: f64 = bias[o] + xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f64>();
                    y[(j * s.batch + b) * l.out_dim + o] = if l.relu { z.max(0.0) } else { z };
                }
            }
        }
        self.put(op.output, y);
        self.tick();
        Ok(())
    }

    fn dense_backward_data(&mut self, op: &DenseBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = s.layer;
        let jobs = self.jobs(s);
        let mut dx = self.take(op.dx);
        let (p, dz, x) = (
            self.reals(op.params),
            self.reals(op.dz),
            self.reals(op.input),
        );
        for (j, &(m, _)) in jobs.iter().enumerate() {
            let w = &p[m * s.stride + l.w_off..];
            for b in 0..s.batch {
                let row = j * s.batch + b;
                for i in 0..l.in_dim {
                    let at = row * l.in_dim + i;
                    let v: f64 = (0..l.out_dim)
                        .map(|o| dz[row * l.out_dim + o] * w[o * l.in_dim + i])
                        .sum();
                    dx[at] = if op.relu_mask && x[at] <= 0.0 { 0.0 } else { v };
                }
            }
        }
        self.put(op.dx, dx);
        self.tick();
        Ok(())
    }

    fn dense_backward_weights(&mut self, op: &DenseBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let l = s.layer;
        let blk_len = s.batch * l.in_dim;
        let jobs = self.jobs(s);
        let mut g = self.take(op.grads);
        let (dz, x) = (self.reals(op.dz), self.reals(op.input));
        for (j, &(_, blk)) in jobs.iter().enumerate() {
            let slab = &mut g[j * s.stride..(j + 1) * s.stride];
            for o in 0..l.out_dim {
                let dzo = |b: usize| dz[(j * s.batch + b) * l.out_dim + o];
                for i in 0..l.in_dim {
                    slab[l.w_off + o * l.in_dim + i] = (0..s.batch)
                        .map(|b| dzo(b) * x[blk * blk_len + b * l.in_dim + i])
                        .sum();
                }
                slab[l.b_off + o] = (0..s.batch).map(dzo).sum();
            }
        }
        self.put(op.grads, g);
        self.tick();
        Ok(())
    }

    fn conv_forward(&mut self, op: &ConvForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let jobs = self.job_pairs(s.jobs, s.n_jobs, s.input_blocks);
        let mut y = self.take(op.output);
        cnn::conv_forward(
            s,
            &jobs,
            self.reals(op.params),
            self.reals(op.input),
            &mut y,
        );
        self.put(op.output, y);
        self.tick();
        Ok(())
    }

    fn conv_backward_data(&mut self, op: &ConvBackwardData) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let jobs = self.job_pairs(s.jobs, s.n_jobs, s.input_blocks);
        let mut dx = self.take(op.dx);
        cnn::conv_backward_data(s, &jobs, self.reals(op.params), self.reals(op.dy), &mut dx);
        self.put(op.dx, dx);
        self.tick();
        Ok(())
    }

    fn conv_backward_weights(&mut self, op: &ConvBackwardWeights) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let jobs = self.job_pairs(s.jobs, s.n_jobs, s.input_blocks);
        let mut g = self.take(op.grads);
        cnn::conv_backward_weights(s, &jobs, self.reals(op.dy), self.reals(op.input), &mut g);
        self.put(op.grads, g);
        self.tick();
        Ok(())
    }

    fn pool(&mut self, op: &Pool) -> Result<()> {
        op.check()?;
        let mut y = self.take(op.y);
        cnn::pool(&op.layer, op.samples, self.reals(op.x), &mut y);
        self.put(op.y, y);
        self.tick();
        Ok(())
    }

    fn pool_backward(&mut self, op: &PoolBackward) -> Result<()> {
        op.check()?;
        let mut dx = self.take(op.dx);
        cnn::pool_backward(
            &op.layer,
            op.samples,
            self.reals(op.x),
            self.reals(op.dy),
            &mut dx,
        );
        self.put(op.dx, dx);
        self.tick();
        Ok(())
    }

    fn relu(&mut self, op: &Relu) -> Result<()> {
        op.check()?;
        let mut y = self.take(op.y);
        for (y, x) in y[..op.len].iter_mut().zip(self.reals(op.x)) {
            *y = x.max(0.0);
        }
        self.put(op.y, y);
        self.tick();
        Ok(())
    }

    fn relu_backward(&mut self, op: &ReluBackward) -> Result<()> {
        op.check()?;
        let mut dx = self.take(op.dx);
        let (y, dy) = (self.reals(op.y), self.reals(op.dy));
        for ((dx, y), dy) in dx[..op.len].iter_mut().zip(y).zip(dy) {
            *dx = if *y > 0.0 { *dy } else { 0.0 };
        }
        self.put(op.dx, dx);
        self.tick();
        Ok(())
    }

    fn norm_forward(&mut self, op: &NormForward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let jobs = self.job_pairs(s.jobs, s.n_jobs, InputBlocks::ByJob);
        let mut y = self.take(op.y);
        cnn::norm_forward(s, &jobs, self.reals(op.params), self.reals(op.x), &mut y);
        self.put(op.y, y);
        self.tick();
        Ok(())
    }

    fn norm_backward(&mut self, op: &NormBackward) -> Result<()> {
        op.check(&self.ix)?;
        let s = &op.shape;
        let jobs = self.job_pairs(s.jobs, s.n_jobs, InputBlocks::ByJob);
        let mut dx = self.take(op.dx);
        let mut g = self.take(op.grads);
        let (p, x, dy) = (self.reals(op.params), self.reals(op.x), self.reals(op.dy));
        cnn::norm_backward(s, &jobs, p, x, dy, &mut dx, &mut g);
        self.put(op.dx, dx);
        self.put(op.grads, g);
        self.tick();
        Ok(())
    }

    fn softmax_xent(&mut self, op: &SoftmaxXent) -> Result<()> {
        op.check(&self.ix)?;
        let (c, rows) = (op.classes, op.n_jobs * op.batch);
        let jobs = self.indices(op.jobs);
        let labels = self.indices(op.labels);
        let logits = self.reals(op.logits);
        let mut dl = vec![0.0; rows * c];
        let mut stats = vec![0.0; 2 * rows];
        for j in 0..op.n_jobs {
            let d = jobs[2 * j + 1] as usize;
            for b in 0..op.batch {
                // The check bounded the data agent and every label below the classes.
                let label = labels[d * op.batch + b] as usize;
                let row = j * op.batch + b;
                let z = &logits[row * c..(row + 1) * c];
                let (mut arg, mut mx) = (0, z[0]);
                for (k, &v) in z.iter().enumerate().skip(1) {
                    if v > mx {
                        (arg, mx) = (k, v);
                    }
                }
                let sum: f64 = z.iter().map(|v| (v - mx).exp()).sum();
                for k in 0..c {
                    let prob = (z[k] - mx).exp() / sum;
                    dl[row * c + k] = (prob - if k == label { 1.0 } else { 0.0 }) / op.batch as f64;
                }
                stats[row] = sum.ln() + mx - z[label];
                stats[rows + row] = if arg == label { 1.0 } else { 0.0 };
            }
        }
        let mut v = self.take(op.dlogits);
        v[..dl.len()].copy_from_slice(&dl);
        self.put(op.dlogits, v);
        let mut v = self.take(op.stats);
        v[..stats.len()].copy_from_slice(&stats);
        self.put(op.stats, v);
        self.tick();
        Ok(())
    }

    fn mix(&mut self, op: &Mix) -> Result<()> {
        op.check(&self.ix)?;
        let c = &op.csr;
        let row_ptr = self.indices(c.row_ptr).to_vec();
        let col = self.indices(c.col);
        let w = self.reals(c.weight);
        let x = self.reals(op.input);
        let mut out = vec![0.0; c.rows * op.len];
        for r in 0..c.rows {
            for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
                let src = &x[op.in_offset + col[e] as usize * op.in_stride..][..op.len];
                for (o, v) in out[r * op.len..(r + 1) * op.len].iter_mut().zip(src) {
                    *o += w[e] * v;
                }
            }
        }
        let mut y = self.take(op.output);
        for r in 0..c.rows {
            let at = op.out_offset + r * op.out_stride;
            y[at..at + op.len].copy_from_slice(&out[r * op.len..(r + 1) * op.len]);
        }
        self.put(op.output, y);
        self.tick();
        Ok(())
    }

    fn axpby(&mut self, op: &Axpby) -> Result<()> {
        op.check()?;
        let (a, b) = (op.a, op.b);
        let mut y = self.take(op.y);
        for (y, x) in y[..op.len].iter_mut().zip(self.reals(op.x)) {
            *y = a * x + b * *y;
        }
        self.put(op.y, y);
        self.tick();
        Ok(())
    }

    fn fill(&mut self, op: &Fill) -> Result<()> {
        self.own(op.y)?;
        op.check()?;
        let mut y = self.take(op.y);
        for b in 0..op.count {
            let at = op.offset + b * op.stride;
            y[at..at + op.len].fill(op.value);
        }
        self.put(op.y, y);
        self.tick();
        Ok(())
    }

    fn copy_strided(&mut self, op: &CopyStrided) -> Result<()> {
        self.own(op.src)?;
        self.own(op.dst)?;
        op.check()?;
        let mut dst = self.take(op.dst);
        let src = self.reals(op.src);
        for b in 0..op.count {
            for k in 0..op.len {
                dst[op.dst_offset + b * op.dst_stride + k * op.dst_step] =
                    src[op.src_offset + b * op.src_stride + k * op.src_step];
            }
        }
        self.put(op.dst, dst);
        self.tick();
        Ok(())
    }

    fn mean(&mut self, op: &Mean) -> Result<()> {
        self.own(op.src)?;
        self.own(op.dst)?;
        op.check()?;
        let mut dst = self.take(op.dst);
        let src = self.reals(op.src);
        for k in 0..op.len {
            let sum: f64 = (0..op.count)
                .map(|b| src[op.src_offset + b * op.src_stride + k])
                .sum();
            dst[op.dst_offset + k] = sum / op.count as f64;
        }
        self.put(op.dst, dst);
        self.tick();
        Ok(())
    }

    /// Keeps the weights exactly (f64).
    fn write_csr_weights(&mut self, weight: Buf, csr: &Csr) -> Result<()> {
        self.write_f64(weight, 0, &csr.weight)
    }

    fn local_step(&mut self, op: &LocalStep) -> Result<()> {
        op.check()?;
        let (lr, beta, wd) = (op.lr, op.momentum, op.weight_decay);
        let mut x = self.take(op.params);
        let mut m = self.take(op.momentum_buf);
        let g = self.reals(op.grads);
        for k in 0..op.len {
            let gk = g[k] + wd * x[k];
            let u = if beta != 0.0 {
                m[k] = beta * m[k] + gk;
                if op.nesterov {
                    gk + beta * m[k]
                } else {
                    m[k]
                }
            } else {
                gk
            };
            x[k] -= lr * u;
        }
        self.put(op.params, x);
        self.put(op.momentum_buf, m);
        self.tick();
        Ok(())
    }

    fn reduce(&mut self, op: &Reduce) -> Result<()> {
        op.check()?;
        let (a, b) = (self.reals(op.a), self.reals(op.b));
        let res: Vec<f64> = (0..op.segments)
            .map(|s| {
                let xa = &a[op.a_offset + s * op.a_stride..][..op.seg_len];
                match op.mode {
                    ReduceMode::Sum => xa.iter().sum(),
                    ReduceMode::Dot | ReduceMode::SquaredDistance => {
                        let xb = &b[op.b_offset + s * op.b_stride..][..op.seg_len];
                        xa.iter()
                            .zip(xb)
                            .map(|(x, y)| {
                                if op.mode == ReduceMode::Dot {
                                    x * y
                                } else {
                                    (x - y) * (x - y)
                                }
                            })
                            .sum()
                    }
                }
            })
            .collect();
        let mut out = self.take(op.out);
        out[op.out_offset..op.out_offset + op.segments].copy_from_slice(&res);
        self.put(op.out, out);
        self.tick();
        Ok(())
    }

    fn pair_dots(&mut self, op: &PairDots) -> Result<()> {
        op.check(&self.ix)?;
        let pairs = self.indices(op.pairs)[..2 * op.count].to_vec();
        let tensors = self.indices(op.tensors)[..2 * op.n_tensors].to_vec();
        let x = self.reals(op.x);
        let mut res = Vec::with_capacity(op.count * op.n_tensors);
        for pq in pairs.chunks_exact(2) {
            for t in tensors.chunks_exact(2) {
                let (off, len) = (t[0] as usize, t[1] as usize);
                let a = &x[pq[0] as usize * op.stride + off..][..len];
                let b = &x[pq[1] as usize * op.stride + off..][..len];
                res.push(a.iter().zip(b).map(|(u, v)| u * v).sum());
            }
        }
        let mut out = self.take(op.out);
        out[..res.len()].copy_from_slice(&res);
        self.put(op.out, out);
        self.tick();
        Ok(())
    }

    fn sign_compress(&mut self, op: &SignCompress) -> Result<()> {
        op.check()?;
        let mut e = self.take(op.memory);
        let mut out = self.take(op.out);
        for s in 0..op.segments {
            let at = op.offset + s * op.stride;
            let w = &mut e[at..at + op.len];
            let scale = w.iter().map(|v| v.abs()).sum::<f64>() / op.len as f64;
            for (o, x) in out[at..at + op.len].iter_mut().zip(w.iter_mut()) {
                // sign(0) = 0 (f64::signum(0) is 1).
                let c = if *x == 0.0 { 0.0 } else { scale * x.signum() };
                *o = c;
                *x -= c;
            }
        }
        self.put(op.memory, e);
        self.put(op.out, out);
        self.tick();
        Ok(())
    }

    fn adam_step(&mut self, op: &AdamStep) -> Result<()> {
        op.check()?;
        let mut x = self.take(op.params);
        let (g, m1, m2) = (self.reals(op.grads), self.reals(op.m1), self.reals(op.m2));
        let (b1, b2, eps, wd) = (op.beta1, op.beta2, op.eps, op.weight_decay);
        let (step, sbc2) = (op.lr / op.bc1, (op.bc2).sqrt());
        for k in 0..op.len {
            let gk = g[k] + wd * x[k];
            let a = b1 * m1[k] + gk;
            let s = b2 * m2[k] + (1.0 - b2) * gk * gk;
            x[k] -= step * a / (s.sqrt() / sbc2 + eps);
        }
        self.put(op.params, x);
        self.tick();
        Ok(())
    }

    fn adam_moments(&mut self, op: &AdamMoments) -> Result<()> {
        op.check()?;
        let mut m1 = self.take(op.m1);
        let mut m2 = self.take(op.m2);
        let (delta, norms) = (self.reals(op.delta), self.reals(op.sq_norms));
        let (b1, b2) = (op.beta1, op.beta2);
        for k in 0..op.agents * op.stride {
            let d = delta[k] / (norms[k / op.stride].sqrt() + 1e-8);
            m1[k] = b1 * m1[k] + (1.0 - b1) * d;
            m2[k] = b2 * m2[k] + (1.0 - b2) * d * d;
        }
        self.put(op.m1, m1);
        self.put(op.m2, m2);
        self.tick();
        Ok(())
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
