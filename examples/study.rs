//! The reproduction study on real MNIST (RESULTS.md): every setting and algorithm of
//! `swarmgrad::study::plan`, learning rates from a grid on the first seed, three seeds.
//!
//! `cargo run --release --example study` (full: results/, RESULTS.md's generated section) or
//! `cargo run --release --example study -- --quick` (1 seed, α ∈ {1, 0.01}, a quarter of the
//! steps: results/quick/). Rerunning skips the runs already in results.csv.

use clap::Parser;
use std::path::PathBuf;
use swarmgrad::study::{plan::Scale, run_study, StudyOptions};

/// Flags of the study.
#[derive(Parser, Debug)]
#[command(
    name = "study",
    about = "Reproduce the papers' orderings on real MNIST (RESULTS.md)"
)]
struct Args {
    /// Reduced study: 1 seed, α ∈ {1, 0.01}, a quarter of the steps (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Output folder (default: results, or results/quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// MNIST folder (default: $SWARMGRAD_MNIST_DIR, else ../shared/data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Threads of the native CPU backend (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Only these groups (ring16, social32, ngm-shards, matcha8) or settings (ring16-a0.01),
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these variants (labels, comma-separated, as in the tables).
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Only write the reports from the runs already in results.csv (train nothing).
    #[arg(long)]
    report_only: bool,
    /// The Markdown file whose generated section gets the tables (default: RESULTS.md for the
    /// full study, none with --quick; `none` for none).
    #[arg(long)]
    results_md: Option<String>,
}

fn main() {
    let args = Args::parse();
    let scale = Scale { quick: args.quick };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "results/quick"
        } else {
            "results"
        })
    });
    let results_md = match args.results_md.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None if args.quick => None,
        None => Some(PathBuf::from("RESULTS.md")),
    };
    let opts = StudyOptions {
        scale,
        out: out.clone(),
        data_dir: args.data_dir,
        threads: args.threads,
        only: args.only,
        variants: args.variants,
        report_only: args.report_only,
        results_md,
    };
    match run_study(&opts, &mut std::io::stderr()) {
        Ok(o) => {
            println!(
                "{} runs trained, {} already done; this call {:.0} s; the study's runs take {:.0} s ({:.1} min) of wall time here; outputs in {}",
                o.ran,
                o.skipped,
                o.wall_s,
                o.runs_wall_s,
                o.runs_wall_s / 60.0,
                out.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
