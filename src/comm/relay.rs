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
use crate::dist::{ghost_items, Exchange, Placement, Shard};
use crate::error::{Error, Result};
use crate::graph::{RelayAverage, RelayLane, RelayLayout, RelayTree, SpanningTree};
use crate::sparse::Csr;
use std::ops::Range;

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
    /// Sharded over ranks (see [`RelayExchange::with_shard`]).
    shard: Option<RelayShard>,
}

/// A sharded relay: the stack keeps the layout of all agents, but this rank computes only the
/// messages its agents send and the averages of its agents; each round one exchange per tree
/// delivers the messages that cross ranks into the receivers' r slots.
struct RelayShard {
    shard: Shard,
    /// Per lane: the edges this rank's agents send (edges are numbered by sender).
    edges: Vec<Range<usize>>,
    /// Per lane: the exchange of the crossing messages and the edges received (in order).
    inbound: Vec<(Exchange, Vec<usize>)>,
}

/// The edges whose sender is one of `agents` (a contiguous range: edges are numbered by sender).
fn edges_of(tree: &RelayTree, agents: &Range<usize>) -> Range<usize> {
    let e = tree.edges();
    e.partition_point(|&(i, _)| i < agents.start)..e.partition_point(|&(i, _)| i < agents.end)
}

/// Rows `rows` of a matrix (the same columns). With `f32` (a backend storing f32 weights) the
/// weights are those the whole matrix rounds to ([`crate::graph::f32_row_weights`] fixes each
/// row's sum through its diagonal entry, column = row, which the row's new index no longer
/// names), so the backend reads exactly the weights one process reads.
fn rows_of(m: &Csr, rows: Range<usize>, f32: bool) -> Csr {
    let w: Vec<f64> = if f32 {
        crate::graph::f32_row_weights(m)
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    } else {
        m.weight.clone()
    };
    let r: Vec<Vec<(usize, f64)>> = rows
        .map(|i| {
            let (lo, hi) = (m.row_ptr[i] as usize, m.row_ptr[i + 1] as usize);
            (lo..hi).map(|e| (m.col[e] as usize, w[e])).collect()
        })
        .collect();
    Csr::from_rows(m.n_cols, &r)
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
            shard: None,
        })
    }

    /// The same exchange sharded over ranks (`None`: unchanged): this rank records only its
    /// agents' messages and averages, the crossing messages travel by one exchange per tree and
    /// round. Must be called right after [`RelayExchange::new`] (it resizes the matrices).
    pub fn with_shard(mut self, be: &mut dyn Backend, shard: Option<&Shard>) -> Result<Self> {
        let Some(sh) = shard else {
            return Ok(self);
        };
        let (p, me, mine) = (sh.placement(), sh.rank(), sh.range());
        let mut edges = Vec::new();
        let mut inbound = Vec::new();
        for lane in &mut self.lanes {
            let tree = &lane.tree;
            let own = edges_of(tree, &mine);
            let deg2: usize = mine.clone().map(|i| tree.degree(i).pow(2)).sum();
            let deg: usize = mine.clone().map(|i| tree.degree(i)).sum();
            lane.msg = alloc_csr(
                be,
                own.len(),
                self.n + lane.at.edges,
                own.len() + deg2,
                "relay.msg",
            )?;
            let cols = self.n + lane.at.edges + self.layout.x0_slabs;
            lane.avg = alloc_csr(be, mine.len(), cols, 2 * mine.len() + deg, "relay.avg")?;
            let all = tree.edges();
            let owner = |e: usize| p.owner(all[e].0);
            let needs = |q: usize| -> Vec<usize> {
                let theirs = p.range(q);
                (0..all.len())
                    .filter(|&e| theirs.contains(&all[e].1) && !theirs.contains(&all[e].0))
                    .collect()
            };
            let local = |e: usize| e - edges_of(tree, &p.range(owner(e))).start;
            inbound.push(ghost_items(p.ranks(), me, &needs, &owner, &local));
            edges.push(own);
        }
        self.bytes = self.bytes[mine].to_vec();
        self.shard = Some(RelayShard {
            shard: sh.clone(),
            edges,
            inbound,
        });
        Ok(self)
    }

    /// The agents whose slabs this rank holds (all of them in one process).
    fn agents(&self) -> Range<usize> {
        self.shard.as_ref().map_or(0..self.n, |s| s.shard.range())
    }

    /// The elements of the stack rank `rank` computes under `placement` (its agents' x½ and
    /// x0 slabs, the r slabs of the messages its agents send; a shared x0 belongs to rank 0):
    /// a checkpoint of a sharded run takes each element from its rank, and every element
    /// belongs to exactly one.
    pub fn owned(&self, placement: &Placement, rank: usize) -> Vec<Range<usize>> {
        let agents = placement.range(rank);
        let mut out = Vec::new();
        for lane in &self.lanes {
            let (w, base) = (lane.at.width, lane.at.stack_base);
            out.push(base + agents.start * w..base + agents.end * w);
            let e = edges_of(&lane.tree, &agents);
            out.push(base + (self.n + e.start) * w..base + (self.n + e.end) * w);
            let x0 = lane.at.x0_base;
            if self.layout.x0_slabs == self.n {
                out.push(x0 + agents.start * w..x0 + agents.end * w);
            } else if rank == 0 {
                out.push(x0..x0 + self.layout.x0_slabs * w);
            }
        }
        out
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
        let agents = self.agents();
        for lane in &self.lanes {
            let dst_offset = at(&lane.at) + agents.start * lane.at.width;
            if k == 1 {
                be.copy(&CopyRange {
                    src,
                    src_offset: 0,
                    dst: self.stack,
                    dst_offset,
                    len: agents.len() * self.stride,
                })?;
            } else {
                be.copy_strided(&CopyStrided {
                    src,
                    src_offset: lane.at.first,
                    src_stride: self.stride,
                    src_step: k,
                    dst: self.stack,
                    dst_offset,
                    dst_stride: lane.at.width,
                    dst_step: 1,
                    count: agents.len(),
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
        let agents = self.agents();
        let round = self.rounds;
        self.rounds += 1;
        for (t, lane) in self.lanes.iter_mut().enumerate() {
            let (e_count, w) = (lane.at.edges, lane.at.width);
            let own = match &self.shard {
                None => 0..e_count,
                Some(s) => s.edges[t].clone(),
            };
            let dropped: Vec<bool> = if self.drop_prob > 0.0 {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ DROP_STREAM);
                rng.set_stream(round.wrapping_mul(2).wrapping_add(t as u64));
                (0..e_count)
                    .map(|_| rng.random::<f64>() < self.drop_prob)
                    .collect()
            } else {
                Vec::new()
            };
            let msg = lane.tree.message_csr();
            lane.tree.exchange(&dropped);
            let avg = lane.tree.average_csr(self.average, self.layout.x0_slabs);
            // Sharded: this rank's rows of both (its agents' messages and averages).
            let (msg, avg) = match &self.shard {
                None => (msg, avg),
                Some(s) => {
                    let f32 = s.shard.wire() == crate::dist::Wire::F32;
                    (
                        rows_of(&msg, own.clone(), f32),
                        rows_of(&avg, agents.clone(), f32),
                    )
                }
            };
            if !own.is_empty() {
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
                    out_offset: lane.at.msg_base + own.start * w,
                    out_stride: w,
                    len: w,
                })?;
                be.copy(&CopyRange {
                    src: self.messages,
                    src_offset: lane.at.msg_base + own.start * w,
                    dst: self.stack,
                    dst_offset: lane.at.stack_base + (n + own.start) * w,
                    len: own.len() * w,
                })?;
            }
            if let Some(s) = &self.shard {
                // The messages of crossing edges, into the receivers' r slots.
                let (exchange, received) = &s.inbound[t];
                if !exchange.is_empty() {
                    let all = be.read_f32(self.messages)?;
                    let mine = &all[lane.at.msg_base + own.start * w..][..own.len() * w];
                    let got = s.shard.exchange(exchange, mine, w);
                    for (slab, &e) in got.chunks_exact(w.max(1)).zip(received) {
                        be.write_f64(self.stack, lane.at.stack_base + (n + e) * w, slab)?;
                    }
                }
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
                    count: agents.len(),
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
