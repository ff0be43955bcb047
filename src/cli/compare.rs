//! Side-by-side runs (`examples/compare.rs`): several algorithms × topologies on one setting,
//! with the same seed, data and backend, reported as one table, compare.csv, one metrics.csv
//! per run and one plot with a line per run.

use crate::cli::train::{self as cli, Args};
use crate::error::{Error, Result};
use crate::graph::Topology;
use crate::train::config::TrainConfig;
use crate::train::metrics::{self, CompareRow, MetricsRow};
use crate::train::trainer::{Summary, Trainer};
use crate::train::Algorithm;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

/// Flags of the comparison: the run lists plus every flag of `train` (the same setting for all).
#[derive(Parser, Clone, Debug, Default)]
#[command(
    name = "compare",
    allow_negative_numbers = true,
    about = "Compare algorithms and topologies on one setting (same seed, data and backend)"
)]
pub struct CompareArgs {
    /// Algorithms, comma-separated (default: --algo, else dsgd,allreduce).
    #[arg(long, value_delimiter = ',', conflicts_with = "algo")]
    pub algos: Vec<String>,
    /// Topologies of the gossip algorithms, comma-separated (default: --topology, else ring);
    /// allreduce ignores them and runs once.
    #[arg(long, value_delimiter = ',', conflicts_with = "topology")]
    pub topologies: Vec<String>,
    /// The shared setting (`--out` defaults to `runs/compare-n<agents>`).
    #[command(flatten)]
    pub train: Args,
}

/// One planned run: its label and config.
struct Planned {
    label: String,
    config: TrainConfig,
}

/// A directory-safe form of a run label.
fn dir_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The runs: algorithms × topologies, with topology-free algorithms once, duplicates dropped.
fn plan(args: &CompareArgs) -> Result<Vec<Planned>> {
    let algos: Vec<Algorithm> = if !args.algos.is_empty() {
        args.algos
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(str::parse)
            .collect::<Result<_>>()?
    } else if args.train.given.contains("algo") {
        vec![args.train.run.algo]
    } else {
        vec![Algorithm::Dsgd, Algorithm::AllReduce]
    };
    let topologies: Vec<Option<Topology>> = if !args.topologies.is_empty() {
        args.topologies
            .iter()
            .map(|t| {
                t.trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: crate::graph::GraphError| Error::param("topology", e.to_string()))
            })
            .collect::<Result<_>>()?
    } else {
        vec![None]
    };
    // The shared setting, laid out once; each run sets its algorithm and topology on it.
    let base = cli::overlay_config(&args.train)?;
    let mut runs: Vec<Planned> = Vec::new();
    for algo in algos {
        let topos: &[Option<Topology>] = if algo.uses_topology() {
            &topologies
        } else {
            &[None]
        };
        for t in topos {
            let mut c = base.clone();
            c.algo = algo;
            if let Some(t) = t {
                c.topology = *t;
            }
            let config = cli::finish_config(c, &args.train)?;
            let label = if algo.uses_topology() {
                format!("{}-{}", config.algo, config.topology)
            } else {
                config.algo.to_string()
            };
            if !runs.iter().any(|r| r.label == label) {
                runs.push(Planned { label, config });
            }
        }
    }
    if runs.is_empty() {
        return Err(Error::param("algos", "give at least one algorithm"));
    }
    Ok(runs)
}

/// Runs the comparison with `args` (the first item is the program name); human output goes to
/// `out` (or `err` with --json, whose JSON array line goes to `out`). Returns the exit code.
pub fn run_compare<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let (mut args, matches) = match cli::parse_args::<CompareArgs, _, _>(args, out, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    args.train.given = cli::Given::from_matches(&matches);
    let flag_of = |name: &str| match name {
        "algo" if !args.algos.is_empty() => "--algos".to_string(),
        "topology" if !args.topologies.is_empty() => "--topologies".to_string(),
        other => {
            cli::param_source::<CompareArgs>(other, args.train.config.as_deref(), &args.train.given)
        }
    };
    cli::exit_code(compare_args(&args, out, err), err, flag_of)
}

/// Runs the comparison with parsed arguments.
pub fn compare_args(args: &CompareArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let runs = plan(args)?;
    let first = &runs[0].config;
    let mut algos: Vec<Algorithm> = Vec::new();
    for r in &runs {
        if !algos.contains(&r.config.algo) {
            algos.push(r.config.algo);
        }
    }
    for w in cli::unread_settings(&args.train.given, first, &algos) {
        let _ = writeln!(err, "warning: {w}");
    }
    let dir = args
        .train
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/compare-n{}", first.agents)));
    // Before the device, the data or any step: a directory we can write, held by this run.
    let _lock = crate::train::run_dir::RunDir::prepare(&dir)?;
    let mut notices = Vec::new();
    let chosen = args.train.device.open(&mut notices)?;
    let (kind, reason) = (chosen.kind, chosen.reason.clone());
    let backend_line = cli::backend_line(&chosen);
    let mut be = chosen.backend;
    let json = args.train.json;
    let info: &mut dyn Write = if json { err } else { out };
    // Every run differs only in algorithm and topology, so one load serves them all.
    let data = first.load_data()?;
    notices.extend(data.notices.iter().cloned());
    for n in &notices {
        let _ = writeln!(info, "notice: {n}");
    }
    let adapter = be.describe();
    let _ = writeln!(info, "{backend_line}");
    let mut done: Vec<(String, Summary)> = Vec::new();
    let mut setting = String::new();
    for (k, run) in runs.iter().enumerate() {
        let mut trainer = Trainer::with_data(run.config.clone(), be, &data.train, &data.test)?;
        trainer.set_metrics_file(dir.join(dir_name(&run.label)).join("metrics.csv"));
        if k == 0 {
            setting = format!(
                "n={} · {} · {} · {} · batch {} · lr {} · momentum {} · {} steps · seed {}",
                first.agents,
                first.dataset.name(),
                first.partition()?,
                trainer.model(),
                first.batch,
                first.lr,
                first.momentum,
                trainer.total_steps(),
                first.seed
            );
            let _ = writeln!(info, "setting: {setting}");
            let _ = writeln!(info, "{}", trainer.partition_summary());
        }
        let _ = writeln!(info, "run {}/{}: {}", k + 1, runs.len(), run.label);
        let bar = cli::progress_bar(trainer.total_steps(), json);
        let summary = trainer.run(|step, _, row| {
            bar.set_position(step);
            if let Some(r) = row {
                bar.set_message(cli::progress_message(r));
            }
        });
        bar.finish_and_clear();
        // Its metrics.csv was written row by row during the run.
        let summary = summary?;
        be = trainer.into_backend();
        done.push((run.label.clone(), summary));
    }
    let rows: Vec<CompareRow> = done.iter().map(|(l, s)| CompareRow::new(l, s)).collect();
    metrics::write_csv(&dir.join("compare.csv"), &rows)?;
    let series: Vec<(&str, &[MetricsRow])> = done
        .iter()
        .map(|(l, s)| (l.as_str(), s.rows.as_slice()))
        .collect();
    metrics::write_file(
        &dir.join("compare.svg"),
        metrics::plot_compare_svg(&series, &setting)?,
    )?;
    let _ = write!(info, "{}", table(&done));
    let _ = writeln!(
        info,
        "outputs: {0}/compare.csv, {0}/compare.svg, {0}/<run>/metrics.csv",
        dir.display()
    );
    if json {
        let mut arr = Vec::new();
        for (label, s) in &done {
            let mut obj =
                serde_json::to_value(s).map_err(|e| Error::param("json", e.to_string()))?;
            if let Some(m) = obj.as_object_mut() {
                m.insert("label".into(), label.as_str().into());
                m.insert("adapter".into(), adapter.as_str().into());
                m.insert("backend".into(), kind.name().into());
                m.insert("backend_reason".into(), reason.as_str().into());
                m.insert(
                    "out".into(),
                    dir.join(dir_name(label)).display().to_string().into(),
                );
            }
            arr.push(obj);
        }
        let _ = writeln!(out, "{}", serde_json::Value::Array(arr));
    }
    Ok(())
}

/// The final table: one row per run.
fn table(done: &[(String, Summary)]) -> String {
    let head = [
        "run",
        "consensus acc",
        "mean local acc",
        "worst agent acc",
        "consensus dist",
        "bytes/agent",
        "wall s",
        "agent-steps/s",
        "ms/step",
    ];
    let rows: Vec<[String; 9]> = done
        .iter()
        .map(|(label, s)| {
            [
                label.clone(),
                format!("{:.4}", s.last.consensus_acc),
                format!("{:.4}", s.last.mean_local_acc),
                format!("{:.4} (#{})", s.last.worst_local_acc, s.last.worst_agent),
                format!("{:.3e}", s.last.consensus_distance),
                cli::human_bytes(s.bytes_sent_per_agent),
                format!("{:.2}", s.wall_s),
                format!("{:.0}", s.agent_steps_per_s),
                format!("{:.3}", s.ms_per_step),
            ]
        })
        .collect();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(k, (c, &w))| {
                if k == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut s = line(&head.map(String::from));
    s.push_str(&line(
        &width.iter().map(|&w| "─".repeat(w)).collect::<Vec<_>>(),
    ));
    for r in &rows {
        s.push_str(&line(r));
    }
    s
}
