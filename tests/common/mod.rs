//! Shared test helpers: GPU backends to test on, seeded random data, tolerance checks.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swarmgrad::backend::gpu::{AdapterChoice, GpuBackend, GpuContext};

/// One GPU backend per wgpu backend present here (Vulkan and GL on this machine).
///
/// With no adapter the tests report that they skipped, unless `SWARMGRAD_REQUIRE_ADAPTER=1`,
/// in which case they fail. `SWARMGRAD_REQUIRE_BACKENDS=vulkan,gl` additionally fails when one
/// of the listed backends is missing. `WGPU_BACKEND` restricts the set as usual.
pub fn gpu_backends(test: &str) -> Vec<GpuBackend> {
    let env = AdapterChoice::from_env();
    let mut out = Vec::new();
    let mut found = Vec::new();
    for b in [
        wgpu::Backends::VULKAN,
        wgpu::Backends::GL,
        wgpu::Backends::METAL,
        wgpu::Backends::DX12,
    ] {
        if !env.backends.contains(b) {
            continue;
        }
        let choice = AdapterChoice {
            backends: b,
            name: env.name.clone(),
        };
        if let Ok(ctx) = GpuContext::new(&choice) {
            found.push(format!("{:?}", ctx.info.backend).to_lowercase());
            out.push(GpuBackend::with_context(ctx));
        }
    }
    if out.is_empty() {
        if std::env::var("SWARMGRAD_REQUIRE_ADAPTER").as_deref() == Ok("1") {
            panic!("{test}: SWARMGRAD_REQUIRE_ADAPTER=1 but no GPU adapter was found");
        }
        eprintln!("SKIPPED {test}: no GPU adapter found (set SWARMGRAD_REQUIRE_ADAPTER=1 to fail instead)");
    }
    if let Ok(list) = std::env::var("SWARMGRAD_REQUIRE_BACKENDS") {
        for want in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            assert!(
                found.iter().any(|f| f == &want.to_lowercase()),
                "{test}: SWARMGRAD_REQUIRE_BACKENDS lists {want} but only {found:?} were found"
            );
        }
    }
    out
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
            "{what}: first mismatch at index {i}: gpu {g} vs reference {w} (error {err:e} > bound {b:e})"
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
