//! The main job: train n agents with a decentralized algorithm and report.
//!
//! `cargo run --release --example train -- --algo dsgd --topology ring --agents 16 --alpha 0.1`
//! (see `--help`; `--config FILE.toml` fills every key of `TrainConfig`, flags override it).

fn main() {
    let code = swarmgrad::cli::train::run_cli(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
