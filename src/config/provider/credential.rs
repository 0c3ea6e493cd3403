//! A provider's credential read from the environment through the variable its table names.
//! Apart from `env.rs` (which checks variable names and holds [`Credential`]) so that the
//! environment side never depends on the provider table: the provider uses `env`, not the
//! other way round.

use secrecy::SecretString;

use super::ProviderConfig;
use crate::config::env::{not_a_name, Credential};
use crate::config_error::ConfigError;
use crate::redact;

impl ProviderConfig {
    /// Reads the key (or Azure bearer token) from the environment through `env`. `Ok(None)`
    /// when the provider names no variable; an error naming the key and line when the
    /// variable is not set or empty, or when the name is not a variable name (never echoed
    /// then: it is probably the key).
    pub fn credential(
        &self,
        index: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Credential>, ConfigError> {
        for (key, var, bearer) in [
            ("api_key_env", &self.api_key_env, false),
            ("bearer_token_env", &self.bearer_token_env, true),
        ] {
            let Some(var) = var else { continue };
            let field = match (bearer, self.key_index) {
                (false, Some(k)) => format!("provider[{index}].{key}[{k}]"),
                _ => format!("provider[{index}].{key}"),
            };
            if !redact::is_env_var_name(var) {
                let msg = not_a_name(&field, redact::looks_like_key(var));
                return Err(ConfigError::new(field, msg).at_line(self.line_of(key)));
            }
            return match env(var) {
                Some(v) if !v.trim().is_empty() => Ok(Some(Credential {
                    secret: SecretString::from(v.trim().to_string()),
                    bearer,
                    var: var.clone(),
                })),
                _ => Err(ConfigError::new(
                    field,
                    format!(
                        "environment variable {var} is not set (or empty); export it with \
                         the {} for provider {:?}",
                        if bearer { "bearer token" } else { "API key" },
                        self.name
                    ),
                )
                .at_line(self.line_of(key))),
            };
        }
        Ok(None)
    }
}

impl ProviderConfig {
    /// For a provider whose `api_key_env` lists several variables: one table per key, each
    /// this table with that one variable and the name `{name}/{VARIABLE}` (the key's label is
    /// the variable's name, never its value). Empty for a provider with one key.
    pub fn keys(&self) -> Vec<ProviderConfig> {
        if self.api_key_envs.len() < 2 {
            return Vec::new();
        }
        self.api_key_envs
            .iter()
            .enumerate()
            .map(|(i, var)| {
                let mut member = self.clone();
                member.name = format!("{}/{var}", self.name);
                member.api_key_env = Some(var.clone());
                member.api_key_envs = vec![var.clone()];
                member.key_index = Some(i);
                member
            })
            .collect()
    }

    /// The name of the provider this table is one key of (its own name for a provider with
    /// one key).
    pub fn group_name(&self) -> &str {
        match self.key_index {
            Some(_) => self.name.rsplit_once('/').map_or(&self.name, |(g, _)| g),
            None => &self.name,
        }
    }
}
