//! The [`Router`]: sends each image request to the best provider that can serve it and fails
//! over to the next one when a provider is rate limited, denied, unable to serve it, or down.
//!
//! A request's path reads top to bottom in [`Router::send`]:
//! 1. **validate** the request against the model's catalog entry (typed error naming the field,
//!    no network call);
//! 2. **filter by capability and state**: providers that cannot serve it (webp on Azure, edits
//!    on a chat-mode proxy, an unknown model) or are cooling down after a denial are skipped
//!    without a call;
//! 3. **rank**: configured priority; providers that recently answered 429 go last;
//! 4. **call** with a per-attempt timeout capped by the request's deadline;
//! 5. **classify** the outcome ([`crate::ErrorKind`]);
//! 6. **decide** by the routing table in `decision.rs` (fail over, retry once, wait out a
//!    rate limit, or return).
//!
//! Nothing is lost: every request ends as images or as an [`Error`] listing every attempt and
//! every skipped provider, and no request waits past its deadline.

mod builder;
mod decision;
mod snapshot;
mod state;
mod status;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;
use tracing::Instrument;

pub use builder::{
    ProviderOptions, RouterBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_DEADLINE,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE_LIMIT_WAIT, DEFAULT_RETRY_BACKOFF,
};
use decision::{decide, Decision};
use snapshot::{Slot, Snapshot};
pub use status::{CooldownStatus, LastError, ProviderStatus, RouterStatus};

use crate::attempt::{Attempt, Skip, SkipReason};
use crate::breaker::DenyReason;
use crate::budget::{reserve_cost, LedgerSnapshot};
use crate::class::RequestClass;
use crate::clock::SharedClock;
use crate::error::{Error, ErrorKind, ProviderError};
use crate::error::{NotFoundKind, Outcome};
use crate::limiter::{Denied, Headroom};
use crate::metrics as m;
use crate::provider::CallContext;
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ImageResponse;
use crate::score::{ScoreBreakdown, ScoreInputs};
use crate::strategy::Candidate;
use crate::tokens;

/// Routes image requests across providers. Cheap to clone (shared state); `Send + Sync`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use image_router::{providers::{OpenAi, Azure}, GenerateRequest, Router, Size};
/// let router = Router::builder()
///     .provider(OpenAi::builder().api_key(std::env::var("OPENAI_API_KEY")?).build()?)
///     .provider(
///         Azure::builder()
///             .endpoint("https://my-resource.openai.azure.com")
///             .api_key(std::env::var("AZURE_OPENAI_API_KEY")?)
///             .deployment("gpt-image-1", "my-gpt-image-1")
///             .build()?,
///     )
///     .build()?;
/// let res = router
///     .generate(GenerateRequest::new("a watercolor fox").model("gpt-image-1").size(Size::SQUARE))
///     .await?;
/// res.images[0].save("fox.png")?;
/// println!("served by {} after {} attempt(s)", res.provider, res.attempts.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<RouterInner>,
}

#[derive(Debug)]
struct RouterInner {
    snapshot: ArcSwap<Snapshot>,
    clock: SharedClock,
}

/// The per-request bookkeeping: every attempt and skip, in order.
#[derive(Default)]
struct Trace {
    attempts: Vec<Attempt>,
    skipped: Vec<Skip>,
}

impl Router {
    /// A new builder.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::new()
    }

    /// Names of the providers, in priority order.
    pub fn provider_names(&self) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .providers
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    }

    /// A serializable snapshot of every provider's breaker, health, score components,
    /// headroom, spend, cool-down and last error.
    ///
    /// ```
    /// # use image_router::{Router, providers::OpenAi};
    /// let router = Router::builder()
    ///     .provider(OpenAi::builder().api_key("sk-test").build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let status = router.status();
    /// assert_eq!(status.providers[0].name, "openai");
    /// println!("{}", serde_json::to_string_pretty(&status).unwrap());
    /// ```
    pub fn status(&self) -> RouterStatus {
        let snap = self.inner.snapshot.load();
        status::build(&snap, self.inner.clock.now())
    }

    /// Replaces the provider set and settings at runtime.
    ///
    /// Requests in flight finish on the snapshot they started with; new requests use the new
    /// one. Providers that stay (same name) keep their cool-downs, limiter log, spend, health
    /// and breaker state, with the new limits, budgets and weights applied; providers that are
    /// gone are dropped when their last request ends. The builder's clock is ignored (the
    /// router keeps its own). On error nothing changes.
    ///
    /// ```
    /// # use image_router::{Router, ProviderOptions, providers::OpenAi};
    /// # fn p(name: &str) -> OpenAi { OpenAi::builder().name(name).api_key("k").build().unwrap() }
    /// let router = Router::builder().provider(p("a")).build().unwrap();
    /// router
    ///     .reload(Router::builder().provider_with(p("a"), ProviderOptions::new().rpm(10)).provider(p("b")))
    ///     .unwrap();
    /// assert_eq!(router.provider_names(), vec!["a", "b"]);
    /// ```
    pub fn reload(&self, builder: RouterBuilder) -> Result<(), crate::error::ConfigError> {
        let current = self.inner.snapshot.load_full();
        let next = builder.into_snapshot(self.inner.clock.clone(), Some(&current))?;
        self.inner.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// How the router would rank providers for `request` right now, without sending it: the
    /// providers in the order they would be tried, each with every component of its score,
    /// and the providers that would be skipped, with the reason.
    ///
    /// ```
    /// # use image_router::{Router, GenerateRequest, providers::OpenAi};
    /// # let router = Router::builder()
    /// #     .provider(OpenAi::builder().api_key("k").build().unwrap())
    /// #     .build().unwrap();
    /// let ranking = router.rank(&GenerateRequest::new("a fox").into(), None).unwrap();
    /// for (provider, score) in &ranking.order {
    ///     println!("{provider}: {:.3} (latency {:.3})", score.total, score.latency);
    /// }
    /// ```
    pub fn rank(
        &self,
        request: &ImageRequest,
        class: Option<&RequestClass>,
    ) -> Result<Ranked, crate::error::ValidationError> {
        let snap = self.inner.snapshot.load();
        let mut req = request.clone();
        let model = resolve_model(&snap, &req);
        req.set_model(model.clone());
        req.validate(snap.catalog.model(&model).map(|s| &s.capabilities))?;
        let plan = plan(&snap, &req, &model, class, self.inner.clock.now());
        Ok(Ranked {
            order: plan
                .order
                .iter()
                .map(|&i| {
                    let inputs = plan
                        .candidates
                        .iter()
                        .find(|c| c.index == i)
                        .map(|c| c.inputs)
                        .unwrap_or_default();
                    (
                        snap.providers[i].name().to_string(),
                        snap.scorer.score(&inputs),
                    )
                })
                .collect(),
            skipped: plan.skipped,
        })
    }

    /// Running spend totals: the router's ledger first, then each provider's.
    pub fn spend(&self) -> Vec<LedgerSnapshot> {
        let snap = self.inner.snapshot.load();
        std::iter::once(snap.budget.snapshot())
            .chain(snap.providers.iter().map(|s| s.budget.snapshot()))
            .collect()
    }

    /// Rate-limit headroom of each provider, in priority order.
    pub fn headroom(&self) -> Vec<(String, Headroom)> {
        let snap = self.inner.snapshot.load();
        snap.providers
            .iter()
            .map(|s| (s.name().to_string(), s.limiter.headroom()))
            .collect()
    }

    /// Generates images (`POST /images/generations`).
    pub async fn generate(&self, request: GenerateRequest) -> Result<ImageResponse, Error> {
        self.send(ImageRequest::Generate(request)).await
    }

    /// Edits images (`POST /images/edits`).
    pub async fn edit(&self, request: EditRequest) -> Result<ImageResponse, Error> {
        self.send(ImageRequest::Edit(request)).await
    }

    /// Routes one request of either kind.
    pub async fn send(&self, request: ImageRequest) -> Result<ImageResponse, Error> {
        self.send_as(request, None).await
    }

    /// Routes a request of a [`RequestClass`]: providers reserved for other classes are not
    /// used, and providers preferred by this class are tried first.
    ///
    /// ```no_run
    /// # async fn run(router: image_router::Router) -> Result<(), image_router::Error> {
    /// use image_router::{GenerateRequest, RequestClass};
    /// let res = router
    ///     .send_as(GenerateRequest::new("a fox").into(), Some(&RequestClass::BATCH))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_as(
        &self,
        request: ImageRequest,
        class: Option<&RequestClass>,
    ) -> Result<ImageResponse, Error> {
        let snap = self.inner.snapshot.load_full();
        let span = tracing::info_span!(
            "image_router.request",
            op = request.endpoint(),
            model = tracing::field::Empty,
            provider = tracing::field::Empty,
        );
        let started = tokio::time::Instant::now();
        let result = self.route(&snap, request, class).instrument(span).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e
                .cause()
                .map(|c| c.outcome().as_str())
                .unwrap_or(if e.is_invalid() {
                    "invalid"
                } else {
                    "no_provider"
                }),
        };
        m::request_finished(outcome, started.elapsed());
        result
    }

    async fn route(
        &self,
        snap: &Snapshot,
        mut req: ImageRequest,
        class: Option<&RequestClass>,
    ) -> Result<ImageResponse, Error> {
        let settings = &snap.settings;
        let started = tokio::time::Instant::now();
        let deadline = started + settings.deadline;
        let clock = &self.inner.clock;

        // 1. Validate.
        let model = resolve_model(snap, &req);
        req.set_model(model.clone());
        tracing::Span::current().record("model", model.as_str());
        let spec = snap.catalog.model(&model);
        req.validate(spec.map(|s| &s.capabilities))?;

        let estimate = tokens::estimate(&req, spec, snap.catalog.default_output_tokens_per_image());
        let est_tokens = estimate.total();
        let est_cost = snap.costs.estimate(&model, spec, &req, &estimate);

        // 2. Filter by capability, class and remembered state; 3. rank.
        let plan = plan(snap, &req, &model, class, clock.now());
        // Ranked last for lack of room: if the request is served before they are reached,
        // the response still says why they were passed over.
        let no_room: Vec<usize> = plan
            .candidates
            .iter()
            .filter(|c| c.no_headroom)
            .map(|c| c.index)
            .collect();
        let mut trace = Trace {
            attempts: Vec::new(),
            skipped: plan.skipped,
        };
        let mut queue: VecDeque<usize> = plan.order.into_iter().collect();

        // 4–6. Reserve, call, classify, decide.
        // Providers with no room now, and when they will have room.
        let mut waiting: Vec<(usize, tokio::time::Instant)> = Vec::new();
        let mut attempted: Vec<usize> = Vec::new();
        let mut retried: Vec<usize> = Vec::new();
        let mut deadline_exceeded = false;
        // Waits for room end at the deadline, or earlier with `max_wait`.
        let wait_limit = settings
            .max_wait
            .map_or(deadline, |w| deadline.min(tokio::time::Instant::now() + w));
        loop {
            if trace.attempts.len() >= settings.max_attempts as usize {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                deadline_exceeded = true;
                break;
            }
            let idx = match queue.pop_front() {
                Some(i) => i,
                None => match wait_for_room(&mut waiting, wait_limit).await {
                    Some(i) => i,
                    None => break,
                },
            };
            let slot = &snap.providers[idx];

            // Reserve rate-limit capacity without waiting: another provider may have room.
            let permit = match slot.limiter.try_acquire(est_tokens) {
                Ok(p) => p,
                Err(denied) => {
                    match denied.retry_in() {
                        None => trace.skip(slot, skip_reason(&denied)),
                        Some(retry_in) => {
                            let at = tokio::time::Instant::now() + retry_in;
                            if at < wait_limit {
                                waiting.push((idx, at));
                            } else if !attempted.contains(&idx) {
                                trace.skip(
                                    slot,
                                    SkipReason::NoHeadroom {
                                        retry_in: Some(retry_in),
                                        message: format!(
                                            "{denied}; waiting would pass the deadline or max_wait"
                                        ),
                                    },
                                );
                            }
                        }
                    }
                    continue;
                }
            };
            // Reserve the estimated cost on the provider's and the router's budgets.
            let reservation = match reserve_cost(&[&slot.budget, &snap.budget], est_cost.clone()) {
                Ok(r) => r,
                Err(e) => {
                    permit.cancel();
                    trace.skip(
                        slot,
                        SkipReason::Budget {
                            message: e.to_string(),
                        },
                    );
                    continue;
                }
            };

            // The circuit breaker lets the call through (or it is the probe after a cool-down,
            // optionally spent on a cheap check first).
            let pass = match breaker_pass(snap, slot, &model, deadline).await {
                Ok(p) => p,
                Err(message) => {
                    permit.cancel();
                    reservation.release();
                    trace.skip(slot, SkipReason::CircuitOpen { message });
                    continue;
                }
            };

            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let timeout = settings.attempt_timeout.min(remaining);
            let retry = u32::from(retried.contains(&idx));
            let wire_model = slot.provider.wire_model(&model);
            attempted.push(idx);
            let in_flight = slot.health.start();
            let (result, took) = call(slot, &req, timeout, retry).await;
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(e) => e.outcome(),
            };
            in_flight.finish(outcome);
            if matches!(outcome, Outcome::Success | Outcome::Timeout) {
                // The context of this measurement: the best latency known right now.
                if let Some(best) = latency_floor(snap.providers.iter()) {
                    slot.health.set_measured_against(best);
                }
            }
            report_to_breaker(slot, pass, outcome, result.as_ref().err());
            match result {
                Ok(resp) => {
                    slot.limiter.observe_headers(&resp.rate_limits);
                    match &resp.usage {
                        Some(u) => permit.reconcile_usage(u),
                        None => drop(permit),
                    }
                    let cost = snap
                        .costs
                        .actual(&model, spec, &req, resp.usage.as_ref(), &estimate)
                        .ok();
                    reservation.commit(cost.as_ref().map_or(0.0, |c| c.usd));
                    publish_gauges(snap, slot);
                    for &i in &no_room {
                        let other = &snap.providers[i];
                        if attempted.contains(&i)
                            || trace.skipped.iter().any(|s| s.provider == other.name())
                        {
                            continue;
                        }
                        match other.limiter.try_acquire(est_tokens) {
                            // Room came back meanwhile: it was simply not needed.
                            Ok(p) => p.cancel(),
                            Err(denied) => trace.skip(other, skip_reason(&denied)),
                        }
                    }
                    trace.attempts.push(Attempt::success(
                        slot.name(),
                        &wire_model,
                        resp.status,
                        took,
                        retry,
                    ));
                    m::attempt(slot.name(), "success", took);
                    tracing::Span::current().record("provider", slot.name());
                    if trace.attempts.len() > 1 {
                        m::failover(slot.name());
                    }
                    return Ok(ImageResponse {
                        images: resp.images,
                        provider: slot.name().to_string(),
                        model,
                        usage: resp.usage,
                        cost_usd: cost.map(|c| c.usd),
                        created: resp.created,
                        request_id: resp.request_id,
                        rate_limits: resp.rate_limits,
                        attempts: trace.attempts,
                        skipped: trace.skipped,
                        elapsed: started.elapsed(),
                    });
                }
                Err(err) => {
                    reservation.release();
                    // A 429 (or any error answer) says how full the window is and when it
                    // resets. Not a tier denial's: its "limit 0" is no rate signal.
                    if let (Some(h), false) = (
                        &err.rate_limits,
                        matches!(err.kind, ErrorKind::AccessDenied { .. }),
                    ) {
                        slot.limiter.observe_headers(h);
                    }
                    slot.state
                        .set_last_error(&err, std::time::SystemTime::now());
                    publish_gauges(snap, slot);
                    // A provider error that did no work for the account gives the capacity back.
                    if matches!(
                        err.kind,
                        ErrorKind::Server | ErrorKind::Decode | ErrorKind::Timeout { sent: true }
                    ) {
                        drop(permit);
                    } else {
                        permit.cancel();
                    }
                    m::attempt(slot.name(), err.outcome().as_str(), took);
                    let timed_out_by_deadline =
                        err.is_timeout() && tokio::time::Instant::now() >= deadline;
                    let decision = decide(&err.kind, settings.content_policy_failover);
                    let now = clock.now();
                    match decision {
                        Decision::Return => {
                            trace.attempts.push(Attempt::failure(
                                &wire_model,
                                err.clone(),
                                took,
                                retry,
                            ));
                            return Err(Error::Rejected {
                                error: err,
                                attempts: trace.attempts,
                                skipped: trace.skipped,
                            });
                        }
                        Decision::FailoverRateLimited => {
                            m::rate_limited(slot.name());
                            let wait = err.retry_after.unwrap_or(settings.rate_limit_wait);
                            slot.limiter.on_rate_limited(Some(wait));
                            let at = tokio::time::Instant::now() + wait;
                            if at < wait_limit {
                                waiting.push((idx, at));
                            }
                        }
                        Decision::FailoverCooldown => {
                            slot.state.cool_provider(&err, now, settings.cooldown)
                        }
                        Decision::FailoverCooldownModel => {
                            slot.state.cool_model(&model, &err, now, settings.cooldown)
                        }
                        Decision::Failover => {}
                        Decision::RetryThenFailover => {
                            if retry == 0 && !timed_out_by_deadline {
                                retried.push(idx);
                                let backoff = jittered(settings.retry_backoff);
                                if tokio::time::Instant::now() + backoff < deadline {
                                    tokio::time::sleep(backoff).await;
                                    queue.push_front(idx);
                                }
                            }
                        }
                    }
                    trace
                        .attempts
                        .push(Attempt::failure(&wire_model, err, took, retry));
                    if timed_out_by_deadline {
                        deadline_exceeded = true;
                        break;
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            deadline_exceeded = true;
        }
        // Providers that never got room before the end.
        for (idx, at) in waiting {
            if !attempted.contains(&idx) {
                let slot = &snap.providers[idx];
                trace.skip(
                    slot,
                    SkipReason::NoHeadroom {
                        retry_in: Some(at.saturating_duration_since(tokio::time::Instant::now())),
                        message: "rate limit has no room for this request now".to_string(),
                    },
                );
            }
        }
        Err(Error::Exhausted {
            attempts: trace.attempts,
            skipped: trace.skipped,
            deadline_exceeded,
        })
    }
}

/// When no provider is left to try, waits for the one that has room first, if that is before
/// the deadline (waiting only to time out is pointless). Returns its index.
async fn wait_for_room(
    waiting: &mut Vec<(usize, tokio::time::Instant)>,
    deadline: tokio::time::Instant,
) -> Option<usize> {
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
        wait_ms = at
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64,
        "waiting for rate-limit room"
    );
    tokio::time::sleep_until(at).await;
    Some(idx)
}

/// The providers a request may go to, best first with their scores, and those left out.
struct Plan {
    /// Provider indices in the order to try.
    order: Vec<usize>,
    /// Every candidate with its score inputs (for [`Router::rank`]).
    candidates: Vec<Candidate>,
    skipped: Vec<Skip>,
}

/// Filters by capability, class and remembered state, then ranks with the strategy.
fn plan(
    snap: &Snapshot,
    req: &ImageRequest,
    model: &str,
    class: Option<&RequestClass>,
    now: Duration,
) -> Plan {
    let mut trace = Trace::default();
    // (index, headroom, breaker refusing) of each provider that passed the filters.
    let mut admitted: Vec<(usize, f64, bool)> = Vec::with_capacity(snap.providers.len());
    for (i, slot) in snap.providers.iter().enumerate() {
        if let Err(detail) = slot.provider.supports(req) {
            trace.skip(slot, SkipReason::Unsupported { detail });
            continue;
        }
        if !slot.options.classes.admits(class) {
            trace.skip(
                slot,
                SkipReason::Reserved {
                    message: format!(
                        "reserved for request classes {}",
                        slot.options
                            .classes
                            .reserved_for
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            );
            continue;
        }
        if let Some(c) = slot.state.cooldown(model, now) {
            trace.skip(
                slot,
                SkipReason::CoolingDown {
                    cause: c.cause,
                    message: c.message,
                    remaining: c.until.saturating_sub(now),
                },
            );
            continue;
        }
        let blocking = slot.breaker.is_blocking();
        admitted.push((i, slot.limiter.headroom().fraction, blocking));
    }
    // Idle estimates decay no lower than the best measured latency among the candidates
    // that can take the request (see `Health::cost_ms_floored`), so the floor is known
    // before any candidate's latency is read.
    let floor = latency_floor(
        admitted
            .iter()
            .filter(|(_, _, blocking)| !blocking)
            .map(|&(i, _, _)| &snap.providers[i]),
    );
    let candidates: Vec<Candidate> = admitted
        .into_iter()
        .map(|(i, headroom, blocking)| {
            let slot = &snap.providers[i];
            let mut c = Candidate::new(i, score_inputs(slot, i, headroom, floor));
            c.breaker_open = blocking;
            c.no_headroom = headroom <= 0.0;
            c.preferred = slot.options.classes.prefers(class);
            c
        })
        .collect();

    // 3. Rank (providers without headroom go last; open breakers are left out).
    let ranking = {
        let mut rng = rand::rng();
        snap.settings
            .strategy
            .rank(&candidates, snap.scorer.as_ref(), &mut rng)
    };
    for &i in ranking.skipped() {
        let slot = &snap.providers[i];
        let b = slot.breaker.snapshot();
        trace.skip(
            slot,
            SkipReason::CircuitOpen {
                message: breaker_message(&b),
            },
        );
    }
    Plan {
        order: ranking.order().to_vec(),
        candidates,
        skipped: trace.skipped,
    }
}

/// The request's model, or the router's default.
fn resolve_model(snap: &Snapshot, req: &ImageRequest) -> String {
    match req.model() {
        Some(m) => m.to_string(),
        None => snap
            .settings
            .default_model
            .clone()
            .unwrap_or_else(|| snap.catalog.default_model().to_string()),
    }
}

/// A ranking for one request (see [`Router::rank`]).
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct Ranked {
    /// Providers in the order they would be tried, with their scores.
    pub order: Vec<(String, ScoreBreakdown)>,
    /// Providers that would not be tried, and why.
    pub skipped: Vec<Skip>,
}

/// The lowest measured (undecayed) latency among `slots`: the floor of the idle decay.
fn latency_floor<'a>(slots: impl Iterator<Item = &'a Slot>) -> Option<Duration> {
    slots.filter_map(|s| s.health.measured_latency()).min()
}

/// Score inputs of one provider now; `floor` as for [`Health::cost_ms_floored`].
///
/// [`Health::cost_ms_floored`]: crate::health::Health::cost_ms_floored
fn score_inputs(
    slot: &Slot,
    priority: usize,
    headroom: f64,
    floor: Option<Duration>,
) -> ScoreInputs {
    // A breaker past its cool-down waits for one probe: the failures that opened it are
    // what the cool-down already paid for, and counting them again would rank the provider
    // last so the probe never happens while any other provider answers.
    let availability = if slot.breaker.state() == crate::breaker::BreakerState::HalfOpen {
        1.0
    } else {
        slot.health.availability()
    };
    ScoreInputs {
        availability,
        latency_ms: slot.health.cost_ms_floored(floor),
        headroom,
        budget_left: slot.budget_left(),
        priority,
        weight: slot.options.weight.unwrap_or(1.0),
    }
}

fn breaker_message(b: &crate::breaker::BreakerSnapshot) -> String {
    let mut m = format!("breaker {}", b.state.as_str());
    if let Some(r) = &b.reason {
        m.push_str(&format!(" ({r:?})"));
    }
    if let Some(d) = b.retry_in {
        m.push_str(&format!(", retry in {} ms", d.as_millis()));
    }
    if let Some(msg) = &b.message {
        m.push_str(&format!(": {msg}"));
    }
    m
}

fn breaker_level(state: crate::breaker::BreakerState) -> f64 {
    use crate::breaker::BreakerState as S;
    match state {
        S::Closed => 0.0,
        S::Recovering => 1.0,
        S::HalfOpen => 2.0,
        S::Open => 3.0,
    }
}

fn publish_gauges(snap: &Snapshot, slot: &Slot) {
    m::provider_gauges(
        slot.name(),
        breaker_level(slot.breaker.state()),
        slot.limiter.headroom().fraction,
        slot.budget.lifetime_spent_usd(),
    );
    m::router_spend(snap.budget.lifetime_spent_usd());
}

impl Trace {
    fn skip(&mut self, slot: &Slot, reason: SkipReason) {
        tracing::debug!(provider = slot.name(), reason = %reason, "skipped");
        self.skipped.push(Skip::new(slot.name(), reason));
    }
}

/// One provider call, bounded by `timeout` whatever the provider does.
/// Why a provider's rate limiter refused a request, as a skip reason.
fn skip_reason(denied: &Denied) -> SkipReason {
    match denied {
        Denied::NoAccess(na) => SkipReason::Tier {
            message: na.to_string(),
        },
        other => SkipReason::NoHeadroom {
            retry_in: other.retry_in(),
            message: other.to_string(),
        },
    }
}

/// Reports a call's outcome to the provider's breaker. Account problems (access denied,
/// authentication, a missing endpoint) open it with the long cool-down and keep the reason;
/// a missing model / deployment or an unsupported parameter is neutral (about this request,
/// not the provider); everything else counts as usual. A successful probe that starts the recovery also clears
/// the outage's failures from the health window (see [`Health::forget_outcomes`]).
///
/// [`Health::forget_outcomes`]: crate::health::Health::forget_outcomes
fn report_to_breaker(
    slot: &Slot,
    pass: crate::breaker::BreakerPass,
    outcome: Outcome,
    err: Option<&ProviderError>,
) {
    match err.map(|e| (&e.kind, e)) {
        Some((ErrorKind::AccessDenied { reason }, e)) => {
            pass.open_for(*reason, e.message.clone());
        }
        Some((ErrorKind::Authentication, e)) => {
            pass.open_for(DenyReason::Authentication, e.message.clone());
        }
        Some((
            ErrorKind::NotFound {
                what: what @ NotFoundKind::Endpoint,
            },
            e,
        )) => {
            pass.open_for(*what, e.message.clone());
        }
        // A model or deployment this provider lacks, or a parameter it does not take, is
        // about this request only: the provider answered and serves other requests fine
        // (the model cool-down covers the model). Counting it as a fault would let a few
        // requests for an unknown model open the breaker for every model.
        other => {
            let counted = match other {
                Some((ErrorKind::NotFound { .. }, _)) => Outcome::InvalidRequest,
                _ => outcome,
            };
            let transition = pass.record(counted);
            if transition.is_some_and(|t| t.to == crate::breaker::BreakerState::Recovering) {
                slot.health.forget_outcomes();
            }
        }
    }
}

/// A pass from the provider's breaker, or why there is none (the skip message). With
/// [`RouterBuilder::cheap_probe`](crate::RouterBuilder::cheap_probe), a half-open probe pass
/// is first spent on [`cheap_probe`]: a failed check re-opens the breaker; a good one starts
/// the recovery ramp, which then decides whether this request may follow.
async fn breaker_pass(
    snap: &Snapshot,
    slot: &Slot,
    model: &str,
    deadline: tokio::time::Instant,
) -> Result<crate::breaker::BreakerPass, String> {
    let pass = slot.breaker.acquire().map_err(|r| r.to_string())?;
    if !(pass.is_probe() && snap.settings.cheap_probe) {
        return Ok(pass);
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    match cheap_probe(slot, model, snap.settings.attempt_timeout.min(remaining)).await {
        ProbeVerdict::Unsupported => Ok(pass),
        ProbeVerdict::Healthy => {
            report_to_breaker(slot, pass, Outcome::Success, None);
            slot.breaker
                .acquire()
                .map_err(|r| format!("probe succeeded, traffic ramping back: {r}"))
        }
        ProbeVerdict::Failed(err) => {
            report_to_breaker(slot, pass, err.outcome(), Some(&err));
            slot.state
                .set_last_error(&err, std::time::SystemTime::now());
            publish_gauges(snap, slot);
            Err(format!("probe after the cool-down failed: {}", err.message))
        }
    }
}

/// What a cheap half-open probe found.
enum ProbeVerdict {
    /// The provider has no cheap check: the real request is the probe.
    Unsupported,
    /// The check answered.
    Healthy,
    /// The check failed (boxed: errors are large and probes rare).
    Failed(Box<ProviderError>),
}

/// Checks a provider with [`Provider::probe`](crate::Provider::probe) (no image generated),
/// bounded by `timeout`.
async fn cheap_probe(slot: &Slot, model: &str, timeout: Duration) -> ProbeVerdict {
    let ctx = CallContext::new(timeout);
    let span = tracing::info_span!("image_router.probe", provider = slot.name());
    let verdict = match tokio::time::timeout(timeout, slot.provider.probe(model, &ctx))
        .instrument(span)
        .await
    {
        Ok(Ok(report)) if !report.probed => ProbeVerdict::Unsupported,
        Ok(Ok(report)) => {
            slot.limiter.observe_headers(&report.rate_limits);
            ProbeVerdict::Healthy
        }
        Ok(Err(e)) => ProbeVerdict::Failed(Box::new(e)),
        Err(_) => ProbeVerdict::Failed(Box::new(ProviderError::new(
            slot.name(),
            ErrorKind::Timeout { sent: true },
            format!("the probe got no answer within {} ms", timeout.as_millis()),
        ))),
    };
    let label = match &verdict {
        ProbeVerdict::Unsupported => "unsupported",
        ProbeVerdict::Healthy => "healthy",
        ProbeVerdict::Failed(_) => "failed",
    };
    m::probe(slot.name(), label);
    verdict
}

async fn call(
    slot: &Slot,
    req: &ImageRequest,
    timeout: Duration,
    retry: u32,
) -> (
    Result<crate::response::ProviderResponse, ProviderError>,
    Duration,
) {
    let mut ctx = CallContext::new(timeout);
    ctx.retry = retry;
    let span = tracing::info_span!("image_router.attempt", provider = slot.name(), retry);
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(timeout, slot.provider.send(req, &ctx))
        .instrument(span)
        .await;
    let took = started.elapsed();
    let result = match result {
        Ok(Ok(resp)) if resp.images.is_empty() => Err(ProviderError::new(
            slot.name(),
            ErrorKind::Decode,
            "the provider answered without any image",
        )
        .with_status(resp.status)),
        Ok(r) => r,
        Err(_) => Err(ProviderError::new(
            slot.name(),
            ErrorKind::Timeout { sent: true },
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    };
    (result, took)
}

/// `base` minus up to 25 % at random.
fn jittered(base: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.75..=1.0);
    base.mul_f64(f)
}
