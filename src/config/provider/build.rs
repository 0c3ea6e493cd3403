//! Building the built-in provider a checked `[[provider]]` table describes, with its
//! credential. Apart from parsing because it is the one step that touches the providers'
//! builders, and applications that add their own kinds replace it.

use std::sync::Arc;

use super::ProviderConfig;
use crate::catalog::Catalog;
use crate::config::env::Credential;
use crate::config_error::ConfigError;
use crate::provider::{Provider, ProviderKind};

/// Builds the built-in provider for a `[[provider]]` table with its credential.
///
/// This is the default constructor of [`RouterConfig::build`](crate::config::RouterConfig::build);
/// use [`RouterConfig::build_with`](crate::config::RouterConfig::build_with) to add your own kinds.
pub fn build_provider(
    p: &ProviderConfig,
    credential: Option<Credential>,
    catalog: &Arc<Catalog>,
) -> Result<Arc<dyn Provider>, ConfigError> {
    use crate::providers::{Azure, Compatible, OpenAi};
    macro_rules! common {
        ($b:expr) => {{
            let mut b = $b.name(&p.name).catalog(catalog.clone());
            if !p.models.is_empty() {
                b = b.models(p.models.clone());
            }
            if let Some(a) = p.allow_unknown_models {
                b = b.allow_unknown_models(a);
            }
            if let Some(n) = p.max_response_bytes {
                b = b.max_response_bytes(n);
            }
            if let Some(d) = p.max_retry_hint {
                b = b.max_retry_hint(d);
            }
            b.allow_download_hosts(p.allow_download_hosts.iter().cloned())
        }};
    }
    let key = |k: &str| ConfigError::new(k, "missing credential").at_line(p.line_of(k));
    Ok(match p.kind {
        ProviderKind::OpenAi => {
            let cred = credential.ok_or_else(|| key("api_key_env"))?;
            let mut b = common!(OpenAi::builder()).api_key(cred.secret);
            if let Some(u) = &p.base_url {
                b = b.base_url(u);
            }
            if let Some(o) = &p.organization {
                b = b.organization(o);
            }
            if let Some(pr) = &p.project {
                b = b.project(pr);
            }
            Arc::new(b.build()?)
        }
        ProviderKind::Azure => {
            let cred = credential.ok_or_else(|| key("api_key_env"))?;
            let mut b = common!(Azure::builder()).endpoint(p.endpoint.clone().unwrap_or_default());
            b = if cred.bearer {
                b.bearer_token(cred.secret)
            } else {
                b.api_key(cred.secret)
            };
            for (model, dep) in &p.deployments {
                b = b.deployment(model, dep);
            }
            if let Some(d) = &p.default_deployment {
                b = b.default_deployment(d);
            }
            if let Some(v) = &p.api_version {
                b = b.api_version(v);
            }
            if let Some(v1) = p.v1_surface {
                b = b.v1_surface(v1);
            }
            Arc::new(b.build()?)
        }
        _ => {
            let mut b =
                common!(Compatible::builder()).base_url(p.base_url.clone().unwrap_or_default());
            if let Some(c) = credential {
                b = b.api_key(c.secret);
            }
            b = b.mode(p.mode.unwrap_or_default());
            if let Some(s) = p.streaming {
                b = b.streaming(s);
            }
            for (from, to) in &p.rename {
                b = b.rename_model(from, to);
            }
            Arc::new(b.build()?)
        }
    })
}
