//! The GPU device: adapter choice, the limits a model needs, and the health of the device
//! (lost or failing devices are noticed here so the translator can fall back to the CPU).

use super::kernels::Kernels;
use super::ops::F16Products;
use super::profile::Profiler;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What went wrong on the device since it was opened (first failure kept).
type Failure = Arc<Mutex<Option<String>>>;

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub kernels: Kernels,
    /// Whether the kernels use subgroup operations (the adapter offers them and they were not
    /// turned off).
    pub subgroups: bool,
    /// Whether small tiled products are split along K (`ops::linear`).
    pub split_k: bool,
    /// Which stored forms the matrix products multiply with f16 operands
    /// (`KernelOptions::f16_products`; Off where the adapter lacks shader-f16).
    pub f16_products: F16Products,
    /// Counts and times of the GPU work, when `MARIAN_GPU_PROFILE` asks for them.
    pub profiler: Option<Profiler>,
    failure: Failure,
    /// Steps until a simulated device loss (0: none planned).
    lose_in: AtomicUsize,
}

/// Limits below which no Marian model can run (the kernels' own needs).
fn check_kernel_limits(info: &wgpu::AdapterInfo, l: &wgpu::Limits) -> Result<()> {
    let needs = [
        (
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup,
            256,
        ),
        (
            "maxComputeWorkgroupSizeX",
            l.max_compute_workgroup_size_x,
            256,
        ),
        (
            "maxComputeWorkgroupStorageSize",
            l.max_compute_workgroup_storage_size,
            8192,
        ),
        (
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage,
            6,
        ),
    ];
    for (name, have, need) in needs {
        if have < need {
            return Err(Error::Gpu(format!(
                "GPU adapter '{}' allows {name} = {have}; the kernels need {need}",
                info.name
            )));
        }
    }
    Ok(())
}

/// Which optional kernel paths a context takes; None leaves the choice to the adapter.
#[derive(Debug, Clone, Copy)]
pub struct KernelOptions {
    /// Whether the kernels may use optional adapter features (subgroups, shader-f16) where
    /// offered; without them they need only core WebGPU.
    pub features: bool,
    /// Split small tiled products along K. None: on hardware adapters only (a software
    /// adapter's few CPU cores are kept busy by the tiles alone, and the split's scratch
    /// traffic costs it ~40 %: lavapipe, opus-mt shape, batch 32).
    pub split_k: Option<bool>,
    /// Which stored forms the matrix products multiply with f16 operands (needs shader-f16
    /// and `features`). None: f16-stored matrices on hardware adapters that offer it; Off on
    /// software ones (lavapipe emulates f16 on the CPU).
    pub f16_products: Option<F16Products>,
}

impl KernelOptions {
    /// What `GpuContext::open` takes: every feature, each path chosen by the adapter, unless
    /// the environment says otherwise: `MARIAN_GPU_PLAIN=1` (no optional feature),
    /// `MARIAN_GPU_SPLIT_K=0|1`, `MARIAN_GPU_F16=off|f16|all` (f16 products for no matrix,
    /// f16-stored ones, every one) — to measure or rule out a path.
    pub fn from_env() -> Self {
        let flag = |name: &str| match std::env::var(name).as_deref() {
            Ok("0") => Some(false),
            Ok("1") => Some(true),
            _ => None,
        };
        let plain = std::env::var_os("MARIAN_GPU_PLAIN").is_some_and(|v| !v.is_empty());
        let f16_products = match std::env::var("MARIAN_GPU_F16").as_deref() {
            Ok("off" | "0") => Some(F16Products::Off),
            Ok("f16") => Some(F16Products::F16Weights),
            Ok("all" | "1") => Some(F16Products::All),
            _ => None,
        };
        KernelOptions {
            features: !plain,
            split_k: flag("MARIAN_GPU_SPLIT_K"),
            f16_products,
        }
    }
}

impl GpuContext {
    /// Open the best adapter: a real GPU when there is one, else a software one (lavapipe,
    /// SwiftShader) when `allow_software` is set, with the kernel paths
    /// `KernelOptions::from_env` gives. `MARIAN_GPU_ADAPTER` (native) picks an adapter by a
    /// part of its name.
    pub async fn open(allow_software: bool) -> Result<Arc<Self>> {
        Self::open_with(allow_software, KernelOptions::from_env()).await
    }

    /// `open` with the kernel paths chosen by the caller.
    pub async fn open_with(allow_software: bool, options: KernelOptions) -> Result<Arc<Self>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pick_adapter(&instance, allow_software).await?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        check_kernel_limits(&info, &limits)?;
        let software = is_software_adapter(&info);
        let f16_wanted = options.f16_products.unwrap_or(match software {
            true => F16Products::Off,
            false => F16Products::F16Weights,
        });
        let mut wanted = wgpu::Features::empty();
        if options.features {
            wanted |= wgpu::Features::SUBGROUP;
            if f16_wanted != F16Products::Off {
                wanted |= wgpu::Features::SHADER_F16;
            }
        }
        // Timestamps only for a profile: they change how work is split into passes.
        let profiling = Profiler::wanted();
        let wanted = match profiling {
            Some(true) => wanted | wgpu::Features::TIMESTAMP_QUERY,
            _ => wanted,
        };
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("marian-wasm"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Gpu(format!("GPU adapter '{}' refused a device: {e}", info.name))
            })?;
        let failure: Failure = Arc::new(Mutex::new(None));
        let lost = failure.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut f = lost.lock().unwrap();
            f.get_or_insert(format!("GPU device lost ({reason:?}): {msg}"));
        });
        let failed = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut f = failed.lock().unwrap();
            f.get_or_insert(format!("GPU error: {e}"));
        }));
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        let split_k = options.split_k.unwrap_or(!software);
        let f16_products = match features.contains(wgpu::Features::SHADER_F16) {
            true => f16_wanted,
            false => F16Products::Off,
        };
        let kernels = Kernels::new(&device, subgroups, split_k, f16_products);
        let profiler = profiling.map(|timed| {
            let timed = timed && features.contains(wgpu::Features::TIMESTAMP_QUERY);
            Profiler::new(&device, &queue, timed)
        });
        Ok(Arc::new(GpuContext {
            profiler,
            device,
            queue,
            info,
            limits,
            kernels,
            subgroups,
            split_k,
            f16_products,
            failure,
            lose_in: AtomicUsize::new(0),
        }))
    }

    /// A human-readable adapter description, e.g. "llvmpipe (Vulkan, Cpu, subgroups)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}{}{}{})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            if self.subgroups { ", subgroups" } else { "" },
            if self.split_k { ", split-K" } else { "" },
            match self.f16_products {
                F16Products::Off => "",
                F16Products::F16Weights => ", f16 products for f16 weights",
                F16Products::All => ", f16 products",
            }
        )
    }

    pub fn is_software(&self) -> bool {
        is_software_adapter(&self.info)
    }

    /// Err when the device was lost or reported an error since it was opened.
    pub fn check(&self) -> Result<()> {
        match self.failure.lock().unwrap().as_ref() {
            Some(msg) => Err(Error::DeviceLost(msg.clone())),
            None => Ok(()),
        }
    }

    /// Record a failure noticed by the caller (e.g. a failed read-back).
    pub fn fail(&self, msg: String) -> Error {
        let mut f = self.failure.lock().unwrap();
        Error::DeviceLost(f.get_or_insert(msg).clone())
    }

    /// Destroy the device as a driver reset would: for tests of the CPU fallback.
    pub fn simulate_loss(&self) {
        self.device.destroy();
        let mut f = self.failure.lock().unwrap();
        f.get_or_insert("GPU device lost (simulated)".into());
    }

    /// Lose the device at the `steps`-th decoding step from now: a device lost in the middle
    /// of a translation, for tests of the CPU fallback.
    pub fn simulate_loss_after(&self, steps: usize) {
        self.lose_in.store(steps, Ordering::SeqCst);
    }

    /// Called once per decoding step; carries out a planned loss.
    pub fn tick(&self) {
        let left = self.lose_in.load(Ordering::SeqCst);
        if left > 0 {
            self.lose_in.store(left - 1, Ordering::SeqCst);
            if left == 1 {
                self.simulate_loss();
            }
        }
    }

    /// Refuse a buffer the adapter cannot bind, naming the limit.
    pub fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        let max_bind = self.limits.max_storage_buffer_binding_size;
        if bytes > max_bind {
            return Err(Error::Gpu(format!(
                "{what} needs a {bytes}-byte storage buffer; GPU adapter '{}' allows {max_bind} (maxStorageBufferBindingSize)",
                self.info.name
            )));
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "{what} needs a {bytes}-byte buffer; GPU adapter '{}' allows {} (maxBufferSize)",
                self.info.name, self.limits.max_buffer_size
            )));
        }
        Ok(())
    }
}

/// Whether an adapter emulates a GPU on the CPU (lavapipe, SwiftShader; the browser may not
/// say its device type, so SwiftShader is known by name too).
fn is_software_adapter(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu || info.name.to_lowercase().contains("swiftshader")
}

#[cfg(not(target_arch = "wasm32"))]
async fn pick_adapter(instance: &wgpu::Instance, allow_software: bool) -> Result<wgpu::Adapter> {
    let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    let wanted = std::env::var("MARIAN_GPU_ADAPTER").ok();
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
        wgpu::DeviceType::Cpu => 3,
    };
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let mut usable: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Noop)
        .filter(|a| match &wanted {
            Some(w) => a.get_info().name.to_lowercase().contains(&w.to_lowercase()),
            None => allow_software || a.get_info().device_type != wgpu::DeviceType::Cpu,
        })
        .collect();
    usable.sort_by_key(rank);
    usable.into_iter().next().ok_or_else(|| {
        Error::Gpu(match wanted {
            Some(w) => format!("no GPU adapter named like '{w}' (MARIAN_GPU_ADAPTER); found: {names:?}"),
            None if names.is_empty() => "no GPU adapter found (no Vulkan driver?)".to_string(),
            None => format!("no hardware GPU adapter found (only {names:?}); software adapters are used only when asked for"),
        })
    })
}

#[cfg(target_arch = "wasm32")]
async fn pick_adapter(instance: &wgpu::Instance, allow_software: bool) -> Result<wgpu::Adapter> {
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Gpu(format!("no WebGPU adapter: {e}")))?;
    // A fallback adapter (SwiftShader) emulates the GPU on the CPU, slower than the wasm
    // path: used only when WebGPU is asked for by name.
    let info = adapter.get_info();
    if is_software_adapter(&info) && !allow_software {
        return Err(Error::Gpu(format!(
            "the only WebGPU adapter is a software one ('{}'), slower than the CPU path",
            info.name
        )));
    }
    Ok(adapter)
}
