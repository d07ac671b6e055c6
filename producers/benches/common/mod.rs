//! Timing helpers shared by the producers' benchmarks.

use std::time::{Duration, Instant};

/// How many calls of `f` take about `target`.
pub fn iterations_for(target: Duration, mut f: impl FnMut()) -> u32 {
    f();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < target / 10 || n == 0 {
        f();
        n += 1;
    }
    let per = started.elapsed() / n;
    (target.as_nanos() / per.as_nanos().max(1)).clamp(1, u32::MAX as u128) as u32
}

/// Mean time per call over `n` calls.
pub fn per_iteration(n: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed() / n
}
