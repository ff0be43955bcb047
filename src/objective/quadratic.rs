//! Quadratic objectives for the toy problems of ALGORITHMS.md §8: agent i's gradient is
//! `g_i = H_i x_i − c_i` (f_i = ½xᵀH_i x − c_iᵀx), and one-shot gradients for the mechanism
//! checks. Both run on either backend through the ordinary kernels: a quadratic's gradient is one
//! dense-layer dispatch over the identity job list, with H_i as the weight and −c_i as the bias.

use super::Objective;
use crate::backend::{Axpby, Backend, Buf, BufKind, DenseForward, DenseJobs, InputBlocks};
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

impl Objective for Quadratics {
    fn record_gradients(
        &mut self,
        be: &mut dyn Backend,
        params: Buf,
        grads: Buf,
        t: u64,
    ) -> Result<()> {
        let d = self.d;
        be.dense_forward(&DenseForward {
            shape: DenseJobs {
                jobs: self.jobs,
                n_jobs: self.agents,
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
            output: grads,
        })?;
        let Some(noise) = &self.noise else {
            return Ok(());
        };
        let mut rng = ChaCha8Rng::seed_from_u64(noise.seed);
        rng.set_stream(t);
        let xi: Vec<f64> = (0..noise.buf.len)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        be.write_f64(noise.buf, 0, &xi)?;
        be.axpby(&Axpby {
            x: noise.buf,
            y: grads,
            a: noise.scale,
            b: 1.0,
            len: noise.buf.len,
        })
    }
}

/// Gradient `v_i` at iteration 0 and zero afterwards (the delivery and correction-factor tasks).
pub struct OneShot {
    shots: Buf,
    len: usize,
}

impl OneShot {
    /// `shots` is agent-major, `agents × d`.
    pub fn new(be: &mut dyn Backend, shots: &[f32]) -> Result<Self> {
        let buf = be.alloc(BufKind::F32, shots.len(), "one-shot")?;
        be.write_f32(buf, 0, shots)?;
        Ok(OneShot {
            shots: buf,
            len: shots.len(),
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
