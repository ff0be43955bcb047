//! The random-quadratics construction of RelaySGD App. B.4 (ALGORITHMS.md §8.1).

use super::*;

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
            let (u, sig, v) = svd(ai, d).ok_or_else(|| {
                Error::param("seed", "the SVD of a random matrix did not converge")
            })?;
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
        self.a
            .get(i)
            .and_then(|a| svd(a, self.d))
            .map_or(Vec::new(), |s| s.1)
    }
}
