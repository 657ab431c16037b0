//! The continual-learning experiment as `eqprop continual` runs it: Split-MNIST (or
//! Split-Fashion-MNIST), the defaults that follow from the scenario and the replay, and the
//! files a run leaves in its folder.
//!
//! A run, in order: [`Experiment::hyperparams`] (from a preset with the user's changes),
//! [`Experiment::options`], [`Experiment::run`] (training, with `dreams-before-task-N.png` and
//! `confusion.csv` written as it goes), then [`Experiment::write_results`] (`accuracy.csv` and
//! `summary.json`).

use super::{AccuracyMatrix, ContinualOptions, Event, Replay, Scenario};
use crate::config::Hyperparams;
use crate::data::{Dataset, DatasetName};
use crate::dream::DreamOptions;
use crate::learning_rule::Generative;
use crate::picture::{GridLayout, PictureError, labelled_grid, write_png};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Components per class of the latent prior of kept dream replay (BENCHMARKS.md, seeds 1-3:
/// Split-MNIST class-IL 10 components 91.7 / 91.8 / 92.0%, 20: 90.4 / 92.4 / 92.6%, 30: 91.6 /
/// 91.5 / 92.1%; task-IL 10: 98.6 / 98.3 / 98.5%, 20: 97.9 / 98.5 / 98.2%).
pub const DEFAULT_PRIOR_COMPONENTS: usize = 10;

/// Share of noisy pixels in the real images of kept dream replay from noise (no prior) in the
/// class and task scenarios (BENCHMARKS.md: task, seeds 1-3: 98.3 / 95.7 / 98.6% against 97.7
/// / 96.2 / 97.1% without). Decoded dreams from the prior look like data and need none.
pub const DEFAULT_PIXEL_NOISE: f32 = 0.08;

/// Which data set's ten classes are cut into the five two-class tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    SplitMnist,
    SplitFashionMnist,
}

impl Protocol {
    /// The name in file names and reports (`split-mnist`, `split-fashion-mnist`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::SplitMnist => "split-mnist",
            Protocol::SplitFashionMnist => "split-fashion-mnist",
        }
    }

    /// The data set it splits.
    pub fn dataset(self) -> DatasetName {
        match self {
            Protocol::SplitMnist => DatasetName::Mnist,
            Protocol::SplitFashionMnist => DatasetName::FashionMnist,
        }
    }

    /// The preset a run starts from unless told otherwise.
    pub fn default_preset(self) -> &'static str {
        match self {
            Protocol::SplitMnist => "best",
            Protocol::SplitFashionMnist => "best-fashion",
        }
    }
}

impl Scenario {
    /// `class`, `task` or `domain`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Class => "class",
            Scenario::Task => "task",
            Scenario::Domain => "domain",
        }
    }
}

impl Replay {
    /// `none`, `dreams`, `real` or `joint`.
    pub fn name(self) -> &'static str {
        match self {
            Replay::None => "none",
            Replay::Dreams => "dreams",
            Replay::Real => "real",
            Replay::Joint => "joint",
        }
    }
}

/// What a user asks of a continual run (the flags of `eqprop continual`); the settings left at
/// `None` take defaults that depend on the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub protocol: Protocol,
    pub scenario: Scenario,
    pub replay: Replay,
    /// Epochs over each task's data (replay included).
    pub epochs_per_task: usize,
    /// How many of the five tasks are learned (the matrix covers all of them).
    pub tasks: usize,
    /// Replayed examples per old class (dreamed, or stored real ones).
    pub replay_per_class: usize,
    /// Dreams are trained toward the dreamer's whole output, not a one-hot label.
    pub soft_targets: bool,
    /// See [`ContinualOptions::distill_new`].
    pub distill_new: bool,
    /// See [`ContinualOptions::keep_dreams`].
    pub keep_dreams: bool,
    /// Components per class of the latent prior (default: [`DEFAULT_PRIOR_COMPONENTS`] with
    /// kept dream replay, else 0: dreams from noise).
    pub prior_components: Option<usize>,
    /// Share of noisy pixels in the real images (default: [`DEFAULT_PIXEL_NOISE`] with kept
    /// dream replay from noise in the class and task scenarios, else 0).
    pub pixel_noise: Option<f32>,
    /// See [`ContinualOptions::dimming`].
    pub dimming: f32,
}

impl Default for Experiment {
    /// The defaults of `eqprop continual`: Split-MNIST, class scenario, kept dream replay.
    fn default() -> Self {
        Self {
            protocol: Protocol::SplitMnist,
            scenario: Scenario::Class,
            replay: Replay::Dreams,
            epochs_per_task: 5,
            tasks: 5,
            replay_per_class: 1000,
            soft_targets: true,
            distill_new: false,
            keep_dreams: true,
            prior_components: None,
            pixel_noise: None,
            dimming: 1.0,
        }
    }
}

/// What a finished run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub matrix: AccuracyMatrix,
    /// Wall-clock seconds of the run (training, measuring and the files it wrote as it went).
    pub seconds: f64,
}

impl Experiment {
    /// The folder a run writes to unless told otherwise:
    /// `runs/continual/<protocol>-<scenario>-<replay>`.
    pub fn default_out(&self) -> PathBuf {
        PathBuf::from("runs/continual").join(format!(
            "{}-{}-{}",
            self.protocol.name(),
            self.scenario.name(),
            self.replay.name()
        ))
    }

    /// Components per class of the latent prior dreams come from (0: dreams from noise).
    pub fn prior_components(&self) -> usize {
        let kept_dreams = self.replay == Replay::Dreams && self.keep_dreams;
        self.prior_components.unwrap_or(if kept_dreams {
            DEFAULT_PRIOR_COMPONENTS
        } else {
            0
        })
    }

    /// Share of each real training image's pixels replaced by noise.
    pub fn pixel_noise(&self) -> f32 {
        let kept_dreams_from_noise =
            self.replay == Replay::Dreams && self.keep_dreams && self.prior_components() == 0;
        let default = match self.scenario {
            Scenario::Class | Scenario::Task if kept_dreams_from_noise => DEFAULT_PIXEL_NOISE,
            _ => 0.0,
        };
        self.pixel_noise.unwrap_or(default)
    }

    /// The run's hyperparameters from `hp` (a preset with the user's changes): the epochs per
    /// task, two outputs for the domain scenario unless `layers_given` (the user chose the
    /// layers), and generative training for dream replay from noise (dreams from the prior have
    /// their own decoder, and generative training only costs them: BENCHMARKS.md); checked.
    pub fn hyperparams(&self, mut hp: Hyperparams, layers_given: bool) -> Result<Hyperparams> {
        hp.epochs = self.epochs_per_task;
        if self.scenario == Scenario::Domain && !layers_given {
            *hp.layers.last_mut().expect("preset layers") = 2;
        }
        let dreams_from_noise = self.replay == Replay::Dreams && self.prior_components() == 0;
        if dreams_from_noise && hp.generative.is_none() {
            hp.generative = Some(Generative {
                lr_scale: super::dream_replay_lr_scale(self.scenario),
                ..Default::default()
            });
        }
        hp.validate()?;
        Ok(hp)
    }

    /// The options of [`super::run`] for a network of `hp`, dreams relaxing as `dream` says;
    /// checked.
    pub fn options(&self, hp: &Hyperparams, dream: DreamOptions) -> Result<ContinualOptions> {
        let options = ContinualOptions {
            scenario: self.scenario,
            replay: self.replay,
            tasks: super::split_tasks(10),
            stages: self.tasks,
            epochs_per_task: self.epochs_per_task,
            replay_per_class: self.replay_per_class,
            dream,
            soft_targets: self.soft_targets,
            distill_new: self.distill_new,
            keep_dreams: self.keep_dreams,
            prior_components: self.prior_components(),
            pixel_noise: self.pixel_noise(),
            dimming: self.dimming,
        };
        options.validate(hp)?;
        Ok(options)
    }

    /// Runs the tasks ([`super::run`]), passing every event to `on_event`, and writes into `dir`
    /// (which must exist) the dreams replayed before each task (up to 8 per label,
    /// [`dream_sample_path`]) and, at the end, the last stage's confusion matrix
    /// (`confusion.csv`, [`confusion_csv`]), also when training stopped early.
    pub fn run(
        &self,
        hp: &Hyperparams,
        options: &ContinualOptions,
        train: &Dataset,
        test: &Dataset,
        dir: &Path,
        mut on_event: impl FnMut(Event) + Send,
    ) -> Result<Outcome> {
        let started = std::time::Instant::now();
        let mut failed = None;
        let mut last_confusion = Vec::new();
        let result = super::run(hp, train, test, options, |event| {
            on_event(event);
            match event {
                Event::Dreamed { stage, dreams, .. } => {
                    if let Err(e) = write_dream_sample(dreams, &dream_sample_path(dir, stage)) {
                        failed.get_or_insert(e);
                    }
                }
                Event::Measured { confusion, .. } => last_confusion = confusion.to_vec(),
                Event::Stage { .. } | Event::Batch { .. } => {}
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        let path = dir.join("confusion.csv");
        std::fs::write(&path, confusion_csv(&last_confusion)).map_err(|e| Error::io(&path, e))?;
        let matrix = result?;
        Ok(Outcome {
            matrix,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Writes `accuracy.csv` ([`AccuracyMatrix::to_csv`]) and `summary.json` (the settings,
    /// the average accuracy and forgetting, the matrix, the seconds and the hyperparameters)
    /// into `dir`.
    pub fn write_results(
        &self,
        dir: &Path,
        hp: &Hyperparams,
        options: &ContinualOptions,
        outcome: &Outcome,
    ) -> Result<()> {
        let matrix = &outcome.matrix;
        let csv = dir.join("accuracy.csv");
        std::fs::write(&csv, matrix.to_csv(&options.tasks)).map_err(|e| Error::io(&csv, e))?;
        let summary = serde_json::json!({
            "protocol": self.protocol.name(),
            "scenario": self.scenario.name(),
            "replay": self.replay.name(),
            "epochs_per_task": options.epochs_per_task,
            "replay_per_class": options.replay_per_class,
            "soft_targets": options.soft_targets,
            "distill_new": options.distill_new,
            "keep_dreams": options.keep_dreams,
            "prior_components": options.prior_components,
            "pixel_noise": options.pixel_noise,
            "dimming": options.dimming,
            "average_accuracy": matrix.final_average(),
            "forgetting": matrix.forgetting(),
            "accuracy": matrix.accuracy,
            "seconds": outcome.seconds,
            "hyperparams": hp,
        });
        let json = dir.join("summary.json");
        let text = serde_json::to_string_pretty(&summary).expect("a JSON value serialises");
        std::fs::write(&json, text).map_err(|e| Error::io(&json, e))
    }
}

/// Where [`Experiment::run`] writes the dreams replayed before training stage `stage`
/// (0-based): `dreams-before-task-<stage + 1>.png`.
pub fn dream_sample_path(dir: &Path, stage: usize) -> PathBuf {
    dir.join(format!("dreams-before-task-{}.png", stage + 1))
}

/// The last stage's confusion matrix as CSV: one row per true label, one column per output.
pub fn confusion_csv(confusion: &[Vec<usize>]) -> String {
    let units: Vec<String> = (0..confusion.len()).map(|u| u.to_string()).collect();
    let mut csv = format!("truth\\guess,{}\n", units.join(","));
    for (truth, row) in confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(usize::to_string).collect();
        csv += &format!("{truth},{}\n", cells.join(","));
    }
    csv
}

/// Writes up to 8 dreams of each label (0-9) as a labelled grid PNG.
pub fn write_dream_sample(dreams: &Dataset, path: &Path) -> Result<(), PictureError> {
    let mut rows: Vec<(usize, Vec<&[f32]>)> = Vec::new();
    for label in 0..10u8 {
        let images: Vec<&[f32]> = (0..dreams.len())
            .filter(|&i| dreams.labels[i] == label)
            .take(8)
            .map(|i| dreams.image(i))
            .collect();
        if !images.is_empty() {
            rows.push((label as usize, images));
        }
    }
    let layout = GridLayout {
        width: dreams.cols,
        height: dreams.rows,
        scale: 2,
    };
    write_png(&labelled_grid(&rows, layout), path)
}
