//! [`RouterBuilder`]: providers in priority order and the request-level settings.
//!
//! Every setting is checked in [`RouterBuilder::build`], which names the field at fault; nothing
//! panics on a bad value.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::policy::TimeoutPolicy;
use super::slot::{KeyOf, ProviderOptions, Slot};
use super::snapshot::{Settings, Snapshot};
use super::store::{InProcessFactory, LimitSettings, StoreConfig, StoreContext, StoreFactory};
use super::{Router, RouterInner};
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::catalog::Catalog;
use crate::clock::{SharedClock, SystemClock};
use crate::config_error::ConfigError;
use crate::health::{Health, HealthConfig};
use crate::provider::Provider;
use crate::providers::ProviderKeys;
use crate::quota::budget::{Budget, BudgetLedger, WallClock};
use crate::quota::cost::CostEstimator;
use crate::score::{DefaultScorer, Scorer};
use crate::strategy::Strategy;

/// Default time one attempt may take (GPT image models can take a minute for a high-quality image).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time a whole request may take, all attempts and waits included.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
/// Default maximum number of provider calls per request.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default cool-down after access-denied, authentication and not-found failures: how long
/// the breaker holds a denial, and how long a model cool-down lasts.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// Default base of the jittered backoff before retrying a transient failure.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Default wait after a 429 that gave no `retry-after`.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Builds a [`Router`].
///
/// ```
/// # use std::time::Duration;
/// use image_router::{Router, catalog::Catalog};
/// # #[derive(Debug)] struct Mine;
/// # #[async_trait::async_trait]
/// # impl image_router::Provider for Mine {
/// #   fn name(&self) -> &str { "mine" }
/// #   fn capabilities(&self, m: &str) -> Option<image_router::Capabilities> { Some(image_router::Capabilities::permissive(m)) }
/// #   async fn generate(&self, _: &image_router::GenerateRequest, _: &image_router::CallContext) -> Result<image_router::ProviderResponse, image_router::ProviderError> { unreachable!() }
/// #   async fn edit(&self, _: &image_router::EditRequest, _: &image_router::CallContext) -> Result<image_router::ProviderResponse, image_router::ProviderError> { unreachable!() }
/// # }
/// let router = Router::builder()
///     .provider(Mine)
///     .attempt_timeout(Duration::from_secs(90))
///     .deadline(Duration::from_secs(180))
///     .max_attempts(4)
///     .build()
///     .unwrap();
/// assert_eq!(router.provider_names(), vec!["mine"]);
///
/// // Bad settings are errors naming the field, not panics:
/// let err = Router::builder().build().unwrap_err();
/// assert_eq!(err.field, "providers");
/// ```
#[must_use = "a builder does nothing until build() is called"]
#[derive(Debug)]
pub struct RouterBuilder {
    /// Each provider with its options and, for a member of a key set, its group and label.
    providers: Vec<(Arc<dyn Provider>, ProviderOptions, Option<KeyOf>)>,
    /// The first invalid key set handed to [`provider_keys`](Self::provider_keys), reported
    /// by `build()`.
    invalid_keys: Option<ConfigError>,
    settings: Settings,
    catalog: Option<Arc<Catalog>>,
    clock: Option<SharedClock>,
    wall: Option<WallClock>,
    budgets: Vec<Budget>,
    fallback_usd_per_image: Option<f64>,
    health: HealthConfig,
    breaker: Option<BreakerConfig>,
    /// Set by [`RouterBuilder::cooldown`]; otherwise the breaker's long cool-down or the
    /// default.
    cooldown: Option<Duration>,
    scorer: Option<Arc<dyn Scorer>>,
    /// Makes each slot's state store (default: in process).
    store: Option<Arc<dyn StoreFactory>>,
    /// The response cache, when on.
    cache: Option<crate::cache::CacheConfig>,
}

impl std::fmt::Debug for dyn Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scorer")
    }
}

impl Default for RouterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RouterBuilder {
    /// A builder with the defaults and no providers.
    pub fn new() -> Self {
        Self {
            providers: Vec::new(),
            invalid_keys: None,
            settings: Settings {
                attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                deadline: DEFAULT_DEADLINE,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                content_policy_failover: false,
                timeout_after_send: TimeoutPolicy::Failover,
                cooldown: DEFAULT_COOLDOWN,
                retry_backoff: DEFAULT_RETRY_BACKOFF,
                rate_limit_wait: DEFAULT_RATE_LIMIT_WAIT,
                max_wait: None,
                strategy: Strategy::Scored,
                default_model: None,
                cheap_probe: false,
                check_on_start: false,
                check_timeout: super::check::DEFAULT_CHECK_TIMEOUT,
                preview: super::preview::PreviewConfig::default(),
                fallback_models: Vec::new(),
            },
            catalog: None,
            clock: None,
            wall: None,
            budgets: Vec::new(),
            fallback_usd_per_image: None,
            health: HealthConfig::default(),
            breaker: None,
            cooldown: None,
            scorer: None,
            store: None,
            cache: None,
        }
    }

    /// Adds a provider. The order providers are added in is their priority: strict under
    /// [`Strategy::Ordered`], the tie-breaker and a score factor under the default
    /// [`Strategy::Scored`].
    pub fn provider(mut self, provider: impl Provider + 'static) -> Self {
        self.providers
            .push((Arc::new(provider), ProviderOptions::default(), None));
        self
    }

    /// Adds a provider with its limits, tier and weight.
    ///
    /// ```
    /// # use image_router::{Router, ProviderOptions};
    /// # fn p() -> impl image_router::Provider { image_router::providers::OpenAi::builder().api_key("k").build().unwrap() }
    /// let router = Router::builder()
    ///     .provider_with(p(), ProviderOptions::new().tier("tier-2").rpm(12))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn provider_with(
        mut self,
        provider: impl Provider + 'static,
        options: ProviderOptions,
    ) -> Self {
        self.providers.push((Arc::new(provider), options, None));
        self
    }

    /// Adds a shared provider with options.
    pub fn provider_arc(mut self, provider: Arc<dyn Provider>, options: ProviderOptions) -> Self {
        self.providers.push((provider, options, None));
        self
    }

    /// Adds a provider with several keys (accounts or projects), each with its own limits,
    /// budget and access state: every key becomes a provider of the router named by its
    /// member (`{name}/{label}` from the built-in builders' `build_keys`), all with these
    /// `options` — so each key gets the configured `rpm` / `tpm` / tier **and** the
    /// configured budgets (the keys are billed separately; use [`budget`](Self::budget) for a
    /// cap on everything together).
    ///
    /// Requests go to the key with the most rate-limit room: wherever the strategy ranks a
    /// provider's keys, they are tried in the order of their room (requests left now, then
    /// the free share of the limits). A key that is denied (401, `insufficient_quota`, a tier
    /// without access, an unverified organization) is set aside for the cool-down with its
    /// reason, while the others carry on. [`Router::status`] lists each key under its
    /// provider in [`RouterStatus::key_groups`](crate::RouterStatus::key_groups), by label.
    ///
    /// An invalid set (no key, a duplicate label, a label shaped like a key) makes `build()`
    /// fail, naming `providers[i].keys[j]`.
    ///
    /// ```
    /// use image_router::{providers::OpenAi, ProviderOptions, Router};
    /// let keys = OpenAi::builder()
    ///     .name("openai")
    ///     .build_keys([("OPENAI_KEY_A", "sk-a-0123456789abcdef"), ("OPENAI_KEY_B", "sk-b-0123456789abcdef")])
    ///     .unwrap();
    /// let router = Router::builder()
    ///     .provider_keys(keys, ProviderOptions::new().rpm(6))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(router.provider_names(), vec!["openai/OPENAI_KEY_A", "openai/OPENAI_KEY_B"]);
    /// ```
    ///
    /// [`Router::status`]: crate::Router::status
    pub fn provider_keys(mut self, keys: ProviderKeys, options: ProviderOptions) -> Self {
        let index = self.providers.len();
        if let Err(e) = keys.validate() {
            if self.invalid_keys.is_none() {
                self.invalid_keys = Some(e.scoped(&format!("providers[{index}]")));
            }
            return self;
        }
        let group: Arc<str> = Arc::from(keys.name());
        for (label, provider) in keys.members() {
            let key = KeyOf {
                group: group.clone(),
                label: Arc::from(label.as_str()),
            };
            self.providers
                .push((provider.clone(), options.clone(), Some(key)));
        }
        self
    }

    /// Time one attempt may take (default 120 s). Must be above zero.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = timeout;
        self
    }

    /// Time a whole request may take, all attempts and waits included (default 300 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = deadline;
        self
    }

    /// Most provider calls per request (default 6). Must be at least 1.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.settings.max_attempts = n;
        self
    }

    /// Whether a content-policy refusal fails over to the next provider (default: no, it is
    /// returned at once: another provider's safety system usually agrees, and trying them all
    /// multiplies refusals on the account).
    pub fn failover_on_content_policy(mut self, yes: bool) -> Self {
        self.settings.content_policy_failover = yes;
        self
    }

    /// How long a provider is skipped after access-denied, authentication or not-found
    /// failures (default 300 s). This is the one duration of a denial: the circuit breaker
    /// holds it (its `long_cool_down`, which this setting replaces; without this call a
    /// [`breaker`](Self::breaker) configuration's `long_cool_down` is used), and a model or
    /// deployment not found cools the provider down for that model for as long.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = Some(cooldown);
        self
    }

    /// What a timeout after the request was sent does (default
    /// [`TimeoutPolicy::Failover`]). The provider may have generated and billed the image,
    /// so such a timeout is never retried on the same provider: by default the request fails
    /// over and the attempt is marked possibly billed; [`TimeoutPolicy::Fail`] returns the
    /// timeout instead, so one image is never paid twice. Either way the budget keeps the
    /// attempt's reservation until the budget's period ends. A timeout before the request
    /// was sent (connecting) is retried as any transient failure.
    pub fn on_timeout_after_send(mut self, policy: TimeoutPolicy) -> Self {
        self.settings.timeout_after_send = policy;
        self
    }

    /// Base of the jittered backoff before the one retry of a transient failure (default 500 ms;
    /// up to 25 % less is used at random).
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.settings.retry_backoff = backoff;
        self
    }

    /// Wait assumed after a 429 without `retry-after` (default 1 s).
    pub fn rate_limit_wait(mut self, wait: Duration) -> Self {
        self.settings.rate_limit_wait = wait;
        self
    }

    /// Longest a request waits for rate-limit room when no provider has any (default: as long
    /// as the deadline allows). `Duration::ZERO` never waits: the request fails at once with
    /// the providers listed as skipped for lack of headroom, e.g. for callers with their own
    /// queue.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = Some(max_wait);
        self
    }

    /// How providers are ranked for each request. The failover rules are the same for every
    /// strategy.
    ///
    /// * [`Strategy::Scored`] (the default): best score first (health, latency, headroom,
    ///   budget, configured order and weight; see [`crate::score`]). With the default scorer
    ///   the order providers were added in holds while they are comparably good; a provider
    ///   further down moves up when it is clearly better (about twice the score).
    /// * [`Strategy::Ordered`]: strictly the order they were added, skipping open breakers
    ///   and putting providers without headroom last.
    /// * [`Strategy::Weighted`]: spreads load by weight and headroom.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.settings.strategy = strategy;
        self
    }

    /// After a circuit breaker's cool-down, check the provider with a call that generates no
    /// image ([`Provider::probe`]: `GET /models/{model}` for the built-in providers) instead of
    /// spending a real request on it. Default `false`: the real request is the probe.
    ///
    /// A good check moves the breaker to its recovery ramp and the request goes on (if the
    /// ramp admits it; otherwise to the next provider); a failed check re-opens the breaker
    /// with the longer cool-down and the request goes to the next provider, with the failure
    /// in its skip list. Providers without a cheap check (the default `Provider::probe`) are
    /// probed with the real request. Trade-off: the check sees the key, the account and the
    /// model, but not an outage of the image endpoint alone; such an outage shows on the
    /// first real requests of the ramp, which re-open the breaker.
    pub fn cheap_probe(mut self, yes: bool) -> Self {
        self.settings.cheap_probe = yes;
        self
    }

    /// Check every provider once at start, without generating an image (default `false`):
    /// a rejected key or an account denial makes the provider unavailable for the cool-down,
    /// a missing model or deployment cools that model down, a provider that cannot be
    /// checked stays usable. See [`Router::check`] for what is checked and marked.
    ///
    /// [`build`](Self::build) stays synchronous: inside a tokio runtime it starts the check
    /// in the background at once; requests sent before the check ends wait for it (at most
    /// [`check_timeout`](Self::check_timeout), before their own deadline starts), so none
    /// goes to a provider the check is about to rule out. Outside a runtime the first
    /// request runs it. [`build_checked`](Self::build_checked) waits for it and returns its
    /// report; [`Router::start_check`] gives the report later. The check runs once per
    /// router (not again after a reload: call [`Router::check`] then).
    pub fn check_on_start(mut self, yes: bool) -> Self {
        self.settings.check_on_start = yes;
        self
    }

    /// Time the whole capability check may take (default 5 s; providers are checked
    /// concurrently, each lookup ends at this deadline). Must be above zero.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.settings.check_timeout = timeout;
        self
    }

    /// Scorer used by the `Scored` and `Weighted` strategies (default [`DefaultScorer`]).
    pub fn scorer(mut self, scorer: Arc<dyn Scorer>) -> Self {
        self.scorer = Some(scorer);
        self
    }

    /// Sets how each provider's state store is made: in this process (the default,
    /// [`InProcessFactory`]) or shared by several router instances (a Redis store, feature
    /// `redis`). Nothing else in the application changes with the store; see
    /// [`crate::store`]. A reload keeps the stores of the providers that stay.
    pub fn store(mut self, factory: Arc<dyn StoreFactory>) -> Self {
        self.store = Some(factory);
        self
    }

    /// Turns the response cache on (off by default): identical requests are answered from
    /// it at no cost, and identical requests in flight at once make one upstream call; see
    /// [`crate::cache`]. Each request may still refresh or bypass it
    /// ([`CachePolicy`](crate::cache::CachePolicy)). `build()` checks the settings (error
    /// fields `cache.*`). The cache belongs to the router: a [`Router::reload`] keeps it and
    /// ignores this setting.
    pub fn cache(mut self, config: crate::cache::CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Health tracking settings (availability window, latency decay). `build()` rejects a
    /// zero `window` (error field `health.window`).
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.health = config;
        self
    }

    /// Circuit-breaker settings (failure thresholds, cool-downs, ramp). The breaker's long
    /// cool-down after access problems is the router's [`cooldown`](Self::cooldown) when that
    /// is set, else `long_cool_down` from here.
    /// `build()` rejects settings that cannot mean anything, naming the field
    /// (`breaker.failure_ratio` NaN or ≤ 0, `breaker.ramp_start` outside 0..=1, a non-finite
    /// `breaker.cool_down_multiplier`, a zero `cool_down`, `long_cool_down` or `window`).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// Model used when a request names none (default: the catalog's, `gpt-image-1`).
    pub fn default_model(mut self, model: impl Into<String>) -> Self {
        self.settings.default_model = Some(model.into());
        self
    }

    /// Preview mode for every request: the lowest quality and smallest size the model takes,
    /// and with [`PreviewConfig::cheaper_model`](super::PreviewConfig::cheaper_model) the
    /// cheaper model of the same family the catalog names. Off by default. Each response
    /// lists what changed ([`ImageResponse::preview`](crate::ImageResponse::preview)).
    ///
    /// ```
    /// # use image_router::{Router, PreviewConfig, providers::OpenAi};
    /// let router = Router::builder()
    ///     .provider(OpenAi::builder().api_key("k").build().unwrap())
    ///     .preview(PreviewConfig::on().cheaper_model(true))
    ///     .build()
    ///     .unwrap();
    /// # let _ = router;
    /// ```
    pub fn preview(mut self, preview: impl Into<super::preview::PreviewConfig>) -> Self {
        self.settings.preview = preview.into();
        self
    }

    /// Models to route, in order, when no provider can serve a request's model (all denied,
    /// limited past the deadline or `max_wait`, or none offering it), for requests that name
    /// none of their own ([`GenerateRequest::fallback_models`](crate::GenerateRequest::fallback_models)
    /// overrides this). Off (empty) by default. Names must not be empty.
    pub fn fallback_models<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        self.settings.fallback_models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Catalog to validate requests against (default: the embedded one).
    pub fn catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Clock for cool-downs and windows (default: tokio's clock). Tests inject a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds a spend budget for the whole router (all providers together).
    ///
    /// Each request reserves its estimated cost on the router's and its provider's budgets
    /// before it is sent and settles on the actual cost (from the response's `usage`) after;
    /// a provider whose budget cannot cover the reservation is skipped; budgets are never
    /// exceeded, also not by concurrent requests.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budgets.push(budget);
        self
    }

    /// Price per image assumed for models without a price in the catalog, so budgets still
    /// hold (default: none; a budget then refuses requests whose price is unknown).
    pub fn fallback_usd_per_image(mut self, usd: f64) -> Self {
        self.fallback_usd_per_image = Some(usd);
        self
    }

    /// Wall clock for calendar budget periods (default: system time on the router's clock).
    pub fn wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = Some(wall);
        self
    }

    /// Checks every setting and builds the router.
    pub fn build(mut self) -> Result<Router, ConfigError> {
        let clock = self
            .clock
            .take()
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as SharedClock);
        let cache = self
            .cache
            .take()
            .map(|c| crate::cache::ResponseCache::new(c, clock.clone()))
            .transpose()?;
        let snapshot = self.into_snapshot(clock.clone(), None)?;
        let check_on_start = snapshot.settings.check_on_start;
        let router = Router {
            inner: Arc::new(RouterInner {
                snapshot: ArcSwap::from_pointee(snapshot),
                clock,
                start_check: tokio::sync::OnceCell::new(),
                cache,
            }),
        };
        if check_on_start {
            super::check::spawn_start_check(&router);
        }
        Ok(router)
    }

    /// Builds the router and runs the capability check (whether or not
    /// [`check_on_start`](Self::check_on_start) is set), waiting for it: at most
    /// [`check_timeout`](Self::check_timeout). The report is the check on start's
    /// ([`Router::start_check`]); requests do not run it again.
    ///
    /// ```
    /// # async fn run() -> Result<(), image_router::ConfigError> {
    /// # use image_router::{Router, providers::OpenAi};
    /// let (router, report) = Router::builder()
    ///     .provider(OpenAi::builder().api_key("sk-test").base_url("http://127.0.0.1:9/v1").build()?)
    ///     .check_timeout(std::time::Duration::from_secs(2))
    ///     .build_checked()
    ///     .await?;
    /// // Nothing listens there: not checked, and still usable.
    /// assert_eq!(report.providers[0].models[0].result, image_router::CheckResult::Unchecked);
    /// assert!(report.providers[0].usable());
    /// # let _ = router; Ok(()) }
    /// ```
    pub async fn build_checked(self) -> Result<(Router, super::CheckReport), ConfigError> {
        let router = self.build()?;
        let report = router.run_start_check().await;
        Ok((router, report))
    }

    /// Checks every setting and builds a snapshot; providers whose name is in `previous`
    /// keep their state (cool-downs, limiter log, spend, health, breaker) and take every new
    /// setting.
    pub(crate) fn into_snapshot(
        self,
        clock: SharedClock,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let s = &self.settings;
        if let Some(e) = self.invalid_keys {
            return Err(e);
        }
        if self.providers.is_empty() {
            return Err(ConfigError::new("providers", "add at least one provider"));
        }
        let mut names = HashSet::new();
        for (i, (p, ..)) in self.providers.iter().enumerate() {
            let name = p.name();
            if name.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("providers[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(name.to_string()) {
                return Err(ConfigError::new(
                    format!("providers[{i}].name"),
                    format!("duplicate provider name {name:?}: names must be unique"),
                ));
            }
        }
        super::validate::RequestSettings {
            attempt_timeout: s.attempt_timeout,
            deadline: s.deadline,
            max_attempts: s.max_attempts,
            cooldown: self.cooldown.unwrap_or(DEFAULT_COOLDOWN),
            retry_backoff: s.retry_backoff,
            rate_limit_wait: s.rate_limit_wait,
            default_model: s.default_model.as_deref(),
            fallback_usd_per_image: self.fallback_usd_per_image,
        }
        .validate()?;
        if let Some(b) = &self.breaker {
            b.validate().map_err(|e| e.scoped("breaker"))?;
        }
        self.health.validate().map_err(|e| e.scoped("health"))?;
        if let Some(i) = s.fallback_models.iter().position(|m| m.trim().is_empty()) {
            return Err(ConfigError::new(
                format!("fallback_models[{i}]"),
                "must not be empty",
            ));
        }
        if s.check_timeout.is_zero() {
            return Err(ConfigError::new("check_timeout", "must be above zero"));
        }
        let catalog = self
            .catalog
            .unwrap_or_else(|| Arc::new(Catalog::builtin().clone()));
        let mut settings = self.settings;
        if settings.default_model.is_none() {
            settings.default_model = Some(catalog.default_model().to_string());
        }
        // One duration for a denial: the builder's cool-down, else the breaker's long one.
        let mut breaker_config = self.breaker.clone().unwrap_or_default();
        settings.cooldown = match (self.cooldown, &self.breaker) {
            (Some(d), _) => d,
            (None, Some(b)) => b.long_cool_down,
            (None, None) => DEFAULT_COOLDOWN,
        };
        breaker_config.long_cool_down = settings.cooldown;
        let wall = self
            .wall
            .unwrap_or_else(|| WallClock::new(std::time::SystemTime::now(), clock.clone()));
        let router_budget = match previous {
            Some(prev) => {
                BudgetLedger::new("router", self.budgets.clone(), wall.clone())?;
                prev.budget.clone()
            }
            None => BudgetLedger::new("router", self.budgets.clone(), wall.clone())?,
        };
        let store_factory: Arc<dyn StoreFactory> = self
            .store
            .clone()
            .unwrap_or_else(|| Arc::new(InProcessFactory));
        let mut providers = Vec::with_capacity(self.providers.len());
        // Providers that stay: applied once the whole configuration is known to be valid.
        let mut pending = Vec::new();
        for (i, (p, o, key)) in self.providers.into_iter().enumerate() {
            let scope = format!("providers[{i}]");
            o.validate().map_err(|e| e.scoped(&scope))?;
            // Each model's window takes its limits from these (see `store::LimitSettings`).
            let limits = LimitSettings {
                catalog: Arc::clone(&catalog),
                tier: o.tier.clone(),
                rpm: o.rpm,
                tpm: o.tpm,
                ipm: o.ipm,
                margin: o.safety_margin,
                shared: o.shared,
            };
            // Checked for every provider, also those that stay (the tier against the
            // catalog, the numbers, the margin).
            limits
                .limiter_config(catalog.default_model())
                .map_err(|e| e.scoped(&scope))?;
            // Checked for every provider, also those that stay (a bad budget).
            BudgetLedger::new(p.name(), o.budgets.clone(), wall.clone())
                .map_err(|e| e.scoped(&scope))?;
            let old =
                previous.and_then(|prev| prev.providers.iter().find(|o| o.name() == p.name()));
            if let Some(old) = old {
                let store = StoreConfig {
                    limits,
                    budgets: o.budgets.clone(),
                    breaker: breaker_config.clone(),
                };
                pending.push((providers.len(), old.clone(), p, o, store, key));
                providers.push(None);
                continue;
            }
            let health = Health::new(self.health.clone(), clock.clone());
            let breaker = CircuitBreaker::new(breaker_config.clone(), clock.clone());
            let name = p.name().to_string();
            breaker.set_listener(Arc::new(move |t| {
                crate::metrics::breaker_transition(&name, t.from.as_str(), t.to.as_str())
            }));
            let store = store_factory
                .make(StoreContext {
                    provider: p.name(),
                    account: o.account.as_deref().unwrap_or(p.name()),
                    limits,
                    budgets: &o.budgets,
                    router_budgets: &self.budgets,
                    router_ledger: &router_budget,
                    wall: &wall,
                    clock: &clock,
                    breaker,
                })
                .map_err(|e| e.scoped(&scope))?;
            providers.push(Some(Slot::new(p, o, store, health).with_key(key)));
        }
        let mut costs = CostEstimator::new();
        if let Some(usd) = self.fallback_usd_per_image {
            costs = costs
                .with_fallback_usd_per_image(usd)
                .map_err(|e| e.scoped("fallback_usd_per_image"))?;
        }
        // Everything is valid: apply the new settings to the providers that stay.
        if previous.is_some() {
            router_budget.set_budgets(self.budgets)?;
        }
        for (pos, old, p, o, store, key) in pending {
            providers[pos] = Some(old.carry_over(p, o, &store, &self.health)?.with_key(key));
        }
        // Every position was filled: new providers above, providers that stay just now.
        let providers: Vec<Slot> = providers.into_iter().flatten().collect();
        let budget = router_budget;
        let snapshot = Snapshot {
            settings,
            catalog,
            providers,
            budget,
            costs,
            scorer: self
                .scorer
                .unwrap_or_else(|| Arc::new(DefaultScorer::default())),
        };
        Ok(snapshot)
    }
}
