//! The RelaySum mechanism's host side (ALGORITHMS.md §5.5, §5.6): per spanning tree, which
//! messages arrived last round and their counts, the per-round message and averaging matrices
//! built from them, and the layout of the stacked vectors the device matrices act on.
//!
//! Stack layout of one tree ("lane"): `n` slabs of x½ (or u), then one slab per directed tree
//! edge e = (k→i) holding the last message i received from k (r_e), then the reference model x0
//! slabs (none, one, or one per agent). Counts and drops are integers and coin flips known on the
//! host, so they are folded into the matrices: a dropped or not yet arrived message simply has no
//! entry (it is neither summed nor relayed), and N_i appears in the x0 weight.
//!
//! Double binary trees: element k of a slab travels over tree k mod 2, so lane t holds elements
//! t, t + 2, … of every slab, de-interleaved into slabs of its own width.

use super::tree::SpanningTree;
use crate::sparse::Csr;

/// How a relay round turns the stack into the new vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayAverage {
    /// `(u_i + Σ_j r_{j→i})/n`: RelaySum/Grad, missing agents contribute 0.
    Sum,
    /// `(S_i + (n − N_i)·x0)/n`: RelaySum/Model, x0 stands in for models not yet arrived.
    World,
    /// `S_i / N_i`: RelaySum/Model normalised by the counts.
    Counts,
}

/// Host-side bookkeeping of one tree: directed edges, which messages arrived last round and
/// their counts. Builds the per-round message and averaging matrices.
#[derive(Clone, Debug)]
pub struct RelayTree {
    n: usize,
    edges: Vec<(usize, usize)>,
    into: Vec<Vec<usize>>,
    received: Vec<bool>,
    counts: Vec<usize>,
}

impl RelayTree {
    /// Prepares the bookkeeping of `tree` (no message received yet).
    pub fn new(tree: &SpanningTree) -> Self {
        let n = tree.n();
        let mut edges = Vec::new();
        for i in 0..n {
            for &j in tree.neighbors(i) {
                edges.push((i, j));
            }
        }
        let mut into = vec![Vec::new(); n];
        for (e, &(_, j)) in edges.iter().enumerate() {
            into[j].push(e);
        }
        let m = edges.len();
        RelayTree {
            n,
            edges,
            into,
            received: vec![false; m],
            counts: vec![0; m],
        }
    }

    /// Nodes n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Directed tree edges (sender, receiver); edge e's message lives in stack slab n + e.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Tree degree of node i.
    pub fn degree(&self, i: usize) -> usize {
        self.into[i].len()
    }

    /// Sum of squared degrees (the message matrix's largest entry count).
    pub fn message_nnz(&self) -> usize {
        (0..self.n).map(|i| self.degree(i).pow(2)).sum()
    }

    /// Whether each edge's message arrived in the last round, and its count.
    pub fn arrivals(&self) -> (&[bool], &[usize]) {
        (&self.received, &self.counts)
    }

    /// Restores arrivals saved with [`RelayTree::arrivals`]; a reason when they do not fit
    /// this tree (lengths, or a count that contradicts its flag).
    pub fn restore(&mut self, received: Vec<bool>, counts: Vec<usize>) -> Result<(), String> {
        let m = self.edges.len();
        if received.len() != m || counts.len() != m {
            return Err(format!(
                "{} flags and {} counts for {m} edges",
                received.len(),
                counts.len()
            ));
        }
        let n = self.n;
        let consistent =
            received
                .iter()
                .zip(&counts)
                .all(|(&r, &c)| if r { (1..n).contains(&c) } else { c == 0 });
        if !consistent {
            return Err("counts do not fit the flags".into());
        }
        self.received = received;
        self.counts = counts;
        Ok(())
    }

    /// The message matrix of the coming round, E rows over the stack's n + E columns:
    /// `m_{i→j} = x½_i + Σ r_{k→i}` over the k ≠ j whose message arrived last round.
    pub fn message_csr(&self) -> Csr {
        let rows: Vec<Vec<(usize, f64)>> = self
            .edges
            .iter()
            .map(|&(i, j)| {
                let mut row = vec![(i, 1.0)];
                for &e in &self.into[i] {
                    if self.edges[e].0 != j && self.received[e] {
                        row.push((self.n + e, 1.0));
                    }
                }
                row
            })
            .collect();
        Csr::from_rows(self.n + self.edges.len(), &rows)
    }

    /// Exchanges one round: message e arrives unless `dropped[e]`; its count is
    /// `1 + Σ c_{k→i}` over the relayed (arrived last round) messages. Empty `dropped`: no drops.
    pub fn exchange(&mut self, dropped: &[bool]) {
        let counts: Vec<usize> = self
            .edges
            .iter()
            .map(|&(i, j)| {
                1 + self.into[i]
                    .iter()
                    .filter(|&&e| self.edges[e].0 != j && self.received[e])
                    .map(|&e| self.counts[e])
                    .sum::<usize>()
            })
            .collect();
        for (e, c) in counts.into_iter().enumerate() {
            let ok = !dropped.get(e).copied().unwrap_or(false);
            self.received[e] = ok;
            self.counts[e] = if ok { c } else { 0 };
        }
    }

    /// N_i = 1 + Σ_j c_{j→i} over the messages received in the last round (1 before any).
    pub fn totals(&self) -> Vec<usize> {
        (0..self.n)
            .map(|i| {
                1 + self.into[i]
                    .iter()
                    .filter(|&&e| self.received[e])
                    .map(|&e| self.counts[e])
                    .sum::<usize>()
            })
            .collect()
    }

    /// The averaging matrix after the last exchange, n rows over the stack's columns
    /// (x½ or u: 0..n, r: n..n+E, then `x0_slabs` x0 slabs: one shared, or one per agent when
    /// `x0_slabs == n` and n > 1).
    pub fn average_csr(&self, average: RelayAverage, x0_slabs: usize) -> Csr {
        let n = self.n;
        let e_count = self.edges.len();
        let totals = self.totals();
        let rows: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                let w = match average {
                    RelayAverage::Counts => 1.0 / totals[i] as f64,
                    RelayAverage::Sum | RelayAverage::World => 1.0 / n as f64,
                };
                let mut row = vec![(i, w)];
                for &e in &self.into[i] {
                    if self.received[e] {
                        row.push((n + e, w));
                    }
                }
                let missing = n - totals[i];
                if average == RelayAverage::World && missing > 0 {
                    let own = if x0_slabs == n { i } else { 0 };
                    row.push((n + e_count + own, missing as f64 / n as f64));
                }
                row
            })
            .collect();
        Csr::from_rows(n + e_count + x0_slabs, &rows)
    }
}

/// Where one tree's vectors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLane {
    /// Which element of every `lanes` consecutive ones this lane carries (tree index).
    pub first: usize,
    /// Floats per slab in this lane (the stride, or about half of it for double trees).
    pub width: usize,
    /// Communicated scalars per slab in this lane (d, or about half of it).
    pub d: usize,
    /// Directed tree edges E.
    pub edges: usize,
    /// Offset of the lane's region (n + E + x0 slabs) in the stack buffer.
    pub stack_base: usize,
    /// Offset of the lane's E messages in the message buffer.
    pub msg_base: usize,
    /// Offset of the lane's n averages in the de-interleaved output (double trees).
    pub avg_base: usize,
    /// Offset of the lane's x0 slab(s) in the stack.
    pub x0_base: usize,
}

/// The stacked-vector layout of every tree of a relay run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLayout {
    /// One lane per tree.
    pub lanes: Vec<RelayLane>,
    /// Floats of the stack buffer.
    pub stack_len: usize,
    /// Floats of the message buffer.
    pub msg_len: usize,
    /// Floats of the de-interleaved averages (n × stride).
    pub avg_len: usize,
    /// x0 slabs per lane: 0 (Grad), 1 (shared x0) or n (per-agent x0).
    pub x0_slabs: usize,
}

impl RelayLayout {
    /// Lays out `trees` for n slabs of `stride` floats, `d` of them communicated; with several
    /// trees element k of a slab travels over tree k mod (number of trees).
    pub fn new(trees: &[RelayTree], stride: usize, d: usize, x0_slabs: usize) -> Self {
        let count = trees.len().max(1);
        let (mut stack_len, mut msg_len, mut avg_len) = (0, 0, 0);
        let mut lanes = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            let n = tree.n();
            let width = stride.saturating_sub(t).div_ceil(count);
            let edges = tree.edges().len();
            lanes.push(RelayLane {
                first: t,
                width,
                d: d.saturating_sub(t).div_ceil(count),
                edges,
                stack_base: stack_len,
                msg_base: msg_len,
                avg_base: avg_len,
                x0_base: stack_len + (n + edges) * width,
            });
            stack_len += (n + edges + x0_slabs) * width;
            msg_len += edges * width;
            avg_len += n * width;
        }
        RelayLayout {
            lanes,
            stack_len,
            msg_len,
            avg_len,
            x0_slabs,
        }
    }

    /// Number of trees.
    pub fn interleave(&self) -> usize {
        self.lanes.len().max(1)
    }
}
