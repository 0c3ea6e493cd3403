//! Request parsing: the JSON body of a generation, the chat-completions body of a proxy in
//! chat mode (the prompt is the last user message's text), and the multipart body of an edit
//! (`image` / repeated `image[]`, `mask`, and the form fields).
//!
//! Why the simulator parses into the library's own request types: validation then runs the
//! same checks the router runs before sending, so a request the router would refuse is
//! refused here with the real API's 400 wording, and the token estimate in `usage` is the
//! catalog's.

use std::convert::Infallible;

use bytes::Bytes;
use serde_json::Value;

use crate::request::{EditRequest, GenerateRequest, InputImage};

/// The model named in a JSON body, if any (used for wording fault messages).
pub(super) fn peek_model(body: &Bytes) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

/// A 400's message and the parameter it names.
pub(super) type ParseError = (String, Option<&'static str>);

/// `POST /images/generations`: the JSON body as the API documents it.
pub(super) fn parse_generate(body: &Bytes) -> Result<GenerateRequest, ParseError> {
    serde_json::from_slice::<GenerateRequest>(body).map_err(|e| {
        (
            format!("We could not parse the JSON body of your request: {e}."),
            None,
        )
    })
}

/// `POST /chat/completions`: the last user message's text is the prompt.
pub(super) fn parse_chat(body: &Bytes) -> Result<GenerateRequest, ParseError> {
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

/// `POST /images/edits`: a multipart body with at least one image and a prompt.
pub(super) async fn parse_edit(body: Bytes, content_type: &str) -> Result<EditRequest, ParseError> {
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
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err((format!("Invalid multipart body: {e}"), None)),
        };
        let part = Part {
            name: field.name().unwrap_or("").to_string(),
            filename: field.file_name().map(str::to_string),
            content_type: field.content_type().map(|m| m.to_string()),
            data: field
                .bytes()
                .await
                .map_err(|e| (format!("Invalid multipart body: {e}"), None))?,
        };
        apply_part(&mut req, &mut prompt, part)?;
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

/// One multipart field, read whole.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

/// Sets the edit request's field named by `part` (the prompt goes to `prompt`).
fn apply_part(
    req: &mut EditRequest,
    prompt: &mut Option<String>,
    part: Part,
) -> Result<(), ParseError> {
    let bad =
        |field: &'static str, e: String| (format!("Invalid value for '{field}': {e}"), Some(field));
    let Part {
        name,
        filename,
        content_type: ctype,
        data,
    } = part;
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
        "prompt" => *prompt = Some(text()),
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
                    .map_err(|e: crate::request::ParseEnumError| bad("quality", e.to_string()))?,
            )
        }
        "background" => {
            req.background = Some(
                text()
                    .parse()
                    .map_err(|e: crate::request::ParseEnumError| {
                        bad("background", e.to_string())
                    })?,
            )
        }
        "output_format" => {
            req.output_format = Some(
                text()
                    .parse()
                    .map_err(|e: crate::request::ParseEnumError| {
                        bad("output_format", e.to_string())
                    })?,
            )
        }
        "output_compression" => {
            req.output_compression = Some(
                text()
                    .trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| {
                        bad("output_compression", e.to_string())
                    })?,
            )
        }
        "input_fidelity" => {
            req.input_fidelity = Some(text().parse().map_err(
                |e: crate::request::ParseEnumError| bad("input_fidelity", e.to_string()),
            )?)
        }
        "user" => req.user = Some(text()),
        "stream" => match text().trim() {
            "true" => req.stream = Some(true),
            "false" => req.stream = Some(false),
            other => {
                return Err(bad(
                    "stream",
                    format!("expected true or false, got {other:?}"),
                ))
            }
        },
        "partial_images" => {
            req.partial_images = Some(
                text()
                    .trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad("partial_images", e.to_string()))?,
            )
        }
        // Fields the simulator does not act on are ignored, as the API ignores what it does
        // not need.
        _ => {}
    }
    Ok(())
}
