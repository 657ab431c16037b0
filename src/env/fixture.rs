//! Replaying Gymnasium reference episodes recorded by `tools/gym_fixtures.py`.
//!
//! The fixture format is documented at the top of that script: per episode a seed, the float64
//! initial state (`float.hex()`), and per step `[action, state, obs, reward, terminated,
//! truncated]`. [`replay`] sets each initial state, replays the actions and compares every value
//! bit for bit.

use super::{Action, make};
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
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let m = u64::from_str_radix(&digits, 16).ok()?;
    if m >= (1u64 << 53) {
        return None; // more precision than a float64 holds: not written by float.hex()
    }
    let mut v = m as f64; // exact
    let mut e = exp - 4 * frac_part.len() as i32;
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
    /// A description of the first mismatches (at most 20).
    pub details: Vec<String>,
}

impl ReplayReport {
    fn mismatch(&mut self, what: String) {
        self.mismatches += 1;
        if self.details.len() < 20 {
            self.details.push(what);
        }
    }
}

fn f64s(v: &Value) -> Result<Vec<f64>, String> {
    v.as_array()
        .ok_or("expected an array")?
        .iter()
        .map(|x| match x {
            Value::String(s) => parse_hex_f64(s).ok_or(format!("bad float {s:?}")),
            Value::Number(n) => n.as_f64().ok_or("bad number".to_string()),
            _ => Err(format!("bad float {x}")),
        })
        .collect()
}

fn one_f64(v: &Value) -> Result<f64, String> {
    f64s(&Value::Array(vec![v.clone()])).map(|x| x[0])
}

/// Replay a parsed fixture; `Err` only for a malformed fixture.
pub fn replay(fixture: &Value) -> Result<ReplayReport, String> {
    let env_id = fixture["env_id"].as_str().ok_or("missing env_id")?;
    let mut rep = ReplayReport {
        env_id: env_id.to_string(),
        ..Default::default()
    };
    let discrete = env_id.starts_with("CartPole");
    let episodes = fixture["episodes"].as_array().ok_or("missing episodes")?;
    for (ei, ep) in episodes.iter().enumerate() {
        let mut env = make(env_id).map_err(|e| e.to_string())?;
        let seed = ep["seed"].as_u64().ok_or("missing seed")?;
        env.reset(seed);
        env.set_state(&f64s(&ep["initial_state"])?)
            .map_err(|e| e.to_string())?;
        let obs0 = f64s(&ep["initial_obs"])?;
        let got0 = env.observation();
        for (i, &want) in obs0.iter().enumerate() {
            rep.values += 1;
            if got0.get(i).map(|g| g.to_bits()) != Some((want as f32).to_bits()) {
                rep.mismatch(format!(
                    "episode {ei} initial obs[{i}]: {got0:?} vs {obs0:?}"
                ));
            }
        }
        rep.episodes += 1;
        let steps = ep["steps"].as_array().ok_or("missing steps")?;
        for (si, st) in steps.iter().enumerate() {
            let a = &st[0];
            let action = if discrete {
                Action::Discrete(a.as_i64().ok_or("bad action")?)
            } else {
                Action::Continuous(vec![one_f64(a)? as f32])
            };
            let want_state = f64s(&st[1])?;
            let want_obs: Vec<f32> = f64s(&st[2])?.iter().map(|&x| x as f32).collect();
            let want_r = one_f64(&st[3])?;
            let want_term = st[4].as_bool().ok_or("bad terminated")?;
            let want_trunc = st[5].as_bool().ok_or("bad truncated")?;
            let n_values = want_state.len() + want_obs.len() + 3;
            rep.steps += 1;
            rep.values += n_values;
            let step = match env.step(&action) {
                Ok(s) => s,
                Err(e) => {
                    for _ in 0..n_values {
                        rep.mismatch(format!("episode {ei} step {si}: {e}"));
                    }
                    continue;
                }
            };
            let got_state = env.state();
            for (i, &w) in want_state.iter().enumerate() {
                if got_state.get(i).map(|g| g.to_bits()) != Some(w.to_bits()) {
                    rep.mismatch(format!(
                        "episode {ei} step {si} state[{i}]: {:?} vs gym {w:?}",
                        got_state.get(i)
                    ));
                }
            }
            for (i, &w) in want_obs.iter().enumerate() {
                if step.obs.get(i).map(|g| g.to_bits()) != Some(w.to_bits()) {
                    rep.mismatch(format!(
                        "episode {ei} step {si} obs[{i}]: {:?} vs gym {w:?}",
                        step.obs.get(i)
                    ));
                }
            }
            if step.reward.to_bits() != want_r.to_bits() {
                rep.mismatch(format!(
                    "episode {ei} step {si} reward: {:?} vs gym {want_r:?}",
                    step.reward
                ));
            }
            if step.terminated != want_term {
                rep.mismatch(format!(
                    "episode {ei} step {si} terminated: {}",
                    step.terminated
                ));
            }
            if step.truncated != want_trunc {
                rep.mismatch(format!(
                    "episode {ei} step {si} truncated: {}",
                    step.truncated
                ));
            }
        }
    }
    Ok(rep)
}
