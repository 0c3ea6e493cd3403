//! Spend budgets: the ledger, its reservations and the periods they count in. The public
//! face and the full description are the crate's `budget` module, which re-exports this one.

mod period;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use period::{period_at, to_nano, to_usd, unix_secs};
pub use period::{Budget, BudgetPeriod, WallClock};

use crate::config_error::ConfigError;
use crate::quota::cost::{Cost, PriceUnknown};

#[derive(Debug)]
struct BudgetState {
    budget: Budget,
    limit: u64,
    period_idx: u64,
    period_end: SystemTime,
    spent: u64,
    reserved: u64,
    /// Held until the period ends (see the module docs).
    held: u64,
}

impl BudgetState {
    /// Spent, reserved and held in the current period.
    fn used(&self) -> u64 {
        self.spent
            .saturating_add(self.reserved)
            .saturating_add(self.held)
    }
}

#[derive(Debug)]
struct LedgerState {
    budgets: Vec<BudgetState>,
    lifetime_spent: u64,
    reserved: u64,
    committed: u64,
}

#[derive(Debug)]
struct LedgerInner {
    name: String,
    wall: WallClock,
    created: SystemTime,
    state: Mutex<LedgerState>,
}

impl LedgerInner {
    fn roll(&self, st: &mut LedgerState) -> SystemTime {
        let now = self.wall.now();
        for b in &mut st.budgets {
            let (idx, end) = period_at(b.budget.period, self.created, now);
            if idx != b.period_idx {
                b.period_idx = idx;
                b.period_end = end;
                b.spent = 0;
                b.held = 0;
            }
        }
        now
    }

    /// [`roll`](Self::roll) for a caller that needs no time: without budgets there is
    /// nothing to roll, and the wall clock is not read (two ledgers, up to five times per
    /// routed request; issue 16).
    fn roll_budgets(&self, st: &mut LedgerState) {
        if !st.budgets.is_empty() {
            self.roll(st);
        }
    }
}

/// The budgets of one scope (a provider, or the whole router) and its running totals.
/// Cheap to clone (clones share state).
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use image_router::budget::{Budget, BudgetLedger, BudgetPeriod, WallClock};
/// use image_router::clock::ManualClock;
///
/// let wall = WallClock::new(SystemTime::now(), Arc::new(ManualClock::new()));
/// let ledger = BudgetLedger::new("openai", vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()], wall).unwrap();
/// let r = ledger.try_reserve(0.17).unwrap();   // before sending
/// r.commit(0.16);                              // after: the actual cost
/// assert!((ledger.snapshot().lifetime_spent_usd - 0.16).abs() < 1e-9);
/// let too_much = ledger.try_reserve(0.9).unwrap_err();
/// assert!(too_much.to_string().contains("openai"));
/// ```
#[derive(Clone, Debug)]
pub struct BudgetLedger {
    inner: Arc<LedgerInner>,
}

/// A budget that cannot cover a reservation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BudgetExhausted {
    /// The ledger (provider name, or the router's).
    pub ledger: String,
    /// The budget's period.
    pub period: BudgetPeriod,
    /// Its limit, USD.
    pub limit_usd: f64,
    /// Spent in the current period, USD.
    pub spent_usd: f64,
    /// Reserved by requests in flight, and held for requests that may have been billed, USD.
    pub reserved_usd: f64,
    /// What was asked for, USD.
    pub requested_usd: f64,
    /// When the period resets, seconds since the Unix epoch.
    pub resets_at_unix: u64,
    /// Time until the period resets.
    pub resets_in: Duration,
}

impl BudgetExhausted {
    /// Whether the request costs more than the whole budget: no period reset will make room.
    pub fn never_fits(&self) -> bool {
        self.requested_usd > self.limit_usd
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.never_fits() {
            return write!(
                f,
                "budget `{}` ({} limit ${:.4}) can never cover this request: its estimated cost ${:.4} is more than the whole limit",
                self.ledger, self.period, self.limit_usd, self.requested_usd,
            );
        }
        write!(
            f,
            "budget `{}` ({} limit ${:.4}) is exhausted: spent ${:.4} + reserved ${:.4} leaves no room for ${:.4}; it resets at {} (in {})",
            self.ledger,
            self.period,
            self.limit_usd,
            self.spent_usd,
            self.reserved_usd,
            self.requested_usd,
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.resets_at_unix)),
            crate::quota::headers::format_go_duration(self.resets_in),
        )
    }
}

impl std::error::Error for BudgetExhausted {}

/// Why a reservation was refused.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetError {
    /// A budget cannot cover it.
    #[error(transparent)]
    Exhausted(BudgetExhausted),
    /// The request's price is unknown while a budget is set.
    #[error("budget `{ledger}` cannot reserve: {source}")]
    PriceUnknown {
        /// The ledger.
        ledger: String,
        /// The unknown price.
        source: PriceUnknown,
    },
    /// The amount is negative, NaN or infinite.
    #[error("invalid amount to reserve: {usd}")]
    InvalidAmount {
        /// The amount.
        usd: f64,
    },
}

/// One budget's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// The period.
    pub period: BudgetPeriod,
    /// The limit, USD.
    pub limit_usd: f64,
    /// Spent in the current period, USD.
    pub spent_usd: f64,
    /// Reserved by requests in flight, USD.
    pub reserved_usd: f64,
    /// Held until the period ends for requests that may have been billed (sent, then no
    /// answer), USD.
    pub held_usd: f64,
    /// `limit − spent − reserved − held` (0 when over), USD.
    pub remaining_usd: f64,
    /// When the period resets, seconds since the Unix epoch.
    pub resets_at_unix: u64,
    /// Time until then.
    pub resets_in: Duration,
}

/// A ledger's running totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LedgerSnapshot {
    /// The ledger's name.
    pub name: String,
    /// Everything committed since creation, USD.
    pub lifetime_spent_usd: f64,
    /// Reserved by requests in flight, USD.
    pub reserved_usd: f64,
    /// Number of committed reservations.
    pub committed: u64,
    /// Each budget.
    pub budgets: Vec<BudgetSnapshot>,
}

impl BudgetLedger {
    /// A ledger named `name` (used in errors) with `budgets` (may be empty: then it only keeps
    /// totals). A bad budget is a [`ConfigError`] naming `budgets[i].limit_usd` / `.period`.
    pub fn new(
        name: impl Into<String>,
        budgets: Vec<Budget>,
        wall: WallClock,
    ) -> Result<Self, ConfigError> {
        let created = wall.now();
        let mut states = Vec::with_capacity(budgets.len());
        for (i, b) in budgets.into_iter().enumerate() {
            b.validate()
                .map_err(|e| e.scoped(&format!("budgets[{i}]")))?;
            let (idx, end) = period_at(b.period, created, created);
            states.push(BudgetState {
                budget: b,
                limit: to_nano(b.limit_usd),
                period_idx: idx,
                period_end: end,
                spent: 0,
                reserved: 0,
                held: 0,
            });
        }
        Ok(Self {
            inner: Arc::new(LedgerInner {
                name: name.into(),
                wall,
                created,
                state: Mutex::new(LedgerState {
                    budgets: states,
                    lifetime_spent: 0,
                    reserved: 0,
                    committed: 0,
                }),
            }),
        })
    }

    /// Replaces the budgets (hot reload) while keeping what was spent: a budget whose period
    /// matches an existing one keeps that period's spending and reservations; a new period
    /// starts from zero in its current period; lifetime totals are untouched.
    pub fn set_budgets(&self, budgets: Vec<Budget>) -> Result<(), ConfigError> {
        for (i, b) in budgets.iter().enumerate() {
            b.validate()
                .map_err(|e| e.scoped(&format!("budgets[{i}]")))?;
        }
        let mut st = self.inner.state.lock();
        self.inner.roll(&mut st);
        let now = self.inner.wall.now();
        let mut old = std::mem::take(&mut st.budgets);
        for b in budgets {
            let kept = old
                .iter()
                .position(|o| o.budget.period == b.period)
                .map(|pos| old.remove(pos));
            let state = match kept {
                Some(mut o) => {
                    o.budget = b;
                    o.limit = to_nano(b.limit_usd);
                    o
                }
                None => {
                    let (idx, end) = period_at(b.period, self.inner.created, now);
                    BudgetState {
                        budget: b,
                        limit: to_nano(b.limit_usd),
                        period_idx: idx,
                        period_end: end,
                        spent: 0,
                        reserved: st.reserved,
                        held: 0,
                    }
                }
            };
            st.budgets.push(state);
        }
        Ok(())
    }

    /// The ledger's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether any budget is set (otherwise every reservation succeeds).
    pub fn has_budgets(&self) -> bool {
        !self.inner.state.lock().budgets.is_empty()
    }

    /// Reserves `usd` on every budget of this ledger, atomically, or says which budget cannot.
    pub fn try_reserve(&self, usd: f64) -> Result<BudgetReservation, BudgetError> {
        let part = self.reserve_part(usd)?;
        Ok(BudgetReservation { parts: vec![part] })
    }

    fn reserve_part(&self, usd: f64) -> Result<Part, BudgetError> {
        if !usd.is_finite() || usd < 0.0 {
            return Err(BudgetError::InvalidAmount { usd });
        }
        let amount = to_nano(usd);
        let mut st = self.inner.state.lock();
        // Without budgets there is nothing to check, nor a reason to read the clock.
        if !st.budgets.is_empty() {
            let now = self.inner.roll(&mut st);
            for b in &st.budgets {
                if b.used().saturating_add(amount) > b.limit {
                    return Err(BudgetError::Exhausted(exhausted(
                        &self.inner.name,
                        b,
                        usd,
                        now,
                    )));
                }
            }
        }
        for b in &mut st.budgets {
            b.reserved += amount;
        }
        st.reserved += amount;
        drop(st);
        Ok(Part {
            ledger: Arc::clone(&self.inner),
            amount,
            done: false,
        })
    }

    /// Everything committed since creation, USD (cheaper than a [`snapshot`](Self::snapshot)).
    pub fn lifetime_spent_usd(&self) -> f64 {
        to_usd(self.inner.state.lock().lifetime_spent)
    }

    /// The free share (0..=1) of the tightest budget in its current period, counting money
    /// reserved by requests in flight; `None` without budgets. Used for scoring on every
    /// request, so it takes the lock once and allocates nothing.
    pub fn remaining_fraction(&self) -> Option<f64> {
        let mut st = self.inner.state.lock();
        self.inner.roll_budgets(&mut st);
        st.budgets
            .iter()
            .map(|b| {
                if b.limit == 0 {
                    0.0
                } else {
                    b.limit.saturating_sub(b.used()) as f64 / b.limit as f64
                }
            })
            .reduce(f64::min)
    }

    /// The ledger's totals and budgets now.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let mut st = self.inner.state.lock();
        let now = self.inner.roll(&mut st);
        LedgerSnapshot {
            name: self.inner.name.clone(),
            lifetime_spent_usd: to_usd(st.lifetime_spent),
            reserved_usd: to_usd(st.reserved),
            committed: st.committed,
            budgets: st
                .budgets
                .iter()
                .map(|b| BudgetSnapshot {
                    period: b.budget.period,
                    limit_usd: b.budget.limit_usd,
                    spent_usd: to_usd(b.spent),
                    reserved_usd: to_usd(b.reserved),
                    held_usd: to_usd(b.held),
                    remaining_usd: to_usd(b.limit.saturating_sub(b.used())),
                    resets_at_unix: unix_secs(b.period_end),
                    resets_in: b.period_end.duration_since(now).unwrap_or(Duration::ZERO),
                })
                .collect(),
        }
    }
}

/// The index of the period of `period` that `now` falls in, and when it ends (custom periods
/// count from `created`). For stores that keep budgets outside a [`BudgetLedger`] (the Redis
/// store), so every store agrees with the ledger on calendar days and months.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn period_bounds(
    period: BudgetPeriod,
    created: SystemTime,
    now: SystemTime,
) -> (u64, SystemTime) {
    period_at(period, created, now)
}

fn exhausted(name: &str, b: &BudgetState, usd: f64, now: SystemTime) -> BudgetExhausted {
    BudgetExhausted {
        ledger: name.to_string(),
        period: b.budget.period,
        limit_usd: b.budget.limit_usd,
        spent_usd: to_usd(b.spent),
        reserved_usd: to_usd(b.reserved.saturating_add(b.held)),
        requested_usd: usd,
        resets_at_unix: unix_secs(b.period_end),
        resets_in: b.period_end.duration_since(now).unwrap_or(Duration::ZERO),
    }
}

/// Reserves `usd` on each ledger in order; if one refuses, the reservations already taken are
/// released and its error is returned. Use it for provider + router budgets.
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use image_router::budget::{try_reserve_all, Budget, BudgetLedger, BudgetPeriod, WallClock};
/// use image_router::clock::ManualClock;
/// let wall = WallClock::new(SystemTime::now(), Arc::new(ManualClock::new()));
/// let provider = BudgetLedger::new("openai", vec![Budget::new(5.0, BudgetPeriod::Day).unwrap()], wall.clone()).unwrap();
/// let router = BudgetLedger::new("router", vec![Budget::new(0.1, BudgetPeriod::Month).unwrap()], wall).unwrap();
/// assert!(try_reserve_all(&[&provider, &router], 0.2).is_err());
/// assert_eq!(provider.snapshot().reserved_usd, 0.0); // released
/// ```
pub fn try_reserve_all(
    ledgers: &[&BudgetLedger],
    usd: f64,
) -> Result<BudgetReservation, BudgetError> {
    let mut parts = Vec::with_capacity(ledgers.len());
    for l in ledgers {
        // On error `parts` is dropped, which releases what was taken.
        parts.push(l.reserve_part(usd)?);
    }
    Ok(BudgetReservation { parts })
}

/// As [`try_reserve_all`] for a priced request: an unknown price (no fallback configured) is
/// refused by the first ledger that has a budget, and reserves nothing where no budget is set.
pub fn reserve_cost(
    ledgers: &[&BudgetLedger],
    cost: Result<Cost, PriceUnknown>,
) -> Result<BudgetReservation, BudgetError> {
    match cost {
        Ok(c) => try_reserve_all(ledgers, c.usd),
        Err(unknown) => {
            if let Some(l) = ledgers.iter().find(|l| l.has_budgets()) {
                return Err(BudgetError::PriceUnknown {
                    ledger: l.name().to_string(),
                    source: unknown,
                });
            }
            try_reserve_all(ledgers, 0.0)
        }
    }
}

#[derive(Debug)]
struct Part {
    ledger: Arc<LedgerInner>,
    amount: u64,
    done: bool,
}

/// How a reservation ends.
#[derive(Clone, Copy)]
enum Finish {
    Release,
    Commit(u64),
    Hold,
}

impl Part {
    fn finish(&mut self, how: Finish) {
        if self.done {
            return;
        }
        self.done = true;
        let mut st = self.ledger.state.lock();
        self.ledger.roll_budgets(&mut st);
        st.reserved = st.reserved.saturating_sub(self.amount);
        for b in &mut st.budgets {
            b.reserved = b.reserved.saturating_sub(self.amount);
            match how {
                Finish::Release => {}
                Finish::Commit(a) => b.spent = b.spent.saturating_add(a),
                Finish::Hold => b.held = b.held.saturating_add(self.amount),
            }
        }
        if let Finish::Commit(a) = how {
            st.lifetime_spent = st.lifetime_spent.saturating_add(a);
            st.committed += 1;
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.finish(Finish::Release);
    }
}

/// Money held for a request in flight, on one or more ledgers. Commit the actual cost, or
/// release it; dropping it releases it.
#[derive(Debug)]
#[must_use = "dropping a reservation releases it"]
pub struct BudgetReservation {
    parts: Vec<Part>,
}

impl BudgetReservation {
    /// The reserved amount per ledger, USD.
    pub fn reserved_usd(&self) -> f64 {
        self.parts.first().map_or(0.0, |p| to_usd(p.amount))
    }

    /// Charges `actual_usd` on every ledger and frees the reservation. A negative, NaN or
    /// infinite amount charges the reserved estimate instead.
    pub fn commit(mut self, actual_usd: f64) {
        for p in &mut self.parts {
            let a = if actual_usd.is_finite() && actual_usd >= 0.0 {
                to_nano(actual_usd)
            } else {
                p.amount
            };
            p.finish(Finish::Commit(a));
        }
    }

    /// Frees the reservation without charging (the request failed before costing anything).
    pub fn release(mut self) {
        for p in &mut self.parts {
            p.finish(Finish::Release);
        }
    }

    /// Keeps the reserved amount counted against every budget until the budget's period
    /// ends, without adding it to the lifetime total: for a request that was sent and may
    /// have been billed, but whose cost will never be known (see the module docs).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::SystemTime;
    /// use image_router::budget::{Budget, BudgetLedger, BudgetPeriod, WallClock};
    /// use image_router::clock::ManualClock;
    /// let wall = WallClock::new(SystemTime::now(), Arc::new(ManualClock::new()));
    /// let day = Budget::new(1.0, BudgetPeriod::Day).unwrap();
    /// let ledger = BudgetLedger::new("openai", vec![day], wall).unwrap();
    /// ledger.try_reserve(0.6).unwrap().hold();
    /// let snap = ledger.snapshot();
    /// assert!((snap.budgets[0].held_usd - 0.6).abs() < 1e-9);
    /// assert_eq!(snap.lifetime_spent_usd, 0.0);
    /// assert!(ledger.try_reserve(0.6).is_err()); // the held money still counts
    /// ```
    pub fn hold(mut self) {
        for p in &mut self.parts {
            p.finish(Finish::Hold);
        }
    }
}
