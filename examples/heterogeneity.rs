//! The heterogeneity-independence study on random quadratics (issue 5; RelaySGD App. B.4):
//! steps to reach f(x̄) − f(x*) ≤ 1e-6 for RelaySGD, D², gradient tracking and D-PSGD at
//! ζ² ∈ {0, 0.1, 10}, each with its fastest learning rate of a grid, on the f64 CPU backend.
//!
//! `cargo run --release --example heterogeneity [-- --agents 32 --max-steps 3000 --seed 1]`

use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::toy::{heterogeneity_markdown, heterogeneity_table, HeterogeneityStudy};

fn main() {
    let mut s = HeterogeneityStudy::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let v = |p: &[String]| -> u64 {
            p.get(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a non-negative integer", p[0]))
        };
        match pair[0].as_str() {
            "--agents" => s.problem.agents = v(pair) as usize,
            "--max-steps" => s.max_steps = v(pair),
            "--seed" => s.problem.seed = v(pair),
            other => panic!("unknown flag {other}; accepted: --agents, --max-steps, --seed"),
        }
    }
    let start = std::time::Instant::now();
    let cells =
        heterogeneity_table(&mut ReferenceBackend::new(), &s).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "Random quadratics: n = {}, d = {}, L = {}, μ = {:?}, r₀ = {}, seed {}; target f(x̄) − f(x*) ≤ {:e}; \
         η grid {:?}; CPU backend (f64); {:.1} s\n",
        s.problem.agents,
        s.problem.d,
        s.problem.smoothness,
        s.problem.mu,
        s.problem.r0,
        s.problem.seed,
        s.target,
        s.lrs,
        start.elapsed().as_secs_f64()
    );
    print!("{}", heterogeneity_markdown(&s, &cells));
}
