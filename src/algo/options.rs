//! Algorithm-specific options with the papers' defaults (ALGORITHMS.md §5). A TOML config sets
//! them in an `[options]` table; the command line has one flag per field.

use crate::cli::{clap_defaults, flag_value};
use crate::error::{Error, Result};
use crate::graph::{HopSchedule, LrCorrection, MatchaGraph};

/// How RelaySGD normalises the relayed sum (§5.5 step 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayNormalisation {
    /// `(S_i + (n − N_i)·x0)/n`: the initial model stands in for models not yet arrived.
    #[default]
    World,
    /// `S_i / N_i`.
    Counts,
}

impl std::str::FromStr for RelayNormalisation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "world" => Ok(RelayNormalisation::World),
            "counts" => Ok(RelayNormalisation::Counts),
            other => Err(Error::param(
                "relay-normalisation",
                format!("unknown '{other}'; accepted: world, counts"),
            )),
        }
    }
}

/// D-PSGD's order of local step and gossip (ALGORITHMS.md §5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DsgdOrder {
    /// Adapt-then-combine: `x ← W·LocalStep(x, ∇F(x))` (Lian et al., epfml/relaysgd).
    #[default]
    Atc,
    /// Combine-then-adapt: `x½ = W x`, `x ← LocalStep(x½, ∇F(x½))` (the NGM repository).
    Cta,
}

impl std::str::FromStr for DsgdOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "atc" | "adapt-then-combine" => Ok(DsgdOrder::Atc),
            "cta" | "combine-then-adapt" => Ok(DsgdOrder::Cta),
            other => Err(Error::param(
                "dsgd-order",
                format!("unknown '{other}'; accepted: atc, cta"),
            )),
        }
    }
}

/// NGM's weights π of the combined gradient (ALGORITHMS.md §5.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NgmPi {
    /// π = 1/(deg_i + 1) for every term (the original; exact on regular graphs).
    #[default]
    Uniform,
    /// π_ij = W_ij, the gossip weights (for irregular graphs; equal to uniform on a ring with
    /// uniform weights).
    Weights,
}

impl std::str::FromStr for NgmPi {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Ok(NgmPi::Uniform),
            "weights" | "w" => Ok(NgmPi::Weights),
            other => Err(Error::param(
                "ngm-pi",
                format!("unknown '{other}'; accepted: uniform, weights"),
            )),
        }
    }
}

/// What CompNGM charges for its compressed round 2 (ALGORITHMS.md §5.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompCharge {
    /// ⌈ℓ/8⌉ + 4 bytes per tensor of length ℓ per neighbour (the crate's accounting).
    #[default]
    Compressed,
    /// 4ℓ bytes per tensor, as the original code sends and counts (f32 tensors).
    F32,
}

impl std::str::FromStr for CompCharge {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "compressed" | "sign" => Ok(CompCharge::Compressed),
            "f32" | "float" => Ok(CompCharge::F32),
            other => Err(Error::param(
                "comp-charge",
                format!("unknown '{other}'; accepted: compressed, f32"),
            )),
        }
    }
}

/// Which pipeline CGA runs (ALGORITHMS.md §5.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgaPipeline {
    /// NGM steps 1–5 with α = 1 (damped gossip first, self-gradient post-gossip), the QP, then
    /// weight decay, momentum and the step (the NGM paper's baseline).
    #[default]
    Ngm,
    /// The original CGA: every gradient at x^t, the QP, then
    /// x ← Σ_j π_ij x_j − η·LocalStep direction (gossip with the π weights, no damping).
    Original,
}

impl std::str::FromStr for CgaPipeline {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ngm" => Ok(CgaPipeline::Ngm),
            "original" => Ok(CgaPipeline::Original),
            other => Err(Error::param(
                "cga-pipeline",
                format!("unknown '{other}'; accepted: ngm, original"),
            )),
        }
    }
}

/// How MATCHA draws its activation flags (ALGORITHMS.md §5.15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchaMode {
    /// Bernoulli(p_j) flags under the budget, from one stream shared by all agents.
    #[default]
    Random,
    /// The original code's FixedProcessor: matching 1 at even, matching 0 at odd steps, with
    /// α_fix = 2/(λ₂(L) + λ_max(L)); the budget is ignored.
    FixedProcessor,
}

impl std::str::FromStr for MatchaMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "random" | "matcha" => Ok(MatchaMode::Random),
            "fixed-processor" | "fixed" | "code" => Ok(MatchaMode::FixedProcessor),
            other => Err(Error::param(
                "matcha-mode",
                format!("unknown '{other}'; accepted: random, fixed-processor"),
            )),
        }
    }
}

/// Options of the algorithms beyond the local optimizer; defaults follow ALGORITHMS.md.
///
/// This struct is the one definition of each option: its doc comments are the `--help` text,
/// its `#[arg]` attributes the flag and its default, serde reads it from a TOML `[options]`
/// table, and [`Default`] is the flags' defaults (see [`crate::cli::clap_defaults`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Algorithm options (defaults from the papers)")]
pub struct AlgoOptions {
    /// QGM μ (default: β).
    #[arg(long)]
    pub qgm_mu: Option<f64>,
    /// QGM buffer period K (1: update every iteration).
    #[arg(long, default_value_t = 1)]
    pub qgm_period: u64,
    /// QG-Adam β1.
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    /// QG-Adam β2.
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    /// QG-Adam ε.
    #[arg(long, default_value = "1e-8")]
    pub adam_eps: f64,
    /// RelaySGD learning-rate correction: none (the plain learning rate), exact, half-diameter
    /// or a number.
    #[arg(long, default_value = "none", value_parser = flag_value::<LrCorrection>)]
    pub relay_lr_correction: LrCorrection,
    /// RelaySGD normalisation: world or counts.
    #[arg(long, default_value = "world", value_parser = flag_value::<RelayNormalisation>)]
    pub relay_normalisation: RelayNormalisation,
    /// RelaySGD: update the reference model x0 every step (the unreliable-network runs).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub relay_update_ref_state: bool,
    /// Probability that a directed message is dropped (RelaySGD family, SGP, gossip).
    #[arg(long, default_value_t = 0.0)]
    pub drop_prob: f64,
    /// Hop schedule on the one-peer exponential graph: code or cyclic (default: code for sgp,
    /// as the original; cyclic for dsgd, so that log₂ n steps average exactly).
    #[arg(long, value_parser = flag_value::<HopSchedule>)]
    pub hop_schedule: Option<HopSchedule>,
    /// SlowMo outer period τ in steps.
    #[arg(long, default_value_t = 48)]
    pub slowmo_period: u64,
    /// SlowMo outer momentum β_s.
    #[arg(long, default_value_t = 0.5)]
    pub slowmo_beta: f64,
    /// SlowMo outer learning rate α_s.
    #[arg(long, default_value_t = 1.0)]
    pub slowmo_lr: f64,
    /// D-PSGD order: atc (adapt-then-combine) or cta (combine-then-adapt).
    #[arg(long, default_value = "atc", value_parser = flag_value::<DsgdOrder>)]
    pub dsgd_order: DsgdOrder,
    /// NGM α in [0, 1]: 0 is NGM_mv (one round, the agent's gradients at its neighbours'
    /// models), 1 is NGM_dv (two rounds, the neighbours' gradients at its model); between: blend.
    #[arg(long, default_value_t = 1.0)]
    pub ngm_alpha: f64,
    /// NGM gossip damping γ in (0, 1]: x ← x + γ(Wx − x) before the forward pass.
    #[arg(long, default_value_t = 0.1)]
    pub ngm_gamma: f64,
    /// NGM weights π: uniform (1/(deg + 1)) or weights (π_ij = W_ij).
    #[arg(long, default_value = "uniform", value_parser = flag_value::<NgmPi>)]
    pub ngm_pi: NgmPi,
    /// CompNGM round-2 bytes: compressed (⌈ℓ/8⌉ + 4 per tensor) or f32 (4ℓ, as the original
    /// counts).
    #[arg(long, default_value = "compressed", value_parser = flag_value::<CompCharge>)]
    pub comp_charge: CompCharge,
    /// CGA / CompCGA pipeline: ngm (damped gossip first, the NGM paper's baseline) or original
    /// (all gradients at x^t, then gossip with the π weights and the step).
    #[arg(long, default_value = "ngm", value_parser = flag_value::<CgaPipeline>)]
    pub cga_pipeline: CgaPipeline,
    /// MATCHA communication budget C_b in (0, 1]: the expected fraction of matchings active.
    #[arg(long, default_value_t = 0.5)]
    pub matcha_budget: f64,
    /// MATCHA flags: random (Bernoulli under the budget) or fixed-processor (the original
    /// code's alternating matchings 1 and 0).
    #[arg(long, default_value = "random", value_parser = flag_value::<MatchaMode>)]
    pub matcha_mode: MatchaMode,
    /// MATCHA base graph with its published matchings (0, 1, er16, ring8) instead of the
    /// configured topology decomposed greedily; the agent count must match.
    #[arg(long, value_parser = flag_value::<MatchaGraph>)]
    pub matcha_graph: Option<MatchaGraph>,
    /// AL-DSGD weight c1 of the lowest-loss neighbour's model.
    #[arg(long, default_value_t = 0.3)]
    pub aldsgd_c1: f64,
    /// AL-DSGD weight c2 of the highest-degree neighbour's model.
    #[arg(long, default_value_t = 0.1)]
    pub aldsgd_c2: f64,
    /// AL-DSGD pull strength p1 towards the lowest-loss neighbour.
    #[arg(long, default_value_t = 0.2)]
    pub aldsgd_p1: f64,
    /// AL-DSGD pull strength p2 towards the highest-degree neighbour.
    #[arg(long, default_value_t = 0.2)]
    pub aldsgd_p2: f64,
    /// AL-DSGD pulls towards the leaders every K iterations (batch index mod K = 0).
    #[arg(long, default_value_t = 1)]
    pub aldsgd_pull_every: u64,
    /// AL-DSGD communication core: fixed-processor (the recipe's D-PSGD) or random (MATCHA
    /// under --matcha-budget).
    #[arg(long, default_value = "fixed-processor", value_parser = flag_value::<MatchaMode>)]
    pub aldsgd_core: MatchaMode,
}

impl Default for AlgoOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

impl AlgoOptions {
    /// Checks every value; the first bad one is an [`Error::BadParameter`] naming its flag.
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f64, hi_open: bool| -> Result<()> {
            let ok = v.is_finite() && v >= 0.0 && if hi_open { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("{v} is outside [0, 1{}", if hi_open { ")" } else { "]" }),
                ))
            }
        };
        if let Some(mu) = self.qgm_mu {
            unit("qgm-mu", mu, true)?;
        }
        if self.qgm_period == 0 {
            return Err(Error::param("qgm-period", "must be at least 1"));
        }
        unit("adam-beta1", self.adam_beta1, true)?;
        unit("adam-beta2", self.adam_beta2, true)?;
        if !(self.adam_eps > 0.0 && self.adam_eps.is_finite()) {
            return Err(Error::param(
                "adam-eps",
                format!("{} must be finite and > 0", self.adam_eps),
            ));
        }
        unit("drop-prob", self.drop_prob, true)?;
        if self.slowmo_period == 0 {
            return Err(Error::param("slowmo-period", "must be at least 1"));
        }
        unit("slowmo-beta", self.slowmo_beta, true)?;
        if !(self.slowmo_lr > 0.0 && self.slowmo_lr.is_finite()) {
            return Err(Error::param(
                "slowmo-lr",
                format!("{} must be finite and > 0", self.slowmo_lr),
            ));
        }
        unit("ngm-alpha", self.ngm_alpha, false)?;
        for (name, v) in [
            ("aldsgd-c1", self.aldsgd_c1),
            ("aldsgd-c2", self.aldsgd_c2),
            ("aldsgd-p1", self.aldsgd_p1),
            ("aldsgd-p2", self.aldsgd_p2),
        ] {
            unit(name, v, false)?;
        }
        if self.aldsgd_c1 + self.aldsgd_c2 > 1.0 {
            return Err(Error::param(
                "aldsgd-c2",
                format!("c1 + c2 = {} exceeds 1", self.aldsgd_c1 + self.aldsgd_c2),
            ));
        }
        if self.aldsgd_p1 + self.aldsgd_p2 > 1.0 {
            return Err(Error::param(
                "aldsgd-p2",
                format!("p1 + p2 = {} exceeds 1", self.aldsgd_p1 + self.aldsgd_p2),
            ));
        }
        if self.aldsgd_pull_every == 0 {
            return Err(Error::param("aldsgd-pull-every", "must be at least 1"));
        }
        if !(self.matcha_budget > 0.0 && self.matcha_budget <= 1.0) {
            return Err(Error::param(
                "matcha-budget",
                format!("{} is outside (0, 1]", self.matcha_budget),
            ));
        }
        if !(self.ngm_gamma > 0.0 && self.ngm_gamma <= 1.0) {
            return Err(Error::param(
                "ngm-gamma",
                format!("{} is outside (0, 1]", self.ngm_gamma),
            ));
        }
        if let LrCorrection::Value(c) = self.relay_lr_correction {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::param(
                    "relay-lr-correction",
                    format!("{c} must be finite and > 0"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_flag() {
        AlgoOptions::default().validate().unwrap();
        let cases: Vec<(&str, AlgoOptions)> = vec![
            (
                "qgm-mu",
                AlgoOptions {
                    qgm_mu: Some(1.0),
                    ..Default::default()
                },
            ),
            (
                "qgm-period",
                AlgoOptions {
                    qgm_period: 0,
                    ..Default::default()
                },
            ),
            (
                "adam-eps",
                AlgoOptions {
                    adam_eps: 0.0,
                    ..Default::default()
                },
            ),
            (
                "drop-prob",
                AlgoOptions {
                    drop_prob: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "slowmo-period",
                AlgoOptions {
                    slowmo_period: 0,
                    ..Default::default()
                },
            ),
            (
                "ngm-alpha",
                AlgoOptions {
                    ngm_alpha: 1.5,
                    ..Default::default()
                },
            ),
            (
                "ngm-alpha",
                AlgoOptions {
                    ngm_alpha: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "ngm-gamma",
                AlgoOptions {
                    ngm_gamma: 0.0,
                    ..Default::default()
                },
            ),
            (
                "ngm-gamma",
                AlgoOptions {
                    ngm_gamma: 1.25,
                    ..Default::default()
                },
            ),
            (
                "matcha-budget",
                AlgoOptions {
                    matcha_budget: 0.0,
                    ..Default::default()
                },
            ),
            (
                "aldsgd-c1",
                AlgoOptions {
                    aldsgd_c1: -0.1,
                    ..Default::default()
                },
            ),
            (
                "aldsgd-p2",
                AlgoOptions {
                    aldsgd_p1: 0.6,
                    aldsgd_p2: 0.6,
                    ..Default::default()
                },
            ),
            (
                "aldsgd-pull-every",
                AlgoOptions {
                    aldsgd_pull_every: 0,
                    ..Default::default()
                },
            ),
        ];
        for (flag, o) in cases {
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        }
        let toml_text = "qgm_period = 4\nrelay_normalisation = \"counts\"\n\
                         relay_lr_correction = \"exact\"\ndsgd_order = \"cta\"\n\
                         ngm_alpha = 0.25\nngm_pi = \"weights\"\n\
                         matcha_mode = \"fixed-processor\"\nmatcha_graph = \"ring8\"";
        let o: AlgoOptions = toml::from_str(toml_text).unwrap();
        assert_eq!(o.dsgd_order, DsgdOrder::Cta);
        assert_eq!((o.ngm_alpha, o.ngm_pi), (0.25, NgmPi::Weights));
        assert_eq!(o.ngm_gamma, 0.1);
        assert_eq!(o.matcha_mode, MatchaMode::FixedProcessor);
        assert_eq!(o.matcha_graph, Some(MatchaGraph::Ring8));
        assert_eq!(o.matcha_budget, 0.5);
        assert!("x"
            .parse::<NgmPi>()
            .unwrap_err()
            .to_string()
            .contains("ngm-pi"));
        assert_eq!("ATC".parse::<DsgdOrder>().unwrap(), DsgdOrder::Atc);
        assert!("ctA2"
            .parse::<DsgdOrder>()
            .unwrap_err()
            .to_string()
            .contains("dsgd-order"));
        assert_eq!(
            (o.qgm_period, o.relay_normalisation),
            (4, RelayNormalisation::Counts)
        );
        assert_eq!(o.relay_lr_correction, LrCorrection::Exact);
    }
}
