//! The recorder that turns a forward pass into one compute pass of dispatches, and the
//! [`Program`] that keeps, between recordings, what a recording can reuse: its uniform buffer
//! and its bind groups.

use super::kernels::Kernel;
use super::ops::Bindings;
use super::profile::Profiler;
use bytemuck::Pod;

/// Bytes between two dispatches' parameters in the uniform buffer (WebGPU's
/// minUniformBufferOffsetAlignment at its largest).
pub const PARAM_SLOT: u64 = 256;

/// Workgroup counts for `n` workgroups along one axis, folded into y past the 65535 limit
/// (kernels recover the index as `wid.x + wid.y * num_workgroups.x`).
pub fn grid(n: usize) -> [u32; 3] {
    const MAX: usize = 65535;
    if n <= MAX {
        [n.max(1) as u32, 1, 1]
    } else {
        [MAX as u32, n.div_ceil(MAX) as u32, 1]
    }
}

/// A bind group made for dispatch `i` of a recording, with what it was made for.
struct Cached {
    /// The kernel's address (compared, never followed).
    kernel: usize,
    params_len: u64,
    buffers: Vec<wgpu::Buffer>,
    group: wgpu::BindGroup,
}

fn address(kernel: &Kernel) -> usize {
    kernel as *const Kernel as usize
}

/// What a sequence of recordings shares: the uniform buffer holding each dispatch's
/// parameters (one [`PARAM_SLOT`] per dispatch), grown when a recording has more dispatches
/// than it holds, and the bind groups, made once and reused: dispatch `i` gets the bind group
/// made for dispatch `i` the last time, as long as it binds the same kernel and buffers.
#[derive(Default)]
pub struct Program {
    params: Option<wgpu::Buffer>,
    /// Dispatches `params` holds.
    slots: usize,
    cached: Vec<Cached>,
}

impl Program {
    /// Room for `dispatches`: a larger uniform buffer when needed (its bind groups are then
    /// stale and dropped).
    fn reserve(&mut self, device: &wgpu::Device, dispatches: usize) {
        if dispatches <= self.slots {
            return;
        }
        self.params = Some(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: dispatches as u64 * PARAM_SLOT,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }));
        self.slots = dispatches;
        self.cached.clear();
    }
}

/// One dispatch as recorded.
struct Op<'k> {
    kernel: &'k Kernel,
    params_len: u64,
    buffers: Vec<(u32, wgpu::Buffer)>,
    workgroups: [u32; 3],
}

impl Op<'_> {
    /// The dispatch in `pass`, with its bind group.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, group: &wgpu::BindGroup) {
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// One recording: dispatches in order, their parameters written with one buffer write.
pub struct Recorder<'a> {
    device: &'a wgpu::Device,
    program: &'a mut Program,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
}

impl<'a> Recorder<'a> {
    pub fn new(device: &'a wgpu::Device, program: &'a mut Program) -> Self {
        Recorder {
            device,
            program,
            params: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// The device the recording is for (ops make their scratch buffers on it).
    pub fn device(&self) -> &'a wgpu::Device {
        self.device
    }

    /// Queue one dispatch of `kernel` (compiled with `B::LAYOUT`) with `params` at binding 0
    /// and `bindings`' buffers at theirs.
    pub fn dispatch<P: Pod, B: Bindings>(
        &mut self,
        kernel: &'a Kernel,
        params: &P,
        bindings: &B,
        workgroups: [u32; 3],
    ) {
        let bytes = bytemuck::bytes_of(params);
        debug_assert!(bytes.len() as u64 <= PARAM_SLOT);
        let i = self.ops.len();
        self.params.extend_from_slice(bytes);
        self.params.resize((i + 1) * PARAM_SLOT as usize, 0);
        self.ops.push(Op {
            kernel,
            params_len: bytes.len() as u64,
            buffers: bindings
                .buffers()
                .into_iter()
                .map(|(n, b)| (n, b.clone()))
                .collect(),
            workgroups,
        });
    }

    /// Encode everything recorded into `encoder` (parameters are written to the queue first).
    /// With a `profiler`, each dispatch is noted there, and when it times them each gets a
    /// timed pass of its own.
    pub fn finish(
        self,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        profiler: Option<&Profiler>,
    ) {
        if self.ops.is_empty() {
            return;
        }
        let program = self.program;
        program.reserve(self.device, self.ops.len());
        let params = program.params.as_ref().expect("reserved");
        for (i, op) in self.ops.iter().enumerate() {
            let buffers: Vec<wgpu::Buffer> = op.buffers.iter().map(|(_, b)| b.clone()).collect();
            let reuse = program.cached.get(i).is_some_and(|c| {
                c.kernel == address(op.kernel)
                    && c.params_len == op.params_len
                    && c.buffers == buffers
            });
            if reuse {
                continue;
            }
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: params,
                    offset: i as u64 * PARAM_SLOT,
                    size: wgpu::BufferSize::new(op.params_len),
                }),
            }];
            entries.extend(op.buffers.iter().map(|(n, b)| wgpu::BindGroupEntry {
                binding: *n,
                resource: b.as_entire_binding(),
            }));
            let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &op.kernel.layout,
                entries: &entries,
            });
            let made = Cached {
                kernel: address(op.kernel),
                params_len: op.params_len,
                buffers,
                group,
            };
            if i < program.cached.len() {
                program.cached[i] = made;
            } else {
                program.cached.push(made);
            }
        }
        queue.write_buffer(params, 0, &self.params);
        if let Some(profiler) = profiler {
            for op in &self.ops {
                let [x, y, z] = op.workgroups;
                profiler.note_dispatch(
                    format!("{} {x}x{y}x{z}", op.kernel.name),
                    u64::from(x) * u64::from(y) * u64::from(z),
                );
            }
        }
        if let Some(profiler) = profiler.filter(|p| p.timed()) {
            for (i, op) in self.ops.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: profiler.pass_timestamps(i),
                });
                op.encode(&mut pass, &program.cached[i].group);
            }
            profiler.resolve(encoder);
            return;
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        for (i, op) in self.ops.iter().enumerate() {
            op.encode(&mut pass, &program.cached[i].group);
        }
    }
}
