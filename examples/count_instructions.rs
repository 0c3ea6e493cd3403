//! Instruction-count harness: runs N requests through the `Router`, N direct reqwest calls, N
//! routing decisions or N limiter admissions, and exits. Made to run under valgrind's callgrind,
//! whose instruction counts do not move with the load on the machine the way criterion's
//! timings do, so two versions of the crate can be compared on a shared 2-core machine.
//!
//! ```sh
//! cargo build --release --example count_instructions
//! valgrind --tool=callgrind --toggle-collect='count_instructions::measured' \
//!     target/release/examples/count_instructions router 200
//! ```
//!
//! Modes: `router`, `direct` (the same request without the router), `rank` (one `Scored`
//! decision over 8 providers, as in `benches/routing.rs`), `limiter` (one `try_acquire` +
//! `reconcile`, as in `benches/limiter.rs`). Only [`measured`] is collected (`--toggle-collect`):
//! set-up, warm-up (first connection, lazy statics) and shutdown are not counted, so the total
//! divided by N is the cost of one operation.
//!
//! Why a fixed loopback server here and not the simulator: the simulator is part of the crate and
//! changes with it, so its work would be counted as the router's. This server is a few lines of
//! hyper (already a dependency of the `sim` feature) that answer every generation with the same
//! bytes, so both versions under comparison talk to an identical peer. Everything runs on one
//! current-thread tokio runtime: the client, the server and the router share the thread callgrind
//! collects on, and the count does not depend on which worker picked up which task.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use image_router::clock::ManualClock;
use image_router::providers::OpenAi;
use image_router::quota::limiter::{LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::score::{DefaultScorer, ScoreInputs};
use image_router::{Candidate, Ranking, Strategy};
use image_router::{GenerateRequest, ImagesResponse, Quality, Router, Size};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// Requests made before collection starts: opens the pooled connection, fills lazy statics.
const WARM_UP: usize = 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "router".into());
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 100,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut op = rt.block_on(setup(&mode))?;
    for _ in 0..WARM_UP {
        rt.block_on(op.once())?;
    }
    measured(&rt, &mut op, n)?;
    eprintln!("{mode}: {n} operations measured");
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
                let res = client
                    .post(url.as_str())
                    .bearer_auth("sk-bench")
                    .json(request)
                    .send()
                    .await?;
                let body: ImagesResponse = res.json().await?;
                let b64 = body.data[0].b64_json.as_deref().ok_or("no b64_json")?;
                black_box(base64::engine::general_purpose::STANDARD.decode(b64)?);
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

async fn setup(mode: &str) -> Result<Op, BoxError> {
    let request = GenerateRequest::new("a small test image")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE);
    Ok(match mode {
        "router" => {
            let base = serve().await?;
            let router = Router::builder()
                .provider(
                    OpenAi::builder()
                        .base_url(base)
                        .api_key("sk-bench")
                        .build()?,
                )
                .build()?;
            Op::Router(router, request)
        }
        "direct" => {
            let base = serve().await?;
            // Bounded like the router's own calls: a stuck server ends the run with an error.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?;
            Op::Direct(client, format!("{base}/images/generations"), request)
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
            return Err(format!("unknown mode {other:?}: router | direct | rank | limiter").into())
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

/// A 256×256 grey PNG, made with the `png` crate so the body is the same on every run.
fn png_bytes() -> Result<Vec<u8>, BoxError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 256, 256);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&vec![128u8; 256 * 256])?;
    }
    Ok(out)
}

/// Starts the fixed loopback server; returns its `…/v1` base URL. A POST to
/// `/v1/images/generations` gets one image in OpenAI's JSON shape, anything else a 404.
async fn serve() -> Result<String, BoxError> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png_bytes()?);
    let body = serde_json::json!({
        "created": 1_700_000_000u64,
        "data": [{"b64_json": b64}],
        "background": "opaque",
        "output_format": "png",
        "size": "1024x1024",
        "quality": "low",
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
            "output_tokens": 272,
            "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
            "total_tokens": 282
        }
    });
    let body = Bytes::from(serde_json::to_vec(&body)?);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let generation = req.method() == hyper::Method::POST
                            && req.uri().path() == "/v1/images/generations";
                        // The request body is read whole, as a real server would.
                        let _ = req.into_body().collect().await;
                        let resp = if generation {
                            let mut r = Response::new(Full::new(body));
                            r.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            r
                        } else {
                            let mut r = Response::new(Full::new(Bytes::from_static(
                                br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
                            )));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/v1"))
}
