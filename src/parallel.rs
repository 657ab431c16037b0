//! Workers that meet at barriers, and how many of them to run.
//!
//! The training loop synchronises twice per mini-batch: well under a microsecond each when both
//! workers have a core to themselves, where waking a sleeping thread costs tens. So a worker
//! waiting at a [`SpinBarrier`] spins first, and sleeps only when the wait outlasts
//! [`SPIN_LIMIT`]: when another process holds the core of the worker it waits for. On a busy
//! machine one worker can beat two (no waiting at all), so [`Pace`] measures both counts and
//! runs the faster; results do not depend on the count.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker spins at a barrier before it sleeps: several times the imbalance of a
/// mini-batch's phases on an idle machine, far below a scheduler's time slice.
pub(crate) const SPIN_LIMIT: Duration = Duration::from_micros(200);

/// A reusable barrier that spins, then sleeps, until every worker has arrived.
pub(crate) struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
    /// Workers asleep on `wake` (the last to arrive wakes them only if there are any).
    sleepers: AtomicUsize,
    /// Waits that ended asleep, and all waits of a worker that was not the last to arrive.
    slept: AtomicUsize,
    waited: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// Another worker panicked; the barrier will never open.
#[derive(Debug)]
pub(crate) struct Poisoned;

impl SpinBarrier {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            slept: AtomicUsize::new(0),
            waited: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Waits until every worker has arrived.
    pub(crate) fn wait(&self) -> Result<(), Poisoned> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::SeqCst);
            // A sleeper counts itself before it checks the generation, and the generation moved
            // before this check, so either it sees the new generation or this sees it.
            if self.sleepers.load(Ordering::SeqCst) > 0 {
                self.wake_all();
            }
            return Ok(());
        }
        self.waited.fetch_add(1, Ordering::Relaxed);
        let opened = || self.generation.load(Ordering::Acquire) != generation;
        // The clock starts at the first look (most waits end before it: no clock read at all).
        let mut started = None;
        let mut spins = 0u32;
        while !opened() {
            if self.poisoned.load(Ordering::Relaxed) {
                return Err(Poisoned);
            }
            spins += 1;
            if spins.is_multiple_of(64)
                && started.get_or_insert_with(Instant::now).elapsed() > SPIN_LIMIT
            {
                return self.sleep_until_opened(generation);
            }
            std::hint::spin_loop();
        }
        Ok(())
    }

    /// Sleeps until the barrier's generation moves past `generation` (or it is poisoned).
    fn sleep_until_opened(&self, generation: usize) -> Result<(), Poisoned> {
        self.slept.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.generation.load(Ordering::SeqCst) != generation {
                break Ok(());
            }
            if self.poisoned.load(Ordering::SeqCst) {
                break Err(Poisoned);
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
        self.wake_all();
    }
}

/// Sets the barrier's poison flag if its worker unwinds, so the others stop waiting.
struct PoisonOnPanic<'a>(&'a SpinBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// How the waits at a barrier went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Waits {
    /// Waits of workers that arrived before the last one.
    pub(crate) waits: usize,
    /// Those of them that outlasted [`SPIN_LIMIT`] and slept.
    pub(crate) slept: usize,
}

impl Waits {
    /// Whether the workers often waited for one another longer than spinning covers: a sign
    /// that other work shares their cores.
    pub(crate) fn contended(&self) -> bool {
        self.slept * 50 > self.waits
    }
}

/// Runs `work(t, barrier)` for `t` in `0..threads`, worker 0 on the calling thread, the others on
/// scoped threads; returns worker 0's result and how the waits at the barrier went. A panic in
/// any worker is propagated.
///
/// Several workers are pinned each to its own core for the call (measured: unpinned, idle
/// epochs took 7% longer); a single worker is not, so that on a shared machine the scheduler
/// runs it on whichever core is free.
pub(crate) fn run_workers<R>(
    threads: usize,
    work: impl Fn(usize, &SpinBarrier) -> R + Sync,
) -> (R, Waits) {
    let barrier = SpinBarrier::new(threads);
    let cpus = allowed_cpus();
    let cpu = |t: usize| (threads > 1 && cpus.len() >= threads).then(|| cpus[t]);
    let result = std::thread::scope(|scope| {
        for t in 1..threads {
            let (work, barrier, cpu) = (&work, &barrier, cpu(t));
            scope.spawn(move || {
                let _pin = cpu.map(Pinned::to);
                let _guard = PoisonOnPanic(barrier);
                drop(work(t, barrier));
            });
        }
        let _pin = cpu(0).map(Pinned::to);
        let _guard = PoisonOnPanic(&barrier);
        work(0, &barrier)
    });
    let waits = Waits {
        waits: barrier.waited.load(Ordering::Relaxed),
        slept: barrier.slept.load(Ordering::Relaxed),
    };
    (result, waits)
}

/// The CPUs this thread may run on (empty where that cannot be asked).
fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_getaffinity fills a cpu_set_t of the size given; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect();
        }
    }
    Vec::new()
}

/// Pins the calling thread to one CPU until dropped, then restores the CPUs it had.
struct Pinned {
    #[cfg(target_os = "linux")]
    previous: Option<libc::cpu_set_t>,
}

impl Pinned {
    fn to(cpu: usize) -> Self {
        #[cfg(target_os = "linux")]
        // SAFETY: plain cpu_set_t values of the right size are passed to the affinity calls.
        unsafe {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            let ok = libc::sched_getaffinity(0, size, &mut previous) == 0
                && libc::sched_setaffinity(0, size, &set) == 0;
            Self {
                previous: ok.then_some(previous),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = cpu;
            Self {}
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(previous) = &self.previous {
            // SAFETY: restores the set read in `to`.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous);
            }
        }
    }
}

/// Chooses how many workers run the next stretch of work: all of them, or one.
///
/// Each stretch's rate (work per second) is recorded for the count that ran it; the next
/// stretch runs the count with the better last rate, and from time to time the other count, to
/// notice a change of load. All workers are probed against one only after a run of stretches
/// whose waits were all [contended](Waits::contended) (a calm stretch starts the count afresh),
/// so an idle machine, where contended stretches are rare and isolated, seldom runs a single
/// worker; one worker is probed against all regularly. A probe that loses waits twice as long
/// before the next one (up to [`Pace::MAX_PROBE_GAP`] stretches), so on a steady machine
/// probing costs almost nothing.
#[derive(Clone, Debug)]
pub(crate) struct Pace {
    max: usize,
    /// Last measured rate with one worker and with `max` workers.
    rates: [Option<f64>; 2],
    /// Stretches run since the last probe, and how many to run between probes.
    since_probe: usize,
    probe_gap: usize,
}

impl Pace {
    /// Longest gap between two probes of the other worker count, in stretches.
    pub(crate) const MAX_PROBE_GAP: usize = 64;
    const FIRST_PROBE_GAP: usize = 2;

    /// A pace for up to `max` workers (at least one).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            rates: [None, None],
            since_probe: 0,
            probe_gap: Self::FIRST_PROBE_GAP,
        }
    }

    /// The most workers this pace runs.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn slot(&self, workers: usize) -> usize {
        usize::from(workers == self.max && self.max > 1)
    }

    /// The count that measured faster (all workers until one has been measured).
    fn best(&self) -> usize {
        match self.rates {
            [Some(one), Some(all)] if one > all => 1,
            _ => self.max,
        }
    }

    /// How many workers run the next stretch.
    pub(crate) fn workers(&self) -> usize {
        let best = self.best();
        match self.max > 1 && self.since_probe >= self.probe_gap {
            true if best == self.max => 1,
            true => self.max,
            false => best,
        }
    }

    /// Records that `workers` workers did `work` units in `seconds`, with `waits` at their
    /// barrier.
    pub(crate) fn record(&mut self, workers: usize, work: f64, seconds: f64, waits: Waits) {
        if work <= 0.0 || seconds <= 0.0 {
            return;
        }
        let best = self.best();
        self.rates[self.slot(workers)] = Some(work / seconds);
        if workers == best {
            let calm = workers > 1 && !waits.contended();
            self.since_probe = if calm { 0 } else { self.since_probe + 1 };
            return;
        }
        // A probe: if it won, the count changes and probing starts afresh; else probe less.
        self.since_probe = 0;
        self.probe_gap = match self.best() == workers {
            true => Self::FIRST_PROBE_GAP,
            false => (self.probe_gap * 2).min(Self::MAX_PROBE_GAP),
        };
    }
}

/// Data that the workers of [`run_workers`] share under a phase discipline rather than a
/// borrow: the one place where workers reach the same memory through a raw pointer, audited
/// here once.
///
/// A *phase* is a worker's stretch of work between two passes of the barrier (or between a pass
/// and the start or end of [`run_workers`]); every worker is in the same phase at once, and a
/// [`SpinBarrier::wait`] orders everything written before it (release: the arrival's `AcqRel`
/// increment and the last worker's `SeqCst` turn of the generation) before everything read
/// after it (acquire: the load that sees the new generation). The rule the accessors ask their
/// callers to keep: within a phase, each element is either only read (by any workers) or
/// touched by one worker alone. Each accessor is `unsafe` and says which half of the rule it
/// relies on; its caller states the phase and the owner.
///
/// The data must stay alive and otherwise unused while workers reach it: a `Phased` is made
/// from an exclusive borrow just before [`run_workers`], and its pointer is only followed by
/// the workers (or between the calls, when none runs).
pub(crate) struct Phased<T: ?Sized>(*mut T);

// SAFETY: `Phased` hands out `&T` (so workers on other threads read `T`: `T: Sync`) and
// `&mut T` to one worker at a time (so `T` moves between threads: `T: Send`); the accessors'
// contracts exclude data races.
unsafe impl<T: ?Sized + Send + Sync> Send for Phased<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for Phased<T> {}

impl<T: ?Sized> Phased<T> {
    /// Shares `data` with the workers (the accessors' contracts ask that it outlive them).
    pub(crate) fn new(data: &mut T) -> Self {
        Self(data)
    }

    /// The data, read-only.
    ///
    /// # Safety
    /// The data must be alive, and no one may write to it (through this or any other
    /// `Phased`, or otherwise) while the reference lives: in the caller's phase it is only read.
    pub(crate) unsafe fn get(&self) -> &T {
        // SAFETY: the caller's promise.
        unsafe { &*self.0 }
    }

    /// The data, for the calling worker alone.
    ///
    /// # Safety
    /// The data must be alive, and no one else may read or write it (through this or any other
    /// `Phased`, or otherwise) while the reference lives: in the caller's phase it belongs to
    /// the calling worker.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut(&self) -> &mut T {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.0 }
    }
}

impl<T> Phased<[T]> {
    /// Element `i`, for the calling worker alone (`i` is bounds-checked).
    ///
    /// # Safety
    /// The slice must be alive, and no one else may read or write element `i` while the
    /// reference lives: in the caller's phase it belongs to the calling worker.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut_at(&self, i: usize) -> &mut T {
        assert!(i < self.0.len(), "element {i} of {}", self.0.len());
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { &mut *self.0.cast::<T>().add(i) }
    }

    /// Worker `t`'s block of whole rows of `row_len` elements, of `workers` near-equal blocks
    /// (rows `t rows / workers` to `(t + 1) rows / workers`), and its first row. The blocks of
    /// different `t` do not overlap, and together they cover every row.
    ///
    /// # Safety
    /// The slice must be alive, and no one else may read or write these rows while the slice
    /// lives: in the caller's phase worker `t`'s block belongs to worker `t` (each worker
    /// takes its own, with the same `workers`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn row_block(
        &self,
        row_len: usize,
        t: usize,
        workers: usize,
    ) -> (&mut [T], usize) {
        assert!(t < workers, "worker {t} of {workers}");
        let rows = self.0.len() / row_len.max(1);
        let (first, last) = (t * rows / workers, (t + 1) * rows / workers);
        // SAFETY: first <= last <= rows, so the block lies inside the slice; exclusivity is the
        // caller's promise.
        let block = unsafe {
            std::slice::from_raw_parts_mut(
                self.0.cast::<T>().add(first * row_len),
                (last - first) * row_len,
            )
        };
        (block, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_orders_phases() {
        let counter = AtomicUsize::new(0);
        let (seen, _) = run_workers(3, |_, barrier| {
            let mut seen = Vec::new();
            for round in 0..100 {
                counter.fetch_add(1, Ordering::SeqCst);
                barrier.wait().unwrap();
                seen.push(counter.load(Ordering::SeqCst) == 3 * (round + 1));
                barrier.wait().unwrap();
            }
            seen
        });
        assert!(seen.iter().all(|&ok| ok));
    }

    /// Runs `stretches` stretches with the rates `rate(workers, stretch)`; returns the count
    /// run at each stretch. Two workers' waits are contended when they are slower than one, as
    /// under load.
    fn simulate(
        pace: &mut Pace,
        stretches: usize,
        rate: impl Fn(usize, usize) -> f64,
    ) -> Vec<usize> {
        (0..stretches)
            .map(|i| {
                let workers = pace.workers();
                let contended = rate(2, i) < rate(1, i);
                let waits = Waits {
                    waits: 100,
                    slept: if contended { 50 } else { 0 },
                };
                pace.record(workers, rate(workers, i), 1.0, waits);
                workers
            })
            .collect()
    }

    #[test]
    fn pace_runs_the_faster_count_and_rarely_probes_the_other() {
        for (one, two, faster) in [(1.0, 1.7, 2), (1.0, 0.1, 1)] {
            let mut pace = Pace::new(2);
            let counts = simulate(&mut pace, 1000, |w, _| if w == 1 { one } else { two });
            // One probe per MAX_PROBE_GAP stretches once settled, a few more while settling.
            let slower = counts.iter().filter(|&&w| w != faster).count();
            let bound = 1000 / Pace::MAX_PROBE_GAP + 10;
            assert!(
                slower <= bound,
                "{slower} of 1000 stretches ran the slower count"
            );
        }
    }

    #[test]
    fn pace_follows_a_change_of_load() {
        let mut pace = Pace::new(2);
        // Idle for 500 stretches (two workers faster), then busy (one faster), then idle again.
        let busy = |i: usize| (500..1000).contains(&i);
        let counts = simulate(&mut pace, 1500, |w, i| match (w, busy(i)) {
            (1, _) => 1.0,
            (_, false) => 1.7,
            (_, true) => 0.1,
        });
        let late = |from: usize, want: usize| {
            counts[from..from + 500]
                .iter()
                .position(|&w| w == want)
                .map(|p| {
                    counts[from + p..from + 500]
                        .iter()
                        .filter(|&&w| w != want)
                        .count()
                        + p
                })
        };
        // Within two probe gaps of the change, and then the right count nearly always.
        assert!(late(500, 1).unwrap() <= 2 * Pace::MAX_PROBE_GAP + 20);
        assert!(late(1000, 2).unwrap() <= 2 * Pace::MAX_PROBE_GAP + 20);
    }

    #[test]
    fn one_worker_is_all_a_single_core_gets() {
        let mut pace = Pace::new(1);
        assert!(simulate(&mut pace, 100, |_, _| 1.0).iter().all(|&w| w == 1));
    }

    #[test]
    fn a_sleeping_worker_is_woken() {
        // Worker 1 arrives long after worker 0 has stopped spinning and gone to sleep.
        run_workers(2, |t, barrier| {
            for _ in 0..20 {
                if t == 1 {
                    std::thread::sleep(SPIN_LIMIT * 5);
                }
                barrier.wait().unwrap();
            }
        });
    }

    #[test]
    fn a_panicking_worker_does_not_deadlock_the_others() {
        let result = std::panic::catch_unwind(|| {
            run_workers(2, |t, barrier| {
                if t == 1 {
                    panic!("worker 1 fails");
                }
                barrier.wait()
            })
        });
        assert!(result.is_err());
    }
}
