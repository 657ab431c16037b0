//! The convolution kernels, channels-last (NHWC), as im2col + GEMM.
//!
//! A convolution of a chunk of `n` samples is one matrix product: [`im2col`] lays every
//! output position's input patch out as a row (`n ho wo` rows of `kernel^2 C_in` values, a
//! patch in `(ky, kx, c)` order), and `cols (n ho wo x patch) . W (patch x C_out)` is the
//! output, channels-last. Its transpose (the drive a convolution sends back to its input) is
//! `g W^T` scattered back onto the input by [`col2im_acc`]. Max-pooling keeps the position of
//! each window's maximum, so that the transpose routes the pooled layer's values back to the
//! winners ([`unpool`]).

use super::architecture::ConvGeometry;
use crate::backend::simd::{Isa, simd_dispatch};

/// `cols[(s, oy, ox), (ky, kx, c)] = x[s, oy + ky - pad, ox + kx - pad, c]` (0 outside).
///
/// `x` holds `n` samples of `h w cin` values; `cols` at least `n ho wo` rows of `patch`.
pub fn im2col(x: &[f32], n: usize, g: &ConvGeometry, cols: &mut [f32]) {
    let (patch, row_in, sample_in) = (g.patch(), g.w * g.cin, g.h * g.w * g.cin);
    let kc = g.kernel * g.cin;
    for s in 0..n {
        let xs = &x[s * sample_in..(s + 1) * sample_in];
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let row = ((s * g.ho + oy) * g.wo + ox) * patch;
                let dst = &mut cols[row..row + patch];
                for ky in 0..g.kernel {
                    let line = &mut dst[ky * kc..(ky + 1) * kc];
                    let y = (oy + ky) as isize - g.padding as isize;
                    if y < 0 || y >= g.h as isize {
                        line.fill(0.0);
                        continue;
                    }
                    copy_line(line, &xs[y as usize * row_in..][..row_in], ox, g);
                }
            }
        }
    }
}

/// One kernel row of a patch: input columns `ox - pad .. ox - pad + kernel` of an input row,
/// zero where they fall outside it.
#[inline]
fn copy_line(line: &mut [f32], row: &[f32], ox: usize, g: &ConvGeometry) {
    let (first, before, inside) = span(ox, g);
    line[..before].fill(0.0);
    line[before..before + inside].copy_from_slice(&row[first..first + inside]);
    line[before + inside..].fill(0.0);
}

/// Where the kernel row at output column `ox` meets an input row: the first input value it
/// covers, how many kernel values fall before the row's start (in the padding) and how many
/// inside it (all counted in values, `cin` per column).
#[inline]
fn span(ox: usize, g: &ConvGeometry) -> (usize, usize, usize) {
    let x0 = ox as isize - g.padding as isize;
    let (lo, hi) = (x0.max(0), (x0 + g.kernel as isize).min(g.w as isize));
    let before = (lo - x0) as usize * g.cin;
    let inside = (hi - lo).max(0) as usize * g.cin;
    (lo as usize * g.cin, before, inside)
}

/// The adjoint of [`im2col`]: `x[s, y, x, c] += sum` of every `cols` entry that copied it.
pub fn col2im_acc(cols: &[f32], n: usize, g: &ConvGeometry, x: &mut [f32]) {
    let (patch, row_in, sample_in) = (g.patch(), g.w * g.cin, g.h * g.w * g.cin);
    let kc = g.kernel * g.cin;
    for s in 0..n {
        let xs = &mut x[s * sample_in..(s + 1) * sample_in];
        for oy in 0..g.ho {
            for ox in 0..g.wo {
                let row = ((s * g.ho + oy) * g.wo + ox) * patch;
                let src = &cols[row..row + patch];
                for ky in 0..g.kernel {
                    let y = (oy + ky) as isize - g.padding as isize;
                    if y < 0 || y >= g.h as isize {
                        continue;
                    }
                    let line = &src[ky * kc..(ky + 1) * kc];
                    add_line(&mut xs[y as usize * row_in..][..row_in], line, ox, g);
                }
            }
        }
    }
}

#[inline]
fn add_line(row: &mut [f32], line: &[f32], ox: usize, g: &ConvGeometry) {
    let (first, before, inside) = span(ox, g);
    for (d, &v) in row[first..first + inside]
        .iter_mut()
        .zip(&line[before..before + inside])
    {
        *d += v;
    }
}

/// Max-pools the convolution output `conv` (`n ho wo x cout`, channels-last) into `pooled`
/// (`n hp wp x cout`) and records in `winner` the index into `conv` of each maximum (the first
/// one on ties, scanning rows then columns).
pub fn max_pool(conv: &[f32], n: usize, g: &ConvGeometry, pooled: &mut [f32], winner: &mut [u32]) {
    max_pool_dispatch(conv, n, g, pooled, winner);
}

simd_dispatch! {
    fn max_pool_dispatch => max_pool_impl(
        conv: &[f32], n: usize, g: &ConvGeometry, pooled: &mut [f32], winner: &mut [u32],
    )
}

/// [`max_pool`] for one instruction set (comparisons and copies: the same result on each).
#[inline(always)]
fn max_pool_impl<I: Isa>(
    _isa: I,
    conv: &[f32],
    n: usize,
    g: &ConvGeometry,
    pooled: &mut [f32],
    winner: &mut [u32],
) {
    let (p, c) = (g.pool, g.cout);
    for s in 0..n {
        for py in 0..g.hp {
            for px in 0..g.wp {
                let out = ((s * g.hp + py) * g.wp + px) * c;
                let first = ((s * g.ho + py * p) * g.wo + px * p) * c;
                pooled[out..out + c].copy_from_slice(&conv[first..first + c]);
                for (w, i) in winner[out..out + c].iter_mut().zip(first..) {
                    *w = i as u32;
                }
                for dy in 0..p {
                    for dx in 0..p {
                        let at = ((s * g.ho + py * p + dy) * g.wo + px * p + dx) * c;
                        let window = &conv[at..at + c];
                        let best = &mut pooled[out..out + c];
                        let index = &mut winner[out..out + c];
                        // Selects rather than branches, so that the loop vectorises.
                        for (ch, ((b, i), &v)) in best.iter_mut().zip(index).zip(window).enumerate()
                        {
                            let better = v > *b;
                            *b = if better { v } else { *b };
                            *i = if better { (at + ch) as u32 } else { *i };
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`max_pool`] at fixed winners: `g` (the size of the convolution output) is
/// zero except `g[winner[i]] = values[i]`.
pub fn unpool(values: &[f32], winner: &[u32], g: &mut [f32]) {
    g.fill(0.0);
    for (&v, &w) in values.iter().zip(winner) {
        g[w as usize] = v;
    }
}

/// The transpose of a (pooled) convolution applied to the layer above, scattered straight onto
/// the input's drive: for every non-zero `v` of `above` (`n hp wp x cout`) at the window
/// maximum `winner` (an index into the `n ho wo x cout` convolution output),
/// `drive[patch of that position] += v W[:, c]`.
///
/// A `pool x pool` max-pool leaves at most one routed value per window, and the hard sigmoid
/// leaves many states at 0, so this does `nnz(above) kernel^2 C_in` multiply-adds where the
/// dense product `unpool(above) W^T` does `pool^2` times more (and more, by the zeros). `wt`
/// is `W^T`: row `c` is output channel `c`'s kernel, in patch order.
pub fn conv_transpose_routed(
    above: &[f32],
    winner: &[u32],
    wt: &[f32],
    g: &ConvGeometry,
    drive: &mut [f32],
) {
    conv_transpose_routed_dispatch(above, winner, wt, g, drive);
}

simd_dispatch! {
    fn conv_transpose_routed_dispatch => conv_transpose_routed_impl(
        above: &[f32], winner: &[u32], wt: &[f32], g: &ConvGeometry, drive: &mut [f32],
    )
}

/// [`conv_transpose_routed`] for one instruction set. Its multiply-adds stay unfused
/// (`d += v * w` rounds the product, then the sum), so the wider vectors of AVX2 give the
/// same bits as the baseline target.
#[inline(always)]
fn conv_transpose_routed_impl<I: Isa>(
    _isa: I,
    above: &[f32],
    winner: &[u32],
    wt: &[f32],
    g: &ConvGeometry,
    drive: &mut [f32],
) {
    let patch = g.patch();
    for (&v, &at) in above.iter().zip(winner) {
        if v != 0.0 {
            let c = at as usize % g.cout;
            let kernel = &wt[c * patch..(c + 1) * patch];
            scatter_kernel(v, at as usize / g.cout, kernel, g, drive);
        }
    }
}

/// `drive[patch of conv output row at] += v kernel`, `at` indexing the `n ho wo` positions.
#[inline(always)]
fn scatter_kernel(v: f32, at: usize, kernel: &[f32], g: &ConvGeometry, drive: &mut [f32]) {
    let sample_in = g.h * g.w * g.cin;
    let (s, pos) = (at / g.positions(), at % g.positions());
    let (oy, ox) = (pos / g.wo, pos % g.wo);
    let xs = &mut drive[s * sample_in..(s + 1) * sample_in];
    let (first, before, inside) = span(ox, g);
    let kc = g.kernel * g.cin;
    for ky in 0..g.kernel {
        let y = (oy + ky) as isize - g.padding as isize;
        if y < 0 || y >= g.h as isize {
            continue;
        }
        let src = &kernel[ky * kc + before..ky * kc + before + inside];
        let row = y as usize * g.w * g.cin + first;
        for (d, &w) in xs[row..row + inside].iter_mut().zip(src) {
            *d += v * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conv::architecture::Architecture;
    use rand::{RngExt, SeedableRng};

    fn geometry(spec: &str) -> ConvGeometry {
        Architecture::parse(spec).unwrap().conv_geometry(1).unwrap()
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for every x and c.
        for spec in [
            "3x7x5,conv4k3p1,2",
            "2x6x9,conv5k4p2,2",
            "1x6x6,conv2k3p2,2",
        ] {
            let g = geometry(spec);
            let n = 2;
            let x = random(n * g.h * g.w * g.cin, 3);
            let c = random(n * g.positions() * g.patch(), 4);
            let mut cols = vec![0.0; c.len()];
            im2col(&x, n, &g, &mut cols);
            let mut back = vec![0.0; x.len()];
            col2im_acc(&c, n, &g, &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| f64::from(a * b)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{spec}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn the_vector_kernels_give_the_baseline_bits() {
        // The dispatched kernels (AVX2 where the CPU has it) against their baseline variant:
        // bit for bit, so a checkpoint does not depend on the host's instruction set.
        use crate::backend::simd::Scalar;
        let g = geometry("5x9x7,conv12k3p1+pool,2");
        let n = 3;
        let conv = random(n * g.positions() * g.cout, 11);
        let pooled_len = n * g.hp * g.wp * g.cout;
        let pool = |fast: bool| {
            let (mut pooled, mut winner) = (vec![0.0; pooled_len], vec![0; pooled_len]);
            if fast {
                max_pool(&conv, n, &g, &mut pooled, &mut winner);
            } else {
                max_pool_impl(Scalar, &conv, n, &g, &mut pooled, &mut winner);
            }
            (pooled, winner)
        };
        let (pooled, winner) = pool(true);
        assert_eq!((pooled.clone(), winner.clone()), pool(false));
        let above: Vec<f32> = random(pooled_len, 12).iter().map(|v| v.max(0.0)).collect();
        let wt = random(g.patch() * g.cout, 13);
        let start = random(n * g.h * g.w * g.cin, 14);
        let (mut fast, mut base) = (start.clone(), start);
        conv_transpose_routed(&above, &winner, &wt, &g, &mut fast);
        conv_transpose_routed_impl(Scalar, &above, &winner, &wt, &g, &mut base);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&base));
    }

    #[test]
    fn the_routed_transpose_equals_unpool_then_the_dense_transpose() {
        for spec in [
            "3x9x7,conv4k3p1+pool,2",
            "2x8x8,conv5k2p1+pool3,2",
            "2x6x5,conv3k3p2,2",
        ] {
            let g = geometry(spec);
            let n = 2;
            let conv = random(n * g.positions() * g.cout, 7);
            let pooled_len = n * g.hp * g.wp * g.cout;
            let (mut pooled, mut winner) = (vec![0.0; pooled_len], vec![0; pooled_len]);
            max_pool(&conv, n, &g, &mut pooled, &mut winner);
            // States in [0, 1] with zeros among them, as the hard sigmoid leaves them.
            let above: Vec<f32> = random(pooled_len, 8).iter().map(|v| v.max(0.0)).collect();
            let w = random(g.patch() * g.cout, 9);
            let mut routed = vec![0.0; conv.len()];
            unpool(&above, &winner, &mut routed);
            let mut dcols = vec![0.0; n * g.positions() * g.patch()];
            for (r, row) in routed.chunks(g.cout).enumerate() {
                for i in 0..g.patch() {
                    dcols[r * g.patch() + i] =
                        (0..g.cout).map(|c| row[c] * w[i * g.cout + c]).sum();
                }
            }
            let mut want = vec![0.0; n * g.h * g.w * g.cin];
            col2im_acc(&dcols, n, &g, &mut want);
            let mut wt = vec![0.0; w.len()];
            for i in 0..g.patch() {
                for c in 0..g.cout {
                    wt[c * g.patch() + i] = w[i * g.cout + c];
                }
            }
            let mut got = vec![0.0; want.len()];
            conv_transpose_routed(&above, &winner, &wt, &g, &mut got);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{spec}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn max_pool_picks_window_maxima_and_unpool_routes_back() {
        let g = geometry("2x7x7,conv3k2+pool3,2"); // 6x6 conv output, 2x2 pooled
        let n = 2;
        let conv = random(n * g.positions() * g.cout, 5);
        let mut pooled = vec![0.0; n * g.hp * g.wp * g.cout];
        let mut winner = vec![0; pooled.len()];
        max_pool(&conv, n, &g, &mut pooled, &mut winner);
        for s in 0..n {
            for py in 0..g.hp {
                for px in 0..g.wp {
                    for c in 0..g.cout {
                        let mut best = f32::MIN;
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let i = ((s * 6 + py * 3 + dy) * 6 + px * 3 + dx) * g.cout + c;
                                best = best.max(conv[i]);
                            }
                        }
                        let o = ((s * g.hp + py) * g.wp + px) * g.cout + c;
                        assert_eq!(pooled[o], best);
                        assert_eq!(conv[winner[o] as usize], best);
                    }
                }
            }
        }
        let mut back = vec![1.0; conv.len()];
        unpool(&pooled, &winner, &mut back);
        assert_eq!(back.iter().filter(|&&v| v != 0.0).count(), pooled.len());
    }
}
