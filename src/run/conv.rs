//! A training run of a network of any architecture: the trainer, its data set, and the files
//! it keeps (the same [`RunFiles`] as a dense run: a checkpoint rewritten atomically after
//! every epoch, one JSON line per epoch).

use super::{Report, RunFiles, check_resume};
use crate::bench::conv::gate_savings;
use crate::conv::checkpoint::{self, ConvCheckpoint};
use crate::conv::train::ConvEpoch;
use crate::conv::train::{ConvConfig, ConvTrainer, evaluate};
use crate::data::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::metrics::{EpochRecord, GateRecord, append_jsonl};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a caller hears from a run; every method does nothing by default.
pub trait ConvObserver {
    /// Before the first mini-batch of `epoch` (1-based) over `examples` examples.
    fn epoch_started(&mut self, _epoch: usize, _examples: usize) {}
    /// After a mini-batch: examples done in the epoch and how many of them were right.
    fn batch(&mut self, _done: usize, _correct: usize) {}
    /// After an epoch that completed, was evaluated, saved and recorded.
    fn epoch_ended(&mut self, _record: &EpochRecord, _run: &ConvRun) -> Result<()> {
        Ok(())
    }
}

impl ConvObserver for () {}

/// A trainer with its data set name and, once saved, its files.
#[derive(Debug)]
pub struct ConvRun {
    trainer: ConvTrainer,
    dataset: DatasetName,
    files: Option<RunFiles>,
}

impl ConvRun {
    /// A fresh run.
    pub fn new(config: ConvConfig, dataset: DatasetName) -> Result<Self> {
        Ok(Self {
            trainer: ConvTrainer::new(config)?,
            dataset,
            files: None,
        })
    }

    /// The run saved at `path`, to continue up to `epochs` (its own when `None`).
    pub fn resume(path: &Path, epochs: Option<usize>) -> Result<Self> {
        let saved = checkpoint::load(path)?;
        let asked = ConvConfig {
            epochs: epochs.unwrap_or(saved.config.epochs),
            ..saved.config.clone()
        };
        Self::resume_checkpoint(saved, path, asked)
    }

    /// Continues the run saved in `checkpoint` (read from `path`) with the config `asked`: it
    /// must equal the saved one except for `epochs`, which may grow (a cosine schedule then
    /// decays over the new count) but not fall below the epochs done.
    pub fn resume_checkpoint(
        checkpoint: ConvCheckpoint,
        path: &Path,
        asked: ConvConfig,
    ) -> Result<Self> {
        let same_epochs = ConvConfig {
            epochs: checkpoint.config.epochs,
            ..asked.clone()
        };
        check_resume(
            path,
            &checkpoint.config,
            &same_epochs,
            checkpoint.epoch,
            asked.epochs,
        )?;
        let ConvCheckpoint {
            network,
            epoch,
            dataset,
            velocity,
            adam,
            particles,
            threshold,
            chains,
            ..
        } = checkpoint;
        let config = asked;
        config.validate()?;
        Ok(Self {
            trainer: ConvTrainer::with_network(config, network, epoch)
                .with_velocity(velocity)
                .with_adam(adam)
                .with_particles(particles)
                .with_threshold(threshold)
                .with_chains(chains),
            dataset: dataset.parse()?,
            files: None,
        })
    }

    /// Keeps the run in `files` from now on. A fresh run refuses a folder that holds a run
    /// unless `replace`; then the old records go.
    pub fn save_in(mut self, files: RunFiles, replace: bool) -> Result<Self> {
        self.set_files(files, replace)?;
        Ok(self)
    }

    /// [`save_in`](Self::save_in) for a run held in place: on an error the run stays as it was.
    pub fn set_files(&mut self, files: RunFiles, replace: bool) -> Result<()> {
        let fresh = self.trainer.epoch() == 0;
        if fresh && files.exist() && !replace {
            return Err(Error::RunExists(files.dir.clone()));
        }
        std::fs::create_dir_all(&files.dir).map_err(|e| Error::io(&files.dir, e))?;
        if fresh {
            for path in [&files.metrics, &files.curve] {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(path, e));
                    }
                    _ => {}
                }
            }
            self.save(&files)?;
        }
        self.files = Some(files);
        Ok(())
    }

    fn save(&self, files: &RunFiles) -> Result<()> {
        self.save_checkpoint(&files.checkpoint)
    }

    /// Writes the checkpoint (atomically) to `path`: what `eqprop eval` and a resumed run read.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.trainer, self.dataset.as_str())?;
        Ok(())
    }

    pub fn trainer(&self) -> &ConvTrainer {
        &self.trainer
    }

    /// Trains up to `epochs` in all from now on ([`ConvTrainer::set_epochs`]).
    pub fn set_epochs(&mut self, epochs: usize) -> Result<()> {
        Ok(self.trainer.set_epochs(epochs)?)
    }

    pub fn config(&self) -> &ConvConfig {
        self.trainer.config()
    }

    pub fn dataset(&self) -> DatasetName {
        self.dataset
    }

    pub fn files(&self) -> Option<&RunFiles> {
        self.files.as_ref()
    }

    /// Checks that the data fit the network before any work starts.
    pub fn check_data(&self, trainset: &Dataset, testset: &Dataset) -> Result<()> {
        let cfg = self.config();
        cfg.check_data(trainset)?;
        cfg.check_data(testset)?;
        if trainset.len() < cfg.batch_size {
            return Err(crate::config::ConfigError::TooFewExamples {
                examples: trainset.len(),
                batch_size: cfg.batch_size,
            }
            .into());
        }
        if let Some(saved) = self.trainer.particles()
            && saved[0].rows() != trainset.len()
        {
            return Err(Error::Invalid(format!(
                "the run's persistent states are for {} training examples, the training set has \
                 {}: train on the same examples (--train-limit)",
                saved[0].rows(),
                trainset.len()
            )));
        }
        Ok(())
    }

    /// What the surprise gate did in the epoch `done` (none without a gate): the relaxation
    /// steps and multiply-adds the examples that did not learn saved, at the config's step
    /// counts.
    fn gate_record(&self, done: &ConvEpoch) -> Option<GateRecord> {
        let threshold = self.trainer.threshold()?;
        let (steps_saved, flops_saved) = gate_savings(self.config(), done.learned_share);
        Some(GateRecord {
            learned_share: done.learned_share,
            steps_saved,
            flops_saved,
            threshold,
        })
    }

    /// Trains up to the config's epochs: after each, evaluates on `testset`, saves the
    /// checkpoint and appends the record. `stop` ends the call after the current mini-batch
    /// (the checkpoint keeps the last completed epoch).
    pub fn train(
        &mut self,
        trainset: &Dataset,
        testset: &Dataset,
        stop: &AtomicBool,
        observer: &mut impl ConvObserver,
    ) -> Result<Report> {
        self.check_data(trainset, testset)?;
        let mut report = Report::default();
        while self.trainer.epoch() < self.config().epochs {
            let epoch = self.trainer.epoch();
            observer.epoch_started(epoch + 1, trainset.len());
            let lrs = self.config().learning_rates(epoch);
            let done = self.trainer.run_epoch(trainset, |done, correct| {
                observer.batch(done, correct);
                !stop.load(Ordering::SeqCst)
            });
            let Some(done) = done else {
                report.interrupted = true;
                return Ok(report);
            };
            let eval = evaluate(self.trainer.network(), self.config(), testset);
            let record = EpochRecord {
                epoch: epoch + 1,
                train_error: done.train_error,
                test_error: eval.error,
                mean_free_energy: eval.mean_energy,
                seconds: done.seconds,
                samples_per_second: trainset.len() as f64 / done.seconds.max(1e-9),
                learning_rates: lrs,
                gate: self.gate_record(&done),
            };
            if let Some(files) = &self.files {
                self.save(files)?;
                append_jsonl(&files.metrics, &record).map_err(|e| Error::io(&files.metrics, e))?;
            }
            observer.epoch_ended(&record, self)?;
            report.epochs.push(record);
        }
        Ok(report)
    }
}
