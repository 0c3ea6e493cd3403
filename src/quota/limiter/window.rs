//! The sliding-window log behind the limiter: the entries admitted in the last 60 s, the
//! capacity held from server headers and blocks, and the arithmetic that admits a request or
//! computes its exact retry time. Kept apart from [`RateLimiter`](super::RateLimiter), which
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
    pub(super) id: u64,
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
    pub(super) next_id: u64,
    pub(super) server_rpm: Option<u64>,
    pub(super) server_tpm: Option<u64>,
    pub(super) held_requests: Held,
    pub(super) held_tokens: Held,
    pub(super) blocks: [(BlockReason, u64); 3],
    pub(super) factor_at: f64,
    pub(super) decreased_at: u64,
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

    pub(super) fn effective(&self, now: u64) -> (Option<u64>, Option<u64>) {
        let f = self.config.margin * self.factor(now);
        (
            self.base_rpm().map(|l| scaled(l, f)),
            self.base_tpm().map(|l| scaled(l, f)),
        )
    }

    pub(super) fn prune(&mut self, now: u64) {
        while let Some(e) = self.log.front() {
            if e.at.saturating_add(WINDOW_NS) <= now {
                self.log_tokens = self.log_tokens.saturating_sub(e.tokens);
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

    /// Admission check at `now` (after pruning). `Ok` means room now.
    pub(super) fn check(&self, now: u64, tokens: u64) -> Result<(), Denied> {
        if let Some(na) = &self.config.limits.no_access {
            return Err(Denied::NoAccess(Box::new(na.clone())));
        }
        if let Some(max_tpm) = self.base_tpm().map(|l| scaled(l, self.config.margin)) {
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
        let (rpm, tpm) = self.effective(now);
        let req_full = rpm.is_some_and(|r| self.used_requests().saturating_add(1) > r);
        let tok_full = tpm.is_some_and(|t| self.used_tokens().saturating_add(tokens) > t);
        if !req_full && !tok_full {
            return Ok(());
        }
        let (limit, limit_value) = if req_full {
            (LimitKind::Requests, rpm.unwrap_or(0))
        } else {
            (LimitKind::Tokens, tpm.unwrap_or(0))
        };
        let at = self.room_at(now, tokens, rpm, tpm);
        Err(Denied::NoRoom {
            limit,
            limit_value,
            retry_in: Duration::from_nanos(at.saturating_sub(now)),
        })
    }

    /// The earliest time at which `tokens` fits, at the given effective limits: walks the
    /// expiry events (log entries leave at `at + 60 s`, held capacity at its `until`).
    pub(super) fn room_at(&self, now: u64, tokens: u64, rpm: Option<u64>, tpm: Option<u64>) -> u64 {
        let mut reqs = self.used_requests();
        let mut toks = self.used_tokens();
        let fits = |reqs: u64, toks: u64| {
            rpm.is_none_or(|r| reqs < r) && tpm.is_none_or(|t| toks.saturating_add(tokens) <= t)
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
            let t = match (next_log, next_held) {
                (Some(a), Some(b)) if a < b => {
                    if let Some(e) = log.next() {
                        reqs = reqs.saturating_sub(1);
                        toks = toks.saturating_sub(e.tokens);
                    }
                    a
                }
                (_, Some(b)) => {
                    reqs = reqs.saturating_sub(held[hi].1);
                    toks = toks.saturating_sub(held[hi].2);
                    hi += 1;
                    b
                }
                (Some(a), None) => {
                    if let Some(e) = log.next() {
                        reqs = reqs.saturating_sub(1);
                        toks = toks.saturating_sub(e.tokens);
                    }
                    a
                }
                // Everything has expired: anything that can fit fits (checked before).
                (None, None) => return now,
            };
            if fits(reqs, toks) {
                return t.max(now);
            }
        }
    }

    pub(super) fn admit(&mut self, now: u64, tokens: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.log.push_back(Entry {
            at: now,
            tokens,
            id,
        });
        self.log_tokens = self.log_tokens.saturating_add(tokens);
        id
    }

    pub(super) fn find(&self, id: u64) -> Option<usize> {
        self.log.binary_search_by_key(&id, |e| e.id).ok()
    }
}
