//! EqProp training and evaluation with every phase and update on the GPU.
//!
//! The dataset is copied to the device once; a mini-batch then costs a handful of launches
//! (gather, input drive, free phase, nudged phase(s), one update per coupling) and no transfer.
//! Predictions and energies stay on the device until the progress is reported (every
//! [`REPORT_EVERY`] mini-batches), so the host never waits for the GPU inside an epoch.

use crate::backend::cuda::{
    CudaError, Gpu, GpuDataset, GpuNetwork, GpuPhase, Layers, Outputs, Start,
};
use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::learning_rule::{Nudging, batch_scales};
use crate::network::Network;
use crate::tensor::Matrix;
use crate::train::{EpochPlan, Evaluation, Progress};
use cudarc::driver::CudaSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Mini-batches between two progress reports (each one waits for the GPU).
const REPORT_EVERY: usize = 250;
/// Examples per evaluation launch.
const EVAL_BATCH: usize = 1000;

/// A network and its training buffers on the GPU.
pub(crate) struct GpuTrainer {
    gpu: Gpu,
    net: GpuNetwork,
    batch: usize,
    x: CudaSlice<f32>,
    target: CudaSlice<f32>,
    /// The input drive `x W_1` of the batch.
    input: CudaSlice<f32>,
    free: Layers,
    plus: Layers,
    minus: Layers,
    /// The training set on the device, with the [`dataset_key`] of its host copy.
    train: Option<(usize, GpuDataset)>,
    /// The last evaluated set on the device, likewise (uploaded once, not every epoch).
    test: Option<(usize, GpuDataset)>,
    /// Per-example results of the running epoch (free-phase energy and prediction).
    energy: CudaSlice<f32>,
    argmax: CudaSlice<i32>,
    /// Last free fixed point of every training example (persistent particles).
    persistent: Option<Layers>,
}

impl GpuTrainer {
    /// Opens the GPU and copies `net` (and the persistent states, if any) to it. What the GPU
    /// path does not run (generative training, the gate, multi-head outputs) is refused before
    /// this, by [`Device::require`](crate::device::Device::require).
    pub fn new(
        hp: &Hyperparams,
        net: &Network,
        persistent: Option<&[Matrix]>,
    ) -> Result<Self, CudaError> {
        let gpu = Gpu::open()?;
        let sizes = &hp.layers;
        let batch = hp.batch_size;
        let mut trainer = Self {
            net: GpuNetwork::upload(&gpu, net)?,
            batch,
            x: gpu.zeros(batch * sizes[0])?,
            target: gpu.zeros(batch * sizes[sizes.len() - 1])?,
            input: gpu.zeros(batch * sizes[1])?,
            free: Layers::zeros(&gpu, sizes, batch)?,
            plus: Layers::zeros(&gpu, sizes, batch)?,
            minus: Layers::zeros(&gpu, sizes, batch)?,
            train: None,
            test: None,
            energy: gpu.zeros(1)?,
            argmax: gpu.stream().alloc_zeros::<i32>(1)?,
            persistent: None,
            gpu,
        };
        if let Some(saved) = persistent {
            trainer.persistent = Some(upload_store(&trainer.gpu, sizes, saved)?);
        }
        Ok(trainer)
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        self.gpu.name()
    }

    /// The mini-batches of `plan` from `progress.batch` on; false if `stop` ended it early.
    /// `persistent` are the host's persistent states (sized by the trainer), if any.
    #[allow(clippy::too_many_arguments)]
    pub fn train_batches(
        &mut self,
        hp: &Hyperparams,
        data: &Dataset,
        plan: &EpochPlan,
        progress: &mut Progress,
        persistent: Option<&Vec<Matrix>>,
        stop: &AtomicBool,
        mut on_batch: impl FnMut(&Progress),
    ) -> Result<bool, CudaError> {
        self.ensure_data(hp, data, persistent)?;
        let order: Vec<i32> = plan.order.iter().map(|&i| i as i32).collect();
        let order = self.gpu.upload(&order)?;
        let batches = data.len() / self.batch;
        let mut reported = progress.batch;
        let mut started = Instant::now();
        while progress.batch < batches && !stop.load(Ordering::SeqCst) {
            let b = progress.batch;
            self.train_batch(hp, &order, b, plan.betas[b], &plan.lrs)?;
            progress.batch += 1;
            if progress.batch - reported >= REPORT_EVERY || progress.batch == batches {
                self.report(data, &plan.order, reported, progress, started)?;
                reported = progress.batch;
                started = Instant::now();
                on_batch(progress);
            }
        }
        if reported < progress.batch {
            self.report(data, &plan.order, reported, progress, started)?;
            on_batch(progress);
        }
        Ok(progress.batch >= batches)
    }

    /// One mini-batch: free phase, nudged phase(s), update.
    fn train_batch(
        &mut self,
        hp: &Hyperparams,
        order: &CudaSlice<i32>,
        b: usize,
        beta: f32,
        lrs: &[f32],
    ) -> Result<(), CudaError> {
        let first = b * self.batch;
        let data = &self.train.as_ref().expect("uploaded by ensure_data").1;
        let gpu = &self.gpu;
        gpu.load_batch(
            data,
            order,
            first,
            self.batch,
            (hp.target_off, hp.target_on),
            &mut self.x,
            &mut self.target,
        )?;
        gpu.input_drive(&self.net, &self.x, self.batch, &mut self.input)?;
        let start = match &mut self.persistent {
            Some(store) => {
                gpu.move_rows(false, &mut self.free, store, order, first)?;
                Start::InPlace
            }
            None => Start::Zero,
        };
        let free = GpuPhase {
            steps: hp.t_free,
            eps: hp.eps,
        };
        let out = Outputs {
            energy: &self.energy,
            argmax: &self.argmax,
            offset: first,
        };
        gpu.relax(
            &self.net,
            &self.input,
            &mut self.free,
            start,
            free,
            None,
            Some(out),
        )?;
        if let Some(store) = &mut self.persistent {
            gpu.move_rows(true, &mut self.free, store, order, first)?;
        }
        let nudged = GpuPhase {
            steps: hp.t_nudge,
            eps: hp.eps,
        };
        let from = Start::From(&self.free);
        let target = Some((beta, &self.target));
        gpu.relax(
            &self.net,
            &self.input,
            &mut self.plus,
            from,
            nudged,
            target,
            None,
        )?;
        let contrast = match hp.nudging {
            Nudging::Symmetric => {
                let from = Start::From(&self.free);
                let target = Some((-beta, &self.target));
                gpu.relax(
                    &self.net,
                    &self.input,
                    &mut self.minus,
                    from,
                    nudged,
                    target,
                    None,
                )?;
                &self.minus
            }
            Nudging::Positive | Nudging::RandomSign => &self.free,
        };
        let scale = batch_scales(lrs, self.batch, hp.nudging, beta);
        gpu.update(&mut self.net, &scale, &self.x, &self.plus, contrast)
    }

    /// Adds the predictions and energies of mini-batches `from..progress.batch` to `progress`.
    fn report(
        &self,
        data: &Dataset,
        order: &[usize],
        from: usize,
        progress: &mut Progress,
        started: Instant,
    ) -> Result<(), CudaError> {
        let range = from * self.batch..progress.batch * self.batch;
        let argmax = self
            .gpu
            .stream()
            .clone_dtoh(&self.argmax.slice(range.clone()))?;
        let energy = self
            .gpu
            .stream()
            .clone_dtoh(&self.energy.slice(range.clone()))?;
        let labels = order[range].iter().map(|&i| data.labels[i] as i32);
        progress.correct += labels.zip(&argmax).filter(|(l, p)| l == *p).count() as u64;
        progress.seen += argmax.len() as u64;
        progress.energy_sum += energy.iter().map(|&e| e as f64).sum::<f64>();
        progress.learned += argmax.len() as u64;
        progress.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Uploads the training set (once) and sizes the per-example buffers.
    fn ensure_data(
        &mut self,
        hp: &Hyperparams,
        data: &Dataset,
        persistent: Option<&Vec<Matrix>>,
    ) -> Result<(), CudaError> {
        let key = dataset_key(data);
        if self.train.as_ref().is_none_or(|(k, _)| *k != key) {
            let classes = *hp.layers.last().expect("validated layers");
            self.train = Some((key, GpuDataset::upload(&self.gpu, data, classes)?));
            self.energy = self.gpu.zeros(data.len())?;
            self.argmax = self.gpu.stream().alloc_zeros::<i32>(data.len().max(1))?;
        }
        let stale = self
            .persistent
            .as_ref()
            .is_none_or(|p| p.batch() != data.len());
        if let (Some(saved), true) = (persistent, stale) {
            self.persistent = Some(upload_store(&self.gpu, &hp.layers, saved)?);
        }
        Ok(())
    }

    /// Copies the device's network (and persistent states) back to the host.
    pub fn download(
        &self,
        net: &mut Network,
        persistent: Option<&mut Vec<Matrix>>,
    ) -> Result<(), CudaError> {
        self.net.download_into(&self.gpu, net)?;
        if let (Some(store), Some(host)) = (&self.persistent, persistent) {
            for (k, m) in host.iter_mut().enumerate().skip(1) {
                m.as_mut_slice().copy_from_slice(&store.get(&self.gpu, k)?);
            }
        }
        Ok(())
    }

    /// Test error and mean free energy of the device's network on `data`.
    pub fn evaluate(&mut self, hp: &Hyperparams, data: &Dataset) -> Result<Evaluation, CudaError> {
        let key = dataset_key(data);
        if self.test.as_ref().is_none_or(|(k, _)| *k != key) {
            let classes = *hp.layers.last().expect("validated layers");
            self.test = Some((key, GpuDataset::upload(&self.gpu, data, classes)?));
        }
        let device_data = &self.test.as_ref().expect("uploaded above").1;
        evaluate(&self.gpu, &self.net, hp, data, device_data)
    }
}

/// Tells host data sets apart (address and length of the images): a device copy is reused
/// while the key stays the same.
fn dataset_key(data: &Dataset) -> usize {
    data.images.as_ptr() as usize ^ data.len()
}

/// The free phase from zero states on every example of `data` (on the device as
/// `device_data`), in launches of [`EVAL_BATCH`]: test error (%) and mean energy at the free
/// fixed points.
fn evaluate(
    gpu: &Gpu,
    net: &GpuNetwork,
    hp: &Hyperparams,
    data: &Dataset,
    device_data: &GpuDataset,
) -> Result<Evaluation, CudaError> {
    let sizes = net.sizes();
    let classes = sizes[sizes.len() - 1];
    let n = data.len();
    let order: Vec<i32> = (0..n as i32).collect();
    let order = gpu.upload(&order)?;
    let batch = EVAL_BATCH.min(n.max(1));
    let mut x = gpu.zeros(batch * sizes[0])?;
    let mut target = gpu.zeros(batch * classes)?;
    let mut input = gpu.zeros(batch * sizes[1])?;
    let energy = gpu.zeros(n)?;
    let argmax = gpu.stream().alloc_zeros::<i32>(n.max(1))?;
    let phase = GpuPhase {
        steps: hp.t_free,
        eps: hp.eps,
    };
    // One set of states per launch size: the full one, and the last launch's if it is shorter.
    let mut full = Layers::zeros(gpu, sizes, batch)?;
    let mut tail = match n % batch {
        0 => None,
        rest => Some(Layers::zeros(gpu, sizes, rest)?),
    };
    let mut first = 0;
    while first < n {
        let len = batch.min(n - first);
        let states = match (&mut tail, len < batch) {
            (Some(tail), true) => tail,
            _ => &mut full,
        };
        let targets = (hp.target_off, hp.target_on);
        gpu.load_batch(
            device_data,
            &order,
            first,
            len,
            targets,
            &mut x,
            &mut target,
        )?;
        gpu.input_drive(net, &x, len, &mut input)?;
        let out = Outputs {
            energy: &energy,
            argmax: &argmax,
            offset: first,
        };
        gpu.relax(net, &input, states, Start::Zero, phase, None, Some(out))?;
        first += len;
    }
    let argmax = gpu.download(&argmax)?;
    let energy = gpu.download(&energy)?;
    let wrong = data
        .labels
        .iter()
        .zip(&argmax)
        .filter(|&(&l, &p)| l as i32 != p)
        .count();
    let total = n.max(1) as f64;
    Ok(Evaluation {
        error: 100.0 * wrong as f64 / total,
        mean_energy: energy[..n].iter().map(|&e| e as f64).sum::<f64>() / total,
    })
}

/// The persistent states of every example on the device.
fn upload_store(gpu: &Gpu, sizes: &[usize], saved: &[Matrix]) -> Result<Layers, CudaError> {
    let n = saved.last().map_or(0, Matrix::rows);
    let mut store = Layers::zeros(gpu, sizes, n)?;
    for (k, m) in saved.iter().enumerate().skip(1) {
        store.set(gpu, k, m.as_slice())?;
    }
    Ok(store)
}
