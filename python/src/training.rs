//! Training from Python: the engine works on a thread of its own with the GIL released, while
//! the calling thread watches for Ctrl-C (Python runs signal handlers on the main thread only);
//! progress and epoch callbacks reach Python from the engine's thread.

use eqprop::metrics::EpochRecord;
use eqprop::run::{ConvObserver, ConvRun, Observer, Run};
use eqprop::train::Progress;
use pyo3::prelude::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the waiting thread looks for Ctrl-C (it wakes at once when the work ends), and
/// the progress callback runs at most.
const TICK: Duration = Duration::from_millis(50);
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The Python callbacks of a training call, and what they asked for.
pub struct Callbacks {
    /// `on_batch(done, total, correct)`: examples done in the epoch and how many were right.
    pub on_batch: Option<Py<PyAny>>,
    /// `on_epoch(record_json)`: after each epoch; a result of `False` stops training.
    pub on_epoch: Option<Py<PyAny>>,
    /// The first exception a callback raised (training stops at the next mini-batch).
    pub error: Mutex<Option<PyErr>>,
}

impl Callbacks {
    pub fn new(on_batch: Option<Py<PyAny>>, on_epoch: Option<Py<PyAny>>) -> Self {
        Self {
            on_batch,
            on_epoch,
            error: Mutex::new(None),
        }
    }

    fn keep_error(&self, error: PyErr, stop: &AtomicBool) {
        let mut slot = self.error.lock().expect("not poisoned");
        slot.get_or_insert(error);
        stop.store(true, Ordering::SeqCst);
    }
}

/// An observer that forwards to [`Callbacks`], the progress at most every `PROGRESS_EVERY`.
pub struct Forward<'a> {
    callbacks: &'a Callbacks,
    stop: &'a AtomicBool,
    total: usize,
    last: Option<Instant>,
}

impl<'a> Forward<'a> {
    pub fn new(callbacks: &'a Callbacks, stop: &'a AtomicBool) -> Self {
        Self {
            callbacks,
            stop,
            total: 0,
            last: None,
        }
    }

    fn started(&mut self, examples: usize) {
        self.total = examples;
        self.last = None;
        self.progress(0, 0);
    }

    fn progress(&mut self, done: usize, correct: usize) {
        let Some(callback) = &self.callbacks.on_batch else {
            return;
        };
        let due = self.last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if !due && done < self.total {
            return;
        }
        self.last = Some(Instant::now());
        let result =
            Python::attach(|py| callback.call1(py, (done, self.total, correct)).map(|_| ()));
        if let Err(e) = result {
            self.callbacks.keep_error(e, self.stop);
        }
    }

    fn ended(&mut self, record: &EpochRecord) {
        let Some(callback) = &self.callbacks.on_epoch else {
            return;
        };
        let json = serde_json::to_string(record).expect("records serialise");
        let result = Python::attach(|py| {
            let answer = callback.call1(py, (json,))?;
            answer.extract::<Option<bool>>(py).or(Ok(None))
        });
        match result {
            Ok(Some(false)) => self.stop.store(true, Ordering::SeqCst),
            Ok(_) => {}
            Err(e) => self.callbacks.keep_error(e, self.stop),
        }
    }
}

impl Observer for Forward<'_> {
    fn epoch_started(&mut self, _epoch: usize, examples: usize) {
        self.started(examples);
    }

    fn batch(&mut self, progress: &Progress) {
        self.progress(progress.seen as usize, progress.correct as usize);
    }

    fn epoch_ended(&mut self, record: &EpochRecord, _run: &Run) -> eqprop::Result<()> {
        self.ended(record);
        Ok(())
    }
}

impl ConvObserver for Forward<'_> {
    fn epoch_started(&mut self, _epoch: usize, examples: usize) {
        self.started(examples);
    }

    fn batch(&mut self, done: usize, correct: usize) {
        self.progress(done, correct);
    }

    fn epoch_ended(&mut self, record: &EpochRecord, _run: &ConvRun) -> eqprop::Result<()> {
        self.ended(record);
        Ok(())
    }
}

/// Runs `work` on a thread of its own with the GIL released; the calling thread checks for
/// signals every `TICK` and, on one (Ctrl-C: `KeyboardInterrupt`), sets the stop flag `work`
/// is given and waits for it to end. Returns the work's result and the signal's exception.
pub fn run_interruptibly<R: Send>(
    py: Python<'_>,
    stop: &AtomicBool,
    work: impl FnOnce() -> R + Send,
) -> PyResult<(R, Option<PyErr>)> {
    let finished = AtomicBool::new(false);
    let (result, signal) = py.detach(|| {
        std::thread::scope(|scope| {
            let (waiter, done) = (std::thread::current(), &finished);
            let worker = scope.spawn(move || {
                let result = work();
                done.store(true, Ordering::SeqCst);
                waiter.unpark();
                result
            });
            let mut signal = None;
            // `done` wakes the wait at once; `is_finished` ends it after a panic too.
            while !done.load(Ordering::SeqCst) && !worker.is_finished() {
                std::thread::park_timeout(TICK);
                if signal.is_none()
                    && let Err(e) = Python::attach(|py| py.check_signals())
                {
                    stop.store(true, Ordering::SeqCst);
                    signal = Some(e);
                }
            }
            (worker.join(), signal)
        })
    });
    match result {
        Ok(value) => Ok((value, signal)),
        Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "the engine panicked (a bug: please report it with the command that caused it)",
        )),
    }
}
