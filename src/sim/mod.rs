//! An embedded simulator of the OpenAI, Azure OpenAI and OpenAI-compatible image endpoints
//! (cargo feature `sim`).
//!
//! It is a real HTTP/1.1 server on `127.0.0.1` (random port), so the code under test uses its
//! ordinary HTTP client, connection pool and timeouts: nothing is mocked below the socket.
//! The quickstart runs on it without keys, the router's scenario tests run on it, and you can
//! point your own application at it to see how it behaves against tier limits and failures.
//!
//! # Accounts
//!
//! One server hosts several named accounts; each is a path prefix with its own limits, faults,
//! statistics and request log. For account `acct`:
//!
//! | surface | path |
//! |---|---|
//! | OpenAI / compatible | `POST /acct/v1/images/generations` (JSON), `POST /acct/v1/images/edits` (multipart: `image` or repeated `image[]`, optional `mask`), `GET /acct/v1/models`, `GET /acct/v1/models/{model}` |
//! | chat proxy mode | `POST /acct/v1/chat/completions`: the image in `choices[0].message.content` as a data URL, a markdown image or a plain URL ([`ChatImageStyle`]) |
//! | Azure | `POST /acct/openai/deployments/{deployment}/images/{generations,edits}?api-version=...`, and the v1 surface `POST /acct/openai/v1/images/{generations,edits}` (deployment name in the body's `model`) |
//! | downloads | `GET /acct/files/{id}.png` (images handed out as URLs) |
//!
//! Answers reproduce the real wire format: the `ImagesResponse` shape with echo fields and
//! `usage` from the catalog's token table ([`crate::quota::tokens::estimate`]), the real error bodies
//! (OpenAI's `{"error":{message,type,param,code}}`, Azure's `{"error":{code,message}}`), and
//! the headers: `x-request-id` (Azure: `apim-request-id`), `openai-processing-ms`, and when the
//! account has limits the `x-ratelimit-*` headers (Azure: only the `remaining-*` pair).
//!
//! **Output is always PNG bytes** (a solid colour per account, of the requested size; `auto`
//! is the model's default size, 1024x1024). A request for `jpeg` or `webp` is answered with PNG
//! bytes and the requested `output_format` echoed, so clients should sniff the bytes. Azure
//! paths refuse `webp` with a 400, as Azure does. Streaming (`stream: true`) is not simulated:
//! such requests get the ordinary JSON answer. dall-e models answer without `usage` or echo
//! fields, with `url` items when `response_format` is `url` (downloadable from the simulator).
//! Images are encoded once per size and colour and then served from a cache.
//!
//! # Rate limits
//!
//! Each account may have an RPM, a TPM and an IPM (images per minute) limit, and each model
//! on it its own ([`SimAccount::model_limits`]; [`SimAccount::tier`] with a usage tier such
//! as `"tier-1"` sets every model's published figures), enforced by exact sliding 60-second
//! windows ([`RateWindow`]) on the simulator's [`Clock`]: a request at `t` is admitted iff,
//! in the account's window and in its model's, the requests admitted in `(t - 60 s, t]` plus
//! one stay within RPM, their tokens plus its own estimate within TPM, and their images plus
//! its `n` within IPM (a chat-mode call is one image). Refused requests get a 429
//! `rate_limit_exceeded` with `retry-after` (seconds, rounded up) and `retry-after-ms` set to
//! the time until the window has room, and they do not count. The message names the limit as
//! OpenAI does ("… on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again
//! in 12s. …", `type` `requests` / `tokens`); for images "… on images per min (IPM): Limit 5,
//! Used 4, Requested 2. …" with `type` `requests`. That images wording follows the RPM / TPM
//! messages and the one the project's issue 11 quotes ("images per min (IPM)", `type` may be
//! `requests`); OpenAI does not document it, and older reports show other texts ("Rate limit
//! exceeded for images per minute in organization … Limit: 0/1min", 2023; "… on input-images
//! per min: Limit 4000 …", 2026), so treat it as the likely shape, not a copy. The
//! `remaining-*` headers describe the window after the request (the account's requests /
//! tokens limits, else the model's); the `reset-*` headers give the time until the oldest
//! request in the window leaves it. No images header is sent (none is documented). A limit of
//! 0 (the `free` tier) answers every request with the "try again after 0.0 seconds" tier
//! denial; a request with more tokens than the TPM limit gets "Request too large" and no retry
//! headers, and one with more images than the IPM limit the same wording for images (its real
//! text is not known).
//!
//! # Faults
//!
//! [`Simulator::fail`] queues a [`Fault`] for an account, for one request, `k` requests or all
//! of them ([`Times`]); the head of the queue is served before anything else is checked.
//! Faults apply to the image and chat endpoints and to the lookups (`GET /models`, the Azure
//! deployment `GET`, which `doctor` uses), not to file downloads.
//!
//! ```
//! use image_router::sim::{Fault, SimAccount, Simulator, Times};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let sim = Simulator::builder()
//!     .account("openai", SimAccount::new().rpm(5).tpm(100_000).api_key("sk-sim-openai"))
//!     .account("azure", SimAccount::new().deployment("gpt-image-1", "gpt-image-1"))
//!     .start()
//!     .await?;
//! sim.fail("openai", Fault::Status(503), Times::Once);
//! let url = format!("{}/images/generations", sim.openai_base_url("openai"));
//! let resp = reqwest::Client::new()
//!     .post(&url)
//!     .bearer_auth("sk-sim-openai")
//!     .json(&serde_json::json!({"model": "gpt-image-1", "prompt": "a lighthouse", "quality": "low"}))
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(resp.status(), 503);
//! assert_eq!(sim.stats("openai").faults_served, 1);
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod account;
mod bodies;
mod exchange;
mod fault_serving;
mod faults;
mod image_op;
mod keys;
mod parse;
mod png;
mod rate_headers;
mod routing;
mod server;
mod sse_answer;
mod window;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use account::{ChatImageStyle, ReceivedRequest, SimAccount, SimStats};
pub use faults::{Fault, RandomFaults, Times};
pub use keys::SimKeys;
pub use window::{LimitKind, RateWindow, Rejection, WindowState, WINDOW};

use crate::clock::{Clock, SystemClock};

use account::AccountState;

/// Default time a [`Fault::Hang`] holds a request before dropping the connection.
pub const DEFAULT_HANG_LIMIT: Duration = Duration::from_secs(600);

/// State shared by the server task and the [`Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) accounts: HashMap<String, Mutex<AccountState>>,
    /// Accounts with several keys: the name in the URL → each member's account name and the
    /// key it was given (kept after a revocation, so the key still reaches its account).
    pub(crate) keyed: HashMap<String, Vec<(String, secrecy::SecretString)>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) base_url: String,
    pub(crate) hang_limit: Duration,
}

/// Configures a [`Simulator`].
#[derive(Debug, Default)]
#[must_use]
pub struct SimulatorBuilder {
    accounts: Vec<(String, SimAccount)>,
    keyed: Vec<(String, SimKeys)>,
    clock: Option<Arc<dyn Clock>>,
    hang_limit: Option<Duration>,
}

impl SimulatorBuilder {
    /// Adds an account served under `/{name}/...` (a later account with the same name
    /// replaces the earlier one).
    pub fn account(mut self, name: impl Into<String>, account: SimAccount) -> Self {
        let name = name.into();
        self.accounts.retain(|(n, _)| *n != name);
        self.accounts.push((name, account));
        self
    }

    /// Adds an account served under `/{name}/...` with several keys, each with its own
    /// limits, faults, counters and log (see [`SimKeys`]); the key a request carries picks
    /// the key's account, named `{name}.key1`, `{name}.key2`, ... for [`Simulator::stats`],
    /// [`Simulator::fail`] and the other per-account calls ([`Simulator::key_account`]).
    pub fn account_keys(mut self, name: impl Into<String>, keys: SimKeys) -> Self {
        let name = name.into();
        self.keyed.retain(|(n, _)| *n != name);
        self.keyed.push((name, keys));
        self
    }

    /// The clock the rate-limit windows and request log use (default: [`SystemClock`]).
    /// Pass a [`ManualClock`](crate::clock::ManualClock) to run minutes of traffic instantly.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a [`Fault::Hang`] holds a request before dropping the connection (default
    /// [`DEFAULT_HANG_LIMIT`]).
    pub fn hang_limit(mut self, limit: Duration) -> Self {
        self.hang_limit = Some(limit);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving. Fails with `InvalidInput` for an account name
    /// that cannot be a path segment or an account with an unknown tier.
    pub async fn start(self) -> std::io::Result<Simulator> {
        let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
        let mut accounts = HashMap::new();
        for (name, acct) in self.accounts {
            if name.is_empty() || name.contains(['/', '?', '#', '%', ' ']) {
                return Err(invalid(format!(
                    "simulator account name {name:?} must be a non-empty path segment"
                )));
            }
            if let Some(e) = &acct.config_error {
                return Err(invalid(format!("simulator account {name:?}: {e}")));
            }
            accounts.insert(name, Mutex::new(AccountState::new(acct)));
        }
        let mut keyed = HashMap::new();
        for (name, keys) in self.keyed {
            if keys.keys.is_empty() || name.is_empty() || name.contains(['/', '?', '#', '%', ' ']) {
                return Err(invalid(format!(
                    "simulator account {name:?} needs a path-segment name and at least one key"
                )));
            }
            let mut members = Vec::with_capacity(keys.keys.len());
            for (i, acct) in keys.keys.into_iter().enumerate() {
                let member = keys::member_name(&name, i);
                if accounts.contains_key(&member) || accounts.contains_key(&name) {
                    return Err(invalid(format!(
                        "simulator account {member:?} (a key of {name:?}) is also an account"
                    )));
                }
                if let Some(e) = &acct.config_error {
                    return Err(invalid(format!("simulator account {member:?}: {e}")));
                }
                let given = acct.api_key.clone().unwrap_or_else(keys::revoked_key);
                accounts.insert(member.clone(), Mutex::new(AccountState::new(acct)));
                members.push((member, given));
            }
            keyed.insert(name, members);
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            accounts,
            keyed,
            clock: self
                .clock
                .unwrap_or_else(|| Arc::new(SystemClock::new()) as Arc<dyn Clock>),
            base_url: format!("http://{addr}"),
            hang_limit: self.hang_limit.unwrap_or(DEFAULT_HANG_LIMIT),
        });
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(Simulator { shared, addr, task })
    }
}

/// A running simulator. Stops on [`shutdown`](Self::shutdown) or when dropped.
///
/// Methods taking an account name do nothing (or return empty values) for an unknown name;
/// those that change state return whether the account exists.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.shared.accounts.keys().collect();
        names.sort();
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("accounts", &names)
            .finish()
    }
}

impl Simulator {
    /// A builder with no accounts.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// A simulator with three accounts and no limits or keys: `openai` (OpenAI surface),
    /// `azure` (deployment `gpt-image-1` serving gpt-image-1) and `proxy` (chat mode answering
    /// with markdown image URLs).
    pub async fn start_default() -> std::io::Result<Simulator> {
        Self::builder()
            .account("openai", SimAccount::new())
            .account(
                "azure",
                SimAccount::new().deployment("gpt-image-1", "gpt-image-1"),
            )
            .account(
                "proxy",
                SimAccount::new().chat_image(ChatImageStyle::MarkdownUrl),
            )
            .start()
            .await
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The OpenAI-style base URL of an account: `http://127.0.0.1:PORT/{account}/v1`.
    pub fn openai_base_url(&self, account: &str) -> String {
        format!("{}/{account}/v1", self.shared.base_url)
    }

    /// The Azure endpoint of an account: `http://127.0.0.1:PORT/{account}`.
    pub fn azure_endpoint(&self, account: &str) -> String {
        format!("{}/{account}", self.shared.base_url)
    }

    /// The clock the windows and the request log use.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.shared.clock.clone()
    }

    /// Names of the accounts, sorted.
    pub fn accounts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.accounts.keys().cloned().collect();
        v.sort();
        v
    }

    fn with_account<R>(&self, account: &str, f: impl FnOnce(&mut AccountState) -> R) -> Option<R> {
        self.shared.accounts.get(account).map(|m| f(&mut m.lock()))
    }

    /// The account name of the `index`-th key (0-based) of an account with several keys
    /// (`{name}.key{index + 1}`), for the per-account calls; `None` when there is no such key.
    pub fn key_account(&self, name: &str, index: usize) -> Option<String> {
        self.shared
            .keyed
            .get(name)?
            .get(index)
            .map(|(m, _)| m.clone())
    }

    /// Revokes the `index`-th key (0-based) of an account with several keys: from now on a
    /// request with it gets the real 401 `invalid_api_key` answer. Returns whether the key
    /// exists.
    pub fn revoke_key(&self, name: &str, index: usize) -> bool {
        let Some(member) = self.key_account(name, index) else {
            return false;
        };
        self.with_account(&member, |a| a.config.api_key = Some(keys::revoked_key()))
            .is_some()
    }

    /// Queues `fault` for the next request(s) of `account`.
    pub fn fail(&self, account: &str, fault: Fault, times: Times) -> bool {
        self.with_account(account, |a| a.faults.push(fault, times))
            .is_some()
    }

    /// Lets `account` fail a share of its requests at random, each independently (see
    /// [`RandomFaults`]); a queued fault ([`fail`](Self::fail)) is served first. `None` stops
    /// them. `false` when there is no such account.
    pub fn fail_randomly(&self, account: &str, faults: Option<RandomFaults>) -> bool {
        self.with_account(account, |a| a.faults.set_random(faults))
            .is_some()
    }

    /// Empties the fault queue of `account` and stops its random faults.
    pub fn clear_faults(&self, account: &str) -> bool {
        self.with_account(account, |a| a.faults.clear()).is_some()
    }

    /// Changes the limits of `account` at runtime (`None`: unlimited). What the window already
    /// holds stays in it.
    pub fn set_limits(&self, account: &str, rpm: Option<u32>, tpm: Option<u64>) -> bool {
        self.with_account(account, |a| a.window.set_limits(rpm, tpm))
            .is_some()
    }

    /// Changes the fixed latency of `account`.
    pub fn set_latency(&self, account: &str, latency: Duration) -> bool {
        self.with_account(account, |a| a.config.latency = latency)
            .is_some()
    }

    /// The counters of `account` (all zero for an unknown name).
    pub fn stats(&self, account: &str) -> SimStats {
        self.with_account(account, |a| a.stats).unwrap_or_default()
    }

    /// Every request `account` received, oldest first.
    pub fn received(&self, account: &str) -> Vec<ReceivedRequest> {
        self.with_account(account, |a| a.received.clone())
            .unwrap_or_default()
    }

    /// Forgets the request log and counters of `account` (limits, window and faults stay).
    pub fn reset_stats(&self, account: &str) -> bool {
        self.with_account(account, |a| {
            a.received.clear();
            a.stats = SimStats::default();
        })
        .is_some()
    }

    /// What the rate-limit window of `account` holds now.
    pub fn window(&self, account: &str) -> Option<WindowState> {
        let now = self.shared.clock.now();
        self.with_account(account, |a| a.window.state(now))
    }

    /// Stops serving: the listener closes and every open connection (including hanging
    /// requests) is dropped.
    pub async fn shutdown(self) {
        let mut this = self;
        this.task.abort();
        // An aborted task finishes at its next poll; the bound only guards against a runtime
        // that is itself shutting down.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut this.task).await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
