//! Bearer tokens end to end: every role against every RPC in a granted and a foreign namespace,
//! ownership of instances, callers without a valid token, and the tokens file reloaded.

use std::path::Path;
use std::time::Duration;

use agent_registry::proto::{
    self, admin_service_client::AdminServiceClient, catalog_service_client::CatalogServiceClient,
    discovery_service_client::DiscoveryServiceClient,
    registry_service_client::RegistryServiceClient,
};
use agent_registry::security::tokens::new_token;
use agent_registry::security::{Action, Role};
use agent_registry_client::{ConnectOptions, Transport};
use tonic::Code;

use crate::support::{Backend, TestDb, TestServer, cards, eventually, reg};

/// A token: its secret and the file entry that grants it.
pub struct Token {
    pub secret: String,
    pub entry: String,
}

pub fn token(name: &str, role: Role, namespaces: &[&str]) -> Token {
    let ns: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
    let (secret, entry) = new_token(name, role, &ns);
    Token { secret, entry }
}

pub fn write_tokens(path: &Path, tokens: &[&Token]) {
    let text: String = tokens.iter().map(|t| format!("{}\n", t.entry)).collect();
    // Written aside and renamed, as an operator's tooling would, so no reader sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Clients of `server` that send `secret` (or no token at all).
pub struct As {
    pub registry: RegistryServiceClient<Transport>,
    pub discovery: DiscoveryServiceClient<Transport>,
    pub admin: AdminServiceClient<Transport>,
    pub catalog: CatalogServiceClient<Transport>,
}

pub fn as_caller(url: &str, secret: Option<&str>) -> As {
    let options = ConnectOptions {
        token: secret.map(str::to_string),
        ..ConnectOptions::default()
    };
    let t = options.connect_lazy(url).expect("client");
    As {
        registry: RegistryServiceClient::new(t.clone()),
        discovery: DiscoveryServiceClient::new(t.clone()),
        admin: AdminServiceClient::new(t.clone()),
        catalog: CatalogServiceClient::new(t),
    }
}

/// The five tokens the matrix uses, and a server that knows them.
pub struct Fixture {
    pub server: TestServer,
    pub agent: Token,
    pub other_agent: Token,
    pub reader: Token,
    pub admin: Token,
    pub root: Token,
    _dir: tempfile::TempDir,
}

pub async fn fixture(db: &TestDb) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let agent = token("agent-a", Role::Agent, &["a"]);
    let other_agent = token("agent-a-2", Role::Agent, &["a"]);
    let reader = token("reader-a", Role::Reader, &["a"]);
    let admin = token("admin-a", Role::Admin, &["a"]);
    let root = token("root", Role::Admin, &["*"]);
    write_tokens(&path, &[&agent, &other_agent, &reader, &admin, &root]);
    let server = TestServer::start_with(db, |args| {
        args.auth_tokens_file = Some(path.clone());
        args.reload_interval = Duration::from_millis(100);
    })
    .await;
    Fixture {
        server,
        agent,
        other_agent,
        reader,
        admin,
        root,
        _dir: dir,
    }
}

/// A fresh live instance `cell-<n>` in `ns`, serving a card of its own, registered by the
/// `agent` token in `a` and by `root` elsewhere.
pub async fn fresh_instance(f: &Fixture, ns: &str, n: usize) -> String {
    let owner = if ns == "a" { &f.agent } else { &f.root };
    let mut c = as_caller(&f.server.url, Some(&owner.secret));
    let mut req = reg(ns, &format!("cell-{n}"));
    req.ready = true;
    req.card = Some(cards::proto_card(&cards::simple(&format!("cell {n}"))));
    c.registry
        .register(req)
        .await
        .expect("register fixture")
        .into_inner()
        .instance
        .unwrap()
        .instance_id
}

/// Calls `action` as `c` on namespace `ns` (or on the instance `id` of it); the outcome's code.
async fn call(c: &mut As, action: Action, ns: &str, id: &str, n: usize) -> Code {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let text = |s: &str| s.to_string();
    match action {
        Action::Register => code(
            c.registry
                .register(reg(ns, &format!("new-{n}")))
                .await
                .map(drop),
        ),
        Action::Heartbeat => {
            let beat = proto::HeartbeatRequest {
                instance_id: text(id),
                sequence: 1,
                ..Default::default()
            };
            let opened = c.registry.heartbeat(tokio_stream::iter(vec![beat])).await;
            match opened {
                Err(s) => s.code(),
                Ok(replies) => match replies.into_inner().message().await {
                    Ok(Some(_)) => Code::Ok,
                    Ok(None) => Code::Unknown,
                    Err(s) => s.code(),
                },
            }
        }
        Action::Deregister => code(
            c.registry
                .deregister(proto::DeregisterRequest {
                    instance_id: text(id),
                    reason: text("test"),
                })
                .await
                .map(drop),
        ),
        Action::Drain => code(
            c.admin
                .drain_instance(proto::DrainInstanceRequest {
                    instance_id: text(id),
                    reason: text("test"),
                })
                .await
                .map(drop),
        ),
        Action::Evict => code(
            c.admin
                .evict_instance(proto::EvictInstanceRequest {
                    instance_id: text(id),
                    reason: text("test"),
                })
                .await
                .map(drop),
        ),
        Action::AdvanceEpoch => code(
            c.admin
                .advance_epoch(proto::AdvanceEpochRequest {
                    namespace: text(ns),
                })
                .await
                .map(drop),
        ),
        Action::Discover => code(
            c.discovery
                .discover(crate::support::view(ns, proto::DiscoverView::All))
                .await
                .map(drop),
        ),
        Action::GetInstance => code(
            c.discovery
                .get_instance(proto::GetInstanceRequest {
                    instance_id: text(id),
                })
                .await
                .map(drop),
        ),
        Action::Watch => {
            let req = crate::watch::watch_req(ns, 0);
            match c.discovery.watch(req).await {
                Err(s) => s.code(),
                Ok(w) => match w.into_inner().message().await {
                    Ok(Some(_)) => Code::Ok,
                    Ok(None) => Code::Unknown,
                    Err(s) => s.code(),
                },
            }
        }
        Action::ListNamespaces => code(
            c.admin
                .list_namespaces(proto::ListNamespacesRequest::default())
                .await
                .map(drop),
        ),
        Action::GetNamespace => code(
            c.admin
                .get_namespace(proto::GetNamespaceRequest { name: text(ns) })
                .await
                .map(drop),
        ),
        Action::PublishCard => code(
            c.catalog
                .publish_card(proto::PublishCardRequest {
                    namespace: text(ns),
                    logical_id: format!("published-{n}"),
                    card: Some(cards::proto_card(&cards::simple("published"))),
                })
                .await
                .map(drop),
        ),
        Action::SearchAgents => code(
            c.catalog
                .search_agents(proto::SearchAgentsRequest {
                    namespace: text(ns),
                    query: "cell".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Action::GetAgent => code(
            c.catalog
                .get_agent(proto::GetAgentRequest {
                    namespace: text(ns),
                    logical_id: format!("cell-{n}"),
                })
                .await
                .map(drop),
        ),
        Action::GetCard => code(
            c.catalog
                .get_card(proto::GetCardRequest {
                    instance_id: text(id),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        Action::ListCardVersions => code(
            c.catalog
                .list_card_versions(proto::ListCardVersionsRequest {
                    namespace: text(ns),
                    logical_id: format!("cell-{n}"),
                })
                .await
                .map(drop),
        ),
    }
}

/// What SPEC §9 allows, spelled out for the test independently of the server's table.
pub fn allowed(role: Role, action: Action, ns: &str) -> bool {
    use Action::*;
    let by_role = match role {
        Role::Admin => true,
        Role::Agent => matches!(
            action,
            Register | Heartbeat | Deregister | Drain | PublishCard
        ),
        Role::Reader => matches!(
            action,
            Discover
                | GetInstance
                | Watch
                | ListNamespaces
                | GetNamespace
                | SearchAgents
                | GetAgent
                | GetCard
                | ListCardVersions
        ),
    };
    // ListNamespaces names no namespace: it is filtered instead (checked below).
    by_role && (ns == "a" || action == ListNamespaces)
}

/// Calls `call` as each role, for each action, in each namespace, on a fresh instance each
/// time, and returns every outcome other than the one `allowed` predicts (OK, else
/// PERMISSION_DENIED). `call` gets the role's secret, the action, the namespace, the instance
/// id and a serial number for unique names. The gRPC and HTTP matrices share it.
pub async fn matrix<F, Fut>(f: &Fixture, mut call: F) -> Vec<String>
where
    F: FnMut(String, Action, &'static str, String, usize) -> Fut,
    Fut: std::future::Future<Output = Code>,
{
    // Both namespaces exist before anyone lists them.
    fresh_instance(f, "a", 0).await;
    fresh_instance(f, "b", 0).await;
    let mut n = 1;
    let mut failures = Vec::new();
    for (role, secret) in [
        (Role::Agent, &f.agent.secret),
        (Role::Reader, &f.reader.secret),
        (Role::Admin, &f.admin.secret),
    ] {
        for action in Action::ALL {
            for ns in ["a", "b"] {
                n += 1;
                let id = fresh_instance(f, ns, n).await;
                let got = call(secret.clone(), action, ns, id, n).await;
                let want = match allowed(role, action, ns) {
                    true => Code::Ok,
                    false => Code::PermissionDenied,
                };
                if got != want {
                    failures.push(format!("{role} {action} in {ns}: got {got:?}"));
                }
            }
        }
    }
    failures
}

async fn role_rpc_namespace_matrix(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let f = fixture(&db).await;
    let url = f.server.url.clone();
    let failures = matrix(&f, |secret, action, ns, id, n| {
        let mut c = as_caller(&url, Some(&secret));
        async move { call(&mut c, action, ns, &id, n).await }
    })
    .await;
    assert!(failures.is_empty(), "{failures:#?}");

    // Listings show only the granted namespaces.
    for secret in [&f.reader.secret, &f.admin.secret] {
        let mut c = as_caller(&f.server.url, Some(secret));
        let list = c
            .admin
            .list_namespaces(proto::ListNamespacesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = list.namespaces.iter().map(|n| n.name.clone()).collect();
        assert_eq!(names, ["a"]);
    }
    let mut root = as_caller(&f.server.url, Some(&f.root.secret));
    let all = root
        .admin
        .list_namespaces(proto::ListNamespacesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.namespaces.len(), 2, "`*` sees every namespace");
    f.server.stop().await;
}

async fn agents_touch_only_their_own_instances(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let f = fixture(&db).await;
    let mine = fresh_instance(&f, "a", 1).await;
    let mut other = as_caller(&f.server.url, Some(&f.other_agent.secret));
    for action in [Action::Heartbeat, Action::Drain, Action::Deregister] {
        let got = call(&mut other, action, "a", &mine, 0).await;
        assert_eq!(got, Code::PermissionDenied, "{action} by another agent");
    }
    // Nor may it renew (and so read back) the instance by retrying its Register.
    let mut retry = reg("a", "cell-1");
    retry.instance_id = mine.clone();
    let err = other.registry.register(retry.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nothing changed: still ALIVE; the owner's own calls and retries work.
    let mut owner = as_caller(&f.server.url, Some(&f.agent.secret));
    let got = owner
        .discovery
        .get_instance(proto::GetInstanceRequest {
            instance_id: mine.clone(),
        })
        .await;
    assert_eq!(
        got.unwrap_err().code(),
        Code::PermissionDenied,
        "agents do not read"
    );
    let again = owner
        .registry
        .register(retry.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.instance.unwrap().instance_id, mine);
    // An admin acts on anyone's instance, a Register retry included; the owner stays.
    let mut admin = as_caller(&f.server.url, Some(&f.admin.secret));
    let renewed = admin.registry.register(retry).await.unwrap().into_inner();
    assert_eq!(renewed.instance.unwrap().instance_id, mine);
    for action in [Action::Heartbeat, Action::Drain, Action::Deregister] {
        assert_eq!(
            call(&mut owner, action, "a", &mine, 0).await,
            Code::Ok,
            "{action}"
        );
    }
    // Once it is dead, another agent beating for it is told to register (not refused for an
    // owner the instance no longer has).
    let beat = proto::HeartbeatRequest {
        instance_id: mine.clone(),
        sequence: 1,
        ..Default::default()
    };
    let mut replies = other
        .registry
        .heartbeat(tokio_stream::iter(vec![beat]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("a directive");
    assert_eq!(reply.directive, proto::Directive::Reregister as i32);
    // An id no replica knows: the role is checked first, then it is NOT_FOUND for a token
    // bound to namespaces (no store lookup of rows it could not see).
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut reader = as_caller(&f.server.url, Some(&f.reader.secret));
    let got = call(&mut reader, Action::Deregister, "a", &unknown, 0).await;
    assert_eq!(got, Code::PermissionDenied);
    let got = call(&mut reader, Action::GetInstance, "a", &unknown, 0).await;
    assert_eq!(got, Code::NotFound);
    assert_eq!(
        call(&mut owner, Action::Drain, "a", &unknown, 0).await,
        Code::NotFound
    );
    f.server.stop().await;
}

async fn callers_without_a_valid_token_are_unauthenticated(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let f = fixture(&db).await;
    let id = fresh_instance(&f, "a", 1).await;
    for secret in [None, Some("not-a-token"), Some("")] {
        let mut c = as_caller(&f.server.url, secret.filter(|s| !s.is_empty()));
        for action in Action::ALL {
            let got = call(&mut c, action, "a", &id, 9).await;
            assert_eq!(got, Code::Unauthenticated, "{action} with {secret:?}");
        }
    }
    // Probes need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(f.server.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    f.server.stop().await;
}

async fn the_tokens_file_is_reloaded_and_a_bad_one_ignored(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let admin = token("admin", Role::Admin, &["*"]);
    let reader = token("reader", Role::Reader, &["*"]);
    write_tokens(&path, &[&admin]);
    let server = TestServer::start_with(&db, |args| {
        args.auth_tokens_file = Some(path.clone());
        args.reload_interval = Duration::from_millis(50);
    })
    .await;
    let url = server.url.clone();
    let discover = |secret: String| {
        let url = url.clone();
        async move {
            let mut c = as_caller(&url, Some(&secret));
            let req = crate::support::view("a", proto::DiscoverView::All);
            c.discovery
                .discover(req)
                .await
                .err()
                .map_or(Code::Ok, |s| s.code())
        }
    };
    assert_eq!(discover(reader.secret.clone()).await, Code::Unauthenticated);
    write_tokens(&path, &[&admin, &reader]);
    eventually("the new reader token is accepted", || async {
        discover(reader.secret.clone()).await == Code::Ok
    })
    .await;
    // Streams opened with a token end when it is revoked: a watch of the admin's.
    let mut watching = as_caller(&url, Some(&admin.secret));
    let mut watch = watching
        .discovery
        .watch(crate::watch::watch_req("a", 0))
        .await
        .unwrap()
        .into_inner();
    crate::watch::next(&mut watch).await;
    write_tokens(&path, &[&reader]);
    eventually("the removed admin token is refused", || async {
        discover(admin.secret.clone()).await == Code::Unauthenticated
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends");
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
    // A broken file keeps the tokens in force: several reload periods later the reader still
    // gets in.
    let failed = r#"agent_registry_reloads_total{file="tokens file",outcome="failed"}"#;
    let failed_before = crate::metrics::sample(&crate::metrics::scrape(&server).await, failed);
    std::fs::write(&path, "[[tokens]]\nname = 'x'\nrole = 'superuser'\n").unwrap();
    eventually("the broken file is read and refused", || async {
        crate::metrics::sample(&crate::metrics::scrape(&server).await, failed) > failed_before
    })
    .await;
    assert_eq!(discover(reader.secret.clone()).await, Code::Ok);
    server.stop().await;
}

crate::on_both_backends!(
    role_rpc_namespace_matrix,
    agents_touch_only_their_own_instances,
    callers_without_a_valid_token_are_unauthenticated,
    the_tokens_file_is_reloaded_and_a_bad_one_ignored,
);
