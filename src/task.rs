//! What the robot faces ([`Task`]: observations, candidate actions, the goal's cost) and what a
//! model of it does ([`Model`]: predict the next observations).
//!
//! The planner ([`crate::agent`]) and the world model ([`crate::world_model`]) both build on
//! these, so they live below both.

use crate::env::{Action, EnvError};

/// CartPole's time step.
const CARTPOLE_TAU: f32 = 0.02;
/// Pendulum's time step.
const PENDULUM_DT: f32 = 0.05;
/// CartPole's termination bounds on the cart position and the pole angle.
const X_LIMIT: f32 = 2.4;
const THETA_LIMIT: f32 = 0.209_439_5;

/// What the robot faces: the environment's observation layout, the candidate actions, and the
/// goal's cost.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// `CartPole-v1`: push left (0) or right (1); keep the pole upright and the cart centred.
    CartPole,
    /// `Pendulum-v1` with a discretised torque set; swing up and hold upright and still.
    Pendulum { torques: Vec<f32> },
}

impl Task {
    /// The task of a Gymnasium id (`cartpole-v1`, `pendulum-v1`); Pendulum's torques are
    /// `-2, -1, 0, 1, 2`.
    pub fn from_env_id(id: &str) -> Result<Self, EnvError> {
        match id.to_ascii_lowercase().as_str() {
            "cartpole-v1" | "cartpole" => Ok(Task::CartPole),
            "pendulum-v1" | "pendulum" => Ok(Task::Pendulum {
                torques: vec![-2.0, -1.0, 0.0, 1.0, 2.0],
            }),
            _ => Err(EnvError::UnknownEnv(id.to_string())),
        }
    }

    /// Observation components.
    pub fn obs_dim(&self) -> usize {
        match self {
            Task::CartPole => 4,
            Task::Pendulum { .. } => 3,
        }
    }

    /// Typical magnitude of each observation component (the bounds of the observation space,
    /// and 3 for CartPole's unbounded velocities): the model's input scale.
    pub fn obs_scale(&self) -> &'static [f32] {
        match self {
            Task::CartPole => &[X_LIMIT, 1.5, THETA_LIMIT, 1.5],
            Task::Pendulum { .. } => &[1.0, 1.0, 8.0],
        }
    }

    /// The observation's components, as Gymnasium names them.
    pub fn component_names(&self) -> &'static [&'static str] {
        match self {
            Task::CartPole => &["x", "x_dot", "theta", "theta_dot"],
            Task::Pendulum { .. } => &["cos(theta)", "sin(theta)", "theta_dot"],
        }
    }

    /// The environment state an observation shows, for drawing it: CartPole's observation is
    /// its state; Pendulum's `(cos, sin, thdot)` is the state `(atan2(sin, cos), thdot)`.
    pub fn render_state(&self, obs: &[f32]) -> Vec<f64> {
        match self {
            Task::CartPole => obs.iter().map(|&v| f64::from(v)).collect(),
            Task::Pendulum { .. } => vec![
                f64::from(obs[1]).atan2(f64::from(obs[0])),
                f64::from(obs[2]),
            ],
        }
    }

    /// Components that are velocities (the others follow from them by [`Task::integrate`]).
    pub fn velocity_indices(&self) -> &'static [usize] {
        match self {
            Task::CartPole => &[1, 3],
            Task::Pendulum { .. } => &[2],
        }
    }

    /// Number of candidate actions.
    pub fn num_actions(&self) -> usize {
        match self {
            Task::CartPole => 2,
            Task::Pendulum { torques } => torques.len(),
        }
    }

    /// The environment action of candidate `a`.
    pub fn env_action(&self, a: usize) -> Action {
        match self {
            Task::CartPole => Action::Discrete(a as i64),
            Task::Pendulum { torques } => Action::Continuous(vec![torques[a]]),
        }
    }

    /// The torque of candidate `a` (0 for CartPole).
    fn torque(&self, a: usize) -> f32 {
        match self {
            Task::CartPole => 0.0,
            Task::Pendulum { torques } => torques[a],
        }
    }

    /// Two input units for candidate `a`: CartPole one-hot; Pendulum the positive and negative
    /// parts of the torque over its bound.
    pub fn action_code(&self, a: usize) -> [f32; 2] {
        match self {
            Task::CartPole => [(1 - a.min(1)) as f32, a.min(1) as f32],
            Task::Pendulum { torques } => {
                let u = torques[a] / 2.0;
                [u.max(0.0), (-u).max(0.0)]
            }
        }
    }

    /// Whether the observation ends the episode (CartPole's bounds; Pendulum never).
    pub fn terminal(&self, obs: &[f32]) -> bool {
        match self {
            Task::CartPole => obs[0].abs() > X_LIMIT || obs[2].abs() > THETA_LIMIT,
            Task::Pendulum { .. } => false,
        }
    }

    /// The goal's cost of arriving at `obs` by candidate `a`.
    ///
    /// CartPole: `(theta / theta_max)^2 + 0.1 (x / x_max)^2`, at most 1.1 while the episode
    /// lasts. Pendulum: Gymnasium's own cost, `angle^2 + 0.1 thdot^2 + 0.001 u^2`.
    pub fn step_cost(&self, obs: &[f32], a: usize) -> f32 {
        match self {
            Task::CartPole => {
                let t = obs[2] / THETA_LIMIT;
                let x = obs[0] / X_LIMIT;
                t * t + 0.1 * x * x
            }
            Task::Pendulum { .. } => {
                let th = obs[1].atan2(obs[0]);
                let u = self.torque(a);
                th * th + 0.1 * obs[2] * obs[2] + 0.001 * u * u
            }
        }
    }

    /// Cost of each step of the horizon left after a terminal state.
    pub(crate) fn terminal_cost(&self) -> f32 {
        10.0
    }

    /// The next observation from the current one and the next velocities, by the task's
    /// integrator: CartPole's explicit Euler (positions move by the old velocities), Pendulum's
    /// semi-implicit Euler (the angle moves by the new velocity). Known kinematics, used only by
    /// a world model built with the kinematic prior.
    pub fn integrate(&self, obs: &[f32], velocities: &[f32], next: &mut [f32]) {
        match self {
            Task::CartPole => {
                next[0] = obs[0] + CARTPOLE_TAU * obs[1];
                next[1] = velocities[0];
                next[2] = obs[2] + CARTPOLE_TAU * obs[3];
                next[3] = velocities[1];
            }
            Task::Pendulum { .. } => {
                let th = obs[1].atan2(obs[0]) + PENDULUM_DT * velocities[0];
                next[0] = th.cos();
                next[1] = th.sin();
                next[2] = velocities[0];
            }
        }
    }
}

/// Something that predicts the next observations of a batch.
pub trait Model {
    /// `obs` holds `actions.len()` observations one after another; writes the predicted next
    /// observations into `next` (same layout).
    fn predict(&mut self, obs: &[f32], actions: &[usize], next: &mut [f32]);
}
