//! `eqprop dream`: clamp labels, relax the input, write the pictures.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use eqprop::checkpoint;
use eqprop::data::{Dataset, Split};
use eqprop::dream::{self as dreaming, DreamOptions, DreamStart, LabelClamp, dream, repeat_labels};
use eqprop::judge::{Judge, JudgeKind, JudgeOptions, score_dreams};
use eqprop::tensor::Matrix;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DreamArgs {
    /// A checkpoint written by `eqprop train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labels to dream: a range like 0-9 or a list like 3,5,7.
    #[arg(long, default_value = "0-9")]
    pub labels: String,
    /// Dreams per label (one grid row per label).
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    /// The grid picture (PNG).
    #[arg(long, default_value = "dreams.png")]
    pub out: PathBuf,
    /// Also write an animation of the input layer relaxing (GIF).
    #[arg(long)]
    pub gif: Option<PathBuf>,
    #[command(flatten)]
    pub dynamics: DreamDynamics,
    /// Score the dreams with this judge (`eqprop judge`): the share it recognises per label, and
    /// their diversity against real training images.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// The real training images the diversity is compared with (pass the checkpoint's data set).
    #[command(flatten)]
    pub data: super::DataArgs,
}

#[derive(Args, Debug)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub data: super::DataArgs,
    /// Where to save the trained judge.
    #[arg(long, default_value = "judge.safetensors")]
    pub out: PathBuf,
    /// The judge's network: convolutional (LeNet-like) or a one-hidden-layer perceptron.
    #[arg(long, value_enum, default_value = "cnn")]
    pub kind: JudgeKind,
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    /// Training images moved by up to this many pixels [default: 2 for cnn, 0 for mlp].
    #[arg(long)]
    pub shift: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Trains the backprop judge on the real training images and saves it.
pub fn judge(args: JudgeArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    super::checks::writable_file(&args.out)?;
    let train = args.data.load(Split::Train)?;
    let test = args.data.load(Split::Test)?;
    let defaults = match args.kind {
        JudgeKind::Cnn => JudgeOptions::default(),
        JudgeKind::Mlp => JudgeOptions::mlp(),
    };
    let options = JudgeOptions {
        epochs: args.epochs,
        seed: args.seed,
        shift: args.shift.unwrap_or(defaults.shift),
        ..defaults
    };
    options
        .validate(&train)
        .map_err(|e| anyhow::anyhow!("judge settings: {e}"))?;
    let bar = indicatif::ProgressBar::new(args.epochs as u64);
    let start = std::time::Instant::now();
    let judge = Judge::train(&train, &options, |epoch, loss| {
        bar.set_position(epoch as u64);
        bar.set_message(format!("loss {loss:.4}"));
    });
    bar.finish_and_clear();
    judge.save(&args.out)?;
    println!(
        "judge: {}, {} epochs on {} ({} images, shifts up to {} pixels) in {:.1} s: test accuracy {:.2}%; saved {}",
        judge.architecture(),
        args.epochs,
        args.data.name(),
        train.len(),
        options.shift,
        start.elapsed().as_secs_f64(),
        judge.accuracy(&test),
        args.out.display()
    );
    Ok(())
}

/// How dreams relax (shared by `dream` and the per-epoch dreams of `train`).
#[derive(Args, Debug, Clone)]
pub struct DreamDynamics {
    /// Relaxation steps.
    #[arg(long, default_value_t = eqprop::dream::DREAM_STEPS)]
    pub dream_steps: usize,
    /// Step size [default: the checkpoint's].
    #[arg(long)]
    pub dream_eps: Option<f32>,
    /// Initial Langevin temperature, annealed to 0 (0: no noise).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Where the input starts.
    #[arg(long, value_enum, default_value_t = StartKind::Noise)]
    pub start: StartKind,
    /// Nudge the output toward the label with this strength instead of clamping it.
    #[arg(long)]
    pub nudge: Option<f32>,
    /// Share of hidden units silenced in each dream (a different random set per dream).
    #[arg(long, default_value_t = eqprop::dream::DREAM_SILENCED)]
    pub silence: f32,
    /// Seed of the start and the noise.
    #[arg(long, default_value_t = 0)]
    pub dream_seed: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StartKind {
    Zeros,
    Noise,
}

impl DreamDynamics {
    /// Options for a network trained with `hp`, checked.
    pub fn options(
        &self,
        hp: &eqprop::config::Hyperparams,
        record_every: usize,
    ) -> Result<DreamOptions> {
        let options = DreamOptions {
            steps: self.dream_steps,
            eps: self.dream_eps.unwrap_or(hp.eps),
            temperature: self.temperature,
            clamp: self
                .nudge
                .map_or(LabelClamp::Hard, |beta| LabelClamp::Nudge { beta }),
            start: match self.start {
                StartKind::Zeros => DreamStart::Zeros,
                StartKind::Noise => DreamStart::Noise,
            },
            seed: self.dream_seed,
            record_every,
            silenced: self.silence,
            ..DreamOptions::for_hyperparams(hp)
        };
        options.validate()?;
        Ok(options)
    }
}

/// Parses `0-9` or `3,5,7` into labels below `classes`.
pub fn parse_labels(text: &str, classes: usize) -> Result<Vec<usize>> {
    let parse = |s: &str| -> Result<usize> {
        let label: usize = s
            .trim()
            .parse()
            .with_context(|| format!("'{s}' is not a label"))?;
        if label >= classes {
            bail!("label {label} is outside the {classes} output units");
        }
        Ok(label)
    };
    let labels = match text.split_once('-') {
        Some((a, b)) => (parse(a)?..=parse(b)?).collect(),
        None => text.split(',').map(parse).collect::<Result<Vec<_>>>()?,
    };
    if labels.is_empty() {
        bail!("no labels in '{text}'");
    }
    Ok(labels)
}

pub fn run(args: DreamArgs) -> Result<()> {
    if eqprop::conv::checkpoint::is_conv_checkpoint(&args.checkpoint) {
        return run_conv(&args);
    }
    let ckpt = checkpoint::load(&args.checkpoint)?;
    let hp = &ckpt.hyperparams;
    let side = dreaming::image_side(hp.layers[0])?;
    let labels = parse_labels(&args.labels, *hp.layers.last().expect("validated"))?;
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let record = if args.gif.is_some() {
        dreaming::animation_interval(args.dynamics.dream_steps)
    } else {
        0
    };
    let options = args.dynamics.options(hp, record)?;
    let count = labels.len().saturating_mul(args.samples);
    eqprop::config::check_size(&hp.layers, count)
        .with_context(|| format!("{count} dreams (--samples {})", args.samples))?;
    super::checks::writable_file(&args.out)?;
    if let Some(gif) = &args.gif {
        super::checks::writable_file(gif)?;
    }
    // The judge and the real images it compares with are read before any dreaming.
    let judged = judge_and_real_images(&args, &ckpt.dataset, hp.layers[0])?;
    let labels = repeat_labels(&labels, args.samples);
    let dreams = dream(&ckpt.network, &labels, &options);
    dreaming::write_grid(&dreams, side, &args.out)?;
    println!(
        "dreamed {} images ({} per label) in {} steps; wrote {}",
        labels.len(),
        args.samples,
        args.dynamics.dream_steps,
        args.out.display()
    );
    if let Some(gif) = &args.gif {
        dreaming::write_animation(&dreams, side, gif)?;
        println!("wrote {} frames to {}", dreams.frames.len(), gif.display());
    }
    if let Some((judge, real)) = &judged {
        report(judge, &dreams.images, &dreams.labels, real);
    }
    Ok(())
}

/// Dreams of a network with convolutions: the labels clamped, every other layer relaxed by
/// alternating sweeps (`conv::dream`, from noise or zero, some hidden units silenced, the
/// input as stiff as in training), a grid of the inputs, and with `--judge` its verdict. A
/// nudged label, a temperature, another step size and the animation are refused.
fn run_conv(args: &DreamArgs) -> Result<()> {
    let d = &args.dynamics;
    if args.gif.is_some() || d.nudge.is_some() || d.temperature != 0.0 || d.dream_eps.is_some() {
        bail!(
            "--gif, --nudge, --temperature and --dream-eps are not supported yet for networks \
             with convolutions (their dreams take exact alternating sweeps)"
        );
    }
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let ckpt = eqprop::conv::checkpoint::load(&args.checkpoint)?;
    let arch = ckpt.network.architecture();
    let input = arch.layers()[0];
    if input.channels != 1 || input.height != input.width {
        bail!("dream grids show square one-channel images; the input is {input}");
    }
    let options = eqprop::conv::ConvDream {
        steps: d.dream_steps,
        noise: matches!(d.start, StartKind::Noise),
        seed: d.dream_seed,
        silenced: d.silence,
        ..eqprop::conv::ConvDream::for_config(&ckpt.config)
    };
    options.validate()?;
    let classes = arch.layers().last().expect("layers").size();
    let labels = repeat_labels(&parse_labels(&args.labels, classes)?, args.samples);
    let states = arch
        .sizes()
        .iter()
        .sum::<usize>()
        .saturating_mul(labels.len());
    if states > eqprop::config::MAX_STATES {
        bail!(
            "{} dreams (--samples {}) hold too many states",
            labels.len(),
            args.samples
        );
    }
    super::checks::writable_file(&args.out)?;
    // The judge and the real images it compares with are read before any dreaming.
    let judged = judge_and_real_images(args, &ckpt.dataset, input.size())?;
    let images = ckpt
        .config
        .input_pixels(eqprop::conv::dream(&ckpt.network, &labels, &options));
    let grid = dreaming::dream_grid(&labels, &images, input.height);
    eqprop::picture::write_png(&grid, &args.out)?;
    println!(
        "dreamed {} images ({} per label) in {} steps; wrote {}",
        labels.len(),
        args.samples,
        options.steps,
        args.out.display()
    );
    if let Some((judge, real)) = &judged {
        report(judge, &images, &labels, real);
    }
    Ok(())
}

/// With `--judge`, the judge (checked against dreams of `pixels` values) and the real training
/// images of the checkpoint's data set `dataset`, which its diversity compares with.
fn judge_and_real_images(
    args: &DreamArgs,
    dataset: &str,
    pixels: usize,
) -> Result<Option<(Judge, Dataset)>> {
    let Some(path) = &args.judge else {
        return Ok(None);
    };
    let data = args.data.for_checkpoint(&args.checkpoint, dataset, false)?;
    let judge = dreaming::load_judge(path, pixels)?;
    Ok(Some((judge, data.load(Split::Train)?)))
}

/// Prints what the judge says of the dreams (one image per row, of `labels`), label by label.
fn report(judge: &Judge, images: &Matrix, labels: &[usize], real: &Dataset) {
    let r = score_dreams(judge, images.as_slice(), labels, real, 200);
    println!("| label | recognised by the judge | diversity (dreams / real) |");
    println!("|---|---|---|");
    for (label, (share, div)) in r.recognised.iter().zip(&r.diversity).enumerate() {
        if !share.is_nan() {
            println!("| {label} | {share:.1}% | {div:.2} |");
        }
    }
    println!("| all | {:.1}% | {:.2} |", r.overall, r.mean_diversity);
}
