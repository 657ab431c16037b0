//! A training run: EqProp epochs on an [`Engine`], each evaluated on the test set, checkpointed
//! and recorded as it ends, resumable after an interruption.
//!
//! [`Run::train`] is what `eqprop train` does; the command line only parses its flags, opens the
//! run, and shows what an [`Observer`] hears (progress bars, the epoch line, the curve).
//!
//! ```no_run
//! use eqprop::{config::Hyperparams, data::DatasetName, device::Device, run::Run};
//! # fn main() -> eqprop::Result<()> {
//! # let (train, test) = (eqprop::data::Dataset::empty(0, 784), eqprop::data::Dataset::empty(0, 784));
//! let mut run = Run::new(Hyperparams::preset("best")?, DatasetName::Mnist, Device::Cpu)?;
//! let report = run.train(&train, &test, &std::sync::atomic::AtomicBool::new(false), &mut ())?;
//! println!("test error {:.2}%", report.test_error().unwrap_or(f64::NAN));
//! # Ok(())
//! # }
//! ```

pub mod conv;

pub use conv::{ConvObserver, ConvRun};

use crate::bench;
use crate::checkpoint::{self, Checkpoint, CheckpointRef};
use crate::config::{Hyperparams, Schedule};
use crate::data::{Dataset, DatasetName};
use crate::device::{Device, Engine};
use crate::error::{Error, Result};
use crate::metrics::{self, EpochRecord, GateRecord};
use crate::train::{EpochEnd, EpochSummary, Progress, Trainer};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use crate::error::{Diverged, ResumeError};

/// The files of a run saved in a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFiles {
    pub dir: PathBuf,
    /// The network, hyperparameters and progress, rewritten (atomically) after every epoch.
    pub checkpoint: PathBuf,
    /// One JSON line per epoch ([`EpochRecord`]).
    pub metrics: PathBuf,
    /// The training curve, for a caller that draws one.
    pub curve: PathBuf,
}

impl RunFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            checkpoint: dir.join("checkpoint.safetensors"),
            metrics: dir.join("metrics.jsonl"),
            curve: dir.join("curve.svg"),
        }
    }

    /// Whether the folder holds a saved run.
    pub fn exist(&self) -> bool {
        self.checkpoint.exists()
    }
}

/// What a caller hears from a run. Every method does nothing by default; `()` hears nothing.
pub trait Observer: Send {
    /// Before the first mini-batch of `epoch` (1-based) over `examples` training examples.
    fn epoch_started(&mut self, _epoch: usize, _examples: usize) {}
    /// After a mini-batch. The CPU engine calls it from a worker between two barriers, so
    /// whatever it does the other workers wait for: keep it cheap.
    fn batch(&mut self, _progress: &Progress) {}
    /// After an epoch that completed, was evaluated, saved and recorded.
    fn epoch_ended(&mut self, _record: &EpochRecord, _run: &Run) -> Result<()> {
        Ok(())
    }
    /// Something the caller should know that does not stop the run.
    fn warning(&mut self, _text: &str) {}
}

impl Observer for () {}

/// The epochs a call of [`Run::train`] trained.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// One record per epoch completed in this call.
    pub epochs: Vec<EpochRecord>,
    /// Whether the stop flag ended the call early (the checkpoint holds where it stopped).
    pub interrupted: bool,
}

impl Report {
    /// The test error (%) after the last epoch completed in this call.
    pub fn test_error(&self) -> Option<f64> {
        self.epochs.last().map(|r| r.test_error)
    }
}

/// A network in training: its trainer, the engine it trains on, and where it is saved.
pub struct Run {
    trainer: Trainer,
    engine: Engine,
    dataset: DatasetName,
    files: Option<RunFiles>,
    /// Started here rather than resumed from a checkpoint.
    fresh: bool,
}

impl Run {
    /// A fresh run of `hp` (Glorot weights from `hp.seed`) on `device`, kept in memory until
    /// [`save_in`](Self::save_in) gives it a folder.
    pub fn new(hp: Hyperparams, dataset: DatasetName, device: Device) -> Result<Self> {
        let mut run = Self::with_trainer(Trainer::new(hp)?, dataset, device)?;
        run.fresh = true;
        Ok(run)
    }

    /// Continues the run saved in `checkpoint` (read from `path`) with the hyperparameters
    /// `asked`: they must equal the saved ones except for `epochs`, which may grow (a cosine
    /// schedule then decays over the new count).
    pub fn resume(
        checkpoint: Checkpoint,
        path: &Path,
        asked: Hyperparams,
        device: Device,
    ) -> Result<Self> {
        let saved = &checkpoint.hyperparams;
        let same_epochs = Hyperparams {
            epochs: saved.epochs,
            ..asked.clone()
        };
        let done = checkpoint.progress.epoch;
        check_resume(path, saved, &same_epochs, done, asked.epochs)?;
        let dataset = checkpoint.dataset.parse()?;
        let trainer = Trainer::resume(
            asked,
            checkpoint.network,
            checkpoint.progress,
            checkpoint.persistent,
        )
        .with_dream_chains(checkpoint.dream_chains);
        Self::with_trainer(trainer, dataset, device)
    }

    fn with_trainer(trainer: Trainer, dataset: DatasetName, device: Device) -> Result<Self> {
        let engine = Engine::for_trainer(device, &trainer)?;
        Ok(Self {
            trainer,
            engine,
            dataset,
            files: None,
            fresh: false,
        })
    }

    /// Saves the run in `files` after every epoch. A fresh run refuses a folder that holds
    /// another run unless `replace` is set; then it first removes what the earlier run left
    /// there, so that nothing of it may pass for this one's. A resumed run continues its files.
    pub fn save_in(mut self, files: RunFiles, replace: bool) -> Result<Self> {
        self.set_files(files, replace)?;
        Ok(self)
    }

    /// [`save_in`](Self::save_in) for a run held in place: on an error the run stays as it was.
    pub fn set_files(&mut self, files: RunFiles, replace: bool) -> Result<()> {
        if self.fresh {
            if files.exist() && !replace {
                return Err(Error::RunExists(files.dir));
            }
            for old in [&files.checkpoint, &files.metrics, &files.curve] {
                let _ = std::fs::remove_file(old);
            }
        }
        self.files = Some(files);
        Ok(())
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// Trains up to `epochs` in all from now on ([`Trainer::set_epochs`]).
    pub fn set_epochs(&mut self, epochs: usize) -> Result<()> {
        Ok(self.trainer.set_epochs(epochs)?)
    }

    pub fn hyperparams(&self) -> &Hyperparams {
        self.trainer.hyperparams()
    }

    pub fn dataset(&self) -> DatasetName {
        self.dataset
    }

    pub fn files(&self) -> Option<&RunFiles> {
        self.files.as_ref()
    }

    /// The engine's device name: `cpu`, or the GPU's.
    pub fn device_name(&self) -> &str {
        self.engine.name()
    }

    /// Fails unless the training and test sets fit the network (input width, labels within
    /// the outputs, enough examples for a mini-batch).
    pub fn check_data(&self, trainset: &Dataset, testset: &Dataset) -> Result<()> {
        let hp = self.hyperparams();
        hp.check_training_set(trainset)
            .and_then(|()| hp.check_data(testset))
            .map_err(|e| {
                Error::Invalid(format!("{:?} on {}: {e}", hp.layers, self.dataset.as_str()))
            })
    }

    /// Trains the remaining epochs: after each, evaluates the test error, saves the checkpoint
    /// and appends the epoch's record (when the run has files), and tells `observer`. Setting
    /// `stop` ends the call after the running mini-batch, the checkpoint saved; a later call
    /// (or a run resumed from the checkpoint) continues exactly where it stopped.
    pub fn train(
        &mut self,
        trainset: &Dataset,
        testset: &Dataset,
        stop: &AtomicBool,
        observer: &mut impl Observer,
    ) -> Result<Report> {
        self.check_data(trainset, testset)?;
        let flops = bench::epoch_flops(self.hyperparams(), trainset);
        let mut report = Report::default();
        while !self.trainer.finished() {
            let epoch = self.trainer.progress().epoch + 1;
            observer.epoch_started(epoch, trainset.len());
            let end = self
                .engine
                .run_epoch(&mut self.trainer, trainset, stop, |p| observer.batch(p))?;
            let summary = match end {
                EpochEnd::Completed(summary) => summary,
                EpochEnd::Interrupted => {
                    self.save()?;
                    report.interrupted = true;
                    return Ok(report);
                }
                EpochEnd::Diverged(divergence) => {
                    let kept = self.kept_checkpoint();
                    return Err(Diverged { divergence, kept }.into());
                }
            };
            let record = self.record(&summary, testset, &flops)?;
            if let Some(text) = collapse_warning(&summary, self.hyperparams()) {
                observer.warning(&text);
            }
            self.save()?;
            if let Some(files) = &self.files {
                metrics::append_jsonl(&files.metrics, &record)
                    .map_err(|e| Error::io(&files.metrics, e))?;
            }
            observer.epoch_ended(&record, self)?;
            report.epochs.push(record);
        }
        Ok(report)
    }

    /// The test error and mean free energy of the network as it stands.
    pub fn evaluate(&mut self, testset: &Dataset) -> Result<crate::train::Evaluation> {
        let (net, hp) = (self.trainer.network(), self.trainer.hyperparams());
        Ok(self.engine.evaluate(net, hp, testset)?)
    }

    /// The record of a completed epoch: its summary, its test error, and what the gate saved.
    fn record(
        &mut self,
        summary: &EpochSummary,
        testset: &Dataset,
        flops: &bench::EpochFlops,
    ) -> Result<EpochRecord> {
        let test = self.evaluate(testset)?;
        let gate = self.trainer.progress().threshold.map(|threshold| {
            let (steps_saved, flops_saved) = bench::gate_savings(flops, summary.learned_share);
            GateRecord {
                learned_share: summary.learned_share,
                steps_saved,
                flops_saved,
                threshold,
            }
        });
        Ok(EpochRecord {
            epoch: summary.epoch,
            train_error: summary.train_error,
            test_error: test.error,
            mean_free_energy: summary.mean_energy,
            seconds: summary.seconds,
            samples_per_second: summary.samples_per_second,
            learning_rates: self.hyperparams().learning_rates(summary.epoch - 1),
            gate,
        })
    }

    /// Writes the checkpoint (atomically), if the run has files.
    fn save(&self) -> Result<()> {
        match &self.files {
            Some(files) => self.save_checkpoint(&files.checkpoint),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint (atomically) to `path`: what `eqprop eval` and
    /// [`Run::resume`] read.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let trainer = &self.trainer;
        let chains = trainer.dream_chains();
        let ckpt = CheckpointRef {
            hyperparams: trainer.hyperparams(),
            network: trainer.network(),
            progress: trainer.progress(),
            persistent: trainer.persistent_states(),
            dream_chains: chains.as_deref(),
            dataset: self.dataset.as_str(),
        };
        Ok(checkpoint::save(path, &ckpt)?)
    }

    /// What is left of a diverged run: the checkpoint of its last completed epoch, if one was
    /// written (every save happened at an epoch's end, or at the stop the run resumed from, so
    /// the checkpoint holds the trainer's count of completed epochs).
    fn kept_checkpoint(&self) -> Option<(PathBuf, usize)> {
        let path = &self.files.as_ref()?.checkpoint;
        path.exists()
            .then(|| (path.clone(), self.trainer.progress().epoch))
    }
}

/// The warning for an epoch after the first that predicted no better than chance.
fn collapse_warning(summary: &EpochSummary, hp: &Hyperparams) -> Option<String> {
    let classes = *hp.layers.last().expect("validated layers");
    (summary.epoch > 1 && summary.at_chance(classes)).then(|| {
        format!(
            "epoch {} predicted no better than chance (train error {:.2}%): the network may \
             have collapsed; lower the learning rates (--lr)",
            summary.epoch, summary.train_error
        )
    })
}

/// Whether resuming with `epochs` instead of the saved count changes a cosine schedule's decay.
pub fn schedule_stretched(saved: &Hyperparams, epochs: usize) -> bool {
    epochs != saved.epochs && matches!(saved.schedule, Schedule::Cosine { .. })
}

/// Refuses to continue the run saved at `path` (after `done` epochs) with the config
/// `same_epochs` unless it equals `saved` (both with the saved epoch count), or up to
/// `epochs` when fewer than `done`.
pub(crate) fn check_resume<T: serde::Serialize>(
    path: &Path,
    saved: &T,
    same_epochs: &T,
    done: usize,
    epochs: usize,
) -> Result<()> {
    let path = path.to_path_buf();
    if let Some((field, saved, asked)) = first_difference(saved, same_epochs) {
        return Err(ResumeError::Differs {
            path,
            field,
            saved,
            asked,
        }
        .into());
    }
    if epochs < done {
        return Err(ResumeError::EpochsDone {
            path,
            done,
            asked: epochs,
        }
        .into());
    }
    Ok(())
}

/// The first setting (a dotted path, e.g. `generative.beta`) whose value differs between the
/// configs `a` and `b` (dense [`Hyperparams`] or a [`ConvConfig`](crate::conv::ConvConfig)),
/// with both values as JSON.
pub fn first_difference<T: serde::Serialize>(a: &T, b: &T) -> Option<(String, String, String)> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<[String; 3]> {
        use serde_json::Value::Object;
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
                keys.into_iter().find_map(|k| {
                    let null = serde_json::Value::Null;
                    let key = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&key, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null))
                })
            }
            _ if a != b => Some([path.to_string(), a.to_string(), b.to_string()]),
            _ => None,
        }
    }
    // Through text, so that f32 values print as written (0.1, not 0.10000000149011612).
    let json = |config: &T| {
        let text = serde_json::to_string(config).expect("plain structs serialise");
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON")
    };
    walk("", &json(a), &json(b)).map(|[f, x, y]| (f, x, y))
}
