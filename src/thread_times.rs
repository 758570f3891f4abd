//! How much CPU this process's threads got, and how long they waited for one: the measure that
//! tells a thread pool that wastes cycles (spinning, stalled joins) from a machine that simply
//! has other work to run. Read from Linux's per-thread scheduler statistics
//! (`/proc/self/task/*/schedstat`: nanoseconds on a CPU, nanoseconds runnable but waiting on a
//! run queue; see the kernel's Documentation/scheduler/sched-stats.rst). Threads that have
//! exited are not counted, so compare readings of a process whose pool lives throughout.

/// Seconds this process's live threads have spent on a CPU and waiting for one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadTimes {
    /// Seconds running on a CPU, summed over threads.
    pub on_cpu: f64,
    /// Seconds runnable but waiting on a run queue (the CPU was busy with something else).
    pub waiting: f64,
}

impl ThreadTimes {
    /// The times since `earlier` (a reading of the same process).
    pub fn since(self, earlier: ThreadTimes) -> ThreadTimes {
        ThreadTimes {
            on_cpu: self.on_cpu - earlier.on_cpu,
            waiting: self.waiting - earlier.waiting,
        }
    }
}

/// A reading now; `None` where the scheduler's statistics cannot be read (not Linux, a kernel
/// without schedstat, WebAssembly).
pub fn now() -> Option<ThreadTimes> {
    #[cfg(target_os = "linux")]
    {
        let mut total = ThreadTimes::default();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
                continue; // the thread ended between the listing and the read
            };
            let mut fields = text.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(run)), Some(Ok(wait))) = (fields.next(), fields.next()) else {
                return None;
            };
            total.on_cpu += run as f64 * 1e-9;
            total.waiting += wait as f64 * 1e-9;
        }
        Some(total)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn busy_work_shows_as_time_on_a_cpu() {
        let before = super::now().expect("schedstat is readable on Linux");
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = super::now().unwrap().since(before);
        assert!(spent.on_cpu >= 0.03, "{spent:?}");
        assert!(spent.waiting >= 0.0, "{spent:?}");
    }
}
