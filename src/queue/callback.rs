//! Job callbacks: when a job ends, its status document (JSON, [`Job::status_json`]) is POSTed
//! to the job's callback URL, signed, and retried with backoff until the receiver answers 2xx
//! or the tries run out; the delivery state is part of the job's status
//! ([`CallbackState`]).
//!
//! # Signature
//!
//! With a secret (taken from an environment variable named in the config, never from the
//! config itself), the header [`SIGNATURE_HEADER`] carries `sha256=<hex>`, the HMAC-SHA256 of
//! the exact body bytes under the secret (the `hmac` and `sha2` crates). A receiver recomputes
//! it over the raw body and compares in constant time ([`verify`] does both).
//!
//! # Delivery
//!
//! Any worker delivers due callbacks ([`QueueBackend::due_callbacks`] holds each one for the
//! delivering worker, so two workers do not post the same callback at once, and a worker that
//! dies leaves it due again later). Redirects are not followed (a redirect could carry the
//! signed status elsewhere); a 3xx counts as a failed try. Each try is bounded by
//! [`CallbackConfig::timeout`]. Delivery is at least once: a receiver that answers after the
//! time-out may see the same job again, and should use the job id to ignore repeats.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::backend::{QueueBackend, QueueError};
use super::job::{CallbackState, Job};
use crate::quota::budget::WallClock;

/// The header carrying the body's signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Image-Router-Signature";
/// The header carrying the job id.
pub const JOB_HEADER: &str = "X-Image-Router-Job";

/// Signs `body` with `secret`: `sha256=<hex of HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` (a header value) is `body`'s signature under `secret`, compared in
/// constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Callback delivery settings.
#[derive(Clone)]
pub struct CallbackConfig {
    /// The signing secret; `None`: unsigned deliveries.
    pub secret: Option<SecretString>,
    /// Tries before the delivery is given up (`failed`).
    pub max_attempts: u32,
    /// Wait before the second try; doubled per try.
    pub backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// Time-out of one try.
    pub timeout: Duration,
}

impl fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            secret: None,
            max_attempts: 8,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

impl CallbackConfig {
    /// Defaults with the secret read from the environment variable `var`; an error naming
    /// the variable when it is unset or empty.
    pub fn from_env(var: &str) -> Result<Self, QueueError> {
        match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(Self {
                secret: Some(SecretString::from(s)),
                ..Self::default()
            }),
            _ => Err(QueueError::invalid(
                "callback_secret_env",
                format!(
                    "environment variable {var} is not set (it holds the callback signing secret)"
                ),
            )),
        }
    }

    /// The wait after `tries` failed tries.
    pub fn backoff_after(&self, tries: u32) -> Duration {
        let factor = 1u32
            .checked_shl(tries.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Posts callbacks (one HTTP client, redirects off).
#[derive(Clone, Debug)]
pub struct CallbackSender {
    config: CallbackConfig,
    client: reqwest::Client,
}

impl CallbackSender {
    /// A sender with `config`.
    pub fn new(config: CallbackConfig) -> Result<Self, QueueError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| QueueError::backend(format!("callback HTTP client: {e}")))?;
        Ok(Self { config, client })
    }

    /// The settings.
    pub fn config(&self) -> &CallbackConfig {
        &self.config
    }

    /// One try: POSTs `job`'s status to its URL. The receiver's status on 2xx.
    pub async fn post(&self, job: &Job) -> Result<u16, String> {
        let Some(url) = &job.spec.callback_url else {
            return Err("the job has no callback URL".into());
        };
        let body = serde_json::to_vec(&job.status_json()).map_err(|e| e.to_string())?;
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(JOB_HEADER, job.id.as_str());
        if let Some(secret) = &self.config.secret {
            req = req.header(
                SIGNATURE_HEADER,
                sign(secret.expose_secret().as_bytes(), &body),
            );
        }
        // The client's own time-out bounds the try; this one also bounds a stalled body.
        let sent = tokio::time::timeout(self.config.timeout, req.body(body).send()).await;
        match sent {
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.config.timeout.as_millis()
            )),
            Ok(Err(e)) => Err(format!("request failed: {}", e.without_url())),
            Ok(Ok(resp)) => {
                let status = resp.status();
                if status.is_success() {
                    Ok(status.as_u16())
                } else {
                    Err(format!("the receiver answered HTTP {}", status.as_u16()))
                }
            }
        }
    }

    /// Delivers the callbacks due now (at most `limit`), recording each try in the job.
    /// Returns how many were delivered.
    pub async fn deliver_due(
        &self,
        backend: &dyn QueueBackend,
        clock: &WallClock,
        limit: usize,
    ) -> Result<usize, QueueError> {
        // Hold each for longer than one try can take.
        let hold = self.config.timeout.saturating_mul(2) + Duration::from_secs(1);
        let due = backend.due_callbacks(hold, limit).await?;
        let mut delivered = 0;
        for job in due {
            let tries = match &job.callback {
                CallbackState::Pending { attempts, .. } => *attempts,
                _ => continue,
            };
            let tries = tries.saturating_add(1);
            let now_ms = |c: &WallClock| {
                c.now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0)
            };
            let state = match self.post(&job).await {
                Ok(status) => {
                    delivered += 1;
                    CallbackState::Delivered {
                        attempts: tries,
                        at_ms: now_ms(clock),
                        status,
                    }
                }
                Err(e) if tries >= self.config.max_attempts => {
                    tracing::warn!(job = %job.id, error = %e, "callback given up");
                    CallbackState::Failed {
                        attempts: tries,
                        last_error: e,
                    }
                }
                Err(e) => {
                    let wait = self.config.backoff_after(tries);
                    CallbackState::Pending {
                        attempts: tries,
                        next_at_ms: now_ms(clock)
                            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                        last_error: Some(e),
                    }
                }
            };
            backend.set_callback_state(&job.id, state).await?;
        }
        Ok(delivered)
    }
}
