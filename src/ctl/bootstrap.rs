//! `ctl xds-bootstrap`: the file a stock gRPC client reads from `GRPC_XDS_BOOTSTRAP` to use
//! this registry as its xDS control plane (gRFC A27's bootstrap format; TLS per gRFC A65).

use serde_json::{Value, json};

use agent_registry_client::ConnectOptions;

/// The bootstrap for a client of `server` (`host:port`, with or without `http://` or
/// `https://`): TLS when the address says `https` or a CA or client certificate is given.
pub fn xds_bootstrap(server: &str, connect: &ConnectOptions, node_id: &str) -> Value {
    let (tls, address) = match server.split_once("://") {
        Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
        None => (false, server),
    };
    let address = address.trim_end_matches('/');
    let tls = tls || connect.tls_ca.is_some() || connect.tls_cert.is_some();
    let creds = if tls {
        let mut config = serde_json::Map::new();
        let mut file = |key: &str, path: &Option<std::path::PathBuf>| {
            if let Some(p) = path {
                config.insert(key.into(), json!(p.display().to_string()));
            }
        };
        file("ca_certificate_file", &connect.tls_ca);
        file("certificate_file", &connect.tls_cert);
        file("private_key_file", &connect.tls_key);
        json!([{"type": "tls", "config": config}])
    } else {
        json!([{"type": "insecure"}])
    };
    json!({
        "xds_servers": [{
            "server_uri": address,
            "channel_creds": creds,
            "server_features": ["xds_v3"],
        }],
        // grpc-js-xds refuses a node without a locality (an empty one will do).
        "node": {"id": node_id, "locality": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ca: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            tls_ca: ca.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn plain_addresses_are_insecure_and_https_or_a_ca_is_tls() {
        let b = xds_bootstrap("http://10.0.0.1:50051", &options(None), "n");
        assert_eq!(b["xds_servers"][0]["server_uri"], "10.0.0.1:50051");
        assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
        assert_eq!(b["node"], json!({"id": "n", "locality": {}}));
        let b = xds_bootstrap("registry:50051", &options(Some("/ca.pem")), "n");
        let creds = &b["xds_servers"][0]["channel_creds"][0];
        assert_eq!(creds["type"], "tls");
        assert_eq!(creds["config"]["ca_certificate_file"], "/ca.pem");
        let b = xds_bootstrap("https://r:443/", &options(None), "n");
        assert_eq!(b["xds_servers"][0]["server_uri"], "r:443");
        assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "tls");
    }
}
