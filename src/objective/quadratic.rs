//! Quadratic objectives for the toy problems of ALGORITHMS.md §8: agent i's gradient is
//! `g_i = H_i x_i − c_i` (f_i = ½xᵀH_i x − c_iᵀx), and one-shot gradients for the mechanism
//! checks. Both run on either backend through the ordinary kernels: a quadratic's gradient is one
//! dense-layer dispatch over the identity job list, with H_i as the weight and −c_i as the bias.

use super::{JobGradients, JobList, Objective};
use crate::backend::{Axpby, Backend, Buf, BufKind, CsrBufs, DenseForward, DenseJobs};
use crate::backend::{InputBlocks, Mix};
use crate::error::{Error, Result};
use crate::model::DenseLayer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `g_i = H_i x_i − c_i` for every agent, with parameters of `d` floats per agent (stride d),
/// optionally plus `scale · ξ_i^t` with ξ standard normal (seeded per iteration).
pub struct Quadratics {
    coeffs: Buf,
    jobs: Buf,
    agents: usize,
    d: usize,
    noise: Option<GradientNoise>,
    /// Registered job lists.
    job_lists: Vec<QuadraticJobs>,
}

/// A job list on the device: dense jobs (coefficients of data agent i, input slab m), and for
/// the noise the matrix that copies agent i's noise to each of its jobs.
struct QuadraticJobs {
    jobs: Buf,
    n_jobs: usize,
    to_jobs: CsrBufs,
    noise: Option<Buf>,
}

/// One `to ← R·from` over slabs of `len` floats: R copies data agents' slabs into their jobs.
fn copy_to_jobs(
    be: &mut dyn Backend,
    to_jobs: CsrBufs,
    from: Buf,
    to: Buf,
    len: usize,
) -> Result<()> {
    be.mix(&Mix {
        csr: to_jobs,
        input: from,
        in_offset: 0,
        in_stride: len,
        output: to,
        out_offset: 0,
        out_stride: len,
        len,
    })
}

/// Seeded Gaussian gradient noise: drawn on the host per iteration (the toy problems are small)
/// and added with one axpby.
struct GradientNoise {
    buf: Buf,
    scale: f64,
    seed: u64,
}

impl Quadratics {
    /// Agent i's objective from its d×d row-major `h[i]` and its d-vector `c[i]`.
    pub fn new(be: &mut dyn Backend, h: &[Vec<f64>], c: &[Vec<f64>]) -> Result<Self> {
        let agents = h.len();
        let d = c.first().map_or(0, Vec::len);
        if agents == 0 || d == 0 || c.len() != agents {
            return Err(Error::param(
                "quadratics",
                "need one H and one c per agent, d ≥ 1",
            ));
        }
        let mut slabs = Vec::with_capacity(agents * (d * d + d));
        for (i, (hi, ci)) in h.iter().zip(c).enumerate() {
            if hi.len() != d * d || ci.len() != d || hi.iter().chain(ci).any(|v| !v.is_finite()) {
                return Err(Error::param(
                    "quadratics",
                    format!("agent {i}: H must be {d}×{d} and c of length {d}, all finite"),
                ));
            }
            slabs.extend(hi);
            slabs.extend(ci.iter().map(|&v| -v));
        }
        let coeffs = be.alloc(BufKind::F32, slabs.len(), "quadratics")?;
        be.write_f64(coeffs, 0, &slabs)?;
        let flat: Vec<u32> = (0..agents as u32).flat_map(|i| [i, i]).collect();
        let jobs = be.alloc(BufKind::U32, flat.len(), "quadratics.jobs")?;
        be.write_u32(jobs, 0, &flat)?;
        Ok(Quadratics {
            coeffs,
            jobs,
            agents,
            d,
            noise: None,
            job_lists: Vec::new(),
        })
    }

    /// Adds `scale · ξ` to every gradient, ξ ~ N(0, I) from the stream (seed, iteration).
    pub fn with_noise(mut self, be: &mut dyn Backend, scale: f64, seed: u64) -> Result<Self> {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(Error::param(
                "noise",
                format!("{scale} must be finite and ≥ 0"),
            ));
        }
        if scale > 0.0 {
            let buf = be.alloc(BufKind::F32, self.agents * self.d, "quadratics.noise")?;
            self.noise = Some(GradientNoise { buf, scale, seed });
        }
        Ok(self)
    }

    /// f_i(x) = ½‖x − t_i‖²: H_i = I, c_i = t_i (the constants task).
    pub fn constants(be: &mut dyn Backend, targets: &[Vec<f64>]) -> Result<Self> {
        let d = targets.first().map_or(0, Vec::len);
        let eye: Vec<f64> = (0..d * d)
            .map(|k| if k % (d + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        Quadratics::new(be, &vec![eye; targets.len()], targets)
    }

    /// Floats per agent.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Agents.
    pub fn agents(&self) -> usize {
        self.agents
    }
}

impl Quadratics {
    /// `out_k = H_i x_m − c_i` for every dense job k = (i, m) of `jobs` (coefficients i, input
    /// slab m).
    fn record_dense(
        &self,
        be: &mut dyn Backend,
        jobs: Buf,
        n_jobs: usize,
        params: Buf,
        out: Buf,
    ) -> Result<()> {
        let d = self.d;
        be.dense_forward(&DenseForward {
            shape: DenseJobs {
                jobs,
                n_jobs,
                batch: 1,
                layer: DenseLayer {
                    in_dim: d,
                    out_dim: d,
                    w_off: 0,
                    b_off: d * d,
                    relu: false,
                },
                stride: d * d + d,
                input_blocks: InputBlocks::ByData,
            },
            params: self.coeffs,
            input: params,
            output: out,
        })
    }

    /// Draws iteration t's noise ξ_i^t of every agent into the noise buffer (None: no noise).
    fn draw_noise(&self, be: &mut dyn Backend, t: u64) -> Result<Option<(Buf, f64)>> {
        let Some(noise) = &self.noise else {
            return Ok(None);
        };
        let mut rng = ChaCha8Rng::seed_from_u64(noise.seed);
        rng.set_stream(t);
        let xi: Vec<f64> = (0..noise.buf.len)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        be.write_f64(noise.buf, 0, &xi)?;
        Ok(Some((noise.buf, noise.scale)))
    }
}

fn add_scaled(be: &mut dyn Backend, y: Buf, a: f64, x: Buf) -> Result<()> {
    be.axpby(&Axpby {
        x,
        y,
        a,
        b: 1.0,
        len: x.len,
    })
}

impl Objective for Quadratics {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        grads: Buf,
        t: u64,
    ) -> Result<()> {
        self.record_dense(be, self.jobs, self.agents, params, grads)?;
        match self.draw_noise(be, t)? {
            Some((xi, scale)) => add_scaled(be, grads, scale, xi),
            None => Ok(()),
        }
    }

    fn prepare_jobs(&mut self, be: &mut dyn Backend, jobs: &[(usize, usize)]) -> Result<JobList> {
        let list = JobList::new(jobs, self.agents, self.job_lists.len())?;
        // The dense kernel's "model" is the coefficient block (data agent i), its input the
        // parameter slab m.
        let swapped: Vec<(usize, usize)> = jobs.iter().map(|&(m, i)| (i, m)).collect();
        let buf = crate::model::pass::upload_jobs(be, &swapped, "quadratics.job_list")?;
        let to_jobs = be.upload_csr(&list.data_rows(self.agents), "quadratics.to_jobs")?;
        let noise = match self.noise {
            Some(_) => Some(be.alloc(BufKind::F32, jobs.len() * self.d, "quadratics.job_noise")?),
            None => None,
        };
        self.job_lists.push(QuadraticJobs {
            jobs: buf,
            n_jobs: jobs.len(),
            to_jobs,
            noise,
        });
        Ok(list)
    }

    /// Job (m, i) gets agent i's noise of iteration t (its "minibatch"), whatever the model.
    fn record_job_gradients(&mut self, be: &mut dyn Backend, j: JobGradients<'_>) -> Result<()> {
        let (grads, k) = (j.grads, j.list.index(self.job_lists.len())?);
        let (jobs, n_jobs, to_jobs, job_noise) = {
            let l = &self.job_lists[k];
            (l.jobs, l.n_jobs, l.to_jobs, l.noise)
        };
        self.record_dense(be, jobs, n_jobs, j.params, grads)?;
        if let (Some((xi, scale)), Some(job_noise)) = (self.draw_noise(be, j.t)?, job_noise) {
            copy_to_jobs(be, to_jobs, xi, job_noise, self.d)?;
            add_scaled(be, grads, scale, job_noise)?;
        }
        Ok(())
    }
}

/// Gradient `v_i` at iteration 0 and zero afterwards (the delivery and correction-factor tasks).
pub struct OneShot {
    shots: Buf,
    len: usize,
    /// Registered job lists: the list and the matrix copying agent i's shot to each job (·, i)
    /// (uploaded on first use, when the slab length is known from the output).
    job_lists: Vec<(JobList, Option<CsrBufs>)>,
}

impl OneShot {
    /// `shots` is agent-major, `agents × d`.
    pub fn new(be: &mut dyn Backend, shots: &[f32]) -> Result<Self> {
        let buf = be.alloc(BufKind::F32, shots.len(), "one-shot")?;
        be.write_f32(buf, 0, shots)?;
        Ok(OneShot {
            shots: buf,
            len: shots.len(),
            job_lists: Vec::new(),
        })
    }
}

impl Objective for OneShot {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        _params: Buf,
        grads: Buf,
        t: u64,
    ) -> Result<()> {
        let a = if t == 0 { 1.0 } else { 0.0 };
        be.axpby(&Axpby {
            x: self.shots,
            y: grads,
            a,
            b: 0.0,
            len: self.len,
        })
    }

    fn prepare_jobs(&mut self, _be: &mut dyn Backend, jobs: &[(usize, usize)]) -> Result<JobList> {
        // The agent count is not known before the slab length: data agents are checked on use.
        let list = JobList::new(jobs, usize::MAX, self.job_lists.len())?;
        self.job_lists.push((list.clone(), None));
        Ok(list)
    }

    /// Job (m, i) gets v_i at iteration 0 (the shot does not depend on the model), zero after;
    /// the slab length is `grads.len / jobs`.
    fn record_job_gradients(&mut self, be: &mut dyn Backend, j: JobGradients<'_>) -> Result<()> {
        let (list, grads, t) = (j.list, j.grads, j.t);
        let k = list.index(self.job_lists.len())?;
        let d = grads.len / list.len();
        if d == 0 || !grads.len.is_multiple_of(list.len()) || !self.len.is_multiple_of(d) {
            return Err(Error::param(
                "jobs",
                format!(
                    "{} gradient floats for {} jobs do not match {} shot floats",
                    grads.len,
                    list.len(),
                    self.len
                ),
            ));
        }
        if t != 0 {
            return crate::algo::VectorOps::fill_all(be, grads, 0.0);
        }
        let agents = self.len / d;
        let to_jobs = match self.job_lists[k].1 {
            Some(c) => c,
            None => {
                // Checks every data agent against the shots.
                let checked = JobList::new(list.jobs(), agents, k)?;
                let c = be.upload_csr(&checked.data_rows(agents), "one-shot.to_jobs")?;
                self.job_lists[k].1 = Some(c);
                c
            }
        };
        copy_to_jobs(be, to_jobs, self.shots, grads, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::reference::ReferenceBackend;

    #[test]
    fn quadratic_gradient_is_hx_minus_c() {
        let mut be = ReferenceBackend::new();
        let h = vec![vec![2.0, 1.0, 1.0, 3.0], vec![1.0, 0.0, 0.0, 1.0]];
        let c = vec![vec![1.0, -1.0], vec![0.5, 2.0]];
        let mut q = Quadratics::new(&mut be, &h, &c).unwrap();
        let x = be.alloc(BufKind::F32, 4, "x").unwrap();
        be.write_f32(x, 0, &[1.0, 2.0, -1.0, 4.0]).unwrap();
        let g = be.alloc(BufKind::F32, 4, "g").unwrap();
        q.record_gradients(&mut be, x, g, 0).unwrap();
        assert_eq!(be.read_f32(g).unwrap(), vec![3.0, 8.0, -1.5, 2.0]);
        let mut k = Quadratics::constants(&mut be, &[vec![1.0], vec![3.0]]).unwrap();
        let (x1, g1) = (
            be.alloc(BufKind::F32, 2, "x").unwrap(),
            be.alloc(BufKind::F32, 2, "g").unwrap(),
        );
        be.write_f32(x1, 0, &[0.0, 5.0]).unwrap();
        k.record_gradients(&mut be, x1, g1, 3).unwrap();
        assert_eq!(be.read_f32(g1).unwrap(), vec![-1.0, 2.0]);
    }

    #[test]
    fn one_shot_fires_once() {
        let mut be = ReferenceBackend::new();
        let mut o = OneShot::new(&mut be, &[1.0, -2.0]).unwrap();
        let p = be.alloc(BufKind::F32, 2, "p").unwrap();
        let g = be.alloc(BufKind::F32, 2, "g").unwrap();
        o.record_gradients(&mut be, p, g, 0).unwrap();
        assert_eq!(be.read_f32(g).unwrap(), vec![1.0, -2.0]);
        o.record_gradients(&mut be, p, g, 1).unwrap();
        assert_eq!(be.read_f32(g).unwrap(), vec![0.0, 0.0]);
    }
}
