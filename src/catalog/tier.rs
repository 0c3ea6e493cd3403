//! OpenAI usage tiers and the per-provider-kind defaults, as the catalog serves them: small
//! data types kept apart from models because they are looked up on their own (status pages,
//! provider builders).

use serde::Serialize;

use crate::request::OutputFormat;

/// An OpenAI usage tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Tier {
    /// Tier name (`"tier-2"`).
    pub name: String,
    /// Requests per minute (0: no access).
    pub rpm: u32,
    /// Tokens per minute.
    pub tpm: u64,
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
        self.rpm > 0 && self.tpm > 0
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
}
