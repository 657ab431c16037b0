//! The device seam: where the numbers are crunched, and what each device can run.
//!
//! [`Device`] names a processor; [`Engine`] is one opened for a network: the CPU engine (the
//! worker pool and the fused kernels of [`backend`](crate::backend)) or the CUDA engine
//! (`--features cuda`, every phase and update on the GPU). A [`Run`](crate::run::Run) trains
//! and evaluates through an engine without knowing which one it holds. What a device cannot
//! run is decided in one place, [`Device::require`], and is a [`DeviceError`] naming the work.

use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::network::Network;
use crate::train::{EpochEnd, Evaluation, Progress, Trainer};
use std::sync::atomic::AtomicBool;

#[cfg(feature = "cuda")]
mod cuda;

/// The processor a piece of work runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Device {
    #[default]
    Cpu,
    /// An NVIDIA GPU through the CUDA backend.
    Cuda,
}

/// The kinds of work the library runs, as far as a device's abilities go.
#[derive(Clone, Copy, Debug)]
pub enum Work<'a> {
    /// Training with these hyperparameters (and evaluating the network).
    Train(&'a Hyperparams),
    /// The test error of a saved network.
    Evaluate,
    /// Timing training epochs.
    Bench,
    /// Timing training with and without the surprise gate.
    GateBench,
    /// Dreaming: the label clamped, the input relaxed.
    Dream,
    /// A grid of dreams after every training epoch.
    EpochDreams,
    /// Training the backprop classifier that judges dreams.
    Judge,
    /// Learning tasks one after another, with or without replay.
    Continual,
    /// The robot: an online world model and the planner.
    Agent,
    /// Stepping an environment.
    Environment,
    /// Rendering an episode.
    Render,
    /// Training or evaluating a network with convolutional couplings ([`crate::conv`]).
    Convolutional,
}

impl Work<'_> {
    /// The command that runs this work, for messages.
    fn command(&self) -> &'static str {
        match self {
            Work::Train(_) => "train",
            Work::Evaluate => "eval",
            Work::Bench => "bench",
            Work::GateBench => "bench --gate-ab",
            Work::Dream => "dream",
            Work::EpochDreams => "train --dreams",
            Work::Judge => "judge",
            Work::Continual => "continual",
            Work::Agent => "agent",
            Work::Environment => "env",
            Work::Render => "render",
            Work::Convolutional => "train --arch",
        }
    }
}

/// Why a device cannot run the work.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "this eqprop was built without CUDA support: rebuild it with `cargo build --release \
         --features cuda` (the build needs no CUDA; the GPU machine needs the driver, NVRTC and \
         cuBLAS)"
    )]
    NotBuilt,
    /// Work the CUDA engine does not run at all.
    #[error("`eqprop {0}` runs on the CPU only (--device cuda serves train, eval and bench)")]
    CpuOnly(&'static str),
    /// A training setting the CUDA engine does not run.
    #[error("the CUDA backend does not support {0} yet: train it with --device cpu")]
    CpuOnlySetting(&'static str),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] crate::backend::cuda::CudaError),
}

impl Device {
    /// Fails, naming what is missing, unless this device can run `work`: the one list of what
    /// each engine cannot do.
    pub fn require(self, work: Work) -> Result<(), DeviceError> {
        match (self, work) {
            (Device::Cpu, _) => Ok(()),
            (Device::Cuda, Work::Train(hp)) => {
                let unsupported = [
                    (hp.generative.is_some(), "generative training (dreaming)"),
                    (hp.modulator.is_some(), "the surprise gate"),
                    (hp.heads.is_some(), "multi-head outputs"),
                ];
                match unsupported.iter().find(|(set, _)| *set) {
                    Some(&(_, what)) => Err(DeviceError::CpuOnlySetting(what)),
                    None => Ok(()),
                }
            }
            (Device::Cuda, Work::Convolutional) => {
                Err(DeviceError::CpuOnlySetting("convolutional couplings"))
            }
            (Device::Cuda, Work::Evaluate | Work::Bench) => Ok(()),
            (Device::Cuda, other) => Err(DeviceError::CpuOnly(other.command())),
        }
    }
}

/// A device opened for one network: trains its epochs and evaluates it.
pub struct Engine(Inner);

enum Inner {
    /// The CPU: the worker pool and the fused kernels.
    Cpu,
    /// A GPU holding a copy of the network (brought back to the host after every epoch).
    #[cfg(feature = "cuda")]
    Cuda(Box<cuda::GpuTrainer>),
}

impl Engine {
    /// The engine `device` names for `trainer`'s run.
    pub fn for_trainer(device: Device, trainer: &Trainer) -> Result<Self, DeviceError> {
        device.require(Work::Train(trainer.hyperparams()))?;
        Self::open(
            device,
            trainer.hyperparams(),
            trainer.network(),
            trainer.persistent_states(),
        )
    }

    /// The engine `device` names for evaluating `net`.
    pub fn for_network(
        device: Device,
        hp: &Hyperparams,
        net: &Network,
    ) -> Result<Self, DeviceError> {
        device.require(Work::Evaluate)?;
        Self::open(device, hp, net, None)
    }

    fn open(
        device: Device,
        hp: &Hyperparams,
        net: &Network,
        persistent: Option<&[crate::tensor::Matrix]>,
    ) -> Result<Self, DeviceError> {
        match device {
            Device::Cpu => Ok(Engine(Inner::Cpu)),
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                let gpu = cuda::GpuTrainer::new(hp, net, persistent)?;
                Ok(Engine(Inner::Cuda(Box::new(gpu))))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => {
                let _ = (hp, net, persistent);
                Err(DeviceError::NotBuilt)
            }
        }
    }

    /// The device's name: `cpu`, or the GPU's.
    pub fn name(&self) -> &str {
        match &self.0 {
            Inner::Cpu => "cpu",
            #[cfg(feature = "cuda")]
            Inner::Cuda(gpu) => gpu.device_name(),
        }
    }

    /// Trains (the rest of) the trainer's current epoch, as [`Trainer::run_epoch`]; the
    /// trainer's network and progress are up to date afterwards on every engine.
    pub fn run_epoch(
        &mut self,
        trainer: &mut Trainer,
        data: &Dataset,
        stop: &AtomicBool,
        on_batch: impl FnMut(&Progress) + Send,
    ) -> Result<EpochEnd, DeviceError> {
        match &mut self.0 {
            Inner::Cpu => Ok(trainer.run_epoch(data, stop, on_batch)),
            #[cfg(feature = "cuda")]
            Inner::Cuda(gpu) => {
                let plan = trainer.begin_epoch(data.len());
                let hp = trainer.hyperparams().clone();
                let (net, progress, persistent) = trainer.parts_mut();
                let done = gpu.train_batches(
                    &hp,
                    data,
                    &plan,
                    progress,
                    persistent.as_deref(),
                    stop,
                    on_batch,
                )?;
                gpu.download(net, persistent)?;
                Ok(trainer.end_epoch(done))
            }
        }
    }

    /// Test error and mean free energy of `net` (on the GPU: of its copy there, which is `net`
    /// when `net` is the network this engine was opened for and trains).
    pub fn evaluate(
        &mut self,
        net: &Network,
        hp: &Hyperparams,
        data: &Dataset,
    ) -> Result<Evaluation, DeviceError> {
        match &mut self.0 {
            Inner::Cpu => Ok(crate::train::evaluate(net, hp, data)),
            #[cfg(feature = "cuda")]
            Inner::Cuda(gpu) => {
                let _ = net;
                Ok(gpu.evaluate(hp, data)?)
            }
        }
    }
}
