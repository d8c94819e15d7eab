//! Element-wise loops compiled twice: for the baseline target and, where the CPU has it, for
//! AVX-512 (chosen at run time). The compiler then vectorises the same loop 16 lanes wide
//! instead of 4. Each lane still computes what the scalar code would (no reassociation or
//! contraction is allowed), so the results are the same bits on either path.

/// Whether this CPU runs the AVX-512 copies.
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `wide! { fn name(args) -> ret { body } }` defines `name` with `body` inlined into a
/// baseline copy and an AVX-512 copy, calling the second when the CPU has AVX-512.
macro_rules! wide {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::wide::has_avx512() {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

wide! {
/// The sum of `xs` in [`crate::lanes`] order.
pub(crate) fn sum_lanes(xs: &[f32]) -> f32 {
    crate::lanes(xs, |v| v)
}
}

wide! {
/// The sum of `(x - m)^2` over `xs` in [`crate::lanes`] order.
pub(crate) fn square_dev_lanes(xs: &[f32], m: f32) -> f32 {
    crate::lanes(xs, |v| (v - m) * (v - m))
}
}
