//! `env replay` refuses malformed fixtures (wrong vector lengths, no episodes, no steps) and
//! reports one readable line per bad step.

use eqprop::env::fixture::{parse_hex_f64, replay, replay_json};
use serde_json::{Value, json};
use std::process::Command;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn refused(v: &Value, needles: &[&str]) {
    let err = replay(v).expect_err("a malformed fixture").to_string();
    for needle in needles {
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    }
}

#[test]
fn vector_lengths_are_checked() {
    let cart = fixture("gym_cartpole.json");
    let mut v = cart.clone();
    v["episodes"][0]["steps"][3][1]
        .as_array_mut()
        .unwrap()
        .pop();
    refused(
        &v,
        &["episode 0: step 3: state has 3 values, the environment 4"],
    );
    let mut v = cart.clone();
    v["episodes"][1]["steps"][0][2]
        .as_array_mut()
        .unwrap()
        .push(json!("0.5"));
    refused(
        &v,
        &["episode 1: step 0: obs has 5 values, the environment 4"],
    );
    let mut v = cart.clone();
    v["episodes"][0]["initial_state"]
        .as_array_mut()
        .unwrap()
        .pop();
    refused(
        &v,
        &["episode 0: initial_state has 3 values, the environment 4"],
    );
    let mut v = cart.clone();
    v["episodes"][0]["initial_obs"] = json!([]);
    refused(
        &v,
        &["episode 0: initial_obs has 0 values, the environment 4"],
    );
    let mut v = cart;
    v["episodes"][0]["steps"][2] = json!([0, ["0x0p+0"]]);
    refused(&v, &["episode 0: step 2: state has 1 values"]);
    let mut v = fixture("gym_pendulum.json");
    v["episodes"][0]["steps"][5][0] = json!(["0x1p-1", "0x1p-2"]);
    refused(
        &v,
        &["episode 0: step 5: action has 2 values, the environment 1"],
    );
    let mut v = fixture("gym_pendulum.json");
    v["episodes"][0]["steps"][5]
        .as_array_mut()
        .unwrap()
        .truncate(4);
    refused(&v, &["episode 0: step 5: no terminated"]);
}

#[test]
fn episodes_and_steps_must_not_be_empty() {
    let mut v = fixture("gym_cartpole.json");
    v["episodes"] = json!([]);
    refused(&v, &["no episodes"]);
    let mut v = fixture("gym_pendulum.json");
    v["episodes"][2]["steps"] = json!([]);
    refused(&v, &["episode 2: no steps"]);
    assert!(
        replay_json("")
            .unwrap_err()
            .to_string()
            .contains("not JSON")
    );
    // A list holds the fixtures of several worlds: an empty one has none, and each one is
    // checked as a fixture, named by its place.
    assert!(
        replay_json("[]")
            .unwrap_err()
            .to_string()
            .contains("no fixtures")
    );
    assert!(
        replay_json("[{}]")
            .unwrap_err()
            .to_string()
            .contains("fixture 0: missing env_id")
    );
}

/// Two wrong values in one step and one invalid action: two lines, readable values.
#[test]
fn one_line_per_bad_step() {
    let mut v = fixture("gym_cartpole.json");
    let step = &mut v["episodes"][0]["steps"][4];
    step[1][2] = json!("0x1.8p+1");
    step[2][0] = json!("0.25");
    // The last step of episode 1: the environment refuses it (and so stays in step).
    let steps = v["episodes"][1]["steps"].as_array_mut().unwrap();
    let last = steps.len() - 1;
    steps[last][0] = json!(2);
    let rep = replay(&v).unwrap();
    assert_eq!(rep.bad_steps, 2, "{:#?}", rep.details);
    assert_eq!(rep.mismatches, 2 + 11, "{:#?}", rep.details);
    assert_eq!(rep.details.len(), 2);
    let line = &rep.details[0];
    assert!(line.starts_with("episode 0 step 4: state[2] "), "{line}");
    assert!(line.contains("(gym 3.0), obs[0] "), "{line}");
    assert!(line.ends_with("(gym 0.25)"), "{line}");
    assert!(!line.contains("Some("), "{line}");
    assert_eq!(
        rep.details[1],
        format!("episode 1 step {last}: invalid action for CartPole-v1: 2 is not in Discrete(2)")
    );
    assert!(
        rep.summary().ends_with("13 mismatching (in 2 steps)"),
        "{}",
        rep.summary()
    );
}

#[test]
fn the_cli_prints_one_line_per_bad_step() {
    let mut v = fixture("gym_pendulum.json");
    v["episodes"][0]["steps"][0][3] = json!("0x0.0p+0");
    v["episodes"][0]["steps"][0][5] = json!(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eqprop"))
        .args(["env", "replay"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("mismatch:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("mismatch: episode 0 step 0: reward ")
            && lines[0].ends_with("(gym 0.0), truncated false (gym true)"),
        "{stdout}"
    );
    assert!(stdout.contains(" 2 mismatching (in 1 step)"), "{stdout}");
    assert!(
        stderr.contains("bad.json: 2 mismatching values in 1 step"),
        "{stderr}"
    );
    std::fs::write(&path, r#"{"env_id": "CartPole-v1", "episodes": []}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eqprop"))
        .args(["env", "replay"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("malformed fixture") && stderr.contains("no episodes"),
        "{stderr}"
    );
}

/// Exponents far out of range neither overflow nor loop for long.
#[test]
fn extreme_hex_exponents() {
    assert_eq!(parse_hex_f64("0x1p-2147483648"), Some(0.0));
    assert_eq!(parse_hex_f64("0x1.0p-2147483648"), Some(0.0));
    assert_eq!(parse_hex_f64("-0x1.8p+2147483647"), Some(f64::NEG_INFINITY));
    assert_eq!(parse_hex_f64("0x0p+2147483647"), Some(0.0));
    assert_eq!(parse_hex_f64("0x1.fffffffffffffp+1023"), Some(f64::MAX));
    assert_eq!(parse_hex_f64("0x0.0000000000001p-1022"), Some(5e-324));
    assert_eq!(parse_hex_f64("0x+1p0"), None);
}
