//! MATCHA (ALGORITHMS.md §5.15): matching decompositions, activation probabilities under a
//! communication budget, the mixing weight α, shared activation flags and the realised
//! mixing matrix W = I − α Σ_{active j} L_j.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sparse::Csr;

use super::adjacency::Graph;
use super::error::{GraphError, Result};
use super::spectral::{laplacian, mat_mul, symmetric_eigen, symmetric_eigenvalues};

/// A matching: disjoint undirected edges (u, v).
pub type Matching = Vec<(usize, usize)>;

/// Iterations of projected super-gradient ascent for the activation probabilities.
pub const PROBABILITY_ITERATIONS: usize = 3000;

/// The named decomposed graphs of the MATCHA and AL-DSGD experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchaGraph {
    /// MATCHA graph 0: 8-node Erdős–Rényi, 5 matchings.
    Graph0,
    /// Graph 0 relabelled (AL-DSGD partner graph 1).
    Graph1,
    /// 16-node Erdős–Rényi (MATCHA graph 4, AL-DSGD graph 13), 8 matchings.
    ErdosRenyi16,
    /// 8-node ring, 2 matchings.
    Ring8,
}

/// The accepted decomposed-graph names.
pub const MATCHA_GRAPH_NAMES: &str = "0 (graph0), 1 (graph1), 4 (er16), ring8";

const GRAPH0: [&[(usize, usize)]; 5] = [
    &[(1, 5), (6, 7), (0, 4), (2, 3)],
    &[(1, 7), (3, 6)],
    &[(1, 0), (3, 7), (5, 6)],
    &[(1, 2), (7, 0)],
    &[(3, 1)],
];

const GRAPH1: [&[(usize, usize)]; 5] = [
    &[(4, 6), (5, 2), (3, 1), (7, 0)],
    &[(4, 2), (0, 5)],
    &[(4, 3), (0, 2), (6, 5)],
    &[(4, 7), (2, 3)],
    &[(0, 4)],
];

const ER16: [&[(usize, usize)]; 8] = [
    &[
        (2, 7),
        (3, 15),
        (13, 14),
        (8, 9),
        (1, 5),
        (0, 10),
        (6, 12),
        (4, 11),
    ],
    &[(12, 11), (5, 6), (14, 1), (9, 10), (15, 2), (8, 13)],
    &[(12, 5), (11, 6), (1, 8), (9, 3), (2, 10)],
    &[(12, 14), (11, 9), (5, 15), (0, 6), (1, 7)],
    &[(12, 8), (5, 2), (11, 14), (1, 6)],
    &[(12, 15), (13, 11), (10, 5), (3, 14)],
    &[(12, 9)],
    &[(0, 12)],
];

const RING8: [&[(usize, usize)]; 2] = [
    &[(0, 1), (2, 3), (4, 5), (6, 7)],
    &[(0, 7), (2, 1), (4, 3), (6, 5)],
];

impl MatchaGraph {
    /// The graph for a MATCHA graph id: 0, 1 or 4 (the 16-node Erdős–Rényi graph).
    pub fn from_id(id: usize) -> Result<MatchaGraph> {
        match id {
            0 => Ok(MatchaGraph::Graph0),
            1 => Ok(MatchaGraph::Graph1),
            4 => Ok(MatchaGraph::ErdosRenyi16),
            _ => Err(GraphError::UnknownName {
                kind: "MATCHA graph id",
                value: id.to_string(),
                accepted: MATCHA_GRAPH_NAMES.to_string(),
            }),
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        match self {
            MatchaGraph::ErdosRenyi16 => 16,
            _ => 8,
        }
    }

    fn table(&self) -> &'static [&'static [(usize, usize)]] {
        match self {
            MatchaGraph::Graph0 => &GRAPH0,
            MatchaGraph::Graph1 => &GRAPH1,
            MatchaGraph::ErdosRenyi16 => &ER16,
            MatchaGraph::Ring8 => &RING8,
        }
    }

    /// The graph and its matchings (in index order, edges as listed in ALGORITHMS.md).
    pub fn build(&self) -> Result<(Graph, Vec<Matching>)> {
        let matchings: Vec<Matching> = self.table().iter().map(|m| m.to_vec()).collect();
        let g = graph_from_matchings(self.n(), &matchings)?;
        Ok((g, matchings))
    }
}

/// The graph and matchings of a named MATCHA decomposition.
pub fn matcha_graph(which: MatchaGraph) -> Result<(Graph, Vec<Matching>)> {
    which.build()
}

impl fmt::Display for MatchaGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchaGraph::Graph0 => "graph0",
            MatchaGraph::Graph1 => "graph1",
            MatchaGraph::ErdosRenyi16 => "er16",
            MatchaGraph::Ring8 => "ring8",
        })
    }
}

impl FromStr for MatchaGraph {
    type Err = GraphError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" | "graph0" => Ok(MatchaGraph::Graph0),
            "1" | "graph1" => Ok(MatchaGraph::Graph1),
            "4" | "er16" => Ok(MatchaGraph::ErdosRenyi16),
            "ring8" => Ok(MatchaGraph::Ring8),
            _ => Err(GraphError::UnknownName {
                kind: "MATCHA graph",
                value: s.to_string(),
                accepted: MATCHA_GRAPH_NAMES.to_string(),
            }),
        }
    }
}

string_serde!(MatchaGraph);

/// Checks that each matching is a matching on 0..n−1 and no edge is in two matchings.
pub fn check_matchings(n: usize, matchings: &[Matching]) -> Result<()> {
    let mut owner: std::collections::HashMap<(usize, usize), usize> =
        std::collections::HashMap::new();
    for (j, m) in matchings.iter().enumerate() {
        let mut used = vec![false; n];
        for &(u, v) in m {
            for node in [u, v] {
                if node >= n {
                    return Err(GraphError::NodeOutOfRange { node, n });
                }
            }
            if u == v {
                return Err(GraphError::SelfLoop { node: u });
            }
            for node in [u, v] {
                if used[node] {
                    return Err(GraphError::NotAMatching { matching: j, node });
                }
                used[node] = true;
            }
            if let Some(first) = owner.insert((u.min(v), u.max(v)), j) {
                return Err(GraphError::EdgeInTwoMatchings {
                    u: u.min(v),
                    v: u.max(v),
                    first,
                    second: j,
                });
            }
        }
    }
    Ok(())
}

/// The union graph of valid matchings on n nodes.
pub fn graph_from_matchings(n: usize, matchings: &[Matching]) -> Result<Graph> {
    check_matchings(n, matchings)?;
    let edges: Vec<(usize, usize)> = matchings.iter().flatten().copied().collect();
    Graph::from_edges(n, &edges)
}

/// Checks that `matchings` decompose `g` exactly: valid matchings, edges of g only, all covered.
pub fn check_decomposition(g: &Graph, matchings: &[Matching]) -> Result<()> {
    check_matchings(g.n(), matchings)?;
    for (j, m) in matchings.iter().enumerate() {
        if let Some(&(u, v)) = m.iter().find(|&&(u, v)| !g.has_edge(u, v)) {
            return Err(GraphError::EdgeNotInGraph { matching: j, u, v });
        }
    }
    let covered = graph_from_matchings(g.n(), matchings)?;
    match g
        .edges()
        .into_iter()
        .find(|&(u, v)| !covered.has_edge(u, v))
    {
        Some((u, v)) => Err(GraphError::EdgeNotCovered { u, v }),
        None => Ok(()),
    }
}

/// Greedy matching decomposition of the original MATCHA code (`decomposition`): each round
/// scans nodes by remaining degree (descending, ties reversed as in Python's sort-then-reverse)
/// and matches each free node to its first free neighbour later in that order.
pub fn greedy_matchings(g: &Graph) -> Vec<Matching> {
    let n = g.n();
    let mut remaining: Vec<Vec<bool>> = vec![vec![false; n]; n];
    for (u, v) in g.edges() {
        remaining[u][v] = true;
        remaining[v][u] = true;
    }
    let mut order: Vec<(usize, usize)> = (0..n).map(|i| (i, g.degree(i))).collect();
    let resort = |order: &mut Vec<(usize, usize)>| {
        order.sort_by_key(|&(_, d)| d);
        order.reverse();
    };
    resort(&mut order);
    let mut active: Vec<bool> = (0..n).map(|i| g.degree(i) > 0).collect();
    let mut out = Vec::new();
    while active.iter().any(|&a| a) {
        let mut matching = Vec::new();
        for i in 0..n {
            let node1 = order[i].0;
            if !active[node1] {
                continue;
            }
            for j in i + 1..n {
                let node2 = order[j].0;
                if active[node2] && remaining[node1][node2] {
                    matching.push((node1, node2));
                    order[i].1 -= 1;
                    order[j].1 -= 1;
                    remaining[node1][node2] = false;
                    remaining[node2][node1] = false;
                    active[node1] = false;
                    active[node2] = false;
                    break;
                }
            }
        }
        out.push(matching);
        for &(node, d) in &order {
            active[node] = d > 0;
        }
        resort(&mut order);
    }
    out
}

/// Dense Laplacian of one matching on n nodes (L_j² = 2L_j).
pub fn matching_laplacian(n: usize, m: &Matching) -> Vec<Vec<f64>> {
    let mut l = vec![vec![0.0; n]; n];
    for &(u, v) in m {
        if u < n && v < n {
            l[u][u] += 1.0;
            l[v][v] += 1.0;
            l[u][v] -= 1.0;
            l[v][u] -= 1.0;
        }
    }
    l
}

fn weighted_sum(n: usize, matchings: &[Matching], coef: impl Fn(usize) -> f64) -> Vec<Vec<f64>> {
    let mut l = vec![vec![0.0; n]; n];
    for (j, m) in matchings.iter().enumerate() {
        let c = coef(j);
        if c == 0.0 {
            continue;
        }
        for &(u, v) in m {
            l[u][u] += c;
            l[v][v] += c;
            l[u][v] -= c;
            l[v][u] -= c;
        }
    }
    l
}

fn check_probabilities(matchings: &[Matching], p: &[f64]) -> Result<()> {
    if p.len() != matchings.len() {
        return Err(GraphError::SizeMismatch {
            what: "activation probabilities vs matchings",
            expected: matchings.len(),
            got: p.len(),
        });
    }
    if let Some(&bad) = p
        .iter()
        .find(|&&x| !(x.is_finite() && (0.0..=1.0).contains(&x)))
    {
        return Err(GraphError::InvalidParameter {
            name: "activation probability",
            value: bad,
            reason: "must lie in [0, 1]",
        });
    }
    Ok(())
}

/// Expected Laplacian L̄ = Σ_j p_j L_j.
pub fn expected_laplacian(n: usize, matchings: &[Matching], p: &[f64]) -> Result<Vec<Vec<f64>>> {
    check_matchings(n, matchings)?;
    check_probabilities(matchings, p)?;
    Ok(weighted_sum(n, matchings, |j| p[j]))
}

/// λ₂ of a Laplacian (second smallest eigenvalue; 0 for n < 2).
fn lambda2(l: &[Vec<f64>]) -> Result<f64> {
    Ok(symmetric_eigenvalues(l)?.get(1).copied().unwrap_or(0.0))
}

/// Euclidean projection onto {Σ p ≤ total, 0 ≤ p ≤ 1}: clip(p − θ) with the smallest θ ≥ 0,
/// found by bisection on the shift.
fn project(p: &[f64], total: f64) -> Vec<f64> {
    let clip =
        |theta: f64| -> Vec<f64> { p.iter().map(|&x| (x - theta).clamp(0.0, 1.0)).collect() };
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let direct = clip(0.0);
    if sum(&direct) <= total {
        return direct;
    }
    let (mut lo, mut hi) = (0.0, p.iter().copied().fold(0.0f64, f64::max));
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if sum(&clip(mid)) > total {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    clip(hi)
}

/// Activation probabilities p = argmax λ₂(Σ_j p_j L_j) s.t. Σ_j p_j ≤ M·C_b, 0 ≤ p_j ≤ 1, by
/// projected super-gradient ascent (∂λ₂/∂p_j = Σ_{(a,b)∈E_j} (f_a − f_b)², f the Fiedler vector).
pub fn activation_probabilities(n: usize, matchings: &[Matching], budget: f64) -> Result<Vec<f64>> {
    check_matchings(n, matchings)?;
    if !(budget.is_finite() && budget > 0.0 && budget <= 1.0) {
        return Err(GraphError::InvalidParameter {
            name: "communication budget C_b",
            value: budget,
            reason: "must lie in (0, 1]",
        });
    }
    let m = matchings.len();
    if m == 0 {
        return Err(GraphError::TooFewMatchings {
            what: "MATCHA",
            needed: 1,
            got: 0,
        });
    }
    let total = m as f64 * budget;
    if total >= m as f64 - 1e-12 {
        return Ok(vec![1.0; m]);
    }
    let mut p = project(&vec![budget; m], total);
    let mut best = p.clone();
    let mut best_val = f64::NEG_INFINITY;
    for k in 0..PROBABILITY_ITERATIONS {
        let l = weighted_sum(n, matchings, |j| p[j]);
        let eig = symmetric_eigen(&l)?;
        let val = eig.values.get(1).copied().unwrap_or(0.0);
        if val > best_val {
            best_val = val;
            best = p.clone();
        }
        let Some(f) = eig.vectors.get(1) else {
            break;
        };
        let grad: Vec<f64> = matchings
            .iter()
            .map(|mj| mj.iter().map(|&(a, b)| (f[a] - f[b]).powi(2)).sum())
            .collect();
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        let step = 0.5 / ((k + 1) as f64).sqrt() / norm;
        let next: Vec<f64> = p.iter().zip(&grad).map(|(x, g)| x + step * g).collect();
        p = project(&next, total);
    }
    Ok(best)
}

/// ρ(a) = λ_max(I − J − 2aL̄ + a²(L̄² + 2V)), V = Σ_j p_j(1 − p_j)L_j: the spectral norm of
/// `E[WᵀW] − J` for W = I − a Σ_j B_j L_j, B_j ~ Bernoulli(p_j).
pub fn rho(n: usize, matchings: &[Matching], p: &[f64], a: f64) -> Result<f64> {
    let lbar = expected_laplacian(n, matchings, p)?;
    let var = weighted_sum(n, matchings, |j| p[j] * (1.0 - p[j]));
    rho_from(&lbar, &mat_mul(&lbar, &lbar), &var, a)
}

fn rho_from(lbar: &[Vec<f64>], lbar2: &[Vec<f64>], var: &[Vec<f64>], a: f64) -> Result<f64> {
    let n = lbar.len();
    let inv_n = 1.0 / n as f64;
    let m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let id = if i == j { 1.0 } else { 0.0 };
                    id - inv_n - 2.0 * a * lbar[i][j] + a * a * (lbar2[i][j] + 2.0 * var[i][j])
                })
                .collect()
        })
        .collect();
    Ok(symmetric_eigenvalues(&m)?.last().copied().unwrap_or(0.0))
}

/// α = argmin_a ρ(a) by ternary search (ρ is convex); returns (α, ρ(α)).
pub fn optimal_alpha(n: usize, matchings: &[Matching], p: &[f64]) -> Result<(f64, f64)> {
    let lbar = expected_laplacian(n, matchings, p)?;
    if lbar.iter().flatten().all(|&x| x == 0.0) {
        return Err(GraphError::NoActiveEdges);
    }
    let var = weighted_sum(n, matchings, |j| p[j] * (1.0 - p[j]));
    let lbar2 = mat_mul(&lbar, &lbar);
    let f = |a: f64| rho_from(&lbar, &lbar2, &var, a);
    // Bracket: ρ(0) = 1 and ρ grows like a², so double until ρ(hi) ≥ 1.
    let mut hi = 1.0;
    for _ in 0..60 {
        if f(hi)? >= 1.0 {
            break;
        }
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let m1 = lo + (hi - lo) / 3.0;
        let m2 = hi - (hi - lo) / 3.0;
        if f(m1)? <= f(m2)? {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    let a = 0.5 * (lo + hi);
    Ok((a, f(a)?))
}

/// FixedProcessor weight α_fix = 2/(λ₂(L) + λ_max(L)) of the full Laplacian of `g`.
pub fn alpha_fix(g: &Graph) -> Result<f64> {
    if g.edge_count() == 0 {
        return Err(GraphError::NoActiveEdges);
    }
    let vals = symmetric_eigenvalues(&laplacian(g))?;
    let l2 = vals.get(1).copied().unwrap_or(0.0);
    let lmax = vals.last().copied().unwrap_or(0.0);
    Ok(2.0 / (l2 + lmax))
}

/// Flags B_j^t ~ Bernoulli(p_j): one uniform per matching from a ChaCha8 stream seeded by
/// `seed` on stream `t`, so every agent computes the same flags.
pub fn random_flags(seed: u64, t: u64, p: &[f64]) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(t);
    p.iter().map(|&pj| rng.random::<f64>() < pj).collect()
}

/// FixedProcessor code-mode flags: only matching 1 at even, only matching 0 at odd `counter`.
pub fn fixed_processor_flags(num_matchings: usize, counter: u64) -> Result<Vec<bool>> {
    if num_matchings < 2 {
        return Err(GraphError::TooFewMatchings {
            what: "FixedProcessor code mode",
            needed: 2,
            got: num_matchings,
        });
    }
    Ok(fixed_flags(num_matchings, counter))
}

/// Code-mode flags without the matching-count check: matching 1 at even, 0 at odd counters.
fn fixed_flags(num_matchings: usize, counter: u64) -> Vec<bool> {
    let active = usize::from(counter.is_multiple_of(2));
    (0..num_matchings).map(|j| j == active).collect()
}

/// How the activation flags of a `Matcha` schedule are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagMode {
    /// Independent Bernoulli(p_j) flags from the shared seeded stream.
    Random,
    /// FixedProcessor code mode: matching 1 at even, matching 0 at odd counters.
    FixedProcessor,
    /// Paper-mode D-PSGD: every matching every iteration.
    AllActive,
}

/// A MATCHA communication schedule: matchings, activation probabilities, mixing weight α and
/// the flag mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Matcha {
    n: usize,
    matchings: Vec<Matching>,
    probabilities: Vec<f64>,
    alpha: f64,
    mode: FlagMode,
}

impl Matcha {
    /// MATCHA with budget C_b: optimised p, then α = argmin ρ.
    pub fn new(n: usize, matchings: Vec<Matching>, budget: f64) -> Result<Matcha> {
        let p = activation_probabilities(n, &matchings, budget)?;
        Matcha::with_probabilities(n, matchings, p)
    }

    /// MATCHA with given (e.g. precomputed) probabilities; α = argmin ρ.
    pub fn with_probabilities(n: usize, matchings: Vec<Matching>, p: Vec<f64>) -> Result<Matcha> {
        let (alpha, _) = optimal_alpha(n, &matchings, &p)?;
        Ok(Matcha {
            n,
            matchings,
            probabilities: p,
            alpha,
            mode: FlagMode::Random,
        })
    }

    /// FixedProcessor code mode with α_fix; `probabilities` are the long-run activation
    /// frequencies (½ for matchings 0 and 1, 0 otherwise).
    pub fn fixed_processor(n: usize, matchings: Vec<Matching>) -> Result<Matcha> {
        let g = graph_from_matchings(n, &matchings)?;
        fixed_processor_flags(matchings.len(), 0)?;
        let alpha = alpha_fix(&g)?;
        let probabilities = (0..matchings.len())
            .map(|j| if j < 2 { 0.5 } else { 0.0 })
            .collect();
        Ok(Matcha {
            n,
            matchings,
            probabilities,
            alpha,
            mode: FlagMode::FixedProcessor,
        })
    }

    /// Paper-mode D-PSGD: all matchings active every iteration with α_fix.
    pub fn all_active(n: usize, matchings: Vec<Matching>) -> Result<Matcha> {
        let g = graph_from_matchings(n, &matchings)?;
        let alpha = alpha_fix(&g)?;
        let probabilities = vec![1.0; matchings.len()];
        Ok(Matcha {
            n,
            matchings,
            probabilities,
            alpha,
            mode: FlagMode::AllActive,
        })
    }

    /// Number of agents.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The matchings, in index order.
    pub fn matchings(&self) -> &[Matching] {
        &self.matchings
    }

    /// Activation probabilities p_j.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// Mixing weight α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Flag mode.
    pub fn mode(&self) -> FlagMode {
        self.mode
    }

    /// Expected Laplacian L̄ = Σ_j p_j L_j.
    pub fn expected_laplacian(&self) -> Vec<Vec<f64>> {
        weighted_sum(self.n, &self.matchings, |j| self.probabilities[j])
    }

    /// λ₂(L̄), the algebraic connectivity of the expected graph.
    pub fn lambda2(&self) -> Result<f64> {
        lambda2(&self.expected_laplacian())
    }

    /// ρ(α) = `λ_max(E[WᵀW] − J)` for independent Bernoulli(p) flags.
    pub fn rho(&self) -> Result<f64> {
        rho(self.n, &self.matchings, &self.probabilities, self.alpha)
    }

    /// Flags of iteration (or flag counter) `t`, identical on every agent for one `seed`.
    pub fn flags(&self, seed: u64, t: u64) -> Vec<bool> {
        match self.mode {
            FlagMode::Random => random_flags(seed, t, &self.probabilities),
            FlagMode::FixedProcessor => fixed_flags(self.matchings.len(), t),
            FlagMode::AllActive => vec![true; self.matchings.len()],
        }
    }

    /// Active partners of agent `i` under `flags`, in matching order.
    pub fn active_partners(&self, flags: &[bool], i: usize) -> Vec<usize> {
        self.matchings
            .iter()
            .zip(flags)
            .filter(|(_, &on)| on)
            .filter_map(|(m, _)| {
                m.iter().find_map(|&(u, v)| {
                    if u == i {
                        Some(v)
                    } else if v == i {
                        Some(u)
                    } else {
                        None
                    }
                })
            })
            .collect()
    }

    /// Realised mixing W = I − α Σ_{active j} L_j: self weight 1 − d_i α (d_i = active degree),
    /// α per active partner, rows sorted by column; the identity if nothing is active.
    pub fn mixing(&self, flags: &[bool]) -> Result<Csr> {
        if flags.len() != self.matchings.len() {
            return Err(GraphError::SizeMismatch {
                what: "activation flags vs matchings",
                expected: self.matchings.len(),
                got: flags.len(),
            });
        }
        let rows: Vec<Vec<(usize, f64)>> = (0..self.n)
            .map(|i| {
                let partners = self.active_partners(flags, i);
                let mut row: Vec<(usize, f64)> =
                    partners.iter().map(|&k| (k, self.alpha)).collect();
                row.push((i, 1.0 - partners.len() as f64 * self.alpha));
                row.sort_by_key(|&(c, _)| c);
                row
            })
            .collect();
        Ok(Csr::from_rows(self.n, &rows))
    }

    /// `E[W] = I − α L̄` as CSR (rows sorted, zero entries dropped except the diagonal).
    pub fn expected_mixing(&self) -> Csr {
        let l = self.expected_laplacian();
        let rows: Vec<Vec<(usize, f64)>> = l
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .enumerate()
                    .filter(|&(j, &x)| j == i || x != 0.0)
                    .map(|(j, &x)| (j, if j == i { 1.0 } else { 0.0 } - self.alpha * x))
                    .collect()
            })
            .collect();
        Csr::from_rows(self.n, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mixing::{
        check_doubly_stochastic, check_rows_sorted_with_self, check_symmetric,
    };
    use super::*;

    fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
        assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
    }

    #[test]
    fn named_graphs_are_valid_decompositions() {
        let (g0, m0) = matcha_graph(MatchaGraph::Graph0).unwrap();
        assert_eq!(g0.degrees(), vec![3, 5, 2, 4, 1, 2, 3, 4]);
        assert_eq!(g0.edge_count(), 12);
        check_decomposition(&g0, &m0).unwrap();
        let (g1, m1) = matcha_graph(MatchaGraph::Graph1).unwrap();
        check_decomposition(&g1, &m1).unwrap();
        // Graph 1 is graph 0 relabelled 0→3, 1→4, 2→7, 3→0, 4→1, 5→6, 6→5, 7→2.
        let perm = [3, 4, 7, 0, 1, 6, 5, 2];
        assert_eq!(g0.relabel(&perm).unwrap(), g1);
        for (a, b) in m0.iter().zip(&m1) {
            let mut ra: Vec<_> = a
                .iter()
                .map(|&(u, v)| (perm[u].min(perm[v]), perm[u].max(perm[v])))
                .collect();
            let mut rb: Vec<_> = b.iter().map(|&(u, v)| (u.min(v), u.max(v))).collect();
            ra.sort_unstable();
            rb.sort_unstable();
            assert_eq!(ra, rb);
        }
        let (g16, m16) = matcha_graph(MatchaGraph::ErdosRenyi16).unwrap();
        assert_eq!(g16.n(), 16);
        assert_eq!(m16.len(), 8);
        assert_eq!(g16.edge_count(), 34);
        assert!(g16.is_connected());
        let (r8, mr) = matcha_graph(MatchaGraph::Ring8).unwrap();
        assert_eq!(r8, Graph::ring(8).unwrap());
        check_decomposition(&r8, &mr).unwrap();
        assert_eq!(MatchaGraph::from_id(4), Ok(MatchaGraph::ErdosRenyi16));
        assert!(MatchaGraph::from_id(2).is_err());
        assert_eq!("ring8".parse(), Ok(MatchaGraph::Ring8));
        assert_eq!("graph1".parse(), Ok(MatchaGraph::Graph1));
        assert!("graph7".parse::<MatchaGraph>().is_err());
        // Code mode on graph 0: matchings 0 ∪ 1 isolate the pair {0, 4}.
        let union = graph_from_matchings(8, &m0[..2]).unwrap();
        assert_eq!(union.neighbors(0), &[4]);
        assert_eq!(union.neighbors(4), &[0]);
    }

    #[test]
    fn decomposition_errors() {
        assert_eq!(
            check_matchings(4, &[vec![(0, 1), (1, 2)]]),
            Err(GraphError::NotAMatching {
                matching: 0,
                node: 1
            })
        );
        assert_eq!(
            check_matchings(4, &[vec![(0, 1)], vec![(1, 0)]]),
            Err(GraphError::EdgeInTwoMatchings {
                u: 0,
                v: 1,
                first: 0,
                second: 1
            })
        );
        assert!(check_matchings(3, &[vec![(0, 3)]]).is_err());
        let g = Graph::ring(4).unwrap();
        assert_eq!(
            check_decomposition(&g, &[vec![(0, 1), (2, 3)]]),
            Err(GraphError::EdgeNotCovered { u: 0, v: 3 })
        );
        assert_eq!(
            check_decomposition(&g, &[vec![(0, 2)]]),
            Err(GraphError::EdgeNotInGraph {
                matching: 0,
                u: 0,
                v: 2
            })
        );
    }

    #[test]
    fn greedy_decomposition_is_valid() {
        for g in [
            Graph::ring(8).unwrap(),
            Graph::torus(4).unwrap(),
            Graph::social(32).unwrap(),
            Graph::erdos_renyi(20, 0.3, 1).unwrap(),
            Graph::complete(7).unwrap(),
        ] {
            let ms = greedy_matchings(&g);
            check_decomposition(&g, &ms).unwrap();
            assert!(ms.len() >= g.max_degree());
            assert!(ms.len() < 2 * g.max_degree());
            assert!(ms.iter().all(|m| !m.is_empty()));
        }
        // Ring: first round scans 3, 2, 1, 0 (ties reversed), the second 0, 1, 2, 3.
        assert_eq!(
            greedy_matchings(&Graph::ring(4).unwrap()),
            vec![vec![(3, 2), (1, 0)], vec![(0, 3), (1, 2)]]
        );
        assert!(greedy_matchings(&Graph::from_edges(3, &[]).unwrap()).is_empty());
    }

    #[test]
    fn matching_laplacians_square_to_twice_themselves() {
        let (_, ms) = matcha_graph(MatchaGraph::Graph0).unwrap();
        let mut sum = vec![vec![0.0; 8]; 8];
        for m in &ms {
            let l = matching_laplacian(8, m);
            let l2 = mat_mul(&l, &l);
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(l2[i][j], 2.0 * l[i][j]);
                    sum[i][j] += l[i][j];
                }
            }
        }
        let (g0, _) = matcha_graph(MatchaGraph::Graph0).unwrap();
        assert_eq!(sum, laplacian(&g0));
    }

    #[test]
    fn projection_is_feasible_and_idempotent() {
        let p = project(&[0.9, 1.4, -0.2, 0.6], 1.5);
        assert!((p.iter().sum::<f64>() - 1.5).abs() < 1e-9);
        assert!(p.iter().all(|&x| (0.0..=1.0).contains(&x)));
        // Shift θ: (0.9-θ) + (1.4-θ) + (0.6-θ) = 1.5 gives θ = 1.4/3 (no entry capped).
        assert_close(p[0], 0.9 - 1.4 / 3.0, 1e-9, "p0");
        assert_close(p[1], 1.4 - 1.4 / 3.0, 1e-9, "p1");
        assert_close(p[3], 0.6 - 1.4 / 3.0, 1e-9, "p3");
        assert_eq!(p[2], 0.0);
        assert_eq!(project(&[0.2, 0.3], 1.0), vec![0.2, 0.3]);
    }

    /// Table tolerance: the spec rounds p to 4 and α, ρ to 5 decimals; 5e-4 leaves headroom.
    const TABLE_TOL: f64 = 5e-4;

    fn check_row(
        which: MatchaGraph,
        budget: f64,
        p_want: &[f64],
        l2: f64,
        alpha: f64,
        rho_want: f64,
    ) {
        let (_, ms) = which.build().unwrap();
        let m = Matcha::new(which.n(), ms, budget).unwrap();
        for (j, (&got, &want)) in m.probabilities().iter().zip(p_want).enumerate() {
            assert_close(
                got,
                want,
                TABLE_TOL,
                &format!("{which} C_b={budget} p[{j}]"),
            );
        }
        assert_close(
            m.lambda2().unwrap(),
            l2,
            TABLE_TOL,
            &format!("{which} C_b={budget} lambda2"),
        );
        assert_close(
            m.alpha(),
            alpha,
            TABLE_TOL,
            &format!("{which} C_b={budget} alpha"),
        );
        assert_close(
            m.rho().unwrap(),
            rho_want,
            TABLE_TOL,
            &format!("{which} C_b={budget} rho"),
        );
    }

    #[test]
    fn graph0_constants_reproduce() {
        use MatchaGraph::Graph0;
        check_row(
            Graph0,
            0.1,
            &[0.1968, 0.0, 0.1516, 0.1516, 0.0],
            0.1122,
            0.56207,
            0.93679,
        );
        check_row(
            Graph0,
            0.3,
            &[0.5902, 0.0, 0.4549, 0.4549, 0.0],
            0.3367,
            0.51480,
            0.77652,
        );
        check_row(
            Graph0,
            0.5,
            &[0.9837, 0.0, 0.7581, 0.7581, 0.0],
            0.5612,
            0.39643,
            0.64398,
        );
        check_row(
            Graph0,
            0.6,
            &[1.0, 0.0, 1.0, 1.0, 0.0],
            0.6571,
            0.36559,
            0.57727,
        );
        check_row(Graph0, 1.0, &[1.0; 5], 0.6700, 0.28571, 0.65378);
    }

    #[test]
    fn other_graph_constants_reproduce() {
        check_row(
            MatchaGraph::Graph1,
            0.5,
            &[0.9837, 0.0, 0.7581, 0.7581, 0.0],
            0.5612,
            0.39643,
            0.64398,
        );
        check_row(
            MatchaGraph::Ring8,
            0.5,
            &[0.5, 0.5],
            0.2929,
            0.60737,
            0.78391,
        );
        check_row(
            MatchaGraph::ErdosRenyi16,
            0.5,
            &[1.0, 0.7972, 0.8201, 0.9471, 0.2223, 0.2133, 0.0, 0.0],
            0.6678,
            0.28310,
            0.67555,
        );
    }

    #[test]
    fn alpha_fix_values() {
        for (which, want) in [
            (MatchaGraph::Graph0, 0.285714),
            (MatchaGraph::Graph1, 0.285714),
            (MatchaGraph::Ring8, 0.436130),
            (MatchaGraph::ErdosRenyi16, 0.193069),
        ] {
            let (g, ms) = which.build().unwrap();
            assert_close(
                alpha_fix(&g).unwrap(),
                want,
                1e-6,
                &format!("{which} alpha_fix"),
            );
            let fixed = Matcha::fixed_processor(which.n(), ms).unwrap();
            assert_close(fixed.alpha(), want, 1e-6, "fixed alpha");
        }
        // Graph 0 Laplacian spectrum: 0 .670 1.614 2.411 3 4.589 5.386 6.330.
        let (g0, _) = matcha_graph(MatchaGraph::Graph0).unwrap();
        let eig = symmetric_eigenvalues(&laplacian(&g0)).unwrap();
        let want = [0.0, 0.670, 1.614, 2.411, 3.0, 4.589, 5.386, 6.330];
        for (g, w) in eig.iter().zip(want) {
            assert_close(*g, w, 1e-3, "graph0 Laplacian eigenvalue");
        }
        // Ring closed form: eigenvalues 2 - 2cos(2 pi k / 8), alpha_fix = 2 / (lambda2 + 4).
        let l2 = 2.0 - 2.0 * (std::f64::consts::PI / 4.0).cos();
        assert_close(0.436130, 2.0 / (l2 + 4.0), 1e-6, "ring closed form");
        assert_eq!(
            alpha_fix(&Graph::from_edges(2, &[]).unwrap()),
            Err(GraphError::NoActiveEdges)
        );
    }

    #[test]
    fn fixed_processor_and_all_active_flags() {
        assert_eq!(
            fixed_processor_flags(5, 0).unwrap(),
            vec![false, true, false, false, false]
        );
        assert_eq!(
            fixed_processor_flags(5, 7).unwrap(),
            vec![true, false, false, false, false]
        );
        assert!(fixed_processor_flags(1, 0).is_err());
        let (_, ms) = matcha_graph(MatchaGraph::Graph0).unwrap();
        let fixed = Matcha::fixed_processor(8, ms.clone()).unwrap();
        assert_eq!(fixed.mode(), FlagMode::FixedProcessor);
        assert_eq!(fixed.flags(99, 4), fixed_processor_flags(5, 4).unwrap());
        assert_eq!(fixed.flags(0, 3), fixed_processor_flags(5, 3).unwrap());
        // Odd counter: matching 0 only, so agent 0 talks to 4 with weight 2/7.
        let w = fixed.mixing(&fixed.flags(0, 1)).unwrap();
        let row: Vec<_> = w.row(0).collect();
        assert_eq!((row.len(), row[0].0, row[1].0), (2, 0, 4));
        assert_close(row[0].1, 5.0 / 7.0, 1e-12, "self weight");
        assert_close(row[1].1, 2.0 / 7.0, 1e-12, "partner weight");
        // Even counter: matching 1 only; agent 0 is idle.
        let w = fixed.mixing(&fixed.flags(0, 2)).unwrap();
        assert_eq!(w.row(0).collect::<Vec<_>>(), vec![(0, 1.0)]);
        let all = Matcha::all_active(8, ms).unwrap();
        assert_eq!(all.flags(5, 5), vec![true; 5]);
        let w = all.mixing(&all.flags(0, 0)).unwrap();
        assert_close(
            w.to_dense()[1][1],
            1.0 - 5.0 * 2.0 / 7.0,
            1e-12,
            "node 1 self weight",
        );
        assert!(Matcha::fixed_processor(8, vec![vec![(0, 1)]]).is_err());
    }

    #[test]
    fn random_flags_are_shared_and_have_the_right_rates() {
        let p = [0.9837, 0.0, 0.7581, 0.7581, 1.0];
        assert_eq!(random_flags(7, 123, &p), random_flags(7, 123, &p));
        let draws = 20_000u64;
        let mut counts = [0usize; 5];
        let mut differs = false;
        for t in 0..draws {
            let f = random_flags(7, t, &p);
            differs |= f != random_flags(8, t, &p);
            for (c, b) in counts.iter_mut().zip(&f) {
                *c += usize::from(*b);
            }
        }
        assert!(differs, "different seeds must give different streams");
        for (j, (&c, &pj)) in counts.iter().zip(&p).enumerate() {
            let rate = c as f64 / draws as f64;
            assert_close(rate, pj, 0.015, &format!("flag rate {j}"));
        }
        assert_eq!(counts[1], 0);
        assert_eq!(counts[4], draws as usize);
    }

    #[test]
    fn realised_mixing_preserves_the_mean_and_averages_to_i_minus_alpha_lbar() {
        let (_, ms) = matcha_graph(MatchaGraph::Graph0).unwrap();
        let m = Matcha::with_probabilities(8, ms, vec![0.9837, 0.0, 0.7581, 0.7581, 0.0]).unwrap();
        assert_close(m.alpha(), 0.39643, 1e-4, "alpha from loaded p");
        let x: Vec<f64> = (0..8).map(|i| ((i * 5) % 8) as f64 - 1.5).collect();
        let mean = x.iter().sum::<f64>() / 8.0;
        let mut expectation = vec![vec![0.0; 8]; 8];
        let p = m.probabilities().to_vec();
        for mask in 0..(1u32 << 5) {
            let flags: Vec<bool> = (0..5).map(|j| mask >> j & 1 == 1).collect();
            let w = m.mixing(&flags).unwrap();
            check_doubly_stochastic(&w, 1e-12).unwrap();
            check_symmetric(&w, 0.0).unwrap();
            check_rows_sorted_with_self(&w).unwrap();
            let y: Vec<f64> = (0..8)
                .map(|i| w.row(i).map(|(c, v)| v * x[c]).sum())
                .collect();
            assert_close(y.iter().sum::<f64>() / 8.0, mean, 1e-12, "mean");
            let prob: f64 = flags
                .iter()
                .zip(&p)
                .map(|(&b, &pj)| if b { pj } else { 1.0 - pj })
                .product();
            let d = w.to_dense();
            for i in 0..8 {
                for j in 0..8 {
                    expectation[i][j] += prob * d[i][j];
                }
            }
        }
        let lbar = m.expected_laplacian();
        let ew = m.expected_mixing().to_dense();
        for i in 0..8 {
            for j in 0..8 {
                let analytic = if i == j { 1.0 } else { 0.0 } - m.alpha() * lbar[i][j];
                assert_close(expectation[i][j], analytic, 1e-12, "E[W]");
                assert_close(ew[i][j], analytic, 1e-15, "expected_mixing");
            }
        }
        // No active matching: identity. Wrong flag count: error.
        assert_eq!(m.mixing(&[false; 5]).unwrap(), Csr::identity(8));
        assert!(matches!(
            m.mixing(&[true; 3]),
            Err(GraphError::SizeMismatch {
                expected: 5,
                got: 3,
                ..
            })
        ));
        assert_eq!(
            m.active_partners(&[true, false, true, true, false], 1),
            vec![5, 0, 2]
        );
    }

    #[test]
    fn rejects_bad_budgets_and_probabilities() {
        let (_, ms) = matcha_graph(MatchaGraph::Ring8).unwrap();
        for b in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                activation_probabilities(8, &ms, b),
                Err(GraphError::InvalidParameter { .. })
            ));
        }
        assert!(Matcha::with_probabilities(8, ms.clone(), vec![0.5]).is_err());
        assert!(Matcha::with_probabilities(8, ms.clone(), vec![0.5, 1.2]).is_err());
        assert_eq!(
            Matcha::with_probabilities(8, ms, vec![0.0, 0.0]),
            Err(GraphError::NoActiveEdges)
        );
        assert!(activation_probabilities(8, &[], 0.5).is_err());
    }
}
