//! An architecture as data: the shape of every layer and the coupling between neighbours.
//!
//! Written as a spec string, layers left to right, separated by commas:
//!
//! ```text
//! 1x28x28, conv32k5+pool, conv64k5+pool, 10
//! ```
//!
//! * the first item is the input: `CxHxW` (channels x height x width) or a unit count `N`;
//! * `conv{C}k{K}[p{P}][+pool[{S}]]` couples the previous (image) layer to a layer of `C`
//!   channels by a `K x K` convolution of stride 1 with zero padding `P` (default 0), followed,
//!   inside the coupling, by an `S x S` max-pool of stride `S` (`+pool` is `S = 2`);
//! * `N` (or `dense{N}`) couples the previous layer, flattened, densely to `N` units;
//! * `softmax{N}`, last only, reads `N` class probabilities out of the layer below (a layer of
//!   states, not the input) instead of relaxing an output layer: the cross-entropy readout of
//!   Laborieux et al. 2021 ([`Coupling::Readout`]);
//! * any layer of states may end in `:{LO}..{HI}`, the interval its states live in
//!   ([`StateRange`]; default `0..1`): `1x28x28,conv32k5+pool,256,10:-1..2` gives the output
//!   the interval `[-1, 2]` of Scellier et al. 2023's convolutional Hopfield networks.
//!
//! Dense-only specs (`784,500,10`) describe the layered networks of [`crate::network`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The shape of a layer: `channels x height x width`, stored channels-last (HWC); a flat layer
/// of `n` units is `n x 1 x 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    /// A flat layer of `n` units.
    pub fn flat(n: usize) -> Self {
        Self {
            channels: n,
            height: 1,
            width: 1,
        }
    }

    /// Units in the layer.
    pub fn size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the layer is an image (its height or width exceeds 1).
    pub fn is_image(&self) -> bool {
        self.height > 1 || self.width > 1
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.is_image() {
            true => write!(f, "{}x{}x{}", self.channels, self.height, self.width),
            false => write!(f, "{}", self.channels),
        }
    }
}

/// The interval `[lo, hi]` a layer's states live in. Relaxation projects onto it, so on it
/// `rho(s) = s`: the hard sigmoid of the energy is `clamp(s, lo, hi)` (the default `[0, 1]`).
/// A wider output interval keeps the squared error from saturating: an output held at 0 by
/// the clamp can still move toward its target of 0 from below or 1 from above.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateRange {
    pub lo: f32,
    pub hi: f32,
}

/// Parsing admits only finite bounds with `lo < hi`, so equality is total.
impl Eq for StateRange {}

impl Default for StateRange {
    fn default() -> Self {
        Self { lo: 0.0, hi: 1.0 }
    }
}

impl StateRange {
    /// The largest bound magnitude a spec may give (states far outside `[0, 1]` only overflow).
    pub const MAX_BOUND: f32 = 1e3;

    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("expected an interval LO..HI after ':', got '{text}'");
        let (lo, hi) = text.split_once("..").ok_or_else(bad)?;
        let (lo, hi): (f32, f32) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        let bounded = |v: f32| v.is_finite() && v.abs() <= Self::MAX_BOUND;
        if !(bounded(lo) && bounded(hi) && lo < hi) {
            return Err(format!(
                "interval '{text}' must have LO < HI, both within +-{}",
                Self::MAX_BOUND
            ));
        }
        Ok(Self { lo, hi })
    }
}

/// How layer `k-1` drives layer `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Coupling {
    /// `Phi_k = rho(s_{k-1}) . W_k rho(s_k)`, the previous layer flattened.
    Dense,
    /// `Phi_k = < rho(s_k), P(conv(rho(s_{k-1}), K_k)) >`: a `kernel x kernel` convolution of
    /// stride 1 with zero `padding`, then a `pool x pool` max-pool of stride `pool` (1: none).
    Conv {
        kernel: usize,
        padding: usize,
        pool: usize,
    },
    /// The last coupling only: no states of its own, the layer holds the class probabilities
    /// `p = softmax(rho(s_{k-1}) W_k + b_k)`, and the cost is the cross-entropy
    /// `C = -ln p_y` instead of `1/2 ||s_L - t||^2`. Nudging adds `beta C` to the energy: its
    /// force on layer `k-1` is `beta W_k (t - p)` (Laborieux et al. 2021's readout).
    Readout,
}

/// The geometry of one convolutional coupling, as the kernels need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels, height, width.
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub padding: usize,
    /// Convolution output height and width (before pooling).
    pub ho: usize,
    pub wo: usize,
    /// Output channels.
    pub cout: usize,
    pub pool: usize,
    /// Pooled height and width (the layer's).
    pub hp: usize,
    pub wp: usize,
}

impl ConvGeometry {
    /// Values per input patch: `kernel^2 cin`, the rows of the kernel matrix.
    pub fn patch(&self) -> usize {
        self.kernel * self.kernel * self.cin
    }

    /// Convolution output positions per sample.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// Multiply-adds of one convolution of one sample (`positions * patch * cout`).
    pub fn macs(&self) -> usize {
        self.positions() * self.patch() * self.cout
    }
}

/// A spec that does not describe a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchError {
    #[error("architecture '{spec}': {problem}")]
    Parse { spec: String, problem: String },
    #[error("architecture '{spec}': layer {layer} ({item}): {problem}")]
    Layer {
        spec: String,
        layer: usize,
        item: String,
        problem: String,
    },
}

/// Layer shapes, the couplings between them, and the interval of each layer's states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Architecture {
    layers: Vec<Shape>,
    couplings: Vec<Coupling>,
    ranges: Vec<StateRange>,
}

/// The largest layer, in units, a spec may describe: bounds what a checkpoint can make us allocate.
pub const MAX_LAYER_UNITS: usize = 1 << 24;

impl Architecture {
    /// Parses a spec (see the module documentation).
    pub fn parse(spec: &str) -> Result<Self, ArchError> {
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        let parse_err = |problem: String| ArchError::Parse {
            spec: spec.to_string(),
            problem,
        };
        if items.len() < 2 || items.iter().any(|s| s.is_empty()) {
            return Err(parse_err(
                "expected an input and at least one layer, separated by commas".into(),
            ));
        }
        let input = parse_input(items[0]).ok_or_else(|| {
            parse_err(format!(
                "input '{}' is neither CxHxW nor a unit count",
                items[0]
            ))
        })?;
        let mut arch = Self {
            layers: vec![input],
            couplings: Vec::new(),
            ranges: vec![StateRange::default()],
        };
        for (k, item) in items.iter().enumerate().skip(1) {
            let layer_err = |problem: String| ArchError::Layer {
                spec: spec.to_string(),
                layer: k,
                item: item.to_string(),
                problem,
            };
            let (layer, range) = match item.split_once(':') {
                Some((layer, range)) => (
                    layer.trim(),
                    Some(StateRange::parse(range).map_err(layer_err)?),
                ),
                None => (*item, None),
            };
            let (coupling, shape) =
                parse_coupling(layer, *arch.layers.last().expect("input")).map_err(layer_err)?;
            if coupling == Coupling::Readout && range.is_some() {
                let problem = "a softmax readout has no states to give an interval";
                return Err(layer_err(problem.into()));
            }
            if coupling == Coupling::Readout && k == 1 {
                let problem = "a softmax readout needs a layer of states below it, not the input";
                return Err(layer_err(problem.into()));
            }
            if coupling == Coupling::Readout && k + 1 < items.len() {
                return Err(layer_err(
                    "a softmax readout can only be the last layer".into(),
                ));
            }
            arch.couplings.push(coupling);
            arch.layers.push(shape);
            arch.ranges.push(range.unwrap_or_default());
        }
        for (k, s) in arch.layers.iter().enumerate() {
            if s.size() == 0 || s.size() > MAX_LAYER_UNITS {
                return Err(ArchError::Layer {
                    spec: spec.to_string(),
                    layer: k,
                    item: items[k].to_string(),
                    problem: format!("{} units (1 to {MAX_LAYER_UNITS} allowed)", s.size()),
                });
            }
        }
        Ok(arch)
    }

    /// A dense network with these layer sizes.
    pub fn dense(sizes: &[usize]) -> Result<Self, ArchError> {
        let spec: Vec<String> = sizes.iter().map(usize::to_string).collect();
        Self::parse(&spec.join(","))
    }

    /// Layer shapes, input first.
    pub fn layers(&self) -> &[Shape] {
        &self.layers
    }

    /// Units per layer, input first.
    pub fn sizes(&self) -> Vec<usize> {
        self.layers.iter().map(Shape::size).collect()
    }

    /// The interval layer `k`'s states live in (the input's is `[0, 1]`).
    pub fn range(&self, k: usize) -> StateRange {
        self.ranges[k]
    }

    /// `couplings()[k-1]` couples layer `k-1` to layer `k`.
    pub fn couplings(&self) -> &[Coupling] {
        &self.couplings
    }

    /// Number of layers, input and output included.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The geometry of coupling `k` (into layer `k`) when it is convolutional.
    pub fn conv_geometry(&self, k: usize) -> Option<ConvGeometry> {
        let Coupling::Conv {
            kernel,
            padding,
            pool,
        } = self.couplings[k - 1]
        else {
            return None;
        };
        let (i, o) = (self.layers[k - 1], self.layers[k]);
        let ho = i.height + 2 * padding + 1 - kernel;
        let wo = i.width + 2 * padding + 1 - kernel;
        Some(ConvGeometry {
            cin: i.channels,
            h: i.height,
            w: i.width,
            kernel,
            padding,
            ho,
            wo,
            cout: o.channels,
            pool,
            hp: o.height,
            wp: o.width,
        })
    }

    /// The shape of coupling `k`'s weights: `(rows, cols)` of `W_k` (dense: `n_{k-1} x n_k`;
    /// convolutional: `kernel^2 C_in x C_out`, a patch in `(ky, kx, c)` order per row).
    pub fn weight_shape(&self, k: usize) -> (usize, usize) {
        match self.conv_geometry(k) {
            Some(g) => (g.patch(), g.cout),
            None => (self.layers[k - 1].size(), self.layers[k].size()),
        }
    }

    /// Entries of layer `k`'s bias: one per channel of an image layer, one per unit otherwise.
    pub fn bias_len(&self, k: usize) -> usize {
        self.layers[k].channels
    }

    /// Whether the output is a softmax readout ([`Coupling::Readout`]) rather than a layer of
    /// states.
    pub fn has_readout(&self) -> bool {
        self.couplings.last() == Some(&Coupling::Readout)
    }

    /// Whether every coupling is dense and every layer lives in `[0, 1]` (a readout and other
    /// intervals are not: only the networks of [`crate::conv`] have them).
    pub fn is_dense(&self) -> bool {
        self.couplings.iter().all(|c| *c == Coupling::Dense)
            && self.ranges.iter().all(|r| *r == StateRange::default())
    }

    /// Multiply-adds of one synchronous relaxation step for one sample with the input clamped:
    /// every coupling's forward product and, except the first, its transpose.
    pub fn step_macs(&self) -> usize {
        (1..self.num_layers())
            .map(|k| {
                let one = match self.conv_geometry(k) {
                    Some(g) => g.macs(),
                    None => self.layers[k - 1].size() * self.layers[k].size(),
                };
                if k == 1 { 0 } else { 2 * one }
            })
            .sum()
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.layers[0];
        match input.is_image() {
            true => write!(f, "{input}")?,
            false => write!(f, "{}", input.size())?,
        }
        let rest = self.couplings.iter().zip(&self.layers[1..]);
        for ((c, s), range) in rest.zip(&self.ranges[1..]) {
            match *c {
                Coupling::Dense => write!(f, ",{}", s.size())?,
                Coupling::Readout => write!(f, ",softmax{}", s.size())?,
                Coupling::Conv {
                    kernel,
                    padding,
                    pool,
                } => {
                    write!(f, ",conv{}k{kernel}", s.channels)?;
                    if padding > 0 {
                        write!(f, "p{padding}")?;
                    }
                    match pool {
                        1 => {}
                        2 => write!(f, "+pool")?,
                        p => write!(f, "+pool{p}")?,
                    }
                }
            }
            if *range != StateRange::default() {
                write!(f, ":{}..{}", range.lo, range.hi)?;
            }
        }
        Ok(())
    }
}

impl FromStr for Architecture {
    type Err = ArchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Self::parse(&spec).map_err(serde::de::Error::custom)
    }
}

fn parse_input(item: &str) -> Option<Shape> {
    let dims: Vec<usize> = item
        .split('x')
        .map(|d| d.trim().parse().ok())
        .collect::<Option<_>>()?;
    match dims[..] {
        [n] => Some(Shape::flat(n)),
        [c, h, w] => Some(Shape {
            channels: c,
            height: h,
            width: w,
        }),
        _ => None,
    }
}

fn parse_coupling(item: &str, below: Shape) -> Result<(Coupling, Shape), String> {
    let dense = item.strip_prefix("dense").unwrap_or(item);
    if let Ok(n) = dense.parse::<usize>() {
        return Ok((Coupling::Dense, Shape::flat(n)));
    }
    if let Some(classes) = item.strip_prefix("softmax") {
        let n = classes
            .parse()
            .map_err(|_| format!("expected a class count after 'softmax', got '{classes}'"))?;
        return Ok((Coupling::Readout, Shape::flat(n)));
    }
    let Some(conv) = item.strip_prefix("conv") else {
        return Err("expected N, denseN, softmaxN or convCkK[pP][+pool[S]]".into());
    };
    let (body, pool) = match conv.split_once('+') {
        Some((body, pool)) => (body, parse_pool(pool)?),
        None => (conv, 1),
    };
    let (channels, rest) = split_number(body).ok_or("expected a channel count after 'conv'")?;
    let rest = rest
        .strip_prefix('k')
        .ok_or("expected 'k' and a kernel size")?;
    let (kernel, rest) = split_number(rest).ok_or("expected a kernel size after 'k'")?;
    let padding = match rest.strip_prefix('p') {
        Some(p) => p.parse().map_err(|_| format!("bad padding '{p}'"))?,
        None if rest.is_empty() => 0,
        None => return Err(format!("unexpected '{rest}'")),
    };
    if !below.is_image() {
        return Err(format!(
            "a convolution needs an image below it, got a flat layer of {} units",
            below.size()
        ));
    }
    if kernel == 0 || channels == 0 {
        return Err("kernel size and channels must be at least 1".into());
    }
    let (h, w) = (below.height + 2 * padding, below.width + 2 * padding);
    if kernel > h || kernel > w {
        return Err(format!(
            "kernel {kernel} larger than the padded input {h}x{w}"
        ));
    }
    let (ho, wo) = (h + 1 - kernel, w + 1 - kernel);
    if pool > ho || pool > wo {
        return Err(format!(
            "pool {pool} larger than the convolution output {ho}x{wo}"
        ));
    }
    let coupling = Coupling::Conv {
        kernel,
        padding,
        pool,
    };
    let shape = Shape {
        channels,
        height: ho / pool,
        width: wo / pool,
    };
    Ok((coupling, shape))
}

fn parse_pool(pool: &str) -> Result<usize, String> {
    let size = pool
        .strip_prefix("pool")
        .ok_or_else(|| format!("expected '+pool', got '+{pool}'"))?;
    match size {
        "" => Ok(2),
        s => match s.parse::<usize>() {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!("bad pool size '{s}'")),
        },
    }
}

/// Splits a leading decimal number off `s`.
fn split_number(s: &str) -> Option<(usize, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_laborieux_mnist_net() {
        let a = Architecture::parse("1x28x28, conv32k5+pool, conv64k5+pool, 10").unwrap();
        let shapes: Vec<String> = a.layers().iter().map(|s| s.to_string()).collect();
        assert_eq!(shapes, ["1x28x28", "32x12x12", "64x4x4", "10"]);
        assert_eq!(a.weight_shape(2), (5 * 5 * 32, 64));
        assert_eq!(a.weight_shape(3), (1024, 10));
        assert_eq!(a.to_string(), "1x28x28,conv32k5+pool,conv64k5+pool,10");
        assert_eq!(Architecture::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn padding_and_pool_sizes_round_trip() {
        let spec = "3x32x32,conv128k3p1+pool,conv256k3p1+pool3,conv64k3,dense10";
        let a = Architecture::parse(spec).unwrap();
        let shapes: Vec<String> = a.layers().iter().map(|s| s.to_string()).collect();
        assert_eq!(shapes, ["3x32x32", "128x16x16", "256x5x5", "64x3x3", "10"]);
        assert_eq!(Architecture::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn a_softmax_readout_is_last_and_reads_a_layer_of_states() {
        let a = Architecture::parse("1x28x28,conv8k5+pool,256,softmax10").unwrap();
        assert!(a.has_readout() && !a.is_dense());
        assert_eq!(a.weight_shape(3), (256, 10));
        assert_eq!(a.to_string(), "1x28x28,conv8k5+pool,256,softmax10");
        assert!(!Architecture::parse("784,500,10").unwrap().has_readout());
        for (spec, needle) in [
            ("784,softmax10", "not the input"),
            ("784,500,softmax10,10", "only be the last"),
            ("784,500,softmax", "class count"),
        ] {
            let err = Architecture::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn dense_specs_are_layer_sizes() {
        let a = Architecture::dense(&[784, 500, 10]).unwrap();
        assert!(a.is_dense());
        assert_eq!(a.sizes(), [784, 500, 10]);
        assert_eq!(a.to_string(), "784,500,10");
    }

    #[test]
    fn a_layer_may_live_in_another_interval() {
        let a = Architecture::parse("1x28x28,conv8k5+pool:-0.5..1.5,256,10:-1..2").unwrap();
        assert_eq!(a.range(1), StateRange { lo: -0.5, hi: 1.5 });
        assert_eq!(a.range(2), StateRange::default());
        assert_eq!(a.range(3), StateRange { lo: -1.0, hi: 2.0 });
        assert_eq!(a.to_string(), "1x28x28,conv8k5+pool:-0.5..1.5,256,10:-1..2");
        assert_eq!(Architecture::parse(&a.to_string()).unwrap(), a);
        assert_eq!(
            Architecture::parse("784,500,10:0..1").unwrap().to_string(),
            "784,500,10"
        );
        let wide = Architecture::parse("784,500,10:-1..2").unwrap();
        assert!(!wide.is_dense(), "the dense networks live in [0, 1] only");
    }

    #[test]
    fn bad_specs_say_which_layer_and_why() {
        for (spec, needle) in [
            ("1x28x28", "at least one layer"),
            ("1x28,10", "neither CxHxW"),
            ("1x28x28,conv32k30,10", "larger than the padded input"),
            ("1x28x28,conv32,10", "'k'"),
            ("784,conv8k3,10", "needs an image"),
            ("1x28x28,conv8k3+max,10", "'+pool'"),
            ("1x28x28,,10", "separated by commas"),
            ("1x28x28,0", "0 units"),
            ("784,10:1..0", "LO < HI"),
            ("784,10:-1..inf", "LO < HI"),
            ("784,10:-1", "LO..HI"),
            ("784,10:a..2", "LO..HI"),
            ("784,100,softmax10:-1..2", "no states"),
        ] {
            let err = Architecture::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }
}
