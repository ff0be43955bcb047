//! The main job's command line (`examples/train.rs`), as a library function so tests can call
//! it: flags (optionally over a TOML config), the backend choice ([`BackendArgs`]), a progress
//! bar, a final table, metrics.csv and plot.svg, and an optional one-line JSON summary.

pub use super::BackendArgs;
use crate::error::{Error, Result};
use crate::train::config::TrainConfig;
use crate::train::metrics;
use crate::train::trainer::Trainer;
use crate::train::Algorithm;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Exit code for bad flag values.
pub const EXIT_USAGE: i32 = 2;

/// Flags of the main job: the run's settings ([`TrainConfig`], flattened: one flag per setting,
/// defined there) plus where it runs and what it writes.
#[derive(Parser, Clone, Debug, Default)]
#[command(
    name = "train",
    allow_negative_numbers = true,
    about = "Decentralized training of n agents on one GPU or the native CPU backend"
)]
pub struct Args {
    /// TOML config file (keys as in TrainConfig, algorithm options in an `[options]` table); the
    /// flags given override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The run's settings: the defaults with the flags given applied (with `--config`, the
    /// flags in [`Args::given`] are applied over the file instead).
    #[command(flatten)]
    pub run: TrainConfig,
    /// Where it runs.
    #[command(flatten)]
    pub device: BackendArgs,
    /// Output directory (default `runs/<algo>-<topology>-n<agents>`).
    #[arg(long, help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Print a one-line JSON summary as the last stdout line (no progress bar).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write `<out>/checkpoint.bin` every N steps (atomically; not after the last step).
    #[arg(long, help_heading = "Output")]
    pub checkpoint_every: Option<u64>,
    /// Resume from a checkpoint written by a run with the same configuration.
    #[arg(long, help_heading = "Output")]
    pub resume: Option<PathBuf>,
    /// Also write every agent's final parameters to `<out>/params.f64` (agent-major slabs of
    /// the model's stride, little-endian f64): runs compare bit for bit.
    #[arg(long, help_heading = "Output")]
    pub save_params: bool,
    /// Which flags the command line gave (filled by [`run_cli`]; empty for `Args` built in code).
    #[arg(skip)]
    pub given: Given,
}

impl Args {
    /// Parses a command line (the first item is the program name) and records which flags it
    /// gave, as [`run_cli`] does.
    pub fn from_argv<I, T>(argv: I) -> std::result::Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let m = Self::command().try_get_matches_from(argv)?;
        let mut a = Self::from_arg_matches(&m)?;
        a.given = Given::from_matches(&m);
        Ok(a)
    }
}

/// The flags a command line gave explicitly (their defaults left out), so they can be laid
/// over a TOML file: a flag given overrides the file, a flag not given leaves it alone.
#[derive(Clone, Debug, Default)]
pub struct Given(Option<ArgMatches>);

impl Given {
    /// Keeps the explicitly given flags of parsed matches.
    pub fn from_matches(m: &ArgMatches) -> Self {
        let mut m = m.clone();
        let ids: Vec<String> = m.ids().map(|id| id.as_str().to_string()).collect();
        for id in ids {
            if m.value_source(&id) != Some(ValueSource::CommandLine) {
                let _ = m.try_clear_id(&id);
            }
        }
        Given(Some(m))
    }

    /// Whether the flag with this id (the field name) was given.
    pub fn contains(&self, id: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|m| m.try_contains_id(id).unwrap_or(false))
    }

    /// Sets the given flags' values on a configuration (clap's derived updater touches only the
    /// fields whose flags are present, and only given flags are).
    pub fn apply(&self, c: &mut TrainConfig) -> Result<()> {
        match &self.0 {
            Some(m) => c
                .update_from_arg_matches(m)
                .map_err(|e| Error::param("config", e.to_string())),
            None => Ok(()),
        }
    }
}

/// What the user wrote to set parameter `name` (an error's [`Error::BadParameter`] name: a
/// config key or a flag's id), for command line `C`: the flag where `C` has one for it and
/// it was given (or there is no config file), else the key in the config file, else the
/// setting's key for settings without a flag. Errors never name a flag that does not exist.
pub(crate) fn param_source<C: CommandFactory>(
    name: &str,
    config: Option<&std::path::Path>,
    given: &Given,
) -> String {
    // Settings whose key differs from their flag's id.
    let id = match name {
        "mixing" => "gossip_weight",
        other => other,
    };
    let key = if id == "gossip_weight" {
        "mixing"
    } else {
        name
    };
    let cmd = C::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id().as_str() == id || a.get_long() == Some(id.replace('_', "-").as_str()));
    match (arg.and_then(|a| a.get_long()), config) {
        (Some(long), None) => format!("--{long}"),
        (Some(long), Some(_)) if given.contains(arg.map_or(id, |a| a.get_id().as_str())) => {
            format!("--{long}")
        }
        (_, Some(file)) => format!("`{key}` in {}", file.display()),
        (None, None) => format!("the setting `{key}`"),
    }
}

/// The flags given that none of `algos` reads, one warning each (the same rule for every
/// setting: an algorithm option it does not list, a gossip weight or topology without gossip
/// over it, a data directory for the synthetic task). The run goes on; the setting is unused.
pub(crate) fn unread_settings(given: &Given, c: &TrainConfig, algos: &[Algorithm]) -> Vec<String> {
    let names = algos
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    let opts = <crate::algo::AlgoOptions as clap::Args>::augment_args(clap::Command::new("o"));
    for arg in opts.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if given.contains(arg.get_id().as_str())
            && !algos.iter().any(|a| a.options().contains(&long))
        {
            out.push(format!("--{long} is not read by {names}; it is ignored"));
        }
    }
    if given.contains("gossip_weight") && !algos.iter().any(|a| a.runs_on(&c.topology).is_some()) {
        out.push(format!(
            "--gossip-weight is not read by {names} (exact averaging); it is ignored"
        ));
    }
    if given.contains("topology") {
        for a in algos {
            match a.runs_on(&c.topology) {
                Some(t) if t != c.topology => out.push(format!(
                    "{a} runs on the {t} graph whatever --topology says; --topology {} is ignored",
                    c.topology
                )),
                _ => {}
            }
        }
    }
    if given.contains("data_dir") && c.dataset == crate::train::config::DatasetKind::Synthetic {
        out.push("--data-dir is not read by the synthetic task; it is ignored".into());
    }
    out
}

/// Lays the settings out: defaults, then the TOML file, then the flags given. The algorithm's
/// default topology and validation are left to [`finish_config`] (compare sets the algorithm
/// and topology per run in between).
pub fn overlay_config(args: &Args) -> Result<TrainConfig> {
    let mut c = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            let mut c = TrainConfig::from_toml(&text)?;
            args.given.apply(&mut c)?;
            c
        }
        None => args.run.clone(),
    };
    let given = |id: &str| args.given.contains(id);
    // A partition with its own parameter (`dirichlet:0.1`, `classes:3`) keeps it unless --alpha
    // is given too.
    if given("partition") && c.partition.contains([':', '=']) {
        if given("alpha") {
            // Two values for one parameter: refuse rather than pick one silently.
            return Err(Error::param(
                "alpha",
                format!(
                    "--partition '{}' already sets its parameter; give it there or with \
                     --alpha, not both",
                    c.partition
                ),
            ));
        }
        c.alpha = None;
    }
    if given("alpha")
        && !c
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
    // The last of --steps / --epochs decides the run length (they conflict on the command line).
    if given("steps") {
        c.epochs = None;
    }
    if given("epochs") {
        c.steps = None;
    }
    Ok(c)
}

/// Completes a laid-out config: all-reduce runs on the complete graph unless a topology was
/// chosen (by flag or file); then validates every value.
pub fn finish_config(mut c: TrainConfig, args: &Args) -> Result<TrainConfig> {
    if c.algo.topology_need() == crate::algo::TopologyNeed::None
        && !args.given.contains("topology")
        && args.config.is_none()
    {
        c.topology = crate::graph::Topology::Complete;
    }
    c.validate()?;
    Ok(c)
}

/// Builds the config: defaults, then the TOML file, then the flags given; validated.
pub fn build_config(args: &Args) -> Result<TrainConfig> {
    finish_config(overlay_config(args)?, args)
}

/// The line naming the backend a run uses and why it was chosen.
pub(crate) fn backend_line(c: &crate::backend::choice::Chosen) -> String {
    format!("backend: {} ({})", c.backend.describe(), c.reason)
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
    let (mut args, matches) = match parse_args::<Args, _, _>(args, out, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    args.given = Given::from_matches(&matches);
    let flag_of = |name: &str| param_source::<Args>(name, args.config.as_deref(), &args.given);
    // Under an MPI launcher (with the `mpi` feature): one run over every rank, rank 0 reports.
    #[cfg(feature = "mpi")]
    {
        match crate::dist::mpi::world_from_env() {
            Ok(Some(world)) if !world.is_root() => {
                let (mut o, mut e) = (std::io::sink(), std::io::sink());
                let r = run_args_on(&args, &mut o, &mut e, Some(&world));
                return exit_code(r, &mut e, flag_of);
            }
            Ok(Some(world)) => {
                return exit_code(run_args_on(&args, out, err, Some(&world)), err, flag_of)
            }
            Ok(None) => {}
            Err(e) => return exit_code(Err(e), err, flag_of),
        }
    }
    exit_code(run_args(&args, out, err), err, flag_of)
}

/// Parses flags with clap: help/version go to `out` (code 0), a bad flag is one line on
/// `err` (code 2); `Err` holds the exit code. Also returns the matches (for value sources).
pub(crate) fn parse_args<P, I, T>(
    args: I,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::result::Result<(P, ArgMatches), i32>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = P::command().try_get_matches_from(args).and_then(|m| {
        let p = P::from_arg_matches(&m).map_err(|e| e.format(&mut P::command()))?;
        Ok((p, m))
    });
    parsed.map_err(|e| {
        let code = e.exit_code();
        let text = e.render().to_string();
        if code == 0 {
            let _ = write!(out, "{text}");
        } else {
            // One line: clap's first line names the flag and the problem.
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let mut first = lines.next().unwrap_or("error: bad arguments").to_string();
            // "…were not provided:" lists the missing flags on the lines below: name them.
            if first.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                first = format!("{first} {}", listed.join(", "));
            }
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
    run_args_on(args, out, err, None)
}

/// Runs the main job, in one process (`world` None) or as this rank's part of one run sharded
/// over the ranks of `world`: every rank checks that the others read the same configuration
/// and started their backends before any step; rank 0 holds the output directory, prints and
/// writes the outputs (the other ranks get sinks for `out` and `err`). An error once the steps
/// run ends every rank ([`crate::dist::World::abort`]), so none waits for another forever.
pub fn run_args_on(
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    world: Option<&crate::dist::World>,
) -> Result<()> {
    let root = world.is_none_or(crate::dist::World::is_root);
    let config = match world {
        None => build_config(args)?,
        Some(w) => {
            let c = w.agree("reading the configuration", build_config(args))?;
            let text = serde_json::to_string(&c)
                .map_err(|e| Error::param("config", format!("cannot encode: {e}")))?;
            w.check_same("configuration", &format!("{text} {:?}", args.device))?;
            crate::dist::Placement::blocks(c.agents, w.ranks())?;
            c
        }
    };
    let dir = args.out.clone().unwrap_or_else(|| {
        let topo = config
            .algo
            .runs_on(&config.topology)
            .map_or("complete", |t| t.name());
        PathBuf::from(format!("runs/{}-{}-n{}", config.algo, topo, config.agents))
    });
    // Before any data is loaded or any step runs: a directory we can write, held by this run
    // (by rank 0 of a sharded run; every rank learns whether that worked).
    let lock = match world {
        None => crate::train::run_dir::RunDir::prepare(&dir).map(Some),
        Some(w) => {
            let held = if root {
                crate::train::run_dir::RunDir::prepare(&dir).map(Some)
            } else {
                Ok(None)
            };
            w.agree("preparing the output directory", held)
        }
    };
    let _lock = lock?;
    for w in unread_settings(&args.given, &config, &[config.algo]) {
        let _ = writeln!(err, "warning: {w}");
    }
    let mut notices = Vec::new();
    let chosen = match world {
        None => args.device.open(&mut notices)?,
        Some(w) => {
            // Ranks sharing a node spread over its equally good GPUs by local rank.
            #[cfg(feature = "mpi")]
            let spread = crate::dist::mpi::local_rank();
            #[cfg(not(feature = "mpi"))]
            let spread = 0;
            let opened = args.device.open_spread(&mut notices, spread);
            w.agree("starting the backend", opened)?
        }
    };
    let info: &mut dyn Write = if args.json { err } else { out };
    for n in &notices {
        let _ = writeln!(info, "notice: {n}");
    }
    let adapter = chosen.backend.describe();
    let _ = writeln!(info, "{}", backend_line(&chosen));
    let mut trainer = match world {
        None => Trainer::new(config.clone(), chosen.backend)?,
        Some(w) => {
            let wire = crate::dist::Wire::for_backend(chosen.backend.as_ref());
            let t = w
                .shard(config.agents, wire)
                .and_then(|shard| Trainer::new_sharded(config.clone(), chosen.backend, &shard));
            w.agree("preparing the run", t)?
        }
    };
    if root {
        trainer.set_metrics_file(dir.join("metrics.csv"));
    }
    if let Some(every) = args.checkpoint_every {
        trainer.set_checkpoint_every(every, dir.join(crate::train::checkpoint::FILE_NAME))?;
    }
    if let Some(p) = &args.resume {
        let loaded = trainer.load_checkpoint(p);
        match world {
            None => loaded?,
            Some(w) => w.agree("resuming", loaded)?,
        }
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
    let _ = writeln!(
        info,
        "{}",
        crate::model::cost_line(trainer.model(), config.agents, config.batch)
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
    let summary = match (summary, world) {
        (Err(e), Some(w)) if w.ranks() > 1 => {
            // The other ranks may wait in a collective: end them all.
            eprintln!("error: rank {} of {}: {e}", w.rank(), w.ranks());
            w.abort(1)
        }
        (s, _) => s?,
    };
    if let Some(w) = world {
        let _ = writeln!(info, "{}", w.traffic_line());
    }
    // Every rank takes part in gathering the parameters; rank 0 writes them.
    let params = if args.save_params {
        Some(trainer.gather_params()?)
    } else {
        None
    };
    if !root {
        return Ok(());
    }
    if let Some(p) = params {
        let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
        metrics::write_file(&dir.join("params.f64"), bytes)?;
    }
    // metrics.csv was written row by row during the run.
    metrics::write_csv(
        &dir.join("partition.csv"),
        &trainer.partition_summary().rows(),
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
        metrics::plot_svg(&summary.rows, &title)?,
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
            "training speed",
            format!(
                "{:.0} agent-steps/s, {:.3} ms/step (steps only)",
                summary.agent_steps_per_s, summary.ms_per_step
            ),
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
            m.insert("backend".into(), chosen.kind.name().into());
            m.insert("backend_reason".into(), chosen.reason.as_str().into());
            m.insert("out".into(), dir.display().to_string().into());
        }
        let _ = writeln!(out, "{obj}");
    }
    Ok(())
}
