//! Accounts: what one simulated provider account accepts and what it has seen.
//!
//! Why accounts behind path prefixes on one server: a scenario with a primary, an Azure
//! deployment and a proxy needs three independent limit windows, fault queues and request
//! logs, but one port and one task are enough to host them all.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};

use super::faults::FaultQueue;
use super::window::RateWindow;
use crate::catalog::{Catalog, ModelTierLimits, TierKind};

/// How a chat-completions answer carries the image in `choices[0].message.content`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChatImageStyle {
    /// `data:image/png;base64,...`.
    #[default]
    DataUrl,
    /// `![image](http://127.0.0.1:PORT/ACCOUNT/files/ID.png)`.
    MarkdownUrl,
    /// `http://127.0.0.1:PORT/ACCOUNT/files/ID.png`.
    PlainUrl,
}

/// Configuration of one simulated account (builder style).
///
/// ```
/// use image_router::sim::{ChatImageStyle, SimAccount};
/// use std::time::Duration;
/// let acct = SimAccount::new()
///     .rpm(5)
///     .tpm(100_000)
///     .api_key("sk-sim-openai")
///     .latency(Duration::from_millis(5))
///     .chat_image(ChatImageStyle::PlainUrl);
/// # let _ = acct;
/// ```
#[derive(Clone, Default)]
pub struct SimAccount {
    pub(crate) rpm: Option<u32>,
    pub(crate) tpm: Option<u64>,
    pub(crate) ipm: Option<u32>,
    pub(crate) model_limits: BTreeMap<String, ModelTierLimits>,
    pub(crate) api_key: Option<SecretString>,
    pub(crate) deployments: BTreeMap<String, String>,
    pub(crate) chat_image: ChatImageStyle,
    pub(crate) models: Option<Vec<String>>,
    pub(crate) latency: Duration,
    pub(crate) organization: Option<String>,
    pub(crate) config_error: Option<String>,
}

impl fmt::Debug for SimAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAccount")
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("ipm", &self.ipm)
            .field("model_limits", &self.model_limits)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("deployments", &self.deployments)
            .field("chat_image", &self.chat_image)
            .field("models", &self.models)
            .field("latency", &self.latency)
            .field("organization", &self.organization)
            .finish()
    }
}

impl SimAccount {
    /// An account with no limits, no key, every catalog model and no deployments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests-per-minute limit (sliding 60 s window). `0` admits nothing (answered with
    /// the tier-denial 429).
    #[must_use]
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }

    /// Tokens-per-minute limit (sliding 60 s window), each request weighted by
    /// [`tokens::estimate`](crate::quota::tokens::estimate).
    #[must_use]
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Images-per-minute limit for the whole account (sliding 60 s window); a request weighs
    /// its `n` (a chat-mode call one image).
    #[must_use]
    pub fn ipm(mut self, ipm: u32) -> Self {
        self.ipm = Some(ipm);
        self
    }

    /// Limits of one model on this account, as OpenAI applies its published per-model
    /// limits: the model gets its own sliding window (RPM / TPM / IPM, each optional) on top
    /// of the account's.
    ///
    /// ```
    /// use image_router::catalog::ModelTierLimits;
    /// use image_router::sim::SimAccount;
    /// let acct = SimAccount::new()
    ///     .model_limits("gpt-image-1", ModelTierLimits::new(None, Some(100_000), Some(5)));
    /// # let _ = acct;
    /// ```
    #[must_use]
    pub fn model_limits(mut self, model: impl Into<String>, limits: ModelTierLimits) -> Self {
        self.model_limits.insert(model.into(), limits);
        self
    }

    /// Sets the limits of a tier of [`Catalog::builtin`]: a preset's (`"guide-tier-1"`) RPM
    /// and TPM for the account; a usage tier's (`"tier-1"` … `"tier-5"`) published figures
    /// per model (each catalog model's, or the default model's for a model without figures,
    /// as the router assumes); a tier without access (`"free"`) answers every request with
    /// the tier denial. An unknown tier makes
    /// [`SimulatorBuilder::start`](super::SimulatorBuilder::start) fail with `InvalidInput`
    /// naming it.
    #[must_use]
    pub fn tier(mut self, name: &str) -> Self {
        let cat = Catalog::builtin();
        match cat.tier(name) {
            Some(t) if !t.has_access() => {
                self.rpm = Some(0);
            }
            Some(t) if t.kind == TierKind::Usage => {
                let fallback = cat.model_limits(name, cat.default_model());
                for m in cat.models() {
                    if let Some(l) = cat.model_limits(name, m.name()).or(fallback) {
                        self.model_limits.insert(m.name().to_string(), l);
                    }
                }
            }
            Some(t) => {
                self.rpm = t.rpm;
                self.tpm = t.tpm;
            }
            None => {
                let known: Vec<&str> = Catalog::builtin()
                    .tiers()
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect();
                self.config_error = Some(format!("unknown tier {name:?}; known tiers: {known:?}"));
            }
        }
        self
    }

    /// The key clients must send (`Authorization: Bearer`, or `api-key` on Azure paths).
    /// Without one, any key (or none) is accepted.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// An Azure deployment: `name` in the URL (or in the v1 body `model`) serves `model`.
    /// Without any deployment, every catalog model name is a deployment of itself.
    #[must_use]
    pub fn deployment(mut self, name: impl Into<String>, model: impl Into<String>) -> Self {
        self.deployments.insert(name.into(), model.into());
        self
    }

    /// How chat-completions answers carry the image (default [`ChatImageStyle::DataUrl`]).
    #[must_use]
    pub fn chat_image(mut self, style: ChatImageStyle) -> Self {
        self.chat_image = style;
        self
    }

    /// The models this account serves (default: every catalog model). Others get 404
    /// `model_not_found`. Models unknown to the catalog are served with the catalog's default
    /// token estimate and no capability checks.
    #[must_use]
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// A fixed delay before every answer.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The organization named in 429 messages (default `org-sim`).
    #[must_use]
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    pub(crate) fn serves_model(&self, model: &str) -> bool {
        match &self.models {
            Some(list) => list.iter().any(|m| m == model),
            None => Catalog::builtin().model(model).is_some(),
        }
    }

    /// Whether `sent` is the expected key (always true without one).
    pub(crate) fn key_ok(&self, sent: Option<&str>) -> bool {
        match &self.api_key {
            None => true,
            Some(k) => {
                sent.is_some_and(|s| constant_time_eq(s.as_bytes(), k.expose_secret().as_bytes()))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counters per account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Requests received (every path of the account).
    pub requests: u64,
    /// Successful image answers (200 with images).
    pub succeeded: u64,
    /// Images handed out.
    pub images: u64,
    /// 429s from the RPM / TPM / IPM windows (not scripted faults).
    pub rate_limited: u64,
    /// Scripted faults served.
    pub faults_served: u64,
    /// 401s for a missing or wrong key.
    pub unauthorized: u64,
    /// Other error answers (400 / 404 from validation, unknown models, deployments, paths).
    pub rejected: u64,
    /// Tokens admitted by the window (the estimate of every admitted request).
    pub tokens: u64,
    /// Requests being processed right now (hanging and slow ones included).
    pub in_flight: u64,
}

/// A request as the simulator received it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, including the account prefix.
    pub path: String,
    /// Query string, without `?`.
    pub query: Option<String>,
    /// Headers in arrival order, names lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Time on the simulator's clock.
    pub at: Duration,
}

impl ReceivedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Header values that carry credentials are redacted in `Debug`.
impl fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = matches!(
                    k.as_str(),
                    "authorization" | "api-key" | "proxy-authorization" | "cookie"
                );
                (k.as_str(), if secret { "[redacted]" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ReceivedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("at", &self.at)
            .finish()
    }
}

/// Live state of one account.
#[derive(Debug)]
pub(crate) struct AccountState {
    pub(crate) config: SimAccount,
    pub(crate) window: RateWindow,
    /// One window per model with its own limits ([`SimAccount::model_limits`]).
    pub(crate) model_windows: HashMap<String, RateWindow>,
    pub(crate) faults: FaultQueue,
    pub(crate) stats: SimStats,
    pub(crate) received: Vec<ReceivedRequest>,
    pub(crate) files: HashMap<String, Bytes>,
    pub(crate) next_id: u64,
}

impl AccountState {
    pub(crate) fn new(config: SimAccount) -> Self {
        let model_windows = config
            .model_limits
            .iter()
            .map(|(m, l)| (m.clone(), RateWindow::new(l.rpm, l.tpm).with_ipm(l.ipm)))
            .collect();
        Self {
            window: RateWindow::new(config.rpm, config.tpm).with_ipm(config.ipm),
            model_windows,
            config,
            faults: FaultQueue::default(),
            stats: SimStats::default(),
            received: Vec::new(),
            files: HashMap::new(),
            next_id: 0,
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
