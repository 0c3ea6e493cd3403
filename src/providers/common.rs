//! The settings every built-in provider shares ([`CommonOptions`], what the builders fill)
//! and their validated form ([`Common`], what each call reads): name, clients, catalog,
//! model allow-list, timeouts and caps. Apart from the providers so each of them only adds
//! what is its own.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::bounds::{bounds_map, BoundsMap};
use super::{builtin_catalog, http, shared_client, DEFAULT_MAX_RETRY_HINT};
use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::error::ProviderError;
use crate::provider::CallContext;
use crate::request::{Capabilities, ImageRequest, Unsupported};

/// Settings every built-in provider has.
#[derive(Clone, Default)]
pub(super) struct CommonOptions {
    pub(super) name: Option<String>,
    pub(super) client: Option<reqwest::Client>,
    pub(super) catalog: Option<Arc<Catalog>>,
    pub(super) models: Option<Vec<String>>,
    pub(super) allow_unknown: Option<bool>,
    pub(super) timeout: Option<Duration>,
    pub(super) max_response_bytes: Option<u64>,
    pub(super) max_retry_hint: Option<Duration>,
    pub(super) download_hosts: Vec<String>,
}

/// The client image downloads use.
#[derive(Clone)]
pub(super) enum Downloader {
    /// The application's client (`.client(...)`).
    App(reqwest::Client),
    /// The library's own, built on the first download: most providers never download (GPT
    /// image models answer base64), and building a TLS client costs time at every `build()`.
    Own(Arc<OnceLock<Result<reqwest::Client, ConfigError>>>),
}

impl Common {
    /// The download client (see [`Downloader`]).
    pub(super) fn downloader(&self) -> Result<reqwest::Client, ProviderError> {
        match &self.download_client {
            Downloader::App(c) => Ok(c.clone()),
            Downloader::Own(cell) => cell
                .get_or_init(|| http::download_client(self.downloads.clone()))
                .clone()
                .map_err(|e| {
                    ProviderError::new(&self.name, crate::ErrorKind::Decode, e.to_string())
                }),
        }
    }
}

/// The validated form of [`CommonOptions`].
#[derive(Clone)]
pub(super) struct Common {
    pub(super) name: String,
    pub(super) client: reqwest::Client,
    /// The client for image downloads: the library's own (same-origin redirects, a resolver
    /// that drops non-public addresses) unless the application gave its own client.
    pub(super) download_client: Downloader,
    pub(super) downloads: Arc<http::DownloadRules>,
    pub(super) catalog: Arc<Catalog>,
    /// What the answer bounds need of each catalog model, computed once from `catalog`
    /// (see `bounds.rs`).
    pub(super) bounds: Arc<BoundsMap>,
    pub(super) models: Option<BTreeSet<String>>,
    pub(super) allow_unknown: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) max_response_bytes: Option<u64>,
    pub(super) max_retry_hint: Duration,
}

impl CommonOptions {
    /// Validates the settings; `own_host` is the provider's host (its downloads are allowed).
    pub(super) fn build(
        self,
        default_name: &str,
        default_allow_unknown: bool,
        own_host: Option<&str>,
    ) -> Result<Common, ConfigError> {
        let name = self.name.unwrap_or_else(|| default_name.to_string());
        if name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        if self.max_response_bytes == Some(0) {
            return Err(ConfigError::new(
                "max_response_bytes",
                "must be greater than zero",
            ));
        }
        if self.max_retry_hint == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "max_retry_hint",
                "must be greater than zero",
            ));
        }
        let models = match self.models {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err(ConfigError::new("models", "allow-list must not be empty"));
                }
                if let Some(bad) = list.iter().find(|m| m.trim().is_empty()) {
                    return Err(ConfigError::new(
                        "models",
                        format!("model names must not be empty (got {bad:?})"),
                    ));
                }
                Some(list.into_iter().collect())
            }
        };
        let mut rules = http::DownloadRules::default();
        for host in &self.download_hosts {
            let h = host.trim().trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() || h.contains(['/', ' ', '?', '#']) {
                return Err(ConfigError::new(
                    "allow_download_hosts",
                    format!("not a host name or address: {host:?}"),
                ));
            }
            rules.allowed.insert(h.to_ascii_lowercase());
        }
        if let Some(h) = own_host {
            rules.allowed.insert(
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
            );
        }
        let downloads = Arc::new(rules);
        let (client, download_client) = match self.client {
            Some(c) => (c.clone(), Downloader::App(c)),
            None => (shared_client()?, Downloader::Own(Arc::default())),
        };
        let catalog = self.catalog.unwrap_or_else(builtin_catalog);
        Ok(Common {
            name,
            client,
            download_client,
            downloads,
            bounds: Arc::new(bounds_map(&catalog)),
            catalog,
            models,
            allow_unknown: self.allow_unknown.unwrap_or(default_allow_unknown),
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
            max_retry_hint: self.max_retry_hint.unwrap_or(DEFAULT_MAX_RETRY_HINT),
        })
    }
}

impl Common {
    /// Catalog capabilities (or permissive ones for unknown models, when allowed), `None`
    /// when `model` is not on the allow-list.
    pub(super) fn base_capabilities(&self, model: &str) -> Option<Capabilities> {
        if let Some(list) = &self.models {
            if !list.contains(model) {
                return None;
            }
        }
        match self.catalog.model(model) {
            Some(spec) => Some(spec.capabilities.clone()),
            None if self.allow_unknown => Some(Capabilities::permissive(model)),
            None => None,
        }
    }

    /// Whether this provider serves `req` as the catalog describes its model: the same
    /// answer as `base_capabilities(model)` followed by `Capabilities::check`, without
    /// cloning the catalog entry (its sizes, qualities and formats are `Vec`s: five
    /// allocations per routed request; issue 16). Only for providers whose capabilities are
    /// the base ones unchanged (OpenAI).
    pub(super) fn supports_base(&self, req: &ImageRequest) -> Result<(), Unsupported> {
        let model = req.model().unwrap_or_default();
        let refused = || {
            Err(Unsupported::Model {
                model: model.to_string(),
            })
        };
        if let Some(list) = &self.models {
            if !list.contains(model) {
                return refused();
            }
        }
        match self.catalog.model(model) {
            Some(spec) => spec.capabilities.check(req),
            None if self.allow_unknown => Capabilities::permissive(model).check(req),
            None => refused(),
        }
    }

    /// The allow-list, sorted (empty without one).
    pub(super) fn allow_list(&self) -> Vec<String> {
        self.models
            .as_ref()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The model a request resolves to (the catalog default when unset). Borrowed, not
    /// copied: the response's model name is the one copy a call needs (issue 16).
    pub(super) fn model_or_default<'a>(&'a self, model: Option<&'a str>) -> &'a str {
        model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.catalog.default_model())
    }

    /// The effective timeout and deadline of one call.
    pub(super) fn deadline(&self, ctx: &CallContext) -> (Duration, Instant) {
        let timeout = match self.timeout {
            Some(cap) => cap.min(ctx.timeout),
            None => ctx.timeout,
        };
        let now = Instant::now();
        // A huge timeout (e.g. `Duration::MAX`) must not overflow the clock: cap it at a year.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        (timeout, deadline)
    }

    pub(super) fn debug_fields(&self, d: &mut std::fmt::DebugStruct<'_, '_>) {
        d.field("name", &self.name)
            .field("models", &self.models)
            .field("allow_unknown_models", &self.allow_unknown)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_retry_hint", &self.max_retry_hint)
            .field("allow_download_hosts", &self.downloads.allowed);
    }
}
