//! Every WGSL file parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL (so a break on
//! Metal or DX12 shows up here), and every uniform struct matches its bytemuck twin's size.
//! Host only: no adapter needed.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use swarmgrad::backend::gpu::{params::UNIFORMS, Kernel, SHADERS};

fn parse(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation failed: {}", e.emit_to_string(src)));
    (module, info)
}

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    assert_eq!(
        SHADERS.len(),
        std::fs::read_dir("shaders").unwrap().count(),
        "every file in shaders/ is catalogued"
    );
    for (name, src) in SHADERS {
        let (module, info) = parse(name, src);
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");

        let spv =
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
                .unwrap_or_else(|e| panic!("{name} -> SPIR-V: {e}"));
        assert!(
            spv.len() > 16 && spv[0] == 0x0723_0203,
            "{name}: bad SPIR-V"
        );

        let msl = naga::back::msl::write_string(
            &module,
            &info,
            &naga::back::msl::Options::default(),
            &naga::back::msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name} -> MSL: {e}"))
        .0;
        assert!(msl.contains("kernel"), "{name}: MSL has no kernel");

        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(
            &mut hlsl,
            &naga::back::hlsl::Options::default(),
            &Default::default(),
        )
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{name} -> HLSL: {e}"));
        assert!(
            hlsl.contains("numthreads"),
            "{name}: HLSL has no compute entry"
        );

        for ep in &module.entry_points {
            let mut glsl = String::new();
            let options = naga::back::glsl::Options {
                version: naga::back::glsl::Version::Embedded {
                    version: 310,
                    is_webgl: false,
                },
                ..Default::default()
            };
            let pipeline = naga::back::glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            let mut w = naga::back::glsl::Writer::new(
                &mut glsl,
                &module,
                &info,
                &options,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .unwrap_or_else(|e| panic!("{name}:{} -> GLSL: {e}", ep.name));
            w.write()
                .unwrap_or_else(|e| panic!("{name}:{} -> GLSL: {e}", ep.name));
            assert!(
                glsl.contains("void main"),
                "{name}:{}: GLSL has no main",
                ep.name
            );
        }
    }
}

#[test]
fn every_kernel_names_an_existing_entry_point() {
    for k in Kernel::ALL {
        let (file, entry) = k.source();
        let src = SHADERS.iter().find(|(f, _)| *f == file).unwrap().1;
        let (module, _) = parse(file, src);
        assert!(
            module.entry_points.iter().any(|e| e.name == entry),
            "{k:?}: {file} has no {entry}"
        );
    }
}

#[test]
fn uniform_structs_match_their_host_twins() {
    for (struct_name, file, host_size) in UNIFORMS {
        let src = SHADERS.iter().find(|(f, _)| f == file).unwrap().1;
        let (module, _) = parse(file, src);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(*struct_name))
            .unwrap_or_else(|| panic!("{file} has no struct {struct_name}"));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{struct_name} is not a struct")
        };
        assert_eq!(
            *span as usize, *host_size,
            "{struct_name}: WGSL size {span} vs host {host_size}"
        );
        assert_eq!(layouter[handle].size as usize, *host_size);
        // Every member is a 4-byte scalar at offset 4·k, like the #[repr(C)] twin's fields.
        for (k, m) in members.iter().enumerate() {
            assert_eq!(
                m.offset as usize,
                4 * k,
                "{struct_name}.{:?} offset",
                m.name
            );
        }
        assert_eq!(members.len() * 4, *host_size, "{struct_name}: member count");
        assert_eq!(
            host_size % 16,
            0,
            "{struct_name}: uniform blocks are 16-byte multiples"
        );
    }
}
