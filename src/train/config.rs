//! The configuration of a training run: every knob of the main job, fillable from a TOML file
//! (serde) and validated with a clear [`Error::BadParameter`] per bad value.

use crate::algo::{AlgoOptions, Algorithm, LocalHyper};
use crate::data::{self, Dataset, MnistKind, Partition, Split};
use crate::error::{Error, Result};
use crate::graph::{MixingRule, Topology};
use crate::model::Mlp;
use crate::train::schedule::LrSchedule;
use std::path::PathBuf;

/// Which dataset a run trains on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// The built-in seeded synthetic task (no files needed).
    #[default]
    Synthetic,
    /// MNIST digits (IDX files).
    Mnist,
    /// Fashion-MNIST (IDX files).
    Fashion,
    /// CIFAR-10 (binary batches).
    Cifar10,
}

/// Accepted dataset names.
pub const DATASET_NAMES: &str = "synthetic, mnist, fashion, cifar10";

impl std::str::FromStr for DatasetKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "synthetic" => Ok(DatasetKind::Synthetic),
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion" | "fashion-mnist" => Ok(DatasetKind::Fashion),
            "cifar10" | "cifar-10" | "cifar" => Ok(DatasetKind::Cifar10),
            _ => Err(Error::param(
                "dataset",
                format!("unknown dataset '{s}'; accepted: {DATASET_NAMES}"),
            )),
        }
    }
}

impl DatasetKind {
    /// The lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Fashion => "fashion",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// The default model for this dataset.
    pub fn default_model(&self, synthetic_dim: usize, classes: usize) -> String {
        match self {
            DatasetKind::Synthetic => format!("mlp:{synthetic_dim}-64-{classes}"),
            DatasetKind::Mnist | DatasetKind::Fashion => "mlp:784-128-10".into(),
            DatasetKind::Cifar10 => "mlp:3072-256-10".into(),
        }
    }
}

/// Everything a training run needs; `Default` is the quick synthetic demo.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Algorithm.
    pub algo: Algorithm,
    /// Communication topology (gossip algorithms).
    pub topology: Topology,
    /// Gossip weight rule.
    pub mixing: MixingRule,
    /// Number of agents n.
    pub agents: usize,
    /// Partition scheme: `iid`, `dirichlet[:α]`, `dirichlet-qgm[:α]`, `shards`, `classes[:k]`.
    pub partition: String,
    /// Dirichlet α (overrides the value in `partition`).
    pub alpha: Option<f64>,
    /// Dataset.
    pub dataset: DatasetKind,
    /// Directory of the dataset files (MNIST default: `mnist_dir_from_env()`).
    pub data_dir: Option<PathBuf>,
    /// Model spec, e.g. `mlp:64-64-10` (default per dataset).
    pub model: Option<String>,
    /// Minibatch rows per agent.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Local momentum β in [0, 1).
    pub momentum: f64,
    /// Nesterov (true) or heavy-ball (false) momentum.
    pub nesterov: bool,
    /// Weight decay λ.
    pub weight_decay: f64,
    /// Number of steps (takes precedence over `epochs`).
    pub steps: Option<u64>,
    /// Number of epochs (B = ⌊mean partition size / batch⌋ steps each).
    pub epochs: Option<f64>,
    /// Evaluate every this many steps (and at the start and the last step).
    pub eval_every: u64,
    /// Seed of partition, initialization and minibatches.
    pub seed: u64,
    /// Warmup length in epochs (0: none).
    pub warmup_epochs: f64,
    /// Warmup start rate (0 = RelaySGD style; a base rate = QGM style).
    pub warmup_from: f64,
    /// Fractions of training at which the rate is multiplied by `decay`.
    pub decay_at: Vec<f64>,
    /// Decay factor.
    pub decay: f64,
    /// Identical initialization of every agent.
    pub identical_init: bool,
    /// Synthetic task: training samples.
    pub synthetic_train: usize,
    /// Synthetic task: test samples.
    pub synthetic_test: usize,
    /// Synthetic task: feature dimension.
    pub synthetic_dim: usize,
    /// Synthetic task: class separation.
    pub synthetic_separation: f32,
    /// Test fraction when only a test split exists (MNIST t10k fallback).
    pub fallback_test_fraction: f64,
    /// Algorithm-specific options (`[options]` in TOML).
    pub options: AlgoOptions,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            algo: Algorithm::Dsgd,
            topology: Topology::Ring,
            mixing: MixingRule::MetropolisHastings,
            agents: 16,
            partition: "dirichlet".into(),
            alpha: Some(1.0),
            dataset: DatasetKind::Synthetic,
            data_dir: None,
            model: None,
            batch: 32,
            lr: 0.1,
            momentum: 0.0,
            nesterov: true,
            weight_decay: 1e-4,
            steps: None,
            epochs: Some(20.0),
            eval_every: 25,
            seed: 0,
            warmup_epochs: 0.0,
            warmup_from: 0.0,
            decay_at: Vec::new(),
            decay: 0.1,
            identical_init: true,
            synthetic_train: 12_000,
            synthetic_test: 2_000,
            synthetic_dim: 64,
            synthetic_separation: 3.0,
            fallback_test_fraction: 0.2,
            options: AlgoOptions::default(),
        }
    }
}

/// Datasets of a run and what the user should be told about how they were obtained.
pub struct LoadedData {
    /// Training set.
    pub train: Dataset,
    /// Test set.
    pub test: Dataset,
    /// Notices (e.g. "only the test split was found; it was split 80/20").
    pub notices: Vec<String>,
}

fn finite_pos(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::param(name, format!("{v} must be finite and > 0")))
    }
}

impl TrainConfig {
    /// Parses a TOML document into a config (missing keys keep their defaults).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::param("config", e.to_string().replace('\n', " ")))
    }

    /// The partition scheme with `alpha` applied.
    pub fn partition(&self) -> Result<Partition> {
        let p: Partition = self
            .partition
            .parse()
            .map_err(|e: data::DataError| Error::param("partition", e.to_string()))?;
        match (p, self.alpha) {
            (Partition::Dirichlet { variant, .. }, Some(alpha)) => {
                finite_pos("alpha", alpha)?;
                Ok(Partition::Dirichlet { alpha, variant })
            }
            _ => Ok(p),
        }
    }

    /// The model (explicit spec or the dataset's default).
    pub fn model(&self) -> Result<Mlp> {
        let spec = self
            .model
            .clone()
            .unwrap_or_else(|| self.dataset.default_model(self.synthetic_dim, 10));
        Mlp::parse(&spec).map_err(|e| Error::param("model", e.to_string()))
    }

    /// The learning-rate schedule for a run of `total_epochs`.
    pub fn schedule(&self, total_epochs: f64) -> LrSchedule {
        let s = LrSchedule::constant(self.lr).with_decay_at_fractions(
            &self.decay_at,
            total_epochs,
            self.decay,
        );
        if self.warmup_epochs > 0.0 {
            s.with_warmup(self.warmup_from, self.warmup_epochs)
        } else {
            s
        }
    }

    /// The local optimizer hyperparameters of this run.
    pub fn local_hyper(&self) -> LocalHyper {
        LocalHyper {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
        }
    }

    /// Checks every value that does not need the data; the trainer checks the rest.
    pub fn validate(&self) -> Result<()> {
        self.options.validate()?;
        if self.agents < 1 {
            return Err(Error::param("agents", "need at least 1 agent"));
        }
        if self.batch == 0 {
            return Err(Error::param("batch", "must be at least 1"));
        }
        finite_pos("lr", self.lr)?;
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::param(
                "momentum",
                format!("{} must lie in [0, 1)", self.momentum),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::param(
                "weight_decay",
                format!("{} must be finite and >= 0", self.weight_decay),
            ));
        }
        if self.steps == Some(0) {
            return Err(Error::param("steps", "must be at least 1"));
        }
        if let Some(e) = self.epochs {
            finite_pos("epochs", e)?;
        }
        if self.steps.is_none() && self.epochs.is_none() {
            return Err(Error::param("steps", "give steps or epochs"));
        }
        if self.eval_every == 0 {
            return Err(Error::param("eval_every", "must be at least 1"));
        }
        if self
            .decay_at
            .iter()
            .any(|r| !(r.is_finite() && (0.0..=1.0).contains(r)))
        {
            return Err(Error::param(
                "decay_at",
                "fractions of training must lie in [0, 1]",
            ));
        }
        if !(self.fallback_test_fraction > 0.0 && self.fallback_test_fraction < 1.0) {
            return Err(Error::param(
                "fallback_test_fraction",
                "must lie strictly between 0 and 1",
            ));
        }
        if self.dataset == DatasetKind::Synthetic
            && (self.synthetic_train == 0 || self.synthetic_test == 0 || self.synthetic_dim == 0)
        {
            return Err(Error::param(
                "synthetic",
                "train/test sizes and dimension must be positive",
            ));
        }
        self.schedule(1.0).validate()?;
        self.partition()?;
        self.model()?;
        self.validate_topology()
    }

    /// Checks that the algorithm can run on the topology (its spec's topology need).
    fn validate_topology(&self) -> Result<()> {
        self.algo
            .check_topology(&self.topology, self.agents, self.seed, &self.options)
    }

    /// Loads (or generates) the training and test sets.
    pub fn load_data(&self) -> Result<LoadedData> {
        let mut notices = Vec::new();
        let (train, test) = match self.dataset {
            DatasetKind::Synthetic => data::synthetic_train_test(
                self.synthetic_train,
                self.synthetic_test,
                10,
                self.synthetic_dim,
                self.synthetic_separation,
                self.seed,
            )?,
            DatasetKind::Mnist | DatasetKind::Fashion => {
                let kind = if self.dataset == DatasetKind::Mnist {
                    MnistKind::Mnist
                } else {
                    MnistKind::Fashion
                };
                let dir = match (&self.data_dir, self.dataset) {
                    (Some(d), _) => d.clone(),
                    (None, DatasetKind::Mnist) => data::mnist_dir_from_env().ok_or_else(|| {
                        Error::param(
                            "data_dir",
                            "no MNIST directory found (set SWARMGRAD_MNIST_DIR or pass --data-dir)",
                        )
                    })?,
                    (None, _) => {
                        return Err(Error::param("data_dir", "Fashion-MNIST needs --data-dir"))
                    }
                };
                let test = data::load_mnist_dir(&dir, Split::Test, kind)?;
                match data::load_mnist_dir(&dir, Split::Train, kind) {
                    Ok(train) => (train, test),
                    Err(data::DataError::MissingFile { .. }) => {
                        let (tr, te) =
                            data::train_test_split(&test, self.fallback_test_fraction, self.seed)?;
                        notices.push(format!(
                            "{}: the train split is missing (only t10k files found); splitting the {} test samples into {} train / {} test (fraction {})",
                            dir.display(),
                            test.len(),
                            tr.len(),
                            te.len(),
                            self.fallback_test_fraction
                        ));
                        (tr, te)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            DatasetKind::Cifar10 => {
                let dir = self
                    .data_dir
                    .clone()
                    .ok_or_else(|| Error::param("data_dir", "CIFAR-10 needs --data-dir"))?;
                (
                    data::load_cifar_dir(&dir, Split::Train)?,
                    data::load_cifar_dir(&dir, Split::Test)?,
                )
            }
        };
        Ok(LoadedData {
            train,
            test,
            notices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_toml_round_trips() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        let d = TrainConfig::from_toml("algo = \"allreduce\"\nagents = 4\ntopology = \"complete\"")
            .unwrap();
        assert_eq!(
            (d.algo, d.agents, d.topology),
            (Algorithm::AllReduce, 4, Topology::Complete)
        );
        assert!(TrainConfig::from_toml("agnets = 4").is_err());
        assert!(TrainConfig::from_toml("algo = \"ngm\"")
            .unwrap_err()
            .to_string()
            .contains("not implemented"));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let bad: Vec<(&str, TrainConfig)> = vec![
            (
                "lr",
                TrainConfig {
                    lr: 0.0,
                    ..Default::default()
                },
            ),
            (
                "lr",
                TrainConfig {
                    lr: f64::INFINITY,
                    ..Default::default()
                },
            ),
            (
                "momentum",
                TrainConfig {
                    momentum: 1.0,
                    ..Default::default()
                },
            ),
            (
                "momentum",
                TrainConfig {
                    momentum: -0.1,
                    ..Default::default()
                },
            ),
            (
                "batch",
                TrainConfig {
                    batch: 0,
                    ..Default::default()
                },
            ),
            (
                "agents",
                TrainConfig {
                    agents: 0,
                    ..Default::default()
                },
            ),
            (
                "steps",
                TrainConfig {
                    steps: Some(0),
                    ..Default::default()
                },
            ),
            (
                "eval_every",
                TrainConfig {
                    eval_every: 0,
                    ..Default::default()
                },
            ),
            (
                "topology",
                TrainConfig {
                    topology: Topology::Torus,
                    agents: 10,
                    ..Default::default()
                },
            ),
            (
                "topology",
                TrainConfig {
                    topology: Topology::Ring,
                    agents: 2,
                    ..Default::default()
                },
            ),
            (
                "partition",
                TrainConfig {
                    partition: "zipf".into(),
                    ..Default::default()
                },
            ),
            (
                "alpha",
                TrainConfig {
                    alpha: Some(-1.0),
                    ..Default::default()
                },
            ),
            (
                "model",
                TrainConfig {
                    model: Some("mlp:64-x".into()),
                    ..Default::default()
                },
            ),
        ];
        for (name, c) in bad {
            match c.validate() {
                Err(Error::BadParameter { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: expected BadParameter, got {other:?}"),
            }
        }
    }
}
