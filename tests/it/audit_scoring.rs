//! Independent audit of issue 4: health, breakers, score, strategies, classes, reload,
//! metrics, status and tracing — through the public API only.
//!
//! Time-dependent tests run on tokio's paused clock (the router's default `SystemClock` is
//! the tokio clock) with scripted in-process providers, or on a `ManualClock` for the
//! building blocks, so minutes of traffic take milliseconds and nothing depends on timing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::breaker::{BreakerConfig, BreakerState, CircuitBreaker, DenyReason, OpenReason};
use image_router::clock::{ManualClock, SharedClock};
use image_router::health::{availability_verdict, Health, HealthConfig};
use image_router::score::{ScoreBreakdown, ScoreInputs, ScoreWeights, Scorer};
use image_router::{
    AccessDenial, CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image,
    NotFoundKind, Outcome, OutputFormat, Provider, ProviderError, ProviderOptions,
    ProviderResponse, RateLimitScope, Router, SkipReason, Strategy,
};
use image_router::{ClassPolicy, RequestClass};
use parking_lot::Mutex;

// ---------------------------------------------------------------------------------------
// A scripted provider
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Act {
    Ok,
    Fail(ErrorKind),
    /// Never answers (the router's timeout must end it).
    Hang,
}

/// A queue of actions; shared between providers when a test wants "the first call of the
/// request fails, whichever provider it is".
type Script = Arc<Mutex<VecDeque<Act>>>;

#[derive(Debug)]
struct Mock {
    name: String,
    script: Script,
    /// Used when the script is empty.
    default: Mutex<Act>,
    latency: Mutex<Duration>,
    calls: AtomicUsize,
    retries: Mutex<Vec<u32>>,
    headers: Mutex<image_router::quota::headers::RateLimitHeaders>,
}

impl Mock {
    fn new(name: &str) -> Arc<Self> {
        Self::with_script(name, Arc::default())
    }
    fn with_script(name: &str, script: Script) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            script,
            default: Mutex::new(Act::Ok),
            latency: Mutex::new(Duration::ZERO),
            calls: AtomicUsize::new(0),
            retries: Mutex::new(Vec::new()),
            headers: Mutex::new(image_router::quota::headers::RateLimitHeaders::default()),
        })
    }
    fn set_default(&self, act: Act) {
        *self.default.lock() = act;
    }
    fn set_latency(&self, d: Duration) {
        *self.latency.lock() = d;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Mock {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        Some(Capabilities::permissive(model))
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.retries.lock().push(ctx.retry);
        let act = self
            .script
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone());
        let latency = *self.latency.lock();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match act {
            Act::Ok => {
                let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n");
                let model = req.model.clone().unwrap_or_default();
                let mut resp =
                    ProviderResponse::new(vec![Image::new(png, OutputFormat::Png)], model);
                resp.rate_limits = *self.headers.lock();
                Ok(resp)
            }
            Act::Fail(kind) => Err(ProviderError::new(
                &self.name,
                kind,
                format!("{} says no", self.name),
            )),
            Act::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
    async fn edit(
        &self,
        _req: &EditRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        Err(ProviderError::new(
            &self.name,
            ErrorKind::InvalidRequest,
            "no edits",
        ))
    }
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a watercolor fox")
}

fn builder_with(mocks: &[&Arc<Mock>]) -> image_router::RouterBuilder {
    let mut b = Router::builder();
    for m in mocks {
        b = b.provider_arc(Arc::clone(m) as Arc<dyn Provider>, ProviderOptions::new());
    }
    b
}

fn rate_limited() -> ErrorKind {
    ErrorKind::RateLimited {
        scope: RateLimitScope::Requests,
    }
}

fn tier_denied() -> ErrorKind {
    ErrorKind::AccessDenied {
        reason: AccessDenial::TierAccess,
    }
}

fn manual() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    (c.clone(), Arc::new(c) as SharedClock)
}

// ---------------------------------------------------------------------------------------
// 1. Health
// ---------------------------------------------------------------------------------------

#[test]
fn availability_counts_only_the_providers_faults() {
    for o in [
        Outcome::Server,
        Outcome::Timeout,
        Outcome::Connect,
        Outcome::Decode,
        Outcome::RateLimited,
    ] {
        assert_eq!(
            availability_verdict(o),
            Some(false),
            "{o:?} is a provider fault"
        );
    }
    assert_eq!(availability_verdict(Outcome::Success), Some(true));
    for o in [Outcome::InvalidRequest, Outcome::ContentPolicy] {
        assert_eq!(availability_verdict(o), None, "{o:?} is the caller's");
    }

    let (clock, shared) = manual();
    let health = Health::new(HealthConfig::default(), shared);
    for _ in 0..20 {
        health.record(Outcome::InvalidRequest, Duration::from_millis(5));
        health.record(Outcome::ContentPolicy, Duration::from_millis(5));
    }
    assert_eq!(health.counts(), (0, 0));
    assert_eq!(health.availability(), 1.0);
    // Below min_samples (5): unknown = healthy.
    for _ in 0..4 {
        health.record(Outcome::Server, Duration::ZERO);
    }
    assert_eq!(health.availability(), 1.0);
    health.record(Outcome::RateLimited, Duration::ZERO);
    for _ in 0..5 {
        health.record(Outcome::Success, Duration::from_millis(100));
    }
    assert_eq!(health.counts(), (5, 5));
    assert!((health.availability() - 0.5).abs() < 1e-9);
    // The window is time based: after it passes, the evidence is gone.
    clock.advance(Duration::from_secs(61));
    assert_eq!(health.counts(), (0, 0));
    assert_eq!(health.availability(), 1.0);
}

#[tokio::test(start_paused = true)]
async fn caller_faults_do_not_hurt_a_providers_availability_in_the_router() {
    let a = Mock::new("a");
    let router = builder_with(&[&a]).build().unwrap();
    a.set_default(Act::Fail(ErrorKind::InvalidRequest));
    for _ in 0..10 {
        let err = router.generate(req()).await.unwrap_err();
        assert!(err.is_invalid());
    }
    a.set_default(Act::Fail(ErrorKind::ContentPolicy { reason: None }));
    for _ in 0..10 {
        let err = router.generate(req()).await.unwrap_err();
        assert!(err.is_content_policy());
    }
    let st = router.status();
    let p = &st.providers[0];
    assert_eq!((p.health.successes, p.health.failures), (0, 0));
    assert_eq!(p.health.availability, 1.0);
    assert_eq!(p.breaker.state, BreakerState::Closed);
    assert_eq!(p.breaker.consecutive_failures, 0);
}

#[test]
fn peak_ewma_jumps_up_at_once_and_decays_down_gradually() {
    let (clock, shared) = manual();
    let cfg = HealthConfig {
        idle_decay: None,
        ..HealthConfig::default()
    };
    let health = Health::new(cfg, shared);
    assert_eq!(health.latency(), None);
    health.record(Outcome::Success, Duration::from_millis(100));
    assert_eq!(health.latency(), Some(Duration::from_millis(100)));
    clock.advance(Duration::from_secs(1));
    health.record(Outcome::Success, Duration::from_millis(1000));
    assert_eq!(
        health.latency(),
        Some(Duration::from_millis(1000)),
        "a slower observation is adopted at once"
    );
    clock.advance(Duration::from_secs(1));
    health.record(Outcome::Success, Duration::from_millis(100));
    let after_one = health.latency().unwrap();
    assert!(
        after_one > Duration::from_millis(500) && after_one < Duration::from_millis(1000),
        "a faster observation only pulls the estimate down gradually: {after_one:?}"
    );
    // Many fast observations over several decay windows bring it back near 100 ms.
    for _ in 0..60 {
        clock.advance(Duration::from_secs(1));
        health.record(Outcome::Success, Duration::from_millis(100));
    }
    let settled = health.latency().unwrap();
    assert!(
        settled < Duration::from_millis(150),
        "decays back over the window: {settled:?}"
    );
    // A fast *failure* says nothing about image latency.
    health.record(Outcome::Connect, Duration::from_millis(1));
    assert_eq!(health.latency().unwrap(), settled);
}

#[test]
fn in_flight_penalty_multiplies_the_cost() {
    let (_clock, shared) = manual();
    let cfg = HealthConfig {
        idle_decay: None,
        ..HealthConfig::default()
    };
    let health = Health::new(cfg, shared);
    health.record(Outcome::Success, Duration::from_millis(200));
    assert!((health.cost_ms() - 200.0).abs() < 1e-6);
    let g1 = health.start();
    let g2 = health.start();
    assert_eq!(health.in_flight(), 2);
    assert!(
        (health.cost_ms() - 600.0).abs() < 1e-6,
        "{}",
        health.cost_ms()
    );
    drop(g1);
    g2.finish(Outcome::Success);
    assert_eq!(health.in_flight(), 0);
}

// ---------------------------------------------------------------------------------------
// 2. Circuit breaker
// ---------------------------------------------------------------------------------------

/// The cool-downs and ramp these breaker tests were written against (10 s doubling up to
/// 5 min, 30 s ramp); the defaults are shorter since recovery must be noticed in seconds.
fn slow_probing() -> BreakerConfig {
    BreakerConfig {
        cool_down: Duration::from_secs(10),
        max_cool_down: Duration::from_secs(300),
        ramp: Duration::from_secs(30),
        ..BreakerConfig::default()
    }
}

fn breaker(cfg: BreakerConfig) -> (ManualClock, CircuitBreaker) {
    let (clock, shared) = manual();
    (clock, CircuitBreaker::new(cfg, shared))
}

#[test]
fn breaker_opens_on_consecutive_failures() {
    let (_c, b) = breaker(BreakerConfig::default());
    for i in 0..5 {
        assert_eq!(b.state(), BreakerState::Closed, "still closed after {i}");
        b.acquire().unwrap().record(Outcome::Server);
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        b.snapshot().reason,
        Some(OpenReason::ConsecutiveFailures(5))
    );
    assert!(b.acquire().is_err(), "open: nothing goes through");
}

#[test]
fn breaker_opens_on_failure_ratio_without_a_consecutive_run() {
    let (_c, b) = breaker(BreakerConfig::default());
    // F S F S ...: never two failures in a row. The ratio is 0.5 from the 10th sample
    // (the minimum) on; the next failure (6 of 11) opens it.
    for i in 0..11 {
        let o = if i % 2 == 0 {
            Outcome::Server
        } else {
            Outcome::Success
        };
        assert_eq!(b.state(), BreakerState::Closed, "closed before sample {i}");
        b.acquire().unwrap().record(o);
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().reason, Some(OpenReason::FailureRatio));
}

#[test]
fn rate_limits_and_caller_errors_never_open_the_breaker() {
    let (_c, b) = breaker(BreakerConfig::default());
    for _ in 0..50 {
        b.acquire().unwrap().record(Outcome::RateLimited);
        b.acquire().unwrap().record(Outcome::InvalidRequest);
        b.acquire().unwrap().record(Outcome::ContentPolicy);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn exactly_one_probe_then_gradual_ramp_then_closed() {
    let (clock, b) = breaker(slow_probing());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(9));
    assert!(b.acquire().is_err(), "still cooling down");
    clock.advance(Duration::from_secs(1));
    let probe = b.acquire().expect("the probe");
    assert!(probe.is_probe());
    for _ in 0..20 {
        assert!(b.acquire().is_err(), "only one probe at a time");
    }
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    // At the start of the ramp about 10 % is admitted.
    let mut admitted = 0;
    for _ in 0..100 {
        if let Ok(p) = b.acquire() {
            assert!(!p.is_probe());
            admitted += 1;
            p.record(Outcome::Success);
        }
    }
    assert!(
        (5..=20).contains(&admitted),
        "gradual, not all at once: {admitted}/100"
    );
    // Half way: about 55 %.
    clock.advance(Duration::from_secs(15));
    let mut mid = 0;
    for _ in 0..100 {
        if let Ok(p) = b.acquire() {
            mid += 1;
            p.record(Outcome::Success);
        }
    }
    assert!(mid > admitted && mid < 100, "ramping: {mid}/100");
    clock.advance(Duration::from_secs(15));
    for _ in 0..10 {
        b.acquire().expect("ramp over").record(Outcome::Success);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn dropped_probe_counts_as_failure_and_does_not_wedge() {
    let (clock, b) = breaker(BreakerConfig::default());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(10));
    let probe = b.acquire().unwrap();
    drop(probe);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(Duration::from_secs(20));
    assert!(
        b.acquire().unwrap().is_probe(),
        "a new probe after the longer cool-down"
    );
}

#[test]
fn cool_down_grows_after_failed_probes_and_is_capped() {
    let (clock, b) = breaker(slow_probing());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    let mut seen = vec![b.snapshot().retry_in.unwrap().as_secs()];
    for _ in 0..8 {
        clock.advance(b.snapshot().retry_in.unwrap());
        let p = b.acquire().unwrap();
        assert!(p.is_probe());
        p.record(Outcome::Timeout);
        assert_eq!(b.snapshot().reason, Some(OpenReason::ProbeFailed));
        seen.push(b.snapshot().retry_in.unwrap().as_secs());
    }
    assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300, 300]);
    // A good probe and a full ramp reset it.
    clock.advance(Duration::from_secs(300));
    b.acquire().unwrap().record(Outcome::Success);
    clock.advance(Duration::from_secs(31));
    b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    assert_eq!(b.snapshot().retry_in.unwrap().as_secs(), 10);
}

#[test]
fn failure_while_ramping_reopens_with_longer_cool_down() {
    let cfg = BreakerConfig {
        ramp_start: 1.0,
        ..slow_probing()
    };
    let (clock, b) = breaker(cfg);
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(10));
    b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    b.acquire().unwrap().record(Outcome::Server);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().reason, Some(OpenReason::FailedWhileRecovering));
    assert_eq!(b.snapshot().retry_in, Some(Duration::from_secs(20)));
}

#[test]
fn access_denial_opens_for_the_long_cool_down_and_keeps_the_reason() {
    let (clock, b) = breaker(BreakerConfig::default());
    b.acquire().unwrap().open_for(
        DenyReason::AccessDenied(AccessDenial::InsufficientQuota),
        "You exceeded your current quota".to_string(),
    );
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(
        s.reason,
        Some(OpenReason::Denied(DenyReason::AccessDenied(
            AccessDenial::InsufficientQuota
        )))
    );
    assert_eq!(
        s.message.as_deref(),
        Some("You exceeded your current quota")
    );
    assert_eq!(s.retry_in, Some(Duration::from_secs(600)));
    let rej = b.acquire().unwrap_err();
    assert!(
        rej.to_string().contains("You exceeded your current quota"),
        "{rej}"
    );
    clock.advance(Duration::from_secs(599));
    assert!(b.acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn access_denial_in_the_router_is_visible_in_status_and_in_skips() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    a.set_default(Act::Fail(tier_denied()));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(res.attempts.len(), 2);
    assert_eq!(res.attempts[0].outcome, Outcome::AccessDenied);

    let st = router.status();
    let pa = &st.providers[0];
    assert_eq!(pa.breaker.state, BreakerState::Open);
    assert_eq!(
        pa.breaker.reason,
        Some(OpenReason::Denied(DenyReason::AccessDenied(
            AccessDenial::TierAccess
        )))
    );
    assert_eq!(pa.breaker.message.as_deref(), Some("a says no"));
    assert!(pa.last_error.is_some());
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["providers"][0]["breaker"]["state"], "open");

    // The next request skips `a` without calling it, and says why.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(a.calls(), 1);
    assert_eq!(res.provider, "b");
    let skip = res
        .skipped
        .iter()
        .find(|s| s.provider == "a")
        .expect("skip listed");
    let text = skip.reason.to_string();
    assert!(text.contains("a says no"), "skip keeps the reason: {text}");
}

/// A model this provider lacks, or a parameter it does not take, is about *that request*:
/// the provider is fine for others and its breaker must not open for everyone.
#[tokio::test(start_paused = true)]
async fn per_request_not_found_does_not_open_the_providers_breaker() {
    for what in [NotFoundKind::UnsupportedParameter, NotFoundKind::Model] {
        let a = Mock::new("a");
        let b = Mock::new("b");
        let router = builder_with(&[&a, &b]).build().unwrap();
        a.set_default(Act::Fail(ErrorKind::NotFound { what }));
        for i in 0..8 {
            // A different model each time, so a per-model cool-down does not hide `a`.
            let r = req().model(format!("gpt-image-1-variant-{i}"));
            let res = router.generate(r).await.unwrap();
            assert_eq!(res.provider, "b");
        }
        assert_eq!(
            router.status().providers[0].breaker.state,
            BreakerState::Closed,
            "{what:?} must not open the breaker"
        );
        a.set_default(Act::Ok);
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "a", "{what:?}: a still serves other requests");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Score and rank
// ---------------------------------------------------------------------------------------

#[test]
fn region_formula_is_expressible() {
    let s = image_router::score::DefaultScorer::new(ScoreWeights::REGION).score(&ScoreInputs {
        availability: 0.8,
        latency_ms: 400.0,
        headroom: 0.01,
        budget_left: Some(0.1),
        priority: 5,
        weight: 1.0,
    });
    assert!((s.total - 0.8 * 1000.0 / 400.0).abs() < 1e-9, "{}", s.total);
}

#[test]
fn scorer_never_returns_nan_or_negative_on_bad_inputs() {
    let sc = image_router::score::DefaultScorer::default();
    for inputs in [
        ScoreInputs {
            availability: f64::NAN,
            latency_ms: f64::NAN,
            headroom: f64::INFINITY,
            budget_left: Some(-3.0),
            priority: usize::MAX,
            weight: f64::NEG_INFINITY,
        },
        ScoreInputs {
            latency_ms: -5.0,
            weight: 1e308,
            ..ScoreInputs::default()
        },
    ] {
        let s = sc.score(&inputs);
        assert!(s.total.is_finite() && s.total >= 0.0, "{s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn rank_explains_every_component() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    let c = Mock::new("c");
    c.set_default(Act::Fail(ErrorKind::Server));
    let router = builder_with(&[&a, &b, &c])
        .breaker(BreakerConfig {
            consecutive_failures: 1,
            // Long enough to still be open when the ranking is read.
            cool_down: Duration::from_secs(10),
            ..BreakerConfig::default()
        })
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    // Open c's breaker: with a and b rate limited, the request reaches c and fails.
    a.set_default(Act::Fail(rate_limited()));
    b.set_default(Act::Fail(rate_limited()));
    let _ = router.generate(req()).await;
    a.set_default(Act::Ok);
    b.set_default(Act::Ok);
    assert_eq!(
        router.status().providers[2].breaker.state,
        BreakerState::Open
    );

    let ranked = router.rank(&req().into(), None).unwrap();
    let names: Vec<&str> = ranked.order.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"c"));
    assert!(ranked
        .skipped
        .iter()
        .any(|s| s.provider == "c" && matches!(s.reason, SkipReason::CircuitOpen { .. })));
    for (name, s) in &ranked.order {
        let product = s.availability * s.latency * s.headroom * s.budget * s.priority * s.weight;
        assert!(
            (s.total - product).abs() <= 1e-9 * product.max(1.0),
            "{name}: total is the product of the components: {s:?}"
        );
        assert_eq!(
            s.inputs.priority,
            router
                .provider_names()
                .iter()
                .position(|n| n == name)
                .unwrap()
        );
    }
    let json = serde_json::to_value(&ranked).unwrap();
    for key in [
        "availability",
        "latency",
        "headroom",
        "budget",
        "priority",
        "weight",
        "total",
        "inputs",
    ] {
        assert!(
            json["order"][0][1].get(key).is_some(),
            "rank JSON lacks {key}: {json}"
        );
    }
    // Bad input is a typed error naming the field, not a panic.
    let err = router
        .rank(&GenerateRequest::new("").into(), None)
        .unwrap_err();
    assert_eq!(err.field, "prompt");
}

// ---------------------------------------------------------------------------------------
// 4. Strategies keep issue 2's failover rules
// ---------------------------------------------------------------------------------------

/// A scorer that prefers the *last* provider: the configured order is reversed.
struct Reverse;
impl Scorer for Reverse {
    fn score(&self, inputs: &ScoreInputs) -> ScoreBreakdown {
        let total = 1.0 + inputs.priority as f64;
        ScoreBreakdown {
            inputs: *inputs,
            total,
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    Ordered,
    Scored,
    Weighted,
    Custom,
}

const FLAVORS: [Flavor; 4] = [
    Flavor::Ordered,
    Flavor::Scored,
    Flavor::Weighted,
    Flavor::Custom,
];

/// Three providers sharing one script: the script's first entries apply to whichever
/// provider the strategy picks first, so the rules are checked for every strategy.
fn flavored(flavor: Flavor) -> (Router, Vec<Arc<Mock>>, Script) {
    let script: Script = Arc::default();
    let mocks: Vec<Arc<Mock>> = ["p0", "p1", "p2"]
        .iter()
        .map(|n| Mock::with_script(n, Arc::clone(&script)))
        .collect();
    let mut b = builder_with(&mocks.iter().collect::<Vec<_>>())
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(10));
    b = match flavor {
        Flavor::Ordered => b.strategy(Strategy::Ordered),
        Flavor::Scored => b.strategy(Strategy::Scored),
        Flavor::Weighted => b.strategy(Strategy::Weighted),
        Flavor::Custom => b.scorer(Arc::new(Reverse)),
    };
    (b.build().unwrap(), mocks, script)
}

#[tokio::test(start_paused = true)]
async fn every_strategy_fails_over_at_once_on_rate_limit() {
    for f in FLAVORS {
        let (router, _m, script) = flavored(f);
        script.lock().push_back(Act::Fail(rate_limited()));
        let t0 = tokio::time::Instant::now();
        let res = router.generate(req()).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::ZERO, "{f:?}: no wait");
        assert_eq!(res.attempts.len(), 2, "{f:?}");
        assert_eq!(res.attempts[0].outcome, Outcome::RateLimited);
        assert_ne!(res.attempts[0].provider, res.attempts[1].provider, "{f:?}");
        assert_eq!(res.provider, res.attempts[1].provider);
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_cools_down_after_access_denied() {
    for f in FLAVORS {
        let (router, mocks, script) = flavored(f);
        script.lock().push_back(Act::Fail(tier_denied()));
        let res = router.generate(req()).await.unwrap();
        let denied = res.attempts[0].provider.clone();
        assert_eq!(res.attempts[0].outcome, Outcome::AccessDenied, "{f:?}");
        let before: usize = mocks.iter().map(|m| m.calls()).sum();
        for _ in 0..10 {
            let res = router.generate(req()).await.unwrap();
            assert_ne!(res.provider, denied, "{f:?}");
            assert_eq!(res.attempts.len(), 1, "{f:?}: no repeated failed attempt");
            assert!(
                res.skipped.iter().any(|s| s.provider == denied),
                "{f:?}: the denied provider is listed as skipped"
            );
        }
        let m = mocks.iter().find(|m| m.name == denied).unwrap();
        assert_eq!(m.calls(), 1, "{f:?}: not called again in the cool-down");
        let after: usize = mocks.iter().map(|m| m.calls()).sum();
        assert_eq!(after - before, 10);
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_retries_server_errors_once_then_fails_over() {
    for f in FLAVORS {
        let (router, mocks, script) = flavored(f);
        script
            .lock()
            .extend([Act::Fail(ErrorKind::Server), Act::Fail(ErrorKind::Server)]);
        let res = router.generate(req()).await.unwrap();
        let a = &res.attempts;
        assert_eq!(a.len(), 3, "{f:?}: {a:?}");
        assert_eq!(
            a[0].provider, a[1].provider,
            "{f:?}: retried on the same provider"
        );
        assert_eq!((a[0].retry, a[1].retry), (0, 1), "{f:?}");
        assert_ne!(a[2].provider, a[0].provider, "{f:?}: then failed over");
        assert_eq!(a[2].outcome, Outcome::Success);
        let first = mocks.iter().find(|m| m.name == a[0].provider).unwrap();
        assert_eq!(
            *first.retries.lock(),
            vec![0, 1],
            "{f:?}: ctx.retry tells the provider"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_returns_invalid_request_and_content_policy_at_once() {
    for f in FLAVORS {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::ContentPolicy {
                reason: Some("safety_violations=[sexual]".into()),
            },
        ] {
            let (router, mocks, script) = flavored(f);
            script.lock().push_back(Act::Fail(kind.clone()));
            let err = router.generate(req()).await.unwrap_err();
            assert_eq!(err.attempts().len(), 1, "{f:?} {kind:?}");
            assert_eq!(mocks.iter().map(|m| m.calls()).sum::<usize>(), 1, "{f:?}");
            assert_eq!(err.cause().unwrap().kind, kind);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn content_policy_fails_over_when_configured() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    a.set_default(Act::Fail(ErrorKind::ContentPolicy { reason: None }));
    let router = builder_with(&[&a, &b])
        .failover_on_content_policy(true)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
}

#[tokio::test(start_paused = true)]
async fn every_strategy_keeps_the_deadline_and_lists_every_attempt() {
    for f in FLAVORS {
        let (router, mocks, _script) = flavored(f);
        for m in &mocks {
            m.set_default(Act::Hang);
        }
        let t0 = tokio::time::Instant::now();
        let err = router.generate(req()).await.unwrap_err();
        let took = t0.elapsed();
        assert!(
            took <= Duration::from_secs(30),
            "{f:?}: {took:?} past the deadline"
        );
        assert!(err.is_deadline_exceeded(), "{f:?}: {err}");
        let calls: usize = mocks.iter().map(|m| m.calls()).sum();
        assert_eq!(err.attempts().len(), calls, "{f:?}: every call is listed");
        assert!(err
            .attempts()
            .iter()
            .all(|a| a.outcome == Outcome::Timeout && a.error.is_some()));
    }
}

#[tokio::test(start_paused = true)]
async fn scored_prefers_a_much_faster_provider_and_follows_a_swap() {
    let a = Mock::new("slow");
    let b = Mock::new("fast");
    a.set_latency(Duration::from_millis(500));
    b.set_latency(Duration::from_millis(50));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let p = router.generate(req()).await.unwrap().provider;
        *served.entry(p).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(served["fast"] >= 80, "{served:?}");
    a.set_latency(Duration::from_millis(50));
    b.set_latency(Duration::from_millis(500));
    let mut later: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let p = router.generate(req()).await.unwrap().provider;
        *later.entry(p).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        later.get("slow").copied().unwrap_or(0) >= 100,
        "moves when speeds swap: {later:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Flap: outage of 30 s, one request per second for 60 s
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn flap_every_request_served_one_probe_per_cool_down_traffic_returns() {
    let primary = Mock::new("primary");
    let fallback = Mock::new("fallback");
    let router = builder_with(&[&primary, &fallback])
        .retry_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    primary.set_default(Act::Fail(ErrorKind::Server));
    let mut primary_calls_at: Vec<Duration> = Vec::new();
    let mut first_primary_success: Option<Duration> = None;
    let mut cool_down_at_recovery = Duration::ZERO;
    let mut open_until_at_recovery = Duration::ZERO;
    for s in 0..60u64 {
        let now = start.elapsed();
        if s == 30 {
            primary.set_default(Act::Ok);
            let b = &router.status().providers[0].breaker;
            cool_down_at_recovery = b.cool_down;
            open_until_at_recovery = b.retry_in.unwrap_or_default();
        }
        let before = primary.calls();
        let res = router
            .generate(req())
            .await
            .expect("every request is served");
        if primary.calls() > before {
            primary_calls_at.push(now);
        }
        if res.provider == "primary" && first_primary_success.is_none() {
            first_primary_success = Some(now);
        }
        tokio::time::sleep_until(start + Duration::from_secs(s + 1)).await;
    }
    // While open (after the first few failures opened it), at most one attempt per
    // cool-down: attempts during the outage are the three opening ones plus one probe per
    // cool-down (2 s, then 4 s, the default cap) over the remaining 28 s.
    let outage: Vec<_> = primary_calls_at
        .iter()
        .filter(|t| **t < Duration::from_secs(30))
        .collect();
    assert!(
        outage.len() <= 3 + 7,
        "primary pestered during outage: {outage:?}"
    );
    let first = first_primary_success.expect("traffic returns to the primary");
    let bound = Duration::from_secs(30) + open_until_at_recovery.max(cool_down_at_recovery);
    assert!(
        first <= bound + Duration::from_secs(1),
        "returns within one cool-down: {first:?} > {bound:?}"
    );
    // Traffic is fully back at the end (ramp 30 s).
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
}

// ---------------------------------------------------------------------------------------
// 5. Request classes
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn reserved_and_preferred_classes() {
    let direct = Mock::new("direct");
    let azure = Mock::new("azure");
    let proxy = Mock::new("proxy");
    let enterprise = RequestClass::new("enterprise");
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&direct) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::reserved([RequestClass::INTERACTIVE])),
        )
        .provider_arc(
            Arc::clone(&azure) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::preferred([enterprise.clone()])),
        )
        .provider_arc(
            Arc::clone(&proxy) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::preferred([RequestClass::BATCH])),
        )
        .build()
        .unwrap();
    let send = |c: Option<RequestClass>| {
        let router = router.clone();
        async move { router.send_as(req().into(), c.as_ref()).await }
    };
    assert_eq!(
        send(Some(RequestClass::INTERACTIVE))
            .await
            .unwrap()
            .provider,
        "direct"
    );
    let res = send(Some(RequestClass::BATCH)).await.unwrap();
    assert_eq!(res.provider, "proxy", "batch prefers the proxy");
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "direct" && matches!(s.reason, SkipReason::Reserved { .. })));
    assert_eq!(
        send(Some(enterprise.clone())).await.unwrap().provider,
        "azure"
    );
    let res = send(None).await.unwrap();
    assert_eq!(
        res.provider, "azure",
        "no class: reserved provider not used"
    );
    // Preferred provider down: failover to the rest, never to a reserved one.
    proxy.set_default(Act::Fail(rate_limited()));
    let res = send(Some(RequestClass::BATCH)).await.unwrap();
    assert_eq!(res.provider, "azure");
    // Only a reserved provider and the class does not match: a clear error, no call.
    azure.set_default(Act::Fail(rate_limited()));
    let calls = direct.calls();
    let _ = send(Some(RequestClass::BATCH)).await;
    assert_eq!(direct.calls(), calls);
    // rank() honours classes too.
    let ranked = router
        .rank(&req().into(), Some(&RequestClass::INTERACTIVE))
        .unwrap();
    assert_eq!(ranked.order[0].0, "direct");
    let ranked = router.rank(&req().into(), None).unwrap();
    assert!(ranked.order.iter().all(|(n, _)| n != "direct"));
}

// ---------------------------------------------------------------------------------------
// 6. Hot reload
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn reload_under_200_in_flight_loses_nothing_and_keeps_state() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    let c = Mock::new("c");
    let d = Mock::new("d");
    for m in [&a, &b, &c, &d] {
        m.set_latency(Duration::from_secs(2));
    }
    let router = builder_with(&[&a, &b, &c])
        .strategy(Strategy::Weighted)
        .build()
        .unwrap();
    // Give `c` an open breaker (state that must survive the reload).
    c.set_default(Act::Fail(ErrorKind::Authentication));
    c.set_latency(Duration::ZERO);
    let ranked_first = router.rank(&req().into(), None).unwrap();
    assert_eq!(ranked_first.order.len(), 3);
    // Send until the strategy has tried `c` (its 401 opens the breaker).
    while c.calls() == 0 {
        router.generate(req()).await.unwrap();
    }
    assert_eq!(
        router.status().providers[2].breaker.state,
        BreakerState::Open
    );
    let a_counts_before = router.status().providers[0].health.successes;

    let mut handles = Vec::new();
    for _ in 0..200 {
        let r = router.clone();
        handles.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Replace: drop b, keep a and c (with new weights), add d.
    router
        .reload(
            Router::builder()
                .provider_arc(
                    Arc::clone(&a) as Arc<dyn Provider>,
                    ProviderOptions::new().weight(2.0),
                )
                .provider_arc(Arc::clone(&c) as Arc<dyn Provider>, ProviderOptions::new())
                .provider_arc(Arc::clone(&d) as Arc<dyn Provider>, ProviderOptions::new()),
        )
        .unwrap();
    let mut more = Vec::new();
    for _ in 0..50 {
        let r = router.clone();
        more.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    let mut ok = 0;
    for h in handles.into_iter().chain(more) {
        let res = h.await.unwrap().expect("no request lost");
        assert!(["a", "b", "d"].contains(&res.provider.as_str()));
        ok += 1;
    }
    assert_eq!(ok, 250);
    assert_eq!(router.provider_names(), vec!["a", "c", "d"]);
    let st = router.status();
    assert_eq!(st.providers[1].name, "c");
    assert_eq!(
        st.providers[1].breaker.state,
        BreakerState::Open,
        "c keeps its breaker"
    );
    assert!(
        st.providers[1].last_error.is_some(),
        "c keeps its last error"
    );
    assert!(
        st.providers[0].health.successes >= a_counts_before,
        "a keeps its health"
    );
    // A bad reload changes nothing.
    let err = router.reload(Router::builder()).unwrap_err();
    assert!(!err.field.is_empty());
    assert_eq!(router.provider_names(), vec!["a", "c", "d"]);
}

// ---------------------------------------------------------------------------------------
// 7. Metrics, status, tracing
// ---------------------------------------------------------------------------------------

mod rec {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };

    /// (kind, name) -> list of label sets seen, plus counter totals and descriptions.
    #[derive(Default, Debug)]
    pub struct Log {
        pub described: Vec<String>,
        pub seen: BTreeMap<(&'static str, String), Vec<BTreeMap<String, String>>>,
        pub counters: HashMap<String, u64>,
    }

    #[derive(Default, Clone)]
    pub struct TestRecorder(pub Arc<Mutex<Log>>);

    struct Handle {
        log: Arc<Mutex<Log>>,
        key: String,
    }
    impl CounterFn for Handle {
        fn increment(&self, v: u64) {
            *self
                .log
                .lock()
                .counters
                .entry(self.key.clone())
                .or_default() += v;
        }
        fn absolute(&self, v: u64) {
            self.log.lock().counters.insert(self.key.clone(), v);
        }
    }
    impl GaugeFn for Handle {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, _: f64) {}
    }
    impl HistogramFn for Handle {
        fn record(&self, _: f64) {}
    }

    impl TestRecorder {
        fn note(&self, kind: &'static str, key: &Key) -> Arc<Handle> {
            let labels: BTreeMap<String, String> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let id = format!("{}{:?}", key.name(), labels);
            self.0
                .lock()
                .seen
                .entry((kind, key.name().to_string()))
                .or_default()
                .push(labels);
            Arc::new(Handle {
                log: Arc::clone(&self.0),
                key: id,
            })
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn describe_gauge(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn describe_histogram(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().described.push(k.as_str().to_string());
        }
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.note("counter", key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.note("gauge", key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.note("histogram", key))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_documented_metric_is_emitted_with_its_labels() {
    use image_router::metrics as m;
    let recorder = rec::TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let a = Mock::new("a");
    let b = Mock::new("b");
    let router = builder_with(&[&a, &b])
        .cheap_probe(true)
        .retry_backoff(Duration::from_millis(1))
        .breaker(BreakerConfig {
            consecutive_failures: 2,
            ..BreakerConfig::default()
        })
        .build()
        .unwrap();
    // 429 on a, served by b: a failover and a rate limit.
    a.set_default(Act::Fail(rate_limited()));
    router.generate(req()).await.unwrap();
    // Two server errors on a open its breaker.
    a.set_default(Act::Fail(ErrorKind::Server));
    tokio::time::sleep(Duration::from_secs(2)).await; // the 429's block is over
    let r2 = router.generate(req()).await.unwrap();
    assert_eq!(r2.attempts.len(), 3, "{:?}", r2.attempts);
    assert_eq!(
        router.status().providers[0].breaker.state,
        BreakerState::Open
    );
    // After the cool-down, the (cheap) probe.
    tokio::time::sleep(Duration::from_secs(11)).await;
    a.set_default(Act::Ok);
    let r3 = router.generate(req()).await.unwrap();
    assert_eq!(r3.provider, "a", "{:?}", r3.attempts);
    // A failed request.
    a.set_default(Act::Fail(ErrorKind::InvalidRequest));
    let _ = router.generate(req()).await;

    image_router::metrics::describe();
    let log = recorder.0.lock();
    let expect: &[(&str, &str, &[&str])] = &[
        ("counter", m::REQUESTS_TOTAL, &["outcome"]),
        ("histogram", m::REQUEST_DURATION, &["outcome"]),
        ("counter", m::ATTEMPTS_TOTAL, &["provider", "outcome"]),
        ("histogram", m::ATTEMPT_DURATION, &["provider"]),
        ("counter", m::FAILOVERS_TOTAL, &["provider"]),
        ("counter", m::RATE_LIMITED_TOTAL, &["provider"]),
        ("counter", m::PROBES_TOTAL, &["provider", "result"]),
        (
            "counter",
            m::BREAKER_TRANSITIONS_TOTAL,
            &["provider", "from", "to"],
        ),
        ("gauge", m::BREAKER_STATE, &["provider"]),
        ("gauge", m::HEADROOM_RATIO, &["provider"]),
        ("gauge", m::SPEND_USD_TOTAL, &["ledger"]),
    ];
    for (_, name, _) in expect {
        assert!(
            log.described.iter().any(|d| d == name),
            "{name} not described"
        );
    }
    for (kind, name, labels) in expect {
        let seen = log
            .seen
            .get(&(*kind, name.to_string()))
            .unwrap_or_else(|| panic!("{kind} {name} never emitted; seen: {:?}", log.seen.keys()));
        for set in seen {
            let keys: Vec<&str> = set.keys().map(|k| k.as_str()).collect();
            let mut want: Vec<&str> = labels.to_vec();
            want.sort();
            assert_eq!(keys, want, "{name} labels");
        }
    }
    let transitions = &log.seen[&("counter", m::BREAKER_TRANSITIONS_TOTAL.to_string())];
    assert!(transitions
        .iter()
        .any(|l| l["provider"] == "a" && l["from"] == "closed" && l["to"] == "open"));
    let spend = &log.seen[&("gauge", m::SPEND_USD_TOTAL.to_string())];
    assert!(spend.iter().any(|l| l["ledger"] == "router"));
    assert!(spend.iter().any(|l| l["ledger"] == "b"));
    let requests: u64 = log
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with(m::REQUESTS_TOTAL))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(requests, 4, "{:?}", log.counters);
    let failovers: u64 = log
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with(m::FAILOVERS_TOTAL))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(failovers, 2, "{:?}", log.counters);
}

#[tokio::test]
async fn status_serializes_every_documented_field_and_never_a_key() {
    let key = format!("sk-{}", "Zq7".repeat(12));
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {
                "message": "Incorrect API key provided: sk-Zq7Z*****q7Zq. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
            }
        })))
        .mount(&server)
        .await;
    let openai = image_router::providers::OpenAi::builder()
        .name("openai")
        .base_url(format!("{}/v1", server.uri()))
        .api_key(key.clone())
        .build()
        .unwrap();
    let b = Mock::new("b");
    let router = Router::builder()
        .provider(openai)
        .provider_arc(
            Arc::clone(&b) as Arc<dyn Provider>,
            ProviderOptions::new().rpm(10),
        )
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    let st = router.status();
    let json = serde_json::to_value(&st).unwrap();
    let text = json.to_string();
    assert!(!text.contains(&key), "status leaks the key");
    assert!(!format!("{st:?}").contains(&key), "Debug leaks the key");
    for k in ["strategy", "default_model", "spend", "providers"] {
        assert!(json.get(k).is_some(), "status lacks {k}");
    }
    assert_eq!(json["strategy"], "scored");
    for p in json["providers"].as_array().unwrap() {
        for k in [
            "name",
            "kind",
            "priority",
            "breaker",
            "health",
            "score",
            "headroom",
            "spend",
            "cooldown",
            "last_error",
        ] {
            assert!(p.get(k).is_some(), "provider status lacks {k}: {p}");
        }
        for k in [
            "availability",
            "latency",
            "headroom",
            "budget",
            "priority",
            "total",
        ] {
            assert!(p["score"].get(k).is_some(), "score lacks {k}");
        }
        assert!(p["breaker"].get("state").is_some());
    }
    let p0 = &json["providers"][0];
    assert_eq!(
        p0["last_error"]["error"]["kind"]["kind"]
            .as_str()
            .or(p0["last_error"]["error"]["kind"].as_str()),
        Some("authentication"),
        "{p0}"
    );
    assert!(p0["cooldown"].is_object(), "401 cool-down shown: {p0}");
    // The last error comes with its explanation (issue 4: "last error with its explanation").
    let expl = &p0["last_error"]["explanation"];
    assert!(
        expl["cause"].as_str().is_some_and(|c| !c.is_empty())
            && expl["action"].as_str().is_some_and(|a| !a.is_empty()),
        "{p0}"
    );
    assert_eq!(json["providers"][1]["breaker"]["state"], "closed");
}

mod spans {
    use super::*;
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, Layer};

    /// Span id -> (name, fields so far). Global: a scoped subscriber's callsite interest
    /// races with tests running on other threads, so the test installs one global
    /// subscriber and picks its own spans out by unique names.
    pub static SPANS: Mutex<Vec<(u64, String, String)>> = Mutex::new(Vec::new());

    struct Fields<'a>(&'a mut String);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }

    pub struct Names;

    impl<S: Subscriber> Layer<S> for Names {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
            let mut f = String::new();
            attrs.record(&mut Fields(&mut f));
            SPANS
                .lock()
                .push((id.into_u64(), attrs.metadata().name().to_string(), f));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            let mut spans = SPANS.lock();
            if let Some(entry) = spans.iter_mut().rev().find(|e| e.0 == id.into_u64()) {
                values.record(&mut Fields(&mut entry.2));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn tracing_spans_per_request_and_per_attempt() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(spans::Names);
    // Only this test installs a subscriber in this binary.
    let _ = tracing::subscriber::set_global_default(subscriber);

    let a = Mock::new("trace-a");
    let b = Mock::new("trace-b");
    a.set_default(Act::Fail(rate_limited()));
    let router = builder_with(&[&a, &b]).build().unwrap();
    router.generate(req().model("trace-model")).await.unwrap();
    router.generate(req().model("trace-model")).await.unwrap();
    let spans = spans::SPANS.lock().clone();
    let requests: Vec<_> = spans
        .iter()
        .filter(|(_, n, f)| n == "image_router.request" && f.contains("trace-model"))
        .collect();
    let attempts: Vec<_> = spans
        .iter()
        .filter(|(_, n, f)| n == "image_router.attempt" && f.contains("trace-"))
        .collect();
    assert_eq!(requests.len(), 2, "{spans:?}");
    assert!(
        requests
            .iter()
            .all(|(_, _, f)| f.contains("provider=\"trace-b\"")),
        "the request span names the provider that served: {requests:?}"
    );
    // First request: a (429) then b; second: b (a is blocked for its retry-after).
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts
        .iter()
        .any(|(_, _, f)| f.contains("provider=\"trace-a\"")));
    assert!(attempts
        .iter()
        .any(|(_, _, f)| f.contains("provider=\"trace-b\"")));
}

/// Real image generation takes seconds. Comparable providers (same speed, or 1000 vs
/// 950 ms, all healthy): once each has been measured (an unmeasured provider is assumed
/// fast and tried once, by design, so latency differences can be discovered), every request
/// goes to the first, whatever the traffic rate. Before the fix, idle estimates decayed
/// toward zero: a fallback overtook the primary after a minute of idleness, and at one
/// request every two minutes the three providers took turns (a, b, c, a, b, a, c, b, ...).
#[tokio::test(start_paused = true)]
async fn scored_keeps_the_order_of_comparable_providers_at_any_rate() {
    for gap in [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(30),
        Duration::from_secs(120),
        Duration::from_secs(600),
    ] {
        for (la, lb, lc) in [(10_000, 10_000, 10_000), (1000, 950, 1000), (300, 300, 280)] {
            let a = Mock::new("a");
            let b = Mock::new("b");
            let c = Mock::new("c");
            a.set_latency(Duration::from_millis(la));
            b.set_latency(Duration::from_millis(lb));
            c.set_latency(Duration::from_millis(lc));
            let router = builder_with(&[&a, &b, &c]).build().unwrap();
            let mut served = Vec::new();
            for _ in 0..40 {
                served.push(router.generate(req()).await.unwrap().provider);
                tokio::time::sleep(gap).await;
            }
            // Each provider measured once at most...
            assert!(b.calls() <= 1 && c.calls() <= 1, "gap {gap:?}: {served:?}");
            // ...and from then on the configured order holds.
            assert!(
                served[3..].iter().all(|p| p == "a"),
                "gap {gap:?}, latencies {la}/{lb}/{lc}: {served:?}"
            );
        }
    }
}

/// The idle decay still does its job: a primary that lost its traffic for being slow is
/// re-measured once the others are no faster, and wins back when it is fast again.
#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_re_measured_and_wins_back() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    a.set_latency(Duration::from_millis(5000));
    b.set_latency(Duration::from_millis(500));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let mut served = Vec::new();
    for _ in 0..20 {
        served.push(router.generate(req()).await.unwrap().provider);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(served[2..].iter().all(|p| p == "b"), "{served:?}");
    a.set_latency(Duration::from_millis(500));
    let mut later = Vec::new();
    for _ in 0..120 {
        later.push(router.generate(req()).await.unwrap().provider);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let back = later.iter().position(|p| p == "a").expect("a re-measured");
    assert!(later[back..].iter().all(|p| p == "a"), "{later:?}");
}

/// With a realistic `default_latency`, unmeasured fallbacks stay behind a comparable
/// measured primary from the first request on, at any traffic rate.
#[tokio::test(start_paused = true)]
async fn realistic_default_latency_keeps_unmeasured_fallbacks_behind() {
    for gap in [Duration::ZERO, Duration::from_secs(600)] {
        let a = Mock::new("a");
        let b = Mock::new("b");
        for m in [&a, &b] {
            m.set_latency(Duration::from_secs(8));
        }
        let router = builder_with(&[&a, &b])
            .health(HealthConfig {
                default_latency: Duration::from_secs(8),
                ..HealthConfig::default()
            })
            .build()
            .unwrap();
        for _ in 0..20 {
            assert_eq!(router.generate(req()).await.unwrap().provider, "a");
            tokio::time::sleep(gap).await;
        }
        assert_eq!(b.calls(), 0, "gap {gap:?}");
    }
}

// ---------------------------------------------------------------------------------------
// More: concurrency, weighted split, reload of limits, bad settings
// ---------------------------------------------------------------------------------------

/// After the cool-down, twenty concurrent requests: exactly one reaches the recovering
/// provider (the probe); nobody is lost.
#[tokio::test(start_paused = true)]
async fn exactly_one_probe_under_concurrent_requests() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    a.set_default(Act::Fail(ErrorKind::Server));
    let router = builder_with(&[&a, &b])
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    while router.status().providers[0].breaker.state != BreakerState::Open {
        router.generate(req()).await.unwrap();
    }
    let opened_after = a.calls();
    tokio::time::sleep(Duration::from_secs(10)).await;
    a.set_default(Act::Ok);
    a.set_latency(Duration::from_secs(2));
    b.set_latency(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let r = router.clone();
        tasks.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    let mut by_a = 0;
    for t in tasks {
        if t.await.unwrap().expect("served").provider == "a" {
            by_a += 1;
        }
    }
    assert_eq!(a.calls() - opened_after, 1, "one probe only");
    assert_eq!(by_a, 1);
    assert_eq!(
        router.status().providers[0].breaker.state,
        BreakerState::Recovering
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_splits_by_weight() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&a) as Arc<dyn Provider>,
            ProviderOptions::new().weight(1.0),
        )
        .provider_arc(
            Arc::clone(&b) as Arc<dyn Provider>,
            ProviderOptions::new().weight(3.0),
        )
        .strategy(Strategy::Weighted)
        .build()
        .unwrap();
    for _ in 0..400 {
        router.generate(req()).await.unwrap();
    }
    let share_b = b.calls() as f64 / 400.0;
    // Expected 0.75 (equal headroom: power of two choices keeps the weight split).
    assert!((0.6..=0.9).contains(&share_b), "b got {share_b}");
}

/// Reload changes the limits of a provider that stays: its limiter log is kept and the new
/// limit applies at once.
#[tokio::test(start_paused = true)]
async fn reload_applies_new_limits_to_a_provider_that_stays() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    let router = builder_with(&[&a, &b])
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(router.generate(req()).await.unwrap().provider, "a");
    }
    router
        .reload(
            Router::builder()
                .strategy(Strategy::Ordered)
                .provider_arc(
                    Arc::clone(&a) as Arc<dyn Provider>,
                    ProviderOptions::new().rpm(3),
                )
                .provider_arc(Arc::clone(&b) as Arc<dyn Provider>, ProviderOptions::new()),
        )
        .unwrap();
    // The three requests already sent count against the new limit of 3 per minute.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b", "{:?}", res.skipped);
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "a" && matches!(s.reason, SkipReason::NoHeadroom { .. })));
    assert_eq!(router.status().providers[0].health.successes, 3);
}

#[test]
fn nonsense_breaker_and_health_settings_are_typed_errors_naming_the_field() {
    let a = Mock::new("a");
    let bad_breakers = [
        (
            BreakerConfig {
                failure_ratio: f64::NAN,
                ..BreakerConfig::default()
            },
            "failure_ratio",
        ),
        (
            BreakerConfig {
                failure_ratio: -0.5,
                ..BreakerConfig::default()
            },
            "failure_ratio",
        ),
        (
            BreakerConfig {
                ramp_start: 2.0,
                ..BreakerConfig::default()
            },
            "ramp_start",
        ),
        (
            BreakerConfig {
                cool_down: Duration::ZERO,
                ..BreakerConfig::default()
            },
            "cool_down",
        ),
        (
            BreakerConfig {
                cool_down_multiplier: f64::NAN,
                ..BreakerConfig::default()
            },
            "cool_down_multiplier",
        ),
    ];
    for (cfg, field) in bad_breakers {
        let err = builder_with(&[&a]).breaker(cfg).build().unwrap_err();
        assert!(err.field.contains(field), "{field}: {err:?}");
        assert!(err.field.contains("breaker"), "{field}: {err:?}");
    }
    let bad_health = [(
        HealthConfig {
            window: Duration::ZERO,
            ..HealthConfig::default()
        },
        "window",
    )];
    for (cfg, field) in bad_health {
        let err = builder_with(&[&a]).health(cfg).build().unwrap_err();
        assert!(err.field.contains(field), "{field}: {err:?}");
    }
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = Router::builder()
            .provider_arc(
                Arc::clone(&a) as Arc<dyn Provider>,
                ProviderOptions::new().weight(w),
            )
            .build()
            .unwrap_err();
        assert_eq!(err.field, "providers[0].weight");
    }
}

/// After an access denial, the provider is left alone for the whole long cool-down, then
/// gets exactly one probe.
#[tokio::test(start_paused = true)]
async fn access_denial_cool_down_then_one_probe() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    a.set_default(Act::Fail(ErrorKind::AccessDenied {
        reason: AccessDenial::OrganizationNotVerified,
    }));
    let router = builder_with(&[&a, &b]).build().unwrap();
    router.generate(req()).await.unwrap();
    assert_eq!(a.calls(), 1);
    for _ in 0..29 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b");
        assert!(res.skipped.iter().any(|s| s.provider == "a"));
    }
    assert_eq!(a.calls(), 1, "left alone for the default 300 s cool-down");
    a.set_default(Act::Ok);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a", "{:?}", res.skipped);
    assert_eq!(a.calls(), 2);
}

/// Headroom from live headers is a score component: a provider whose last answer said
/// `x-ratelimit-remaining-requests: 0` goes last (Scored and Ordered) until the reset.
#[tokio::test(start_paused = true)]
async fn live_headers_feed_the_headroom_component() {
    for strategy in [Strategy::Scored, Strategy::Ordered] {
        let a = Mock::new("a");
        let b = Mock::new("b");
        *a.headers.lock() = image_router::quota::headers::RateLimitHeaders {
            limit_requests: Some(5),
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        let router = builder_with(&[&a, &b]).strategy(strategy).build().unwrap();
        assert_eq!(router.generate(req()).await.unwrap().provider, "a");
        let ranked = router.rank(&req().into(), None).unwrap();
        assert_eq!(ranked.order[0].0, "b", "{strategy:?}: {ranked:?}");
        let a_score = &ranked.order.iter().find(|(n, _)| n == "a").unwrap().1;
        assert_eq!(a_score.inputs.headroom, 0.0);
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b", "{strategy:?}");
        assert_eq!(a.calls(), 1, "{strategy:?}: no 429 paid for");
        *a.headers.lock() = image_router::quota::headers::RateLimitHeaders::default();
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert_eq!(
            router.generate(req()).await.unwrap().provider,
            "a",
            "{strategy:?}"
        );
    }
}

/// The budget component: spend on a provider with a budget lowers its budget factor, and
/// `rank` shows it.
#[tokio::test(start_paused = true)]
async fn budget_left_is_a_score_component() {
    let a = Mock::new("a");
    let budget =
        image_router::budget::Budget::new(1.0, image_router::budget::BudgetPeriod::Day).unwrap();
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&a) as Arc<dyn Provider>,
            ProviderOptions::new().budget(budget),
        )
        .build()
        .unwrap();
    let before = router.rank(&req().into(), None).unwrap().order[0].1;
    assert_eq!(before.inputs.budget_left, Some(1.0));
    for _ in 0..5 {
        router.generate(req()).await.unwrap();
    }
    let after = router.rank(&req().into(), None).unwrap().order[0].1;
    let left = after.inputs.budget_left.unwrap();
    assert!(left < 1.0, "{after:?}");
    assert!(
        (after.budget - left.sqrt()).abs() < 1e-9,
        "default budget exponent 0.5"
    );
    let st = serde_json::to_value(router.status()).unwrap();
    assert!(st["providers"][0]["spend"].is_object());
}

/// The in-flight penalty spreads concurrent requests instead of piling them onto the first
/// provider (once both are measured).
#[tokio::test(start_paused = true)]
async fn in_flight_penalty_spreads_concurrent_requests() {
    let a = Mock::new("a");
    let b = Mock::new("b");
    for m in [&a, &b] {
        m.set_latency(Duration::from_secs(1));
    }
    let router = builder_with(&[&a, &b]).build().unwrap();
    // Measure both (b gets one exploratory request).
    for _ in 0..3 {
        router.generate(req()).await.unwrap();
    }
    let (a0, b0) = (a.calls(), b.calls());
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let r = router.clone();
        tasks.push(tokio::spawn(async move { r.generate(req()).await }));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (da, db) = (a.calls() - a0, b.calls() - b0);
    assert_eq!(da + db, 10);
    assert!(da >= 3 && db >= 3, "spread: a {da}, b {db}");
    let st = router.status();
    assert_eq!(st.providers[0].health.in_flight, 0);
    assert_eq!(st.providers[1].health.in_flight, 0);
}
