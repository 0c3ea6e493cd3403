//! The HTTP/1.1 server: accept loop, routing, and the answer to each request.
//!
//! Why hyper directly (and not a web framework): the simulator must be able to misbehave in
//! ways frameworks hide (close a connection without an answer, send half a JSON body, never
//! answer), and hyper's `service_fn` gives exactly that control with no extra dependency.
//!
//! Every request goes through the same steps: find the account from the first path segment,
//! record the request, apply the account's latency, serve a scripted fault if one is queued,
//! check the key, parse and validate the body, resolve the model (or Azure deployment), pass
//! the RPM / TPM window, and answer with real PNG bytes and usage from the token table.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::account::{AccountState, ChatImageStyle, ReceivedRequest};
use super::bodies;
use super::faults::Fault;
use super::png::{colour_for, solid_png, Encoded};
use super::window::{LimitKind, Rejection};
use super::Shared;
use crate::catalog::Catalog;
use crate::error::RateLimitScope;
use crate::headers::format_go_duration;
use crate::request::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputImage, OutputFormat, Quality,
    ResponseFormat, Size,
};
use crate::tokens;

/// Largest request body the simulator reads.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How long reading a request body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Error returned from the service to make hyper drop the connection without an answer.
#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

/// Accepts connections until the task is aborted; dropping the `JoinSet` with the task aborts
/// every open connection (and any hanging request) too.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move { handle(shared, req).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off briefly and keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Which API surface a request came in on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Surface {
    OpenAi,
    /// Azure; `deployment` is `None` on the v1 surface (deployment name in the body).
    Azure {
        deployment: Option<String>,
        api_version: String,
    },
}

impl Surface {
    fn is_azure(&self) -> bool {
        matches!(self, Surface::Azure { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Generate,
    Edit,
    Chat,
}

/// An answer before it becomes a hyper response.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(self.body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        resp
    }
}

/// What a request turned into: an answer, or a dropped connection.
enum Outcome {
    Reply(Reply),
    Reset,
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ConnectionReset> {
    let started = Instant::now();
    match answer(shared, req).await {
        Outcome::Reset => Err(ConnectionReset),
        Outcome::Reply(mut reply) => {
            let ms = started.elapsed().as_millis().max(1);
            reply.headers.push(("openai-processing-ms", ms.to_string()));
            Ok(reply.into_response())
        }
    }
}

async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Outcome {
    let seq = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let method = parts.method.clone();

    let trimmed = path.trim_start_matches('/');
    let (account, rest) = match trimmed.split_once('/') {
        Some((a, r)) => (a.to_string(), format!("/{r}")),
        None => (trimmed.to_string(), String::from("/")),
    };
    let Some(state) = shared.accounts.get(&account) else {
        let reply = Reply::json(404, &bodies::unknown_url(method.as_str(), &path))
            .header("x-request-id", format!("req_sim_{seq:016x}"));
        return Outcome::Reply(reply);
    };

    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            let r = Reply::json(
                413,
                &bodies::invalid_request(
                    "The request body could not be read or is too large.",
                    None,
                    None,
                ),
            )
            .header("x-request-id", format!("req_sim_{seq:016x}"));
            return Outcome::Reply(r);
        }
        Err(_) => return Outcome::Reset,
    };

    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bearer = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    let api_key = parts
        .headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());

    let _in_flight = InFlight::enter(state);
    {
        let mut st = state.lock();
        st.stats.requests += 1;
        let at = shared.clock.now();
        st.received.push(ReceivedRequest {
            method: method.as_str().to_string(),
            path: path.clone(),
            query: query.clone(),
            headers,
            body: body.clone(),
            at,
        });
    }

    let ctx = Ctx {
        shared: &shared,
        state,
        account: &account,
        seq,
        body,
        content_type,
        bearer,
        api_key,
    };
    route(&ctx, &method, &rest, query.as_deref()).await
}

/// Counts a request in [`SimStats::in_flight`](super::SimStats::in_flight) until dropped,
/// which also happens when hyper drops the request's future (client gone, server shut down).
struct InFlight<'a>(&'a parking_lot::Mutex<AccountState>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a parking_lot::Mutex<AccountState>) -> Self {
        state.lock().stats.in_flight += 1;
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.stats.in_flight = st.stats.in_flight.saturating_sub(1);
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    state: &'a parking_lot::Mutex<AccountState>,
    account: &'a str,
    seq: u64,
    body: Bytes,
    content_type: String,
    bearer: Option<String>,
    api_key: Option<String>,
}

impl Ctx<'_> {
    fn request_id(&self) -> String {
        format!("req_sim_{:016x}", self.seq)
    }

    fn apim_id(&self) -> String {
        format!(
            "00000000-0000-4000-8000-{:012x}",
            self.seq & 0xffff_ffff_ffff
        )
    }

    /// The id header for the surface.
    fn id_header(&self, surface: &Surface, reply: Reply) -> Reply {
        if surface.is_azure() {
            reply.header("apim-request-id", self.apim_id())
        } else {
            reply.header("x-request-id", self.request_id())
        }
    }

    /// A counted error answer.
    fn reject(&self, surface: &Surface, status: u16, body: &Value) -> Outcome {
        self.state.lock().stats.rejected += 1;
        Outcome::Reply(self.id_header(surface, Reply::json(status, body)))
    }

    fn file_url(&self, id: &str) -> String {
        format!("{}/{}/files/{id}.png", self.shared.base_url, self.account)
    }
}

async fn route(ctx: &Ctx<'_>, method: &Method, rest: &str, query: Option<&str>) -> Outcome {
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let api_version = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    });
    let post = method == Method::POST;
    let get = method == Method::GET;
    match segs.as_slice() {
        ["v1", "images", "generations"] if post => {
            image_op(ctx, Surface::OpenAi, Op::Generate).await
        }
        ["v1", "images", "edits"] if post => image_op(ctx, Surface::OpenAi, Op::Edit).await,
        ["v1", "chat", "completions"] if post => image_op(ctx, Surface::OpenAi, Op::Chat).await,
        ["v1", "models"] if get => models(ctx, None).await,
        ["v1", "models", model] if get => models(ctx, Some(model)).await,
        ["openai", "deployments", dep] if get => {
            let surface = Surface::Azure {
                deployment: Some((*dep).to_string()),
                api_version: api_version.clone().unwrap_or_default(),
            };
            if api_version.is_none() {
                return ctx.reject(&surface, 404, &bodies::azure_resource_not_found());
            }
            deployment_get(ctx, surface, dep).await
        }
        ["files", file] if get => file_download(ctx, file),
        ["openai", "deployments", dep, "images", op @ ("generations" | "edits")] if post => {
            let Some(api_version) = api_version else {
                let surface = Surface::Azure {
                    deployment: None,
                    api_version: String::new(),
                };
                return ctx.reject(&surface, 404, &bodies::azure_resource_not_found());
            };
            let surface = Surface::Azure {
                deployment: Some((*dep).to_string()),
                api_version,
            };
            let op = if *op == "edits" {
                Op::Edit
            } else {
                Op::Generate
            };
            image_op(ctx, surface, op).await
        }
        ["openai", "v1", "images", op @ ("generations" | "edits")] if post => {
            let surface = Surface::Azure {
                deployment: None,
                api_version: api_version.unwrap_or_else(|| "v1".to_string()),
            };
            let op = if *op == "edits" {
                Op::Edit
            } else {
                Op::Generate
            };
            image_op(ctx, surface, op).await
        }
        _ => {
            let surface = if segs.first() == Some(&"openai") {
                Surface::Azure {
                    deployment: None,
                    api_version: String::new(),
                }
            } else {
                Surface::OpenAi
            };
            let body = if surface.is_azure() {
                bodies::azure_resource_not_found()
            } else {
                bodies::unknown_url(method.as_str(), &format!("/{}{rest}", ctx.account))
            };
            ctx.reject(&surface, 404, &body)
        }
    }
}

fn auth_ok(ctx: &Ctx<'_>, surface: &Surface) -> bool {
    let st = ctx.state.lock();
    if surface.is_azure() {
        st.config.key_ok(ctx.api_key.as_deref()) || st.config.key_ok(ctx.bearer.as_deref())
    } else {
        st.config.key_ok(ctx.bearer.as_deref())
    }
}

fn unauthorized(ctx: &Ctx<'_>, surface: &Surface) -> Outcome {
    ctx.state.lock().stats.unauthorized += 1;
    let body = if surface.is_azure() {
        bodies::azure_unauthorized()
    } else {
        bodies::invalid_api_key(ctx.bearer.as_deref())
    };
    Outcome::Reply(ctx.id_header(surface, Reply::json(401, &body)))
}

/// Serves the account's next scripted fault, if any (after the account's latency), so a
/// lookup (`GET /models`, an Azure deployment) fails the way an image call would: `doctor`
/// checks accounts with lookups.
async fn scripted(ctx: &Ctx<'_>, surface: &Surface) -> Option<Outcome> {
    let (latency, fault, hang_limit) = {
        let mut st = ctx.state.lock();
        let fault = st.faults.next();
        if fault.is_some() {
            st.stats.faults_served += 1;
        }
        (st.config.latency, fault, ctx.shared.hang_limit)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    serve_fault(ctx, surface, Op::Generate, fault?, hang_limit).await
}

/// Azure `GET /openai/deployments/{name}`: the deployment and the model it serves, or
/// `DeploymentNotFound`.
async fn deployment_get(ctx: &Ctx<'_>, surface: Surface, dep: &str) -> Outcome {
    if let Some(o) = scripted(ctx, &surface).await {
        return o;
    }
    if !auth_ok(ctx, &surface) {
        return unauthorized(ctx, &surface);
    }
    let resolved = {
        let st = ctx.state.lock();
        if st.config.deployments.is_empty() {
            st.config.serves_model(dep).then(|| dep.to_string())
        } else {
            st.config.deployments.get(dep).cloned()
        }
    };
    match resolved {
        Some(model) => {
            let body =
                json!({"id": dep, "model": model, "status": "succeeded", "object": "deployment"});
            Outcome::Reply(ctx.id_header(&surface, Reply::json(200, &body)))
        }
        None => ctx.reject(&surface, 404, &bodies::deployment_not_found()),
    }
}

async fn models(ctx: &Ctx<'_>, one: Option<&str>) -> Outcome {
    let surface = Surface::OpenAi;
    if let Some(o) = scripted(ctx, &surface).await {
        return o;
    }
    if !auth_ok(ctx, &surface) {
        return unauthorized(ctx, &surface);
    }
    let names: Vec<String> = {
        let st = ctx.state.lock();
        match &st.config.models {
            Some(list) => list.clone(),
            None => Catalog::builtin()
                .models()
                .map(|m| m.name().to_string())
                .collect(),
        }
    };
    let object = |id: &str| json!({"id": id, "object": "model", "created": 1_698_785_189, "owned_by": "system"});
    match one {
        None => {
            let data: Vec<Value> = names.iter().map(|n| object(n)).collect();
            let body = json!({"object": "list", "data": data});
            Outcome::Reply(ctx.id_header(&surface, Reply::json(200, &body)))
        }
        Some(m) if names.iter().any(|n| n == m) => {
            Outcome::Reply(ctx.id_header(&surface, Reply::json(200, &object(m))))
        }
        Some(m) => ctx.reject(&surface, 404, &bodies::model_not_found(m)),
    }
}

fn file_download(ctx: &Ctx<'_>, file: &str) -> Outcome {
    let surface = Surface::OpenAi;
    let id = file.strip_suffix(".png").unwrap_or(file);
    let bytes = ctx.state.lock().files.get(id).cloned();
    match bytes {
        Some(b) => Outcome::Reply(Reply {
            status: StatusCode::OK,
            content_type: "image/png",
            headers: vec![("x-request-id", ctx.request_id())],
            body: b,
        }),
        None => ctx.reject(
            &surface,
            404,
            &bodies::invalid_request(&format!("No such file: {file}"), None, None),
        ),
    }
}

/// The model named in a JSON body, if any (used for wording fault messages).
fn peek_model(body: &Bytes) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

async fn image_op(ctx: &Ctx<'_>, surface: Surface, op: Op) -> Outcome {
    let (latency, fault, hang_limit) = {
        let mut st = ctx.state.lock();
        let fault = st.faults.next();
        if fault.is_some() {
            st.stats.faults_served += 1;
        }
        (st.config.latency, fault, ctx.shared.hang_limit)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(fault) = fault {
        if let Some(outcome) = serve_fault(ctx, &surface, op, fault, hang_limit).await {
            return outcome;
        }
    }
    if !auth_ok(ctx, &surface) {
        return unauthorized(ctx, &surface);
    }
    let parsed = match op {
        Op::Generate => parse_generate(&ctx.body).map(ImageRequest::Generate),
        Op::Edit => parse_edit(ctx.body.clone(), &ctx.content_type)
            .await
            .map(ImageRequest::Edit),
        Op::Chat => parse_chat(&ctx.body).map(ImageRequest::Generate),
    };
    let mut req = match parsed {
        Ok(r) => r,
        Err((msg, param)) => {
            return ctx.reject(&surface, 400, &bodies::invalid_request(&msg, param, None));
        }
    };
    // Resolve the model: the body on OpenAI, the deployment on Azure.
    let catalog = Catalog::builtin();
    let model = match &surface {
        Surface::OpenAi => {
            let m = req.model().unwrap_or(catalog.default_model()).to_string();
            let served = ctx.state.lock().config.serves_model(&m);
            if !served {
                return ctx.reject(&surface, 404, &bodies::model_not_found(&m));
            }
            m
        }
        Surface::Azure { deployment, .. } => {
            let name = match deployment
                .clone()
                .or_else(|| req.model().map(str::to_string))
            {
                Some(n) => n,
                None => {
                    return ctx.reject(
                        &surface,
                        400,
                        &bodies::invalid_request(
                            "Missing required parameter: 'model'.",
                            Some("model"),
                            Some("missing_required_parameter"),
                        ),
                    )
                }
            };
            let resolved = {
                let st = ctx.state.lock();
                if st.config.deployments.is_empty() {
                    st.config.serves_model(&name).then(|| name.clone())
                } else {
                    st.config.deployments.get(&name).cloned()
                }
            };
            match resolved {
                Some(m) => m,
                None => return ctx.reject(&surface, 404, &bodies::deployment_not_found()),
            }
        }
    };
    if surface.is_azure() && req.output_format() == Some(OutputFormat::Webp) {
        return ctx.reject(&surface, 400, &bodies::azure_webp());
    }
    let spec = catalog.model(&model);
    if let Err(e) = req.validate(spec.map(|s| &s.capabilities)) {
        return ctx.reject(
            &surface,
            400,
            &bodies::invalid_request(&e.message, Some(e.field), Some("invalid_value")),
        );
    }
    req.set_model(model.clone());
    let estimate = tokens::estimate(&req, spec, catalog.default_output_tokens_per_image());

    // Output size before admission, so an absurd size is refused without using the window.
    let (w, h) = match spec.map(|s| s.resolve_size(req.size())).or(req.size()) {
        Some(Size::Dims { width, height }) => (width, height),
        _ => (1024, 1024),
    };
    let transparent = req.background() == Some(Background::Transparent);
    let [r, g, b] = colour_for(ctx.account);
    let Some(image) = solid_png(w, h, [r, g, b, if transparent { 0 } else { 255 }]) else {
        return ctx.reject(
            &surface,
            400,
            &bodies::invalid_request(
                &format!("Invalid size {w}x{h}."),
                Some("size"),
                Some("invalid_value"),
            ),
        );
    };

    // The window.
    let total = estimate.total();
    let (admitted, window_headers) = {
        let mut st = ctx.state.lock();
        let now = ctx.shared.clock.now();
        let limited = st.window.is_limited();
        let res = st.window.check(now, total);
        if res.is_ok() {
            st.stats.tokens += total;
        } else {
            st.stats.rate_limited += 1;
        }
        let hdrs = if limited {
            rate_headers(&mut st, now, &surface)
        } else {
            Vec::new()
        };
        (res, hdrs)
    };
    if let Err(rej) = admitted {
        let org = ctx
            .state
            .lock()
            .config
            .organization
            .clone()
            .unwrap_or_else(|| "org-sim".to_string());
        let mut reply = window_429(&surface, op, &model, &org, &rej);
        reply.headers.extend(window_headers);
        return Outcome::Reply(ctx.id_header(&surface, reply));
    }

    let n = usize::from(req.n());
    let caps = spec.map(|s| &s.capabilities);
    let dalle = caps.is_some_and(|c| c.response_format);
    let body = if op == Op::Chat {
        chat_body(ctx, &model, &image, estimate)
    } else {
        let want_url = dalle
            && matches!(&req, ImageRequest::Generate(g) if g.response_format == Some(ResponseFormat::Url));
        let mut data = Vec::with_capacity(n);
        for _ in 0..n {
            let mut item = serde_json::Map::new();
            if want_url {
                let id = store_file(ctx, &image);
                item.insert("url".into(), Value::String(ctx.file_url(&id)));
            } else {
                item.insert("b64_json".into(), Value::String(image.b64.to_string()));
            }
            if caps.is_some_and(|c| c.style) {
                item.insert(
                    "revised_prompt".into(),
                    Value::String(req.prompt().to_string()),
                );
            }
            data.push(Value::Object(item));
        }
        let mut body = json!({"created": unix_now(), "data": data});
        if !dalle {
            let quality = spec
                .map(|s| s.resolve_quality(req.quality()))
                .or(req.quality())
                .unwrap_or(Quality::Auto);
            body["background"] = json!(if transparent { "transparent" } else { "opaque" });
            body["output_format"] =
                json!(req.output_format().unwrap_or(OutputFormat::Png).as_str());
            body["size"] = json!(format!("{w}x{h}"));
            body["quality"] = json!(quality.as_str());
            body["usage"] = json!({
                "input_tokens": estimate.text_input + estimate.image_input,
                "input_tokens_details": {"text_tokens": estimate.text_input, "image_tokens": estimate.image_input},
                "output_tokens": estimate.image_output,
                "output_tokens_details": {"image_tokens": estimate.image_output, "text_tokens": 0},
                "total_tokens": estimate.total(),
            });
        }
        body
    };
    {
        let mut st = ctx.state.lock();
        st.stats.succeeded += 1;
        st.stats.images += if op == Op::Chat { 1 } else { n as u64 };
    }
    let mut reply = Reply::json(200, &body);
    reply.headers.extend(window_headers);
    Outcome::Reply(ctx.id_header(&surface, reply))
}

fn store_file(ctx: &Ctx<'_>, image: &Encoded) -> String {
    let mut st = ctx.state.lock();
    let id = format!("img_{:08}", st.next_id());
    st.files.insert(id.clone(), image.bytes.clone());
    id
}

fn chat_body(
    ctx: &Ctx<'_>,
    model: &str,
    image: &Encoded,
    estimate: tokens::TokenEstimate,
) -> Value {
    let style = ctx.state.lock().config.chat_image;
    let content = match style {
        ChatImageStyle::DataUrl => format!("data:image/png;base64,{}", image.b64),
        ChatImageStyle::MarkdownUrl => {
            let id = store_file(ctx, image);
            format!("![image]({})", ctx.file_url(&id))
        }
        ChatImageStyle::PlainUrl => ctx.file_url(&store_file(ctx, image)),
    };
    json!({
        "id": format!("chatcmpl-sim{:016x}", ctx.seq),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": estimate.text_input,
            "completion_tokens": estimate.image_output,
            "total_tokens": estimate.total()
        }
    })
}

/// `x-ratelimit-*` headers describing the window after this request.
fn rate_headers(
    st: &mut AccountState,
    now: Duration,
    surface: &Surface,
) -> Vec<(&'static str, String)> {
    let state = st.window.state(now);
    let mut out = Vec::new();
    let azure = surface.is_azure();
    if let Some(rpm) = st.window.rpm() {
        let rpm = u64::from(rpm);
        if !azure {
            out.push(("x-ratelimit-limit-requests", rpm.to_string()));
        }
        out.push((
            "x-ratelimit-remaining-requests",
            rpm.saturating_sub(state.requests).to_string(),
        ));
        if !azure {
            out.push((
                "x-ratelimit-reset-requests",
                format_go_duration(state.reset_requests),
            ));
        }
    }
    if let Some(tpm) = st.window.tpm() {
        if !azure {
            out.push(("x-ratelimit-limit-tokens", tpm.to_string()));
        }
        out.push((
            "x-ratelimit-remaining-tokens",
            tpm.saturating_sub(state.tokens).to_string(),
        ));
        if !azure {
            out.push((
                "x-ratelimit-reset-tokens",
                format_go_duration(state.reset_tokens),
            ));
        }
    }
    out
}

fn retry_headers(reply: Reply, retry: Duration) -> Reply {
    reply
        .header("retry-after", bodies::ceil_secs(retry).to_string())
        .header("retry-after-ms", bodies::ceil_millis(retry).to_string())
}

/// The 429 for a request the window refused.
fn window_429(surface: &Surface, op: Op, model: &str, org: &str, rej: &Rejection) -> Reply {
    let Some(retry) = rej.retry_in else {
        // It can never fit: a zero limit is the tier denial; a request over the TPM limit is
        // "Request too large".
        if rej.limit == 0 {
            return Reply::json(429, &bodies::tier_denied());
        }
        return Reply::json(
            429,
            &bodies::request_too_large(model, org, rej.limit, rej.requested),
        );
    };
    let body = match surface {
        Surface::Azure { api_version, .. } => bodies::azure_rate_limited(
            bodies::azure_operation(op == Op::Edit),
            api_version,
            rej.kind,
            Some(retry),
        ),
        Surface::OpenAi => bodies::rate_limited(
            model,
            org,
            rej.kind,
            rej.limit,
            rej.used,
            rej.requested,
            retry,
        ),
    };
    retry_headers(Reply::json(429, &body), retry)
}

/// Serves a scripted fault; `None` means "continue normally" (after [`Fault::Slow`]).
async fn serve_fault(
    ctx: &Ctx<'_>,
    surface: &Surface,
    op: Op,
    fault: Fault,
    hang_limit: Duration,
) -> Option<Outcome> {
    let azure = surface.is_azure();
    let model = match surface {
        Surface::Azure {
            deployment: Some(d),
            ..
        } => {
            let st = ctx.state.lock();
            st.config
                .deployments
                .get(d)
                .cloned()
                .unwrap_or_else(|| d.clone())
        }
        _ => {
            peek_model(&ctx.body).unwrap_or_else(|| Catalog::builtin().default_model().to_string())
        }
    };
    let org = ctx
        .state
        .lock()
        .config
        .organization
        .clone()
        .unwrap_or_else(|| "org-sim".to_string());
    let reply = match fault {
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            return None;
        }
        Fault::Hang => {
            tokio::time::sleep(hang_limit).await;
            return Some(Outcome::Reset);
        }
        Fault::Reset => return Some(Outcome::Reset),
        Fault::RateLimited { retry_after, scope } => {
            let kind = match scope {
                RateLimitScope::Requests => Some(LimitKind::Requests),
                RateLimitScope::Tokens => Some(LimitKind::Tokens),
                _ => None,
            };
            let body = match surface {
                Surface::Azure { api_version, .. } => bodies::azure_rate_limited(
                    bodies::azure_operation(op == Op::Edit),
                    api_version,
                    kind.unwrap_or(LimitKind::Requests),
                    retry_after,
                ),
                Surface::OpenAi => {
                    let limit = {
                        let st = ctx.state.lock();
                        match kind {
                            Some(LimitKind::Requests) => st.window.rpm().map(u64::from),
                            Some(LimitKind::Tokens) => st.window.tpm(),
                            None => None,
                        }
                    };
                    bodies::scripted_rate_limit(&model, &org, kind, retry_after, limit)
                }
            };
            let reply = Reply::json(429, &body);
            match retry_after {
                Some(d) => retry_headers(reply, d),
                None => reply,
            }
        }
        Fault::TierDenied => Reply::json(429, &bodies::tier_denied()),
        Fault::InsufficientQuota => Reply::json(429, &bodies::insufficient_quota()),
        Fault::BillingHardLimit => Reply::json(400, &bodies::billing_hard_limit()),
        Fault::OrgNotVerified => Reply::json(403, &bodies::org_not_verified(&model)),
        Fault::RegionNotSupported => Reply::json(403, &bodies::region_not_supported()),
        Fault::InvalidApiKey => {
            let body = if azure {
                bodies::azure_unauthorized()
            } else {
                bodies::invalid_api_key(ctx.bearer.as_deref())
            };
            Reply::json(401, &body)
        }
        Fault::ModelNotFound => {
            let body = if azure {
                bodies::deployment_not_found()
            } else {
                bodies::model_not_found(&model)
            };
            Reply::json(404, &body)
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Reply::json(status.as_u16(), &bodies::server_error(status.as_u16()))
        }
        Fault::TruncatedJson => {
            let full = match solid_png(1024, 1024, [200, 200, 200, 255]) {
                Some(img) => {
                    json!({"created": unix_now(), "data": [{"b64_json": img.b64.as_ref()}]})
                        .to_string()
                }
                None => json!({"created": unix_now(), "data": [{"b64_json": ""}]}).to_string(),
            };
            let cut = full.len() / 2;
            let mut reply = Reply::json(200, &Value::Null);
            reply.body = Bytes::from(full).slice(..cut);
            reply
        }
        Fault::EmptyData => Reply::json(200, &json!({"created": unix_now(), "data": []})),
        Fault::ContentPolicy => {
            let body = if azure {
                bodies::azure_content_filter()
            } else {
                let dalle = Catalog::builtin()
                    .model(&model)
                    .is_some_and(|m| m.capabilities.response_format);
                bodies::content_policy(dalle, &ctx.request_id())
            };
            Reply::json(400, &body)
        }
    };
    Some(Outcome::Reply(ctx.id_header(surface, reply)))
}

type ParseError = (String, Option<&'static str>);

fn parse_generate(body: &Bytes) -> Result<GenerateRequest, ParseError> {
    serde_json::from_slice::<GenerateRequest>(body).map_err(|e| {
        (
            format!("We could not parse the JSON body of your request: {e}."),
            None,
        )
    })
}

fn parse_chat(body: &Bytes) -> Result<GenerateRequest, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        (
            format!("We could not parse the JSON body of your request: {e}."),
            None,
        )
    })?;
    let messages = v.get("messages").and_then(Value::as_array).ok_or_else(|| {
        (
            "Missing required parameter: 'messages'.".to_string(),
            Some("messages"),
        )
    })?;
    let prompt = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => {
                let text: Vec<&str> = parts
                    .iter()
                    .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                Some(text.join("\n"))
            }
            _ => None,
        })
        .ok_or_else(|| {
            (
                "The request needs a user message with text content.".to_string(),
                Some("messages"),
            )
        })?;
    let mut req = GenerateRequest::new(prompt);
    req.model = v.get("model").and_then(Value::as_str).map(str::to_string);
    Ok(req)
}

async fn parse_edit(body: Bytes, content_type: &str) -> Result<EditRequest, ParseError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        (
            "Invalid Content-Type header: expected multipart/form-data with a boundary."
                .to_string(),
            None,
        )
    })?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut req = EditRequest::new(String::new(), Vec::new());
    let mut prompt = None;
    let bad =
        |field: &'static str, e: String| (format!("Invalid value for '{field}': {e}"), Some(field));
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err((format!("Invalid multipart body: {e}"), None)),
        };
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        let ctype = field.content_type().map(|m| m.to_string());
        let data = field
            .bytes()
            .await
            .map_err(|e| (format!("Invalid multipart body: {e}"), None))?;
        let file = |default: &str| {
            let mut img = InputImage::new(
                data.clone(),
                filename.clone().unwrap_or_else(|| default.to_string()),
            );
            if let Some(ct) = &ctype {
                img.content_type = ct.clone();
            }
            img
        };
        let text = || String::from_utf8_lossy(&data).into_owned();
        match name.as_str() {
            "image" | "image[]" => req.images.push(file("image.png")),
            "mask" => req.mask = Some(file("mask.png")),
            "prompt" => prompt = Some(text()),
            "model" => req.model = Some(text()),
            "n" => {
                req.n = Some(
                    text()
                        .trim()
                        .parse()
                        .map_err(|e: std::num::ParseIntError| bad("n", e.to_string()))?,
                )
            }
            "size" => {
                req.size = Some(
                    text()
                        .parse()
                        .map_err(|e: crate::request::ParseSizeError| bad("size", e.to_string()))?,
                )
            }
            "quality" => {
                req.quality = Some(
                    text()
                        .parse()
                        .map_err(|e: crate::request::ParseEnumError| {
                            bad("quality", e.to_string())
                        })?,
                )
            }
            "background" => {
                req.background = Some(text().parse().map_err(
                    |e: crate::request::ParseEnumError| bad("background", e.to_string()),
                )?)
            }
            "output_format" => {
                req.output_format = Some(text().parse().map_err(
                    |e: crate::request::ParseEnumError| bad("output_format", e.to_string()),
                )?)
            }
            "output_compression" => {
                req.output_compression = Some(text().trim().parse().map_err(
                    |e: std::num::ParseIntError| bad("output_compression", e.to_string()),
                )?)
            }
            "input_fidelity" => {
                req.input_fidelity = Some(text().parse().map_err(
                    |e: crate::request::ParseEnumError| bad("input_fidelity", e.to_string()),
                )?)
            }
            "user" => req.user = Some(text()),
            // Fields the simulator does not act on (stream, partial_images, ...) are ignored,
            // as the API ignores what it does not need.
            _ => {}
        }
    }
    req.prompt = prompt.ok_or_else(|| {
        (
            "Missing required parameter: 'prompt'.".to_string(),
            Some("prompt"),
        )
    })?;
    if req.images.is_empty() {
        return Err((
            "Missing required parameter: 'image'.".to_string(),
            Some("image"),
        ));
    }
    Ok(req)
}
