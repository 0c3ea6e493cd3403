//! Serving the scripted faults: the account's latency, then the head of its fault queue
//! turned into the answer a real provider gives in that situation (the status, body and
//! headers of a 429, a tier denial, a 5xx, a truncated body, a hang, a reset).
//!
//! Why beside [`faults`](super::faults) and not in it: `faults` holds the public fault types
//! and the queue, which know nothing of HTTP; serving needs the server's request context and
//! answer types, and is the one step every endpoint (image calls and lookups alike) runs
//! before anything else is checked.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::bodies;
use super::exchange::{unix_now, Ctx, Outcome, Reply};
use super::exchange::{Op, Surface};
use super::faults::Fault;
use super::parse::peek_model;
use super::png::solid_png;
use super::rate_headers::retry_headers;
use super::window::{LimitKind, RateWindow};
use crate::catalog::Catalog;
use crate::error::RateLimitScope;

/// Takes the account's next scripted fault (counting it as served), then waits out the
/// account's latency. Returns the fault and the simulator's hang limit.
pub(super) async fn take_fault(ctx: &Ctx<'_>) -> (Option<Fault>, Duration) {
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
    (fault, hang_limit)
}

/// Serves the account's next scripted fault, if any (after the account's latency), so a
/// lookup (`GET /models`, an Azure deployment) fails the way an image call would: `doctor`
/// checks accounts with lookups.
pub(super) async fn scripted(ctx: &Ctx<'_>, surface: &Surface) -> Option<Outcome> {
    let (fault, hang_limit) = take_fault(ctx).await;
    serve_fault(ctx, surface, Op::Generate, fault?, hang_limit).await
}

/// The model a fault message names (the Azure deployment's model, else the body's `model`,
/// else the catalog's default) and the account's organization.
fn fault_subject(ctx: &Ctx<'_>, surface: &Surface) -> (String, String) {
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
    let org = ctx.organization();
    (model, org)
}

/// Serves a scripted fault; `None` means "continue normally" (after [`Fault::Slow`]).
pub(super) async fn serve_fault(
    ctx: &Ctx<'_>,
    surface: &Surface,
    op: Op,
    fault: Fault,
    hang_limit: Duration,
) -> Option<Outcome> {
    let azure = surface.is_azure();
    let (model, org) = fault_subject(ctx, surface);
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
        // Served inside the streamed answer (`sse_answer`).
        Fault::StreamStall
        | Fault::StreamCut
        | Fault::StreamBadEvent
        | Fault::StreamBadBase64
        | Fault::StreamSlow(_) => return None,
        Fault::RateLimited { retry_after, scope } => {
            rate_limited(ctx, surface, op, &model, &org, retry_after, scope)
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
        Fault::TruncatedJson => truncated_json(),
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

/// The scripted 429 `rate_limit_exceeded`, in the surface's wording, with the retry headers
/// when a delay is given.
fn rate_limited(
    ctx: &Ctx<'_>,
    surface: &Surface,
    op: Op,
    model: &str,
    org: &str,
    retry_after: Option<Duration>,
    scope: RateLimitScope,
) -> Reply {
    let kind = match scope {
        RateLimitScope::Requests => Some(LimitKind::Requests),
        RateLimitScope::Tokens => Some(LimitKind::Tokens),
        RateLimitScope::Images => Some(LimitKind::Images),
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
                    Some(LimitKind::Images) => st
                        .window
                        .ipm()
                        .or_else(|| st.model_windows.get(model).and_then(RateWindow::ipm))
                        .map(u64::from),
                    None => None,
                }
            };
            bodies::scripted_rate_limit(model, org, kind, retry_after, limit)
        }
    };
    let reply = Reply::json(429, &body);
    match retry_after {
        Some(d) => retry_headers(reply, d),
        None => reply,
    }
}

/// A 200 whose JSON body (a normal one-image answer) is cut in half.
fn truncated_json() -> Reply {
    let full = match solid_png(1024, 1024, [200, 200, 200, 255]) {
        Some(img) => {
            json!({"created": unix_now(), "data": [{"b64_json": img.b64.as_ref()}]}).to_string()
        }
        None => json!({"created": unix_now(), "data": [{"b64_json": ""}]}).to_string(),
    };
    let cut = full.len() / 2;
    let mut reply = Reply::json(200, &Value::Null);
    reply.body = Bytes::from(full).slice(..cut);
    reply
}
