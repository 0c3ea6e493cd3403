//! The routing policy: what one failed attempt means, as one table.
//!
//! Why one table: an error kind has six consequences — what the request does next, what the
//! circuit breaker learns, whether health counts it, whether the rate-limit room is given
//! back, whether the model is cooled down and whether the budget reservation is kept — and
//! when they lived in six places they drifted apart. Here each [`ErrorKind`] is one row
//! ([`rule`]); the request loop, the breaker ([`BreakerEffect`]) and health
//! ([`HealthEffect`]) only apply what the row says, and adding an error kind is adding a
//! row. The README's "Routing rules" table is generated from these rows
//! ([`markdown_table`]) and a test keeps the two equal.
//!
//! Two rows depend on settings ([`PolicySettings`]): content-policy refusals return unless
//! [`RouterBuilder::failover_on_content_policy`](crate::RouterBuilder::failover_on_content_policy)
//! is set, and a timeout after the request was sent fails over (default) or returns
//! ([`TimeoutPolicy`]). A timeout after sending is never retried on the same provider: the
//! provider may have generated and billed the image, so the attempt is marked *possibly
//! billed* and its budget reservation is held until the budget's period ends. A broken 200
//! (`Decode`) is treated the same way, except that it always fails over: the provider
//! answered, so it may have generated and billed the image.

use std::fmt;

use serde::Serialize;

use crate::breaker::{BreakerEffect, DenyReason};
use crate::error::{AccessDenial, ErrorKind, NotFoundKind, Outcome, RateLimitScope};
use crate::health::HealthEffect;

/// What the request does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Retry the same provider once after a jittered backoff — only while the attempts and
    /// the deadline left still give every untried candidate its attempt — then fail over.
    Retry,
    /// Try the next provider now.
    Failover,
    /// Try the next provider now; the provider is full, so it is waited for (its
    /// `retry-after`) only when no other provider can take the request and the deadline allows.
    FailoverRateLimited,
    /// Stop and return the error.
    Return,
}

/// What the circuit breaker learns from a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerRule {
    /// Record a success, failure or neutral outcome.
    Record(BreakerEffect),
    /// Open for the router's cool-down with the reason: the provider is unavailable to every
    /// request (an account or configuration problem).
    Deny,
}

/// What a timeout after the request was sent does (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeoutPolicy {
    /// Fail over to the next provider (the default); the attempt is marked possibly billed.
    #[default]
    Failover,
    /// Return the timeout: never risk paying twice for one image.
    Fail,
}

/// The settings the table depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// Content-policy refusals fail over instead of returning.
    pub content_policy_failover: bool,
    /// What a timeout after sending does.
    pub timeout_after_send: TimeoutPolicy,
}

/// One row of the table: everything a failed attempt of one kind means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Rule {
    /// What the request does next.
    pub decision: Decision,
    /// What the circuit breaker learns.
    pub breaker: BreakerRule,
    /// How health's availability counts it (`None`: not counted).
    pub health: Option<bool>,
    /// The rate-limit room the request took is given back: only when the provider did not
    /// count the request (never sent, or refused for its limits or the account). A request
    /// the provider received and answered or cut off counts against its request limit.
    pub refund_rate_limit: bool,
    /// The provider is cooled down for this model only.
    pub cool_model: bool,
    /// The budget reservation is kept (held until the budget's period ends) instead of
    /// released: the provider may have billed the request.
    pub keep_budget: bool,
    /// The answer's `x-ratelimit-*` headers reach the limiter. Not a denial's: the tier
    /// denial's "limit 0" is no rate signal.
    pub read_headers: bool,
}

impl Rule {
    /// Whether the provider may have generated and billed the request.
    pub fn possibly_billed(&self) -> bool {
        self.keep_budget
    }
}

/// The row for `kind`.
pub fn rule(kind: &ErrorKind, settings: PolicySettings) -> Rule {
    use BreakerEffect::{Failure, Neutral};
    let row = |decision, breaker, health, refund_rate_limit, cool_model, keep_budget| Rule {
        decision,
        breaker,
        health,
        refund_rate_limit,
        cool_model,
        keep_budget,
        read_headers: !matches!(kind, ErrorKind::AccessDenied { .. }),
    };
    let record = BreakerRule::Record;
    match kind {
        ErrorKind::RateLimited { .. } => row(
            Decision::FailoverRateLimited,
            record(Neutral),
            Some(false),
            true,
            false,
            false,
        ),
        // An account or configuration problem: the provider is unavailable to every request.
        ErrorKind::AccessDenied { .. }
        | ErrorKind::Authentication
        | ErrorKind::NotFound {
            what: NotFoundKind::Endpoint,
        } => row(
            Decision::Failover,
            BreakerRule::Deny,
            None,
            true,
            false,
            false,
        ),
        ErrorKind::NotFound {
            what: NotFoundKind::Model | NotFoundKind::Deployment,
        } => row(Decision::Failover, record(Neutral), None, true, true, false),
        ErrorKind::NotFound {
            what: NotFoundKind::UnsupportedParameter,
        } => row(
            Decision::Failover,
            record(Neutral),
            None,
            true,
            false,
            false,
        ),
        // A 5xx used the provider's capacity (the room stays used) and produced nothing.
        ErrorKind::Server => row(
            Decision::Retry,
            record(Failure),
            Some(false),
            false,
            false,
            false,
        ),
        // A broken 200 (unreadable, empty, over its size limit, no image): the provider
        // answered, so it may have generated and billed the image. Like a timeout after
        // sending it is never sent to the same provider again: the request fails over, the
        // attempt is possibly billed and its budget reservation is held.
        ErrorKind::Decode => row(
            Decision::Failover,
            record(Failure),
            Some(false),
            false,
            false,
            true,
        ),
        // A connection that failed may have carried the request (a reset after sending looks
        // the same as a refused connection here), and a request the provider received counts
        // against its limits: the room stays used. Keeping it for a refused connection costs
        // one slot of a provider that is failing anyway; refunding a reset one lets the router
        // send more than the provider allows (the queue crash test, while resets and refusals
        // were refunded, sent 102.7 % of the account's RPM in a minute).
        ErrorKind::Connect => row(
            Decision::Retry,
            record(Failure),
            Some(false),
            false,
            false,
            false,
        ),
        // Timed out while connecting: certainly never sent, nothing was counted.
        ErrorKind::Timeout { sent: false } => row(
            Decision::Retry,
            record(Failure),
            Some(false),
            true,
            false,
            false,
        ),
        ErrorKind::Timeout { sent: true } => row(
            match settings.timeout_after_send {
                TimeoutPolicy::Failover => Decision::Failover,
                TimeoutPolicy::Fail => Decision::Return,
            },
            record(Failure),
            Some(false),
            false,
            false,
            true,
        ),
        // A refused request was received and answered by the provider, so it counts against
        // the provider's request limit like any other: the room stays used.
        ErrorKind::InvalidRequest => {
            row(Decision::Return, record(Neutral), None, false, false, false)
        }
        ErrorKind::ContentPolicy { .. } => row(
            if settings.content_policy_failover {
                Decision::Failover
            } else {
                Decision::Return
            },
            record(Neutral),
            None,
            false,
            false,
            false,
        ),
    }
}

/// The reason a [`BreakerRule::Deny`] row opens the breaker with (`None` for other kinds).
pub fn deny_reason(kind: &ErrorKind) -> Option<DenyReason> {
    match kind {
        ErrorKind::AccessDenied { reason } => Some(DenyReason::AccessDenied(*reason)),
        ErrorKind::Authentication => Some(DenyReason::Authentication),
        ErrorKind::NotFound { what } => Some(DenyReason::NotFound(*what)),
        _ => None,
    }
}

/// The [`Outcome`] a [`DenyReason`] stands for (for skips and status).
pub fn deny_outcome(reason: DenyReason) -> Outcome {
    match reason {
        DenyReason::AccessDenied(_) => Outcome::AccessDenied,
        DenyReason::Authentication => Outcome::Authentication,
        DenyReason::NotFound(_) => Outcome::NotFound,
    }
}

/// How a call that ended with `outcome` (only the class is known, as for
/// [`BreakerPass::record`](crate::breaker::BreakerPass::record)) counts for the breaker: a
/// success, a fault, or neutral. Account problems recorded this way (without the reason the
/// router has) count as plain failures.
impl From<Outcome> for BreakerEffect {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => BreakerEffect::Success,
            Outcome::Server
            | Outcome::Timeout
            | Outcome::Connect
            | Outcome::Decode
            | Outcome::AccessDenied
            | Outcome::Authentication
            | Outcome::NotFound => BreakerEffect::Failure,
            Outcome::RateLimited | Outcome::InvalidRequest | Outcome::ContentPolicy => {
                BreakerEffect::Neutral
            }
        }
    }
}

/// How a call that ended with `outcome` counts for health: the `health` column of the table
/// (every kind of one outcome class counts the same there), and a latency observation for a
/// success or a timeout.
impl From<Outcome> for HealthEffect {
    fn from(outcome: Outcome) -> Self {
        let availability = match outcome {
            Outcome::Success => Some(true),
            _ => rule(&representative(outcome), PolicySettings::default()).health,
        };
        HealthEffect {
            availability,
            latency: matches!(outcome, Outcome::Success | Outcome::Timeout),
        }
    }
}

/// One error kind of each outcome class (their health rows agree; checked by a test).
fn representative(outcome: Outcome) -> ErrorKind {
    match outcome {
        Outcome::Success | Outcome::Server => ErrorKind::Server,
        Outcome::RateLimited => ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        },
        Outcome::AccessDenied => ErrorKind::AccessDenied {
            reason: AccessDenial::Forbidden,
        },
        Outcome::NotFound => ErrorKind::NotFound {
            what: NotFoundKind::Model,
        },
        Outcome::Authentication => ErrorKind::Authentication,
        Outcome::ContentPolicy => ErrorKind::ContentPolicy { reason: None },
        Outcome::InvalidRequest => ErrorKind::InvalidRequest,
        Outcome::Timeout => ErrorKind::Timeout { sent: true },
        Outcome::Connect => ErrorKind::Connect,
        Outcome::Decode => ErrorKind::Decode,
    }
}

/// The error classes of the README's table, each with one error kind that stands for it.
pub fn classes() -> Vec<(&'static str, ErrorKind)> {
    let kinds = [
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        },
        ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess,
        },
        ErrorKind::Authentication,
        ErrorKind::NotFound {
            what: NotFoundKind::Endpoint,
        },
        ErrorKind::NotFound {
            what: NotFoundKind::Model,
        },
        ErrorKind::NotFound {
            what: NotFoundKind::UnsupportedParameter,
        },
        ErrorKind::Server,
        ErrorKind::Decode,
        ErrorKind::Connect,
        ErrorKind::Timeout { sent: false },
        ErrorKind::Timeout { sent: true },
        ErrorKind::InvalidRequest,
        ErrorKind::ContentPolicy { reason: None },
    ];
    kinds.into_iter().map(|k| (class_label(&k), k)).collect()
}

/// The README class that describes `kind` (an exhaustive match: a new error kind does not
/// compile until it is placed in a class, and a test checks the class's row is its row).
fn class_label(kind: &ErrorKind) -> &'static str {
    let labels = |i: usize| CLASS_LABELS[i];
    match kind {
        ErrorKind::RateLimited { .. } => labels(0),
        ErrorKind::AccessDenied { .. } => labels(1),
        ErrorKind::Authentication => labels(2),
        ErrorKind::NotFound { what } => match what {
            NotFoundKind::Endpoint => labels(3),
            NotFoundKind::Model | NotFoundKind::Deployment => labels(4),
            NotFoundKind::UnsupportedParameter => labels(5),
        },
        ErrorKind::Server => labels(6),
        ErrorKind::Decode => labels(7),
        ErrorKind::Connect => labels(8),
        ErrorKind::Timeout { sent: false } => labels(9),
        ErrorKind::Timeout { sent: true } => labels(10),
        ErrorKind::InvalidRequest => labels(11),
        ErrorKind::ContentPolicy { .. } => labels(12),
    }
}

const CLASS_LABELS: [&str; 13] = [
    "rate limited (429 `rate_limit_exceeded` on requests, tokens or images per minute, Azure 429 / `RateLimitReached`)",
    "access denied (`insufficient_quota`, `billing_hard_limit_reached`, organization not verified, region not supported, the 429 that says *try again after 0.0 seconds* = no tier access)",
    "authentication (401)",
    "endpoint not found (another 404: wrong base URL or path)",
    "model not found (`model_not_found`, `DeploymentNotFound`)",
    "unsupported parameter",
    "server (5xx)",
    "decode (a 200 with a broken or empty body)",
    "connect / reset (refused, reset or closed: it may have carried the request)",
    "timeout before the request was sent (while connecting)",
    "timeout after the request was sent",
    "invalid request (other 4xx)",
    "content policy (`moderation_blocked`, `content_policy_violation`, Azure content filter)",
];

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Retry => "one retry on the same provider after a jittered backoff (only if every untried provider still gets its attempt), then fail over",
            Decision::Failover => "fail over",
            Decision::FailoverRateLimited => "fail over at once; wait out `retry-after` only when no other provider can take the request and the deadline allows",
            Decision::Return => "return the error",
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The routing table in Markdown, one row per error class, with the default settings (the
/// README's "Routing rules" table is this text).
pub fn markdown_table() -> String {
    let settings = PolicySettings::default();
    let mut out = String::from(
        "| error class | what the router does | breaker | health counts it | rate-limit room refunded | model cooled down | budget reservation kept |\n|---|---|---|---|---|---|---|\n",
    );
    for (label, kind) in classes() {
        let r = rule(&kind, settings);
        let breaker = match r.breaker {
            BreakerRule::Deny => {
                "opens for the cool-down (the provider is skipped by every request)"
            }
            BreakerRule::Record(BreakerEffect::Failure) => "failure",
            BreakerRule::Record(BreakerEffect::Success) => "success",
            BreakerRule::Record(BreakerEffect::Neutral) => "neutral",
        };
        let health = match r.health {
            Some(true) => "as a success",
            Some(false) => "as a failure",
            None => "no",
        };
        let keep = if r.keep_budget {
            "yes, until the period ends (possibly billed)"
        } else {
            "no"
        };
        out.push_str(&format!(
            "| {label} | {} | {breaker} | {health} | {} | {} | {keep} |\n",
            r.decision,
            yes_no(r.refund_rate_limit),
            yes_no(r.cool_model),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: ErrorKind) -> Decision {
        rule(&kind, PolicySettings::default()).decision
    }

    #[test]
    fn decisions() {
        let rl = ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        };
        assert_eq!(d(rl), Decision::FailoverRateLimited);
        // An images-per-minute 429 is a rate limit like the others: fail over, and the
        // provider is held back for the wait.
        let ipm = ErrorKind::RateLimited {
            scope: RateLimitScope::Images,
        };
        assert_eq!(d(ipm.clone()), Decision::FailoverRateLimited);
        assert_eq!(
            rule(&ipm, PolicySettings::default()),
            rule(
                &ErrorKind::RateLimited {
                    scope: RateLimitScope::Requests
                },
                PolicySettings::default()
            )
        );
        let tier = ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess,
        };
        assert_eq!(d(tier.clone()), Decision::Failover);
        assert_eq!(
            rule(&tier, PolicySettings::default()).breaker,
            BreakerRule::Deny
        );
        assert_eq!(d(ErrorKind::Authentication), Decision::Failover);
        assert_eq!(
            rule(&ErrorKind::Authentication, PolicySettings::default()).breaker,
            BreakerRule::Deny
        );
        let up = ErrorKind::NotFound {
            what: NotFoundKind::UnsupportedParameter,
        };
        assert_eq!(d(up.clone()), Decision::Failover);
        let up_rule = rule(&up, PolicySettings::default());
        assert!(!up_rule.cool_model);
        assert_eq!(up_rule.breaker, BreakerRule::Record(BreakerEffect::Neutral));
        let nf = ErrorKind::NotFound {
            what: NotFoundKind::Model,
        };
        assert_eq!(d(nf.clone()), Decision::Failover);
        assert!(rule(&nf, PolicySettings::default()).cool_model);
        for k in [
            ErrorKind::Server,
            ErrorKind::Timeout { sent: false },
            ErrorKind::Connect,
        ] {
            assert_eq!(d(k), Decision::Retry);
        }
        // A broken 200 may have been billed: never re-sent to the same provider.
        assert_eq!(d(ErrorKind::Decode), Decision::Failover);
        assert!(rule(&ErrorKind::Decode, PolicySettings::default()).possibly_billed());
        assert_eq!(d(ErrorKind::Timeout { sent: true }), Decision::Failover);
        let fail = PolicySettings {
            timeout_after_send: TimeoutPolicy::Fail,
            ..PolicySettings::default()
        };
        assert_eq!(
            rule(&ErrorKind::Timeout { sent: true }, fail).decision,
            Decision::Return
        );
        assert!(rule(&ErrorKind::Timeout { sent: true }, fail).possibly_billed());
        let invalid = PolicySettings {
            content_policy_failover: true,
            ..PolicySettings::default()
        };
        assert_eq!(
            rule(&ErrorKind::InvalidRequest, invalid).decision,
            Decision::Return
        );
        let cp = ErrorKind::ContentPolicy { reason: None };
        assert_eq!(d(cp.clone()), Decision::Return);
        let on = PolicySettings {
            content_policy_failover: true,
            ..PolicySettings::default()
        };
        assert_eq!(rule(&cp, on).decision, Decision::Failover);
    }

    /// Every error kind is described by its README class: the class's row is its row, in
    /// every setting.
    #[test]
    fn every_kind_has_its_row_in_the_readme_table() {
        use crate::error::RateLimitScope as Scope;
        let mut kinds = vec![
            ErrorKind::RateLimited {
                scope: Scope::Requests,
            },
            ErrorKind::RateLimited {
                scope: Scope::Tokens,
            },
            ErrorKind::RateLimited {
                scope: Scope::Images,
            },
            ErrorKind::Authentication,
            ErrorKind::Server,
            ErrorKind::Decode,
            ErrorKind::Connect,
            ErrorKind::Timeout { sent: false },
            ErrorKind::Timeout { sent: true },
            ErrorKind::InvalidRequest,
            ErrorKind::ContentPolicy { reason: None },
            ErrorKind::ContentPolicy {
                reason: Some("safety".into()),
            },
        ];
        for what in [
            NotFoundKind::Model,
            NotFoundKind::Deployment,
            NotFoundKind::UnsupportedParameter,
            NotFoundKind::Endpoint,
        ] {
            kinds.push(ErrorKind::NotFound { what });
        }
        for reason in [
            AccessDenial::InsufficientQuota,
            AccessDenial::BillingHardLimit,
            AccessDenial::OrganizationNotVerified,
            AccessDenial::RegionNotSupported,
            AccessDenial::TierAccess,
            AccessDenial::ResourceBlocked,
            AccessDenial::Forbidden,
        ] {
            kinds.push(ErrorKind::AccessDenied { reason });
        }
        let classes = classes();
        assert_eq!(classes.len(), CLASS_LABELS.len());
        for kind in kinds {
            let label = class_label(&kind);
            let (_, class_kind) = classes
                .iter()
                .find(|(l, _)| *l == label)
                .expect("every label is a class");
            for content_policy_failover in [false, true] {
                for timeout_after_send in [TimeoutPolicy::Failover, TimeoutPolicy::Fail] {
                    let s = PolicySettings {
                        content_policy_failover,
                        timeout_after_send,
                    };
                    assert_eq!(rule(&kind, s), rule(class_kind, s), "{kind:?}");
                }
            }
        }
    }

    /// Every kind of one outcome class has the same health row, so the outcome-level
    /// conversion (which picks one representative) agrees with the table.
    #[test]
    fn health_rows_agree_within_an_outcome_class() {
        let kinds = [
            ErrorKind::NotFound {
                what: NotFoundKind::Endpoint,
            },
            ErrorKind::NotFound {
                what: NotFoundKind::Deployment,
            },
            ErrorKind::NotFound {
                what: NotFoundKind::UnsupportedParameter,
            },
            ErrorKind::AccessDenied {
                reason: AccessDenial::InsufficientQuota,
            },
            ErrorKind::Timeout { sent: false },
            ErrorKind::RateLimited {
                scope: RateLimitScope::Tokens,
            },
        ];
        for k in kinds {
            let s = PolicySettings::default();
            assert_eq!(
                rule(&k, s).health,
                rule(&representative(k.outcome()), s).health,
                "{k:?}"
            );
        }
    }
}
