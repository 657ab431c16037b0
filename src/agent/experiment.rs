//! The agent experiment behind `eqprop agent`: learning episodes under a step budget, the world
//! model learning online, then evaluation episodes with the model frozen; it writes
//! `episodes.csv` and the GIF of the last episode, and reports every step and episode to an
//! observer (progress display, plots).

use super::{
    Agent, Brain, Episode, EpisodeOptions, Evaluation, Planner, PlannerConfig, Search, Task,
    TrueModel, component_errors, imagine, pooled_error,
};
use crate::env::{self, Env, Physics};
use crate::stats::median;
use crate::world_model::{WorldModel, WorldModelConfig};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Most steps the planner may imagine per decision (`horizon x samples`).
const MAX_IMAGINED: usize = 10_000_000;

/// Which model the planner imagines with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ModelKind {
    /// The online EqProp world model, learned from a blank network.
    Eqprop,
    /// The true simulator (the ceiling).
    True,
    /// No model: uniformly random actions (the floor).
    Random,
}

impl ModelKind {
    /// The lower-case name (`eqprop`, `true`, `random`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Eqprop => "eqprop",
            ModelKind::True => "true",
            ModelKind::Random => "random",
        }
    }
}

/// The default probability of a random action while the world model learns.
pub const EXPLORE: f64 = 0.3;

/// Settings of an experiment; each `None` takes the task's default.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentOptions {
    /// `cartpole-v1` or `pendulum-v1`.
    pub env: String,
    /// Pendulum's torque candidates (default: -2, -1, 0, 1, 2).
    pub torques: Option<Vec<f32>>,
    pub model: ModelKind,
    /// Learning episodes at most (the step budget may end learning first).
    pub episodes: usize,
    /// Environment steps of online learning at most (default: 3000 CartPole, 4000 Pendulum;
    /// none without a world model).
    pub learn_steps: Option<usize>,
    /// Evaluation episodes, the model frozen (default: 20 CartPole, 10 Pendulum).
    pub eval_episodes: Option<usize>,
    /// Steps imagined ahead (default: 20 CartPole, 30 Pendulum).
    pub horizon: Option<usize>,
    /// Action sequences imagined per decision, per CEM round (default: 32).
    pub samples: Option<usize>,
    /// How the planner searches (default: shooting CartPole, CEM Pendulum).
    pub search: Option<Search>,
    /// CEM rounds.
    pub iterations: usize,
    /// Probability of a random action while learning (default [`EXPLORE`]): without it the
    /// planner soon balances and the model only ever sees the upright states.
    pub explore: f64,
    /// The world model (with [`ModelKind::Eqprop`]).
    pub world: WorldModelConfig,
    pub seed: u64,
    /// Output folder (default: `runs/agent-<env>-<model>`).
    pub out: Option<PathBuf>,
    /// Write the GIF of the last evaluation episode.
    pub gif: bool,
}

impl ExperimentOptions {
    /// The defaults on `env`: the EqProp world model (its default settings), up to 1000
    /// learning episodes, 3 CEM rounds, [`EXPLORE`] exploration, seed 0, with the GIF.
    pub fn new(env: &str) -> Self {
        Self {
            env: env.to_string(),
            torques: None,
            model: ModelKind::Eqprop,
            episodes: 1000,
            learn_steps: None,
            eval_episodes: None,
            horizon: None,
            samples: None,
            search: None,
            iterations: 3,
            explore: EXPLORE,
            world: WorldModelConfig::default(),
            seed: 0,
            out: None,
            gif: true,
        }
    }
}

/// Which part of the experiment an episode belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The world model learns online.
    Learn,
    /// The model frozen, no exploration.
    Eval,
}

impl Stage {
    /// `learn` or `eval` (the CSV's `phase` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Learn => "learn",
            Stage::Eval => "eval",
        }
    }
}

/// One episode of the experiment (a row of `episodes.csv`).
#[derive(Clone, Debug)]
pub struct EpisodeRecord {
    /// 1-based within its stage.
    pub episode: usize,
    pub stage: Stage,
    /// The seed of the environment's reset.
    pub seed: u64,
    /// Environment steps so far, this episode's included (learning and evaluation).
    pub env_steps: usize,
    pub ep: Episode,
}

/// What the experiment reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// Learning begins, for at most `steps` environment steps.
    Learning { steps: usize },
    /// A learning step: `env_steps` learned from so far.
    LearnStep { env_steps: usize },
    /// Evaluation begins (learning, if any, is over): `episodes` episodes.
    Evaluating { episodes: usize },
    /// Step `step` of the current evaluation episode.
    EvalStep { step: usize },
    /// An episode ended.
    Episode(&'a EpisodeRecord),
}

/// An experiment ready to run: the environment, the agent and the resolved settings.
pub struct Experiment {
    env: Box<dyn Env>,
    agent: Agent,
    options: ExperimentOptions,
    learn_steps: usize,
    eval_episodes: usize,
    planner: PlannerConfig,
    out: PathBuf,
}

impl Experiment {
    /// Resolves the defaults, checks every setting (naming the first bad one) and builds the
    /// agent: a blank world model, the true simulator, or none.
    pub fn new(mut options: ExperimentOptions) -> Result<Self> {
        let env = env::make(&options.env)?;
        let (task, planner) = task_and_planner(&options)?;
        let learn_steps = match options.model {
            ModelKind::Eqprop => learn_steps(&options, &task),
            ModelKind::True | ModelKind::Random => 0,
        };
        let eval_episodes = eval_episodes(&options, &task);
        if eval_episodes == 0 || options.episodes == 0 {
            return Err(invalid("--episodes and --eval-episodes must be at least 1"));
        }
        let brain = match options.model {
            ModelKind::Random => Brain::Random,
            ModelKind::True => Brain::True(
                Planner::new(task.clone(), planner.clone()),
                TrueModel::new(task.clone()),
            ),
            ModelKind::Eqprop => Brain::EqProp(
                Planner::new(task.clone(), planner.clone()),
                Box::new(WorldModel::new(task.clone(), options.world.clone())?),
            ),
        };
        let agent = Agent::new(task, brain, options.seed);
        let out = options.out.take().unwrap_or_else(|| {
            let (id, model) = (options.env.to_ascii_lowercase(), options.model.name());
            PathBuf::from(format!("runs/agent-{id}-{model}"))
        });
        Ok(Self {
            env,
            agent,
            options,
            learn_steps,
            eval_episodes,
            planner,
            out,
        })
    }

    /// The environment's Gymnasium id (`CartPole-v1`, `Pendulum-v1`).
    pub fn env_id(&self) -> &'static str {
        self.env.id()
    }

    /// The settings, as given.
    pub fn options(&self) -> &ExperimentOptions {
        &self.options
    }

    /// The planner's settings, defaults resolved.
    pub fn planner(&self) -> &PlannerConfig {
        &self.planner
    }

    /// Environment steps of online learning at most (0 without a world model).
    pub fn learn_steps(&self) -> usize {
        self.learn_steps
    }

    /// Evaluation episodes.
    pub fn eval_episodes(&self) -> usize {
        self.eval_episodes
    }

    /// The output folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Runs the experiment: learning episodes until the step budget or the episode count runs
    /// out, then the evaluation episodes; writes `episodes.csv` and, when asked,
    /// `last-episode.gif` into the output folder. `on` sees every step and episode.
    pub fn run(mut self, mut on: impl FnMut(Event<'_>)) -> Result<Outcome> {
        let mut records = Vec::new();
        let mut env_steps = 0usize;
        if self.learn_steps > 0 {
            self.learn(&mut records, &mut env_steps, &mut on)?;
        }
        self.evaluate(&mut records, &mut env_steps, &mut on)?;
        write_csv(&self.out.join("episodes.csv"), &records)?;
        if self.options.gif
            && let Some(last) = records.last()
        {
            self.write_gif(&last.ep.states)?;
        }
        let rollout = self.rollout()?;
        if let (Some(r), true) = (&rollout, self.options.gif) {
            self.write_rollout_gif(r)?;
        }
        Ok(Outcome { records, rollout })
    }

    /// The learning episodes, the world model learning from every transition.
    fn learn(
        &mut self,
        records: &mut Vec<EpisodeRecord>,
        env_steps: &mut usize,
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<()> {
        let budget = self.learn_steps;
        on(Event::Learning { steps: budget });
        for i in 0..self.options.episodes {
            if *env_steps >= budget {
                break;
            }
            let seed = self
                .options
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(i as u64);
            let before = *env_steps;
            let opts = EpisodeOptions {
                learn: true,
                explore: self.options.explore,
                max_steps: budget - before,
                ..Default::default()
            };
            let ep = self.agent.episode(self.env.as_mut(), seed, &opts, |n| {
                on(Event::LearnStep {
                    env_steps: before + n,
                })
            })?;
            *env_steps += ep.steps;
            records.push(EpisodeRecord {
                episode: i + 1,
                stage: Stage::Learn,
                seed,
                env_steps: *env_steps,
                ep,
            });
            on(Event::Episode(records.last().expect("just pushed")));
        }
        Ok(())
    }

    /// The reset seed of evaluation episode `i`: the same for every model, apart from the
    /// learning ones.
    fn eval_seed(&self, i: usize) -> u64 {
        1_000_000_000u64
            .wrapping_add(self.options.seed.wrapping_mul(1_000))
            .wrapping_add(i as u64)
    }

    /// The evaluation episodes, the model frozen; the last one keeps its states for the GIF.
    fn evaluate(
        &mut self,
        records: &mut Vec<EpisodeRecord>,
        env_steps: &mut usize,
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<()> {
        let episodes = self.eval_episodes;
        on(Event::Evaluating { episodes });
        for i in 0..episodes {
            let seed = self.eval_seed(i);
            let opts = EpisodeOptions {
                keep_states: i + 1 == episodes && self.options.gif,
                ..Default::default()
            };
            let ep = self.agent.episode(self.env.as_mut(), seed, &opts, |step| {
                on(Event::EvalStep { step })
            })?;
            *env_steps += ep.steps;
            records.push(EpisodeRecord {
                episode: i + 1,
                stage: Stage::Eval,
                seed,
                env_steps: *env_steps,
                ep,
            });
            on(Event::Episode(records.last().expect("just pushed")));
        }
        Ok(())
    }

    /// The learned model's imagination against the real world: from the first evaluation
    /// episode's start, [`ROLLOUT_STEPS`] actions of the agent (model frozen) in the real
    /// environment, then the same actions imagined from the same start. None without a world
    /// model.
    fn rollout(&mut self) -> Result<Option<Rollout>> {
        if !matches!(self.agent.brain, Brain::EqProp(..)) {
            return Ok(None);
        }
        let mut obs = self.env.reset(self.eval_seed(0));
        if let Brain::EqProp(planner, _) = &mut self.agent.brain {
            planner.reset();
        }
        let (mut real, mut actions) = (vec![obs.clone()], Vec::new());
        for _ in 0..ROLLOUT_STEPS {
            let a = self.agent.act(&obs);
            let step = self.env.step(&self.agent.task.env_action(a))?;
            actions.push(a);
            real.push(step.obs.clone());
            obs = step.obs;
            if step.terminated || step.truncated {
                break;
            }
        }
        let Brain::EqProp(_, model) = &mut self.agent.brain else {
            unreachable!("checked above")
        };
        let imagined = imagine(model.as_mut(), &real[0], &actions);
        Ok(Some(Rollout {
            real,
            imagined,
            actions,
        }))
    }

    /// `rollout.gif`: the real episode (left) and the imagined one (right), frame by frame.
    fn write_rollout_gif(&self, r: &Rollout) -> Result<()> {
        let task = &self.agent.task;
        let frames = r
            .real
            .iter()
            .zip(&r.imagined)
            .map(|(real, imagined)| {
                let left = env::render::frame(self.env.id(), &task.render_state(real))?;
                let right = env::render::frame(self.env.id(), &task.render_state(imagined))?;
                Some(env::render::side_by_side(&left, &right))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("no renderer for this env"))?;
        Ok(crate::picture::write_gif(
            frames,
            self.frame_ms(),
            &self.out.join("rollout.gif"),
        )?)
    }

    /// The environment's own pace, per frame.
    fn frame_ms(&self) -> u32 {
        frame_ms(self.env.id())
    }

    /// `last-episode.gif`: a frame per state, at the environment's own pace.
    fn write_gif(&self, states: &[Vec<f64>]) -> Result<()> {
        let physics = Physics::default_for(self.env.id())?;
        write_episode_gif(
            self.env.id(),
            &physics,
            states,
            &self.out.join("last-episode.gif"),
        )
    }
}

/// Gymnasium's `render_fps` as milliseconds per frame: 50 fps for CartPole, 30 for Pendulum.
fn frame_ms(id: &str) -> u32 {
    if id.starts_with("CartPole") { 20 } else { 33 }
}

/// The GIF of an episode of environment `id` in the world `physics`: a frame per state, at the
/// environment's pace.
pub(super) fn write_episode_gif(
    id: &str,
    physics: &Physics,
    states: &[Vec<f64>],
    path: &Path,
) -> Result<()> {
    let frames = states
        .iter()
        .map(|s| env::render::world_frame(physics, s))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("no renderer for this env"))?;
    Ok(crate::picture::write_gif(frames, frame_ms(id), path)?)
}

/// Environment steps of online learning: as given, else 3000 on CartPole, 4000 on Pendulum.
pub(super) fn learn_steps(options: &ExperimentOptions, task: &Task) -> usize {
    let default = if matches!(task, Task::CartPole) {
        3000
    } else {
        4000
    };
    options.learn_steps.unwrap_or(default)
}

/// Evaluation episodes: as given, else 20 on CartPole, 10 on Pendulum.
pub(super) fn eval_episodes(options: &ExperimentOptions, task: &Task) -> usize {
    let default = if matches!(task, Task::CartPole) {
        20
    } else {
        10
    };
    options.eval_episodes.unwrap_or(default)
}

/// The task (Pendulum's torques given) and the planner's settings of the options, checked.
pub(super) fn task_and_planner(options: &ExperimentOptions) -> Result<(Task, PlannerConfig)> {
    let mut task = Task::from_env_id(&options.env)?;
    let cartpole = matches!(task, Task::CartPole);
    if let (Task::Pendulum { torques }, Some(t)) = (&mut task, &options.torques) {
        if t.is_empty() || t.iter().any(|u| !u.is_finite()) {
            return Err(invalid(format!("--torques needs finite values, got {t:?}")));
        }
        torques.clone_from(t);
    }
    if !(0.0..=1.0).contains(&options.explore) {
        let e = options.explore;
        return Err(invalid(format!("--explore must be in [0, 1], got {e}")));
    }
    Ok((task, planner_config(options, cartpole)?))
}

/// The planner's settings from the options, the task's defaults filled in, checked.
fn planner_config(o: &ExperimentOptions, cartpole: bool) -> Result<PlannerConfig> {
    let planner = PlannerConfig {
        horizon: o.horizon.unwrap_or(if cartpole { 20 } else { 30 }),
        samples: o.samples.unwrap_or(32),
        search: o.search.unwrap_or(if cartpole {
            Search::Shooting
        } else {
            Search::Cem
        }),
        iterations: o.iterations,
        seed: o.seed,
    };
    if planner.horizon == 0 || planner.samples == 0 || planner.iterations == 0 {
        return Err(invalid(
            "--horizon, --samples and --iterations must be positive",
        ));
    }
    if planner.horizon.saturating_mul(planner.samples) > MAX_IMAGINED {
        return Err(invalid(format!(
            "--horizon {} x --samples {} imagines too many steps per decision (at most 10 million)",
            planner.horizon, planner.samples
        )));
    }
    Ok(planner)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// Writes `text` to `path`, atomically (a whole file or none).
pub(super) fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::checkpoint::write_atomically(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// `episodes.csv`: one row per episode, learning ones first.
fn write_csv(path: &Path, records: &[EpisodeRecord]) -> Result<()> {
    let mut text = String::from(
        "episode,phase,seed,steps,return,cut,env_steps,one_step_error,learned_share,decisions_per_s,median_decision_ms,learn_ms_per_step\n",
    );
    for r in records {
        let e = &r.ep;
        let decide: f64 = e.decision_seconds.iter().sum();
        text.push_str(&format!(
            "{},{},{},{},{:.4},{},{},{:.6},{:.4},{:.1},{:.4},{:.4}\n",
            r.episode,
            r.stage.as_str(),
            r.seed,
            e.steps,
            e.ret,
            e.cut,
            r.env_steps,
            e.pred_error,
            e.learned_share(),
            e.decision_seconds.len() as f64 / decide.max(1e-12),
            1e3 * median(&e.decision_seconds),
            1e3 * e.learn_seconds / e.steps.max(1) as f64,
        ));
    }
    write_text(path, &text)
}

/// Steps of the imagined-against-real rollout after learning.
pub const ROLLOUT_STEPS: usize = 50;

/// The same actions taken in the real environment and imagined by the learned model, from the
/// same start: `real` and `imagined` each hold the start and one observation per action.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub real: Vec<Vec<f32>>,
    pub imagined: Vec<Vec<f32>>,
    pub actions: Vec<usize>,
}

/// What an experiment did: every episode, in order, and the imagined-against-real rollout
/// (with a world model).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub records: Vec<EpisodeRecord>,
    pub rollout: Option<Rollout>,
}

/// The experiment in a few numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Environment steps learned from, and in how many episodes.
    pub learn_steps: usize,
    pub learn_episodes: usize,
    /// Learning transitions that passed the surprise gate (all of them without a gate).
    pub learned: usize,
    /// Seconds spent learning.
    pub learn_seconds: f64,
    pub eval_episodes: usize,
    /// Mean length and return of the evaluation episodes.
    pub mean_length: f64,
    pub mean_return: f64,
    /// The world model's scaled one-step error over every evaluation step: the RMS over the
    /// components of each component's RMS (none without a model).
    pub one_step_error: Option<f64>,
    /// Each component's RMS scaled error over every evaluation step (empty without a model).
    pub component_errors: Vec<f64>,
    /// Each component's RMS error over every evaluation step in units of the standard
    /// deviation of that component's change over those same steps (rather than over the
    /// learning experience; empty without a model).
    pub held_out_errors: Vec<f64>,
    /// Decisions per second and the median seconds of a decision, over the evaluation.
    pub decisions_per_second: f64,
    pub median_decision_seconds: f64,
}

impl Outcome {
    fn stage(&self, stage: Stage) -> impl Iterator<Item = &EpisodeRecord> {
        self.records.iter().filter(move |r| r.stage == stage)
    }

    /// Environment steps learned from.
    pub fn learn_steps(&self) -> usize {
        self.stage(Stage::Learn).map(|r| r.ep.steps).sum()
    }

    /// `(environment steps, return)` of the learning episodes where they ended (not the last
    /// one if the step budget cut it short).
    pub fn learning_returns(&self) -> Vec<(usize, f64)> {
        self.stage(Stage::Learn)
            .filter(|r| !r.ep.cut)
            .map(|r| (r.env_steps, r.ep.ret))
            .collect()
    }

    /// `(learning steps, return)` of the evaluation episodes: at the learning steps they
    /// followed.
    pub fn evaluation_returns(&self) -> Vec<(usize, f64)> {
        let learned = self.learn_steps();
        self.stage(Stage::Eval)
            .map(|r| (learned, r.ep.ret))
            .collect()
    }

    /// The learning curve of each component: over consecutive windows of `window` learning
    /// steps, the RMS of the scaled error of the new transitions before they were learned, as
    /// `(learning steps so far, error)`.
    pub fn learning_errors(&self, window: usize) -> Vec<Vec<(usize, f64)>> {
        let steps: Vec<&Vec<f32>> = self
            .stage(Stage::Learn)
            .flat_map(|r| &r.ep.errors)
            .collect();
        let d = steps.first().map_or(0, |s| s.len());
        let window = window.max(1);
        (0..d)
            .map(|j| {
                steps
                    .chunks(window)
                    .enumerate()
                    .map(|(w, chunk)| {
                        let sum: f64 = chunk.iter().map(|e| f64::from(e[j]).powi(2)).sum();
                        (w * window + chunk.len(), (sum / chunk.len() as f64).sqrt())
                    })
                    .collect()
            })
            .collect()
    }

    /// The summary numbers.
    pub fn summary(&self) -> Summary {
        let learn_steps = self.learn_steps();
        let learning: Vec<&Episode> = self.stage(Stage::Learn).map(|r| &r.ep).collect();
        let eval: Vec<&Episode> = self.stage(Stage::Eval).map(|r| &r.ep).collect();
        let gated: usize = learning.iter().map(|e| e.learned_steps()).sum();
        let seconds: f64 = learning.iter().map(|e| e.learn_seconds).sum();
        let evaluation = Evaluation::of(eval.iter().copied());
        let component_errors = component_errors(eval.iter().flat_map(|e| &e.errors));
        let latencies = &evaluation.decision_seconds;
        let total_decide: f64 = latencies.iter().sum();
        Summary {
            learn_steps,
            learn_episodes: learning.len(),
            learned: gated,
            learn_seconds: seconds,
            eval_episodes: eval.len(),
            mean_length: evaluation.mean_length,
            mean_return: evaluation.mean_return,
            one_step_error: (!component_errors.is_empty()).then(|| pooled_error(&component_errors)),
            component_errors,
            held_out_errors: evaluation.held_out.relative_errors(),
            decisions_per_second: latencies.len() as f64 / total_decide.max(1e-12),
            median_decision_seconds: median(latencies),
        }
    }
}
