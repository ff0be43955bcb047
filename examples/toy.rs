//! Exact checks of the algorithms on the toy problems of ALGORITHMS.md §8.1.
//!
//! `cargo run --release --example toy -- --task constants --targets 0,1,2,3,4,5,6,7 --algo dsgd
//! --topology ring --lr 0.1 --steps 1000 --print-steps 1,2,1000 --backend reference`
//! prints one JSON line `{"step": t, "x": [[...], ...], "error": ...}` per printed step (f64 on
//! `--backend reference`, f32 on the other backends).

fn main() {
    let code = swarmgrad::cli::toy::run_toy(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
