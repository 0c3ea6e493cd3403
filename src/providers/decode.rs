//! Success bodies → images.
//!
//! A 2xx is only a success if it carries at least one image: invalid JSON, a missing or
//! empty `data`, an item with neither `b64_json` nor `url`, bad base64 or a failed download
//! are all [`ErrorKind::Decode`], so the router treats them as the provider's fault and
//! fails over instead of handing the caller an empty answer.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::http::{download, Received};
use super::image::{check_format, looks_like_image};
use super::Call;
use crate::error::{ErrorKind, ProviderError};
use crate::quota::usage::Usage;
use crate::response::{Image, ProviderResponse};

/// An `ImagesResponse` body as the decoder reads it: the same fields, types and defaults as
/// [`ImagesResponse`](crate::ImagesResponse) (so the same bodies are accepted and refused), but
/// every string borrowed from the body when it has no JSON escapes. Parsing into the owned type
/// copied the base64 text (the size of the body) and each echo field into its own `String`
/// only to drop them after decoding: six allocations per answer with the tiny image and a
/// 2 MB copy with a 1024×1024 one (issue 16).
#[derive(Deserialize)]
struct WireImages<'a> {
    #[serde(default)]
    created: i64,
    #[serde(default, borrow)]
    data: Vec<WireItem<'a>>,
    // The echo fields are not used, but are typed as in `ImagesResponse`: a body whose echo
    // field is not a string stays an invalid answer.
    #[serde(default, borrow)]
    #[allow(dead_code)]
    background: Option<Text<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    output_format: Option<Text<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    size: Option<Text<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    quality: Option<Text<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// One element of `data`, as [`ImageData`](crate::ImageData) but borrowed.
#[derive(Deserialize)]
struct WireItem<'a> {
    #[serde(default, borrow)]
    b64_json: Option<Text<'a>>,
    #[serde(default, borrow)]
    url: Option<Text<'a>>,
    #[serde(default, borrow)]
    revised_prompt: Option<Text<'a>>,
}

/// A JSON string, borrowed from the body unless it has escapes. (A newtype because serde
/// borrows a `Cow<str>` only as a field of its own, not inside an `Option`.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

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
    // The common case — one unbroken padded string, as OpenAI and Azure send it — decodes
    // straight from the body's text; only a text the strict decoder refuses is copied without
    // its whitespace and tried again (copying a 2 MB image character by character on every
    // answer was most of the router's overhead over a direct call).
    if let Ok(bytes) = STANDARD.decode(text.as_bytes()) {
        return Some(bytes).filter(|b| !b.is_empty());
    }
    let cleaned: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if cleaned.len() < text.len() {
        if let Ok(bytes) = STANDARD.decode(&cleaned) {
            return Some(bytes).filter(|b| !b.is_empty());
        }
    }
    [STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(&cleaned).ok())
        .filter(|b| looks_like_image(b))
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

/// How an error names the `i`th item of an answer's `data`: `data[i]`. Formatted only when an
/// error is made, not for every item of every answer (a `format!` per image was an
/// allocation on the success path; issue 16).
struct DataItem(usize);

impl fmt::Display for DataItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data[{}]", self.0)
    }
}

/// Fetches one image given as a URL (data URL decoded, http(s) URL downloaded within the
/// call's rules and limits) and checks it is an image of the requested format. `what` names
/// the item in errors (`data[0]`, `the chat answer's image 1`); it is formatted only into an
/// error.
pub(crate) async fn fetch_url(
    call: &Call<'_>,
    received: &Received,
    url: &str,
    what: &(dyn fmt::Display + Sync),
) -> Result<Image, ProviderError> {
    let provider = &call.common.name;
    let bytes = if url.starts_with("data:") {
        let bytes = decode_data_url(url).ok_or_else(|| {
            decode_error(provider, received, format!("{what}: undecodable data URL"))
        })?;
        if bytes.len() as u64 > call.limits.image {
            return Err(decode_error(
                provider,
                received,
                format!(
                    "{what}: data URL exceeds the limit of {} bytes",
                    call.limits.image
                ),
            ));
        }
        Bytes::from(bytes)
    } else {
        download(
            provider,
            &call.common.downloader()?,
            &call.common.downloads,
            url,
            call.limits.image,
            call.deadline,
            call.timeout,
        )
        .await
        .map_err(|mut e| {
            e.status = e.status.or(Some(received.status));
            if e.request_id.is_none() {
                e.request_id = received.request_id.clone();
            }
            e
        })?
    };
    let mut image = image_of(call, received, bytes, what)?;
    if !url.starts_with("data:") {
        image.url = Some(url.to_string());
    }
    Ok(image)
}

/// An [`Image`] from bytes that must be an image of the requested format (`what` names the
/// item in an error).
pub(crate) fn image_of(
    call: &Call<'_>,
    received: &Received,
    bytes: Bytes,
    what: &(dyn fmt::Display + Sync),
) -> Result<Image, ProviderError> {
    let format = check_format(&bytes, call.limits.format, &call.common.name)
        .map_err(|why| decode_error(&call.common.name, received, format!("{what} {why}")))?;
    Ok(Image::new(bytes, format))
}

/// Keeps at most `n` items, saying so in the log when a provider sent more.
pub(crate) fn at_most<T>(items: &mut Vec<T>, n: usize, provider: &str) {
    if items.len() > n {
        tracing::warn!(
            provider,
            sent = items.len(),
            requested = n,
            "provider sent more images than requested; extra ones ignored"
        );
        items.truncate(n);
    }
}

/// Decodes an OpenAI `ImagesResponse` body into a [`ProviderResponse`]: at most `n` images,
/// each a real image. Every base64 item is checked (it is already in memory, and a broken one
/// means a broken answer); URL items past the `n`th are never fetched.
///
/// In two ways with the same outcome: an answer whose images are all inline (base64, the
/// usual case) is decoded without awaiting anything ([`decode_inline`]); one with an image to
/// fetch goes through [`decode_fetching`], boxed. A fetch is a whole second HTTP call, whose
/// future, with the loop's state around it, was most of the size of every provider call's
/// future, inline answers included (issue 16).
///
/// A function returning an `async move` block rather than an `async fn`, which would keep the
/// 192-byte `received` twice in its future's state (rust-lang/rust#62958).
pub(crate) fn decode_images<'a>(
    call: &'a Call<'_>,
    received: Received,
    model: &'a str,
) -> impl std::future::Future<Output = Result<ProviderResponse, ProviderError>> + Send + 'a {
    async move {
        // Not a `match`: its scrutinee, a whole response, would be kept across the await.
        if let Some(mut resp) = decode_inline(call, &received, model)? {
            fill(&mut resp, received);
            return Ok(resp);
        }
        Box::pin(decode_fetching(call, received, model)).await
    }
}

/// [`decode_images`] for an answer with nothing to fetch; `None` as soon as a wanted item is
/// a URL (the answer is then decoded again from the start, by [`decode_fetching`], which
/// gives what the loop here would have given up to that item).
fn decode_inline(
    call: &Call<'_>,
    received: &Received,
    model: &str,
) -> Result<Option<ProviderResponse>, ProviderError> {
    let (created, data, usage) = parse(call, received)?;
    let sent = data.len();
    let mut images = Vec::with_capacity(sent.min(call.limits.n));
    for (i, item) in data.into_iter().enumerate() {
        let wanted = images.len() < call.limits.n;
        let mut image = match inline_item(call, received, &item, i)? {
            Item::Inline(image) => image,
            Item::Url(_) if !wanted => continue,
            Item::Url(_) => return Ok(None),
        };
        image.revised_prompt = item.revised_prompt.map(|t| t.0.into_owned());
        if wanted {
            images.push(image);
        }
    }
    Ok(Some(assemble(call, images, sent, usage, created, model)))
}

/// [`decode_images`] for an answer with an image to fetch.
async fn decode_fetching(
    call: &Call<'_>,
    received: Received,
    model: &str,
) -> Result<ProviderResponse, ProviderError> {
    let (created, data, usage) = parse(call, &received)?;
    let sent = data.len();
    let mut images = Vec::with_capacity(sent.min(call.limits.n));
    for (i, item) in data.into_iter().enumerate() {
        let wanted = images.len() < call.limits.n;
        let mut image = match inline_item(call, &received, &item, i)? {
            Item::Inline(image) => image,
            Item::Url(_) if !wanted => continue,
            Item::Url(url) => fetch_url(call, &received, url, &DataItem(i)).await?,
        };
        image.revised_prompt = item.revised_prompt.map(|t| t.0.into_owned());
        if wanted {
            images.push(image);
        }
    }
    let mut resp = assemble(call, images, sent, usage, created, model);
    fill(&mut resp, received);
    Ok(resp)
}

/// The answer's `created`, `data` (at least one item) and `usage`, borrowed from its body.
/// The echo fields are dropped here, so nothing of the parse outlives the caller's loop.
fn parse<'r>(
    call: &Call<'_>,
    received: &'r Received,
) -> Result<(i64, Vec<WireItem<'r>>, Option<Usage>), ProviderError> {
    let provider = &call.common.name;
    let WireImages {
        created,
        data,
        usage,
        ..
    } = serde_json::from_slice(&received.body).map_err(|e| {
        decode_error(
            provider,
            received,
            format!("success response is not a valid images response: {e}"),
        )
    })?;
    if data.is_empty() {
        return Err(decode_error(
            provider,
            received,
            "success response contains no images (`data` missing or empty)",
        ));
    }
    Ok((created, data, usage))
}

/// What one item of `data` carries.
enum Item<'r> {
    /// Its image, from its base64.
    Inline(Image),
    /// The URL of its image, to fetch.
    Url(&'r str),
}

/// The `i`th item of `data`: its base64 decoded into a checked image, or its URL; an error
/// when the base64 is broken or the item has neither.
fn inline_item<'r>(
    call: &Call<'_>,
    received: &Received,
    item: &'r WireItem<'_>,
    i: usize,
) -> Result<Item<'r>, ProviderError> {
    let provider = &call.common.name;
    let what = DataItem(i);
    let b64 = item.b64_json.as_ref().map(Text::as_str);
    let url = item.url.as_ref().map(Text::as_str);
    if let Some(b64) = b64.filter(|s| !s.is_empty()) {
        let bytes = decode_base64(b64).ok_or_else(|| {
            decode_error(
                provider,
                received,
                format!("{what}.b64_json is not valid base64"),
            )
        })?;
        Ok(Item::Inline(image_of(
            call,
            received,
            Bytes::from(bytes),
            &what,
        )?))
    } else if let Some(url) = url.filter(|s| !s.is_empty()) {
        Ok(Item::Url(url))
    } else {
        Err(decode_error(
            provider,
            received,
            format!("{what} has neither `b64_json` nor `url`"),
        ))
    }
}

/// The response of `images` kept out of the `sent` the answer carried (saying so in the log
/// when there were more than asked for), before the transport facts are filled in.
fn assemble(
    call: &Call<'_>,
    images: Vec<Image>,
    sent: usize,
    usage: Option<Usage>,
    created: i64,
    model: &str,
) -> ProviderResponse {
    if sent > images.len() {
        tracing::warn!(
            provider = call.common.name.as_str(),
            sent,
            requested = call.limits.n,
            "provider sent more images than requested; extra ones ignored"
        );
    }
    let mut resp = ProviderResponse::new(images, model);
    resp.usage = usage;
    resp.created = created;
    resp
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

    /// The borrowed view accepts and refuses exactly the bodies `ImagesResponse` does, and reads
    /// the same values (escaped strings included, which it cannot borrow).
    #[test]
    fn the_borrowed_view_reads_what_images_response_reads() {
        use crate::response::ImagesResponse;
        let bodies = [
            r#"{"created":1,"data":[{"b64_json":"aGk=","revised_prompt":"a \"cat\""}]}"#,
            r#"{"data":[{"url":"https:\/\/cdn.example\/a.png"},{"b64_json":null}]}"#,
            r#"{"created":2,"data":[],"background":"opaque","output_format":"png","size":"1024x1024","quality":"low","usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}"#,
            r#"{"data":[{"b64_json":"aGk="}],"background":null,"extra":{"x":[1,2]}}"#,
            r#"{}"#,
            r#"{"data":[{"b64_json":"aGk="}],"size":5}"#,
            r#"{"data":[{"b64_json":7}]}"#,
            r#"{"data":{"b64_json":"aGk="}}"#,
            r#"{"created":"1","data":[]}"#,
            r#"{"data":[],"data":[]}"#,
            r#"{"data":[{"url":"a","url":"b"}]}"#,
            r#"{"usage":{"input_tokens":-1}}"#,
            r#"[]"#,
            r#"{"data":[{"b64_json":"aGk="}]"#,
            r#""#,
        ];
        // What the view is for: an unescaped string (the base64 text) is not copied.
        let view: WireImages<'_> = serde_json::from_str(bodies[0]).unwrap();
        let b64 = view.data[0].b64_json.as_ref().map(|t| &t.0);
        assert!(matches!(b64, Some(Cow::Borrowed("aGk="))));
        for body in bodies {
            let owned = serde_json::from_str::<ImagesResponse>(body);
            let view = serde_json::from_str::<WireImages<'_>>(body);
            assert_eq!(owned.is_ok(), view.is_ok(), "{body}");
            let (Ok(owned), Ok(view)) = (owned, view) else {
                continue;
            };
            assert_eq!(owned.created, view.created, "{body}");
            assert_eq!(owned.usage, view.usage, "{body}");
            assert_eq!(owned.data.len(), view.data.len(), "{body}");
            let text = |t: &Option<Text<'_>>| t.as_ref().map(|t| t.as_str().to_string());
            for (o, v) in owned.data.iter().zip(&view.data) {
                assert_eq!(o.b64_json, text(&v.b64_json), "{body}");
                assert_eq!(o.url, text(&v.url), "{body}");
                assert_eq!(o.revised_prompt, text(&v.revised_prompt), "{body}");
            }
        }
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
