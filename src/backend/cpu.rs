//! CPU kernels: dense GEMM through the `gemm` crate, sparse input products by hand.

use super::simd::{Isa, axpy_rows, simd_dispatch};
use crate::tensor::Matrix;

/// Whether an operand enters a product as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transpose {
    No,
    Yes,
}

/// Shape and strides (row stride, column stride) of `op(M)` for a row-major `M`.
fn view(m: &Matrix, t: Transpose) -> (usize, usize, isize, isize) {
    let (r, c) = (m.rows(), m.cols());
    match t {
        Transpose::No => (r, c, c as isize, 1),
        Transpose::Yes => (c, r, 1, c as isize),
    }
}

/// `C += alpha * op(A) * op(B)` on one thread (callers parallelise over larger units of work).
///
/// Panics on mismatched shapes: these are programming errors, not input errors.
pub(crate) fn matmul_acc(
    c: &mut Matrix,
    a: &Matrix,
    ta: Transpose,
    b: &Matrix,
    tb: Transpose,
    alpha: f32,
) {
    let (m, k, a_rs, a_cs) = view(a, ta);
    let (k2, n, b_rs, b_cs) = view(b, tb);
    assert_eq!(k, k2, "inner dimensions differ");
    assert_eq!((c.rows(), c.cols()), (m, n), "output shape mismatch");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the strides above describe exactly the row-major buffers of `a`, `b` and `c`, whose
    // lengths are rows*cols; `c` is borrowed mutably so it aliases neither input.
    unsafe {
        gemm_acc(
            (m, n, k),
            c.as_mut_slice().as_mut_ptr(),
            (a.as_slice().as_ptr(), a_rs, a_cs),
            (b.as_slice().as_ptr(), b_rs, b_cs),
            alpha,
        );
    }
}

/// `dst (m x n, row-major) += alpha lhs rhs` for strided `(pointer, row stride, column stride)`
/// operands, on the calling thread.
///
/// # Safety
/// Every element addressed by the shapes and strides must lie inside its buffer, and `dst` must
/// alias neither operand.
unsafe fn gemm_acc(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (lhs, lhs_rs, lhs_cs): (*const f32, isize, isize),
    (rhs, rhs_rs, rhs_cs): (*const f32, isize, isize),
    alpha: f32,
) {
    // SAFETY: the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            true,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `W[rows] += alpha A[:, rows]^T B` for the block of rows of `W` starting at `first_row`
/// (`block` holds whole rows of `B.cols()` floats): one worker's share of an outer-product update.
pub(crate) fn outer_acc_rows(
    block: &mut [f32],
    first_row: usize,
    a: &Matrix,
    b: &Matrix,
    alpha: f32,
) {
    let n = b.cols();
    let m = block.len() / n.max(1);
    assert_eq!(a.rows(), b.rows(), "one row per sample in both factors");
    assert!(
        first_row + m <= a.cols() && block.len() == m * n,
        "block outside the matrix"
    );
    if m == 0 || n == 0 || a.rows() == 0 {
        return;
    }
    // SAFETY: lhs element (i, s) is a[s][first_row + i], inside `a` for i < m, s < a.rows();
    // rhs is `b` row-major; dst is `block`, m x n row-major, borrowed mutably.
    unsafe {
        gemm_acc(
            (m, n, a.rows()),
            block.as_mut_ptr(),
            (a.as_slice().as_ptr().add(first_row), 1, a.cols() as isize),
            (b.as_slice().as_ptr(), n as isize, 1),
            alpha,
        );
    }
}

/// A batch of clamped inputs stored by column (pixel), for the sparse `W_1` update: for each
/// pixel, the samples in which it is non-zero and their values. Each column has room for every sample, so it is filled in one pass
/// without branches; rebuilt per batch into reused buffers, it never allocates once warmed up.
#[derive(Clone, Debug, Default)]
pub struct SparseColumns {
    cols: usize,
    /// Slots per column: the batch size.
    capacity: usize,
    count: Vec<u32>,
    sample: Vec<u32>,
    value: Vec<f32>,
}

impl SparseColumns {
    /// Rebuilds the column lists from a dense `batch x pixels` matrix.
    pub fn rebuild(&mut self, x: &Matrix) {
        self.cols = x.cols();
        self.capacity = x.rows();
        self.count.clear();
        self.count.resize(self.cols, 0);
        self.sample.resize(self.cols * self.capacity, 0);
        self.value.resize(self.cols * self.capacity, 0.0);
        for r in 0..x.rows() {
            for (block, pixels) in x.row(r).chunks(DARK_BLOCK).enumerate() {
                if is_dark(pixels) {
                    continue;
                }
                for (offset, &v) in pixels.iter().enumerate() {
                    let p = block * DARK_BLOCK + offset;
                    // Before row r at most r entries of column p are filled, so the slot is in
                    // range; a zero is written too but not counted, and the next entry
                    // overwrites it.
                    let slot = p * self.capacity + self.count[p] as usize;
                    self.sample[slot] = r as u32;
                    self.value[slot] = v;
                    self.count[p] += u32::from(v != 0.0);
                }
            }
        }
    }

    /// Drops the entries of every sample `s` with `keep[s] == false`.
    pub(crate) fn retain_samples(&mut self, keep: &[bool]) {
        for p in 0..self.cols {
            let start = p * self.capacity;
            let mut kept = 0;
            for slot in start..start + self.count[p] as usize {
                if keep[self.sample[slot] as usize] {
                    self.sample[start + kept] = self.sample[slot];
                    self.value[start + kept] = self.value[slot];
                    kept += 1;
                }
            }
            self.count[p] = kept as u32;
        }
    }

    /// Non-zero `(sample, value)` pairs of column `p`.
    fn column(&self, p: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = p * self.capacity..p * self.capacity + self.count[p] as usize;
        self.sample[range.clone()]
            .iter()
            .map(|&s| s as usize)
            .zip(self.value[range].iter().copied())
    }

    /// `W[rows] += c X^T Delta` for the weight rows `first_row..first_row + w_rows.len()/units`,
    /// where `w_rows` is that block of `W` (so threads can own disjoint blocks).
    pub fn rank_update(&self, c: f32, delta: &Matrix, first_row: usize, w_rows: &mut [f32]) {
        rank_update_chunks(c, &[(self, delta)], first_row, w_rows);
    }
}

/// [`SparseColumns::rank_update`] summed over several chunks of a mini-batch, `(inputs, delta)`
/// each: the lit samples of all chunks are added to a weight row up to eight per pass, so the row
/// is loaded and stored once per eight samples.
pub(crate) fn rank_update_chunks(
    c: f32,
    chunks: &[(&SparseColumns, &Matrix)],
    first_row: usize,
    w_rows: &mut [f32],
) {
    sparse_rank_update(chunks, c, first_row, w_rows);
}

/// Pixels per block that [`input_drive`] and [`SparseColumns::rebuild`] test for darkness at once.
const DARK_BLOCK: usize = 8;

/// Whether every pixel of the block is exactly zero (one vectorised test: any set bit is light;
/// a `-0.0` only costs the per-pixel test that follows).
#[inline(always)]
fn is_dark(pixels: &[f32]) -> bool {
    pixels.iter().fold(0, |any, v| any | v.to_bits()) == 0
}

simd_dispatch! {
    /// `D += X W` for a batch of inputs `X` (`batch x pixels`, mostly exact zeros) and `W` of
    /// shape `pixels x units`, skipping the zeros.
    ///
    /// Pixels go by blocks of eight: a sample adds the weight rows of its lit pixels in the block
    /// to its drive row in one pass (one load and store of the drive row per block rather than
    /// per pixel), while the block's eight weight rows stay in L1 for every sample. The terms are
    /// added pixel by pixel in order, the same rounding as one pixel at a time.
    pub fn input_drive => input_drive_impl(x: &Matrix, w: &Matrix, d: &mut Matrix)
}

#[inline(always)]
fn input_drive_impl<I: Isa>(isa: I, x: &Matrix, w: &Matrix, d: &mut Matrix) {
    assert_eq!(w.rows(), x.cols(), "weight rows must equal input width");
    assert_eq!(w.cols(), d.cols(), "weight columns must equal drive width");
    assert_eq!(x.rows(), d.rows(), "one drive row per input row");
    let mut coef = [0.0f32; DARK_BLOCK];
    let mut rows = [&[][..]; DARK_BLOCK];
    for first in (0..x.cols()).step_by(DARK_BLOCK) {
        let pixels = first..(first + DARK_BLOCK).min(x.cols());
        for s in 0..x.rows() {
            let values = &x.row(s)[pixels.clone()];
            if is_dark(values) {
                continue;
            }
            let mut lit = 0;
            for (offset, &v) in values.iter().enumerate() {
                coef[lit] = v;
                rows[lit] = w.row(first + offset);
                lit += usize::from(v != 0.0);
            }
            axpy_rows(isa, d.row_mut(s), &coef[..lit], &rows[..lit]);
        }
    }
}

simd_dispatch! {
    fn sparse_rank_update => sparse_rank_update_impl(
        chunks: &[(&SparseColumns, &Matrix)], c: f32, first_row: usize, w_rows: &mut [f32],
    )
}

/// Terms gathered per weight row before they are added in one [`axpy_rows`] call.
const TERMS: usize = 32;

#[inline(always)]
fn sparse_rank_update_impl<I: Isa>(
    isa: I,
    chunks: &[(&SparseColumns, &Matrix)],
    c: f32,
    first_row: usize,
    w_rows: &mut [f32],
) {
    let Some(units) = chunks.first().map(|(_, delta)| delta.cols()) else {
        return;
    };
    let mut coef = [0.0f32; TERMS];
    let mut rows = [&[][..]; TERMS];
    for (i, wrow) in w_rows.chunks_exact_mut(units).enumerate() {
        let mut count = 0;
        for &(x, delta) in chunks {
            for (s, v) in x.column(first_row + i) {
                coef[count] = c * v;
                rows[count] = delta.row(s);
                count += 1;
                if count == TERMS {
                    axpy_rows(isa, wrow, &coef, &rows);
                    count = 0;
                }
            }
        }
        axpy_rows(isa, wrow, &coef[..count], &rows[..count]);
    }
}

/// `s <- clamp(s + eps (d - s) [+ eps beta (t - s)], 0, 1)` on one row.
#[inline(always)]
pub(crate) fn step_row(s: &mut [f32], d: &[f32], eps: f32, nudge: Option<(f32, &[f32])>) {
    step_row_watched(s, d, eps, nudge, (0.0, 1.0), |_, _| {});
}

/// [`step_row`] clamping to `[lo, hi]` instead of `[0, 1]`, calling `watch(old, new)` for every
/// state it sets (inlined: a watcher that does nothing costs nothing).
#[inline(always)]
pub(crate) fn step_row_watched(
    s: &mut [f32],
    d: &[f32],
    eps: f32,
    nudge: Option<(f32, &[f32])>,
    (lo, hi): (f32, f32),
    mut watch: impl FnMut(f32, f32),
) {
    let mut set = |x: &mut f32, new: f32| {
        watch(*x, new);
        *x = new;
    };
    match nudge {
        Some((beta, t)) => {
            for ((x, &d), &t) in s.iter_mut().zip(d).zip(t) {
                set(x, (*x + eps * (d - *x + beta * (t - *x))).clamp(lo, hi));
            }
        }
        None => {
            for (x, &d) in s.iter_mut().zip(d) {
                set(x, (*x + eps * (d - *x)).clamp(lo, hi));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::simd::Scalar;

    fn naive(a: &Matrix, ta: Transpose, b: &Matrix, tb: Transpose) -> Matrix {
        let get = |m: &Matrix, t: Transpose, i: usize, j: usize| match t {
            Transpose::No => m.get(i, j),
            Transpose::Yes => m.get(j, i),
        };
        let (m, k) = if ta == Transpose::No {
            (a.rows(), a.cols())
        } else {
            (a.cols(), a.rows())
        };
        let n = if tb == Transpose::No {
            b.cols()
        } else {
            b.rows()
        };
        let mut c = Matrix::zeros(m, n);
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|l| get(a, ta, i, l) * get(b, tb, l, j)).sum();
                c.set(i, j, s);
            }
        }
        c
    }

    fn pseudo_random(rows: usize, cols: usize, seed: u32) -> Matrix {
        let data = (0..rows * cols)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2654435761);
                // Every third entry is exactly zero, like dark pixels.
                if h.is_multiple_of(3) {
                    0.0
                } else {
                    (h % 1000) as f32 / 1000.0 - 0.5
                }
            })
            .collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    #[test]
    fn matmul_matches_naive_for_all_transposes_and_odd_sizes() {
        for &(m, k, n) in &[(1, 1, 1), (3, 7, 5), (17, 33, 9), (20, 500, 10)] {
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let a = if ta == Transpose::No {
                        pseudo_random(m, k, 1)
                    } else {
                        pseudo_random(k, m, 1)
                    };
                    let b = if tb == Transpose::No {
                        pseudo_random(k, n, 2)
                    } else {
                        pseudo_random(n, k, 2)
                    };
                    let mut c = pseudo_random(m, n, 3);
                    let mut expect = naive(&a, ta, &b, tb);
                    for (e, &c0) in expect.as_mut_slice().iter_mut().zip(c.as_slice()) {
                        *e = c0 + 0.5 * *e;
                    }
                    matmul_acc(&mut c, &a, ta, &b, tb, 0.5);
                    for (x, y) in c.as_slice().iter().zip(expect.as_slice()) {
                        assert!(
                            (x - y).abs() < 1e-4,
                            "{m}x{k}x{n} {ta:?} {tb:?}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn outer_products_of_row_blocks_match_naive_narrow_and_wide() {
        for n in [3, 10, 17, 40] {
            let a = pseudo_random(6, 9, 11);
            let b = pseudo_random(6, n, 12);
            let full = naive(&a, Transpose::Yes, &b, Transpose::No);
            let w0 = pseudo_random(9, n, 13);
            let mut w = w0.clone();
            // Two blocks of rows, as two workers would update them.
            let (top, bottom) = w.as_mut_slice().split_at_mut(4 * n);
            outer_acc_rows(top, 0, &a, &b, 0.7);
            outer_acc_rows(bottom, 4, &a, &b, 0.7);
            for i in 0..9 {
                for j in 0..n {
                    let expect = w0.get(i, j) + 0.7 * full.get(i, j);
                    assert!((w.get(i, j) - expect).abs() < 1e-5, "n {n} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn sparse_drive_and_update_match_dense() {
        let x = pseudo_random(6, 11, 7)
            .as_slice()
            .iter()
            .map(|v| v.max(0.0))
            .collect();
        let x = Matrix::from_vec(6, 11, x).unwrap();
        let w = pseudo_random(11, 4, 8);
        let mut sparse = SparseColumns::default();
        sparse.rebuild(&x);
        let mut d = Matrix::zeros(6, 4);
        input_drive(&x, &w, &mut d);
        let mut e = Matrix::zeros(6, 4);
        matmul_acc(&mut e, &x, Transpose::No, &w, Transpose::No, 1.0);
        for (a, b) in d.as_slice().iter().zip(e.as_slice()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let delta = pseudo_random(6, 4, 9);
        let mut w_sparse = w.clone();
        sparse.rank_update(0.3, &delta, 0, w_sparse.as_mut_slice());
        let mut w_dense = w.clone();
        matmul_acc(&mut w_dense, &x, Transpose::Yes, &delta, Transpose::No, 0.3);
        for (a, b) in w_sparse.as_slice().iter().zip(w_dense.as_slice()) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    /// MNIST-like inputs: non-negative, about two thirds exactly zero, whole dark blocks of
    /// eight pixels among them (rows 1 and 4 are dark from pixel 8 on), a `-0.0` here and there.
    fn inputs(rows: usize, cols: usize, seed: u32) -> Matrix {
        let mut x = pseudo_random(rows, cols, seed);
        for (i, v) in x.as_mut_slice().iter_mut().enumerate() {
            let (r, p) = (i / cols, i % cols);
            *v = match (r, p) {
                (1 | 4, 8..) => 0.0,
                _ if i % 29 == 5 => -0.0,
                _ => v.max(0.0),
            };
        }
        x
    }

    /// `D += X W` one lit pixel after another, each multiply-add fused or not: the arithmetic
    /// each variant of `input_drive` promises.
    fn ordered_drive(x: &Matrix, w: &Matrix, d: &Matrix, fused: bool) -> Matrix {
        let mut d = d.clone();
        for s in 0..x.rows() {
            for (p, &v) in x.row(s).iter().enumerate().filter(|(_, v)| **v != 0.0) {
                for (y, &wv) in d.row_mut(s).iter_mut().zip(w.row(p)) {
                    *y = if fused {
                        v.mul_add(wv, *y)
                    } else {
                        v * wv + *y
                    };
                }
            }
        }
        d
    }

    /// `W += c X^T Delta` one lit sample after another (chunk by chunk), the coefficient
    /// `c x` rounded first, each multiply-add fused or not.
    fn ordered_rank_update(
        chunks: &[(&Matrix, &Matrix)],
        c: f32,
        w: &Matrix,
        fused: bool,
    ) -> Matrix {
        let mut w = w.clone();
        for p in 0..w.rows() {
            for &(x, delta) in chunks {
                for s in (0..x.rows()).filter(|&s| x.get(s, p) != 0.0) {
                    let a = c * x.get(s, p);
                    for (y, &dv) in w.row_mut(p).iter_mut().zip(delta.row(s)) {
                        *y = if fused {
                            a.mul_add(dv, *y)
                        } else {
                            a * dv + *y
                        };
                    }
                }
            }
        }
        w
    }

    fn bits(m: &Matrix) -> Vec<u32> {
        m.as_slice().iter().map(|v| v.to_bits()).collect()
    }

    /// Within the rounding that fusing saves: well under 1e-5 for these sums of a few dozen
    /// terms below 1 (each fused term skips one rounding of its product).
    fn assert_close(a: &Matrix, b: &Matrix) {
        for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    /// The public entry point ran the variant the CPU allows: the AVX2 one's bits where there
    /// is one (`fast`), the scalar one's elsewhere; and the two variants agree.
    fn assert_dispatched(public: &Matrix, scalar: &Matrix, fast: Option<&Matrix>) {
        match fast {
            Some(fast) => {
                assert_close(scalar, fast);
                assert_eq!(bits(public), bits(fast), "the dispatch runs AVX2");
            }
            None => assert_eq!(
                bits(public),
                bits(scalar),
                "the dispatch runs the scalar loop"
            ),
        }
    }

    /// Widths around the vector width and the drive's 500; pixel counts with a partial block.
    const SHAPES: [(usize, usize, usize); 4] = [(6, 11, 4), (5, 40, 9), (7, 27, 17), (3, 64, 500)];

    /// The sparse input drive of each variant is its ordered sum bit for bit (the scalar one
    /// on every machine), and the two variants agree.
    #[test]
    fn input_drive_variants_are_their_ordered_sums() {
        let avx = crate::backend::simd::avx2_or_skip("input_drive_variants_are_their_ordered_sums");
        for (seed, &(batch, pixels, units)) in SHAPES.iter().enumerate() {
            let x = inputs(batch, pixels, seed as u32);
            let w = pseudo_random(pixels, units, 40 + seed as u32);
            let d0 = pseudo_random(batch, units, 80 + seed as u32);
            let mut scalar = d0.clone();
            input_drive_impl(Scalar, &x, &w, &mut scalar);
            assert_eq!(bits(&scalar), bits(&ordered_drive(&x, &w, &d0, false)));
            let mut public = d0.clone();
            input_drive(&x, &w, &mut public);
            let fast = avx.map(|avx| {
                let mut fast = d0.clone();
                input_drive_impl(avx, &x, &w, &mut fast);
                assert_eq!(bits(&fast), bits(&ordered_drive(&x, &w, &d0, true)));
                fast
            });
            assert_dispatched(&public, &scalar, fast.as_ref());
        }
    }

    /// The sparse rank update of each variant is its ordered sum bit for bit (over two chunks
    /// and more than `TERMS` lit samples per pixel, so the terms go in several passes), and the
    /// two variants agree.
    #[test]
    fn rank_update_variants_are_their_ordered_sums() {
        let avx = crate::backend::simd::avx2_or_skip("rank_update_variants_are_their_ordered_sums");
        for (seed, &(batch, pixels, units)) in SHAPES.iter().enumerate() {
            let batch = batch * 7;
            let xs = [
                inputs(batch, pixels, seed as u32),
                inputs(batch, pixels, 9 + seed as u32),
            ];
            let deltas = [
                pseudo_random(batch, units, 20),
                pseudo_random(batch, units, 21),
            ];
            let sparse: Vec<SparseColumns> = xs
                .iter()
                .map(|x| {
                    let mut s = SparseColumns::default();
                    s.rebuild(x);
                    s
                })
                .collect();
            let chunks = [(&sparse[0], &deltas[0]), (&sparse[1], &deltas[1])];
            let dense = [(&xs[0], &deltas[0]), (&xs[1], &deltas[1])];
            let w0 = pseudo_random(pixels, units, 60 + seed as u32);
            // Two workers' blocks of rows, as in training.
            let run = |update: &dyn Fn(usize, &mut [f32])| {
                let mut w = w0.clone();
                let (top, bottom) = w.as_mut_slice().split_at_mut(pixels / 2 * units);
                update(0, top);
                update(pixels / 2, bottom);
                w
            };
            let c = 0.3;
            let scalar =
                run(&|first, rows| sparse_rank_update_impl(Scalar, &chunks, c, first, rows));
            assert_eq!(
                bits(&scalar),
                bits(&ordered_rank_update(&dense, c, &w0, false))
            );
            let public = run(&|first, rows| rank_update_chunks(c, &chunks, first, rows));
            let fast = avx.map(|avx| {
                let fast =
                    run(&|first, rows| sparse_rank_update_impl(avx, &chunks, c, first, rows));
                assert_eq!(
                    bits(&fast),
                    bits(&ordered_rank_update(&dense, c, &w0, true))
                );
                fast
            });
            assert_dispatched(&public, &scalar, fast.as_ref());
        }
    }
}
