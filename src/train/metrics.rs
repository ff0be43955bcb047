//! The metrics stream of a run: CSV files written with the `csv` crate from one serde struct per
//! row kind (field order = column order, field name = header), and SVG plots drawn with
//! plotters (accuracies, and the consensus distance on a log scale, against steps).

use crate::error::{Error, Result};
use crate::train::trainer::Summary;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::Cell;
use std::path::Path;

/// One evaluation's metrics: one metrics.csv row (and part of a checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Steps completed.
    pub step: u64,
    /// Fractional epoch t/B.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub epoch: f64,
    /// Learning rate of the last step.
    #[serde(serialize_with = "sci::<6, _>")]
    pub lr: f64,
    /// Consensus-model test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub consensus_acc: f64,
    /// Consensus-model test loss.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub consensus_loss: f64,
    /// Mean local test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub mean_local_acc: f64,
    /// Worst local test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub worst_local_acc: f64,
    /// (1/n) Σ ‖x_i − x̄‖².
    #[serde(serialize_with = "sci::<6, _>")]
    pub consensus_distance: f64,
    /// Mean training loss of the last step.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub train_loss: f64,
    /// Mean bytes sent per agent so far.
    #[serde(serialize_with = "shortest")]
    pub bytes_sent_per_agent: f64,
    /// Wall-clock seconds since the start of training.
    #[serde(serialize_with = "fixed::<4, _>")]
    pub wall_s: f64,
}

/// One run of a comparison: one compare.csv row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    /// The run's label (algorithm and topology).
    pub run: String,
    /// Final consensus-model test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub consensus_acc: f64,
    /// Final mean local test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub mean_local_acc: f64,
    /// Final worst local test accuracy.
    #[serde(serialize_with = "fixed::<6, _>")]
    pub worst_local_acc: f64,
    /// Final consensus distance.
    #[serde(serialize_with = "sci::<6, _>")]
    pub consensus_distance: f64,
    /// Mean bytes sent per agent over the run.
    #[serde(serialize_with = "shortest")]
    pub bytes_sent_per_agent: f64,
    /// Wall-clock seconds of the run.
    #[serde(serialize_with = "fixed::<4, _>")]
    pub wall_s: f64,
    /// Agent-steps per second over the training steps only.
    #[serde(serialize_with = "fixed::<1, _>")]
    pub agent_steps_per_s: f64,
    /// Milliseconds per training step (all agents; evaluations excluded).
    #[serde(serialize_with = "fixed::<4, _>")]
    pub ms_per_step: f64,
}

impl CompareRow {
    /// The row of run `label` with summary `s`.
    pub fn new(label: &str, s: &Summary) -> Self {
        CompareRow {
            run: label.to_string(),
            consensus_acc: s.last.consensus_acc,
            mean_local_acc: s.last.mean_local_acc,
            worst_local_acc: s.last.worst_local_acc,
            consensus_distance: s.last.consensus_distance,
            bytes_sent_per_agent: s.bytes_sent_per_agent,
            wall_s: s.wall_s,
            agent_steps_per_s: s.agent_steps_per_s,
            ms_per_step: s.ms_per_step,
        }
    }
}

thread_local! {
    /// Set while [`write_csv`] serializes: the number formats below apply to CSV text only, so
    /// the same structs serialize plain f64 values to JSON and (bit for bit) to checkpoints.
    static CSV_TEXT: Cell<bool> = const { Cell::new(false) };
}

/// `v` as `text` in CSV (while [`write_csv`] runs), a plain f64 elsewhere.
fn text_in_csv<S: Serializer>(v: f64, text: impl std::fmt::Display, s: S) -> SerResult<S> {
    if CSV_TEXT.get() {
        s.collect_str(&text)
    } else {
        s.serialize_f64(v)
    }
}

type SerResult<S> = std::result::Result<<S as Serializer>::Ok, <S as Serializer>::Error>;

/// Serializes a real as `{:.P}` in CSV text (a plain f64 elsewhere).
pub fn fixed<const P: usize, S: Serializer>(v: &f64, s: S) -> SerResult<S> {
    text_in_csv(*v, format_args!("{v:.P$}"), s)
}

/// Serializes a real as `{:.Pe}` in CSV text (a plain f64 elsewhere).
pub fn sci<const P: usize, S: Serializer>(v: &f64, s: S) -> SerResult<S> {
    text_in_csv(*v, format_args!("{v:.P$e}"), s)
}

/// Serializes a real as Rust's `Display` writes it in CSV text (`1234`, where the csv crate
/// would write `1234.0`; a plain f64 elsewhere).
pub fn shortest<S: Serializer>(v: &f64, s: S) -> SerResult<S> {
    text_in_csv(*v, v, s)
}

/// `rows` as CSV text, with the header line (from the field names of `T`, also when `rows` is
/// empty) or without it.
fn csv_text<T: Serialize + Default>(rows: &[T], header: bool) -> csv::Result<Vec<u8>> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CSV_TEXT.set(false);
        }
    }
    CSV_TEXT.set(true);
    let _reset = Reset;
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    if rows.is_empty() {
        if !header {
            return Ok(Vec::new());
        }
        // The header comes with the first row: write a default row and keep the header.
        w.serialize(T::default())?;
        let mut text = w.into_inner().map_err(|e| e.into_error())?;
        let end = text.iter().position(|&b| b == b'\n').map_or(0, |k| k + 1);
        text.truncate(end);
        return Ok(text);
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// Writes `rows` as a CSV file (header from the field names of `T`, also when `rows` is empty),
/// creating parent directories.
pub fn write_csv<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<()> {
    let text = csv_text(rows, true).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    write_file(path, &text)
}

/// A CSV file written row by row as rows are produced, each row handed to the OS at once, so
/// a run that fails or is interrupted leaves its history; the finished file is what
/// [`write_csv`] writes for the same rows.
#[derive(Debug)]
pub struct CsvAppender {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl CsvAppender {
    /// Creates (or truncates) `path` and writes the header and `rows`.
    pub fn create<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<Self> {
        write_csv(path, rows)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(CsvAppender {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one row.
    pub fn append<T: Serialize + Default>(&mut self, row: &T) -> Result<()> {
        use std::io::Write;
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let text = csv_text(std::slice::from_ref(row), false).map_err(|e| io(e.into()))?;
        self.file.write_all(&text).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// Writes `contents` to `path`, creating parent directories.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)
}

const W: u32 = 760;
const H: u32 = 720;
/// Room above the panels for the caption (up to two lines).
const CAPTION_H: u32 = 40;
/// Room right of each panel for its legend.
const LEGEND_W: u32 = 190;
const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);
const AXIS: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GRID: RGBColor = RGBColor(0xee, 0xee, 0xee);
/// Line colours (Tableau 10); dashes distinguish compared runs beyond ten.
const PALETTE: [u32; 10] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf,
];
/// Dash patterns (dash, gap) in pixels; `None` is solid.
const DASHES: [Option<(u32, u32)>; 3] = [None, Some((6, 3)), Some((2, 3))];

const DIST_TITLE: &str = "Consensus distance (1/n)Σ‖xᵢ − x̄‖² (log scale; 0 drawn at the floor)";

/// One drawn series: its legend label, colour, dash and `(step, value)` points.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    dash: Option<(u32, u32)>,
    points: Vec<(u64, f64)>,
}

impl<'a> Line<'a> {
    fn new(
        label: &'a str,
        (rgb, dash): (u32, Option<(u32, u32)>),
        rows: &[MetricsRow],
        f: fn(&MetricsRow) -> f64,
    ) -> Self {
        let points = rows
            .iter()
            .map(|r| (r.step, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect();
        let [_, r, g, b] = rgb.to_be_bytes();
        Line {
            label,
            color: RGBColor(r, g, b),
            dash,
            points,
        }
    }
}

/// A sans-serif font whose em is `px` pixels (plotters sizes fonts by line height, em × 1.24).
fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidOp {
        op: "plot",
        reason: e.to_string(),
    }
}

/// Draws one panel: white plot area with a grid, axes "step" and `ylabel`, the lines (with a
/// dot per point) and their legend right of the plot. Values are clamped to the y range's
/// floor (so zeros sit on the floor of a log axis).
fn panel<Y>(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    ylabel: &str,
    x_max: u64,
    y: Y,
    lines: &[Line],
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(15.0).style(FontStyle::Bold))
        .margin_left(18)
        .margin_right(LEGEND_W)
        .margin_bottom(4)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(0..x_max, y)?;
    let (y_lo, y_hi) = {
        let r = chart.y_range();
        (r.start, r.end)
    };
    chart.plotting_area().fill(&WHITE)?;
    let log = y_lo > 0.0;
    let decades = if log {
        (y_hi / y_lo).log10().round() as usize
    } else {
        6
    };
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(decades.min(9))
        .y_label_formatter(&|v| {
            if log {
                format!("1e{}", v.log10().round())
            } else {
                let s = format!("{v:.3}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        })
        .x_desc("step")
        .y_desc(ylabel)
        .label_style(font(12.0))
        .axis_desc_style(font(13.0))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .draw()?;
    for line in lines {
        let style = line.color.stroke_width(2);
        let pts: Vec<(u64, f64)> = line.points.iter().map(|&(x, v)| (x, v.max(y_lo))).collect();
        let dots: Vec<_> = pts
            .iter()
            .map(|&p| Circle::new(p, 2, line.color.filled()))
            .collect();
        match line.dash {
            None => chart.draw_series(LineSeries::new(pts, style))?,
            Some((d, g)) => chart.draw_series(DashedLineSeries::new(pts, d, g, style))?,
        };
        chart.draw_series(dots)?;
    }
    chart
        .plotting_area()
        .draw(&Rectangle::new([(0, y_lo), (x_max, y_hi)], AXIS))?;
    // The legend, right of the plot: a swatch and a label per line.
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let (bx, by) = area.get_base_pixel();
    for (k, line) in lines.iter().enumerate() {
        let (x, y) = (xs.end - bx + 15, ys.start - by + 18 + 22 * k as i32);
        let ends = vec![(x, y), (x + 28, y)];
        let style = line.color.stroke_width(2);
        match line.dash {
            None => area.draw(&PathElement::new(ends, style))?,
            Some((d, g)) => area.draw(&plotters::element::DashedPathElement::new(
                ends, d, g, style,
            ))?,
        }
        let label = font(12.0)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(line.label, (x + 34, y), label))?;
    }
    Ok(())
}

/// The log range of the consensus-distance panel: whole decades around the positive finite
/// values (at least one decade; 1e-8..1 without any).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi == 0.0 {
        return 1e-8..1.0;
    }
    let lo = lo.log10().floor();
    // A hair below the decade, so that rounding in plotters still labels the floor.
    10f64.powf(lo) * (1.0 - 1e-12)..10f64.powf(hi.log10().ceil().max(lo + 1.0))
}

/// A two-panel figure: a grey caption (split at " · " into at most two lines), `acc` lines
/// on a linear [0, 1] panel and `dist` lines on a log panel below.
fn figure(caption: &str, acc_title: &str, acc: &[Line], dist: &[Line]) -> Result<String> {
    let x_max = acc
        .iter()
        .chain(dist)
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1, u64::max);
    let range = log_range(dist.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let mut svg = String::new();
    let draw = |svg: &mut String| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (W, H)).into_drawing_area();
        root.fill(&RGBColor(0xfa, 0xfa, 0xfa))?;
        let grey = font(13.0)
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (k, line) in caption_lines(caption).iter().enumerate() {
            root.draw(&Text::new(
                line.as_str(),
                (W as i32 / 2, 4 + 16 * k as i32),
                &grey,
            ))?;
        }
        let (top, bottom) = root
            .margin(CAPTION_H, 0, 0, 0)
            .split_vertically((H - CAPTION_H) / 2);
        panel(&top, acc_title, "accuracy", x_max, 0.0..1.0, acc)?;
        panel(
            &bottom,
            DIST_TITLE,
            "consensus distance",
            x_max,
            range.log_scale(),
            dist,
        )?;
        root.present()?;
        Ok(())
    };
    draw(&mut svg).map_err(plot_error)?;
    Ok(svg)
}

/// Splits a long caption at " · " separators into at most two lines that fit the width.
fn caption_lines(title: &str) -> Vec<String> {
    const MAX: usize = 100;
    let mut lines = vec![String::new()];
    for part in title.split(" · ") {
        let last = lines.len() - 1;
        if lines[last].is_empty() {
            lines[last] = part.to_string();
        } else if last == 0 && lines[0].chars().count() + 3 + part.chars().count() > MAX {
            lines.push(part.to_string());
        } else {
            lines[last] = format!("{} · {part}", lines[last]);
        }
    }
    lines
}

/// An SVG figure: test accuracies (top) and consensus distance, log scale (bottom).
pub fn plot_svg(rows: &[MetricsRow], title: &str) -> Result<String> {
    let acc = [
        Line::new("consensus x̄", (PALETTE[0], DASHES[0]), rows, |r| {
            r.consensus_acc
        }),
        Line::new("mean local", (PALETTE[2], DASHES[1]), rows, |r| {
            r.mean_local_acc
        }),
        Line::new("worst agent", (PALETTE[3], DASHES[2]), rows, |r| {
            r.worst_local_acc
        }),
    ];
    let dist = [Line::new(
        "consensus distance",
        (PALETTE[4], DASHES[0]),
        rows,
        |r| r.consensus_distance,
    )];
    figure(title, "Test accuracy", &acc, &dist)
}

/// An SVG figure comparing runs: consensus accuracy (top) and consensus distance, log scale
/// (bottom), against steps, one coloured line per `(label, rows)` run with a legend.
pub fn plot_compare_svg(runs: &[(&str, &[MetricsRow])], title: &str) -> Result<String> {
    let style = |k: usize| (PALETTE[k % 10], DASHES[(k / 10) % 3]);
    let acc: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(k, (label, rows))| Line::new(label, style(k), rows, |r| r.consensus_acc))
        .collect();
    let dist: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(k, (label, rows))| Line::new(label, style(k), rows, |r| r.consensus_distance))
        .collect();
    figure(title, "Consensus-model test accuracy", &acc, &dist)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn csv_header_formats_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("swarmgrad-metrics-{}", std::process::id()));
        let rows = vec![
            MetricsRow {
                step: 20,
                epoch: 0.4347826,
                lr: 0.1,
                consensus_acc: 0.4355,
                consensus_distance: 1.6198984,
                train_loss: f64::NAN,
                bytes_sent_per_agent: 769600.0,
                wall_s: 1.23456,
                ..Default::default()
            };
            3
        ];
        write_csv(&dir.join("m.csv"), &rows).unwrap();
        let csv = read(&dir.join("m.csv"));
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "step,epoch,lr,consensus_acc,consensus_loss,mean_local_acc,worst_local_acc,consensus_distance,train_loss,bytes_sent_per_agent,wall_s"
        );
        assert_eq!(
            lines.next().unwrap(),
            "20,0.434783,1.000000e-1,0.435500,0.000000,0.000000,0.000000,1.619898e0,NaN,769600,1.2346"
        );
        assert_eq!(csv.lines().count(), 4);
        let back: Vec<MetricsRow> = csv::Reader::from_path(dir.join("m.csv"))
            .unwrap()
            .deserialize()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!((back.len(), back[0].step, back[0].lr), (3, 20, 0.1));
        // The formats apply to CSV text only: JSON keeps plain numbers.
        let json = serde_json::to_string(&rows[0]).unwrap();
        assert!(json.contains("\"epoch\":0.4347826"), "{json}");

        write_csv::<CompareRow>(&dir.join("c.csv"), &[]).unwrap();
        assert_eq!(
            read(&dir.join("c.csv")),
            "run,consensus_acc,mean_local_acc,worst_local_acc,consensus_distance,bytes_sent_per_agent,wall_s,agent_steps_per_s,ms_per_step\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn captions_split_at_separators() {
        assert_eq!(caption_lines("a · b"), vec!["a · b"]);
        let long = ["x".repeat(60), "y".repeat(30), "z".repeat(30)].join(" · ");
        assert_eq!(
            caption_lines(&long),
            vec![
                format!("{} · {}", "x".repeat(60), "y".repeat(30)),
                "z".repeat(30)
            ]
        );
        let r = log_range([0.0, 3e-3, 2.0].into_iter());
        assert!(
            (r.start / 1e-3 - 1.0).abs() < 1e-9 && r.end == 10.0,
            "{r:?}"
        );
        assert_eq!(log_range([0.0].into_iter()), 1e-8..1.0);
    }

    /// `n` rows 10 steps apart, accuracy rising by `acc_step`, distance falling a decade a row.
    fn rising(n: u64, acc_step: f64) -> Vec<MetricsRow> {
        (0..n)
            .map(|k| MetricsRow {
                step: k * 10,
                consensus_acc: acc_step * k as f64,
                consensus_distance: 10f64.powi(-(k as i32)),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let s = plot_svg(&rising(5, 0.1), "t<1>").unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t&lt;1&gt;") && s.contains("polyline"));
        assert!(
            s.contains("\n1e-4\n") && s.contains("\nstep\n"),
            "log axis labels"
        );
    }

    #[test]
    fn compare_svg_has_a_line_and_legend_entry_per_run() {
        let rows = rising(4, 0.2);
        let s = plot_compare_svg(&[("dsgd-ring", &rows), ("a<b", &rows[..2])], "cmp").unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(
            s.matches(r#"stroke-width="2" points="#).count(),
            8,
            "2 runs × 2 panels, each a line and a legend swatch"
        );
        assert_eq!(s.matches("\ndsgd-ring\n").count(), 2);
        assert_eq!(s.matches("\na&lt;b\n").count(), 2);
    }
}
