//! Plain-words explanations of every failure: what happened ([`Explanation::cause`]) and what to
//! do about it ([`Explanation::action`]).
//!
//! Why a separate layer: the error types carry *facts* (kind, status, the provider's message,
//! retry-after) so programs can match on them; people need the *meaning*. A 429 that says
//! "try again after 0.0 seconds" is not a rate limit but a tier without access; a 403 without a
//! code is an organization that must be verified; a 401 from Azure often means the key belongs
//! to another resource. Keeping the interpretation here, next to the catalog's tier table, means
//! the library, `image-router doctor` and `--json` output all say the same thing.
//!
//! Every error type has an `explain()` method: [`ProviderError`], [`Error`], [`ConfigError`],
//! [`ValidationError`], [`Skip`]. Tier advice comes from the catalog (`providers/openai.toml`), so
//! it follows the data when the tier table changes; use
//! [`ProviderError::explain_with`] to explain against your own catalog and configured tier.
//!
//! ```
//! use image_router::{AccessDenial, ErrorKind, ProviderError};
//! let err = ProviderError::new(
//!     "openai",
//!     ErrorKind::AccessDenied { reason: AccessDenial::InsufficientQuota },
//!     "You exceeded your current quota, please check your plan and billing details.",
//! )
//! .with_status(429);
//! let e = err.explain();
//! assert!(e.cause.contains("quota"));
//! assert!(e.action.contains("billing"));
//! ```

use std::fmt;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::error::{
    AccessDenial, Error, ErrorKind, NotFoundKind, Outcome, ProviderError, RateLimitScope,
};
use crate::error::{Skip, SkipReason};
use crate::request::ValidationError;

/// The page where an OpenAI organization is verified.
pub const VERIFY_ORGANIZATION_URL: &str =
    "https://platform.openai.com/settings/organization/general";
/// The page with an OpenAI account's usage tier and limits.
pub const LIMITS_URL: &str = "https://platform.openai.com/settings/organization/limits";
/// The page with an OpenAI account's billing settings.
pub const BILLING_URL: &str = "https://platform.openai.com/settings/organization/billing/overview";
/// The page where OpenAI API keys are managed.
pub const API_KEYS_URL: &str = "https://platform.openai.com/api-keys";

/// A failure in plain words: the cause and the action that fixes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// What happened and why, in plain words.
    pub cause: String,
    /// What to do about it.
    pub action: String,
}

impl Explanation {
    /// An explanation from a cause and an action.
    pub fn new(cause: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            cause: cause.into(),
            action: action.into(),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\nWhat to do: {}", self.cause, self.action)
    }
}

/// The tier advice for a tier-access denial: what the next tier needs.
pub(crate) fn tier_advice(catalog: &Catalog, tier: Option<&str>) -> String {
    let tiers = catalog.tiers();
    let current = tier.and_then(|t| catalog.tier(t));
    let next = match current {
        Some(cur) => tiers
            .iter()
            .find(|t| t.has_access() && t.rpm > cur.rpm && t.name != cur.name),
        None => tiers.iter().find(|t| t.has_access()),
    };
    let mut s = String::new();
    if let Some(cur) = current {
        s.push_str(&format!(
            "The configuration says this account is on {} ({} RPM, {} TPM). ",
            cur.name, cur.rpm, cur.tpm
        ));
    }
    match next {
        Some(n) => s.push_str(&format!(
            "To reach {} the account needs {}; ",
            n.name, n.requirement
        )),
        None => s.push_str("Check the account's tier and its requirements; "),
    }
    s.push_str(&format!(
        "check the current tier at {LIMITS_URL}. Image models may also need organization \
         verification: verify at {VERIFY_ORGANIZATION_URL} (access can take up to 15 minutes to \
         propagate after verifying). Retrying does not help until then; the router fails over to \
         other providers meanwhile."
    ));
    s
}

fn secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn provider_quote(e: &ProviderError) -> String {
    let mut s = format!("{} answered", e.provider);
    if let Some(st) = e.status {
        s.push_str(&format!(" HTTP {st}"));
    }
    if let Some(c) = &e.code {
        s.push_str(&format!(" ({c})"));
    }
    if !e.message.is_empty() {
        s.push_str(&format!(": \"{}\"", e.message));
    }
    if let Some(id) = &e.request_id {
        s.push_str(&format!(" [request id {id}]"));
    }
    s
}

impl ProviderError {
    /// The cause and the action in plain words, using the embedded catalog's tier table.
    pub fn explain(&self) -> Explanation {
        self.explain_with(Catalog::builtin(), None)
    }

    /// Like [`explain`](Self::explain), with your catalog and the provider's configured tier
    /// (so a tier-access denial names the next tier's requirements).
    ///
    /// ```
    /// use image_router::{catalog::Catalog, AccessDenial, ErrorKind, ProviderError};
    /// let err = ProviderError::new(
    ///     "openai",
    ///     ErrorKind::AccessDenied { reason: AccessDenial::TierAccess },
    ///     "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
    /// );
    /// let e = err.explain_with(Catalog::builtin(), Some("tier-1"));
    /// assert!(e.action.contains("tier-2"));
    /// ```
    pub fn explain_with(&self, catalog: &Catalog, tier: Option<&str>) -> Explanation {
        let quote = provider_quote(self);
        let name = &self.provider;
        match &self.kind {
            ErrorKind::RateLimited { scope } => {
                let what = match scope {
                    RateLimitScope::Requests => "requests per minute (RPM)",
                    RateLimitScope::Tokens => "tokens per minute (TPM)",
                    RateLimitScope::Unknown => "requests or tokens per minute",
                };
                let when = match self.retry_after {
                    Some(d) => format!("It asked to retry after {}.", secs(d)),
                    None => "It did not say when to retry.".to_string(),
                };
                Explanation::new(
                    format!("{name} is rate limited on {what}. {when} {quote}"),
                    format!(
                        "Wait and retry (the router waits out `retry-after` or fails over to \
                         another provider). If it happens often, lower `rpm` / `tpm` for {name} in \
                         the config so the router paces requests, add another provider, or raise \
                         the account's limits (a higher tier: {LIMITS_URL})."
                    ),
                )
            }
            ErrorKind::AccessDenied { reason } => {
                self.explain_denial(*reason, &quote, catalog, tier)
            }
            ErrorKind::NotFound { what } => match what {
                NotFoundKind::Model => Explanation::new(
                    format!(
                        "{name} does not serve this model: it does not exist, was retired, or this \
                         account cannot see it. {quote}"
                    ),
                    format!(
                        "Use a model the account has (list them with `GET /v1/models`), set \
                         `models` / `rename` for {name} in the config, or ask the account owner \
                         for access. Image models may need organization verification \
                         ({VERIFY_ORGANIZATION_URL})."
                    ),
                ),
                NotFoundKind::Deployment => Explanation::new(
                    format!(
                        "The Azure deployment named for {name} does not exist on this resource \
                         (or is still being created). {quote}"
                    ),
                    "Check the deployment name in the Azure AI Foundry portal (Deployments) and \
                     set it as `deployment` (or in `deployments`) for this provider; the \
                     deployment name is not the model name unless you named it so. A new \
                     deployment can take a few minutes to become available."
                        .to_string(),
                ),
                NotFoundKind::UnsupportedParameter => Explanation::new(
                    format!("{name} does not accept a parameter or value of this request. {quote}"),
                    "Remove or change the parameter the message names (`param`), or route the \
                     request to a provider that supports it."
                        .to_string(),
                ),
                NotFoundKind::Endpoint if self.status.is_some_and(|s| (300..400).contains(&s)) => {
                    Explanation::new(
                        format!(
                            "{name} redirected the call to another host, which is not followed \
                             (it would carry the key and the prompt there). {quote}"
                        ),
                        "Point `base_url` (or the Azure `endpoint`) at the host that actually \
                         serves the API; if the redirect is unexpected, the endpoint or a proxy \
                         in front of it may be compromised."
                            .to_string(),
                    )
                }
                NotFoundKind::Endpoint => Explanation::new(
                    format!("{name} has no such endpoint (HTTP 404 on the path). {quote}"),
                    "Check `base_url` (it usually ends in `/v1`) or the Azure `endpoint` and \
                     `api_version` in the config."
                        .to_string(),
                ),
            },
            ErrorKind::Authentication => Explanation::new(
                format!(
                    "{name} rejected the API key (HTTP 401): it is wrong, revoked, or belongs to \
                     another account or endpoint. {quote}"
                ),
                format!(
                    "Set the right key in the environment variable the config names \
                     (`api_key_env`). OpenAI keys are managed at {API_KEYS_URL}; an Azure key \
                     belongs to one resource, so its `endpoint` must be that resource's. A key \
                     with restricted permissions needs access to the images endpoint."
                ),
            ),
            ErrorKind::ContentPolicy { reason } => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(" Reason given: {r}."))
                    .unwrap_or_default();
                Explanation::new(
                    format!("{name}'s safety system refused the request.{why} {quote}"),
                    "Rephrase the prompt (or change the input image) so it stays within the \
                     provider's usage policy. Repeated refusals count against the account. The \
                     router does not try other providers unless `failover_on_content_policy` \
                     is on."
                        .to_string(),
                )
            }
            ErrorKind::InvalidRequest => Explanation::new(
                format!("{name} says the request itself is wrong. {quote}"),
                match &self.param {
                    Some(p) => format!("Fix the parameter `{p}` as the message says."),
                    None => "Fix the request as the message says; retrying it unchanged fails \
                             the same way."
                        .to_string(),
                },
            ),
            ErrorKind::Server => Explanation::new(
                format!("{name} had an internal error or is overloaded. {quote}"),
                "Nothing is wrong on your side: retry later (the router retries once and fails \
                 over). If it persists, check the provider's status page and quote the request \
                 id to support."
                    .to_string(),
            ),
            ErrorKind::Timeout { sent } => Explanation::new(
                if *sent {
                    format!(
                        "{name} did not answer in time; the request had been sent, so it may \
                         still have generated (and billed) the image. {}",
                        self.message
                    )
                } else {
                    format!(
                        "{name} could not be reached in time (no connection); nothing was sent. {}",
                        self.message
                    )
                },
                "High-quality images can take a minute or more: raise `timeout` (per attempt) \
                 and `deadline` in `[router]`, lower the quality or size, or check the network \
                 path to the provider."
                    .to_string(),
            ),
            ErrorKind::Connect => Explanation::new(
                format!(
                    "Could not connect to {name}, or the connection broke mid-answer: {}",
                    self.message
                ),
                "Check the URL in the config (`base_url` / `endpoint`), DNS, proxies and \
                 firewalls, and that the service is up."
                    .to_string(),
            ),
            ErrorKind::Decode if self.message.contains("exceeds the limit of") => Explanation::new(
                format!(
                    "{name} answered with more bytes than the request can need: {}",
                    self.message
                ),
                "A broken or hostile endpoint; if the provider really sends images this \
                     large, raise `max_response_bytes` for it."
                    .to_string(),
            ),
            ErrorKind::Decode if self.message.contains("not allowed") => Explanation::new(
                format!(
                    "{name} pointed an image download at a host the router does not fetch from \
                     (private, loopback or link-local address, or not http/https): {}",
                    self.message
                ),
                "If that host is yours and trusted, list it with `allow_download_hosts`; \
                 otherwise the endpoint may be compromised."
                    .to_string(),
            ),
            ErrorKind::Decode => Explanation::new(
                format!(
                    "{name} answered with success but the body is not a usable image response: {}",
                    self.message
                ),
                "Usually transient (retry). If it persists the endpoint may not be \
                 OpenAI-compatible: for a proxy that serves images through chat completions, \
                 set `mode = \"chat\"`."
                    .to_string(),
            ),
        }
    }

    fn explain_denial(
        &self,
        reason: AccessDenial,
        quote: &str,
        catalog: &Catalog,
        tier: Option<&str>,
    ) -> Explanation {
        let name = &self.provider;
        match reason {
            AccessDenial::TierAccess => Explanation::new(
                format!(
                    "{name}: the account's usage tier has no access to this model yet. This 429 \
                     says to retry after 0.0 seconds: it is not a real rate limit but a tier \
                     without access (the account has not met the tier's spend and account-age \
                     requirements, or the organization needs verification). {quote}"
                ),
                tier_advice(catalog, tier),
            ),
            AccessDenial::InsufficientQuota => Explanation::new(
                format!(
                    "{name}: the account has no credit left or reached its plan's quota \
                     (insufficient_quota). This is not a rate limit: it stays until billing \
                     changes. {quote}"
                ),
                format!(
                    "Add credit or a payment method at {BILLING_URL}, or raise the usage limit; \
                     it can take a few minutes to apply. Retrying does not help."
                ),
            ),
            AccessDenial::BillingHardLimit => Explanation::new(
                format!(
                    "{name}: the account reached its monthly billing hard limit \
                     (billing_hard_limit_reached). {quote}"
                ),
                format!(
                    "Raise the hard limit (or wait for the next billing period) at {BILLING_URL}. \
                     Retrying does not help."
                ),
            ),
            AccessDenial::OrganizationNotVerified => Explanation::new(
                format!("{name}: the organization must be verified to use this model. {quote}"),
                format!(
                    "Go to {VERIFY_ORGANIZATION_URL} and click Verify Organization. If you just \
                     verified, access can take up to 15 minutes to propagate; run `image-router \
                     doctor` again afterwards."
                ),
            ),
            AccessDenial::RegionNotSupported => Explanation::new(
                format!(
                    "{name}: the provider does not serve the country, region or territory the \
                     request comes from (or, on Azure, the model is not available in the \
                     resource's region). {quote}"
                ),
                "Use a provider or Azure resource in a supported region (see the provider's \
                 supported-countries list, or Azure's model availability by region)."
                    .to_string(),
            ),
            AccessDenial::ResourceBlocked => Explanation::new(
                format!("{name}: the Azure resource is temporarily blocked. {quote}"),
                "Check the resource in the Azure portal (subscription state, quota, abuse \
                 notices) and contact Azure support if it stays blocked."
                    .to_string(),
            ),
            // `AccessDenial` is non-exhaustive only outside this crate; `Forbidden` and any
            // later reason fall back to the generic 403 text.
            _ => Explanation::new(
                format!("{name} refused access (HTTP 403). {quote}"),
                "Check that the key's project or organization may use this model and endpoint \
                 (key permissions, project model allow-lists, organization verification at \
                 https://platform.openai.com/settings/organization/general)."
                    .to_string(),
            ),
        }
    }
}

impl ConfigError {
    /// The cause and the action in plain words.
    ///
    /// ```
    /// use image_router::ConfigError;
    /// let e = ConfigError::new("provider[0].api_key_env", "environment variable OPENAI_API_KEY is not set")
    ///     .at_line(7)
    ///     .explain();
    /// assert!(e.action.contains("line 7"));
    /// ```
    pub fn explain(&self) -> Explanation {
        let at = self
            .line
            .map(|l| format!(" at line {l}"))
            .unwrap_or_default();
        let cause = format!(
            "The configuration is wrong: `{}`{at}: {}",
            self.field, self.message
        );
        let action = if self.field.ends_with("api_key_env")
            || self.message.contains("environment variable")
        {
            format!(
                "Export the environment variable the config names (e.g. `export NAME=...` in the \
                 shell that runs the program), or fix `{}`{at}. Keys are never written in the \
                 config file, only the variable's name.",
                self.field
            )
        } else {
            format!(
                "Fix `{}`{at} as the message says, then run `image-router doctor --config FILE` \
                 to check the providers.",
                self.field
            )
        };
        Explanation::new(cause, action)
    }
}

impl ValidationError {
    /// The cause and the action in plain words.
    pub fn explain(&self) -> Explanation {
        Explanation::new(
            format!(
                "The request is invalid before any provider saw it: `{}`: {}",
                self.field, self.message
            ),
            format!(
                "Change `{}` to a value the model accepts (the catalog lists each model's sizes, \
                 qualities, formats and limits); nothing was sent or billed.",
                self.field
            ),
        )
    }
}

impl Skip {
    /// Why this provider was not called, and what to do about it.
    pub fn explain(&self) -> Explanation {
        let name = &self.provider;
        match &self.reason {
            SkipReason::Unsupported { detail } => Explanation::new(
                format!("{name} was not called: it cannot serve this request ({detail})."),
                "Change the request (model, size, format, operation) or add a provider that \
                 supports it; `models` / `rename` / `deployments` in the config say which models \
                 a provider serves."
                    .to_string(),
            ),
            SkipReason::CoolingDown {
                cause,
                message,
                remaining,
            } => Explanation::new(
                format!(
                    "{name} was not called: an earlier request ended in {cause} (\"{message}\") \
                     and it is left alone for {} more.",
                    secs(*remaining)
                ),
                match cause {
                    Outcome::Authentication => "Fix the provider's key; the cool-down then ends \
                                                on its own (or restart the program)."
                        .to_string(),
                    _ => "Fix the cause (run `image-router doctor`), or wait for the cool-down \
                          (`cooldown` in `[router]`)."
                        .to_string(),
                },
            ),
            SkipReason::NoHeadroom { retry_in, message } => Explanation::new(
                format!(
                    "{name} was not called: its rate limit has no room now ({message}){}.",
                    retry_in
                        .map(|d| format!("; room again in {}", secs(d)))
                        .unwrap_or_default()
                ),
                "Wait, send fewer requests at once, raise `deadline` so requests may wait, or add \
                 providers."
                    .to_string(),
            ),
            SkipReason::Budget { message } => Explanation::new(
                format!("{name} was not called: its spend budget cannot cover the request ({message})."),
                "Raise the provider's budget in the config, wait for it to reset, or route to \
                 another provider."
                    .to_string(),
            ),
            SkipReason::Tier { message } => Explanation::new(
                format!("{name} was not called: its usage tier gives no access to this model ({message})."),
                tier_advice(Catalog::builtin(), None),
            ),
            SkipReason::Reserved { message } => Explanation::new(
                format!("{name} was not called: it is reserved for other request classes ({message})."),
                "Send the request with a class the provider admits (`reserved_for` in its config), \
                 or add a provider open to this class."
                    .to_string(),
            ),
            SkipReason::CircuitOpen { message } => Explanation::new(
                format!("{name} was not called: it failed repeatedly and its circuit breaker is open ({message})."),
                "Wait for the breaker to probe it again; check the provider with `image-router \
                 doctor`."
                    .to_string(),
            ),
        }
    }
}

impl Error {
    /// The cause and the action in plain words: for a failed routed request, the most telling
    /// provider error's explanation (or why no provider was called).
    ///
    /// ```
    /// use image_router::{Error, ValidationError};
    /// let e = Error::from(ValidationError::new("n", "must be between 1 and 10")).explain();
    /// assert!(e.cause.contains("`n`"));
    /// ```
    pub fn explain(&self) -> Explanation {
        match self {
            Error::Config(c) => c.explain(),
            Error::Invalid(v) => v.explain(),
            Error::Rejected { error, .. } => error.explain(),
            Error::Exhausted {
                attempts,
                skipped,
                deadline_exceeded,
            } => {
                if let Some(cause) = self.cause() {
                    let e = cause.explain();
                    let prefix = if *deadline_exceeded {
                        format!(
                            "The request's deadline passed after {} attempt(s). Most telling failure: ",
                            attempts.len()
                        )
                    } else {
                        format!(
                            "All providers failed ({} attempt(s)). Most telling failure: ",
                            attempts.len()
                        )
                    };
                    Explanation::new(format!("{prefix}{}", e.cause), e.action)
                } else if let Some(first) = skipped.first() {
                    let list = skipped
                        .iter()
                        .map(|s| s.explain().cause)
                        .collect::<Vec<_>>()
                        .join(" ");
                    Explanation::new(
                        format!("No provider could serve this request. {list}"),
                        first.explain().action,
                    )
                } else if *deadline_exceeded {
                    Explanation::new(
                        "The request's deadline passed before any provider answered.",
                        "Raise `deadline` and `timeout` in `[router]`.",
                    )
                } else {
                    Explanation::new(
                        "No provider could serve this request.",
                        "Add a provider that serves the requested model.",
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_advice_names_next_tier() {
        let a = tier_advice(Catalog::builtin(), Some("tier-2"));
        assert!(a.contains("tier-3"), "{a}");
        assert!(a.contains("$500"), "{a}");
        let a = tier_advice(Catalog::builtin(), None);
        assert!(a.contains("tier-1"), "{a}");
    }
}
