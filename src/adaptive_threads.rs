//! How many threads a CPU decoding step runs on: chosen by measuring steps, not assumed.
//!
//! A decoding step is a few dozen fork-joins (one per product, per attention pass, per row scan).
//! On a quiet machine each thread of the pool has a core and the joins are cheap. Where other
//! processes want the cores, the OS preempts pool threads in the middle of their tasks, and every
//! join waits for the preempted one to be scheduled again: measured on a 2-core VM with two
//! CPU-bound processes beside it, batch 16 ran at 442 tokens/s on 2 threads and 708 on one. On a
//! large machine the reverse question arises: 16 threads can be slower than 8 for a small batch.
//!
//! So the thread count is a choice among the *levels* 1, 2, 4, …, N (N = rayon's global pool, set
//! by `RAYON_NUM_THREADS` or `--threads`), made separately for each kind of step and batch size
//! (rows rounded down to a power of two), by hill climbing on measured wall time per row:
//! every so often a step runs one level up or down (a *probe*); the probe's level is kept when it
//! is at least [`MARGIN`] faster than the current one's recent average. Probes that lose come
//! less often (the interval doubles, up to [`MAX_INTERVAL`] steps), so a quiet machine pays well
//! under 1 % for them; a current level whose steps slow down by [`SLOWDOWN`] against their own
//! long-run average (the machine became busy) probes at once. Levels below N run on their own
//! rayon pools, built the first time they are probed.
//!
//! The output does not depend on the level: every product and row scan gives the same bits on any
//! number of threads (`tests/cli.rs` checks 1, 2, 4 and 16 threads, and a level changed at every
//! step). `MARIAN_ADAPTIVE_THREADS=off` always uses all N threads (the behaviour before this
//! module; for side-by-side benchmarks); `trace` reports each change of level on stderr; `cycle`
//! moves to the next level at every step (tests).
//!
//! In WebAssembly the pool is wasm-bindgen-rayon's Web Workers, and a smaller pool cannot be
//! spawned from here: the ladder there has two levels, the whole pool and one thread (the step
//! runs unsplit on one of the pool's workers, as a row shard does). Measured in headless
//! Chromium on a 2-core VM (2026-12-04, same run): batch 1 did 263.0 / 260.3 tokens/s on one
//! thread and 216.5 / 237.6 on two, batch 16 the reverse (310.2 / 319.9 against 471.2 / 559.0).

/// Which part of a decoding step's work a measurement belongs to: their costs per row differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Greedy's step: the best token of each row only.
    Greedy,
    /// A step that scores every word (beam search, sampling-free k-best).
    Scores,
    /// A step whose token is forced: the state advances, no logits.
    Forced,
}

/// A probe is kept when its steps are at least this much faster (fraction of the current level's
/// time) — below it, noise between steps would make the choice flap.
pub const MARGIN: f64 = 0.10;
/// Steps between probes after one that won, and the first interval of a new batch size.
pub const MIN_INTERVAL: u32 = 16;
/// The longest interval between probes, reached by doubling after each probe that lost.
pub const MAX_INTERVAL: u32 = 1024;
/// Steps a probe runs; the first warms the other pool's threads and is not counted.
pub const PROBE_STEPS: u32 = 2;
/// A current level whose recent steps are this much slower than its long-run average probes at
/// once (the machine's load changed).
pub const SLOWDOWN: f64 = 0.30;

/// What the ladder knows about one kind of step at one batch size.
#[derive(Debug, Clone)]
struct Class {
    /// Index of the level steps run on.
    current: usize,
    /// Per level: recent seconds per row (fast average), `None` before the first measurement.
    recent: Vec<Option<f64>>,
    /// The current level's long-run seconds per row (slow average), reset when it changes.
    long_run: Option<f64>,
    /// Steps since the last probe ended.
    since_probe: u32,
    /// Steps to wait before the next probe.
    interval: u32,
    /// The probe running now: its level index and the steps it has left.
    probe: Option<(usize, u32)>,
    /// Direction of the next probe when both neighbours exist.
    probe_up: bool,
    /// Steps counted by the probe so far (its mean seconds per row, over them).
    probe_sum: f64,
    probe_count: u32,
}

/// The hill-climbing choice of a thread level per step class; pure bookkeeping (no threads, no
/// clock), so that its decisions are unit-tested with made-up timings.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Thread counts, ascending: 1, 2, 4, …, `max`.
    levels: Vec<usize>,
    classes: std::collections::HashMap<(StepKind, u32), Class>,
    /// The level most recently chosen for any class: where a new class starts.
    preferred: usize,
    cycle: bool,
}

impl Ladder {
    /// A ladder up to `max` threads (≥ 1), starting on all of them.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let mut levels: Vec<usize> = std::iter::successors(Some(1usize), |&l| Some(l * 2))
            .take_while(|&l| l < max)
            .collect();
        levels.push(max);
        let preferred = levels.len() - 1;
        Ladder {
            levels,
            classes: Default::default(),
            preferred,
            cycle: false,
        }
    }

    /// A ladder that moves to the next level at every step (tests of level independence).
    pub fn cycling(max: usize) -> Self {
        Ladder {
            cycle: true,
            ..Ladder::new(max)
        }
    }

    /// The same ladder with only its first and last levels (1 and `max` threads).
    pub fn only_ends(mut self) -> Self {
        if self.levels.len() > 2 {
            self.levels = vec![1, self.levels[self.levels.len() - 1]];
            self.preferred = 1;
        }
        self
    }

    /// The thread counts this ladder chooses among, ascending.
    pub fn levels(&self) -> &[usize] {
        &self.levels
    }

    fn class(&mut self, kind: StepKind, rows: usize) -> &mut Class {
        let n = self.levels.len();
        let preferred = self.preferred;
        self.classes
            .entry((kind, rows.max(1).ilog2()))
            .or_insert_with(|| Class {
                current: preferred,
                recent: vec![None; n],
                long_run: None,
                since_probe: 0,
                interval: MIN_INTERVAL,
                probe: None,
                probe_up: false,
                probe_sum: 0.0,
                probe_count: 0,
            })
    }

    /// The thread count the next step of this kind and batch size (`rows` ≥ 1) runs on.
    pub fn choose(&mut self, kind: StepKind, rows: usize) -> usize {
        let n = self.levels.len();
        if self.cycle {
            let c = self.class(kind, rows);
            c.current = (c.current + 1) % n;
            let level = c.current;
            return self.levels[level];
        }
        let c = self.class(kind, rows);
        if c.probe.is_none() && n > 1 && c.since_probe >= c.interval {
            let up = if c.current == 0 {
                true
            } else if c.current + 1 == n {
                false
            } else {
                c.probe_up
            };
            c.probe_up = !up;
            let level = if up { c.current + 1 } else { c.current - 1 };
            c.probe = Some((level, PROBE_STEPS));
            c.probe_sum = 0.0;
            c.probe_count = 0;
        }
        let level = c.probe.map_or(c.current, |p| p.0);
        self.levels[level]
    }

    /// Records that a step of this kind and batch size ran on `threads` threads (as chosen by
    /// [`Ladder::choose`]) in `seconds` of wall time. Returns the new thread count when this
    /// ended a probe that won.
    pub fn record(
        &mut self,
        kind: StepKind,
        rows: usize,
        threads: usize,
        seconds: f64,
    ) -> Option<usize> {
        if self.cycle {
            return None;
        }
        let level = self.levels.iter().position(|&l| l == threads)?;
        let per_row = seconds / rows.max(1) as f64;
        let c = self.class(kind, rows);
        let mut chosen = None;
        match c.probe {
            Some((p, left)) if p == level => {
                if left < PROBE_STEPS {
                    c.probe_sum += per_row;
                    c.probe_count += 1;
                }
                if left > 1 {
                    c.probe = Some((p, left - 1));
                } else {
                    c.probe = None;
                    c.since_probe = 0;
                    let probed = c.probe_sum / c.probe_count.max(1) as f64;
                    c.recent[p] = Some(probed);
                    let current = c.recent[c.current].unwrap_or(f64::INFINITY);
                    if probed < current * (1.0 - MARGIN) {
                        c.current = p;
                        c.long_run = Some(probed);
                        c.interval = MIN_INTERVAL;
                        chosen = Some(p);
                    } else {
                        c.interval = (c.interval * 2).min(MAX_INTERVAL);
                    }
                }
            }
            _ if level == c.current => {
                let recent = ema(c.recent[level], per_row, 0.25);
                c.recent[level] = Some(recent);
                let long_run = ema(c.long_run, per_row, 0.02);
                c.long_run = Some(long_run);
                c.since_probe += 1;
                if recent > long_run * (1.0 + SLOWDOWN) {
                    // The machine changed: look around now, and learn the new normal.
                    c.since_probe = c.interval;
                    c.interval = MIN_INTERVAL;
                    c.long_run = Some(recent);
                }
            }
            _ => {}
        }
        if let Some(p) = chosen {
            self.preferred = p;
        }
        chosen.map(|p| self.levels[p])
    }
}

/// Exponential moving average with weight `alpha` on the new value.
fn ema(old: Option<f64>, new: f64, alpha: f64) -> f64 {
    old.map_or(new, |o| o + alpha * (new - o))
}

/// Runs `f` — one decoding step of `rows` rows, or (`kind` `None`) the encoder — on as many of
/// rayon's threads as the ladder chooses, as one job of that pool: the products and row scans
/// inside then split among its threads by work stealing instead of each being handed from the
/// calling thread to the pool and back. On one thread, or already on a pool, `f` runs here.
pub fn run_step<R: Send>(kind: Option<StepKind>, rows: usize, f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() == 1 || rayon::current_thread_index().is_some() {
        return f();
    }
    runner::run_step(kind, rows, f)
}

/// The ladder's state and where a level's step runs: natively on pools of its own, in
/// WebAssembly on the one pool of Web Workers.
mod runner {
    use super::{Ladder, StepKind};
    use std::sync::{Mutex, OnceLock};

    struct Shared {
        ladder: Ladder,
        /// Pools for the levels below the global pool's size, built when first used.
        #[cfg(not(target_arch = "wasm32"))]
        pools: std::collections::HashMap<usize, std::sync::Arc<rayon::ThreadPool>>,
    }

    enum Mode {
        /// The ladder; `true`: each change of level is reported on stderr.
        Adaptive(Mutex<Shared>, bool),
        AllThreads,
    }

    /// The levels a pool of `max` threads chooses among: natively 1, 2, 4, …, `max`; in
    /// WebAssembly one thread (the step unsplit on the pool thread that runs it) or all of them,
    /// because a smaller pool of Web Workers cannot be spawned from here.
    fn ladder(max: usize, cycling: bool) -> Ladder {
        let ladder = if cycling {
            Ladder::cycling(max)
        } else {
            Ladder::new(max)
        };
        #[cfg(target_arch = "wasm32")]
        let ladder = ladder.only_ends();
        ladder
    }

    fn mode() -> &'static Mode {
        static MODE: OnceLock<Mode> = OnceLock::new();
        MODE.get_or_init(|| {
            let max = rayon::current_num_threads();
            let setting = std::env::var("MARIAN_ADAPTIVE_THREADS");
            let ladder = match setting.as_deref() {
                Ok("off") | Ok("0") => return Mode::AllThreads,
                Ok("cycle") => ladder(max, true),
                _ => ladder(max, false),
            };
            Mode::Adaptive(
                Mutex::new(Shared {
                    ladder,
                    #[cfg(not(target_arch = "wasm32"))]
                    pools: Default::default(),
                }),
                setting.as_deref() == Ok("trace"),
            )
        })
    }

    pub(super) fn run_step<R: Send>(
        kind: Option<StepKind>,
        rows: usize,
        f: impl FnOnce() -> R + Send,
    ) -> R {
        let max = rayon::current_num_threads();
        let Mode::Adaptive(shared, trace) = mode() else {
            return on_global_pool(f);
        };
        // The encoder runs on the level its batch's greedy steps run on; only steps are timed
        // (an encoder pass per batch is too rare to learn from).
        let (threads, level) = {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            let threads = s.ladder.choose(kind.unwrap_or(StepKind::Greedy), rows);
            let level = level(&mut s, threads, max);
            (threads, level)
        };
        let t0 = web_time::Instant::now();
        let out = level.run(f);
        if let Some(kind) = kind {
            let seconds = t0.elapsed().as_secs_f64();
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            let changed = s.ladder.record(kind, rows, threads, seconds);
            if let (Some(to), true) = (changed, trace) {
                log(&format!(
                    "marian-wasm: {kind:?} steps of {rows} rows now on {to} threads"
                ));
            }
        }
        out
    }

    /// Where a step on a level runs.
    enum Level {
        /// The whole global pool.
        All,
        /// A pool of fewer threads.
        #[cfg(not(target_arch = "wasm32"))]
        Pool(std::sync::Arc<rayon::ThreadPool>),
        /// One thread of the global pool, nothing split (`crate::row_shards::stepping_shard`).
        #[cfg(target_arch = "wasm32")]
        Unsplit,
    }

    impl Level {
        fn run<R: Send>(self, f: impl FnOnce() -> R + Send) -> R {
            match self {
                Level::All => on_global_pool(f),
                #[cfg(not(target_arch = "wasm32"))]
                Level::Pool(pool) => pool.install(f),
                #[cfg(target_arch = "wasm32")]
                Level::Unsplit => on_global_pool(|| crate::row_shards::stepping_shard(true, f)),
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn level(s: &mut Shared, threads: usize, max: usize) -> Level {
        if threads >= max {
            return Level::All;
        }
        let pool = s
            .pools
            .entry(threads)
            .or_insert_with(|| std::sync::Arc::new(build_pool(threads)))
            .clone();
        Level::Pool(pool)
    }

    #[cfg(target_arch = "wasm32")]
    fn level(_: &mut Shared, threads: usize, max: usize) -> Level {
        if threads >= max {
            Level::All
        } else {
            Level::Unsplit
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn build_pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("marian-{threads}-{i}"))
            .build()
            .expect("a rayon pool of a few threads builds")
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn log(line: &str) {
        eprintln!("{line}");
    }

    #[cfg(target_arch = "wasm32")]
    fn log(line: &str) {
        web_sys::console::log_1(&line.into());
    }

    fn on_global_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        let mut out = None;
        rayon::scope(|_| out = Some(f()));
        out.expect("rayon::scope ran its closure")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `steps` steps whose seconds per row at each thread count come from `cost`; returns
    /// the thread counts chosen.
    fn drive(
        ladder: &mut Ladder,
        rows: usize,
        steps: usize,
        mut cost: impl FnMut(usize) -> f64,
    ) -> Vec<usize> {
        (0..steps)
            .map(|_| {
                let t = ladder.choose(StepKind::Greedy, rows);
                ladder.record(StepKind::Greedy, rows, t, cost(t) * rows as f64);
                t
            })
            .collect()
    }

    #[test]
    fn the_ends_alone_are_one_thread_and_the_pool() {
        assert_eq!(Ladder::new(8).only_ends().levels(), &[1, 8]);
        assert_eq!(Ladder::new(2).only_ends().levels(), &[1, 2]);
        assert_eq!(Ladder::new(1).only_ends().levels(), &[1]);
        let mut l = Ladder::new(8).only_ends();
        assert_eq!(l.choose(StepKind::Greedy, 1), 8, "starts on the whole pool");
        // One thread 1.2× as fast: the ladder moves there.
        let chosen = drive(&mut l, 1, 200, |t| if t == 1 { 1.0 } else { 1.2 });
        let on_1 = chosen[100..].iter().filter(|&&t| t == 1).count();
        assert!(
            on_1 >= 95,
            "{on_1} of 100 steps on one thread (the rest probes)"
        );
    }

    #[test]
    fn levels_are_powers_of_two_up_to_the_pool() {
        assert_eq!(Ladder::new(1).levels(), &[1]);
        assert_eq!(Ladder::new(2).levels(), &[1, 2]);
        assert_eq!(Ladder::new(6).levels(), &[1, 2, 4, 6]);
        assert_eq!(Ladder::new(16).levels(), &[1, 2, 4, 8, 16]);
    }

    #[test]
    fn a_quiet_machine_keeps_all_threads_and_rarely_probes() {
        let mut l = Ladder::new(2);
        // Two threads 1.5× as fast as one.
        let chosen = drive(&mut l, 16, 4000, |t| if t == 2 { 1.0 } else { 1.5 });
        assert_eq!(chosen[0], 2, "starts on all threads");
        let off = chosen.iter().filter(|&&t| t != 2).count();
        // Backoff: after the first few probes, one every MAX_INTERVAL steps.
        assert!(off < 60, "{off} steps of 4000 probed one thread");
        assert_eq!(*chosen.last().unwrap(), 2);
    }

    #[test]
    fn a_busy_machine_moves_to_fewer_threads_and_back_when_it_is_quiet() {
        let mut l = Ladder::new(2);
        drive(&mut l, 16, 200, |t| if t == 2 { 1.0 } else { 1.5 });
        // Busy: two threads now 1.6× slower than one.
        let busy = drive(&mut l, 16, 300, |t| if t == 2 { 2.4 } else { 1.5 });
        let on_1 = busy[100..].iter().filter(|&&t| t == 1).count();
        assert!(on_1 > 190, "{on_1} of 200 steps on one thread");
        // Quiet again: the periodic probe finds two threads faster.
        let quiet = drive(&mut l, 16, 2000, |t| if t == 2 { 1.0 } else { 1.5 });
        let on_2 = quiet[1000..].iter().filter(|&&t| t == 2).count();
        assert!(on_2 > 990, "{on_2} of 1000 steps on two threads");
    }

    #[test]
    fn many_threads_climb_down_to_the_fastest_level() {
        let mut l = Ladder::new(16);
        // Batch 1 on a large machine: 4 threads best, 16 worst.
        let cost = |t: usize| match t {
            1 => 3.0,
            2 => 1.8,
            4 => 1.0,
            8 => 1.3,
            _ => 2.0,
        };
        let chosen = drive(&mut l, 1, 3000, cost);
        let settled = &chosen[1500..];
        let on_4 = settled.iter().filter(|&&t| t == 4).count();
        assert!(
            on_4 > settled.len() * 97 / 100,
            "{on_4} of {}",
            settled.len()
        );
    }

    #[test]
    fn noise_within_the_margin_does_not_move_the_choice() {
        let mut l = Ladder::new(2);
        let mut x = 1u64;
        let chosen = drive(&mut l, 8, 3000, move |t| {
            // ±4 % noise on equal costs: no probe wins by 10 %.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = ((x >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.08;
            let _ = t;
            1.0 + jitter
        });
        assert!(chosen[100..].iter().filter(|&&t| t == 2).count() > 2800);
    }

    #[test]
    fn batch_sizes_are_chosen_separately() {
        let mut l = Ladder::new(2);
        // One row: one thread is best; 16 rows: two.
        for _ in 0..400 {
            let t = l.choose(StepKind::Greedy, 1);
            l.record(StepKind::Greedy, 1, t, if t == 1 { 1.0 } else { 2.0 });
            let t = l.choose(StepKind::Greedy, 16);
            l.record(
                StepKind::Greedy,
                16,
                t,
                16.0 * if t == 2 { 1.0 } else { 2.0 },
            );
        }
        assert_eq!(l.choose(StepKind::Greedy, 1), 1);
        assert_eq!(l.choose(StepKind::Greedy, 16), 2);
    }

    #[test]
    fn cycling_visits_every_level() {
        let mut l = Ladder::cycling(4);
        let seen: Vec<usize> = (0..6).map(|_| l.choose(StepKind::Scores, 4)).collect();
        assert_eq!(seen, [1, 2, 4, 1, 2, 4]);
    }
}
