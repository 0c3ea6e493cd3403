//! The one scripted fake provider every in-process router test uses.
//!
//! A test writes what the provider answers as a script of [`Step`]s (then a default step once
//! the script is empty), and reads back what the router did to it: calls, each call's
//! `CallContext::retry` and `timeout`, probe calls. Everything is behind interior mutability so
//! a test can keep an `Arc<Fake>` (see [`shared`] or [`Fake::arc`]) and change the answers or
//! the latency while the router holds the same provider. One fake instead of one per test file
//! keeps the doubles' behaviour (message texts, latency before the answer, counting) identical
//! across tests, so two tests never disagree only because their fakes do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::{
    quota::headers::RateLimitHeaders, CallContext, Capabilities, EditRequest, ErrorKind,
    GenerateRequest, Image, OutputFormat, ProbeReport, Provider, ProviderError, ProviderResponse,
};
use parking_lot::Mutex;

use super::PIXEL_PNG;

/// One scripted answer to an image call.
#[derive(Clone, Debug)]
pub enum Step {
    /// One 1×1 PNG.
    Ok,
    /// An error of `kind` with an optional HTTP status and `retry-after`; the message is
    /// "`<name>` says no".
    Fail(ErrorKind, Option<u16>, Option<Duration>),
    /// Exactly this error (own message, code, rate-limit headers, ...).
    Error(ProviderError),
    /// Waits, then answers like [`Step::Ok`].
    Delay(Duration),
    /// Never answers: the router's timeout or deadline must end the call.
    Hang,
    /// A success with no image.
    Empty,
}

impl Step {
    /// An error of `kind` without status or `retry-after`.
    pub fn fail(kind: ErrorKind) -> Self {
        Step::Fail(kind, None, None)
    }
}

/// What the cheap check ([`Provider::probe`]) answers.
// A few instances per test: the size of the error variant does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Probe {
    /// The trait's default: not probed.
    NotProbed,
    /// Reachable, HTTP 200.
    Ok,
    /// This error.
    Fail(ProviderError),
    /// Never answers.
    Hang,
}

/// A script shared between fakes: "the first call of the request fails, whichever provider
/// it is".
pub type Script = Arc<Mutex<VecDeque<Step>>>;

/// The scripted fake provider.
#[derive(Debug)]
pub struct Fake {
    name: String,
    script: Script,
    default: Mutex<Step>,
    latency: Mutex<Duration>,
    calls: AtomicUsize,
    retries: Mutex<Vec<u32>>,
    timeouts: Mutex<Vec<Duration>>,
    headers: Mutex<RateLimitHeaders>,
    caps: Mutex<Capabilities>,
    probe: Mutex<Probe>,
    probe_calls: AtomicUsize,
    /// `Some(reason)`: an image call is a test failure (a doctor must never generate).
    forbid_images: Option<&'static str>,
    /// An images-per-minute account limit to check every image call against.
    ipm_guard: Mutex<Option<IpmGuard>>,
}

/// An images-per-60-s check on a clock, as the provider would count: every image call adds
/// its `n` at its arrival, and any 60-second window holding more than `limit` images is a
/// violation (the test fails on it).
#[derive(Debug)]
struct IpmGuard {
    limit: u64,
    clock: image_router::clock::SharedClock,
    /// (arrival, n) of the calls of the last 60 s.
    log: VecDeque<(Duration, u64)>,
    images: u64,
    served: u64,
    violations: Vec<String>,
}

impl Fake {
    /// A fake named `name` that answers [`Step::Ok`] to everything.
    pub fn new(name: &str) -> Self {
        Self::with_script(name, Script::default())
    }

    /// A fake reading its answers from `script`, shared with other fakes.
    pub fn with_script(name: &str, script: Script) -> Self {
        Self {
            name: name.to_string(),
            script,
            default: Mutex::new(Step::Ok),
            latency: Mutex::new(Duration::ZERO),
            calls: AtomicUsize::new(0),
            retries: Mutex::new(Vec::new()),
            timeouts: Mutex::new(Vec::new()),
            headers: Mutex::new(RateLimitHeaders::default()),
            caps: Mutex::new(Capabilities::permissive("any")),
            probe: Mutex::new(Probe::NotProbed),
            probe_calls: AtomicUsize::new(0),
            forbid_images: None,
            ipm_guard: Mutex::new(None),
        }
    }

    /// This fake behind an `Arc`, for `RouterBuilder::provider_arc` or [`Shared`].
    pub fn arc(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// Appends `step` to the script.
    pub fn then(self, step: Step) -> Self {
        self.push(step);
        self
    }

    /// Appends a failure of `kind` with HTTP `status`.
    pub fn fail(self, kind: ErrorKind, status: u16) -> Self {
        self.then(Step::Fail(kind, Some(status), None))
    }

    /// Appends a 429 (requests) with an optional `retry-after`.
    pub fn rate_limited(self, retry_after: Option<Duration>) -> Self {
        self.then(Step::Fail(
            ErrorKind::RateLimited {
                scope: image_router::RateLimitScope::Requests,
            },
            Some(429),
            retry_after,
        ))
    }

    /// Does not produce WebP.
    pub fn no_webp(self) -> Self {
        {
            let mut caps = self.caps.lock();
            *caps = caps.clone().without_output_format(OutputFormat::Webp);
        }
        self
    }

    /// Does not serve edits.
    pub fn no_edits(self) -> Self {
        self.caps.lock().edits = false;
        self
    }

    /// The answer once the script is empty (builder form of [`Fake::set_default`]).
    pub fn default_step(self, step: Step) -> Self {
        self.set_default(step);
        self
    }

    /// The cheap check answers `probe` (builder form of [`Fake::set_probe`]).
    pub fn probe_answers(self, probe: Probe) -> Self {
        self.set_probe(probe);
        self
    }

    /// Counts every image call's `n` against `ipm` images per 60 s on `clock`, as the
    /// provider's per-minute window would (see [`Fake::ipm_violations`]).
    pub fn ipm_guard(self, ipm: u32, clock: image_router::clock::SharedClock) -> Self {
        *self.ipm_guard.lock() = Some(IpmGuard {
            limit: u64::from(ipm),
            clock,
            log: VecDeque::new(),
            images: 0,
            served: 0,
            violations: Vec::new(),
        });
        self
    }

    /// Every 60-second window that held more images than the guard's limit (empty: none).
    pub fn ipm_violations(&self) -> Vec<String> {
        self.ipm_guard
            .lock()
            .as_ref()
            .map(|g| g.violations.clone())
            .unwrap_or_default()
    }

    /// Images the calls asked for in total, as the guard counted them.
    pub fn images_requested(&self) -> u64 {
        self.ipm_guard.lock().as_ref().map_or(0, |g| g.served)
    }

    /// Image calls panic with `reason`: for code that must only probe.
    pub fn forbid_images(mut self, reason: &'static str) -> Self {
        self.forbid_images = Some(reason);
        self
    }

    /// Appends `step` to the script.
    pub fn push(&self, step: Step) {
        self.script.lock().push_back(step);
    }

    /// The answer once the script is empty.
    pub fn set_default(&self, step: Step) {
        *self.default.lock() = step;
    }

    /// Every image call waits `d` before answering.
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock() = d;
    }

    /// Rate-limit headers carried by every successful answer.
    pub fn set_headers(&self, h: RateLimitHeaders) {
        *self.headers.lock() = h;
    }

    /// What the cheap check answers from now on.
    pub fn set_probe(&self, probe: Probe) {
        *self.probe.lock() = probe;
    }

    /// Image calls (generate and edit) so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// `CallContext::retry` of every image call, in order.
    pub fn retries(&self) -> Vec<u32> {
        self.retries.lock().clone()
    }

    /// `CallContext::timeout` of every image call, in order.
    pub fn timeouts(&self) -> Vec<Duration> {
        self.timeouts.lock().clone()
    }

    /// Probe calls so far.
    pub fn probe_calls(&self) -> usize {
        self.probe_calls.load(Ordering::SeqCst)
    }

    fn error(
        &self,
        kind: ErrorKind,
        status: Option<u16>,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        let mut e = ProviderError::new(&self.name, kind, format!("{} says no", self.name))
            .with_retry_after(retry_after);
        if let Some(s) = status {
            e = e.with_status(s);
        }
        e
    }

    fn ok(&self, model: &str) -> ProviderResponse {
        let mut resp = ProviderResponse::new(
            vec![Image::new(Bytes::from_static(PIXEL_PNG), OutputFormat::Png)],
            model,
        );
        resp.rate_limits = *self.headers.lock();
        resp
    }

    async fn answer(
        &self,
        model: &str,
        n: u8,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        if let Some(reason) = self.forbid_images {
            panic!("{}: {reason}", self.name);
        }
        if let Some(g) = self.ipm_guard.lock().as_mut() {
            let now = g.clock.now();
            while let Some(&(at, images)) = g.log.front() {
                if at + Duration::from_secs(60) <= now {
                    g.images -= images;
                    g.log.pop_front();
                } else {
                    break;
                }
            }
            g.log.push_back((now, u64::from(n)));
            g.images += u64::from(n);
            g.served += u64::from(n);
            if g.images > g.limit {
                g.violations.push(format!(
                    "{} images in the 60 s up to {now:?} (limit {})",
                    g.images, g.limit
                ));
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.retries.lock().push(ctx.retry);
        self.timeouts.lock().push(ctx.timeout);
        let step = self
            .script
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone());
        let latency = *self.latency.lock();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match step {
            Step::Ok => Ok(self.ok(model)),
            Step::Empty => Ok(ProviderResponse::new(vec![], model)),
            Step::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(self.ok(model))
            }
            Step::Hang => std::future::pending().await,
            Step::Fail(kind, status, retry_after) => Err(self.error(kind, status, retry_after)),
            Step::Error(e) => Err(e),
        }
    }
}

#[async_trait]
impl Provider for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        let mut c = self.caps.lock().clone();
        c.model = model.to_string();
        Some(c)
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer(
            req.model.as_deref().unwrap_or_default(),
            req.n.unwrap_or(1),
            ctx,
        )
        .await
    }
    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.answer(
            req.model.as_deref().unwrap_or_default(),
            req.n.unwrap_or(1),
            ctx,
        )
        .await
    }
    async fn probe(&self, model: &str, _ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        self.probe_calls.fetch_add(1, Ordering::SeqCst);
        let probe = self.probe.lock().clone();
        match probe {
            Probe::NotProbed => Ok(ProbeReport::not_probed(model)),
            Probe::Ok => Ok(ProbeReport::ok(model, 200)),
            Probe::Fail(e) => Err(e),
            Probe::Hang => std::future::pending().await,
        }
    }
}

/// A provider the router owns while the test keeps the same [`Fake`] through the `Arc`.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Fake>);

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
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        self.0.probe(model, ctx).await
    }
}

/// `fake` for the router, and a handle on it for the test.
pub fn shared(fake: Fake) -> (Shared, Arc<Fake>) {
    let a = Arc::new(fake);
    (Shared(a.clone()), a)
}
