//! Spanning trees for RelaySum/RelaySGD (ALGORITHMS.md §3, §5.5): validated trees, chain from a
//! ring, lexicographic BFS shortest-path trees, tree distances and the learning-rate
//! correction factor.

use std::fmt;
use std::str::FromStr;

use super::adjacency::Graph;
use super::error::{GraphError, Result};
use super::topology::{Topology, TopologyGraphs};

/// An undirected tree on nodes 0..n−1 (n − 1 edges, connected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanningTree {
    graph: Graph,
}

impl SpanningTree {
    /// Validates that `graph` is a tree (non-empty, n − 1 edges, connected).
    pub fn new(graph: Graph) -> Result<SpanningTree> {
        let n = graph.n();
        let edges = graph.edge_count();
        let connected = graph.is_connected();
        if n == 0 || edges + 1 != n || !connected {
            return Err(GraphError::NotATree {
                n,
                edges,
                connected,
            });
        }
        Ok(SpanningTree { graph })
    }

    /// Builds a tree from a parent array (`None` for the root).
    pub fn from_parents(parents: &[Option<usize>]) -> Result<SpanningTree> {
        let edges: Vec<(usize, usize)> = parents
            .iter()
            .enumerate()
            .filter_map(|(v, p)| p.map(|p| (p, v)))
            .collect();
        SpanningTree::new(Graph::from_edges(parents.len(), &edges)?)
    }

    /// The chain 0–1–…–(n−1), n ≥ 2.
    pub fn chain(n: usize) -> Result<SpanningTree> {
        SpanningTree::new(Graph::chain(n)?)
    }

    /// The chain obtained from the ring 0–1–…–(n−1)–0 by dropping edge (n−1, 0); errors if
    /// `ring` is not exactly that ring.
    pub fn chain_from_ring(ring: &Graph) -> Result<SpanningTree> {
        let n = ring.n();
        if n < 3 {
            return Err(GraphError::TooFewNodes {
                topology: "ring",
                n,
                min: 3,
            });
        }
        for i in 0..n {
            let mut want = vec![(i + 1) % n, (i + n - 1) % n];
            want.sort_unstable();
            if ring.neighbors(i) != want.as_slice() {
                return Err(GraphError::NotARing {
                    last: n - 1,
                    node: i,
                    neighbors: ring.neighbors(i).to_vec(),
                });
            }
        }
        SpanningTree::chain(n)
    }

    /// Shortest-path (BFS) spanning tree of a connected graph from `root`, where parent(v) is
    /// the neighbour one level closer whose chosen root path is lexicographically smallest.
    pub fn bfs(g: &Graph, root: usize) -> Result<SpanningTree> {
        SpanningTree::from_parents(&bfs_parents(g, root)?)
    }

    /// The underlying graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.graph.n()
    }

    /// Sorted tree neighbours of node `i`.
    pub fn neighbors(&self, i: usize) -> &[usize] {
        self.graph.neighbors(i)
    }

    /// Tree edges (u, v), u < v.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.graph.edges()
    }

    /// Parent array of the tree rooted at `root` (`None` at the root).
    pub fn parents(&self, root: usize) -> Result<Vec<Option<usize>>> {
        bfs_parents(&self.graph, root)
    }

    /// Tree distances from node `i` (all zero if `i` ≥ n).
    pub fn distances_from(&self, i: usize) -> Vec<usize> {
        self.graph
            .bfs_distances(i)
            .into_iter()
            .map(|d| d.unwrap_or(0))
            .collect()
    }

    /// All-pairs tree distances dist_T(i, j).
    pub fn distances(&self) -> Vec<Vec<usize>> {
        (0..self.n()).map(|i| self.distances_from(i)).collect()
    }

    /// Largest tree distance from node `i`.
    pub fn eccentricity(&self, i: usize) -> Result<usize> {
        self.graph.eccentricity(i)
    }

    /// Tree diameter (longest path, in edges).
    pub fn diameter(&self) -> usize {
        (0..self.n())
            .map(|i| self.distances_from(i).into_iter().max().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// RelaySGD learning-rate correction c = 1/n + (1/n²)·Σ_{i,j} dist_T(i, j) (ordered pairs).
    pub fn correction_factor(&self) -> f64 {
        let n = self.n() as f64;
        let total: usize = (0..self.n())
            .map(|i| self.distances_from(i).into_iter().sum::<usize>())
            .sum();
        1.0 / n + total as f64 / (n * n)
    }
}

/// Parent array of the lexicographic BFS shortest-path tree of a connected graph from `root`.
pub fn bfs_parents(g: &Graph, root: usize) -> Result<Vec<Option<usize>>> {
    let n = g.n();
    if root >= n {
        return Err(GraphError::NodeOutOfRange { node: root, n });
    }
    g.check_connected()?;
    let dist: Vec<usize> = g
        .bfs_distances(root)
        .into_iter()
        .map(|d| d.unwrap_or(0))
        .collect();
    let depth = dist.iter().copied().max().unwrap_or(0);
    let mut levels: Vec<Vec<usize>> = vec![Vec::new(); depth + 1];
    for (v, &d) in dist.iter().enumerate() {
        levels[d].push(v);
    }
    // rank[v]: position of v's chosen root path in lexicographic order within its level.
    let mut rank = vec![0usize; n];
    let mut parent: Vec<Option<usize>> = vec![None; n];
    for (k, level) in levels.iter().enumerate().skip(1) {
        let mut keyed: Vec<(usize, usize)> = Vec::with_capacity(level.len());
        for &v in level {
            let p = g
                .neighbors(v)
                .iter()
                .copied()
                .filter(|&u| dist[u] + 1 == k)
                .min_by_key(|&u| rank[u]);
            parent[v] = p;
            keyed.push((p.map_or(0, |p| rank[p]), v));
        }
        keyed.sort_unstable();
        for (r, &(_, v)) in keyed.iter().enumerate() {
            rank[v] = r;
        }
    }
    Ok(parent)
}

/// The RelaySGD tree(s) for a topology: ring → chain, double binary trees → both trees, a
/// topology that is already a tree → itself, any other static graph → BFS tree from `root`.
pub fn relay_trees(
    topology: &Topology,
    n: usize,
    seed: u64,
    root: usize,
) -> Result<Vec<SpanningTree>> {
    match topology.build(n, seed)? {
        TopologyGraphs::DoubleBinaryTrees { tree, reversed } => {
            Ok(vec![SpanningTree::new(tree)?, SpanningTree::new(reversed)?])
        }
        TopologyGraphs::Exponential(_) => Err(GraphError::NotStatic {
            topology: topology.name(),
        }),
        TopologyGraphs::Static(g) => {
            if *topology == Topology::Ring {
                Ok(vec![SpanningTree::chain_from_ring(&g)?])
            } else if g.edge_count() + 1 == g.n() && g.is_connected() {
                Ok(vec![SpanningTree::new(g)?])
            } else {
                Ok(vec![SpanningTree::bfs(&g, root)?])
            }
        }
    }
}

/// RelaySGD learning-rate correction option (`lr_correction`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LrCorrection {
    /// No correction (factor 1).
    None,
    /// The exact factor c of `SpanningTree::correction_factor` (default).
    #[default]
    Exact,
    /// The paper's approximation: tree diameter / 2.
    HalfDiameter,
    /// A user-given factor.
    Value(f64),
}

/// The accepted learning-rate correction names.
pub const LR_CORRECTION_NAMES: &str =
    "none, exact, half-diameter, value:C (or a plain positive number C)";

impl LrCorrection {
    /// The factor that multiplies η; for several trees (double trees) the mean over trees.
    pub fn factor(&self, trees: &[SpanningTree]) -> f64 {
        let mean = |f: &dyn Fn(&SpanningTree) -> f64| {
            if trees.is_empty() {
                1.0
            } else {
                trees.iter().map(f).sum::<f64>() / trees.len() as f64
            }
        };
        match *self {
            LrCorrection::None => 1.0,
            LrCorrection::Exact => mean(&SpanningTree::correction_factor),
            LrCorrection::HalfDiameter => mean(&|t| t.diameter() as f64 / 2.0),
            LrCorrection::Value(c) => c,
        }
    }
}

impl fmt::Display for LrCorrection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrCorrection::None => f.write_str("none"),
            LrCorrection::Exact => f.write_str("exact"),
            LrCorrection::HalfDiameter => f.write_str("half-diameter"),
            LrCorrection::Value(c) => write!(f, "value:{c}"),
        }
    }
}

impl FromStr for LrCorrection {
    type Err = GraphError;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let number = t.strip_prefix("value:").unwrap_or(&t);
        match t.as_str() {
            "none" => return Ok(LrCorrection::None),
            "exact" => return Ok(LrCorrection::Exact),
            "half-diameter" => return Ok(LrCorrection::HalfDiameter),
            _ => {}
        }
        match number.trim().parse::<f64>() {
            Ok(c) if c.is_finite() && c > 0.0 => Ok(LrCorrection::Value(c)),
            Ok(c) => Err(GraphError::InvalidParameter {
                name: "learning-rate correction factor",
                value: c,
                reason: "must be finite and > 0",
            }),
            Err(_) => Err(GraphError::UnknownName {
                kind: "learning-rate correction",
                value: s.to_string(),
                accepted: LR_CORRECTION_NAMES.to_string(),
            }),
        }
    }
}

string_serde!(LrCorrection);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_validation() {
        assert!(SpanningTree::new(Graph::chain(5).unwrap()).is_ok());
        assert_eq!(
            SpanningTree::new(Graph::ring(5).unwrap()),
            Err(GraphError::NotATree {
                n: 5,
                edges: 5,
                connected: true
            })
        );
        let forest = Graph::from_edges(4, &[(0, 1), (2, 3)]).unwrap();
        assert_eq!(
            SpanningTree::new(forest),
            Err(GraphError::NotATree {
                n: 4,
                edges: 2,
                connected: false
            })
        );
        // 4 nodes, 3 edges, but a triangle plus an isolated node.
        let tri = Graph::from_edges(4, &[(0, 1), (1, 2), (0, 2)]).unwrap();
        assert!(matches!(
            SpanningTree::new(tri),
            Err(GraphError::NotATree {
                connected: false,
                ..
            })
        ));
        let t = SpanningTree::from_parents(&[None, Some(0), Some(0), Some(1)]).unwrap();
        assert_eq!(t.edges(), vec![(0, 1), (0, 2), (1, 3)]);
        assert_eq!(t.parents(3).unwrap(), vec![Some(1), Some(3), Some(0), None]);
        assert!(SpanningTree::from_parents(&[None, Some(2), Some(1)]).is_err());
        assert!(SpanningTree::new(Graph::from_edges(1, &[]).unwrap()).is_ok());
    }

    #[test]
    fn chain_from_ring_checks_the_ring() {
        let t = SpanningTree::chain_from_ring(&Graph::ring(6).unwrap()).unwrap();
        assert_eq!(t.edges(), Graph::chain(6).unwrap().edges());
        assert_eq!(t.diameter(), 5);
        assert_eq!(t.eccentricity(2), Ok(3));
        let relabelled = Graph::ring(5).unwrap().relabel(&[0, 2, 1, 3, 4]).unwrap();
        assert!(matches!(
            SpanningTree::chain_from_ring(&relabelled),
            Err(GraphError::NotARing { node: 0, .. })
        ));
        assert!(SpanningTree::chain_from_ring(&Graph::complete(3).unwrap()).is_ok());
        assert!(SpanningTree::chain_from_ring(&Graph::chain(4).unwrap()).is_err());
    }

    #[test]
    fn bfs_tree_uses_lexicographic_paths() {
        // Levels: {0}; {1, 4}; {5 (via 1), 2 (via 4)}; node 3 touches 5 and 2.
        // Paths: [0,1,5] < [0,4,2], so parent(3) = 5 although 2 < 5.
        let g = Graph::from_edges(6, &[(0, 1), (0, 4), (1, 5), (4, 2), (5, 3), (2, 3)]).unwrap();
        let p = bfs_parents(&g, 0).unwrap();
        assert_eq!(p, vec![None, Some(0), Some(4), Some(5), Some(0), Some(1)]);
        // A 4-cycle: node 2 has candidates 1 and 3 with paths [0,1] < [0,3].
        let c4 = Graph::ring(4).unwrap();
        assert_eq!(
            bfs_parents(&c4, 0).unwrap(),
            vec![None, Some(0), Some(1), Some(0)]
        );
        // Root 2 on the same cycle: node 0 has candidates 1 ([2,1]) and 3 ([2,3]).
        assert_eq!(
            bfs_parents(&c4, 2).unwrap(),
            vec![Some(1), Some(2), None, Some(2)]
        );
        assert!(bfs_parents(&c4, 4).is_err());
        let disconnected = Graph::from_edges(3, &[(0, 1)]).unwrap();
        assert!(matches!(
            SpanningTree::bfs(&disconnected, 0),
            Err(GraphError::Disconnected { .. })
        ));
        // Complete graph: BFS tree is the star at the root.
        let t = SpanningTree::bfs(&Graph::complete(5).unwrap(), 3).unwrap();
        assert_eq!(t.neighbors(3), &[0, 1, 2, 4]);
    }

    #[test]
    fn social_bfs_trees() {
        let g = Graph::social(32).unwrap();
        let mut diameters = Vec::new();
        for root in 0..32 {
            let t = SpanningTree::bfs(&g, root).unwrap();
            // Shortest-path tree: tree depth equals graph distance from the root.
            let dg = g.bfs_distances(root);
            let dt = t.distances_from(root);
            assert!(dg.iter().zip(&dt).all(|(a, b)| *a == Some(*b)));
            assert_eq!(t.edges().len(), 31);
            for (u, v) in t.edges() {
                assert!(g.has_edge(u, v));
            }
            diameters.push(t.diameter());
        }
        let (lo, hi) = (
            *diameters.iter().min().unwrap(),
            *diameters.iter().max().unwrap(),
        );
        assert!(lo >= 5 && hi <= 7, "diameters {diameters:?}");
        assert!(
            diameters.contains(&5) && diameters.contains(&7),
            "{diameters:?}"
        );
    }

    #[test]
    fn correction_factor_table() {
        let table = [
            (4, 1.5, 1.375, 1.375),
            (8, 2.75, 2.15625, 1.65625),
            (16, 5.375, 3.3203125, 1.8203125),
            (32, 10.6875, 4.783203125, 1.908203125),
        ];
        for (n, chain, bin, star) in table {
            let c = SpanningTree::chain(n).unwrap().correction_factor();
            let b = SpanningTree::new(Graph::binary_tree(n).unwrap())
                .unwrap()
                .correction_factor();
            let s = SpanningTree::new(Graph::star(n).unwrap())
                .unwrap()
                .correction_factor();
            assert!((c - chain).abs() < 1e-12, "chain n={n}: {c}");
            assert!((b - bin).abs() < 1e-12, "binary n={n}: {b}");
            assert!((s - star).abs() < 1e-12, "star n={n}: {s}");
            // Closed forms: chain (n^2 + 2)/(3n); star 2 - 3/n + 2/n^2.
            let nf = n as f64;
            assert!((c - (nf * nf + 2.0) / (3.0 * nf)).abs() < 1e-12);
            assert!((s - (2.0 - 3.0 / nf + 2.0 / (nf * nf))).abs() < 1e-12);
        }
        // The reversed tree is isomorphic, so it has the same factor.
        let r = SpanningTree::new(Graph::reversed_binary_tree(16).unwrap()).unwrap();
        assert!((r.correction_factor() - 3.3203125).abs() < 1e-12);
    }

    #[test]
    fn distances_and_diameter() {
        let t = SpanningTree::new(Graph::binary_tree(16).unwrap()).unwrap();
        assert_eq!(t.diameter(), 6);
        let d = t.distances();
        assert_eq!(d[0][15], 4); // 0-1-3-7-15
        assert_eq!(d[8][15], 6); // 8-4-2-1-3-7-15
        assert_eq!(t.eccentricity(1), Ok(3));
        assert!(d.iter().enumerate().all(|(i, r)| r[i] == 0));
    }

    #[test]
    fn relay_trees_per_topology() {
        let ring = relay_trees(&Topology::Ring, 16, 0, 0).unwrap();
        assert_eq!(ring.len(), 1);
        assert!((ring[0].correction_factor() - 5.375).abs() < 1e-12);
        let dbl = relay_trees(&Topology::DoubleBinaryTrees, 16, 0, 0).unwrap();
        assert_eq!(dbl.len(), 2);
        assert_eq!(dbl[1].neighbors(15), &[14]);
        let social = relay_trees(&Topology::Social, 32, 0, 3).unwrap();
        assert_eq!(
            social[0],
            SpanningTree::bfs(&Graph::social(32).unwrap(), 3).unwrap()
        );
        let star = relay_trees(&Topology::Star, 8, 0, 5).unwrap();
        assert_eq!(star[0].graph(), &Graph::star(8).unwrap());
        assert!(relay_trees(&Topology::Exponential, 8, 0, 0).is_err());
        let torus = relay_trees(&Topology::Torus, 16, 0, 0).unwrap();
        // Shortest-path tree: depth from the root equals the torus eccentricity 4.
        assert_eq!(torus[0].eccentricity(0), Ok(4));
        assert!(torus[0].diameter() <= 8);
    }

    #[test]
    fn lr_correction_options() {
        let chain = [SpanningTree::chain(16).unwrap()];
        assert_eq!(LrCorrection::None.factor(&chain), 1.0);
        assert!((LrCorrection::Exact.factor(&chain) - 5.375).abs() < 1e-12);
        assert_eq!(LrCorrection::HalfDiameter.factor(&chain), 7.5);
        assert_eq!(LrCorrection::Value(5.0).factor(&chain), 5.0);
        assert_eq!("half_diameter".parse(), Ok(LrCorrection::HalfDiameter));
        assert_eq!("value:3".parse(), Ok(LrCorrection::Value(3.0)));
        assert_eq!("5".parse(), Ok(LrCorrection::Value(5.0)));
        assert!("value:-1".parse::<LrCorrection>().is_err());
        assert!(matches!(
            "sometimes".parse::<LrCorrection>(),
            Err(GraphError::UnknownName { .. })
        ));
        for c in [
            LrCorrection::None,
            LrCorrection::Exact,
            LrCorrection::HalfDiameter,
            LrCorrection::Value(2.5),
        ] {
            assert_eq!(c.to_string().parse::<LrCorrection>(), Ok(c));
        }
    }
}
