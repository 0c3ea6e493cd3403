//! Paired timing of the router's overhead (issue 16): the same runtime, server and request as
//! `benches/router_overhead.rs`, but the direct call and the router take turns in short
//! blocks, many times over, and the figure is the median of the per-block differences.
//!
//! Why besides criterion: on a shared 2-core machine, the load of other tenants moves from
//! one second to the next. Criterion measures the direct call and the router one after the
//! other, seconds apart, so a change in load between them lands in the difference (the
//! README's criterion runs differ by 2× at concurrency 64). Here each router block runs next
//! to a direct block, in alternating order, so a change in load moves both sides of one pair;
//! the median over the pairs leaves out the pairs a burst of load hit.
//!
//! ```sh
//! cargo run --release --example overhead_pairs -- tiny 1 40 200     # payload, concurrency, pairs, requests a block
//! cargo run --release --example overhead_pairs -- tiny 64 40 20     # 64 tasks, 20 requests each a block
//! cargo run --release --example overhead_pairs -- tiny 1 40 200 0   # workers: 0 = one current-thread runtime
//! cargo run --release --example overhead_pairs -- tiny 64 30 10 2 bounded   # against the bounded direct call
//! ```
//!
//! The sixth argument picks the reference the router is paired with: `direct` (the default,
//! the issue's: a new user's call, no timeout) or `bounded` (the same call under a tokio
//! timeout, the one bound the router gives a call; see `loopback::direct_bounded`).
//!
//! Prints, in µs per request, the median of the direct blocks, of the router blocks, and of
//! the paired differences (router − direct), with the 25th and 75th percentile of the
//! differences, and the router's throughput against the direct call's (the median of the
//! per-pair ratios).

use std::time::{Duration, Instant};

use image_router::{GenerateRequest, Router};

#[path = "../benches/support/loopback.rs"]
mod loopback;
use loopback::{Answer, BoxError, Payload};

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let payload = Payload::parse(args.next().as_deref().unwrap_or("tiny"))?;
    let concurrency: usize = parse_or(args.next(), 1)?;
    let pairs: usize = parse_or(args.next(), 40)?;
    let block: usize = parse_or(args.next(), 200)?;
    let workers: usize = parse_or(args.next(), 2)?;
    let reference = match args.next().as_deref() {
        None | Some("direct") => Side::Direct,
        Some("bounded") => Side::Bounded,
        Some(other) => return Err(format!("unknown reference {other:?}: direct | bounded").into()),
    };
    if concurrency == 0 || pairs == 0 || block == 0 {
        return Err("concurrency, pairs and block must be at least 1".into());
    }
    // As the criterion benchmark: two workers, the client on the thread that blocks on it;
    // `0` workers: one current-thread runtime (client, connection and server on one thread).
    let rt = match workers {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        w => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(w)
            .enable_all()
            .build()?,
    };
    let (router, url) = rt.block_on(async {
        let base = loopback::serve(Answer::ok(payload)).await?;
        Ok::<_, BoxError>((
            loopback::router(&base)?,
            format!("{base}/images/generations"),
        ))
    })?;
    let client = reqwest::Client::new();
    let request = loopback::request();
    let sides = Sides {
        router,
        client,
        url,
        request,
    };

    // Warm-up: connections of both sides, lazy statics, the allocator's pools.
    rt.block_on(sides.block(reference, concurrency, block))?;
    rt.block_on(sides.block(Side::Router, concurrency, block))?;

    let mut direct = Vec::with_capacity(pairs);
    let mut routed = Vec::with_capacity(pairs);
    for i in 0..pairs {
        // Alternate which side goes first, so neither always follows the other.
        let order = if i % 2 == 0 {
            [reference, Side::Router]
        } else {
            [Side::Router, reference]
        };
        for side in order {
            let took = rt.block_on(sides.block(side, concurrency, block))?;
            let per_request = took.as_secs_f64() * 1e6 / (concurrency * block) as f64;
            match side {
                Side::Direct | Side::Bounded => direct.push(per_request),
                Side::Router => routed.push(per_request),
            }
        }
    }
    let mut diffs: Vec<f64> = routed.iter().zip(&direct).map(|(r, d)| r - d).collect();
    let mut ratios: Vec<f64> = routed.iter().zip(&direct).map(|(r, d)| d / r).collect();
    let name = match reference {
        Side::Bounded => "bounded direct",
        _ => "direct",
    };
    println!(
        "{payload:?} c{concurrency}, {workers} workers, {pairs} pairs of {block} requests a task: {name} {:.2} µs, router {:.2} µs, \
         difference {:+.2} µs (p25 {:+.2}, p75 {:+.2}), router throughput {:.3}× the {name} call's",
        median(&mut direct),
        median(&mut routed),
        median(&mut diffs),
        percentile(&mut diffs, 0.25),
        percentile(&mut diffs, 0.75),
        median(&mut ratios),
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Side {
    Direct,
    Bounded,
    Router,
}

struct Sides {
    router: Router,
    client: reqwest::Client,
    url: String,
    request: GenerateRequest,
}

impl Sides {
    /// `concurrency` tasks each sending `block` requests one after the other (one task: on
    /// the blocking thread, as criterion's `iter`); the time they all take.
    async fn block(
        &self,
        side: Side,
        concurrency: usize,
        block: usize,
    ) -> Result<Duration, BoxError> {
        let start = Instant::now();
        if concurrency == 1 {
            for _ in 0..block {
                self.once(side).await?;
            }
            return Ok(start.elapsed());
        }
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let this = self.clone_parts();
                tokio::spawn(async move {
                    for _ in 0..block {
                        this.once(side).await?;
                    }
                    Ok::<_, BoxError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok(start.elapsed())
    }

    async fn once(&self, side: Side) -> Result<(), BoxError> {
        match side {
            Side::Direct => {
                std::hint::black_box(
                    loopback::direct(&self.client, &self.url, &self.request).await?,
                );
            }
            Side::Bounded => {
                std::hint::black_box(
                    loopback::direct_bounded(&self.client, &self.url, &self.request).await?,
                );
            }
            Side::Router => {
                std::hint::black_box(self.router.generate(self.request.clone()).await?);
            }
        }
        Ok(())
    }

    fn clone_parts(&self) -> Sides {
        Sides {
            router: self.router.clone(),
            client: self.client.clone(),
            url: self.url.clone(),
            request: self.request.clone(),
        }
    }
}

fn parse_or(arg: Option<String>, default: usize) -> Result<usize, BoxError> {
    Ok(match arg {
        Some(s) => s.parse()?,
        None => default,
    })
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// The `p` quantile of `v` (nearest rank).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() - 1) as f64 * p).round() as usize;
    v[rank.min(v.len() - 1)]
}
