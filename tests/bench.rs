//! The benchmark's JSON path (examples/bench.rs) on the tiniest sizes: every headline figure is
//! present and finite, on every adapter it measured. No timing assertions.

#[allow(dead_code)]
#[path = "../examples/bench.rs"]
mod bench;

use clap::Parser;

#[test]
fn the_benchmark_json_has_every_headline_figure() {
    let args = bench::Args::parse_from([
        "bench",
        "--json",
        "--quick",
        "--agents",
        "3",
        "--models",
        "mlp:8-8-4",
        "--algos",
        "dsgd,ngm",
        "--samples",
        "1",
        "--steps",
        "1",
        "--rounds",
        "1",
    ]);
    let mut out = Vec::new();
    let returned = bench::run(&args, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // The last line of the output is the JSON object (equal up to float printing).
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        returned.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    let adapters = v["adapters"].as_array().unwrap();
    if std::env::var("SWARMGRAD_REQUIRE_ADAPTER").as_deref() == Ok("1") {
        assert!(
            !adapters.is_empty(),
            "SWARMGRAD_REQUIRE_ADAPTER=1 but no adapter was measured"
        );
    }
    let finite = |v: &serde_json::Value, what: &str| {
        let x = v
            .as_f64()
            .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
        assert!(x.is_finite() && x >= 0.0, "{what} = {x}");
    };
    let mut objects = vec![&v];
    objects.extend(adapters.iter());
    if adapters.is_empty() {
        objects.clear();
    }
    for o in objects {
        for key in [
            "dense_fraction_of_fma_peak",
            "mix_fraction_of_copy_bw",
            "update_fraction_of_copy_bw",
            "gather_fraction_of_copy_bw",
        ] {
            finite(&o[key], key);
        }
        finite(
            &o["fused_vs_per_agent_speedup"]["3"],
            "fused_vs_per_agent_speedup[3]",
        );
        for algo in ["dsgd", "ngm"] {
            finite(&o["dispatches_per_step"][algo]["3"], "dispatches_per_step");
        }
    }
    for a in adapters {
        for key in [
            "fma_gflops",
            "copy_shader_gbps",
            "copy_buffer_gbps",
            "dispatch_us",
            "submit_us",
        ] {
            finite(&a["ceilings"][key]["median"], key);
        }
        assert!(!a["kernels"].as_array().unwrap().is_empty());
    }
    let cpu = &v["cpu"];
    for step in cpu["steps"].as_array().unwrap() {
        finite(&step["ms_per_step"], "cpu ms_per_step");
        finite(&step["agent_steps_per_s"], "cpu agent_steps_per_s");
    }
}
