//! [`RedisStore`]: one provider slot's view of its account's shared state (see the module
//! docs of [`super`] for the key layout, the scripts and the clock).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::redis_conn::Connection;
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use redis::{ScriptInvocation, Value};

use super::link::{Link, Refresh};
use super::scripts::{ints, Answer, ADMIT, BUDGET, MARK, REPLAY, SETTLE};
use crate::breaker::{CircuitBreaker, DenyReason};
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::error::{AccessDenial, NotFoundKind, Outcome};
use crate::quota::budget::{
    period_bounds, Budget, BudgetError, BudgetExhausted, BudgetPeriod, BudgetSnapshot,
    LedgerSnapshot, WallClock,
};
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limiter::{BlockReason, Denied, Headroom, LimitKind, LimiterConfig};
use crate::router::store::{
    Admission, BudgetSettlement, Demand, LimitSettings, Refusal, Settlement, StateStore,
    StoreConfig, StoreError, StoreState, Unavailable, MAX_MODEL_WINDOWS,
};

/// How long a cached window answers ranking reads before a refresh is asked for (router
/// clock).
const REFRESH_AFTER: Duration = Duration::from_secs(1);
/// How many times an admission's end that did not reach the server (a time-out under load) is
/// tried again from the background queue, and the first pause (doubled each time). Until it
/// reaches the server, the request's window entry counts as in flight (it holds its slot
/// until the reservation's time-to-live), so one slow answer of the server must not cost the
/// account a slot for minutes; a bounded number of tries keeps an unreachable server from
/// growing an endless chain.
const END_RETRIES: u8 = 4;
const END_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the budget keys of a period outlive its end (so a late settlement finds them).
const BUDGET_KEY_SLACK: Duration = Duration::from_secs(86_400);

/// An admission made locally while the store could not be reached, to add to the shared
/// window once it answers again ([`RedisStore::replay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplayEntry {
    /// How long before the replay the request was admitted.
    pub age: Duration,
    /// Its images (`n`).
    pub images: u32,
    /// Its tokens.
    pub tokens: u64,
}

/// The store of one provider slot on a Redis server shared by several router instances.
/// Cheap to clone (clones share state).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("provider", &self.inner.provider)
            .field("account", &self.inner.account)
            .field("router_clock", &self.inner.router_clock)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Settings {
    limits: LimitSettings,
    budgets: Vec<Budget>,
}

/// A window as the last answer about it showed it, in router-clock time.
///
/// The answer's figures are those of its moment; they do not advance by themselves. What
/// is read from them later follows two rules: a window the answer showed full (no room
/// for one more request or image) until `T` reads as having room once the router clock
/// passes `T` (the answer's `room_at`, translated from the deciding clock by the time
/// elapsed since the answer, so clock offsets between the server and the router do not
/// matter), and an answer older than [`REFRESH_AFTER`] is never the basis of a refusal
/// (`rate_limit_check`): only the server, through an admission, refuses then.
#[derive(Clone, Debug)]
struct CachedWindow {
    /// Router-clock time of the answer.
    at: Duration,
    answer: Answer,
}

impl CachedWindow {
    /// The router-clock time of `t`, a time on the deciding clock in the answer (µs).
    fn local(&self, t: i64) -> Duration {
        self.at + after(&self.answer, t)
    }

    /// The answer showed the window full for one more request, and that has ended by `now`.
    fn room_back(&self, now: Duration) -> bool {
        self.answer.room_at > self.answer.now && now >= self.local(self.answer.room_at)
    }

    /// Older than the refresh interval at `now`.
    fn is_stale(&self, now: Duration) -> bool {
        now.saturating_sub(self.at) >= REFRESH_AFTER
    }
}

#[derive(Clone, Debug)]
struct CachedMark {
    code: String,
    message: String,
    /// Router-clock end.
    until: Duration,
}

#[derive(Debug, Default)]
struct Cache {
    windows: HashMap<String, CachedWindow>,
    denial: Option<CachedMark>,
    cools: HashMap<String, CachedMark>,
    lifetime_spent: i64,
    committed: i64,
    budgets: Vec<(Budget, super::scripts::BudgetFigures)>,
    /// The end of the shared denial the local breaker was last opened for.
    denial_applied: Option<String>,
}

struct Inner {
    link: Arc<Link>,
    provider: String,
    account: String,
    /// `{prefix:account}`: every key of the account shares this hash tag (one slot).
    tag: String,
    /// `{prefix:router}`: the router-wide budgets.
    router_tag: String,
    router_ledger_name: String,
    router_budgets: Vec<Budget>,
    clock: SharedClock,
    wall: WallClock,
    router_clock: bool,
    reservation_ttl: Duration,
    settings: RwLock<Settings>,
    breaker: RwLock<CircuitBreaker>,
    cache: Mutex<Cache>,
    /// The model of each admission not ended yet (release and hold are told only its id).
    pending: Mutex<HashMap<u64, String>>,
    refreshing: AtomicBool,
}

/// What the factory gives each store.
pub(super) struct Parts {
    pub link: Arc<Link>,
    pub provider: String,
    pub account: String,
    pub router_ledger_name: String,
    pub limits: LimitSettings,
    pub budgets: Vec<Budget>,
    pub router_budgets: Vec<Budget>,
    pub clock: SharedClock,
    pub wall: WallClock,
    pub breaker: CircuitBreaker,
    pub router_clock: bool,
    pub reservation_ttl: Duration,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn nano_usd(usd: f64) -> i64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round() as i64
    } else {
        0
    }
}

fn usd(nano: i64) -> f64 {
    nano.max(0) as f64 / 1e9
}

fn limit_arg(v: Option<u64>) -> String {
    v.unwrap_or(0).to_string()
}

fn store_err(e: &redis::RedisError) -> StoreError {
    StoreError::new(format!("redis: {}", crate::redact::text(&e.to_string())))
}

/// A denial's reason as stored (a short code, no provider text).
pub(super) fn deny_code(reason: DenyReason) -> String {
    match reason {
        DenyReason::Authentication => "authentication".to_string(),
        DenyReason::AccessDenied(d) => format!("access_denied:{}", access_code(d)),
        DenyReason::NotFound(k) => format!(
            "not_found:{}",
            match k {
                NotFoundKind::Model => "model",
                NotFoundKind::Deployment => "deployment",
                NotFoundKind::UnsupportedParameter => "unsupported_parameter",
                NotFoundKind::Endpoint => "endpoint",
            }
        ),
    }
}

fn access_code(d: AccessDenial) -> &'static str {
    match d {
        AccessDenial::InsufficientQuota => "insufficient_quota",
        AccessDenial::BillingHardLimit => "billing_hard_limit",
        AccessDenial::OrganizationNotVerified => "organization_not_verified",
        AccessDenial::RegionNotSupported => "region_not_supported",
        AccessDenial::TierAccess => "tier_access",
        AccessDenial::ResourceBlocked => "resource_blocked",
        AccessDenial::Forbidden => "forbidden",
    }
}

/// The stored code back to a reason; an unknown code (a newer instance's) reads as a plain
/// forbidden access denial.
pub(super) fn parse_deny(code: &str) -> DenyReason {
    let access = [
        AccessDenial::InsufficientQuota,
        AccessDenial::BillingHardLimit,
        AccessDenial::OrganizationNotVerified,
        AccessDenial::RegionNotSupported,
        AccessDenial::TierAccess,
        AccessDenial::ResourceBlocked,
        AccessDenial::Forbidden,
    ];
    let not_found = [
        NotFoundKind::Model,
        NotFoundKind::Deployment,
        NotFoundKind::UnsupportedParameter,
        NotFoundKind::Endpoint,
    ];
    if code == "authentication" {
        return DenyReason::Authentication;
    }
    if let Some(r) = access
        .into_iter()
        .find(|d| deny_code(DenyReason::AccessDenied(*d)) == code)
    {
        return DenyReason::AccessDenied(r);
    }
    if let Some(k) = not_found
        .into_iter()
        .find(|k| deny_code(DenyReason::NotFound(*k)) == code)
    {
        return DenyReason::NotFound(k);
    }
    DenyReason::AccessDenied(AccessDenial::Forbidden)
}

fn parse_outcome(code: &str) -> Outcome {
    [
        Outcome::NotFound,
        Outcome::AccessDenied,
        Outcome::Authentication,
        Outcome::RateLimited,
        Outcome::InvalidRequest,
        Outcome::ContentPolicy,
        Outcome::Server,
        Outcome::Timeout,
        Outcome::Connect,
        Outcome::Decode,
        Outcome::Success,
    ]
    .into_iter()
    .find(|o| o.as_str() == code)
    .unwrap_or(Outcome::NotFound)
}

fn period_code(p: BudgetPeriod) -> String {
    match p {
        BudgetPeriod::Day => "day".to_string(),
        BudgetPeriod::Month => "month".to_string(),
        BudgetPeriod::Custom(d) => format!("c{}ms", d.as_millis()),
    }
}

/// One budget's key for the current period, how long to keep it (ms) and its period's end.
struct BudgetKey {
    key: String,
    limit: i64,
    keep_ms: i64,
    ends: SystemTime,
}

impl RedisStore {
    pub(super) fn new(p: Parts) -> Result<Self, ConfigError> {
        p.limits.limiter_config(p.limits.catalog.default_model())?;
        let prefix = p.link.config.prefix_str().to_string();
        let store = Self {
            inner: Arc::new(Inner {
                tag: format!("{{{prefix}:{}}}", p.account),
                router_tag: format!("{{{prefix}:router}}"),
                link: p.link,
                provider: p.provider,
                account: p.account,
                router_ledger_name: p.router_ledger_name,
                router_budgets: p.router_budgets,
                clock: p.clock,
                wall: p.wall,
                router_clock: p.router_clock,
                reservation_ttl: p.reservation_ttl,
                settings: RwLock::new(Settings {
                    limits: p.limits,
                    budgets: p.budgets,
                }),
                breaker: RwLock::new(p.breaker),
                cache: Mutex::new(Cache::default()),
                pending: Mutex::new(HashMap::new()),
                refreshing: AtomicBool::new(false),
            }),
        };
        let weak: Weak<dyn Refresh> = Arc::downgrade(&store.inner) as Weak<Inner>;
        store.inner.link.register(weak);
        Ok(store)
    }

    /// Waits until the releases, holds and refreshes queued so far (by any store of this
    /// store's factory) have run: for tests and orderly shutdown.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let queued = self.inner.link.enqueue(Box::pin(async move {
            let _ = tx.send(());
        }));
        if queued {
            let _ = rx.await;
        }
    }

    /// The account whose state this store shares.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// The hash tag every key of the account starts with: `{prefix:account}`.
    pub fn key_tag(&self) -> &str {
        &self.inner.tag
    }

    /// A connection to the server (made on first use, bounded by the store's time-out): for
    /// the degraded mode's heartbeats, which share this store's connection.
    #[allow(dead_code)] // used by the degraded mode's heartbeats
    pub(crate) async fn connection(&self) -> Result<Connection, StoreError> {
        self.inner.link.connection().await
    }

    /// Adds admissions this instance made on its own while the store could not be reached
    /// to `model`'s shared window, at their admission times (entries older than the window
    /// are skipped), so the window is consistent again after re-joining.
    #[allow(dead_code)] // used by the degraded mode on re-joining
    pub(crate) async fn replay(
        &self,
        model: &str,
        entries: &[ReplayEntry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let i = &self.inner;
        let mut inv = REPLAY.prepare_invoke();
        inv.key(i.key(&format!("w:{model}")))
            .key(i.key(&format!("m:{model}")))
            .arg(i.now_arg());
        for e in entries {
            inv.arg(micros(e.age)).arg(e.images).arg(e.tokens);
        }
        // Replayed members are told apart from admissions by a random numeric prefix.
        inv.arg(format!("{}", rand::random::<u32>()));
        let _: Value = i.invoke(&inv).await?;
        i.ask_refresh(model);
        Ok(())
    }
}

impl Inner {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.tag)
    }

    fn router_key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.router_tag)
    }

    fn now_arg(&self) -> String {
        if self.router_clock {
            micros(self.clock.now()).to_string()
        } else {
            "server".to_string()
        }
    }

    async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        let mut conn = self.link.connection().await?;
        match tokio::time::timeout(self.link.timeout(), inv.invoke_async::<Value>(&mut conn)).await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(store_err(&e)),
            Err(_) => Err(StoreError::new(format!(
                "redis: no answer within {} ms",
                self.link.timeout().as_millis()
            ))),
        }
    }

    fn limiter_config(&self, model: &str) -> Result<LimiterConfig, StoreError> {
        self.settings
            .read()
            .limits
            .limiter_config(model)
            .map_err(|e| StoreError::new(format!("limits of model {model:?}: {e}")))
    }

    fn limit_args(inv: &mut ScriptInvocation<'_>, c: &LimiterConfig) {
        inv.arg(limit_arg(c.limits.rpm.map(u64::from)))
            .arg(limit_arg(c.limits.ipm.map(u64::from)))
            .arg(limit_arg(c.limits.tpm))
            .arg(format!("{:.17}", c.margin))
            .arg(if c.shared { "1" } else { "0" })
            .arg(format!("{:.17}", c.decrease))
            .arg(format!("{:.17}", c.min_factor))
            .arg(format!("{:.17}", c.recovery_per_minute));
    }

    fn budget_keys(&self, tag_key: impl Fn(&str) -> String, budgets: &[Budget]) -> Vec<BudgetKey> {
        let now = self.wall.now();
        budgets
            .iter()
            .map(|b| {
                // Custom periods count from the Unix epoch, the one start every instance
                // agrees on (an in-process ledger counts from its creation).
                let (idx, ends) = period_bounds(b.period, UNIX_EPOCH, now);
                let keep = ends.duration_since(now).unwrap_or_default() + BUDGET_KEY_SLACK;
                BudgetKey {
                    key: tag_key(&format!("b:{}:{idx}", period_code(b.period))),
                    limit: nano_usd(b.limit_usd),
                    keep_ms: i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
                    ends,
                }
            })
            .collect()
    }

    /// Window, denial, cool-down, reservation and spend keys of `model`, then the budgets'.
    fn account_keys(&self, inv: &mut ScriptInvocation<'_>, model: &str, budgets: &[BudgetKey]) {
        inv.key(self.key(&format!("w:{model}")))
            .key(self.key(&format!("m:{model}")))
            .key(self.key("deny"))
            .key(self.key(&format!("cool:{model}")))
            .key(self.key("rd"))
            .key(self.key("rz"))
            .key(self.key("spend"));
        for b in budgets {
            inv.key(&b.key);
        }
    }

    fn budget_args(inv: &mut ScriptInvocation<'_>, budgets: &[BudgetKey]) {
        inv.arg(budgets.len());
        for b in budgets {
            inv.arg(b.limit).arg(b.keep_ms);
        }
    }

    /// Runs the admission script (`dry`: only look) and caches what it shows.
    async fn run_admit(
        &self,
        model: &str,
        images: u32,
        tokens: u64,
        id: u64,
        amount: i64,
        dry: bool,
    ) -> Result<(Answer, Vec<BudgetKey>), StoreError> {
        let config = self.limiter_config(model)?;
        let budgets = {
            let s = self.settings.read();
            self.budget_keys(|k| self.key(k), &s.budgets)
        };
        let mut inv = ADMIT.prepare_invoke();
        self.account_keys(&mut inv, model, &budgets);
        inv.arg(self.now_arg());
        Self::limit_args(&mut inv, &config);
        inv.arg(images)
            .arg(tokens)
            .arg(id)
            .arg(micros(self.reservation_ttl))
            .arg(amount)
            .arg(if dry { "1" } else { "0" });
        Self::budget_args(&mut inv, &budgets);
        let answer = Answer::decode(&self.invoke(&inv).await?)?;
        self.remember(model, &answer);
        Ok((answer, budgets))
    }

    /// Records an answer in the cache, and opens the local breaker for a shared denial it
    /// has not been opened for yet.
    fn remember(&self, model: &str, a: &Answer) {
        let at = self.clock.now();
        let to_router = |t: i64| at + Duration::from_micros(u64::try_from(t - a.now).unwrap_or(0));
        let mut cache = self.cache.lock();
        if cache.windows.len() >= MAX_MODEL_WINDOWS && !cache.windows.contains_key(model) {
            // Bounded like the in-process store: forget the oldest answer.
            if let Some(oldest) = cache
                .windows
                .iter()
                .min_by_key(|(_, w)| w.at)
                .map(|(m, _)| m.clone())
            {
                cache.windows.remove(&oldest);
            }
        }
        cache.windows.insert(
            model.to_string(),
            CachedWindow {
                at,
                answer: a.clone(),
            },
        );
        cache.denial = a.denial.as_ref().map(|d| CachedMark {
            code: d.code.clone(),
            message: d.message.clone(),
            until: to_router(d.until),
        });
        match &a.cooldown {
            Some(c) => {
                cache.cools.insert(
                    model.to_string(),
                    CachedMark {
                        code: c.code.clone(),
                        message: c.message.clone(),
                        until: to_router(c.until),
                    },
                );
            }
            None => {
                cache.cools.remove(model);
            }
        }
        cache.lifetime_spent = a.lifetime_spent;
        cache.committed = a.committed;
        let budgets = self.settings.read().budgets.clone();
        if budgets.len() == a.budgets.len() {
            cache.budgets = budgets.into_iter().zip(a.budgets.iter().copied()).collect();
        }
        let open = match &a.denial {
            Some(d) if cache.denial_applied.as_deref() != Some(&d.until.to_string()) => {
                cache.denial_applied = Some(d.until.to_string());
                Some((parse_deny(&d.code), d.message.clone()))
            }
            _ => None,
        };
        drop(cache);
        if let Some((reason, message)) = open {
            let breaker = self.breaker.read();
            if !breaker.is_blocking() {
                breaker.open_for(reason, message);
            }
        }
    }

    /// Asks the background task for a fresh look at `model`'s window (at most one at a time).
    fn ask_refresh(self: &Arc<Self>, model: &str) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let model = model.to_string();
        let queued = self.link.enqueue(Box::pin(async move {
            if let Err(e) = me.run_admit(&model, 0, 0, 0, 0, true).await {
                tracing::debug!(provider = %me.provider, error = %e, "store refresh failed");
            }
            me.refreshing.store(false, Ordering::Release);
        }));
        if !queued {
            self.refreshing.store(false, Ordering::Release);
        }
    }

    fn refresh_if_stale(self: &Arc<Self>, model: &str) {
        let now = self.clock.now();
        let stale = match self.cache.lock().windows.get(model) {
            None => true,
            Some(w) => {
                let oldest_left =
                    w.answer.oldest_expiry > 0 && now >= w.local(w.answer.oldest_expiry);
                w.is_stale(now) || oldest_left || w.room_back(now)
            }
        };
        if stale {
            self.ask_refresh(model);
        }
    }

    /// Ends an admission on the server: the account's window and budgets, then the router's.
    async fn finish(
        self: &Arc<Self>,
        id: u64,
        model: &str,
        s: Finish<'_>,
    ) -> Result<(), StoreError> {
        self.pending.lock().remove(&id);
        // Dropped midway (the request's future was cancelled during its settlement): the
        // reservation is still ended, from the queue. Only cancellation fires it: a call that
        // returns, also with an error, disarms it (a failed job is not queued again, so an
        // unreachable server never grows a chain of retries).
        let mut guard = (id != 0 && s.how != "n").then(|| {
            EndOnDrop::new(
                self,
                id,
                model,
                EndJob::Account {
                    refund: s.refund,
                    how: s.how,
                    paid: s.paid,
                },
            )
        });
        let result = self.finish_steps(id, model, &s, guard.as_mut()).await;
        if let Some(g) = guard.as_mut() {
            g.disarm();
        }
        if result.is_err() && id != 0 && s.how != "n" {
            // Ended again from the background (idempotent on the server); the headers of
            // this answer are not sent again.
            let again = Finish {
                headers: None,
                rate_limited: None,
                ..s
            };
            self.retry_end(id, model.to_string(), again, END_RETRIES);
        }
        result
    }

    /// Ends reservation `id` again from the background queue after a pause, up to
    /// `tries_left` more times (see [`END_RETRIES`]).
    fn retry_end(self: &Arc<Self>, id: u64, model: String, f: Finish<'static>, tries_left: u8) {
        if tries_left == 0 {
            tracing::warn!(provider = %self.provider, "a request's end did not reach the store after retries; the reservation's time-to-live ends it");
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pause = END_RETRY_PAUSE * (1u32 << (END_RETRIES - tries_left).min(8));
        let me = Arc::clone(self);
        rt.spawn(async move {
            tokio::time::sleep(pause).await;
            let job = Arc::clone(&me);
            let queued = me.link.enqueue(Box::pin(async move {
                // `finish_steps` directly: `finish` would schedule its own retries.
                if job.finish_steps(id, &model, &f, None).await.is_err() {
                    job.retry_end(id, model, f, tries_left - 1);
                }
            }));
            if !queued {
                tracing::warn!(provider = %me.provider, "store queue full or stopped; the reservation's time-to-live ends it");
            }
        });
    }

    /// [`Inner::finish`]'s two steps: the account's script, then the router's budgets
    /// (`guard` learns when only the second is left).
    async fn finish_steps(
        &self,
        id: u64,
        model: &str,
        s: &Finish<'_>,
        guard: Option<&mut EndOnDrop>,
    ) -> Result<(), StoreError> {
        let config = self.limiter_config(model)?;
        let budgets = {
            let st = self.settings.read();
            self.budget_keys(|k| self.key(k), &st.budgets)
        };
        let h = s.headers.copied().unwrap_or_default();
        let opt = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let dur = |v: Option<Duration>| v.map_or(-1, micros);
        let mut inv = SETTLE.prepare_invoke();
        self.account_keys(&mut inv, model, &budgets);
        inv.arg(self.now_arg());
        Self::limit_args(&mut inv, &config);
        inv.arg(if id == 0 {
            "0".to_string()
        } else {
            id.to_string()
        })
        .arg(if s.refund { "1" } else { "0" })
        .arg(
            s.actual_tokens
                .map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
        )
        .arg(opt(h.limit_requests))
        .arg(opt(h.limit_tokens))
        .arg(opt(h.remaining_requests))
        .arg(opt(h.remaining_tokens))
        .arg(dur(h.reset_requests))
        .arg(dur(h.reset_tokens))
        .arg(dur(s.rate_limited))
        .arg(s.how)
        .arg(s.paid);
        Self::budget_args(&mut inv, &budgets);
        let answer = Answer::decode(&self.invoke(&inv).await?)?;
        self.remember(model, &answer);
        if let Some(g) = guard {
            g.job = EndJob::Router {
                how: s.how,
                paid: s.paid,
            };
        }
        if id != 0 && s.how != "n" && !self.router_budgets.is_empty() {
            self.router_budget(s.how, id, s.paid).await?;
        }
        Ok(())
    }

    /// The router-wide budgets: `op` is `reserve`, or how a reservation ends (`c`, `r`, `h`).
    /// Returns the refusing budget's index (1-based) and figures on a refused reservation.
    async fn router_budget(&self, op: &str, id: u64, amount: i64) -> Result<Vec<i64>, StoreError> {
        let budgets = self.budget_keys(|k| self.router_key(k), &self.router_budgets);
        let mut inv = BUDGET.prepare_invoke();
        inv.key(self.router_key(&format!("rd:{}", self.account)))
            .key(self.router_key(&format!("rz:{}", self.account)))
            .key(self.router_key("spend"));
        for b in &budgets {
            inv.key(&b.key);
        }
        inv.arg(self.now_arg())
            .arg(op)
            .arg(id)
            .arg(micros(self.reservation_ttl))
            .arg(amount);
        Self::budget_args(&mut inv, &budgets);
        ints(&self.invoke(&inv).await?)
    }

    fn exhausted(
        &self,
        ledger: &str,
        budget: &Budget,
        key: &BudgetKey,
        spent: i64,
        reserved: i64,
        requested: f64,
    ) -> BudgetError {
        let now = self.wall.now();
        BudgetError::Exhausted(BudgetExhausted {
            ledger: ledger.to_string(),
            period: budget.period,
            limit_usd: budget.limit_usd,
            spent_usd: usd(spent),
            reserved_usd: usd(reserved),
            requested_usd: requested,
            resets_at_unix: key
                .ends
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            resets_in: key.ends.duration_since(now).unwrap_or_default(),
        })
    }

    fn queue_finish(self: &Arc<Self>, admission: Admission, how: &'static str) {
        let id = admission.id;
        let Some(model) = self.pending.lock().get(&id).cloned() else {
            return;
        };
        let me = Arc::clone(self);
        let queued = self.link.enqueue(Box::pin(async move {
            let f = Finish {
                refund: how == "r",
                actual_tokens: None,
                headers: None,
                rate_limited: None,
                how,
                paid: 0,
            };
            if let Err(e) = me.finish(id, &model, f).await {
                tracing::warn!(provider = %me.provider, error = %e, "queued release/hold not stored yet; tried again from the background");
            }
        }));
        if !queued {
            tracing::warn!(provider = %self.provider, "store queue full or stopped; the reservation's time-to-live ends it");
        }
    }

    /// Headroom of `model` from the cache (the configured limits when nothing is cached).
    fn cached_headroom(&self, model: &str) -> Headroom {
        let now = self.clock.now();
        let cached = self.cache.lock().windows.get(model).cloned();
        let Some(w) = cached else {
            let settings = self.settings.read();
            let limits = settings.limits.limits_for(model).unwrap_or_default();
            let m = settings.limits.margin();
            let scaled = |l: Option<u64>| l.map(|l| ((l as f64 * m).floor() as u64).max(1));
            let (rpm, tpm, ipm) = (
                scaled(limits.rpm.map(u64::from)),
                scaled(limits.tpm),
                scaled(limits.ipm.map(u64::from)),
            );
            let no_access = limits.no_access.is_some();
            return Headroom {
                requests: if no_access { Some(0) } else { rpm },
                tokens: if no_access { Some(0) } else { tpm },
                images: if no_access { Some(0) } else { ipm },
                fraction: if no_access { 0.0 } else { 1.0 },
                blocked_until: None,
                retry_in: None,
                effective_rpm: rpm,
                effective_tpm: tpm,
                effective_ipm: ipm,
                margin: m,
                backoff_factor: 1.0,
                no_access,
            };
        };
        let a = &w.answer;
        let lim = |v: i64| (v > 0).then(|| u64::try_from(v).unwrap_or(0));
        let (rpm, tpm, ipm) = (lim(a.rpm), lim(a.tpm), lim(a.ipm));
        let avail = |l: Option<u64>, used: i64| l.map(|l| l.saturating_sub(used.max(0) as u64));
        let mut requests = avail(rpm, a.used_requests);
        let tokens = avail(tpm, a.used_tokens);
        let mut images = avail(ipm, a.used_images);
        if w.room_back(now) {
            // "Full until T" and T has passed: at least one request of one image fits (the
            // entries that left the window are still in the cached sums until the refresh
            // this read asked for answers).
            requests = requests.map(|r| r.max(1));
            images = images.map(|i| i.max(1));
        }
        let block_until = (a.block_until > a.now)
            .then(|| {
                w.at + Duration::from_micros(u64::try_from(a.block_until - a.now).unwrap_or(0))
            })
            .filter(|u| *u > now);
        let no_access = self
            .settings
            .read()
            .limits
            .limits_for(model)
            .is_ok_and(|l| l.no_access.is_some());
        let frac = |avail: Option<u64>, lim: Option<u64>| match (avail, lim) {
            (Some(a), Some(l)) if l > 0 => a as f64 / l as f64,
            _ => 1.0,
        };
        let fraction = if block_until.is_some() || no_access {
            0.0
        } else {
            frac(requests, rpm)
                .min(frac(tokens, tpm))
                .min(frac(images, ipm))
                .clamp(0.0, 1.0)
        };
        Headroom {
            requests: if no_access { Some(0) } else { requests },
            tokens: if no_access { Some(0) } else { tokens },
            images: if no_access { Some(0) } else { images },
            fraction,
            blocked_until: block_until,
            retry_in: block_until.map(|u| u - now),
            effective_rpm: rpm,
            effective_tpm: tpm,
            effective_ipm: ipm,
            margin: a.margin,
            backoff_factor: a.factor,
            no_access,
        }
    }
}

impl Refresh for Inner {
    /// Refreshes the window answered longest ago (one script call per store and tick:
    /// bounded), which also brings the account's denial and that model's cool-down.
    fn refresh(self: Arc<Self>) {
        let oldest = self
            .cache
            .lock()
            .windows
            .iter()
            .min_by_key(|(_, w)| w.at)
            .map(|(m, _)| m.clone());
        if let Some(model) = oldest {
            self.ask_refresh(&model);
        }
    }
}

/// How an admission ends on the server.
#[derive(Clone, Copy)]
struct Finish<'a> {
    refund: bool,
    actual_tokens: Option<u64>,
    headers: Option<&'a RateLimitHeaders>,
    rate_limited: Option<Duration>,
    /// `c` commit, `r` release, `h` hold, `n` nothing (headers only).
    how: &'static str,
    paid: i64,
}

/// What an [`EndOnDrop`] queues.
#[derive(Clone, Copy, Debug)]
enum EndJob {
    /// Release everything reserved under the id (account window and budgets, router
    /// budgets): an admission whose future was dropped before it returned.
    Release,
    /// End the reservation on the account (and then the router budgets) as a settlement
    /// dropped before its account script answered would have; headers and 429s are not
    /// repeated (advisory, and a back-off must not apply twice).
    Account {
        refund: bool,
        how: &'static str,
        paid: i64,
    },
    /// Only the router budgets are left (the account script answered).
    Router { how: &'static str, paid: i64 },
}

/// Ends a reservation from `Drop` when the future that was making or ending it is dropped
/// midway: an `async` call cannot finish its work once cancelled, so the rest goes to the
/// factory's bounded background queue (the same path as `release` and `hold`); if the
/// queue is full, the reservation's time-to-live ends it, as for a crashed instance.
/// Every job it queues is idempotent on the server: ending a reservation that is already
/// ended, or was never made, changes nothing.
struct EndOnDrop {
    inner: Arc<Inner>,
    id: u64,
    model: String,
    job: EndJob,
    armed: bool,
}

impl EndOnDrop {
    fn new(inner: &Arc<Inner>, id: u64, model: &str, job: EndJob) -> Self {
        Self {
            inner: Arc::clone(inner),
            id,
            model: model.to_string(),
            job,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (me, id, job) = (Arc::clone(&self.inner), self.id, self.job);
        let model = std::mem::take(&mut self.model);
        me.pending.lock().remove(&id);
        let provider = me.provider.clone();
        let queued = self.inner.link.enqueue(Box::pin(async move {
            let result = match job {
                EndJob::Release => {
                    let f = Finish {
                        refund: true,
                        actual_tokens: None,
                        headers: None,
                        rate_limited: None,
                        how: "r",
                        paid: 0,
                    };
                    me.finish(id, &model, f).await
                }
                EndJob::Account { refund, how, paid } => {
                    let f = Finish {
                        refund,
                        actual_tokens: None,
                        headers: None,
                        rate_limited: None,
                        how,
                        paid,
                    };
                    me.finish(id, &model, f).await
                }
                EndJob::Router { how, paid } => {
                    if me.router_budgets.is_empty() {
                        Ok(())
                    } else {
                        me.router_budget(how, id, paid).await.map(|_| ())
                    }
                }
            };
            if let Err(e) = result {
                tracing::warn!(provider = %me.provider, error = %e, "reservation of a cancelled call not ended; its time-to-live ends it");
            }
        }));
        if !queued {
            tracing::warn!(provider = %provider, "store queue full or stopped; the reservation of a cancelled call ends by its time-to-live");
        }
    }
}

fn block_reason(code: i64) -> BlockReason {
    match code {
        1 => BlockReason::RemainingRequestsZero,
        2 => BlockReason::RemainingTokensZero,
        _ => BlockReason::RateLimited,
    }
}

fn limit_kind(code: i64) -> LimitKind {
    match code {
        1 => LimitKind::Requests,
        2 => LimitKind::Images,
        _ => LimitKind::Tokens,
    }
}

fn after(a: &Answer, t: i64) -> Duration {
    Duration::from_micros(u64::try_from(t - a.now).unwrap_or(0))
}

#[async_trait]
impl StateStore for RedisStore {
    fn state(&self) -> StoreState {
        StoreState {
            kind: "redis",
            account: Some(self.inner.account.clone()),
            ..StoreState::default()
        }
    }

    fn headroom(&self, model: &str) -> Headroom {
        self.inner.refresh_if_stale(model);
        self.inner.cached_headroom(model)
    }

    fn windows(&self) -> Vec<(String, Headroom)> {
        let models: Vec<String> = self.inner.cache.lock().windows.keys().cloned().collect();
        let mut v: Vec<(String, Headroom)> = models
            .into_iter()
            .map(|m| {
                let h = self.inner.cached_headroom(&m);
                (m, h)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn budget_left(&self) -> Option<f64> {
        let settings = self.inner.settings.read();
        if settings.budgets.is_empty() {
            return None;
        }
        let cache = self.inner.cache.lock();
        settings
            .budgets
            .iter()
            .map(|b| {
                let limit = nano_usd(b.limit_usd);
                let used = cache
                    .budgets
                    .iter()
                    .find(|(c, _)| c.period == b.period)
                    .map_or(0, |(_, f)| f.spent + f.reserved.max(0) + f.held);
                if limit == 0 {
                    0.0
                } else {
                    (limit - used).max(0) as f64 / limit as f64
                }
            })
            .reduce(f64::min)
    }

    fn unavailable(&self, model: &str, now: Duration) -> Option<Unavailable> {
        let breaker = self.inner.breaker.read().clone();
        if breaker.is_blocking() {
            let b = breaker.snapshot();
            if let (
                crate::breaker::BreakerState::Open,
                Some(crate::breaker::OpenReason::Denied(r)),
            ) = (b.state, b.reason)
            {
                return Some(Unavailable {
                    cause: crate::router::policy::deny_outcome(r),
                    message: b.message.unwrap_or_default(),
                    remaining: b.retry_in.unwrap_or_default(),
                    model_only: false,
                });
            }
        }
        let cache = self.inner.cache.lock();
        if let Some(d) = cache.denial.as_ref().filter(|d| d.until > now) {
            return Some(Unavailable {
                cause: crate::router::policy::deny_outcome(parse_deny(&d.code)),
                message: d.message.clone(),
                remaining: d.until - now,
                model_only: false,
            });
        }
        cache
            .cools
            .get(model)
            .filter(|c| c.until > now)
            .map(|c| Unavailable {
                cause: parse_outcome(&c.code),
                message: c.message.clone(),
                remaining: c.until - now,
                model_only: true,
            })
    }

    fn breaker(&self) -> CircuitBreaker {
        self.inner.breaker.read().clone()
    }

    fn spend(&self) -> LedgerSnapshot {
        let now = self.inner.wall.now();
        let settings = self.inner.settings.read();
        let cache = self.inner.cache.lock();
        let budgets = settings
            .budgets
            .iter()
            .map(|b| {
                let f = cache
                    .budgets
                    .iter()
                    .find(|(c, _)| c.period == b.period)
                    .map(|(_, f)| *f)
                    .unwrap_or_default();
                let (_, ends) = period_bounds(b.period, UNIX_EPOCH, now);
                let limit = nano_usd(b.limit_usd);
                BudgetSnapshot {
                    period: b.period,
                    limit_usd: b.limit_usd,
                    spent_usd: usd(f.spent),
                    reserved_usd: usd(f.reserved),
                    held_usd: usd(f.held),
                    remaining_usd: usd(limit - f.spent - f.reserved.max(0) - f.held),
                    resets_at_unix: ends.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                    resets_in: ends.duration_since(now).unwrap_or_default(),
                }
            })
            .collect::<Vec<_>>();
        LedgerSnapshot {
            name: self.inner.provider.clone(),
            lifetime_spent_usd: usd(cache.lifetime_spent),
            reserved_usd: budgets.first().map_or(0.0, |b| b.reserved_usd),
            committed: u64::try_from(cache.committed).unwrap_or(0),
            budgets,
        }
    }

    fn spent_usd(&self) -> f64 {
        usd(self.inner.cache.lock().lifetime_spent)
    }

    fn rate_limit_check(&self, demand: Demand<'_>) -> Result<(), Denied> {
        if let Ok(l) = self.inner.settings.read().limits.limits_for(demand.model) {
            if let Some(na) = l.no_access {
                return Err(Denied::NoAccess(Box::new(na)));
            }
        }
        let now = self.inner.clock.now();
        let cached = self.inner.cache.lock().windows.get(demand.model).cloned();
        if cached.as_ref().is_some_and(|w| w.is_stale(now)) {
            // Too old to refuse on: ask the server for a fresh look and say nothing.
            self.inner.ask_refresh(demand.model);
            return Ok(());
        }
        let h = self.inner.cached_headroom(demand.model);
        if let (Some(until), Some(retry_in)) = (h.blocked_until, h.retry_in) {
            return Err(Denied::Blocked {
                reason: block_reason(cached.as_ref().map_or(3, |w| w.answer.block_reason)),
                until,
                retry_in,
            });
        }
        // When one request fits again (full on requests or images), else when the oldest
        // entry leaves (full on tokens).
        let retry_in = cached.map_or(Duration::ZERO, |w| {
            let a = &w.answer;
            let t = if a.room_at > a.now {
                a.room_at
            } else {
                a.oldest_expiry
            };
            w.local(t).saturating_sub(now)
        });
        let full = |avail: Option<u64>, want: u64| avail.is_some_and(|a| a < want);
        let (limit, value) = if full(h.requests, 1) {
            (LimitKind::Requests, h.effective_rpm)
        } else if full(h.images, u64::from(demand.images)) {
            (LimitKind::Images, h.effective_ipm)
        } else if full(h.tokens, demand.tokens) {
            (LimitKind::Tokens, h.effective_tpm)
        } else {
            return Ok(());
        };
        Err(Denied::NoRoom {
            limit,
            limit_value: value.unwrap_or(0),
            retry_in,
        })
    }

    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError> {
        for (i, b) in config.budgets.iter().enumerate() {
            Budget::new(b.limit_usd, b.period).map_err(|e| e.scoped(&format!("budgets[{i}]")))?;
        }
        config
            .limits
            .limiter_config(config.limits.catalog.default_model())?;
        let models: Vec<String> = self.inner.cache.lock().windows.keys().cloned().collect();
        for m in &models {
            config.limits.limiter_config(m)?;
        }
        {
            let mut s = self.inner.settings.write();
            s.limits = config.limits.clone();
            s.budgets = config.budgets.clone();
        }
        let mut breaker = self.inner.breaker.write();
        if breaker.config() != &config.breaker {
            *breaker = breaker.reconfigured(config.breaker.clone());
        }
        drop(breaker);
        // The cached figures were computed with the old limits.
        self.inner.cache.lock().windows.clear();
        Ok(())
    }

    async fn admit(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        let i = &self.inner;
        let limits = i
            .settings
            .read()
            .limits
            .limits_for(demand.model)
            .map_err(|e| {
                Refusal::Store(StoreError::new(format!(
                    "limits of model {:?}: {e}",
                    demand.model
                )))
            })?;
        if let Some(na) = limits.no_access {
            return Err(Refusal::RateLimit(Denied::NoAccess(Box::new(na))));
        }
        let has_budgets = !i.settings.read().budgets.is_empty();
        let cost_usd = match cost {
            Ok(c) => c.usd,
            Err(unknown) => {
                let ledger = if has_budgets {
                    Some(i.provider.clone())
                } else if !i.router_budgets.is_empty() {
                    Some(i.router_ledger_name.clone())
                } else {
                    None
                };
                if let Some(ledger) = ledger {
                    return Err(Refusal::Budget(BudgetError::PriceUnknown {
                        ledger,
                        source: unknown,
                    }));
                }
                0.0
            }
        };
        if !cost_usd.is_finite() || cost_usd < 0.0 {
            return Err(Refusal::Budget(BudgetError::InvalidAmount {
                usd: cost_usd,
            }));
        }
        let amount = nano_usd(cost_usd);
        i.link.start_queue();
        // A random id: unique across instances without a round trip (2^-63 per pair).
        let id = (rand::random::<u64>() >> 1).max(1);
        // From here on a script may reserve under `id`: if this future is dropped before it
        // returns (the request was cancelled, or the degraded mode's time-out gave up on
        // it), the guard queues the release of whatever was reserved. Releasing what was
        // never reserved is a no-op on the server.
        let mut guard = EndOnDrop::new(i, id, demand.model, EndJob::Release);
        if !i.router_budgets.is_empty() {
            let v = i
                .router_budget("reserve", id, amount)
                .await
                .map_err(Refusal::Store)?;
            if let (Some(&j), true) = (v.first(), v.len() >= 4 && v[0] > 0) {
                let idx = usize::try_from(j - 1).unwrap_or(0);
                let keys = i.budget_keys(|k| i.router_key(k), &i.router_budgets);
                if let (Some(b), Some(k)) = (i.router_budgets.get(idx), keys.get(idx)) {
                    // Refused: nothing was reserved.
                    guard.disarm();
                    return Err(Refusal::Budget(i.exhausted(
                        &i.router_ledger_name,
                        b,
                        k,
                        v[1],
                        v[2] + v[3],
                        cost_usd,
                    )));
                }
            }
        }
        i.pending.lock().insert(id, demand.model.to_string());
        let result = i
            .run_admit(
                demand.model,
                demand.images,
                demand.tokens,
                id,
                amount,
                false,
            )
            .await;
        let refusal = match result {
            Ok((a, _)) if a.status == 0 => {
                // The admission is the caller's now (the slot's guard ends it).
                guard.disarm();
                return Ok(Admission::shared(id, demand.tokens));
            }
            Ok((a, keys)) => refusal(i, &a, &keys, demand, cost_usd),
            Err(e) => Refusal::Store(e),
        };
        i.pending.lock().remove(&id);
        if !i.router_budgets.is_empty() {
            // The account refused (or did not answer): give the router-wide reservation
            // back. If this fails too, the reservation's time-to-live ends it.
            if let Err(e) = i.router_budget("r", id, 0).await {
                tracing::warn!(provider = %i.provider, error = %e, "router budget reservation not released");
            }
        }
        if !matches!(refusal, Refusal::Store(_)) {
            // Refused by the script: it reserved nothing. A script that did not answer in
            // time may still run on the server: the armed guard then queues one release
            // (a no-op if it never ran).
            guard.disarm();
        }
        Err(refusal)
    }

    async fn settle(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError> {
        let actual_tokens = settlement.usage.and_then(|u| {
            let total = if u.total_tokens > 0 {
                u.total_tokens
            } else {
                u.input_tokens.saturating_add(u.output_tokens)
            };
            (total > 0).then_some(total)
        });
        let (how, paid) = match settlement.budget {
            BudgetSettlement::Commit(usd) => ("c", nano_usd(usd)),
            BudgetSettlement::Release => ("r", 0),
            BudgetSettlement::Hold => ("h", 0),
        };
        let known = self.inner.pending.lock().contains_key(&admission.id);
        let f = Finish {
            refund: settlement.refund_rate_limit,
            actual_tokens,
            headers: settlement.headers,
            rate_limited: settlement.rate_limited,
            how: if known { how } else { "n" },
            paid,
        };
        self.inner
            .finish(if known { admission.id } else { 0 }, settlement.model, f)
            .await
    }

    fn release(&self, admission: Admission) {
        self.inner.queue_finish(admission, "r");
    }

    fn hold(&self, admission: Admission) {
        self.inner.queue_finish(admission, "h");
    }

    async fn deny(
        &self,
        reason: DenyReason,
        message: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        let message = crate::redact::text(message);
        // This instance knows at once, as with the in-process store.
        self.inner.breaker.read().open_for(reason, message.clone());
        let mut inv = MARK.prepare_invoke();
        inv.key(self.inner.key("deny"))
            .arg(self.inner.now_arg())
            .arg(micros(for_))
            .arg("reason")
            .arg(deny_code(reason))
            .arg(&message);
        let until = ints(&self.inner.invoke(&inv).await?)?;
        let mut cache = self.inner.cache.lock();
        cache.denial = Some(CachedMark {
            code: deny_code(reason),
            message,
            until: self.inner.clock.now() + for_,
        });
        cache.denial_applied = until.first().map(|u| u.to_string());
        Ok(())
    }

    async fn cool_model(
        &self,
        model: &str,
        cause: Outcome,
        message: &str,
        until: Duration,
    ) -> Result<(), StoreError> {
        let message = crate::redact::text(message);
        let now = self.inner.clock.now();
        let dur = until.saturating_sub(now);
        let mut inv = MARK.prepare_invoke();
        inv.key(self.inner.key(&format!("cool:{model}")))
            .arg(self.inner.now_arg())
            .arg(micros(dur))
            .arg("cause")
            .arg(cause.as_str())
            .arg(&message);
        self.inner.invoke(&inv).await?;
        self.inner.cache.lock().cools.insert(
            model.to_string(),
            CachedMark {
                code: cause.as_str().to_string(),
                message,
                until,
            },
        );
        Ok(())
    }

    async fn observe(&self, model: &str, headers: &RateLimitHeaders) -> Result<(), StoreError> {
        let f = Finish {
            refund: false,
            actual_tokens: None,
            headers: Some(headers),
            rate_limited: None,
            how: "n",
            paid: 0,
        };
        self.inner.finish(0, model, f).await
    }
}

/// The refusal an admission answer says.
fn refusal(
    i: &Inner,
    a: &Answer,
    keys: &[BudgetKey],
    demand: Demand<'_>,
    cost_usd: f64,
) -> Refusal {
    let [x1, x2, x3] = a.extra;
    let u64_of = |v: i64| u64::try_from(v).unwrap_or(0);
    match a.status {
        1 => {
            let d = a.denial.clone().unwrap_or(super::scripts::Mark {
                code: String::new(),
                message: String::new(),
                until: a.now,
            });
            Refusal::Unavailable(Unavailable {
                cause: crate::router::policy::deny_outcome(parse_deny(&d.code)),
                message: d.message,
                remaining: after(a, d.until),
                model_only: false,
            })
        }
        2 => {
            let c = a.cooldown.clone().unwrap_or(super::scripts::Mark {
                code: String::new(),
                message: String::new(),
                until: a.now,
            });
            Refusal::Unavailable(Unavailable {
                cause: parse_outcome(&c.code),
                message: c.message,
                remaining: after(a, c.until),
                model_only: true,
            })
        }
        3 => Refusal::RateLimit(Denied::NeverFitsImages {
            images: demand.images,
            effective_ipm: u64_of(x2),
        }),
        4 => Refusal::RateLimit(Denied::NeverFits {
            tokens: demand.tokens,
            effective_tpm: u64_of(x2),
        }),
        5 => {
            let retry_in = after(a, x2);
            Refusal::RateLimit(Denied::Blocked {
                reason: block_reason(x1),
                until: i.clock.now() + retry_in,
                retry_in,
            })
        }
        6 => Refusal::RateLimit(Denied::NoRoom {
            limit: limit_kind(x1),
            limit_value: u64_of(x2),
            retry_in: after(a, x3),
        }),
        7 => {
            let idx = usize::try_from(x1 - 1).unwrap_or(0);
            let budgets = i.settings.read().budgets.clone();
            match (budgets.get(idx), keys.get(idx), a.budgets.get(idx)) {
                (Some(b), Some(k), Some(f)) => Refusal::Budget(i.exhausted(
                    &i.provider,
                    b,
                    k,
                    f.spent,
                    f.reserved.max(0) + f.held,
                    cost_usd,
                )),
                _ => Refusal::Store(StoreError::new("budget refusal without its budget")),
            }
        }
        s => Refusal::Store(StoreError::new(format!("unknown admission status {s}"))),
    }
}
