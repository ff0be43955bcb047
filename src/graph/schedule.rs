//! The time-varying one-peer exponential graph of SGP (ALGORITHMS.md §5.12): two rounds per
//! iteration, each a doubly stochastic ½/½ exchange with the peer h hops away.

use std::fmt;
use std::str::FromStr;

use crate::sparse::Csr;

use super::error::{GraphError, Result};
use super::topology::log2_exact;

/// Number of gossip rounds per iteration of SGP.
pub const EXPONENTIAL_ROUNDS: usize = 2;

/// How the hop exponent is chosen for iteration t and round r.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HopSchedule {
    /// The original code's precedence: exponent (t·(2 + r)) mod D (default).
    #[default]
    Code,
    /// The cyclic reading: exponent (2t + r) mod D.
    Cyclic,
}

/// The accepted hop-schedule names.
pub const HOP_SCHEDULE_NAMES: &str = "code, cyclic";

impl fmt::Display for HopSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HopSchedule::Code => "code",
            HopSchedule::Cyclic => "cyclic",
        })
    }
}

impl FromStr for HopSchedule {
    type Err = GraphError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "code" => Ok(HopSchedule::Code),
            "cyclic" => Ok(HopSchedule::Cyclic),
            _ => Err(GraphError::UnknownName {
                kind: "hop schedule",
                value: s.to_string(),
                accepted: HOP_SCHEDULE_NAMES.to_string(),
            }),
        }
    }
}

string_serde!(HopSchedule);

/// One-peer exponential graph on n = 2^D agents: in round r of iteration t agent i sends to
/// (i + h) mod n and receives from (i − h) mod n, h = 2^exponent(t, r).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnePeerExponential {
    n: usize,
    log2_n: u32,
    schedule: HopSchedule,
}

impl OnePeerExponential {
    /// The schedule for n agents (n a power of two ≥ 2).
    pub fn new(n: usize, schedule: HopSchedule) -> Result<OnePeerExponential> {
        let log2_n = log2_exact("exponential", n)?;
        Ok(OnePeerExponential {
            n,
            log2_n,
            schedule,
        })
    }

    /// The same graph with another hop schedule.
    pub fn with_schedule(self, schedule: HopSchedule) -> OnePeerExponential {
        OnePeerExponential { schedule, ..self }
    }

    /// Number of agents.
    pub fn n(&self) -> usize {
        self.n
    }

    /// D = log2(n).
    pub fn log2_n(&self) -> u32 {
        self.log2_n
    }

    /// The hop schedule.
    pub fn schedule(&self) -> HopSchedule {
        self.schedule
    }

    /// Rounds per iteration (2).
    pub fn rounds(&self) -> usize {
        EXPONENTIAL_ROUNDS
    }

    /// Hop exponent of iteration `t`, round `r` (computed without overflow for any t).
    pub fn exponent(&self, t: u64, r: usize) -> u32 {
        let d = u64::from(self.log2_n);
        let r = r as u64 % d;
        let e = match self.schedule {
            HopSchedule::Code => ((t % d) * ((2 + r) % d)) % d,
            HopSchedule::Cyclic => ((t % d) * 2 + r) % d,
        };
        e as u32
    }

    /// Hop distance h = 2^exponent(t, r).
    pub fn hop(&self, t: u64, r: usize) -> usize {
        1usize << self.exponent(t, r)
    }

    /// The agent that `i` sends to in iteration `t`, round `r`: (i + h) mod n.
    pub fn send_to(&self, i: usize, t: u64, r: usize) -> usize {
        (i % self.n + self.hop(t, r)) % self.n
    }

    /// The agent that `i` receives from in iteration `t`, round `r`: (i − h) mod n.
    pub fn receive_from(&self, i: usize, t: u64, r: usize) -> usize {
        (i % self.n + self.n - self.hop(t, r)) % self.n
    }

    /// The round's mixing matrix x_i ← ½x_i + ½x_{(i−h) mod n}, rows sorted by column.
    pub fn mixing(&self, t: u64, r: usize) -> Csr {
        let rows: Vec<Vec<(usize, f64)>> = (0..self.n)
            .map(|i| {
                let j = self.receive_from(i, t, r);
                let mut row = vec![(i, 0.5), (j, 0.5)];
                row.sort_by_key(|&(c, _)| c);
                row
            })
            .collect();
        Csr::from_rows(self.n, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mixing::{check_doubly_stochastic, check_rows_sorted_with_self};
    use super::*;

    #[test]
    fn code_schedule_follows_operator_precedence() {
        let e = OnePeerExponential::new(16, HopSchedule::Code).unwrap();
        assert_eq!(e.log2_n(), 4);
        // D = 4, round 0: exponent 2t mod 4 in {0, 2}: hops {1, 4} only.
        let hops0: Vec<usize> = (0..8).map(|t| e.hop(t, 0)).collect();
        assert_eq!(hops0, vec![1, 4, 1, 4, 1, 4, 1, 4]);
        // Round 1: exponent 3t mod 4 = 0, 3, 2, 1, ...
        let hops1: Vec<usize> = (0..5).map(|t| e.hop(t, 1)).collect();
        assert_eq!(hops1, vec![1, 8, 4, 2, 1]);
        // Agrees with the literal formula for small t, and no overflow for huge t.
        for t in 0..50u64 {
            for r in 0..2 {
                assert_eq!(u64::from(e.exponent(t, r)), (t * (2 + r as u64)) % 4);
            }
        }
        assert_eq!(e.exponent(u64::MAX, 1), ((u64::MAX % 4) * 3 % 4) as u32);
    }

    #[test]
    fn cyclic_schedule_visits_all_hops() {
        let e = OnePeerExponential::new(8, HopSchedule::Cyclic).unwrap();
        let seq: Vec<usize> = (0..3)
            .flat_map(|t| (0..2).map(move |r| (t, r)))
            .map(|(t, r)| e.hop(t, r))
            .collect();
        assert_eq!(seq, vec![1, 2, 4, 1, 2, 4]);
        assert_eq!(e.with_schedule(HopSchedule::Code).hop(1, 0), 4);
    }

    #[test]
    fn peers_and_mixing_matrix() {
        let e = OnePeerExponential::new(8, HopSchedule::Code).unwrap();
        // t = 1, r = 0: exponent 2, hop 4.
        assert_eq!(e.send_to(6, 1, 0), 2);
        assert_eq!(e.receive_from(1, 1, 0), 5);
        let w = e.mixing(1, 0);
        assert_eq!(w.row(1).collect::<Vec<_>>(), vec![(1, 0.5), (5, 0.5)]);
        assert_eq!(w.row(6).collect::<Vec<_>>(), vec![(2, 0.5), (6, 0.5)]);
        for t in 0..6 {
            for r in 0..e.rounds() {
                let w = e.mixing(t, r);
                check_doubly_stochastic(&w, 0.0).unwrap();
                check_rows_sorted_with_self(&w).unwrap();
                // Mean preservation on a non-constant vector.
                let x: Vec<f64> = (0..8).map(|i| (i * 3 % 7) as f64).collect();
                let y: Vec<f64> = (0..8)
                    .map(|i| w.row(i).map(|(c, v)| v * x[c]).sum())
                    .collect();
                assert!((x.iter().sum::<f64>() - y.iter().sum::<f64>()).abs() < 1e-12);
            }
        }
        // n = 2: hop 1, each agent averages with the other.
        let two = OnePeerExponential::new(2, HopSchedule::Code).unwrap();
        assert_eq!(two.mixing(3, 1).to_dense(), vec![vec![0.5, 0.5]; 2]);
    }

    #[test]
    fn exponential_rounds_average_exactly_in_cyclic_mode() {
        // Cyclic hops 1, 2, 4 over n = 8 reach exact consensus after D rounds.
        let e = OnePeerExponential::new(8, HopSchedule::Cyclic).unwrap();
        let mut x: Vec<f64> = (0..8).map(|i| i as f64).collect();
        for k in 0..3u64 {
            let w = e.mixing(k / 2, (k % 2) as usize);
            x = (0..8)
                .map(|i| w.row(i).map(|(c, v)| v * x[c]).sum())
                .collect();
        }
        assert!(x.iter().all(|&v| (v - 3.5).abs() < 1e-12), "{x:?}");
    }

    #[test]
    fn rejects_bad_sizes_and_names() {
        assert_eq!(
            OnePeerExponential::new(12, HopSchedule::Code),
            Err(GraphError::NotPowerOfTwo {
                topology: "exponential",
                n: 12
            })
        );
        assert!(OnePeerExponential::new(1, HopSchedule::Code).is_err());
        assert_eq!("Cyclic".parse(), Ok(HopSchedule::Cyclic));
        assert_eq!(HopSchedule::default().to_string(), "code");
        let err = "random".parse::<HopSchedule>().unwrap_err().to_string();
        assert!(err.contains("code, cyclic"), "{err}");
    }
}
