//! The toy problems: quadratics with known minimisers and one-shot gradients.

use super::*;

/// RNG stream of the toy problems' construction (init point, random quadratics).
pub(super) const TOY_STREAM: u64 = 0x7059;

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
pub(super) fn eye(d: usize) -> Vec<f64> {
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
