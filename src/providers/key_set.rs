//! Several keys behind one provider: [`ProviderKeys`], one provider object per key, each
//! known by a non-secret label.
//!
//! Why one provider object per key: the key signs the request, and everything the router
//! keeps about an account (its rate-limit windows, budget, breaker, health) belongs to the
//! key, not to the URL. The router turns each member into a provider slot of its own named
//! `{name}/{label}` (see `RouterBuilder::provider_keys`), so the attempt trace, errors,
//! metrics and `status()` name the key by its label.
//!
//! Why sibling slots rather than several members inside one slot: a slot already is "one
//! signer with its own store, health and breaker", and the request path (validate, filter,
//! rank, admit, call, settle, decide) works on slots. Expanding a key set into sibling slots
//! that share a group keeps that path unchanged; the two things a key set adds are local:
//! the plan orders a group's members by room among the places the strategy gave them (so
//! requests go to the key with the most room), and the status lists each group's keys under
//! it. A denial (401, `insufficient_quota`, a tier without access, an unverified
//! organization) opens that key's breaker only, so the key is set aside with its reason while
//! the request fails over to a sibling like to any other provider.
//!
//! Budgets: each key gets the configured budgets, like its limits. Keys of separate
//! projects or organizations are billed separately, each against its own billing limit, and
//! the issue asks for each key "with its own ... budget"; a shared cap over all keys is what
//! the router-wide budget (`RouterBuilder::budget`) already is.
//!
//! Why labels are checked so closely: a label is printed everywhere (traces, status, doctor,
//! metrics). It must be shaped like an environment variable's name (`OPENAI_KEY_A`; the
//! config file uses the variable's name) and is refused when it looks like a key, equals one
//! of the set's keys or is the start of one: a label can never leak a key or a prefix of it.
//! The error names the label's position (`keys[1]`), never its text.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::config_error::ConfigError;
use crate::provider::Provider;

/// One provider's keys: each a provider object with its own key, known by a label.
///
/// Built by the built-in builders' `build_keys` ([`OpenAiBuilder::build_keys`](super::OpenAiBuilder::build_keys),
/// [`AzureBuilder::build_keys`](super::AzureBuilder::build_keys),
/// [`CompatibleBuilder::build_keys`](super::CompatibleBuilder::build_keys)), or by hand for
/// an application's own provider with [`ProviderKeys::key`] (name each member
/// `{name}/{label}` so its errors say which key failed). Hand it to
/// [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys).
///
/// ```
/// use image_router::providers::OpenAi;
/// let keys = OpenAi::builder()
///     .name("openai")
///     .build_keys([("OPENAI_KEY_A", "sk-key-a-0123456789"), ("OPENAI_KEY_B", "sk-key-b-0123456789")])
///     .unwrap();
/// assert_eq!(keys.labels(), vec!["OPENAI_KEY_A", "OPENAI_KEY_B"]);
/// assert_eq!(keys.members()[0].1.name(), "openai/OPENAI_KEY_A");
/// assert!(!format!("{keys:?}").contains("sk-key"));
/// ```
#[derive(Clone)]
pub struct ProviderKeys {
    name: String,
    members: Vec<(String, Arc<dyn Provider>)>,
}

impl fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("name", &self.name)
            .field("labels", &self.labels())
            .finish()
    }
}

impl ProviderKeys {
    /// An empty set for the provider `name` (the router refuses a set without keys).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            members: Vec::new(),
        }
    }

    /// Adds a key: `provider` signs its requests with it, `label` names it (checked when the
    /// router is built: a variable-name shape, unique within the set).
    #[must_use]
    pub fn key(mut self, label: impl Into<String>, provider: impl Provider + 'static) -> Self {
        self.members.push((label.into(), Arc::new(provider)));
        self
    }

    /// [`key`](Self::key) with a shared provider.
    #[must_use]
    pub fn key_arc(mut self, label: impl Into<String>, provider: Arc<dyn Provider>) -> Self {
        self.members.push((label.into(), provider));
        self
    }

    /// The provider's name (the group the keys belong to).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels, in the order the keys were added.
    pub fn labels(&self) -> Vec<&str> {
        self.members.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// Each key's label and provider object.
    pub fn members(&self) -> &[(String, Arc<dyn Provider>)] {
        &self.members
    }

    /// Checks the set: a name, at least one key, every label shaped like a variable name
    /// (not like a key) and unique. Errors name `keys` or `keys[i]`, never a label's text
    /// when it may be a key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.members.is_empty() {
            return Err(ConfigError::new(
                "keys",
                "list at least one key (an empty list names no credential)",
            ));
        }
        for (i, (label, _)) in self.members.iter().enumerate() {
            check_label(label).map_err(|m| ConfigError::new(format!("keys[{i}]"), m))?;
            if let Some(j) = self.members[..i].iter().position(|(l, _)| l == label) {
                return Err(ConfigError::new(
                    format!("keys[{i}]"),
                    format!(
                        "duplicate key label {label:?} (also keys[{j}]): labels must be unique"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The label rule (see the module docs); the message never contains the label.
fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("a key's label must not be empty");
    }
    if !crate::redact::is_env_var_name(label) {
        return Err(
            "a key's label must be shaped like an environment variable's name (letters, \
             digits, `_`, not starting with a digit) and must not look like a key",
        );
    }
    Ok(())
}

/// Builds one member per `(label, key)` with `build` (which gets the member's name and key),
/// refusing a label that equals or starts a key of the set. Shared by the three built-in
/// builders' `build_keys`.
pub(super) fn build_members<L, K, P>(
    name: &str,
    keys: impl IntoIterator<Item = (L, K)>,
    mut build: impl FnMut(String, SecretString) -> Result<P, ConfigError>,
) -> Result<ProviderKeys, ConfigError>
where
    L: Into<String>,
    K: Into<SecretString>,
    P: Provider + 'static,
{
    let keys: Vec<(String, SecretString)> = keys
        .into_iter()
        .map(|(l, k)| (l.into(), k.into()))
        .collect();
    let mut set = ProviderKeys::new(name);
    for (i, (label, _)) in keys.iter().enumerate() {
        check_label(label).map_err(|m| ConfigError::new(format!("keys[{i}]"), m))?;
        let leaks = keys.iter().any(|(_, k)| {
            let k = k.expose_secret();
            k.starts_with(label.as_str()) || (label.len() >= 8 && k.contains(label.as_str()))
        });
        if leaks {
            return Err(ConfigError::new(
                format!("keys[{i}]"),
                "a key's label must not be (part of) a key: it is printed in traces and status",
            ));
        }
    }
    for (i, (label, key)) in keys.into_iter().enumerate() {
        let member = build(format!("{name}/{label}"), key).map_err(|e| {
            let mut e = e.scoped(&format!("keys[{i}]"));
            e.message = crate::redact::text(&e.message);
            e
        })?;
        set = set.key(label, member);
    }
    set.validate()?;
    Ok(set)
}
