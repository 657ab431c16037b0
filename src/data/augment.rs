//! Data augmentation: random translations (the uncovered pixels zero, or the image's edge
//! repeated) and horizontal mirror images, as convolutional networks are trained.

use super::Dataset;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Whether images of `height x width` can be moved by up to `shift` pixels: `shift` smaller
/// than their shorter side (0 always fits).
pub fn shift_fits(shift: usize, height: usize, width: usize) -> bool {
    shift == 0 || shift < height.min(width)
}

/// What the pixels uncovered by a translation become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Fill {
    /// 0 (black).
    #[default]
    Zero,
    /// The nearest pixel of the image: a random crop of the image padded by repeating its
    /// border (torchvision's `RandomCrop(padding_mode="edge")`, Laborieux et al. 2021 on
    /// CIFAR-10).
    Edge,
}

/// A random transform of each training image, drawn anew for every example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augmentation {
    /// Translate by a whole number of pixels in `-shift..=shift` along each axis.
    pub shift: usize,
    /// What the uncovered pixels become.
    pub fill: Fill,
    /// Mirror left to right with probability 1/2.
    pub flip: bool,
}

impl Augmentation {
    /// Whether it leaves every image as it is.
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.flip
    }
}

/// The examples `batch` of `data`, each translated by a random offset in `-shift..=shift`
/// along each axis, the uncovered pixels 0 (labels only: no targets). Augmentation for the
/// trainers that learn from images whose class does not change under small translations.
pub fn shifted<R: Rng + ?Sized>(
    data: &Dataset,
    batch: &[usize],
    shift: usize,
    rng: &mut R,
) -> Dataset {
    let only_shift = Augmentation {
        shift,
        ..Augmentation::default()
    };
    augmented(data, batch, &only_shift, rng)
}

/// The examples `batch` of `data` under `aug` (labels only: no targets). Per example the
/// offsets `dy`, then `dx`, then (with `flip`) the mirror are drawn from `rng`; the output
/// pixel `(y, x)` is the input's `(y - dy, x' - dx)`, where `x'` is `x` or, mirrored,
/// `width - 1 - x`; outside the image it is 0 or, with [`Fill::Edge`], the nearest pixel.
pub fn augmented<R: Rng + ?Sized>(
    data: &Dataset,
    batch: &[usize],
    aug: &Augmentation,
    rng: &mut R,
) -> Dataset {
    let (h, w, c) = (data.rows as i64, data.cols as i64, data.channels);
    let mut pixels = vec![0.0; batch.len() * data.pixels()];
    let s = aug.shift as i64;
    for (dst, &i) in pixels.chunks_exact_mut(data.pixels()).zip(batch) {
        let (dy, dx) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
        let mirror = aug.flip && rng.random_bool(0.5);
        let src = data.image(i);
        for y in 0..h {
            for x in 0..w {
                let from_x = if mirror { w - 1 - x } else { x };
                let (sy, sx) = (y - dy, from_x - dx);
                let inside = (0..h).contains(&sy) && (0..w).contains(&sx);
                let (sy, sx) = match (inside, aug.fill) {
                    (true, _) => (sy, sx),
                    (false, Fill::Edge) => (sy.clamp(0, h - 1), sx.clamp(0, w - 1)),
                    (false, Fill::Zero) => continue,
                };
                let (to, from) = ((y * w + x) as usize * c, (sy * w + sx) as usize * c);
                dst[to..to + c].copy_from_slice(&src[from..from + c]);
            }
        }
    }
    Dataset {
        images: pixels.into(),
        labels: batch.iter().map(|&i| data.labels[i]).collect(),
        ..data.empty_like()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// One image per position of a lit pixel (two channels: 0.5 and 1.0) on a 5x4 grid.
    fn dots() -> Dataset {
        let (h, w, c) = (5, 4, 2);
        let mut images = vec![0.0; h * w * h * w * c];
        for p in 0..h * w {
            images[(p * h * w + p) * c] = 0.5;
            images[(p * h * w + p) * c + 1] = 1.0;
        }
        Dataset {
            images: images.into(),
            labels: vec![0; h * w],
            rows: h,
            cols: w,
            channels: c,
            targets: Vec::new(),
        }
    }

    #[test]
    fn shifted_images_move_every_pixel_by_the_drawn_offset() {
        let data = dots();
        let batch: Vec<usize> = (0..data.len()).rev().collect();
        let moved = shifted(&data, &batch, 2, &mut ChaCha8Rng::seed_from_u64(3));
        // The same draws, in the same order: (dy, dx) per example.
        let mut draws = ChaCha8Rng::seed_from_u64(3);
        let (h, w) = (data.rows as i64, data.cols as i64);
        let mut off_image = 0;
        for (r, &i) in batch.iter().enumerate() {
            let (dy, dx) = (draws.random_range(-2..=2i64), draws.random_range(-2..=2i64));
            let (y, x) = (i as i64 / w + dy, i as i64 % w + dx);
            let mut expected = vec![0.0; data.pixels()];
            if (0..h).contains(&y) && (0..w).contains(&x) {
                let p = (y * w + x) as usize * 2;
                (expected[p], expected[p + 1]) = (0.5, 1.0);
            } else {
                off_image += 1;
            }
            assert_eq!(
                moved.image(r),
                expected.as_slice(),
                "image {i} by ({dy}, {dx})"
            );
        }
        assert!(off_image > 0 && off_image < batch.len(), "both cases seen");
    }

    /// Image `i` of `data` padded by `pad` pixels on every side, the border repeated: rows of
    /// channel-last pixels.
    fn edge_padded(data: &Dataset, i: usize, pad: usize) -> Vec<Vec<f32>> {
        let (h, w, c) = (data.rows, data.cols, data.channels);
        let at = |y: usize, x: usize| &data.image(i)[(y * w + x) * c..(y * w + x + 1) * c];
        (0..h + 2 * pad)
            .map(|y| {
                let sy = y.saturating_sub(pad).min(h - 1);
                (0..w + 2 * pad)
                    .flat_map(|x| at(sy, x.saturating_sub(pad).min(w - 1)).to_vec())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn edge_filled_mirrored_images_are_crops_of_the_padded_image_reversed() {
        // The reference: pad by `shift` repeating the border, crop the window at (shift - dy,
        // shift - dx), then mirror each row when the drawn coin says so.
        let data = dots();
        let (shift, c, w) = (2, data.channels, data.cols);
        let aug = Augmentation {
            shift,
            fill: Fill::Edge,
            flip: true,
        };
        let batch: Vec<usize> = (0..data.len()).collect();
        let moved = augmented(&data, &batch, &aug, &mut ChaCha8Rng::seed_from_u64(5));
        let mut draws = ChaCha8Rng::seed_from_u64(5);
        let s = shift as i64;
        let mut mirrored = 0;
        for (r, &i) in batch.iter().enumerate() {
            let (dy, dx) = (draws.random_range(-s..=s), draws.random_range(-s..=s));
            let mirror = draws.random_bool(0.5);
            mirrored += usize::from(mirror);
            let padded = edge_padded(&data, i, shift);
            let (y0, x0) = ((s - dy) as usize, (s - dx) as usize);
            let mut expected = Vec::new();
            for row in &padded[y0..y0 + data.rows] {
                let mut pixels: Vec<&[f32]> = row[x0 * c..(x0 + w) * c].chunks(c).collect();
                if mirror {
                    pixels.reverse();
                }
                expected.extend(pixels.concat());
            }
            assert_eq!(moved.image(r), expected.as_slice(), "image {i}");
        }
        assert!(mirrored > 0 && mirrored < batch.len(), "both cases seen");
    }

    #[test]
    fn the_identity_moves_nothing_and_a_mirror_reverses_each_row() {
        let data = dots();
        let batch: Vec<usize> = (0..data.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let same = augmented(&data, &batch, &Augmentation::default(), &mut rng);
        assert!(Augmentation::default().is_identity());
        assert_eq!(same.images, data.images);
        let flip = Augmentation {
            flip: true,
            ..Augmentation::default()
        };
        assert!(!flip.is_identity());
        let flipped = augmented(&data, &batch, &flip, &mut rng);
        let (w, c) = (data.cols, data.channels);
        let flips = (0..data.len())
            .filter(|&i| {
                let (a, b) = (data.image(i), flipped.image(i));
                let row_reversed = |y: usize| {
                    (0..w).all(|x| {
                        let (p, q) = ((y * w + x) * c, (y * w + w - 1 - x) * c);
                        a[p..p + c] == b[q..q + c]
                    })
                };
                assert!(a == b || (0..data.rows).all(row_reversed), "image {i}");
                a != b
            })
            .count();
        assert!(flips > 0 && flips < data.len(), "some mirrored, some not");
    }
}
