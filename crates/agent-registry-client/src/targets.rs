//! The registry replicas a client may use: the addresses it was given, each expanded to every
//! IP address its host name resolves to (a headless Service, a DNS name with several records),
//! tried in turn. A client moves to the next one when a replica cannot serve it — a heartbeat
//! stream ended with UNAVAILABLE (that replica cannot persist beats), or the connection failed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::transport::Uri;

use super::options::{ConnectError, ConnectOptions, Transport};

/// One place to connect to: an address as given, or one IP its host resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address as given (`http://registry:50051`).
    pub address: String,
    /// The resolved IP to dial instead of the host name (TLS still verifies the name).
    pub via: Option<SocketAddr>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via {
            Some(ip) => write!(f, "{} ({ip})", self.address),
            None => f.write_str(&self.address),
        }
    }
}

#[derive(Debug)]
pub struct Targets {
    addresses: Vec<String>,
    options: ConnectOptions,
    /// How many targets have been handed out (the next one is this modulo their count).
    turn: AtomicUsize,
}

impl Targets {
    /// `addresses` must not be empty; each is checked now.
    pub fn new(addresses: &[String], options: &ConnectOptions) -> Result<Targets, ConnectError> {
        if addresses.is_empty() {
            return Err(ConnectError::Invalid("no registry address given".into()));
        }
        for a in addresses {
            options.endpoint(a)?;
        }
        Ok(Targets {
            addresses: addresses.to_vec(),
            options: options.clone(),
            turn: AtomicUsize::new(0),
        })
    }

    /// The first address as given: where a new client starts (no lookup needed).
    pub fn first(&self) -> Result<Transport, ConnectError> {
        self.options.connect_lazy(&self.addresses[0])
    }

    /// Every target now: each address, or each IP its host resolves to (in the order the
    /// resolver gives; an address that does not resolve is kept as it is, for the transport to
    /// retry).
    pub async fn resolve(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for address in &self.addresses {
            let resolved = match host_port(address) {
                Some((host, port)) if host.parse::<IpAddr>().is_err() => {
                    tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map(|ips| ips.collect::<Vec<_>>())
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            if resolved.is_empty() {
                out.push(Target {
                    address: address.clone(),
                    via: None,
                });
            }
            for ip in resolved {
                let t = Target {
                    address: address.clone(),
                    via: Some(ip),
                };
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// A fresh connection to the next target in turn (a new connection even when there is only
    /// one, which a load balancer may send elsewhere).
    pub async fn next(&self) -> Result<(Target, Transport), ConnectError> {
        let all = self.resolve().await;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) + 1;
        let target = all[turn % all.len()].clone();
        let transport = self.options.connect_lazy_via(&target.address, target.via)?;
        Ok((target, transport))
    }
}

/// The host and port of `scheme://host:port[/…]`.
fn host_port(address: &str) -> Option<(String, u16)> {
    let uri: Uri = address.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_expand_to_their_addresses_and_turns_go_round() {
        let addresses = vec![
            "http://localhost:50051".to_string(),
            "http://127.0.0.2:50052".to_string(),
        ];
        let targets = Targets::new(&addresses, &ConnectOptions::default()).unwrap();
        let all = targets.resolve().await;
        assert!(all.len() >= 2, "{all:?}");
        assert!(all.iter().any(|t| {
            t.via
                .is_some_and(|ip| ip.ip().is_loopback() && ip.port() == 50051)
        }));
        assert_eq!(all.last().unwrap().address, addresses[1]);
        let mut seen = Vec::new();
        for _ in 0..all.len() {
            seen.push(targets.next().await.unwrap().0);
        }
        for t in &all {
            assert!(seen.contains(t), "every target is used in turn");
        }
        assert!(Targets::new(&[], &ConnectOptions::default()).is_err());
        assert!(host_port("http://[::1]:7").is_some_and(|(h, p)| h == "::1" && p == 7));
    }
}
