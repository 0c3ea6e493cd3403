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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::serde_ms::{ser_ms, ser_opt_ms};

use crate::clock::SharedClock;
use crate::error::{AccessDenial, NotFoundKind};
use crate::health::WindowCounter;

/// Breaker settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Genuinely consecutive provider faults that open the breaker: a fault counts only if
    /// its call was admitted after the previous counted outcome was reported (faults of
    /// calls in flight together count once; see the module docs). Default 5. 0 disables
    /// this trigger. Any value is meaningful.
    pub consecutive_failures: u32,
    /// Failure ratio over `window` that opens the breaker (every fault counts here, also
    /// overlapping ones, but at least two of the faults must be independent; see the module
    /// docs). Default 0.5. Bounds: a finite number > 0; values > 1 disable it.
    pub failure_ratio: f64,
    /// Window for the failure ratio. Default 60 s. Bounds: > 0.
    pub window: Duration,
    /// Minimum outcomes in the window before the ratio can open the closed breaker (not
    /// used while recovering, see the module docs). Default 10. Any value (0 acts as 1).
    pub min_samples: u32,
    /// First cool-down after opening. Default 2 s (was 10 s): a blip of a few seconds costs
    /// a few seconds of detours. Bounds: > 0.
    pub cool_down: Duration,
    /// Cool-down multiplier after a failed probe. Default 2.0. Bounds: finite; values < 1
    /// are treated as 1 (no growth).
    pub cool_down_multiplier: f64,
    /// Cap of the growing cool-down: the longest a recovered provider waits for its next
    /// probe, and so how late recovery is noticed; a long outage costs one failed probe per
    /// this interval. Default 4 s (was 5 min), so traffic returns within about 5 s under a
    /// trickle of one request per second. Bounds: any duration; a cap below `cool_down` is
    /// read as `cool_down`.
    pub max_cool_down: Duration,
    /// Cool-down for access denied / authentication / not found. Default 10 min. Bounds: > 0.
    pub long_cool_down: Duration,
    /// Time for admitted traffic to ramp from `ramp_start` to 100 % after a good probe.
    /// Default 10 s (was 30 s: at a trickle of requests that kept most of a recovered
    /// provider's traffic on the fallback for half a minute). Zero closes the breaker
    /// straight after the probe. Bounds: any duration.
    pub ramp: Duration,
    /// Share of traffic admitted at the start of the ramp. Default 0.1. Bounds: 0..=1.
    pub ramp_start: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            window: Duration::from_secs(60),
            min_samples: 10,
            cool_down: Duration::from_secs(2),
            cool_down_multiplier: 2.0,
            max_cool_down: Duration::from_secs(4),
            long_cool_down: Duration::from_secs(600),
            ramp: Duration::from_secs(10),
            ramp_start: 0.1,
        }
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Normal operation.
    Closed,
    /// Refusing all traffic until the cool-down ends.
    Open,
    /// Cool-down over: one probe is (or may be) out; everybody else is refused.
    HalfOpen,
    /// The probe succeeded; a growing share of traffic is admitted.
    Recovering,
}

impl BreakerState {
    /// Stable snake_case name for metrics labels and JSON.
    pub const fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Recovering => "recovering",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account or configuration problem that opens the breaker for the long cool-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyReason {
    /// Access denied (tier, quota, verification, region, …).
    AccessDenied(AccessDenial),
    /// The key was rejected (401).
    Authentication,
    /// Model, deployment or endpoint not found.
    NotFound(NotFoundKind),
}

impl From<AccessDenial> for DenyReason {
    fn from(d: AccessDenial) -> Self {
        DenyReason::AccessDenied(d)
    }
}

impl From<NotFoundKind> for DenyReason {
    fn from(k: NotFoundKind) -> Self {
        DenyReason::NotFound(k)
    }
}

/// Why the breaker is (or was last) open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpenReason {
    /// This many consecutive provider faults.
    ConsecutiveFailures(u32),
    /// Failure ratio over the window reached the threshold.
    FailureRatio,
    /// The half-open probe failed (or was dropped without reporting).
    ProbeFailed,
    /// A provider fault during the recovery ramp.
    FailedWhileRecovering,
    /// An account or configuration problem (long cool-down).
    Denied(DenyReason),
}

/// A state change, returned to the caller that caused it and passed to the listener.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// Clock time of the change.
    #[serde(serialize_with = "ser_ms")]
    pub at: Duration,
    /// When opening: why.
    pub reason: Option<OpenReason>,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejection {
    /// The breaker's state when refusing.
    pub state: BreakerState,
    /// Time until the breaker will consider traffic again (`None` when it depends on an
    /// outstanding probe, or when the ramp held this call back).
    #[serde(rename = "retry_in_ms", serialize_with = "ser_opt_ms")]
    pub retry_in: Option<Duration>,
    /// Why it was opened.
    pub reason: Option<OpenReason>,
    /// The provider's message for a [`DenyReason`] opening.
    pub message: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker {}", self.state)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r:?})")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(d) = self.retry_in {
            write!(f, "; retry in {:.1}s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Serializable breaker view.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// Current state (open → half-open is reported as soon as the cool-down is over).
    pub state: BreakerState,
    /// Why it is / was last opened.
    pub reason: Option<OpenReason>,
    /// The provider's message for a deny opening.
    pub message: Option<String>,
    /// Time until the cool-down ends (open only).
    #[serde(rename = "retry_in_ms", serialize_with = "ser_opt_ms")]
    pub retry_in: Option<Duration>,
    /// Genuinely consecutive provider faults so far (faults of calls in flight together
    /// count once; see the module docs).
    pub consecutive_failures: u32,
    /// The cool-down in force for the current / next opening.
    #[serde(rename = "cool_down_ms", serialize_with = "ser_ms")]
    pub cool_down: Duration,
    /// Share of traffic currently admitted (0 open, 1 closed, the ramp value recovering).
    pub admitted_fraction: f64,
}

/// Listener for transitions.
pub type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Duration },
    HalfOpen { probe_out: bool },
    Recovering { since: Duration },
}

impl State {
    fn public(&self) -> BreakerState {
        match self {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
            State::Recovering { .. } => BreakerState::Recovering,
        }
    }
}

struct Inner {
    state: State,
    /// Bumped on every transition; passes remember it so stale reports are ignored.
    epoch: u64,
    consecutive: u32,
    /// Outcomes counted into the consecutive run so far (successes and counted failures).
    /// A pass remembers it when granted; a failure whose pass saw an older value overlapped
    /// a counted outcome and does not extend the run (see the module docs).
    counted: u64,
    window: WindowCounter,
    /// The failures in `window` that were counted into a run (did not overlap a counted
    /// outcome): the ratio needs two of them, so one stall is never enough on its own.
    independent: WindowCounter,
    /// Cool-down used for the current opening.
    cool_down: Duration,
    /// Cool-down a failed probe would use next (grows, reset on close).
    next_cool_down: Duration,
    reason: Option<OpenReason>,
    message: Option<String>,
    /// Admission credit while recovering: each asking call adds the current share, a call
    /// is admitted when a whole unit has built up (see the module docs).
    ramp_credit: f64,
}

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
        let now = self.shared.clock.now();
        let inner = self.shared.inner.lock();
        match inner.state {
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            s => s.public(),
        }
    }

    /// Whether a call would certainly be refused right now (open in its cool-down, or a probe
    /// is out). Cheap check for ranking; does not change state.
    pub fn is_blocking(&self) -> bool {
        let now = self.shared.clock.now();
        let inner = self.shared.inner.lock();
        match inner.state {
            State::Open { until } => now < until,
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

    fn notify(&self, transitions: &Transitions) {
        if transitions.is_empty() {
            return;
        }
        let listener = self.shared.listener.lock().clone();
        if let Some(listener) = listener {
            for t in transitions.iter() {
                listener(t);
            }
        }
    }

    fn go(
        &self,
        inner: &mut Inner,
        to: State,
        now: Duration,
        reason: Option<OpenReason>,
        transitions: &mut Transitions,
    ) {
        let from = inner.state.public();
        if matches!(to, State::Recovering { .. }) {
            // Half a unit: the first call is admitted once the share reaches 50 %, rounding
            // the admitted count to the nearest whole instead of always down.
            inner.ramp_credit = 0.5;
        }
        inner.state = to;
        inner.epoch = inner.epoch.wrapping_add(1);
        if to.public() != from {
            transitions.push(Transition {
                from,
                to: to.public(),
                at: now,
                reason,
            });
        }
    }

    fn open(
        &self,
        inner: &mut Inner,
        now: Duration,
        cool_down: Duration,
        reason: OpenReason,
        transitions: &mut Transitions,
    ) {
        if !matches!(reason, OpenReason::Denied(_)) {
            inner.message = None;
        }
        inner.reason = Some(reason);
        inner.cool_down = cool_down;
        inner.window.clear();
        inner.independent.clear();
        let until = now.saturating_add(cool_down);
        self.go(inner, State::Open { until }, now, Some(reason), transitions);
    }

    /// The cool-down after a failed probe: the growing one, capped.
    fn grow_cool_down(&self, inner: &mut Inner) -> Duration {
        let config = &self.shared.config;
        let cap = config.max_cool_down.max(inner.cool_down);
        let current = inner.next_cool_down.max(inner.cool_down);
        let mult = if config.cool_down_multiplier.is_finite() {
            config.cool_down_multiplier.max(1.0)
        } else {
            1.0
        };
        let grown = Duration::try_from_secs_f64(current.as_secs_f64() * mult).unwrap_or(cap);
        let next = grown.min(cap);
        inner.next_cool_down = next;
        next
    }

    fn record_locked(
        &self,
        inner: &mut Inner,
        now: Duration,
        verdict: BreakerEffect,
        pass: PassReport,
        transitions: &mut Transitions,
    ) {
        let config = &self.shared.config;
        if pass.probe {
            // A report from a probe of an earlier half-open period is stale.
            if pass.epoch != inner.epoch || !matches!(inner.state, State::HalfOpen { .. }) {
                return;
            }
            if verdict == BreakerEffect::Failure {
                let cool = self.grow_cool_down(inner);
                self.open(inner, now, cool, OpenReason::ProbeFailed, transitions);
            } else {
                inner.consecutive = 0;
                inner.counted = inner.counted.wrapping_add(1);
                inner.reason = None;
                inner.message = None;
                if config.ramp.is_zero() {
                    self.close(inner, now, transitions);
                } else {
                    self.go(
                        inner,
                        State::Recovering { since: now },
                        now,
                        None,
                        transitions,
                    );
                    // The ramp's failure ratio is taken over the outcomes since this probe,
                    // the probe being the first success (see the module docs).
                    inner.window.clear();
                    inner.independent.clear();
                    inner.window.record(now, true);
                }
            }
            return;
        }
        // A call admitted in an earlier state (e.g. before an outage opened the breaker)
        // reporting late only counts once the breaker is closed again: it must not re-open a
        // recovering breaker or touch the bookkeeping of an open one.
        if pass.epoch != inner.epoch && !matches!(inner.state, State::Closed) {
            return;
        }
        match verdict {
            BreakerEffect::Neutral => {}
            BreakerEffect::Success => {
                inner.consecutive = 0;
                inner.counted = inner.counted.wrapping_add(1);
                inner.window.record(now, true);
            }
            BreakerEffect::Failure => {
                // Genuinely consecutive only if no outcome was counted while this call was
                // in flight; otherwise it overlapped that outcome and adds nothing to the run.
                if pass.seen == inner.counted {
                    inner.consecutive = inner.consecutive.saturating_add(1);
                    inner.counted = inner.counted.wrapping_add(1);
                    inner.independent.record(now, false);
                }
                inner.window.record(now, false);
                let run = config.consecutive_failures > 0
                    && inner.consecutive >= config.consecutive_failures;
                let (s, f) = inner.window.counts(now);
                let total = s.saturating_add(f);
                let ratio = total > 0 && f64::from(f) / f64::from(total) >= config.failure_ratio;
                match inner.state {
                    State::Closed => {
                        if run {
                            let reason = OpenReason::ConsecutiveFailures(inner.consecutive);
                            let cool = config.cool_down;
                            self.open(inner, now, cool, reason, transitions);
                        } else if ratio
                            && total >= config.min_samples.max(1)
                            && inner.independent.counts(now).1 >= 2
                        {
                            let cool = config.cool_down;
                            self.open(inner, now, cool, OpenReason::FailureRatio, transitions);
                        }
                    }
                    // While ramping the ratio needs no minimum volume: the window holds only
                    // the outcomes since the good probe.
                    State::Recovering { .. } if run || ratio => {
                        let cool = self.grow_cool_down(inner);
                        let reason = OpenReason::FailedWhileRecovering;
                        self.open(inner, now, cool, reason, transitions);
                    }
                    // A healthy provider's occasional fault while ramping; or a late report
                    // of a call admitted before the breaker opened.
                    State::Recovering { .. } | State::Open { .. } | State::HalfOpen { .. } => {}
                }
            }
        }
    }

    fn close(&self, inner: &mut Inner, now: Duration, transitions: &mut Transitions) {
        inner.next_cool_down = self.shared.config.cool_down;
        inner.cool_down = self.shared.config.cool_down;
        inner.consecutive = 0;
        inner.window.clear();
        inner.independent.clear();
        self.go(inner, State::Closed, now, None, transitions);
    }

    fn report(&self, pass: PassReport, report: Report) -> Option<Transition> {
        let now = self.shared.clock.now();
        let mut transitions = Transitions::default();
        {
            let mut inner = self.shared.inner.lock();
            match report {
                Report::Effect(effect) => {
                    self.record_locked(&mut inner, now, effect, pass, &mut transitions)
                }
                Report::Dropped => {
                    if pass.probe {
                        self.record_locked(
                            &mut inner,
                            now,
                            BreakerEffect::Failure,
                            pass,
                            &mut transitions,
                        )
                    }
                }
            }
            // Ramp complete: close on the next report too, not only on acquire.
            if let State::Recovering { since } = inner.state {
                if now.saturating_sub(since) >= self.shared.config.ramp {
                    self.close(&mut inner, now, &mut transitions);
                }
            }
        }
        self.notify(&transitions);
        transitions.last()
    }
}

enum Report {
    Effect(BreakerEffect),
    Dropped,
}

/// What a pass tells the breaker about its call when reporting.
#[derive(Clone, Copy)]
struct PassReport {
    probe: bool,
    /// The breaker's epoch when the pass was granted (stale reports are ignored).
    epoch: u64,
    /// `Inner::counted` when the pass was granted: the call started after that many counted
    /// outcomes, so it overlapped any counted since.
    seen: u64,
}

/// How one call counts for the breaker. The router's policy table
/// ([`crate::router::policy`]) computes it for each error kind; an [`Outcome`](crate::Outcome) converts into
/// it through the same table, so the breaker keeps no table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerEffect {
    /// The provider served the call.
    Success,
    /// A provider fault.
    Failure,
    /// Says nothing about the provider (for a probe: the provider answered, a success).
    Neutral,
}

fn ramp_share(config: &BreakerConfig, elapsed: Duration) -> f64 {
    if config.ramp.is_zero() {
        return 1.0;
    }
    let start = if config.ramp_start.is_finite() {
        config.ramp_start.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let progress = (elapsed.as_secs_f64() / config.ramp.as_secs_f64()).clamp(0.0, 1.0);
    start + (1.0 - start) * progress
}

fn rejection(inner: &Inner, retry_in: Option<Duration>) -> Rejection {
    Rejection {
        state: inner.state.public(),
        retry_in,
        reason: inner.reason,
        message: inner.message.clone(),
    }
}

/// At most two transitions happen in one step (e.g. open → half-open on acquire); a tiny
/// inline buffer avoids allocating on the hot path.
#[derive(Default)]
struct Transitions {
    items: [Option<Transition>; 2],
}

impl Transitions {
    fn push(&mut self, t: Transition) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(t);
        } else {
            // Keep the latest when more than two happen (not expected).
            self.items[1] = Some(t);
        }
    }
    fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
    fn iter(&self) -> impl Iterator<Item = &Transition> {
        self.items.iter().flatten()
    }
    fn last(&self) -> Option<Transition> {
        self.iter().last().cloned()
    }
}

/// Permission to send one call, from [`CircuitBreaker::acquire`]. Report the result with
/// [`record`](Self::record) or [`open_for`](Self::open_for). Dropping a probe pass without
/// reporting counts as a failed probe; dropping a normal pass records nothing (a cancelled
/// call says nothing about the provider).
#[must_use = "report the call's outcome with record() or open_for()"]
pub struct BreakerPass {
    breaker: CircuitBreaker,
    probe: bool,
    epoch: u64,
    /// Outcomes counted into the consecutive run when this pass was granted.
    seen: u64,
    transition: Option<Transition>,
    reported: bool,
}

impl fmt::Debug for BreakerPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPass")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl BreakerPass {
    /// Whether this is the single half-open probe. The router may send a cheap probe call
    /// (one that generates no image) instead of the real request, and must report it.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The transition that granting this pass caused (open → half-open for a probe), if any.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Reports the call's outcome (an [`Outcome`](crate::Outcome) or the [`BreakerEffect`] the router's
    /// policy computed); returns the transition it caused, if any.
    pub fn record(mut self, outcome: impl Into<BreakerEffect>) -> Option<Transition> {
        self.reported = true;
        self.breaker
            .report(self.as_report(), Report::Effect(outcome.into()))
    }

    fn as_report(&self) -> PassReport {
        PassReport {
            probe: self.probe,
            epoch: self.epoch,
            seen: self.seen,
        }
    }

    /// Reports an account or configuration problem: opens the breaker with the long cool-down
    /// and keeps the reason and message (see [`CircuitBreaker::open_for`]).
    pub fn open_for(
        mut self,
        reason: impl Into<DenyReason>,
        message: impl Into<String>,
    ) -> Option<Transition> {
        self.reported = true;
        self.breaker.open_for_inner(reason.into(), message.into())
    }
}

impl Drop for BreakerPass {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.reported = true;
            let _ = self.breaker.report(self.as_report(), Report::Dropped);
        }
    }
}
