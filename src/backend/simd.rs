//! Vector loops compiled twice: for AVX2+FMA (chosen at run time when the CPU has them) and for
//! the baseline target, so one portable binary runs at full speed on modern x86-64.
//!
//! Rust does not fuse `a * b + c` into an FMA on its own (that would change rounding), so kernels
//! are generic over `const FMA: bool` and call [`fmadd`], which is `mul_add` only where the
//! instruction exists (elsewhere `mul_add` would be a slow library call).

/// Defines `$name` that calls `$imp::<true>` through an AVX2+FMA entry point when the CPU
/// supports it, and `$imp::<false>` otherwise.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $imp:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if $crate::backend::simd::has_avx2_fma() {
                    #[target_feature(enable = "avx2,fma")]
                    fn fast($($arg: $ty),*) {
                        $imp::<true>($($arg),*)
                    }
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { fast($($arg),*) };
                }
            }
            $imp::<false>($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Whether this CPU has AVX2 and FMA (cached by the standard library after the first call).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `a * b + c`, fused when `FMA`.
#[inline(always)]
pub fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `y += sum_t coef[t] rows[t]` (each row at least as long as `y`), the terms added in order,
/// fused when `FMA`; with AVX2, up to eight terms per pass over `y` (one load and store of `y`
/// for all of them). The grouping does not change the result: each element sees the same
/// sequence of multiply-adds.
#[inline(always)]
pub fn axpy_rows<const FMA: bool>(y: &mut [f32], coef: &[f32], rows: &[&[f32]]) {
    assert_eq!(coef.len(), rows.len(), "one coefficient per row");
    for row in rows {
        assert!(row.len() >= y.len(), "term shorter than the destination");
    }
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA is only true on the AVX2+FMA path chosen by `simd_dispatch`, and every row
        // holds at least y.len() floats (checked above).
        return unsafe { avx2::axpy_rows(y, coef, rows) };
    }
    for (i, y) in y.iter_mut().enumerate() {
        let mut acc = *y;
        for (&a, row) in coef.iter().zip(rows) {
            acc = fmadd::<FMA>(a, row[i], acc);
        }
        *y = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const LANES: usize = 8;

    /// # Safety
    /// AVX2 and FMA must be present; every row must hold at least `y.len()` floats.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_rows(y: &mut [f32], coef: &[f32], rows: &[&[f32]]) {
        let mut t = 0;
        while t < coef.len() {
            let (c, r) = (&coef[t..], &rows[t..]);
            // SAFETY: as for the caller.
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
    #[inline(always)]
    unsafe fn pass<const K: usize>(y: &mut [f32], coef: &[f32], rows: &[&[f32]]) -> usize {
        let (n, yp) = (y.len(), y.as_mut_ptr());
        // SAFETY: AVX2 is present (the caller's promise); i < n and every row holds at least n
        // floats.
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
pub fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        // SAFETY: SSE is part of every x86-64; a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
