//! Success bodies → images.
//!
//! A 2xx is only a success if it carries at least one image: invalid JSON, a missing or
//! empty `data`, an item with neither `b64_json` nor `url`, bad base64 or a failed download
//! are all [`ErrorKind::Decode`], so the router treats them as the provider's fault and
//! fails over instead of handing the caller an empty answer.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{ErrorKind, ProviderError};
use crate::providers::http::{download, Received};
use crate::request::OutputFormat;
use crate::response::{Image, ImagesResponse, ProviderResponse};

pub(crate) fn decode_error(
    provider: &str,
    received: &Received,
    msg: impl Into<String>,
) -> ProviderError {
    let mut e = ProviderError::new(provider, ErrorKind::Decode, msg).with_status(received.status);
    if let Some(id) = &received.request_id {
        e = e.with_request_id(id.clone());
    }
    e
}

/// Decodes base64 (standard alphabet; whitespace and missing padding tolerated).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(cleaned.as_bytes()).ok())
        .filter(|b| !b.is_empty())
}

/// Decodes a `data:image/...;base64,...` URL.
pub(crate) fn decode_data_url(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    decode_base64(data)
}

/// Fetches one image given as a URL (data URL decoded, http(s) URL downloaded).
pub(crate) async fn fetch_url(
    provider: &str,
    client: &reqwest::Client,
    received: &Received,
    url: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Bytes, ProviderError> {
    if url.starts_with("data:") {
        return decode_data_url(url)
            .map(Bytes::from)
            .ok_or_else(|| decode_error(provider, received, "undecodable data URL"));
    }
    download(provider, client, url, deadline, timeout)
        .await
        .map_err(|mut e| {
            e.status = e.status.or(Some(received.status));
            if e.request_id.is_none() {
                e.request_id = received.request_id.clone();
            }
            e
        })
}

/// Decodes an OpenAI `ImagesResponse` body into a [`ProviderResponse`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn decode_images(
    provider: &str,
    client: &reqwest::Client,
    received: Received,
    model: &str,
    fallback: OutputFormat,
    deadline: Instant,
    timeout: Duration,
) -> Result<ProviderResponse, ProviderError> {
    let parsed: ImagesResponse = serde_json::from_slice(&received.body).map_err(|e| {
        decode_error(
            provider,
            &received,
            format!("success response is not a valid images response: {e}"),
        )
    })?;
    if parsed.data.is_empty() {
        return Err(decode_error(
            provider,
            &received,
            "success response contains no images (`data` missing or empty)",
        ));
    }
    let fallback = parsed
        .output_format
        .as_deref()
        .and_then(|f| f.parse::<OutputFormat>().ok())
        .unwrap_or(fallback);
    let mut images = Vec::with_capacity(parsed.data.len());
    for (i, item) in parsed.data.iter().enumerate() {
        let (bytes, url) = if let Some(b64) = item.b64_json.as_deref().filter(|s| !s.is_empty()) {
            let bytes = decode_base64(b64).ok_or_else(|| {
                decode_error(
                    provider,
                    &received,
                    format!("data[{i}].b64_json is not valid base64"),
                )
            })?;
            (Bytes::from(bytes), None)
        } else if let Some(url) = item.url.as_deref().filter(|s| !s.is_empty()) {
            let bytes = fetch_url(provider, client, &received, url, deadline, timeout).await?;
            (bytes, Some(url.to_string()))
        } else {
            return Err(decode_error(
                provider,
                &received,
                format!("data[{i}] has neither `b64_json` nor `url`"),
            ));
        };
        let mut image = Image::new(bytes, fallback);
        image.revised_prompt = item.revised_prompt.clone();
        image.url = url;
        images.push(image);
    }
    let mut resp = ProviderResponse::new(images, model);
    resp.usage = parsed.usage;
    resp.created = parsed.created;
    fill(&mut resp, received);
    Ok(resp)
}

/// Copies the transport facts into a response.
pub(crate) fn fill(resp: &mut ProviderResponse, received: Received) {
    resp.status = received.status;
    resp.latency = received.latency;
    resp.rate_limits = received.rate_limits;
    resp.request_id = received.request_id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("aG\nk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("!!!"), None);
        assert_eq!(decode_base64(""), None);
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            decode_data_url("data:image/png;base64,aGk=").as_deref(),
            Some(&b"hi"[..])
        );
        assert_eq!(decode_data_url("data:text/plain,hi"), None);
    }
}
