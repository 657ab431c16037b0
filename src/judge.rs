//! A judge for dreams: a plain backprop classifier, independent of the EqProp network, that says
//! which digit (or garment) a generated image shows and how varied the dreams of a label are.
//!
//! The judge is a `pixels - hidden - 10` perceptron,
//!
//! ```text
//! h = relu(x W1 + b1),   z = h W2 + b2,   p = softmax(z),   p_c = exp(z_c) / sum_j exp(z_j)
//! ```
//!
//! trained on the real training images by minimising the softmax cross-entropy
//! `L = -ln p_y = logsumexp(z) - z_y` with mini-batch SGD and momentum.

use crate::backend::{Transpose, matmul_acc};
use crate::checkpoint::{TensorFile, read_file, write_tensors};
use crate::data::Dataset;
use crate::tensor::Matrix;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Number of classes the judge tells apart.
pub const CLASSES: usize = 10;

const FORMAT: &str = "eqprop-judge";

/// Images per chunk when classifying many images in parallel.
const CHUNK: usize = 512;

/// How to train a [`Judge`].
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeOptions {
    /// Hidden ReLU units.
    pub hidden: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Images per SGD step.
    pub batch_size: usize,
    /// Learning rate `eta` of `w -= eta v`.
    pub lr: f32,
    /// Momentum `mu` of `v = mu v + grad`.
    pub momentum: f32,
    /// Seeds the initial weights and every shuffle.
    pub seed: u64,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self {
            hidden: 256,
            epochs: 8,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            seed: 0,
        }
    }
}

/// A judge file that cannot be written or read, naming the file.
pub type JudgeError = crate::checkpoint::FileError;

/// One affine layer `z = x W + b` (`W` is `inputs x outputs`).
#[derive(Clone, Debug, PartialEq)]
struct Layer {
    w: Matrix,
    b: Vec<f32>,
}

impl Layer {
    /// He-uniform init: `W ~ U(-a, a)`, `a = sqrt(6 / inputs)` (variance `2 / inputs`), `b = 0`.
    fn he<R: Rng + ?Sized>(inputs: usize, outputs: usize, rng: &mut R) -> Self {
        let a = (6.0 / inputs as f32).sqrt();
        let values = (0..inputs * outputs)
            .map(|_| rng.random_range(-a..a))
            .collect();
        Self {
            w: Matrix::from_vec(inputs, outputs, values).expect("sized"),
            b: vec![0.0; outputs],
        }
    }

    fn zeros_like(&self) -> Self {
        Self {
            w: Matrix::zeros(self.w.rows(), self.w.cols()),
            b: vec![0.0; self.b.len()],
        }
    }

    /// `x W + b` for a batch `x` (one example per row).
    fn forward(&self, x: &Matrix) -> Matrix {
        let mut z = Matrix::zeros(x.rows(), self.w.cols());
        z.fill_rows(&self.b);
        matmul_acc(&mut z, x, Transpose::No, &self.w, Transpose::No, 1.0);
        z
    }

    /// One momentum step from the batch gradient `dL/dW = x^T dz`, `dL/db = sum_rows dz`:
    /// `v = mu v + grad`, then `theta -= eta v`.
    fn momentum_step(
        &mut self,
        velocity: &mut Layer,
        x: &Matrix,
        dz: &Matrix,
        opts: &JudgeOptions,
    ) {
        scale(velocity.w.as_mut_slice(), opts.momentum);
        matmul_acc(&mut velocity.w, x, Transpose::Yes, dz, Transpose::No, 1.0);
        scale(&mut velocity.b, opts.momentum);
        for r in 0..dz.rows() {
            add(&mut velocity.b, dz.row(r), 1.0);
        }
        add(self.w.as_mut_slice(), velocity.w.as_slice(), -opts.lr);
        add(&mut self.b, &velocity.b, -opts.lr);
    }
}

fn scale(values: &mut [f32], factor: f32) {
    values.iter_mut().for_each(|v| *v *= factor);
}

/// `dst += alpha src`.
fn add(dst: &mut [f32], src: &[f32], alpha: f32) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += alpha * s);
}

fn relu(m: &mut Matrix) {
    m.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Turns each row of logits `z` into `softmax(z)` (shifted by the row maximum for stability) and
/// returns the row's `logsumexp(z)`.
fn softmax_rows(z: &mut Matrix) -> Vec<f64> {
    (0..z.rows())
        .map(|r| {
            let row = z.row_mut(r);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|v| *v = (*v - max).exp());
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
            max as f64 + (sum as f64).ln()
        })
        .collect()
}

/// Turns a batch of logits `z` into the gradient of the mean cross-entropy,
/// `dL/dz = (softmax(z) - onehot(y)) / B`, and returns the summed loss `sum logsumexp(z) - z_y`.
fn cross_entropy_gradient(z: &mut Matrix, labels: &[usize]) -> f64 {
    let targets: Vec<f32> = labels
        .iter()
        .enumerate()
        .map(|(r, &y)| z.get(r, y))
        .collect();
    let lse = softmax_rows(z);
    for (r, &y) in labels.iter().enumerate() {
        z.set(r, y, z.get(r, y) - 1.0);
    }
    scale(z.as_mut_slice(), 1.0 / labels.len() as f32);
    lse.iter().zip(&targets).map(|(l, &t)| l - t as f64).sum()
}

/// The backprop classifier that labels dreams.
#[derive(Clone, Debug, PartialEq)]
pub struct Judge {
    hidden: Layer,
    output: Layer,
}

impl Judge {
    /// Trains a fresh judge on `data`: He-uniform init, then `options.epochs` passes in a seeded
    /// shuffled order, each mini-batch one SGD-with-momentum step on the mean softmax
    /// cross-entropy. Its gradient is `dL/dz = (p - onehot(y)) / B` at the logits, backpropagated
    /// as `dL/dh = dL/dz W2^T * [h > 0]`. `on_epoch(epoch, mean_loss)` follows each epoch
    /// (epochs counted from 1).
    ///
    /// # Panics
    /// If `options.hidden` or `options.batch_size` is 0.
    pub fn train(
        data: &Dataset,
        options: &JudgeOptions,
        mut on_epoch: impl FnMut(usize, f64),
    ) -> Judge {
        assert!(options.hidden > 0 && options.batch_size > 0, "empty judge");
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut judge = Judge {
            hidden: Layer::he(data.pixels(), options.hidden, &mut rng),
            output: Layer::he(options.hidden, CLASSES, &mut rng),
        };
        let mut velocity = [judge.hidden.zeros_like(), judge.output.zeros_like()];
        let mut order: Vec<usize> = (0..data.len()).collect();
        for epoch in 1..=options.epochs {
            order.shuffle(&mut rng);
            let loss: f64 = order
                .chunks(options.batch_size)
                .map(|batch| judge.sgd_step(&mut velocity, data, batch, options))
                .sum();
            on_epoch(epoch, loss / data.len() as f64);
        }
        judge
    }

    /// One SGD step on the examples `batch` of `data`; returns their summed loss.
    fn sgd_step(
        &mut self,
        velocity: &mut [Layer; 2],
        data: &Dataset,
        batch: &[usize],
        opts: &JudgeOptions,
    ) -> f64 {
        let pixels: Vec<f32> = batch.iter().flat_map(|&i| data.image(i)).copied().collect();
        let x = Matrix::from_vec(batch.len(), data.pixels(), pixels).expect("sized");
        let (h, mut dz) = self.forward(&x);
        let labels: Vec<usize> = batch.iter().map(|&i| data.labels[i] as usize).collect();
        let loss = cross_entropy_gradient(&mut dz, &labels);
        let dh = self.hidden_gradient(&h, &dz);
        let [vh, vo] = velocity;
        self.output.momentum_step(vo, &h, &dz, opts);
        self.hidden.momentum_step(vh, &x, &dh, opts);
        loss
    }

    /// `dL/dh = dL/dz W2^T * [h > 0]`: the output gradient back through `W2` and the ReLU.
    fn hidden_gradient(&self, h: &Matrix, dz: &Matrix) -> Matrix {
        let mut dh = Matrix::zeros(h.rows(), h.cols());
        matmul_acc(
            &mut dh,
            dz,
            Transpose::No,
            &self.output.w,
            Transpose::Yes,
            1.0,
        );
        for (g, &a) in dh.as_mut_slice().iter_mut().zip(h.as_slice()) {
            if a <= 0.0 {
                *g = 0.0;
            }
        }
        dh
    }

    /// Hidden activity `h` and logits `z` of a batch.
    fn forward(&self, x: &Matrix) -> (Matrix, Matrix) {
        let mut h = self.hidden.forward(x);
        relu(&mut h);
        let z = self.output.forward(&h);
        (h, z)
    }

    /// Pixels per image the judge reads.
    pub fn pixels(&self) -> usize {
        self.hidden.w.rows()
    }

    /// Class probabilities `softmax(z)` of a batch of images (`n x 10`, rows sum to 1).
    ///
    /// # Panics
    /// If `images.len()` is not a multiple of [`Judge::pixels`].
    pub fn probabilities(&self, images: &[f32]) -> Matrix {
        let p = self.pixels();
        assert_eq!(images.len() % p, 0, "images must be whole {p}-pixel images");
        let probs: Vec<f32> = images
            .par_chunks(CHUNK * p)
            .flat_map_iter(|chunk| {
                let x = Matrix::from_vec(chunk.len() / p, p, chunk.to_vec()).expect("whole");
                let mut z = self.forward(&x).1;
                softmax_rows(&mut z);
                z.into_vec()
            })
            .collect();
        Matrix::from_vec(images.len() / p, CLASSES, probs).expect("sized")
    }

    /// The most probable label of each image.
    pub fn predict(&self, images: &[f32]) -> Vec<usize> {
        let probs = self.probabilities(images);
        (0..probs.rows()).map(|r| probs.argmax_row(r)).collect()
    }

    /// Share (%) of `data` labelled correctly (NaN for an empty set).
    ///
    /// # Panics
    /// If `data` has images of another size than the judge reads.
    pub fn accuracy(&self, data: &Dataset) -> f64 {
        assert_eq!(data.pixels(), self.pixels(), "images of another size");
        let predicted = self.predict(&data.images);
        let correct = predicted
            .iter()
            .zip(&data.labels)
            .filter(|&(&p, &y)| p == y as usize)
            .count();
        100.0 * correct as f64 / data.len() as f64
    }

    /// Writes the judge as safetensors (`W1`, `b1`, `W2`, `b2`; metadata `format: eqprop-judge`),
    /// atomically.
    pub fn save(&self, path: &Path) -> Result<(), JudgeError> {
        let (w1, w2) = (&self.hidden.w, &self.output.w);
        let tensors = [
            ("W1".into(), vec![w1.rows(), w1.cols()], w1.as_slice()),
            ("b1".into(), vec![self.hidden.b.len()], &self.hidden.b[..]),
            ("W2".into(), vec![w2.rows(), w2.cols()], w2.as_slice()),
            ("b2".into(), vec![self.output.b.len()], &self.output.b[..]),
        ];
        let metadata = HashMap::from([("format".to_string(), FORMAT.to_string())]);
        write_tensors(path, &tensors, metadata)
    }

    /// Reads a judge written by [`Judge::save`]: see [`Judge::load_bytes`].
    pub fn load(path: &Path) -> Result<Judge, JudgeError> {
        Judge::load_bytes(&read_file(path)?, path)
    }

    /// Parses the content `bytes` of a judge file (`path` only names it in errors), checking its
    /// format, its shapes (`W1` `[pixels, hidden]`, `b1` `[hidden]`, `W2` `[hidden, 10]`, `b2`
    /// `[10]`, none empty) and that every value is finite; an error names the tensor.
    pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Judge, JudgeError> {
        let file = TensorFile::parse(bytes, path, "judge")?;
        match file.metadata("format") {
            Some(format) if format == FORMAT => {}
            Some(format) => {
                return Err(file.content(format!("format is '{format}', not '{FORMAT}'")));
            }
            None => {
                return Err(file.content(format!("no format in the metadata, not '{FORMAT}'")));
            }
        }
        let w1 = file.matrix("W1", None, None)?;
        let (p, h) = (w1.rows(), w1.cols());
        if p == 0 || h == 0 {
            return Err(file.content(format!("tensor W1 has shape [{p}, {h}], an empty layer")));
        }
        let b1 = file.vector("b1", h)?;
        let w2 = file.matrix("W2", Some(h), Some(CLASSES))?;
        let b2 = file.vector("b2", CLASSES)?;
        Ok(Judge {
            hidden: Layer { w: w1, b: b1 },
            output: Layer { w: w2, b: b2 },
        })
    }
}

/// What the judge says of generated images.
#[derive(Clone, Debug, PartialEq)]
pub struct DreamReport {
    /// Per label 0..10: share (%) of that label's dreams the judge assigns to the label (NaN if
    /// none).
    pub recognised: Vec<f64>,
    /// Share (%) recognised over all dreams (NaN if none).
    pub overall: f64,
    /// Per label: mean pairwise L2 distance between dreams of the label divided by the same for
    /// real images of that label (NaN if fewer than 2 dreams or no real spread to compare with).
    pub diversity: Vec<f64>,
    /// Mean of the per-label diversity ratios that are defined (NaN if none is).
    pub mean_diversity: f64,
}

/// Scores dreams: `images` flat (`n x pixels`), `labels[i]` the label clamped while dreaming
/// image `i`. The diversity reference is the first `max_real` images of each label in `real`.
///
/// # Panics
/// If `images` and `labels` disagree in count, a label is not below 10, or `real` has images of
/// another size than the judge reads.
pub fn score_dreams(
    judge: &Judge,
    images: &[f32],
    labels: &[usize],
    real: &Dataset,
    max_real: usize,
) -> DreamReport {
    let p = judge.pixels();
    let predicted = judge.predict(images);
    assert_eq!(predicted.len(), labels.len(), "one label per dream");
    assert!(
        labels.iter().all(|&l| l < CLASSES),
        "labels must be below {CLASSES}"
    );
    assert_eq!(real.pixels(), p, "real images of another size");
    let percent = |hits: usize, n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            100.0 * hits as f64 / n as f64
        }
    };
    let (mut dreams, mut hits) = ([0usize; CLASSES], [0usize; CLASSES]);
    for (&l, &p) in labels.iter().zip(&predicted) {
        dreams[l] += 1;
        hits[l] += usize::from(p == l);
    }
    let recognised: Vec<f64> = (0..CLASSES).map(|l| percent(hits[l], dreams[l])).collect();
    let diversity: Vec<f64> = (0..CLASSES)
        .map(|l| label_diversity(images, labels, real, max_real, p, l))
        .collect();
    let defined: Vec<f64> = diversity.iter().copied().filter(|d| !d.is_nan()).collect();
    let mean_diversity = defined.iter().sum::<f64>() / defined.len() as f64;
    DreamReport {
        recognised,
        overall: percent(hits.iter().sum(), labels.len()),
        diversity,
        mean_diversity,
    }
}

/// Spread of the dreams of `label` over that of (at most `max_real`) real images of it.
fn label_diversity(
    images: &[f32],
    labels: &[usize],
    real: &Dataset,
    max_real: usize,
    p: usize,
    label: usize,
) -> f64 {
    let dreams: Vec<&[f32]> = images
        .chunks_exact(p)
        .zip(labels)
        .filter(|&(_, &l)| l == label)
        .map(|(image, _)| image)
        .collect();
    if dreams.len() < 2 {
        return f64::NAN;
    }
    let reference: Vec<&[f32]> = (0..real.len())
        .filter(|&i| real.labels[i] as usize == label)
        .take(max_real)
        .map(|i| real.image(i))
        .collect();
    let spread = mean_pairwise_distance(&reference);
    if spread > 0.0 {
        mean_pairwise_distance(&dreams) / spread
    } else {
        f64::NAN
    }
}

/// Mean Euclidean distance `||a - b||_2` over all `n (n - 1) / 2` unordered pairs of images
/// (0.0 for fewer than 2).
pub fn mean_pairwise_distance(images: &[&[f32]]) -> f64 {
    let n = images.len();
    if n < 2 {
        return 0.0;
    }
    let total: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            images[i + 1..]
                .iter()
                .map(|b| distance(images[i], b))
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    total / (n * (n - 1) / 2) as f64
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny data set of `n` random 3x2 images with labels `i % 10`.
    fn tiny(n: usize, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Dataset {
            images: (0..n * 6).map(|_| rng.random_range(0.0..1.0)).collect(),
            labels: (0..n).map(|i| (i % CLASSES) as u8).collect(),
            rows: 3,
            cols: 2,
            channels: 1,
            targets: Vec::new(),
        }
    }

    /// Mean cross-entropy `logsumexp(z) - z_y` of the examples `batch` of `data`.
    fn mean_loss(judge: &Judge, data: &Dataset, batch: &[usize]) -> f64 {
        let images: Vec<f32> = batch.iter().flat_map(|&i| data.image(i)).copied().collect();
        let x = Matrix::from_vec(batch.len(), data.pixels(), images).unwrap();
        let mut z = judge.forward(&x).1;
        let targets: Vec<f32> = (0..batch.len())
            .map(|r| z.get(r, data.labels[batch[r]] as usize))
            .collect();
        let lse = softmax_rows(&mut z);
        let total: f64 = lse.iter().zip(&targets).map(|(l, &t)| l - t as f64).sum();
        total / batch.len() as f64
    }

    /// With momentum 0 the velocity after one step is the gradient: it matches central finite
    /// differences of the mean loss in every parameter.
    #[test]
    fn backprop_matches_finite_differences() {
        let data = tiny(7, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut judge = Judge {
            hidden: Layer::he(6, 5, &mut rng),
            output: Layer::he(5, CLASSES, &mut rng),
        };
        judge.hidden.b = (0..5).map(|_| rng.random_range(-0.3..0.3)).collect();
        let batch: Vec<usize> = (0..7).collect();
        let opts = JudgeOptions {
            lr: 0.0,
            momentum: 0.0,
            ..JudgeOptions::default()
        };
        let mut velocity = [judge.hidden.zeros_like(), judge.output.zeros_like()];
        let loss = judge.clone().sgd_step(&mut velocity, &data, &batch, &opts) / 7.0;
        assert!((loss - mean_loss(&judge, &data, &batch)).abs() < 1e-6);
        let eps = 1e-2;
        for (layer, v) in velocity.iter().enumerate() {
            let grads: Vec<f32> = v.w.as_slice().iter().chain(&v.b).copied().collect();
            for (i, &g) in grads.iter().enumerate() {
                let nudged = |delta: f32| {
                    let mut j = judge.clone();
                    *param(&mut j, layer, i) += delta;
                    mean_loss(&j, &data, &batch)
                };
                let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * eps as f64);
                let error = (numeric - g as f64).abs();
                assert!(error < 1e-3, "layer {layer} param {i}: {numeric} vs {g}");
            }
        }
    }

    /// Parameter `i` of layer `layer` (weights row-major, then biases).
    fn param(judge: &mut Judge, layer: usize, i: usize) -> &mut f32 {
        let l = if layer == 0 {
            &mut judge.hidden
        } else {
            &mut judge.output
        };
        let weights = l.w.as_slice().len();
        if i < weights {
            &mut l.w.as_mut_slice()[i]
        } else {
            &mut l.b[i - weights]
        }
    }

    /// Huge logits neither overflow nor lose the log-sum-exp.
    #[test]
    fn softmax_is_stable() {
        let mut z = Matrix::from_vec(2, 2, vec![1000.0, 1000.0, -1000.0, 0.0]).unwrap();
        let lse = softmax_rows(&mut z);
        assert_eq!(z.as_slice(), &[0.5, 0.5, 0.0, 1.0]);
        assert!((lse[0] - (1000.0 + 2f64.ln())).abs() < 1e-9 && lse[1] == 0.0);
    }
}
