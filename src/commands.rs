//! The subcommands: argument parsing and console output only; the work is in the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use eqprop::bench;
use eqprop::checkpoint;
use eqprop::config::{Hyperparams, Schedule};
use eqprop::conv::Architecture;
use eqprop::data::{DataSource, Dataset, DatasetName, Split};
use eqprop::device::{Device, Engine, Work};
use eqprop::learning_rule::{Generative, GenerativeStart, Nudging};
use eqprop::metrics::{self, EpochRecord};
use eqprop::modulator::{Modulator, Threshold};
use eqprop::run::{self, ResumeError, Run, RunFiles};
use eqprop::train;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod agent;
mod arch;
mod checks;
mod continual;
mod dream;
mod life;
mod plots;

#[derive(Parser, Debug)]
#[command(
    name = "eqprop",
    version,
    about = "Equilibrium Propagation: a network that learns by relaxing"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where the work runs: cpu, or cuda (an NVIDIA GPU; needs a build with --features cuda).
    #[arg(long, global = true, value_enum, default_value = "cpu")]
    device: Device,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a network with EqProp, checkpointing every epoch.
    Train(Box<TrainArgs>),
    /// Report the test error of a checkpoint.
    Eval(EvalArgs),
    /// Time training epochs against the PyTorch baseline on the same data and settings.
    Bench(Box<BenchArgs>),
    /// Gymnasium-compatible classic-control environments (CartPole-v1, Pendulum-v1).
    Env(EnvArgs),
    /// Render an episode of an environment to an animated GIF.
    Render(RenderArgs),
    /// Clamp labels on the output, relax the input, and write what the network imagines.
    Dream(Box<dream::DreamArgs>),
    /// Train the backprop classifier that judges dreams (not the dreamer) on real images.
    Judge(dream::JudgeArgs),
    /// Learn Split-MNIST's tasks one after another, with or without replay; report the accuracy
    /// matrix, average accuracy and forgetting.
    Continual(Box<continual::ContinualArgs>),
    /// The robot: learn a world model online with EqProp and plan with it on CartPole-v1 or
    /// Pendulum-v1 (or plan with the true simulator, or act at random, as baselines).
    Agent(Box<agent::AgentArgs>),
    /// The living agent: learn world after world online (the physics changed between them),
    /// keep the old ones by dreaming them; report the error matrix, the returns and the gate.
    Life(Box<life::LifeArgs>),
}

#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// mnist, fashion-mnist or cifar10 (3072 inputs: pass --layers 3072,...) [default: a
    /// checkpoint's own, else mnist].
    #[arg(long)]
    dataset: Option<DatasetName>,
    /// Folder holding <dataset>/ with its files (IDX, or CIFAR-10's batches) [default:
    /// $EQPROP_DATA_DIR, else the user cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Base URL of a mirror holding mnist/ and fashion-mnist/ with the .gz files (and cifar-10/
    /// with cifar-10-binary.tar.gz), to download missing files from [default: $EQPROP_MIRROR,
    /// else the canonical mirrors].
    #[arg(long)]
    mirror: Option<String>,
    /// Use only the first N training images (10000: the MNIST subset this project's figures
    /// were measured on).
    #[arg(long)]
    train_limit: Option<usize>,
}

impl DataArgs {
    /// The data set asked for, mnist if none was.
    fn name(&self) -> DatasetName {
        self.dataset.unwrap_or(DatasetName::Mnist)
    }

    /// The same source with the training limit `limit`.
    fn with_train_limit(self, limit: Option<usize>) -> Self {
        Self {
            train_limit: limit,
            ..self
        }
    }

    /// The same source with the data set `name`.
    fn with_name(&self, name: DatasetName) -> Self {
        Self {
            dataset: Some(name),
            ..self.clone()
        }
    }

    /// The data set a checkpoint trained on `trained_on` is used with: the one asked for, which
    /// must be the same unless `other_allowed`, else the checkpoint's.
    fn for_checkpoint(&self, path: &Path, trained_on: &str, other_allowed: bool) -> Result<Self> {
        let own: DatasetName = trained_on
            .parse()
            .with_context(|| format!("{}: its data set", path.display()))?;
        match self.dataset {
            Some(asked) if asked != own && !other_allowed => bail!(
                "{} was trained on {own}, not {asked}: drop --dataset to use {own}, or pass \
                 --other-dataset to use {asked} anyway",
                path.display()
            ),
            Some(_) => Ok(self.clone()),
            None => Ok(self.with_name(own)),
        }
    }

    /// The library's description of this data: the data set, its folder, the mirror and the
    /// training limit.
    fn source(&self) -> DataSource {
        DataSource {
            name: self.name(),
            root: self.data_dir.clone(),
            mirror: self.mirror.clone(),
            train_limit: self.train_limit,
        }
    }

    /// The split, the training images cut to `--train-limit`.
    fn load(&self, split: Split) -> Result<Dataset> {
        Ok(self.source().load(split)?)
    }
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Starting hyperparameters: best, best-fashion, paper, paper-2h, paper-3h, deep; networks
    /// with convolutions: conv-mnist, conv-fashion, conv-cifar10, conv-reference [default: best
    /// for mnist and cifar10, best-fashion for fashion-mnist; with a convolutional --arch,
    /// conv-mnist, conv-fashion or conv-cifar10].
    #[arg(long)]
    preset: Option<String>,
    /// Output folder for checkpoint.safetensors, metrics.jsonl and curve.svg [default:
    /// runs/<dataset>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in --out.
    #[arg(long)]
    resume: bool,
    /// Start over even if --out already holds a run.
    #[arg(long)]
    force: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// After every epoch, write a grid of dreams (labels 0-9) to dreams/epoch-N.png in --out.
    #[arg(long)]
    dreams: bool,
    #[command(flatten)]
    dream: dream::DreamDynamics,
    #[command(flatten)]
    overrides: Overrides,
}

/// Hyperparameters that override the preset.
#[derive(Args, Debug)]
struct Overrides {
    /// Units per layer, input first, e.g. 784,500,10.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',', conflicts_with = "arch")]
    layers: Option<Vec<usize>>,
    /// The network as a spec: the input (CxHxW or N), then per layer `N` (dense) or
    /// `conv{C}k{K}[p{P}][+pool]`, last perhaps `softmax{N}` (a cross-entropy readout), e.g.
    /// 1x28x28,conv32k5+pool,conv64k5+pool,10.
    #[arg(long)]
    arch: Option<String>,
    /// Order of the layer updates in a relaxation step (networks with convolutions).
    #[arg(long, value_enum)]
    sweep: Option<eqprop::conv::Sweep>,
    /// Heavy-ball momentum of the update (networks with convolutions).
    #[arg(long)]
    momentum: Option<f32>,
    /// What turns the EqProp estimate into a step (networks with convolutions): sgd (with
    /// --momentum), or adam (the rates are then step sizes, e.g. --lr 1e-3 for every coupling).
    #[arg(long, value_enum)]
    optimizer: Option<eqprop::conv::Optimizer>,
    /// Decoupled weight decay: after every update W_k <- (1 - lr_k D) W_k (networks with
    /// convolutions; 0: none).
    #[arg(long, value_name = "D")]
    weight_decay: Option<f32>,
    /// End a relaxation phase once no state moves by more than this in a step (networks with
    /// convolutions; 0: run every step).
    #[arg(long)]
    tol: Option<f32>,
    /// Data augmentation: translate each training image by up to N pixels along each axis,
    /// drawn anew every epoch (networks with convolutions; 0: none).
    #[arg(long)]
    shift: Option<usize>,
    /// What the pixels a --shift uncovers become: zero, or edge (the image's nearest pixel: a
    /// random crop of the edge-padded image; networks with convolutions).
    #[arg(long, value_enum, value_name = "FILL")]
    shift_fill: Option<eqprop::data::Fill>,
    /// Data augmentation: mirror each training image left to right with probability 1/2
    /// (networks with convolutions).
    #[arg(long, value_name = "BOOL")]
    flip: Option<bool>,
    /// Standardise every image the network sees, channel by channel: MEAN,../STD,.. (one value
    /// per channel, e.g. 0.5/0.25), or none (networks with convolutions).
    #[arg(long, value_name = "MEAN/STD", value_parser = parse_normalize)]
    normalize: Option<Normalize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Free-phase steps T1.
    #[arg(long)]
    t_free: Option<usize>,
    /// Nudged-phase steps T2.
    #[arg(long)]
    t_nudge: Option<usize>,
    #[arg(long)]
    eps: Option<f32>,
    #[arg(long)]
    beta: Option<f32>,
    #[arg(long, value_enum)]
    nudging: Option<Nudging>,
    /// One learning rate per weight layer, e.g. 0.1,0.05.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',')]
    lr: Option<Vec<f32>>,
    /// Cosine-decay the learning rates to this fraction over the run (omit for the preset's).
    #[arg(long)]
    cosine_to: Option<f32>,
    /// Constant learning rates.
    #[arg(long, conflicts_with = "cosine_to")]
    constant_lr: bool,
    /// Persistent particles: each example's free phase starts from its last fixed point.
    #[arg(long)]
    persistent: Option<bool>,
    /// Output target of the wrong classes (paper: 0).
    #[arg(long)]
    target_off: Option<f32>,
    /// Output target of the right class (paper: 1).
    #[arg(long)]
    target_on: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Train for dreaming too: a phase pair with the label clamped and the input free, nudged
    /// toward the real image.
    #[arg(long)]
    generative: bool,
    /// Strength of the generative nudge of the input toward the real image.
    #[arg(long, requires = "generative")]
    gen_beta: Option<f32>,
    /// Steps of the generative free phase.
    #[arg(long, requires = "generative")]
    gen_t_free: Option<usize>,
    /// Steps of the generative nudged phase.
    #[arg(long, requires = "generative")]
    gen_t_nudge: Option<usize>,
    /// Generative learning rates as a fraction of the discriminative ones.
    #[arg(long, requires = "generative")]
    gen_lr_scale: Option<f32>,
    /// Where the generative free phase starts.
    #[arg(long, requires = "generative", value_enum)]
    gen_start: Option<GenerativeStart>,
    /// Stiffness of the free input layer in generative phases and dreams.
    #[arg(long, requires = "generative")]
    gen_stiffness: Option<f32>,
    /// First epoch (1-based) with generative phases.
    #[arg(long, requires = "generative")]
    gen_from_epoch: Option<usize>,
    /// The generative update changes only W_1 and the input bias.
    #[arg(long, requires = "generative")]
    gen_input_only: bool,
    /// Surprise gate ("dopamine"): only examples whose free-phase output cost exceeds the
    /// threshold get a nudged phase and an update.
    #[arg(long)]
    gate: bool,
    /// Fixed gate threshold on the output cost 1/2 ||y - t||^2 (with a softmax readout the
    /// cross-entropy -ln p_y) [default: 1e-4].
    #[arg(long, requires = "gate", conflicts_with = "gate_share")]
    gate_threshold: Option<f32>,
    /// Adaptive gate: the threshold tracks the quantile that lets this share of examples learn.
    #[arg(long, requires = "gate")]
    gate_share: Option<f32>,
    /// Threshold move per mini-batch of the adaptive gate.
    #[arg(long, requires = "gate_share", default_value_t = 0.01)]
    gate_step: f32,
    /// Learning-rate multiplier of the examples that pass the gate.
    #[arg(long, requires = "gate")]
    gate_gain: Option<f32>,
}

impl Overrides {
    fn apply(&self, hp: &mut Hyperparams) {
        let o = self;
        if let Some(v) = &o.layers {
            hp.layers.clone_from(v);
        }
        set(&mut hp.epochs, o.epochs);
        if let Some(arch) = o.arch.as_deref().and_then(|a| Architecture::parse(a).ok()) {
            hp.layers = arch.sizes();
        }
        set(&mut hp.batch_size, o.batch_size);
        set(&mut hp.t_free, o.t_free);
        set(&mut hp.t_nudge, o.t_nudge);
        set(&mut hp.eps, o.eps);
        set(&mut hp.beta, o.beta);
        set(&mut hp.nudging, o.nudging);
        set(&mut hp.persistent, o.persistent);
        set(&mut hp.seed, o.seed);
        o.apply_rates(&mut hp.lr, &mut hp.schedule);
        set(&mut hp.target_off, o.target_off);
        set(&mut hp.target_on, o.target_on);
        o.apply_generative(&mut hp.generative);
        o.apply_gate(&mut hp.modulator);
    }

    /// `--generative` and its settings, for any network's generative training.
    fn apply_generative(&self, generative: &mut Option<Generative>) {
        let o = self;
        if o.generative {
            let g = generative.get_or_insert_with(Default::default);
            set(&mut g.beta, o.gen_beta);
            set(&mut g.t_free, o.gen_t_free);
            set(&mut g.t_nudge, o.gen_t_nudge);
            set(&mut g.lr_scale, o.gen_lr_scale);
            set(&mut g.start, o.gen_start);
            set(&mut g.input_stiffness, o.gen_stiffness);
            set(
                &mut g.from_epoch,
                o.gen_from_epoch.map(|e| e.saturating_sub(1)),
            );
            g.input_couplings_only |= o.gen_input_only;
        }
    }

    /// `--gate` and its settings, for any network's surprise gate.
    fn apply_gate(&self, modulator: &mut Option<Modulator>) {
        let o = self;
        if o.gate {
            let m = modulator.get_or_insert_with(Default::default);
            if let Some(value) = o.gate_threshold {
                m.threshold = Threshold::Fixed { value };
            }
            if let Some(share) = o.gate_share {
                m.threshold = Threshold::Adaptive {
                    share,
                    step: o.gate_step,
                };
            }
            set(&mut m.gain, o.gate_gain);
        }
    }
}

impl Overrides {
    /// `--lr`, `--cosine-to` and `--constant-lr`, for any learner's rates and schedule.
    fn apply_rates(&self, lr: &mut Vec<f32>, schedule: &mut Schedule) {
        if let Some(v) = &self.lr {
            lr.clone_from(v);
        }
        if let Some(f) = self.cosine_to {
            *schedule = Schedule::Cosine { final_fraction: f };
        }
        if self.constant_lr {
            *schedule = Schedule::Constant;
        }
    }
}

/// `--normalize`: a standardisation, or `none`.
#[derive(Clone, Debug)]
struct Normalize(Option<eqprop::conv::Normalization>);

fn parse_normalize(s: &str) -> Result<Normalize, String> {
    match s {
        "none" => Ok(Normalize(None)),
        _ => s.parse().map(|n| Normalize(Some(n))),
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Evaluate on the --dataset given even if the checkpoint was trained on another one.
    #[arg(long)]
    other_dataset: bool,
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Hyperparameters of both sides [default: paper; with a convolutional --arch, the data
    /// set's conv preset: conv-mnist, conv-fashion or conv-cifar10].
    #[arg(long)]
    preset: Option<String>,
    /// Training epochs per timed run.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Interleaved rounds (eqprop, PyTorch, eqprop, PyTorch, ...); medians are reported.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The PyTorch baseline script.
    #[arg(long, default_value = "bench/eqprop_torch.py")]
    torch_script: PathBuf,
    /// The PyTorch baseline script of networks with convolutions.
    #[arg(long, default_value = "bench/conv_eqprop_torch.py")]
    conv_torch_script: PathBuf,
    /// Networks with convolutions: training images per timed run (after a warm-up batch).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Networks with convolutions: run the PyTorch side at this preset's settings instead of
    /// the same ones (e.g. conv-reference, the research code's).
    #[arg(long)]
    torch_preset: Option<String>,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Time only this implementation.
    #[arg(long)]
    no_torch: bool,
    /// Instead of PyTorch, compare training without and with the surprise gate (--gate-*
    /// settings, default threshold without them); reports test error, learned share, savings and
    /// the wall-clock ratio.
    #[arg(long)]
    gate_ab: bool,
    /// Seconds to let the machine settle before each timed run (both sides alike).
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// With --device cuda: timed calls per relax() configuration.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// With --device cuda: copies of the training file in the timed epoch (6 x 10k = 60k).
    #[arg(long, default_value_t = 6)]
    train_repeat: usize,
    /// Also write the report (the Markdown tables) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

pub fn run(cli: Cli) -> Result<()> {
    let device = cli.device;
    let cpu_only = |work| device.require(work);
    match cli.command {
        Command::Train(args) => train(*args, device),
        Command::Eval(args) => eval(args, device),
        Command::Bench(args) => bench(*args, device),
        Command::Env(args) => {
            cpu_only(Work::Environment)?;
            env_command(args)
        }
        Command::Render(args) => {
            cpu_only(Work::Render)?;
            render_command(args)
        }
        Command::Dream(args) => {
            cpu_only(Work::Dream)?;
            dream::run(*args)
        }
        Command::Judge(args) => {
            cpu_only(Work::Judge)?;
            dream::judge(args)
        }
        Command::Continual(args) => {
            cpu_only(Work::Continual)?;
            continual::continual(*args)
        }
        Command::Agent(args) => {
            cpu_only(Work::Agent)?;
            agent::agent(*args)
        }
        Command::Life(args) => {
            cpu_only(Work::Agent)?;
            life::life(*args)
        }
    }
}

fn init_threads(threads: Option<usize>) -> Result<()> {
    Ok(eqprop::init_threads(threads)?)
}

/// The run to train (fresh, or resumed from `--out`) and the data it trains on (its data set
/// and the run's `--train-limit`).
fn open_run(args: &TrainArgs, files: &RunFiles, device: Device) -> Result<(Run, DataArgs)> {
    if args.resume {
        return resume_run(args, files, device);
    }
    if files.exist() && !args.force {
        bail!(
            "{} already holds a run: pass --resume to continue it or --force to start over",
            files.dir.display()
        );
    }
    let default = match args.data.name() {
        // No preset is sized for CIFAR-10's 3072 inputs: `--layers` must say the network.
        DatasetName::Mnist | DatasetName::Cifar10 => "best",
        DatasetName::FashionMnist => "best-fashion",
    };
    let mut hp = Hyperparams::preset(args.preset.as_deref().unwrap_or(default))?;
    args.overrides.apply(&mut hp);
    hp.train_limit = args.data.train_limit;
    if args.dreams {
        device.require(Work::EpochDreams)?;
    }
    let run = Run::new(hp, args.data.name(), device)?;
    Ok((run, args.data.with_name(args.data.name())))
}

/// The run saved in `--out`, to be trained up to `--epochs` (default: its own); any other flag
/// that asks for something the checkpoint does not hold is refused, naming both values.
fn resume_run(args: &TrainArgs, files: &RunFiles, device: Device) -> Result<(Run, DataArgs)> {
    let ckpt = checkpoint::load(&files.checkpoint)?;
    let data = args
        .data
        .for_checkpoint(&files.checkpoint, &ckpt.dataset, false)?;
    let saved = &ckpt.hyperparams;
    let mut asked = match &args.preset {
        Some(name) => Hyperparams::preset(name)?,
        None => saved.clone(),
    };
    args.overrides.apply(&mut asked);
    asked.train_limit = args.data.train_limit.or(saved.train_limit);
    asked.epochs = args.overrides.epochs.unwrap_or(saved.epochs);
    let (epochs, p) = (asked.epochs, ckpt.progress.clone());
    let stretched = run::schedule_stretched(saved, epochs).then_some(saved.epochs);
    let data = DataArgs {
        train_limit: asked.train_limit,
        ..data
    };
    if args.dreams {
        device.require(Work::EpochDreams)?;
    }
    let run =
        Run::resume(ckpt, &files.checkpoint, asked, device).map_err(|e| resume_refusal(args, e))?;
    if let Some(before) = stretched {
        eprintln!("note: the cosine schedule now decays over {epochs} epochs instead of {before}");
    }
    eprintln!(
        "resuming {} at epoch {}, batch {} (of {epochs} epochs)",
        files.checkpoint.display(),
        p.epoch + 1,
        p.batch
    );
    Ok((run, data))
}

/// What the surprise gate did in an epoch, for its line (empty without a gate).
fn gate_line(record: &EpochRecord) -> String {
    record.gate.map_or(String::new(), |g| {
        format!(
            "  learned {:>5.1}%  saved {:>4.1}% of steps, {:>4.1}% of FLOPs",
            100.0 * g.learned_share,
            100.0 * g.steps_saved,
            100.0 * g.flops_saved
        )
    })
}

/// A refused `--resume` as the flags that asked for it, naming both values.
fn resume_refusal(args: &TrainArgs, error: eqprop::Error) -> anyhow::Error {
    match error {
        eqprop::Error::Resume(ResumeError::Differs {
            path,
            field,
            saved,
            asked,
        }) => {
            let via = args
                .preset
                .as_ref()
                .map_or(String::new(), |p| format!(" (or --preset {p})"));
            anyhow::anyhow!(
                "--resume: {}{via} asks for {field} = {asked}, but {} was trained with {field} = \
                 {saved}; drop the flag to continue the run as it was, or start over with --force",
                flag_of(&field),
                path.display()
            )
        }
        eqprop::Error::Resume(ResumeError::EpochsDone { path, done, asked }) => anyhow::anyhow!(
            "--epochs {asked}: {} has already trained {done} epochs",
            path.display()
        ),
        other => other.into(),
    }
}

/// The command-line flag that sets hyperparameter `field` (a path of
/// [`run::first_difference`]).
fn flag_of(field: &str) -> String {
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    let gen_flag = |name: &str| match name {
        "input_stiffness" => "--gen-stiffness".to_string(),
        "input_couplings_only" => "--gen-input-only".to_string(),
        "" => "--generative".to_string(),
        other => format!("--gen-{}", other.replace('_', "-")),
    };
    match head {
        "schedule" => "--cosine-to / --constant-lr".to_string(),
        "generative" => gen_flag(rest),
        "modulator" => "--gate / --gate-threshold / --gate-share / --gate-gain".to_string(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The folder a training run keeps its files in: `--out`, or `runs/<data set>`.
fn run_dir(args: &TrainArgs) -> PathBuf {
    let default = || Path::new("runs").join(args.data.name().as_str());
    args.out.clone().unwrap_or_else(default)
}

fn train(args: TrainArgs, device: Device) -> Result<()> {
    init_threads(args.threads)?;
    if arch::convolutional(&args)? {
        return arch::train(args, device);
    }
    let dir = run_dir(&args);
    let files = RunFiles::in_dir(&dir);
    let (run, data) = open_run(&args, &files, device)?;
    let dreams = match args.dreams {
        true => Some(args.dream.options(run.hyperparams(), 0)?),
        false => None,
    };
    checks::writable_dir(&dir)?;
    let trainset = data.load(Split::Train)?;
    let testset = data.load(Split::Test)?;
    run.check_data(&trainset, &testset)?;
    let mut run = run.save_in(files.clone(), args.force)?;
    if device != Device::Cpu {
        eprintln!("device: {}", run.device_name());
    }
    eprintln!(
        "training {:?} on {} ({} train / {} test) with {}",
        run.hyperparams().layers,
        data.name(),
        trainset.len(),
        testset.len(),
        serde_json::to_string(run.hyperparams())?
    );
    let stop = stop_on_ctrl_c()?;
    let mut console = TrainConsole {
        bar: None,
        batch_size: run.hyperparams().batch_size,
        dreams,
    };
    let report = run.train(&trainset, &testset, &stop, &mut console);
    if let Some(bar) = console.bar.take() {
        bar.finish_and_clear();
    }
    let report = report?;
    if report.interrupted {
        eprintln!(
            "interrupted: saved {}; continue with --resume",
            files.checkpoint.display()
        );
        std::process::exit(130);
    }
    eprintln!(
        "done: {} ({} and {})",
        files.checkpoint.display(),
        files.metrics.display(),
        files.curve.display()
    );
    Ok(())
}

/// Prints an epoch's line (`extra` at its end) and redraws the run's curve.
fn show_epoch(
    record: &EpochRecord,
    extra: &str,
    files: &RunFiles,
    title: &str,
) -> eqprop::Result<()> {
    println!(
        "epoch {:>3}  train error {:>6.2}%  test error {:>6.2}%  free energy {:>8.4}  {:>6.2}s  {:>7.0} samples/s{extra}",
        record.epoch,
        record.train_error,
        record.test_error,
        record.mean_free_energy,
        record.seconds,
        record.samples_per_second
    );
    let records =
        metrics::read_jsonl(&files.metrics).map_err(|e| eqprop::Error::io(&files.metrics, e))?;
    if let Err(e) = plots::plot_curve(&files.curve, &records, title) {
        eprintln!("warning: could not draw {}: {e}", files.curve.display());
    }
    Ok(())
}

/// A flag that Ctrl-C sets: the run stops after the current mini-batch, its checkpoint saved.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// The progress bar of one training epoch over `examples` examples.
fn epoch_bar(epoch: usize, examples: usize) -> ProgressBar {
    let bar = ProgressBar::new(examples as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar
}

/// What `eqprop train` shows of a run: a bar per epoch, a line per epoch, the curve, and the
/// dreams of `--dreams`.
struct TrainConsole {
    bar: Option<ProgressBar>,
    batch_size: usize,
    dreams: Option<eqprop::dream::DreamOptions>,
}

impl run::Observer for TrainConsole {
    fn epoch_started(&mut self, epoch: usize, examples: usize) {
        self.bar = Some(epoch_bar(epoch, examples));
    }

    fn batch(&mut self, p: &train::Progress) {
        // Every 16th mini-batch is plenty for the eye; formatting the message costs the
        // other workers a wait at the next barrier.
        let Some(bar) = &self.bar else {
            return;
        };
        if !p.batch.is_multiple_of(16) {
            return;
        }
        bar.set_position((p.batch * self.batch_size) as u64);
        bar.set_message(format!(
            "E={:.3} acc={:.2}%",
            p.energy_sum / p.seen.max(1) as f64,
            100.0 * p.correct as f64 / p.seen.max(1) as f64
        ));
    }

    fn warning(&mut self, text: &str) {
        eprintln!("warning: {text}");
    }

    fn epoch_ended(&mut self, record: &EpochRecord, run: &Run) -> eqprop::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let gated = gate_line(record);
        let files = run.files().expect("the train command saves its run");
        let hp = run.hyperparams();
        let title = format!("EqProp {:?} on {}", hp.layers, run.dataset().as_str());
        show_epoch(record, &gated, files, &title)?;
        if let Some(options) = &self.dreams {
            let path = files
                .dir
                .join("dreams")
                .join(format!("epoch-{}.png", record.epoch));
            eqprop::dream::write_epoch_grid(run.trainer().network(), hp, options, &path)?;
        }
        Ok(())
    }
}

fn eval(args: EvalArgs, device: Device) -> Result<()> {
    init_threads(args.threads)?;
    if eqprop::conv::checkpoint::is_conv_checkpoint(&args.checkpoint) {
        return arch::eval(&args, device);
    }
    let ckpt = checkpoint::load(&args.checkpoint)?;
    let data = args
        .data
        .for_checkpoint(&args.checkpoint, &ckpt.dataset, args.other_dataset)?;
    let testset = data.load(Split::Test)?;
    ckpt.hyperparams
        .check_data(&testset)
        .with_context(|| format!("{} on {}", args.checkpoint.display(), data.name()))?;
    let mut engine = Engine::for_network(device, &ckpt.hyperparams, &ckpt.network)?;
    let result = engine.evaluate(&ckpt.network, &ckpt.hyperparams, &testset)?;
    println!(
        "test error {:.2}% ({} {} test images), mean free energy {:.4}",
        result.error,
        testset.len(),
        data.name(),
        result.mean_energy
    );
    Ok(())
}

impl BenchArgs {
    /// `--settle`, checked.
    fn settle(&self) -> Result<std::time::Duration> {
        if !(self.settle >= 0.0 && self.settle.is_finite()) {
            bail!(
                "--settle must be a finite number of seconds >= 0, got {}",
                self.settle
            );
        }
        Ok(std::time::Duration::from_secs_f64(self.settle))
    }
}

fn bench(args: BenchArgs, device: Device) -> Result<()> {
    init_threads(Some(args.threads))?;
    if arch::bench_convolutional(&args)? {
        return arch::bench(&args, device);
    }
    let mut hp = Hyperparams::preset(args.preset.as_deref().unwrap_or("paper"))?;
    args.overrides.apply(&mut hp);
    hp.epochs = args.epochs;
    hp.validate()?;
    if args.epochs == 0 || args.rounds == 0 {
        bail!("--epochs and --rounds must be at least 1");
    }
    let settle = args.settle()?;
    let baseline = bench::TorchBaseline {
        python: args.python.clone(),
        script: args.torch_script.clone(),
    };
    let torch = !(args.no_torch || args.gate_ab);
    if torch {
        baseline.check()?;
    }
    if let Some(report) = &args.report {
        checks::writable_file(report)?;
    }
    let data_dir = args.data.source().dir();
    let trainset = args.data.load(Split::Train)?;
    let testset = args.data.load(Split::Test)?;
    hp.check_training_set(&trainset)?;
    let plan = bench::BenchPlan {
        options: bench::BenchOptions {
            rounds: args.rounds,
            settle,
            threads: args.threads,
        },
        gate: args.gate_ab,
        torch: torch.then_some((baseline, data_dir)),
        repeats: args.repeats,
        train_repeat: args.train_repeat,
    };
    let report = bench::benchmark(device, &hp, &trainset, &testset, &plan, |line| {
        eprintln!("{line}")
    })?;
    write_report(&args, &report)
}

/// Prints a benchmark's report, and writes it to `--report` when asked.
fn write_report(args: &BenchArgs, report: &str) -> Result<()> {
    print!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, report).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

#[derive(Args, Debug)]
struct EnvArgs {
    #[command(subcommand)]
    command: EnvCommand,
}

#[derive(Subcommand, Debug)]
enum EnvCommand {
    /// Replay a Gymnasium fixture (tools/gym_fixtures.py) and count mismatching values.
    Replay {
        /// The fixture JSON, e.g. tests/fixtures/gym_cartpole.json.
        fixture: PathBuf,
    },
    /// Mean episode length and return of the uniformly random policy.
    Random(EnvRandomArgs),
}

#[derive(Args, Debug)]
struct EnvRandomArgs {
    /// cartpole-v1 or pendulum-v1.
    #[arg(long)]
    env: String,
    #[arg(long, default_value_t = 100)]
    episodes: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RenderPolicy {
    Random,
}

#[derive(Args, Debug)]
struct RenderArgs {
    /// cartpole-v1 or pendulum-v1.
    #[arg(long)]
    env: String,
    /// Who picks the actions.
    #[arg(long, value_enum, default_value = "random")]
    policy: RenderPolicy,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The animated GIF to write.
    #[arg(long)]
    out: PathBuf,
}

fn env_command(args: EnvArgs) -> Result<()> {
    match args.command {
        EnvCommand::Replay { fixture } => {
            let text = std::fs::read_to_string(&fixture)
                .with_context(|| format!("reading {}", fixture.display()))?;
            let rep = eqprop::env::fixture::replay_json(&text)
                .map_err(|e| anyhow::anyhow!("malformed fixture {}: {e}", fixture.display()))?;
            for d in &rep.details {
                println!("mismatch: {d}");
            }
            println!("{}", rep.summary());
            if rep.mismatches > 0 {
                bail!(
                    "{}: {} mismatching values in {}",
                    fixture.display(),
                    rep.mismatches,
                    rep.bad_steps_text()
                );
            }
            Ok(())
        }
        EnvCommand::Random(a) => {
            if a.episodes == 0 {
                bail!("--episodes must be positive");
            }
            let mut env = eqprop::env::make(&a.env)?;
            let eps = eqprop::env::random_policy_episodes(env.as_mut(), a.episodes, a.seed);
            let n = eps.len() as f64;
            let mean_len = eps.iter().map(|e| e.0 as f64).sum::<f64>() / n;
            let mean_ret = eps.iter().map(|e| e.1).sum::<f64>() / n;
            println!(
                "{}: random policy, {} episodes (seed {}): mean length {mean_len:.3}, mean return {mean_ret:.3}",
                env.id(),
                a.episodes,
                a.seed
            );
            Ok(())
        }
    }
}

fn render_command(args: RenderArgs) -> Result<()> {
    use rand::SeedableRng;

    let mut env = eqprop::env::make(&args.env)?;
    checks::writable_file(&args.out)?;
    let id = env.id();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let space = env.action_space();
    env.reset(args.seed);
    let mut states = vec![env.state()];
    let mut ret = 0.0;
    loop {
        let action = match args.policy {
            RenderPolicy::Random => eqprop::env::sample_action(&space, &mut rng),
        };
        let s = env.step(&action)?;
        ret += s.reward;
        states.push(env.state());
        if s.terminated || s.truncated {
            break;
        }
    }
    // Gymnasium's render_fps: 50 for CartPole, 30 for Pendulum.
    let ms = if id.starts_with("CartPole") { 20 } else { 33 };
    let frames = states
        .iter()
        .map(|st| eqprop::env::render::frame(id, st).context("no renderer for this env"))
        .collect::<Result<Vec<_>>>()?;
    eqprop::picture::write_gif(frames, ms, &args.out)?;
    println!(
        "{id}: {} steps, return {ret:.3}; wrote {} frames to {}",
        states.len() - 1,
        states.len(),
        args.out.display()
    );
    Ok(())
}
