//! One `[[provider]]` table: the raw file schema, its parsing into [`ProviderConfig`], the
//! routing options it maps to, and the built-in providers built from it.
//!
//! The numeric rules (`rpm`, `tpm`, `ipm`, `safety_margin`, `weight`) are
//! [`ProviderOptions::validate`](crate::router::ProviderOptions), shared with the builder;
//! what is checked here is what only a file can get wrong: a key that does not belong to the
//! kind, a required key left out, a key pasted where a variable name belongs.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::budget::Budget;
use crate::provider::ProviderKind;
use crate::providers::CompatibleMode;
use crate::router::ProviderOptions;

/// One `[[provider]]` table, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Unique name.
    pub name: String,
    /// Which implementation.
    pub kind: ProviderKind,
    /// OpenAI / proxy base URL.
    pub base_url: Option<String>,
    /// Azure resource endpoint.
    pub endpoint: Option<String>,
    /// Azure deployment for the default model.
    pub deployment: Option<String>,
    /// Azure deployments by model.
    pub deployments: BTreeMap<String, String>,
    /// Azure deployment used for models without a mapping.
    pub default_deployment: Option<String>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Azure: use the v1 surface.
    pub v1_surface: Option<bool>,
    /// Name of the environment variable holding the API key (the first of
    /// [`api_key_envs`](Self::api_key_envs) when the file lists several).
    pub api_key_env: Option<String>,
    /// Every variable `api_key_env` names, in order: one for the single-string form, several
    /// for a list (`api_key_env = ["OPENAI_KEY_A", "OPENAI_KEY_B"]`: several keys behind this
    /// provider, each with its own limits, budget and access state, labelled by the
    /// variable's name; see [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys)).
    pub api_key_envs: Vec<String>,
    /// Azure: name of the environment variable holding an Entra ID bearer token.
    pub bearer_token_env: Option<String>,
    /// Usage tier.
    pub tier: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Images per minute (each model).
    pub ipm: Option<u32>,
    /// Fraction of the limits to use.
    pub safety_margin: Option<f64>,
    /// The key is shared with other clients.
    pub shared: Option<bool>,
    /// Relative weight.
    pub weight: Option<f64>,
    /// Spend budgets of this provider.
    pub budgets: Vec<Budget>,
    /// Only these request classes may use the provider (empty: all).
    pub reserved_for: Vec<String>,
    /// These request classes rank the provider first.
    pub preferred_by: Vec<String>,
    /// OpenAI organization id.
    pub organization: Option<String>,
    /// OpenAI project id.
    pub project: Option<String>,
    /// Models served (empty: the provider's default set).
    pub models: Vec<String>,
    /// OpenAI: accept models the catalog does not know.
    pub allow_unknown_models: Option<bool>,
    /// Proxy mode (serialized as in the file: `"images"`, `"chat"`).
    #[serde(serialize_with = "ser_mode")]
    pub mode: Option<CompatibleMode>,
    /// Proxy: whether it passes streamed answers through (`stream: true`; default the
    /// catalog's `[kinds.compatible] images_streaming`, no).
    pub streaming: Option<bool>,
    /// Proxy model renames (ours → theirs).
    pub rename: BTreeMap<String, String>,
    /// Largest answer body read, bytes (default: derived from each request).
    pub max_response_bytes: Option<u64>,
    /// Longest retry hint believed (`retry-after`, reset headers, "try again in …").
    pub max_retry_hint: Option<std::time::Duration>,
    /// Private, loopback or link-local hosts image downloads may go to.
    pub allow_download_hosts: Vec<String>,
    /// The provider account its limits and budgets belong to (see
    /// [`ProviderOptions::account`]): providers naming the same account share one set of
    /// windows and budgets in a shared store (`[store] kind = "redis"`).
    pub account: Option<String>,
    /// Line of the `[[provider]]` header.
    pub line: usize,
    #[serde(skip)]
    key_lines: HashMap<&'static str, usize>,
    /// For one key of a provider listing several ([`ProviderConfig::keys`]): its index in
    /// the list, so errors name `api_key_env[i]`.
    #[serde(skip)]
    key_index: Option<usize>,
}

/// The file's name of a proxy mode.
pub fn mode_name(m: CompatibleMode) -> &'static str {
    match m {
        CompatibleMode::Chat => "chat",
        _ => "images",
    }
}

fn ser_mode<S: serde::Serializer>(m: &Option<CompatibleMode>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(mode_name(*m)),
        None => s.serialize_none(),
    }
}

mod build;
mod credential;
mod parse;
mod raw;

pub use build::build_provider;
pub(super) use parse::parse;
pub(super) use raw::RawProvider;

impl ProviderConfig {
    /// The line of `key` in this provider's table (the table's line when the key is absent).
    pub fn line_of(&self, key: &str) -> usize {
        self.key_lines.get(key).copied().unwrap_or(self.line)
    }

    /// Routing options for [`RouterBuilder::provider_with`](crate::RouterBuilder::provider_with).
    pub fn options(&self) -> ProviderOptions {
        let mut o = ProviderOptions::new();
        o.tier = self.tier.clone();
        o.rpm = self.rpm;
        o.tpm = self.tpm;
        o.ipm = self.ipm;
        o.safety_margin = self.safety_margin;
        o.shared = self.shared.unwrap_or(false);
        o.weight = self.weight;
        o.account = self.account.clone();
        for b in &self.budgets {
            o = o.budget(*b);
        }
        o.classes(crate::request::ClassPolicy {
            reserved_for: self.reserved_for.iter().cloned().map(Into::into).collect(),
            preferred_by: self.preferred_by.iter().cloned().map(Into::into).collect(),
        })
    }
}
