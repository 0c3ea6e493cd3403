//! The RPM / TPM / IPM sliding window the simulator enforces per account (and per model, for
//! an account with per-model limits).
//!
//! Why an exact sliding window and not a token bucket: the simulator is the referee the router's
//! limiter is tested against, so its rule has to be simple to state and check by hand. A request
//! at time `t` is admitted iff the requests admitted in `(t - 60 s, t]` plus one stay within the
//! RPM limit, the tokens admitted in that interval plus its own stay within the TPM limit,
//! and the images admitted in it plus its own `n` stay within the IPM limit (a request
//! weighs its `n` images, as OpenAI counts them). Rejected requests are not recorded. Any limiter that never produces a 429 here never puts
//! more than the limit into any 60-second window.
//!
//! The struct is plain data (no server, no clock): pass the time in, so it can also be used in
//! simulated-time tests without the HTTP server.

use std::collections::VecDeque;
use std::time::Duration;

/// Length of the rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Images per minute.
    Images,
}

impl LimitKind {
    /// The OpenAI error `type` for this limit (`"requests"` / `"tokens"`). An images-per-minute
    /// 429 says `"requests"` too: the reports of it (issue 11) give no `type` of its own, and
    /// the message is what names the images limit.
    pub const fn as_str(&self) -> &'static str {
        match self {
            LimitKind::Requests | LimitKind::Images => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// Why [`RateWindow::check`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The limit that refused it (requests are checked first).
    pub kind: LimitKind,
    /// That limit.
    pub limit: u64,
    /// How much of it the window holds now.
    pub used: u64,
    /// What the request asked for (1 request, its tokens, or its images).
    pub requested: u64,
    /// Time until the window has room for the request; `None` when it never will (a limit of
    /// zero, or more tokens or images than the TPM / IPM limit).
    pub retry_in: Option<Duration>,
}

/// What the window holds at some instant (for the `x-ratelimit-*` headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// Requests admitted in the last 60 s.
    pub requests: u64,
    /// Tokens admitted in the last 60 s.
    pub tokens: u64,
    /// Images admitted in the last 60 s.
    pub images: u64,
    /// Time until the oldest admitted request leaves the window, i.e. until request capacity
    /// next grows (zero when the window is empty).
    pub reset_requests: Duration,
    /// Time until the oldest admitted tokens leave the window (zero when there are none).
    pub reset_tokens: Duration,
}

/// A sliding 60-second RPM / TPM / IPM window. `None` limits are unlimited.
///
/// ```
/// use image_router::sim::RateWindow;
/// use std::time::Duration;
/// let mut w = RateWindow::new(Some(2), Some(1_000));
/// let t0 = Duration::from_secs(100);
/// assert!(w.try_admit(t0, 100).is_ok());
/// assert!(w.try_admit(t0 + Duration::from_secs(10), 100).is_ok());
/// // A third request within the minute must wait until the first one leaves the window.
/// assert_eq!(w.try_admit(t0 + Duration::from_secs(20), 100), Err(Duration::from_secs(40)));
/// assert!(w.try_admit(t0 + Duration::from_secs(60), 100).is_ok());
///
/// // Images per minute: a request weighs its `n`.
/// let mut w = RateWindow::new(None, None).with_ipm(Some(5));
/// assert!(w.check_images(t0, 0, 4).is_ok());
/// let r = w.check_images(t0, 0, 2).unwrap_err();
/// assert_eq!((r.limit, r.used, r.requested), (5, 4, 2));
/// assert!(w.check_images(t0, 0, 1).is_ok());
/// ```
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    rpm: Option<u32>,
    tpm: Option<u64>,
    ipm: Option<u32>,
    /// Admitted requests, oldest first: (time, tokens, images).
    admitted: VecDeque<(Duration, u64, u64)>,
    tokens_in_window: u64,
    images_in_window: u64,
}

impl RateWindow {
    /// A window with optional requests-per-minute and tokens-per-minute limits.
    pub fn new(rpm: Option<u32>, tpm: Option<u64>) -> Self {
        Self {
            rpm,
            tpm,
            ipm: None,
            admitted: VecDeque::new(),
            tokens_in_window: 0,
            images_in_window: 0,
        }
    }

    /// This window with an images-per-minute limit.
    #[must_use]
    pub fn with_ipm(mut self, ipm: Option<u32>) -> Self {
        self.ipm = ipm;
        self
    }

    /// The images-per-minute limit.
    pub fn ipm(&self) -> Option<u32> {
        self.ipm
    }

    /// Changes the images-per-minute limit; what was admitted stays in the window.
    pub fn set_ipm(&mut self, ipm: Option<u32>) {
        self.ipm = ipm;
    }

    /// The requests-per-minute limit.
    pub fn rpm(&self) -> Option<u32> {
        self.rpm
    }

    /// The tokens-per-minute limit.
    pub fn tpm(&self) -> Option<u64> {
        self.tpm
    }

    /// Changes the limits; what was admitted stays in the window.
    pub fn set_limits(&mut self, rpm: Option<u32>, tpm: Option<u64>) {
        self.rpm = rpm;
        self.tpm = tpm;
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.ipm.is_some()
    }

    /// Drops entries that are no longer in `(now - 60 s, now]`.
    fn expire(&mut self, now: Duration) {
        while let Some(&(at, tokens, images)) = self.admitted.front() {
            if at + WINDOW <= now {
                self.admitted.pop_front();
                self.tokens_in_window -= tokens;
                self.images_in_window -= images;
            } else {
                break;
            }
        }
    }

    /// Admits a request of `tokens` at `now`, or says how long until it would fit
    /// (`Duration::MAX` when it never can). Shorthand for [`check`](Self::check).
    pub fn try_admit(&mut self, now: Duration, tokens: u64) -> Result<(), Duration> {
        self.check(now, tokens)
            .map_err(|r| r.retry_in.unwrap_or(Duration::MAX))
    }

    /// Admits a request of `tokens` at `now`, or explains the refusal. A refused request is
    /// not recorded. Time must not go backwards between calls (an earlier `now` is treated as
    /// the latest time seen).
    pub fn check(&mut self, now: Duration, tokens: u64) -> Result<(), Rejection> {
        self.check_images(now, tokens, 1)
    }

    /// [`check`](Self::check) for a request of `images` images (its `n`; a chat-mode call
    /// makes one). Requests are checked first, then tokens, then images.
    pub fn check_images(
        &mut self,
        now: Duration,
        tokens: u64,
        images: u64,
    ) -> Result<(), Rejection> {
        let now = self.fits(now, tokens, images)?;
        self.record(now, tokens, images);
        Ok(())
    }

    /// Whether a request would be admitted at `now`, without recording it (so a request can
    /// be checked against an account's window and a model's before either records it).
    /// Returns the time to record it at (`now`, or the latest time seen).
    pub(crate) fn fits(
        &mut self,
        now: Duration,
        tokens: u64,
        images: u64,
    ) -> Result<Duration, Rejection> {
        let now = self
            .admitted
            .back()
            .map_or(now, |&(last, _, _)| now.max(last));
        self.expire(now);
        let count = self.admitted.len() as u64;
        if let Some(rpm) = self.rpm {
            let rpm = u64::from(rpm);
            if count + 1 > rpm {
                // The (count - rpm)-th oldest entry (0-based) must leave for one slot to free.
                let retry_in = if rpm == 0 {
                    None
                } else {
                    let idx = usize::try_from(count - rpm).unwrap_or(usize::MAX);
                    self.admitted
                        .get(idx)
                        .map(|&(at, _, _)| (at + WINDOW).saturating_sub(now))
                };
                return Err(Rejection {
                    kind: LimitKind::Requests,
                    limit: rpm,
                    used: count,
                    requested: 1,
                    retry_in,
                });
            }
        }
        if let Some(tpm) = self.tpm {
            let used = self.tokens_in_window;
            if used.saturating_add(tokens) > tpm {
                let retry_in = if tokens > tpm {
                    None
                } else {
                    // Free the oldest entries until enough tokens have left.
                    let need = used + tokens - tpm;
                    let mut freed = 0u64;
                    let mut at_time = None;
                    for &(at, t, _) in &self.admitted {
                        freed += t;
                        if freed >= need {
                            at_time = Some(at);
                            break;
                        }
                    }
                    at_time.map(|at| (at + WINDOW).saturating_sub(now))
                };
                return Err(Rejection {
                    kind: LimitKind::Tokens,
                    limit: tpm,
                    used,
                    requested: tokens,
                    retry_in,
                });
            }
        }
        if let Some(ipm) = self.ipm {
            let ipm = u64::from(ipm);
            let used = self.images_in_window;
            if used.saturating_add(images) > ipm {
                let retry_in = if images > ipm {
                    None
                } else {
                    // Free the oldest entries until enough images have left.
                    let need = used + images - ipm;
                    let mut freed = 0u64;
                    let mut at_time = None;
                    for &(at, _, i) in &self.admitted {
                        freed += i;
                        if freed >= need {
                            at_time = Some(at);
                            break;
                        }
                    }
                    at_time.map(|at| (at + WINDOW).saturating_sub(now))
                };
                return Err(Rejection {
                    kind: LimitKind::Images,
                    limit: ipm,
                    used,
                    requested: images,
                    retry_in,
                });
            }
        }
        Ok(now)
    }

    /// Records a request that [`fits`](Self::fits) said is admitted at `now`.
    pub(crate) fn record(&mut self, now: Duration, tokens: u64, images: u64) {
        self.admitted.push_back((now, tokens, images));
        self.tokens_in_window += tokens;
        self.images_in_window += images;
    }

    /// What the window holds at `now`.
    pub fn state(&mut self, now: Duration) -> WindowState {
        let now = self
            .admitted
            .back()
            .map_or(now, |&(last, _, _)| now.max(last));
        self.expire(now);
        let reset = self.admitted.front().map_or(Duration::ZERO, |&(at, _, _)| {
            (at + WINDOW).saturating_sub(now)
        });
        let reset_tokens = self
            .admitted
            .iter()
            .find(|&&(_, t, _)| t > 0)
            .map_or(Duration::ZERO, |&(at, _, _)| {
                (at + WINDOW).saturating_sub(now)
            });
        WindowState {
            requests: self.admitted.len() as u64,
            tokens: self.tokens_in_window,
            images: self.images_in_window,
            reset_requests: reset,
            reset_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn admits_exactly_rpm_per_window() {
        let mut w = RateWindow::new(Some(3), None);
        for i in 0..3 {
            assert!(w.try_admit(S(i), 10).is_ok());
        }
        assert_eq!(w.try_admit(S(30), 10), Err(S(30)));
        // At t = 60 the request admitted at t = 0 has left (the window is (0, 60]).
        assert!(w.try_admit(S(60), 10).is_ok());
        assert_eq!(w.try_admit(S(60), 10), Err(S(1)));
    }

    #[test]
    fn tokens_limit_and_retry() {
        let mut w = RateWindow::new(None, Some(1000));
        assert!(w.try_admit(S(0), 600).is_ok());
        assert!(w.try_admit(S(10), 300).is_ok());
        // 900 used; 200 more needs the first 600 gone (t = 60).
        let r = w.check(S(20), 200).unwrap_err();
        assert_eq!(r.kind, LimitKind::Tokens);
        assert_eq!((r.limit, r.used, r.requested), (1000, 900, 200));
        assert_eq!(r.retry_in, Some(S(40)));
        assert!(w.try_admit(S(20), 100).is_ok());
        // Never fits.
        assert_eq!(w.check(S(20), 1001).unwrap_err().retry_in, None);
        assert_eq!(w.try_admit(S(20), 1001), Err(Duration::MAX));
    }

    #[test]
    fn images_limit_weighs_n_and_retries_when_enough_leave() {
        let mut w = RateWindow::new(None, None).with_ipm(Some(5));
        assert!(w.check_images(S(0), 10, 3).is_ok());
        assert!(w.check_images(S(10), 10, 2).is_ok());
        // 5 used: a request of 2 needs the first 3 gone (t = 60); of 6 never fits.
        let r = w.check_images(S(20), 10, 2).unwrap_err();
        assert_eq!(r.kind, LimitKind::Images);
        assert_eq!((r.limit, r.used, r.requested), (5, 5, 2));
        assert_eq!(r.retry_in, Some(S(40)));
        assert_eq!(w.check_images(S(20), 10, 6).unwrap_err().retry_in, None);
        // A refused request is not recorded.
        assert_eq!(w.state(S(20)).images, 5);
        assert!(w.check_images(S(60), 10, 3).is_ok());
        assert_eq!(w.state(S(60)).images, 5);
    }

    #[test]
    fn zero_limit_never_admits() {
        let mut w = RateWindow::new(Some(0), None);
        let r = w.check(S(5), 1).unwrap_err();
        assert_eq!(r.retry_in, None);
    }

    #[test]
    fn state_after_admission() {
        let mut w = RateWindow::new(Some(5), Some(100));
        w.try_admit(S(0), 10).unwrap();
        w.try_admit(S(15), 20).unwrap();
        let s = w.state(S(30));
        assert_eq!((s.requests, s.tokens), (2, 30));
        assert_eq!(s.reset_requests, S(30));
        assert_eq!(s.reset_tokens, S(30));
        let s = w.state(S(61));
        assert_eq!((s.requests, s.tokens), (1, 20));
        assert_eq!(s.reset_requests, S(14));
    }
}
