//! The routing decision: rank and pick for 2, 8 and 32 providers, per strategy.
//!
//! Run: `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use image_router::score::{DefaultScorer, ScoreInputs};
use image_router::{Candidate, Ranking, Strategy};
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let mut c = Candidate::new(
                i,
                ScoreInputs {
                    availability: 0.9 + (i % 10) as f64 / 100.0,
                    latency_ms: 200.0 + ((i * 7919) % 1000) as f64,
                    headroom: 0.2 + ((i * 31) % 80) as f64 / 100.0,
                    budget_left: if i % 3 == 0 { Some(0.5) } else { None },
                    priority: i,
                    weight: 1.0 + (i % 4) as f64,
                },
            );
            c.breaker_open = i % 11 == 5;
            c.no_headroom = i % 13 == 7;
            c.preferred = i % 5 == 0;
            c
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let scorer = DefaultScorer::default();
    let mut group = c.benchmark_group("rank_and_pick");
    for n in [2usize, 8, 32] {
        let cands = candidates(n);
        for strategy in [Strategy::Ordered, Strategy::Scored, Strategy::Weighted] {
            let mut rng = SmallRng::seed_from_u64(1);
            let mut ranking = Ranking::with_capacity(n);
            group.bench_with_input(
                BenchmarkId::new(format!("{strategy:?}"), n),
                &cands,
                |b, cands| {
                    b.iter(|| {
                        strategy.rank_into(black_box(cands), &scorer, &mut rng, &mut ranking);
                        black_box(ranking.first())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
