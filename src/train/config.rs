//! The configuration of a training run: every knob of the main job, fillable from a TOML file
//! (serde) and validated with a clear [`Error::BadParameter`] per bad value.

use crate::algo::{AlgoOptions, Algorithm, LocalHyper};
use crate::backend::ImageShape;
use crate::cli::{clap_defaults, flag_value};
use crate::data::{self, Dataset, MnistKind, Partition, Split};
use crate::error::{Error, Result};
use crate::graph::{MixingRule, Topology};
use crate::model::{Model, ModelSpec};
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
///
/// This struct is the one definition of each setting: its doc comments are the `--help` text of
/// `train`/`compare`, its `#[arg]` attributes the flag and its default (fields without a flag
/// carry their default in `#[arg(skip = …)]`), and serde reads any field from a TOML file.
/// [`Default`] is the flags' defaults ([`clap_defaults`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Run")]
pub struct TrainConfig {
    /// Algorithm (the list, from the registry, is in `--help`).
    #[arg(
        long,
        default_value_t = Algorithm::Dsgd,
        value_parser = flag_value::<Algorithm>,
        help = crate::algo::algorithm_help_text()
    )]
    pub algo: Algorithm,
    /// Topology (ring, torus, complete, star, chain, hypercube, ...) of the gossip algorithms.
    #[arg(long, default_value_t = Topology::Ring, value_parser = flag_value::<Topology>)]
    pub topology: Topology,
    /// Gossip weight rule (`--gossip-weight`).
    #[command(flatten)]
    pub mixing: Mixing,
    /// Number of agents n.
    #[arg(long, default_value_t = 16)]
    pub agents: usize,
    /// Partition: iid, dirichlet (or dirichlet:α), dirichlet-qgm (or dirichlet-qgm:α), shards,
    /// classes:K.
    #[arg(long, default_value = "dirichlet")]
    pub partition: String,
    /// Dirichlet concentration α (small = more skewed; overrides the value in the partition).
    #[arg(long, default_value = "1")]
    pub alpha: Option<f64>,
    /// Dataset: synthetic (no files), mnist, fashion, cifar10.
    #[arg(long, default_value = "synthetic", value_parser = flag_value::<DatasetKind>)]
    pub dataset: DatasetKind,
    /// Directory of the dataset files (MNIST default: $SWARMGRAD_MNIST_DIR, else
    /// ../shared/data/mnist).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Model: mlp:784-128-10, cnn5, resnet20, lenet5, or layers such as
    /// conv3x32,evo,pool2,dense (README: Models; default per dataset).
    #[arg(long)]
    pub model: Option<String>,
    /// Minibatch rows per agent.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Local momentum β in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum (--nesterov false for heavy ball).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    pub nesterov: bool,
    /// Weight decay λ.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Number of steps (takes precedence over `epochs`).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Number of epochs (B = ⌊mean partition size / batch⌋ steps each).
    #[arg(long, default_value = "20")]
    pub epochs: Option<f64>,
    /// Evaluate every this many steps (and at the start and the last step).
    #[arg(long, default_value_t = 25)]
    pub eval_every: u64,
    /// Seed of partition, initialization and minibatches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Warmup length in epochs (0: none).
    #[arg(skip = 0.0)]
    pub warmup_epochs: f64,
    /// Warmup start rate (0 = RelaySGD style; a base rate = QGM style).
    #[arg(skip = 0.0)]
    pub warmup_from: f64,
    /// Fractions of training at which the rate is multiplied by `decay`.
    #[arg(skip)]
    pub decay_at: Vec<f64>,
    /// Decay factor.
    #[arg(skip = 0.1)]
    pub decay: f64,
    /// Identical initialization of every agent.
    #[arg(skip = true)]
    pub identical_init: bool,
    /// Synthetic task: training samples.
    #[arg(skip = 12_000usize)]
    pub synthetic_train: usize,
    /// Synthetic task: test samples.
    #[arg(skip = 2_000usize)]
    pub synthetic_test: usize,
    /// Synthetic task: feature dimension.
    #[arg(skip = 64usize)]
    pub synthetic_dim: usize,
    /// Synthetic task: class separation.
    #[arg(skip = 3.0)]
    pub synthetic_separation: f32,
    /// Test fraction when only a test split exists (MNIST t10k fallback).
    #[arg(skip = 0.2)]
    pub fallback_test_fraction: f64,
    /// Algorithm-specific options (`[options]` in TOML).
    #[command(flatten)]
    pub options: AlgoOptions,
}

impl Default for TrainConfig {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The gossip weight rule of a run: one setting, flattened into every command line that takes
/// it (train, compare, toy) and one TOML key (`mixing = "constant:0.3"`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(transparent)]
pub struct Mixing {
    /// Constant gossip neighbour weight w (self weight 1 − deg·w), overriding the mixing rule
    /// (a rule name is accepted too: metropolis-hastings, uniform, complete).
    #[arg(
        long = "gossip-weight",
        id = "gossip_weight",
        value_name = "W",
        default_value_t = MixingRule::MetropolisHastings,
        value_parser = gossip_weight
    )]
    pub rule: MixingRule,
}

impl Default for Mixing {
    fn default() -> Self {
        clap_defaults()
    }
}

/// `--gossip-weight`: a number w is the constant rule with neighbour weight w; a rule name
/// (`metropolis-hastings`, `uniform`, `complete`, `constant:w`) is that rule.
pub fn gossip_weight(s: &str) -> std::result::Result<MixingRule, String> {
    match s.trim().parse::<f64>() {
        Ok(w) => Ok(MixingRule::Constant(w)),
        Err(_) => flag_value::<MixingRule>(s),
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

    /// The parsed model spec (explicit or the dataset's default).
    pub fn model_spec(&self) -> Result<ModelSpec> {
        let spec = self
            .model
            .clone()
            .unwrap_or_else(|| self.dataset.default_model(self.synthetic_dim, 10));
        ModelSpec::parse(&spec).map_err(|e| Error::param("model", e.to_string()))
    }

    /// The model for `input` images (the data's geometry) and `classes` classes.
    pub fn model(&self, input: ImageShape, classes: usize) -> Result<Model> {
        Model::build(&self.model_spec()?, input, classes)
            .map_err(|e| Error::param("model", e.to_string()))
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
        // Schedule settings are checked as given, also where they are inactive (a warmup of
        // −1 or NaN epochs is an error, not "no warmup").
        for (name, v) in [
            ("warmup_epochs", self.warmup_epochs),
            ("warmup_from", self.warmup_from),
            ("decay", self.decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(name, format!("{v} must be finite and >= 0")));
            }
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
        // Cheap bounds before anything a user value can make large (the topology for n agents).
        let most_samples = match self.dataset {
            DatasetKind::Synthetic => self.synthetic_train,
            DatasetKind::Mnist | DatasetKind::Fashion => 60_000,
            DatasetKind::Cifar10 => 50_000,
        };
        if self.agents > most_samples {
            return Err(Error::param(
                "agents",
                format!(
                    "{} agents for at most {most_samples} training samples: every agent needs \
                     samples of its own",
                    self.agents
                ),
            ));
        }
        self.partition()?;
        self.model_spec()?;
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
        assert!(TrainConfig::from_toml("algo = \"cga9\"")
            .unwrap_err()
            .to_string()
            .contains("unknown algorithm"));
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
