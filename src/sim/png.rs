//! Real PNG bytes for simulated answers: a solid colour of the requested size.
//!
//! Why solid colours: they compress to a few kilobytes, decode with any PNG reader, and let a
//! test or the quickstart tell which account produced an image. Encoded images (and their
//! base64) are cached per size and colour, so a busy simulation does not re-encode them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use parking_lot::Mutex;

/// Largest pixel count the simulator renders (guards against absurd sizes on models the
/// catalog does not know).
pub(crate) const MAX_PIXELS: u64 = 4096 * 4096;

/// An encoded image and its base64 text.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    pub(crate) bytes: Bytes,
    pub(crate) b64: Arc<str>,
}

type Key = (u32, u32, [u8; 4]);

fn cache() -> &'static Mutex<HashMap<Key, Encoded>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Encoded>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A `width`×`height` PNG of one RGBA colour (RGB when the colour is opaque). `None` when the
/// size is zero or larger than [`MAX_PIXELS`].
pub(crate) fn solid_png(width: u32, height: u32, rgba: [u8; 4]) -> Option<Encoded> {
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return None;
    }
    let key = (width, height, rgba);
    if let Some(e) = cache().lock().get(&key) {
        return Some(e.clone());
    }
    let bytes = Bytes::from(encode(width, height, rgba)?);
    let b64: Arc<str> = base64::engine::general_purpose::STANDARD
        .encode(&bytes)
        .into();
    let e = Encoded { bytes, b64 };
    cache().lock().insert(key, e.clone());
    Some(e)
}

fn encode(width: u32, height: u32, rgba: [u8; 4]) -> Option<Vec<u8>> {
    let opaque = rgba[3] == 255;
    let pixel: &[u8] = if opaque { &rgba[..3] } else { &rgba[..] };
    let row: Vec<u8> = pixel
        .iter()
        .copied()
        .cycle()
        .take(pixel.len() * width as usize)
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(if opaque {
            png::ColorType::Rgb
        } else {
            png::ColorType::Rgba
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().ok()?;
        let mut stream = writer.stream_writer().ok()?;
        for _ in 0..height {
            std::io::Write::write_all(&mut stream, &row).ok()?;
        }
        stream.finish().ok()?;
    }
    Some(out)
}

/// A colour derived from a name, so each account's images look different.
pub(crate) fn colour_for(name: &str) -> [u8; 3] {
    // FNV-1a: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_le_bytes();
    // Keep colours away from black so they are visible.
    [a | 0x40, b | 0x40, c | 0x40]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_to_size_and_colour() {
        for (w, h, c) in [(3, 2, [10, 20, 30, 255]), (5, 7, [1, 2, 3, 0])] {
            let e = solid_png(w, h, c).unwrap();
            let dec = png::Decoder::new(std::io::Cursor::new(e.bytes.to_vec()));
            let mut r = dec.read_info().unwrap();
            let mut buf = vec![0; r.output_buffer_size()];
            let info = r.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), (w, h));
            let ch = if c[3] == 255 { 3 } else { 4 };
            assert_eq!(&buf[..ch], &c[..ch]);
        }
        // Solid colours stay small, so answers are cheap to send and parse.
        assert!(solid_png(1536, 1024, [9, 9, 9, 255]).unwrap().bytes.len() < 64 * 1024);
        assert!(solid_png(0, 5, [0; 4]).is_none());
        assert!(solid_png(5000, 5000, [0; 4]).is_none());
    }
}
