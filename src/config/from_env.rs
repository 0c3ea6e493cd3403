//! Zero configuration: providers from the environment variables the official SDKs read, so a
//! person who has exported `OPENAI_API_KEY` can route without writing a file first.
//!
//! # Which variables, and why these
//!
//! The table is on [`EnvSetup`] (this module is private; its items are re-exported by
//! `config`).
//!
//! `AZURE_OPENAI_DEPLOYMENT` is not read by the SDKs (they take the deployment as an argument)
//! but is the name Microsoft's samples use; an Azure provider cannot be called without a
//! deployment, so it is required here rather than guessed. Unsure: the SDKs use an empty
//! variable as set; here an empty or blank value counts as unset (an `export X=` left behind
//! should not make a provider with an empty key).
//!
//! # Design
//!
//! * **One path with the file.** [`EnvSetup`] writes the TOML a person would write for the
//!   same providers and loads it with [`RouterConfig`]'s own parser, so a router made from
//!   the environment is exactly the router `image-router config init` writes a file for
//!   ([`EnvSetup::to_toml`]), with the same checks and the same `status` / `doctor` output.
//! * **Keys stay in the environment.** The TOML names the variables (`api_key_env =
//!   "OPENAI_API_KEY"`); the values are read when the router is built, into
//!   [`secrecy::SecretString`]s. [`EnvSetup::summary`] names the variables each provider was
//!   made from, never their values.
//! * **Half a provider is a note, not a guess.** An Azure endpoint without a key or a
//!   deployment, or a key without an endpoint, makes no provider and a note naming the
//!   missing variable ([`EnvSetup::notes`]); with no provider at all, [`EnvSetup::config`]
//!   fails with those notes.
//! * **Bad values name the variable.** A base URL or endpoint that is not an http(s) URL is a
//!   [`ConfigError`] whose `field` is the variable's name (its value masked when it carries
//!   credentials).

use std::fmt;

use crate::catalog::Catalog;
use crate::config::{process_env, RouterConfig};
use crate::config_error::ConfigError;
use crate::provider::ProviderKind;
use crate::redact;
use crate::router::{Router, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS};

/// The OpenAI key.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// The OpenAI base URL.
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
/// The OpenAI organization id (`OpenAI-Organization` header).
pub const OPENAI_ORG_ID: &str = "OPENAI_ORG_ID";
/// The OpenAI project id (`OpenAI-Project` header).
pub const OPENAI_PROJECT_ID: &str = "OPENAI_PROJECT_ID";
/// The Azure OpenAI resource endpoint.
pub const AZURE_OPENAI_ENDPOINT: &str = "AZURE_OPENAI_ENDPOINT";
/// The Azure OpenAI key.
pub const AZURE_OPENAI_API_KEY: &str = "AZURE_OPENAI_API_KEY";
/// An Entra ID token for Azure OpenAI, used when no key is set.
pub const AZURE_OPENAI_AD_TOKEN: &str = "AZURE_OPENAI_AD_TOKEN";
/// The Azure deployment serving the default model.
pub const AZURE_OPENAI_DEPLOYMENT: &str = "AZURE_OPENAI_DEPLOYMENT";
/// The Azure `api-version`.
pub const OPENAI_API_VERSION: &str = "OPENAI_API_VERSION";

/// Every variable [`EnvSetup::detect`] reads, in the order it reads them.
pub const ENV_VARIABLES: &[&str] = &[
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
    OPENAI_ORG_ID,
    OPENAI_PROJECT_ID,
    AZURE_OPENAI_ENDPOINT,
    AZURE_OPENAI_API_KEY,
    AZURE_OPENAI_AD_TOKEN,
    AZURE_OPENAI_DEPLOYMENT,
    OPENAI_API_VERSION,
];

/// One provider made from the environment.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvProvider {
    /// The provider's name (`openai`, `azure`).
    pub name: String,
    /// Its kind.
    pub kind: ProviderKind,
    /// The variables it was made from (names only), in the order they were read.
    pub vars: Vec<&'static str>,
    /// `(key, value)` pairs of its `[[provider]]` table after `name` and `kind`; values are
    /// never secrets (keys appear as their variable's name).
    settings: Vec<(&'static str, String)>,
}

/// URLs lose any credentials they carry (`https://user:pass@proxy`).
impl fmt::Debug for EnvProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings: Vec<(&str, String)> = self
            .settings
            .iter()
            .map(|(k, v)| (*k, redact::url(v)))
            .collect();
        f.debug_struct("EnvProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("vars", &self.vars)
            .field("settings", &settings)
            .finish()
    }
}

impl fmt::Display for EnvProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) from {}",
            self.name,
            self.kind.as_str(),
            self.vars.join(", ")
        )
    }
}

/// What the conventional environment variables describe: the providers they make and notes
/// on the ones they only half describe.
///
/// The names and their meaning are the official clients' (checked against openai-python's
/// `OpenAI` and `AzureOpenAI` constructors, which document that they infer each argument from
/// its variable when not given):
///
/// | variable | provider | meaning |
/// |---|---|---|
/// | `OPENAI_API_KEY` | `openai` | the key (the provider exists only when it is set) |
/// | `OPENAI_BASE_URL` | `openai` | another base URL (default `https://api.openai.com/v1`) |
/// | `OPENAI_ORG_ID` | `openai` | sent as the `OpenAI-Organization` header |
/// | `OPENAI_PROJECT_ID` | `openai` | sent as the `OpenAI-Project` header |
/// | `AZURE_OPENAI_ENDPOINT` | `azure` | `https://RESOURCE.openai.azure.com` |
/// | `AZURE_OPENAI_API_KEY` | `azure` | the key (`api-key` header) |
/// | `AZURE_OPENAI_AD_TOKEN` | `azure` | an Entra ID token instead of a key (`Authorization: Bearer`) |
/// | `AZURE_OPENAI_DEPLOYMENT` | `azure` | the deployment serving the default model |
/// | `OPENAI_API_VERSION` | `azure` | the `api-version` query parameter (the SDK's name for it) |
///
/// ```
/// use image_router::config::EnvSetup;
/// let env = |v: &str| match v {
///     "OPENAI_API_KEY" => Some("sk-example".to_string()),
///     "OPENAI_ORG_ID" => Some("org-123".to_string()),
///     _ => None,
/// };
/// let setup = EnvSetup::detect(&env).unwrap();
/// assert_eq!(setup.summary(), "openai (openai) from OPENAI_API_KEY, OPENAI_ORG_ID");
/// let toml = setup.to_toml();
/// assert!(toml.contains("api_key_env = \"OPENAI_API_KEY\""));
/// assert!(!toml.contains("sk-example"));
/// let cfg = setup.config().unwrap();
/// assert_eq!(cfg.providers[0].organization.as_deref(), Some("org-123"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSetup {
    providers: Vec<EnvProvider>,
    notes: Vec<String>,
}

/// A variable's value, trimmed; blank counts as unset.
fn read(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A URL-valued variable: http or https, trailing `/` dropped. The error names the variable
/// and masks credentials in the value.
fn read_url(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(v) = read(env, var) else {
        return Ok(None);
    };
    match url::Url::parse(&v) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
            Ok(Some(v.trim_end_matches('/').to_string()))
        }
        Ok(u) => Err(ConfigError::new(
            var,
            format!(
                "environment variable {var}: scheme {:?} not supported; use an http or https URL",
                u.scheme()
            ),
        )),
        Err(e) => Err(ConfigError::new(
            var,
            format!(
                "environment variable {var} is not a URL ({:?}: {e})",
                redact::url(&v)
            ),
        )),
    }
}

impl EnvSetup {
    /// Reads the conventional variables through `env` (e.g. [`process_env`]). Fails only on a
    /// value that cannot be right (a URL variable that is not an http(s) URL); missing
    /// variables make fewer providers and [notes](Self::notes).
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut s = EnvSetup::default();
        s.detect_openai(env)?;
        s.detect_azure(env)?;
        Ok(s)
    }

    fn detect_openai(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let base_url = read_url(env, OPENAI_BASE_URL)?;
        if read(env, OPENAI_API_KEY).is_none() {
            if base_url.is_some() {
                self.notes.push(format!(
                    "{OPENAI_BASE_URL} is set but {OPENAI_API_KEY} is not: no OpenAI provider \
                     (export {OPENAI_API_KEY}=... with the key for that endpoint)"
                ));
            }
            return Ok(());
        }
        let mut p = EnvProvider {
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            vars: vec![OPENAI_API_KEY],
            settings: vec![("api_key_env", OPENAI_API_KEY.to_string())],
        };
        if let Some(u) = base_url {
            p.vars.push(OPENAI_BASE_URL);
            p.settings.push(("base_url", u));
        }
        for (var, key) in [
            (OPENAI_ORG_ID, "organization"),
            (OPENAI_PROJECT_ID, "project"),
        ] {
            if let Some(v) = read(env, var) {
                p.vars.push(var);
                p.settings.push((key, v));
            }
        }
        self.providers.push(p);
        Ok(())
    }

    fn detect_azure(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let endpoint = read_url(env, AZURE_OPENAI_ENDPOINT)?;
        let key = read(env, AZURE_OPENAI_API_KEY).map(|_| AZURE_OPENAI_API_KEY);
        let token = read(env, AZURE_OPENAI_AD_TOKEN).map(|_| AZURE_OPENAI_AD_TOKEN);
        let deployment = read(env, AZURE_OPENAI_DEPLOYMENT);
        let Some(endpoint) = endpoint else {
            if let Some(var) = key.or(token) {
                self.notes.push(format!(
                    "{var} is set but {AZURE_OPENAI_ENDPOINT} is not: no Azure provider \
                     (export {AZURE_OPENAI_ENDPOINT}=https://RESOURCE.openai.azure.com)"
                ));
            }
            return Ok(());
        };
        let Some(cred) = key.or(token) else {
            self.notes.push(format!(
                "{AZURE_OPENAI_ENDPOINT} is set but neither {AZURE_OPENAI_API_KEY} nor \
                 {AZURE_OPENAI_AD_TOKEN} is: no Azure provider (export {AZURE_OPENAI_API_KEY}=...)"
            ));
            return Ok(());
        };
        let Some(deployment) = deployment else {
            self.notes.push(format!(
                "{AZURE_OPENAI_ENDPOINT} and {cred} are set but {AZURE_OPENAI_DEPLOYMENT} is \
                 not: no Azure provider (export {AZURE_OPENAI_DEPLOYMENT}= the name of your \
                 image model's deployment)"
            ));
            return Ok(());
        };
        let cred_key = if cred == AZURE_OPENAI_API_KEY {
            "api_key_env"
        } else {
            "bearer_token_env"
        };
        let mut p = EnvProvider {
            name: "azure".into(),
            kind: ProviderKind::Azure,
            vars: vec![AZURE_OPENAI_ENDPOINT, cred, AZURE_OPENAI_DEPLOYMENT],
            settings: vec![
                ("endpoint", endpoint),
                ("deployment", deployment),
                (cred_key, cred.to_string()),
            ],
        };
        if let Some(v) = read(env, OPENAI_API_VERSION) {
            p.vars.push(OPENAI_API_VERSION);
            p.settings.push(("api_version", v));
        }
        self.providers.push(p);
        Ok(())
    }

    /// The providers found, in priority order (OpenAI, then Azure).
    pub fn providers(&self) -> &[EnvProvider] {
        &self.providers
    }

    /// Variables that describe only half a provider, each with the missing variable named.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Whether no provider was found.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// One line naming each provider and the variables it came from (never their values),
    /// e.g. `openai (openai) from OPENAI_API_KEY, OPENAI_BASE_URL`.
    pub fn summary(&self) -> String {
        self.providers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A commented configuration file for these providers, to start from: the variables'
    /// names stand in for the keys, URLs lose any credentials they carry (a file is no place
    /// for them), and the usual settings are listed commented out. With no provider found, a
    /// starting file for OpenAI naming `OPENAI_API_KEY`.
    pub fn to_toml(&self) -> String {
        self.render(true)
    }

    fn render(&self, for_file: bool) -> String {
        let mut t = String::new();
        t.push_str(
            "# image-router configuration (see the README's \"Config file and command line\").\n\
             # Keys are never written here: api_key_env names the environment variable that\n\
             # holds each key. Check the providers with `image-router doctor`.\n\n\
             [router]                       # the commented values are the defaults\n\
             # strategy = \"scored\"          # or \"ordered\", \"weighted\"\n",
        );
        t.push_str(&format!(
            "# timeout = \"{}s\"             # per attempt\n\
             # deadline = \"{}s\"            # whole request\n\
             # max_attempts = {}\n\
             # default_model = {}\n\
             # budgets = [{{ usd = 20.0, per = \"day\" }}]   # no budget unless set\n\n\
             # Several instances (replicas, workers) on one account: share their limits,\n\
             # budgets and denials through Redis (feature `redis`). The URL stays in the\n\
             # variable; give providers that are one OpenAI organization the same `account`.\n\
             # [store]\n\
             # kind = \"redis\"               # default \"in-process\"\n\
             # url_env = \"REDIS_URL\"\n\
             # prefix = \"image-router\"\n\
             # timeout = \"50ms\"\n",
            DEFAULT_ATTEMPT_TIMEOUT.as_secs(),
            DEFAULT_DEADLINE.as_secs(),
            DEFAULT_MAX_ATTEMPTS,
            quote(Catalog::builtin().default_model()),
        ));
        let providers: Vec<EnvProvider> = if self.providers.is_empty() {
            // A starting point only: the variable is not set yet.
            vec![EnvProvider {
                name: "openai".into(),
                kind: ProviderKind::OpenAi,
                vars: Vec::new(),
                settings: vec![("api_key_env", OPENAI_API_KEY.to_string())],
            }]
        } else {
            self.providers.clone()
        };
        for p in &providers {
            t.push('\n');
            if p.vars.is_empty() {
                t.push_str(&format!(
                    "# Not found in the environment: export {OPENAI_API_KEY}=... before using it.\n"
                ));
            } else {
                t.push_str(&format!("# Made from {}.\n", p.vars.join(", ")));
            }
            t.push_str("[[provider]]\n");
            t.push_str(&format!("name = {}\n", quote(&p.name)));
            t.push_str(&format!("kind = {}\n", quote(p.kind.as_str())));
            for (k, v) in &p.settings {
                let is_url = matches!(*k, "base_url" | "endpoint");
                let v = if for_file && is_url {
                    redact::url(v)
                } else {
                    v.clone()
                };
                if for_file && is_url && v.contains(redact::MASK) {
                    t.push_str(
                        "# The URL carried credentials; they are masked here. Put the key in \
                         the variable named by api_key_env instead.\n",
                    );
                }
                t.push_str(&format!("{k} = {}\n", quote(&v)));
            }
            match p.kind {
                ProviderKind::OpenAi => t.push_str(
                    "# tier = \"tier-1\"   # your OpenAI usage tier (tier-1 ... tier-5): each model's published limits\n\
                     # ipm = 5            # explicit limits override the tier's: images per minute,\n\
                     # tpm = 100000       # tokens per minute (and rpm, requests per minute)\n",
                ),
                _ => t.push_str(
                    "# rpm = 6            # your deployment's quota (requests per minute)\n# tpm = 100000\n",
                ),
            }
        }
        if !self.providers.iter().any(|p| p.kind == ProviderKind::Azure) {
            t.push_str(
                "\n# An Azure OpenAI deployment:\n\
                 # [[provider]]\n\
                 # name = \"azure\"\n\
                 # kind = \"azure\"\n\
                 # endpoint = \"https://RESOURCE.openai.azure.com\"\n\
                 # deployment = \"gpt-image-1\"\n\
                 # api_key_env = \"AZURE_OPENAI_API_KEY\"\n",
            );
        }
        t.push_str(
            "\n# An OpenAI-compatible proxy:\n\
             # [[provider]]\n\
             # name = \"proxy\"\n\
             # kind = \"compatible\"\n\
             # base_url = \"https://proxy.example/v1\"\n\
             # api_key_env = \"PROXY_API_KEY\"\n\
             # mode = \"images\"               # or \"chat\"\n",
        );
        t
    }

    /// The configuration these providers make: the same as loading [`to_toml`](Self::to_toml)'s
    /// file (but with URLs as the variables spell them). Fails when no provider was found,
    /// naming the variables to set and any [notes](Self::notes).
    pub fn config(&self) -> Result<RouterConfig, ConfigError> {
        if self.providers.is_empty() {
            let mut msg = format!(
                "no provider in the environment: set {OPENAI_API_KEY} (optionally \
                 {OPENAI_BASE_URL}, {OPENAI_ORG_ID}, {OPENAI_PROJECT_ID}), or \
                 {AZURE_OPENAI_ENDPOINT} with {AZURE_OPENAI_API_KEY} and \
                 {AZURE_OPENAI_DEPLOYMENT} (optionally {OPENAI_API_VERSION}), or write a \
                 configuration file"
            );
            for n in &self.notes {
                msg.push_str("; ");
                msg.push_str(n);
            }
            return Err(ConfigError::new("environment", msg));
        }
        self.render(false).parse()
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Router {
    /// Builds a router from the conventional environment variables (`OPENAI_API_KEY`,
    /// `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`, `AZURE_OPENAI_ENDPOINT`,
    /// `AZURE_OPENAI_API_KEY` or `AZURE_OPENAI_AD_TOKEN`, `AZURE_OPENAI_DEPLOYMENT`,
    /// `OPENAI_API_VERSION`): an OpenAI provider when the key is set, an Azure one when the
    /// endpoint, a credential and the deployment are. See [`EnvSetup`] to see what was found.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), image_router::ConfigError> {
    /// let router = image_router::Router::from_env()?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Router, ConfigError> {
        Self::from_env_with(&process_env)
    }

    /// [`from_env`](Self::from_env) reading the variables through `env` instead of the
    /// process environment (tests, or variables kept elsewhere).
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Router, ConfigError> {
        EnvSetup::detect(env)?
            .config()?
            .build_with(env, crate::config::build_provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |v: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        }
    }

    #[test]
    fn nothing_set_is_an_error_naming_the_variables() {
        let s = EnvSetup::detect(&env(&[])).unwrap();
        assert!(s.is_empty());
        let e = s.config().unwrap_err();
        assert_eq!(e.field, "environment");
        assert!(e.message.contains(OPENAI_API_KEY), "{e}");
        assert!(e.message.contains(AZURE_OPENAI_DEPLOYMENT), "{e}");
        // The starting file still loads once the variable is named.
        let cfg: RouterConfig = s.to_toml().parse().unwrap();
        assert_eq!(
            cfg.providers[0].api_key_env.as_deref(),
            Some(OPENAI_API_KEY)
        );
    }

    #[test]
    fn openai_with_every_variable() {
        let s = EnvSetup::detect(&env(&[
            (OPENAI_API_KEY, "sk-secret-value-123"),
            (OPENAI_BASE_URL, "http://127.0.0.1:9/v1/"),
            (OPENAI_ORG_ID, "org-abc"),
            (OPENAI_PROJECT_ID, "proj_xyz"),
        ]))
        .unwrap();
        assert_eq!(
            s.summary(),
            "openai (openai) from OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID"
        );
        let cfg = s.config().unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(p.organization.as_deref(), Some("org-abc"));
        assert_eq!(p.project.as_deref(), Some("proj_xyz"));
        assert!(!s.to_toml().contains("sk-secret-value-123"));
        assert!(!format!("{s:?}").contains("sk-secret-value-123"));
    }

    #[test]
    fn azure_needs_endpoint_credential_and_deployment() {
        let s = EnvSetup::detect(&env(&[
            (AZURE_OPENAI_ENDPOINT, "https://res.openai.azure.com"),
            (AZURE_OPENAI_API_KEY, "0123456789abcdef0123456789abcdef"),
        ]))
        .unwrap();
        assert!(s.is_empty());
        assert!(
            s.notes()[0].contains(AZURE_OPENAI_DEPLOYMENT),
            "{:?}",
            s.notes()
        );
        assert!(s
            .config()
            .unwrap_err()
            .message
            .contains(AZURE_OPENAI_DEPLOYMENT));

        let s = EnvSetup::detect(&env(&[
            (AZURE_OPENAI_ENDPOINT, "https://res.openai.azure.com"),
            (AZURE_OPENAI_AD_TOKEN, "eyJ-token"),
            (AZURE_OPENAI_DEPLOYMENT, "img"),
            (OPENAI_API_VERSION, "2025-04-01-preview"),
        ]))
        .unwrap();
        let cfg = s.config().unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.kind, ProviderKind::Azure);
        assert_eq!(p.bearer_token_env.as_deref(), Some(AZURE_OPENAI_AD_TOKEN));
        assert_eq!(p.api_version.as_deref(), Some("2025-04-01-preview"));
        assert_eq!(p.deployment.as_deref(), Some("img"));

        let s = EnvSetup::detect(&env(&[(AZURE_OPENAI_API_KEY, "k")])).unwrap();
        assert!(s.notes()[0].contains(AZURE_OPENAI_ENDPOINT));
        let s = EnvSetup::detect(&env(&[(OPENAI_BASE_URL, "http://127.0.0.1:9/v1")])).unwrap();
        assert!(s.notes()[0].contains(OPENAI_API_KEY));
    }

    #[test]
    fn bad_urls_name_the_variable_and_mask_credentials() {
        let e = EnvSetup::detect(&env(&[
            (OPENAI_API_KEY, "sk-x"),
            (OPENAI_BASE_URL, "ftp://user:hunter2@host/v1"),
        ]))
        .unwrap_err();
        assert_eq!(e.field, OPENAI_BASE_URL);
        let e =
            EnvSetup::detect(&env(&[(AZURE_OPENAI_ENDPOINT, "not a url hunter2")])).unwrap_err();
        assert_eq!(e.field, AZURE_OPENAI_ENDPOINT);
        // Credentials in a good URL reach the router but never the file.
        let s = EnvSetup::detect(&env(&[
            (OPENAI_API_KEY, "sk-x"),
            (OPENAI_BASE_URL, "https://user:hunter2@proxy.example/v1"),
        ]))
        .unwrap();
        assert!(!s.to_toml().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.to_toml().contains("masked"));
        assert_eq!(
            s.config().unwrap().providers[0].base_url.as_deref(),
            Some("https://user:hunter2@proxy.example/v1")
        );
    }

    /// The commented `[router]` lines are the real defaults, in valid syntax: uncommented,
    /// they load and change nothing.
    #[test]
    fn commented_router_defaults_are_valid_settings() {
        let text = EnvSetup::default().to_toml();
        let mut in_router = false;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("[router]") {
                in_router = true;
            } else if line.trim().is_empty() {
                in_router = false;
            }
            match line.strip_prefix("# ") {
                Some(l) if in_router && l.contains(" = ") && !l.starts_with("budgets") => {
                    out.push_str(l);
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        assert_ne!(out, text, "no default was uncommented");
        let cfg: RouterConfig = out.parse().unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(cfg.router.max_attempts, Some(DEFAULT_MAX_ATTEMPTS));
        assert_eq!(cfg.router.timeout, Some(DEFAULT_ATTEMPT_TIMEOUT));
        assert_eq!(cfg.router.deadline, Some(DEFAULT_DEADLINE));
    }

    /// The commented limits of each provider are settings the file accepts as they are.
    #[test]
    fn commented_provider_limits_are_valid_settings() {
        let s = EnvSetup::detect(&env(&[
            (OPENAI_API_KEY, "sk-secret-value-123"),
            (AZURE_OPENAI_ENDPOINT, "https://res.openai.azure.com"),
            (AZURE_OPENAI_API_KEY, "0123456789abcdef0123456789abcdef"),
            (AZURE_OPENAI_DEPLOYMENT, "img"),
        ]))
        .unwrap();
        let text = s.to_toml();
        let limit_keys = ["tier = ", "ipm = ", "tpm = ", "rpm = "];
        let mut uncommented = 0;
        let mut out = String::new();
        let mut in_provider = false;
        for line in text.lines() {
            if line.starts_with("[[provider]]") {
                in_provider = true;
            } else if line.trim().is_empty() || line.starts_with('[') {
                in_provider = false;
            }
            match line.strip_prefix("# ") {
                Some(l) if in_provider && limit_keys.iter().any(|k| l.starts_with(k)) => {
                    out.push_str(l);
                    uncommented += 1;
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        assert_eq!(uncommented, 5, "{text}");
        let cfg: RouterConfig = out.parse().unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(cfg.providers[0].tier.as_deref(), Some("tier-1"));
        assert_eq!(cfg.providers[0].ipm, Some(5));
        assert_eq!(cfg.providers[1].rpm, Some(6));
        let router = cfg
            .build_with(
                &env(&[
                    (OPENAI_API_KEY, "sk-secret-value-123"),
                    (AZURE_OPENAI_API_KEY, "0123456789abcdef0123456789abcdef"),
                ]),
                crate::config::build_provider,
            )
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(router.provider_names().len(), 2);
    }

    #[test]
    fn blank_values_count_as_unset() {
        let s = EnvSetup::detect(&env(&[(OPENAI_API_KEY, "  "), (OPENAI_ORG_ID, "org")])).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn from_env_with_builds_both_providers() {
        let r = Router::from_env_with(&env(&[
            (OPENAI_API_KEY, "sk-x"),
            (AZURE_OPENAI_ENDPOINT, "https://res.openai.azure.com"),
            (AZURE_OPENAI_API_KEY, "k"),
            (AZURE_OPENAI_DEPLOYMENT, "img"),
        ]))
        .unwrap();
        let names: Vec<String> = r
            .status()
            .providers
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names, ["openai", "azure"]);
        assert!(Router::from_env_with(&env(&[])).is_err());
    }
}
