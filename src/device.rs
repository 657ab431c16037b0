//! Where the numbers are crunched: the CPU kernels, or the CUDA backend (`--features cuda`).
//!
//! [`Accelerator`] runs a [`Trainer`]'s epochs and evaluations on the GPU; the trainer keeps
//! the run's state (hyperparameters, progress, checkpoints) and gets the network back after
//! every epoch. A build without the `cuda` feature says so when CUDA is asked for.

use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::network::Network;
use crate::train::{EpochEnd, Evaluation, Progress, Trainer};
use std::sync::atomic::AtomicBool;

/// The processor a command runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    #[default]
    Cpu,
    /// An NVIDIA GPU through the CUDA backend.
    Cuda,
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
    #[error("`eqprop {0}` runs on the CPU only (--device cuda serves train, eval and bench)")]
    CpuOnly(&'static str),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] crate::backend::cuda::CudaError),
}

impl Device {
    /// Fails for a command that has no GPU path when the GPU is asked for.
    pub fn require_cpu(self, command: &'static str) -> Result<(), DeviceError> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda => Err(DeviceError::CpuOnly(command)),
        }
    }
}

/// A GPU holding a copy of a network (never built without the `cuda` feature).
pub struct Accelerator {
    #[cfg(feature = "cuda")]
    gpu: crate::backend::cuda::GpuTrainer,
    #[cfg(not(feature = "cuda"))]
    never: std::convert::Infallible,
}

impl Accelerator {
    /// The accelerator `device` names for `trainer`'s network, none for the CPU.
    pub fn for_trainer(device: Device, trainer: &Trainer) -> Result<Option<Self>, DeviceError> {
        Self::open(
            device,
            trainer.hyperparams(),
            trainer.network(),
            trainer.persistent_states(),
        )
    }

    /// As [`for_trainer`](Self::for_trainer), for a network alone (evaluation).
    pub fn for_network(
        device: Device,
        hp: &Hyperparams,
        net: &Network,
    ) -> Result<Option<Self>, DeviceError> {
        Self::open(device, hp, net, None)
    }

    #[cfg(feature = "cuda")]
    fn open(
        device: Device,
        hp: &Hyperparams,
        net: &Network,
        persistent: Option<&[crate::tensor::Matrix]>,
    ) -> Result<Option<Self>, DeviceError> {
        use crate::backend::cuda::GpuTrainer;
        match device {
            Device::Cpu => Ok(None),
            Device::Cuda => Ok(Some(Self {
                gpu: GpuTrainer::new(hp, net, persistent)?,
            })),
        }
    }

    #[cfg(not(feature = "cuda"))]
    fn open(
        device: Device,
        _: &Hyperparams,
        _: &Network,
        _: Option<&[crate::tensor::Matrix]>,
    ) -> Result<Option<Self>, DeviceError> {
        match device {
            Device::Cpu => Ok(None),
            Device::Cuda => Err(DeviceError::NotBuilt),
        }
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        #[cfg(feature = "cuda")]
        return self.gpu.device_name();
        #[cfg(not(feature = "cuda"))]
        match self.never {}
    }

    /// [`Trainer::run_epoch`] on the device; the trainer's network is brought up to date.
    pub fn run_epoch(
        &mut self,
        trainer: &mut Trainer,
        data: &Dataset,
        stop: &AtomicBool,
        on_batch: impl FnMut(&Progress),
    ) -> Result<EpochEnd, DeviceError> {
        #[cfg(feature = "cuda")]
        {
            let plan = trainer.begin_epoch(data.len());
            let hp = trainer.hyperparams().clone();
            let (net, progress, persistent) = trainer.parts_mut();
            let done = self.gpu.train_batches(
                &hp,
                data,
                &plan,
                progress,
                persistent.as_deref(),
                stop,
                on_batch,
            )?;
            self.gpu.download(net, persistent)?;
            Ok(trainer.end_epoch(done))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (trainer, data, stop, on_batch);
            match self.never {}
        }
    }

    /// Test error and mean free energy of the device's network.
    pub fn evaluate(
        &mut self,
        hp: &Hyperparams,
        data: &Dataset,
    ) -> Result<Evaluation, DeviceError> {
        #[cfg(feature = "cuda")]
        return Ok(self.gpu.evaluate(hp, data)?);
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (hp, data);
            match self.never {}
        }
    }
}
