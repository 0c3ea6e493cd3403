//! Errors: what went wrong with one provider ([`ProviderError`], classified into an
//! [`ErrorKind`] the router acts on), with a request ([`ValidationError`]), with the
//! configuration ([`ConfigError`]), and with the whole routed request ([`Error`], which lists
//! every attempt).
//!
//! Display wording is for people and may change; match on the kinds and use the `is_*`
//! predicates instead. No error ever contains an API key: providers build messages from the
//! response body and status only, and keys are [`secrecy::SecretString`]s.

use std::fmt;
use std::time::Duration;

use crate::headers::RateLimitHeaders;

use serde::Serialize;

use crate::attempt::{Attempt, Skip};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A request that is wrong before any provider sees it. Names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid request: `{field}`: {message}")]
pub struct ValidationError {
    /// The request field at fault (wire name, e.g. `"output_compression"`).
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl From<crate::capabilities::Unsupported> for ValidationError {
    fn from(u: crate::capabilities::Unsupported) -> Self {
        ValidationError::new(u.field(), u.to_string())
    }
}

/// A bad setting, reported by a builder's `build()` or by a catalog/config loader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid configuration: `{field}`{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// The setting at fault, e.g. `"providers[1].deployment"` or `"api_key"`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Line in the file, when the setting came from a file.
    pub line: Option<usize>,
}

impl ConfigError {
    /// A configuration error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }

    /// The same error at `line` of a file.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Prefixes the field with `scope` (`"openai"` + `"api_key"` → `"openai.api_key"`).
    pub fn scoped(mut self, scope: &str) -> Self {
        self.field = if self.field.is_empty() {
            scope.to_string()
        } else {
            format!("{scope}.{}", self.field)
        };
        self
    }
}

/// Which limit a 429 refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
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
/// image_router::error::truncate_text(&mut s, 10);
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
            Error::Rejected { attempts, .. } | Error::Exhausted { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// Every provider skipped without a call, with the reason.
    pub fn skipped(&self) -> &[Skip] {
        match self {
            Error::Rejected { skipped, .. } | Error::Exhausted { skipped, .. } => skipped,
            _ => &[],
        }
    }

    /// The most telling provider error: a refusal, else the most severe failure
    /// (access denied > authentication > not found > rate limit > server > timeout > connect).
    pub fn cause(&self) -> Option<&ProviderError> {
        match self {
            Error::Rejected { error, .. } => Some(error),
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
