//! HTTP serving: the accept loop, one hyper connection per client, and the first step of
//! every request (find the account, read the body, record the request) before
//! [`routing`](super::routing) picks the endpoint.
//!
//! Why hyper directly (and not a web framework): the simulator must be able to misbehave in
//! ways frameworks hide (close a connection without an answer, send half a JSON body, never
//! answer), and hyper's `service_fn` gives exactly that control with no extra dependency.
//!
//! Every request goes through the same steps, one module each: this one (account, body,
//! request log), [`routing`](super::routing) (path → endpoint, key check),
//! [`fault_serving`](super::fault_serving) (latency and the scripted fault),
//! [`parse`](super::parse) (the JSON or multipart body), [`image_op`](super::image_op)
//! (model, validation, image, window, answer body) and
//! [`rate_headers`](super::rate_headers) (the `x-ratelimit-*` headers and window 429s).
//! The types they share ([`Reply`], [`Outcome`], [`Ctx`], the surface and operation) are in
//! [`exchange`](super::exchange).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::account::{AccountState, ReceivedRequest};
use super::bodies;
use super::exchange::{Ctx, Outcome, Reply};
use super::routing::route;
use super::Shared;

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

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>, ConnectionReset>
{
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
    let wire = WireHeaders::of(&parts);
    let account = super::keys::resolve(
        &shared,
        account,
        &[wire.bearer.as_deref(), wire.api_key.as_deref()],
    );
    let Some(state) = shared.accounts.get(&account) else {
        let reply = Reply::json(404, &bodies::unknown_url(method.as_str(), &path))
            .header("x-request-id", format!("req_sim_{seq:016x}"));
        return Outcome::Reply(reply);
    };
    let body = match read_body(body, seq).await {
        Ok(b) => b,
        Err(outcome) => return outcome,
    };

    let _in_flight = InFlight::enter(state);
    {
        let mut st = state.lock();
        st.stats.requests += 1;
        let at = shared.clock.now();
        st.received.push(ReceivedRequest {
            method: method.as_str().to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: wire.all,
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
        content_type: wire.content_type,
        bearer: wire.bearer,
        api_key: wire.api_key,
    };
    match route(&ctx, &method, &rest, query.as_deref()).await {
        Outcome::Reply(mut reply) => {
            if let Some(body) = reply.stream.take() {
                // A streamed answer is in flight until its body ends or the client leaves.
                reply.stream = Some(Held::new(body, shared.clone(), account.clone()).boxed());
            }
            Outcome::Reply(reply)
        }
        other => other,
    }
}

/// A streamed body that counts in [`SimStats::in_flight`](super::SimStats::in_flight) until
/// it is dropped (sent to the end, or the connection closed).
struct Held {
    body: http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
    shared: Arc<Shared>,
    account: String,
}

impl Held {
    fn new(
        body: http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
        shared: Arc<Shared>,
        account: String,
    ) -> Self {
        if let Some(state) = shared.accounts.get(&account) {
            state.lock().stats.in_flight += 1;
        }
        Self {
            body,
            shared,
            account,
        }
    }
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(state) = self.shared.accounts.get(&self.account) {
            let mut st = state.lock();
            st.stats.in_flight = st.stats.in_flight.saturating_sub(1);
        }
    }
}

/// Reads the whole body within [`BODY_TIMEOUT`] and [`MAX_BODY_BYTES`]: a 413 when it is
/// too large or broken, a dropped connection when the client stalls.
async fn read_body(body: Incoming, seq: u64) -> Result<Bytes, Outcome> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
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
            Err(Outcome::Reply(r))
        }
        Err(_) => Err(Outcome::Reset),
    }
}

/// The request headers the simulator looks at, read once.
struct WireHeaders {
    /// Every header, for the request log.
    all: Vec<(String, String)>,
    content_type: String,
    /// `Authorization: Bearer …` without the scheme.
    bearer: Option<String>,
    /// Azure's `api-key`.
    api_key: Option<String>,
}

impl WireHeaders {
    fn of(parts: &Parts) -> Self {
        let h = &parts.headers;
        let all = h
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let content_type = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bearer = h
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
        let api_key = h
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string());
        Self {
            all,
            content_type,
            bearer,
            api_key,
        }
    }
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
