//! What a server needs that can fail — TLS files, the tokens file, reflection, the metrics port,
//! the Redis URL — made before anything is started, so an error leaves no task behind.

use std::sync::Arc;

use tonic_reflection::server::{v1, v1alpha};

use super::ServerError;
use crate::config::ServeArgs;
use crate::proto;
use crate::security::tls::ServerTls;
use crate::security::{AccessLimits, TokenTable};
use agent_registry_core::events::bell::BellConfig;

pub(super) struct Prepared {
    pub access_limits: AccessLimits,
    pub tls: Option<Arc<ServerTls>>,
    pub tokens: Option<TokenTable>,
    pub metrics_listener: tokio::net::TcpListener,
    pub bell_client: Option<agent_registry_core::events::bell::Client>,
}

impl Prepared {
    pub async fn new(args: &ServeArgs) -> Result<Prepared, ServerError> {
        let access_limits = args.access_limits().map_err(ServerError::Config)?;
        let tls = match args.tls_files() {
            Some(files) => Some(Arc::new(ServerTls::load(files)?)),
            None => None,
        };
        let tokens = match &args.auth_tokens_file {
            Some(path) => Some(TokenTable::open(path)?),
            None => None,
        };
        let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .map_err(|e| {
                ServerError::Config(format!("--metrics-listen {}: {e}", args.metrics_listen))
            })?;
        let bell_client = match &args.redis_url {
            Some(url) => Some(
                BellConfig {
                    url: url.clone(),
                    prefix: args.redis_prefix.clone(),
                }
                .client()
                .map_err(|e| ServerError::Config(format!("--redis-url: {e}")))?,
            ),
            None => None,
        };
        Ok(Prepared {
            access_limits,
            tls,
            tokens,
            metrics_listener,
            bell_client,
        })
    }

    /// Says once how the server is protected (or that it is not).
    pub fn log_security(&self, args: &ServeArgs) {
        match (&self.tls, &args.tls_client_ca) {
            (Some(_), Some(_)) => {
                tracing::info!("TLS on; clients must present a certificate (mutual TLS)")
            }
            (Some(_), None) => tracing::info!("TLS on"),
            (None, _) => tracing::warn!(
                "TLS off: traffic, tokens included, crosses the network in clear (--tls-cert, --tls-key)"
            ),
        }
        match &self.tokens {
            Some(t) => {
                tracing::info!(tokens = t.current().len(), file = %t.path().display(), "bearer tokens required")
            }
            None => tracing::warn!(
                "no --auth-tokens-file: the registry is OPEN; anyone who reaches it may register, read and evict"
            ),
        }
    }
}

/// Server reflection, both versions clients still use.
#[allow(clippy::type_complexity)]
pub(super) fn reflection() -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    ServerError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
