//! What every network's dreams share, dense or convolutional: their default length, the
//! clamped one-hot labels, the hidden units silenced in each dream, and the checks of those
//! settings.

use crate::config::{ConfigError, range};
use crate::tensor::Matrix;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Relaxation steps of `eqprop dream` (and of the dreams continual learning replays).
pub const DREAM_STEPS: usize = 100;

/// Share of hidden units `eqprop dream` silences in each dream.
pub const DREAM_SILENCED: f32 = 0.15;

/// The settings every dream has, dense or convolutional: at least one step, a silenced share
/// in `[0, 1]` and a positive finite input stiffness.
pub(crate) fn validate_dream(
    steps: usize,
    silenced: f32,
    stiffness: f32,
) -> Result<(), ConfigError> {
    range("dream steps", steps > 0, "at least 1", steps as f64)?;
    range(
        "silence",
        (0.0..=1.0).contains(&silenced),
        "in [0, 1]",
        silenced as f64,
    )?;
    range(
        "input stiffness",
        stiffness > 0.0 && stiffness.is_finite(),
        "positive and finite",
        stiffness as f64,
    )
}

/// For each hidden layer, a `batch x units` mask of ones with a `share` of zeros per row.
pub(crate) fn silence_masks(
    sizes: &[usize],
    batch: usize,
    share: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<Matrix> {
    if share <= 0.0 {
        return Vec::new();
    }
    let hidden = &sizes[1..sizes.len() - 1];
    hidden
        .iter()
        .map(|&units| {
            let mask = (0..batch * units)
                .map(|_| {
                    if rng.random_range(0.0..1.0) < share {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect();
            Matrix::from_vec(batch, units, mask).expect("sized")
        })
        .collect()
}

/// Holds the silenced hidden units of `layers` (input first) at 0.
pub(crate) fn apply_masks(layers: &mut [Matrix], masks: &[Matrix]) {
    for (layer, mask) in layers[1..].iter_mut().zip(masks) {
        for (v, &m) in layer.as_mut_slice().iter_mut().zip(mask.as_slice()) {
            *v *= m;
        }
    }
}

/// Rows of `off` with `on` at each label.
pub fn one_hot(labels: &[usize], units: usize, off: f32, on: f32) -> Matrix {
    let mut m = Matrix::zeros(labels.len(), units);
    m.fill(off);
    for (r, &l) in labels.iter().enumerate() {
        m.set(r, l, on);
    }
    m
}
