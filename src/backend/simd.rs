//! Vector loops compiled twice: for AVX2+FMA (chosen at run time when the CPU has them) and for
//! the baseline target, so one portable binary runs at full speed on modern x86-64.
//!
//! Rust does not fuse `a * b + c` into an FMA on its own (that would change rounding), so kernels
//! are generic over an [`Isa`] and call [`fmadd`], which is `mul_add` only where the instruction
//! exists (elsewhere `mul_add` would be a slow library call).
//!
//! Soundness: running an AVX2 instruction on a CPU without it is undefined behaviour, so a
//! kernel's AVX2 variant is not selected by a flag anyone can set but by a value of
//! [`Avx2Fma`], a zero-sized proof that only [`Avx2Fma::detect`] makes, after asking the CPU.
//! Every safe function here and in the kernels built on it can therefore run AVX2 only on a CPU
//! that has it; the `unsafe` AVX2 loops themselves stay private to their modules.

/// Defines `$name` that calls `$imp(Avx2Fma, ..)` through an AVX2+FMA entry point when the CPU
/// supports it, and `$imp(Scalar, ..)` otherwise.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $imp:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if let Some(isa) = $crate::backend::simd::Avx2Fma::detect() {
                #[target_feature(enable = "avx2,fma")]
                fn fast(isa: $crate::backend::simd::Avx2Fma, $($arg: $ty),*) {
                    $imp(isa, $($arg),*)
                }
                // SAFETY: `isa` proves that the CPU supports AVX2 and FMA.
                return unsafe { fast(isa, $($arg),*) };
            }
            $imp($crate::backend::simd::Scalar, $($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// The instructions a kernel variant may use, as a zero-sized value passed to it: [`Scalar`]
/// (the baseline target) or [`Avx2Fma`] (a proof that the CPU has AVX2 and FMA). Kernels are
/// generic over it, so each variant is compiled on its own, with no test at run time.
pub(crate) trait Isa: Copy {
    /// Whether multiply-adds are fused ([`fmadd`] is `mul_add`).
    const FMA: bool;
    /// The proof that AVX2 and FMA may run, if this variant carries one.
    fn avx2(self) -> Option<Avx2Fma>;
}

/// The baseline variant: separate multiply and add, no instruction beyond the target's own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalar;

impl Isa for Scalar {
    const FMA: bool = false;
    #[inline(always)]
    fn avx2(self) -> Option<Avx2Fma> {
        None
    }
}

/// Proof that this CPU has AVX2 and FMA: the private field lets only [`Avx2Fma::detect`] make
/// one, so code holding an `Avx2Fma` may run those instructions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma(());

impl Avx2Fma {
    /// The proof, if the CPU has AVX2 and FMA (the standard library caches the answer after
    /// the first call); never off x86-64.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Self(()));
        }
        None
    }
}

impl Isa for Avx2Fma {
    const FMA: bool = true;
    #[inline(always)]
    fn avx2(self) -> Option<Avx2Fma> {
        Some(self)
    }
}

/// `a * b + c`, fused when `I::FMA` (`mul_add` is exact wherever it runs; it is only slow
/// without the instruction).
#[inline(always)]
pub(crate) fn fmadd<I: Isa>(a: f32, b: f32, c: f32) -> f32 {
    if I::FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `y += sum_t coef[t] rows[t]` (each row at least as long as `y`), the terms added in order,
/// fused with [`Avx2Fma`]; with AVX2, up to eight terms per pass over `y` (one load and store of
/// `y` for all of them). The grouping does not change the result: each element sees the same
/// sequence of multiply-adds.
#[inline(always)]
pub(crate) fn axpy_rows<I: Isa>(isa: I, y: &mut [f32], coef: &[f32], rows: &[&[f32]]) {
    assert_eq!(coef.len(), rows.len(), "one coefficient per row");
    for row in rows {
        assert!(row.len() >= y.len(), "term shorter than the destination");
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(_proof) = isa.avx2() {
        // SAFETY: `_proof` shows that the CPU has AVX2 and FMA, and every row holds at least
        // y.len() floats (checked above).
        return unsafe { avx2::axpy_rows(y, coef, rows) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    for (i, y) in y.iter_mut().enumerate() {
        let mut acc = *y;
        for (&a, row) in coef.iter().zip(rows) {
            acc = fmadd::<I>(a, row[i], acc);
        }
        *y = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const LANES: usize = 8;

    /// [`super::axpy_rows`] in AVX2 vectors of eight floats.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and every row must hold at least `y.len()` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy_rows(y: &mut [f32], coef: &[f32], rows: &[&[f32]]) {
        let mut t = 0;
        while t < coef.len() {
            let (c, r) = (&coef[t..], &rows[t..]);
            // SAFETY: as for the caller; each arm passes at most c.len() terms.
            t += unsafe {
                match c.len() {
                    1 => pass::<1>(y, c, r),
                    2 => pass::<2>(y, c, r),
                    3 => pass::<3>(y, c, r),
                    4 => pass::<4>(y, c, r),
                    5 => pass::<5>(y, c, r),
                    6 => pass::<6>(y, c, r),
                    7 => pass::<7>(y, c, r),
                    _ => pass::<8>(y, c, r),
                }
            };
        }
    }

    /// The first `K` terms in one pass over `y`; returns `K`.
    ///
    /// # Safety
    /// As for [`axpy_rows`], and `coef` and `rows` must hold at least `K` entries.
    #[inline(always)]
    unsafe fn pass<const K: usize>(y: &mut [f32], coef: &[f32], rows: &[&[f32]]) -> usize {
        let (n, yp) = (y.len(), y.as_mut_ptr());
        // SAFETY: AVX2 and FMA are present (the caller's promise); t < K <= coef.len(), i < n
        // and every row holds at least n floats.
        unsafe {
            let mut a = [_mm256_setzero_ps(); K];
            let mut r = [std::ptr::null::<f32>(); K];
            for t in 0..K {
                a[t] = _mm256_set1_ps(coef[t]);
                r[t] = rows[t].as_ptr();
            }
            let mut i = 0;
            while i + LANES <= n {
                let mut acc = _mm256_loadu_ps(yp.add(i));
                for t in 0..K {
                    acc = _mm256_fmadd_ps(a[t], _mm256_loadu_ps(r[t].add(i)), acc);
                }
                _mm256_storeu_ps(yp.add(i), acc);
                i += LANES;
            }
            if i < n {
                // The last partial vector under a mask (masked-off lanes are never touched).
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((n - i) as i32), lane);
                let mut acc = _mm256_maskload_ps(yp.add(i), mask);
                for t in 0..K {
                    acc = _mm256_fmadd_ps(a[t], _mm256_maskload_ps(r[t].add(i), mask), acc);
                }
                _mm256_maskstore_ps(yp.add(i), mask, acc);
            }
        }
        K
    }
}

/// Hints the CPU to bring `data` into its L2 cache ahead of use (a no-op off x86-64): the next
/// mini-batch's images are scattered over a data set larger than the caches.
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        // SAFETY: SSE is part of every x86-64; a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The AVX2+FMA proof for a test that compares the variants, or `None` on a CPU without them:
/// the test then says it skipped, unless `EQPROP_REQUIRE_AVX2=1`, which makes it fail instead
/// (for machines that are known to have AVX2, so that a test cannot pass by skipping).
#[cfg(test)]
pub(crate) fn avx2_or_skip(test: &str) -> Option<Avx2Fma> {
    let required = std::env::var("EQPROP_REQUIRE_AVX2").is_ok_and(|v| v == "1");
    skip_unless_required(Avx2Fma::detect(), required, test)
}

/// `found`, or `None` after saying that `test` skipped; a panic when `required`.
#[cfg(test)]
fn skip_unless_required<T>(found: Option<T>, required: bool, test: &str) -> Option<T> {
    if found.is_none() {
        assert!(
            !required,
            "{test}: EQPROP_REQUIRE_AVX2=1, but this CPU lacks AVX2 or FMA"
        );
        eprintln!("{test}: skipped, this CPU lacks AVX2 or FMA");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1, 1] with every fourth one exactly zero.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
                if h.is_multiple_of(4) {
                    0.0
                } else {
                    (h % 2001) as f32 / 1000.0 - 1.0
                }
            })
            .collect()
    }

    /// `y += sum_t coef[t] rows[t]` one term after another, each multiply-add fused or not: the
    /// arithmetic each variant of [`axpy_rows`] promises, element by element.
    fn reference(y: &[f32], coef: &[f32], rows: &[Vec<f32>], fused: bool) -> Vec<f32> {
        let mut y = y.to_vec();
        for (&a, row) in coef.iter().zip(rows) {
            for (x, &r) in y.iter_mut().zip(row) {
                *x = if fused { a.mul_add(r, *x) } else { a * r + *x };
            }
        }
        y
    }

    /// Every length around the vector width (the masked tail) and every term count up to two
    /// passes of eight, with rows longer than `y`.
    fn cases() -> impl Iterator<Item = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>)> {
        let lengths = (0..=17).chain([31, 40, 500]);
        lengths.flat_map(|n| {
            (0..=17).map(move |terms| {
                let seed = (n * 31 + terms) as u32;
                let rows = (0..terms).map(|t| values(n + t % 3, seed + 100 + t as u32));
                (values(n, seed), values(terms, seed + 50), rows.collect())
            })
        })
    }

    fn run<I: Isa>(isa: I, y: &[f32], coef: &[f32], rows: &[Vec<f32>]) -> Vec<f32> {
        let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let mut y = y.to_vec();
        axpy_rows(isa, &mut y, coef, &rows);
        y
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The scalar variant, on every machine (also one with AVX2): bit for bit the unfused
    /// multiply-adds in order.
    #[test]
    fn scalar_axpy_rows_is_the_unfused_sum_in_order() {
        for (y, coef, rows) in cases() {
            let want = reference(&y, &coef, &rows, false);
            assert_eq!(bits(&run(Scalar, &y, &coef, &rows)), bits(&want));
        }
    }

    /// The AVX2 variant: bit for bit the fused multiply-adds in order (eight terms per pass
    /// change nothing); against the scalar variant within the rounding that fusing saves, at
    /// most one half ulp of each product per term: `|d| <= terms * eps * (|y| + sum |c r|)`.
    #[test]
    fn avx2_axpy_rows_is_the_fused_sum_in_order_and_near_the_scalar() {
        let Some(avx) = avx2_or_skip("avx2_axpy_rows") else {
            return;
        };
        for (y, coef, rows) in cases() {
            let got = run(avx, &y, &coef, &rows);
            assert_eq!(bits(&got), bits(&reference(&y, &coef, &rows, true)));
            let scalar = run(Scalar, &y, &coef, &rows);
            for (i, (a, b)) in got.iter().zip(&scalar).enumerate() {
                let size = y[i].abs()
                    + coef
                        .iter()
                        .zip(&rows)
                        .map(|(c, r)| (c * r[i]).abs())
                        .sum::<f32>();
                let bound = coef.len() as f32 * f32::EPSILON * size;
                assert!(
                    (a - b).abs() <= bound,
                    "{} terms, [{i}]: {a} vs {b}",
                    coef.len()
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "EQPROP_REQUIRE_AVX2=1")]
    fn a_required_avx2_fails_rather_than_skips() {
        skip_unless_required(None::<Avx2Fma>, true, "test");
    }

    #[test]
    fn a_missing_avx2_skips_unless_required() {
        assert!(skip_unless_required(None::<Avx2Fma>, false, "test").is_none());
    }
}
