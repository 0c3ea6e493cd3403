//! Routing: which endpoint a path names, on which API surface (OpenAI or Azure), and the
//! endpoints that are not image operations (model list, Azure deployment lookup, file
//! downloads), plus the API-key check every endpoint shares.
//!
//! Why a separate step: the same image operation is reachable from four path shapes (OpenAI,
//! Azure deployment, Azure v1, chat completions) that differ only in how the model is named
//! and how errors and ids are worded; routing turns each into one [`Surface`] and one [`Op`]
//! so [`image_op`](super::image_op) has a single code path.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::bodies;
use super::exchange::{auth_ok, unauthorized, Ctx, Op, Outcome, Reply, Surface};
use super::fault_serving::scripted;
use super::image_op::image_op;
use crate::catalog::Catalog;

/// Picks the endpoint for `rest` (the path after the account segment).
pub(super) async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    rest: &str,
    query: Option<&str>,
) -> Outcome {
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

/// `GET /v1/models` and `GET /v1/models/{model}`.
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

/// `GET /files/{id}.png`: an image handed out as a URL.
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
            stream: None,
        }),
        None => ctx.reject(
            &surface,
            404,
            &bodies::invalid_request(&format!("No such file: {file}"), None, None),
        ),
    }
}
