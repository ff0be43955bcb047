//! Partitions of a dataset across n agents (ALGORITHMS.md §4): IID, Dirichlet(α) label skew
//! (QGM / RelaySGD rebalancing), NGM sorted-label shards and k-classes-per-agent.
//!
//! Every partitioner returns one index list per agent, never repeats an index, and is a pure
//! function of its arguments (randomness from `ChaCha8Rng::seed_from_u64(seed)`).

use std::collections::VecDeque;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use super::{DataError, Dataset};

/// Group size G of the Dirichlet partition: one chunk of data per G workers.
pub const DIRICHLET_GROUP_SIZE: usize = 10;
/// Maximum number of draws per chunk before the Dirichlet partition gives up with an error.
pub const DIRICHLET_MAX_TRIES: usize = 10_000;

/// How the Dirichlet partition re-slices the concatenated worker lists (§4.1 step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DirichletVariant {
    /// epfml/quasi-global-momentum: n slices of ⌊N/n⌋, remainder dropped.
    Qgm,
    /// epfml/relaysgd: NumPy `array_split`, the first N mod n parts one element longer.
    Relaysgd,
}

/// A partition scheme with its parameters; parses from `iid`, `dirichlet[:α]`,
/// `dirichlet-qgm[:α]`, `shards`, `classes[:k]` (`=` also separates the parameter).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Partition {
    /// Seeded shuffle, contiguous chunks of ⌊N/n⌋ ([`iid`]).
    Iid,
    /// Dirichlet(α) label skew ([`dirichlet`]).
    Dirichlet {
        /// Concentration α (small = skewed).
        alpha: f64,
        /// Rebalancing variant.
        variant: DirichletVariant,
    },
    /// NGM sorted-label shards ([`shards`]; unseeded).
    Shards,
    /// k distinct classes per agent ([`classes_per_agent`]).
    Classes {
        /// Classes per agent.
        k: usize,
    },
}

impl Partition {
    /// Default α when `dirichlet` is given without a value.
    pub const DEFAULT_ALPHA: f64 = 0.1;
    /// Default k when `classes` is given without a value.
    pub const DEFAULT_CLASSES: usize = 2;

    /// Partitions `ds` across `n_agents` agents.
    pub fn apply(
        &self,
        ds: &Dataset,
        n_agents: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, DataError> {
        self.apply_labels(ds.labels(), ds.n_classes(), n_agents, seed)
    }

    /// Partitions samples with the given labels (`< n_classes`) across `n_agents` agents.
    pub fn apply_labels(
        &self,
        labels: &[u32],
        n_classes: usize,
        n_agents: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, DataError> {
        match *self {
            Partition::Iid => iid(labels.len(), n_agents, seed),
            Partition::Dirichlet { alpha, variant } => {
                dirichlet(labels, n_classes, n_agents, alpha, variant, seed)
            }
            Partition::Shards => {
                check_labels(labels, n_classes)?;
                shards(labels, n_agents)
            }
            Partition::Classes { k } => classes_per_agent(labels, n_classes, n_agents, k, seed),
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Dirichlet {
                alpha,
                variant: DirichletVariant::Relaysgd,
            } => write!(f, "dirichlet:{alpha}"),
            Partition::Dirichlet {
                alpha,
                variant: DirichletVariant::Qgm,
            } => write!(f, "dirichlet-qgm:{alpha}"),
            Partition::Shards => write!(f, "shards"),
            Partition::Classes { k } => write!(f, "classes:{k}"),
        }
    }
}

impl FromStr for Partition {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || DataError::UnknownPartition {
            given: s.to_string(),
        };
        let lower = s.trim().to_ascii_lowercase();
        let (head, param) = match lower.split_once([':', '=']) {
            Some((h, p)) => (h.trim(), Some(p.trim())),
            None => (lower.as_str(), None),
        };
        let alpha = |p: Option<&str>| -> Result<f64, DataError> {
            let a = match p {
                None => Self::DEFAULT_ALPHA,
                Some(p) => p.parse::<f64>().map_err(|_| unknown())?,
            };
            if a.is_finite() && a > 0.0 {
                Ok(a)
            } else {
                Err(DataError::InvalidAlpha { alpha: a })
            }
        };
        match head {
            "iid" if param.is_none() => Ok(Partition::Iid),
            "shards" | "ngm" if param.is_none() => Ok(Partition::Shards),
            "dirichlet" | "dirichlet-relaysgd" | "dirichlet-relay" => Ok(Partition::Dirichlet {
                alpha: alpha(param)?,
                variant: DirichletVariant::Relaysgd,
            }),
            "dirichlet-qgm" => Ok(Partition::Dirichlet {
                alpha: alpha(param)?,
                variant: DirichletVariant::Qgm,
            }),
            "classes" => {
                let k = match param {
                    None => Self::DEFAULT_CLASSES,
                    Some(p) => p.parse::<usize>().map_err(|_| unknown())?,
                };
                Ok(Partition::Classes { k })
            }
            _ => Err(unknown()),
        }
    }
}

/// Checks `n_agents ≥ 1` and `n_agents ≤ n_samples`.
fn check_agents(n_samples: usize, n_agents: usize) -> Result<(), DataError> {
    if n_agents == 0 {
        return Err(DataError::NoAgents);
    }
    if n_agents > n_samples {
        return Err(DataError::TooManyAgents {
            n_agents,
            n_samples,
        });
    }
    Ok(())
}

/// Checks every label is `< n_classes`.
fn check_labels(labels: &[u32], n_classes: usize) -> Result<(), DataError> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= n_classes)
    {
        Some((index, &label)) => Err(DataError::LabelOutOfRange {
            file: "partition labels".into(),
            index,
            label,
            n_classes,
        }),
        None => Ok(()),
    }
}

/// Sizes of NumPy's `array_split(n, parts)`: the first `n mod parts` parts are one longer.
pub fn array_split_sizes(n: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return Vec::new();
    }
    let (q, r) = (n / parts, n % parts);
    (0..parts).map(|i| q + usize::from(i < r)).collect()
}

/// Cuts `z` into consecutive pieces of the given sizes (their sum must be `≤ z.len()`).
fn cut(z: &[usize], sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &s in sizes {
        out.push(z[start..start + s].to_vec());
        start += s;
    }
    out
}

/// IID partition: seeded shuffle of `0..n_samples`, contiguous chunks of ⌊N/n⌋, remainder
/// dropped.
pub fn iid(n_samples: usize, n_agents: usize, seed: u64) -> Result<Vec<Vec<usize>>, DataError> {
    check_agents(n_samples, n_agents)?;
    let mut perm: Vec<usize> = (0..n_samples).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(cut(&perm, &vec![n_samples / n_agents; n_agents]))
}

/// Draws `p ~ Dirichlet(α·1)` restricted to the `eligible` components (others get 0), i.e.
/// the §4.1 balance step "zero the full lists, renormalise", computed in log space.
///
/// Uses `X_j = G_j · U_j^{1/α}` with `G_j ~ Gamma(α+1)`, `U_j ~ U(0,1]` (so `X_j ~ Gamma(α)`),
/// which stays exact for tiny α where plain Gamma(α) draws underflow to 0.
fn dirichlet_balanced(
    rng: &mut ChaCha8Rng,
    gamma: &Gamma<f64>,
    alpha: f64,
    eligible: &[bool],
    p: &mut [f64],
) {
    let mut logs = vec![0.0f64; p.len()];
    for l in logs.iter_mut() {
        let g: f64 = gamma.sample(rng);
        let u = 1.0 - rng.random::<f64>();
        *l = g.ln() + u.ln() / alpha;
    }
    let any = eligible.iter().any(|&e| e);
    let ok = |j: usize| !any || eligible[j];
    let max = (0..p.len())
        .filter(|&j| ok(j))
        .map(|j| logs[j])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (j, pj) in p.iter_mut().enumerate() {
        *pj = if !ok(j) {
            0.0
        } else if logs[j] == max {
            1.0
        } else {
            (logs[j] - max).exp()
        };
        sum += *pj;
    }
    for pj in p.iter_mut() {
        *pj /= sum;
    }
}

/// Dirichlet(α) label-skew partition, exactly as ALGORITHMS.md §4.1.
///
/// Shuffle; split into ⌈n/10⌉ chunks (one per group of G = 10 workers); in each chunk of S
/// samples serving m workers, repeat until every list has ≥ ⌊0.5·S/m⌋ samples: for each class,
/// draw `p ~ Dirichlet(α·1_m)`, zero `p_j` for lists already holding ≥ S/m samples,
/// renormalise, cut the chunk's class indices at ⌊cumsum(p)·|I_c|⌋. Then re-slice the
/// concatenation of all lists per `variant`. Gives up after [`DIRICHLET_MAX_TRIES`] draws of a
/// chunk with [`DataError::DirichletNoConvergence`].
pub fn dirichlet(
    labels: &[u32],
    n_classes: usize,
    n_agents: usize,
    alpha: f64,
    variant: DirichletVariant,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    let n = labels.len();
    check_agents(n, n_agents)?;
    check_labels(labels, n_classes)?;
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(DataError::InvalidAlpha { alpha });
    }
    let gamma = Gamma::new(alpha + 1.0, 1.0).map_err(|_| DataError::InvalidAlpha { alpha })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // 1. Shuffle the (index, label) pairs.
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    // 2. K = ⌈n/G⌉ chunks of L = ⌊(G/n)·N⌋ rows, the last one taking the rest.
    let g = DIRICHLET_GROUP_SIZE;
    let n_chunks = n_agents.div_ceil(g);
    let chunk_len = ((g as u128 * n as u128) / n_agents as u128).min(n as u128) as usize;
    let mut z: Vec<usize> = Vec::with_capacity(n);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for k in 0..n_chunks {
        let start = (k * chunk_len).min(n);
        let end = if k + 1 == n_chunks {
            n
        } else {
            ((k + 1) * chunk_len).min(n)
        };
        let chunk = &perm[start..end];
        let s = chunk.len();
        let m = g.min(n_agents - k * g);
        for v in by_class.iter_mut() {
            v.clear();
        }
        for &i in chunk {
            by_class[labels[i] as usize].push(i);
        }
        // 3. Repeat until every list has at least ⌊0.5·S/m⌋ samples.
        let required = s / (2 * m);
        let mut best = 0;
        let mut p = vec![0.0f64; m];
        let mut eligible = vec![true; m];
        let mut tries = 0;
        let lists = loop {
            let mut lists: Vec<Vec<usize>> = vec![Vec::new(); m];
            for idx in &by_class {
                // Balance: only lists with fewer than S/m samples receive more.
                for (e, l) in eligible.iter_mut().zip(&lists) {
                    *e = l.len() * m < s;
                }
                dirichlet_balanced(&mut rng, &gamma, alpha, &eligible, &mut p);
                let len = idx.len();
                let mut prev = 0usize;
                let mut cum = 0.0f64;
                for (j, list) in lists.iter_mut().enumerate() {
                    let cut_at = if j + 1 == m {
                        len
                    } else {
                        cum += p[j];
                        ((cum * len as f64).floor() as usize).clamp(prev, len)
                    };
                    list.extend_from_slice(&idx[prev..cut_at]);
                    prev = cut_at;
                }
            }
            let min = lists.iter().map(Vec::len).min().unwrap_or(0);
            if min >= required {
                break lists;
            }
            best = best.max(min);
            tries += 1;
            if tries >= DIRICHLET_MAX_TRIES {
                return Err(DataError::DirichletNoConvergence {
                    alpha,
                    chunk: k,
                    chunk_size: s,
                    workers: m,
                    required,
                    best,
                    tries,
                });
            }
        };
        for l in lists {
            z.extend_from_slice(&l);
        }
    }
    // 4. Rebalance.
    let sizes = match variant {
        DirichletVariant::Qgm => vec![n / n_agents; n_agents],
        DirichletVariant::Relaysgd => array_split_sizes(n, n_agents),
    };
    Ok(cut(&z, &sizes))
}

/// NGM sorted-label shards, exactly as ALGORITHMS.md §4.2 (deterministic, no seed).
///
/// P = ⌊N/n⌋, L = indices stably sorted by label. Agent k takes `L[0:P]`; then if n > 10 and
/// k < 10 the next P indices move to the end (`L ← L[2P:] ++ L[P:2P]`), else `L ← L[P:]`.
/// With 10 balanced classes: n = 5 → classes {2k, 2k+1}; n = 10 → one class each; n = 20 →
/// agents i and i+10 share class i.
pub fn shards(labels: &[u32], n_agents: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let n = labels.len();
    check_agents(n, n_agents)?;
    let p = n / n_agents; // ≥ 1 since n_agents ≤ n
    let mut sorted: Vec<usize> = (0..n).collect();
    sorted.sort_by_key(|&i| labels[i]); // stable: ties keep index order
    let mut l: VecDeque<usize> = sorted.into();
    let mut out = Vec::with_capacity(n_agents);
    for k in 0..n_agents {
        // At step k at least N − kP ≥ P indices remain (rotations never drop any).
        out.push(l.drain(..p).collect::<Vec<_>>());
        if n_agents > 10 && k < 10 {
            for _ in 0..p.min(l.len()) {
                if let Some(x) = l.pop_front() {
                    l.push_back(x);
                }
            }
        }
    }
    Ok(out)
}

/// Pathological split: every agent gets samples of exactly `k` distinct classes, all agents the
/// same number of samples.
///
/// Construction: the present classes (count > 0) are put in a seeded random order `o`; agent i
/// is given the k consecutive classes `o[(i·k + j) mod C']`, j < k (C' = number of present
/// classes, so the k classes are distinct and every class serves ⌊nk/C'⌋ or ⌈nk/C'⌉ agents).
/// Each class's indices are shuffled and cut into pieces of q = min over used classes of
/// ⌊count_c / slots_c⌋ samples, one per (agent, class) slot; every agent gets k·q samples and
/// leftovers are dropped (no index is used twice). Errors if k = 0, k > n_classes, k exceeds
/// the number of present classes, or some class has fewer samples than the agents needing it.
pub fn classes_per_agent(
    labels: &[u32],
    n_classes: usize,
    n_agents: usize,
    k: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    check_agents(labels.len(), n_agents)?;
    check_labels(labels, n_classes)?;
    if k == 0 || k > n_classes {
        return Err(DataError::ImpossiblePartition(format!(
            "classes per agent k = {k} must be between 1 and the number of classes {n_classes}"
        )));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut order: Vec<usize> = (0..n_classes)
        .filter(|&c| !by_class[c].is_empty())
        .collect();
    let present = order.len();
    if k > present {
        return Err(DataError::ImpossiblePartition(format!(
            "classes per agent k = {k} but only {present} classes have samples"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    let class_of = |i: usize, j: usize| order[(i * k + j) % present];
    let mut slots = vec![0usize; n_classes];
    for i in 0..n_agents {
        for j in 0..k {
            slots[class_of(i, j)] += 1;
        }
    }
    let (q, worst) = (0..n_classes)
        .filter(|&c| slots[c] > 0)
        .map(|c| (by_class[c].len() / slots[c], c))
        .min()
        .unwrap_or((0, 0));
    if q == 0 {
        return Err(DataError::ImpossiblePartition(format!(
            "{k} classes per agent for {n_agents} agents: class {worst} has {} samples but {} agents need it",
            by_class[worst].len(),
            slots[worst]
        )));
    }
    for v in by_class.iter_mut() {
        v.shuffle(&mut rng);
    }
    let mut next = vec![0usize; n_classes];
    let mut out = Vec::with_capacity(n_agents);
    for i in 0..n_agents {
        let mut list = Vec::with_capacity(k * q);
        for j in 0..k {
            let c = class_of(i, j);
            let t = next[c];
            list.extend_from_slice(&by_class[c][t * q..(t + 1) * q]);
            next[c] += 1;
        }
        out.push(list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels with non-uniform class frequencies (class c has weight c + 1), seeded.
    fn skewed_labels(n: usize, n_classes: usize, seed: u64) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let total: usize = (1..=n_classes).sum();
        (0..n)
            .map(|_| {
                let mut r = rng.random_range(0..total);
                let mut c = 0;
                while r > c {
                    r -= c + 1;
                    c += 1;
                }
                c as u32
            })
            .collect()
    }

    /// Balanced labels 0..C repeated, in a seeded random order.
    fn balanced_labels(n: usize, n_classes: usize, seed: u64) -> Vec<u32> {
        let mut l: Vec<u32> = (0..n).map(|i| (i % n_classes) as u32).collect();
        l.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        l
    }

    /// Asserts no index is used twice and all are `< n`; returns the number used.
    fn assert_disjoint(parts: &[Vec<usize>], n: usize) -> usize {
        let mut seen = vec![false; n];
        let mut used = 0;
        for p in parts {
            for &i in p {
                assert!(i < n, "index {i} out of range {n}");
                assert!(!seen[i], "index {i} used twice");
                seen[i] = true;
                used += 1;
            }
        }
        used
    }

    fn hist(labels: &[u32], idx: &[usize], c: usize) -> Vec<f64> {
        let mut h = vec![0.0; c];
        for &i in idx {
            h[labels[i] as usize] += 1.0;
        }
        let s: f64 = h.iter().sum();
        h.iter().map(|x| x / s.max(1.0)).collect()
    }

    #[test]
    fn array_split_matches_numpy() {
        assert_eq!(array_split_sizes(10, 3), vec![4, 3, 3]);
        assert_eq!(array_split_sizes(50_000, 32)[..2], [1563, 1563]);
        assert_eq!(array_split_sizes(50_000, 32).iter().sum::<usize>(), 50_000);
        assert_eq!(array_split_sizes(2, 4), vec![1, 1, 0, 0]);
        assert!(array_split_sizes(5, 0).is_empty());
    }

    #[test]
    fn iid_sizes_disjoint_deterministic() {
        let parts = iid(103, 10, 4).unwrap();
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() == 10));
        assert_eq!(assert_disjoint(&parts, 103), 100);
        assert_eq!(parts, iid(103, 10, 4).unwrap());
        assert_ne!(parts, iid(103, 10, 5).unwrap());
        assert!(matches!(iid(5, 0, 0), Err(DataError::NoAgents)));
        assert!(matches!(
            iid(5, 6, 0),
            Err(DataError::TooManyAgents {
                n_agents: 6,
                n_samples: 5
            })
        ));
    }

    #[test]
    fn dirichlet_properties_over_random_cases() {
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        for case in 0..60 {
            let n_agents = rng.random_range(1..40usize);
            let n = rng.random_range(n_agents * 20..n_agents * 200 + 50);
            let n_classes = 10;
            let alpha = 10f64.powf(rng.random_range(-1.0..3.0));
            let labels = skewed_labels(n, n_classes, case);
            let seed = rng.random::<u64>();
            let relay = dirichlet(
                &labels,
                n_classes,
                n_agents,
                alpha,
                DirichletVariant::Relaysgd,
                seed,
            )
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(relay.len(), n_agents);
            assert_eq!(
                assert_disjoint(&relay, n),
                n,
                "RelaySGD variant covers all N"
            );
            let sizes: Vec<usize> = relay.iter().map(Vec::len).collect();
            assert_eq!(sizes, array_split_sizes(n, n_agents));
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1);

            let qgm = dirichlet(
                &labels,
                n_classes,
                n_agents,
                alpha,
                DirichletVariant::Qgm,
                seed,
            )
            .unwrap();
            assert_eq!(assert_disjoint(&qgm, n), n_agents * (n / n_agents));
            assert!(qgm.iter().all(|p| p.len() == n / n_agents));
            // Same seed: the QGM lists are prefixes of the same concatenation.
            assert_eq!(qgm[0][..], relay[0][..qgm[0].len()]);
        }
    }

    #[test]
    fn dirichlet_large_alpha_is_near_iid() {
        let (n, c, agents) = (20_000, 10, 16);
        let labels = skewed_labels(n, c, 1);
        let all: Vec<usize> = (0..n).collect();
        let global = hist(&labels, &all, c);
        let parts = dirichlet(&labels, c, agents, 1000.0, DirichletVariant::Qgm, 3).unwrap();
        let tv_max = parts
            .iter()
            .map(|p| {
                let h = hist(&labels, p, c);
                0.5 * h
                    .iter()
                    .zip(&global)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        eprintln!("alpha=1000, n=16, N=20000: max total variation to global = {tv_max:.4}");
        assert!(tv_max < 0.15, "{tv_max}");
    }

    #[test]
    fn dirichlet_small_alpha_concentrates_labels() {
        let (n, c, agents) = (20_000, 10, 16);
        let labels = balanced_labels(n, c, 1);
        for variant in [DirichletVariant::Qgm, DirichletVariant::Relaysgd] {
            let parts = dirichlet(&labels, c, agents, 0.01, variant, 3).unwrap();
            let dominant: Vec<f64> = parts
                .iter()
                .map(|p| hist(&labels, p, c).into_iter().fold(0.0, f64::max))
                .collect();
            let n_dom = dominant.iter().filter(|&&d| d > 0.8).count();
            eprintln!(
                "alpha=0.01 {variant:?}: dominant-class fractions {dominant:.2?}; {n_dom}/16 > 0.8"
            );
            assert!(n_dom * 2 > agents, "{dominant:?}");
        }
    }

    #[test]
    fn dirichlet_deterministic_and_seeded() {
        let labels = skewed_labels(3000, 10, 7);
        let run = |seed| dirichlet(&labels, 10, 12, 0.5, DirichletVariant::Relaysgd, seed);
        assert_eq!(run(1).unwrap(), run(1).unwrap());
        assert_ne!(run(1).unwrap(), run(2).unwrap());
    }

    #[test]
    fn dirichlet_errors() {
        let labels = balanced_labels(100, 10, 0);
        let v = DirichletVariant::Qgm;
        for a in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                dirichlet(&labels, 10, 4, a, v, 0),
                Err(DataError::InvalidAlpha { .. })
            ));
        }
        assert!(matches!(
            dirichlet(&labels, 10, 0, 1.0, v, 0),
            Err(DataError::NoAgents)
        ));
        assert!(matches!(
            dirichlet(&labels, 10, 101, 1.0, v, 0),
            Err(DataError::TooManyAgents { .. })
        ));
        assert!(matches!(
            dirichlet(&labels, 5, 4, 1.0, v, 0),
            Err(DataError::LabelOutOfRange { .. })
        ));
        // Two classes, ten workers, tiny α: most workers can never get samples.
        let two = balanced_labels(1000, 2, 0);
        let err = dirichlet(&two, 2, 10, 1e-4, v, 0).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::DirichletNoConvergence {
                    tries: DIRICHLET_MAX_TRIES,
                    required: 50,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn dirichlet_tiny_alpha_does_not_produce_nan() {
        // α so small that U^{1/α} underflows for every component: still a valid partition.
        let labels = balanced_labels(400, 4, 3);
        let parts = dirichlet(&labels, 4, 4, 1e-300, DirichletVariant::Relaysgd, 1).unwrap();
        assert_eq!(assert_disjoint(&parts, 400), 400);
    }

    #[test]
    fn shards_match_the_ngm_layout() {
        // CIFAR-like: 10 balanced classes of 100, in shuffled order.
        let labels = balanced_labels(1000, 10, 11);
        let classes = |p: &Vec<usize>| {
            let mut c: Vec<u32> = p.iter().map(|&i| labels[i]).collect();
            c.sort_unstable();
            c.dedup();
            c
        };
        let p5 = shards(&labels, 5).unwrap();
        for (k, p) in p5.iter().enumerate() {
            assert_eq!(classes(p), vec![2 * k as u32, 2 * k as u32 + 1]);
            assert_eq!(p.len(), 200);
        }
        let p10 = shards(&labels, 10).unwrap();
        for (k, p) in p10.iter().enumerate() {
            assert_eq!(classes(p), vec![k as u32]);
        }
        let p20 = shards(&labels, 20).unwrap();
        assert_eq!(assert_disjoint(&p20, 1000), 1000);
        for i in 0..10 {
            assert_eq!(classes(&p20[i]), vec![i as u32]);
            assert_eq!(classes(&p20[i + 10]), vec![i as u32]);
        }
        // Stable sort: within a class indices ascend.
        assert!(p10[3].windows(2).all(|w| w[0] < w[1]));
        let p16 = shards(&labels, 16).unwrap();
        assert_eq!(assert_disjoint(&p16, 1000), 16 * 62);
        assert!(matches!(shards(&labels, 0), Err(DataError::NoAgents)));
        assert!(matches!(
            shards(&labels, 1001),
            Err(DataError::TooManyAgents { .. })
        ));
    }

    #[test]
    fn classes_per_agent_properties() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for case in 0..40 {
            let n_agents = rng.random_range(1..30usize);
            let c = rng.random_range(2..12usize);
            let k = rng.random_range(1..=c);
            let n = rng.random_range(n_agents * k * 4..n_agents * k * 60 + 10);
            let labels = balanced_labels(n, c, case);
            let parts = classes_per_agent(&labels, c, n_agents, k, case).unwrap();
            assert_eq!(parts.len(), n_agents);
            let used = assert_disjoint(&parts, n);
            let size = parts[0].len();
            assert!(size > 0 && parts.iter().all(|p| p.len() == size));
            assert_eq!(used, n_agents * size);
            for p in &parts {
                let mut cl: Vec<u32> = p.iter().map(|&i| labels[i]).collect();
                cl.sort_unstable();
                cl.dedup();
                assert_eq!(cl.len(), k, "agent must see exactly k classes");
            }
            assert_eq!(
                parts,
                classes_per_agent(&labels, c, n_agents, k, case).unwrap()
            );
        }
        let labels = balanced_labels(1000, 10, 0);
        let p = classes_per_agent(&labels, 10, 10, 2, 0).unwrap();
        assert!(p.iter().all(|x| x.len() == 100), "balanced: 2 × 50 each");
        assert!(classes_per_agent(&labels, 10, 10, 0, 0).is_err());
        assert!(classes_per_agent(&labels, 10, 10, 11, 0).is_err());
        assert!(classes_per_agent(&labels, 12, 10, 11, 0).is_err()); // only 10 present
        let err = classes_per_agent(&labels, 10, 1000, 10, 0).unwrap_err();
        assert!(err.to_string().contains("1000 agents need it"), "{err}");
    }

    #[test]
    fn partition_parsing_and_apply() {
        assert_eq!("iid".parse::<Partition>().unwrap(), Partition::Iid);
        assert_eq!(" Shards ".parse::<Partition>().unwrap(), Partition::Shards);
        assert_eq!(
            "dirichlet".parse::<Partition>().unwrap(),
            Partition::Dirichlet {
                alpha: 0.1,
                variant: DirichletVariant::Relaysgd
            }
        );
        assert_eq!(
            "dirichlet-qgm=0.5".parse::<Partition>().unwrap(),
            Partition::Dirichlet {
                alpha: 0.5,
                variant: DirichletVariant::Qgm
            }
        );
        assert_eq!(
            "classes:3".parse::<Partition>().unwrap(),
            Partition::Classes { k: 3 }
        );
        for p in [
            Partition::Iid,
            Partition::Shards,
            Partition::Classes { k: 4 },
            Partition::Dirichlet {
                alpha: 0.01,
                variant: DirichletVariant::Qgm,
            },
        ] {
            assert_eq!(p.to_string().parse::<Partition>().unwrap(), p);
        }
        let err = "random".parse::<Partition>().unwrap_err().to_string();
        for word in ["iid", "dirichlet", "shards", "classes"] {
            assert!(err.contains(word), "{err}");
        }
        assert!("dirichlet:abc".parse::<Partition>().is_err());
        assert!(matches!(
            "dirichlet:-1".parse::<Partition>(),
            Err(DataError::InvalidAlpha { .. })
        ));
        assert!("iid:3".parse::<Partition>().is_err());

        let labels = balanced_labels(500, 10, 0);
        for p in ["iid", "dirichlet:1", "shards", "classes:2"] {
            let parts = p
                .parse::<Partition>()
                .unwrap()
                .apply_labels(&labels, 10, 5, 0)
                .unwrap();
            assert_eq!(parts.len(), 5);
            assert_disjoint(&parts, 500);
        }
        assert!(Partition::Shards.apply_labels(&labels, 3, 5, 0).is_err());
    }
}
