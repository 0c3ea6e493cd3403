//! What a forecast says: time to drain, each provider's share and cost, what binds first, what
//! cannot be served, and cheaper alternatives — as data (serializable, for `--json`) and as
//! plain words ([`Display`](std::fmt::Display), for the terminal).

use std::fmt;

use serde::Serialize;

use crate::request::Quality;

/// One limit dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Dimension {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Images per minute (a request weighs its `n`).
    Images,
}

impl Dimension {
    /// "requests per minute", …
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Requests => "requests per minute",
            Dimension::Tokens => "tokens per minute",
            Dimension::Images => "images per minute",
        }
    }
    pub(crate) const ALL: [Dimension; 3] =
        [Dimension::Requests, Dimension::Tokens, Dimension::Images];
    pub(crate) fn index(self) -> usize {
        match self {
            Dimension::Requests => 0,
            Dimension::Tokens => 1,
            Dimension::Images => 2,
        }
    }
}

/// A forecast of a workload on a router (see [`Router::forecast`](crate::Router::forecast)).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Forecast {
    /// Requests in the workload.
    pub requests: u64,
    /// Images in the workload.
    pub images: u64,
    /// Requests the providers would serve.
    pub served_requests: u64,
    /// Images the providers would serve.
    pub served_images: u64,
    /// Seconds from now until the last served request is admitted (`None`: nothing is
    /// served). Generation latency of that last request is not included.
    pub drain_secs: Option<f64>,
    /// Expected cost of the served requests, USD (requests of unknown price count 0).
    pub cost_usd: f64,
    /// Served requests whose price the catalog does not know.
    pub unknown_price_requests: u64,
    /// Each provider's share, in the configured order.
    pub providers: Vec<ProviderShare>,
    /// Limits and budgets that bind, in the order they start to bind (the first binds first).
    pub constraints: Vec<Constraint>,
    /// Requests that would not be served, grouped by model and reason.
    pub unserved: Vec<Unserved>,
    /// The same workload at lower qualities (the faithful alternatives: same model, size, `n`
    /// and prompts), most faithful first; the last is the cheapest.
    pub alternatives: Vec<Alternative>,
}

impl Forecast {
    /// The limit or budget that binds first, if any does.
    pub fn binding(&self) -> Option<&Constraint> {
        self.constraints.first()
    }

    /// The cheapest faithful alternative, if a lower quality costs less.
    pub fn cheapest_alternative(&self) -> Option<&Alternative> {
        self.alternatives
            .iter()
            .min_by(|a, b| a.cost_usd.total_cmp(&b.cost_usd))
    }

    /// Whether every request of the workload would be served.
    pub fn serves_everything(&self) -> bool {
        self.served_requests == self.requests
    }
}

/// One provider's part of a forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProviderShare {
    /// The provider.
    pub name: String,
    /// Requests it would serve.
    pub requests: u64,
    /// Images it would serve.
    pub images: u64,
    /// Its share of the served images, 0..=1.
    pub share: f64,
    /// Expected cost of its requests, USD.
    pub cost_usd: f64,
    /// The effective limits it would be held to, per model of the workload it serves.
    pub limits: Vec<LaneLimits>,
    /// Why it takes none of some requests (capability, model, tier, unavailable now).
    pub not_serving: Vec<String>,
}

/// The effective per-minute limits of one provider for one model (after the safety margin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LaneLimits {
    /// The model.
    pub model: String,
    /// Requests per minute (`None`: unlimited).
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Images per minute.
    pub ipm: Option<u64>,
}

/// A limit or budget that binds during the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Constraint {
    /// A budget cannot pay the next request.
    Budget {
        /// The ledger: a provider's name, or `router`.
        ledger: String,
        /// The budget ("$20.00/day").
        budget: String,
        /// Images its budget pays for in the whole run (what the budget buys).
        after_images: u64,
        /// Seconds from now when it first cannot pay a request.
        at_secs: f64,
        /// Seconds until its period resets (from now).
        resets_in_secs: u64,
        /// Providers that take requests after it binds.
        then: Vec<String>,
    },
    /// A rate limit has no room: requests go to another provider, or wait.
    RateLimit {
        /// The provider.
        provider: String,
        /// The model.
        model: String,
        /// Its tier, if configured.
        tier: Option<String>,
        /// The dimension that is full.
        dimension: Dimension,
        /// Its effective limit per minute.
        limit: u64,
        /// Seconds from now when it is first full.
        at_secs: f64,
        /// Seconds the whole workload waits on it (0: other providers took the overflow).
        waited_secs: f64,
    },
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Budget {
                ledger,
                budget,
                after_images,
                at_secs,
                resets_in_secs,
                then,
            } => {
                let whose = if ledger == "router" {
                    "the router's".to_string()
                } else {
                    format!("`{ledger}`'s")
                };
                write!(
                    f,
                    "{whose} budget of {budget} is exhausted after ~{after_images} image(s), at {} (it resets in {})",
                    duration(*at_secs),
                    duration(*resets_in_secs as f64)
                )?;
                match then.as_slice() {
                    [] => write!(f, "; nothing takes the rest"),
                    names => write!(
                        f,
                        "; then {} {} the rest",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if names.len() == 1 { "takes" } else { "take" }
                    ),
                }
            }
            Constraint::RateLimit {
                provider,
                model,
                tier,
                dimension,
                limit,
                at_secs,
                waited_secs,
            } => {
                write!(
                    f,
                    "{} of {model} on `{provider}`{} ({limit} per minute) is full at {}",
                    dimension.as_str(),
                    tier.as_ref()
                        .map(|t| format!(" at {t}"))
                        .unwrap_or_default(),
                    duration(*at_secs)
                )?;
                if *waited_secs > 0.0 {
                    write!(f, "; the run waits {} on it", duration(*waited_secs))
                } else {
                    write!(f, "; other providers take the overflow")
                }
            }
        }
    }
}

/// Requests no provider would serve.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Unserved {
    /// Requests.
    pub requests: u64,
    /// Images.
    pub images: u64,
    /// Their model.
    pub model: String,
    /// Why, in plain words (each provider's reason, or the budget that cannot pay).
    pub reason: String,
}

/// The workload at a lower quality.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Alternative {
    /// What changes, in words.
    pub change: String,
    /// The quality requests above it are lowered to.
    pub quality: Quality,
    /// Requests whose quality changes.
    pub changed_requests: u64,
    /// Expected cost, USD.
    pub cost_usd: f64,
    /// Time to drain, seconds (`None`: nothing served).
    pub drain_secs: Option<f64>,
    /// Requests served.
    pub served_requests: u64,
}

/// `1h 2m 3s` / `4m 5s` / `6.2s`.
pub(crate) fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

impl fmt::Display for Forecast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Forecast: {} request(s), {} image(s)",
            self.requests, self.images
        )?;
        match self.drain_secs {
            Some(d) => writeln!(
                f,
                "  time to drain: {} (until the last request is sent; add one generation for its image)",
                duration(d)
            )?,
            None => writeln!(f, "  time to drain: nothing can be served")?,
        }
        write!(f, "  expected cost: ${:.4}", self.cost_usd)?;
        if self.unknown_price_requests > 0 {
            write!(
                f,
                " (+ {} request(s) of unknown price)",
                self.unknown_price_requests
            )?;
        }
        writeln!(f)?;
        writeln!(f, "  provider shares:")?;
        for p in &self.providers {
            writeln!(
                f,
                "    {:<16} {:>7} req {:>7} img {:>5.1} %  ${:.4}",
                p.name,
                p.requests,
                p.images,
                p.share * 100.0,
                p.cost_usd
            )?;
            for r in &p.not_serving {
                writeln!(f, "      takes none of: {r}")?;
            }
        }
        if let Some((first, rest)) = self.constraints.split_first() {
            writeln!(f, "  binds first: {first}")?;
            for c in rest {
                writeln!(f, "  then: {c}")?;
            }
        } else {
            writeln!(f, "  binds first: nothing (no limit or budget is reached)")?;
        }
        for u in &self.unserved {
            writeln!(
                f,
                "  not served: {} request(s) ({} image(s)) of {}: {}",
                u.requests, u.images, u.model, u.reason
            )?;
        }
        for a in &self.alternatives {
            let time = a.drain_secs.map(duration).unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  cheaper: {}: ${:.4} (saves ${:.4}), drains in {}",
                a.change,
                a.cost_usd,
                (self.cost_usd - a.cost_usd).max(0.0),
                time
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_plainly() {
        assert_eq!(duration(6.25), "6.2s");
        assert_eq!(duration(540.0), "9m 0s");
        assert_eq!(duration(3723.4), "1h 2m 3s");
        assert_eq!(duration(f64::NAN), "?");
    }

    #[test]
    fn constraints_say_who_takes_the_rest() {
        let c = Constraint::Budget {
            ledger: "primary".into(),
            budget: "$20.00/day".into(),
            after_images: 120,
            at_secs: 300.0,
            resets_in_secs: 3600,
            then: vec!["backup".into()],
        };
        let s = c.to_string();
        assert!(
            s.contains("`primary`'s budget of $20.00/day is exhausted after ~120 image(s)")
                && s.contains("then `backup` takes the rest"),
            "{s}"
        );
        let r = Constraint::RateLimit {
            provider: "openai".into(),
            model: "gpt-image-1".into(),
            tier: Some("tier-1".into()),
            dimension: Dimension::Images,
            limit: 5,
            at_secs: 0.0,
            waited_secs: 120.0,
        };
        let s = r.to_string();
        assert!(
            s.starts_with("images per minute of gpt-image-1 on `openai` at tier-1 (5 per minute)")
                && s.contains("waits 2m 0s"),
            "{s}"
        );
    }
}
