//! CartPole-v1 and Pendulum-v1 against real Gymnasium: fixtures from `tools/gym_fixtures.py`.

use eqprop::env::fixture::{parse_hex_f64, replay, replay_json};
use eqprop::env::{Action, CartPole, Env, EnvError, Pendulum, Space, make, pendulum};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn load(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn check_fixture(name: &str, min_steps: usize) {
    let rep = replay(&load(name)).unwrap();
    eprintln!(
        "{}: {} episodes, {} steps, {} values, {} mismatches",
        rep.env_id, rep.episodes, rep.steps, rep.values, rep.mismatches
    );
    assert!(rep.steps >= min_steps, "fixture too short: {}", rep.steps);
    assert_eq!(rep.mismatches, 0, "first mismatches: {:#?}", rep.details);
}

#[test]
fn cartpole_matches_gymnasium_bit_for_bit() {
    check_fixture("gym_cartpole.json", 500);
}

#[test]
fn pendulum_matches_gymnasium_bit_for_bit() {
    check_fixture("gym_pendulum.json", 1000);
}

/// The changed worlds of `eqprop life` (Gymnasium with its constants overwritten): every
/// world's fixture replays exactly, and it is really another world (Gymnasium's own physics
/// does not reproduce it).
fn check_worlds(name: &str, worlds: usize) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let rep = replay_json(&text).unwrap();
    assert_eq!(rep.mismatches, 0, "first mismatches: {:#?}", rep.details);
    let fixtures: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(fixtures.len(), worlds);
    for mut fixture in fixtures {
        assert!(fixture["physics"].is_object());
        fixture.as_object_mut().unwrap().remove("physics");
        assert!(
            replay(&fixture).unwrap().mismatches > 0,
            "{name}: the world is the default"
        );
    }
    let specs = eqprop::env::world::default_worlds(&rep.env_id).unwrap();
    assert_eq!(
        specs.len(),
        worlds + 1,
        "the fixtures cover the default worlds"
    );
}

#[test]
fn changed_cartpole_worlds_match_gymnasium_bit_for_bit() {
    check_worlds("gym_cartpole_worlds.json", 2);
}

#[test]
fn changed_pendulum_worlds_match_gymnasium_bit_for_bit() {
    check_worlds("gym_pendulum_worlds.json", 2);
}

#[test]
fn fixtures_cover_truncation_termination_and_clipping() {
    let cart = load("gym_cartpole.json");
    let eps = cart["episodes"].as_array().unwrap();
    let last = |e: &serde_json::Value| e["steps"].as_array().unwrap().last().unwrap().clone();
    assert!(
        eps.iter().any(|e| last(e)[5] == true),
        "no truncated CartPole episode"
    );
    assert!(
        eps.iter().any(|e| last(e)[4] == true),
        "no terminated CartPole episode"
    );
    assert!(
        eps.iter()
            .any(|e| e["steps_after_termination"].as_u64().unwrap() > 0),
        "no steps after termination"
    );
    let pend = load("gym_pendulum.json");
    let torques: Vec<f64> = pend["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["steps"].as_array().unwrap().clone())
        .map(|s| parse_hex_f64(s[0].as_str().unwrap()).unwrap())
        .collect();
    assert!(torques.iter().any(|&u| u > 2.0) && torques.iter().any(|&u| u < -2.0));
}

#[test]
fn hex_floats_parse_exactly() {
    for &x in &[
        0.0,
        -0.0,
        1.0,
        -0.1,
        0.05,
        std::f64::consts::PI,
        1e-300,
        5e-324,
        1.7976931348623157e308,
        -2.4000000000000004,
    ] {
        // Rust has no float.hex(); build Python's format by hand for normals.
        let s = python_hex(x);
        assert_eq!(parse_hex_f64(&s).unwrap().to_bits(), x.to_bits(), "{s}");
    }
    assert_eq!(parse_hex_f64("0x1.8p+1"), Some(3.0));
    assert_eq!(parse_hex_f64("-0x1.0000000000000p-1"), Some(-0.5));
}

fn python_hex(x: f64) -> String {
    let bits = x.to_bits();
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    if exp == 0 && frac == 0 {
        return format!("{sign}0x0.0p+0");
    }
    let (lead, e) = if exp == 0 {
        (0, -1022)
    } else {
        (1, exp - 1023)
    };
    format!("{sign}0x{lead}.{frac:013x}p{e:+}")
}

#[test]
fn cartpole_invalid_actions_are_errors_and_change_nothing() {
    let mut env = CartPole::new();
    env.reset(0);
    let before = env.state();
    for a in [
        Action::Discrete(2),
        Action::Discrete(-1),
        Action::Continuous(vec![1.0]),
    ] {
        assert!(
            matches!(env.step(&a), Err(EnvError::InvalidAction { .. })),
            "{a:?}"
        );
    }
    assert_eq!(env.state(), before);
    assert_eq!(env.elapsed_steps(), 0);
    assert!(matches!(
        CartPole::new().step(&Action::Discrete(0)),
        Err(EnvError::NotReset { .. })
    ));
    assert!(env.set_state(&[0.0; 3]).is_err());
}

#[test]
fn pendulum_invalid_actions_are_errors_and_finite_torques_are_clipped() {
    let mut env = Pendulum::new();
    env.reset(1);
    let before = env.state();
    for a in [
        Action::Continuous(vec![f32::NAN]),
        Action::Continuous(vec![f32::INFINITY]),
        Action::Continuous(vec![f32::NEG_INFINITY]),
        Action::Discrete(1),
    ] {
        assert!(
            matches!(env.step(&a), Err(EnvError::InvalidAction { .. })),
            "{a:?}"
        );
    }
    for a in [
        Action::Continuous(vec![]),
        Action::Continuous(vec![0.0, 1.0]),
    ] {
        assert!(
            matches!(env.step(&a), Err(EnvError::WrongActionLength { .. })),
            "{a:?}"
        );
    }
    assert_eq!(env.state(), before);
    // +5 behaves exactly like +2 (Gymnasium clips finite torques).
    let mut other = env.clone();
    let a = env.step(&Action::Continuous(vec![5.0])).unwrap();
    let b = other.step(&Action::Continuous(vec![2.0])).unwrap();
    assert_eq!(a, b);
    assert_eq!(env.last_u(), Some(2.0));
}

#[test]
fn cartpole_after_termination_gives_zero_reward() {
    let mut env = CartPole::new();
    env.reset(3);
    let mut steps = 0;
    let mut terminated_at = None;
    // Always push right: the pole falls within a few dozen steps.
    while terminated_at.is_none() {
        let s = env.step(&Action::Discrete(1)).unwrap();
        steps += 1;
        assert_eq!(s.reward, 1.0, "the terminating step still pays 1");
        if s.terminated {
            terminated_at = Some(steps);
        }
    }
    assert_eq!(env.steps_beyond_terminated(), Some(0));
    for k in 1..=5 {
        let s = env.step(&Action::Discrete(1)).unwrap();
        assert!(s.terminated);
        assert_eq!(s.reward, 0.0);
        assert_eq!(env.steps_beyond_terminated(), Some(k));
    }
    // reset clears the bookkeeping
    env.reset(4);
    assert_eq!(env.steps_beyond_terminated(), None);
    assert_eq!(env.elapsed_steps(), 0);
}

#[test]
fn time_limits_truncate() {
    let mut env = Pendulum::new();
    env.reset(0);
    for t in 1..=200 {
        let s = env.step(&Action::Continuous(vec![0.0])).unwrap();
        assert_eq!(s.truncated, t == 200);
        assert!(!s.terminated);
    }
    assert_eq!(env.max_episode_steps(), 200);
    assert_eq!(CartPole::new().max_episode_steps(), 500);
}

#[test]
fn spaces_and_resets() {
    let cp = make("CartPole-v1").unwrap();
    assert_eq!(cp.action_space(), Space::Discrete { n: 2 });
    assert_eq!(cp.observation_space().dim(), 4);
    let pe = make("pendulum-v1").unwrap();
    assert_eq!(
        pe.action_space(),
        Space::Box {
            low: vec![-2.0],
            high: vec![2.0]
        }
    );
    assert!(make("MountainCar-v0").is_err());
    let mut c = CartPole::new();
    for seed in 0..200 {
        let o = c.reset(seed);
        assert!(c.state().iter().all(|v| (-0.05..0.05).contains(v)));
        assert_eq!(o, c.observation());
    }
    assert_eq!(c.reset(7), c.reset(7));
    let mut p = Pendulum::new();
    for seed in 0..200 {
        p.reset(seed);
        let s = p.state();
        assert!((-std::f64::consts::PI..std::f64::consts::PI).contains(&s[0]));
        assert!((-1.0..1.0).contains(&s[1]));
    }
    assert_eq!(
        pendulum::angle_normalize(-std::f64::consts::PI),
        -std::f64::consts::PI
    );
}

fn random_cartpole_mean_length(episodes: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut env = CartPole::new();
    let mut total = 0usize;
    for ep in 0..episodes {
        env.reset(seed.wrapping_mul(1_000_003).wrapping_add(ep as u64));
        loop {
            let s = env.step(&Action::Discrete(rng.random_range(0..2))).unwrap();
            total += 1;
            if s.terminated || s.truncated {
                break;
            }
        }
    }
    total as f64 / episodes as f64
}

fn random_pendulum_mean_return(episodes: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut env = Pendulum::new();
    let mut total = 0.0;
    for ep in 0..episodes {
        env.reset(seed.wrapping_mul(1_000_003).wrapping_add(ep as u64));
        loop {
            let u: f32 = rng.random_range(-2.0f32..2.0);
            let s = env.step(&Action::Continuous(vec![u])).unwrap();
            total += s.reward;
            if s.terminated || s.truncated {
                break;
            }
        }
    }
    total / episodes as f64
}

#[test]
fn random_policy_cartpole_mean_length() {
    let mean = random_cartpole_mean_length(1000, 42);
    eprintln!("CartPole random policy: mean episode length {mean:.3} over 1000 episodes");
    assert!((mean - 21.9).abs() <= 1.5, "mean length {mean}");
}

#[test]
fn random_policy_pendulum_mean_return() {
    let mean = random_pendulum_mean_return(100, 42);
    eprintln!("Pendulum random policy: mean return {mean:.2} over 100 episodes");
    assert!((mean + 1180.0).abs() <= 100.0, "mean return {mean}");
}
