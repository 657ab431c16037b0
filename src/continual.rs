//! Continual learning: tasks learned one after another, with or without replay.
//!
//! Split-MNIST (van de Ven, Tuytelaars & Tolias 2022, "Three types of incremental learning")
//! cuts the ten classes into five tasks `{0,1}, {2,3}, ..., {8,9}`. Three scenarios ask
//! different questions of the same training:
//! - **class**-incremental: which of all classes seen so far is it (argmax over every output);
//! - **task**-incremental: the task is given, which of its classes is it (argmax over the task's
//!   outputs);
//! - **domain**-incremental: is it the task's first or second class (two outputs shared by every
//!   task).
//!
//! Replay decides what the network rehearses while it learns a new task: nothing (`none`, plain
//! fine-tuning, which forgets), stored real images of the old classes (`real`, a reference),
//! everything at once (`joint`, the upper bound), or its own dreams (`dreams`, generative
//! replay): right after each task, the network dreams images of that task's classes from codes
//! drawn from the class-conditional prior of [`crate::prior`], decoded by a copy of the network
//! whose input couplings are refit to reconstruct (or, without the prior, label clamped and
//! input free from noise, see [`crate::dream`], training generatively so that its couplings stay
//! a decoder), labels each with its own free-phase prediction, and keeps them; every later task
//! interleaves the kept dreams with its own images. No real image of an old task is kept.

use crate::Result;
use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::dream::{DreamOptions, dream};
use crate::network::Network;
use crate::prior::LatentPrior;
use crate::tensor::Matrix;
use crate::train::{Trainer, free_outputs};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;

pub use crate::error::ContinualError;

mod experiment;
pub use experiment::{
    DEFAULT_PIXEL_NOISE, DEFAULT_PRIOR_COMPONENTS, Experiment, Outcome, Protocol, confusion_csv,
    dream_sample_path, write_dream_sample,
};

/// Generative learning rate (as a fraction of the discriminative one) of dream replay from noise,
/// by scenario (BENCHMARKS.md has the measurements).
///
/// Class scenario: 1/200, higher than for dreaming alone (1/1000) because each task trains for a
/// few epochs only. On the first two Split-MNIST tasks (`best` preset, 5 epochs per task),
/// accuracy on tasks 1 and 2 after task 2: 1/1000 gives 74% and 99%, 1/200 91% and 98%, 1/133
/// 96% and 91%, 1/100 98% and 85% (old-class attractors start to capture new images).
///
/// Task scenario: 1/3000. Generative training disturbs the task heads more than poorer dreams
/// do (five tasks: 1/200 80.3%, 1/1000 82.8%, 1/3000 92.1%, 1/10000 91.8%). The domain scenario
/// keeps 1/200 (68.4% against 65.6% at 1/3000).
///
/// Dreams from the latent prior need no generative training: they go through a decoder of
/// their own ([`crate::prior`]), and generative training at 1/400 on top gains nothing in ten
/// times the time (Split-MNIST class-IL seed 1: 91.74% in 71 s, 91.74% in 7 s without).
pub fn dream_replay_lr_scale(scenario: Scenario) -> f32 {
    match scenario {
        Scenario::Class | Scenario::Domain => 0.005,
        Scenario::Task => 0.0003,
    }
}

/// What the network must tell apart at test time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Class,
    Task,
    Domain,
}

/// What the network rehearses while it learns a new task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replay {
    None,
    Dreams,
    Real,
    Joint,
}

/// How a continual run goes.
#[derive(Clone, Debug)]
pub struct ContinualOptions {
    pub scenario: Scenario,
    pub replay: Replay,
    /// The classes of each task, in training order.
    pub tasks: Vec<Vec<u8>>,
    /// How many of the tasks are learned (all of them: `tasks.len()`); the others are only
    /// measured.
    pub stages: usize,
    /// Epochs over each task's data (its replay included).
    pub epochs_per_task: usize,
    /// Replayed examples per old class and task (dreamed, or stored real ones).
    pub replay_per_class: usize,
    /// How the dreams relax (`dreams` replay).
    pub dream: DreamOptions,
    /// Dreams are trained toward the dreamer's whole output (soft targets: every unit, every
    /// head) instead of a one-hot label of their class.
    pub soft_targets: bool,
    /// Learning without forgetting on the new task's images: their targets on the units of
    /// other tasks are the network's own outputs from before the task (not kept between
    /// tasks: no old image is stored).
    pub distill_new: bool,
    /// Dreams of each task's classes are made once, right after the task is learned, by the
    /// network as it stood then, and kept for every later task (dreams, never real images);
    /// otherwise every old class is dreamed anew before each task by the current network.
    pub keep_dreams: bool,
    /// Dreams are drawn from a class-conditional prior over the first hidden layer with this
    /// many components per class and decoded by a refit copy of the network
    /// ([`crate::prior`]), both fitted right after each task on its images; 0 dreams from noise
    /// (plain relaxation). Needs kept dreams.
    pub prior_components: usize,
    /// Share of every real training image's pixels replaced by uniform noise in `[0, 1]` (a
    /// fresh draw per task), so that texture does not tell real images from dreams.
    pub pixel_noise: f32,
    /// Every real training image is scaled by a factor drawn uniformly in `[dimming, 1]` (a
    /// fresh draw per task): dreams are dimmer than real strokes, and brightness should not
    /// tell them apart either. 1 leaves the images as they are.
    pub dimming: f32,
}

/// Split-MNIST's tasks: consecutive pairs of the `classes` labels.
pub fn split_tasks(classes: u8) -> Vec<Vec<u8>> {
    (0..classes)
        .collect::<Vec<_>>()
        .chunks(2)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Test accuracy (%) after each training stage on each task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyMatrix {
    /// `accuracy[t][j]`: after training stage `t`, on task `j` (every task is measured, also
    /// those not yet learned).
    pub accuracy: Vec<Vec<f64>>,
}

impl AccuracyMatrix {
    /// Mean accuracy over the tasks learned by stage `t` (all tasks for a single joint stage).
    pub fn average_after(&self, t: usize) -> f64 {
        let row = &self.accuracy[t];
        let learned = if self.accuracy.len() == 1 {
            row.len()
        } else {
            t + 1
        };
        row[..learned].iter().sum::<f64>() / learned as f64
    }

    /// Mean accuracy over all tasks after the last stage.
    pub fn final_average(&self) -> f64 {
        self.average_after(self.accuracy.len() - 1)
    }

    /// Mean over the tasks before the last of the drop from their best accuracy (after they
    /// were learned) to their final one; 0 for a single stage.
    pub fn forgetting(&self) -> f64 {
        let stages = self.accuracy.len();
        if stages < 2 {
            return 0.0;
        }
        let last = &self.accuracy[stages - 1];
        let drops: Vec<f64> = (0..stages - 1)
            .map(|j| {
                let best = (j..stages - 1)
                    .map(|t| self.accuracy[t][j])
                    .fold(f64::MIN, f64::max);
                best - last[j]
            })
            .collect();
        drops.iter().sum::<f64>() / drops.len() as f64
    }

    /// The matrix as CSV: a header, one row per stage.
    pub fn to_csv(&self, tasks: &[Vec<u8>]) -> String {
        let names: Vec<String> = tasks.iter().map(|t| task_name(t)).collect();
        let mut csv = format!("after,{},average\n", names.join(","));
        for (t, row) in self.accuracy.iter().enumerate() {
            let stage = if self.accuracy.len() == 1 {
                "joint".to_string()
            } else {
                names[t].clone()
            };
            let cells: Vec<String> = row.iter().map(|a| format!("{a:.2}")).collect();
            csv += &format!("{stage},{},{:.2}\n", cells.join(","), self.average_after(t));
        }
        csv
    }
}

/// A task's name, its classes joined by `-` (e.g. `0-1`).
pub fn task_name(classes: &[u8]) -> String {
    classes
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

/// What happens during a run, for progress display.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Training stage `stage` (0-based) of `stages` starts on this many examples, of which
    /// `replayed` are rehearsals.
    Stage {
        stage: usize,
        stages: usize,
        examples: usize,
        replayed: usize,
    },
    /// The replay dreams of a stage (images one per row, with the dreamer's labels), and the
    /// share (%) of them whose label agrees with the clamped one.
    Dreamed {
        stage: usize,
        dreams: &'a Dataset,
        agreement: f64,
    },
    /// A batch of stage training finished: examples done of the epoch, epoch (1-based).
    Batch { epoch: usize, done: usize },
    /// A stage finished; its row of the matrix and the confusion of the test images over every
    /// output unit (`confusion[truth][guess]`, counts; the training label in the domain
    /// scenario).
    Measured {
        stage: usize,
        row: &'a [f64],
        confusion: &'a [Vec<usize>],
    },
}

/// `Ok` when `ok`, else `error`.
fn ensure(ok: bool, error: ContinualError) -> Result<(), ContinualError> {
    if ok { Ok(()) } else { Err(error) }
}

impl ContinualOptions {
    /// Checks the options against each other and against the network of `hp`, before any
    /// data is touched.
    pub fn validate(&self, hp: &Hyperparams) -> Result<()> {
        ensure(
            (1..=self.tasks.len()).contains(&self.stages),
            ContinualError::Stages {
                tasks: self.tasks.len(),
                stages: self.stages,
            },
        )?;
        ensure(self.epochs_per_task >= 1, ContinualError::NoEpochs)?;
        ensure(
            self.replay_per_class >= 1 || matches!(self.replay, Replay::None | Replay::Joint),
            ContinualError::NothingReplayed(format!("{:?}", self.replay)),
        )?;
        let outputs = *hp.layers.last().expect("validated layers");
        let needed = match self.scenario {
            Scenario::Domain => 2,
            _ => self
                .tasks
                .iter()
                .flatten()
                .map(|&c| c as usize + 1)
                .max()
                .unwrap_or(0),
        };
        ensure(
            outputs >= needed,
            ContinualError::TooFewOutputs {
                scenario: format!("{:?}", self.scenario),
                needed,
                outputs,
            },
        )?;
        ensure(
            self.prior_components == 0 || self.keep_dreams,
            ContinualError::PriorNeedsKeptDreams,
        )?;
        ensure(
            (0.0..=1.0).contains(&self.pixel_noise),
            ContinualError::PixelNoise(self.pixel_noise),
        )?;
        ensure(
            self.dimming > 0.0 && self.dimming <= 1.0,
            ContinualError::Dimming(self.dimming),
        )?;
        self.dream.validate()?;
        let classes = self.tasks.iter().map(Vec::len).sum::<usize>();
        let replayed = self.replay_per_class.saturating_mul(classes);
        crate::config::check_size(&hp.layers, replayed).map_err(|source| {
            ContinualError::TooManyReplayed {
                replay_per_class: self.replay_per_class,
                source,
            }
        })?;
        Ok(())
    }
}

/// Runs the tasks one after another (or all at once for `joint`) from a fresh network of `hp`
/// and measures every task's test accuracy after every stage.
///
/// In the domain scenario the network needs two outputs; in the others one per class.
pub fn run(
    hp: &Hyperparams,
    train: &Dataset,
    test: &Dataset,
    options: &ContinualOptions,
    mut on_event: impl FnMut(Event) + Send,
) -> Result<AccuracyMatrix> {
    options.validate(hp)?;
    hp.check_inputs(train)?;
    hp.check_inputs(test)?;
    let outputs = *hp.layers.last().expect("validated layers");
    let stages: Vec<Vec<usize>> = match options.replay {
        Replay::Joint => vec![(0..options.tasks.len()).collect()],
        _ => (0..options.stages.min(options.tasks.len()))
            .map(|t| vec![t])
            .collect(),
    };
    // The task scenario trains one head per task: an example's cost covers its task's units.
    let heads = (options.scenario == Scenario::Task).then(|| {
        options
            .tasks
            .iter()
            .map(|t| t.iter().map(|&c| c as usize).collect())
            .collect()
    });
    let stage_hp = |s: usize| Hyperparams {
        epochs: options.epochs_per_task,
        seed: hp.seed.wrapping_add(s as u64),
        generative: hp.generative.filter(|_| options.replay == Replay::Dreams),
        heads: heads.clone(),
        ..hp.clone()
    };
    let mut trainer = Trainer::new(stage_hp(0))?;
    let mut accuracy = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(hp.seed ^ 0xC0FF_EE00);
    let mut kept = train.empty_like();
    let mut prior = LatentPrior::new(outputs);
    for (s, learned) in stages.iter().enumerate() {
        let current: Vec<u8> = learned
            .iter()
            .flat_map(|&t| options.tasks[t].clone())
            .collect();
        let old: Vec<u8> = options.tasks[..learned[0]].concat();
        let clean = relabel(subset(train, &current), options);
        let mut fresh = clean.clone();
        replace_pixels_with_noise(&mut fresh, options.pixel_noise, hp.seed ^ s as u64);
        dim_images(&mut fresh, options.dimming, hp.seed ^ 0xC0 ^ s as u64);
        if options.distill_new && s > 0 {
            distill_targets(trainer.network(), hp, &mut fresh, &current, options);
        }
        let replayed = match options.replay {
            Replay::Real => real_replay(train, &old, options, &mut rng),
            Replay::Dreams if !old.is_empty() => {
                let mut dreams = options.dream.clone();
                dreams.seed = options.dream.seed.wrapping_add(s as u64);
                // With kept dreams only the task just learned is dreamed; the older ones were
                // dreamed when they were fresh.
                let dreamed = match options.keep_dreams {
                    true => options.tasks[learned[0] - 1].clone(),
                    false => old.clone(),
                };
                // The dreamer is the network as it stands before this task.
                let dreamer = match options.prior_components {
                    0 => Dreamer::Relaxed,
                    _ => Dreamer::Prior(&prior),
                };
                let (dreams, agreement) = dream_replay(
                    trainer.network(),
                    hp,
                    &fresh,
                    &dreamed,
                    options,
                    &dreams,
                    dreamer,
                );
                on_event(Event::Dreamed {
                    stage: s,
                    dreams: &dreams,
                    agreement,
                });
                match options.keep_dreams {
                    true => {
                        kept.extend(&dreams);
                        kept.clone()
                    }
                    false => dreams,
                }
            }
            _ => train.empty_like(),
        };
        let mut data = fresh;
        data.extend(&replayed);
        on_event(Event::Stage {
            stage: s,
            stages: stages.len(),
            examples: data.len(),
            replayed: replayed.len(),
        });
        let chains = trainer.dream_chains();
        trainer = Trainer::resume(
            stage_hp(s),
            trainer.network().clone(),
            Default::default(),
            None,
        )
        .with_dream_chains(chains);
        train_stage(&mut trainer, &data, &mut on_event)?;
        // The prior of a task is needed for the dreams made before the next one.
        let dreams_follow = options.replay == Replay::Dreams && s + 1 < stages.len();
        if dreams_follow && options.prior_components > 0 {
            let seed = hp.seed ^ ((s as u64) << 8);
            prior.learn(
                trainer.network(),
                hp,
                &clean,
                options.prior_components,
                seed,
            );
        }
        let outputs = free_outputs(trainer.network(), hp, test);
        let row = measure_outputs(&outputs, test, options);
        on_event(Event::Measured {
            stage: s,
            row: &row,
            confusion: &confusion(&outputs, test, options),
        });
        accuracy.push(row);
    }
    Ok(AccuracyMatrix { accuracy })
}

fn train_stage(
    trainer: &mut Trainer,
    data: &Dataset,
    on_event: &mut (impl FnMut(Event) + Send),
) -> Result<()> {
    let batch = trainer.hyperparams().batch_size;
    ensure(
        data.len() >= batch,
        ContinualError::TooFewExamples {
            examples: data.len(),
            batch_size: batch,
        },
    )?;
    let stop = AtomicBool::new(false);
    while !trainer.finished() {
        let epoch = trainer.progress().epoch + 1;
        trainer
            .run_epoch(data, &stop, |p| {
                on_event(Event::Batch {
                    epoch,
                    done: p.batch * batch,
                })
            })
            .completed()?;
    }
    Ok(())
}

/// The images of `classes`, in data-set order.
fn subset(data: &Dataset, classes: &[u8]) -> Dataset {
    let keep: Vec<usize> = (0..data.len())
        .filter(|&i| classes.contains(&data.labels[i]))
        .collect();
    data.select(&keep)
}

/// The training labels of a scenario: the class itself, or (domain) its place in its task.
fn relabel(mut data: Dataset, options: &ContinualOptions) -> Dataset {
    if options.scenario == Scenario::Domain {
        for label in &mut data.labels {
            *label = domain_label(&options.tasks, *label);
        }
    }
    data
}

fn task_of(tasks: &[Vec<u8>], class: u8) -> &[u8] {
    tasks
        .iter()
        .find(|t| t.contains(&class))
        .expect("every class belongs to a task")
}

fn domain_label(tasks: &[Vec<u8>], class: u8) -> u8 {
    tasks
        .iter()
        .find_map(|t| t.iter().position(|&c| c == class))
        .expect("every class belongs to a task") as u8
}

/// Stored real examples: `replay_per_class` random training images of each old class.
fn real_replay(
    train: &Dataset,
    old: &[u8],
    options: &ContinualOptions,
    rng: &mut ChaCha8Rng,
) -> Dataset {
    let mut keep = Vec::new();
    for &class in old {
        let mut of_class: Vec<usize> = (0..train.len())
            .filter(|&i| train.labels[i] == class)
            .collect();
        of_class.shuffle(rng);
        keep.extend(of_class.into_iter().take(options.replay_per_class));
    }
    relabel(train.select(&keep), options)
}

/// How dreams are made.
#[derive(Clone, Copy)]
enum Dreamer<'a> {
    /// Every free unit from noise, relaxed with the label clamped ([`dream`]).
    Relaxed,
    /// From codes drawn from the class-conditional prior, decoded by the network's copy with
    /// refit input couplings ([`LatentPrior::dream`]).
    Prior(&'a LatentPrior),
}

/// Replaces a `share` of the pixels of every image by uniform noise in `[0, 1]`.
fn replace_pixels_with_noise(data: &mut Dataset, share: f32, seed: u64) {
    if share <= 0.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05EE_D0F0_015E);
    for pixel in data.images.to_mut() {
        if rng.random_range(0.0..1.0) < share {
            *pixel = rng.random_range(0.0..1.0);
        }
    }
}

/// Scales every image by a factor drawn uniformly in `[low, 1]`; `low >= 1` leaves them alone.
fn dim_images(data: &mut Dataset, low: f32, seed: u64) {
    if low >= 1.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = data.pixels();
    for image in data.images.to_mut().chunks_mut(pixels) {
        let factor: f32 = rng.random_range(low..1.0);
        image.iter_mut().for_each(|v| *v *= factor);
    }
}

/// Dreams of the old classes, labelled by the dreamer's own free-phase prediction, and the
/// share (%) of them whose label is the clamped one.
///
/// Class and task scenarios dream each old class on its own output unit; the domain scenario
/// has only the two within-task units to clamp, so its dreams are of "first" and "second"
/// classes in general.
fn dream_replay(
    net: &Network,
    hp: &Hyperparams,
    new: &Dataset,
    old: &[u8],
    options: &ContinualOptions,
    dream_options: &DreamOptions,
    dreamer: Dreamer,
) -> (Dataset, f64) {
    let units: Vec<usize> = match options.scenario {
        Scenario::Domain => vec![0, 1],
        _ => old.iter().map(|&c| c as usize).collect(),
    };
    let per_unit = options.replay_per_class * old.len() / units.len();
    let labels: Vec<usize> = units
        .iter()
        .flat_map(|&u| std::iter::repeat_n(u, per_unit))
        .collect();
    let images = match dreamer {
        Dreamer::Relaxed => dream(net, &labels, dream_options).images,
        Dreamer::Prior(prior) => prior.dream(net, &labels, dream_options),
    };
    let mut data = Dataset {
        images: images.as_slice().to_vec().into(),
        labels: vec![0; labels.len()],
        ..new.empty_like()
    };
    let outputs = free_outputs(net, hp, &data);
    let mut agree = 0usize;
    for (i, label) in data.labels.iter_mut().enumerate() {
        // In the task scenario a dream is labelled within its own task's head.
        let candidates: Vec<usize> = match options.scenario {
            Scenario::Task => task_of(&options.tasks, labels[i] as u8)
                .iter()
                .map(|&c| c as usize)
                .collect(),
            _ => units.clone(),
        };
        *label = argmax_among(outputs.row(i), &candidates) as u8;
        agree += usize::from(*label as usize == labels[i]);
    }
    if options.soft_targets {
        data.targets = (0..data.len())
            .map(|i| Some(outputs.row(i).to_vec()))
            .collect();
    }
    let agreement = 100.0 * agree as f64 / labels.len().max(1) as f64;
    (data, agreement)
}

/// Gives every new image a target row: one-hot on the units of the current task (`current`
/// classes; the two units in the domain scenario), the network's own free output elsewhere.
fn distill_targets(
    net: &Network,
    hp: &Hyperparams,
    fresh: &mut Dataset,
    current: &[u8],
    options: &ContinualOptions,
) {
    let outputs = free_outputs(net, hp, fresh);
    let units: Vec<usize> = match options.scenario {
        Scenario::Domain => vec![0, 1],
        _ => current.iter().map(|&c| c as usize).collect(),
    };
    fresh.targets = (0..fresh.len())
        .map(|i| {
            let mut row = outputs.row(i).to_vec();
            for &u in &units {
                row[u] = match u == fresh.labels[i] as usize {
                    true => hp.target_on,
                    false => hp.target_off,
                };
            }
            Some(row)
        })
        .collect();
}

/// Test accuracy (%) on every task under the scenario's question.
pub fn measure(
    net: &Network,
    hp: &Hyperparams,
    test: &Dataset,
    options: &ContinualOptions,
) -> Vec<f64> {
    measure_outputs(&free_outputs(net, hp, test), test, options)
}

/// `confusion[truth][guess]`: how many test images of each (training) label the free phase
/// puts on each output unit, the argmax over every unit.
fn confusion(outputs: &Matrix, test: &Dataset, options: &ContinualOptions) -> Vec<Vec<usize>> {
    let units = outputs.cols();
    let mut counts = vec![vec![0usize; units]; units];
    for i in 0..test.len() {
        let truth = match options.scenario {
            Scenario::Domain => domain_label(&options.tasks, test.labels[i]),
            _ => test.labels[i],
        } as usize;
        if truth < units {
            counts[truth][outputs.argmax_row(i)] += 1;
        }
    }
    counts
}

/// [`measure`] on the free outputs of the test images.
fn measure_outputs(outputs: &Matrix, test: &Dataset, options: &ContinualOptions) -> Vec<f64> {
    let every: Vec<usize> = (0..outputs.cols()).collect();
    options
        .tasks
        .iter()
        .map(|task| {
            let own: Vec<usize> = task.iter().map(|&c| c as usize).collect();
            let candidates = match options.scenario {
                Scenario::Class => &every,
                Scenario::Task => &own,
                Scenario::Domain => &every,
            };
            let mut right = 0usize;
            let mut total = 0usize;
            for i in (0..test.len()).filter(|&i| task.contains(&test.labels[i])) {
                let guess = argmax_among(outputs.row(i), candidates);
                let truth = match options.scenario {
                    Scenario::Domain => domain_label(&options.tasks, test.labels[i]) as usize,
                    _ => test.labels[i] as usize,
                };
                right += usize::from(guess == truth);
                total += 1;
            }
            100.0 * right as f64 / total.max(1) as f64
        })
        .collect()
}

/// The candidate unit with the largest value (the first of equals, like
/// [`Matrix::argmax_row`](crate::tensor::Matrix::argmax_row)).
fn argmax_among(row: &[f32], candidates: &[usize]) -> usize {
    let mut best = candidates[0];
    for &c in candidates {
        if row[c] > row[best] {
            best = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dream::DreamOptions;
    use rand::SeedableRng;

    /// New images keep one-hot targets on their task's units and the network's own free
    /// outputs on every other unit.
    #[test]
    fn distilled_targets_are_one_hot_on_the_task_and_the_outputs_elsewhere() {
        let hp = Hyperparams {
            layers: vec![4, 6, 4],
            ..Hyperparams::preset("paper").unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Network::glorot(&hp.layers, &mut rng).unwrap();
        let mut fresh = Dataset {
            images: vec![0.9, 0.1, 0.0, 0.5, 0.2, 0.8, 0.7, 0.0].into(),
            labels: vec![2, 3],
            ..Dataset::empty(2, 2)
        };
        let options = ContinualOptions {
            scenario: Scenario::Class,
            replay: Replay::None,
            tasks: vec![vec![0, 1], vec![2, 3]],
            stages: 2,
            epochs_per_task: 1,
            replay_per_class: 0,
            dream: DreamOptions::default(),
            soft_targets: false,
            distill_new: true,
            keep_dreams: false,
            prior_components: 0,
            pixel_noise: 0.0,
            dimming: 1.0,
        };
        let outputs = free_outputs(&net, &hp, &fresh);
        distill_targets(&net, &hp, &mut fresh, &[2, 3], &options);
        for i in 0..2 {
            let row = fresh.target(i).expect("a target row");
            assert_eq!(&row[..2], &outputs.row(i)[..2]);
            let hot = fresh.labels[i] as usize;
            assert_eq!(row[hot], 1.0);
            assert_eq!(row[5 - hot], 0.0);
        }
        assert!(
            outputs.as_slice().iter().any(|&y| y > 0.0),
            "outputs worth copying"
        );
    }

    /// About the asked share of pixels change, to values in [0, 1]; a share of 0 changes none.
    #[test]
    fn noisy_pixels_replace_the_asked_share() {
        let clean = Dataset {
            images: vec![0.0; 100 * 784].into(),
            labels: vec![0; 100],
            ..Dataset::empty(28, 28)
        };
        let mut noisy = clean.clone();
        replace_pixels_with_noise(&mut noisy, 0.08, 1);
        let changed = noisy.images.iter().filter(|&&v| v != 0.0).count();
        let share = changed as f64 / noisy.images.len() as f64;
        assert!((share - 0.08).abs() < 0.005, "{share}");
        assert!(noisy.images.iter().all(|v| (0.0..=1.0).contains(v)));
        let mut untouched = clean.clone();
        replace_pixels_with_noise(&mut untouched, 0.0, 1);
        assert_eq!(untouched, clean);
    }

    /// Each image is scaled by one factor in [low, 1]; a low of 1 changes nothing.
    #[test]
    fn dimming_scales_each_image_by_one_factor() {
        let clean = Dataset {
            images: (0..50 * 4).map(|i| (i % 4) as f32 / 4.0 + 0.2).collect(),
            labels: vec![0; 50],
            ..Dataset::empty(2, 2)
        };
        let mut dim = clean.clone();
        dim_images(&mut dim, 0.6, 3);
        for (a, b) in clean.images.chunks(4).zip(dim.images.chunks(4)) {
            let factor = b[0] / a[0];
            assert!((0.6..1.0).contains(&factor), "{factor}");
            for (x, y) in a.iter().zip(b) {
                assert!((y - factor * x).abs() < 1e-6);
            }
        }
        let mut same = clean.clone();
        dim_images(&mut same, 1.0, 3);
        assert_eq!(same, clean);
    }

    #[test]
    fn split_mnist_has_five_pairs() {
        assert_eq!(
            split_tasks(10),
            vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7], vec![8, 9]]
        );
        assert_eq!(domain_label(&split_tasks(10), 7), 1);
        assert_eq!(domain_label(&split_tasks(10), 4), 0);
    }

    #[test]
    fn average_and_forgetting_follow_their_definitions() {
        let m = AccuracyMatrix {
            accuracy: vec![
                vec![100.0, 0.0, 0.0],
                vec![60.0, 90.0, 0.0],
                vec![40.0, 70.0, 80.0],
            ],
        };
        assert_eq!(m.average_after(0), 100.0);
        assert_eq!(m.average_after(1), 75.0);
        assert!((m.final_average() - 190.0 / 3.0).abs() < 1e-12);
        // Task 1 fell from 100 to 40, task 2 from 90 to 70.
        assert_eq!(m.forgetting(), 40.0);
        let csv = m.to_csv(&[vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert_eq!(csv.lines().next(), Some("after,0-1,2-3,4-5,average"));
        assert_eq!(csv.lines().nth(2), Some("2-3,60.00,90.00,0.00,75.00"));
        let joint = AccuracyMatrix {
            accuracy: vec![vec![90.0, 80.0]],
        };
        assert_eq!((joint.final_average(), joint.forgetting()), (85.0, 0.0));
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(argmax_among(&[0.0, 1.0, 1.0, 0.5], &[3, 2, 1]), 2);
        assert_eq!(argmax_among(&[0.0; 4], &[2, 3]), 2);
    }
}
