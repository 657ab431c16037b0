//! Fused relaxation: every step of a phase for one sample at a time, for networks whose
//! free-to-free couplings are small enough to stay in cache (784-500-10: `W_2` is 20 KB).
//!
//! Each coupling term is computed in "rows form", `d += sum_i s_i M[i, :]`, over the non-zero
//! source units only (hard-sigmoid units often rest exactly at 0), with `M` stored row-major and
//! padded to whole 8-float vectors. The lower term of layer `k` uses `M = W_k`, the upper term
//! `M = W_{k+1}^T`; [`FusedCouplings::prepare`] lays both out once per batch.

use super::cpu::step_row;
use super::simd::{fmadd, simd_dispatch};
use crate::tensor::Matrix;

/// Floats per SIMD vector; padded widths are multiples of it.
pub const LANES: usize = 8;

/// `n` rounded up to whole vectors.
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A row-major matrix whose rows are padded with zeros to whole vectors.
#[derive(Clone, Debug, Default)]
pub struct PaddedRows {
    pub rows: usize,
    pub stride: usize,
    pub data: Vec<f32>,
}

impl PaddedRows {
    /// Fills from `m` (`transpose` = store `m^T`).
    fn fill(&mut self, m: &Matrix, transpose: bool) {
        let (rows, cols) = if transpose {
            (m.cols(), m.rows())
        } else {
            (m.rows(), m.cols())
        };
        self.rows = rows;
        self.stride = padded(cols);
        self.data.clear();
        self.data.resize(rows * self.stride, 0.0);
        for i in 0..rows {
            let row = &mut self.data[i * self.stride..i * self.stride + cols];
            for (j, v) in row.iter_mut().enumerate() {
                *v = if transpose { m.get(j, i) } else { m.get(i, j) };
            }
        }
    }
}

/// Destination layers up to this many units take their drive as dot products, wider ones by rows.
const NARROW: usize = 2 * LANES;

/// Whether a layer of `n` units takes its drive as dot products.
fn is_narrow(n: usize) -> bool {
    n <= NARROW
}

/// The couplings between free layers, laid out per destination layer `k`: `down[k]` carries the
/// drive from layer `k-1`, `up[k]` the drive from layer `k+1`. A wide layer gets rows form
/// (`W_k` and `W_{k+1}^T`), a narrow one dot form (`W_k^T` and `W_{k+1}`).
#[derive(Clone, Debug, Default)]
pub struct FusedCouplings {
    down: Vec<PaddedRows>,
    up: Vec<PaddedRows>,
}

impl FusedCouplings {
    /// Lays out the couplings between free layers (`weights[k-1] = W_k`).
    pub fn prepare(&mut self, weights: &[Matrix], clamped: &[bool]) {
        let layers = clamped.len();
        self.down.resize_with(layers, PaddedRows::default);
        self.up.resize_with(layers, PaddedRows::default);
        for k in 1..layers {
            if !clamped[k - 1] && !clamped[k] {
                let w = &weights[k - 1];
                self.down[k].fill(w, is_narrow(w.cols()));
                self.up[k - 1].fill(w, !is_narrow(w.rows()));
            }
        }
    }
}

/// Scratch for a pair of samples: two padded drive rows per layer (`2 k` and `2 k + 1`) and the
/// compacted non-zero sources.
#[derive(Clone, Debug, Default)]
pub struct FusedScratch {
    drive: Vec<Vec<f32>>,
    index: Vec<u32>,
    value: Vec<f32>,
}

impl FusedScratch {
    pub fn new(sizes: &[usize]) -> Self {
        let widest = padded(sizes.iter().copied().max().unwrap_or(0));
        Self {
            drive: sizes
                .iter()
                .flat_map(|&n| [vec![0.0; padded(n)], vec![0.0; padded(n)]])
                .collect(),
            index: vec![0; widest],
            value: vec![0.0; widest],
        }
    }

    /// Both drive rows of layer `k`.
    fn two_drives(&mut self, k: usize) -> [&mut [f32]; 2] {
        let (a, b) = self.drive[2 * k..2 * k + 2].split_at_mut(1);
        [&mut a[0][..], &mut b[0][..]]
    }
}

/// A relaxation phase for [`relax_fused`].
pub struct FusedPhase<'a> {
    pub clamped: &'a [bool],
    /// Per layer, `batch x units`: bias plus the drive of clamped neighbours.
    pub fixed: &'a [Matrix],
    pub couplings: &'a FusedCouplings,
    pub steps: usize,
    pub eps: f32,
    /// `(layer, beta, target)` of the nudge, if any.
    pub nudge: Option<(usize, f32, &'a Matrix)>,
}

simd_dispatch! {
    /// Relaxes every sample of a chunk through all steps of a phase, one sample at a time, so its
    /// states and the couplings stay in L1/L2 cache.
    pub fn relax_fused => relax_fused_impl(phase: &FusedPhase, states: &mut [Matrix], scratch: &mut FusedScratch)
}

#[inline(always)]
fn relax_fused_impl<const FMA: bool>(
    ph: &FusedPhase,
    states: &mut [Matrix],
    scratch: &mut FusedScratch,
) {
    let layers = states.len();
    let free = || (0..layers).filter(|&k| !ph.clamped[k]);
    let batch = states[0].rows();
    // Samples go in pairs: the dot products of a narrow layer then read each coupling once for
    // both samples.
    for first in (0..batch).step_by(2) {
        let pair = [first, (first + 1).min(batch - 1)];
        let count = if first + 1 < batch { 2 } else { 1 };
        for _ in 0..ph.steps {
            for k in free() {
                drive_layer::<FMA>(ph, states, scratch, k, &pair[..count]);
            }
            for k in free() {
                let n = states[k].cols();
                for (slot, &r) in pair[..count].iter().enumerate() {
                    let nudge = ph.nudge.filter(|n| n.0 == k);
                    let target = nudge.map(|(_, beta, t)| (beta, t.row(r)));
                    let d = &scratch.drive[2 * k + slot][..n];
                    step_row(states[k].row_mut(r), d, ph.eps, target);
                }
            }
        }
    }
}

/// Computes the drive of layer `k` for the samples `rows` (one or two) into their scratch rows.
#[inline(always)]
fn drive_layer<const FMA: bool>(
    ph: &FusedPhase,
    states: &[Matrix],
    scratch: &mut FusedScratch,
    k: usize,
    rows: &[usize],
) {
    let layers = states.len();
    let free = |j: usize| j < layers && !ph.clamped[j];
    let terms = [
        (k > 0 && free(k - 1)).then(|| (k - 1, &ph.couplings.down[k])),
        free(k + 1).then(|| (k + 1, &ph.couplings.up[k])),
    ];
    for (slot, &r) in rows.iter().enumerate() {
        let fixed = ph.fixed[k].row(r);
        scratch.drive[2 * k + slot][..fixed.len()].copy_from_slice(fixed);
    }
    for (source, m) in terms.into_iter().flatten() {
        if is_narrow(states[k].cols()) {
            let [d0, d1] = scratch.two_drives(k);
            let src0 = states[source].row(rows[0]);
            match rows {
                [_, r1] => dots2::<FMA>([d0, d1], [src0, states[source].row(*r1)], m),
                _ => dots::<FMA>(d0, src0, m),
            }
        } else {
            for (slot, &r) in rows.iter().enumerate() {
                let mut d = std::mem::take(&mut scratch.drive[2 * k + slot]);
                accumulate::<FMA>(&mut d, states[source].row(r), m, scratch);
                scratch.drive[2 * k + slot] = d;
            }
        }
    }
}

/// `d += src M` in rows form, over the non-zero sources only (compacted first, without branches).
#[inline(always)]
fn accumulate<const FMA: bool>(
    d: &mut [f32],
    src: &[f32],
    m: &PaddedRows,
    scratch: &mut FusedScratch,
) {
    let count = compact(src, &mut scratch.index, &mut scratch.value);
    rows_accumulate_sparse::<FMA>(d, &scratch.index[..count], &scratch.value[..count], m);
}

/// Writes the non-zero entries of `src` to the front of `index` / `value`; returns their count.
#[inline(always)]
fn compact(src: &[f32], index: &mut [u32], value: &mut [f32]) -> usize {
    let mut count = 0;
    for (i, &v) in src.iter().enumerate() {
        index[count] = i as u32;
        value[count] = v;
        count += usize::from(v != 0.0);
    }
    count
}

/// `d += sum_t value[t] * m[index[t], :]` over the padded width of `d`.
#[inline(always)]
fn rows_accumulate_sparse<const FMA: bool>(
    d: &mut [f32],
    index: &[u32],
    value: &[f32],
    m: &PaddedRows,
) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only true on the AVX2+FMA path chosen by `simd_dispatch`.
        return unsafe { avx2::rows_accumulate_sparse(d, index, value, m) };
    }
    for (&i, &v) in index.iter().zip(value) {
        let row = &m.data[i as usize * m.stride..][..d.len()];
        for (x, &w) in d.iter_mut().zip(row) {
            *x = fmadd::<FMA>(v, w, *x);
        }
    }
}

/// `d[j] += src . m[j, :]` for the rows `j < d.len()` of `m` (`src` no longer than a row).
#[inline(always)]
fn dots<const FMA: bool>(d: &mut [f32], src: &[f32], m: &PaddedRows) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only true on the AVX2+FMA path chosen by `simd_dispatch`.
        return unsafe { avx2::dots(d, src, m) };
    }
    for (j, x) in d.iter_mut().enumerate().take(m.rows) {
        let row = &m.data[j * m.stride..j * m.stride + src.len()];
        *x += row
            .iter()
            .zip(src)
            .fold(0.0, |acc, (&w, &s)| fmadd::<FMA>(w, s, acc));
    }
}

/// [`dots`] for two samples at once: each row of `m` is read once for both.
#[inline(always)]
fn dots2<const FMA: bool>(d: [&mut [f32]; 2], src: [&[f32]; 2], m: &PaddedRows) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only true on the AVX2+FMA path chosen by `simd_dispatch`.
        return unsafe { avx2::dots2(d, src, m) };
    }
    let [d0, d1] = d;
    dots::<FMA>(d0, src[0], m);
    dots::<FMA>(d1, src[1], m);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LANES, PaddedRows};
    use std::arch::x86_64::*;

    /// Blocks of up to 4 vectors of `d` stay in registers while the sources stream by.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_accumulate_sparse(
        d: &mut [f32],
        index: &[u32],
        value: &[f32],
        m: &PaddedRows,
    ) {
        let width = d.len();
        assert!(width.is_multiple_of(LANES) && width <= m.stride && index.len() == value.len());
        assert!(index.iter().all(|&i| (i as usize) < m.rows));
        let (base, stride) = (m.data.as_ptr(), m.stride);
        let dp = d.as_mut_ptr();
        let mut start = 0;
        while start < width {
            let vectors = ((width - start) / LANES).min(4);
            let (d, m) = (dp.wrapping_add(start), base.wrapping_add(start));
            // SAFETY: rows are < m.rows and columns < width <= stride, so every load is inside
            // m.data; stores cover d[start..start + vectors * LANES] <= width.
            unsafe {
                match vectors {
                    4 => block::<4>(d, index, value, m, stride),
                    3 => block::<3>(d, index, value, m, stride),
                    2 => block::<2>(d, index, value, m, stride),
                    _ => block::<1>(d, index, value, m, stride),
                }
            }
            start += vectors * LANES;
        }
    }

    /// `V` vectors of `d` in registers (a const, so the accumulators never touch the stack).
    #[inline(always)]
    unsafe fn block<const V: usize>(
        d: *mut f32,
        index: &[u32],
        value: &[f32],
        m: *const f32,
        stride: usize,
    ) {
        unsafe {
            let mut acc = [_mm256_setzero_ps(); V];
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(d.add(v * LANES));
            }
            for (&i, &s) in index.iter().zip(value) {
                let row = m.add(i as usize * stride);
                let s = _mm256_set1_ps(s);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(s, _mm256_loadu_ps(row.add(v * LANES)), *a);
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(d.add(v * LANES), *a);
            }
        }
    }

    /// Dot products of `src` with the first `d.len()` (at most `m.rows`) rows of `m`, four rows at
    /// a time, so every load of `src` serves four rows; the last partial vector is done in scalar.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots(d: &mut [f32], src: &[f32], m: &PaddedRows) {
        let rows = d.len().min(m.rows);
        assert!(src.len() <= m.stride && m.data.len() >= rows * m.stride);
        let mut j = 0;
        // SAFETY: rows j..j+R < m.rows; each row read covers [0, src.len()) inside m.data.
        unsafe {
            while j + 4 <= rows {
                let sums =
                    dot_rows::<4, 1>([src, src], m.data.as_ptr().add(j * m.stride), m.stride);
                d[j..j + 4]
                    .iter_mut()
                    .zip(sums[0])
                    .for_each(|(x, s)| *x += s);
                j += 4;
            }
            while j < rows {
                let sums =
                    dot_rows::<1, 1>([src, src], m.data.as_ptr().add(j * m.stride), m.stride);
                d[j] += sums[0][0];
                j += 1;
            }
        }
    }

    /// [`dots`] for two source rows (of equal length) at once.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots2(d: [&mut [f32]; 2], src: [&[f32]; 2], m: &PaddedRows) {
        let [d0, d1] = d;
        let rows = d0.len().min(d1.len()).min(m.rows);
        assert!(src[0].len() == src[1].len() && src[0].len() <= m.stride);
        assert!(m.data.len() >= rows * m.stride);
        let mut j = 0;
        // SAFETY: as in `dots`.
        unsafe {
            while j + 4 <= rows {
                let [s0, s1] = dot_rows::<4, 2>(src, m.data.as_ptr().add(j * m.stride), m.stride);
                d0[j..j + 4].iter_mut().zip(s0).for_each(|(x, s)| *x += s);
                d1[j..j + 4].iter_mut().zip(s1).for_each(|(x, s)| *x += s);
                j += 4;
            }
            while j < rows {
                let [s0, s1] = dot_rows::<1, 2>(src, m.data.as_ptr().add(j * m.stride), m.stride);
                d0[j] += s0[0];
                d1[j] += s1[0];
                j += 1;
            }
        }
    }

    /// Dot products of `S` sources with `R` consecutive rows of `m` (one accumulator each).
    #[inline(always)]
    unsafe fn dot_rows<const R: usize, const S: usize>(
        src: [&[f32]; 2],
        m: *const f32,
        stride: usize,
    ) -> [[f32; R]; S] {
        let n = src[0].len();
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); R]; S];
            let mut at = 0;
            while at + LANES <= n {
                let mut x = [_mm256_setzero_ps(); S];
                for (x, src) in x.iter_mut().zip(src) {
                    *x = _mm256_loadu_ps(src.as_ptr().add(at));
                }
                for r in 0..R {
                    let w = _mm256_loadu_ps(m.add(r * stride + at));
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        acc[r] = _mm256_fmadd_ps(x, w, acc[r]);
                    }
                }
                at += LANES;
            }
            let mut sums = [[0.0; R]; S];
            for t in 0..S {
                for r in 0..R {
                    let tail: f32 = (at..n).map(|i| src[t][i] * *m.add(r * stride + i)).sum();
                    sums[t][r] = horizontal_sum(acc[t][r]) + tail;
                }
            }
            sums
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}
