//! Shared test helpers: the targets a test runs on (the f64 reference, the native f32 CPU
//! backend, each wgpu backend) with the macro that makes one `#[test]` per target, seeded random
//! data, tolerance checks, uploads and the small trainer configs.
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::Ordering;
use swarmgrad::algo::{AlgoOptions, Algorithm};
use swarmgrad::backend::gpu::{AdapterChoice, GpuBackend, GpuContext, KernelFamily};
use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::reference::ReferenceBackend;
use swarmgrad::backend::{Backend, Buf, BufKind};
use swarmgrad::graph::{MixingRule, Topology};
use swarmgrad::sparse::Csr;
use swarmgrad::train::{Summary, TrainConfig, Trainer};

/// Where a test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The f64 CPU reference.
    Reference,
    /// The native f32 CPU backend.
    Native,
    /// wgpu on Vulkan.
    Vulkan,
    /// wgpu on GL.
    Gl,
    /// wgpu on Metal.
    Metal,
    /// wgpu on DX12.
    Dx12,
}

impl Kind {
    /// The name `cargo test` shows (the generated test function's name).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reference => "reference",
            Kind::Native => "native",
            Kind::Vulkan => "vulkan",
            Kind::Gl => "gl",
            Kind::Metal => "metal",
            Kind::Dx12 => "dx12",
        }
    }

    fn wgpu(self) -> Option<wgpu::Backends> {
        match self {
            Kind::Vulkan => Some(wgpu::Backends::VULKAN),
            Kind::Gl => Some(wgpu::Backends::GL),
            Kind::Metal => Some(wgpu::Backends::METAL),
            Kind::Dx12 => Some(wgpu::Backends::DX12),
            Kind::Reference | Kind::Native => None,
        }
    }
}

/// The native backend's thread count where a test takes one backend (2: the work is split).
pub const NATIVE_THREADS: usize = 2;

/// One target, open for one test: it makes fresh backends of its kind.
pub struct Target {
    /// What this target is.
    pub kind: Kind,
    choice: Option<AdapterChoice>,
    /// The context opened to find out whether the wgpu backend exists, used by the first
    /// backend asked for.
    first: RefCell<Option<GpuContext>>,
}

impl Target {
    /// Opens `kind` for test `test`, or `None` after printing why it is skipped. A wgpu backend
    /// that is absent fails the test when `SWARMGRAD_REQUIRE_BACKENDS` lists it, or when
    /// `SWARMGRAD_REQUIRE_ADAPTER=1` and no wgpu backend at all is present; `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME` restrict the set as usual (an excluded backend is skipped).
    pub fn open(kind: Kind, test: &str) -> Option<Target> {
        let Some(backends) = kind.wgpu() else {
            return Some(Target {
                kind,
                choice: None,
                first: RefCell::new(None),
            });
        };
        let name = kind.name();
        let env = AdapterChoice::from_env();
        let required = std::env::var("SWARMGRAD_REQUIRE_BACKENDS")
            .map(|l| l.split(',').any(|w| w.trim().eq_ignore_ascii_case(name)))
            .unwrap_or(false);
        if !env.backends.contains(backends) {
            assert!(
                !required,
                "{test}: {name} is required but WGPU_BACKEND excludes it"
            );
            skipped(&format!("{test} on {name}: excluded by WGPU_BACKEND"));
            return None;
        }
        let choice = AdapterChoice {
            backends,
            name: env.name.clone(),
            spread: 0,
        };
        match GpuContext::new(&choice) {
            Ok(ctx) => Some(Target {
                kind,
                choice: Some(choice),
                first: RefCell::new(Some(ctx)),
            }),
            Err(e) => {
                assert!(
                    !required,
                    "{test}: SWARMGRAD_REQUIRE_BACKENDS lists {name}: {e}"
                );
                let require_any = std::env::var("SWARMGRAD_REQUIRE_ADAPTER").as_deref() == Ok("1");
                assert!(
                    !require_any || any_gpu(),
                    "{test}: SWARMGRAD_REQUIRE_ADAPTER=1 but no GPU adapter was found"
                );
                skipped(&format!("{test} on {name}: {e}"));
                None
            }
        }
    }

    /// The target's name (as in the test's name).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Whether this is the f64 reference.
    pub fn is_reference(&self) -> bool {
        self.kind == Kind::Reference
    }

    /// Whether this is the native CPU backend.
    pub fn is_native(&self) -> bool {
        self.kind == Kind::Native
    }

    /// Whether this is a wgpu backend.
    pub fn is_gpu(&self) -> bool {
        self.kind.wgpu().is_some()
    }

    /// A fresh wgpu backend; panics on a CPU target.
    pub fn gpu(&self) -> GpuBackend {
        let choice = self.choice.as_ref().expect("a wgpu target");
        let ctx = match self.first.borrow_mut().take() {
            Some(ctx) => ctx,
            None => GpuContext::new(choice).unwrap(),
        };
        GpuBackend::with_context(ctx)
    }

    /// A fresh backend of this kind (the native one on [`NATIVE_THREADS`] threads).
    pub fn backend(&self) -> Box<dyn Backend> {
        match self.kind {
            Kind::Reference => Box::new(ReferenceBackend::new()),
            Kind::Native => Box::new(NativeBackend::new(NATIVE_THREADS).unwrap()),
            _ => Box::new(self.gpu()),
        }
    }

    /// The backends a test compares: the native backend on 1, 2 and 3 threads (3: more
    /// threads than cores here, and not a divisor of the chunk counts); on a wgpu target both
    /// forms of the dense kernels (tiled and wide). Their results must also be bit-identical.
    /// One backend otherwise.
    pub fn variants(&self) -> Vec<Box<dyn Backend>> {
        self.variants_with(false)
    }

    /// [`Target::variants`] and, on a wgpu target, the wide kernels in the per-agent mode too
    /// (one dispatch per job: the same results, more dispatches), for the kernel parity tests.
    pub fn parity_variants(&self) -> Vec<Box<dyn Backend>> {
        self.variants_with(true)
    }

    fn variants_with(&self, per_agent: bool) -> Vec<Box<dyn Backend>> {
        match self.kind {
            Kind::Native => [1, 2, 3]
                .into_iter()
                .map(|t| Box::new(NativeBackend::new(t).unwrap()) as Box<dyn Backend>)
                .collect(),
            Kind::Reference => vec![self.backend()],
            _ => [
                (KernelFamily::Tiled, false),
                (KernelFamily::Wide, false),
                (KernelFamily::Wide, true),
            ]
            .into_iter()
            .filter(|&(_, split)| per_agent || !split)
            .map(|(family, split)| {
                let mut be = self.gpu();
                be.set_kernel_family(family);
                be.per_agent_switch().store(split, Ordering::Relaxed);
                Box::new(be) as Box<dyn Backend>
            })
            .collect(),
        }
    }
}

/// Says that a test is skipped, on the process's stderr itself: the test harness captures
/// `eprintln!` of passing tests, and a skip must show in `cargo test`'s output.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {why}");
}

/// Whether any wgpu backend has an adapter here (asked once per test binary).
pub fn any_gpu() -> bool {
    static ANY: OnceLock<bool> = OnceLock::new();
    *ANY.get_or_init(|| GpuContext::new(&AdapterChoice::from_env()).is_ok())
}

/// Runs `body` on target `kind` for test `test`, unless the target is skipped.
pub fn run_on(kind: Kind, test: &str, body: fn(&Target)) {
    if let Some(t) = Target::open(kind, test) {
        body(&t);
    }
}

/// Generates one `#[test]` per target for each named test function, in a module named after
/// it, so `cargo test` lists what ran where (`mix_matches_reference::vulkan ... ok`):
///
/// ```ignore
/// target_tests!([gpu, native] mix_matches_reference);
/// fn mix_matches_reference(t: &Target) { … }
/// ```
///
/// Targets: `reference`, `native`, `vulkan`, `gl`, `metal`, `dx12`, and `gpu` for every wgpu
/// backend (`vulkan`, `gl`, and `metal`/`dx12` on their platforms). A wgpu backend that is
/// absent is skipped with a message, or fails as [`Target::open`] says. (The module lives in
/// the type namespace, the function in the value namespace: they share the name.)
#[macro_export]
macro_rules! target_tests {
    (@mod $name:ident [$($target:ident),*]) => {
        mod $name {
            $($crate::target_tests!(@one $name $target);)*
        }
    };
    (@one $name:ident gpu) => {
        $crate::target_tests!(@one $name vulkan);
        $crate::target_tests!(@one $name gl);
        #[cfg(target_vendor = "apple")]
        $crate::target_tests!(@one $name metal);
        #[cfg(windows)]
        $crate::target_tests!(@one $name dx12);
    };
    (@one $name:ident reference) => { $crate::target_tests!(@fn $name reference Reference); };
    (@one $name:ident native) => { $crate::target_tests!(@fn $name native Native); };
    (@one $name:ident vulkan) => { $crate::target_tests!(@fn $name vulkan Vulkan); };
    (@one $name:ident gl) => { $crate::target_tests!(@fn $name gl Gl); };
    (@one $name:ident metal) => { $crate::target_tests!(@fn $name metal Metal); };
    (@one $name:ident dx12) => { $crate::target_tests!(@fn $name dx12 Dx12); };
    (@fn $name:ident $f:ident $kind:ident) => {
        #[test]
        fn $f() {
            $crate::common::run_on(
                $crate::common::Kind::$kind,
                module_path!(),
                super::$name,
            )
        }
    };
    ($targets:tt $($name:ident),+ $(,)?) => {
        $($crate::target_tests!(@mod $name $targets);)+
    };
}

/// Seeded uniform reals in [lo, hi).
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Seeded integers in [0, hi).
pub fn indices(seed: u64, n: usize, hi: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..hi)).collect()
}

/// f32 machine epsilon.
pub const EPS32: f64 = f32::EPSILON as f64;

/// Asserts `|got - want| <= bound[i]` elementwise; prints the first failure with both values.
pub fn assert_within(what: &str, got: &[f64], want: &[f64], bound: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let b = bound(i);
        let err = (g - w).abs();
        assert!(
            err <= b && g.is_finite(),
            "{what}: first mismatch at index {i}: got {g} vs reference {w} (error {err:e} > bound {b:e})"
        );
        if b > 0.0 {
            worst = worst.max(err / b);
        }
    }
    assert!(!got.is_empty(), "{what}: nothing compared");
    eprintln!(
        "{what}: {} values, worst error {:.3} of its bound",
        got.len(),
        worst
    );
}

/// Relative tolerance with an absolute floor: `|got - want| <= rtol·|want| + atol`.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_within(what, got, want, |i| rtol * want[i].abs() + atol);
}

/// A new f32 buffer holding `data`.
pub fn upload(be: &mut dyn Backend, data: &[f32]) -> Buf {
    let b = be.alloc(BufKind::F32, data.len(), "test").unwrap();
    be.write_f32(b, 0, data).unwrap();
    b
}

/// A new u32 buffer holding `data`.
pub fn upload_u32(be: &mut dyn Backend, data: &[u32]) -> Buf {
    let b = be.alloc(BufKind::U32, data.len(), "test").unwrap();
    be.write_u32(b, 0, data).unwrap();
    b
}

/// A seeded random sparse matrix with 0..3 entries per row (row 0 empty), weights in [-1, 1).
pub fn random_csr(rows: usize, cols: usize, seed: u64) -> Csr {
    let picks = indices(seed, rows * 4, cols as u32);
    let ws = uniform(seed + 1, rows * 4, -1.0, 1.0);
    let lists: Vec<Vec<(usize, f64)>> = (0..rows)
        .map(|r| {
            let deg = r % 4; // 0..3 entries: row 0 is empty
            (0..deg)
                .map(|e| (picks[r * 4 + e] as usize, ws[r * 4 + e] as f64))
                .collect()
        })
        .collect();
    Csr::from_rows(cols, &lists)
}

/// A small, fast trainer run: 5 agents on a ring (Metropolis–Hastings weights), the synthetic
/// task with 16 features, 1 000 training and 300 test samples, `mlp:16-16-10`, batch 8,
/// learning rate 0.1, no momentum, 30 steps with an evaluation every 10.
pub fn small_run(algo: Algorithm) -> TrainConfig {
    TrainConfig {
        algo,
        topology: Topology::Ring,
        agents: 5,
        partition: "dirichlet".into(),
        alpha: Some(0.5),
        model: Some("mlp:16-16-10".into()),
        batch: 8,
        lr: 0.1,
        momentum: 0.0,
        steps: Some(30),
        epochs: None,
        eval_every: 10,
        seed: 3,
        synthetic_train: 1_000,
        synthetic_test: 300,
        synthetic_dim: 16,
        ..Default::default()
    }
}

/// [`small_run`] at learning rate 0.05 with the settings each algorithm needs: SGP on 4
/// agents, AL-DSGD on 8, D² and gradient tracking with the constant weight 0.3233 and no momentum (their
/// tests' spectrum condition), momentum 0.9 otherwise, SlowMo's outer step every 4, and for
/// QG-Adam η = 0.005 with f32-exact hyperparameters.
pub fn tuned_run(algo: Algorithm, steps: u64) -> TrainConfig {
    let (agents, mixing, momentum) = if algo == Algorithm::Sgp {
        (4, MixingRule::MetropolisHastings, 0.9)
    } else if algo == Algorithm::AlDsgd {
        // AL-DSGD runs on MATCHA graphs 0 and 1 (8 nodes).
        (8, MixingRule::MetropolisHastings, 0.9)
    } else if algo == Algorithm::D2 || algo == Algorithm::Gt {
        (5, MixingRule::Constant(0.3233), 0.0)
    } else {
        (5, MixingRule::MetropolisHastings, 0.9)
    };
    let mut c = TrainConfig {
        mixing: swarmgrad::train::config::Mixing { rule: mixing },
        agents,
        lr: 0.05,
        momentum,
        steps: Some(steps),
        options: AlgoOptions {
            slowmo_period: 4,
            ..Default::default()
        },
        ..small_run(algo)
    };
    if algo == Algorithm::QgAdam {
        // Adam's first step moves every weight by about η/bc1 = 10η, so η = 0.005. f32-exact
        // hyperparameters: an f32 backend rounds β1, β2 and ε while the reference keeps f64,
        // and Adam turns that 1e-8 difference into whole steps on weights whose gradient is
        // near zero (a/√s is about ±1 there whatever the size of g).
        c.lr = 0.005;
        c.momentum = 0.0;
        c.weight_decay = 1e-4;
        c.options.adam_beta1 = 0.875;
        c.options.adam_beta2 = 0.9990234375;
        c.options.adam_eps = 1.0 / 1048576.0 / 128.0;
    }
    c
}

/// Runs `config` to the end on `be`: the summary and the final parameters.
pub fn train(config: TrainConfig, be: Box<dyn Backend>) -> (Summary, Vec<f64>) {
    let mut t = Trainer::new(config, be).unwrap();
    let s = t.run(|_, _, _| {}).unwrap();
    (s, t.read_params().unwrap())
}

/// The first wgpu backend present (Vulkan, GL, Metal, DX12 in that order), for a test that needs
/// one GPU rather than every one; `None` (after saying why) when there is none.
pub fn first_gpu(test: &str) -> Option<GpuBackend> {
    [Kind::Vulkan, Kind::Gl, Kind::Metal, Kind::Dx12]
        .into_iter()
        .find_map(|k| Target::open(k, test))
        .map(|t| t.gpu())
}

/// Trains `config()` on target `t` and checks its final parameters against the reference's
/// within 1e-3·|x| + 1e-4 (f32 rounding over a short MLP run); the reference run is made once
/// per `cell` (one per test binary) and shared by every target's test. Both training losses
/// must be finite.
pub fn trains_like_the_reference(
    t: &Target,
    what: &str,
    cell: &'static OnceLock<Vec<f64>>,
    config: fn() -> TrainConfig,
) {
    let want = cell.get_or_init(|| {
        let (s, p) = train(config(), Box::new(ReferenceBackend::new()));
        assert!(s.last.train_loss.is_finite());
        p
    });
    let be = t.backend();
    let name = be.describe();
    let (s, p) = train(config(), be);
    assert!(s.last.train_loss.is_finite());
    assert_close(
        &format!("{what} trainer params on {name}"),
        &p,
        want,
        1e-3,
        1e-4,
    );
}
