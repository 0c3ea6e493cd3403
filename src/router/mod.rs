//! The [`Router`]: sends each image request to the best provider that can serve it and fails
//! over to the next one when a provider is rate limited, denied, unable to serve it, or down.
//!
//! The request path reads top to bottom through these files:
//! 1. `mod.rs` (this file): the public API;
//! 2. `fallback.rs`: the whole request — validate, preview mode (`preview.rs`), then route
//!    the requested model and, when none served it, each fallback model in order;
//!    `route.rs`: the attempt loop — **validate** the request against the model's catalog
//!    entry, **plan**, then per attempt **admit → call → settle → decide**;
//! 3. `plan.rs`: **filter** (capability, request class, a denial held by the breaker, a
//!    model cool-down) and **rank** with the strategy;
//! 4. `slot.rs`: the provider slot — everything kept per provider; `admit` returns a guard
//!    that can never leak a reservation, `settle` applies one outcome to every component;
//! 5. `store.rs`: the state store trait behind the slot (in-process by default; its contract
//!    is written for a shared store);
//! 6. `policy.rs`: the one table of what each error kind means (decision, breaker, health,
//!    rate-limit refund, model cool-down, budget);
//! 7. `probe.rs`: the breaker's pass and the optional cheap probe;
//! 8. `status.rs`, `snapshot.rs`, `builder.rs`: status, the swappable snapshot, the builder;
//! 9. `check.rs`: the capability check ([`Router::check`], also at start);
//! 10. `stream_api.rs`, `stream_driver.rs`, `route/stream.rs`: streamed requests — the
//!     public API, the whole request (preview mode and fallback models through
//!     `fallback.rs`), the attempt loop of one model.
//! 11. `admission.rs`: the read-only probe "could this be admitted now, and when"
//!     ([`Router::admission`]), which queue workers ask before claiming a job.
//!
//! Nothing is lost: every request ends as images or as an [`Error`] listing every attempt and
//! every skipped provider, and no request waits past its deadline.

mod admission;
mod builder;
mod check;
mod fallback;
mod plan;
pub mod policy;
mod preview;
mod probe;
mod route;
mod slot;
mod snapshot;
mod status;
pub mod store;
mod stream_api;
mod stream_driver;
pub(crate) mod validate;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::Instrument;

pub use admission::{Admission, ADMISSION_RECHECK};
pub use builder::{
    RouterBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_DEADLINE,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE_LIMIT_WAIT, DEFAULT_RETRY_BACKOFF,
};
pub use check::{
    CheckOptions, CheckReport, CheckResult, CheckedProvider, Mark, ModelCheck,
    DEFAULT_CHECK_TIMEOUT,
};
pub use preview::{PreviewConfig, PREVIEW_ENV};
pub use slot::ProviderOptions;
use slot::Slot;
use snapshot::Snapshot;
pub use status::{
    CooldownStatus, KeyGroupStatus, KeyStatus, LastError, ModelWindow, ProviderStatus,
    ProviderStore, RouterStatus, StoreStatus,
};

use crate::clock::SharedClock;
use crate::error::Error;
use crate::error::Skip;
use crate::metrics as m;
use crate::quota::budget::LedgerSnapshot;
use crate::quota::limiter::Headroom;
use crate::request::RequestClass;
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ImageResponse;
use crate::score::ScoreBreakdown;

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
    /// The check on start's report, once it ran (see `check.rs`).
    start_check: tokio::sync::OnceCell<CheckReport>,
    /// The response cache, when on ([`RouterBuilder::cache`]).
    cache: Option<crate::cache::ResponseCache>,
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
        status::build(&snap)
    }

    /// Replaces the provider set and settings at runtime.
    ///
    /// Requests in flight finish on the snapshot they started with; new requests use the new
    /// one. Providers that stay (same name) keep their cool-downs, limiter log, spend, health
    /// and breaker state, with every new setting applied (limits, safety margin, budgets,
    /// weights, breaker and health settings, the cool-down); providers that are
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
    pub fn reload(&self, builder: RouterBuilder) -> Result<(), crate::config_error::ConfigError> {
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
    ) -> Result<Ranked, crate::request::ValidationError> {
        let snap = self.inner.snapshot.load();
        let mut req = request.clone();
        let model = plan::resolve_model(&snap, &req);
        req.set_model(model.clone());
        req.validate(snap.catalog.model(&model).map(|s| &s.capabilities))?;
        let plan = plan::plan(
            &snap,
            &req,
            &model,
            class,
            self.inner.clock.now(),
            plan::Latency::Image,
        );
        Ok(Ranked {
            order: plan
                .order
                .iter()
                .map(|&i| {
                    let score = plan.score(&snap, i).unwrap_or_default();
                    (snap.providers[i].name().to_string(), score)
                })
                .collect(),
            skipped: plan.skipped,
        })
    }

    /// The response cache's figures (entries, bytes held, hits, misses), or `None` when the
    /// cache is off. Runs the cache's pending maintenance first, so the figures are exact.
    pub async fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        match &self.inner.cache {
            Some(c) => Some(c.stats().await),
            None => None,
        }
    }

    /// Running spend totals: the router's ledger first, then each provider's.
    pub fn spend(&self) -> Vec<LedgerSnapshot> {
        let snap = self.inner.snapshot.load();
        std::iter::once(snap.budget.snapshot())
            .chain(snap.providers.iter().map(|s| s.store.spend()))
            .collect()
    }

    /// Rate-limit headroom of each provider for the router's default model (each model has
    /// its own window: see [`Router::headroom_for`]), in priority order.
    pub fn headroom(&self) -> Vec<(String, Headroom)> {
        let snap = self.inner.snapshot.load();
        let model = snap
            .settings
            .default_model
            .clone()
            .unwrap_or_else(|| snap.catalog.default_model().to_string());
        snap.providers
            .iter()
            .map(|s| (s.name().to_string(), s.store.headroom(&model)))
            .collect()
    }

    /// Rate-limit headroom of each provider's window for `model`, in priority order.
    pub fn headroom_for(&self, model: &str) -> Vec<(String, Headroom)> {
        let snap = self.inner.snapshot.load();
        snap.providers
            .iter()
            .map(|s| (s.name().to_string(), s.store.headroom(model)))
            .collect()
    }

    /// How long `workload` would take and what it would cost on this router now, before
    /// anything is sent: time to drain at the combined limits of the providers that can serve
    /// each request (taking current headroom, blocks and denials into account), each
    /// provider's share and cost, which limit or budget binds first, what cannot be served,
    /// and cheaper faithful alternatives. See [`crate::forecast`].
    ///
    /// ```
    /// use image_router::forecast::{WorkItem, Workload};
    /// use image_router::{providers::OpenAi, ProviderOptions, Quality, Router, Size};
    /// let router = Router::builder()
    ///     .provider_with(OpenAi::builder().api_key("k").build().unwrap(), ProviderOptions::new().rpm(10))
    ///     .build()
    ///     .unwrap();
    /// let work = Workload::new().with(WorkItem::new(100).quality(Quality::Low).size(Size::SQUARE));
    /// let f = router.forecast(&work).unwrap();
    /// // 10 requests a minute (the whole limit): 10 full windows, the last burst at 9 minutes.
    /// assert_eq!(f.drain_secs, Some(540.0));
    /// println!("{f}");
    /// ```
    pub fn forecast(
        &self,
        workload: &crate::forecast::Workload,
    ) -> Result<crate::forecast::Forecast, crate::forecast::ForecastError> {
        use crate::forecast::{Inputs, ProviderInput};
        use crate::quota::limits::Limits;
        let snap = self.inner.snapshot.load();
        let now = self.inner.clock.now();
        let default_model = plan::resolve_model(&snap, &GenerateRequest::new("x").into());
        let catalog = &snap.catalog;
        let providers = snap
            .providers
            .iter()
            .map(|slot| {
                let o = &slot.options;
                ProviderInput {
                    name: slot.name().to_string(),
                    tier: o.tier.clone(),
                    // The margin in force is the window's own (the whole limit by
                    // default, 0.9 for a shared key without remaining-* figures).
                    headroom: Box::new(move |model: &str| slot.store.headroom(model)),
                    budgets: slot.store.spend().budgets,
                    refuses: Box::new(move |req: &ImageRequest, model: &str| {
                        forecast_refusal(slot, req, model, now)
                    }),
                    limits: Box::new(move |model: &str| {
                        Limits::resolve_for_model(
                            catalog,
                            o.tier.as_deref(),
                            model,
                            o.rpm.map(i64::from),
                            o.tpm.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                            o.ipm.map(i64::from),
                        )
                    }),
                }
            })
            .collect();
        let inputs = Inputs {
            catalog,
            costs: &snap.costs,
            default_model: &default_model,
            providers,
            router_budgets: snap.budget.snapshot().budgets,
        };
        crate::forecast::forecast(&inputs, workload)
    }

    // `generate`, `edit` and `send` return `send_as`'s future itself rather than being
    // `async fn`s that await it: each such layer would hold the whole routing future in its
    // own state and copy it there when first polled (several KB a layer; issue 16).

    /// Generates images (`POST /images/generations`).
    pub fn generate(
        &self,
        request: GenerateRequest,
    ) -> impl Future<Output = Result<ImageResponse, Error>> + Send + '_ {
        self.send_as(ImageRequest::Generate(request), None)
    }

    /// Edits images (`POST /images/edits`).
    pub fn edit(
        &self,
        request: EditRequest,
    ) -> impl Future<Output = Result<ImageResponse, Error>> + Send + '_ {
        self.send_as(ImageRequest::Edit(request), None)
    }

    /// Routes one request of either kind.
    pub fn send(
        &self,
        request: ImageRequest,
    ) -> impl Future<Output = Result<ImageResponse, Error>> + Send + '_ {
        self.send_as(request, None)
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
        if request.stream() {
            // The plain path reads one JSON answer; an event stream is `send_stream`'s.
            let e = crate::request::ValidationError::new(
                "stream",
                "a streamed request (stream: true) goes through Router::generate_stream / \
                 edit_stream / send_stream",
            );
            return Err(e.into());
        }
        let snap = self.inner.snapshot.load_full();
        if snap.settings.check_on_start && !self.inner.start_check.initialized() {
            // Not yet checked at start: wait for the check (bounded by its timeout) so this
            // request is not sent where the check is about to rule out (its marks live in
            // the slots' stores, which this snapshot shares).
            self.run_start_check().await;
        }
        let span = tracing::info_span!(
            "image_router.request",
            op = request.endpoint(),
            model = tracing::field::Empty,
            provider = tracing::field::Empty,
        );
        let started = tokio::time::Instant::now();
        let result = match &self.inner.cache {
            // The routed response comes boxed through the layers (see `route::Routed`) and
            // is opened here, once.
            None => fallback::serve(&snap, &self.inner.clock, request, class)
                .instrument(span)
                .await
                .map(|resp| *resp),
            // Validate → preview → cache lookup → single-flight → route and fall back → store
            // (see `crate::cache`): the key is the request as routed.
            Some(cache) => match fallback::prepare(&snap, request) {
                Ok(p) => {
                    let clock = &self.inner.clock;
                    let (snap_ref, preview, requested) =
                        (&snap, p.preview.clone(), p.requested.clone());
                    // The cache keeps unboxed responses; its closure opens the box (the
                    // error is the router's own `Error`, large like every public one).
                    #[allow(clippy::result_large_err)]
                    let route = |req| {
                        futures_util::FutureExt::map(
                            fallback::serve_prepared(
                                snap_ref, clock, req, preview, requested, class,
                            ),
                            |routed| routed.map(|resp| *resp),
                        )
                    };
                    // Boxed: the cache's single-flight future is as large as the routing
                    // one, and unboxed it would double the size of every request's
                    // future, cache or not (issue 16).
                    Box::pin(cache.serve(p.req.clone(), snap.settings.deadline, route))
                        .instrument(span)
                        .await
                        .map(|resp| {
                            if resp.cached {
                                p.label_cached(&snap, resp)
                            } else {
                                resp
                            }
                        })
                }
                Err(e) => Err(e.into()),
            },
        };
        m::request_finished(m::request_outcome(&result), || started.elapsed());
        result
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

/// Why `slot` would take none of `req` (of `model`) now: the router's own skip rules.
fn forecast_refusal(
    slot: &Slot,
    req: &ImageRequest,
    model: &str,
    now: std::time::Duration,
) -> Option<String> {
    if let Err(detail) = slot.provider.supports(req) {
        return Some(format!("cannot serve it: {detail}"));
    }
    if !slot.options.classes.admits(None) {
        return Some("reserved for request classes".to_string());
    }
    if let Some(u) = slot.store.unavailable(model, now) {
        return Some(format!(
            "unavailable now after {} for {} s more: {}",
            u.cause,
            u.remaining.as_secs(),
            u.message
        ));
    }
    if slot.store.breaker().is_blocking() {
        return Some("its circuit breaker is open".to_string());
    }
    None
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

fn publish_gauges(snap: &Snapshot, slot: &Slot, model: &str) {
    m::provider_gauges(
        &slot.metric_keys,
        || breaker_level(slot.store.breaker().state()),
        || slot.store.headroom(model).fraction,
        || slot.store.spent_usd(),
    );
    m::router_spend(|| snap.budget.lifetime_spent_usd());
}
