//! Parsing one raw `[[provider]]` table into a checked [`ProviderConfig`]: the kind, the
//! keys each kind needs or refuses, the numbers' types and the key lines errors point at.
//! Apart from the schema and from building because it is where a file's mistakes are found.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::raw::RawProvider;
use super::ProviderConfig;
use crate::config::env::{env_name, env_names};
use crate::config::locate::Locator;
use crate::config::router::{budgets, non_empty, S};
use crate::config_error::ConfigError;
use crate::provider::ProviderKind;
use crate::providers::CompatibleMode;

/// Parsing one table: the text index, the provider's position and its key lines.
pub(super) struct Table<'a, 'b> {
    cx: &'a Locator<'b>,
    i: usize,
    header: usize,
    key_lines: HashMap<&'static str, usize>,
}

impl Table<'_, '_> {
    fn f(&self, k: &str) -> String {
        format!("provider[{}].{k}", self.i)
    }
    fn at(&self, k: &str) -> usize {
        self.key_lines.get(k).copied().unwrap_or(self.header)
    }
    fn missing(&self, k: &str, why: &str) -> ConfigError {
        ConfigError::new(self.f(k), format!("missing: {why}")).at_line(self.header)
    }
    fn non_empty(&self, k: &str, v: &S<String>) -> Result<Option<String>, ConfigError> {
        non_empty(self.cx, self.f(k), v)
    }
    fn url(&self, k: &str, v: &S<String>) -> Result<Option<String>, ConfigError> {
        let Some(s) = v else { return Ok(None) };
        let text = s.get_ref().trim();
        match url::Url::parse(text) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                Ok(Some(text.trim_end_matches('/').to_string()))
            }
            Ok(u) => Err(self.cx.err(
                self.f(k),
                s,
                format!("scheme {:?} not supported; use http or https", u.scheme()),
            )),
            Err(e) => Err(self.cx.err(
                self.f(k),
                s,
                format!("{:?} is not a URL: {e}", crate::redact::url(text)),
            )),
        }
    }
    fn only_for(&self, k: &str, present: bool, kinds: &str, kind: &str) -> Result<(), ConfigError> {
        if present {
            Err(ConfigError::new(
                self.f(k),
                format!("`{k}` applies to {kinds} providers only, not to kind {kind:?}"),
            )
            .at_line(self.at(k)))
        } else {
            Ok(())
        }
    }
    fn map(
        &self,
        k: &str,
        m: &S<BTreeMap<String, String>>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(m) = m else {
            return Ok(BTreeMap::new());
        };
        if m.get_ref()
            .iter()
            .any(|(a, b)| a.trim().is_empty() || b.trim().is_empty())
        {
            return Err(self.cx.err(
                self.f(k),
                m,
                "model names and their mapped names must not be empty",
            ));
        }
        Ok(m.get_ref().clone())
    }
    fn list(&self, k: &str, v: &S<Vec<String>>, what: &str) -> Result<Vec<String>, ConfigError> {
        match v {
            Some(l) if l.get_ref().iter().any(|c| c.trim().is_empty()) => {
                Err(self
                    .cx
                    .err(self.f(k), l, format!("{what} names must not be empty")))
            }
            Some(l) => Ok(l.get_ref().clone()),
            None => Ok(Vec::new()),
        }
    }
}

pub(super) fn record_lines(cx: &Locator<'_>, p: &RawProvider) -> HashMap<&'static str, usize> {
    let mut m = HashMap::new();
    macro_rules! record {
        ($($k:ident),*) => { $( if let Some(v) = &p.$k { m.insert(stringify!($k), cx.line_of(v)); } )* };
    }
    record!(
        name,
        kind,
        base_url,
        endpoint,
        deployment,
        deployments,
        default_deployment,
        api_version,
        v1_surface,
        api_key_env,
        bearer_token_env,
        tier,
        rpm,
        tpm,
        ipm,
        safety_margin,
        shared,
        weight,
        budgets,
        reserved_for,
        preferred_by,
        organization,
        project,
        models,
        allow_unknown_models,
        mode,
        streaming,
        rename,
        max_response_bytes,
        max_retry_hint,
        allow_download_hosts,
        account
    );
    m
}

pub(super) fn parse_kind(t: &Table<'_, '_>, p: &RawProvider) -> Result<ProviderKind, ConfigError> {
    let k = p.kind.as_ref().ok_or_else(|| {
        t.missing(
            "kind",
            "`kind` must be \"openai\", \"azure\" or \"compatible\"",
        )
    })?;
    match k.get_ref().as_str() {
        "openai" => Ok(ProviderKind::OpenAi),
        "azure" => Ok(ProviderKind::Azure),
        "compatible" => Ok(ProviderKind::Compatible),
        other => Err(t.cx.err(
            t.f("kind"),
            k,
            format!("unknown kind {other:?}; expected \"openai\", \"azure\" or \"compatible\""),
        )),
    }
}

/// Refuses keys that belong to another kind of provider.
pub(super) fn check_kind_keys(
    t: &Table<'_, '_>,
    p: &RawProvider,
    kind: ProviderKind,
) -> Result<(), ConfigError> {
    let name = kind.as_str();
    if kind != ProviderKind::Azure {
        for (k, present) in [
            ("endpoint", p.endpoint.is_some()),
            ("deployment", p.deployment.is_some()),
            ("deployments", p.deployments.is_some()),
            ("default_deployment", p.default_deployment.is_some()),
            ("api_version", p.api_version.is_some()),
            ("v1_surface", p.v1_surface.is_some()),
            ("bearer_token_env", p.bearer_token_env.is_some()),
        ] {
            t.only_for(k, present, "azure", name)?;
        }
    } else {
        t.only_for(
            "base_url",
            p.base_url.is_some(),
            "openai and compatible",
            name,
        )?;
    }
    if kind != ProviderKind::OpenAi {
        t.only_for("organization", p.organization.is_some(), "openai", name)?;
        t.only_for("project", p.project.is_some(), "openai", name)?;
    }
    if kind != ProviderKind::Compatible {
        t.only_for("mode", p.mode.is_some(), "compatible", name)?;
        t.only_for("streaming", p.streaming.is_some(), "compatible", name)?;
        t.only_for("rename", p.rename.is_some(), "compatible", name)?;
    }
    Ok(())
}

/// The keys each kind cannot do without.
pub(super) fn check_required(
    t: &Table<'_, '_>,
    p: &RawProvider,
    kind: ProviderKind,
    c: &ProviderConfig,
) -> Result<(), ConfigError> {
    match kind {
        ProviderKind::OpenAi if c.api_key_env.is_none() => Err(t.missing(
            "api_key_env",
            "an openai provider needs `api_key_env`, the name of the variable holding its key",
        )),
        ProviderKind::Azure if c.endpoint.is_none() => Err(t.missing(
            "endpoint",
            "an azure provider needs `endpoint` (https://RESOURCE.openai.azure.com)",
        )),
        ProviderKind::Azure if c.api_key_env.is_none() && c.bearer_token_env.is_none() => Err(t.missing(
            "api_key_env",
            "an azure provider needs `api_key_env` (or `bearer_token_env` for an Entra ID token)",
        )),
        ProviderKind::Azure if c.api_key_env.is_some() && c.bearer_token_env.is_some() => {
            Err(ConfigError::new(
                t.f("bearer_token_env"),
                "give either `api_key_env` or `bearer_token_env`, not both",
            )
            .at_line(t.at("bearer_token_env")))
        }
        ProviderKind::Azure
            if p.deployment.is_none() && p.deployments.is_none() && p.default_deployment.is_none() =>
        {
            Err(t.missing(
                "deployment",
                "an azure provider needs `deployment` (or a `deployments` table model → deployment name)",
            ))
        }
        ProviderKind::Compatible if c.base_url.is_none() => Err(t.missing(
            "base_url",
            "a compatible provider needs `base_url` (e.g. https://proxy.example/v1)",
        )),
        _ => Ok(()),
    }
}

/// `rpm`, `tpm`, `ipm`, `safety_margin`, `weight`: types here, rules in
/// `ProviderOptions::validate`.
pub(super) fn parse_numbers(
    t: &Table<'_, '_>,
    p: &RawProvider,
    c: &mut ProviderConfig,
) -> Result<(), ConfigError> {
    if let Some(v) = &p.rpm {
        c.rpm = Some(u32::try_from(*v.get_ref()).map_err(|_| {
            t.cx.err(
                t.f("rpm"),
                v,
                format!(
                    "must be a positive number of requests per minute, got {}",
                    v.get_ref()
                ),
            )
        })?);
    }
    if let Some(v) = &p.tpm {
        c.tpm = Some(u64::try_from(*v.get_ref()).map_err(|_| {
            t.cx.err(
                t.f("tpm"),
                v,
                format!(
                    "must be a positive number of tokens per minute, got {}",
                    v.get_ref()
                ),
            )
        })?);
    }
    if let Some(v) = &p.ipm {
        c.ipm = Some(u32::try_from(*v.get_ref()).map_err(|_| {
            t.cx.err(
                t.f("ipm"),
                v,
                format!(
                    "must be a positive number of images per minute, got {}",
                    v.get_ref()
                ),
            )
        })?);
    }
    if let Some(v) = &p.max_response_bytes {
        c.max_response_bytes = Some(
            u64::try_from(*v.get_ref())
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| {
                    t.cx.err(
                        t.f("max_response_bytes"),
                        v,
                        format!("must be a positive number of bytes, got {}", v.get_ref()),
                    )
                })?,
        );
    }
    c.safety_margin = p.safety_margin.as_ref().map(|v| *v.get_ref());
    c.weight = p.weight.as_ref().map(|v| *v.get_ref());
    c.options().validate().map_err(|e| {
        let line = t.at(&e.field);
        e.scoped(&format!("provider[{}]", t.i)).at_line(line)
    })
}

pub(super) fn parse_mode(
    t: &Table<'_, '_>,
    p: &RawProvider,
) -> Result<Option<CompatibleMode>, ConfigError> {
    let Some(m) = &p.mode else { return Ok(None) };
    match m.get_ref().as_str() {
        "images" => Ok(Some(CompatibleMode::Images)),
        "chat" => Ok(Some(CompatibleMode::Chat)),
        other => Err(t.cx.err(
            t.f("mode"),
            m,
            format!("unknown mode {other:?}; expected \"images\" or \"chat\""),
        )),
    }
}

/// Parses and checks the `i`-th `[[provider]]` table.
pub(in crate::config) fn parse(
    cx: &Locator<'_>,
    i: usize,
    sp: &Spanned<RawProvider>,
    default_model: &str,
) -> Result<ProviderConfig, ConfigError> {
    let p = sp.get_ref();
    // The span starts at the table's first key; the header is at or before it.
    let header = cx.provider_header(cx.line(sp.span().start));
    let t = Table {
        cx,
        i,
        header,
        key_lines: record_lines(cx, p),
    };
    let name = t
        .non_empty("name", &p.name)?
        .ok_or_else(|| t.missing("name", "every provider needs a unique `name`"))?;
    let kind = parse_kind(&t, p)?;
    check_kind_keys(&t, p, kind)?;
    let models = t.list("models", &p.models, "model")?;
    let deployment = t.non_empty("deployment", &p.deployment)?;
    let mut deployments = t.map("deployments", &p.deployments)?;
    if let Some(d) = &deployment {
        // `deployment` is the deployment of the provider's first listed model, else of the
        // router's default model.
        let model = models.first().map_or(default_model, String::as_str);
        deployments
            .entry(model.to_string())
            .or_insert_with(|| d.clone());
    }
    let key_envs = env_names(cx, t.f("api_key_env"), &p.api_key_env)?;
    let mut c = ProviderConfig {
        name,
        kind,
        base_url: t.url("base_url", &p.base_url)?,
        endpoint: t.url("endpoint", &p.endpoint)?,
        deployment,
        deployments,
        default_deployment: t.non_empty("default_deployment", &p.default_deployment)?,
        api_version: t.non_empty("api_version", &p.api_version)?,
        v1_surface: p.v1_surface.as_ref().map(|b| *b.get_ref()),
        api_key_env: key_envs.first().cloned(),
        api_key_envs: key_envs,
        bearer_token_env: env_name(cx, t.f("bearer_token_env"), &p.bearer_token_env)?,
        tier: t.non_empty("tier", &p.tier)?,
        rpm: None,
        tpm: None,
        ipm: None,
        safety_margin: None,
        shared: p.shared.as_ref().map(|b| *b.get_ref()),
        weight: None,
        budgets: budgets(cx, &t.f("budgets"), &p.budgets)?,
        reserved_for: t.list("reserved_for", &p.reserved_for, "class")?,
        preferred_by: t.list("preferred_by", &p.preferred_by, "class")?,
        organization: t.non_empty("organization", &p.organization)?,
        project: t.non_empty("project", &p.project)?,
        models,
        allow_unknown_models: p.allow_unknown_models.as_ref().map(|b| *b.get_ref()),
        mode: parse_mode(&t, p)?,
        streaming: p.streaming.as_ref().map(|b| *b.get_ref()),
        rename: t.map("rename", &p.rename)?,
        max_response_bytes: None,
        max_retry_hint: crate::config::router::duration(
            cx,
            &t.f("max_retry_hint"),
            &p.max_retry_hint,
            false,
        )?,
        allow_download_hosts: t.list("allow_download_hosts", &p.allow_download_hosts, "host")?,
        account: t.non_empty("account", &p.account)?,
        line: header,
        key_lines: HashMap::new(),
        key_index: None,
    };
    check_required(&t, p, kind, &c)?;
    if c.account
        .as_deref()
        .is_some_and(|a| a.contains(['{', '}']) || a == "router")
    {
        return Err(ConfigError::new(
            t.f("account"),
            "must hold no '{' or '}' (a shared store puts the account in braces to keep its \
             keys in one Redis Cluster hash slot) and must not be \"router\" (the name of the \
             router-wide budgets' keys)",
        )
        .at_line(t.at("account")));
    }
    if c.account.is_some() && c.api_key_envs.len() > 1 {
        // Each key of a key set is its own account (`{name}/{VARIABLE}`); one name for all
        // of them would make them share one window and one budget.
        return Err(ConfigError::new(
            t.f("account"),
            "`account` names one account, but this provider lists several keys (each is its \
             own account, named {name}/{VARIABLE}); give each key its own [[provider]] table \
             to name its account",
        )
        .at_line(t.at("account")));
    }
    parse_numbers(&t, p, &mut c)?;
    c.key_lines = t.key_lines;
    Ok(c)
}
