//! Seeded per-agent minibatch sampler: each agent walks a fresh shuffle of its own partition
//! every epoch and drops the incomplete last batch (ALGORITHMS.md §4.3).

use crate::error::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// RNG stream offset of minibatch order (agent i uses stream `SAMPLER_STREAM + i`).
const SAMPLER_STREAM: u64 = 1 << 32;

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
    fn batch_larger_than_a_partition_is_an_error() {
        assert!(Sampler::new(parts(), 6, 0).is_err());
        assert!(Sampler::new(parts(), 0, 0).is_err());
    }
}
