//! The benchmark: counting the work of an epoch, the machine's floor for it, and the method
//! that times eqprop against the PyTorch baseline (or without and with the surprise gate).
//!
//! FLOPs are counted as 2 per multiply-add, for the work the CPU backend actually does: the input
//! drive and the `W_1` update touch only non-zero pixels; every relaxation step is counted with
//! both directions of every free-to-free coupling in full (an upper bound: the fused kernel skips
//! source units resting exactly at 0).

pub mod conv;
#[cfg(feature = "cuda")]
mod cuda;
mod method;
mod torch;

#[cfg(feature = "cuda")]
pub use cuda::{CudaBench, cuda_report};
pub use method::{BenchOptions, compare_gate, compare_with_torch, train_epochs};
pub use torch::TorchBaseline;

use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::learning_rule::Nudging;
use std::time::Instant;

/// Floating-point operations of one training epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochFlops {
    /// What this implementation computes (sparse input).
    pub performed: f64,
    /// What the same algorithm costs with dense input products (the PyTorch baseline
    /// additionally recomputes the input drive at every step, which is more still).
    pub dense: f64,
    /// Share of `performed` that an example skipped by the surprise gate does not cost (its
    /// nudged phases and its `W_1` update).
    pub skipped_share: f64,
    /// Share of the relaxation steps that are nudged-phase steps.
    pub skipped_steps_share: f64,
}

/// FLOPs of one epoch of `hp` on `data` (mini-batches that do not fill up are dropped).
pub fn epoch_flops(hp: &Hyperparams, data: &Dataset) -> EpochFlops {
    let samples = (data.len() / hp.batch_size * hp.batch_size) as f64;
    let nonzero =
        data.images.iter().filter(|&&v| v != 0.0).count() as f64 / data.len().max(1) as f64;
    let sizes = &hp.layers;
    let first = sizes[1] as f64;
    let free_couplings: f64 = sizes.windows(2).skip(1).map(|w| (w[0] * w[1]) as f64).sum();
    let nudged_phases = if hp.nudging == Nudging::Symmetric {
        2.0
    } else {
        1.0
    };
    let steps = hp.t_free as f64 + nudged_phases * hp.t_nudge as f64;
    let relax = steps * 2.0 * 2.0 * free_couplings;
    // Two products per upper coupling in the update (nudged and reference outer products).
    let upper_update = 2.0 * 2.0 * free_couplings;
    let per_sample = |input: f64| 2.0 * input * first + relax + 2.0 * input * first + upper_update;
    let nudged_steps = nudged_phases * hp.t_nudge as f64;
    let skippable = nudged_steps * 2.0 * 2.0 * free_couplings + 2.0 * nonzero * first;
    EpochFlops {
        performed: samples * per_sample(nonzero),
        dense: samples * per_sample(sizes[0] as f64),
        skipped_share: skippable / per_sample(nonzero),
        skipped_steps_share: nudged_steps / steps,
    }
}

/// What a surprise gate saved in an epoch where `learned_share` of the examples learned:
/// `(share of relaxation steps, share of FLOPs)`. A skipped example still relaxes its free
/// phase and enters the (dense, batched) upper-layer update; it saves its nudged phase(s) and its
/// sparse `W_1` update.
pub fn gate_savings(flops: &EpochFlops, learned_share: f64) -> (f64, f64) {
    let skipped = 1.0 - learned_share;
    (
        skipped * flops.skipped_steps_share,
        skipped * flops.skipped_share,
    )
}

/// Measured single-precision GEMM rates of this machine (GFLOP/s) on a large square product with
/// a given number of threads: the practical peak the floor is computed against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmRate {
    /// The fastest single product (about 15 ms): a best case caught between interruptions.
    pub burst: f64,
    /// The fastest window of [`WINDOW`] products in a row (about as long as an epoch of the
    /// benchmark), so the floor is measured over the same time scale as the epoch it bounds.
    pub sustained: f64,
}

impl GemmRate {
    /// The higher of two measurements, rate by rate.
    pub fn max(self, other: Self) -> Self {
        Self {
            burst: self.burst.max(other.burst),
            sustained: self.sustained.max(other.sustained),
        }
    }
}

/// Products per window of [`GemmRate::sustained`].
pub const WINDOW: usize = 8;

/// Measures [`GemmRate`] over five windows of [`WINDOW`] 1024 x 1024 x 1024 products.
pub fn peak_gflops(threads: usize) -> GemmRate {
    const N: usize = 1024;
    let a = vec![1.0f32; N * N];
    let b = vec![0.5f32; N * N];
    let mut c = vec![0.0f32; N * N];
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (mut best, mut best_window) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let window = Instant::now();
        for _ in 0..WINDOW {
            let start = Instant::now();
            // SAFETY: three distinct N x N row-major buffers, strides (1, N).
            unsafe {
                gemm::gemm(
                    N,
                    N,
                    N,
                    c.as_mut_ptr(),
                    1,
                    N as isize,
                    false,
                    a.as_ptr(),
                    1,
                    N as isize,
                    b.as_ptr(),
                    1,
                    N as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        best_window = best_window.min(window.elapsed().as_secs_f64() / WINDOW as f64);
    }
    assert!(c[0] > 0.0);
    let flops = 2.0 * (N * N * N) as f64 / 1e9;
    GemmRate {
        burst: flops / best,
        sustained: flops / best_window,
    }
}

/// What [`benchmark`] runs.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub options: BenchOptions,
    /// Without and with the surprise gate instead of against PyTorch (CPU only).
    pub gate: bool,
    /// The PyTorch baseline and the data folder it reads (none: eqprop alone).
    pub torch: Option<(TorchBaseline, std::path::PathBuf)>,
    /// On the GPU: timed calls per relax() configuration.
    pub repeats: usize,
    /// On the GPU: copies of the training file in the timed epoch.
    pub train_repeat: usize,
}

/// The benchmark on `device`: [`compare_gate`] or [`compare_with_torch`] on the CPU, the CUDA
/// report on the GPU. `log` hears each line as it is measured; the result is the report.
pub fn benchmark(
    device: crate::device::Device,
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    plan: &BenchPlan,
    mut log: impl FnMut(&str),
) -> crate::Result<String> {
    use crate::device::{Device, Work};
    device.require(if plan.gate {
        Work::GateBench
    } else {
        Work::Bench
    })?;
    let torch = plan.torch.as_ref().map(|(t, dir)| (t, dir.as_path()));
    let opts = &plan.options;
    if plan.gate {
        return compare_gate(hp, trainset, testset, opts, log);
    }
    match device {
        Device::Cpu => {
            log(&format!(
                "bench: {} x {} epochs of {:?} on {} images, {} threads",
                opts.rounds,
                hp.epochs,
                hp.layers,
                trainset.len(),
                opts.threads
            ));
            compare_with_torch(hp, trainset, testset, opts, torch, log)
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            let cuda = CudaBench {
                repeats: plan.repeats,
                train_repeat: plan.train_repeat,
                torch,
            };
            Ok(cuda_report(hp, trainset, testset, &cuda, log)? + "\n")
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => Err(crate::device::DeviceError::NotBuilt.into()),
    }
}
