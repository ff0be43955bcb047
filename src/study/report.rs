//! The study's reports: mean ± std over seeds per (setting, variant), Markdown tables in the
//! papers' layout (rows algorithms, columns settings), `summary.csv`, and two SVG plots
//! (worst-agent accuracy against α; accuracy against steps in the hardest setting).

use crate::error::{Error, Result};
use crate::study::plan::{Setting, Variant};
use crate::study::run::{self, ResultRow};
use crate::study::{LrChoice, StudyOptions};
use crate::train::metrics::{write_csv, write_file, MetricsRow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;
use std::path::Path;

/// The line before RESULTS.md's generated section.
pub const BEGIN: &str = "<!-- study:generated:begin (cargo run --release --example study) -->";
/// The line after RESULTS.md's generated section.
pub const END: &str = "<!-- study:generated:end -->";

/// Mean and sample standard deviation of the finite values; `diverged` counts the others.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    /// Finite values.
    pub n: usize,
    /// Their mean (NaN when none).
    pub mean: f64,
    /// Their sample standard deviation (0 for one value).
    pub std: f64,
    /// Non-finite values (diverged runs).
    pub diverged: usize,
}

impl Stat {
    /// The statistics of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let all: Vec<f64> = values.into_iter().collect();
        let v: Vec<f64> = all.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / n as f64
        };
        let std = if n < 2 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Stat {
            n,
            mean,
            std,
            diverged: all.len() - n,
        }
    }

    /// `mean ± std` with `f` applied (no ± for one value; `div` marks diverged seeds).
    fn show(&self, f: impl Fn(f64) -> String) -> String {
        let mut s = match self.n {
            0 => "diverged".to_string(),
            1 => f(self.mean),
            _ => format!("{} ± {}", f(self.mean), f(self.std)),
        };
        if self.diverged > 0 && self.n > 0 {
            let _ = write!(s, " ({} div)", self.diverged);
        }
        s
    }
}

/// The rows of the runs at the chosen learning rate, one per seed, of `v` in `s`.
pub fn final_rows<'a>(
    s: &Setting,
    v: &Variant,
    rows: &'a [ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> Vec<&'a ResultRow> {
    let Some(c) = choices
        .iter()
        .find(|c| c.setting == s.id && c.variant == v.label)
    else {
        return Vec::new();
    };
    if !c.chosen.is_finite() {
        // Every grid point diverged: the grid's rows stand for the variant.
        return v
            .grid
            .iter()
            .filter_map(|&lr| find(rows, &run::run_id(s, v, 0, lr)))
            .take(1)
            .collect();
    }
    (0..seeds)
        .filter_map(|seed| find(rows, &run::run_id(s, v, seed, c.chosen)))
        .collect()
}

/// Every planned run's row (the grid on the first seed, the other seeds at the chosen rate).
pub fn final_and_grid_rows<'a>(
    settings: &[Setting],
    rows: &'a [ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> Vec<&'a ResultRow> {
    let mut out = Vec::new();
    for s in settings {
        for v in &s.variants {
            for &lr in &v.grid {
                out.extend(find(rows, &run::run_id(s, v, 0, lr)));
            }
            out.extend(
                final_rows(s, v, rows, choices, seeds)
                    .into_iter()
                    .filter(|r| r.seed > 0),
            );
        }
    }
    out
}

fn find<'a>(rows: &'a [ResultRow], id: &str) -> Option<&'a ResultRow> {
    rows.iter().rev().find(|r| r.run_id == id)
}

/// One (setting, variant) aggregated over seeds: a `summary.csv` row.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SummaryRow {
    /// Group.
    pub group: String,
    /// Setting id.
    pub setting: String,
    /// Column label.
    pub column: String,
    /// Model spec.
    pub model: String,
    /// Variant label.
    pub variant: String,
    /// Chosen learning rate.
    pub lr: f64,
    /// Seeds with a finite result.
    pub seeds: usize,
    /// Seeds that diverged.
    pub diverged: usize,
    /// Worst-agent accuracy (mean over seeds).
    pub worst_acc: f64,
    /// Its standard deviation over seeds.
    pub worst_acc_std: f64,
    /// Mean local accuracy.
    pub mean_local_acc: f64,
    /// Its standard deviation.
    pub mean_local_acc_std: f64,
    /// Consensus-model accuracy.
    pub consensus_acc: f64,
    /// Its standard deviation.
    pub consensus_acc_std: f64,
    /// Consensus distance.
    pub consensus_distance: f64,
    /// Its standard deviation.
    pub consensus_distance_std: f64,
    /// Bytes sent per agent.
    pub bytes_per_agent: f64,
    /// Wall seconds per run.
    pub wall_s: f64,
    /// Its standard deviation.
    pub wall_s_std: f64,
    /// Mean local accuracy at a quarter of the run.
    pub early_mean_local_acc: f64,
    /// Its standard deviation.
    pub early_mean_local_acc_std: f64,
}

/// The metrics a table can show.
#[derive(Clone, Copy)]
struct Metric {
    title: &'static str,
    get: fn(&ResultRow) -> f64,
    show: fn(f64) -> String,
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

const METRICS: &[Metric] = &[
    Metric {
        title: "Worst-agent test accuracy (%), each agent averaged over the last two evaluations",
        get: |r| r.worst_acc,
        show: pct,
    },
    Metric {
        title: "Mean local test accuracy (%)",
        get: |r| r.mean_local_acc,
        show: pct,
    },
    Metric {
        title: "Consensus-model (x̄) test accuracy (%)",
        get: |r| r.consensus_acc,
        show: pct,
    },
    Metric {
        title: "Mean local test accuracy (%) after a quarter of the steps",
        get: |r| r.early_mean_local_acc,
        show: pct,
    },
    Metric {
        title: "Consensus distance (1/n)Σ‖xᵢ − x̄‖²",
        get: |r| r.consensus_distance,
        show: |v| format!("{v:.2e}"),
    },
    Metric {
        title: "Bytes sent per agent (MB)",
        get: |r| r.bytes_per_agent,
        show: |v| format!("{:.0}", v / 1e6),
    },
    Metric {
        title: "Wall time per run (s, 2 shared cores)",
        get: |r| r.wall_s,
        show: |v| format!("{v:.1}"),
    },
];

/// The groups in plan order, each with its settings.
fn groups(settings: &[Setting]) -> Vec<(&str, Vec<&Setting>)> {
    let mut out: Vec<(&str, Vec<&Setting>)> = Vec::new();
    for s in settings {
        match out.iter_mut().find(|(g, _)| *g == s.group) {
            Some((_, v)) => v.push(s),
            None => out.push((&s.group, vec![s])),
        }
    }
    out
}

/// The variant labels of a group, in plan order.
fn labels<'a>(settings: &[&'a Setting]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in settings {
        for v in &s.variants {
            if !out.contains(&v.label.as_str()) {
                out.push(&v.label);
            }
        }
    }
    out
}

/// The Markdown tables of every group and the learning-rate choices.
pub fn tables(
    settings: &[Setting],
    rows: &[ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> String {
    let mut md = String::new();
    for (group, ss) in groups(settings) {
        let first = ss[0];
        let v0 = &first.variants[0].config;
        let mut agents: Vec<String> = Vec::new();
        for s in &ss {
            let a = s.variants[0].config.agents.to_string();
            if !agents.contains(&a) {
                agents.push(a);
            }
        }
        let _ = writeln!(
            md,
            "### {group}: {} agents · {} · {} steps · batch {} · {} seed{}\n",
            agents.join(" / "),
            first.model,
            first.steps,
            v0.batch,
            seeds,
            if seeds == 1 { "" } else { "s" }
        );
        let heads: Vec<String> = ss
            .iter()
            .map(|s| format!("{} ({})", s.column, s.variants[0].config.partition))
            .collect();
        for m in METRICS {
            let _ = writeln!(md, "**{}**\n", m.title);
            let _ = writeln!(md, "| algorithm | topology | {} |", heads.join(" | "));
            let _ = writeln!(md, "|---|---|{}", "---|".repeat(ss.len()));
            for label in labels(&ss) {
                let mut topo = String::new();
                let cells: Vec<String> = ss
                    .iter()
                    .map(|s| match s.variants.iter().find(|v| v.label == label) {
                        Some(v) => {
                            let fr = final_rows(s, v, rows, choices, seeds);
                            if let Some(r) = fr.first() {
                                topo = r.topology.clone();
                            }
                            if fr.is_empty() {
                                "–".into()
                            } else {
                                Stat::of(fr.iter().map(|r| (m.get)(r))).show(m.show)
                            }
                        }
                        None => "".into(),
                    })
                    .collect();
                let _ = writeln!(md, "| {label} | {topo} | {} |", cells.join(" | "));
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "**Learning rate chosen on seed 0 (grid: plain {:?}, momentum {:?}; worst-agent \
             accuracy per grid point in lr_choices.csv)**\n",
            crate::study::plan::GRID_PLAIN,
            crate::study::plan::GRID_MOMENTUM
        );
        let _ = writeln!(md, "| algorithm | {} |", heads.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(ss.len()));
        for label in labels(&ss) {
            let cells: Vec<String> = ss
                .iter()
                .map(|s| {
                    choices
                        .iter()
                        .find(|c| c.setting == s.id && c.variant == label)
                        .map_or(String::new(), |c| {
                            if c.chosen.is_finite() {
                                c.chosen.to_string()
                            } else {
                                "all diverged".into()
                            }
                        })
                })
                .collect();
            let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
        }
        md.push('\n');
    }
    md
}

/// One `summary.csv` row per (setting, variant).
pub fn summary(
    settings: &[Setting],
    rows: &[ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> Vec<SummaryRow> {
    let mut out = Vec::new();
    for s in settings {
        for v in &s.variants {
            let fr = final_rows(s, v, rows, choices, seeds);
            let st = |f: fn(&ResultRow) -> f64| Stat::of(fr.iter().map(|r| f(r)));
            let w = st(|r| r.worst_acc);
            let (m, c, d) = (
                st(|r| r.mean_local_acc),
                st(|r| r.consensus_acc),
                st(|r| r.consensus_distance),
            );
            let (b, t, e) = (
                st(|r| r.bytes_per_agent),
                st(|r| r.wall_s),
                st(|r| r.early_mean_local_acc),
            );
            out.push(SummaryRow {
                group: s.group.clone(),
                setting: s.id.clone(),
                column: s.column.clone(),
                model: s.model.clone(),
                variant: v.label.clone(),
                lr: choices
                    .iter()
                    .find(|c| c.setting == s.id && c.variant == v.label)
                    .map_or(f64::NAN, |c| c.chosen),
                seeds: w.n,
                diverged: w.diverged,
                worst_acc: w.mean,
                worst_acc_std: w.std,
                mean_local_acc: m.mean,
                mean_local_acc_std: m.std,
                consensus_acc: c.mean,
                consensus_acc_std: c.std,
                consensus_distance: d.mean,
                consensus_distance_std: d.std,
                bytes_per_agent: b.mean,
                wall_s: t.mean,
                wall_s_std: t.std,
                early_mean_local_acc: e.mean,
                early_mean_local_acc_std: e.std,
            });
        }
    }
    out
}

/// Colour and dash (dash, gap) of series `k` (Tableau 10; dashed beyond ten, dotted beyond
/// twenty).
fn style(k: usize) -> (RGBColor, Option<(u32, u32)>) {
    const P: [(u8, u8, u8); 10] = [
        (0x1f, 0x77, 0xb4),
        (0xff, 0x7f, 0x0e),
        (0x2c, 0xa0, 0x2c),
        (0xd6, 0x27, 0x28),
        (0x94, 0x67, 0xbd),
        (0x8c, 0x56, 0x4b),
        (0xe3, 0x77, 0xc2),
        (0x7f, 0x7f, 0x7f),
        (0xbc, 0xbd, 0x22),
        (0x17, 0xbe, 0xcf),
    ];
    let (r, g, b) = P[k % 10];
    let dash = [None, Some((6, 3)), Some((2, 3))][(k / 10) % 3];
    (RGBColor(r, g, b), dash)
}

/// Width of the plots (pixels).
const W: u32 = 980;

/// A line chart: `series` of (label, points), x ticks labelled by `x_label`.
fn line_chart(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
    x_label: &dyn Fn(f64) -> String,
    x_ticks: usize,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let mut svg = String::new();
    let draw = |svg: &mut String| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (W, 620)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .margin_right(230)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_labels(x_ticks)
            .x_label_formatter(&|x| x_label(*x))
            .y_label_formatter(&|y| format!("{:.0}", 100.0 * y))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()?;
        for (k, (label, pts)) in series.iter().enumerate() {
            let (color, dash) = style(k);
            let stroke = color.stroke_width(2);
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
            match dash {
                Some((d, g)) => {
                    chart.draw_series(DashedLineSeries::new(pts.clone(), d, g, stroke))?
                }
                None => chart.draw_series(LineSeries::new(pts.clone(), stroke))?,
            };
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            // The legend, right of the plot: a swatch and the label.
            let (x, y) = (W as i32 - 215, 40 + 18 * k as i32);
            let ends = vec![(x, y), (x + 26, y)];
            match dash {
                Some((d, g)) => root.draw(&plotters::element::DashedPathElement::new(
                    ends, d, g, stroke,
                ))?,
                None => root.draw(&PathElement::new(ends, stroke))?,
            }
            let font = ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(label.as_str(), (x + 32, y), font))?;
        }
        root.present()?;
        Ok(())
    };
    draw(&mut svg).map_err(|e| Error::InvalidOp {
        op: "plot",
        reason: e.to_string(),
    })?;
    Ok(svg)
}

/// Worst-agent accuracy (mean over seeds) against the settings of `group`, one line per
/// variant; `None` when the group has fewer than two settings.
pub fn plot_group(
    group: &str,
    settings: &[Setting],
    rows: &[ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> Result<Option<String>> {
    let ss: Vec<&Setting> = settings.iter().filter(|s| s.group == group).collect();
    if ss.len() < 2 {
        return Ok(None);
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = labels(&ss)
        .into_iter()
        .map(|label| {
            let pts = ss
                .iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    let v = s.variants.iter().find(|v| v.label == label)?;
                    let fr = final_rows(s, v, rows, choices, seeds);
                    Some((k as f64, Stat::of(fr.iter().map(|r| r.worst_acc)).mean))
                })
                .collect();
            (label.to_string(), pts)
        })
        .collect();
    let cols: Vec<String> = ss.iter().map(|s| s.column.clone()).collect();
    let lo = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .filter(|y| y.is_finite())
        .fold(1.0f64, f64::min);
    let tick = move |x: f64| {
        let k = x.round();
        if (x - k).abs() < 1e-6 && k >= 0.0 {
            cols.get(k as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let title = format!(
        "{group}: worst-agent test accuracy (mean over {seeds} seed{}) per setting",
        if seeds == 1 { "" } else { "s" }
    );
    line_chart(
        &title,
        (
            "Dirichlet α (smaller: more skewed)",
            "worst-agent accuracy (%)",
        ),
        -0.1..(ss.len() as f64 - 0.9),
        ((lo - 0.05).max(0.0) * 20.0).floor() / 20.0..1.0,
        &tick,
        ss.len(),
        &series,
    )
    .map(Some)
}

/// The per-run metrics of `r` (`runs/<id>.csv`).
pub fn read_metrics(out: &Path, r: &ResultRow) -> Option<Vec<MetricsRow>> {
    let path = out.join("runs").join(run::file_name(&r.run_id) + ".csv");
    let mut rd = csv::Reader::from_path(path).ok()?;
    rd.deserialize().collect::<std::result::Result<_, _>>().ok()
}

/// Worst-agent and mean local accuracy against steps in setting `s`, mean over seeds at the
/// chosen rate, one line per variant.
pub fn plot_curves(
    out: &Path,
    s: &Setting,
    rows: &[ResultRow],
    choices: &[LrChoice],
    seeds: u64,
    (name, f): (&str, fn(&MetricsRow) -> f64),
) -> Result<String> {
    let mut series = Vec::new();
    let mut lo = 1.0f64;
    for v in &s.variants {
        let runs: Vec<Vec<MetricsRow>> = final_rows(s, v, rows, choices, seeds)
            .into_iter()
            .filter(|r| r.status == "ok")
            .filter_map(|r| read_metrics(out, r))
            .collect();
        let Some(first) = runs.first() else { continue };
        let pts: Vec<(f64, f64)> = first
            .iter()
            .enumerate()
            .map(|(k, row)| {
                let y = Stat::of(runs.iter().filter_map(|m| m.get(k).map(f))).mean;
                (row.step as f64, y)
            })
            .collect();
        // The floor follows the curves after the initial evaluation (near 10%).
        for p in pts.iter().skip(1) {
            lo = lo.min(p.1);
        }
        series.push((v.label.clone(), pts));
    }
    let title = format!(
        "{} ({}): {name} test accuracy against steps, mean over seeds",
        s.id, s.variants[0].config.partition
    );
    line_chart(
        &title,
        ("step", &format!("{name} accuracy (%)")),
        0.0..s.steps as f64,
        ((lo - 0.05).max(0.0) * 20.0).floor() / 20.0..1.0,
        &|x| format!("{x:.0}"),
        9,
        &series,
    )
}

/// The hardest setting of the first group: the lowest mean worst-agent accuracy over variants.
pub fn hardest<'a>(
    settings: &'a [Setting],
    rows: &[ResultRow],
    choices: &[LrChoice],
    seeds: u64,
) -> Option<&'a Setting> {
    let group = &settings.first()?.group;
    settings
        .iter()
        .filter(|s| &s.group == group)
        .map(|s| {
            let all = s
                .variants
                .iter()
                .flat_map(|v| final_rows(s, v, rows, choices, seeds))
                .map(|r| r.worst_acc);
            (s, Stat::of(all).mean)
        })
        .filter(|(_, m)| m.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}

/// Writes tables.md, summary.csv and the plots into the output folder, and the generated
/// section of `results_md` when set.
pub fn write_reports(
    opts: &StudyOptions,
    settings: &[Setting],
    rows: &[ResultRow],
    choices: &[LrChoice],
) -> Result<()> {
    let seeds = opts.scale.seeds();
    let out = &opts.out;
    write_csv(
        &out.join("summary.csv"),
        &summary(settings, rows, choices, seeds),
    )?;
    let mut md = tables(settings, rows, choices, seeds);
    let mut plots = Vec::new();
    for (group, _) in groups(settings) {
        if let Some(svg) = plot_group(group, settings, rows, choices, seeds)? {
            let alphas = settings
                .iter()
                .filter(|s| s.group == group)
                .all(|s| s.column.starts_with("α="));
            let file = if alphas {
                format!("{group}_worst_vs_alpha.svg")
            } else {
                format!("{group}_worst_by_setting.svg")
            };
            write_file(&out.join(&file), svg)?;
            plots.push(file);
        }
    }
    if let Some(s) = hardest(settings, rows, choices, seeds) {
        for (name, f) in [
            (
                "worst-agent",
                (|r| r.worst_local_acc) as fn(&MetricsRow) -> f64,
            ),
            ("mean local", |r| r.mean_local_acc),
        ] {
            let svg = plot_curves(out, s, rows, choices, seeds, (name, f))?;
            let file = format!("{}_{}_vs_steps.svg", s.id, name.replace(' ', "_"));
            write_file(&out.join(&file), svg)?;
            plots.push(file);
        }
    }
    let mut gen = md.clone();
    let _ = writeln!(md, "Plots:\n");
    for p in &plots {
        let _ = writeln!(md, "- [{p}]({p})");
    }
    write_file(&out.join("tables.md"), &md)?;
    if let Some(path) = &opts.results_md {
        let dir = path.parent().unwrap_or(Path::new(""));
        let rel = relative(out, dir);
        for p in &plots {
            let _ = writeln!(gen, "![{p}]({rel}/{p})\n");
        }
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let block = format!("{BEGIN}\n\n{gen}\n{END}");
        let text = match (old.find(BEGIN), old.find(END)) {
            (Some(a), Some(b)) if b > a => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("{old}\n{block}\n"),
        };
        write_file(path, text)?;
    }
    Ok(())
}

/// `to` as a path relative to `from` when it lies inside it, else as given.
fn relative(to: &Path, from: &Path) -> String {
    to.strip_prefix(from).unwrap_or(to).display().to_string()
}
