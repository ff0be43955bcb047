//! The trainer's side of a run sharded over ranks ([`crate::dist`]): a checkpoint holds every
//! agent (rank 0 gathers the blocks in agent order and writes the one file, the same file one
//! process writes), and a resume gives each rank its block back.

use crate::dist::Shard;
use crate::error::{Error, Result};
use crate::objective::SamplerState;
use crate::train::checkpoint::BufData;

/// Buffers that are planes of per-agent values (`[loss(i)..., hits(i)...]`) rather than
/// agent-major slabs, with their number of planes.
fn planes(name: &str) -> usize {
    if name == "objective.loss_stats" {
        2
    } else {
        1
    }
}

/// Which elements of a named buffer each rank computes, for buffers not split into agent-major
/// blocks ([`crate::algo::Algo::owned_elements`]).
pub(crate) type Owned<'a> = &'a dyn Fn(&str, usize) -> Option<Vec<std::ops::Range<usize>>>;

/// A buffer every rank holds whole, each element computed by one rank: every rank's elements
/// gathered into place.
fn gather_owned(shard: &Shard, mine: &[f64], name: &str, owned: Owned<'_>) -> Vec<f64> {
    let ranges = |r: usize| owned(name, r).unwrap_or_default();
    let packed: Vec<f64> = ranges(shard.rank())
        .into_iter()
        .flat_map(|g| mine[g].to_vec())
        .collect();
    let all = shard.all_gather_f64(&packed);
    let mut full = mine.to_vec();
    let mut at = 0;
    for r in 0..shard.ranks() {
        for g in ranges(r) {
            let len = g.len();
            full[g].copy_from_slice(&all[at..at + len]);
            at += len;
        }
    }
    full
}

/// This rank's named buffers → those of all agents, in agent order, on every rank.
pub(crate) fn gather_buffers(
    shard: &Shard,
    local: Vec<(String, BufData)>,
    owned: Owned<'_>,
) -> Vec<(String, BufData)> {
    local
        .into_iter()
        .map(|(name, data)| {
            let k = planes(&name);
            if let (BufData::Real(v), Some(_)) = (&data, owned(&name, shard.rank())) {
                let full = gather_owned(shard, v, &name, owned);
                return (name, BufData::Real(full));
            }
            let all = match data {
                BufData::Real(v) => BufData::Real(shard.all_gather_planes(&v, k)),
                BufData::Index(v) => {
                    // Exact integers: each plane gathered as u64.
                    let per = v.len() / k;
                    let mut all = Vec::with_capacity(v.len() * shard.ranks());
                    for p in 0..k {
                        let wide: Vec<u64> = v[p * per..(p + 1) * per]
                            .iter()
                            .map(|&x| u64::from(x))
                            .collect();
                        all.extend(shard.all_gather_u64(&wide).iter().map(|&x| x as u32));
                    }
                    BufData::Index(all)
                }
            };
            (name, all)
        })
        .collect()
}

/// Every agent's named buffers → this rank's block (agent-major slabs, or planes; a buffer
/// every rank holds whole stays whole).
pub(crate) fn block_of_buffers(
    shard: &Shard,
    all: &[(String, BufData)],
    owned: Owned<'_>,
) -> Vec<(String, BufData)> {
    let (n, range) = (shard.agents(), shard.range());
    all.iter()
        .map(|(name, data)| {
            if owned(name, shard.rank()).is_some() {
                return (name.clone(), data.clone());
            }
            let k = planes(name);
            let take = |len: usize| -> Vec<std::ops::Range<usize>> {
                let plane = len / k;
                let per = plane / n;
                (0..k)
                    .map(|p| p * plane + range.start * per..p * plane + range.end * per)
                    .collect()
            };
            let block = match data {
                BufData::Real(v) => BufData::Real(
                    take(v.len())
                        .into_iter()
                        .flat_map(|r| v[r].to_vec())
                        .collect(),
                ),
                BufData::Index(v) => BufData::Index(
                    take(v.len())
                        .into_iter()
                        .flat_map(|r| v[r].to_vec())
                        .collect(),
                ),
            };
            (name.clone(), block)
        })
        .collect()
}

/// This rank's sampler position → that of all agents (agent order), on every rank.
pub(crate) fn gather_sampler(shard: &Shard, mine: &SamplerState) -> Result<SamplerState> {
    let text = serde_json::to_vec(mine)
        .map_err(|e| Error::param("checkpoint", format!("sampler state: {e}")))?;
    let mut all = SamplerState {
        order: Vec::new(),
        pos: Vec::new(),
        word_pos: Vec::new(),
    };
    for part in shard.all_gather_bytes(&text) {
        let s: SamplerState = serde_json::from_slice(&part)
            .map_err(|e| Error::param("checkpoint", format!("sampler state: {e}")))?;
        all.order.extend(s.order);
        all.pos.extend(s.pos);
        all.word_pos.extend(s.word_pos);
    }
    Ok(all)
}

/// Every agent's sampler position → this rank's block (an error for a position of another
/// number of agents).
pub(crate) fn block_of_sampler(shard: &Shard, all: &SamplerState) -> Result<SamplerState> {
    let r = shard.range();
    let n = shard.agents();
    if all.order.len() != n || all.pos.len() != n || all.word_pos.len() != n {
        return Err(Error::param(
            "sampler state",
            format!("saved for {} agents, not {n}", all.order.len()),
        ));
    }
    Ok(SamplerState {
        order: all.order[r.clone()].to_vec(),
        pos: all.pos[r.clone()].to_vec(),
        word_pos: all.word_pos[r].to_vec(),
    })
}
