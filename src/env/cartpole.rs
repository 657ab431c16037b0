//! `CartPole-v1`: Gymnasium's `CartPoleEnv` (euler integrator) inside `TimeLimit(500)`.

use super::{Action, Env, EnvError, Space, Step, state_array};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

const ID: &str = "CartPole-v1";
const TAU: f64 = 0.02;
const X_THRESHOLD: f64 = 2.4;
/// The registered `max_episode_steps` of `CartPole-v1`.
pub const MAX_EPISODE_STEPS: usize = 500;

/// `12 * 2 * math.pi / 360`, evaluated left to right as Python does.
pub fn theta_threshold_radians() -> f64 {
    12.0 * 2.0 * std::f64::consts::PI / 360.0
}

/// The physical constants of a cart-pole world; [`Default`] is Gymnasium's `CartPole-v1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CartPoleParams {
    pub gravity: f64,
    pub masscart: f64,
    pub masspole: f64,
    /// Half the pole's length.
    pub length: f64,
    pub force_mag: f64,
}

impl Default for CartPoleParams {
    fn default() -> Self {
        Self {
            gravity: 9.8,
            masscart: 1.0,
            masspole: 0.1,
            length: 0.5,
            force_mag: 10.0,
        }
    }
}

impl CartPoleParams {
    /// The float64 dynamics of one step (no bookkeeping): returns the next state. With the
    /// default constants this is Gymnasium's step, operation for operation.
    pub fn dynamics(&self, state: [f64; 4], push_right: bool) -> [f64; 4] {
        let [x, x_dot, theta, theta_dot] = state;
        let p = self;
        let total_mass = p.masspole + p.masscart;
        let polemass_length = p.masspole * p.length;
        let force = if push_right {
            p.force_mag
        } else {
            -p.force_mag
        };
        let costheta = theta.cos();
        let sintheta = theta.sin();
        // np.square is an exact-rounded multiplication.
        let temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
        let thetaacc = (p.gravity * sintheta - costheta * temp)
            / (p.length * (4.0 / 3.0 - p.masspole * (costheta * costheta) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        [
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
        ]
    }

    /// Overrides the constant `name` (`gravity`, `masscart`, `masspole`, `length`,
    /// `force_mag`); false for an unknown name.
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        let field = match name {
            "gravity" => &mut self.gravity,
            "masscart" => &mut self.masscart,
            "masspole" => &mut self.masspole,
            "length" => &mut self.length,
            "force_mag" => &mut self.force_mag,
            _ => return false,
        };
        *field = value;
        true
    }

    /// The constants by name, in [`CartPoleParams::set`]'s order.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("gravity", self.gravity),
            ("masscart", self.masscart),
            ("masspole", self.masspole),
            ("length", self.length),
            ("force_mag", self.force_mag),
        ]
    }
}

/// Cart-pole balancing. State `[x, x_dot, theta, theta_dot]` (float64).
#[derive(Debug, Clone)]
pub struct CartPole {
    params: CartPoleParams,
    state: Option<[f64; 4]>,
    /// Gymnasium's `steps_beyond_terminated`.
    steps_beyond_terminated: Option<u64>,
    elapsed_steps: usize,
    max_episode_steps: usize,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// Gymnasium's `CartPole-v1`.
    pub fn new() -> Self {
        Self::with_params(CartPoleParams::default())
    }

    /// A cart-pole world with these constants (`gym.make("CartPole-v1")` with its attributes
    /// `gravity`, `masscart`, ... overwritten).
    pub fn with_params(params: CartPoleParams) -> Self {
        Self {
            params,
            state: None,
            steps_beyond_terminated: None,
            elapsed_steps: 0,
            max_episode_steps: MAX_EPISODE_STEPS,
        }
    }

    /// Gymnasium's `steps_beyond_terminated` (`None` until a terminal state was reached).
    pub fn steps_beyond_terminated(&self) -> Option<u64> {
        self.steps_beyond_terminated
    }

    /// The physical constants.
    pub fn params(&self) -> &CartPoleParams {
        &self.params
    }

    /// Gymnasium's termination test on a state (a NaN coordinate does not terminate, as in
    /// Gymnasium, hence no `RangeInclusive::contains`).
    #[allow(clippy::manual_range_contains)]
    pub fn is_terminal(state: &[f64; 4]) -> bool {
        let (x, theta) = (state[0], state[2]);
        let th = theta_threshold_radians();
        x < -X_THRESHOLD || x > X_THRESHOLD || theta < -th || theta > th
    }

    fn obs_of(state: &[f64; 4]) -> Vec<f32> {
        state.iter().map(|&v| v as f32).collect()
    }
}

impl Env for CartPole {
    fn id(&self) -> &'static str {
        ID
    }

    fn reset(&mut self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // np_random.uniform(-0.05, 0.05): low + (high - low) * U[0, 1)
        let s: [f64; 4] = std::array::from_fn(|_| -0.05 + 0.1 * rng.random::<f64>());
        self.state = Some(s);
        self.steps_beyond_terminated = None;
        self.elapsed_steps = 0;
        Self::obs_of(&s)
    }

    fn step(&mut self, action: &Action) -> Result<Step, EnvError> {
        let push_right = match action {
            Action::Discrete(0) => false,
            Action::Discrete(1) => true,
            Action::Discrete(a) => {
                return Err(EnvError::InvalidAction {
                    env: ID,
                    reason: format!("{a} is not in Discrete(2)"),
                });
            }
            Action::Continuous(v) => {
                return Err(EnvError::InvalidAction {
                    env: ID,
                    reason: format!("expected a Discrete(2) action, got continuous {v:?}"),
                });
            }
        };
        let state = self.state.ok_or(EnvError::NotReset { env: ID })?;
        let next = self.params.dynamics(state, push_right);
        self.state = Some(next);
        let terminated = Self::is_terminal(&next);
        let reward = if !terminated {
            1.0
        } else if let Some(n) = self.steps_beyond_terminated {
            // Gymnasium warns once ("You are calling 'step()' even though this environment has
            // already returned terminated = True ...") and gives 0 reward from then on.
            self.steps_beyond_terminated = Some(n + 1);
            0.0
        } else {
            self.steps_beyond_terminated = Some(0);
            1.0
        };
        self.elapsed_steps += 1;
        Ok(Step {
            obs: Self::obs_of(&next),
            reward,
            terminated,
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
        let th2 = (theta_threshold_radians() * 2.0) as f32;
        let x2 = (X_THRESHOLD * 2.0) as f32;
        let high = vec![x2, f32::INFINITY, th2, f32::INFINITY];
        Space::Box {
            low: high.iter().map(|v| -v).collect(),
            high,
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete { n: 2 }
    }

    fn elapsed_steps(&self) -> usize {
        self.elapsed_steps
    }

    fn max_episode_steps(&self) -> usize {
        self.max_episode_steps
    }
}
