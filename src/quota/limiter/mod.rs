//! A per-window rate limiter that enforces requests per minute (RPM), images per minute
//! (IPM) and tokens per minute (TPM) together: each request counts one request, its `n`
//! images and its token estimate. The router keeps one limiter per provider *and model*
//! (OpenAI counts image limits per model; see [`crate::router::store`]).
//!
//! # Design: a sliding-window log, not a token bucket
//!
//! The limiter keeps a log of the requests it admitted in the last 60 seconds:
//! `(admitted_at, images, tokens, id)` in integer nanoseconds of the injected
//! [`Clock`](crate::clock::Clock), in a ring buffer. A request of `n` images and weight `w` is
//! admitted at time `t` iff, over the entries in `(t − 60 s, t]`,
//!
//! ```text
//! count + 1 ≤ RPM    and    images + n ≤ IPM    and    tokens + w ≤ TPM
//! ```
//!
//! (with the *effective* limits, below; an unset limit is no constraint). Capacity comes back
//! exactly 60 s after it was used: continuous, not fixed windows, so there is no burst at a
//! window boundary. Every dimension is the same kind of sum over the same log, so every
//! guarantee below holds for each of them alike.
//!
//! Why not a token bucket or GCRA: requests here are *weighted* (a high-quality image is 4160+
//! tokens, a low one 272; a request of `n = 4` is four images). A bucket of capacity `L` that
//! refills at `L` per minute lets a full bucket be spent and then the refill too, so a
//! 60-second window can see up to `2L`: the provider answers 429. Making it safe means a
//! capacity well below `L`, which wastes the paid-for capacity. The limiter has to give both
//! "no 60-second window ever admits more than the limit" and ≥ 97 % utilisation with zero
//! upstream 429s; only the log gives both, because it *is* the window the provider checks.
//!
//! The log is also safe against an upstream that enforces the same limit `L` per minute as a
//! token bucket (capacity `L`, refill `L / 60 s`). A bucket like that accepts a request sequence
//! iff every interval of length `d` carries at most `L + d·L/60` (a full bucket plus its
//! refill). Any interval of length `d` is covered by `ceil(d / 60 s)` consecutive 60-second
//! windows (`⌊d/60⌋ + 1` when it is closed at both ends), each of which the log keeps at or
//! below `L`, so the admitted amount is at most `ceil(d/60)·L ≤ L + d·L/60`. So the bucket never
//! runs dry on traffic this limiter admitted. (With a margin below 1 the log enforces
//! `floor(L × margin) < L`, which only adds slack.)
//!
//! The cost is memory proportional to the requests of one minute (a few dozen to a few thousand
//! entries for image models), and a refusal computes its exact retry time by walking the log.
//!
//! # Effective limits
//!
//! The effective limit is `max(1, floor(limit × margin × factor))` where
//! - `limit` is the configured limit, lowered to a server-reported `x-ratelimit-limit-*` when
//!   that is lower (requests and tokens). Images are not read from headers: the documented
//!   headers (api-facts, openai-python) cover requests and tokens only. Unsure: a contract
//!   change proposed in openai/openai-java (PR #1039, 2026-09, not merged) lists
//!   `x-ratelimit-{limit,remaining,reset}-images` on image 429s; once confirmed, they belong in
//!   [`RateLimitHeaders`] and would be held like the others;
//! - `margin` is the safety margin, **1 by default** (below);
//! - `factor` is the 429 back-off: a real 429 ([`RateLimiter::on_rate_limited`]) multiplies it
//!   by 0.5 (floor 0.1), and it recovers linearly by +0.1 per minute back to 1.
//!
//! A request that exceeds a limit × margin on its own (more images than the IPM, more tokens
//! than the TPM) is refused at once as [`Denied::NeverFitsImages`] / [`Denied::NeverFits`]:
//! waiting cannot help.
//!
//! The 429 whose message says "try again after 0.0 seconds" is a tier-access problem
//! ([`crate::AccessDenial::TierAccess`]), not a rate signal: the router does not call
//! `on_rate_limited` for it, so it neither lowers the rate nor blocks the limiter.
//!
//! # Why the whole limit, and what the margin is for
//!
//! The margin used to default to 0.9, applied as `floor(limit × 0.9)`: 6 RPM became 5 and
//! 5 IPM became 4, leaving 17–20 % of the paid capacity unused where limits are smallest. The
//! log does not need it: it already guarantees that no 60-second window holds more than the
//! limit, so traffic this limiter admits alone never trips the provider's window. The only
//! thing a margin can protect against is *another* client of the same key, and that is better
//! measured than guessed:
//!
//! - **Others, measured**: every answer's `x-ratelimit-remaining-*` says how much the provider
//!   counts as used. `server_used = limit − remaining`; what the log itself accounts for is
//!   subtracted, and the rest (`server_used − ours`, when positive) is *held* as used capacity
//!   until the matching `reset-*` (60 s without one: anything the provider counts now has left
//!   its window by then), replaced by every later answer's figures. So while the headers agree with the log, nothing is held and
//!   the whole limit is used; when they show others, the router's share shrinks by exactly
//!   what they use, and grows back as soon as an answer shows them gone.
//! - **Answers in flight**: an answer's figures describe the provider's count when it
//!   handled *that* request, not the entries admitted after it (still on their way, or not yet
//!   counted). So `ours` is the log's entries up to and including the answered request
//!   ([`RateLimiter::observe_headers_for`]): counting the later ones too would mistake our own
//!   in-flight requests for room and under-count the others. Entries that already left the
//!   log but were still in the provider's window when it answered make `ours` smaller and the
//!   held share larger: conservative. Headers without a request (a probe) count the whole log.
//! - **A shared key without headers**: a provider that sends no `remaining-*` figures (some
//!   proxies, image endpoints now and then) gives nothing to measure. A key declared
//!   `shared` then keeps its margin ([`SHARED_KEY_MARGIN`] = 0.9 unless configured), until an
//!   answer brings figures again (fresh for 60 s). A key not declared shared is taken to be the
//!   router's alone.
//! - **An explicit margin** ([`LimiterConfig::margin`] on a key not declared shared) applies
//!   as given, headers or not.
//!
//! A 429 still happens when another client takes the last room between two of our answers;
//! each such 429 needs a request of the other client that no answer showed yet, and it lowers
//! the rate (back-off) and blocks for its `retry-after` as before.
//!
//! # Live headers
//!
//! [`RateLimiter::observe_headers`] (and `_for`) apply a response's `x-ratelimit-*` headers:
//! `remaining-*: 0` blocks all admissions until the matching `reset-*` (1 s when no reset is
//! given, as on Azure); a `limit-*` lower than the configured limit lowers it; a `remaining-*`
//! lower than the log implies is held as above, until `reset-*`. OpenAI documents the reset as
//! the time until the limit is back to its initial state (every counted unit gone), which
//! makes that exact. Unsure: a server that sends the time until its *oldest* unit frees (the
//! embedded simulator does) makes the held share end early when the oldest unit is ours; the
//! next answer's figures then restore it, and a 429 in between is handled as any 429.
//!
//! # Permits
//!
//! An admission returns a [`Permit`]. [`Permit::reconcile`] replaces the estimate with the
//! actual tokens from the response's `usage` (in the log, at the original admission time);
//! [`Permit::cancel`] refunds it entirely, for requests that certainly never reached the
//! provider (a timeout while connecting). Dropping a permit keeps the estimate
//! charged: the safe choice when it is unknown whether the provider counted the request.
//! Images are never reconciled: the provider counts the `n` it was asked for.
//!
//! # Cost
//!
//! One short critical section under a `parking_lot::Mutex` per call; the clock is read inside it
//! so the log stays ordered. In steady state nothing is allocated (the ring buffer reuses its
//! capacity). The handle is `Clone` (shared state), `Send + Sync`, with a `&self` API.

mod config;
mod window;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use config::{BlockReason, Denied, Headroom, LimitKind, LimiterConfig, SHARED_KEY_MARGIN};
pub use window::WINDOW;
use window::{nanos, Held, State, DEFAULT_ZERO_REMAINING_BLOCK, WINDOW_NS};

use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::quota::headers::RateLimitHeaders;
use crate::quota::limits::Limits;
use crate::quota::usage::Usage;

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    clock: SharedClock,
}

/// The RPM + IPM + TPM limiter of one window (a provider's model). Cheap to clone (the clones
/// share state).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use image_router::clock::ManualClock;
/// use image_router::quota::limiter::{Denied, RateLimiter, LimiterConfig};
/// use image_router::quota::limits::Limits;
///
/// let clock = ManualClock::new();
/// let limits = Limits::new(Some(2), Some(10_000)).unwrap();
/// let limiter = RateLimiter::with_config(LimiterConfig::new(limits).margin(1.0), Arc::new(clock.clone())).unwrap();
/// let a = limiter.try_acquire(4160).unwrap();
/// let _b = limiter.try_acquire(4160).unwrap();
/// // The third request in the same minute: refused at once, with the exact retry time.
/// let err = limiter.try_acquire(100).unwrap_err();
/// assert_eq!(err.retry_in(), Some(Duration::from_secs(60)));
/// // The response said 4000 tokens: the difference is given back.
/// a.reconcile(4000);
/// clock.advance(Duration::from_secs(60));
/// assert!(limiter.try_acquire(100).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

/// An admitted request. See the module docs for reconcile / cancel / drop.
#[derive(Debug)]
#[must_use = "dropping a permit keeps the estimate charged; reconcile it with the actual usage"]
pub struct Permit {
    inner: Arc<Inner>,
    id: u64,
    tokens: u64,
}

impl RateLimiter {
    /// A limiter for `limits` with the default margin (1: the whole limit) and back-off, on
    /// `clock`.
    pub fn new(limits: Limits, clock: SharedClock) -> Result<Self, ConfigError> {
        Self::with_config(LimiterConfig::new(limits), clock)
    }

    /// A limiter with explicit tuning. Out-of-range settings are [`ConfigError`]s naming them.
    pub fn with_config(config: LimiterConfig, clock: SharedClock) -> Result<Self, ConfigError> {
        config.validate()?;
        let cap = config.limits.rpm.map_or(64, |r| (r as usize).min(4096));
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    config,
                    log: VecDeque::with_capacity(cap),
                    log_tokens: 0,
                    log_images: 0,
                    next_id: 1,
                    server_rpm: None,
                    server_tpm: None,
                    held_requests: Held::default(),
                    held_tokens: Held::default(),
                    blocks: [
                        (BlockReason::RemainingRequestsZero, 0),
                        (BlockReason::RemainingTokensZero, 0),
                        (BlockReason::RateLimited, 0),
                    ],
                    factor_at: 1.0,
                    decreased_at: 0,
                    remaining_seen_at: None,
                }),
                clock,
            }),
        })
    }

    fn now(&self) -> u64 {
        nanos(self.inner.clock.now())
    }

    /// Admits a request of one image and `tokens` estimated tokens now, or says why not
    /// (non-blocking, so the router can move to another provider at once).
    pub fn try_acquire(&self, tokens: u64) -> Result<Permit, Denied> {
        self.try_acquire_images(1, tokens)
    }

    /// Admits a request of `images` images (its `n`) and `tokens` estimated tokens now, or
    /// says why not. The request counts one against requests per minute, `images` against
    /// images per minute and `tokens` against tokens per minute.
    pub fn try_acquire_images(&self, images: u32, tokens: u64) -> Result<Permit, Denied> {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        st.check(now, images, tokens)?;
        let id = st.admit(now, images, tokens);
        drop(st);
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            id,
            tokens,
        })
    }

    /// Whether a request of `images` and `tokens` would be admitted now, without admitting
    /// it (a read: nothing changes).
    pub fn check(&self, images: u32, tokens: u64) -> Result<(), Denied> {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        st.check(now, images, tokens)
    }

    /// Admits a request, waiting (with `tokio::time::sleep`) up to `max_wait` for room. When the
    /// computed time until room is beyond what is left of `max_wait`, returns the [`Denied`] at
    /// once instead of sleeping; never waits past `max_wait`. Permanent refusals
    /// ([`Denied::NeverFits`], [`Denied::NoAccess`]) return at once.
    pub async fn acquire(&self, tokens: u64, max_wait: Duration) -> Result<Permit, Denied> {
        self.acquire_images(1, tokens, max_wait).await
    }

    /// [`acquire`](Self::acquire) for a request of `images` images.
    pub async fn acquire_images(
        &self,
        images: u32,
        tokens: u64,
        max_wait: Duration,
    ) -> Result<Permit, Denied> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let denied = match self.try_acquire_images(images, tokens) {
                Ok(p) => return Ok(p),
                Err(d) => d,
            };
            let Some(wait) = denied.retry_in() else {
                return Err(denied);
            };
            // Sleep at least 1 ms so a rounding-to-zero wait cannot spin.
            let wait = wait.max(Duration::from_millis(1));
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait > left {
                return Err(denied);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Applies rate-limit headers that came without a request of ours (a cheap probe): the
    /// provider is taken to have counted everything in the log (see the module docs).
    pub fn observe_headers(&self, h: &RateLimitHeaders) {
        self.observe(h, None);
    }

    /// Applies the rate-limit headers of the answer to `permit`'s request: the provider is
    /// taken to have counted the log's entries up to that request, not those admitted after
    /// it (still on their way when it answered). Call it before the permit is reconciled or
    /// cancelled; for an answer that did not count the request (a 429), cancel first and pass
    /// the id ([`Permit::id`]) to [`observe_headers_after`](Self::observe_headers_after).
    pub fn observe_headers_for(&self, permit: &Permit, h: &RateLimitHeaders) {
        self.observe(h, Some(permit.id));
    }

    /// [`observe_headers_for`](Self::observe_headers_for) by the id of a permit already
    /// settled: entries admitted up to and including `id` count as the provider's.
    pub fn observe_headers_after(&self, id: u64, h: &RateLimitHeaders) {
        self.observe(h, Some(id));
    }

    fn observe(&self, h: &RateLimitHeaders, up_to: Option<u64>) {
        if h.is_empty() {
            return;
        }
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        if h.remaining_requests.is_some() || h.remaining_tokens.is_some() {
            st.remaining_seen_at = Some(now);
        }
        let (ours_requests, ours_tokens) = st.ours_up_to(up_to);
        if let Some(l) = h.limit_requests.filter(|&l| l > 0) {
            st.server_rpm = Some(l);
        }
        if let Some(l) = h.limit_tokens.filter(|&l| l > 0) {
            st.server_tpm = Some(l);
        }
        if let Some(rem) = h.remaining_requests {
            let reset = h.reset_requests;
            if rem == 0 {
                let until =
                    now.saturating_add(nanos(reset.unwrap_or(DEFAULT_ZERO_REMAINING_BLOCK)));
                st.blocks[0].1 = st.blocks[0].1.max(until);
            }
            // The server's remaining is relative to the server's limit: use the reported one,
            // else the configured one.
            let server_limit = st.server_rpm.or(st.config.limits.rpm.map(u64::from));
            if let Some(limit) = server_limit {
                let server_used = limit.saturating_sub(rem);
                st.held_requests = Held {
                    amount: server_used.saturating_sub(ours_requests),
                    until: now.saturating_add(reset.map_or(WINDOW_NS, nanos)),
                };
            }
        }
        if let Some(rem) = h.remaining_tokens {
            let reset = h.reset_tokens;
            if rem == 0 {
                let until =
                    now.saturating_add(nanos(reset.unwrap_or(DEFAULT_ZERO_REMAINING_BLOCK)));
                st.blocks[1].1 = st.blocks[1].1.max(until);
            }
            let server_limit = st.server_tpm.or(st.config.limits.tpm);
            if let Some(limit) = server_limit {
                let server_used = limit.saturating_sub(rem);
                st.held_tokens = Held {
                    amount: server_used.saturating_sub(ours_tokens),
                    until: now.saturating_add(reset.map_or(WINDOW_NS, nanos)),
                };
            }
        }
        st.prune(now);
    }

    /// Records a real 429: the effective rate is multiplied by the decrease factor (default
    /// ×0.5, floor 10 %), and admissions stop for `retry_after` when given. The rate recovers
    /// linearly (default +10 % of the limit per minute). Do not call this for the
    /// "try again after 0.0 seconds" tier denial: that is an access problem, not a rate signal.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut st = self.inner.state.lock();
        let now = self.now();
        let current = st.factor(now);
        st.factor_at = (current * st.config.decrease).max(st.config.min_factor);
        st.decreased_at = now;
        if let Some(ra) = retry_after {
            let until = now.saturating_add(nanos(ra));
            st.blocks[2].1 = st.blocks[2].1.max(until);
        }
    }

    /// What can be admitted now.
    pub fn headroom(&self) -> Headroom {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        let eff = st.effective(now);
        let (rpm, tpm, ipm) = (eff.rpm, eff.tpm, eff.ipm);
        let block = st.block(now);
        let no_access = st.config.limits.no_access.is_some();
        let requests = rpm.map(|r| r.saturating_sub(st.used_requests()));
        let tokens = tpm.map(|t| t.saturating_sub(st.used_tokens()));
        let images = ipm.map(|i| i.saturating_sub(st.used_images()));
        let frac = |avail: Option<u64>, lim: Option<u64>| match (avail, lim) {
            (Some(a), Some(l)) if l > 0 => a as f64 / l as f64,
            _ => 1.0,
        };
        let fraction = if block.is_some() || no_access {
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
            blocked_until: block.map(|(_, u)| Duration::from_nanos(u)),
            retry_in: block.map(|(_, u)| Duration::from_nanos(u - now)),
            effective_rpm: rpm,
            effective_tpm: tpm,
            effective_ipm: ipm,
            margin: st.margin(now),
            backoff_factor: st.factor(now),
            no_access,
        }
    }

    /// Replaces the configured limits (hot reload), keeping the log, blocks and back-off.
    pub fn set_limits(&self, limits: Limits) -> Result<(), ConfigError> {
        let mut st = self.inner.state.lock();
        let mut cfg = st.config.clone();
        cfg.limits = limits;
        cfg.validate()?;
        st.config = cfg;
        Ok(())
    }

    /// Replaces the configured limits and the safety margin together (hot reload), keeping
    /// the log, blocks and back-off; on an invalid value nothing changes.
    pub fn set_limits_and_margin(&self, limits: Limits, margin: f64) -> Result<(), ConfigError> {
        let shared = self.inner.state.lock().config.shared;
        self.set_limits_margin_shared(limits, margin, shared)
    }

    /// Replaces the limits, the margin and whether the key is shared (hot reload), keeping
    /// the log, blocks and back-off; on an invalid value nothing changes.
    pub fn set_limits_margin_shared(
        &self,
        limits: Limits,
        margin: f64,
        shared: bool,
    ) -> Result<(), ConfigError> {
        let mut st = self.inner.state.lock();
        let mut cfg = st.config.clone();
        cfg.limits = limits;
        cfg.margin = margin;
        cfg.shared = shared;
        cfg.validate()?;
        st.config = cfg;
        Ok(())
    }

    /// Whether the window holds nothing that affects admission: no entry, no held capacity,
    /// no block, no back-off (so forgetting it loses nothing).
    pub fn is_idle(&self) -> bool {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        st.log.is_empty()
            && st.held_requests.amount == 0
            && st.held_tokens.amount == 0
            && st.block(now).is_none()
            && st.factor(now) >= 1.0
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.inner.state.lock().config.limits.clone()
    }

    /// The entries with an id above `id` still inside the window: `(at, images, tokens)`
    /// on this limiter's clock, oldest first. For the shared store's degraded mode, which
    /// adds what it admitted on its own (the entries after its seeds) to the shared window
    /// when it re-joins.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn entries_after(&self, id: u64) -> Vec<(Duration, u32, u64)> {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        st.log
            .iter()
            .filter(|e| e.id > id)
            .map(|e| (Duration::from_nanos(e.at), e.images, e.tokens))
            .collect()
    }

    /// The id the last admitted (or seeded) entry got, 0 before any.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn last_id(&self) -> u64 {
        self.inner.state.lock().next_id.saturating_sub(1)
    }

    /// Counts a request admitted elsewhere at `at` (this limiter's clock) in this window,
    /// without checking room: the degraded mode seeds a fresh local window with what this
    /// instance admitted through the shared store in the last minute. The log stays in time
    /// and id order (what settlement relies on): an `at` before the newest entry, or after
    /// now, is moved to that bound, which only keeps the room used a little longer.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn seed(&self, at: Duration, images: u32, tokens: u64) {
        let mut st = self.inner.state.lock();
        let now = self.now();
        st.prune(now);
        let newest = st.log.back().map_or(0, |e| e.at);
        let at = nanos(at).clamp(newest, now.max(newest));
        if at.saturating_add(WINDOW_NS) <= now {
            return;
        }
        let _ = st.admit(at, images, tokens);
    }
}

impl Permit {
    /// The tokens currently charged for this request.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// This request's position in its limiter's log (increasing with admission order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The limiter (window) this permit was admitted by.
    pub fn limiter(&self) -> RateLimiter {
        RateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Replaces the estimate with `actual_tokens` (from the response's `usage`): the difference
    /// is given back or charged, at the original admission time. After the entry has left the
    /// 60-second window this changes nothing (the window no longer counts it).
    pub fn reconcile(self, actual_tokens: u64) {
        let mut st = self.inner.state.lock();
        if let Some(i) = st.find(self.id) {
            let old = st.log[i].tokens;
            st.log[i].tokens = actual_tokens;
            st.log_tokens = st
                .log_tokens
                .saturating_sub(old)
                .saturating_add(actual_tokens);
        }
    }

    /// [`reconcile`](Self::reconcile) with a response's `usage`: `total_tokens`, or input +
    /// output when the total is absent. A usage with no tokens at all (a provider that does not
    /// report usage) keeps the estimate, rather than refunding work the provider did count.
    pub fn reconcile_usage(self, usage: &Usage) {
        let total = if usage.total_tokens > 0 {
            usage.total_tokens
        } else {
            usage.input_tokens.saturating_add(usage.output_tokens)
        };
        if total > 0 {
            self.reconcile(total);
        }
    }

    /// Refunds the request entirely: for requests that certainly never reached the provider
    /// (connect error, timeout before sending).
    pub fn cancel(self) {
        let mut st = self.inner.state.lock();
        if let Some(i) = st.find(self.id) {
            if let Some(e) = st.log.remove(i) {
                st.log_tokens = st.log_tokens.saturating_sub(e.tokens);
                st.log_images = st.log_images.saturating_sub(u64::from(e.images));
            }
        }
    }
}
