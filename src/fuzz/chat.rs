//! Properties of chat-mode answers (a proxy's chat-completion body carrying the image),
//! decoded through a chat-mode `Compatible` provider against the mock server.

use super::mock::{chat_proxy, over_mock};
use super::*;

/// Chat-completion answers around the real one: the image as a data URL, a markdown image,
/// an image part, in random text; usage of any shape.
#[test]
fn chat_answers_through_provider() {
    // Text with no "http" in it, so no URL outside this machine is ever fetched.
    let text = "[a-gi-z0-9 !\\[\\]()<>.,;:'\"/_-]{0,40}";
    let content_text = move || {
        (text, image_bytes(), any::<u8>(), 0u8..4, text).prop_map(
            |(pre, bytes, form, shape, post)| {
                let data = format!("data:image/png;base64,{}", b64_forms(&bytes, form));
                match shape {
                    0 => format!("{pre}![image]({data}){post}"),
                    1 => format!("{pre} {data} {post}"),
                    2 => format!("{pre}![x]({data} \"title\"){post}"),
                    _ => format!("{pre}{post}"),
                }
            },
        )
    };
    let content = prop_oneof![
        3 => content_text().prop_map(Value::String),
        1 => (content_text(), image_bytes()).prop_map(|(t, b)| json!([
            {"type": "text", "text": t},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64_forms(&b, 0))}}
        ])),
        1 => any_json(),
    ];
    // Any token counts, up to u64::MAX: their sum saturates.
    let usage = (any::<u64>(), any::<u64>(), json_number(), any_json()).prop_map(
        |(p, c, t, junk)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t, "x": junk}),
    );
    let body = (content, prop::option::of(usage), any::<bool>(), any::<bool>()).prop_map(
        |(content, usage, with_images, truncate)| {
            let mut message = json!({"role": "assistant", "content": content});
            if with_images {
                message["images"] = json!([{"image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}, {"image_url": "data:,x"}]);
            }
            let mut v = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if truncate {
                b.truncate(b.len() / 2);
            }
            b
        },
    );
    let strategy = prop_oneof![
        4 => (Just(200u16), header_map(), body),
        1 => (http_status(), header_map(), error_body()),
    ];
    over_mock(strategy, chat_proxy, true);
}
