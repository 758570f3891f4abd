//! Submission of a recording and read-back of its results.

use super::GpuMarian;
use crate::error::Result;
use crate::gpu::recorder::Recorder;

/// A buffer-to-buffer copy recorded after a submission's dispatches.
pub(super) struct BufferCopy<'b> {
    pub from: &'b wgpu::Buffer,
    pub from_offset: u64,
    pub to: &'b wgpu::Buffer,
    pub to_offset: u64,
    pub bytes: u64,
}

impl<'b> BufferCopy<'b> {
    /// The first `bytes` of `from` to the start of `to`.
    pub fn whole(from: &'b wgpu::Buffer, to: &'b wgpu::Buffer, bytes: u64) -> Self {
        BufferCopy {
            from,
            from_offset: 0,
            to,
            to_offset: 0,
            bytes,
        }
    }
}

impl GpuMarian {
    /// Submit recorded work and then `copies` as one command buffer.
    pub(super) fn submit(&self, rec: Recorder<'_>, copies: &[BufferCopy<'_>]) {
        let started = web_time::Instant::now();
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let profiler = self.ctx.profiler.as_ref();
        rec.finish(&self.ctx.queue, &mut encoder, profiler);
        for c in copies {
            encoder.copy_buffer_to_buffer(c.from, c.from_offset, c.to, c.to_offset, c.bytes);
        }
        self.ctx.queue.submit([encoder.finish()]);
        if let Some(p) = profiler {
            p.note_encode(started.elapsed().as_nanos() as u64);
            p.collect(&self.ctx.device);
        }
    }

    /// The first `bytes` of a mappable `buffer`, once the work submitted before is done.
    pub(super) async fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let started = web_time::Instant::now();
        let slice = buffer.slice(..bytes);
        // wgpu's map callback to this future; needs no executor.
        let (done, wait) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            // The receiver is gone only if this future was dropped: nothing left to tell.
            let _ = done.send(r);
        });
        // Natively, wait on the device here, so the future never suspends. With a device shared
        // by several threads, another thread's poll may be the one running our callback: poll
        // until it has run.
        #[cfg(not(target_arch = "wasm32"))]
        let mapped = {
            let mut wait = wait;
            loop {
                self.ctx
                    .device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| self.ctx.fail(format!("GPU device stopped answering: {e}")))?;
                match wait.try_recv() {
                    Ok(Some(v)) => break Ok(v),
                    Ok(None) => std::thread::yield_now(),
                    Err(canceled) => break Err(canceled),
                }
            }
        };
        #[cfg(target_arch = "wasm32")]
        let mapped = wait.await;
        mapped
            .map_err(|_| {
                self.ctx
                    .fail("GPU read-back was dropped by the device".into())
            })?
            .map_err(|e| self.ctx.fail(format!("GPU read-back failed: {e}")))?;
        if let Some(p) = &self.ctx.profiler {
            p.note_read_back(started.elapsed().as_nanos() as u64);
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| self.ctx.fail(format!("GPU read-back failed: {e}")))?
            .to_vec();
        buffer.unmap();
        self.ctx.check()?;
        Ok(data)
    }
}
