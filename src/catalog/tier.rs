//! OpenAI usage tiers and the per-provider-kind defaults, as the catalog serves them: small
//! data types kept apart from models because they are looked up on their own (status pages,
//! provider builders).
//!
//! Two kinds of tier, because the two sources describe limits differently: OpenAI's own
//! usage tiers ([`TierKind::Usage`], `tier-1` … `tier-5`, `free`) state what each tier needs,
//! and publish the *limits per model* (images and tokens per minute, kept on the model as
//! [`ModelTierLimits`]); a preset ([`TierKind::Preset`], e.g. the third-party guide's
//! `guide-tier-2`) is one fixed RPM / TPM pair for whatever model is sent.

use serde::Serialize;

use crate::request::OutputFormat;

/// What a tier's limits are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TierKind {
    /// One of OpenAI's usage tiers (`[usage_tiers.*]`): ordered by [`Tier::level`], limits
    /// per model ([`Catalog::model_limits`](super::Catalog::model_limits)).
    Usage,
    /// A fixed RPM / TPM pair for every model (`[tiers.*]`).
    Preset,
}

/// A tier: one of OpenAI's usage tiers, or an RPM / TPM preset.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Tier {
    /// Tier name (`"tier-2"`, `"guide-tier-2"`).
    pub name: String,
    /// Usage tier or preset.
    pub kind: TierKind,
    /// A usage tier's order (`free` 0, `tier-1` 1, …); `None` for presets.
    pub level: Option<u32>,
    /// A preset's requests per minute (0: no access); `None` for usage tiers, whose limits
    /// are per model.
    pub rpm: Option<u32>,
    /// A preset's tokens per minute (0: no access); `None` for usage tiers.
    pub tpm: Option<u64>,
    /// Whether the tier gives any access to image models (`free` does not).
    pub access: bool,
    /// Lifetime spend needed, USD.
    pub min_spend_usd: Option<f64>,
    /// Account age needed, days.
    pub min_account_age_days: Option<u32>,
    /// What the tier needs, in plain words.
    pub requirement: String,
}

impl Tier {
    /// Whether the tier gives any access.
    pub fn has_access(&self) -> bool {
        self.access && self.rpm != Some(0) && self.tpm != Some(0)
    }
}

/// One model's published rate limits at one usage tier (`None`: the dimension is not limited
/// or not published). Looked up with [`Catalog::model_limits`](super::Catalog::model_limits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ModelTierLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Images per minute (a request weighs its `n`).
    pub ipm: Option<u32>,
}

impl std::fmt::Display for ModelTierLimits {
    /// `5 images per minute (IPM), 100000 tokens per minute (TPM)`; `no published limit`
    /// when every figure is unset.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(i) = self.ipm {
            parts.push(format!("{i} images per minute (IPM)"));
        }
        if let Some(r) = self.rpm {
            parts.push(format!("{r} requests per minute (RPM)"));
        }
        if let Some(t) = self.tpm {
            parts.push(format!("{t} tokens per minute (TPM)"));
        }
        if parts.is_empty() {
            f.write_str("no published limit")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

impl ModelTierLimits {
    /// Limits with these figures.
    pub fn new(rpm: Option<u32>, tpm: Option<u64>, ipm: Option<u32>) -> Self {
        Self { rpm, tpm, ipm }
    }
}

/// Defaults per provider kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KindDefaults {
    /// Direct OpenAI base URL.
    pub openai_base_url: String,
    /// Azure `api-version`.
    pub azure_api_version: String,
    /// Output formats Azure produces.
    pub azure_output_formats: Vec<OutputFormat>,
    /// Whether chat-mode proxies do edits.
    pub chat_edits: bool,
    /// Most images per chat-mode call.
    pub chat_max_n: u8,
    /// The first Azure `api-version` that streams image answers (`None`: none does);
    /// api-versions compare as their dated strings (`2025-04-01-preview`).
    pub azure_stream_api_version: Option<String>,
    /// Whether images-mode proxies stream by default (a provider's `.streaming(..)`
    /// overrides it; chat-mode proxies never stream).
    pub compatible_images_streaming: bool,
}
