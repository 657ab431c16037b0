//! An EqProp world model learned online: the clamped input is the observation and the action,
//! the output the change of the observation one step later.
//!
//! At every environment step the free phase makes the prediction, the real next observation is
//! the nudge target and the couplings move at once (a batch of one transition, no epochs). Three
//! options add to that batch, repeat it or thin it out: a small replay of recent transitions
//! (`replay` extra rows per step, drawn from the last `replay_capacity`), further updates on
//! replayed batches (`updates` EqProp updates per step in all: on the robot the data are scarce
//! and the compute is not), and the surprise gate of [`crate::modulator`] (a row learns only
//! when its prediction missed by more than a threshold).
//!
//! Encoding (states live in `[0, 1]`): each observation component `v`, divided by its typical
//! magnitude, enters as the pair `(max(v, 0), max(-v, 0))`, so zero sits inside the hard
//! sigmoid's linear range and a linear function of `v` is exact; the action enters as two units
//! (CartPole: one-hot; Pendulum: the torque's positive and negative parts). Each output unit
//! reads `0.5 + (delta - mean) / (span std)`, with the mean and standard deviation of that
//! component's change tracked online (Welford), so small and large changes are learned alike.
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
use crate::modulator::Modulator;
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
    /// The surprise gate: a row learns only when its output cost exceeds the threshold.
    pub gate: Option<Modulator>,
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
        Ok(())
    }
}

/// One observed transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub obs: Vec<f32>,
    pub action: usize,
    pub next: Vec<f32>,
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
    /// Statistics of every component's change.
    stats: Vec<Running>,
    buffer: VecDeque<Transition>,
    learner: Particles,
    /// Prediction buffers, one pair per batch size asked for.
    predictors: Vec<(State, Relaxation)>,
    rng: ChaCha8Rng,
    threshold: f32,
    /// The gate's verdicts on the rows of the last batch.
    surprises: Vec<f32>,
    learns: Vec<bool>,
    learners: Vec<usize>,
    steps: usize,
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
        let mut sizes = vec![2 * task.obs_dim() + 2];
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
        let threshold = config.gate.map_or(0.0, |g| g.initial_threshold());
        Ok(Self {
            learner: Particles::new(&sizes, batch),
            stats: vec![Running::default(); task.obs_dim()],
            buffer: VecDeque::with_capacity(config.replay_capacity.min(1 << 16)),
            predictors: Vec::new(),
            surprises: vec![0.0; batch],
            learns: vec![false; batch],
            learners: Vec::with_capacity(batch),
            task,
            config,
            net,
            outputs,
            rng,
            threshold,
            steps: 0,
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

    /// The gate's current threshold (0 without a gate).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The standard deviation used to scale component `j`'s change.
    fn scale(&self, j: usize) -> f32 {
        self.stats[j].std(1e-6 * f64::from(self.task.obs_scale()[j])) as f32
    }

    /// Writes the input layer's row for `obs` and action `a`.
    fn encode(&self, obs: &[f32], a: usize, row: &mut [f32]) {
        for (i, (&v, &s)) in obs.iter().zip(self.task.obs_scale()).enumerate() {
            let v = v / s;
            row[2 * i] = v.clamp(0.0, 1.0);
            row[2 * i + 1] = (-v).clamp(0.0, 1.0);
        }
        let n = row.len();
        let code = self.task.action_code(a);
        row[n - 2..].copy_from_slice(&code);
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

    /// Learns from one transition (and, with replay, from recent ones beside it).
    pub fn learn(&mut self, obs: &[f32], action: usize, next: &[f32]) -> LearnReport {
        // The prediction before learning, with the statistics as they were.
        let mut predicted = vec![0.0; obs.len()];
        self.predict(obs, &[action], &mut predicted);
        let have_stats = self.stats[0].n >= 2.0;
        for (j, s) in self.stats.iter_mut().enumerate() {
            s.push(f64::from(next[j] - obs[j]));
        }
        let errors = if have_stats {
            self.scaled_errors(&predicted, next)
        } else {
            Vec::new()
        };
        let transition = Transition {
            obs: obs.to_vec(),
            action,
            next: next.to_vec(),
        };
        if self.config.replay_capacity > 0 {
            if self.buffer.len() == self.config.replay_capacity {
                self.buffer.pop_front();
            }
            self.buffer.push_back(transition.clone());
        }
        let (learned, mut rows_learned) = self.learn_batch(Some(&transition));
        for _ in 1..self.config.updates {
            rows_learned += self.learn_batch(None).1;
        }
        self.steps += 1;
        LearnReport {
            errors,
            learned,
            rows_learned,
        }
    }

    /// One EqProp update on a batch: the new transition (when given) and `replay` transitions
    /// drawn from the buffer (`replay + 1` of them without a new one). Returns whether the new
    /// transition passed the gate and how many rows learned.
    fn learn_batch(&mut self, new: Option<&Transition>) -> (bool, usize) {
        let batch = 1 + self.config.replay;
        let fresh = new.is_some();
        let drawn: Vec<usize> = (usize::from(fresh)..batch)
            .map(|_| self.rng.random_range(0..self.buffer.len()))
            .collect();
        let rows: Vec<&Transition> = new
            .into_iter()
            .chain(drawn.iter().map(|&i| &self.buffer[i]))
            .collect();
        let width = self.net.sizes()[0];
        let mut inputs = vec![0.0; batch * width];
        let mut targets = vec![0.0; batch * self.outputs.len()];
        for (r, t) in rows.iter().enumerate() {
            self.encode(&t.obs, t.action, &mut inputs[r * width..(r + 1) * width]);
            for (k, &j) in self.outputs.iter().enumerate() {
                targets[r * self.outputs.len() + k] =
                    self.target_of(j, t.next[j] - t.obs[j]).clamp(0.0, 1.0);
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
        let threshold = c.gate.map(|_| self.threshold);
        learner.eqprop_phases(
            &self.net,
            &c.dynamics,
            c.dynamics.beta,
            threshold,
            verdicts,
            |_| {},
        );
        if let (Some(gate), true) = (&c.gate, fresh) {
            // The threshold follows the new transitions only, not the replayed ones.
            self.threshold = gate.adapt(self.threshold, &self.surprises[..1]);
        }
        let learned = fresh && self.learners.first() == Some(&0);
        if learner.learns {
            let (nudging, beta) = (c.dynamics.nudging, c.dynamics.beta);
            let learners = std::slice::from_mut(learner);
            let scale = gated_scales(&c.lr, learners, nudging, beta, c.gate.as_ref());
            apply_update_scaled(&mut self.net, &scale, learners, nudging, beta);
        }
        (learned, self.learners.len())
    }
}

impl Model for WorldModel {
    fn predict(&mut self, obs: &[f32], actions: &[usize], next: &mut [f32]) {
        let d = self.task.obs_dim();
        let n = actions.len();
        let sizes = self.net.sizes().to_vec();
        let (mut state, mut relax) = match self.predictors.iter().position(|p| p.0.batch() == n) {
            Some(i) => self.predictors.swap_remove(i),
            None => (State::zeros(&sizes, n), Relaxation::new(&sizes, n)),
        };
        let mut input = vec![0.0; sizes[0]];
        for (r, &a) in actions.iter().enumerate() {
            self.encode(&obs[r * d..(r + 1) * d], a, &mut input);
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
        for r in 0..n {
            self.decode(
                &obs[r * d..(r + 1) * d],
                state.output().row(r),
                &mut next[r * d..(r + 1) * d],
            );
        }
        self.predictors.push((state, relax));
    }
}
