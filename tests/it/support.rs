//! Test doubles shared by the router tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::{
    CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image, OutputFormat,
    Provider, ProviderError, ProviderResponse,
};
use parking_lot::Mutex;

/// A 1×1 PNG.
pub const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    Ok,
    Fail(ErrorKind, Option<u16>, Option<Duration>),
    Delay(Duration),
    Empty,
}

/// A provider that answers from a script (then succeeds), and counts calls.
#[derive(Debug)]
pub struct Scripted {
    name: String,
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    caps: Capabilities,
}

impl Scripted {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            script: Mutex::new(VecDeque::new()),
            calls: AtomicUsize::new(0),
            caps: Capabilities::permissive("any"),
        }
    }
    pub fn then(self, step: Step) -> Self {
        self.script.lock().push_back(step);
        self
    }
    pub fn fail(self, kind: ErrorKind, status: u16) -> Self {
        self.then(Step::Fail(kind, Some(status), None))
    }
    pub fn rate_limited(self, retry_after: Option<Duration>) -> Self {
        self.then(Step::Fail(
            ErrorKind::RateLimited {
                scope: image_router::RateLimitScope::Requests,
            },
            Some(429),
            retry_after,
        ))
    }
    pub fn no_webp(mut self) -> Self {
        self.caps = self.caps.without_output_format(OutputFormat::Webp);
        self
    }
    pub fn no_edits(mut self) -> Self {
        self.caps.edits = false;
        self
    }
    pub fn push(&self, step: Step) {
        self.script.lock().push_back(step);
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(&self, model: &str) -> Result<ProviderResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = self.script.lock().pop_front().unwrap_or(Step::Ok);
        match step {
            Step::Ok => Ok(ok(model)),
            Step::Empty => Ok(ProviderResponse::new(vec![], model)),
            Step::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(ok(model))
            }
            Step::Fail(kind, status, retry_after) => {
                let mut e = ProviderError::new(&self.name, kind, "scripted failure")
                    .with_retry_after(retry_after);
                if let Some(s) = status {
                    e = e.with_status(s);
                }
                Err(e)
            }
        }
    }
}

fn ok(model: &str) -> ProviderResponse {
    ProviderResponse::new(
        vec![Image::new(Bytes::from_static(PIXEL_PNG), OutputFormat::Png)],
        model,
    )
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        let mut c = self.caps.clone();
        c.model = model.to_string();
        Some(c)
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer(req.model.as_deref().unwrap_or_default()).await
    }
    async fn edit(
        &self,
        req: &EditRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer(req.model.as_deref().unwrap_or_default()).await
    }
}

/// Lets a test keep a handle on a provider it gave to the router.
#[derive(Debug, Clone)]
pub struct Shared(pub std::sync::Arc<Scripted>);

#[async_trait]
impl Provider for Shared {
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

pub fn shared(s: Scripted) -> (Shared, std::sync::Arc<Scripted>) {
    let a = std::sync::Arc::new(s);
    (Shared(a.clone()), a)
}
