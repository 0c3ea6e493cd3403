//! Model fallback: when no provider can serve the requested model, the router routes the
//! request's (or its own) fallback models in order, translated to what each takes, with one
//! deadline and one trace; and the translation itself.

mod cache;
mod routing;
mod translate;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::{
    AccessDenial, CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image,
    ImageRequest, NotFoundKind, OutputFormat, Provider, ProviderError, ProviderResponse, Usage,
};
use parking_lot::Mutex;

use crate::support::PIXEL_PNG;

/// How a [`Rec`] answers a model.
#[derive(Clone, Debug)]
pub enum Answer {
    /// One image (with the provider's usage, if any).
    Ok,
    /// 403: the organization must be verified for this model (the router holds the denial
    /// for the whole provider: an account problem).
    Denied,
    /// 404 `model_not_found` (the router cools down only this model on the provider).
    NotFound,
    /// Never answers.
    Hang,
}

/// A provider that records every request it is sent and answers per model: the fallback
/// tests need to see what the router sent (model, size, quality, `n`, dropped fields), which
/// the shared fake does not keep.
#[derive(Debug)]
pub struct Rec {
    name: String,
    /// `Some`: the only models it serves (others: "not served here").
    serves: Option<Vec<String>>,
    edits: bool,
    answers: HashMap<String, Answer>,
    usage: Option<Usage>,
    sent: Mutex<Vec<ImageRequest>>,
}

impl Rec {
    /// Serves every model, answering [`Answer::Ok`].
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            serves: None,
            edits: true,
            answers: HashMap::new(),
            usage: None,
            sent: Mutex::new(Vec::new()),
        }
    }

    /// Serves only `models`.
    pub fn serving(mut self, models: &[&str]) -> Self {
        self.serves = Some(models.iter().map(|m| m.to_string()).collect());
        self
    }

    /// Answers `model` with `answer`.
    pub fn answer(mut self, model: &str, answer: Answer) -> Self {
        self.answers.insert(model.to_string(), answer);
        self
    }

    /// Denies `model` (403, organization not verified).
    pub fn denies(self, model: &str) -> Self {
        self.answer(model, Answer::Denied)
    }

    /// Answers `model` with 404 `model_not_found`.
    pub fn missing(self, model: &str) -> Self {
        self.answer(model, Answer::NotFound)
    }

    /// Every success carries `usage`.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<ImageRequest> {
        self.sent.lock().clone()
    }

    /// The models of the requests sent so far.
    pub fn models(&self) -> Vec<String> {
        self.sent()
            .iter()
            .map(|r| r.model().unwrap_or_default().to_string())
            .collect()
    }

    async fn answer_for(&self, req: ImageRequest) -> Result<ProviderResponse, ProviderError> {
        let model = req.model().unwrap_or_default().to_string();
        self.sent.lock().push(req);
        match self.answers.get(&model).cloned().unwrap_or(Answer::Ok) {
            Answer::Ok => {
                let mut r = ProviderResponse::new(
                    vec![Image::new(Bytes::from_static(PIXEL_PNG), OutputFormat::Png)],
                    model,
                );
                r.usage = self.usage;
                Ok(r)
            }
            Answer::Denied => Err(ProviderError::new(
                &self.name,
                ErrorKind::AccessDenied {
                    reason: AccessDenial::OrganizationNotVerified,
                },
                format!("Your organization must be verified to use the model `{model}`."),
            )
            .with_status(403)),
            Answer::NotFound => Err(ProviderError::new(
                &self.name,
                ErrorKind::NotFound {
                    what: NotFoundKind::Model,
                },
                format!("The model `{model}` does not exist or you do not have access to it."),
            )
            .with_status(404)),
            Answer::Hang => std::future::pending().await,
        }
    }
}

#[async_trait]
impl Provider for Rec {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        if let Some(list) = &self.serves {
            if !list.iter().any(|m| m == model) {
                return None;
            }
        }
        let mut c = Capabilities::permissive(model);
        c.edits = self.edits;
        Some(c)
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer_for(req.clone().into()).await
    }
    async fn edit(
        &self,
        req: &EditRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer_for(req.clone().into()).await
    }
}

/// A provider the router owns while the test keeps the same [`Rec`].
#[derive(Debug, Clone)]
pub struct SharedRec(pub Arc<Rec>);

#[async_trait]
impl Provider for SharedRec {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        self.0.capabilities(model)
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.0.generate(req, ctx).await
    }
    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.0.edit(req, ctx).await
    }
}

/// `rec` for the router, and a handle on it for the test.
pub fn rec(r: Rec) -> (SharedRec, Arc<Rec>) {
    let a = Arc::new(r);
    (SharedRec(a.clone()), a)
}
