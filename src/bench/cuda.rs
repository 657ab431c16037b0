//! `eqprop bench --device cuda`: the CUDA backend against PyTorch's eager loop on the same GPU.
//!
//! Times relax() (input drive and every step of a free phase from zero) over a grid of widths,
//! batch sizes and step counts, then one training epoch of `hp` on the training set repeated
//! [`CudaBench::train_repeat`] times, on the GPU, on the CPU path and in PyTorch. The result is
//! a Markdown report.

use super::TorchBaseline;
use crate::backend::cuda::{Gpu, GpuNetwork, GpuPhase, Layers, Start};
use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::device::{Device, Engine};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::stats::median;
use crate::train::{self, Trainer};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// How the CUDA benchmark runs.
#[derive(Clone, Debug)]
pub struct CudaBench<'a> {
    /// Timed calls per relax() configuration.
    pub repeats: usize,
    /// Copies of the training file in the timed epoch (6 x 10k = 60k).
    pub train_repeat: usize,
    /// The PyTorch baseline and the data folder it reads (none: eqprop alone).
    pub torch: Option<(&'a TorchBaseline, &'a Path)>,
}

const WIDTHS: [usize; 3] = [500, 2048, 4096];
const BATCHES: [usize; 3] = [1, 20, 256];
const STEPS: [usize; 2] = [24, 100];

/// The report: the relax() grid, then one epoch on the GPU, the CPU and PyTorch. `log` hears
/// each line as it is measured.
pub fn cuda_report(
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    args: &CudaBench,
    mut log: impl FnMut(&str),
) -> Result<String> {
    let gpu = Gpu::open()?;
    let resources = gpu.kernel_resources()?;
    log(&format!("bench on {} ({resources})", gpu.name()));
    let mut report = format!("GPU: {}\n\n", gpu.name());
    relax_grid(args, &gpu, &mut report, &mut log)?;
    drop(gpu);
    epoch(args, hp, trainset, testset, &mut report, &mut log)?;
    Ok(report)
}

/// Median seconds of `repeats` relax() calls of 784-width-10 (after one warm-up).
fn time_relax(gpu: &Gpu, width: usize, batch: usize, steps: usize, repeats: usize) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let sizes = [784, width, 10];
    let net = GpuNetwork::upload(gpu, &Network::glorot(&sizes, &mut rng)?)?;
    let x: Vec<f32> = (0..batch * 784)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let x = gpu.upload(&x)?;
    let mut input = gpu.zeros(batch * width)?;
    let mut states = Layers::zeros(gpu, &sizes, batch)?;
    let phase = GpuPhase { steps, eps: 0.5 };
    let mut times = Vec::new();
    for r in 0..=repeats {
        gpu.synchronize()?;
        let t0 = Instant::now();
        gpu.input_drive(&net, &x, batch, &mut input)?;
        gpu.relax(&net, &input, &mut states, Start::Zero, phase, None, None)?;
        gpu.synchronize()?;
        if r > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(median(&times))
}

fn relax_grid(
    args: &CudaBench,
    gpu: &Gpu,
    report: &mut String,
    log: &mut impl FnMut(&str),
) -> Result<()> {
    let torch = match args.torch {
        Some((torch, _)) => Some(torch_relax_grid(torch, args.repeats)?),
        None => None,
    };
    let _ = writeln!(
        report,
        "relax(): input drive and T steps of 784-W-10 from zero, median of {} calls each \
         (wall-clock, synchronised)\n",
        args.repeats
    );
    let _ = writeln!(
        report,
        "| W | batch | T | eqprop CUDA (ms) | general kernel (ms) | PyTorch eager (ms) | speed-up |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|");
    for &width in &WIDTHS {
        for &batch in &BATCHES {
            for &steps in &STEPS {
                gpu.set_pair_kernel(false);
                let general = time_relax(gpu, width, batch, steps, args.repeats)?;
                gpu.set_pair_kernel(true);
                let ours = time_relax(gpu, width, batch, steps, args.repeats)?;
                let theirs = torch.as_ref().and_then(|rows| {
                    rows.iter().find_map(|r| {
                        let key = (
                            r["width"].as_u64()?,
                            r["batch"].as_u64()?,
                            r["steps"].as_u64()?,
                        );
                        (key == (width as u64, batch as u64, steps as u64))
                            .then(|| r["seconds"].as_f64())
                            .flatten()
                    })
                });
                let (theirs_ms, ratio) = match theirs {
                    Some(t) => (format!("{:.3}", t * 1e3), format!("{:.0}x", t / ours)),
                    None => ("-".into(), "-".into()),
                };
                let line = format!(
                    "| {width} | {batch} | {steps} | {:.4} | {:.4} | {theirs_ms} | {ratio} |",
                    ours * 1e3,
                    general * 1e3
                );
                log(&line);
                let _ = writeln!(report, "{line}");
            }
        }
    }
    let _ = writeln!(report);
    Ok(())
}

/// PyTorch's relax() over the same grid on the GPU, in one process.
fn torch_relax_grid(torch: &TorchBaseline, repeats: usize) -> Result<Vec<serde_json::Value>> {
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut cmd = std::process::Command::new(&torch.python);
    cmd.arg(&torch.script)
        .args(["--mode", "relax-grid", "--device", "cuda"])
        .args(["--widths", &list(&WIDTHS), "--batches", &list(&BATCHES)])
        .args(["--steps-list", &list(&STEPS)])
        .args(["--repeats", &repeats.to_string()]);
    let result = torch.result(cmd, "the PyTorch relax grid")?;
    Ok(result["rows"].as_array().cloned().unwrap_or_default())
}

/// One epoch of `hp` on `trainset` repeated: GPU, CPU and PyTorch, seconds and test error.
fn epoch(
    args: &CudaBench,
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    report: &mut String,
    log: &mut impl FnMut(&str),
) -> Result<()> {
    let mut big = trainset.clone();
    for _ in 1..args.train_repeat {
        big.extend(trainset);
    }
    let one = Hyperparams {
        epochs: 1,
        ..hp.clone()
    };
    let stop = AtomicBool::new(false);
    let _ = writeln!(
        report,
        "One epoch of {:?} (batch {}, T1 {}, T2 {}, {:?}) on {} images ({}x the training file), \
         then the test error on {} images\n",
        hp.layers,
        hp.batch_size,
        hp.t_free,
        hp.t_nudge,
        hp.nudging,
        big.len(),
        args.train_repeat,
        testset.len()
    );
    let _ = writeln!(
        report,
        "| implementation | seconds for the epoch | test error |"
    );
    let _ = writeln!(report, "|---|---|---|");
    // Two epochs on the GPU: the first pays for the data upload and kernel warm-up.
    let two = Hyperparams {
        epochs: 2,
        ..hp.clone()
    };
    let mut trainer = Trainer::new(two.clone())?;
    let mut gpu = Engine::for_trainer(Device::Cuda, &trainer)?;
    for e in 1..=2 {
        let t0 = Instant::now();
        let s = gpu
            .run_epoch(&mut trainer, &big, &stop, |_| {})?
            .completed()?;
        let wall = t0.elapsed().as_secs_f64();
        let error = gpu.evaluate(trainer.network(), &two, testset)?.error;
        let line = format!(
            "| eqprop CUDA, epoch {e} | {:.3} (training), {wall:.3} (call, upload included) | {error:.2}% |",
            s.seconds
        );
        log(&line);
        let _ = writeln!(report, "{line}");
    }
    let mut cpu = Trainer::new(one.clone())?;
    let t0 = Instant::now();
    cpu.run_epoch(&big, &stop, |_| {});
    let seconds = t0.elapsed().as_secs_f64();
    let error = train::evaluate(cpu.network(), &one, testset).error;
    let line = format!(
        "| eqprop CPU ({} threads), epoch 1 | {seconds:.3} | {error:.2}% |",
        rayon::current_num_threads()
    );
    log(&line);
    let _ = writeln!(report, "{line}");
    if let Some((torch, data_dir)) = args.torch {
        let extra = [
            "--device",
            "cuda",
            "--train-repeat",
            &args.train_repeat.to_string(),
        ];
        let threads = rayon::current_num_threads();
        let result = torch.train(&one, data_dir, threads, &extra)?;
        let seconds: Vec<f64> =
            serde_json::from_value(result["train_seconds_per_epoch"].clone())
                .map_err(|e| Error::Invalid(format!("the PyTorch baseline: {e}")))?;
        let error = result["final_test_error"].as_f64().unwrap_or(f64::NAN);
        let line = format!(
            "| PyTorch eager (CUDA), epoch 1 | {:.3} | {error:.2}% |",
            seconds[0]
        );
        log(&line);
        let _ = writeln!(report, "{line}");
    }
    Ok(())
}
