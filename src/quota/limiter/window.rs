//! The sliding-window log behind the limiter: the entries admitted in the last 60 s (each
//! with its requests, images and tokens), the capacity held from server headers and blocks,
//! and the arithmetic that admits a request or computes its exact retry time. Kept apart from [`RateLimiter`](super::RateLimiter), which
//! owns the lock and the clock and turns this state into permits.

use std::collections::VecDeque;
use std::time::Duration;

use super::config::{BlockReason, Denied, LimitKind, LimiterConfig};

/// The window every limit is defined over.
pub const WINDOW: Duration = Duration::from_secs(60);
pub(super) const WINDOW_NS: u64 = 60_000_000_000;
pub(super) const MINUTE_NS: f64 = 60e9;
/// Block after `remaining-*: 0` without a reset header.
pub(super) const DEFAULT_ZERO_REMAINING_BLOCK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) at: u64,
    pub(super) tokens: u64,
    /// The request's `n`: how many images it asks for.
    pub(super) images: u32,
    pub(super) id: u64,
}

/// The effective limits at one moment (`None`: unlimited).
#[derive(Clone, Copy, Debug)]
pub(super) struct Effective {
    pub(super) rpm: Option<u64>,
    pub(super) ipm: Option<u64>,
    pub(super) tpm: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Held {
    pub(super) amount: u64,
    pub(super) until: u64,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) config: LimiterConfig,
    pub(super) log: VecDeque<Entry>,
    pub(super) log_tokens: u64,
    pub(super) log_images: u64,
    pub(super) next_id: u64,
    pub(super) server_rpm: Option<u64>,
    pub(super) server_tpm: Option<u64>,
    pub(super) held_requests: Held,
    pub(super) held_tokens: Held,
    pub(super) blocks: [(BlockReason, u64); 3],
    pub(super) factor_at: f64,
    pub(super) decreased_at: u64,
    /// When the provider last reported a `remaining-*` figure (router clock, ns).
    pub(super) remaining_seen_at: Option<u64>,
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(super) fn scaled(limit: u64, factor: f64) -> u64 {
    // Float math is exact for limits below 2^53; saturating conversion for the rest.
    let v = (limit as f64 * factor).floor();
    (v as u64).max(1)
}

impl State {
    pub(super) fn factor(&self, now: u64) -> f64 {
        if self.factor_at >= 1.0 {
            return 1.0;
        }
        let minutes = now.saturating_sub(self.decreased_at) as f64 / MINUTE_NS;
        (self.factor_at + self.config.recovery_per_minute * minutes).min(1.0)
    }

    pub(super) fn base_rpm(&self) -> Option<u64> {
        let c = self.config.limits.rpm.map(u64::from);
        match (c, self.server_rpm) {
            (Some(c), Some(s)) => Some(c.min(s)),
            (c, None) => c,
            (None, s) => s,
        }
    }

    pub(super) fn base_tpm(&self) -> Option<u64> {
        match (self.config.limits.tpm, self.server_tpm) {
            (Some(c), Some(s)) => Some(c.min(s)),
            (c, None) => c,
            (None, s) => s,
        }
    }

    pub(super) fn base_ipm(&self) -> Option<u64> {
        self.config.limits.ipm.map(u64::from)
    }

    /// The margin in force on requests and tokens: the configured one, except for a shared key
    /// whose provider has reported its `remaining-*` figures within the last window (then
    /// those figures measure the other clients directly, as held capacity, and the whole limit
    /// is used). Images per minute always keep the configured margin: no provider reports
    /// remaining images, so nothing measures the other clients' images.
    pub(super) fn margin(&self, now: u64) -> f64 {
        let headers_fresh = self
            .remaining_seen_at
            .is_some_and(|at| now < at.saturating_add(WINDOW_NS));
        if self.config.shared && headers_fresh {
            1.0
        } else {
            self.config.margin
        }
    }

    /// The limits without the 429 back-off: what a request must fit in ever to be admitted.
    pub(super) fn ceiling(&self, now: u64) -> Effective {
        self.scaled_by(self.margin(now), self.config.margin)
    }

    pub(super) fn effective(&self, now: u64) -> Effective {
        let factor = self.factor(now);
        self.scaled_by(self.margin(now) * factor, self.config.margin * factor)
    }

    /// The limits scaled by `f` (requests and tokens) and `images_f` (images: see
    /// [`State::margin`]).
    fn scaled_by(&self, f: f64, images_f: f64) -> Effective {
        Effective {
            rpm: self.base_rpm().map(|l| scaled(l, f)),
            ipm: self.base_ipm().map(|l| scaled(l, images_f)),
            tpm: self.base_tpm().map(|l| scaled(l, f)),
        }
    }

    pub(super) fn prune(&mut self, now: u64) {
        while let Some(e) = self.log.front() {
            if e.at.saturating_add(WINDOW_NS) <= now {
                self.log_tokens = self.log_tokens.saturating_sub(e.tokens);
                self.log_images = self.log_images.saturating_sub(u64::from(e.images));
                self.log.pop_front();
            } else {
                break;
            }
        }
        if self.held_requests.until <= now {
            self.held_requests = Held::default();
        }
        if self.held_tokens.until <= now {
            self.held_tokens = Held::default();
        }
    }

    pub(super) fn block(&self, now: u64) -> Option<(BlockReason, u64)> {
        self.blocks
            .iter()
            .filter(|(_, until)| *until > now)
            .max_by_key(|(_, until)| *until)
            .copied()
    }

    pub(super) fn used_requests(&self) -> u64 {
        (self.log.len() as u64).saturating_add(self.held_requests.amount)
    }

    pub(super) fn used_tokens(&self) -> u64 {
        self.log_tokens.saturating_add(self.held_tokens.amount)
    }

    /// Images in the window. No provider reports images in its headers, so nothing is held.
    pub(super) fn used_images(&self) -> u64 {
        self.log_images
    }

    /// Admission check at `now` (after pruning) of a request of `images` images and `tokens`
    /// tokens. `Ok` means room now.
    pub(super) fn check(&self, now: u64, images: u32, tokens: u64) -> Result<(), Denied> {
        if let Some(na) = &self.config.limits.no_access {
            return Err(Denied::NoAccess(Box::new(na.clone())));
        }
        let ceiling = self.ceiling(now);
        if let Some(max_ipm) = ceiling.ipm {
            if u64::from(images) > max_ipm {
                return Err(Denied::NeverFitsImages {
                    images,
                    effective_ipm: max_ipm,
                });
            }
        }
        if let Some(max_tpm) = ceiling.tpm {
            if tokens > max_tpm {
                return Err(Denied::NeverFits {
                    tokens,
                    effective_tpm: max_tpm,
                });
            }
        }
        if let Some((reason, until)) = self.block(now) {
            return Err(Denied::Blocked {
                reason,
                until: Duration::from_nanos(until),
                retry_in: Duration::from_nanos(until - now),
            });
        }
        let eff = self.effective(now);
        let req_full = eff
            .rpm
            .is_some_and(|r| self.used_requests().saturating_add(1) > r);
        let img_full = eff
            .ipm
            .is_some_and(|i| self.used_images().saturating_add(u64::from(images)) > i);
        let tok_full = eff
            .tpm
            .is_some_and(|t| self.used_tokens().saturating_add(tokens) > t);
        let (limit, limit_value) = match (req_full, img_full, tok_full) {
            (false, false, false) => return Ok(()),
            (true, _, _) => (LimitKind::Requests, eff.rpm.unwrap_or(0)),
            (false, true, _) => (LimitKind::Images, eff.ipm.unwrap_or(0)),
            (false, false, true) => (LimitKind::Tokens, eff.tpm.unwrap_or(0)),
        };
        let at = self.room_at(now, images, tokens, eff);
        Err(Denied::NoRoom {
            limit,
            limit_value,
            retry_in: Duration::from_nanos(at.saturating_sub(now)),
        })
    }

    /// The earliest time at which a request of `images` and `tokens` fits, at the given
    /// effective limits: walks the expiry events (log entries leave at `at + 60 s`, held
    /// capacity at its `until`). No allocation: the held events are at most two.
    pub(super) fn room_at(&self, now: u64, images: u32, tokens: u64, eff: Effective) -> u64 {
        let mut reqs = self.used_requests();
        let mut imgs = self.used_images();
        let mut toks = self.used_tokens();
        let images = u64::from(images);
        let fits = |reqs: u64, imgs: u64, toks: u64| {
            eff.rpm.is_none_or(|r| reqs < r)
                && eff.ipm.is_none_or(|i| imgs.saturating_add(images) <= i)
                && eff.tpm.is_none_or(|t| toks.saturating_add(tokens) <= t)
        };
        // Held capacity events (at most two), in time order.
        let mut held: [(u64, u64, u64); 2] = [(u64::MAX, 0, 0); 2];
        let mut n_held = 0;
        for h in [
            (self.held_requests.until, self.held_requests.amount, 0u64),
            (self.held_tokens.until, 0u64, self.held_tokens.amount),
        ] {
            if h.1 > 0 || h.2 > 0 {
                held[n_held] = h;
                n_held += 1;
            }
        }
        if n_held == 2 && held[1].0 < held[0].0 {
            held.swap(0, 1);
        }
        let mut hi = 0;
        let mut log = self.log.iter().peekable();
        loop {
            let next_log = log.peek().map(|e| e.at.saturating_add(WINDOW_NS));
            let next_held = (hi < n_held).then(|| held[hi].0);
            let take_log = match (next_log, next_held) {
                (Some(a), Some(b)) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                // Everything has expired: anything that can fit fits (checked before).
                (None, None) => return now,
            };
            let t = if take_log {
                match log.next() {
                    Some(e) => {
                        reqs = reqs.saturating_sub(1);
                        imgs = imgs.saturating_sub(u64::from(e.images));
                        toks = toks.saturating_sub(e.tokens);
                        e.at.saturating_add(WINDOW_NS)
                    }
                    None => return now,
                }
            } else {
                reqs = reqs.saturating_sub(held[hi].1);
                toks = toks.saturating_sub(held[hi].2);
                hi += 1;
                held[hi - 1].0
            };
            if fits(reqs, imgs, toks) {
                return t.max(now);
            }
        }
    }

    pub(super) fn admit(&mut self, now: u64, images: u32, tokens: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.log.push_back(Entry {
            at: now,
            tokens,
            images,
            id,
        });
        self.log_tokens = self.log_tokens.saturating_add(tokens);
        self.log_images = self.log_images.saturating_add(u64::from(images));
        id
    }

    /// Requests and tokens of the log entries admitted no later than entry `id` (all of them
    /// for `None`): what the provider can have counted when it answered that request.
    pub(super) fn ours_up_to(&self, id: Option<u64>) -> (u64, u64) {
        match id {
            None => (self.log.len() as u64, self.log_tokens),
            Some(id) => {
                let n = self.log.partition_point(|e| e.id <= id);
                let tokens = self
                    .log
                    .iter()
                    .take(n)
                    .fold(0u64, |acc, e| acc.saturating_add(e.tokens));
                (n as u64, tokens)
            }
        }
    }

    pub(super) fn find(&self, id: u64) -> Option<usize> {
        self.log.binary_search_by_key(&id, |e| e.id).ok()
    }
}
