//! Per-provider health: availability over a sliding time window and a peak-EWMA latency
//! estimate with an in-flight penalty.
//!
//! # Why this shape
//!
//! * **Availability counts only the provider's faults.** A caller's invalid request or a
//!   content-policy refusal says nothing about whether the provider works, so those outcomes are
//!   ignored. Server errors, timeouts, connection failures, undecodable answers and rate limits
//!   are failures; a delivered image is a success. Access denied, authentication and not-found
//!   are *not* counted either: they are account or configuration problems that do not heal on
//!   their own, and the [circuit breaker](crate::breaker) handles them with a long cool-down
//!   (`CircuitBreaker::open_for`). Counting them here too would punish the provider twice.
//! * **A time window, not a count window.** "The last 100 calls" means minutes for a busy
//!   provider and days for a rarely used fallback; a time window (default 60 s) ages out old
//!   evidence at the same speed for both. It is kept in a fixed ring of buckets, so memory is
//!   constant whatever the request rate; the window's resolution is `window / buckets`.
//! * **Below a minimum sample count availability is 1.0 ("unknown").** One failed call out of
//!   one must not make a provider look dead.
//! * **Every call counts once here, overlapping or not.** Availability is the share of calls
//!   that failed, which is what the next call risks, and it only scales the score: it never
//!   refuses a provider. Calls that time out together in a stall all count, and with normal
//!   traffic in the window a stall moves the score a little. The
//!   [circuit breaker](crate::breaker), which *does* refuse traffic, treats failures of calls
//!   in flight together as one piece of evidence instead.
//! * **A recovered provider starts with a clean slate.** When the breaker's probe succeeds
//!   after an outage, the router calls [`Health::forget_outcomes`]: the outage's failures,
//!   still inside the window, would otherwise keep availability (and the score) near zero
//!   for up to a whole window and starve the breaker's recovery ramp. With the defaults, a
//!   provider that failed for 30 s under one request per second serves again within 5 s of
//!   recovering and takes all its traffic back after the 10 s ramp. A provider whose score
//!   fell without its breaker opening (a partial failure rate below the breaker's) gets its
//!   traffic back as its failures age out of the window (default 60 s).
//! * **Latency is a peak-EWMA**, as in tower's `PeakEwma` balancer: a slower observation
//!   replaces the estimate at once (react to trouble immediately), a faster one only pulls the
//!   estimate down gradually, weighted by the clock time elapsed since the previous observation
//!   with a configurable time constant (be slow to trust a recovery). Between observations the
//!   estimate read by the router also decays slowly (`idle_decay`), like tower's does, so a
//!   provider that stopped getting traffic because it looked slow is eventually tried again
//!   and re-measured instead of being judged on stale data forever. The router stops that
//!   decay at the best latency measured among the request's candidates
//!   ([`Health::cost_ms_floored`]): staleness may make a provider look as good as the best
//!   one known, never better, so comparable providers keep their configured order at any
//!   traffic rate instead of taking turns by the age of their last measurement.
//! * **In-flight penalty**: the routing cost is `estimate × (in_flight + 1)`, so concurrent
//!   requests spread over providers instead of piling onto the single fastest one.
//!
//! * **Time to first partial image is a signal of its own.** A streamed request's user waits
//!   for the first partial image, not the final one, and a provider can be quick to the first
//!   partial yet slow to finish (or the other way round). So health keeps a second peak-EWMA,
//!   of the time from sending a streamed request to its first partial image
//!   ([`Health::record_first_partial`]: the same peak rule, decay and idle decay; a stream
//!   that stalled or timed out before any partial records its elapsed time, a lower bound, as
//!   a timeout does for latency). The router scores a streamed request that asks for partial
//!   images on it ([`Health::first_partial_cost_ms_floored`]), and every other request on
//!   the image latency as before: a stream's first partial never moves a non-streamed
//!   request's ranking. A provider with no first-partial measurement is costed as unmeasured
//!   (`default_latency`), as for latency, so it is tried once and then judged on data. The
//!   re-measure rule of [`Health::cost_ms_floored`] (forget an estimate made against a much
//!   faster best) is not applied to it: streams are rarer, and their estimates age out with
//!   the idle decay.
//! * **A streamed call's image latency excludes the caller's time.** A stream is pulled by
//!   the caller, so while it holds an event without asking for the next one, the router does
//!   not read the provider. That time is the caller's, not the provider's: the router
//!   subtracts it ([`InFlight::finish_excluding`]) before the whole call's duration (sent to
//!   `completed`, the same generation as a plain request) feeds the latency estimate. Without
//!   it a slow consumer would make a provider look slow to every request.
//!
//! All time comes from the injected [`SharedClock`], so tests run minutes of traffic in
//! microseconds with [`ManualClock`](crate::clock::ManualClock).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::error::Outcome;

/// How [`Health`] measures. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// Length of the availability window. Default 60 s.
    pub window: Duration,
    /// Number of ring buckets the window is split into (resolution = `window / buckets`).
    /// Default 12 (5 s buckets for the default window). Clamped to 1..=1024.
    pub buckets: u32,
    /// Fewer counted outcomes than this in the window: availability is 1.0 ("unknown").
    /// Default 5.
    pub min_samples: u32,
    /// Time constant of the peak-EWMA decay toward faster observations. Default 10 s.
    pub latency_decay: Duration,
    /// Time constant of the decay of an idle estimate toward zero (so idle providers get
    /// re-measured); the router floors it at the best latency measured among a request's
    /// candidates. `None` disables it. Default 120 s.
    pub idle_decay: Option<Duration>,
    /// Latency assumed before the first observation. It is treated as an observation made
    /// when the `Health` was created, so it idle-decays too.
    ///
    /// Default **0 (optimistic)**: a provider nobody has measured yet looks as fast as
    /// possible, so it is tried once early (under `Scored`, typically on one of the first
    /// requests, even while the providers before it are fine: with image latencies of
    /// seconds, an unknown provider outscores a measured one) and from then on judged on
    /// data. This one request per provider is what lets `Scored` discover a faster
    /// provider configured behind a slower one. A
    /// pessimistic prior starves it instead: a primary that has only ever failed fast (a
    /// 429 records no latency) would lose to a measured fallback long after it recovered.
    /// The score's latency slack keeps this from reordering providers that are all fast;
    /// set a value here (e.g. 5 s) to make unmeasured providers wait their turn behind
    /// measured ones.
    pub default_latency: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            buckets: 12,
            min_samples: 5,
            latency_decay: Duration::from_secs(10),
            idle_decay: Some(Duration::from_secs(120)),
            default_latency: Duration::ZERO,
        }
    }
}

/// How an [`Outcome`] counts for availability: `Some(true)` success, `Some(false)` provider
/// fault, `None` not counted (the caller's fault, or an account problem the breaker handles).
/// The answer comes from the router's policy table ([`crate::router::policy`]).
pub fn availability_verdict(outcome: Outcome) -> Option<bool> {
    HealthEffect::from(outcome).availability
}

/// How one call counts for [`Health`], as the router's policy table
/// ([`crate::router::policy`]) computes it; an [`Outcome`] converts through the same table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthEffect {
    /// `Some(true)` a success, `Some(false)` a provider fault, `None` not counted.
    pub availability: Option<bool>,
    /// Whether the call's duration is a latency observation (a success, or a timeout: a
    /// lower bound of the true latency). A fast error says nothing about image latency.
    pub latency: bool,
}

/// Success / failure counts over a sliding time window kept as a ring of buckets.
#[derive(Clone, Debug)]
pub(crate) struct WindowCounter {
    bucket_nanos: u64,
    /// (bucket number since the clock's epoch, successes, failures)
    slots: Vec<(u64, u32, u32)>,
}

impl WindowCounter {
    pub(crate) fn new(window: Duration, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, 1024);
        let window_nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        let bucket_nanos = (window_nanos / u64::from(buckets)).max(1);
        Self {
            bucket_nanos,
            slots: vec![(u64::MAX, 0, 0); buckets as usize],
        }
    }

    fn bucket_of(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) / self.bucket_nanos
    }

    pub(crate) fn record(&mut self, now: Duration, success: bool) {
        let bucket = self.bucket_of(now);
        let len = self.slots.len() as u64;
        // `len >= 1` (clamped in `new`), so the modulo is defined.
        let slot = &mut self.slots[(bucket % len) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        if success {
            slot.1 = slot.1.saturating_add(1);
        } else {
            slot.2 = slot.2.saturating_add(1);
        }
    }

    /// (successes, failures) in the buckets that are still inside the window at `now`.
    pub(crate) fn counts(&self, now: Duration) -> (u32, u32) {
        let current = self.bucket_of(now);
        let len = self.slots.len() as u64;
        let oldest = current.saturating_sub(len - 1);
        self.slots
            .iter()
            .filter(|(b, _, _)| *b != u64::MAX && *b >= oldest && *b <= current)
            .fold((0u32, 0u32), |(s, f), (_, bs, bf)| {
                (s.saturating_add(*bs), f.saturating_add(*bf))
            })
    }

    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = (u64::MAX, 0, 0);
        }
    }
}

#[derive(Debug)]
struct Inner {
    window: WindowCounter,
    /// Peak-EWMA estimate in nanoseconds; `None` before the first observation.
    estimate_ns: Option<f64>,
    updated_at: Duration,
    created_at: Duration,
    /// The best latency known among the router's providers when this one was last measured
    /// (see [`Health::set_measured_against`]).
    context_ns: Option<f64>,
    /// Peak-EWMA of the time to a streamed request's first partial image, in nanoseconds;
    /// `None` before the first observation.
    first_partial_ns: Option<f64>,
    first_partial_at: Duration,
}

/// Health of one provider. Cheap `&self` API, `Send + Sync`; share it in an `Arc`.
///
/// ```
/// use image_router::clock::{ManualClock, SharedClock};
/// use image_router::health::{Health, HealthConfig};
/// use image_router::Outcome;
/// use std::{sync::Arc, time::Duration};
///
/// let clock = ManualClock::new();
/// let health = Health::new(HealthConfig::default(), Arc::new(clock.clone()) as SharedClock);
/// let call = health.start();          // in-flight + 1
/// clock.advance(Duration::from_millis(800));
/// call.finish(Outcome::Success);      // records outcome and latency, in-flight - 1
/// assert_eq!(health.latency(), Some(Duration::from_millis(800)));
/// assert_eq!(health.availability(), 1.0);
/// ```
#[derive(Debug)]
pub struct Health {
    config: HealthConfig,
    clock: SharedClock,
    in_flight: Arc<AtomicUsize>,
    inner: Arc<Mutex<Inner>>,
}

impl Health {
    /// A fresh health record (no samples, no latency observation).
    pub fn new(config: HealthConfig, clock: SharedClock) -> Self {
        let window = WindowCounter::new(config.window, config.buckets);
        let now = clock.now();
        Self {
            config,
            clock,
            in_flight: Arc::new(AtomicUsize::new(0)),
            inner: Arc::new(Mutex::new(Inner {
                window,
                estimate_ns: None,
                updated_at: now,
                created_at: now,
                context_ns: None,
                first_partial_ns: None,
                first_partial_at: now,
            })),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Marks a call as started: the in-flight count rises until the returned guard is
    /// finished or dropped. Finishing it records the outcome and the elapsed clock time.
    pub fn start(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            in_flight: Arc::clone(&self.in_flight),
            inner: Arc::clone(&self.inner),
            clock: Arc::clone(&self.clock),
            config: self.config.clone(),
            started: self.clock.now(),
            done: false,
        }
    }

    /// Records an outcome and the time it took, without an in-flight guard.
    ///
    /// Latency is observed for `Success` and `Timeout` only: a timeout's duration is a lower
    /// bound of the true latency (so the peak estimate rises, as it should), while a fast
    /// error (connection refused in 2 ms) says nothing about how fast images come back and
    /// must not make a broken provider look quick.
    pub fn record(&self, outcome: impl Into<HealthEffect>, latency: Duration) {
        record_into(
            &self.inner,
            &self.config,
            self.clock.now(),
            outcome.into(),
            latency,
        );
    }

    /// This record with a new `config` (hot reload): samples, the latency estimate and the
    /// in-flight count carry over; the availability window restarts empty when its length
    /// or bucket count changed (its ring cannot be re-bucketed). Guards from
    /// [`start`](Self::start) taken before keep recording into the same state.
    pub fn reconfigured(&self, config: HealthConfig) -> Health {
        if config.window != self.config.window || config.buckets != self.config.buckets {
            self.inner.lock().window = WindowCounter::new(config.window, config.buckets);
        }
        Health {
            config,
            clock: Arc::clone(&self.clock),
            in_flight: Arc::clone(&self.in_flight),
            inner: Arc::clone(&self.inner),
        }
    }

    /// Forgets the outcomes counted for availability (the latency estimate stays).
    ///
    /// The router calls this when the circuit breaker's probe succeeds after an outage: the
    /// breaker has judged the provider recovered, and the outage's failures, still inside
    /// the window, would otherwise keep its availability (and so its score) near zero for a
    /// whole window, starving the gradual ramp the breaker is trying to run.
    pub fn forget_outcomes(&self) {
        self.inner.lock().window.clear();
    }

    /// This record's clock, now.
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Number of calls currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// (successes, failures) counted in the current window.
    pub fn counts(&self) -> (u32, u32) {
        self.inner.lock().window.counts(self.clock.now())
    }

    /// Success ratio in the window, 0.0..=1.0; 1.0 while fewer than `min_samples` outcomes
    /// were counted (unknown is treated as healthy).
    pub fn availability(&self) -> f64 {
        self.availability_at(self.clock.now())
    }

    /// [`availability`](Self::availability) at `now` on this record's clock: for a caller
    /// that has just read that clock (planning reads it once for every provider; issue 16).
    pub(crate) fn availability_at(&self, now: Duration) -> f64 {
        let (s, f) = self.inner.lock().window.counts(now);
        ratio(s, f, self.config.min_samples)
    }

    /// The current peak-EWMA latency estimate (with idle decay applied), or `None` before the
    /// first observation.
    pub fn latency(&self) -> Option<Duration> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        read_estimate(&inner, &self.config, now).map(Duration::from_nanos_f64_saturating)
    }

    /// The last measured peak-EWMA estimate *without* the idle decay, or `None` before the
    /// first observation. The router takes the lowest of these among a request's candidates
    /// as the floor of the idle decay (see [`cost_ms_floored`](Self::cost_ms_floored)).
    pub fn measured_latency(&self) -> Option<Duration> {
        self.inner
            .lock()
            .estimate_ns
            .map(Duration::from_nanos_f64_saturating)
    }

    /// Records the best latency known among the router's providers right after this provider
    /// was measured (the router calls it after every observed call), so a later ranking can
    /// tell whether this provider's estimate was made under conditions that still hold (see
    /// [`cost_ms_floored`](Self::cost_ms_floored)).
    pub fn set_measured_against(&self, best: Duration) {
        self.inner.lock().context_ns = Some(nanos_f64(best));
    }

    /// The routing cost in milliseconds: the latency estimate (or `default_latency`, idle-decayed
    /// since creation, before any observation) × (in_flight + 1). Lower is better.
    pub fn cost_ms(&self) -> f64 {
        self.cost_ms_floored(None)
    }

    /// [`cost_ms`](Self::cost_ms), except that the idle decay of a measured estimate (or of a
    /// non-zero `default_latency`) stops at `floor`, never raising an estimate that is
    /// already below it.
    ///
    /// Why: the idle decay exists so a provider that lost its traffic for looking slow is
    /// re-measured once its peers are no faster. Decaying toward *zero* makes every idle
    /// provider look faster than a busy one, whatever they measured: a fallback as fast as
    /// the primary overtakes it after a minute of idleness, and at low traffic (one request
    /// every few minutes, when every estimate is stale) providers take turns by age. With
    /// the floor at the best measured estimate among the candidates, a stale estimate can
    /// fall to "as good as the best we know" but not below, so the score's priority decides
    /// among comparable providers while a provider that was slow still comes back when the
    /// others are no faster.
    ///
    /// One more rule makes stale comparisons honest: when the best latency among the
    /// candidates (`floor`) is now more than twice what it was when this provider was last
    /// measured (see [`set_measured_against`](Self::set_measured_against)), the conditions
    /// under which it lost have changed (the provider that beat it got much slower), so its
    /// old estimate no longer says anything: it is forgotten and the provider is costed as
    /// unmeasured, tried once, then judged on the fresh measurement. Among providers whose speeds did not change, nothing is
    /// re-tried.
    pub fn cost_ms_floored(&self, floor: Option<Duration>) -> f64 {
        self.cost_ms_floored_at(floor, self.clock.now())
    }

    /// [`cost_ms_floored`](Self::cost_ms_floored) at `now` on this record's clock (see
    /// [`availability_at`](Self::availability_at)).
    pub(crate) fn cost_ms_floored_at(&self, floor: Option<Duration>, now: Duration) -> f64 {
        let est_ns = {
            let mut inner = self.inner.lock();
            let outdated = match (floor, inner.context_ns) {
                (Some(floor), Some(context)) => nanos_f64(floor) > 2.0 * context,
                _ => false,
            };
            if outdated {
                // Forgotten, not just ignored: the next observation must replace it, not be
                // blended into it by the slow downward EWMA.
                inner.estimate_ns = None;
                inner.context_ns = None;
            }
            let current = read_estimate(&inner, &self.config, now);
            floored(
                current,
                inner.estimate_ns,
                floor,
                inner.created_at,
                &self.config,
                now,
            )
        };
        est_ns / 1e6 * (self.in_flight() as f64 + 1.0)
    }

    /// Records the time from sending a streamed request to its first partial image (or, for
    /// a stream that stalled or timed out before any, the time it waited: a lower bound).
    /// Only the first-partial estimate moves; the image latency estimate does not.
    pub fn record_first_partial(&self, took: Duration) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let current = decayed(
            inner.first_partial_ns,
            inner.first_partial_at,
            &self.config,
            now,
        );
        let next = peak_ewma(
            current,
            took,
            now.saturating_sub(inner.first_partial_at),
            &self.config,
        );
        inner.first_partial_ns = Some(next);
        inner.first_partial_at = now;
    }

    /// The time-to-first-partial estimate (with idle decay), or `None` before a streamed
    /// request delivered (or stalled before) its first partial image.
    pub fn first_partial_latency(&self) -> Option<Duration> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        decayed(
            inner.first_partial_ns,
            inner.first_partial_at,
            &self.config,
            now,
        )
        .map(Duration::from_nanos_f64_saturating)
    }

    /// The last measured time-to-first-partial estimate without the idle decay (the floor
    /// of the others' decay, as [`measured_latency`](Self::measured_latency) is for latency).
    pub fn measured_first_partial(&self) -> Option<Duration> {
        self.inner
            .lock()
            .first_partial_ns
            .map(Duration::from_nanos_f64_saturating)
    }

    /// The routing cost in milliseconds of a streamed request that asks for partial images:
    /// [`cost_ms_floored`](Self::cost_ms_floored) with the time-to-first-partial estimate in
    /// place of the image latency (see the module docs). Unmeasured: `default_latency`.
    pub fn first_partial_cost_ms_floored(&self, floor: Option<Duration>) -> f64 {
        let now = self.clock.now();
        let est_ns = {
            let inner = self.inner.lock();
            let current = decayed(
                inner.first_partial_ns,
                inner.first_partial_at,
                &self.config,
                now,
            );
            floored(
                current,
                inner.first_partial_ns,
                floor,
                inner.created_at,
                &self.config,
                now,
            )
        };
        est_ns / 1e6 * (self.in_flight() as f64 + 1.0)
    }

    /// A serializable view for status pages and explanations.
    pub fn snapshot(&self) -> HealthSnapshot {
        let (successes, failures) = self.counts();
        let latency = self.latency();
        HealthSnapshot {
            availability: ratio(successes, failures, self.config.min_samples),
            known: successes.saturating_add(failures) >= self.config.min_samples,
            successes,
            failures,
            latency_ms: latency.map(|d| d.as_secs_f64() * 1000.0),
            first_partial_ms: self
                .first_partial_latency()
                .map(|d| d.as_secs_f64() * 1000.0),
            cost_ms: self.cost_ms(),
            in_flight: self.in_flight(),
            window_ms: duration_ms(self.config.window),
        }
    }
}

trait FromNanosF64 {
    fn from_nanos_f64_saturating(nanos: f64) -> Duration;
}

impl FromNanosF64 for Duration {
    fn from_nanos_f64_saturating(nanos: f64) -> Duration {
        if nanos.is_finite() && nanos > 0.0 {
            Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ratio(successes: u32, failures: u32, min_samples: u32) -> f64 {
    let total = successes.saturating_add(failures);
    if total == 0 || total < min_samples {
        1.0
    } else {
        f64::from(successes) / f64::from(total)
    }
}

fn decay_factor(elapsed: Duration, tau: Duration) -> f64 {
    let tau = tau.as_secs_f64();
    if tau <= 0.0 {
        return 0.0;
    }
    (-elapsed.as_secs_f64() / tau).exp()
}

fn read_estimate(inner: &Inner, config: &HealthConfig, now: Duration) -> Option<f64> {
    decayed(inner.estimate_ns, inner.updated_at, config, now)
}

/// An estimate made at `updated_at`, idle-decayed to `now`.
fn decayed(
    estimate: Option<f64>,
    updated_at: Duration,
    config: &HealthConfig,
    now: Duration,
) -> Option<f64> {
    let est = estimate?;
    Some(match config.idle_decay {
        Some(tau) => est * decay_factor(now.saturating_sub(updated_at), tau),
        None => est,
    })
}

/// The peak-EWMA step: a slower observation replaces `current` at once; a faster one pulls
/// it down weighted by the time `since` the previous observation.
fn peak_ewma(
    current: Option<f64>,
    observed: Duration,
    since: Duration,
    config: &HealthConfig,
) -> f64 {
    let rtt = nanos_f64(observed);
    match current {
        None => rtt,
        Some(current) if rtt > current => rtt,
        Some(current) => {
            let decay = decay_factor(since, config.latency_decay);
            current * decay + rtt * (1.0 - decay)
        }
    }
}

/// An estimate's routing value in ns: `current` (idle-decayed) no lower than
/// `min(raw, floor)`; unmeasured, `default_latency` idle-decayed since `created_at` with the
/// same floor (see [`Health::cost_ms_floored`]).
fn floored(
    current: Option<f64>,
    raw: Option<f64>,
    floor: Option<Duration>,
    created_at: Duration,
    config: &HealthConfig,
    now: Duration,
) -> f64 {
    match (current, raw, floor) {
        (Some(current), Some(raw), Some(floor)) => current.max(raw.min(nanos_f64(floor))),
        (Some(current), _, _) => current,
        (None, _, _) => {
            // The prior idle-decays like an observation made at creation, with the same
            // floor (a zero prior stays zero).
            let default = nanos_f64(config.default_latency);
            let decayed = match config.idle_decay {
                Some(tau) => default * decay_factor(now.saturating_sub(created_at), tau),
                None => default,
            };
            match floor {
                Some(floor) => decayed.max(default.min(nanos_f64(floor))),
                None => decayed,
            }
        }
    }
}

/// `d` in nanoseconds as `f64`: the same value as `d.as_nanos() as f64` (the exact count
/// rounded to the nearest `f64`), computed in 64-bit integers for every duration under 584
/// years instead of through the 128-bit integer to float routine (issue 16). Written with
/// `checked_*` on purpose: a range check on the 128-bit value lets the compiler prove both
/// branches equal and fold them back into the 128-bit conversion.
fn nanos_f64(d: Duration) -> f64 {
    match d
        .as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(u64::from(d.subsec_nanos())))
    {
        Some(ns) => ns as f64,
        None => d.as_nanos() as f64,
    }
}

fn record_into(
    inner: &Mutex<Inner>,
    config: &HealthConfig,
    now: Duration,
    effect: HealthEffect,
    latency: Duration,
) {
    let mut inner = inner.lock();
    if let Some(ok) = effect.availability {
        inner.window.record(now, ok);
    }
    if effect.latency {
        let current = read_estimate(&inner, config, now);
        let next = peak_ewma(
            current,
            latency,
            now.saturating_sub(inner.updated_at),
            config,
        );
        inner.estimate_ns = Some(next);
        inner.updated_at = now;
    }
}

/// RAII in-flight marker from [`Health::start`]. `finish` records the outcome; dropping it
/// unfinished (a cancelled call) only lowers the in-flight count and records nothing.
#[derive(Debug)]
#[must_use = "the call counts as in flight until this guard is finished or dropped"]
pub struct InFlight {
    in_flight: Arc<AtomicUsize>,
    inner: Arc<Mutex<Inner>>,
    clock: SharedClock,
    config: HealthConfig,
    started: Duration,
    done: bool,
}

impl InFlight {
    /// Clock time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_sub(self.started)
    }

    /// Records the call's outcome (an [`Outcome`] or the [`HealthEffect`] the router's
    /// policy computed), with the latency measured from `start()` to now.
    pub fn finish(mut self, outcome: impl Into<HealthEffect>) {
        let now = self.clock.now();
        let latency = now.saturating_sub(self.started);
        record_into(&self.inner, &self.config, now, outcome.into(), latency);
        self.release();
    }

    /// [`finish`](Self::finish) with `excluded` taken off the measured latency: time within
    /// the call that was not the provider's (a streamed call's caller holding an event, see
    /// the module docs).
    pub fn finish_excluding(mut self, outcome: impl Into<HealthEffect>, excluded: Duration) {
        let now = self.clock.now();
        let latency = now.saturating_sub(self.started).saturating_sub(excluded);
        record_into(&self.inner, &self.config, now, outcome.into(), latency);
        self.release();
    }

    fn release(&mut self) {
        if !self.done {
            self.done = true;
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Serializable health view.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// Success ratio in the window (1.0 when not enough samples).
    pub availability: f64,
    /// Whether enough samples were counted for `availability` to mean something.
    pub known: bool,
    /// Successes in the window.
    pub successes: u32,
    /// Provider faults in the window.
    pub failures: u32,
    /// Peak-EWMA latency estimate in ms, `None` before the first observation.
    pub latency_ms: Option<f64>,
    /// Peak-EWMA time from sending a streamed request to its first partial image, in ms;
    /// `None` before a streamed request was measured.
    pub first_partial_ms: Option<f64>,
    /// Routing cost in ms: estimate × (in_flight + 1).
    pub cost_ms: f64,
    /// Calls in flight.
    pub in_flight: usize,
    /// The availability window length in ms.
    pub window_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_f64_is_as_nanos_as_f64() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(2_345),
            Duration::new(104 * 86_400, 123_456_789), // about 2^53 ns: f64 starts rounding
            Duration::new(9_007_199, 254_740_993),    // 2^53 + 1 ns: rounds
            Duration::new(18_446_744_073, 709_551_615), // u64::MAX ns
            Duration::new(18_446_744_073, 709_551_616), // one more: the 128-bit branch
            Duration::MAX,
        ];
        for d in cases {
            assert_eq!(
                nanos_f64(d).to_bits(),
                (d.as_nanos() as f64).to_bits(),
                "{d:?}"
            );
        }
    }

    #[test]
    fn window_counter_expires_old_buckets() {
        let mut w = WindowCounter::new(Duration::from_secs(10), 10);
        w.record(Duration::from_secs(0), false);
        w.record(Duration::from_millis(9_500), true);
        assert_eq!(w.counts(Duration::from_millis(9_900)), (1, 1));
        assert_eq!(w.counts(Duration::from_millis(10_100)), (1, 0));
        assert_eq!(w.counts(Duration::from_secs(30)), (0, 0));
    }
}
