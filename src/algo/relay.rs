//! RelaySGD (RelaySum/Model, ALGORITHMS.md §5.5) and RelaySGD/Grad (RelaySum/Grad, §5.6) on the
//! spanning tree(s) of [`relay_trees`].
//!
//! Every relay operation is a sparse mix over stacked vectors. Per tree ("lane") one stack buffer
//! holds `n` slabs of x½ (Model) or u (Grad), then one slab per directed tree edge e = (k→i) with
//! the last message i received from k (r_e), then the reference model x0 (Model only: one slab,
//! or one per agent with `update_ref_state`). One step is
//!
//! 1. messages `m_{i→j} = x½_i + Σ_{k∈N(i)∖{j}} r_{k→i}`: one mix from the stack into a message
//!    buffer (E rows), then one copy of the message buffer over the r slabs (double buffering:
//!    every message reads last round's r);
//! 2. averaging `x_i ← (x½_i + Σ_j r_{j→i} + (n − N_i)·x0)/n` (or `/N_i`, or the Grad update
//!    `(u_i + Σ_j r_{j→i})/n`): one mix from the stack.
//!
//! Counts and drops are integers and coin flips known on the host, so they are folded into the
//! CSR weights: a dropped or not yet arrived message simply has no entry (it is neither summed nor
//! relayed), and N_i appears in the x0 weight. The host rewrites a matrix only when it changed.
//!
//! Double binary trees: element k of a slab travels over tree k mod 2. The mix kernel has no
//! element stride, so each lane keeps its slabs in a de-interleaved layout (lane t holds elements
//! t, t+2, … of every slab, width ⌈s/2⌉ or ⌊s/2⌋). A "gather" mix over single-element vectors
//! (one CSR entry per element, built once) moves x½ into each lane, and a "scatter" mix moves the
//! two lanes' averages back into agent-major slabs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AgentBuffers, Algo, AlgoSetup, LocalHyper, Objective, RelayNormalisation};
use crate::backend::{Axpby, Backend, Buf, BufKind, CsrBufs, Mix};
use crate::error::{Error, Result};
use crate::graph::{relay_trees, SpanningTree};
use crate::sparse::Csr;

/// Stream tag of the message-drop coin flips (xored into the setup seed).
const DROP_STREAM: u64 = 0x7265_6c61_7964_726f;

/// Which RelaySum variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayVariant {
    /// RelaySum/Model: models are relayed and averaged against x0 (§5.5).
    Model,
    /// RelaySum/Grad: local displacements are relayed and added (§5.6).
    Grad,
}

/// Host-side bookkeeping of one tree: directed edges, which messages arrived last round and
/// their counts. Builds the per-round message and averaging matrices.
#[derive(Clone, Debug)]
pub struct RelayTree {
    n: usize,
    edges: Vec<(usize, usize)>,
    into: Vec<Vec<usize>>,
    received: Vec<bool>,
    counts: Vec<usize>,
}

impl RelayTree {
    /// Prepares the bookkeeping of `tree` (no message received yet).
    pub fn new(tree: &SpanningTree) -> Self {
        let n = tree.n();
        let mut edges = Vec::new();
        for i in 0..n {
            for &j in tree.neighbors(i) {
                edges.push((i, j));
            }
        }
        let mut into = vec![Vec::new(); n];
        for (e, &(_, j)) in edges.iter().enumerate() {
            into[j].push(e);
        }
        let m = edges.len();
        RelayTree {
            n,
            edges,
            into,
            received: vec![false; m],
            counts: vec![0; m],
        }
    }

    /// Nodes n.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Directed tree edges (sender, receiver); edge e's message lives in stack slab n + e.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Tree degree of node i.
    pub fn degree(&self, i: usize) -> usize {
        self.into[i].len()
    }

    /// Sum of squared degrees (the message matrix's largest entry count).
    fn message_nnz(&self) -> usize {
        (0..self.n).map(|i| self.degree(i).pow(2)).sum()
    }

    /// The message matrix of the coming round, E rows over the stack's n + E columns:
    /// `m_{i→j} = x½_i + Σ r_{k→i}` over the k ≠ j whose message arrived last round.
    pub fn message_csr(&self) -> Csr {
        let rows: Vec<Vec<(usize, f64)>> = self
            .edges
            .iter()
            .map(|&(i, j)| {
                let mut row = vec![(i, 1.0)];
                for &e in &self.into[i] {
                    if self.edges[e].0 != j && self.received[e] {
                        row.push((self.n + e, 1.0));
                    }
                }
                row
            })
            .collect();
        Csr::from_rows(self.n + self.edges.len(), &rows)
    }

    /// Exchanges one round: message e arrives unless `dropped[e]`; its count is
    /// `1 + Σ c_{k→i}` over the relayed (arrived last round) messages. Empty `dropped`: no drops.
    pub fn exchange(&mut self, dropped: &[bool]) {
        let counts: Vec<usize> = self
            .edges
            .iter()
            .map(|&(i, j)| {
                1 + self.into[i]
                    .iter()
                    .filter(|&&e| self.edges[e].0 != j && self.received[e])
                    .map(|&e| self.counts[e])
                    .sum::<usize>()
            })
            .collect();
        for (e, c) in counts.into_iter().enumerate() {
            let ok = !dropped.get(e).copied().unwrap_or(false);
            self.received[e] = ok;
            self.counts[e] = if ok { c } else { 0 };
        }
    }

    /// N_i = 1 + Σ_j c_{j→i} over the messages received in the last round (1 before any).
    pub fn totals(&self) -> Vec<usize> {
        (0..self.n)
            .map(|i| {
                1 + self.into[i]
                    .iter()
                    .filter(|&&e| self.received[e])
                    .map(|&e| self.counts[e])
                    .sum::<usize>()
            })
            .collect()
    }

    /// The averaging matrix after the last exchange, n rows over the stack columns
    /// (x½ or u: 0..n, r: n..n+E, x0: from `x0_col`, per agent when `x0_per_agent`).
    fn average_csr(
        &self,
        variant: RelayVariant,
        norm: RelayNormalisation,
        x0_per_agent: bool,
    ) -> Csr {
        let n = self.n;
        let e_count = self.edges.len();
        let totals = self.totals();
        let x0_slabs = match (variant, x0_per_agent) {
            (RelayVariant::Grad, _) => 0,
            (RelayVariant::Model, false) => 1,
            (RelayVariant::Model, true) => n,
        };
        let rows: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| {
                let w = match (variant, norm) {
                    (RelayVariant::Model, RelayNormalisation::Counts) => 1.0 / totals[i] as f64,
                    _ => 1.0 / n as f64,
                };
                let mut row = vec![(i, w)];
                for &e in &self.into[i] {
                    if self.received[e] {
                        row.push((n + e, w));
                    }
                }
                let missing = n - totals[i];
                if variant == RelayVariant::Model
                    && norm == RelayNormalisation::World
                    && missing > 0
                {
                    let col = n + e_count + if x0_per_agent { i } else { 0 };
                    row.push((col, missing as f64 / n as f64));
                }
                row
            })
            .collect();
        Csr::from_rows(n + e_count + x0_slabs, &rows)
    }
}

/// One tree's share of the work: its bookkeeping, its slab width and where its slabs live.
struct Lane {
    tree: RelayTree,
    /// Floats per slab in this lane (the stride, or half of it for double trees).
    width: usize,
    /// Offset of the lane's region in the stack buffer.
    stack_base: usize,
    /// Offset of the lane's region in the message buffer.
    msg_base: usize,
    /// Offset of the lane's averages in the de-interleaved output (double trees).
    avg_base: usize,
    msg: CsrBufs,
    avg: CsrBufs,
    last_msg: Option<Csr>,
    last_avg: Option<Csr>,
    /// Agent-major slabs → this lane's de-interleaved slabs (double trees only).
    gather: Option<CsrBufs>,
}

impl Lane {
    fn edge_count(&self) -> usize {
        self.tree.edges.len()
    }

    /// Offset of the lane's x0 slab(s) in the stack.
    fn x0_base(&self) -> usize {
        self.stack_base + (self.tree.n + self.edge_count()) * self.width
    }
}

/// RelaySGD / RelaySGD-Grad state.
pub struct RelaySgd {
    buf: AgentBuffers,
    variant: RelayVariant,
    hyper: LocalHyper,
    norm: RelayNormalisation,
    update_ref: bool,
    lr_factor: f64,
    drop_prob: f64,
    seed: u64,
    rounds: u64,
    lanes: Vec<Lane>,
    stack: Buf,
    messages: Buf,
    /// De-interleaved averages of both lanes, `n × stride` (double trees only).
    averages: Option<Buf>,
    /// De-interleaved lanes → agent-major slabs (double trees only).
    scatter: Option<CsrBufs>,
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

impl RelaySgd {
    /// Builds the state: trees from the setup's topology (`relay_trees`, root 0), stack and
    /// message buffers, the learning-rate correction (Model only) and the byte ledger.
    pub fn new(
        be: &mut dyn Backend,
        buf: AgentBuffers,
        s: &AlgoSetup,
        variant: RelayVariant,
    ) -> Result<Self> {
        let n = buf.agents;
        let stride = buf.stride;
        let trees = relay_trees(s.topology, n, s.seed, 0)?;
        let o = s.options;
        if !(0.0..1.0).contains(&o.drop_prob) {
            return Err(Error::param(
                "drop-prob",
                format!("{} is outside [0, 1)", o.drop_prob),
            ));
        }
        let double = trees.len() == 2;
        if double && stride < 2 {
            return Err(Error::param(
                "topology",
                "double binary trees split every slab in two; need at least 2 floats per agent",
            ));
        }
        let lr_factor = match variant {
            RelayVariant::Model => o.relay_lr_correction.factor(&trees),
            RelayVariant::Grad => 1.0,
        };
        let update_ref = variant == RelayVariant::Model && o.relay_update_ref_state;
        let x0_slabs = match variant {
            RelayVariant::Grad => 0,
            RelayVariant::Model if update_ref => n,
            RelayVariant::Model => 1,
        };
        let widths: Vec<usize> = if double {
            vec![stride.div_ceil(2), stride / 2]
        } else {
            vec![stride]
        };
        let ds: Vec<usize> = if double {
            vec![buf.d.div_ceil(2), buf.d / 2]
        } else {
            vec![buf.d]
        };
        let count_bytes = if variant == RelayVariant::Model { 4 } else { 0 };
        let mut bytes = vec![0u64; n];
        let (mut stack_len, mut msg_len, mut avg_len) = (0, 0, 0);
        let mut lanes = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            let rt = RelayTree::new(tree);
            let width = widths[t];
            let e_count = rt.edges.len();
            for (i, b) in bytes.iter_mut().enumerate() {
                *b += rt.degree(i) as u64 * (4 * ds[t] as u64 + count_bytes);
            }
            let cols = n + e_count + x0_slabs;
            let msg = alloc_csr(
                be,
                e_count,
                n + e_count,
                e_count + rt.message_nnz(),
                "relay.msg",
            )?;
            let avg = alloc_csr(be, n, cols, 2 * n + e_count, "relay.avg")?;
            let gather = if double {
                let rows: Vec<Vec<(usize, f64)>> = (0..n * width)
                    .map(|r| vec![((r / width) * stride + 2 * (r % width) + t, 1.0)])
                    .collect();
                Some(be.upload_csr(&Csr::from_rows(n * stride, &rows), "relay.gather")?)
            } else {
                None
            };
            lanes.push(Lane {
                tree: rt,
                width,
                stack_base: stack_len,
                msg_base: msg_len,
                avg_base: avg_len,
                msg,
                avg,
                last_msg: None,
                last_avg: None,
                gather,
            });
            stack_len += cols * width;
            msg_len += e_count * width;
            avg_len += n * width;
        }
        let stack = be.alloc(BufKind::F32, stack_len, "relay.stack")?;
        let messages = be.alloc(BufKind::F32, msg_len.max(1), "relay.messages")?;
        let (averages, scatter) = if double {
            let rows: Vec<Vec<(usize, f64)>> = (0..n * stride)
                .map(|p| {
                    let (i, e) = (p / stride, p % stride);
                    let lane = &lanes[e % 2];
                    vec![(lane.avg_base + i * lane.width + e / 2, 1.0)]
                })
                .collect();
            (
                Some(be.alloc(BufKind::F32, n * stride, "relay.averages")?),
                Some(be.upload_csr(&Csr::from_rows(n * stride, &rows), "relay.scatter")?),
            )
        } else {
            (None, None)
        };
        let mut me = RelaySgd {
            buf,
            variant,
            hyper: s.hyper,
            norm: o.relay_normalisation,
            update_ref,
            lr_factor,
            drop_prob: o.drop_prob,
            seed: s.seed,
            rounds: 0,
            lanes,
            stack,
            messages,
            averages,
            scatter,
            bytes: if n > 1 { bytes } else { vec![0; n] },
        };
        if variant == RelayVariant::Model && !update_ref {
            me.write_reference(be, s.init)?;
        }
        Ok(me)
    }

    /// Writes the common reference model x0 (the mean of the initial slabs: with identical
    /// initialisation, the common initial model) into every lane's x0 slab.
    fn write_reference(&mut self, be: &mut dyn Backend, init: &[f32]) -> Result<()> {
        let (n, stride) = (self.buf.agents, self.buf.stride);
        let mut x0 = vec![0.0f64; stride];
        for slab in init.chunks(stride) {
            for (a, &v) in x0.iter_mut().zip(slab) {
                *a += v as f64;
            }
        }
        let x0: Vec<f64> = x0.iter().map(|v| v / n as f64).collect();
        let double = self.lanes.len() == 2;
        for (t, lane) in self.lanes.iter().enumerate() {
            let part: Vec<f64> = if double {
                x0.iter().skip(t).step_by(2).copied().collect()
            } else {
                x0.clone()
            };
            be.write_f64(self.stack, lane.x0_base(), &part)?;
        }
        Ok(())
    }

    /// The learning-rate factor applied to η (1 for the Grad variant).
    pub fn lr_factor(&self) -> f64 {
        self.lr_factor
    }

    /// The host bookkeeping of each tree (one, or two for double binary trees).
    pub fn trees(&self) -> impl Iterator<Item = &RelayTree> {
        self.lanes.iter().map(|l| &l.tree)
    }

    /// Records "agent-major slabs of `src` → every lane's slabs at lane offset `at`" (x½ or x0).
    fn record_into_lanes(
        &self,
        be: &mut dyn Backend,
        src: Buf,
        at: impl Fn(&Lane) -> usize,
    ) -> Result<()> {
        let (n, stride) = (self.buf.agents, self.buf.stride);
        for lane in &self.lanes {
            match &lane.gather {
                None => be.copy(src, 0, self.stack, at(lane), n * stride)?,
                Some(g) => be.mix(&Mix {
                    csr: *g,
                    input: src,
                    in_offset: 0,
                    in_stride: 1,
                    output: self.stack,
                    out_offset: at(lane),
                    out_stride: 1,
                    len: 1,
                })?,
            }
        }
        Ok(())
    }

    /// Draws this round's drops, uploads changed matrices, records messages and averaging into
    /// `out` (agent-major slabs). The stack's first n slabs of every lane hold x½ (or u).
    fn record_relay(&mut self, be: &mut dyn Backend, out: Buf) -> Result<()> {
        let n = self.buf.agents;
        let round = self.rounds;
        self.rounds += 1;
        for (t, lane) in self.lanes.iter_mut().enumerate() {
            let e_count = lane.edge_count();
            let w = lane.width;
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
            let avg = lane
                .tree
                .average_csr(self.variant, self.norm, self.update_ref);
            if e_count > 0 {
                if lane.last_msg.as_ref() != Some(&msg) {
                    be.write_csr(&lane.msg, &msg)?;
                    lane.last_msg = Some(msg);
                }
                be.mix(&Mix {
                    csr: lane.msg,
                    input: self.stack,
                    in_offset: lane.stack_base,
                    in_stride: w,
                    output: self.messages,
                    out_offset: lane.msg_base,
                    out_stride: w,
                    len: w,
                })?;
                be.copy(
                    self.messages,
                    lane.msg_base,
                    self.stack,
                    lane.stack_base + n * w,
                    e_count * w,
                )?;
            }
            if lane.last_avg.as_ref() != Some(&avg) {
                be.write_csr(&lane.avg, &avg)?;
                lane.last_avg = Some(avg);
            }
            let (output, out_offset) = match self.averages {
                Some(a) => (a, lane.avg_base),
                None => (out, 0),
            };
            be.mix(&Mix {
                csr: lane.avg,
                input: self.stack,
                in_offset: lane.stack_base,
                in_stride: w,
                output,
                out_offset,
                out_stride: w,
                len: w,
            })?;
        }
        if let (Some(a), Some(sc)) = (self.averages, &self.scatter) {
            be.mix(&Mix {
                csr: *sc,
                input: a,
                in_offset: 0,
                in_stride: 1,
                output: out,
                out_offset: 0,
                out_stride: 1,
                len: 1,
            })?;
        }
        Ok(())
    }

    /// Records one round; `lr` None skips the local step (a pure communication round).
    fn record_round(&mut self, be: &mut dyn Backend, lr: Option<f64>) -> Result<()> {
        let x = self.buf.params;
        let len = self.buf.len();
        match self.variant {
            RelayVariant::Model => {
                if self.update_ref {
                    self.record_into_lanes(be, x, Lane::x0_base)?;
                }
                if let Some(lr) = lr {
                    let lr = lr * self.lr_factor;
                    self.buf.record_local_step(be, lr, self.hyper)?;
                }
                self.record_into_lanes(be, x, |l| l.stack_base)?;
                self.record_relay(be, x)
            }
            RelayVariant::Grad => {
                // u = LocalStep(x) − x, computed where the lanes read it: the stack's first n
                // slabs (one tree) or the spare buffer before the gather (double trees).
                let single = self.lanes.len() == 1;
                let u = if single { self.stack } else { self.buf.spare };
                match lr {
                    Some(lr) => {
                        be.copy(x, 0, u, 0, len)?;
                        self.buf.record_local_step_on(be, u, lr, self.hyper)?;
                        be.axpby(&Axpby {
                            x,
                            y: u,
                            a: -1.0,
                            b: 1.0,
                            len,
                        })?;
                    }
                    None => be.axpby(&Axpby {
                        x,
                        y: u,
                        a: 0.0,
                        b: 0.0,
                        len,
                    })?,
                }
                if !single {
                    self.record_into_lanes(be, u, |l| l.stack_base)?;
                }
                let delta = self.buf.spare;
                self.record_relay(be, delta)?;
                be.axpby(&Axpby {
                    x: delta,
                    y: x,
                    a: 1.0,
                    b: 1.0,
                    len,
                })
            }
        }
    }
}

/// One tree's host bookkeeping in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct LaneHostState {
    received: Vec<bool>,
    counts: Vec<usize>,
}

/// The host state that, with the stack buffer, determines every later round: the round counter
/// (it selects the drop stream) and each tree's arrival flags and counts (they select the
/// message and averaging matrices).
#[derive(serde::Serialize, serde::Deserialize)]
struct RelayHostState {
    rounds: u64,
    lanes: Vec<LaneHostState>,
}

impl Algo for RelaySgd {
    fn notes(&self) -> Vec<String> {
        if self.lr_factor == 1.0 {
            return Vec::new();
        }
        vec![format!(
            "RelaySGD learning-rate correction: η × {:.6}",
            self.lr_factor
        )]
    }

    fn params(&self) -> Buf {
        self.buf.params
    }

    fn record_step(
        &mut self,
        be: &mut dyn Backend,
        obj: &mut dyn Objective,
        t: u64,
        lr: f64,
    ) -> Result<()> {
        obj.record_gradients(be, self.buf.params, self.buf.grads, t)?;
        self.record_round(be, Some(lr))
    }

    fn bytes_sent(&self) -> &[u64] {
        &self.bytes
    }

    fn state(&self) -> Vec<(&'static str, Buf)> {
        vec![
            ("params", self.buf.params),
            ("momentum", self.buf.momentum),
            ("relay.stack", self.stack),
        ]
    }

    fn record_gossip(&mut self, be: &mut dyn Backend) -> Result<()> {
        self.record_round(be, None)
    }

    fn host_state(&self) -> serde_json::Value {
        let h = RelayHostState {
            rounds: self.rounds,
            lanes: self
                .lanes
                .iter()
                .map(|l| LaneHostState {
                    received: l.tree.received.clone(),
                    counts: l.tree.counts.clone(),
                })
                .collect(),
        };
        serde_json::to_value(h).unwrap_or(serde_json::Value::Null)
    }

    fn restore_host_state(&mut self, v: &serde_json::Value) -> Result<()> {
        let bad = |reason: String| Error::param("checkpoint", format!("relay state: {reason}"));
        let h: RelayHostState =
            serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
        if h.lanes.len() != self.lanes.len() {
            return Err(bad(format!(
                "{} trees, this run has {}",
                h.lanes.len(),
                self.lanes.len()
            )));
        }
        let n = self.buf.agents;
        for (t, (saved, lane)) in h.lanes.iter().zip(&self.lanes).enumerate() {
            let m = lane.edge_count();
            if saved.received.len() != m || saved.counts.len() != m {
                return Err(bad(format!(
                    "tree {t}: {} flags and {} counts for {m} edges",
                    saved.received.len(),
                    saved.counts.len()
                )));
            }
            let consistent = saved.received.iter().zip(&saved.counts).all(|(&r, &c)| {
                if r {
                    (1..n).contains(&c)
                } else {
                    c == 0
                }
            });
            if !consistent {
                return Err(bad(format!("tree {t}: counts do not fit the flags")));
            }
        }
        for (saved, lane) in h.lanes.into_iter().zip(&mut self.lanes) {
            lane.tree.received = saved.received;
            lane.tree.counts = saved.counts;
        }
        self.rounds = h.rounds;
        Ok(())
    }
}
