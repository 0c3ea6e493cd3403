//! A decodable non-image is not an image; the format must match.

use super::*;

#[tokio::test]
async fn base64_that_is_not_an_image_is_a_decode_error() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            ok_images(json!([{"b64_json": b64(br#"{"this is":"json, not an image"}"#)}])),
        )
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}

#[tokio::test]
async fn an_image_of_another_format_than_requested_is_kept_with_its_actual_format() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            json!({"created": 1, "output_format": "png",
                   "data": [{"b64_json": b64(&jpeg_bytes())}]}),
        )
    })
    .await;
    // The answer's own `output_format` echo is not believed: the bytes decide.
    let res = openai(&evil)
        .generate(&gen().output_format(OutputFormat::Png), &ctx())
        .await
        .unwrap();
    assert_eq!(res.images[0].format, OutputFormat::Jpeg);
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images[0].format, OutputFormat::Jpeg);
}
