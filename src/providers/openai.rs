//! Direct OpenAI: `POST {base}/images/generations` (JSON) and `/images/edits` (multipart),
//! bearer key, optional organization / project headers.

use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{
    check_header_safe, check_key, common_builder_methods, edit_form, generate_body, join,
    parse_api_base_url, scrubbed, secret_header, send_images, Common, CommonOptions,
};
use crate::capabilities::Capabilities;
use crate::error::{ConfigError, ProviderError};
use crate::provider::{CallContext, ProbeReport, Provider, ProviderKind};
use crate::request::{EditRequest, GenerateRequest};
use crate::response::ProviderResponse;

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
    common_builder_methods!();

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
        let common = self.common.build("openai", false)?;
        let base_raw = self
            .base_url
            .unwrap_or_else(|| common.catalog.kinds().openai_base_url.clone());
        let base = parse_api_base_url(&base_raw, "base_url")?;
        for (field, value) in [
            ("organization", &self.organization),
            ("project", &self.project),
        ] {
            if let Some(v) = value {
                check_header_safe(&SecretString::from(v.clone()), field)?;
            }
        }
        Ok(OpenAi {
            common,
            key,
            base,
            organization: self.organization,
            project: self.project,
        })
    }
}

impl OpenAi {
    fn request(&self, path: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let url = join(&self.base, &["images", path]);
        let auth = secret_header(
            format!("Bearer {}", self.key.expose_secret()),
            &self.common.name,
        )?;
        let mut rb = self
            .common
            .client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, auth);
        if let Some(org) = &self.organization {
            rb = rb.header("OpenAI-Organization", org);
        }
        if let Some(project) = &self.project {
            rb = rb.header("OpenAI-Project", project);
        }
        Ok(rb)
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

    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        self.common.base_capabilities(model)
    }

    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let model = self.common.model_or_default(req.model.as_ref());
        let body = generate_body(req, Some(&model), &self.common.name)?;
        let rb = self.request("generations")?.json(&body);
        scrubbed(
            send_images(&self.common, rb, &model, req.output_format, ctx).await,
            &self.key,
        )
    }

    /// `GET {base}/models/{model}` (fallback `GET {base}/models`) with the same key and
    /// organization / project headers as a generation.
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        let report = super::probe::models(&self.common, &self.base, model, ctx, |rb| {
            let auth = secret_header(
                format!("Bearer {}", self.key.expose_secret()),
                &self.common.name,
            )?;
            let mut rb = rb.header(reqwest::header::AUTHORIZATION, auth);
            if let Some(org) = &self.organization {
                rb = rb.header("OpenAI-Organization", org);
            }
            if let Some(project) = &self.project {
                rb = rb.header("OpenAI-Project", project);
            }
            Ok(rb)
        })
        .await;
        scrubbed(report, &self.key)
    }

    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let model = self.common.model_or_default(req.model.as_ref());
        let rb = self
            .request("edits")?
            .multipart(edit_form(req, Some(&model)));
        scrubbed(
            send_images(&self.common, rb, &model, req.output_format, ctx).await,
            &self.key,
        )
    }
}
