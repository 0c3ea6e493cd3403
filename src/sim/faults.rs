//! Scriptable faults: what an account answers instead of a normal result.
//!
//! Why a queue: scenario tests need sequences such as "503 once, then succeed" or "429 twice,
//! then a hang". Faults are enqueued per account and the head of the queue is served first;
//! each entry says how many requests it applies to ([`Times`]).
//!
//! Why random faults beside it ([`RandomFaults`]): a load test wants a provider that fails a
//! share of its requests, each one independently, as a real endpoint's error rate. Queueing
//! faults from outside on a timer or per observed request cannot give that: the queue hands
//! them to whichever requests come next, so faults queued while traffic pauses (or several
//! queued at once) reach the next requests as a run, which is an outage, not an error rate.
//! A random fault is drawn for a request only when the queue has none for it.

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

/// Independent random faults: each request (with no queued fault for it) fails with
/// probability `1 / one_in`, with a fault drawn from `mix` by weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomFaults {
    one_in: u32,
    mix: Vec<(Fault, u32)>,
    total: u64,
}

impl RandomFaults {
    /// One request in `one_in` (on average) fails, with a fault of `mix` chosen in
    /// proportion to its weight. `None` when `one_in` is 0, `mix` is empty or every weight
    /// is 0 (nothing could be drawn).
    pub fn new(one_in: u32, mix: impl IntoIterator<Item = (Fault, u32)>) -> Option<Self> {
        let mix: Vec<(Fault, u32)> = mix.into_iter().filter(|(_, w)| *w > 0).collect();
        let total = mix.iter().map(|(_, w)| u64::from(*w)).sum();
        (one_in > 0 && total > 0).then_some(Self { one_in, mix, total })
    }

    fn draw(&self, rng: &mut impl rand::Rng) -> Option<Fault> {
        if rng.random_range(0..self.one_in) != 0 {
            return None;
        }
        let mut pick = rng.random_range(0..self.total);
        for (fault, w) in &self.mix {
            let w = u64::from(*w);
            if pick < w {
                return Some(fault.clone());
            }
            pick -= w;
        }
        None // unreachable: `pick` < the sum of the weights
    }
}

/// The per-account fault queue, and the random faults drawn when it is empty.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultQueue {
    queue: VecDeque<(Fault, Times)>,
    random: Option<RandomFaults>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault, times: Times) {
        if times != Times::N(0) {
            self.queue.push_back((fault, times));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.random = None;
    }

    pub(crate) fn set_random(&mut self, random: Option<RandomFaults>) {
        self.random = random;
    }

    /// Takes the fault to serve for the next request, if any: the queue's head, else a
    /// random fault when they are set.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        let Some((fault, times)) = self.queue.front_mut() else {
            return self.random.as_ref()?.draw(&mut rand::rng());
        };
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

    #[test]
    fn random_faults_after_the_queue_at_their_rate() {
        assert_eq!(RandomFaults::new(0, [(Fault::Reset, 1)]), None);
        assert_eq!(RandomFaults::new(3, [(Fault::Reset, 0)]), None);
        let mut q = FaultQueue::default();
        q.set_random(RandomFaults::new(
            4,
            [(Fault::Status(500), 3), (Fault::Reset, 1), (Fault::Hang, 0)],
        ));
        q.push(Fault::EmptyData, Times::Once);
        assert_eq!(q.next(), Some(Fault::EmptyData), "the queue first");
        let draws: Vec<Option<Fault>> = (0..40_000).map(|_| q.next()).collect();
        let count = |f: Fault| draws.iter().filter(|d| **d == Some(f.clone())).count();
        let (s500, reset) = (count(Fault::Status(500)), count(Fault::Reset));
        // 10,000 faults expected: 7,500 and 2,500 (bounds far outside random variation).
        assert!((7_000..8_000).contains(&s500), "{s500}");
        assert!((2_200..2_800).contains(&reset), "{reset}");
        assert_eq!(count(Fault::Hang), 0, "weight 0 is never drawn");
        q.clear();
        assert_eq!(q.next(), None, "clear ends random faults too");
    }
}
