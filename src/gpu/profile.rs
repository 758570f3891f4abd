//! A profile of the GPU work (issue 20: "profile first"): how many dispatches, submissions and
//! read-backs a decoding step takes, and, where the adapter offers timestamp queries, how long
//! each kernel ran on the GPU. Turned on natively by `MARIAN_GPU_PROFILE=1` (what
//! `marian-wasm bench --profile` sets) or `=counts` (`--profile counts`); off, it costs nothing.
//!
//! Timing puts each dispatch in a compute pass of its own with WebGPU's pass timestamps
//! (`TIMESTAMP_QUERY`: beginning and end of the pass), and waits for every submission, so the
//! totals are GPU time per kernel, not the wall time of a step. `counts` leaves the work as it
//! runs unprofiled (one pass, no waits) and measures the host's side instead: time spent
//! encoding and submitting, and time waiting in read-backs. Meant for one translation at a
//! time (`marian-wasm bench`): submissions from several threads at once would mix their
//! dispatches' labels.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Timestamp queries one submission can hold (two per dispatch).
const QUERIES: u32 = 4096;

/// What one kernel (at one grid shape) took over the profiled work.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KernelTotals {
    /// The kernel's file and weight format, and its grid, e.g. `matmul_tiled.wgsl[q8] 8x1x1`.
    pub kernel: String,
    pub dispatches: u64,
    /// Workgroups over all its dispatches.
    pub workgroups: u64,
    /// GPU nanoseconds over all its dispatches (None: the adapter has no timestamp queries).
    pub gpu_ns: Option<u64>,
}

/// The whole profile since the last reset.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Profile {
    /// Decoding steps (`Backend::step` calls).
    pub steps: u64,
    pub submissions: u64,
    /// Maps of a result buffer (each waits for the GPU to finish).
    pub read_backs: u64,
    /// Host nanoseconds spent encoding and submitting (bind groups, passes, `queue.submit`):
    /// time the GPU may sit idle while a step is being prepared.
    pub encode_ns: u64,
    /// Host nanoseconds waiting in read-backs (the GPU's work plus the map's round trip; with
    /// GPU times the waiting happened at each submission instead).
    pub wait_ns: u64,
    pub dispatches: u64,
    /// GPU nanoseconds of all dispatches (None: no timestamp queries).
    pub gpu_ns: Option<u64>,
    /// Per kernel and grid, the longest first.
    pub kernels: Vec<KernelTotals>,
}

/// What is counted as it happens: the profile's per-step counters (its `kernels`, `dispatches`
/// and `gpu_ns` are filled by `report`), and per kernel label (dispatches, workgroups, GPU ns).
#[derive(Default)]
struct Totals {
    counts: Profile,
    kernels: BTreeMap<String, (u64, u64, u64)>,
}

/// The timestamp queries of one submission and the buffers they are read through.
struct Timestamps {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readable: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
}

/// The profiler of one device.
pub struct Profiler {
    timestamps: Option<Timestamps>,
    totals: Mutex<Totals>,
    /// Labels of the dispatches recorded since the last `collect`, in order.
    pending: Mutex<Vec<(String, u64)>>,
}

impl Profiler {
    /// What `MARIAN_GPU_PROFILE` asks for (never in the browser): None, Some(true) for GPU
    /// times (any value but `counts`), Some(false) for counts and host times only.
    pub fn wanted() -> Option<bool> {
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        match std::env::var("MARIAN_GPU_PROFILE").as_deref() {
            Err(_) | Ok("") | Ok("0") => None,
            Ok("counts") => Some(false),
            Ok(_) => Some(true),
        }
    }

    /// Whether each dispatch is timed (in a pass of its own).
    pub fn timed(&self) -> bool {
        self.timestamps.is_some()
    }

    /// A profiler for `device`; with `timed` (the device was opened with `TIMESTAMP_QUERY`)
    /// it also times each dispatch.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, timed: bool) -> Self {
        let timestamps = timed.then(|| {
            let bytes = u64::from(QUERIES) * 8;
            Timestamps {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: QUERIES,
                }),
                resolved: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("profile resolved"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                readable: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("profile read-back"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                period_ns: f64::from(queue.get_timestamp_period()),
            }
        });
        Profiler {
            timestamps,
            totals: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    /// The pass timestamps for the `i`-th dispatch of a recording (None: untimed, or past
    /// what one submission can hold).
    pub fn pass_timestamps(&self, i: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let t = self.timestamps.as_ref()?;
        let first = u32::try_from(2 * i).ok().filter(|&q| q + 1 < QUERIES)?;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &t.queries,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        })
    }

    /// Note a recorded dispatch (its label and workgroup count), in recording order.
    pub fn note_dispatch(&self, label: String, workgroups: u64) {
        self.pending.lock().unwrap().push((label, workgroups));
    }

    /// After the dispatches of a recording were encoded: resolve their timestamps into the
    /// readable buffer (same encoder, so they come back with the submission).
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let Some(t) = &self.timestamps else { return };
        let n = (2 * self.pending.lock().unwrap().len()).min(QUERIES as usize) as u32;
        if n == 0 {
            return;
        }
        encoder.resolve_query_set(&t.queries, 0..n, &t.resolved, 0);
        encoder.copy_buffer_to_buffer(&t.resolved, 0, &t.readable, 0, u64::from(n) * 8);
    }

    /// After a submission: wait for it, read its timestamps and add them to the totals.
    pub fn collect(&self, device: &wgpu::Device) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut totals = self.totals.lock().unwrap();
        totals.counts.submissions += 1;
        let times = self.timestamps.as_ref().and_then(|t| {
            let n = (2 * pending.len()).min(QUERIES as usize);
            if n == 0 {
                return None;
            }
            let slice = t.readable.slice(..(n as u64) * 8);
            slice.map_async(wgpu::MapMode::Read, |_| {});
            device.poll(wgpu::PollType::wait_indefinitely()).ok()?;
            let ticks: Vec<u64> = bytemuck::cast_slice(&slice.get_mapped_range().ok()?).to_vec();
            t.readable.unmap();
            Some(
                ticks
                    .chunks_exact(2)
                    .map(|p| (p[1].saturating_sub(p[0]) as f64 * t.period_ns) as u64)
                    .collect::<Vec<u64>>(),
            )
        });
        for (i, (label, workgroups)) in pending.into_iter().enumerate() {
            let e = totals.kernels.entry(label).or_default();
            e.0 += 1;
            e.1 += workgroups;
            e.2 += times.as_ref().and_then(|t| t.get(i)).copied().unwrap_or(0);
        }
    }

    /// Count a decoding step.
    pub fn note_step(&self) {
        self.totals.lock().unwrap().counts.steps += 1;
    }

    /// Count a read-back of results that waited `wait_ns`.
    pub fn note_read_back(&self, wait_ns: u64) {
        let counts = &mut self.totals.lock().unwrap().counts;
        counts.read_backs += 1;
        counts.wait_ns += wait_ns;
    }

    /// Add host time spent encoding and submitting one submission.
    pub fn note_encode(&self, encode_ns: u64) {
        self.totals.lock().unwrap().counts.encode_ns += encode_ns;
    }

    /// Forget everything counted so far (e.g. after a warm-up).
    pub fn reset(&self) {
        *self.totals.lock().unwrap() = Totals::default();
    }

    /// The profile since the last reset.
    pub fn report(&self) -> Profile {
        let t = self.totals.lock().unwrap();
        let timed = self.timestamps.is_some();
        let mut kernels: Vec<KernelTotals> = t
            .kernels
            .iter()
            .map(|(k, &(d, w, ns))| KernelTotals {
                kernel: k.clone(),
                dispatches: d,
                workgroups: w,
                gpu_ns: timed.then_some(ns),
            })
            .collect();
        kernels.sort_by_key(|k| std::cmp::Reverse((k.gpu_ns.unwrap_or(0), k.dispatches)));
        Profile {
            dispatches: kernels.iter().map(|k| k.dispatches).sum(),
            gpu_ns: timed.then(|| kernels.iter().filter_map(|k| k.gpu_ns).sum()),
            kernels,
            ..t.counts.clone()
        }
    }
}
