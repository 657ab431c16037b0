//! The PyTorch baseline (`bench/eqprop_torch.py`): the same EqProp in an eager PyTorch loop,
//! run as a child process that prints its figures as one `RESULT {json}` line.

use crate::config::Hyperparams;
use crate::error::{Error, Result};
use crate::learning_rule::Nudging;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to run the baseline: the Python interpreter and the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorchBaseline {
    pub python: String,
    pub script: PathBuf,
}

impl TorchBaseline {
    /// Fails unless the script exists and `python` can import PyTorch and NumPy.
    pub fn check(&self) -> Result<()> {
        if !self.script.is_file() {
            let problem = match self.script.exists() {
                true => "is not a file",
                false => "does not exist",
            };
            return Err(Error::Invalid(format!(
                "{} (the PyTorch baseline script) {problem}",
                self.script.display()
            )));
        }
        let probe = Command::new(&self.python)
            .args(["-c", "import torch, numpy"])
            .output();
        let problem = match probe {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => last_line(&out.stderr),
            Err(e) => e.to_string(),
        };
        Err(Error::Invalid(format!(
            "the PyTorch comparison needs PyTorch and NumPy for {} ({problem}): install them with \
             `pip install -r bench/requirements.txt`, or pass --no-torch to time eqprop alone",
            self.python
        )))
    }

    /// Trains with the same hyperparameters on the data in `data_dir` (`extra`: more flags of
    /// the script); its `RESULT` JSON (`train_seconds_per_epoch`, `final_test_error`).
    pub fn train(
        &self,
        hp: &Hyperparams,
        data_dir: &Path,
        threads: usize,
        extra: &[&str],
    ) -> Result<serde_json::Value> {
        let join = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
        let layers = hp
            .layers
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).arg("--data-dir").arg(data_dir);
        cmd.args(["--layers", &layers, "--lr", &join(&hp.lr)]);
        for (flag, value) in [
            ("--batch-size", hp.batch_size.to_string()),
            ("--t1", hp.t_free.to_string()),
            ("--t2", hp.t_nudge.to_string()),
            ("--eps", hp.eps.to_string()),
            ("--beta", hp.beta.to_string()),
            ("--epochs", hp.epochs.to_string()),
            ("--seed", hp.seed.to_string()),
            ("--threads", threads.to_string()),
        ] {
            cmd.args([flag, &value]);
        }
        match hp.nudging {
            Nudging::RandomSign => drop(cmd.arg("--random-sign")),
            Nudging::Symmetric => drop(cmd.arg("--symmetric")),
            Nudging::Positive => {}
        }
        if hp.persistent {
            cmd.arg("--persistent");
        }
        cmd.args(extra);
        self.result(cmd, "the PyTorch baseline")
    }

    /// Runs `cmd` and parses the last `RESULT {json}` line of its output.
    pub(crate) fn result(&self, mut cmd: Command, what: &str) -> Result<serde_json::Value> {
        let out = cmd.output().map_err(|e| {
            Error::Invalid(format!(
                "running {} {}: {e}",
                self.python,
                self.script.display()
            ))
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().rev().find_map(|l| l.strip_prefix("RESULT "));
        match (out.status.success(), line) {
            (true, Some(json)) => serde_json::from_str(json)
                .map_err(|e| Error::Invalid(format!("{what}'s RESULT line: {e}"))),
            _ => Err(Error::Invalid(format!(
                "{what} failed ({}): {}",
                out.status,
                last_line(&out.stderr)
            ))),
        }
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or("no output")
        .to_string()
}
