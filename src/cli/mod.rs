//! The command lines of the examples: `train` (the main job), `compare` (several runs, one table
//! and plot) and `toy` (exact checks on the problems of ALGORITHMS.md §8.1). Each parses its
//! flags with clap, builds a configuration, and reports errors with exit code 2.

pub mod compare;
pub mod toy;
pub mod train;
