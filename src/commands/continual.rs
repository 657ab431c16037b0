//! `eqprop continual`: Split-MNIST (or Split-Fashion-MNIST) task after task.

use super::plots::plot_accuracy_matrix;
use super::{DataArgs, Overrides, dream::DreamDynamics, init_threads};
use anyhow::Result;
use clap::{Args, ValueEnum};
use eqprop::config::Hyperparams;
use eqprop::continual::{
    self, AccuracyMatrix, ContinualOptions, Event, Experiment, Outcome, Protocol, Replay, Scenario,
};
use eqprop::data::{Dataset, Split};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum ProtocolArg {
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
    #[arg(long, value_enum, default_value_t = ProtocolArg::SplitMnist)]
    protocol: ProtocolArg,
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
    /// The experiment the flags ask for.
    fn experiment(&self) -> Experiment {
        Experiment {
            protocol: match self.protocol {
                ProtocolArg::SplitMnist => Protocol::SplitMnist,
                ProtocolArg::SplitFashionMnist => Protocol::SplitFashionMnist,
            },
            scenario: self.scenario.into(),
            replay: match self.replay {
                ReplayArg::None => Replay::None,
                ReplayArg::Dreams => Replay::Dreams,
                ReplayArg::Real => Replay::Real,
                ReplayArg::Joint => Replay::Joint,
            },
            epochs_per_task: self.epochs_per_task,
            tasks: self.tasks,
            replay_per_class: self.replay_per_class,
            soft_targets: !self.hard_targets,
            distill_new: self.distill_new,
            keep_dreams: !self.redream,
            prior_components: self.prior_components,
            pixel_noise: self.pixel_noise,
            dimming: self.dimming,
        }
    }

    /// The preset (the protocol's unless named) with the overrides, adapted to the experiment.
    fn hyperparams(&self, experiment: &Experiment) -> Result<Hyperparams> {
        let default = experiment.protocol.default_preset();
        let mut hp = Hyperparams::preset(self.preset.as_deref().unwrap_or(default))?;
        self.overrides.apply(&mut hp);
        Ok(experiment.hyperparams(hp, self.overrides.layers.is_some())?)
    }
}

pub fn continual(args: ContinualArgs) -> Result<()> {
    init_threads(args.threads)?;
    let experiment = args.experiment();
    let (protocol, scenario, replay) = (
        experiment.protocol.name(),
        experiment.scenario.name(),
        experiment.replay.name(),
    );
    let data = DataArgs {
        dataset: Some(experiment.protocol.dataset()),
        data_dir: args.data_dir.clone(),
        mirror: args.mirror.clone(),
        train_limit: args.train_limit,
    };
    let hp = args.hyperparams(&experiment)?;
    let options = experiment.options(&hp, args.dream.options(&hp, 0)?)?;
    let dir = args.out.clone().unwrap_or_else(|| experiment.default_out());
    super::checks::writable_dir(&dir)?;
    let train = data.load(Split::Train)?;
    let test = data.load(Split::Test)?;
    eprintln!(
        "{protocol}, {scenario}-incremental, replay {replay}: {:?}, {} epochs per task, {}",
        hp.layers,
        args.epochs_per_task,
        serde_json::to_string(&hp)?
    );
    let outcome = run_with_progress(&experiment, &hp, &options, (&train, &test), &dir)?;
    let matrix = &outcome.matrix;
    print_matrix(matrix, &options.tasks);
    println!(
        "{protocol} {scenario}-IL replay {replay}: average accuracy {:.2}%, forgetting {:.2} points ({:.0} s)",
        matrix.final_average(),
        matrix.forgetting(),
        outcome.seconds
    );
    experiment.write_results(&dir, &hp, &options, &outcome)?;
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
        dir.join("accuracy.csv").display(),
        svg.display(),
        dir.join("summary.json").display()
    );
    Ok(())
}

/// [`Experiment::run`] with a progress bar and a line per replayed dream set and per stage.
fn run_with_progress(
    experiment: &Experiment,
    hp: &Hyperparams,
    options: &ContinualOptions,
    (train, test): (&Dataset, &Dataset),
    dir: &Path,
) -> Result<Outcome> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let result = experiment.run(hp, options, train, test, dir, |event| match event {
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
        } => bar.suspend(|| {
            eprintln!(
                "task {}: {} dreams, {agreement:.1}% labelled as their clamped class; {}",
                stage + 1,
                dreams.len(),
                continual::dream_sample_path(dir, stage).display()
            )
        }),
        Event::Batch { epoch, done } => {
            bar.set_position(done as u64);
            bar.set_message(format!("epoch {epoch}"));
        }
        Event::Measured { stage, row, .. } => {
            let cells: Vec<String> = row.iter().map(|a| format!("{a:5.1}")).collect();
            bar.suspend(|| eprintln!("after task {}: {}", stage + 1, cells.join(" ")));
        }
    });
    bar.finish_and_clear();
    Ok(result?)
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
