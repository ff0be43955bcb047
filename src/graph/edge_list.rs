//! Parsing user-supplied edge-list files: one "u v" pair per line, `#` comments, blank lines.

use std::collections::HashMap;

use super::adjacency::Graph;
use super::error::{GraphError, Result};

fn at(line: usize, e: GraphError) -> GraphError {
    GraphError::AtLine {
        line,
        source: Box::new(e),
    }
}

impl Graph {
    /// Parses an edge list ("u v" per line, `#` starts a comment, blank lines skipped).
    ///
    /// With `n = None` the node count is the largest id + 1. Every node 0..n−1 must appear in
    /// some edge (no gaps); self loops, duplicate edges (in either orientation) and ids ≥ n are
    /// rejected with the 1-based line number. Connectivity is not required (see
    /// `Graph::check_connected`).
    pub fn from_edge_list(text: &str, n: Option<usize>) -> Result<Graph> {
        let mut edges = Vec::new();
        let mut first_line: HashMap<(usize, usize), usize> = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let parse_err = || {
                at(
                    line_no,
                    GraphError::Parse {
                        content: content.to_string(),
                    },
                )
            };
            let mut tokens = content.split_whitespace();
            let (Some(a), Some(b), None) = (tokens.next(), tokens.next(), tokens.next()) else {
                return Err(parse_err());
            };
            let (Ok(u), Ok(v)) = (a.parse::<usize>(), b.parse::<usize>()) else {
                return Err(parse_err());
            };
            if u == v {
                return Err(at(line_no, GraphError::SelfLoop { node: u }));
            }
            if let Some(n) = n {
                for node in [u, v] {
                    if node >= n {
                        return Err(at(line_no, GraphError::NodeOutOfRange { node, n }));
                    }
                }
            }
            let key = (u.min(v), u.max(v));
            if first_line.insert(key, line_no).is_some() {
                return Err(at(
                    line_no,
                    GraphError::DuplicateEdge { u: key.0, v: key.1 },
                ));
            }
            edges.push(key);
        }
        if edges.is_empty() {
            return Err(GraphError::EmptyEdgeList);
        }
        let n = match n {
            Some(n) => n,
            None => {
                // Every node has an edge, so m edges span at most 2m nodes: a larger id is
                // refused before anything is allocated for it.
                let (&(_, node), line) = edges
                    .iter()
                    .map(|e| (e, first_line[e]))
                    .max_by_key(|(e, _)| e.1)
                    .expect("edges is not empty");
                if node >= 2 * edges.len() {
                    return Err(at(
                        line,
                        GraphError::NodeIdTooLarge {
                            node,
                            edges: edges.len(),
                        },
                    ));
                }
                node + 1
            }
        };
        let g = Graph::from_edges(n, &edges)?;
        if let Some(node) = (0..n).find(|&i| g.degree(i) == 0) {
            return Err(GraphError::IsolatedNode { node, n });
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_blank_lines() {
        let text = "# a ring\n0 1\n\n1 2   # trailing comment\n  2 3\n3 0\n";
        let g = Graph::from_edge_list(text, None).unwrap();
        assert_eq!(g, Graph::ring(4).unwrap());
        let g = Graph::from_edge_list(text, Some(4)).unwrap();
        assert_eq!(g.edge_count(), 4);
    }

    #[test]
    fn reports_line_numbers() {
        assert_eq!(
            Graph::from_edge_list("0 1\n1 x\n", None),
            Err(GraphError::AtLine {
                line: 2,
                source: Box::new(GraphError::Parse {
                    content: "1 x".into()
                })
            })
        );
        assert_eq!(
            Graph::from_edge_list("0 1 2\n", None),
            Err(GraphError::AtLine {
                line: 1,
                source: Box::new(GraphError::Parse {
                    content: "0 1 2".into()
                })
            })
        );
        assert!(matches!(
            Graph::from_edge_list("0 -1\n", None),
            Err(GraphError::AtLine { line: 1, .. })
        ));
        assert_eq!(
            Graph::from_edge_list("0 1\n# c\n2 2\n", None),
            Err(GraphError::AtLine {
                line: 3,
                source: Box::new(GraphError::SelfLoop { node: 2 })
            })
        );
        assert_eq!(
            Graph::from_edge_list("0 1\n1 2\n2 1\n", None),
            Err(GraphError::AtLine {
                line: 3,
                source: Box::new(GraphError::DuplicateEdge { u: 1, v: 2 })
            })
        );
        assert_eq!(
            Graph::from_edge_list("0 1\n1 5\n", Some(4)),
            Err(GraphError::AtLine {
                line: 2,
                source: Box::new(GraphError::NodeOutOfRange { node: 5, n: 4 })
            })
        );
        let msg = Graph::from_edge_list("0 1\n1 5\n", Some(4))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2") && msg.contains("node 5"), "{msg}");
    }

    #[test]
    fn rejects_gaps_and_empty_files() {
        assert_eq!(
            Graph::from_edge_list("0 1\n1 3\n", None),
            Err(GraphError::IsolatedNode { node: 2, n: 4 })
        );
        assert_eq!(
            Graph::from_edge_list("0 1\n", Some(3)),
            Err(GraphError::IsolatedNode { node: 2, n: 3 })
        );
        assert_eq!(
            Graph::from_edge_list("# nothing\n\n", None),
            Err(GraphError::EmptyEdgeList)
        );
    }
}
