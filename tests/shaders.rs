//! Every kernel variant, compiled the way the catalogue compiles it (variant header + prelude +
//! shader file, with its pipeline constants), parses, validates, and translates to SPIR-V, MSL,
//! HLSL and GLSL (so a break on Metal or DX12 shows up here); every kernel's declared bindings
//! match the shader's global variables; every uniform struct matches its `#[repr(C)]` twin field
//! by field. Host only: no adapter needed.

use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, StorageAccess};
use swarmgrad::backend::gpu::params::UNIFORMS;
use swarmgrad::backend::gpu::probe::PROBES;
use swarmgrad::backend::gpu::{compose, Access, Kernel, KernelDef, Variant, PRELUDE, SHADERS};

/// Every kernel the crate compiles: the training kernels and the benchmark probes.
fn all_kernels() -> Vec<&'static KernelDef> {
    Kernel::ALL
        .iter()
        .map(|k| k.def())
        .chain(PROBES.iter())
        .collect()
}

fn parse(name: &str, src: &str) -> (Module, ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation failed: {}", e.emit_to_string(src)));
    (module, info)
}

/// The composed source of a kernel variant, parsed and validated.
fn compiled(def: &KernelDef, variant: Variant) -> (String, Module, ModuleInfo) {
    let name = format!("{}:{} {variant:?}", def.file, def.entry);
    let src =
        compose(def.file, variant.width).unwrap_or_else(|| panic!("{name}: file not catalogued"));
    let (module, info) = parse(&name, &src);
    (name, module, info)
}

#[test]
fn every_file_in_shaders_is_catalogued_and_used() {
    let on_disk: Vec<String> = std::fs::read_dir("shaders")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        on_disk.len(),
        SHADERS.len() + 1,
        "every file in shaders/ is catalogued (or the prelude): {on_disk:?}"
    );
    assert!(on_disk.iter().any(|f| f == PRELUDE.0));
    for (file, _) in SHADERS {
        assert!(on_disk.iter().any(|f| f == file), "{file} missing");
        assert!(
            all_kernels().iter().any(|d| d.file == *file),
            "{file} has no kernel in the catalogue"
        );
    }
}

#[test]
fn every_variant_validates_and_translates_to_all_backends() {
    for def in all_kernels() {
        assert!(!def.variants.is_empty(), "{}: no variants", def.entry);
        for &variant in def.variants {
            let (name, module, info) = compiled(def, variant);
            let constants: naga::back::PipelineConstants = variant
                .constants()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let (module, info) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, def.entry)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{name}: pipeline constants: {e}"));
            let ep = module
                .entry_points
                .iter()
                .find(|e| e.name == def.entry)
                .unwrap_or_else(|| panic!("{name}: no entry point {}", def.entry));
            assert_eq!(
                ep.workgroup_size,
                [def.workgroup_size, 1, 1],
                "{name}: workgroup size"
            );

            let spv = naga::back::spv::write_vec(
                &module,
                &info,
                &naga::back::spv::Options::default(),
                None,
            )
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
                entry_point: def.entry.to_string(),
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
            .unwrap_or_else(|e| panic!("{name} -> GLSL: {e}"));
            w.write().unwrap_or_else(|e| panic!("{name} -> GLSL: {e}"));
            assert!(glsl.contains("void main"), "{name}: GLSL has no main");
        }
    }
}

/// What a binding declares: the uniform block (its struct name) or a storage buffer.
#[derive(Debug, PartialEq)]
enum Declared {
    Uniform(String),
    Storage(Access),
}

/// How the module declares a global variable, if it is a buffer binding.
fn declared(module: &Module, var: &naga::GlobalVariable) -> Option<Declared> {
    match var.space {
        AddressSpace::Uniform => Some(Declared::Uniform(
            module.types[var.ty].name.clone().unwrap_or_default(),
        )),
        AddressSpace::Storage { access } => Some(Declared::Storage(
            if access.contains(StorageAccess::STORE) {
                Access::ReadWrite
            } else {
                Access::Read
            },
        )),
        _ => None,
    }
}

#[test]
fn declared_bindings_match_the_shader_globals() {
    for def in all_kernels() {
        for &variant in def.variants {
            let (name, module, info) = compiled(def, variant);
            let (index, _) = module
                .entry_points
                .iter()
                .enumerate()
                .find(|(_, e)| e.name == def.entry)
                .unwrap_or_else(|| panic!("{name}: no entry point"));
            let uses = info.get_entry_point(index);
            let expected: Vec<Declared> = std::iter::once(Declared::Uniform(def.uniform.into()))
                .chain(def.storage.iter().map(|&a| Declared::Storage(a)))
                .collect();
            // Every binding the entry point touches is declared by the host, the same way.
            let mut used = vec![false; expected.len()];
            for (handle, var) in module.global_variables.iter() {
                let Some(kind) = declared(&module, var) else {
                    continue;
                };
                let rb = var
                    .binding
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}: {:?} has no binding", var.name));
                assert_eq!(rb.group, 0, "{name}: {:?} outside group 0", var.name);
                let slot = rb.binding as usize;
                if uses[handle].is_empty() {
                    // Another entry point's view: it must still fit the layout of its slot when
                    // this kernel declares that slot with the same access.
                    continue;
                }
                let want = expected.get(slot).unwrap_or_else(|| {
                    panic!(
                        "{name}: uses {:?} at binding {slot}, which the host does not declare",
                        var.name
                    )
                });
                assert_eq!(&kind, want, "{name}: binding {slot} ({:?})", var.name);
                used[slot] = true;
            }
            // A declared binding the entry point does not touch must still exist in the shader
            // with that access (the host binds a buffer there; e.g. dense_forward's slot 4).
            for (slot, want) in expected.iter().enumerate().filter(|(s, _)| !used[*s]) {
                assert!(
                    module.global_variables.iter().any(|(_, v)| {
                        v.binding.as_ref().map(|b| b.binding as usize) == Some(slot)
                            && declared(&module, v).as_ref() == Some(want)
                    }),
                    "{name}: binding {slot} declared {want:?} but the shader has no such global"
                );
            }
            assert!(used[0], "{name}: does not read its uniform block");
        }
    }
}

#[test]
fn uniform_structs_match_their_host_twins_field_by_field() {
    // Every host block belongs to some kernel, and every kernel's block has a host twin.
    for u in UNIFORMS {
        assert!(
            all_kernels().iter().any(|d| d.uniform == u.name),
            "{}: no kernel binds it",
            u.name
        );
    }
    for def in all_kernels() {
        let host = UNIFORMS
            .iter()
            .find(|u| u.name == def.uniform)
            .unwrap_or_else(|| panic!("{}: no host twin of {}", def.entry, def.uniform));
        let (name, module, _) = compiled(def, def.variants[0]);
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(host.name))
            .unwrap_or_else(|| panic!("{name}: no struct {}", host.name));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{}: not a struct", host.name)
        };
        assert_eq!(
            *span as usize, host.size,
            "{}: WGSL size vs host",
            host.name
        );
        assert_eq!(layouter[handle].size as usize, host.size);
        assert_eq!(
            host.size % 16,
            0,
            "{}: uniform blocks are 16-byte multiples",
            host.name
        );
        assert_eq!(
            members.len(),
            host.fields.len(),
            "{}: member count",
            host.name
        );
        for (m, f) in members.iter().zip(host.fields) {
            let what = format!("{}.{}", host.name, f.name);
            assert_eq!(m.name.as_deref(), Some(f.name), "{what}: name");
            assert_eq!(m.offset as usize, f.offset, "{what}: offset");
            let wgsl_ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Uint,
                    width: 4,
                }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar {
                    kind: naga::ScalarKind::Float,
                    width: 4,
                }) => "f32",
                ref other => panic!("{what}: unsupported WGSL member type {other:?}"),
            };
            assert_eq!(wgsl_ty, f.ty, "{what}: type");
        }
    }
}
