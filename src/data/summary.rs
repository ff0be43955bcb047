//! Per-agent label-histogram summary of a partition: sizes, label entropy, top classes; a
//! compact terminal table (`Display`) and plain rows for CSV/JSON files.

use std::fmt;

use super::{DataError, Dataset};
use crate::train::metrics::fixed;

/// Number of top classes kept per agent.
const TOP_CLASSES: usize = 3;
/// Rows shown before and after the elision in the compact table (`{:#}` shows all).
const SHOWN_ROWS: usize = 8;
/// Largest class count for which the table draws a per-class bar column.
const MAX_BAR_CLASSES: usize = 40;

/// Label statistics of one agent's partition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentSummary {
    /// Agent index.
    pub agent: usize,
    /// Number of samples.
    pub size: usize,
    /// Count per class (length `n_classes`).
    pub histogram: Vec<usize>,
    /// Label entropy in bits (0 = one class; log2(C) = uniform).
    pub entropy_bits: f64,
    /// Up to three most frequent classes with their fractions, most frequent first.
    pub top: Vec<(u32, f64)>,
}

impl AgentSummary {
    /// Builds the summary of one agent from its label histogram.
    fn from_histogram(agent: usize, histogram: Vec<usize>) -> Self {
        let size: usize = histogram.iter().sum();
        let entropy_bits = entropy_bits(&histogram);
        let mut order: Vec<usize> = (0..histogram.len()).filter(|&c| histogram[c] > 0).collect();
        order.sort_by(|&a, &b| histogram[b].cmp(&histogram[a]).then(a.cmp(&b)));
        let top = order
            .iter()
            .take(TOP_CLASSES)
            .map(|&c| (c as u32, histogram[c] as f64 / size as f64))
            .collect();
        Self {
            agent,
            size,
            histogram,
            entropy_bits,
            top,
        }
    }

    /// Number of classes with at least one sample.
    pub fn classes_present(&self) -> usize {
        self.histogram.iter().filter(|&&c| c > 0).count()
    }

    /// Fraction of the most frequent class (0 for an empty agent).
    pub fn dominant_fraction(&self) -> f64 {
        self.top.first().map_or(0.0, |t| t.1)
    }
}

/// Shannon entropy in bits of a histogram (0 for an empty one).
pub(crate) fn entropy_bits(h: &[usize]) -> f64 {
    let n: usize = h.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let h = -h
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            p * p.log2()
        })
        .sum::<f64>();
    // A single class gives −0.0; report it as +0.0 so tables never print "-0.00".
    if h > 0.0 {
        h
    } else {
        0.0
    }
}

/// One flat row per agent: a partition.csv row (field order = column order) or JSON.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SummaryRow {
    /// Agent index.
    pub agent: usize,
    /// Number of samples.
    pub size: usize,
    /// Label entropy in bits.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub entropy_bits: f64,
    /// Number of classes present.
    pub classes_present: usize,
    /// Most frequent class (`-1` for an empty agent).
    pub top_class: i64,
    /// Its fraction of the agent's samples.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub top_fraction: f64,
    /// Top classes as `class:fraction` separated by spaces, e.g. `3:0.520 7:0.310`.
    pub top_classes: String,
    /// Counts per class separated by spaces.
    pub histogram: String,
}

/// Summary of a whole partition: one [`AgentSummary`] per agent plus global statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionSummary {
    /// Dataset name.
    pub dataset: String,
    /// Number of samples in the dataset.
    pub n_samples: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Label histogram of the whole dataset.
    pub global_histogram: Vec<usize>,
    /// Per-agent statistics.
    pub agents: Vec<AgentSummary>,
}

impl PartitionSummary {
    /// Summarises `parts` (one index list per agent) of `ds`.
    pub fn new(ds: &Dataset, parts: &[Vec<usize>]) -> Result<Self, DataError> {
        Self::from_labels(ds.name(), ds.labels(), ds.n_classes(), parts)
    }

    /// Summarises `parts` of a dataset given by its labels (each `< n_classes`).
    pub fn from_labels(
        dataset: &str,
        labels: &[u32],
        n_classes: usize,
        parts: &[Vec<usize>],
    ) -> Result<Self, DataError> {
        let mut global_histogram = vec![0usize; n_classes];
        for (index, &l) in labels.iter().enumerate() {
            match global_histogram.get_mut(l as usize) {
                Some(c) => *c += 1,
                None => {
                    return Err(DataError::LabelOutOfRange {
                        file: dataset.to_string(),
                        index,
                        label: l,
                        n_classes,
                    })
                }
            }
        }
        let mut agents = Vec::with_capacity(parts.len());
        for (a, p) in parts.iter().enumerate() {
            let mut h = vec![0usize; n_classes];
            for &i in p {
                let &l = labels.get(i).ok_or(DataError::IndexOutOfRange {
                    index: i,
                    len: labels.len(),
                })?;
                h[l as usize] += 1;
            }
            agents.push(AgentSummary::from_histogram(a, h));
        }
        Ok(Self {
            dataset: dataset.to_string(),
            n_samples: labels.len(),
            n_classes,
            global_histogram,
            agents,
        })
    }

    /// Total number of samples assigned to some agent.
    pub fn used(&self) -> usize {
        self.agents.iter().map(|a| a.size).sum()
    }

    /// Smallest and largest agent size (0, 0 without agents).
    pub fn size_range(&self) -> (usize, usize) {
        let min = self.agents.iter().map(|a| a.size).min().unwrap_or(0);
        let max = self.agents.iter().map(|a| a.size).max().unwrap_or(0);
        (min, max)
    }

    /// Mean label entropy over agents in bits.
    pub fn mean_entropy_bits(&self) -> f64 {
        if self.agents.is_empty() {
            return 0.0;
        }
        self.agents.iter().map(|a| a.entropy_bits).sum::<f64>() / self.agents.len() as f64
    }

    /// Label entropy of the whole dataset in bits.
    pub fn global_entropy_bits(&self) -> f64 {
        entropy_bits(&self.global_histogram)
    }

    /// One plain row per agent (for CSV or JSON files).
    pub fn rows(&self) -> Vec<SummaryRow> {
        self.agents
            .iter()
            .map(|a| SummaryRow {
                agent: a.agent,
                size: a.size,
                entropy_bits: a.entropy_bits,
                classes_present: a.classes_present(),
                top_class: a.top.first().map_or(-1, |t| i64::from(t.0)),
                top_fraction: a.dominant_fraction(),
                top_classes: top_string(&a.top),
                histogram: a
                    .histogram
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect()
    }
}

/// `class:fraction` pairs separated by spaces.
fn top_string(top: &[(u32, f64)]) -> String {
    top.iter()
        .map(|(c, f)| format!("{c}:{f:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One bar character per class, height ∝ the class's fraction (blank = absent).
fn bars(h: &[usize], size: usize) -> String {
    const LEVELS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    h.iter()
        .map(|&c| {
            if c == 0 || size == 0 {
                ' '
            } else {
                let level = ((c as f64 / size as f64) * 8.0).ceil() as usize;
                LEVELS[level.clamp(1, 8)]
            }
        })
        .collect()
}

impl fmt::Display for PartitionSummary {
    /// Compact table; rows in the middle are elided for many agents unless `{:#}` is used.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.agents.len();
        let (min, max) = self.size_range();
        let mean_size = if n == 0 {
            0.0
        } else {
            self.used() as f64 / n as f64
        };
        writeln!(
            f,
            "partition of {} ({} samples, {} classes) over {} agents: sizes {}..{} (mean {:.1}), {} used",
            self.dataset, self.n_samples, self.n_classes, n, min, max, mean_size, self.used()
        )?;
        let (hmin, hmax) = self
            .agents
            .iter()
            .map(|a| a.entropy_bits)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
                (lo.min(e), hi.max(e))
            });
        if n > 0 {
            writeln!(
                f,
                "label entropy per agent: mean {:.2} bits (min {:.2}, max {:.2}); whole dataset {:.2} bits",
                self.mean_entropy_bits(),
                hmin,
                hmax,
                self.global_entropy_bits()
            )?;
        }
        let show_bars = self.n_classes <= MAX_BAR_CLASSES;
        let bar_width = if show_bars { self.n_classes.max(7) } else { 0 };
        write!(f, "{:>5} {:>7} {:>7}", "agent", "size", "H(bits)")?;
        if show_bars {
            write!(f, "  {:<bar_width$}", "classes")?;
        }
        writeln!(f, "  top classes")?;
        let elide = !f.alternate() && n > 2 * SHOWN_ROWS + 1;
        for (i, a) in self.agents.iter().enumerate() {
            if elide && i == SHOWN_ROWS {
                writeln!(f, "  ... {} more agents ...", n - 2 * SHOWN_ROWS)?;
            }
            if elide && (SHOWN_ROWS..n - SHOWN_ROWS).contains(&i) {
                continue;
            }
            write!(f, "{:>5} {:>7} {:>7.2}", a.agent, a.size, a.entropy_bits)?;
            if show_bars {
                write!(f, "  {:<bar_width$}", bars(&a.histogram, a.size))?;
            }
            writeln!(f, "  {}", top_string(&a.top))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_values() {
        assert_eq!(entropy_bits(&[0, 10, 0]), 0.0);
        assert!(entropy_bits(&[0, 10, 0]).is_sign_positive());
        assert!((entropy_bits(&[5, 5]) - 1.0).abs() < 1e-12);
        assert!((entropy_bits(&[1; 8]) - 3.0).abs() < 1e-12);
        assert_eq!(entropy_bits(&[0, 0]), 0.0);
    }

    #[test]
    fn summary_of_a_small_partition() {
        let labels = [0u32, 0, 1, 2, 2, 2, 1, 0];
        let parts = vec![vec![0, 1, 2, 3], vec![4, 5], vec![]];
        let s = PartitionSummary::from_labels("toy", &labels, 3, &parts).unwrap();
        assert_eq!(s.used(), 6);
        assert_eq!(s.size_range(), (0, 4));
        assert_eq!(s.global_histogram, vec![3, 2, 3]);
        let a0 = &s.agents[0];
        assert_eq!(a0.histogram, vec![2, 1, 1]);
        assert!((a0.entropy_bits - 1.5).abs() < 1e-12);
        assert_eq!(a0.top, vec![(0, 0.5), (1, 0.25), (2, 0.25)]);
        assert_eq!(s.agents[1].top, vec![(2, 1.0)]);
        assert_eq!(s.agents[1].entropy_bits, 0.0);
        assert!(s.agents[2].top.is_empty());

        let rows = s.rows();
        assert_eq!(rows[0].top_classes, "0:0.500 1:0.250 2:0.250");
        assert_eq!(rows[0].histogram, "2 1 1");
        assert_eq!(rows[1].classes_present, 1);
        assert_eq!(rows[2].top_class, -1);
        let path = std::env::temp_dir().join(format!("swarmgrad-part-{}.csv", std::process::id()));
        crate::train::metrics::write_csv(&path, &rows).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(csv.lines().count(), 4);
        assert_eq!(
            csv.lines().next().unwrap(),
            "agent,size,entropy_bits,classes_present,top_class,top_fraction,top_classes,histogram"
        );
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "0,4,1.500000,3,0,0.500000,0:0.500 1:0.250 2:0.250,2 1 1"
        );
        let json = serde_json::to_string(&rows).unwrap();
        assert!(json.contains("\"entropy_bits\":1.5"), "{json}");

        let table = s.to_string();
        assert!(table.contains("over 3 agents"), "{table}");
        assert!(table.contains("0:0.500 1:0.250 2:0.250"), "{table}");
        assert!(table.contains('█'), "{table}");

        assert!(PartitionSummary::from_labels("toy", &labels, 3, &[vec![8]]).is_err());
        assert!(PartitionSummary::from_labels("toy", &labels, 2, &parts).is_err());
    }

    #[test]
    fn many_agents_are_elided_unless_alternate() {
        let labels: Vec<u32> = (0..400).map(|i| (i % 10) as u32).collect();
        let parts: Vec<Vec<usize>> = (0..40).map(|a| (a * 10..a * 10 + 10).collect()).collect();
        let s = PartitionSummary::from_labels("ring", &labels, 10, &parts).unwrap();
        let short = s.to_string();
        assert!(short.contains("... 24 more agents ..."), "{short}");
        assert_eq!(short.lines().count(), 3 + 16 + 1);
        let full = format!("{s:#}");
        assert_eq!(full.lines().count(), 3 + 40);
        assert!((s.mean_entropy_bits() - 10f64.log2()).abs() < 1e-12);
    }
}
