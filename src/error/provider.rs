//! What went wrong with one provider: a [`ProviderError`], classified into an [`ErrorKind`]
//! the router acts on, with the attempt's [`Outcome`].
//!
//! Display wording is for people and may change; match on the kinds and use the `is_*`
//! predicates instead. No error ever contains an API key: providers build messages from the
//! response body and status only, and keys are [`secrecy::SecretString`]s.

use std::fmt;
use std::time::Duration;

use crate::quota::headers::RateLimitHeaders;

use serde::Serialize;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which limit a 429 refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RateLimitScope {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Images per minute (IPM): OpenAI's per-model limit on image models, where a request
    /// weighs its `n`. Its 429 may still say `type: "requests"`; the message names the
    /// images limit ("… on images per min (IPM): Limit 5, Used 5, Requested 1 …").
    Images,
    /// Not stated.
    Unknown,
}

/// Why access was denied: none of these goes away by retrying soon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessDenial {
    /// `insufficient_quota`: the account has no credit or hit its plan's quota.
    InsufficientQuota,
    /// `billing_hard_limit_reached`: the account's monthly hard limit is reached.
    BillingHardLimit,
    /// The organization must be verified to use this model.
    OrganizationNotVerified,
    /// The country, region or territory is not supported.
    RegionNotSupported,
    /// A 429 that says to retry after 0.0 seconds: the account's tier has no access to this
    /// model yet (spend / account-age requirement not met, or verification pending).
    TierAccess,
    /// The (Azure) resource is temporarily blocked.
    ResourceBlocked,
    /// Another 403.
    Forbidden,
}

/// What was not found or not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotFoundKind {
    /// `model_not_found`: the model does not exist or this account cannot see it.
    Model,
    /// Azure `DeploymentNotFound`.
    Deployment,
    /// A parameter or value this provider does not take.
    UnsupportedParameter,
    /// Another 404 (wrong base URL or path).
    Endpoint,
}

/// The classification of a provider failure; the router's decision follows from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// 429 rate limit: retry later (see [`ProviderError::retry_after`]) or elsewhere now.
    RateLimited {
        /// Which limit.
        scope: RateLimitScope,
    },
    /// Access denied: quota, billing, verification, region or tier. Fail over and remember.
    AccessDenied {
        /// Why.
        reason: AccessDenial,
    },
    /// Model, deployment, endpoint or parameter not found / not taken. Fail over.
    NotFound {
        /// What.
        what: NotFoundKind,
    },
    /// 401: the key is wrong, revoked, or for another endpoint.
    Authentication,
    /// Refused by the provider's safety system.
    ContentPolicy {
        /// The provider's reason (e.g. `safety_violations=[…]`, Azure filter categories).
        reason: Option<String>,
    },
    /// Another 4xx: the request itself is wrong.
    InvalidRequest,
    /// 5xx.
    Server,
    /// No answer in time. `sent` is false when the timeout hit before the request was sent
    /// (connecting), so the provider cannot have done (or billed) any work.
    Timeout {
        /// Whether the request had been sent.
        sent: bool,
    },
    /// Could not connect, or the connection was reset / closed mid-answer.
    Connect,
    /// A success status with a body that is not a valid image response (broken JSON, no images,
    /// undecodable base64, failed image download).
    Decode,
}

/// A tag per [`ErrorKind`] plus success: what an attempt ended as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Images delivered.
    Success,
    /// See [`ErrorKind::RateLimited`].
    RateLimited,
    /// See [`ErrorKind::AccessDenied`].
    AccessDenied,
    /// See [`ErrorKind::NotFound`].
    NotFound,
    /// See [`ErrorKind::Authentication`].
    Authentication,
    /// See [`ErrorKind::ContentPolicy`].
    ContentPolicy,
    /// See [`ErrorKind::InvalidRequest`].
    InvalidRequest,
    /// See [`ErrorKind::Server`].
    Server,
    /// See [`ErrorKind::Timeout`].
    Timeout,
    /// See [`ErrorKind::Connect`].
    Connect,
    /// See [`ErrorKind::Decode`].
    Decode,
}

impl Outcome {
    /// Stable snake_case name (`"rate_limited"`), as used in JSON and metrics labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RateLimited => "rate_limited",
            Outcome::AccessDenied => "access_denied",
            Outcome::NotFound => "not_found",
            Outcome::Authentication => "authentication",
            Outcome::ContentPolicy => "content_policy",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::Server => "server",
            Outcome::Timeout => "timeout",
            Outcome::Connect => "connect",
            Outcome::Decode => "decode",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorKind {
    /// The outcome tag.
    pub fn outcome(&self) -> Outcome {
        match self {
            ErrorKind::RateLimited { .. } => Outcome::RateLimited,
            ErrorKind::AccessDenied { .. } => Outcome::AccessDenied,
            ErrorKind::NotFound { .. } => Outcome::NotFound,
            ErrorKind::Authentication => Outcome::Authentication,
            ErrorKind::ContentPolicy { .. } => Outcome::ContentPolicy,
            ErrorKind::InvalidRequest => Outcome::InvalidRequest,
            ErrorKind::Server => Outcome::Server,
            ErrorKind::Timeout { .. } => Outcome::Timeout,
            ErrorKind::Connect => Outcome::Connect,
            ErrorKind::Decode => Outcome::Decode,
        }
    }

    /// How telling this kind is about why a request failed overall (higher first): a denial
    /// or a wrong key explains more than a transient 503.
    pub fn severity(&self) -> u8 {
        match self {
            ErrorKind::ContentPolicy { .. } => 100,
            ErrorKind::InvalidRequest => 95,
            ErrorKind::AccessDenied { .. } => 90,
            ErrorKind::Authentication => 85,
            ErrorKind::NotFound { .. } => 80,
            ErrorKind::RateLimited { .. } => 60,
            ErrorKind::Decode => 50,
            ErrorKind::Server => 40,
            ErrorKind::Timeout { .. } => 30,
            ErrorKind::Connect => 20,
        }
    }
}

/// One provider's failure, classified.
///
/// Carries the provider's name, the HTTP status, the provider's own message, `code`, `type`
/// and `param`, and the request id (`x-request-id`, or Azure's `apim-request-id`) to quote to
/// support.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct ProviderError {
    /// Provider name.
    pub provider: String,
    /// Classification.
    pub kind: ErrorKind,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The provider's message (or a description of the transport failure).
    pub message: String,
    /// The provider's `error.code`.
    pub code: Option<String>,
    /// The provider's `error.type`.
    pub error_type: Option<String>,
    /// The provider's `error.param`.
    pub param: Option<String>,
    /// `x-request-id` / `apim-request-id`.
    pub request_id: Option<String>,
    /// When the provider said to retry (headers, or "retry after N seconds" in the message).
    pub retry_after: Option<Duration>,
    /// The `x-ratelimit-*` headers of the error answer, when it had any (a 429 says how
    /// full the window is and when it resets; the router feeds them to the provider's
    /// limiter). Boxed: most errors have none, and errors travel in every attempt trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Box<RateLimitHeaders>>,
    #[serde(skip)]
    source: Option<BoxError>,
}

impl Clone for ProviderError {
    fn clone(&self) -> Self {
        Self {
            provider: self.provider.clone(),
            kind: self.kind.clone(),
            status: self.status,
            message: self.message.clone(),
            code: self.code.clone(),
            error_type: self.error_type.clone(),
            param: self.param.clone(),
            request_id: self.request_id.clone(),
            retry_after: self.retry_after,
            rate_limits: self.rate_limits.clone(),
            // The source is not clonable; its text is kept in `message`.
            source: None,
        }
    }
}

impl PartialEq for ProviderError {
    fn eq(&self, other: &Self) -> bool {
        self.provider == other.provider
            && self.kind == other.kind
            && self.status == other.status
            && self.message == other.message
            && self.code == other.code
    }
}

impl ProviderError {
    /// A new error of `kind` from `provider` with `message`.
    pub fn new(provider: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            kind,
            status: None,
            message: message.into(),
            code: None,
            error_type: None,
            param: None,
            request_id: None,
            retry_after: None,
            rate_limits: None,
            source: None,
        }
    }

    /// This error with any URL credentials in its message masked (`https://user:pw@host`
    /// becomes `https://***@host`). The router applies it to every provider error, built-in
    /// or the application's own, before the error is recorded or shown anywhere.
    pub(crate) fn with_masked_urls(mut self) -> Self {
        self.message = crate::redact::text(&self.message);
        self
    }

    /// Sets the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// Sets `code`.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    /// Sets `type`.
    #[must_use]
    pub fn with_type(mut self, t: impl Into<String>) -> Self {
        self.error_type = Some(t.into());
        self
    }
    /// Sets `param`.
    #[must_use]
    pub fn with_param(mut self, p: impl Into<String>) -> Self {
        self.param = Some(p.into());
        self
    }
    /// Sets the request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
    /// Sets the retry-after hint.
    #[must_use]
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }
    /// Sets the answer's rate-limit headers (kept only when at least one was present).
    #[must_use]
    pub fn with_rate_limits(mut self, h: RateLimitHeaders) -> Self {
        self.rate_limits = (!h.is_empty()).then(|| Box::new(h));
        self
    }
    /// Attaches the underlying error (e.g. the reqwest error). Its text must not contain a key.
    #[must_use]
    pub fn with_source(mut self, e: impl Into<BoxError>) -> Self {
        self.source = Some(e.into());
        self
    }

    /// The outcome tag.
    pub fn outcome(&self) -> Outcome {
        self.kind.outcome()
    }
    /// 429 rate limit.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.kind, ErrorKind::RateLimited { .. })
    }
    /// Access denied (quota, billing, verification, region, tier).
    pub fn is_access_denied(&self) -> bool {
        matches!(self.kind, ErrorKind::AccessDenied { .. })
    }
    /// Not found / unsupported.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound { .. })
    }
    /// 401.
    pub fn is_authentication(&self) -> bool {
        matches!(self.kind, ErrorKind::Authentication)
    }
    /// Content policy refusal.
    pub fn is_content_policy(&self) -> bool {
        matches!(self.kind, ErrorKind::ContentPolicy { .. })
    }
    /// Other 4xx.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self.kind, ErrorKind::InvalidRequest)
    }
    /// 5xx, timeout, connect or decode: the provider's transient fault.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Server | ErrorKind::Timeout { .. } | ErrorKind::Connect | ErrorKind::Decode
        )
    }
    /// A timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout { .. })
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.kind.outcome())?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s}")?;
            if let Some(c) = &self.code {
                write!(f, ", {c}")?;
            }
            f.write_str(")")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Longest provider message kept in a [`ProviderError`] (bytes): a provider may answer with
/// any amount of text, and the message is copied into `Display`, `explain()`, the status JSON
/// and logs.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// Longest short provider field (`code`, `type`, `param`, request id) kept (bytes).
pub const MAX_FIELD_BYTES: usize = 256;

/// Cuts `text` to at most `max` bytes (on a character boundary) and marks the cut with
/// `… [truncated N bytes]`, so a reader knows the text is incomplete.
///
/// ```
/// let mut s = "x".repeat(100);
/// image_router::truncate_text(&mut s, 10);
/// assert!(s.starts_with("xxxxxxxxxx…"));
/// assert!(s.ends_with("[truncated 90 bytes]"));
/// ```
pub fn truncate_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("… [truncated {dropped} bytes]"));
}

/// Replaces every occurrence of `secret` in `text` with `[redacted]`.
pub(crate) fn redact(text: &mut String, secret: &str) {
    if !secret.is_empty() && text.contains(secret) {
        *text = text.replace(secret, "[redacted]");
    }
}
