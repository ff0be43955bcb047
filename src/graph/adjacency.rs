//! The undirected simple graph type with sorted adjacency lists, and its structural queries
//! (degrees, edges, connectivity, BFS distances, diameter).

use std::collections::VecDeque;

use super::error::{GraphError, Result};

/// An undirected simple graph on nodes 0..n−1 with sorted, duplicate-free adjacency lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    adj: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds a graph on `n` nodes from undirected edges; rejects self loops, duplicates and
    /// out-of-range ids.
    pub fn from_edges(n: usize, edges: &[(usize, usize)]) -> Result<Graph> {
        let mut adj = vec![Vec::new(); n];
        for &(u, v) in edges {
            for node in [u, v] {
                if node >= n {
                    return Err(GraphError::NodeOutOfRange { node, n });
                }
            }
            if u == v {
                return Err(GraphError::SelfLoop { node: u });
            }
            adj[u].push(v);
            adj[v].push(u);
        }
        for (u, list) in adj.iter_mut().enumerate() {
            list.sort_unstable();
            if let Some(w) = list.windows(2).find(|w| w[0] == w[1]) {
                let v = w[0];
                return Err(GraphError::DuplicateEdge {
                    u: u.min(v),
                    v: u.max(v),
                });
            }
        }
        Ok(Graph { adj })
    }

    /// Builds a graph from per-node neighbour lists (any order); rejects asymmetric lists,
    /// self loops, duplicates and out-of-range ids.
    pub fn from_adjacency(lists: &[Vec<usize>]) -> Result<Graph> {
        let n = lists.len();
        let mut adj: Vec<Vec<usize>> = Vec::with_capacity(n);
        for (u, list) in lists.iter().enumerate() {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            for w in sorted.windows(2) {
                if w[0] == w[1] {
                    return Err(GraphError::DuplicateEdge {
                        u: u.min(w[0]),
                        v: u.max(w[0]),
                    });
                }
            }
            for &v in &sorted {
                if v >= n {
                    return Err(GraphError::NodeOutOfRange { node: v, n });
                }
                if v == u {
                    return Err(GraphError::SelfLoop { node: u });
                }
            }
            adj.push(sorted);
        }
        if let Some((u, v)) = first_asymmetry(&adj) {
            return Err(GraphError::AsymmetricAdjacency { u, v });
        }
        Ok(Graph { adj })
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.adj.len()
    }

    /// Sorted neighbours of node `i` (empty for an out-of-range id).
    pub fn neighbors(&self, i: usize) -> &[usize] {
        self.adj.get(i).map_or(&[], Vec::as_slice)
    }

    /// All sorted adjacency lists.
    pub fn adjacency(&self) -> &[Vec<usize>] {
        &self.adj
    }

    /// Degree of node `i` (0 for an out-of-range id).
    pub fn degree(&self, i: usize) -> usize {
        self.neighbors(i).len()
    }

    /// Degrees of all nodes.
    pub fn degrees(&self) -> Vec<usize> {
        self.adj.iter().map(Vec::len).collect()
    }

    /// Largest degree (0 for an empty graph).
    pub fn max_degree(&self) -> usize {
        self.adj.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.adj.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// Undirected edges (u, v) with u < v in lexicographic order.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.adj
            .iter()
            .enumerate()
            .flat_map(|(u, list)| list.iter().filter(move |&&v| v > u).map(move |&v| (u, v)))
            .collect()
    }

    /// Whether the edge {u, v} exists.
    pub fn has_edge(&self, u: usize, v: usize) -> bool {
        self.neighbors(u).binary_search(&v).is_ok()
    }

    /// Whether every node has the same degree.
    pub fn is_regular(&self) -> bool {
        self.adj.windows(2).all(|w| w[0].len() == w[1].len())
    }

    /// Whether every pair of distinct nodes is adjacent.
    pub fn is_complete(&self) -> bool {
        let n = self.n();
        self.adj.iter().all(|l| l.len() + 1 == n)
    }

    /// The graph with node w renamed to `perm[w]`; `perm` must be a permutation of 0..n−1.
    pub fn relabel(&self, perm: &[usize]) -> Result<Graph> {
        let n = self.n();
        if perm.len() != n {
            return Err(GraphError::SizeMismatch {
                what: "relabelling permutation",
                expected: n,
                got: perm.len(),
            });
        }
        let mut seen = vec![false; n];
        for &p in perm {
            if p >= n {
                return Err(GraphError::NodeOutOfRange { node: p, n });
            }
            if seen[p] {
                return Err(GraphError::InvalidParameter {
                    name: "permutation entry",
                    value: p as f64,
                    reason: "appears twice; a relabelling must be a permutation",
                });
            }
            seen[p] = true;
        }
        let edges: Vec<(usize, usize)> = self
            .edges()
            .into_iter()
            .map(|(u, v)| (perm[u], perm[v]))
            .collect();
        Graph::from_edges(n, &edges)
    }

    /// BFS hop distances from `src` (None for unreachable nodes; all None if `src` ≥ n).
    pub fn bfs_distances(&self, src: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.n()];
        if src >= self.n() {
            return dist;
        }
        dist[src] = Some(0);
        let mut queue = VecDeque::from([src]);
        while let Some(u) = queue.pop_front() {
            let du = dist[u].unwrap_or(0);
            for &v in &self.adj[u] {
                if dist[v].is_none() {
                    dist[v] = Some(du + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    /// Whether all nodes are reachable from node 0 (an empty graph counts as connected).
    pub fn is_connected(&self) -> bool {
        self.check_connected().is_ok()
    }

    /// `Ok(())` if connected, else `GraphError::Disconnected` with the size of node 0's component.
    pub fn check_connected(&self) -> Result<()> {
        let n = self.n();
        if n == 0 {
            return Ok(());
        }
        let reached = self.bfs_distances(0).iter().filter(|d| d.is_some()).count();
        if reached == n {
            Ok(())
        } else {
            Err(GraphError::Disconnected { n, reached })
        }
    }

    /// All-pairs hop distances (n BFS runs); errors if the graph is disconnected.
    pub fn distance_matrix(&self) -> Result<Vec<Vec<usize>>> {
        self.check_connected()?;
        Ok((0..self.n())
            .map(|s| {
                self.bfs_distances(s)
                    .into_iter()
                    .map(|d| d.unwrap_or(0))
                    .collect()
            })
            .collect())
    }

    /// Largest distance from node `i` to any node; errors if disconnected or `i` ≥ n.
    pub fn eccentricity(&self, i: usize) -> Result<usize> {
        if i >= self.n() {
            return Err(GraphError::NodeOutOfRange {
                node: i,
                n: self.n(),
            });
        }
        self.check_connected()?;
        Ok(self
            .bfs_distances(i)
            .into_iter()
            .map(|d| d.unwrap_or(0))
            .max()
            .unwrap_or(0))
    }

    /// Largest distance between any two nodes; errors if disconnected.
    pub fn diameter(&self) -> Result<usize> {
        Ok(self
            .distance_matrix()?
            .iter()
            .flat_map(|r| r.iter().copied())
            .max()
            .unwrap_or(0))
    }

    /// Whether the graph is two-colourable (has no odd cycle).
    pub fn is_bipartite(&self) -> bool {
        let n = self.n();
        let mut colour: Vec<Option<bool>> = vec![None; n];
        for s in 0..n {
            if colour[s].is_some() {
                continue;
            }
            colour[s] = Some(false);
            let mut queue = VecDeque::from([s]);
            while let Some(u) = queue.pop_front() {
                let cu = colour[u].unwrap_or(false);
                for &v in &self.adj[u] {
                    match colour[v] {
                        None => {
                            colour[v] = Some(!cu);
                            queue.push_back(v);
                        }
                        Some(cv) if cv == cu => return false,
                        Some(_) => {}
                    }
                }
            }
        }
        true
    }
}

/// The first (u, v) such that u lists v but v does not list u, for directed adjacency lists.
pub fn first_asymmetry(lists: &[Vec<usize>]) -> Option<(usize, usize)> {
    for (u, list) in lists.iter().enumerate() {
        for &v in list {
            match lists.get(v) {
                Some(back) if back.contains(&u) => {}
                _ => return Some((u, v)),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_edges_sorts_and_counts() {
        let g = Graph::from_edges(4, &[(2, 0), (0, 1), (3, 2)]).unwrap();
        assert_eq!(g.neighbors(0), &[1, 2]);
        assert_eq!(g.neighbors(2), &[0, 3]);
        assert_eq!(g.degrees(), vec![2, 1, 2, 1]);
        assert_eq!(g.edge_count(), 3);
        assert_eq!(g.edges(), vec![(0, 1), (0, 2), (2, 3)]);
        assert!(g.has_edge(3, 2) && !g.has_edge(1, 3));
        assert_eq!(g.max_degree(), 2);
        assert!(!g.is_regular());
    }

    #[test]
    fn from_edges_rejects_bad_input() {
        assert_eq!(
            Graph::from_edges(3, &[(0, 1), (1, 0)]),
            Err(GraphError::DuplicateEdge { u: 0, v: 1 })
        );
        assert_eq!(
            Graph::from_edges(3, &[(1, 1)]),
            Err(GraphError::SelfLoop { node: 1 })
        );
        assert_eq!(
            Graph::from_edges(3, &[(0, 3)]),
            Err(GraphError::NodeOutOfRange { node: 3, n: 3 })
        );
    }

    #[test]
    fn asymmetric_adjacency_is_detected() {
        let lists = vec![vec![1, 2], vec![0], vec![]];
        assert_eq!(first_asymmetry(&lists), Some((0, 2)));
        assert_eq!(
            Graph::from_adjacency(&lists),
            Err(GraphError::AsymmetricAdjacency { u: 0, v: 2 })
        );
        let ok = Graph::from_adjacency(&[vec![2, 1], vec![0], vec![0]]).unwrap();
        assert_eq!(ok.neighbors(0), &[1, 2]);
        assert_eq!(
            Graph::from_adjacency(&[vec![1, 1], vec![0]]),
            Err(GraphError::DuplicateEdge { u: 0, v: 1 })
        );
        assert_eq!(
            Graph::from_adjacency(&[vec![0]]),
            Err(GraphError::SelfLoop { node: 0 })
        );
        assert_eq!(
            Graph::from_adjacency(&[vec![5]]),
            Err(GraphError::NodeOutOfRange { node: 5, n: 1 })
        );
    }

    #[test]
    fn connectivity_distances_and_diameter() {
        // Path 0-1-2-3 plus an isolated node 4.
        let g = Graph::from_edges(5, &[(0, 1), (1, 2), (2, 3)]).unwrap();
        assert_eq!(
            g.bfs_distances(0),
            vec![Some(0), Some(1), Some(2), Some(3), None]
        );
        assert!(!g.is_connected());
        assert_eq!(
            g.check_connected(),
            Err(GraphError::Disconnected { n: 5, reached: 4 })
        );
        assert!(g.diameter().is_err());
        let p = Graph::from_edges(4, &[(0, 1), (1, 2), (2, 3)]).unwrap();
        assert_eq!(p.diameter(), Ok(3));
        assert_eq!(p.eccentricity(1), Ok(2));
        assert_eq!(p.distance_matrix().unwrap()[3], vec![3, 2, 1, 0]);
        assert!(p.eccentricity(9).is_err());
        assert!(p.is_bipartite());
        let triangle = Graph::from_edges(3, &[(0, 1), (1, 2), (0, 2)]).unwrap();
        assert!(!triangle.is_bipartite());
        assert!(triangle.is_complete() && triangle.is_regular());
    }

    #[test]
    fn relabel_maps_edges_and_checks_permutation() {
        let g = Graph::from_edges(3, &[(0, 1), (1, 2)]).unwrap();
        let r = g.relabel(&[2, 1, 0]).unwrap();
        assert_eq!(r.edges(), vec![(0, 1), (1, 2)]);
        let r = g.relabel(&[1, 0, 2]).unwrap();
        assert_eq!(r.edges(), vec![(0, 1), (0, 2)]);
        assert!(g.relabel(&[0, 0, 1]).is_err());
        assert!(g.relabel(&[0, 1]).is_err());
    }
}
