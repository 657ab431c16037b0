//! `eqprop life`: the living agent learns a sequence of worlds online and keeps the old ones by
//! dreaming them (or by a baseline strategy).

use super::agent::{RobotArgs, bar, figures, say};
use anyhow::Result;
use clap::Args;
use eqprop::agent::life::{
    DEFAULT_DREAMS, DEFAULT_LIFE_UPDATES, Life, LifeEvent, LifeOptions, LifeOutcome, SHARE_WINDOW,
    Strategy, life_gate,
};
use eqprop::env::world;
use indicatif::ProgressBar;

#[derive(Args, Debug)]
pub struct LifeArgs {
    /// The worlds in the order lived, `;`-separated, each `default` or a comma-separated list
    /// of changed constants, e.g. "default; length=1,masspole=0.3; gravity=14,force_mag=14"
    /// (CartPole: gravity, masscart, masspole, length, force_mag; Pendulum: g, m, l) [default:
    /// three worlds per environment, see docs/life.md].
    #[arg(long)]
    pub worlds: Option<String>,
    /// What the model rehearses of the worlds it has left.
    #[arg(long, value_enum, default_value = "dreams")]
    pub strategy: Strategy,
    /// Dreamed transitions kept per world.
    #[arg(long, default_value_t = DEFAULT_DREAMS)]
    pub dreams: usize,
    /// Steps of an imagined episode at most [default: 500 CartPole, 50 Pendulum].
    #[arg(long)]
    pub dream_length: Option<usize>,
    /// The probability of a random action in a dream [default: --explore's].
    #[arg(long, value_name = "P")]
    pub dream_explore: Option<f64>,
    /// Learn from every transition (no surprise gate). The default gate lets about 5% of the
    /// transitions learn at rest, its threshold tracking that quantile of the surprise on the
    /// log scale (--gate-share sets the share); --gate-threshold fixes the threshold instead.
    #[arg(long)]
    pub no_gate: bool,
    /// How fast the default gate's threshold moves: `ln theta += rate (learned - share)` per
    /// step (0.01 by default).
    #[arg(long)]
    pub gate_rate: Option<f32>,
    /// Gate on the mood, the surprise averaged over about 1/S steps (`m += S (C - m)`; S = 1:
    /// each step's own surprise) [default: 1 CartPole, 0.02 Pendulum].
    #[arg(long)]
    pub gate_smoothing: Option<f32>,
    /// Cap the gate's threshold at K times the expected mood (its geometric mean over about
    /// 1000 steps), so that a climbed threshold comes back down with the mood.
    #[arg(long)]
    pub gate_cap: Option<f32>,
    /// One gate state (threshold, mood) for every world, as before 2026-12-07: the threshold a
    /// world climbed to carries into the next. By default each world has its own, and a new
    /// world starts as the first did, learning until its threshold has climbed.
    #[arg(long)]
    pub gate_shared: bool,
    #[command(flatten)]
    pub robot: RobotArgs,
}

/// Learning steps per point of the timeline.
const WINDOW: usize = 100;

pub fn life(args: LifeArgs) -> Result<()> {
    let worlds = match &args.worlds {
        Some(spec) => Some(world::parse_worlds(&args.robot.env, spec)?),
        None => None,
    };
    let w = &args.robot.world;
    let gate = life_gate(
        !args.no_gate,
        w.gate_threshold,
        w.gate_share,
        args.gate_rate,
    )?;
    let mut agent = args.robot.options(usize::MAX);
    if w.updates.is_none() {
        agent.world.updates = DEFAULT_LIFE_UPDATES;
    }
    let life = Life::new(LifeOptions {
        agent,
        worlds,
        strategy: args.strategy,
        dreams: args.dreams,
        dream_length: args.dream_length,
        dream_explore: args.dream_explore,
        gate,
        gate_smoothing: args.gate_smoothing,
        gate_cap: args.gate_cap,
        gate_per_world: !args.gate_shared,
    })?;
    super::checks::writable_dir(life.out())?;
    let (id, out) = (life.env_id(), life.out().to_path_buf());
    println!(
        "{id}: a life of {} worlds, {} learning steps each, strategy {}, {} updates per learning step, rehearsal {} rows, gate {}",
        life.worlds().len(),
        life.steps_per_world(),
        args.strategy.name(),
        life.options().agent.world.updates,
        life.options().agent.world.rehearse,
        gate.map_or("off".to_string(), |g| format!(
            "{:?}, {:?}",
            g.threshold,
            life.mood()
        ))
    );
    for (w, p) in life.worlds().iter().enumerate() {
        println!("  world {}: {}", w + 1, p.spec());
    }
    let mut progress = Progress::default();
    let outcome = life.run(|e| progress.show(e))?;
    if let Some(bar) = progress.bar.take() {
        bar.finish_and_clear();
    }
    let title = format!(
        "{id}: a life of {} worlds ({})",
        outcome.worlds.len(),
        args.strategy.name()
    );
    let mut written = vec!["matrix.csv", "steps.csv"];
    if !outcome.steps.is_empty() {
        super::plots::plot_life(
            &out.join("life.svg"),
            &outcome.timeline(WINDOW),
            &outcome.switches,
            &title,
        )
        .map_err(|e| anyhow::anyhow!("drawing life.svg: {e}"))?;
        written.push("life.svg");
    }
    super::plots::plot_life_matrix(&out.join("matrix.svg"), &outcome, &title)
        .map_err(|e| anyhow::anyhow!("drawing matrix.svg: {e}"))?;
    written.push("matrix.svg");
    print_summary(&outcome);
    let gifs = if args.robot.no_gif {
        String::new()
    } else {
        format!(",world-{{1..{}}}.gif", outcome.worlds.len())
    };
    println!("wrote {}/{{{}}}{gifs}", out.display(), written.join(","));
    Ok(())
}

/// One progress bar per stage or test, with a line per finished test above it.
#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn replace(&mut self, len: usize, template: &str) -> &ProgressBar {
        if let Some(old) = self.bar.take() {
            old.finish_and_clear();
        }
        self.bar.insert(bar(len, template))
    }

    fn show(&mut self, event: LifeEvent<'_>) {
        match event {
            LifeEvent::Learning { worlds, steps } => {
                let names: Vec<String> = worlds.iter().map(|w| (w + 1).to_string()).collect();
                let template = format!(
                    "learning world {} {{bar:30}} {{pos}}/{{len}} steps, {{msg}}",
                    names.join("+")
                );
                self.replace(steps, &template);
            }
            LifeEvent::LearnStep { .. } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            LifeEvent::Dreaming { world, transitions } => {
                let template = format!("dreaming world {} ({transitions} transitions)", world + 1);
                self.replace(1, &template);
            }
            LifeEvent::Testing { world, episodes } => {
                let template = format!(
                    "testing world {} {{bar:30}} {{pos}}/{{len}} steps",
                    world + 1
                );
                let bar = self.replace(episodes, &template);
                bar.set_length(0);
            }
            LifeEvent::TestStep => {
                if let Some(bar) = &self.bar {
                    bar.inc_length(1);
                    bar.inc(1);
                }
            }
            LifeEvent::Tested(t) => {
                if let Some(bar) = &self.bar {
                    say(
                        bar,
                        format!(
                            "after stage {}: world {}  mean length {:6.1}  mean return {:8.2}{}  decision median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                            t.stage + 1,
                            t.world + 1,
                            t.mean_length,
                            t.mean_return,
                            if t.error.is_finite() {
                                format!(
                                    "  one-step error {:.4} ({})",
                                    t.error,
                                    figures(&t.component_errors)
                                )
                            } else {
                                String::new()
                            },
                            1e3 * t.median_decision,
                            1e3 * t.p99_decision,
                            1e3 * t.max_decision
                        ),
                    );
                }
            }
        }
    }
}

/// The error matrix, the control after the last stage, and the gate's shares.
fn print_summary(o: &LifeOutcome) {
    let n = o.worlds.len();
    let last = o.stages.len() - 1;
    let model = o.tests.iter().any(|t| t.error.is_finite());
    if model {
        println!("one-step error (rows: after learning stage; columns: world tested):");
        for stage in 0..o.stages.len() {
            let cells: Vec<String> = (0..n)
                .map(|w| {
                    o.test(stage, w)
                        .map_or("      -".into(), |t| format!("{:7.4}", t.error))
                })
                .collect();
            println!("  stage {}: {}", stage + 1, cells.join(" "));
        }
    }
    for w in 0..n {
        let Some(end) = o.test(last, w) else { continue };
        let learned = (0..o.stages.len()).find(|&s| o.stages[s].contains(&w));
        let after = learned.and_then(|s| o.test(s, w));
        let ratio = after.filter(|_| model).map_or(String::new(), |a| {
            format!(
                ", {:.2}x the error right after it was learned ({:.4})",
                end.error / a.error,
                a.error
            )
        });
        let error = if model {
            format!(", one-step error {:.4}", end.error)
        } else {
            String::new()
        };
        println!(
            "world {} at the end: mean length {:.1}, mean return {:.2}{error}{ratio}",
            w + 1,
            end.mean_length,
            end.mean_return,
        );
    }
    if !o.steps.is_empty() {
        let shares: Vec<String> = (0..o.stages.len())
            .map(|s| {
                let (first, last) = o.switch_shares(s);
                format!(
                    "stage {}: {:.1}% in the first {SHARE_WINDOW} steps, {:.1}% in the last {SHARE_WINDOW}",
                    s + 1,
                    100.0 * first,
                    100.0 * last
                )
            })
            .collect();
        println!("learned (passed the gate): {}", shares.join("; "));
        println!(
            "learning work: {} EqProp updates for {} steps ({:.1}% of the steps learned), {:.1} s learning, {:.1} s dreaming",
            o.updates,
            o.steps.len(),
            100.0 * o.learned_share(),
            o.learn_seconds,
            o.dream_seconds
        );
    }
}
