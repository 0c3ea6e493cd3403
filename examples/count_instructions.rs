//! Instruction-count harness: runs N requests through the `Router`, N direct reqwest calls, N
//! routing decisions or N limiter admissions, and exits. Made to run under valgrind's callgrind,
//! whose instruction counts do not move with the load on the machine the way criterion's
//! timings do, so two versions of the crate can be compared on a shared 2-core machine.
//!
//! ```sh
//! cargo build --release --example count_instructions
//! valgrind --tool=callgrind --toggle-collect='count_instructions::measured' \
//!     target/release/examples/count_instructions router 200 tiny   # payload: tiny, realistic
//! ```
//!
//! Modes: `router`, `direct` (the same request without the router), `bounded` (the direct
//! call under a tokio timeout, the one bound the router gives a call), `rank` (one `Scored`
//! decision over 8 providers, as in `benches/routing.rs`), `limiter` (one `try_acquire` +
//! `reconcile`, as in `benches/limiter.rs`). Only [`measured`] is collected (`--toggle-collect`):
//! set-up, warm-up (first connection, lazy statics) and shutdown are not counted, so the total
//! divided by N is the cost of one operation.
//!
//! The peer is the fixed loopback server of `benches/support/loopback.rs` (why not the
//! simulator: see there), answering with the tiny (about 1 KB) or the realistic (1024×1024,
//! about 1.5 MB) PNG. Everything runs on one current-thread tokio runtime: the client, the
//! server and the router share the thread callgrind collects on, and the count does not depend
//! on which worker picked up which task. The server's own work is in both counts alike.
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*count_instructions::measured*' \
//!     target/release/examples/count_instructions direct 200 realistic
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use image_router::clock::ManualClock;
use image_router::quota::limiter::{LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::score::{DefaultScorer, ScoreInputs};
use image_router::{Candidate, Ranking, Strategy};
use image_router::{GenerateRequest, Router};
use rand::rngs::SmallRng;
use rand::SeedableRng;

#[path = "../benches/support/loopback.rs"]
mod loopback;
use loopback::{Answer, BoxError, Payload};

/// Requests made before collection starts: opens the pooled connection, fills lazy statics.
const WARM_UP: usize = 5;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "router".into());
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 100,
    };
    let payload = Payload::parse(args.next().as_deref().unwrap_or("tiny"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut op = rt.block_on(setup(&mode, payload))?;
    for _ in 0..WARM_UP {
        rt.block_on(op.once())?;
    }
    measured(&rt, &mut op, n)?;
    eprintln!("{mode} ({payload:?}): {n} operations measured");
    Ok(())
}

/// The collected region: `n` operations, nothing else.
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, op: &mut Op, n: usize) -> Result<(), BoxError> {
    rt.block_on(async {
        for _ in 0..n {
            op.once().await?;
        }
        Ok(())
    })
}

/// One kind of operation with everything it needs.
enum Op {
    Router(Router, GenerateRequest),
    Direct(reqwest::Client, String, GenerateRequest),
    Bounded(reqwest::Client, String, GenerateRequest),
    Rank(Vec<Candidate>, DefaultScorer, SmallRng, Ranking),
    Limiter(ManualClock, RateLimiter),
}

impl Op {
    async fn once(&mut self) -> Result<(), BoxError> {
        match self {
            Op::Router(router, request) => {
                black_box(router.generate(request.clone()).await?);
            }
            Op::Direct(client, url, request) => {
                black_box(loopback::direct(client, url, request).await?);
            }
            Op::Bounded(client, url, request) => {
                black_box(loopback::direct_bounded(client, url, request).await?);
            }
            Op::Rank(cands, scorer, rng, ranking) => {
                Strategy::Scored.rank_into(black_box(cands), scorer, rng, ranking);
                black_box(ranking.first());
            }
            Op::Limiter(clock, lim) => {
                clock.advance(Duration::from_millis(1));
                let p = lim.try_acquire(4160)?;
                p.reconcile(4000);
            }
        }
        Ok(())
    }
}

async fn setup(mode: &str, payload: Payload) -> Result<Op, BoxError> {
    let request = loopback::request();
    Ok(match mode {
        "router" => {
            let base = loopback::serve(Answer::ok(payload)).await?;
            Op::Router(loopback::router(&base)?, request)
        }
        "direct" | "bounded" => {
            let base = loopback::serve(Answer::ok(payload)).await?;
            // The client a new user makes: reqwest's defaults.
            let client = reqwest::Client::new();
            let url = format!("{base}/images/generations");
            if mode == "direct" {
                Op::Direct(client, url, request)
            } else {
                Op::Bounded(client, url, request)
            }
        }
        "rank" => Op::Rank(
            candidates(8),
            DefaultScorer::default(),
            SmallRng::seed_from_u64(1),
            Ranking::with_capacity(8),
        ),
        "limiter" => {
            let clock = ManualClock::new();
            let limits = Limits::new(Some(1_000_000_000), Some(u64::MAX / 4))?;
            let lim =
                RateLimiter::with_config(LimiterConfig::new(limits), Arc::new(clock.clone()))?;
            // Fill the log to its steady state (60,000 entries at 1 ms per admission).
            for _ in 0..60_000 {
                clock.advance(Duration::from_millis(1));
                lim.try_acquire(4160)?.reconcile(4000);
            }
            Op::Limiter(clock, lim)
        }
        other => {
            return Err(format!(
                "unknown mode {other:?}: router | direct | bounded | rank | limiter"
            )
            .into())
        }
    })
}

/// The same candidates as `benches/routing.rs`.
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
