//! Fused relaxation: every step of a phase for one sample at a time, for networks whose
//! free-to-free couplings are small enough to stay in cache (784-500-10: `W_2` is 20 KB).
//!
//! Each coupling term is computed in "rows form", `d += sum_i s_i M[i, :]`, over the non-zero
//! source units only (hard-sigmoid units often rest exactly at 0), with `M` stored row-major and
//! padded to whole 8-float vectors. The lower term of layer `k` uses `M = W_k`, the upper term
//! `M = W_{k+1}^T`; [`FusedCouplings::prepare`] lays both out once per batch.

use super::cpu::step_row;
use super::simd::{Avx2Fma, Isa, fmadd, simd_dispatch};
use crate::tensor::Matrix;

/// Floats per SIMD vector; padded widths are multiples of it.
pub(crate) const LANES: usize = 8;

/// `n` rounded up to whole vectors.
fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// A row-major matrix whose rows are padded with zeros to whole vectors. Invariant (the AVX2
/// kernels rely on it, so the fields are private): `data.len() == rows * stride`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PaddedRows {
    rows: usize,
    stride: usize,
    data: Vec<f32>,
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
        let stride = self.stride;
        if transpose {
            // Row j of the layout is column j of `m`, written eight entries at a time from
            // eight rows of `m` (a small block that stays in L1).
            let source = m.as_slice();
            let blocks = source.chunks_exact(LANES * rows.max(1));
            let done = blocks.len() * LANES;
            for (b, block) in blocks.enumerate() {
                for j in 0..rows {
                    let dst = &mut self.data[j * stride + b * LANES..][..LANES];
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = block[k * rows + j];
                    }
                }
            }
            for i in done..cols {
                for j in 0..rows {
                    self.data[j * stride + i] = source[i * rows + j];
                }
            }
        } else {
            for (src, dst) in m
                .as_slice()
                .chunks_exact(cols.max(1))
                .zip(self.data.chunks_exact_mut(stride.max(1)))
            {
                dst[..cols].copy_from_slice(src);
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
pub(crate) struct FusedCouplings {
    down: Vec<PaddedRows>,
    up: Vec<PaddedRows>,
}

impl FusedCouplings {
    /// Lays out the couplings between free layers (`weights[k-1] = W_k`).
    pub(crate) fn prepare(&mut self, weights: &[Matrix], clamped: &[bool]) {
        let layers = clamped.len();
        self.down.resize_with(layers, PaddedRows::default);
        self.up.resize_with(layers, PaddedRows::default);
        for k in 1..layers {
            if !clamped[k - 1] && !clamped[k] {
                let w = &weights[k - 1];
                let (down, up) = (is_narrow(w.cols()), !is_narrow(w.rows()));
                self.down[k].fill(w, down);
                if up == down {
                    // Both terms read the same layout (784-500-10: W_2^T for both).
                    self.up[k - 1].clone_from(&self.down[k]);
                } else {
                    self.up[k - 1].fill(w, up);
                }
            }
        }
    }
}

/// Scratch for a pair of samples: two padded drive rows per layer (`2 k` and `2 k + 1`) and the
/// compacted non-zero sources.
#[derive(Clone, Debug, Default)]
pub(crate) struct FusedScratch {
    drive: Vec<Vec<f32>>,
    index: Vec<u32>,
    value: Vec<f32>,
    /// The second source list of a layer updated by [`drive_step_wide`].
    index2: Vec<u32>,
    value2: Vec<f32>,
}

impl FusedScratch {
    pub(crate) fn new(sizes: &[usize]) -> Self {
        let widest = padded(sizes.iter().copied().max().unwrap_or(0));
        Self {
            drive: sizes
                .iter()
                .flat_map(|&n| [vec![0.0; padded(n)], vec![0.0; padded(n)]])
                .collect(),
            index: vec![0; widest],
            value: vec![0.0; widest],
            index2: vec![0; widest],
            value2: vec![0.0; widest],
        }
    }

    /// Both drive rows of layer `k`.
    fn two_drives(&mut self, k: usize) -> [&mut [f32]; 2] {
        let (a, b) = self.drive[2 * k..2 * k + 2].split_at_mut(1);
        [&mut a[0][..], &mut b[0][..]]
    }
}

/// A relaxation phase for [`relax_fused`].
pub(crate) struct FusedPhase<'a> {
    pub(crate) clamped: &'a [bool],
    /// Per layer, `batch x units`: bias plus the drive of clamped neighbours.
    pub(crate) fixed: &'a [Matrix],
    pub(crate) couplings: &'a FusedCouplings,
    pub(crate) steps: usize,
    pub(crate) eps: f32,
    /// `(layer, beta, target)` of the nudge, if any.
    pub(crate) nudge: Option<(usize, f32, &'a Matrix)>,
    /// The samples that relax (in increasing order); `None`: all of them. The others keep
    /// their states.
    pub(crate) rows: Option<&'a [usize]>,
}

simd_dispatch! {
    /// Relaxes every sample of a chunk through all steps of a phase, one sample at a time, so its
    /// states and the couplings stay in L1/L2 cache.
    pub(crate) fn relax_fused => relax_fused_impl(phase: &FusedPhase, states: &mut [Matrix], scratch: &mut FusedScratch)
}

#[inline(always)]
fn relax_fused_impl<I: Isa>(
    isa: I,
    ph: &FusedPhase,
    states: &mut [Matrix],
    scratch: &mut FusedScratch,
) {
    relax_pairs(isa, ph, states, scratch, isa.avx2());
}

/// The body of [`relax_fused`]. With `fuse_wide` (an AVX2 proof: the one-pass step exists in
/// AVX2 only), a wide layer whose free neighbours are all narrow takes drive and step in one
/// pass (its drive never leaves the registers); this is exact because the narrow neighbours'
/// drives are computed first, from the old states, and only then does any state change.
#[inline(always)]
fn relax_pairs<I: Isa>(
    isa: I,
    ph: &FusedPhase,
    states: &mut [Matrix],
    scratch: &mut FusedScratch,
    fuse_wide: Option<Avx2Fma>,
) {
    let layers = states.len();
    let free = || (0..layers).filter(|&k| !ph.clamped[k]);
    let sizes = |k: usize| states[k].cols();
    let fused: u64 = free()
        .filter(|&k| fuse_wide.is_some() && k < 64 && one_pass(ph.clamped, k, sizes))
        .fold(0, |bits, k| bits | 1 << k);
    let is_fused = |k: usize| k < 64 && fused & (1 << k) != 0;
    let active = ph.rows.map_or(states[0].rows(), <[usize]>::len);
    let row = |i: usize| ph.rows.map_or(i, |rows| rows[i]);
    // Samples go in pairs: the dot products of a narrow layer then read each coupling once for
    // both samples.
    for first in (0..active).step_by(2) {
        let pair = [row(first), row((first + 1).min(active - 1))];
        let count = if first + 1 < active { 2 } else { 1 };
        for _ in 0..ph.steps {
            for k in free().filter(|&k| !is_fused(k)) {
                drive_layer(isa, ph, states, scratch, k, &pair[..count]);
            }
            if let Some(avx) = fuse_wide {
                for k in free().filter(|&k| is_fused(k)) {
                    for &r in &pair[..count] {
                        drive_step_wide(avx, ph, states, scratch, k, r);
                    }
                }
            }
            for k in free().filter(|&k| !is_fused(k)) {
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

/// Whether free layer `k` can be driven and stepped in one pass: it is wide and every free
/// neighbour is narrow (so no neighbour needs its old state after it has moved).
fn one_pass(clamped: &[bool], k: usize, sizes: impl Fn(usize) -> usize) -> bool {
    let narrow_or_clamped = |j: usize| clamped[j] || is_narrow(sizes(j));
    !is_narrow(sizes(k))
        && (k == 0 || narrow_or_clamped(k - 1))
        && (k + 1 >= clamped.len() || narrow_or_clamped(k + 1))
}

/// Drive and step of the wide layer `k` for sample `r` in one pass (AVX2 only, hence the
/// proof `_avx`): the non-zero sources of both neighbours are compacted, then every block of
/// units accumulates its drive in registers and steps, as [`step_row`] does, without storing
/// the drive.
#[inline(always)]
fn drive_step_wide(
    _avx: Avx2Fma,
    ph: &FusedPhase,
    states: &mut [Matrix],
    scratch: &mut FusedScratch,
    k: usize,
    r: usize,
) {
    let layers = states.len();
    let free = |j: usize| j < layers && !ph.clamped[j];
    let mut lists = [(0, None), (0, None)];
    if k > 0 && free(k - 1) {
        let n = compact(states[k - 1].row(r), &mut scratch.index, &mut scratch.value);
        lists[0] = (n, Some(&ph.couplings.down[k]));
    }
    if free(k + 1) {
        let n = compact(
            states[k + 1].row(r),
            &mut scratch.index2,
            &mut scratch.value2,
        );
        lists[1] = (n, Some(&ph.couplings.up[k]));
    }
    let sources = [
        (
            &scratch.index[..lists[0].0],
            &scratch.value[..lists[0].0],
            lists[0].1,
        ),
        (
            &scratch.index2[..lists[1].0],
            &scratch.value2[..lists[1].0],
            lists[1].1,
        ),
    ];
    let nudge = ph.nudge.filter(|n| n.0 == k).map(|(_, b, t)| (b, t.row(r)));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_avx` proves that the CPU has AVX2 and FMA; drive_step checks the shapes.
    unsafe {
        avx2::drive_step(
            ph.fixed[k].row(r),
            &sources,
            states[k].row_mut(r),
            ph.eps,
            nudge,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no AVX2 proof off x86-64: {_avx:?} {sources:?} {nudge:?}");
}

/// Computes the drive of layer `k` for the samples `rows` (one or two) into their scratch rows.
#[inline(always)]
fn drive_layer<I: Isa>(
    isa: I,
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
                [_, r1] => dots2(isa, [d0, d1], [src0, states[source].row(*r1)], m),
                _ => dots(isa, d0, src0, m),
            }
        } else {
            for (slot, &r) in rows.iter().enumerate() {
                let mut d = std::mem::take(&mut scratch.drive[2 * k + slot]);
                accumulate(isa, &mut d, states[source].row(r), m, scratch);
                scratch.drive[2 * k + slot] = d;
            }
        }
    }
}

/// `d += src M` in rows form, over the non-zero sources only (compacted first, without branches).
#[inline(always)]
fn accumulate<I: Isa>(
    isa: I,
    d: &mut [f32],
    src: &[f32],
    m: &PaddedRows,
    scratch: &mut FusedScratch,
) {
    let count = compact(src, &mut scratch.index, &mut scratch.value);
    rows_accumulate_sparse(isa, d, &scratch.index[..count], &scratch.value[..count], m);
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
fn rows_accumulate_sparse<I: Isa>(
    isa: I,
    d: &mut [f32],
    index: &[u32],
    value: &[f32],
    m: &PaddedRows,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(_proof) = isa.avx2() {
        // SAFETY: `_proof` shows that the CPU has AVX2 and FMA; the kernel checks the shapes.
        return unsafe { avx2::rows_accumulate_sparse(d, index, value, m) };
    }
    for (&i, &v) in index.iter().zip(value) {
        let row = &m.data[i as usize * m.stride..][..d.len()];
        for (x, &w) in d.iter_mut().zip(row) {
            *x = fmadd::<I>(v, w, *x);
        }
    }
}

/// `d[j] += src . m[j, :]` for the rows `j < d.len()` of `m` (`src` no longer than a row).
#[inline(always)]
fn dots<I: Isa>(isa: I, d: &mut [f32], src: &[f32], m: &PaddedRows) {
    #[cfg(target_arch = "x86_64")]
    if let Some(_proof) = isa.avx2() {
        // SAFETY: `_proof` shows that the CPU has AVX2 and FMA; the kernel checks the shapes.
        return unsafe { avx2::dots(d, src, m) };
    }
    for (j, x) in d.iter_mut().enumerate().take(m.rows) {
        let row = &m.data[j * m.stride..j * m.stride + src.len()];
        *x += row
            .iter()
            .zip(src)
            .fold(0.0, |acc, (&w, &s)| fmadd::<I>(w, s, acc));
    }
}

/// [`dots`] for two samples at once: each row of `m` is read once for both.
#[inline(always)]
fn dots2<I: Isa>(isa: I, d: [&mut [f32]; 2], src: [&[f32]; 2], m: &PaddedRows) {
    #[cfg(target_arch = "x86_64")]
    if let Some(_proof) = isa.avx2() {
        // SAFETY: `_proof` shows that the CPU has AVX2 and FMA; the kernel checks the shapes.
        return unsafe { avx2::dots2(d, src, m) };
    }
    let [d0, d1] = d;
    dots(isa, d0, src[0], m);
    dots(isa, d1, src[1], m);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LANES, PaddedRows};
    use std::arch::x86_64::*;

    /// `d += sum_t value[t] m[index[t], :]`: blocks of up to 4 vectors of `d` stay in registers
    /// while the sources stream by (shapes checked: a bad one panics).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_accumulate_sparse(
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
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `d` must be valid for `V * LANES` floats, and for every
    /// `i` in `index`, `m + i * stride` for `V * LANES` floats.
    #[inline(always)]
    unsafe fn block<const V: usize>(
        d: *mut f32,
        index: &[u32],
        value: &[f32],
        m: *const f32,
        stride: usize,
    ) {
        // SAFETY: the caller's promise.
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

    /// Non-zero sources `(index, value)` and the padded couplings they drive through.
    pub(super) type Sources<'a> = [(&'a [u32], &'a [f32], Option<&'a PaddedRows>); 2];

    /// `s <- clamp(s + eps (d - s) [+ eps beta (t - s)], 0, 1)` with
    /// `d = fixed + sum_t value[t] m[index[t], :]` over both source lists, four vectors of `d`
    /// at a time in registers; the same operations in the same order as [`rows_accumulate_sparse`]
    /// followed by `step_row`, so the result is bit for bit the same (shapes checked: a bad one
    /// panics).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn drive_step(
        fixed: &[f32],
        sources: &Sources,
        s: &mut [f32],
        eps: f32,
        nudge: Option<(f32, &[f32])>,
    ) {
        let n = s.len();
        assert!(fixed.len() == n && nudge.is_none_or(|(_, t)| t.len() == n));
        for &(index, value, m) in sources {
            assert_eq!(index.len(), value.len());
            if let Some(m) = m {
                assert!(m.stride >= n && index.iter().all(|&i| (i as usize) < m.rows));
            }
        }
        let vectors = n / LANES;
        let mut start = 0;
        while start < vectors * LANES {
            let v = ((vectors * LANES - start) / LANES).min(4);
            // SAFETY: columns start..start + v * LANES <= n lie inside every row touched.
            unsafe {
                match v {
                    4 => step_block::<4>(fixed, sources, s, eps, nudge, start),
                    3 => step_block::<3>(fixed, sources, s, eps, nudge, start),
                    2 => step_block::<2>(fixed, sources, s, eps, nudge, start),
                    _ => step_block::<1>(fixed, sources, s, eps, nudge, start),
                }
            }
            start += v * LANES;
        }
        for j in start..n {
            let mut d = fixed[j];
            for &(index, value, m) in sources {
                let Some(m) = m else { continue };
                for (&i, &x) in index.iter().zip(value) {
                    d = x.mul_add(m.data[i as usize * m.stride + j], d);
                }
            }
            super::step_row(
                &mut s[j..j + 1],
                &[d],
                eps,
                nudge.map(|(b, t)| (b, &t[j..j + 1])),
            );
        }
    }

    /// [`drive_step`] for the `V` vectors of units from `start`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `fixed`, `s`, the nudge's target and, for every source
    /// index, its row of `m` from `start` must hold `start + V * LANES` floats (as
    /// [`drive_step`] checks).
    #[inline(always)]
    unsafe fn step_block<const V: usize>(
        fixed: &[f32],
        sources: &Sources,
        s: &mut [f32],
        eps: f32,
        nudge: Option<(f32, &[f32])>,
        start: usize,
    ) {
        // SAFETY: the caller's promise.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); V];
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(fixed.as_ptr().add(start + v * LANES));
            }
            for &(index, value, m) in sources {
                let Some(m) = m else { continue };
                for (&i, &x) in index.iter().zip(value) {
                    let row = m.data.as_ptr().add(i as usize * m.stride + start);
                    let x = _mm256_set1_ps(x);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.add(v * LANES)), *a);
                    }
                }
            }
            let (zero, one, eps) = (
                _mm256_setzero_ps(),
                _mm256_set1_ps(1.0),
                _mm256_set1_ps(eps),
            );
            for (v, &d) in acc.iter().enumerate() {
                let at = s.as_mut_ptr().add(start + v * LANES);
                let x = _mm256_loadu_ps(at);
                let mut pull = _mm256_sub_ps(d, x);
                if let Some((beta, t)) = nudge {
                    let t = _mm256_loadu_ps(t.as_ptr().add(start + v * LANES));
                    let nudge = _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_sub_ps(t, x));
                    pull = _mm256_add_ps(pull, nudge);
                }
                let moved = _mm256_add_ps(x, _mm256_mul_ps(eps, pull));
                // `max(0, x)` then `min(1, x)` in this operand order keep NaN and -0 as `f32::clamp`.
                _mm256_storeu_ps(at, _mm256_min_ps(one, _mm256_max_ps(zero, moved)));
            }
        }
    }

    /// Dot products of `src` with the first `d.len()` (at most `m.rows`) rows of `m`, four rows at
    /// a time, so every load of `src` serves four rows; the last partial vector is done in scalar
    /// (shapes checked: a bad one panics).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots(d: &mut [f32], src: &[f32], m: &PaddedRows) {
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
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots2(d: [&mut [f32]; 2], src: [&[f32]; 2], m: &PaddedRows) {
        let [d0, d1] = d;
        let rows = d0.len().min(d1.len()).min(m.rows);
        assert!(src[0].len() == src[1].len() && src[0].len() <= m.stride);
        assert!(m.data.len() >= rows * m.stride);
        let mut j = 0;
        // SAFETY: as in `dots`.
        // Five rows at a time (ten independent FMA chains cover the FMA latency), then the rest
        // in one group.
        unsafe {
            let at = |j: usize| m.data.as_ptr().add(j * m.stride);
            while j + 5 <= rows {
                let sums = dot_rows::<5, 2>(src, at(j), m.stride);
                add_sums(&mut d0[j..], &mut d1[j..], sums);
                j += 5;
            }
            match rows - j {
                4 => add_sums(
                    &mut d0[j..],
                    &mut d1[j..],
                    dot_rows::<4, 2>(src, at(j), m.stride),
                ),
                3 => add_sums(
                    &mut d0[j..],
                    &mut d1[j..],
                    dot_rows::<3, 2>(src, at(j), m.stride),
                ),
                2 => add_sums(
                    &mut d0[j..],
                    &mut d1[j..],
                    dot_rows::<2, 2>(src, at(j), m.stride),
                ),
                1 => add_sums(
                    &mut d0[j..],
                    &mut d1[j..],
                    dot_rows::<1, 2>(src, at(j), m.stride),
                ),
                _ => {}
            }
        }
    }

    /// `d0[r] += sums[0][r]`, `d1[r] += sums[1][r]` for the `R` rows of a group.
    #[inline(always)]
    fn add_sums<const R: usize>(d0: &mut [f32], d1: &mut [f32], sums: [[f32; R]; 2]) {
        d0[..R].iter_mut().zip(sums[0]).for_each(|(x, s)| *x += s);
        d1[..R].iter_mut().zip(sums[1]).for_each(|(x, s)| *x += s);
    }

    /// Dot products of `S` sources with `R` consecutive rows of `m` (one accumulator each).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the first `S` sources must hold `src[0].len()` floats,
    /// and `m + r * stride` must be valid for that many floats for every `r < R`.
    #[inline(always)]
    unsafe fn dot_rows<const R: usize, const S: usize>(
        src: [&[f32]; 2],
        m: *const f32,
        stride: usize,
    ) -> [[f32; R]; S] {
        let n = src[0].len();
        // SAFETY: the caller's promise.
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

    /// The sum of the eight lanes of `v`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::simd::{Scalar, avx2_or_skip};

    fn filled(rows: usize, cols: usize, seed: u32, scale: f32) -> Matrix {
        let data = (0..rows * cols)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .map(|v| v * scale)
            .collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    /// A network of `sizes` with its input clamped, and a batch of five samples: the layers'
    /// fixed drives, a target for the output and starting states in `[0, 1)` (many at 0).
    struct Setup {
        sizes: Vec<usize>,
        clamped: Vec<bool>,
        fixed: Vec<Matrix>,
        target: Matrix,
        couplings: FusedCouplings,
        start: Vec<Matrix>,
    }

    impl Setup {
        fn new(sizes: &[usize]) -> Self {
            let (layers, batch) = (sizes.len(), 5);
            let weights: Vec<Matrix> = sizes
                .windows(2)
                .enumerate()
                .map(|(k, w)| filled(w[0], w[1], 7 + k as u32, 0.4))
                .collect();
            let clamped: Vec<bool> = (0..layers).map(|k| k == 0).collect();
            let mut couplings = FusedCouplings::default();
            couplings.prepare(&weights, &clamped);
            let states = |seed: u32| {
                let state = |(k, &n): (usize, &usize)| {
                    let mut m = filled(batch, n, seed + k as u32, 1.0);
                    m.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
                    m
                };
                sizes.iter().enumerate().map(state).collect()
            };
            Self {
                sizes: sizes.to_vec(),
                clamped,
                fixed: (0..layers)
                    .map(|k| filled(batch, sizes[k], 100 + k as u32, 0.8))
                    .collect(),
                target: filled(batch, sizes[layers - 1], 55, 1.0),
                couplings,
                start: states(200),
            }
        }

        /// The free phase, a phase nudged at the output, and one that relaxes only some
        /// samples (an odd count, so the last pair is a single sample).
        fn phases(&self) -> Vec<FusedPhase<'_>> {
            let nudges = [None, Some((self.sizes.len() - 1, 0.7, &self.target))];
            let rows: [Option<&[usize]>; 2] = [None, Some(&[0, 2, 3])];
            let phase = |(nudge, rows)| FusedPhase {
                clamped: &self.clamped,
                fixed: &self.fixed,
                couplings: &self.couplings,
                steps: 6,
                // Not a power of two, so a fused multiply-add would round differently.
                eps: 0.3,
                nudge,
                rows,
            };
            let cases = [
                (nudges[0], rows[0]),
                (nudges[1], rows[0]),
                (nudges[1], rows[1]),
            ];
            cases.into_iter().map(phase).collect()
        }

        /// The states after `ph`, relaxed by the variant `isa` (one-pass wide steps as asked).
        fn run<I: Isa>(&self, ph: &FusedPhase, isa: I, fuse: Option<Avx2Fma>) -> Vec<Matrix> {
            let mut states = self.start.clone();
            let mut scratch = FusedScratch::new(&self.sizes);
            relax_pairs(isa, ph, &mut states, &mut scratch, fuse);
            assert_ne!(
                states[1], self.start[1],
                "{:?}: the states moved",
                self.sizes
            );
            states
        }
    }

    /// Wide and narrow layers, tails past the last whole vector, deep and shallow: every path
    /// of the kernel (dots, paired dots, rows form, one-pass wide steps).
    const SIZES: [&[usize]; 5] = [
        &[30, 37, 10],
        &[12, 41],
        &[20, 40, 10, 7],
        &[9, 5, 3],
        &[6, 17, 33, 9],
    ];

    fn bits(states: &[Matrix]) -> Vec<u32> {
        states
            .iter()
            .flat_map(|m| m.as_slice().iter().map(|v| v.to_bits()))
            .collect()
    }

    /// The one-pass drive-and-step of wide layers changes nothing: same bits as computing the
    /// drive first, for a wide hidden layer (with a tail of units past the last whole vector)
    /// and for a wide nudged output layer.
    #[test]
    fn one_pass_wide_step_is_bit_exact() {
        let Some(avx) = avx2_or_skip("one_pass_wide_step_is_bit_exact") else {
            return;
        };
        for sizes in SIZES {
            let setup = Setup::new(sizes);
            for ph in setup.phases() {
                let (two_pass, one_pass) =
                    (setup.run(&ph, avx, None), setup.run(&ph, avx, Some(avx)));
                assert_eq!(
                    bits(&two_pass),
                    bits(&one_pass),
                    "{sizes:?} nudge {:?}",
                    ph.nudge.map(|n| n.0)
                );
            }
        }
    }

    /// The scalar and the AVX2 relaxations agree, on every machine that has AVX2 (the scalar
    /// variant is run even there). Not bit for bit: AVX2 fuses each multiply-add (one rounding
    /// instead of two) and sums a dot product in eight lanes; over six steps of states in
    /// `[0, 1]` with drives of a few dozen terms below 1, the states differ by less than 1e-5
    /// (measured: at most 2e-7).
    #[test]
    fn scalar_and_avx2_relaxations_agree() {
        let Some(avx) = avx2_or_skip("scalar_and_avx2_relaxations_agree") else {
            return;
        };
        for sizes in SIZES {
            let setup = Setup::new(sizes);
            for ph in setup.phases() {
                let scalar = setup.run(&ph, Scalar, None);
                let fast = setup.run(&ph, avx, Some(avx));
                for (k, (a, b)) in scalar.iter().zip(&fast).enumerate() {
                    for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                        assert!((x - y).abs() < 1e-5, "{sizes:?} layer {k}: {x} vs {y}");
                    }
                }
                if let Some(rows) = ph.rows {
                    // The samples left out keep their states in both.
                    for r in (0..5).filter(|r| !rows.contains(r)) {
                        assert_eq!(fast[1].row(r), setup.start[1].row(r));
                        assert_eq!(scalar[1].row(r), setup.start[1].row(r));
                    }
                }
            }
        }
    }

    /// The scalar relaxation runs on every machine: against a plain reference, one
    /// synchronous step at a time (drives from the old states of every layer, then
    /// `step_row`), bit for bit, since it too adds each source's terms in order unfused.
    #[test]
    fn scalar_relaxation_is_the_plain_synchronous_step() {
        for sizes in SIZES {
            let setup = Setup::new(sizes);
            let weights: Vec<Matrix> = sizes
                .windows(2)
                .enumerate()
                .map(|(k, w)| filled(w[0], w[1], 7 + k as u32, 0.4))
                .collect();
            for ph in setup.phases() {
                let got = setup.run(&ph, Scalar, None);
                let want = plain_relaxation(&setup, &weights, &ph);
                assert_eq!(bits(&got), bits(&want), "{sizes:?}");
            }
        }
    }

    /// The reference for [`scalar_relaxation_is_the_plain_synchronous_step`]: a wide layer
    /// (more than `NARROW` units) adds its sources' rows one source unit after another, the
    /// lower neighbour first; a narrow one adds a dot product per neighbour, each summed in
    /// order from 0.
    fn plain_relaxation(setup: &Setup, weights: &[Matrix], ph: &FusedPhase) -> Vec<Matrix> {
        let mut states = setup.start.clone();
        let layers = states.len();
        let rows: Vec<usize> = ph.rows.map_or((0..5).collect(), <[usize]>::to_vec);
        for &r in &rows {
            for _ in 0..ph.steps {
                let old: Vec<Vec<f32>> = states.iter().map(|m| m.row(r).to_vec()).collect();
                for k in (1..layers).filter(|&k| !ph.clamped[k]) {
                    let n = old[k].len();
                    let mut d = ph.fixed[k].row(r).to_vec();
                    let below = (k > 0 && !ph.clamped[k - 1])
                        .then(|| (&old[k - 1], &weights[k - 1], false));
                    let above = (k + 1 < layers).then(|| (&old[k + 1], &weights[k], true));
                    for (src, w, up) in [below, above].into_iter().flatten() {
                        // Coupling between unit i of the source and j of layer k.
                        let at = |i: usize, j: usize| if up { w.get(j, i) } else { w.get(i, j) };
                        if is_narrow(n) {
                            for (j, x) in d.iter_mut().enumerate() {
                                *x += src
                                    .iter()
                                    .enumerate()
                                    .fold(0.0, |acc, (i, &s)| at(i, j) * s + acc);
                            }
                        } else {
                            for (i, &s) in src.iter().enumerate().filter(|(_, s)| **s != 0.0) {
                                d.iter_mut()
                                    .enumerate()
                                    .for_each(|(j, x)| *x += s * at(i, j));
                            }
                        }
                    }
                    let nudge = ph.nudge.filter(|n| n.0 == k).map(|(_, b, t)| (b, t.row(r)));
                    step_row(states[k].row_mut(r), &d, ph.eps, nudge);
                }
            }
        }
        states
    }

    /// [`relax_fused`] runs the variant this CPU supports: bit for bit the AVX2 one where the CPU
    /// has AVX2 and FMA, the scalar one elsewhere.
    #[test]
    fn dispatch_runs_the_variant_the_cpu_supports() {
        for sizes in SIZES {
            let setup = Setup::new(sizes);
            for ph in setup.phases() {
                let want = match crate::backend::simd::Avx2Fma::detect() {
                    Some(avx) => setup.run(&ph, avx, Some(avx)),
                    None => setup.run(&ph, Scalar, None),
                };
                let mut states = setup.start.clone();
                relax_fused(&ph, &mut states, &mut FusedScratch::new(sizes));
                assert_eq!(bits(&states), bits(&want), "{sizes:?}");
            }
        }
    }
}
