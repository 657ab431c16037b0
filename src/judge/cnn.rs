//! The convolutional judge: a LeNet-like network trained by backprop,
//!
//! ```text
//! a1 = pool(relu(conv5x5(x;  C -> 16, pad 2)))        28x28 -> 14x14 (MNIST)
//! a2 = pool(relu(conv5x5(a1; 16 -> 32, pad 2)))       14x14 -> 7x7
//! h  = relu(a2 W1 + b1),   z = h W2 + b2              7*7*32 -> hidden -> 10
//! ```
//!
//! with 2x2 max-pools. The convolutions are the im2col + GEMM kernels of the convolutional
//! EqProp network ([`crate::conv::kernels`]): `conv(x) = im2col(x) K`, whose input gradient is
//! `col2im(dz K^T)` and whose kernel gradient is `im2col(x)^T dz`; a max-pool routes its
//! gradient to the window's maximum ([`unpool`]).

use super::{CLASSES, JudgeOptions, Layer, hidden_gradient, relu, relu_backward};
use crate::conv::architecture::ConvGeometry;
use crate::conv::kernels::{col2im_acc, im2col, max_pool, unpool};
use crate::tensor::Matrix;
use rand::Rng;

/// Channels of the two convolutions.
pub const CHANNELS: [usize; 2] = [16, 32];
const KERNEL: usize = 5;
const PADDING: usize = 2;
const POOL: usize = 2;

/// The network's weights: two convolutions (`patch x C_out` kernels), a hidden dense layer and
/// the output layer.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cnn {
    /// The image it reads: channels, height, width.
    pub image: [usize; 3],
    pub layers: [Layer; 4],
}

/// What the forward pass keeps for the backward one.
struct Trace {
    cols: [Matrix; 2],
    /// The convolutions' outputs after the ReLU (`n positions x C_out`), and each pooled
    /// value's source in them.
    conv: [Matrix; 2],
    winner: [Vec<u32>; 2],
    /// The second pooled layer as a batch of flat rows, the hidden layer, the logits.
    flat: Matrix,
    hidden: Matrix,
    logits: Matrix,
}

impl Cnn {
    /// He-uniform weights for `image` (`[channels, height, width]`) and `hidden` dense units.
    pub fn he<R: Rng + ?Sized>(image: [usize; 3], hidden: usize, rng: &mut R) -> Self {
        let g = geometries(image);
        let layers = [
            Layer::he(g[0].patch(), g[0].cout, rng),
            Layer::he(g[1].patch(), g[1].cout, rng),
            Layer::he(flat_size(&g[1]), hidden, rng),
            Layer::he(hidden, CLASSES, rng),
        ];
        Self { image, layers }
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.image.iter().product()
    }

    /// The logits of a batch of `n` images (channels-last, `n x pixels`).
    pub fn logits(&self, x: &Matrix) -> Matrix {
        self.forward(x).logits
    }

    fn forward(&self, x: &Matrix) -> Trace {
        let n = x.rows();
        let g = geometries(self.image);
        let (cols1, conv1, winner1, pooled1) = conv_block(x.as_slice(), n, &g[0], &self.layers[0]);
        let (cols2, conv2, winner2, pooled2) = conv_block(&pooled1, n, &g[1], &self.layers[1]);
        let flat = Matrix::from_vec(n, flat_size(&g[1]), pooled2).expect("sized");
        let mut hidden = self.layers[2].forward(&flat);
        relu(&mut hidden);
        let logits = self.layers[3].forward(&hidden);
        Trace {
            cols: [cols1, cols2],
            conv: [conv1, conv2],
            winner: [winner1, winner2],
            flat,
            hidden,
            logits,
        }
    }

    /// One SGD-with-momentum step on the batch `x` (`labels` its classes); returns the summed
    /// cross-entropy.
    pub fn sgd_step(
        &mut self,
        velocity: &mut [Layer],
        x: &Matrix,
        labels: &[usize],
        opts: &JudgeOptions,
    ) -> f64 {
        let n = x.rows();
        let g = geometries(self.image);
        let mut t = self.forward(x);
        let loss = super::cross_entropy_gradient(&mut t.logits, labels);
        let dz = t.logits;
        let dh = hidden_gradient(&self.layers[3], &t.hidden, &dz);
        let dflat = self.layers[2].backward(&dh);
        let dz2 = unpooled(dflat.as_slice(), &t.winner[1], &t.conv[1]);
        let dpooled1 = conv_input_gradient(&dz2, n, &g[1], &self.layers[1]);
        let dz1 = unpooled(&dpooled1, &t.winner[0], &t.conv[0]);
        let [v1, v2, v3, v4] = velocity else {
            unreachable!("one velocity per layer")
        };
        self.layers[3].momentum_step(v4, &t.hidden, &dz, opts);
        self.layers[2].momentum_step(v3, &t.flat, &dh, opts);
        self.layers[1].momentum_step(v2, &t.cols[1], &dz2, opts);
        self.layers[0].momentum_step(v1, &t.cols[0], &dz1, opts);
        loss
    }
}

/// The two convolutions' geometry for an image `[channels, height, width]`: 5x5 kernels padded
/// by 2 (the output as large as the input), 2x2 pools.
pub(super) fn geometries(image: [usize; 3]) -> [ConvGeometry; 2] {
    let [c, h, w] = image;
    let first = same(c, h, w, CHANNELS[0]);
    let second = same(CHANNELS[0], first.hp, first.wp, CHANNELS[1]);
    [first, second]
}

fn same(cin: usize, h: usize, w: usize, cout: usize) -> ConvGeometry {
    ConvGeometry {
        cin,
        h,
        w,
        kernel: KERNEL,
        padding: PADDING,
        ho: h,
        wo: w,
        cout,
        pool: POOL,
        hp: h / POOL,
        wp: w / POOL,
    }
}

/// Values of the last pooled layer per image.
pub(super) fn flat_size(g: &ConvGeometry) -> usize {
    g.hp * g.wp * g.cout
}

/// `pool(relu(im2col(x) K + b))` for `n` samples: the patches, the convolution after the ReLU,
/// the pool's winners and the pooled values.
fn conv_block(
    x: &[f32],
    n: usize,
    g: &ConvGeometry,
    layer: &Layer,
) -> (Matrix, Matrix, Vec<u32>, Vec<f32>) {
    let mut cols = Matrix::zeros(n * g.positions(), g.patch());
    im2col(x, n, g, cols.as_mut_slice());
    let mut conv = layer.forward(&cols);
    relu(&mut conv);
    let pooled_len = n * g.hp * g.wp * g.cout;
    let (mut pooled, mut winner) = (vec![0.0; pooled_len], vec![0u32; pooled_len]);
    max_pool(conv.as_slice(), n, g, &mut pooled, &mut winner);
    (cols, conv, winner, pooled)
}

/// The gradient at a convolution's output from the gradient at its pool: routed to each
/// window's maximum, then back through the ReLU.
fn unpooled(dpooled: &[f32], winner: &[u32], conv: &Matrix) -> Matrix {
    let mut dz = Matrix::zeros(conv.rows(), conv.cols());
    unpool(dpooled, winner, dz.as_mut_slice());
    relu_backward(&mut dz, conv);
    dz
}

/// `dL/dx = col2im(dz K^T)`: the gradient at a convolution's input.
fn conv_input_gradient(dz: &Matrix, n: usize, g: &ConvGeometry, layer: &Layer) -> Vec<f32> {
    let dcols = layer.backward(dz);
    let mut dx = vec![0.0; n * g.h * g.w * g.cin];
    col2im_acc(dcols.as_slice(), n, g, &mut dx);
    dx
}
