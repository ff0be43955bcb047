//! The command lines of the examples: `train` (the main job), `compare` (several runs, one table
//! and plot) and `toy` (exact checks on the problems of ALGORITHMS.md §8.1). Each parses its
//! flags with clap, builds a configuration, and reports errors with exit code 2.
//!
//! Every setting is defined once, on the struct that holds it ([`crate::train::TrainConfig`],
//! [`crate::algo::AlgoOptions`]): clap derives the flags from it and serde the TOML keys. This
//! module holds the two helpers those structs share.

pub mod compare;
pub mod toy;
pub mod train;

use crate::error::Error;

/// The defaults of a settings struct, taken from its `#[arg]` attributes (fields without a flag
/// use their `#[arg(skip = …)]` value): the single place each default is written.
pub fn clap_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults").no_binary_name(true));
    // No argument is required and every default parses (the unit tests cover it), so parsing
    // an empty command line cannot fail.
    let m = cmd
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("settings defaults parse");
    T::from_arg_matches(&m).expect("settings defaults convert")
}

/// A clap value parser through `FromStr` that reports only the reason of a rejection (clap's
/// message already names the flag and the value).
pub fn flag_value<T>(s: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr,
    T::Err: Into<Error>,
{
    s.parse::<T>().map_err(|e| match e.into() {
        Error::BadParameter { reason, .. } => reason,
        other => other.to_string(),
    })
}
