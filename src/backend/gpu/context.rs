//! Adapter selection and device creation.

use crate::error::{Error, Result};

/// Which adapter to use: a backend set and an optional name filter.
#[derive(Clone, Debug)]
pub struct AdapterChoice {
    /// Backends to enumerate (default: all compiled in).
    pub backends: wgpu::Backends,
    /// Case-insensitive substring the adapter name must contain.
    pub name: Option<String>,
    /// Which of several equally good adapters (the best device type on the best backend, e.g.
    /// the eight GPUs of a node) to open: number `spread` modulo their count. 0 opens the
    /// first; a rank of a sharded run passes its local rank, so ranks sharing a node spread
    /// over its GPUs.
    pub spread: usize,
}

impl Default for AdapterChoice {
    fn default() -> Self {
        AdapterChoice {
            backends: wgpu::Backends::all(),
            name: None,
            spread: 0,
        }
    }
}

impl AdapterChoice {
    /// Reads `WGPU_BACKEND` (e.g. `vulkan`, `gl`, `metal`, `dx12`) and `WGPU_ADAPTER_NAME`.
    pub fn from_env() -> Self {
        AdapterChoice {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            name: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
            spread: 0,
        }
    }

    /// Overrides from a command line: a backend list (as `WGPU_BACKEND` takes it) and a name.
    pub fn with_overrides(mut self, backend: Option<&str>, name: Option<&str>) -> Result<Self> {
        if let Some(b) = backend {
            let parsed = wgpu::Backends::from_comma_list(b);
            if parsed.is_empty() {
                return Err(Error::param(
                    "gpu-backend",
                    format!("'{b}' names no backend; use vulkan, gl, metal or dx12"),
                ));
            }
            self.backends = parsed;
        }
        if let Some(n) = name {
            self.name = Some(n.to_string());
        }
        Ok(self)
    }
}

/// Preference order: discrete > integrated > virtual > CPU (software) > other.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Index into a best-first list of adapter classes of the `spread`-th adapter (modulo their
/// count) among those of the first one's class; `None` for an empty list.
fn spread_index<C: PartialEq>(classes: &[C], spread: usize) -> Option<usize> {
    let best = classes.first()?;
    let equal = classes.iter().take_while(|c| *c == best).count();
    Some(spread % equal)
}

/// An open device with what the rest of the crate needs to know about it.
pub struct GpuContext {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// Adapter name, backend, driver.
    pub info: wgpu::AdapterInfo,
    /// Limits granted (everything the adapter offers).
    pub limits: wgpu::Limits,
    /// Features enabled (timestamp queries and f16 where offered).
    pub features: wgpu::Features,
}

impl GpuContext {
    /// Lists the adapters a choice can see, best first.
    pub fn adapters(choice: &AdapterChoice) -> Vec<wgpu::Adapter> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = choice.backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters: Vec<wgpu::Adapter> =
            pollster::block_on(instance.enumerate_adapters(choice.backends))
                .into_iter()
                .filter(|a| {
                    choice.name.as_ref().is_none_or(|n| {
                        a.get_info().name.to_lowercase().contains(&n.to_lowercase())
                    })
                })
                .collect();
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (rank(i.device_type), i.backend != wgpu::Backend::Vulkan)
        });
        adapters
    }

    /// The adapter the choice opens: of the best class (the first adapter's device type and
    /// backend), number `choice.spread` modulo the class's size.
    pub fn pick(choice: &AdapterChoice) -> Option<wgpu::Adapter> {
        let mut adapters = Self::adapters(choice);
        let class: Vec<(wgpu::DeviceType, wgpu::Backend)> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                (i.device_type, i.backend)
            })
            .collect();
        let k = spread_index(&class, choice.spread)?;
        Some(adapters.swap_remove(k))
    }

    /// Opens the choice's adapter ([`GpuContext::pick`]), requesting all the limits it offers.
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let adapter = Self::pick(choice).ok_or_else(|| {
            Error::NoAdapter(format!(
                "backends {:?}{}",
                choice.backends,
                choice
                    .name
                    .as_ref()
                    .map(|n| format!(", name containing '{n}'"))
                    .unwrap_or_default()
            ))
        })?;
        let info = adapter.get_info();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("swarmgrad"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::DeviceRequest {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
        })
    }

    /// One line: adapter name, backend, device type, driver.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        )
    }

    /// The limits and features that matter here, one per line.
    pub fn report(&self) -> String {
        let l = &self.limits;
        format!(
            "max storage binding {} MiB, max buffer {} MiB, storage buffers per stage {}, \
             workgroup invocations {}, workgroups per dimension {}, timestamps {}, f16 {}",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            self.features.contains(wgpu::Features::TIMESTAMP_QUERY),
            self.features.contains(wgpu::Features::SHADER_F16),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::spread_index;

    #[test]
    fn spread_cycles_over_the_best_class_only() {
        // Two discrete GPUs of one backend, then an integrated one and a software one.
        let classes = ["dgpu", "dgpu", "igpu", "cpu"];
        let picks: Vec<usize> = (0..5).map(|r| spread_index(&classes, r).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0]);
        assert_eq!(spread_index(&["cpu"], 3), Some(0));
        assert_eq!(spread_index::<&str>(&[], 0), None);
    }
}
