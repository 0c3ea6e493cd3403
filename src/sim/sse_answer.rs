//! A streamed answer (`stream: true`): `partial_images` partial-image events, then the
//! completed event, as server-sent events with the real event names and fields
//! (`image_generation.*` on generations, `image_edit.*` on edits; see [`crate::stream`]),
//! each event delivered as its own chunk so clients see real chunked delivery.
//!
//! The stream faults shape the answer after its first partial image: a stall (the
//! connection stays open, nothing more comes), a cut (the connection closes in the middle of
//! the next event), an event that is not JSON, or `b64_json` that is not base64; or pace it
//! (a pause after each partial image).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use super::exchange::unix_now;
use super::faults::Fault;
use super::png::Encoded;
use crate::request::ImageRequest;

/// One step of the answer.
enum Piece {
    Bytes(Bytes),
    /// Keep the connection open, sending nothing, for this long (then end).
    Stall(Duration),
    /// Send nothing for this long, then go on.
    Pause(Duration),
    /// Close the connection (an error frame makes hyper abort it).
    Cut,
    /// Wait briefly so the server writes out what came before (hyper drops unwritten
    /// buffered bytes when a body fails; a real cut happens after bytes were on the wire).
    Flush,
}

/// One event as SSE text: the `event:` line (as the API sends it) and the JSON data line.
fn event(data: &Value) -> Bytes {
    let name = data.get("type").and_then(Value::as_str).unwrap_or("");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The body of a streamed answer for `req` (see the module docs).
pub(super) fn body(
    req: &ImageRequest,
    image: &Encoded,
    echo: Value,
    usage: Value,
    fault: Option<Fault>,
    hang_limit: Duration,
) -> BoxBody<Bytes, std::io::Error> {
    let prefix = if req.is_edit() {
        "image_edit"
    } else {
        "image_generation"
    };
    let partials = u32::from(req.partial_images().unwrap_or(0));
    let created = unix_now();
    let with_echo = |mut v: Value| {
        if let (Some(obj), Some(e)) = (v.as_object_mut(), echo.as_object()) {
            for (k, val) in e {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    };
    let partial = |index: u32, b64: &str| {
        with_echo(json!({
            "type": format!("{prefix}.partial_image"),
            "b64_json": b64,
            "partial_image_index": index,
            "created_at": created,
        }))
    };
    let mut pieces = vec![Piece::Bytes(Bytes::from_static(b": simulator stream\n\n"))];
    // A pace, not a fault: a pause after each partial.
    let (pause, fault) = match fault {
        Some(Fault::StreamSlow(d)) => (Some(d), None),
        other => (None, other),
    };
    // A fault needs one partial before it strikes, so a faulted stream always sends one.
    let shown = if fault.is_some() {
        partials.max(1)
    } else {
        partials
    };
    for index in 0..shown {
        pieces.push(Piece::Bytes(event(&partial(index, &image.b64))));
        if index == 0 {
            if let Some(f) = &fault {
                match f {
                    Fault::StreamStall => pieces.push(Piece::Stall(hang_limit)),
                    Fault::StreamCut => {
                        let next = event(&partial(1, &image.b64));
                        pieces.push(Piece::Flush);
                        pieces.push(Piece::Bytes(next.slice(..next.len() / 2)));
                        pieces.push(Piece::Flush);
                        pieces.push(Piece::Cut);
                    }
                    Fault::StreamBadEvent => pieces.push(Piece::Bytes(Bytes::from(format!(
                        "event: {prefix}.partial_image\ndata: {{\"type\": \"{prefix}.partial_image\", \"b64_json\": \n\n"
                    )))),
                    _ => pieces.push(Piece::Bytes(event(&partial(1, "!!not base64!!")))),
                }
                return into_body(pieces);
            }
        }
        if let Some(d) = pause {
            // Flushed first, so the partial reaches the client before the pause.
            pieces.push(Piece::Flush);
            pieces.push(Piece::Pause(d));
        }
        // A keep-alive comment between events, as proxies send.
        pieces.push(Piece::Bytes(Bytes::from_static(b": keep-alive\n\n")));
    }
    let completed = with_echo(json!({
        "type": format!("{prefix}.completed"),
        "b64_json": &*image.b64,
        "created_at": created,
        "usage": usage,
    }));
    pieces.push(Piece::Bytes(event(&completed)));
    into_body(pieces)
}

fn into_body(pieces: Vec<Piece>) -> BoxBody<Bytes, std::io::Error> {
    let frames = stream::unfold(pieces.into_iter(), |mut rest| async move {
        let item = match rest.next()? {
            Piece::Bytes(b) => Ok(Frame::data(b)),
            Piece::Stall(d) => {
                tokio::time::sleep(d).await;
                return None;
            }
            Piece::Pause(d) => {
                tokio::time::sleep(d).await;
                return Some((Ok(Frame::data(Bytes::new())), rest));
            }
            Piece::Flush => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Some((Ok(Frame::data(Bytes::new())), rest));
            }
            Piece::Cut => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated cut mid-stream",
            )),
        };
        Some((item, rest))
    });
    StreamBody::new(frames).boxed()
}
