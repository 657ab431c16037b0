//! Dopamine: a global surprise signal that decides which examples learn.
//!
//! After the free phase, the surprise of an example is the output cost at its free fixed point,
//! `C = 1/2 ||y^0 - t||^2`, the prediction error a neuromodulator would broadcast. With
//! `C <= theta` the example was predicted well enough: it gets no nudged phase and no update (its
//! learning rate is 0), so it costs only its prediction. With `C > theta` it learns with `gain`
//! times the learning rate.
//!
//! The threshold `theta` is fixed, or adaptive: a running quantile estimate, moved after every
//! mini-batch by `theta <- max(0, theta + step (a - share))` where `a` is the share of the batch
//! above `theta`. It settles where a `share` of the examples learns (fewer, at `theta = 0`, when
//! more than `1 - share` of them are predicted exactly: the hard-sigmoid output often hits its
//! target).

use crate::tensor::Matrix;
use serde::{Deserialize, Serialize};

/// How the threshold is set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Threshold {
    /// Examples with surprise above `value` learn.
    Fixed { value: f32 },
    /// A running quantile: about `share` of the examples learn; `step` is the threshold's move
    /// per mini-batch and unit of share error.
    Adaptive { share: f32, step: f32 },
    /// A running quantile on the log scale, `ln theta <- ln theta + rate (a - share)`: at rest
    /// about `share` of the examples learn, whatever the scale of the surprise; when the surprise
    /// jumps (a new world), nearly every example learns until the threshold has climbed to the
    /// new level (`ln(jump) / (rate (1 - share))` examples), and far fewer once the surprise
    /// falls back: surprise relative to the surprise expected.
    Relative { share: f32, rate: f32 },
}

/// The threshold a [`Threshold::Relative`] gate starts from (every example learns at first).
const RELATIVE_START: f32 = 1e-8;

/// The surprise gate of the learning rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Modulator {
    pub threshold: Threshold,
    /// Learning-rate multiplier of the examples that learn.
    pub gain: f32,
}

impl Default for Modulator {
    /// Learn only from the examples whose prediction missed at all (cost above 1e-4), at the
    /// normal learning rate.
    fn default() -> Self {
        Self {
            threshold: Threshold::Fixed { value: 1e-4 },
            gain: 1.0,
        }
    }
}

impl Modulator {
    /// The threshold before any example was seen.
    pub fn initial_threshold(&self) -> f32 {
        match self.threshold {
            Threshold::Fixed { value } => value,
            Threshold::Adaptive { .. } => 0.0,
            Threshold::Relative { .. } => RELATIVE_START,
        }
    }

    /// Whether an example of this surprise learns under `threshold`.
    pub fn learns(surprise: f32, threshold: f32) -> bool {
        surprise > threshold
    }

    /// The threshold after a mini-batch with these surprises.
    pub fn adapt<'a, I: IntoIterator<Item = &'a f32>>(&self, threshold: f32, surprises: I) -> f32 {
        let above = |surprises: I| {
            let (above, seen) = surprises.into_iter().fold((0usize, 0usize), |(a, n), &s| {
                (a + usize::from(Self::learns(s, threshold)), n + 1)
            });
            above as f32 / seen.max(1) as f32
        };
        match self.threshold {
            Threshold::Fixed { value } => value,
            Threshold::Adaptive { share, step } => {
                (threshold + step * (above(surprises) - share)).max(0.0)
            }
            Threshold::Relative { share, rate } => {
                let moved = threshold * (rate * (above(surprises) - share)).exp();
                moved.clamp(f32::MIN_POSITIVE, f32::MAX)
            }
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), GateError> {
        if !(self.gain.is_finite() && self.gain > 0.0) {
            return Err(GateError::Gain(self.gain));
        }
        match self.threshold {
            Threshold::Fixed { value } if !(value.is_finite() && value >= 0.0) => {
                Err(GateError::Threshold(value))
            }
            Threshold::Adaptive { share, .. } if !(share > 0.0 && share <= 1.0) => {
                Err(GateError::Share(share))
            }
            Threshold::Adaptive { step, .. } if !(step.is_finite() && step > 0.0) => {
                Err(GateError::Step(step))
            }
            Threshold::Relative { share, .. } if !(share > 0.0 && share <= 1.0) => {
                Err(GateError::Share(share))
            }
            Threshold::Relative { rate, .. } if !(rate.is_finite() && rate > 0.0) => {
                Err(GateError::Step(rate))
            }
            _ => Ok(()),
        }
    }
}

/// A surprise gate setting that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("gate gain must be positive, got {0}")]
    Gain(f32),
    #[error("gate threshold must be >= 0, got {0}")]
    Threshold(f32),
    #[error("gate share must be in (0, 1], got {0}")]
    Share(f32),
    #[error("gate step must be positive, got {0}")]
    Step(f32),
}

/// How a gate judges a stream of examples seen one at a time (the world model's steps): by
/// their mood, the surprise averaged over recent steps, rather than by each surprise alone.
///
/// The mood is `m <- m + smoothing (C - m)`, the surprise averaged over about `1 / smoothing`
/// steps (`smoothing = 1`: the surprise itself), and an example learns when `m > theta`; the
/// threshold's quantile tracks the mood. With `cap = k`, the threshold is at most `k` times the
/// expected mood `exp(e)`, `e <- e + EXPECTATION_RATE (ln m - e)` (its geometric mean over
/// about 1000 steps, from `ln 1e-8`): a threshold that climbed in a burst comes back down
/// with the mood, and a lasting rise of the mood keeps the gate open until the expectation has
/// followed it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mood {
    pub smoothing: f32,
    pub cap: Option<f32>,
}

/// How fast the expected mood of a [`Mood`] cap follows the mood (per step).
pub const EXPECTATION_RATE: f32 = 1e-3;

impl Default for Mood {
    /// Each example judged by its own surprise, no cap: a plain gate.
    fn default() -> Self {
        Self {
            smoothing: 1.0,
            cap: None,
        }
    }
}

impl Mood {
    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(format!(
                "smoothing must be in (0, 1], got {}",
                self.smoothing
            ));
        }
        match self.cap {
            Some(k) if !(k.is_finite() && k >= 1.0) => {
                Err(format!("cap must be a finite factor >= 1, got {k}"))
            }
            _ => Ok(()),
        }
    }
}

/// The running state of a [`Mood`] gate: the mood, the expected mood and the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoodState {
    mood: Option<f32>,
    expected: f32,
    threshold: f32,
}

impl MoodState {
    /// Before any example, with `gate`'s initial threshold.
    pub fn new(gate: &Modulator) -> Self {
        Self {
            mood: None,
            expected: RELATIVE_START.ln(),
            threshold: gate.initial_threshold(),
        }
    }

    /// The threshold the mood is compared with (the cap applied).
    pub fn threshold(&self, mood: &Mood) -> f32 {
        match mood.cap {
            Some(k) => self.threshold.min(k * self.expected.exp()),
            None => self.threshold,
        }
    }

    /// Whether the next example, of this surprise, learns; then moves the threshold and the
    /// expectation.
    pub fn decide(&mut self, gate: &Modulator, mood: &Mood, surprise: f32) -> bool {
        let level = match self.mood {
            Some(m) if mood.smoothing < 1.0 => m + mood.smoothing * (surprise - m),
            _ => surprise,
        };
        self.mood = Some(level);
        let learns = Modulator::learns(level, self.threshold(mood));
        self.threshold = gate.adapt(self.threshold, &[level]);
        if mood.cap.is_some() {
            self.expected += EXPECTATION_RATE * (level.max(1e-12).ln() - self.expected);
        }
        learns
    }
}

/// The surprise of each row: `C = 1/2 ||output - target||^2`.
pub fn surprise(output: &Matrix, target: &Matrix, out: &mut [f32]) {
    for (r, s) in out.iter_mut().enumerate() {
        *s = row_surprise(output.row(r), target.row(r));
    }
}

/// The surprise of one example: `C = 1/2 ||output - target||^2`.
pub fn row_surprise(output: &[f32], target: &[f32]) -> f32 {
    0.5 * output
        .iter()
        .zip(target)
        .map(|(y, t)| (y - t) * (y - t))
        .sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_threshold_settles_at_the_quantile() {
        let gate = Modulator {
            threshold: Threshold::Adaptive {
                share: 0.25,
                step: 0.01,
            },
            gain: 1.0,
        };
        // Surprises uniform on [0, 1): a quarter lies above 0.75.
        let batch: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let mut theta = gate.initial_threshold();
        for _ in 0..2000 {
            theta = gate.adapt(theta, &batch);
        }
        assert!((theta - 0.75).abs() < 0.02, "threshold {theta}");
    }

    #[test]
    fn relative_threshold_settles_at_the_quantile_and_follows_a_jump() {
        let gate = Modulator {
            threshold: Threshold::Relative {
                share: 0.05,
                rate: 0.01,
            },
            gain: 1.0,
        };
        // Surprises spread over two decades, log-uniform: 5% lie above 10^(-4 + 2 * 0.95).
        let level =
            |i: usize, scale: f32| scale * 10f32.powf(-4.0 + 2.0 * ((i * 37) % 100) as f32 / 100.0);
        let mut theta = gate.initial_threshold();
        for i in 0..40_000 {
            theta = gate.adapt(theta, &[level(i, 1.0)]);
        }
        let want = 10f32.powf(-4.0 + 2.0 * 0.95);
        assert!(
            (theta / want).ln().abs() < 0.15,
            "threshold {theta}, want {want}"
        );
        // A hundredfold jump: nearly every example learns until the threshold has climbed,
        // about ln(100) / (0.01 * 0.95) = 485 examples.
        let mut learned = 0;
        for i in 0..1000 {
            let s = level(i, 100.0);
            learned += usize::from(Modulator::learns(s, theta));
            theta = gate.adapt(theta, &[s]);
        }
        assert!(
            (450..650).contains(&learned),
            "{learned} of 1000 learned after the jump"
        );
    }

    fn relative() -> Modulator {
        Modulator {
            threshold: Threshold::Relative {
                share: 0.05,
                rate: 0.01,
            },
            gain: 1.0,
        }
    }

    /// Surprises that swing over a decade, as a world's do at rest.
    fn rest(i: usize) -> f32 {
        1e-4 * 10f32.powf(((i * 37) % 100) as f32 / 100.0)
    }

    #[test]
    fn a_plain_mood_is_the_plain_gate() {
        let gate = relative();
        let mut state = MoodState::new(&gate);
        let mut theta = gate.initial_threshold();
        for i in 0..3000 {
            let s = rest(i) * if i > 2000 { 30.0 } else { 1.0 };
            assert_eq!(
                state.decide(&gate, &Mood::default(), s),
                Modulator::learns(s, theta)
            );
            theta = gate.adapt(theta, &[s]);
            assert_eq!(state.threshold(&Mood::default()), theta);
        }
    }

    #[test]
    fn the_mood_averages_the_surprise() {
        let gate = relative();
        let mood = Mood {
            smoothing: 0.5,
            cap: None,
        };
        let mut state = MoodState::new(&gate);
        for s in [8.0, 0.0, 0.0] {
            state.decide(&gate, &mood, s);
        }
        assert_eq!(state.mood, Some(2.0));
    }

    /// A lasting tenfold rise of the surprise after a long rest: the plain gate's threshold
    /// climbs to it within a few hundred steps and the learning stops; capped at 4 times the
    /// expected mood, the threshold rises only as the expectation follows, and far more steps
    /// learn. Back at rest, both learn few.
    #[test]
    fn a_capped_threshold_keeps_a_burst_open_and_comes_back_down() {
        let gate = relative();
        let capped = Mood {
            smoothing: 0.02,
            cap: Some(4.0),
        };
        let plain = Mood {
            smoothing: 0.02,
            cap: None,
        };
        let learned = |mood: &Mood| {
            let mut state = MoodState::new(&gate);
            let mut count = |range: std::ops::Range<usize>, scale: f32| {
                range
                    .map(|i| usize::from(state.decide(&gate, mood, rest(i) * scale)))
                    .sum::<usize>()
            };
            count(0..20_000, 1.0);
            let rest_before = count(20_000..21_000, 1.0);
            let burst = count(21_000..21_500, 10.0);
            count(21_500..30_000, 10.0);
            let rest_after = count(30_000..31_000, 10.0);
            (rest_before, burst, rest_after)
        };
        let (plain_rest, plain_burst, _) = learned(&plain);
        let (capped_rest, capped_burst, capped_after) = learned(&capped);
        assert!(
            plain_rest < 100 && capped_rest < 100,
            "{plain_rest} {capped_rest}"
        );
        assert!(
            capped_burst >= 400 && capped_burst > plain_burst + 100,
            "burst: capped {capped_burst}, plain {plain_burst}"
        );
        assert!(capped_after < 100, "capped, after: {capped_after}");
    }

    #[test]
    fn bad_moods_are_named() {
        for (smoothing, cap) in [
            (0.0, None),
            (1.5, None),
            (0.1, Some(0.5)),
            (0.1, Some(f32::NAN)),
        ] {
            assert!(Mood { smoothing, cap }.validate().is_err());
        }
    }

    #[test]
    fn surprise_is_half_the_squared_error() {
        let y = Matrix::from_vec(2, 2, vec![1.0, 0.0, 0.5, 0.5]).unwrap();
        let t = Matrix::from_vec(2, 2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let mut s = [9.0; 2];
        surprise(&y, &t, &mut s);
        assert_eq!(s, [0.0, 0.25]);
    }
}
