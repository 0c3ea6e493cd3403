//! The `[[provider]]` table as the file spells it: every key optional and spanned, so the
//! parser can say which key is wrong and on which line. Apart from [`ProviderConfig`](super::ProviderConfig)
//! because this shape exists only while loading.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::env::KeyEnvs;
use crate::config::router::{RawBudget, S};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawProvider {
    pub(super) name: S<String>,
    pub(super) kind: S<String>,
    pub(super) base_url: S<String>,
    pub(super) endpoint: S<String>,
    pub(super) deployment: S<String>,
    pub(super) deployments: S<BTreeMap<String, String>>,
    pub(super) default_deployment: S<String>,
    pub(super) api_version: S<String>,
    pub(super) v1_surface: S<bool>,
    pub(super) api_key_env: S<KeyEnvs>,
    pub(super) bearer_token_env: S<String>,
    pub(super) tier: S<String>,
    pub(super) rpm: S<i64>,
    pub(super) tpm: S<i64>,
    pub(super) ipm: S<i64>,
    pub(super) safety_margin: S<f64>,
    pub(super) shared: S<bool>,
    pub(super) weight: S<f64>,
    pub(super) budgets: S<Vec<RawBudget>>,
    pub(super) reserved_for: S<Vec<String>>,
    pub(super) preferred_by: S<Vec<String>>,
    pub(super) organization: S<String>,
    pub(super) project: S<String>,
    pub(super) models: S<Vec<String>>,
    pub(super) allow_unknown_models: S<bool>,
    pub(super) mode: S<String>,
    pub(super) streaming: S<bool>,
    pub(super) rename: S<BTreeMap<String, String>>,
    pub(super) max_response_bytes: S<i64>,
    pub(super) max_retry_hint: S<String>,
    pub(super) allow_download_hosts: S<Vec<String>>,
    pub(super) account: S<String>,
}
