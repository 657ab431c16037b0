//! Replaying Gymnasium reference episodes recorded by `tools/gym_fixtures.py`.
//!
//! The fixture format is documented at the top of that script: per episode a seed, the float64
//! initial state (`float.hex()`), and per step `[action, state, obs, reward, terminated,
//! truncated]`. [`replay`] sets each initial state, replays the actions and compares every value
//! bit for bit.

use super::{Action, Physics, Space};
use serde_json::Value;

/// Parse a float written by Python's `float.hex()` (`"-0x1.9ap-6"`, `"0x0.0p+0"`, `"inf"`),
/// or a decimal literal.
pub fn parse_hex_f64(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) else {
        return t.parse::<f64>().ok();
    };
    let (mant, exp) = match hex.find(['p', 'P']) {
        Some(i) => (&hex[..i], hex[i + 1..].parse::<i32>().ok()?),
        None => (hex, 0),
    };
    let (int_part, frac_part) = match mant.find('.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, ""),
    };
    let digits: String = format!("{int_part}{frac_part}");
    let hex_digits = digits.bytes().all(|b| b.is_ascii_hexdigit());
    if digits.is_empty() || digits.len() > 15 || !hex_digits {
        return None;
    }
    let m = u64::from_str_radix(&digits, 16).ok()?;
    if m >= (1u64 << 53) {
        return None; // more precision than a float64 holds: not written by float.hex()
    }
    let mut v = m as f64; // exact
    // m < 2^53, so beyond +-2200 the result is infinite or zero anyway: clamping keeps it exact
    // and the loop short.
    let mut e = (i64::from(exp) - 4 * frac_part.len() as i64).clamp(-2200, 2200) as i32;
    // Scale by 2^e with exact powers of two (one rounding at most, into the subnormal range).
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        v *= f64::from_bits(((step + 1023) as u64) << 52);
        e -= step;
    }
    Some(if neg { -v } else { v })
}

/// Outcome of [`replay`].
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub env_id: String,
    pub episodes: usize,
    pub steps: usize,
    /// Values compared (states, observations, rewards, flags).
    pub values: usize,
    /// Number of values that differ (a failed step counts once per value it should have produced).
    pub mismatches: usize,
    /// Number of steps (initial observations included) with at least one differing value or
    /// refused by the environment.
    pub bad_steps: usize,
    /// One line per bad step, for the first 20 of them: what differs, ours against Gymnasium's.
    pub details: Vec<String>,
}

impl ReplayReport {
    /// Records a bad step: `differences` values that differ, described by `what`.
    fn bad_step(&mut self, differences: usize, what: String) {
        self.mismatches += differences;
        self.bad_steps += 1;
        if self.details.len() < 20 {
            self.details.push(what);
        }
    }

    /// The one-line summary: what was compared and how much of it differs.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} episodes, {} steps, {} values compared, {} mismatching (in {})",
            self.env_id,
            self.episodes,
            self.steps,
            self.values,
            self.mismatches,
            self.bad_steps_text()
        )
    }

    /// `"1 step"`, `"3 steps"`: how many steps are bad.
    pub fn bad_steps_text(&self) -> String {
        match self.bad_steps {
            1 => "1 step".to_string(),
            n => format!("{n} steps"),
        }
    }
}

/// A fixture that cannot be replayed: not JSON, or a field missing or malformed. Nested
/// [`FixtureError::At`] say where (the episode, the step, the field).
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A field that every fixture (or episode) has.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A list that must not be empty (the episodes, an episode's steps).
    #[error("no {0}")]
    Empty(&'static str),
    /// A step with fewer than its six entries; names the first one missing.
    #[error("no {0} (a step is [action, state, obs, reward, terminated, truncated])")]
    NoStepEntry(&'static str),
    /// A value of the wrong kind (an action that is not an integer, a flag not a boolean).
    #[error("bad {0}")]
    Bad(&'static str),
    #[error("expected an array")]
    NotAnArray,
    /// A float that neither `float.hex()` nor a decimal literal wrote, as written.
    #[error("bad float {0}")]
    BadFloat(String),
    /// A vector of another length than the environment's.
    #[error("{what} has {got} values, the environment {expected}")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// An unknown environment, or a state it refuses.
    #[error(transparent)]
    Env(#[from] super::EnvError),
    /// `source` found at `at` (`episode 2`, `step 5`, `reward`).
    #[error("{at}: {source}")]
    At {
        at: String,
        source: Box<FixtureError>,
    },
}

impl FixtureError {
    /// This error, said to be found at `at`.
    fn at(self, at: impl std::fmt::Display) -> Self {
        FixtureError::At {
            at: at.to_string(),
            source: Box::new(self),
        }
    }
}

fn f64s(v: &Value) -> Result<Vec<f64>, FixtureError> {
    v.as_array()
        .ok_or(FixtureError::NotAnArray)?
        .iter()
        .map(one_f64)
        .collect()
}

fn one_f64(x: &Value) -> Result<f64, FixtureError> {
    match x {
        Value::String(s) => parse_hex_f64(s).ok_or(FixtureError::BadFloat(format!("{s:?}"))),
        Value::Number(n) => n.as_f64().ok_or(FixtureError::Bad("number")),
        _ => Err(FixtureError::BadFloat(x.to_string())),
    }
}

/// `values` with `what` in front of the error, checked to hold exactly `len` values.
fn sized_f64s(v: &Value, len: usize, what: &'static str) -> Result<Vec<f64>, FixtureError> {
    let values = f64s(v).map_err(|e| e.at(what))?;
    if values.len() != len {
        return Err(FixtureError::Length {
            what,
            got: values.len(),
            expected: len,
        });
    }
    Ok(values)
}

/// The differing components of `ours` against `theirs`, bit for bit, as `name[i] ours (gym
/// theirs)`.
fn differences<T: Copy + std::fmt::Debug>(
    name: &str,
    ours: &[T],
    theirs: &[T],
    bits: impl Fn(T) -> u64,
) -> Vec<String> {
    ours.iter()
        .zip(theirs)
        .enumerate()
        .filter(|&(_, (&o, &t))| bits(o) != bits(t))
        .map(|(i, (o, t))| format!("{name}[{i}] {o:?} (gym {t:?})"))
        .collect()
}

/// Parses the fixture text `json` and replays it: see [`replay`]. A JSON list of fixtures (the
/// worlds of one environment) is replayed fixture after fixture into one report.
pub fn replay_json(json: &str) -> Result<ReplayReport, FixtureError> {
    let value: Value = serde_json::from_str(json)?;
    let Value::Array(fixtures) = &value else {
        return replay(&value);
    };
    let mut total: Option<ReplayReport> = None;
    for (i, fixture) in fixtures.iter().enumerate() {
        let rep = replay(fixture).map_err(|e| e.at(format_args!("fixture {i}")))?;
        let Some(t) = &mut total else {
            total = Some(rep);
            continue;
        };
        t.episodes += rep.episodes;
        t.steps += rep.steps;
        t.values += rep.values;
        t.mismatches += rep.mismatches;
        t.bad_steps += rep.bad_steps;
        t.details.extend(rep.details);
        t.details.truncate(20);
    }
    total.ok_or(FixtureError::Empty("fixtures"))
}

/// Replay a parsed fixture; `Err` only for a malformed fixture (naming the episode and step):
/// no episodes, an episode without steps, a missing or malformed field, or a state,
/// observation or action of another length than the environment's.
pub fn replay(fixture: &Value) -> Result<ReplayReport, FixtureError> {
    let env_id = fixture["env_id"]
        .as_str()
        .ok_or(FixtureError::Missing("env_id"))?;
    let mut rep = ReplayReport {
        env_id: env_id.to_string(),
        ..Default::default()
    };
    let episodes = fixture["episodes"]
        .as_array()
        .ok_or(FixtureError::Missing("episodes"))?;
    if episodes.is_empty() {
        return Err(FixtureError::Empty("episodes"));
    }
    let physics = physics_of(env_id, &fixture["physics"]).map_err(|e| e.at("physics"))?;
    for (ei, ep) in episodes.iter().enumerate() {
        replay_episode(&mut rep, &physics, ep).map_err(|e| e.at(format_args!("episode {ei}")))?;
    }
    Ok(rep)
}

/// What a fixture step expects: the action to take and what Gymnasium saw after it.
struct ExpectedStep {
    action: Action,
    state: Vec<f64>,
    obs: Vec<f32>,
    reward: f64,
    terminated: bool,
    truncated: bool,
}

/// Reads a step `[action, state, obs, reward, terminated, truncated]`, its entries in order,
/// checking their lengths against the environment's.
fn parse_step(
    st: &Value,
    action_space: &Space,
    state_len: usize,
    obs_len: usize,
) -> Result<ExpectedStep, FixtureError> {
    let field = |i: usize, name: &'static str| st.get(i).ok_or(FixtureError::NoStepEntry(name));
    let action = match action_space {
        Space::Discrete { .. } => Action::Discrete(
            field(0, "action")?
                .as_i64()
                .ok_or(FixtureError::Bad("action"))?,
        ),
        Space::Box { low, .. } => {
            let a = field(0, "action")?;
            let values = match a {
                Value::Array(_) => f64s(a),
                _ => one_f64(a).map(|x| vec![x]),
            }
            .map_err(|e| e.at("action"))?;
            if values.len() != low.len() {
                return Err(FixtureError::Length {
                    what: "action",
                    got: values.len(),
                    expected: low.len(),
                });
            }
            Action::Continuous(values.iter().map(|&x| x as f32).collect())
        }
    };
    let state = sized_f64s(field(1, "state")?, state_len, "state")?;
    let obs = sized_f64s(field(2, "obs")?, obs_len, "obs")?
        .iter()
        .map(|&x| x as f32)
        .collect();
    let reward = one_f64(field(3, "reward")?).map_err(|e| e.at("reward"))?;
    let flag =
        |i: usize, name: &'static str| field(i, name)?.as_bool().ok_or(FixtureError::Bad(name));
    Ok(ExpectedStep {
        action,
        state,
        obs,
        reward,
        terminated: flag(4, "terminated")?,
        truncated: flag(5, "truncated")?,
    })
}

/// The world a fixture was recorded in: Gymnasium's constants of `env_id`, overwritten by the
/// optional `physics` object (`{"length": 1.0, "masspole": 0.3}`).
fn physics_of(env_id: &str, physics: &Value) -> Result<Physics, FixtureError> {
    let mut world = Physics::default_for(env_id)?;
    match physics {
        Value::Null => {}
        Value::Object(changed) => {
            for (name, value) in changed {
                let value = value.as_f64().ok_or(FixtureError::Bad("physics"))?;
                if !world.set(name, value) {
                    return Err(FixtureError::Bad("physics"));
                }
            }
        }
        _ => return Err(FixtureError::Bad("physics")),
    }
    Ok(world)
}

/// Replays episode number `rep.episodes` into `rep`.
fn replay_episode(
    rep: &mut ReplayReport,
    physics: &Physics,
    ep: &Value,
) -> Result<(), FixtureError> {
    let ei = rep.episodes;
    let mut env = physics.make();
    let seed = ep["seed"].as_u64().ok_or(FixtureError::Missing("seed"))?;
    env.reset(seed);
    let (state_len, obs_len) = (env.state().len(), env.observation_space().dim());
    let action_space = env.action_space();
    env.set_state(&sized_f64s(
        &ep["initial_state"],
        state_len,
        "initial_state",
    )?)?;
    let obs0: Vec<f32> = sized_f64s(&ep["initial_obs"], obs_len, "initial_obs")?
        .iter()
        .map(|&x| x as f32)
        .collect();
    let steps = ep["steps"]
        .as_array()
        .ok_or(FixtureError::Missing("steps"))?;
    if steps.is_empty() {
        return Err(FixtureError::Empty("steps"));
    }
    rep.episodes += 1;
    rep.values += obs_len;
    let wrong = differences("obs", &env.observation(), &obs0, |x| x.to_bits().into());
    if !wrong.is_empty() {
        rep.bad_step(
            wrong.len(),
            format!("episode {ei} initial: {}", wrong.join(", ")),
        );
    }
    for (si, st) in steps.iter().enumerate() {
        let want = parse_step(st, &action_space, state_len, obs_len)
            .map_err(|e| e.at(format_args!("step {si}")))?;
        let n_values = state_len + obs_len + 3;
        rep.steps += 1;
        rep.values += n_values;
        let step = match env.step(&want.action) {
            Ok(s) => s,
            Err(e) => {
                rep.bad_step(n_values, format!("episode {ei} step {si}: {e}"));
                continue;
            }
        };
        let mut wrong = differences("state", &env.state(), &want.state, f64::to_bits);
        wrong.extend(differences("obs", &step.obs, &want.obs, |x| {
            x.to_bits().into()
        }));
        let scalars = [
            ("reward", step.reward.to_bits() == want.reward.to_bits()),
            ("terminated", step.terminated == want.terminated),
            ("truncated", step.truncated == want.truncated),
        ];
        let ours = [
            format!("{:?}", step.reward),
            step.terminated.to_string(),
            step.truncated.to_string(),
        ];
        let theirs = [
            format!("{:?}", want.reward),
            want.terminated.to_string(),
            want.truncated.to_string(),
        ];
        for (i, (name, same)) in scalars.into_iter().enumerate() {
            if !same {
                wrong.push(format!("{name} {} (gym {})", ours[i], theirs[i]));
            }
        }
        if !wrong.is_empty() {
            rep.bad_step(
                wrong.len(),
                format!("episode {ei} step {si}: {}", wrong.join(", ")),
            );
        }
    }
    Ok(())
}
