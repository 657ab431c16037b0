//! Training: epochs of mini-batch EqProp, evaluation, and resumable progress.
//!
//! Every source of randomness derives from the seed: the initial weights from `seed`, and each
//! epoch's shuffle and nudge signs from `(seed, epoch)`. So a run interrupted after any batch and
//! resumed from its checkpoint replays exactly the same sequence as an uninterrupted one.

use crate::backend::simd::prefetch;
use crate::config::{ConfigError, Hyperparams};
use crate::data::Dataset;
use crate::dynamics::{Nudge, Phase};
use crate::learning_rule::{
    GenerativeParticles, Nudging, Particles, Verdicts, gated_scales, generative_scales,
    update_biases, update_dense_layer_rows, update_first_layer_rows, update_generative_biases,
    update_generative_rows,
};
use crate::network::Network;
use crate::parallel::{Pace, Phased, SpinBarrier, run_workers};
use crate::tensor::Matrix;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Mini-batches run by one set of workers before [`Pace`] chooses the count again: long
/// enough that starting threads costs nothing, short enough to follow a change of load.
const STRETCH: std::time::Duration = std::time::Duration::from_millis(40);

/// Samples per parallel chunk of a mini-batch. Chunking depends on the batch size only, never
/// on the thread count, so results do not depend on the machine.
const CHUNK: usize = 16;

/// Where a run stands, saved in every checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Mini-batches completed in the current epoch.
    pub batch: usize,
    /// Running totals of the current epoch.
    pub correct: u64,
    pub seen: u64,
    pub energy_sum: f64,
    pub seconds: f64,
    /// Examples of the current epoch that passed the surprise gate (all without a gate).
    #[serde(default)]
    pub learned: u64,
    /// The surprise gate's threshold, carried from epoch to epoch (none without a gate).
    #[serde(default)]
    pub threshold: Option<f32>,
}

/// Statistics of one finished training epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Error (%) of the free-phase predictions made while training.
    pub train_error: f64,
    /// Mean energy at the free fixed points.
    pub mean_energy: f64,
    /// Wall-clock seconds spent training (evaluation excluded).
    pub seconds: f64,
    pub samples_per_second: f64,
    /// Share of the examples that learned (1 without a surprise gate).
    pub learned_share: f64,
}

impl EpochSummary {
    /// Whether the epoch's predictions were no better than guessing among `classes` classes
    /// (within 3% of chance): what a network whose units all sat at a bound from a too large
    /// learning rate gives, whatever its input.
    pub fn at_chance(&self, classes: usize) -> bool {
        let chance = 100.0 * (1.0 - 1.0 / classes.max(1) as f64);
        classes > 1 && self.train_error >= 0.97 * chance
    }
}

/// What an epoch runs: the shuffled example order, the signed `beta` of each mini-batch and the
/// learning rates.
pub struct EpochPlan {
    pub order: Vec<usize>,
    pub betas: Vec<f32>,
    pub lrs: Vec<f32>,
}

/// How an epoch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EpochEnd {
    Completed(EpochSummary),
    /// Stopped by request after a mini-batch; the progress says where.
    Interrupted,
    /// Stopped because the numbers left the range a relaxing network can hold; the network is
    /// no longer worth saving.
    Diverged(Divergence),
}

/// Why an epoch did not complete.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Stopped {
    #[error("training stopped by request")]
    Interrupted,
    #[error(transparent)]
    Diverged(Divergence),
}

impl EpochEnd {
    /// The summary of a completed epoch; an interrupted or diverged one is the error.
    pub fn completed(self) -> Result<EpochSummary, Stopped> {
        match self {
            EpochEnd::Completed(summary) => Ok(summary),
            EpochEnd::Interrupted => Err(Stopped::Interrupted),
            EpochEnd::Diverged(d) => Err(Stopped::Diverged(d)),
        }
    }
}

/// Where and how training diverged.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("training diverged in epoch {epoch}, mini-batch {batch}: {what}")]
pub struct Divergence {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based mini-batch of the epoch (the last one when only the epoch's end found it).
    pub batch: usize,
    /// What left its range.
    pub what: String,
}

/// Largest free energy per unit, in absolute value, of a healthy network.
///
/// States live in `[0, 1]`, so `|E|` per example is bounded by the units' self terms and the
/// couplings' and biases' magnitudes. Healthy runs of every preset stay below 0.1 per unit
/// (measured: `best` on MNIST about -14 for 1,294 units, `best-fashion` -19, `paper-2h` -115
/// for 1,794, `paper-3h` -170 for 2,294); `--lr 100,100` reaches -5,358 (4.1 per unit) by its
/// second mini-batch, where every unit sits at a bound whatever the input.
pub const RUNAWAY_ENERGY_PER_UNIT: f64 = 1.0;

/// Why a mean free energy (of a mini-batch or an epoch) or the biases show a diverged network
/// of `units` units, if they do.
fn divergence_of(mean: f64, biases: &[Vec<f32>], units: usize) -> Option<String> {
    if !mean.is_finite() {
        return Some(format!("the mean free energy is {mean}"));
    }
    let limit = RUNAWAY_ENERGY_PER_UNIT * units as f64;
    if mean.abs() > limit {
        return Some(format!(
            "the mean free energy {mean:.1} is beyond +-{limit:.0} (runaway couplings: lower the learning rates)"
        ));
    }
    non_finite_bias(biases)
}

/// The first NaN or infinite bias, described (`b1[7] is NaN`); nothing is allocated while all
/// are finite (this runs after every mini-batch).
fn non_finite_bias(biases: &[Vec<f32>]) -> Option<String> {
    biases.iter().enumerate().find_map(|(k, b)| {
        let at = b.iter().position(|v| !v.is_finite())?;
        Some(format!("b{k}[{at}] is {}", b[at]))
    })
}

/// The first NaN or infinite coupling, described (`W2[3, 4] is inf`).
fn non_finite_coupling(weights: &[Matrix]) -> Option<String> {
    weights.iter().enumerate().find_map(|(k, w)| {
        let at = w.as_slice().iter().position(|v| !v.is_finite())?;
        let (r, c) = (at / w.cols(), at % w.cols());
        Some(format!("W{}[{r}, {c}] is {}", k + 1, w.as_slice()[at]))
    })
}

/// Test-set figures of a network.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Misclassified share, in percent.
    pub error: f64,
    pub mean_energy: f64,
}

/// What the free phase of one chunk of a mini-batch found.
#[derive(Clone, Debug)]
struct ChunkStats {
    energy: Vec<f32>,
    correct: usize,
    /// Output cost at the free fixed point of each example (with a surprise gate).
    surprise: Vec<f32>,
    /// The examples that passed the gate, as indices and as flags.
    learners: Vec<usize>,
    learns: Vec<bool>,
}

/// Trains a network with EqProp.
pub struct Trainer {
    hp: Hyperparams,
    net: Network,
    progress: Progress,
    /// One set of particles per parallel chunk of a mini-batch, with its statistics.
    particles: Vec<Particles>,
    /// One generative phase pair per chunk when the run trains for dreaming, else none.
    generative: Vec<GenerativeParticles>,
    stats: Vec<ChunkStats>,
    /// Last free fixed point of every training example, per layer (persistent particles).
    persistent: Option<Vec<Matrix>>,
    /// Set by the mini-batch whose numbers showed divergence.
    divergence: Option<Divergence>,
    /// How many workers train (kept from epoch to epoch).
    pace: Option<Pace>,
}

impl Trainer {
    /// A fresh run: Glorot-initialised network from `hp.seed`, scaled by `hp.init_gain`
    /// ([`Hyperparams::initial_network`]).
    pub fn new(hp: Hyperparams) -> Result<Self, ConfigError> {
        hp.validate()?;
        let net = hp.initial_network()?;
        Ok(Self::resume(hp, net, Progress::default(), None))
    }

    /// Continues a run from its saved parts.
    pub fn resume(
        hp: Hyperparams,
        net: Network,
        progress: Progress,
        persistent: Option<Vec<Matrix>>,
    ) -> Self {
        let sizes = chunk_sizes(hp.batch_size);
        let particles = sizes
            .iter()
            .map(|&n| Particles::new(&hp.layers, n))
            .collect();
        let generative = match hp.generative {
            Some(_) => sizes
                .iter()
                .map(|&n| GenerativeParticles::new(&hp.layers, n))
                .collect(),
            None => Vec::new(),
        };
        let stats = sizes
            .iter()
            .map(|&n| ChunkStats {
                energy: vec![0.0; n],
                correct: 0,
                surprise: vec![0.0; n],
                learners: Vec::with_capacity(n),
                learns: vec![true; n],
            })
            .collect();
        Self {
            hp,
            net,
            progress,
            particles,
            generative,
            stats,
            persistent,
            divergence: None,
            pace: None,
        }
    }

    pub fn hyperparams(&self) -> &Hyperparams {
        &self.hp
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Where the persistent chains of generative training stand (one matrix per layer, the
    /// chunks' rows one after another), if the run trains for dreaming.
    pub fn dream_chains(&self) -> Option<Vec<Matrix>> {
        let first = self.generative.first()?;
        let layers = first.free.layers.len();
        Some(
            (0..layers)
                .map(|k| {
                    let cols = first.free.layers[k].cols();
                    let data = self
                        .generative
                        .iter()
                        .flat_map(|g| g.free.layers[k].as_slice().iter().copied())
                        .collect();
                    Matrix::from_vec(self.hp.batch_size, cols, data).expect("chunks fill the batch")
                })
                .collect(),
        )
    }

    /// Restores the chains saved by [`dream_chains`](Self::dream_chains) (ignored if their
    /// shapes do not fit this run), so that a resumed generative run continues exactly.
    pub fn with_dream_chains(mut self, chains: Option<Vec<Matrix>>) -> Self {
        let fits = |c: &[Matrix]| {
            c.len() == self.hp.layers.len()
                && c.iter()
                    .zip(&self.hp.layers)
                    .all(|(m, &n)| (m.rows(), m.cols()) == (self.hp.batch_size, n))
        };
        if let Some(chains) = chains.filter(|c| fits(c) && !self.generative.is_empty()) {
            let mut row = 0;
            for g in &mut self.generative {
                let n = g.free.batch();
                for (layer, saved) in g.free.layers.iter_mut().zip(&chains) {
                    let cols = saved.cols();
                    layer
                        .as_mut_slice()
                        .copy_from_slice(&saved.as_slice()[row * cols..(row + n) * cols]);
                }
                row += n;
            }
        }
        self
    }

    /// The persistent particles, if the run uses them.
    pub fn persistent_states(&self) -> Option<&[Matrix]> {
        self.persistent.as_deref()
    }

    /// Whether every epoch has been trained.
    pub fn finished(&self) -> bool {
        self.progress.epoch >= self.hp.epochs
    }

    /// Trains up to `epochs` in all (a cosine schedule then decays over the new count, as when
    /// a run resumes with more epochs). Fails below the epochs already completed.
    pub fn set_epochs(&mut self, epochs: usize) -> Result<(), ConfigError> {
        self.hp.epochs = crate::config::more_epochs(epochs, self.progress.epoch)?;
        Ok(())
    }

    /// Trains (the rest of) the current epoch; stops after the running mini-batch once `stop` is
    /// set. `on_batch` sees the progress after every mini-batch.
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        stop: &AtomicBool,
        on_batch: impl FnMut(&Progress) + Send,
    ) -> EpochEnd {
        let plan = self.begin_epoch(data.len());
        let done = self.train_batches(data, &plan.order, &plan.betas, &plan.lrs, stop, on_batch);
        self.end_epoch(done)
    }

    /// The example order, per-batch `beta` and learning rates of the current epoch (and the
    /// persistent states sized for `n` examples).
    pub(crate) fn begin_epoch(&mut self, n: usize) -> EpochPlan {
        self.ensure_persistent(n);
        let (order, betas) = epoch_plan(&self.hp, self.progress.epoch, n);
        let lrs = self.hp.learning_rates(self.progress.epoch);
        EpochPlan { order, betas, lrs }
    }

    /// Closes the epoch when every mini-batch ran (`completed`), else reports the interruption.
    pub(crate) fn end_epoch(&mut self, completed: bool) -> EpochEnd {
        if let Some(d) = self.divergence.take() {
            return EpochEnd::Diverged(d);
        }
        if !completed {
            return EpochEnd::Interrupted;
        }
        if let Some(what) = self.epoch_divergence() {
            return EpochEnd::Diverged(Divergence {
                epoch: self.progress.epoch + 1,
                batch: self.progress.batch,
                what,
            });
        }
        let p = std::mem::take(&mut self.progress);
        self.progress.epoch = p.epoch + 1;
        self.progress.threshold = p.threshold;
        let seen = p.seen.max(1) as f64;
        EpochEnd::Completed(EpochSummary {
            epoch: p.epoch + 1,
            train_error: 100.0 * (1.0 - p.correct as f64 / seen),
            mean_energy: p.energy_sum / seen,
            seconds: p.seconds,
            samples_per_second: p.seen as f64 / p.seconds.max(1e-9),
            learned_share: p.learned as f64 / seen,
        })
    }

    /// Why the epoch's energies or the network show divergence, if they do: the whole-epoch
    /// check that every device makes (the CPU also checks each mini-batch).
    fn epoch_divergence(&self) -> Option<String> {
        let p = &self.progress;
        let units: usize = self.hp.layers.iter().sum();
        let mean = p.energy_sum / p.seen.max(1) as f64;
        divergence_of(mean, self.net.biases(), units)
            .or_else(|| non_finite_coupling(self.net.weights()))
    }

    /// The parts another backend trains: the network, the progress and the persistent states.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn parts_mut(&mut self) -> (&mut Network, &mut Progress, Option<&mut Vec<Matrix>>) {
        (&mut self.net, &mut self.progress, self.persistent.as_mut())
    }

    /// The mini-batches of the epoch from `progress.batch` on; false if `stop` ended it early.
    ///
    /// Workers (as many as the thread pool has, at most one per chunk) meet at two barriers per
    /// mini-batch. Phase 1: each relaxes its own chunks (reading the network, writing only its
    /// chunks' particles and statistics). Phase 2: each updates its own block of rows of every
    /// coupling; worker 0 also updates the biases, the persistent states and the progress
    /// (reading every chunk). No two workers touch the same data within a phase. The epoch's
    /// seconds are the wall-clock of the whole call, waits at the barriers included.
    fn train_batches(
        &mut self,
        data: &Dataset,
        order: &[usize],
        betas: &[f32],
        lrs: &[f32],
        stop: &AtomicBool,
        on_batch: impl FnMut(&Progress) + Send,
    ) -> bool {
        let hp = self.hp.clone();
        let batches = data.len() / hp.batch_size;
        let chunks = self.particles.len();
        let max_workers = rayon::current_num_threads().clamp(1, chunks);
        let starts = chunk_starts(&self.particles);
        // Every coupling's buffer, taken once here: workers write disjoint row blocks of them.
        let couplings: Vec<(Phased<[f32]>, usize)> = self
            .net
            .weights_mut()
            .iter_mut()
            .map(|w| {
                let cols = w.cols();
                (Phased::new(w.as_mut_slice()), cols)
            })
            .collect();
        let biases = Phased::new(self.net.biases_mut());
        let net = Phased::new(&mut self.net);
        let particles = Phased::new(&mut self.particles[..]);
        let generative = Phased::new(&mut self.generative[..]);
        // The generative settings when this epoch runs generative phases.
        let epoch = self.progress.epoch;
        let dreaming = hp
            .generative
            .filter(|g| !self.generative.is_empty() && epoch >= g.from_epoch);
        let stats = Phased::new(&mut self.stats[..]);
        let persistent = Phased::new(&mut self.persistent);
        let gate = hp.modulator;
        if let Some(m) = gate {
            self.progress.threshold.get_or_insert(m.initial_threshold());
        }
        let progress = Phased::new(&mut self.progress);
        let on_batch = std::sync::Mutex::new(on_batch);
        let halt = AtomicBool::new(false);
        // Set by worker 0 at the mini-batch whose numbers show divergence; it halts the epoch.
        let divergence = std::sync::OnceLock::new();
        let units: usize = hp.layers.iter().sum();
        // Worker `t` of `workers` runs one mini-batch of the stretch that began at `since` with
        // mini-batch `first`; false once worker 0 has called a halt (the epoch's end, a stop
        // request, divergence, or the stretch's end).
        //
        // The phases (see `Phased`), each from one barrier to the next. Phase 1: the network,
        // the persistent states and the progress are only read; chunk c (particles, stats,
        // generative particles) belongs to worker c % workers. Phase 2, which runs on to the
        // next mini-batch's first barrier: every chunk is only read; worker t owns block t of
        // the rows of every coupling; worker 0 owns the biases, the persistent states and the
        // progress.
        let mini_batch = |t: usize,
                          workers: usize,
                          barrier: &SpinBarrier,
                          first: usize,
                          since: Instant| {
            if t == 0 {
                // SAFETY: phase 2 (or before any): the progress belongs to worker 0.
                let b = unsafe { progress.get() }.batch;
                let halted = divergence.get().is_some() || stop.load(Ordering::SeqCst);
                let stretch_over = b > first && since.elapsed() > STRETCH;
                halt.store(b >= batches || halted || stretch_over, Ordering::SeqCst);
            }
            if barrier.wait().is_err() || halt.load(Ordering::SeqCst) {
                return false;
            }
            // SAFETY: phase 1: the progress, the network and the persistent states are only
            // read.
            let (progress_now, net, saved) =
                unsafe { (progress.get(), net.get(), persistent.get().as_deref()) };
            let (b, threshold) = (progress_now.batch, progress_now.threshold);
            let indices = &order[b * hp.batch_size..(b + 1) * hp.batch_size];
            for c in (t..chunks).step_by(workers) {
                // SAFETY: phase 1: chunk c belongs to this worker (c % workers == t); the
                // generative chunks exist when dreaming.
                let (p, stat, gp) = unsafe {
                    let gp = dreaming.is_some().then(|| generative.get_mut_at(c));
                    (particles.get_mut_at(c), stats.get_mut_at(c), gp)
                };
                relax_chunk(
                    net,
                    &hp,
                    p,
                    stat,
                    data,
                    &indices[starts[c]..starts[c] + p.batch()],
                    saved,
                    betas[b],
                    threshold,
                );
                if let (Some(g), Some(gp)) = (&dreaming, gp) {
                    gp.phases(net, &p.free, &p.target, g, hp.eps);
                }
            }
            if barrier.wait().is_err() {
                return false;
            }
            // SAFETY: phase 2: every chunk is only read.
            let (all, gens) = unsafe { (particles.get(), generative.get()) };
            let scale = gated_scales(lrs, all, hp.nudging, betas[b], gate.as_ref());
            let (w1, cols) = &couplings[0];
            // SAFETY: phase 2: block t of the rows belongs to worker t.
            let (block, first) = unsafe { w1.row_block(*cols, t, workers) };
            update_first_layer_rows(block, first, scale[0], all, hp.nudging, betas[b]);
            for k in 2..hp.layers.len() {
                let (w, cols) = &couplings[k - 1];
                // SAFETY: phase 2: block t of the rows belongs to worker t.
                let (block, first) = unsafe { w.row_block(*cols, t, workers) };
                update_dense_layer_rows(block, first, k, scale[k - 1], all, hp.nudging, betas[b]);
            }
            let dreams = dreaming.map(|g| (gens, generative_scales(lrs, gens, &g)));
            if let Some((gens, gen_scale)) = &dreams {
                for k in 1..generative_layers(&hp).0 {
                    let (w, cols) = &couplings[k - 1];
                    // SAFETY: phase 2: block t of the rows belongs to worker t.
                    let (block, first) = unsafe { w.row_block(*cols, t, workers) };
                    update_generative_rows(block, first, k, gen_scale[k - 1], gens);
                }
            }
            if let Some(next) = order.get((b + 1) * hp.batch_size..(b + 2) * hp.batch_size) {
                // This worker's chunks of the next mini-batch start with their images.
                for c in (t..chunks).step_by(workers) {
                    let size = all[c].batch();
                    for &i in &next[starts[c]..starts[c] + size] {
                        prefetch(data.image(i));
                    }
                }
            }
            if t == 0 {
                // SAFETY: phase 2: the biases, the persistent states and the progress belong
                // to worker 0; the stats are only read.
                let (biases, stats, persistent, progress) = unsafe {
                    (
                        biases.get_mut(),
                        stats.get(),
                        persistent.get_mut(),
                        progress.get_mut(),
                    )
                };
                update_biases(biases, &scale, all, hp.nudging, betas[b]);
                if let Some((gens, gen_scale)) = &dreams {
                    let (_, with_bias) = generative_layers(&hp);
                    update_generative_biases(&mut biases[..with_bias], gen_scale, gens);
                }
                if let Some(saved) = persistent.as_mut() {
                    for (p, &at) in all.iter().zip(&starts) {
                        copy_rows_back(&p.free.layers, &indices[at..at + p.batch()], saved);
                    }
                }
                if let (Some(m), Some(theta)) = (gate, progress.threshold) {
                    let surprises = stats.iter().flat_map(|s| &s.surprise);
                    progress.threshold = Some(m.adapt(theta, surprises));
                }
                progress.batch += 1;
                progress.learned += stats.iter().map(|s| s.learners.len() as u64).sum::<u64>();
                progress.correct += stats.iter().map(|s| s.correct as u64).sum::<u64>();
                progress.seen += indices.len() as u64;
                let energy: f64 = stats
                    .iter()
                    .flat_map(|s| &s.energy)
                    .map(|&e| e as f64)
                    .sum();
                progress.energy_sum += energy;
                let mean = energy / indices.len() as f64;
                if let Some(what) = divergence_of(mean, biases, units) {
                    let _ = divergence.set(Divergence {
                        epoch: progress.epoch + 1,
                        batch: progress.batch,
                        what,
                    });
                }
                (on_batch.lock().expect("progress callback"))(progress);
            }
            true
        };
        let started = Instant::now();
        let pace = self.pace.take().filter(|p| p.max() == max_workers);
        let mut pace = pace.unwrap_or_else(|| Pace::new(max_workers));
        loop {
            let workers = pace.workers();
            let since = Instant::now();
            // SAFETY: no worker runs between stretches.
            let first = unsafe { progress.get() }.batch;
            halt.store(false, Ordering::SeqCst);
            let ((), waits) = run_workers(workers, |t, barrier| {
                while mini_batch(t, workers, barrier, first, since) {}
            });
            // SAFETY: no worker runs between stretches.
            let b = unsafe { progress.get() }.batch;
            pace.record(
                workers,
                (b - first) as f64,
                since.elapsed().as_secs_f64(),
                waits,
            );
            if b >= batches || divergence.get().is_some() || stop.load(Ordering::SeqCst) {
                break;
            }
        }
        self.pace = Some(pace);
        self.progress.seconds += started.elapsed().as_secs_f64();
        self.divergence = divergence.into_inner();
        self.progress.batch >= batches
    }

    fn ensure_persistent(&mut self, n: usize) {
        let stale = |p: &Vec<Matrix>| p.last().is_none_or(|m| m.rows() != n);
        if self.hp.persistent && self.persistent.as_ref().is_none_or(stale) {
            // Layer 0 is the clamped input: nothing to remember there.
            let rows = |k: usize| if k == 0 { 0 } else { n };
            self.persistent = Some(
                self.hp
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(k, &u)| Matrix::zeros(rows(k), u))
                    .collect(),
            );
        }
    }
}

/// How far the generative update reaches: couplings `W_1..W_{c-1}` and biases `b_0..b_{b-1}`
/// for the returned `(c, b)`; all of them, or only `W_1` and the input bias.
fn generative_layers(hp: &Hyperparams) -> (usize, usize) {
    match hp.generative {
        Some(g) if g.input_couplings_only => (2, 1),
        _ => (hp.layers.len(), hp.layers.len()),
    }
}

/// Phase 1 of a mini-batch for one chunk: load its examples, relax the free phase, record the
/// prediction and energy, relax the nudged phase(s), and form the `W_1` update factor.
///
/// With a surprise gate (`threshold`), only the examples whose free-phase output cost exceeds
/// it relax a nudged phase and enter the update.
#[allow(clippy::too_many_arguments)]
fn relax_chunk(
    net: &Network,
    hp: &Hyperparams,
    p: &mut Particles,
    stats: &mut ChunkStats,
    data: &Dataset,
    rows: &[usize],
    saved: Option<&[Matrix]>,
    beta: f32,
    threshold: Option<f32>,
) {
    load_examples(p, data, rows, hp);
    if let Some(saved) = saved {
        copy_rows(saved, rows, &mut p.free.layers);
    }
    let verdicts = Verdicts {
        surprise: &mut stats.surprise,
        learns: &mut stats.learns,
        learners: &mut stats.learners,
    };
    let (correct, energy) = (&mut stats.correct, &mut stats.energy);
    let at_free = |p: &mut Particles| {
        *correct = count_correct(p.free.output(), &p.target);
        p.relax.energy(net, &p.free, energy);
        if let Some(heads) = &hp.heads {
            // An example with its own target row keeps every unit's target.
            let labels = rows
                .iter()
                .map(|&i| data.target(i).is_none().then_some(data.labels[i] as usize));
            release_other_heads(p, heads, labels);
        }
    };
    p.eqprop_phases(net, &hp.dynamics(), beta, threshold, verdicts, at_free);
    p.refresh_delta(hp.nudging);
    if hp.heads.is_some() {
        // The generative phases clamp the one-hot labels.
        load_targets(p, data, rows, hp);
    }
}

/// Multi-head output: the target of every unit outside the head of the example's label becomes
/// its own free value (so the nudge leaves it alone, to first order). Examples without a label
/// here (`None`: they carry their own target row) keep every target.
fn release_other_heads(
    p: &mut Particles,
    heads: &[Vec<usize>],
    labels: impl Iterator<Item = Option<usize>>,
) {
    for (r, label) in labels.enumerate() {
        let Some(label) = label else { continue };
        let Some(head) = heads.iter().find(|h| h.contains(&label)) else {
            continue;
        };
        for j in 0..p.target.cols() {
            if !head.contains(&j) {
                p.target.set(r, j, p.free.output().get(r, j));
            }
        }
    }
}

/// Fills the inputs and one-hot targets of a chunk.
fn load_examples(p: &mut Particles, data: &Dataset, indices: &[usize], hp: &Hyperparams) {
    load_targets(p, data, indices, hp);
    load_inputs(p, data, indices, hp.persistent);
}

/// Sets the targets of a chunk: one-hot labels, or the example's own target row.
fn load_targets(p: &mut Particles, data: &Dataset, indices: &[usize], hp: &Hyperparams) {
    p.target.fill(hp.target_off);
    for (r, &i) in indices.iter().enumerate() {
        match data.target(i) {
            Some(row) => p.target.row_mut(r).copy_from_slice(row),
            None => p.target.set(r, data.labels[i] as usize, hp.target_on),
        }
    }
}

/// Fills the inputs of a chunk (and, unless `persistent`, starts every other layer at 0).
fn load_inputs(p: &mut Particles, data: &Dataset, indices: &[usize], persistent: bool) {
    for (r, &i) in indices.iter().enumerate() {
        p.free.set_row(0, r, data.image(i));
        if !persistent {
            for layer in p.free.layers.iter_mut().skip(1) {
                layer.row_mut(r).fill(0.0);
            }
        }
    }
}

/// Copies saved rows `indices` of every free layer into the chunk's states.
fn copy_rows(saved: &[Matrix], indices: &[usize], layers: &mut [Matrix]) {
    for (k, layer) in layers.iter_mut().enumerate().skip(1) {
        for (r, &i) in indices.iter().enumerate() {
            layer.row_mut(r).copy_from_slice(saved[k].row(i));
        }
    }
}

/// Stores the chunk's free fixed points as the new persistent states of `indices`.
fn copy_rows_back(layers: &[Matrix], indices: &[usize], saved: &mut [Matrix]) {
    for (k, layer) in layers.iter().enumerate().skip(1) {
        for (r, &i) in indices.iter().enumerate() {
            saved[k].row_mut(i).copy_from_slice(layer.row(r));
        }
    }
}

/// Offset of each chunk's first example within the mini-batch.
fn chunk_starts(particles: &[Particles]) -> Vec<usize> {
    particles
        .iter()
        .scan(0, |at, p| Some(std::mem::replace(at, *at + p.batch())))
        .collect()
}

fn count_correct(output: &Matrix, target: &Matrix) -> usize {
    (0..output.rows())
        .filter(|&r| output.argmax_row(r) == target.argmax_row(r))
        .count()
}

/// Sizes of the parallel chunks of a mini-batch: at least two (so two cores share even a small
/// batch), at most `CHUNK` (16) samples each, as even as possible.
pub fn chunk_sizes(batch: usize) -> Vec<usize> {
    let count = batch.div_ceil(CHUNK).max(2).min(batch.max(1));
    (0..count)
        .map(|i| batch / count + usize::from(i < batch % count))
        .collect()
}

/// The shuffled example order and the per-batch signed `beta` of an epoch.
pub fn epoch_plan(hp: &Hyperparams, epoch: usize, n: usize) -> (Vec<usize>, Vec<f32>) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(hp.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let betas = (0..n / hp.batch_size)
        .map(|_| match hp.nudging {
            Nudging::RandomSign if rng.random_bool(0.5) => -hp.beta,
            _ => hp.beta,
        })
        .collect();
    (order, betas)
}

/// Examples per parallel chunk of evaluation.
const EVAL_CHUNK: usize = 250;

/// The free phase of `idx` from zero states (what evaluation sees), in `slot`'s particles (made
/// or remade for the chunk's size: a worker reuses its buffers from chunk to chunk); the
/// targets are loaded when asked for (the labels must then name output units).
fn free_chunk<'a>(
    slot: &'a mut Option<Particles>,
    net: &Network,
    hp: &Hyperparams,
    data: &Dataset,
    idx: &[usize],
    targets: bool,
) -> &'a mut Particles {
    if slot.as_ref().is_none_or(|p| p.batch() != idx.len()) {
        *slot = Some(Particles::new(&hp.layers, idx.len()));
    }
    let p = slot.as_mut().expect("filled above");
    let fresh = Hyperparams {
        persistent: false,
        ..hp.clone()
    };
    match targets {
        true => load_examples(p, data, idx, &fresh),
        false => load_inputs(p, data, idx, false),
    }
    p.free_phase(net, hp.t_free, hp.eps);
    p
}

/// The output layer at the free fixed point of every example, one row each.
pub fn free_outputs(net: &Network, hp: &Hyperparams, data: &Dataset) -> Matrix {
    free_layer(net, hp, data, hp.layers.len() - 1)
}

/// Layer `k` at the free fixed point of every example (input clamped, every other layer from
/// 0, as evaluation sees it), one row each.
pub fn free_layer(net: &Network, hp: &Hyperparams, data: &Dataset, k: usize) -> Matrix {
    let indices: Vec<usize> = (0..data.len()).collect();
    let rows: Vec<Vec<f32>> = indices
        .par_chunks(EVAL_CHUNK)
        .map_init(
            || None,
            |slot, idx| {
                free_chunk(slot, net, hp, data, idx, false).free.layers[k]
                    .as_slice()
                    .to_vec()
            },
        )
        .collect();
    Matrix::from_vec(data.len(), hp.layers[k], rows.concat()).expect("one row per example")
}

/// Where every example of a data set settles: each layer's state (one row per example) and the
/// energy `E` there.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub layers: Vec<Matrix>,
    pub energy: Vec<f32>,
}

/// Relaxes every example of `data` as training does, all at once: the free phase (`t_free`
/// steps from zero, the input clamped), then, when `beta` is not 0, the phase nudged toward
/// each example's target with strength `beta` (`t_nudge` more steps from the free fixed point).
pub fn settle(net: &Network, hp: &Hyperparams, data: &Dataset, beta: f32) -> Settled {
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut slot = None;
    let p = free_chunk(&mut slot, net, hp, data, &indices, true);
    let state = match beta {
        0.0 => &p.free,
        _ => {
            p.plus.copy_from(&p.free);
            let nudge = Nudge {
                layer: net.output_layer(),
                beta,
                target: &p.target,
            };
            let phase = Phase {
                steps: hp.t_nudge,
                eps: hp.eps,
                nudge: Some(nudge),
            };
            p.relax.relax(net, &mut p.plus, &phase);
            &p.plus
        }
    };
    let mut energy = vec![0.0; data.len()];
    p.relax.energy(net, state, &mut energy);
    Settled {
        layers: state.layers.clone(),
        energy,
    }
}

/// Test error and mean free energy: the free phase alone, in parallel chunks.
pub fn evaluate(net: &Network, hp: &Hyperparams, data: &Dataset) -> Evaluation {
    let indices: Vec<usize> = (0..data.len()).collect();
    let (wrong, energy) = indices
        .par_chunks(EVAL_CHUNK)
        .map_init(
            || None,
            |slot, idx| {
                let p = free_chunk(slot, net, hp, data, idx, true);
                let mut energy = vec![0.0; idx.len()];
                p.relax.energy(net, &p.free, &mut energy);
                let wrong = idx.len() - count_correct(p.free.output(), &p.target);
                (wrong, energy.iter().map(|&e| e as f64).sum::<f64>())
            },
        )
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = data.len().max(1) as f64;
    Evaluation {
        error: 100.0 * wrong as f64 / n,
        mean_energy: energy / n,
    }
}
