//! Scriptable faults: what an account answers instead of a normal result.
//!
//! Why a queue: scenario tests need sequences such as "503 once, then succeed" or "429 twice,
//! then a hang". Faults are enqueued per account and the head of the queue is served first;
//! each entry says how many requests it applies to ([`Times`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::RateLimitScope;

/// A failure the simulator serves instead of a normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// 429 `rate_limit_exceeded`. With `retry_after`, the `retry-after` (whole seconds,
    /// rounded up) and `retry-after-ms` headers are sent and the message names the delay;
    /// without, neither is. `scope` picks the limit the message names and the error `type`
    /// (`requests` / `tokens`; `Images` names "images per min (IPM)" with type `requests`;
    /// `Unknown` sends the images-endpoint wording with no type).
    RateLimited {
        /// The delay to announce, if any.
        retry_after: Option<Duration>,
        /// Which limit the 429 names.
        scope: RateLimitScope,
    },
    /// 429 "... Please try again after 0.0 seconds.": the tier-access case, not a rate limit.
    TierDenied,
    /// 429 `insufficient_quota`.
    InsufficientQuota,
    /// 400 `billing_hard_limit_reached`.
    BillingHardLimit,
    /// 403 "Your organization must be verified to use the model ...".
    OrgNotVerified,
    /// 403 `unsupported_country_region_territory`.
    RegionNotSupported,
    /// 401 `invalid_api_key` (Azure: the 401 subscription-key body).
    InvalidApiKey,
    /// 404 `model_not_found` (Azure: `DeploymentNotFound`).
    ModelNotFound,
    /// The given status with an OpenAI-style `server_error` body (meant for 5xx; an invalid
    /// status code is served as 500).
    Status(u16),
    /// Never answers; the request ends when the client disconnects, the server shuts down,
    /// or after the simulator's hang limit (10 minutes by default).
    Hang,
    /// Waits this long (tokio sleep), then answers normally.
    Slow(Duration),
    /// Closes the connection without an answer.
    Reset,
    /// 200 with the normal JSON body cut in half.
    TruncatedJson,
    /// 200 `{"created": ..., "data": []}`.
    EmptyData,
    /// 400 `moderation_blocked` (dall-e models: `content_policy_violation`; Azure: the content
    /// filter body with `inner_error.code = "ResponsibleAIPolicyViolation"`).
    ContentPolicy,
    /// A streamed answer (`stream: true`) that sends its first partial image, then nothing
    /// more while keeping the connection open (until the client leaves or the hang limit).
    /// A plain request is answered normally.
    StreamStall,
    /// A streamed answer cut after its first partial image: the connection is closed in the
    /// middle of the next event. A plain request is answered normally.
    StreamCut,
    /// A streamed answer whose second event is not JSON (then the stream ends). A plain
    /// request is answered normally.
    StreamBadEvent,
    /// A streamed answer whose second event carries `b64_json` that is not base64. A plain
    /// request is answered normally.
    StreamBadBase64,
    /// A streamed answer that pauses this long after each partial image (the partials come
    /// at once, the final image late: quick to the first partial, slow to finish). A plain
    /// request is answered normally.
    StreamSlow(Duration),
}

impl Fault {
    /// Whether this fault shapes a streamed answer (served in the answer, not instead of it).
    pub(crate) fn is_stream_fault(&self) -> bool {
        matches!(
            self,
            Fault::StreamStall
                | Fault::StreamCut
                | Fault::StreamBadEvent
                | Fault::StreamBadBase64
                | Fault::StreamSlow(_)
        )
    }
}

/// How many requests a queued fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next request only.
    Once,
    /// The next `k` requests (`N(0)` is never served).
    N(u32),
    /// Every request until [`Simulator::clear_faults`](super::Simulator::clear_faults).
    Always,
}

/// The per-account fault queue.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultQueue {
    queue: VecDeque<(Fault, Times)>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault, times: Times) {
        if times != Times::N(0) {
            self.queue.push_back((fault, times));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Takes the fault to serve for the next request, if any.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        let (fault, times) = self.queue.front_mut()?;
        let fault = fault.clone();
        match times {
            Times::Always => {}
            Times::Once | Times::N(0) | Times::N(1) => {
                self.queue.pop_front();
            }
            Times::N(k) => *k -= 1,
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_and_counts() {
        let mut q = FaultQueue::default();
        q.push(Fault::Status(503), Times::N(2));
        q.push(Fault::Reset, Times::Once);
        q.push(Fault::Hang, Times::N(0));
        q.push(Fault::EmptyData, Times::Always);
        assert_eq!(q.next(), Some(Fault::Status(503)));
        assert_eq!(q.next(), Some(Fault::Status(503)));
        assert_eq!(q.next(), Some(Fault::Reset));
        assert_eq!(q.next(), Some(Fault::EmptyData));
        assert_eq!(q.next(), Some(Fault::EmptyData));
        q.clear();
        assert_eq!(q.next(), None);
    }
}
