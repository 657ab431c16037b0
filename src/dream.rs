//! Dreaming: clamp a label on the output, free the input, and let the physics draw.
//!
//! The network is the same energy `E` as in training, but the roles of the layers swap: the
//! output is held at a one-hot label (hard clamp) or pulled toward it (a strong nudge,
//! `F = E + beta C`), and the input pixels become free states in `[0, 1]` that relax with the
//! hidden layers. Optional Langevin noise makes repeated dreams differ:
//!
//! ```text
//! s <- clamp(s - eps dF/ds + sqrt(2 eps T_t) xi, 0, 1),   xi ~ N(0, 1),   T_t = T (1 - t / steps)
//! ```
//! The temperature is annealed to zero, so every dream ends near a minimum of the energy
//! landscape given its label (a different one for different noise).

use crate::config::{ConfigError, Hyperparams, range};
use crate::dynamics::{Nudge, Phase, Relaxation, State};
use crate::judge::Judge;
use crate::network::Network;
use crate::picture::{PictureError, write_gif, write_png};
use crate::tensor::Matrix;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub use crate::error::DreamError;

/// How the label holds the output layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LabelClamp {
    /// The output is fixed at the one-hot label.
    Hard,
    /// The output is free but nudged toward the one-hot label with this strength.
    Nudge { beta: f32 },
}

/// Where the free layers start.
#[derive(Clone, Debug, PartialEq)]
pub enum DreamStart {
    /// Every free unit at 0.
    Zeros,
    /// Every free unit uniform in `[0, 1]` (seeded): different starts may fall into different
    /// minima.
    Noise,
    /// Input pixels from these images (one row per dream), hidden units at 0: morphing.
    Images(Matrix),
}

/// Options of [`dream`].
#[derive(Clone, Debug, PartialEq)]
pub struct DreamOptions {
    pub steps: usize,
    pub eps: f32,
    /// Initial Langevin temperature `T` (0: deterministic relaxation).
    pub temperature: f32,
    pub clamp: LabelClamp,
    pub start: DreamStart,
    /// Values of the one-hot label (the training targets).
    pub target_off: f32,
    pub target_on: f32,
    pub seed: u64,
    /// Keep the input layer every this many steps (for animations); 0 keeps none.
    pub record_every: usize,
    /// Stiffness of the free input (see [`Relaxation::with_input_stiffness`]); use the one the
    /// network was trained with.
    pub input_stiffness: f32,
    /// Share of the hidden units held at 0 in each dream, a different random set per dream
    /// (a dream then draws its label from another subset of the learned features).
    pub silenced: f32,
}

impl Default for DreamOptions {
    fn default() -> Self {
        Self {
            steps: 200,
            eps: 0.5,
            temperature: 0.0,
            clamp: LabelClamp::Hard,
            start: DreamStart::Zeros,
            target_off: 0.0,
            target_on: 1.0,
            seed: 0,
            record_every: 0,
            input_stiffness: 1.0,
            silenced: 0.0,
        }
    }
}

pub use crate::dream_common::{DREAM_SILENCED, DREAM_STEPS, one_hot};
use crate::dream_common::{apply_masks, silence_masks, validate_dream};

impl DreamOptions {
    /// `eqprop dream`'s defaults for a network trained with `hp`: [`DREAM_STEPS`] steps from
    /// noise, [`DREAM_SILENCED`] of the hidden units silenced, the rest as
    /// [`for_hyperparams`](Self::for_hyperparams).
    pub fn dreaming(hp: &Hyperparams) -> Self {
        Self {
            steps: DREAM_STEPS,
            start: DreamStart::Noise,
            silenced: DREAM_SILENCED,
            ..Self::for_hyperparams(hp)
        }
    }

    /// The defaults for a network trained with `hp`: its step size, its targets and the
    /// stiffness of the input it was trained generatively with (1 without).
    pub fn for_hyperparams(hp: &Hyperparams) -> Self {
        Self {
            eps: hp.eps,
            target_off: hp.target_off,
            target_on: hp.target_on,
            input_stiffness: hp.generative.map_or(1.0, |g| g.input_stiffness),
            ..Self::default()
        }
    }

    /// Checks every setting a user may give: at least one step, a step size in `(0, 1]`, a
    /// finite non-negative temperature, a positive finite nudge, a silenced share in `[0, 1]`
    /// and a positive finite stiffness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_dream(self.steps, self.silenced, self.input_stiffness)?;
        let eps_ok = self.eps > 0.0 && self.eps <= 1.0;
        range("dream eps", eps_ok, "in (0, 1]", self.eps as f64)?;
        let t = self.temperature;
        range(
            "temperature",
            t >= 0.0 && t.is_finite(),
            "finite, >= 0",
            t as f64,
        )?;
        if let LabelClamp::Nudge { beta } = self.clamp {
            let ok = beta > 0.0 && beta.is_finite();
            range("nudge", ok, "positive and finite", beta as f64)?;
        }
        Ok(())
    }
}

/// The result of [`dream`].
#[derive(Clone, Debug, PartialEq)]
pub struct Dreams {
    /// The clamped label of each dream.
    pub labels: Vec<usize>,
    /// The final input layer, one dream per row, values in `[0, 1]`.
    pub images: Matrix,
    /// Snapshots of the input layer (the first is the start, the last the final images).
    pub frames: Vec<Matrix>,
    /// The final output layer (the label itself under a hard clamp).
    pub outputs: Matrix,
}

/// Dreams one image per entry of `labels`: the input relaxes with the label on the output.
///
/// Panics if a label is not an output unit (callers validate user input first).
pub fn dream(net: &Network, labels: &[usize], options: &DreamOptions) -> Dreams {
    let sizes = net.sizes();
    let outputs = *sizes.last().expect("a network has layers");
    assert!(
        labels.iter().all(|&l| l < outputs),
        "label outside the output layer"
    );
    let n = labels.len();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut state = State::zeros(sizes, n);
    let target = one_hot(labels, outputs, options.target_off, options.target_on);
    start_state(&mut state, &options.start, &mut rng);
    let output = net.output_layer();
    let mut clamped = vec![false; sizes.len()];
    if options.clamp == LabelClamp::Hard {
        state.layers[output].copy_from(&target);
        clamped[output] = true;
    }
    let mut relax = Relaxation::new(sizes, n).with_input_stiffness(options.input_stiffness);
    relax.prepare(net, &state, &clamped);
    let nudge = match options.clamp {
        LabelClamp::Hard => None,
        LabelClamp::Nudge { beta } => Some(Nudge {
            layer: output,
            beta,
            target: &target,
        }),
    };
    let phase = Phase {
        steps: 1,
        eps: options.eps,
        nudge,
    };
    let masks = silence_masks(sizes, n, options.silenced, &mut rng);
    apply_masks(&mut state.layers, &masks);
    let mut frames = vec![state.layers[0].clone()];
    for t in 0..options.steps {
        relax.relax(net, &mut state, &phase);
        apply_masks(&mut state.layers, &masks);
        let temperature = options.temperature * (1.0 - t as f32 / options.steps as f32);
        if temperature > 0.0 {
            let sigma = (2.0 * options.eps * temperature).sqrt();
            add_noise(&mut state, &clamped, sigma, &mut rng);
            apply_masks(&mut state.layers, &masks);
        }
        if options.record_every > 0 && (t + 1) % options.record_every == 0 {
            frames.push(state.layers[0].clone());
        }
    }
    if frames.len() == 1 || !options.steps.is_multiple_of(options.record_every.max(1)) {
        frames.push(state.layers[0].clone());
    }
    Dreams {
        labels: labels.to_vec(),
        outputs: state.layers.pop().expect("a state has layers"),
        images: state.layers.swap_remove(0),
        frames,
    }
}

fn start_state(state: &mut State, start: &DreamStart, rng: &mut ChaCha8Rng) {
    if *start == DreamStart::Noise {
        for layer in &mut state.layers {
            layer
                .as_mut_slice()
                .iter_mut()
                .for_each(|v| *v = rng.random_range(0.0..1.0));
        }
    }
    let input = &mut state.layers[0];
    match start {
        DreamStart::Zeros | DreamStart::Noise => {}
        DreamStart::Images(images) => {
            assert_eq!(
                (images.rows(), images.cols()),
                (input.rows(), input.cols()),
                "one start image per dream"
            );
            for (s, &v) in input.as_mut_slice().iter_mut().zip(images.as_slice()) {
                *s = v.clamp(0.0, 1.0);
            }
        }
    }
}

/// `s <- clamp(s + sigma xi, 0, 1)` on every free layer, `xi` standard normal.
fn add_noise(state: &mut State, clamped: &[bool], sigma: f32, rng: &mut ChaCha8Rng) {
    for (layer, _) in state
        .layers
        .iter_mut()
        .zip(clamped)
        .filter(|&(_, &fixed)| !fixed)
    {
        for v in layer.as_mut_slice() {
            *v = (*v + sigma * standard_normal(rng)).clamp(0.0, 1.0);
        }
    }
}

/// A standard normal draw (Box-Muller; `rand` 0.10 keeps distributions in another crate).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// A labelled grid of dreams: one row per distinct label (in order of first appearance), the
/// dreams of that label along it. `images` holds one `side x side` picture per row.
pub fn dream_grid(labels: &[usize], images: &Matrix, side: usize) -> image::RgbaImage {
    let mut rows: Vec<(usize, Vec<&[f32]>)> = Vec::new();
    for (r, &label) in labels.iter().enumerate() {
        match rows.iter_mut().find(|(l, _)| *l == label) {
            Some((_, row)) => row.push(images.row(r)),
            None => rows.push((label, vec![images.row(r)])),
        }
    }
    let layout = crate::picture::GridLayout {
        width: side,
        height: side,
        scale: 2,
    };
    crate::picture::labelled_grid(&rows, layout)
}

/// `samples` copies of each label, label by label: the usual request of a dream grid.
pub fn repeat_labels(labels: &[usize], samples: usize) -> Vec<usize> {
    labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, samples))
        .collect()
}

/// Side of the square input images of a network with `pixels` inputs.
pub fn image_side(pixels: usize) -> Result<usize, DreamError> {
    let side = (pixels as f64).sqrt().round() as usize;
    if side * side != pixels {
        return Err(DreamError::NotSquare { pixels });
    }
    Ok(side)
}

/// Steps between the recorded frames of an animation of `steps` relaxation steps (about 20
/// frames): the `record_every` of [`DreamOptions`] for [`write_animation`].
pub fn animation_interval(steps: usize) -> usize {
    (steps / 20).max(1)
}

/// Writes the final images of `dreams` (`side x side` pixels) as a labelled grid PNG
/// ([`dream_grid`]).
pub fn write_grid(dreams: &Dreams, side: usize, path: &Path) -> Result<(), PictureError> {
    write_png(&dream_grid(&dreams.labels, &dreams.images, side), path)
}

/// Writes the recorded frames of `dreams` as an endlessly looping GIF of grids, 80 ms each.
pub fn write_animation(dreams: &Dreams, side: usize, path: &Path) -> Result<(), PictureError> {
    let frames = dreams
        .frames
        .iter()
        .map(|f| dream_grid(&dreams.labels, f, side))
        .collect();
    write_gif(frames, 80, path)
}

/// The grid `train --dreams` writes after an epoch: 8 dreams of each label 0-9 (as many as the
/// outputs) by `net` (trained with `hp`), relaxed as `options` say, written to `path` (its
/// folder made if need be).
pub fn write_epoch_grid(
    net: &Network,
    hp: &Hyperparams,
    options: &DreamOptions,
    path: &Path,
) -> crate::Result<()> {
    let side = image_side(hp.layers[0])?;
    let classes = *hp.layers.last().expect("validated");
    let labels = repeat_labels(&(0..classes.min(10)).collect::<Vec<_>>(), 8);
    let dreams = dream(net, &labels, options);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| crate::Error::io(parent, e))?;
    }
    Ok(write_grid(&dreams, side, path)?)
}

/// The judge saved at `path` ([`Judge::save`]), checked to read images of `pixels` pixels.
pub fn load_judge(path: &Path, pixels: usize) -> crate::Result<Judge> {
    let judge = Judge::load(path)?;
    if judge.pixels() != pixels {
        return Err(DreamError::JudgePixels {
            path: path.to_path_buf(),
            judge: judge.pixels(),
            dreams: pixels,
        }
        .into());
    }
    Ok(judge)
}
