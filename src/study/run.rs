//! Running the study: the fixed data split, one run through the trainer, the results file that
//! makes reruns skip finished runs, and the learning-rate choice on the first seed.

use crate::backend::Backend;
use crate::data::{self, Dataset, MnistKind, Split};
use crate::error::{Error, Result};
use crate::study::plan::{Setting, Variant};
use crate::train::{TrainConfig, Trainer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Seed of the fixed train/test split of the 10 000 MNIST test images.
pub const SPLIT_SEED: u64 = 2024;
/// Fraction of the images held out for testing (2 000 test, 8 000 training images).
pub const TEST_FRACTION: f64 = 0.2;

/// The study's data: the MNIST t10k images split once, with [`SPLIT_SEED`], into 8 000
/// training and 2 000 held-out test images (the same split for every run and seed).
pub fn load_data(dir: Option<&Path>) -> Result<(Dataset, Dataset, PathBuf)> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => data::mnist_dir_from_env().ok_or_else(|| {
            Error::param(
                "data-dir",
                "no MNIST directory found (tried $SWARMGRAD_MNIST_DIR, ../shared/data/mnist, \
                 ../../shared/data/mnist); pass --data-dir",
            )
        })?,
    };
    let all = data::load_mnist_dir(&dir, Split::Test, MnistKind::Mnist)?;
    let (train, test) = data::train_test_split(&all, TEST_FRACTION, SPLIT_SEED)?;
    Ok((train, test, dir))
}

/// One finished run: one row of `results.csv`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultRow {
    /// `<setting>/<variant>/s<seed>/lr<lr>`: what a rerun looks up to skip the run.
    pub run_id: String,
    /// The table the run belongs to.
    pub group: String,
    /// The setting's id.
    pub setting: String,
    /// The setting's column in its tables.
    pub column: String,
    /// Model spec.
    pub model: String,
    /// The variant's label.
    pub variant: String,
    /// The registered algorithm.
    pub algo: String,
    /// The topology it ran on.
    pub topology: String,
    /// Agents.
    pub agents: usize,
    /// Partition.
    pub partition: String,
    /// Local momentum β.
    pub momentum: f64,
    /// Seed (partition, initialisation, minibatches).
    pub seed: u64,
    /// Learning rate.
    pub lr: f64,
    /// Steps.
    pub steps: u64,
    /// `ok`, or `diverged` (metrics NaN).
    pub status: String,
    /// Worst agent's accuracy, each agent's accuracy averaged over the last two evaluations
    /// (ALGORITHMS.md §7.3).
    pub worst_acc: f64,
    /// Worst agent's accuracy at the last evaluation.
    pub worst_acc_last: f64,
    /// Mean local accuracy at the last evaluation.
    pub mean_local_acc: f64,
    /// Consensus-model accuracy at the last evaluation.
    pub consensus_acc: f64,
    /// Consensus distance (1/n)Σ‖x_i − x̄‖² at the last evaluation.
    pub consensus_distance: f64,
    /// Mean bytes sent per agent over the run.
    pub bytes_per_agent: f64,
    /// Wall-clock seconds of the run (evaluations included).
    pub wall_s: f64,
    /// The step of the early evaluation (the first at or after a quarter of the run).
    pub early_step: u64,
    /// Mean local accuracy at `early_step`.
    pub early_mean_local_acc: f64,
}

/// The run id of a variant in a setting at a seed and learning rate.
pub fn run_id(setting: &Setting, variant: &Variant, seed: u64, lr: f64) -> String {
    format!("{}/{}/s{seed}/lr{lr}", setting.id, variant.label)
}

/// The full configuration of one run.
pub fn run_config(variant: &Variant, seed: u64, lr: f64) -> TrainConfig {
    TrainConfig {
        seed,
        lr,
        ..variant.config.clone()
    }
}

/// Trains one run on `train`/`test` with `be`, writing its metrics rows to `metrics` (when
/// given); a run that diverges is a row with status `diverged`. Returns the backend for the
/// next run.
pub fn run_one(
    setting: &Setting,
    variant: &Variant,
    seed: u64,
    lr: f64,
    (train, test): (&Dataset, &Dataset),
    be: Box<dyn Backend>,
    metrics: Option<PathBuf>,
) -> Result<(ResultRow, Box<dyn Backend>)> {
    let config = run_config(variant, seed, lr);
    let mut row = ResultRow {
        run_id: run_id(setting, variant, seed, lr),
        group: setting.group.clone(),
        setting: setting.id.clone(),
        column: setting.column.clone(),
        model: setting.model.clone(),
        variant: variant.label.clone(),
        algo: config.algo.to_string(),
        topology: crate::train::trainer::topology_label(&config),
        agents: config.agents,
        partition: config.partition.clone(),
        momentum: config.momentum,
        seed,
        lr,
        steps: setting.steps,
        ..Default::default()
    };
    let mut trainer = Trainer::with_data(config, be, train, test)?;
    if let Some(path) = metrics {
        trainer.set_metrics_file(path);
    }
    let start = std::time::Instant::now();
    let before_last = setting.steps.saturating_sub(setting.eval_every);
    let outcome = trainer
        .run_until(before_last, |_, _, _| {})
        .and_then(|a| Ok((a, trainer.run(|_, _, _| {})?)));
    row.wall_s = start.elapsed().as_secs_f64();
    match outcome {
        Ok((a, b)) => {
            let (la, lb) = (&a.last.local_acc, &b.last.local_acc);
            row.status = "ok".into();
            row.worst_acc = la
                .iter()
                .zip(lb)
                .map(|(x, y)| 0.5 * (x + y))
                .fold(f64::INFINITY, f64::min);
            row.worst_acc_last = b.last.worst_local_acc;
            row.mean_local_acc = b.last.mean_local_acc;
            row.consensus_acc = b.last.consensus_acc;
            row.consensus_distance = b.last.consensus_distance;
            row.bytes_per_agent = b.bytes_sent_per_agent;
            let quarter = setting.steps.div_ceil(4);
            if let Some(r) = b.rows.iter().find(|r| r.step >= quarter) {
                row.early_step = r.step;
                row.early_mean_local_acc = r.mean_local_acc;
            }
        }
        Err(Error::Diverged { .. }) => {
            row.status = "diverged".into();
            for v in [
                &mut row.worst_acc,
                &mut row.worst_acc_last,
                &mut row.mean_local_acc,
                &mut row.consensus_acc,
                &mut row.consensus_distance,
                &mut row.bytes_per_agent,
                &mut row.early_mean_local_acc,
            ] {
                *v = f64::NAN;
            }
        }
        Err(e) => return Err(e),
    }
    Ok((row, trainer.into_backend()))
}

/// `results.csv`: the rows read at start (to skip finished runs) and appended as runs finish.
pub struct ResultsFile {
    path: PathBuf,
    rows: Vec<ResultRow>,
    index: HashMap<String, usize>,
}

impl ResultsFile {
    /// Opens `path`, reading the rows it holds (none when it does not exist).
    pub fn open(path: &Path) -> Result<Self> {
        let mut rows = Vec::new();
        if path.exists() {
            let mut r = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
            for row in r.deserialize() {
                rows.push(row.map_err(|e| csv_error(path, e))?);
            }
        }
        let index = rows
            .iter()
            .enumerate()
            .map(|(k, r): (usize, &ResultRow)| (r.run_id.clone(), k))
            .collect();
        Ok(ResultsFile {
            path: path.to_path_buf(),
            rows,
            index,
        })
    }

    /// The finished run `id`, if any.
    pub fn get(&self, id: &str) -> Option<&ResultRow> {
        self.index.get(id).map(|&k| &self.rows[k])
    }

    /// Every row.
    pub fn rows(&self) -> &[ResultRow] {
        &self.rows
    }

    /// Appends a finished run to the file (header first when the file is new).
    pub fn push(&mut self, row: ResultRow) -> Result<()> {
        let new = !self.path.exists();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, e))?;
        let mut w = csv::WriterBuilder::new().has_headers(new).from_writer(file);
        w.serialize(&row).map_err(|e| csv_error(&self.path, e))?;
        w.flush().map_err(|e| io_error(&self.path, e))?;
        self.index.insert(row.run_id.clone(), self.rows.len());
        self.rows.push(row);
        Ok(())
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    io_error(path, std::io::Error::other(e.to_string()))
}

/// The learning rate chosen from the grid runs on the first seed: the highest worst-agent
/// accuracy (ties: the smaller rate); `None` when every grid run diverged.
pub fn choose_lr(grid: &[(f64, &ResultRow)]) -> Option<f64> {
    grid.iter()
        .filter(|(_, r)| r.status == "ok" && r.worst_acc.is_finite())
        .fold(None, |best: Option<(f64, f64)>, &(lr, r)| match best {
            Some((_, acc)) if acc >= r.worst_acc => best,
            _ => Some((lr, r.worst_acc)),
        })
        .map(|(lr, _)| lr)
}

/// A file-name-safe form of a run id.
pub fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
