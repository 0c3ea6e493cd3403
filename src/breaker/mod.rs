//! A circuit breaker per provider: stop sending traffic to a provider that keeps failing,
//! test it with a single probe after a cool-down, and bring traffic back gradually.
//!
//! # States
//!
//! ```text
//!   N genuinely consecutive failures, or failure ratio ≥ R over the window (≥ min samples,
//!   ≥ 2 independent failures)
//!   Closed ───────────────────────────────────────────────────────────────▶ Open
//!     ▲                                                                      │ cool-down over:
//!     │ ramp complete                                                        ▼ next caller gets the probe
//!  Recovering ◀──────────── probe success ────────────────────────────── HalfOpen
//!     │                                                                      │ probe failure / dropped probe:
//!     └── ratio ≥ R since the probe, or N consecutive ──▶ Open (cool-down × multiplier, capped) ◀┘
//! ```
//!
//! # Why this shape
//!
//! * **Overlapping failures are one piece of evidence.** Calls that are in flight together
//!   share their fate: a provider that stalls for a second times out every call it was
//!   holding, and those timeouts arrive together. Counting each of them as one more
//!   *consecutive* failure turns a single hiccup into "N consecutive failures" and opens
//!   the breaker on a healthy provider (under load, a few percent of slow answers opened
//!   healthy providers this way, and once every breaker was open every request failed). So
//!   a failure counts toward [`BreakerConfig::consecutive_failures`] only if its call was
//!   admitted *after* the last counted outcome (success or failure) was reported; failures
//!   of calls that were already in flight when that outcome arrived overlap it and add
//!   nothing to the run. A success always counts and ends the run. Sequential calls (a
//!   request and its retry, or a trickle of requests one after another) are unaffected:
//!   each starts after the previous answer, so N failures in a row still open the breaker.
//!   The order is taken from the breaker's lock (each pass remembers how many outcomes had
//!   been counted when it was granted), not from timestamps, so it is exact with a coarse or
//!   a manual clock, where a call's start and the previous call's end can read the same.
//!   Every failure, overlapping or not, counts toward the **failure ratio**
//!   ([`BreakerConfig::failure_ratio`] over [`BreakerConfig::window`], once at least
//!   [`BreakerConfig::min_samples`] outcomes are in it): a rate over a minimum volume is
//!   what opens the breaker on a provider that fails for everyone at once, however
//!   concurrent the traffic. But the ratio opens the breaker only once at least **two** of
//!   the failures in the window are independent (each counted into a run, i.e. not
//!   overlapping a counted outcome): one stall, however many calls it catches, is one piece
//!   of evidence even on a provider that had little other traffic in the window, while a
//!   provider that is really down also fails the next round of calls, which is the second.
//!   That costs one extra round of calls (a fast failure, or one attempt timeout for a
//!   hanging provider) before a concurrent outage opens the breaker. At a trickle too thin
//!   to reach the minimum volume, a provider that *hangs* (each call ends at the attempt
//!   timeout, all of them overlapping) needs N rounds of the attempt timeout to open; each
//!   of those requests still fails over after its timeout.
//! * **Exactly one probe.** After an outage, letting every waiting request through at once
//!   is how a recovering provider gets knocked over again. In half-open the first caller gets
//!   a pass marked [`BreakerPass::is_probe`]; everybody else is refused until it reports. The
//!   router uses that pass for a cheap probe call (one that generates no image) instead of a
//!   real request when [`RouterBuilder::cheap_probe`](crate::RouterBuilder::cheap_probe) is
//!   on. A probe that never reports back (its pass is dropped, e.g. the request was
//!   cancelled) counts as a failure: otherwise one lost future would wedge the breaker in
//!   half-open forever.
//! * **Gradual recovery.** One good probe proves little. In *recovering* the admitted share of
//!   traffic ramps linearly from `ramp_start` to 100 % over `ramp` (default 10 s). Admission
//!   is counted, not drawn: every call that asks adds the current share to a credit and is
//!   admitted when a whole unit has built up (like a deficit round-robin), so at a 30 %
//!   share exactly 3 of every 10 calls go through. Random coin flips would give the same
//!   average with needless variance: a provider could get 0 of its first 10 calls, or 10,
//!   and tests of the ramp would be statistical. While ramping, the breaker re-opens when
//!   the failures since the good probe (the probe counts as one success) reach
//!   `failure_ratio` of the outcomes, with no minimum volume, or on N genuinely consecutive
//!   failures: a failure among the first calls after the probe means the probe was a fluke
//!   and re-opens at once, while one slow answer after many good ones is the normal error
//!   rate of a healthy provider and does not send it back to open (a provider failing 3 %
//!   of its calls would otherwise almost never finish a ramp under load).
//! * **Short, capped cool-down.** The first cool-down is 2 s and each failed probe doubles
//!   it up to a cap of **4 s** (defaults). The cap is the longest a recovered provider waits
//!   for its next probe, so with the defaults traffic comes back within about 4 s plus the
//!   time to the next request (within 5 s under a trickle of one request per second) instead
//!   of minutes. What a long outage costs in exchange is one failed probe per 4 s: a
//!   `GET /models/{model}` with [`RouterBuilder::cheap_probe`](crate::RouterBuilder::cheap_probe),
//!   otherwise one real request that fails on the provider and then fails over (a provider
//!   that hangs holds that request for the attempt timeout). Raise `max_cool_down` to probe
//!   less often and notice recovery later. Reaching *closed* again resets the cool-down.
//! * **Account problems are not outages.** Access denied (tier, quota, verification, region),
//!   authentication and a missing endpoint do not heal in seconds. [`CircuitBreaker::open_for`]
//!   opens the breaker with a long cool-down (default 10 min; under the router it is the
//!   router's one cool-down setting, [`RouterBuilder::cooldown`](crate::RouterBuilder::cooldown))
//!   and keeps the reason and the provider's message so the status page and error
//!   explanations can say *why* a provider is skipped. The breaker is the only record of such
//!   a provider-wide denial; a missing model or deployment is the router's per-model
//!   cool-down instead (the provider serves other models).
//! * **What counts** is decided by the router's policy table ([`crate::router::policy`]), which
//!   hands the breaker a [`BreakerEffect`]; an [`Outcome`](crate::Outcome) passed to `record` converts through
//!   the same table. `Server`, `Timeout`, `Connect` and `Decode` are failures. `RateLimited`
//!   is neutral: the provider is up but full, and the rate limiter (with the provider's
//!   `retry-after`) handles that better than a breaker could. `InvalidRequest` and
//!   `ContentPolicy` are the caller's problem and neutral. `AccessDenied`, `Authentication`
//!   and `NotFound` passed to [`BreakerPass::record`] count as plain failures; prefer
//!   [`BreakerPass::open_for`] for them to get the long cool-down and keep the reason. For a
//!   *probe*, any neutral outcome is a success: the provider answered.
//! * **Observable transitions.** Every state change is returned to the caller that caused it
//!   (as a [`Transition`]) and also passed to an optional listener, so the router can count
//!   them in metrics and log them.
//!
//! Time comes from the injected [`SharedClock`]. The breaker does not run timers: the
//! open → half-open step happens lazily when the next caller asks for a pass.
//!
//! The state machine is written here rather than taken from a crate: `failsafe`, the
//! maintained Rust breaker, detects failures with `consecutive_failures` or
//! `success_rate_over_time_window` policies that count outcomes one by one, with no notion
//! of calls overlapping, and has no counted recovery ramp or opening that carries the
//! provider's reason for the status page.

mod config;
mod pass;
mod snapshot;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::SharedClock;
use crate::health::WindowCounter;

pub use config::BreakerConfig;
pub use pass::{BreakerEffect, BreakerPass};
pub use snapshot::{
    BreakerSnapshot, BreakerState, DenyReason, OpenReason, Rejection, Transition,
    TransitionListener,
};

use pass::PassReport;
use state::{ramp_share, rejection, Inner, State, Transitions};

struct Shared {
    config: BreakerConfig,
    clock: SharedClock,
    inner: Mutex<Inner>,
    listener: Mutex<Option<TransitionListener>>,
}

/// A circuit breaker for one provider. Cloning shares the same breaker.
///
/// ```
/// use image_router::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
/// use image_router::clock::{ManualClock, SharedClock};
/// use image_router::Outcome;
/// use std::{sync::Arc, time::Duration};
///
/// let clock = ManualClock::new();
/// let config = BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() };
/// let breaker = CircuitBreaker::new(config, Arc::new(clock.clone()) as SharedClock);
/// for _ in 0..2 {
///     let pass = breaker.acquire().expect("closed");
///     pass.record(Outcome::Server);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.acquire().is_err());
/// clock.advance(Duration::from_secs(10));
/// let probe = breaker.acquire().expect("one probe after the cool-down");
/// assert!(probe.is_probe());
/// assert!(breaker.acquire().is_err()); // others wait for the probe
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: SharedClock) -> Self {
        let window = WindowCounter::new(config.window, 12);
        let independent = window.clone();
        let cool_down = config.cool_down;
        Self {
            shared: Arc::new(Shared {
                config,
                clock,
                inner: Mutex::new(Inner {
                    state: State::Closed,
                    epoch: 0,
                    consecutive: 0,
                    counted: 0,
                    window,
                    independent,
                    cool_down,
                    next_cool_down: cool_down,
                    reason: None,
                    message: None,
                    ramp_credit: 0.0,
                }),
                listener: Mutex::new(None),
            }),
        }
    }

    /// A breaker with `config` that continues this one's state (hot reload): the state, its
    /// reason and message, the cool-downs in force and the failure counts carry over, and so
    /// does the listener; the failure window is kept when its length is unchanged (otherwise
    /// it starts empty). Passes granted earlier report to this breaker, not the new one.
    pub fn reconfigured(&self, config: BreakerConfig) -> CircuitBreaker {
        let same_window = config.window == self.shared.config.window;
        let new = CircuitBreaker::new(config, self.shared.clock.clone());
        {
            let old = self.shared.inner.lock();
            let mut inner = new.shared.inner.lock();
            inner.state = old.state;
            inner.epoch = old.epoch;
            inner.consecutive = old.consecutive;
            if same_window {
                inner.window = old.window.clone();
            }
            // A closed breaker's cool-downs are the configuration's (closing resets them);
            // an opening in force keeps the cool-downs it runs on.
            if !matches!(old.state, State::Closed) {
                inner.cool_down = old.cool_down;
                inner.next_cool_down = old.next_cool_down;
            }
            inner.reason = old.reason;
            inner.message = old.message.clone();
            inner.ramp_credit = old.ramp_credit;
        }
        *new.shared.listener.lock() = self.shared.listener.lock().clone();
        new
    }

    /// Calls `listener` on every transition (replacing any previous listener). It runs after
    /// the breaker's lock is released, on the thread that caused the transition.
    pub fn set_listener(&self, listener: TransitionListener) {
        *self.shared.listener.lock() = Some(listener);
    }

    /// The configuration in use.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// Asks to send one call. `Ok` carries a pass that must be reported with
    /// [`BreakerPass::record`] (or [`BreakerPass::open_for`]); `Err` says why not.
    pub fn acquire(&self) -> Result<BreakerPass, Rejection> {
        let now = self.shared.clock.now();
        let mut transitions = Transitions::default();
        let result = {
            let mut inner = self.shared.inner.lock();
            self.acquire_locked(&mut inner, now, &mut transitions)
        };
        self.notify(&transitions);
        result.map(|(probe, epoch, seen)| BreakerPass {
            breaker: self.clone(),
            probe,
            epoch,
            seen,
            transition: transitions.last(),
            reported: false,
        })
    }

    fn acquire_locked(
        &self,
        inner: &mut Inner,
        now: Duration,
        transitions: &mut Transitions,
    ) -> Result<(bool, u64, u64), Rejection> {
        let config = &self.shared.config;
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(rejection(inner, Some(until - now)));
            }
            self.go(
                inner,
                State::HalfOpen { probe_out: false },
                now,
                None,
                transitions,
            );
        }
        if let State::Recovering { since } = inner.state {
            if now.saturating_sub(since) >= config.ramp {
                self.close(inner, now, transitions);
            }
        }
        match inner.state {
            State::Closed => Ok((false, inner.epoch, inner.counted)),
            State::HalfOpen { probe_out: true } => Err(rejection(inner, None)),
            State::HalfOpen { probe_out: false } => {
                inner.state = State::HalfOpen { probe_out: true };
                Ok((true, inner.epoch, inner.counted))
            }
            State::Recovering { since } => {
                let share = ramp_share(config, now.saturating_sub(since));
                inner.ramp_credit += share;
                if inner.ramp_credit >= 1.0 {
                    inner.ramp_credit -= 1.0;
                    Ok((false, inner.epoch, inner.counted))
                } else {
                    Err(rejection(inner, None))
                }
            }
            // Handled above: an `Open` state past its deadline became half-open.
            State::Open { until } => Err(rejection(inner, Some(until.saturating_sub(now)))),
        }
    }

    /// Opens the breaker now with the long cool-down, keeping `reason` and the provider's
    /// `message` for status and explanations. Returns the transition, if the state changed
    /// (re-opening an open breaker restarts the long cool-down and returns `None`).
    pub fn open_for(
        &self,
        reason: impl Into<DenyReason>,
        message: impl Into<String>,
    ) -> Option<Transition> {
        self.open_for_inner(reason.into(), message.into())
    }

    fn open_for_inner(&self, reason: DenyReason, message: String) -> Option<Transition> {
        let now = self.shared.clock.now();
        let mut transitions = Transitions::default();
        {
            let mut inner = self.shared.inner.lock();
            inner.message = Some(message);
            let cool = self.shared.config.long_cool_down;
            self.open(
                &mut inner,
                now,
                cool,
                OpenReason::Denied(reason),
                &mut transitions,
            );
        }
        self.notify(&transitions);
        transitions.last()
    }

    /// Reports an outcome without a pass (e.g. from a call made outside the breaker). It is
    /// taken as a call that started after every outcome reported so far (sequential).
    /// A probe is only resolved through its pass.
    pub fn record(&self, outcome: impl Into<BreakerEffect>) -> Option<Transition> {
        let now = self.shared.clock.now();
        let mut transitions = Transitions::default();
        {
            let mut inner = self.shared.inner.lock();
            let (epoch, seen) = (inner.epoch, inner.counted);
            let report = PassReport {
                probe: false,
                epoch,
                seen,
            };
            let effect = outcome.into();
            self.record_locked(&mut inner, now, effect, report, &mut transitions);
        }
        self.notify(&transitions);
        transitions.last()
    }

    /// The current state (an open breaker past its cool-down reads as half-open).
    pub fn state(&self) -> BreakerState {
        let state = self.shared.inner.lock().state;
        match state {
            // Only an open breaker's state depends on the time (read only then: this runs
            // several times per request; issue 16).
            State::Open { until } if self.shared.clock.now() >= until => BreakerState::HalfOpen,
            s => s.public(),
        }
    }

    /// Whether a call would certainly be refused right now (open in its cool-down, or a probe
    /// is out). Cheap check for ranking; does not change state.
    pub fn is_blocking(&self) -> bool {
        let state = self.shared.inner.lock().state;
        match state {
            // The clock is read only for an open breaker, as in `state`.
            State::Open { until } => self.shared.clock.now() < until,
            State::HalfOpen { probe_out } => probe_out,
            _ => false,
        }
    }

    /// A serializable view.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = self.shared.clock.now();
        let inner = self.shared.inner.lock();
        let config = &self.shared.config;
        let (state, retry_in, admitted) = match inner.state {
            State::Closed => (BreakerState::Closed, None, 1.0),
            State::Open { until } if now < until => (BreakerState::Open, Some(until - now), 0.0),
            State::Open { .. } => (BreakerState::HalfOpen, Some(Duration::ZERO), 0.0),
            State::HalfOpen { .. } => (BreakerState::HalfOpen, None, 0.0),
            State::Recovering { since } => (
                BreakerState::Recovering,
                None,
                ramp_share(config, now.saturating_sub(since)),
            ),
        };
        BreakerSnapshot {
            state,
            reason: inner.reason,
            message: inner.message.clone(),
            retry_in,
            consecutive_failures: inner.consecutive,
            cool_down: match inner.state {
                State::Open { .. } => inner.cool_down,
                _ => inner.next_cool_down,
            },
            admitted_fraction: admitted,
        }
    }
}
