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
//! Rate limits: an images-per-minute 429 is explained with the model's published figure at
//! the configured tier and what the next tier needs and gives (from the catalog); an Azure
//! 429 as the deployment's quota, raised in the Azure AI Foundry portal (the deployment's
//! rate limit, within the quota free for the model and region on the Quota page; more quota
//! through <https://aka.ms/oai/quotaincrease>), with the provider's `rpm` to be set to match.
//! Checked against Microsoft's "Manage Azure OpenAI quota" and "quotas and limits" pages
//! (quota is assigned per subscription, region and model, then to each deployment; default
//! for gpt-image-1: 2 capacity units, 6 requests per minute). The portal's menu names change
//! between the classic and new Foundry portals, so the text names the pages, not click paths.
//!
//! Every error type has an `explain()` method: [`ProviderError`],
//! [`Error`](crate::error::Error), [`ConfigError`](crate::config_error::ConfigError),
//! [`ValidationError`](crate::request::ValidationError), [`Skip`](crate::error::Skip). Tier advice comes from the catalog (`providers/openai.toml`), so
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

use crate::catalog::{Catalog, ModelTierLimits, TierKind};
use crate::error::ProviderError;
use crate::quota::limits::{Limits, NextTier};

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
    tier_advice_for(catalog, tier, None)
}

/// [`tier_advice`] naming `model`'s figures (the catalog's default model's when `None`).
pub(crate) fn tier_advice_for(
    catalog: &Catalog,
    tier: Option<&str>,
    model: Option<&str>,
) -> String {
    let model = model.unwrap_or(catalog.default_model());
    let current = tier.and_then(|t| catalog.tier(t));
    let mut s = String::new();
    if let Some(cur) = current {
        s.push_str(&format!(
            "The configuration says this account is on {} ({}). ",
            cur.name,
            tier_gives(catalog, &cur.name, model)
        ));
    }
    match NextTier::of(catalog, tier, model) {
        Some(n) => s.push_str(&format!(
            "To reach {} the account needs {}; it gives {}; ",
            n.name,
            n.requirement,
            n.gives()
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

/// What tier `tier` gives `model`, in words (`gpt-image-1: 5 images per minute (IPM), …`,
/// `6 RPM / 250000 TPM`, or `no access`).
pub(crate) fn tier_gives(catalog: &Catalog, tier: &str, model: &str) -> String {
    match Limits::resolve_for_model(catalog, Some(tier), model, None, None, None) {
        Ok(l) if l.no_access.is_some() => "no access".to_string(),
        Ok(l) => match catalog.tier(tier).map(|t| t.kind) {
            // A model without figures at that tier gets the default model's: say whose.
            Some(TierKind::Usage) => {
                let shown = if catalog.model_limits(tier, model).is_some() {
                    model
                } else {
                    catalog.default_model()
                };
                format!("{shown}: {}", ModelTierLimits::new(l.rpm, l.tpm, l.ipm))
            }
            _ => format!(
                "{} RPM, {} TPM",
                l.rpm.map_or("?".to_string(), |r| r.to_string()),
                l.tpm.map_or("?".to_string(), |t| t.to_string())
            ),
        },
        Err(_) => "unknown tier".to_string(),
    }
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

mod provider_error;
mod router_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_advice_names_next_tier() {
        // A usage tier: the next one, its requirement and its figures for the model.
        let a = tier_advice(Catalog::builtin(), Some("tier-2"));
        assert!(a.contains("tier-3"), "{a}");
        assert!(a.contains("$100 paid and 7 or more days"), "{a}");
        assert!(a.contains("gpt-image-1: 20 images per minute"), "{a}");
        assert!(a.contains("gpt-image-1: 50 images per minute"), "{a}");
        // The guide's presets follow each other.
        let a = tier_advice(Catalog::builtin(), Some("guide-tier-2"));
        assert!(a.contains("guide-tier-3"), "{a}");
        assert!(a.contains("$500"), "{a}");
        let a = tier_advice(Catalog::builtin(), None);
        assert!(a.contains("tier-1"), "{a}");
        // A model the catalog has no figures for is described with the figures it gets, the
        // default model's, under that model's name.
        let a = tier_advice_for(Catalog::builtin(), Some("tier-1"), Some("gpt-image-9"));
        assert!(a.contains("gpt-image-1: 5 images per minute"), "{a}");
        assert!(!a.contains("gpt-image-9:"), "{a}");
    }
}
