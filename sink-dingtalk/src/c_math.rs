//! The C math functions the program's dependencies call, from the `libm`
//! crate (rust-lang's port of musl's) rather than glibc's `libm.so.6`:
//! the Prometheus exporter's quantiles (`exp`, `log`, `log1p`, `log2`),
//! minijinja's `**` in a template and a `pow` inlined into tokio's task
//! code; nothing an event without a template runs.
//!
//! Defined here, no object refers to `libm.so.6` any more, so the linker
//! (`--as-needed`, as rustc links) leaves it out of the binary. Loading it
//! cost every replica about half a MiB of resident pages at start: the
//! loader maps it and runs the IFUNC resolvers of its functions, each
//! faulting in the pages around it (docs/development.md#footprint). The
//! results are musl's: within an ulp of glibc's, the same for every
//! special value (NaN, infinities, zeros); `errno` is not set.
//!
//! A new dependency that calls another libm function brings `libm.so.6`
//! back, and `tests/process.rs` fails: `objdump -T` on the binary lists the
//! `GLIBC` functions it imports, the libm one among them goes here. The
//! test reads the debug binary; the optimiser may call others in the release
//! one (`exp2` for `pow(2.0, x)`): `readelf -d target/release/sink-dingtalk`
//! shows whether it still needs only libc and libgcc_s (`make bench` warns).

/// `e` to the power `x`.
#[unsafe(no_mangle)]
pub extern "C" fn exp(x: f64) -> f64 {
    libm::exp(x)
}

/// The natural logarithm of `x`.
#[unsafe(no_mangle)]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

/// `log(1 + x)`, exact for small `x`.
#[unsafe(no_mangle)]
pub extern "C" fn log1p(x: f64) -> f64 {
    libm::log1p(x)
}

/// The base-2 logarithm of `x`.
#[unsafe(no_mangle)]
pub extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}

/// `x` to the power `y`.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    // Through the program's own symbols, the way a dependency calls them.
    unsafe extern "C" {
        #[link_name = "exp"]
        fn c_exp(x: f64) -> f64;
        #[link_name = "log"]
        fn c_log(x: f64) -> f64;
        #[link_name = "log1p"]
        fn c_log1p(x: f64) -> f64;
        #[link_name = "log2"]
        fn c_log2(x: f64) -> f64;
        #[link_name = "pow"]
        fn c_pow(x: f64, y: f64) -> f64;
    }

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want.abs() * 4.0 * f64::EPSILON
    }

    #[test]
    fn the_math_functions_answer_as_c_does() {
        use std::hint::black_box as at_run_time;
        let (c_exp, c_log, c_log1p, c_log2, c_pow) = (
            at_run_time(c_exp as unsafe extern "C" fn(f64) -> f64),
            at_run_time(c_log as unsafe extern "C" fn(f64) -> f64),
            at_run_time(c_log1p as unsafe extern "C" fn(f64) -> f64),
            at_run_time(c_log2 as unsafe extern "C" fn(f64) -> f64),
            at_run_time(c_pow as unsafe extern "C" fn(f64, f64) -> f64),
        );
        unsafe {
            assert!(close(c_exp(1.0), std::f64::consts::E));
            assert_eq!(c_exp(0.0), 1.0);
            assert_eq!(c_exp(f64::NEG_INFINITY), 0.0);
            assert!(close(c_log(std::f64::consts::E), 1.0));
            assert_eq!(c_log(0.0), f64::NEG_INFINITY);
            assert!(c_log(-1.0).is_nan());
            assert_eq!(c_log1p(0.0), 0.0);
            assert!(close(c_log1p(1e-300), 1e-300));
            assert_eq!(c_log2(8.0), 3.0);
            assert_eq!(c_log2(0.5), -1.0);
            assert_eq!(c_pow(2.0, 10.0), 1024.0);
            assert_eq!(c_pow(f64::NAN, 0.0), 1.0);
            assert!(c_pow(-8.0, 1.0 / 3.0).is_nan());
            assert!(close(c_pow(10.0, 0.5), 10f64.sqrt()));
        }
    }
}
