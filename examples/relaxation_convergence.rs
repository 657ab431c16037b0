//! How far a free phase of T steps is from the fixed point, on a trained network.
//!
//! For the first N training images of the checkpoint's data set, the free phase runs from zero
//! by alternating sweeps of step size `eps` for T = 5, 10, 20, 40, 80 steps, and each layer is
//! compared with the state after 1000 sweeps at `eps = 1` (exact block coordinate descent): the
//! relative distance `||s_k - s_k*|| / ||s_k*||`, layer by layer. `eps > 1` over-relaxes.
//!
//! `cargo run --release --example relaxation_convergence -- CHECKPOINT [IMAGES] [EPS...]`
//! e.g. `... runs/fashion/checkpoint.safetensors 40 1 1.4` (BENCHMARKS.md has what it found).

mod diagnosis;

use eqprop::conv::{ConvNet, ConvPhase, ConvState, Pull, Sweep, Workspace};
use eqprop::tensor::Matrix;

/// Sweeps of the fixed point the shorter phases are measured against.
const LONG: usize = 1000;

/// The phase lengths measured.
const STEPS: [usize; 5] = [5, 10, 20, 40, 80];

fn main() {
    diagnosis::exit_on_error(run);
}

fn run() -> eqprop::Result<()> {
    let usage = "usage: relaxation_convergence CHECKPOINT [IMAGES] [EPS...]";
    let (saved, data, steps_sizes) = diagnosis::from_args(usage, parse_steps)?;
    let x = diagnosis::inputs(&data);
    let net = &saved.network;
    let fixed_point = free_phase(net, &x, LONG, 1.0);
    println!("relative distance to the fixed point after {LONG} sweeps, layer 1 to the output");
    for eps in steps_sizes {
        let cells: Vec<String> = STEPS
            .iter()
            .map(|&steps| {
                let state = free_phase(net, &x, steps, eps);
                let layers: Vec<String> = (1..state.layers.len())
                    .map(|k| format!("{:.3}", distance(&state.layers[k], &fixed_point.layers[k])))
                    .collect();
                format!("T{steps} {}", layers.join("/"))
            })
            .collect();
        println!("eps {eps:.2}: {}", cells.join("  "));
    }
    Ok(())
}

/// The step sizes asked for (1 when none is).
fn parse_steps(args: &[String]) -> eqprop::Result<Vec<f32>> {
    if args.is_empty() {
        return Ok(vec![1.0]);
    }
    args.iter()
        .map(|a| match a.parse::<f32>() {
            Ok(eps) if eps > 0.0 && eps < 2.0 => Ok(eps),
            _ => Err(diagnosis::invalid(&format!(
                "eps '{a}': expected a number in (0, 2)"
            ))),
        })
        .collect()
}

/// The free phase on the inputs `x`: `steps` alternating sweeps of size `eps` from zero.
fn free_phase(net: &ConvNet, x: &Matrix, steps: usize, eps: f32) -> ConvState {
    let arch = net.architecture();
    let mut workspace = Workspace::new(arch, x.rows());
    let mut state = ConvState::zeros(arch, x.rows());
    state.layers[0].copy_from(x);
    let phase = ConvPhase {
        steps,
        eps,
        sweep: Sweep::Alternating,
        beta: 0.0,
        target: None,
        pull: Pull::Output,
        tol: 0.0,
    };
    workspace.relax(net, &mut state, &phase);
    state
}

/// `||a - b|| / ||b||`.
fn distance(a: &Matrix, b: &Matrix) -> f64 {
    let squares = |v: &mut dyn Iterator<Item = f64>| v.map(|d| d * d).sum::<f64>().sqrt();
    let pairs = a.as_slice().iter().zip(b.as_slice());
    let apart = squares(&mut pairs.map(|(&p, &q)| f64::from(p - q)));
    apart / squares(&mut b.as_slice().iter().map(|&q| f64::from(q))).max(1e-30)
}
