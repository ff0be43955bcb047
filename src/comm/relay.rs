//! Relay exchanges over spanning trees (ALGORITHMS.md §5.5, §5.6), the device side of
//! [`crate::graph::RelayTree`]: per tree one stack buffer region and two resident matrices.
//!
//! One round is: messages `m_{i→j} = x½_i + Σ_{k∈N(i)∖{j}} r_{k→i}` (one mix from the stack into
//! the message buffer, then one copy over the r slabs, so every message reads last round's r);
//! then the averaging mix from the stack. The host rewrites a matrix only when it changed. With
//! double binary trees the lanes are filled and read back with strided copies (element k of a
//! slab lives in lane k mod 2).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Ledger;
use crate::backend::{Backend, Buf, BufKind, CopyRange, CopyStrided, CsrBufs, Mix};
use crate::error::{Error, Result};
use crate::graph::{RelayAverage, RelayLane, RelayLayout, RelayTree, SpanningTree};
use crate::sparse::Csr;

/// Stream tag of the message-drop coin flips (xored into the setup seed).
const DROP_STREAM: u64 = 0x7265_6c61_7964_726f;

/// One tree: its bookkeeping, where its vectors live and its resident matrices.
struct Lane {
    tree: RelayTree,
    at: RelayLane,
    msg: CsrBufs,
    avg: CsrBufs,
    last_msg: Option<Csr>,
    last_avg: Option<Csr>,
}

/// Relay exchanges of n agents' slabs over one tree, or two (double binary trees).
pub struct RelayExchange {
    lanes: Vec<Lane>,
    layout: RelayLayout,
    n: usize,
    stride: usize,
    average: RelayAverage,
    drop_prob: f64,
    seed: u64,
    rounds: u64,
    stack: Buf,
    messages: Buf,
    /// De-interleaved averages of all lanes (several trees only).
    averages: Option<Buf>,
    bytes: Vec<u64>,
}

/// Allocates CSR buffers for up to `nnz` entries (filled later with `write_csr`).
fn alloc_csr(
    be: &mut dyn Backend,
    rows: usize,
    n_cols: usize,
    nnz: usize,
    label: &str,
) -> Result<CsrBufs> {
    Ok(CsrBufs {
        row_ptr: be.alloc(BufKind::U32, rows + 1, &format!("{label}.row_ptr"))?,
        col: be.alloc(BufKind::U32, nnz.max(1), &format!("{label}.col"))?,
        weight: be.alloc(BufKind::F32, nnz.max(1), &format!("{label}.weight"))?,
        rows,
        n_cols,
    })
}

/// The checkpointed host state: the round counter (it selects the drop stream) and each tree's
/// arrival flags and counts (they select the message and averaging matrices).
#[derive(serde::Serialize, serde::Deserialize)]
struct HostState {
    rounds: u64,
    lanes: Vec<LaneHostState>,
}

/// One tree's arrivals in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct LaneHostState {
    received: Vec<bool>,
    counts: Vec<usize>,
}

impl RelayExchange {
    /// Prepares exchanges of slabs of `stride` floats (`d` communicated) over `trees`; every
    /// message costs its lane's 4·d bytes plus `count_bytes` (the integer count of RelaySum/
    /// Model). `x0_slabs` reference slabs per lane: 0, 1 (shared) or n (per agent).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        be: &mut dyn Backend,
        trees: &[SpanningTree],
        stride: usize,
        d: usize,
        average: RelayAverage,
        x0_slabs: usize,
        count_bytes: u64,
        drop_prob: f64,
        seed: u64,
    ) -> Result<Self> {
        let n = trees.first().map_or(0, SpanningTree::n);
        if trees.len() > 1 && stride < trees.len() {
            return Err(Error::param(
                "topology",
                "double binary trees split every slab in two; need at least 2 floats per agent",
            ));
        }
        let relay_trees: Vec<RelayTree> = trees.iter().map(RelayTree::new).collect();
        let layout = RelayLayout::new(&relay_trees, stride, d, x0_slabs);
        let mut bytes = vec![0u64; n];
        let mut lanes = Vec::with_capacity(trees.len());
        for (tree, at) in relay_trees.into_iter().zip(&layout.lanes) {
            if n > 1 {
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b += tree.degree(i) as u64 * (4 * at.d as u64 + count_bytes);
                }
            }
            let e = at.edges;
            let msg = alloc_csr(be, e, n + e, e + tree.message_nnz(), "relay.msg")?;
            let avg = alloc_csr(be, n, n + e + x0_slabs, 2 * n + e, "relay.avg")?;
            lanes.push(Lane {
                tree,
                at: *at,
                msg,
                avg,
                last_msg: None,
                last_avg: None,
            });
        }
        let averages = if lanes.len() > 1 {
            Some(be.alloc(BufKind::F32, layout.avg_len, "relay.averages")?)
        } else {
            None
        };
        Ok(RelayExchange {
            stack: be.alloc(BufKind::F32, layout.stack_len, "relay.stack")?,
            messages: be.alloc(BufKind::F32, layout.msg_len.max(1), "relay.messages")?,
            lanes,
            layout,
            n,
            stride,
            average,
            drop_prob,
            seed,
            rounds: 0,
            averages,
            bytes,
        })
    }

    /// The stack buffer (x½ or u, the r slabs, x0), checkpointed with the parameters.
    pub fn stack(&self) -> Buf {
        self.stack
    }

    /// The host bookkeeping of each tree.
    pub fn trees(&self) -> impl Iterator<Item = &RelayTree> {
        self.lanes.iter().map(|l| &l.tree)
    }

    /// Bytes per agent of one exchange (messages are charged even when then dropped).
    pub fn round_bytes(&self) -> &[u64] {
        &self.bytes
    }

    /// Writes one common reference model x0 (one slab of `stride` values) into every lane.
    pub fn write_reference(&mut self, be: &mut dyn Backend, x0: &[f64]) -> Result<()> {
        let k = self.layout.interleave();
        for lane in &self.lanes {
            let part: Vec<f64> = x0.iter().skip(lane.at.first).step_by(k).copied().collect();
            be.write_f64(self.stack, lane.at.x0_base, &part)?;
        }
        Ok(())
    }

    /// Records `x0_i ← x_i` (per-agent reference slabs, `update_ref_state`).
    pub fn send_reference(&self, be: &mut dyn Backend, x: Buf) -> Result<()> {
        self.to_lanes(be, x, |l| l.x0_base)
    }

    /// Records the vectors every agent sends this round (x½ or u, agent-major) into the stack.
    pub fn send(&self, be: &mut dyn Backend, x: Buf) -> Result<()> {
        self.to_lanes(be, x, |l| l.stack_base)
    }

    /// Agent-major slabs of `src` → every lane's slabs at lane offset `at`.
    fn to_lanes(
        &self,
        be: &mut dyn Backend,
        src: Buf,
        at: impl Fn(&RelayLane) -> usize,
    ) -> Result<()> {
        let k = self.layout.interleave();
        for lane in &self.lanes {
            if k == 1 {
                be.copy(&CopyRange {
                    src,
                    src_offset: 0,
                    dst: self.stack,
                    dst_offset: at(&lane.at),
                    len: self.n * self.stride,
                })?;
            } else {
                be.copy_strided(&CopyStrided {
                    src,
                    src_offset: lane.at.first,
                    src_stride: self.stride,
                    src_step: k,
                    dst: self.stack,
                    dst_offset: at(&lane.at),
                    dst_stride: lane.at.width,
                    dst_step: 1,
                    count: self.n,
                    len: lane.at.width,
                })?;
            }
        }
        Ok(())
    }

    /// Draws this round's drops, uploads changed matrices, records the messages and the
    /// averaging into `out` (agent-major slabs), and charges the messages.
    pub fn record(&mut self, be: &mut dyn Backend, ledger: &mut Ledger, out: Buf) -> Result<()> {
        let n = self.n;
        let round = self.rounds;
        self.rounds += 1;
        for (t, lane) in self.lanes.iter_mut().enumerate() {
            let (e_count, w) = (lane.at.edges, lane.at.width);
            let msg = lane.tree.message_csr();
            let dropped: Vec<bool> = if self.drop_prob > 0.0 {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ DROP_STREAM);
                rng.set_stream(round.wrapping_mul(2).wrapping_add(t as u64));
                (0..e_count)
                    .map(|_| rng.random::<f64>() < self.drop_prob)
                    .collect()
            } else {
                Vec::new()
            };
            lane.tree.exchange(&dropped);
            let avg = lane.tree.average_csr(self.average, self.layout.x0_slabs);
            if e_count > 0 {
                if lane.last_msg.as_ref() != Some(&msg) {
                    be.write_csr(&lane.msg, &msg)?;
                    lane.last_msg = Some(msg);
                }
                be.mix(&Mix {
                    csr: lane.msg,
                    input: self.stack,
                    in_offset: lane.at.stack_base,
                    in_stride: w,
                    output: self.messages,
                    out_offset: lane.at.msg_base,
                    out_stride: w,
                    len: w,
                })?;
                be.copy(&CopyRange {
                    src: self.messages,
                    src_offset: lane.at.msg_base,
                    dst: self.stack,
                    dst_offset: lane.at.stack_base + n * w,
                    len: e_count * w,
                })?;
            }
            if lane.last_avg.as_ref() != Some(&avg) {
                be.write_csr(&lane.avg, &avg)?;
                lane.last_avg = Some(avg);
            }
            let (output, out_offset) = match self.averages {
                Some(a) => (a, lane.at.avg_base),
                None => (out, 0),
            };
            be.mix(&Mix {
                csr: lane.avg,
                input: self.stack,
                in_offset: lane.at.stack_base,
                in_stride: w,
                output,
                out_offset,
                out_stride: w,
                len: w,
            })?;
        }
        if let Some(averages) = self.averages {
            let k = self.layout.interleave();
            for lane in &self.lanes {
                be.copy_strided(&CopyStrided {
                    src: averages,
                    src_offset: lane.at.avg_base,
                    src_stride: lane.at.width,
                    src_step: 1,
                    dst: out,
                    dst_offset: lane.at.first,
                    dst_stride: self.stride,
                    dst_step: k,
                    count: n,
                    len: lane.at.width,
                })?;
            }
        }
        ledger.charge(&self.bytes);
        Ok(())
    }

    /// The host state that, with the stack buffer, determines every later round (JSON).
    pub fn host_state(&self) -> Result<serde_json::Value> {
        let h = HostState {
            rounds: self.rounds,
            lanes: self
                .lanes
                .iter()
                .map(|l| {
                    let (received, counts) = l.tree.arrivals();
                    LaneHostState {
                        received: received.to_vec(),
                        counts: counts.to_vec(),
                    }
                })
                .collect(),
        };
        serde_json::to_value(h).map_err(|e| Error::param("checkpoint", format!("relay state: {e}")))
    }

    /// Restores what [`RelayExchange::host_state`] returned; nothing changes on an error.
    pub fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        let bad = |reason: String| Error::param("checkpoint", format!("relay state: {reason}"));
        let h: HostState = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
        if h.lanes.len() != self.lanes.len() {
            return Err(bad(format!(
                "{} trees, this run has {}",
                h.lanes.len(),
                self.lanes.len()
            )));
        }
        let mut trees: Vec<RelayTree> = self.lanes.iter().map(|l| l.tree.clone()).collect();
        for (t, (saved, tree)) in h.lanes.into_iter().zip(&mut trees).enumerate() {
            tree.restore(saved.received, saved.counts)
                .map_err(|e| bad(format!("tree {t}: {e}")))?;
        }
        for (lane, tree) in self.lanes.iter_mut().zip(trees) {
            lane.tree = tree;
        }
        self.rounds = h.rounds;
        Ok(())
    }
}
