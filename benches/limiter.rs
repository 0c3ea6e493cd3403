//! Limiter fast-path cost: `try_acquire` uncontended, and with 8 threads hammering one limiter.
//!
//! The limits are large and the manual clock advances so entries keep expiring: the log stays at
//! a steady size and the benchmark measures the admission path (prune + check + push), not an
//! ever-growing log or the refusal path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use image_router::clock::ManualClock;
use image_router::quota::limiter::{LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;

fn limiter(clock: &ManualClock) -> RateLimiter {
    let limits = Limits::new(Some(1_000_000_000), Some(u64::MAX / 4)).unwrap();
    RateLimiter::with_config(LimiterConfig::new(limits), Arc::new(clock.clone())).unwrap()
}

fn uncontended(c: &mut Criterion) {
    let clock = ManualClock::new();
    let lim = limiter(&clock);
    c.bench_function("try_acquire_uncontended", |b| {
        b.iter(|| {
            // 1 ms per request: the log holds 60,000 entries in steady state.
            clock.advance(Duration::from_millis(1));
            let p = lim.try_acquire(4160).unwrap();
            p.reconcile(4000);
        })
    });
    c.bench_function("try_acquire_refused", |b| {
        let clock = ManualClock::new();
        let small = RateLimiter::with_config(
            LimiterConfig::new(Limits::new(Some(25), Some(1_000_000)).unwrap()),
            Arc::new(clock.clone()),
        )
        .unwrap();
        while small.try_acquire(4160).is_ok() {}
        b.iter(|| small.try_acquire(4160).unwrap_err())
    });
}

fn contended(c: &mut Criterion) {
    const THREADS: u64 = 8;
    c.bench_function("try_acquire_8_threads", |b| {
        b.iter_custom(|iters| {
            let clock = ManualClock::new();
            let lim = limiter(&clock);
            let per_thread = iters.div_ceil(THREADS);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    let (lim, clock) = (&lim, &clock);
                    s.spawn(move || {
                        for _ in 0..per_thread {
                            clock.advance(Duration::from_micros(100));
                            let p = lim.try_acquire(4160).unwrap();
                            p.reconcile(4000);
                        }
                    });
                }
            });
            // Wall time for `iters` acquires spread over the threads: criterion's time per
            // iteration is then the inverse of the aggregate throughput under contention.
            start.elapsed()
        })
    });
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
