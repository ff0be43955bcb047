//! Named topologies (ALGORITHMS.md §3): one constructor per graph family, and the
//! `Topology` selector that builds the graph(s) for n agents.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adjacency::Graph;
use super::error::{GraphError, Result};
use super::schedule::{HopSchedule, OnePeerExponential};

/// Number of connected-sample attempts before `erdos_renyi` gives up.
pub const ERDOS_RENYI_MAX_TRIES: usize = 1000;

/// Davis Southern Women graph (women 0–17, events 18–31), adjacency lists of ALGORITHMS.md §3.
const SOCIAL_ADJACENCY: [&[usize]; 32] = [
    &[18, 19, 20, 21, 22, 23, 25, 26],
    &[18, 19, 20, 22, 23, 24, 25],
    &[19, 20, 21, 22, 23, 24, 25, 26],
    &[18, 20, 21, 22, 23, 24, 25],
    &[20, 21, 22, 24],
    &[20, 22, 23, 25],
    &[22, 23, 24, 25],
    &[23, 25, 26],
    &[22, 24, 25, 26],
    &[24, 25, 26, 29],
    &[25, 26, 27, 29],
    &[25, 26, 27, 29, 30, 31],
    &[24, 25, 26, 27, 29, 30, 31],
    &[23, 24, 26, 27, 28, 29, 30, 31],
    &[24, 25, 27, 28, 29],
    &[25, 26],
    &[26, 28],
    &[26, 28],
    &[0, 1, 3],
    &[0, 1, 2],
    &[0, 1, 2, 3, 4, 5],
    &[0, 2, 3, 4],
    &[0, 1, 2, 3, 4, 5, 6, 8],
    &[0, 1, 2, 3, 5, 6, 7, 13],
    &[1, 2, 3, 4, 6, 8, 9, 12, 13, 14],
    &[0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15],
    &[0, 2, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17],
    &[10, 11, 12, 13, 14],
    &[13, 14, 16, 17],
    &[9, 10, 11, 12, 13, 14],
    &[11, 12, 13],
    &[11, 12, 13],
];

fn need(topology: &'static str, n: usize, min: usize) -> Result<()> {
    if n < min {
        Err(GraphError::TooFewNodes { topology, n, min })
    } else {
        Ok(())
    }
}

/// log2(n) if n is a power of two ≥ 2.
pub(crate) fn log2_exact(topology: &'static str, n: usize) -> Result<u32> {
    need(topology, n, 2)?;
    if n.is_power_of_two() {
        Ok(n.trailing_zeros())
    } else {
        Err(GraphError::NotPowerOfTwo { topology, n })
    }
}

impl Graph {
    /// Ring: N_i = {i ± 1 mod n}, n ≥ 3.
    pub fn ring(n: usize) -> Result<Graph> {
        need("ring", n, 3)?;
        let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        Graph::from_edges(n, &edges)
    }

    /// m×m periodic grid, node (r, c) ↦ r·m + c, m ≥ 3.
    pub fn torus(m: usize) -> Result<Graph> {
        if m < 3 {
            return Err(GraphError::TooFewNodes {
                topology: "torus side m",
                n: m,
                min: 3,
            });
        }
        let Some(n) = m.checked_mul(m) else {
            return Err(GraphError::InvalidParameter {
                name: "torus side m",
                value: m as f64,
                reason: "m*m overflows usize",
            });
        };
        let mut edges = Vec::with_capacity(2 * n);
        for r in 0..m {
            for c in 0..m {
                edges.push((r * m + c, r * m + (c + 1) % m));
                edges.push((r * m + c, ((r + 1) % m) * m + c));
            }
        }
        Graph::from_edges(n, &edges)
    }

    /// Complete graph on n ≥ 1 nodes.
    pub fn complete(n: usize) -> Result<Graph> {
        need("complete", n, 1)?;
        let edges: Vec<_> = (0..n)
            .flat_map(|u| (u + 1..n).map(move |v| (u, v)))
            .collect();
        Graph::from_edges(n, &edges)
    }

    /// Star with hub 0, n ≥ 2.
    pub fn star(n: usize) -> Result<Graph> {
        need("star", n, 2)?;
        let edges: Vec<_> = (1..n).map(|v| (0, v)).collect();
        Graph::from_edges(n, &edges)
    }

    /// Chain 0–1–…–(n−1), n ≥ 2.
    pub fn chain(n: usize) -> Result<Graph> {
        need("chain", n, 2)?;
        let edges: Vec<_> = (1..n).map(|v| (v - 1, v)).collect();
        Graph::from_edges(n, &edges)
    }

    /// Binary tree with super-root: 0's only neighbour is 1; node w ≥ 1 has parent ⌊w/2⌋.
    pub fn binary_tree(n: usize) -> Result<Graph> {
        need("binary-tree", n, 2)?;
        let edges: Vec<_> = (1..n).map(|w| (w / 2, w)).collect();
        Graph::from_edges(n, &edges)
    }

    /// The binary tree relabelled w ↦ n − 1 − w.
    pub fn reversed_binary_tree(n: usize) -> Result<Graph> {
        need("reversed-binary-tree", n, 2)?;
        let perm: Vec<usize> = (0..n).map(|w| n - 1 - w).collect();
        Graph::binary_tree(n)?.relabel(&perm)
    }

    /// 3-tree: 0's children 1, 2, 3; node w ≥ 1 has children 2w + 2, 2w + 3 (if < n).
    pub fn three_tree(n: usize) -> Result<Graph> {
        need("three-tree", n, 2)?;
        let edges: Vec<_> = (1..n)
            .map(|v| if v <= 3 { (0, v) } else { ((v - 2) / 2, v) })
            .collect();
        Graph::from_edges(n, &edges)
    }

    /// Hypercube on n = 2^D nodes: N_i = {i XOR 2^j, j < D}.
    pub fn hypercube(n: usize) -> Result<Graph> {
        let d = log2_exact("hypercube", n)?;
        let edges: Vec<_> = (0..n)
            .flat_map(|i| (0..d).map(move |j| (i, i ^ (1 << j))))
            .filter(|&(i, k)| i < k)
            .collect();
        Graph::from_edges(n, &edges)
    }

    /// The 32-node Davis Southern Women graph (bipartite, 89 edges); `n` must be 32.
    pub fn social(n: usize) -> Result<Graph> {
        if n != SOCIAL_ADJACENCY.len() {
            return Err(GraphError::WrongNodeCount {
                topology: "social",
                n,
                expected: SOCIAL_ADJACENCY.len(),
            });
        }
        let lists: Vec<Vec<usize>> = SOCIAL_ADJACENCY.iter().map(|l| l.to_vec()).collect();
        Graph::from_adjacency(&lists)
    }

    /// Erdős–Rényi G(n, p) resampled until connected, from a ChaCha8 stream seeded by `seed`.
    pub fn erdos_renyi(n: usize, p: f64, seed: u64) -> Result<Graph> {
        need("erdos-renyi", n, 1)?;
        if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
            return Err(GraphError::InvalidParameter {
                name: "edge probability p",
                value: p,
                reason: "must lie in [0, 1]",
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..ERDOS_RENYI_MAX_TRIES {
            let mut edges = Vec::new();
            for u in 0..n {
                for v in u + 1..n {
                    if rng.random::<f64>() < p {
                        edges.push((u, v));
                    }
                }
            }
            let g = Graph::from_edges(n, &edges)?;
            if g.is_connected() {
                return Ok(g);
            }
        }
        Err(GraphError::NoConnectedSample {
            n,
            p,
            tries: ERDOS_RENYI_MAX_TRIES,
        })
    }
}

/// Default Erdős–Rényi edge probability for n nodes: min(1, 2·ln(n)/n), twice the
/// connectivity threshold.
pub fn default_erdos_renyi_p(n: usize) -> f64 {
    if n <= 2 {
        1.0
    } else {
        (2.0 * (n as f64).ln() / n as f64).min(1.0)
    }
}

/// A named topology for n agents, parsed from its command-line / config name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Topology {
    /// Ring (n ≥ 3).
    Ring,
    /// √n × √n torus (n a perfect square ≥ 9).
    Torus,
    /// Complete graph.
    Complete,
    /// Star with hub 0.
    Star,
    /// Chain 0–…–(n−1).
    Chain,
    /// Binary tree with super-root.
    BinaryTree,
    /// Binary tree relabelled w ↦ n − 1 − w.
    ReversedBinaryTree,
    /// The pair (binary tree, reversed binary tree) for RelaySGD's double trees.
    DoubleBinaryTrees,
    /// epfml/relaysgd 3-tree.
    ThreeTree,
    /// Hypercube (n a power of two).
    Hypercube,
    /// Davis Southern Women graph (n = 32).
    Social,
    /// Connected Erdős–Rényi G(n, p); `None` uses `default_erdos_renyi_p(n)`.
    ErdosRenyi {
        /// Edge probability.
        p: Option<f64>,
    },
    /// Time-varying one-peer exponential graph (n a power of two, §5.12).
    Exponential,
    /// A graph read from an edge-list file (`file:PATH`), validated when parsed.
    File(EdgeFile),
}

/// A graph read from an edge-list file, interned so that [`Topology`] stays `Copy`: the id names
/// one (path, graph) pair of a process-wide table, filled when `file:PATH` is parsed (the same
/// path with the same contents gets the same id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeFile(usize);

/// The interned edge-list graphs: (path as given, graph).
static EDGE_FILES: std::sync::Mutex<Vec<(String, Graph)>> = std::sync::Mutex::new(Vec::new());

impl EdgeFile {
    /// Reads and validates the edge list at `path` (typed, line-numbered errors naming the
    /// file; the node count is the largest id + 1, bounded by twice the number of edges) and
    /// interns it.
    pub fn read(path: &str) -> Result<EdgeFile> {
        let in_file = |e: GraphError| GraphError::InFile {
            path: path.to_string(),
            source: Box::new(e),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            in_file(GraphError::Unreadable {
                reason: e.to_string(),
            })
        })?;
        let g = Graph::from_edge_list(&text, None).map_err(in_file)?;
        let mut table = EDGE_FILES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = table.iter().position(|(p, h)| p == path && *h == g) {
            return Ok(EdgeFile(k));
        }
        table.push((path.to_string(), g));
        Ok(EdgeFile(table.len() - 1))
    }

    fn entry(&self) -> (String, Graph) {
        let table = EDGE_FILES.lock().unwrap_or_else(|p| p.into_inner());
        table[self.0].clone()
    }

    /// The path as given.
    pub fn path(&self) -> String {
        self.entry().0
    }

    /// The graph.
    pub fn graph(&self) -> Graph {
        self.entry().1
    }
}

/// The accepted topology names, for error messages and help texts.
pub const TOPOLOGY_NAMES: &str = "ring, torus, complete, star, chain, binary-tree, \
reversed-binary-tree, double-binary-trees, three-tree, hypercube, social, erdos-renyi \
(or erdos-renyi:P with 0 <= P <= 1), exponential, file:PATH (an edge list: one \"i j\" pair a \
line, # comments)";

/// What a topology builds for n agents.
#[derive(Clone, Debug, PartialEq)]
pub enum TopologyGraphs {
    /// One static undirected graph.
    Static(Graph),
    /// RelaySGD's double binary trees: even elements over `tree`, odd over `reversed`.
    DoubleBinaryTrees {
        /// The binary tree.
        tree: Graph,
        /// The reversed binary tree.
        reversed: Graph,
    },
    /// The time-varying one-peer exponential graph.
    Exponential(OnePeerExponential),
}

impl TopologyGraphs {
    /// The static graph, if this is one.
    pub fn as_static(&self) -> Option<&Graph> {
        match self {
            TopologyGraphs::Static(g) => Some(g),
            _ => None,
        }
    }

    /// Number of agents.
    pub fn n(&self) -> usize {
        match self {
            TopologyGraphs::Static(g) => g.n(),
            TopologyGraphs::DoubleBinaryTrees { tree, .. } => tree.n(),
            TopologyGraphs::Exponential(e) => e.n(),
        }
    }
}

impl Topology {
    /// The canonical name (as accepted by `FromStr`, without a probability suffix).
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Ring => "ring",
            Topology::Torus => "torus",
            Topology::Complete => "complete",
            Topology::Star => "star",
            Topology::Chain => "chain",
            Topology::BinaryTree => "binary-tree",
            Topology::ReversedBinaryTree => "reversed-binary-tree",
            Topology::DoubleBinaryTrees => "double-binary-trees",
            Topology::ThreeTree => "three-tree",
            Topology::Hypercube => "hypercube",
            Topology::Social => "social",
            Topology::ErdosRenyi { .. } => "erdos-renyi",
            Topology::Exponential => "exponential",
            Topology::File(_) => "file",
        }
    }

    /// Builds the topology for `n` agents; `seed` is used only by Erdős–Rényi.
    pub fn build(&self, n: usize, seed: u64) -> Result<TopologyGraphs> {
        let g = match self {
            Topology::Ring => Graph::ring(n)?,
            Topology::Torus => {
                let m = (n as f64).sqrt().round() as usize;
                if m * m != n || m < 3 {
                    return Err(GraphError::NotPerfectSquare { n });
                }
                Graph::torus(m)?
            }
            Topology::Complete => Graph::complete(n)?,
            Topology::Star => Graph::star(n)?,
            Topology::Chain => Graph::chain(n)?,
            Topology::BinaryTree => Graph::binary_tree(n)?,
            Topology::ReversedBinaryTree => Graph::reversed_binary_tree(n)?,
            Topology::DoubleBinaryTrees => {
                return Ok(TopologyGraphs::DoubleBinaryTrees {
                    tree: Graph::binary_tree(n)?,
                    reversed: Graph::reversed_binary_tree(n)?,
                })
            }
            Topology::ThreeTree => Graph::three_tree(n)?,
            Topology::Hypercube => Graph::hypercube(n)?,
            Topology::Social => Graph::social(n)?,
            Topology::ErdosRenyi { p } => {
                Graph::erdos_renyi(n, p.unwrap_or_else(|| default_erdos_renyi_p(n)), seed)?
            }
            Topology::Exponential => {
                return Ok(TopologyGraphs::Exponential(OnePeerExponential::new(
                    n,
                    HopSchedule::Code,
                )?))
            }
            Topology::File(f) => {
                let in_file = |e: GraphError| GraphError::InFile {
                    path: f.path(),
                    source: Box::new(e),
                };
                let g = f.graph();
                if g.n() != n {
                    return Err(in_file(GraphError::NodeCountMismatch { nodes: g.n(), n }));
                }
                // Gossip over a disconnected graph never reaches consensus.
                g.check_connected().map_err(in_file)?;
                g
            }
        };
        Ok(TopologyGraphs::Static(g))
    }

    /// Builds the one static graph; errors for time-varying topologies and tree pairs.
    pub fn static_graph(&self, n: usize, seed: u64) -> Result<Graph> {
        match self.build(n, seed)? {
            TopologyGraphs::Static(g) => Ok(g),
            _ => Err(GraphError::NotStatic {
                topology: self.name(),
            }),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::ErdosRenyi { p: Some(p) } => write!(f, "erdos-renyi:{p}"),
            Topology::File(file) => write!(f, "file:{}", file.path()),
            t => f.write_str(t.name()),
        }
    }
}

impl FromStr for Topology {
    type Err = GraphError;

    fn from_str(s: &str) -> Result<Self> {
        // The path keeps its case and underscores.
        if let Some(path) = s.trim().strip_prefix("file:") {
            return Ok(Topology::File(EdgeFile::read(path)?));
        }
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let unknown = || GraphError::UnknownName {
            kind: "topology",
            value: s.to_string(),
            accepted: TOPOLOGY_NAMES.to_string(),
        };
        if let Some(rest) = t.strip_prefix("erdos-renyi:") {
            let p: f64 = rest.trim().parse().map_err(|_| unknown())?;
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(GraphError::InvalidParameter {
                    name: "erdos-renyi edge probability p",
                    value: p,
                    reason: "must lie in [0, 1]",
                });
            }
            return Ok(Topology::ErdosRenyi { p: Some(p) });
        }
        Ok(match t.as_str() {
            "ring" => Topology::Ring,
            "torus" => Topology::Torus,
            "complete" => Topology::Complete,
            "star" => Topology::Star,
            "chain" => Topology::Chain,
            "binary-tree" => Topology::BinaryTree,
            "reversed-binary-tree" => Topology::ReversedBinaryTree,
            "double-binary-trees" => Topology::DoubleBinaryTrees,
            "three-tree" => Topology::ThreeTree,
            "hypercube" => Topology::Hypercube,
            "social" => Topology::Social,
            "erdos-renyi" => Topology::ErdosRenyi { p: None },
            "exponential" => Topology::Exponential,
            _ => return Err(unknown()),
        })
    }
}

string_serde!(Topology);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_torus_complete_star_chain() {
        let r = Graph::ring(5).unwrap();
        assert_eq!(r.neighbors(0), &[1, 4]);
        assert_eq!(r.edge_count(), 5);
        assert!(r.is_regular());
        assert_eq!(
            Graph::ring(2),
            Err(GraphError::TooFewNodes {
                topology: "ring",
                n: 2,
                min: 3
            })
        );

        let t = Graph::torus(4).unwrap();
        assert_eq!(t.n(), 16);
        assert_eq!(t.edge_count(), 32);
        // (1, 2) = node 6: neighbours (0,2)=2, (2,2)=10, (1,1)=5, (1,3)=7.
        assert_eq!(t.neighbors(6), &[2, 5, 7, 10]);
        // (0, 0) wraps to (3, 0) = 12 and (0, 3) = 3.
        assert_eq!(t.neighbors(0), &[1, 3, 4, 12]);
        assert_eq!(t.diameter(), Ok(4));
        assert!(Graph::torus(2).is_err());

        let c = Graph::complete(6).unwrap();
        assert_eq!(c.edge_count(), 15);
        assert!(c.is_complete());
        assert_eq!(c.diameter(), Ok(1));

        let s = Graph::star(5).unwrap();
        assert_eq!(s.degrees(), vec![4, 1, 1, 1, 1]);
        assert_eq!(s.diameter(), Ok(2));

        let ch = Graph::chain(5).unwrap();
        assert_eq!(ch.edges(), vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(ch.diameter(), Ok(4));
        assert!(Graph::chain(1).is_err() && Graph::star(1).is_err());
    }

    #[test]
    fn trees_follow_the_index_rules() {
        let b = Graph::binary_tree(16).unwrap();
        assert_eq!(b.neighbors(0), &[1]);
        assert_eq!(b.neighbors(1), &[0, 2, 3]);
        assert_eq!(b.neighbors(5), &[2, 10, 11]);
        assert_eq!(b.neighbors(15), &[7]);
        assert_eq!(b.edge_count(), 15);
        assert_eq!(b.max_degree(), 3);
        assert_eq!(b.diameter(), Ok(6));

        let r = Graph::reversed_binary_tree(16).unwrap();
        assert_eq!(r.neighbors(15), &[14]);
        assert_eq!(r.neighbors(14), &[12, 13, 15]);
        for (u, v) in b.edges() {
            assert!(r.has_edge(15 - u, 15 - v));
        }

        let t = Graph::three_tree(10).unwrap();
        assert_eq!(t.neighbors(0), &[1, 2, 3]);
        assert_eq!(t.neighbors(1), &[0, 4, 5]);
        assert_eq!(t.neighbors(2), &[0, 6, 7]);
        assert_eq!(t.neighbors(3), &[0, 8, 9]);
        assert_eq!(t.edge_count(), 9);
        assert!(t.is_connected());
    }

    #[test]
    fn hypercube_neighbours_differ_in_one_bit() {
        let h = Graph::hypercube(16).unwrap();
        assert_eq!(h.neighbors(5), &[1, 4, 7, 13]);
        assert!(h.is_regular() && h.degree(0) == 4);
        assert_eq!(h.edge_count(), 32);
        assert_eq!(h.diameter(), Ok(4));
        assert_eq!(
            Graph::hypercube(12),
            Err(GraphError::NotPowerOfTwo {
                topology: "hypercube",
                n: 12
            })
        );
        assert!(Graph::hypercube(1).is_err());
    }

    #[test]
    fn social_graph_matches_the_spec() {
        let g = Graph::social(32).unwrap();
        assert_eq!(g.edge_count(), 89);
        assert_eq!(
            g.degrees(),
            vec![
                8, 7, 8, 7, 4, 4, 4, 3, 4, 4, 4, 6, 7, 8, 5, 2, 2, 2, 3, 3, 6, 4, 8, 8, 10, 14, 12,
                5, 4, 6, 3, 3
            ]
        );
        assert!(g.is_bipartite());
        assert_eq!(g.diameter(), Ok(4));
        // Women only meet events.
        assert!(g.edges().iter().all(|&(u, v)| u < 18 && v >= 18));
        assert_eq!(
            Graph::social(16),
            Err(GraphError::WrongNodeCount {
                topology: "social",
                n: 16,
                expected: 32
            })
        );
    }

    #[test]
    fn erdos_renyi_is_seeded_and_connected() {
        let a = Graph::erdos_renyi(20, 0.25, 7).unwrap();
        let b = Graph::erdos_renyi(20, 0.25, 7).unwrap();
        let c = Graph::erdos_renyi(20, 0.25, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.is_connected() && c.is_connected());
        assert_eq!(Graph::erdos_renyi(6, 1.0, 0).unwrap().edge_count(), 15);
        assert_eq!(
            Graph::erdos_renyi(5, 0.0, 0),
            Err(GraphError::NoConnectedSample {
                n: 5,
                p: 0.0,
                tries: ERDOS_RENYI_MAX_TRIES
            })
        );
        assert!(Graph::erdos_renyi(5, 1.5, 0).is_err());
        assert!(Graph::erdos_renyi(5, f64::NAN, 0).is_err());
    }

    #[test]
    fn topology_names_round_trip_and_build() {
        for name in [
            "ring",
            "torus",
            "complete",
            "star",
            "chain",
            "binary-tree",
            "reversed-binary-tree",
            "double-binary-trees",
            "three-tree",
            "hypercube",
            "social",
            "erdos-renyi",
            "exponential",
            "erdos-renyi:0.5",
        ] {
            let t: Topology = name.parse().unwrap();
            assert_eq!(t.to_string(), name);
        }
        assert_eq!("Binary_Tree".parse::<Topology>(), Ok(Topology::BinaryTree));
        match "mesh".parse::<Topology>() {
            Err(GraphError::UnknownName {
                kind,
                value,
                accepted,
            }) => {
                assert_eq!((kind, value.as_str()), ("topology", "mesh"));
                assert!(accepted.contains("double-binary-trees") && accepted.contains("social"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!("erdos-renyi:2".parse::<Topology>().is_err());
        assert!("erdos-renyi:x".parse::<Topology>().is_err());

        assert_eq!(
            Topology::Torus.static_graph(16, 0),
            Ok(Graph::torus(4).unwrap())
        );
        assert_eq!(
            Topology::Torus.build(12, 0),
            Err(GraphError::NotPerfectSquare { n: 12 })
        );
        assert_eq!(
            Topology::Torus.build(4, 0),
            Err(GraphError::NotPerfectSquare { n: 4 })
        );
        match Topology::DoubleBinaryTrees.build(8, 0).unwrap() {
            TopologyGraphs::DoubleBinaryTrees { tree, reversed } => {
                assert_eq!(tree, Graph::binary_tree(8).unwrap());
                assert_eq!(reversed, Graph::reversed_binary_tree(8).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = Topology::Exponential.build(8, 0).unwrap();
        assert_eq!(e.n(), 8);
        assert!(e.as_static().is_none());
        assert_eq!(
            Topology::Exponential.static_graph(8, 0),
            Err(GraphError::NotStatic {
                topology: "exponential"
            })
        );
        assert!(Topology::Exponential.build(6, 0).is_err());
        let er = Topology::ErdosRenyi { p: None }
            .static_graph(16, 3)
            .unwrap();
        assert!(er.is_connected() && er.n() == 16);
        assert!((default_erdos_renyi_p(16) - 2.0 * 16f64.ln() / 16.0).abs() < 1e-15);
    }
}
