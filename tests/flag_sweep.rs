//! Every value flag of every subcommand, set to an out-of-range value (0, -1, NaN, infinities,
//! and a few shapes that cannot fit), gives a clear error or a normal run: never a panic.
//!
//! The flags are read from each subcommand's `--help`, so a new flag is swept without anyone
//! listing it here.

mod common;

use common::eqprop;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

/// Values tried for every flag that takes one (clap rejects the ill-typed ones at once).
const VALUES: [&str; 5] = ["0", "-1", "nan", "inf", "-inf"];

/// Values tried for flags whose values are lists or shapes, beside [`VALUES`].
fn special_values(flag: &str) -> &'static [&'static str] {
    match flag {
        "layers" => &[
            "784",
            "784,8,5",
            "10,8,10",
            "784,0,10",
            "784,8,2",
            "784,4294967296,10",
        ],
        "lr" => &["0,0", "nan,0.1", "-1,0.1", "0.1", "0.1,0.1,0.1", "100,100"],
        "hidden" => &["0", "8,0", "4294967296"],
        "torques" => &["nan", "", "1,inf"],
        "labels" => &["0-10", "9-0", "a", "", "0,,1"],
        "batch-size" => &["100000", "1099511627776"],
        // Sizes that would ask for terabytes: a named error, never an aborted allocation.
        "samples" | "replay-capacity" | "replay-per-class" | "prior-components" | "replay" => {
            &["1099511627776"]
        }
        "train-limit" => &["1", "5"],
        "gen-from-epoch" => &["100"],
        "tasks" => &["6", "100"],
        _ => &[],
    }
}

/// Flags that name files, folders, URLs or text: not swept with numbers.
const NOT_NUMERIC: [&str; 11] = [
    "data-dir",
    "mirror",
    "out",
    "checkpoint",
    "gif",
    "judge",
    "torch-script",
    "python",
    "report",
    "preset",
    "env",
];

/// A subcommand, the arguments that make it a small valid run, and a flag's value in it.
struct Case {
    command: Vec<&'static str>,
    base: BTreeMap<&'static str, String>,
}

fn base(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
}

fn cases(dir: &Path, checkpoint: &Path) -> Vec<Case> {
    let out = |name: &str| dir.join(name).display().to_string();
    let tiny_net = [
        ("layers", "784,8,10"),
        ("t-free", "3"),
        ("t-nudge", "2"),
        ("epochs", "1"),
    ];
    let mut train = base(&tiny_net);
    train.extend(base(&[("train-limit", "40"), ("out", &out("train"))]));
    let mut continual = base(&tiny_net);
    continual.extend(base(&[
        ("tasks", "2"),
        ("epochs-per-task", "1"),
        ("replay-per-class", "5"),
        ("prior-components", "2"),
        ("dream-steps", "3"),
        ("out", &out("continual")),
    ]));
    let ckpt = checkpoint.display().to_string();
    vec![
        Case {
            command: vec!["train", "--force"],
            base: train,
        },
        Case {
            command: vec!["eval"],
            base: base(&[("checkpoint", &ckpt)]),
        },
        Case {
            command: vec!["dream"],
            base: base(&[
                ("checkpoint", &ckpt),
                ("labels", "0-1"),
                ("samples", "1"),
                ("dream-steps", "3"),
                ("out", &out("dream.png")),
            ]),
        },
        Case {
            command: vec!["judge"],
            base: base(&[("epochs", "1"), ("out", &out("judge.safetensors"))]),
        },
        Case {
            command: vec!["continual"],
            base: continual,
        },
        Case {
            command: vec!["agent"],
            base: base(&[
                ("env", "cartpole-v1"),
                ("learn-steps", "30"),
                ("episodes", "3"),
                ("eval-episodes", "1"),
                ("horizon", "2"),
                ("samples", "2"),
                ("hidden", "4"),
                ("out", &out("agent")),
            ]),
        },
        Case {
            command: vec!["agent", "--no-gif"],
            base: base(&[
                ("env", "pendulum-v1"),
                ("learn-steps", "30"),
                ("episodes", "2"),
                ("eval-episodes", "1"),
                ("horizon", "2"),
                ("samples", "2"),
                ("iterations", "1"),
                ("hidden", "4"),
                ("out", &out("agent-pendulum")),
            ]),
        },
        Case {
            command: vec!["render"],
            base: base(&[("env", "cartpole-v1"), ("out", &out("render.gif"))]),
        },
        Case {
            command: vec!["env", "random"],
            base: base(&[("env", "pendulum-v1"), ("episodes", "1")]),
        },
        Case {
            command: vec!["bench", "--no-torch"],
            base: base(&[
                ("epochs", "1"),
                ("rounds", "1"),
                ("settle", "0"),
                ("layers", "784,8,10"),
                ("t-free", "3"),
                ("t-nudge", "2"),
            ]),
        },
    ]
}

/// The value flags of a subcommand, read from its `--help` (enum flags, whose values clap
/// checks, and the ones in [`NOT_NUMERIC`] left out).
fn value_flags(command: &[&str]) -> Vec<String> {
    let out = eqprop().args(command).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = Vec::new();
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(' ') else {
            continue;
        };
        let enum_flag = lines[i + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('-'))
            .any(|l| l.contains("[possible values"));
        if value.starts_with('<') && !enum_flag && !NOT_NUMERIC.contains(&name) {
            flags.push(name.to_string());
        }
    }
    assert!(!flags.is_empty(), "no flags found in: {help}");
    flags
}

/// Fails unless the run ended normally or with a clear error (`error:` and no panic).
fn check(out: &Output, args: &[String]) -> Result<(), String> {
    let err = String::from_utf8_lossy(&out.stderr);
    let clean = match out.status.code() {
        Some(0) => !err.contains("panicked"),
        Some(1 | 2) => !err.contains("panicked") && err.contains("error"),
        _ => false,
    };
    match clean {
        true => Ok(()),
        false => Err(format!(
            "eqprop {} -> {:?}\n{}",
            args.join(" "),
            out.status,
            err.lines().rev().take(6).collect::<Vec<_>>().join("\n")
        )),
    }
}

#[test]
fn no_flag_value_makes_any_subcommand_panic() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint_dir = dir.path().join("ckpt");
    let made = eqprop()
        .args([
            "train",
            "--train-limit",
            "40",
            "--layers",
            "784,8,10",
            "--epochs",
            "1",
        ])
        .args(["--t-free", "3", "--t-nudge", "2", "--out"])
        .arg(&checkpoint_dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let checkpoint = checkpoint_dir.join("checkpoint.safetensors");
    let mut runs: Vec<Vec<String>> = Vec::new();
    for case in cases(dir.path(), &checkpoint) {
        for flag in value_flags(&case.command) {
            let values = VALUES.iter().chain(special_values(&flag));
            for value in values {
                let mut args: Vec<String> = case.command.iter().map(|s| s.to_string()).collect();
                for (k, v) in case.base.iter().filter(|(k, _)| **k != flag) {
                    args.extend([format!("--{k}"), v.clone()]);
                }
                args.push(format!("--{flag}={value}"));
                runs.push(args);
            }
        }
    }
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = runs
            .chunks(runs.len().div_ceil(2))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|args| {
                            let out = eqprop().args(args).output().unwrap();
                            check(&out, args).err()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} runs panicked or failed unclearly:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n\n")
    );
}
