//! The routing rules: what the router does after an attempt fails, as one pure function.
//!
//! Keeping the table in one place (and out of the request loop) makes the rules readable,
//! testable without a network, and identical for every strategy:
//!
//! | error class | decision |
//! |---|---|
//! | rate limited | fail over at once; wait out `retry-after` only when no other provider can take it and the deadline allows |
//! | access denied, authentication, model/deployment/endpoint not found | fail over at once and cool the provider down, so later requests skip it |
//! | unsupported parameter | fail over at once (the provider is fine for other requests: no cool-down) |
//! | server, timeout, connect, decode | one retry on the same provider after a jittered backoff, then fail over |
//! | invalid request | return at once with the provider's reason: no retry, no failover |
//! | content policy | return at once (default), or fail over when configured |

use crate::error::{ErrorKind, NotFoundKind};

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try the next provider now; remember the provider is rate limited.
    FailoverRateLimited,
    /// Try the next provider now and cool this one down (for all requests).
    FailoverCooldown,
    /// Try the next provider now and cool down this provider for this model only.
    FailoverCooldownModel,
    /// Try the next provider now; nothing to remember.
    Failover,
    /// Retry the same provider once after a backoff (if not retried yet), else fail over.
    RetryThenFailover,
    /// Stop and return the error.
    Return,
}

/// The decision for an error of `kind`.
pub(crate) fn decide(kind: &ErrorKind, content_policy_fails_over: bool) -> Decision {
    match kind {
        ErrorKind::RateLimited { .. } => Decision::FailoverRateLimited,
        ErrorKind::AccessDenied { .. } | ErrorKind::Authentication => Decision::FailoverCooldown,
        ErrorKind::NotFound { what } => match what {
            NotFoundKind::Model | NotFoundKind::Deployment => Decision::FailoverCooldownModel,
            NotFoundKind::Endpoint => Decision::FailoverCooldown,
            NotFoundKind::UnsupportedParameter => Decision::Failover,
        },
        ErrorKind::Server | ErrorKind::Timeout { .. } | ErrorKind::Connect | ErrorKind::Decode => {
            Decision::RetryThenFailover
        }
        ErrorKind::InvalidRequest => Decision::Return,
        ErrorKind::ContentPolicy { .. } => {
            if content_policy_fails_over {
                Decision::Failover
            } else {
                Decision::Return
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AccessDenial, RateLimitScope};

    #[test]
    fn table() {
        let rl = ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        };
        assert_eq!(decide(&rl, false), Decision::FailoverRateLimited);
        let tier = ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess,
        };
        assert_eq!(decide(&tier, false), Decision::FailoverCooldown);
        assert_eq!(
            decide(&ErrorKind::Authentication, false),
            Decision::FailoverCooldown
        );
        let nf = ErrorKind::NotFound {
            what: NotFoundKind::Model,
        };
        assert_eq!(decide(&nf, false), Decision::FailoverCooldownModel);
        let up = ErrorKind::NotFound {
            what: NotFoundKind::UnsupportedParameter,
        };
        assert_eq!(decide(&up, false), Decision::Failover);
        for k in [
            ErrorKind::Server,
            ErrorKind::Timeout { sent: true },
            ErrorKind::Connect,
            ErrorKind::Decode,
        ] {
            assert_eq!(decide(&k, false), Decision::RetryThenFailover);
        }
        assert_eq!(decide(&ErrorKind::InvalidRequest, true), Decision::Return);
        let cp = ErrorKind::ContentPolicy { reason: None };
        assert_eq!(decide(&cp, false), Decision::Return);
        assert_eq!(decide(&cp, true), Decision::Failover);
    }
}
