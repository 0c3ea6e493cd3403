//! The attempt loop: validate, plan, then per attempt admit → call → settle → decide.
//!
//! [`route`] reads top to bottom; the bookkeeping of one request (the queue of providers,
//! waits for rate-limit room, retries, the attempt trace) is [`Run`], below it. [`route`]
//! routes one model; a request that falls back to other models (`fallback.rs`) calls it once
//! per model with a [`Leg`]: the request's start (one deadline), its trace so far (one trace,
//! one `max_attempts`) and the fallback model, marked on every attempt and skip. What an error
//! means is not decided here but looked up in the policy table ([`super::policy`]).

pub(super) mod stream;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::Instrument;

use super::plan::{plan, resolve_model, Latency, Plan};
use super::policy::{self, Decision, Rule};
use super::slot::{Admitted, SettleArgs, Slot};
use super::snapshot::{Settings, Snapshot};
use super::store::Demand;
use crate::breaker::BreakerPass;
use crate::catalog::ModelSpec;
use crate::clock::SharedClock;
use crate::error::{Attempt, Skip, SkipReason};
use crate::error::{Error, ErrorKind, ProviderError};
use crate::health::InFlight;
use crate::metrics as m;
use crate::provider::CallContext;
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::limiter::Denied;
use crate::quota::tokens::{self, TokenEstimate};
use crate::request::ImageRequest;
use crate::request::RequestClass;
use crate::response::{ImageResponse, ProviderResponse};
use crate::score::ScoreBreakdown;

/// Where one model's routing stands in the whole request: when the request started (one
/// deadline for every model tried), the trace so far, and the fallback model this routing is
/// for (`None`: the requested model). See `fallback.rs`.
pub(crate) struct Leg {
    pub started: Instant,
    pub attempts: Vec<Attempt>,
    pub skipped: Vec<Skip>,
    pub fallback: Option<String>,
    /// The request comes exactly as it was validated against its model's catalog entry (by
    /// `prepare`, with preview mode off): [`route`] does not validate it a second time, which
    /// would give the same answer (issue 16). `false` for anything else.
    pub validated: bool,
}

impl Leg {
    /// The requested model's routing, starting now; `validated` as on [`Leg::validated`].
    pub fn first(started: Instant, validated: bool) -> Self {
        Self {
            started,
            attempts: Vec::new(),
            skipped: Vec::new(),
            fallback: None,
            validated,
        }
    }
}

/// What routing one model gives: the response, boxed, or the error. Boxed because the
/// 576-byte response is returned through several layers (this loop, the fallback loop, the
/// request) and each return moved it whole; a box moves as a pointer and is opened once,
/// by `Router::send_as` (a streamed answer sends it boxed as it is; issue 16).
pub(crate) type Routed = Result<Box<ImageResponse>, Error>;

/// Routes one request of one model on `snap` (see the module docs), continuing `leg`'s trace.
///
/// A function returning an `async move` block rather than an `async fn`: an `async fn` keeps
/// each argument twice in its future's state (rust-lang/rust#62958), the 224-byte request
/// among them, and every layer above moves this future whole (issue 16).
#[allow(clippy::manual_async_fn)] // On purpose: see above.
pub(crate) fn route<'a>(
    snap: &'a Snapshot,
    clock: &'a SharedClock,
    mut req: ImageRequest,
    class: Option<&'a RequestClass>,
    leg: Leg,
) -> impl Future<Output = Routed> + Send + 'a {
    async move {
        let settings = &snap.settings;

        // Validate against the model's catalog entry; estimate tokens and cost.
        let model = resolve_model(snap, &req);
        if req.model() != Some(model.as_str()) {
            req.set_model(model.clone());
        }
        record_on_request_span("model", &model);
        let spec = snap.catalog.model(&model);
        if !leg.validated {
            req.validate(spec.map(|s| &s.capabilities))?;
        }
        let estimate = tokens::estimate(&req, spec, snap.catalog.default_output_tokens_per_image());
        let est_tokens = estimate.total();
        let est_cost = snap.costs.estimate(&model, spec, &req, &estimate);
        // What the request weighs in its model's rate-limit window: one request, `n` images, the
        // estimated tokens.
        let demand = Demand::new(&model, u32::from(req.n()), est_tokens);

        // Plan: filter and rank.
        let plan = plan(snap, &req, &model, class, clock.now(), Latency::Image);
        plan.log(snap);
        let mut run = Run::new(settings, plan, leg);

        while let Some(idx) = run.next().await {
            let slot = &snap.providers[idx];
            // Admit: rate-limit room, budget and the breaker's pass.
            let Some((mut admitted, pass)) = run.admit(snap, idx, demand, &est_cost, &model).await
            else {
                continue;
            };

            // Call.
            let (mut attempt, in_flight) = run.begin(snap, idx, &model, &mut admitted);
            let (result, took) = call(slot, &req, run.attempt_timeout(), attempt.retry).await;
            attempt.took = took;

            // Settle: one outcome, applied to every component as the policy row says.
            let outcome = Outcome::of(snap, &result, &model, spec, &req, &estimate);
            let best_latency = || super::plan::latency_floor(snap.providers.iter());
            let args = outcome.settle_args(snap, &model, clock, &best_latency, Duration::ZERO);
            if let Some(rest) = slot.settle(admitted, pass, in_flight, &result, args) {
                rest.await;
            }
            super::publish_gauges(snap, slot, &model);

            // Decide.
            match result {
                Ok(resp) => {
                    let cost_usd = outcome.cost_usd;
                    let (images, tokens) = (demand.images, demand.tokens);
                    return Ok(
                        run.served(snap, slot, resp, model, cost_usd, attempt, images, tokens)
                    );
                }
                Err(err) => {
                    let rule = outcome.rule_of(&err, settings);
                    // Boxed: only a failed attempt takes this path, and its future (a
                    // back-off timer among it) would otherwise enlarge every request's (issue 16).
                    Box::pin(run.failed(idx, err, rule, attempt, outcome.wait)).await?;
                }
            }
        }
        Err(run.exhausted(snap))
    }
}

/// Records `field` on the current span, the request's (`image_router.request`, at info
/// level). With info off (no subscriber) that span is disabled and a record does nothing,
/// so the current span, about 100 instructions to find, is not looked up (issue 16).
pub(crate) fn record_on_request_span(field: &str, value: &str) {
    if tracing::level_enabled!(tracing::Level::INFO) {
        tracing::Span::current().record(field, value);
    }
}

/// What a call's result means for its settlement and for what comes next, the same for a
/// plain and a streamed attempt (`route/stream.rs`): the policy row of an error, the actual
/// cost of a success, and how long a rate limit keeps the provider out.
pub(super) struct Outcome {
    rule: Option<Rule>,
    cost_usd: Option<f64>,
    wait: Duration,
}

impl Outcome {
    /// The outcome of `result`, a call for `req` on `model` (its catalog entry `spec`) whose
    /// tokens were estimated as `estimate`.
    fn of(
        snap: &Snapshot,
        result: &Result<ProviderResponse, ProviderError>,
        model: &str,
        spec: Option<&ModelSpec>,
        req: &ImageRequest,
        estimate: &TokenEstimate,
    ) -> Self {
        let settings = &snap.settings;
        Outcome {
            rule: result
                .as_ref()
                .err()
                .map(|e| policy::rule(&e.kind, settings.policy())),
            cost_usd: result.as_ref().ok().and_then(|resp| {
                let usage = resp.usage.as_ref();
                let cost = snap.costs.actual(model, spec, req, usage, estimate).ok();
                cost.map(|c| c.usd)
            }),
            wait: match result {
                Err(e) => e.retry_after.unwrap_or(settings.rate_limit_wait),
                Ok(_) => settings.rate_limit_wait,
            },
        }
    }

    /// The settlement's arguments (`excluded`: time within the call that was not the
    /// provider's; `best_latency`: see [`SettleArgs::best_latency`]).
    fn settle_args<'a>(
        &self,
        snap: &'a Snapshot,
        model: &'a str,
        clock: &'a SharedClock,
        best_latency: &'a (dyn Fn() -> Option<Duration> + Sync),
        excluded: Duration,
    ) -> SettleArgs<'a> {
        SettleArgs {
            rule: self.rule,
            model,
            cost_usd: self.cost_usd,
            cooldown: snap.settings.cooldown,
            rate_limit_wait: self.wait,
            clock: clock.as_ref(),
            best_latency,
            excluded,
        }
    }

    /// The policy row of `err`, the error this outcome is of (`rule` is `Some` for every
    /// error: it was computed from the same result).
    fn rule_of(&self, err: &ProviderError, settings: &Settings) -> Rule {
        self.rule
            .unwrap_or_else(|| policy::rule(&err.kind, settings.policy()))
    }
}

/// What is known of an attempt besides its result.
struct Attempted {
    model: String,
    took: Duration,
    retry: u32,
    score: Option<ScoreBreakdown>,
}

/// One request's bookkeeping.
struct Run<'s> {
    settings: &'s Settings,
    plan: Plan,
    started: Instant,
    deadline: Instant,
    /// Waits for room end at the deadline, or earlier with `max_wait`.
    wait_limit: Instant,
    queue: VecDeque<usize>,
    /// Providers with no room now, and when they will have room.
    waiting: Vec<(usize, Instant)>,
    attempted: Vec<usize>,
    retried: Vec<usize>,
    attempts: Vec<Attempt>,
    skipped: Vec<Skip>,
    deadline_exceeded: bool,
    /// The fallback model this run is for, marked on its attempts and skips.
    fallback: Option<String>,
}

impl<'s> Run<'s> {
    fn new(settings: &'s Settings, mut plan: Plan, leg: Leg) -> Self {
        let started = leg.started;
        let deadline = later(started, settings.deadline);
        let mut skipped = leg.skipped;
        skipped.extend(std::mem::take(&mut plan.skipped).into_iter().map(|mut s| {
            s.fallback.clone_from(&leg.fallback);
            s
        }));
        let wait_limit = settings
            .max_wait
            .map_or(deadline, |w| deadline.min(later(Instant::now(), w)));
        Self {
            settings,
            // The order is only needed as the queue (no allocation: `From<Vec>` reuses it).
            queue: VecDeque::from(std::mem::take(&mut plan.order)),
            skipped,
            plan,
            started,
            deadline,
            wait_limit,
            waiting: Vec::new(),
            attempted: Vec::new(),
            retried: Vec::new(),
            attempts: leg.attempts,
            deadline_exceeded: false,
            fallback: leg.fallback,
        }
    }

    /// The next provider to try: from the queue, else the first to have room again (waiting
    /// for it if that is before the deadline); `None` when attempts or time are used up.
    async fn next(&mut self) -> Option<usize> {
        if self.attempts.len() >= self.settings.max_attempts as usize {
            return None;
        }
        if Instant::now() >= self.deadline {
            self.deadline_exceeded = true;
            return None;
        }
        match self.queue.pop_front() {
            Some(i) => Some(i),
            None => wait_for_room(&mut self.waiting, self.wait_limit).await,
        }
    }

    /// Takes provider `idx` for an attempt, the same for a plain and a streamed request:
    /// rate-limit room and budget in one step (the guard gives them back if the request is
    /// never sent), then the breaker's pass. `None` when either refuses; the refusal is
    /// recorded (a skip, or a wait for room).
    async fn admit<'p>(
        &mut self,
        snap: &'p Snapshot,
        idx: usize,
        demand: Demand<'_>,
        cost: &Result<Cost, PriceUnknown>,
        model: &str,
    ) -> Option<(Admitted<'p>, BreakerPass)> {
        let slot = &snap.providers[idx];
        let admitted = match slot.admit(demand, cost.clone()).await {
            Ok(a) => a,
            Err(refusal) => {
                self.refused(slot, idx, refusal);
                return None;
            }
        };
        match super::probe::breaker_pass(snap, slot, model, self.deadline).await {
            Ok(pass) => Some((admitted, pass)),
            Err(message) => {
                drop(admitted);
                self.skip(slot, SkipReason::CircuitOpen { message });
                None
            }
        }
    }

    /// Starts the attempt on provider `idx`, admitted with its breaker's pass: from now on
    /// the provider may bill the request. Gives what is known of the attempt before its
    /// result (`took` is set after the call) and health's record of the call in flight.
    fn begin(
        &mut self,
        snap: &Snapshot,
        idx: usize,
        model: &str,
        admitted: &mut Admitted<'_>,
    ) -> (Attempted, InFlight) {
        let slot = &snap.providers[idx];
        let attempt = Attempted {
            retry: u32::from(self.retried.contains(&idx)),
            model: slot.provider.wire_model(model),
            score: self.plan.score(snap, idx),
            took: Duration::ZERO,
        };
        self.attempted.push(idx);
        admitted.mark_sent();
        (attempt, slot.health.start())
    }

    fn attempt_timeout(&self) -> Duration {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        self.settings.attempt_timeout.min(remaining)
    }

    fn skip(&mut self, slot: &Slot, reason: SkipReason) {
        tracing::debug!(provider = slot.name(), reason = %reason, "skipped");
        let mut skip = Skip::new(slot.name(), reason);
        skip.fallback.clone_from(&self.fallback);
        self.skipped.push(skip);
    }

    /// The store refused the admission: skip the provider, or wait for its room.
    fn refused(&mut self, slot: &Slot, idx: usize, refusal: super::store::Refusal) {
        use super::store::Refusal;
        match refusal {
            Refusal::RateLimit(denied) => match denied.retry_in() {
                None => self.skip(slot, skip_reason(&denied)),
                Some(retry_in) => {
                    let at = later(Instant::now(), retry_in);
                    if at < self.wait_limit {
                        self.waiting.push((idx, at));
                    } else if !self.attempted.contains(&idx) {
                        let message =
                            format!("{denied}; waiting would pass the deadline or max_wait");
                        let retry_in = Some(retry_in);
                        self.skip(slot, SkipReason::NoHeadroom { retry_in, message });
                    }
                }
            },
            Refusal::Budget(e) => self.skip(
                slot,
                SkipReason::Budget {
                    message: e.to_string(),
                },
            ),
            Refusal::Store(e) => self.skip(
                slot,
                SkipReason::NoHeadroom {
                    retry_in: None,
                    message: e.to_string(),
                },
            ),
            Refusal::Unavailable(u) => self.skip(
                slot,
                SkipReason::CoolingDown {
                    cause: u.cause,
                    message: u.message,
                    remaining: u.remaining,
                },
            ),
        }
    }

    /// Providers not attempted yet that this request may still reach.
    fn untried(&self) -> usize {
        let fresh = |i: &usize| !self.attempted.contains(i);
        self.queue.iter().filter(|i| fresh(i)).count()
            + self.waiting.iter().filter(|(i, _)| fresh(i)).count()
    }

    /// A failed attempt: record it and act on the policy row's decision. `Err` ends the
    /// request with that error.
    async fn failed(
        &mut self,
        idx: usize,
        err: ProviderError,
        rule: Rule,
        a: Attempted,
        wait: Duration,
    ) -> Result<(), Error> {
        m::attempt(&err.provider, err.outcome().as_str(), a.took);
        if rule.possibly_billed() {
            m::possibly_billed(&err.provider);
        }
        let timed_out_by_deadline = err.is_timeout() && Instant::now() >= self.deadline;
        match rule.decision {
            Decision::Return => {
                self.push_failure(&err, &rule, &a);
                return Err(Error::Rejected {
                    error: err,
                    attempts: std::mem::take(&mut self.attempts),
                    skipped: std::mem::take(&mut self.skipped),
                });
            }
            Decision::FailoverRateLimited => {
                m::rate_limited(&err.provider);
                let at = later(Instant::now(), wait);
                if at < self.wait_limit {
                    self.waiting.push((idx, at));
                }
            }
            Decision::Failover => {}
            Decision::Retry => {
                // A retry on the same provider only while every untried provider still gets
                // its attempt, in attempts and in time.
                let untried = self.untried();
                let left =
                    (self.settings.max_attempts as usize).saturating_sub(self.attempts.len() + 1);
                let backoff = jittered(self.settings.retry_backoff);
                let per_provider = u32::try_from(untried)
                    .ok()
                    .and_then(|n| self.settings.attempt_timeout.checked_mul(n))
                    .unwrap_or(Duration::MAX);
                let needed = backoff.saturating_add(per_provider);
                if a.retry == 0
                    && !timed_out_by_deadline
                    && left > untried
                    && (untried == 0 || later(Instant::now(), needed) < self.deadline)
                {
                    self.retried.push(idx);
                    if later(Instant::now(), backoff) < self.deadline {
                        tokio::time::sleep(backoff).await;
                        self.queue.push_front(idx);
                    }
                }
            }
        }
        self.push_failure(&err, &rule, &a);
        if timed_out_by_deadline {
            // `next` ends the request: the deadline has passed.
            self.deadline_exceeded = true;
        }
        Ok(())
    }

    fn push_failure(&mut self, err: &ProviderError, rule: &Rule, a: &Attempted) {
        let mut attempt = Attempt::failure(&a.model, err.clone(), a.took, a.retry);
        attempt.possibly_billed = rule.possibly_billed();
        attempt.score = a.score;
        attempt.fallback.clone_from(&self.fallback);
        self.attempts.push(attempt);
    }

    /// The response for a served request.
    #[allow(clippy::too_many_arguments)]
    fn served(
        mut self,
        snap: &Snapshot,
        slot: &Slot,
        resp: ProviderResponse,
        model: String,
        cost_usd: Option<f64>,
        a: Attempted,
        images: u32,
        est_tokens: u64,
    ) -> Box<ImageResponse> {
        // Ranked last for lack of room and not reached: the response still says why.
        let no_room: Vec<usize> = self
            .plan
            .candidates
            .iter()
            .filter(|c| c.no_headroom)
            .map(|c| c.index)
            .collect();
        for i in no_room {
            let other = &snap.providers[i];
            if self.attempted.contains(&i)
                || self
                    .skipped
                    .iter()
                    .any(|s| s.provider == other.name() && s.fallback == self.fallback)
            {
                continue;
            }
            // Room that came back meanwhile was simply not needed.
            if let Err(denied) = other
                .store
                .rate_limit_check(Demand::new(&model, images, est_tokens))
            {
                self.skip(other, skip_reason(&denied));
            }
        }
        let mut attempt = Attempt::success(slot.name(), a.model, resp.status, a.took, a.retry);
        attempt.score = a.score;
        attempt.fallback.clone_from(&self.fallback);
        // Room for this one attempt only: a first push would reserve four (about 1.7 KB,
        // past the allocator's small-size cache) for a trace that is nearly always one long.
        self.attempts.reserve_exact(1);
        self.attempts.push(attempt);
        m::attempt_keyed(&slot.metric_keys, "success", a.took);
        record_on_request_span("provider", slot.name());
        if self.attempts.len() > 1 {
            m::failover_keyed(&slot.metric_keys);
        }
        Box::new(ImageResponse {
            images: resp.images,
            provider: slot.name().to_string(),
            model,
            usage: resp.usage,
            cost_usd,
            created: resp.created,
            request_id: resp.request_id,
            rate_limits: resp.rate_limits,
            attempts: self.attempts,
            skipped: self.skipped,
            elapsed: self.started.elapsed(),
            score: a.score,
            cached: false,
            // Filled in by `fallback.rs`, which knows what was asked.
            preview: None,
            fallback: None,
        })
    }

    /// The error when no attempt served the request.
    fn exhausted(mut self, snap: &Snapshot) -> Error {
        if Instant::now() >= self.deadline {
            self.deadline_exceeded = true;
        }
        // Providers that never got room before the end.
        for (idx, at) in std::mem::take(&mut self.waiting) {
            if !self.attempted.contains(&idx) {
                let retry_in = Some(at.saturating_duration_since(Instant::now()));
                let message = "rate limit has no room for this request now".to_string();
                self.skip(
                    &snap.providers[idx],
                    SkipReason::NoHeadroom { retry_in, message },
                );
            }
        }
        Error::Exhausted {
            attempts: self.attempts,
            skipped: self.skipped,
            deadline_exceeded: self.deadline_exceeded,
        }
    }
}

/// When no provider is left to try, waits for the one that has room first, if that is before
/// the deadline (waiting only to time out is pointless). Returns its index.
async fn wait_for_room(waiting: &mut Vec<(usize, Instant)>, deadline: Instant) -> Option<usize> {
    let (pos, at) = waiting
        .iter()
        .enumerate()
        .map(|(pos, (_, at))| (pos, *at))
        .min_by_key(|(_, at)| *at)?;
    if at >= deadline {
        return None;
    }
    let (idx, _) = waiting.remove(pos);
    tracing::debug!(
        wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
        "waiting for rate-limit room"
    );
    tokio::time::sleep_until(at).await;
    Some(idx)
}

/// Why a provider's rate limiter refused a request, as a skip reason.
fn skip_reason(denied: &Denied) -> SkipReason {
    match denied {
        Denied::NoAccess(na) => SkipReason::Tier {
            message: na.to_string(),
        },
        other => SkipReason::NoHeadroom {
            retry_in: other.retry_in(),
            // The wait is the skip's own field, shown once by its Display.
            message: other.reason(),
        },
    }
}

/// One provider call, bounded by `timeout` whatever the provider does: by the router's timer,
/// or by the provider's own for a provider that [bounds its calls](crate::Provider::bounds_its_calls).
async fn call(
    slot: &Slot,
    req: &ImageRequest,
    timeout: Duration,
    retry: u32,
) -> (Result<ProviderResponse, ProviderError>, Duration) {
    let mut ctx = CallContext::new(timeout);
    ctx.retry = retry;
    let span = tracing::info_span!("image_router.attempt", provider = slot.name(), retry);
    let started = Instant::now();
    // A provider that bounds its own calls by `ctx.timeout` (the built-in ones) gets no
    // second timer on the same deadline.
    let result = if slot.provider.bounds_its_calls() {
        Ok(slot.provider.send(req, &ctx).instrument(span).await)
    } else {
        tokio::time::timeout(timeout, slot.provider.send(req, &ctx))
            .instrument(span)
            .await
    };
    let took = started.elapsed();
    let result = match result {
        Ok(Ok(resp)) if resp.images.is_empty() => Err(ProviderError::new(
            slot.name(),
            ErrorKind::Decode,
            "the provider answered without any image",
        )
        .with_status(resp.status)),
        Ok(Ok(resp)) => Ok(resp),
        // Every provider's error, built-in or the application's own, passes here: a URL with
        // credentials in its message (a proxy echoing its own address) is masked once, before
        // the message reaches the trace, `Error`'s Display, `explain()`, `status()` or a log.
        Ok(Err(e)) => Err(e.with_masked_urls()),
        Err(_) => Err(ProviderError::new(
            slot.name(),
            ErrorKind::Timeout { sent: true },
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    };
    (result, took)
}

/// `at + by`, or about thirty years from `at` when that is past what an `Instant` holds (a
/// huge setting or `retry-after` must not panic; it only means "not before the deadline").
pub(super) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(Duration::from_secs(30 * 365 * 86_400)))
        .unwrap_or(at)
}

/// `base` minus up to 25 % at random.
fn jittered(base: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.75..=1.0);
    base.mul_f64(f)
}
