//! Classic-control environments, step for step identical to Gymnasium 1.x (NumPy 2).
//!
//! [`CartPole`] (`CartPole-v1`) and [`Pendulum`] (`Pendulum-v1`) reproduce Gymnasium's float64
//! dynamics with the same operation order and dtype promotions, so that replaying the same
//! actions from the same state gives bit-identical float64 states, identical float32
//! observations and identical rewards (checked against recorded fixtures in `tests/env_gym.rs`).
//! Both include the `TimeLimit` wrapper that `gymnasium.make` adds (500 and 200 steps).
//!
//! Only the initial-state draw of [`Env::reset`] differs from Gymnasium: it uses the same
//! distributions but this crate's own seeded RNG (ChaCha8), not NumPy's PCG64.

pub mod cartpole;
pub mod fixture;
pub mod pendulum;
pub mod render;
pub mod world;

pub use cartpole::{CartPole, CartPoleParams};
pub use pendulum::{Pendulum, PendulumParams};
pub use world::Physics;

/// An action for [`Env::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A `Discrete(n)` action (CartPole: 0 pushes left, 1 pushes right).
    Discrete(i64),
    /// A `Box` action, one float32 per dimension (Pendulum: `[torque]`).
    Continuous(Vec<f32>),
}

/// The result of one [`Env::step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The float32 observation after the step.
    pub obs: Vec<f32>,
    /// The reward (float64, as Gymnasium returns it).
    pub reward: f64,
    /// The episode reached a terminal state.
    pub terminated: bool,
    /// The time limit was reached (`elapsed_steps >= max_episode_steps`).
    pub truncated: bool,
}

/// A Gymnasium space description.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    /// Integers `0..n`.
    Discrete { n: i64 },
    /// float32 vectors with elementwise bounds (may be infinite).
    Box { low: Vec<f32>, high: Vec<f32> },
}

impl Space {
    /// Number of components (1 for `Discrete`).
    pub fn dim(&self) -> usize {
        match self {
            Space::Discrete { .. } => 1,
            Space::Box { low, .. } => low.len(),
        }
    }
}

/// Errors from [`Env::step`] and [`Env::set_state`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    #[error("invalid action for {env}: {reason}")]
    InvalidAction { env: &'static str, reason: String },
    #[error("{env}: expected an action of length {expected}, got {got}")]
    WrongActionLength {
        env: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{env}: expected a state of length {expected}, got {got}")]
    WrongStateLength {
        env: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{env}: step() called before reset()")]
    NotReset { env: &'static str },
    #[error("world {world:?}: {reason}")]
    BadWorld { world: String, reason: String },
    #[error("unknown environment {0:?} (known: cartpole-v1, pendulum-v1)")]
    UnknownEnv(String),
}

/// A Gymnasium-shaped environment with its `TimeLimit`.
pub trait Env {
    /// The Gymnasium id, e.g. `"CartPole-v1"`.
    fn id(&self) -> &'static str;
    /// Draw a fresh initial state (seeded), reset the step counter, return the observation.
    fn reset(&mut self, seed: u64) -> Vec<f32>;
    /// Advance one step. Invalid actions are errors and leave the environment unchanged.
    fn step(&mut self, action: &Action) -> Result<Step, EnvError>;
    /// The float64 physical state (`env.unwrapped.state`).
    fn state(&self) -> Vec<f64>;
    /// Overwrite the physical state (like assigning `env.unwrapped.state`); the step counter and
    /// termination bookkeeping are left alone. Marks the environment as reset if it was not.
    fn set_state(&mut self, state: &[f64]) -> Result<(), EnvError>;
    /// The float32 observation of the current state.
    fn observation(&self) -> Vec<f32>;
    fn observation_space(&self) -> Space;
    fn action_space(&self) -> Space;
    /// Steps taken since the last reset (the `TimeLimit` counter).
    fn elapsed_steps(&self) -> usize;
    fn max_episode_steps(&self) -> usize;
}

/// Make an environment by id (case-insensitive: `cartpole-v1`, `pendulum-v1`).
pub fn make(id: &str) -> Result<Box<dyn Env>, EnvError> {
    match id.to_ascii_lowercase().as_str() {
        "cartpole-v1" | "cartpole" => Ok(Box::new(CartPole::new())),
        "pendulum-v1" | "pendulum" => Ok(Box::new(Pendulum::new())),
        _ => Err(EnvError::UnknownEnv(id.to_string())),
    }
}

/// `x ** 2` as NumPy computes it for a float64 scalar: libm `pow(x, 2.0)`, which is not always
/// the correctly rounded `x * x`. The exponent goes through `black_box` so that LLVM does not
/// rewrite the call into a multiplication.
#[inline]
pub(crate) fn np_pow2_f64(x: f64) -> f64 {
    x.powf(std::hint::black_box(2.0))
}

/// `x ** 2` for a NumPy float32 scalar: libm `powf(x, 2.0f)`.
#[inline]
pub(crate) fn np_pow2_f32(x: f32) -> f32 {
    x.powf(std::hint::black_box(2.0))
}

/// Python / NumPy floating `a % b` (result has the sign of `b`).
#[inline]
pub(crate) fn py_mod(a: f64, b: f64) -> f64 {
    let m = a % b; // C fmod
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) { m + b } else { m }
    } else {
        0.0f64.copysign(b)
    }
}

/// A uniformly random action from `space` (Discrete: `0..n`; Box: uniform in `[low, high)`).
pub fn sample_action(space: &Space, rng: &mut impl rand::Rng) -> Action {
    use rand::RngExt;
    match space {
        Space::Discrete { n } => Action::Discrete(rng.random_range(0..*n)),
        Space::Box { low, high } => Action::Continuous(
            low.iter()
                .zip(high)
                .map(|(&l, &h)| l + (h - l) * rng.random::<f32>())
                .collect(),
        ),
    }
}

/// Run `episodes` episodes of the uniformly random policy (reset seeds `seed, seed + 1, ...`;
/// actions from a ChaCha8 stream seeded with `seed`). Returns `(length, return)` per episode.
pub fn random_policy_episodes(env: &mut dyn Env, episodes: usize, seed: u64) -> Vec<(usize, f64)> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_AC71_0000_0001);
    let space = env.action_space();
    (0..episodes)
        .map(|ep| {
            env.reset(seed.wrapping_add(ep as u64));
            let (mut len, mut ret) = (0usize, 0.0f64);
            loop {
                let s = env
                    .step(&sample_action(&space, &mut rng))
                    .expect("sampled actions are valid");
                len += 1;
                ret += s.reward;
                if s.terminated || s.truncated {
                    break (len, ret);
                }
            }
        })
        .collect()
}

/// `state` as the fixed-size state of environment `env`, or the error naming it.
pub(crate) fn state_array<const N: usize>(
    env: &'static str,
    state: &[f64],
) -> Result<[f64; N], EnvError> {
    state.try_into().map_err(|_| EnvError::WrongStateLength {
        env,
        expected: N,
        got: state.len(),
    })
}
