//! Which backend a run uses: `auto` (a hardware GPU when one exists, else the native CPU
//! backend), `gpu` (wgpu, software adapters included), `cpu` (native) or `reference` (f64).
//!
//! ```
//! use swarmgrad::backend::choice::{self, BackendChoice};
//! use swarmgrad::backend::gpu::AdapterChoice;
//! let (be, why) = choice::open(BackendChoice::Cpu, &AdapterChoice::default(), 2)?;
//! assert!(be.describe().starts_with("native CPU"));
//! assert!(why.contains("--backend cpu"));
//! # Ok::<(), swarmgrad::Error>(())
//! ```

use crate::backend::gpu::{AdapterChoice, GpuBackend, GpuContext};
use crate::backend::native::NativeBackend;
use crate::backend::reference::ReferenceBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// The `--backend` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// A hardware (discrete or integrated) wgpu adapter when one exists, else the native CPU
    /// backend: software adapters (lavapipe, llvmpipe) are slower than the native backend.
    #[default]
    Auto,
    /// wgpu, whatever the adapter (software adapters included).
    Gpu,
    /// The native CPU backend (f32, SIMD GEMM, threads).
    Cpu,
    /// The f64 CPU reference (slow; ground truth).
    Reference,
}

impl BackendChoice {
    /// Every choice, in the order the help text lists them.
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Auto,
        BackendChoice::Gpu,
        BackendChoice::Cpu,
        BackendChoice::Reference,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Gpu => "gpu",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Reference => "reference",
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_lowercase();
        BackendChoice::ALL
            .into_iter()
            .find(|c| c.name() == t)
            .ok_or_else(|| {
                Error::param(
                    "backend",
                    format!("'{s}' is not a backend; use auto, gpu, cpu or reference"),
                )
            })
    }
}

/// Whether an adapter is real hardware (discrete or integrated GPU).
fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(
        t,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}

/// The best hardware adapter the choice can see, by name, if any.
pub fn hardware_adapter(adapters: &AdapterChoice) -> Option<String> {
    GpuContext::adapters(adapters)
        .into_iter()
        .map(|a| a.get_info())
        .find(|i| is_hardware(i.device_type))
        .map(|i| format!("{} ({:?})", i.name, i.backend))
}

/// An opened backend, which kind it is and why it was chosen.
pub struct Chosen {
    /// The backend.
    pub backend: Box<dyn Backend>,
    /// What it is: [`BackendChoice::Gpu`], [`BackendChoice::Cpu`] or
    /// [`BackendChoice::Reference`] (never `Auto`: `auto` resolves to one of them).
    pub kind: BackendChoice,
    /// One line for the run line: the setting and why it led to this backend.
    pub reason: String,
}

/// Opens the chosen backend; `threads` sizes the native backend's pool (0: all cores). Returns
/// the backend and a one-line reason for the run line, e.g. `auto: no hardware GPU adapter
/// (software adapters are slower), native CPU backend, 2 threads`.
pub fn open(
    choice: BackendChoice,
    adapters: &AdapterChoice,
    threads: usize,
) -> Result<(Box<dyn Backend>, String)> {
    choose(choice, adapters, threads).map(|c| (c.backend, c.reason))
}

/// Like [`open`], and also says which kind of backend `auto` resolved to.
pub fn choose(choice: BackendChoice, adapters: &AdapterChoice, threads: usize) -> Result<Chosen> {
    let native = |why: String| -> Result<Chosen> {
        let be = NativeBackend::new(threads)?;
        let reason = format!("{why}native CPU backend, {} threads", be.threads());
        Ok(Chosen {
            backend: Box::new(be),
            kind: BackendChoice::Cpu,
            reason,
        })
    };
    match choice {
        BackendChoice::Auto => {
            // Restrict the GPU backend to the hardware adapter found, so `auto` never opens a
            // software adapter even if the list changes between the two enumerations.
            let hw = GpuContext::adapters(adapters)
                .into_iter()
                .map(|a| a.get_info())
                .find(|i| is_hardware(i.device_type));
            let Some(info) = hw else {
                return native(
                    "auto: no hardware GPU adapter (software adapters are slower), ".into(),
                );
            };
            let pick = AdapterChoice {
                backends: wgpu::Backends::from(info.backend),
                name: Some(info.name.clone()),
                spread: adapters.spread,
            };
            match GpuBackend::new(&pick) {
                Ok(g) => Ok(Chosen {
                    backend: Box::new(g),
                    kind: BackendChoice::Gpu,
                    reason: format!(
                        "auto: hardware GPU adapter {} ({:?})",
                        info.name, info.backend
                    ),
                }),
                Err(e) => native(format!(
                    "auto: hardware adapter {} failed to open ({e}), ",
                    info.name
                )),
            }
        }
        BackendChoice::Gpu => {
            let g = GpuBackend::new(adapters)?;
            Ok(Chosen {
                backend: Box::new(g),
                kind: BackendChoice::Gpu,
                reason: "--backend gpu: wgpu on the best adapter found, software ones included"
                    .into(),
            })
        }
        BackendChoice::Cpu => native("--backend cpu: ".into()),
        BackendChoice::Reference => Ok(Chosen {
            backend: Box::new(ReferenceBackend::new()),
            kind: BackendChoice::Reference,
            reason: "--backend reference: f64 CPU reference".into(),
        }),
    }
}
