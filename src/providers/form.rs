//! The multipart body of an edit request (text fields, images, mask), shared by the
//! providers that send edits to an `/images/edits` endpoint.

use crate::request::EditRequest;

/// The multipart body of an edit: text fields, images, mask. `model` replaces (or with
/// `None` removes) the request's `model` field.
pub(super) fn edit_form(req: &EditRequest, model: Option<&str>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in req.text_fields() {
        if name == "model" {
            continue;
        }
        form = form.text(name, value);
    }
    if let Some(m) = model {
        form = form.text("model", m.to_string());
    }
    let field = req.image_field_name();
    for image in &req.images {
        form = form.part(field, file_part(image));
    }
    if let Some(mask) = &req.mask {
        form = form.part("mask", file_part(mask));
    }
    form
}

/// One file part. The part shares the request's bytes (`Bytes` is reference counted): an
/// edit with sixteen 50 MB images is not copied into the form.
pub(super) fn file_part(image: &crate::request::InputImage) -> reqwest::multipart::Part {
    let part = || {
        reqwest::multipart::Part::stream_with_length(
            reqwest::Body::from(image.data.clone()),
            image.data.len() as u64,
        )
        .file_name(image.filename.clone())
    };
    // An unparsable content type falls back to a generic one rather than failing the call.
    match part().mime_str(&image.content_type) {
        Ok(p) => p,
        Err(_) => part()
            .mime_str("application/octet-stream")
            .unwrap_or_else(|_| part()),
    }
}
