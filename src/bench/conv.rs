//! Timing a network with convolutions: eqprop's trainer against the PyTorch conv EqProp
//! written the way the research code is (`bench/conv_eqprop_torch.py`, autograd of `Phi`), at
//! the same settings, both on the same threads, interleaved round by round; and the dense FLOP
//! floor of the same work on this machine.

use super::method::{GateRun, interleave_gate};
use super::torch::TorchBaseline;
use super::{BenchOptions, GemmRate, peak_gflops};
use crate::conv::train::{ConvTrainer, evaluate};
use crate::conv::{Architecture, ConvConfig, Coupling};
use crate::data::{Dataset, DatasetName};
use crate::error::{Error, Result};
use crate::learning_rule::Nudging;
use crate::stats::median;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// What to time.
#[derive(Clone, Debug)]
pub struct ConvBench {
    /// Training images per timed run (after one warm-up mini-batch).
    pub images: usize,
    pub rounds: usize,
    pub threads: usize,
    /// The PyTorch side (its interpreter and script) and the data set folder it reads.
    pub torch: Option<(TorchBaseline, PathBuf, DatasetName)>,
    /// The settings the PyTorch side runs (default: eqprop's): the research settings, say,
    /// to compare the algorithm's own speed with the research code's.
    pub torch_config: Option<ConvConfig>,
}

/// Multiply-adds of the work a training image needs when every product is done densely:
/// per relaxation step every coupling's forward product and its transpose (the input's
/// convolution once per phase: the input is clamped), and per weight update `dPhi/dtheta` at
/// two states (a forward product and a weight-gradient product each).
pub fn dense_macs_per_train_image(cfg: &ConvConfig) -> f64 {
    let arch = &cfg.arch;
    let all: f64 = (1..arch.num_layers()).map(|k| coupling_macs(arch, k)).sum();
    dense_steps(cfg) * arch.step_macs() as f64
        + phases(cfg) * coupling_macs(arch, 1)
        + 2.0 * 2.0 * all
}

/// Multiply-adds of coupling `k`'s forward product for one example.
fn coupling_macs(arch: &Architecture, k: usize) -> f64 {
    match arch.conv_geometry(k) {
        Some(g) => g.macs() as f64,
        None => (arch.layers()[k - 1].size() * arch.layers()[k].size()) as f64,
    }
}

/// Phases of a training example: the free one and one or two nudged ones.
fn phases(cfg: &ConvConfig) -> f64 {
    match cfg.nudging {
        Nudging::Symmetric => 3.0,
        Nudging::Positive | Nudging::RandomSign => 2.0,
    }
}

/// Relaxation steps of a training example when no phase ends early.
fn dense_steps(cfg: &ConvConfig) -> f64 {
    cfg.t_free as f64 + (phases(cfg) - 1.0) * cfg.t_nudge as f64
}

/// What the surprise gate saved when `learned_share` of the examples learned: `(share of the
/// relaxation steps, share of the multiply-adds)` of [`dense_macs_per_train_image`]'s work,
/// at the config's step counts. An example stopped after its free phase saves its nudged
/// phases and its share of the update (as [`super::gate_savings`] counts for dense networks).
pub fn gate_savings(cfg: &ConvConfig, learned_share: f64) -> (f64, f64) {
    let free_steps = cfg.t_free as f64;
    let free_macs = free_steps * cfg.arch.step_macs() as f64 + coupling_macs(&cfg.arch, 1);
    let skipped = 1.0 - learned_share;
    (
        skipped * (1.0 - free_steps / dense_steps(cfg)),
        skipped * (1.0 - free_macs / dense_macs_per_train_image(cfg)),
    )
}

/// The same training of `cfg` without and with the surprise gate (`cfg`'s gate settings, the
/// default gate without them), interleaved as [`super::compare_gate`] does for dense networks:
/// test error, learned share, savings and wall-clock ratio.
pub fn compare_conv_gate(
    cfg: &ConvConfig,
    trainset: &Dataset,
    testset: &Dataset,
    opts: &BenchOptions,
    log: impl FnMut(&str),
) -> Result<String> {
    let gated = ConvConfig {
        modulator: Some(cfg.modulator.unwrap_or_default()),
        ..cfg.clone()
    };
    let plain = ConvConfig {
        modulator: None,
        ..cfg.clone()
    };
    let run = |gate: bool| -> Result<GateRun> {
        let cfg = if gate { &gated } else { &plain };
        let mut trainer = ConvTrainer::new(cfg.clone())?;
        let (mut seconds, mut learned) = (0.0, 0.0);
        for _ in 0..cfg.epochs {
            let epoch = trainer.run_epoch(trainset, |_, _| true);
            let epoch = epoch.expect("an epoch that nothing stops completes");
            seconds += epoch.seconds;
            learned += epoch.learned_share;
        }
        Ok(GateRun {
            seconds,
            epochs: cfg.epochs,
            error: evaluate(trainer.network(), cfg, testset).error,
            learned: learned / cfg.epochs as f64,
        })
    };
    let savings = |share: f64| gate_savings(cfg, share);
    interleave_gate(opts, cfg.epochs, savings, run, log)
}

/// Seconds per training image of eqprop's trainer: one warm-up mini-batch, then `images`.
fn time_eqprop(cfg: &ConvConfig, train: &Dataset, images: usize) -> f64 {
    let mut trainer = ConvTrainer::new(cfg.clone()).expect("validated");
    let warm = train.select(&(0..cfg.batch_size).collect::<Vec<_>>());
    let _ = trainer.run_epoch(&warm, |_, _| true);
    let timed = train.select(&(0..images).collect::<Vec<_>>());
    let start = Instant::now();
    let _ = trainer.run_epoch(&timed, |_, _| true);
    start.elapsed().as_secs_f64() / images as f64
}

/// The script's flags for `cfg`: conv layers with a 2x2 pool each, then dense layers.
fn torch_flags(cfg: &ConvConfig) -> Result<Vec<String>> {
    let arch = &cfg.arch;
    let (mut channels, mut kernels, mut paddings, mut fc) = (vec![], vec![], vec![], vec![]);
    for (k, c) in (1..).zip(arch.couplings()) {
        match *c {
            Coupling::Conv {
                kernel,
                padding,
                pool: 2,
            } if fc.is_empty() => {
                channels.push(arch.layers()[k].channels.to_string());
                kernels.push(kernel.to_string());
                paddings.push(padding.to_string());
            }
            Coupling::Dense => fc.push(arch.layers()[k].size().to_string()),
            _ => {
                return Err(Error::Invalid(format!(
                    "the PyTorch conv baseline runs pooled (+pool) convolutions followed by dense \
                     layers; {arch} is not of that form (pass --no-torch)"
                )));
            }
        }
    }
    let nudging = match cfg.nudging {
        Nudging::Symmetric => "symmetric",
        Nudging::Positive => "positive",
        Nudging::RandomSign => "random-sign",
    };
    let join = |v: &[String]| v.join(",");
    let lr: Vec<String> = cfg.lr.iter().map(f32::to_string).collect();
    Ok([
        ("--channels", join(&channels)),
        ("--kernels", join(&kernels)),
        ("--paddings", join(&paddings)),
        ("--fc", join(&fc)),
        ("--batch-size", cfg.batch_size.to_string()),
        ("--t1", cfg.t_free.to_string()),
        ("--t2", cfg.t_nudge.to_string()),
        ("--beta", cfg.beta.to_string()),
        ("--nudging", nudging.to_string()),
        ("--optim", cfg.optimizer.name().to_string()),
        ("--lr", join(&lr)),
        ("--momentum", cfg.momentum.to_string()),
        ("--seed", cfg.seed.to_string()),
    ]
    .into_iter()
    .flat_map(|(f, v)| [f.to_string(), v])
    .collect())
}

/// Seconds per training image of the PyTorch script (its `--time-images` mode).
fn time_torch(
    cfg: &ConvConfig,
    (baseline, dir, name): &(TorchBaseline, PathBuf, DatasetName),
    images: usize,
    threads: usize,
) -> Result<f64> {
    let mut cmd = Command::new(&baseline.python);
    cmd.arg(&baseline.script).arg("--data-dir").arg(dir);
    cmd.args(["--dataset", name.as_str()]);
    cmd.args(torch_flags(cfg)?);
    cmd.args(["--threads", &threads.to_string()]);
    cmd.args(["--time-images", &images.to_string()]);
    let result = baseline.result(cmd, "the PyTorch conv baseline")?;
    result["seconds_per_image"]
        .as_f64()
        .ok_or_else(|| Error::Invalid("the PyTorch conv baseline gave no seconds_per_image".into()))
}

/// Times both sides (`rounds` interleaved runs each) and returns a Markdown report.
pub fn conv_benchmark(
    cfg: &ConvConfig,
    train: &Dataset,
    plan: &ConvBench,
    mut log: impl FnMut(&str),
) -> Result<String> {
    if plan.images < cfg.batch_size || plan.images + cfg.batch_size > train.len() {
        return Err(Error::Invalid(format!(
            "--images must be at least one mini-batch ({}) and leave one for the warm-up \
             ({} training images)",
            cfg.batch_size,
            train.len()
        )));
    }
    let theirs_cfg = plan.torch_config.as_ref().unwrap_or(cfg);
    if let Some(torch) = &plan.torch {
        torch_flags(theirs_cfg)?;
        torch.0.check()?;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=plan.rounds {
        ours.push(time_eqprop(cfg, train, plan.images));
        log(&format!(
            "round {round}: eqprop {:.2} ms per training image",
            1e3 * ours[ours.len() - 1]
        ));
        if let Some(torch) = &plan.torch {
            theirs.push(time_torch(theirs_cfg, torch, plan.images, plan.threads)?);
            log(&format!(
                "round {round}: PyTorch {:.2} ms per training image",
                1e3 * theirs[theirs.len() - 1]
            ));
        }
    }
    let rate = peak_gflops(plan.threads);
    Ok(report(
        cfg,
        plan,
        median(&ours),
        (!theirs.is_empty()).then(|| (median(&theirs), theirs_cfg)),
        rate,
    ))
}

fn report(
    cfg: &ConvConfig,
    plan: &ConvBench,
    ours: f64,
    theirs: Option<(f64, &ConvConfig)>,
    rate: GemmRate,
) -> String {
    let flops = 2.0 * dense_macs_per_train_image(cfg);
    let floor = flops / (rate.sustained * 1e9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} | batch {} | T1 {} T2 {} | {:?} | {:?} nudging | {} threads | {} images x {} rounds (medians)\n",
        cfg.arch,
        cfg.batch_size,
        cfg.t_free,
        cfg.t_nudge,
        cfg.sweep,
        cfg.nudging,
        plan.threads,
        plan.images,
        plan.rounds
    );
    let _ = writeln!(
        out,
        "| | ms per training image | epoch of 10k (s) | ratio |\n|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| eqprop | {:.2} | {:.1} | 1.00 |",
        1e3 * ours,
        1e4 * ours
    );
    if let Some((t, c)) = theirs {
        let _ = writeln!(
            out,
            "| PyTorch (autograd of Phi; batch {}, T1 {}, T2 {}, synchronous, {:?}) | {:.2} | {:.1} | {:.2}x slower |",
            c.batch_size,
            c.t_free,
            c.t_nudge,
            c.nudging,
            1e3 * t,
            1e4 * t,
            t / ours
        );
    }
    let _ = writeln!(
        out,
        "| dense FLOP floor | {:.2} | {:.1} | eqprop at {:.2}x the floor |",
        1e3 * floor,
        1e4 * floor,
        ours / floor
    );
    let _ = writeln!(
        out,
        "\nDense work {:.3} GFLOP per training image (every product dense; eqprop's routed \
         transposes skip part of it); floor = that / the sustained GEMM rate {:.1} GFLOP/s \
         ({} threads, burst {:.1}).",
        flops / 1e9,
        rate.sustained,
        plan.threads,
        rate.burst
    );
    out
}
