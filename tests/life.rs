//! The living agent: one world model learns several worlds told apart by a context input, its
//! dreams of an old world keep it while fine-tuning forgets, the surprise gate decides when to
//! learn, and `eqprop life` writes its files and rejects bad input.

mod common;

use eqprop::agent::life::{Life, LifeOptions, Strategy};
use eqprop::agent::{Model, Task, TrueModel};
use eqprop::env::{Physics, world};
use eqprop::modulator::{Modulator, Threshold};
use eqprop::world_model::{WorldModel, WorldModelConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `(obs, action, next)` of `n` random-policy CartPole steps in a world.
fn transitions(physics: &Physics, n: usize, seed: u64) -> Vec<(Vec<f32>, usize, Vec<f32>)> {
    let task = Task::CartPole;
    let mut env = physics.make();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut out, mut episode) = (Vec::with_capacity(n), seed);
    let mut obs = env.reset(episode);
    while out.len() < n {
        let a = rng.random_range(0..2);
        let step = env.step(&task.env_action(a)).unwrap();
        out.push((obs.clone(), a, step.obs.clone()));
        obs = step.obs;
        if step.terminated || step.truncated {
            episode += 1;
            obs = env.reset(episode);
        }
    }
    out
}

/// RMS over components of the prediction error over the std of the real change, in world
/// `context`.
fn error(model: &mut WorldModel, context: usize, data: &[(Vec<f32>, usize, Vec<f32>)]) -> f64 {
    model.set_context(context).unwrap();
    let d = data[0].0.len();
    let (mut sq, mut ch, mut ch2) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let mut next = vec![0.0; d];
    for (obs, a, real) in data {
        model.predict(obs, &[*a], &mut next);
        for j in 0..d {
            let c = f64::from(real[j] - obs[j]);
            sq[j] += f64::from(next[j] - real[j]).powi(2);
            ch[j] += c;
            ch2[j] += c * c;
        }
    }
    let n = data.len() as f64;
    let rel: f64 = (0..d)
        .map(|j| sq[j] / n / (ch2[j] / n - (ch[j] / n).powi(2)))
        .sum();
    (rel / d as f64).sqrt()
}

fn small_config(contexts: usize) -> WorldModelConfig {
    WorldModelConfig {
        hidden: vec![48],
        replay: 8,
        rehearse: 4,
        updates: 4,
        contexts,
        ..Default::default()
    }
}

/// Learns world 0 then world 1 (a strong motor: `force_mag=25`); returns world 0's error right
/// after it was learned and after world 1, remembering world 0 by `remember`.
fn two_worlds(remember: &str) -> (f64, f64) {
    let worlds = world::parse_worlds("cartpole-v1", "default; force_mag=25").unwrap();
    let first = transitions(&worlds[0], 1500, 1);
    let second = transitions(&worlds[1], 1500, 2);
    let held_out = transitions(&worlds[0], 400, 3);
    let mut model = WorldModel::new(Task::CartPole, small_config(2)).unwrap();
    for (obs, a, next) in &first {
        model.learn(obs, *a, next);
    }
    let before = error(&mut model, 0, &held_out);
    match remember {
        // The model's own predictions at states it imagines from the first world's starts.
        "dreams" => {
            let mut states = Vec::new();
            let mut actions = Vec::new();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let mut env = worlds[0].make();
            for episode in 0..60 {
                let mut obs = env.reset(100 + episode);
                for _ in 0..30 {
                    let a = rng.random_range(0..2);
                    let mut next = vec![0.0; 4];
                    model.predict(&obs, &[a], &mut next);
                    states.extend_from_slice(&obs);
                    actions.push(a);
                    if Task::CartPole.terminal(&next) {
                        break;
                    }
                    obs = next;
                }
            }
            model.keep_dreams(0, &states, &actions).unwrap();
            assert!(model.keep_dreams(5, &states, &actions).is_err());
            assert!(model.keep_dreams(0, &states[1..], &actions).is_err());
            assert_eq!(model.kept(0), actions.len());
            model.forget_recent(false);
        }
        "real" => model.forget_recent(true),
        _ => model.forget_recent(false),
    }
    model.set_context(1).unwrap();
    for (obs, a, next) in &second {
        model.learn(obs, *a, next);
    }
    (before, error(&mut model, 0, &held_out))
}

#[test]
fn dreams_keep_an_old_world_that_fine_tuning_forgets() {
    let (before, tuned) = two_worlds("fine-tune");
    let (same, dreamed) = two_worlds("dreams");
    let (_, real) = two_worlds("real");
    eprintln!(
        "world 0: {before:.4} learned; after world 1: fine-tune {tuned:.4}, dreams {dreamed:.4}, real {real:.4}"
    );
    assert_eq!(before, same, "the first world is learned the same way");
    assert!(
        tuned > 5.0 * before,
        "fine-tuning forgets: {tuned} vs {before}"
    );
    assert!(
        dreamed < 1.75 * before,
        "dreams keep it: {dreamed} vs {before}"
    );
    assert!(
        real < 1.75 * before,
        "kept real transitions keep it: {real} vs {before}"
    );
}

#[test]
fn the_context_tells_the_worlds_apart() {
    // One model, both worlds interleaved: each context predicts its own world.
    let worlds = world::parse_worlds("cartpole-v1", "default; force_mag=25").unwrap();
    let data: Vec<_> = (0..2)
        .map(|w| transitions(&worlds[w], 1500, w as u64))
        .collect();
    let mut model = WorldModel::new(Task::CartPole, small_config(2)).unwrap();
    for i in 0..1500 {
        for (w, d) in data.iter().enumerate() {
            model.set_context(w).unwrap();
            let (obs, a, next) = &d[i];
            model.learn(obs, *a, next);
        }
    }
    let own = error(&mut model, 0, &data[0][1000..]);
    let crossed = error(&mut model, 1, &data[0][1000..]);
    eprintln!("world 0's transitions: context 0 {own:.4}, context 1 {crossed:.4}");
    assert!(crossed > 5.0 * own, "{crossed} vs {own}");
    assert!(model.set_context(2).is_err());
}

#[test]
fn only_a_model_of_several_worlds_rehearses() {
    // One world: a short replay is fine whatever `rehearse` says (as `eqprop agent --replay 4`).
    let one = WorldModelConfig {
        replay: 4,
        ..Default::default()
    };
    assert!(one.validate().is_ok());
    let several = WorldModelConfig { contexts: 3, ..one };
    let e = several.validate().unwrap_err().to_string();
    assert!(e.contains("rehearse"), "{e}");
}

#[test]
fn the_gate_decides_when_to_learn() {
    let data = transitions(&Physics::default_for("cartpole-v1").unwrap(), 50, 4);
    for (value, learns) in [(1e9f32, false), (0.0, true)] {
        let config = WorldModelConfig {
            gate: Some(Modulator {
                threshold: Threshold::Fixed { value },
                gain: 1.0,
            }),
            ..small_config(0)
        };
        let mut model = WorldModel::new(Task::CartPole, config).unwrap();
        let reports: Vec<_> = data.iter().map(|(o, a, n)| model.learn(o, *a, n)).collect();
        assert!(reports.iter().all(|r| r.learned == learns));
        // A step that learns makes `updates` EqProp updates, replay and all; one that does not
        // makes none.
        let want = if learns { 4 * data.len() } else { 0 };
        assert_eq!(model.updates(), want);
    }
}

/// A relative gate that has climbed in world 0, then meets world 1 and comes back.
fn thresholds_across_worlds(per_world: bool) -> (f32, f32, f32, f32) {
    let data = transitions(&Physics::default_for("cartpole-v1").unwrap(), 200, 6);
    let gate = Modulator {
        threshold: Threshold::Relative {
            share: 0.05,
            rate: 0.05,
        },
        gain: 1.0,
    };
    let config = WorldModelConfig {
        gate: Some(gate),
        gate_per_world: per_world,
        updates: 1,
        ..small_config(2)
    };
    let mut model = WorldModel::new(Task::CartPole, config).unwrap();
    let start = model.threshold();
    for (o, a, n) in &data {
        model.learn(o, *a, n);
    }
    let climbed = model.threshold();
    model.set_context(1).unwrap();
    let new_world = model.threshold();
    model.set_context(0).unwrap();
    (start, climbed, new_world, model.threshold())
}

#[test]
fn each_world_has_its_own_gate_state_unless_shared() {
    let (start, climbed, new_world, back) = thresholds_across_worlds(true);
    // 200 steps at rate 0.05 lift the threshold many e-folds above its start.
    assert!(climbed > 1e3 * start, "{start} -> {climbed}");
    // A world met for the first time starts where the first did; the old one keeps its own.
    assert_eq!(new_world, start);
    assert_eq!(back, climbed);
    let (_, climbed, new_world, _) = thresholds_across_worlds(false);
    assert_eq!(new_world, climbed);
}

#[test]
fn a_world_of_another_environment_is_refused() {
    let pendulum = Physics::default_for("pendulum-v1").unwrap();
    assert!(TrueModel::with_physics(Task::CartPole, pendulum).is_err());
    let mut options = LifeOptions::new("cartpole-v1");
    options.worlds = Some(vec![pendulum]);
    let e = Life::new(options).err().unwrap().to_string();
    assert!(e.contains("not a world of"), "{e}");
}

/// A short life with small settings.
fn short_life(strategy: Strategy, out: &std::path::Path) -> eqprop::agent::life::LifeOutcome {
    short_life_with(strategy, out, |_| {})
}

/// A short life with small settings, then `tweak`ed.
fn short_life_with(
    strategy: Strategy,
    out: &std::path::Path,
    tweak: impl FnOnce(&mut LifeOptions),
) -> eqprop::agent::life::LifeOutcome {
    let mut options = LifeOptions::new("cartpole-v1");
    options.worlds = Some(world::parse_worlds("cartpole-v1", "default; masscart=2").unwrap());
    options.strategy = strategy;
    options.dreams = 100;
    let a = &mut options.agent;
    a.learn_steps = Some(150);
    a.eval_episodes = Some(1);
    a.horizon = Some(5);
    a.samples = Some(8);
    a.world = small_config(0);
    a.seed = 2;
    a.out = Some(out.to_path_buf());
    tweak(&mut options);
    Life::new(options).unwrap().run(|_| {}).unwrap()
}

#[test]
fn a_dream_takes_the_learning_time_exploration_unless_told_its_own() {
    let errors = |explore: Option<f64>| {
        let dir = common::temp_dir("life-explore");
        let o = short_life_with(Strategy::Dreams, &dir, |o| o.dream_explore = explore);
        let errors: Vec<Vec<f64>> = o.tests.iter().map(|t| t.component_errors.clone()).collect();
        errors
    };
    let (default, same, calm) = (errors(None), errors(Some(0.3)), errors(Some(0.0)));
    assert_eq!(default, same, "the default is --explore's 0.3");
    assert_eq!(default[0], calm[0], "world 1 is learned before any dream");
    assert_ne!(default[1..], calm[1..], "other dreams, another rehearsal");
}

#[test]
fn a_life_tests_every_world_learned_and_writes_its_files() {
    let dir = common::temp_dir("life");
    let o = short_life(Strategy::Dreams, &dir);
    assert_eq!(o.switches, vec![0, 150]);
    assert_eq!(o.steps.len(), 300);
    let tested: Vec<(usize, usize)> = o.tests.iter().map(|t| (t.stage, t.world)).collect();
    assert_eq!(tested, vec![(0, 0), (1, 0), (1, 1)]);
    assert!(
        o.tests
            .iter()
            .all(|t| t.error.is_finite() && t.mean_length >= 1.0)
    );
    let matrix = std::fs::read_to_string(dir.join("matrix.csv")).unwrap();
    assert_eq!(matrix.lines().count(), 4, "{matrix}");
    assert!(matrix.contains(",masscart=2,"), "{matrix}");
    let steps = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
    assert_eq!(steps.lines().count(), 301);
    for gif in ["world-1.gif", "world-2.gif"] {
        assert!(
            std::fs::metadata(dir.join(gif)).unwrap().len() > 1000,
            "{gif}"
        );
    }
    // The same seed lives the same first world whatever it keeps; joint learning is one stage.
    let tuned = short_life(Strategy::FineTune, &common::temp_dir("life-ft"));
    let (a, b) = (&tuned.tests[0], &o.tests[0]);
    assert_eq!(
        (a.mean_length, a.mean_return, &a.component_errors),
        (b.mean_length, b.mean_return, &b.component_errors)
    );
    let joint = short_life(Strategy::Joint, &common::temp_dir("life-joint"));
    assert_eq!(joint.stages, vec![vec![0, 1]]);
    assert_eq!(joint.steps.len(), 300);
    assert!(joint.steps.iter().any(|s| s.world == 0) && joint.steps.iter().any(|s| s.world == 1));
}

#[test]
fn life_command_writes_its_files_and_rejects_bad_input() {
    let dir = common::temp_dir("life-cli");
    let out = common::eqprop()
        .args([
            "life",
            "--env",
            "pendulum-v1",
            "--worlds",
            "default;g=6",
            "--learn-steps",
            "60",
            "--eval-episodes",
            "1",
            "--horizon",
            "5",
            "--samples",
            "8",
            "--dreams",
            "50",
            "--hidden",
            "16",
            "--updates",
            "2",
            "--seed",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    common::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("world 2: g=6"), "{stdout}");
    assert!(
        stdout.contains("the error right after it was learned"),
        "{stdout}"
    );
    for f in [
        "matrix.csv",
        "steps.csv",
        "life.svg",
        "matrix.svg",
        "world-1.gif",
        "world-2.gif",
    ] {
        assert!(dir.join(f).exists(), "{f} missing: {stdout}");
    }
    for (args, says) in [
        (
            vec!["--worlds", "default;gravity=3"],
            "unknown constant \"gravity\"",
        ),
        (vec!["--worlds", "g=-1"], "g must be positive"),
        (vec!["--gate-share", "1.5"], "gate share must be in (0, 1]"),
        (
            vec!["--no-gate", "--gate-threshold", "0.1"],
            "--no-gate conflicts",
        ),
        (vec!["--dreams", "0"], "--dreams must be positive"),
        (
            vec!["--dream-explore", "1.5"],
            "--dream-explore must be a probability in [0, 1]",
        ),
        (vec!["--no-gate", "--gate-cap", "4"], "--no-gate conflicts"),
        (vec!["--no-gate", "--gate-shared"], "--no-gate conflicts"),
        (
            vec!["--gate-smoothing", "0"],
            "smoothing must be in (0, 1], got 0",
        ),
        (
            vec!["--gate-cap", "0.5"],
            "cap must be a finite factor >= 1",
        ),
        (
            vec!["--gate-rate", "0"],
            "gate step must be positive, got 0",
        ),
        (
            vec!["--gate-threshold", "0.1", "--gate-rate", "0.05"],
            "a fixed gate threshold has no share or rate",
        ),
    ] {
        let out = common::eqprop()
            .args(["life", "--env", "pendulum-v1"])
            .args(&args)
            .output()
            .unwrap();
        common::assert_clear_error(&out, &[says]);
    }
}
