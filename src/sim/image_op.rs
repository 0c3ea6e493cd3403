//! The image operation (generation, edit, chat-mode generation), step by step: serve a
//! scripted fault, check the key, parse the body, resolve the model (from the body on
//! OpenAI, from the deployment on Azure), validate the request against the model's catalog
//! entry, render the PNG, pass the account's RPM / TPM / IPM window (and the model's, when it
//! has its own limits), and answer with the images,
//! the echo fields and `usage` from the token table.
//!
//! Why this order: it is the order in which the real APIs refuse a request (a fault or a bad
//! key before a bad body, a bad body before the model, an unknown model before the limits),
//! and the output size is checked before the window so an absurd size does not use up
//! window capacity.

use serde_json::{json, Value};

use super::account::ChatImageStyle;
use super::bodies;
use super::exchange::{auth_ok, unauthorized, Op, Surface};
use super::exchange::{unix_now, Ctx, Outcome, Reply};
use super::fault_serving::{serve_fault, take_fault};
use super::faults::Fault;
use super::parse::{parse_chat, parse_edit, parse_generate};
use super::png::{colour_for, solid_png, Encoded};
use super::rate_headers::{rate_headers, window_429};
use crate::catalog::{Catalog, ModelSpec};
use crate::quota::tokens::{self, TokenEstimate};
use crate::request::{Background, ImageRequest, OutputFormat, Quality, ResponseFormat, Size};

/// A step's early answer: the request ends here with this outcome.
type Step<T> = Result<T, Outcome>;

/// Serves one image request on `surface`.
pub(super) async fn image_op(ctx: &Ctx<'_>, surface: Surface, op: Op) -> Outcome {
    match image_steps(ctx, &surface, op).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn image_steps(ctx: &Ctx<'_>, surface: &Surface, op: Op) -> Step<Outcome> {
    let (fault, hang_limit) = take_fault(ctx).await;
    let stream_fault = fault.clone().filter(Fault::is_stream_fault);
    if let Some(fault) = fault {
        if let Some(outcome) = serve_fault(ctx, surface, op, fault, hang_limit).await {
            return Ok(outcome);
        }
    }
    if !auth_ok(ctx, surface) {
        return Ok(unauthorized(ctx, surface));
    }
    let mut req = parse(ctx, surface, op).await?;
    let catalog = Catalog::builtin();
    let model = resolve_model(ctx, surface, &req, catalog)?;
    let spec = catalog.model(&model);
    validate(ctx, surface, &req, spec)?;
    req.set_model(model.clone());
    let estimate = tokens::estimate(&req, spec, catalog.default_output_tokens_per_image());
    let image = render(ctx, surface, &req, spec)?;
    let images = if op == Op::Chat {
        1
    } else {
        usize::from(req.n()) as u64
    };
    let window_headers = admit(ctx, surface, op, &model, estimate.total(), images)?;

    if req.stream() && op != Op::Chat {
        let echo = echo_fields(&req, spec, &image);
        let body = super::sse_answer::body(
            &req,
            &image.png,
            echo,
            usage_json(estimate),
            stream_fault,
            hang_limit,
        );
        count_success(ctx, &req, op);
        let mut reply = Reply::json(200, &Value::Null);
        reply.content_type = "text/event-stream";
        reply.stream = Some(body);
        reply.headers.extend(window_headers);
        return Ok(Outcome::Reply(ctx.id_header(surface, reply)));
    }
    let body = if op == Op::Chat {
        chat_body(ctx, &model, &image.png, estimate)
    } else {
        images_body(ctx, &req, spec, &image, estimate)
    };
    count_success(ctx, &req, op);
    let mut reply = Reply::json(200, &body);
    reply.headers.extend(window_headers);
    Ok(Outcome::Reply(ctx.id_header(surface, reply)))
}

/// Counts a served request and its images.
fn count_success(ctx: &Ctx<'_>, req: &ImageRequest, op: Op) {
    let mut st = ctx.state.lock();
    st.stats.succeeded += 1;
    st.stats.images += if op == Op::Chat {
        1
    } else {
        usize::from(req.n()) as u64
    };
}

/// The echo fields of a GPT image model's answer: background, output format, size, quality.
fn echo_fields(req: &ImageRequest, spec: Option<&ModelSpec>, image: &Rendered) -> Value {
    let quality = spec
        .map(|s| s.resolve_quality(req.quality()))
        .or(req.quality())
        .unwrap_or(Quality::Auto);
    json!({
        "background": if image.transparent { "transparent" } else { "opaque" },
        "output_format": req.output_format().unwrap_or(OutputFormat::Png).as_str(),
        "size": format!("{}x{}", image.width, image.height),
        "quality": quality.as_str(),
    })
}

/// `usage` from the token table.
fn usage_json(estimate: TokenEstimate) -> Value {
    json!({
        "input_tokens": estimate.text_input + estimate.image_input,
        "input_tokens_details": {"text_tokens": estimate.text_input, "image_tokens": estimate.image_input},
        "output_tokens": estimate.image_output,
        "output_tokens_details": {"image_tokens": estimate.image_output, "text_tokens": 0},
        "total_tokens": estimate.total(),
    })
}

/// The request body for `op`, or the 400 the API gives for it.
async fn parse(ctx: &Ctx<'_>, surface: &Surface, op: Op) -> Step<ImageRequest> {
    let parsed = match op {
        Op::Generate => parse_generate(&ctx.body).map(ImageRequest::Generate),
        Op::Edit => parse_edit(ctx.body.clone(), &ctx.content_type)
            .await
            .map(ImageRequest::Edit),
        Op::Chat => parse_chat(&ctx.body).map(ImageRequest::Generate),
    };
    parsed.map_err(|(msg, param)| {
        ctx.reject(surface, 400, &bodies::invalid_request(&msg, param, None))
    })
}

/// The model that serves the request: the body's (or the catalog default) on OpenAI, the
/// deployment's on Azure.
fn resolve_model(
    ctx: &Ctx<'_>,
    surface: &Surface,
    req: &ImageRequest,
    catalog: &Catalog,
) -> Step<String> {
    match surface {
        Surface::OpenAi => {
            let m = req.model().unwrap_or(catalog.default_model()).to_string();
            let served = ctx.state.lock().config.serves_model(&m);
            if !served {
                return Err(ctx.reject(surface, 404, &bodies::model_not_found(&m)));
            }
            Ok(m)
        }
        Surface::Azure { deployment, .. } => {
            let Some(name) = deployment
                .clone()
                .or_else(|| req.model().map(str::to_string))
            else {
                return Err(ctx.reject(
                    surface,
                    400,
                    &bodies::invalid_request(
                        "Missing required parameter: 'model'.",
                        Some("model"),
                        Some("missing_required_parameter"),
                    ),
                ));
            };
            let resolved = {
                let st = ctx.state.lock();
                if st.config.deployments.is_empty() {
                    st.config.serves_model(&name).then(|| name.clone())
                } else {
                    st.config.deployments.get(&name).cloned()
                }
            };
            resolved.ok_or_else(|| ctx.reject(surface, 404, &bodies::deployment_not_found()))
        }
    }
}

/// Azure's webp refusal, then the catalog's checks for the model.
fn validate(
    ctx: &Ctx<'_>,
    surface: &Surface,
    req: &ImageRequest,
    spec: Option<&ModelSpec>,
) -> Step<()> {
    if surface.is_azure() && req.output_format() == Some(OutputFormat::Webp) {
        return Err(ctx.reject(surface, 400, &bodies::azure_webp()));
    }
    req.validate(spec.map(|s| &s.capabilities)).map_err(|e| {
        ctx.reject(
            surface,
            400,
            &bodies::invalid_request(&e.message, Some(e.field), Some("invalid_value")),
        )
    })
}

/// The image to hand out, with the size and background it was made for.
struct Rendered {
    png: Encoded,
    width: u32,
    height: u32,
    transparent: bool,
}

/// The account's colour at the resolved size (`auto` is 1024x1024); an absurd size is a 400.
fn render(
    ctx: &Ctx<'_>,
    surface: &Surface,
    req: &ImageRequest,
    spec: Option<&ModelSpec>,
) -> Step<Rendered> {
    let (w, h) = match spec.map(|s| s.resolve_size(req.size())).or(req.size()) {
        Some(Size::Dims { width, height }) => (width, height),
        _ => (1024, 1024),
    };
    let transparent = req.background() == Some(Background::Transparent);
    let [r, g, b] = colour_for(ctx.account);
    let Some(png) = solid_png(w, h, [r, g, b, if transparent { 0 } else { 255 }]) else {
        return Err(ctx.reject(
            surface,
            400,
            &bodies::invalid_request(
                &format!("Invalid size {w}x{h}."),
                Some("size"),
                Some("invalid_value"),
            ),
        ));
    };
    Ok(Rendered {
        png,
        width: w,
        height: h,
        transparent,
    })
}

/// Passes the request (`total` tokens, `images` images) through the account's window and,
/// when the model has its own limits, the model's: the `x-ratelimit-*` headers to send with
/// the answer, or the 429 (with those headers) when a window refuses it. It is recorded in
/// both or in neither.
fn admit(
    ctx: &Ctx<'_>,
    surface: &Surface,
    op: Op,
    model: &str,
    total: u64,
    images: u64,
) -> Step<Vec<(&'static str, String)>> {
    let (admitted, window_headers) = {
        let mut guard = ctx.state.lock();
        let st = &mut *guard;
        let now = ctx.shared.clock.now();
        let limited =
            st.window.is_limited() || st.model_windows.get(model).is_some_and(|w| w.is_limited());
        let res = st.window.fits(now, total, images).and_then(|t_acct| {
            match st.model_windows.get_mut(model) {
                Some(w) => w
                    .fits(now, total, images)
                    .map(|t_model| (t_acct, Some(t_model))),
                None => Ok((t_acct, None)),
            }
        });
        let res = match res {
            Ok((t_acct, t_model)) => {
                st.window.record(t_acct, total, images);
                if let (Some(t), Some(w)) = (t_model, st.model_windows.get_mut(model)) {
                    w.record(t, total, images);
                }
                st.stats.tokens += total;
                Ok(())
            }
            Err(rej) => {
                st.stats.rate_limited += 1;
                Err(rej)
            }
        };
        let hdrs = if limited {
            rate_headers(st, now, surface, model)
        } else {
            Vec::new()
        };
        (res, hdrs)
    };
    let Err(rej) = admitted else {
        return Ok(window_headers);
    };
    let org = ctx.organization();
    let mut reply = window_429(surface, op, model, &org, &rej);
    reply.headers.extend(window_headers);
    Err(Outcome::Reply(ctx.id_header(surface, reply)))
}

/// The `ImagesResponse`: `n` items (base64, or URLs for dall-e with `response_format=url`),
/// and for GPT image models the echo fields and `usage`.
fn images_body(
    ctx: &Ctx<'_>,
    req: &ImageRequest,
    spec: Option<&ModelSpec>,
    image: &Rendered,
    estimate: TokenEstimate,
) -> Value {
    let n = usize::from(req.n());
    let caps = spec.map(|s| &s.capabilities);
    let dalle = caps.is_some_and(|c| c.response_format);
    let want_url = dalle
        && matches!(req, ImageRequest::Generate(g) if g.response_format == Some(ResponseFormat::Url));
    let mut data = Vec::with_capacity(n);
    for _ in 0..n {
        let mut item = serde_json::Map::new();
        if want_url {
            let id = store_file(ctx, &image.png);
            item.insert("url".into(), Value::String(ctx.file_url(&id)));
        } else {
            item.insert("b64_json".into(), Value::String(image.png.b64.to_string()));
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
        body["background"] = json!(if image.transparent {
            "transparent"
        } else {
            "opaque"
        });
        body["output_format"] = json!(req.output_format().unwrap_or(OutputFormat::Png).as_str());
        body["size"] = json!(format!("{}x{}", image.width, image.height));
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
}

/// Keeps an image for download and returns its id.
fn store_file(ctx: &Ctx<'_>, image: &Encoded) -> String {
    let mut st = ctx.state.lock();
    let id = format!("img_{:08}", st.next_id());
    st.files.insert(id.clone(), image.bytes.clone());
    id
}

/// The chat-completions answer: the image in the message content in the account's
/// [`ChatImageStyle`], usage as prompt / completion tokens.
fn chat_body(ctx: &Ctx<'_>, model: &str, image: &Encoded, estimate: TokenEstimate) -> Value {
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
