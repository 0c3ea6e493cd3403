//! Errors of a routed request: [`Error`] lists every attempt and every skipped provider, and
//! [`Error::cause`] picks the most telling [`ProviderError`].
//!
//! The parts are children so that the dependency runs one way: [`provider`] (what went wrong
//! with one provider) knows nothing of attempts, [`attempt`] (the trace) carries provider
//! errors, and [`Error`] here carries the trace. A request that is wrong before any provider
//! sees it is a [`ValidationError`](crate::ValidationError) (a request concept); a bad setting
//! is a [`ConfigError`](crate::ConfigError).

pub mod attempt;
pub mod provider;

pub use attempt::{Attempt, Skip, SkipReason};
pub use provider::*;

use crate::config_error::ConfigError;
use crate::request::ValidationError;

/// The error of a routed request.
///
/// Every variant that involved providers lists every attempt (and every provider skipped
/// without a call) so nothing is lost; [`Error::cause`] picks the most telling provider error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong (from a builder's `build()`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The request is wrong before any provider saw it.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A provider refused the request itself (invalid request, or content policy when content
    /// policy does not fail over): returned at once, no retry, no failover.
    #[error("{error}")]
    Rejected {
        /// The refusal.
        error: ProviderError,
        /// All attempts, the refusal last.
        attempts: Vec<Attempt>,
        /// Providers skipped without a call.
        skipped: Vec<Skip>,
    },
    /// Every provider that could be tried failed, was skipped, or the deadline passed.
    #[error("{}", summarize(attempts, skipped, *deadline_exceeded))]
    Exhausted {
        /// All attempts in order.
        attempts: Vec<Attempt>,
        /// Providers skipped without a call, with the reason.
        skipped: Vec<Skip>,
        /// Whether the request's deadline ended it.
        deadline_exceeded: bool,
    },
    /// A streamed request failed after partial images had reached the caller, and the
    /// caller did not allow a restart elsewhere (see [`crate::stream`]): no final image.
    #[error("the stream from {} ended without its final image after {partials_delivered} partial image(s) were delivered: {error}", error.provider)]
    StreamInterrupted {
        /// The failure that ended it.
        error: ProviderError,
        /// How many partial images had been delivered by the failing provider.
        partials_delivered: u32,
        /// All attempts, the interrupted one last.
        attempts: Vec<Attempt>,
        /// Providers skipped without a call.
        skipped: Vec<Skip>,
    },
}

fn summarize(attempts: &[Attempt], skipped: &[Skip], deadline: bool) -> String {
    let mut s = String::new();
    if deadline {
        s.push_str("deadline exceeded");
    } else if attempts.is_empty() {
        s.push_str("no provider can serve this request");
    } else {
        s.push_str("all providers failed");
    }
    if let Some(cause) = most_telling(attempts) {
        s.push_str(&format!("; most telling: {cause}"));
    }
    let fallbacks = fallbacks_tried(attempts, skipped);
    if !fallbacks.is_empty() {
        s.push_str(&format!(
            "; fallback model(s) tried too: {}",
            fallbacks.join(", ")
        ));
    }
    if !attempts.is_empty() {
        s.push_str(&format!(" ({} attempt(s)", attempts.len()));
        if !skipped.is_empty() {
            s.push_str(&format!(", {} skipped", skipped.len()));
        }
        s.push(')');
    } else {
        for sk in skipped {
            s.push_str(&format!("; {sk}"));
        }
    }
    s
}

/// The fallback models a trace went on to, in order of first appearance.
pub(crate) fn fallbacks_tried<'a>(attempts: &'a [Attempt], skipped: &'a [Skip]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    let marked = attempts
        .iter()
        .filter_map(|a| a.fallback.as_deref())
        .chain(skipped.iter().filter_map(|k| k.fallback.as_deref()));
    for m in marked {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

fn most_telling(attempts: &[Attempt]) -> Option<&ProviderError> {
    attempts
        .iter()
        .filter_map(|a| a.error.as_ref())
        .enumerate()
        // Highest severity wins; among equals the latest attempt.
        .max_by_key(|(i, e)| (e.kind.severity(), *i))
        .map(|(_, e)| e)
}

impl Error {
    /// Every attempt made (empty for configuration and validation errors).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Error::Rejected { attempts, .. }
            | Error::Exhausted { attempts, .. }
            | Error::StreamInterrupted { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// Every provider skipped without a call, with the reason.
    pub fn skipped(&self) -> &[Skip] {
        match self {
            Error::Rejected { skipped, .. }
            | Error::Exhausted { skipped, .. }
            | Error::StreamInterrupted { skipped, .. } => skipped,
            _ => &[],
        }
    }

    /// The most telling provider error: a refusal, else the most severe failure
    /// (access denied > authentication > not found > rate limit > server > timeout > connect).
    pub fn cause(&self) -> Option<&ProviderError> {
        match self {
            Error::Rejected { error, .. } | Error::StreamInterrupted { error, .. } => Some(error),
            Error::Exhausted { attempts, .. } => most_telling(attempts),
            _ => None,
        }
    }

    fn cause_is(&self, f: impl Fn(&ProviderError) -> bool) -> bool {
        self.cause().is_some_and(f)
    }

    /// A configuration error.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config(_))
    }
    /// A request validation error.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Error::Invalid(_)) || self.cause_is(|e| e.is_invalid_request())
    }
    /// The deadline ended the request.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(
            self,
            Error::Exhausted {
                deadline_exceeded: true,
                ..
            }
        )
    }
    /// No provider could serve the request (all skipped, none called).
    pub fn is_no_provider(&self) -> bool {
        matches!(self, Error::Exhausted { attempts, .. } if attempts.is_empty())
    }
    /// The most telling cause is a rate limit.
    pub fn is_rate_limited(&self) -> bool {
        self.cause_is(|e| e.is_rate_limited())
    }
    /// The most telling cause is an access denial.
    pub fn is_access_denied(&self) -> bool {
        self.cause_is(|e| e.is_access_denied())
    }
    /// The most telling cause is an authentication failure.
    pub fn is_authentication(&self) -> bool {
        self.cause_is(|e| e.is_authentication())
    }
    /// The most telling cause is a content-policy refusal.
    pub fn is_content_policy(&self) -> bool {
        self.cause_is(|e| e.is_content_policy())
    }
    /// The most telling cause is a not-found.
    pub fn is_not_found(&self) -> bool {
        self.cause_is(|e| e.is_not_found())
    }
}
