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

/// `y += sum_t a[t] x[t]` in one pass over `y` (one load and store of `y` for all `K` terms).
#[inline(always)]
pub fn axpy_k<const FMA: bool, const K: usize>(a: [f32; K], x: [&[f32]; K], y: &mut [f32]) {
    let n = y.len();
    for row in &x {
        assert!(row.len() >= n, "term shorter than the destination");
    }
    for i in 0..n {
        let mut acc = y[i];
        for t in 0..K {
            acc = fmadd::<FMA>(a[t], x[t][i], acc);
        }
        y[i] = acc;
    }
}

/// `y += sum_t coef_t row_t` over any number of terms, four per pass over `y`.
#[inline(always)]
pub fn axpy_terms<const FMA: bool>(terms: &[(f32, &[f32])], y: &mut [f32]) {
    let mut groups = terms.chunks_exact(4);
    for g in &mut groups {
        axpy_k::<FMA, 4>(
            [g[0].0, g[1].0, g[2].0, g[3].0],
            [g[0].1, g[1].1, g[2].1, g[3].1],
            y,
        );
    }
    match *groups.remainder() {
        [(a, x), (b, u), (c, v)] => axpy_k::<FMA, 3>([a, b, c], [x, u, v], y),
        [(a, x), (b, u)] => axpy_k::<FMA, 2>([a, b], [x, u], y),
        [(a, x)] => axpy::<FMA>(a, x, y),
        _ => {}
    }
}

/// `y += a x`.
#[inline(always)]
pub fn axpy<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = fmadd::<FMA>(a, xi, *yi);
    }
}
