//! The texts for a provider's error, kind by kind ([`ProviderError::explain`] and
//! [`ProviderError::explain_with`]), including the account denials (tier, quota,
//! verification, region) that need the catalog's tier table. Apart because it is the
//! largest set of texts and the one that follows the providers' error formats.

use super::{
    provider_quote, secs, tier_advice_for, tier_gives, Explanation, API_KEYS_URL, BILLING_URL,
    LIMITS_URL, VERIFY_ORGANIZATION_URL,
};
use crate::catalog::Catalog;
use crate::error::{AccessDenial, ErrorKind, NotFoundKind, ProviderError, RateLimitScope};
use crate::quota::limits::NextTier;

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
            ErrorKind::RateLimited { .. } if self.is_azure_answer() => {
                self.explain_azure_rate_limit(&quote)
            }
            ErrorKind::RateLimited {
                scope: RateLimitScope::Images,
            } => self.explain_images_limit(&quote, catalog, tier),
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
            RateLimitScope::Images => "images per minute (IPM)",
            _ => "requests or tokens per minute",
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

    /// Whether the answer has Azure's error shape: the newer `RateLimitReached` code, Azure's
    /// own wording ("… under Azure OpenAI API version …"), or a numeric-string `code`
    /// (`"429"`) with Azure's "retry after N seconds". The provider's name is the user's, so
    /// the answer is what tells; a proxy that copies Azure's body is explained as Azure.
    fn is_azure_answer(&self) -> bool {
        let code = self.code.as_deref().unwrap_or("");
        let numeric = !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit());
        code.eq_ignore_ascii_case("RateLimitReached")
            || self.message.contains("Azure OpenAI")
            || (numeric && self.message.to_ascii_lowercase().contains("retry after"))
    }

    /// The model a 429 message names ("Rate limit reached for gpt-image-1 in organization …",
    /// "… for gpt-image-2-codex (for limit gpt-image) …").
    fn model_in_message(&self) -> Option<String> {
        let lower = self.message.to_ascii_lowercase();
        let at = ["rate limit reached for ", "request too large for "]
            .iter()
            .find_map(|m| lower.find(m).map(|i| i + m.len()))?;
        let model: String = self.message[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
            .collect();
        (!model.is_empty()).then_some(model)
    }

    /// An images-per-minute 429: the account's IPM limit for the model, what the configured
    /// tier allows and what the next tier gives.
    fn explain_images_limit(
        &self,
        quote: &str,
        catalog: &Catalog,
        tier: Option<&str>,
    ) -> Explanation {
        let name = &self.provider;
        let model = self.model_in_message();
        let shown = model.as_deref().unwrap_or("this model");
        let when = match self.retry_after {
            Some(d) => format!("It asked to retry after {}.", secs(d)),
            None => "It did not say when to retry.".to_string(),
        };
        let lookup = model.as_deref().unwrap_or(catalog.default_model());
        let mut action = String::new();
        match tier.and_then(|t| catalog.tier(t)) {
            Some(t) => action.push_str(&format!(
                "The configuration says this account is on {} ({}). ",
                t.name,
                tier_gives(catalog, &t.name, lookup)
            )),
            None => action.push_str(&format!(
                "The account's images-per-minute limit depends on its usage tier (see {LIMITS_URL}). "
            )),
        }
        if let Some(n) = NextTier::of(catalog, tier, lookup) {
            action.push_str(&format!(
                "The next tier, {}, needs {} and gives {}. ",
                n.name,
                n.requirement,
                n.gives()
            ));
        }
        action.push_str(&format!(
            "Meanwhile: each request counts its `n` images, so ask for fewer images per \
             request or set `ipm` for {name} in the config to the account's figure so the \
             router paces images; the router fails over to other providers and waits out \
             `retry-after` only when none can take the request."
        ));
        Explanation::new(
            format!(
                "{name} refused the request because the account's images-per-minute limit (IPM) \
                 for {shown} is reached: every image counts, and a request with `n = 4` counts \
                 4. {when} {quote}"
            ),
            action,
        )
    }

    /// An Azure 429: the deployment's quota, where to raise it, and the router's `rpm`.
    fn explain_azure_rate_limit(&self, quote: &str) -> Explanation {
        let name = &self.provider;
        let when = match self.retry_after {
            Some(d) => format!("It asked to retry after {}.", secs(d)),
            None => "It did not say when to retry.".to_string(),
        };
        Explanation::new(
            format!(
                "{name}: the Azure deployment reached its quota. Azure limits each deployment \
                 to the requests per minute (and tokens per minute) of the quota assigned to \
                 it; image models default to a small quota (gpt-image-1: 2 capacity units, 6 \
                 requests per minute). {when} {quote}"
            ),
            format!(
                "Raise the deployment's quota: in the Azure AI Foundry portal open the \
                 deployment (Deployments, then Edit) and raise its rate limit, up to the quota \
                 free for that model and region on the Quota page; ask for more quota there \
                 (https://aka.ms/oai/quotaincrease) if none is free. Then set `rpm` (and \
                 `tpm`) for {name} in the router config to the deployment's figure, so the \
                 router paces requests under it instead of collecting 429s; another \
                 deployment in another region adds its own quota."
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
                tier_advice_for(catalog, tier, self.model_in_message().as_deref()),
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
