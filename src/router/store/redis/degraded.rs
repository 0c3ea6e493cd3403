//! Degraded mode: what a shared store does when its server is slow or gone.
//!
//! [`Degraded`] wraps the shared store (the *primary*, any [`SharedStore`]) and is what the
//! Redis factory hands to each provider slot. While the primary answers, every call goes to
//! it. When a call fails or takes longer than the store's time-out (default 50 ms,
//! [`RedisConfig::timeout`](super::RedisConfig::timeout)), the wrapper switches to
//! **degraded**: that same request is admitted (or refused) at once from a local
//! [`InProcessStore`], so no request fails or waits past its deadline because of the store,
//! and the router keeps serving.
//!
//! # The conservative share
//! The local store of an outage gets a share of the account's limits: each rate limit divided
//! by `N`, the live instance count from the heartbeats ([`super::heartbeat`]; the last known
//! count when the server is gone). It is applied through the limiter's margin — `margin / N`
//! — so the margin stays a valid `(0, 1]` and every dimension (requests, images, tokens) and
//! every model window gets the same share: `floor(limit × margin / N)`. (The margin is nudged
//! up by one part in 10⁹ so that float rounding of `1/N` never costs a whole unit: 60 RPM over
//! 3 instances is exactly 20.) Each provider budget gets `remaining / N`, the remaining amount
//! from the last known shared spend; the router-wide budgets get `limit / N` (the wrapper does
//! not see their shared spend).
//!
//! The fresh local window is **seeded** with what this instance admitted through the primary
//! in the last 60 s, so an instance that had used its share before the outage admits nothing
//! more until that room frees. The bound this gives: while every instance is degraded for a
//! whole 60-s window, the account sees at most `N × floor(L/N) ≤ L`; in a window straddling
//! the outage's start, at most what the shared store admitted (≤ `L`) plus, per instance,
//! its share minus its own admissions already in the window.
//!
//! # What counts as an outage
//! A primary call that returns a [`StoreError`] (or a [`Refusal::Store`]) or does not answer
//! within the time-out. Refusals for rate limit, budget or unavailability are answers, passed
//! on as they are. The share is fixed when the outage starts (the heartbeats cannot run
//! without the server). The settlement of an admission the primary made is still sent to
//! the primary while degraded (bounded by the time-out; its headers apply locally too); when
//! it cannot be, the router logs lost bookkeeping and the shared store's reservation
//! time-to-live ends it, as held.
//!
//! # One warning per outage
//! Entering degraded mode logs one `tracing::warn!` (not one per request), sets the
//! `image_router_store_degraded{account}` gauge to 1 and [`StoreState::degraded`] to the
//! reason; every local admission counts in `image_router_store_degraded_admissions_total`.
//! Leaving it logs once at `info`.
//!
//! # Re-joining
//! While degraded, at most one probe per interval (the heartbeat interval,
//! [`DegradedParts::retry_every`]) runs in a spawned, bounded task started by the next store
//! call: a `PING`-like [`SharedStore::ping`]. When it answers, the wrapper routes through the
//! primary again and then:
//! * **replays** the admissions it made locally that are still inside the 60-s window into the
//!   shared window ([`SharedStore::replay`], each with its age), so the shared window is
//!   consistent with what was sent;
//! * **charges** the budget spent locally (commits, and holds at their estimate) to the shared
//!   budgets ([`SharedStore::charge`]);
//! * re-sends the denials and model cool-downs recorded locally that have not ended yet;
//! * when the server restarted meanwhile (its identity, Redis's `run_id`, changed: without
//!   persistence it forgot the windows), also replays what this instance admitted through
//!   it in the last 60 s, so the restarted server's windows hold the minute's traffic again.
//!
//! A step that fails is kept and retried at the next re-join (or, for spend, at the next
//! settlement); nothing is dropped silently. (The Redis store charges spend as an admission
//! of no image at that cost, committed with its room refunded; when the shared budget
//! refuses it — the other instances spent it to its limit — the amount is dropped with a
//! warning, since nothing more can be admitted in that period anyway.) Rate-limit headers observed while degraded
//! ([`StateStore::observe`]) are applied locally and *not* re-sent: they describe a moment
//! that has passed by the time the server answers, and the next answer carries fresh ones.
//!
//! # Admissions keep their origin
//! An [`Admission`] made locally (it carries its permit) settles, releases and holds locally
//! even after re-joining; one made by the primary (it carries an id) goes to the primary.
//! Known slack: a local admission replayed at re-join and then refunded, or reconciled to
//! other tokens, stays in the shared window as replayed (it only over-counts, which is safe).
//!
//! # Reads
//! Ranking reads (headroom, windows, budget left, the rate-limit check) come from the local
//! store while degraded, else from the primary; `unavailable` checks both while degraded
//! (the primary answers it from its cache). Spend, the breaker and [`StateStore::state`] come
//! from the primary (the shared view), with `degraded` and `instances` filled in here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use super::heartbeat::{Heartbeat, HeartbeatClock, InstanceCount};
use super::{RedisStore, ReplayEntry};
use crate::breaker::{CircuitBreaker, DenyReason};
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::error::Outcome;
use crate::quota::budget::{Budget, BudgetLedger, LedgerSnapshot, WallClock};
use crate::quota::cost::{Cost, PriceUnknown};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limiter::{Denied, Headroom, WINDOW};
use crate::router::store::{
    Admission, BudgetSettlement, Demand, InProcessStore, LimitSettings, Refusal, Settlement,
    StateStore, StoreConfig, StoreContext, StoreError, StoreState, Unavailable,
};

/// Most recent shared admissions remembered for seeding a local window (older ones are
/// forgotten first: fewer seeds only make the share less conservative, never wrong).
const MAX_RECENT: usize = 65_536;
/// Smallest local budget: a budget must be positive, and a share of nothing is nothing.
const MIN_BUDGET_USD: f64 = 1e-9;

/// An admission made locally while the shared store could not be reached, to add to the
/// shared window on re-joining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEntry {
    /// How long before the replay it was admitted.
    pub age: Duration,
    /// Its images (`n`).
    pub images: u32,
    /// Its tokens.
    pub tokens: u64,
}

/// What the degraded mode needs of a shared store besides [`StateStore`] (the Redis store
/// implements it).
#[async_trait]
pub trait SharedStore: StateStore {
    /// Adds admissions made locally to `model`'s shared window at their ages.
    async fn replay(&self, model: &str, entries: &[LocalEntry]) -> Result<(), StoreError>;
    /// Charges `usd` spent locally to the account's shared budgets (`model`: a model the
    /// provider serves, for stores that charge through an admission).
    async fn charge(&self, model: &str, usd: f64) -> Result<(), StoreError>;
    /// A cheap call that succeeds when the server answers, with the server's identity: a
    /// string that changes when the server restarts (Redis: its `run_id`), so a re-joining
    /// instance knows whether the server kept the shared windows.
    async fn ping(&self) -> Result<String, StoreError>;
}

/// Everything a [`Degraded`] wrapper is made from besides its primary.
#[derive(Clone, Debug)]
pub struct DegradedParts {
    /// The account the store serves (metric label, log field).
    pub account: String,
    /// The provider's rate limits (the share is taken from them).
    pub limits: LimitSettings,
    /// The provider's budgets (the share is taken of their last known remaining amount).
    pub budgets: Vec<Budget>,
    /// The router-wide budgets (each shared as `limit / N`).
    pub router_budgets: Vec<Budget>,
    /// The router's clock.
    pub clock: SharedClock,
    /// Wall time for budget periods.
    pub wall: WallClock,
    /// The slot's breaker (shared with the primary: one record of denials).
    pub breaker: CircuitBreaker,
    /// Time-out of one primary call.
    pub timeout: Duration,
    /// Least time between two probes of the server while degraded.
    pub retry_every: Duration,
    /// The live instance count of the account.
    pub instances: InstanceCount,
    /// The heartbeats, kept alive as long as the store (optional: tests).
    pub heartbeat: Option<Arc<Heartbeat>>,
}

/// One outage: why, since when, the share and the local store serving it.
#[derive(Debug)]
struct Outage {
    reason: String,
    since: Duration,
    share: u32,
    local: Arc<InProcessStore>,
    /// The id of the last seeded entry of each model window (entries after it were admitted
    /// locally).
    seeded: HashMap<String, u64>,
    next_try: Duration,
}

/// An admission made locally and not yet replayed into the shared window.
#[derive(Clone, Debug)]
struct Unsynced {
    model: String,
    at: Duration,
    images: u32,
    tokens: u64,
}

/// State recorded locally while degraded, to re-send on re-joining.
#[derive(Debug)]
enum Queued {
    Deny {
        reason: DenyReason,
        message: String,
        until: Duration,
    },
    Cool {
        model: String,
        cause: Outcome,
        message: String,
        until: Duration,
    },
}

struct Inner {
    primary: Arc<dyn SharedStore>,
    parts: DegradedParts,
    /// Settings after reloads: limits, provider budgets.
    settings: RwLock<(LimitSettings, Vec<Budget>)>,
    outage: Mutex<Option<Outage>>,
    /// The store local admissions settle through (the last outage's; any in-process store
    /// settles an admission carrying its permit the same way).
    last_local: RwLock<Arc<InProcessStore>>,
    recent: Mutex<VecDeque<Unsynced>>,
    unsynced: Mutex<Vec<Unsynced>>,
    /// Spend made locally not yet charged to the shared budgets, and the model of the last
    /// local admission (what [`SharedStore::charge`] is told).
    pending_usd: Mutex<(f64, String)>,
    queued: Mutex<Vec<Queued>>,
    probing: AtomicBool,
    /// The server's identity when last seen ([`SharedStore::ping`]), and whether a task is
    /// learning it.
    server: Mutex<Option<String>>,
    learning: AtomicBool,
}

/// A shared store with a local fallback (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Degraded {
    inner: Arc<Inner>,
}

impl fmt::Debug for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Degraded")
            .field("primary", &self.inner.primary)
            .field("account", &self.inner.parts.account)
            .field("degraded", &self.degraded_reason())
            .finish_non_exhaustive()
    }
}

fn share_margin(margin: f64, n: u32) -> f64 {
    (margin / f64::from(n.max(1)) * (1.0 + 1e-9)).min(margin)
}

impl Degraded {
    /// Wraps `primary`; the local store's settings are checked now (errors name the field).
    pub fn new(primary: Arc<dyn SharedStore>, parts: DegradedParts) -> Result<Self, ConfigError> {
        let local = Self::make_local(&parts, &parts.limits, &parts.budgets, 1)?;
        Ok(Self {
            inner: Arc::new(Inner {
                primary,
                settings: RwLock::new((parts.limits.clone(), parts.budgets.clone())),
                parts,
                outage: Mutex::new(None),
                last_local: RwLock::new(Arc::new(local)),
                recent: Mutex::new(VecDeque::new()),
                unsynced: Mutex::new(Vec::new()),
                pending_usd: Mutex::new((0.0, String::new())),
                queued: Mutex::new(Vec::new()),
                probing: AtomicBool::new(false),
                server: Mutex::new(None),
                learning: AtomicBool::new(false),
            }),
        })
    }

    fn make_local(
        parts: &DegradedParts,
        limits: &LimitSettings,
        budgets: &[Budget],
        share: u32,
    ) -> Result<InProcessStore, ConfigError> {
        let mut limits = limits.clone();
        limits.margin = Some(share_margin(limits.margin(), share));
        let n = f64::from(share.max(1));
        let router: Vec<Budget> = parts
            .router_budgets
            .iter()
            .map(|b| Budget {
                limit_usd: (b.limit_usd / n).max(MIN_BUDGET_USD),
                period: b.period,
            })
            .collect();
        let ledger = BudgetLedger::new(
            format!("{} (degraded)", parts.account),
            budgets.to_vec(),
            parts.wall.clone(),
        )?;
        let router = BudgetLedger::new("router (degraded)", router, parts.wall.clone())?;
        InProcessStore::new(
            limits,
            parts.clock.clone(),
            ledger,
            router,
            parts.breaker.clone(),
        )
    }

    /// Why the store serves from local state now, `None` while the primary answers.
    pub fn degraded_reason(&self) -> Option<String> {
        self.inner.outage.lock().as_ref().map(|o| o.reason.clone())
    }

    /// The share the current outage divides by (`None` while healthy).
    pub fn share(&self) -> Option<u32> {
        self.inner.outage.lock().as_ref().map(|o| o.share)
    }

    /// The server's identity as last seen (learned after the first admission through the
    /// primary, and at each re-join): what tells a restarted server.
    pub fn server_identity(&self) -> Option<String> {
        self.inner.server.lock().clone()
    }

    /// The primary store.
    pub fn primary(&self) -> &Arc<dyn SharedStore> {
        &self.inner.primary
    }

    /// Probes the server now and re-joins if it answers (what the automatic probe does);
    /// `true` when the store is healthy afterwards.
    pub async fn try_rejoin(&self) -> bool {
        self.inner.try_rejoin().await
    }
}

impl Inner {
    fn now(&self) -> Duration {
        self.parts.clock.now()
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.parts.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::new(format!(
                "{what} timed out after {:?}",
                self.parts.timeout
            ))),
        }
    }

    /// The local store of the current outage, if degraded (and starts a due probe).
    fn local_if_degraded(self: &Arc<Self>) -> Option<Arc<InProcessStore>> {
        let mut guard = self.outage.lock();
        let outage = guard.as_mut()?;
        let local = Arc::clone(&outage.local);
        let now = self.now();
        if now >= outage.next_try && !self.probing.swap(true, Ordering::AcqRel) {
            outage.next_try = now + self.parts.retry_every;
            drop(guard);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let me = Arc::clone(self);
                rt.spawn(async move {
                    me.try_rejoin_inner().await;
                });
            } else {
                self.probing.store(false, Ordering::Release);
            }
        }
        Some(local)
    }

    /// Switches to degraded (once per outage: one warning) and returns the local store.
    fn enter(&self, reason: &str) -> Arc<InProcessStore> {
        let mut guard = self.outage.lock();
        if let Some(o) = guard.as_ref() {
            return Arc::clone(&o.local);
        }
        let now = self.now();
        let share = self.parts.instances.get();
        let (limits, budgets) = self.settings.read().clone();
        let shared_budgets = self.budget_share(&budgets, share);
        let local = match Degraded::make_local(&self.parts, &limits, &shared_budgets, share) {
            Ok(l) => Arc::new(l),
            // The settings were checked when the wrapper was made and on every reload, and
            // shares are positive: this is not expected. Serve from the previous local store
            // rather than fail the request.
            Err(e) => {
                tracing::error!(account = %self.parts.account, error = %e, "degraded store: cannot make the local share");
                Arc::clone(&self.last_local.read())
            }
        };
        let seeded = self.seed(&local, now);
        tracing::warn!(
            account = %self.parts.account,
            reason = %reason,
            instances = share,
            "shared state store unreachable: serving from local state with 1/{share} of each limit and remaining budget until it answers again"
        );
        crate::metrics::store_degraded(&self.parts.account, true);
        *self.last_local.write() = Arc::clone(&local);
        *guard = Some(Outage {
            reason: reason.to_string(),
            since: now,
            share,
            local: Arc::clone(&local),
            seeded,
            next_try: now + self.parts.retry_every,
        });
        local
    }

    /// Each provider budget's share: `remaining / N` from the last known shared spend (the
    /// configured limit when the primary shows none).
    fn budget_share(&self, budgets: &[Budget], share: u32) -> Vec<Budget> {
        let n = f64::from(share.max(1));
        let snap = self.primary.spend();
        budgets
            .iter()
            .map(|b| {
                let remaining = snap
                    .budgets
                    .iter()
                    .find(|s| s.period == b.period)
                    .map_or(b.limit_usd, |s| s.remaining_usd.min(b.limit_usd));
                Budget {
                    limit_usd: (remaining / n).max(MIN_BUDGET_USD),
                    period: b.period,
                }
            })
            .collect()
    }

    /// Seeds the fresh local store with this instance's shared admissions of the last minute
    /// and the local ones not yet replayed; the id of each window's last seed.
    fn seed(&self, local: &InProcessStore, now: Duration) -> HashMap<String, u64> {
        let mut by_model: BTreeMap<String, Vec<Unsynced>> = BTreeMap::new();
        {
            let mut recent = self.recent.lock();
            prune(&mut recent, now);
            for e in recent.iter().chain(self.unsynced.lock().iter()) {
                by_model.entry(e.model.clone()).or_default().push(e.clone());
            }
        }
        let mut seeded = HashMap::new();
        for (model, mut entries) in by_model {
            // Makes the window (a read creates it on first use).
            let _ = local.headroom(&model);
            let Some(limiter) = local.limiter(&model) else {
                continue;
            };
            entries.sort_by_key(|e| e.at);
            for e in entries {
                limiter.seed(e.at, e.images, e.tokens);
            }
            seeded.insert(model, limiter.last_id());
        }
        seeded
    }

    fn remember(&self, model: &str, images: u32, tokens: u64) {
        let now = self.now();
        let mut recent = self.recent.lock();
        prune(&mut recent, now);
        if recent.len() >= MAX_RECENT {
            recent.pop_front();
        }
        recent.push_back(Unsynced {
            model: model.to_string(),
            at: now,
            images,
            tokens,
        });
    }

    /// Learns the server's identity once (in a spawned, bounded task), so a re-join can tell
    /// a restarted server.
    fn learn_server(self: &Arc<Self>) {
        if self.server.lock().is_some() || self.learning.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.learning.store(false, Ordering::Release);
            return;
        };
        let me = Arc::clone(self);
        rt.spawn(async move {
            if let Ok(id) = me.bounded("ping", me.primary.ping()).await {
                let mut server = me.server.lock();
                if server.is_none() {
                    *server = Some(id);
                }
            }
            me.learning.store(false, Ordering::Release);
        });
    }

    /// Budget spent locally (on `model` when known), to charge to the shared budgets.
    fn spent_locally(&self, model: Option<&str>, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            let mut p = self.pending_usd.lock();
            p.0 += usd;
            if let Some(m) = model.filter(|m| *m != p.1) {
                p.1 = m.to_string();
            }
        }
    }

    /// An explicit probe: runs even while an automatic one is in flight (both are safe
    /// together: the outage and the lists are taken atomically, so nothing is replayed or
    /// charged twice).
    async fn try_rejoin(self: &Arc<Self>) -> bool {
        self.rejoin().await
    }

    /// Probes, and re-joins when the server answers (the caller set `probing`).
    async fn try_rejoin_inner(self: &Arc<Self>) -> bool {
        let healthy = self.rejoin().await;
        self.probing.store(false, Ordering::Release);
        healthy
    }

    async fn rejoin(&self) -> bool {
        if self.outage.lock().is_none() {
            self.sync().await;
            return true;
        }
        let server = match self.bounded("ping", self.primary.ping()).await {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(account = %self.parts.account, error = %e, "shared store still unreachable");
                if let Some(o) = self.outage.lock().as_mut() {
                    o.next_try = self.now() + self.parts.retry_every;
                }
                return false;
            }
        };
        // Route through the primary from now on, then hand over what was done locally.
        let Some(outage) = self.outage.lock().take() else {
            return true;
        };
        let before = self.server.lock().replace(server.clone());
        if before.is_some_and(|b| b != server) {
            // The server restarted (and, without persistence, forgot the windows): what
            // this instance admitted through it in the last minute is replayed too.
            tracing::info!(account = %self.parts.account, "the shared store restarted: replaying this instance's admissions of the last minute");
            let now = self.now();
            let mut recent = self.recent.lock();
            prune(&mut recent, now);
            self.unsynced.lock().extend(recent.drain(..));
        }
        self.collect(&outage);
        crate::metrics::store_degraded(&self.parts.account, false);
        tracing::info!(
            account = %self.parts.account,
            after = ?self.now().saturating_sub(outage.since),
            "shared state store answers again: re-joined"
        );
        self.sync().await;
        true
    }

    /// Moves the outage's local admissions still in the window to the unsynced list.
    fn collect(&self, outage: &Outage) {
        let mut unsynced = Vec::new();
        for (model, _) in outage.local.windows() {
            let Some(limiter) = outage.local.limiter(&model) else {
                continue;
            };
            let after = outage.seeded.get(&model).copied().unwrap_or(0);
            for (at, images, tokens) in limiter.entries_after(after) {
                unsynced.push(Unsynced {
                    model: model.clone(),
                    at,
                    images,
                    tokens,
                });
            }
        }
        // Added to the list: entries an earlier re-join could not replay stay in it (they
        // were seeded into this outage's windows, so they are not among the entries after
        // the seeds and are not counted twice).
        self.unsynced.lock().extend(unsynced);
    }

    /// Replays unsynced admissions, charges local spend and re-sends queued state; what
    /// fails stays for the next time.
    async fn sync(&self) {
        let now = self.now();
        let entries: Vec<Unsynced> = std::mem::take(&mut *self.unsynced.lock());
        let mut by_model: BTreeMap<String, Vec<Unsynced>> = BTreeMap::new();
        for e in entries {
            if e.at + WINDOW > now {
                by_model.entry(e.model.clone()).or_default().push(e);
            }
        }
        for (model, entries) in by_model {
            let replay: Vec<LocalEntry> = entries
                .iter()
                .map(|e| LocalEntry {
                    age: now.saturating_sub(e.at),
                    images: e.images,
                    tokens: e.tokens,
                })
                .collect();
            match self
                .bounded("replay", self.primary.replay(&model, &replay))
                .await
            {
                Ok(()) => {
                    let mut recent = self.recent.lock();
                    recent.extend(entries);
                }
                Err(e) => {
                    tracing::debug!(account = %self.parts.account, model = %model, error = %e, "replay failed; kept for the next re-join");
                    self.unsynced.lock().extend(entries);
                }
            }
        }
        self.flush_spend().await;
        let queued: Vec<Queued> = std::mem::take(&mut *self.queued.lock());
        for q in queued {
            let r = match &q {
                Queued::Deny {
                    reason,
                    message,
                    until,
                } if *until > now => {
                    self.bounded(
                        "deny",
                        self.primary
                            .deny(*reason, message, until.saturating_sub(now)),
                    )
                    .await
                }
                Queued::Cool {
                    model,
                    cause,
                    message,
                    until,
                } if *until > now => {
                    self.bounded(
                        "cool_model",
                        self.primary.cool_model(model, *cause, message, *until),
                    )
                    .await
                }
                // Ended while the server was gone: nothing to tell.
                _ => Ok(()),
            };
            if r.is_err() {
                self.queued.lock().push(q);
            }
        }
    }

    async fn flush_spend(&self) {
        let (usd, model) = {
            let mut p = self.pending_usd.lock();
            (std::mem::take(&mut p.0), p.1.clone())
        };
        if usd <= 0.0 {
            return;
        }
        if let Err(e) = self
            .bounded("charge", self.primary.charge(&model, usd))
            .await
        {
            tracing::debug!(account = %self.parts.account, error = %e, "charging local spend failed; kept");
            self.pending_usd.lock().0 += usd;
        }
    }

    async fn admit_local(
        &self,
        local: &InProcessStore,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        // A denial or cool-down the primary knew of before the outage still holds.
        if let Some(u) = self.primary.unavailable(demand.model, self.now()) {
            return Err(Refusal::Unavailable(u));
        }
        let a = local.admit(demand, cost).await?;
        crate::metrics::store_degraded_admission(&self.parts.account);
        {
            let mut p = self.pending_usd.lock();
            if p.1 != demand.model {
                p.1 = demand.model.to_string();
            }
        }
        Ok(a)
    }
}

fn prune(recent: &mut VecDeque<Unsynced>, now: Duration) {
    while recent.front().is_some_and(|e| e.at + WINDOW <= now) {
        recent.pop_front();
    }
}

#[async_trait]
impl StateStore for Degraded {
    fn state(&self) -> StoreState {
        let mut s = self.inner.primary.state();
        s.degraded = self.degraded_reason();
        s.instances = Some(self.inner.parts.instances.get());
        s
    }

    fn headroom(&self, model: &str) -> Headroom {
        match self.inner.local_if_degraded() {
            Some(l) => l.headroom(model),
            None => self.inner.primary.headroom(model),
        }
    }

    fn windows(&self) -> Vec<(String, Headroom)> {
        match self.inner.local_if_degraded() {
            Some(l) => l.windows(),
            None => self.inner.primary.windows(),
        }
    }

    fn budget_left(&self) -> Option<f64> {
        match self.inner.local_if_degraded() {
            Some(l) => l.budget_left(),
            None => self.inner.primary.budget_left(),
        }
    }

    fn unavailable(&self, model: &str, now: Duration) -> Option<Unavailable> {
        match self.inner.local_if_degraded() {
            Some(l) => l
                .unavailable(model, now)
                .or_else(|| self.inner.primary.unavailable(model, now)),
            None => self.inner.primary.unavailable(model, now),
        }
    }

    fn breaker(&self) -> CircuitBreaker {
        self.inner.primary.breaker()
    }

    fn spend(&self) -> LedgerSnapshot {
        self.inner.primary.spend()
    }

    fn spent_usd(&self) -> f64 {
        self.inner.primary.spent_usd()
    }

    fn rate_limit_check(&self, demand: Demand<'_>) -> Result<(), Denied> {
        match self.inner.local_if_degraded() {
            Some(l) => l.rate_limit_check(demand),
            None => self.inner.primary.rate_limit_check(demand),
        }
    }

    fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError> {
        // Checked on a throw-away local store first, so an error changes nothing here.
        Degraded::make_local(&self.inner.parts, &config.limits, &config.budgets, 1)?;
        self.inner.primary.reconfigure(config)?;
        *self.inner.settings.write() = (config.limits.clone(), config.budgets.clone());
        let outage = self.inner.outage.lock();
        if let Some(o) = outage.as_ref() {
            let mut local = config.clone();
            local.limits.margin = Some(share_margin(config.limits.margin(), o.share));
            local.budgets = self.inner.budget_share(&config.budgets, o.share);
            o.local.reconfigure(&local)?;
        }
        Ok(())
    }

    async fn admit(
        &self,
        demand: Demand<'_>,
        cost: Result<Cost, PriceUnknown>,
    ) -> Result<Admission, Refusal> {
        let inner = &self.inner;
        if let Some(hb) = &inner.parts.heartbeat {
            // Made outside a runtime (a router built in sync code): starts on first use.
            hb.start();
        }
        if let Some(local) = inner.local_if_degraded() {
            return inner.admit_local(&local, demand, cost).await;
        }
        let reason = match tokio::time::timeout(
            inner.parts.timeout,
            inner.primary.admit(demand, cost.clone()),
        )
        .await
        {
            Ok(Ok(a)) => {
                inner.remember(demand.model, demand.images, a.tokens);
                inner.learn_server();
                return Ok(a);
            }
            Ok(Err(Refusal::Store(e))) => e.message,
            Ok(Err(other)) => return Err(other),
            Err(_) => format!("admission timed out after {:?}", inner.parts.timeout),
        };
        let local = inner.enter(&reason);
        inner.admit_local(&local, demand, cost).await
    }

    async fn settle(
        &self,
        admission: Admission,
        settlement: Settlement<'_>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        if let Some((_, reservation)) = admission.local.as_ref() {
            match settlement.budget {
                BudgetSettlement::Commit(usd) => {
                    let usd = if usd.is_finite() && usd >= 0.0 {
                        usd
                    } else {
                        reservation.reserved_usd()
                    };
                    inner.spent_locally(Some(settlement.model), usd);
                }
                BudgetSettlement::Hold => {
                    inner.spent_locally(Some(settlement.model), reservation.reserved_usd());
                }
                BudgetSettlement::Release => {}
            }
            let local = Arc::clone(&inner.last_local.read());
            local.settle(admission, settlement).await?;
            if inner.outage.lock().is_none() {
                inner.flush_spend().await;
            }
            return Ok(());
        }
        let tokens = admission.tokens;
        let degraded = inner.local_if_degraded();
        if let Some(local) = &degraded {
            // The answer's headers and a 429 describe the model now: apply them locally.
            local
                .settle(Admission::shared(0, tokens), settlement)
                .await?;
        }
        match inner
            .bounded("settle", inner.primary.settle(admission, settlement))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if degraded.is_none() {
                    let local = inner.enter(&e.message);
                    local
                        .settle(Admission::shared(0, tokens), settlement)
                        .await?;
                }
                Err(e)
            }
        }
    }

    fn release(&self, admission: Admission) {
        if admission.local.is_some() {
            self.inner.last_local.read().release(admission);
        } else {
            self.inner.primary.release(admission);
        }
    }

    fn hold(&self, admission: Admission) {
        if let Some((_, reservation)) = admission.local.as_ref() {
            self.inner.spent_locally(None, reservation.reserved_usd());
            self.inner.last_local.read().hold(admission);
        } else {
            self.inner.primary.hold(admission);
        }
    }

    async fn deny(
        &self,
        reason: DenyReason,
        message: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let local = match inner.local_if_degraded() {
            Some(l) => l,
            None => match inner
                .bounded("deny", inner.primary.deny(reason, message, for_))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => inner.enter(&e.message),
            },
        };
        local.deny(reason, message, for_).await?;
        inner.queued.lock().push(Queued::Deny {
            reason,
            message: message.to_string(),
            until: inner.now() + for_,
        });
        Ok(())
    }

    async fn cool_model(
        &self,
        model: &str,
        cause: Outcome,
        message: &str,
        until: Duration,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let local = match inner.local_if_degraded() {
            Some(l) => l,
            None => match inner
                .bounded(
                    "cool_model",
                    inner.primary.cool_model(model, cause, message, until),
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => inner.enter(&e.message),
            },
        };
        local.cool_model(model, cause, message, until).await?;
        inner.queued.lock().push(Queued::Cool {
            model: model.to_string(),
            cause,
            message: message.to_string(),
            until,
        });
        Ok(())
    }

    async fn observe(&self, model: &str, headers: &RateLimitHeaders) -> Result<(), StoreError> {
        let inner = &self.inner;
        let local = match inner.local_if_degraded() {
            Some(l) => l,
            None => match inner
                .bounded("observe", inner.primary.observe(model, headers))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => inner.enter(&e.message),
            },
        };
        // Applied locally only (see the module docs: stale by the time the server answers).
        local.observe(model, headers).await
    }
}

/// The parts of a slot's wrapper from its store context: the factory's heartbeat (made on
/// first use, one per factory, kept alive by the stores: `slot` holds it weakly so the
/// heartbeat ends with the router), the account's live count, the time-out and interval.
pub(super) fn parts_for(
    config: &super::RedisConfig,
    ctx: &StoreContext<'_>,
    router_clock: bool,
    slot: &Mutex<std::sync::Weak<Heartbeat>>,
) -> Result<DegradedParts, ConfigError> {
    let heartbeat = {
        let mut weak = slot.lock();
        match weak.upgrade() {
            Some(h) => h,
            None => {
                let clock = if router_clock {
                    HeartbeatClock::Router(ctx.clock.clone())
                } else {
                    HeartbeatClock::Server
                };
                let h = Heartbeat::new(config, clock)?;
                *weak = Arc::downgrade(&h);
                h
            }
        }
    };
    let instances = heartbeat.join(ctx.account);
    heartbeat.start();
    Ok(DegradedParts {
        account: ctx.account.to_string(),
        limits: ctx.limits.clone(),
        budgets: ctx.budgets.to_vec(),
        router_budgets: ctx.router_budgets.to_vec(),
        clock: ctx.clock.clone(),
        wall: ctx.wall.clone(),
        breaker: ctx.breaker.clone(),
        timeout: config.timeout_duration(),
        retry_every: config.heartbeat_interval(),
        instances,
        heartbeat: Some(heartbeat),
    })
}

/// The Redis store as the degraded mode's primary.
#[async_trait]
impl SharedStore for RedisStore {
    async fn replay(&self, model: &str, entries: &[LocalEntry]) -> Result<(), StoreError> {
        let entries: Vec<ReplayEntry> = entries
            .iter()
            .map(|e| ReplayEntry {
                age: e.age,
                images: e.images,
                tokens: e.tokens,
            })
            .collect();
        RedisStore::replay(self, model, &entries).await
    }

    /// The Redis store has no bare "add spend" step, so the spend is charged as an
    /// admission of no image and no token at that cost, settled at once as committed with
    /// its rate-limit room refunded: the windows end as they were, the budgets carry the
    /// spend. A refusal for rate limit or a denial keeps it for the next try; a refusal for
    /// budget means the shared budget is already spent to its limit by the others — then
    /// the amount is dropped with a warning (no admission can pass it until the period
    /// ends anyway).
    async fn charge(&self, model: &str, usd: f64) -> Result<(), StoreError> {
        let cost = Ok(Cost {
            usd,
            basis: crate::quota::cost::CostBasis::Estimate,
        });
        match StateStore::admit(self, Demand::new(model, 0, 0), cost).await {
            Ok(a) => {
                let settlement = Settlement {
                    refund_rate_limit: true,
                    usage: None,
                    budget: BudgetSettlement::Commit(usd),
                    model,
                    headers: None,
                    rate_limited: None,
                };
                StateStore::settle(self, a, settlement).await
            }
            Err(Refusal::Store(e)) => Err(e),
            Err(Refusal::Budget(e)) => {
                tracing::warn!(
                    account = %self.account(),
                    usd,
                    error = %e,
                    "spend made while the shared store was unreachable is not recorded on the shared budget: it is already spent"
                );
                Ok(())
            }
            Err(other) => Err(StoreError::new(format!(
                "charging spend made while degraded: {other:?}"
            ))),
        }
    }

    /// `INFO server`'s `run_id`: random per server start (on a cluster, of the node that
    /// owns this account's slot).
    async fn ping(&self) -> Result<String, StoreError> {
        let mut conn = self.connection().await?;
        crate::redis_conn::server_id(&mut conn, self.key_tag())
            .await
            .map_err(|e| StoreError::new(format!("redis: {:?}", e.kind())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::SystemTime;

    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::clock::{Clock, ManualClock};
    use crate::quota::budget::BudgetPeriod;
    use crate::quota::cost::CostBasis;

    /// The "server": an in-process store every wrapper shares, which fails or hangs on
    /// command, and records replays and charges.
    #[derive(Debug)]
    struct Fake {
        store: InProcessStore,
        fail: AtomicBool,
        hang: AtomicBool,
        replayed: Mutex<Vec<(String, LocalEntry)>>,
        charged: Mutex<f64>,
        denied: Mutex<Vec<String>>,
        settled: AtomicUsize,
        clock: ManualClock,
        rpm: u32,
        run_id: Mutex<String>,
    }

    impl Fake {
        fn new(clock: &ManualClock, rpm: u32, budgets: Vec<Budget>) -> Arc<Self> {
            let shared: SharedClock = Arc::new(clock.clone());
            let wall = WallClock::new(SystemTime::now(), shared.clone());
            let ledger = BudgetLedger::new("p", budgets, wall.clone()).unwrap();
            let router = BudgetLedger::new("router", vec![], wall).unwrap();
            let breaker = CircuitBreaker::new(BreakerConfig::default(), shared.clone());
            Arc::new(Self {
                store: InProcessStore::new(limits(rpm), shared, ledger, router, breaker).unwrap(),
                fail: AtomicBool::new(false),
                hang: AtomicBool::new(false),
                replayed: Mutex::new(Vec::new()),
                charged: Mutex::new(0.0),
                denied: Mutex::new(Vec::new()),
                settled: AtomicUsize::new(0),
                clock: clock.clone(),
                rpm,
                run_id: Mutex::new("first".to_string()),
            })
        }

        fn down(&self, down: bool) {
            self.fail.store(down, Ordering::SeqCst);
        }

        async fn gate(&self) -> Result<(), StoreError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::new("connection refused"));
            }
            Ok(())
        }

        /// Requests in the shared window of `model` now.
        fn used(&self, model: &str) -> u64 {
            let h = self.store.headroom(model);
            h.effective_rpm.unwrap() - h.requests.unwrap()
        }
    }

    #[async_trait]
    impl StateStore for Fake {
        fn headroom(&self, model: &str) -> Headroom {
            self.store.headroom(model)
        }
        fn windows(&self) -> Vec<(String, Headroom)> {
            self.store.windows()
        }
        fn budget_left(&self) -> Option<f64> {
            self.store.budget_left()
        }
        fn unavailable(&self, model: &str, now: Duration) -> Option<Unavailable> {
            self.store.unavailable(model, now)
        }
        fn breaker(&self) -> CircuitBreaker {
            self.store.breaker()
        }
        fn spend(&self) -> LedgerSnapshot {
            self.store.spend()
        }
        fn spent_usd(&self) -> f64 {
            self.store.spent_usd()
        }
        fn rate_limit_check(&self, demand: Demand<'_>) -> Result<(), Denied> {
            self.store.rate_limit_check(demand)
        }
        fn reconfigure(&self, config: &StoreConfig) -> Result<(), ConfigError> {
            self.store.reconfigure(config)
        }
        async fn admit(
            &self,
            demand: Demand<'_>,
            cost: Result<Cost, PriceUnknown>,
        ) -> Result<Admission, Refusal> {
            self.gate().await.map_err(Refusal::Store)?;
            // Like a shared store, the admission is known by id only: its room stays used.
            let a = self.store.admit(demand, cost).await?;
            let tokens = a.tokens;
            self.store.hold(a);
            Ok(Admission::shared(7, tokens))
        }
        async fn settle(&self, _: Admission, _: Settlement<'_>) -> Result<(), StoreError> {
            self.gate().await?;
            self.settled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn release(&self, _: Admission) {}
        fn hold(&self, _: Admission) {}
        async fn deny(&self, r: DenyReason, m: &str, f: Duration) -> Result<(), StoreError> {
            self.gate().await?;
            self.denied.lock().push(m.to_string());
            self.store.deny(r, m, f).await
        }
        async fn cool_model(
            &self,
            model: &str,
            cause: Outcome,
            message: &str,
            until: Duration,
        ) -> Result<(), StoreError> {
            self.gate().await?;
            self.store.cool_model(model, cause, message, until).await
        }
        async fn observe(&self, model: &str, h: &RateLimitHeaders) -> Result<(), StoreError> {
            self.gate().await?;
            self.store.observe(model, h).await
        }
    }

    #[async_trait]
    impl SharedStore for Fake {
        async fn replay(&self, model: &str, entries: &[LocalEntry]) -> Result<(), StoreError> {
            self.gate().await?;
            let _ = self.store.headroom(model);
            let limiter = self.store.limiter(model).unwrap();
            let now = self.clock.now();
            for e in entries {
                limiter.seed(now.saturating_sub(e.age), e.images, e.tokens);
                self.replayed.lock().push((model.to_string(), *e));
            }
            Ok(())
        }
        async fn charge(&self, _: &str, usd: f64) -> Result<(), StoreError> {
            self.gate().await?;
            *self.charged.lock() += usd;
            Ok(())
        }
        async fn ping(&self) -> Result<String, StoreError> {
            self.gate().await?;
            Ok(self.run_id.lock().clone())
        }
    }

    const MODEL: &str = "gpt-image-1";

    fn limits(rpm: u32) -> LimitSettings {
        LimitSettings::new(None, Some(rpm), Some(100_000_000))
    }

    fn wrapper(clock: &ManualClock, fake: &Arc<Fake>, n: u32, budgets: Vec<Budget>) -> Degraded {
        warnings::install();
        let shared: SharedClock = Arc::new(clock.clone());
        let rpm = fake.rpm;
        let parts = DegradedParts {
            account: "acct".to_string(),
            limits: limits(rpm),
            budgets,
            router_budgets: vec![],
            clock: shared.clone(),
            wall: WallClock::new(SystemTime::now(), shared.clone()),
            breaker: CircuitBreaker::new(BreakerConfig::default(), shared),
            timeout: Duration::from_millis(50),
            retry_every: Duration::from_secs(2),
            instances: InstanceCount::new(n),
            heartbeat: None,
        };
        Degraded::new(Arc::clone(fake) as Arc<dyn SharedStore>, parts).unwrap()
    }

    fn free() -> Result<Cost, PriceUnknown> {
        Ok(Cost {
            usd: 0.0,
            basis: CostBasis::PerImage,
        })
    }

    fn usd(usd: f64) -> Result<Cost, PriceUnknown> {
        Ok(Cost {
            usd,
            basis: CostBasis::PerImage,
        })
    }

    async fn admit_all(store: &Degraded, cost: f64) -> Vec<Admission> {
        let mut out = Vec::new();
        while let Ok(a) = store.admit(Demand::new(MODEL, 1, 100), usd(cost)).await {
            out.push(a);
            assert!(out.len() <= 1000, "no limit");
        }
        out
    }

    fn settlement(budget: BudgetSettlement) -> Settlement<'static> {
        Settlement {
            refund_rate_limit: false,
            usage: None,
            budget,
            model: MODEL,
            headers: None,
            rate_limited: None,
        }
    }

    #[tokio::test]
    async fn a_failing_primary_serves_the_same_request_locally_with_limit_over_n() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let store = wrapper(&clock, &fake, 3, vec![]);
        let ok = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        assert_eq!(ok.id, 7, "healthy: through the primary");
        assert_eq!(store.state().degraded, None);
        assert_eq!(store.state().instances, Some(3));
        fake.down(true);
        clock.advance(Duration::from_secs(61));
        // The request that meets the outage is admitted, locally (it carries its permit).
        let first = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        assert!(first.local.is_some());
        let rest = admit_all(&store, 0.0).await;
        assert_eq!(1 + rest.len(), 20, "60 RPM over 3 instances is exactly 20");
        assert_eq!(store.share(), Some(3));
        let state = store.state();
        assert_eq!(state.degraded.as_deref(), Some("connection refused"));
        assert_eq!(state.instances, Some(3));
        // The 21st is refused for rate limit, never for the store.
        match store.admit(Demand::new(MODEL, 1, 100), free()).await {
            Err(Refusal::RateLimit(_)) => {}
            other => panic!("{other:?}"),
        }
        // Ranking reads come from the local share.
        assert_eq!(store.headroom(MODEL).requests, Some(0));
        assert_eq!(store.headroom(MODEL).effective_rpm, Some(20));
        store.release(first);
        for a in rest {
            store.release(a);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_primary_is_cut_at_the_time_out_and_the_request_admitted() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let store = wrapper(&clock, &fake, 2, vec![]);
        fake.hang.store(true, Ordering::SeqCst);
        let start = tokio::time::Instant::now();
        let a = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        // Paused clock: exactly the time-out passed, not more.
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert!(a.local.is_some());
        assert!(store.degraded_reason().unwrap().contains("timed out"));
        // Further requests do not wait at all: the outage is known.
        let start = tokio::time::Instant::now();
        let b = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        store.release(a);
        store.release(b);
    }

    /// Counts WARN events of this module, per test thread.
    ///
    /// Installed once as the process-wide subscriber, before any test of this module can
    /// reach a `warn!` (every test builds its store with [`wrapper`], which installs it).
    /// A thread-local subscriber (`set_default`) would race: tracing caches each call site's
    /// interest when the site first fires, and a site first fired by a concurrent test while
    /// this test's subscriber was being registered keeps "never" and drops its events.
    mod warnings {
        use std::cell::Cell;
        use std::sync::OnceLock;

        thread_local! {
            static COUNT: Cell<usize> = const { Cell::new(0) };
        }

        struct Counter;

        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if *event.metadata().level() == tracing::Level::WARN
                    && event.metadata().target().ends_with("degraded")
                {
                    COUNT.with(|c| c.set(c.get() + 1));
                }
            }
        }

        /// Installs the counting subscriber once per test process.
        pub(super) fn install() {
            static INSTALLED: OnceLock<()> = OnceLock::new();
            INSTALLED.get_or_init(|| {
                use tracing_subscriber::layer::SubscriberExt;
                // Fails only if another subscriber is global already; no other lib test
                // installs one, and the test below would then fail on its count.
                let _ = tracing::subscriber::set_global_default(
                    tracing_subscriber::registry().with(Counter),
                );
            });
        }

        /// The warnings this thread has logged so far.
        pub(super) fn on_this_thread() -> usize {
            COUNT.with(Cell::get)
        }
    }

    #[tokio::test]
    async fn one_warning_per_outage_and_the_metrics() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _metrics = metrics::set_default_local_recorder(&recorder);

        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 600, vec![]);
        let store = wrapper(&clock, &fake, 2, vec![]);
        let before = warnings::on_this_thread();
        fake.down(true);
        for _ in 0..10 {
            let a = store
                .admit(Demand::new(MODEL, 1, 100), free())
                .await
                .unwrap();
            store.release(a);
        }
        assert_eq!(
            warnings::on_this_thread() - before,
            1,
            "one warning for the outage"
        );
        let text = handle.render();
        assert!(
            text.contains("image_router_store_degraded{account=\"acct\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("image_router_store_degraded_admissions_total{account=\"acct\"} 10"),
            "{text}"
        );
        // The server answers again: re-joined, the gauge drops, no warning.
        fake.down(false);
        assert!(store.try_rejoin().await);
        assert_eq!(store.state().degraded, None);
        assert!(handle
            .render()
            .contains("image_router_store_degraded{account=\"acct\"} 0"));
        // A second outage: a second warning.
        fake.down(true);
        for _ in 0..3 {
            let a = store
                .admit(Demand::new(MODEL, 1, 100), free())
                .await
                .unwrap();
            store.release(a);
        }
        assert_eq!(warnings::on_this_thread() - before, 2);
    }

    #[tokio::test]
    async fn rejoining_replays_local_admissions_so_the_shared_window_is_consistent() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let store = wrapper(&clock, &fake, 2, vec![]);
        for _ in 0..5 {
            let a = store
                .admit(Demand::new(MODEL, 1, 100), free())
                .await
                .unwrap();
            store.hold(a);
        }
        assert_eq!(fake.used(MODEL), 5);
        clock.advance(Duration::from_secs(1));
        fake.down(true);
        // Share 30, of which this instance's 5 shared admissions are already used.
        let local = admit_all(&store, 0.0).await;
        assert_eq!(local.len(), 25);
        // One was never sent: released, so not replayed.
        let mut local = local.into_iter();
        store.release(local.next().unwrap());
        clock.advance(Duration::from_secs(3));
        // Still down: the probe fails and the store stays degraded.
        assert!(!store.try_rejoin().await);
        fake.down(false);
        assert!(store.try_rejoin().await);
        // The shared window holds the 5 shared and the 24 local ones, at their ages.
        assert_eq!(fake.used(MODEL), 5 + 24);
        let replayed = fake.replayed.lock().clone();
        assert_eq!(replayed.len(), 24);
        assert!(replayed
            .iter()
            .all(|(m, e)| m == MODEL && e.age == Duration::from_secs(3) && e.images == 1));
        // Local admissions still settle locally, after the re-join too.
        for a in local {
            store
                .settle(a, settlement(BudgetSettlement::Release))
                .await
                .unwrap();
        }
        assert_eq!(fake.settled.load(Ordering::SeqCst), 0);
        // Through the primary again.
        let a = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        assert_eq!(a.id, 7);
        store
            .settle(a, settlement(BudgetSettlement::Release))
            .await
            .unwrap();
        assert_eq!(fake.settled.load(Ordering::SeqCst), 1);
        // A second re-join replays nothing twice.
        assert!(store.try_rejoin().await);
        assert_eq!(fake.replayed.lock().len(), 24);
    }

    /// Three instances share 60 RPM. Whatever mix of shared and local admissions, the
    /// account never sees more than the limit in a 60-s window once every instance is
    /// degraded, and each instance's local admissions never pass its share.
    #[tokio::test]
    async fn the_shared_limit_is_never_exceeded_beyond_the_conservative_share() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let stores: Vec<Degraded> = (0..3).map(|_| wrapper(&clock, &fake, 3, vec![])).collect();
        // Uneven use before the outage: 15, 10 and 5 of the shared 60.
        for (store, n) in stores.iter().zip([15, 10, 5]) {
            for _ in 0..n {
                let a = store
                    .admit(Demand::new(MODEL, 1, 100), free())
                    .await
                    .unwrap();
                store.hold(a);
            }
        }
        assert_eq!(fake.used(MODEL), 30);
        clock.advance(Duration::from_secs(10));
        fake.down(true);
        let mut local = Vec::new();
        for store in &stores {
            local.push(admit_all(store, 0.0).await.len());
        }
        // Share 20 each, minus each one's own admissions in the window.
        assert_eq!(local, vec![5, 10, 15]);
        let in_window: usize = 30 + local.iter().sum::<usize>();
        // Bound of the module docs: shared admissions plus, per instance, its share minus
        // its own: here 30 + (5 + 10 + 15) = 60, the limit itself.
        assert!(in_window <= 60, "{in_window}");
        // A whole window later, all degraded: N × floor(L/N) = 60, never more.
        clock.advance(Duration::from_secs(60));
        let mut total = 0;
        for store in &stores {
            let n = admit_all(store, 0.0).await.len();
            assert_eq!(n, 20);
            total += n;
        }
        assert!(total <= 60);
        // Re-joined, the shared window holds exactly what the instances sent in the last
        // minute (the 60 just admitted), so it admits nothing more.
        fake.down(false);
        for store in &stores {
            assert!(store.try_rejoin().await);
        }
        assert_eq!(fake.used(MODEL), 60);
        assert!(matches!(
            stores[0].admit(Demand::new(MODEL, 1, 100), free()).await,
            Err(Refusal::RateLimit(_))
        ));
    }

    #[tokio::test]
    async fn budgets_get_remaining_over_n_and_local_spend_is_charged_on_rejoin() {
        let clock = ManualClock::new();
        let budget = vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()];
        let fake = Fake::new(&clock, 6000, budget.clone());
        let store = wrapper(&clock, &fake, 3, budget);
        // $0.40 spent on the shared budget: $0.60 remains, $0.20 per instance.
        let a = fake
            .store
            .admit(Demand::new(MODEL, 1, 1), usd(0.4))
            .await
            .unwrap();
        fake.store
            .settle(a, settlement(BudgetSettlement::Commit(0.4)))
            .await
            .unwrap();
        fake.down(true);
        let local = admit_all(&store, 0.05).await;
        assert_eq!(local.len(), 4, "$0.20 share at $0.05 a request");
        match store.admit(Demand::new(MODEL, 1, 1), usd(0.05)).await {
            Err(Refusal::Budget(_)) => {}
            other => panic!("{other:?}"),
        }
        let mut local = local.into_iter();
        store
            .settle(
                local.next().unwrap(),
                settlement(BudgetSettlement::Commit(0.04)),
            )
            .await
            .unwrap();
        store.hold(local.next().unwrap());
        store.release(local.next().unwrap());
        fake.down(false);
        assert!(store.try_rejoin().await);
        // $0.04 committed + $0.05 held, charged to the shared budget.
        assert!((*fake.charged.lock() - 0.09).abs() < 1e-9);
        // Settled after the re-join: charged at once.
        store
            .settle(
                local.next().unwrap(),
                settlement(BudgetSettlement::Commit(0.05)),
            )
            .await
            .unwrap();
        assert!((*fake.charged.lock() - 0.14).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_denial_while_degraded_applies_locally_and_reaches_the_primary_on_rejoin() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let store = wrapper(&clock, &fake, 1, vec![]);
        fake.down(true);
        // The failing call itself switches to degraded and is applied locally.
        store
            .deny(
                DenyReason::Authentication,
                "tier too low",
                Duration::from_secs(300),
            )
            .await
            .unwrap();
        assert!(store.degraded_reason().is_some());
        assert!(store.unavailable(MODEL, clock.now()).is_some());
        assert!(fake.denied.lock().is_empty());
        clock.advance(Duration::from_secs(10));
        fake.down(false);
        assert!(store.try_rejoin().await);
        assert_eq!(*fake.denied.lock(), vec!["tier too low".to_string()]);
        assert!(fake.unavailable(MODEL, clock.now()).is_some());
    }

    /// The automatic probe: at most one per interval, started by store calls while
    /// degraded, in a spawned task.
    #[tokio::test]
    async fn the_next_call_after_the_interval_probes_and_rejoins() {
        let clock = ManualClock::new();
        let fake = Fake::new(&clock, 60, vec![]);
        let store = wrapper(&clock, &fake, 1, vec![]);
        fake.down(true);
        let a = store
            .admit(Demand::new(MODEL, 1, 100), free())
            .await
            .unwrap();
        store.release(a);
        fake.down(false);
        // Before the interval: no probe, still degraded.
        let _ = store.headroom(MODEL);
        tokio::task::yield_now().await;
        assert!(store.degraded_reason().is_some());
        clock.advance(Duration::from_secs(2));
        let _ = store.headroom(MODEL);
        for _ in 0..10 {
            if store.degraded_reason().is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(store.degraded_reason(), None);
    }

    #[tokio::test]
    async fn a_restarted_server_gets_the_last_minutes_shared_admissions_replayed_too() {
        for restart in [false, true] {
            let clock = ManualClock::new();
            let fake = Fake::new(&clock, 60, vec![]);
            let store = wrapper(&clock, &fake, 1, vec![]);
            for _ in 0..5 {
                let a = store
                    .admit(Demand::new(MODEL, 1, 100), free())
                    .await
                    .unwrap();
                store.hold(a);
            }
            // The spawned task learns the server's identity.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(store.inner.server.lock().as_deref(), Some("first"));
            clock.advance(Duration::from_secs(1));
            fake.down(true);
            for _ in 0..3 {
                let a = store
                    .admit(Demand::new(MODEL, 1, 100), free())
                    .await
                    .unwrap();
                store.hold(a);
            }
            if restart {
                *fake.run_id.lock() = "second".to_string();
            }
            fake.down(false);
            assert!(store.try_rejoin().await);
            let replayed = fake.replayed.lock().len();
            assert_eq!(
                replayed,
                if restart { 5 + 3 } else { 3 },
                "restart: {restart}"
            );
        }
    }
}
