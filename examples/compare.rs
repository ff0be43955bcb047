//! Compare algorithms (and topologies) on one setting with the same seed and data.
//!
//! `cargo run --release --example compare -- --algos dsgd,allreduce --topologies ring,torus --agents 16 --alpha 0.1 --steps 300`
//! (takes every flag of `train`; writes compare.csv, compare.svg and <run>/metrics.csv).

fn main() {
    let code = swarmgrad::cli::compare::run_compare(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
