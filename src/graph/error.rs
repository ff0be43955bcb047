//! The one error type of the graph module: every impossible parameter, malformed input and
//! failed validation maps to a variant that names the offending values.

use thiserror::Error;

/// Errors raised while building, parsing or validating graphs, mixing matrices and schedules.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GraphError {
    /// The construction needs more nodes than were requested.
    #[error("{topology} needs at least {min} nodes, got n = {n}")]
    TooFewNodes {
        /// Name of the construction.
        topology: &'static str,
        /// Requested number of nodes.
        n: usize,
        /// Smallest admissible number of nodes.
        min: usize,
    },
    /// The construction needs a power-of-two node count.
    #[error("{topology} needs n to be a power of two (2, 4, 8, ...), got n = {n}")]
    NotPowerOfTwo {
        /// Name of the construction.
        topology: &'static str,
        /// Requested number of nodes.
        n: usize,
    },
    /// A torus on n agents needs n = m² with m ≥ 3.
    #[error("torus needs n = m*m with m >= 3 (9, 16, 25, ...), got n = {n}")]
    NotPerfectSquare {
        /// Requested number of nodes.
        n: usize,
    },
    /// The construction exists for one node count only.
    #[error("{topology} has exactly {expected} nodes, got n = {n}")]
    WrongNodeCount {
        /// Name of the construction.
        topology: &'static str,
        /// Requested number of nodes.
        n: usize,
        /// The only admissible node count.
        expected: usize,
    },
    /// A real parameter is outside its admissible range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// The admissible range, in words.
        reason: &'static str,
    },
    /// Rejection sampling of a connected Erdős–Rényi graph gave up.
    #[error("no connected Erdős–Rényi graph G({n}, {p}) found in {tries} tries; increase p")]
    NoConnectedSample {
        /// Number of nodes.
        n: usize,
        /// Edge probability.
        p: f64,
        /// Number of samples drawn.
        tries: usize,
    },
    /// An error located at a line of an edge-list file.
    #[error("edge list line {line}: {source}")]
    AtLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong on that line.
        source: Box<GraphError>,
    },
    /// A line of an edge-list file is not two non-negative integers.
    #[error("expected two node ids \"u v\", found {content:?}")]
    Parse {
        /// The offending line (comment stripped, trimmed).
        content: String,
    },
    /// An error in an edge-list file (`--topology file:PATH`).
    #[error("{path}: {source}")]
    InFile {
        /// The file as the user named it.
        path: String,
        /// What is wrong with it.
        source: Box<GraphError>,
    },
    /// An edge-list file cannot be read.
    #[error("cannot read it: {reason}")]
    Unreadable {
        /// The system's reason.
        reason: String,
    },
    /// An edge-list graph's node count differs from the number of agents.
    #[error("the edge list has {nodes} nodes, the run has {n} agents")]
    NodeCountMismatch {
        /// Nodes of the graph.
        nodes: usize,
        /// Agents of the run.
        n: usize,
    },
    /// A node id that leaves some node without an edge whatever the other lines say.
    #[error(
        "node {node} is too large for {edges} edges (ids must be 0..n without gaps, and {edges} \
         edges reach at most {} nodes)",
        2 * edges
    )]
    NodeIdTooLarge {
        /// The offending id.
        node: usize,
        /// Number of edges in the file.
        edges: usize,
    },
    /// An edge-list file holds no edges.
    #[error("the edge list has no edges")]
    EmptyEdgeList,
    /// An edge joins a node to itself.
    #[error("self loop at node {node}")]
    SelfLoop {
        /// The node.
        node: usize,
    },
    /// An undirected edge is listed twice.
    #[error("duplicate edge ({u}, {v})")]
    DuplicateEdge {
        /// Smaller endpoint.
        u: usize,
        /// Larger endpoint.
        v: usize,
    },
    /// A node id is not below the node count.
    #[error("node {node} out of range for n = {n} (ids must be 0..{n})")]
    NodeOutOfRange {
        /// The offending id.
        node: usize,
        /// Number of nodes.
        n: usize,
    },
    /// A node id in 0..n has no edge (a gap in the numbering or an isolated agent).
    #[error("node {node} has no edges (node ids must be 0..{n} without gaps)")]
    IsolatedNode {
        /// The isolated node.
        node: usize,
        /// Number of nodes.
        n: usize,
    },
    /// Adjacency lists are not symmetric: v lists u but u does not list v (or vice versa).
    #[error("asymmetric adjacency: {u} lists {v} but {v} does not list {u}")]
    AsymmetricAdjacency {
        /// The node whose list holds the edge.
        u: usize,
        /// The node whose list lacks it.
        v: usize,
    },
    /// The graph is not connected.
    #[error("graph is disconnected: only {reached} of {n} nodes are reachable from node 0")]
    Disconnected {
        /// Number of nodes.
        n: usize,
        /// Nodes reachable from node 0.
        reached: usize,
    },
    /// The graph is not a tree (needs n − 1 edges and connectivity).
    #[error("not a tree: {n} nodes, {edges} edges (a tree has {}), connected = {connected}", n.saturating_sub(1))]
    NotATree {
        /// Number of nodes.
        n: usize,
        /// Number of edges.
        edges: usize,
        /// Whether the graph is connected.
        connected: bool,
    },
    /// A chain was requested from a graph that is not the ring 0–1–…–(n−1)–0.
    #[error("not the ring 0-1-...-{last}-0: node {node} has neighbours {neighbors:?}")]
    NotARing {
        /// Largest node id.
        last: usize,
        /// First node whose neighbourhood differs from {i−1, i+1}.
        node: usize,
        /// Its neighbours.
        neighbors: Vec<usize>,
    },
    /// A name did not match any accepted value.
    #[error("unknown {kind} {value:?}; accepted: {accepted}")]
    UnknownName {
        /// What was being parsed.
        kind: &'static str,
        /// The offending text.
        value: String,
        /// The accepted values.
        accepted: String,
    },
    /// A time-varying topology or a pair of trees was asked for one static graph.
    #[error("topology {topology} is not one static graph (it is time-varying or a pair of trees)")]
    NotStatic {
        /// Name of the topology.
        topology: &'static str,
    },
    /// A matrix is not square.
    #[error("matrix is not square: {rows} rows, {cols} columns")]
    NotSquare {
        /// Row count.
        rows: usize,
        /// Column count (of the offending row for dense input).
        cols: usize,
    },
    /// Sizes of two inputs disagree.
    #[error("size mismatch in {what}: expected {expected}, got {got}")]
    SizeMismatch {
        /// What was being compared.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Actual size.
        got: usize,
    },
    /// A matrix entry or parameter is NaN or infinite.
    #[error("non-finite value {value} at ({row}, {col})")]
    NonFinite {
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A row of a (supposedly) stochastic matrix does not sum to one.
    #[error("row {row} sums to {sum} instead of 1 (tolerance {tol})")]
    RowSum {
        /// Row index.
        row: usize,
        /// Its sum.
        sum: f64,
        /// Tolerance used.
        tol: f64,
    },
    /// A column of a (supposedly) doubly stochastic matrix does not sum to one.
    #[error("column {col} sums to {sum} instead of 1 (tolerance {tol})")]
    ColumnSum {
        /// Column index.
        col: usize,
        /// Its sum.
        sum: f64,
        /// Tolerance used.
        tol: f64,
    },
    /// A matrix is not symmetric.
    #[error("matrix is not symmetric: W[{row}][{col}] = {a} but W[{col}][{row}] = {b}")]
    NotSymmetric {
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// `W[row][col]`.
        a: f64,
        /// `W[col][row]`.
        b: f64,
    },
    /// A matrix has a negative entry.
    #[error("negative weight W[{row}][{col}] = {weight}")]
    NegativeWeight {
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// The weight.
        weight: f64,
    },
    /// A constant neighbour weight w makes a self weight 1 − deg·w negative.
    #[error("constant weight w = {w} gives node {node} (degree {degree}) self weight {self_weight} < 0; need w <= 1/{degree}")]
    NegativeSelfWeight {
        /// The node.
        node: usize,
        /// Its degree.
        degree: usize,
        /// The neighbour weight.
        w: f64,
        /// The resulting self weight.
        self_weight: f64,
    },
    /// The complete-graph rule 1/n was asked for a graph that is not complete.
    #[error("mixing rule `complete` (1/n) needs the complete graph; node {node} has degree {degree} < {}", n - 1)]
    NotComplete {
        /// Number of nodes.
        n: usize,
        /// First node of lower degree.
        node: usize,
        /// Its degree.
        degree: usize,
    },
    /// The symmetric eigen-solver did not converge.
    #[error("symmetric eigen-solver did not converge in {iterations} QR iterations")]
    NoConvergence {
        /// Iterations performed.
        iterations: usize,
    },
    /// Two edges of one matching share a node.
    #[error("matching {matching} is not a matching: node {node} appears twice")]
    NotAMatching {
        /// Index of the matching.
        matching: usize,
        /// The repeated node.
        node: usize,
    },
    /// An edge appears in two matchings of a decomposition.
    #[error("edge ({u}, {v}) appears in matchings {first} and {second}")]
    EdgeInTwoMatchings {
        /// One endpoint.
        u: usize,
        /// Other endpoint.
        v: usize,
        /// First matching holding it.
        first: usize,
        /// Second matching holding it.
        second: usize,
    },
    /// A matching holds an edge the base graph lacks.
    #[error("matching {matching} holds edge ({u}, {v}) which is not in the graph")]
    EdgeNotInGraph {
        /// Index of the matching.
        matching: usize,
        /// One endpoint.
        u: usize,
        /// Other endpoint.
        v: usize,
    },
    /// An edge of the base graph is in no matching.
    #[error("edge ({u}, {v}) of the graph is in no matching")]
    EdgeNotCovered {
        /// One endpoint.
        u: usize,
        /// Other endpoint.
        v: usize,
    },
    /// Too few matchings for the requested mode.
    #[error("{what} needs at least {needed} matchings, got {got}")]
    TooFewMatchings {
        /// What needs them.
        what: &'static str,
        /// Matchings needed.
        needed: usize,
        /// Matchings available.
        got: usize,
    },
    /// The expected Laplacian is zero: no edge can ever be active.
    #[error("no edge has a positive activation probability; the mixing weight is undefined")]
    NoActiveEdges,
}

/// Shorthand for results of this module.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
