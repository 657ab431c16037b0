//! The energy the dynamics descend, and the cost the nudge adds.
//!
//! ```text
//! E(s) = sum_k ( 1/2 ||s_k||^2 - b_k . rho(s_k) ) - sum_{k>=1} rho(s_{k-1})^T W_k rho(s_k)
//! C(s) = 1/2 ||s_L - target||^2            F = E + beta C
//! ```
//! States are kept in `[0, 1]`, where `rho(s) = s`, so the formulas below use `s` directly.

use crate::backend::{Transpose, matmul_acc};
use crate::network::Network;
use crate::tensor::Matrix;

/// Per-sample energy `E` of a batch of states, written into `out`.
///
/// `lower[k]` is scratch of shape `batch x sizes[k]` (index 0 unused). When `input_product` is
/// given it must hold `s_0 W_1` (the dynamics cache it), which skips the largest product. The
/// self terms `1/2 ||s_k||^2 - b_k . s_k` of layers flagged in `constant` are left out: for a
/// clamped layer they are a constant of the phase.
pub fn energy_into(
    net: &Network,
    states: &[Matrix],
    input_product: Option<&Matrix>,
    constant: &[bool],
    lower: &mut [Matrix],
    out: &mut [f32],
) {
    let batch = states[0].rows();
    assert_eq!(out.len(), batch, "one energy per sample");
    out.fill(0.0);
    for (k, s) in states.iter().enumerate().filter(|&(k, _)| !constant[k]) {
        let b = net.bias(k);
        for (e, row) in out.iter_mut().zip(s.as_slice().chunks_exact(s.cols())) {
            *e += sum_pairs(row, b, |x, bi| 0.5 * x * x - bi * x);
        }
    }
    for k in 1..states.len() {
        let product: &Matrix = match (k, input_product) {
            (1, Some(p)) => p,
            _ => {
                lower[k].fill(0.0);
                matmul_acc(
                    &mut lower[k],
                    &states[k - 1],
                    Transpose::No,
                    net.weight(k),
                    Transpose::No,
                    1.0,
                );
                &lower[k]
            }
        };
        for (r, e) in out.iter_mut().enumerate() {
            *e -= dot(product.row(r), states[k].row(r));
        }
    }
}

/// Per-sample energy, allocating its scratch (for tests and one-off use, not hot loops).
pub fn energy(net: &Network, states: &[Matrix]) -> Vec<f32> {
    let batch = states[0].rows();
    let mut lower: Vec<Matrix> = net
        .sizes()
        .iter()
        .map(|&n| Matrix::zeros(batch, n))
        .collect();
    let mut out = vec![0.0; batch];
    energy_into(
        net,
        states,
        None,
        &vec![false; states.len()],
        &mut lower,
        &mut out,
    );
    out
}

/// Per-sample cost `C = 1/2 ||y - target||^2`.
pub fn cost(output: &Matrix, target: &Matrix) -> Vec<f32> {
    (0..output.rows())
        .map(|r| {
            output
                .row(r)
                .iter()
                .zip(target.row(r))
                .map(|(y, t)| 0.5 * (y - t) * (y - t))
                .sum()
        })
        .collect()
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_pairs(a, b, |x, y| x * y)
}

/// `sum_i f(a_i, b_i)` over slices of equal length, in eight interleaved partial sums: one
/// running sum would be a chain of dependent additions that the compiler may not reorder, so
/// it could not vectorise it.
#[inline(always)]
fn sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (whole_a, whole_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = (whole_a.remainder().iter().zip(whole_b.remainder()))
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in whole_a.zip(whole_b) {
        for i in 0..8 {
            acc[i] += f(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}
