//! `eqprop agent`: online world-model learning and planning on CartPole or Pendulum.

use anyhow::Result;
use clap::Args;
use eqprop::agent::{
    EXPLORE, Episode, Event, Experiment, ExperimentOptions, ModelKind, Outcome, Search, Stage,
    Task, component_errors, pooled_error,
};
use eqprop::learning_rule::Nudging;
use eqprop::modulator::{Modulator, Threshold};
use eqprop::stats::median;
use eqprop::world_model::WorldModelConfig;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Learning episodes at most (the step budget may end learning first).
    #[arg(long, default_value_t = 1000)]
    pub episodes: usize,
    #[command(flatten)]
    pub robot: RobotArgs,
}

/// The robot's settings, shared by `eqprop agent` and `eqprop life`.
#[derive(Args, Debug)]
pub struct RobotArgs {
    /// cartpole-v1 or pendulum-v1.
    #[arg(long)]
    pub env: String,
    /// Environment steps of online learning at most (per world in `life`) [default: 3000
    /// CartPole, 4000 Pendulum].
    #[arg(long)]
    pub learn_steps: Option<usize>,
    /// Evaluation episodes after learning (per world in `life`), the model frozen [default: 20
    /// CartPole, 10 Pendulum].
    #[arg(long)]
    pub eval_episodes: Option<usize>,
    /// Steps imagined ahead [default: 20 CartPole, 30 Pendulum].
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Action sequences imagined per decision (per CEM round).
    #[arg(long)]
    pub samples: Option<usize>,
    /// How the planner searches [default: shooting CartPole, cem Pendulum].
    #[arg(long, value_enum)]
    pub search: Option<Search>,
    /// CEM rounds.
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    #[arg(long, value_enum, default_value = "eqprop")]
    pub model: ModelKind,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pendulum's torque candidates, e.g. -2,-1,0,1,2.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',', allow_hyphen_values = true)]
    pub torques: Option<Vec<f32>>,
    /// Probability of a random action while learning.
    #[arg(long, default_value_t = EXPLORE)]
    pub explore: f64,
    /// Output folder [default: runs/agent-<env>-<model>, runs/life-<env>-<strategy>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the GIFs.
    #[arg(long)]
    pub no_gif: bool,
    #[command(flatten)]
    pub world: WorldArgs,
}

/// The world model's settings (defaults: [`WorldModelConfig::default`]).
#[derive(Args, Debug)]
pub struct WorldArgs {
    /// Hidden layer sizes, e.g. 64 or 64,32.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// One learning rate per coupling layer.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',')]
    pub lr: Option<Vec<f32>>,
    #[arg(long)]
    pub beta: Option<f32>,
    #[arg(long, value_enum)]
    pub nudging: Option<Nudging>,
    #[arg(long)]
    pub t_free: Option<usize>,
    #[arg(long)]
    pub t_nudge: Option<usize>,
    #[arg(long)]
    pub eps: Option<f32>,
    /// Replayed transitions learned beside each new one (0: none).
    #[arg(long)]
    pub replay: Option<usize>,
    /// Recent transitions the replay draws from.
    #[arg(long)]
    pub replay_capacity: Option<usize>,
    /// EqProp updates per environment step (the extra ones on replayed transitions).
    #[arg(long)]
    pub updates: Option<usize>,
    /// Rows of each replayed batch drawn from the memory of the worlds left (`life`).
    #[arg(long)]
    pub rehearse: Option<usize>,
    /// Surprise gate with a fixed threshold on the output cost 1/2 ||y - t||^2.
    #[arg(long, conflicts_with = "gate_share")]
    pub gate_threshold: Option<f32>,
    /// Surprise gate whose threshold lets about this share of transitions learn.
    #[arg(long)]
    pub gate_share: Option<f32>,
    /// The kinematic prior: the network predicts only the velocities' changes and the positions
    /// follow by the environment's known integrator (by default every component is learned).
    #[arg(long)]
    pub kinematic_prior: bool,
    /// Standard deviations of a change spanning an output unit's range.
    #[arg(long)]
    pub span: Option<f32>,
}

impl WorldArgs {
    pub(super) fn config(&self, seed: u64) -> WorldModelConfig {
        let mut c = WorldModelConfig {
            seed,
            ..Default::default()
        };
        if let Some(h) = &self.hidden {
            c.hidden.clone_from(h);
            if self.lr.is_none() {
                c.lr = (0..=h.len()).map(|k| c.lr[0] / (1 << k) as f32).collect();
            }
        }
        if let Some(lr) = &self.lr {
            c.lr.clone_from(lr);
        }
        let d = &mut c.dynamics;
        set(&mut d.beta, self.beta);
        set(&mut d.nudging, self.nudging);
        set(&mut d.t_free, self.t_free);
        set(&mut d.t_nudge, self.t_nudge);
        set(&mut d.eps, self.eps);
        set(&mut c.replay, self.replay);
        set(&mut c.replay_capacity, self.replay_capacity);
        set(&mut c.updates, self.updates);
        set(&mut c.rehearse, self.rehearse);
        set(&mut c.span, self.span);
        c.kinematic_prior = self.kinematic_prior;
        if let Some(value) = self.gate_threshold {
            c.gate = Some(Modulator {
                threshold: Threshold::Fixed { value },
                gain: 1.0,
            });
        }
        if let Some(share) = self.gate_share {
            c.gate = Some(Modulator {
                threshold: Threshold::Adaptive { share, step: 1e-4 },
                gain: 1.0,
            });
        }
        c
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

impl RobotArgs {
    /// The experiment's options, with `episodes` learning episodes at most.
    pub fn options(&self, episodes: usize) -> ExperimentOptions {
        ExperimentOptions {
            env: self.env.clone(),
            torques: self.torques.clone(),
            model: self.model,
            episodes,
            learn_steps: self.learn_steps,
            eval_episodes: self.eval_episodes,
            horizon: self.horizon,
            samples: self.samples,
            search: self.search,
            iterations: self.iterations,
            explore: self.explore,
            world: self.world.config(self.seed),
            seed: self.seed,
            out: self.out.clone(),
            gif: !self.no_gif,
        }
    }
}

/// Learning steps per point of the error curves.
const ERROR_WINDOW: usize = 100;

pub fn agent(args: AgentArgs) -> Result<()> {
    let experiment = Experiment::new(args.robot.options(args.episodes))?;
    let args = args.robot;
    super::checks::writable_dir(experiment.out())?;
    println!("{}", header(&experiment));
    let (id, model, out) = (
        experiment.env_id(),
        args.model.name(),
        experiment.out().to_path_buf(),
    );
    let mut bars = Bars::default();
    let outcome = experiment.run(|event| bars.show(event))?;
    bars.finish();
    super::plots::plot_returns(
        &out.join("returns.svg"),
        &outcome.learning_returns(),
        &outcome.evaluation_returns(),
        &format!("{id} - {model} model"),
    )
    .map_err(|e| anyhow::anyhow!("drawing returns.svg: {e}"))?;
    let names = Task::from_env_id(&args.env)?.component_names();
    let mut written = vec!["episodes.csv", "returns.svg"];
    if outcome.learn_steps() > 0 {
        super::plots::plot_component_errors(
            &out.join("errors.svg"),
            names,
            &outcome.learning_errors(ERROR_WINDOW),
            &format!("{id}: one-step error per component while learning"),
        )
        .map_err(|e| anyhow::anyhow!("drawing errors.svg: {e}"))?;
        written.push("errors.svg");
    }
    if let Some(r) = &outcome.rollout {
        super::plots::plot_rollout(
            &out.join("rollout.svg"),
            names,
            &r.real,
            &r.imagined,
            &format!(
                "{id}: imagined against real, the same {} actions",
                r.actions.len()
            ),
        )
        .map_err(|e| anyhow::anyhow!("drawing rollout.svg: {e}"))?;
        written.push("rollout.svg");
    }
    if !args.no_gif {
        written.push("last-episode.gif");
        if outcome.rollout.is_some() {
            written.push("rollout.gif");
        }
    }
    print_summary(&outcome, id, model);
    println!("wrote {}/{{{}}}", out.display(), written.join(","));
    Ok(())
}

/// The run's first line: the environment, the planner and the world model.
fn header(e: &Experiment) -> String {
    let (o, planner) = (e.options(), e.planner());
    let world = &o.world;
    format!(
        "{}: model {}, planner {:?} horizon {} samples {}{}",
        e.env_id(),
        o.model.name(),
        planner.search,
        planner.horizon,
        planner.samples,
        if o.model == ModelKind::Eqprop {
            format!(
                ", world model {:?} lr {:?} beta {} {:?} replay {} updates {} gate {}{}",
                world.hidden,
                world.lr,
                world.dynamics.beta,
                world.dynamics.nudging,
                world.replay,
                world.updates,
                world
                    .gate
                    .map_or("off".to_string(), |g| format!("{:?}", g.threshold)),
                if world.kinematic_prior {
                    " kinematic prior"
                } else {
                    ""
                },
            )
        } else {
            String::new()
        }
    )
}

/// The progress bars of learning and evaluation, with a line per episode above them.
#[derive(Default)]
struct Bars {
    learning: Option<ProgressBar>,
    evaluating: Option<ProgressBar>,
}

impl Bars {
    fn show(&mut self, event: Event<'_>) {
        match event {
            Event::Learning { steps } => {
                self.learning = Some(bar(steps, "learning {bar:30} {pos}/{len} steps {msg}"));
            }
            Event::LearnStep { env_steps } => {
                if let Some(bar) = &self.learning {
                    bar.set_position(env_steps as u64);
                }
            }
            Event::Evaluating { episodes } => {
                if let Some(bar) = self.learning.take() {
                    bar.finish_and_clear();
                }
                self.evaluating = Some(bar(
                    episodes,
                    "evaluating {bar:30} {pos}/{len} episodes {msg}",
                ));
            }
            Event::EvalStep { step } => {
                if let Some(bar) = &self.evaluating {
                    bar.set_message(format!("step {step}"));
                }
            }
            Event::Episode(r) => {
                let ep = &r.ep;
                match (r.stage, &self.learning, &self.evaluating) {
                    (Stage::Learn, Some(bar), _) => {
                        say(
                            bar,
                            format!(
                                "learn {:4}  steps {:4}  return {:9.2}  one-step error {:.4}  gate {:.2}  env steps {}{}",
                                r.episode,
                                ep.steps,
                                ep.ret,
                                ep.pred_error,
                                ep.learned_share(),
                                r.env_steps,
                                if ep.cut {
                                    "  (cut by the step budget)"
                                } else {
                                    ""
                                },
                            ),
                        );
                        bar.set_message(format!("last return {:.1}", ep.ret));
                    }
                    (Stage::Eval, _, Some(bar)) => {
                        bar.inc(1);
                        say(
                            bar,
                            format!(
                                "eval  {:4}  steps {:4}  return {:9.2}  one-step error {:.4} ({})  median decision {:.3} ms",
                                r.episode,
                                ep.steps,
                                ep.ret,
                                ep.pred_error,
                                per_component(ep),
                                1e3 * median(&ep.decision_seconds)
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    fn finish(self) {
        for bar in [self.learning, self.evaluating].into_iter().flatten() {
            bar.finish_and_clear();
        }
    }
}

/// The episode's one-step error of each component, e.g. `0.0123 0.0456 0.0078`.
fn per_component(ep: &Episode) -> String {
    figures(&component_errors(&ep.errors))
}

/// Errors to four decimals, space-separated.
pub(super) fn figures(errors: &[f64]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| format!("{e:.4}")).collect();
    parts.join(" ")
}

pub(super) fn bar(len: usize, template: &str) -> ProgressBar {
    ProgressBar::new(len as u64)
        .with_style(ProgressStyle::with_template(template).expect("valid template"))
}

/// The learning and evaluation totals.
fn print_summary(outcome: &Outcome, id: &str, model: &str) {
    let s = outcome.summary();
    let learned = s.learn_steps;
    if learned > 0 {
        println!(
            "learning: {learned} steps in {} episodes, {:.1}% of transitions passed the gate, {:.3} ms per learning step",
            s.learn_episodes,
            100.0 * s.learned as f64 / learned as f64,
            1e3 * s.learn_seconds / learned as f64
        );
    }
    println!(
        "{id}: {model} model after {learned} learning steps: {} evaluation episodes, mean length {:.1}, mean return {:.2}, one-step error {}, {:.0} decisions/s, median decision {:.3} ms",
        s.eval_episodes,
        s.mean_length,
        s.mean_return,
        s.one_step_error
            .map_or("n/a".to_string(), |e| format!("{e:.4}")),
        s.decisions_per_second,
        1e3 * s.median_decision_seconds,
    );
    if !s.component_errors.is_empty() {
        println!(
            "one-step error per component: {}",
            figures(&s.component_errors)
        );
        println!(
            "  in units of the evaluation steps' own std of change: {} (pooled {:.4})",
            figures(&s.held_out_errors),
            pooled_error(&s.held_out_errors)
        );
    }
}

/// A line above the progress bar, or plainly when the bar is hidden (not a terminal).
pub(super) fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}
