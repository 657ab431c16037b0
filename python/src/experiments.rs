//! The continual-learning benchmark and the robot, as `eqprop continual` and `eqprop agent`
//! run them, with their results as JSON for the Python side.

use crate::data::Dataset;
use crate::errors::lib;
use crate::training::run_interruptibly;
use eqprop::agent::life::{Life, LifeOptions, Strategy, life_gate};
use eqprop::agent::{Experiment as Agent, ExperimentOptions, ModelKind, Stage};
use eqprop::config::Hyperparams;
use eqprop::continual::{Experiment, Protocol, Replay, Scenario};
use eqprop::dream::DreamOptions;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn choice<T: Copy>(
    what: &str,
    value: &str,
    options: &[T],
    name: fn(T) -> &'static str,
) -> PyResult<T> {
    options
        .iter()
        .copied()
        .find(|&option| name(option) == value)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|&o| name(o)).collect();
            PyValueError::new_err(format!("{what}: {value:?} is not one of {names:?}"))
        })
}

/// Split-MNIST (or Split-Fashion-MNIST) task after task: `eqprop continual` with its defaults.
/// `hyperparams` is the network's settings as JSON (the protocol's preset when `None`); the
/// files go to `out`. Returns the summary as JSON (the accuracy matrix, its average, the
/// forgetting, the seconds).
#[pyfunction]
#[pyo3(signature = (
    train, test, out, protocol="split-mnist", scenario="class", replay="dreams",
    epochs_per_task=5, tasks=5, replay_per_class=1000, hyperparams=None
))]
#[allow(clippy::too_many_arguments)]
pub fn continual(
    py: Python<'_>,
    train: &Dataset,
    test: &Dataset,
    out: PathBuf,
    protocol: &str,
    scenario: &str,
    replay: &str,
    epochs_per_task: usize,
    tasks: usize,
    replay_per_class: usize,
    hyperparams: Option<&str>,
) -> PyResult<String> {
    use Replay::{Dreams, Joint, None as NoReplay, Real};
    let experiment = Experiment {
        protocol: choice(
            "protocol",
            protocol,
            &[Protocol::SplitMnist, Protocol::SplitFashionMnist],
            Protocol::name,
        )?,
        scenario: choice(
            "scenario",
            scenario,
            &[Scenario::Class, Scenario::Task, Scenario::Domain],
            Scenario::name,
        )?,
        replay: choice(
            "replay",
            replay,
            &[NoReplay, Dreams, Real, Joint],
            Replay::name,
        )?,
        epochs_per_task,
        tasks,
        replay_per_class,
        ..Experiment::default()
    };
    let (hp, layers_given) = match hyperparams {
        Some(json) => {
            let hp: Hyperparams = serde_json::from_str(json)
                .map_err(|e| PyValueError::new_err(format!("hyperparams: {e}")))?;
            (hp, true)
        }
        None => (
            lib(Hyperparams::preset(experiment.protocol.default_preset()))?,
            false,
        ),
    };
    let hp = lib(experiment.hyperparams(hp, layers_given))?;
    let dream = DreamOptions::dreaming(&hp); // `eqprop continual`'s dreams

    let options = lib(experiment.options(&hp, dream))?;
    lib(std::fs::create_dir_all(&out).map_err(|e| eqprop::Error::io(&out, e)))?;
    let stop = AtomicBool::new(false);
    let (train, test) = (&train.inner, &test.inner);
    let (outcome, signal) = run_interruptibly(py, &stop, || {
        let outcome = experiment.run(&hp, &options, train, test, &out, |_| {})?;
        experiment.write_results(&out, &hp, &options, &outcome)?;
        Ok::<_, eqprop::Error>(outcome)
    })?;
    if let Some(e) = signal {
        return Err(e);
    }
    let outcome = lib(outcome)?;
    let m = &outcome.matrix;
    let summary = serde_json::json!({
        "accuracy": m.accuracy,
        "average_accuracy": m.final_average(),
        "forgetting": m.forgetting(),
        "seconds": outcome.seconds,
        "tasks": options.tasks,
    });
    Ok(summary.to_string())
}

/// The robot: `eqprop agent` on `cartpole-v1` or `pendulum-v1` (learning its world model
/// online, then evaluated with it frozen), its files in `out`. Returns the summary and every
/// episode as JSON.
#[pyfunction]
#[pyo3(signature = (env, out, seed=0, model="eqprop", learn_steps=None, eval_episodes=None, gif=false))]
#[allow(clippy::too_many_arguments)]
pub fn agent(
    py: Python<'_>,
    env: &str,
    out: PathBuf,
    seed: u64,
    model: &str,
    learn_steps: Option<usize>,
    eval_episodes: Option<usize>,
    gif: bool,
) -> PyResult<String> {
    let kinds = [ModelKind::Eqprop, ModelKind::True, ModelKind::Random];
    let model = choice("model", model, &kinds, ModelKind::name)?;
    let mut options = ExperimentOptions::new(env);
    options.world = eqprop::world_model::WorldModelConfig {
        seed,
        ..options.world
    };
    let options = ExperimentOptions {
        model,
        seed,
        learn_steps,
        eval_episodes,
        out: Some(out),
        gif,
        ..options
    };
    let stop = AtomicBool::new(false);
    // The environment lives on the engine's thread: it is built there.
    let (outcome, signal) = run_interruptibly(py, &stop, || Agent::new(options)?.run(|_| {}))?;
    if let Some(e) = signal {
        return Err(e);
    }
    let outcome = lib(outcome)?;
    let s = outcome.summary();
    let episodes: Vec<serde_json::Value> = outcome
        .records
        .iter()
        .map(|r| {
            serde_json::json!({
                "stage": if r.stage == Stage::Learn { "learn" } else { "eval" },
                "episode": r.episode,
                "steps": r.ep.steps,
                "return": r.ep.ret,
                "one_step_error": r.ep.pred_error,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "learn_steps": s.learn_steps,
        "eval_episodes": s.eval_episodes,
        "mean_length": s.mean_length,
        "mean_return": s.mean_return,
        "one_step_error": s.one_step_error,
        "component_errors": s.component_errors,
        "median_decision_seconds": s.median_decision_seconds,
        "episodes": episodes,
        "rollout": outcome.rollout.as_ref().map(|r| serde_json::json!({
            "real": r.real,
            "imagined": r.imagined,
            "actions": r.actions,
        })),
    });
    Ok(summary.to_string())
}

/// The living agent: `eqprop life` on `cartpole-v1` or `pendulum-v1` (world after world, the
/// old ones kept by the strategy), its files in `out`. Returns every test (the error matrix) and
/// the gate's shares as JSON. The other settings are `eqprop life`'s options of the same names
/// (`gate = false` is `--no-gate`).
#[pyfunction]
#[pyo3(signature = (env, out, seed=0, strategy="dreams", worlds=None, learn_steps=None, eval_episodes=None, gate=true, gif=false, gate_smoothing=None, gate_cap=None, updates=None, dreams=None, dream_length=None, dream_explore=None, gate_threshold=None, gate_share=None, gate_rate=None, gate_shared=false))]
#[allow(clippy::too_many_arguments)]
pub fn life(
    py: Python<'_>,
    env: &str,
    out: PathBuf,
    seed: u64,
    strategy: &str,
    worlds: Option<&str>,
    learn_steps: Option<usize>,
    eval_episodes: Option<usize>,
    gate: bool,
    gif: bool,
    gate_smoothing: Option<f32>,
    gate_cap: Option<f32>,
    updates: Option<usize>,
    dreams: Option<usize>,
    dream_length: Option<usize>,
    dream_explore: Option<f64>,
    gate_threshold: Option<f32>,
    gate_share: Option<f32>,
    gate_rate: Option<f32>,
    gate_shared: bool,
) -> PyResult<String> {
    let strategies = [
        Strategy::Dreams,
        Strategy::FineTune,
        Strategy::Real,
        Strategy::Joint,
    ];
    let strategy = choice("strategy", strategy, &strategies, Strategy::name)?;
    let worlds = match worlds {
        Some(spec) => Some(lib(eqprop::env::world::parse_worlds(env, spec))?),
        None => None,
    };
    let mut options = LifeOptions::new(env);
    let a = &mut options.agent;
    a.world.seed = seed;
    a.seed = seed;
    a.learn_steps = learn_steps;
    a.eval_episodes = eval_episodes;
    a.out = Some(out);
    a.gif = gif;
    options.strategy = strategy;
    options.worlds = worlds;
    a.world.updates = updates.unwrap_or(a.world.updates);
    options.dreams = dreams.unwrap_or(options.dreams);
    options.dream_length = dream_length;
    options.dream_explore = dream_explore;
    options.gate_smoothing = gate_smoothing;
    options.gate_cap = gate_cap;
    options.gate_per_world = !gate_shared;
    options.gate = lib(life_gate(gate, gate_threshold, gate_share, gate_rate))?;
    let stop = AtomicBool::new(false);
    let (outcome, signal) = run_interruptibly(py, &stop, || Life::new(options)?.run(|_| {}))?;
    if let Some(e) = signal {
        return Err(e);
    }
    let o = lib(outcome)?;
    let tests: Vec<serde_json::Value> = o
        .tests
        .iter()
        .map(|t| {
            serde_json::json!({
                "stage": t.stage + 1,
                "world": t.world + 1,
                "mean_length": t.mean_length,
                "mean_return": t.mean_return,
                "one_step_error": t.error,
                "component_errors": t.component_errors,
                "median_decision_seconds": t.median_decision,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "worlds": o.worlds.iter().map(|w| w.spec()).collect::<Vec<_>>(),
        "strategy": o.strategy.name(),
        "tests": tests,
        "switches": o.switches,
        "learned_share": o.learned_share(),
        "updates": o.updates,
    });
    Ok(summary.to_string())
}
