//! TLS and mutual TLS with certificates made per test: who can connect, certificates swapped
//! under open streams, and the client library, `ctl` and the sidecar over TLS with a token.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agent_registry::proto::{self, DiscoverView, registry_service_client::RegistryServiceClient};
use agent_registry::security::Role;
use agent_registry_client::{Client, ConnectOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::process::Command;

use crate::security::{token, write_tokens};
use crate::support::{Backend, TestDb, TestServer, eventually, reg, view};

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A certificate for `localhost` (server) or a client; (certificate PEM, key PEM).
    fn leaf(&self, client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.extended_key_usages = vec![match client {
            true => ExtendedKeyUsagePurpose::ClientAuth,
            false => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA, a server pair and a client pair under `dir` with `prefix`.
    fn write(&self, dir: &Path, prefix: &str) -> Files {
        let f = |n: &str| dir.join(format!("{prefix}-{n}"));
        let files = Files {
            ca: f("ca.pem"),
            cert: f("server.pem"),
            key: f("server.key"),
            client_cert: f("client.pem"),
            client_key: f("client.key"),
        };
        std::fs::write(&files.ca, self.issuer.pem()).unwrap();
        let (c, k) = self.leaf(false);
        std::fs::write(&files.cert, c).unwrap();
        std::fs::write(&files.key, k).unwrap();
        let (c, k) = self.leaf(true);
        std::fs::write(&files.client_cert, c).unwrap();
        std::fs::write(&files.client_key, k).unwrap();
        files
    }
}

struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Files {
    /// Serve TLS with these files, and require a client certificate from their CA.
    fn require_client_certificates(&self, args: &mut agent_registry::config::ServeArgs) {
        args.tls_cert = Some(self.cert.clone());
        args.tls_key = Some(self.key.clone());
        args.tls_client_ca = Some(self.ca.clone());
    }
}

fn https(server: &TestServer) -> String {
    server.url.replace("http://127.0.0.1", "https://localhost")
}

fn trusting(ca: &Path) -> ConnectOptions {
    ConnectOptions {
        tls_ca: Some(ca.to_path_buf()),
        ..ConnectOptions::default()
    }
}

/// Whether a Register through `options` succeeds.
async fn registers(url: &str, options: &ConnectOptions) -> bool {
    let Ok(t) = options.connect_lazy(url) else {
        return false;
    };
    let mut client = RegistryServiceClient::new(t);
    let call = client.register(reg("tls", "probe"));
    matches!(
        tokio::time::timeout(Duration::from_secs(10), call).await,
        Ok(Ok(_))
    )
}

async fn sqlite() -> Option<TestDb> {
    TestDb::new(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_only_clients_that_trust_its_certificate() {
    let Some(db) = sqlite().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new("registry ca").write(dir.path(), "a");
    let other = Ca::new("stranger ca").write(dir.path(), "b");
    let server = TestServer::start_with(&db, |args| {
        args.tls_cert = Some(files.cert.clone());
        args.tls_key = Some(files.key.clone());
    })
    .await;
    assert!(registers(&https(&server), &trusting(&files.ca)).await);
    assert!(
        !registers(&https(&server), &trusting(&other.ca)).await,
        "a client that does not trust the certificate"
    );
    assert!(
        !registers(&server.url, &ConnectOptions::default()).await,
        "plaintext to a TLS server"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_its_ca() {
    let Some(db) = sqlite().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new("registry ca").write(dir.path(), "a");
    let other = Ca::new("stranger ca").write(dir.path(), "b");
    let server = TestServer::start_with(&db, |args| files.require_client_certificates(args)).await;
    let url = https(&server);
    let with_cert = |cert: &Path, key: &Path| ConnectOptions {
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        ..trusting(&files.ca)
    };
    assert!(registers(&url, &with_cert(&files.client_cert, &files.client_key)).await);
    assert!(
        !registers(&url, &trusting(&files.ca)).await,
        "no client certificate"
    );
    assert!(
        !registers(&url, &with_cert(&other.client_cert, &other.client_key)).await,
        "a client certificate from another CA"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_without_dropping_open_streams() {
    let Some(db) = sqlite().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let old = Ca::new("old ca").write(dir.path(), "old");
    let new = Ca::new("new ca").write(dir.path(), "new");
    let served = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&old.cert, &served.0).unwrap();
    std::fs::copy(&old.key, &served.1).unwrap();
    let server = TestServer::start_with(&db, |args| {
        args.tls_cert = Some(served.0.clone());
        args.tls_key = Some(served.1.clone());
        args.reload_interval = Duration::from_millis(50);
    })
    .await;
    let url = https(&server);

    // An agent beating over a connection made with the old certificate.
    let t = trusting(&old.ca).connect_lazy(&url).unwrap();
    let mut registry = RegistryServiceClient::new(t);
    let mut req = reg("tls", "steady");
    req.ready = true;
    let id = registry
        .register(req)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap()
        .instance_id;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = registry
        .heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let beat = |sequence| proto::HeartbeatRequest {
        instance_id: id.clone(),
        sequence,
        ..Default::default()
    };
    tx.send(beat(1)).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().sequence, 1);

    // The files change (new key first, then the certificate, as a renewal job might).
    std::fs::copy(&new.key, &served.1).unwrap();
    std::fs::copy(&new.cert, &served.0).unwrap();
    eventually("new connections get the new certificate", || async {
        registers(&url, &trusting(&new.ca)).await
    })
    .await;
    assert!(
        !registers(&url, &trusting(&old.ca)).await,
        "the old one is no longer served"
    );
    // The stream opened before the swap goes on.
    tx.send(beat(2)).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), acks.message()).await;
    assert_eq!(ack.unwrap().unwrap().unwrap().sequence, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_library_ctl_and_sidecar_speak_tls_with_a_token() {
    let Some(db) = sqlite().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new("registry ca").write(dir.path(), "a");
    let tokens = dir.path().join("tokens.toml");
    let admin = token("ops", Role::Admin, &["*"]);
    let agent = token("web", Role::Agent, &["side"]);
    write_tokens(&tokens, &[&admin, &agent]);
    let agent_file = dir.path().join("agent.token");
    std::fs::write(&agent_file, format!("{}\n", agent.secret)).unwrap();
    let server = TestServer::start_with(&db, |args| {
        args.tls_cert = Some(files.cert.clone());
        args.tls_key = Some(files.key.clone());
        args.auth_tokens_file = Some(tokens.clone());
    })
    .await;
    let url = https(&server);

    // The library.
    let options = ConnectOptions {
        token_file: Some(agent_file.clone()),
        ..trusting(&files.ca)
    };
    let client = Client::connect_with(&url, &options).unwrap();
    let got = client
        .register(reg("side", "lib"))
        .await
        .expect("library registers");
    assert_eq!(got.instance.logical_id, "lib");

    // ctl, with the admin token from the environment; and refused without one.
    let ctl = |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agent-registry"));
        c.args(["ctl", "--server", &url, "--tls-ca"])
            .arg(&files.ca)
            .args(["--output", "json", "list", "--namespace", "side"])
            .env_remove("AGENT_REGISTRY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            c.env("AGENT_REGISTRY_TOKEN", t);
        }
        c.output()
    };
    let out = ctl(Some(&admin.secret)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"lib\""));
    let out = ctl(None).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing bearer token"), "{err}");

    // The sidecar registers its pod over TLS with the agent token.
    let mut sidecar = Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["sidecar", "--registry", &url, "--tls-ca"])
        .arg(&files.ca)
        .arg("--token-file")
        .arg(&agent_file)
        .env("POD_NAME", "web-0")
        .env("POD_NAMESPACE", "side")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sidecar");
    let admin_client = Client::connect_with(
        &url,
        &ConnectOptions {
            token: Some(admin.secret.clone()),
            ..trusting(&files.ca)
        },
    )
    .unwrap();
    eventually("the sidecar's pod is registered", || async {
        let all = admin_client
            .discover(view("side", DiscoverView::All))
            .await
            .unwrap_or_default();
        all.iter().any(|i| i.logical_id == "web-0")
    })
    .await;
    sidecar.kill().await.unwrap();
    server.stop().await;
}

/// `GET /v1/caller` over HTTPS (HTTP/1.1 by ALPN) to the HTTP API's port, with the client
/// certificate `client` if given; the status line, or `None` when the connection failed.
async fn https_status(
    server: &TestServer,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = server.http_url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.ok()?;
    tls.write_all(b"GET /v1/caller HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await.ok()?;
    response.lines().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_takes_the_grpc_ports_tls_and_client_certificates() {
    let Some(db) = sqlite().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = Ca::new("registry ca").write(dir.path(), "a");
    let other = Ca::new("stranger ca").write(dir.path(), "b");
    let server = TestServer::start_with(&db, |args| files.require_client_certificates(args)).await;
    let with_cert = Some((files.client_cert.as_path(), files.client_key.as_path()));
    assert_eq!(
        https_status(&server, &files.ca, with_cert).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    assert_eq!(
        https_status(&server, &files.ca, None).await,
        None,
        "no client certificate"
    );
    let stranger = Some((other.client_cert.as_path(), other.client_key.as_path()));
    assert_eq!(
        https_status(&server, &files.ca, stranger).await,
        None,
        "another CA's client"
    );
    assert_eq!(
        https_status(&server, &other.ca, with_cert).await,
        None,
        "an untrusted server"
    );
    // Plaintext HTTP to the TLS port gets no answer.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        client
            .get(format!("{}/v1/caller", server.http_url).parse().unwrap())
            .await
    })
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "plaintext is not answered: {refused:?}"
    );
    server.stop().await;
}
