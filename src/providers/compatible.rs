//! OpenAI-compatible proxies: the OpenAI images paths under another base URL
//! ([`CompatibleMode::Images`]), or chat completions returning the image inside the message
//! ([`CompatibleMode::Chat`]), with optional model renaming.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::decode::{at_most, decode_error, fetch_url, fill};
use super::{
    check_header_safe, check_usage, common_builder_methods, edit_form, generate_body, join,
    parse_api_base_url, sanitized, secret_header, send_images, Call, Common, CommonOptions, Shape,
};
use crate::config_error::ConfigError;
use crate::error::{ErrorKind, ProviderError};
use crate::provider::{CallContext, ProbeReport, Provider, ProviderKind};
use crate::quota::usage::Usage;
use crate::request::Capabilities;
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ProviderResponse;
use crate::stream::ProviderStream;

/// Which endpoint a proxy serves images on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompatibleMode {
    /// `POST {base}/images/generations` and `/images/edits`, as OpenAI.
    #[default]
    Images,
    /// `POST {base}/chat/completions`; the image comes back in the message. No edits.
    Chat,
}

/// An OpenAI-compatible proxy.
///
/// ```
/// use image_router::providers::{Compatible, CompatibleMode};
/// use image_router::Provider;
/// let p = Compatible::builder()
///     .base_url("http://localhost:8080/v1")
///     .api_key("proxy-key")
///     .rename_model("gpt-image-1", "openai/gpt-image-1")
///     .build()
///     .unwrap();
/// assert_eq!(p.wire_model("gpt-image-1"), "openai/gpt-image-1");
/// assert!(p.capabilities("some-new-model").is_some()); // unknown models allowed by default
/// ```
#[derive(Clone)]
pub struct Compatible {
    common: Common,
    key: Option<SecretString>,
    base: url::Url,
    mode: CompatibleMode,
    renames: BTreeMap<String, String>,
    streaming: Option<bool>,
}

impl fmt::Debug for Compatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Compatible");
        self.common.debug_fields(&mut d);
        d.field("base_url", &self.base.as_str())
            .field("api_key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("mode", &self.mode)
            .field("renames", &self.renames)
            .finish()
    }
}

/// Builder for [`Compatible`].
#[must_use]
#[derive(Clone, Default)]
pub struct CompatibleBuilder {
    common: CommonOptions,
    key: Option<SecretString>,
    base_url: Option<String>,
    mode: CompatibleMode,
    renames: Vec<(String, String)>,
    streaming: Option<bool>,
}

impl fmt::Debug for CompatibleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompatibleBuilder")
            .field("name", &self.common.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("mode", &self.mode)
            .field("renames", &self.renames)
            .finish()
    }
}

impl Compatible {
    /// A builder.
    pub fn builder() -> CompatibleBuilder {
        CompatibleBuilder::default()
    }

    /// The model name sent on the wire for `model` (after [`rename_model`](CompatibleBuilder::rename_model)).
    pub fn wire_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.renames.get(model).map(String::as_str).unwrap_or(model)
    }

    /// The mode.
    pub fn mode(&self) -> CompatibleMode {
        self.mode
    }
}

impl CompatibleBuilder {
    common_builder_methods!("compatible");

    /// Base URL, e.g. `https://proxy.example.com/v1` (required). Paths are appended to it
    /// (`{base}/images/generations`, `{base}/chat/completions`); a bare host such as
    /// `https://proxy.example.com` gets `/v1`, a pasted endpoint URL
    /// (`…/v1/images/generations`) is cut back to its base, any other path is kept as given.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// Bearer key (optional: some local proxies need none).
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Images or chat mode (default images).
    pub fn mode(mut self, mode: CompatibleMode) -> Self {
        self.mode = mode;
        self
    }
    /// Whether this images-mode proxy passes streamed answers through (`stream: true`;
    /// default: the catalog's `[kinds.compatible] images_streaming`, no). Chat mode never
    /// streams.
    pub fn streaming(mut self, yes: bool) -> Self {
        self.streaming = Some(yes);
        self
    }
    /// Send `to` as the wire `model` when the router asks for `from`.
    pub fn rename_model(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.push((from.into(), to.into()));
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Compatible, ConfigError> {
        let raw = self
            .base_url
            .ok_or_else(|| ConfigError::new("base_url", "is required"))?;
        let base = parse_api_base_url(&raw, "base_url")?;
        if let Some(k) = &self.key {
            check_header_safe(k, "api_key")?;
        }
        let common = self.common.build("compatible", true, base.host_str())?;
        let mut renames = BTreeMap::new();
        for (from, to) in self.renames {
            if from.trim().is_empty() || to.trim().is_empty() {
                return Err(ConfigError::new(
                    "rename_model",
                    "model names must not be empty",
                ));
            }
            renames.insert(from, to);
        }
        Ok(Compatible {
            common,
            key: self.key,
            base,
            mode: self.mode,
            renames,
            streaming: self.streaming,
        })
    }
}

impl Compatible {
    /// `{base}/{segments}`: the one place this provider's URLs are made.
    fn url(&self, segments: &[&str]) -> url::Url {
        join(&self.base, segments)
    }

    /// The bearer key, when one is set: the one place this provider's auth header is made.
    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        if let Some(k) = &self.key {
            let v = secret_header(format!("Bearer {}", k.expose_secret()), &self.common.name)?;
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(h)
    }

    fn post(&self, segments: &[&str]) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(self
            .common
            .client
            .post(self.url(segments))
            .headers(self.headers()?))
    }

    async fn chat(
        &self,
        req: &GenerateRequest,
        call: &Call<'_>,
        wire: &str,
    ) -> Result<ProviderResponse, ProviderError> {
        let name = &self.common.name;
        let body = json!({
            "model": wire,
            "messages": [{"role": "user", "content": req.prompt}],
        });
        let rb = self.post(&["chat", "completions"])?.json(&body);
        let received = call.execute(rb, None).await?;
        let v: Value = serde_json::from_slice(&received.body).map_err(|e| {
            decode_error(
                name,
                &received,
                format!("chat response is not valid JSON: {e}"),
            )
        })?;
        let mut urls = chat_image_urls(&v);
        if urls.is_empty() {
            return Err(decode_error(
                name,
                &received,
                "chat response contains no image (no URL, data URL or image part)",
            ));
        }
        at_most(&mut urls, call.limits.n, name);
        let mut images = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let what = format!("the chat answer's image {}", i + 1);
            images.push(fetch_url(call, &received, url, &what).await?);
        }
        let mut resp = ProviderResponse::new(images, wire);
        resp.created = v.get("created").and_then(Value::as_i64).unwrap_or(0);
        resp.usage = chat_usage(&v);
        fill(&mut resp, received);
        check_usage(&mut resp, &call.limits, name);
        Ok(resp)
    }
}

/// Chat usage mapped onto image usage: prompt → input, completion → output. The split into
/// image tokens is unknown, so no `output_tokens_details`.
fn chat_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut usage = Usage {
        input_tokens: n("prompt_tokens"),
        output_tokens: n("completion_tokens"),
        total_tokens: n("total_tokens"),
        ..Usage::default()
    };
    if usage.total_tokens == 0 {
        // Provider numbers: saturate rather than overflow.
        usage.total_tokens = usage.input_tokens.saturating_add(usage.output_tokens);
    }
    Some(usage)
}

/// Every image URL in `choices[0].message`: `images[].image_url.url`, array content parts with
/// `image_url.url`, and in text: markdown images, data URLs and plain http(s) URLs.
fn chat_image_urls(v: &Value) -> Vec<String> {
    let Some(message) = v.pointer("/choices/0/message") else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    let image_url = |item: &Value| -> Option<String> {
        match item.get("image_url")? {
            Value::String(s) => Some(s.clone()),
            other => other.get("url").and_then(Value::as_str).map(str::to_string),
        }
    };
    if let Some(Value::Array(images)) = message.get("images") {
        urls.extend(images.iter().filter_map(image_url));
    }
    match message.get("content") {
        Some(Value::String(text)) => urls.extend(urls_in_text(text)),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(u) = image_url(part) {
                    urls.push(u);
                } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                    urls.extend(urls_in_text(text));
                }
            }
        }
        _ => {}
    }
    let mut seen = std::collections::BTreeSet::new();
    urls.retain(|u| !u.is_empty() && seen.insert(u.clone()));
    urls
}

/// Image URLs in free text: `![alt](url)` first; otherwise bare `data:image/…` or http(s) URLs.
fn urls_in_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        let after = &rest[start + 2..];
        let Some(close) = after.find("](") else { break };
        let target = &after[close + 2..];
        let Some(end) = target.find(')') else { break };
        // `![x](url "title")`: the URL is the first word.
        let url = target[..end].split_whitespace().next().unwrap_or("");
        let url = url.trim_start_matches('<').trim_end_matches('>');
        if !url.is_empty() {
            out.push(url.to_string());
        }
        rest = &target[end + 1..];
    }
    if !out.is_empty() {
        return out;
    }
    for word in
        text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
    {
        // The URL may sit inside other punctuation: `[download](https://…)`, `(https://…)`.
        let start = ["data:image/", "https://", "http://"]
            .iter()
            .filter_map(|p| word.find(p))
            .min();
        let Some(start) = start else { continue };
        let url = word[start..].trim_end_matches(['.', ',', ')', ']', ';']);
        if !url.is_empty() {
            out.push(url.to_string());
        }
    }
    out
}

#[async_trait]
impl Provider for Compatible {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Compatible
    }

    /// Every call ends by its deadline (`Call::new`: the context's timeout, capped by the
    /// provider's own): the send path, the body read and the image downloads all run under
    /// it (see `http/mod.rs`, "One deadline").
    fn bounds_its_calls(&self) -> bool {
        true
    }

    fn wire_model(&self, model: &str) -> String {
        // The inherent method (renames), not this trait method.
        Compatible::wire_model(self, model).to_string()
    }

    fn configured_models(&self) -> Vec<String> {
        self.common.allow_list()
    }

    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        let mut caps = self.common.base_capabilities(model)?;
        if self.mode == CompatibleMode::Chat {
            let kinds = self.common.catalog.kinds();
            caps.edits = caps.edits && kinds.chat_edits;
            caps.max_n = caps.max_n.min(kinds.chat_max_n.max(1));
        }
        caps.streaming &= self.mode == CompatibleMode::Images
            && self
                .streaming
                .unwrap_or(self.common.catalog.kinds().compatible_images_streaming);
        Some(caps)
    }

    /// `GET {base}/models/{model}` (fallback `GET {base}/models`) with the renamed model and
    /// the same key as a generation (also in chat mode: proxies list their models the same way).
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        let r = async {
            let wire = self.wire_model(model).to_string();
            let headers = self.headers()?;
            super::probe::models(&self.common, |s| self.url(s), &wire, ctx, headers).await
        };
        self.scrub(r.await)
    }

    fn streams(&self, model: &str) -> bool {
        self.capabilities(model).is_some_and(|c| c.streaming)
    }

    async fn send_stream(
        &self,
        request: &ImageRequest,
        ctx: &CallContext,
    ) -> Result<ProviderStream, ProviderError> {
        super::stream_images(
            &self.common,
            ctx,
            request,
            |path| self.post(&["images", path]),
            |model| Some(self.wire_model(model).to_string()),
            self.key.as_ref(),
        )
        .await
    }

    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.scrub(self.generate_inner(req, ctx).await)
    }

    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.scrub(self.edit_inner(req, ctx).await)
    }
}

impl Compatible {
    /// Sanitizes what leaves this proxy (see `providers::Sanitize`).
    fn scrub<T: super::Sanitize>(&self, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        sanitized(r, self.key.as_ref(), &self.common)
    }

    async fn generate_inner(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let model = self.common.model_or_default(req.model.as_deref());
        let wire = self.wire_model(model).to_string();
        let call = Call::new(&self.common, ctx, &Shape::generate(req, model));
        match self.mode {
            CompatibleMode::Chat => self.chat(req, &call, &wire).await,
            CompatibleMode::Images => {
                let body = generate_body(req, Some(&wire), &self.common.name)?;
                let rb = self.post(&["images", "generations"])?.json(&body);
                send_images(&call, rb, None, &wire).await
            }
        }
    }

    async fn edit_inner(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        if self.mode == CompatibleMode::Chat && !self.common.catalog.kinds().chat_edits {
            return Err(ProviderError::new(
                &self.common.name,
                ErrorKind::NotFound {
                    what: crate::NotFoundKind::UnsupportedParameter,
                },
                "edits are not available through a chat-completions proxy",
            ));
        }
        let model = self.common.model_or_default(req.model.as_deref());
        let wire = self.wire_model(model).to_string();
        let call = Call::new(&self.common, ctx, &Shape::edit(req, model));
        let rb = self
            .post(&["images", "edits"])?
            .multipart(edit_form(req, Some(&wire)));
        send_images(&call, rb, None, &wire).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_urls_in_text() {
        assert_eq!(
            urls_in_text("Here: ![img](https://x.test/a.png) done"),
            vec!["https://x.test/a.png"]
        );
        assert_eq!(
            urls_in_text("data:image/png;base64,aGk="),
            vec!["data:image/png;base64,aGk="]
        );
        assert_eq!(
            urls_in_text("see https://x.test/b.png."),
            vec!["https://x.test/b.png"]
        );
        assert!(urls_in_text("no image, sorry").is_empty());
        assert_eq!(
            urls_in_text("[Download](https://x.test/d.png)"),
            vec!["https://x.test/d.png"]
        );
        assert_eq!(
            urls_in_text("Image (https://x.test/e.png)."),
            vec!["https://x.test/e.png"]
        );
    }

    #[test]
    fn finds_urls_in_message_shapes() {
        let v = json!({"choices":[{"message":{"content":[{"type":"image_url","image_url":{"url":"https://x.test/c.png"}}]}}]});
        assert_eq!(chat_image_urls(&v), vec!["https://x.test/c.png"]);
        let v = json!({"choices":[{"message":{"content":"","images":[{"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}}]}}]});
        assert_eq!(chat_image_urls(&v), vec!["data:image/png;base64,aGk="]);
        assert!(chat_image_urls(&json!({"choices":[]})).is_empty());
    }
}
