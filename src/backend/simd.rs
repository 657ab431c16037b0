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

/// `y += a x`.
#[inline(always)]
pub fn axpy<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = fmadd::<FMA>(a, xi, *yi);
    }
}
