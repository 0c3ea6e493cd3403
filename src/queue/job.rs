//! The job record: what a backend stores for one submitted request, from submission to its
//! end, and the small types around it.
//!
//! Why a separate serializable form of the request ([`JobRequest`]) rather than
//! [`ImageRequest`]: the router's request types serialize to the *wire* form (an edit is
//! multipart, and the router's own settings such as fallback models are never sent), while a
//! job must survive a restart with everything the worker needs to send it again, edit input
//! images included (as base64 in the record: a job's inputs are bounded by the API's own input
//! limits, while its results are *not* stored in the record, only where they are).
//!
//! Times are wall-clock Unix milliseconds (`*_ms`), so records written by several processes
//! or hosts compare; backends read them from an injected [`WallClock`](crate::budget::WallClock).

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Attempt, Error};
use crate::quota::usage::Usage;
use crate::request::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputFidelity, InputImage,
    OutputFormat, Quality, RequestClass, Size,
};

/// Longest idempotency key, in bytes (a key is an index entry, not a payload).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Longest callback URL, in bytes.
pub const MAX_CALLBACK_URL_BYTES: usize = 2048;
/// Default number of retries of retryable failures before a job fails.
pub const DEFAULT_MAX_RETRIES: u32 = 5;

/// A job's id: opaque text, unique per backend (time-ordered hex plus randomness).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh id: the submission time in ms (hex, so ids sort by submission) and 64 random bits.
    pub fn generate(now_ms: u64) -> Self {
        let r: u64 = rand::random();
        Self(format!("j{now_ms:011x}{r:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Where a job is in its life. `Succeeded`, `Failed`, `Cancelled` and `Expired` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed (also after a retryable failure, until its retry time).
    Queued,
    /// Claimed by a worker under a lease.
    Running,
    /// Images delivered to the results store.
    Succeeded,
    /// Ended without images; the record's `error` says why in plain words.
    Failed,
    /// Cancelled before its request was sent.
    Cancelled,
    /// Its deadline passed before it could be sent.
    Expired,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Expired,
    ];

    /// The state's name as stored and printed (`queued`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
        }
    }

    /// Whether the job has ended (no backend call changes it any more, except its callback
    /// delivery state).
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job state {s:?} (expected queued, running, succeeded, failed, cancelled or expired)"
                )
            })
    }
}

/// An input image of a stored edit: its bytes as base64 in the record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    /// File name sent in the multipart part.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The bytes, standard base64.
    pub data_b64: String,
}

impl fmt::Debug for StoredImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredImage")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("b64_len", &self.data_b64.len())
            .finish()
    }
}

impl StoredImage {
    fn from_input(img: &InputImage) -> Self {
        Self {
            filename: img.filename.clone(),
            content_type: img.content_type.clone(),
            data_b64: base64::engine::general_purpose::STANDARD.encode(&img.data),
        }
    }

    fn to_input(&self, field: &str) -> Result<InputImage, JobDecodeError> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data_b64.as_bytes())
            .map_err(|e| JobDecodeError {
                field: field.to_string(),
                message: format!("not valid base64: {e}"),
            })?;
        Ok(InputImage {
            data: data.into(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
        })
    }
}

/// A stored edit request: every field of [`EditRequest`] a job needs to send it again.
/// (Streaming is not stored: a job is never streamed.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEdit {
    /// The prompt.
    pub prompt: String,
    /// Images to edit.
    pub images: Vec<StoredImage>,
    /// Optional mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<StoredImage>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Images asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u8>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    /// Output compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    /// Input fidelity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<InputFidelity>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fallback models (the router's setting, never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_models: Option<Vec<String>>,
}

/// A stored request that could not be turned back into an [`ImageRequest`] (a hand-edited or
/// corrupt record).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored job request, field `{field}`: {message}")]
pub struct JobDecodeError {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A job's request in its stored form: a generation or an edit (with its input images).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobRequest {
    /// A generation.
    Generate {
        /// The request (its wire fields).
        request: GenerateRequest,
        /// Fallback models (the router's setting, never sent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback_models: Option<Vec<String>>,
    },
    /// An edit.
    Edit(StoredEdit),
}

impl JobRequest {
    /// The stored form of `request` (streaming switched off: jobs are not streamed).
    pub fn from_request(request: &ImageRequest) -> Self {
        match request {
            ImageRequest::Generate(g) => {
                let mut request = g.clone();
                request.stream = None;
                request.partial_images = None;
                JobRequest::Generate {
                    fallback_models: g.fallback_models.clone(),
                    request,
                }
            }
            ImageRequest::Edit(e) => JobRequest::Edit(StoredEdit {
                prompt: e.prompt.clone(),
                images: e.images.iter().map(StoredImage::from_input).collect(),
                mask: e.mask.as_ref().map(StoredImage::from_input),
                model: e.model.clone(),
                n: e.n,
                size: e.size,
                quality: e.quality,
                background: e.background,
                output_format: e.output_format,
                output_compression: e.output_compression,
                input_fidelity: e.input_fidelity,
                user: e.user.clone(),
                fallback_models: e.fallback_models.clone(),
            }),
        }
    }

    /// The request to send.
    pub fn to_request(&self) -> Result<ImageRequest, JobDecodeError> {
        Ok(match self {
            JobRequest::Generate {
                request,
                fallback_models,
            } => {
                let mut r = request.clone();
                r.fallback_models = fallback_models.clone();
                ImageRequest::Generate(r)
            }
            JobRequest::Edit(s) => {
                let images = s
                    .images
                    .iter()
                    .enumerate()
                    .map(|(i, img)| img.to_input(&format!("images[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut e = EditRequest::new(s.prompt.clone(), images);
                e.mask = s.mask.as_ref().map(|m| m.to_input("mask")).transpose()?;
                e.model = s.model.clone();
                e.n = s.n;
                e.size = s.size;
                e.quality = s.quality;
                e.background = s.background;
                e.output_format = s.output_format;
                e.output_compression = s.output_compression;
                e.input_fidelity = s.input_fidelity;
                e.user = s.user.clone();
                e.fallback_models = s.fallback_models.clone();
                ImageRequest::Edit(e)
            }
        })
    }

    /// The model asked for, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            JobRequest::Generate { request, .. } => request.model.as_deref(),
            JobRequest::Edit(e) => e.model.as_deref(),
        }
    }

    /// The prompt.
    pub fn prompt(&self) -> &str {
        match self {
            JobRequest::Generate { request, .. } => &request.prompt,
            JobRequest::Edit(e) => &e.prompt,
        }
    }
}

impl From<ImageRequest> for JobRequest {
    fn from(r: ImageRequest) -> Self {
        JobRequest::from_request(&r)
    }
}

impl From<GenerateRequest> for JobRequest {
    fn from(r: GenerateRequest) -> Self {
        JobRequest::from_request(&ImageRequest::Generate(r))
    }
}

impl From<EditRequest> for JobRequest {
    fn from(r: EditRequest) -> Self {
        JobRequest::from_request(&ImageRequest::Edit(r))
    }
}

/// The lane of a job: its request class and model, the unit a worker asks the router about
/// ("is there room for a request of this class and model now?"), so claiming is rate-aware
/// without loading jobs. Stored as one text column / key: `class` + `'/'` + `model`, each
/// empty when unset.
pub fn lane_of(class: Option<&str>, model: Option<&str>) -> String {
    format!("{}/{}", class.unwrap_or(""), model.unwrap_or(""))
}

/// The class and model of a lane key (see [`lane_of`]); empty parts are `None`.
pub fn split_lane(lane: &str) -> (Option<&str>, Option<&str>) {
    let (c, m) = lane.split_once('/').unwrap_or((lane, ""));
    ((!c.is_empty()).then_some(c), (!m.is_empty()).then_some(m))
}

/// Priority of a class when the job names none: interactive work first, batch work last.
pub fn default_priority(class: Option<&str>) -> i32 {
    match class {
        Some(c) if c == RequestClass::INTERACTIVE.as_str() => 100,
        Some(c) if c == RequestClass::BATCH.as_str() => -100,
        _ => 0,
    }
}

/// What an application submits: a request and how to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The request.
    pub request: JobRequest,
    /// Its request class (routes it; see [`RequestClass`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Higher runs first; `None`: from the class ([`default_priority`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Submitting the same key again returns the same job, never a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Wall-clock Unix ms after which the job is not sent any more (it ends `expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Where the job's status is POSTed when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// A job whose request was sent by a worker that then died may have been generated and
    /// billed; with `allow_rerun` it is sent again instead of failing.
    #[serde(default)]
    pub allow_rerun: bool,
    /// Retries of retryable failures before the job fails.
    pub max_retries: u32,
}

impl NewJob {
    /// A job for `request` with defaults: no class, class priority, no key, deadline or
    /// callback, no re-run after a possible billing, [`DEFAULT_MAX_RETRIES`].
    pub fn new(request: impl Into<JobRequest>) -> Self {
        Self {
            request: request.into(),
            class: None,
            priority: None,
            idempotency_key: None,
            deadline_ms: None,
            callback_url: None,
            allow_rerun: false,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// Sets the request class.
    #[must_use]
    pub fn class(mut self, class: RequestClass) -> Self {
        self.class = Some(class.as_str().to_string());
        self
    }

    /// Sets the priority (higher first).
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the deadline (wall-clock Unix ms).
    #[must_use]
    pub fn deadline_ms(mut self, at: u64) -> Self {
        self.deadline_ms = Some(at);
        self
    }

    /// Sets the callback URL.
    #[must_use]
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// Allows a re-run after a worker died with the request sent.
    #[must_use]
    pub fn allow_rerun(mut self, allow: bool) -> Self {
        self.allow_rerun = allow;
        self
    }

    /// Sets the retry limit.
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The priority the job runs at.
    pub fn effective_priority(&self) -> i32 {
        self.priority
            .unwrap_or_else(|| default_priority(self.class.as_deref()))
    }

    /// The job's lane (see [`lane_of`]).
    pub fn lane(&self) -> String {
        lane_of(self.class.as_deref(), self.request.model())
    }

    /// Checks what a backend must refuse before storing: key and URL lengths, a callback URL
    /// that is `http(s)`, and a request that decodes.
    pub fn validate(&self) -> Result<(), super::QueueError> {
        use super::QueueError;
        if let Some(k) = &self.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err(QueueError::invalid(
                    "idempotency_key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
        }
        if let Some(u) = &self.callback_url {
            if u.len() > MAX_CALLBACK_URL_BYTES {
                return Err(QueueError::invalid(
                    "callback_url",
                    format!("longer than {MAX_CALLBACK_URL_BYTES} bytes"),
                ));
            }
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                Ok(p) => {
                    return Err(QueueError::invalid(
                        "callback_url",
                        format!("scheme {:?} is not http or https", p.scheme()),
                    ))
                }
                Err(e) => {
                    return Err(QueueError::invalid(
                        "callback_url",
                        format!("not a URL: {e}"),
                    ))
                }
            }
        }
        if let Some(c) = &self.class {
            if c.contains('/') {
                return Err(QueueError::invalid("class", "must not contain '/'"));
            }
        }
        self.request
            .to_request()
            .map_err(|e| QueueError::invalid("request", e.to_string()))?;
        Ok(())
    }
}

/// One provider call of a job, as the job record keeps it (all runs, in order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobAttempt {
    /// Which run of the job (0 for the first claim, +1 per retry or re-run).
    pub run: u32,
    /// Provider.
    pub provider: String,
    /// Model as sent.
    pub model: String,
    /// How it ended (the router's outcome name, e.g. `success`, `rate_limited`).
    pub outcome: String,
    /// HTTP status, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Duration in ms.
    pub ms: u64,
    /// The error message, unless it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Sent with no answer: may have been generated and billed.
    #[serde(default)]
    pub possibly_billed: bool,
}

impl JobAttempt {
    /// The record of a router attempt in run `run`.
    pub fn from_attempt(run: u32, a: &Attempt) -> Self {
        let outcome = serde_json::to_value(a.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", a.outcome));
        Self {
            run,
            provider: a.provider.clone(),
            model: a.model.clone(),
            outcome,
            status: a.status,
            ms: u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX),
            error: a.error.as_ref().map(|e| e.message.clone()),
            possibly_billed: a.possibly_billed,
        }
    }
}

/// Why a job failed (or is being retried), in plain words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// A short machine-readable kind (`rejected`, `exhausted`, `possibly_billed`,
    /// `invalid`, `results_store`, ...).
    pub kind: String,
    /// The error message.
    pub message: String,
    /// What happened and what to do, in plain words.
    pub explanation: String,
}

impl JobError {
    /// An error of `kind`.
    pub fn new(
        kind: impl Into<String>,
        message: impl Into<String>,
        explanation: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            explanation: explanation.into(),
        }
    }

    /// The record of a router error.
    pub fn from_router_error(err: &Error) -> Self {
        let kind = match err {
            Error::Config(_) => "config",
            Error::Invalid(_) => "invalid",
            Error::Rejected { .. } => "rejected",
            Error::Exhausted { .. } => "exhausted",
            _ => "error",
        };
        Self::new(kind, err.to_string(), err.explain().to_string())
    }

    /// The error of a job whose request was sent by a worker that died (lease ran out).
    pub fn possibly_billed() -> Self {
        Self::new(
            "possibly_billed",
            "the worker running this job stopped after sending its request; the image may have been generated and billed",
            "The request reached the provider, but the worker stopped before the answer arrived, so the provider may have generated and billed the image. It was not sent again, to avoid paying twice. Submit it again (or set allow_rerun on the job) if you want it re-run.",
        )
    }
}

/// A job's lease: which worker holds it and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker id.
    pub owner: String,
    /// When the lease runs out (Unix ms) unless heartbeated.
    pub expires_ms: u64,
}

/// Where the job's callback delivery stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallbackState {
    /// No callback URL, or the job has not ended yet.
    None,
    /// To be delivered at or after `next_at_ms`.
    Pending {
        /// Deliveries tried so far.
        attempts: u32,
        /// When the next try is due (Unix ms).
        next_at_ms: u64,
        /// The last try's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// The receiver answered 2xx.
    Delivered {
        /// Tries it took.
        attempts: u32,
        /// When (Unix ms).
        at_ms: u64,
        /// The receiver's HTTP status.
        status: u16,
    },
    /// Every try failed; no more tries.
    Failed {
        /// Tries made.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
}

/// Where one result image was written (see [`ResultsStore`](super::ResultsStore)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLocation {
    /// The store's location (a file path, a URL, an object key).
    pub location: String,
    /// Bytes written.
    pub bytes: u64,
    /// MIME type.
    pub content_type: String,
}

/// What a successful job records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSuccess {
    /// Provider that served it.
    pub provider: String,
    /// Model as served.
    pub model: String,
    /// Token usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Cost in USD, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Where the images are.
    pub results: Vec<ResultLocation>,
    /// This run's attempts.
    pub attempts: Vec<JobAttempt>,
}

/// The stored job: its submission and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// State.
    pub state: JobState,
    /// What was submitted.
    pub spec: NewJob,
    /// Priority it runs at.
    pub priority: i32,
    /// Its lane (class and model; see [`lane_of`]).
    pub lane: String,
    /// Retries used (retryable failures and runs handed back after a re-run).
    pub retries: u32,
    /// Submitted (Unix ms).
    pub enqueued_ms: u64,
    /// First claimed (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Ended (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Not claimed before this time (a retry's backoff), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Every provider call of every run, in order.
    #[serde(default)]
    pub attempts: Vec<JobAttempt>,
    /// Provider that served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model as served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Cost in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Where the images are.
    #[serde(default)]
    pub results: Vec<ResultLocation>,
    /// Why it failed (or the last retryable error while queued again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The current run's request may have been sent (set durably before sending).
    #[serde(default)]
    pub sent: bool,
    /// The current lease, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Callback delivery.
    pub callback: CallbackState,
}

impl Job {
    /// A queued job record for `spec`, submitted at `now_ms` with `id`.
    pub fn queued(id: JobId, spec: NewJob, now_ms: u64) -> Self {
        Self {
            id,
            state: JobState::Queued,
            priority: spec.effective_priority(),
            lane: spec.lane(),
            spec,
            retries: 0,
            enqueued_ms: now_ms,
            started_ms: None,
            ended_ms: None,
            not_before_ms: None,
            attempts: Vec::new(),
            provider: None,
            model: None,
            usage: None,
            cost_usd: None,
            results: Vec::new(),
            error: None,
            sent: false,
            lease: None,
            callback: CallbackState::None,
        }
    }

    /// The run number of the current claim (for [`JobAttempt::run`]).
    pub fn run(&self) -> u32 {
        self.retries
    }

    /// The status document of the job as JSON (what `status --json` prints and what a
    /// callback POSTs): the record without the request's input images.
    pub fn status_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(req) = v.pointer_mut("/spec/request") {
            if let Some(obj) = req.as_object_mut() {
                for key in ["images", "mask"] {
                    if let Some(imgs) = obj.get_mut(key) {
                        *imgs = serde_json::json!("(omitted)");
                    }
                }
            }
        }
        v
    }

    /// Callback state a job gets when it ends at `now_ms`: pending when it has a URL.
    pub fn callback_on_end(&self, now_ms: u64) -> CallbackState {
        if self.spec.callback_url.is_some() {
            CallbackState::Pending {
                attempts: 0,
                next_at_ms: now_ms,
                last_error: None,
            }
        } else {
            CallbackState::None
        }
    }
}
