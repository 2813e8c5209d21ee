//! The xDS server over a real ADS stream: what a subscription gets, changes pushed from the
//! change feed (also from another replica's writes), ACK and NACK, and access like Discover's.

use std::collections::BTreeMap;
use std::time::Duration;

use agent_registry::proto;
use agent_registry::security::Role;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Code;

use agent_registry_core::domain::InstanceStatus;
use agent_registry_core::liveness::LivenessConfig;

use crate::security::{token, write_tokens};
use crate::support::node::Node;
use crate::support::proxy::{Mode, in_front_of};
use crate::support::{Backend, TestDb, TestServer, reg};

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// One ADS stream as a client holds it.
struct Ads {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

impl Ads {
    async fn open(url: &str, token: Option<&str>) -> Result<Ads, tonic::Status> {
        let mut client = AggregatedDiscoveryServiceClient::connect(url.to_string())
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(t) = token {
            let value = format!("Bearer {t}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        let rx = client
            .stream_aggregated_resources(request)
            .await?
            .into_inner();
        Ok(Ads { tx, rx })
    }

    async fn send(&self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        let req = DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        self.tx.send(req).await.expect("stream open");
    }

    async fn next(&mut self) -> Result<DiscoveryResponse, tonic::Status> {
        match tokio::time::timeout(Duration::from_secs(20), self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => panic!("the stream ended"),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("no response within 20 s"),
        }
    }

    /// The next response, which must be of `type_url`, acknowledged at once.
    async fn expect(&mut self, type_url: &str, names: &[&str]) -> DiscoveryResponse {
        let r = self.next().await.expect("a response");
        assert_eq!(r.type_url, type_url);
        self.send(type_url, names, &r.version_info, &r.nonce).await;
        r
    }
}

/// Each load assignment's name with its endpoints' addresses, sorted.
fn endpoints(r: &DiscoveryResponse) -> BTreeMap<String, Vec<String>> {
    r.resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, ENDPOINTS);
            let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap();
            let mut addrs: Vec<String> = cla
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .map(|e| {
                    let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                        panic!("an endpoint");
                    };
                    let address = ep.address.as_ref().unwrap().address.as_ref().unwrap();
                    let address::Address::SocketAddress(sa) = address else {
                        panic!("a socket address");
                    };
                    let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier
                    else {
                        panic!("a port");
                    };
                    format!("{}:{port}", sa.address)
                })
                .collect();
            addrs.sort();
            (cla.cluster_name, addrs)
        })
        .collect()
}

fn at(name: &str, addrs: &[&str]) -> (String, Vec<String>) {
    (name.into(), addrs.iter().map(|a| a.to_string()).collect())
}

async fn register(s: &mut TestServer, ns: &str, id: &str, endpoint: &str) -> String {
    let mut r = reg(ns, id);
    r.endpoint = endpoint.into();
    s.register(r).await.instance_id
}

/// A subscription gets every resource that exists (a name that stands for nothing is left
/// out), a drain and a registration are pushed, and a NACK is logged, not answered.
async fn ads_serves_a_target_and_pushes_its_changes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut s = TestServer::start(&db).await;
    let first = register(&mut s, "x", "svc", "10.0.0.1:7").await;
    register(&mut s, "x", "svc", "10.0.0.2:7").await;
    register(&mut s, "x", "other", "10.0.0.9:7").await;
    let mut ads = Ads::open(&s.url, None).await.expect("open");
    ads.send(LISTENER, &["svc.x", "no-namespace"], "", "").await;
    let l = ads.expect(LISTENER, &["svc.x", "no-namespace"]).await;
    assert_eq!(
        l.resources.len(),
        1,
        "only the name that stands for instances"
    );
    ads.send(CLUSTER, &["svc.x"], "", "").await;
    assert_eq!(ads.expect(CLUSTER, &["svc.x"]).await.resources.len(), 1);
    let names = ["svc.x", "active.svc.x"];
    ads.send(ENDPOINTS, &names, "", "").await;
    let e = ads.expect(ENDPOINTS, &names).await;
    assert_eq!(
        endpoints(&e),
        BTreeMap::from([
            at("svc.x", &["10.0.0.1:7", "10.0.0.2:7"]),
            at("active.svc.x", &["10.0.0.1:7"]),
        ])
    );
    let drain = proto::DrainInstanceRequest {
        instance_id: first.clone(),
        reason: "xds test".into(),
    };
    s.admin.drain_instance(drain).await.expect("drain");
    let r = ads.next().await.expect("pushed");
    assert_eq!(
        endpoints(&r),
        BTreeMap::from([
            at("svc.x", &["10.0.0.2:7"]),
            at("active.svc.x", &["10.0.0.2:7"]),
        ])
    );
    let version: u64 = r.version_info.parse().unwrap();
    // The client rejects it: logged, and not sent again (the next message is the next change).
    let nack = DiscoveryRequest {
        type_url: ENDPOINTS.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: e.version_info.clone(),
        response_nonce: r.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: Code::InvalidArgument as i32,
            message: "rejected by the test".into(),
            details: vec![],
        }),
        ..Default::default()
    };
    ads.tx.send(nack).await.unwrap();
    register(&mut s, "x", "svc", "10.0.0.3:7").await;
    let r = ads.next().await.expect("pushed");
    assert_eq!(
        r.version_info,
        (version + 1).to_string(),
        "nothing in between"
    );
    assert_eq!(
        endpoints(&r)["svc.x"],
        vec!["10.0.0.2:7".to_string(), "10.0.0.3:7".into()]
    );
    drop(ads);
    s.stop().await;
}

/// A registration through one replica reaches xDS clients of another.
async fn ads_clients_of_every_replica_see_every_change(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let mut ads = Ads::open(&b.url, None).await.expect("open");
    ads.send(ENDPOINTS, &["svc.y"], "", "").await;
    let e = ads.expect(ENDPOINTS, &["svc.y"]).await;
    assert_eq!(endpoints(&e), BTreeMap::from([at("svc.y", &[])]));
    register(&mut a, "y", "svc", "10.0.1.1:7").await;
    let r = ads.next().await.expect("pushed");
    assert_eq!(
        endpoints(&r),
        BTreeMap::from([at("svc.y", &["10.0.1.1:7"])])
    );
    drop(ads);
    b.stop().await;
    a.stop().await;
}

/// A token sees the namespaces it is granted (others are absent); without a token, the
/// anonymous grant of `--xds-anonymous-namespaces`; a wrong token is refused.
async fn ads_is_authorized_like_discover(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let reader = token("reader-a", Role::Reader, &["a"]);
    let root = token("root", Role::Admin, &["*"]);
    write_tokens(&path, &[&reader, &root]);
    let s = TestServer::start_with(&db, |args| {
        args.auth_tokens_file = Some(path.clone());
        args.xds_anonymous_namespaces = vec!["b".into()];
    })
    .await;
    let mut c = crate::security::as_caller(&s.url, Some(&root.secret));
    for ns in ["a", "b"] {
        let mut r = reg(ns, "s");
        r.endpoint = "10.0.2.1:7".into();
        c.registry.register(r).await.expect("register");
    }
    let names = ["s.a", "s.b"];
    for (who, secret, seen) in [
        ("reader of a", Some(reader.secret.as_str()), "s.a"),
        ("no token", None, "s.b"),
    ] {
        let mut ads = Ads::open(&s.url, secret).await.expect("open");
        ads.send(ENDPOINTS, &names, "", "").await;
        let e = ads.expect(ENDPOINTS, &names).await;
        let got: Vec<String> = endpoints(&e).into_keys().collect();
        assert_eq!(got, vec![seen.to_string()], "{who}");
    }
    let refused = match Ads::open(&s.url, Some("not-a-token")).await {
        Err(status) => status,
        Ok(mut ads) => {
            ads.send(ENDPOINTS, &names, "", "").await;
            ads.next().await.expect_err("refused")
        }
    };
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    s.stop().await;
}

/// What xDS sends is `Registry::serving`: while the store is away an instance whose lease seems
/// to run out stays (this replica cannot see beats through others), and an unsettled answer is
/// looked at again within a second; once the store answers and the instance is dead, it goes.
#[tokio::test]
async fn endpoints_stay_while_leases_are_in_doubt_and_go_when_judged() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let (proxy, via_proxy) = in_front_of(&db.url).await;
    let node = Node::start(&via_proxy, LivenessConfig::default()).await;
    tokio::time::pause();
    let secs = Duration::from_secs;
    let silent = node.register("doubt", "svc").await;
    // Another agent beats: its flushes are what tell this replica the store answers again.
    let other = node.register("doubt", "beating").await;
    let (agent, _) = node.resilient_agent(&other, secs(5));
    let serving = || node.registry.serving("doubt", "svc", false).unwrap();
    let now = serving();
    assert_eq!(now.instances.len(), 1);
    let lease = silent.lease_ttl;
    assert!(
        now.recheck.is_some_and(|r| r <= lease),
        "looked at again when its lease runs out: {:?}",
        now.recheck
    );
    proxy.set(Mode::Reset);
    node.advance(lease + secs(10)).await;
    assert!(!node.registry.health().store_reachable);
    let held = serving();
    assert_eq!(held.instances.len(), 1, "kept while leases are in doubt");
    assert!(held.recheck.is_some_and(|r| r <= secs(1)), "{held:?}");
    proxy.set(Mode::Pass);
    node.eventually("the silent agent dies once judged", secs(60), || {
        node.status(&silent) == InstanceStatus::Dead
    })
    .await;
    let gone = serving();
    assert!(gone.instances.is_empty(), "{gone:?}");
    assert_eq!(gone.recheck, None, "only a change can alter it now");
    agent.abort();
    node.stop().await;
}

crate::on_both_backends!(
    ads_serves_a_target_and_pushes_its_changes,
    ads_clients_of_every_replica_see_every_change,
    ads_is_authorized_like_discover,
);
