//! `eqprop agent`: online world-model learning and planning on CartPole or Pendulum.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use eqprop::agent::{
    Agent, Brain, Episode, EpisodeOptions, Planner, PlannerConfig, Search, Task, TrueModel, median,
};
use eqprop::learning_rule::Nudging;
use eqprop::modulator::{Modulator, Threshold};
use eqprop::world_model::{WorldModel, WorldModelConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;

/// Which model the planner imagines with.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// The online EqProp world model, learned from a blank network.
    Eqprop,
    /// The true simulator (the ceiling).
    True,
    /// No model: uniformly random actions (the floor).
    Random,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// cartpole-v1 or pendulum-v1.
    #[arg(long)]
    pub env: String,
    /// Learning episodes at most (the step budget may end learning first).
    #[arg(long, default_value_t = 1000)]
    pub episodes: usize,
    /// Environment steps of online learning at most [default: 3000 CartPole, 4000 Pendulum].
    #[arg(long)]
    pub learn_steps: Option<usize>,
    /// Evaluation episodes after learning, the model frozen [default: 20 CartPole, 10 Pendulum].
    #[arg(long)]
    pub eval_episodes: Option<usize>,
    /// Steps imagined ahead [default: 20 CartPole, 30 Pendulum].
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Action sequences imagined per decision (per CEM round).
    #[arg(long)]
    pub samples: Option<usize>,
    /// How the planner searches [default: shooting CartPole, cem Pendulum].
    #[arg(long, value_enum)]
    pub search: Option<Search>,
    /// CEM rounds.
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    #[arg(long, value_enum, default_value = "eqprop")]
    pub model: ModelKind,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pendulum's torque candidates, e.g. -2,-1,0,1,2.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',', allow_hyphen_values = true)]
    pub torques: Option<Vec<f32>>,
    /// Probability of a random action while learning.
    #[arg(long, default_value_t = 0.0)]
    pub explore: f64,
    /// Output folder for episodes.csv, returns.svg and last-episode.gif [default:
    /// runs/agent-<env>-<model>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the GIF of the last episode.
    #[arg(long)]
    pub no_gif: bool,
    #[command(flatten)]
    pub world: WorldArgs,
}

/// The world model's settings (defaults: [`WorldModelConfig::default`]).
#[derive(Args, Debug)]
pub struct WorldArgs {
    /// Hidden layer sizes, e.g. 64 or 64,32.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// One learning rate per coupling layer.
    #[arg(long, action = clap::ArgAction::Set, value_delimiter = ',')]
    pub lr: Option<Vec<f32>>,
    #[arg(long)]
    pub beta: Option<f32>,
    #[arg(long, value_enum)]
    pub nudging: Option<Nudging>,
    #[arg(long)]
    pub t_free: Option<usize>,
    #[arg(long)]
    pub t_nudge: Option<usize>,
    #[arg(long)]
    pub eps: Option<f32>,
    /// Replayed transitions learned beside each new one (0: none).
    #[arg(long)]
    pub replay: Option<usize>,
    /// Recent transitions the replay draws from.
    #[arg(long)]
    pub replay_capacity: Option<usize>,
    /// Surprise gate with a fixed threshold on the output cost 1/2 ||y - t||^2.
    #[arg(long, conflicts_with = "gate_share")]
    pub gate_threshold: Option<f32>,
    /// Surprise gate whose threshold lets about this share of transitions learn.
    #[arg(long)]
    pub gate_share: Option<f32>,
    /// The network predicts every component's change, positions included (by default it
    /// predicts the velocities' changes and the positions follow by known kinematics).
    #[arg(long)]
    pub learn_positions: bool,
    /// Standard deviations of a change spanning an output unit's range.
    #[arg(long)]
    pub span: Option<f32>,
}

impl WorldArgs {
    fn config(&self, seed: u64) -> WorldModelConfig {
        let mut c = WorldModelConfig {
            seed,
            ..Default::default()
        };
        if let Some(h) = &self.hidden {
            c.hidden.clone_from(h);
            if self.lr.is_none() {
                c.lr = (0..=h.len()).map(|k| c.lr[0] / (1 << k) as f32).collect();
            }
        }
        if let Some(lr) = &self.lr {
            c.lr.clone_from(lr);
        }
        set(&mut c.beta, self.beta);
        set(&mut c.nudging, self.nudging);
        set(&mut c.t_free, self.t_free);
        set(&mut c.t_nudge, self.t_nudge);
        set(&mut c.eps, self.eps);
        set(&mut c.replay, self.replay);
        set(&mut c.replay_capacity, self.replay_capacity);
        set(&mut c.span, self.span);
        c.kinematics = !self.learn_positions;
        if let Some(value) = self.gate_threshold {
            c.gate = Some(Modulator {
                threshold: Threshold::Fixed { value },
                gain: 1.0,
            });
        }
        if let Some(share) = self.gate_share {
            c.gate = Some(Modulator {
                threshold: Threshold::Adaptive { share, step: 1e-4 },
                gain: 1.0,
            });
        }
        c
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// One CSV row.
struct Row {
    episode: usize,
    phase: &'static str,
    seed: u64,
    env_steps: usize,
    ep: Episode,
}

pub fn agent(args: AgentArgs) -> Result<()> {
    let mut env = eqprop::env::make(&args.env)?;
    let mut task = Task::from_env_id(&args.env)?;
    let cartpole = matches!(task, Task::CartPole);
    if let (Task::Pendulum { torques }, Some(t)) = (&mut task, &args.torques) {
        if t.is_empty() || t.iter().any(|u| !u.is_finite()) {
            bail!("--torques needs finite values, got {t:?}");
        }
        torques.clone_from(t);
    }
    if !(0.0..=1.0).contains(&args.explore) {
        bail!("--explore must be in [0, 1], got {}", args.explore);
    }
    let learn_steps = match args.model {
        ModelKind::Eqprop => args
            .learn_steps
            .unwrap_or(if cartpole { 3000 } else { 4000 }),
        ModelKind::True | ModelKind::Random => 0,
    };
    let eval_episodes = args.eval_episodes.unwrap_or(if cartpole { 20 } else { 10 });
    if eval_episodes == 0 || args.episodes == 0 {
        bail!("--episodes and --eval-episodes must be at least 1");
    }
    let planner = PlannerConfig {
        horizon: args.horizon.unwrap_or(if cartpole { 20 } else { 30 }),
        samples: args.samples.unwrap_or(32),
        search: args.search.unwrap_or(if cartpole {
            Search::Shooting
        } else {
            Search::Cem
        }),
        iterations: args.iterations,
        seed: args.seed,
    };
    if planner.horizon == 0 || planner.samples == 0 || planner.iterations == 0 {
        bail!("--horizon, --samples and --iterations must be positive");
    }
    if planner.horizon.saturating_mul(planner.samples) > 10_000_000 {
        bail!(
            "--horizon {} x --samples {} imagines too many steps per decision (at most 10 million)",
            planner.horizon,
            planner.samples
        );
    }
    let world = args.world.config(args.seed);
    let brain = match args.model {
        ModelKind::Random => Brain::Random,
        ModelKind::True => Brain::True(
            Planner::new(task.clone(), planner.clone()),
            TrueModel::new(task.clone()),
        ),
        ModelKind::Eqprop => Brain::EqProp(
            Planner::new(task.clone(), planner.clone()),
            Box::new(WorldModel::new(task.clone(), world.clone())?),
        ),
    };
    let mut agent = Agent::new(task.clone(), brain, args.seed);
    let model_name = format!("{:?}", args.model).to_lowercase();
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "runs/agent-{}-{model_name}",
            args.env.to_ascii_lowercase()
        ))
    });
    super::checks::writable_dir(&out)?;
    println!(
        "{}: model {model_name}, planner {:?} horizon {} samples {}{}",
        env.id(),
        planner.search,
        planner.horizon,
        planner.samples,
        if args.model == ModelKind::Eqprop {
            format!(
                ", world model {:?} lr {:?} beta {} {:?} replay {} gate {}{}",
                world.hidden,
                world.lr,
                world.beta,
                world.nudging,
                world.replay,
                world
                    .gate
                    .map_or("off".to_string(), |g| format!("{:?}", g.threshold)),
                if world.kinematics { " kinematics" } else { "" },
            )
        } else {
            String::new()
        }
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut env_steps = 0usize;
    if learn_steps > 0 {
        let bar = ProgressBar::new(learn_steps as u64).with_style(
            ProgressStyle::with_template("learning {bar:30} {pos}/{len} steps {msg}")
                .expect("valid template"),
        );
        for i in 0..args.episodes {
            if env_steps >= learn_steps {
                break;
            }
            let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let before = env_steps;
            let opts = EpisodeOptions {
                learn: true,
                explore: args.explore,
                max_steps: learn_steps - env_steps,
                ..Default::default()
            };
            let ep = agent.episode(env.as_mut(), seed, &opts, |n| {
                bar.set_position((before + n) as u64)
            })?;
            env_steps += ep.steps;
            say(
                &bar,
                format!(
                    "learn {:4}  steps {:4}  return {:9.2}  one-step error {:.4}  gate {:.2}  env steps {env_steps}{}",
                    i + 1,
                    ep.steps,
                    ep.ret,
                    ep.pred_error,
                    ep.learned_share,
                    if ep.cut {
                        "  (cut by the step budget)"
                    } else {
                        ""
                    },
                ),
            );
            bar.set_message(format!("last return {:.1}", ep.ret));
            rows.push(Row {
                episode: i + 1,
                phase: "learn",
                seed,
                env_steps,
                ep,
            });
        }
        bar.finish_and_clear();
    }
    let bar = ProgressBar::new(eval_episodes as u64).with_style(
        ProgressStyle::with_template("evaluating {bar:30} {pos}/{len} episodes {msg}")
            .expect("valid template"),
    );
    let mut latencies = Vec::new();
    let mut eval = Vec::new();
    for i in 0..eval_episodes {
        // The same evaluation seeds for every model, apart from the learning ones.
        let seed = 1_000_000_000u64
            .wrapping_add(args.seed.wrapping_mul(1_000))
            .wrapping_add(i as u64);
        let last = i + 1 == eval_episodes;
        let opts = EpisodeOptions {
            keep_states: last && !args.no_gif,
            ..Default::default()
        };
        let ep = agent.episode(env.as_mut(), seed, &opts, |n| {
            bar.set_message(format!("step {n}"))
        })?;
        env_steps += ep.steps;
        latencies.extend_from_slice(&ep.decision_seconds);
        bar.inc(1);
        say(
            &bar,
            format!(
                "eval  {:4}  steps {:4}  return {:9.2}  one-step error {:.4}  median decision {:.3} ms",
                i + 1,
                ep.steps,
                ep.ret,
                ep.pred_error,
                1e3 * median(&ep.decision_seconds)
            ),
        );
        eval.push((ep.steps as f64, ep.ret));
        rows.push(Row {
            episode: i + 1,
            phase: "eval",
            seed,
            env_steps,
            ep,
        });
    }
    bar.finish_and_clear();

    write_csv(&out.join("episodes.csv"), &rows)?;
    // Learning episodes where they ended (not the last one if the step budget cut it short);
    // evaluation episodes at the learning steps they followed.
    let learn_steps_done = env_steps - eval.iter().map(|e| e.0 as usize).sum::<usize>();
    let learned: Vec<(usize, f64)> = rows
        .iter()
        .filter(|r| r.phase == "learn" && !r.ep.cut)
        .map(|r| (r.env_steps, r.ep.ret))
        .collect();
    let evaluated: Vec<(usize, f64)> = eval.iter().map(|e| (learn_steps_done, e.1)).collect();
    eqprop::metrics::plot_returns(
        &out.join("returns.svg"),
        &learned,
        &evaluated,
        &format!("{} - {model_name} model", env.id()),
    )
    .map_err(|e| anyhow::anyhow!("drawing returns.svg: {e}"))?;
    if !args.no_gif
        && let Some(last) = rows.last()
    {
        let ms = if cartpole { 20 } else { 33 };
        let frames = last
            .ep
            .states
            .iter()
            .map(|s| eqprop::env::render::frame(env.id(), s).context("no renderer for this env"))
            .collect::<Result<Vec<_>>>()?;
        eqprop::picture::write_gif(frames, ms, &out.join("last-episode.gif"))?;
    }

    let n = eval.len().max(1) as f64;
    let mean_len = eval.iter().map(|e| e.0).sum::<f64>() / n;
    let mean_ret = eval.iter().map(|e| e.1).sum::<f64>() / n;
    let errors: Vec<f64> = rows
        .iter()
        .filter(|r| r.phase == "eval")
        .map(|r| r.ep.pred_error)
        .filter(|e| e.is_finite())
        .collect();
    let total_decide: f64 = latencies.iter().sum();
    let learning: Vec<&Episode> = rows
        .iter()
        .filter(|r| r.phase == "learn")
        .map(|r| &r.ep)
        .collect();
    if learn_steps_done > 0 {
        let gated: f64 = learning
            .iter()
            .map(|e| e.learned_share * e.steps as f64)
            .sum();
        let seconds: f64 = learning.iter().map(|e| e.learn_seconds).sum();
        println!(
            "learning: {learn_steps_done} steps in {} episodes, {:.1}% of transitions passed the gate, {:.3} ms per learning step",
            learning.len(),
            100.0 * gated / learn_steps_done as f64,
            1e3 * seconds / learn_steps_done as f64
        );
    }
    println!(
        "{}: {model_name} model after {learn_steps_done} learning steps: {} evaluation episodes, mean length {mean_len:.1}, mean return {mean_ret:.2}, one-step error {}, {:.0} decisions/s, median decision {:.3} ms",
        env.id(),
        eval.len(),
        if errors.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.4}", errors.iter().sum::<f64>() / errors.len() as f64)
        },
        latencies.len() as f64 / total_decide.max(1e-12),
        1e3 * median(&latencies),
    );
    println!(
        "wrote {}/{{episodes.csv,returns.svg{}}}",
        out.display(),
        if args.no_gif { "" } else { ",last-episode.gif" }
    );
    Ok(())
}

fn write_csv(path: &std::path::Path, rows: &[Row]) -> Result<()> {
    let mut text = String::from(
        "episode,phase,seed,steps,return,cut,env_steps,one_step_error,learned_share,decisions_per_s,median_decision_ms,learn_ms_per_step\n",
    );
    for r in rows {
        let e = &r.ep;
        let decide: f64 = e.decision_seconds.iter().sum();
        text.push_str(&format!(
            "{},{},{},{},{:.4},{},{},{:.6},{:.4},{:.1},{:.4},{:.4}\n",
            r.episode,
            r.phase,
            r.seed,
            e.steps,
            e.ret,
            e.cut,
            r.env_steps,
            e.pred_error,
            e.learned_share,
            e.decision_seconds.len() as f64 / decide.max(1e-12),
            1e3 * median(&e.decision_seconds),
            1e3 * e.learn_seconds / e.steps.max(1) as f64,
        ));
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A line above the progress bar, or plainly when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}
