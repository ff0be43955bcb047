//! The toy problems of ALGORITHMS.md §8.1 and their command line (`examples/toy.rs`): exact checks
//! of every algorithm on quadratics with known minimisers and on one-shot gradients, on the f64 CPU
//! reference or the f32 GPU backend; and the heterogeneity study of issue 5
//! ([`heterogeneity_table`], `examples/heterogeneity.rs`).
//!
//! Coefficients, learning rates and states stay f64 on the CPU reference (the GPU rounds them to
//! f32), and every optimum and error is computed in f64, so the fixed points of a CPU run are exact
//! to rounding.

use crate::algo::{
    Algo, AlgoOptions, AlgoSetup, Algorithm, LocalHyper, Objective, OneShot, Quadratics,
};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{MixingRule, Topology};
use crate::train::cli::{exit_code, flag, open_backend, parse_args, OptionArgs};
use crate::train::TrainConfig;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::io::Write;

/// RNG stream of the toy problems' construction (init point, random quadratics).
const TOY_STREAM: u64 = 0x7059;

/// Where the agents' gradients come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ToyGradient {
    /// g_i = H_i x − c_i with d×d row-major H_i.
    Quadratic {
        /// One H_i per agent.
        h: Vec<Vec<f64>>,
        /// One c_i per agent.
        c: Vec<Vec<f64>>,
    },
    /// Gradient v_i at step 0 only (agent-major, agents × d), zero afterwards.
    OneShot(Vec<f32>),
}

/// One toy problem: agents, dimension, start point, gradients and (where known) the optimum.
#[derive(Clone, Debug, PartialEq)]
pub struct ToyProblem {
    /// Task name.
    pub name: &'static str,
    /// Agents n.
    pub agents: usize,
    /// Scalars per agent d.
    pub d: usize,
    /// Start point, agent-major (agents × d).
    pub init: Vec<f32>,
    /// The gradients.
    pub gradient: ToyGradient,
    /// Minimiser x* of f = (1/n) Σ f_i (quadratic tasks).
    pub optimum: Option<Vec<f64>>,
    /// Factor of the error: f(x̄) − f(x*) = scale · (x̄ − x*)ᵀ H̄ (x̄ − x*).
    pub error_scale: f64,
    /// The learning rate the task prescribes (η = 1 for the one-shot tasks).
    pub default_lr: f64,
    /// Gradient noise: each gradient gets `noise_scale · ξ`, ξ ~ N(0, I) (0: none).
    pub noise_scale: f64,
    /// Seed of the gradient noise.
    pub noise_seed: u64,
}

/// The d×d identity, row-major.
fn eye(d: usize) -> Vec<f64> {
    (0..d * d)
        .map(|k| if k % (d + 1) == 0 { 1.0 } else { 0.0 })
        .collect()
}

impl ToyProblem {
    /// f_i(x) = ½‖x − t_i‖² (RandomConstants with fixed targets); minimiser mean(t).
    pub fn constants(targets: &[Vec<f64>]) -> Result<Self> {
        let n = targets.len();
        let d = targets.first().map_or(0, Vec::len);
        if n == 0 || d == 0 || targets.iter().any(|t| t.len() != d) {
            return Err(Error::param(
                "targets",
                "need at least one target per agent, all of the same dimension",
            ));
        }
        if targets.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::param("targets", "targets must be finite"));
        }
        let c: Vec<Vec<f64>> = targets.iter().map(|t| t.to_vec()).collect();
        Self::quadratic("constants", vec![eye(d); n], c, vec![0.0; n * d], 0.5)
    }

    /// OneMinusOne on a chain: ∇f_0 = x − 1, ∇f_{n−1} = x + 1, others x; optimum 0; every agent
    /// starts at one common seeded N(0, 1) scalar.
    pub fn one_minus_one(agents: usize, seed: u64) -> Result<Self> {
        if agents < 2 {
            return Err(Error::param("agents", "one-minus-one needs at least 2"));
        }
        let mut c = vec![vec![0.0]; agents];
        c[0][0] = 1.0;
        c[agents - 1][0] = -1.0;
        let start: f64 = rng(seed).sample(StandardNormal);
        Self::quadratic(
            "one-minus-one",
            vec![vec![1.0]; agents],
            c,
            vec![start as f32; agents],
            0.5,
        )
    }

    /// Circle: t_i = (cos θ_i, sin θ_i), θ_i = 2π i/(n − 1), f_i = ½‖x − t_i‖², start (0, 0).
    pub fn circle(agents: usize) -> Result<Self> {
        if agents < 2 {
            return Err(Error::param("agents", "circle needs at least 2"));
        }
        let c: Vec<Vec<f64>> = (0..agents)
            .map(|i| {
                let th = 2.0 * std::f64::consts::PI * i as f64 / (agents - 1) as f64;
                vec![th.cos(), th.sin()]
            })
            .collect();
        Self::quadratic(
            "circle",
            vec![eye(2); agents],
            c,
            vec![0.0; agents * 2],
            0.5,
        )
    }

    /// Random quadratics (RelaySGD App. B.4): H_i = A_iᵀA_i, c_i = A_iᵀb_i, start 0, error
    /// f(x̄) − f(x*) with f = (1/n) Σ ‖A_i x − b_i‖².
    pub fn random_quadratics(q: &RandomQuadratics) -> Result<Self> {
        let d = q.d;
        let h: Vec<Vec<f64>> = q.a.iter().map(|a| ata(a, d)).collect();
        let c: Vec<Vec<f64>> = q.a.iter().zip(&q.b).map(|(a, b)| atb(a, b, d)).collect();
        let n = q.a.len();
        Self::quadratic("random-quadratics", h, c, vec![0.0; n * d], 1.0)
    }

    /// CorrectionFactor: every agent gets gradient −1 (each coordinate) at step 0 only; η = 1.
    pub fn correction_factor(agents: usize, d: usize) -> Result<Self> {
        Self::one_shot("correction-factor", agents, d, vec![-1.0; agents * d])
    }

    /// Delivery: agent `source` (default ⌊n/3⌋) gets gradient −n at step 0 only; η = 1.
    pub fn delivery(agents: usize, d: usize, source: Option<usize>) -> Result<Self> {
        let s = source.unwrap_or(agents / 3);
        if s >= agents {
            return Err(Error::param(
                "source",
                format!("agent {s} does not exist ({agents} agents)"),
            ));
        }
        let mut v = vec![0.0f32; agents * d];
        v[s * d..(s + 1) * d].fill(-(agents as f32));
        Self::one_shot("delivery", agents, d, v)
    }

    fn one_shot(name: &'static str, agents: usize, d: usize, v: Vec<f32>) -> Result<Self> {
        if agents == 0 || d == 0 {
            return Err(Error::param("agents", "need at least one agent and d ≥ 1"));
        }
        Ok(ToyProblem {
            name,
            agents,
            d,
            init: vec![0.0; agents * d],
            gradient: ToyGradient::OneShot(v),
            optimum: None,
            error_scale: 0.0,
            default_lr: 1.0,
            noise_scale: 0.0,
            noise_seed: 0,
        })
    }

    fn quadratic(
        name: &'static str,
        h: Vec<Vec<f64>>,
        c: Vec<Vec<f64>>,
        init: Vec<f32>,
        error_scale: f64,
    ) -> Result<Self> {
        let n = c.len();
        let d = c[0].len();
        let hbar = mean_matrix(&h, d);
        let cbar: Vec<f64> = (0..d)
            .map(|k| c.iter().map(|ci| ci[k]).sum::<f64>() / n as f64)
            .collect();
        let optimum = cholesky_solve(&hbar, &cbar, d)
            .ok_or_else(|| Error::param("task", "the mean Hessian is not positive definite"))?;
        Ok(ToyProblem {
            name,
            agents: n,
            d,
            init,
            gradient: ToyGradient::Quadratic { h, c },
            optimum: Some(optimum),
            error_scale,
            default_lr: 0.1,
            noise_scale: 0.0,
            noise_seed: 0,
        })
    }

    /// Adds Gaussian gradient noise of level σ with the task's scaling (ALGORITHMS.md §8.1):
    /// σ·ξ (constants, one-minus-one), σξ/√2 (circle), (σ/√d)·ξ (random quadratics).
    pub fn with_noise(mut self, sigma: f64, seed: u64) -> Result<Self> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(Error::param(
                "noise",
                format!("{sigma} must be finite and ≥ 0"),
            ));
        }
        if sigma > 0.0 && matches!(self.gradient, ToyGradient::OneShot(_)) {
            return Err(Error::param(
                "noise",
                format!("the {} task has no gradient noise", self.name),
            ));
        }
        self.noise_scale = match self.name {
            "circle" => sigma / 2f64.sqrt(),
            "random-quadratics" => sigma / (self.d as f64).sqrt(),
            _ => sigma,
        };
        self.noise_seed = seed;
        Ok(self)
    }

    /// The objective on a backend.
    pub fn objective(&self, be: &mut dyn Backend) -> Result<Box<dyn Objective>> {
        Ok(match &self.gradient {
            ToyGradient::Quadratic { h, c } => Box::new(Quadratics::new(be, h, c)?.with_noise(
                be,
                self.noise_scale,
                self.noise_seed,
            )?),
            ToyGradient::OneShot(v) => Box::new(OneShot::new(be, v)?),
        })
    }

    /// The mean x̄ of agent-major parameters.
    pub fn mean(&self, x: &[f64]) -> Vec<f64> {
        let d = self.d;
        (0..d)
            .map(|k| (0..self.agents).map(|i| x[i * d + k]).sum::<f64>() / self.agents as f64)
            .collect()
    }

    /// (1/n) Σ_i ‖x_i − x̄‖².
    pub fn consensus_distance(&self, x: &[f64]) -> f64 {
        let m = self.mean(x);
        x.chunks(self.d)
            .map(|xi| xi.iter().zip(&m).map(|(a, b)| (a - b).powi(2)).sum::<f64>())
            .sum::<f64>()
            / self.agents as f64
    }

    /// f(x̄) − f(x*) for quadratic tasks (None for one-shot tasks).
    pub fn error(&self, x: &[f64]) -> Option<f64> {
        let (ToyGradient::Quadratic { h, .. }, Some(opt)) = (&self.gradient, &self.optimum) else {
            return None;
        };
        let d = self.d;
        let e: Vec<f64> = self.mean(x).iter().zip(opt).map(|(a, b)| a - b).collect();
        let hbar = mean_matrix(h, d);
        let mut q = 0.0;
        for r in 0..d {
            for k in 0..d {
                q += e[r] * hbar[r * d + k] * e[k];
            }
        }
        Some(self.error_scale * q)
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(TOY_STREAM);
    r
}

fn mean_matrix(h: &[Vec<f64>], d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for hi in h {
        for (a, b) in m.iter_mut().zip(hi) {
            *a += b;
        }
    }
    m.iter_mut().for_each(|v| *v /= h.len() as f64);
    m
}

/// AᵀA of a d×d row-major matrix.
fn ata(a: &[f64], d: usize) -> Vec<f64> {
    let mut h = vec![0.0; d * d];
    for r in 0..d {
        for c in 0..d {
            h[r * d + c] = (0..d).map(|k| a[k * d + r] * a[k * d + c]).sum();
        }
    }
    h
}

/// Aᵀb.
fn atb(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    (0..d)
        .map(|r| (0..d).map(|k| a[k * d + r] * b[k]).sum())
        .collect()
}

/// A x.
fn ax(a: &[f64], x: &[f64], d: usize) -> Vec<f64> {
    (0..d)
        .map(|r| (0..d).map(|k| a[r * d + k] * x[k]).sum())
        .collect()
}

/// Solves H x = c for symmetric positive definite H (None if it is not).
fn cholesky_solve(h: &[f64], c: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = h[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        y[i] = (c[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    Some(x)
}

/// Singular value decomposition A = U diag(σ) Vᵀ of a d×d row-major matrix by one-sided Jacobi,
/// singular values in descending order (as torch.svd). Returns (U, σ, V), U and V row-major.
fn svd(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut u = a.to_vec();
    let mut v = eye(d);
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..d {
            for q in p + 1..d {
                let (mut al, mut be, mut ga) = (0.0, 0.0, 0.0);
                for r in 0..d {
                    let (x, y) = (u[r * d + p], u[r * d + q]);
                    al += x * x;
                    be += y * y;
                    ga += x * y;
                }
                if ga.abs() <= 1e-15 * (al * be).sqrt() || ga == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (be - al) / (2.0 * ga);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                for m in [&mut u, &mut v] {
                    for r in 0..d {
                        let (x, y) = (m[r * d + p], m[r * d + q]);
                        m[r * d + p] = cs * x - sn * y;
                        m[r * d + q] = sn * x + cs * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let sig: Vec<f64> = (0..d)
        .map(|k| (0..d).map(|r| u[r * d + k].powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut idx: Vec<usize> = (0..d).collect();
    idx.sort_by(|&i, &j| sig[j].total_cmp(&sig[i]));
    let mut uo = vec![0.0; d * d];
    let mut vo = vec![0.0; d * d];
    let mut so = vec![0.0; d];
    for (k, &j) in idx.iter().enumerate() {
        so[k] = sig[j];
        for r in 0..d {
            uo[r * d + k] = if sig[j] > 0.0 {
                u[r * d + j] / sig[j]
            } else {
                0.0
            };
            vo[r * d + k] = v[r * d + j];
        }
    }
    (uo, so, vo)
}

/// The parameters of the random-quadratics construction (RelaySGD App. B.4).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomQuadraticsSpec {
    /// Agents n (≥ 2).
    pub agents: usize,
    /// Dimension d.
    pub d: usize,
    /// Smoothness L (largest singular value of every A_i).
    pub smoothness: f64,
    /// Strong convexity: smallest singular value μ (None: divide A_i by its largest instead).
    pub mu: Option<f64>,
    /// Heterogeneity ζ² = mean_i ‖∇f_i(x*)‖².
    pub zeta2: f64,
    /// Distance of the optimum from the start point 0.
    pub r0: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for RandomQuadraticsSpec {
    fn default() -> Self {
        RandomQuadraticsSpec {
            agents: 8,
            d: 10,
            smoothness: 1.0,
            mu: Some(0.5),
            zeta2: 0.1,
            r0: 10.0,
            seed: 1,
        }
    }
}

/// The built random quadratics, f(x) = (1/n) Σ ‖A_i x − b_i‖², in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomQuadratics {
    /// Dimension d.
    pub d: usize,
    /// A_i, d×d row-major.
    pub a: Vec<Vec<f64>>,
    /// b_i.
    pub b: Vec<Vec<f64>>,
    /// The scale s found by the search.
    pub scale: f64,
    /// The heterogeneity ζ² reached (|ζ² − requested| ≤ 1e-5).
    pub zeta2: f64,
    /// The optimum x_opt (norm r₀).
    pub x_opt: Vec<f64>,
    /// The joint optimum of the centred problem (before adding x_opt; ≈ 0).
    pub centred_optimum: Vec<f64>,
}

impl RandomQuadratics {
    /// Builds the problem: A_i with singular values linspace(μ, L, d), worker optima offset by
    /// s·o_i with s found by doubling then bisection to |ζ²(s) − ζ²| ≤ 1e-5, the joint optimum
    /// shifted to 0 and then to x_opt of norm r₀.
    pub fn new(s: &RandomQuadraticsSpec) -> Result<Self> {
        let (n, d) = (s.agents, s.d);
        if n < 2 {
            return Err(Error::param("agents", "random quadratics need at least 2"));
        }
        if d == 0 || d > 1024 {
            return Err(Error::param("dim", "must be in 1..=1024"));
        }
        if !(s.smoothness > 0.0 && s.smoothness.is_finite()) {
            return Err(Error::param("smoothness", "must be finite and > 0"));
        }
        if let Some(mu) = s.mu {
            if !(mu > 0.0 && mu < s.smoothness) {
                return Err(Error::param("mu", "must be in (0, L) (0 for none)"));
            }
        }
        if !(s.zeta2 >= 0.0 && s.zeta2.is_finite()) {
            return Err(Error::param("heterogeneity", "must be finite and ≥ 0"));
        }
        if !(s.r0 >= 0.0 && s.r0.is_finite()) {
            return Err(Error::param("r0", "must be finite and ≥ 0"));
        }
        let mut g = rng(s.seed);
        let mut normal = |len: usize| -> Vec<f64> {
            (0..len)
                .map(|_| g.sample::<f64, _>(StandardNormal))
                .collect()
        };
        let mut a: Vec<Vec<f64>> = (0..n).map(|_| normal(d * d)).collect();
        for ai in &mut a {
            let (u, sig, v) = svd(ai, d);
            if sig.iter().any(|&x| x.is_nan() || x <= 0.0) {
                return Err(Error::param("seed", "a random matrix is singular"));
            }
            match s.mu {
                None => ai.iter_mut().for_each(|x| *x /= sig[0]),
                Some(mu) => {
                    let lin: Vec<f64> = (0..d)
                        .map(|k| {
                            if d == 1 {
                                mu
                            } else {
                                mu + (s.smoothness - mu) * k as f64 / (d - 1) as f64
                            }
                        })
                        .collect();
                    for r in 0..d {
                        for c in 0..d {
                            ai[r * d + c] =
                                (0..d).map(|k| u[r * d + k] * lin[k] * v[c * d + k]).sum();
                        }
                    }
                }
            }
        }
        let dirs: Vec<Vec<f64>> = (0..n).map(|_| normal(d)).collect();
        let hsum = {
            let h: Vec<Vec<f64>> = a.iter().map(|ai| ata(ai, d)).collect();
            mean_matrix(&h, d)
        };
        let optimum = |b: &[Vec<f64>]| -> Result<Vec<f64>> {
            let mut c = vec![0.0; d];
            for (ai, bi) in a.iter().zip(b) {
                for (ck, v) in c.iter_mut().zip(atb(ai, bi, d)) {
                    *ck += v / n as f64;
                }
            }
            cholesky_solve(&hsum, &c, d)
                .ok_or_else(|| Error::param("seed", "the mean Hessian is singular"))
        };
        let zeta2_at = |b: &[Vec<f64>], x: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(ai, bi)| {
                    let r: Vec<f64> = ax(ai, x, d).iter().zip(bi).map(|(p, q)| p - q).collect();
                    atb(ai, &r, d).iter().map(|v| v * v).sum::<f64>()
                })
                .sum::<f64>()
                / n as f64
        };
        let mut b = vec![vec![0.0; d]; n];
        let mut scale = 1.0f64;
        let (mut lo, mut hi) = (0.0f64, None::<f64>);
        let mut cur = 0.0f64;
        let mut centred = vec![0.0; d];
        let mut iters = 0;
        while (cur - s.zeta2).abs() > 1e-5 {
            iters += 1;
            if iters > 4000 || !scale.is_finite() {
                return Err(Error::param(
                    "heterogeneity",
                    format!("could not reach ζ² = {} (last {cur})", s.zeta2),
                ));
            }
            for (bi, (ai, oi)) in b.iter_mut().zip(a.iter().zip(&dirs)) {
                let so: Vec<f64> = oi.iter().map(|v| v * scale).collect();
                *bi = ax(ai, &so, d);
            }
            let opt = optimum(&b)?;
            for (bi, ai) in b.iter_mut().zip(&a) {
                for (v, w) in bi.iter_mut().zip(ax(ai, &opt, d)) {
                    *v -= w;
                }
            }
            centred = optimum(&b)?;
            cur = zeta2_at(&b, &centred);
            if cur < s.zeta2 && scale > lo {
                lo = scale;
            } else if cur > s.zeta2 && hi.is_none_or(|h| scale < h) {
                hi = Some(scale);
            }
            scale = match hi {
                None => scale * 2.0,
                Some(h) => (lo + h) / 2.0,
            };
        }
        let mut x_opt = normal(d);
        let norm = x_opt.iter().map(|v| v * v).sum::<f64>().sqrt();
        x_opt.iter_mut().for_each(|v| *v *= s.r0 / norm);
        for (bi, ai) in b.iter_mut().zip(&a) {
            for (v, w) in bi.iter_mut().zip(ax(ai, &x_opt, d)) {
                *v += w;
            }
        }
        Ok(RandomQuadratics {
            d,
            a,
            b,
            scale: if iters == 0 { 0.0 } else { scale },
            zeta2: cur,
            x_opt,
            centred_optimum: centred,
        })
    }

    /// The joint minimiser of f, solved from the final A_i, b_i.
    pub fn optimum(&self) -> Option<Vec<f64>> {
        let d = self.d;
        let n = self.a.len() as f64;
        let h: Vec<Vec<f64>> = self.a.iter().map(|a| ata(a, d)).collect();
        let mut c = vec![0.0; d];
        for (ai, bi) in self.a.iter().zip(&self.b) {
            for (ck, v) in c.iter_mut().zip(atb(ai, bi, d)) {
                *ck += v / n;
            }
        }
        cholesky_solve(&mean_matrix(&h, d), &c, d)
    }

    /// mean_i ‖∇f_i(x)‖² with ∇f_i = A_iᵀ(A_i x − b_i).
    pub fn mean_sq_grad(&self, x: &[f64]) -> f64 {
        let d = self.d;
        self.a
            .iter()
            .zip(&self.b)
            .map(|(ai, bi)| {
                let r: Vec<f64> = ax(ai, x, d).iter().zip(bi).map(|(p, q)| p - q).collect();
                atb(ai, &r, d).iter().map(|v| v * v).sum::<f64>()
            })
            .sum::<f64>()
            / self.a.len() as f64
    }

    /// The singular values of A_i, descending.
    pub fn singular_values(&self, i: usize) -> Vec<f64> {
        self.a.get(i).map_or(Vec::new(), |a| svd(a, self.d).1)
    }
}

/// How a toy run is driven.
#[derive(Clone, Debug)]
pub struct ToyRun {
    /// Algorithm.
    pub algo: Algorithm,
    /// Topology.
    pub topology: Topology,
    /// Gossip weight rule.
    pub mixing: MixingRule,
    /// Local optimizer.
    pub hyper: LocalHyper,
    /// Algorithm options.
    pub options: AlgoOptions,
    /// Constant learning rate.
    pub lr: f64,
    /// Steps.
    pub steps: u64,
    /// Seed of the algorithm's randomness.
    pub seed: u64,
}

impl Default for ToyRun {
    fn default() -> Self {
        ToyRun {
            algo: Algorithm::Dsgd,
            topology: Topology::Ring,
            mixing: MixingRule::default(),
            hyper: LocalHyper {
                momentum: 0.0,
                nesterov: true,
                weight_decay: 0.0,
            },
            options: AlgoOptions::default(),
            lr: 0.1,
            steps: 100,
            seed: 1,
        }
    }
}

/// Builds the algorithm (stride = d, no padding) and the objective of a problem on a backend.
pub fn build(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
) -> Result<(Box<dyn Algo>, Box<dyn Objective>)> {
    let setup = AlgoSetup {
        agents: p.agents,
        stride: p.d,
        d: p.d,
        init: &p.init,
        topology: &run.topology,
        mixing: &run.mixing,
        hyper: run.hyper,
        seed: run.seed,
        options: &run.options,
    };
    let algo = run.algo.build(be, &setup)?;
    let obj = p.objective(be)?;
    be.flush()?;
    Ok((algo, obj))
}

/// Runs `run.steps` steps (one `record_step` and one flush each) and returns the parameters after
/// each step listed in `print` (0 = the start point), agent-major.
pub fn run_problem(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
    print: &[u64],
) -> Result<Vec<(u64, Vec<f64>)>> {
    if !(run.lr.is_finite() && run.lr >= 0.0) {
        return Err(Error::param(
            "lr",
            format!("{} must be finite and ≥ 0", run.lr),
        ));
    }
    let (mut algo, mut obj) = build(be, p, run)?;
    let mut out = Vec::new();
    if print.contains(&0) {
        out.push((0, be.read_f32(algo.params())?));
    }
    for t in 0..run.steps {
        algo.record_step(be, obj.as_mut(), t, run.lr)?;
        be.flush()?;
        if print.contains(&(t + 1)) {
            out.push((t + 1, be.read_f32(algo.params())?));
        }
    }
    Ok(out)
}

/// Flags of the toy command line.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "toy",
    allow_negative_numbers = true,
    about = "Exact checks of the algorithms on the toy problems of ALGORITHMS.md §8.1; prints one JSON line per printed step"
)]
pub struct ToyArgs {
    /// Task: constants, one-minus-one, circle, random-quadratics, correction-factor, delivery.
    #[arg(long)]
    pub task: String,
    /// Constants: targets, comma-separated (agent-major; with --dim k, k per agent). Default t_i = i.
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<f64>>,
    /// Dimension d (constants: per-agent target length; random quadratics default 10; one-shot 1).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Agents, where the task has no natural count (default 8).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Algorithm name (any implemented one).
    #[arg(long, default_value = "dsgd")]
    pub algo: String,
    /// Topology.
    #[arg(long, default_value = "ring")]
    pub topology: String,
    /// Constant learning rate (default 0.1; 1 for correction-factor and delivery).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local momentum β in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum (default true; --nesterov false for heavy ball).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub nesterov: bool,
    /// Weight decay λ.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Steps.
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    /// Steps after which to print the parameters, comma-separated (0 = start; default: last).
    #[arg(long, value_delimiter = ',')]
    pub print_steps: Option<Vec<u64>>,
    /// Seed (start point of one-minus-one, random quadratics, algorithm randomness).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Gradient noise level σ (σ·ξ for constants and one-minus-one, σξ/√2 for circle,
    /// (σ/√d)·ξ for random quadratics; ξ standard normal, seeded by --seed and the step).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Random quadratics: heterogeneity ζ².
    #[arg(long, default_value_t = 0.1)]
    pub heterogeneity: f64,
    /// Random quadratics: smallest singular value μ (0: scale by the largest instead).
    #[arg(long, default_value_t = 0.5)]
    pub mu: f64,
    /// Random quadratics: largest singular value L.
    #[arg(long, default_value_t = 1.0)]
    pub smoothness: f64,
    /// Random quadratics: norm of the optimum r₀.
    #[arg(long, default_value_t = 10.0)]
    pub r0: f64,
    /// Delivery: the agent that gets the gradient (default ⌊n/3⌋).
    #[arg(long)]
    pub source: Option<usize>,
    /// Backend: gpu (falls back to cpu with a notice) or cpu.
    #[arg(long, default_value = "gpu")]
    pub backend: String,
    /// Algorithm-specific options.
    #[command(flatten)]
    pub options: OptionArgs,
}

/// Builds the problem the flags describe.
pub fn problem_from_args(a: &ToyArgs) -> Result<ToyProblem> {
    task_from_args(a)?.with_noise(a.noise, a.seed)
}

fn task_from_args(a: &ToyArgs) -> Result<ToyProblem> {
    let agents = |default: usize| a.agents.unwrap_or(default);
    let task = a.task.trim().to_ascii_lowercase().replace('_', "-");
    if a.targets.is_some() && task != "constants" {
        return Err(Error::param("targets", "only applies to --task constants"));
    }
    if a.source.is_some() && task != "delivery" {
        return Err(Error::param("source", "only applies to --task delivery"));
    }
    match task.as_str() {
        "constants" => {
            let d = a.dim.unwrap_or(1);
            if d == 0 {
                return Err(Error::param("dim", "must be at least 1"));
            }
            let flat = match &a.targets {
                Some(t) => t.clone(),
                None => (0..agents(8) * d).map(|k| (k / d) as f64).collect(),
            };
            if flat.is_empty() || flat.len() % d != 0 {
                return Err(Error::param(
                    "targets",
                    format!("{} values are not a multiple of --dim {d}", flat.len()),
                ));
            }
            let t: Vec<Vec<f64>> = flat.chunks(d).map(<[f64]>::to_vec).collect();
            if let Some(n) = a.agents {
                if n != t.len() {
                    return Err(Error::param(
                        "agents",
                        format!("{n} agents but {} targets", t.len()),
                    ));
                }
            }
            ToyProblem::constants(&t)
        }
        "one-minus-one" | "oneminusone" => {
            no_dim(a)?;
            ToyProblem::one_minus_one(agents(8), a.seed)
        }
        "circle" => {
            no_dim(a)?;
            ToyProblem::circle(agents(8))
        }
        "random-quadratics" | "quadratics" => {
            let q = RandomQuadratics::new(&RandomQuadraticsSpec {
                agents: agents(8),
                d: a.dim.unwrap_or(10),
                smoothness: a.smoothness,
                mu: (a.mu != 0.0).then_some(a.mu),
                zeta2: a.heterogeneity,
                r0: a.r0,
                seed: a.seed,
            })?;
            ToyProblem::random_quadratics(&q)
        }
        "correction-factor" | "correction" => {
            ToyProblem::correction_factor(agents(8), a.dim.unwrap_or(1))
        }
        "delivery" => ToyProblem::delivery(agents(8), a.dim.unwrap_or(1), a.source),
        _ => Err(Error::param(
            "task",
            format!(
                "unknown task '{}'; accepted: constants, one-minus-one, circle, random-quadratics, correction-factor, delivery",
                a.task
            ),
        )),
    }
}

fn no_dim(a: &ToyArgs) -> Result<()> {
    match a.dim {
        Some(_) => Err(Error::param(
            "dim",
            format!("the {} task has a fixed dimension", a.task),
        )),
        None => Ok(()),
    }
}

/// Builds the run settings the flags describe (the problem supplies the default rate).
pub fn run_from_args(a: &ToyArgs, p: &ToyProblem) -> Result<ToyRun> {
    let algo: Algorithm = a.algo.parse()?;
    let topology: Topology = a
        .topology
        .parse()
        .map_err(|e: crate::graph::GraphError| Error::param("topology", e.to_string()))?;
    let mut c = TrainConfig::default();
    a.options.apply(&mut c)?;
    c.options.validate()?;
    if !(a.momentum.is_finite() && (0.0..1.0).contains(&a.momentum)) {
        return Err(Error::param(
            "momentum",
            format!("{} is outside [0, 1)", a.momentum),
        ));
    }
    if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
        return Err(Error::param("weight-decay", "must be finite and ≥ 0"));
    }
    let lr = a.lr.unwrap_or(p.default_lr);
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::param("lr", format!("{lr} must be finite and ≥ 0")));
    }
    Ok(ToyRun {
        algo,
        topology,
        mixing: c.mixing,
        hyper: LocalHyper {
            momentum: a.momentum,
            nesterov: a.nesterov,
            weight_decay: a.weight_decay,
        },
        options: c.options,
        lr,
        steps: a.steps,
        seed: a.seed,
    })
}

/// Runs the toy command line (`args` starts with the program name): one JSON object per printed
/// step on `out`, notices and errors on `err`. Returns the exit code (2 for a bad flag).
pub fn run_toy<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match parse_args::<ToyArgs, _, _>(args, out, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let result = toy_main(&args, out, err);
    exit_code(result, err, flag)
}

fn toy_main(a: &ToyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let p = problem_from_args(a)?;
    let run = run_from_args(a, &p)?;
    let mut print = a.print_steps.clone().unwrap_or_else(|| vec![a.steps]);
    if let Some(&bad) = print.iter().find(|&&s| s > a.steps) {
        return Err(Error::param(
            "print-steps",
            format!("step {bad} is after the last step {}", a.steps),
        ));
    }
    print.sort_unstable();
    print.dedup();
    let mut notices = Vec::new();
    let (mut be, kind) = open_backend(&a.backend, None, None, &mut notices)?;
    for n in &notices {
        let _ = writeln!(err, "notice: {n}");
    }
    let snaps = run_problem(be.as_mut(), &p, &run, &print)?;
    let io = |source| Error::Io {
        path: "<stdout>".into(),
        source,
    };
    for (step, x) in snaps {
        let agents: Vec<serde_json::Value> = x
            .chunks(p.d)
            .map(|xi| {
                let v: Vec<serde_json::Value> = xi
                    .iter()
                    .map(|&v| {
                        if kind == "gpu" {
                            serde_json::Value::from(v as f32)
                        } else {
                            serde_json::Value::from(v)
                        }
                    })
                    .collect();
                serde_json::Value::Array(v)
            })
            .collect();
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("x".into(), serde_json::Value::Array(agents));
        if let Some(e) = p.error(&x) {
            obj.insert("error".into(), e.into());
        }
        writeln!(out, "{}", serde_json::Value::Object(obj)).map_err(io)?;
    }
    Ok(())
}

/// One method of the heterogeneity study: a label and its run settings (lr and steps are set
/// by the study).
#[derive(Clone, Debug)]
pub struct StudyMethod {
    /// Row label of the table.
    pub label: String,
    /// Run settings (algorithm, topology, mixing, options).
    pub run: ToyRun,
}

/// The heterogeneity-independence study on random quadratics (ALGORITHMS.md §8.1, RelaySGD
/// App. B.4): steps to reach f(x̄) − f(x*) ≤ target for each method and ζ², each with the
/// fastest learning rate of a grid.
#[derive(Clone, Debug)]
pub struct HeterogeneityStudy {
    /// The problem (its `zeta2` is replaced by each entry of `zeta2s`).
    pub problem: RandomQuadraticsSpec,
    /// Heterogeneity levels ζ².
    pub zeta2s: Vec<f64>,
    /// Learning-rate grid tried for every method.
    pub lrs: Vec<f64>,
    /// Target suboptimality f(x̄) − f(x*).
    pub target: f64,
    /// Step budget per run.
    pub max_steps: u64,
    /// The methods (table rows).
    pub methods: Vec<StudyMethod>,
}

impl Default for HeterogeneityStudy {
    fn default() -> Self {
        HeterogeneityStudy {
            problem: RandomQuadraticsSpec {
                agents: 32,
                d: 10,
                smoothness: 1.0,
                mu: Some(0.5),
                zeta2: 0.0,
                r0: 10.0,
                seed: 1,
            },
            zeta2s: vec![0.0, 0.1, 10.0],
            lrs: vec![
                0.0125, 0.018, 0.025, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2, 0.28, 0.4, 0.56, 0.8, 1.1,
                1.6, 2.2, 3.2, 4.5,
            ],
            target: 1e-6,
            max_steps: 3000,
            methods: heterogeneity_methods(),
        }
    }
}

/// The default rows: RelaySGD on the chain (from the ring) and on double binary trees, D² and
/// gradient tracking on the ring with constant weight 1/3 − 0.01, D-PSGD on the MH ring; plain
/// SGD local steps, no momentum, no learning-rate correction.
pub fn heterogeneity_methods() -> Vec<StudyMethod> {
    let base = ToyRun::default();
    let m = |label: &str, algo, topology, mixing| StudyMethod {
        label: label.into(),
        run: ToyRun {
            algo,
            topology,
            mixing,
            ..base.clone()
        },
    };
    let w = MixingRule::Constant(0.3233);
    vec![
        m(
            "relaysgd (chain)",
            Algorithm::RelaySgd,
            Topology::Ring,
            MixingRule::MetropolisHastings,
        ),
        m(
            "relaysgd (double binary trees)",
            Algorithm::RelaySgd,
            Topology::DoubleBinaryTrees,
            MixingRule::MetropolisHastings,
        ),
        m("d2 (ring, w 0.3233)", Algorithm::D2, Topology::Ring, w),
        m("gt (ring, w 0.3233)", Algorithm::Gt, Topology::Ring, w),
        m(
            "dsgd (ring, MH)",
            Algorithm::Dsgd,
            Topology::Ring,
            MixingRule::MetropolisHastings,
        ),
    ]
}

/// The outcome of one run towards a target suboptimality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetRun {
    /// The first step t with f(x̄_t) − f(x*) ≤ target (None: not within the budget).
    pub steps: Option<u64>,
    /// The error after the last step run (at `steps` if reached).
    pub final_error: f64,
    /// Whether the run was stopped because the error blew up (> 1e6 × the initial one).
    pub diverged: bool,
}

/// Runs until f(x̄) − f(x*) ≤ `target` (checked after every step) has held from step k through
/// step max(2k, k + 50) (capped at `max_steps`), divergence, or `max_steps`; the reported step
/// is k, the first step of the final stretch below the target.
pub fn run_to_target(
    be: &mut dyn Backend,
    p: &ToyProblem,
    run: &ToyRun,
    target: f64,
    max_steps: u64,
) -> Result<TargetRun> {
    let (mut algo, mut obj) = build(be, p, run)?;
    let error = |be: &mut dyn Backend, algo: &dyn Algo| -> Result<f64> {
        let x = be.read_f32(algo.params())?;
        p.error(&x)
            .ok_or_else(|| Error::param("task", "run_to_target needs a quadratic task"))
    };
    let e0 = error(be, algo.as_ref())?;
    let mut e = e0;
    let mut reached = None;
    for t in 0..max_steps {
        algo.record_step(be, obj.as_mut(), t, run.lr)?;
        be.flush()?;
        e = error(be, algo.as_ref())?;
        if e <= target && reached.is_none() {
            reached = Some(t + 1);
        } else if e > target && reached.is_some() {
            // Left the target again: a transient dip of an unstable run, not convergence.
            reached = None;
        }
        if let Some(k) = reached {
            if t + 1 >= (2 * k).max(k + 50).min(max_steps) {
                return Ok(TargetRun {
                    steps: Some(k),
                    final_error: e,
                    diverged: false,
                });
            }
        }
        if !e.is_finite() || e > 1e6 * e0.max(1e-300) {
            return Ok(TargetRun {
                steps: None,
                final_error: e,
                diverged: true,
            });
        }
    }
    Ok(TargetRun {
        steps: reached,
        final_error: e,
        diverged: false,
    })
}

/// One cell of the heterogeneity table: the best learning rate of the grid for one method and ζ².
#[derive(Clone, Debug, PartialEq)]
pub struct HeterogeneityCell {
    /// Row label.
    pub method: String,
    /// Heterogeneity ζ² requested.
    pub zeta2: f64,
    /// The chosen learning rate: the fastest to reach the target, else the lowest final error.
    pub lr: f64,
    /// Its outcome.
    pub result: TargetRun,
}

/// Runs the study: for each ζ² builds the problem, then for each method tries every learning
/// rate and keeps the fastest to reach the target (ties: the smaller η), else the one with the
/// lowest final error.
pub fn heterogeneity_table(
    be: &mut dyn Backend,
    s: &HeterogeneityStudy,
) -> Result<Vec<HeterogeneityCell>> {
    let mut out = Vec::new();
    for &zeta2 in &s.zeta2s {
        let q = RandomQuadratics::new(&RandomQuadraticsSpec {
            zeta2,
            ..s.problem.clone()
        })?;
        let p = ToyProblem::random_quadratics(&q)?;
        for m in &s.methods {
            let mut best: Option<(f64, TargetRun)> = None;
            for &lr in &s.lrs {
                let run = ToyRun {
                    lr,
                    ..m.run.clone()
                };
                let r = run_to_target(be, &p, &run, s.target, s.max_steps)?;
                let better = match &best {
                    None => true,
                    Some((_, b)) => match (r.steps, b.steps) {
                        (Some(k), Some(kb)) => k < kb,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => {
                            !r.diverged && (b.diverged || r.final_error < b.final_error)
                        }
                    },
                };
                if better {
                    best = Some((lr, r));
                }
            }
            let (lr, result) = best.ok_or_else(|| Error::param("lrs", "empty grid"))?;
            out.push(HeterogeneityCell {
                method: m.label.clone(),
                zeta2,
                lr,
                result,
            });
        }
    }
    Ok(out)
}

/// The study's cells as a markdown table: one row per method, one column per ζ²; a cell reads
/// "steps (η)" or "not reached: final error (η)".
pub fn heterogeneity_markdown(s: &HeterogeneityStudy, cells: &[HeterogeneityCell]) -> String {
    let mut t = String::from("| method |");
    for z in &s.zeta2s {
        t += &format!(" ζ² = {z} |");
    }
    t += "\n|---|";
    t += &"---|".repeat(s.zeta2s.len());
    t.push('\n');
    for m in &s.methods {
        t += &format!("| {} |", m.label);
        for z in &s.zeta2s {
            let c = cells.iter().find(|c| c.method == m.label && c.zeta2 == *z);
            let cell = match c {
                None => "—".to_string(),
                Some(c) => match c.result.steps {
                    Some(k) => format!("{k} (η {})", c.lr),
                    None if c.result.diverged => "diverged for every η".to_string(),
                    None => format!(
                        "not reached in {}: error {:.2e} (η {})",
                        s.max_steps, c.result.final_error, c.lr
                    ),
                },
            };
            t += &format!(" {cell} |");
        }
        t.push('\n');
    }
    t
}
