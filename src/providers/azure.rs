//! Azure OpenAI: deployments surface
//! (`{endpoint}/openai/deployments/{deployment}/images/generations?api-version=…`, the
//! deployment decides the model) or the v1 surface (`{endpoint}/openai/v1/images/…`, the
//! deployment name goes in the body's `model`). Auth by `api-key` or an Entra ID bearer token.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use reqwest::header::HeaderMap;

use super::Sanitize;
use super::{
    check_header_safe, common_builder_methods, edit_form, generate_body, join, parse_base_url,
    sanitized, secret_header, send_images, Call, Common, CommonOptions, Shape,
};
use crate::config_error::ConfigError;
use crate::error::{ErrorKind, NotFoundKind, ProviderError};
use crate::provider::{CallContext, ProbeReport, Provider, ProviderKind};
use crate::request::Capabilities;
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ProviderResponse;
use crate::stream::ProviderStream;

/// How to authenticate to Azure OpenAI.
#[derive(Clone)]
pub enum AzureAuth {
    /// `api-key: <key>`.
    ApiKey(SecretString),
    /// `Authorization: Bearer <Entra ID token>`.
    BearerToken(SecretString),
}

impl fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureAuth::ApiKey(_) => f.write_str("ApiKey([redacted])"),
            AzureAuth::BearerToken(_) => f.write_str("BearerToken([redacted])"),
        }
    }
}

/// Azure OpenAI.
///
/// ```
/// use image_router::providers::Azure;
/// use image_router::Provider;
/// let p = Azure::builder()
///     .endpoint("https://my-resource.openai.azure.com/")
///     .bearer_token("entra-token")
///     .deployment("gpt-image-1", "images-eastus")
///     .build()
///     .unwrap();
/// let caps = p.capabilities("gpt-image-1").unwrap();
/// assert!(!caps.output_formats.contains(&image_router::OutputFormat::Webp));
/// ```
#[derive(Clone)]
pub struct Azure {
    common: Common,
    auth: AzureAuth,
    endpoint: url::Url,
    deployments: BTreeMap<String, String>,
    api_version: Option<String>,
    v1: bool,
}

impl fmt::Debug for Azure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Azure");
        self.common.debug_fields(&mut d);
        d.field("endpoint", &self.endpoint.as_str())
            .field("auth", &self.auth)
            .field("deployments", &self.deployments)
            .field("api_version", &self.api_version)
            .field("v1_surface", &self.v1)
            .finish()
    }
}

/// Builder for [`Azure`].
#[must_use]
#[derive(Clone, Default)]
pub struct AzureBuilder {
    common: CommonOptions,
    auth: Option<AzureAuth>,
    endpoint: Option<String>,
    deployments: Vec<(String, String)>,
    default_deployment: Option<String>,
    api_version: Option<String>,
    v1: bool,
}

impl fmt::Debug for AzureBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBuilder")
            .field("name", &self.common.name)
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("deployments", &self.deployments)
            .field("default_deployment", &self.default_deployment)
            .field("api_version", &self.api_version)
            .field("v1_surface", &self.v1)
            .finish()
    }
}

impl Azure {
    /// A builder.
    pub fn builder() -> AzureBuilder {
        AzureBuilder::default()
    }

    /// The deployment serving `model`, if any.
    pub fn deployment_for(&self, model: &str) -> Option<&str> {
        self.deployments.get(model).map(String::as_str)
    }
}

impl AzureBuilder {
    common_builder_methods!("azure");

    /// The resource endpoint, e.g. `https://my-resource.openai.azure.com` (required). A
    /// trailing `/openai` is dropped, and the v1 base URL `…/openai/v1/` selects the
    /// [v1 surface](Self::v1_surface).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
    /// Authentication.
    pub fn auth(mut self, auth: AzureAuth) -> Self {
        self.auth = Some(auth);
        self
    }
    /// Authenticate with `api-key: <key>`.
    pub fn api_key(self, key: impl Into<SecretString>) -> Self {
        self.auth(AzureAuth::ApiKey(key.into()))
    }
    /// Authenticate with `Authorization: Bearer <token>` (Entra ID).
    pub fn bearer_token(self, token: impl Into<SecretString>) -> Self {
        self.auth(AzureAuth::BearerToken(token.into()))
    }
    /// Serve `model` through the deployment named `deployment`.
    pub fn deployment(mut self, model: impl Into<String>, deployment: impl Into<String>) -> Self {
        self.deployments.push((model.into(), deployment.into()));
        self
    }
    /// The deployment serving the catalog's default model.
    pub fn default_deployment(mut self, deployment: impl Into<String>) -> Self {
        self.default_deployment = Some(deployment.into());
        self
    }
    /// `api-version` (default: the catalog's `azure_api_version`, `2025-04-01-preview`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }
    /// Use the v1 surface (`/openai/v1/images/…`, deployment name in the body's `model`).
    pub fn v1_surface(mut self, v1: bool) -> Self {
        self.v1 = v1;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Azure, ConfigError> {
        let endpoint_raw = self
            .endpoint
            .ok_or_else(|| ConfigError::new("endpoint", "is required"))?;
        let mut endpoint = parse_base_url(&endpoint_raw, "endpoint")?;
        // The resource endpoint is the host; a pasted `…/openai` or the v1 base URL the Azure
        // docs give to OpenAI SDKs (`…/openai/v1/`) would otherwise be doubled in every path.
        // The v1 base URL also says which surface is meant.
        let mut v1 = self.v1;
        let path = endpoint.path().trim_end_matches('/').to_string();
        if let Some(base) = path.strip_suffix("/openai/v1") {
            endpoint.set_path(base);
            v1 = true;
        } else if let Some(base) = path.strip_suffix("/openai") {
            endpoint.set_path(base);
        }
        let auth = self
            .auth
            .ok_or_else(|| ConfigError::new("api_key", "an api key or bearer token is required"))?;
        match &auth {
            AzureAuth::ApiKey(k) => check_header_safe(k, "api_key")?,
            AzureAuth::BearerToken(t) => check_header_safe(t, "bearer_token")?,
        }
        let common = self.common.build("azure", false, endpoint.host_str())?;
        let mut deployments = BTreeMap::new();
        for (model, dep) in self.deployments {
            if model.trim().is_empty() {
                return Err(ConfigError::new(
                    "deployment",
                    "model name must not be empty",
                ));
            }
            if dep.trim().is_empty() {
                return Err(ConfigError::new(
                    "deployment",
                    format!("deployment name for `{model}` must not be empty"),
                ));
            }
            deployments.insert(model, dep);
        }
        if let Some(dep) = self.default_deployment {
            if dep.trim().is_empty() {
                return Err(ConfigError::new("default_deployment", "must not be empty"));
            }
            deployments
                .entry(common.catalog.default_model().to_string())
                .or_insert(dep);
        }
        if deployments.is_empty() {
            return Err(ConfigError::new(
                "deployment",
                "at least one deployment is required",
            ));
        }
        if let Some(v) = &self.api_version {
            if v.trim().is_empty() {
                return Err(ConfigError::new("api_version", "must not be empty"));
            }
        }
        // The deployments surface always needs a version; v1 only when set explicitly.
        let api_version = match (self.api_version, v1) {
            (Some(v), _) => Some(v),
            (None, false) => Some(common.catalog.kinds().azure_api_version.clone()),
            (None, true) => None,
        };
        Ok(Azure {
            common,
            auth,
            endpoint,
            deployments,
            api_version,
            v1,
        })
    }
}

/// Which Azure URL to make.
enum Target<'a> {
    /// `…/images/{path}` (generations, edits) on the configured surface.
    Images(&'a str),
    /// `…/openai/deployments/{deployment}?api-version=…` (the probe).
    Deployment,
}

impl Azure {
    /// The deployment serving `model`, or the typed error for none.
    fn deployment(&self, model: &str) -> Result<&str, ProviderError> {
        self.deployments
            .get(model)
            .map(String::as_str)
            .ok_or_else(|| {
                ProviderError::new(
                    &self.common.name,
                    ErrorKind::NotFound {
                        what: NotFoundKind::Deployment,
                    },
                    format!("no deployment configured for model `{model}`"),
                )
            })
    }

    /// The one place this provider's URLs are made: the deployments or v1 surface, with the
    /// `api-version` query (always on the deployment lookup, which exists only on the
    /// deployments surface).
    fn url(&self, deployment: &str, target: Target<'_>) -> url::Url {
        let (mut url, version) = match target {
            Target::Images(path) if self.v1 => (
                join(&self.endpoint, &["openai", "v1", "images", path]),
                self.api_version.clone(),
            ),
            Target::Images(path) => (
                join(
                    &self.endpoint,
                    &["openai", "deployments", deployment, "images", path],
                ),
                self.api_version.clone(),
            ),
            Target::Deployment => (
                join(&self.endpoint, &["openai", "deployments", deployment]),
                Some(
                    self.api_version
                        .clone()
                        .unwrap_or_else(|| self.common.catalog.kinds().azure_api_version.clone()),
                ),
            ),
        };
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("api-version", &v);
        }
        url
    }

    /// The one place this provider's auth header is made: `api-key` or a bearer token.
    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let (name, value) = match &self.auth {
            AzureAuth::ApiKey(k) => ("api-key", k.expose_secret().to_string()),
            AzureAuth::BearerToken(t) => ("authorization", format!("Bearer {}", t.expose_secret())),
        };
        let mut h = HeaderMap::new();
        h.insert(name, secret_header(value, &self.common.name)?);
        Ok(h)
    }

    /// A POST to the images `path` for `model`, and the deployment serving it.
    fn request(
        &self,
        model: &str,
        path: &str,
    ) -> Result<(reqwest::RequestBuilder, String), ProviderError> {
        let deployment = self.deployment(model)?;
        let rb = self
            .common
            .client
            .post(self.url(deployment, Target::Images(path)))
            .headers(self.headers()?);
        Ok((rb, deployment.to_string()))
    }

    /// The credential, whichever kind it is (to scrub it from error text).
    fn secret(&self) -> &SecretString {
        match &self.auth {
            AzureAuth::ApiKey(k) | AzureAuth::BearerToken(k) => k,
        }
    }

    /// The body's `model`: the deployment name on v1, absent on the deployments surface.
    fn wire_model<'a>(&self, deployment: &'a str) -> Option<&'a str> {
        self.v1.then_some(deployment)
    }
}

#[async_trait]
impl Provider for Azure {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    /// Every call ends by its deadline (`Call::new`: the context's timeout, capped by the
    /// provider's own): the send path, the body read and the image downloads all run under
    /// it (see `http/mod.rs`, "One deadline").
    fn bounds_its_calls(&self) -> bool {
        true
    }

    fn wire_model(&self, model: &str) -> String {
        self.deployment_for(model).unwrap_or(model).to_string()
    }

    /// The models with a deployment (each is looked up by its deployment).
    fn configured_models(&self) -> Vec<String> {
        self.deployments.keys().cloned().collect()
    }

    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        if !self.deployments.contains_key(model) {
            return None;
        }
        let mut caps = self.common.base_capabilities(model)?;
        let kinds = self.common.catalog.kinds();
        caps.output_formats
            .retain(|f| kinds.azure_output_formats.contains(f));
        // Streaming needs an api-version at or after the catalog's first streaming one
        // (dated strings compare in date order); the v1 surface without a version is the
        // newest. No catalog version: Azure does not stream.
        caps.streaming &= match (&kinds.azure_stream_api_version, &self.api_version) {
            (None, _) => false,
            (Some(_), None) => self.v1,
            (Some(first), Some(v)) => v.as_str() >= first.as_str() || v == "preview",
        };
        Some(caps)
    }

    /// `GET {endpoint}/openai/deployments/{deployment}?api-version=…` with the same credentials
    /// as a generation: proves the endpoint, the key and that the deployment exists.
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        sanitized(
            self.probe_deployment(model, ctx).await,
            Some(self.secret()),
            &self.common,
        )
    }

    fn streams(&self, model: &str) -> bool {
        self.capabilities(model).is_some_and(|c| c.streaming)
    }

    async fn send_stream(
        &self,
        request: &ImageRequest,
        ctx: &CallContext,
    ) -> Result<ProviderStream, ProviderError> {
        let model = self.common.model_or_default(request.model());
        let deployment = self.deployment(model).map_err(|mut e| {
            e.sanitize(Some(self.secret().expose_secret()), &self.common);
            e
        })?;
        let wire = self.wire_model(deployment).map(str::to_string);
        super::stream_images(
            &self.common,
            ctx,
            request,
            |path| self.request(model, path).map(|(rb, _)| rb),
            |_| wire,
            Some(self.secret()),
        )
        .await
    }

    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        sanitized(
            self.generate_inner(req, ctx).await,
            Some(self.secret()),
            &self.common,
        )
    }

    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        sanitized(
            self.edit_inner(req, ctx).await,
            Some(self.secret()),
            &self.common,
        )
    }
}

impl Azure {
    async fn probe_deployment(
        &self,
        model: &str,
        ctx: &CallContext,
    ) -> Result<ProbeReport, ProviderError> {
        let deployment = self.deployment(model)?;
        let url = self.url(deployment, Target::Deployment);
        let rb = self.common.client.get(url.clone()).headers(self.headers()?);
        let (_, deadline) = self.common.deadline(ctx);
        let r = super::probe::get(&self.common, rb, Some(&url), deadline).await?;
        Ok(super::probe::deployment_report(
            deployment,
            format!("GET {url}"),
            &r,
        ))
    }

    async fn generate_inner(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let model = self.common.model_or_default(req.model.as_deref());
        let call = Call::new(&self.common, ctx, &Shape::generate(req, model));
        let (rb, deployment) = self.request(model, "generations")?;
        let body = generate_body(req, self.wire_model(&deployment), &self.common.name)?;
        send_images(&call, rb.json(&body), None, model).await
    }

    async fn edit_inner(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        let model = self.common.model_or_default(req.model.as_deref());
        let call = Call::new(&self.common, ctx, &Shape::edit(req, model));
        let (rb, deployment) = self.request(model, "edits")?;
        let form = edit_form(req, self.wire_model(&deployment));
        send_images(&call, rb.multipart(form), None, model).await
    }
}
