//! The main job's command line (`examples/train.rs`), as a library function so tests can call
//! it: flags (optionally over a TOML config), backend choice with CPU fallback, a progress bar,
//! a final table, metrics.csv and plot.svg, and an optional one-line JSON summary.

use crate::backend::gpu::{AdapterChoice, GpuBackend};
use crate::backend::reference::ReferenceBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::train::config::TrainConfig;
use crate::train::metrics;
use crate::train::trainer::Trainer;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Exit code for bad flag values.
pub const EXIT_USAGE: i32 = 2;

/// Flags of the main job; each overrides the TOML config given with `--config`.
#[derive(Parser, Clone, Debug, Default)]
#[command(
    name = "train",
    allow_negative_numbers = true,
    about = "Decentralized training of n agents on one GPU (or the CPU reference)"
)]
pub struct Args {
    /// TOML config file (keys as in TrainConfig); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Algorithm name (the list, from the registry, is in `--help`).
    #[arg(long, help = algo_help())]
    pub algo: Option<String>,
    /// Topology (ring, torus, complete, star, chain, hypercube, ...).
    #[arg(long)]
    pub topology: Option<String>,
    /// Number of agents.
    #[arg(long)]
    pub agents: Option<usize>,
    /// Partition: iid, dirichlet, dirichlet-qgm, shards, classes:K.
    #[arg(long)]
    pub partition: Option<String>,
    /// Dirichlet concentration α (small = more skewed).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Dataset: synthetic (default, no files), mnist, fashion, cifar10.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory of the dataset files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Model spec, e.g. mlp:64-64-10.
    #[arg(long)]
    pub model: Option<String>,
    /// Minibatch rows per agent.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local momentum β in [0, 1).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Nesterov momentum (default true; --nesterov false for heavy ball).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub nesterov: Option<bool>,
    /// Weight decay λ.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Number of steps.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Number of epochs.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Evaluate every this many steps.
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Backend: gpu (falls back to cpu when no adapter exists) or cpu.
    #[arg(long, default_value = "gpu")]
    pub backend: String,
    /// GPU adapter name substring (overrides WGPU_ADAPTER_NAME).
    #[arg(long)]
    pub adapter: Option<String>,
    /// wgpu backend(s): vulkan, gl, metal, dx12, comma-separated (overrides WGPU_BACKEND).
    #[arg(long)]
    pub gpu_backend: Option<String>,
    /// Output directory (default `runs/<algo>-<topology>-n<agents>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Algorithm-specific options.
    #[command(flatten)]
    pub options: OptionArgs,
    /// Print a one-line JSON summary as the last stdout line (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Write `<out>/checkpoint.bin` every N steps (atomically; not after the last step).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Resume from a checkpoint written by a run with the same configuration.
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

/// Flags of the algorithm-specific options ([`crate::algo::AlgoOptions`]).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OptionArgs {
    /// Constant gossip neighbour weight w (self weight 1 − deg·w), overriding the mixing rule.
    #[arg(long)]
    pub gossip_weight: Option<f64>,
    /// QGM μ (default: β).
    #[arg(long)]
    pub qgm_mu: Option<f64>,
    /// QGM buffer period K.
    #[arg(long)]
    pub qgm_period: Option<u64>,
    /// QG-Adam β1.
    #[arg(long)]
    pub adam_beta1: Option<f64>,
    /// QG-Adam β2.
    #[arg(long)]
    pub adam_beta2: Option<f64>,
    /// QG-Adam ε.
    #[arg(long)]
    pub adam_eps: Option<f64>,
    /// RelaySGD learning-rate correction: none (default), exact, half-diameter or a number.
    #[arg(long)]
    pub relay_lr_correction: Option<String>,
    /// RelaySGD normalisation: world (default) or counts.
    #[arg(long)]
    pub relay_normalisation: Option<String>,
    /// RelaySGD: update the reference model x0 every step.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub relay_update_ref_state: Option<bool>,
    /// Probability that a directed message is dropped.
    #[arg(long)]
    pub drop_prob: Option<f64>,
    /// SGP hop schedule on the exponential graph: code (default) or cyclic.
    #[arg(long)]
    pub hop_schedule: Option<String>,
    /// SlowMo outer period τ in steps.
    #[arg(long)]
    pub slowmo_period: Option<u64>,
    /// SlowMo outer momentum β_s.
    #[arg(long)]
    pub slowmo_beta: Option<f64>,
    /// SlowMo outer learning rate α_s.
    #[arg(long)]
    pub slowmo_lr: Option<f64>,
    /// D-PSGD order: atc (adapt-then-combine, default) or cta (combine-then-adapt).
    #[arg(long)]
    pub dsgd_order: Option<String>,
}

impl OptionArgs {
    /// Applies the given flags onto a configuration.
    pub fn apply(&self, c: &mut TrainConfig) -> Result<()> {
        let o = &mut c.options;
        if let Some(w) = self.gossip_weight {
            c.mixing = crate::graph::MixingRule::Constant(w);
        }
        if let Some(v) = self.qgm_mu {
            o.qgm_mu = Some(v);
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { o.$f = v; } )* };
        }
        set!(
            qgm_period,
            adam_beta1,
            adam_beta2,
            adam_eps,
            relay_update_ref_state,
            drop_prob,
            slowmo_period,
            slowmo_beta,
            slowmo_lr
        );
        fn parse_err(flag: &'static str) -> impl Fn(crate::graph::GraphError) -> Error {
            move |e| Error::param(flag, e.to_string())
        }
        if let Some(v) = &self.relay_lr_correction {
            o.relay_lr_correction = v.parse().map_err(parse_err("relay-lr-correction"))?;
        }
        if let Some(v) = &self.relay_normalisation {
            o.relay_normalisation = v.parse()?;
        }
        if let Some(v) = &self.hop_schedule {
            o.hop_schedule = v.parse().map_err(parse_err("hop-schedule"))?;
        }
        if let Some(v) = &self.dsgd_order {
            o.dsgd_order = v.parse()?;
        }
        Ok(())
    }
}

pub(crate) fn flag(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// Builds the config: defaults, then the TOML file, then the flags.
pub fn build_config(args: &Args) -> Result<TrainConfig> {
    let mut c = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            TrainConfig::from_toml(&text)?
        }
        None => TrainConfig::default(),
    };
    if let Some(a) = &args.algo {
        c.algo = a.parse()?;
    }
    if let Some(t) = &args.topology {
        c.topology = t
            .parse()
            .map_err(|e: crate::graph::GraphError| Error::param("topology", e.to_string()))?;
    }
    if let Some(n) = args.agents {
        c.agents = n;
    }
    if let Some(p) = &args.partition {
        c.partition = p.clone();
        if args.alpha.is_none() && p.contains([':', '=']) {
            c.alpha = None;
        }
    }
    if let Some(a) = args.alpha {
        c.alpha = Some(a);
        if !c
            .partition
            .trim()
            .to_ascii_lowercase()
            .starts_with("dirichlet")
        {
            return Err(Error::param(
                "alpha",
                format!(
                    "only applies to --partition dirichlet (partition is '{}')",
                    c.partition
                ),
            ));
        }
    }
    if let Some(d) = &args.dataset {
        c.dataset = d.parse()?;
    }
    if let Some(d) = &args.data_dir {
        c.data_dir = Some(d.clone());
    }
    if let Some(m) = &args.model {
        c.model = Some(m.clone());
    }
    args.options.apply(&mut c)?;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { c.$f = v; } )* };
    }
    set!(
        batch,
        lr,
        momentum,
        nesterov,
        weight_decay,
        eval_every,
        seed
    );
    if let Some(s) = args.steps {
        c.steps = Some(s);
        c.epochs = None;
    }
    if let Some(e) = args.epochs {
        c.epochs = Some(e);
        c.steps = None;
    }
    if c.algo.topology_need() == crate::algo::TopologyNeed::None
        && args.topology.is_none()
        && args.config.is_none()
    {
        c.topology = crate::graph::Topology::Complete;
    }
    c.validate()?;
    Ok(c)
}

/// Opens the requested backend; `gpu` falls back to the CPU reference with a notice.
/// Also returns which kind was opened (`gpu` or `cpu`).
pub fn open_backend(
    kind: &str,
    gpu_backend: Option<&str>,
    adapter: Option<&str>,
    notices: &mut Vec<String>,
) -> Result<(Box<dyn Backend>, &'static str)> {
    match kind.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok((Box::new(ReferenceBackend::new()), "cpu")),
        "gpu" => {
            let choice = AdapterChoice::from_env().with_overrides(gpu_backend, adapter)?;
            match GpuBackend::new(&choice) {
                Ok(g) => Ok((Box::new(g), "gpu")),
                Err(e @ (Error::NoAdapter(_) | Error::DeviceRequest { .. })) => {
                    notices.push(format!("{e}; falling back to the CPU reference backend"));
                    Ok((Box::new(ReferenceBackend::new()), "cpu"))
                }
                Err(e) => Err(e),
            }
        }
        other => Err(Error::param(
            "backend",
            format!("unknown backend '{other}'; accepted: gpu, cpu"),
        )),
    }
}

pub(crate) fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut k = 0;
    while v >= 1024.0 && k + 1 < units.len() {
        v /= 1024.0;
        k += 1;
    }
    format!("{v:.1} {}", units[k])
}

/// Runs the main job with `args` (the first item is the program name); human output goes to
/// `out` (or `err` with --json, whose JSON line goes to `out`). Returns the process exit code.
pub fn run_cli<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match parse_args::<Args, _, _>(args, out, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    exit_code(run_args(&args, out, err), err, flag)
}

/// Parses flags with clap: help/version go to `out` (code 0), a bad flag is one line on
/// `err` (code 2); `Err` holds the exit code.
pub(crate) fn parse_args<P, I, T>(
    args: I,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::result::Result<P, i32>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    P::try_parse_from(args).map_err(|e| {
        let code = e.exit_code();
        let text = e.render().to_string();
        if code == 0 {
            let _ = write!(out, "{text}");
        } else {
            // One line: clap's first line names the flag and the problem.
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad arguments");
            let _ = writeln!(err, "{first} (see --help)");
        }
        code
    })
}

/// Reports a job's outcome on `err` as one line and returns the exit code: 0, 2 for a bad
/// parameter (named by `flag_of(parameter)`), 1 otherwise.
pub(crate) fn exit_code(
    result: Result<()>,
    err: &mut dyn Write,
    flag_of: impl Fn(&str) -> String,
) -> i32 {
    match result {
        Ok(()) => 0,
        Err(Error::BadParameter { name, reason }) => {
            let _ = writeln!(err, "error: bad value for {}: {reason}", flag_of(&name));
            EXIT_USAGE
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            1
        }
    }
}

/// The progress bar's message for an evaluation row.
pub(crate) fn progress_message(r: &metrics::MetricsRow) -> String {
    format!(
        "acc x̄ {:.3}  local {:.3}  Ξ² {:.2e}",
        r.consensus_acc, r.mean_local_acc, r.consensus_distance
    )
}

/// A progress bar over `total` steps, hidden with `--json` or when stdout is not a terminal.
pub(crate) fn progress_bar(total: u64, hidden: bool) -> indicatif::ProgressBar {
    if hidden || !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40.cyan/blue} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
    ) {
        b.set_style(style);
    }
    b
}

/// Runs the main job with parsed arguments.
pub fn run_args(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let config = build_config(args)?;
    let mut notices = Vec::new();
    let (be, backend_kind) = open_backend(
        &args.backend,
        args.gpu_backend.as_deref(),
        args.adapter.as_deref(),
        &mut notices,
    )?;
    let info: &mut dyn Write = if args.json { err } else { out };
    for n in &notices {
        let _ = writeln!(info, "notice: {n}");
    }
    let adapter = be.describe();
    let _ = writeln!(info, "backend: {adapter}");
    let mut trainer = Trainer::new(config.clone(), be)?;
    let dir = args.out.clone().unwrap_or_else(|| {
        let topo = config
            .algo
            .runs_on(&config.topology)
            .map_or("complete", |t| t.name());
        PathBuf::from(format!("runs/{}-{}-n{}", config.algo, topo, config.agents))
    });
    if let Some(every) = args.checkpoint_every {
        trainer.set_checkpoint_every(every, dir.join(crate::train::checkpoint::FILE_NAME))?;
    }
    if let Some(p) = &args.resume {
        trainer.load_checkpoint(p)?;
        let _ = writeln!(
            info,
            "resumed from {} at step {}",
            p.display(),
            trainer.step()
        );
    }
    for n in trainer.notices() {
        let _ = writeln!(info, "notice: {n}");
    }
    let _ = writeln!(
        info,
        "run: {} on {} with {} agents, {}, partition {}, model {}, batch {}, lr {}, momentum {}{}, {} steps ({} per epoch)",
        config.algo,
        crate::train::trainer::topology_label(&config),
        config.agents,
        config.dataset.name(),
        config.partition()?,
        trainer.model(),
        config.batch,
        config.lr,
        config.momentum,
        if config.momentum > 0.0 { if config.nesterov { " (nesterov)" } else { " (heavy ball)" } } else { "" },
        trainer.total_steps(),
        trainer.steps_per_epoch()
    );
    for n in trainer.algorithm_notes() {
        let _ = writeln!(info, "note: {n}");
    }
    let _ = writeln!(info, "{}", trainer.partition_summary());
    let bar = progress_bar(trainer.total_steps(), args.json);
    let summary = trainer.run(|step, _, row| {
        bar.set_position(step);
        if let Some(r) = row {
            bar.set_message(progress_message(r));
        }
    });
    bar.finish_and_clear();
    let summary = summary?;
    metrics::write_file(&dir.join("metrics.csv"), &metrics::to_csv(&summary.rows))?;
    metrics::write_file(
        &dir.join("partition.csv"),
        &trainer.partition_summary().to_csv(),
    )?;
    let title = format!(
        "{} · {} · n={} · {} · {} · {}",
        summary.algo,
        summary.topology,
        summary.agents,
        config.dataset.name(),
        config.partition()?,
        trainer.model()
    );
    metrics::write_file(
        &dir.join("plot.svg"),
        &metrics::plot_svg(&summary.rows, &title),
    )?;
    let table = [
        (
            "consensus accuracy",
            format!("{:.4}", summary.last.consensus_acc),
        ),
        (
            "mean local accuracy",
            format!("{:.4}", summary.last.mean_local_acc),
        ),
        (
            "worst agent accuracy",
            format!(
                "{:.4} (agent {})",
                summary.last.worst_local_acc, summary.last.worst_agent
            ),
        ),
        (
            "consensus distance",
            format!("{:.3e}", summary.last.consensus_distance),
        ),
        (
            "train loss (last step)",
            format!("{:.4}", summary.last.train_loss),
        ),
        (
            "bytes sent per agent",
            format!(
                "{} ({:.0} B)",
                human_bytes(summary.bytes_sent_per_agent),
                summary.bytes_sent_per_agent
            ),
        ),
        (
            "dispatches per step",
            format!("{:.1}", summary.dispatches_per_step),
        ),
        (
            "wall time",
            format!("{:.2} s ({} steps)", summary.wall_s, summary.steps),
        ),
        (
            "GPU time of the steps",
            match summary.gpu_s {
                Some(g) => format!("{g:.2} s (timestamp queries)"),
                None => "not measured on this backend".into(),
            },
        ),
        (
            "outputs",
            format!(
                "{0}/metrics.csv, {0}/partition.csv, {0}/plot.svg",
                dir.display()
            ),
        ),
    ];
    let _ = writeln!(
        info,
        "┌────────────────────────┬──────────────────────────────────────────"
    );
    for (k, v) in table {
        let _ = writeln!(info, "│ {k:<22} │ {v}");
    }
    let _ = writeln!(
        info,
        "└────────────────────────┴──────────────────────────────────────────"
    );
    if args.json {
        let mut obj =
            serde_json::to_value(&summary).map_err(|e| Error::param("json", e.to_string()))?;
        if let Some(m) = obj.as_object_mut() {
            m.insert("adapter".into(), adapter.into());
            m.insert("backend".into(), backend_kind.into());
            m.insert("out".into(), dir.display().to_string().into());
        }
        let _ = writeln!(out, "{obj}");
    }
    Ok(())
}

/// The `--algo` help: one line per registered algorithm.
fn algo_help() -> String {
    format!("Algorithm:\n{}", crate::algo::algorithm_help())
}
