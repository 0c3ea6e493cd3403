//! The attempt trace: what the router tried for one request, in order, and what it skipped.
//!
//! Every response and every error carries it, so a caller (or the `--json` output of the
//! command line) can always see which provider was called, how it ended, and why others were
//! not called.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::serde_ms::{ser_ms, ser_opt_ms};

use super::provider::{Outcome, ProviderError};
use crate::request::Unsupported;
use crate::score::ScoreBreakdown;

/// One call to one provider.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Attempt {
    /// Provider name.
    pub provider: String,
    /// Model as sent to the provider (after any renaming / deployment mapping).
    pub model: String,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// How long the call took.
    #[serde(serialize_with = "ser_ms", rename = "ms")]
    pub duration: Duration,
    /// The error, unless it succeeded.
    pub error: Option<ProviderError>,
    /// 0 for the first call to this provider in this request, 1 for its retry.
    pub retry: u32,
    /// The request was sent and no answer came (a timeout after sending): the provider may
    /// have generated and billed it. Such an attempt is never retried on the same provider,
    /// and its budget reservation is held until the budget's period ends.
    pub possibly_billed: bool,
    /// The provider's score when it was chosen, every component (see
    /// [`ScoreBreakdown`]); `None` when the router did not rank it.
    pub score: Option<ScoreBreakdown>,
    /// The fallback model this attempt was for, as the catalog names it (see
    /// [`GenerateRequest::fallback_models`](crate::GenerateRequest::fallback_models)); `None`
    /// for the requested model. The first attempt with `Some` marks the switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl Attempt {
    /// A successful attempt.
    pub fn success(
        provider: &str,
        model: impl Into<String>,
        status: u16,
        duration: Duration,
        retry: u32,
    ) -> Self {
        Self {
            provider: provider.to_string(),
            // A name the caller owns (the router's wire name, made for this attempt) is
            // moved in, not copied.
            model: model.into(),
            outcome: Outcome::Success,
            status: Some(status),
            duration,
            error: None,
            retry,
            possibly_billed: false,
            score: None,
            fallback: None,
        }
    }

    /// A failed attempt.
    pub fn failure(model: &str, error: ProviderError, duration: Duration, retry: u32) -> Self {
        Self {
            provider: error.provider.clone(),
            model: model.to_string(),
            outcome: error.outcome(),
            status: error.status,
            duration,
            error: Some(error),
            retry,
            possibly_billed: false,
            score: None,
            fallback: None,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.provider, self.model)?;
        if self.fallback.is_some() {
            f.write_str(" (fallback)")?;
        }
        write!(f, " {}", self.outcome)?;
        if let Some(s) = self.status {
            write!(f, " HTTP {s}")?;
        }
        write!(f, " in {} ms", self.duration.as_millis())?;
        if self.retry > 0 {
            write!(f, " (retry {})", self.retry)?;
        }
        if self.possibly_billed {
            f.write_str(" (possibly billed)")?;
        }
        if let Some(s) = &self.score {
            write!(f, " [score {:.3}]", s.total)?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}

/// A provider the router did not call for a request, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Skip {
    /// Provider name.
    pub provider: String,
    /// Why it was not called.
    pub reason: SkipReason,
    /// The fallback model it was skipped for; `None` for the requested model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl Skip {
    /// A skip of `provider` for `reason`.
    pub fn new(provider: impl Into<String>, reason: SkipReason) -> Self {
        Self {
            provider: provider.into(),
            reason,
            fallback: None,
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fallback {
            Some(m) => write!(
                f,
                "{} skipped for fallback model {m}: {}",
                self.provider, self.reason
            ),
            None => write!(f, "{} skipped: {}", self.provider, self.reason),
        }
    }
}

/// Why a provider was skipped.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// It cannot serve this request (model, operation or parameter).
    Unsupported {
        /// Details.
        detail: Unsupported,
    },
    /// An earlier request found it denied / unauthenticated / missing the model; it is left
    /// alone until the cool-down ends.
    CoolingDown {
        /// Outcome that started the cool-down.
        cause: Outcome,
        /// The provider's message at that time.
        message: String,
        /// Time left in the cool-down.
        #[serde(serialize_with = "ser_ms", rename = "remaining_ms")]
        remaining: Duration,
    },
    /// Its rate limit has no room now (and another provider was available or the wait would
    /// pass the deadline).
    NoHeadroom {
        /// How long until it has room, if known.
        #[serde(serialize_with = "ser_opt_ms", rename = "retry_in_ms")]
        retry_in: Option<Duration>,
        /// Details.
        message: String,
    },
    /// Its spend budget cannot cover the request.
    Budget {
        /// Details (which budget, when it resets).
        message: String,
    },
    /// Its tier gives no access to this model.
    Tier {
        /// Details (the tier and what the next tier needs).
        message: String,
    },
    /// It is reserved for other request classes.
    Reserved {
        /// Details.
        message: String,
    },
    /// Its circuit breaker is open.
    CircuitOpen {
        /// Details.
        message: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Unsupported { detail } => write!(f, "cannot serve it: {detail}"),
            SkipReason::CoolingDown {
                cause,
                message,
                remaining,
            } => write!(
                f,
                "cooling down for {} s after {cause}: {message}",
                remaining.as_secs()
            ),
            SkipReason::NoHeadroom { retry_in, message } => {
                write!(f, "no rate-limit headroom: {message}")?;
                if let Some(d) = retry_in {
                    write!(f, " (room in {} ms)", d.as_millis())?;
                }
                Ok(())
            }
            SkipReason::Budget { message } => write!(f, "budget: {message}"),
            SkipReason::Tier { message } => write!(f, "tier: {message}"),
            SkipReason::CircuitOpen { message } => write!(f, "circuit open: {message}"),
            SkipReason::Reserved { message } => write!(f, "{message}"),
        }
    }
}
