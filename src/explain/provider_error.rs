//! The texts for a provider's error, kind by kind ([`ProviderError::explain`] and
//! [`ProviderError::explain_with`]), including the account denials (tier, quota,
//! verification, region) that need the catalog's tier table. Apart because it is the
//! largest set of texts and the one that follows the providers' error formats.

use super::{
    provider_quote, secs, tier_advice, Explanation, API_KEYS_URL, BILLING_URL, LIMITS_URL,
    VERIFY_ORGANIZATION_URL,
};
use crate::catalog::Catalog;
use crate::error::{AccessDenial, ErrorKind, NotFoundKind, ProviderError, RateLimitScope};

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
            ErrorKind::RateLimited { scope } => self.explain_rate_limit(scope, &quote),
            ErrorKind::AccessDenied { reason } => {
                self.explain_denial(*reason, &quote, catalog, tier)
            }
            ErrorKind::NotFound { what } => self.explain_not_found(what, &quote),
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
            ErrorKind::Decode => self.explain_decode(),
        }
    }

    /// The rate-limit text: which limit, and when the provider asked to retry.
    fn explain_rate_limit(&self, scope: &RateLimitScope, quote: &str) -> Explanation {
        let name = &self.provider;
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

    /// The not-found texts: model, deployment, parameter, endpoint (or a refused redirect).
    fn explain_not_found(&self, what: &NotFoundKind, quote: &str) -> Explanation {
        let name = &self.provider;
        match what {
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
        }
    }

    /// The decode texts: an oversized answer, a refused download host, or a body that is not
    /// an images response.
    fn explain_decode(&self) -> Explanation {
        let name = &self.provider;
        if self.message.contains("exceeds the limit of") {
            Explanation::new(
                format!(
                    "{name} answered with more bytes than the request can need: {}",
                    self.message
                ),
                "A broken or hostile endpoint; if the provider really sends images this \
                     large, raise `max_response_bytes` for it."
                    .to_string(),
            )
        } else if self.message.contains("not allowed") {
            Explanation::new(
                format!(
                    "{name} pointed an image download at a host the router does not fetch from \
                     (private, loopback or link-local address, or not http/https): {}",
                    self.message
                ),
                "If that host is yours and trusted, list it with `allow_download_hosts`; \
                 otherwise the endpoint may be compromised."
                    .to_string(),
            )
        } else {
            Explanation::new(
                format!(
                    "{name} answered with success but the body is not a usable image response \
                     (it may still have generated and billed the image, so the router did not \
                     send the request to it again): {}",
                    self.message
                ),
                "Usually transient. If it persists the endpoint may not be \
                 OpenAI-compatible: for a proxy that serves images through chat completions, \
                 set `mode = \"chat\"`."
                    .to_string(),
            )
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
