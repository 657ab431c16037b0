//! The optimiser: how EqProp's estimate of the descent direction becomes a parameter step.
//!
//! A mini-batch gives, per parameter, `g = -(1 / (beta_eff B)) sum (dPhi/dtheta(s^beta) -
//! dPhi/dtheta(s^-beta))`-style differences: EqProp's estimate of `-dC/dtheta`, the direction
//! that lowers the cost. With `lr_k` the rate of coupling `k` (its weights `W_k` and bias `b_k`):
//!
//! ```text
//! SGD (heavy-ball momentum mu; mu = 0: plain steps)   v <- mu v + g
//!                                                     theta += lr_k v
//! Adam (Kingma & Ba 2015)                             m <- b1 m + (1 - b1) g
//!                                                     v <- b2 v + (1 - b2) g^2
//!                                                     theta += lr_k m^ / (sqrt(v^) + eps)
//!                                                     m^ = m / (1 - b1^t), v^ = v / (1 - b2^t)
//! ```
//!
//! Adam is what Laborieux et al. 2021's code trains its convolutional MNIST networks with; it
//! divides each parameter's step by the running size of its own estimate, so one rate suits
//! every coupling (SGD needs one per coupling, tuned).

use super::architecture::Architecture;
use super::net::{ConvNet, Gradient};
use serde::{Deserialize, Serialize};

/// Adam's decay of the first moment.
pub const ADAM_BETA1: f32 = 0.9;
/// Adam's decay of the second moment.
pub const ADAM_BETA2: f32 = 0.999;
/// Adam's guard against division by a vanishing second moment.
pub const ADAM_EPS: f32 = 1e-8;

/// Which optimiser steps the parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Stochastic gradient steps, with the config's heavy-ball momentum.
    #[default]
    Sgd,
    /// Adam (b1 0.9, b2 0.999, eps 1e-8): the rates are step sizes, about 1e-3.
    Adam,
}

impl Optimizer {
    pub fn is_sgd(&self) -> bool {
        *self == Optimizer::Sgd
    }

    /// Its name on the command line (and in the PyTorch baselines' `--optim`).
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Adam => "adam",
        }
    }
}

/// Adam's running moments.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// The first moment `m`, shaped like the parameters.
    pub first: Gradient,
    /// The second moment `v`.
    pub second: Gradient,
    /// Steps taken (`t`).
    pub steps: u64,
}

impl Adam {
    /// Zero moments before the first step.
    pub fn new(arch: &Architecture) -> Self {
        let first = Gradient::zeros(arch);
        Self {
            second: first.clone(),
            first,
            steps: 0,
        }
    }

    /// One step of `net` along `scales[k] * estimate` (the descent direction of coupling `k`'s
    /// tensors) with rates `lrs[k]`.
    pub fn step(&mut self, net: &mut ConvNet, estimate: &Gradient, scales: &[f32], lrs: &[f32]) {
        self.steps += 1;
        let t = self.steps.min(i32::MAX as u64) as i32;
        let (fix1, fix2) = (1.0 - ADAM_BETA1.powi(t), 1.0 - ADAM_BETA2.powi(t));
        let tensors = net
            .tensors_mut()
            .zip(estimate.tensors())
            .zip(self.first.tensors_mut().zip(self.second.tensors_mut()));
        for (((k, theta), (_, g)), ((_, m), (_, v))) in tensors {
            let (scale, lr) = (scales[k], lrs[k]);
            for (((x, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
                let g = scale * g;
                *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * g;
                *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * g * g;
                *x += lr * (*m / fix1) / ((*v / fix2).sqrt() + ADAM_EPS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// On the first step the moments are `g` and `g^2` once bias-corrected, so every parameter
    /// moves by `lr g / (|g| + eps)`: `lr` times the sign of its estimate.
    #[test]
    fn adams_first_step_moves_every_parameter_by_its_rate_along_the_estimates_sign() {
        let arch: Architecture = "1x5x5,conv2k3,3".parse().unwrap();
        let net = ConvNet::init(arch.clone(), &mut ChaCha8Rng::seed_from_u64(0));
        let mut estimate = Gradient::zeros(&arch);
        for (i, (_, g)) in estimate.tensors_mut().enumerate() {
            g.iter_mut()
                .enumerate()
                .for_each(|(j, x)| *x = (j as f32 - 3.0) * (i as f32 + 0.5));
        }
        let (scales, lrs) = ([0.5, 2.0], [1e-3, 1e-2]);
        let mut stepped = net.clone();
        Adam::new(&arch).step(&mut stepped, &estimate, &scales, &lrs);
        let mut before = net.clone();
        let moves = stepped.tensors_mut().zip(before.tensors_mut());
        for (((k, after), (_, before)), (_, g)) in moves.zip(estimate.tensors()) {
            for ((a, b), g) in after.iter().zip(before.iter()).zip(g) {
                let expected = lrs[k] * g.signum() * f32::from(*g != 0.0);
                assert!((a - b - expected).abs() < 1e-6, "{a} - {b} vs {expected}");
            }
        }
    }

    /// With a constant estimate the step stays at `lr` in its direction (the moments' bias
    /// correction is exact for a constant), step after step.
    #[test]
    fn adam_keeps_a_constant_estimates_step_at_the_rate() {
        let arch: Architecture = "4,3".parse().unwrap();
        let mut net = ConvNet::init(arch.clone(), &mut ChaCha8Rng::seed_from_u64(1));
        let mut estimate = Gradient::zeros(&arch);
        estimate.tensors_mut().for_each(|(_, g)| g.fill(-0.25));
        let mut adam = Adam::new(&arch);
        let start: Vec<f32> = net.tensors_mut().flat_map(|(_, x)| x.to_vec()).collect();
        for _ in 0..10 {
            adam.step(&mut net, &estimate, &[1.0], &[0.01]);
        }
        let end: Vec<f32> = net.tensors_mut().flat_map(|(_, x)| x.to_vec()).collect();
        for (a, b) in end.iter().zip(&start) {
            assert!((a - b + 0.1).abs() < 1e-4, "moved {}", a - b);
        }
    }
}
