//! The command lines of the examples: `train` (the main job), `compare` (several runs, one table
//! and plot) and `toy` (exact checks on the problems of ALGORITHMS.md §8.1). Each parses its
//! flags with clap, builds a configuration, and reports errors with exit code 2.
//!
//! Every setting is defined once, on the struct that holds it ([`crate::train::TrainConfig`],
//! [`crate::algo::AlgoOptions`]): clap derives the flags from it and serde the TOML keys. This
//! module holds the two helpers those structs share, and the backend flags ([`BackendArgs`])
//! every command line takes.

pub mod compare;
pub mod toy;
pub mod train;

use crate::backend::choice::{self, BackendChoice, Chosen};
use crate::backend::gpu::{AdapterChoice, GpuContext};
use crate::error::{Error, Result};

/// The most `--threads` accepted: far above any core count, low enough that a typo cannot
/// start a pool of millions of threads.
pub const MAX_THREADS: usize = 1024;

/// Where a command runs: the backend flags shared by every command line.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[command(next_help_heading = "Backend")]
pub struct BackendArgs {
    /// Backend: auto (a hardware GPU adapter when one exists, else the native CPU backend),
    /// gpu (wgpu, software adapters such as lavapipe and llvmpipe included), cpu (the native
    /// f32 CPU backend) or reference (the f64 CPU reference: slow, exact).
    #[arg(long, default_value_t = BackendChoice::Auto, value_parser = flag_value::<BackendChoice>)]
    pub backend: BackendChoice,
    /// Threads of the native CPU backend (0: one per logical core). Results are bit-identical
    /// for every thread count.
    #[arg(long, default_value_t = 0, value_parser = threads_value)]
    pub threads: usize,
    /// GPU adapter name substring (overrides WGPU_ADAPTER_NAME).
    #[arg(long)]
    pub adapter: Option<String>,
    /// wgpu backend(s): vulkan, gl, metal, dx12, comma-separated (overrides WGPU_BACKEND).
    #[arg(long)]
    pub gpu_backend: Option<String>,
}

impl Default for BackendArgs {
    fn default() -> Self {
        clap_defaults()
    }
}

impl BackendArgs {
    /// Opens the backend these flags choose (through [`choice::choose`]); a notice goes to
    /// `notices` when `--threads` is given but the backend chosen is not the native one.
    pub fn open(&self, notices: &mut Vec<String>) -> Result<Chosen> {
        self.open_spread(notices, 0)
    }

    /// Like [`BackendArgs::open`], opening GPU adapter number `spread` of several equally good
    /// ones ([`AdapterChoice::spread`]): a rank of a sharded run passes its local rank.
    pub fn open_spread(&self, notices: &mut Vec<String>, spread: usize) -> Result<Chosen> {
        let env = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
        // What the user asked of the GPU explicitly, as written (flags over the environment).
        let mut asked = Vec::new();
        match (&self.gpu_backend, env("WGPU_BACKEND")) {
            (Some(b), _) => asked.push(format!("--gpu-backend {b}")),
            (None, Some(b)) => asked.push(format!("WGPU_BACKEND={b}")),
            _ => {}
        }
        match (&self.adapter, env("WGPU_ADAPTER_NAME")) {
            (Some(n), _) => asked.push(format!("--adapter {n}")),
            (None, Some(n)) => asked.push(format!("WGPU_ADAPTER_NAME={n}")),
            _ => {}
        }
        let adapters = AdapterChoice {
            spread,
            ..AdapterChoice::from_env()
                .with_overrides(self.gpu_backend.as_deref(), self.adapter.as_deref())?
        };
        let mut backend = self.backend;
        if !asked.is_empty() && matches!(backend, BackendChoice::Auto | BackendChoice::Gpu) {
            // An explicit request is met or refused, never replaced by a fallback.
            if GpuContext::adapters(&adapters).is_empty() {
                let all = GpuContext::adapters(&AdapterChoice::default());
                let available = if all.is_empty() {
                    "none".to_string()
                } else {
                    all.iter()
                        .map(|a| {
                            let i = a.get_info();
                            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Error::AdapterRequest {
                    request: asked.join(" "),
                    available,
                });
            }
            // `auto` with an explicit request opens the adapter asked for, whatever its kind.
            backend = BackendChoice::Gpu;
        }
        let chosen = choice::choose(backend, &adapters, self.threads)?;
        if self.threads != 0 && chosen.kind != BackendChoice::Cpu {
            notices.push(format!(
                "--threads {} applies to the native CPU backend only (this run uses --backend {})",
                self.threads, chosen.kind
            ));
        }
        Ok(chosen)
    }
}

/// Parses `--threads`: a count from 0 (every core) to [`MAX_THREADS`].
fn threads_value(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a thread count (0 for every core)"))?;
    if n > MAX_THREADS {
        return Err(format!(
            "{n} threads is more than the {MAX_THREADS} accepted"
        ));
    }
    Ok(n)
}

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
