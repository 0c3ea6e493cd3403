//! The `[router]` table and its sub-tables `[router.breaker]`, `[router.score]`,
//! `[router.health]` and router-wide budgets: the raw file schema, its parsing into
//! [`RouterSettings`], and [`RouterSettings`] applied to a [`RouterBuilder`].
//!
//! Parsing turns text into typed values (durations, counts) and reports type problems; the
//! rules on the values themselves are the settings types' own `validate()` (see
//! [`crate::router::validate`]), shared with the builder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::locate::Locator;
use crate::breaker::BreakerConfig;
use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::health::HealthConfig;
use crate::quota::budget::{Budget, BudgetPeriod};
use crate::quota::headers::parse_go_duration;
use crate::router::validate::RequestSettings;
use crate::router::{self as rt, Router, RouterBuilder};
use crate::score::ScoreWeights;
use crate::strategy::Strategy;

/// The `[router]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouterSettings {
    /// Provider ordering (`None`: the router's default, scored).
    pub strategy: Option<Strategy>,
    /// Time one attempt may take.
    #[serde(serialize_with = "ser_opt_dur")]
    pub timeout: Option<Duration>,
    /// Time a whole request may take.
    #[serde(serialize_with = "ser_opt_dur")]
    pub deadline: Option<Duration>,
    /// Most provider calls per request.
    pub max_attempts: Option<u32>,
    /// Model used when a request names none.
    pub default_model: Option<String>,
    /// Whether content-policy refusals fail over.
    pub failover_on_content_policy: Option<bool>,
    /// What a timeout after the request was sent does (`"failover"` or `"fail"`).
    pub on_timeout_after_send: Option<crate::policy::TimeoutPolicy>,
    /// Cool-down after denials.
    #[serde(serialize_with = "ser_opt_dur")]
    pub cooldown: Option<Duration>,
    /// Backoff base before retrying a transient failure.
    #[serde(serialize_with = "ser_opt_dur")]
    pub retry_backoff: Option<Duration>,
    /// Wait after a 429 without `retry-after`.
    #[serde(serialize_with = "ser_opt_dur")]
    pub rate_limit_wait: Option<Duration>,
    /// Catalog override file (resolved against the config file's directory).
    pub catalog: Option<PathBuf>,
    /// Longest a request waits for rate-limit room.
    #[serde(serialize_with = "ser_opt_dur")]
    pub max_wait: Option<Duration>,
    /// Router-wide spend budgets.
    pub budgets: Vec<Budget>,
    /// Price per image assumed for models without a catalog price.
    pub fallback_usd_per_image: Option<f64>,
    /// Circuit-breaker settings (`[router.breaker]`), when given.
    #[serde(skip)]
    pub breaker: Option<BreakerConfig>,
    /// Probe with a call that generates no image after a breaker's cool-down
    /// (`[router.breaker] cheap_probe`), when given.
    pub cheap_probe: Option<bool>,
    /// Run the capability check once at start (`check_on_start`), when given.
    pub check_on_start: Option<bool>,
    /// Time the capability check may take (`check_timeout`), when given.
    #[serde(serialize_with = "ser_opt_dur")]
    pub check_timeout: Option<Duration>,
    /// The default scorer's weights (`[router.score]`), when given.
    pub score: Option<ScoreWeights>,
    /// Health measurement settings (`[router.health]`), when given.
    #[serde(skip)]
    pub health: Option<HealthConfig>,
    /// Preview mode (`preview`), when given; the environment variable `IMAGE_ROUTER_PREVIEW`
    /// overrides it (see [`crate::PREVIEW_ENV`]).
    pub preview: Option<bool>,
    /// Preview on the catalog's cheaper model of the same family (`preview_model`), when given.
    pub preview_model: Option<bool>,
    /// Models routed in order when no provider can serve a request's model
    /// (`fallback_models`); empty: off.
    pub fallback_models: Vec<String>,
}

pub(super) fn ser_opt_dur<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::quota::headers::format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

pub(super) type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouter {
    strategy: S<String>,
    timeout: S<String>,
    deadline: S<String>,
    max_attempts: S<i64>,
    pub(super) default_model: S<String>,
    failover_on_content_policy: S<bool>,
    on_timeout_after_send: S<String>,
    cooldown: S<String>,
    retry_backoff: S<String>,
    rate_limit_wait: S<String>,
    pub(super) catalog: S<String>,
    max_wait: S<String>,
    budgets: S<Vec<RawBudget>>,
    fallback_usd_per_image: S<f64>,
    check_on_start: S<bool>,
    check_timeout: S<String>,
    preview: S<bool>,
    preview_model: S<bool>,
    fallback_models: S<Vec<String>>,
    breaker: Option<RawBreaker>,
    score: Option<RawScore>,
    health: Option<RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    availability: S<f64>,
    latency: S<f64>,
    headroom: S<f64>,
    budget: S<f64>,
    priority: S<f64>,
    latency_slack: S<String>,
    headroom_knee: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    window: S<String>,
    buckets: S<i64>,
    min_samples: S<i64>,
    latency_decay: S<String>,
    idle_decay: S<String>,
    default_latency: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    consecutive_failures: S<i64>,
    failure_ratio: S<f64>,
    window: S<String>,
    min_samples: S<i64>,
    cool_down: S<String>,
    max_cool_down: S<String>,
    long_cool_down: S<String>,
    cool_down_multiplier: S<f64>,
    ramp: S<String>,
    ramp_start: S<f64>,
    cheap_probe: S<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    usd: f64,
    per: String,
}

/// Lines of the keys of one table, to place a `validate()` error.
#[derive(Default)]
pub(super) struct KeyLines(HashMap<&'static str, usize>);

impl KeyLines {
    fn note<T>(&mut self, cx: &Locator<'_>, key: &'static str, v: &S<T>) {
        if let Some(v) = v {
            self.0.insert(key, cx.line_of(v));
        }
    }

    /// `e` (whose field is a key of this table) scoped with `table` and placed at the key's
    /// line, when the file has the key.
    fn place(&self, e: ConfigError, table: &str) -> ConfigError {
        let line = self.0.get(e.field.as_str()).copied();
        let mut e = e.scoped(table);
        e.line = e.line.or(line);
        e
    }
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "ordered" => Ok(Strategy::Ordered),
        "scored" => Ok(Strategy::Scored),
        "weighted" => Ok(Strategy::Weighted),
        other => Err(format!(
            "unknown strategy {other:?}; expected \"ordered\", \"scored\" or \"weighted\""
        )),
    }
}

/// A duration value; `zero_ok` says whether `"0s"` is allowed.
pub(super) fn duration(
    cx: &Locator<'_>,
    field: &str,
    v: &S<String>,
    zero_ok: bool,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    match parse_go_duration(v.get_ref()) {
        Some(d) if zero_ok || !d.is_zero() => Ok(Some(d)),
        Some(_) => Err(cx.err(field.to_string(), v, "must be above zero")),
        None => Err(cx.err(
            field.to_string(),
            v,
            format!(
                "{:?} is not a duration; write e.g. \"30s\", \"2m\", \"1500ms\" or \"1m30s\"",
                v.get_ref()
            ),
        )),
    }
}

/// A count that must fit a `u32` and lie in `lo..=hi`.
pub(super) fn count(
    cx: &Locator<'_>,
    field: String,
    v: &S<i64>,
    lo: i64,
    hi: i64,
) -> Result<Option<u32>, ConfigError> {
    match v {
        Some(n) => {
            let x = *n.get_ref();
            let hi = hi.min(i64::from(u32::MAX));
            match u32::try_from(x) {
                Ok(c) if (lo..=hi).contains(&x) => Ok(Some(c)),
                _ => Err(cx.err(field, n, format!("must be from {lo} to {hi}, got {x}"))),
            }
        }
        None => Ok(None),
    }
}

/// A list of `{ usd, per }` budgets.
pub(super) fn budgets(
    cx: &Locator<'_>,
    field: &str,
    v: &S<Vec<RawBudget>>,
) -> Result<Vec<Budget>, ConfigError> {
    let Some(list) = v else { return Ok(Vec::new()) };
    list.get_ref()
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let period = match b.per.as_str() {
                "day" => BudgetPeriod::Day,
                "month" => BudgetPeriod::Month,
                other => match parse_go_duration(other) {
                    Some(d) => BudgetPeriod::Custom(d),
                    None => {
                        return Err(cx.err(
                            format!("{field}[{i}].per"),
                            list,
                            format!("{other:?} is not a period; write \"day\", \"month\" or a duration like \"6h\""),
                        ))
                    }
                },
            };
            Budget::new(b.usd, period).map_err(|e| {
                let key = if e.field == "limit_usd" { "usd" } else { "per" };
                cx.err(format!("{field}[{i}].{key}"), list, e.message)
            })
        })
        .collect()
}

/// A string that must not be blank, trimmed.
pub(super) fn non_empty(
    cx: &Locator<'_>,
    field: String,
    v: &S<String>,
) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.get_ref().trim().is_empty() => Err(cx.err(field, s, "must not be empty")),
        Some(s) => Ok(Some(s.get_ref().trim().to_string())),
        None => Ok(None),
    }
}

fn parse_breaker(cx: &Locator<'_>, b: &RawBreaker) -> Result<BreakerConfig, ConfigError> {
    let t = "router.breaker";
    let f = |k: &str| format!("{t}.{k}");
    let mut c = BreakerConfig::default();
    let mut lines = KeyLines::default();
    lines.note(cx, "failure_ratio", &b.failure_ratio);
    lines.note(cx, "cool_down_multiplier", &b.cool_down_multiplier);
    lines.note(cx, "ramp_start", &b.ramp_start);
    let max = i64::from(u32::MAX);
    if let Some(n) = count(
        cx,
        f("consecutive_failures"),
        &b.consecutive_failures,
        0,
        max,
    )? {
        c.consecutive_failures = n;
    }
    if let Some(n) = count(cx, f("min_samples"), &b.min_samples, 0, max)? {
        c.min_samples = n;
    }
    for (k, v, slot) in [
        ("window", &b.window, &mut c.window),
        ("cool_down", &b.cool_down, &mut c.cool_down),
        ("max_cool_down", &b.max_cool_down, &mut c.max_cool_down),
        ("long_cool_down", &b.long_cool_down, &mut c.long_cool_down),
        // Zero is allowed for the ramp: the breaker closes straight after a good probe.
        ("ramp", &b.ramp, &mut c.ramp),
    ] {
        if let Some(d) = duration(cx, &f(k), v, k == "ramp")? {
            *slot = d;
        }
    }
    if let Some(v) = &b.failure_ratio {
        c.failure_ratio = *v.get_ref();
    }
    if let Some(v) = &b.cool_down_multiplier {
        c.cool_down_multiplier = *v.get_ref();
    }
    if let Some(v) = &b.ramp_start {
        c.ramp_start = *v.get_ref();
    }
    c.validate().map_err(|e| lines.place(e, t))?;
    Ok(c)
}

fn parse_score(cx: &Locator<'_>, sc: &RawScore) -> Result<ScoreWeights, ConfigError> {
    let t = "router.score";
    let mut w = ScoreWeights::DEFAULT;
    let mut lines = KeyLines::default();
    for (k, v, slot) in [
        ("availability", &sc.availability, &mut w.availability),
        ("latency", &sc.latency, &mut w.latency),
        ("headroom", &sc.headroom, &mut w.headroom),
        ("budget", &sc.budget, &mut w.budget),
        ("priority", &sc.priority, &mut w.priority),
        ("headroom_knee", &sc.headroom_knee, &mut w.headroom_knee),
    ] {
        lines.note(cx, k, v);
        if let Some(x) = v {
            *slot = *x.get_ref();
        }
    }
    if let Some(d) = duration(cx, &format!("{t}.latency_slack"), &sc.latency_slack, true)? {
        w.latency_slack_ms = d.as_secs_f64() * 1000.0;
    }
    w.validate().map_err(|e| lines.place(e, t))?;
    Ok(w)
}

fn parse_health(cx: &Locator<'_>, h: &RawHealth) -> Result<HealthConfig, ConfigError> {
    let t = "router.health";
    let f = |k: &str| format!("{t}.{k}");
    let mut c = HealthConfig::default();
    let mut lines = KeyLines::default();
    lines.note(cx, "buckets", &h.buckets);
    if let Some(n) = count(cx, f("buckets"), &h.buckets, 0, i64::from(u32::MAX))? {
        c.buckets = n;
    }
    if let Some(n) = count(cx, f("min_samples"), &h.min_samples, 0, i64::from(u32::MAX))? {
        c.min_samples = n;
    }
    if let Some(d) = duration(cx, &f("window"), &h.window, false)? {
        c.window = d;
    }
    if let Some(d) = duration(cx, &f("latency_decay"), &h.latency_decay, false)? {
        c.latency_decay = d;
    }
    if let Some(v) = &h.idle_decay {
        c.idle_decay = if v.get_ref() == "off" {
            None
        } else {
            duration(cx, &f("idle_decay"), &h.idle_decay, false)?
        };
    }
    // Zero is the documented optimistic default.
    if let Some(d) = duration(cx, &f("default_latency"), &h.default_latency, true)? {
        c.default_latency = d;
    }
    c.validate().map_err(|e| lines.place(e, t))?;
    Ok(c)
}

/// The `[router]` table, parsed and checked.
pub(super) fn parse(cx: &Locator<'_>, r: &RawRouter) -> Result<RouterSettings, ConfigError> {
    let mut s = RouterSettings::default();
    if let Some(v) = &r.strategy {
        s.strategy =
            Some(parse_strategy(v.get_ref()).map_err(|m| cx.err("router.strategy".into(), v, m))?);
    }
    s.timeout = duration(cx, "router.timeout", &r.timeout, false)?;
    s.deadline = duration(cx, "router.deadline", &r.deadline, false)?;
    s.cooldown = duration(cx, "router.cooldown", &r.cooldown, false)?;
    s.retry_backoff = duration(cx, "router.retry_backoff", &r.retry_backoff, false)?;
    s.rate_limit_wait = duration(cx, "router.rate_limit_wait", &r.rate_limit_wait, false)?;
    // Zero is documented: never wait for rate-limit room.
    s.max_wait = duration(cx, "router.max_wait", &r.max_wait, true)?;
    s.budgets = budgets(cx, "router.budgets", &r.budgets)?;
    let most = i64::from(crate::router::validate::MAX_ATTEMPTS);
    s.max_attempts = count(cx, "router.max_attempts".into(), &r.max_attempts, 1, most)?;
    s.fallback_usd_per_image = r.fallback_usd_per_image.as_ref().map(|v| *v.get_ref());
    s.default_model = r
        .default_model
        .as_ref()
        .map(|v| v.get_ref().trim().to_string());
    s.failover_on_content_policy = r.failover_on_content_policy.as_ref().map(|b| *b.get_ref());
    if let Some(v) = &r.on_timeout_after_send {
        s.on_timeout_after_send = Some(match v.get_ref().as_str() {
            "failover" => crate::policy::TimeoutPolicy::Failover,
            "fail" => crate::policy::TimeoutPolicy::Fail,
            other => {
                return Err(cx.err(
                    "router.on_timeout_after_send".into(),
                    v,
                    format!("unknown policy {other:?}; expected \"failover\" or \"fail\""),
                ))
            }
        });
    }
    s.catalog = non_empty(cx, "router.catalog".into(), &r.catalog)?.map(PathBuf::from);
    s.check_on_start = r.check_on_start.as_ref().map(|b| *b.get_ref());
    s.check_timeout = duration(cx, "router.check_timeout", &r.check_timeout, false)?;
    s.preview = r.preview.as_ref().map(|b| *b.get_ref());
    s.preview_model = r.preview_model.as_ref().map(|b| *b.get_ref());
    if let Some(list) = &r.fallback_models {
        for (i, m) in list.get_ref().iter().enumerate() {
            if m.trim().is_empty() {
                return Err(cx.err(
                    format!("router.fallback_models[{i}]"),
                    list,
                    "must not be empty",
                ));
            }
            s.fallback_models.push(m.trim().to_string());
        }
    }
    if let Some(b) = &r.breaker {
        s.breaker = Some(parse_breaker(cx, b)?);
        s.cheap_probe = b.cheap_probe.as_ref().map(|v| *v.get_ref());
    }
    if let Some(sc) = &r.score {
        s.score = Some(parse_score(cx, sc)?);
    }
    if let Some(h) = &r.health {
        s.health = Some(parse_health(cx, h)?);
    }
    check_request_settings(cx, r, &s)?;
    Ok(s)
}

/// The request-level rules shared with the builder, plus the one only a file can state:
/// a `timeout` given explicitly longer than an explicit `deadline`. (The builder cannot tell
/// a default attempt timeout from one set on purpose, and a short deadline with the default
/// timeout is a documented use: the attempt is cut at the deadline.)
fn check_request_settings(
    cx: &Locator<'_>,
    r: &RawRouter,
    s: &RouterSettings,
) -> Result<(), ConfigError> {
    let mut lines = KeyLines::default();
    lines.note(cx, "timeout", &r.timeout);
    lines.note(cx, "max_attempts", &r.max_attempts);
    lines.note(cx, "default_model", &r.default_model);
    lines.note(cx, "fallback_usd_per_image", &r.fallback_usd_per_image);
    s.request_settings().validate().map_err(|mut e| {
        e.field = RequestSettings::file_key(&e.field).to_string();
        lines.place(e, "router")
    })?;
    if let (Some(t), Some(d), Some(ts)) = (s.timeout, s.deadline, &r.timeout) {
        if t > d {
            return Err(cx.err(
                "router.timeout".into(),
                ts,
                "is longer than `deadline`: an attempt could never use it all",
            ));
        }
    }
    Ok(())
}

impl RouterSettings {
    /// These settings with the builder's defaults for what the file leaves out.
    fn request_settings(&self) -> RequestSettings<'_> {
        RequestSettings {
            attempt_timeout: self.timeout.unwrap_or(rt::DEFAULT_ATTEMPT_TIMEOUT),
            deadline: self.deadline.unwrap_or(rt::DEFAULT_DEADLINE),
            max_attempts: self.max_attempts.unwrap_or(rt::DEFAULT_MAX_ATTEMPTS),
            cooldown: self.cooldown.unwrap_or(rt::DEFAULT_COOLDOWN),
            retry_backoff: self.retry_backoff.unwrap_or(rt::DEFAULT_RETRY_BACKOFF),
            rate_limit_wait: self.rate_limit_wait.unwrap_or(rt::DEFAULT_RATE_LIMIT_WAIT),
            default_model: self.default_model.as_deref(),
            fallback_usd_per_image: self.fallback_usd_per_image,
        }
    }

    /// A [`RouterBuilder`] with these settings and `catalog`, and no providers yet.
    pub(super) fn builder(&self, catalog: Arc<Catalog>) -> RouterBuilder {
        let mut b = Router::builder().catalog(catalog);
        if let Some(d) = self.timeout {
            b = b.attempt_timeout(d);
        }
        if let Some(d) = self.deadline {
            b = b.deadline(d);
        }
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(m) = &self.default_model {
            b = b.default_model(m.clone());
        }
        if let Some(yes) = self.failover_on_content_policy {
            b = b.failover_on_content_policy(yes);
        }
        if let Some(p) = self.on_timeout_after_send {
            b = b.on_timeout_after_send(p);
        }
        if let Some(d) = self.cooldown {
            b = b.cooldown(d);
        }
        if let Some(d) = self.retry_backoff {
            b = b.retry_backoff(d);
        }
        if let Some(d) = self.rate_limit_wait {
            b = b.rate_limit_wait(d);
        }
        if let Some(d) = self.max_wait {
            b = b.max_wait(d);
        }
        self.apply_tables(b)
    }

    /// Budgets, fallback price and the sub-tables.
    fn apply_tables(&self, mut b: RouterBuilder) -> RouterBuilder {
        for budget in &self.budgets {
            b = b.budget(*budget);
        }
        if let Some(usd) = self.fallback_usd_per_image {
            b = b.fallback_usd_per_image(usd);
        }
        if let Some(c) = &self.breaker {
            b = b.breaker(c.clone());
        }
        if let Some(yes) = self.cheap_probe {
            b = b.cheap_probe(yes);
        }
        if let Some(yes) = self.check_on_start {
            b = b.check_on_start(yes);
        }
        if let Some(d) = self.check_timeout {
            b = b.check_timeout(d);
        }
        if let Some(w) = self.score {
            b = b.scorer(Arc::new(crate::score::DefaultScorer::new(w)));
        }
        if let Some(h) = &self.health {
            b = b.health(h.clone());
        }
        if let Some(st) = self.strategy {
            b = b.strategy(st);
        }
        if self.preview.is_some() || self.preview_model.is_some() {
            b = b.preview(self.preview_config(None));
        }
        if !self.fallback_models.is_empty() {
            b = b.fallback_models(self.fallback_models.clone());
        }
        b
    }

    /// Preview mode from these settings, with `env` (a value of `IMAGE_ROUTER_PREVIEW`, already
    /// parsed) over the file's `preview`. `preview_model` only has an effect with preview on.
    pub fn preview_config(&self, env: Option<bool>) -> crate::PreviewConfig {
        crate::PreviewConfig::from(env.or(self.preview).unwrap_or(false))
            .cheaper_model(self.preview_model.unwrap_or(false))
    }
}
