//! Several keys behind one account's URL, like two OpenAI projects or organizations reached
//! through the same base URL: each key has its own limit windows, fault queue, counters and
//! request log, and a key can be revoked during a test.
//!
//! Why each key is an account of its own underneath: an account already is exactly "one
//! key's limits, faults and log", so a key set is a list of accounts (named
//! `{name}.key{N}`, N from 1) and one lookup at the door — the key a request carries picks
//! the account that answers it ([`resolve`]). A request with an unknown key (or none) is
//! answered by the first key's account, which refuses it with the real 401 body. Revoking a
//! key ([`Simulator::revoke_key`](super::Simulator::revoke_key)) replaces the account's
//! expected key with a random one, so the next request with the old key gets the same 401
//! `invalid_api_key` body a revoked OpenAI key gets (`Incorrect API key provided: sk-abc…`,
//! the key masked as the API masks it).

use secrecy::{ExposeSecret, SecretString};

use super::account::SimAccount;
use super::Shared;

/// The keys of one simulated account (see the module docs).
///
/// ```
/// # async fn run() -> std::io::Result<()> {
/// use image_router::sim::{SimAccount, SimKeys, Simulator};
/// let sim = Simulator::builder()
///     .account_keys(
///         "openai",
///         SimKeys::new()
///             .key("sk-sim-project-a", SimAccount::new().rpm(6))
///             .key("sk-sim-project-b", SimAccount::new().rpm(6)),
///     )
///     .start()
///     .await?;
/// let base_url = sim.openai_base_url("openai"); // both keys work here
/// assert_eq!(sim.key_account("openai", 1).as_deref(), Some("openai.key2"));
/// # let _ = base_url; Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SimKeys {
    pub(super) keys: Vec<SimAccount>,
}

impl SimKeys {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key with its own account settings (limits, latency, organization...); the
    /// account's own `api_key` is replaced by `key`.
    pub fn key(mut self, key: impl Into<String>, account: SimAccount) -> Self {
        self.keys.push(account.api_key(key));
        self
    }
}

/// The account name of the `index`-th key (0-based) of `name`.
pub(super) fn member_name(name: &str, index: usize) -> String {
    format!("{name}.key{}", index + 1)
}

/// The account that answers a request to `account` carrying `sent` keys (bearer, Azure
/// `api-key`): for a key set, the member given that key (also once it is revoked: the
/// member then refuses it), else its first member (which refuses the unknown key); any
/// other account answers for itself.
pub(super) fn resolve(shared: &Shared, account: String, sent: &[Option<&str>]) -> String {
    let Some(members) = shared.keyed.get(&account) else {
        return account;
    };
    let given = |k: &SecretString| {
        sent.iter()
            .flatten()
            .any(|s| s.as_bytes() == k.expose_secret().as_bytes())
    };
    members
        .iter()
        .find(|(_, k)| given(k))
        .or(members.first())
        .map(|(m, _)| m.clone())
        .unwrap_or(account)
}

/// A key nobody holds: what a revoked key's account expects from now on.
pub(super) fn revoked_key() -> SecretString {
    let r: u128 = rand::random();
    SecretString::from(format!("sk-sim-revoked-{r:032x}"))
}
