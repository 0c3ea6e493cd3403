//! The image stream's events on the wire: one JSON object per server-sent event, typed by
//! its `type` field (and the SSE `event:` name, which carries the same string).
//!
//! Checked against the published API reference through the docs search (the OpenAI SDKs'
//! generated types `ImageGenPartialImageEvent`, `ImageGenCompletedEvent`,
//! `ImageEditPartialImageEvent`, `ImageEditCompletedEvent`):
//! - `image_generation.partial_image` / `image_edit.partial_image`: `b64_json`,
//!   `partial_image_index` (0-based), `created_at`, and the echoed `size`, `quality`,
//!   `background`, `output_format`;
//! - `image_generation.completed` / `image_edit.completed`: `b64_json`, `created_at`, the
//!   same echoed fields and `usage` (GPT image models: `input_tokens`,
//!   `input_tokens_details`, `output_tokens`, `total_tokens`).
//!
//! `partial_images: 0` sends the final image alone in one event, and the final image may come
//! before all requested partials. What is unsure: the error event. The reference lists none
//! for the images endpoints; the Responses API streams `{"type": "error", ...}` and proxies
//! send `{"error": {...}}`, so both shapes are read as a provider error.

use serde::Deserialize;

use super::sse::SseEvent;
use crate::quota::usage::Usage;

/// The echoed request fields every image event carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Echoed {
    /// Unix time the event was created (`created_at`).
    #[serde(default)]
    pub created_at: Option<i64>,
    /// `size`.
    #[serde(default)]
    pub size: Option<String>,
    /// `quality`.
    #[serde(default)]
    pub quality: Option<String>,
    /// `background`.
    #[serde(default)]
    pub background: Option<String>,
    /// `output_format`.
    #[serde(default)]
    pub output_format: Option<String>,
}

/// One decoded wire event (base64 not yet decoded).
#[derive(Debug)]
pub(crate) enum WireEvent {
    Partial {
        index: u32,
        b64: String,
        echoed: Echoed,
    },
    Completed {
        b64: String,
        usage: Option<Usage>,
        echoed: Echoed,
    },
    /// An error object sent inside the stream (the whole JSON, for classification).
    Error(serde_json::Value),
    /// An event of another type (ignored, as new event types must not break old clients).
    Other(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    b64_json: Option<String>,
    #[serde(default)]
    partial_image_index: Option<serde_json::Value>,
    #[serde(default)]
    usage: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(flatten)]
    echoed: Echoed,
}

/// Whether the event names a partial image of either endpoint.
fn is_partial(kind: &str) -> bool {
    kind == "image_generation.partial_image" || kind == "image_edit.partial_image"
}

fn is_completed(kind: &str) -> bool {
    kind == "image_generation.completed" || kind == "image_edit.completed"
}

/// Decodes one event. `Err` says why it is not a valid image event (invalid JSON, a partial
/// without its index, an image event without `b64_json`).
pub(crate) fn decode(event: &SseEvent) -> Result<WireEvent, String> {
    let raw: Raw = serde_json::from_str(&event.data).map_err(|e| {
        format!(
            "an event ({}) is not valid JSON: {e}",
            if event.event.is_empty() {
                "unnamed"
            } else {
                event.event.as_str()
            }
        )
    })?;
    let kind = raw
        .kind
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| event.event.clone());
    if kind == "error" || raw.error.is_some() {
        let value: serde_json::Value =
            serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
        return Ok(WireEvent::Error(value));
    }
    if is_partial(&kind) {
        let index = raw
            .partial_image_index
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| format!("a {kind} event has no valid partial_image_index"))?;
        let b64 = raw
            .b64_json
            .ok_or_else(|| format!("a {kind} event has no b64_json"))?;
        return Ok(WireEvent::Partial {
            index,
            b64,
            echoed: raw.echoed,
        });
    }
    if is_completed(&kind) {
        let b64 = raw
            .b64_json
            .ok_or_else(|| format!("a {kind} event has no b64_json"))?;
        // Usage of another shape is dropped, not fatal: the image is what was paid for.
        let usage = raw.usage.and_then(|u| serde_json::from_value(u).ok());
        return Ok(WireEvent::Completed {
            b64,
            usage,
            echoed: raw.echoed,
        });
    }
    Ok(WireEvent::Other(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
            ..SseEvent::default()
        }
    }

    #[test]
    fn real_shapes() {
        let p = decode(&ev(
            "image_generation.partial_image",
            r#"{"type":"image_generation.partial_image","b64_json":"QUJD","partial_image_index":1,
               "created_at":1,"size":"1024x1024","quality":"low","background":"opaque","output_format":"png"}"#,
        ))
        .unwrap();
        match p {
            WireEvent::Partial { index, b64, echoed } => {
                assert_eq!(index, 1);
                assert_eq!(b64, "QUJD");
                assert_eq!(echoed.size.as_deref(), Some("1024x1024"));
                assert_eq!(echoed.output_format.as_deref(), Some("png"));
            }
            other => panic!("{other:?}"),
        }
        let c = decode(&ev(
            "",
            r#"{"type":"image_edit.completed","b64_json":"QUJD","usage":{"input_tokens":5,
               "input_tokens_details":{"text_tokens":5,"image_tokens":0},"output_tokens":272,"total_tokens":277}}"#,
        ))
        .unwrap();
        match c {
            WireEvent::Completed { usage, .. } => {
                assert_eq!(usage.unwrap().output_tokens, 272)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_events() {
        assert!(decode(&ev("x", "{not json"))
            .unwrap_err()
            .contains("not valid JSON"));
        let e = decode(&ev(
            "",
            r#"{"type":"image_generation.partial_image","b64_json":"QQ=="}"#,
        ))
        .unwrap_err();
        assert!(e.contains("partial_image_index"), "{e}");
        let e = decode(&ev("", r#"{"type":"image_generation.completed"}"#)).unwrap_err();
        assert!(e.contains("b64_json"), "{e}");
        assert!(matches!(
            decode(&ev("error", r#"{"error":{"message":"boom"}}"#)).unwrap(),
            WireEvent::Error(_)
        ));
        assert!(matches!(
            decode(&ev("", r#"{"type":"image_generation.something_new"}"#)).unwrap(),
            WireEvent::Other(_)
        ));
    }
}
