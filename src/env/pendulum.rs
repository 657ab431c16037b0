//! `Pendulum-v1`: Gymnasium's `PendulumEnv` (g = 10) inside `TimeLimit(200)`.
//!
//! Dtypes follow NumPy 2 (NEP 50): the action is a float32 array, so `u = clip(u, -2, 2)[0]` is
//! a float32 scalar; `0.001 * u**2` and `3.0 / (m * l**2) * u` are float32 products (Python
//! floats are "weak" scalars) that are then promoted to float64 when added to float64 terms.

use super::{Action, Env, EnvError, Space, Step, np_pow2_f32, np_pow2_f64, py_mod, state_array};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

const ID: &str = "Pendulum-v1";
const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
/// The registered `max_episode_steps` of `Pendulum-v1`.
pub const MAX_EPISODE_STEPS: usize = 200;

/// Gymnasium's `angle_normalize`: `((x + pi) % (2 * pi)) - pi` with Python modulo.
pub fn angle_normalize(x: f64) -> f64 {
    py_mod(x + PI, 2.0 * PI) - PI
}

/// The physical constants of a pendulum world; [`Default`] is Gymnasium's `Pendulum-v1`
/// (`g = 10`, `m = 1`, `l = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendulumParams {
    pub g: f64,
    pub m: f64,
    pub l: f64,
}

impl Default for PendulumParams {
    fn default() -> Self {
        Self {
            g: 10.0,
            m: 1.0,
            l: 1.0,
        }
    }
}

impl PendulumParams {
    /// One step of the float64 dynamics with an already clipped float32 torque:
    /// returns `(next_state, costs)`. With the default constants this is Gymnasium's step,
    /// operation for operation.
    pub fn dynamics(&self, state: [f64; 2], u: f32) -> ([f64; 2], f64) {
        let [th, thdot] = state;
        let (g, m, l) = (self.g, self.m, self.l);
        let costs = np_pow2_f64(angle_normalize(th))
            + 0.1 * np_pow2_f64(thdot)
            + f64::from(0.001f32 * np_pow2_f32(u));
        let torque_term = f64::from((3.0 / (m * l * l)) as f32 * u);
        let newthdot = thdot + (3.0 * g / (2.0 * l) * th.sin() + torque_term) * DT;
        let newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        ([newth, newthdot], costs)
    }

    /// Overrides the constant `name` (`g`, `m`, `l`); false for an unknown name.
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        let field = match name {
            "g" => &mut self.g,
            "m" => &mut self.m,
            "l" => &mut self.l,
            _ => return false,
        };
        *field = value;
        true
    }

    /// The constants by name.
    pub fn named(&self) -> [(&'static str, f64); 3] {
        [("g", self.g), ("m", self.m), ("l", self.l)]
    }
}

/// Inverted pendulum swing-up. State `[th, thdot]` (float64).
#[derive(Debug, Clone)]
pub struct Pendulum {
    params: PendulumParams,
    state: Option<[f64; 2]>,
    last_u: Option<f32>,
    elapsed_steps: usize,
    max_episode_steps: usize,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    /// Gymnasium's `Pendulum-v1`.
    pub fn new() -> Self {
        Self::with_params(PendulumParams::default())
    }

    /// A pendulum world with these constants (`gym.make("Pendulum-v1", g=...)` with `m` and
    /// `l` overwritten).
    pub fn with_params(params: PendulumParams) -> Self {
        Self {
            params,
            state: None,
            last_u: None,
            elapsed_steps: 0,
            max_episode_steps: MAX_EPISODE_STEPS,
        }
    }

    /// The clipped torque of the last step (Gymnasium's `last_u`, used for rendering).
    pub fn last_u(&self) -> Option<f32> {
        self.last_u
    }

    /// `np.clip(u, -2.0, 2.0)` on a float32 (finite input).
    pub fn clip_torque(u: f32) -> f32 {
        u.clamp(-MAX_TORQUE, MAX_TORQUE)
    }

    /// The physical constants.
    pub fn params(&self) -> &PendulumParams {
        &self.params
    }

    fn obs_of(state: &[f64; 2]) -> Vec<f32> {
        let [th, thdot] = *state;
        vec![th.cos() as f32, th.sin() as f32, thdot as f32]
    }
}

impl Env for Pendulum {
    fn id(&self) -> &'static str {
        ID
    }

    fn reset(&mut self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // np_random.uniform(low=-[pi, 1], high=[pi, 1])
        let th = -PI + 2.0 * PI * rng.random::<f64>();
        let thdot = -1.0 + 2.0 * rng.random::<f64>();
        let s = [th, thdot];
        self.state = Some(s);
        self.last_u = None;
        self.elapsed_steps = 0;
        Self::obs_of(&s)
    }

    fn step(&mut self, action: &Action) -> Result<Step, EnvError> {
        let u = match action {
            Action::Continuous(v) if v.len() == 1 => v[0],
            Action::Continuous(v) => {
                return Err(EnvError::WrongActionLength {
                    env: ID,
                    expected: 1,
                    got: v.len(),
                });
            }
            Action::Discrete(a) => {
                return Err(EnvError::InvalidAction {
                    env: ID,
                    reason: format!("expected a Box(1,) torque, got discrete {a}"),
                });
            }
        };
        if !u.is_finite() {
            return Err(EnvError::InvalidAction {
                env: ID,
                reason: format!("torque {u} is not finite"),
            });
        }
        let state = self.state.ok_or(EnvError::NotReset { env: ID })?;
        let u = Self::clip_torque(u);
        let (next, costs) = self.params.dynamics(state, u);
        self.state = Some(next);
        self.last_u = Some(u);
        self.elapsed_steps += 1;
        Ok(Step {
            obs: Self::obs_of(&next),
            reward: -costs,
            terminated: false,
            truncated: self.elapsed_steps >= self.max_episode_steps,
        })
    }

    fn state(&self) -> Vec<f64> {
        self.state.map(|s| s.to_vec()).unwrap_or_default()
    }

    fn set_state(&mut self, state: &[f64]) -> Result<(), EnvError> {
        self.state = Some(state_array(ID, state)?);
        Ok(())
    }

    fn observation(&self) -> Vec<f32> {
        self.state.map(|s| Self::obs_of(&s)).unwrap_or_default()
    }

    fn observation_space(&self) -> Space {
        let high = vec![1.0, 1.0, MAX_SPEED as f32];
        Space::Box {
            low: high.iter().map(|v| -v).collect(),
            high,
        }
    }

    fn action_space(&self) -> Space {
        Space::Box {
            low: vec![-MAX_TORQUE],
            high: vec![MAX_TORQUE],
        }
    }

    fn elapsed_steps(&self) -> usize {
        self.elapsed_steps
    }

    fn max_episode_steps(&self) -> usize {
        self.max_episode_steps
    }
}
