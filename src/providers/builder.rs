//! The builder methods every built-in provider has (name, client, catalog, models,
//! timeouts, caps, download hosts, several keys), written once as a macro that each builder expands, so
//! the three builders cannot drift apart in what they accept or how they document it.

macro_rules! common_builder_methods {
    ($default_name:literal) => {
        /// Provider name (unique within a router).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.common.name = Some(name.into());
            self
        }
        /// HTTP client (default: the shared client, see
        /// [`client_builder`](crate::providers::client_builder)). Its redirect policy is its
        /// own; the send path still refuses answers redirected to another origin, and image
        /// downloads through it are checked by address only (see the README's "Security").
        /// Its own `timeout`, when set and shorter than a call's, ends the call first (a
        /// `Timeout { sent: true }`); the call's deadline bounds it either way.
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.common.client = Some(client);
            self
        }
        /// Model catalog (default: [`Catalog::builtin`](crate::catalog::Catalog::builtin)).
        pub fn catalog(mut self, catalog: std::sync::Arc<crate::catalog::Catalog>) -> Self {
            self.common.catalog = Some(catalog);
            self
        }
        /// Only serve these models (default: every model the catalog knows).
        pub fn models<I, S>(mut self, models: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.common.models = Some(models.into_iter().map(Into::into).collect());
            self
        }
        /// Serve models the catalog does not know, with permissive capabilities.
        pub fn allow_unknown_models(mut self, allow: bool) -> Self {
            self.common.allow_unknown = Some(allow);
            self
        }
        /// An upper bound on each call, on top of the router's per-call timeout.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.timeout = Some(timeout);
            self
        }
        /// The most bytes a success answer (and each downloaded image) may have. Default:
        /// derived per request from the largest image the model can return for it, times
        /// `n`, with headroom (base64 counted at 4/3). An answer over the limit fails the
        /// attempt with a [`Decode`](crate::ErrorKind::Decode) error naming the limit.
        pub fn max_response_bytes(mut self, bytes: u64) -> Self {
            self.common.max_response_bytes = Some(bytes);
            self
        }
        /// The longest retry hint believed (`retry-after`, reset headers, "try again in …").
        /// Default [`DEFAULT_MAX_RETRY_HINT`](crate::providers::DEFAULT_MAX_RETRY_HINT), ten
        /// minutes; a longer hint is cut to this, noted in the error message and logged.
        pub fn max_retry_hint(mut self, max: std::time::Duration) -> Self {
            self.common.max_retry_hint = Some(max);
            self
        }
        /// Hosts (names or addresses) image downloads may go to even though they are
        /// private, loopback or link-local. The provider's own host is always allowed.
        pub fn allow_download_hosts<I, S>(mut self, hosts: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.common
                .download_hosts
                .extend(hosts.into_iter().map(Into::into));
            self
        }
        /// One provider per key, for several keys (accounts or projects) behind this
        /// provider: each member is this builder with the key set, named `{name}/{label}`,
        /// and keeps its own limits, budget and access state in the router (see
        /// [`ProviderKeys`](crate::providers::ProviderKeys) and
        /// [`RouterBuilder::provider_keys`](crate::RouterBuilder::provider_keys)). A label
        /// must be shaped like a variable name and never be (the start of) a key; errors name
        /// `keys[i]` and never print a key or a label that may be one.
        pub fn build_keys<L, K>(
            self,
            keys: impl IntoIterator<Item = (L, K)>,
        ) -> Result<crate::providers::ProviderKeys, crate::config_error::ConfigError>
        where
            L: Into<String>,
            K: Into<secrecy::SecretString>,
        {
            let name = self
                .common
                .name
                .clone()
                .unwrap_or_else(|| $default_name.to_string());
            crate::providers::key_set::build_members(&name, keys, |member, key| {
                self.clone().name(member).api_key(key).build()
            })
        }
    };
}
pub(crate) use common_builder_methods;
