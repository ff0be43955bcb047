//! CompCGA (ALGORITHMS.md §5.9): CGA on the NGM pipeline (src/algo/cga.rs) with round 2 and
//! the self-gradient compressed as in CompNGM (src/algo/compngm.rs: scaled sign per tensor,
//! one error-feedback memory per job slab), then the per-tensor QP over the compressed slabs.
//! Round 2 is charged ⌈ℓ/8⌉ + 4 bytes per tensor per neighbour (`--comp-charge f32`: 4ℓ).

use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, Ngm, TopologyNeed};
use crate::backend::Backend;
use crate::error::Result;

/// CompCGA.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["compcga", "comp-cga"],
    doc: "CGA with scaled-sign compressed gradients per tensor and error feedback (round 2 \
          charged compressed)",
    topology: TopologyNeed::Static,
    options: &["cga-pipeline", "ngm-gamma", "ngm-pi", "comp-charge"],
    build,
};

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Ngm::new_cga(be, buf, s, true)?))
}
