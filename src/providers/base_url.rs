//! Base URL helpers: parsing and checking a configured base URL (http or https, no query or
//! fragment) and appending path segments to it. Apart so every provider reads its URLs the
//! same way.

use crate::config_error::ConfigError;

/// Parses and checks an http(s) base URL.
pub(super) fn parse_base_url(raw: &str, field: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| ConfigError::new(field, format!("not a valid URL ({e}): {raw:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(field, "must be an http or https URL"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ConfigError::new(
            field,
            "must be an absolute URL with a host",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(field, "must not have a query or fragment"));
    }
    Ok(url)
}

/// Parses an OpenAI-style API base URL: as [`parse_base_url`]; a full endpoint URL pasted as
/// the base (`…/v1/images/generations`, `…/v1/chat/completions`) loses the endpoint part, and
/// a bare host (`https://proxy.example`, no path) gets the API version path `/v1`.
///
/// Why: OpenAI's and every OpenAI-compatible server's paths live under `/v1`, and leaving
/// `/v1` off the base URL, or pasting the whole endpoint URL, are the most common
/// configuration mistakes (every call then 404s). Any other path (`/v1`, `/openai/v1`,
/// `/api/v2`) is used exactly as given.
pub(super) fn parse_api_base_url(raw: &str, field: &str) -> Result<url::Url, ConfigError> {
    let mut url = parse_base_url(raw, field)?;
    let path = url.path().trim_end_matches('/').to_string();
    for endpoint in ["/images/generations", "/images/edits", "/chat/completions"] {
        if let Some(base) = path.strip_suffix(endpoint) {
            url.set_path(base);
            break;
        }
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/v1");
    }
    Ok(url)
}

/// `base` with `segments` appended (a trailing slash on `base` is ignored).
pub(super) fn join(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}
