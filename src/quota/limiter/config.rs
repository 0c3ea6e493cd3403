//! The limiter's settings ([`LimiterConfig`]), what it answers when it refuses ([`Denied`])
//! and what it reports ([`Headroom`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config_error::ConfigError;
use crate::quota::limits::{Limits, NoAccess};

/// Which limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Images per minute (a request weighs its `n`).
    Images,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Requests => "requests per minute",
            LimitKind::Tokens => "tokens per minute",
            LimitKind::Images => "images per minute",
        })
    }
}

/// Why the limiter is blocked regardless of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockReason {
    /// The provider reported `x-ratelimit-remaining-requests: 0`.
    RemainingRequestsZero,
    /// The provider reported `x-ratelimit-remaining-tokens: 0`.
    RemainingTokensZero,
    /// The provider answered 429 with a `retry-after`.
    RateLimited,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::RemainingRequestsZero => "the provider reported 0 remaining requests",
            BlockReason::RemainingTokensZero => "the provider reported 0 remaining tokens",
            BlockReason::RateLimited => "the provider answered 429 (rate limited)",
        })
    }
}

/// Why a request was not admitted.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Denied {
    /// The window is full; room appears after `retry_in`.
    NoRoom {
        /// The limit that is full (the first that blocks).
        limit: LimitKind,
        /// Its effective value.
        limit_value: u64,
        /// When room for this request appears (at the current effective limits).
        retry_in: Duration,
    },
    /// The estimate is larger than the effective TPM: it can never be admitted.
    NeverFits {
        /// The request's estimate.
        tokens: u64,
        /// The largest effective TPM (configured × margin, without back-off).
        effective_tpm: u64,
    },
    /// The request asks for more images (`n`) than the effective images-per-minute limit:
    /// it can never be admitted.
    NeverFitsImages {
        /// The request's `n`.
        images: u32,
        /// The largest effective IPM (configured × margin, without back-off).
        effective_ipm: u64,
    },
    /// Blocked by headers or a 429 until a moment.
    Blocked {
        /// Why.
        reason: BlockReason,
        /// Clock time (since the clock's epoch) when the block lifts.
        until: Duration,
        /// Time from now until then.
        retry_in: Duration,
    },
    /// The provider's tier gives no access: never send it anything.
    NoAccess(Box<NoAccess>),
}

impl Denied {
    /// When a retry can succeed; `None` for [`Denied::NeverFits`],
    /// [`Denied::NeverFitsImages`] and [`Denied::NoAccess`].
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Denied::NoRoom { retry_in, .. } | Denied::Blocked { retry_in, .. } => Some(*retry_in),
            Denied::NeverFits { .. } | Denied::NeverFitsImages { .. } | Denied::NoAccess(_) => None,
        }
    }

    /// Whether waiting can never help.
    pub fn is_permanent(&self) -> bool {
        self.retry_in().is_none()
    }

    /// Why, without the wait: what a skip shows beside its own `retry_in` (Display adds the
    /// wait in milliseconds).
    pub fn reason(&self) -> String {
        match self {
            Denied::NoRoom {
                limit, limit_value, ..
            } => format!("rate limiter full on {limit} (effective limit {limit_value})"),
            Denied::NeverFits {
                tokens,
                effective_tpm,
            } => format!(
                "request of {tokens} estimated tokens can never fit: the effective limit is \
                 {effective_tpm} tokens per minute"
            ),
            Denied::NeverFitsImages {
                images,
                effective_ipm,
            } => format!(
                "request of {images} images can never fit: the effective limit is \
                 {effective_ipm} images per minute"
            ),
            Denied::Blocked { reason, .. } => format!("blocked: {reason}"),
            Denied::NoAccess(na) => format!("no access: {na}"),
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())?;
        match self {
            Denied::NoRoom { retry_in, .. } => write!(f, "; room in {} ms", retry_in.as_millis()),
            Denied::Blocked { retry_in, .. } => {
                write!(f, "; retry in {} ms", retry_in.as_millis())
            }
            Denied::NeverFits { .. } | Denied::NeverFitsImages { .. } | Denied::NoAccess(_) => {
                Ok(())
            }
        }
    }
}

impl std::error::Error for Denied {}

/// The safety margin of a key declared shared when none is configured: 90 % of each limit
/// while the provider sends no `remaining-*` figures to measure the other clients by.
pub const SHARED_KEY_MARGIN: f64 = 0.9;

/// Tuning of a [`RateLimiter`](super::RateLimiter).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LimiterConfig {
    /// The configured limits.
    pub limits: Limits,
    /// Fraction of each limit to use, in `(0, 1]` (default 1: the whole limit; see the
    /// module docs of [`crate::quota::limiter`] for why that is safe).
    pub margin: f64,
    /// The key is shared with other clients: `margin` applies to requests and tokens only
    /// while the provider sends no `x-ratelimit-remaining-*` figures (default `false`:
    /// `margin` always applies). With fresh figures (within the last 60 s) the other clients'
    /// use is measured and held, and the whole limit is the ceiling. Images per minute keep
    /// `margin` always: no header reports remaining images.
    pub shared: bool,
    /// Factor applied to the rate on a real 429, in `(0, 1)` (default 0.5).
    pub decrease: f64,
    /// Lowest back-off factor, in `(0, 1]` (default 0.1).
    pub min_factor: f64,
    /// Back-off recovery per minute without 429s, as a fraction of the limit (default 0.1).
    pub recovery_per_minute: f64,
}

impl LimiterConfig {
    /// The defaults for `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            margin: 1.0,
            shared: false,
            decrease: 0.5,
            min_factor: 0.1,
            recovery_per_minute: 0.1,
        }
    }

    /// Sets the safety margin.
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }

    /// Declares the key shared with other clients (see [`LimiterConfig::shared`]). The margin
    /// is set apart ([`LimiterConfig::margin`]): the router gives a shared key without an
    /// explicit one [`SHARED_KEY_MARGIN`].
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Sets the factor applied to the rate on a real 429.
    pub fn decrease(mut self, factor: f64) -> Self {
        self.decrease = factor;
        self
    }

    /// Sets the lowest back-off factor.
    pub fn min_factor(mut self, factor: f64) -> Self {
        self.min_factor = factor;
        self
    }

    /// Sets the back-off recovery per minute (fraction of the limit).
    pub fn recovery_per_minute(mut self, fraction: f64) -> Self {
        self.recovery_per_minute = fraction;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let in_range = |v: f64, lo_open: f64, hi: f64, closed_hi: bool| {
            v.is_finite() && v > lo_open && (if closed_hi { v <= hi } else { v < hi })
        };
        if !in_range(self.margin, 0.0, 1.0, true) {
            return Err(ConfigError::new(
                "margin",
                format!("must be in (0, 1], got {}", self.margin),
            ));
        }
        if !in_range(self.decrease, 0.0, 1.0, false) {
            return Err(ConfigError::new(
                "decrease",
                format!("must be in (0, 1), got {}", self.decrease),
            ));
        }
        if !in_range(self.min_factor, 0.0, 1.0, true) {
            return Err(ConfigError::new(
                "min_factor",
                format!("must be in (0, 1], got {}", self.min_factor),
            ));
        }
        if !(self.recovery_per_minute.is_finite() && self.recovery_per_minute > 0.0) {
            return Err(ConfigError::new(
                "recovery_per_minute",
                format!("must be positive, got {}", self.recovery_per_minute),
            ));
        }
        if self.limits.rpm == Some(0) {
            return Err(ConfigError::new(
                "rpm",
                "must be at least 1 (None: unlimited)",
            ));
        }
        if self.limits.ipm == Some(0) {
            return Err(ConfigError::new(
                "ipm",
                "must be at least 1 (None: unlimited)",
            ));
        }
        if self.limits.tpm == Some(0) {
            return Err(ConfigError::new(
                "tpm",
                "must be at least 1 (None: unlimited)",
            ));
        }
        Ok(())
    }
}

/// How much a limiter can admit right now (for scoring providers and status pages).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Headroom {
    /// Requests admissible now (`None`: unlimited).
    pub requests: Option<u64>,
    /// Tokens admissible now (`None`: unlimited).
    pub tokens: Option<u64>,
    /// Images admissible now (`None`: unlimited).
    pub images: Option<u64>,
    /// The smaller of the available fractions of the effective limits, 0..=1 (1 when unlimited;
    /// 0 when blocked or without access).
    pub fraction: f64,
    /// Clock time (since the clock's epoch) until which the limiter is blocked.
    pub blocked_until: Option<Duration>,
    /// Time until the block lifts.
    pub retry_in: Option<Duration>,
    /// Effective requests per minute now.
    pub effective_rpm: Option<u64>,
    /// Effective tokens per minute now.
    pub effective_tpm: Option<u64>,
    /// Effective images per minute now.
    pub effective_ipm: Option<u64>,
    /// The safety margin in force now (1: the whole limit).
    pub margin: f64,
    /// The current 429 back-off factor (1: none).
    pub backoff_factor: f64,
    /// Whether the tier gives no access.
    pub no_access: bool,
}
