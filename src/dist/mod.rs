//! Agents sharded over processes (MPI ranks): block placement, the halo (ghost-slab) plan of a
//! mixing matrix, and the few collectives the sharded communication, metrics and checkpoints
//! need, over a [`Transport`] (MPI with the `mpi` feature: `dist::mpi::MpiTransport`; threads of one
//! process in tests: [`threads::threads`]).
//!
//! Rank r owns a contiguous block of agents ([`Placement`]) and its own backend, whose
//! agent-major buffers hold only that block. Every collective here gathers per-agent values in
//! agent order and leaves the arithmetic to the same code a single process runs (a sum in agent
//! order on the host, or the backend's own [`crate::backend::Mean`] over all slabs), so the
//! numbers do not depend on the number of ranks. A gossip round refreshes, for each rank, only
//! the ghost slabs its rows read from other ranks ([`HaloPlan`]): one message per pair of ranks
//! joined by a crossing edge, sent and received without blocking, then waited on together.

#[cfg(feature = "mpi")]
pub mod mpi;
pub mod threads;

use crate::error::{Error, Result};
use crate::sparse::Csr;
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

/// Moves bytes between the ranks of one job. Implementations: MPI (`dist::mpi::MpiTransport`, feature `mpi`).
pub trait Transport {
    /// This process's rank (0-based).
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `mine`, in rank order, on every rank (lengths may differ between ranks).
    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>>;
    /// Posts every send (`(peer, bytes)`) and every receive (`(peer, buffer of the exact
    /// length the peer sends)`) without blocking, then waits for all of them.
    fn exchange(&self, sends: &[(usize, Vec<u8>)], recvs: &mut [(usize, Vec<u8>)]);
    /// Ends every rank of the job at once (after a fatal error on one rank, so the others do
    /// not wait forever in a collective).
    fn abort(&self, code: i32) -> !;
}

/// Which agents each rank owns: contiguous blocks in rank order, sizes differing by at most
/// one (the first `n mod R` ranks hold one more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    starts: Vec<usize>,
}

impl Placement {
    /// Blocks of `agents` agents over `ranks` ranks; every rank needs at least one agent.
    pub fn blocks(agents: usize, ranks: usize) -> Result<Self> {
        if ranks == 0 || ranks > agents {
            return Err(Error::param(
                "agents",
                format!(
                    "{agents} agents over {ranks} MPI ranks: every rank needs at least one \
                     agent; run at most {agents} ranks or use more agents"
                ),
            ));
        }
        let (base, extra) = (agents / ranks, agents % ranks);
        let mut starts = Vec::with_capacity(ranks + 1);
        let mut s = 0;
        for r in 0..ranks {
            starts.push(s);
            s += base + usize::from(r < extra);
        }
        starts.push(s);
        Ok(Placement { starts })
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.starts.len() - 1
    }

    /// Number of agents.
    pub fn agents(&self) -> usize {
        self.starts[self.ranks()]
    }

    /// The agents of rank `r`.
    pub fn range(&self, r: usize) -> Range<usize> {
        self.starts[r]..self.starts[r + 1]
    }

    /// The rank owning `agent`.
    pub fn owner(&self, agent: usize) -> usize {
        self.starts.partition_point(|&s| s <= agent) - 1
    }
}

/// How reals travel: f64 where the backend keeps f64 (the CPU reference), else f32, exact
/// either way (a value read back from an f32 backend is an f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// 4 bytes per real.
    F32,
    /// 8 bytes per real.
    F64,
}

impl Wire {
    /// The wire of a backend: f64 where it stores reals in 8 bytes of host memory.
    pub fn for_backend(be: &dyn crate::backend::Backend) -> Self {
        if be.host_bytes(crate::backend::BufKind::F32, 1) == 8 {
            Wire::F64
        } else {
            Wire::F32
        }
    }

    /// Bytes per real.
    pub fn bytes(self) -> usize {
        match self {
            Wire::F32 => 4,
            Wire::F64 => 8,
        }
    }

    fn encode(self, v: &[f64], out: &mut Vec<u8>) {
        match self {
            Wire::F32 => v
                .iter()
                .for_each(|&x| out.extend_from_slice(&(x as f32).to_le_bytes())),
            Wire::F64 => v
                .iter()
                .for_each(|&x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    fn decode(self, b: &[u8], out: &mut Vec<f64>) {
        match self {
            Wire::F32 => out.extend(
                b.chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ),
            Wire::F64 => out.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8 bytes"))),
            ),
        }
    }
}

/// Bytes and messages this rank has sent (all traffic: halos, gathers, checks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent to other ranks.
    pub bytes: u64,
    /// Messages sent to other ranks.
    pub messages: u64,
}

/// The ranks of one job, over a transport: the checks every rank makes together before a run
/// (same configuration, every backend started) and the [`Shard`] of a run.
#[derive(Clone)]
pub struct World {
    transport: Rc<dyn Transport>,
    traffic: Rc<Cell<Traffic>>,
}

impl World {
    /// The ranks the transport connects.
    pub fn new(transport: Rc<dyn Transport>) -> Self {
        World {
            transport,
            traffic: Rc::new(Cell::new(Traffic::default())),
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.transport.rank()
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.transport.size()
    }

    /// Whether this is rank 0 (which prints and writes the outputs).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// What this rank has sent so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.get()
    }

    fn count(&self, bytes: usize, messages: usize) {
        let t = self.traffic.get();
        self.traffic.set(Traffic {
            bytes: t.bytes + bytes as u64,
            messages: t.messages + messages as u64,
        });
    }

    /// Ends every rank of the job (see [`Transport::abort`]).
    pub fn abort(&self, code: i32) -> ! {
        self.transport.abort(code)
    }

    /// Every rank's bytes, in rank order.
    pub fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let others = self.ranks() - 1;
        self.count(mine.len() * others, others);
        self.transport.all_gather(mine)
    }

    /// Whether every rank succeeded: `Ok` on every rank only if every rank's `mine` is `Ok`;
    /// otherwise the same error on every rank, naming each failed rank and its message (so no
    /// rank goes on to wait for the others in a collective).
    pub fn agree<T>(&self, what: &str, mine: Result<T>) -> Result<T> {
        let text = match &mine {
            Ok(_) => String::new(),
            Err(e) => format!("!{e}"),
        };
        let all = self.all_gather_bytes(text.as_bytes());
        let failed: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(r, b)| format!("rank {r}: {}", String::from_utf8_lossy(&b[1..])))
            .collect();
        let same_everywhere = failed.len() == self.ranks() && all.windows(2).all(|p| p[0] == p[1]);
        match mine {
            Ok(v) if failed.is_empty() => Ok(v),
            // Every rank failed the same way (one rank, or a setting they all read): that
            // error itself, as a single process reports it.
            Err(e) if same_everywhere => Err(e),
            _ => Err(Error::param(
                "mpi",
                format!(
                    "{what} failed on {} of {} ranks: {}",
                    failed.len(),
                    self.ranks(),
                    failed.join("; ")
                ),
            )),
        }
    }

    /// Checks that every rank runs the same configuration: a hash of `text` (its canonical
    /// form) compared across ranks; the error names the ranks that differ from rank 0.
    pub fn check_same(&self, what: &str, text: &str) -> Result<()> {
        let h = u64::from(crc32fast::hash(text.as_bytes())) ^ ((text.len() as u64) << 32);
        let all: Vec<u64> = self
            .all_gather_bytes(&h.to_le_bytes())
            .iter()
            .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
            .collect();
        let differ: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, &x)| x != all[0])
            .map(|(r, _)| r.to_string())
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(Error::param(
                "mpi",
                format!(
                    "the ranks disagree on the {what}: rank(s) {} differ from rank 0 (every rank \
                     must get the same flags and config file)",
                    differ.join(", ")
                ),
            ))
        }
    }

    /// One line on what every rank has sent so far (a collective: every rank calls it).
    pub fn traffic_line(&self) -> String {
        let t = self.traffic();
        let all: Vec<Vec<u8>> =
            self.all_gather_bytes(&[t.bytes.to_le_bytes(), t.messages.to_le_bytes()].concat());
        let per: Vec<String> = all
            .iter()
            .enumerate()
            .map(|(r, b)| {
                let v =
                    |k: usize| u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().expect("8 bytes"));
                format!("rank {r} {} B in {} messages", v(0), v(1))
            })
            .collect();
        format!("mpi: {} ranks; sent: {}", self.ranks(), per.join(", "))
    }

    /// This rank's share of a run of `agents` agents, reals travelling as `wire`.
    pub fn shard(&self, agents: usize, wire: Wire) -> Result<Shard> {
        Ok(Shard {
            world: self.clone(),
            placement: Rc::new(Placement::blocks(agents, self.ranks())?),
            wire,
        })
    }
}

/// One rank's view of a sharded run: its block of agents, the world and the wire format.
/// Cheap to clone (shared by the algorithm's channels, the evaluator and the trainer).
#[derive(Clone)]
pub struct Shard {
    world: World,
    placement: Rc<Placement>,
    wire: Wire,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Shard(rank {} of {}, agents {:?} of {})",
            self.rank(),
            self.ranks(),
            self.range(),
            self.agents()
        )
    }
}

impl Shard {
    /// The ranks of the run.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The placement of every rank.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.world.rank()
    }

    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.placement.ranks()
    }

    /// Whether this is rank 0 (which prints and writes the outputs).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// All agents n.
    pub fn agents(&self) -> usize {
        self.placement.agents()
    }

    /// The agents this rank owns.
    pub fn range(&self) -> Range<usize> {
        self.placement.range(self.rank())
    }

    /// The first agent this rank owns.
    pub fn first(&self) -> usize {
        self.range().start
    }

    /// How many agents this rank owns.
    pub fn local(&self) -> usize {
        self.range().len()
    }

    /// The wire format of reals.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Every rank's bytes, in rank order.
    pub fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.world.all_gather_bytes(mine)
    }

    /// See [`World::agree`].
    pub fn agree<T>(&self, what: &str, mine: Result<T>) -> Result<T> {
        self.world.agree(what, mine)
    }

    /// Every rank's reals concatenated in rank order: with agent-major values (`k` per agent),
    /// the values of all agents in agent order.
    pub fn all_gather_f64(&self, mine: &[f64]) -> Vec<f64> {
        let mut bytes = Vec::with_capacity(mine.len() * self.wire().bytes());
        self.wire().encode(mine, &mut bytes);
        let mut out = Vec::new();
        for part in self.all_gather_bytes(&bytes) {
            self.wire().decode(&part, &mut out);
        }
        out
    }

    /// Every rank's integers concatenated in rank order.
    pub fn all_gather_u64(&self, mine: &[u64]) -> Vec<u64> {
        let bytes: Vec<u8> = mine.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.all_gather_bytes(&bytes)
            .iter()
            .flat_map(|b| {
                b.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8 bytes")))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Planes of per-agent values (`planes` consecutive planes of this rank's agents, e.g. a
    /// job-stats buffer `[loss(i)..., hits(i)...]`) gathered into the same planes over all
    /// agents.
    pub fn all_gather_planes(&self, mine: &[f64], planes: usize) -> Vec<f64> {
        let per = mine.len() / planes.max(1);
        let mut out = Vec::with_capacity(per * planes * self.ranks());
        for p in 0..planes {
            out.extend(self.all_gather_f64(&mine[p * per..(p + 1) * per]));
        }
        out
    }

    /// The halo plan of a gossip matrix over all agents (`w`: n × n).
    pub fn halo(&self, w: &Csr) -> HaloPlan {
        HaloPlan::new(self.placement(), self.rank(), w)
    }

    /// One exchange: `local` holds this rank's slabs (`stride` reals each); returns the ghost
    /// slabs received, in the exchange's order (peers in rank order).
    pub fn exchange(&self, ex: &Exchange, local: &[f64], stride: usize) -> Vec<f64> {
        let wire = self.wire();
        let sends: Vec<(usize, Vec<u8>)> = ex
            .sends
            .iter()
            .map(|(peer, slabs)| {
                let mut b = Vec::with_capacity(slabs.len() * stride * wire.bytes());
                for &s in slabs {
                    wire.encode(&local[s * stride..(s + 1) * stride], &mut b);
                }
                (*peer, b)
            })
            .collect();
        let mut recvs: Vec<(usize, Vec<u8>)> = ex
            .recvs
            .iter()
            .map(|(peer, count)| (*peer, vec![0u8; count * stride * wire.bytes()]))
            .collect();
        self.world
            .count(sends.iter().map(|s| s.1.len()).sum(), sends.len());
        self.world.transport.exchange(&sends, &mut recvs);
        let mut out = Vec::with_capacity(ex.ghosts() * stride);
        for (_, b) in &recvs {
            wire.decode(b, &mut out);
        }
        out
    }

    /// Refreshes the ghost slabs of `buf` (slabs `own..` after this rank's `own` slabs) from
    /// their owners, by one exchange: the recorded work is finished and `buf` read back, the
    /// slabs the peers read sent, and the ghosts received written after the own slabs.
    pub fn refresh(
        &self,
        be: &mut dyn crate::backend::Backend,
        ex: &Exchange,
        buf: crate::backend::Buf,
        own: usize,
        stride: usize,
    ) -> Result<()> {
        if ex.is_empty() {
            return Ok(());
        }
        let local = be.read_f32(buf)?;
        let ghosts = self.exchange(ex, &local[..own * stride], stride);
        if ghosts.is_empty() {
            Ok(())
        } else {
            be.write_f64(buf, own * stride, &ghosts)
        }
    }
}

/// The slabs one rank sends to and receives from every other rank in one exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// (peer, own slab indices it reads), peers in rank order.
    sends: Vec<(usize, Vec<usize>)>,
    /// (peer, number of its slabs read here), peers in rank order.
    recvs: Vec<(usize, usize)>,
}

impl Exchange {
    /// Whether nothing is sent or received.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.recvs.is_empty()
    }

    /// Messages this rank sends per exchange.
    pub fn messages(&self) -> usize {
        self.sends.len()
    }

    /// Ghost slabs received per exchange.
    pub fn ghosts(&self) -> usize {
        self.recvs.iter().map(|r| r.1).sum()
    }
}

/// Ghost items of `rank` (agents, gradient jobs: anything numbered globally and owned by one
/// rank) and the exchange that refreshes them. `needs(p)`: the items rank p reads from other
/// ranks; `owner(g)`: the rank owning item g; `local(g)`: g's slab index on its owner. The
/// ghosts come sorted by (owner, item), the order every sender packs them in.
pub fn ghost_items(
    ranks: usize,
    rank: usize,
    needs: &dyn Fn(usize) -> Vec<usize>,
    owner: &dyn Fn(usize) -> usize,
    local: &dyn Fn(usize) -> usize,
) -> (Exchange, Vec<usize>) {
    let sorted = |p: usize| -> Vec<usize> {
        let mut v = needs(p);
        v.sort_unstable_by_key(|&g| (owner(g), g));
        v.dedup();
        v
    };
    let ghosts = sorted(rank);
    let mut ex = Exchange::default();
    for peer in (0..ranks).filter(|&p| p != rank) {
        let read: Vec<usize> = sorted(peer)
            .into_iter()
            .filter(|&g| owner(g) == rank)
            .map(local)
            .collect();
        if !read.is_empty() {
            ex.sends.push((peer, read));
        }
        let count = ghosts.iter().filter(|&&g| owner(g) == peer).count();
        if count > 0 {
            ex.recvs.push((peer, count));
        }
    }
    (ex, ghosts)
}

/// What one rank exchanges for a gossip matrix: its rows restricted to its agents with the
/// columns renumbered (own agents first, then the ghosts), the ghost agents (sorted; grouped by
/// owner in rank order), and which own slabs every other rank reads.
#[derive(Clone, Debug, PartialEq)]
pub struct HaloPlan {
    /// This rank's rows, columns `0..local` its own agents then `local..local + ghosts`.
    pub local: Csr,
    ghosts: Vec<usize>,
    /// The exchange refreshing the ghosts.
    pub exchange: Exchange,
}

impl HaloPlan {
    /// The plan of `rank` under `placement` for `w` (n × n): every entry of this rank's rows
    /// outside its block is a ghost (zero weights included, so the mix reads exactly what a
    /// single process reads).
    pub fn new(placement: &Placement, rank: usize, w: &Csr) -> Self {
        let mine = placement.range(rank);
        let needs = |p: usize| -> Vec<usize> {
            let theirs = placement.range(p);
            theirs
                .clone()
                .flat_map(|r| w.row(r).map(|(c, _)| c))
                .filter(|c| !theirs.contains(c))
                .collect()
        };
        let owner = |g: usize| placement.owner(g);
        let local = |g: usize| g - placement.range(placement.owner(g)).start;
        let (exchange, ghosts) = ghost_items(placement.ranks(), rank, &needs, &owner, &local);
        let local_col = |c: usize| -> usize {
            if mine.contains(&c) {
                c - mine.start
            } else {
                mine.len() + ghosts.binary_search(&c).expect("every ghost is listed")
            }
        };
        let rows: Vec<Vec<(usize, f64)>> = mine
            .clone()
            .map(|r| w.row(r).map(|(c, v)| (local_col(c), v)).collect())
            .collect();
        HaloPlan {
            local: Csr::from_rows(mine.len() + ghosts.len(), &rows),
            ghosts,
            exchange,
        }
    }

    /// The ghost agents (global ids), in the order of the local columns after the own agents.
    pub fn ghosts(&self) -> &[usize] {
        &self.ghosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_contiguous_even_and_refuse_more_ranks_than_agents() {
        let p = Placement::blocks(10, 3).unwrap();
        assert_eq!(
            (0..3).map(|r| p.range(r)).collect::<Vec<_>>(),
            vec![0..4, 4..7, 7..10]
        );
        assert_eq!(
            (0..10).map(|a| p.owner(a)).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(Placement::blocks(4, 4).unwrap().range(3), 3..4);
        let e = Placement::blocks(3, 4).unwrap_err().to_string();
        assert!(e.contains("3 agents over 4 MPI ranks"), "{e}");
    }

    #[test]
    fn a_ring_plan_reads_one_ghost_per_side_and_keeps_entry_order() {
        let n = 6;
        let rows: Vec<Vec<(usize, f64)>> = (0..n)
            .map(|i| vec![((i + n - 1) % n, 0.25), (i, 0.5), ((i + 1) % n, 0.25)])
            .collect();
        let w = Csr::from_rows(n, &rows);
        let p = Placement::blocks(n, 2).unwrap();
        let h0 = HaloPlan::new(&p, 0, &w);
        assert_eq!(h0.ghosts(), &[3, 5]);
        // Row 0 reads 5 (ghost 1 → column 4), 0, 1, in W's entry order.
        assert_eq!(
            h0.local.row(0).collect::<Vec<_>>(),
            vec![(4, 0.25), (0, 0.5), (1, 0.25)]
        );
        assert_eq!(h0.exchange.sends, vec![(1, vec![0, 2])]);
        assert_eq!(h0.exchange.recvs, vec![(1, 2)]);
        let h1 = HaloPlan::new(&p, 1, &w);
        assert_eq!(h1.ghosts(), &[0, 2]);
        assert_eq!(h1.exchange.sends, vec![(0, vec![0, 2])]);
        // One rank: no ghosts, the matrix itself.
        let one = HaloPlan::new(&Placement::blocks(n, 1).unwrap(), 0, &w);
        assert!(one.ghosts().is_empty() && one.exchange.is_empty());
        assert_eq!(one.local, w);
    }

    #[test]
    fn wires_round_trip_exactly() {
        let v = [1.5, -0.1f32 as f64, f64::from(f32::MAX)];
        for wire in [Wire::F32, Wire::F64] {
            let (mut b, mut out) = (Vec::new(), Vec::new());
            wire.encode(&v, &mut b);
            assert_eq!(b.len(), 3 * wire.bytes());
            wire.decode(&b, &mut out);
            assert_eq!(out, v);
        }
    }
}
