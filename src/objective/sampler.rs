//! Seeded per-agent minibatch sampler: each agent walks a fresh shuffle of its own partition
//! every epoch and drops the incomplete last batch (ALGORITHMS.md §4.3).

use crate::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// RNG stream offset of minibatch order (agent i uses stream `SAMPLER_STREAM + i`).
const SAMPLER_STREAM: u64 = 1 << 32;

/// A sampler's position (part of a checkpoint): every agent's current permutation, cursor and
/// RNG word position.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SamplerState {
    /// The current epoch's permutation of each agent (empty before the first batch).
    pub order: Vec<Vec<u32>>,
    /// Each agent's cursor into its permutation (`u64::MAX` before the first batch).
    pub pos: Vec<u64>,
    /// Each agent's ChaCha word position as (high, low) 64-bit halves.
    pub word_pos: Vec<(u64, u64)>,
}

/// Per-agent minibatch sampler over index lists into one dataset.
#[derive(Clone, Debug)]
pub struct Sampler {
    parts: Vec<Vec<usize>>,
    order: Vec<Vec<u32>>,
    pos: Vec<usize>,
    rngs: Vec<ChaCha8Rng>,
    batch: usize,
}

impl Sampler {
    /// A sampler for `parts` (one index list per agent) drawing `batch` rows per agent per step.
    pub fn new(parts: Vec<Vec<usize>>, batch: usize, seed: u64) -> Result<Self> {
        if batch == 0 {
            return Err(Error::param("batch", "must be at least 1"));
        }
        if let Some((agent, p)) = parts.iter().enumerate().find(|(_, p)| p.len() < batch) {
            return Err(Error::param(
                "batch",
                format!(
                    "{batch} is larger than agent {agent}'s partition of {} samples (drop_last would leave it no batch); use a smaller batch or fewer agents",
                    p.len()
                ),
            ));
        }
        if parts.iter().flatten().any(|&i| i > u32::MAX as usize) {
            return Err(Error::param("dataset", "more than 2^32 samples"));
        }
        let rngs = (0..parts.len())
            .map(|a| {
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(SAMPLER_STREAM + a as u64);
                r
            })
            .collect();
        let n = parts.len();
        Ok(Sampler {
            order: vec![Vec::new(); n],
            pos: vec![usize::MAX; n],
            parts,
            rngs,
            batch,
        })
    }

    /// Rows per agent per step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of agents.
    pub fn agents(&self) -> usize {
        self.parts.len()
    }

    /// Steps per epoch B = ⌊mean partition size / batch⌋ (at least 1).
    pub fn steps_per_epoch(&self) -> usize {
        let total: usize = self.parts.iter().map(Vec::len).sum();
        (total / self.parts.len().max(1) / self.batch).max(1)
    }

    /// Appends the next minibatch of every agent (agent-major, `agents × batch` sample indices).
    pub fn next_into(&mut self, out: &mut Vec<u32>) {
        out.clear();
        for a in 0..self.parts.len() {
            if self.pos[a].saturating_add(self.batch) > self.order[a].len() {
                let mut o: Vec<u32> = self.parts[a].iter().map(|&i| i as u32).collect();
                o.shuffle(&mut self.rngs[a]);
                self.order[a] = o;
                self.pos[a] = 0;
            }
            let p = self.pos[a];
            out.extend_from_slice(&self.order[a][p..p + self.batch]);
            self.pos[a] = p + self.batch;
        }
    }

    /// The sampler's position, enough to continue the same batch sequence after a restore.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            order: self.order.clone(),
            pos: self.pos.iter().map(|&p| p as u64).collect(),
            word_pos: self
                .rngs
                .iter()
                .map(|r| {
                    let w = r.get_word_pos();
                    ((w >> 64) as u64, w as u64)
                })
                .collect(),
        }
    }

    /// Continues from a saved position of a sampler with the same partition, batch and seed.
    pub fn restore(&mut self, s: &SamplerState) -> Result<()> {
        let n = self.parts.len();
        let bad = |r: String| Err(Error::param("sampler state", r));
        if s.order.len() != n || s.pos.len() != n || s.word_pos.len() != n {
            return bad(format!("saved for {} agents, not {n}", s.order.len()));
        }
        for (a, (o, &p)) in s.order.iter().zip(&s.pos).enumerate() {
            let fresh = o.is_empty() && p == u64::MAX;
            let mut sorted = o.clone();
            sorted.sort_unstable();
            let mut part: Vec<u32> = self.parts[a].iter().map(|&i| i as u32).collect();
            part.sort_unstable();
            if !fresh && (sorted != part || p > o.len() as u64) {
                return bad(format!(
                    "agent {a}'s permutation or cursor does not fit its partition"
                ));
            }
        }
        for (a, r) in self.rngs.iter_mut().enumerate() {
            let (hi, lo) = s.word_pos[a];
            r.set_word_pos(((hi as u128) << 64) | lo as u128);
        }
        self.order = s.order.clone();
        self.pos = s
            .pos
            .iter()
            .map(|&p| usize::try_from(p).unwrap_or(usize::MAX))
            .collect();
        Ok(())
    }

    /// Keeps only the agents of `range` (a rank's block of a sharded run), each with its own
    /// stream and position, so they draw exactly the batches they draw among all agents.
    pub fn restrict(&mut self, range: std::ops::Range<usize>) -> Result<()> {
        if range.start >= range.end || range.end > self.parts.len() {
            return Err(Error::param(
                "agents",
                format!("agents {range:?} of a sampler of {}", self.parts.len()),
            ));
        }
        fn keep<T>(v: &mut Vec<T>, range: &std::ops::Range<usize>) {
            v.truncate(range.end);
            v.drain(..range.start);
        }
        keep(&mut self.parts, &range);
        keep(&mut self.order, &range);
        keep(&mut self.pos, &range);
        keep(&mut self.rngs, &range);
        Ok(())
    }

    /// The next minibatch of every agent as a new vector.
    pub fn next_batch(&mut self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.parts.len() * self.batch);
        self.next_into(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<Vec<usize>> {
        vec![(0..10).collect(), (10..27).collect(), (27..32).collect()]
    }

    #[test]
    fn same_seed_same_batches_other_seed_differs() {
        let mut a = Sampler::new(parts(), 4, 7).unwrap();
        let mut b = Sampler::new(parts(), 4, 7).unwrap();
        let mut c = Sampler::new(parts(), 4, 8).unwrap();
        let (mut same, mut diff) = (true, false);
        for _ in 0..20 {
            let (x, y, z) = (a.next_batch(), b.next_batch(), c.next_batch());
            same &= x == y;
            diff |= x != z;
        }
        assert!(same && diff);
    }

    #[test]
    fn each_epoch_is_a_permutation_without_the_last_partial_batch() {
        let mut s = Sampler::new(parts(), 4, 1).unwrap();
        // Agent 1 has 17 samples: 4 batches per epoch, one sample dropped each epoch.
        let mut epochs: Vec<Vec<u32>> = vec![Vec::new(); 2];
        for t in 0..8 {
            let b = s.next_batch();
            assert_eq!(b.len(), 12);
            assert!(
                b[..4].iter().all(|&i| i < 10),
                "agent 0 stays in its partition"
            );
            assert!(
                b[8..].iter().all(|&i| (27..32).contains(&i)),
                "agent 2 stays in its partition"
            );
            epochs[t / 4].extend_from_slice(&b[4..8]);
        }
        for e in &mut epochs {
            let mut u = e.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), 16, "no repeats within an epoch");
            assert!(u.iter().all(|&i| (10..27).contains(&i)));
        }
        assert_ne!(epochs[0], epochs[1], "reshuffled each epoch");
        assert_eq!(s.steps_per_epoch(), 32 / 3 / 4);
    }

    #[test]
    fn restored_state_continues_the_same_sequence() {
        let mut a = Sampler::new(parts(), 4, 5).unwrap();
        let fresh = a.state();
        for _ in 0..7 {
            a.next_batch();
        }
        let saved = a.state();
        let want: Vec<Vec<u32>> = (0..9).map(|_| a.next_batch()).collect();
        let mut b = Sampler::new(parts(), 4, 5).unwrap();
        b.restore(&saved).unwrap();
        let got: Vec<Vec<u32>> = (0..9).map(|_| b.next_batch()).collect();
        assert_eq!(got, want);
        let mut c = Sampler::new(parts(), 4, 5).unwrap();
        c.restore(&fresh).unwrap();
        assert_eq!(
            c.next_batch(),
            Sampler::new(parts(), 4, 5).unwrap().next_batch()
        );
        let mut bad = saved.clone();
        bad.order[0][0] = 31;
        assert!(c.restore(&bad).is_err());
        bad.order.pop();
        assert!(c.restore(&bad).is_err());
    }

    #[test]
    fn batch_larger_than_a_partition_is_an_error() {
        assert!(Sampler::new(parts(), 6, 0).is_err());
        assert!(Sampler::new(parts(), 0, 0).is_err());
    }
}
