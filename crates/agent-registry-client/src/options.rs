//! How a client reaches a secured registry: TLS (the CA to trust, a client certificate for
//! mutual TLS, the name to verify) and the bearer token. Shared by the library, the sidecar and
//! `ctl`, which take the same flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Connection options (each flag has an environment fallback).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ConnectOptions {
    /// PEM CA certificate that signed the registry's certificate (default for `https://`
    /// addresses: the system's roots).
    #[cfg_attr(feature = "cli", arg(long = "tls-ca", env = "AGENT_REGISTRY_TLS_CA"))]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a registry that requires mutual TLS.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "tls-cert",
            env = "AGENT_REGISTRY_TLS_CERT",
            requires = "tls_key"
        )
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of --tls-cert.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "tls-key",
            env = "AGENT_REGISTRY_TLS_KEY",
            requires = "tls_cert"
        )
    )]
    pub tls_key: Option<PathBuf>,
    /// The name the registry's certificate must carry, when it is not the address's host.
    #[cfg_attr(
        feature = "cli",
        arg(long = "tls-server-name", env = "AGENT_REGISTRY_TLS_SERVER_NAME")
    )]
    pub tls_server_name: Option<String>,
    /// File holding the bearer token (surrounding whitespace ignored).
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "token-file",
            env = "AGENT_REGISTRY_TOKEN_FILE",
            conflicts_with = "token"
        )
    )]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself; prefer --token-file or the environment (arguments show in `ps`).
    #[cfg_attr(
        feature = "cli",
        arg(long = "token", env = "AGENT_REGISTRY_TOKEN", hide_env_values = true)
    )]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("address {0:?}: {1}")]
    Address(String, tonic::transport::Error),
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("TLS: {0}")]
    Tls(tonic::transport::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError::Read(path.to_path_buf(), e))
}

impl ConnectOptions {
    fn uses_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_server_name.is_some()
    }

    /// The endpoint for `address` (`http://` or `https://host:port`), with TLS as asked.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ConnectError> {
        self.endpoint_via(address, None)
    }

    /// Like [`Self::endpoint`], dialling `via` (an IP the address's host resolved to) while the
    /// request authority and the certificate check keep the host name.
    pub fn endpoint_via(
        &self,
        address: &str,
        via: Option<std::net::SocketAddr>,
    ) -> Result<Endpoint, ConnectError> {
        let bad = |e| ConnectError::Address(address.to_string(), e);
        let dial = match via {
            None => address.to_string(),
            Some(ip) => {
                let scheme = if address.starts_with("https://") {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{ip}")
            }
        };
        let mut endpoint = Endpoint::from_shared(dial)
            .map_err(bad)?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let host = address
            .parse::<tonic::transport::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned));
        if via.is_some() {
            let origin = address
                .parse()
                .map_err(|_| ConnectError::Invalid(format!("address {address:?}: not a URI")))?;
            endpoint = endpoint.origin(origin);
        }
        let https = address.starts_with("https://");
        if !https {
            if self.uses_tls() {
                return Err(ConnectError::Invalid(format!(
                    "TLS options need an https:// address, got {address:?}"
                )));
            }
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        match (&self.tls_server_name, via, host) {
            (Some(name), _, _) => tls = tls.domain_name(name.clone()),
            // Dialled by IP: the certificate is still checked against the name.
            (None, Some(_), Some(host)) => tls = tls.domain_name(host),
            _ => {}
        }
        endpoint.tls_config(tls).map_err(ConnectError::Tls)
    }

    /// What every call carries: the bearer token, if any.
    pub fn credentials(&self) -> Result<Credentials, ConnectError> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(path)) => Some(
                String::from_utf8(read(path)?)
                    .map_err(|_| ConnectError::Invalid(format!("{}: not UTF-8", path.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let header = match token {
            None => None,
            Some(t) if t.is_empty() => {
                return Err(ConnectError::Invalid("the bearer token is empty".into()));
            }
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                ConnectError::Invalid("the bearer token is not printable ASCII".into())
            })?),
        };
        Ok(Credentials(header))
    }

    /// A channel that connects on first use and reconnects by itself, carrying credentials.
    pub fn connect_lazy(&self, address: &str) -> Result<Transport, ConnectError> {
        self.connect_lazy_via(address, None)
    }

    /// Like [`Self::connect_lazy`], dialling `via` when given (see [`Self::endpoint_via`]).
    pub fn connect_lazy_via(
        &self,
        address: &str,
        via: Option<std::net::SocketAddr>,
    ) -> Result<Transport, ConnectError> {
        let channel = self.endpoint_via(address, via)?.connect_lazy();
        Ok(InterceptedService::new(channel, self.credentials()?))
    }

    /// Like [`Self::connect_lazy`], but connects now, so a wrong address fails at once.
    pub async fn connect(&self, address: &str) -> Result<Transport, ConnectError> {
        let credentials = self.credentials()?;
        let channel = self
            .endpoint(address)?
            .connect()
            .await
            .map_err(|e| ConnectError::Address(address.to_string(), e))?;
        Ok(InterceptedService::new(channel, credentials))
    }
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Debug, Clone)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What the generated clients of this library run on.
pub type Transport = InterceptedService<Channel, Credentials>;
