//! Communication graphs of decentralized learning: static topologies (ALGORITHMS.md §3),
//! gossip mixing matrices and their spectra (§2), spanning trees for RelaySGD (§5.5), the
//! time-varying one-peer exponential graph (§5.12) and MATCHA matching schedules (§5.15).
//!
//! Every constructor validates its parameters and returns a typed [`GraphError`] instead of
//! panicking. Mixing matrices are [`crate::sparse::Csr`] with rows sorted by column and the
//! self entry included.

#![warn(missing_docs)]

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr` (config files use names).
macro_rules! string_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod adjacency;
mod edge_list;
mod error;
mod matcha;
mod mixing;
mod relay;
mod schedule;
mod spectral;
mod topology;
mod tree;

pub use adjacency::{first_asymmetry, Graph};
pub use error::{GraphError, Result};
pub use matcha::{
    activation_probabilities, alpha_fix, check_decomposition, check_matchings, expected_laplacian,
    fixed_processor_flags, graph_from_matchings, greedy_matchings, matcha_graph,
    matching_laplacian, optimal_alpha, random_flags, rho, FlagMode, Matcha, MatchaGraph, Matching,
    MATCHA_GRAPH_NAMES, PROBABILITY_ITERATIONS,
};
pub use mixing::{
    check_doubly_stochastic, check_nonnegative, check_rows_sorted_with_self, check_stochastic,
    check_symmetric, complete, constant, damped, f32_row_weights, metropolis_hastings, uniform,
    MixingRule, DEFAULT_TOL, MIXING_RULE_NAMES,
};
pub use relay::{RelayAverage, RelayLane, RelayLayout, RelayTree};
pub use schedule::{HopSchedule, OnePeerExponential, EXPONENTIAL_ROUNDS, HOP_SCHEDULE_NAMES};
pub use spectral::{
    algebraic_connectivity, check_square, dense_square, lambda_min, laplacian, spectral_gap,
    symmetric_eigen, symmetric_eigenvalues, SymmetricEigen, MAX_EIGEN_ITERATIONS,
};
pub use topology::{
    default_erdos_renyi_p, Topology, TopologyGraphs, ERDOS_RENYI_MAX_TRIES, TOPOLOGY_NAMES,
};
pub use tree::{bfs_parents, relay_trees, LrCorrection, SpanningTree, LR_CORRECTION_NAMES};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_strings() {
        // serde_json is a regular dependency of the crate.
        let t: Topology = serde_json::from_str("\"double-binary-trees\"").unwrap();
        assert_eq!(t, Topology::DoubleBinaryTrees);
        assert_eq!(
            serde_json::to_string(&Topology::ErdosRenyi { p: Some(0.25) }).unwrap(),
            "\"erdos-renyi:0.25\""
        );
        let r: MixingRule = serde_json::from_str("\"constant:0.3233\"").unwrap();
        assert_eq!(r, MixingRule::Constant(0.3233));
        let h: HopSchedule = serde_json::from_str("\"cyclic\"").unwrap();
        assert_eq!(h, HopSchedule::Cyclic);
        let c: LrCorrection = serde_json::from_str("\"half-diameter\"").unwrap();
        assert_eq!(c, LrCorrection::HalfDiameter);
        let g: MatchaGraph = serde_json::from_str("\"er16\"").unwrap();
        assert_eq!(g, MatchaGraph::ErdosRenyi16);
        let err = serde_json::from_str::<Topology>("\"mesh\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepted: ring"), "{err}");
    }
}
