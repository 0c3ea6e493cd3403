//! The event-stream parser (`image_router::stream::sse`) on a realistic streamed answer:
//! three partial images and the completed event of about 750 KB of base64 each (3 MB in all,
//! a 1024x1024 high-quality image), fed in 16 KiB chunks as a TLS connection delivers them,
//! with keep-alive comments between the events.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use image_router::stream::sse::SseParser;

fn stream_body() -> Vec<u8> {
    // Base64-like text (the parser does not decode it; the bytes only need the alphabet).
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b64: String = (0..750_000)
        .map(|i| alphabet[(i * 7 + i / 64) % 64] as char)
        .collect();
    let mut body = String::from(": keep-alive\n\n");
    for i in 0..3 {
        body.push_str(&format!(
            "event: image_generation.partial_image\ndata: {{\"type\":\"image_generation.partial_image\",\"b64_json\":\"{b64}\",\"partial_image_index\":{i},\"created_at\":1,\"size\":\"1024x1024\",\"quality\":\"high\",\"background\":\"opaque\",\"output_format\":\"png\"}}\n\n: keep-alive\n\n"
        ));
    }
    body.push_str(&format!(
        "event: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"{b64}\",\"usage\":{{\"input_tokens\":9,\"output_tokens\":4160,\"total_tokens\":4169}}}}\n\n"
    ));
    body.into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = stream_body();
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse 3 MB stream in 16 KiB chunks", |b| {
        b.iter(|| {
            let mut parser = SseParser::new();
            let mut events = Vec::with_capacity(4);
            for chunk in body.chunks(16 * 1024) {
                parser.push(black_box(chunk), &mut events).unwrap();
            }
            assert_eq!(events.len(), 4);
            black_box(events)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
