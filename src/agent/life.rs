//! The living agent: one EqProp world model learns world after world online, told which world
//! it is in by a context input, and keeps the worlds it has left by dreaming them.
//!
//! A life is a sequence of worlds ([`crate::env::world`]: one environment, its physics changed).
//! In each world the robot learns online as in [`super::Experiment`] (planning with its model,
//! a short-term buffer of recent real transitions replayed beside each new one). When the world
//! changes the old world's real transitions are gone; what the model rehearses of the old worlds
//! depends on the [`Strategy`]:
//! - [`Strategy::Dreams`]: right before the switch the robot dreams episodes of the world it
//!   leaves: it starts from the world's initial-state distribution, plans with its own model
//!   (with the learning-time exploration) and imagines every next state with the model, the
//!   context clamped to that world; its own free-phase outputs along these imagined episodes are
//!   kept as that world's memory. Every later batch rehearses `rehearse` rows of them
//!   (generative replay, as [`crate::continual`] does for images). No real transition of an old
//!   world is kept.
//! - [`Strategy::FineTune`]: nothing (it forgets);
//! - [`Strategy::Real`]: the last real transitions of every world are kept and rehearsed the same
//!   way (the upper bound of rehearsal);
//! - [`Strategy::Joint`]: every world at once, episode after episode in turn, with the kept real
//!   transitions of the others rehearsed (the multi-task reference).
//!
//! With the surprise gate ([`crate::modulator`]) a transition whose prediction missed by less than
//! the threshold learns nothing at all, replay and rehearsal included: a switch is a burst of
//! surprise, and learning dies down once the new physics is predicted.
//!
//! After each world the model is frozen and tested in every world learned so far: the one-step
//! error (in units of the standard deviation of the tested transitions' own change) and the
//! control (mean length or return), the rows of the error matrix.

use super::{
    Agent, Brain, Episode, EpisodeOptions, Evaluation, Model, Planner, Task, TrueModel, explored,
    pooled_error,
};
use crate::agent::experiment::{self, write_text};
use crate::agent::{ExperimentOptions, ModelKind};
use crate::env::{Env, Physics, world};
use crate::modulator::{Modulator, Mood, Threshold};
use crate::stats::{median, percentile};
use crate::world_model::WorldModel;
use crate::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// What the model rehearses of the worlds it has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Strategy {
    /// Its own dreams of them (generative replay).
    Dreams,
    /// Nothing: plain fine-tuning.
    FineTune,
    /// Their last real transitions, kept (the upper bound).
    Real,
    /// Every world at once, in turn (the multi-task reference).
    Joint,
}

impl Strategy {
    /// The lower-case name (`dreams`, `fine-tune`, `real`, `joint`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Dreams => "dreams",
            Strategy::FineTune => "fine-tune",
            Strategy::Real => "real",
            Strategy::Joint => "joint",
        }
    }
}

/// The default surprise gate: a threshold on the output cost `1/2 ||y - t||^2` of each new
/// transition that tracks the 95th percentile of the surprise on the log scale (rate 0.01 per
/// step): at rest about 5% of the transitions learn; when the surprise jumps nearly all do until
/// the threshold has climbed (a hundredfold jump takes about 480 steps). A life keeps one gate
/// state per world ([`LifeOptions::gate_per_world`]): a new world starts from the initial
/// threshold, as the first did.
pub fn default_gate() -> Modulator {
    Modulator {
        threshold: Threshold::Relative {
            share: 0.05,
            rate: 0.01,
        },
        gain: 1.0,
    }
}

/// The surprise gate of a life (none when not `enabled`): the [`default_gate`] with the share
/// of the steps that learn at rest and the threshold's rate (`ln theta += rate (learned -
/// share)` per step) changed, or a fixed `threshold` instead, which has neither. Asking for
/// both is an error, as is a setting without a gate or one [`Modulator::validate`] refuses.
pub fn life_gate(
    enabled: bool,
    threshold: Option<f32>,
    share: Option<f32>,
    rate: Option<f32>,
) -> Result<Option<Modulator>> {
    if !enabled {
        return match [threshold, share, rate].iter().all(Option::is_none) {
            true => Ok(None),
            false => Err(invalid(NO_GATE_CONFLICT)),
        };
    }
    let mut gate = default_gate();
    if let Some(value) = threshold {
        if share.is_some() || rate.is_some() {
            return Err(invalid(
                "a fixed gate threshold has no share or rate to set",
            ));
        }
        gate.threshold = Threshold::Fixed { value };
    } else if let Threshold::Relative { share: s, rate: r } = &mut gate.threshold {
        *s = share.unwrap_or(*s);
        *r = rate.unwrap_or(*r);
    }
    gate.validate()
        .map_err(|e| invalid(format!("the gate: {e}")))?;
    Ok(Some(gate))
}

/// The error of a gate setting given to a life without a gate.
const NO_GATE_CONFLICT: &str = "--no-gate conflicts with the other --gate-* options";

/// EqProp updates per learning step by default in a life: twice the robot's 16, since the gate
/// leaves most steps unlearned (seed 0, CartPole: world 1's one-step error 0.041 against 0.114
/// with 16).
pub const DEFAULT_LIFE_UPDATES: usize = 32;

/// Dreamed transitions kept per world by default.
pub const DEFAULT_DREAMS: usize = 2000;

/// The longest imagined episode by default: CartPole's whole episode (500 steps: its starts
/// lie near upright, the long balancing is what the robot lives), Pendulum 50 steps (its starts
/// cover every angle, and the model predicts `cos` and `sin` apart, so that a long imagined
/// episode leaves the circle they lie on).
pub fn default_dream_length(task: &Task) -> usize {
    match task {
        Task::CartPole => 500,
        Task::Pendulum { .. } => 50,
    }
}

/// How many steps the default gate averages the surprise over, as the smoothing `S` of its
/// [`Mood`] (`m += S (C - m)`): Pendulum 0.02, about 50 steps, a swing of the pendulum (its
/// prediction errors come and go with the phase of the swing; averaged over one, the gate judges
/// the world rather than the phase, and both the burst after a switch and the old worlds' errors
/// improved), CartPole 1, each step's own surprise (averaged, its bursts were no longer). The
/// measurements are in docs/life.md, "Gating on the mood".
pub fn default_gate_smoothing(task: &Task) -> f32 {
    match task {
        Task::CartPole => 1.0,
        Task::Pendulum { .. } => 0.02,
    }
}

/// Settings of a life.
#[derive(Clone, Debug, PartialEq)]
pub struct LifeOptions {
    /// The environment, planner, model and world-model settings; `learn_steps` is per world,
    /// `eval_episodes` per tested world, `episodes` is unused.
    pub agent: ExperimentOptions,
    /// The worlds in the order lived (default: [`world::default_worlds`]).
    pub worlds: Option<Vec<Physics>>,
    pub strategy: Strategy,
    /// Dreamed transitions kept per world ([`Strategy::Dreams`]).
    pub dreams: usize,
    /// Steps of an imagined episode at most (default: [`default_dream_length`]).
    pub dream_length: Option<usize>,
    /// The probability of a random action in a dream (default: the learning-time
    /// exploration, `agent.explore`).
    pub dream_explore: Option<f64>,
    /// The surprise gate (none: every transition learns); it and the two below replace
    /// `agent.world`'s.
    pub gate: Option<Modulator>,
    /// The gate's mood smoothing (default: [`default_gate_smoothing`]).
    pub gate_smoothing: Option<f32>,
    /// The gate's threshold cap, a factor of the expected mood ([`Mood`]; default: none).
    pub gate_cap: Option<f32>,
    /// One gate state per world (the default; see
    /// [`crate::world_model::WorldModelConfig::gate_per_world`]), or one for every world, as
    /// before 2026-12-07.
    pub gate_per_world: bool,
}

impl LifeOptions {
    /// What the gate judges on `task`: the mood these options ask for, the defaults filled in.
    pub fn mood(&self, task: &Task) -> Mood {
        Mood {
            smoothing: self.gate_smoothing.unwrap_or(default_gate_smoothing(task)),
            cap: self.gate_cap,
        }
    }

    /// Dreams, the default worlds, the [`default_gate`], [`DEFAULT_LIFE_UPDATES`], on `env`.
    pub fn new(env: &str) -> Self {
        let mut agent = ExperimentOptions::new(env);
        agent.world.updates = DEFAULT_LIFE_UPDATES;
        Self {
            agent,
            worlds: None,
            strategy: Strategy::Dreams,
            dreams: DEFAULT_DREAMS,
            dream_length: None,
            dream_explore: None,
            gate: Some(default_gate()),
            gate_smoothing: None,
            gate_cap: None,
            gate_per_world: true,
        }
    }
}

/// What a life reports while it runs.
#[derive(Debug)]
pub enum LifeEvent<'a> {
    /// Learning of a stage begins: the worlds it learns, for `steps` environment steps.
    Learning { worlds: &'a [usize], steps: usize },
    /// A learning step; `learned` says whether it passed the gate.
    LearnStep {
        step: usize,
        world: usize,
        learned: bool,
    },
    /// Dreaming of `world` begins (`transitions` to dream).
    Dreaming { world: usize, transitions: usize },
    /// Testing `world` begins, the model frozen.
    Testing { world: usize, episodes: usize },
    /// A test step.
    TestStep,
    /// A test of one world after one stage is done.
    Tested(&'a WorldTest),
}

/// One learning step of the life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LifeStep {
    pub world: usize,
    /// The transition passed the gate (always without one).
    pub learned: bool,
    /// The scaled one-step error of the new transition before learning (RMS over components;
    /// NaN for the first two transitions of the life, before the scale exists).
    pub error: f32,
}

/// The frozen model tested in one world after one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldTest {
    /// The stage (0-based) after which it was tested.
    pub stage: usize,
    pub world: usize,
    pub episodes: usize,
    pub mean_length: f64,
    pub mean_return: f64,
    /// The one-step error in units of the standard deviation of the tested transitions' own
    /// change: the RMS over components (NaN without a world model).
    pub error: f64,
    /// Each component's error in those units.
    pub component_errors: Vec<f64>,
    /// The median, the 99th percentile and the largest decision time, seconds.
    pub median_decision: f64,
    pub p99_decision: f64,
    pub max_decision: f64,
}

/// What a life did.
#[derive(Clone, Debug)]
pub struct LifeOutcome {
    pub worlds: Vec<Physics>,
    pub strategy: Strategy,
    /// The worlds each stage learned (one each, or all for [`Strategy::Joint`]).
    pub stages: Vec<Vec<usize>>,
    /// Every learning step in order.
    pub steps: Vec<LifeStep>,
    /// The learning step at which each stage began.
    pub switches: Vec<usize>,
    /// Every test: after each stage, each world learned so far.
    pub tests: Vec<WorldTest>,
    /// EqProp updates made (the learning work) and seconds spent learning and dreaming.
    pub updates: usize,
    pub learn_seconds: f64,
    pub dream_seconds: f64,
}

impl LifeOutcome {
    /// The test of `world` after `stage`, if it ran.
    pub fn test(&self, stage: usize, world: usize) -> Option<&WorldTest> {
        self.tests
            .iter()
            .find(|t| t.stage == stage && t.world == world)
    }

    /// The learning steps of `stage`.
    pub fn stage_steps(&self, stage: usize) -> &[LifeStep] {
        let start = self.switches[stage];
        let end = self.switches.get(stage + 1).copied();
        &self.steps[start..end.unwrap_or(self.steps.len())]
    }

    /// The share of a stage's learning steps that passed the gate in its first and in its last
    /// [`SHARE_WINDOW`] steps.
    pub fn switch_shares(&self, stage: usize) -> (f64, f64) {
        let steps = self.stage_steps(stage);
        let window = SHARE_WINDOW.min(steps.len());
        (
            learned_share(&steps[..window]),
            learned_share(&steps[steps.len() - window..]),
        )
    }

    /// Share of all learning steps that passed the gate.
    pub fn learned_share(&self) -> f64 {
        learned_share(&self.steps)
    }

    /// Over consecutive windows of `window` learning steps: `(steps so far, share learned,
    /// RMS scaled error)` (NaN for a window without errors).
    pub fn timeline(&self, window: usize) -> Vec<(usize, f64, f64)> {
        let window = window.max(1);
        self.steps
            .chunks(window)
            .enumerate()
            .map(|(w, chunk)| {
                let errors: Vec<f64> = chunk
                    .iter()
                    .filter(|s| s.error.is_finite())
                    .map(|s| f64::from(s.error))
                    .collect();
                (
                    w * window + chunk.len(),
                    learned_share(chunk),
                    pooled_error(&errors),
                )
            })
            .collect()
    }
}

/// Steps after a switch, and before the end of a world, over which the gate's share is told.
pub const SHARE_WINDOW: usize = 500;

/// Share of `steps` that passed the gate (0 for none).
fn learned_share(steps: &[LifeStep]) -> f64 {
    steps.iter().filter(|s| s.learned).count() as f64 / steps.len().max(1) as f64
}

/// A life ready to run.
pub struct Life {
    task: Task,
    worlds: Vec<Physics>,
    envs: Vec<Box<dyn Env>>,
    agent: Agent,
    options: LifeOptions,
    steps_per_world: usize,
    eval_episodes: usize,
    out: PathBuf,
    rng: ChaCha8Rng,
}

impl Life {
    /// Resolves the defaults, checks every setting (naming the first bad one) and builds the
    /// agent: a blank world model with one context per world (or the true physics, or none).
    pub fn new(mut options: LifeOptions) -> Result<Self> {
        let o = &options.agent;
        let worlds = match &options.worlds {
            Some(w) => w.clone(),
            None => world::default_worlds(&o.env)?,
        };
        if worlds.is_empty() {
            return Err(invalid("--worlds needs at least one world"));
        }
        match &options.gate {
            Some(g) => g
                .validate()
                .map_err(|e| invalid(format!("the gate: {e}")))?,
            None if options.gate_smoothing.is_some()
                || options.gate_cap.is_some()
                || !options.gate_per_world =>
            {
                return Err(invalid(NO_GATE_CONFLICT));
            }
            None => {}
        }
        if options.strategy == Strategy::Dreams && options.dreams == 0 {
            return Err(invalid("--dreams must be positive with --strategy dreams"));
        }
        if options.dream_length == Some(0) {
            return Err(invalid("--dream-length must be positive"));
        }
        if options
            .dream_explore
            .is_some_and(|p| !(0.0..=1.0).contains(&p))
        {
            return Err(invalid("--dream-explore must be a probability in [0, 1]"));
        }
        let (task, planner) = experiment::task_and_planner(o)?;
        if let Some(w) = worlds
            .iter()
            .find(|w| TrueModel::with_physics(task.clone(), **w).is_err())
        {
            return Err(invalid(format!(
                "world {} is not a world of {}",
                w.spec(),
                o.env
            )));
        }
        let steps_per_world = experiment::learn_steps(o, &task);
        let eval_episodes = experiment::eval_episodes(o, &task);
        if eval_episodes == 0 || steps_per_world == 0 {
            return Err(invalid(
                "--learn-steps and --eval-episodes must be at least 1",
            ));
        }
        let mut world_config = o.world.clone();
        world_config.contexts = worlds.len();
        world_config.gate = options.gate;
        world_config.mood = options.mood(&task);
        world_config.gate_per_world = options.gate_per_world;
        let brain = match o.model {
            ModelKind::Eqprop => Brain::EqProp(
                Planner::new(task.clone(), planner.clone()),
                Box::new(WorldModel::new(task.clone(), world_config)?),
            ),
            ModelKind::True => Brain::True(
                Planner::new(task.clone(), planner.clone()),
                TrueModel::with_physics(task.clone(), worlds[0])?,
            ),
            ModelKind::Random => Brain::Random,
        };
        let agent = Agent::new(task.clone(), brain, o.seed);
        let out = options.agent.out.take().unwrap_or_else(|| {
            let id = options.agent.env.to_ascii_lowercase();
            PathBuf::from(format!("runs/life-{id}-{}", options.strategy.name()))
        });
        Ok(Self {
            envs: worlds.iter().map(Physics::make).collect(),
            rng: ChaCha8Rng::seed_from_u64(options.agent.seed ^ 0xD8EA_3000),
            task,
            worlds,
            agent,
            steps_per_world,
            eval_episodes,
            out,
            options,
        })
    }

    /// The worlds, in the order lived.
    pub fn worlds(&self) -> &[Physics] {
        &self.worlds
    }

    /// Learning steps per world.
    pub fn steps_per_world(&self) -> usize {
        self.steps_per_world
    }

    /// Test episodes per world.
    pub fn eval_episodes(&self) -> usize {
        self.eval_episodes
    }

    /// The environment's Gymnasium id.
    pub fn env_id(&self) -> &'static str {
        self.envs[0].id()
    }

    /// What the gate judges (its mood, the defaults filled in).
    pub fn mood(&self) -> Mood {
        self.options.mood(&self.task)
    }

    /// The settings.
    pub fn options(&self) -> &LifeOptions {
        &self.options
    }

    /// The output folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Lives every world: learns it, dreams it (with [`Strategy::Dreams`]), tests every world
    /// learned so far; writes `matrix.csv`, `steps.csv`, `summary.json` and, when asked, `world-<k>.gif` (the
    /// last test episode of each world after the last stage) into the output folder.
    pub fn run(mut self, mut on: impl FnMut(LifeEvent<'_>)) -> Result<LifeOutcome> {
        let n = self.worlds.len();
        let stages: Vec<Vec<usize>> = match self.options.strategy {
            Strategy::Joint => vec![(0..n).collect()],
            _ => (0..n).map(|w| vec![w]).collect(),
        };
        let mut outcome = LifeOutcome {
            worlds: self.worlds.clone(),
            strategy: self.options.strategy,
            stages: stages.clone(),
            steps: Vec::new(),
            switches: Vec::new(),
            tests: Vec::new(),
            updates: 0,
            learn_seconds: 0.0,
            dream_seconds: 0.0,
        };
        let mut gifs = vec![Vec::new(); n];
        let mut seen = 0usize;
        for (stage, worlds) in stages.iter().enumerate() {
            outcome.switches.push(outcome.steps.len());
            let learning = matches!(self.agent.brain, Brain::EqProp(..));
            if learning {
                self.learn(stage, worlds, &mut outcome, &mut on)?;
            }
            seen = seen.max(worlds.iter().max().map_or(0, |w| w + 1));
            let last = stage + 1 == stages.len();
            for (w, gif) in gifs.iter_mut().enumerate().take(seen) {
                let (test, states) = self.test(stage, w, last, &mut on)?;
                on(LifeEvent::Tested(&test));
                outcome.tests.push(test);
                *gif = states;
            }
            // Dreamed after the tests, so that every strategy's tests of a stage see the same
            // planner.
            if learning && self.options.strategy == Strategy::Dreams && !last {
                let start = std::time::Instant::now();
                self.dream(worlds[0], &mut on)?;
                outcome.dream_seconds += start.elapsed().as_secs_f64();
            }
        }
        if let Brain::EqProp(_, model) = &self.agent.brain {
            outcome.updates = model.updates();
        }
        write_text(&self.out.join("matrix.csv"), &matrix_csv(&outcome))?;
        write_text(&self.out.join("steps.csv"), &steps_csv(&outcome))?;
        write_text(
            &self.out.join("summary.json"),
            &summary_json(&outcome, self.env_id()),
        )?;
        if self.options.agent.gif {
            for (w, states) in gifs.iter().enumerate() {
                let path = self.out.join(format!("world-{}.gif", w + 1));
                experiment::write_episode_gif(self.env_id(), &self.worlds[w], states, &path)?;
            }
        }
        Ok(outcome)
    }

    /// Puts the agent in world `w`: its environment, and the model's context (or the true
    /// physics).
    fn enter(&mut self, w: usize) -> Result<()> {
        match &mut self.agent.brain {
            Brain::EqProp(_, model) => model.set_context(w)?,
            Brain::True(_, model) => {
                *model = TrueModel::with_physics(self.task.clone(), self.worlds[w])?
            }
            Brain::Random => {}
        }
        Ok(())
    }

    /// The learning of one stage: `steps_per_world` steps per world, episode by episode, the
    /// worlds of the stage in turn. At every change of world the recent real transitions are
    /// forgotten (kept in the long-term memory with [`Strategy::Real`] and [`Strategy::Joint`]).
    fn learn(
        &mut self,
        stage: usize,
        worlds: &[usize],
        outcome: &mut LifeOutcome,
        on: &mut impl FnMut(LifeEvent<'_>),
    ) -> Result<()> {
        let budget = self.steps_per_world * worlds.len();
        on(LifeEvent::Learning {
            worlds,
            steps: budget,
        });
        let keep_real = matches!(self.options.strategy, Strategy::Real | Strategy::Joint);
        let (mut done, mut episode) = (0usize, 0usize);
        let mut current = None;
        while done < budget {
            let w = worlds[episode % worlds.len()];
            if current != Some(w) {
                if let Brain::EqProp(_, model) = &mut self.agent.brain {
                    model.forget_recent(keep_real);
                }
                self.enter(w)?;
                current = Some(w);
            }
            let seed = (self.options.agent.seed.wrapping_mul(1_000_003))
                .wrapping_add((stage * 100_000 + episode) as u64);
            let opts = EpisodeOptions {
                learn: true,
                explore: self.options.agent.explore,
                max_steps: budget - done,
                ..Default::default()
            };
            let base = outcome.steps.len();
            let ep = self
                .agent
                .episode(self.envs[w].as_mut(), seed, &opts, |_| {})?;
            push_steps(&mut outcome.steps, w, &ep);
            for (i, s) in outcome.steps[base..].iter().enumerate() {
                on(LifeEvent::LearnStep {
                    step: base + i + 1,
                    world: w,
                    learned: s.learned,
                });
            }
            outcome.learn_seconds += ep.learn_seconds;
            done += ep.steps;
            episode += 1;
        }
        Ok(())
    }

    /// Dreams `dreams` transitions of world `w` and keeps them as its memory: imagined episodes
    /// from the world's initial states, the planner acting on the model (with the learning-time
    /// exploration), the model imagining every next state.
    fn dream(&mut self, w: usize, on: &mut impl FnMut(LifeEvent<'_>)) -> Result<()> {
        let total = self.options.dreams;
        on(LifeEvent::Dreaming {
            world: w,
            transitions: total,
        });
        self.enter(w)?;
        let explore = (self.options.dream_explore).unwrap_or(self.options.agent.explore);
        let na = self.task.num_actions();
        let max_len = (self.options.dream_length).unwrap_or(default_dream_length(&self.task));
        let Brain::EqProp(planner, model) = &mut self.agent.brain else {
            return Ok(());
        };
        let (mut states, mut actions) = (Vec::new(), Vec::with_capacity(total));
        let mut episode = 0u64;
        while actions.len() < total {
            let seed = 2_000_000_000u64
                .wrapping_add(self.options.agent.seed.wrapping_mul(10_000))
                .wrapping_add(w as u64 * 1000 + episode);
            let mut obs = self.envs[w].reset(seed);
            planner.reset();
            for _ in 0..max_len {
                let planned = planner.decide(model.as_mut(), &obs);
                let a = explored(planned, explore, na, &mut self.rng);
                let mut next = vec![0.0; obs.len()];
                model.predict(&obs, &[a], &mut next);
                states.extend_from_slice(&obs);
                actions.push(a);
                if self.task.terminal(&next) || actions.len() == total {
                    break;
                }
                obs = next;
            }
            episode += 1;
        }
        Ok(model.keep_dreams(w, &states, &actions)?)
    }

    /// Tests world `w` after `stage`, the model frozen: `eval_episodes` episodes (the same reset
    /// seeds after every stage); with `keep`, the last one's states for its GIF.
    fn test(
        &mut self,
        stage: usize,
        w: usize,
        keep: bool,
        on: &mut impl FnMut(LifeEvent<'_>),
    ) -> Result<(WorldTest, Vec<Vec<f64>>)> {
        self.enter(w)?;
        let episodes = self.eval_episodes;
        on(LifeEvent::Testing { world: w, episodes });
        let mut eps: Vec<Episode> = Vec::with_capacity(episodes);
        for i in 0..episodes {
            let seed = 1_000_000_000u64
                .wrapping_add(self.options.agent.seed.wrapping_mul(1_000))
                .wrapping_add((w * 100 + i) as u64);
            let opts = EpisodeOptions {
                keep_states: keep && self.options.agent.gif && i + 1 == episodes,
                ..Default::default()
            };
            let ep = self
                .agent
                .episode(self.envs[w].as_mut(), seed, &opts, |_| {
                    on(LifeEvent::TestStep)
                })?;
            eps.push(ep);
        }
        let evaluation = Evaluation::of(&eps);
        let component_errors = evaluation.held_out.relative_errors();
        let latencies = &evaluation.decision_seconds;
        let test = WorldTest {
            stage,
            world: w,
            episodes,
            mean_length: evaluation.mean_length,
            mean_return: evaluation.mean_return,
            error: pooled_error(&component_errors),
            component_errors,
            median_decision: median(latencies),
            p99_decision: percentile(latencies, 0.99),
            max_decision: latencies.iter().copied().fold(0.0, f64::max),
        };
        let states = eps.pop().map(|e| e.states).unwrap_or_default();
        Ok((test, states))
    }
}

/// Appends an episode's learning steps: its gate verdicts, and its scaled errors aligned to its
/// last steps (only a world's first two transitions have none, and they open its first
/// episode).
fn push_steps(steps: &mut Vec<LifeStep>, world: usize, ep: &Episode) {
    let missing = ep.steps - ep.errors.len();
    for (i, &learned) in ep.learned.iter().enumerate() {
        let error = match i.checked_sub(missing) {
            Some(k) => {
                // In f32, as steps.csv has always been written.
                let e = &ep.errors[k];
                (e.iter().map(|v| v * v).sum::<f32>() / e.len() as f32).sqrt()
            }
            None => f32::NAN,
        };
        steps.push(LifeStep {
            world,
            learned,
            error,
        });
    }
}

/// `matrix.csv`: a row per test (the stage learned, the world tested).
pub fn matrix_csv(outcome: &LifeOutcome) -> String {
    let mut text = String::from(
        "stage,learned,world,physics,episodes,mean_length,mean_return,one_step_error,median_decision_ms,p99_decision_ms,max_decision_ms\n",
    );
    for t in &outcome.tests {
        let learned: Vec<String> = outcome.stages[t.stage]
            .iter()
            .map(|w| (w + 1).to_string())
            .collect();
        text.push_str(&format!(
            "{},{},{},{},{},{:.2},{:.4},{:.6},{:.4},{:.4},{:.4}\n",
            t.stage + 1,
            learned.join("+"),
            t.world + 1,
            outcome.worlds[t.world].spec().replace(',', " "),
            t.episodes,
            t.mean_length,
            t.mean_return,
            t.error,
            1e3 * t.median_decision,
            1e3 * t.p99_decision,
            1e3 * t.max_decision,
        ));
    }
    text
}

/// `summary.json`: the worlds, the switches, the gate's shares in the first and last 500 steps
/// of each stage, the learning work and its seconds.
fn summary_json(o: &LifeOutcome, env: &str) -> String {
    let stages: Vec<serde_json::Value> = (0..o.stages.len())
        .map(|s| {
            let (first, last) = o.switch_shares(s);
            serde_json::json!({
                "worlds": o.stages[s].iter().map(|w| w + 1).collect::<Vec<_>>(),
                "steps": o.stage_steps(s).len(),
                "learned_first_500": first,
                "learned_last_500": last,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "env": env,
        "strategy": o.strategy.name(),
        "worlds": o.worlds.iter().map(Physics::spec).collect::<Vec<_>>(),
        "switches": o.switches,
        "stages": stages,
        "learned_share": o.learned_share(),
        "updates": o.updates,
        "learn_seconds": o.learn_seconds,
        "dream_seconds": o.dream_seconds,
    });
    format!("{summary:#}\n")
}

/// `steps.csv`: a row per learning step (the world, whether it learned, its scaled error).
fn steps_csv(outcome: &LifeOutcome) -> String {
    let mut text = String::from("step,world,learned,error\n");
    for (i, s) in outcome.steps.iter().enumerate() {
        text.push_str(&format!(
            "{},{},{},{:.6}\n",
            i + 1,
            s.world + 1,
            u8::from(s.learned),
            s.error
        ));
    }
    text
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}
