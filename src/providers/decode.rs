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

/// Decodes base64: the standard padded alphabet (what OpenAI and Azure send; line breaks
/// tolerated) gives whatever bytes it encodes. The lenient forms (no padding, URL-safe
/// alphabet) are accepted only when they decode to an image file.
///
/// Why the split: many short ASCII strings ("not-base64", "thisisnotbase64") happen to be
/// valid unpadded or URL-safe base64 and decode to a few bytes of garbage, which would turn a
/// provider's broken answer into a "successful" image. Real encoders pad; a proxy that does not
/// still sends a real image, which the magic-number check recognises.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if let Ok(bytes) = STANDARD.decode(cleaned.as_bytes()) {
        return Some(bytes).filter(|b| !b.is_empty());
    }
    [STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(cleaned.as_bytes()).ok())
        .filter(|b| looks_like_image(b))
}

/// Whether `bytes` start like an image file: PNG, JPEG, WebP, GIF, or an ISO-BMFF image
/// (AVIF / HEIF).
pub(crate) fn looks_like_image(bytes: &[u8]) -> bool {
    OutputFormat::sniff(bytes).is_some()
        || bytes.starts_with(b"GIF87a")
        || bytes.starts_with(b"GIF89a")
        || (bytes.len() >= 12
            && &bytes[4..8] == b"ftyp"
            && [&b"avif"[..], b"avis", b"heic", b"heix", b"mif1"].contains(&&bytes[8..12]))
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
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("aG\nk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("!!!"), None);
        assert_eq!(decode_base64(""), None);
        // Unpadded / URL-safe: only when it is an image.
        assert_eq!(decode_base64("aGk"), None);
        assert_eq!(decode_base64("not-base64"), None);
        assert_eq!(decode_base64("thisisnotbase64"), None);
        let png = b"\x89PNG\r\n\x1a\n\xff\xfe-rest".to_vec();
        assert_eq!(
            decode_base64(&STANDARD_NO_PAD.encode(&png)),
            Some(png.clone())
        );
        assert_eq!(decode_base64(&URL_SAFE_NO_PAD.encode(&png)), Some(png));
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
