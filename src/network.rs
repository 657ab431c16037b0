//! The layered Hopfield-like network: layer sizes, symmetric couplings `W_k` and biases `b_k`.

use crate::tensor::Matrix;
use rand::{Rng, RngExt};

/// Layer 0 is the input, the last layer the output; `W_k` couples layer `k-1` to layer `k`.
///
/// Couplings are symmetric (the same `W_k` carries the bottom-up drive `rho(h_{k-1}) W_k` and the
/// top-down drive `rho(h_{k+1}) W_{k+1}^T`), which is what makes the dynamics a descent on one
/// energy. Every layer has a bias, the input's included, so any layer may be freed (dreaming).
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    sizes: Vec<usize>,
    weights: Vec<Matrix>,
    biases: Vec<Vec<f32>>,
}

/// A network description that does not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("a network needs at least two layers (input and output), got {0}")]
    TooFewLayers(usize),
    #[error("layer {0} has zero units")]
    EmptyLayer(usize),
    #[error("weight W_{layer} should be {expected:?}, got {got:?}")]
    Weight {
        layer: usize,
        expected: (usize, usize),
        got: (usize, usize),
    },
    #[error("bias of layer {layer} should have {expected} entries, got {got}")]
    Bias {
        layer: usize,
        expected: usize,
        got: usize,
    },
}

/// Checks a list of layer sizes.
pub fn validate_sizes(sizes: &[usize]) -> Result<(), ShapeError> {
    if sizes.len() < 2 {
        return Err(ShapeError::TooFewLayers(sizes.len()));
    }
    match sizes.iter().position(|&n| n == 0) {
        Some(k) => Err(ShapeError::EmptyLayer(k)),
        None => Ok(()),
    }
}

impl Network {
    /// Glorot-uniform couplings `U(-a, a)`, `a = sqrt(6 / (n_in + n_out))`, and zero biases.
    pub fn glorot<R: Rng + ?Sized>(sizes: &[usize], rng: &mut R) -> Result<Self, ShapeError> {
        validate_sizes(sizes)?;
        let weights = sizes
            .windows(2)
            .map(|pair| {
                let limit = (6.0 / (pair[0] + pair[1]) as f32).sqrt();
                let data = (0..pair[0] * pair[1])
                    .map(|_| rng.random_range(-limit..limit))
                    .collect();
                Matrix::from_vec(pair[0], pair[1], data).expect("length is rows*cols")
            })
            .collect();
        let biases = sizes.iter().map(|&n| vec![0.0; n]).collect();
        Ok(Self {
            sizes: sizes.to_vec(),
            weights,
            biases,
        })
    }

    /// Assembles a network from its parts, checking every shape.
    pub fn from_parts(
        sizes: Vec<usize>,
        weights: Vec<Matrix>,
        biases: Vec<Vec<f32>>,
    ) -> Result<Self, ShapeError> {
        validate_sizes(&sizes)?;
        for (k, w) in weights.iter().enumerate() {
            let expected = (sizes[k], sizes[k + 1]);
            if (w.rows(), w.cols()) != expected {
                return Err(ShapeError::Weight {
                    layer: k + 1,
                    expected,
                    got: (w.rows(), w.cols()),
                });
            }
        }
        if weights.len() != sizes.len() - 1 {
            let k = weights.len().min(sizes.len() - 2) + 1;
            return Err(ShapeError::Weight {
                layer: k,
                expected: (sizes[k - 1], sizes[k]),
                got: (0, 0),
            });
        }
        for (k, &n) in sizes.iter().enumerate() {
            let got = biases.get(k).map_or(0, Vec::len);
            if got != n {
                return Err(ShapeError::Bias {
                    layer: k,
                    expected: n,
                    got,
                });
            }
        }
        Ok(Self {
            sizes,
            weights,
            biases,
        })
    }

    /// Units per layer, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of layers, input and output included.
    pub fn num_layers(&self) -> usize {
        self.sizes.len()
    }

    /// Index of the output layer.
    pub fn output_layer(&self) -> usize {
        self.sizes.len() - 1
    }

    /// `W_k`, of shape `sizes[k-1] x sizes[k]`, for `k` in `1..num_layers()`.
    pub fn weight(&self, k: usize) -> &Matrix {
        &self.weights[k - 1]
    }

    /// All couplings, `W_1` first.
    pub fn weights(&self) -> &[Matrix] {
        &self.weights
    }

    /// All couplings, mutably, `W_1` first.
    pub fn weights_mut(&mut self) -> &mut [Matrix] {
        &mut self.weights
    }

    /// Bias `b_k` of layer `k`.
    pub fn bias(&self, k: usize) -> &[f32] {
        &self.biases[k]
    }

    /// All biases, layer 0 first.
    pub fn biases(&self) -> &[Vec<f32>] {
        &self.biases
    }

    /// All biases, mutably.
    pub fn biases_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.biases
    }

    /// Couplings and biases together, mutably (the learning rule updates both at once).
    pub fn params_mut(&mut self) -> (&mut [Matrix], &mut [Vec<f32>]) {
        (&mut self.weights, &mut self.biases)
    }
}

/// The hard sigmoid `rho(s) = clamp(s, 0, 1)`.
#[inline]
pub fn rho(s: f32) -> f32 {
    s.clamp(0.0, 1.0)
}
