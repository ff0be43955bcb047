//! CompNGM (ALGORITHMS.md §5.8): NGM's pipeline (src/algo/ngm.rs) with every job slab — the
//! self-gradient and each cross-gradient C_{i,j} that agent i sends to j — compressed per
//! tensor by the scaled sign Q(z) = (‖z‖₁/ℓ)·sign(z) with error feedback: one memory per job
//! slab, i.e. one per (sender → receiver, tensor) and one for the self-gradient;
//! c = Q(e + z), e ← e + z − c. Step 6 then combines the compressed slabs with NGM's π
//! weights: ĝ = π[c_self + Σ_j (α ĉ_{j→i} + (1−α) ĉ_{i→j})].
//!
//! Per step this adds one `axpby` (e ← e + z over all job slabs) and one `sign_compress` per
//! tensor (over all job slabs at once): the dispatches do not depend on n or the degrees.
//! Round 2 is charged ⌈ℓ/8⌉ + 4 bytes per tensor per neighbour (`--comp-charge f32`: 4ℓ, as
//! the original counts).

use super::{AgentBuffers, Algo, AlgoSetup, AlgoSpec, Ngm, TopologyNeed};
use crate::algo::options::CompCharge;
use crate::backend::{Axpby, Backend, Buf, BufKind, SignCompress};
use crate::error::Result;
use crate::model::Tensor;

/// CompNGM.
pub const SPEC: AlgoSpec = AlgoSpec {
    names: &["compngm", "compngc", "comp-ngm"],
    doc: "NGM with scaled-sign compressed gradients per tensor and error feedback (round 2 \
          charged compressed)",
    topology: TopologyNeed::Static,
    options: &["ngm-alpha", "ngm-gamma", "ngm-pi", "comp-charge"],
    build,
};

fn build(be: &mut dyn Backend, buf: AgentBuffers, s: &AlgoSetup) -> Result<Box<dyn Algo>> {
    Ok(Box::new(Ngm::new(be, buf, s, s.options.ngm_alpha, true)?))
}

/// Scaled-sign compression with error feedback of a buffer of job slabs.
pub(crate) struct Compression {
    /// The error-feedback memories, one slab per job (0 initially).
    pub(crate) memory: Buf,
    tensors: Vec<Tensor>,
    slabs: usize,
    stride: usize,
}

impl Compression {
    /// Memories for `slabs` job slabs over the setup's tensor table.
    pub(crate) fn new(be: &mut dyn Backend, s: &AlgoSetup, slabs: usize) -> Result<Self> {
        Ok(Compression {
            memory: be.alloc(BufKind::F32, slabs * s.stride, "compngm.memory")?,
            tensors: s.tensor_table(),
            slabs,
            stride: s.stride,
        })
    }

    /// Bytes of one compressed slab as charged: Σ_tensors ⌈ℓ/8⌉ + 4, or 4d for f32.
    pub(crate) fn bytes_per_slab(&self, charge: CompCharge) -> u64 {
        self.tensors
            .iter()
            .map(|t| match charge {
                CompCharge::Compressed => t.len.div_ceil(8) as u64 + 4,
                CompCharge::F32 => 4 * t.len as u64,
            })
            .sum()
    }

    /// Records `e ← e + z; c = Q(e); e ← e − c` with z and c in `slabs` (in place).
    pub(crate) fn record(&self, be: &mut dyn Backend, slabs: Buf) -> Result<()> {
        be.axpby(&Axpby {
            x: slabs,
            y: self.memory,
            a: 1.0,
            b: 1.0,
            len: self.slabs * self.stride,
        })?;
        for t in &self.tensors {
            be.sign_compress(&SignCompress {
                memory: self.memory,
                out: slabs,
                offset: t.offset,
                stride: self.stride,
                segments: self.slabs,
                len: t.len,
            })?;
        }
        Ok(())
    }
}
