//! `eqprop continual`: Split-MNIST (or Split-Fashion-MNIST) task after task.

use super::{DataArgs, Overrides, dream::DreamDynamics, init_threads};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use eqprop::config::Hyperparams;
use eqprop::continual::{self, AccuracyMatrix, ContinualOptions, Event, Replay, Scenario};
use eqprop::data::{DatasetName, Split};
use eqprop::learning_rule::Generative;
use eqprop::metrics::plot_accuracy_matrix;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// Components per class of the latent prior of kept dream replay (BENCHMARKS.md, seeds 1-3:
/// Split-MNIST class-IL 10 components 91.7 / 91.8 / 92.0%, 20: 90.4 / 92.4 / 92.6%, 30: 91.6 /
/// 91.5 / 92.1%; task-IL 10: 98.6 / 98.3 / 98.5%, 20: 97.9 / 98.5 / 98.2%).
const DEFAULT_PRIOR_COMPONENTS: usize = 10;

/// Share of noisy pixels in the real images of kept dream replay from noise (no prior) in the
/// class and task scenarios (BENCHMARKS.md: task, seeds 1-3: 98.3 / 95.7 / 98.6% against 97.7
/// / 96.2 / 97.1% without). Decoded dreams from the prior look like data and need none.
const DEFAULT_PIXEL_NOISE: f32 = 0.08;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Protocol {
    SplitMnist,
    SplitFashionMnist,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum ScenarioArg {
    Class,
    Task,
    Domain,
}

impl From<ScenarioArg> for Scenario {
    fn from(arg: ScenarioArg) -> Self {
        match arg {
            ScenarioArg::Class => Scenario::Class,
            ScenarioArg::Task => Scenario::Task,
            ScenarioArg::Domain => Scenario::Domain,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum ReplayArg {
    None,
    Dreams,
    Real,
    Joint,
}

#[derive(Args, Debug)]
pub struct ContinualArgs {
    #[arg(long, value_enum, default_value_t = Protocol::SplitMnist)]
    protocol: Protocol,
    /// What is asked at test time: the class among all seen (class), within the known task
    /// (task), or the first/second class of any task (domain).
    #[arg(long, value_enum, default_value_t = ScenarioArg::Class)]
    scenario: ScenarioArg,
    /// What is rehearsed while a new task is learned.
    #[arg(long, value_enum, default_value_t = ReplayArg::Dreams)]
    replay: ReplayArg,
    /// Epochs over each task's data (replay included).
    #[arg(long, default_value_t = 5)]
    epochs_per_task: usize,
    /// Learn only the first N tasks (a shorter run; the matrix still covers all five).
    #[arg(long, default_value_t = 5)]
    tasks: usize,
    /// Replayed examples per old class (dreamed, or stored real ones).
    #[arg(long, default_value_t = 1000)]
    replay_per_class: usize,
    /// Train each dream toward the one-hot label of the class the dreamer sees in it, instead
    /// of the dreamer's whole output (soft targets over every unit and head, the default).
    #[arg(long)]
    hard_targets: bool,
    /// Learning without forgetting: the new task's images keep the network's own outputs
    /// (from before the task) as targets on the other tasks' units.
    #[arg(long)]
    distill_new: bool,
    /// Dream every old class anew before each task, by the network as it stands then, instead
    /// of keeping each task's dreams from right after it was learned (the default; re-dreaming
    /// was the default before 2026-11-27)
    #[arg(long)]
    redream: bool,
    /// Dream from a class-conditional prior over the first hidden layer with this many
    /// components per class, fitted right after each task on its images with a decoder of the
    /// codes (0: dream from noise, with generative training) [default: 10 with kept dreams,
    /// else 0].
    #[arg(long)]
    prior_components: Option<usize>,
    /// Share of every real training image's pixels replaced by uniform noise, so that texture
    /// does not tell real images from dreams [default: 0.08 with kept dreams from noise
    /// (`--prior-components 0`) in the class and task scenarios, else 0].
    #[arg(long)]
    pixel_noise: Option<f32>,
    /// Scale every real training image by a factor drawn uniformly in [DIMMING, 1], so that
    /// brightness does not tell real images from dreams (1: as they are).
    #[arg(long, default_value_t = 1.0)]
    dimming: f32,
    /// Output folder for accuracy.csv, accuracy.svg, summary.json and confusion.csv [default:
    /// runs/continual/<protocol>-<scenario>-<replay>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder holding <dataset>/ with the IDX files [default: $EQPROP_DATA_DIR, else the user cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Base URL of a mirror holding mnist/ and fashion-mnist/ with the .gz files [default:
    /// $EQPROP_MIRROR, else the canonical mirrors].
    #[arg(long)]
    mirror: Option<String>,
    /// Use only the first N training images (10000: the MNIST subset this project's figures
    /// were measured on).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Starting hyperparameters [default: best for split-mnist, best-fashion for
    /// split-fashion-mnist].
    #[arg(long)]
    preset: Option<String>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    dream: DreamDynamics,
    #[command(flatten)]
    overrides: Overrides,
}

impl ContinualArgs {
    fn names(&self) -> (DatasetName, &'static str, &'static str, &'static str) {
        let (dataset, protocol) = match self.protocol {
            Protocol::SplitMnist => (DatasetName::Mnist, "split-mnist"),
            Protocol::SplitFashionMnist => (DatasetName::FashionMnist, "split-fashion-mnist"),
        };
        let scenario = match self.scenario {
            ScenarioArg::Class => "class",
            ScenarioArg::Task => "task",
            ScenarioArg::Domain => "domain",
        };
        let replay = match self.replay {
            ReplayArg::None => "none",
            ReplayArg::Dreams => "dreams",
            ReplayArg::Real => "real",
            ReplayArg::Joint => "joint",
        };
        (dataset, protocol, scenario, replay)
    }

    /// Components per class of the latent prior dreams come from (0: dreams from noise).
    fn prior_components(&self) -> usize {
        let kept_dreams = self.replay == ReplayArg::Dreams && !self.redream;
        self.prior_components.unwrap_or(if kept_dreams {
            DEFAULT_PRIOR_COMPONENTS
        } else {
            0
        })
    }

    /// Share of each real training image's pixels replaced by noise.
    fn pixel_noise(&self) -> f32 {
        let kept_dreams_from_noise =
            self.replay == ReplayArg::Dreams && !self.redream && self.prior_components() == 0;
        let default = match self.scenario {
            ScenarioArg::Class | ScenarioArg::Task if kept_dreams_from_noise => DEFAULT_PIXEL_NOISE,
            _ => 0.0,
        };
        self.pixel_noise.unwrap_or(default)
    }

    /// The hyperparameters: the preset, the overrides, two outputs for the domain scenario and
    /// generative training for dream replay from noise (dreams from the prior have their own
    /// decoder, and generative training only costs them: BENCHMARKS.md).
    fn hyperparams(&self, dataset: DatasetName) -> Result<Hyperparams> {
        let default = match dataset {
            DatasetName::Mnist => "best",
            DatasetName::FashionMnist => "best-fashion",
        };
        let mut hp = Hyperparams::preset(self.preset.as_deref().unwrap_or(default))?;
        self.overrides.apply(&mut hp);
        hp.epochs = self.epochs_per_task;
        if self.scenario == ScenarioArg::Domain && self.overrides.layers.is_none() {
            *hp.layers.last_mut().expect("preset layers") = 2;
        }
        let dreams_from_noise = self.replay == ReplayArg::Dreams && self.prior_components() == 0;
        if dreams_from_noise && hp.generative.is_none() {
            hp.generative = Some(Generative {
                lr_scale: continual::dream_replay_lr_scale(self.scenario.into()),
                ..Default::default()
            });
        }
        hp.validate()?;
        Ok(hp)
    }
}

pub fn continual(args: ContinualArgs) -> Result<()> {
    init_threads(args.threads)?;
    let (dataset, protocol, scenario, replay) = args.names();
    let data = DataArgs {
        dataset: Some(dataset),
        data_dir: args.data_dir.clone(),
        mirror: args.mirror.clone(),
        train_limit: args.train_limit,
    };
    let hp = args.hyperparams(dataset)?;
    let options = ContinualOptions {
        scenario: args.scenario.into(),
        replay: match args.replay {
            ReplayArg::None => Replay::None,
            ReplayArg::Dreams => Replay::Dreams,
            ReplayArg::Real => Replay::Real,
            ReplayArg::Joint => Replay::Joint,
        },
        tasks: continual::split_tasks(10),
        stages: args.tasks,
        epochs_per_task: args.epochs_per_task,
        replay_per_class: args.replay_per_class,
        dream: args.dream.options(&hp, 0)?,
        soft_targets: !args.hard_targets,
        distill_new: args.distill_new,
        keep_dreams: !args.redream,
        prior_components: args.prior_components(),
        pixel_noise: args.pixel_noise(),
        dimming: args.dimming,
    };
    options.validate(&hp)?;
    let dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs/continual").join(format!("{protocol}-{scenario}-{replay}"))
    });
    super::checks::writable_dir(&dir)?;
    let train = data.load(Split::Train)?;
    let test = data.load(Split::Test)?;
    eprintln!(
        "{protocol}, {scenario}-incremental, replay {replay}: {:?}, {} epochs per task, {}",
        hp.layers,
        args.epochs_per_task,
        serde_json::to_string(&hp)?
    );
    let started = std::time::Instant::now();
    let matrix = run_with_progress(&hp, &train, &test, &options, &dir)?;
    let seconds = started.elapsed().as_secs_f64();
    print_matrix(&matrix, &options.tasks);
    println!(
        "{protocol} {scenario}-IL replay {replay}: average accuracy {:.2}%, forgetting {:.2} points ({seconds:.0} s)",
        matrix.final_average(),
        matrix.forgetting()
    );
    write_results(
        &dir,
        &matrix,
        &options,
        &hp,
        seconds,
        (protocol, scenario, replay),
    )
}

fn run_with_progress(
    hp: &Hyperparams,
    train: &eqprop::data::Dataset,
    test: &eqprop::data::Dataset,
    options: &ContinualOptions,
    dir: &std::path::Path,
) -> Result<AccuracyMatrix> {
    let mut failed = None;
    let mut last_confusion = Vec::new();
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let result = continual::run(hp, train, test, options, |event| match event {
        Event::Stage {
            stage,
            stages,
            examples,
            replayed,
        } => {
            bar.set_prefix(format!("task {}/{stages}", stage + 1));
            bar.set_length(examples as u64);
            bar.set_position(0);
            bar.set_message(format!("{replayed} replayed"));
        }
        Event::Dreamed {
            stage,
            dreams,
            agreement,
        } => {
            let path = dir.join(format!("dreams-before-task-{}.png", stage + 1));
            bar.suspend(|| {
                eprintln!(
                    "task {}: {} dreams, {agreement:.1}% labelled as their clamped class; {}",
                    stage + 1,
                    dreams.len(),
                    path.display()
                )
            });
            if let Err(e) = write_dream_sample(dreams, &path) {
                failed.get_or_insert(e);
            }
        }
        Event::Batch { epoch, done } => {
            bar.set_position(done as u64);
            bar.set_message(format!("epoch {epoch}"));
        }
        Event::Measured {
            stage,
            row,
            confusion,
        } => {
            let cells: Vec<String> = row.iter().map(|a| format!("{a:5.1}")).collect();
            bar.suspend(|| eprintln!("after task {}: {}", stage + 1, cells.join(" ")));
            last_confusion = confusion.to_vec();
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(e);
    }
    let path = dir.join("confusion.csv");
    std::fs::write(&path, confusion_csv(&last_confusion))
        .with_context(|| path.display().to_string())?;
    Ok(result?)
}

/// The last stage's confusion matrix as CSV: one row per true label, one column per output.
fn confusion_csv(confusion: &[Vec<usize>]) -> String {
    let units: Vec<String> = (0..confusion.len()).map(|u| u.to_string()).collect();
    let mut csv = format!("truth\\guess,{}\n", units.join(","));
    for (truth, row) in confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(usize::to_string).collect();
        csv += &format!("{truth},{}\n", cells.join(","));
    }
    csv
}

/// Up to 8 dreams of each label as a labelled grid.
fn write_dream_sample(dreams: &eqprop::data::Dataset, path: &std::path::Path) -> Result<()> {
    let mut rows: Vec<(usize, Vec<&[f32]>)> = Vec::new();
    for label in 0..10u8 {
        let images: Vec<&[f32]> = (0..dreams.len())
            .filter(|&i| dreams.labels[i] == label)
            .take(8)
            .map(|i| dreams.image(i))
            .collect();
        if !images.is_empty() {
            rows.push((label as usize, images));
        }
    }
    let layout = eqprop::picture::GridLayout {
        width: dreams.cols,
        height: dreams.rows,
        scale: 2,
    };
    let grid = eqprop::picture::labelled_grid(&rows, layout);
    Ok(eqprop::picture::write_png(&grid, path)?)
}

fn print_matrix(matrix: &AccuracyMatrix, tasks: &[Vec<u8>]) {
    let names: Vec<String> = tasks.iter().map(|t| continual::task_name(t)).collect();
    print!("{:>12}", "after \\ on");
    for n in &names {
        print!(" {n:>7}");
    }
    println!(" {:>8}", "average");
    for (t, row) in matrix.accuracy.iter().enumerate() {
        let stage = if matrix.accuracy.len() == 1 {
            "joint"
        } else {
            &names[t]
        };
        print!("{stage:>12}");
        for a in row {
            print!(" {a:>6.2}%");
        }
        println!(" {:>7.2}%", matrix.average_after(t));
    }
}

fn write_results(
    dir: &std::path::Path,
    matrix: &AccuracyMatrix,
    options: &ContinualOptions,
    hp: &Hyperparams,
    seconds: f64,
    (protocol, scenario, replay): (&str, &str, &str),
) -> Result<()> {
    let csv = dir.join("accuracy.csv");
    std::fs::write(&csv, matrix.to_csv(&options.tasks))
        .with_context(|| csv.display().to_string())?;
    let summary = serde_json::json!({
        "protocol": protocol,
        "scenario": scenario,
        "replay": replay,
        "epochs_per_task": options.epochs_per_task,
        "replay_per_class": options.replay_per_class,
        "soft_targets": options.soft_targets,
        "distill_new": options.distill_new,
        "keep_dreams": options.keep_dreams,
        "prior_components": options.prior_components,
        "pixel_noise": options.pixel_noise,
        "dimming": options.dimming,
        "average_accuracy": matrix.final_average(),
        "forgetting": matrix.forgetting(),
        "accuracy": matrix.accuracy,
        "seconds": seconds,
        "hyperparams": hp,
    });
    let json = dir.join("summary.json");
    std::fs::write(&json, serde_json::to_string_pretty(&summary)?)
        .with_context(|| json.display().to_string())?;
    let svg = dir.join("accuracy.svg");
    let title = format!("{protocol}, {scenario}-IL, replay {replay}");
    let names: Vec<String> = options
        .tasks
        .iter()
        .map(|t| continual::task_name(t))
        .collect();
    if let Err(e) = plot_accuracy_matrix(&svg, &matrix.accuracy, &names, &title) {
        eprintln!("warning: could not draw {}: {e}", svg.display());
    }
    eprintln!(
        "wrote {}, {}, {} and confusion.csv",
        csv.display(),
        svg.display(),
        json.display()
    );
    Ok(())
}
