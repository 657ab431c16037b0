//! `eqprop env replay|random` and `eqprop render` end to end.

use std::process::Command;

mod common;
use common::temp_dir;

fn eqprop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eqprop"))
        .args(args)
        .output()
        .expect("running eqprop")
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn replay_reports_zero_mismatches_and_fails_on_a_corrupted_fixture() {
    for name in ["gym_cartpole.json", "gym_pendulum.json"] {
        let out = eqprop(&["env", "replay", &fixture(name)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains(" 0 mismatching"), "{stdout}");
    }
    let text = std::fs::read_to_string(fixture("gym_cartpole.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["episodes"][0]["steps"][0][3] = serde_json::Value::String("0x0.0p+0".into());
    let dir = temp_dir("env-cli");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    let out = eqprop(&["env", "replay", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 1 mismatching"));
}

#[test]
fn random_and_render() {
    let out = eqprop(&[
        "env",
        "random",
        "--env",
        "cartpole-v1",
        "--episodes",
        "50",
        "--seed",
        "3",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("mean length"));
    assert!(
        !eqprop(&["env", "random", "--env", "nope", "--episodes", "1"])
            .status
            .success()
    );
    let dir = temp_dir("env-render");
    let gif = dir.join("episode.gif");
    let out = eqprop(&[
        "render",
        "--env",
        "cartpole-v1",
        "--policy",
        "random",
        "--seed",
        "1",
        "--out",
        gif.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&gif).unwrap();
    assert!(bytes.starts_with(b"GIF89a"));
}
