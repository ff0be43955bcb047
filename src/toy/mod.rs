//! The toy problems of ALGORITHMS.md §8.1 and their command line (`examples/toy.rs`): exact checks
//! of every algorithm on quadratics with known minimisers and on one-shot gradients, on the f64 CPU
//! reference or the f32 GPU backend; and the heterogeneity study of issue 5
//! ([`heterogeneity_table`], `examples/heterogeneity.rs`).
//!
//! Coefficients, learning rates and states stay f64 on the CPU reference (the GPU rounds them to
//! f32), and every optimum and error is computed in f64, so the fixed points of a CPU run are exact
//! to rounding.

mod linalg;
mod problems;
mod quadratics;
mod run;
mod study;

pub use problems::{ToyGradient, ToyProblem};
pub use quadratics::{RandomQuadratics, RandomQuadraticsSpec};
pub use run::{build, run_problem, ToyRun};
pub use study::*;

pub use crate::cli::toy::{problem_from_args, run_from_args, run_toy, ToyArgs};

use linalg::*;
use problems::TOY_STREAM;

use crate::algo::{
    Algo, AlgoOptions, AlgoSetup, Algorithm, LocalHyper, Objective, OneShot, Quadratics,
};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{MixingRule, Topology};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
