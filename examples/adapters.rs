//! Lists every wgpu adapter swarmgrad can see, best first, with the limits that matter to it.
//!
//! `cargo run --release --example adapters` (honours WGPU_BACKEND and WGPU_ADAPTER_NAME).

use swarmgrad::backend::gpu::{AdapterChoice, GpuContext};

fn main() {
    let choice = AdapterChoice::from_env();
    let adapters = GpuContext::adapters(&choice);
    if adapters.is_empty() {
        eprintln!("no adapter found for {choice:?}; on Linux without a GPU: apt-get install mesa-vulkan-drivers");
        std::process::exit(1);
    }
    for (k, a) in adapters.iter().enumerate() {
        let i = a.get_info();
        let l = a.limits();
        println!(
            "{k}: {} [{:?}, {:?}] storage binding {} MiB, buffer {} MiB, {} storage buffers/stage, subgroups {}..{}, features: timestamps {}, f16 {}, subgroups {}",
            i.name,
            i.backend,
            i.device_type,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            i.subgroup_min_size,
            i.subgroup_max_size,
            a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            a.features().contains(wgpu::Features::SHADER_F16),
            a.features().contains(wgpu::Features::SUBGROUP),
        );
    }
    match GpuContext::new(&choice) {
        Ok(ctx) => println!("chosen: {}\n  {}", ctx.describe(), ctx.report()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
