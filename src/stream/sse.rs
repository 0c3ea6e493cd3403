//! A bounded parser of server-sent events (the `text/event-stream` format of the WHATWG HTML
//! standard, "Server-sent events", section "Parsing an event stream").
//!
//! Bytes go in as they arrive ([`SseParser::push`]), complete events come out. It handles what
//! real streams do: an event split across any number of chunks (at any byte, also inside a
//! UTF-8 character or between `\r` and `\n`), comment lines (`:` …, which proxies use as
//! keep-alives), blank keep-alive lines, `\r\n`, `\r` and `\n` line ends, several `data:`
//! lines joined with `\n`, an optional single space after the colon, and fields without a
//! colon. `id:` and `retry:` are read and kept (this client never reconnects: an image
//! stream cannot be resumed, so `Last-Event-ID` has no use here).
//!
//! # Why not a crate
//!
//! `eventsource-stream` (0.2.3, last released February 2022) is the maintained-looking
//! choice, checked with the docs search: it grows its buffer with whatever the server sends,
//! so an endless line without a line break (a hostile or broken proxy) is memory until the
//! process dies, and it works on `Stream`s only, which makes the every-split-point property
//! test and the byte-level benchmark awkward. `sse-stream` has the same unbounded buffer. The
//! format is small (one page of the standard); this parser is about 150 lines with hard
//! limits: a line longer than [`SseLimits::max_line`] or an event whose data exceeds
//! [`SseLimits::max_event`] is an [`SseError`], never an allocation without bound.

use std::fmt;

/// One parsed event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseEvent {
    /// The `event:` field (empty when the event named none: the standard's "message").
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` field seen, if any.
    pub id: Option<String>,
    /// A `retry:` field (milliseconds), if any.
    pub retry: Option<u64>,
}

/// Limits of one parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseLimits {
    /// Longest line in bytes (a `data:` line carries a whole base64 image: the default is
    /// 64 MiB, well above the largest image a GPT image model returns).
    pub max_line: usize,
    /// Largest data of one event in bytes (default 64 MiB).
    pub max_event: usize,
}

impl Default for SseLimits {
    fn default() -> Self {
        Self {
            max_line: 64 * 1024 * 1024,
            max_event: 64 * 1024 * 1024,
        }
    }
}

/// Why a stream is not a valid event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// A line longer than the limit (bytes seen so far, limit).
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// An event whose data is larger than the limit.
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A line that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::LineTooLong { limit } => {
                write!(f, "an event-stream line is longer than {limit} bytes")
            }
            SseError::EventTooLarge { limit } => {
                write!(f, "an event's data is larger than {limit} bytes")
            }
            SseError::NotUtf8 => f.write_str("an event-stream line is not UTF-8"),
        }
    }
}

impl std::error::Error for SseError {}

/// The incremental parser (see the module docs).
#[derive(Debug, Default)]
pub struct SseParser {
    limits: SseLimits,
    /// The current line's bytes (without its end).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// The event being built.
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    /// Whether anything but line ends was seen since the last complete event.
    pending: bool,
}

impl SseParser {
    /// A parser with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser with `limits`.
    pub fn with_limits(limits: SseLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Feeds `chunk`; complete events are appended to `out`. After an error the parser
    /// must not be used again (the stream is broken).
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        if rest.is_empty() {
            // Nothing to read; in particular a pending `\r` still waits for its `\n`.
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.extend_line(rest)?;
                    break;
                }
                Some(i) => {
                    self.extend_line(&rest[..i])?;
                    let cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    if cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    self.end_line(out)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the stream ended in the middle of an event (bytes seen after the last
    /// complete event): a truncated stream. The standard drops such an event; the caller
    /// decides whether that is an error (for an image stream it is).
    pub fn has_partial_event(&self) -> bool {
        self.pending || !self.line.is_empty()
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len().saturating_add(bytes.len()) > self.limits.max_line {
            return Err(SseError::LineTooLong {
                limit: self.limits.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            // A comment (keep-alive): ignored, and not part of any event.
            self.line = line;
            self.line.clear();
            return Ok(());
        }
        self.pending = true;
        let text = std::str::from_utf8(&line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (text, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                let extra = value.len() + usize::from(self.has_data);
                if self.data.len().saturating_add(extra) > self.limits.max_event {
                    return Err(SseError::EventTooLarge {
                        limit: self.limits.max_event,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        // Keep the line's allocation for the next line (a base64 image line is megabytes).
        self.line = line;
        self.line.clear();
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.pending = false;
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            // The standard: an event without data is not dispatched.
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
            retry: self.retry.take(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseEvent>, bool) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).unwrap();
        }
        (out, p.has_partial_event())
    }

    #[test]
    fn fields_comments_and_line_ends() {
        let body =
            b": keep-alive\r\n\r\nevent: a\r\ndata: one\r\ndata:two\r\nid: 7\r\nretry: 30\r\n\r\n\
            :comment\n\ndata\n\nevent: b\rdata: x\r\r";
        let (events, partial) = parse_all(&[body]);
        assert!(!partial);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event, "a");
        assert_eq!(events[0].data, "one\ntwo");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(30));
        assert_eq!(events[1].data, "");
        assert_eq!(events[2].event, "b");
        assert_eq!(events[2].data, "x");
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body = "event: image_generation.partial_image\r\ndata: {\"b64_json\":\"QUJD\",\"é\":1}\r\n\r\n\
                    : ping\n\nevent: image_generation.completed\ndata: {\"x\":2}\n\n";
        let whole = parse_all(&[body.as_bytes()]).0;
        assert_eq!(whole.len(), 2);
        let bytes = body.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let (events, partial) = parse_all(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(events, whole, "split at {i}/{j}");
                assert!(!partial);
            }
        }
    }

    #[test]
    fn a_truncated_event_is_reported() {
        let (events, partial) = parse_all(&[b"data: {\"a\":1}\n\ndata: {\"b\""]);
        assert_eq!(events.len(), 1);
        assert!(partial);
        let (_, partial) = parse_all(&[b"data: x\n"]);
        assert!(
            partial,
            "a data line without the blank line is not an event yet"
        );
    }

    #[test]
    fn an_endless_line_is_an_error_not_memory() {
        let mut p = SseParser::with_limits(SseLimits {
            max_line: 1024,
            max_event: 4096,
        });
        let mut out = Vec::new();
        let chunk = vec![b'a'; 512];
        p.push(&chunk, &mut out).unwrap();
        let err = p.push(&chunk[..513.min(chunk.len())], &mut out);
        assert!(err.is_ok(), "exactly at the limit is fine");
        let err = p.push(b"b", &mut out).unwrap_err();
        assert_eq!(err, SseError::LineTooLong { limit: 1024 });
        assert!(p.line.capacity() <= 2048);
    }

    #[test]
    fn an_event_too_large_is_an_error() {
        let mut p = SseParser::with_limits(SseLimits {
            max_line: 100,
            max_event: 150,
        });
        let mut out = Vec::new();
        let line = format!("data: {}\n", "x".repeat(90));
        p.push(line.as_bytes(), &mut out).unwrap();
        let err = p.push(line.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 150 });
    }

    #[test]
    fn not_utf8_is_an_error() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        assert_eq!(
            p.push(b"data: \xff\xfe\n", &mut out).unwrap_err(),
            SseError::NotUtf8
        );
    }

    proptest::proptest! {
        /// Any bytes at all: no panic, and the events do not depend on where the chunks
        /// were cut.
        #[test]
        fn any_bytes_any_split_same_events(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let whole = {
                let mut p = SseParser::new();
                let mut out = Vec::new();
                let r = p.push(&bytes, &mut out);
                (out, r.is_err())
            };
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.sort_unstable();
            let mut p = SseParser::new();
            let mut out = Vec::new();
            let mut failed = false;
            let mut start = 0;
            for end in points.into_iter().chain([bytes.len()]) {
                if p.push(&bytes[start..end], &mut out).is_err() {
                    failed = true;
                    break;
                }
                start = end;
            }
            proptest::prop_assert_eq!(failed, whole.1);
            if !failed {
                proptest::prop_assert_eq!(out, whole.0);
            }
        }

        /// Streams made of the format's own pieces (fields, comments, every line end).
        #[test]
        fn event_streams_split_anywhere_give_the_same_events(
            parts in proptest::collection::vec(0usize..9, 1..40),
            cut in 0usize..2000,
        ) {
            const PIECES: [&str; 9] = [
                "data: {\"a\":1}", "data:x", "event: image_edit.completed", ": ping",
                "id: 3", "retry: 10", "\n", "\r\n", "\r",
            ];
            let text: String = parts.iter().map(|&i| PIECES[i]).collect();
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let parse = |chunks: &[&[u8]]| {
                let mut p = SseParser::new();
                let mut out = Vec::new();
                for c in chunks {
                    p.push(c, &mut out).unwrap();
                }
                out
            };
            proptest::prop_assert_eq!(parse(&[bytes]), parse(&[&bytes[..cut], &bytes[cut..]]));
        }
    }
}
