//! The benchmark method: interleaved rounds of fresh training runs (eqprop, then the PyTorch
//! baseline, or ungated then gated), each after the machine settled, medians reported, and
//! eqprop's epoch set against the floor the GEMM rate measured around it allows.

use super::{EpochFlops, GemmRate, TorchBaseline, epoch_flops, gate_savings, peak_gflops};
use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::error::Result;
use crate::stats::median;
use crate::train::{self, EpochSummary, Trainer};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How the benchmark runs.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Interleaved rounds; medians over them are reported.
    pub rounds: usize,
    /// Pause before each timed run, so that the machine settles (both sides alike).
    pub settle: Duration,
    /// Threads of both sides (eqprop's pool is the caller's; this sizes the GEMM probe and
    /// the baseline).
    pub threads: usize,
}

/// Trains a fresh network of `hp`: every epoch's summary and the final test error.
pub fn train_epochs(
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
) -> Result<(Vec<EpochSummary>, f64)> {
    let mut trainer = Trainer::new(hp.clone())?;
    let stop = AtomicBool::new(false);
    let mut epochs = Vec::new();
    while !trainer.finished() {
        epochs.push(trainer.run_epoch(trainset, &stop, |_| {}).completed()?);
    }
    let error = train::evaluate(trainer.network(), hp, testset).error;
    Ok((epochs, error))
}

/// eqprop's epochs against the baseline's (`torch` with the data folder it reads; none: eqprop
/// alone), `opts.rounds` interleaved rounds of `hp.epochs` epochs. `log` hears a line per
/// round; the result is the Markdown table and the floor analysis.
pub fn compare_with_torch(
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    opts: &BenchOptions,
    torch: Option<(&TorchBaseline, &Path)>,
    mut log: impl FnMut(&str),
) -> Result<String> {
    let flops = epoch_flops(hp, trainset);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_error, mut their_error) = (f64::NAN, f64::NAN);
    // This machine's speed drifts from minute to minute, so the floor of each round is computed
    // from the GEMM rates measured just before and just after it (the higher of the two): the
    // sustained rate (the best window of products about as long as an epoch) gives the floor,
    // the burst rate (the best single product) a stricter one.
    let (mut ratios, mut strict) = (Vec::new(), Vec::new());
    let mut best_rate = GemmRate {
        burst: 0.0,
        sustained: 0.0,
    };
    let floor_at = |gflops: f64| flops.performed / (gflops * 1e9);
    for round in 1..=opts.rounds {
        std::thread::sleep(opts.settle);
        let before = peak_gflops(opts.threads);
        let (epochs, error) = train_epochs(hp, trainset, testset)?;
        let seconds: Vec<f64> = epochs.iter().map(|s| s.seconds).collect();
        let rate = before.max(peak_gflops(opts.threads));
        best_rate = best_rate.max(rate);
        let epoch = median(&seconds);
        let ratio = epoch / floor_at(rate.sustained);
        strict.push(epoch / floor_at(rate.burst));
        log(&format!(
            "round {round}: eqprop  {seconds:.3?} s/epoch, test error {error:.2}%, GEMM {:.1} GFLOP/s sustained ({:.1} burst), {ratio:.2}x the floor ({:.2}x at the burst rate)",
            rate.sustained,
            rate.burst,
            strict[strict.len() - 1]
        ));
        ratios.push(ratio);
        ours.extend(seconds);
        our_error = error;
        if let Some((torch, data_dir)) = torch {
            std::thread::sleep(opts.settle);
            let result = torch.train(hp, data_dir, opts.threads, &[])?;
            let seconds: Vec<f64> =
                serde_json::from_value(result["train_seconds_per_epoch"].clone())
                    .map_err(|e| crate::Error::Invalid(format!("the PyTorch baseline: {e}")))?;
            their_error = result["final_test_error"].as_f64().unwrap_or(f64::NAN);
            log(&format!(
                "round {round}: pytorch {seconds:.3?} s/epoch, test error {their_error:.2}%"
            ));
            theirs.extend(seconds);
        }
    }
    let fastest = ours.iter().copied().fold(f64::INFINITY, f64::min);
    let ours = median(&ours);
    let floor = floor_at(best_rate.sustained);
    let mut out = String::new();
    let w = &mut out;
    let epochs = hp.epochs;
    let _ = writeln!(
        w,
        "| implementation | s/epoch (median) | test error after {epochs} epochs |"
    );
    let _ = writeln!(w, "|---|---|---|");
    let _ = writeln!(w, "| eqprop (Rust, CPU) | {ours:.3} | {our_error:.2}% |");
    if !theirs.is_empty() {
        let theirs = median(&theirs);
        let _ = writeln!(
            w,
            "| PyTorch loop (bench/eqprop_torch.py) | {theirs:.3} | {their_error:.2}% |"
        );
        let _ = writeln!(w, "speed-up: {:.1}x", theirs / ours);
    }
    let _ = writeln!(
        w,
        "work per epoch: {:.2} GFLOP performed ({:.2} GFLOP with dense input products); best GEMM rate {:.1} GFLOP/s sustained, {:.1} burst, on {} threads",
        flops.performed / 1e9,
        flops.dense / 1e9,
        best_rate.sustained,
        best_rate.burst,
        opts.threads
    );
    let _ = writeln!(
        w,
        "floor: eqprop runs at {:.2}x the floor of its own round (median; {:.2}x at the burst rate), {:.2}x the run's best floor of {floor:.3} s/epoch ({:.1} GFLOP/s)",
        median(&ratios),
        median(&strict),
        ours / floor,
        flops.performed / ours / 1e9
    );
    let _ = writeln!(
        w,
        "best against best: the fastest epoch, {fastest:.3} s, is {:.2}x the run's best floor ({:.2}x at the burst rate)",
        fastest / floor,
        fastest / floor_at(best_rate.burst)
    );
    Ok(out)
}

/// The same training without and with the surprise gate (`hp`'s gate settings, the default
/// gate without them), interleaved: test error, learned share, savings and wall-clock ratio.
pub fn compare_gate(
    hp: &Hyperparams,
    trainset: &Dataset,
    testset: &Dataset,
    opts: &BenchOptions,
    log: impl FnMut(&str),
) -> Result<String> {
    let gated = Hyperparams {
        modulator: Some(hp.modulator.unwrap_or_default()),
        ..hp.clone()
    };
    let plain = Hyperparams {
        modulator: None,
        ..hp.clone()
    };
    let flops: EpochFlops = epoch_flops(hp, trainset);
    let run = |gate: bool| -> Result<GateRun> {
        let (epochs, error) = train_epochs(if gate { &gated } else { &plain }, trainset, testset)?;
        Ok(GateRun {
            seconds: epochs.iter().map(|s| s.seconds).sum(),
            epochs: epochs.len(),
            error,
            learned: epochs.iter().map(|s| s.learned_share).sum::<f64>() / epochs.len() as f64,
        })
    };
    interleave_gate(
        opts,
        hp.epochs,
        |share| gate_savings(&flops, share),
        run,
        log,
    )
}

/// One timed training run of a gate comparison.
pub(crate) struct GateRun {
    pub seconds: f64,
    pub epochs: usize,
    /// Final test error (%).
    pub error: f64,
    /// Mean share of the examples that learned per epoch.
    pub learned: f64,
}

/// `opts.rounds` interleaved rounds of `run(false)` (ungated) then `run(true)` (gated), each
/// after the settle pause; the Markdown table of medians and the gate's line, with
/// `savings(share)` the shares of relaxation steps and FLOPs the skipped examples saved.
pub(crate) fn interleave_gate(
    opts: &BenchOptions,
    epochs: usize,
    savings: impl Fn(f64) -> (f64, f64),
    mut run: impl FnMut(bool) -> Result<GateRun>,
    mut log: impl FnMut(&str),
) -> Result<String> {
    let (mut times, mut errors) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut learned = Vec::new();
    for round in 1..=opts.rounds {
        for side in 0..2 {
            std::thread::sleep(opts.settle);
            let r = run(side == 1)?;
            let name = ["ungated", "gated  "][side];
            log(&format!(
                "round {round}: {name} {:.2} s for {} epochs, test error {:.2}%, learned {:.1}% of examples",
                r.seconds,
                r.epochs,
                r.error,
                100.0 * r.learned
            ));
            times[side].push(r.seconds);
            errors[side].push(r.error);
            if side == 1 {
                learned.push(r.learned);
            }
        }
    }
    let share = learned.iter().sum::<f64>() / learned.len() as f64;
    let (steps, flops_saved) = savings(share);
    let [plain_s, gated_s] = times.map(|t| median(&t));
    let [plain_e, gated_e] = errors.map(|e| median(&e));
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "| run | seconds for {epochs} epochs (median) | test error (median) |"
    );
    let _ = writeln!(w, "|---|---|---|");
    let _ = writeln!(w, "| ungated | {plain_s:.2} | {plain_e:.2}% |");
    let _ = writeln!(w, "| gated | {gated_s:.2} | {gated_e:.2}% |");
    let _ = writeln!(
        w,
        "gate: {:.1}% of examples learned ({:.1}% skipped the nudged phase and the update); saved {:.1}% of relaxation steps and {:.1}% of FLOPs; wall-clock ratio gated/ungated {:.3}",
        100.0 * share,
        100.0 * (1.0 - share),
        100.0 * steps,
        100.0 * flops_saved,
        gated_s / plain_s
    );
    Ok(out)
}
