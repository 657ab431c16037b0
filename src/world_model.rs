//! An EqProp world model learned online: the clamped input is the observation and the action,
//! the output the change of the observation one step later.
//!
//! At every environment step the free phase makes the prediction, the real next observation is
//! the nudge target and the couplings move at once (a batch of one transition, no epochs). Three
//! options add to that batch, repeat it or thin it out: a small replay of recent transitions
//! (`replay` extra rows per step, drawn from the last `replay_capacity`), further updates on
//! replayed batches (`updates` EqProp updates per step in all: on the robot the data are scarce
//! and the compute is not), and the surprise gate of [`crate::modulator`] (a step learns only
//! when the new transition's prediction missed by more than a threshold).
//!
//! Told which world it is in (`contexts` one-hot input units), one model learns several worlds
//! of the same task; the long-term memory of the worlds it has left (their kept real
//! transitions, or its own dreams of them: [`WorldModel::keep_dreams`]) is rehearsed beside
//! the present world's experience (`rehearse` rows of every replayed batch), as
//! [`crate::agent::life`] does.
//!
//! Encoding (states live in `[0, 1]`): each observation component `v`, divided by its typical
//! magnitude, enters as the pair `(max(v, 0), max(-v, 0))`, so zero sits inside the hard
//! sigmoid's linear range and a linear function of `v` is exact; the action enters as two units
//! (CartPole: one-hot; Pendulum: the torque's positive and negative parts), then the one-hot
//! context of the world, when there are several. Each output unit reads
//! `0.5 + (delta - mean) / (span std)`, with the mean and standard deviation of that component's
//! change tracked online (Welford) in the first world (context 0) and kept for the others, so
//! small and large changes are learned alike and every world shares one scale.
//!
//! By default the network predicts every component's change: the robot learns all of its
//! physics, positions included. With `kinematic_prior` it predicts only the velocities' changes
//! and the positions follow from them by the integrator of the task (see [`Task::integrate`]):
//! known kinematics, given rather than learned.

use crate::config::{ConfigError, check_size};
use crate::dynamics::{Phase, Relaxation, State};
use crate::learning_rule::{
    Dynamics, Nudging, Particles, Verdicts, apply_update_scaled, gated_scales,
};
use crate::modulator::{Modulator, Mood, MoodState, row_surprise};
use crate::network::Network;
use crate::task::{Model, Task};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Settings of the world model and of its online learning.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldModelConfig {
    /// Hidden layer sizes (the input and output sizes follow from the task).
    pub hidden: Vec<usize>,
    /// The relaxation and nudge settings, shared with every EqProp learner.
    pub dynamics: Dynamics,
    /// One learning rate per coupling layer.
    pub lr: Vec<f32>,
    /// Replayed transitions learned beside the new one at every step (0: none).
    pub replay: usize,
    /// How many recent transitions the replay draws from.
    pub replay_capacity: usize,
    /// EqProp updates per environment step: the first learns the new transition (and its
    /// replay), each further one a batch of `replay + 1` replayed transitions.
    pub updates: usize,
    /// The surprise gate: a step learns only when the new transition's output cost (its
    /// prediction's, before learning) exceeds the threshold; then every row of its batches
    /// learns, and otherwise none (surprise decides when to learn).
    pub gate: Option<Modulator>,
    /// What the gate compares with its threshold: each step's own surprise (the default) or
    /// the mood, the surprise averaged over recent steps, with the threshold capped
    /// ([`Mood`]).
    pub mood: Mood,
    /// Whether the gate keeps one state (threshold, mood, expected mood) per world: the
    /// surprise it judges against is the one expected in the present world, and a world met
    /// for the first time starts as the first one did, from the initial threshold (every
    /// transition learns until the threshold has climbed to the new world's surprise). Off:
    /// one state for every world, the threshold a world climbed to carries into the next.
    /// Unused with fewer than two `contexts`.
    pub gate_per_world: bool,
    /// Worlds the model is told apart by a one-hot context input (0: no context input).
    pub contexts: usize,
    /// Rows of each replayed batch drawn from the long-term memory of the other worlds (their
    /// kept real transitions or the model's own dreams of them), once there is one (at most
    /// `replay`; unused with fewer than two `contexts`).
    pub rehearse: usize,
    /// The kinematic prior: predict only the velocities and integrate the positions by the
    /// task's known kinematics (off: every component is learned).
    pub kinematic_prior: bool,
    /// Standard deviations of a change that span the output unit's range `[0, 1]`.
    pub span: f32,
    pub seed: u64,
}

impl Default for WorldModelConfig {
    fn default() -> Self {
        Self {
            hidden: vec![128],
            dynamics: Dynamics {
                t_free: 20,
                t_nudge: 8,
                eps: 0.5,
                beta: 2.0,
                nudging: Nudging::Symmetric,
            },
            lr: vec![0.1, 0.05],
            replay: 16,
            replay_capacity: 2000,
            updates: 16,
            gate: None,
            mood: Mood::default(),
            gate_per_world: true,
            contexts: 0,
            rehearse: 12,
            kinematic_prior: false,
            span: 8.0,
            seed: 0,
        }
    }
}

impl WorldModelConfig {
    /// Checks every setting, naming the first bad one (as a [`ConfigError::WorldModel`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|e| ConfigError::WorldModel(Box::new(e)))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let range = |ok: bool, name, rule, got: String| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Described { name, rule, got })
            }
        };
        range(
            !self.hidden.is_empty() && self.hidden.iter().all(|&n| n > 0),
            "hidden",
            "one or more positive sizes",
            format!("{:?}", self.hidden),
        )?;
        range(
            self.span > 0.0 && self.span.is_finite(),
            "span",
            "positive",
            self.span.to_string(),
        )?;
        range(
            self.updates >= 1 && (self.updates == 1 || self.replay_capacity > 0),
            "updates",
            "at least 1, and 1 without a replay buffer",
            self.updates.to_string(),
        )?;
        range(
            self.replay == 0 || self.replay_capacity > 0,
            "replay_capacity",
            "positive when replaying",
            self.replay_capacity.to_string(),
        )?;
        // Only a model of several worlds rehearses.
        range(
            self.contexts <= 1 || self.rehearse <= self.replay,
            "rehearse",
            "at most replay with several worlds",
            self.rehearse.to_string(),
        )?;
        range(
            self.contexts <= 1 << 16,
            "contexts",
            "at most 65536",
            self.contexts.to_string(),
        )?;
        if self.lr.len() != self.hidden.len() + 1 {
            return Err(ConfigError::RateCount {
                count: self.lr.len(),
                layers: self.hidden.len() + 1,
            });
        }
        self.dynamics.validate(&self.lr)?;
        if let Some(gate) = &self.gate {
            gate.validate().map_err(|e| ConfigError::Described {
                name: "gate",
                rule: "valid",
                got: e.to_string(),
            })?;
        }
        self.mood.validate().map_err(|got| ConfigError::Described {
            name: "mood",
            rule: "a valid gate mood",
            got,
        })?;
        Ok(())
    }
}

/// One observed transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub obs: Vec<f32>,
    pub action: usize,
    pub next: Vec<f32>,
    /// The world it happened in (0 without contexts).
    pub context: usize,
}

/// A transition the model dreamed: its own free-phase output for an imagined state and action
/// in a world (the world whose memory holds it), kept as the target that world's rehearsal
/// learns towards.
#[derive(Clone, Debug, PartialEq)]
struct Dreamed {
    obs: Vec<f32>,
    action: usize,
    target: Vec<f32>,
}

/// A row of the long-term memory of a world.
#[derive(Clone, Debug, PartialEq)]
enum Kept {
    Real(Transition),
    Dream(Dreamed),
}

/// A row of a learning batch, borrowed from the buffer or the memory.
#[derive(Clone, Copy)]
enum Row<'a> {
    Real(&'a Transition),
    /// A dream and the world it is of.
    Dream(&'a Dreamed, usize),
}

impl<'a> Row<'a> {
    /// The row of a memory of world `context`.
    fn kept(kept: &'a Kept, context: usize) -> Self {
        match kept {
            Kept::Real(t) => Row::Real(t),
            Kept::Dream(d) => Row::Dream(d, context),
        }
    }
}

/// What one online learning step did.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnReport {
    /// The prediction error of the new transition before learning from it, per component: the
    /// error divided by the standard deviation of that component's change (1 is as bad as
    /// predicting the mean change), signed; empty before the statistics exist (the first two
    /// transitions).
    pub errors: Vec<f32>,
    /// Whether the new transition passed the gate (always, without a gate).
    pub learned: bool,
    /// Rows of the batch that learned (new and replayed).
    pub rows_learned: usize,
}

/// Running mean and variance (Welford).
#[derive(Clone, Debug, Default, PartialEq)]
struct Running {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Running {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// The standard deviation, floored so that the first samples do not blow the scale up.
    fn std(&self, floor: f64) -> f64 {
        if self.n < 2.0 {
            return floor.max(self.mean.abs());
        }
        (self.m2 / (self.n - 1.0)).sqrt().max(floor)
    }
}

/// The online EqProp world model.
pub struct WorldModel {
    task: Task,
    config: WorldModelConfig,
    net: Network,
    /// Observation components the network predicts.
    outputs: Vec<usize>,
    /// The world the model is in now (0 without contexts).
    context: usize,
    /// Statistics of every component's change, learned in the first world (context 0) and
    /// kept for the others.
    stats: Vec<Running>,
    /// Recent real transitions of the present world.
    buffer: VecDeque<Transition>,
    /// Long-term memory, per world: kept real transitions or dreams.
    memory: Vec<VecDeque<Kept>>,
    learner: Particles,
    /// Prediction buffers, one pair per batch size asked for.
    predictors: Vec<(State, Relaxation)>,
    rng: ChaCha8Rng,
    /// The gate's threshold, mood and expectation, per world (unused without a gate).
    gate_states: Vec<MoodState>,
    /// The gate's verdicts on the rows of the last batch.
    surprises: Vec<f32>,
    learns: Vec<bool>,
    learners: Vec<usize>,
    steps: usize,
    /// EqProp updates made so far (batches that learned).
    updates: usize,
}

impl WorldModel {
    /// A blank network (Glorot couplings, zero biases) for `task`.
    pub fn new(task: Task, config: WorldModelConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let outputs: Vec<usize> = if config.kinematic_prior {
            task.velocity_indices().to_vec()
        } else {
            (0..task.obs_dim()).collect()
        };
        let mut sizes = vec![2 * task.obs_dim() + 2 + config.contexts];
        sizes.extend(&config.hidden);
        sizes.push(outputs.len());
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x3070_D31F);
        let batch = config.replay.saturating_add(1);
        check_size(&sizes, batch).map_err(|e| {
            ConfigError::WorldModel(Box::new(ConfigError::Described {
                name: "hidden, replay",
                rule: "a network and replay batch that fit in memory",
                got: e.to_string(),
            }))
        })?;
        let net = Network::glorot(&sizes, &mut rng).expect("sizes are validated");
        let worlds = config.contexts.max(1);
        let gate_worlds = if config.gate_per_world { worlds } else { 1 };
        let gate_states = vec![MoodState::new(&config.gate.unwrap_or_default()); gate_worlds];
        Ok(Self {
            learner: Particles::new(&sizes, batch),
            stats: vec![Running::default(); task.obs_dim()],
            buffer: VecDeque::with_capacity(config.replay_capacity.min(1 << 16)),
            memory: vec![VecDeque::new(); worlds],
            predictors: Vec::new(),
            surprises: vec![0.0; batch],
            learns: vec![false; batch],
            learners: Vec::with_capacity(batch),
            task,
            config,
            net,
            outputs,
            context: 0,
            rng,
            gate_states,
            steps: 0,
            updates: 0,
        })
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The settings.
    pub fn config(&self) -> &WorldModelConfig {
        &self.config
    }

    /// Transitions learned from so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// EqProp updates made so far (each a free phase, a nudged phase and a coupling update of
    /// one batch), the learning work.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// The gate's current threshold (0 without a gate).
    pub fn threshold(&self) -> f32 {
        match self.config.gate {
            Some(_) => self.gate_state().threshold(&self.config.mood),
            None => 0.0,
        }
    }

    /// The world the model is in.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Tells the model which world it is in: the context input of its predictions and of the
    /// transitions it learns from next. An error past the configured `contexts`.
    pub fn set_context(&mut self, context: usize) -> Result<(), ConfigError> {
        if context >= self.config.contexts.max(1) {
            return Err(ConfigError::Described {
                name: "context",
                rule: "below the world model's contexts",
                got: format!("{context} (contexts: {})", self.config.contexts),
            });
        }
        self.context = context;
        Ok(())
    }

    /// The present world's recent real transitions are gone (the world changes); with
    /// `keep_real` they move to the long-term memory of their worlds first (the upper bound of
    /// rehearsal: at most `replay_capacity` per world, the newest kept).
    pub fn forget_recent(&mut self, keep_real: bool) {
        for t in self.buffer.drain(..) {
            if keep_real {
                let kept = &mut self.memory[t.context];
                if kept.len() == self.config.replay_capacity {
                    kept.pop_front();
                }
                kept.push_back(Kept::Real(t));
            }
        }
    }

    /// Dreams of world `context`: the model's own predictions for these imagined states
    /// (`obs`, one observation after another) and actions, in that world, are kept as its
    /// long-term memory (replacing what was kept of it). Later worlds rehearse them. An error
    /// for a world past the configured `contexts`, or states and actions that do not pair up.
    pub fn keep_dreams(
        &mut self,
        context: usize,
        obs: &[f32],
        actions: &[usize],
    ) -> Result<(), ConfigError> {
        let d = self.task.obs_dim();
        if obs.len() != actions.len() * d || actions.iter().any(|&a| a >= self.task.num_actions()) {
            return Err(ConfigError::Described {
                name: "dreams",
                rule: "one observation and one valid action per dreamed transition",
                got: format!("{} values for {} actions", obs.len(), actions.len()),
            });
        }
        let present = self.context;
        self.set_context(context)?;
        let state = self.relax_free(obs, actions);
        let kept: VecDeque<Kept> = actions
            .iter()
            .enumerate()
            .map(|(r, &action)| {
                Kept::Dream(Dreamed {
                    obs: obs[r * d..(r + 1) * d].to_vec(),
                    action,
                    target: state.0.output().row(r).to_vec(),
                })
            })
            .collect();
        self.release(state);
        self.memory[context] = kept;
        self.context = present;
        Ok(())
    }

    /// Rows kept in the long-term memory of world `context`.
    pub fn kept(&self, context: usize) -> usize {
        self.memory.get(context).map_or(0, VecDeque::len)
    }

    /// The standard deviation used to scale component `j`'s change.
    fn scale(&self, j: usize) -> f32 {
        self.stats[j].std(1e-6 * f64::from(self.task.obs_scale()[j])) as f32
    }

    /// Writes the input layer's row for `obs`, action `a` and world `context`.
    fn encode(&self, obs: &[f32], a: usize, context: usize, row: &mut [f32]) {
        let d = obs.len();
        for (i, (&v, &s)) in obs.iter().zip(self.task.obs_scale()).enumerate() {
            let v = v / s;
            row[2 * i] = v.clamp(0.0, 1.0);
            row[2 * i + 1] = (-v).clamp(0.0, 1.0);
        }
        let code = self.task.action_code(a);
        row[2 * d..2 * d + 2].copy_from_slice(&code);
        if self.config.contexts > 0 {
            let one_hot = &mut row[2 * d + 2..];
            one_hot.fill(0.0);
            one_hot[context] = 1.0;
        }
    }

    /// Output unit value of change `delta` of component `j`.
    fn target_of(&self, j: usize, delta: f32) -> f32 {
        let mean = self.stats[j].mean as f32;
        0.5 + (delta - mean) / (self.config.span * self.scale(j))
    }

    /// Change of component `j` that output value `y` stands for.
    fn delta_of(&self, j: usize, y: f32) -> f32 {
        self.stats[j].mean as f32 + (y - 0.5) * self.config.span * self.scale(j)
    }

    /// The next observation that the output row `y` stands for.
    fn decode(&self, obs: &[f32], y: &[f32], next: &mut [f32]) {
        if self.config.kinematic_prior {
            let mut velocities = [0.0f32; 4];
            for (k, (&j, &y)) in self.outputs.iter().zip(y).enumerate() {
                velocities[k] = obs[j] + self.delta_of(j, y);
            }
            self.task
                .integrate(obs, &velocities[..self.outputs.len()], next);
        } else {
            for (j, (&o, &y)) in obs.iter().zip(y).enumerate() {
                next[j] = o + self.delta_of(j, y);
            }
        }
    }

    /// The error of a prediction per component, in units of the standard deviation of that
    /// component's change: `(predicted_j - actual_j) / std(delta_j)` (see
    /// [`LearnReport::errors`]).
    pub fn scaled_errors(&self, predicted: &[f32], actual: &[f32]) -> Vec<f32> {
        (0..actual.len())
            .map(|j| (predicted[j] - actual[j]) / self.scale(j))
            .collect()
    }

    /// Learns from one transition in the present world (and, with replay, from recent ones
    /// and the long-term memory beside it). With the gate, a transition whose surprise (the
    /// output cost of the prediction, before learning) is at most the threshold learns nothing.
    pub fn learn(&mut self, obs: &[f32], action: usize, next: &[f32]) -> LearnReport {
        // The prediction before learning, with the statistics as they were.
        let buffers = self.relax_free(obs, &[action]);
        let y = buffers.0.output().row(0).to_vec();
        self.release(buffers);
        let mut predicted = vec![0.0; obs.len()];
        self.decode(obs, &y, &mut predicted);
        let have_stats = self.stats[0].n >= 2.0;
        // One scale for every world, so that what the worlds share (their kinematics) is one
        // mapping: the first world sets it.
        if self.context == 0 {
            for (j, s) in self.stats.iter_mut().enumerate() {
                s.push(f64::from(next[j] - obs[j]));
            }
        }
        let errors = if have_stats {
            self.scaled_errors(&predicted, next)
        } else {
            Vec::new()
        };
        let learned = match self.config.gate {
            Some(gate) => {
                let mut target = vec![0.0; self.outputs.len()];
                self.write_target(obs, next, &mut target);
                let surprise = row_surprise(&y, &target);
                let mood = self.config.mood;
                self.gate_state_mut().decide(&gate, &mood, surprise)
            }
            None => true,
        };
        let transition = Transition {
            obs: obs.to_vec(),
            action,
            next: next.to_vec(),
            context: self.context,
        };
        if self.config.replay_capacity > 0 {
            if self.buffer.len() == self.config.replay_capacity {
                self.buffer.pop_front();
            }
            self.buffer.push_back(transition.clone());
        }
        let mut rows_learned = 0;
        if learned {
            let remembered = self.remembered();
            rows_learned += self.learn_batch(Some(&transition), &remembered);
            for _ in 1..self.config.updates {
                rows_learned += self.learn_batch(None, &remembered);
            }
        }
        self.steps += 1;
        LearnReport {
            errors,
            learned,
            rows_learned,
        }
    }

    /// The gate's state in the present world (the one state, when it is shared).
    fn gate_state(&self) -> &MoodState {
        &self.gate_states[self.gate_world()]
    }

    fn gate_state_mut(&mut self) -> &mut MoodState {
        let world = self.gate_world();
        &mut self.gate_states[world]
    }

    /// Which of `gate_states` judges the present world.
    fn gate_world(&self) -> usize {
        if self.config.gate_per_world {
            self.context
        } else {
            0
        }
    }

    /// Worlds other than the present one that have a long-term memory.
    fn remembered(&self) -> Vec<usize> {
        (0..self.memory.len())
            .filter(|&c| c != self.context && !self.memory[c].is_empty())
            .collect()
    }

    /// The output row a real transition from `obs` to `next` is learned towards.
    fn write_target(&self, obs: &[f32], next: &[f32], target: &mut [f32]) {
        for (t, &j) in target.iter_mut().zip(&self.outputs) {
            *t = self.target_of(j, next[j] - obs[j]).clamp(0.0, 1.0);
        }
    }

    /// One EqProp update on a batch: the new transition (when given), then transitions drawn
    /// from the recent buffer, then (once other worlds are remembered: `remembered`) `rehearse`
    /// rows of their long-term memory, `replay + 1` rows in all. Returns the rows learned (all
    /// of them).
    fn learn_batch(&mut self, new: Option<&Transition>, remembered: &[usize]) -> usize {
        let batch = 1 + self.config.replay;
        let fresh = new.is_some();
        let rehearse = if remembered.is_empty() {
            0
        } else {
            self.config.rehearse
        };
        let drawn: Vec<usize> = (usize::from(fresh)..batch - rehearse)
            .map(|_| self.rng.random_range(0..self.buffer.len()))
            .collect();
        let recalled: Vec<Row<'_>> = (0..rehearse)
            .map(|_| {
                let c = remembered[self.rng.random_range(0..remembered.len())];
                Row::kept(
                    &self.memory[c][self.rng.random_range(0..self.memory[c].len())],
                    c,
                )
            })
            .collect();
        let rows = new
            .into_iter()
            .chain(drawn.iter().map(|&i| &self.buffer[i]))
            .map(Row::Real)
            .chain(recalled);
        let (width, n_out) = (self.net.sizes()[0], self.outputs.len());
        let mut inputs = vec![0.0; batch * width];
        let mut targets = vec![0.0; batch * n_out];
        for (r, row) in rows.enumerate() {
            let input = &mut inputs[r * width..(r + 1) * width];
            let target = &mut targets[r * n_out..(r + 1) * n_out];
            match row {
                Row::Real(t) => {
                    self.encode(&t.obs, t.action, t.context, input);
                    self.write_target(&t.obs, &t.next, target);
                }
                Row::Dream(d, context) => {
                    self.encode(&d.obs, d.action, context, input);
                    target.copy_from_slice(&d.target);
                }
            }
        }
        let learner = &mut self.learner;
        for r in 0..batch {
            learner
                .free
                .set_row(0, r, &inputs[r * width..(r + 1) * width]);
        }
        learner.target.as_mut_slice().copy_from_slice(&targets);
        // Every free phase starts from zero: the prediction must not depend on history.
        for layer in learner.free.layers.iter_mut().skip(1) {
            layer.fill(0.0);
        }
        let c = &self.config;
        let verdicts = Verdicts {
            surprise: &mut self.surprises,
            learns: &mut self.learns,
            learners: &mut self.learners,
        };
        // The gate decided before the batch whether this step learns: every row of it does.
        learner.eqprop_phases(
            &self.net,
            &c.dynamics,
            c.dynamics.beta,
            None,
            verdicts,
            |_| {},
        );
        if learner.learns {
            let (nudging, beta) = (c.dynamics.nudging, c.dynamics.beta);
            let learners = std::slice::from_mut(learner);
            let scale = gated_scales(&c.lr, learners, nudging, beta, c.gate.as_ref());
            apply_update_scaled(&mut self.net, &scale, learners, nudging, beta);
            self.updates += 1;
        }
        self.learners.len()
    }

    /// The free phase of a batch of observations and actions in the present world, from zero.
    fn relax_free(&mut self, obs: &[f32], actions: &[usize]) -> (State, Relaxation) {
        let d = self.task.obs_dim();
        let n = actions.len();
        let sizes = self.net.sizes().to_vec();
        let (mut state, mut relax) = match self.predictors.iter().position(|p| p.0.batch() == n) {
            Some(i) => self.predictors.swap_remove(i),
            None => (State::zeros(&sizes, n), Relaxation::new(&sizes, n)),
        };
        let mut input = vec![0.0; sizes[0]];
        for (r, &a) in actions.iter().enumerate() {
            self.encode(&obs[r * d..(r + 1) * d], a, self.context, &mut input);
            state.set_row(0, r, &input);
        }
        for layer in state.layers.iter_mut().skip(1) {
            layer.fill(0.0);
        }
        let clamped: Vec<bool> = (0..sizes.len()).map(|k| k == 0).collect();
        relax.prepare(&self.net, &state, &clamped);
        relax.relax(
            &self.net,
            &mut state,
            &Phase::free(self.config.dynamics.t_free, self.config.dynamics.eps),
        );
        (state, relax)
    }

    /// Hands a relaxation's buffers back for the next batch of the same size.
    fn release(&mut self, buffers: (State, Relaxation)) {
        self.predictors.push(buffers);
    }
}

impl Model for WorldModel {
    fn predict(&mut self, obs: &[f32], actions: &[usize], next: &mut [f32]) {
        let d = self.task.obs_dim();
        let buffers = self.relax_free(obs, actions);
        for r in 0..actions.len() {
            self.decode(
                &obs[r * d..(r + 1) * d],
                buffers.0.output().row(r),
                &mut next[r * d..(r + 1) * d],
            );
        }
        self.release(buffers);
    }
}
