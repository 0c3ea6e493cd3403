//! Bounded body reading: a body is read as a stream against a limit (its `Content-Length`
//! first when present) so an endless or oversized answer costs at most the limit. Apart from
//! the send path because downloads read their bodies the same way.

use bytes::{Bytes, BytesMut};

use crate::error::{ErrorKind, ProviderError};

/// Most bytes of an error answer that are read: enough for any real error JSON; the rest of a
/// longer body is dropped unread (the connection is closed).
pub(crate) const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Most bytes of a probe answer (a model or deployment description, or a model list).
pub(crate) const PROBE_BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// Why reading a body stopped early.
pub(super) enum ReadError {
    /// The body is longer than the limit (by its `Content-Length`, or as it streamed).
    TooLarge,
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads `response`'s body, failing as soon as it would exceed `limit` bytes. By reference:
/// the caller's future holds the response once, not once more in this one's (issue 16).
pub(super) async fn read_limited(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(ReadError::TooLarge);
    }
    // The chunks are kept as they arrive and joined once at the end into a buffer of the
    // exact size (one copy of the body, as a direct `reqwest` call makes; a body of one chunk
    // is not copied at all). Growing one buffer instead copied a 2 MB body up to three times
    // (issue 16), and pre-sizing it from `Content-Length` would trust the provider's word.
    // The first chunk is held apart and the list is only made for a second one: a small
    // answer arrives in one chunk, and a list for it was an allocation per call (issue 16).
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<Bytes> = Vec::new();
    let mut len: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        len = len.saturating_add(chunk.len() as u64);
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if first.is_none() {
            first = Some(chunk);
        } else {
            rest.push(chunk);
        }
    }
    Ok(join(first, &rest, len))
}

/// `first` followed by `rest` as one buffer of `len` bytes (`first` itself when there is no
/// rest; empty when there is nothing).
fn join(first: Option<Bytes>, rest: &[Bytes], len: u64) -> Bytes {
    let Some(first) = first else {
        return Bytes::new();
    };
    if rest.is_empty() {
        return first;
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    buf.extend_from_slice(&first);
    for chunk in rest {
        buf.extend_from_slice(chunk);
    }
    buf.freeze()
}

/// Reads at most `limit` bytes of `response`'s body and leaves the rest unread (dropping the
/// response then closes its connection).
pub(super) async fn read_prefix(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Bytes, reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = usize::try_from(limit.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() >= room {
            buf.extend_from_slice(&chunk[..room]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The error for a body over its limit.
pub(crate) fn too_large(provider: &str, what: &str, limit: u64) -> ProviderError {
    ProviderError::new(
        provider,
        ErrorKind::Decode,
        format!(
            "{what} exceeds the limit of {limit} bytes (derived from the request's size and `n`; \
             raise it with `max_response_bytes`)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_one_chunk_and_concatenates_several() {
        assert!(join(None, &[], 0).is_empty());
        let one = Bytes::from_static(b"abc");
        let joined = join(Some(one.clone()), &[], 3);
        assert_eq!(joined, one);
        // One chunk is handed on as it is: no copy.
        assert_eq!(joined.as_ptr(), one.as_ptr());
        let rest = [Bytes::from_static(b"de"), Bytes::from_static(b"f")];
        assert_eq!(join(Some(one), &rest, 6), Bytes::from_static(b"abcdef"));
    }
}
