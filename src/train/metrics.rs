//! The metrics stream of a run: one CSV row per evaluation and a self-contained SVG plot
//! (accuracies and the consensus distance on a log scale against steps).

use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// One evaluation's metrics, as written to metrics.csv.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MetricsRow {
    /// Steps completed.
    pub step: u64,
    /// Fractional epoch t/B.
    pub epoch: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Consensus-model test accuracy.
    pub consensus_acc: f64,
    /// Consensus-model test loss.
    pub consensus_loss: f64,
    /// Mean local test accuracy.
    pub mean_local_acc: f64,
    /// Worst local test accuracy.
    pub worst_local_acc: f64,
    /// (1/n) Σ ‖x_i − x̄‖².
    pub consensus_distance: f64,
    /// Mean training loss of the last step.
    pub train_loss: f64,
    /// Mean bytes sent per agent so far.
    pub bytes_sent_per_agent: f64,
    /// Wall-clock seconds since the start of training.
    pub wall_s: f64,
}

/// The CSV header of [`MetricsRow`].
pub const CSV_HEADER: &str = "step,epoch,lr,consensus_acc,consensus_loss,mean_local_acc,worst_local_acc,consensus_distance,train_loss,bytes_sent_per_agent,wall_s";

impl MetricsRow {
    /// The row as one CSV line (no newline).
    pub fn csv_line(&self) -> String {
        format!(
            "{},{:.6},{:.6e},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.6},{},{:.4}",
            self.step,
            self.epoch,
            self.lr,
            self.consensus_acc,
            self.consensus_loss,
            self.mean_local_acc,
            self.worst_local_acc,
            self.consensus_distance,
            self.train_loss,
            self.bytes_sent_per_agent,
            self.wall_s
        )
    }
}

/// The whole CSV file for `rows`.
pub fn to_csv(rows: &[MetricsRow]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&r.csv_line());
        s.push('\n');
    }
    s
}

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

const W: f64 = 760.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 70.0;
const GAP: f64 = 70.0;

/// "Nice" tick values covering [lo, hi] (about `n` of them).
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 {
        format!("{v:.0e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel {
    y0: f64,
    x_max: f64,
    y_lo: f64,
    y_hi: f64,
    log: bool,
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * x / self.x_max.max(1e-12)
    }

    fn py(&self, y: f64) -> f64 {
        let (lo, hi, v) = if self.log {
            (
                self.y_lo.log10(),
                self.y_hi.log10(),
                y.max(self.y_lo).log10(),
            )
        } else {
            (self.y_lo, self.y_hi, y)
        };
        self.y0 + PANEL_H * (1.0 - (v - lo) / (hi - lo).max(1e-12))
    }

    fn axes(&self, svg: &mut String, title: &str, ylabel: &str) {
        let (x1, x2) = (LEFT, W - RIGHT);
        let (y1, y2) = (self.y0, self.y0 + PANEL_H);
        let _ = writeln!(
            svg,
            r##"<rect x="{x1}" y="{y1}" width="{}" height="{PANEL_H}" fill="white" stroke="#333"/>"##,
            x2 - x1
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"##,
            (x1 + x2) / 2.0,
            y1 - 10.0,
            escape(title)
        );
        for t in ticks(0.0, self.x_max, 8) {
            let x = self.px(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{y2}" x2="{x:.1}" y2="{}" stroke="#333"/><line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y2}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
                y2 + 5.0,
                y2 + 19.0,
                fmt_tick(t)
            );
        }
        let yt: Vec<f64> = if self.log {
            let (a, b) = (
                self.y_lo.log10().floor() as i32,
                self.y_hi.log10().ceil() as i32,
            );
            let every = ((b - a) / 8 + 1).max(1);
            (a..=b)
                .filter(|e| (e - a) % every == 0)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            ticks(self.y_lo, self.y_hi, 5)
        };
        for t in yt {
            let y = self.py(t);
            let label = if self.log {
                format!("1e{}", t.log10().round() as i32)
            } else {
                fmt_tick(t)
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#333"/><line x1="{x1}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="12" text-anchor="end">{label}</text>"##,
                x1 - 5.0,
                x1 - 8.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" text-anchor="middle">step</text>"##,
            (x1 + x2) / 2.0,
            y2 + 38.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="18" y="{0:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 18 {0:.1})">{1}</text>"##,
            (y1 + y2) / 2.0,
            escape(ylabel)
        );
    }

    fn line(&self, svg: &mut String, pts: &[(f64, f64)], color: &str, dash: &str) {
        let p: Vec<String> = pts
            .iter()
            .filter(|(_, y)| y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        if p.is_empty() {
            return;
        }
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"##,
            p.join(" ")
        );
        for q in &p {
            let (x, y) = q.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r##"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"##
            );
        }
    }

    fn legend(&self, svg: &mut String, items: &[(&str, &str, &str)]) {
        let x = W - RIGHT + 15.0;
        for (k, (name, color, dash)) in items.iter().enumerate() {
            let y = self.y0 + 18.0 + 22.0 * k as f64;
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}" font-size="12">{}</text>"##,
                x + 28.0,
                x + 34.0,
                y + 4.0,
                escape(name)
            );
        }
    }
}

/// Height of a two-panel figure (accuracy on top, consensus distance below).
const FIG_H: f64 = TOP + 2.0 * PANEL_H + GAP + 60.0;

const DIST_TITLE: &str = "Consensus distance (1/n)Σ‖xᵢ − x̄‖² (log scale; 0 drawn at the floor)";

/// Opens a two-panel SVG document with a grey caption line.
fn svg_open(title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{FIG_H}" viewBox="0 0 {W} {FIG_H}" font-family="sans-serif">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#fafafa"/>"##
    );
    for (k, line) in caption_lines(title).iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" text-anchor="middle" fill="#555">{}</text>"##,
            W / 2.0,
            16.0 + 16.0 * k as f64,
            escape(line)
        );
    }
    svg
}

/// Splits a long caption at " · " separators into at most two lines that fit the width.
fn caption_lines(title: &str) -> Vec<String> {
    const MAX: usize = 100;
    if title.chars().count() <= MAX {
        return vec![title.to_string()];
    }
    let parts: Vec<&str> = title.split(" · ").collect();
    let mut first = String::new();
    let mut k = 0;
    while k < parts.len() {
        let next = if first.is_empty() {
            parts[k].to_string()
        } else {
            format!("{first} · {}", parts[k])
        };
        if !first.is_empty() && next.chars().count() > MAX {
            break;
        }
        first = next;
        k += 1;
    }
    let rest = parts[k..].join(" · ");
    if rest.is_empty() {
        vec![first]
    } else {
        vec![first, rest]
    }
}

/// The accuracy panel (top, linear [0, 1]) with its axes drawn.
fn acc_panel(svg: &mut String, x_max: f64, title: &str) -> Panel {
    let p = Panel {
        y0: TOP,
        x_max,
        y_lo: 0.0,
        y_hi: 1.0,
        log: false,
    };
    p.axes(svg, title, "accuracy");
    p
}

/// The consensus-distance panel (bottom, log scale over the positive finite `values`) with
/// its axes drawn.
fn dist_panel(svg: &mut String, x_max: f64, values: impl Iterator<Item = f64>) -> Panel {
    let pos: Vec<f64> = values.filter(|v| v.is_finite() && *v > 0.0).collect();
    let (lo, hi) = if pos.is_empty() {
        (1e-8, 1.0)
    } else {
        let lo = pos.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = pos.iter().copied().fold(0.0, f64::max);
        (
            10f64.powf(lo.log10().floor()),
            10f64
                .powf(hi.log10().ceil())
                .max(10f64.powf(lo.log10().floor() + 1.0)),
        )
    };
    let p = Panel {
        y0: TOP + PANEL_H + GAP,
        x_max,
        y_lo: lo,
        y_hi: hi,
        log: true,
    };
    p.axes(svg, DIST_TITLE, "consensus distance");
    p
}

/// `(step, f(row))` points of a series.
fn series(rows: &[MetricsRow], f: fn(&MetricsRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter().map(|r| (r.step as f64, f(r))).collect()
}

/// A self-contained SVG: test accuracies (top) and consensus distance, log scale (bottom).
pub fn plot_svg(rows: &[MetricsRow], title: &str) -> String {
    let mut svg = svg_open(title);
    let x_max = rows.iter().map(|r| r.step as f64).fold(1.0, f64::max);
    let acc = acc_panel(&mut svg, x_max, "Test accuracy");
    acc.line(
        &mut svg,
        &series(rows, |r| r.consensus_acc),
        "#1f77b4",
        "none",
    );
    acc.line(
        &mut svg,
        &series(rows, |r| r.mean_local_acc),
        "#2ca02c",
        "6 3",
    );
    acc.line(
        &mut svg,
        &series(rows, |r| r.worst_local_acc),
        "#d62728",
        "2 3",
    );
    acc.legend(
        &mut svg,
        &[
            ("consensus x̄", "#1f77b4", "none"),
            ("mean local", "#2ca02c", "6 3"),
            ("worst agent", "#d62728", "2 3"),
        ],
    );
    let dist = dist_panel(&mut svg, x_max, rows.iter().map(|r| r.consensus_distance));
    dist.line(
        &mut svg,
        &series(rows, |r| r.consensus_distance),
        "#9467bd",
        "none",
    );
    dist.legend(&mut svg, &[("consensus distance", "#9467bd", "none")]);
    svg.push_str("</svg>\n");
    svg
}

/// Line colours of [`plot_compare_svg`] (Tableau 10); dashes distinguish runs beyond ten.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A self-contained SVG comparing runs: consensus accuracy (top) and consensus distance, log
/// scale (bottom), against steps, one coloured line per `(label, rows)` run with a legend.
pub fn plot_compare_svg(runs: &[(&str, &[MetricsRow])], title: &str) -> String {
    let mut svg = svg_open(title);
    let x_max = runs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.step as f64))
        .fold(1.0, f64::max);
    let style = |k: usize| {
        let dash = ["none", "6 3", "2 3"][(k / PALETTE.len()) % 3];
        (PALETTE[k % PALETTE.len()], dash)
    };
    let legend: Vec<(&str, &str, &str)> = runs
        .iter()
        .enumerate()
        .map(|(k, (label, _))| {
            let (c, d) = style(k);
            (*label, c, d)
        })
        .collect();
    let acc = acc_panel(&mut svg, x_max, "Consensus-model test accuracy");
    for (k, (_, rows)) in runs.iter().enumerate() {
        let (c, d) = style(k);
        acc.line(&mut svg, &series(rows, |r| r.consensus_acc), c, d);
    }
    acc.legend(&mut svg, &legend);
    let dist = dist_panel(
        &mut svg,
        x_max,
        runs.iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.consensus_distance)),
    );
    for (k, (_, rows)) in runs.iter().enumerate() {
        let (c, d) = style(k);
        dist.line(&mut svg, &series(rows, |r| r.consensus_distance), c, d);
    }
    dist.legend(&mut svg, &legend);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_header_and_one_line_per_row() {
        let rows = vec![
            MetricsRow {
                step: 10,
                consensus_acc: 0.5,
                ..Default::default()
            };
            3
        ];
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), 4);
        assert_eq!(
            csv.lines().next().unwrap().split(',').count(),
            csv.lines().nth(1).unwrap().split(',').count()
        );
    }

    #[test]
    fn ticks_are_nice() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!(t
            .iter()
            .enumerate()
            .all(|(k, v)| (v - 0.2 * k as f64).abs() < 1e-12));
        assert_eq!(
            ticks(0.0, 500.0, 8),
            vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
        );
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let rows: Vec<MetricsRow> = (0..5)
            .map(|k| MetricsRow {
                step: k * 10,
                consensus_acc: 0.1 * k as f64,
                consensus_distance: 10f64.powi(-(k as i32)),
                ..Default::default()
            })
            .collect();
        let s = plot_svg(&rows, "t<1>");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t&lt;1&gt;") && s.contains("polyline"));
    }

    #[test]
    fn compare_svg_has_a_line_and_legend_entry_per_run() {
        let rows: Vec<MetricsRow> = (0..4)
            .map(|k| MetricsRow {
                step: k * 10,
                consensus_acc: 0.2 * k as f64,
                consensus_distance: 10f64.powi(-(k as i32)),
                ..Default::default()
            })
            .collect();
        let s = plot_compare_svg(&[("dsgd-ring", &rows), ("a<b", &rows[..2])], "cmp");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4, "2 runs × 2 panels");
        assert!(s.contains("dsgd-ring") && s.contains("a&lt;b"));
    }
}
