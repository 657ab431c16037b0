//! Workers that meet at spin barriers: the training loop's two synchronisations per mini-batch
//! cost well under a microsecond each, where waking a sleeping pool thread costs tens.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A reusable barrier that spins (then yields) instead of sleeping.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

/// Another worker panicked; the barrier will never open.
#[derive(Debug)]
pub struct Poisoned;

impl SpinBarrier {
    pub fn new(threads: usize) -> Self {
        Self {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Waits until every worker has arrived.
    pub fn wait(&self) -> Result<(), Poisoned> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return Ok(());
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Relaxed) {
                return Err(Poisoned);
            }
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
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

/// Runs `work(t, barrier)` for `t` in `0..threads`, worker 0 on the calling thread, the others on
/// scoped threads; returns worker 0's result. A panic in any worker is propagated.
pub fn run_workers<R>(threads: usize, work: impl Fn(usize, &SpinBarrier) -> R + Sync) -> R {
    let barrier = SpinBarrier::new(threads);
    let cpus = allowed_cpus();
    let cpu = |t: usize| (cpus.len() >= threads).then(|| cpus[t]);
    std::thread::scope(|scope| {
        for t in 1..threads {
            let (work, barrier, cpu) = (&work, &barrier, cpu(t));
            scope.spawn(move || {
                let _pin = cpu.map(Pinned::to);
                let _guard = PoisonOnPanic(barrier);
                drop(work(t, barrier));
            });
        }
        // Spinning workers must not share a core: each is pinned to its own for the duration.
        let _pin = cpu(0).map(Pinned::to);
        let _guard = PoisonOnPanic(&barrier);
        work(0, &barrier)
    })
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

/// A raw pointer that workers may share: every use is separated by a barrier from any
/// conflicting use (the callers document which phase touches what).
#[derive(Clone, Copy)]
pub struct Shared<T>(pub *mut T);

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the whole `Shared`, which is `Sync`).
    pub fn ptr(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is only dereferenced under the phase discipline described at each use.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_orders_phases() {
        let counter = AtomicUsize::new(0);
        let seen = run_workers(3, |_, barrier| {
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
