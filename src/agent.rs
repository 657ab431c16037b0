//! The robot: a planner that imagines the futures of its candidate actions with a world model
//! and acts on the one whose imagined future costs least (active inference by model-predictive
//! control).
//!
//! Before each action the [`Planner`] rolls a model forward over `horizon` steps for a batch of
//! candidate action sequences, scores every imagined future by the goal's cost ([`Task`]: pole
//! upright and cart centred; pendulum upright and still) and takes the first action of the
//! cheapest. The model is the online EqProp [`WorldModel`], the
//! true simulator ([`TrueModel`], the ceiling), or none (the random policy).

use crate::env::{Env, EnvError, Pendulum, Physics};
pub use crate::task::{Model, Task};
use crate::world_model::WorldModel;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

mod experiment;
pub mod life;

pub use experiment::{
    EXPLORE, EpisodeRecord, Event, Experiment, ExperimentOptions, ModelKind, Outcome,
    ROLLOUT_STEPS, Rollout, Stage, Summary,
};

/// The simulator itself as the model (the planner's ceiling), with the physics of one world.
#[derive(Clone, Debug)]
pub struct TrueModel {
    task: Task,
    physics: Physics,
}

impl TrueModel {
    /// The model of `task` with Gymnasium's own physics.
    pub fn new(task: Task) -> Self {
        let physics = match task {
            Task::CartPole => Physics::CartPole(Default::default()),
            Task::Pendulum { .. } => Physics::Pendulum(Default::default()),
        };
        Self { task, physics }
    }

    /// The model of a changed world; an error when the physics is another environment's.
    pub fn with_physics(task: Task, physics: Physics) -> Result<Self, EnvError> {
        match (&task, &physics) {
            (Task::CartPole, Physics::CartPole(_))
            | (Task::Pendulum { .. }, Physics::Pendulum(_)) => Ok(Self { task, physics }),
            _ => Err(EnvError::BadWorld {
                world: physics.spec(),
                reason: format!("not a world of {task:?}"),
            }),
        }
    }
}

impl Model for TrueModel {
    fn predict(&mut self, obs: &[f32], actions: &[usize], next: &mut [f32]) {
        let d = self.task.obs_dim();
        for (r, &a) in actions.iter().enumerate() {
            let o = &obs[r * d..(r + 1) * d];
            let out = &mut next[r * d..(r + 1) * d];
            match (&self.task, &self.physics) {
                (Task::CartPole, Physics::CartPole(p)) => {
                    let s = std::array::from_fn(|i| f64::from(o[i]));
                    for (x, v) in out.iter_mut().zip(p.dynamics(s, a == 1)) {
                        *x = v as f32;
                    }
                }
                (Task::Pendulum { torques }, Physics::Pendulum(p)) => {
                    let th = f64::from(o[1]).atan2(f64::from(o[0]));
                    let u = Pendulum::clip_torque(torques[a]);
                    let ([th, thdot], _) = p.dynamics([th, f64::from(o[2])], u);
                    out[0] = th.cos() as f32;
                    out[1] = th.sin() as f32;
                    out[2] = thdot as f32;
                }
                _ => unreachable!("the constructors pair a task with its own physics"),
            }
        }
    }
}

/// How the planner searches the action sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Search {
    /// Random shooting: `samples` uniformly random sequences plus the last plan shifted by one.
    Shooting,
    /// The cross-entropy method: `iterations` rounds of sampling from per-step action
    /// distributions refitted to the best tenth.
    Cem,
}

/// Settings of the planner.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerConfig {
    /// Steps imagined ahead.
    pub horizon: usize,
    /// Sequences imagined per round.
    pub samples: usize,
    pub search: Search,
    /// CEM rounds.
    pub iterations: usize,
    pub seed: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            horizon: 20,
            samples: 32,
            search: Search::Shooting,
            iterations: 3,
            seed: 0,
        }
    }
}

/// Model-predictive control by imagined rollouts.
#[derive(Clone, Debug)]
pub struct Planner {
    task: Task,
    config: PlannerConfig,
    rng: ChaCha8Rng,
    /// The best sequence of the last decision (warm start of the next).
    plan: Vec<usize>,
    /// Scratch: sequences (`samples x horizon`), states, actions, costs.
    seqs: Vec<usize>,
    obs: Vec<f32>,
    next: Vec<f32>,
    actions: Vec<usize>,
    costs: Vec<f32>,
    alive: Vec<bool>,
}

impl Planner {
    pub fn new(task: Task, config: PlannerConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x091A_77E5);
        Self {
            task,
            config,
            rng,
            plan: Vec::new(),
            seqs: Vec::new(),
            obs: Vec::new(),
            next: Vec::new(),
            actions: Vec::new(),
            costs: Vec::new(),
            alive: Vec::new(),
        }
    }

    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Forgets the last plan (call at the start of an episode).
    pub fn reset(&mut self) {
        self.plan.clear();
    }

    /// The candidate to take in `obs`: the first action of the cheapest imagined sequence.
    pub fn decide(&mut self, model: &mut dyn Model, obs: &[f32]) -> usize {
        let (h, n, na) = (
            self.config.horizon.max(1),
            self.config.samples.max(1),
            self.task.num_actions(),
        );
        let mut warm: Vec<usize> = if self.plan.len() == h {
            self.plan[1..].to_vec()
        } else {
            Vec::new()
        };
        while warm.len() < h {
            warm.push(self.rng.random_range(0..na));
        }
        self.seqs.resize(n * h, 0);
        let best = match self.config.search {
            Search::Shooting => {
                self.seqs[..h].copy_from_slice(&warm);
                for x in &mut self.seqs[h..] {
                    *x = self.rng.random_range(0..na);
                }
                self.rollout(model, obs, n, h);
                let i = argmin(&self.costs);
                self.seqs[i * h..(i + 1) * h].to_vec()
            }
            Search::Cem => self.cem(model, obs, warm, n, h, na),
        };
        let first = best[0];
        self.plan = best;
        first
    }

    /// Discrete CEM: per-step categorical distributions, refitted to the elite tenth each round
    /// (smoothed half-and-half with the old ones); the best sequence seen wins.
    fn cem(
        &mut self,
        model: &mut dyn Model,
        obs: &[f32],
        warm: Vec<usize>,
        n: usize,
        h: usize,
        na: usize,
    ) -> Vec<usize> {
        let mut probs = vec![1.0 / na as f32; h * na];
        let (mut best, mut best_cost) = (warm, f32::INFINITY);
        let elites = (n / 10).max(1);
        for _ in 0..self.config.iterations.max(1) {
            self.seqs[..h].copy_from_slice(&best);
            for r in 1..n {
                for t in 0..h {
                    let p = &probs[t * na..(t + 1) * na];
                    let mut u: f32 = self.rng.random();
                    let mut a = na - 1;
                    for (k, &pk) in p.iter().enumerate() {
                        if u < pk {
                            a = k;
                            break;
                        }
                        u -= pk;
                    }
                    self.seqs[r * h + t] = a;
                }
            }
            self.rollout(model, obs, n, h);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| self.costs[a].total_cmp(&self.costs[b]));
            if self.costs[order[0]] < best_cost {
                best_cost = self.costs[order[0]];
                best = self.seqs[order[0] * h..(order[0] + 1) * h].to_vec();
            }
            for p in probs.iter_mut() {
                *p *= 0.5;
            }
            for &e in &order[..elites] {
                for t in 0..h {
                    probs[t * na + self.seqs[e * h + t]] += 0.5 / elites as f32;
                }
            }
        }
        best
    }

    /// Imagines every sequence in `seqs` from `obs`; the cost of each lands in `costs`.
    fn rollout(&mut self, model: &mut dyn Model, obs: &[f32], n: usize, h: usize) {
        let d = self.task.obs_dim();
        self.obs.clear();
        for _ in 0..n {
            self.obs.extend_from_slice(obs);
        }
        self.next.resize(n * d, 0.0);
        self.costs.clear();
        self.costs.resize(n, 0.0);
        self.alive.clear();
        self.alive.resize(n, true);
        for t in 0..h {
            self.actions.clear();
            self.actions.extend((0..n).map(|r| self.seqs[r * h + t]));
            model.predict(&self.obs, &self.actions, &mut self.next);
            for r in 0..n {
                if !self.alive[r] {
                    self.costs[r] += self.task.terminal_cost();
                    continue;
                }
                let o = &self.next[r * d..(r + 1) * d];
                if self.task.terminal(o) {
                    self.alive[r] = false;
                    self.costs[r] += self.task.terminal_cost();
                } else {
                    self.costs[r] += self.task.step_cost(o, self.actions[r]);
                }
            }
            std::mem::swap(&mut self.obs, &mut self.next);
        }
    }
}

fn argmin(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v < values[best] {
            best = i;
        }
    }
    best
}

/// The model's imagined observations from `start` under `actions`, each step fed its own last
/// prediction: `start` first, then one observation per action (no learning, no real frames).
pub fn imagine(model: &mut dyn Model, start: &[f32], actions: &[usize]) -> Vec<Vec<f32>> {
    let mut path = vec![start.to_vec()];
    for &a in actions {
        let mut next = vec![0.0; start.len()];
        model.predict(path.last().expect("starts with start"), &[a], &mut next);
        path.push(next);
    }
    path
}

/// Who decides.
pub enum Brain {
    /// Uniformly random candidates.
    Random,
    /// The planner with the true simulator.
    True(Planner, TrueModel),
    /// The planner with the online EqProp world model.
    EqProp(Planner, Box<WorldModel>),
}

/// What one episode gave.
#[derive(Clone, Debug, Default)]
pub struct Episode {
    pub steps: usize,
    pub ret: f64,
    /// The world model's scaled one-step error over the episode: per component the RMS over
    /// the steps, then the RMS over the components (NaN without a model).
    pub pred_error: f64,
    /// Each step's scaled one-step errors, one per component (none without a model, nor for
    /// the first two transitions a model learns from).
    pub errors: Vec<Vec<f32>>,
    /// The frozen model's raw errors and the real changes (episodes that do not learn): for
    /// the error in units of these held-out transitions' own spread.
    pub held_out: HeldOut,
    /// Whether each step's transition passed the surprise gate (learning episodes).
    pub learned: Vec<bool>,
    /// Seconds each decision took, planning included.
    pub decision_seconds: Vec<f64>,
    /// Seconds spent learning.
    pub learn_seconds: f64,
    /// The float64 states, the initial one first (when asked for).
    pub states: Vec<Vec<f64>>,
    /// The episode was stopped by `max_steps` before it ended.
    pub cut: bool,
}

impl Episode {
    /// Steps whose transition passed the surprise gate (learning episodes).
    pub fn learned_steps(&self) -> usize {
        self.learned.iter().filter(|&&l| l).count()
    }

    /// Share of steps whose transition passed the surprise gate (learning episodes).
    pub fn learned_share(&self) -> f64 {
        self.learned_steps() as f64 / self.steps as f64
    }
}

/// Frozen episodes taken together: their mean length and return, their held-out errors and
/// every decision's seconds.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub episodes: usize,
    pub mean_length: f64,
    pub mean_return: f64,
    pub held_out: HeldOut,
    pub decision_seconds: Vec<f64>,
}

impl Evaluation {
    /// The evaluation of `episodes` (means over at least one).
    pub fn of<'a>(episodes: impl IntoIterator<Item = &'a Episode>) -> Self {
        let mut e = Evaluation::default();
        let (mut length, mut ret) = (0.0, 0.0);
        for ep in episodes {
            e.episodes += 1;
            length += ep.steps as f64;
            ret += ep.ret;
            e.held_out.merge(&ep.held_out);
            e.decision_seconds.extend_from_slice(&ep.decision_seconds);
        }
        let n = e.episodes.max(1) as f64;
        (e.mean_length, e.mean_return) = (length / n, ret / n);
        e
    }
}

/// The action taken: `planned`, or with probability `explore` a uniformly random one of
/// `actions` (no draw at all without exploration).
pub(crate) fn explored(
    planned: usize,
    explore: f64,
    actions: usize,
    rng: &mut impl rand::Rng,
) -> usize {
    if explore > 0.0 && rng.random::<f64>() < explore {
        rng.random_range(0..actions)
    } else {
        planned
    }
}

/// Per component, sums over held-out transitions of the squared raw error of the prediction
/// and of the real change and its square.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeldOut {
    pub sq_error: Vec<f64>,
    pub change: Vec<f64>,
    pub sq_change: Vec<f64>,
    pub count: usize,
}

impl HeldOut {
    fn push(&mut self, obs: &[f32], predicted: &[f32], next: &[f32]) {
        let d = obs.len();
        for v in [&mut self.sq_error, &mut self.change, &mut self.sq_change] {
            v.resize(d, 0.0);
        }
        for j in 0..d {
            let e = f64::from(predicted[j]) - f64::from(next[j]);
            let c = f64::from(next[j]) - f64::from(obs[j]);
            self.sq_error[j] += e * e;
            self.change[j] += c;
            self.sq_change[j] += c * c;
        }
        self.count += 1;
    }

    /// Adds another episode's sums.
    pub fn merge(&mut self, other: &HeldOut) {
        for (mine, theirs) in [
            (&mut self.sq_error, &other.sq_error),
            (&mut self.change, &other.change),
            (&mut self.sq_change, &other.sq_change),
        ] {
            mine.resize(theirs.len().max(mine.len()), 0.0);
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        self.count += other.count;
    }

    /// Per component, the RMS error over the standard deviation of the real change, both
    /// over these transitions (empty when there are fewer than two).
    pub fn relative_errors(&self) -> Vec<f64> {
        if self.count < 2 {
            return Vec::new();
        }
        let n = self.count as f64;
        (0..self.sq_error.len())
            .map(|j| {
                let mean = self.change[j] / n;
                let var = (self.sq_change[j] - n * mean * mean) / (n - 1.0);
                (self.sq_error[j] / n).sqrt() / var.max(0.0).sqrt()
            })
            .collect()
    }
}

/// Per component, the RMS of the scaled errors of `steps` (each one error per component;
/// empty for no steps).
pub fn component_errors<'a>(steps: impl IntoIterator<Item = &'a Vec<f32>>) -> Vec<f64> {
    let (mut sums, mut n) = (Vec::new(), 0usize);
    for step in steps {
        sums.resize(step.len(), 0.0);
        for (sum, &e) in sums.iter_mut().zip(step) {
            *sum += f64::from(e) * f64::from(e);
        }
        n += 1;
    }
    sums.iter().map(|s: &f64| (s / n as f64).sqrt()).collect()
}

/// The RMS over components of per-component RMS errors (NaN when there are none).
pub fn pooled_error(errors: &[f64]) -> f64 {
    if errors.is_empty() {
        return f64::NAN;
    }
    (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt()
}

/// How an episode runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpisodeOptions {
    /// The world model learns online.
    pub learn: bool,
    /// Record the states (for a GIF).
    pub keep_states: bool,
    /// Probability of replacing the planned action by a random one.
    pub explore: f64,
    /// Stop after this many steps even if the episode goes on.
    pub max_steps: usize,
}

impl Default for EpisodeOptions {
    /// Acting only: no learning, no exploration, no states kept, the environment's own end.
    fn default() -> Self {
        Self {
            learn: false,
            keep_states: false,
            explore: 0.0,
            max_steps: usize::MAX,
        }
    }
}

/// The robot: a task, a brain, and the random stream of its random choices.
pub struct Agent {
    pub task: Task,
    pub brain: Brain,
    rng: ChaCha8Rng,
}

impl Agent {
    pub fn new(task: Task, brain: Brain, seed: u64) -> Self {
        Self {
            task,
            brain,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xA6E7_0000_0001),
        }
    }

    /// The candidate to take in `obs`.
    pub fn act(&mut self, obs: &[f32]) -> usize {
        match &mut self.brain {
            Brain::Random => self.rng.random_range(0..self.task.num_actions()),
            Brain::True(planner, model) => planner.decide(model, obs),
            Brain::EqProp(planner, model) => planner.decide(model.as_mut(), obs),
        }
    }

    /// Runs one episode from `env.reset(seed)`, until it ends or `opts.max_steps` steps; with
    /// `opts.learn`, the world model learns from every transition as it happens. `on_step` sees
    /// the steps taken so far.
    pub fn episode(
        &mut self,
        env: &mut dyn Env,
        seed: u64,
        opts: &EpisodeOptions,
        mut on_step: impl FnMut(usize),
    ) -> Result<Episode, EnvError> {
        let EpisodeOptions {
            learn,
            keep_states,
            explore,
            max_steps,
        } = *opts;
        let mut obs = env.reset(seed);
        match &mut self.brain {
            Brain::Random => {}
            Brain::True(p, _) | Brain::EqProp(p, _) => p.reset(),
        }
        let mut ep = Episode::default();
        if keep_states {
            ep.states.push(env.state());
        }
        let mut predicted = vec![0.0; obs.len()];
        loop {
            let start = Instant::now();
            let planned = self.act(&obs);
            ep.decision_seconds.push(start.elapsed().as_secs_f64());
            let a = explored(planned, explore, self.task.num_actions(), &mut self.rng);
            let step = env.step(&self.task.env_action(a))?;
            if let Brain::EqProp(_, model) = &mut self.brain {
                if learn {
                    let start = Instant::now();
                    let report = model.learn(&obs, a, &step.obs);
                    ep.learn_seconds += start.elapsed().as_secs_f64();
                    ep.learned.push(report.learned);
                    if !report.errors.is_empty() {
                        ep.errors.push(report.errors);
                    }
                } else {
                    model.predict(&obs, &[a], &mut predicted);
                    ep.errors.push(model.scaled_errors(&predicted, &step.obs));
                    ep.held_out.push(&obs, &predicted, &step.obs);
                }
            }
            ep.steps += 1;
            ep.ret += step.reward;
            if keep_states {
                ep.states.push(env.state());
            }
            on_step(ep.steps);
            obs = step.obs;
            if step.terminated || step.truncated {
                break;
            }
            if ep.steps >= max_steps {
                ep.cut = true;
                break;
            }
        }
        ep.pred_error = pooled_error(&component_errors(&ep.errors));
        Ok(ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::pendulum::angle_normalize;

    #[test]
    fn true_model_matches_the_environment() {
        let task = Task::from_env_id("pendulum-v1").unwrap();
        let mut env = Pendulum::new();
        let obs = env.reset(4);
        let step = env.step(&task.env_action(4)).unwrap();
        let mut next = vec![0.0; 3];
        TrueModel::new(task).predict(&obs, &[4], &mut next);
        for (a, b) in next.iter().zip(&step.obs) {
            assert!((a - b).abs() < 1e-5, "{next:?} vs {:?}", step.obs);
        }
    }

    #[test]
    fn pendulum_cost_is_gymnasiums() {
        let task = Task::from_env_id("pendulum-v1").unwrap();
        let th = 2.5f64;
        let obs = [th.cos() as f32, th.sin() as f32, 1.5];
        let want = angle_normalize(th).powi(2) + 0.1 * 1.5 * 1.5 + 0.001 * 4.0;
        assert!((f64::from(task.step_cost(&obs, 0)) - want).abs() < 1e-5);
    }
}
