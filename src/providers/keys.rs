//! Credential checks: a key must be set, not blank and safe to send as a header value, and
//! the header that carries it is marked sensitive so reqwest and http never print it. Apart
//! so every provider applies the same rules to its key.

use secrecy::{ExposeSecret, SecretString};

use crate::config_error::ConfigError;
use crate::error::ProviderError;

/// Checks a key is set and not blank.
pub(super) fn check_key(
    key: Option<SecretString>,
    field: &str,
) -> Result<SecretString, ConfigError> {
    match key {
        None => Err(ConfigError::new(field, "is required")),
        Some(k) => {
            check_header_safe(&k, field)?;
            Ok(k)
        }
    }
}

pub(super) fn check_header_safe(key: &SecretString, field: &str) -> Result<(), ConfigError> {
    let k = key.expose_secret();
    if k.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if k.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(ConfigError::new(
            field,
            "contains characters not allowed in an HTTP header",
        ));
    }
    Ok(())
}

/// A sensitive header value (never printed by reqwest/http).
pub(super) fn secret_header(
    value: String,
    provider: &str,
) -> Result<reqwest::header::HeaderValue, ProviderError> {
    let mut v = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
        ProviderError::new(
            provider,
            crate::ErrorKind::InvalidRequest,
            "credential is not a valid header value",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}
