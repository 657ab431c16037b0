//! `eqprop bench --device cuda`: the CUDA backend against PyTorch's eager loop on the same GPU.
//!
//! Times relax() (input drive and every step of a free phase from zero) over a grid of widths,
//! batch sizes and step counts, then one training epoch of the paper's 784-500-10 on the
//! training set repeated `--train-repeat` times, on the GPU, on the CPU path and in PyTorch.
//! Prints a Markdown table and writes it to `--report`.

use super::{BenchArgs, median, time_torch};
use anyhow::{Context, Result, bail};
use eqprop::backend::cuda::{Gpu, GpuNetwork, GpuPhase, Layers, Start};
use eqprop::config::Hyperparams;
use eqprop::data::Dataset;
use eqprop::device::{Device, Engine};
use eqprop::network::Network;
use eqprop::train::{self, Trainer};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const WIDTHS: [usize; 3] = [500, 2048, 4096];
const BATCHES: [usize; 3] = [1, 20, 256];
const STEPS: [usize; 2] = [24, 100];

pub fn bench(
    args: &BenchArgs,
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    data_dir: &Path,
) -> Result<()> {
    let gpu = Gpu::open()?;
    eprintln!("bench on {} ({})", gpu.name(), gpu.kernel_resources()?);
    let mut report = format!("GPU: {}\n\n", gpu.name());
    relax_grid(args, &gpu, &mut report)?;
    drop(gpu);
    epoch(args, hp, trainset, testset, data_dir, &mut report)?;
    println!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, &report).with_context(|| path.display().to_string())?;
    }
    Ok(())
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
    Ok(median(&mut times))
}

fn relax_grid(args: &BenchArgs, gpu: &Gpu, report: &mut String) -> Result<()> {
    let torch = if args.no_torch {
        None
    } else {
        Some(torch_relax_grid(args)?)
    };
    writeln!(
        report,
        "relax(): input drive and T steps of 784-W-10 from zero, median of {} calls each \
         (wall-clock, synchronised)\n",
        args.repeats
    )?;
    writeln!(
        report,
        "| W | batch | T | eqprop CUDA (ms) | general kernel (ms) | PyTorch eager (ms) | speed-up |"
    )?;
    writeln!(report, "|---|---|---|---|---|---|---|")?;
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
                eprintln!("{line}");
                writeln!(report, "{line}")?;
            }
        }
    }
    writeln!(report)?;
    Ok(())
}

/// PyTorch's relax() over the same grid on the GPU, in one process.
fn torch_relax_grid(args: &BenchArgs) -> Result<Vec<serde_json::Value>> {
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(&args.python)
        .arg(&args.torch_script)
        .args(["--mode", "relax-grid", "--device", "cuda"])
        .args(["--widths", &list(&WIDTHS), "--batches", &list(&BATCHES)])
        .args(["--steps-list", &list(&STEPS)])
        .args(["--repeats", &args.repeats.to_string()])
        .output()
        .with_context(|| format!("running {}", args.torch_script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(json) = text.lines().rev().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!(
            "the PyTorch relax grid failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let result: serde_json::Value = serde_json::from_str(json)?;
    Ok(result["rows"].as_array().cloned().unwrap_or_default())
}

/// One epoch of `hp` on `trainset` repeated: GPU, CPU and PyTorch, seconds and test error.
fn epoch(
    args: &BenchArgs,
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    data_dir: &Path,
    report: &mut String,
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
    writeln!(
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
    )?;
    writeln!(
        report,
        "| implementation | seconds for the epoch | test error |"
    )?;
    writeln!(report, "|---|---|---|")?;
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
        eprintln!("{line}");
        writeln!(report, "{line}")?;
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
    eprintln!("{line}");
    writeln!(report, "{line}")?;
    if !args.no_torch {
        let extra = [
            "--device",
            "cuda",
            "--train-repeat",
            &args.train_repeat.to_string(),
        ];
        let result = time_torch(args, &one, data_dir, &extra)?;
        let seconds: Vec<f64> = serde_json::from_value(result["train_seconds_per_epoch"].clone())?;
        let error = result["final_test_error"].as_f64().unwrap_or(f64::NAN);
        let line = format!(
            "| PyTorch eager (CUDA), epoch 1 | {:.3} | {error:.2}% |",
            seconds[0]
        );
        eprintln!("{line}");
        writeln!(report, "{line}")?;
    }
    Ok(())
}
