//! A judge for dreams: a plain backprop classifier, independent of the EqProp network, that says
//! which digit (or garment) a generated image shows and how varied the dreams of a label are.
//!
//! Two kinds ([`JudgeKind`]). The default is convolutional, a LeNet-like network (see
//! [`cnn`]): perceptrons are easily fooled by speckle and blur, which is what dreams have. The
//! other is a `pixels - hidden - 10` perceptron,
//!
//! ```text
//! h = relu(x W1 + b1),   z = h W2 + b2,   p = softmax(z),   p_c = exp(z_c) / sum_j exp(z_j)
//! ```
//!
//! Both are trained on the real training images by minimising the softmax cross-entropy
//! `L = -ln p_y = logsumexp(z) - z_y` with mini-batch SGD and momentum.

pub mod cnn;

use crate::backend::{Transpose, matmul_acc};
use crate::checkpoint::{TensorFile, read_file, write_tensors};
use crate::config::{ConfigError, Schedule, range};
use crate::data::{Dataset, shift_fits, shifted};
use crate::tensor::{Matrix, softmax_in_place};
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Number of classes the judge tells apart.
pub const CLASSES: usize = 10;

const FORMAT: &str = "eqprop-judge";

/// How the learning rate falls over the epochs: cosine, towards 0 by the last.
const LR_SCHEDULE: Schedule = Schedule::Cosine {
    final_fraction: 0.0,
};

/// Images per chunk when classifying many images in parallel.
const CHUNK: usize = 512;

/// Which network judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum JudgeKind {
    /// Two 5x5 convolutions with max-pools, a hidden layer, the output (LeNet-like).
    Cnn,
    /// One hidden layer.
    Mlp,
}

impl JudgeKind {
    /// `cnn` or `mlp`, as the CLI and the judge file name it.
    pub fn name(self) -> &'static str {
        match self {
            JudgeKind::Cnn => "cnn",
            JudgeKind::Mlp => "mlp",
        }
    }
}

/// How to train a [`Judge`].
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeOptions {
    pub kind: JudgeKind,
    /// Hidden ReLU units (of the dense hidden layer).
    pub hidden: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Images per SGD step.
    pub batch_size: usize,
    /// Learning rate `eta` of `w -= eta v` at the first epoch; a cosine schedule lowers it
    /// epoch by epoch, `eta_e = eta (1 + cos(pi (e - 1) / epochs)) / 2`.
    pub lr: f32,
    /// Momentum `mu` of `v = mu v + grad`.
    pub momentum: f32,
    /// Seeds the initial weights and every shuffle.
    pub seed: u64,
    /// Each training image moved by a random offset in `-shift..=shift` pixels along each axis
    /// (0: as they are).
    pub shift: usize,
}

impl Default for JudgeOptions {
    /// The convolutional judge: 128 hidden units, 8 epochs, batches of 64, lr 0.05, momentum
    /// 0.9, shifts of up to 2 pixels.
    fn default() -> Self {
        Self {
            kind: JudgeKind::Cnn,
            hidden: 128,
            epochs: 8,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            seed: 0,
            shift: 2,
        }
    }
}

impl JudgeOptions {
    /// Checks the options against the images they will train on, naming the first bad one:
    /// at least one hidden unit, image per batch and epoch, a shift smaller than the images,
    /// and for the convolutional judge images of at least 4x4 (its two 2x2 pools).
    pub fn validate(&self, data: &Dataset) -> Result<(), ConfigError> {
        range("hidden", self.hidden > 0, "at least 1", self.hidden as f64)?;
        let batch = self.batch_size as f64;
        range("batch_size", self.batch_size > 0, "at least 1", batch)?;
        range("epochs", self.epochs > 0, "at least 1", self.epochs as f64)?;
        let fits = shift_fits(self.shift, data.rows, data.cols);
        range(
            "shift",
            fits,
            "smaller than the images' side",
            self.shift as f64,
        )?;
        let side = data.rows.min(data.cols) as f64;
        let pooled = self.kind == JudgeKind::Mlp || side >= 4.0;
        range("image side", pooled, "at least 4 for the cnn judge", side)
    }

    /// The perceptron judge: 256 hidden units, no shifts, the rest as [`Default`].
    pub fn mlp() -> Self {
        Self {
            kind: JudgeKind::Mlp,
            hidden: 256,
            shift: 0,
            ..Self::default()
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

    /// `dL/dx = dL/dz W^T`: the gradient at the layer's input.
    fn backward(&self, dz: &Matrix) -> Matrix {
        let mut dx = Matrix::zeros(dz.rows(), self.w.rows());
        matmul_acc(&mut dx, dz, Transpose::No, &self.w, Transpose::Yes, 1.0);
        dx
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

/// The gradient back through a ReLU: zero where its output `activity` was cut to 0.
fn relu_backward(grad: &mut Matrix, activity: &Matrix) {
    for (g, &a) in grad.as_mut_slice().iter_mut().zip(activity.as_slice()) {
        if a <= 0.0 {
            *g = 0.0;
        }
    }
}

/// Turns each row of logits `z` into `softmax(z)` (shifted by the row maximum for stability) and
/// returns the row's `logsumexp(z)`.
fn softmax_rows(z: &mut Matrix) -> Vec<f64> {
    (0..z.rows())
        .map(|r| softmax_in_place(z.row_mut(r)))
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
    net: Net,
}

#[derive(Clone, Debug, PartialEq)]
enum Net {
    /// The hidden and the output layer.
    Mlp([Layer; 2]),
    Cnn(cnn::Cnn),
}

impl Judge {
    /// Trains a fresh judge on `data`: He-uniform init, then `options.epochs` passes in a seeded
    /// shuffled order (each image moved by up to `options.shift` pixels), each mini-batch one
    /// SGD-with-momentum step on the mean softmax cross-entropy. Its gradient is
    /// `dL/dz = (p - onehot(y)) / B` at the logits, backpropagated through every layer (for the
    /// perceptron `dL/dh = dL/dz W2^T * [h > 0]`). `on_epoch(epoch, mean_loss)` follows each
    /// epoch (epochs counted from 1).
    ///
    /// # Panics
    /// If `options` fail [`JudgeOptions::validate`] for `data`.
    pub fn train(
        data: &Dataset,
        options: &JudgeOptions,
        mut on_epoch: impl FnMut(usize, f64),
    ) -> Judge {
        if let Err(e) = options.validate(data) {
            panic!("judge options: {e}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let net = match options.kind {
            JudgeKind::Mlp => Net::Mlp([
                Layer::he(data.pixels(), options.hidden, &mut rng),
                Layer::he(options.hidden, CLASSES, &mut rng),
            ]),
            JudgeKind::Cnn => {
                let image = [data.channels, data.rows, data.cols];
                Net::Cnn(cnn::Cnn::he(image, options.hidden, &mut rng))
            }
        };
        let mut judge = Judge { net };
        let mut velocity: Vec<Layer> = judge.layers().iter().map(Layer::zeros_like).collect();
        let mut order: Vec<usize> = (0..data.len()).collect();
        for epoch in 1..=options.epochs {
            order.shuffle(&mut rng);
            let step = JudgeOptions {
                lr: options.lr * LR_SCHEDULE.factor(epoch - 1, options.epochs),
                ..options.clone()
            };
            let mut loss = 0.0;
            for batch in order.chunks(options.batch_size) {
                let (x, labels) = batch_of(data, batch, options.shift, &mut rng);
                loss += judge.sgd_step(&mut velocity, &x, &labels, &step);
            }
            on_epoch(epoch, loss / data.len() as f64);
        }
        judge
    }

    /// The network, e.g. `784-256-10 MLP` or `conv16k5+pool,conv32k5+pool,128,10 CNN`.
    pub fn architecture(&self) -> String {
        match &self.net {
            Net::Mlp([hidden, _]) => format!("{}-{}-10 MLP", hidden.w.rows(), hidden.w.cols()),
            Net::Cnn(net) => format!(
                "conv{}k5+pool,conv{}k5+pool,{},10 CNN",
                cnn::CHANNELS[0],
                cnn::CHANNELS[1],
                net.layers[2].w.cols()
            ),
        }
    }

    /// Which network this judge is.
    pub fn kind(&self) -> JudgeKind {
        match self.net {
            Net::Mlp(_) => JudgeKind::Mlp,
            Net::Cnn(_) => JudgeKind::Cnn,
        }
    }

    fn layers(&self) -> &[Layer] {
        match &self.net {
            Net::Mlp(layers) => layers,
            Net::Cnn(net) => &net.layers,
        }
    }

    #[cfg(test)]
    fn layers_mut(&mut self) -> &mut [Layer] {
        match &mut self.net {
            Net::Mlp(layers) => layers,
            Net::Cnn(net) => &mut net.layers,
        }
    }

    /// One SGD step on the batch `x`; returns its summed loss.
    fn sgd_step(
        &mut self,
        velocity: &mut [Layer],
        x: &Matrix,
        labels: &[usize],
        opts: &JudgeOptions,
    ) -> f64 {
        match &mut self.net {
            Net::Mlp([hidden, output]) => {
                let (h, mut dz) = mlp_forward(hidden, output, x);
                let loss = cross_entropy_gradient(&mut dz, labels);
                let dh = hidden_gradient(output, &h, &dz);
                let [vh, vo] = velocity else {
                    unreachable!("one velocity per layer")
                };
                output.momentum_step(vo, &h, &dz, opts);
                hidden.momentum_step(vh, x, &dh, opts);
                loss
            }
            Net::Cnn(net) => net.sgd_step(velocity, x, labels, opts),
        }
    }

    /// Logits of a batch.
    fn logits(&self, x: &Matrix) -> Matrix {
        match &self.net {
            Net::Mlp([hidden, output]) => mlp_forward(hidden, output, x).1,
            Net::Cnn(net) => net.logits(x),
        }
    }

    /// Pixels per image the judge reads.
    pub fn pixels(&self) -> usize {
        match &self.net {
            Net::Mlp([hidden, _]) => hidden.w.rows(),
            Net::Cnn(net) => net.pixels(),
        }
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
                let mut z = self.logits(&x);
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

    /// Writes the judge as safetensors, atomically: metadata `format: eqprop-judge`, `kind:
    /// mlp` or `cnn`; the perceptron's `W1`, `b1`, `W2`, `b2`; the convolutional judge's
    /// `K1`, `c1`, `K2`, `c2` (kernels `patch x C_out`) before them, and `image: CxHxW`.
    pub fn save(&self, path: &Path) -> Result<(), JudgeError> {
        let layers = self.layers();
        let names: &[(&str, &str)] = match self.net {
            Net::Mlp(_) => &DENSE_NAMES,
            Net::Cnn(_) => &CNN_NAMES,
        };
        let mut tensors = Vec::new();
        for (layer, (w, b)) in layers.iter().zip(names) {
            tensors.push((
                w.to_string(),
                vec![layer.w.rows(), layer.w.cols()],
                layer.w.as_slice(),
            ));
            tensors.push((b.to_string(), vec![layer.b.len()], &layer.b[..]));
        }
        let mut metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("kind".to_string(), self.kind().name().to_string()),
        ]);
        if let Net::Cnn(net) = &self.net {
            let [c, h, w] = net.image;
            metadata.insert("image".to_string(), format!("{c}x{h}x{w}"));
        }
        write_tensors(path, &tensors, metadata)
    }

    /// Reads a judge written by [`Judge::save`]: see [`Judge::load_bytes`].
    pub fn load(path: &Path) -> Result<Judge, JudgeError> {
        Judge::load_bytes(&read_file(path)?, path)
    }

    /// Parses the content `bytes` of a judge file (`path` only names it in errors), checking its
    /// format and kind (a file without a kind is a perceptron, as judges were before), its
    /// shapes (the perceptron's `W1` `[pixels, hidden]`, `b1` `[hidden]`, `W2` `[hidden, 10]`,
    /// `b2` `[10]`, none empty; the convolutional judge's as its `image` makes them) and that
    /// every value is finite; an error names the tensor.
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
        let net = match file.metadata("kind").map(String::as_str) {
            None | Some("mlp") => Net::Mlp(load_mlp(&file)?),
            Some("cnn") => Net::Cnn(load_cnn(&file)?),
            Some(other) => {
                return Err(file.content(format!("kind is '{other}', not 'mlp' or 'cnn'")));
            }
        };
        Ok(Judge { net })
    }
}

/// The tensor names of the dense layers (hidden, output), weights then biases.
const DENSE_NAMES: [(&str, &str); 2] = [("W1", "b1"), ("W2", "b2")];
/// The convolutional judge's: the two convolutions, then the dense layers.
const CNN_NAMES: [(&str, &str); 4] = [("K1", "c1"), ("K2", "c2"), ("W1", "b1"), ("W2", "b2")];

fn load_mlp(file: &TensorFile) -> Result<[Layer; 2], JudgeError> {
    let w1 = file.matrix("W1", None, None)?;
    let (p, h) = (w1.rows(), w1.cols());
    if p == 0 || h == 0 {
        return Err(file.content(format!("tensor W1 has shape [{p}, {h}], an empty layer")));
    }
    let b1 = file.vector("b1", h)?;
    let w2 = file.matrix("W2", Some(h), Some(CLASSES))?;
    let b2 = file.vector("b2", CLASSES)?;
    Ok([Layer { w: w1, b: b1 }, Layer { w: w2, b: b2 }])
}

fn load_cnn(file: &TensorFile) -> Result<cnn::Cnn, JudgeError> {
    let image = file
        .metadata("image")
        .and_then(|s| parse_image(s))
        .ok_or_else(|| {
            file.content(
                "a cnn judge needs 'image: CxHxW' in its metadata (each 1 to 4096)".to_string(),
            )
        })?;
    let g = cnn::geometries(image);
    let hidden = file.matrix("W1", Some(cnn::flat_size(&g[1])), None)?.cols();
    if hidden == 0 {
        return Err(file.content("tensor W1 has no columns, an empty layer".to_string()));
    }
    let shapes = [
        (g[0].patch(), g[0].cout),
        (g[1].patch(), g[1].cout),
        (cnn::flat_size(&g[1]), hidden),
        (hidden, CLASSES),
    ];
    let mut layers = Vec::with_capacity(4);
    for ((w, b), (rows, cols)) in CNN_NAMES.iter().zip(shapes) {
        layers.push(Layer {
            w: file.matrix(w, Some(rows), Some(cols))?,
            b: file.vector(b, cols)?,
        });
    }
    let layers: [Layer; 4] = layers.try_into().expect("four layers");
    Ok(cnn::Cnn { image, layers })
}

/// `CxHxW` with every size in `1..=4096` and the image at least 4x4 (two 2x2 pools).
fn parse_image(text: &str) -> Option<[usize; 3]> {
    let sizes: Vec<usize> = text
        .split('x')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let [c, h, w] = sizes.try_into().ok()?;
    let ok = (1..=4096).contains(&c) && (4..=4096).contains(&h) && (4..=4096).contains(&w);
    ok.then_some([c, h, w])
}

/// The images `batch` of `data` as a matrix (each moved by up to `shift` pixels), and their
/// labels.
fn batch_of(
    data: &Dataset,
    batch: &[usize],
    shift: usize,
    rng: &mut ChaCha8Rng,
) -> (Matrix, Vec<usize>) {
    let labels = batch.iter().map(|&i| data.labels[i] as usize).collect();
    let pixels: Vec<f32> = if shift > 0 {
        shifted(data, batch, shift, rng).images.to_vec()
    } else {
        batch.iter().flat_map(|&i| data.image(i)).copied().collect()
    };
    (
        Matrix::from_vec(batch.len(), data.pixels(), pixels).expect("sized"),
        labels,
    )
}

/// The perceptron's hidden activity `h` and logits `z` of a batch.
fn mlp_forward(hidden: &Layer, output: &Layer, x: &Matrix) -> (Matrix, Matrix) {
    let mut h = hidden.forward(x);
    relu(&mut h);
    let z = output.forward(&h);
    (h, z)
}

/// `dL/dh = dL/dz W2^T * [h > 0]`: the output gradient back through `W2` and the ReLU.
fn hidden_gradient(output: &Layer, h: &Matrix, dz: &Matrix) -> Matrix {
    let mut dh = output.backward(dz);
    relu_backward(&mut dh, h);
    dh
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

    /// A tiny data set of `n` random `channels x rows x cols` images with labels `i % 10`.
    fn tiny(n: usize, [channels, rows, cols]: [usize; 3], seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pixels = channels * rows * cols;
        Dataset {
            images: (0..n * pixels)
                .map(|_| rng.random_range(0.0..1.0))
                .collect(),
            labels: (0..n).map(|i| (i % CLASSES) as u8).collect(),
            rows,
            cols,
            channels,
            targets: Vec::new(),
        }
    }

    /// Mean cross-entropy `logsumexp(z) - z_y` of `data`.
    fn mean_loss(judge: &Judge, data: &Dataset) -> f64 {
        let x = Matrix::from_vec(data.len(), data.pixels(), data.images.to_vec()).unwrap();
        let mut z = judge.logits(&x);
        let targets: Vec<f32> = (0..data.len())
            .map(|r| z.get(r, data.labels[r] as usize))
            .collect();
        let lse = softmax_rows(&mut z);
        let total: f64 = lse.iter().zip(&targets).map(|(l, &t)| l - t as f64).sum();
        total / data.len() as f64
    }

    /// With momentum 0 the velocity after one step is the gradient: it must match central
    /// finite differences of the mean loss in every parameter of every layer.
    fn check_gradient(mut judge: Judge, data: &Dataset) {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for layer in judge.layers_mut() {
            layer.b = (0..layer.b.len())
                .map(|_| rng.random_range(-0.3..0.3))
                .collect();
        }
        let opts = JudgeOptions {
            lr: 0.0,
            momentum: 0.0,
            ..JudgeOptions::default()
        };
        let mut velocity: Vec<Layer> = judge.layers().iter().map(Layer::zeros_like).collect();
        let (x, labels) = batch_of(data, &(0..data.len()).collect::<Vec<_>>(), 0, &mut rng);
        let loss = judge.clone().sgd_step(&mut velocity, &x, &labels, &opts) / data.len() as f64;
        assert!((loss - mean_loss(&judge, data)).abs() < 1e-6);
        // Small enough that no ReLU or pool winner flips between the two evaluations.
        let eps = 1e-3;
        for (layer, v) in velocity.iter().enumerate() {
            let grads: Vec<f32> = v.w.as_slice().iter().chain(&v.b).copied().collect();
            for (i, &g) in grads.iter().enumerate() {
                let nudged = |delta: f32| {
                    let mut j = judge.clone();
                    *param(&mut j, layer, i) += delta;
                    mean_loss(&j, data)
                };
                let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * eps as f64);
                let error = (numeric - g as f64).abs();
                assert!(error < 1e-3, "layer {layer} param {i}: {numeric} vs {g}");
            }
        }
    }

    #[test]
    fn perceptron_backprop_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let net = Net::Mlp([Layer::he(6, 5, &mut rng), Layer::he(5, CLASSES, &mut rng)]);
        check_gradient(Judge { net }, &tiny(7, [1, 3, 2], 1));
    }

    #[test]
    fn convolutional_backprop_matches_finite_differences() {
        // Two channels and an odd width: 6x5 -> 3x2 -> 1x1 through the pools, so padding,
        // both pools (one dropping a column) and the routed gradients are all on the path.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let image = [2, 6, 5];
        let net = Net::Cnn(cnn::Cnn::he(image, 4, &mut rng));
        check_gradient(Judge { net }, &tiny(3, image, 4));
    }

    /// Parameter `i` of layer `layer` (weights row-major, then biases).
    fn param(judge: &mut Judge, layer: usize, i: usize) -> &mut f32 {
        let l = &mut judge.layers_mut()[layer];
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
