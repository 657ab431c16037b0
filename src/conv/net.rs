//! The parameters of a network of any [`Architecture`]: one weight matrix per coupling and one
//! bias per layer.

use super::architecture::Architecture;
use crate::tensor::Matrix;
use rand::{Rng, RngExt};

/// Couplings `W_k` (shapes from [`Architecture::weight_shape`]) and biases `b_k` (one per
/// channel of an image layer, one per unit of a flat layer; the input's included, so that the
/// input can be freed to dream).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNet {
    arch: Architecture,
    weights: Vec<Matrix>,
    biases: Vec<Vec<f32>>,
}

/// Parameters that do not fit the architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{what} should be {expected:?}, got {got:?}")]
    Shape {
        what: String,
        expected: (usize, usize),
        got: (usize, usize),
    },
    #[error("{expected} {what} expected, got {got}")]
    Count {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

impl ConvNet {
    /// PyTorch's default initialisation of `nn.Linear` / `nn.Conv2d` (which the research code
    /// keeps): weights and the biases of layers 1.. uniform in `+-1/sqrt(fan_in)`, `fan_in` the
    /// rows of `W_k`; the input's bias zero.
    pub fn init<R: Rng + ?Sized>(arch: Architecture, rng: &mut R) -> Self {
        let mut weights = Vec::new();
        let mut biases = vec![vec![0.0; arch.bias_len(0)]];
        for k in 1..arch.num_layers() {
            let (rows, cols) = arch.weight_shape(k);
            let a = 1.0 / (rows as f32).sqrt();
            let data = (0..rows * cols).map(|_| rng.random_range(-a..a)).collect();
            weights.push(Matrix::from_vec(rows, cols, data).expect("rows*cols values"));
            biases.push(
                (0..arch.bias_len(k))
                    .map(|_| rng.random_range(-a..a))
                    .collect(),
            );
        }
        Self {
            arch,
            weights,
            biases,
        }
    }

    /// Assembles a network, checking every shape against the architecture.
    pub fn from_parts(
        arch: Architecture,
        weights: Vec<Matrix>,
        biases: Vec<Vec<f32>>,
    ) -> Result<Self, ParamError> {
        let couplings = arch.num_layers() - 1;
        if weights.len() != couplings {
            return Err(ParamError::Count {
                what: "weight matrices",
                expected: couplings,
                got: weights.len(),
            });
        }
        if biases.len() != arch.num_layers() {
            return Err(ParamError::Count {
                what: "biases",
                expected: arch.num_layers(),
                got: biases.len(),
            });
        }
        for (k, w) in (1..).zip(&weights) {
            let expected = arch.weight_shape(k);
            if (w.rows(), w.cols()) != expected {
                return Err(ParamError::Shape {
                    what: format!("W_{k}"),
                    expected,
                    got: (w.rows(), w.cols()),
                });
            }
        }
        for (k, b) in biases.iter().enumerate() {
            if b.len() != arch.bias_len(k) {
                return Err(ParamError::Shape {
                    what: format!("b_{k}"),
                    expected: (arch.bias_len(k), 1),
                    got: (b.len(), 1),
                });
            }
        }
        Ok(Self {
            arch,
            weights,
            biases,
        })
    }

    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// `W_k` for `k` in `1..num_layers`.
    pub fn weight(&self, k: usize) -> &Matrix {
        &self.weights[k - 1]
    }

    pub fn weights(&self) -> &[Matrix] {
        &self.weights
    }

    /// `W_1..W_L`, writable (their shapes are the architecture's).
    pub(crate) fn weights_mut(&mut self) -> &mut [Matrix] {
        &mut self.weights
    }

    pub fn bias(&self, k: usize) -> &[f32] {
        &self.biases[k]
    }

    pub fn biases(&self) -> &[Vec<f32>] {
        &self.biases
    }

    /// `theta += scale_k * step_k` for every coupling and bias (`scale_k` for `W_k` and `b_k`;
    /// the input bias uses `scale_1`).
    pub fn add_scaled(&mut self, step: &Gradient, scales: &[f32]) {
        for ((k, theta), (_, d)) in self.tensors_mut().zip(step.tensors()) {
            let c = scales[k];
            theta.iter_mut().zip(d).for_each(|(x, &d)| *x += c * d);
        }
    }

    /// Every parameter tensor as a flat slice, with the index of the coupling whose rate it
    /// takes (see [`Gradient::tensors`]).
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = (usize, &mut [f32])> {
        tensors_mut(&mut self.weights, &mut self.biases)
    }
}

/// Something of the shape of a network's parameters: `dPhi/dtheta` summed over samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradient {
    pub weights: Vec<Matrix>,
    pub biases: Vec<Vec<f32>>,
}

impl Gradient {
    /// Zeros shaped like `arch`'s parameters.
    pub fn zeros(arch: &Architecture) -> Self {
        Self {
            weights: (1..arch.num_layers())
                .map(|k| {
                    let (r, c) = arch.weight_shape(k);
                    Matrix::zeros(r, c)
                })
                .collect(),
            biases: (0..arch.num_layers())
                .map(|k| vec![0.0; arch.bias_len(k)])
                .collect(),
        }
    }

    pub fn fill_zero(&mut self) {
        self.weights.iter_mut().for_each(|w| w.fill(0.0));
        self.biases.iter_mut().for_each(|b| b.fill(0.0));
    }

    /// Every tensor as a flat slice with the index `k - 1` of the coupling `W_k` whose rate it
    /// takes: the weights `W_1..W_L`, then the biases `b_0..b_L` (`b_k` with `W_k`, the input's
    /// `b_0` with `W_1`).
    pub fn tensors(&self) -> impl Iterator<Item = (usize, &[f32])> {
        let weights = self.weights.iter().map(Matrix::as_slice).enumerate();
        let biases = self.biases.iter().enumerate();
        weights.chain(biases.map(|(k, b)| (bias_coupling(k), b.as_slice())))
    }

    /// [`tensors`](Self::tensors), writable.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = (usize, &mut [f32])> {
        tensors_mut(&mut self.weights, &mut self.biases)
    }

    /// `self += other`.
    pub fn add(&mut self, other: &Gradient) {
        for (a, b) in self.weights.iter_mut().zip(&other.weights) {
            for (x, &y) in a.as_mut_slice().iter_mut().zip(b.as_slice()) {
                *x += y;
            }
        }
        for (a, b) in self.biases.iter_mut().zip(&other.biases) {
            for (x, &y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// The coupling whose rate bias `b_k` takes: `W_k`'s, the input's `W_1`'s.
fn bias_coupling(k: usize) -> usize {
    k.max(1) - 1
}

fn tensors_mut<'a>(
    weights: &'a mut [Matrix],
    biases: &'a mut [Vec<f32>],
) -> impl Iterator<Item = (usize, &'a mut [f32])> {
    let weights = weights.iter_mut().map(Matrix::as_mut_slice).enumerate();
    let biases = biases.iter_mut().enumerate();
    weights.chain(biases.map(|(k, b)| (bias_coupling(k), b.as_mut_slice())))
}
