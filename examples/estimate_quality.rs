//! How close EqProp's estimate at given settings comes to the gradient, on a trained network.
//!
//! For the first N training images of the checkpoint's data set, symmetric EqProp at a small
//! nudge (beta 1e-3) after long relaxations (400 steps per phase) stands for the true gradient
//! of the cost at the free fixed point (`tests/conv.rs` checks that estimate against finite
//! differences). Each setting `T1:T2:BETA` (free steps, nudged steps per phase, nudge) is then
//! compared with it coupling by coupling: the cosine and the length ratio. A second reference
//! at beta 3e-3 shows how well the reference itself is determined in float32.
//!
//! `cargo run --release --example estimate_quality -- CHECKPOINT [IMAGES] T1:T2:BETA...`
//! e.g. `... runs/fashion/checkpoint.safetensors 40 20:4:0.5 40:10:0.5`
mod diagnosis;

use eqprop::conv::{ConvNet, symmetric_difference};
use eqprop::tensor::Matrix;

/// Steps per phase of the reference estimate.
const LONG: usize = 400;

fn main() {
    diagnosis::exit_on_error(run);
}

fn run() -> eqprop::Result<()> {
    let usage = "usage: estimate_quality CHECKPOINT [IMAGES] T1:T2:BETA...";
    let parse = |args: &[String]| args.iter().map(|a| parse_setting(a)).collect();
    let (saved, data, settings): (_, _, Vec<_>) = diagnosis::from_args(usage, parse)?;
    let (x, t) = batch(&data, &saved.network);
    let net = &saved.network;
    let truth = estimate(net, &x, &t, (LONG, LONG, 1e-3));
    report(
        "reference at beta 3e-3",
        &truth,
        &estimate(net, &x, &t, (LONG, LONG, 3e-3)),
    );
    for s in settings {
        let name = format!("T1 {:3} T2 {:3} beta {:.3}", s.0, s.1, s.2);
        report(&name, &truth, &estimate(net, &x, &t, s));
    }
    Ok(())
}

fn parse_setting(text: &str) -> eqprop::Result<(usize, usize, f32)> {
    let bad = || {
        diagnosis::invalid(&format!(
            "setting '{text}': expected T1:T2:BETA, e.g. 20:4:0.5"
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [t1, t2, beta] = parts[..] else {
        return Err(bad());
    };
    match (t1.parse(), t2.parse(), beta.parse::<f32>()) {
        (Ok(t1), Ok(t2), Ok(beta)) if beta > 0.0 => Ok((t1, t2, beta)),
        _ => Err(bad()),
    }
}

/// The images as input rows and their one-hot labels as targets.
fn batch(data: &eqprop::data::Dataset, net: &ConvNet) -> (Matrix, Matrix) {
    let classes = *net.architecture().sizes().last().expect("layers");
    let mut t = Matrix::zeros(data.len(), classes);
    for i in 0..data.len() {
        t.set(i, usize::from(data.labels[i]), 1.0);
    }
    (diagnosis::inputs(data), t)
}

/// Symmetric EqProp's estimate of `dC/dtheta` with `(t1, t2, beta)`, coupling by coupling
/// (the weights of `W_k`, then `b_k`).
fn estimate(
    net: &ConvNet,
    x: &Matrix,
    t: &Matrix,
    (t1, t2, beta): (usize, usize, f32),
) -> Vec<Vec<f64>> {
    let grad = symmetric_difference(net, (x, t), (t1, t2), beta);
    let scale = -1.0 / (2.0 * f64::from(beta));
    (1..net.architecture().num_layers())
        .map(|k| {
            let w = grad.weights[k - 1].as_slice().iter();
            w.chain(&grad.biases[k])
                .map(|&g| f64::from(g) * scale)
                .collect()
        })
        .collect()
}

/// One line: per coupling, the cosine with the reference and the length ratio.
fn report(name: &str, truth: &[Vec<f64>], estimate: &[Vec<f64>]) {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cells: Vec<String> = (1..)
        .zip(truth.iter().zip(estimate))
        .map(|(k, (a, b))| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let cosine = dot / (norm(a) * norm(b));
            format!("W{k} {cosine:.3} x{:.2}", norm(b) / norm(a))
        })
        .collect();
    println!("{name}: {}", cells.join(", "));
}
