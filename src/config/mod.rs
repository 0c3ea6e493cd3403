//! The TOML configuration file: one `[router]` table and one `[[provider]]` table per provider,
//! mapping one to one onto [`RouterBuilder`] and the providers' builders.
//!
//! ```toml
//! [router]
//! strategy = "scored"           # the default; or "ordered", "weighted"
//! timeout = "30s"               # per attempt
//! deadline = "120s"             # whole request
//! max_attempts = 4
//!
//! [[provider]]
//! name = "openai-direct"
//! kind = "openai"               # "openai" | "azure" | "compatible"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"  # the variable's name; keys are never written in the file
//! tier = "tier-2"               # optional; rpm / tpm / ipm override it
//! rpm = 15
//! tpm = 500000
//!
//! [[provider]]
//! name = "azure-east"
//! kind = "azure"
//! endpoint = "https://example.openai.azure.com"
//! deployment = "gpt-image-1"
//! api_version = "2025-04-01-preview"
//! api_key_env = "AZURE_OPENAI_API_KEY"
//!
//! [[provider]]
//! name = "proxy"
//! kind = "compatible"
//! base_url = "https://proxy.example/v1"
//! api_key_env = "PROXY_API_KEY"
//! mode = "images"               # or "chat"
//!
//! # [store]                     # state shared by several instances (feature `redis`)
//! # kind = "redis"              # the default is "in-process"
//! # url_env = "REDIS_URL"       # the variable holding redis://… or rediss://…, never the URL
//! ```
//!
//! # Design
//!
//! * **Two steps.** [`RouterConfig::from_str`] parses and checks the file (no environment, no
//!   network), so tools such as `image-router status` and `doctor` can show a configuration
//!   even when a key is missing; [`RouterConfig::build`] then reads the keys from the
//!   environment and builds the [`Router`].
//! * **Keys never live in the file.** `api_key_env` (and `bearer_token_env` for Azure Entra
//!   ID tokens) name environment variables; the values are read into
//!   [`secrecy::SecretString`]s at build time.
//! * **Every error names the key and the line.** Unknown keys, wrong types, a missing required
//!   field, a bad duration, an unknown tier, a model name the catalog does not know (unless
//!   the provider takes unknown models: proxies do by default), a missing environment variable: a
//!   [`ConfigError`] with `field` like `provider[1].endpoint` and `line`.
//! * **Bounded input.** [`RouterConfig::from_file`] reads at most 1 MiB
//!   ([`crate::catalog::MAX_FILE_BYTES`]), as does the catalog override file; loading is
//!   linear in the file's size (8,000 providers load in well under a second).
//! * **One set of rules.** The limits on values (`max_attempts`, breaker, health and score
//!   settings, `rpm`, `safety_margin`, `weight`, …) are the settings types' own `validate()`,
//!   the same the builder calls in [`RouterBuilder::build`]; a configuration that loads is
//!   one the builder accepts.
//! * **Durations are strings** (`"30s"`, `"2m"`, `"1500ms"`, `"1m30s"`), in Go's duration syntax
//!   like OpenAI's reset headers.
//!
//! # Keys
//!
//! `[router]`: `strategy`, `timeout`, `deadline`, `max_attempts`, `default_model`,
//! `failover_on_content_policy`, `on_timeout_after_send` (`"failover"`, the default, or
//! `"fail"`: see [`RouterBuilder::on_timeout_after_send`]), `cooldown`, `retry_backoff`, `rate_limit_wait`, `max_wait`,
//! `budgets`, `fallback_usd_per_image`, `catalog` (a catalog override file, same schema as
//! `providers/*.toml`, relative to the config file), `check_on_start` (check every provider
//! once at start without generating an image; see [`RouterBuilder::check_on_start`]) and
//! `check_timeout` (a duration, default `"5s"`: the longest the check may take).
//! Preview and fallback: `preview` (a bool: every request at its model's lowest quality and
//! smallest size; the environment variable `IMAGE_ROUTER_PREVIEW=1|0` overrides it: see
//! [`RouterConfig::with_preview_env`], used by [`RouterConfig::build`]), `preview_model` (a
//! bool: preview also switches to the catalog's cheaper model of the same family) and
//! `fallback_models` (model names routed in order when no provider can serve a request's
//! model; see [`RouterBuilder::fallback_models`]).
//!
//! `[router.breaker]`: `consecutive_failures`, `failure_ratio`, `window`, `min_samples`,
//! `cool_down`, `cool_down_multiplier` (growth after a failed probe, 1 or more),
//! `max_cool_down`, `long_cool_down`, `ramp` (a duration, `"0s"` closes at once after a good
//! probe) and `ramp_start` (the share of traffic admitted first, 0 to 1), and
//! `cheap_probe` (probe with a call that generates no image after a cool-down; see
//! [`RouterBuilder::cheap_probe`]).
//!
//! `[router.score]`: the default scorer's exponents `availability`, `latency`, `headroom`,
//! `budget`, `priority`, and `latency_slack` (a duration) and `headroom_knee` (0 to 1); see
//! [`crate::score`]. Keys left out keep their defaults.
//!
//! `[cache]`: `max_bytes`, `ttl`, and `[cache.redis]` (`enabled`, `url_env`, `prefix`,
//! `timeout`, `max_bytes`, `max_entry_bytes`, `ttl`): the response cache, off without the
//! table (see `cache.rs` and [`crate::cache`]).
//!
//! `[router.health]`: `window`, `buckets`, `min_samples`, `latency_decay`, `idle_decay` (a
//! duration or `"off"`), `default_latency` (see [`crate::health::HealthConfig`]).
//!
//! Budgets (router-wide or per provider) are a list of `{ usd, per }` with `per` = `"day"`,
//! `"month"` or a duration: `budgets = [{ usd = 5.0, per = "day" }, { usd = 100, per = "month" }]`.
//!
//! `[[provider]]`: `name`, `kind`, `api_key_env` (a variable's name, or a list of names for
//! several keys behind the provider: `api_key_env = ["OPENAI_KEY_A", "OPENAI_KEY_B"]`, each
//! key then with its own limits, budgets and access state, named `{name}/{VARIABLE}`; see
//! [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys)), `tier`, `rpm`,
//! `tpm`, `ipm` (images per minute; `rpm` / `tpm` / `ipm` apply to each model's window),
//! `safety_margin` (default 1: the whole limit), `shared` (the key has other clients: the
//! margin, default 0.9, applies while the provider sends no `x-ratelimit-remaining-*`
//! figures), `weight`, `budgets`, `models` (only serve these models), `allow_unknown_models` (serve models the
//! catalog does not know), `max_response_bytes` (the largest answer body read; by default
//! derived from each request), `max_retry_hint` (a duration: the longest `retry-after` or reset
//! believed, default 10 minutes), `allow_download_hosts` (private or loopback hosts image
//! downloads may go to), and
//! * openai: `base_url`, `organization`, `project`;
//! * azure: `endpoint`, `deployment` (the deployment of the first of `models`, else of
//!   `[router] default_model`, else of the catalog's default model),
//!   `deployments` (a table model → deployment name), `default_deployment`, `api_version`,
//!   `v1_surface`, `bearer_token_env` instead of `api_key_env`;
//! * compatible: `base_url` (required), `mode` (`"images"` | `"chat"`), `rename` (a table model
//!   → the proxy's model name), `streaming` (an images-mode proxy passes streamed answers
//!   through; default no, see [`crate::stream`]).
//!
//! `[store]` (see [`StoreSettings`]): `kind` (`"in-process"`, the default: every instance
//! keeps its own limits, budgets and denials; or `"redis"`, feature `redis`: shared by every
//! instance that names the same server and prefix), `url_env` (required for Redis: the
//! environment variable holding the `redis://` or `rediss://` URL; a `url` key is refused,
//! since the URL carries the password), `prefix` (default `"image-router"`), `timeout` (one
//! store call, default `"50ms"`) and `heartbeat` (default `"2s"`). Per provider, `account`
//! names the provider account its limits and budgets belong to (default: the provider's
//! name): two providers that are the same OpenAI organization name the same account and
//! share one window in the Redis store. A changed `[store]` needs a restart
//! ([`RouterConfig::reload`] keeps the running store and says so).
//!
//! `strategy`: `"scored"` (best score first, the router's default), `"ordered"` (strict
//! priority order) or `"weighted"` (by `weight` × headroom). `reserved_for` / `preferred_by`
//! (lists of request-class names, e.g. `["interactive"]`) set a provider's class policy.
//!
//! # Layout
//!
//! `mod.rs` ([`RouterConfig`]: loading, catalog, building), `router.rs` (`[router]` and its
//! sub-tables), `provider.rs` (`[[provider]]`, [`build_provider`]), `env.rs` (keys from the
//! environment), `from_env.rs` (zero configuration: [`EnvSetup`] and [`Router::from_env`] from
//! the variables the official SDKs read), `store.rs` (`[store]`), `locate.rs` (lines and keys
//! of errors). The rules of the settings' values,
//! shared with the builder, are the settings types' own `validate()` in
//! `src/router/validate.rs` (the builder's side, so the router never depends on the config).

mod cache;
mod env;
mod from_env;
mod locate;
mod provider;
mod queue;
mod router;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::provider::{Provider, ProviderKind};
use crate::redact;
use crate::router::{Router, RouterBuilder};

pub use self::cache::{CacheRedisSettings, CacheSettings};
pub use self::env::{process_env, Credential};
pub use self::from_env::{
    EnvProvider, EnvSetup, AZURE_OPENAI_AD_TOKEN, AZURE_OPENAI_API_KEY, AZURE_OPENAI_DEPLOYMENT,
    AZURE_OPENAI_ENDPOINT, ENV_VARIABLES, OPENAI_API_KEY, OPENAI_API_VERSION, OPENAI_BASE_URL,
    OPENAI_ORG_ID, OPENAI_PROJECT_ID,
};
pub use self::provider::{build_provider, mode_name, ProviderConfig};
pub use self::queue::{QueueKind, QueueSettings, DEFAULT_QUEUE_PATH, DEFAULT_RESULTS_DIR};
pub use self::router::RouterSettings;
pub use self::store::{StoreKind, StoreSettings};

use self::locate::Locator;

/// A parsed and checked configuration file. Building needs the environment (keys); loading
/// does not.
///
/// ```
/// use image_router::config::RouterConfig;
/// let cfg: RouterConfig = r#"
///     [router]
///     timeout = "30s"
///     [[provider]]
///     name = "openai"
///     kind = "openai"
///     api_key_env = "OPENAI_API_KEY"
///     tier = "tier-2"
/// "#.parse().unwrap();
/// assert_eq!(cfg.router.strategy, None); // the router's default (scored)
/// assert_eq!(cfg.providers[0].tier.as_deref(), Some("tier-2"));
///
/// let err = "[router]\ntimout = \"30s\"\n".parse::<RouterConfig>().unwrap_err();
/// assert_eq!(err.line, Some(2));
/// assert!(err.message.contains("timout"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouterConfig {
    /// The `[router]` table.
    pub router: RouterSettings,
    /// The `[[provider]]` tables in priority order.
    pub providers: Vec<ProviderConfig>,
    /// The `[store]` table (default: the in-process store).
    pub store: StoreSettings,
    /// The `[cache]` table (the response cache is off without it).
    pub cache: Option<CacheSettings>,
    /// The `[queue]` table (the durable job queue of `jobs` and `worker`; defaults when
    /// absent: SQLite in `image-router-jobs.db`).
    pub queue: Option<QueueSettings>,
    /// Where the file came from (for relative paths); `None` for a string.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    #[serde(skip)]
    catalog_line: Option<usize>,
    #[serde(skip)]
    default_model_line: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    router: Option<router::RawRouter>,
    #[serde(default)]
    provider: Vec<Spanned<provider::RawProvider>>,
    store: Option<store::RawStore>,
    cache: Option<cache::RawCache>,
    queue: Option<queue::RawQueue>,
}

impl FromStr for RouterConfig {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_str_in(text, None)
    }
}

impl RouterConfig {
    /// Reads and checks a configuration file (no environment, no network). Relative paths in
    /// it (`catalog`) are resolved against the file's directory. A file over
    /// [`MAX_FILE_BYTES`](crate::catalog::MAX_FILE_BYTES) is refused.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = crate::catalog::read_limited(path, crate::catalog::MAX_FILE_BYTES)
            .map_err(|m| ConfigError::new("config", format!("config file: {m}")))?;
        let dir = path.parent().map(Path::to_path_buf);
        Self::from_str_in(&text, dir)
    }

    fn from_str_in(text: &str, base_dir: Option<PathBuf>) -> Result<Self, ConfigError> {
        // A key pasted into the wrong field, or a URL with a password, must not come back in
        // the error message (which ends up on terminals, in logs and in `--json` output).
        Self::parse_checked(text, base_dir).map_err(|mut e| {
            e.message = redact::text(&e.message);
            e
        })
    }

    fn parse_checked(text: &str, base_dir: Option<PathBuf>) -> Result<Self, ConfigError> {
        let cx = Locator::new(text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| cx.parse_error(e))?;
        let (router, catalog_line, default_model_line) = match &raw.router {
            Some(r) => (
                router::parse(&cx, r)?,
                r.catalog.as_ref().map(|c| cx.line_of(c)),
                r.default_model.as_ref().map(|m| cx.line_of(m)),
            ),
            None => Default::default(),
        };
        if raw.provider.is_empty() {
            return Err(ConfigError::new(
                "provider",
                "no [[provider]] table: add at least one provider",
            ));
        }
        let default_model = router
            .default_model
            .clone()
            .unwrap_or_else(|| Catalog::builtin().default_model().to_string());
        let mut providers = Vec::with_capacity(raw.provider.len());
        // Name → header line, for the duplicate check (a map: a scan per provider would make
        // loading quadratic).
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(raw.provider.len());
        for (i, p) in raw.provider.iter().enumerate() {
            let pc = provider::parse(&cx, i, p, &default_model)?;
            if let Some(prev) = seen.insert(pc.name.clone(), pc.line) {
                return Err(ConfigError::new(
                    format!("provider[{i}].name"),
                    format!(
                        "duplicate provider name {:?} (also at line {prev}): names must be unique",
                        pc.name
                    ),
                )
                .at_line(pc.line_of("name")));
            }
            providers.push(pc);
        }
        let store = match &raw.store {
            Some(s) => store::parse(&cx, s)?,
            None => StoreSettings::default(),
        };
        let cache = raw
            .cache
            .as_ref()
            .map(|c| cache::parse(&cx, c))
            .transpose()?;
        let queue = raw
            .queue
            .as_ref()
            .map(|q| queue::parse(&cx, q))
            .transpose()?;
        Ok(RouterConfig {
            router,
            providers,
            store,
            cache,
            queue,
            base_dir,
            catalog_line,
            default_model_line,
        })
    }

    /// The catalog this configuration uses: the embedded one, with the `catalog` override file
    /// laid over it when set. Also checks every provider's `tier` against it.
    pub fn catalog(&self) -> Result<Arc<Catalog>, ConfigError> {
        let catalog = match &self.router.catalog {
            None => Catalog::builtin().clone(),
            Some(p) => {
                let path = match &self.base_dir {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p.clone(),
                };
                if !path.exists() {
                    let mut e = ConfigError::new(
                        "router.catalog",
                        format!("catalog file {} does not exist", path.display()),
                    );
                    e.line = self.catalog_line;
                    return Err(e);
                }
                Catalog::builtin().with_override_file(&path)?
            }
        };
        for (i, p) in self.providers.iter().enumerate() {
            let Some(t) = &p.tier else { continue };
            if catalog.tier(t).is_none() {
                let known = catalog
                    .tiers()
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ConfigError::new(
                    format!("provider[{i}].tier"),
                    redact::text(&format!("unknown tier {t:?}; known tiers: {known}")),
                )
                .at_line(p.line_of("tier")));
            }
        }
        self.check_models(&catalog)?;
        Ok(Arc::new(catalog))
    }

    /// A model name the catalog does not know is a typo unless the provider takes unknown
    /// models (proxies do by default; others with `allow_unknown_models = true`): caught here
    /// with its line rather than as "no provider can serve this request" on every request.
    fn check_models(&self, catalog: &Catalog) -> Result<(), ConfigError> {
        let takes_unknown = |p: &ProviderConfig| {
            p.allow_unknown_models
                .unwrap_or(p.kind == ProviderKind::Compatible)
        };
        let known = || {
            catalog
                .models()
                .map(|m| m.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, p) in self.providers.iter().enumerate() {
            if takes_unknown(p) {
                continue;
            }
            if let Some(m) = p.models.iter().find(|m| catalog.model(m).is_none()) {
                return Err(ConfigError::new(
                    format!("provider[{i}].models"),
                    redact::text(&format!(
                        "unknown model {m:?}; the catalog knows {}. Set \
                         `allow_unknown_models = true` to send it anyway, or add it with a \
                         `catalog` override file",
                        known()
                    )),
                )
                .at_line(p.line_of("models")));
            }
        }
        if let Some(m) = &self.router.default_model {
            if catalog.model(m).is_none() && !self.providers.iter().any(takes_unknown) {
                let mut e = ConfigError::new(
                    "router.default_model",
                    redact::text(&format!(
                        "unknown model {m:?}; the catalog knows {}, and no provider takes \
                         models it does not know (`allow_unknown_models = true`)",
                        known()
                    )),
                );
                e.line = self.default_model_line;
                return Err(e);
            }
        }
        Ok(())
    }

    /// A [`RouterBuilder`] with the `[router]` settings and the catalog applied, and no
    /// providers yet.
    pub fn router_builder(&self) -> Result<RouterBuilder, ConfigError> {
        Ok(self.router.builder(self.catalog()?))
    }

    /// Builds the router with your own provider constructor: `make` gets each provider's
    /// checked table, its credential (read from the environment through `env`) and the
    /// configuration's catalog, and returns the provider. A provider listing several keys
    /// (`api_key_env = [..]`) gets one call per key, with that key's table
    /// ([`ProviderConfig::keys`]: named `{name}/{VARIABLE}`), and is added as a key set. Errors
    /// from `make` are scoped to the provider (`provider[1].…`) and given the provider's line
    /// when they have none.
    pub fn build_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        make: impl FnMut(
            &ProviderConfig,
            Option<Credential>,
            &Arc<Catalog>,
        ) -> Result<Arc<dyn Provider>, ConfigError>,
    ) -> Result<Router, ConfigError> {
        self.builder_with(env, make)?.build()
    }

    /// What [`build_with`](Self::build_with) builds the router from: the builder with the
    /// `[router]` settings and every provider, to add settings (or call
    /// [`RouterBuilder::build_checked`]) before building.
    pub fn builder_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        mut make: impl FnMut(
            &ProviderConfig,
            Option<Credential>,
            &Arc<Catalog>,
        ) -> Result<Arc<dyn Provider>, ConfigError>,
    ) -> Result<RouterBuilder, ConfigError> {
        let catalog = self.catalog()?;
        let mut b = self.router.builder(catalog.clone());
        if let Some(factory) = self.store.factory(env)? {
            b = b.store(factory);
        }
        if let Some(c) = &self.cache {
            b = b.cache(c.config(env)?);
        }
        for (i, p) in self.providers.iter().enumerate() {
            let mut build = |p: &ProviderConfig| -> Result<Arc<dyn Provider>, ConfigError> {
                let cred = p.credential(i, env)?;
                make(p, cred, &catalog).map_err(|e| {
                    let line = e.line.unwrap_or_else(|| p.line_of(&e.field));
                    let mut e = e.scoped(&format!("provider[{i}]"));
                    e.line = Some(line);
                    e.message = redact::text(&e.message);
                    e
                })
            };
            let keys = p.keys();
            if keys.is_empty() {
                b = b.provider_arc(build(p)?, p.options());
                continue;
            }
            // Several keys: one provider per key, labelled by its variable's name.
            let mut set = crate::providers::ProviderKeys::new(&p.name);
            for (member, var) in keys.iter().zip(&p.api_key_envs) {
                set = set.key_arc(var.clone(), build(member)?);
            }
            b = b.provider_keys(set, p.options());
        }
        Ok(b)
    }

    /// Builds the router with the built-in providers, reading keys from the process
    /// environment, and preview mode from [`IMAGE_ROUTER_PREVIEW`](crate::PREVIEW_ENV) there
    /// over the file's `preview` ([`with_preview_env`](Self::with_preview_env)).
    pub fn build(&self) -> Result<Router, ConfigError> {
        let b = self.builder_with(&process_env, build_provider)?;
        self.with_preview_env(b, &process_env)?.build()
    }

    /// `builder` with preview mode as the environment `env` says: `IMAGE_ROUTER_PREVIEW`
    /// (`1`/`0`, see [`PreviewConfig::parse_env_value`](crate::PreviewConfig::parse_env_value))
    /// overrides the file's `preview` (the file's `preview_model` still applies); unset, the
    /// file decides. A value that is neither on nor off is an error naming the variable.
    /// [`build`](Self::build) and [`Router::from_config_file`] read the process environment;
    /// [`build_with`](Self::build_with) leaves the environment's switch out (its `env` is for
    /// keys), so call this on [`builder_with`](Self::builder_with)'s builder to have it.
    ///
    /// ```
    /// # use image_router::config::{RouterConfig, build_provider};
    /// let cfg: RouterConfig = "[router]\npreview = true\n[[provider]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"K\"\n".parse().unwrap();
    /// let env = |v: &str| match v {
    ///     "K" => Some("sk-test".to_string()),
    ///     "IMAGE_ROUTER_PREVIEW" => Some("0".to_string()),
    ///     _ => None,
    /// };
    /// let b = cfg.builder_with(&env, build_provider).unwrap();
    /// let router = cfg.with_preview_env(b, &env).unwrap().build().unwrap(); // preview off
    /// # let _ = router;
    /// ```
    pub fn with_preview_env(
        &self,
        builder: RouterBuilder,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RouterBuilder, ConfigError> {
        let Some(v) = env(crate::PREVIEW_ENV) else {
            return Ok(builder);
        };
        let on = crate::PreviewConfig::parse_env_value(&v)
            .map_err(|m| ConfigError::new(crate::PREVIEW_ENV, redact::text(&m)))?;
        Ok(builder.preview(self.router.preview_config(Some(on))))
    }

    /// Applies this configuration to `router`, which runs `running` ([`Router::reload`]),
    /// with the built-in providers and keys from the process environment. See
    /// [`reload_with`](Self::reload_with).
    pub fn reload(
        &self,
        router: &Router,
        running: &RouterConfig,
    ) -> Result<Vec<String>, ConfigError> {
        self.reload_with(router, running, &process_env, build_provider)
    }

    /// Applies this configuration to `router`, which runs `running`: providers that stay keep
    /// their state, new ones are added, gone ones dropped. A changed `[store]` table is not
    /// applied — the stores hold live windows and reservations, and the providers that stay
    /// keep theirs — so the router goes on with the running store (new providers get one of
    /// the same kind), a warning is logged, and the returned notes say that a restart is
    /// needed. On error nothing changes.
    pub fn reload_with(
        &self,
        router: &Router,
        running: &RouterConfig,
        env: &dyn Fn(&str) -> Option<String>,
        make: impl FnMut(
            &ProviderConfig,
            Option<Credential>,
            &Arc<Catalog>,
        ) -> Result<Arc<dyn Provider>, ConfigError>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut notes = Vec::new();
        let mut next = self.clone();
        if self.store != running.store {
            let note = format!(
                "the [store] table changed (kind {} → {}): a restart is needed to use the new \
                 store; until then the router keeps the running one and the providers that \
                 stay keep their stores",
                running.store.kind.as_str(),
                self.store.kind.as_str()
            );
            tracing::warn!("{note}");
            notes.push(note);
            next.store = running.store.clone();
        }
        router.reload(next.builder_with(env, make)?)?;
        Ok(notes)
    }
}

impl Router {
    /// Builds a router from a TOML configuration file (see the [`config`](crate::config)
    /// module for the format). Keys are read from the environment variables the file names.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), image_router::ConfigError> {
    /// let router = image_router::Router::from_config_file("image-router.toml")?;
    /// # Ok(()) }
    /// ```
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Router, ConfigError> {
        RouterConfig::from_file(path)?.build()
    }

    /// Builds a router from a configuration file and runs the capability check, waiting for
    /// it (at most the file's `check_timeout`): see [`RouterBuilder::build_checked`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), image_router::ConfigError> {
    /// let (router, report) = image_router::Router::from_config_file_checked("image-router.toml").await?;
    /// for p in report.providers.iter().filter(|p| !p.usable()) {
    ///     eprintln!("{} will not be used: {:?}", p.name, p.denied);
    /// }
    /// # let _ = router; Ok(()) }
    /// ```
    pub async fn from_config_file_checked(
        path: impl AsRef<Path>,
    ) -> Result<(Router, crate::router::CheckReport), ConfigError> {
        let cfg = RouterConfig::from_file(path)?;
        let b = cfg.builder_with(&process_env, build_provider)?;
        cfg.with_preview_env(b, &process_env)?.build_checked().await
    }

    /// Builds a router from TOML text (see [`Router::from_config_file`]).
    pub fn from_config_str(text: &str) -> Result<Router, ConfigError> {
        text.parse::<RouterConfig>()?.build()
    }
}
