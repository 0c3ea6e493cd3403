//! Direct OpenAI: `POST {base}/images/generations` (JSON) and `/images/edits` (multipart),
//! bearer key, optional organization / project headers.

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{
    builtin_catalog, check_header_safe, check_key, common_builder_methods, edit_form,
    generate_json, join, json_body, parse_api_base_url, sanitized, send_images, Call, Common,
    CommonOptions, Shape,
};
use crate::config_error::ConfigError;
use crate::error::ProviderError;
use crate::provider::{CallContext, ProbeReport, Provider, ProviderKind};
use crate::request::{Capabilities, Unsupported};
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ProviderResponse;
use crate::stream::ProviderStream;

/// Direct OpenAI (`https://api.openai.com/v1` by default).
///
/// ```
/// use image_router::providers::OpenAi;
/// use image_router::Provider;
/// let p = OpenAi::builder()
///     .api_key("sk-test")
///     .organization("org-123")
///     .models(["gpt-image-1"])
///     .build()
///     .unwrap();
/// assert_eq!(p.name(), "openai");
/// assert!(p.capabilities("gpt-image-1").is_some());
/// assert!(p.capabilities("dall-e-3").is_none());
/// ```
#[derive(Clone)]
pub struct OpenAi {
    common: Common,
    key: SecretString,
    base: url::Url,
    organization: Option<String>,
    project: Option<String>,
    /// The auth headers (bearer key marked sensitive, organization, project), made once by
    /// `build` instead of on every call: formatting the key, copying it into a header value and
    /// building a header map per request was part of the router's overhead (issue 16). The
    /// values are cheap to clone (shared bytes). Never printed: `Debug` below leaves them out
    /// and a sensitive `HeaderValue` prints as `Sensitive`.
    auth: Vec<(HeaderName, HeaderValue)>,
    /// `{base}/images/generations` and `{base}/images/edits`, joined once by `build`: joining
    /// per call cloned and re-serialized the base URL's path (issue 16).
    generations: url::Url,
    edits: url::Url,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OpenAi");
        self.common.debug_fields(&mut d);
        d.field("base_url", &self.base.as_str())
            .field("api_key", &"[redacted]")
            .field("organization", &self.organization)
            .field("project", &self.project)
            .finish()
    }
}

/// Builder for [`OpenAi`].
#[must_use]
#[derive(Clone, Default)]
pub struct OpenAiBuilder {
    common: CommonOptions,
    key: Option<SecretString>,
    base_url: Option<String>,
    organization: Option<String>,
    project: Option<String>,
}

impl fmt::Debug for OpenAiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBuilder")
            .field("name", &self.common.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("organization", &self.organization)
            .field("project", &self.project)
            .finish()
    }
}

impl OpenAi {
    /// A builder.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder::default()
    }
}

impl OpenAiBuilder {
    common_builder_methods!("openai");

    /// The API key (required).
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Base URL (default: the catalog's `openai_base_url`, `https://api.openai.com/v1`).
    /// Paths are appended to it (`{base}/images/generations`); a bare host such as
    /// `https://gateway.example` gets `/v1`, a pasted endpoint URL
    /// (`…/v1/images/generations`) is cut back to its base, any other path is kept as given.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// `OpenAI-Organization` header.
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }
    /// `OpenAI-Project` header.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<OpenAi, ConfigError> {
        let key = check_key(self.key, "api_key")?;
        let catalog = self.common.catalog.clone().unwrap_or_else(builtin_catalog);
        let base_raw = self
            .base_url
            .unwrap_or_else(|| catalog.kinds().openai_base_url.clone());
        let base = parse_api_base_url(&base_raw, "base_url")?;
        let common = self.common.build("openai", false, base.host_str())?;
        for (field, value) in [
            ("organization", &self.organization),
            ("project", &self.project),
        ] {
            if let Some(v) = value {
                check_header_safe(&SecretString::from(v.clone()), field)?;
            }
        }
        let auth = auth_headers(&key, self.organization.as_deref(), self.project.as_deref())
            .map_err(|field| {
                ConfigError::new(field, "contains characters not allowed in an HTTP header")
            })?;
        Ok(OpenAi {
            generations: join(&base, &["images", "generations"]),
            edits: join(&base, &["images", "edits"]),
            common,
            key,
            base,
            organization: self.organization,
            project: self.project,
            auth,
        })
    }
}

impl OpenAi {
    /// `{base}/{segments}`: the one place this provider's URLs are made.
    fn url(&self, segments: &[&str]) -> url::Url {
        join(&self.base, segments)
    }

    /// The bearer key and the organization / project headers (made once, by `build`), as a
    /// map for the probe.
    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        Ok(self.auth.iter().cloned().collect())
    }

    fn post(&self, path: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match path {
            "generations" => self.post_to(self.generations.clone()),
            "edits" => self.post_to(self.edits.clone()),
            other => self.post_to(self.url(&["images", other])),
        })
    }

    /// A `POST` to `url` with the auth headers.
    fn post_to(&self, url: url::Url) -> reqwest::RequestBuilder {
        let mut rb = self.common.client.post(url);
        for (name, value) in &self.auth {
            rb = rb.header(name.clone(), value.clone());
        }
        rb
    }

    fn finish<T: super::Sanitize>(&self, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        sanitized(r, Some(&self.key), &self.common)
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    /// Every call ends by its deadline (`Call::new`: the context's timeout, capped by the
    /// provider's own): the send path, the body read and the image downloads all run under
    /// it (see `http/mod.rs`, "One deadline").
    fn bounds_its_calls(&self) -> bool {
        true
    }

    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        self.common.base_capabilities(model)
    }

    /// As the default (`capabilities(model)` then `check`), without cloning the capabilities.
    fn supports(&self, request: &ImageRequest) -> Result<(), Unsupported> {
        self.common.supports_base(request)
    }

    fn configured_models(&self) -> Vec<String> {
        self.common.allow_list()
    }

    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let r = async {
            let model = self.common.model_or_default(req.model.as_deref());
            let call = Call::new(&self.common, ctx, &Shape::generate(req, model));
            let body = generate_json(req, Some(model), &self.common.name)?;
            let rb = self.post_to(self.generations.clone());
            let origin = Some(&self.generations);
            send_images(&call, json_body(rb, body), origin, model).await
        };
        self.finish(r.await)
    }

    /// `GET {base}/models/{model}` (fallback `GET {base}/models`) with the same key and
    /// organization / project headers as a generation.
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        let r = async {
            let headers = self.headers()?;
            super::probe::models(&self.common, |s| self.url(s), model, ctx, headers).await
        };
        self.finish(r.await)
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
            |path| self.post(path),
            |model| Some(model.to_string()),
            Some(&self.key),
        )
        .await
    }

    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let r = async {
            let model = self.common.model_or_default(req.model.as_deref());
            let call = Call::new(&self.common, ctx, &Shape::edit(req, model));
            let rb = self.post_to(self.edits.clone());
            let rb = rb.multipart(edit_form(req, Some(model)));
            send_images(&call, rb, Some(&self.edits), model).await
        };
        self.finish(r.await)
    }
}

/// The auth headers: the bearer key (sensitive: never printed by reqwest or http) and the
/// organization / project headers. `Err` names the field that is no valid header value
/// (`build` checked them all already, so this is not expected).
fn auth_headers(
    key: &SecretString,
    organization: Option<&str>,
    project: Option<&str>,
) -> Result<Vec<(HeaderName, HeaderValue)>, &'static str> {
    let mut bearer =
        HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| "api_key")?;
    bearer.set_sensitive(true);
    let mut h = vec![(reqwest::header::AUTHORIZATION, bearer)];
    for (name, field, value) in [
        ("openai-organization", "organization", organization),
        ("openai-project", "project", project),
    ] {
        if let Some(v) = value {
            let v = HeaderValue::from_str(v).map_err(|_| field)?;
            h.push((HeaderName::from_static(name), v));
        }
    }
    Ok(h)
}
