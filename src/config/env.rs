//! Keys from the environment: `api_key_env` / `bearer_token_env` name variables, and the
//! values are read into [`SecretString`]s only when the router is built.
//!
//! Why the name is checked so closely: people paste the key itself into `api_key_env`. An
//! OpenAI key starts with `sk-`, but an Azure key is 32 hex digits and a proxy's key can be
//! anything, and every message that names the variable (`… is not set`, `status`, `doctor`)
//! would print it. A value that is not shaped like a variable name is refused without being
//! echoed (see [`crate::redact::looks_like_key`]).

use secrecy::SecretString;

use super::locate::Locator;
use super::router::S;
use crate::config_error::ConfigError;
use crate::redact;

/// A key or token read from the environment.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The value (never printed).
    pub secret: SecretString,
    /// Whether it is an Entra ID bearer token (Azure) rather than an API key.
    pub bearer: bool,
    /// The environment variable it came from.
    pub var: String,
}

/// Reads a variable from the process environment.
pub fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// The message for a value that is not a variable name; never contains the value.
pub(in crate::config) fn not_a_name(field: &str, looks_like_key: bool) -> String {
    let key = field.rsplit('.').next().unwrap_or(field);
    if looks_like_key {
        format!(
            "{key} must name an environment variable; the value looks like a key itself. \
             Put the key in a variable (e.g. `export MY_KEY=...`) and write its name here"
        )
    } else {
        format!(
            "{key} must be the NAME of an environment variable (letters, digits, `_`, not \
             starting with a digit); never write the key itself in the file"
        )
    }
}

/// `api_key_env`: one variable name, or a list of them (several keys behind one provider).
#[derive(Debug)]
pub(in crate::config) enum KeyEnvs {
    One(String),
    Many(Vec<String>),
}

impl<'de> serde::Deserialize<'de> for KeyEnvs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KeyEnvs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a variable name or a list of variable names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyEnvs, E> {
                Ok(KeyEnvs::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<KeyEnvs, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = a.next_element::<String>()? {
                    names.push(n);
                }
                Ok(KeyEnvs::Many(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// `api_key_env`: one variable name or a list of them (several keys), each checked as
/// [`env_name`]; a list must not be empty nor name a variable twice. Errors name the list's
/// element (`api_key_env[1]`), never its value when it looks like a key.
pub(super) fn env_names(
    cx: &Locator<'_>,
    field: String,
    v: &S<KeyEnvs>,
) -> Result<Vec<String>, ConfigError> {
    let Some(s) = v else { return Ok(Vec::new()) };
    let list = match s.get_ref() {
        KeyEnvs::One(name) => {
            let one = Some(toml::Spanned::new(s.span(), name.clone()));
            return Ok(env_name(cx, field, &one)?.into_iter().collect());
        }
        KeyEnvs::Many(list) => list,
    };
    if list.is_empty() {
        return Err(cx.err(
            field,
            s,
            "an empty list names no key; list at least one variable name",
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let one = Some(toml::Spanned::new(s.span(), name.clone()));
        let Some(name) = env_name(cx, f.clone(), &one)? else {
            continue;
        };
        if let Some(j) = names.iter().position(|n| *n == name) {
            return Err(cx.err(
                f,
                s,
                format!("{name} is listed twice (also at index {j}); each key once"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// An `api_key_env` / `bearer_token_env` value: a variable name, trimmed.
pub(super) fn env_name(
    cx: &Locator<'_>,
    field: String,
    v: &S<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(s) = v else { return Ok(None) };
    let name = s.get_ref().trim();
    if name.is_empty() {
        return Err(cx.err(field, s, "must not be empty"));
    }
    if !redact::is_env_var_name(name) {
        let msg = not_a_name(&field, redact::looks_like_key(name));
        return Err(cx.err(field, s, msg));
    }
    Ok(Some(name.to_string()))
}
