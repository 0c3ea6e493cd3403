//! Properties of the images response: whole bodies parsed directly, image sniffing, and
//! success and error bodies decoded through `OpenAi::generate` against the mock server.

use super::mock::{mock_server, openai, over_mock};
use super::*;

proptest! {
    #![proptest_config(direct())]

    /// Whole `ImagesResponse` bodies around the real shape, any JSON and raw bytes: parsing
    /// never panics, and what parses serializes back to the same response.
    #[test]
    fn images_response(
        created in json_number(),
        items in prop::collection::vec(prop_oneof![
            (prop::option::of(word()), prop::option::of(word()), prop::option::of(word()))
                .prop_map(|(b, u, r)| json!({"b64_json": b, "url": u, "revised_prompt": r})),
            any_json(),
        ], 0..3),
        usage in prop::option::of(usage_json()),
        echo in any_json(),
        v in any_json(),
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let body = json!({"created": created, "data": items, "usage": usage, "output_format": echo, "size": "1024x1024"});
        let parsed = [serde_json::from_value::<ImagesResponse>(body), serde_json::from_value(v)];
        for r in parsed.into_iter().flatten() {
            let back = serde_json::to_value(&r).ok().and_then(|v| serde_json::from_value::<ImagesResponse>(v).ok());
            prop_assert_eq!(back.as_ref(), Some(&r));
        }
        let _ = serde_json::from_slice::<ImagesResponse>(&raw);
    }

    /// Image sniffing: the magic numbers are recognised at the start of any bytes.
    #[test]
    fn sniffing(tail in prop::collection::vec(any::<u8>(), 0..32), any_bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let _ = OutputFormat::sniff(&any_bytes);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(&tail);
        prop_assert_eq!(OutputFormat::sniff(&png), Some(OutputFormat::Png));
        let mut jpeg = vec![0xFF, 0xD8, 0xFF];
        jpeg.extend(&tail);
        prop_assert_eq!(OutputFormat::sniff(&jpeg), Some(OutputFormat::Jpeg));
    }
}

/// Images responses around the real one, and error answers, through `OpenAi::generate`.
#[test]
fn images_bodies_through_provider() {
    let (_rt, probe, _) = mock_server();
    let base = probe.uri();
    drop(probe);
    let ok_body = (
        prop::collection::vec(image_item(base), 0..4),
        prop::option::of(usage_json()),
        prop::option::of(word()),
        any::<bool>(),
    )
        .prop_map(|(items, usage, fmt, truncate)| {
            let mut v = json!({"created": 1_750_000_000, "data": items});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            if let Some(f) = fmt {
                v["output_format"] = Value::String(f);
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if truncate {
                b.truncate(b.len() / 2);
            }
            b
        });
    let strategy = prop_oneof![
        3 => (Just(200u16), header_map(), ok_body),
        1 => (http_status(), header_map(), error_body()),
    ];
    // The download URL item points at a server that is gone, so only kinds of 2xx answers
    // without such items are checked: a refused download is a connect error.
    over_mock(strategy, openai, false);
}

/// Same, with every kind checked: 2xx answers without download URLs fail only as `Decode`.
#[test]
fn images_bodies_fail_as_decode() {
    let ok_body = (
        prop::collection::vec(
            prop_oneof![
                3 => (image_bytes(), any::<u8>()).prop_map(|(b, f)| json!({"b64_json": b64_forms(&b, f)})),
                1 => (image_bytes(), any::<u8>())
                    .prop_map(|(b, f)| json!({"url": format!("data:image/png;base64,{}", b64_forms(&b, f))})),
                1 => word().prop_map(|w| json!({"b64_json": w})),
                1 => Just(json!({})),
            ],
            0..4,
        ),
        prop::option::of(usage_json()),
    )
        .prop_map(|(items, usage)| {
            let mut v = json!({"created": 1, "data": items});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            serde_json::to_vec(&v).unwrap_or_default()
        });
    over_mock((Just(200u16), header_map(), ok_body), openai, true);
}
