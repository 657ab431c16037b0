//! Data augmentation: small random translations.

use super::Dataset;
use rand::{Rng, RngExt};

/// Whether images of `height x width` can be moved by up to `shift` pixels: `shift` smaller
/// than their shorter side (0 always fits).
pub fn shift_fits(shift: usize, height: usize, width: usize) -> bool {
    shift == 0 || shift < height.min(width)
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
    let (h, w, c) = (data.rows as isize, data.cols as isize, data.channels);
    let mut pixels = vec![0.0; batch.len() * data.pixels()];
    let s = shift as i64;
    for (dst, &i) in pixels.chunks_exact_mut(data.pixels()).zip(batch) {
        let (dy, dx) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
        let (dy, dx) = (dy as isize, dx as isize);
        let (x0, x1) = (dx.max(0), (w + dx).min(w));
        let (src, n) = (data.image(i), (x1 - x0).max(0) as usize * c);
        let at = |y: isize, x: isize| (y * w + x) as usize * c;
        for y in (dy.max(0)..(h + dy).min(h)).filter(|_| n > 0) {
            let from = at(y - dy, x0 - dx);
            dst[at(y, x0)..at(y, x0) + n].copy_from_slice(&src[from..from + n]);
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
}
