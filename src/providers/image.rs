//! What counts as an image in a provider's answer.
//!
//! A provider (or a proxy in front of it) can send any bytes as `b64_json` or behind a URL: an
//! HTML error page, a JSON document, a 100 MB blob. Only bytes that start like a PNG, JPEG or
//! WebP file are images here. When the request named an `output_format` and the bytes are
//! of another of the three, the image is still accepted (OpenAI-compatible proxies and the
//! embedded simulator answer PNG whatever was asked, and the image is usable), its actual
//! format is recorded on the [`Image`](crate::Image) (`format` comes from the bytes, never
//! from the request), and the mismatch is logged as a warning.
//!
//! This module sits below both the send path (`http`, downloads) and the decoder (`decode`) so
//! neither imports the other.

use crate::request::OutputFormat;

/// Whether `bytes` start like an image file: PNG, JPEG, WebP, GIF, or an ISO-BMFF image
/// (AVIF / HEIF). Used to accept lenient base64 forms, which only a real image justifies.
pub(crate) fn looks_like_image(bytes: &[u8]) -> bool {
    OutputFormat::sniff(bytes).is_some()
        || bytes.starts_with(b"GIF87a")
        || bytes.starts_with(b"GIF89a")
        || (bytes.len() >= 12
            && &bytes[4..8] == b"ftyp"
            && [&b"avif"[..], b"avis", b"heic", b"heix", b"mif1"].contains(&&bytes[8..12]))
}

/// The format of `bytes`: `Err` with a message when they are not a PNG, JPEG or WebP file.
/// A format other than `requested` is accepted and logged (see the module docs).
pub(crate) fn check_format(
    bytes: &[u8],
    requested: Option<OutputFormat>,
    provider: &str,
) -> Result<OutputFormat, String> {
    let Some(actual) = OutputFormat::sniff(bytes) else {
        return Err(format!(
            "is not a PNG, JPEG or WebP image ({} bytes starting {:02x?})",
            bytes.len(),
            &bytes[..bytes.len().min(8)]
        ));
    };
    if let Some(want) = requested.filter(|w| *w != actual) {
        tracing::warn!(
            provider,
            requested = want.as_str(),
            actual = actual.as_str(),
            "provider answered another image format than requested; kept with its actual format"
        );
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_checked() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0];
        assert_eq!(check_format(png, None, "p"), Ok(OutputFormat::Png));
        assert_eq!(
            check_format(png, Some(OutputFormat::Png), "p"),
            Ok(OutputFormat::Png)
        );
        // Another real format than requested: kept, with its actual format.
        assert_eq!(
            check_format(&jpeg, Some(OutputFormat::Png), "p"),
            Ok(OutputFormat::Jpeg)
        );
        let err = check_format(b"{\"json\":1}", None, "p").unwrap_err();
        assert!(err.contains("not a PNG"), "{err}");
        assert!(check_format(b"", None, "p").is_err());
        assert!(looks_like_image(b"GIF89a...."));
        assert!(!looks_like_image(b"<html>"));
    }
}
