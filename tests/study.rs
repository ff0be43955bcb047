//! The study's strongest ordering on real MNIST (RESULTS.md): at Dirichlet α = 0.01 on 16
//! agents, RelaySGD with local momentum on a chain keeps its worst agent far above D-PSGD's on
//! a ring (the RelaySGD paper's Table 2 ordering). Skipped, saying so, when the MNIST files are
//! missing, unless `SWARMGRAD_REQUIRE_DATA=1`.

use swarmgrad::backend::native::NativeBackend;
use swarmgrad::backend::Backend;
use swarmgrad::data::DataError;
use swarmgrad::study::plan::{settings, Scale};
use swarmgrad::study::run::{self, load_data};
use swarmgrad::Error;

#[test]
fn relaysgd_keeps_the_worst_agent_far_above_dsgd_at_alpha_001() {
    let require = std::env::var("SWARMGRAD_REQUIRE_DATA").as_deref() == Ok("1");
    let (train, test) = match load_data(None) {
        Ok((train, test, _)) => (train, test),
        // No MNIST folder found, or one without the t10k files: skipped unless required.
        Err(e @ (Error::BadParameter { .. } | Error::Data(DataError::MissingFile { .. })))
            if !require =>
        {
            eprintln!("SKIPPED study ordering test: the MNIST files are missing: {e}");
            return;
        }
        Err(e) => panic!("loading MNIST failed (SWARMGRAD_REQUIRE_DATA=1): {e}"),
    };
    // The quick study's setting: 60 steps, the rates the full study chose at α = 0.01.
    let plan = settings(Scale { quick: true });
    let s = plan
        .iter()
        .find(|s| s.id == "ring16-a0.01")
        .expect("the quick plan has ring16 at α = 0.01");
    let variant = |label: &str| {
        s.variants
            .iter()
            .find(|v| v.label == label)
            .unwrap_or_else(|| panic!("{label} in the plan"))
    };
    let mut be: Box<dyn Backend> = Box::new(NativeBackend::new(0).unwrap());
    let worst = |label: &str, lr: f64, seed: u64, be: Box<dyn Backend>| {
        let (row, be) =
            run::run_one(s, variant(label), seed, lr, (&train, &test), be, None).unwrap();
        assert_eq!(row.status, "ok", "{label} seed {seed}");
        (row.worst_acc, be)
    };
    for seed in [0, 1] {
        let relay;
        let dsgd;
        (relay, be) = worst("relaysgd-chain-m", RELAY_LR, seed, be);
        (dsgd, be) = worst("dsgd", DSGD_LR, seed, be);
        eprintln!("seed {seed}: worst agent relaysgd-chain-m {relay:.4}, dsgd {dsgd:.4}");
        assert!(
            relay - dsgd > MARGIN,
            "seed {seed}: relaysgd-chain-m worst agent {relay:.4} should exceed dsgd's \
             {dsgd:.4} by {MARGIN}"
        );
    }
}

/// RelaySGD + momentum's rate (the full study's choice at α = 0.01).
const RELAY_LR: f64 = 0.09;
/// D-PSGD's rate (the full study's choice at α = 0.01).
const DSGD_LR: f64 = 0.1;
/// The required gap in worst-agent accuracy: at these 60 steps the two seeds gave gaps of 52
/// and 38 points; the full study's D-PSGD worst agent at α = 0.01 spreads by 4.6 points (std
/// over 3 seeds) around a 25-point gap, so 20 points sits about 4 such spreads below the
/// smaller observed gap.
const MARGIN: f64 = 0.2;
