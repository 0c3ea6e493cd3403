//! The vocabulary every step of an answer shares: the request on its way ([`Ctx`]), the
//! API surface and operation it names ([`Surface`], [`Op`]), the answer before it becomes a
//! hyper response ([`Reply`], [`Outcome`]), and the key check every endpoint makes.
//!
//! Why a module of its own: the steps (`server` → `routing` → `fault_serving` / `image_op`
//! → `rate_headers`) hand requests forward; keeping the types they all use here means no step
//! depends on a later one, so the steps form a chain without circles.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

use super::account::AccountState;
use super::bodies;
use super::Shared;

/// An answer before it becomes a hyper response.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Bytes,
    /// A streamed body instead of `body` (server-sent events, see `sse_answer`).
    pub(super) stream: Option<BoxBody<Bytes, std::io::Error>>,
}

impl Reply {
    pub(super) fn json(status: u16, body: &Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
            stream: None,
        }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn into_response(self) -> Response<BoxBody<Bytes, std::io::Error>> {
        let body = match self.stream {
            Some(stream) => stream,
            None => Full::new(self.body).map_err(|never| match never {}).boxed(),
        };
        let mut resp = Response::new(body);
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
pub(super) enum Outcome {
    Reply(Reply),
    Reset,
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One request on its way through the steps: the account, the body and the credentials.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) state: &'a parking_lot::Mutex<AccountState>,
    pub(super) account: &'a str,
    pub(super) seq: u64,
    pub(super) body: Bytes,
    pub(super) content_type: String,
    pub(super) bearer: Option<String>,
    pub(super) api_key: Option<String>,
}

impl Ctx<'_> {
    pub(super) fn request_id(&self) -> String {
        format!("req_sim_{:016x}", self.seq)
    }

    pub(super) fn apim_id(&self) -> String {
        format!(
            "00000000-0000-4000-8000-{:012x}",
            self.seq & 0xffff_ffff_ffff
        )
    }

    /// The id header for the surface.
    pub(super) fn id_header(&self, surface: &Surface, reply: Reply) -> Reply {
        if surface.is_azure() {
            reply.header("apim-request-id", self.apim_id())
        } else {
            reply.header("x-request-id", self.request_id())
        }
    }

    /// A counted error answer.
    pub(super) fn reject(&self, surface: &Surface, status: u16, body: &Value) -> Outcome {
        self.state.lock().stats.rejected += 1;
        Outcome::Reply(self.id_header(surface, Reply::json(status, body)))
    }

    pub(super) fn file_url(&self, id: &str) -> String {
        format!("{}/{}/files/{id}.png", self.shared.base_url, self.account)
    }

    /// The organization the account's 429 messages name (default `org-sim`).
    pub(super) fn organization(&self) -> String {
        self.state
            .lock()
            .config
            .organization
            .clone()
            .unwrap_or_else(|| "org-sim".to_string())
    }
}

/// Which API surface a request came in on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Surface {
    OpenAi,
    /// Azure; `deployment` is `None` on the v1 surface (deployment name in the body).
    Azure {
        deployment: Option<String>,
        api_version: String,
    },
}

impl Surface {
    pub(super) fn is_azure(&self) -> bool {
        matches!(self, Surface::Azure { .. })
    }
}

/// Which image operation a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Generate,
    Edit,
    Chat,
}

/// Whether the request carries the account's key (Azure: `api-key` or a bearer token).
pub(super) fn auth_ok(ctx: &Ctx<'_>, surface: &Surface) -> bool {
    let st = ctx.state.lock();
    if surface.is_azure() {
        st.config.key_ok(ctx.api_key.as_deref()) || st.config.key_ok(ctx.bearer.as_deref())
    } else {
        st.config.key_ok(ctx.bearer.as_deref())
    }
}

/// The 401 for a missing or wrong key, in the surface's wording.
pub(super) fn unauthorized(ctx: &Ctx<'_>, surface: &Surface) -> Outcome {
    ctx.state.lock().stats.unauthorized += 1;
    let body = if surface.is_azure() {
        bodies::azure_unauthorized()
    } else {
        bodies::invalid_api_key(ctx.bearer.as_deref())
    };
    Outcome::Reply(ctx.id_header(surface, Reply::json(401, &body)))
}
