//! The reproduction study on real MNIST (`cargo run --release --example study`): the papers'
//! settings (ALGORITHMS.md §9) scaled to this machine, each algorithm's learning rate chosen
//! from a small grid on the first seed, then further seeds at that rate; results in one CSV
//! (one row per run), per-run metrics, Markdown tables in the papers' layout and SVG plots.
//!
//! * [`plan`]: the settings, variants and learning-rate grids.
//! * [`run`]: the fixed data split, one run through the trainer, the results file.
//! * [`report`]: mean ± std over seeds, the tables, the plots and RESULTS.md's generated part.

pub mod plan;
pub mod report;
pub mod run;

use crate::backend::native::NativeBackend;
use crate::backend::Backend;
use crate::error::Result;
use plan::{Scale, Setting};
use run::{ResultRow, ResultsFile};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// What to run and where.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// Full or quick.
    pub scale: Scale,
    /// Output folder (results.csv, lr_choices.csv, tables.md, runs/, the plots).
    pub out: PathBuf,
    /// MNIST folder (default: `$SWARMGRAD_MNIST_DIR`, `../shared/data/mnist`).
    pub data_dir: Option<PathBuf>,
    /// Threads of the native CPU backend (0: one per core).
    pub threads: usize,
    /// Only these groups (`ring16`, `social32`, `ngm-shards`, `matcha8`) or settings
    /// (`ring16-a0.01`); empty: all.
    pub only: Vec<String>,
    /// Only these variants (labels); empty: all.
    pub variants: Vec<String>,
    /// Write the reports from results.csv without training anything (runs not there are
    /// left out of the tables).
    pub report_only: bool,
    /// A Markdown file whose generated section (between the markers of
    /// [`report::BEGIN`] and [`report::END`]) is replaced with the tables.
    pub results_md: Option<PathBuf>,
}

/// The learning rate chosen for a variant in a setting, with the grid's scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LrChoice {
    /// Setting id.
    pub setting: String,
    /// Variant label.
    pub variant: String,
    /// The grid, `;`-separated.
    pub grid: String,
    /// Worst-agent accuracy of each grid point on the first seed (`;`-separated; NaN:
    /// diverged).
    pub grid_worst_acc: String,
    /// The chosen rate (NaN: every grid point diverged).
    pub chosen: f64,
}

/// What a study call did.
pub struct StudyOutcome {
    /// Runs trained by this call.
    pub ran: usize,
    /// Runs found finished in results.csv and skipped.
    pub skipped: usize,
    /// Wall seconds of this call.
    pub wall_s: f64,
    /// Sum of every planned run's own wall time (the study's compute time here).
    pub runs_wall_s: f64,
}

/// Runs every planned run not yet in `results.csv`, then writes the reports. Progress goes to
/// `log` (a bar when stderr is a terminal, else one line per run).
pub fn run_study(opts: &StudyOptions, log: &mut dyn Write) -> Result<StudyOutcome> {
    let start = std::time::Instant::now();
    let (train, test, dir) = run::load_data(opts.data_dir.as_deref())?;
    let _ = writeln!(
        log,
        "data: {} (MNIST t10k): {} training / {} held-out test images, split seed {}",
        dir.display(),
        train.len(),
        test.len(),
        run::SPLIT_SEED
    );
    let settings: Vec<Setting> = plan::settings(opts.scale)
        .into_iter()
        .filter(|s| {
            opts.only.is_empty() || opts.only.contains(&s.group) || opts.only.contains(&s.id)
        })
        .map(|mut s| {
            s.variants
                .retain(|v| opts.variants.is_empty() || opts.variants.contains(&v.label));
            s
        })
        .collect();
    let seeds = opts.scale.seeds();
    let total: usize = settings
        .iter()
        .flat_map(|s| &s.variants)
        .map(|v| v.grid.len() + seeds as usize - 1)
        .sum();
    let mut results = ResultsFile::open(&opts.out.join("results.csv"))?;
    let mut be: Box<dyn Backend> = Box::new(NativeBackend::new(opts.threads)?);
    let _ = writeln!(log, "backend: {}; {total} runs planned", be.describe());
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} runs [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            b.set_style(style);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut runner = Runner {
        bar,
        out: &opts.out,
        data: (&train, &test),
        total,
        report_only: opts.report_only,
        done: 0,
        ran: 0,
        skipped: 0,
    };
    let mut choices = Vec::new();
    for s in &settings {
        for v in &s.variants {
            for &lr in &v.grid {
                be = runner.one(s, v, 0, Some(lr), &mut results, be, log)?;
            }
            let scored: Vec<(f64, &ResultRow)> = v
                .grid
                .iter()
                .filter_map(|&lr| Some((lr, results.get(&run::run_id(s, v, 0, lr))?)))
                .collect();
            let chosen = run::choose_lr(&scored);
            choices.push(LrChoice {
                setting: s.id.clone(),
                variant: v.label.clone(),
                grid: join(v.grid.iter()),
                grid_worst_acc: join(scored.iter().map(|(_, r)| r.worst_acc)),
                chosen: chosen.unwrap_or(f64::NAN),
            });
            for seed in 1..seeds {
                be = runner.one(s, v, seed, chosen, &mut results, be, log)?;
            }
        }
    }
    let Runner {
        bar, ran, skipped, ..
    } = runner;
    bar.finish_and_clear();
    crate::train::metrics::write_csv(&opts.out.join("lr_choices.csv"), &choices)?;
    let rows = results.rows().to_vec();
    report::write_reports(opts, &settings, &rows, &choices)?;
    let runs_wall_s = report::final_and_grid_rows(&settings, &rows, &choices, seeds)
        .iter()
        .fold(0.0, |t, r| t + r.wall_s);
    Ok(StudyOutcome {
        ran,
        skipped,
        wall_s: start.elapsed().as_secs_f64(),
        runs_wall_s,
    })
}

/// Runs planned runs one by one, skipping finished ones, and counts them.
struct Runner<'a> {
    bar: indicatif::ProgressBar,
    out: &'a std::path::Path,
    data: (&'a crate::data::Dataset, &'a crate::data::Dataset),
    total: usize,
    report_only: bool,
    done: usize,
    ran: usize,
    skipped: usize,
}

impl Runner<'_> {
    /// Runs `v` in `s` at `seed` and `lr` unless results.csv has it (`lr` None: every grid
    /// point diverged, nothing to run).
    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        s: &Setting,
        v: &plan::Variant,
        seed: u64,
        lr: Option<f64>,
        results: &mut ResultsFile,
        be: Box<dyn Backend>,
        log: &mut dyn Write,
    ) -> Result<Box<dyn Backend>> {
        self.done += 1;
        self.bar.inc(1);
        let Some(lr) = lr else { return Ok(be) };
        let id = run::run_id(s, v, seed, lr);
        if results.get(&id).is_some() {
            self.skipped += 1;
            return Ok(be);
        }
        if self.report_only {
            return Ok(be);
        }
        self.bar.set_message(id.clone());
        let metrics = self.out.join("runs").join(run::file_name(&id) + ".csv");
        let (row, be) = run::run_one(s, v, seed, lr, self.data, be, Some(metrics))?;
        if self.bar.is_hidden() {
            let _ = writeln!(
                log,
                "[{}/{}] {id}: {} worst {:.4} mean {:.4} consensus {:.4} ({:.1} s)",
                self.done,
                self.total,
                row.status,
                row.worst_acc,
                row.mean_local_acc,
                row.consensus_acc,
                row.wall_s
            );
        }
        results.push(row)?;
        self.ran += 1;
        Ok(be)
    }
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|x| x.to_string()).collect::<Vec<_>>().join(";")
}

impl Default for LrChoice {
    fn default() -> Self {
        LrChoice {
            setting: String::new(),
            variant: String::new(),
            grid: String::new(),
            grid_worst_acc: String::new(),
            chosen: f64::NAN,
        }
    }
}
