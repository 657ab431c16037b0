//! `eqprop train` and `eqprop eval` for networks given by an architecture spec with
//! convolutions (`--arch`, or a `conv-*` preset): the library's [`ConvRun`] does the work.

use super::{
    BenchArgs, Overrides, TrainArgs, checks, epoch_bar, gate_line, resume_refusal, run_dir,
    show_epoch, stop_on_ctrl_c, write_report,
};
use anyhow::{Context, Result, bail};
use eqprop::bench::BenchOptions;
use eqprop::bench::TorchBaseline;
use eqprop::bench::conv::{ConvBench, compare_conv_gate, conv_benchmark};
use eqprop::conv::checkpoint::is_conv_checkpoint;
use eqprop::conv::train::CONV_PRESETS;
use eqprop::conv::{Architecture, ConvConfig, evaluate};
use eqprop::data::{DatasetName, Split};
use eqprop::device::{Device, Work};
use eqprop::metrics::EpochRecord;
use eqprop::run::RunFiles;
use eqprop::run::{ConvObserver, ConvRun};
use indicatif::ProgressBar;

/// Whether the run asks for a network with convolutions (a `conv-*` preset, an `--arch` spec
/// that has one, or `--resume` of a run whose checkpoint is of such a network); a spec that
/// does not parse is refused here, before any work.
pub(super) fn convolutional(args: &TrainArgs) -> Result<bool> {
    let spec = match &args.overrides.arch {
        Some(spec) => Some(Architecture::parse(spec).context("--arch")?),
        None => None,
    };
    let preset = args
        .preset
        .as_deref()
        .is_some_and(|p| CONV_PRESETS.contains(&p));
    let resumed = args.resume && is_conv_checkpoint(&RunFiles::in_dir(&run_dir(args)).checkpoint);
    let conv = preset || resumed || spec.is_some_and(|a| !a.is_dense());
    let o = &args.overrides;
    let conv_only = [
        o.sweep.is_some(),
        o.momentum.is_some(),
        o.optimizer.is_some(),
        o.weight_decay.is_some(),
        o.tol.is_some(),
        o.shift.is_some(),
        o.shift_fill.is_some(),
        o.flip.is_some(),
        o.normalize.is_some(),
    ];
    if !conv && conv_only.contains(&true) {
        bail!(
            "--sweep, --momentum, --optimizer, --weight-decay, --tol, --shift, --shift-fill, --flip and --normalize apply to networks with convolutions (--arch or a conv-* preset)"
        );
    }
    Ok(conv)
}

/// The default preset of a data set.
fn default_preset(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Mnist => "conv-mnist",
        DatasetName::FashionMnist => "conv-fashion",
        DatasetName::Cifar10 => "conv-cifar10",
    }
}

/// The config: the preset with the flags applied (`--train-limit` kept in it); flags these
/// networks do not support yet are refused, naming them.
fn config(args: &TrainArgs) -> Result<ConvConfig> {
    let preset = args.preset.as_deref();
    let mut cfg = config_of(
        preset.unwrap_or(default_preset(args.data.name())),
        &args.overrides,
    )?;
    cfg.train_limit = args.data.train_limit;
    Ok(cfg)
}

/// The run saved in the run folder, to continue with the flags given: the checkpoint's config
/// (or `--preset`/`--arch`'s) with the flags applied must be the checkpoint's, but for
/// `--epochs`; a flag that asks for something else is refused, naming both values.
fn resume(args: &TrainArgs, files: &RunFiles) -> Result<ConvRun> {
    let mut saved = eqprop::conv::checkpoint::load(&files.checkpoint)?;
    // A checkpoint without a limit trained on every example, or was written before the limit
    // was kept (then only the flag knows it): either way the flag's limit is taken.
    saved.config.train_limit = saved.config.train_limit.or(args.data.train_limit);
    let mut asked = match args.preset.is_some() || args.overrides.arch.is_some() {
        true => config(args)?,
        false => with_flags(saved.config.clone(), &args.overrides, "the run")?,
    };
    asked.train_limit = args.data.train_limit.or(saved.config.train_limit);
    asked.epochs = args.overrides.epochs.unwrap_or(saved.config.epochs);
    ConvRun::resume_checkpoint(saved, &files.checkpoint, asked).map_err(|e| resume_refusal(args, e))
}

/// A preset with the flags applied; flags these networks do not support yet are refused.
fn config_of(preset: &str, o: &Overrides) -> Result<ConvConfig> {
    with_flags(
        ConvConfig::preset(preset)?,
        o,
        &format!("the preset {preset}"),
    )
}

/// `cfg` (of `what`: a preset, or the run resumed) with the flags applied; flags these
/// networks do not support yet are refused.
fn with_flags(mut cfg: ConvConfig, o: &Overrides, what: &str) -> Result<ConvConfig> {
    if o.target_off.is_some() || o.target_on.is_some() {
        bail!("--target-off/--target-on is not supported yet for networks with convolutions");
    }
    if let Some(spec) = &o.arch {
        cfg.set_arch(Architecture::parse(spec).context("--arch")?);
        if o.lr.is_none() && cfg.lr.len() != cfg.arch.num_layers() - 1 {
            bail!(
                "--arch has {} couplings but {what} has {} learning rates: give --lr",
                cfg.arch.num_layers() - 1,
                cfg.lr.len()
            );
        }
    }
    let set = |field: &mut usize, v: Option<usize>| *field = v.unwrap_or(*field);
    set(&mut cfg.batch_size, o.batch_size);
    set(&mut cfg.t_free, o.t_free);
    set(&mut cfg.t_nudge, o.t_nudge);
    set(&mut cfg.epochs, o.epochs);
    cfg.eps = o.eps.unwrap_or(cfg.eps);
    cfg.beta = o.beta.unwrap_or(cfg.beta);
    cfg.nudging = o.nudging.unwrap_or(cfg.nudging);
    cfg.sweep = o.sweep.unwrap_or(cfg.sweep);
    cfg.momentum = o.momentum.unwrap_or(cfg.momentum);
    cfg.weight_decay = o.weight_decay.unwrap_or(cfg.weight_decay);
    cfg.optimizer = o.optimizer.unwrap_or(cfg.optimizer);
    cfg.tol = o.tol.unwrap_or(cfg.tol);
    cfg.shift = o.shift.unwrap_or(cfg.shift);
    cfg.shift_fill = o.shift_fill.unwrap_or(cfg.shift_fill);
    cfg.flip = o.flip.unwrap_or(cfg.flip);
    if let Some(normalize) = &o.normalize {
        cfg.normalize = normalize.0.clone();
    }
    cfg.persistent = o.persistent.unwrap_or(cfg.persistent);
    o.apply_gate(&mut cfg.modulator);
    o.apply_generative(&mut cfg.generative);
    cfg.seed = o.seed.unwrap_or(cfg.seed);
    o.apply_rates(&mut cfg.lr, &mut cfg.schedule);
    cfg.validate()?;
    Ok(cfg)
}

pub(super) fn train(args: TrainArgs, device: Device) -> Result<()> {
    device.require(Work::Convolutional)?;
    if args.dreams {
        bail!("--dreams is not supported yet for networks with convolutions");
    }
    let dir = run_dir(&args);
    let files = RunFiles::in_dir(&dir);
    let run = match args.resume {
        true => resume(&args, &files)?,
        false => ConvRun::new(config(&args)?, args.data.name())?,
    };
    let data = args
        .data
        .for_checkpoint(&files.checkpoint, run.dataset().as_str(), false)?
        .with_train_limit(run.config().train_limit);
    checks::writable_dir(&dir)?;
    let trainset = data.load(Split::Train)?;
    let testset = data.load(Split::Test)?;
    run.check_data(&trainset, &testset)?;
    let mut run = run.save_in(files.clone(), args.force || args.resume)?;
    eprintln!(
        "training {} on {} ({} train / {} test) with {}",
        run.config().arch,
        data.name(),
        trainset.len(),
        testset.len(),
        serde_json::to_string(run.config())?
    );
    let stop = stop_on_ctrl_c()?;
    let mut console = Console { bar: None };
    let report = run.train(&trainset, &testset, &stop, &mut console);
    if let Some(bar) = console.bar.take() {
        bar.finish_and_clear();
    }
    if report?.interrupted {
        eprintln!(
            "interrupted: {} holds the last completed epoch; continue with --resume",
            files.checkpoint.display()
        );
        std::process::exit(130);
    }
    eprintln!(
        "done: {} ({})",
        files.checkpoint.display(),
        files.metrics.display()
    );
    Ok(())
}

/// Whether `eqprop bench` is asked to time a network with convolutions.
pub(super) fn bench_convolutional(args: &BenchArgs) -> Result<bool> {
    let spec = match &args.overrides.arch {
        Some(spec) => Some(Architecture::parse(spec).context("--arch")?),
        None => None,
    };
    let preset = args.preset.as_deref();
    Ok(preset.is_some_and(|p| CONV_PRESETS.contains(&p)) || spec.is_some_and(|a| !a.is_dense()))
}

/// `eqprop bench` of a network with convolutions: eqprop against the PyTorch conv EqProp at
/// the same settings, and the dense FLOP floor; with `--gate-ab`, training without and with the
/// surprise gate.
pub(super) fn bench(args: &BenchArgs, device: Device) -> Result<()> {
    device.require(Work::Convolutional)?;
    let preset = args.preset.as_deref();
    let mut cfg = config_of(
        preset.unwrap_or(default_preset(args.data.name())),
        &args.overrides,
    )?;
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if let Some(report) = &args.report {
        checks::writable_file(report)?;
    }
    let trainset = args.data.load(Split::Train)?;
    cfg.check_data(&trainset)?;
    if args.gate_ab {
        if args.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        cfg.epochs = args.epochs;
        let opts = BenchOptions {
            rounds: args.rounds,
            settle: args.settle()?,
            threads: args.threads,
        };
        let testset = args.data.load(Split::Test)?;
        cfg.check_data(&testset)?;
        let log = |line: &str| eprintln!("{line}");
        let report = compare_conv_gate(&cfg, &trainset, &testset, &opts, log)?;
        return write_report(args, &report);
    }
    let torch = (!args.no_torch).then(|| {
        let baseline = TorchBaseline {
            python: args.python.clone(),
            script: args.conv_torch_script.clone(),
        };
        (baseline, args.data.source().dir(), args.data.name())
    });
    let torch_config = match &args.torch_preset {
        Some(name) => Some(ConvConfig::preset(name)?),
        None => None,
    };
    let plan = ConvBench {
        images: args.images,
        rounds: args.rounds,
        threads: args.threads,
        torch,
        torch_config,
    };
    let report = conv_benchmark(&cfg, &trainset, &plan, |line| eprintln!("{line}"))?;
    write_report(args, &report)
}

/// `eqprop eval` of a checkpoint of a network with convolutions.
pub(super) fn eval(args: &super::EvalArgs, device: Device) -> Result<()> {
    device.require(Work::Convolutional)?;
    let ckpt = eqprop::conv::checkpoint::load(&args.checkpoint)?;
    let data = args
        .data
        .for_checkpoint(&args.checkpoint, &ckpt.dataset, args.other_dataset)?;
    let testset = data.load(Split::Test)?;
    ckpt.config
        .check_data(&testset)
        .with_context(|| format!("{} on {}", args.checkpoint.display(), data.name()))?;
    let result = evaluate(&ckpt.network, &ckpt.config, &testset);
    println!(
        "test error {:.2}% ({} {} test images), mean free energy {:.4}",
        result.error,
        testset.len(),
        data.name(),
        result.mean_energy
    );
    Ok(())
}

/// A progress bar per epoch, a line per epoch, the curve.
struct Console {
    bar: Option<ProgressBar>,
}

impl ConvObserver for Console {
    fn epoch_started(&mut self, epoch: usize, examples: usize) {
        self.bar = Some(epoch_bar(epoch, examples));
    }

    fn batch(&mut self, done: usize, correct: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!(
                "acc={:.2}%",
                100.0 * correct as f64 / done.max(1) as f64
            ));
        }
    }

    fn epoch_ended(&mut self, record: &EpochRecord, run: &ConvRun) -> eqprop::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let files = run.files().expect("the train command saves its run");
        let title = format!("EqProp {} on {}", run.config().arch, run.dataset().as_str());
        show_epoch(record, &gate_line(record), files, &title)
    }
}
